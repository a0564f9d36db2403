/*
 * archive_spool.c - an archive stream's way through the spool while its files cannot
 * be written: the route, the outage and its retries, the stream's row and appends
 * (reading them back into the .log is archive_drain.c's).
 *
 * An archive is a sink like an upstream: when a stream's .log (or its directory, or
 * its sidecar) cannot be written - read-only, no permission, a full disk, a missing
 * directory, a file in its place - nothing is lost. The stream turns to the spool from
 * the first byte the .log did not take: its row (the handshake's properties), then
 * what waited to be written, then every chunk its client sends, appended in order.
 * The client's connection closes only once all of it is committed. The .log is tried
 * again with capped, jittered exponential backoff (backoff_initial_ms,
 * backoff_max_ms); when it opens again at the length it had, the stream goes on in
 * it, else (gone, another length) in a new segment. Then the spool is read back in
 * order and written to the .log, and what was written is forgotten by the spool only
 * once the .log is flushed (fsync). Once the .log has caught up, the stream is written
 * directly again and its row goes.
 *
 * Routes (sb__archive_route_t): DIRECT -> BROKEN (a request failed: the queue goes to
 * the spool, the failed .log is flushed and closed, a retry is due after the backoff)
 * -> REOPENING (the retry: reopen and check the .log, or claim a new segment; a
 * failure goes back to BROKEN with the next backoff) -> DRAINING (the spool is read
 * back into the .log; a failure goes back to BROKEN) -> DIRECT.
 *
 * Datagram streams: a new segment must begin on a datagram boundary, so when the .log
 * fails inside a datagram the spool gets that datagram from its start (archive_writer.c
 * keeps the .log's bytes since its last boundary), and the spool keeps, when it forgets
 * what was written, the chunk of the last boundary (its ACK is not exact): the spool's
 * window always starts on one, with its datagram index.
 *
 * Restarts: a stream left in the spool is resumed at the next start, in archive mode as
 * in forward mode; it goes on in a new segment from the spool's window, tagged with
 * where it starts (what the old segment and the new one both hold is the same bytes,
 * as a reopen resends them; the scan at start has finished the old segment).
 *
 * Memory: read-back data waits in memory only up to a quarter of replay_memory_max
 * over all streams; past it, a stream waits for others to write theirs.
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "archive_int.h"

sb__spool_job_t* sb__archive_spool_job(sb__archive_t* ar, sb__spool_op_t op,
                                       void (*done)(sb__spool_job_t*)) {
  sb__spool_job_t* j = sb__xcalloc(1, sizeof(*j));
  j->op = op;
  j->sid = ar->sid;
  j->done = done;
  j->data = ar;
  ar->jobs_out++;
  return j;
}

/* ---- retries ---- */

/* The delay before retry number `attempt` + 1: doubling from backoff_initial_ms,
 * capped at backoff_max_ms, drawn from its upper half (jitter). */
static uint64_t ar_backoff(const sb__archive_t* ar) {
  return sb__backoff_ms(&sb__archive_broker(ar)->cfg, ar->attempt);
}

void sb__archive_spool_on_backoff(uv_timer_t* t) {
  sb__archive_t* ar = t->data;
  if (ar->route == AR_BROKEN)
    ar->retry_due = 1;
  ar->up->step(ar); /* or a read that failed for now, again */
}

/* ---- jobs ---- */

void sb__archive_spool_job_done(sb__spool_job_t* j) {
  sb__archive_t* ar = j->data;
  ar->jobs_out--;
  if (j->status != 0)
    SB_LOG_W("spool", "stream %llu \"%s\": forgetting what the archive holds: %s",
             sb__archive_id(ar), ar->sink.stream->props.name, sb_strerror(j->status));
  free(j);
  ar->up->maybe_done(ar);
}

/* The spool refused the stream's data from byte `from` on (its cap, a full disk): that
 * data is lost, the client is told (its connection is closed), and what the spool
 * holds before it is still archived. */
static void ar_refused(sb__archive_t* ar, uint64_t from, int status) {
  sb__stream_t* s = ar->sink.stream;
  char where[64];
  if (ar->trunc_off != UINT64_MAX)
    return;
  ar->trunc_off = from;
  s->broker->counters.streams_refused_full++;
  SB_LOG_E(
      "spool",
      "stream %llu \"%s\": the archive cannot write, and the spool refused its data "
      "at byte %llu: %s; the stream is closed (its data before that byte is "
      "archived once the archive can write)",
      sb__archive_id(ar), s->props.name, (unsigned long long)from, sb_strerror(status));
  snprintf(where, sizeof(where), "from byte %llu", (unsigned long long)from);
  sb__archive_set_error(ar, status, "spooling (the archive could not write)", where,
                        sb_strerror(status));
  if (!s->client_eof)
    sb__sink_cut(&ar->sink);
}

