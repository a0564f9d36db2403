/*
 * test_ops.c - what an administrator relies on: systemd's readiness protocol, the log
 * file's rotation, the Windows Event Log.
 */
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "streams.h"
#include "internal.h"
#include "platform.h"
#include "task.h"

/* ---- systemd readiness: a fake NOTIFY_SOCKET ---- */

struct notify_wait {
  uv_poll_t poll; /* reads each datagram the moment it arrives */
  int closed;
  uv_os_sock_t fd;
  sb__buf_t got; /* every datagram, each followed by "\n--\n" */
  const char* needle;
  const char* control; /* the control pipe's address */
  int ready_seen, control_at_ready;
};

/* Reads what arrived. At the first READY=1, whether the control socket accepts a
 * connection: read as soon as the loop hears of the datagram, so a READY=1 sent
 * before the listen would find nothing there (unless the service wins that race). */
static void on_notify(uv_poll_t* p, int status, int events) {
  struct notify_wait* w = p->data;
  char buf[4096];
  ssize_t n;
  while ((n = sb_it_dgram_recv(w->fd, buf, sizeof(buf))) > 0) {
    sb__buf_append(&w->got, buf, (size_t)n);
    sb__buf_append(&w->got, "\n--\n", 4);
    if (!w->ready_seen && sb_it_contains(buf, (size_t)n, "READY=1")) {
      int kind;
      const char* path;
      sb_os_handle_t h;
      w->ready_seen = 1;
      ASSERT_OK(sb__address_parse(w->control, &kind, &path));
      if (sb__dial(kind, path, 0, 0, &h) == 0) {
        w->control_at_ready = 1;
        sb__handle_close(h);
      }
    }
  }
  (void)status;
  (void)events;
}

static int notify_has(void* arg) {
  struct notify_wait* w = arg;
  return sb_it_contains(w->got.data, w->got.len, w->needle);
}

static void notify_start(uv_loop_t* loop, struct notify_wait* w, const char* name) {
  memset(w, 0, sizeof(*w));
  w->fd = sb_it_dgram_bind(name);
  ASSERT_OK(uv_poll_init_socket(loop, &w->poll, w->fd));
  w->poll.data = w;
  ASSERT_OK(uv_poll_start(&w->poll, UV_READABLE, on_notify));
}

static void on_notify_closed(uv_handle_t* h) {
  ((struct notify_wait*)h->data)->closed = 1;
}

static void notify_stop(uv_loop_t* loop, struct notify_wait* w) {
  uv_close((uv_handle_t*)&w->poll, on_notify_closed);
  while (!w->closed)
    uv_run(loop, UV_RUN_ONCE);
  sb_it_dgram_close(w->fd);
  sb__buf_free(&w->got);
}

static void notify_wait(sb_it_daemon_t* d, struct notify_wait* w, const char* needle) {
  w->needle = needle;
  if (!sb_it_run_until(d->loop, 30000, notify_has, w)) {
    sb_it_daemon_dump(d);
    sb_test_fail(__FILE__, __LINE__, "no \"%s\" in what reached NOTIFY_SOCKET: \"%.*s\"",
                 needle, (int)w->got.len, w->got.data ? w->got.data : "");
  }
}

/*
 * READY=1 (with a STATUS line) once the control socket listens, STOPPING=1 at
 * SIGTERM, a clean exit; the same through an abstract socket name ("@...").
 */
