/*
 * archive_drain.c - reading the spool back into the .log (archive_spool.c's route
 * DRAINING, and the window a new segment starts from): chunks read in order, cut to
 * what the .log lacks, lost data recorded as a gap, what the .log holds forgotten by
 * the spool once flushed, and the memory all streams' read-back data may take.
 */
#include <stdlib.h>
#include <string.h>

#include "archive_int.h"

/* One read of the spool takes at most this many bytes (and one chunk more). */
#define AR_READ_LIMIT (256u * 1024u)

/* A read that failed for now (the database busy) is tried again after this. */
#define AR_READ_RETRY_MS 1000

static void free_chunks(sb__chunk_t* c) {
  while (c) {
    sb__chunk_t* next = c->next;
    sb__chunk_free(c);
    c = next;
  }
}

static int drain_full(const sb__broker_t* b) {
  return b->archive->drain_bytes + AR_READ_LIMIT > b->cfg.replay_memory_max / 4;
}

/* Streams waiting for room to read the spool go on, in the order of the stream list,
 * while there is room. In archive mode every sink is an archive sink. */
static void drain_wake(sb__broker_t* b) {
  sb__archive_state_t* st = b->archive;
  sb__stream_t* s;
  if (st->drain_waiters == 0 || b->cfg.upstream != NULL)
    return;
  for (s = b->streams; s && st->drain_waiters > 0 && !drain_full(b); s = s->next) {
    sb__archive_t* ar;
    if (s->sink == NULL)
      continue;
    ar = SB_CONTAINER_OF(s->sink, sb__archive_t, sink);
    if (ar->drain_wait) {
      ar->drain_wait = 0;
      st->drain_waiters--;
      ar->up->step(ar);
    }
  }
}

void sb__archive_drain_released(sb__archive_t* ar, uint64_t n) {
  sb__archive_state_t* st = sb__archive_broker(ar)->archive;
  st->drain_bytes -= n < st->drain_bytes ? n : st->drain_bytes;
  drain_wake(sb__archive_broker(ar));
}

/* Queues a chunk read back from the spool for the .log, cut to what is not written yet
 * and to the spool's end. */
static void ar_take(sb__archive_t* ar, sb__chunk_t* c, uint64_t end) {
  sb__archive_state_t* st = sb__archive_broker(ar)->archive;
  if (c->off < ar->read_off) {
    size_t skip = (size_t)(ar->read_off - c->off);
    memmove(c->data, c->data + skip, c->len - skip);
    c->len -= skip;
    c->off += skip;
    c->mark = ar->sink.stream->props.type != SB_DATAGRAM ? (int64_t)c->off : -1;
  }
  if (c->off + c->len > end)
    c->len = (size_t)(end - c->off);
  c->next = NULL;
  if (ar->tail)
    ar->tail->next = c;
  else
    ar->head = c;
  ar->tail = c;
  ar->read_off = c->off + c->len;
  st->drain_bytes += c->len;
}

/* Bytes the spool no longer has (dropped at its cap, or damaged): counted by cause;
 * the stream's sidecar says it is incomplete (dropped_bytes, and the gap). */
static void ar_count_lost(sb__archive_t* ar, uint64_t lost) {
  sb__stream_t* s = ar->sink.stream;
  uint64_t corrupt = lost < ar->corrupt ? lost : ar->corrupt;
  ar->corrupt -= corrupt;
  ar->lost += lost;
  s->broker->counters.bytes_dropped_corrupt += corrupt;
  s->broker->counters.bytes_dropped_full += lost - corrupt;
  s->bytes_dropped += lost;
}

/*
 * Where a new segment begins: the spool's first resend point (the window's first
 * chunk; after a hole, the first chunk past it that starts a datagram), with its mark.
 * Without one, where the .log ended.
 */
