/*
 * streams.h - what the spool tests share: deterministic stream contents, writers on
 * threads, reading back and reassembling what an archive-mode upstream received
 * (following the segments of reopened and renamed streams), and the dead broker's
 * spool as an oracle.
 */
#ifndef SB_IT_STREAMS_H
#define SB_IT_STREAMS_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "helpers.h"

/*
 * The segments U archived of one stream: every sidecar in the stream's directory whose
 * name is the stream's, or whose tag streambroker.name is (the broker sends a reopen,
 * or a second stream of a name, as NAME:N), in the order U opened them.
 */
typedef struct {
  char log_path[1024];
  int64_t offset; /* its streambroker.offset tag, 0 when absent */
  int dropped;    /* it has the tag streambroker.dropped */
  int closed;     /* its sidecar has a close time */
  sb__time_t opened;
} sb_it_segment_t;

typedef struct {
  const char* archive_dir;
  char** names;
  int n;
  int need; /* each stream must have arrived */
} sb_it_settle_t;

#define SB_IT_MAX_NAMES 4096

typedef struct {
  char address[256];
  int nstreams;
  int binary_every; /* every Nth stream is binary (0: none) */
  size_t min_bytes; /* per stream, before stopping is allowed */
  volatile int stop;
  sb_it_thread_t thread; /* the thread it writes on (sb_it_writer_start) */
  int reconnect; /* on a failed write, open new streams and go on */
  uv_mutex_t mutex;
  char* names[SB_IT_MAX_NAMES];
  size_t written[SB_IT_MAX_NAMES]; /* bytes whose write returned */
  int nnames;
  int generations;
  char prefix[16];       /* names are spool/PREFIX-gG-sS ("": spool/gG-sS) */
  int fast;              /* never pause between writes */
  uint64_t max_write_ns; /* the longest single write (fast writers), in ns */
} sb_it_writer_t;

size_t sb_it_content_line(const char* name, uint64_t k, char* out, size_t size);

/* The first len bytes of a stream's content. */
void sb_it_content(const char* name, size_t len, sb__buf_t* out);

int sb_it_segments(const char* archive_dir, const char* name, sb_it_segment_t** out);

/*
 * Reassembles a text or binary stream from U's archive: each segment at its offset
 * tag, in the order U opened them. A segment must start within what is known so far
 * (no gap) unless allow_gap, and bytes it repeats must be the same. Returns the number
 * of segments.
 */
int sb_it_reassemble(const char* archive_dir, const char* name, sb__buf_t* out,
                     int allow_gap, int* has_dropped);

/* Whether the last segment U archived of a stream is closed (its sidecar rewritten):
 * U closes a connection once it has stored it, but rewrites the sidecar after that.
 * (Earlier segments may never be closed: a killed U leaves them open.) */
int sb_it_settled(const char* archive_dir, const char* name, int need);

int sb_it_all_settled(void* arg);

/* Waits (up to a minute) until U has closed every file of the streams named. */
void sb_it_wait_settled(uv_loop_t* loop, const char* archive_dir, char** names, int n,
                        int need);

void sb_it_wait_settled1(uv_loop_t* loop, const char* archive_dir, const char* name);

int sb_it_writer_add(sb_it_writer_t* w, const char* name);

void sb_it_writer_run(void* arg);

/* Runs sb_it_writer_run on w->thread; sb_it_thread_join(loop, &w->thread, ms) waits. */
void sb_it_writer_start(sb_it_writer_t* w);

int sb_it_writer_finished(void* arg);

void sb_it_writer_free(sb_it_writer_t* w);

char* sb_it_spool_path(sb_it_daemon_t* d);

int64_t sb_it_spool_int(sb_it_daemon_t* d, const char* sql);

int sb_it_spool_empty(void* arg);

/* The spool of the first test holds all its data: 12 streams of (i + 1) * 50000 bytes
 * (datagram streams a little more, with their framing). */
int sb_it_spool_has_all(void* arg);

/* The spool has no stream left, and still none a moment later (a stream whose client
 * just closed may not have reached the spool yet when it is first looked at). */
int sb_it_spool_drained(void* arg);

/* Committed bytes per stream name, as the dead broker's spool says: its chunks' end
 * (or its cursor, when the window was trimmed). Raises committed[i] for names[i]. */
void sb_it_spool_committed(sb_it_daemon_t* d, sb_it_writer_t* w, size_t* committed);

int sb_it_never(void* arg);

void sb_it_pause_ms(uv_loop_t* loop, uint64_t ms);

/* A pipe server that takes connections and never reads a byte from them: they stay
 * pending (POSIX: in the listen backlog; Windows: on the pipe instances, whose
 * buffers fill and whose FlushFileBuffers never returns). An upstream that never
 * confirms a stream's end. */
typedef struct {
  uv_pipe_t server;
  int connections;
  int closed;
} sb_it_mute_t;

/* Serves bind_path (a stopped daemon's) with instances pipe instances on Windows. */
void sb_it_mute_start(uv_loop_t* loop, sb_it_mute_t* m, const char* bind_path,
                      int instances);
/* Closes it, so that a real upstream can take the address. */
void sb_it_mute_close(uv_loop_t* loop, sb_it_mute_t* m);

int32_t sb_it_jitter(uint32_t* x, int lo, int hi);

/* Starts U and stops it again (so its address is known but nobody serves it), then
 * B in front of it, with extra_json. */
void sb_it_start_upstream_down(uv_loop_t* loop, sb_it_daemon_t* up, const char* up_tag,
                               sb_it_daemon_t* b, const char* b_tag,
                               const char* extra_json);

/* Checks every stream the writer opened against U's archive; complete: each stream
 * must hold all the writer wrote (else a prefix of it, at least committed[i] long). */
void sb_it_check_streams(uv_loop_t* loop, sb_it_writer_t* w, const char* archive_dir,
                         const size_t* committed, int complete, int* reopened);

/* Writes one stream of len bytes through the client library; returns the write's
 * result (a refused stream may fail). */
int sb_it_write_stream(const char* address, const char* name, size_t len);

/*
 * Waits until B has delivered the stream (its "closed" line) and U has closed its
 * file, then checks what arrived against the stream's content: all len bytes when
 * whole, else a prefix shorter than len (a stream the spool refused).
 */
void sb_it_expect_arrived(uv_loop_t* loop, sb_it_daemon_t* b, sb_it_daemon_t* up,
                          const char* name, size_t len, int whole);

/* Asks the broker (sbctl --json streams) until none of its streams has a spool job out:
 * everything stored has also been handed back to the streams. */
void sb_it_wait_spool_idle(uv_loop_t* loop, sb_it_daemon_t* d);

/* The broker's admin reply to command ("status", "streams"), as sbctl --json prints
 * it; fails the test when there is none. The caller frees it (cJSON_Delete). */
cJSON* sb_it_admin(uv_loop_t* loop, sb_it_daemon_t* d, const char* command);

/* A number in an admin reply by its dotted path ("counters.bytes_live"); -1 when it is
 * absent or not a number. */
double sb_it_json_num(const cJSON* doc, const char* path);

/* Asks the broker for command's reply until the number at path is at least min (the
 * service counts a spool write once its commit is back on its loop, a moment after the
 * file has it); fails the test after 30 s. The caller frees the reply. */
cJSON* sb_it_admin_until(uv_loop_t* loop, sb_it_daemon_t* d, const char* command,
                         const char* path, double min);

#endif
