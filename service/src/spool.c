/*
 * spool.c - the SQLite spool (see internal.h): schema, start-up check, and the worker
 * thread that runs the loop's jobs in group-committed transactions.
 *
 * Schema (PRAGMA user_version 1, application_id 'SBSP'):
 *   streams(id, name, type, props, opened, acked)
 *     props: the JSON of the handshake the stream is (re)opened upstream with;
 *     acked: the cursor, bytes of the stream whose upstream write completed.
 *   chunks(id, sid, seq, off, end_off, mark, created, data)
 *     id orders chunks oldest first across streams; (sid, end_off) is unique and
 *     indexed; mark is where a resend may start (-1: inside a datagram).
 * A chunk is deleted when its stream is forgotten (delivered and closed upstream),
 * when it falls out of the replay window behind the cursor, or by the size cap.
 */
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "internal.h"

#define SB__SPOOL_SCHEMA 1
#define SB__SPOOL_APP_ID 0x53425350 /* "SBSP" */

enum {
  ST_BEGIN,
  ST_COMMIT,
  ST_ROLLBACK,
  ST_OPEN,
  ST_APPEND,
  ST_ACK,
  ST_TRIM,
  ST_TRIM_DGRAM,
  ST_FORGET_CHUNKS,
  ST_FORGET_STREAM,
  ST_READ,
  ST_READ_WINDOW,
  ST_OLDEST_ACKED,
  ST_OLDEST_UNSENT,
  ST_DELETE_ID,
  ST_UNSENT,
  ST_COUNT
};

static const char* const sb__sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_OPEN] = "INSERT OR REPLACE INTO streams(id, name, type, props, opened, acked) "
                "VALUES (?1, ?2, ?3, ?4, ?5, 0)",
    [ST_APPEND] = "INSERT INTO chunks(sid, seq, off, end_off, mark, created, data) "
                  "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_ACK] = "UPDATE streams SET acked = ?2 WHERE id = ?1 AND acked < ?2",
    /* Whole chunks behind the window, but never past the last resend point (mark >= 0)
     * at or before the trim offset: a resend must start on a datagram boundary. */
    [ST_TRIM] =
        "DELETE FROM chunks WHERE sid = ?1 AND end_off <= ?2 RETURNING length(data)",
    /* end_off is bounded too (a chunk is at most one client read, SB__READ_SIZE), so
     * the index walk starts near the trim point, not at the stream's newest chunk. */
    [ST_TRIM_DGRAM] = "SELECT off FROM chunks WHERE sid = ?1 AND end_off <= ?2 + "
                      "131072 AND off <= ?2 "
                      "AND mark >= 0 ORDER BY end_off DESC LIMIT 1",
    [ST_FORGET_CHUNKS] = "DELETE FROM chunks WHERE sid = ?1 RETURNING length(data)",
    [ST_FORGET_STREAM] = "DELETE FROM streams WHERE id = ?1",
    [ST_READ] = "SELECT off, mark, data FROM chunks WHERE sid = ?1 AND end_off > ?2 "
                "ORDER BY end_off",
    [ST_READ_WINDOW] =
        "SELECT off, mark, data FROM chunks WHERE sid = ?1 AND end_off >= "
        "(SELECT end_off FROM chunks WHERE sid = ?1 AND mark >= 0 "
        "ORDER BY end_off LIMIT 1) ORDER BY end_off",
    /* The oldest chunk already written upstream (a replay window's), then the oldest
     * of all: what the cap takes first. */
    [ST_OLDEST_ACKED] =
        "SELECT c.id, length(c.data) FROM chunks c JOIN streams s ON "
        "s.id = c.sid WHERE c.end_off <= s.acked ORDER BY c.id LIMIT 64",
    [ST_OLDEST_UNSENT] =
        "SELECT id, length(data), sid FROM chunks ORDER BY id LIMIT 64",
    [ST_DELETE_ID] = "DELETE FROM chunks WHERE id = ?1",
    [ST_UNSENT] = "SELECT (SELECT created FROM chunks WHERE sid = s.id AND end_off > "
                  "s.acked ORDER BY end_off LIMIT 1) AS t FROM streams s "
                  "WHERE t IS NOT NULL ORDER BY t LIMIT 1",
};

