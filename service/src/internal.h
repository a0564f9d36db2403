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

#define SB_CONTAINER_OF(ptr, type, field) ((type*)((char*)(ptr)-offsetof(type, field)))

/* The service aborts with a message on a failed small allocation (never on client
 * input sizes, which are bounded by limits first). */
void* sb__xmalloc(size_t n);
void* sb__xcalloc(size_t n, size_t size);
void* sb__xrealloc(void* p, size_t n);
char* sb__xstrdup(const char* s);

/* ---- log.c ---- */

enum { SB_LOG_ERROR = 0, SB_LOG_WARN = 1, SB_LOG_INFO = 2, SB_LOG_DEBUG = 3 };

/* Opens the log: path NULL or "" means stderr. Returns 0 or a negative SB_E*. */
int sb__log_open(const char* path, int level);
void sb__log_close(void);
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
/* The name of a level ("error" ...), or -1 for an unknown name. */
int sb__log_level_parse(const char* name);

/* ---- config.c ---- */

typedef struct {
  char* control_pipe;            /* address we listen on: unix:PATH or net.pipe:NAME */
  char* admin_pipe;              /* address of the administrators' status pipe */
  char* upstream;                /* address we forward to; NULL: archive mode */
  char* data_dir;                /* spool and state */
  char* archive_dir;             /* archive mode's files; default DATA_DIR/archive */
  uint64_t handshake_timeout_ms; /* a client must finish its handshake in this time */
  uint64_t max_frame_size;       /* handshake JSON, bytes */
  uint64_t max_datagram_size;    /* bytes */
  uint64_t max_streams;          /* open streams in total */
  uint64_t max_streams_per_client; /* open streams of one client process */
  uint64_t backoff_initial_ms;   /* upstream redial: first delay */
  uint64_t backoff_max_ms;       /* upstream redial: cap */
  uint64_t upstream_high_watermark; /* bytes queued to one upstream or file before the
                                       stream stops reading its client */
  int log_level;                 /* SB_LOG_* */
  char* log_file;                /* NULL or "": stderr */
  char* allowed_groups;          /* POSIX: comma-separated groups whose members may open
                                    streams; "": anyone who can reach the socket */
  char* control_pipe_sddl;       /* Windows: the control pipe's security descriptor;
                                    "": the default (SB__DEFAULT_CONTROL_SDDL) */
} sb__config_t;

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

/* ---- counters (broker.c): every refusal and error, by reason ---- */

typedef struct {
  uint64_t streams_opened;
  uint64_t streams_closed;
  uint64_t bytes_in;
  uint64_t bytes_out;
  uint64_t datagrams_in;
  uint64_t bad_handshakes[32]; /* by -SB_E* code */
  uint64_t handshake_timeouts;
  uint64_t refused_limit;      /* connections refused by stream limits */
  uint64_t refused_group;      /* connections refused by allowed_groups */
  uint64_t client_errors;      /* client connections that ended with an error */
  uint64_t upstream_dials;
  uint64_t upstream_dial_failures;
  uint64_t upstream_errors;
  uint64_t archive_errors;
} sb__counters_t;

/* ---- sink: where a stream's data goes (upstream.c, archive.c) ---- */

/* A piece of stream data, owned by whoever holds it; freed with sb__chunk_free(). */
typedef struct sb__chunk_s {
  struct sb__chunk_s* next;
  size_t len;
  size_t cap; /* SB__READ_SIZE for a read buffer, which is recycled; else 0 */
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
void sb__chunk_free(sb__chunk_t* c);

typedef struct sb__sink_s sb__sink_t;
typedef struct sb__stream_s sb__stream_t;

/*
 * A sink takes its stream's bytes in order and tells the stream about progress. The
 * stream calls write (ownership of the chunk passes to the sink, even on error), then
 * finish once at the end (client EOF or error), then never again. The sink calls
 * sb__stream_sink_drained() when its queue falls to half the watermark or below after
 * having been above the watermark (or when it starts dropping data after an error), and sb__stream_sink_done() exactly once after finish when everything is
 * flushed and closed (err 0) or it failed (err < 0); the stream frees the sink only
 * after that.
 */
struct sb__sink_s {
  void (*write)(sb__sink_t* sink, sb__chunk_t* chunk);
  void (*finish)(sb__sink_t* sink);
  void (*destroy)(sb__sink_t* sink); /* after done: frees the sink */
  sb__stream_t* stream;
  uint64_t queued; /* bytes accepted but not yet written */
};

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
  int reading;      /* client reads started (not paused by flow control) */
  int client_eof;   /* client finished (EOF or error) */
  int closing;      /* handles are being closed */
  int pending_closes;
  uint64_t id;      /* per-broker serial, for logs */
  uint64_t bytes;   /* payload bytes read from the client */
  uint64_t datagrams;
  int64_t peer_pid; /* -1 when unknown */
  int64_t peer_uid; /* -1 when unknown (always on Windows) */
  int64_t peer_gid;
  sb__time_t opened;
  struct sb__stream_s *prev, *next; /* broker's list of live streams */
};

/* Called by a sink; see sb__sink_t. */
void sb__stream_sink_drained(sb__stream_t* s);
void sb__stream_sink_done(sb__stream_t* s, int err);

/* ---- archive.c ---- */

/*
 * An archive sink for a stream whose handshake is done: the data goes to
 * ARCHIVE_DIR/<name>.log (datagram streams keep their varint framing) and the
 * properties to <name>.json, written when the stream opens and rewritten when it
 * closes (with the close time and the byte and datagram counts). Returns NULL after
 * logging when the files cannot be created.
 */
