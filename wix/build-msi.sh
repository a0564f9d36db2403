#!/usr/bin/env bash
# build-msi.sh BUILD_DIR [VERSION] - builds BUILD_DIR/streambroker-VERSION-x64.msi from
# the cross-built binaries in BUILD_DIR. VERSION defaults to the project's one version
# number, read from client/include/streambroker.h. wixl takes file sources relative to
# where it runs, so the files are staged in BUILD_DIR/msi-stage first.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(dirname "$here")
build=$(cd "$1" && pwd)
version=${2:-$(awk '/#define SB_VERSION_STRING/ {gsub(/"/, "", $3); print $3}' \
  "$top/client/include/streambroker.h")}
command -v wixl >/dev/null || {
  echo "build-msi.sh: wixl is missing (apt-get install wixl)" >&2
  exit 1
}
stage=$build/msi-stage
rm -rf "$stage"
mkdir -p "$stage"
for f in streambrokerd.exe sbcat.exe sbrun.exe sbctl.exe libstreambroker.dll; do
  cp "$build/bin/$f" "$stage/"
done
cp "$build/lib/libstreambroker.dll.a" "$stage/"
cp "$top/client/include/streambroker.h" "$top/README.md" "$top/config/KEYS.md" "$stage/"
cp "$top/config/streambroker.json" "$stage/streambroker.default.json"
out=$build/streambroker-$version-x64.msi
(cd "$stage" && wixl -a x64 -D Version="$version" -o "$out" "$here/streambroker.wxs")
# The install-time properties (streambroker.wxs) pass to the elevated install only as
# secure properties; wixl writes SecureCustomProperties itself (MajorUpgrade's).
secure=$(msiinfo export "$out" Property | awk -F'\t' '$1 == "SecureCustomProperties" {print $2}' |
  tr -d '\r')
msibuild "$out" -q "UPDATE \`Property\` SET \`Value\` = '${secure:+$secure;}UPSTREAM;ARCHIVEDIR;DATADIR' WHERE \`Property\` = 'SecureCustomProperties'"
echo "$out"
