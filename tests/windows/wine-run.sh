#!/usr/bin/env bash
# wine-run.sh PROGRAM [ARGS...] - runs a Windows program under Wine (64-bit), for the
# tests of the Windows cross-build (CMAKE_CROSSCOMPILING_EMULATOR of
# installer/mingw-w64-x86_64.cmake). Exits with the program's exit code.
#
#   SB_WINEPREFIX  the Wine prefix to use (required; ctest sets one per build tree).
#                  Created on first use: under a lock (<prefix>.lock), so tests started
#                  in parallel wait for one initialisation instead of racing.
#   SB_WINE        the wine loader to use (default: wine64, found below)
#   SB_WINEDEBUG   Wine's debug channels (default -all); e.g. +eventlog makes every
#                  ReportEventW print its event on standard error, where a test reads it
#
# Wine's own chatter is silenced (WINEDEBUG=-all) unless SB_WINEDEBUG says otherwise,
# no Mono/Gecko install is offered, and no display is used.
set -euo pipefail

me="wine-run.sh"
if [ $# -eq 0 ]; then
  echo "usage: $me PROGRAM [ARGS...]" >&2
  exit 2
fi
if [ -z "${SB_WINEPREFIX:-}" ]; then
  echo "$me: SB_WINEPREFIX is not set: it must name the Wine prefix to run in" >&2
  exit 125
fi
prefix=$SB_WINEPREFIX
case "$prefix" in /*) ;; *) prefix="$PWD/$prefix" ;; esac
prefix=${prefix%/}

# The 64-bit loader: Debian's wine64 package puts it in /usr/lib/wine (not on PATH);
# the /usr/bin/wine wrapper picks it too when wine32 is absent.
wine=${SB_WINE:-}
if [ -z "$wine" ]; then
  for w in /usr/lib/wine/wine64 "$(command -v wine64 2>/dev/null || true)" \
    /usr/lib/x86_64-linux-gnu/wine/wine64 /opt/wine-stable/bin/wine64 \
    "$(command -v wine 2>/dev/null || true)"; do
    if [ -n "$w" ] && [ -x "$w" ]; then wine=$w; break; fi
  done
fi
if [ -z "$wine" ]; then
  echo "$me: no wine64 found (apt-get install wine wine64)" >&2
  exit 125
fi
case "$(basename "$wine")" in
wine64*) export WINELOADER=${WINELOADER:-$wine} ;;
esac
# The wineserver that matches the loader.
wineserver=$(dirname "$wine")/wineserver
[ -x "$wineserver" ] || wineserver=$(command -v wineserver)

export WINEPREFIX=$prefix
export WINEARCH=win64
export WINEDEBUG=${SB_WINEDEBUG:--all}
export WINEDLLOVERRIDES="mscoree,mshtml=;winemenubuilder.exe=d"
export DISPLAY=
unset WAYLAND_DISPLAY

# First use: create the prefix once, and wait until Wine has finished writing it.
ready="$prefix/.sb-wineprefix-ready"
if [ ! -f "$ready" ]; then
  mkdir -p "$(dirname "$prefix")"
  exec 9>"$prefix.lock"
  flock 9
  if [ ! -f "$ready" ]; then
    echo "$me: creating Wine prefix $prefix" >&2
    if ! "$wine" wineboot -i >"$prefix.init.log" 2>&1; then
      echo "$me: wineboot -i failed in $prefix (log: $prefix.init.log)" >&2
      exit 125
    fi
    "$wineserver" -w # the registry is written out when the server exits
    touch "$ready"
  fi
  flock -u 9
  exec 9>&-
fi

# One server for the whole test run: without -p it exits a moment after its last
# process, and a test starting in that moment fails with "recvmsg: Connection reset".
# When this call starts it (exit 0; 2 means one runs already), Wine's background
# processes (services, devices) are started here with no stdio of ours, or they would
# hold the test runner's pipes open for as long as the server lives. wine-stop.sh
# ends it all.
exec 9>"$prefix.lock"
flock 9
if "$wineserver" -p </dev/null >/dev/null 2>&1; then
  "$wine" wineboot </dev/null >/dev/null 2>&1 || true
fi
flock -u 9
exec 9>&-

exec "$wine" "$@"
