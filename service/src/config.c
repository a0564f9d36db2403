/*
 * config.c - streambroker.json. One table of keys (redis config.c style) drives the
 * defaults, parsing, validation, the printed key table (config/KEYS.md) and the
 * printed default config.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "internal.h"

/* Larger config files are refused before parsing (a config is a few hundred bytes). */
#define SB__CONFIG_MAX_SIZE (1u << 20)

typedef enum {
  SB__KEY_STRING, /* a JSON string (with the flags below) */
  SB__KEY_UINT,   /* a JSON number with an integer value within [min, max] */
  SB__KEY_ENUM    /* a JSON string among values[]; stored as its index, an int */
} sb__key_type_t;

enum {
  SB__KEY_NULLABLE = 1, /* null is allowed and stored as NULL */
  SB__KEY_ADDRESS = 2,  /* an address of this platform's kind */
  SB__KEY_NONEMPTY = 4, /* "" is refused */
  SB__KEY_PATH = 8,     /* a path: absolute ("" keeps its meaning) */
  SB__KEY_NAME = 16     /* one account or group name: no control character, ',' or
                           ':', at most 256 bytes */
};

typedef struct {
  const char* name;
  sb__key_type_t type;
  unsigned flags;
  size_t offset;                     /* of the field in sb__config_t */
  uint64_t min, max, def;            /* UINT; ENUM: def is the index of the default */
  const char* def_string;            /* STRING default; NULL: def_platform(), or null */
  const char* (*def_platform)(void); /* STRING default that depends on the platform */
  const char* def_doc;       /* the table's default column, when platform-bound */
  const char* const* values; /* ENUM names, NULL-terminated, index = value */
  const char* allowed_doc;   /* the table's allowed column, for STRING keys */
  const char* meaning;
} sb__key_t;

/* The names of SB_LOG_* by value (log.c parses the same names; a test keeps the two
 * equal). */
static const char* const sb__level_values[] = {"error", "warn", "info", "debug", NULL};
/* The names of SB__DURABILITY_*, SB__SYNC_* and SB__FULL_* by value. */
static const char* const sb__durability_values[] = {"spool", "always", "backlog", NULL};
static const char* const sb__synchronous_values[] = {"normal", "full", NULL};
static const char* const sb__full_policy_values[] = {"refuse", "drop-oldest", NULL};

/* One row per key of sb__config_t; the JSON name is the field's name. */
#define SB__UINT(field, lo, hi, dflt, text)                                            \
  {                                                                                    \
    .name = #field, .type = SB__KEY_UINT, .offset = offsetof(sb__config_t, field),     \
    .min = lo, .max = hi, .def = dflt, .meaning = text                                 \
  }
#define SB__ENUM(field, names, dflt, text)                                             \
  {                                                                                    \
    .name = #field, .type = SB__KEY_ENUM, .offset = offsetof(sb__config_t, field),     \
    .values = names, .def = dflt, .meaning = text                                      \
  }
/* dflt: a fixed default (NULL: null); or platform(), documented in the table as doc. */
#define SB__STRING(field, flag_bits, dflt, platform, doc, allowed, text)               \
  {                                                                                    \
    .name = #field, .type = SB__KEY_STRING, .flags = flag_bits,                        \
    .offset = offsetof(sb__config_t, field), .def_string = dflt,                       \
    .def_platform = platform, .def_doc = doc, .allowed_doc = allowed, .meaning = text  \
  }

