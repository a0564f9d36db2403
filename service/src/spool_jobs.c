/*
 * spool_jobs.c - the spool's job queue and its worker thread: the loop submits jobs,
 * the worker runs every job queued so far in one transaction (group commit) and hands
 * them back to the loop, in order, through a uv_async_t. Also the writes, reads and
 * the size cap that the jobs do. Below spool.c (which starts and stops the worker),
 * above spool_reserve.c.
 */
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "spool_int.h"

#define SB__BATCH_JOBS 1024
#define SB__BATCH_BYTES (8u * 1024u * 1024u)

static int is_full(int rc) {
  rc &= 0xff;
  return rc == SQLITE_FULL || rc == SQLITE_IOERR || rc == SQLITE_CANTOPEN;
}

static int step_done(sqlite3_stmt* st) {
  int r = sqlite3_step(st);
  sqlite3_reset(st);
  return r == SQLITE_DONE || r == SQLITE_ROW ? SQLITE_OK : r;
}

/* Runs a DELETE ... RETURNING length(data); adds the bytes and rows to the totals. */
static int delete_returning(sb__spool_t* sp, sqlite3_stmt* st, uint64_t* bytes) {
  int r;
  while ((r = sqlite3_step(st)) == SQLITE_ROW) {
    uint64_t len = (uint64_t)sqlite3_column_int64(st, 0);
    *bytes += len;
    sp->bytes -= len;
    sp->chunks--;
  }
  sqlite3_reset(st);
  return r == SQLITE_DONE ? SQLITE_OK : r;
}

/*
 * Makes room for need bytes under the cap: first whole chunks already written upstream
 * (replay windows), oldest first; then, with drop-oldest, the oldest chunks of all.
 * Returns 1 when there is room.
 */
static int make_room(sb__spool_t* sp, uint64_t need, int* rc) {
  int pass;
  if (need > 0 && sp->tight) {
    /* Room the file has: its free pages, less some for the index and table pages the
     * insert may add. */
    uint64_t free_bytes = 0;
    if (sqlite3_step(sp->st[ST_FREELIST]) == SQLITE_ROW)
      free_bytes = (uint64_t)sqlite3_column_int64(sp->st[ST_FREELIST], 0) * 16384u;
    sqlite3_reset(sp->st[ST_FREELIST]);
    if (need + need / 8 + 65536 > free_bytes)
      return 0;
  }
  for (pass = 0; pass < 2 && sp->bytes + need > sp->cap; pass++) {
    sqlite3_stmt* sel = sp->st[pass == 0 ? ST_OLDEST_ACKED : ST_OLDEST_UNSENT];
    if (pass == 1 && sp->policy != SB__FULL_DROP_OLDEST)
      break;
    if (pass == 0 && sp->no_windows)
      continue;
    while (sp->bytes + need > sp->cap) {
      int64_t ids[64], lens[64];
      int n = 0, i, r;
      while (n < 64 && (r = sqlite3_step(sel)) == SQLITE_ROW) {
        ids[n] = sqlite3_column_int64(sel, 0);
        lens[n] = sqlite3_column_int64(sel, 1);
        n++;
      }
      sqlite3_reset(sel);
      if (n == 0) {
        if (pass == 0)
          sp->no_windows = 1;
        break;
      }
      for (i = 0; i < n && sp->bytes + need > sp->cap; i++) {
        sqlite3_bind_int64(sp->st[ST_DELETE_ID], 1, ids[i]);
        if ((r = step_done(sp->st[ST_DELETE_ID])) != SQLITE_OK) {
          *rc = r;
          return 0;
        }
        sp->bytes -= (uint64_t)lens[i];
        sp->chunks--;
        if (pass == 1)
          sp->stats.dropped_bytes += (uint64_t)lens[i];
      }
    }
  }
  return sp->bytes + need <= sp->cap;
}

/* Runs one write job inside the transaction. Returns an SQLite code; job->status
 * says what became of the job itself. */
