/*
 * upstream.c - the upstream sink: one stream's way to the upstream server, live or
 * through the spool.
 *
 * Two routes. Live (durability "backlog", while the connection keeps up): a chunk read
 * from the client is written upstream at once, and kept in memory, after its write
 * completed, as the replay window; nothing touches the disk. Spooled: every chunk is
 * appended to the spool; while the connection keeps up (connected, below the high
 * watermark, nothing older waiting) it is also written upstream at once (durability
 * "spool", and "backlog" while spooling) or once its append committed ("always");
 * otherwise it waits in the spool and is read back, oldest first, when the connection
 * can take it. So the client never waits on the upstream, and each stream's bytes reach
 * the upstream in order.
 *
 * A live stream turns to the spool when a chunk cannot go live (the connection broke,
 * is not there, or has held more than the high watermark for SB__LIVE_STALL_MS), and at
 * a stop: first its memory window, and the chunks in flight, are written to the spool
 * (a "spill"), then every chunk after. It turns live again once the spool has given
 * back everything and the connection keeps up. The spool holds a stream's row only once
 * the stream needed it. The windows of all live streams share one memory budget,
 * replay_memory_max: past it, whole windows, oldest first, are spilled to the spool
 * (their streams stay live) until a quarter of the budget is free.
 *
 * Offsets (bytes of the stream's data, handshake excluded):
 *   next_off   bytes read from the client        committed  bytes in the spool, or sent
 *                                                           live (never to be read
 * back) send_off   bytes handed to the connection    acked      bytes whose write
 * completed The spool (spooled) or memory (live) keeps every chunk from acked -
 * replay_window on (the replay window). When the connection breaks, the stream is
 * reopened on a new one with the tag streambroker.offset: the offset (datagram index
 * for datagram streams) of the oldest chunk of the window, and is resent from there.
 *
 * Names. A LUCI butler accepts each stream name once in its lifetime and refuses a
 * name it has seen by closing the connection right after the handshake. So a stream
 * goes upstream under its own name only the first time the service sends that name;
 * a second stream of the same name, and every reopen, takes the first free NAME:N
 * (N = 2, 3, ...) with the tag streambroker.name holding the original. A connection
 * that the upstream closes within SB__REFUSAL_MS of the dial is a refusal, unless the
 * upstream was seen gone or new meanwhile (a dial failed, or its pipe appeared again:
 * an outage), or the dial after it fails, or the upstream read part of the stream's
 * data on it (a break, resumed from the window: see up_conn_read_part): the stream is
 * reopened under the next name, at once the first time and with exponential backoff
 * after that; after upstream_max_refusals refusals in a row it is given up
 * (its client closed, its data left in the spool), logged, counted and listed. A
 * given-up stream is tried again on a slow backoff of its own (SB__GIVEN_UP_MIN_MS
 * doubling to SB__GIVEN_UP_MAX_MS), at once when the upstream appears again, or when
 * sbctl retry asks: each try gets upstream_max_refusals refusals again.
 *
 * Holes. A chunk that is missing from the spool (dropped at the cap, or deleted
 * because its checksum failed) is never skipped over silently: the stream is reopened
 * past it, tagged streambroker.offset and streambroker.dropped.
 *
 * Dialing: capped exponential backoff with jitter while the upstream is busy or absent.
 * On POSIX the sink also reads the connection, so that an upstream that goes away is
 * noticed at once, and a stream ends with a shutdown and the upstream's own EOF: it has
 * then read everything (an upstream that dies first resets the connection instead, and
 * the stream is resent). Windows opens the pipe write-only and notices a broken pipe at
 * the next write.
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "upstream_int.h"
#include "names.h"
#include "tags.h"

#define SB__SPOOL_READ_LIMIT (256u * 1024u)
#define SB__STOP_GRACE_MS 2000
/* A connection that ends this soon after its dial was refused. */
#define SB__REFUSAL_MS 1000
/* A read of the spool that failed for now is tried again after this. */
#define SB__READ_RETRY_MS 1000
/* A live stream whose connection holds more than the high watermark this long turns
 * to the spool (its client was paused meanwhile: a moment, not an outage). */
#define SB__LIVE_STALL_MS 500
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
/* A spill joins small chunks up to this size: one spool row each. */
#define SB__SPILL_JOIN (128u * 1024u)

static void up_pump(sb__upstream_t* up);
static void up_dial(sb__upstream_t* up);
static void on_retry(uv_timer_t* t);
static void on_linger(uv_timer_t* t);
static void up_maybe_done(sb__upstream_t* up);
static void up_end_read(sb__upstream_t* up);
static void on_given_up_timer(uv_timer_t* t);
static int up_conn_read_part(sb__upstream_t* up);

/* The delay before a given-up stream is tried again: doubling at each round. */
static uint64_t up_given_up_delay(sb__upstream_t* up) {
  uint64_t d = SB__GIVEN_UP_MIN_MS;
  unsigned i;
  for (i = 0; i < up->given_up_rounds && d < SB__GIVEN_UP_MAX_MS; i++)
    d *= 2;
  return d < SB__GIVEN_UP_MAX_MS ? d : SB__GIVEN_UP_MAX_MS;
}

/* ---- the live route: memory windows, spills ---- */

static void on_opened(sb__spool_job_t* j);

static sb__chunk_t* mem_pop(sb__upstream_t* up) {
  sb__chunk_t* c = up->mem_head;
  uint64_t m = chunk_mem(c);
  up->mem_head = c->next;
  if (up->mem_head == NULL)
    up->mem_tail = NULL;
  c->next = NULL;
  up->mem_bytes -= m;
  sb__budget_window_sub(&up->b->budget, &up->win, m, up->mem_head == NULL);
  return c;
}

/* The stream's row, submitted before its first chunk (jobs run in order). */
static void up_open_row(sb__upstream_t* up) {
  sb__spool_job_t* j;
  if (up->opened)
    return;
  up->opened = 1;
  up->open_off = up->next_off;
  j = job_new(up, SB__SPOOL_OPEN, on_opened);
  j->props = sb__xstrdup(up->props);
  j->type = up_stream(up)->props.type;
  sb__spool_submit(up->b->spool, j);
}

static void on_spool_job(sb__spool_job_t* j) {
  sb__upstream_t* up = j->data;
  up->jobs_out--;
  if (j->status != 0)
    SB_LOG_W("spool", "stream %llu \"%s\": trimming its window in the spool: %s",
             up_id(up), up_name(up), sb_strerror(j->status));
  free(j);
  up_pump(up);
  up_maybe_done(up);
}

/* Moves the stream's cursor in the spool to acked, and with exact, deletes its chunks
 * that end at or before trim (the spool's part of a window memory now covers). */
static void up_cursor(sb__upstream_t* up, uint64_t trim, int exact) {
  sb__spool_job_t* j = job_new(up, SB__SPOOL_ACK, on_spool_job);
  j->off = up->acked;
  j->trim = trim;
  j->exact = exact;
  if (up->acked > up->db_acked)
    up->db_acked = up->acked;
  sb__spool_submit(up->b->spool, j);
}

/* Drops memory chunks behind the window: all before the last resend point (mark >= 0)
 * at or before acked - replay_window. Once memory holds such a point, the spool's part
 * of the window (older) is not needed either. */
