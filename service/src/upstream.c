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
#include "link.h"
#include "names.h"
#include "readback.h"
#include "window.h"

#define SB__STOP_GRACE_MS 2000

static void on_opened(sb__spool_job_t* j);
static void up_open_row(sb__upstream_t* up);
static void up_maybe_live(sb__upstream_t* up);
static void up_maybe_done(sb__upstream_t* up);
static void on_final_closed(uv_handle_t* h);

/* The sink's functions the lower files call back (upstream_int.h). */
static const sb__upstream_ops_t up_ops = {
    .pump = sb__link_pump,
    .send = sb__link_send,
    .handshake = sb__link_handshake,
    .close = sb__link_close,
    .broken = sb__link_broken,
    .end_read = sb__link_end_read,
    .end_unconfirmed = sb__link_end_unconfirmed,
    .end_lost = sb__link_end_lost,
    .proc_alive = sb__link_proc_alive,
    .maybe_done = up_maybe_done,
    .maybe_live = up_maybe_live,
    .open_row = up_open_row,
    .final_closed = on_final_closed,
};

/* ---- the budget's callbacks (budget.c decides, the sinks act) ---- */

/* Past the budget: the oldest window goes to the spool (its stream stays live). */
static void budget_spill(sb__budget_t* bud, sb__budget_window_t* w) {
  sb__broker_t* b = bud->data;
  sb__upstream_t* up = SB_CONTAINER_OF(w, sb__upstream_t, win);
  b->counters.windows_spilled++;
  b->counters.window_bytes_spilled += up->mem_bytes;
  sb__window_spill(up, 0);
}

/* Holds every client (on), lets them go (!on), or holds the one pushing. */
static void budget_hold(sb__budget_t* bud, void* pusher, int on) {
  sb__broker_t* b = bud->data;
  sb__stream_t* s;
  if (pusher != NULL) {
    sb__upstream_t* up = pusher;
    if (!up_stream(up)->client_eof)
      sb__sink_hold(&up->sink, 1);
    return;
  }
  if (on) {
    b->counters.window_holds++;
    for (s = b->streams; s; s = s->next)
      if (s->sink && !s->client_eof)
        sb__sink_hold(s->sink, 1);
    return;
  }
  for (s = b->streams; s; s = s->next)
    if (s->sink && s->sink->hold)
      sb__sink_hold(s->sink, 0);
}

/* A stream waiting for room to read the spool (1) or to dial (2: a reopen reads its
 * window first) goes on. */
static void budget_wake(sb__budget_t* bud, sb__budget_waiter_t* w) {
  sb__upstream_t* up = SB_CONTAINER_OF(w, sb__upstream_t, waiter);
  (void)bud;
  if (up->state == SB__LINK_WAIT_MEMORY) {
    up->state = SB__LINK_IDLE;
    sb__link_dial(up);
  } else {
    up->read_wait = 0;
    sb__link_pump(up);
  }
}

static const sb__budget_ops_t budget_ops = {budget_spill, budget_hold, budget_wake};

/* ---- the route: live or through the spool ---- */

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

/* Whether the connection takes a chunk that starts at off now: it is open, no gap or
 * hole waits for a reopen, nothing older waits, and the spool did not refuse it. The
 * one test both routes build on. */
static int up_takes(sb__upstream_t* up, uint64_t off) {
  return up->state == SB__LINK_OPEN && !up->gap && !up->hole && up->send_off == off &&
         off < up->trunc_off;
}

/* Whether a spooled chunk that starts at off may also go upstream now, beside its
 * append: the connection takes it and holds less than the high watermark. */
static int up_can_send(sb__upstream_t* up, uint64_t off) {
  return up_takes(up, off) && up->inflight < up->b->cfg.upstream_high_watermark;
}

/* A spooling stream goes live again once the spool gave back everything it read and
 * the connection keeps up: it would take the next chunk, and it is not refused, busy
 * reading, holding queued data, or past half the high watermark. */
static void up_maybe_live(sb__upstream_t* up) {
  if (up->route != SB__ROUTE_SPOOL || up->b->cfg.durability != SB__DURABILITY_BACKLOG ||
      up->b->stopping || up->closing || !up_takes(up, up->next_off) ||
      up->reading_spool || up_refused(up) || up->sink.queued > 0 ||
      up->committed < up->next_off ||
      up->inflight > up->b->cfg.upstream_high_watermark / 2)
    return;
  up->route = SB__ROUTE_LIVE;
  up->spool_part = up->next_off;
}

void sb__upstream_names_free(struct sb__broker_s* b) {
  sb__names_free(b);
}

/* ---- the final close ---- */

static void on_final_closed(uv_handle_t* h) {
  sb__upstream_t* up = h->data;
  if (--up->pending_closes == 0)
    sb__sink_done(&up->sink, 0);
}

