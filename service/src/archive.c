/*
 * archive.c - the archive sink: with no upstream configured, each stream is written to
 * a file of its own under the archive directory, its properties beside it as JSON.
 *
 * Files of a stream whose name maps to PATH (sb__archive_path) in ARCHIVE_DIR:
 *   PATH.log        the data, exactly as read from the client (datagram streams keep
 *                   their varint framing)
 *   PATH.json       the sidecar: written when the stream opens, rewritten (through
 *                   PATH.json.tmp and a rename, so it is never half-written) when it
 *                   closes
 * A name archived before is never overwritten: the stream takes the first free
 * sequence number N >= 1 instead, as PATH+N.log and PATH+N.json, and the sidecar says
 * "sequence": N (0 for the first). A sequence number is claimed by creating its .log
 * exclusively (O_CREAT | O_EXCL), so two streams of one name open at the same time, or
 * names that differ only in case on a case-insensitive file system, still get files of
 * their own. '+' never occurs in a mapped name, so PATH+N cannot be another name's
 * PATH.
 *
 * A file that cannot be written (read-only, no permission, a full disk, a missing
 * directory or a file in its place) loses nothing: the stream turns to the spool and
 * the archive is tried again with backoff (archive_spool.c). Such a stream may go on
 * in a new segment, the next sequence number, tagged streambroker.offset with where
 * it starts, as a reopened stream is: when it resumes after a restart, or when the
 * .log it was writing is gone or no longer at its length.
 *
 * The sidecar:
 *   {"name": "a/b", "type": "text" | "binary" | "datagram", "contentType": "...",
 *    "timestamp": the stream's own RFC 3339 time, or null when the client sent none,
 *    "tags": {"k": "v", ...}, "sequence": N,
 *    "opened": RFC 3339 (when the broker accepted the connection),
 *    "closed": RFC 3339 or null while open,
 *    "bytes": bytes read from the client for this segment (datagram framing included;
 *             0 until closed),
 *    "datagrams": count (datagram streams only; 0 until closed),
 *    "client": {"pid": .., "uid": .., "gid": ..} (each left out when unknown),
 *    "gap": {"from": E, "to": X, "unit": "bytes" | "datagrams"[, "nothing_before":
 *            true]} (only when the segment starts past what the archive holds),
 *    "complete": true once closed with every byte in the .log and fsynced,
 *    "spooled_bytes": N (bytes that waited in the spool while the archive could not
 *                     write; only when some did),
 *    "dropped_bytes": N (of them, bytes the spool lost before they were archived:
 *                     dropped at its cap by drop-oldest, or damaged; "complete" is
 *                     then false, and "lost_bytes" and the gap say what is missing),
 *    "resumed": true (a segment of a stream resumed from the spool at start),
 *    "continued": true (a segment left for a new one: its stream goes on there),
 *    "error": "what failed: the call, the file, the reason", "archived_bytes": N,
 *    "lost_bytes": N (only when the archive failed),
 *    "recovered": true, "mapped_path": "..." (only on a stream an earlier run left
 *    unclosed, finished at start)}
 *
 * I/O: one libuv file request in flight at a time (on the threadpool), so the steps
 * of a stream (claim the .log, write the sidecar, append data, fsync, close, rewrite
 * the sidecar) happen strictly in order, and the loop thread never blocks on a file
 * except for creating directories at stream start and retry (see
 * sb__archive_sink_create) and the scan at service start (sb__archive_open).
 * Retention deletes on the threadpool.
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "archive_int.h"
#include "tags.h"

/* ---- the sink ---- */

static sb__archive_t* ar_of(sb__sink_t* sink) {
  return SB_CONTAINER_OF(sink, sb__archive_t, sink);
}

void sb__archive_notify(sb__archive_t* ar) {
  uint64_t wm = ar->sink.stream->broker->cfg.upstream_high_watermark;
  if (ar->paused && (ar->failed || ar->sink.queued <= wm / 2)) {
    ar->paused = 0;
    sb__stream_sink_drained(ar->sink.stream);
  }
}

void sb__archive_drop_queue(sb__archive_t* ar) {
  while (ar->head) {
    sb__chunk_t* c = ar->head;
    uint64_t left = c->len - ar->head_off;
    ar->head = c->next;
    ar->head_off = 0;
    if (ar->wq_direct)
      ar->sink.queued -= left;
    else
      sb__archive_spool_released(ar, left);
    sb__chunk_free(c);
  }
  ar->tail = NULL;
}

int sb__archive_at_boundary(const sb__archive_t* ar) {
  return ar->sink.stream->props.type != SB_DATAGRAM ||
         (!ar->wdg.in_body && !ar->wdg.pending_end && ar->wdg.varint.nbytes == 0);
}

uint64_t sb__archive_dgram_index(const sb__archive_t* ar) {
  return ar->seg_mark + ar->wdg.count;
}

/*
 * A file error that retrying cannot cure (a name too long, an invalid argument), or
 * any error once the stream has failed: logged (the call, the path and the system's
 * text) and counted; the first one is what done reports and what the sidecar's
 * "error" says. Data that cannot be archived must not be taken from the client as if
 * it were: the client's connection is closed at once (as the upstream sink does), so
 * its next write fails. The files are still closed and the sidecar rewritten to say
 * the archive is incomplete, and why.
 */