static void mem_trim(sb__upstream_t* up) {
  uint64_t w = up->b->cfg.replay_window, t = up->acked > w ? up->acked - w : 0;
  sb__chunk_t *c, *keep = NULL;
  for (c = up->mem_head; c && c->off <= t; c = c->next)
    if (c->mark >= 0)
      keep = c;
  if (keep == NULL)
    return;
  while (up->mem_head != keep)
    sb__chunk_free(mem_pop(up));
  if (up->spool_part > 0 && keep->off >= up->spool_part) {
    up_cursor(up, up->spool_part, 1);
    up->spool_part = 0;
  }
}

/* Once every spilled chunk is committed, what was in flight at the turn to the spool
 * no longer holds the client. */
static void spill_committed(sb__upstream_t* up) {
  if (up->spill_out > 0 || up->spill_q == 0)
    return;
  up->sink.queued -= up->spill_q;
  up->spill_q = 0;
  if (up->sink.queued <= up->b->cfg.upstream_high_watermark / 2)
    sb__stream_sink_drained(up_stream(up));
}

static void on_spilled(sb__spool_job_t* j) {
  sb__upstream_t* up = j->data;
  sb__chunk_t* c = j->chunk;
  up->jobs_out--;
  up->spill_out--;
  sb__budget_credit(&up->b->budget, SB__BUDGET_SPILLS, chunk_mem(c));
  sb__budget_release(&up->b->budget);
  spill_committed(up);
  if (j->status != 0) {
    up->b->counters.window_bytes_unstored += c->len;
    SB_LOG_W("spool",
             "stream %llu \"%s\": its replay window, bytes %llu to %llu, could not be "
             "written to the spool: %s; after a break they cannot be resent",
             up_id(up), up_name(up), (unsigned long long)c->off,
             (unsigned long long)(c->off + c->len), sb_strerror(j->status));
  }
  sb__chunk_free(c);
  free(j);
  up_pump(up);
  up_maybe_done(up);
}

/* Appends one spilled chunk (the reference passes to the job). */
static void spill_one(sb__upstream_t* up, sb__chunk_t* c) {
  sb__spool_job_t* j = job_new(up, SB__SPOOL_APPEND, on_spilled);
  j->seq = up->next_seq++;
  j->chunk = c;
  up->spill_out++;
  sb__budget_charge(&up->b->budget, SB__BUDGET_SPILLS, chunk_mem(c));
  sb__spool_submit(up->b->spool, j);
}

/* Appends a join, copied to a chunk of its exact size. */
static void spill_join(sb__upstream_t* up, sb__chunk_t* join) {
  sb__chunk_t* exact = sb__chunk_new(join->data, join->len);
  exact->off = join->off;
  exact->mark = join->mark;
  free(join);
  spill_one(up, exact);
}

/*
 * Writes the memory window, and what is in flight, to the spool, joining small chunks
 * (a join starts a new resend point only where its first chunk had one). With route,
 * the stream then turns to the spool: every later chunk is appended.
 */
static void up_spill(sb__upstream_t* up, int route) {
  sb__chunk_t* join = NULL;
  if (up->spooling || up->closing)
    return;
  up_open_row(up);
  /* The cursor first, so that a resume after a restart starts at the window; and what
   * an earlier spill left of the stream behind the window goes. */
  up_cursor(up,
            up->acked > up->b->cfg.replay_window ? up->acked - up->b->cfg.replay_window
                                                 : 0,
            0);
  while (up->mem_head) {
    sb__chunk_t* c = mem_pop(up);
    if (join && join->len + c->len <= SB__SPILL_JOIN &&
        join->off + join->len == c->off) {
      memcpy(join->data + join->len, c->data, c->len);
      join->len += c->len;
      sb__chunk_free(c);
      continue;
    }
    if (join)
      spill_join(up, join);
    join = NULL;
    if (c->len >= SB__SPILL_JOIN / 2) {
      spill_one(up, c);
      continue;
    }
    join = sb__xmalloc(sizeof(*join) + SB__SPILL_JOIN);
    memset(join, 0, sizeof(*join));
    join->refs = 1;
    join->off = c->off;
    join->mark = c->mark;
    join->len = c->len;
    memcpy(join->data, c->data, c->len);
    sb__chunk_free(c);
  }
  if (join)
    spill_join(up, join);
  up->spool_part = up->next_off;
  if (route) {
    /* What was in flight stays queued (its client paused) until the spill commits: a
     * service killed meanwhile loses no more than one watermark of a stream. */
    up->spooling = 1;
    up->spill_q += up->live_q;
    up->live_q = 0;
    up->live_epoch++;
    uv_timer_stop(&up->stall_timer);
    spill_committed(up); /* nothing left to write: an earlier spill had it all */
  }
}

/* ---- the budget's callbacks (budget.c decides, the sinks act) ---- */

/* Past the budget: the oldest window is written to the spool (its stream stays live).
 */
static void budget_spill(sb__budget_t* bud, sb__budget_window_t* w) {
  sb__broker_t* b = bud->data;
  sb__upstream_t* up = SB_CONTAINER_OF(w, sb__upstream_t, win);
  b->counters.windows_spilled++;
  b->counters.window_bytes_spilled += up->mem_bytes;
  up_spill(up, 0);
}

/* Holds every client (on), lets them go (!on), or holds the one pushing. */
static void budget_hold(sb__budget_t* bud, void* pusher, int on) {
  sb__broker_t* b = bud->data;
  sb__stream_t* s;
  if (pusher != NULL) {
    sb__upstream_t* up = pusher;
    if (!up_stream(up)->client_eof)
      sb__stream_sink_hold(up_stream(up), 1);
    return;
  }
  if (on) {
    b->counters.window_holds++;
    for (s = b->streams; s; s = s->next)
      if (s->sink && !s->client_eof)
        sb__stream_sink_hold(s, 1);
    return;
  }
  for (s = b->streams; s; s = s->next)
    if (s->sink && s->sink->hold)
      sb__stream_sink_hold(s, 0);
}

/* A stream waiting for room to read the spool (1) or to dial (2: a reopen reads its
 * window first) goes on. */
static void budget_wake(sb__budget_t* bud, sb__budget_waiter_t* w) {
  sb__upstream_t* up = SB_CONTAINER_OF(w, sb__upstream_t, waiter);
  int dial = up->drain_wait == 2;
  (void)bud;
  up->drain_wait = 0;
  if (dial)
    up_dial(up);
  else
    up_pump(up);
}

static const sb__budget_ops_t budget_ops = {budget_spill, budget_hold, budget_wake};

/* A chunk sent live joins the memory window (the reference passes to it). */
static void mem_push(sb__upstream_t* up, sb__chunk_t* c) {
  sb__broker_t* b = up->b;
  uint64_t m = chunk_mem(c);
  c->next = NULL;
  if (up->mem_tail)
    up->mem_tail->next = c;
  else
    up->mem_head = c;
  up->mem_tail = c;
  up->mem_bytes += m;
  sb__budget_window_add(&b->budget, &up->win, m);
  sb__budget_check(&b->budget, up);
}

static void mem_clear(sb__upstream_t* up) {
  while (up->mem_head)
    sb__chunk_free(mem_pop(up));
}