/* clang-format off */
static const sb__key_t sb__keys[] = {
  SB__STRING(control_pipe, SB__KEY_ADDRESS, NULL, sb__default_control_pipe,
    "`\"unix:/run/streambroker/streambroker.sock\"` (Linux), "
    "`\"net.pipe:streambroker\"` (Windows)",
    "`unix:/ABSOLUTE/PATH` (Linux, 104 bytes at most), `net.pipe:NAME` (Windows)",
    "Address the service listens on for clients."),
  SB__STRING(admin_pipe, SB__KEY_ADDRESS, NULL, sb__default_admin_pipe,
    "`\"unix:/run/streambroker/admin.sock\"` (Linux), "
    "`\"net.pipe:streambroker-admin\"` (Windows)",
    "an address as for `control_pipe`",
    "Address of the administrators' status pipe (`sbctl`); only the service's own "
    "user may connect on Linux."),
  SB__STRING(upstream, SB__KEY_ADDRESS | SB__KEY_NULLABLE, NULL, NULL, NULL,
    "an address as for `control_pipe`, or `null`",
    "Address of the stream server every stream is forwarded to; `null` writes the "
    "streams to `archive_dir` instead (archive mode)."),
  SB__STRING(data_dir, SB__KEY_NONEMPTY | SB__KEY_PATH, NULL, sb__default_data_dir,
    "`\"/var/lib/streambroker\"` (Linux), `\"%ProgramData%\\StreamBroker\"` (Windows)",
    "an absolute path",
    "Directory of the service's state and spool (in archive mode too: it holds what "
    "the archive cannot write yet). It must exist or be creatable, and be writable."),
  SB__STRING(archive_dir, SB__KEY_PATH, "", NULL, NULL,
    "an absolute path; `\"\"` means DATA_DIR/archive",
    "Directory of the archived streams in archive mode. At start it must exist or be "
    "creatable, and be writable; later, while it cannot be written, streams wait in "
    "the spool."),
  SB__UINT(archive_max_bytes, 0, 1125899906842624ull, 0,
    "Archive mode: when the archive's files (`.log` and `.json`) pass this many "
    "bytes, the oldest closed streams are deleted until it is below; `0`: no limit. "
    "Open streams are never deleted."),
  SB__UINT(archive_max_age, 0, 3153600000ull, 0,
    "Archive mode: closed streams whose `.log` was last written longer ago than this "
    "many seconds are deleted (checked every minute and as streams close); `0`: kept "
    "for ever."),
  SB__UINT(handshake_timeout_ms, 100, 600000, 5000,
    "A client must send its whole handshake within this time, in milliseconds."),
  SB__UINT(max_frame_size, 64, 1048576, 1048576,
    "Largest handshake JSON accepted, in bytes (the protocol's limit is 1 MiB)."),
  SB__UINT(max_datagram_size, 1, 10485760, 10485760,
    "Largest datagram accepted, in bytes (the protocol's limit is 10 MiB)."),
  SB__UINT(max_streams, 1, 1000000, 8192,
    "Open streams in total; further connections are refused, logged and counted."),
  SB__UINT(max_streams_per_client, 1, 1000000, 4096,
    "Open streams of one client process; further ones are refused likewise. Another "
    "streambrokerd in front of this one is one client: the default lets it carry "
    "4,096 streams."),
  SB__UINT(max_streams_per_user, 0, 1000000, 0,
    "Open streams of one user (Linux: uid; Windows: the client process's user SID), "
    "connections in their handshake included; further ones are refused likewise. "
    "`0`: a quarter of `max_streams`. root (SYSTEM), the service's own user and "
    "members of its group are not limited by it."),
  SB__UINT(max_handshakes, 1, 1000000, 4096,
    "Connections still in their handshake, in total; a user may hold a quarter of "
    "them. Further connections are refused, logged and counted. The last sixteenth "
    "(at least one) of these and of `max_streams` is a reserve that only root "
    "(SYSTEM), the service's own user and members of its group may use."),
  SB__UINT(handshake_memory_max, 1048576, 1099511627776ull, 16777216,
    "Bytes the handshakes in flight may hold in all. Past it, a handshake that "
    "holds 4 KiB or more is paused (not read) until others finish or time out; "
    "each pause is counted (`handshake_memory_waits`)."),
  SB__UINT(backoff_initial_ms, 1, 60000, 100,
    "First delay before dialing a busy or absent upstream again, in milliseconds; it "
    "doubles with each failed dial."),
  SB__UINT(backoff_max_ms, 1, 30000, 10000,
    "Cap of that delay, in milliseconds; at least `backoff_initial_ms`."),
  SB__UINT(upstream_end_timeout_ms, 1000, 3600000, 30000,
    "After a stream's last byte, how long the upstream has to confirm that it read "
    "everything (Linux: it closes its end; Windows: `FlushFileBuffers` returns). Past "
    "it the stream is not counted delivered: its connection is closed and it is "
    "resent later from its replay window (on Linux, an upstream that read every byte "
    "but keeps its end open counts as delivered)."),
  SB__UINT(upstream_end_linger_ms, 0, 600000, 2000,
    "After an end the upstream confirmed it *read* but cannot confirm it *stored* "
    "(Windows, where a pipe has no half-close; on Linux, an upstream that read every "
    "byte but did not close its end in time), the stream keeps its replay window this "
    "long and watches the upstream's process: if that process exits meanwhile, the "
    "window is resent (tagged), else the stream counts as delivered. `0`: delivered "
    "at once, as before."),
  SB__UINT(upstream_max_refusals, 1, 1000, 5,
    "A connection the upstream closes within a second of the dial is a refusal (a "
    "LUCI butler refuses a stream name it has seen): the stream is reopened under its "
    "next name (`NAME:2`, `NAME:3`, ...), with backoff. After this many refusals in a "
    "row the stream is given up: its client is closed, it is logged, counted and "
    "listed, and its data stays in the spool until the service starts again."),
  SB__UINT(upstream_high_watermark, 4096, 1073741824, 1048576,
    "Bytes queued to one stream's upstream or archive file before the stream stops "
    "reading its client, until half of them are written."),
  SB__ENUM(durability, sb__durability_values, SB__DURABILITY_BACKLOG,
    "`\"backlog\"`: a stream goes straight upstream, with no disk, while its connection "
    "keeps up, and to the spool only while it would otherwise wait (upstream absent, "
    "busy, slow or broken, or a backlog still draining); replay windows live in memory "
    "(`replay_memory_max`). A killed service loses what it had read and not yet "
    "written to a healthy upstream, and its in-memory windows. `\"spool\"`: every byte "
    "also goes to the spool, and upstream as soon as it is read (a killed service "
    "loses what it had read but not yet committed, a few milliseconds' worth). "
    "`\"always\"`: every byte read from a client is committed to the spool before it is "
    "forwarded, so a killed service loses nothing it read. A graceful stop loses "
    "nothing in any mode."),
  SB__ENUM(synchronous, sb__synchronous_values, SB__SYNC_NORMAL,
    "SQLite `synchronous` of the spool (WAL mode). `\"normal\"`: a committed "
    "transaction survives a killed service, but a power loss or OS crash may undo the "
    "last ones. `\"full\"`: every commit is flushed to disk (fsync), so it survives "
    "power loss too, at the cost of one flush per group commit."),
  SB__UINT(spool_max_bytes, 131072, 1125899906842624ull, 1073741824,
    "Cap of the spool, in bytes: chunk payloads plus the WAL's budget between "
    "checkpoints (a quarter of the cap, 64 KiB to 16 MiB); the database file is "
    "somewhat larger (pages, indexes). What happens at the cap is "
    "`spool_full_policy`."),
  SB__ENUM(spool_full_policy, sb__full_policy_values, SB__FULL_REFUSE,
    "At the cap, or when the disk is full: `\"refuse\"` closes the client stream "
    "whose data does not fit (logged and counted; data already accepted is kept); "
    "`\"drop-oldest\"` drops whole oldest chunks to make room (counted per stream; "
    "the stream is reopened upstream with the tag `streambroker.dropped`)."),
  SB__UINT(replay_window, 65536, 1073741824, 4194304,
    "Bytes of each stream already written upstream that stay in the spool, resent "
    "(under the tag `streambroker.offset`) when the upstream connection breaks. It must "
    "cover what the upstream can hold read but not yet stored when it dies: for "
    "another streambrokerd, its `upstream_high_watermark` plus one read (128 KiB) "
    "plus the socket or pipe buffers (a few hundred KiB); the defaults (4 MiB against "
    "1 MiB) leave room to spare."),
  SB__UINT(replay_memory_max, 1048576, 1099511627776ull, 67108864,
    "With `durability` `\"backlog\"`: bytes of all live streams' replay windows (and "
    "their data in flight upstream) held in memory together. Past it, the oldest "
    "windows are written to the spool and freed, whole, until a quarter is free again; "
    "their streams stay live, and a break still resends from the window (from the "
    "spool)."),
  SB__UINT(spool_reserve_bytes, 0, 1073741824, 16777216,
    "Room kept beside the spool as a file (`spool.reserve`) while the disk has it: "
    "when the disk fills, the file is removed so that delivered data can still be "
    "deleted and the spool drains; it is made again once there is room. At start it "
    "is removed before the spool is opened, so a service stopped on a full disk "
    "starts again. 0: no reserve."),
  SB__ENUM(log_level, sb__level_values, SB_LOG_INFO,
    "Most detailed level logged."),
  SB__STRING(log_file, SB__KEY_PATH, "", NULL, NULL,
    "an absolute path; `\"\"` means standard error (the Windows service: "
    "`%ProgramData%\\StreamBroker\\logs\\streambrokerd.log`)",
    "File the log is appended to; it rotates by `log_max_bytes`. Its directory must "
    "exist or be creatable, and be writable."),
  SB__UINT(log_max_bytes, 1024, 1099511627776ull, 10485760,
    "Size at which `log_file` rotates: it becomes `log_file.1` (the older ones "
    "`.2`, `.3`, ...) and a new file starts. A line never straddles two files."),
  SB__UINT(log_max_files, 2, 1000, 5,
    "Files of the log kept, the current one included; the oldest goes at a "
    "rotation."),
  SB__STRING(allowed_groups, 0, "", NULL, NULL,
    "group names separated by commas; `\"\"` means any",
    "Linux only: only members of these groups (by primary or supplementary group) may "
    "open streams; others are refused with a logged reason. The socket's mode (0660) "
    "and directory still decide who can connect at all. Neither lets anyone read what "
    "was written: that is `reader_group`'s."),
  SB__STRING(reader_group, SB__KEY_NAME, "", NULL, NULL,
    "a group name; `\"\"` means none",
    "Linux: the group that may read the spool, the archive and the log file (data "
    "files 0640 and directories 2750 in this group); without it they are the "
    "service's alone (0600 and 0700). `allowed_groups` and the socket's group only let "
    "users write streams, never read them. The service's user must be a member (or "
    "root); `--check-config` says when the group does not exist."),
  SB__STRING(control_pipe_sddl, 0, "", NULL, NULL,
    "an SDDL string; `\"\"` means the default",
    "Windows only: security descriptor of the control pipe. The default, "
    "`" SB__DEFAULT_CONTROL_SDDL "`, denies network logons and gives SYSTEM and "
    "Administrators full control and Authenticated Users read and write without the "
    "right to create instances of the pipe (0x12019B; GW would hold it). A custom one "
    "must deny network logons (NU) before it allows anything; the service's own "
    "account is added to it with full control; a label (S:) is kept. Ignored on "
    "Linux, where the socket's mode and directory decide."),
};
/* clang-format on */

