/*
 * butler.h - the test upstream sb_butler (butler_main.c), driven from a test: started,
 * killed and started again with the test's loop running (as sb_it_daemon_t is), told
 * what to do on its stdin, its events awaited, and what it received read back from its
 * directory, one original stream reassembled from the upstream streams it arrived as.
 *
 * Every function fails the test (with the butler's events and directory printed)
 * rather than return an error, except sb_it_butler_reassemble, whose failures are what
 * tests check.
 */
#ifndef SB_IT_BUTLER_H
#define SB_IT_BUTLER_H

#include <uv.h>

#include "protocol.h"

typedef struct {
  uv_loop_t* loop;
  uv_process_t proc;
  uv_pipe_t in;     /* its stdin: commands */
  uv_pipe_t out;    /* its stdout: events */
  sb__buf_t events; /* every event line of every run, in order */
  int running, out_done, closed;
  int64_t exit_status;
  int term_signal;
  char dir[512];     /* where it writes the streams */
  char address[256]; /* what B's "upstream" is set to */
  char bind_path[256];
} sb_it_butler_t;

/* One upstream stream it accepted: DIR/<k>.json and DIR/<k>.data. */
typedef struct {
  char* name;      /* the name it arrived under */
  char* original;  /* tag streambroker.name if present, else name */
  char* type;      /* "text", "binary", "datagram" */
  char* timestamp; /* RFC 3339, as the handshake had it (or the butler's clock) */
  sb__tag_t* tags;
  size_t tag_count;
  uint64_t offset; /* tag streambroker.offset; 0 when absent */
  int has_offset;
  int ended;    /* its connection ended (the butler was not killed meanwhile) */
  int complete; /* it ended with the sender's end of stream */
  char* data;   /* what the butler read (datagram framing included) */
  size_t len;
  char file[600]; /* DIR/<k>, for messages */
} sb_it_bstream_t;

typedef struct {
  sb_it_bstream_t* s; /* in acceptance order, across restarts */
  size_t n;
} sb_it_blist_t;

/* Starts sb_butler on a fresh address and directory and waits for its "ready". */
void sb_it_butler_start(sb_it_butler_t* b, uv_loop_t* loop, const char* tag);
/* Sends one command line ("close-ns ns/", "cut NAME", "quit"); no newline needed. */
void sb_it_butler_command(sb_it_butler_t* b, const char* line);
/* How many event lines start with prefix ("accepted ", "refused stdout "). */
size_t sb_it_butler_count(const sb_it_butler_t* b, const char* prefix);
/* Index (0-based, over all event lines) of the nth (1-based) line starting with
 * prefix; -1 when there are fewer. nth 0 means the last one. */
long sb_it_butler_find(const sb_it_butler_t* b, const char* prefix, size_t nth);
/* Runs the loop until count event lines start with prefix; fails after ms. */
void sb_it_butler_wait(sb_it_butler_t* b, const char* prefix, size_t count,
                       uint64_t ms);
/* Kills it (SIGKILL; TerminateProcess on Windows) and waits until it is gone. */
void sb_it_butler_kill(sb_it_butler_t* b);
/* Starts it again on the same address and directory (killing it first if running):
 * the new process has seen no name. */
void sb_it_butler_restart(sb_it_butler_t* b);
/* Asks it to quit and waits until it exited (0 expected). */
void sb_it_butler_stop(sb_it_butler_t* b);
/* Kills it if running, closes its handles and removes its directory. A test that
 * fails before this keeps the directory, and its location is printed. */
void sb_it_butler_close(sb_it_butler_t* b);
/* Removes a test's directory and everything under it. */
void sb_it_remove_tree(const char* dir);
/* Removes the socket file of a "unix:" address a killed process left; nothing for
 * named pipes. */
void sb_it_remove_socket(const char* address);
/* Prints its events and directory to stderr. */
void sb_it_butler_dump(const sb_it_butler_t* b);

/* Reads every stream it accepted so far. */
void sb_it_butler_list(const sb_it_butler_t* b, sb_it_blist_t* out);
void sb_it_blist_free(sb_it_blist_t* l);
/* A tag's value; NULL when absent. */
const char* sb_it_bstream_tag(const sb_it_bstream_t* s, const char* key);

/*
 * Reassembles the original stream "original" from the upstream streams of l whose
 * original name it is: ordered by offset (stable in acceptance order), each laid at
 * its offset (a byte offset; for datagram streams a datagram index, the framing being
 * parsed and rebuilt), overlapping parts checked equal. out gets the stream's bytes
 * (datagram streams: framed, as the client sent them), *segments (may be NULL) the
 * number of upstream streams. Returns 0, or -1 with why filled in: no such stream, a
 * gap, a segment that differs from what came before, bad datagram framing, or
 * segments of different types.
 */
int sb_it_butler_reassemble(const sb_it_blist_t* l, const char* original,
                            sb__buf_t* out, int* segments, char* why, size_t why_size);

#endif
