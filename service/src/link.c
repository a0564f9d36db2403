/*
 * link.c - one upstream connection of a stream: the dial (with backoff), the
 * handshake under the name names.c picks, the writes and what they tell of what the
 * upstream read, the end (confirmed through the platform's confirm.c), and the close:
 * a break or a refusal reopens the stream from its replay window; refused too often,
 * it is given up and tried again on a slow backoff of its own.
 */
#include "upstream_int.h"
#include "link.h"
#include "confirm.h"
#include "names.h"
#include "readback.h"
#include "tags.h"
#include "window.h"

/* A connection that ends this soon after its dial was refused. */
#define SB__REFUSAL_MS 1000
/* A given-up stream is tried again after this, doubling at each round up to the cap. */
#define SB__GIVEN_UP_MIN_MS (60u * 1000u)
#define SB__GIVEN_UP_MAX_MS (3600u * 1000u)
/* An upstream that refuses a name reads the handshake, and with it at most one read
 * of what follows (a butler's or our test butler's buffer: 64 KiB): having read more
 * than this past the handshake, it took the stream and broke. Where the platform
 * cannot tell what the upstream read (Windows), only what was written is known, and
 * the pipe's buffer may hold another 64 KiB of it unread, with slack: SB__WRITTEN_PART.
 */
#define SB__READ_PART (64u * 1024u)
#define SB__WRITTEN_PART (160u * 1024u)
/* Dials that find the upstream busy before that is worth a warning. */
#define SB__BUSY_QUIET 3

static void on_retry(uv_timer_t* t);
static void on_linger(uv_timer_t* t);
static void on_given_up_timer(uv_timer_t* t);
static int up_conn_read_part(sb__upstream_t* up);

/* The delay before a given-up stream is tried again: doubling at each round. */
uint64_t sb__link_given_up_delay(unsigned rounds) {
  uint64_t d = SB__GIVEN_UP_MIN_MS;
  unsigned i;
  for (i = 0; i < rounds && d < SB__GIVEN_UP_MAX_MS; i++)
    d *= 2;
  return d < SB__GIVEN_UP_MAX_MS ? d : SB__GIVEN_UP_MAX_MS;
}

/* The name for the next connection (names.c). */
static void up_pick_name(sb__upstream_t* up) {
  char* name = sb__names_pick(up->b, up_name(up), up->up_name != NULL, &up->name_n);
  free(up->up_name);
  up->up_name = name;
}

/* The backoff delay after `step` failures: doubling from backoff_initial_ms, capped
 * at backoff_max_ms, drawn from the upper half (jitter). */
static uint64_t up_backoff(sb__upstream_t* up, unsigned step) {
  return sb__backoff_ms(&up->b->cfg, step);
}

static void on_conn_closed(uv_handle_t* h) {
  sb__upstream_t* up = h->data;
  uint64_t delay;
  up->pipe_closing = 0;
  if (up->closing) {
    up->ops->final_closed(h);
    return;
  }
  if (up->finishing && up->b->stopping) {
    up->ops->maybe_done(up);
    return;
  }
  if (up->conn_done) {
    up->ops->maybe_done(up);
    return;
  }
  if (up->state == SB__LINK_LINGERING) {
    uv_timer_start(&up->timer, on_linger, up->b->cfg.upstream_end_linger_ms, 0);
    return;
  }
  if (up->state == SB__LINK_GIVEN_UP) {
    uv_timer_start(&up->timer, on_given_up_timer,
                   sb__link_given_up_delay(up->given_up_rounds), 0);
    return;
  }
  /* Reopen: at once after a gap or a first refusal (the next name is free), after
   * growing backoff when refusals go on, else after the first backoff step. */
  if (up->gap) {
    delay = 0;
  } else if (up->refusals > 0) {
    delay = up->refusals == 1 ? 0 : up_backoff(up, up->refusals - 2);
  } else {
    delay = up->b->cfg.backoff_initial_ms;
    up->attempt = 0;
  }
  up->state = SB__LINK_BACKOFF;
  uv_timer_start(&up->timer, on_retry, delay, 0);
}

