#!/usr/bin/env bash
# dev.sh - set up a Debian machine, build, run and test streambroker.
#
#   bash installer/dev.sh run    install what is missing, build the service and its
#                                tools (saying where they are), run streambrokerd in
#                                the foreground on the default config
#   bash installer/dev.sh test   install what is missing, build for Linux (plain and
#                                ASan+UBSan with the fuzzers) and for Windows, run all
#                                tests (the Windows ones under Wine) and the README's
#                                quick start on a fresh clone (tests/readme-quickstart.sh);
#                                fails too when the run left new entries in /tmp, and
#                                lists them
#   bash installer/dev.sh build [TARGET...]  build for Linux only (everything, or the
#                                cmake targets named)
#
# Build trees go to build/ (override with SB_BUILD_DIR). Needs root, or sudo, to install
# packages; nothing is installed when everything is present already.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${SB_BUILD_DIR:-$top/build}
jobs=$(nproc 2>/dev/null || echo 2)

log() { printf '==> %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else log "need root to run: $*"; exit 1
  fi
}

# Installs the Debian packages given that are not installed yet.
need_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
      missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

linux_deps() {
  need_packages build-essential cmake ninja-build pkg-config libuv1-dev libsqlite3-dev \
    libcjson-dev sqlite3
}

test_deps() {
  linux_deps
  # prometheus: promtool, which lints sbctl metrics (integration.admin_metrics_promtool,
  # tests/windows/test-promtool.sh); git: the quick-start test clones the tree.
  need_packages clang libclang-rt-14-dev llvm python3 prometheus git
}

windows_deps() {
  need_packages gcc-mingw-w64-x86-64 wine wine64 wixl msitools
  bash "$top/installer/build-windows-deps.sh"
}

configure() { # dir, cmake args...
  local dir=$1
  shift
  cmake -S "$top" -B "$dir" -G Ninja "$@" >/dev/null
}

build_linux() { # targets... (none: everything)
  local targets=()
  [ $# -gt 0 ] && targets=(--target "$@")
  configure "$build/linux" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSB_WERROR=ON \
    -DSB_BUILD_TESTS=ON
  cmake --build "$build/linux" -j "$jobs" "${targets[@]}"
}

cmd=${1:-}
case "$cmd" in
run)
  linux_deps
  build_linux streambrokerd sbcat sbrun sbctl
  bindir=$build/linux/bin
  bin="$bindir/streambrokerd"
  log "built in $bindir: streambrokerd sbcat sbrun sbctl"
  log "for the README's examples, in another shell: export PATH=\"$bindir:\$PATH\""
  log "starting $bin --config $top/config/streambroker.json (Ctrl+C stops it)"
  exec "$bin" --config "$top/config/streambroker.json"
  ;;
build)
  linux_deps
  build_linux "${@:2}"
  ;;
test)
  test_deps
  windows_deps
  start=$(date +%s)
  log "Linux build"
  build_linux
  log "Linux ASan+UBSan build with the libFuzzer targets (clang)"
  CC=clang configure "$build/asan" -DCMAKE_BUILD_TYPE=Debug -DSB_WERROR=ON \
    -DSB_SANITIZE=ON -DSB_FUZZ=ON
  cmake --build "$build/asan" -j "$jobs"
  log "Windows cross-build (mingw-w64)"
  configure "$build/windows" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSB_WERROR=ON \
    -DCMAKE_TOOLCHAIN_FILE="$top/installer/mingw-w64-x86_64.cmake"
  cmake --build "$build/windows" -j "$jobs"

  # What the tests leave in /tmp: a passing test removes what it made, so the entries
  # after the run must be those before it. Wine's server directory (.wine-UID) is
  # Wine's own, made by the first Wine program and kept for every later one.
  tmp=${TMPDIR:-/tmp}
  tmp_before=$(mktemp)
  ls -A "$tmp" | grep -v -x -e "$(basename "$tmp_before")" -e ".wine-$(id -u)" \
    | sort >"$tmp_before" || true

  status=0
  log "tests: Linux"
  ctest --test-dir "$build/linux" --no-tests=error --output-on-failure -j "$jobs" || status=1
  log "tests: the README's quick start and examples, on a fresh clone"
  bash "$top/tests/readme-quickstart.sh" || status=1
  log "tests: Linux, ASan+UBSan, and fuzzing"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir "$build/asan" --no-tests=error --output-on-failure -j "$jobs" || status=1
  log "tests: Windows, under Wine"
  ctest --test-dir "$build/windows" --no-tests=error --output-on-failure -j "$jobs" || status=1
  tmp_after=$(ls -A "$tmp" | grep -v -x -e "$(basename "$tmp_before")" -e ".wine-$(id -u)" \
    | sort || true)
  leaked=$(comm -13 "$tmp_before" - <<<"$tmp_after")
  rm -f "$tmp_before"
  if [ -n "$leaked" ]; then
    log "the tests left $(wc -l <<<"$leaked") entries in $tmp (another program may have made some):"
    while read -r e; do
      printf '    %s (%s)\n' "$tmp/$e" "$(du -sh "$tmp/$e" 2>/dev/null | cut -f1)" >&2
    done <<<"$leaked"
    status=1
  else
    log "the tests left nothing in $tmp"
  fi
  log "all tests done in $(( $(date +%s) - start )) s: $([ $status -eq 0 ] && echo passed || echo FAILED)"
  exit $status
  ;;
*)
  sed -n '2,/^[^#]/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'
  exit 2
  ;;
esac
