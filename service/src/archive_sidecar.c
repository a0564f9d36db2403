/*
 * archive_sidecar.c - the sidecar, a segment's PATH.json: its text (the opening
 * version, the closing one, or that of a segment left for a new one; the format is in
 * archive.c), the first error it reports, and the blocking reads and writes of
 * sidecars that the threadpool and the scan at start use.
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "archive_int.h"
#include "tags.h"

void sb__archive_set_error(sb__archive_t* ar, int err, const char* what,
                           const char* path, const char* why) {
  size_t n;
  if (ar->err != 0)
    return;
  n = strlen(what) + strlen(path) + strlen(why) + 8;
  ar->err = err;
  ar->err_text = sb__xmalloc(n);
  snprintf(ar->err_text, n, "%s %s: %s", what, path, why);
}

/* cJSON returns NULL when an allocation fails: the service aborts, as on any small
 * allocation (sb__xmalloc). */
cJSON* sb__archive_sidecar_need(cJSON* item) {
  if (item == NULL) {
    fprintf(stderr, "streambrokerd: out of memory (cJSON)\n");
    abort();
  }
  return item;
}

static void ar_add_time(cJSON* obj, const char* key, int has, sb__time_t t) {
  char buf[SB__TIME_BUF];
  if (has && sb__time_format(t, buf) >= 0)
    sb__archive_sidecar_need(cJSON_AddStringToObject(obj, key, buf));
  else
    sb__archive_sidecar_need(cJSON_AddNullToObject(obj, key));
}

/* "gap": {"from": E, "to": X, "unit": "bytes" | "datagrams"}, and "nothing_before":
 * true when the archive held nothing of the name. */
static void ar_add_gap(cJSON* root, int gap, uint64_t from, uint64_t to, int dgram) {
  cJSON* g;
  if (gap == 0)
    return;
  g = sb__archive_sidecar_need(cJSON_AddObjectToObject(root, "gap"));
  sb__archive_sidecar_need(cJSON_AddNumberToObject(g, "from", (double)from));
  sb__archive_sidecar_need(cJSON_AddNumberToObject(g, "to", (double)to));
  sb__archive_sidecar_need(
      cJSON_AddStringToObject(g, "unit", dgram ? "datagrams" : "bytes"));
  if (gap == 2)
    sb__archive_sidecar_need(cJSON_AddBoolToObject(g, "nothing_before", 1));
}

/* What the stream read and the archive does not hold: after the .log's end, and what
 * the spool lost on the way. */
uint64_t sb__archive_sidecar_lost(const sb__archive_t* ar) {
  uint64_t read = ar->sink.stream->bytes, written = sb__archive_written(ar);
  return (read > written ? read - written : 0) + ar->lost;
}

/*
 * The sidecar's text (cJSON_free): its opening version, its closing one, or the one
 * of a segment left for a new one (what it holds; its stream goes on elsewhere). A
 * segment that starts inside its stream carries the tag streambroker.offset with
 * where: its first byte, or its first datagram's index, added to the offset the
 * stream itself came with.
 */