TEST_IMPL(ops_systemd_notify) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  struct notify_wait w;
  char dir[512], path[700], abstract[128], control[256], control_bind[256];
  if (sb_it_is_windows())
    TEST_SKIP("systemd is Linux only");
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_tempdir("notify", dir, sizeof(dir));
  snprintf(path, sizeof(path), "%s/notify.sock", dir);

  notify_start(&loop, &w, path);
  /* The address sb_it_daemon_start will give it (the same tag, the same address). */
  sb_it_address("notify", control, control_bind, sizeof(control));
  w.control = control;
  ASSERT_OK(uv_os_setenv("NOTIFY_SOCKET", path));
  sb_it_daemon_start(&d, &loop, "notify", NULL, NULL);
  ASSERT_OK(uv_os_unsetenv("NOTIFY_SOCKET"));
  ASSERT_STR_EQ(d.address, control);
  notify_wait(&d, &w, "READY=1");
  ASSERT(w.control_at_ready);
  ASSERT(sb_it_contains(w.got.data, w.got.len,
                        "READY=1\nSTATUS=0 streams open, 0 bytes spooled\n--\n"));
  ASSERT(!sb_it_contains(w.got.data, w.got.len, "STOPPING=1"));
  sb_it_daemon_kill(&d, SIGTERM);
  notify_wait(&d, &w, "STOPPING=1");
  sb_it_daemon_wait_exit(&d, 30000);
  ASSERT_EQ(d.exit_status, 0);
  notify_stop(&loop, &w);

  /* An abstract name: systemd's own form when /run is not there yet. */
  snprintf(abstract, sizeof(abstract), "@sbit-notify-%d", (int)uv_os_getpid());
  notify_start(&loop, &w, abstract);
  w.control = d.address;
  ASSERT_OK(uv_os_setenv("NOTIFY_SOCKET", abstract));
  sb_it_daemon_restart(&d);
  ASSERT_OK(uv_os_unsetenv("NOTIFY_SOCKET"));
  notify_wait(&d, &w, "READY=1");
  ASSERT(w.control_at_ready);
  sb_it_daemon_kill(&d, SIGTERM);
  notify_wait(&d, &w, "STOPPING=1");
  sb_it_daemon_wait_exit(&d, 30000);
  notify_stop(&loop, &w);
  sb_it_daemon_close(&d);
  ASSERT_OK(uv_loop_close(&loop));
}

/* ---- the log file's rotation ---- */

#define ROT_STREAMS 40
#define ROT_MAX_BYTES 2048

static int rot_status_has(sb_it_daemon_t* d, const char* needle);

/* Opens ROT_STREAMS streams "rot/NNNN" and writes to each; closes them once the
 * service has them all open (a pipe that a client closes before the service accepted
 * it can vanish under Wine). Each leaves 4 lines with its name in a debug log (opened,
 * finished, archived, closed). */
static void rot_streams(sb_it_daemon_t* d) {
  sb_client_t* c;
  sb_stream_t* s[ROT_STREAMS];
  sb_stream_opts_t o;
  char name[32], needle[64];
  int i;
  ASSERT_OK(sb_client_open(&c, d->address));
  memset(&o, 0, sizeof(o));
  for (i = 0; i < ROT_STREAMS; i++) {
    snprintf(name, sizeof(name), "rot/%04d", i + 1);
    o.name = name;
    ASSERT_OK(sb_stream_open(c, &o, &s[i]));
    ASSERT_OK(sb_stream_write(s[i], "x\n", 2));
  }
  sb_client_close(c);
  snprintf(needle, sizeof(needle), "\"streams_open\":%d,", ROT_STREAMS);
  for (i = 0; i < 300 && !rot_status_has(d, needle); i++)
    uv_sleep(100);
  ASSERT(rot_status_has(d, needle));
  for (i = 0; i < ROT_STREAMS; i++)
    ASSERT_OK(sb_stream_close(s[i]));
}

/* The log's files, newest first: LOG, LOG.1, ... as long as they exist. */
static int rot_files(const sb_it_daemon_t* d, char* texts[], size_t lens[], int max) {
  int n;
  for (n = 0; n < max; n++) {
    char path[700];
    if (n == 0)
      snprintf(path, sizeof(path), "%s", d->log_file);
    else
      snprintf(path, sizeof(path), "%s.%d", d->log_file, n);
    if ((texts[n] = sb_it_read_file(path, &lens[n])) == NULL)
      break;
  }
  return n;
}

/* Every line whole: a timestamp at its start, a line feed at its end; each file
 * within the size (a line never straddles two files). */
static void rot_check_lines(const char* text, size_t len, int file) {
  size_t i = 0;
  ASSERT_LE(len, ROT_MAX_BYTES);
  ASSERT(len > 0 && text[len - 1] == '\n');
  while (i < len) {
    const char* nl = memchr(text + i, '\n', len - i);
    ASSERT_NOT_NULL(nl);
    if ((size_t)(nl - text) - i < 25 || text[i + 4] != '-' || text[i + 10] != 'T' ||
        text[i + 23] != 'Z' || text[i + 24] != ' ')
      sb_test_fail(__FILE__, __LINE__, "file %d: a broken line: \"%.*s\"", file,
                   (int)(nl - text - (ptrdiff_t)i), text + i);
    i = (size_t)(nl - text) + 1;
  }
}

