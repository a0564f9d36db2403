/*
 * spool.c - the SQLite spool's database (see spool.h): its schema, opening and
 * checking it at start (moving a damaged one aside), and closing it. The job queue
 * and its worker are in spool_jobs.c, the reserve and kept deletes in spool_reserve.c.
 *
 * Schema (PRAGMA user_version 2, application_id 'SBSP'):
 *   streams(id, name, type, props, opened, acked)
 *     props: the JSON of the handshake the stream is (re)opened upstream with;
 *     acked: the cursor, bytes of the stream whose upstream write completed.
 *   chunks(id, sid, seq, off, end_off, mark, created, data, crc)
 *     id orders chunks oldest first across streams; (sid, end_off) is unique and
 *     indexed; mark is where a resend may start (-1: inside a datagram); crc is the
 *     CRC-32C of data, checked on every read (NULL for chunks of a version 1 spool,
 *     which is upgraded in place).
 *   sent_names(upstream, name, sent)
 *     every stream name sent to an upstream (by its address) and when (Unix ms), so
 *     that a service started again goes on with names that upstream has not seen.
 *     Added to any version 2 spool at open; rows older than SB__NAMES_AGE_MS, and past
 *     the newest SB__NAMES_KEEP of an upstream, go at open.
 * A chunk is deleted when its stream is forgotten (delivered and closed upstream),
 * when it falls out of the replay window behind the cursor, by the size cap, or when
 * its checksum fails (it is never forwarded).
 */
#include <stdlib.h>
#include <string.h>

#include "spool_int.h"

#define SB__SPOOL_SCHEMA 2
#define SB__SPOOL_APP_ID 0x53425350 /* "SBSP" */
/* Names sent upstream are remembered a week (a butler lives as long as its build),
 * and at most this many per upstream. */
#define SB__NAMES_AGE_MS (7ll * 24 * 3600 * 1000)
#define SB__NAMES_KEEP 1000000

static const char* const sb__sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_OPEN] = "INSERT OR REPLACE INTO streams(id, name, type, props, opened, acked) "
                "VALUES (?1, ?2, ?3, ?4, ?5, 0)",
    [ST_APPEND] =
        "INSERT INTO chunks(sid, seq, off, end_off, mark, created, data, crc) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
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
    [ST_READ] = "SELECT off, mark, data, crc, id FROM chunks WHERE sid = ?1 AND "
                "end_off > ?2 ORDER BY end_off",
    [ST_READ_WINDOW] =
        "SELECT off, mark, data, crc, id FROM chunks WHERE sid = ?1 AND end_off >= "
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
    [ST_NAME] = "INSERT OR REPLACE INTO sent_names(upstream, name, sent) "
                "VALUES (?1, ?2, ?3)",
    [ST_SAVEPOINT] = "SAVEPOINT job",
    [ST_RELEASE] = "RELEASE job",
    [ST_ROLLBACK_TO] = "ROLLBACK TO job",
    [ST_FREELIST] = "PRAGMA freelist_count",
};

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
    " created INTEGER NOT NULL, data BLOB NOT NULL, crc INTEGER);"
    "CREATE UNIQUE INDEX IF NOT EXISTS chunks_stream ON chunks(sid, end_off);";

/* Made in every spool at open, old ones too: a spool without it is still version 2. */
static const char names_sql[] =
    "CREATE TABLE IF NOT EXISTS sent_names("
    " upstream TEXT NOT NULL, name TEXT NOT NULL, sent INTEGER NOT NULL,"
    " PRIMARY KEY(upstream, name)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS sent_names_age ON sent_names(upstream, sent);";

/* A failed step of db_open: 1 (move aside) when rc proves damage, else -1. */
static int open_failed(int rc, char* why, size_t why_size, const char* what,
                       const char* msg) {
  snprintf(why, why_size, "%s (%s)", what, msg);
  return proves_damage(rc) ? 1 : -1;
}

