/*
 * streambroker.h - the streambroker client library (libstreambroker).
 *
 * A client opens log streams on a stream server: the streambroker service, or any
 * server that speaks the LUCI LogDog butler stream protocol. One stream is one
 * connection: the library writes the handshake (magic, length, JSON properties) and
 * then the stream's data. The server never replies.
 *
 * Threads: a client and its streams may be used from any thread, but one stream must
 * not be used from two threads at once. Distinct streams are independent.
 *
 * Errors: every fallible call returns 0 or a negative SB_E* code; sb_strerror() turns a
 * code into text. No call aborts or exits the host program, and none raises SIGPIPE.
 */
#ifndef STREAMBROKER_H
#define STREAMBROKER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(SB_SHARED)
#if defined(SB_BUILDING)
#define SB_EXTERN __declspec(dllexport)
#else
#define SB_EXTERN __declspec(dllimport)
#endif
#elif defined(__GNUC__) && defined(SB_SHARED)
#define SB_EXTERN __attribute__((visibility("default")))
#else
#define SB_EXTERN
#endif

#define SB_VERSION_MAJOR 0
#define SB_VERSION_MINOR 1
#define SB_VERSION_PATCH 0
#define SB_VERSION_STRING "0.1.0"

/* The protocol's fixed facts (PROTOCOL.md section 1.9). */
#define SB_MAGIC "BTLR1\x1e"
#define SB_MAGIC_LEN 6
#define SB_MAX_FRAME_SIZE (1024u * 1024u)             /* handshake JSON, inclusive */
#define SB_MAX_DATAGRAM_SIZE (10u * 1024u * 1024u)    /* one datagram, inclusive */
#define SB_MAX_NAME_LEN 4096u
#define SB_MAX_TAG_KEY_LEN 64u
#define SB_MAX_TAG_VALUE_LEN 4096u
#define SB_DEFAULT_DIAL_TIMEOUT_MS 5000u
/* How long closing a stream waits for the server to read it (Windows), by default. */
#define SB_CLOSE_TIMEOUT_MS 30000u

/* The environment variables LUCI clients read. */
#define SB_ENV_SERVER_PATH "LOGDOG_STREAM_SERVER_PATH"
#define SB_ENV_NAMESPACE "LOGDOG_NAMESPACE"

/*
 * The service's control pipe on this platform: where clients go when no address is
 * given and LOGDOG_STREAM_SERVER_PATH is unset.
 */
#ifdef _WIN32
#define SB_DEFAULT_SERVER "net.pipe:streambroker"
#else
#define SB_DEFAULT_SERVER "unix:/run/streambroker/streambroker.sock"
#endif
/* For tests only: replaces SB_DEFAULT_SERVER, so that a test can start a service on an
 * address of its own and check that clients given no address find it. */
#define SB_ENV_DEFAULT_SERVER "STREAMBROKER_DEFAULT_SERVER"

/*
 * The error table: name, value, text. Values are stable across releases.
 * Handshake errors (SB_EMAGIC .. SB_ETRAILING) are what the decoder reports for a
 * client's bad handshake; the service logs and counts them by name.
 */
#define SB_ERRNO_MAP(XX)                                                                \
  XX(EINVAL, -1, "invalid argument")                                                    \
  XX(ENOMEM, -2, "out of memory")                                                       \
  XX(EMAGIC, -3, "handshake magic number mismatch")                                     \
  XX(EVARINT, -4, "varint overflows a 64-bit integer")                                  \
  XX(EFRAMESIZE, -5, "frame size exceeds maximum")                                      \
  XX(EJSON, -6, "handshake is not valid JSON")                                          \
  XX(ENOTOBJECT, -7, "handshake JSON is not an object")                                 \
  XX(ENONAME, -8, "stream name is missing")                                             \
  XX(ENAME, -9, "invalid stream name")                                                  \
  XX(ETYPE, -10, "invalid stream type (must be text, binary or datagram)")              \
  XX(ETAG, -11, "invalid tag")                                                          \
  XX(ETIMESTAMP, -12, "invalid timestamp (must be RFC 3339)")                           \
  XX(ECONTENTTYPE, -13, "invalid content type")                                         \
  XX(ETRAILING, -14, "handshake frame has trailing data after the JSON object")         \
  XX(ETRUNCATED, -15, "connection ended inside a frame")                                \
  XX(EADDRESS, -16, "invalid stream server address")                                    \
  XX(ENOENV, -17, "LOGDOG_STREAM_SERVER_PATH is not set")                               \
  XX(ENOSERVER, -18, "no stream server at that address")                                \
  XX(EBUSY, -19, "stream server stayed busy until the timeout")                         \
  XX(EACCES, -20, "permission denied")                                                  \
  XX(EPIPE, -21, "stream server closed the connection")                                 \
  XX(EIO, -22, "input/output error")                                                    \
  XX(ETOOBIG, -23, "datagram exceeds the maximum size")                                 \
  XX(ESTREAMTYPE, -24, "operation does not fit the stream's type")                      \
  XX(ENOTSUP, -25, "operation not supported")                                           \
  XX(ECONFIG, -26, "invalid configuration")                                             \
  XX(EEXIST, -27, "already exists")                                                     \
  XX(ENOENT, -28, "no such file or directory")                                          \
  XX(ENOSPC, -29, "no space left on device")                                            \
  XX(ELIMIT, -30, "limit reached")                                                      \
  XX(ETIMEDOUT, -31, "timed out")                                                       \
  XX(ECANCELED, -32, "operation canceled")                                              \
  XX(EUNSAFE, -33, "socket or directory that others may write (refused)")                \
  XX(ESERVER, -34, "the pipe's server is not the stream service")