#define SB__NKEYS (sizeof(sb__keys) / sizeof(sb__keys[0]))

static char** sb__str_field(sb__config_t* cfg, const sb__key_t* k) {
  return (char**)((char*)cfg + k->offset);
}

static uint64_t* sb__uint_field(sb__config_t* cfg, const sb__key_t* k) {
  return (uint64_t*)((char*)cfg + k->offset);
}

static int* sb__enum_field(sb__config_t* cfg, const sb__key_t* k) {
  return (int*)((char*)cfg + k->offset);
}

static const char* sb__default_string(const sb__key_t* k) {
  return k->def_platform ? k->def_platform() : k->def_string;
}

static char* sb__dup_or_null(const char* s) {
  return s ? sb__xstrdup(s) : NULL;
}

/* archive_dir "" stands for DATA_DIR/archive; consumers only ever see the result. */
static char* sb__derived_archive_dir(const char* data_dir) {
  return sb__path_join(data_dir, "archive");
}

static int sb__archive_dir_is_derived(const sb__config_t* cfg) {
  char* derived;
  int r;
  if (cfg->archive_dir == NULL || cfg->archive_dir[0] == '\0')
    return 1;
  if (cfg->data_dir == NULL)
    return 0;
  derived = sb__derived_archive_dir(cfg->data_dir);
  r = strcmp(derived, cfg->archive_dir) == 0;
  free(derived);
  return r;
}

