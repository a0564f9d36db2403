#!/usr/bin/env bash
# test-msi.sh BUILD_DIR - the MSI, end to end under Wine, in a Wine prefix of its own:
# its tables; a silent install that starts the service; a stream through the installed
# sbcat and the installed sbctl's status; an upgrade to a higher version that keeps an
# edited config and the spool (a stream the archive could not write, archived after the
# upgrade once it can); a refused downgrade; an uninstall that removes the
# service, its event source and the program files and leaves config and spool. The
# service, on the shipped config, logs under ProgramData. The tools on the system PATH
# (and off it after the uninstall); UPSTREAM, ARCHIVEDIR and DATADIR written into a new
# config only; net start of a service that fails at once; a refused property.
set -euo pipefail
build=$(cd "$1" && pwd)
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export SB_WINEPREFIX=$build/wineprefix-msi
# winepath below runs in that prefix too (not in ~/.wine).
export WINEPREFIX=$SB_WINEPREFIX
run() { "$top/tests/windows/wine-run.sh" "$@"; }
# has PATTERN: whether standard input matches (reading all of it, so no writer gets
# SIGPIPE under pipefail).
has() { grep "$@" >/dev/null; }
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
# Waits up to 30 s for a command to succeed.
await() {
  local i
  for i in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  return 1
}
running() { run sc query StreamBroker | has RUNNING; }
stopped_or_gone() { ! run sc query StreamBroker | has RUNNING; }

rm -rf "$SB_WINEPREFIX"
trap '"$top/tests/windows/wine-stop.sh"' EXIT

msi1=$(bash "$top/wix/build-msi.sh" "$build" 0.1.0 | tail -n 1)
cp "$msi1" "$build/msi-test-0.1.0.msi"
msi1=$build/msi-test-0.1.0.msi
msi2=$(bash "$top/wix/build-msi.sh" "$build" 0.1.1 | tail -n 1)

# Tables: the service is the MSI's, with a fixed upgrade code.
msiinfo export "$msi1" ServiceInstall | has $'StreamBroker\tStreamBroker log-stream broker\t16\t2' ||
  fail "ServiceInstall: own process, automatic start"
# Wait 1: Windows Installer waits for the service to stop before it removes files.
msiinfo export "$msi1" ServiceControl |
  has -P '^StreamBrokerControl\tStreamBroker\t163\t\t1\tService\r?$' ||
  fail "ServiceControl: start on install, stop both, remove on uninstall, and wait"
msiinfo export "$msi1" Property | has '^UpgradeCode.{18527C75-8E14-5CF3-AEF6-22ADB2196879}' ||
  fail "UpgradeCode"
msiinfo export "$msi1" Component | has '^Service' || fail "Component Service"
msiinfo export "$msi1" CustomAction | has -i 'sc.exe' && fail "an sc.exe custom action"
msiinfo export "$msi1" Registry |
  has -P 'EventLog\\Application\\StreamBroker\\?\tEventMessageFile\t\[#streambrokerd.exe\]\tService' ||
  fail "Registry: the event source's message file"

pd=$SB_WINEPREFIX/drive_c/ProgramData/StreamBroker
pf="$SB_WINEPREFIX/drive_c/Program Files/streambroker"

run msiexec /i "$(winepath -w "$msi1" 2>/dev/null || echo "Z:$msi1")" /qn ||
  fail "msiexec /i exit $?"
[ -f "$pf/streambrokerd.exe" ] && [ -f "$pf/sbcat.exe" ] && [ -f "$pf/sdk/streambroker.h" ] ||
  fail "program files not installed"
await running || fail "the service is not RUNNING after install"
await test -f "$pd/streambroker.json" || fail "no config written on first start"
# The shipped config has no log_file: the service logs under ProgramData.
await grep -q "running as the service StreamBroker" "$pd/logs/streambrokerd.log" ||
  fail "no service log in $pd/logs"
evkey='HKLM\SYSTEM\CurrentControlSet\Services\EventLog\Application\StreamBroker'
envkey='HKLM\SYSTEM\CurrentControlSet\Control\Session Manager\Environment'
on_path() { run reg query "$envkey" /v Path | has -i 'C:\\Program Files\\streambroker'; }
on_path || fail "the install did not put C:\Program Files\streambroker on the system PATH"
run reg query "$evkey" /v EventMessageFile | has -i 'streambrokerd.exe' ||
  fail "the event source is not registered"
