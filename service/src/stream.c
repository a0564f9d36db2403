/*
 * stream.c - one client connection: the handshake under a deadline and size limits,
 * then the stream's data, checked (datagram framing) and passed to its sink with flow
 * control: a sink that falls behind pauses reading from its client.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "streamlist.h"
#include "tags.h"

static const char* const sb__type_name[] = {"text", "binary", "datagram"};

static void stream_sink_drained(sb__stream_t* s);
static void stream_sink_hold(sb__stream_t* s, int hold);
static void stream_sink_durable(sb__stream_t* s);
static void stream_sink_done(sb__stream_t* s, int err);

/* What the stream's sink tells it (stream.h); below, with the stream's answers. */
static void on_sink_drained(sb__sink_t* sink);
static void on_sink_hold(sb__sink_t* sink, int hold);
static void on_sink_durable(sb__sink_t* sink);
static void on_sink_cut(sb__sink_t* sink);
static void on_sink_done(sb__sink_t* sink, int err);
static const sb__sink_events_t stream_sink_events = {
    on_sink_drained, on_sink_hold, on_sink_durable, on_sink_cut, on_sink_done};

static void stream_maybe_free(sb__stream_t* s) {
  sb__broker_t* b = s->broker;
  if (s->pending_closes > 0 || s->sink != NULL || !s->closing)
    return;
  b->stream_gone(b, s);
  sb__handshake_destroy(&s->hs);
  sb__props_free(&s->props);
  free(s);
}

static void on_closed(uv_handle_t* h) {
  sb__stream_t* s = h->data;
  s->pending_closes--;
  stream_maybe_free(s);
}

/* Closes the client side (connection and deadline timer). The stream itself lives on
 * until its sink is done. */
static void stream_close_client(sb__stream_t* s) {
  if (s->closing)
    return;
  s->closing = 1;
  s->reading = 0;
  s->pending_closes += 2;
  uv_close((uv_handle_t*)&s->client, on_closed);
  uv_close((uv_handle_t*)&s->deadline, on_closed);
}

/*
 * The handshake's memory: the bytes its body buffer holds count against
 * handshake_memory_max. When the total falls, handshakes paused by the bound go on
 * (newest first, as the list runs) while it stays below the bound. A stream name is
 * validated before it is logged (no control byte, at most 4,096 bytes); a content
 * type is any JSON string, so it goes through sb__log_text.
 */
static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
static void on_read(uv_stream_t* h, ssize_t n, const uv_buf_t* buf);

static void hs_wake(sb__broker_t* b) {
  sb__stream_t* s;
  for (s = b->streams;
       s && b->hs_waiters > 0 && b->hs_bytes < b->cfg.handshake_memory_max;
       s = s->next) {
    if (!s->hs_waiting)
      continue;
    s->hs_waiting = 0;
    b->hs_waiters--;
    if (!s->client_eof && !s->closing &&
        uv_read_start((uv_stream_t*)&s->client, on_alloc, on_read) == 0)
      s->reading = 1;
  }
}

static void hs_charge(sb__stream_t* s, uint64_t bytes) {
  sb__broker_t* b = s->broker;
  uint64_t old = s->hs_charged;
  b->hs_bytes = b->hs_bytes - old + bytes;
  s->hs_charged = bytes;
  if (bytes < old && b->hs_waiters > 0)
    hs_wake(b);
}

/* The connection leaves its handshake (done, or ended in it): it no longer counts
 * against max_handshakes nor holds handshake memory. */
static void hs_leave(sb__stream_t* s) {
  sb__broker_t* b = s->broker;
  if (s->hs_waiting) {
    s->hs_waiting = 0;
    b->hs_waiters--;
  }
  if (!s->handshaken)
    b->nhandshakes--;
  hs_charge(s, 0);
}

/*
 * The client's data has ended (EOF, error, or the broker stopping): the sink
 * finishes. After a clean EOF the client's connection stays open (not read) until
 * the sink has every byte stored (durable or done): a broker in front of this one
 * takes the connection's end as "received", and forgets its copy then.
 */