static int run_write(sb__spool_t* sp, sb__spool_job_t* j, int64_t now) {
  sqlite3_stmt* st;
  int r = SQLITE_OK;
  switch (j->op) {
  case SB__SPOOL_OPEN: {
    sb__props_t props;
    st = sp->st[ST_OPEN];
    memset(&props, 0, sizeof(props));
    sb__props_decode_json(j->props, strlen(j->props), &props);
    sqlite3_bind_int64(st, 1, j->sid);
    sqlite3_bind_text(st, 2, props.name ? props.name : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 3, j->type);
    sqlite3_bind_text(st, 4, j->props, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, now);
    sb__props_free(&props);
    r = step_done(st);
    break;
  }
  case SB__SPOOL_APPEND: {
    sb__chunk_t* c = j->chunk;
    if (!make_room(sp, c->len, &r)) {
      if (r == SQLITE_OK)
        j->status = SB_ENOSPC;
      break;
    }
    st = sp->st[ST_APPEND];
    sqlite3_bind_int64(st, 1, j->sid);
    sqlite3_bind_int64(st, 2, (int64_t)j->seq);
    sqlite3_bind_int64(st, 3, (int64_t)c->off);
    sqlite3_bind_int64(st, 4, (int64_t)(c->off + c->len));
    sqlite3_bind_int64(st, 5, c->mark);
    sqlite3_bind_int64(st, 6, now);
    sqlite3_bind_blob(st, 7, c->data, (int)c->len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, (int64_t)sb__crc32c(0, c->data, c->len));
    r = step_done(st);
    sqlite3_clear_bindings(st);
    if (r == SQLITE_OK) {
      sp->bytes += c->len;
      sp->chunks++;
    }
    break;
  }
  case SB__SPOOL_ACK: {
    uint64_t trim = j->trim;
    st = sp->st[ST_ACK];
    sqlite3_bind_int64(st, 1, j->sid);
    sqlite3_bind_int64(st, 2, (int64_t)j->off);
    if ((r = step_done(st)) != SQLITE_OK)
      break;
    sp->no_windows = 0;
    if (trim > 0 && !j->exact) {
      /* Keep the last resend point at or before trim, and all after it. */
      st = sp->st[ST_TRIM_DGRAM];
      sqlite3_bind_int64(st, 1, j->sid);
      sqlite3_bind_int64(st, 2, (int64_t)trim);
      if (sqlite3_step(st) == SQLITE_ROW)
        trim = (uint64_t)sqlite3_column_int64(st, 0);
      else
        trim = 0;
      sqlite3_reset(st);
    }
    if (trim == 0)
      break;
    st = sp->st[ST_TRIM];
    sqlite3_bind_int64(st, 1, j->sid);
    sqlite3_bind_int64(st, 2, (int64_t)trim);
    r = delete_returning(sp, st, &j->freed);
    break;
  }
  case SB__SPOOL_FORGET:
    st = sp->st[ST_FORGET_CHUNKS];
    sqlite3_bind_int64(st, 1, j->sid);
    if ((r = delete_returning(sp, st, &j->freed)) != SQLITE_OK)
      break;
    st = sp->st[ST_FORGET_STREAM];
    sqlite3_bind_int64(st, 1, j->sid);
    r = step_done(st);
    break;
  case SB__SPOOL_NAME: {
    /* props: the names, one a line. */
    const char* p = j->props;
    if (sp->upstream == NULL)
      break;
    st = sp->st[ST_NAME];
    while (r == SQLITE_OK && *p != '\0') {
      const char* nl = strchr(p, '\n');
      size_t len = nl ? (size_t)(nl - p) : strlen(p);
      sqlite3_bind_text(st, 1, sp->upstream, -1, SQLITE_STATIC);
      sqlite3_bind_text(st, 2, p, (int)len, SQLITE_STATIC);
      sqlite3_bind_int64(st, 3, now);
      r = step_done(st);
      sqlite3_clear_bindings(st);
      p += len + (nl != NULL);
    }
    break;
  }
  case SB__SPOOL_READ:
    break;
  }
  return r;
}

