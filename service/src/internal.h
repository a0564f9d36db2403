/*
 * internal.h - the modules of streambrokerd and what each offers the others.
 *
 * One libuv loop thread owns every handle and every object below. Other threads reach
 * the loop only through uv_async_send.
 */
#ifndef SB_SERVICE_INTERNAL_H
#define SB_SERVICE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The printf dialect the format checks assume: mingw's C99 one on Windows. */
#if defined(__MINGW32__)
#define SB_PRINTF_FORMAT gnu_printf
#else
#define SB_PRINTF_FORMAT printf
#endif

#include <uv.h>

#include "protocol.h"
#include "alloc.h"
#include "paths.h"
#include "admin.h"
#include "counters.h"

#define SB_CONTAINER_OF(ptr, type, field) ((type*)((char*)(ptr)-offsetof(type, field)))

/* ---- log.c ---- */

enum { SB_LOG_ERROR = 0, SB_LOG_WARN = 1, SB_LOG_INFO = 2, SB_LOG_DEBUG = 3 };

/* Opens the log: path NULL or "" means stderr. Returns 0 or a negative SB_E*. */
int sb__log_open(const char* path, int level);
/*
 * A file log rotates once it would pass max_bytes: PATH becomes PATH.1, PATH.1 becomes
 * PATH.2 and so on, keeping max_files files in all, and the line that did not fit
 * starts the new PATH (lines are never split, none is lost). A rotation costs a few
 * renames under the log's lock; one that fails (a reader holds a file on Windows) is
 * logged and tried again after another max_bytes / 8. Defaults: no rotation.
 */
void sb__log_set_rotation(uint64_t max_bytes, uint64_t max_files);
/*
 * Errors and warnings also go to the system's event log (Windows: the Application
 * log, source StreamBroker; POSIX: nowhere, the journal keeps stderr), through a
 * token bucket: a burst of SB__EVENTLOG_BURST, then one every
 * SB__EVENTLOG_REFILL_MS; what the bucket holds back is counted and reported as
 * "N messages suppressed" once it may speak again, and at sb__log_close.
 */
void sb__log_to_eventlog(int on);
#define SB__EVENTLOG_BURST 20
#define SB__EVENTLOG_REFILL_MS 5000
void sb__log_close(void);
/*
 * A reload: the log file is opened again at its path (one that logrotate moved away
 * is left to it, a new one is made there), and level applies. Logging to stderr, only
 * the level changes. 0, or a negative SB_E* with the old file still in use.
 */
int sb__log_reopen(int level);
/* One line: "2026-11-25T02:00:00.123Z info  listener: ...". */
void sb__log(int level, const char* module, const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(SB_PRINTF_FORMAT, 3, 4)))
#endif
    ;
#define SB_LOG_E(mod, ...) sb__log(SB_LOG_ERROR, mod, __VA_ARGS__)
#define SB_LOG_W(mod, ...) sb__log(SB_LOG_WARN, mod, __VA_ARGS__)
#define SB_LOG_I(mod, ...) sb__log(SB_LOG_INFO, mod, __VA_ARGS__)
#define SB_LOG_D(mod, ...) sb__log(SB_LOG_DEBUG, mod, __VA_ARGS__)
/*
 * Client-supplied text (a content type, a tag, a name) fit for a log line: its first
 * SB__LOG_TEXT_MAX bytes, control bytes and '\' as \xNN, then "... (N bytes in all)"
 * when it was longer. Writes into out (SB__LOG_TEXT_SIZE bytes suffice) and returns
 * it. sb__log escapes control bytes anyway and cuts a message past 8 KiB; this keeps
 * one field short.
 */
#define SB__LOG_TEXT_MAX 256
#define SB__LOG_TEXT_SIZE (4 * SB__LOG_TEXT_MAX + 64)
const char* sb__log_text(char* out, size_t size, const char* text);
/* The name of a level ("error" ...), or -1 for an unknown name. */
int sb__log_level_parse(const char* name);

/* ---- config.c ---- */