static void on_opened(sb__spool_job_t* j) {
  sb__archive_t* ar = j->data;
  ar->jobs_out--;
  if (j->status != 0)
    ar_refused(ar, j->off, j->status);
  free(j->props);
  free(j);
  sb__archive_spool_durable(ar);
  ar->up->step(ar);
  ar->up->maybe_done(ar);
}

static void on_appended(sb__spool_job_t* j) {
  sb__archive_t* ar = j->data;
  sb__stream_t* s = ar->sink.stream;
  sb__chunk_t* c = j->chunk;
  ar->jobs_out--;
  ar->appends_out--;
  ar->sink.queued -= j->limit;
  if (j->status != 0) {
    ar_refused(ar, c->off, j->status);
    s->broker->counters.bytes_refused_full += c->len;
    s->bytes_refused += c->len;
  } else if (c->off <= ar->committed && c->off + c->len > ar->committed) {
    ar->committed = c->off + c->len;
  }
  sb__chunk_free(c);
  free(j);
  ar->up->notify(ar);
  sb__archive_spool_durable(ar);
  ar->up->step(ar);
  ar->up->maybe_done(ar);
}

/*
 * Appends a chunk (the reference passes to the job). add: bytes it adds to the
 * stream's queue now; counted: bytes it takes from the queue once committed (a chunk
 * that waited for the .log is counted already; the datagram start re-sent is not).
 */
static void ar_append(sb__archive_t* ar, sb__chunk_t* c, uint64_t add,
                      uint64_t counted) {
  sb__stream_t* s = ar->sink.stream;
  sb__spool_job_t* j;
  if (ar->trunc_off != UINT64_MAX) {
    /* After a refusal nothing more is stored (the client is being closed). */
    s->broker->counters.bytes_refused_full += c->len;
    s->bytes_refused += c->len;
    ar->sink.queued -= counted - add;
    sb__chunk_free(c);
    return;
  }
  j = sb__archive_spool_job(ar, SB__SPOOL_APPEND, on_appended);
  j->seq = ar->next_seq++;
  j->chunk = c;
  j->limit = counted;
  ar->sink.queued += add;
  ar->appends_out++;
  if (counted > 0) {
    ar->spooled += c->len;
    s->broker->counters.archive_bytes_spooled += c->len;
  }
  sb__spool_submit(s->broker->spool, j);
}

/* The stream's row, before its first chunk (jobs run in order): the handshake's
 * properties, to resume it after a restart. A datagram stream whose .log ends inside
 * a datagram sends that datagram's start first, so that the spool's data begins on a
 * boundary. */
static void ar_open_row(sb__archive_t* ar) {
  sb__stream_t* s = ar->sink.stream;
  sb__broker_t* b = s->broker;
  sb__spool_job_t* j;
  sb__buf_t json = {0};
  uint64_t written = sb__archive_written(ar);
  if (ar->row)
    return;
  if (ar->sid == 0)
    ar->sid = sb__spool_new_sid(b->spool);
  ar->row = 1;
  if (!ar->waiting) {
    ar->waiting = 1;
    b->archive->waiting++;
  }
  if (sb__props_encode_json(&s->props, &json) != 0 || json.err)
    abort(); /* properties that decoded always encode */
  sb__buf_putc(&json, '\0');
  j = sb__archive_spool_job(ar, SB__SPOOL_OPEN, on_opened);
  j->props = sb__xstrdup(json.data);
  j->type = s->props.type;
  j->off = written;
  sb__buf_free(&json);
  sb__spool_submit(b->spool, j);
  ar->committed = written;
  if (s->props.type == SB_DATAGRAM && ar->dg_tail.len > 0 &&
      ar->dg_tail.len <= written) {
    sb__chunk_t* c = sb__chunk_new(ar->dg_tail.data, ar->dg_tail.len);
    c->off = written - ar->dg_tail.len;
    c->mark = (int64_t)sb__archive_dgram_index(ar);
    ar->committed = c->off;
    ar_append(ar, c, 0, 0);
  }
}

void sb__archive_spool_append(sb__archive_t* ar, sb__chunk_t* c) {
  uint64_t wm = sb__archive_broker(ar)->cfg.upstream_high_watermark;
  ar_open_row(ar);
  ar_append(ar, c, c->len, c->len);
  if (ar->sink.queued > wm)
    ar->paused = 1;
}

/* The write queue goes to the spool (chunks from the client, from the first byte the
 * .log did not take), or is dropped (chunks read back from it: still there). */