static void ar_fail(sb__archive_t* ar, const char* what, const char* path, int err,
                    const char* why) {
  sb__stream_t* s = ar->sink.stream;
  s->broker->counters.archive_errors++;
  SB_LOG_E("archive", "stream %llu \"%s\": %s %s: %s", sb__archive_id(ar),
           s->props.name, what, path, why);
  sb__archive_set_error(ar, err, what, path, why);
  if (!ar->failed) {
    ar->failed = 1;
    s->broker->counters.archive_streams_failed++;
    if ((ar->claimed && (!ar->finishing || ar->head)) || ar->route != AR_DIRECT)
      SB_LOG_E("archive",
               "stream %llu: data after byte %llu is not archived; the client's "
               "connection is closed",
               sb__archive_id(ar), (unsigned long long)sb__archive_written(ar));
    sb__archive_drop_queue(ar);
    /* What waited in the spool cannot be archived either: the stream ends as a
     * direct one does (its row goes at the end). */
    ar->route = AR_DIRECT;
    ar->wq_direct = 1;
    uv_timer_stop(&ar->backoff);
    if (!s->client_eof)
      sb__stream_stop(s); /* finish comes back here; ar_complete steps after */
    sb__archive_notify(ar);
  }
}

/* What retrying cannot cure: the path itself is wrong. */
static int ar_retryable(int uv_err) {
  return uv_err != UV_ENAMETOOLONG && uv_err != UV_EINVAL;
}

/*
 * A file request failed. Read-only, no permission, a full disk, a missing directory, a
 * file where a directory should be: all may pass, so the stream turns to the spool and
 * the archive is tried again with backoff (archive_spool.c); the rest fails the
 * stream.
 */
static void ar_break(sb__archive_t* ar, const char* what, const char* path, int r) {
  if (ar->failed || !ar_retryable(r)) {
    ar_fail(ar, what, path, sb__uv_err(r), uv_strerror(r));
    return;
  }
  sb__archive_spool_break(ar, what, path, uv_strerror(r));
}

/* sb__mkdir_p's errors, said as a person would look for them. */
static const char* ar_mkdir_why(int err) {
  return err == SB_EEXIST ? "not a directory (a file is in its place)"
                          : sb_strerror(err);
}

static void ar_set_paths(sb__archive_t* ar) {
  free(ar->log_path);
  free(ar->json_path);
  free(ar->tmp_path);
  ar->log_path = sb__archive_path_with(ar->stem, ar->seq, ".log");
  ar->json_path = sb__archive_path_with(ar->stem, ar->seq, ".json");
  ar->tmp_path = sb__archive_path_with(ar->stem, ar->seq, ".json.tmp");
}

/*
 * Datagram streams: follows the framing of what the .log takes, for the count of a
 * segment's datagrams and for its last boundary: when the .log fails in the middle of
 * a datagram, the spool gets that datagram from its start (the bytes after the
 * boundary are kept here), so that a new segment can begin with it whole.
 */
static void ar_track(sb__archive_t* ar, const char* p, size_t len) {
  size_t used = 0, last = 0;
  int boundary = 0;
  if (ar->sink.stream->props.type != SB_DATAGRAM)
    return;
  for (;;) { /* until used up (an END may come after the last byte) */
    sb__dgram_event_t ev;
    int64_t k = sb__dgram_next(&ar->wdg, (const uint8_t*)p + used, len - used, &ev);
    if (k < 0)
      break; /* the stream checked the framing: cannot happen */
    used += (size_t)k;
    if (ev.kind == SB__DGRAM_END) {
      boundary = 1;
      last = used;
    } else if (ev.kind == SB__DGRAM_NONE) {
      break;
    }
  }
  if (boundary) {
    if (ar->dg_tail.cap > 1024u * 1024u)
      sb__buf_free(&ar->dg_tail); /* after a large datagram: give the memory back */
    ar->dg_tail.len = 0;
    p += last;
    len -= last;
  }
  sb__buf_append(&ar->dg_tail, p, len);
}

/* Written bytes leave the queue; fully written chunks are freed. */
static void ar_consume(sb__archive_t* ar, size_t n) {
  sb__stream_t* s = ar->sink.stream;
  sb__broker_t* b = s->broker;
  ar->offset += (int64_t)n;
  b->counters.bytes_out += n;
  b->archive->bytes += n;
  if (ar->wq_direct) {
    ar->sink.queued -= n;
  } else {
    ar->unsynced += n;
    b->counters.bytes_spooled += n;
    sb__archive_spool_released(ar, n);
  }
  while (n > 0 && ar->head) {
    sb__chunk_t* c = ar->head;
    size_t avail = c->len - ar->head_off;
    ar_track(ar, c->data + ar->head_off, n < avail ? n : avail);
    if (n < avail) {
      ar->head_off += n;
      break;
    }
    n -= avail;
    ar->head = c->next;
    ar->head_off = 0;
    sb__chunk_free(c);
  }
  if (ar->head == NULL)
    ar->tail = NULL;
  sb__archive_index_end(ar->known, ar->start + (s->props.type == SB_DATAGRAM
                                                    ? sb__archive_dgram_index(ar)
                                                    : sb__archive_written(ar)));
}

void sb__archive_maybe_done(sb__archive_t* ar) {
  if (ar->ending && ar->open_handles == 0 && ar->jobs_out == 0 && !ar->done_told) {
    ar->done_told = 1;
    sb__stream_sink_done(ar->sink.stream, ar->sink.stream->kept ? 0 : ar->err);
  }
}

static void on_handle_closed(uv_handle_t* h) {
  sb__archive_t* ar = h->data;
  ar->open_handles--;
  sb__archive_maybe_done(ar);
}

/* The end: what was lost is counted, a closed segment is known to retention, and the
 * handles close; done comes once they are closed and no spool job is out. Kept: the
 * service stops with the stream's data in the spool, for the next start. */