typedef struct {
  char* control_pipe;            /* address we listen on: unix:PATH or net.pipe:NAME */
  char* admin_pipe;              /* address of the administrators' status pipe */
  char* upstream;                /* address we forward to; NULL: archive mode */
  char* data_dir;                /* spool and state */
  char* archive_dir;             /* archive mode's files; default DATA_DIR/archive */
  uint64_t archive_max_bytes;    /* retention: size of the archive; 0: no limit */
  uint64_t archive_max_age;      /* retention: seconds since a stream closed; 0: none */
  uint64_t handshake_timeout_ms; /* a client must finish its handshake in this time */
  uint64_t max_frame_size;       /* handshake JSON, bytes */
  uint64_t max_datagram_size;    /* bytes */
  uint64_t max_streams;          /* open streams in total */
  uint64_t max_streams_per_client; /* open streams of one client process */
  uint64_t max_streams_per_user; /* open streams of one user (uid, SID); 0: a quarter of
                                    max_streams */
  uint64_t max_handshakes;       /* connections still in their handshake */
  uint64_t handshake_memory_max; /* bytes held by handshakes in flight */
  uint64_t backoff_initial_ms;   /* upstream redial: first delay */
  uint64_t backoff_max_ms;       /* upstream redial: cap */
  uint64_t upstream_high_watermark; /* bytes queued to one upstream or file before the
                                       stream stops reading its client */
  int durability;                /* SB__DURABILITY_* */
  int synchronous;               /* SB__SYNC_* */
  uint64_t spool_max_bytes;      /* cap of chunk bytes in the spool */
  int spool_full_policy;         /* SB__FULL_* */
  uint64_t replay_window;        /* bytes kept after upstream writes, resent on reopen */
  uint64_t replay_memory_max;    /* backlog mode: memory for all live windows */
  uint64_t spool_reserve_bytes;  /* room kept beside the spool for a full disk */
  uint64_t upstream_max_refusals; /* refusals in a row before a stream is given up */
  uint64_t upstream_end_timeout_ms; /* wait for the upstream to confirm a stream's end */
  uint64_t upstream_end_linger_ms; /* a stream's window kept after an end the upstream
                                      read but could not say it stored */
  int log_level;                 /* SB_LOG_* */
  char* log_file;                /* NULL or "": stderr */
  uint64_t log_max_bytes;        /* log_file rotates at this size */
  uint64_t log_max_files;        /* files kept, the current one included */
  char* allowed_groups;          /* POSIX: comma-separated groups whose members may open
                                    streams; "": anyone who can reach the socket */
  char* reader_group;            /* the group that may read data, archive and log; "":
                                    only the service */
  char* control_pipe_sddl;       /* Windows: the control pipe's security descriptor;
                                    "": the default (SB__DEFAULT_CONTROL_SDDL) */
} sb__config_t;

enum { SB__DURABILITY_SPOOL = 0, SB__DURABILITY_ALWAYS = 1, SB__DURABILITY_BACKLOG = 2 };
enum { SB__SYNC_NORMAL = 0, SB__SYNC_FULL = 1 };
enum { SB__FULL_REFUSE = 0, SB__FULL_DROP_OLDEST = 1 };

/* Fills every key with its default (platform defaults for paths). */
void sb__config_defaults(sb__config_t* cfg);
/*
 * Parses a config text over the defaults. On error returns SB_ECONFIG and writes one
 * line naming the origin, the line number and the key into err, such as
 * "streambroker.json:3: key \"max_streams\": must be an integer from 1 to 1000000".
 */
int sb__config_parse(sb__config_t* cfg, const char* text, size_t len, const char* origin,
                     char* err, size_t err_size);
/* Reads the file and parses it (SB_ENOENT / SB_EIO with a message on read errors). */
int sb__config_load(sb__config_t* cfg, const char* path, char* err, size_t err_size);
void sb__config_free(sb__config_t* cfg);
/* Writes the key table (name, type, default, range, meaning) as Markdown. */
void sb__config_write_table(FILE* out);
/* Writes the defaults as a JSON config file. */
void sb__config_write_defaults(FILE* out);
/*
 * Checks the directories the config names: the directory of log_file (when set;
 * which & SB__DIRS_LOG), data_dir (SB__DIRS_DATA) and, in archive mode, archive_dir
 * (SB__DIRS_ARCHIVE) must be directories that exist, or can be made (create 0:
 * nothing is made; create 1: they are made), and that this process can write (a file
 * is created in each, and removed), and that are safe (sb__dir_secure: owned by root
 * or the service, writable by no one else, else SB_EUNSAFE; with create, data_dir
 * and archive_dir get the policy's mode). On error returns SB_E* and writes one line
 * naming the key, its path and what is wrong into err, such as
 * "data_dir \"/x/y\": /x is not a directory".
 */
enum {
  SB__DIRS_LOG = 1,
  SB__DIRS_DATA = 2,
  SB__DIRS_ARCHIVE = 4,
  SB__DIRS_SOCKETS = 8, /* the control and admin sockets' directories (POSIX) */
  SB__DIRS_ALL = 15
};
int sb__config_check_dirs(const sb__config_t* cfg, unsigned which, int create,
                          char* err, size_t err_size);

/* ---- counters (broker.c): every refusal and error, by reason (counters.h) ---- */

typedef struct {
#define SB__COUNTER_FIELD(field, ...) uint64_t field;
  SB__COUNTERS(SB__COUNTER_FIELD)
  SB__COUNTERS_BY_REASON(SB__COUNTER_FIELD)
#undef SB__COUNTER_FIELD
  uint64_t datagrams_in;       /* not reported */
  uint64_t bad_handshakes[32]; /* by -SB_E* code */
} sb__counters_t;

#include "stream.h"

#include "spool.h"
#include "budget.h"
#include "upstream.h"
#include "archive.h"

/* ---- the data directory's lock (posix/lock.c, win/lock.c) ---- */

