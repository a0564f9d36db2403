/*
 * archive_recovery.c - recovery at start: the scan of the archive directory, which
 * finishes every segment an earlier run left open (its sidecar written from what is
 * known, marked incomplete and recovered), removes what a crash left half-made (an
 * empty .log without a sidecar, stale .json.tmp files), and teaches the index each
 * name's end and each closed segment's size and age. Blocking, on the loop thread,
 * before the service serves.
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "archive_int.h"
#include "tags.h"

static int ar_ends_with(const char* s, const char* suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Complete datagrams in a .log (its framing); a damaged tail ends the count. */
static uint64_t ar_count_datagrams(const char* path) {
  uv_fs_t req;
  sb__dgram_t d;
  static char chunk[65536];
  int64_t off = 0;
  int fd = uv_fs_open(NULL, &req, path, UV_FS_O_RDONLY | UV_FS_O_NOFOLLOW, 0, NULL);
  uv_fs_req_cleanup(&req);
  if (fd < 0)
    return 0;
  sb__dgram_init(&d, 0);
  for (;;) {
    uv_buf_t buf = uv_buf_init(chunk, sizeof(chunk));
    int r = uv_fs_read(NULL, &req, fd, &buf, 1, off, NULL);
    size_t used = 0;
    uv_fs_req_cleanup(&req);
    if (r <= 0)
      break;
    off += r;
    for (;;) { /* until the chunk is used up (an END may come after its last byte) */
      sb__dgram_event_t ev;
      int64_t n =
          sb__dgram_next(&d, (const uint8_t*)chunk + used, (size_t)r - used, &ev);
      if (n < 0)
        goto done;
      used += (size_t)n;
      if (ev.kind == SB__DGRAM_NONE)
        break;
    }
  }
done:
  uv_fs_close(NULL, &req, fd, NULL);
  uv_fs_req_cleanup(&req);
  return d.count;
}

static int ar_absent(const char* path) {
  uv_fs_t req;
  int r = uv_fs_stat(NULL, &req, path, NULL);
  uv_fs_req_cleanup(&req);
  return r == UV_ENOENT;
}

/* Whether path is a sidecar written in full: absent, empty or cut short, it is not. */
static int ar_tmp_holds_sidecar(const char* path) {
  cJSON* doc = ar_absent(path) ? NULL : sb__archive_sidecar_read(path);
  int r = doc != NULL;
  cJSON_Delete(doc);
  return r;
}

/*
 * One segment found at start (STEM.log). A closed one is learnt (name's end, size,
 * age). One an earlier run left open (no sidecar, a sidecar of an open stream, or one
 * that cannot be read) is finished: its sidecar is written from what is known (the
 * sidecar, else the .json.tmp, else only the path) with the bytes in the .log,
 * "complete": false and "recovered": true. An empty .log with no sidecar at all, nor
 * a .json.tmp that holds one (a stream whose sidecar could not be written, on a full
 * disk say: the .tmp of a failed write is removed, or left empty by a kill) holds
 * nothing: it is removed, which needs no room.
 */
