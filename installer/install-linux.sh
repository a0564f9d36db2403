#!/usr/bin/env bash
# install-linux.sh - installs streambroker from a build tree on a systemd machine:
# binaries, library and header, the default config (never over an existing one), the
# systemd unit, and the streambroker system user; then enables and starts the service.
#
#   bash installer/install-linux.sh [BUILD_DIR]     (default build/linux; builds it if
#                                                   streambrokerd is missing)
#   PREFIX   where binaries go (default /usr/local)
#   DESTDIR  stage into this directory instead (no user, no systemctl): for packaging
#            and for the install test
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$top/build/linux}
prefix=${PREFIX:-/usr/local}
dest=${DESTDIR:-}

log() { printf '==> install: %s\n' "$*" >&2; }

if [ ! -x "$build/bin/streambrokerd" ]; then
  log "building in $build"
  SB_BUILD_DIR=$(dirname "$build") bash "$top/installer/dev.sh" build >/dev/null
fi
if [ -z "$dest" ] && [ "$(id -u)" -ne 0 ]; then
  log "run as root (or set DESTDIR to stage the files)"
  exit 1
fi

bindir=$prefix/bin
docdir=$prefix/share/doc/streambroker
install -d -m 0755 "$dest$bindir" "$dest$prefix/lib" "$dest$prefix/include" "$dest$docdir"
for p in streambrokerd sbcat sbrun sbctl; do
  install -m 0755 "$build/bin/$p" "$dest$bindir/$p"
done
install -m 0644 "$build/lib/libstreambroker.a" "$dest$prefix/lib/"
cp -P "$build"/lib/libstreambroker.so* "$dest$prefix/lib/"
install -m 0644 "$top/client/include/streambroker.h" "$dest$prefix/include/"
install -m 0644 "$top/README.md" "$top/config/KEYS.md" "$dest$docdir/"

# An administrator's edited config is kept; the shipped one goes beside it.
install -d -m 0755 "$dest/etc/streambroker"
if [ -e "$dest/etc/streambroker/streambroker.json" ]; then
  install -m 0644 "$top/config/streambroker.json" "$dest/etc/streambroker/streambroker.json.default"
  log "kept /etc/streambroker/streambroker.json; the shipped one is streambroker.json.default"
else
  install -m 0644 "$top/config/streambroker.json" "$dest/etc/streambroker/streambroker.json"
fi
"$dest$bindir/streambrokerd" --check-config "$dest/etc/streambroker/streambroker.json" >/dev/null

install -d -m 0755 "$dest/etc/systemd/system"
sed -e "s|@BINDIR@|$bindir|g" -e "s|@DOCDIR@|$docdir|g" "$top/installer/streambroker.service" \
  >"$dest/etc/systemd/system/streambroker.service"
chmod 0644 "$dest/etc/systemd/system/streambroker.service"

if [ -n "$dest" ]; then
  log "staged into $dest"
  exit 0
fi
if ! getent passwd streambroker >/dev/null; then
  log "creating the system user streambroker"
  useradd --system --user-group --no-create-home --home-dir /var/lib/streambroker \
    --shell /usr/sbin/nologin streambroker
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable --now streambroker.service
  log "streambroker.service enabled and started"
else
  log "systemd is not running here: start $bindir/streambrokerd yourself"
fi