/* One service per data directory: the file in it that the running one holds locked. */
#define SB__LOCK_FILE "streambrokerd.lock"
typedef struct sb__lock_s sb__lock_t;
/*
 * Takes DATA_DIR/streambrokerd.lock (created, never through a link) exclusively for
 * as long as the process holds it: the system drops it when the process ends, however
 * it ends. Writes "pid N, WHO" into it for whoever finds it taken. Returns 0 with
 * *out set; SB_EBUSY when another process holds it (holder gets what that one wrote);
 * another SB_E* after logging. The data directory must exist.
 */
int sb__lock_take(const char* data_dir, const char* who, sb__lock_t** out, char* holder,
                  size_t holder_size);
/* Releases the lock (NULL: nothing). The file stays. */
void sb__lock_release(sb__lock_t* lock);

/* ---- broker.c ---- */

typedef struct sb__broker_s {
  uv_loop_t* loop;
  sb__config_t cfg;
  struct sb__listener_s* listener; /* the control pipe; NULL once stopped */
  struct sb__listener_s* admin; /* the admin pipe (admin.c); NULL once stopped */
  uint64_t started_ms; /* uv_now at start, for uptime */
  uv_signal_t sigint, sigterm;
  int stopping;
  sb__stream_t* streams; /* live streams */
  /* What the broker gives its streams (set by sb__broker_start, by the mode): the sink
   * a stream writes to, and where a stream says it is gone. A stream calls these,
   * never a broker function or a sink's constructor itself. */
  sb__sink_t* (*sink_create)(sb__stream_t* s, const sb__sink_events_t* events);
  sb__sink_t* (*sink_resume)(sb__stream_t* s, const sb__spool_resume_t* r,
                             const sb__sink_events_t* events);
  void (*stream_gone)(struct sb__broker_s* b, sb__stream_t* s);
  uint64_t nstreams;
  uint64_t ndetached; /* of those, streams whose client is gone (draining the spool) */
  uint64_t nhandshakes; /* of those, connections still in their handshake */
  uint64_t hs_bytes;    /* bytes their handshake buffers hold (handshake_memory_max) */
  uint64_t hs_waiters;  /* handshakes paused until hs_bytes falls below the bound */
  /* Derived limits (sb__broker_start): per user, and the reserves that only a
   * privileged peer (sb__peer_t.privileged) may use. */
  uint64_t per_user, stream_reserve, hs_per_user, hs_reserve;
  struct sb__client_log_s* client_logs; /* per-user warning buckets (broker.c) */
  uint64_t next_id;
  sb__counters_t counters;
  uv_async_t stop_async; /* for other threads (Windows service control) */
  uv_timer_t stop_timer; /* bounds how long a stop may wait for streams */
  int pending_closes;    /* broker handles being closed */
  void (*on_stopped)(struct sb__broker_s* b); /* after every stream is closed */
  /* Every client read lands in this one spare chunk (libuv calls the read callback
   * before the next allocation). A large read hands the chunk itself to the sink and
   * a new spare is made; a small one is copied into a chunk of its exact size. So
   * memory per idle stream stays small whatever the stream count, and bulk data is
   * never copied. */
  sb__chunk_t* spare;
  sb__spool_t* spool;   /* both modes (archive mode: what the archive cannot write) */
  void* upstream_watch; /* sb__upstream_watch_start's, or NULL */
  struct sb__names_s* sent_names; /* names sent upstream since start (upstream.c) */
  int upstream_proc_told; /* said once that the upstream's process is unknown */
  /* The replay-memory budget of the upstream module (budget.c): written by it only,
   * read through its accessors. */
  sb__budget_t budget;
  uint64_t upstream_epoch; /* grows whenever the upstream is seen gone or new (a failed
                              dial, its pipe appearing): a connection that ended at
                              once in another epoch than its dial's was an outage, not
                              a refusal (upstream.c) */
  uint64_t given_up_epoch; /* the epoch given-up streams were last tried again in: a
                              connection in a newer one tries them all (upstream.c) */
  sb__archive_state_t* archive; /* archive.c; NULL in forward mode */
  const char* role;  /* how this process runs, for the data_dir lock ("in a console",
                        "as the service StreamBroker"); set before sb__broker_start */
  sb__lock_t* lock;  /* the data directory's, from start to close */
  char start_error[768]; /* why sb__broker_start failed, when it can say it better
                            than its error code (another instance holds data_dir) */
  /* reload.c: the config file re-read on a reload (NULL: built-in defaults; set
   * before sb__broker_start), the reload signal (POSIX SIGHUP) and the async other
   * threads use (the Windows service's PARAMCHANGE), and the last config a reload
   * loaded, whose strings the changeable ones of cfg point into (freed at close). */
  const char* config_path;
  uv_signal_t sighup;
  uv_async_t reload_async;
  void (*reload_applied)(struct sb__broker_s* b, int upstream_changed);
  sb__config_t* reloaded;
  uint64_t reloads;               /* reloads applied */
  uint64_t reload_failures;       /* reloads refused (the config did not load) */
  struct sb__follow_s* followers; /* follow.c: admin connections following streams */
} sb__broker_t;