static void up_close_all(sb__upstream_t* up) {
  if (up->closing)
    return;
  up->closing = 1;
  up_stream(up)->kept = !up->conn_done;
  /* A connection still closing (a Windows pipe waits for its cancelled writes) is
   * counted too: the sink, and the handle in it, must outlive its close. */
  up->pending_closes = 3 + up->pipe_open + up->pipe_closing;
  if (up->read_wait || up->state == SB__LINK_WAIT_MEMORY) {
    up->read_wait = 0;
    if (up->state == SB__LINK_WAIT_MEMORY)
      up->state = SB__LINK_IDLE;
    sb__budget_unwait(&up->b->budget, &up->waiter);
  }
  sb__window_clear(up);
  sb__budget_window_remove(&up->b->budget, &up->win);
  uv_close((uv_handle_t*)&up->timer, on_final_closed);
  uv_close((uv_handle_t*)&up->read_timer, on_final_closed);
  uv_close((uv_handle_t*)&up->stall_timer, on_final_closed);
  if (up->pipe_open) {
    up->pipe_open = 0;
    if (sb__link_connected(up->state))
      up->state = SB__LINK_IDLE;
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
  if (!up->durable_told && up->route == SB__ROUTE_SPOOL && up->spill_out == 0 &&
      up->committed >= up_end(up) && up->sink.queued == 0) {
    /* Every byte read is in the spool (a live stream's is once the upstream confirmed
     * its end, at done): the client's connection may close now. */
    up->durable_told = 1;
    sb__sink_durable(&up->sink);
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

/* ---- asked from outside: sbctl retry, the upstream appearing ---- */

int sb__upstream_retry(sb__sink_t* sink) {
  sb__upstream_t* up = up_of(sink);
  if (up->state != SB__LINK_GIVEN_UP || up->closing)
    return 0;
  sb__link_retry_given_up(up, "sbctl retry");
  return 1;
}

void sb__upstream_kick(sb__sink_t* sink) {
  sb__upstream_t* up = up_of(sink);
  if (up->state == SB__LINK_GIVEN_UP) {
    /* A new upstream has seen none of its names refused: worth a try at once. */
    sb__link_retry_given_up(up, "the upstream appeared");
    return;
  }
  if (up->closing || up->pipe_open || up->refusals > 0 ||
      up->state == SB__LINK_LINGERING || !uv_is_active((uv_handle_t*)&up->timer))
    return;
  uv_timer_stop(&up->timer);
  if (up->state == SB__LINK_BACKOFF)
    up->state = SB__LINK_IDLE;
  sb__link_dial(up);
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
    if (!up_refused(up)) {
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
      sb__sink_cut(&up->sink);
  } else {
    if (c->off + c->len > up->committed)
      up->committed = c->off + c->len;
    if (up_can_send(up, c->off))
      sb__link_send(up, c, 0);
  }
  sb__chunk_free(c);
  free(j);
  if (up->sink.queued <= hw / 2)
    sb__sink_drained(&up->sink);
  sb__link_pump(up);
  up_maybe_done(up);
}

static void up_write(sb__sink_t* sink, sb__chunk_t* c) {
  sb__upstream_t* up = up_of(sink);
  sb__broker_t* b = up->b;
  sb__spool_job_t* j;
  c->off = up->next_off;
  up->next_off += c->len;
  if (up_refused(up) || up->closing) {
    b->counters.bytes_refused_full += c->len;
    up_stream(up)->bytes_refused += c->len;
    sb__chunk_free(c);
    return;
  }
  if (up->route == SB__ROUTE_LIVE) {
    if (up_takes(up, c->off)) {
      sb__link_send_live(up, c);
      return;
    }
    sb__window_spill(up, 1);
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
    sb__link_send(up, c, 0);
}

static void on_grace(uv_timer_t* t) {
  sb__upstream_t* up = t->data;
  SB_LOG_I("upstream",
           "stream %llu \"%s\": not fully written upstream at stop; bytes %llu "
           "to %llu stay in the spool",
           up_id(up), up_name(up), (unsigned long long)up->acked,
           (unsigned long long)up_end(up));
  up->grace = 2;
  sb__link_close(up);
}

static void up_finish(sb__sink_t* sink) {
  sb__upstream_t* up = up_of(sink);
  int cut = up->b->stopping && !up->finishing;
  up->finishing = 1;
  if (up->b->stopping) {
    /* A live stream's window, and what is in flight, are kept for the next start. */
    sb__window_spill(up, 1);
    /* The spool has (or is about to have) every byte. A stream the stop cut short
     * (its client was still writing) is not ended upstream: it stays in the spool,
     * window included, and the next start resumes it. One whose client had finished
     * gets a short grace to finish upstream; an unconnected one stops at once. */
    if (cut && up->pipe_open) {
      up->grace = 2;
      sb__link_close(up);
    } else if (up->pipe_open && !up->grace) {
      up->grace = 1;
      uv_timer_start(&up->timer, on_grace, SB__STOP_GRACE_MS, 0);
    } else if (!up->pipe_open) {
      uv_timer_stop(&up->timer);
      if (up->state == SB__LINK_BACKOFF)
        up->state = SB__LINK_IDLE;
    }
  }
  sb__link_pump(up);
  up_maybe_done(up);
}

static void up_destroy(sb__sink_t* sink) {
  sb__upstream_t* up = up_of(sink);
  sb__upstream_proc_close(&up->proc);
  free(up->props);
  free(up->up_name);
  free(up);
}

/* The status JSON's "route" names (sbctl streams). */
static const char* const route_names[] = {
    [SB__ROUTE_LIVE] = "live",
    [SB__ROUTE_SPOOL] = "spool",
};

/* The status JSON's "upstream" names of the connection's states (sbctl streams). */
static const char* const link_state_names[] = {
    [SB__LINK_IDLE] = "waiting",
    [SB__LINK_BACKOFF] = "waiting",
    [SB__LINK_WAIT_MEMORY] = "waiting",
    [SB__LINK_OPENING] = "reopening",
    [SB__LINK_OPEN] = "connected",
    [SB__LINK_ENDING] = "ending",
    [SB__LINK_LINGERING] = "confirming-end",
    [SB__LINK_GIVEN_UP] = "given-up",
};

/* For sbctl streams: where the stream stands on its way upstream. */
static void up_describe(sb__sink_t* sink, void* object) {
  sb__upstream_t* up = up_of(sink);
  cJSON* o = object;
  const char* state = link_state_names[up->state];
  /* A given-up stream says so even while its sink closes; a pipe still open without
   * a connection made (its dial failed at once) is closing. */
  if (up->state != SB__LINK_GIVEN_UP && up->closing)
    state = "closing";
  else if (up->pipe_open &&
           (up->state == SB__LINK_IDLE || up->state == SB__LINK_BACKOFF ||
            up->state == SB__LINK_WAIT_MEMORY))
    state = "disconnecting";
  cJSON_AddStringToObject(o, "upstream", state);
  cJSON_AddStringToObject(o, "route", route_names[up->route]);
  cJSON_AddNumberToObject(o, "window_bytes", (double)up->mem_bytes);
  if (up->state == SB__LINK_WAIT_MEMORY || up->read_wait)
    cJSON_AddStringToObject(o, "waiting_for_memory",
                            up->state == SB__LINK_WAIT_MEMORY ? "dial" : "read");
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

static sb__upstream_t* up_new(sb__stream_t* s, const sb__sink_events_t* events) {
  sb__upstream_t* up = sb__xcalloc(1, sizeof(*up));
  up->sink.events = events;
  up->sink.write = up_write;
  up->sink.finish = up_finish;
  up->sink.destroy = up_destroy;
  up->sink.stop = up_finish;
  up->sink.describe = up_describe;
  up->sink.stream = s;
  up->ops = &up_ops;
  /* "always": nothing more is read from the client until what was read is committed,
   * so what a killed service had read is, but for one read, in the spool. */
  up->sink.one_at_a_time = s->broker->cfg.durability == SB__DURABILITY_ALWAYS;
  up->b = s->broker;
  sb__budget_setup(&s->broker->budget, &s->broker->cfg.replay_memory_max,
                   SB__SPOOL_READ_LIMIT, &budget_ops, s->broker);
  up->trunc_off = SB__TRUNC_NONE;
  up->proc.pid = -1;
  /* "backlog": live until a chunk cannot go live; the others spool every byte. */
  up->route = s->broker->cfg.durability != SB__DURABILITY_BACKLOG ? SB__ROUTE_SPOOL
                                                                  : SB__ROUTE_LIVE;
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
    if (!up_refused(up)) {
      up->trunc_off = up->open_off;
      up->b->counters.streams_refused_full++;
    }
    if (up->next_off > up->open_off) {
      up->b->counters.bytes_refused_full += up->next_off - up->open_off;
      s->bytes_refused += up->next_off - up->open_off;
    }
    if (!s->client_eof)
      sb__sink_cut(&up->sink);
  }
  free(j->props);
  free(j);
  sb__link_pump(up);
  up_maybe_done(up);
}

sb__sink_t* sb__upstream_sink_create(sb__stream_t* s, const sb__sink_events_t* events) {
  sb__upstream_t* up = up_new(s, events);
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
  if (up->route == SB__ROUTE_SPOOL)
    up_open_row(up);
  sb__link_dial(up);
  return &up->sink;
}

sb__sink_t* sb__upstream_sink_resume(sb__stream_t* s, const sb__spool_resume_t* r,
                                     const sb__sink_events_t* events) {
  sb__upstream_t* up = up_new(s, events);
  up->props = sb__xstrdup(r->props);
  up->sid = r->sid;
  up->next_off = up->committed = r->end;
  up->next_seq = r->next_seq;
  up->acked = up->db_acked = r->acked;
  up->send_off = r->acked;
  up->sent_max = r->acked; /* as far as this service knows, sent before */
  up->reopen = 1;
  up->finishing = 1;
  up->route = SB__ROUTE_SPOOL;
  up->opened = 1;
  if (r->chunks == 0) {
    /* Nothing of it is left to send (a live stream's row, its window trimmed): the
     * row goes. */
    up->conn_done = 1;
    up_maybe_done(up);
    return &up->sink;
  }
  sb__link_dial(up);
  return &up->sink;
}
