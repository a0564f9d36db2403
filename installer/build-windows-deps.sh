#!/usr/bin/env bash
# build-windows-deps.sh - cross-builds libuv, SQLite and cJSON as static libraries for
# x86_64-w64-mingw32 from Debian's own source packages (apt-get source), and installs
# them into a prefix outside the source tree, for installer/mingw-w64-x86_64.cmake:
#
#   <prefix>/include/uv.h, include/uv/*.h      <prefix>/lib/libuv.a
#   <prefix>/include/sqlite3.h                 <prefix>/lib/libsqlite3.a
#   <prefix>/include/cjson/cJSON.h             <prefix>/lib/libcjson.a
#
# A run whose source package versions and script are those of the last build only
# checks that and exits.
#
# Environment:
#   SB_WIN_DEPS      the prefix (default /var/cache/streambroker/win-deps/x86_64-w64-mingw32)
#   SB_WIN_DEPS_SRC  where sources are downloaded, unpacked and built
#                    (default /var/cache/streambroker/win-deps/src)
#   SB_JOBS          parallel build jobs (default: number of CPUs)
#
# Needs root, or sudo, to add a deb-src entry and install missing build tools; nothing is
# changed on the system when both are there already.
set -euo pipefail

host=x86_64-w64-mingw32
prefix=${SB_WIN_DEPS:-/var/cache/streambroker/win-deps/$host}
src=${SB_WIN_DEPS_SRC:-/var/cache/streambroker/win-deps/src}
jobs=${SB_JOBS:-$(nproc 2>/dev/null || echo 2)}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
self="$here/$(basename "${BASH_SOURCE[0]}")"
toolchain="$here/mingw-w64-x86_64.cmake"
src_list=/etc/apt/sources.list.d/streambroker-src.sources
packages=(libuv1 sqlite3 cjson) # Debian source package names

log() { printf '==> win-deps: %s\n' "$*" >&2; }
die() { printf '==> win-deps: error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "need root to run: $*"
  fi
}

# run LOG CMD...: runs CMD with its output in LOG; on failure shows the end of LOG.
run() {
  local logf=$1
  shift
  if ! "$@" >"$logf" 2>&1; then
    tail -n 30 "$logf" >&2
    die "failed: $* (full log: $logf)"
  fi
}