# The service configures its own recovery at start (wixl has no ServiceConfig). Wine
# keeps the preshutdown timeout but not failure actions, so the former is the evidence
# here that the call was made.
await sh -c "'$top/tests/windows/wine-run.sh' reg query \
  'HKLM\\System\\CurrentControlSet\\Services\\StreamBroker' /v PreshutdownTimeout |
  grep 0x4e20 >/dev/null" || fail "the service did not configure its recovery"
# The failure-actions flag (restarts after a failed start, not only a crash) is set the
# same way, as the start begins; Wine's SCM refuses that level (error 124), and the
# service says so, which shows the call was made.
grep -q "failure-actions flag" "$pd/logs/streambrokerd.log" ||
  fail "the service did not set the failure-actions flag"

echo "hello from the msi" |
  run 'C:\Program Files\streambroker\sbcat.exe' --name msi/hello --server net.pipe:streambroker ||
  fail "sbcat"
await grep -q '"complete":.true' "$pd/archive/msi/hello.json" || fail "stream not archived"
grep -q "hello from the msi" "$pd/archive/msi/hello.log" || fail "archived bytes"
run 'C:\Program Files\streambroker\sbctl.exe' status | has "1 opened" || fail "sbctl status"

# An administrator's edit and the spool must survive the upgrade. In the spool: a
# stream the archive cannot write (a file is where its directory should be).
sed -i 's/"log_level": "info"/"log_level": "debug"/' "$pd/streambroker.json"
grep -q '"log_level": "debug"' "$pd/streambroker.json" || fail "editing the config"
echo "in the way" >"$pd/archive/msi-wait"
echo "waits in the spool" |
  run 'C:\Program Files\streambroker\sbcat.exe' --name msi-wait/x --server net.pipe:streambroker ||
  fail "sbcat while the archive cannot write"
await grep -q '"msi-wait/x": creating directory' "$pd/logs/streambrokerd.log" ||
  fail "the stream did not turn to the spool"
run msiexec /i "$(winepath -w "$msi2" 2>/dev/null || echo "Z:$msi2")" /qn || fail "upgrade"
await running || fail "the service is not RUNNING after the upgrade"
grep -q '"log_level": "debug"' "$pd/streambroker.json" || fail "the upgrade lost the edit"
await grep -q "1 streams to resume" "$pd/logs/streambrokerd.log" ||
  fail "the upgrade lost the spool"
rm "$pd/archive/msi-wait"
await grep -q '"complete":.true' "$pd/archive/msi-wait/x.json" ||
  fail "the spooled stream was not archived after the upgrade"
grep -q "waits in the spool" "$pd/archive/msi-wait/x.log" || fail "spooled bytes"
# A new service process, from the upgraded files: its counters start again.
await sh -c "'$top/tests/windows/wine-run.sh' 'C:\\Program Files\\streambroker\\sbctl.exe' \
  status | grep '0 opened' >/dev/null" || fail "the service was not restarted by the upgrade"
run reg query 'HKLM\Software\Microsoft\Windows\CurrentVersion\Uninstall' /s |
  has '0.1.1' || fail "0.1.1 is not the installed version"

# A downgrade is refused and changes nothing.
if run msiexec /i "$(winepath -w "$msi1" 2>/dev/null || echo "Z:$msi1")" /qn; then
  fail "the downgrade was accepted"
fi
await running || fail "the service stopped after the refused downgrade"

# Wine's msiexec does not wait for ServiceControl's stop (its StopServices sends STOP and
# goes on; its +msi trace then shows "failed to delete ...streambrokerd.exe (5)" whenever
# the service process outlives the next few actions), where Windows Installer waits for
# STOPPED (Wait 1, checked above). So the test waits as Windows Installer does: it stops
# the service (net stop waits) before the uninstall. The upgrade above stopped a running
# service through ServiceControl itself.
run net stop StreamBroker >/dev/null || fail "net stop"
await stopped_or_gone || fail "the service still runs after net stop"
await sh -c "! pgrep -f '[P]rogram Files.streambroker.streambrokerd.exe' >/dev/null" ||
  fail "the service process did not exit after net stop"
run msiexec /x "$(winepath -w "$msi2" 2>/dev/null || echo "Z:$msi2")" /qn || fail "uninstall"
await stopped_or_gone || fail "the service still runs after uninstall"
run sc query StreamBroker >/dev/null 2>&1 && fail "the service is still registered"
run reg query "$evkey" >/dev/null 2>&1 && fail "the event source is still registered"
[ ! -e "$pf/streambrokerd.exe" ] || fail "program files left after uninstall"
[ -f "$pd/streambroker.json" ] && [ -f "$pd/spool.db" ] || fail "config or spool removed"
grep -q '"log_level": "debug"' "$pd/streambroker.json" || fail "config changed by uninstall"
on_path && fail "the uninstall left C:\Program Files\streambroker on the system PATH"
run reg query "$envkey" /v Path | has -i 'system32' || fail "the uninstall broke the PATH"