struct sb__spool_s {
  uv_loop_t* loop;
  sqlite3* db;
  sqlite3_stmt* st[ST_COUNT];
  char* path;
  uint64_t cap;
  int policy;
  uv_thread_t thread;
  uv_mutex_t mutex;
  uv_cond_t cond;
  uv_async_t async;
  /* Under mutex: */
  sb__spool_job_t *in_head, *in_tail;   /* queued for the worker */
  sb__spool_job_t *out_head, *out_tail; /* done, for the loop */
  int quit;
  sb__spool_stats_t stats;
  /* Worker only: */
  uint64_t bytes, chunks;
  uint64_t last_unsent_check;
  int no_windows;   /* the last search found no chunk behind a cursor: skip it until an
                       ACK moves one (else a spool at its cap would scan every chunk for
                       each append) */
  int64_t next_sid; /* loop only */
};

static int64_t now_ms(void) {
  sb__time_t t = sb__time_now();
  return t.sec * 1000 + t.nsec / 1000000;
}

static const char* db_err(sb__spool_t* sp) {
  return sqlite3_errmsg(sp->db);
}

static int exec(sb__spool_t* sp, const char* sql) {
  char* msg = NULL;
  int r = sqlite3_exec(sp->db, sql, NULL, NULL, &msg);
  if (r != SQLITE_OK) {
    SB_LOG_E("spool", "%s: %s", sql, msg ? msg : sqlite3_errstr(r));
    sqlite3_free(msg);
  }
  return r;
}