/* Size of a client read, and the least a read must fill to be handed over whole (more
 * than half: a smaller one is copied, so held data never wastes most of a buffer). */
#define SB__READ_SIZE (128u * 1024u)
#define SB__READ_KEEP (64u * 1024u + 1u)

/* Binds the control pipe and starts accepting. Returns 0 or SB_E* after logging. */
int sb__broker_start(sb__broker_t* b, uv_loop_t* loop, const sb__config_t* cfg);
/*
 * Stops accepting; live streams finish what they read and close, then on_stopped runs
 * (also after stop_timeout_ms, with whatever is still open logged). Thread: loop.
 * From another thread use uv_async_send(&b->stop_async).
 */
void sb__broker_stop(sb__broker_t* b);
/* After a failed sb__broker_start: closes the handles it opened. Run the loop, then
 * free the broker. */
void sb__broker_abort(sb__broker_t* b);
/* Closes the broker's last handle, after on_stopped. */
void sb__broker_close(sb__broker_t* b);
/* Starts a stream on an accepted connection (stream.c). */
void sb__stream_start(sb__broker_t* b, sb__stream_t* s);
/* Ends a stream early: stops reading, finishes its sink (stream.c). */
void sb__stream_stop(sb__stream_t* s);
/* A stream left in the spool by an earlier run, with no client, to be delivered. */
void sb__stream_resume(sb__broker_t* b, const sb__spool_resume_t* r);
/* Number of open streams of a client process. */
uint64_t sb__broker_client_streams(sb__broker_t* b, int64_t pid);
/*
 * Whether a warning caused by the client user (sb__peer_t.user; "" for unknown) may
 * be logged now: a token bucket per user (a burst of SB__CLIENT_LOG_BURST, then one
 * every SB__CLIENT_LOG_REFILL_MS), so that one user's flood of bad connections cannot
 * rotate the log away. What it holds back is counted (log_suppressed) and said in one
 * "suppressed N" line before that user's next warning. Loop thread.
 */
int sb__broker_client_log_ok(sb__broker_t* b, const char* user);
#define SB__CLIENT_LOG_BURST 20
#define SB__CLIENT_LOG_REFILL_MS 1000
/* Logs a warning a client caused, under the per-user rate limit. */
#define SB_LOG_CW(b, user, mod, ...)                                                   \
  do {                                                                                 \
    if (sb__broker_client_log_ok((b), (user)))                                         \
      sb__log(SB_LOG_WARN, mod, __VA_ARGS__);                                          \
  } while (0)

/* ---- reload.c: re-reading the config at run time ---- */

/*
 * Re-reads b->config_path (SIGHUP, sbctl reload, the Windows service's PARAMCHANGE)
 * and applies what can change at run time: log level, log rotation and the log file
 * (reopened, so logrotate may move it), retention, the limits, backoff, watermarks,
 * the upstream address and allowed_groups. What needs a restart (pipes, data_dir,
 * archive_dir, the mode, the spool's and replay settings, reader_group) is logged and
 * kept. A config that does not load is logged and the running one kept: SB_ECONFIG
 * with err saying why. On success, when report is not NULL, its two arrays "applied"
 * and "restart_needed" (cJSON) name the keys that changed. Loop thread; never stops
 * the service.
 */
int sb__broker_reload(sb__broker_t* b, void* report, char* err, size_t err_size);
/* Starts the reload signal and async (sb__broker_start) / closes them (the stop; each
 * close adds to pending_closes and runs done). After a reload applied, applied(b,
 * upstream_changed) lets the broker re-derive what follows from the config. */
void sb__reload_start(sb__broker_t* b,
                      void (*applied)(sb__broker_t* b, int upstream_changed));
void sb__reload_stop(sb__broker_t* b, uv_close_cb done);
/* Frees what reloads loaded (sb__broker_close). */
void sb__reload_free(sb__broker_t* b);
/* The signal that asks for a reload: POSIX SIGHUP; Windows 0 (none: sbctl reload or
 * the service control PARAMCHANGE). */
int sb__reload_signal(void);

/* ---- follow.c: sbctl follow ---- */

/*
 * Admin connections that follow live streams (the wire format is in follow.c). What
 * a follower has not read yet is bounded by SB__FOLLOW_MAX_QUEUED: past it, events are
 * dropped and their bytes counted, and the follower told ("missed") once it read half
 * of it. Loop thread.
 */
#define SB__FOLLOW_MAX_QUEUED (1024u * 1024u)
typedef struct sb__follow_s sb__follow_t;
/* conn follows streams named PREFIX... ("": all); closed is what sb__follow_stop_all
 * closes it with. The caller (admin.c) calls sb__follow_remove from that callback. */