void sb__archive_end(sb__archive_t* ar, int kept) {
  sb__stream_t* s = ar->sink.stream;
  sb__archive_state_t* st = s->broker->archive;
  ar->ending = 1;
  uv_timer_stop(&ar->backoff);
  if (kept) {
    s->kept = 1;
  } else if (ar->err != 0 || ar->lost > 0) {
    uint64_t lost = sb__archive_sidecar_lost(ar);
    s->broker->counters.archive_bytes_lost += lost;
    SB_LOG_E(
        "archive",
        "stream %llu \"%s\": archive incomplete: %llu of its %llu bytes lost (%s); "
        "%s holds %llu",
        sb__archive_id(ar), s->props.name, (unsigned long long)lost,
        (unsigned long long)s->bytes,
        ar->err_text ? ar->err_text : "dropped from the spool, or damaged there",
        ar->claimed ? ar->log_path : "no file", (unsigned long long)ar->offset);
  }
  if (ar->claimed && !kept) {
    sb__archive_index_add_closed(st, ar->log_path,
                                 (uint64_t)ar->offset + ar->json_bytes,
                                 ar->json_bytes > 0 ? 2 : 1, ar->closed.sec);
    /* sb__archive_index_add_closed keeps the stem: cut ".log" off the copy it made. */
    st->closed[st->nclosed - 1].stem[strlen(st->closed[st->nclosed - 1].stem) - 4] =
        '\0';
  }
  sb__archive_spool_end(ar, kept);
  uv_close((uv_handle_t*)&ar->idle, on_handle_closed);
  uv_close((uv_handle_t*)&ar->delay, on_handle_closed);
  uv_close((uv_handle_t*)&ar->backoff, on_handle_closed);
  sb__archive_retention_check(s->broker);
}

/* A sidecar request failed: the first failure is kept for when the sidecar is given
 * up (ar_json_gave_up), after its .tmp is cleaned up. */
static void ar_json_failed(sb__archive_t* ar, const char* what, const char* path,
                           int r) {
  ar->json_failed = 1;
  if (ar->json_err == 0) {
    ar->json_err = r;
    ar->json_what = what;
    free(ar->json_where);
    ar->json_where = sb__xstrdup(path);
  }
}

/* The sidecar could not be written, in any way: like a data write, it is tried again
 * once the archive can write (the stream waits for it), unless the stream failed. */
static void ar_json_gave_up(sb__archive_t* ar) {
  int r = ar->json_err < 0 ? ar->json_err : UV_EIO;
  const char* what = ar->json_what ? ar->json_what : "writing";
  char* where = ar->json_where ? ar->json_where : sb__xstrdup(ar->tmp_path);
  ar->json_err = 0;
  ar->json_what = NULL;
  ar->json_where = NULL;
  if (ar->failed || !ar_retryable(r)) {
    ar->json_pending = 0;
    ar_fail(ar, what, where, sb__uv_err(r), uv_strerror(r));
  } else {
    ar_break(ar, what, where, r);
  }
  free(where);
}

/*
 * A segment left for a new one keeps what it holds; its closing sidecar ("continued":
 * true) is written on the threadpool, best effort (the next start finishes a segment
 * whose sidecar says it is open).
 */
typedef struct {
  uv_work_t work;
  char* path;
  char* text;
  int result;
} ar_left_t;

static void left_work(uv_work_t* w) {
  ar_left_t* l = SB_CONTAINER_OF(w, ar_left_t, work);
  l->result = sb__archive_sidecar_write(l->path, l->text);
}

static void left_done(uv_work_t* w, int status) {
  ar_left_t* l = SB_CONTAINER_OF(w, ar_left_t, work);
  if (status == 0 && l->result < 0)
    SB_LOG_W("archive", "writing %s: %s; the next start finishes it", l->path,
             uv_strerror(l->result));
  free(l->path);
  free(l->text);
  free(l);
}

/*
 * The segment cannot go on (its .log is gone or not at its length, or the spool lacks
 * data after it): the stream goes on in a new one, from the spool's next resend point
 * (archive_spool.c reads it). gone: the .log is not there to describe.
 */
static void ar_leave_segment(sb__archive_t* ar, int gone) {
  sb__archive_state_t* st = ar->sink.stream->broker->archive;
  if (ar->claimed) {
    if (!gone) {
      ar_left_t* l = sb__xcalloc(1, sizeof(*l));
      char* text = sb__archive_sidecar(ar, AR_SIDECAR_LEFT);
      l->path = sb__xstrdup(ar->json_path);
      l->text = sb__xstrdup(text);
      cJSON_free(text);
      if (uv_queue_work(ar->sink.stream->broker->loop, &l->work, left_work,
                        left_done) != 0)
        left_done(&l->work, -1);
    }
    sb__archive_index_add_closed(
        st, ar->log_path, (uint64_t)ar->offset + ar->json_bytes, 2, sb__time_now().sec);
    st->closed[st->nclosed - 1].stem[strlen(st->closed[st->nclosed - 1].stem) - 4] =
        '\0';
  }
  ar->new_segment = 1;
  ar->window_known = 0;
  ar->gap = 0;
}

/* The new segment begins (seg_start and seg_mark are set): the next free sequence
 * number is claimed from the one after this stream's last. */
static void ar_begin_segment(sb__archive_t* ar) {
  if (ar->claimed || ar->resumed) {
    /* Not the stream's first: its sidecar says when it was begun, so that segments
     * sort by their "opened" time as reopened streams' do. */
    ar->seg_opened = sb__time_now();
    ar->has_seg_opened = 1;
  }
  if (ar->claimed && ar->seq < AR_MAX_SEQ)
    ar->seq++;
  ar->new_segment = 0;
  ar->window_known = 0;
  ar->claimed = 0;
  ar->checked = 0;
  ar->offset = 0;
  ar->json_bytes = 0;
  ar->json_pending = 0;
  ar->json_failed = 0;
  ar->synced = 0;
  ar->log_done = 0;
  ar->final_json_done = 0;
  ar->unsynced = 0;
  sb__dgram_init(&ar->wdg, 0);
  ar->dg_tail.len = 0;
  ar_set_paths(ar);
}

