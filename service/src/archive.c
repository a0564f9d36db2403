/*
 * archive.c - the archive sink: with no upstream configured, each stream is written to
 * a file of its own under the archive directory, its properties beside it as JSON.
 *
 * Files of a stream whose name maps to PATH (sb__archive_path) in ARCHIVE_DIR:
 *   PATH.log        the data, exactly as read from the client (datagram streams keep
 *                   their varint framing)
 *   PATH.json       the sidecar: written when the stream opens, rewritten (through
 *                   PATH.json.tmp and a rename, so it is never half-written) when it
 *                   closes
 * A name archived before is never overwritten: the stream takes the first free
 * sequence number N >= 1 instead, as PATH+N.log and PATH+N.json, and the sidecar says
 * "sequence": N (0 for the first). A sequence number is claimed by creating its .log
 * exclusively (O_CREAT | O_EXCL), so two streams of one name open at the same time, or
 * names that differ only in case on a case-insensitive file system, still get files of
 * their own. '+' never occurs in a mapped name, so PATH+N cannot be another name's
 * PATH.
 *
 * The sidecar:
 *   {"name": "a/b", "type": "text" | "binary" | "datagram", "contentType": "...",
 *    "timestamp": the stream's own RFC 3339 time, or null when the client sent none,
 *    "tags": {"k": "v", ...}, "sequence": N,
 *    "opened": RFC 3339 (when the broker accepted the connection),
 *    "closed": RFC 3339 or null while open,
 *    "bytes": bytes read from the client (datagram framing included; 0 until closed),
 *    "datagrams": count (datagram streams only; 0 until closed),
 *    "client": {"pid": .., "uid": .., "gid": ..} (each left out when unknown),
 *    "complete": true once closed with every byte in the .log and fsynced,
 *    "error": "text" (only when the archive failed)}
 *
 * I/O: one libuv file request in flight at a time (on the threadpool), so the steps
 * of a stream (claim the .log, write the sidecar, append data, fsync, close, rewrite
 * the sidecar) happen strictly in order, and the loop thread never blocks on a file
 * except for creating directories at stream start (see sb__archive_sink_create).
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "internal.h"

/* How many sequence numbers a stream tries before it gives up. */
#define AR_MAX_SEQ 100000u
/* One write request takes at most this many chunks and bytes. */
#define AR_MAX_BUFS 64
#define AR_MAX_BATCH (1024u * 1024u)

/* The file request in flight (ar->op). */
enum {
  AR_NONE = 0,
  AR_LOG_OPEN,
  AR_LOG_WRITE,
  AR_LOG_SYNC,
  AR_LOG_CLOSE,
  AR_JSON_OPEN,
  AR_JSON_WRITE,
  AR_JSON_SYNC,
  AR_JSON_CLOSE,
  AR_JSON_RENAME,
  AR_JSON_UNLINK
};

typedef struct {
  sb__sink_t sink;
  uv_fs_t req;    /* the one file request; valid while op != AR_NONE */
  uv_idle_t idle; /* defers a failed submission; closing it ends the sink */
  int op;
  int deferred; /* result of a request that could not be submitted */
  char* stem;   /* ARCHIVE_DIR/PATH, platform separators */
  char* log_path;
  char* json_path;
  char* tmp_path;
  unsigned seq;
  uv_file log_fd; /* -1 when not open */
  uv_file tmp_fd;
  int64_t offset; /* bytes in the .log */
  sb__chunk_t *head, *tail;
  size_t head_off; /* bytes of head already written */
  char* json;      /* sidecar text being written */
  size_t json_len, json_off;
  int json_pending; /* the sidecar is to be written next */
  int json_final;   /* ... in its closing version (fsync before the rename) */
  int json_failed;  /* the current sidecar write failed: clean up the .tmp */
  int claimed;      /* log_path is ours */
  int finishing;
  int synced;
  int final_json_done;
  int failed; /* data is dropped from now on */
  int paused; /* queued went above the watermark; the stream waits for drained */
  int ending;
  int err; /* first error, for done */
  sb__time_t closed;
  uv_work_t retry; /* a sidecar rename tried again (see AR_JSON_RENAME) */
  int retry_result;
  unsigned renames_tried;
} sb__archive_t;

/* ---- names to paths ---- */

