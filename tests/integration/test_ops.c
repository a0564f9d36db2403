/*
 * test_ops.c - what an administrator relies on: systemd's readiness protocol, the log
 * file's rotation, the Windows Event Log.
 */
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
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
