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
      sb__archive_set_paths(ar);
    } else if (sb__fs_name_taken(r, ar->log_path)) {
      sb__archive_fail(ar, "creating", ar->log_path, SB_EEXIST,
                       "no free sequence number");
    } else {
      sb__archive_break(ar, "creating", ar->log_path, r);
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
      sb__archive_leave_segment(ar, 1);
    } else {
      sb__archive_break(ar, "opening", ar->log_path, r);
    }
    break;
  case AR_LOG_STAT:
    if (r < 0) {
      sb__archive_break(ar, "reading the size of", ar->log_path, r);
    } else if (ar->stat_size != (uint64_t)ar->offset) {
      SB_LOG_W("archive",
               "stream %llu \"%s\": %s holds %llu bytes, not the %llu written to it; "
               "the stream goes on in a new segment",
               sb__archive_id(ar), s->props.name, ar->log_path,
               (unsigned long long)ar->stat_size, (unsigned long long)ar->offset);
      sb__archive_leave_segment(ar, 0);
    } else {
      ar->checked = 1;
    }
    break;
  case AR_LOG_DELAY:
    break; /* the data went or failed meanwhile */
  case AR_LOG_WRITE:
    if (r < 0)
      sb__archive_break(ar, "writing", ar->log_path, r);
    else if (r == 0)
      sb__archive_break(ar, "writing (nothing written)", ar->log_path, UV_EIO);
    else
      sb__archive_consume(ar, (size_t)r);
    if (r > 0)
      sb__archive_spool_wrote(ar);
    sb__archive_notify(ar);
    break;
  case AR_LOG_FLUSH:
    if (r < 0) {
      sb__archive_break(ar, "flushing (fsync)", ar->log_path, r);
    } else {
      ar->unsynced = 0;
      sb__archive_spool_flushed(ar);
    }
    break;
  case AR_LOG_SYNC:
    ar->synced = 1;
    if (r < 0) {
      sb__archive_fail(ar, "flushing (fsync)", ar->log_path, sb__uv_err(r),
                       uv_strerror(r));
    } else if (!ar->durable_told) {
      /* Every byte read is on disk: the client's connection may close now. */
      ar->durable_told = 1;
      sb__stream_sink_durable(s);
    }
    break;
  case AR_LOG_CLOSE:
    ar->log_fd = -1;
    if (r < 0)
      sb__archive_fail(ar, "closing", ar->log_path, sb__uv_err(r), uv_strerror(r));
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
      sb__archive_json_failed(ar, "creating", ar->tmp_path, r);
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
      sb__archive_json_failed(ar, "writing", ar->tmp_path, r < 0 ? r : UV_EIO);
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
      sb__archive_json_failed(ar, "flushing (fsync)", ar->tmp_path, r);
    sb__archive_io_submitted(
        ar, AR_JSON_CLOSE,
        uv_fs_close(loop, &ar->req, ar->tmp_fd, sb__archive_io_on_fs));
    break;
  case AR_JSON_CLOSE:
    ar->tmp_fd = -1;
    if (r < 0 && !ar->json_failed)
      sb__archive_json_failed(ar, "closing", ar->tmp_path, r);
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
      sb__archive_json_failed(ar, "renaming to", ar->json_path, r);
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
    sb__archive_json_gave_up(ar);
    break;
  case AR_JSON_INPLACE:
    if (r < 0) {
      SB_LOG_E("archive", "stream %llu \"%s\": writing %s in place: %s",
               sb__archive_id(ar), s->props.name, ar->json_path, uv_strerror(r));
      sb__archive_json_gave_up(ar);
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
  sb__archive_set_paths(ar);
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
    sb__archive_spool_break(ar, "creating directory", ar->parent,
                            sb__archive_mkdir_why(r));
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
