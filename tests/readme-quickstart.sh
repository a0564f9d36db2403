#!/usr/bin/env bash
# readme-quickstart.sh - what a new user does first, on a fresh clone of this tree's
# HEAD: the README's quick start (bash installer/dev.sh run, the service in the
# foreground on the shipped config), then, from another shell with the PATH line the
# README gives, each README example that runs as written (placeholders such as
# "some-program" and "make -j8" given something to run), then the Linux install
# staged into a DESTDIR (which must build what the quick start did not). Every
# example is first looked up in README.md word for word, so the README cannot drift
# from what this runs. Run as root (the shipped config uses /run/streambroker and
# /var/lib/streambroker); needs no other streambrokerd on that config. Removes what
# it made: the clone, the streams it archived, and those directories when it made
# them. dev.sh test runs it.
# shellcheck disable=SC2016 # the README's lines are matched as written, $ and all
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readme=$top/README.md
sock=/run/streambroker/streambroker.sock
archive=/var/lib/streambroker/archive
work=$(mktemp -d)
daemon=
made_run=0
made_lib=0
[ -e /run/streambroker ] || made_run=1
[ -e /var/lib/streambroker ] || made_lib=1
before=$work/archive-before
{ [ -d "$archive" ] && find "$archive" -type f | sort; } >"$before" || true
passed=0

cleanup() {
  local rc=$?
  if [ -n "$daemon" ] && kill -0 "$daemon" 2>/dev/null; then
    kill -TERM "$daemon" 2>/dev/null || true
    wait "$daemon" 2>/dev/null || true
  fi
  # The streams this run archived (files that were not there before), and the
  # directories the service made when they were not there before.
  if [ -d "$archive" ]; then
    find "$archive" -type f | sort | comm -13 "$before" - | while IFS= read -r f; do
      rm -f "$f"
    done
  fi
  [ $made_lib -eq 0 ] || rm -rf /var/lib/streambroker
  [ $made_run -eq 0 ] || rm -rf /run/streambroker
  if [ $rc -ne 0 ]; then
    echo "readme-quickstart: FAILED; the service's output:" >&2
    tail -n 30 "$work/run.log" >&2 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "readme-quickstart: FAIL: $*" >&2
  exit 1
}
# The README must show this line (a command, or the start of one) word for word.
in_readme() {
  grep -qF -- "$1" "$readme" || fail "the README no longer shows: $1"
}
ok() {
  passed=$((passed + 1))
  echo "ok - $*"
}

if [ "$(id -u)" -ne 0 ]; then
  fail "run as root: the shipped config serves /run/streambroker (the quick start says so)"
fi
if [ -S "$sock" ]; then
  fail "$sock is there already: another streambrokerd serves the shipped config"
fi

# The quick start, on a fresh clone.
git clone -q "$top" "$work/clone"
cd "$work/clone"
in_readme "bash installer/dev.sh run "
bash installer/dev.sh run >"$work/run.log" 2>&1 &
daemon=$!
# Building takes minutes on a loaded machine: wait for the service, or for its end.
for _ in $(seq 1 1200); do
  [ -S "$sock" ] && grep -q 'serving' "$work/run.log" && break
  kill -0 "$daemon" 2>/dev/null || fail "dev.sh run ended before serving"
  sleep 0.5
done
[ -S "$sock" ] || fail "no service on $sock after 10 minutes"
bindir=$work/clone/build/linux/bin
grep -qF "built in $bindir: streambrokerd sbcat sbrun sbctl" "$work/run.log" ||
  fail "dev.sh run did not say where the tools are"
ok "quick start: dev.sh run built the tools and serves $sock"

# Another shell: the README's PATH line.
in_readme 'export PATH="$PWD/build/linux/bin:$PATH"'
export PATH="$PWD/build/linux/bin:$PATH"
for t in streambrokerd sbcat sbrun sbctl; do
  [ "$(command -v "$t")" = "$bindir/$t" ] || fail "$t is not found on the PATH"
done
ok "the PATH line finds streambrokerd, sbcat, sbrun and sbctl"

in_readme 'echo hello | sbcat --name first/try && sbctl streams && sbctl status'
if ! { echo hello | sbcat --name first/try && sbctl streams >"$work/out" &&
  sbctl status >>"$work/out"; }; then
  fail "the quick start's first try failed"