static void stream_end_hold(sb__stream_t* s, int hold) {
  if (s->client_eof)
    return;
  if (!s->handshaken)
    hs_leave(s);
  s->client_eof = 1;
  s->broker->ndetached++;
  if (s->reading)
    uv_read_stop((uv_stream_t*)&s->client);
  s->reading = 0;
  if (!hold || s->sink == NULL)
    stream_close_client(s);
  if (s->sink)
    s->sink->finish(s->sink);
}

static void stream_end(sb__stream_t* s) {
  stream_end_hold(s, 0);
}

static void bad_handshake(sb__stream_t* s, int err) {
  sb__broker_t* b = s->broker;
  if (-err > 0 && -err < (int)(sizeof(b->counters.bad_handshakes) /
                               sizeof(b->counters.bad_handshakes[0])))
    b->counters.bad_handshakes[-err]++;
  SB_LOG_CW(b, s->peer_user, "session",
            "connection %llu from pid %lld: bad handshake after %llu bytes: %s (%s)",
            (unsigned long long)s->id, (long long)s->peer_pid,
            (unsigned long long)s->hs.consumed, sb_strerror(err), sb_err_name(err));
  stream_end(s);
}

/* A handshake holding less than this may still read past handshake_memory_max, so that
 * the usual small handshake never waits behind large ones: the bound is then exceeded
 * by at most max_handshakes times this. */
#define SB__HS_SMALL 4096u

static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf) {
  sb__stream_t* s = h->data;
  sb__broker_t* b = s->broker;
  (void)suggested;
  if (sb__budget_holding(&b->budget) && s->sink != NULL) {
    /* Over the memory budget: nothing more is read (on_read holds the stream). */
    buf->base = NULL;
    buf->len = 0;
    return;
  }
  if (!s->handshaken && b->hs_bytes >= b->cfg.handshake_memory_max &&
      s->hs_charged >= SB__HS_SMALL) {
    /* Past handshake_memory_max: this large handshake waits (on_read pauses it). */
    buf->base = NULL;
    buf->len = 0;
    return;
  }
  if (b->spare == NULL)
    b->spare = sb__chunk_new_read();
  buf->base = b->spare->data;
  /* Over the budget, a new stream's first reads take little more than its handshake;
   * past handshake_memory_max, a small handshake still finishes, 4 KiB at most. */
  buf->len = sb__budget_holding(&b->budget) && !s->handshaken ? 4096 : SB__READ_SIZE;
  if (!s->handshaken && b->hs_bytes >= b->cfg.handshake_memory_max)
    buf->len = SB__HS_SMALL - (size_t)s->hs_charged;
}

/* The chunk for len bytes at data, which lie in the broker's spare chunk. */
static sb__chunk_t* take_chunk(sb__broker_t* b, const char* data, size_t len) {
  sb__chunk_t* c;
  if (len < SB__READ_KEEP || data != b->spare->data)
    return sb__chunk_new(data, len);
  c = b->spare;
  c->next = NULL;
  c->len = len;
  b->spare = NULL;
  return c;
}

/*
 * Data after the handshake. Datagram streams are parsed only to check the framing
 * and count datagrams; the bytes go to the sink unchanged, framing included. A
 * framing error ends the stream after the last good byte.
 */
