#!/usr/bin/env bash
# wine-run.sh PROGRAM ARGS... - runs a Windows program of the test suite under Wine,
# in the prefix named by SB_WINEPREFIX (one per test run, under the build directory).
# The first use creates the prefix, under a lock, so parallel tests share one. The
# program's exit code is this script's.
set -euo pipefail
: "${SB_WINEPREFIX:?SB_WINEPREFIX must name the Wine prefix for this test run}"
export WINEPREFIX=$SB_WINEPREFIX
export WINEDEBUG=-all
export WINEDLLOVERRIDES="mscoree,mshtml=;winemenubuilder.exe=d"
export DISPLAY=
mkdir -p "$(dirname "$WINEPREFIX")"
wine=wine
command -v wine64 >/dev/null 2>&1 && wine=wine64
[ -x /usr/lib/wine/wine64 ] && wine=/usr/lib/wine/wine64
(
  flock 9
  if [ ! -f "$WINEPREFIX/.sb-ready" ]; then
    "$wine" wineboot -i >/dev/null 2>&1 || true
    wineserver -w
    touch "$WINEPREFIX/.sb-ready"
  fi
) 9>"$WINEPREFIX.lock"
exec "$wine" "$@"