static void ar_window(sb__archive_t* ar, sb__chunk_t* c) {
  sb__stream_t* s = ar->sink.stream;
  int dgram = s->props.type == SB_DATAGRAM;
  uint64_t end = sb__archive_spooled_end(ar), at, mark;
  sb__chunk_t* next;
  if (c != NULL) {
    at = c->off;
    mark = (uint64_t)c->mark;
  } else if (ar->hole) {
    at = end;
    mark = dgram ? sb__archive_dgram_index(ar) : end;
  } else {
    at = sb__archive_written(ar);
    mark = dgram ? sb__archive_dgram_index(ar) : at;
  }
  if (ar->gap_check) {
    /* Resumed: where the archive's segments of the name end says whether a gap. */
    ar->gap_check = 0;
    sb__archive_check_gap(ar, ar->start + mark);
  } else {
    /* The spool's data should start where the .log ends (or at the hole): what is
     * missing before its first resend point was dropped at its cap, or damaged. */
    uint64_t from = ar->hole ? ar->hole_off : sb__archive_written(ar);
    if (at > from) {
      ar_count_lost(ar, at - from);
      SB_LOG_E("archive",
               "stream %llu \"%s\": bytes %llu to %llu are no longer in the spool "
               "(dropped at its cap, or damaged); its archive goes on after them, in a "
               "segment tagged with where",
               sb__archive_id(ar), s->props.name, (unsigned long long)from,
               (unsigned long long)at);
      sb__archive_gap(ar, ar->start + (dgram ? sb__archive_dgram_index(ar) : from),
                      ar->start + mark);
    }
  }
  ar->hole = 0;
  ar->seg_start = at;
  ar->seg_mark = mark;
  ar->window_known = 1;
  ar->read_off = at;
  for (; c; c = next) {
    next = c->next;
    if (c->off >= end || c->off + c->len <= ar->read_off) {
      sb__chunk_free(c);
      continue;
    }
    ar_take(ar, c, end);
  }
}

static void on_window(sb__spool_job_t* j) {
  sb__archive_t* ar = j->data;
  sb__broker_t* b = sb__archive_broker(ar);
  sb__chunk_t* c = j->chunk;
  ar->jobs_out--;
  ar->reading = 0;
  b->archive->drain_bytes -= AR_READ_LIMIT;
  ar->corrupt += j->corrupt;
  if (ar->ending || ar->route != AR_REOPENING || b->stopping) {
    free_chunks(c);
  } else if (j->status == SB_EBUSY && c == NULL) {
    uv_timer_start(&ar->backoff, sb__archive_spool_on_backoff, AR_READ_RETRY_MS, 0);
  } else {
    /* After a hole, chunks inside a datagram cannot begin a segment. */
    while (c && c->mark < 0) {
      sb__chunk_t* next = c->next;
      sb__chunk_free(c);
      c = next;
    }
    ar_window(ar, c);
  }
  free(j);
  drain_wake(b);
  ar->up->step(ar);
  ar->up->maybe_done(ar);
}

void sb__archive_drain_window(sb__archive_t* ar) {
  sb__broker_t* b = sb__archive_broker(ar);
  sb__spool_job_t* j;
  if (!ar->row) {
    ar_window(ar, NULL); /* nothing waits in the spool */
    ar->up->step(ar);
    return;
  }
  j = sb__archive_spool_job(ar, SB__SPOOL_READ, on_window);
  j->window = !ar->hole;
  j->off = ar->hole ? ar->hole_off : 0;
  j->limit = AR_READ_LIMIT;
  ar->reading = 1;
  b->archive->drain_bytes += AR_READ_LIMIT;
  sb__spool_submit(b->spool, j);
}

/*
 * Chunks read back, in order. One that starts past where the .log is (the spool lost
 * what is between: dropped at its cap, or damaged) is a hole: what comes before it is
 * written and flushed, then the stream goes on in a new segment past it.
 */
