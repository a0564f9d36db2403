/*
 * test_winreal.c - the Windows service where real Windows is stricter than a lenient
 * test bed would be (issue 22), shown under Wine where Wine can show it: the upstream
 * watcher's dial rate while the upstream exists but refuses us; the end's flush
 * cancelled in the gap before the worker entered it.
 */
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <windows.h>
#endif

#include <cjson/cJSON.h>

#include "helpers.h"
#include "streams.h"
#include "task.h"

#ifdef _WIN32
static double status_num(uv_loop_t* loop, sb_it_daemon_t* d, const char* path) {
  cJSON* st = sb_it_admin(loop, d, "status");
  double v = sb_it_json_num(st, path);
  cJSON_Delete(st);
  return v;
}

typedef struct {
  uv_loop_t* loop;
  sb_it_daemon_t* b;
  double want;
} dial_wait_t;

static int failed_enough(void* arg) {
  dial_wait_t* dw = arg;
  return status_num(dw->loop, dw->b, "counters.upstream_dial_failures") >= dw->want;
}
#endif

/*
 * The upstream's pipe exists, with a free instance, but every dial is refused (it is
 * an outbound-only pipe: a write open is denied, as a DACL that does not grant the
 * service's account would). WaitNamedPipeW succeeds at once on such a pipe, so a
 * watcher that woke whenever a dial had failed kicked every waiting stream as fast as
 * the loop could dial. Each stream must instead dial at the pace of its backoff
 * (backoff_initial_ms = backoff_max_ms = 1000: each delay is drawn from 500 to 1000
 * ms): over a measured span, at most streams * (span / 500 ms + 1) failed dials. A
 * loaded machine only slows the dials down, so the bound holds on one.
 */
#define WATCH_STREAMS 6
TEST_IMPL(winreal_watcher_refused_upstream) {
#ifndef _WIN32
  TEST_SKIP("the named-pipe watcher is Windows only");
#else
  uv_loop_t loop;
  sb_it_daemon_t b;
  char address[256], bind[256], name[64];
  WCHAR wbind[256];
  HANDLE pipe;
  OVERLAPPED ov;
  dial_wait_t dw;
  double f0, f1;
  uint64_t t0, span_ms;
  int i;
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_address("wr-refuse", address, bind, sizeof(address));
  ASSERT(MultiByteToWideChar(CP_UTF8, 0, bind, -1, wbind, 256) > 0);
  pipe = CreateNamedPipeW(wbind, PIPE_ACCESS_OUTBOUND | FILE_FLAG_OVERLAPPED,
                          PIPE_TYPE_BYTE | PIPE_WAIT, PIPE_UNLIMITED_INSTANCES, 4096,
                          4096, 0, NULL);
  ASSERT(pipe != INVALID_HANDLE_VALUE);
  memset(&ov, 0, sizeof(ov));
  ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
  ASSERT(!ConnectNamedPipe(pipe, &ov) && GetLastError() == ERROR_IO_PENDING);
  sb_it_daemon_start(&b, &loop, "wr-refb", address,
                     "\"backoff_initial_ms\": 1000, \"backoff_max_ms\": 1000");
  for (i = 0; i < WATCH_STREAMS; i++) {
    snprintf(name, sizeof(name), "refused/s%d", i);
    ASSERT_OK(sb_it_write_stream(b.address, name, 1000));
  }
  sb_it_daemon_wait_log(&b, "client finished", WATCH_STREAMS, 30000);
  dw.loop = &loop;
  dw.b = &b;
  dw.want = 2 * WATCH_STREAMS;
  ASSERT(sb_it_run_until(&loop, 60000, failed_enough, &dw));
  /* The dials are refused, not found busy or absent. */
  ASSERT(sb_it_contains(b.log.data, b.log.len, "permission denied"));
  t0 = uv_hrtime();
  f0 = status_num(&loop, &b, "counters.upstream_dial_failures");
  sb_it_pause_ms(&loop, 4000);
  f1 = status_num(&loop, &b, "counters.upstream_dial_failures");
  span_ms = (uv_hrtime() - t0) / 1000000 + 1;
  fprintf(stderr, "%d streams: %.0f failed dials in %llu ms\n", WATCH_STREAMS, f1 - f0,
          (unsigned long long)span_ms);
  if (f1 - f0 > (double)WATCH_STREAMS * ((double)span_ms / 500.0 + 1.0)) {
    sb_it_daemon_dump(&b);
    sb_test_fail(__FILE__, __LINE__,
                 "%.0f failed dials in %llu ms for %d streams: faster than their "
                 "backoff allows",
                 f1 - f0, (unsigned long long)span_ms, WATCH_STREAMS);
  }
  /* Nothing was lost meanwhile: every stream waits in the spool. */
  ASSERT_EQ(sb_it_spool_int(&b, "SELECT count(*) FROM streams WHERE name LIKE "
                                "'refused/%'"),
            WATCH_STREAMS);
  sb_it_daemon_close(&b);
  CancelIo(pipe);
  CloseHandle(pipe);
  CloseHandle(ov.hEvent);
  ASSERT_OK(uv_loop_close(&loop));
#endif
}