/* The .log's first claim, or a new segment's: its directory is made again (it may be
 * what was missing). */
static void ar_claim(sb__archive_t* ar) {
  int r;
  if (ar->route != AR_DIRECT &&
      ((r = sb__mkdir_p(ar->parent)) != 0 ||
       (r = sb__path_check_links(ar->sink.stream->broker->cfg.archive_dir,
                                 ar->parent)) != 0)) {
    if (r == SB_EINVAL)
      ar_fail(ar, "creating directory", ar->parent, r, ar_mkdir_why(r));
    else
      sb__archive_spool_break(ar, "creating directory", ar->parent, ar_mkdir_why(r));
    return;
  }
  /* A link in the .log's place takes the next sequence number, as any file does. */
  sb__archive_io_open(ar, AR_LOG_OPEN, ar->log_path,
                      UV_FS_O_WRONLY | UV_FS_O_CREAT | UV_FS_O_EXCL);
}

/* Broken: the failed .log is flushed and closed, then the retry waits for its time. */
static void ar_step_broken(sb__archive_t* ar) {
  if (sb__archive_io_close_failed_log(ar))
    return;
  if (ar->retry_due) {
    ar->retry_due = 0;
    ar->route = AR_REOPENING;
    sb__archive_step(ar);
  }
}

/*
 * A retry: the segment's .log is opened again and found at its length (then the
 * stream goes on in it), or a new segment is claimed from where the spool's data
 * starts; the sidecar is written if it is due. Any failure waits for the next retry.
 */
static void ar_step_reopen(sb__archive_t* ar) {
  uv_loop_t* loop = ar->sink.stream->broker->loop;
  /* A first claim starts where the spool's data does: the spool may have dropped its
   * oldest chunks meanwhile (drop-oldest), and the segment must then say where. */
  if (!ar->claimed && !ar->new_segment && !ar->window_known)
    ar->new_segment = 1;
  if (ar->new_segment) {
    if (ar->log_fd >= 0) {
      sb__archive_io_submitted(
          ar, AR_BREAK_CLOSE,
          uv_fs_close(loop, &ar->req, ar->log_fd, sb__archive_io_on_fs));
      return;
    }
    if (!ar->window_known) {
      if (!ar->reading)
        sb__archive_spool_read_window(ar);
      return;
    }
    ar_begin_segment(ar);
  }
  if (!ar->claimed) {
    ar_claim(ar);
    return;
  }
  if (!ar->log_done && ar->log_fd < 0) {
    sb__archive_io_open(ar, AR_LOG_REOPEN, ar->log_path, UV_FS_O_WRONLY);
    return;
  }
  if (!ar->log_done && !ar->checked) {
    sb__archive_io_submitted(
        ar, AR_LOG_STAT, uv_fs_fstat(loop, &ar->req, ar->log_fd, sb__archive_io_on_fs));
    return;
  }
  if (ar->json_pending) {
    sb__archive_io_json_open(ar);
    return;
  }
  sb__archive_spool_writable(ar);
  sb__archive_step(ar);
}

/* Draining: the queue read back from the spool is written, flushed, and the spool
 * told; then the next part is read. Returns 0 once caught up (the route is direct). */
static int ar_step_drain(sb__archive_t* ar) {
  uv_loop_t* loop = ar->sink.stream->broker->loop;
  if (ar->head != NULL) {
    sb__archive_io_data(ar);
    return 1;
  }
  if (ar->unsynced > 0 && (ar->hole || ar->unsynced >= AR_FLUSH_BYTES ||
                           sb__archive_spool_caught_up(ar) || ar->finishing)) {
    sb__archive_io_submitted(
        ar, AR_LOG_FLUSH,
        uv_fs_fsync(loop, &ar->req, ar->log_fd, sb__archive_io_on_fs));
    return 1;
  }
  if (ar->hole) {
    /* Everything before the hole is in this segment: the rest goes in a new one. */
    ar_leave_segment(ar, 0);
    ar->route = AR_REOPENING;
    sb__archive_step(ar);
    return 1;
  }
  return sb__archive_spool_next(ar);
}

/*
 * The service stops while the stream's data waits in the spool: what the .log took is
 * flushed and closed, and once every append is committed the sink is done, kept for
 * the next start. One that has caught up ends as a direct stream does.
 */
static void ar_step_stopping(sb__archive_t* ar) {
  if (ar->route == AR_DRAINING && ar->head == NULL && !ar->hole &&
      sb__archive_spool_caught_up(ar)) {
    if (ar_step_drain(ar))
      return;
    sb__archive_step(ar); /* direct */
    return;
  }
  if (!ar->wq_direct)
    sb__archive_drop_queue(ar);
  if (sb__archive_io_close_failed_log(ar))
    return;
  if (ar->appends_out > 0 || ar->reading)
    return;
  if (!ar->row)
    SB_LOG_W("archive",
             "stream %llu \"%s\": the service stops before its closing sidecar could "
             "be written; the next start finishes it",
             sb__archive_id(ar), ar->sink.stream->props.name);
  sb__archive_end(ar, ar->row);
}

/*
 * Decides the next request from the state; called whenever nothing is in flight. The
 * direct order is: claim the .log, write the opening sidecar, write data as it comes,
 * and after finish: fsync and close the .log, write the closing sidecar, then end.
 * Done is reported from the handles' close callbacks: after finish, never inside it,
 * with no request left in flight, and only once the data is fsynced. The other routes
 * (the archive cannot write) are archive_spool.c's, with the steps above.
 */