static const char* const ar_devices[] = {
    "CON",  "PRN",  "AUX",  "NUL",  "COM0", "COM1", "COM2",   "COM3",   "COM4",
    "COM5", "COM6", "COM7", "COM8", "COM9", "LPT0", "LPT1",   "LPT2",   "LPT3",
    "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9", "CONIN$", "CONOUT$"};

/* The extensions archive files end with: a directory must not end with one, or it
 * could be the file of a shorter name (stream "a" has a.log; stream "a.log/b" needs
 * the directory a.log). */
static const char* const ar_file_exts[] = {".log", ".json", ".tmp"};

static int ar_lower(int c) {
  return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

static int ar_eq_nocase(const char* a, size_t n, const char* b) {
  size_t i;
  if (strlen(b) != n)
    return 0;
  for (i = 0; i < n; i++)
    if (ar_lower((unsigned char)a[i]) != ar_lower((unsigned char)b[i]))
      return 0;
  return 1;
}

static int ar_safe_char(int c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         c == '_' || c == '.' || c == '-';
}

/* Windows opens a device for these base names whatever the extension ("nul.txt"). */
static int ar_is_device(const char* seg, size_t n) {
  size_t base = 0, i;
  while (base < n && seg[base] != '.')
    base++;
  for (i = 0; i < sizeof(ar_devices) / sizeof(ar_devices[0]); i++)
    if (ar_eq_nocase(seg, base, ar_devices[i]))
      return 1;
  return 0;
}

/* The position of the '.' of a file extension the segment ends with, or n. */
static size_t ar_file_ext_dot(const char* seg, size_t n) {
  size_t i;
  for (i = 0; i < sizeof(ar_file_exts) / sizeof(ar_file_exts[0]); i++) {
    size_t el = strlen(ar_file_exts[i]);
    if (n >= el && ar_eq_nocase(seg + n - el, el, ar_file_exts[i]))
      return n - el;
  }
  return n;
}

/*
 * Maps one segment into out (room for 3 * n + 1 bytes); returns the bytes written.
 * Every change is either a faithful "%XX" of the byte it replaces or the device
 * prefix '_', which is why the mapping can be undone and so is injective.
 */
static size_t ar_map_segment(const char* seg, size_t n, int last, char* out) {
  static const char hex[] = "0123456789ABCDEF";
  size_t i, o = 0, ext_dot = last ? n : ar_file_ext_dot(seg, n);
  int all_dots = 1;
  if (n == 0) {
    out[o++] = '%'; /* a lone '%' is no escape, so no other segment maps to it */
    return o;
  }
  for (i = 0; i < n; i++)
    if (seg[i] != '.')
      all_dots = 0;
  if (ar_is_device(seg, n))
    out[o++] = '_';
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)seg[i];
    int esc = !ar_safe_char(c) || (i == 0 && c == '_') ||
              (c == '.' && (all_dots || i == n - 1 || i == ext_dot));
    if (esc) {
      out[o++] = '%';
      out[o++] = hex[c >> 4];
      out[o++] = hex[c & 15];
    } else {
      out[o++] = (char)c;
    }
  }
  return o;
}

/*
 * The mapping, segment by segment (segments split at '/'; the result joins them with
 * '/' again):
 * - bytes outside [A-Za-z0-9_.-] become "%XX" (uppercase hex): '%', '\\', ':', space,
 *   control and non-ASCII bytes, and every character Windows forbids;
 * - a '_' at the start of a segment becomes "%5F" (a leading '_' means the next rule);
 * - a segment whose base name (up to its first '.') is a Windows device name (CON,
 *   PRN, AUX, NUL, COM0-9, LPT0-9, CONIN$, CONOUT$, any case) gets a '_' prefix;
 * - the dots of a segment made only of dots ("." and "..") become "%2E", and so does a
 *   segment's last '.' (Windows strips trailing dots);
 * - a segment other than the last that ends in ".log", ".json" or ".tmp" (any case)
 *   gets that '.' as "%2E", so no directory can have the name of an archive file;
 * - an empty segment (leading, trailing or doubled '/') becomes "%".
 * To undo it: a segment "%" is empty; otherwise drop a leading '_', then decode each
 * "%XX". So the mapping is injective, and no result is absolute, has a "." or ".."
 * segment, a '\\' or a ':'.
 */
