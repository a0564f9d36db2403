/*
 * spool.c - the SQLite spool (see internal.h): schema, start-up check, and the worker
 * thread that runs the loop's jobs in group-committed transactions.
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
 *
 * A full disk. Deleting delivered rows needs room too (WAL frames), so the spool keeps
 * a reserve: a file of spool_reserve_bytes beside the database, made while there is
 * room and removed when a transaction fails for want of space, or at start. With it
 * gone, delivered data can be deleted and the WAL checkpointed and truncated, and the
 * spool drains and takes new streams again even while other files fill the disk.
 * Deletes that still cannot commit are kept and retried with every later batch, so
 * delivered data never stays for good. The WAL budget is at most half the reserve, so
 * the reserve's room lets a checkpoint copy the whole WAL into the database. Until the
 * reserve is back (or the disk has room again), new data goes only into pages the
 * database file already has free: the file then never needs to grow, so checkpoints and
 * deletes cannot fail for want of space, and new streams are taken as soon as delivered
 * ones are deleted. The WAL is held to a budget (a quarter of spool_max_bytes, at most
 * 16 MiB: wal_autocheckpoint and journal_size_limit), and that budget counts against
 * spool_max_bytes.
 */
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "crc32c.h"
#include "internal.h"

#define SB__SPOOL_SCHEMA 2
#define SB__SPOOL_APP_ID 0x53425350 /* "SBSP" */
#define SB__BATCH_JOBS 1024
#define SB__BATCH_BYTES (8u * 1024u * 1024u)
/* Names sent upstream are remembered a week (a butler lives as long as its build),
 * and at most this many per upstream. */
#define SB__NAMES_AGE_MS (7ll * 24 * 3600 * 1000)
#define SB__NAMES_KEEP 1000000

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
  ST_SAVEPOINT,
  ST_RELEASE,
  ST_ROLLBACK_TO,
  ST_FREELIST,
  ST_NAME,
  ST_COUNT
};

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

/* A delete that could not commit (disk full): retried with every batch until it does.
 */
typedef struct {
  int64_t sid;
  int forget;    /* the stream and all its chunks go */
  uint64_t off;  /* ACK: the cursor */
  uint64_t trim; /* ACK: chunks ending at or before this go */
} sb__spool_pending_t;

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
  char* reserve_path;
  uint64_t reserve_size;    /* spool_reserve_bytes; 0: none */
  int reserve_held;         /* the reserve file is there, whole (worker) */
  int reserve_warned;       /* said once that it cannot be made */
  int64_t reserve_next_try; /* when to try to make it again (Unix ms; worker) */
  uint64_t wal_budget;      /* bytes of WAL between checkpoints, counted in the cap */
  int tight;                /* the disk filled and the reserve is not back: new data
                               goes only into free pages the database already has, so
                               that the file never needs to grow (worker) */
  char* data_dir;
  sb__spool_pending_t* pending; /* worker */
  size_t npending, pending_cap;
  char* upstream; /* cfg's upstream (NULL: archive mode): sent_names' key */
  char** names;   /* the names sent to it before, loaded at open, until taken */
  size_t nnames;
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
    " created INTEGER NOT NULL, data BLOB NOT NULL, crc INTEGER);"
    "CREATE UNIQUE INDEX IF NOT EXISTS chunks_stream ON chunks(sid, end_off);";

/* Made in every spool at open, old ones too: a spool without it is still version 2. */
static const char names_sql[] =
    "CREATE TABLE IF NOT EXISTS sent_names("
    " upstream TEXT NOT NULL, name TEXT NOT NULL, sent INTEGER NOT NULL,"
    " PRIMARY KEY(upstream, name)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS sent_names_age ON sent_names(upstream, sent);";

/* Whether an SQLite error proves the file damaged or foreign, as opposed to one that
 * says it cannot be read or written now (full disk, I/O error, locked, no memory):
 * only the first kind moves a spool aside. */
