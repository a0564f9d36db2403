/*
 * helpers.h - what integration tests share: unique addresses, a recording server that
 * keeps every byte each connection sent, and running a real program with stdin, stdout
 * and stderr of the test's own.
 */
#ifndef SB_IT_HELPERS_H
#define SB_IT_HELPERS_H

#include <stdio.h>

#include <uv.h>

#include "protocol.h"

#define SB_IT_MAX_CONNS 64

/* A listening pipe (Unix socket or named pipe) that records each connection. */
typedef struct {
  uv_pipe_t server;
  int accept; /* 0: leave connections pending, so the server looks busy */
  struct sb_it_conn {
    uv_pipe_t pipe;
    sb__buf_t data;
    int closed;
  } conns[SB_IT_MAX_CONNS];
  int nconns;
  int nclosed;
} sb_it_recorder_t;

/* A fresh address for this process: "unix:/tmp/..." or "net.pipe:...", and the path
 * to bind (the socket path or \\.\pipe\ name). */
void sb_it_address(const char* tag, char* address, char* bind_path, size_t size);
/* Process set-up for tests that run programs (POSIX: SIGPIPE ignored, so a child
 * that exits before reading its stdin does not kill the test). Idempotent. */
void sb_it_platform_init(void);
/* What guards the pipe at address: POSIX, the socket file's mode in octal ("660");
 * Windows, the pipe's DACL as SDDL, read back with GetSecurityInfo. -1 on failure. */
int sb_it_pipe_security(const char* address, char* out, size_t size);
/* A bound AF_UNIX datagram socket (POSIX; a name starting with '@' is abstract), for
 * playing systemd's NOTIFY_SOCKET; fails the test on error. recv never blocks: it
 * returns the datagram's length, or 0 when none is waiting. Windows: not available. */
uv_os_sock_t sb_it_dgram_bind(const char* name);
ssize_t sb_it_dgram_recv(uv_os_sock_t fd, char* buf, size_t size);
void sb_it_dgram_close(uv_os_sock_t fd);
/* 1 on Windows (named pipes, no POSIX signals), 0 elsewhere. */
int sb_it_is_windows(void);
/* The last OS error of this thread (GetLastError, errno), for a failure's message. */
unsigned long sb_it_os_error(void);
/* Path of a program built next to the test program ("sbcat" gets ".exe" on Windows). */
void sb_it_program(const char* name, char* out, size_t size);

/* The read buffer (an alloc_cb) of every pipe the tests read on the loop's thread:
 * one slab, since each read callback copies out what it keeps before the next read. */
void sb_it_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);

int sb_it_recorder_start(sb_it_recorder_t* r, uv_loop_t* loop, const char* bind_path,
                         int backlog, int accept);
/* Closes the server and every connection. */
void sb_it_recorder_close(sb_it_recorder_t* r);

typedef struct {
  int64_t exit_status;
  int term_signal;
  sb__buf_t out;
  sb__buf_t err;
} sb_it_result_t;

/*
 * Runs argv[0] (a path) with extra environment entries env (NULL-terminated, may be
 * NULL; the rest of the test's environment is kept, minus the LOGDOG_ variables),
 * feeds it stdin, and runs the loop until it exited, its output closed, and rec (if not
 * NULL) has wait_conns closed connections. Fails the test after 300 s (a tool waiting
 * on a service that stops slowly on a loaded machine: a generous wait, never a
 * measure).
 */
void sb_it_run(uv_loop_t* loop, const char* const* argv, const char* const* env,
               const void* in, size_t in_len, sb_it_recorder_t* rec, int wait_conns,
               sb_it_result_t* res);
/* The same, as user uid and group gid (POSIX, as root). */
void sb_it_run_as(uv_loop_t* loop, const char* const* argv, const char* const* env,
                  const void* in, size_t in_len, sb_it_recorder_t* rec, int wait_conns,
                  sb_it_result_t* res, int uid, int gid);
void sb_it_result_free(sb_it_result_t* res);

/* A tool's arguments as a NULL-terminated array: SB_IT_ARGS("--admin", addr, "status").
 * A NULL among them ends them there (an optional last argument). */
#define SB_IT_ARGS(...) ((const char* const[]){__VA_ARGS__, NULL})

/*
 * Runs one of the programs built beside the tests ("sbctl", "sbcat": sb_it_program)
 * with args after its path (NULL-terminated, or NULL) and in (in_len bytes; NULL: an
 * empty stdin) as its stdin, as sb_it_run does: every tool run of the tests goes
 * through here. The _as form runs it as user uid and group gid (-1, -1: as the test).
 */
void sb_it_run_tool(uv_loop_t* loop, const char* tool, const char* const* args,
                    const void* in, size_t in_len, sb_it_result_t* res);
void sb_it_run_tool_as(uv_loop_t* loop, const char* tool, const char* const* args,
                       const void* in, size_t in_len, sb_it_result_t* res, int uid,
                       int gid);
/* Whether haystack (len bytes) contains the NUL-terminated needle. */
int sb_it_contains(const char* haystack, size_t len, const char* needle);
/* How many times needle occurs in haystack. */
size_t sb_it_count(const char* haystack, size_t len, const char* needle);

