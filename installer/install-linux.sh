#!/usr/bin/env bash
# install-linux.sh - installs streambroker from a build tree on a systemd machine:
# binaries, library and header, the default config (never over an existing one), the
# systemd unit, and the streambroker system user; then enables and (re)starts the
# service.
#
#   bash installer/install-linux.sh [BUILD_DIR]     (default build/linux; builds in it
#                                                   whatever of the install is missing)
#   PREFIX   where binaries go (default /usr/local)
#   DESTDIR  stage into this directory instead (no user, no systemctl): for packaging
#            and for the install test
#
# All or nothing: every file is first made in a staging directory and checked (the
# config with the staged streambrokerd), then copied beside its destination, and only
# when every copy succeeded renamed over it (a running streambrokerd keeps its old
# binary until the restart). A failure on the way removes what it had copied and
# leaves the installed files as they were. Running it again updates an install.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$top/build/linux}
prefix=${PREFIX:-/usr/local}
dest=${DESTDIR:-}

log() { printf '==> install: %s\n' "$*" >&2; }

if [ -z "$dest" ] && [ "$(id -u)" -ne 0 ]; then
  log "run as root (or set DESTDIR to stage the files)"
  exit 1
fi

# What the install takes from the build tree; whatever is missing is built.
tools=(streambrokerd sbcat sbrun sbctl)
missing=()
for p in "${tools[@]}"; do
  [ -x "$build/bin/$p" ] || missing+=("$p")
done
[ -e "$build/lib/libstreambroker.a" ] || missing+=(streambroker_static)
[ -e "$build/lib/libstreambroker.so" ] || missing+=(streambroker)
if [ ${#missing[@]} -gt 0 ]; then
  log "building ${missing[*]} in $build"
  SB_BUILD_DIR=$(dirname "$build") bash "$top/installer/dev.sh" build "${missing[@]}" >/dev/null
fi

stage=$(mktemp -d)
placed=()
cleanup() {
  local f
  for f in "${placed[@]}"; do rm -f "$f.sb-new"; done
  rm -rf "$stage"
}
trap cleanup EXIT

bindir=$prefix/bin
docdir=$prefix/share/doc/streambroker
s=$stage
install -d -m 0755 "$s$bindir" "$s$prefix/lib" "$s$prefix/include" "$s$docdir" \
  "$s/etc/streambroker" "$s/etc/systemd/system"
for p in "${tools[@]}"; do
  install -m 0755 "$build/bin/$p" "$s$bindir/$p"
done
install -m 0644 "$build/lib/libstreambroker.a" "$s$prefix/lib/"
cp -P "$build"/lib/libstreambroker.so* "$s$prefix/lib/"
install -m 0644 "$top/client/include/streambroker.h" "$s$prefix/include/"
install -m 0644 "$top/README.md" "$top/config/KEYS.md" "$s$docdir/"

# An administrator's edited config is kept; the shipped one goes beside it.
if [ -e "$dest/etc/streambroker/streambroker.json" ]; then
  install -m 0644 "$top/config/streambroker.json" "$s/etc/streambroker/streambroker.json.default"
  config=$dest/etc/streambroker/streambroker.json
  log "keeping /etc/streambroker/streambroker.json; the shipped one is streambroker.json.default"
else
  install -m 0644 "$top/config/streambroker.json" "$s/etc/streambroker/streambroker.json"
  config=$s/etc/streambroker/streambroker.json
fi
"$s$bindir/streambrokerd" --check-config "$config" >/dev/null

sed -e "s|@BINDIR@|$bindir|g" -e "s|@DOCDIR@|$docdir|g" "$top/installer/streambroker.service" \
  >"$s/etc/systemd/system/streambroker.service"
chmod 0644 "$s/etc/systemd/system/streambroker.service"

# Into place: first a copy beside each destination (what can fail: space, a
# directory that is a file), then, once every copy is there, the renames.
files=()
while IFS= read -r -d '' f; do files+=("${f#"$stage"}"); done \
  < <(find "$stage" \( -type f -o -type l \) -print0 | sort -z)
for f in "${files[@]}"; do
  d=$(dirname "$dest$f")
  if ! install -d -m 0755 "$d" 2>/dev/null || ! cp -P --preserve=mode "$stage$f" "$dest$f.sb-new"; then
    log "cannot write $dest$f: nothing was installed"
    exit 1
  fi
  placed+=("$dest$f")
done
for f in "${placed[@]}"; do mv -fT "$f.sb-new" "$f"; done
placed=()

if [ -n "$dest" ]; then
  log "staged into $dest"
  exit 0
fi
ldconfig 2>/dev/null || true # libstreambroker.so.0 for programs linked to it
if ! getent passwd streambroker >/dev/null; then
  log "creating the system user streambroker"
  useradd --system --user-group --no-create-home --home-dir /var/lib/streambroker \
    --shell /usr/sbin/nologin streambroker
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable streambroker.service
  # restart: a second install's binaries take over (start when it was not running).
  systemctl restart streambroker.service
  log "streambroker.service enabled and (re)started"
else
  log "systemd is not running here: start $bindir/streambrokerd yourself"
fi