char* sb__archive_path(const char* name) {
  size_t len = strlen(name), o = 0;
  const char* seg = name;
  char* out;
  if (len > (SIZE_MAX - 8) / 5)
    abort();
  /* Each byte takes at most 3, each segment 1 more (prefix, or "%" when empty) and
   * each separator 1: at most len + 1 segments. */
  out = sb__xmalloc(5 * len + 8);
  for (;;) {
    const char* end = strchr(seg, '/');
    int last = end == NULL;
    if (last)
      end = name + len;
    o += ar_map_segment(seg, (size_t)(end - seg), last, out + o);
    if (last)
      break;
    out[o++] = '/';
    seg = end + 1;
  }
  out[o] = '\0';
  return out;
}

/* ---- the sink ---- */

static sb__archive_t* ar_of(sb__sink_t* sink) {
  return SB_CONTAINER_OF(sink, sb__archive_t, sink);
}

static unsigned long long ar_id(sb__archive_t* ar) {
  return (unsigned long long)ar->sink.stream->id;
}

static void ar_step(sb__archive_t* ar);
static void ar_complete(sb__archive_t* ar, int result);

static void on_fs(uv_fs_t* req) {
  sb__archive_t* ar = SB_CONTAINER_OF(req, sb__archive_t, req);
  int result = (int)req->result;
  uv_fs_req_cleanup(req);
  ar_complete(ar, result);
}

static void on_idle(uv_idle_t* idle) {
  sb__archive_t* ar = SB_CONTAINER_OF(idle, sb__archive_t, idle);
  uv_idle_stop(idle);
  ar_complete(ar, ar->deferred);
}

/* A request that could not even be submitted (UV_ENOMEM, say) completes on the next
 * loop turn with that error, so its handling is the same as any failure and never
 * runs inside the caller's write or finish. */
static void ar_submitted(sb__archive_t* ar, int op, int r) {
  ar->op = op;
  if (r < 0) {
    uv_fs_req_cleanup(&ar->req);
    ar->deferred = r;
    uv_idle_start(&ar->idle, on_idle);
  }
}

static void ar_notify(sb__archive_t* ar) {
  uint64_t wm = ar->sink.stream->broker->cfg.upstream_high_watermark;
  if (ar->paused && (ar->failed || ar->sink.queued <= wm / 2)) {
    ar->paused = 0;
    sb__stream_sink_drained(ar->sink.stream);
  }
}

static void ar_drop_pending(sb__archive_t* ar) {
  while (ar->head) {
    sb__chunk_t* c = ar->head;
    ar->head = c->next;
    ar->sink.queued -= c->len - ar->head_off;
    ar->head_off = 0;
    sb__chunk_free(c);
  }
  ar->tail = NULL;
}

/* Any file error: logged and counted where it happens; the first one is what done
 * reports. Data from then on is dropped (and the client not kept waiting), but the
 * files are still closed and the sidecar rewritten to say the archive is incomplete. */
static void ar_fail(sb__archive_t* ar, const char* what, const char* path, int r) {
  sb__stream_t* s = ar->sink.stream;
  s->broker->counters.archive_errors++;
  SB_LOG_E("archive", "stream %llu \"%s\": %s %s: %s", ar_id(ar), s->props.name, what,
           path, uv_strerror(r));
  if (ar->err == 0)
    ar->err = sb__uv_err(r);
  if (!ar->failed) {
    ar->failed = 1;
    if (ar->claimed && (!ar->finishing || ar->head))
      SB_LOG_E("archive", "stream %llu: data after byte %llu is dropped", ar_id(ar),
               (unsigned long long)ar->offset);
    ar_drop_pending(ar);
    ar_notify(ar);
  }
}

static char* ar_path_with(const char* stem, unsigned seq, const char* ext) {
  size_t n = strlen(stem) + strlen(ext) + 16;
  char* p = sb__xmalloc(n);
  if (seq == 0)
    snprintf(p, n, "%s%s", stem, ext);
  else
    snprintf(p, n, "%s+%u%s", stem, seq, ext);
  return p;
}

