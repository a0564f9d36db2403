#!/usr/bin/env bash
# test-install-linux.sh BUILD_DIR - stages the Linux install into a temporary DESTDIR
# and checks what it put where; then stages again over an edited config, which must
# survive; checks that a failed install leaves nothing; and checks the unit file
# with systemd-analyze when that is available.
set -euo pipefail
build=$1
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

DESTDIR=$dest PREFIX=/usr bash "$top/installer/install-linux.sh" "$build" 2>/dev/null
for f in usr/bin/streambrokerd usr/bin/sbcat usr/bin/sbrun usr/bin/sbctl \
  usr/include/streambroker.h usr/lib/libstreambroker.a usr/lib/libstreambroker.so \
  usr/share/doc/streambroker/README.md etc/streambroker/streambroker.json \
  etc/systemd/system/streambroker.service; do
  [ -e "$dest/$f" ] || fail "missing $f"
done
[ "$(stat -c %a "$dest/usr/bin/streambrokerd")" = 755 ] || fail "streambrokerd mode"
unit=$dest/etc/systemd/system/streambroker.service
grep -q '^ExecStart=/usr/bin/streambrokerd --config /etc/streambroker/streambroker.json$' \
  "$unit" || fail "ExecStart"
grep -q '^User=streambroker$' "$unit" || fail "User"
grep -q '^RuntimeDirectory=streambroker$' "$unit" || fail "RuntimeDirectory"
grep -q '^StateDirectory=streambroker$' "$unit" || fail "StateDirectory"
grep -q '^Type=notify$' "$unit" || fail "Type=notify"
grep -qE '@(BINDIR|DOCDIR)@' "$unit" && fail "unfilled placeholder in the unit"
"$dest/usr/bin/streambrokerd" --check-config "$dest/etc/streambroker/streambroker.json" |
  grep -q valid || fail "installed config is not valid"

# An edited config survives a second install.
echo '{"log_level": "debug"}' >"$dest/etc/streambroker/streambroker.json"
DESTDIR=$dest PREFIX=/usr bash "$top/installer/install-linux.sh" "$build" 2>/dev/null
grep -q debug "$dest/etc/streambroker/streambroker.json" || fail "edited config replaced"
[ -e "$dest/etc/streambroker/streambroker.json.default" ] || fail "no .default beside it"

# All or nothing: where one file cannot be put (its directory is a file: the config's,
# or the docs', which come after the binaries), no other is left behind, not even the
# copies made beside their destinations.
for blocker in etc/streambroker usr/share/doc/streambroker; do
  bad=$(mktemp -d)
  trap 'rm -rf "$dest" "$bad"' EXIT
  mkdir -p "$bad/$(dirname "$blocker")"
  : >"$bad/$blocker"
  if DESTDIR=$bad PREFIX=/usr bash "$top/installer/install-linux.sh" "$build" 2>/dev/null; then
    fail "an install that cannot write $blocker succeeded"
  fi
  left=$(cd "$bad" && find . -type f ! -path "./$blocker")
  [ -z "$left" ] || fail "a failed install ($blocker) left files: $left"
  rm -rf "$bad"
done
trap 'rm -rf "$dest"' EXIT

if command -v systemd-analyze >/dev/null 2>&1; then
  # verify resolves ExecStart against the real root: point it at the staged binary.
  sed "s|^ExecStart=/usr/bin/|ExecStart=$dest/usr/bin/|" "$unit" >"$dest/streambroker.service"
  systemd-analyze verify "$dest/streambroker.service" || fail "systemd-analyze verify"
fi
echo "1 passed, 0 failed"