static void on_stall(uv_timer_t* t) {
  sb__upstream_t* up = t->data;
  if (up->spooling || up->closing ||
      up->live_q <= up->b->cfg.upstream_high_watermark / 2)
    return;
  SB_LOG_I("upstream",
           "stream %llu \"%s\": the upstream has not taken %llu bytes for %d ms; "
           "spooling until it catches up",
           up_id(up), up_name(up), (unsigned long long)up->live_q, SB__LIVE_STALL_MS);
  up_spill(up, 1); /* its client goes on once the spill is committed */
}

/* A spooling stream goes live again once the spool gave back everything it read and
 * the connection keeps up. */
static void up_maybe_live(sb__upstream_t* up) {
  if (!up->spooling || up->b->cfg.durability != SB__DURABILITY_BACKLOG ||
      up->b->stopping || up->closing || !up->connected || up->hs_pending ||
      up->conn_ending || up->gap || up->hole || up->reading_spool ||
      up->trunc_off != UINT64_MAX || up->given_up || up->sink.queued > 0 ||
      up->send_off != up->next_off || up->committed < up->next_off ||
      up->inflight > up->b->cfg.upstream_high_watermark / 2)
    return;
  up->spooling = 0;
  up->spool_part = up->next_off;
}

/* The name for the next connection (names.c). */
static void up_pick_name(sb__upstream_t* up) {
  char* name = sb__names_pick(up->b, up_name(up), up->up_name != NULL, &up->name_n);
  free(up->up_name);
  up->up_name = name;
}

void sb__upstream_names_free(struct sb__broker_s* b) {
  sb__names_free(b);
}

/* The backoff delay after `step` failures: doubling from backoff_initial_ms, capped
 * at backoff_max_ms, drawn from the upper half (jitter). */
static uint64_t up_backoff(sb__upstream_t* up, unsigned step) {
  return sb__backoff_ms(&up->b->cfg, step);
}

/* ---- the final close ---- */

static void on_final_closed(uv_handle_t* h) {
  sb__upstream_t* up = h->data;
  if (--up->pending_closes == 0)
    sb__stream_sink_done(up_stream(up), 0);
}

static void up_close_all(sb__upstream_t* up) {
  if (up->closing)
    return;
  up->closing = 1;
  up_stream(up)->kept = !up->conn_done;
  /* A connection still closing (a Windows pipe waits for its cancelled writes) is
   * counted too: the sink, and the handle in it, must outlive its close. */
  up->pending_closes = 3 + up->pipe_open + up->pipe_closing;
  if (up->drain_wait) {
    up->drain_wait = 0;
    sb__budget_unwait(&up->b->budget, &up->waiter);
  }
  mem_clear(up);
  sb__budget_window_remove(&up->b->budget, &up->win);
  uv_close((uv_handle_t*)&up->timer, on_final_closed);
  uv_close((uv_handle_t*)&up->read_timer, on_final_closed);
  uv_close((uv_handle_t*)&up->stall_timer, on_final_closed);
  if (up->pipe_open) {
    up->pipe_open = 0;
    up->connected = 0;
    uv_close((uv_handle_t*)&up->pipe, on_final_closed);
  }
}

static void on_forgotten(sb__spool_job_t* j) {
  sb__upstream_t* up = j->data;
  up->jobs_out--;
  if (j->status != 0)
    SB_LOG_E("spool", "stream %llu \"%s\": delivered, but its spool rows stay: %s",
             up_id(up), up_name(up), sb_strerror(j->status));
  free(j);
  up_maybe_done(up);
}

/*
 * The sink is done when its stream was delivered (the connection ended after the
 * last byte: the spool forgets the stream), or, while the service stops, as soon as
 * every byte is in the spool and no job is out: the next start resumes it.
 */
static void up_maybe_done(sb__upstream_t* up) {
  if (up->closing || !up->finishing)
    return;
  if (!up->durable_told && up->spooling && up->spill_out == 0 &&
      up->committed >= up_end(up) && up->sink.queued == 0) {
    /* Every byte read is in the spool (a live stream's is once the upstream confirmed
     * its end, at done): the client's connection may close now. */
    up->durable_told = 1;
    sb__stream_sink_durable(up_stream(up));
  }
  if (up->conn_done) {
    if (!up->forget_sent && up->opened) {
      up->forget_sent = 1;
      sb__spool_submit(up->b->spool, job_new(up, SB__SPOOL_FORGET, on_forgotten));
      return;
    }
    if (up->jobs_out == 0)
      up_close_all(up);
    return;
  }
  if (up->b->stopping && up->jobs_out == 0 && (!up->pipe_open || up->grace == 2))
    up_close_all(up);
}

/* ---- the connection ---- */