char* sb__archive_sidecar(sb__archive_t* ar, int version) {
  static const char* const types[] = {"text", "binary", "datagram"};
  sb__stream_t* s = ar->sink.stream;
  const sb__props_t* p = &s->props;
  int closed = version != AR_SIDECAR_OPEN, final = version == AR_SIDECAR_CLOSED;
  int first = ar->seg_start == 0 && !ar->resumed;
  uint64_t bytes = 0, dgrams = 0;
  cJSON* root = sb__archive_sidecar_need(cJSON_CreateObject());
  cJSON *tags, *client;
  char* text;
  size_t i;
  if (final) {
    bytes = s->bytes > ar->seg_start ? s->bytes - ar->seg_start : 0;
    dgrams = first ? s->datagrams : ar->wdg.count;
  } else if (closed) {
    bytes = (uint64_t)ar->offset;
    dgrams = ar->wdg.count;
  }
  sb__archive_sidecar_need(cJSON_AddStringToObject(root, "name", p->name));
  sb__archive_sidecar_need(cJSON_AddStringToObject(
      root, "type",
      p->type >= SB_TEXT && p->type <= SB_DATAGRAM ? types[p->type] : "text"));
  sb__archive_sidecar_need(cJSON_AddStringToObject(
      root, "contentType", p->content_type ? p->content_type : ""));
  ar_add_time(root, "timestamp", p->has_timestamp, p->timestamp);
  tags = sb__archive_sidecar_need(cJSON_AddObjectToObject(root, "tags"));
  for (i = 0; i < p->tag_count; i++)
    if (ar->seg_mark == 0 || strcmp(p->tags[i].key, SB__TAG_OFFSET) != 0)
      sb__archive_sidecar_need(
          cJSON_AddStringToObject(tags, p->tags[i].key, p->tags[i].value));
  if (ar->seg_mark > 0) {
    char num[32];
    snprintf(num, sizeof(num), "%llu", (unsigned long long)(ar->start + ar->seg_mark));
    sb__archive_sidecar_need(cJSON_AddStringToObject(tags, SB__TAG_OFFSET, num));
  }
  sb__archive_sidecar_need(cJSON_AddNumberToObject(root, "sequence", ar->seq));
  ar_add_time(root, "opened", 1, ar->has_seg_opened ? ar->seg_opened : s->opened);
  ar_add_time(root, "closed", closed, final ? ar->closed : sb__time_now());
  sb__archive_sidecar_need(cJSON_AddNumberToObject(root, "bytes", (double)bytes));
  if (p->type == SB_DATAGRAM)
    sb__archive_sidecar_need(
        cJSON_AddNumberToObject(root, "datagrams", (double)dgrams));
  client = sb__archive_sidecar_need(cJSON_AddObjectToObject(root, "client"));
  if (s->peer_pid >= 0)
    sb__archive_sidecar_need(
        cJSON_AddNumberToObject(client, "pid", (double)s->peer_pid));
  if (s->peer_uid >= 0)
    sb__archive_sidecar_need(
        cJSON_AddNumberToObject(client, "uid", (double)s->peer_uid));
  if (s->peer_gid >= 0)
    sb__archive_sidecar_need(
        cJSON_AddNumberToObject(client, "gid", (double)s->peer_gid));
  /* Windows has no uid: the client process's user SID says who wrote the stream. */
  if (s->peer_uid < 0 && strncmp(s->peer_user, "S-", 2) == 0)
    sb__archive_sidecar_need(cJSON_AddStringToObject(client, "sid", s->peer_user));
  ar_add_gap(root, ar->gap, ar->gap_from, ar->gap_to, p->type == SB_DATAGRAM);
  sb__archive_sidecar_need(
      cJSON_AddBoolToObject(root, "complete", final && ar->err == 0 && ar->lost == 0));
  if (ar->lost > 0 && closed)
    sb__archive_sidecar_need(
        cJSON_AddNumberToObject(root, "dropped_bytes", (double)ar->lost));
  if (ar->spooled > 0 && closed)
    sb__archive_sidecar_need(
        cJSON_AddNumberToObject(root, "spooled_bytes", (double)ar->spooled));
  if (ar->resumed)
    sb__archive_sidecar_need(cJSON_AddBoolToObject(root, "resumed", 1));
  if (version == AR_SIDECAR_LEFT)
    sb__archive_sidecar_need(cJSON_AddBoolToObject(root, "continued", 1));
  if (ar->err != 0 && version != AR_SIDECAR_LEFT) {
    sb__archive_sidecar_need(cJSON_AddStringToObject(
        root, "error", ar->err_text ? ar->err_text : sb_strerror(ar->err)));
    /* What the .log holds of what the client sent. */
    sb__archive_sidecar_need(
        cJSON_AddNumberToObject(root, "archived_bytes", (double)ar->offset));
    if (final)
      sb__archive_sidecar_need(cJSON_AddNumberToObject(
          root, "lost_bytes", (double)sb__archive_sidecar_lost(ar)));
  } else if (final && ar->lost > 0) {
    sb__archive_sidecar_need(cJSON_AddNumberToObject(
        root, "lost_bytes", (double)sb__archive_sidecar_lost(ar)));
  }
  text = cJSON_Print(root);
  cJSON_Delete(root);
  if (text == NULL)
    sb__archive_sidecar_need(NULL);
  return text;
}