void sb__config_defaults(sb__config_t* cfg) {
  size_t i;
  memset(cfg, 0, sizeof(*cfg));
  for (i = 0; i < SB__NKEYS; i++) {
    const sb__key_t* k = &sb__keys[i];
    if (k->type == SB__KEY_UINT)
      *sb__uint_field(cfg, k) = k->def;
    else if (k->type == SB__KEY_ENUM)
      *sb__enum_field(cfg, k) = (int)k->def;
    else
      *sb__str_field(cfg, k) = sb__dup_or_null(sb__default_string(k));
  }
  free(cfg->archive_dir);
  cfg->archive_dir = sb__derived_archive_dir(cfg->data_dir);
}

void sb__config_free(sb__config_t* cfg) {
  size_t i;
  for (i = 0; i < SB__NKEYS; i++) {
    const sb__key_t* k = &sb__keys[i];
    if (k->type == SB__KEY_STRING) {
      free(*sb__str_field(cfg, k));
      *sb__str_field(cfg, k) = NULL;
    }
  }
}

/* A deep copy, so that a failed parse can leave the caller's config untouched. */
static void sb__config_copy(sb__config_t* dst, const sb__config_t* src) {
  size_t i;
  *dst = *src;
  for (i = 0; i < SB__NKEYS; i++) {
    if (sb__keys[i].type == SB__KEY_STRING) {
      char** f = sb__str_field(dst, &sb__keys[i]);
      *f = sb__dup_or_null(*f);
    }
  }
}

/* ---- positions ---- */

static int sb__is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* 1-based line of the byte at offset off. */
static int sb__line_at(const char* text, size_t off) {
  int line = 1;
  size_t i;
  for (i = 0; i < off; i++)
    line += text[i] == '\n';
  return line;
}

/*
 * cJSON keeps no positions, so the line of each top-level key comes from a scan of the
 * raw text, which cJSON has already accepted: strings (with their escapes) are
 * skipped, nesting is tracked, and each string that starts at depth 1 where a key is
 * expected records its line. cJSON keeps members in text order, duplicates included,
 * so the n-th member's key is on lines[n]. Returns the number of lines recorded.
 */
static size_t sb__key_lines(const char* text, size_t len, int* lines, size_t max) {
  size_t n = 0, i;
  int depth = 0, expect_key = 0, line = 1;
  for (i = 0; i < len; i++) {
    char c = text[i];
    if (c == '\n') {
      line++;
    } else if (c == '"') {
      if (depth == 1 && expect_key) {
        if (n < max)
          lines[n] = line;
        n++;
        expect_key = 0;
      }
      for (i++; i < len && text[i] != '"'; i++) {
        if (text[i] == '\\')
          i++;
        else if (text[i] == '\n') /* cJSON lets raw control characters through */
          line++;
      }
    } else if (c == '{' || c == '[') {
      depth++;
      expect_key = depth == 1 && c == '{';
    } else if (c == '}' || c == ']') {
      depth--;
    } else if (c == ',' && depth == 1) {
      expect_key = 1;
    }
  }
  return n < max ? n : max;
}

/* ---- errors ---- */

static int sb__fail(char* err, size_t size, const char* origin, int line,
                    const char* key, const char* what) {
  if (err == NULL || size == 0)
    return SB_ECONFIG;
  if (key)
    snprintf(err, size, "%s:%d: key \"%s\": %s", origin, line, key, what);
  else
    snprintf(err, size, "%s:%d: %s", origin, line, what);
  return SB_ECONFIG;
}