case "$prefix" in /*) ;; *) prefix="$PWD/$prefix" ;; esac
case "$src" in /*) ;; *) src="$PWD/$src" ;; esac

# --- build tools -------------------------------------------------------------------
need_tools() {
  local missing=() p
  # gcc/libc6-dev/tcl/make: the native tools that generate SQLite's amalgamation.
  for p in gcc-mingw-w64-x86-64 binutils-mingw-w64-x86-64 dpkg-dev cmake ninja-build \
    make gcc libc6-dev tcl; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
      missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# --- deb-src entries ---------------------------------------------------------------
# Prints the deb-src stanzas (deb822) mirroring the enabled deb entries of this
# release's archive (suites <codename> and <codename>-*), from deb822 .sources files
# and one-line .list files alike.
deb_src_stanzas() {
  local codename files=() f
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  [ -n "$codename" ] || codename=$(lsb_release -sc 2>/dev/null || true)
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && [ "$f" != "$src_list" ] && files+=("$f")
  done
  if [ ${#files[@]} -gt 0 ]; then
    awk -v cn="$codename" '
      function flush(   i, ok, n, s) {
        if (types ~ /(^|[ \t])deb([ \t]|$)/ && enabled !~ /^[ \t]*no/ && uris != "") {
          n = split(suites, s, /[ \t]+/); ok = ""
          for (i = 1; i <= n; i++)
            if (s[i] == cn || index(s[i], cn "-") == 1) ok = ok " " s[i]
          if (ok != "") {
            printf "Types: deb-src\nURIs:%s\nSuites:%s\nComponents:%s\n", uris, ok, comps
            if (signed != "") printf "Signed-By:%s\n", signed
            printf "\n"
          }
        }
        types = enabled = uris = suites = comps = signed = ""; cur = ""
      }
      FNR == 1 { flush() }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      /^[ \t]/ { if (cur == "signed-by") signed = signed "\n" $0; next }
      {
        key = tolower($0); sub(/:.*/, "", key); val = $0; sub(/^[^:]*:/, "", val); cur = key
        if (key == "types") types = val
        else if (key == "enabled") enabled = val
        else if (key == "uris") uris = val
        else if (key == "suites") suites = val
        else if (key == "components") comps = val
        else if (key == "signed-by") signed = val
      }
      END { flush() }' "${files[@]}"
  fi
  files=()
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] && files+=("$f")
  done
  if [ ${#files[@]} -gt 0 ]; then
    awk -v cn="$codename" '
      $1 != "deb" { next }
      {
        signed = ""; i = 2
        if ($2 ~ /^\[/) {
          for (; i <= NF; i++) {
            o = $i; gsub(/[][]/, "", o)
            if (o ~ /^signed-by=/) { sub(/^signed-by=/, "", o); signed = o }
            if ($i ~ /\]$/) { i++; break }
          }
        }
        uri = $i; suite = $(i + 1); comps = ""
        for (j = i + 2; j <= NF && $j !~ /^#/; j++) comps = comps " " $j
        if (suite != cn && index(suite, cn "-") != 1) next
        printf "Types: deb-src\nURIs: %s\nSuites: %s\nComponents:%s\n", uri, suite, comps
        if (signed != "") printf "Signed-By: %s\n", signed
        printf "\n"
      }' "${files[@]}"
  fi
}

# Prints apt-get source --print-uris for the packages ("pkg=version" allowed); fails
# when apt knows no source for one of them. Runs in an empty directory, since files
# already downloaded to the current one are left out.
print_uris() {
  local d rc=0
  d=$(mktemp -d)
  (cd "$d" && apt-get source --print-uris -qq "$@") || rc=$?
  rmdir "$d"
  return $rc
}

# Sets uris to print_uris of all the packages, adding deb-src entries when needed.
ensure_deb_src() {
  uris=$(print_uris "${packages[@]}" 2>/dev/null) && return 0
  if [ ! -s "$src_list" ]; then
    local stanzas
    stanzas=$(deb_src_stanzas)
    if [ -z "$stanzas" ]; then
      log "no deb entries of this release found to mirror; using deb.debian.org bookworm"
      stanzas=$(printf '%s\n' 'Types: deb-src' 'URIs: http://deb.debian.org/debian' \
        'Suites: bookworm bookworm-updates' 'Components: main' \
        'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' '' \
        'Types: deb-src' 'URIs: http://deb.debian.org/debian-security' \
        'Suites: bookworm-security' 'Components: main' \
        'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg')
    fi
    log "adding deb-src entries: $src_list"
    printf '# Added by streambroker installer/build-windows-deps.sh (apt-get source).\n%s\n' \
      "$stanzas" | as_root tee "$src_list" >/dev/null
  fi
  log "apt-get update (source indexes only)"
  # Only the new file's indexes; the binary ones are left as they are.
  as_root apt-get update -qq -o Dir::Etc::SourceList="$src_list" \
    -o Dir::Etc::SourceParts=- -o APT::Get::List-Cleanup=0 >/dev/null ||
    as_root apt-get update -qq >/dev/null
  uris=$(print_uris "${packages[@]}") ||
    die "apt-get source still finds no source for ${packages[*]} (see $src_list)"
}

# --- main --------------------------------------------------------------------------
need_tools
ensure_deb_src

# Source versions as apt would fetch them now (from the .dsc names, without epoch).
declare -A ver
for p in "${packages[@]}"; do
  ver[$p]=$(printf '%s\n' "$uris" | awk -v p="$p" '
    { f = $2 } index(f, p "_") == 1 && f ~ /\.dsc$/ {
      sub(/\.dsc$/, "", f); print substr(f, length(p) + 2); exit }')
  [ -n "${ver[$p]}" ] || die "cannot tell the version of source package $p"
done
stamp=$(
  for p in "${packages[@]}"; do echo "$p ${ver[$p]}"; done
  echo "script $(sha256sum "$self" | cut -d' ' -f1)"
)
stamp_file="$prefix/.sb-win-deps.stamp"
up_to_date() {
  [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ] &&
    [ -f "$prefix/lib/libuv.a" ] && [ -f "$prefix/include/uv.h" ] &&
    [ -f "$prefix/lib/libsqlite3.a" ] && [ -f "$prefix/include/sqlite3.h" ] &&
    [ -f "$prefix/lib/libcjson.a" ] && [ -f "$prefix/include/cjson/cJSON.h" ]
}
if up_to_date; then
  log "windows deps up to date in $prefix"
  exit 0
fi

for d in "$src" "$(dirname "$prefix")"; do
  mkdir -p "$d" 2>/dev/null || { as_root mkdir -p "$d" && as_root chown "$(id -u):$(id -g)" "$d"; }
done
# One build at a time.
exec 8>"$src/.lock"
flock 8
if up_to_date; then # another run built it meanwhile
  log "windows deps up to date in $prefix"
  exit 0
fi

log "building libuv1 ${ver[libuv1]}, sqlite3 ${ver[sqlite3]}, cjson ${ver[cjson]} for $host (-j$jobs)"
log "sources and logs in $src, install prefix $prefix"
t0=$(date +%s)

# Download. As root, apt-get drops to the _apt user to download: give it the directory.
dl="$src/download"
logs="$src/logs"
mkdir -p "$dl" "$logs"
if [ "$(id -u)" -eq 0 ] && id _apt >/dev/null 2>&1; then
  chown _apt "$dl"
fi
specs=()
for p in "${packages[@]}"; do specs+=("$p=${ver[$p]}"); done
log "apt-get source --download-only ${specs[*]}"
(cd "$dl" && run "$logs/download.log" apt-get source --download-only -q "${specs[@]}")

# Unpack (with Debian's patches applied). apt-get has checked every file against the
# signed archive index; dpkg-source checks the .dsc signature too when debian-keyring
# is installed.
check=(--no-check)
[ -f /usr/share/keyrings/debian-keyring.gpg ] && check=()
build="$src/build"
rm -rf "$build"
mkdir -p "$build"
declare -A dir
for p in "${packages[@]}"; do
  dir[$p]="$build/$p-${ver[$p]}"
  log "unpacking $p ${ver[$p]}"
  run "$logs/unpack-$p.log" dpkg-source "${check[@]}" -x "$dl/${p}_${ver[$p]}.dsc" "${dir[$p]}"
done

stage="$prefix.new"
rm -rf "$stage"
mkdir -p "$stage/include/uv" "$stage/include/cjson" "$stage/lib"

# libuv: its own CMake build, the static target only.
log "libuv: cmake + ninja, target uv_a"
run "$logs/libuv-configure.log" cmake -S "${dir[libuv1]}" -B "$build/uv" -G Ninja \
  -DCMAKE_TOOLCHAIN_FILE="$toolchain" -DCMAKE_BUILD_TYPE=Release \
  -DLIBUV_BUILD_TESTS=OFF -DLIBUV_BUILD_BENCH=OFF -DBUILD_TESTING=OFF
run "$logs/libuv-build.log" cmake --build "$build/uv" --target uv_a -j "$jobs"
uv_a=$(find "$build/uv" -maxdepth 1 -name 'lib*.a' | head -n 1)
[ -n "$uv_a" ] || die "libuv: no static library in $build/uv"
cp "$uv_a" "$stage/lib/libuv.a"
cp "${dir[libuv1]}/include/uv.h" "$stage/include/"
cp "${dir[libuv1]}"/include/uv/*.h "$stage/include/uv/"

# SQLite: Debian's source is the full tree, not the amalgamation. sqlite3.c is the same
# for every platform, so it is generated natively (configure, make sqlite3.c: lemon,
# mkkeywordhash and tclsh), then compiled for Windows.
log "sqlite3: generating the amalgamation (native configure; make sqlite3.c)"
mkdir -p "$build/sqlite"
(cd "$build/sqlite" &&
  run "$logs/sqlite-configure.log" "${dir[sqlite3]}/configure" --disable-tcl \
    --disable-readline --disable-editline &&
  run "$logs/sqlite-amalgamation.log" make -j "$jobs" sqlite3.c sqlite3.h)
log "sqlite3: compiling sqlite3.c for $host"
run "$logs/sqlite-compile.log" $host-gcc -O2 -DSQLITE_THREADSAFE=1 \
  -DSQLITE_OMIT_LOAD_EXTENSION -c "$build/sqlite/sqlite3.c" -o "$build/sqlite/sqlite3.o"
run "$logs/sqlite-ar.log" $host-ar rcs "$stage/lib/libsqlite3.a" "$build/sqlite/sqlite3.o"
cp "$build/sqlite/sqlite3.h" "$stage/include/"

# cJSON: one file. CJSON_HIDE_SYMBOLS: a static library exports nothing from the .exe.
log "cjson: compiling cJSON.c for $host"
run "$logs/cjson-compile.log" $host-gcc -O2 -DCJSON_HIDE_SYMBOLS \
  -c "${dir[cjson]}/cJSON.c" -o "$build/cJSON.o"
run "$logs/cjson-ar.log" $host-ar rcs "$stage/lib/libcjson.a" "$build/cJSON.o"
cp "${dir[cjson]}/cJSON.h" "$stage/include/cjson/"

printf '%s\n' "$stamp" >"$stage/.sb-win-deps.stamp"
rm -rf "$prefix"
mv "$stage" "$prefix"
rm -rf "$build"
log "done in $(( $(date +%s) - t0 )) s: $prefix/lib: $(cd "$prefix/lib" && echo *)"