static void ar_set_paths(sb__archive_t* ar) {
  free(ar->log_path);
  free(ar->json_path);
  free(ar->tmp_path);
  ar->log_path = ar_path_with(ar->stem, ar->seq, ".log");
  ar->json_path = ar_path_with(ar->stem, ar->seq, ".json");
  ar->tmp_path = ar_path_with(ar->stem, ar->seq, ".json.tmp");
}

/* cJSON returns NULL when an allocation fails: the service aborts, as on any small
 * allocation (sb__xmalloc). */
static cJSON* ar_need(cJSON* item) {
  if (item == NULL) {
    fprintf(stderr, "streambrokerd: out of memory (cJSON)\n");
    abort();
  }
  return item;
}

static void ar_add_time(cJSON* obj, const char* key, int has, sb__time_t t) {
  char buf[SB__TIME_BUF];
  if (has && sb__time_format(t, buf) >= 0)
    ar_need(cJSON_AddStringToObject(obj, key, buf));
  else
    ar_need(cJSON_AddNullToObject(obj, key));
}

/* The sidecar's text (cJSON_free), in its opening (final 0) or closing version. */
static char* ar_sidecar(sb__archive_t* ar, int final) {
  static const char* const types[] = {"text", "binary", "datagram"};
  sb__stream_t* s = ar->sink.stream;
  const sb__props_t* p = &s->props;
  cJSON* root = ar_need(cJSON_CreateObject());
  cJSON *tags, *client;
  char* text;
  size_t i;
  ar_need(cJSON_AddStringToObject(root, "name", p->name));
  ar_need(cJSON_AddStringToObject(
      root, "type",
      p->type >= SB_TEXT && p->type <= SB_DATAGRAM ? types[p->type] : "text"));
  ar_need(cJSON_AddStringToObject(root, "contentType",
                                  p->content_type ? p->content_type : ""));
  ar_add_time(root, "timestamp", p->has_timestamp, p->timestamp);
  tags = ar_need(cJSON_AddObjectToObject(root, "tags"));
  for (i = 0; i < p->tag_count; i++)
    ar_need(cJSON_AddStringToObject(tags, p->tags[i].key, p->tags[i].value));
  ar_need(cJSON_AddNumberToObject(root, "sequence", ar->seq));
  ar_add_time(root, "opened", 1, s->opened);
  ar_add_time(root, "closed", final, ar->closed);
  ar_need(cJSON_AddNumberToObject(root, "bytes", final ? (double)s->bytes : 0));
  if (p->type == SB_DATAGRAM)
    ar_need(
        cJSON_AddNumberToObject(root, "datagrams", final ? (double)s->datagrams : 0));
  client = ar_need(cJSON_AddObjectToObject(root, "client"));
  if (s->peer_pid >= 0)
    ar_need(cJSON_AddNumberToObject(client, "pid", (double)s->peer_pid));
  if (s->peer_uid >= 0)
    ar_need(cJSON_AddNumberToObject(client, "uid", (double)s->peer_uid));
  if (s->peer_gid >= 0)
    ar_need(cJSON_AddNumberToObject(client, "gid", (double)s->peer_gid));
  ar_need(cJSON_AddBoolToObject(root, "complete", final && ar->err == 0));
  if (ar->err != 0)
    ar_need(cJSON_AddStringToObject(root, "error", sb_strerror(ar->err)));
  text = cJSON_Print(root);
  cJSON_Delete(root);
  if (text == NULL)
    ar_need(NULL);
  return text;
}

/* Starts writing the sidecar: PATH.json.tmp, then renamed over PATH.json. */
static void ar_json_start(sb__archive_t* ar, int final) {
  char* text = ar_sidecar(ar, final);
  size_t n = strlen(text);
  free(ar->json);
  ar->json = sb__xmalloc(n + 1);
  memcpy(ar->json, text, n);
  ar->json[n++] = '\n';
  cJSON_free(text);
  ar->json_len = n;
  ar->json_off = 0;
  ar->json_final = final;
  ar->json_failed = 0;
  ar->json_pending = 1;
}

static void ar_submit_json_write(sb__archive_t* ar) {
  uv_buf_t buf =
      uv_buf_init(ar->json + ar->json_off, (unsigned)(ar->json_len - ar->json_off));
  ar_submitted(ar, AR_JSON_WRITE,
               uv_fs_write(ar->sink.stream->broker->loop, &ar->req, ar->tmp_fd, &buf, 1,
                           (int64_t)ar->json_off, on_fs));
}

