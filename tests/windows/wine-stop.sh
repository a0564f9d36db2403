#!/usr/bin/env bash
# wine-stop.sh [PREFIX] - stops the wineserver (and so every Windows process) of one Wine
# prefix: PREFIX, else $SB_WINEPREFIX, and removes the server's directory under /tmp.
# Other prefixes are left alone. Succeeds when no server is running there, or when the
# prefix does not exist.
set -uo pipefail

me="wine-stop.sh"
prefix=${1:-${SB_WINEPREFIX:-}}
if [ -z "$prefix" ]; then
  echo "$me: no prefix: pass one or set SB_WINEPREFIX" >&2
  exit 2
fi
case "$prefix" in /*) ;; *) prefix="$PWD/$prefix" ;; esac
prefix=${prefix%/}
[ -d "$prefix" ] || exit 0

wineserver=/usr/lib/wine/wineserver
[ -x "$wineserver" ] || wineserver=$(command -v wineserver) || exit 0

# wineserver -k talks to this prefix's server only (its socket is found from
# WINEPREFIX); it fails harmlessly when none is running.
WINEPREFIX=$prefix "$wineserver" -k >/dev/null 2>&1 || true
WINEPREFIX=$prefix timeout 30 "$wineserver" -w >/dev/null 2>&1 || true

# The server's directory stays behind in /tmp: wine-XXXXXX/server-DEV-INODE, named
# after the prefix's device and inode (hex). It goes with its server.
server_dir=$(printf 'server-%x-%x' $(stat -c '%d %i' "$prefix"))
for d in /tmp/wine-*/"$server_dir" /tmp/.wine-"$(id -u)"/"$server_dir"; do
  [ -d "$d" ] || continue
  rm -rf "$d"
  rmdir "$(dirname "$d")" 2>/dev/null || true
done
exit 0