/* Tries a given-up stream again now, with upstream_max_refusals refusals to go. */
void sb__link_retry_given_up(sb__upstream_t* up, const char* why) {
  if (up->state != SB__LINK_GIVEN_UP || up->closing)
    return;
  SB_LOG_I("upstream", "stream %llu \"%s\": given up before; trying it again (%s)",
           up_id(up), up_name(up), why);
  uv_timer_stop(&up->timer);
  up->state = SB__LINK_IDLE;
  up->given_up_rounds++;
  up->refusals = 0;
  up->attempt = 0;
  sb__link_dial(up);
}

static void on_given_up_timer(uv_timer_t* t) {
  sb__link_retry_given_up(t->data, "its retry timer");
}

static void up_retry_all_given_up(sb__broker_t* b) {
  sb__stream_t* s;
  for (s = b->streams; s; s = s->next)
    if (s->sink != NULL && up_of(s->sink)->state == SB__LINK_GIVEN_UP)
      sb__link_retry_given_up(up_of(s->sink), "the upstream is back");
}

/* Ends the current connection (its pending writes are cancelled). */
void sb__link_close(sb__upstream_t* up) {
  if (!up->pipe_open)
    return;
  up->pipe_open = 0;
  if (sb__link_connected(up->state))
    up->state = SB__LINK_IDLE;
  up->gen++;
  up->pipe_closing = 1;
  uv_timer_stop(&up->timer);
  uv_close((uv_handle_t*)&up->pipe, on_conn_closed);
}

/* The connection broke: what it may not have delivered is resent on a new one. */
void sb__link_broken(sb__upstream_t* up, int err) {
  sb__stream_t* s = up_stream(up);
  sb__broker_t* b = up->b;
  if (!up->pipe_open)
    return;
  /* A live stream's window and what was in flight go to the spool, to be resent. */
  sb__window_spill(up, 1);
  up->reopen = 1;
  if (uv_now(b->loop) - up->conn_at < SB__REFUSAL_MS &&
      up->conn_epoch == b->upstream_epoch && !up_conn_read_part(up)) {
    up->refusals++;
    b->counters.upstream_refusals++;
    if (up->refusals >= b->cfg.upstream_max_refusals) {
      /* What the next connection resends: the replay window, from the spool. */
      uint64_t w = b->cfg.replay_window, from = up->acked > w ? up->acked - w : 0;
      uint64_t end = up_end(up);
      if (from > end)
        from = end;
      up->state = SB__LINK_GIVEN_UP;
      b->counters.streams_given_up++;
      SB_LOG_E(
          "upstream",
          "stream %llu \"%s\": the upstream refused it %u times in a row (last "
          "as \"%s\": %s); given up: its client is closed and it keeps %llu "
          "bytes in the spool (bytes %llu to %llu, resent from there), tried "
          "again in %llu s, when the upstream appears again, or at sbctl retry",
          up_id(up), up_name(up), up->refusals, up->up_name, sb_strerror(err),
          (unsigned long long)(end - from), (unsigned long long)from,
          (unsigned long long)end,
          (unsigned long long)(sb__link_given_up_delay(up->given_up_rounds) / 1000));
      sb__link_close(up);
      if (!s->client_eof)
        sb__sink_cut(&up->sink);
      return;
    }
    b->counters.upstream_reopens++;
    SB_LOG_W("upstream",
             "stream %llu \"%s\": the upstream closed the connection %llu ms after the "
             "dial (as \"%s\": %s; %llu bytes written, %llu read%s): refused, or "
             "gone; reopening it from the replay window under the next name "
             "(refusal %u of %llu)",
             up_id(up), up_name(up),
             (unsigned long long)(uv_now(b->loop) - up->conn_at), up->up_name,
             sb_strerror(err), (unsigned long long)up->conn_written,
             (unsigned long long)up->conn_read, up->conn_read_known ? "" : " (unknown)",
             up->refusals, (unsigned long long)b->cfg.upstream_max_refusals);
  } else {
    up->refusals = 0;
    up->attempt = 0;
    b->counters.upstream_errors++;
    b->counters.upstream_reopens++;
    SB_LOG_W("upstream",
             "stream %llu \"%s\": upstream connection lost after byte %llu: %s; "
             "reopening it from the replay window",
             up_id(up), up_name(up), (unsigned long long)up->acked, sb_strerror(err));
  }
  sb__link_close(up);
}

