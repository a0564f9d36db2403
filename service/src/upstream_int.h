/*
 * upstream_int.h - the upstream sink's private header: one stream's state on its way
 * upstream (sb__upstream_t), shared by the files of the upstream module (upstream.c,
 * link.c, window.c, readback.c, win/ and posix/ confirm.c, and the unit tests),
 * as libuv's uv-common.h is. No other file includes it: the rest of the service sees
 * upstream.h only.
 */
#ifndef SB_SERVICE_UPSTREAM_INT_H
#define SB_SERVICE_UPSTREAM_INT_H

#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "link.h"

/* A read of the spool takes up to this much (counted in the budget). */
#define SB__SPOOL_READ_LIMIT (256u * 1024u)
/* A live stream whose connection holds more than the high watermark this long turns
 * to the spool (its client was paused meanwhile: a moment, not an outage). */
#define SB__LIVE_STALL_MS 500
/* trunc_off while the spool never refused the stream's data. */
#define SB__TRUNC_NONE UINT64_MAX

struct sb__upstream_s;

/* The route a stream's chunks take. Live (durability "backlog", while the connection
 * keeps up): written upstream at once and kept in the memory window. Spool: appended
 * to the spool first (always, but for live streams). */
typedef enum {
  SB__ROUTE_LIVE,
  SB__ROUTE_SPOOL,
} sb__route_t;

/*
 * What the lower files of the module ask of the upper ones, so that calls only go
 * down (upstream.c -> link.c -> readback.c, window.c, confirm.c -> budget.c,
 * names.c): set by upstream.c for each sink. link.c's part: pump .. proc_alive;
 * upstream.c's: maybe_done .. final_closed.
 */
typedef struct {
  void (*pump)(struct sb__upstream_s* up);
  void (*send)(struct sb__upstream_s* up, sb__chunk_t* c, int drain);
  void (*handshake)(struct sb__upstream_s* up, int tag, int64_t mark);
  void (*close)(struct sb__upstream_s* up);
  void (*broken)(struct sb__upstream_s* up, int err);
  void (*end_read)(struct sb__upstream_s* up);
  void (*end_unconfirmed)(struct sb__upstream_s* up);
  void (*end_lost)(struct sb__upstream_s* up);
  int (*proc_alive)(struct sb__upstream_s* up);
  void (*maybe_done)(struct sb__upstream_s* up);
  void (*maybe_live)(struct sb__upstream_s* up);
  void (*open_row)(struct sb__upstream_s* up);
  void (*final_closed)(uv_handle_t* h);
} sb__upstream_ops_t;