sb__follow_t* sb__follow_add(sb__broker_t* b, uv_stream_t* conn, const char* prefix,
                             uv_close_cb closed);
void sb__follow_remove(sb__broker_t* b, sb__follow_t* f);
/* The service stops: every follower's connection is closed. */
void sb__follow_stop_all(sb__broker_t* b);
/* From stream.c, only while b->followers is not NULL: len bytes a stream read (mark:
 * where a resend may start, -1 inside a datagram), and its end. */
void sb__follow_data(sb__stream_t* s, const char* data, size_t len, int64_t mark);
void sb__follow_closed(sb__stream_t* s);

/* ---- admin.c: the administrators' pipe ---- */

/*
 * Binds admin_pipe (only the service's own user may connect) and answers one JSON
 * request per connection, one line each way: {"command":"status"} gives version,
 * uptime, upstream, open streams and every counter; {"command":"streams"} lists the
 * open streams with their client pid and bytes. Returns 0 or SB_E* after logging.
 */
int sb__admin_start(sb__broker_t* b);

/* The pipes' security descriptors on Windows: network logons denied; SYSTEM and
 * Administrators full control; Authenticated Users read and write (control pipe only)
 * as 0x12019B, FILE_GENERIC_READ | FILE_GENERIC_WRITE without FILE_APPEND_DATA, which
 * on a pipe is FILE_CREATE_PIPE_INSTANCE (GW would let any user serve the pipe's
 * name). The DACL is protected: nothing is inherited. The service's own account is
 * added at run time (win/listener.c). */
#define SB__DEFAULT_CONTROL_SDDL                                                       \
  "D:P(D;;GA;;;NU)(A;;GA;;;SY)(A;;GA;;;BA)(A;;0x12019b;;;AU)"
#define SB__ADMIN_SDDL "D:P(D;;GA;;;NU)(A;;GA;;;SY)(A;;GA;;;BA)"

/* ---- listener: the control and admin pipes (posix/listener.c, win/listener.c) ---- */

/*
 * A listening pipe and its accept loop. POSIX: a Unix socket, libuv's uv_listen (the
 * kernel keeps what a client wrote before accept, even once it closed). Windows: a
 * pool of named pipe instances of our own, each waiting in an overlapped
 * ConnectNamedPipe; a client that wrote and closed before its instance was taken
 * (ConnectNamedPipe's ERROR_NO_DATA) is handed over like any other, so what it wrote
 * is read. A connection the listener cannot hand over is dropped unread: it is
 * logged and counted (counters->accept_lost).
 */
typedef struct sb__listener_s sb__listener_t;
/*
 * A connection waits: the callback calls sb__listener_accept once, with a pipe it has
 * initialised (uv_pipe_init); one it does not accept is closed, logged and counted as
 * lost. Loop thread.
 */
typedef void (*sb__listener_cb)(sb__listener_t* l, void* arg);

/*
 * Binds path (from sb__address_bind_path) with its access rules and starts
 * accepting. POSIX: creates the socket's directory (0750), removes a stale socket of a
 * dead instance, SB_EEXIST while another instance serves it; mode 0600 (admin_only)
 * or 0660 before listen. Windows: every instance is created with the security
 * descriptor of sddl (NULL or "": SB__ADMIN_SDDL when admin_only, else
 * SB__DEFAULT_CONTROL_SDDL) plus the service's own account with full control (the
 * first instance's is the pipe's); SB_ECONFIG when it is invalid, does not deny
 * network logons before it allows anything, or denies the account
 * FILE_CREATE_PIPE_INSTANCE; a label (S:) is kept; the first with
 * FILE_FLAG_FIRST_PIPE_INSTANCE, all with PIPE_REJECT_REMOTE_CLIENTS; instances is
 * how many wait for clients at any time (POSIX: the listen backlog is 511, 16 for the
 * admin pipe). what names the pipe in logs ("control pipe"). counters may be NULL
 * (losses then are only logged). Returns 0 with *out set, or SB_E* after logging
 * (nothing is left open once the loop has run).
 */
int sb__listener_start(sb__listener_t** out, uv_loop_t* loop, const char* path,
                       const char* what, int admin_only, const char* sddl,
                       int instances, sb__listener_cb cb, void* arg,
                       sb__counters_t* counters);
/* From the callback only: opens client (initialised, not yet open) on the waiting
 * connection. 0, or SB_E* after logging (the connection is then lost, and counted). */
int sb__listener_accept(sb__listener_t* l, uv_pipe_t* client);
/*
 * Stops accepting: connections not handed over yet are dropped (logged, counted),
 * every instance and handle is closed, the listener freed, then closed(arg) runs (on a
 * later loop turn; closed may be NULL). Loop thread.
 */
