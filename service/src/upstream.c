/*
 * upstream.c - the upstream sink: one outgoing connection per stream, dialed with
 * capped, jittered exponential backoff while the upstream is busy or absent. It writes
 * the stream's handshake (the client's properties, with the time the broker accepted
 * the stream when the client sent none), then the data, in order.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct {
  sb__sink_t sink;
  uv_pipe_t pipe;
  uv_timer_t timer;
  sb__chunk_t *head, *tail; /* waiting for the connection */
  unsigned attempt;
  int connected;
  int pipe_open;  /* pipe handle initialised */
  int finishing;
  int failed;     /* error: data is dropped from now on */
  int closing;
  int paused;     /* queued went above the watermark; the stream waits for drained */
  int pending_closes;
  int err;
} sb__upstream_t;

typedef struct {
  uv_write_t req;
  sb__chunk_t* chunk;
} sb__upstream_write_t;

static uint64_t jitter_state;

/* xorshift64: jitter needs spread, not quality; seeded from the clock once. */
static uint64_t jitter_next(void) {
  if (jitter_state == 0)
    jitter_state = uv_hrtime() | 1;
  jitter_state ^= jitter_state << 13;
  jitter_state ^= jitter_state >> 7;
  jitter_state ^= jitter_state << 17;
  return jitter_state;
}

static sb__upstream_t* up_of(sb__sink_t* sink) {
  return SB_CONTAINER_OF(sink, sb__upstream_t, sink);
}

static const char* up_name(sb__upstream_t* up) {
  return up->sink.stream->props.name;
}

static void on_up_closed(uv_handle_t* h) {
  sb__upstream_t* up = h->data;
  if (--up->pending_closes == 0)
    sb__stream_sink_done(up->sink.stream, up->err);
}

/* Closes the timer and the connection; done follows when both are closed. */
static void up_close(sb__upstream_t* up, int err) {
  if (up->closing)
    return;
  up->closing = 1;
  up->err = err;
  up->pending_closes = 1 + up->pipe_open;
  uv_close((uv_handle_t*)&up->timer, on_up_closed);
  if (up->pipe_open)
    uv_close((uv_handle_t*)&up->pipe, on_up_closed);
}

static void up_drop_pending(sb__upstream_t* up) {
  while (up->head) {
    sb__chunk_t* c = up->head;
    up->head = c->next;
    up->sink.queued -= c->len;
    sb__chunk_free(c);
  }
  up->tail = NULL;
}

static void up_notify(sb__upstream_t* up) {
  if (up->paused && (up->failed || up->sink.queued <=
                                       up->sink.stream->broker->cfg.upstream_high_watermark / 2)) {
    up->paused = 0;
    sb__stream_sink_drained(up->sink.stream);
  }
}

/* From now on the stream's data has nowhere to go: it is dropped and counted, and the
 * client is not made to wait. */
static void up_fail(sb__upstream_t* up, int err) {
  sb__stream_t* s = up->sink.stream;
  if (up->failed)
    return;
  up->failed = 1;
  up->err = err;
  s->broker->counters.upstream_errors++;
  SB_LOG_E("upstream", "stream %llu \"%s\": upstream connection failed: %s; data after "
           "byte %llu of the stream is dropped",
           (unsigned long long)s->id, up_name(up), sb_strerror(err),
           (unsigned long long)(s->bytes - up->sink.queued));
  up_drop_pending(up);
  uv_timer_stop(&up->timer);
  up_notify(up);
  if (up->finishing)
    up_close(up, err);
}

static void on_write(uv_write_t* req, int status) {
  sb__upstream_write_t* w = (sb__upstream_write_t*)req;
  sb__upstream_t* up = req->data;
  up->sink.queued -= w->chunk->len;
  if (status == 0)
    up->sink.stream->broker->counters.bytes_out += w->chunk->len;
  sb__chunk_free(w->chunk);
  free(w);
  if (up->closing)
    return;
  if (status < 0) {
    up_fail(up, sb__uv_err(status));
    return;
  }
  up_notify(up);
  if (up->finishing && up->sink.queued == 0)
    up_close(up, 0);
}

static void up_send(sb__upstream_t* up, sb__chunk_t* c) {
  sb__upstream_write_t* w = sb__xmalloc(sizeof(*w));
  uv_buf_t buf = uv_buf_init(c->data, (unsigned)c->len);
  int r;
  w->chunk = c;
  w->req.data = up;
  if ((r = uv_write(&w->req, (uv_stream_t*)&up->pipe, &buf, 1, on_write)) != 0) {
    up->sink.queued -= c->len;
    sb__chunk_free(c);
    free(w);
    up_fail(up, sb__uv_err(r));
  }
}

static void up_dial(sb__upstream_t* up);

static void on_retry(uv_timer_t* t) {
  up_dial(t->data);
}