static void ar_scan_segment(ar_scan_t* sc, const char* stem) {
  char* log_path = sb__archive_path_with(stem, 0, ".log");
  char* json_path = sb__archive_path_with(stem, 0, ".json");
  char* tmp_path = sb__archive_path_with(stem, 0, ".json.tmp");
  cJSON *doc, *item, *tags;
  uv_fs_t req;
  uint64_t size = 0, units, start = 0, json_size = 0;
  sb__time_t mt = {0, 0};
  uint64_t files = 1;
  int dgram, r, stat_ok;
  const char* name = NULL;
  stat_ok = uv_fs_stat(NULL, &req, log_path, NULL) == 0;
  if (stat_ok) {
    size = req.statbuf.st_size;
    mt.sec = (int64_t)req.statbuf.st_mtim.tv_sec;
    mt.nsec = (int32_t)req.statbuf.st_mtim.tv_nsec;
  }
  uv_fs_req_cleanup(&req);
  if (stat_ok && size == 0 && ar_absent(json_path) && !ar_tmp_holds_sidecar(tmp_path)) {
    /* A .json.tmp that holds no sidecar was a write that failed (a kill came before
     * its removal): it goes too. */
    if (!ar_absent(tmp_path) && uv_fs_unlink(NULL, &req, tmp_path, NULL) == 0) {
      sc->b->counters.archive_tmp_removed++;
      SB_LOG_W("archive", "removed %s, left by an earlier run", tmp_path);
    }
    uv_fs_req_cleanup(&req);
    r = uv_fs_unlink(NULL, &req, log_path, NULL);
    uv_fs_req_cleanup(&req);
    if (r == 0) {
      sc->b->counters.archive_empty_removed++;
      SB_LOG_W("archive",
               "removed %s, left empty and without a sidecar by an earlier run (its "
               "sidecar could not be written: a full disk?)",
               log_path);
    } else {
      sc->b->counters.archive_errors++;
      SB_LOG_E("archive", "removing %s (empty, no sidecar): %s", log_path,
               uv_strerror(r));
    }
    free(log_path);
    free(json_path);
    free(tmp_path);
    return;
  }
  sc->segments++;
  doc = sb__archive_sidecar_read(json_path);
  if (!(doc && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(doc, "closed")))) {
    /* Left open: finish it. */
    cJSON* src = doc ? doc : sb__archive_sidecar_read(tmp_path);
    cJSON* out = src ? sb__archive_sidecar_need(cJSON_Duplicate(src, 1))
                     : sb__archive_sidecar_need(cJSON_CreateObject());
    char buf[SB__TIME_BUF];
    char* text;
    if (src != doc)
      cJSON_Delete(src);
    cJSON_Delete(doc);
    doc = out;
    if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(doc, "name")))
      sb__archive_sidecar_set(doc, "name", cJSON_CreateNull());
    {
      /* The path below the archive directory, with '/' separators. */
      char* rel = sb__xstrdup(stem + strlen(sc->root) + 1);
      char* c;
      for (c = rel; *c; c++)
        if (*c == '\\')
          *c = '/';
      sb__archive_sidecar_set(doc, "mapped_path", cJSON_CreateString(rel));
      free(rel);
    }
    if (!cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(doc, "sequence")))
      sb__archive_sidecar_set(doc, "sequence",
                              cJSON_CreateNumber(sb__archive_path_seq(stem)));
    if (sb__time_format(mt, buf) < 0)
      snprintf(buf, sizeof(buf), "1970-01-01T00:00:00Z");
    sb__archive_sidecar_set(doc, "closed", cJSON_CreateString(buf));
    sb__archive_sidecar_set(doc, "bytes", cJSON_CreateNumber((double)size));
    item = cJSON_GetObjectItemCaseSensitive(doc, "type");
    if (cJSON_IsString(item) && strcmp(item->valuestring, "datagram") == 0)
      sb__archive_sidecar_set(doc, "datagrams",
                              cJSON_CreateNumber((double)ar_count_datagrams(log_path)));
    sb__archive_sidecar_set(doc, "complete", cJSON_CreateFalse());
    sb__archive_sidecar_set(doc, "recovered", cJSON_CreateTrue());
    text = cJSON_Print(doc);
    if (text == NULL)
      sb__archive_sidecar_need(NULL);
    /* Written through STEM.json.tmp, which replaces a stale one. */
    r = uv_fs_stat(NULL, &req, tmp_path, NULL);
    uv_fs_req_cleanup(&req);
    if (r == 0) {
      sc->b->counters.archive_tmp_removed++;
      SB_LOG_W("archive", "removed %s, left by an earlier run", tmp_path);
    }
    r = sb__archive_sidecar_write(json_path, text);
    cJSON_free(text);
    item = cJSON_GetObjectItemCaseSensitive(doc, "name");
    if (r < 0) {
      sc->b->counters.archive_errors++;
      SB_LOG_E("archive", "recovering %s: writing %s: %s", log_path, json_path,
               uv_strerror(r));
    } else {
      sc->b->counters.archive_recovered++;
      SB_LOG_W("archive",
               "recovered %s (stream \"%s\"), left open by an earlier run: %llu bytes, "
               "marked incomplete",
               log_path, cJSON_IsString(item) ? item->valuestring : "(name unknown)",
               (unsigned long long)size);
    }
  }
  if (uv_fs_stat(NULL, &req, json_path, NULL) == 0) {
    json_size = req.statbuf.st_size;
    files++;
  }
  uv_fs_req_cleanup(&req);
  sc->st->files += files;
  sc->st->bytes += size + json_size;
  sb__archive_index_add_closed(sc->st, stem, size + json_size, files, mt.sec);
  /* The name's end. */
  item = cJSON_GetObjectItemCaseSensitive(doc, "name");
  if (cJSON_IsString(item))
    name = item->valuestring;
  tags = cJSON_GetObjectItemCaseSensitive(doc, "tags");
  item = cJSON_GetObjectItemCaseSensitive(tags, SB__TAG_NAME);
  if (cJSON_IsString(item))
    name = item->valuestring;
  item = cJSON_GetObjectItemCaseSensitive(tags, SB__TAG_OFFSET);
  if (!cJSON_IsString(item) ||
      sb__archive_index_offset_tag(item->valuestring, &start) <= 0)
    start = 0;
  item = cJSON_GetObjectItemCaseSensitive(doc, "type");
  dgram = cJSON_IsString(item) && strcmp(item->valuestring, "datagram") == 0;
  item = cJSON_GetObjectItemCaseSensitive(doc, dgram ? "datagrams" : "bytes");
  units =
      cJSON_IsNumber(item) && item->valuedouble > 0 ? (uint64_t)item->valuedouble : 0;
  if (name != NULL)
    sb__archive_index_end(sb__archive_index_known(sc->st, name, 1), start + units);
  cJSON_Delete(doc);
  free(log_path);
  free(json_path);
  free(tmp_path);
}