/*
 * cJSON's error offset is where it gave up, which after a missing token is often the
 * whitespace or newline that follows the culprit: back up to the last character
 * before it, so that the line named is the one to fix, and quote a short piece of
 * that line (one line, printable ASCII only) around it.
 */
static int sb__syntax_error(const char* text, size_t len, size_t off,
                            const char* origin, char* err, size_t size) {
  char what[96], quote[44];
  size_t p = off > len ? len : off, from, to, i, n = 0;
  if (p == len || sb__is_ws(text[p])) {
    size_t q = p;
    while (q > 0 && sb__is_ws(text[q - 1]))
      q--;
    p = q > 0 ? q - 1 : len;
  }
  if (p >= len || sb__is_ws(text[p]))
    return sb__fail(err, size, origin, sb__line_at(text, p), NULL,
                    "invalid JSON near the end of the text");
  from = p;
  while (from > 0 && p - from < 20 && text[from - 1] != '\n' && text[from - 1] != '\r')
    from--;
  to = p;
  while (to < len && to - p < 20 && text[to] != '\n' && text[to] != '\r')
    to++;
  while (from < to && sb__is_ws(text[from]))
    from++;
  for (i = from; i < to; i++) {
    unsigned char c = (unsigned char)text[i];
    quote[n++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
  }
  quote[n] = '\0';
  snprintf(what, sizeof(what), "invalid JSON near '%s'", quote);
  return sb__fail(err, size, origin, sb__line_at(text, p), NULL, what);
}

static const char* sb__json_kind(const cJSON* v) {
  if (cJSON_IsArray(v))
    return "an array";
  if (cJSON_IsString(v))
    return "a string";
  if (cJSON_IsNumber(v))
    return "a number";
  if (cJSON_IsBool(v))
    return "a boolean";
  if (cJSON_IsNull(v))
    return "null";
  return "an object";
}

/* ---- values ---- */

static int sb__address_ok(const char* s) {
  int kind, want;
  const char* path;
  if (sb__address_parse(s, &kind, &path) != 0 ||
      sb__address_parse(sb__default_control_pipe(), &want, &path) != 0)
    return 0;
  return kind == want;
}

static void sb__address_what(char* what, size_t size) {
  int kind = 0;
  const char* path;
  sb__address_parse(sb__default_control_pipe(), &kind, &path);
  snprintf(what, size, "must be an address %s",
           kind == SB__ADDR_UNIX ? "unix:/ABSOLUTE/PATH (104 bytes at most)"
                                 : "net.pipe:NAME");
}

static void sb__enum_what(const sb__key_t* k, char* what, size_t size) {
  size_t i, o = (size_t)snprintf(what, size, "must be one of ");
  for (i = 0; k->values[i] != NULL && o < size; i++)
    o += (size_t)snprintf(what + o, size - o, "%s\"%s\"", i ? ", " : "", k->values[i]);
}

/* Sets one key from its JSON value; on error writes what is wrong and returns -1. */
/* One name, as the group database or Windows would take it: what would end a list
 * (',') or a group file's field (':'), and control characters, are refused. */
static int sb__name_ok(const char* s) {
  size_t n = strlen(s);
  if (n > 256)
    return 0;
  for (; *s; s++) {
    if ((unsigned char)*s < 0x20 || *s == 0x7f || *s == ',' || *s == ':')
      return 0;
  }
  return 1;
}

static int sb__set_key(sb__config_t* cfg, const sb__key_t* k, const cJSON* v,
                       char* what, size_t size) {
  char** sp;
  size_t i;
  if (k->type == SB__KEY_UINT) {
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
    /* 1e3 is the integer 1000; 1.5 and 2.5e-1 are not integers. */
    if (!cJSON_IsNumber(v) || !isfinite(d) || d != floor(d) || d < (double)k->min ||
        d > (double)k->max) {
      snprintf(what, size, "must be an integer from %llu to %llu",
               (unsigned long long)k->min, (unsigned long long)k->max);
      return -1;
    }
    *sb__uint_field(cfg, k) = (uint64_t)d;
    return 0;
  }
  if (k->type == SB__KEY_ENUM) {
    for (i = 0; cJSON_IsString(v) && k->values[i] != NULL; i++) {
      if (strcmp(k->values[i], v->valuestring) == 0) {
        *sb__enum_field(cfg, k) = (int)i;
        return 0;
      }
    }
    sb__enum_what(k, what, size);
    return -1;
  }
  sp = sb__str_field(cfg, k);
  if ((k->flags & SB__KEY_NULLABLE) && cJSON_IsNull(v)) {
    free(*sp);
    *sp = NULL;
    return 0;
  }
  if (!cJSON_IsString(v)) {
    snprintf(what, size, "must be a string%s",
             k->flags & SB__KEY_NULLABLE ? " or null" : "");
    return -1;
  }
  if ((k->flags & SB__KEY_ADDRESS) && !sb__address_ok(v->valuestring)) {
    sb__address_what(what, size);
    return -1;
  }
  if ((k->flags & SB__KEY_NONEMPTY) && v->valuestring[0] == '\0') {
    snprintf(what, size, "must not be empty");
    return -1;
  }
  if ((k->flags & SB__KEY_NAME) && !sb__name_ok(v->valuestring)) {
    snprintf(what, size,
             "must be one group name (no control character, ',' or ':'; at most 256 "
             "bytes)");
    return -1;
  }
  /* A relative path would depend on the directory the service happens to start in
   * (a Windows service starts in System32): refused, with what to write instead. */
  if ((k->flags & SB__KEY_PATH) && v->valuestring[0] != '\0' &&
      !sb__path_is_absolute(v->valuestring)) {
    snprintf(what, size, "must be an absolute path (%s)",
             sb__path_is_absolute("/") ? "starting with /"
                                       : "C:\\... or \\\\server\\share\\...");
    return -1;
  }
  free(*sp);
  *sp = sb__xstrdup(v->valuestring);
  return 0;
}

static const sb__key_t* sb__key_find(const char* name) {
  size_t i;
  for (i = 0; i < SB__NKEYS; i++) {
    if (strcmp(sb__keys[i].name, name) == 0)
      return &sb__keys[i];
  }
  return NULL;
}

/*
 * Each member is checked in text order, so the first problem in the file is the one
 * reported; checks that involve two keys come after, at the line of the later key.
 * The keys are applied to a copy, so a failed parse leaves cfg as it was.
 */
int sb__config_parse(sb__config_t* cfg, const char* text, size_t len,
                     const char* origin, char* err, size_t err_size) {
  const char* end = NULL;
  cJSON *root, *m, *prev;
  sb__config_t next;
  size_t nmembers, nlines, idx, i;
  int* lines = NULL;
  int r = 0, derived, archive_given = 0, line_initial = 0, line_max = 0;
  char what[160];

  root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
  if (root == NULL)
    return sb__syntax_error(text, len, end ? (size_t)(end - text) : 0, origin, err,
                            err_size);
  /* cJSON stops after the value; only whitespace may follow it. */
  for (i = (size_t)(end - text); i < len && sb__is_ws(text[i]); i++)
    ;
  if (i < len) {
    cJSON_Delete(root);
    return sb__syntax_error(text, len, i, origin, err, err_size);
  }
  if (!cJSON_IsObject(root)) {
    for (i = 0; i < len && sb__is_ws(text[i]); i++)
      ;
    snprintf(what, sizeof(what), "the config must be a JSON object, not %s",
             sb__json_kind(root));
    cJSON_Delete(root);
    return sb__fail(err, err_size, origin, sb__line_at(text, i), NULL, what);
  }

  nmembers = (size_t)cJSON_GetArraySize(root);
  lines = sb__xcalloc(nmembers + 1, sizeof(*lines));
  nlines = sb__key_lines(text, len, lines, nmembers);
  derived = sb__archive_dir_is_derived(cfg);
  sb__config_copy(&next, cfg);

  for (m = root->child, idx = 0; m != NULL; m = m->next, idx++) {
    const sb__key_t* k;
    int line = idx < nlines ? lines[idx] : 1;
    for (prev = root->child; prev != m && strcmp(prev->string, m->string) != 0;)
      prev = prev->next;
    if (prev != m) {
      r = sb__fail(err, err_size, origin, line, m->string, "duplicate key");
      break;
    }
    if ((k = sb__key_find(m->string)) == NULL) {
      r = sb__fail(err, err_size, origin, line, m->string, "unknown key");
      break;
    }
    if (sb__set_key(&next, k, m, what, sizeof(what)) != 0) {
      r = sb__fail(err, err_size, origin, line, m->string, what);
      break;
    }
    if (k->offset == offsetof(sb__config_t, archive_dir))
      archive_given = 1;
    else if (k->offset == offsetof(sb__config_t, backoff_initial_ms))
      line_initial = line;
    else if (k->offset == offsetof(sb__config_t, backoff_max_ms))
      line_max = line;
  }

  if (r == 0 && next.backoff_max_ms < next.backoff_initial_ms) {
    snprintf(what, sizeof(what), "must be at least backoff_initial_ms (%llu)",
             (unsigned long long)next.backoff_initial_ms);
    r = sb__fail(err, err_size, origin,
                 line_max > line_initial ? line_max : line_initial, "backoff_max_ms",
                 what);
  }
  if (r == 0 && next.data_dir != NULL &&
      ((!archive_given && derived) || next.archive_dir == NULL ||
       next.archive_dir[0] == '\0')) {
    free(next.archive_dir);
    next.archive_dir = sb__derived_archive_dir(next.data_dir);
  }

  if (r == 0) {
    sb__config_free(cfg);
    *cfg = next;
  } else {
    sb__config_free(&next);
  }
  free(lines);
  cJSON_Delete(root);
  return r;
}

int sb__config_load(sb__config_t* cfg, const char* path, char* err, size_t err_size) {
  FILE* f = sb__file_read(path);
  char* text = NULL;
  size_t len = 0, cap = 0, n;
  int r, e;
  if (f == NULL) {
    e = errno;
    if (e == ENOENT) {
      snprintf(err, err_size, "%s: no such file", path);
      return SB_ENOENT;
    }
    snprintf(err, err_size, "%s: %s", path, strerror(e));
    return SB_EIO;
  }
  errno = 0;
  do {
    if (cap - len < 4096) {
      cap = cap ? cap * 2 : 8192;
      text = sb__xrealloc(text, cap);
    }
    n = fread(text + len, 1, cap - len, f);
    len += n;
  } while (n > 0 && len <= SB__CONFIG_MAX_SIZE);
  e = errno ? errno : EIO;
  if (ferror(f)) {
    fclose(f);
    free(text);
    snprintf(err, err_size, "%s: %s", path, strerror(e));
    return SB_EIO;
  }
  fclose(f);
  if (len > SB__CONFIG_MAX_SIZE) {
    free(text);
    snprintf(err, err_size, "%s: larger than %u bytes", path, SB__CONFIG_MAX_SIZE);
    return SB_ECONFIG;
  }
  r = sb__config_parse(cfg, text, len, path, err, err_size);
  free(text);
  return r;
}

/* ---- documentation ---- */

static const char* sb__type_doc(const sb__key_t* k) {
  if (k->type == SB__KEY_UINT)
    return "integer";
  if (k->flags & SB__KEY_NULLABLE)
    return "string or null";
  return "string";
}

/* The key table as Markdown. It must not depend on the platform: config/KEYS.md holds
 * this very output, and the unit test compares them on every platform. */
void sb__config_write_table(FILE* out) {
  size_t i, j;
  fputs("| key | type | default | allowed | meaning |\n", out);
  fputs("| --- | --- | --- | --- | --- |\n", out);
  for (i = 0; i < SB__NKEYS; i++) {
    const sb__key_t* k = &sb__keys[i];
    fprintf(out, "| `%s` | %s | ", k->name, sb__type_doc(k));
    if (k->type == SB__KEY_UINT) {
      fprintf(out, "%llu | %llu to %llu", (unsigned long long)k->def,
              (unsigned long long)k->min, (unsigned long long)k->max);
    } else if (k->type == SB__KEY_ENUM) {
      fprintf(out, "`\"%s\"` | ", k->values[k->def]);
      for (j = 0; k->values[j] != NULL; j++)
        fprintf(out, "%s`\"%s\"`", j ? ", " : "", k->values[j]);
    } else {
      if (k->def_doc != NULL)
        fputs(k->def_doc, out);
      else if (k->def_string == NULL)
        fputs("`null`", out);
      else
        fprintf(out, "`\"%s\"`", k->def_string);
      fprintf(out, " | %s", k->allowed_doc);
    }
    fprintf(out, " | %s |\n", k->meaning);
  }
}

/* JSON string escaping for paths and addresses: quotes, backslashes and control
 * characters; UTF-8 is written as it is. */
static void sb__write_json_string(FILE* out, const char* s) {
  fputc('"', out);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      fprintf(out, "\\%c", c);
    else if (c < 0x20)
      fprintf(out, "\\u%04x", c);
    else
      fputc(c, out);
  }
  fputc('"', out);
}