static void on_conn_closed(uv_handle_t* h) {
  sb__upstream_t* up = h->data;
  uint64_t delay;
  up->pipe_closing = 0;
  if (up->closing) {
    on_final_closed(h);
    return;
  }
  if (up->finishing && up->b->stopping) {
    up_maybe_done(up);
    return;
  }
  if (up->conn_done) {
    up_maybe_done(up);
    return;
  }
  if (up->lingering) {
    uv_timer_start(&up->timer, on_linger, up->b->cfg.upstream_end_linger_ms, 0);
    return;
  }
  if (up->given_up) {
    uv_timer_start(&up->timer, on_given_up_timer, up_given_up_delay(up), 0);
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
  uv_timer_start(&up->timer, on_retry, delay, 0);
}

/* Tries a given-up stream again now, with upstream_max_refusals refusals to go. */
static void up_retry_given_up(sb__upstream_t* up, const char* why) {
  if (!up->given_up || up->closing)
    return;
  SB_LOG_I("upstream", "stream %llu \"%s\": given up before; trying it again (%s)",
           up_id(up), up_name(up), why);
  uv_timer_stop(&up->timer);
  up->given_up = 0;
  up->given_up_rounds++;
  up->refusals = 0;
  up->attempt = 0;
  up_dial(up);
}

static void on_given_up_timer(uv_timer_t* t) {
  up_retry_given_up(t->data, "its retry timer");
}

static void up_retry_all_given_up(sb__broker_t* b) {
  sb__stream_t* s;
  for (s = b->streams; s; s = s->next)
    if (s->sink != NULL && up_of(s->sink)->given_up)
      up_retry_given_up(up_of(s->sink), "the upstream is back");
}

int sb__upstream_retry(sb__sink_t* sink) {
  sb__upstream_t* up = up_of(sink);
  if (!up->given_up || up->closing)
    return 0;
  up_retry_given_up(up, "sbctl retry");
  return 1;
}

/* Ends the current connection (its pending writes are cancelled). */
static void up_conn_close(sb__upstream_t* up) {
  if (!up->pipe_open)
    return;
  up->pipe_open = 0;
  up->connected = 0;
  up->hs_pending = 0;
  up->conn_ending = 0;
  up->gen++;
  up->pipe_closing = 1;
  uv_timer_stop(&up->timer);
  uv_close((uv_handle_t*)&up->pipe, on_conn_closed);
}

/* The connection broke: what it may not have delivered is resent on a new one. */
static void up_broken(sb__upstream_t* up, int err) {
  sb__stream_t* s = up_stream(up);
  sb__broker_t* b = up->b;
  if (!up->pipe_open)
    return;
  /* A live stream's window and what was in flight go to the spool, to be resent. */
  up_spill(up, 1);
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
      up->given_up = 1;
      b->counters.streams_given_up++;
      SB_LOG_E("upstream",
               "stream %llu \"%s\": the upstream refused it %u times in a row (last "
               "as \"%s\": %s); given up: its client is closed and it keeps %llu "
               "bytes in the spool (bytes %llu to %llu, resent from there), tried "
               "again in %llu s, when the upstream appears again, or at sbctl retry",
               up_id(up), up_name(up), up->refusals, up->up_name, sb_strerror(err),
               (unsigned long long)(end - from), (unsigned long long)from,
               (unsigned long long)end,
               (unsigned long long)(up_given_up_delay(up) / 1000));
      up_conn_close(up);
      if (!s->client_eof)
        sb__stream_stop(s);
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
  up_conn_close(up);
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
    up_broken(up, sb__uv_err(status));
    return;
  }
  if (!up->spooling)
    mem_trim(up);
  if (drained)
    sb__stream_sink_drained(up_stream(up));
  up_pump(up);
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
    up_broken(up, sb__uv_err(r));
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
static void up_send(sb__upstream_t* up, sb__chunk_t* c, int drain) {
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
static void up_send_live(sb__upstream_t* up, sb__chunk_t* c) {
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
  mem_push(up, keep);
  if (up->live_q > hw && !uv_is_active((uv_handle_t*)&up->stall_timer))
    uv_timer_start(&up->stall_timer, on_stall, SB__LIVE_STALL_MS, 0);
  up_write_buf(up, w);
}

/* Whether a chunk that starts at off may go live: the connection takes data and
 * nothing older waits. */
static int up_can_go_live(sb__upstream_t* up, uint64_t off) {
  return !up->spooling && up->connected && !up->hs_pending && !up->conn_ending &&
         !up->gap && !up->hole && up->send_off == off && off < up->trunc_off;
}

/* Whether a chunk that starts at off may go upstream now. */
static int up_can_send(sb__upstream_t* up, uint64_t off) {
  return up->connected && !up->hs_pending && !up->conn_ending && !up->gap &&
         !up->hole && up->send_off == off && off < up->trunc_off &&
         up->inflight < up->b->cfg.upstream_high_watermark;
}

/* Writes the handshake; tagged with the offset mark when this is a reopen. */
static void up_handshake(sb__upstream_t* up, int tag, int64_t mark) {
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

/* A gap in the spool (dropped data): the stream goes on from c on a new connection,
 * tagged with where it starts and how much was lost. */
static void up_count_lost(sb__upstream_t* up, uint64_t lost) {
  sb__broker_t* b = up->b;
  uint64_t corrupt = lost < up->corrupt ? lost : up->corrupt;
  up->corrupt -= corrupt;
  up->dropped += lost;
  b->counters.bytes_dropped_corrupt += corrupt;
  b->counters.bytes_dropped_full += lost - corrupt;
  up_stream(up)->bytes_dropped += lost;
}

static void up_gap(sb__upstream_t* up, sb__chunk_t* c) {
  uint64_t lost = c->off - up->send_off;
  up_count_lost(up, lost);
  up->hole = 0;
  SB_LOG_W("upstream",
           "stream %llu \"%s\": bytes %llu to %llu were dropped from the spool; "
           "the stream is reopened at byte %llu",
           up_id(up), up_name(up), (unsigned long long)up->send_off,
           (unsigned long long)c->off, (unsigned long long)c->off);
  up->gap = 1;
  up->gap_off = c->off;
  up->gap_mark = c->mark;
  up->send_off = c->off;
}

/* Chunks from the spool, in order: those at send_off go upstream. */
static void up_take_chunks(sb__upstream_t* up, sb__chunk_t* c) {
  sb__chunk_t* next;
  for (; c; c = next) {
    next = c->next;
    c->next = NULL;
    /* Past a refusal (trunc_off) nothing goes upstream: the stream ends there. */
    if (!up->gap && up->connected && !up->hs_pending &&
        c->off + c->len > up->send_off && c->off < up->trunc_off) {
      if (c->off > up->send_off || (up->hole && c->off == up->send_off)) {
        if (c->mark >= 0) {
          up_gap(up, c);
        } else {
          /* Inside a datagram whose start was dropped: skipped too. */
          up_count_lost(up, c->off + c->len - up->send_off);
          up->send_off = c->off + c->len;
          up->hole = 1;
        }
      } else if (c->off == up->send_off) {
        up->b->counters.bytes_spooled += c->len;
        up_send(up, c, 1);
      }
    }
    sb__chunk_free(c);
  }
}

static void on_read_retry(uv_timer_t* t) {
  up_pump(t->data);
}

/*
 * What a read of the spool found. Checksum failures were deleted by the spool and are
 * counted here; a read that found nothing where the stream's spooled bytes should be
 * (dropped, damaged) moves past them and makes the next chunk reopen the stream
 * (tagged dropped); a read that failed for now is tried again a second later.
 */
static void on_read_spool(sb__spool_job_t* j) {
  sb__upstream_t* up = j->data;
  sb__chunk_t* c = j->chunk;
  up->jobs_out--;
  up->reading_spool = 0;
  sb__budget_credit(&up->b->budget, SB__BUDGET_DRAIN, SB__SPOOL_READ_LIMIT);
  sb__budget_wake(&up->b->budget);
  up->corrupt += j->corrupt;
  if (j->status == SB_EBUSY && c == NULL) {
    free(j);
    if (!up->closing)
      uv_timer_start(&up->read_timer, on_read_retry, SB__READ_RETRY_MS, 0);
    return;
  }
  if (!j->window && c == NULL && up->connected && !up->hs_pending &&
      up->send_off < up->committed) {
    uint64_t lost = up->committed - up->send_off;
    SB_LOG_E("upstream",
             "stream %llu \"%s\": bytes %llu to %llu are no longer in the spool (%s); "
             "the stream goes on after them, tagged " SB__TAG_DROPPED,
             up_id(up), up_name(up), (unsigned long long)up->send_off,
             (unsigned long long)up->committed,
             j->status == SB_EIO ? "the spool is damaged there" : "dropped");
    up_count_lost(up, lost);
    up->send_off = up->committed;
    up->hole = 1;
  }
  if (up->hs_pending && j->window && up->connected) {
    /* The reopen's start: the oldest resend point in the spool (or, when the spool
     * holds nothing of the stream, where its data ends now). */
    uint64_t start = c ? c->off : up->committed;
    int64_t mark = c ? c->mark : (int64_t)start;
    if (c == NULL && up_stream(up)->props.type == SB_DATAGRAM && start > 0)
      mark = -1; /* a datagram index is not known here: the tag is left out */
    up->hs_pending = 0;
    if (start > up->acked) {
      /* The window lost its start (dropped at the cap, or a checksum failed): what
       * the broken connection may not have delivered cannot all be resent. */
      SB_LOG_E("upstream",
               "stream %llu \"%s\": the replay window starts at byte %llu, after "
               "byte %llu the upstream may have lost; bytes between are counted as "
               "dropped",
               up_id(up), up_name(up), (unsigned long long)start,
               (unsigned long long)up->acked);
      up_count_lost(up, start - up->acked);
      up->acked = start;
    }
    up->hole = 0;
    up->send_off = start;
    /* Where the reopen starts is all this side can say of what the upstream lost: a
     * receiver holding less than that records the gap (an archive does). */
    char at[32] = "an unknown index";
    if (mark >= 0)
      snprintf(at, sizeof(at), "%lld", (long long)mark);
    sb__log(up->end_resend ? SB_LOG_WARN : SB_LOG_INFO, "upstream",
            "stream %llu \"%s\": reopened upstream at %s %s (byte %llu); %llu bytes "
            "it was sent before go again%s",
            up_id(up), up_name(up),
            up_stream(up)->props.type == SB_DATAGRAM ? "datagram" : "byte", at,
            (unsigned long long)start,
            (unsigned long long)(up->sent_max > start ? up->sent_max - start : 0),
            up->end_resend ? ", after an end the upstream did not store" : "");
    up->end_resend = 0;
    up_handshake(up, 1, mark);
    up_take_chunks(up, c);
  } else {
    up_take_chunks(up, c);
  }
  free(j);
  up_pump(up);
  up_maybe_done(up);
}

static void up_read_spool(sb__upstream_t* up, int window) {
  sb__spool_job_t* j = job_new(up, SB__SPOOL_READ, on_read_spool);
  j->off = up->send_off;
  j->window = window;
  j->limit = SB__SPOOL_READ_LIMIT;
  up->reading_spool = 1;
  /* Counted until its chunks are sent. */
  sb__budget_charge(&up->b->budget, SB__BUDGET_DRAIN, SB__SPOOL_READ_LIMIT);
  sb__spool_submit(up->b->spool, j);
}

static void on_acked(sb__spool_job_t* j);

static void up_schedule_ack(sb__upstream_t* up) {
  sb__spool_job_t* j;
  uint64_t window = up->b->cfg.replay_window;
  if (up->ack_out || up->acked <= up->db_acked || up->closing || !up->spooling)
    return;
  j = job_new(up, SB__SPOOL_ACK, on_acked);
  j->off = up->acked;
  j->trim = up->acked > window ? up->acked - window : 0;
  up->db_acked = up->acked;
  up->ack_out = 1;
  sb__spool_submit(up->b->spool, j);
}

static void on_acked(sb__spool_job_t* j) {
  sb__upstream_t* up = j->data;
  up->jobs_out--;
  up->ack_out = 0;
  free(j);
  up_schedule_ack(up);
  up_maybe_done(up);
}

/*
 * The upstream did not confirm a stream's end within upstream_end_timeout_ms (it reads
 * slowly, or not at all): the stream is not counted delivered. Its connection closes
 * and it is resent later from its window, unless the platform can tell that the
 * upstream did read every byte (POSIX: the socket's unread bytes), which is enough.
 */
static void up_end_unconfirmed(sb__upstream_t* up) {
  int64_t unread = sb__pipe_unread(&up->pipe);
  if (unread == 0) {
    SB_LOG_I("upstream",
             "stream %llu \"%s\": the upstream read every byte but did not close its "
             "end within %llu ms",
             up_id(up), up_name(up),
             (unsigned long long)up->b->cfg.upstream_end_timeout_ms);
    up_end_read(up);
    return;
  }
  SB_LOG_W("upstream",
           "stream %llu \"%s\": the upstream did not confirm the stream's end within "
           "%llu ms (%lld bytes unread); not counted delivered: resent later",
           up_id(up), up_name(up),
           (unsigned long long)up->b->cfg.upstream_end_timeout_ms, (long long)unread);
  up_broken(up, SB_ETIMEDOUT);
}

#ifndef _WIN32
static void on_end_timeout(uv_timer_t* t) {
  sb__upstream_t* up = t->data;
  if (up->conn_ending && !up->closing)
    up_end_unconfirmed(up);
}

static void on_shutdown(uv_shutdown_t* req, int status) {
  sb__upstream_t* up = req->data;
  if (status < 0 && status != UV_ECANCELED && up->conn_ending)
    up_broken(up, sb__uv_err(status));
}

#endif

/* Every byte is written: end the connection. POSIX: shutdown, then the upstream's EOF
 * says it read everything. */
#ifdef _WIN32
/* Windows: FlushFileBuffers on a pipe returns once the server has read everything, so
 * it confirms a stream's end as the upstream's EOF does on POSIX. It blocks, so it runs
 * on the threadpool, counted as a job so that the sink outlives it; at the deadline the
 * loop cancels it (CancelSynchronousIo), so an upstream that never reads does not hold
 * a threadpool thread. state (under lock): 0 queued, 1 flushing (thread valid), 2
 * finished, 3 cancelled before it began.
 *
 * The job flushes its own duplicate of the pipe handle, closed by the worker when it is
 * done: the connection's handle may close at the deadline while the worker still runs,
 * and a redial may then get the same handle value, which the worker must never flush.
 * State 1 is published just before the worker enters FlushFileBuffers: a cancel in that
 * gap finds no I/O to cancel, so the loop cancels again every SB__FLUSH_RECANCEL_MS
 * until the worker is out. */
#define SB__FLUSH_RECANCEL_MS 20
typedef struct {
  uv_work_t work;
  sb__upstream_t* up;
  HANDLE pipe; /* the job's own duplicate: the worker closes it */
  HANDLE thread;
  SRWLOCK lock;
  int state;
  uint64_t gen;
  BOOL ok;
  int recancel;       /* the timer below was started: freed in its close callback */
  unsigned cancels;   /* cancels tried that found nothing */
  uv_timer_t retimer; /* cancels again while the worker has not entered the flush */
} sb__flush_t;

/* Test-only: SB_TEST_FLUSH_DELAY_MS holds the worker between publishing state 1 and
 * entering FlushFileBuffers, the gap a real Windows threadpool may leave; for the
 * first SB_TEST_FLUSH_DELAYS flushes of the process (default 1). */
static DWORD flush_test_delay(void) {
  static volatile LONG delay = -1, left;
  if (delay < 0) {
    const char* v = getenv("SB_TEST_FLUSH_DELAY_MS");
    const char* n = getenv("SB_TEST_FLUSH_DELAYS");
    InterlockedExchange(&left, n != NULL ? atol(n) : 1);
    InterlockedExchange(&delay, v != NULL ? atol(v) : 0);
  }
  return delay > 0 && InterlockedDecrement(&left) >= 0 ? (DWORD)delay : 0;
}

/*
 * After the flush, a zero-byte write asks whether the server still holds its end: a
 * stream server keeps it until our end closes (that is the stream's end), so a closed
 * one means it went away, or refused the stream, without reading everything (Wine's
 * FlushFileBuffers returns TRUE then). The event's low bit keeps the completion off
 * libuv's port.
 */
static void flush_work(uv_work_t* w) {
  sb__flush_t* f = SB_CONTAINER_OF(w, sb__flush_t, work);
  OVERLAPPED ov;
  DWORD n = 0, delay = flush_test_delay();
  HANDLE ev;
  int cancelled;
  AcquireSRWLockExclusive(&f->lock);
  cancelled = f->state == 3;
  if (!cancelled &&
      DuplicateHandle(GetCurrentProcess(), GetCurrentThread(), GetCurrentProcess(),
                      &f->thread, 0, FALSE, DUPLICATE_SAME_ACCESS))
    f->state = 1;
  ReleaseSRWLockExclusive(&f->lock);
  if (delay > 0)
    Sleep(delay);
  f->ok = !cancelled && FlushFileBuffers(f->pipe);
  AcquireSRWLockExclusive(&f->lock);
  if (f->state == 1)
    CloseHandle(f->thread);
  f->state = 2;
  ReleaseSRWLockExclusive(&f->lock);
  if (f->ok && (ev = CreateEventW(NULL, TRUE, FALSE, NULL)) != NULL) {
    memset(&ov, 0, sizeof(ov));
    ov.hEvent = (HANDLE)((uintptr_t)ev | 1);
    if (!WriteFile(f->pipe, "", 0, &n, &ov) &&
        (GetLastError() != ERROR_IO_PENDING ||
         !GetOverlappedResult(f->pipe, &ov, &n, TRUE)))
      f->ok = FALSE;
    CloseHandle(ev);
  } else if (f->ok) {
    f->ok = FALSE;
  }
  CloseHandle(f->pipe);
}

static void on_flush_freed(uv_handle_t* h) {
  free(h->data);
}

/* Cancels the worker's flush if it is in it; 1 when it must be tried again (state 1,
 * and nothing was there to cancel yet). Loop thread. */
static int flush_cancel(sb__flush_t* f) {
  int again = 0;
  AcquireSRWLockExclusive(&f->lock);
  if (f->state == 1) {
    if (!CancelSynchronousIo(f->thread)) {
      f->cancels++;
      again = 1;
    }
  } else if (f->state == 0) {
    f->state = 3;
  }
  ReleaseSRWLockExclusive(&f->lock);
  return again;
}

static void on_flush_recancel(uv_timer_t* t) {
  sb__flush_t* f = t->data;
  if (!flush_cancel(f))
    uv_timer_stop(t);
}

static void flush_done(uv_work_t* w, int status) {
  sb__flush_t* f = SB_CONTAINER_OF(w, sb__flush_t, work);
  sb__upstream_t* up = f->up;
  up->jobs_out--;
  if (up->flush == f)
    up->flush = NULL;
  if (f->cancels > 0)
    SB_LOG_D("upstream",
             "stream %llu: the end's flush was cancelled after %u tries that found it "
             "not begun",
             up_id(up), f->cancels + 1);
  if (f->gen == up->gen && !up->closing && up->conn_ending) {
    uv_timer_stop(&up->timer);
    if (status == 0 && f->ok) {
      up_end_read(up);
    } else {
      up_broken(up, SB_EPIPE);
    }
  } else if (f->gen != up->gen) {
    /* A flush of an earlier connection, cancelled at its deadline, held the stream's
     * end on the current one (up_pump waits for every job): it may end now. */
    up_pump(up);
  }
  if (f->recancel) {
    f->retimer.data = f;
    uv_close((uv_handle_t*)&f->retimer, on_flush_freed);
  } else {
    free(f);
  }
  up_maybe_done(up);
}

static void on_end_timeout(uv_timer_t* t) {
  sb__upstream_t* up = t->data;
  sb__flush_t* f = up->flush;
  if (f == NULL || !up->conn_ending || up->closing)
    return;
  if (flush_cancel(f)) {
    /* The worker published its thread but has not entered the flush: try again until
     * it is out (flush_done closes the timer). */
    f->recancel = 1;
    uv_timer_init(up->b->loop, &f->retimer);
    f->retimer.data = f;
    uv_timer_start(&f->retimer, on_flush_recancel, SB__FLUSH_RECANCEL_MS,
                   SB__FLUSH_RECANCEL_MS);
  }
  up->flush = NULL;
  up_end_unconfirmed(up);
}
#endif

static void up_conn_end(sb__upstream_t* up) {
#ifdef _WIN32
  sb__flush_t* f = sb__xcalloc(1, sizeof(*f));
  uv_os_fd_t h;
  if (uv_fileno((uv_handle_t*)&up->pipe, &h) != 0) {
    free(f);
    up->conn_done = 1;
    up_conn_close(up);
    return;
  }
  /* The job's own handle: the connection's may close (and its value be reused by a
   * redial) before the worker is done with it. */
  if (!DuplicateHandle(GetCurrentProcess(), h, GetCurrentProcess(), &f->pipe, 0, FALSE,
                       DUPLICATE_SAME_ACCESS)) {
    DWORD e = GetLastError();
    free(f);
    SB_LOG_E("upstream", "stream %llu \"%s\": DuplicateHandle: error %lu", up_id(up),
             up_name(up), e);
    up_broken(up, SB_EIO);
    return;
  }
  f->up = up;
  f->gen = up->gen;
  InitializeSRWLock(&f->lock);
  up->flush = f;
  up->conn_ending = 1;
  up->jobs_out++;
  uv_queue_work(up->b->loop, &f->work, flush_work, flush_done);
#else
  int r;
  up->conn_ending = 1;
  up->shutdown.data = up;
  if ((r = uv_shutdown(&up->shutdown, (uv_stream_t*)&up->pipe, on_shutdown)) != 0) {
    up_broken(up, sb__uv_err(r));
    return;
  }
#endif
  uv_timer_start(&up->timer, on_end_timeout, up->b->cfg.upstream_end_timeout_ms, 0);
}

/*
 * The upstream exited before confirming it stored the stream's end: what it held
 * read, and not stored, is gone with it. The end is a break: the window (spilled to
 * the spool first) is resent on a new connection, tagged with its offset, after the
 * first backoff step.
 */
static void up_end_lost(sb__upstream_t* up) {
  sb__broker_t* b = up->b;
  b->counters.upstream_end_resends++;
  b->counters.upstream_reopens++;
  b->upstream_epoch++; /* gone: connections that end at once now are not refusals */
  SB_LOG_W("upstream",
           "stream %llu \"%s\": the upstream (pid %lld) exited before confirming it "
           "stored the stream's end (byte %llu); resending from its replay window",
           up_id(up), up_name(up), (long long)up->proc.pid,
           (unsigned long long)up->sent_max);
  up->lingering = 0;
  up->end_resend = 1;
  up_spill(up, 1);
  up->reopen = 1;
  up->refusals = 0;
  up->attempt = 0;
  if (up->pipe_open) {
    up_conn_close(up); /* on_conn_closed dials */
  } else {
    uv_timer_stop(&up->timer);
    uv_timer_start(&up->timer, on_retry, b->cfg.backoff_initial_ms, 0);
  }
}

/* Whether the upstream's process lives (1), exited or is exiting (0), or cannot be
 * known (< 0: said once). */
static int up_proc_alive(sb__upstream_t* up) {
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
static void up_end_read(sb__upstream_t* up) {
  int alive = up_proc_alive(up);
  if (alive == 0) {
    up_end_lost(up);
    return;
  }
  if (up->b->cfg.upstream_end_linger_ms == 0 || alive < 0) {
    up->conn_done = 1;
    up_conn_close(up);
    return;
  }
  up->lingering = 1;
  up_conn_close(up); /* on_conn_closed starts the linger */
}

static void on_linger(uv_timer_t* t) {
  sb__upstream_t* up = t->data;
  if (!up->lingering || up->closing)
    return;
  up->lingering = 0;
  if (up_proc_alive(up) == 0) {
    up_end_lost(up);
    return;
  }
  up->conn_done = 1;
  up_maybe_done(up);
}

/* What to do next on the connection. */
static void up_pump(sb__upstream_t* up) {
  uint64_t hw = up->b->cfg.upstream_high_watermark;
  if (up->closing || !up->connected || up->hs_pending || up->conn_ending)
    return;
  up_schedule_ack(up);
  if (up->gap) {
    /* Finish the current connection's writes, then reopen at the gap. */
    if (up->inflight == 0) {
      up->reopen = 0;
      up_conn_close(up);
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
      if (!up->drain_wait) {
        up->drain_wait = 1;
        sb__budget_wait(&up->b->budget, &up->waiter);
      }
    } else {
      up_read_spool(up, 0);
    }
  }
  up_maybe_live(up);
}

#ifndef _WIN32
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
  if (up_proc_alive(up) == 0) {
    up_end_lost(up);
    return;
  }
  up->conn_done = 1;
  up_conn_close(up);
}

static void on_up_read(uv_stream_t* h, ssize_t n, const uv_buf_t* buf) {
  sb__upstream_t* up = h->data;
  (void)buf;
  if (n >= 0)
    return; /* a stream server sends nothing; ignore it if it does */
  if (n == UV_EOF && up->conn_ending) {
    up_end_closed(up);
    return;
  }
  up_broken(up, n == UV_EOF ? SB_EPIPE : sb__uv_err((int)n));
}
#endif

static void on_retry(uv_timer_t* t) {
  up_dial(t->data);
}

/*
 * One dial attempt. The platform dialer never blocks: busy and absent are answers, and
 * the next attempt is a timer away, doubling up to backoff_max_ms, with jitter (each
 * delay is drawn from its upper half) so that many streams do not retry in step.
 */
static void up_dial(sb__upstream_t* up) {
  sb__broker_t* b = up->b;
  uv_os_fd_t fd;
  uint64_t delay;
  int r, ur;
  /* The handle is reused only once its last close is done (on_conn_closed dials). */
  if (up->closing || up->pipe_open || up->pipe_closing || up->given_up || up->lingering)
    return;
  if (b->stopping) {
    up_maybe_done(up);
    return;
  }
  if (up->drain_wait == 2)
    return; /* the budget's wake dials */
  if (up->drain_wait == 1) {
    /* Waiting to read the spool means nothing without a connection. */
    up->drain_wait = 0;
    sb__budget_unwait(&b->budget, &up->waiter);
  }
  if (up->reopen && sb__budget_drain_full(&b->budget)) {
    /* A reopen reads its window back at once: it waits for room in the budget. */
    up->drain_wait = 2;
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
      up_broken(up, sb__uv_err(ur));
      return;
    }
    if (up->attempt > 0)
      sb__log(up->dial_warned ? SB_LOG_INFO : SB_LOG_DEBUG, "upstream",
              "stream %llu \"%s\": connected to %s after %u retries", up_id(up),
              up_name(up), b->cfg.upstream, up->attempt);
    up->attempt = 0;
    up->dial_warned = 0;
    up->connected = 1;
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
#ifndef _WIN32
    uv_read_start((uv_stream_t*)&up->pipe, on_up_alloc, on_up_read);
#endif
    if (up->gap) {
      up->gap = 0;
      up->hole = 0;
      up->send_off = up->gap_off;
      up_handshake(up, 1, up->gap_mark);
    } else if (up->reopen) {
      up->hs_pending = 1;
      up_read_spool(up, 1);
    } else {
      up_handshake(up, 0, 0);
    }
    up_pump(up);
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
  uv_timer_start(&up->timer, on_retry, delay, 0);
}

void sb__upstream_kick(sb__sink_t* sink) {
  sb__upstream_t* up = up_of(sink);
  if (up->given_up) {
    /* A new upstream has seen none of its names refused: worth a try at once. */
    up_retry_given_up(up, "the upstream appeared");
    return;
  }
  if (up->closing || up->pipe_open || up->given_up || up->refusals > 0 ||
      up->lingering || !uv_is_active((uv_handle_t*)&up->timer))
    return;
  uv_timer_stop(&up->timer);
  up_dial(up);
}

/* ---- the sink ---- */

static void on_appended(sb__spool_job_t* j) {
  sb__upstream_t* up = j->data;
  sb__stream_t* s = up_stream(up);
  sb__broker_t* b = up->b;
  sb__chunk_t* c = j->chunk;
  uint64_t hw = b->cfg.upstream_high_watermark;
  up->jobs_out--;
  up->sink.queued -= c->len;
  sb__budget_credit(&b->budget, SB__BUDGET_APPENDS, chunk_mem(c));
  sb__budget_release(&b->budget);
  if (j->status != 0) {
    /* Bytes of the chunk already sent live are not lost: only the rest is refused. */
    uint64_t end = c->off + c->len;
    uint64_t from = c->off > up->send_off ? c->off
                    : up->send_off < end  ? up->send_off
                                          : end;
    if (up->trunc_off == UINT64_MAX) {
      up->trunc_off = from;
      b->counters.streams_refused_full++;
      SB_LOG_E("spool",
               "stream %llu \"%s\": the spool refused its data at byte %llu: %s; "
               "the stream is closed (its data before that byte is kept)",
               up_id(up), up_name(up), (unsigned long long)from,
               sb_strerror(j->status));
    }
    b->counters.bytes_refused_full += end - from;
    up_stream(up)->bytes_refused += end - from;
    /* What went live is all the stream will have: nothing to wait for in the spool. */
    if (from > up->committed)
      up->committed = from;
    if (!s->client_eof)
      sb__stream_stop(s);
  } else {
    if (c->off + c->len > up->committed)
      up->committed = c->off + c->len;
    if (up_can_send(up, c->off))
      up_send(up, c, 0);
  }
  sb__chunk_free(c);
  free(j);
  if (up->sink.queued <= hw / 2)
    sb__stream_sink_drained(s);
  up_pump(up);
  up_maybe_done(up);
}

static void up_write(sb__sink_t* sink, sb__chunk_t* c) {
  sb__upstream_t* up = up_of(sink);
  sb__broker_t* b = up->b;
  sb__spool_job_t* j;
  c->off = up->next_off;
  up->next_off += c->len;
  if (up->trunc_off != UINT64_MAX || up->closing) {
    b->counters.bytes_refused_full += c->len;
    up_stream(up)->bytes_refused += c->len;
    sb__chunk_free(c);
    return;
  }
  if (!up->spooling) {
    if (up_can_go_live(up, c->off)) {
      up_send_live(up, c);
      return;
    }
    up_spill(up, 1);
  }
  up_open_row(up);
  j = job_new(up, SB__SPOOL_APPEND, on_appended);
  j->seq = up->next_seq++;
  j->chunk = c; /* the stream's reference passes to the job */
  sink->queued += c->len;
  sb__budget_charge(&b->budget, SB__BUDGET_APPENDS, chunk_mem(c));
  sb__spool_submit(b->spool, j);
  sb__budget_check(&b->budget, up);
  if (b->cfg.durability != SB__DURABILITY_ALWAYS && up_can_send(up, c->off))
    up_send(up, c, 0);
}

static void on_grace(uv_timer_t* t) {
  sb__upstream_t* up = t->data;
  SB_LOG_I("upstream",
           "stream %llu \"%s\": not fully written upstream at stop; bytes %llu "
           "to %llu stay in the spool",
           up_id(up), up_name(up), (unsigned long long)up->acked,
           (unsigned long long)up_end(up));
  up->grace = 2;
  up_conn_close(up);
}

static void up_finish(sb__sink_t* sink) {
  sb__upstream_t* up = up_of(sink);
  int cut = up->b->stopping && !up->finishing;
  up->finishing = 1;
  if (up->b->stopping) {
    /* A live stream's window, and what is in flight, are kept for the next start. */
    up_spill(up, 1);
    /* The spool has (or is about to have) every byte. A stream the stop cut short
     * (its client was still writing) is not ended upstream: it stays in the spool,
     * window included, and the next start resumes it. One whose client had finished
     * gets a short grace to finish upstream; an unconnected one stops at once. */
    if (cut && up->pipe_open) {
      up->grace = 2;
      up_conn_close(up);
    } else if (up->pipe_open && !up->grace) {
      up->grace = 1;
      uv_timer_start(&up->timer, on_grace, SB__STOP_GRACE_MS, 0);
    } else if (!up->pipe_open) {
      uv_timer_stop(&up->timer);
    }
  }
  up_pump(up);
  up_maybe_done(up);
}

static void up_destroy(sb__sink_t* sink) {
  sb__upstream_t* up = up_of(sink);
  sb__upstream_proc_close(&up->proc);
  free(up->props);
  free(up->up_name);
  free(up);
}

/* For sbctl streams: where the stream stands on its way upstream. */
static void up_describe(sb__sink_t* sink, void* object) {
  sb__upstream_t* up = up_of(sink);
  cJSON* o = object;
  const char* state = up->given_up      ? "given-up"
                      : up->closing     ? "closing"
                      : up->lingering   ? "confirming-end"
                      : up->conn_ending ? "ending"
                      : up->hs_pending  ? "reopening"
                      : up->connected   ? "connected"
                      : up->pipe_open   ? "disconnecting"
                                        : "waiting";
  cJSON_AddStringToObject(o, "upstream", state);
  cJSON_AddStringToObject(o, "route", up->spooling ? "spool" : "live");
  cJSON_AddNumberToObject(o, "window_bytes", (double)up->mem_bytes);
  if (up->drain_wait)
    cJSON_AddStringToObject(o, "waiting_for_memory",
                            up->drain_wait == 2 ? "dial" : "read");
  cJSON_AddNumberToObject(o, "bytes_spooled", (double)up->committed);
  cJSON_AddNumberToObject(o, "bytes_sent", (double)up->send_off);
  cJSON_AddNumberToObject(o, "bytes_acked", (double)up->acked);
  cJSON_AddNumberToObject(o, "bytes_in_flight", (double)up->inflight);
  cJSON_AddNumberToObject(o, "spool_jobs", up->jobs_out);
  cJSON_AddBoolToObject(o, "finishing", up->finishing);
  if (up->up_name)
    cJSON_AddStringToObject(o, "upstream_name", up->up_name);
  cJSON_AddNumberToObject(o, "refusals", up->refusals);
}

static sb__upstream_t* up_new(sb__stream_t* s) {
  sb__upstream_t* up = sb__xcalloc(1, sizeof(*up));
  up->sink.write = up_write;
  up->sink.finish = up_finish;
  up->sink.destroy = up_destroy;
  up->sink.stop = up_finish;
  up->sink.describe = up_describe;
  up->sink.stream = s;
  /* "always": nothing more is read from the client until what was read is committed,
   * so what a killed service had read is, but for one read, in the spool. */
  up->sink.one_at_a_time = s->broker->cfg.durability == SB__DURABILITY_ALWAYS;
  up->b = s->broker;
  sb__budget_setup(&s->broker->budget, &s->broker->cfg.replay_memory_max,
                   SB__SPOOL_READ_LIMIT, &budget_ops, s->broker);
  up->trunc_off = UINT64_MAX;
  up->proc.pid = -1;
  /* "backlog": live until a chunk cannot go live; the others spool every byte. */
  up->spooling = s->broker->cfg.durability != SB__DURABILITY_BACKLOG;
  uv_timer_init(s->broker->loop, &up->timer);
  up->timer.data = up;
  uv_timer_init(s->broker->loop, &up->read_timer);
  up->read_timer.data = up;
  uv_timer_init(s->broker->loop, &up->stall_timer);
  up->stall_timer.data = up;
  return up;
}

static void on_opened(sb__spool_job_t* j) {
  sb__upstream_t* up = j->data;
  up->jobs_out--;
  if (j->status != 0) {
    sb__stream_t* s = up_stream(up);
    SB_LOG_E("spool",
             "stream %llu \"%s\": cannot record it in the spool: %s; the stream is "
             "refused (its client is closed)",
             up_id(up), up_name(up), sb_strerror(j->status));
    /* Bytes sent live before the stream needed the spool are not refused. */
    if (up->trunc_off == UINT64_MAX) {
      up->trunc_off = up->open_off;
      up->b->counters.streams_refused_full++;
    }
    if (up->next_off > up->open_off) {
      up->b->counters.bytes_refused_full += up->next_off - up->open_off;
      s->bytes_refused += up->next_off - up->open_off;
    }
    if (!s->client_eof)
      sb__stream_stop(s);
  }
  free(j->props);
  free(j);
  up_pump(up);
  up_maybe_done(up);
}

sb__sink_t* sb__upstream_sink_create(sb__stream_t* s) {
  sb__upstream_t* up = up_new(s);
  sb__props_t props;
  sb__buf_t json = {0};
  if (sb__props_copy(&props, &s->props) != 0)
    abort();
  if (!props.has_timestamp) {
    props.has_timestamp = 1;
    props.timestamp = s->opened;
  }
  if (sb__props_encode_json(&props, &json) != 0 || json.err)
    abort(); /* properties that decoded always encode */
  sb__props_free(&props);
  sb__buf_putc(&json, '\0');
  up->props = sb__xstrdup(json.data);
  sb__buf_free(&json);
  up->sid = sb__spool_new_sid(s->broker->spool);
  /* A live stream gets its row only when it first needs the spool. */
  if (up->spooling)
    up_open_row(up);
  up_dial(up);
  return &up->sink;
}

sb__sink_t* sb__upstream_sink_resume(sb__stream_t* s, const sb__spool_resume_t* r) {
  sb__upstream_t* up = up_new(s);
  up->props = sb__xstrdup(r->props);
  up->sid = r->sid;
  up->next_off = up->committed = r->end;
  up->next_seq = r->next_seq;
  up->acked = up->db_acked = r->acked;
  up->send_off = r->acked;
  up->sent_max = r->acked; /* as far as this service knows, sent before */
  up->reopen = 1;
  up->finishing = 1;
  up->spooling = 1;
  up->opened = 1;
  if (r->chunks == 0) {
    /* Nothing of it is left to send (a live stream's row, its window trimmed): the
     * row goes. */
    up->conn_done = 1;
    up_maybe_done(up);
    return &up->sink;
  }
  up_dial(up);
  return &up->sink;
}