/* Up to AR_MAX_BUFS chunks and AR_MAX_BATCH bytes per request, at the file's end. */
static void ar_submit_data_write(sb__archive_t* ar) {
  uv_buf_t bufs[AR_MAX_BUFS];
  unsigned n = 0;
  size_t total = 0, off = ar->head_off;
  sb__chunk_t* c;
  for (c = ar->head; c != NULL && n < AR_MAX_BUFS && total < AR_MAX_BATCH;
       c = c->next) {
    size_t len = c->len - off;
    if (len > AR_MAX_BATCH - total)
      len = AR_MAX_BATCH - total;
    bufs[n++] = uv_buf_init(c->data + off, (unsigned)len);
    total += len;
    off = 0;
  }
  ar_submitted(ar, AR_LOG_WRITE,
               uv_fs_write(ar->sink.stream->broker->loop, &ar->req, ar->log_fd, bufs, n,
                           ar->offset, on_fs));
}

/* Written bytes leave the queue; fully written chunks are freed. */
static void ar_consume(sb__archive_t* ar, size_t n) {
  sb__stream_t* s = ar->sink.stream;
  ar->offset += (int64_t)n;
  ar->sink.queued -= n;
  s->broker->counters.bytes_out += n;
  while (n > 0 && ar->head) {
    sb__chunk_t* c = ar->head;
    size_t avail = c->len - ar->head_off;
    if (n < avail) {
      ar->head_off += n;
      break;
    }
    n -= avail;
    ar->head = c->next;
    ar->head_off = 0;
    sb__chunk_free(c);
  }
  if (ar->head == NULL)
    ar->tail = NULL;
}

static void on_idle_closed(uv_handle_t* h) {
  sb__archive_t* ar = SB_CONTAINER_OF(h, sb__archive_t, idle);
  sb__stream_sink_done(ar->sink.stream, ar->err);
}

/*
 * Decides the next request from the state; called whenever nothing is in flight. The
 * order is: claim the .log, write the opening sidecar, write data as it comes, and
 * after finish: fsync and close the .log, write the closing sidecar, then end. Done is
 * reported from the idle handle's close callback: after finish, never inside it, and
 * with no request left in flight.
 */
static void ar_step(sb__archive_t* ar) {
  uv_loop_t* loop = ar->sink.stream->broker->loop;
  if (ar->op != AR_NONE || ar->ending)
    return;
  if (!ar->claimed && !ar->failed) {
    ar_submitted(ar, AR_LOG_OPEN,
                 uv_fs_open(loop, &ar->req, ar->log_path,
                            UV_FS_O_WRONLY | UV_FS_O_CREAT | UV_FS_O_EXCL, 0640,
                            on_fs));
    return;
  }
  if (ar->json_pending) {
    ar_submitted(ar, AR_JSON_OPEN,
                 uv_fs_open(loop, &ar->req, ar->tmp_path,
                            UV_FS_O_WRONLY | UV_FS_O_CREAT | UV_FS_O_TRUNC, 0640,
                            on_fs));
    return;
  }
  if (ar->head && !ar->failed) {
    ar_submit_data_write(ar);
    return;
  }
  if (!ar->finishing)
    return;
  if (ar->log_fd >= 0) {
    if (!ar->failed && !ar->synced)
      ar_submitted(ar, AR_LOG_SYNC, uv_fs_fsync(loop, &ar->req, ar->log_fd, on_fs));
    else
      ar_submitted(ar, AR_LOG_CLOSE, uv_fs_close(loop, &ar->req, ar->log_fd, on_fs));
    return;
  }
  if (ar->claimed && !ar->final_json_done) {
    ar->final_json_done = 1;
    ar_json_start(ar, 1);
    ar_step(ar);
    return;
  }
  ar->ending = 1;
  uv_close((uv_handle_t*)&ar->idle, on_idle_closed);
}

/* The sidecar step that follows a failure: close the .tmp if open, else remove it. */
static void ar_json_cleanup(sb__archive_t* ar) {
  uv_loop_t* loop = ar->sink.stream->broker->loop;
  ar->json_failed = 1;
  if (ar->tmp_fd >= 0)
    ar_submitted(ar, AR_JSON_CLOSE, uv_fs_close(loop, &ar->req, ar->tmp_fd, on_fs));
  else
    ar_submitted(ar, AR_JSON_UNLINK, uv_fs_unlink(loop, &ar->req, ar->tmp_path, on_fs));
}