/*
 * Opens the database and checks it. Returns 0; 1 when it must be moved aside: proven
 * damaged, foreign or of an unknown schema (why says so); or -1 when it cannot be
 * opened or checked now (why says why: a full disk or an I/O error), in which case
 * the file is left as it is. Nothing is written to an existing spool here but a
 * version 1 upgrade, so a start on a full disk does not fail on the check itself.
 */
static int db_open(sb__spool_t* sp, int synchronous, char* why, size_t why_size) {
  int r, i, fresh;
  int64_t app, version;
  char* check = NULL;
  sqlite3_stmt* st;
  if (sb__spool_file_prepare(sp->path, why, why_size) != 0)
    return -1;
  r = sqlite3_open_v2(sp->path, &sp->db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      NULL);
  if (r != SQLITE_OK) {
    snprintf(why, why_size, "cannot open it (%s)",
             sp->db ? db_err(sp) : sqlite3_errstr(r));
    return -1;
  }
  sqlite3_busy_timeout(sp->db, 5000);
  sqlite3_extended_result_codes(sp->db, 1);
  /* quick_check on a file that is not a database fails at prepare (SQLITE_NOTADB). */
  if ((r = sqlite3_prepare_v2(sp->db, "PRAGMA quick_check", -1, &st, NULL)) !=
      SQLITE_OK)
    return open_failed(r, why, why_size, "not a usable database", db_err(sp));
  if ((r = sqlite3_step(st)) != SQLITE_ROW) {
    sqlite3_finalize(st);
    return open_failed(r, why, why_size, "quick_check failed", sqlite3_errstr(r));
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
  fresh = query_int(sp, "SELECT count(*) FROM sqlite_master", 0) == 0;
  if (fresh) {
    app = SB__SPOOL_APP_ID;
    version = SB__SPOOL_SCHEMA;
  } else if (app != SB__SPOOL_APP_ID) {
    snprintf(why, why_size, "not a streambroker spool (application_id %lld)",
             (long long)app);
    return 1;
  } else if (version == 1) {
    /* Version 1 had no checksums: its chunks keep crc NULL and are read unchecked. */
    if ((r = exec(sp, "BEGIN IMMEDIATE; ALTER TABLE chunks ADD COLUMN crc INTEGER; "
                      "PRAGMA user_version=2; COMMIT")) != SQLITE_OK) {
      exec(sp, "ROLLBACK");
      return open_failed(r, why, why_size, "cannot upgrade it from version 1",
                         db_err(sp));
    }
    SB_LOG_I("spool", "%s: upgraded from schema version 1 (chunks now checksummed)",
             sp->path);
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
  if (fresh) {
    static const char* const setup[] = {"PRAGMA page_size=16384",
                                        "PRAGMA journal_mode=WAL",
                                        "PRAGMA application_id=1396855632",
                                        "PRAGMA user_version=2",
                                        schema_sql,
                                        NULL};
    for (i = 0; setup[i]; i++)
      if ((r = exec(sp, setup[i])) != SQLITE_OK)
        return open_failed(r, why, why_size, "cannot set up its schema", db_err(sp));
  }
  if ((r = exec(sp, names_sql)) != SQLITE_OK)
    return open_failed(r, why, why_size, "cannot add its table of names", db_err(sp));
  {
    /* Connection settings: nothing is written. secure_delete=FAST: a deleted chunk's
     * pages go to the free list without being overwritten with zeros (Debian builds
     * SQLite with secure_delete on), so a delete writes a few pages, not the chunk
     * again: on a full disk, deleting delivered data must not need the room it
     * frees. */
    char sql[200];
    snprintf(sql, sizeof(sql),
             "PRAGMA synchronous=%s; PRAGMA wal_autocheckpoint=%llu; "
             "PRAGMA journal_size_limit=%llu; PRAGMA secure_delete=FAST",
             synchronous == SB__SYNC_FULL ? "FULL" : "NORMAL",
             (unsigned long long)(sp->wal_budget / 16384),
             (unsigned long long)sp->wal_budget);
    if ((r = exec(sp, sql)) != SQLITE_OK)
      return open_failed(r, why, why_size, "cannot set it up", db_err(sp));
  }
  for (i = 0; i < ST_COUNT; i++) {
    if ((r = sqlite3_prepare_v3(sp->db, sb__sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                                &sp->st[i], NULL)) != SQLITE_OK)
      return open_failed(r, why, why_size, "cannot prepare its statements", db_err(sp));
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
                         "(SELECT max(seq) FROM chunks WHERE sid = s.id), "
                         "(SELECT count(*) FROM chunks WHERE sid = s.id) "
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
    r->chunks = (uint64_t)sqlite3_column_int64(st, 5);
    if (r->end < r->acked)
      r->end = r->acked;
  }
  sqlite3_finalize(st);
}

/*
 * Trims the names sent to this upstream (by age, then to the newest SB__NAMES_KEEP)
 * and loads the rest. A failure leaves the names unknown: the service then starts from
 * each stream's own name, and a butler's refusals move it on, as before.
 */
static void load_names(sb__spool_t* sp) {
  sqlite3_stmt* st = NULL;
  static const char by_count[] =
      "DELETE FROM sent_names WHERE upstream = ?1 AND sent < (SELECT sent FROM "
      "sent_names WHERE upstream = ?1 ORDER BY sent DESC LIMIT 1 OFFSET ?3)";
  static const char* const trim[] = {"DELETE FROM sent_names WHERE sent < ?2", by_count,
                                     "SELECT name FROM sent_names WHERE upstream = ?1"};
  size_t i, cap = 0;
  int r = SQLITE_OK;
  if (sp->upstream == NULL)
    return;
  for (i = 0; i < 3 && r == SQLITE_OK; i++) {
    if ((r = sqlite3_prepare_v2(sp->db, trim[i], -1, &st, NULL)) != SQLITE_OK)
      break;
    sqlite3_bind_text(st, 1, sp->upstream, -1, SQLITE_STATIC);
    if (i == 0)
      sqlite3_bind_int64(st, 2, now_ms() - SB__NAMES_AGE_MS);
    if (i == 1)
      sqlite3_bind_int64(st, 3, SB__NAMES_KEEP);
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
      if (sp->nnames == cap) {
        cap = cap ? cap * 2 : 64;
        sp->names = sb__xrealloc(sp->names, cap * sizeof(char*));
      }
      sp->names[sp->nnames++] = sb__xstrdup((const char*)sqlite3_column_text(st, 0));
    }
    r = r == SQLITE_DONE ? SQLITE_OK : r;
    sqlite3_finalize(st);
    st = NULL;
  }
  if (r != SQLITE_OK)
    SB_LOG_W("spool",
             "%s: cannot read the names sent to %s before: %s; streams start from "
             "their own names",
             sp->path, sp->upstream, db_err(sp));
}

void sb__spool_names_take(sb__spool_t* sp, char*** names, size_t* n) {
  *names = sp->names;
  *n = sp->nnames;
  sp->names = NULL;
  sp->nnames = 0;
}

void sb__spool_resume_free(sb__spool_resume_t* r, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    free(r[i].props);
  free(r);
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
  /* The WAL's budget between checkpoints: a quarter of the cap, at most 16 MiB, and at
   * most half the reserve (a checkpoint on a full disk may have to grow the database
   * by as much as the WAL holds: the reserve must cover it), at least 64 KiB, in
   * 16 KiB pages; it counts against the cap. */
  sp->wal_budget = cfg->spool_max_bytes / 4;
  if (sp->wal_budget > 16u * 1024 * 1024)
    sp->wal_budget = 16u * 1024 * 1024;
  if (cfg->spool_reserve_bytes > 0 && sp->wal_budget > cfg->spool_reserve_bytes / 2)
    sp->wal_budget = cfg->spool_reserve_bytes / 2;
  if (sp->wal_budget < 65536)
    sp->wal_budget = 65536;
  sp->wal_budget -= sp->wal_budget % 16384;
  sp->cap = cfg->spool_max_bytes - sp->wal_budget;
  sp->policy = cfg->spool_full_policy;
  sp->path = sb__path_join(cfg->data_dir, "spool.db");
  sp->reserve_path = sb__path_join(cfg->data_dir, "spool.reserve");
  sp->data_dir = sb__xstrdup(cfg->data_dir);
  sp->reserve_size = cfg->spool_reserve_bytes;
  /* The reserve is given back before opening: on a full disk, its room is what lets
   * the database open (its -shm and WAL) and deliver. */
  sb__spool_reserve_release(sp, 0);
  sp->reserve_next_try = 0;
  r = db_open(sp, cfg->synchronous, why, sizeof(why));
  if (r == 1) {
    move_aside(sp, why);
    r = db_open(sp, cfg->synchronous, why, sizeof(why));
    if (r == 1)
      SB_LOG_E("spool", "%s: a new spool: %s", sp->path, why);
  }
  if (r != 0) {
    if (r < 0)
      SB_LOG_E("spool",
               "%s: %s; the file is kept as it is (it is not known to be damaged): "
               "the service cannot start until it can be opened (a full disk?)",
               sp->path, why);
    db_close(sp);
    free(sp->path);
    free(sp->reserve_path);
    free(sp->data_dir);
    free(sp);
    return SB_EIO;
  }
  sp->bytes = (uint64_t)query_int(sp, "SELECT total(length(data)) FROM chunks", 0);
  sp->chunks = (uint64_t)query_int(sp, "SELECT count(*) FROM chunks", 0);
  sp->next_sid = query_int(sp, "SELECT max(id) FROM streams", 0);
  sp->stats.bytes = sp->bytes;
  sp->stats.chunks = sp->chunks;
  sb__spool_update_unsent(sp, now_ms(), &sp->stats);
  load_resume(sp, resume, nresume);
  sp->upstream = cfg->upstream ? sb__xstrdup(cfg->upstream) : NULL;
  load_names(sp);
  /* The reserve is made by the worker within a second (writing it here would hold up
   * the start by as long as the disk takes to write and flush it). */
  SB_LOG_I("spool",
           "%s: %llu bytes in %llu chunks, %llu streams to resume (synchronous=%s, "
           "durability=%s)",
           sp->path, (unsigned long long)sp->bytes, (unsigned long long)sp->chunks,
           (unsigned long long)*nresume,
           cfg->synchronous == SB__SYNC_FULL ? "full" : "normal",
           cfg->durability == SB__DURABILITY_ALWAYS  ? "always"
           : cfg->durability == SB__DURABILITY_SPOOL ? "spool"
                                                     : "backlog");
  uv_mutex_init(&sp->mutex);
  uv_cond_init(&sp->cond);
  uv_async_init(loop, &sp->async, sb__spool_on_async);
  sp->async.data = sp;
  /* Referenced: while the spool is open the loop runs, so a stop waits for the jobs
   * still out (the broker closes the spool last). */
  if (uv_thread_create(&sp->thread, sb__spool_worker, sp) != 0) {
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
  sb__spool_deliver(sp);
  exec(sp, "PRAGMA wal_checkpoint(TRUNCATE)");
  db_close(sp);
  SB_LOG_I("spool", "%s closed: %llu bytes in %llu chunks", sp->path,
           (unsigned long long)sp->bytes, (unsigned long long)sp->chunks);
  uv_mutex_destroy(&sp->mutex);
  uv_cond_destroy(&sp->cond);
  free(sp->path);
  free(sp->reserve_path);
  free(sp->data_dir);
  free(sp->pending);
  free(sp->upstream);
  {
    size_t i;
    for (i = 0; i < sp->nnames; i++)
      free(sp->names[i]);
    free(sp->names);
  }
  sp->async.data = sp;
  uv_close((uv_handle_t*)&sp->async, on_async_closed);
}