static void stream_data(sb__stream_t* s, const char* data, size_t len) {
  sb__broker_t* b = s->broker;
  size_t good = len;
  int err = 0;
  /* Where a resend may start: this chunk's byte offset, or for datagram streams the
   * index of the datagram it starts with (-1 when it starts inside one). */
  int64_t mark = (int64_t)s->bytes;
  if (s->props.type == SB_DATAGRAM) {
    mark = !s->dgram.in_body && !s->dgram.pending_end && s->dgram.varint.nbytes == 0
               ? (int64_t)s->dgram.count
               : -1;
  }
  if (s->props.type == SB_DATAGRAM) {
    sb__dgram_event_t ev;
    size_t off = 0;
    for (;;) {
      int64_t r = sb__dgram_next(&s->dgram, (const uint8_t*)data + off, len - off, &ev);
      if (r < 0) {
        err = (int)r;
        good = off;
        break;
      }
      off += (size_t)r;
      if (ev.kind == SB__DGRAM_END)
        s->datagrams++;
      else if (ev.kind == SB__DGRAM_NONE)
        break;
    }
  }
  if (good > 0) {
    s->bytes += good;
    b->counters.bytes_in += good;
    if (b->followers != NULL)
      sb__follow_data(s, data, good, mark);
    sb__chunk_t* c = take_chunk(b, data, good);
    c->mark = mark;
    s->sink->write(s->sink, c);
    if (s->sink && s->reading &&
        (s->sink->queued > b->cfg.upstream_high_watermark || s->sink->hold ||
         (s->sink->one_at_a_time && s->sink->queued > 0))) {
      uv_read_stop((uv_stream_t*)&s->client);
      s->reading = 0;
    }
  }
  if (err) {
    b->counters.client_errors++;
    SB_LOG_CW(b, s->peer_user, "stream",
              "stream %llu \"%s\": %s after %llu datagrams; the stream ends there",
              (unsigned long long)s->id, s->props.name, sb_strerror(err),
              (unsigned long long)s->datagrams);
    stream_end(s);
  }
}

/*
 * Tags the stream with an id of its own, streambroker.stream (128 random bits, hex),
 * unless a broker in front of this one did: every segment it is sent or archived as
 * carries it, so the segments of one client stream can be told from those of another
 * stream of the same name.
 */
static void stream_tag_id(sb__stream_t* s) {
  unsigned char rnd[16];
  char hex[33];
  int i, r;
  if (sb__props_get_tag(&s->props, SB__TAG_STREAM) != NULL)
    return;
  if ((r = uv_random(NULL, NULL, rnd, sizeof(rnd), 0, NULL)) != 0) {
    SB_LOG_E("stream", "stream %llu: uv_random: %s; the stream has no id tag",
             (unsigned long long)s->id, uv_strerror(r));
    return;
  }
  for (i = 0; i < 16; i++)
    snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
  if ((r = sb__props_set_tag(&s->props, SB__TAG_STREAM, hex)) != 0)
    SB_LOG_W("stream", "stream %llu \"%s\": cannot tag it with its id: %s",
             (unsigned long long)s->id, s->props.name, sb_strerror(r));
}

static void handshake_done(sb__stream_t* s) {
  sb__broker_t* b = s->broker;
  char ctype[SB__LOG_TEXT_SIZE];
  hs_leave(s);
  stream_tag_id(s);
  s->handshaken = 1;
  uv_timer_stop(&s->deadline);
  sb__dgram_init(&s->dgram, b->cfg.max_datagram_size);
  b->counters.streams_opened++;
  SB_LOG_I("stream", "stream %llu \"%s\" opened: %s, %s, pid %lld",
           (unsigned long long)s->id, s->props.name, sb__type_name[s->props.type],
           sb__log_text(ctype, sizeof(ctype), s->props.content_type),
           (long long)s->peer_pid);
  s->sink = b->sink_create(s, &stream_sink_events);
  if (s->sink == NULL) {
    b->counters.client_errors++;
    stream_end(s);
  }
}