/* A write of len bytes on the current connection completed: what the upstream has read
 * of the connection so far is what was written less what it left unread. */
static void up_conn_track(sb__upstream_t* up, size_t len) {
  int64_t unread;
  up->conn_written += len;
  if (!up->pipe_open || (unread = sb__pipe_unread(&up->pipe)) < 0)
    return;
  up->conn_read_known = 1;
  if ((uint64_t)unread < up->conn_written &&
      up->conn_written - (uint64_t)unread > up->conn_read)
    up->conn_read = up->conn_written - (uint64_t)unread;
}

/* Whether the upstream read part of the stream's data on the current connection, past
 * what a refusal reads: then its close is a break, not a refusal. */
static int up_conn_read_part(sb__upstream_t* up) {
  if (up->conn_read_known)
    return up->conn_read > up->conn_hs + SB__READ_PART;
  return up->conn_written > up->conn_hs + SB__WRITTEN_PART;
}

static void on_write(uv_write_t* req, int status) {
  sb__upstream_write_t* w = (sb__upstream_write_t*)req;
  sb__upstream_t* up = req->data;
  size_t len = w->chunk ? w->chunk->len : 0;
  uint64_t gen = w->gen;
  int drained = 0;
  up->inflight -= len;
  if (w->gen == up->gen && status == 0)
    up_conn_track(up, w->buf.len);
  if (w->gen == up->gen && status == 0 && w->chunk) {
    uint64_t end = w->chunk->off + len;
    if (end > up->acked)
      up->acked = end;
    up->b->counters.bytes_out += len;
  }
  if (w->drain) {
    sb__budget_credit(&up->b->budget, SB__BUDGET_DRAIN, len);
    sb__budget_wake(&up->b->budget);
  }
  if (w->live && w->live_epoch == up->live_epoch) {
    uint64_t hw = up->b->cfg.upstream_high_watermark;
    up->live_q -= len;
    up->sink.queued -= len;
    if (up->live_q <= hw / 2) {
      uv_timer_stop(&up->stall_timer);
      drained = 1;
    }
  }
  sb__chunk_free(w->chunk);
  free(w);
  if (gen != up->gen || up->closing)
    return;
  if (status < 0) {
    sb__link_broken(up, sb__uv_err(status));
    return;
  }
  if (up->route == SB__ROUTE_LIVE)
    sb__window_trim(up);
  if (drained)
    sb__sink_drained(&up->sink);
  sb__link_pump(up);
}

static void up_write_buf(sb__upstream_t* up, sb__upstream_write_t* w) {
  int r;
  w->req.data = up;
  w->gen = up->gen;
  if ((r = uv_write(&w->req, (uv_stream_t*)&up->pipe, &w->buf, 1, on_write)) != 0) {
    /* Failed at once (Windows: a pipe whose server is gone): no callback will come. */
    if (w->chunk != NULL)
      up->inflight -= w->chunk->len;
    if (w->drain) {
      sb__budget_credit(&up->b->budget, SB__BUDGET_DRAIN, w->chunk->len);
      sb__budget_wake(&up->b->budget);
    }
    sb__chunk_free(w->chunk);
    free(w);
    sb__link_broken(up, sb__uv_err(r));
  }
}

/* Counts what of [off, end) a connection of the stream was handed before as resent,
 * from memory or from the spool alike, whatever the reason it goes again. */
