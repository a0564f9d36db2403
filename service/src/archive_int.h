/*
 * archive_int.h - what the archive's files share (archive.c and archive_*.c; their
 * layers are listed in archive.c): the archive's state, one stream's sink, and each
 * file's functions for the others, in sections by file, lowest first. Included by the
 * archive's files only; other modules include internal.h (and so archive.h).
 */
#ifndef SB_SERVICE_ARCHIVE_INT_H
#define SB_SERVICE_ARCHIVE_INT_H

#include "internal.h"
#include "strset.h"

/* How many sequence numbers a stream tries before it gives up. */
#define AR_MAX_SEQ 100000u
/* One write request takes at most this many chunks and bytes. */
#define AR_MAX_BUFS 64
#define AR_MAX_BATCH (1024u * 1024u)
/* Draining the spool, the .log is flushed (and the spool told) at least this often. */
#define AR_FLUSH_BYTES (8u * 1024u * 1024u)

/* The file request in flight (ar->op). */
enum {
  AR_NONE = 0,
  AR_LOG_OPEN,   /* claims a sequence number: O_CREAT | O_EXCL */
  AR_LOG_REOPEN, /* a retry: the claimed .log again */
  AR_LOG_STAT,   /* ... and its size, to go on only where it ends */
  AR_LOG_WRITE,
  AR_LOG_FLUSH, /* draining: fsync before the spool forgets what was written */
  AR_LOG_SYNC,  /* the end: fsync */
  AR_LOG_CLOSE,
  AR_BREAK_SYNC,  /* a .log that failed: what it holds is flushed ... */
  AR_BREAK_CLOSE, /* ... and it is closed (results only logged) */
  AR_JSON_OPEN,
  AR_JSON_CLEAR, /* what was in the .tmp's place is removed, then the open again */
  AR_JSON_WRITE,
  AR_JSON_SYNC,
  AR_JSON_CLOSE,
  AR_JSON_RENAME,
  AR_JSON_UNLINK,
  AR_JSON_INPLACE
};

/* What the archive knows of one name, an entry of the index (a string set): its value
 * is the end of the name's data (bytes, or datagrams for datagram streams) over every
 * segment archived, for gaps. */
typedef sb__strset_entry_t ar_known_t;

/* A closed segment, as retention sees it. */
typedef struct {
  char* stem;     /* ARCHIVE_DIR/PATH or PATH+N, without the extension */
  uint64_t bytes; /* .log and .json together */
  uint64_t files; /* of them, 1 or 2 */
  int64_t time;   /* when it was closed (the .log's last change), Unix seconds */
} ar_closed_t;

struct sb__archive_state_s {
  sb__strset_t known; /* every name archived: ar_known_t */
  uint64_t bytes;     /* files of the archive (.log and .json), as known */
  uint64_t files;
  /* Closed segments, oldest first from closed[head] (sorted at start; streams that
   * close later are added at the end, in the order they close). */
  ar_closed_t* closed;
  size_t head, nclosed, closed_cap;
  /* Retention: one batch of deletions at a time, on the threadpool. */
  sb__broker_t* broker;
  uv_timer_t timer; /* the age check, every minute; NULL data until started */
  int timer_started;
  uv_work_t work;
  int busy, again, closing;
  ar_closed_t* victims;
  size_t nvictims;
  int* results;             /* per victim: files deleted, or a negative libuv error */
  uint64_t* deleted;        /* per victim: bytes deleted */
  uint64_t removed_streams; /* by retention since start */
  /* The spool route (archive_spool.c). */
  uint64_t outages;       /* streams whose files cannot be written now */
  uint64_t waiting;       /* streams with data in the spool for the archive */
  uint64_t drain_bytes;   /* read back from the spool and not yet written */
  uint64_t drain_waiters; /* streams waiting for drain_bytes to fall */
  char* last_error;       /* what failed last, for sbctl status */
  sb__time_t last_error_at;
};

/* Where a stream's data goes (one state per sink; see archive_spool.c). */
typedef enum {
  AR_DIRECT = 0, /* to its .log as it is read */
  AR_BROKEN,     /* the .log cannot be written: to the spool, a retry is due */
  AR_REOPENING,  /* a retry: the .log is being opened again */
  AR_DRAINING    /* the .log is written again, from the spool, until it catches up */
} sb__archive_route_t;

/*
 * What the files below the writer (archive_io.c, archive_spool.c) call up through: the
 * writer's functions, given to each sink when it is made, so that no lower file calls
 * an upper one.
 */