/* One integer from a query, or dflt. */
static int64_t query_int(sb__spool_t* sp, const char* sql, int64_t dflt) {
  sqlite3_stmt* st;
  int64_t v = dflt;
  if (sqlite3_prepare_v2(sp->db, sql, -1, &st, NULL) != SQLITE_OK)
    return dflt;
  if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
    v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

static void db_close(sb__spool_t* sp) {
  int i;
  for (i = 0; i < ST_COUNT; i++) {
    sqlite3_finalize(sp->st[i]);
    sp->st[i] = NULL;
  }
  if (sp->db)
    sqlite3_close(sp->db);
  sp->db = NULL;
}

/* Renames spool.db (and its -wal and -shm) to spool.db.bad-TIME. */
static void move_aside(sb__spool_t* sp, const char* why) {
  static const char* const suffix[] = {"", "-wal", "-shm"};
  char stamp[40], from[4096], to[4096];
  sb__time_t t = sb__time_now();
  int i;
  db_close(sp);
  snprintf(stamp, sizeof(stamp), "%lld", (long long)t.sec);
  for (i = 0; i < 3; i++) {
    uv_fs_t req;
    snprintf(from, sizeof(from), "%s%s", sp->path, suffix[i]);
    snprintf(to, sizeof(to), "%s.bad-%s%s", sp->path, stamp, suffix[i]);
    uv_fs_rename(NULL, &req, from, to, NULL);
    uv_fs_req_cleanup(&req);
  }
  sp->stats.moved_aside++;
  SB_LOG_E("spool",
           "%s: %s; moved aside as %s.bad-%s and a new spool started: the data "
           "in it is not delivered",
           sp->path, why, sp->path, stamp);
}

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS streams("
    " id INTEGER PRIMARY KEY, name TEXT NOT NULL, type INTEGER NOT NULL,"
    " props TEXT NOT NULL, opened INTEGER NOT NULL, acked INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS chunks("
    " id INTEGER PRIMARY KEY, sid INTEGER NOT NULL, seq INTEGER NOT NULL,"
    " off INTEGER NOT NULL, end_off INTEGER NOT NULL, mark INTEGER NOT NULL,"
    " created INTEGER NOT NULL, data BLOB NOT NULL);"
    "CREATE UNIQUE INDEX IF NOT EXISTS chunks_stream ON chunks(sid, end_off);";

/*
 * Opens the database and checks it. Returns 0, 1 when it must be moved aside (why
 * says so), or -1 when it cannot be opened at all (logged).
 */
static int db_open(sb__spool_t* sp, int synchronous, char* why, size_t why_size) {
  int r, i;
  int64_t app, version;
  char* check = NULL;
  sqlite3_stmt* st;
#ifndef _WIN32
  {
    /* Log data: readable by the service's user and group only (SQLite gives its -wal
     * and -shm files the database's mode). */
    uv_fs_t req;
    int fd = uv_fs_open(NULL, &req, sp->path, UV_FS_O_RDWR | UV_FS_O_CREAT, 0640, NULL);
    uv_fs_req_cleanup(&req);
    if (fd >= 0) {
      uv_fs_close(NULL, &req, fd, NULL);
      uv_fs_req_cleanup(&req);
    }
  }
#endif
  r = sqlite3_open_v2(sp->path, &sp->db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      NULL);
  if (r != SQLITE_OK) {
    SB_LOG_E("spool", "%s: %s", sp->path, sp->db ? db_err(sp) : sqlite3_errstr(r));
    return -1;
  }
  sqlite3_busy_timeout(sp->db, 5000);
  sqlite3_extended_result_codes(sp->db, 1);
  /* quick_check on a file that is not a database fails at prepare (SQLITE_NOTADB). */
  if (sqlite3_prepare_v2(sp->db, "PRAGMA quick_check", -1, &st, NULL) != SQLITE_OK) {
    snprintf(why, why_size, "not a usable database (%s)", db_err(sp));
    return 1;
  }
  if ((r = sqlite3_step(st)) != SQLITE_ROW) {
    snprintf(why, why_size, "quick_check failed (%s)", sqlite3_errstr(r));
    sqlite3_finalize(st);
    return 1;
  }
  check = sb__xstrdup((const char*)sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  if (strcmp(check, "ok") != 0) {
    snprintf(why, why_size, "damaged (quick_check: %.200s)", check);
    free(check);
    return 1;
  }
  free(check);
  app = query_int(sp, "PRAGMA application_id", -1);
  version = query_int(sp, "PRAGMA user_version", -1);
  if (query_int(sp, "SELECT count(*) FROM sqlite_master", 0) == 0) {
    app = SB__SPOOL_APP_ID;
    version = SB__SPOOL_SCHEMA;
  } else if (app != SB__SPOOL_APP_ID) {
    snprintf(why, why_size, "not a streambroker spool (application_id %lld)",
             (long long)app);
    return 1;
  } else if (version != SB__SPOOL_SCHEMA) {
    snprintf(why, why_size, "schema version %lld, this service reads version %d",
             (long long)version, SB__SPOOL_SCHEMA);
    return 1;
  }
  /*
   * 16 KiB pages (page_size only takes effect on a new database). bench_spool, one
   * run each: 4 KiB pages wrote 128 KiB chunks at 172 MB/s and drained lines at 115k/s,
   * 16 KiB at 228 MB/s and 263k/s; 64 KiB pages were faster still for large chunks, but
   * every commit writes whole pages to the WAL, so a trickle of short lines (a commit
   * each) would write 64 KiB per line.
   */
  {
    static const char* const setup[] = {"PRAGMA page_size=16384",
                                        "PRAGMA journal_mode=WAL",
                                        "PRAGMA application_id=1396855632",
                                        "PRAGMA user_version=1",
                                        schema_sql,
                                        NULL};
    for (i = 0; setup[i]; i++) {
      if (exec(sp, setup[i]) != SQLITE_OK) {
        snprintf(why, why_size, "cannot set up its schema (%s)", db_err(sp));
        return 1;
      }
    }
    if (exec(sp, synchronous == SB__SYNC_FULL
                     ? "PRAGMA synchronous=FULL"
                     : "PRAGMA synchronous=NORMAL") != SQLITE_OK) {
      snprintf(why, why_size, "cannot set synchronous (%s)", db_err(sp));
      return 1;
    }
  }
  for (i = 0; i < ST_COUNT; i++) {
    if (sqlite3_prepare_v3(sp->db, sb__sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                           &sp->st[i], NULL) != SQLITE_OK) {
      snprintf(why, why_size, "cannot prepare its statements (%s)", db_err(sp));
      return 1;
    }
  }
  return 0;
}

static void load_resume(sb__spool_t* sp, sb__spool_resume_t** out, size_t* n) {
  sqlite3_stmt* st;
  size_t cap = 0;
  *out = NULL;
  *n = 0;
  if (sqlite3_prepare_v2(sp->db,
                         "SELECT s.id, s.props, s.acked, "
                         "(SELECT max(end_off) FROM chunks WHERE sid = s.id), "
                         "(SELECT max(seq) FROM chunks WHERE sid = s.id) "
                         "FROM streams s ORDER BY s.id",
                         -1, &st, NULL) != SQLITE_OK)
    return;
  while (sqlite3_step(st) == SQLITE_ROW) {
    sb__spool_resume_t* r;
    if (*n == cap) {
      cap = cap ? cap * 2 : 16;
      *out = sb__xrealloc(*out, cap * sizeof(**out));
    }
    r = &(*out)[(*n)++];
    r->sid = sqlite3_column_int64(st, 0);
    r->props = sb__xstrdup((const char*)sqlite3_column_text(st, 1));
    r->acked = (uint64_t)sqlite3_column_int64(st, 2);
    r->end = (uint64_t)sqlite3_column_int64(st, 3);
    r->next_seq = sqlite3_column_type(st, 4) == SQLITE_NULL
                      ? 0
                      : (uint64_t)sqlite3_column_int64(st, 4) + 1;
    if (r->end < r->acked)
      r->end = r->acked;
  }
  sqlite3_finalize(st);
}

void sb__spool_resume_free(sb__spool_resume_t* r, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    free(r[i].props);
  free(r);
}

/* ---- the worker ---- */

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
    if (trim == 0)
      break;
    /* Keep the last resend point at or before trim, and all after it. */
    st = sp->st[ST_TRIM_DGRAM];
    sqlite3_bind_int64(st, 1, j->sid);
    sqlite3_bind_int64(st, 2, (int64_t)trim);
    if (sqlite3_step(st) == SQLITE_ROW)
      trim = (uint64_t)sqlite3_column_int64(st, 0);
    else
      trim = 0;
    sqlite3_reset(st);
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
  case SB__SPOOL_READ:
    break;
  }
  return r;
}

static void run_read(sb__spool_t* sp, sb__spool_job_t* j) {
  sqlite3_stmt* st = sp->st[j->window ? ST_READ_WINDOW : ST_READ];
  sb__chunk_t **tail = &j->chunk, *c;
  uint64_t got = 0;
  int r;
  sqlite3_bind_int64(st, 1, j->sid);
  if (!j->window)
    sqlite3_bind_int64(st, 2, (int64_t)j->off);
  while (got < j->limit && (r = sqlite3_step(st)) == SQLITE_ROW) {
    const void* data = sqlite3_column_blob(st, 2);
    size_t len = (size_t)sqlite3_column_bytes(st, 2);
    c = sb__chunk_new(data, len);
    c->off = (uint64_t)sqlite3_column_int64(st, 0);
    c->mark = sqlite3_column_int64(st, 1);
    *tail = c;
    tail = &c->next;
    got += len;
  }
  sqlite3_reset(st);
}

/* The oldest unsent chunk's age: a query per stream, so at most once a second. */
static void update_unsent(sb__spool_t* sp, int64_t now, sb__spool_stats_t* stats) {
  sqlite3_stmt* st = sp->st[ST_UNSENT];
  if ((uint64_t)now - sp->last_unsent_check < 1000)
    return;
  sp->last_unsent_check = (uint64_t)now;
  stats->oldest_unsent_ms = 0;
  if (sqlite3_step(st) == SQLITE_ROW)
    stats->oldest_unsent_ms = sqlite3_column_int64(st, 0);
  sqlite3_reset(st);
}

/*
 * One batch: every write job in one transaction, then the reads. A transaction that
 * fails (disk full, I/O error) is rolled back and its appends are refused; with
 * drop-oldest the batch is tried once more after room was made.
 */
static void run_batch(sb__spool_t* sp, sb__spool_job_t* batch) {
  sb__spool_job_t* j;
  int64_t now = now_ms();
  int attempt, r = SQLITE_OK;
  for (attempt = 0; attempt < 2; attempt++) {
    uint64_t bytes0 = sp->bytes, chunks0 = sp->chunks,
             dropped0 = sp->stats.dropped_bytes;
    r = step_done(sp->st[ST_BEGIN]);
    for (j = batch; j && r == SQLITE_OK; j = j->next) {
      j->status = 0;
      j->freed = 0;
      r = run_write(sp, j, now);
    }
    if (r == SQLITE_OK)
      r = step_done(sp->st[ST_COMMIT]);
    if (r == SQLITE_OK)
      break;
    step_done(sp->st[ST_ROLLBACK]);
    sp->bytes = bytes0;
    sp->chunks = chunks0;
    sp->stats.dropped_bytes = dropped0;
    uv_mutex_lock(&sp->mutex);
    sp->stats.full_errors++;
    uv_mutex_unlock(&sp->mutex);
    SB_LOG_E("spool", "transaction failed: %s (%s)", sqlite3_errstr(r),
             is_full(r)
                 ? "disk full or I/O error: new data is refused until there is room"
                 : "unexpected");
    if (attempt == 0 && sp->policy == SB__FULL_DROP_OLDEST && is_full(r)) {
      /* Room for twice the batch, in a transaction of its own. */
      uint64_t need = 0, cap = sp->cap;
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
      continue;
    }
    break;
  }
  for (j = batch; j; j = j->next) {
    if (r != SQLITE_OK && j->op != SB__SPOOL_READ)
      j->status = is_full(r) ? SB_ENOSPC : SB_EIO;
    if (j->op == SB__SPOOL_APPEND && j->status == SB_ENOSPC)
      sp->stats.refused_bytes += j->chunk->len;
  }
  for (j = batch; j; j = j->next)
    if (j->op == SB__SPOOL_READ)
      run_read(sp, j);
  uv_mutex_lock(&sp->mutex);
  sp->stats.bytes = sp->bytes;
  sp->stats.chunks = sp->chunks;
  sp->stats.commits++;
  update_unsent(sp, now, &sp->stats);
  uv_mutex_unlock(&sp->mutex);
}

static void worker(void* arg) {
  sb__spool_t* sp = arg;
  for (;;) {
    sb__spool_job_t *batch, *last;
    uv_mutex_lock(&sp->mutex);
    while (sp->in_head == NULL && !sp->quit)
      uv_cond_wait(&sp->cond, &sp->mutex);
    if (sp->in_head == NULL) {
      uv_mutex_unlock(&sp->mutex);
      break;
    }
    batch = sp->in_head;
    last = sp->in_tail;
    sp->in_head = sp->in_tail = NULL;
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
static void deliver(sb__spool_t* sp) {
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

static void on_async(uv_async_t* a) {
  deliver(a->data);
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

int sb__spool_open(sb__spool_t** out, uv_loop_t* loop, const sb__config_t* cfg,
                   sb__spool_resume_t** resume, size_t* nresume) {
  sb__spool_t* sp = sb__xcalloc(1, sizeof(*sp));
  char why[512];
  int r;
  *out = NULL;
  *resume = NULL;
  *nresume = 0;
  if ((r = sb__mkdir_p(cfg->data_dir)) != 0) {
    SB_LOG_E("spool", "data_dir \"%s\": %s", cfg->data_dir, sb_strerror(r));
    free(sp);
    return r;
  }
  sp->loop = loop;
  sp->cap = cfg->spool_max_bytes;
  sp->policy = cfg->spool_full_policy;
  sp->path = sb__path_join(cfg->data_dir, "spool.db");
  r = db_open(sp, cfg->synchronous, why, sizeof(why));
  if (r == 1) {
    move_aside(sp, why);
    r = db_open(sp, cfg->synchronous, why, sizeof(why));
    if (r == 1)
      SB_LOG_E("spool", "%s: a new spool: %s", sp->path, why);
  }
  if (r != 0) {
    db_close(sp);
    free(sp->path);
    free(sp);
    return SB_EIO;
  }
  sp->bytes = (uint64_t)query_int(sp, "SELECT total(length(data)) FROM chunks", 0);
  sp->chunks = (uint64_t)query_int(sp, "SELECT count(*) FROM chunks", 0);
  sp->next_sid = query_int(sp, "SELECT max(id) FROM streams", 0);
  sp->stats.bytes = sp->bytes;
  sp->stats.chunks = sp->chunks;
  update_unsent(sp, now_ms(), &sp->stats);
  load_resume(sp, resume, nresume);
  SB_LOG_I("spool",
           "%s: %llu bytes in %llu chunks, %llu streams to resume (synchronous=%s, "
           "durability=%s)",
           sp->path, (unsigned long long)sp->bytes, (unsigned long long)sp->chunks,
           (unsigned long long)*nresume,
           cfg->synchronous == SB__SYNC_FULL ? "full" : "normal",
           cfg->durability == SB__DURABILITY_ALWAYS ? "always" : "spool");
  uv_mutex_init(&sp->mutex);
  uv_cond_init(&sp->cond);
  uv_async_init(loop, &sp->async, on_async);
  sp->async.data = sp;
  /* Referenced: while the spool is open the loop runs, so a stop waits for the jobs
   * still out (the broker closes the spool last). */
  if (uv_thread_create(&sp->thread, worker, sp) != 0) {
    SB_LOG_E("spool", "cannot start the spool thread");
    abort();
  }
  *out = sp;
  return 0;
}

static void on_async_closed(uv_handle_t* h) {
  free(h->data);
}

void sb__spool_close(sb__spool_t* sp) {
  uv_mutex_lock(&sp->mutex);
  sp->quit = 1;
  uv_cond_signal(&sp->cond);
  uv_mutex_unlock(&sp->mutex);
  uv_thread_join(&sp->thread);
  deliver(sp);
  exec(sp, "PRAGMA wal_checkpoint(TRUNCATE)");
  db_close(sp);
  SB_LOG_I("spool", "%s closed: %llu bytes in %llu chunks", sp->path,
           (unsigned long long)sp->bytes, (unsigned long long)sp->chunks);
  uv_mutex_destroy(&sp->mutex);
  uv_cond_destroy(&sp->cond);
  free(sp->path);
  sp->async.data = sp;
  uv_close((uv_handle_t*)&sp->async, on_async_closed);
}