static void up_count_sent(sb__upstream_t* up, uint64_t off, uint64_t end) {
  if (off < up->sent_max)
    up->b->counters.bytes_resent += (end < up->sent_max ? end : up->sent_max) - off;
  if (end > up->sent_max)
    up->sent_max = end;
}

/* Writes c (a new reference) upstream; it must start at send_off. */
void sb__link_send(sb__upstream_t* up, sb__chunk_t* c, int drain) {
  sb__upstream_write_t* w = sb__xcalloc(1, sizeof(*w));
  up_count_sent(up, c->off, c->off + c->len);
  w->chunk = sb__chunk_ref(c);
  w->buf = uv_buf_init(c->data, (unsigned)c->len);
  w->drain = drain;
  if (drain)
    sb__budget_charge(&up->b->budget, SB__BUDGET_DRAIN, c->len);
  up->send_off = c->off + c->len;
  up->inflight += c->len;
  up_write_buf(up, w);
}

/* Writes c live: it joins the memory window (the caller's reference passes to it), and
 * counts as queued until written, so a connection that falls behind pauses the client
 * (and, past SB__LIVE_STALL_MS, turns the stream to the spool). */
void sb__link_send_live(sb__upstream_t* up, sb__chunk_t* c) {
  sb__upstream_write_t* w = sb__xcalloc(1, sizeof(*w));
  uint64_t hw = up->b->cfg.upstream_high_watermark;
  sb__chunk_t* keep = sb__chunk_ref(c);
  up_count_sent(up, c->off, c->off + c->len);
  w->chunk = c;
  w->buf = uv_buf_init(c->data, (unsigned)c->len);
  w->live = 1;
  w->live_epoch = up->live_epoch;
  up->send_off = c->off + c->len;
  up->committed = up->send_off;
  up->inflight += c->len;
  up->live_q += c->len;
  up->sink.queued += c->len;
  up->b->counters.bytes_live += c->len;
  sb__window_push(up, keep);
  if (up->live_q > hw && !uv_is_active((uv_handle_t*)&up->stall_timer))
    uv_timer_start(&up->stall_timer, sb__window_on_stall, SB__LIVE_STALL_MS, 0);
  up_write_buf(up, w);
}

/* Writes the handshake; tagged with the offset mark when this is a reopen. */
void sb__link_handshake(sb__upstream_t* up, int tag, int64_t mark) {
  sb__props_t props;
  sb__buf_t hs = {0};
  sb__upstream_write_t* w;
  char num[32];
  int r = sb__props_decode_json(up->props, strlen(up->props), &props);
  up_pick_name(up);
  if (r == 0 && strcmp(up->up_name, props.name) != 0) {
    /* A stream renamed before (by a broker in front of this one) keeps the first
     * original. */
    if (sb__props_get_tag(&props, SB__TAG_NAME) == NULL)
      r = sb__props_set_tag(&props, SB__TAG_NAME, props.name);
    free(props.name);
    props.name = sb__xstrdup(up->up_name);
  }
  if (r == 0 && tag) {
    snprintf(num, sizeof(num), "%lld", (long long)mark);
    if (mark >= 0)
      r = sb__props_set_tag(&props, SB__TAG_OFFSET, num);
    if (r == 0 && up->dropped > 0) {
      snprintf(num, sizeof(num), "%llu", (unsigned long long)up->dropped);
      r = sb__props_set_tag(&props, SB__TAG_DROPPED, num);
    }
  }
  if (r == 0)
    r = sb__handshake_encode(&props, &hs);
  sb__props_free(&props);
  if (r != 0) {
    /* Cannot happen for properties that decoded once. */
    SB_LOG_E("upstream", "stream %llu: encoding the handshake: %s", up_id(up),
             sb_strerror(r));
    sb__buf_free(&hs);
    abort();
  }
  w = sb__xcalloc(1, sizeof(*w) + hs.len);
  up->conn_hs = hs.len;
  memcpy(w->hs, hs.data, hs.len);
  w->buf = uv_buf_init(w->hs, (unsigned)hs.len);
  sb__buf_free(&hs);
  up_write_buf(up, w);
}

