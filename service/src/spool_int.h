/*
 * spool_int.h - what the spool's files share: the database handle and its prepared
 * statements, the worker's state, and the functions one spool file calls in another.
 * Included by spool.c, spool_jobs.c, spool_reserve.c and posix/ and win/spoolfile.c
 * only; every other module includes internal.h (and spool.h through it).
 *
 * Layers (a file calls only those below it): spool.c (open, check, close) ->
 * spool_jobs.c (queue, worker, writes, reads) -> spool_reserve.c (reserve, kept
 * deletes); spoolfile.c is called by spool.c.
 */
#ifndef SB_SERVICE_SPOOL_INT_H
#define SB_SERVICE_SPOOL_INT_H

#include <sqlite3.h>

#include "internal.h"

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

static inline int64_t now_ms(void) {
  sb__time_t t = sb__time_now();
  return t.sec * 1000 + t.nsec / 1000000;
}

/* Whether an SQLite error proves the file damaged or foreign, as opposed to one that
 * says it cannot be read or written now (full disk, I/O error, locked, no memory):
 * only the first kind moves a spool aside. */
static inline int proves_damage(int rc) {
  rc &= 0xff;
  return rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB || rc == SQLITE_FORMAT;
}

/* ---- spool_jobs.c ---- */

/* The worker thread's body (arg: the spool). */
void sb__spool_worker(void* arg);
/* Loop thread: the done callbacks of finished jobs, in order. */
void sb__spool_deliver(sb__spool_t* sp);
/* The uv_async_t's callback (data: the spool): sb__spool_deliver. */
void sb__spool_on_async(uv_async_t* a);
/* The oldest unsent chunk's age into stats, at most once a second. */
void sb__spool_update_unsent(sb__spool_t* sp, int64_t now, sb__spool_stats_t* stats);

/* ---- spool_reserve.c (worker thread, but release also at open) ---- */

/* Keeps a delete (an ACK or FORGET job) that could not commit. */
void sb__spool_pending_add(sb__spool_t* sp, const sb__spool_job_t* j);
/* Makes the reserve when there is room; ends the tight mode. */
void sb__spool_reserve_check(sb__spool_t* sp, int64_t now);
/* Gives the reserve back to the file system. Returns 1 if there was one. */
int sb__spool_reserve_release(sb__spool_t* sp, int64_t now);
/* A RESTART checkpoint of the WAL. */
void sb__spool_checkpoint(sb__spool_t* sp);

/* ---- posix/spoolfile.c, win/spoolfile.c ---- */

/* Before SQLite opens the database at path: POSIX, opens (creates) it as a file the
 * service keeps (sb__file_open), so a link, a non-regular file or another's file in
 * its place is refused: -1 with why. Windows: nothing. 0 otherwise. */
int sb__spool_file_prepare(const char* path, char* why, size_t why_size);

#endif /* SB_SERVICE_SPOOL_INT_H */