void sb__listener_stop(sb__listener_t* l, void (*closed)(void* arg), void* arg);
/* Instances of the control pipe kept waiting (Windows), and of the admin pipe. */
#define SB__CONTROL_INSTANCES 64
#define SB__ADMIN_INSTANCES 4
/* What the service knows of a connected client. */
#define SB__PEER_GROUPS_MAX 1024
typedef struct {
  int64_t pid, uid, gid; /* -1 when unknown (uid and gid always on Windows) */
  /* Whose streams these are, for max_streams_per_user and the per-user log limit:
   * POSIX "uid N", Windows the client process's user SID ("S-1-5-..."); "" unknown. */
  char user[192];
  /* root (SYSTEM on Windows), the service's own user, or (POSIX) a member of the
   * service's own group: may use the reserves. */
  int privileged;
  int ngroups; /* POSIX: the peer's supplementary groups (SO_PEERGROUPS or
                  /proc/PID/status); -1 when unknown */
  int64_t groups[SB__PEER_GROUPS_MAX];
} sb__peer_t;

/*
 * Whether a peer may open streams under allowed_groups (comma-separated group names;
 * NULL or "": everyone). POSIX: its gid or one of the groups the process holds (not
 * those the group database gives its user) must be listed;
 * otherwise why says so. Windows: always (the pipe's DACL decides).
 */
int sb__peer_allowed(const sb__peer_t* peer, const char* allowed_groups, char* why,
                     size_t why_size);
/* The peer of a connected pipe: what the kernel says of the process, at connect time
 * (POSIX: SO_PEERCRED and SO_PEERGROUPS, not the group database). */
void sb__peer_credentials(uv_pipe_t* pipe, sb__peer_t* peer);

/* ---- upstream dial: platform parts (posix/dial.c, win/dial.c) ---- */

/*
 * One non-blocking attempt to connect to the upstream address; on success *h is a
 * connected descriptor (POSIX) or handle (Windows) for sb__pipe_adopt. Returns 0,
 * SB_EBUSY (server busy: retry soon), SB_ENOSERVER (absent: retry later), or another
 * SB_E* (also retried).
 * Windows: write access, SECURITY_SQOS_PRESENT | SECURITY_ANONYMOUS, overlapped.
 */
int sb__upstream_dial(const char* address, uv_os_fd_t* h);
/*
 * uv_pipe_open of a connected descriptor or handle (from sb__upstream_dial, or an
 * accepted pipe instance); a libuv error code, and h is then closed. Windows: libuv
 * 1.44 takes a C runtime descriptor for it and keeps it for the pipe's life, and the
 * C runtime's table holds 2,048: the descriptor here only carries the handle into
 * libuv and is closed at once, so no descriptor stays per connection; and one spare
 * descriptor is kept for the moment the table is full (of archive files, which libuv
 * opens with descriptors). Loop thread.
 */
int sb__pipe_adopt(uv_pipe_t* pipe, uv_os_fd_t h);
/* Bytes written on a connected pipe that its peer has not read yet (POSIX: SIOCOUTQ of
 * the socket), or -1 when the platform cannot tell (Windows). */
int64_t sb__pipe_unread(uv_pipe_t* pipe);

/*
 * The process serving an upstream connection, recorded at the dial so that a stream's
 * end can be told from the upstream's death: Linux, the socket's SO_PEERCRED pid and
 * that process's start time (/proc/PID/stat); Windows, GetNamedPipeServerProcessId and
 * a handle to the process (SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION). pid is -1
 * while unknown. Loop thread; sb__upstream_proc_close frees it and may run twice.
 */
typedef struct {
  int64_t pid;
  uint64_t start; /* POSIX: the start time, in clock ticks after boot */
  void* handle;   /* Windows: the process handle, or NULL */
} sb__upstream_proc_t;

/* Identifies the process at the other end of h (a connected upstream descriptor or
 * handle). 0, or SB_ENOTSUP / SB_EACCES / SB_EIO when it cannot be identified (another
 * user's process, no /proc): proc is then left unknown. */
int sb__upstream_proc_open(uv_os_fd_t h, sb__upstream_proc_t* proc);
/* 1: the process lives and is not exiting; 0: it exited, or is exiting (Linux: state
 * Z or X, another start time, or PF_EXITING, which the kernel sets before it closes a
 * dying process's files); a negative SB_E* code: unknown, or it cannot tell. */
int sb__upstream_proc_alive(const sb__upstream_proc_t* proc);
void sb__upstream_proc_close(sb__upstream_proc_t* proc);

/*
 * Watches for the upstream to appear, so that streams waiting in backoff dial at once:
 * POSIX watches the socket's directory (inotify), Windows asks WaitNamedPipeW on a
 * thread while sb__upstream_watch_waiting says some stream found it absent (called
 * only for SB_ENOSERVER: a busy or refusing upstream is left to the backoff), and wakes
 * once when it exists. appeared(arg) runs on the loop thread. Returns NULL when it
 * cannot watch (the backoff still works).
 */
void* sb__upstream_watch_start(uv_loop_t* loop, const char* address,
                               void (*appeared)(void* arg), void* arg);
void sb__upstream_watch_waiting(void* watch);
void sb__upstream_watch_stop(void* watch);