typedef enum {
#define SB__ERR_ENUM(name, value, text) SB_##name = value,
  SB_ERRNO_MAP(SB__ERR_ENUM)
#undef SB__ERR_ENUM
  SB__ERR_MIN = -35
} sb_errno_t;

/* Text for an error code; never NULL ("unknown error" for an unknown code). */
SB_EXTERN const char* sb_strerror(int err);
/* The code's name, such as "SB_ENAME"; never NULL. */
SB_EXTERN const char* sb_err_name(int err);

typedef enum { SB_TEXT = 0, SB_BINARY = 1, SB_DATAGRAM = 2 } sb_stream_type_t;

typedef struct {
  const char* key;   /* a valid stream name of at most 64 bytes */
  const char* value; /* at most 4096 bytes; any content */
} sb_tag_t;

/*
 * What a new stream is called and how it is described. Zero-initialise, then set what
 * is needed: name is required; type defaults to SB_TEXT; content_type NULL means the
 * type's default; timestamp_sec == 0 && timestamp_nsec == 0 means "now". The
 * timestamp is seconds since the Unix epoch, UTC. The library copies what it needs;
 * the caller keeps ownership of every pointer.
 */
typedef struct {
  const char* name;
  sb_stream_type_t type;
  const char* content_type;
  const sb_tag_t* tags;
  size_t tag_count;
  int64_t timestamp_sec;
  int32_t timestamp_nsec;
} sb_stream_opts_t;

typedef struct sb_client_s sb_client_t;
typedef struct sb_stream_s sb_stream_t;

#ifdef _WIN32
typedef void* sb_os_handle_t; /* a HANDLE */
#define SB_INVALID_OS_HANDLE ((void*)(intptr_t)-1)
#else
typedef int sb_os_handle_t; /* a file descriptor */
#define SB_INVALID_OS_HANDLE (-1)
#endif

/*
 * Opens a client for a stream server address: "unix:/abs/path" (POSIX) or
 * "net.pipe:NAME" (Windows, \\.\pipe\NAME). A NULL address means
 * sb_default_address(). The client reads LOGDOG_NAMESPACE once, here, and prefixes it
 * to every stream name. Nothing is dialed yet.
 * Errors: SB_EADDRESS, SB_ENAME (bad namespace), SB_ENOMEM.
 * The client is freed by sb_client_close().
 */
SB_EXTERN int sb_client_open(sb_client_t** out, const char* address);
/*
 * The address a client given none uses: LOGDOG_STREAM_SERVER_PATH when it is set and
 * not empty (as LUCI clients do), else the service's control pipe SB_DEFAULT_SERVER
 * (or STREAMBROKER_DEFAULT_SERVER, when a test sets it). The string belongs to the
 * environment or is static: do not free it, and copy it before changing either.
 */
SB_EXTERN const char* sb_default_address(void);
/*
 * A client's options, for sb_client_open_opts. Zero-initialise, then set what is
 * needed; 0 means the default.
 */
typedef struct {
  /* How long sb_stream_open retries a busy server (default SB_DEFAULT_DIAL_TIMEOUT_MS;
   * a single try: sb_client_set_timeout(client, 0)). */
  uint32_t dial_timeout_ms;
  /* How long sb_stream_close waits for the server to read the stream (Windows;
   * default SB_CLOSE_TIMEOUT_MS). */
  uint32_t close_timeout_ms;
} sb_client_opts_t;

/* sb_client_open with options (opts may be NULL: all defaults). */
SB_EXTERN int sb_client_open_opts(sb_client_t** out, const char* address,
                                  const sb_client_opts_t* opts);
/* Frees the client. Streams opened from it stay valid and must be closed separately. */
SB_EXTERN void sb_client_close(sb_client_t* client);
/*
 * How long sb_stream_open() keeps retrying a busy server before it gives up with
 * SB_EBUSY. Default SB_DEFAULT_DIAL_TIMEOUT_MS; 0 means a single try.
 */
SB_EXTERN void sb_client_set_timeout(sb_client_t* client, uint32_t timeout_ms);
/* Replaces the namespace read from LOGDOG_NAMESPACE; NULL or "" clears it. */
SB_EXTERN int sb_client_set_namespace(sb_client_t* client, const char* ns);