/* A fresh, empty directory for this test under the system's temp directory. */
void sb_it_tempdir(const char* tag, char* out, size_t size);
/* fopen with a UTF-8 path (Windows: _wfopen, since fopen takes the ANSI code page). */
FILE* sb_it_fopen(const char* path, const char* mode);
/* Reads a whole file; NULL when it cannot be read. */
char* sb_it_read_file(const char* path, size_t* len);
/* Writes a whole file; fails the test on error. */
void sb_it_write_file(const char* path, const void* data, size_t len);

/* A streambrokerd process with a directory, a config and a control pipe of its own. */
typedef struct {
  uv_loop_t* loop;
  uv_process_t proc;
  uv_pipe_t err;
  sb__buf_t log; /* everything it wrote to stderr */
  int running, err_done, closed;
  int64_t exit_status;
  int term_signal;
  char dir[512];
  char address[256];
  char bind_path[256];
  char admin_address[256]; /* its admin_pipe */
  char config_path[600];
  char archive_dir[600];
  char log_file[600];      /* its log_file, "" when it logs to stderr */
  const char* const* args; /* more arguments (NULL-terminated), or NULL */
  const char* const* env;  /* more environment entries (NULL-terminated), or NULL */
} sb_it_daemon_t;

/*
 * Writes DIR/streambroker.json with control_pipe, data_dir, archive_dir, upstream (NULL
 * for archive mode), log_level debug and the members in extra_json (text such as
 * "\"max_streams\": 10", or NULL), starts streambrokerd on it and waits until it
 * logs that it is serving. Fails the test if it does not within 30 s.
 */
void sb_it_daemon_start(sb_it_daemon_t* d, uv_loop_t* loop, const char* tag,
                        const char* upstream, const char* extra_json);
/* The same, with log_file DIR/log_name in the config: it waits for "serving " in that
 * file instead (stderr then stays empty). */
void sb_it_daemon_start_logfile(sb_it_daemon_t* d, uv_loop_t* loop, const char* tag,
                                const char* upstream, const char* extra_json,
                                const char* log_name);
/* The same, with more arguments and environment entries for the program (each
 * NULL-terminated, or NULL; kept for restarts, so they must outlive d). */
void sb_it_daemon_start_with(sb_it_daemon_t* d, uv_loop_t* loop, const char* tag,
                             const char* upstream, const char* extra_json,
                             const char* log_name, const char* const* args,
                             const char* const* env);
/* Runs the loop until the file at path holds count occurrences of needle (it is
 * read again every 50 ms); fails after ms. */
void sb_it_wait_file(uv_loop_t* loop, const char* path, const char* needle,
                     size_t count, uint64_t ms);
/* Starts it again on the same config (after it exited). */
void sb_it_daemon_restart(sb_it_daemon_t* d);
/* The same, without waiting for it to serve (it may fail to start). */
void sb_it_daemon_respawn(sb_it_daemon_t* d);
/* Runs the loop until the log holds count occurrences of needle; fails after ms. */
void sb_it_daemon_wait_log(sb_it_daemon_t* d, const char* needle, size_t count,
                           uint64_t ms);
/* Sends a signal (SIGTERM is TerminateProcess on Windows). */
void sb_it_daemon_kill(sb_it_daemon_t* d, int signum);
/* Runs the loop until it exited; fails after ms. */
void sb_it_daemon_wait_exit(sb_it_daemon_t* d, uint64_t ms);
/* Kills it if running and closes its handles. */
void sb_it_daemon_close(sb_it_daemon_t* d);
/* Prints its log to stderr (for a failing test's output). */
void sb_it_daemon_dump(sb_it_daemon_t* d);

/* Runs the loop until done(arg) is true or ms have passed; returns done's last answer.
 * For conditions no loop event reports (a file's contents), done is polled on each
 * loop turn, and a timer makes a turn at least every 50 ms. */
int sb_it_run_until(uv_loop_t* loop, uint64_t ms, int (*done)(void* arg), void* arg);

/*
 * A writer (or any client of the broker) on a thread of its own, while the test's loop
 * starts, kills and restarts daemons: fn(arg) runs until it returns, and done is set
 * then. fn tells the test what it wrote through arg; the test tells fn to stop the
 * same way. Every writer thread of the tests is started and joined through this.
 */
typedef struct {
  uv_thread_t tid;
  void (*fn)(void* arg);
  void* arg;
  volatile int done;
} sb_it_thread_t;

void sb_it_thread_start(sb_it_thread_t* t, void (*fn)(void*), void* arg);
/* Whether fn has returned (arg is the sb_it_thread_t), for sb_it_run_until. */
int sb_it_thread_done(void* arg);
/* Runs the loop until fn has returned (failing the test after ms), and joins it. */
void sb_it_thread_join(uv_loop_t* loop, sb_it_thread_t* t, uint64_t ms);

/* Runs fn(arg) on a thread while the loop runs (daemons' logs keep being read), and
 * returns when fn has returned. */
void sb_it_run_thread(uv_loop_t* loop, void (*fn)(void*), void* arg);

#endif