/*
 * The upstream did not confirm a stream's end within upstream_end_timeout_ms (it reads
 * slowly, or not at all): the stream is not counted delivered. Its connection closes
 * and it is resent later from its window, unless the platform can tell that the
 * upstream did read every byte (POSIX: the socket's unread bytes), which is enough.
 */
void sb__link_end_unconfirmed(sb__upstream_t* up) {
  int64_t unread = sb__pipe_unread(&up->pipe);
  if (unread == 0) {
    SB_LOG_I("upstream",
             "stream %llu \"%s\": the upstream read every byte but did not close its "
             "end within %llu ms",
             up_id(up), up_name(up),
             (unsigned long long)up->b->cfg.upstream_end_timeout_ms);
    sb__link_end_read(up);
    return;
  }
  SB_LOG_W("upstream",
           "stream %llu \"%s\": the upstream did not confirm the stream's end within "
           "%llu ms (%lld bytes unread); not counted delivered: resent later",
           up_id(up), up_name(up),
           (unsigned long long)up->b->cfg.upstream_end_timeout_ms, (long long)unread);
  sb__link_broken(up, SB_ETIMEDOUT);
}

/* Every byte is written: end the connection. POSIX: shutdown, then the upstream's EOF
 * says it read everything; Windows: a flush (confirm.c). */
static void up_conn_end(sb__upstream_t* up) {
  if (sb__confirm_end(up) != 0)
    return;
  uv_timer_start(&up->timer, sb__confirm_timeout, up->b->cfg.upstream_end_timeout_ms,
                 0);
}

/*
 * The upstream exited before confirming it stored the stream's end: what it held
 * read, and not stored, is gone with it. The end is a break: the window (spilled to
 * the spool first) is resent on a new connection, tagged with its offset, after the
 * first backoff step.
 */
void sb__link_end_lost(sb__upstream_t* up) {
  sb__broker_t* b = up->b;
  b->counters.upstream_end_resends++;
  b->counters.upstream_reopens++;
  b->upstream_epoch++; /* gone: connections that end at once now are not refusals */
  SB_LOG_W("upstream",
           "stream %llu \"%s\": the upstream (pid %lld) exited before confirming it "
           "stored the stream's end (byte %llu); resending from its replay window",
           up_id(up), up_name(up), (long long)up->proc.pid,
           (unsigned long long)up->sent_max);
  if (up->state == SB__LINK_LINGERING)
    up->state = SB__LINK_IDLE;
  up->end_resend = 1;
  sb__window_spill(up, 1);
  up->reopen = 1;
  up->refusals = 0;
  up->attempt = 0;
  if (up->pipe_open) {
    sb__link_close(up); /* on_conn_closed dials */
  } else {
    uv_timer_stop(&up->timer);
    up->state = SB__LINK_BACKOFF;
    uv_timer_start(&up->timer, on_retry, b->cfg.backoff_initial_ms, 0);
  }
}

/* Whether the upstream's process lives (1), exited or is exiting (0), or cannot be
 * known (< 0: said once). */
int sb__link_proc_alive(sb__upstream_t* up) {
  int alive = sb__upstream_proc_alive(&up->proc);
  if (alive < 0 && !up->b->upstream_proc_told) {
    up->b->upstream_proc_told = 1;
    SB_LOG_W("upstream",
             "cannot tell whether the upstream's process is alive (%s): a stream's end "
             "counts as stored once the upstream closed its end (Linux) or read every "
             "byte (Windows), and an upstream killed at that moment can lose it; said "
             "once",
             sb_strerror(alive));
  }
  return alive;
}

