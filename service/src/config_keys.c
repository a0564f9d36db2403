/*
 * config_keys.c - the table of config keys (redis config.c style): each key's name,
 * type, bounds, default and meaning. It drives config.c's defaults, parsing and
 * validation, and here the printed key table (config/KEYS.md, --print-config-keys)
 * and the printed default config.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_keys.h"

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
const sb__key_t sb__keys[] = {
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

const size_t sb__nkeys = sizeof(sb__keys) / sizeof(sb__keys[0]);

const char* sb__config_key_default(const sb__key_t* k) {
  return k->def_platform ? k->def_platform() : k->def_string;
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
    } else if ((s = sb__config_key_default(k)) == NULL) {
      fputs("null", out);
    } else {
      sb__write_json_string(out, s);
    }
    fputs(i + 1 < SB__NKEYS ? ",\n" : "\n", out);
  }
  fputs("}\n", out);
}