static void on_read(uv_stream_t* h, ssize_t n, const uv_buf_t* buf) {
  sb__stream_t* s = h->data;
  const char* p = buf->base;
  size_t len = n > 0 ? (size_t)n : 0;
  if (n == UV_ENOBUFS && s->sink != NULL) {
    stream_sink_hold(s, 1); /* released when the budget has room again */
    return;
  }
  if (n == UV_ENOBUFS && !s->handshaken) {
    /* handshake_memory_max: paused until hs_wake; its deadline still runs. */
    sb__broker_t* b = s->broker;
    uv_read_stop((uv_stream_t*)&s->client);
    s->reading = 0;
    if (!s->hs_waiting) {
      s->hs_waiting = 1;
      b->hs_waiters++;
      b->counters.handshake_memory_waits++;
      SB_LOG_CW(b, s->peer_user, "session",
                "connection %llu from pid %lld waits: handshakes in flight hold %llu "
                "bytes, handshake_memory_max is %llu",
                (unsigned long long)s->id, (long long)s->peer_pid,
                (unsigned long long)b->hs_bytes,
                (unsigned long long)b->cfg.handshake_memory_max);
    }
    return;
  }
  if (n < 0) {
    if (!s->handshaken && n == UV_EOF && s->hs.consumed == 0) {
      /* Not a stream at all: a probe whether the pipe is served (a second instance
       * starting, a health check). Counted, and not worth a warning. */
      s->broker->counters.connections_empty++;
      SB_LOG_D("session", "connection %llu from pid %lld closed without sending a byte",
               (unsigned long long)s->id, (long long)s->peer_pid);
      stream_end(s);
      return;
    }
    if (!s->handshaken) {
      bad_handshake(s, n == UV_EOF ? sb__handshake_eof(&s->hs) : sb__uv_err((int)n));
      return;
    }
    if (n != UV_EOF) {
      s->broker->counters.client_errors++;
      SB_LOG_CW(s->broker, s->peer_user, "stream",
                "stream %llu \"%s\": client connection: %s; %llu bytes read",
                (unsigned long long)s->id, s->props.name, uv_strerror((int)n),
                (unsigned long long)s->bytes);
    } else if (s->props.type == SB_DATAGRAM && sb__dgram_eof(&s->dgram) != 0) {
      SB_LOG_CW(s->broker, s->peer_user, "stream",
                "stream %llu \"%s\": client ended inside a datagram",
                (unsigned long long)s->id, s->props.name);
    } else {
      SB_LOG_D("stream", "stream %llu \"%s\": client finished after %llu bytes",
               (unsigned long long)s->id, s->props.name, (unsigned long long)s->bytes);
      stream_end_hold(s, 1);
      return;
    }
    stream_end(s);
    return;
  }
  if (!s->handshaken) {
    size_t used;
    int r = sb__handshake_feed(&s->hs, (const uint8_t*)p, len, &used, &s->props);
    hs_charge(s, s->hs.body != NULL ? s->hs.body_len : 0);
    if (r < 0) {
      bad_handshake(s, r);
      return;
    }
    if (r == 0)
      return;
    handshake_done(s);
    if (s->client_eof)
      return;
    p += used;
    len -= used;
  }
  if (len > 0)
    stream_data(s, p, len);
}

static void on_deadline(uv_timer_t* t) {
  sb__stream_t* s = t->data;
  s->broker->counters.handshake_timeouts++;
  SB_LOG_CW(s->broker, s->peer_user, "session",
            "connection %llu from pid %lld: no complete handshake within %llu ms "
            "(%llu bytes received)",
            (unsigned long long)s->id, (long long)s->peer_pid,
            (unsigned long long)s->broker->cfg.handshake_timeout_ms,
            (unsigned long long)s->hs.consumed);
  stream_end(s);
}

void sb__stream_start(sb__broker_t* b, sb__stream_t* s) {
  int r;
  s->client.data = s;
  s->opened = sb__time_now();
  sb__handshake_init(&s->hs, b->cfg.max_frame_size);
  uv_timer_init(b->loop, &s->deadline);
  s->deadline.data = s;
  uv_timer_start(&s->deadline, on_deadline, b->cfg.handshake_timeout_ms, 0);
  if ((r = uv_read_start((uv_stream_t*)&s->client, on_alloc, on_read)) != 0) {
    SB_LOG_E("session", "connection %llu: read: %s", (unsigned long long)s->id,
             uv_strerror(r));
    stream_end(s);
    return;
  }
  s->reading = 1;
}

void sb__stream_stop(sb__stream_t* s) {
  stream_end(s);
  if (s->sink && s->sink->stop)
    s->sink->stop(s->sink);
  stream_maybe_free(s);
}