/*
 * Reads a stream's chunks. A chunk whose checksum fails is never handed out: it is
 * deleted, logged and counted, and the reader sees a hole there (the upstream sink
 * reopens the stream past it, tagged streambroker.dropped). A window read starts at
 * a resend point, so chunks before the first good one with mark >= 0 are left out.
 * A read that fails (a damaged page) returns what it had and SB_EIO.
 */
static void run_read(sb__spool_t* sp, sb__spool_job_t* j) {
  sqlite3_stmt* st = sp->st[j->window ? ST_READ_WINDOW : ST_READ];
  sb__chunk_t **tail = &j->chunk, *c;
  uint64_t got = 0;
  int64_t bad[64];
  int nbad = 0, i, r = SQLITE_DONE;
  sqlite3_bind_int64(st, 1, j->sid);
  if (!j->window)
    sqlite3_bind_int64(st, 2, (int64_t)j->off);
  while (got < j->limit && (r = sqlite3_step(st)) == SQLITE_ROW) {
    const void* data = sqlite3_column_blob(st, 2);
    size_t len = (size_t)sqlite3_column_bytes(st, 2);
    uint64_t off = (uint64_t)sqlite3_column_int64(st, 0);
    int64_t mark = sqlite3_column_int64(st, 1);
    if (sqlite3_column_type(st, 3) != SQLITE_NULL &&
        (uint32_t)sqlite3_column_int64(st, 3) != sb__crc32c(0, data, len)) {
      SB_LOG_E("spool",
               "stream row %lld: the chunk of bytes %llu to %llu fails its checksum "
               "(the spool file was damaged); it is deleted, not forwarded",
               (long long)j->sid, (unsigned long long)off,
               (unsigned long long)(off + len));
      j->corrupt += len;
      if (nbad < 64)
        bad[nbad++] = sqlite3_column_int64(st, 4);
      continue;
    }
    if (j->window && j->chunk == NULL && mark < 0)
      continue;
    c = sb__chunk_new(data, len);
    c->off = off;
    c->mark = mark;
    *tail = c;
    tail = &c->next;
    got += len;
  }
  if (r != SQLITE_ROW && r != SQLITE_DONE) {
    SB_LOG_E("spool", "stream row %lld: reading its chunks from byte %llu: %s",
             (long long)j->sid, (unsigned long long)j->off, sqlite3_errstr(r));
    j->status = proves_damage(r) ? SB_EIO : SB_EBUSY;
  }
  sqlite3_reset(st);
  for (i = 0; i < nbad; i++) {
    sqlite3_bind_int64(sp->st[ST_DELETE_ID], 1, bad[i]);
    if (step_done(sp->st[ST_DELETE_ID]) == SQLITE_OK && sqlite3_changes(sp->db) > 0)
      sp->chunks--;
  }
  if (j->corrupt > 0) {
    sp->bytes -= j->corrupt < sp->bytes ? j->corrupt : sp->bytes;
    uv_mutex_lock(&sp->mutex);
    sp->stats.corrupt_bytes += j->corrupt;
    sp->stats.corrupt_chunks += (uint64_t)nbad;
    uv_mutex_unlock(&sp->mutex);
  }
}

/* The oldest unsent chunk's age: a query per stream, so at most once a second. */
void sb__spool_update_unsent(sb__spool_t* sp, int64_t now, sb__spool_stats_t* stats) {
  sqlite3_stmt* st = sp->st[ST_UNSENT];
  if ((uint64_t)now - sp->last_unsent_check < 1000)
    return;
  sp->last_unsent_check = (uint64_t)now;
  stats->oldest_unsent_ms = 0;
  if (sqlite3_step(st) == SQLITE_ROW)
    stats->oldest_unsent_ms = sqlite3_column_int64(st, 0);
  sqlite3_reset(st);
}