static int proves_damage(int rc) {
  rc &= 0xff;
  return rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB || rc == SQLITE_FORMAT;
}

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
#ifndef _WIN32
  {
    /* Log data: the service's alone, or reader_group's too (SQLite gives its -wal and
     * -shm files the database's mode). A link in its place is refused here, never
     * followed: SQLite would follow it (it opens its -wal and -journal with
     * O_NOFOLLOW itself). SQLITE_OPEN_NOFOLLOW is not used: it also refuses a data_dir
     * reached through a link, such as /var/lib on another disk. */
    uv_fs_t req;
    int fd = sb__file_open(sp->path, UV_FS_O_RDWR | UV_FS_O_CREAT);
    if (fd == UV_ELOOP || fd == UV_EFTYPE || fd == UV_EPERM) {
      snprintf(why, why_size, "cannot open it (%s: refused, left as it is)",
               fd == UV_ELOOP    ? "a symbolic link"
               : fd == UV_EFTYPE ? "not a regular file"
                                 : "not the service's own file");
      return -1;
    }
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

/* ---- deletes kept for later, and the reserve ---- */

/* Keeps a delete that could not commit; a later one for the same stream replaces it. */
static void pending_add(sb__spool_t* sp, const sb__spool_job_t* j) {
  sb__spool_pending_t* p = NULL;
  size_t i;
  for (i = 0; i < sp->npending; i++)
    if (sp->pending[i].sid == j->sid)
      p = &sp->pending[i];
  if (p == NULL) {
    if (sp->npending == sp->pending_cap) {
      sp->pending_cap = sp->pending_cap ? 2 * sp->pending_cap : 16;
      sp->pending = sb__xrealloc(sp->pending, sp->pending_cap * sizeof(*p));
    }
    p = &sp->pending[sp->npending++];
    memset(p, 0, sizeof(*p));
    p->sid = j->sid;
  }
  if (j->op == SB__SPOOL_FORGET) {
    p->forget = 1;
  } else if (!p->forget && j->off >= p->off) {
    p->off = j->off;
    p->trim = j->trim;
  }
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

/* Writes the reserve file: reserve_size bytes really written, so that removing it
 * gives them back. Returns 0, or a libuv error (the file is removed again). */
static int reserve_write(sb__spool_t* sp) {
  static const char zeros[65536];
  uv_fs_t req;
  uint64_t done = 0;
  uv_file fd;
  int r;
  /* Made anew, never through what is in its place: a link there is removed (not its
   * target), and O_EXCL refuses one put back meanwhile. */
  uv_fs_unlink(NULL, &req, sp->reserve_path, NULL);
  uv_fs_req_cleanup(&req);
  fd = sb__file_open(sp->reserve_path, UV_FS_O_WRONLY | UV_FS_O_CREAT | UV_FS_O_EXCL);
  if (fd < 0)
    return fd;
  r = 0;
  while (done < sp->reserve_size) {
    size_t n = sp->reserve_size - done < sizeof(zeros)
                   ? (size_t)(sp->reserve_size - done)
                   : sizeof(zeros);
    uv_buf_t buf = uv_buf_init((char*)zeros, (unsigned)n);
    r = uv_fs_write(NULL, &req, fd, &buf, 1, (int64_t)done, NULL);
    uv_fs_req_cleanup(&req);
    if (r <= 0) {
      r = r < 0 ? r : UV_ENOSPC;
      break;
    }
    done += (uint64_t)r;
    r = 0;
  }
  if (r == 0) {
    r = uv_fs_fsync(NULL, &req, fd, NULL);
    uv_fs_req_cleanup(&req);
  }
  uv_fs_close(NULL, &req, fd, NULL);
  uv_fs_req_cleanup(&req);
  if (r < 0) {
    uv_fs_unlink(NULL, &req, sp->reserve_path, NULL);
    uv_fs_req_cleanup(&req);
  }
  return r;
}

/*
 * While the reserve is missing (worker thread, each batch: a statfs): makes it once
 * the file system has room for it, and ends the tight mode once there is room again
 * (the reserve is back, or, on a disk too small for it, a quarter of the disk is
 * free).
 */
static void reserve_check(sb__spool_t* sp, int64_t now) {
  uv_fs_t req;
  int64_t avail = -1, total = 0;
  int r;
  if ((sp->reserve_held || sp->reserve_size == 0) && !sp->tight)
    return;
  if (uv_fs_statfs(NULL, &req, sp->data_dir, NULL) == 0) {
    uv_statfs_t* fs = req.ptr;
    avail = (int64_t)(fs->f_bavail * fs->f_bsize);
    total = (int64_t)(fs->f_blocks * fs->f_bsize);
  }
  uv_fs_req_cleanup(&req);
  /* Twice its size free: room for the reserve and as much again (right after the
   * reserve was given back, the disk's free space is the reserve itself). */
  if (!sp->reserve_held && sp->reserve_size > 0 && now >= sp->reserve_next_try &&
      (avail < 0 || (uint64_t)avail >= 2 * sp->reserve_size)) {
    if ((r = reserve_write(sp)) == 0) {
      sp->reserve_held = 1;
      SB_LOG_I("spool", "%s: reserve of %llu bytes in place", sp->reserve_path,
               (unsigned long long)sp->reserve_size);
    } else {
      sp->reserve_next_try = now + 10000;
      if (!sp->reserve_warned)
        SB_LOG_W("spool", "%s: cannot make the reserve of %llu bytes: %s",
                 sp->reserve_path, (unsigned long long)sp->reserve_size,
                 uv_strerror(r));
      sp->reserve_warned = 1;
    }
  }
  if (sp->tight &&
      (sp->reserve_held || (avail >= 0 && ((uint64_t)avail >= 2 * sp->reserve_size ||
                                           (sp->reserve_size > (uint64_t)total / 4 &&
                                            avail >= total / 4))))) {
    sp->tight = 0;
    SB_LOG_I("spool", "room again on the disk: new data is taken as usual");
  }
}

/* Gives the reserve back to the file system. Returns 1 if there was one. */
static int reserve_release(sb__spool_t* sp, int64_t now) {
  uv_fs_t req;
  int had;
  uv_fs_unlink(NULL, &req, sp->reserve_path, NULL);
  uv_fs_req_cleanup(&req);
  had = sp->reserve_held;
  sp->reserve_held = 0;
  sp->reserve_next_try = now;
  return had;
}

/* A RESTART checkpoint: the next transaction writes the WAL from its start again, in
 * room the file already has. In the tight mode it follows every commit, so the WAL
 * never needs to grow. */
static void checkpoint(sb__spool_t* sp) {
  int log = 0, done = 0;
  int r =
      sqlite3_wal_checkpoint_v2(sp->db, NULL, SQLITE_CHECKPOINT_RESTART, &log, &done);
  if (r != SQLITE_OK && r != SQLITE_BUSY)
    SB_LOG_W("spool", "checkpoint: %s (%d of %d WAL frames copied)", sqlite3_errstr(r),
             done, log);
}

/*
 * Room for the next try after a transaction failed for want of space: the reserve
 * goes (its space lets deletes and the checkpoint run), the WAL is checkpointed and
 * truncated, and with drop-oldest room is made for twice the batch in a transaction
 * of its own.
 */
static void free_space(sb__spool_t* sp, sb__spool_job_t* batch, int64_t now) {
  sb__spool_job_t* j;
  if (reserve_release(sp, now))
    SB_LOG_W("spool",
             "disk full: released the %llu-byte reserve so that delivered data can be "
             "deleted; it is made again once there is room",
             (unsigned long long)sp->reserve_size);
  /* RESTART, not TRUNCATE: the WAL keeps its room on disk (up to its budget) for the
   * transactions to come. */
  checkpoint(sp);
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
        pending_add(sp, j); /* the loop may go on: the delete is done later */
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
  reserve_check(sp, now);
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
          pending_add(sp, j);
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
    checkpoint(sp);
  reserve_check(sp, now);
  uv_mutex_lock(&sp->mutex);
  sp->stats.bytes = sp->bytes;
  sp->stats.chunks = sp->chunks;
  sp->stats.commits++;
  sp->stats.pending_deletes = sp->npending;
  update_unsent(sp, now, &sp->stats);
  uv_mutex_unlock(&sp->mutex);
}

static void worker(void* arg) {
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
  reserve_release(sp, 0);
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
  update_unsent(sp, now_ms(), &sp->stats);
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