static void on_read(sb__spool_job_t* j) {
  sb__archive_t* ar = j->data;
  sb__broker_t* b = sb__archive_broker(ar);
  sb__chunk_t *c = j->chunk, *next;
  uint64_t end = sb__archive_spooled_end(ar), before = ar->read_off;
  ar->jobs_out--;
  ar->reading = 0;
  b->archive->drain_bytes -= AR_READ_LIMIT;
  ar->corrupt += j->corrupt;
  if (ar->ending || ar->route != AR_DRAINING || b->stopping) {
    free_chunks(c);
  } else if (j->status == SB_EBUSY && c == NULL) {
    uv_timer_start(&ar->backoff, sb__archive_spool_on_backoff, AR_READ_RETRY_MS, 0);
  } else {
    for (; c; c = next) {
      next = c->next;
      if (ar->hole || c->off >= end || c->off + c->len <= ar->read_off) {
        sb__chunk_free(c);
      } else if (c->off > ar->read_off) {
        ar->hole = 1;
        ar->hole_off = ar->read_off;
        sb__chunk_free(c);
      } else {
        ar_take(ar, c, end);
      }
    }
    /* Nothing where the spool's data should be, or a damaged page: a hole too. */
    if (!ar->hole && ar->read_off < end && (ar->read_off == before || j->status != 0)) {
      ar->hole = 1;
      ar->hole_off = ar->read_off;
    }
  }
  free(j);
  drain_wake(b);
  ar->up->step(ar);
  ar->up->maybe_done(ar);
}

int sb__archive_drain_caught_up(const sb__archive_t* ar) {
  return !ar->reading && ar->appends_out == 0 &&
         (!ar->row || ar->read_off >= sb__archive_spooled_end(ar));
}

/* The .log has everything the spool held: the row goes, the route is direct again. */
static void ar_direct_again(sb__archive_t* ar) {
  sb__stream_t* s = ar->sink.stream;
  sb__broker_t* b = s->broker;
  if (ar->row) {
    sb__spool_submit(b->spool, sb__archive_spool_job(ar, SB__SPOOL_FORGET,
                                                     sb__archive_spool_job_done));
    ar->row = 0;
  }
  if (ar->waiting) {
    ar->waiting = 0;
    b->archive->waiting--;
  }
  ar->route = AR_DIRECT;
  ar->wq_direct = 1;
  sb__archive_spool_wrote(ar); /* nothing needed writing: the reopen was enough */
  if (ar->spooled > 0)
    SB_LOG_I("archive",
             "stream %llu \"%s\": the archive has caught up with the spool (%llu bytes "
             "went through it); written directly again",
             sb__archive_id(ar), s->props.name, (unsigned long long)ar->spooled);
}

int sb__archive_drain_next(sb__archive_t* ar) {
  sb__broker_t* b = sb__archive_broker(ar);
  sb__spool_job_t* j;
  if (ar->reading)
    return 1;
  if (ar->row && ar->read_off < sb__archive_spooled_end(ar)) {
    if (drain_full(b)) {
      if (!ar->drain_wait) {
        ar->drain_wait = 1;
        b->archive->drain_waiters++;
      }
      return 1;
    }
    j = sb__archive_spool_job(ar, SB__SPOOL_READ, on_read);
    j->off = ar->read_off;
    j->limit = AR_READ_LIMIT;
    ar->reading = 1;
    b->archive->drain_bytes += AR_READ_LIMIT;
    sb__spool_submit(b->spool, j);
    return 1;
  }
  if (ar->appends_out > 0)
    return 1; /* more is on its way to the spool */
  ar_direct_again(ar);
  return 0;
}

static void on_acked(sb__spool_job_t* j) {
  sb__archive_t* ar = j->data;
  ar->jobs_out--;
  ar->ack_out = 0;
  free(j);
  if (ar->ack_again && !ar->ending) {
    ar->ack_again = 0;
    sb__archive_drain_flushed(ar);
  }
  ar->up->maybe_done(ar);
}

/* The spool forgets what the .log holds, but the chunk of its last resend point (a
 * new segment's start, should one be needed). */
void sb__archive_drain_flushed(sb__archive_t* ar) {
  sb__spool_job_t* j;
  if (!ar->row)
    return;
  if (ar->ack_out) {
    ar->ack_again = 1;
    return;
  }
  j = sb__archive_spool_job(ar, SB__SPOOL_ACK, on_acked);
  j->off = sb__archive_written(ar);
  j->trim = j->off;
  j->exact = 0;
  ar->ack_out = 1;
  sb__spool_submit(sb__archive_broker(ar)->spool, j);
}
