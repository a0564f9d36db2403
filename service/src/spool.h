/*
 * spool.h - the SQLite spool and its jobs (spool.c).
 *
 * Included by internal.h, after the log, config and counters it uses; a module includes
 * internal.h, not this file.
 */
#ifndef SB_SERVICE_SPOOL_H
#define SB_SERVICE_SPOOL_H

/* ---- spool.c: the SQLite spool, written by a worker thread ---- */

/*
 * The spool is DATA_DIR/spool.db, SQLite in WAL mode, with one row per stream (its
 * upstream handshake properties and its cursor: the bytes whose upstream write
 * completed) and one per chunk of data (stream, sequence number, byte offset, resend
 * mark, time, bytes). One worker thread owns the database: the loop submits jobs, the
 * worker runs every job queued so far in one transaction (group commit), then hands
 * them back to the loop, in submission order, through a uv_async_t, where each job's
 * done callback runs. So a slow disk never blocks the loop, and a chunk and the cursor
 * that follows it are committed together or not at all.
 */
typedef struct sb__spool_s sb__spool_t;

typedef enum {
  SB__SPOOL_OPEN,   /* a stream's row: sid, props, type */
  SB__SPOOL_APPEND, /* a chunk of stream sid: chunk (its off, mark), seq */
  SB__SPOOL_ACK,    /* cursor of sid := off; chunks ending at or before trim go (but
                       the last resend point at or before trim, unless exact) */
  SB__SPOOL_FORGET, /* stream sid and its chunks go (delivered, upstream closed) */
  SB__SPOOL_READ,   /* committed chunks of sid from off (window: from the oldest
                       chunk whose mark is >= 0 instead), at most limit bytes */
  SB__SPOOL_NAME    /* props (stream names, one a line) were sent to the upstream:
                       remembered (seq: how many) */
} sb__spool_op_t;

typedef struct sb__spool_job_s sb__spool_job_t;
struct sb__spool_job_s {
  sb__spool_job_t* next;
  sb__spool_op_t op;
  int64_t sid;
  uint64_t seq;       /* APPEND */
  uint64_t off;       /* ACK: the cursor; READ: first byte wanted */
  uint64_t trim;      /* ACK */
  int exact;          /* ACK: trim exactly (memory holds the window's start) */
  uint64_t limit;     /* READ */
  int window;         /* READ */
  int type;           /* OPEN: sb_stream_type_t */
  char* props;        /* OPEN: the handshake JSON (freed with the job by its owner) */
  sb__chunk_t* chunk; /* APPEND: the data (a reference the owner drops in done);
                         READ: the result, a list linked by next, each with off, mark */
  int status;         /* in done: 0, SB_ENOSPC (cap or disk full: not stored), SB_EIO
                         (not stored; READ: the spool is damaged from off on),
                         SB_EBUSY (READ: failed for now, try again later) */
  uint64_t corrupt;   /* READ: bytes of chunks that failed their checksum (deleted,
                         left out of the result) */
  uint64_t freed;     /* ACK: chunk bytes trimmed */
  void (*done)(sb__spool_job_t* job); /* loop thread */
  void* data;
};

typedef struct {
  uint64_t bytes; /* chunk bytes in the spool */
  uint64_t chunks;
  int64_t oldest_unsent_ms; /* creation time (Unix ms) of the oldest unsent chunk; 0:
                               none */
  uint64_t dropped_bytes;   /* by drop-oldest */
  uint64_t refused_bytes;   /* by refuse, the cap or a full disk */
  uint64_t full_errors;     /* SQLITE_FULL and I/O errors of transactions */
  uint64_t moved_aside;     /* damaged or foreign databases moved aside at start */
  uint64_t commits;
  uint64_t corrupt_chunks; /* chunks that failed their checksum (never forwarded) */
  uint64_t corrupt_bytes;
  uint64_t pending_deletes; /* streams whose delivered data waits to be deleted (full
                               disk) */
} sb__spool_stats_t;

/* A stream left in the spool by an earlier run, to be resumed. */
typedef struct {
  int64_t sid;
  char* props;  /* the handshake JSON */
  uint64_t end; /* bytes spooled: the end of its last chunk */
  uint64_t next_seq;
  uint64_t acked;  /* its cursor */
  uint64_t chunks; /* chunks it has in the spool */
} sb__spool_resume_t;

/*
 * Opens DATA_DIR/spool.db at start (loop thread, before serving): checks it
 * (quick_check, schema version); a damaged database or one of another schema is
 * moved aside as spool.db.bad-TIME (with its -wal and -shm) with an error logged, and
 * a new one is made. Lists the streams to resume (free with sb__spool_resume_free),
 * then starts the worker. Returns 0 or SB_E* after logging.
 */
int sb__spool_open(sb__spool_t** out, uv_loop_t* loop, const sb__config_t* cfg,
                   sb__spool_resume_t** resume, size_t* nresume);
void sb__spool_resume_free(sb__spool_resume_t* r, size_t n);
/* The names sent to the configured upstream by earlier runs (loaded at open): the
 * caller takes the array and its strings (free each, then the array); a second call
 * gives none. Loop thread. */
void sb__spool_names_take(sb__spool_t* sp, char*** names, size_t* n);
/* The next free stream id. */
int64_t sb__spool_new_sid(sb__spool_t* sp);
/* Queues a job; its done runs on the loop thread later (never inside this call). */
void sb__spool_submit(sb__spool_t* sp, sb__spool_job_t* job);
void sb__spool_stats(sb__spool_t* sp, sb__spool_stats_t* out);
/* Runs every queued job (their done callbacks included), stops the worker, closes the
 * database and frees sp. Loop thread; blocks until the worker is done. */
void sb__spool_close(sb__spool_t* sp);

#endif /* SB_SERVICE_SPOOL_H */
