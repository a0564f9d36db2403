/*
 * archive_writer.c - the writer of one archive stream: its write queue, its segments
 * (claimed by sequence number, left for a new one), its failures (retried through the
 * spool, or final), its end, and the choice of its next file request (sb__archive_step)
 * on each route.
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "archive_int.h"

void sb__archive_notify(sb__archive_t* ar) {
  uint64_t wm = ar->sink.stream->broker->cfg.upstream_high_watermark;
  if (ar->paused && (ar->failed || ar->sink.queued <= wm / 2)) {
    ar->paused = 0;
    sb__sink_drained(&ar->sink);
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
      sb__archive_drain_released(ar, left);
    sb__chunk_free(c);
  }
  ar->tail = NULL;
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
void sb__archive_fail(sb__archive_t* ar, const char* what, const char* path, int err,
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
      sb__sink_cut(&ar->sink); /* finish comes back here; ar_complete steps after */
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
void sb__archive_break(sb__archive_t* ar, const char* what, const char* path, int r) {
  if (ar->failed || !ar_retryable(r)) {
    sb__archive_fail(ar, what, path, sb__uv_err(r), uv_strerror(r));
    return;
  }
  sb__archive_spool_break(ar, what, path, uv_strerror(r));
}

/* sb__mkdir_p's errors, said as a person would look for them. */
const char* sb__archive_mkdir_why(int err) {
  return err == SB_EEXIST ? "not a directory (a file is in its place)"
                          : sb_strerror(err);
}

void sb__archive_set_paths(sb__archive_t* ar) {
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
void sb__archive_consume(sb__archive_t* ar, size_t n) {
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
    sb__archive_drain_released(ar, n);
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
    sb__sink_done(&ar->sink, ar->sink.stream->kept ? 0 : ar->err);
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
  uv_close((uv_handle_t*)&ar->backoff, on_handle_closed);
  sb__archive_retention_check(s->broker);
}

/* A sidecar request failed: the first failure is kept for when the sidecar is given
 * up (sb__archive_json_gave_up), after its .tmp is cleaned up. */
void sb__archive_json_failed(sb__archive_t* ar, const char* what, const char* path,
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
void sb__archive_json_gave_up(sb__archive_t* ar) {
  int r = ar->json_err < 0 ? ar->json_err : UV_EIO;
  const char* what = ar->json_what ? ar->json_what : "writing";
  char* where = ar->json_where ? ar->json_where : sb__xstrdup(ar->tmp_path);
  ar->json_err = 0;
  ar->json_what = NULL;
  ar->json_where = NULL;
  if (ar->failed || !ar_retryable(r)) {
    ar->json_pending = 0;
    sb__archive_fail(ar, what, where, sb__uv_err(r), uv_strerror(r));
  } else {
    sb__archive_break(ar, what, where, r);
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
void sb__archive_leave_segment(sb__archive_t* ar, int gone) {
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
  sb__archive_set_paths(ar);
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
      sb__archive_fail(ar, "creating directory", ar->parent, r,
                       sb__archive_mkdir_why(r));
    else
      sb__archive_spool_break(ar, "creating directory", ar->parent,
                              sb__archive_mkdir_why(r));
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
        sb__archive_drain_window(ar);
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
                           sb__archive_drain_caught_up(ar) || ar->finishing)) {
    sb__archive_io_submitted(
        ar, AR_LOG_FLUSH,
        uv_fs_fsync(loop, &ar->req, ar->log_fd, sb__archive_io_on_fs));
    return 1;
  }
  if (ar->hole) {
    /* Everything before the hole is in this segment: the rest goes in a new one. */
    sb__archive_leave_segment(ar, 0);
    ar->route = AR_REOPENING;
    sb__archive_step(ar);
    return 1;
  }
  return sb__archive_drain_next(ar);
}

/*
 * The service stops while the stream's data waits in the spool: what the .log took is
 * flushed and closed, and once every append is committed the sink is done, kept for
 * the next start. One that has caught up ends as a direct stream does.
 */
static void ar_step_stopping(sb__archive_t* ar) {
  if (ar->route == AR_DRAINING && ar->head == NULL && !ar->hole &&
      sb__archive_drain_caught_up(ar)) {
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