/* Every key with its default, in table order, indented by two spaces (cJSON_Print
 * would indent with tabs). archive_dir is written as "", which stands for
 * DATA_DIR/archive, so the file stays right when data_dir is edited. */
void sb__config_write_defaults(FILE* out) {
  size_t i;
  fputs("{\n", out);
  for (i = 0; i < SB__NKEYS; i++) {
    const sb__key_t* k = &sb__keys[i];
    const char* s;
    fprintf(out, "  \"%s\": ", k->name);
    if (k->type == SB__KEY_UINT) {
      fprintf(out, "%llu", (unsigned long long)k->def);
    } else if (k->type == SB__KEY_ENUM) {
      sb__write_json_string(out, k->values[k->def]);
    } else if ((s = sb__default_string(k)) == NULL) {
      fputs("null", out);
    } else {
      sb__write_json_string(out, s);
    }
    fputs(i + 1 < SB__NKEYS ? ",\n" : "\n", out);
  }
  fputs("}\n", out);
}

/* ---- directories ---- */

/* 1 when path is a directory, 0 when it is something else, or a libuv error. */
static int sb__is_dir(const char* path) {
  uv_fs_t req;
  int r = uv_fs_stat(NULL, &req, path, NULL);
  int dir = r == 0 && (req.statbuf.st_mode & S_IFMT) == S_IFDIR;
  uv_fs_req_cleanup(&req);
  return r < 0 ? r : dir;
}