/*
 * Opens a stream: validates the options (SB_ENAME, SB_ETAG, SB_ETYPE, SB_ETIMESTAMP),
 * dials the server (retrying while it is busy, with capped exponential backoff, up to
 * the client's timeout: SB_EBUSY; an absent server fails at once: SB_ENOSERVER;
 * SB_EACCES when refused by permissions; POSIX, SB_EUNSAFE when the socket's directory
 * is writable by others than its owner, unless it is a sticky directory of root's such
 * as /tmp holding a socket of root's, the caller's or the directory owner's: someone
 * else could have put a server of their own there) and writes the handshake.
 * The stream is freed by sb_stream_close().
 */
SB_EXTERN int sb_stream_open(sb_client_t* client, const sb_stream_opts_t* opts,
                             sb_stream_t** out);
/*
 * Writes all of buf to a text or binary stream, blocking until it is written.
 * Errors: SB_ESTREAMTYPE on a datagram stream, SB_EPIPE when the server closed.
 */
SB_EXTERN int sb_stream_write(sb_stream_t* stream, const void* buf, size_t len);
/*
 * Sends one datagram (0 to SB_MAX_DATAGRAM_SIZE bytes) on a datagram stream.
 * Errors: SB_ESTREAMTYPE on another type, SB_ETOOBIG, SB_EPIPE.
 */
SB_EXTERN int sb_stream_send_datagram(sb_stream_t* stream, const void* buf, size_t len);
/*
 * Ends the stream (EOF to the server) and frees it, in every case. Returns the first
 * write error, or else whether the server read the stream: on Windows the call waits
 * (FlushFileBuffers) until the server has read every byte written, up to the client's
 * close timeout (sb_client_opts_t, default SB_CLOSE_TIMEOUT_MS): SB_ETIMEDOUT past it
 * (the wait is cancelled, the stream closed: the server may still read it, or not),
 * SB_EPIPE when the server closed the connection first. A process that exits right
 * after a 0 from here knows its stream was read. POSIX: the same under the same
 * deadline: the write side is shut down and the call waits for the server to close
 * its end after reading everything (0), or to close it with bytes unread, as it does
 * for a stream it refuses (a limit, allowed_groups, a bad handshake: the kernel then
 * resets the connection, SB_EPIPE).
 */
SB_EXTERN int sb_stream_close(sb_stream_t* stream);

/*
 * Opens a text or binary stream whose connection is handed over to the caller as an
 * OS handle (POSIX: a file descriptor; Windows: a HANDLE opened without
 * FILE_FLAG_OVERLAPPED), ready to be a child process's stdout or stderr. The caller
 * owns it and closes it (close() / CloseHandle()) after the child has started, or
 * keeps it until the child has exited and then asks sb_os_handle_flush whether the
 * server read everything, before closing it.
 *
 * Windows: the handle is NOT inheritable. Were it, every child the program starts
 * while it is open (from any thread) would inherit it, and the stream would not end
 * until the last of them exits. Hand it to the one child it is for: duplicate it
 * inheritable (DuplicateHandle(..., TRUE, DUPLICATE_SAME_ACCESS)), name the duplicate
 * in the child's STARTUPINFOEXW, both as hStdOutput/hStdError and in a
 * PROC_THREAD_ATTRIBUTE_HANDLE_LIST attribute (so only the listed handles are
 * inherited), call CreateProcessW with bInheritHandles TRUE and
 * EXTENDED_STARTUPINFO_PRESENT, then close the duplicate. sbrun does so.
 * POSIX: the descriptor is inheritable across exec (no FD_CLOEXEC), as a child's
 * stdout needs after dup2.
 */
SB_EXTERN int sb_stream_open_for_process(sb_client_t* client, const sb_stream_opts_t* opts,
                                         sb_os_handle_t* out);
/*
 * For a handle of sb_stream_open_for_process (or a duplicate of it), once its child
 * has exited: waits until the server has read everything written on the connection,
 * as sb_stream_close does, up to timeout_ms (0: SB_CLOSE_TIMEOUT_MS). Does not close
 * the handle. 0, SB_ETIMEDOUT, SB_EPIPE, SB_EINVAL or SB_EIO. POSIX: 0 at once.
 */
SB_EXTERN int sb_os_handle_flush(sb_os_handle_t handle, uint32_t timeout_ms);

/*
 * Checks a stream name against the LogDog rules: 1..4096 bytes of '/'-separated
 * segments, each starting with [A-Za-z0-9] and then [A-Za-z0-9:_.-]. Returns 0 or
 * SB_ENAME.
 */
SB_EXTERN int sb_validate_name(const char* name, size_t len);
/* Checks a tag: key a valid name of at most 64 bytes, value at most 4096 bytes. */
SB_EXTERN int sb_validate_tag(const char* key, size_t key_len, size_t value_len);

#ifdef __cplusplus
}
#endif
#endif /* STREAMBROKER_H */