void sb__archive_step(sb__archive_t* ar) {
  sb__broker_t* b = ar->sink.stream->broker;
  uv_loop_t* loop = b->loop;
  if (ar->op != AR_NONE || ar->ending)
    return;
  if (b->stopping && ar->route != AR_DIRECT) {
    ar_step_stopping(ar);
    return;
  }
  switch (ar->route) {
  case AR_BROKEN:
    ar_step_broken(ar);
    return;
  case AR_REOPENING:
    ar_step_reopen(ar);
    return;
  case AR_DRAINING:
    if (ar_step_drain(ar))
      return;
    break; /* caught up: direct again */
  case AR_DIRECT:
    break;
  }
  if (!ar->claimed && !ar->failed) {
    ar_claim(ar);
    return;
  }
  if (ar->json_pending) {
    sb__archive_io_json_open(ar);
    return;
  }
  if (ar->head && !ar->failed) {
    sb__archive_io_data(ar);
    return;
  }
  if (!ar->finishing)
    return;
  if (ar->log_fd >= 0) {
    if (!ar->failed && !ar->synced)
      sb__archive_io_submitted(
          ar, AR_LOG_SYNC,
          uv_fs_fsync(loop, &ar->req, ar->log_fd, sb__archive_io_on_fs));
    else
      sb__archive_io_submitted(
          ar, AR_LOG_CLOSE,
          uv_fs_close(loop, &ar->req, ar->log_fd, sb__archive_io_on_fs));
    return;
  }
  if (ar->claimed && !ar->final_json_done) {
    ar->final_json_done = 1;
    if (!ar->has_closed) {
      ar->closed = sb__time_now();
      ar->has_closed = 1;
    }
    sb__archive_sidecar_start(ar, 1);
    sb__archive_step(ar);
    return;
  }
  sb__archive_end(ar, 0);
}

/*
 * Windows refuses to rename over a file that someone has open (a reader of the
 * sidecar): the rename is tried again, 20 ms apart, for up to a second.
 */
#define AR_RENAME_TRIES 50