/* Creates a file in dir and removes it: 0, or the libuv error of the creation. What
 * can be written is what counts (a read-only mount, an ACL, root's rights), not the
 * mode bits. */
static int sb__probe_write(const char* dir) {
  char name[64];
  char* path;
  uv_fs_t req;
  int fd;
  snprintf(name, sizeof(name), ".streambroker-check-%d", (int)uv_os_getpid());
  path = sb__path_join(dir, name);
  /* The name is predictable: whatever is in its place (a link) is removed, never
   * followed, and the file is made anew. */
  uv_fs_unlink(NULL, &req, path, NULL);
  uv_fs_req_cleanup(&req);
  fd = uv_fs_open(NULL, &req, path,
                  UV_FS_O_WRONLY | UV_FS_O_CREAT | UV_FS_O_EXCL | UV_FS_O_NOFOLLOW,
                  0600, NULL);
  uv_fs_req_cleanup(&req);
  if (fd >= 0) {
    uv_fs_close(NULL, &req, fd, NULL);
    uv_fs_req_cleanup(&req);
    uv_fs_unlink(NULL, &req, path, NULL);
    uv_fs_req_cleanup(&req);
  }
  free(path);
  return fd < 0 ? fd : 0;
}

/*
 * One directory, shown as key "shown" (the key's value: the directory itself, or the
 * log file in it). The deepest part of its path that exists must be a directory this
 * process can write in: the directory itself, or the one it would be made in.
 */