#define AR_SCAN_DEPTH 64

void sb__archive_recovery_scan(ar_scan_t* sc, const char* dir, int depth) {
  uv_fs_t req;
  uv_dirent_t ent;
  char** stems = NULL;
  char** tmps = NULL;
  size_t nstems = 0, ntmps = 0, i;
  int r = uv_fs_scandir(NULL, &req, dir, 0, NULL);
  if (r < 0) {
    sc->b->counters.archive_errors++;
    SB_LOG_E("archive", "scanning %s: %s", dir, uv_strerror(r));
    uv_fs_req_cleanup(&req);
    return;
  }
  while (uv_fs_scandir_next(&req, &ent) != UV_EOF) {
    char* path = sb__path_join(dir, ent.name);
    int type = ent.type;
    if (type == UV_DIRENT_UNKNOWN) {
      uv_fs_t sreq;
      if (uv_fs_lstat(NULL, &sreq, path, NULL) == 0)
        type =
            (sreq.statbuf.st_mode & S_IFMT) == S_IFDIR ? UV_DIRENT_DIR : UV_DIRENT_FILE;
      uv_fs_req_cleanup(&sreq);
    }
    if (type == UV_DIRENT_DIR && depth < AR_SCAN_DEPTH) {
      sb__archive_recovery_scan(sc, path, depth + 1);
    } else if (type == UV_DIRENT_FILE && ar_ends_with(ent.name, ".json.tmp")) {
      tmps = sb__xrealloc(tmps, (ntmps + 1) * sizeof(*tmps));
      tmps[ntmps++] = path;
      path = NULL;
    } else if (type == UV_DIRENT_FILE && ar_ends_with(ent.name, ".log")) {
      path[strlen(path) - 4] = '\0';
      stems = sb__xrealloc(stems, (nstems + 1) * sizeof(*stems));
      stems[nstems++] = path;
      path = NULL;
    }
    free(path);
  }
  uv_fs_req_cleanup(&req);
  for (i = 0; i < nstems; i++) {
    ar_scan_segment(sc, stems[i]);
    free(stems[i]);
  }
  /* After the segments, which may have read them for a name. */
  for (i = 0; i < ntmps; i++) {
    r = uv_fs_unlink(NULL, &req, tmps[i], NULL);
    uv_fs_req_cleanup(&req);
    if (r == 0) {
      sc->b->counters.archive_tmp_removed++;
      SB_LOG_W("archive", "removed %s, left by an earlier run", tmps[i]);
    } else if (r != UV_ENOENT) { /* ENOENT: a recovered segment's, replaced */
      sc->b->counters.archive_errors++;
      SB_LOG_E("archive", "removing %s: %s", tmps[i], uv_strerror(r));
    }
    free(tmps[i]);
  }
  free(stems);
  free(tmps);
}