/* A request has completed (or failed to start): the state moves on by one step. */
/*
 * Windows refuses to rename over a file that someone has open (a reader of the
 * sidecar): the rename is tried again, 20 ms apart, for up to a second.
 */
#define AR_RENAME_TRIES 50

static void rename_retry_work(uv_work_t* w) {
  sb__archive_t* ar = SB_CONTAINER_OF(w, sb__archive_t, retry);
  uv_fs_t req;
  uv_sleep(20);
  ar->retry_result = uv_fs_rename(NULL, &req, ar->tmp_path, ar->json_path, NULL);
  uv_fs_req_cleanup(&req);
}

static void rename_retry_done(uv_work_t* w, int status) {
  sb__archive_t* ar = SB_CONTAINER_OF(w, sb__archive_t, retry);
  ar_complete(ar, status < 0 ? status : ar->retry_result);
}

static void ar_complete(sb__archive_t* ar, int r) {
  uv_loop_t* loop = ar->sink.stream->broker->loop;
  int op = ar->op;
  ar->op = AR_NONE;
  switch (op) {
  case AR_LOG_OPEN:
    if (r >= 0) {
      ar->log_fd = (uv_file)r;
      ar->claimed = 1;
      SB_LOG_I("archive", "stream %llu \"%s\": archived to %s", ar_id(ar),
               ar->sink.stream->props.name, ar->log_path);
      ar_json_start(ar, 0);
    } else if (r == UV_EEXIST && ar->seq < AR_MAX_SEQ) {
      ar->seq++;
      ar_set_paths(ar);
    } else {
      ar_fail(ar, "open", ar->log_path, r);
    }
    break;
  case AR_LOG_WRITE:
    if (r < 0)
      ar_fail(ar, "write", ar->log_path, r);
    else if (r == 0)
      ar_fail(ar, "write", ar->log_path, UV_EIO);
    else
      ar_consume(ar, (size_t)r);
    ar_notify(ar);
    break;
  case AR_LOG_SYNC:
    ar->synced = 1;
    if (r < 0)
      ar_fail(ar, "fsync", ar->log_path, r);
    break;
  case AR_LOG_CLOSE:
    ar->log_fd = -1;
    if (r < 0)
      ar_fail(ar, "close", ar->log_path, r);
    break;
  case AR_JSON_OPEN:
    if (r < 0) {
      ar_fail(ar, "open", ar->tmp_path, r);
      ar->json_pending = 0; /* nothing was created that needs removing */
      break;
    }
    ar->tmp_fd = (uv_file)r;
    ar_submit_json_write(ar);
    return;
  case AR_JSON_WRITE:
    if (r <= 0) {
      ar_fail(ar, "write", ar->tmp_path, r < 0 ? r : UV_EIO);
      ar_json_cleanup(ar);
      return;
    }
    ar->json_off += (size_t)r;
    if (ar->json_off < ar->json_len)
      ar_submit_json_write(ar);
    else if (ar->json_final)
      ar_submitted(ar, AR_JSON_SYNC, uv_fs_fsync(loop, &ar->req, ar->tmp_fd, on_fs));
    else
      ar_submitted(ar, AR_JSON_CLOSE, uv_fs_close(loop, &ar->req, ar->tmp_fd, on_fs));
    return;
  case AR_JSON_SYNC:
    if (r < 0) {
      ar_fail(ar, "fsync", ar->tmp_path, r);
      ar->json_failed = 1;
    }
    ar_submitted(ar, AR_JSON_CLOSE, uv_fs_close(loop, &ar->req, ar->tmp_fd, on_fs));
    return;
  case AR_JSON_CLOSE:
    ar->tmp_fd = -1;
    if (r < 0 && !ar->json_failed)
      ar_fail(ar, "close", ar->tmp_path, r);
    if (r < 0 || ar->json_failed) {
      ar_json_cleanup(ar);
      return;
    }
    ar_submitted(ar, AR_JSON_RENAME,
                 uv_fs_rename(loop, &ar->req, ar->tmp_path, ar->json_path, on_fs));
    return;
  case AR_JSON_RENAME:
    if ((r == UV_EACCES || r == UV_EPERM || r == UV_EBUSY) &&
        ar->renames_tried < AR_RENAME_TRIES) {
      ar->renames_tried++;
      ar->op = AR_JSON_RENAME;
      if (uv_queue_work(loop, &ar->retry, rename_retry_work, rename_retry_done) == 0)
        return;
      ar->op = AR_NONE;
    }
    ar->renames_tried = 0;
    if (r < 0) {
      ar_fail(ar, "rename to", ar->json_path, r);
      ar_json_cleanup(ar);
      return;
    }
    ar->json_pending = 0;
    break;
  case AR_JSON_UNLINK:
    ar->json_pending = 0; /* best effort: the failure is already logged */
    break;
  default:
    break;
  }
  ar_step(ar);
}