/* Runs the kept deletes inside the open transaction. */
static int pending_run(sb__spool_t* sp, int64_t now) {
  size_t i;
  int r = SQLITE_OK;
  for (i = 0; i < sp->npending && r == SQLITE_OK; i++) {
    sb__spool_job_t j;
    memset(&j, 0, sizeof(j));
    j.sid = sp->pending[i].sid;
    j.op = sp->pending[i].forget ? SB__SPOOL_FORGET : SB__SPOOL_ACK;
    j.off = sp->pending[i].off;
    j.trim = sp->pending[i].trim;
    r = run_write(sp, &j, now);
  }
  return r;
}

/*
 * Room for the next try after a transaction failed for want of space: the reserve
 * goes (its space lets deletes and the checkpoint run), the WAL is checkpointed and
 * truncated, and with drop-oldest room is made for twice the batch in a transaction
 * of its own.
 */
static void free_space(sb__spool_t* sp, sb__spool_job_t* batch, int64_t now) {
  sb__spool_job_t* j;
  if (sb__spool_reserve_release(sp, now))
    SB_LOG_W("spool",
             "disk full: released the %llu-byte reserve so that delivered data can be "
             "deleted; it is made again once there is room",
             (unsigned long long)sp->reserve_size);
  /* RESTART, not TRUNCATE: the WAL keeps its room on disk (up to its budget) for the
   * transactions to come. */
  sb__spool_checkpoint(sp);
  if (sp->policy == SB__FULL_DROP_OLDEST) {
    uint64_t need = 0, cap = sp->cap, bytes0 = sp->bytes, chunks0 = sp->chunks,
             dropped0 = sp->stats.dropped_bytes;
    int rr = SQLITE_OK;
    for (j = batch; j; j = j->next)
      if (j->op == SB__SPOOL_APPEND)
        need += j->chunk->len;
    sp->cap = sp->bytes > 2 * need ? sp->bytes - 2 * need : 0;
    if (step_done(sp->st[ST_BEGIN]) == SQLITE_OK) {
      make_room(sp, 0, &rr);
      if (rr != SQLITE_OK || step_done(sp->st[ST_COMMIT]) != SQLITE_OK) {
        step_done(sp->st[ST_ROLLBACK]);
        sp->bytes = bytes0;
        sp->chunks = chunks0;
        sp->stats.dropped_bytes = dropped0;
      }
    }
    sp->cap = cap;
  }
}

/*
 * Runs the batch's write jobs (after the kept deletes) in one transaction. With
 * per_job, each job has a savepoint of its own: a job that fails is rolled back alone
 * and gets its status, and the others commit. Returns the transaction's result.
 */
