/*
 * archive_retention.c - retention: the oldest closed segments are deleted while the
 * archive is over archive_max_bytes or they are older than archive_max_age, a batch at
 * a time on the threadpool; the age is checked on a timer.
 */
#include <stdlib.h>
#include <string.h>

#include "archive_int.h"

#define AR_RETENTION_PERIOD_MS 60000
/* Deletions per batch: a batch is one threadpool job, and the state is updated
 * between batches. */
#define AR_RETENTION_BATCH 256

static int64_t ar_now_sec(void) {
  return sb__time_now().sec;
}

/* Threadpool: deletes each victim's .log and .json (a missing one is no error). */
static void retention_work(uv_work_t* w) {
  sb__archive_state_t* st = SB_CONTAINER_OF(w, sb__archive_state_t, work);
  static const char* const exts[] = {".log", ".json"};
  size_t i, e;
  for (i = 0; i < st->nvictims; i++) {
    int files = 0, err = 0;
    uint64_t bytes = 0;
    for (e = 0; e < 2; e++) {
      char* path = sb__archive_path_with(st->victims[i].stem, 0, exts[e]);
      uv_fs_t req;
      int r;
      uint64_t size = 0;
      if (uv_fs_stat(NULL, &req, path, NULL) == 0)
        size = req.statbuf.st_size;
      uv_fs_req_cleanup(&req);
      r = uv_fs_unlink(NULL, &req, path, NULL);
      uv_fs_req_cleanup(&req);
      if (r == 0) {
        files++;
        bytes += size;
      } else if (r != UV_ENOENT && err == 0) {
        err = r;
      }
      free(path);
    }
    st->results[i] = err < 0 ? err : files;
    st->deleted[i] = bytes;
  }
}

static void retention_done(uv_work_t* w, int status) {
  sb__archive_state_t* st = SB_CONTAINER_OF(w, sb__archive_state_t, work);
  sb__broker_t* b = st->broker;
  uint64_t files = 0, bytes = 0;
  size_t i, streams = 0;
  (void)status;
  for (i = 0; i < st->nvictims; i++) {
    if (st->results[i] < 0) {
      b->counters.archive_errors++;
      SB_LOG_E("archive", "retention: deleting %s.log/.json: %s", st->victims[i].stem,
               uv_strerror(st->results[i]));
    } else {
      streams++;
      files += (uint64_t)st->results[i];
      bytes += st->deleted[i];
      SB_LOG_D("archive", "retention: deleted %s (%llu bytes)", st->victims[i].stem,
               (unsigned long long)st->deleted[i]);
    }
    free(st->victims[i].stem);
  }
  b->counters.archive_retention_files += files;
  b->counters.archive_retention_bytes += bytes;
  st->removed_streams += streams;
  if (streams > 0)
    SB_LOG_I("archive",
             "retention: deleted the %llu oldest closed streams (%llu files, %llu "
             "bytes); the archive holds %llu bytes in %llu files",
             (unsigned long long)streams, (unsigned long long)files,
             (unsigned long long)bytes, (unsigned long long)st->bytes,
             (unsigned long long)st->files);
  free(st->victims);
  free(st->results);
  free(st->deleted);
  st->victims = NULL;
  st->nvictims = 0;
  st->busy = 0;
  if (st->closing) {
    sb__archive_index_free(st);
    return;
  }
  if (st->again) {
    st->again = 0;
    sb__archive_retention_check(b);
  }
}

/*
 * Picks the oldest closed streams while the archive is over archive_max_bytes or
 * they are older than archive_max_age, and deletes them on the threadpool. The size
 * is what the archive knows (scanned at start, added to as streams write), so a check
 * is a comparison. Open streams are not in the list, so never deleted. Their sizes
 * leave the totals now, so that the next check does not pick them again.
 */
void sb__archive_retention_check(sb__broker_t* b) {
  sb__archive_state_t* st = b->archive;
  uint64_t max_bytes = b->cfg.archive_max_bytes, max_age = b->cfg.archive_max_age;
  int64_t now = ar_now_sec();
  size_t cap = 0;
  if (st == NULL || st->closing || (max_bytes == 0 && max_age == 0))
    return;
  if (st->busy) {
    st->again = 1;
    return;
  }
  while (st->head < st->nclosed && st->nvictims < AR_RETENTION_BATCH) {
    ar_closed_t* e = &st->closed[st->head];
    int over = max_bytes > 0 && st->bytes > max_bytes;
    int old = max_age > 0 && now - e->time > (int64_t)max_age;
    if (!over && !old)
      break;
    if (st->nvictims == cap) {
      cap = cap ? 2 * cap : 16;
      st->victims = sb__xrealloc(st->victims, cap * sizeof(*st->victims));
    }
    st->victims[st->nvictims++] = *e;
    st->bytes -= e->bytes < st->bytes ? e->bytes : st->bytes;
    st->files -= e->files < st->files ? e->files : st->files;
    st->head++;
  }
  if (st->nvictims == 0)
    return;
  if (st->head < st->nclosed && st->nvictims == AR_RETENTION_BATCH)
    st->again = 1;
  st->results = sb__xcalloc(st->nvictims, sizeof(*st->results));
  st->deleted = sb__xcalloc(st->nvictims, sizeof(*st->deleted));
  st->busy = 1;
  if (uv_queue_work(b->loop, &st->work, retention_work, retention_done) != 0) {
    retention_work(&st->work); /* cannot happen with a valid loop; stay correct */
    retention_done(&st->work, 0);
  }
}

static void on_retention_timer(uv_timer_t* t) {
  sb__archive_state_t* st = t->data;
  sb__archive_retention_check(st->broker);
}

/* Retention every AR_RETENTION_PERIOD_MS, once there is an age limit; the timer does
 * not keep the loop alive. */
void sb__archive_retention_start(sb__broker_t* b, sb__archive_state_t* st) {
  uv_timer_init(b->loop, &st->timer);
  st->timer.data = st;
  uv_timer_start(&st->timer, on_retention_timer, AR_RETENTION_PERIOD_MS,
                 AR_RETENTION_PERIOD_MS);
  uv_unref((uv_handle_t*)&st->timer);
  st->timer_started = 1;
}
