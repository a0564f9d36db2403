/*
 * archive_io.c - a sink's file requests: each submitted on the threadpool (libuv's file
 * requests, or work for the opens, the rename retries and the sidecar written in
 * place), one in flight at a time; what each result means is the writer's, told
 * through ar->up->complete.
 */
#include <stdlib.h>
#include <string.h>

#include "archive_int.h"

void sb__archive_io_on_fs(uv_fs_t* req) {
  sb__archive_t* ar = SB_CONTAINER_OF(req, sb__archive_t, req);
  int result = (int)req->result;
  if (ar->op == AR_LOG_STAT && result >= 0)
    ar->stat_size = req->statbuf.st_size;
  uv_fs_req_cleanup(req);
  ar->up->complete(ar, result);
}

static void on_idle(uv_idle_t* idle) {
  sb__archive_t* ar = SB_CONTAINER_OF(idle, sb__archive_t, idle);
  uv_idle_stop(idle);
  ar->up->complete(ar, ar->deferred);
}

/* A request that could not even be submitted (UV_ENOMEM, say) completes on the next
 * loop turn with that error, so its handling is the same as any failure and never
 * runs inside the caller's write or finish. */
void sb__archive_io_submitted(sb__archive_t* ar, int op, int r) {
  ar->op = op;
  if (r < 0) {
    uv_fs_req_cleanup(&ar->req);
    ar->deferred = r;
    uv_idle_start(&ar->idle, on_idle);
  }
}

/*
 * The stream's files are opened on the threadpool through sb__file_open: relative to
 * their directory's descriptor, never through a link, a regular file of the service's
 * own, with the mode of its files (0600, 0640 with reader_group) whatever the umask.
 */
static void open_work(uv_work_t* w) {
  sb__archive_t* ar = SB_CONTAINER_OF(w, sb__archive_t, work);
  ar->work_result = sb__file_open(ar->open_path, ar->open_flags);
}

static void open_done(uv_work_t* w, int status) {
  sb__archive_t* ar = SB_CONTAINER_OF(w, sb__archive_t, work);
  ar->up->complete(ar, status < 0 ? status : ar->work_result);
}

void sb__archive_io_open(sb__archive_t* ar, int op, const char* path, int flags) {
  ar->open_path = path;
  ar->open_flags = flags;
  sb__archive_io_submitted(
      ar, op,
      uv_queue_work(ar->sink.stream->broker->loop, &ar->work, open_work, open_done));
}

void sb__archive_io_json_open(sb__archive_t* ar) {
  /* A sidecar that failed before is made again: it may say more now. */
  if (ar->json_failed)
    sb__archive_sidecar_start(ar, ar->json_final);
  /* Made exclusively: a .tmp planted beside the sidecar must not send the service's
   * write elsewhere. */
  sb__archive_io_open(ar, AR_JSON_OPEN, ar->tmp_path,
                      UV_FS_O_WRONLY | UV_FS_O_CREAT | UV_FS_O_EXCL);
}

void sb__archive_io_json_write(sb__archive_t* ar) {
  uv_buf_t buf =
      uv_buf_init(ar->json + ar->json_off, (unsigned)(ar->json_len - ar->json_off));
  sb__archive_io_submitted(ar, AR_JSON_WRITE,
                           uv_fs_write(ar->sink.stream->broker->loop, &ar->req,
                                       ar->tmp_fd, &buf, 1, (int64_t)ar->json_off,
                                       sb__archive_io_on_fs));
}

/* Up to AR_MAX_BUFS chunks and AR_MAX_BATCH bytes per request, at the file's end. */
void sb__archive_io_data(sb__archive_t* ar) {
  uv_buf_t bufs[AR_MAX_BUFS];
  unsigned n = 0;
  size_t total = 0, off = ar->head_off;
  sb__chunk_t* c;
  for (c = ar->head; c != NULL && n < AR_MAX_BUFS && total < AR_MAX_BATCH;
       c = c->next) {
    size_t len = c->len - off;
    if (len > AR_MAX_BATCH - total)
      len = AR_MAX_BATCH - total;
    bufs[n++] = uv_buf_init(c->data + off, (unsigned)len);
    total += len;
    off = 0;
  }
  sb__archive_io_submitted(ar, AR_LOG_WRITE,
                           uv_fs_write(ar->sink.stream->broker->loop, &ar->req,
                                       ar->log_fd, bufs, n, ar->offset,
                                       sb__archive_io_on_fs));
}