static int try_batch(sb__spool_t* sp, sb__spool_job_t* batch, int64_t now, int per_job,
                     int* first_err) {
  sb__spool_job_t* j;
  uint64_t bytes0 = sp->bytes, chunks0 = sp->chunks, dropped0 = sp->stats.dropped_bytes;
  size_t npending = sp->npending;
  int r = step_done(sp->st[ST_BEGIN]);
  if (r == SQLITE_OK && npending > 0) {
    if (per_job)
      step_done(sp->st[ST_SAVEPOINT]);
    r = pending_run(sp, now);
    if (per_job) {
      if (r != SQLITE_OK) {
        step_done(sp->st[ST_ROLLBACK_TO]);
        npending = 0; /* still kept */
        r = SQLITE_OK;
      }
      step_done(sp->st[ST_RELEASE]);
    }
  }
  for (j = batch; j && r == SQLITE_OK; j = j->next) {
    uint64_t b1 = sp->bytes, c1 = sp->chunks, d1 = sp->stats.dropped_bytes;
    int rj;
    j->status = 0;
    j->freed = 0;
    if (j->op == SB__SPOOL_READ)
      continue;
    if (per_job)
      step_done(sp->st[ST_SAVEPOINT]);
    rj = run_write(sp, j, now);
    if (!per_job) {
      r = rj;
      continue;
    }
    if (rj != SQLITE_OK) {
      step_done(sp->st[ST_ROLLBACK_TO]);
      sp->bytes = b1;
      sp->chunks = c1;
      sp->stats.dropped_bytes = d1;
      if (*first_err == SQLITE_OK)
        *first_err = rj;
      if (j->op == SB__SPOOL_ACK || j->op == SB__SPOOL_FORGET)
        sb__spool_pending_add(sp, j); /* the loop may go on: the delete is done later */
      else
        j->status = is_full(rj) ? SB_ENOSPC : SB_EIO;
    }
    step_done(sp->st[ST_RELEASE]);
  }
  if (r == SQLITE_OK)
    r = step_done(sp->st[ST_COMMIT]);
  if (r != SQLITE_OK) {
    step_done(sp->st[ST_ROLLBACK]);
    sp->bytes = bytes0;
    sp->chunks = chunks0;
    sp->stats.dropped_bytes = dropped0;
    if (*first_err == SQLITE_OK)
      *first_err = r;
    return r;
  }
  /* The kept deletes ran: those that were kept before this batch are done. */
  if (npending > 0) {
    memmove(sp->pending, sp->pending + npending,
            (sp->npending - npending) * sizeof(*sp->pending));
    sp->npending -= npending;
  }
  return SQLITE_OK;
}

/*
 * One batch: every write job in one transaction, then the reads. A transaction that
 * fails is rolled back and tried again with a savepoint per job, after making room
 * when it failed for want of space: so one job that cannot be stored (a full disk, a
 * damaged page) fails alone. Deletes that fail are kept and retried with later
 * batches; appends and opens that fail are refused (SB_ENOSPC for want of space,
 * else SB_EIO).
 */
static void run_batch(sb__spool_t* sp, sb__spool_job_t* batch) {
  sb__spool_job_t* j;
  int64_t now = now_ms();
  int r, err = SQLITE_OK;
  sb__spool_reserve_check(sp, now);
  r = try_batch(sp, batch, now, 0, &err);
  if (r != SQLITE_OK) {
    uv_mutex_lock(&sp->mutex);
    sp->stats.full_errors++;
    uv_mutex_unlock(&sp->mutex);
    SB_LOG_E("spool", "transaction failed: %s (code %d: %s)", sqlite3_errstr(r), r,
             is_full(r) ? "disk full or I/O error: retrying job by job after making "
                          "room; data that does not fit is refused"
                        : "retrying job by job");
    if (is_full(r)) {
      if (!sp->tight)
        SB_LOG_W("spool", "disk full: new data is taken only into room the spool "
                          "already has, until its reserve can be made again");
      sp->tight = 1;
      free_space(sp, batch, now);
    }
    err = SQLITE_OK;
    r = try_batch(sp, batch, now, 1, &err);
    if (r != SQLITE_OK) {
      for (j = batch; j; j = j->next) {
        if (j->op == SB__SPOOL_ACK || j->op == SB__SPOOL_FORGET) {
          sb__spool_pending_add(sp, j);
          j->status = 0;
        } else if (j->op != SB__SPOOL_READ) {
          j->status = is_full(r) ? SB_ENOSPC : SB_EIO;
        }
      }
    }
    if (sp->npending > 0)
      SB_LOG_W("spool",
               "%llu streams' delivered data could not be deleted yet (%s, code %d); "
               "retrying with every transaction",
               (unsigned long long)sp->npending,
               sqlite3_errstr(r != SQLITE_OK ? r : err), r != SQLITE_OK ? r : err);
  }
  for (j = batch; j; j = j->next)
    if (j->op == SB__SPOOL_APPEND && j->status == SB_ENOSPC)
      sp->stats.refused_bytes += j->chunk->len;
  for (j = batch; j; j = j->next)
    if (j->op == SB__SPOOL_READ)
      run_read(sp, j);
  if (sp->tight)
    sb__spool_checkpoint(sp);
  sb__spool_reserve_check(sp, now);
  uv_mutex_lock(&sp->mutex);
  sp->stats.bytes = sp->bytes;
  sp->stats.chunks = sp->chunks;
  sp->stats.commits++;
  sp->stats.pending_deletes = sp->npending;
  sb__spool_update_unsent(sp, now, &sp->stats);
  uv_mutex_unlock(&sp->mutex);
}

