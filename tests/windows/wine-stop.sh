#!/usr/bin/env bash
# wine-stop.sh - stops the wineserver of this test run's prefix, and no other.
set -u
: "${SB_WINEPREFIX:?SB_WINEPREFIX must name the Wine prefix for this test run}"
[ -d "$SB_WINEPREFIX" ] || exit 0
WINEPREFIX=$SB_WINEPREFIX wineserver -k 2>/dev/null
exit 0