static void ar_complete(sb__archive_t* ar, int r) {
  sb__stream_t* s = ar->sink.stream;
  sb__archive_state_t* st = s->broker->archive;
  uv_loop_t* loop = s->broker->loop;
  int op = ar->op;
  ar->op = AR_NONE;
  ar->in_complete = 1;
  switch (op) {
  case AR_LOG_OPEN:
    if (r >= 0) {
      ar->log_fd = (uv_file)r;
      ar->claimed = 1;
      ar->checked = 1;
      st->files += 2;
      if (ar->seg_start > 0 || ar->resumed)
        SB_LOG_I("archive",
                 "stream %llu \"%s\": archived to %s from byte %llu (a new segment)",
                 sb__archive_id(ar), s->props.name, ar->log_path,
                 (unsigned long long)ar->seg_start);
      else
        SB_LOG_I("archive", "stream %llu \"%s\": archived to %s", sb__archive_id(ar),
                 s->props.name, ar->log_path);
      sb__archive_sidecar_start(ar, 0);
    } else if (sb__fs_name_taken(r, ar->log_path) && ar->seq < AR_MAX_SEQ) {
      ar->seq++; /* EEXIST, or a delete-pending name on Windows */
      ar_set_paths(ar);
    } else if (sb__fs_name_taken(r, ar->log_path)) {
      ar_fail(ar, "creating", ar->log_path, SB_EEXIST, "no free sequence number");
    } else {
      ar_break(ar, "creating", ar->log_path, r);
    }
    break;
  case AR_LOG_REOPEN:
    if (r >= 0) {
      ar->log_fd = (uv_file)r;
      ar->checked = 0;
    } else if (r == UV_ENOENT) {
      SB_LOG_W("archive",
               "stream %llu \"%s\": %s is gone; the stream goes on in a new segment",
               sb__archive_id(ar), s->props.name, ar->log_path);
      ar_leave_segment(ar, 1);
    } else {
      ar_break(ar, "opening", ar->log_path, r);
    }
    break;
  case AR_LOG_STAT:
    if (r < 0) {
      ar_break(ar, "reading the size of", ar->log_path, r);
    } else if (ar->stat_size != (uint64_t)ar->offset) {
      SB_LOG_W("archive",
               "stream %llu \"%s\": %s holds %llu bytes, not the %llu written to it; "
               "the stream goes on in a new segment",
               sb__archive_id(ar), s->props.name, ar->log_path,
               (unsigned long long)ar->stat_size, (unsigned long long)ar->offset);
      ar_leave_segment(ar, 0);
    } else {
      ar->checked = 1;
    }
    break;
  case AR_LOG_DELAY:
    break; /* the data went or failed meanwhile */
  case AR_LOG_WRITE:
    if (r < 0)
      ar_break(ar, "writing", ar->log_path, r);
    else if (r == 0)
      ar_break(ar, "writing (nothing written)", ar->log_path, UV_EIO);
    else
      ar_consume(ar, (size_t)r);
    if (r > 0)
      sb__archive_spool_wrote(ar);
    sb__archive_notify(ar);
    break;
  case AR_LOG_FLUSH:
    if (r < 0) {
      ar_break(ar, "flushing (fsync)", ar->log_path, r);
    } else {
      ar->unsynced = 0;
      sb__archive_spool_flushed(ar);
    }
    break;
  case AR_LOG_SYNC:
    ar->synced = 1;
    if (r < 0) {
      ar_fail(ar, "flushing (fsync)", ar->log_path, sb__uv_err(r), uv_strerror(r));
    } else if (!ar->durable_told) {
      /* Every byte read is on disk: the client's connection may close now. */
      ar->durable_told = 1;
      sb__stream_sink_durable(s);
    }
    break;
  case AR_LOG_CLOSE:
    ar->log_fd = -1;
    if (r < 0)
      ar_fail(ar, "closing", ar->log_path, sb__uv_err(r), uv_strerror(r));
    else if (ar->synced && !ar->failed)
      ar->log_done = 1;
    break;
  case AR_BREAK_SYNC:
    ar->pre_sync = 0;
    if (r < 0)
      SB_LOG_W("archive",
               "stream %llu \"%s\": flushing %s after it failed: %s; its bytes before "
               "%llu may not be on disk",
               sb__archive_id(ar), s->props.name, ar->log_path, uv_strerror(r),
               (unsigned long long)sb__archive_written(ar));
    sb__archive_spool_durable(ar);
    break;
  case AR_BREAK_CLOSE:
    ar->log_fd = -1;
    ar->pre_sync = 0;
    ar->checked = 0;
    sb__archive_spool_durable(ar);
    break;
  case AR_JSON_OPEN:
    if (r == UV_EEXIST && !ar->tmp_cleared) {
      /* A leftover of a crash, or a link planted to make the service write elsewhere:
       * removed (a link, not its target), and the .tmp made anew. */
      ar->tmp_cleared = 1;
      SB_LOG_W("archive", "%s was in the way of the sidecar: removed, never followed",
               ar->tmp_path);
      sb__archive_io_submitted(
          ar, AR_JSON_CLEAR,
          uv_fs_unlink(loop, &ar->req, ar->tmp_path, sb__archive_io_on_fs));
      break;
    }
    ar->tmp_cleared = 0;
    if (r < 0) {
      ar_json_failed(ar, "creating", ar->tmp_path, r);
      op = AR_JSON_UNLINK; /* nothing was created that needs removing */
      goto unlinked;
    }
    ar->tmp_fd = (uv_file)r;
    sb__archive_io_json_write(ar);
    break;
  case AR_JSON_CLEAR:
    sb__archive_io_json_open(ar); /* a failed unlink shows as the open's EEXIST */
    break;
  case AR_JSON_WRITE:
    if (r <= 0) {
      ar_json_failed(ar, "writing", ar->tmp_path, r < 0 ? r : UV_EIO);
      sb__archive_io_json_cleanup(ar);
      break;
    }
    ar->json_off += (size_t)r;
    if (ar->json_off < ar->json_len)
      sb__archive_io_json_write(ar);
    else if (ar->json_final)
      sb__archive_io_submitted(
          ar, AR_JSON_SYNC,
          uv_fs_fsync(loop, &ar->req, ar->tmp_fd, sb__archive_io_on_fs));
    else
      sb__archive_io_submitted(
          ar, AR_JSON_CLOSE,
          uv_fs_close(loop, &ar->req, ar->tmp_fd, sb__archive_io_on_fs));
    break;
  case AR_JSON_SYNC:
    if (r < 0)
      ar_json_failed(ar, "flushing (fsync)", ar->tmp_path, r);
    sb__archive_io_submitted(
        ar, AR_JSON_CLOSE,
        uv_fs_close(loop, &ar->req, ar->tmp_fd, sb__archive_io_on_fs));
    break;
  case AR_JSON_CLOSE:
    ar->tmp_fd = -1;
    if (r < 0 && !ar->json_failed)
      ar_json_failed(ar, "closing", ar->tmp_path, r);
    if (ar->json_failed) {
      sb__archive_io_json_cleanup(ar);
      break;
    }
    sb__archive_io_submitted(ar, AR_JSON_RENAME,
                             uv_fs_rename(loop, &ar->req, ar->tmp_path, ar->json_path,
                                          sb__archive_io_on_fs));
    break;
  case AR_JSON_RENAME:
    if ((r == UV_EACCES || r == UV_EPERM || r == UV_EBUSY) &&
        ar->renames_tried < AR_RENAME_TRIES) {
      ar->renames_tried++;
      ar->op = AR_JSON_RENAME;
      if (uv_queue_work(loop, &ar->work, sb__archive_io_rename_work,
                        sb__archive_io_work_done) == 0)
        break;
      ar->op = AR_NONE;
    }
    ar->renames_tried = 0;
    if (r < 0) {
      ar_json_failed(ar, "renaming to", ar->json_path, r);
      sb__archive_io_json_cleanup(ar);
      break;
    }
    ar->json_pending = 0;
    ar->json_failed = 0;
    st->bytes += ar->json_len - ar->json_bytes;
    ar->json_bytes = ar->json_len;
    sb__archive_spool_wrote(ar);
    break;
  case AR_JSON_UNLINK:
  unlinked:
    /* Best effort: the failure is kept. The closing sidecar gets one more try, written
     * over the opening one; else the sidecar waits for a retry. */
    if (ar->json_final && !ar->inplace_tried && ar->json_bytes > 0) {
      ar->inplace_tried = 1;
      sb__archive_sidecar_make(ar, 1); /* again: it may say more now */
      ar->op = AR_JSON_INPLACE;
      if (uv_queue_work(loop, &ar->work, sb__archive_io_inplace_work,
                        sb__archive_io_work_done) == 0)
        break;
      ar->op = AR_NONE;
    }
    ar_json_gave_up(ar);
    break;
  case AR_JSON_INPLACE:
    if (r < 0) {
      SB_LOG_E("archive", "stream %llu \"%s\": writing %s in place: %s",
               sb__archive_id(ar), s->props.name, ar->json_path, uv_strerror(r));
      ar_json_gave_up(ar);
      break;
    }
    SB_LOG_W("archive", "stream %llu \"%s\": closing sidecar written in place, %s",
             sb__archive_id(ar), s->props.name, ar->json_path);
    st->bytes += ar->json_len - ar->json_bytes;
    ar->json_bytes = ar->json_len;
    ar->json_pending = 0;
    ar->json_failed = 0;
    ar->json_err = 0;
    free(ar->json_where);
    ar->json_where = NULL;
    sb__archive_spool_wrote(ar);
    break;
  default:
    break;
  }
  ar->in_complete = 0;
  sb__archive_step(ar);
}