static void ar_turn(sb__archive_t* ar) {
  int text = ar->sink.stream->props.type != SB_DATAGRAM;
  if (ar->wq_direct) {
    sb__chunk_t* c = ar->head;
    size_t off = ar->head_off;
    ar->head = ar->tail = NULL;
    ar->head_off = 0;
    ar->wq_direct = 0;
    while (c) {
      sb__chunk_t* next = c->next;
      c->next = NULL;
      if (off > 0) {
        sb__chunk_t* rest = sb__chunk_new(c->data + off, c->len - off);
        rest->off = c->off + off;
        rest->mark = text ? (int64_t)rest->off
                     : sb__archive_at_boundary(ar)
                         ? (int64_t)sb__archive_dgram_index(ar)
                         : -1;
        sb__chunk_free(c);
        c = rest;
        off = 0;
      }
      ar_open_row(ar);
      ar_append(ar, c, 0, c->len);
      c = next;
    }
  } else {
    ar->up->drop_queue(ar);
  }
  ar->read_off = sb__archive_written(ar);
}

/*
 * A file request failed and may pass: the outage is logged and counted once for the
 * stream (later retries that fail only at debug level, and in archive_retries), the
 * stream turns to the spool, and the next retry is scheduled.
 */
void sb__archive_spool_break(sb__archive_t* ar, const char* what, const char* path,
                             const char* why) {
  sb__stream_t* s = ar->sink.stream;
  sb__broker_t* b = s->broker;
  sb__archive_state_t* st = b->archive;
  uint64_t written = sb__archive_written(ar);
  if (!ar->in_outage) {
    size_t n = strlen(what) + strlen(path) + strlen(why) + 8;
    ar->in_outage = 1;
    ar->attempt = 0;
    ar->outage_ms = uv_now(b->loop);
    st->outages++;
    b->counters.archive_errors++;
    b->counters.archive_streams_spooled++;
    free(st->last_error);
    st->last_error = sb__xmalloc(n);
    snprintf(st->last_error, n, "%s %s: %s", what, path, why);
    st->last_error_at = sb__time_now();
    if (ar->head != NULL || ar->next_off > written || ar->row)
      SB_LOG_W("archive",
               "stream %llu \"%s\": %s %s: %s; the archive cannot write: the stream's "
               "data from byte %llu goes to the spool and is archived once it can "
               "(retrying with backoff)",
               sb__archive_id(ar), s->props.name, what, path, why,
               (unsigned long long)written);
    else
      SB_LOG_W("archive",
               "stream %llu \"%s\": %s %s: %s; the archive cannot write: the stream's "
               "data goes to the spool until it can (retrying with backoff)",
               sb__archive_id(ar), s->props.name, what, path, why);
  } else {
    ar->attempt++;
    b->counters.archive_retries++;
    SB_LOG_D("archive", "stream %llu: retry %u: %s %s: %s", sb__archive_id(ar),
             ar->attempt, what, path, why);
  }
  ar_turn(ar);
  ar->route = AR_BROKEN;
  ar->retry_due = 0;
  if (ar->log_fd >= 0 && ar->pre_sync == 0)
    ar->pre_sync = 1;
  uv_timer_start(&ar->backoff, sb__archive_spool_on_backoff, ar_backoff(ar), 0);
  ar->up->notify(ar);
}

/* Other streams whose archive failed retry now: one stream found it writable. */
static void ar_kick(sb__broker_t* b, sb__archive_t* self) {
  sb__stream_t* s;
  if (b->cfg.upstream != NULL)
    return;
  for (s = b->streams; s; s = s->next) {
    sb__archive_t* o;
    if (s->sink == NULL)
      continue;
    o = SB_CONTAINER_OF(s->sink, sb__archive_t, sink);
    if (o == self || o->route != AR_BROKEN || o->retry_due ||
        !uv_is_active((uv_handle_t*)&o->backoff))
      continue;
    uv_timer_stop(&o->backoff);
    o->retry_due = 1;
    o->up->step(o);
  }
}

/* The reopen worked; the outage ends with the first write that does (a full disk
 * opens files, and then refuses their data). */
void sb__archive_spool_writable(sb__archive_t* ar) {
  ar->route = AR_DRAINING;
  uv_timer_stop(&ar->backoff);
}

void sb__archive_spool_wrote(sb__archive_t* ar) {
  sb__stream_t* s = ar->sink.stream;
  sb__broker_t* b = s->broker;
  if (!ar->in_outage)
    return;
  ar->in_outage = 0;
  b->archive->outages--;
  SB_LOG_I(
      "archive",
      "stream %llu \"%s\": the archive writes again (%s, after %u failed retries in "
      "%llu ms)%s",
      sb__archive_id(ar), s->props.name, ar->log_path, ar->attempt,
      (unsigned long long)(uv_now(b->loop) - ar->outage_ms),
      ar->row ? "; archiving what waits in the spool" : "");
  ar->attempt = 0;
  ar_kick(b, ar);
}