#ifdef _WIN32
/* A pipe server that takes connections and never reads a byte from them, so a
 * stream's end is never confirmed (FlushFileBuffers never returns by itself). */
typedef struct {
  uv_pipe_t server;
  int connections;
} mute_server_t;

static void on_mute_connection(uv_stream_t* server, int status) {
  mute_server_t* m = server->data;
  (void)status;
  m->connections++; /* never accepted, never read */
}

static void on_mute_closed(uv_handle_t* h) {
  *(int*)h->data = 1;
}
#endif

/*
 * The end's flush runs on a worker that publishes its thread just before it enters
 * FlushFileBuffers; a deadline in that gap finds nothing to cancel. The test hook
 * SB_TEST_FLUSH_DELAY_MS holds the first two flushes' workers in the gap (2.5 s) past
 * the deadline (upstream_end_timeout_ms 1000) while the upstream never reads: the loop
 * must cancel again until the worker is out (it says so at debug level), on the
 * worker's own handle, and the stream, resent, arrives whole once a real upstream
 * serves. Without the retries the worker would block in its flush for good (here on the
 * closed connection's pipe, or on a redial's that reused the handle value), and a stop
 * would wait on it.
 */
#define GAP_STREAMS 2
#define GAP_BYTES 5000
TEST_IMPL(winreal_end_flush_cancel_gap) {
#ifndef _WIN32
  TEST_SKIP("the end's flush runs on a worker on Windows only");
#else
  static const char* const env[] = {"SB_TEST_FLUSH_DELAY_MS=2500",
                                    "SB_TEST_FLUSH_DELAYS=2", NULL};
  uv_loop_t loop;
  sb_it_daemon_t up, b;
  mute_server_t mute;
  char name[64];
  int i, closed = 0;
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start(&up, &loop, "wr-gapu", NULL, NULL);
  sb_it_daemon_kill(&up, SIGKILL);
  sb_it_daemon_wait_exit(&up, 30000);
  memset(&mute, 0, sizeof(mute));
  ASSERT_OK(uv_pipe_init(&loop, &mute.server, 0));
  mute.server.data = &mute;
  uv_pipe_pending_instances(&mute.server, 16);
  ASSERT_OK(uv_pipe_bind(&mute.server, up.bind_path));
  ASSERT_OK(uv_listen((uv_stream_t*)&mute.server, 128, on_mute_connection));
  sb_it_daemon_start_with(&b, &loop, "wr-gapb", up.address,
                          "\"backoff_initial_ms\": 200, \"backoff_max_ms\": 1000, "
                          "\"upstream_end_timeout_ms\": 1000",
                          NULL, NULL, env);
  for (i = 0; i < GAP_STREAMS; i++) {
    snprintf(name, sizeof(name), "gap/s%d", i);
    ASSERT_OK(sb_it_write_stream(b.address, name, GAP_BYTES));
  }
  sb_it_daemon_wait_log(&b, "client finished", GAP_STREAMS, 30000);
  sb_it_daemon_wait_log(&b, "the end's flush was cancelled after", 1, 60000);
  ASSERT(!sb_it_contains(b.log.data, b.log.len, "\" closed: "));
  /* A real upstream takes the address: every stream arrives whole. */
  mute.server.data = &closed;
  uv_close((uv_handle_t*)&mute.server, on_mute_closed);
  while (!closed)
    uv_run(&loop, UV_RUN_ONCE);
  sb_it_daemon_restart(&up);
  for (i = 0; i < GAP_STREAMS; i++) {
    snprintf(name, sizeof(name), "gap/s%d", i);
    sb_it_expect_arrived(&loop, &b, &up, name, GAP_BYTES, 1);
  }
  ASSERT(sb_it_run_until(&loop, 30000, sb_it_spool_drained, &b));
  sb_it_daemon_close(&b);
  sb_it_daemon_close(&up);
  ASSERT_OK(uv_loop_close(&loop));
#endif
}