static void ar_write(sb__sink_t* sink, sb__chunk_t* c) {
  sb__archive_t* ar = ar_of(sink);
  if (ar->failed || ar->finishing || c->len == 0) {
    sb__chunk_free(c);
    return;
  }
  c->next = NULL;
  if (ar->tail)
    ar->tail->next = c;
  else
    ar->head = c;
  ar->tail = c;
  sink->queued += c->len;
  if (sink->queued > sink->stream->broker->cfg.upstream_high_watermark)
    ar->paused = 1;
  ar_step(ar);
}

static void ar_finish(sb__sink_t* sink) {
  sb__archive_t* ar = ar_of(sink);
  if (ar->finishing)
    return;
  ar->finishing = 1;
  ar->closed = sb__time_now();
  ar_step(ar);
}

/* Frees what the sink holds; after done, or on a sink that never started its idle
 * handle or a request. */
static void ar_destroy(sb__sink_t* sink) {
  sb__archive_t* ar = ar_of(sink);
  ar_drop_pending(ar);
  free(ar->stem);
  free(ar->log_path);
  free(ar->json_path);
  free(ar->tmp_path);
  free(ar->json);
  free(ar);
}

/* ARCHIVE_DIR joined with each segment of the mapped path, with the platform's
 * separator; *parent gets the path without the last segment. */
static char* ar_join(const char* archive_dir, const char* rel, char** parent) {
  char* path = sb__xstrdup(archive_dir);
  const char* seg = rel;
  *parent = NULL;
  for (;;) {
    const char* end = strchr(seg, '/');
    size_t n = end ? (size_t)(end - seg) : strlen(seg);
    char* part = sb__xmalloc(n + 1);
    char* next;
    memcpy(part, seg, n);
    part[n] = '\0';
    if (end == NULL)
      *parent = sb__xstrdup(path);
    next = sb__path_join(path, part);
    free(part);
    free(path);
    path = next;
    if (end == NULL)
      return path;
    seg = end + 1;
  }
}

/*
 * The directories are made here, synchronously: sb__mkdir_p is a few metadata calls
 * on a local disk, usually on directories that exist already, and doing it before
 * returning lets the stream be refused at once when its place cannot be made. Every
 * file operation after that runs on the threadpool.
 */
sb__sink_t* sb__archive_sink_create(sb__stream_t* s, const char* archive_dir) {
  sb__archive_t* ar = sb__xcalloc(1, sizeof(*ar));
  char* rel = sb__archive_path(s->props.name);
  char* parent = NULL;
  int r;
  ar->sink.write = ar_write;
  ar->sink.finish = ar_finish;
  ar->sink.destroy = ar_destroy;
  ar->sink.stream = s;
  ar->log_fd = -1;
  ar->tmp_fd = -1;
  ar->stem = ar_join(archive_dir, rel, &parent);
  free(rel);
  ar_set_paths(ar);
  if ((r = sb__mkdir_p(parent)) != 0) {
    s->broker->counters.archive_errors++;
    SB_LOG_E("archive", "stream %llu \"%s\": creating directory %s: %s",
             (unsigned long long)s->id, s->props.name, parent, sb_strerror(r));
    free(parent);
    ar_destroy(&ar->sink);
    return NULL;
  }
  free(parent);
  uv_idle_init(s->broker->loop, &ar->idle);
  ar_step(ar);
  return &ar->sink;
}