static int sb__check_dir(const char* key, const char* shown, const char* dir,
                         unsigned how, int create, char* err, size_t size) {
  char* p = sb__xstrdup(dir);
  int r, made = create ? sb__mkdir_p(dir) : 0;
  for (;;) {
    char* parent;
    r = sb__is_dir(p);
    if (r == 1)
      break;
    if (r == 0) {
      snprintf(err, size, "%s \"%s\": %s is not a directory", key, shown, p);
      free(p);
      return SB_EEXIST;
    }
    if (r != UV_ENOENT && r != UV_ENOTDIR) {
      snprintf(err, size, "%s \"%s\": %s: %s", key, shown, p, uv_strerror(r));
      free(p);
      return sb__uv_err(r);
    }
    if ((parent = sb__path_parent(p)) == NULL) {
      snprintf(err, size, "%s \"%s\": %s does not exist", key, shown, p);
      free(p);
      return SB_ENOENT;
    }
    free(p);
    p = parent;
  }
  /* Owned by root or the service, writable by no one else (above it too); one the
   * service owns gets its mode (a start, not --check-config, changes it). */
  if ((r = sb__dir_secure(key, shown, dir, how | (create ? SB__DIR_FIX : 0u), err,
                          size)) != 0) {
    free(p);
    return r;
  }
  if ((r = sb__probe_write(p)) < 0) {
    if (strcmp(p, dir) == 0)
      snprintf(err, size, "%s \"%s\": cannot write in %s: %s", key, shown, p,
               uv_strerror(r));
    else
      snprintf(err, size, "%s \"%s\": cannot create %s: cannot write in %s: %s", key,
               shown, dir, p, uv_strerror(r));
    free(p);
    return sb__uv_err(r);
  }
  if (create && made != 0) {
    snprintf(err, size, "%s \"%s\": cannot create %s: %s", key, shown, dir,
             sb_strerror(made));
    free(p);
    return made;
  }
  free(p);
  return 0;
}

int sb__config_check_dirs(const sb__config_t* cfg, unsigned which, int create,
                          char* err, size_t err_size) {
  int r;
  if ((which & SB__DIRS_LOG) && cfg->log_file != NULL && cfg->log_file[0] != '\0') {
    char* dir = sb__path_parent(cfg->log_file);
    if (sb__is_dir(cfg->log_file) == 1) {
      snprintf(err, err_size, "log_file \"%s\": is a directory", cfg->log_file);
      free(dir);
      return SB_EEXIST;
    }
    r = dir ? sb__check_dir("log_file", cfg->log_file, dir, SB__DIR_STICKY_OK, create,
                            err, err_size)
            : 0;
    free(dir);
    if (r != 0)
      return r;
  }
  if ((which & SB__DIRS_DATA) &&
      (r = sb__check_dir("data_dir", cfg->data_dir, cfg->data_dir, SB__DIR_PRIVATE,
                         create, err, err_size)) != 0)
    return r;
  if ((which & SB__DIRS_ARCHIVE) && cfg->upstream == NULL &&
      (r = sb__check_dir("archive_dir", cfg->archive_dir, cfg->archive_dir,
                         SB__DIR_PRIVATE, create, err, err_size)) != 0)
    return r;
  if (which & SB__DIRS_SOCKETS) {
    /* A socket's directory: whoever may write in it may put a server of their own in
     * the socket's place before the service binds (clients would talk to it). */
    const char* keys[2] = {"control_pipe", "admin_pipe"};
    const char* values[2] = {cfg->control_pipe, cfg->admin_pipe};
    int i;
    for (i = 0; i < 2; i++) {
      int kind;
      const char* path;
      char* dir;
      if (values[i] == NULL || sb__address_parse(values[i], &kind, &path) != 0 ||
          kind != SB__ADDR_UNIX || (dir = sb__path_parent(path)) == NULL)
        continue;
      r = sb__dir_secure(keys[i], values[i], dir, SB__DIR_STICKY_OK, err, err_size);
      free(dir);
      if (r != 0)
        return r;
    }
  }
  return 0;
}
