/*
 * protocol.h - the stream protocol codec, shared by the client library and the service.
 *
 * Everything here is pure computation on memory: no I/O, no allocation failures that
 * abort (allocating functions return SB_ENOMEM), no global state. Every decoder takes
 * its input in pieces of any size, down to one byte at a time.
 */
#ifndef SB_PROTOCOL_H
#define SB_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#include "streambroker.h"

/* ---- varint (varint.c): unsigned LEB128, Go encoding/binary compatible ---- */

#define SB_VARINT_MAX_LEN 10

/* Writes v's minimal encoding to out (room for SB_VARINT_MAX_LEN); returns its length. */
size_t sb__varint_encode(uint64_t v, uint8_t* out);

/* Incremental reader. Zero-initialise (or sb__varint_reset) before each value. */
typedef struct {
  uint64_t value;
  unsigned shift;
  unsigned nbytes;
} sb__varint_t;

void sb__varint_reset(sb__varint_t* v);
/*
 * Feeds one byte. Returns 1 when the value is complete (v->value), 0 when more bytes
 * are needed, SB_EVARINT when it overflows 64 bits (more than 10 bytes, or a 10th byte
 * above 1), exactly as Go's binary.ReadUvarint. Non-minimal encodings are accepted.
 */
int sb__varint_feed(sb__varint_t* v, uint8_t byte);

/* ---- timestamps (timestamp.c) ---- */

/* A point in time: seconds since 1970-01-01T00:00:00Z and nanoseconds [0, 1e9). */
typedef struct {
  int64_t sec;
  int32_t nsec;
} sb__time_t;

/* Go's zero time.Time, 0001-01-01T00:00:00Z, which the protocol reads as "unset". */
#define SB__TIME_ZERO_SEC INT64_C(-62135596800)

/*
 * Parses an RFC 3339 timestamp as Go's time.Time.UnmarshalJSON does (without the
 * quotes): YYYY-MM-DDTHH:MM:SS, optional '.' and 1 or more fraction digits (digits past
 * the ninth are dropped), then 'Z' or +hh:mm / -hh:mm. Fields are range-checked (day
 * within its month, hour < 24, minute and second < 60, offset hour < 24). The result is
 * converted to UTC. Returns 0 or SB_ETIMESTAMP.
 */
int sb__time_parse(const char* s, size_t len, sb__time_t* out);
/*
 * Formats t as Go's RFC3339Nano in UTC: trailing zeros of the fraction removed, the
 * fraction left out when zero, 'Z' suffix. out needs SB__TIME_BUF bytes; returns the
 * length written (without the NUL), or SB_ETIMESTAMP for a year outside 0..9999.
 */
#define SB__TIME_BUF 40
int sb__time_format(sb__time_t t, char* out);
/* The current wall-clock time. */
sb__time_t sb__time_now(void);

/* ---- JSON (json.c): a small reader and a Go-compatible string writer ---- */

typedef enum {
  SB__JSON_STRING,
  SB__JSON_NUMBER,
  SB__JSON_OBJECT,
  SB__JSON_ARRAY,
  SB__JSON_TRUE,
  SB__JSON_FALSE,
  SB__JSON_NULL
} sb__json_kind_t;

/* A cursor over one JSON text held in memory. */
typedef struct {
  const char* p;
  const char* end;
  unsigned max_depth; /* nesting limit of the whole document, as Go's: 10000 */
} sb__json_t;

void sb__json_init(sb__json_t* j, const char* text, size_t len);
/* Skips JSON whitespace (space, \t, \n, \r). Returns 1 at the end of input, else 0. */
int sb__json_ws(sb__json_t* j);
/* The kind of the value at the cursor (after whitespace); SB_EJSON if none starts here. */
int sb__json_peek(sb__json_t* j);
/*
 * Reads a string value at the cursor and unescapes it into a new NUL-terminated buffer
 * (*out, *out_len; free with free()). Escapes and surrogate pairs are decoded; an
 * unpaired surrogate and invalid UTF-8 become U+FFFD, as Go does. A raw control
 * character (< 0x20) is an error. Returns 0, SB_EJSON or SB_ENOMEM.
 */