fi
grep -q "^archive: *$archive:" "$work/out" || fail "sbctl status shows no archive section"
grep -q 'retention:' "$work/out" || fail "sbctl status shows no retention"
ok "first try: sbcat, sbctl streams, sbctl status (with the archive)"

# sbcat
in_readme 'some-program | sbcat --name myapp/stdout --tag host=$(hostname)'
# shellcheck disable=SC2046 # as the README writes it
printf 'from some program\n' | sbcat --name myapp/stdout --tag host=$(hostname) ||
  fail "sbcat example 1"
in_readme 'sbcat --name build.proto --type datagram --server unix:/run/streambroker/streambroker.sock < records'
printf 'one\ntwo\n' >"$work/records"
(cd "$work" && sbcat --name build.proto --type datagram --server unix:/run/streambroker/streambroker.sock < records) ||
  fail "sbcat example 2"
ok "sbcat examples"

# sbrun: make -j8 of a one-rule Makefile.
in_readme 'sbrun --name-prefix builds/42 -- make -j8'
mkdir "$work/proj"
printf 'all:\n\t@echo built\n\t@echo warned >&2\n' >"$work/proj/Makefile"
(cd "$work/proj" && sbrun --name-prefix builds/42 -- make -j8) || fail "sbrun example"
ok "sbrun example"

# What the streams became, once the service closed them.
for _ in $(seq 1 120); do
  [ -s "$archive/builds/42/stderr.log" ] && [ -s "$archive/first/try.log" ] && break
  sleep 0.5
done
grep -qx hello "$archive/first/try.log" || fail "first/try.log lacks hello"
grep -qx 'from some program' "$archive/myapp/stdout.log" || fail "myapp/stdout.log"
grep -qx built "$archive/builds/42/stdout.log" || fail "builds/42/stdout.log"
grep -qx warned "$archive/builds/42/stderr.log" || fail "builds/42/stderr.log"
ok "the archive holds what the examples wrote"

# sbctl, with a stream open so streams has a row.
mkfifo "$work/fifo"
sbcat --name quickstart/open <"$work/fifo" &
writer=$!
exec 7>"$work/fifo"
echo open >&7
for _ in $(seq 1 60); do
  grep -q quickstart/open <<<"$(sbctl streams)" && break
  sleep 0.5
done
for c in 'sbctl status ' 'sbctl streams ' 'sbctl --json streams ' 'sbctl --json status ' \
  'sbctl metrics '; do
  in_readme "$c"
  # shellcheck disable=SC2086
  $c >"$work/out" || fail "$c failed"
  [ -s "$work/out" ] || fail "$c printed nothing"
done
grep -q "quickstart/open .*$archive/quickstart/open.log" <<<"$(sbctl streams)" ||
  fail "sbctl streams does not say where the stream goes"
sbctl metrics | promtool check metrics >"$work/lint" 2>&1 || fail "promtool: $(cat "$work/lint")"
exec 7>&-
wait "$writer" || fail "sbcat of the open stream failed at its end"
ok "sbctl examples (metrics pass promtool)"

# The service's own examples.
in_readme 'streambrokerd --check-config FILE'
grep -q valid <<<"$(streambrokerd --check-config "$work/clone/config/streambroker.json")" ||
  fail "--check-config"
in_readme 'streambrokerd --print-config-keys'
# The output is read whole before it is searched: grep -q stops at its match, and the
# writer, still writing, would die of SIGPIPE and fail the pipeline (pipefail).
grep -q archive_dir <<<"$(streambrokerd --print-config-keys)" || fail "--print-config-keys"
ok "streambrokerd examples"

# The install after the quick start, staged: it builds what the quick start did not.
kill -TERM "$daemon"
wait "$daemon" || true
daemon=
in_readme 'bash installer/install-linux.sh'
DESTDIR=$work/dest bash installer/install-linux.sh 2>"$work/install.log" ||
  fail "install-linux.sh after the quick start: $(cat "$work/install.log")"
for f in usr/local/bin/sbrun usr/local/bin/sbctl usr/local/lib/libstreambroker.so; do
  [ -e "$work/dest/$f" ] || fail "the install lacks $f"
done
DESTDIR=$work/dest bash installer/install-linux.sh 2>"$work/install.log" ||
  fail "install-linux.sh, run twice: $(cat "$work/install.log")"
ok "install-linux.sh after the quick start, twice"

echo "$passed passed, 0 failed"