struct sb__archive_s;
typedef struct {
  /* A file request finished with result (a libuv error, or what it returns). */
  void (*complete)(struct sb__archive_s* ar, int result);
  /* The writer's functions of the same names (archive_writer.c). */
  void (*step)(struct sb__archive_s* ar);
  void (*notify)(struct sb__archive_s* ar);
  void (*drop_queue)(struct sb__archive_s* ar);
  void (*maybe_done)(struct sb__archive_s* ar);
  void (*end)(struct sb__archive_s* ar, int kept);
} ar_writer_ops_t;

typedef struct sb__archive_s {
  sb__sink_t sink;
  const ar_writer_ops_t* up; /* the writer, for the files below it */
  uv_fs_t req;               /* the one file request; valid while op != AR_NONE */
  uv_idle_t idle;            /* defers a failed submission; closing it ends the sink */
  uv_timer_t backoff;        /* the next retry of a .log that could not be written */
  int open_handles;
  int op;
  int deferred; /* result of a request that could not be submitted */
  char* stem;   /* ARCHIVE_DIR/PATH, platform separators */
  char* parent; /* its directory, made again by a retry */
  char* log_path;
  char* json_path;
  char* tmp_path;
  unsigned seq;
  uv_file log_fd; /* -1 when not open */
  uv_file tmp_fd;
  int64_t offset; /* bytes in the segment's .log */
  /* The write queue: chunks from the client (wq_direct: counted in sink.queued), or
   * read back from the spool (counted in the state's drain_bytes). */
  sb__chunk_t *head, *tail;
  size_t head_off; /* bytes of head already written */
  int wq_direct;
  char* json; /* sidecar text being written */
  size_t json_len, json_off;
  uint64_t json_bytes; /* size of the sidecar on disk */
  int json_pending;    /* the sidecar is to be written next */
  int json_final;      /* ... in its closing version (fsync before the rename) */
  int json_failed;     /* the current sidecar write failed: clean up the .tmp */
  int json_err;        /* ... with this libuv error (the first), what and where */
  const char* json_what;
  char* json_where;
  int inplace_tried; /* the closing sidecar was written over the old one instead */
  int tmp_cleared;   /* something in the .tmp's place was removed for this open */
  int claimed;       /* log_path is ours */
  int finishing;
  int synced;
  int log_done; /* the .log is complete, flushed and closed: only the closing
                   sidecar is left */
  int final_json_done;
  int failed; /* data is dropped from now on */
  int paused; /* queued went above the watermark; the stream waits for drained */
  int ending;
  int done_told;   /* sb__sink_done was called */
  int in_complete; /* inside ar_complete: finish must not step */
  int err;         /* first error, for done */
  char* err_text;  /* what failed, for the log and the sidecar */
  sb__time_t closed;
  int has_closed;
  uv_work_t work; /* a file opened, a sidecar rename tried again, or written in place */
  int work_result;
  const char* open_path; /* the file opened by work: log_path or tmp_path */
  int open_flags;
  unsigned renames_tried;
  ar_known_t* known; /* this name's entry */
  uint64_t start;    /* the streambroker.offset tag the stream came with (0: none) */
  int gap;           /* 1: data gap_from..gap_to never arrived; 2: nothing known */
  uint64_t gap_from, gap_to;
  /* Segments: a stream whose .log was lost or damaged while it could not be written,
   * or that resumes from the spool after a restart, goes on in a new segment (the
   * next sequence number) tagged with where it starts, as a reopened stream is. */
  uint64_t seg_start;    /* stream byte offset of the .log's first byte */
  uint64_t seg_mark;     /* its resend mark: the byte offset, or the datagram index */
  int resumed;           /* from the spool, at start: no client */
  sb__time_t seg_opened; /* when a segment after the stream's first was begun */
  int has_seg_opened;
  int gap_check;   /* resumed: its gap is checked once the spool says where it starts */
  sb__dgram_t wdg; /* datagram framing of the bytes the .log holds */
  sb__buf_t dg_tail; /* the .log's bytes after its last datagram boundary */
  /* The route (archive_spool.c). */
  sb__archive_route_t route;
  int in_outage;      /* counted in the state's outages: logged once */
  unsigned attempt;   /* retries that failed in this outage */
  uint64_t outage_ms; /* uv_now when it began */
  int retry_due;      /* the backoff ran out: reopen once the last request is done */
  int pre_sync;       /* the broken .log is to be flushed before it is closed */
  int checked;        /* the reopened .log was found intact, at its length */
  int new_segment;    /* the reopen starts a new segment */
  int window_known;   /* ... whose start the spool has said (seg_start, seg_mark) */
  int hole;          /* the spool lacks data: a new segment once the queue is written */
  int64_t sid;       /* the stream's spool row */
  int row;           /* submitted */
  int waiting;       /* counted in the state's waiting */
  uint64_t next_off; /* bytes read from the client (resumed: the spool's end) */
  uint64_t next_seq;
  uint64_t committed; /* the spool holds the stream's data up to here */
  uint64_t read_off;  /* read back up to here */
  uint64_t trunc_off; /* the spool refused data from here on (UINT64_MAX: never) */
  uint64_t unsynced;  /* written from the spool since the last fsync */
  uint64_t spooled;   /* bytes that went through the spool */
  uint64_t hole_off;  /* ... at this byte offset */
  uint64_t corrupt;   /* bytes the spool found damaged (left out of reads) */
  uint64_t lost;      /* bytes the spool lost (dropped at its cap, damaged) */
  uint64_t stat_size; /* the reopened .log's size */
  int jobs_out, appends_out, reading, ack_out, ack_again, drain_wait, durable_told;
} sb__archive_t;

