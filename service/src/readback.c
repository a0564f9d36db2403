/*
 * readback.c - reading a stream's spool back: the chunks read from the spool, oldest
 * first, go upstream in order; holes (dropped, damaged) become gaps the stream is
 * reopened past, tagged and counted; a reopen starts at the window's oldest resend
 * point; the stream's cursor in the spool follows what the upstream took (acks).
 */
#include "upstream_int.h"
#include "readback.h"
#include "tags.h"

/* A read of the spool that failed for now is tried again after this. */
#define SB__READ_RETRY_MS 1000

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
    if (!up->gap && (up->state == SB__LINK_OPEN || up->state == SB__LINK_ENDING) &&
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
        up->ops->send(up, c, 1);
      }
    }
    sb__chunk_free(c);
  }
}

static void on_read_retry(uv_timer_t* t) {
  sb__upstream_t* up = t->data;
  up->ops->pump(up);
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
  if (!j->window && c == NULL &&
      (up->state == SB__LINK_OPEN || up->state == SB__LINK_ENDING) &&
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
  if (up->state == SB__LINK_OPENING && j->window) {
    /* The reopen's start: the oldest resend point in the spool (or, when the spool
     * holds nothing of the stream, where its data ends now). */
    uint64_t start = c ? c->off : up->committed;
    int64_t mark = c ? c->mark : (int64_t)start;
    if (c == NULL && up_stream(up)->props.type == SB_DATAGRAM && start > 0)
      mark = -1; /* a datagram index is not known here: the tag is left out */
    up->state = SB__LINK_OPEN;
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
    up->ops->handshake(up, 1, mark);
    up_take_chunks(up, c);
  } else {
    up_take_chunks(up, c);
  }
  free(j);
  up->ops->pump(up);
  up->ops->maybe_done(up);
}

void sb__readback_read(sb__upstream_t* up, int window) {
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

void sb__readback_ack(sb__upstream_t* up) {
  sb__spool_job_t* j;
  uint64_t window = up->b->cfg.replay_window;
  if (up->ack_out || up->acked <= up->db_acked || up->closing ||
      up->route == SB__ROUTE_LIVE)
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
  sb__readback_ack(up);
  up->ops->maybe_done(up);
}