/*
 * The upstream read every byte of the stream (Windows: FlushFileBuffers and a pipe
 * still held; POSIX: nothing unread in the socket at the deadline), but cannot say it
 * stored them: a pipe has no half-close. The connection closes (that is the end the
 * upstream waits for), and the stream keeps its window for upstream_end_linger_ms:
 * if the upstream's process exits within it, what it held read may be lost, and the
 * window is resent; after it, the stream is delivered.
 */
void sb__link_end_read(sb__upstream_t* up) {
  int alive = sb__link_proc_alive(up);
  if (alive == 0) {
    sb__link_end_lost(up);
    return;
  }
  if (up->b->cfg.upstream_end_linger_ms == 0 || alive < 0) {
    up->conn_done = 1;
    sb__link_close(up);
    return;
  }
  up->state = SB__LINK_LINGERING;
  sb__link_close(up); /* on_conn_closed starts the linger */
}

static void on_linger(uv_timer_t* t) {
  sb__upstream_t* up = t->data;
  if (up->state != SB__LINK_LINGERING || up->closing)
    return;
  up->state = SB__LINK_IDLE;
  if (sb__link_proc_alive(up) == 0) {
    sb__link_end_lost(up);
    return;
  }
  up->conn_done = 1;
  up->ops->maybe_done(up);
}

/* What to do next on the connection. */
void sb__link_pump(sb__upstream_t* up) {
  uint64_t hw = up->b->cfg.upstream_high_watermark;
  if (up->closing || up->state != SB__LINK_OPEN)
    return;
  sb__readback_ack(up);
  if (up->gap) {
    /* Finish the current connection's writes, then reopen at the gap. */
    if (up->inflight == 0) {
      up->reopen = 0;
      sb__link_close(up);
    }
    return;
  }
  if (up->finishing && up->send_off >= up_end(up) && up->committed >= up->send_off &&
      up->inflight == 0 && up->jobs_out == up->ack_out) {
    up_conn_end(up);
    return;
  }
  if (!up->reading_spool && up->send_off < up->committed &&
      up->send_off < up->trunc_off && up->inflight <= hw / 2) {
    /* Data read back from the spool shares the memory budget: past it, the stream
     * waits for other streams' writes to make room. */
    if (sb__budget_drain_full(&up->b->budget)) {
      if (!up->read_wait) {
        up->read_wait = 1;
        sb__budget_wait(&up->b->budget, &up->waiter);
      }
    } else {
      sb__readback_read(up, 0);
    }
  }
  up->ops->maybe_live(up);
}

static void on_retry(uv_timer_t* t) {
  sb__upstream_t* up = t->data;
  if (up->state == SB__LINK_BACKOFF)
    up->state = SB__LINK_IDLE;
  sb__link_dial(up);
}

/*
 * One dial attempt. The platform dialer never blocks: busy and absent are answers, and
 * the next attempt is a timer away, doubling up to backoff_max_ms, with jitter (each
 * delay is drawn from its upper half) so that many streams do not retry in step.
 */
