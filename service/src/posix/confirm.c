/*
 * posix/confirm.c - the end of a stream's upstream connection, confirmed (POSIX): the
 * sink shuts its side down and reads the connection, so that an upstream that goes
 * away is noticed at once, and the upstream's own EOF says it read everything (an
 * upstream that dies first resets the connection instead, and the stream is resent).
 * The twin of win/confirm.c.
 */
#include "upstream_int.h"
#include "confirm.h"

void sb__confirm_timeout(uv_timer_t* t) {
  sb__upstream_t* up = t->data;
  if (up->state == SB__LINK_ENDING && !up->closing)
    up->ops->end_unconfirmed(up);
}

static void on_shutdown(uv_shutdown_t* req, int status) {
  sb__upstream_t* up = req->data;
  if (status < 0 && status != UV_ECANCELED && up->state == SB__LINK_ENDING)
    up->ops->broken(up, sb__uv_err(status));
}

static void on_up_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf) {
  static char sink[256];
  (void)h;
  (void)suggested;
  buf->base = sink;
  buf->len = sizeof(sink);
}

/*
 * The upstream closed its end after the stream's end (POSIX). A receiving
 * streambrokerd closes only once it stored everything, and a LUCI butler once it
 * read everything; but a killed upstream whose socket held nothing unread closes it
 * the same way, with a FIN. The kernel marks a dying process (PF_EXITING) before it
 * closes its files, so a close from a process that is not exiting is its own.
 */
static void up_end_closed(sb__upstream_t* up) {
  if (up->ops->proc_alive(up) == 0) {
    up->ops->end_lost(up);
    return;
  }
  up->conn_done = 1;
  up->ops->close(up);
}

static void on_up_read(uv_stream_t* h, ssize_t n, const uv_buf_t* buf) {
  sb__upstream_t* up = h->data;
  (void)buf;
  if (n >= 0)
    return; /* a stream server sends nothing; ignore it if it does */
  if (n == UV_EOF && up->state == SB__LINK_ENDING) {
    up_end_closed(up);
    return;
  }
  up->ops->broken(up, n == UV_EOF ? SB_EPIPE : sb__uv_err((int)n));
}

int sb__confirm_end(sb__upstream_t* up) {
  int r;
  up->state = SB__LINK_ENDING;
  up->shutdown.data = up;
  if ((r = uv_shutdown(&up->shutdown, (uv_stream_t*)&up->pipe, on_shutdown)) != 0) {
    up->ops->broken(up, sb__uv_err(r));
    return -1;
  }
  return 0;
}

void sb__confirm_watch(sb__upstream_t* up) {
  uv_read_start((uv_stream_t*)&up->pipe, on_up_alloc, on_up_read);
}