struct sb__upstream_s {
  sb__sink_t sink;
  const sb__upstream_ops_t* ops; /* the upper files' functions, for the lower ones */
  sb__broker_t* b;
  int64_t sid;
  char* props; /* the handshake JSON (timestamp filled in), as spooled */
  uv_pipe_t pipe;
  uv_timer_t timer;
  uv_timer_t read_timer;    /* a failed spool read is tried again */
  uint64_t conn_at;         /* uv_now when the current connection was dialed */
  uint64_t conn_epoch;      /* the broker's upstream_epoch then */
  unsigned refusals;        /* refusals in a row */
  unsigned name_n;          /* suffix of the name in use: 0 for the original */
  char* up_name;            /* the name the stream goes upstream under now */
  unsigned given_up_rounds; /* times given up: the retry backoff's step */
  uint64_t conn_written;    /* bytes of the current connection whose write completed,
                               handshake included */
  uint64_t conn_hs;         /* its handshake's length */
  uint64_t conn_read;       /* the most the upstream was seen to have read of it */
  int conn_read_known;      /* the platform told what the upstream left unread */
  int hole;                 /* bytes before send_off never went upstream: the next chunk
                               needs a reopen (tagged) first */
  uint64_t corrupt; /* bytes lost to checksum failures, not yet counted in a gap */
  int durable_told; /* the stream was told every byte is in the spool */
  uv_shutdown_t shutdown;
  uint64_t gen; /* connection number: writes of an old connection are ignored */
  unsigned attempt;
  int pipe_open;          /* pipe handle initialised and not closed */
  int pipe_closing;       /* pipe handle closing, its callback not run yet */
  sb__link_state_t state; /* the connection's (link.h) */
  int conn_done;          /* the connection ended cleanly after the last byte */
  int end_resend; /* the upstream died before confirming the end: the next reopen
                     says where it starts */
  sb__upstream_proc_t proc; /* the process serving the last connection */
  uint64_t sent_max; /* the furthest offset ever handed to a connection: bytes sent
                        below it are counted as resent */
  int reopen;        /* the next connection resends from the replay window */
  int gap;           /* the next connection starts at gap_off (data was dropped) */
  uint64_t gap_off;
  int64_t gap_mark;
  uint64_t next_off, next_seq, committed, send_off, acked, db_acked, inflight;
  uint64_t trunc_off; /* the spool refused data from here on (SB__TRUNC_NONE: never) */
  uint64_t dropped;   /* bytes lost to drop-oldest or refusal before going upstream */
  int reading_spool, ack_out, jobs_out, forget_sent;
  int finishing; /* the client is done (or gone): nothing more will be written */
  int grace;     /* stopping: the grace timer runs */
  int closing, pending_closes;
  /* The live route (durability "backlog"). */
  sb__route_t route;      /* live, or through the spool */
  int opened;             /* the stream's row was submitted to the spool */
  uint64_t open_off;      /* next_off then: bytes before it went live */
  uv_timer_t stall_timer; /* live, above the watermark: turn to the spool */
  uint64_t live_q;        /* bytes sent live and not yet written (in sink.queued) */
  unsigned live_epoch;    /* grows at each spill: writes of before leave live_q alone */
  sb__chunk_t *mem_head, *mem_tail; /* sent live, oldest first (linked by next): the
                                       window and what is in flight */
  uint64_t mem_bytes;               /* their memory */
  uint64_t spool_part; /* the spool may hold window chunks ending up to here (0:
                          none): memory holds what follows */
  int spill_out;       /* window chunks being written to the spool */
  uint64_t spill_q;    /* of sink.queued, what was in flight at the turn to the spool:
                          released when the spill commits */
  sb__budget_window_t win;    /* in the budget's windows, oldest first */
  int dial_warned;            /* the dials' failure was logged as a warning */
  sb__budget_waiter_t waiter; /* in the budget's waiters while read_wait, or in
                                 state SB__LINK_WAIT_MEMORY (to dial) */
  int read_wait;              /* waiting in the budget (waiter) to read the spool */
  void* flush; /* Windows: the end's FlushFileBuffers, while it runs (win/confirm.c) */
};

typedef struct {
  uv_write_t req;
  sb__chunk_t* chunk; /* NULL for the handshake */
  uv_buf_t buf;
  uint64_t gen;
  int live;            /* counted in live_q */
  int drain;           /* read back from the spool: counted in drain_bytes */
  unsigned live_epoch; /* up->live_epoch when sent */
  char hs[];
} sb__upstream_write_t;

static inline sb__upstream_t* up_of(sb__sink_t* sink) {
  return SB_CONTAINER_OF(sink, sb__upstream_t, sink);
}

static inline sb__stream_t* up_stream(sb__upstream_t* up) {
  return up->sink.stream;
}

static inline unsigned long long up_id(sb__upstream_t* up) {
  return (unsigned long long)up->sink.stream->id;
}

static inline const char* up_name(sb__upstream_t* up) {
  return up->sink.stream->props.name;
}

/* Whether the spool refused the stream's data (from trunc_off on). */
static inline int up_refused(sb__upstream_t* up) {
  return up->trunc_off != SB__TRUNC_NONE;
}

/* The end of the stream's data as far as the upstream is concerned. */
static inline uint64_t up_end(sb__upstream_t* up) {
  return up->next_off < up->trunc_off ? up->next_off : up->trunc_off;
}

/* Memory a chunk holds (a read buffer keeps all of it). */
static inline uint64_t chunk_mem(const sb__chunk_t* c) {
  return sizeof(*c) + (c->cap ? c->cap : c->len);
}

/* A spool job of the stream; counted in jobs_out until its callback. */
static inline sb__spool_job_t* job_new(sb__upstream_t* up, sb__spool_op_t op,
                                       void (*done)(sb__spool_job_t*)) {
  sb__spool_job_t* j = sb__xcalloc(1, sizeof(*j));
  j->op = op;
  j->sid = up->sid;
  j->done = done;
  j->data = up;
  up->jobs_out++;
  return j;
}

#endif /* SB_SERVICE_UPSTREAM_INT_H */