/* Makes the sidecar text (ar->json) for the opening or closing version. */
void sb__archive_sidecar_make(sb__archive_t* ar, int final) {
  char* text = sb__archive_sidecar(ar, final ? AR_SIDECAR_CLOSED : AR_SIDECAR_OPEN);
  size_t n = strlen(text);
  free(ar->json);
  ar->json = sb__xmalloc(n + 1);
  memcpy(ar->json, text, n);
  ar->json[n++] = '\n';
  cJSON_free(text);
  ar->json_len = n;
}

/* Starts writing the sidecar: PATH.json.tmp, then renamed over PATH.json. */
void sb__archive_sidecar_start(sb__archive_t* ar, int final) {
  sb__archive_sidecar_make(ar, final);
  ar->json_off = 0;
  ar->json_final = final;
  ar->json_failed = 0;
  ar->inplace_tried = 0;
  ar->json_pending = 1;
}

/* A whole (small) file, NUL-terminated; NULL when it cannot be read. */
static char* ar_read_small(const char* path, size_t* len) {
  uv_fs_t req;
  sb__buf_t b = {0};
  char chunk[16384];
  int fd = uv_fs_open(NULL, &req, path, UV_FS_O_RDONLY | UV_FS_O_NOFOLLOW, 0, NULL);
  uv_fs_req_cleanup(&req);
  if (fd < 0)
    return NULL;
  for (;;) {
    uv_buf_t buf = uv_buf_init(chunk, sizeof(chunk));
    int r = uv_fs_read(NULL, &req, fd, &buf, 1, (int64_t)b.len, NULL);
    uv_fs_req_cleanup(&req);
    if (r <= 0 || b.len > 8u * 1024u * 1024u) {
      if (r < 0)
        b.len = 0, b.err = r;
      break;
    }
    sb__buf_append(&b, chunk, (size_t)r);
  }
  uv_fs_close(NULL, &req, fd, NULL);
  uv_fs_req_cleanup(&req);
  sb__buf_putc(&b, '\0');
  if (b.err != 0) {
    sb__buf_free(&b);
    return NULL;
  }
  *len = b.len - 1;
  return b.data;
}

cJSON* sb__archive_sidecar_read(const char* path) {
  size_t len;
  char* text = ar_read_small(path, &len);
  cJSON* doc = text ? cJSON_ParseWithLength(text, len) : NULL;
  free(text);
  if (doc != NULL && !cJSON_IsObject(doc)) {
    cJSON_Delete(doc);
    doc = NULL;
  }
  return doc;
}

void sb__archive_sidecar_set(cJSON* obj, const char* key, cJSON* item) {
  cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
  cJSON_AddItemToObject(obj, key, sb__archive_sidecar_need(item));
}

/* Writes text as path, through path.tmp, fsync and a rename. 0 or a libuv error. */
int sb__archive_sidecar_write(const char* path, const char* text) {
  size_t n = strlen(path) + 5;
  char* tmp = sb__xmalloc(n);
  uv_fs_t req;
  uv_buf_t buf = uv_buf_init((char*)text, (unsigned)strlen(text));
  int fd, r;
  snprintf(tmp, n, "%s.tmp", path);
  /* Made anew: what is in its place (a leftover, or a link) is removed, not followed,
   * and the .tmp is created exclusively. */
  uv_fs_unlink(NULL, &req, tmp, NULL);
  uv_fs_req_cleanup(&req);
  fd = sb__file_open(tmp, UV_FS_O_WRONLY | UV_FS_O_CREAT | UV_FS_O_EXCL);
  if ((r = fd) >= 0) {
    r = uv_fs_write(NULL, &req, fd, &buf, 1, 0, NULL);
    uv_fs_req_cleanup(&req);
    if (r >= 0 && (size_t)r != buf.len)
      r = UV_ENOSPC;
    if (r >= 0) {
      r = uv_fs_fsync(NULL, &req, fd, NULL);
      uv_fs_req_cleanup(&req);
    }
    uv_fs_close(NULL, &req, fd, NULL);
    uv_fs_req_cleanup(&req);
    if (r >= 0) {
      r = uv_fs_rename(NULL, &req, tmp, path, NULL);
      uv_fs_req_cleanup(&req);
    }
    if (r < 0) {
      uv_fs_unlink(NULL, &req, tmp, NULL);
      uv_fs_req_cleanup(&req);
    }
  }
  free(tmp);
  return r < 0 ? r : 0;
}