int sb__json_string(sb__json_t* j, char** out, size_t* out_len);
/* Skips one complete value of any kind (validating it). Returns 0 or SB_EJSON (or
 * SB_ENOMEM, only with max_depth raised above its default). */
int sb__json_skip(sb__json_t* j);
/*
 * Object iteration. sb__json_object_begin consumes '{'. sb__json_object_next reads the
 * next key (allocated as sb__json_string does) and the ':' after it, leaving the cursor
 * on the value; it returns 1 with a key, 0 at the closing '}' (consumed), or SB_EJSON.
 * The caller must consume each value (sb__json_string, sb__json_skip, a nested object).
 */
int sb__json_object_begin(sb__json_t* j);
int sb__json_object_next(sb__json_t* j, char** key, size_t* key_len);
/* Consumes the literal null if it is at the cursor: returns 1 if it did, else 0. */
int sb__json_null(sb__json_t* j);

/*
 * Growable byte buffer used by the encoders. Zero-initialised is empty. On allocation
 * failure it remembers SB_ENOMEM in err and ignores later appends.
 */
typedef struct {
  char* data;
  size_t len;
  size_t cap;
  int err;
} sb__buf_t;

void sb__buf_append(sb__buf_t* b, const void* data, size_t len);
void sb__buf_putc(sb__buf_t* b, char c);
void sb__buf_free(sb__buf_t* b);

/*
 * Appends s as a JSON string with quotes, escaped exactly as Go's encoding/json does:
 * \" \\ \n \r \t \b \f short forms, other bytes < 0x20 as \u00xx (lowercase hex),
 * < > & as \u003c \u003e \u0026, U+2028/U+2029 as \u2028/\u2029, each invalid UTF-8
 * byte as \ufffd, all other UTF-8 (and 0x7f) raw.
 */
void sb__json_write_string(sb__buf_t* b, const char* s, size_t len);

/* Case-insensitive key match as Go's encoding/json folds (ASCII letters, and U+017F
 * and U+212A, which fold to 's' and 'k'). want is lowercase ASCII. */
int sb__json_key_equal(const char* key, size_t key_len, const char* want);

/* ---- stream properties (props.c) ---- */

typedef struct {
  char* key;
  char* value;
} sb__tag_t;

/* A stream's handshake properties. All strings are owned (malloc) and NUL-terminated. */
typedef struct {
  char* name;
  char* content_type;  /* never NULL after decoding: defaults filled in */
  int type;            /* sb_stream_type_t */
  int has_timestamp;   /* 0: "now" (absent, null or the zero time) */
  sb__time_t timestamp;
  sb__tag_t* tags;     /* sorted by key (byte order), keys unique */
  size_t tag_count;
} sb__props_t;

/* The default content type of a stream type. */
const char* sb__props_default_content_type(int type);
/* Frees what props owns and zeroes it; safe on a zeroed or half-built value. */
void sb__props_free(sb__props_t* props);
/* Deep copy. Returns 0 or SB_ENOMEM (dst is then zeroed). */
int sb__props_copy(sb__props_t* dst, const sb__props_t* src);
/*
 * Builds properties from the public options as the Go client does: name validated,
 * tags validated, timestamp now when unset, content type defaulted.
 */
int sb__props_from_opts(sb__props_t* out, const sb_stream_opts_t* opts, const char* ns);
/* Sets (replacing) a tag, keeping the array sorted. Validates it. */
int sb__props_set_tag(sb__props_t* props, const char* key, const char* value);
/* Looks a tag up; NULL when absent. */
const char* sb__props_get_tag(const sb__props_t* props, const char* key);
/*
 * Encodes properties as the Go client's json.Marshal does (PROTOCOL.md 1.4): compact,
 * in the order name, contentType, type (left out for text), timestamp (always; the
 * zero time when unset), tags (sorted; left out when empty).
 */
int sb__props_encode_json(const sb__props_t* props, sb__buf_t* out);
/*
 * Decodes a handshake JSON body with the Go server's rules (PROTOCOL.md 1.3): object
 * only, keys case-insensitive, last duplicate wins, unknown keys ignored, only JSON
 * whitespace after the object. Validates name (required), type, tags and timestamp and
 * fills defaults. Returns 0 or SB_EJSON, SB_ENOTOBJECT, SB_ETRAILING, SB_ENONAME,
 * SB_ENAME, SB_ETYPE, SB_ETAG, SB_ETIMESTAMP, SB_ECONTENTTYPE, SB_ENOMEM.
 */