void sb__link_dial(sb__upstream_t* up) {
  sb__broker_t* b = up->b;
  uv_os_fd_t fd;
  uint64_t delay;
  int r, ur;
  /* The handle is reused only once its last close is done (on_conn_closed dials). */
  if (up->closing || up->pipe_open || up->pipe_closing ||
      up->state == SB__LINK_GIVEN_UP || up->state == SB__LINK_LINGERING)
    return;
  if (b->stopping) {
    up->ops->maybe_done(up);
    return;
  }
  if (up->state == SB__LINK_WAIT_MEMORY)
    return; /* the budget's wake dials */
  if (up->read_wait) {
    /* Waiting to read the spool means nothing without a connection. */
    up->read_wait = 0;
    sb__budget_unwait(&b->budget, &up->waiter);
  }
  if (up->reopen && sb__budget_drain_full(&b->budget)) {
    /* A reopen reads its window back at once: it waits for room in the budget. */
    up->state = SB__LINK_WAIT_MEMORY;
    sb__budget_wait(&b->budget, &up->waiter);
    return;
  }
  b->counters.upstream_dials++;
  r = sb__upstream_dial(b->cfg.upstream, &fd);
  if (r == 0) {
    int pr;
    sb__upstream_proc_close(&up->proc);
    if ((pr = sb__upstream_proc_open(fd, &up->proc)) != 0 && !b->upstream_proc_told) {
      b->upstream_proc_told = 1;
      SB_LOG_W("upstream",
               "cannot identify the process serving %s (%s): a stream's end counts as "
               "stored once the upstream closed its end (Linux) or read every byte "
               "(Windows), and an upstream killed at that moment can lose it; said "
               "once",
               b->cfg.upstream, sb_strerror(pr));
    }
    uv_pipe_init(b->loop, &up->pipe, 0);
    up->pipe.data = up;
    up->pipe_open = 1;
    up->gen++;
    if ((ur = sb__pipe_adopt(&up->pipe, fd)) != 0) {
      SB_LOG_E("upstream", "uv_pipe_open: %s", uv_strerror(ur));
      sb__link_broken(up, sb__uv_err(ur));
      return;
    }
    if (up->attempt > 0)
      sb__log(up->dial_warned ? SB_LOG_INFO : SB_LOG_DEBUG, "upstream",
              "stream %llu \"%s\": connected to %s after %u retries", up_id(up),
              up_name(up), b->cfg.upstream, up->attempt);
    up->attempt = 0;
    up->dial_warned = 0;
    up->state = SB__LINK_OPEN;
    up->conn_written = up->conn_hs = up->conn_read = 0;
    up->conn_read_known = 0;
    up->conn_at = uv_now(b->loop);
    up->conn_epoch = b->upstream_epoch;
    if (b->given_up_epoch != b->upstream_epoch) {
      /* The upstream was seen gone and now takes a connection: it is new (restarted,
       * replaced), and the streams it refused before are worth a try at once. */
      b->given_up_epoch = b->upstream_epoch;
      up_retry_all_given_up(b);
    }
    sb__confirm_watch(up);
    if (up->gap) {
      up->gap = 0;
      up->hole = 0;
      up->send_off = up->gap_off;
      sb__link_handshake(up, 1, up->gap_mark);
    } else if (up->reopen) {
      up->state = SB__LINK_OPENING;
      sb__readback_read(up, 1);
    } else {
      sb__link_handshake(up, 0, 0);
    }
    sb__link_pump(up);
    return;
  }
  b->counters.upstream_dial_failures++;
  /* Connections that ended at once were not refused after all: the upstream is gone
   * (killed, restarting), and that is an outage; for every stream (the epoch). */
  up->refusals = 0;
  b->upstream_epoch++;
  /* Only an absent upstream is watched for: one that exists but refuses us or is busy
   * would wake every waiting stream at once, over and over; they take turns on their
   * own jittered backoff instead. */
  if (r == SB_ENOSERVER)
    sb__upstream_watch_waiting(b->upstream_watch);
  delay = up_backoff(up, up->attempt);
  /* A busy upstream (every pipe instance taken, a full listen backlog) is a moment's
   * load: said at debug level for the first SB__BUSY_QUIET retries, and warned only if
   * it lasts; an absent or failing one is warned at once. */
  if (!up->dial_warned && (r != SB_EBUSY || up->attempt >= SB__BUSY_QUIET)) {
    up->dial_warned = 1;
    SB_LOG_W("upstream",
             "stream %llu \"%s\": upstream %s: %s; spooling, retrying with "
             "backoff",
             up_id(up), up_name(up), b->cfg.upstream, sb_strerror(r));
  } else {
    SB_LOG_D("upstream", "stream %llu: retry %u in %llu ms: %s", up_id(up), up->attempt,
             (unsigned long long)delay, sb_strerror(r));
  }
  up->attempt++;
  up->state = SB__LINK_BACKOFF;
  uv_timer_start(&up->timer, on_retry, delay, 0);
}