/* Whether the service's status holds needle, asked with sbctl, not read from the log:
 * a reader holding a log file open keeps Windows from renaming it. */
static int rot_status_has(sb_it_daemon_t* d, const char* needle) {
  sb_it_result_t res;
  int done;
  sb_it_run_tool(d->loop, "sbctl",
                 SB_IT_ARGS("--admin", d->admin_address, "--json", "status"), NULL, 0,
                 &res);
  done = sb_it_contains(res.out.data, res.out.len, needle);
  sb_it_result_free(&res);
  return done;
}

/* Every stream closed (streams close in any order). */
static void rot_wait_closed(sb_it_daemon_t* d) {
  char needle[64];
  int i;
  snprintf(needle, sizeof(needle), "\"streams_closed\":%d,", ROT_STREAMS);
  for (i = 0; i < 300 && !rot_status_has(d, needle); i++)
    uv_sleep(100);
  ASSERT(rot_status_has(d, needle));
}

/*
 * A log driven past log_max_bytes many times: with room for all of it, every line of
 * every stream is there exactly once, none split; with log_max_files 3, exactly three
 * files remain. Linux and Windows (rename of a closed file, under Wine).
 */
TEST_IMPL(ops_log_rotation) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  char* texts[1000];
  size_t lens[1000];
  char name[64], path[700];
  int n, i, f;
  ASSERT_OK(uv_loop_init(&loop));

  /* Room for everything: count the lines. */
  sb_it_daemon_start_logfile(&d, &loop, "rotall", NULL,
                             "\"log_max_bytes\": 2048, \"log_max_files\": 1000",
                             "service.log");
  rot_streams(&d);
  rot_wait_closed(&d);
  sb_it_daemon_close(&d);
  n = rot_files(&d, texts, lens, 1000);
  /* Forty streams' lines (some 20 KB) in 2 KB files: rotated at least eight times. */
  ASSERT_GE(n, 9);
  for (f = 0; f < n; f++)
    rot_check_lines(texts[f], lens[f], f);
  for (i = 1; i <= ROT_STREAMS; i++) {
    size_t count = 0;
    snprintf(name, sizeof(name), "\"rot/%04d\"", i);
    for (f = 0; f < n; f++)
      count += sb_it_count(texts[f], lens[f], name);
    if (count != 4)
      sb_test_fail(__FILE__, __LINE__, "%s: %zu lines of 4 in the %d files", name,
                   count, n);
  }
  for (f = 0; f < n; f++)
    free(texts[f]);

  /* log_max_files 3: the current file and two older ones, no more. */
  sb_it_daemon_start_logfile(&d, &loop, "rot3", NULL,
                             "\"log_max_bytes\": 2048, \"log_max_files\": 3",
                             "service.log");
  rot_streams(&d);
  rot_wait_closed(&d);
  sb_it_daemon_close(&d);
  n = rot_files(&d, texts, lens, 1000);
  ASSERT_EQ(n, 3);
  snprintf(path, sizeof(path), "%s.3", d.log_file);
  ASSERT_NULL(sb_it_read_file(path, &lens[0]));
  for (f = 0; f < n; f++) {
    rot_check_lines(texts[f], lens[f], f);
    free(texts[f]);
  }
  ASSERT_OK(uv_loop_close(&loop));
}

/* ---- the Windows Event Log, seen through Wine's ReportEventW trace ---- */

/* Waits until the service has counted n connections that did not begin with the
 * handshake's magic number. */
static void wait_bad_handshakes(uv_loop_t* loop, sb_it_daemon_t* d, int n) {
  int tries;
  for (tries = 0; tries < 300; tries++) {
    cJSON* st = sb_it_admin(loop, d, "status");
    double got = sb_it_json_num(st, "counters.bad_handshakes.SB_EMAGIC");
    cJSON_Delete(st);
    if (got >= n)
      return;
    sb_it_pause_ms(loop, 100);
  }
  ASSERT(!"the service did not count every bad handshake within 30 s");
}