void sb__spool_worker(void* arg) {
  sb__spool_t* sp = arg;
  for (;;) {
    sb__spool_job_t *batch, *last;
    uv_mutex_lock(&sp->mutex);
    while (sp->in_head == NULL && !sp->quit) {
      /* Kept deletes, a missing reserve and the tight mode are looked at every
       * second while idle. */
      if (sp->npending == 0 && !sp->tight &&
          (sp->reserve_held || sp->reserve_size == 0)) {
        uv_cond_wait(&sp->cond, &sp->mutex);
      } else if (uv_cond_timedwait(&sp->cond, &sp->mutex, 1000000000ull) ==
                 UV_ETIMEDOUT) {
        break;
      }
    }
    if (sp->in_head == NULL && sp->quit) {
      uv_mutex_unlock(&sp->mutex);
      break;
    }
    if (sp->in_head == NULL) {
      uv_mutex_unlock(&sp->mutex);
      run_batch(sp, NULL);
      continue;
    }
    /* A batch is bounded (SB__BATCH_JOBS jobs, SB__BATCH_BYTES of appends), so that a
     * stream filling the spool does not make every other job wait for one long
     * transaction; the rest is the next batch. */
    {
      sb__spool_job_t* j = sp->in_head;
      uint64_t bytes = 0;
      unsigned n = 1;
      for (;;) {
        if (j->op == SB__SPOOL_APPEND)
          bytes += j->chunk->len;
        if (j->next == NULL || n >= SB__BATCH_JOBS || bytes >= SB__BATCH_BYTES)
          break;
        j = j->next;
        n++;
      }
      batch = sp->in_head;
      last = j;
      sp->in_head = j->next;
      if (sp->in_head == NULL)
        sp->in_tail = NULL;
      last->next = NULL;
    }
    uv_mutex_unlock(&sp->mutex);

    run_batch(sp, batch);

    uv_mutex_lock(&sp->mutex);
    if (sp->out_tail)
      sp->out_tail->next = batch;
    else
      sp->out_head = batch;
    sp->out_tail = last;
    uv_mutex_unlock(&sp->mutex);
    uv_async_send(&sp->async);
  }
}

/* Loop thread: the done callbacks of finished jobs, in order. */
void sb__spool_deliver(sb__spool_t* sp) {
  sb__spool_job_t *j, *next;
  uv_mutex_lock(&sp->mutex);
  j = sp->out_head;
  sp->out_head = sp->out_tail = NULL;
  uv_mutex_unlock(&sp->mutex);
  for (; j; j = next) {
    next = j->next;
    j->next = NULL;
    j->done(j);
  }
}

void sb__spool_on_async(uv_async_t* a) {
  sb__spool_deliver(a->data);
}

void sb__spool_submit(sb__spool_t* sp, sb__spool_job_t* job) {
  job->next = NULL;
  job->status = 0;
  uv_mutex_lock(&sp->mutex);
  if (sp->in_tail)
    sp->in_tail->next = job;
  else
    sp->in_head = job;
  sp->in_tail = job;
  uv_cond_signal(&sp->cond);
  uv_mutex_unlock(&sp->mutex);
}

void sb__spool_stats(sb__spool_t* sp, sb__spool_stats_t* out) {
  uv_mutex_lock(&sp->mutex);
  *out = sp->stats;
  uv_mutex_unlock(&sp->mutex);
}

int64_t sb__spool_new_sid(sb__spool_t* sp) {
  return ++sp->next_sid;
}