/* The stream's byte offset of the next byte the .log takes. */
static inline uint64_t sb__archive_written(const sb__archive_t* ar) {
  return ar->seg_start + (uint64_t)ar->offset;
}

static inline unsigned long long sb__archive_id(const sb__archive_t* ar) {
  return (unsigned long long)ar->sink.stream->id;
}

static inline sb__broker_t* sb__archive_broker(const sb__archive_t* ar) {
  return ar->sink.stream->broker;
}

/* The end of what the spool can give back: committed, and never past a refusal. */
static inline uint64_t sb__archive_spooled_end(const sb__archive_t* ar) {
  return ar->committed < ar->trunc_off ? ar->committed : ar->trunc_off;
}

/* Whether the .log ends on a datagram boundary (always, for other types). */
static inline int sb__archive_at_boundary(const sb__archive_t* ar) {
  return ar->sink.stream->props.type != SB_DATAGRAM ||
         (!ar->wdg.in_body && !ar->wdg.pending_end && ar->wdg.varint.nbytes == 0);
}

/* The datagram index of the .log's next datagram (datagram streams). */
static inline uint64_t sb__archive_dgram_index(const sb__archive_t* ar) {
  return ar->seg_mark + ar->wdg.count;
}

/* ---- archive_path.c ---- */

/* STEM.ext, or STEM+SEQ.ext when seq > 0 (a new string). */
char* sb__archive_path_with(const char* stem, unsigned seq, const char* ext);
/* ARCHIVE_DIR joined with each segment of the mapped path rel, with the platform's
 * separator; *parent gets the path without the last segment (both new strings). */
char* sb__archive_path_join(const char* archive_dir, const char* rel, char** parent);
/* The sequence number in a stem's "+N" suffix (0 when none). */
unsigned sb__archive_path_seq(const char* stem);

/* ---- archive_index.c ---- */

/* The broker's archive state, made at first use. */
sb__archive_state_t* sb__archive_index_state(sb__broker_t* b);
/* The entry of a name, made (end 0) when create and absent; NULL otherwise. */
ar_known_t* sb__archive_index_known(sb__archive_state_t* st, const char* name,
                                    int create);
/* Raises a name's end to end (k may be NULL). */
void sb__archive_index_end(ar_known_t* k, uint64_t end);
/* A closed segment, at the end of the list (stem is copied). */
void sb__archive_index_add_closed(sb__archive_state_t* st, const char* stem,
                                  uint64_t bytes, uint64_t files, int64_t time);
/* The streambroker.offset tag: 1 with *out set, 0 when absent, -1 when not a
 * decimal number (logged by the caller). */
int sb__archive_index_offset_tag(const char* v, uint64_t* out);
/* qsort's order of closed segments: oldest first, then by stem. */
int sb__archive_index_closed_cmp(const void* a, const void* b);
/* Frees the state and all it knows. */
void sb__archive_index_free(sb__archive_state_t* st);
/* The key of a stream's name in the index (its original name, when a broker in front
 * renamed it). */