void sb__stream_resume(sb__broker_t* b, const sb__spool_resume_t* r) {
  sb__stream_t* s = sb__xcalloc(1, sizeof(*s));
  int err = sb__props_decode_json(r->props, strlen(r->props), &s->props);
  if (err != 0) {
    SB_LOG_E("spool",
             "stream %lld in the spool has unreadable properties (%s); left there",
             (long long)r->sid, sb_strerror(err));
    sb__props_free(&s->props);
    free(s);
    return;
  }
  sb__handshake_init(&s->hs, 0);
  s->broker = b;
  s->id = ++b->next_id;
  s->handshaken = 1;
  s->client_eof = 1;
  s->closing = 1;
  s->bytes = r->end;
  s->peer_pid = s->peer_uid = s->peer_gid = -1;
  s->opened = sb__time_now();
  sb__streamlist_add(b, s);
  b->ndetached++;
  b->counters.streams_resumed++;
  SB_LOG_I("stream",
           "stream %llu \"%s\" resumed from the spool: %llu bytes, %llu of them "
           "written %s before",
           (unsigned long long)s->id, s->props.name, (unsigned long long)r->end,
           (unsigned long long)r->acked,
           b->cfg.upstream ? "upstream" : "to the archive");
  s->sink = b->sink_resume(s, r, &stream_sink_events);
}

static void stream_sink_drained(sb__stream_t* s) {
  if (s->client_eof || s->reading || s->closing || s->sink == NULL || s->sink->hold)
    return;
  if (uv_read_start((uv_stream_t*)&s->client, on_alloc, on_read) == 0)
    s->reading = 1;
}

static void stream_sink_hold(sb__stream_t* s, int hold) {
  if (s->sink == NULL)
    return;
  s->sink->hold = hold;
  if (hold && s->reading) {
    uv_read_stop((uv_stream_t*)&s->client);
    s->reading = 0;
  } else if (!hold && s->sink->queued <= s->broker->cfg.upstream_high_watermark) {
    stream_sink_drained(s);
  }
}

static void stream_sink_durable(sb__stream_t* s) {
  if (s->client_eof)
    stream_close_client(s);
}

static void stream_sink_done(sb__stream_t* s, int err) {
  sb__broker_t* b = s->broker;
  sb__sink_t* sink = s->sink;
  b->counters.streams_closed++;
  if (b->followers != NULL)
    sb__follow_closed(s);
  if (err == 0 && s->bytes_refused + s->bytes_dropped > 0)
    SB_LOG_W("stream",
             "stream %llu \"%s\" closed: %llu bytes, of which %llu refused and %llu "
             "dropped by the spool (full)",
             (unsigned long long)s->id, s->props.name, (unsigned long long)s->bytes,
             (unsigned long long)s->bytes_refused,
             (unsigned long long)s->bytes_dropped);
  else if (err == 0 && s->kept)
    SB_LOG_I("stream",
             "stream %llu \"%s\" stopped: %llu bytes read, kept in the spool for the "
             "next start",
             (unsigned long long)s->id, s->props.name, (unsigned long long)s->bytes);
  else if (err == 0)
    SB_LOG_I("stream", "stream %llu \"%s\" closed: %llu bytes%s",
             (unsigned long long)s->id, s->props.name, (unsigned long long)s->bytes,
             s->props.type == SB_DATAGRAM ? " (datagram framing included)" : "");
  else
    SB_LOG_E("stream", "stream %llu \"%s\" ended with an error: %s",
             (unsigned long long)s->id, s->props.name, sb_strerror(err));
  s->sink = NULL;
  sink->destroy(sink);
  /* A sink may be done before the client is (it failed): stop the client too; and a
   * client held open after its EOF closes now. */
  stream_end(s);
  stream_close_client(s);
  stream_maybe_free(s);
}

static void on_sink_drained(sb__sink_t* sink) {
  stream_sink_drained(sink->stream);
}

static void on_sink_hold(sb__sink_t* sink, int hold) {
  stream_sink_hold(sink->stream, hold);
}

static void on_sink_durable(sb__sink_t* sink) {
  stream_sink_durable(sink->stream);
}

static void on_sink_cut(sb__sink_t* sink) {
  sb__stream_stop(sink->stream);
}

static void on_sink_done(sb__sink_t* sink, int err) {
  stream_sink_done(sink->stream, err);
}