# ---- install-time properties (UPSTREAM, ARCHIVEDIR, DATADIR), written into a new config
# only; a failing start that net start must not report as a success ----
msiw2=$(winepath -w "$msi2" 2>/dev/null || echo "Z:$msi2")
props=(UPSTREAM=net.pipe:sb-msi-up 'ARCHIVEDIR=C:\sbmsi\archive' 'DATADIR=C:\sbmsi\data')
# An existing config is never touched, whatever the properties say.
cp "$pd/streambroker.json" "$build/msi-config-before.json"
run msiexec /i "$msiw2" /qn "${props[@]}" || fail "install with properties over a config"
await running || fail "the service is not RUNNING after the install with properties"
cmp "$pd/streambroker.json" "$build/msi-config-before.json" ||
  fail "the install with properties changed an existing config"
on_path || fail "the second install did not put the tools on the PATH"
run net stop StreamBroker >/dev/null || fail "net stop"
await stopped_or_gone || fail "the service still runs after net stop"
run msiexec /x "$msiw2" /qn || fail "uninstall"
# No config: the properties make the new one.
rm "$pd/streambroker.json"
run msiexec /i "$msiw2" /qn "${props[@]}" || fail "install with properties"
await running || fail "the service is not RUNNING on the properties' config"
grep -q '"upstream":.*"net.pipe:sb-msi-up"' "$pd/streambroker.json" || fail "UPSTREAM not in the config"
grep -qE '"archive_dir":[[:space:]]*"C:\\\\sbmsi\\\\archive"' "$pd/streambroker.json" ||
  fail "ARCHIVEDIR not in the config"
grep -qE '"data_dir":[[:space:]]*"C:\\\\sbmsi\\\\data"' "$pd/streambroker.json" ||
  fail "DATADIR not in the config"
await test -f "$SB_WINEPREFIX/drive_c/sbmsi/data/spool.db" || fail "the spool is not in DATADIR"
run 'C:\Program Files\streambroker\sbctl.exe' status | has 'sb-msi-up' ||
  fail "the service does not forward to UPSTREAM"
# The tools by name, through the PATH the install set (a new process's environment
# comes from the registry under Wine too).
run cmd /c 'sbctl status' | has 'sb-msi-up' || fail "sbctl is not found on the PATH"

# net start of a service whose start fails at once: an error, with the exit code.
run net stop StreamBroker >/dev/null || fail "net stop"
await stopped_or_gone || fail "the service still runs after net stop"
cp "$pd/streambroker.json" "$build/msi-config-good.json"
printf '{"max_streams": 0}\n' >"$pd/streambroker.json"
set +e
out=$(run net start StreamBroker 2>&1)
rc=$?
set -e
echo "net start of a failing service: exit $rc: $out"
[ "$rc" -ne 0 ] || fail "net start of a service that fails at once exited 0"
query=$(run sc query StreamBroker 2>&1 || true)
echo "sc query after it: $query"
echo "$query" | has -E 'WIN32_EXIT_CODE *: *1066' || fail "no service-specific error in sc query"
echo "$query" | has -E 'SERVICE_EXIT_CODE *: *3 ' || fail "not the service's exit code 3"
cp "$build/msi-config-good.json" "$pd/streambroker.json"

# A property the config refuses fails the install, saying why in the log.
run msiexec /x "$msiw2" /qn || fail "uninstall"
rm "$pd/streambroker.json"
if run msiexec /i "$msiw2" /qn UPSTREAM=bogus /l*v 'C:\msi-bad.log'; then
  fail "an install with UPSTREAM=bogus succeeded"
fi
[ ! -f "$pd/streambroker.json" ] || fail "a refused UPSTREAM left a config"
stopped_or_gone || fail "a refused UPSTREAM left a running service"
iconv -f UTF-16LE -t UTF-8 "$SB_WINEPREFIX/drive_c/msi-bad.log" 2>/dev/null |
  has -i 'WriteConfig' || echo "note: the MSI log does not name WriteConfig"
run msiexec /x "$msiw2" /qn >/dev/null 2>&1 || true
rm -f "$build/msi-config-before.json" "$build/msi-config-good.json"
echo "1 passed, 0 failed"