const char* sb__archive_index_key(const sb__stream_t* s);
/* Records a gap before the segment: data from..to never arrived (or was lost). */
void sb__archive_gap(sb__archive_t* ar, uint64_t from, uint64_t to);
/* The gap check of a stream that starts at `at` (its tag plus the segment's mark). */
void sb__archive_check_gap(sb__archive_t* ar, uint64_t at);

/* ---- archive_sidecar.c ---- */

struct cJSON;
/* The sidecar's versions. */
enum { AR_SIDECAR_OPEN, AR_SIDECAR_CLOSED, AR_SIDECAR_LEFT };

/* Records the first error of a stream (done reports it, the sidecar says it). */
void sb__archive_set_error(sb__archive_t* ar, int err, const char* what,
                           const char* path, const char* why);
/* item, or the service aborts when cJSON could not allocate it (as sb__xmalloc). */
struct cJSON* sb__archive_sidecar_need(struct cJSON* item);
/* What the stream read and the archive does not hold. */
uint64_t sb__archive_sidecar_lost(const sb__archive_t* ar);
/* The sidecar's text in a version (cJSON_free). */
char* sb__archive_sidecar(sb__archive_t* ar, int version);
/* Makes ar->json, the opening or closing (final) version with its newline. */
void sb__archive_sidecar_make(sb__archive_t* ar, int final);
/* Starts writing the sidecar: PATH.json.tmp, then renamed over PATH.json. */
void sb__archive_sidecar_start(sb__archive_t* ar, int final);
/* A sidecar read whole and parsed; NULL when unreadable or not an object. Blocking. */
struct cJSON* sb__archive_sidecar_read(const char* path);
/* Sets obj's key to item (replacing it). */
void sb__archive_sidecar_set(struct cJSON* obj, const char* key, struct cJSON* item);
/* Writes text as path, through path.tmp, fsync and a rename. 0 or a libuv error.
 * Blocking: the threadpool's, or the scan's at start. */
int sb__archive_sidecar_write(const char* path, const char* text);

/* ---- archive_retention.c ---- */

/* Deletes the oldest closed segments while the archive is over its limits (a batch on
 * the threadpool; nothing without limits, or while closing). */
void sb__archive_retention_check(sb__broker_t* b);
/* Starts the age check's timer (it does not keep the loop alive). */
void sb__archive_retention_start(sb__broker_t* b, sb__archive_state_t* st);

/* ---- archive_recovery.c ---- */

/* The scan at start: what it learns, and where. */
typedef struct {
  sb__broker_t* b;
  sb__archive_state_t* st;
  const char* root;
  uint64_t segments;
} ar_scan_t;

/* Scans dir (depth levels below the root) and every directory below it. */
void sb__archive_recovery_scan(ar_scan_t* sc, const char* dir, int depth);

/* ---- archive_io.c ---- */

/* The callback of every libuv file request of a sink. */
void sb__archive_io_on_fs(uv_fs_t* req);
/* Records the request in flight (op); one that could not be submitted (r < 0)
 * completes on the next loop turn with r. */
void sb__archive_io_submitted(sb__archive_t* ar, int op, int r);
/* Opens path (a .log or the .tmp) on the threadpool through sb__file_open. */
void sb__archive_io_open(sb__archive_t* ar, int op, const char* path, int flags);
/* Creates the sidecar's .tmp (exclusively), its text made again if it failed before. */
void sb__archive_io_json_open(sb__archive_t* ar);
/* Writes the rest of the sidecar's text to the .tmp. */
void sb__archive_io_json_write(sb__archive_t* ar);
/* Writes the head of the queue at the .log's end (one batch). */
void sb__archive_io_data(sb__archive_t* ar);
/* The sidecar step after a failure: closes the .tmp if open, else removes it. */
void sb__archive_io_json_cleanup(sb__archive_t* ar);
/* Flushes (if due) and closes a .log that failed; 1 while a step was submitted, 0
 * once it is closed. */
int sb__archive_io_close_failed_log(sb__archive_t* ar);
/* Work: the sidecar's rename tried again after 20 ms. */
void sb__archive_io_rename_work(uv_work_t* w);
/* Work: the closing sidecar written over the opening one. */
void sb__archive_io_inplace_work(uv_work_t* w);
/* The done callback of both: completes with the work's result. */
void sb__archive_io_work_done(uv_work_t* w, int status);

/* ---- archive_writer.c ---- */

/* A file error that retrying cannot cure, or any once the stream has failed: logged,
 * counted, and the client's connection closed; the files are still closed. */
