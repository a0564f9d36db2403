/*
 * window.c - the replay window of a live stream: the chunks sent live, kept in memory
 * oldest first until the upstream is past them by replay_window (push, trim), and
 * their spill to the spool (a whole window, and what is in flight) when the stream
 * turns to the spool, stops, or the budget needs the memory. Owns up->mem_* and the
 * stream's spill state; counts its memory in the broker's budget.
 */
#include "upstream_int.h"
#include "window.h"

/* A spill joins small chunks up to this size: one spool row each. */
#define SB__SPILL_JOIN (128u * 1024u)

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

static void on_spool_job(sb__spool_job_t* j) {
  sb__upstream_t* up = j->data;
  up->jobs_out--;
  if (j->status != 0)
    SB_LOG_W("spool", "stream %llu \"%s\": trimming its window in the spool: %s",
             up_id(up), up_name(up), sb_strerror(j->status));
  free(j);
  up->ops->pump(up);
  up->ops->maybe_done(up);
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
void sb__window_trim(sb__upstream_t* up) {
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
    sb__sink_drained(&up->sink);
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
  up->ops->pump(up);
  up->ops->maybe_done(up);
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
void sb__window_spill(sb__upstream_t* up, int route) {
  sb__chunk_t* join = NULL;
  if (up->route == SB__ROUTE_SPOOL || up->closing)
    return;
  up->ops->open_row(up);
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
    up->route = SB__ROUTE_SPOOL;
    up->spill_q += up->live_q;
    up->live_q = 0;
    up->live_epoch++;
    uv_timer_stop(&up->stall_timer);
    spill_committed(up); /* nothing left to write: an earlier spill had it all */
  }
}

/* A chunk sent live joins the memory window (the reference passes to it). */
void sb__window_push(sb__upstream_t* up, sb__chunk_t* c) {
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

void sb__window_clear(sb__upstream_t* up) {
  while (up->mem_head)
    sb__chunk_free(mem_pop(up));
}

void sb__window_on_stall(uv_timer_t* t) {
  sb__upstream_t* up = t->data;
  if (up->route == SB__ROUTE_SPOOL || up->closing ||
      up->live_q <= up->b->cfg.upstream_high_watermark / 2)
    return;
  SB_LOG_I("upstream",
           "stream %llu \"%s\": the upstream has not taken %llu bytes for %d ms; "
           "spooling until it catches up",
           up_id(up), up_name(up), (unsigned long long)up->live_q, SB__LIVE_STALL_MS);
  sb__window_spill(up, 1); /* its client goes on once the spill is committed */
}
