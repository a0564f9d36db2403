/*
 * stream.h - chunks, the sink interface every stream writes to, and the stream itself
 * (stream.c).
 *
 * Included by internal.h, after the log, config and counters it uses; a module includes
 * internal.h, not this file.
 */
#ifndef SB_SERVICE_STREAM_H
#define SB_SERVICE_STREAM_H

/* ---- sink: where a stream's data goes (upstream.c, archive.c) ---- */

/* A piece of stream data, owned by whoever holds it; freed with sb__chunk_free(). */
typedef struct sb__chunk_s {
  struct sb__chunk_s* next;
  size_t len;
  size_t cap;    /* SB__READ_SIZE for a read buffer, which is recycled; else 0 */
  unsigned refs; /* holders; sb__chunk_free drops one (loop thread) */
  uint64_t off;  /* the stream's byte offset of data[0] (upstream streams) */
  int64_t mark;  /* where a resend may start: the byte offset (text, binary) or the
                    datagram index at data[0] (datagram), -1 inside a datagram */
  char data[];
} sb__chunk_t;

/* A chunk holding a copy of data. */
sb__chunk_t* sb__chunk_new(const void* data, size_t len);
/*
 * A read buffer of SB__READ_SIZE bytes. Freed read buffers are kept (a few dozen at
 * most) and handed out again: fresh memory for every read would cost a page fault per
 * page. Loop thread only.
 */
sb__chunk_t* sb__chunk_new_read(void);
/* Another holder of c; each holder calls sb__chunk_free once. */
sb__chunk_t* sb__chunk_ref(sb__chunk_t* c);
void sb__chunk_free(sb__chunk_t* c);

typedef struct sb__sink_s sb__sink_t;
typedef struct sb__stream_s sb__stream_t;

/*
 * How a sink reports to its stream: set by the stream when it takes the sink (the
 * sink calls them through the sb__sink_* functions below, never a stream or broker
 * function, so that the sinks stay below the stream).
 */
typedef struct {
  /* The queue fell to half the watermark or below after having been above it (or
   * the sink started dropping data after an error): reading may go on. */
  void (*drained)(sb__sink_t* sink);
  /* Pause (1) or let go on (0) the client's reads, whatever the queue. */
  void (*hold)(sb__sink_t* sink, int hold);
  /* Every byte read from the client is stored (spool committed): after the client's
   * EOF, its connection is closed only now (or at done), so that a broker in front of
   * this one, waiting for the connection's end, forgets the stream only once it is
   * safe here. */
  void (*durable)(sb__sink_t* sink);
  /* The sink cannot take the stream (its spool row failed, the archive gave up):
   * reading stops and the client's connection ends now; finish follows. */
  void (*cut)(sb__sink_t* sink);
  /* Exactly once after finish: everything flushed and closed (err 0) or failed
   * (err < 0). The stream frees the sink after it. */
  void (*done)(sb__sink_t* sink, int err);
} sb__sink_events_t;

/*
 * A sink takes its stream's bytes in order and tells the stream about progress
 * through events. The stream calls write (ownership of the chunk passes to the sink,
 * even on error), then finish once at the end (client EOF or error), then never
 * again.
 */
struct sb__sink_s {
  void (*write)(sb__sink_t* sink, sb__chunk_t* chunk);
  void (*finish)(sb__sink_t* sink);
  void (*destroy)(sb__sink_t* sink); /* after done: frees the sink */
  /* The service is stopping (after finish; may be called more than once); NULL when
   * finish alone does. */
  void (*stop)(sb__sink_t* sink);
  /* Adds the sink's state to a cJSON object (admin "streams"); may be NULL. */
  void (*describe)(sb__sink_t* sink, void* cjson_object);
  const sb__sink_events_t* events; /* the stream's, set when it takes the sink */
  sb__stream_t* stream;            /* whose data it takes (read-only for the sink) */
  uint64_t queued;                 /* bytes accepted but not yet written */
  int one_at_a_time; /* pause the client after each read until queued is 0 again */
  int hold;          /* pause the client until released (the sink is short of memory):
                        set with sb__sink_hold */
};

static inline void sb__sink_drained(sb__sink_t* sink) {
  sink->events->drained(sink);
}
static inline void sb__sink_hold(sb__sink_t* sink, int hold) {
  sink->events->hold(sink, hold);
}
static inline void sb__sink_durable(sb__sink_t* sink) {
  sink->events->durable(sink);
}
static inline void sb__sink_cut(sb__sink_t* sink) {
  sink->events->cut(sink);
}
static inline void sb__sink_done(sb__sink_t* sink, int err) {
  sink->events->done(sink, err);
}

/* ---- stream.c ---- */

struct sb__broker_s;

/* An accepted client connection, from handshake to close. */
struct sb__stream_s {
  uv_pipe_t client;
  struct sb__broker_s* broker;
  sb__handshake_t hs;
  sb__props_t props;
  int handshaken;
  uv_timer_t deadline;
  sb__dgram_t dgram;
  sb__sink_t* sink;
  int reading;    /* client reads started (not paused by flow control) */
  int client_eof; /* client finished (EOF or error) */
  int closing;    /* handles are being closed */
  int pending_closes;
  int kept;    /* set by the sink before done: not delivered, kept in the spool for the
                  next start (the service stops) */
  uint64_t id; /* per-broker serial, for logs */
  uint64_t bytes; /* payload bytes read from the client */
  uint64_t datagrams;
  uint64_t bytes_refused; /* not taken by the spool (cap, full disk): never delivered */
  uint64_t bytes_dropped; /* dropped from the spool (drop-oldest) before delivery */
  int64_t peer_pid;       /* -1 when unknown */
  int64_t peer_uid;       /* -1 when unknown (always on Windows) */
  int64_t peer_gid;
  char peer_user[192]; /* sb__peer_t.user: "" for a resumed stream */
  int peer_privileged;
  uint64_t hs_charged; /* bytes of broker->hs_bytes this handshake holds */
  int hs_waiting;      /* paused: handshake_memory_max reached */
  sb__time_t opened;
  struct sb__stream_s *prev, *next; /* broker's list of live streams */
};

#endif /* SB_SERVICE_STREAM_H */