void sb__archive_fail(sb__archive_t* ar, const char* what, const char* path, int err,
                      const char* why);
/* A file request failed: the spool and a retry when it may pass, else a failure. */
void sb__archive_break(sb__archive_t* ar, const char* what, const char* path, int r);
/* sb__mkdir_p's errors, said as a person would look for them. */
const char* sb__archive_mkdir_why(int err);
/* The segment's paths from the stem and the sequence number. */
void sb__archive_set_paths(sb__archive_t* ar);
/* n written bytes leave the queue (counted, tracked, the name's end raised). */
void sb__archive_consume(sb__archive_t* ar, size_t n);
/* The segment cannot go on: the stream goes on in a new one (gone: no .log left). */
void sb__archive_leave_segment(sb__archive_t* ar, int gone);
/* A sidecar request failed: the first failure is kept for sb__archive_json_gave_up. */
void sb__archive_json_failed(sb__archive_t* ar, const char* what, const char* path,
                             int r);
/* The sidecar could not be written in any way: retried with the archive, or a
 * failure. */
void sb__archive_json_gave_up(sb__archive_t* ar);

/* Decides and submits the sink's next request (nothing when one is in flight). */
void sb__archive_step(sb__archive_t* ar);
/* Lets a paused client go on once the queue allows it. */
void sb__archive_notify(sb__archive_t* ar);
/* Empties the write queue (its accounting included). */
void sb__archive_drop_queue(sb__archive_t* ar);
/* Ends a sink for good when everything is done: done runs once its handles are
 * closed and no spool job is out. */
void sb__archive_maybe_done(sb__archive_t* ar);
/* Ends the sink: kept, its data stays in the spool for the next start. */
void sb__archive_end(sb__archive_t* ar, int kept);

/* ---- archive_spool.c ---- */

/* A file request failed and can be retried: counts and logs the outage once (or a
 * retry that failed), turns the stream to the spool and schedules the next retry. */
void sb__archive_spool_break(sb__archive_t* ar, const char* what, const char* path,
                             const char* why);
/* The reopen worked: the spool drains into the .log. */
void sb__archive_spool_writable(sb__archive_t* ar);
/* A write worked: the outage, if any, ends (logged, counted; the others retry now). */
void sb__archive_spool_wrote(sb__archive_t* ar);
/* A chunk read from the client while the route is not direct. */
void sb__archive_spool_append(sb__archive_t* ar, sb__chunk_t* c);
/* A spool job of the stream (counted in jobs_out until its done runs). */
sb__spool_job_t* sb__archive_spool_job(sb__archive_t* ar, sb__spool_op_t op,
                                       void (*done)(sb__spool_job_t*));
/* The done of a job whose result is only logged. */
void sb__archive_spool_job_done(sb__spool_job_t* j);
/* The backoff timer's callback: the retry is due. */
void sb__archive_spool_on_backoff(uv_timer_t* t);

/* Tells the stream once every byte read from its client is stored. */
void sb__archive_spool_durable(sb__archive_t* ar);
/* The sink ends: its row goes unless kept (the service stops with data in it). */
void sb__archive_spool_end(sb__archive_t* ar, int kept);
/* Sets up a sink for a stream resumed from the spool. */
void sb__archive_spool_resume(sb__archive_t* ar, const sb__spool_resume_t* r);
/* Adds the route's state to a stream's entry (admin "streams"). */
void sb__archive_spool_describe(sb__archive_t* ar, void* cjson_object);
/* Adds the archive's writability and what waits in the spool to the status. */
void sb__archive_spool_status(sb__broker_t* b, void* cjson_object);

/* ---- archive_drain.c ---- */

/* Reads the spool's window: the oldest resend point on, the start of a new segment. */
void sb__archive_drain_window(sb__archive_t* ar);
/* Draining: reads the next part of the spool, or waits for what is out. Returns 0 once
 * the .log has caught up with the spool (the route is direct again). */
int sb__archive_drain_next(sb__archive_t* ar);
/* Whether draining has read everything the spool holds (time to flush). */
int sb__archive_drain_caught_up(const sb__archive_t* ar);
/* The .log is flushed up to sb__archive_written: the spool may forget what is before.
 */
void sb__archive_drain_flushed(sb__archive_t* ar);
/* Read-back bytes left the write queue (written or dropped). */
void sb__archive_drain_released(sb__archive_t* ar, uint64_t n);

#endif /* SB_SERVICE_ARCHIVE_INT_H */