static void ar_write(sb__sink_t* sink, sb__chunk_t* c) {
  sb__archive_t* ar = ar_of(sink);
  sb__stream_t* s = sink->stream;
  c->off = ar->next_off;
  ar->next_off += c->len;
  if (ar->failed || ar->finishing || c->len == 0) {
    sb__chunk_free(c);
    return;
  }
  sb__archive_index_end(
      ar->known, ar->start + (s->props.type == SB_DATAGRAM ? s->datagrams : s->bytes));
  if (ar->route != AR_DIRECT) {
    sb__archive_spool_append(ar, c);
    return;
  }
  c->next = NULL;
  if (ar->tail)
    ar->tail->next = c;
  else
    ar->head = c;
  ar->tail = c;
  sink->queued += c->len;
  if (sink->queued > s->broker->cfg.upstream_high_watermark)
    ar->paused = 1;
  sb__archive_step(ar);
}

static void ar_finish(sb__sink_t* sink) {
  sb__archive_t* ar = ar_of(sink);
  if (ar->finishing)
    return;
  ar->finishing = 1;
  ar->closed = sb__time_now();
  ar->has_closed = 1;
  sb__archive_spool_durable(ar);
  if (!ar->in_complete)
    sb__archive_step(ar);
}

/* The service stops: a stream waiting for a retry ends now (kept in the spool). */
static void ar_stop(sb__sink_t* sink) {
  sb__archive_t* ar = ar_of(sink);
  if (!ar->in_complete)
    sb__archive_step(ar);
}

static void ar_describe(sb__sink_t* sink, void* object) {
  sb__archive_t* ar = ar_of(sink);
  cJSON* o = object;
  if (ar->claimed)
    cJSON_AddStringToObject(o, "archive_file", ar->log_path);
  cJSON_AddNumberToObject(o, "bytes_archived", (double)sb__archive_written(ar));
  sb__archive_spool_describe(ar, o);
}

/* Frees what the sink holds; after done, or on a sink that never started its handles
 * or a request. */
static void ar_destroy(sb__sink_t* sink) {
  sb__archive_t* ar = ar_of(sink);
  sb__archive_drop_queue(ar);
  free(ar->stem);
  free(ar->parent);
  free(ar->log_path);
  free(ar->json_path);
  free(ar->tmp_path);
  free(ar->json);
  free(ar->json_where);
  free(ar->err_text);
  sb__buf_free(&ar->dg_tail);
  free(ar);
}

/* Past this length a path takes the platform's long form (Windows: MAX_PATH is 260,
 * 248 for a directory; the longest suffix is 16 bytes). */
#define AR_SHORT_PATH 230

/* The stream's own offset tag: where its data starts in the stream a broker in front
 * reopened. */
static void ar_read_tag(sb__archive_t* ar) {
  sb__stream_t* s = ar->sink.stream;
  const char* tag = sb__props_get_tag(&s->props, SB__TAG_OFFSET);
  if (sb__archive_index_offset_tag(tag, &ar->start) < 0) {
    SB_LOG_W("archive",
             "stream %llu \"%s\": tag streambroker.offset \"%s\" is not a "
             "number; taken as 0",
             sb__archive_id(ar), s->props.name, tag);
    ar->start = 0;
  }
  ar->known = sb__archive_index_known(s->broker->archive, sb__archive_index_key(s), 0);
}

static const ar_writer_ops_t ar_writer_ops = {ar_complete};

/* A sink with its paths; no handle or request yet. */
static sb__archive_t* ar_new(sb__stream_t* s, const char* archive_dir) {
  sb__archive_t* ar = sb__xcalloc(1, sizeof(*ar));
  char* rel = sb__archive_path(s->props.name);
  sb__archive_index_state(s->broker);
  ar->sink.write = ar_write;
  ar->sink.finish = ar_finish;
  ar->sink.destroy = ar_destroy;
  ar->sink.stop = ar_stop;
  ar->sink.describe = ar_describe;
  ar->sink.stream = s;
  ar->up = &ar_writer_ops;
  ar->log_fd = -1;
  ar->tmp_fd = -1;
  ar->wq_direct = 1;
  ar->trunc_off = UINT64_MAX;
  sb__dgram_init(&ar->wdg, 0);
  ar->stem = sb__archive_path_join(archive_dir, rel, &ar->parent);
  free(rel);
  if (strlen(ar->stem) > AR_SHORT_PATH) {
    char* p = sb__path_long(ar->stem);
    free(ar->stem);
    ar->stem = p;
    p = sb__path_long(ar->parent);
    free(ar->parent);
    ar->parent = p;
  }
  ar_set_paths(ar);
  ar_read_tag(ar);
  return ar;
}

static void ar_start_handles(sb__archive_t* ar) {
  uv_loop_t* loop = ar->sink.stream->broker->loop;
  uv_idle_init(loop, &ar->idle);
  uv_timer_init(loop, &ar->delay);
  uv_timer_init(loop, &ar->backoff);
  ar->idle.data = ar->delay.data = ar->backoff.data = ar;
  ar->open_handles = 3;
}

/*
 * The directories are made here, synchronously: sb__mkdir_p is a few metadata calls
 * on a local disk, usually on directories that exist already. When they cannot be
 * made now (read-only, a file in the way), the stream goes to the spool from its
 * first byte and the archive is tried again later; a path the system refuses outright
 * refuses the stream. Every file operation after that runs on the threadpool.
 */