/*
 * One dial attempt. The platform dialer never blocks: busy and absent are answers, and
 * the next attempt is a timer away, doubling up to backoff_max_ms, with jitter (each
 * delay is drawn from its upper half) so that many streams do not retry in step.
 */
static void up_dial(sb__upstream_t* up) {
  sb__stream_t* s = up->sink.stream;
  sb__broker_t* b = s->broker;
  uv_file fd;
  uint64_t delay;
  int r, ur;
  if (up->finishing && b->stopping) {
    SB_LOG_E("upstream", "stream %llu \"%s\": upstream %s unavailable at shutdown; %llu "
             "bytes of the stream are not delivered",
             (unsigned long long)s->id, up_name(up), b->cfg.upstream,
             (unsigned long long)up->sink.queued);
    up_fail(up, SB_ECANCELED);
    return;
  }
  b->counters.upstream_dials++;
  r = sb__upstream_dial(b->cfg.upstream, &fd);
  if (r == 0) {
    uv_pipe_init(b->loop, &up->pipe, 0);
    up->pipe.data = up;
    up->pipe_open = 1;
    if ((ur = uv_pipe_open(&up->pipe, fd)) != 0) {
      SB_LOG_E("upstream", "uv_pipe_open: %s", uv_strerror(ur));
      up_fail(up, sb__uv_err(ur));
      return;
    }
    if (up->attempt > 0)
      SB_LOG_I("upstream", "stream %llu \"%s\": connected to %s after %u retries",
               (unsigned long long)s->id, up_name(up), b->cfg.upstream, up->attempt);
    up->connected = 1;
    while (up->head && !up->failed) {
      sb__chunk_t* c = up->head;
      up->head = c->next;
      if (up->head == NULL)
        up->tail = NULL;
      up_send(up, c);
    }
    return;
  }
  b->counters.upstream_dial_failures++;
  delay = b->cfg.backoff_initial_ms << (up->attempt < 20 ? up->attempt : 20);
  if (delay > b->cfg.backoff_max_ms)
    delay = b->cfg.backoff_max_ms;
  delay = delay / 2 + jitter_next() % (delay / 2 + 1);
  if (up->attempt == 0)
    SB_LOG_W("upstream", "stream %llu \"%s\": upstream %s: %s; retrying with backoff",
             (unsigned long long)s->id, up_name(up), b->cfg.upstream, sb_strerror(r));
  else
    SB_LOG_D("upstream", "stream %llu: retry %u in %llu ms: %s", (unsigned long long)s->id,
             up->attempt, (unsigned long long)delay, sb_strerror(r));
  up->attempt++;
  uv_timer_start(&up->timer, on_retry, delay, 0);
}

static void up_write(sb__sink_t* sink, sb__chunk_t* c) {
  sb__upstream_t* up = up_of(sink);
  if (up->failed || up->closing) {
    sb__chunk_free(c);
    return;
  }
  sink->queued += c->len;
  if (sink->queued > sink->stream->broker->cfg.upstream_high_watermark)
    up->paused = 1;
  if (up->connected) {
    up_send(up, c);
    return;
  }
  c->next = NULL;
  if (up->tail)
    up->tail->next = c;
  else
    up->head = c;
  up->tail = c;
}

static void up_finish(sb__sink_t* sink) {
  sb__upstream_t* up = up_of(sink);
  up->finishing = 1;
  if (up->failed)
    up_close(up, up->err);
  else if (up->connected && sink->queued == 0)
    up_close(up, 0);
  else if (!up->connected && sink->stream->broker->stopping) {
    uv_timer_stop(&up->timer);
    up_dial(up); /* one last try, then give up */
  }
}

static void up_destroy(sb__sink_t* sink) {
  sb__upstream_t* up = up_of(sink);
  up_drop_pending(up);
  free(up);
}

sb__sink_t* sb__upstream_sink_create(sb__stream_t* s) {
  sb__upstream_t* up = sb__xcalloc(1, sizeof(*up));
  sb__props_t props;
  sb__buf_t hs = {0};
  int r;
  up->sink.write = up_write;
  up->sink.finish = up_finish;
  up->sink.destroy = up_destroy;
  up->sink.stream = s;
  uv_timer_init(s->broker->loop, &up->timer);
  up->timer.data = up;
  if (sb__props_copy(&props, &s->props) != 0)
    abort();
  if (!props.has_timestamp) {
    props.has_timestamp = 1;
    props.timestamp = s->opened;
  }
  r = sb__handshake_encode(&props, &hs);
  sb__props_free(&props);
  if (r != 0) {
    /* Cannot happen for properties that decoded; fail the stream if it does. */
    SB_LOG_E("upstream", "stream %llu: encoding the handshake: %s", (unsigned long long)s->id,
             sb_strerror(r));
    sb__buf_free(&hs);
    up->failed = 1;
    up->err = r;
    return &up->sink;
  }
  up_write(&up->sink, sb__chunk_new(hs.data, hs.len));
  sb__buf_free(&hs);
  up_dial(up);
  return &up->sink;
}
