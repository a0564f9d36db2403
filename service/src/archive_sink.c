/*
 * archive_sink.c - the archive sink of one stream: the sink contract (write, finish,
 * stop, describe, destroy), the sink made for a new stream or one resumed from the
 * spool, and what each finished file request means (ar_complete, which the requests
 * of archive_io.c report to), after which the writer steps.
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "archive_int.h"
#include "tags.h"

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
      sb__archive_drain_flushed(ar);
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
      sb__sink_durable(&ar->sink);
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

static const ar_writer_ops_t ar_writer_ops = {ar_complete,
                                              sb__archive_step,
                                              sb__archive_notify,
                                              sb__archive_drop_queue,
                                              sb__archive_maybe_done,
                                              sb__archive_end};

/* A sink with its paths; no handle or request yet. */
static sb__archive_t* ar_new(sb__stream_t* s, const char* archive_dir,
                             const sb__sink_events_t* events) {
  sb__archive_t* ar = sb__xcalloc(1, sizeof(*ar));
  char* rel = sb__archive_path(s->props.name);
  sb__archive_index_state(s->broker);
  ar->sink.write = ar_write;
  ar->sink.finish = ar_finish;
  ar->sink.destroy = ar_destroy;
  ar->sink.stop = ar_stop;
  ar->sink.describe = ar_describe;
  ar->sink.stream = s;
  ar->sink.events = events;
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
  uv_timer_init(loop, &ar->backoff);
  ar->idle.data = ar->backoff.data = ar;
  ar->open_handles = 2;
}

/*
 * The directories are made here, synchronously: sb__mkdir_p is a few metadata calls
 * on a local disk, usually on directories that exist already. When they cannot be
 * made now (read-only, a file in the way), the stream goes to the spool from its
 * first byte and the archive is tried again later; a path the system refuses outright
 * refuses the stream. Every file operation after that runs on the threadpool.
 */
sb__sink_t* sb__archive_sink_create(sb__stream_t* s, const sb__sink_events_t* events) {
  const char* archive_dir = s->broker->cfg.archive_dir;
  sb__archive_t* ar = ar_new(s, archive_dir, events);
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
sb__sink_t* sb__archive_sink_resume(sb__stream_t* s, const sb__spool_resume_t* r,
                                    const sb__sink_events_t* events) {
  sb__archive_t* ar = ar_new(s, s->broker->cfg.archive_dir, events);
  ar_start_handles(ar);
  sb__archive_spool_resume(ar, r);
  return &ar->sink;
}