/* ---- service lifecycle (posix/service.c, win/service.c) ---- */

#define SB_SERVICE_NAME "StreamBroker"

/* Runs the broker until it stops; started (NULL in a console) is called once the
 * control pipe is bound. Returns the exit status. */
typedef int (*sb__run_fn)(void* arg, void (*started)(sb__broker_t* b));

/*
 * When the service control manager started this process, runs run(arg, ...) as the
 * service SB_SERVICE_NAME (reporting START_PENDING, RUNNING once started is called,
 * STOP_PENDING with checkpoints, STOPPED with a service-specific exit code on
 * failure), sets *exit_code and returns 1. Returns 0 when there is no service
 * manager to talk to: the caller runs in the console. POSIX: always 0.
 */
int sb__service_dispatch(sb__run_fn run, void* arg, int* exit_code);
/*
 * Registers the service (automatic start, description, restart on failure) to run
 * this executable with --config (made absolute) when given, as account (NULL:
 * LocalSystem; password may be NULL, as for "NT AUTHORITY\LocalService"). Prints
 * what it did or why not (not an administrator, already installed). SB_ENOTSUP on
 * POSIX, where installer/install-linux.sh and systemd do this.
 */
int sb__service_install(const char* config_path, const char* account,
                        const char* password);
/* Stops (waiting up to 30 s) and removes the service. */
int sb__service_uninstall(void);
/* The quick checks of a start passed (config, directories); what may take long comes
 * next. Windows service: START_PENDING is reported now, with checkpoints, so that a
 * start that fails before this reports STOPPED first. Otherwise a no-op. */
void sb__service_starting(void);
/*
 * Puts this executable's directory on the system PATH (add 1; the machine's
 * environment in the registry, REG_EXPAND_SZ, appended once, with WM_SETTINGCHANGE
 * broadcast) or takes it off (add 0; every entry equal to it, case-insensitively,
 * with or without a trailing '\'), as the MSI does for sbcat, sbrun and sbctl.
 * Prints what it did. 0 or SB_E*; POSIX: SB_ENOTSUP.
 */
int sb__service_path(int add);

/* ---- initconfig.c ---- */

/*
 * Writes dest from the shipped default config (a JSON file) with upstream,
 * archive_dir and data_dir set where not NULL or "", unless dest exists: then nothing
 * is touched and 1 is returned. The result is checked as the service will read it
 * (SB_ECONFIG with why in msg: nothing is written). dest's directory is made. msg says
 * what was done. 0, 1, or SB_E*.
 */
int sb__config_init(const char* shipped, const char* dest, const char* upstream,
                    const char* archive_dir, const char* data_dir, char* msg,
                    size_t size);

/* ---- the system event log (posix/eventlog.c, win/eventlog.c) ---- */

/* Event ids of the message table (win/streambroker.mc): each message is "%1". */
enum {
  SB__EVENT_STARTED = 1,    /* information: version, config, pipe */
  SB__EVENT_STOPPED = 2,    /* information: streams served, what stayed in the spool */
  SB__EVENT_START_FAILED = 3, /* error: why */
  SB__EVENT_ERROR = 4,      /* error: a logged error line */
  SB__EVENT_WARNING = 5,    /* warning: a logged warning line */
  SB__EVENT_SUPPRESSED = 6  /* warning: N messages suppressed */
};

/*
 * Windows: opens the event source StreamBroker (RegisterEventSourceW) for
 * sb__eventlog_report, which reports one event (its id above, one insertion string,
 * UTF-8) with the type its id implies; thread-safe. POSIX: no-ops. Reports go out
 * whether or not the source is registered (Windows then shows the text without the
 * message table).
 */
void sb__eventlog_open(void);
void sb__eventlog_report(int event_id, const char* text);
void sb__eventlog_close(void);
/*
 * Registers the event source in the registry (Application log, the message table in
 * this executable) / removes it. Prints what went wrong. 0 or SB_E*; POSIX:
 * SB_ENOTSUP.
 */
int sb__eventlog_install(void);
int sb__eventlog_uninstall(void);

/* ---- service manager notification (posix/notify.c, win/notify.c) ---- */

/*
 * systemd's readiness protocol without libsystemd: sb__notify_open returns 1 when
 * NOTIFY_SOCKET names a socket to tell (POSIX), else 0 and the calls do nothing.
 * sb__notify sends one datagram of "KEY=VALUE" lines ("READY=1", "STOPPING=1",
 * "STATUS=..."), never blocking. Loop thread. Windows: no-ops.
 */
int sb__notify_open(void);
void sb__notify(const char* text);
void sb__notify_close(void);

/* ---- platform (posix/platform.c, win/platform.c) ---- */

/* Platform defaults for paths. */
/* Where a service whose log_file is empty logs: Windows, DATA_DIR\logs\
 * streambrokerd.log; POSIX, NULL (standard error, which the journal keeps). */