int sb__props_decode_json(const char* json, size_t len, sb__props_t* out);

/* ---- handshake (handshake.c) ---- */

/* Appends magic, varint length and JSON body for props to out. */
int sb__handshake_encode(const sb__props_t* props, sb__buf_t* out);

typedef struct {
  int state;
  unsigned magic_pos;
  sb__varint_t varint;
  size_t frame_len;
  size_t max_frame;
  char* body;
  size_t body_len;
  size_t consumed; /* total bytes of handshake consumed so far */
} sb__handshake_t;

/* max_frame 0 means SB_MAX_FRAME_SIZE. */
void sb__handshake_init(sb__handshake_t* hs, size_t max_frame);
void sb__handshake_destroy(sb__handshake_t* hs);
/*
 * Feeds len bytes. Sets *used to the bytes consumed. Returns 0 when more input is
 * needed (all of it was consumed), 1 when the handshake is complete (props filled;
 * bytes after *used are stream data), or a negative error: SB_EMAGIC, SB_EVARINT,
 * SB_EFRAMESIZE (before any body byte is read), or a sb__props_decode_json error.
 * The body is never read past its declared length.
 */
int sb__handshake_feed(sb__handshake_t* hs, const uint8_t* buf, size_t len, size_t* used,
                       sb__props_t* props);
/* What end of input means now: SB_ETRUNCATED (or SB_EMAGIC for no bytes at all). */
int sb__handshake_eof(const sb__handshake_t* hs);

/* ---- datagram framing (datagram.c) ---- */

typedef enum {
  SB__DGRAM_NONE = 0, /* input exhausted; more needed */
  SB__DGRAM_START,    /* a datagram header was read: ev->size is its length */
  SB__DGRAM_DATA,     /* ev->data, ev->len: body bytes of the current datagram */
  SB__DGRAM_END       /* the current datagram is complete (also right after an empty
                         one's START) */
} sb__dgram_event_kind_t;

typedef struct {
  int kind;
  uint64_t size;
  const uint8_t* data;
  size_t len;
} sb__dgram_event_t;

typedef struct {
  sb__varint_t varint;
  int in_body;
  int pending_end;
  uint64_t remaining;
  uint64_t max_size;
  uint64_t count; /* complete datagrams so far */
} sb__dgram_t;

/* max_size 0 means SB_MAX_DATAGRAM_SIZE. */
void sb__dgram_init(sb__dgram_t* d, uint64_t max_size);
/*
 * Parses the next event from buf. Returns the number of bytes consumed (possibly 0 for
 * an END event) and fills ev; ev->kind == SB__DGRAM_NONE means all of buf was consumed
 * without an event. Negative on error: SB_EVARINT or SB_ETOOBIG (size above the max).
 */
int64_t sb__dgram_next(sb__dgram_t* d, const uint8_t* buf, size_t len,
                       sb__dgram_event_t* ev);
/*
 * What end of input means: 0 at a datagram boundary or inside a header (a truncated
 * trailing header is discarded, as the protocol allows), SB_ETRUNCATED inside a body.
 */
int sb__dgram_eof(const sb__dgram_t* d);

/* ---- addresses (address.c) ---- */

typedef enum { SB__ADDR_UNIX = 1, SB__ADDR_PIPE = 2 } sb__addr_kind_t;

/*
 * Splits "unix:PATH" or "net.pipe:NAME" at the first ':'. *path points into address.
 * Returns 0 or SB_EADDRESS (unknown scheme, empty path, relative unix path, or a unix
 * path longer than 104 bytes).
 */
int sb__address_parse(const char* address, int* kind, const char** path);
/* Joins namespace and name as LogDog's types.Construct: empty parts dropped, '/'
 * trimmed from both ends of each part. Returns a new string (free()) or NULL. */
char* sb__name_join(const char* ns, const char* name);

#endif /* SB_PROTOCOL_H */