/* The sidecar step that follows a failure: close the .tmp if open, else remove it. */
void sb__archive_io_json_cleanup(sb__archive_t* ar) {
  uv_loop_t* loop = ar->sink.stream->broker->loop;
  ar->json_failed = 1;
  if (ar->tmp_fd >= 0)
    sb__archive_io_submitted(
        ar, AR_JSON_CLOSE,
        uv_fs_close(loop, &ar->req, ar->tmp_fd, sb__archive_io_on_fs));
  else
    sb__archive_io_submitted(
        ar, AR_JSON_UNLINK,
        uv_fs_unlink(loop, &ar->req, ar->tmp_path, sb__archive_io_on_fs));
}

/* The .log that failed is flushed (what it took is kept), then closed, one step at a
 * time; 1 while a step was submitted, 0 once it is closed. */
int sb__archive_io_close_failed_log(sb__archive_t* ar) {
  uv_loop_t* loop = ar->sink.stream->broker->loop;
  if (ar->log_fd < 0)
    return 0;
  if (ar->pre_sync == 1) {
    ar->pre_sync = 2;
    sb__archive_io_submitted(
        ar, AR_BREAK_SYNC,
        uv_fs_fsync(loop, &ar->req, ar->log_fd, sb__archive_io_on_fs));
  } else {
    sb__archive_io_submitted(
        ar, AR_BREAK_CLOSE,
        uv_fs_close(loop, &ar->req, ar->log_fd, sb__archive_io_on_fs));
  }
  return 1;
}

void sb__archive_io_rename_work(uv_work_t* w) {
  sb__archive_t* ar = SB_CONTAINER_OF(w, sb__archive_t, work);
  uv_fs_t req;
  uv_sleep(20);
  ar->work_result = uv_fs_rename(NULL, &req, ar->tmp_path, ar->json_path, NULL);
  uv_fs_req_cleanup(&req);
}

void sb__archive_io_work_done(uv_work_t* w, int status) {
  sb__archive_t* ar = SB_CONTAINER_OF(w, sb__archive_t, work);
  ar->up->complete(ar, status < 0 ? status : ar->work_result);
}

/*
 * When the closing sidecar cannot be written beside the old one (a full disk has no
 * block for the .tmp), it is written over the opening one, whose block is already
 * there: not atomic, but a half-written sidecar is what the scan at start repairs,
 * and a sidecar that says the archive failed is worth more than none. Threadpool.
 */
void sb__archive_io_inplace_work(uv_work_t* w) {
  sb__archive_t* ar = SB_CONTAINER_OF(w, sb__archive_t, work);
  uv_fs_t req;
  uv_buf_t buf = uv_buf_init(ar->json, (unsigned)ar->json_len);
  int fd, r;
  fd =
      uv_fs_open(NULL, &req, ar->json_path, UV_FS_O_WRONLY | UV_FS_O_NOFOLLOW, 0, NULL);
  uv_fs_req_cleanup(&req);
  if (fd < 0) {
    ar->work_result = fd;
    return;
  }
  r = uv_fs_write(NULL, &req, fd, &buf, 1, 0, NULL);
  uv_fs_req_cleanup(&req);
  if (r >= 0 && (size_t)r != ar->json_len)
    r = UV_ENOSPC;
  if (r >= 0) {
    r = uv_fs_ftruncate(NULL, &req, fd, (int64_t)ar->json_len, NULL);
    uv_fs_req_cleanup(&req);
  }
  if (r >= 0) {
    r = uv_fs_fsync(NULL, &req, fd, NULL);
    uv_fs_req_cleanup(&req);
  }
  uv_fs_close(NULL, &req, fd, NULL);
  uv_fs_req_cleanup(&req);
  ar->work_result = r < 0 ? r : 0;
}