sb__sink_t* sb__archive_sink_create(sb__stream_t* s, const char* archive_dir) {
  sb__archive_t* ar = ar_new(s, archive_dir);
  int r = sb__mkdir_p(ar->parent);
  if (r == 0)
    r = sb__path_check_links(archive_dir, ar->parent);
  if (r == SB_EINVAL) {
    s->broker->counters.archive_errors++;
    s->broker->counters.archive_streams_failed++;
    SB_LOG_E("archive",
             "stream %llu \"%s\": creating directory %s (%zu bytes) for its files: %s; "
             "the stream is refused",
             (unsigned long long)s->id, s->props.name, ar->parent, strlen(ar->parent),
             sb_strerror(r));
    ar_destroy(&ar->sink);
    return NULL;
  }
  ar_start_handles(ar);
  sb__archive_check_gap(ar, ar->start);
  if (r != 0)
    sb__archive_spool_break(ar, "creating directory", ar->parent, ar_mkdir_why(r));
  else
    sb__archive_step(ar);
  return &ar->sink;
}

/* A stream left in the spool by an earlier run: archived in a new segment from the
 * spool's window once the archive can write. */
sb__sink_t* sb__archive_sink_resume(sb__stream_t* s, const sb__spool_resume_t* r) {
  sb__archive_t* ar = ar_new(s, s->broker->cfg.archive_dir);
  ar_start_handles(ar);
  sb__archive_spool_resume(ar, r);
  return &ar->sink;
}

/*
 * Runs before serving, on the loop thread: new streams must not claim a sequence
 * number or read a name's end while the scan is still learning them, and the scan
 * is metadata plus the sidecars (the .logs are read only to count the datagrams of
 * a datagram stream left open), so it is short next to a service's life.
 */
int sb__archive_open(sb__broker_t* b) {
  sb__archive_state_t* st = sb__archive_index_state(b);
  ar_scan_t sc;
  char* root;
  uint64_t t0 = uv_hrtime();
  memset(&sc, 0, sizeof(sc));
  sc.b = b;
  sc.st = st;
  /* The long form, for the deep paths the sinks may have made on Windows. */
  root = sb__path_long(b->cfg.archive_dir);
  while (strlen(root) > 1 &&
         (root[strlen(root) - 1] == '/' || root[strlen(root) - 1] == '\\'))
    root[strlen(root) - 1] = '\0';
  sc.root = root;
  sb__archive_recovery_scan(&sc, root, 0);
  free(root);
  SB_LOG_I("archive",
           "%s: %llu streams, %llu files, %llu bytes; %llu recovered, %llu empty .log "
           "removed, %llu stale .tmp removed (%llu ms)",
           b->cfg.archive_dir, (unsigned long long)sc.segments,
           (unsigned long long)st->files, (unsigned long long)st->bytes,
           (unsigned long long)b->counters.archive_recovered,
           (unsigned long long)b->counters.archive_empty_removed,
           (unsigned long long)b->counters.archive_tmp_removed,
           (unsigned long long)((uv_hrtime() - t0) / 1000000));
  if (st->nclosed > 1)
    qsort(st->closed, st->nclosed, sizeof(*st->closed), sb__archive_index_closed_cmp);
  st->broker = b;
  if (b->cfg.archive_max_age > 0)
    sb__archive_retention_start(b, st);
  sb__archive_retention_check(b);
  return 0;
}

static void on_timer_closed(uv_handle_t* h) {
  sb__archive_state_t* st = h->data;
  st->timer_started = 0;
  if (!st->busy)
    sb__archive_index_free(st);
}

/* The state goes once its timer is closed and no deletion is under way (both end on
 * the loop, which the caller runs after). */
void sb__archive_close(sb__broker_t* b) {
  sb__archive_state_t* st = b->archive;
  /* Streams that outlived the stop timeout still use it: the process is exiting, so
   * it stays. */
  if (st == NULL || b->streams != NULL)
    return;
  b->archive = NULL;
  st->closing = 1;
  if (st->timer_started)
    uv_close((uv_handle_t*)&st->timer, on_timer_closed);
  else if (!st->busy)
    sb__archive_index_free(st);
}

/* A reload may set archive_max_age where there was none: the timer starts then (it
 * stays once started; a check with no limit does nothing). */
void sb__archive_reconfigure(sb__broker_t* b) {
  sb__archive_state_t* st = b->archive;
  if (st == NULL || st->closing)
    return;
  if (b->cfg.archive_max_age > 0 && !st->timer_started)
    sb__archive_retention_start(b, st);
  sb__archive_retention_check(b);
}

void sb__archive_describe(sb__broker_t* b, void* obj) {
  sb__archive_state_t* st = b->archive;
  cJSON* a;
  if (st == NULL)
    return;
  a = cJSON_AddObjectToObject(obj, "archive");
  if (a == NULL)
    return;
  cJSON_AddStringToObject(a, "dir", b->cfg.archive_dir);
  cJSON_AddNumberToObject(a, "bytes", (double)st->bytes);
  cJSON_AddNumberToObject(a, "files", (double)st->files);
  cJSON_AddNumberToObject(a, "closed_streams", (double)(st->nclosed - st->head));
  cJSON_AddNumberToObject(a, "max_bytes", (double)b->cfg.archive_max_bytes);
  cJSON_AddNumberToObject(a, "max_age_s", (double)b->cfg.archive_max_age);
  cJSON_AddNumberToObject(a, "retention_deleted_streams", (double)st->removed_streams);
  cJSON_AddNumberToObject(a, "retention_deleted_files",
                          (double)b->counters.archive_retention_files);
  cJSON_AddNumberToObject(a, "retention_deleted_bytes",
                          (double)b->counters.archive_retention_bytes);
  sb__archive_spool_status(b, a);
}