sb__sink_t* sb__archive_sink_create(sb__stream_t* s, const char* archive_dir);
/*
 * The relative path (with '/' separators) for a stream name: each segment is kept when
 * it is safe, and otherwise changed so that no ".." or "." segment, no absolute path
 * and no Windows device name (CON, NUL, COM1, ...) or reserved character can result.
 * Returns a new string (free()).
 */
char* sb__archive_path(const char* name);

/* ---- upstream.c ---- */

/* An upstream sink: dials the upstream, writes the handshake, then the data. */
sb__sink_t* sb__upstream_sink_create(sb__stream_t* s);

/* ---- broker.c ---- */

typedef struct sb__broker_s {
  uv_loop_t* loop;
  sb__config_t cfg;
  uv_pipe_t listener;
  int listening;
  uv_pipe_t admin; /* admin.c */
  int admin_listening;
  uint64_t started_ms; /* uv_now at start, for uptime */
  uv_signal_t sigint, sigterm;
  int stopping;
  sb__stream_t* streams; /* live streams */
  uint64_t nstreams;
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
} sb__broker_t;

/* Size of a client read, and the least a read must fill to be handed over whole. */
#define SB__READ_SIZE (128u * 1024u)
#define SB__READ_KEEP (32u * 1024u)

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
/* Called by stream.c when a stream is gone. */
void sb__broker_stream_gone(sb__broker_t* b, sb__stream_t* s);
/* Starts a stream on an accepted connection (stream.c). */
void sb__stream_start(sb__broker_t* b, sb__stream_t* s);
/* Ends a stream early: stops reading, finishes its sink (stream.c). */
void sb__stream_stop(sb__stream_t* s);
/* Number of open streams of a client process. */
uint64_t sb__broker_client_streams(sb__broker_t* b, int64_t pid);

/* ---- admin.c: the administrators' pipe ---- */

/*
 * Binds admin_pipe (only the service's own user may connect) and answers one JSON
 * request per connection, one line each way: {"command":"status"} gives version,
 * uptime, upstream, open streams and every counter; {"command":"streams"} lists the
 * open streams with their client pid and bytes. Returns 0 or SB_E* after logging.
 */
int sb__admin_start(sb__broker_t* b);

/* The pipes' security descriptors on Windows: network logons denied; SYSTEM and
 * Administrators full control; Authenticated Users read and write (control pipe only).
 * The DACL is protected: nothing is inherited. */
#define SB__DEFAULT_CONTROL_SDDL "D:P(D;;GA;;;NU)(A;;GA;;;SY)(A;;GA;;;BA)(A;;GRGW;;;AU)"
#define SB__ADMIN_SDDL "D:P(D;;GA;;;NU)(A;;GA;;;SY)(A;;GA;;;BA)"

/* ---- listener: platform parts (posix/listener.c, win/listener.c) ---- */

/*
 * Prepares the control pipe's path before bind (POSIX: creates its directory mode
 * 0750, removes a stale socket of a dead instance, fails with SB_EEXIST while another
 * instance serves it) and secures it after bind (POSIX: mode 0660).
 */
int sb__listener_prepare(const char* path);
/*
 * Secures a bound pipe before it listens. POSIX: mode 0600 for the admin pipe (only
 * the service's user), else 0660. Windows: sets the DACL of the SDDL string given
 * (sddl NULL or "": SB__ADMIN_SDDL for the admin pipe, else SB__DEFAULT_CONTROL_SDDL)
 * on the pipe libuv created. SB_ECONFIG for an invalid SDDL, after logging.
 */
int sb__listener_secure(uv_pipe_t* pipe, const char* path, int admin_only,
                        const char* sddl);
/* The bind path for an address of this platform's kind (SB_EADDRESS otherwise). */
int sb__listener_bind_path(const char* address, char* out, size_t size);
/*
 * Whether a peer may open streams under allowed_groups (comma-separated group names;
 * NULL or "": everyone). POSIX: its gid or one of its user's groups must be listed;
 * otherwise why says so. Windows: always (the pipe's DACL decides).
 */
int sb__peer_allowed(int64_t uid, int64_t gid, const char* allowed_groups, char* why,
                     size_t why_size);
/* The peer's pid, uid and gid (-1 when unknown). */
void sb__peer_credentials(uv_pipe_t* pipe, int64_t* pid, int64_t* uid, int64_t* gid);

/* ---- upstream dial: platform parts (posix/dial.c, win/dial.c) ---- */

/*
 * One non-blocking attempt to connect to the upstream address; on success *fd is a
 * connected descriptor/handle for uv_pipe_open. Returns 0, SB_EBUSY (server busy:
 * retry soon), SB_ENOSERVER (absent: retry later), or another SB_E* (also retried).
 * Windows: write access, SECURITY_SQOS_PRESENT | SECURITY_ANONYMOUS, overlapped.
 */
int sb__upstream_dial(const char* address, uv_file* fd);

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

/* ---- platform (posix/platform.c, win/platform.c) ---- */

/* Platform defaults for paths. */
const char* sb__default_control_pipe(void);
const char* sb__default_admin_pipe(void);
const char* sb__default_data_dir(void);
/* Where the config file is read from when --config is not given. */
const char* sb__default_config_path(void);
/* Raises the open-file limit as far as allowed (POSIX); no-op elsewhere. */
void sb__raise_fd_limit(void);
/* Creates a directory and its parents (mode 0750 on POSIX). 0 or SB_E*. */
int sb__mkdir_p(const char* path);
/* Joins two path parts with the platform's separator; returns a new string. */
char* sb__path_join(const char* a, const char* b);

/* Translates a libuv error to SB_E*, once, at the boundary. */
int sb__uv_err(int uv_err);

#endif /* SB_SERVICE_INTERNAL_H */