const char* sb__default_service_log(void);
/* Where the config file is read from when --config is not given. */
const char* sb__default_config_path(void);
/* Process-wide set-up before serving (POSIX: SIGPIPE ignored). */
void sb__process_init(void);
/* Raises the open-file limit as far as allowed (POSIX); no-op elsewhere. */
void sb__raise_fd_limit(void);
/* How many descriptors (Windows: handles) the process has open; -1 when unknown. */
int64_t sb__process_open_handles(void);
/* Creates a directory and its parents (mode 0750 on POSIX, less the umask, which
 * sb__files_policy sets). 0 or SB_E*. */
int sb__mkdir_p(const char* path);
/*
 * What the service creates is its own: POSIX, files 0600 and directories 0700 (with
 * reader_group: 0640 and 2750, that group), and the process's umask set to match
 * (077, or 027), whatever it was started with. reader_group NULL or "": none. With
 * apply 0 only checks that the group exists. 0, or SB_ECONFIG with err saying why.
 * Windows: the access lists are set elsewhere (win/platform.c); 0.
 */
int sb__files_policy(const char* reader_group, int apply, char* err, size_t size);
/*
 * Checks a directory the service uses but may not have made (POSIX): it and each
 * directory above it must be owned by root or the service's user and writable by no
 * one else (above it, a sticky directory such as /tmp is allowed; for the directory
 * itself only with SB__DIR_STICKY_OK and owned by root). SB__DIR_PRIVATE with
 * SB__DIR_FIX: one the service owns gets the policy's mode and group. A directory that
 * does not exist yet is judged by where it would be made. 0, or SB_EUNSAFE with err
 * naming key, shown (the key's value) and what is wrong (SB_EACCES when its mode
 * cannot be set). Windows: 0.
 */
enum { SB__DIR_STICKY_OK = 1, SB__DIR_PRIVATE = 2, SB__DIR_FIX = 4 };
int sb__dir_secure(const char* key, const char* shown, const char* dir, unsigned how,
                   char* err, size_t size);
/*
 * Opens a file the service keeps (uv_fs_open's UV_FS_O_* flags; created with the
 * policy's mode): POSIX, relative to its directory's descriptor, never through a
 * symbolic link, never a FIFO or device; one opened for writing must be the service's
 * own, with one link, and is given the policy's mode and group. Returns the descriptor
 * (close-on-exec), or a negative libuv error (UV_ELOOP for a link, UV_EFTYPE,
 * UV_EPERM). Windows: uv_fs_open.
 */
uv_file sb__file_open(const char* path, int flags);
/* The log file, opened the same way for appending; NULL with errno set. */
FILE* sb__file_append(const char* path);
/*
 * Windows: whether path (a directory or file; absent is fine) is the service's own:
 * not a link (reparse point), owned by SYSTEM, Administrators or the service, and
 * writable by nobody else. 0, or SB_EACCES with why ("KEY \"PATH\" ...: what to
 * do"). POSIX: 0 (posix/ checks owners and modes where it opens).
 */
int sb__path_check_private(const char* key, const char* path, char* why, size_t size);
/* Windows: SB_EACCES (logged) when a directory of path strictly below root is a link
 * (reparse point), which the archive never writes through. POSIX: 0. */
int sb__path_check_links(const char* root, const char* path);
/* Windows: gives the existing directory path, owned by SYSTEM, Administrators or the
 * service, the service's protected access list (for install, as an administrator); an
 * absent one is left for the service to make. POSIX: sb__mkdir_p. 0, or SB_E* with
 * why. */
int sb__path_make_private(const char* path, char* why, size_t size);
/* Whether a path is absolute: POSIX, it starts with '/'; Windows, a drive letter, ':'
 * and a separator, or a UNC or long ("\\?\") path. A path relative to the current
 * drive or to a drive's current directory is not. */
int sb__path_is_absolute(const char* path);
/* The directory a path is in, as a new string; NULL for a root (or a path with no
 * directory part). Trailing separators are ignored. */
char* sb__path_parent(const char* path);
/* A path that file calls accept whatever its length: Windows, the absolute "\\?\"
 * form (past MAX_PATH); POSIX, a copy. Returns a new string. */
char* sb__path_long(const char* path);

/* Whether an exclusive create of path that failed with uv_err (a libuv code) found
 * the name taken: EEXIST, or (Windows) access denied on a name still listed, a file
 * deleted while another process holds it ("delete pending"). (posix/fsname.c,
 * win/fsname.c) */
int sb__fs_name_taken(int uv_err, const char* path);

/* The delay before retry number step (0: the first) of something that failed for now
 * (an upstream dial, an archive that cannot write): backoff_initial_ms doubled at each
 * step up to backoff_max_ms, drawn from its upper half (jitter), so that many streams
 * do not retry in step. Loop thread (util.c). */
uint64_t sb__backoff_ms(const sb__config_t* cfg, unsigned step);

#endif /* SB_SERVICE_INTERNAL_H */