/*
 * Wine keeps no Event Log, but with WINEDEBUG=+eventlog its ReportEventW prints each
 * event's text under the event's type: "trace:eventlog" for information,
 * "warn:eventlog" for warnings, "err:eventlog" for errors. It prints on the Unix
 * standard error the programs inherit, not on their Windows one, so this test only
 * drives the service: a console service with --event-log starts, a flood of bad
 * clients comes, a pause lets the token bucket refill, one more bad client comes; then
 * a start fails. tests/windows/test-eventlog.sh runs it with the trace on and checks
 * what reached ReportEventW, with the figures printed here.
 */
TEST_IMPL(ops_eventlog_reports) {
  static const char* const args[] = {"--event-log", NULL};
  uv_loop_t loop;
  sb_it_daemon_t d;
  sb_it_result_t res;
  char prog[4096], bad[700];
  const char* failed[] = {prog, "--console", "--event-log", "--config", bad, NULL};
  int kind, i, nbad = 3 * SB__EVENTLOG_BURST;
  sb_os_handle_t raws[3 * SB__EVENTLOG_BURST];
  const char* path;
  uint64_t t0, elapsed_ms;
  if (!sb_it_is_windows())
    TEST_SKIP("the Event Log is Windows only (Linux: the journal keeps stderr)");
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start_with(&d, &loop, "evlog", NULL, "\"log_level\": \"info\"", "svc.log",
                          args, NULL);
  printf("eventlog-check: address %s\n", d.address);
  ASSERT_OK(sb__address_parse(d.address, &kind, &path));
  t0 = uv_hrtime();
  /* Each connection stays open until the service has logged them all: a pipe closed
   * before the service accepted it can vanish under Wine. */
  for (i = 0; i < nbad; i++) {
    ASSERT_OK(sb__dial(kind, path, 5000, 0, &raws[i]));
    ASSERT_OK(sb__handle_write(raws[i], "NOT A HANDSHAKE", 15));
  }
  /* Counted, each one; logged only up to the per-user limit (one user's flood
   * cannot fill the log), so the count is read from the status. */
  wait_bad_handshakes(&loop, &d, nbad);
  for (i = 0; i < nbad; i++)
    sb__handle_close(raws[i]);
  elapsed_ms = (uv_hrtime() - t0) / 1000000;
  printf("eventlog-check: flood of %d bad clients in %llu ms\n", nbad,
         (unsigned long long)elapsed_ms);
  /* The bucket refills one event per SB__EVENTLOG_REFILL_MS: after a pause of that,
   * the next warning comes with the count of those held back. */
  uv_sleep(SB__EVENTLOG_REFILL_MS + 500);
  ASSERT_OK(sb__dial(kind, path, 5000, 0, &raws[0]));
  ASSERT_OK(sb__handle_write(raws[0], "NOT A HANDSHAKE", 15));
  wait_bad_handshakes(&loop, &d, nbad + 1);
  /* That user's next warning comes after a line with the count held back. */
  sb_it_wait_file(&loop, d.log_file, "suppressed", 1, 30000);
  sb__handle_close(raws[0]);
  printf("eventlog-check: one more bad client after the pause\n");
  sb_it_daemon_close(&d);

  /* A start that fails: exit 3, and (the trace shows) an error event with why. */
  snprintf(bad, sizeof(bad), "%s/bad.json", d.dir);
  sb_it_write_file(bad, "{\"max_streams\": 0}", 18);
  sb_it_program("streambrokerd", prog, sizeof(prog));
  sb_it_run(&loop, failed, NULL, "", 0, NULL, 0, &res);
  ASSERT_EQ(res.exit_status, 3);
  sb_it_result_free(&res);
  printf("eventlog-check: failed start done\n");
  /* A reason that holds "%%41" (as shortened archive names hold "%%"): the Event
   * Viewer must not read it as a parameter message (the script checks the event). */
  sb_it_write_file(bad, "{\"x%%41\": 0}", 13);
  sb_it_run(&loop, failed, NULL, "", 0, NULL, 0, &res);
  ASSERT_EQ(res.exit_status, 3);
  sb_it_result_free(&res);
  ASSERT_OK(uv_loop_close(&loop));
}
