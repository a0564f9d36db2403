#!/usr/bin/env bash
# test-eventlog.sh BUILD_DIR - what streambrokerd reports to the Windows Event Log,
# under Wine: integration.ops_eventlog_reports runs with WINEDEBUG=+eventlog, which
# makes Wine's ReportEventW print each event on the Unix standard error, typed:
# "trace:eventlog" (information), "warn:eventlog" (warning), "err:eventlog" (error).
# Checked here: the start (information, version, config, pipe), a flood of bad
# clients held to the per-user burst, the "suppressed N" event once it
# refilled, and a failed start (error, with the reason). Needs SB_WINEPREFIX.
set -euo pipefail
build=$(cd "$1" && pwd)
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
burst=$(awk '/#define SB__EVENTLOG_BURST/ {print $3}' "$top/service/src/internal.h")
refill=$(awk '/#define SB__EVENTLOG_REFILL_MS/ {print $3}' "$top/service/src/internal.h")
version=$(awk '/#define SB_VERSION_STRING/ {gsub(/"/, "", $3); print $3}' \
  "$top/client/include/streambroker.h")
out=$(mktemp -d)
fail() {
  echo "FAIL: $*" >&2
  echo "kept for inspection: $out" >&2
  exit 1
}

SB_WINEDEBUG=+eventlog "$top/tests/windows/wine-run.sh" "$build/bin/sb_itest.exe" \
  ops_eventlog_reports >"$out/stdout" 2>"$out/stderr" || fail "the test program failed"
grep -q '^ok - ops_eventlog_reports' "$out/stdout" || fail "the test program did not pass"
address=$(sed -n 's/^eventlog-check: address //p' "$out/stdout" | tr -d '\r')
flood_ms=$(sed -n 's/^eventlog-check: flood of [0-9]* bad clients in \([0-9]*\) ms.*/\1/p' \
  "$out/stdout")
nbad=$(sed -n 's/^eventlog-check: flood of \([0-9]*\) bad clients.*/\1/p' "$out/stdout")
[ -n "$address" ] && [ -n "$flood_ms" ] || fail "no figures from the test program"

# The start: information, naming version, config and the pipe it serves.
grep -q "trace:eventlog:ReportEventW L\"streambrokerd $version, config .*serving $address" \
  "$out/stderr" || fail "no start event"
# The flood: at least the burst, at most what the bucket allows, fewer than the clients.
warnings=$(grep -c 'warn:eventlog:ReportEventW L"session: connection .*bad handshake' \
  "$out/stderr" || true)
allowed=$((burst + flood_ms / refill + 2)) # + the one after the pause
[ "$warnings" -ge "$burst" ] || fail "$warnings bad-client warnings, want at least $burst"
[ "$warnings" -le "$allowed" ] && [ "$warnings" -lt "$nbad" ] ||
  fail "$warnings bad-client warnings for $nbad clients in $flood_ms ms (at most $allowed)"
# What was held back is said: by the per-user limit in front of the log (one user's
# flood, as here, meets it first) or by the Event Log's own bucket (many users).
grep -Eq 'warn:eventlog:ReportEventW L"([0-9]* messages suppressed|[a-z]*: suppressed [0-9]* warnings caused by)' \
  "$out/stderr" || fail "no \"suppressed\" event"
# The failed start: an error, with the reason.
grep -q 'err:eventlog:ReportEventW L".*bad.json:1: key \\"max_streams\\"' "$out/stderr" ||
  fail "no error event for the failed start"
# "%%" in a reason: a word joiner (U+2060) between the two, so the Event Viewer does
# not expand "%%41" as parameter message 41.
grep -q 'err:eventlog:ReportEventW L".*x%\\2060%41' "$out/stderr" ||
  fail "no error event with its %% kept apart ($(grep -o 'x%[^ ]*41' "$out/stderr" | head -1))"
rm -rf "$out"
echo "1 passed, 0 failed"
