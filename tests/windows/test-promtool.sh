#!/usr/bin/env bash
# test-promtool.sh BUILD_DIR - the Windows build's sbctl metrics through Prometheus'
# linter: integration.admin_metrics_promtool runs under Wine (a service in archive mode
# and one forwarding to it, sbctl.exe metrics of each) and saves both outputs in
# SB_METRICS_DIR; promtool check metrics (Debian package prometheus) reads them here,
# since a Windows program cannot wait for a Linux one. Needs SB_WINEPREFIX.
set -euo pipefail
build=$(cd "$1" && pwd)
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=$(mktemp -d)
fail() {
  echo "FAIL: $*" >&2
  echo "kept for inspection: $out" >&2
  exit 1
}
command -v promtool >/dev/null || fail "no promtool (apt-get install prometheus)"

SB_METRICS_DIR="Z:$out" "$top/tests/windows/wine-run.sh" "$build/bin/sb_itest.exe" \
  admin_metrics_promtool >"$out/stdout" 2>"$out/stderr" || fail "the test program failed"
grep -q '^ok - admin_metrics_promtool' "$out/stdout" || fail "the test program did not pass"
winpath() { printf 'Z:%s' "${1//\//\\}"; }
for mode in archive forward; do
  # What the README's scheduled task does: sbctl.exe metrics > file, through cmd.
  [ -s "$out/$mode-status.json" ] || fail "no $mode-status.json saved"
  "$top/tests/windows/wine-run.sh" cmd /c "$(winpath "$build/bin/sbctl.exe") --from \
$(winpath "$out/$mode-status.json") metrics > $(winpath "$out/$mode-cmd.prom")" \
    </dev/null >>"$out/stdout" 2>>"$out/stderr" || fail "sbctl.exe metrics through cmd failed"
  for f in "$out/$mode.prom" "$out/$mode-cmd.prom"; do
    [ -s "$f" ] || fail "no $(basename "$f") saved"
    if grep -q $'\r' "$f"; then fail "$(basename "$f") has CR line ends"; fi
    promtool check metrics <"$f" >"$out/lint" 2>&1 ||
      fail "promtool check metrics ($(basename "$f")): $(cat "$out/lint")"
    [ ! -s "$out/lint" ] || fail "promtool ($(basename "$f")): $(cat "$out/lint")"
  done
done
rm -rf "$out"
echo "1 passed, 0 failed"