/* Every byte read from the client is stored: in the spool (committed), or in the .log
 * and flushed (what it held when it failed was flushed then). */
void sb__archive_spool_durable(sb__archive_t* ar) {
  if (ar->durable_told || !ar->finishing || ar->route == AR_DIRECT ||
      ar->pre_sync != 0 || ar->appends_out > 0)
    return;
  if (ar->row && sb__archive_spooled_end(ar) <
                     (ar->next_off < ar->trunc_off ? ar->next_off : ar->trunc_off))
    return;
  ar->durable_told = 1;
  sb__sink_durable(&ar->sink);
}

void sb__archive_spool_end(sb__archive_t* ar, int kept) {
  sb__archive_state_t* st = sb__archive_broker(ar)->archive;
  if (ar->in_outage) {
    ar->in_outage = 0;
    st->outages--;
  }
  if (ar->waiting) {
    ar->waiting = 0;
    st->waiting--;
  }
  if (ar->drain_wait) {
    ar->drain_wait = 0;
    st->drain_waiters--;
  }
  if (ar->row && !kept) {
    sb__spool_submit(
        sb__archive_broker(ar)->spool,
        sb__archive_spool_job(ar, SB__SPOOL_FORGET, sb__archive_spool_job_done));
    ar->row = 0;
  }
}

void sb__archive_spool_resume(sb__archive_t* ar, const sb__spool_resume_t* r) {
  sb__archive_state_t* st = sb__archive_broker(ar)->archive;
  ar->resumed = 1;
  ar->finishing = 1;
  ar->durable_told = 1; /* its client is gone */
  ar->sid = r->sid;
  ar->row = 1;
  ar->waiting = 1;
  st->waiting++;
  ar->next_off = ar->committed = r->end;
  ar->next_seq = r->next_seq;
  ar->wq_direct = 0;
  ar->gap_check = 1;
  if (r->chunks == 0) {
    /* Nothing of it is left to write (its end was written; the row stayed). */
    ar->up->end(ar, 0);
    return;
  }
  ar->route = AR_REOPENING;
  ar->new_segment = 1;
  ar->window_known = 0;
  ar->up->step(ar);
}

void sb__archive_spool_describe(sb__archive_t* ar, void* object) {
  static const char* const states[] = {"writing", "cannot-write", "retrying",
                                       "draining"};
  cJSON* o = object;
  uint64_t written = sb__archive_written(ar), end = sb__archive_spooled_end(ar);
  cJSON_AddStringToObject(o, "archive", states[ar->route]);
  cJSON_AddStringToObject(o, "route", ar->route == AR_DIRECT ? "direct" : "spool");
  cJSON_AddNumberToObject(o, "bytes_in_spool",
                          ar->row && end > written ? (double)(end - written) : 0.0);
  cJSON_AddNumberToObject(o, "bytes_spooled", (double)ar->spooled);
  cJSON_AddNumberToObject(o, "retries", ar->attempt);
  cJSON_AddNumberToObject(o, "spool_jobs", ar->jobs_out);
}

void sb__archive_spool_status(sb__broker_t* b, void* object) {
  sb__archive_state_t* st = b->archive;
  cJSON* o = object;
  uint64_t bytes = 0;
  sb__stream_t* s;
  char at[SB__TIME_BUF];
  for (s = b->streams; s && b->cfg.upstream == NULL; s = s->next) {
    sb__archive_t* ar;
    uint64_t end;
    if (s->sink == NULL)
      continue;
    ar = SB_CONTAINER_OF(s->sink, sb__archive_t, sink);
    end = sb__archive_spooled_end(ar);
    if (ar->row && end > sb__archive_written(ar))
      bytes += end - sb__archive_written(ar);
  }
  cJSON_AddBoolToObject(o, "writable", st->outages == 0);
  cJSON_AddNumberToObject(o, "streams_cannot_write", (double)st->outages);
  cJSON_AddNumberToObject(o, "streams_waiting", (double)st->waiting);
  cJSON_AddNumberToObject(o, "bytes_waiting", (double)bytes);
  if (st->last_error != NULL) {
    cJSON_AddStringToObject(o, "last_error", st->last_error);
    if (sb__time_format(st->last_error_at, at) > 0)
      cJSON_AddStringToObject(o, "last_error_at", at);
  }
}
