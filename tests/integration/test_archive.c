/*
 * test_archive.c - archive mode with the real streambrokerd: names of every valid
 * length and depth get files of their own, a full disk loses nothing (what does not
 * fit waits in the spool, then goes on in the same file), a killed archive's streams
 * are finished at the next start, gaps in a reopened stream are recorded, and the
 * test-only write delay holds data back.
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#ifndef _WIN32
#include <sys/mount.h>
#include <unistd.h>
#endif

#include "helpers.h"
#include "internal.h" /* sb__archive_path, sb__path_long: where the files are */
#include "task.h"

/* ---- reading the archive ---- */

/* ARCHIVE_DIR/<mapped name>[+seq]<ext>, in the form file calls take at any length. */
static char* archive_file(const char* archive_dir, const char* name, int seq,
                          const char* ext) {
  char* rel = sb__archive_path(name);
  size_t n = strlen(archive_dir) + strlen(rel) + strlen(ext) + 32;
  char* path = malloc(n);
  char* c;
  char* longp;
  ASSERT_NOT_NULL(path);
  if (seq == 0)
    snprintf(path, n, "%s/%s%s", archive_dir, rel, ext);
  else
    snprintf(path, n, "%s/%s+%d%s", archive_dir, rel, seq, ext);
  if (sb_it_is_windows())
    for (c = path; *c; c++)
      if (*c == '/')
        *c = '\\';
  free(rel);
  longp = sb__path_long(path);
  free(path);
  return longp;
}

/* A whole file (any path length), NUL-terminated; NULL when absent. */
static char* read_any(const char* path, size_t* len) {
  uv_fs_t req;
  sb__buf_t b = {0};
  char chunk[65536];
  int fd = uv_fs_open(NULL, &req, path, UV_FS_O_RDONLY, 0, NULL);
  uv_fs_req_cleanup(&req);
  if (fd < 0)
    return NULL;
  for (;;) {
    uv_buf_t buf = uv_buf_init(chunk, sizeof(chunk));
    int r = uv_fs_read(NULL, &req, fd, &buf, 1, (int64_t)b.len, NULL);
    uv_fs_req_cleanup(&req);
    ASSERT_GE(r, 0);
    if (r == 0)
      break;
    sb__buf_append(&b, chunk, (size_t)r);
  }
  uv_fs_close(NULL, &req, fd, NULL);
  uv_fs_req_cleanup(&req);
  sb__buf_putc(&b, '\0');
  ASSERT_OK(b.err);
  *len = b.len - 1;
  return b.data;
}

static char* read_archived(const char* archive_dir, const char* name, int seq,
                           const char* ext, size_t* len) {
  char* path = archive_file(archive_dir, name, seq, ext);
  char* data = read_any(path, len);
  free(path);
  return data;
}

/* The sidecar of a segment, parsed; fails the test when absent or not JSON. */
static cJSON* sidecar(const char* archive_dir, const char* name, int seq) {
  size_t len;
  char* text = read_archived(archive_dir, name, seq, ".json", &len);
  cJSON* doc;
  if (text == NULL)
    sb_test_fail(__FILE__, __LINE__, "\"%.60s\" segment %d: no sidecar in %s", name, seq,
                 archive_dir);
  doc = cJSON_ParseWithLength(text, len);
  if (doc == NULL)
    sb_test_fail(__FILE__, __LINE__, "\"%.60s\": sidecar is not JSON: %s", name, text);
  free(text);
  return doc;
}

static const char* jstr(cJSON* doc, const char* key) {
  cJSON* it = cJSON_GetObjectItemCaseSensitive(doc, key);
  return cJSON_IsString(it) ? it->valuestring : NULL;
}

static double jnum(cJSON* doc, const char* key) {
  cJSON* it = cJSON_GetObjectItemCaseSensitive(doc, key);
  if (!cJSON_IsNumber(it))
    sb_test_fail(__FILE__, __LINE__, "no number \"%s\"", key);
  return it->valuedouble;
}

static int jtrue(cJSON* doc, const char* key) {
  return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, key));
}

/* What a walk of the archive directory found. */
typedef struct {
  int dirs;
  int logs;
  int logs_without_json;
  int tmps;
} walk_t;

static int has_suffix(const char* s, const char* suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

static void walk(const char* dir, walk_t* w) {
  uv_fs_t req;
  uv_dirent_t ent;
  ASSERT_GE(uv_fs_scandir(NULL, &req, dir, 0, NULL), 0);
  while (uv_fs_scandir_next(&req, &ent) != UV_EOF) {
    char* path = sb__path_join(dir, ent.name);
    if (ent.type == UV_DIRENT_DIR) {
      w->dirs++;
      walk(path, w);
    } else if (has_suffix(ent.name, ".json.tmp")) {
      fprintf(stderr, "left behind: %s\n", path);
      w->tmps++;
    } else if (has_suffix(ent.name, ".log")) {
      uv_fs_t sreq;
      w->logs++;
      strcpy(path + strlen(path) - 4, ".jso");
      {
        size_t n = strlen(path);
        char* json = malloc(n + 2);
        ASSERT_NOT_NULL(json);
        memcpy(json, path, n);
        json[n] = 'n';
        json[n + 1] = '\0';
        if (uv_fs_stat(NULL, &sreq, json, NULL) != 0) {
          fprintf(stderr, "no sidecar: %s\n", json);
          w->logs_without_json++;
        }
        uv_fs_req_cleanup(&sreq);
        free(json);
      }
    }
    free(path);
  }
  uv_fs_req_cleanup(&req);
}

/* ---- running the tools ---- */

/* sbcat must succeed. */
static void sbcat_ok(uv_loop_t* loop, sb_it_daemon_t* d, const char* name,
                     const char* type, const char* tag, const char* in) {
  sb_it_result_t res;
  const char* args[9] = {"--name", name, "--server", d->address};
  int n = 4;
  if (type) {
    args[n++] = "--type";
    args[n++] = type;
  }
  if (tag) {
    args[n++] = "--tag";
    args[n++] = tag;
  }
  sb_it_run_tool(loop, "sbcat", args, in, strlen(in), &res);
  if (res.exit_status != 0) {
    sb_it_daemon_dump(d);
    sb_test_fail(__FILE__, __LINE__, "sbcat \"%.60s\": exit %d: %s", name,
                 (int)res.exit_status, res.err.data);
  }
  sb_it_result_free(&res);
}

/* The daemon's status as JSON (sbctl --json status). */
static cJSON* status(uv_loop_t* loop, sb_it_daemon_t* d) {
  sb_it_result_t res;
  cJSON* doc;
  sb_it_run_tool(loop, "sbctl",
                 SB_IT_ARGS("--admin", d->admin_address, "--json", "status"), NULL, 0,
                 &res);
  ASSERT_EQ(res.exit_status, 0);
  doc = cJSON_Parse(res.out.data);
  ASSERT_NOT_NULL(doc);
  sb_it_result_free(&res);
  return doc;
}

static double counter(cJSON* st, const char* name) {
  return jnum(cJSON_GetObjectItemCaseSensitive(st, "counters"), name);
}

static char* repeat(const char* unit, size_t times, const char* tail) {
  size_t ul = strlen(unit), tl = strlen(tail), i;
  char* s = malloc(ul * times + tl + 1);
  ASSERT_NOT_NULL(s);
  for (i = 0; i < times; i++)
    memcpy(s + i * ul, unit, ul);
  memcpy(s + ul * times, tail, tl + 1);
  return s;
}

/* ---- the tests ---- */

/*
 * Names the file system cannot take as they are: a segment past 255 bytes (and one
 * that only the suffixes push past it), one that escaping makes too long, 2,048
 * one-letter segments, 16 segments of 255 bytes, and a path past Windows' MAX_PATH.
 * Each is archived whole, its sidecar has the full name, and few directories are made.
 */
TEST_IMPL(archive_long_names) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  char* names[6];
  size_t i, n = sizeof(names) / sizeof(names[0]);
  walk_t w;
  names[0] = repeat("x", 300, "");
  names[1] = repeat("y", 247, "");
  names[2] = repeat(":", 90, "");
  names[2][0] = 'z'; /* a segment starts with a letter or digit */
  names[3] = repeat("a/", 2047, "a");
  names[4] = repeat("abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789"
                    "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789"
                    "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789"
                    "abcdefghijklmnopqrstuvwxyz01234567/",
                    15, "end");
  names[5] = repeat("path-past-max-path-0123456789-0123456789-0123456789/", 8, "leaf");
  ASSERT_EQ(strlen(names[3]), 4095);
  ASSERT_EQ(strlen(names[4]), 15 * 251 + 3);
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start(&d, &loop, "arlong", NULL, NULL);
  for (i = 0; i < n; i++) {
    char data[64];
    snprintf(data, sizeof(data), "data of name %zu\n", i);
    sbcat_ok(&loop, &d, names[i], NULL, NULL, data);
  }
  sb_it_daemon_wait_log(&d, "\" closed: ", n, 60000);
  for (i = 0; i < n; i++) {
    char data[64];
    size_t len;
    char* got = read_archived(d.archive_dir, names[i], 0, ".log", &len);
    cJSON* doc;
    snprintf(data, sizeof(data), "data of name %zu\n", i);
    if (got == NULL) {
      sb_it_daemon_dump(&d);
      sb_test_fail(__FILE__, __LINE__, "name %zu (%zu bytes) not archived in %s", i,
                   strlen(names[i]), d.archive_dir);
    }
    ASSERT_MEM_EQ(got, len, data, strlen(data));
    free(got);
    doc = sidecar(d.archive_dir, names[i], 0);
    ASSERT_STR_EQ(jstr(doc, "name"), names[i]);
    ASSERT(jtrue(doc, "complete"));
    cJSON_Delete(doc);
  }
  ASSERT(!sb_it_contains(d.log.data, d.log.len, "creating directory"));
  memset(&w, 0, sizeof(w));
  walk(d.archive_dir, &w);
  ASSERT_EQ(w.logs, (int)n);
  ASSERT_EQ(w.logs_without_json, 0);
  ASSERT_LE(w.dirs, 64); /* 31 for the deep name, 8 for the last, 1 for the first */
  sb_it_daemon_close(&d);
  for (i = 0; i < n; i++)
    free(names[i]);
  ASSERT_OK(uv_loop_close(&loop));
}

#ifndef _WIN32
/* A tmpfs the test mounted, taken down at exit when the test fails before it does. */
static char tmpfs_dir[600];

static void tmpfs_unmount(void) {
  if (tmpfs_dir[0])
    umount2(tmpfs_dir, MNT_DETACH);
  tmpfs_dir[0] = '\0';
}
#endif

/*
 * A full disk: the archive dir is a small tmpfs, mostly taken by another file. A
 * client writing more than fits goes on (sbcat exits 0): what the disk refuses goes to
 * the spool, the outage is logged once, counted and shown by sbctl. Once the other
 * file is gone, the stream goes on in the same .log: every byte, in order, once, and
 * its sidecar says complete; nothing is lost or failed.
 */
TEST_IMPL(archive_disk_full) {
#ifdef _WIN32
  TEST_SKIP("needs a small file system: Linux tmpfs, as root");
#else
  uv_loop_t loop;
  sb_it_daemon_t d;
  sb_it_result_t res;
  size_t big = 1024u * 1024u, len;
  char filler[700];
  char* data;
  char* got;
  cJSON *doc, *st;
  FILE* f;
  size_t i;
  if (geteuid() != 0)
    TEST_SKIP("mounting a tmpfs needs root");
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start(&d, &loop, "arfull", NULL,
                     "\"upstream_high_watermark\": 4096, \"backoff_initial_ms\": 20, "
                     "\"backoff_max_ms\": 200");
  if (mount("sbarfull", d.archive_dir, "tmpfs", 0, "size=2m,mode=0700") != 0) {
    sb_it_daemon_close(&d);
    TEST_SKIP("cannot mount a tmpfs here");
  }
  snprintf(tmpfs_dir, sizeof(tmpfs_dir), "%s", d.archive_dir);
  atexit(tmpfs_unmount);
  /* Another file takes all but about 128 KiB (of 2 MiB). */
  snprintf(filler, sizeof(filler), "%s/filler", d.archive_dir);
  data = calloc(1, big);
  ASSERT_NOT_NULL(data);
  f = fopen(filler, "wb");
  ASSERT_NOT_NULL(f);
  for (i = 0; i < 15; i++)
    ASSERT_EQ(fwrite(data, 1, 128u * 1024u, f), 128u * 1024u);
  ASSERT_EQ(fclose(f), 0);
  for (i = 0; i < big; i++)
    data[i] = (char)('a' + (i * 7 + i / 4096) % 26);
  sb_it_run_tool(
      &loop, "sbcat",
      SB_IT_ARGS("--name", "full/big", "--server", d.address, "--type", "binary"), data,
      big, &res);
  if (res.exit_status != 0) {
    sb_it_daemon_dump(&d);
    sb_test_fail(__FILE__, __LINE__, "sbcat exited %d, want 0: %s",
                 (int)res.exit_status, res.err.data);
  }
  sb_it_result_free(&res);
  sb_it_daemon_wait_log(&d, "the archive cannot write", 1, 30000);
  ASSERT(sb_it_contains(d.log.data, d.log.len, "no space left on device"));
  st = status(&loop, &d);
  ASSERT_EQ(counter(st, "archive_streams_spooled"), 1);
  ASSERT(!jtrue(cJSON_GetObjectItemCaseSensitive(st, "archive"), "writable"));
  cJSON_Delete(st);
  /* Room again: the stream goes on where its .log ends. */
  ASSERT_EQ(remove(filler), 0);
  sb_it_daemon_wait_log(&d, "\"full/big\" closed", 1, 30000);
  got = read_archived(d.archive_dir, "full/big", 0, ".log", &len);
  ASSERT_NOT_NULL(got);
  ASSERT_MEM_EQ(got, len, data, big);
  free(got);
  ASSERT_NULL(read_archived(d.archive_dir, "full/big", 1, ".log", &len));
  doc = sidecar(d.archive_dir, "full/big", 0);
  ASSERT(jtrue(doc, "complete"));
  ASSERT_EQ(jnum(doc, "bytes"), (double)big);
  ASSERT_GT(jnum(doc, "spooled_bytes"), 0);
  cJSON_Delete(doc);
  ASSERT_EQ(sb_it_count(d.log.data, d.log.len, "the archive cannot write"), 1);
  st = status(&loop, &d);
  ASSERT_EQ(counter(st, "archive_errors"), 1);
  ASSERT_EQ(counter(st, "archive_streams_spooled"), 1);
  ASSERT_EQ(counter(st, "archive_streams_failed"), 0);
  ASSERT_EQ(counter(st, "archive_bytes_lost"), 0);
  ASSERT_GT(counter(st, "archive_bytes_spooled"), 0);
  ASSERT(jtrue(cJSON_GetObjectItemCaseSensitive(st, "archive"), "writable"));
  cJSON_Delete(st);
  sb_it_daemon_kill(&d, SIGTERM);
  sb_it_daemon_wait_exit(&d, 30000);
  tmpfs_unmount();
  sb_it_daemon_close(&d);
  free(data);
  ASSERT_OK(uv_loop_close(&loop));
#endif
}

typedef struct {
  const char* archive_dir;
  const char* const* names;
  const size_t* sizes;
  int n;
} sizes_t;

static int all_written(void* arg) {
  sizes_t* s = arg;
  int i;
  for (i = 0; i < s->n; i++) {
    size_t len;
    char* got = read_archived(s->archive_dir, s->names[i], 0, ".log", &len);
    free(got);
    if (got == NULL || len != s->sizes[i])
      return 0;
  }
  return 1;
}

/*
 * An archive killed with SIGKILL while streams are open, with a .log of no sidecar
 * and stale .json.tmp files beside it: the next start finishes every stream (sidecar
 * with "complete": false, "recovered": true, the bytes in the .log), removes the
 * .tmp files and counts both; a start after that finds nothing to do.
 */
TEST_IMPL(archive_recovery_after_kill) {
  static const char* const names[] = {"kill/a", "kill/b", "kill/c"};
  static const size_t sizes[] = {8, 5, 10}; /* c: datagrams "one", "three" framed */
  uv_loop_t loop;
  sb_it_daemon_t d;
  sb_client_t* c;
  sb_stream_t* s[3];
  sb_stream_opts_t o;
  sizes_t wait = {NULL, names, sizes, 3};
  char path[1024];
  cJSON *doc, *st;
  walk_t w;
  int i;
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start(&d, &loop, "arkill", NULL, NULL);
  ASSERT_OK(sb_client_open(&c, d.address));
  for (i = 0; i < 3; i++) {
    memset(&o, 0, sizeof(o));
    o.name = names[i];
    o.type = i == 0 ? SB_TEXT : i == 1 ? SB_BINARY : SB_DATAGRAM;
    ASSERT_OK(sb_stream_open(c, &o, &s[i]));
  }
  ASSERT_OK(sb_stream_write(s[0], "hello a\n", 8));
  ASSERT_OK(sb_stream_write(s[1], "bbbbb", 5));
  ASSERT_OK(sb_stream_send_datagram(s[2], "one", 3));
  ASSERT_OK(sb_stream_send_datagram(s[2], "three", 5));
  wait.archive_dir = d.archive_dir;
  if (!sb_it_run_until(&loop, 30000, all_written, &wait)) {
    sb_it_daemon_dump(&d);
    sb_test_fail(__FILE__, __LINE__, "the streams' data never reached %s", d.archive_dir);
  }
  /* What a run killed at other moments leaves. */
  snprintf(path, sizeof(path), "%s/planted", d.archive_dir);
  {
    uv_fs_t req;
    ASSERT_OK(uv_fs_mkdir(NULL, &req, path, 0700, NULL));
    uv_fs_req_cleanup(&req);
  }
  snprintf(path, sizeof(path), "%s/planted/orphan.log", d.archive_dir);
  sb_it_write_file(path, "orphan data", 11);
  snprintf(path, sizeof(path), "%s/planted/half+2.log", d.archive_dir);
  sb_it_write_file(path, "half", 4);
  snprintf(path, sizeof(path), "%s/planted/half+2.json.tmp", d.archive_dir);
  {
    static const char half[] = "{\"name\": \"planted/half\", \"type\": \"text\", \"tags\": {}}";
    sb_it_write_file(path, half, strlen(half));
  }
  snprintf(path, sizeof(path), "%s/planted/stale.json.tmp", d.archive_dir);
  sb_it_write_file(path, "{\"name\": \"plan", 14);
  snprintf(path, sizeof(path), "%s/kill/a.json.tmp", d.archive_dir);
  sb_it_write_file(path, "{", 1);

  sb_it_daemon_kill(&d, SIGKILL);
  sb_it_daemon_wait_exit(&d, 30000);
  for (i = 0; i < 3; i++)
    sb_stream_close(s[i]); /* the service is gone: errors are expected */
  sb_client_close(c);
  sb_it_daemon_restart(&d);

  for (i = 0; i < 3; i++) {
    doc = sidecar(d.archive_dir, names[i], 0);
    ASSERT_STR_EQ(jstr(doc, "name"), names[i]);
    ASSERT(!jtrue(doc, "complete"));
    ASSERT(jtrue(doc, "recovered"));
    ASSERT_NOT_NULL(jstr(doc, "closed"));
    ASSERT_EQ(jnum(doc, "bytes"), sizes[i]);
    if (i == 2)
      ASSERT_EQ(jnum(doc, "datagrams"), 2);
    cJSON_Delete(doc);
  }
  doc = sidecar(d.archive_dir, "planted/orphan", 0);
  ASSERT(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(doc, "name")));
  ASSERT_STR_EQ(jstr(doc, "mapped_path"), "planted/orphan");
  ASSERT_EQ(jnum(doc, "bytes"), 11);
  ASSERT(jtrue(doc, "recovered"));
  cJSON_Delete(doc);
  doc = sidecar(d.archive_dir, "planted/half", 2);
  ASSERT_STR_EQ(jstr(doc, "name"), "planted/half");
  ASSERT_EQ(jnum(doc, "sequence"), 2);
  ASSERT_EQ(jnum(doc, "bytes"), 4);
  cJSON_Delete(doc);
  memset(&w, 0, sizeof(w));
  walk(d.archive_dir, &w);
  ASSERT_EQ(w.logs, 5);
  ASSERT_EQ(w.logs_without_json, 0);
  ASSERT_EQ(w.tmps, 0);
  st = status(&loop, &d);
  ASSERT_EQ(counter(st, "archive_recovered"), 5);
  ASSERT_EQ(counter(st, "archive_tmp_removed"), 3);
  ASSERT_EQ(jnum(cJSON_GetObjectItemCaseSensitive(st, "archive"), "files"), 10);
  cJSON_Delete(st);

  /* Nothing left to do at the next start. */
  sb_it_daemon_kill(&d, SIGTERM);
  sb_it_daemon_wait_exit(&d, 30000);
  sb_it_daemon_restart(&d);
  st = status(&loop, &d);
  ASSERT_EQ(counter(st, "archive_recovered"), 0);
  ASSERT_EQ(counter(st, "archive_tmp_removed"), 0);
  cJSON_Delete(st);
  sb_it_daemon_close(&d);
  ASSERT_OK(uv_loop_close(&loop));
}

/* The gap recorded in a segment's sidecar: from, to, and whether nothing was known. */
static void expect_gap(const char* archive_dir, const char* name, int seq, double from,
                       double to, int nothing_before, const char* unit) {
  cJSON* doc = sidecar(archive_dir, name, seq);
  cJSON* gap = cJSON_GetObjectItemCaseSensitive(doc, "gap");
  if (to < 0) {
    if (gap != NULL)
      sb_test_fail(__FILE__, __LINE__, "%s+%d: a gap where there is none", name, seq);
  } else {
    if (gap == NULL)
      sb_test_fail(__FILE__, __LINE__, "%s+%d: no gap recorded", name, seq);
    ASSERT_EQ(jnum(gap, "from"), from);
    ASSERT_EQ(jnum(gap, "to"), to);
    ASSERT_STR_EQ(jstr(gap, "unit"), unit);
    ASSERT_EQ(jtrue(gap, "nothing_before"), nothing_before);
  }
  cJSON_Delete(doc);
}

/*
 * Segments of a name tagged streambroker.offset: one that starts past what the
 * archive holds of the name records the gap (also for a name never seen, and for
 * datagram streams in datagrams), one that starts within it does not; the ends are
 * learnt again from the sidecars at the next start.
 */
TEST_IMPL(archive_gaps) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  cJSON* st;
  char* hundred = repeat("0123456789", 10, "");
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start(&d, &loop, "argap", NULL, NULL);
  sbcat_ok(&loop, &d, "gap/s", NULL, NULL, hundred);                          /* 0..100 */
  sb_it_daemon_wait_log(&d, "\"gap/s\" closed", 1, 30000);
  sbcat_ok(&loop, &d, "gap/s", NULL, "streambroker.offset=100", hundred);     /* ..200 */
  sb_it_daemon_wait_log(&d, "\"gap/s\" closed", 2, 30000);
  sbcat_ok(&loop, &d, "gap/s", NULL, "streambroker.offset=150", hundred);     /* ..250 */
  sb_it_daemon_wait_log(&d, "\"gap/s\" closed", 3, 30000);
  sbcat_ok(&loop, &d, "gap/s", NULL, "streambroker.offset=500", hundred);     /* gap */
  sb_it_daemon_wait_log(&d, "\"gap/s\" closed", 4, 30000);
  sbcat_ok(&loop, &d, "gap/fresh", NULL, "streambroker.offset=50", "x\n");   /* unknown */
  sbcat_ok(&loop, &d, "gap/d", "datagram", NULL, "one\ntwo\nthree\n");        /* 0..3 */
  sb_it_daemon_wait_log(&d, "\"gap/d\" closed", 1, 30000);
  sbcat_ok(&loop, &d, "gap/d", "datagram", "streambroker.offset=5", "six\n"); /* gap */
  sb_it_daemon_wait_log(&d, "\" closed: ", 7, 30000);
  expect_gap(d.archive_dir, "gap/s", 0, 0, -1, 0, NULL);
  expect_gap(d.archive_dir, "gap/s", 1, 0, -1, 0, NULL);
  expect_gap(d.archive_dir, "gap/s", 2, 0, -1, 0, NULL);
  expect_gap(d.archive_dir, "gap/s", 3, 250, 500, 0, "bytes");
  expect_gap(d.archive_dir, "gap/fresh", 0, 0, 50, 1, "bytes");
  expect_gap(d.archive_dir, "gap/d", 0, 0, -1, 0, NULL);
  expect_gap(d.archive_dir, "gap/d", 1, 3, 5, 0, "datagrams");
  ASSERT_EQ(sb_it_count(d.log.data, d.log.len, "never arrived"), 3);
  st = status(&loop, &d);
  ASSERT_EQ(counter(st, "archive_gaps"), 3);
  ASSERT_EQ(counter(st, "archive_gap_bytes"), 250 + 50);
  ASSERT_EQ(counter(st, "archive_gap_datagrams"), 2);
  cJSON_Delete(st);

  /* After a restart the ends come from the sidecars: gap/s holds up to 600. */
  sb_it_daemon_kill(&d, SIGTERM);
  sb_it_daemon_wait_exit(&d, 30000);
  sb_it_daemon_restart(&d);
  sbcat_ok(&loop, &d, "gap/s", NULL, "streambroker.offset=600", hundred); /* no gap */
  sb_it_daemon_wait_log(&d, "\"gap/s\" closed", 4 + 1, 30000); /* one name: in order */
  sbcat_ok(&loop, &d, "gap/s", NULL, "streambroker.offset=900", hundred); /* gap */
  sbcat_ok(&loop, &d, "gap/d", "datagram", "streambroker.offset=6", "x\n"); /* no gap */
  sb_it_daemon_wait_log(&d, "\" closed: ", 7 + 3, 30000); /* the log spans both runs */
  expect_gap(d.archive_dir, "gap/s", 4, 0, -1, 0, NULL);
  expect_gap(d.archive_dir, "gap/s", 5, 700, 900, 0, "bytes");
  expect_gap(d.archive_dir, "gap/d", 2, 0, -1, 0, NULL);
  st = status(&loop, &d);
  ASSERT_EQ(counter(st, "archive_gaps"), 1);
  ASSERT_EQ(counter(st, "archive_gap_bytes"), 200);
  cJSON_Delete(st);
  sb_it_daemon_close(&d);
  free(hundred);
  ASSERT_OK(uv_loop_close(&loop));
}

static int path_there(void* arg) {
  uv_fs_t req;
  int r = uv_fs_stat(NULL, &req, (const char*)arg, NULL);
  uv_fs_req_cleanup(&req);
  return r == 0;
}

/*
 * A stream open, its .log still empty beside its opening sidecar, when the service is
 * SIGKILLed: the next start finishes it as one left open ("recovered", "complete":
 * false, 0 bytes), never removes it as an empty .log without a sidecar.
 */
TEST_IMPL(archive_recovery_empty_open) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  sb_client_t* c;
  sb_stream_t* s;
  sb_stream_opts_t o;
  cJSON* doc;
  char* json;
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start(&d, &loop, "aremptyopen", NULL, NULL);
  ASSERT_OK(sb_client_open(&c, d.address));
  memset(&o, 0, sizeof(o));
  o.name = "empty/open";
  ASSERT_OK(sb_stream_open(c, &o, &s));
  sb_it_daemon_wait_log(&d, "archived to", 1, 30000);
  json = archive_file(d.archive_dir, "empty/open", 0, ".json");
  ASSERT(sb_it_run_until(&loop, 30000, path_there, json));
  sb_it_daemon_kill(&d, SIGKILL);
  sb_it_daemon_wait_exit(&d, 30000);
  sb_stream_close(s);
  sb_client_close(c);
  sb_it_daemon_restart(&d);
  doc = sidecar(d.archive_dir, "empty/open", 0);
  ASSERT(jtrue(doc, "recovered"));
  ASSERT(!jtrue(doc, "complete"));
  ASSERT_EQ(jnum(doc, "bytes"), 0);
  cJSON_Delete(doc);
  ASSERT_EQ(sb_it_count(d.log.data, d.log.len, "left empty and without a sidecar"), 0);
  free(json);
  sb_it_daemon_close(&d);
  ASSERT_OK(uv_loop_close(&loop));
}

/* ---- retention ---- */

static uint64_t segment_size(const char* archive_dir, const char* name) {
  uint64_t total = 0;
  const char* exts[] = {".log", ".json"};
  int e;
  for (e = 0; e < 2; e++) {
    char* path = archive_file(archive_dir, name, 0, exts[e]);
    uv_fs_t req;
    ASSERT_OK(uv_fs_stat(NULL, &req, path, NULL));
    total += req.statbuf.st_size;
    uv_fs_req_cleanup(&req);
    free(path);
  }
  return total;
}

static int segment_exists(const char* archive_dir, const char* name, const char* ext) {
  char* path = archive_file(archive_dir, name, 0, ext);
  uv_fs_t req;
  int r = uv_fs_stat(NULL, &req, path, NULL);
  uv_fs_req_cleanup(&req);
  free(path);
  return r == 0;
}

static void set_age(const char* archive_dir, const char* name, double age_s) {
  const char* exts[] = {".log", ".json"};
  double t = (double)sb__time_now().sec - age_s;
  int e;
  for (e = 0; e < 2; e++) {
    char* path = archive_file(archive_dir, name, 0, exts[e]);
    uv_fs_t req;
    ASSERT_OK(uv_fs_utime(NULL, &req, path, t, t, NULL));
    uv_fs_req_cleanup(&req);
    free(path);
  }
}

/* Restarts the daemon with its first config plus extra members. */
static void restart_with(sb_it_daemon_t* d, const char* config, const char* extra) {
  sb__buf_t b = {0};
  sb_it_daemon_kill(d, SIGTERM);
  sb_it_daemon_wait_exit(d, 30000);
  sb__buf_append(&b, "{\n  ", 4);
  sb__buf_append(&b, extra, strlen(extra));
  sb__buf_append(&b, ",\n", 2);
  sb__buf_append(&b, config + 2, strlen(config + 2)); /* after "{\n" */
  ASSERT_OK(b.err);
  sb_it_write_file(d->config_path, b.data, b.len);
  sb__buf_free(&b);
  sb_it_daemon_restart(d);
}

typedef struct {
  const char* archive_dir;
  const char* name;
} gone_t;

static int segment_gone(void* arg) {
  gone_t* g = arg;
  return !segment_exists(g->archive_dir, g->name, ".log");
}

/*
 * Closed streams of known sizes and ages (file times set with utime): a restart
 * learns the sizes, and retention by age, then by size, deletes exactly the oldest
 * closed ones, a .log and its .json together; an open stream is never deleted, even
 * when the archive cannot get under its limit without it.
 */
TEST_IMPL(archive_retention) {
  static const char* const names[] = {"r/1", "r/2", "r/3", "r/4", "r/5"};
  /* Not in the order of the names (nor of the directory listing). */
  static const double ages[] = {4000, 5000, 500, 4500, 1000};
  static const int old_one[] = {1, 1, 0, 1, 0};
  uv_loop_t loop;
  sb_it_daemon_t d;
  char* thousand = repeat("0123456789", 100, "");
  char* config;
  size_t config_len;
  uint64_t sizes[5], old_bytes = 0;
  char extra[256];
  cJSON *st, *ar;
  sb_client_t* c;
  sb_stream_t* s;
  sb_stream_opts_t o;
  gone_t gone;
  int i;
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start(&d, &loop, "arret", NULL, NULL);
  config = sb_it_read_file(d.config_path, &config_len);
  ASSERT_NOT_NULL(config);
  for (i = 0; i < 5; i++)
    sbcat_ok(&loop, &d, names[i], NULL, NULL, thousand);
  sb_it_daemon_wait_log(&d, "\" closed: ", 5, 30000);
  for (i = 0; i < 5; i++) {
    sizes[i] = segment_size(d.archive_dir, names[i]);
    set_age(d.archive_dir, names[i], ages[i]);
    if (old_one[i])
      old_bytes += sizes[i];
  }

  /* By age: the three older than 3000 s go at start. */
  restart_with(&d, config, "\"archive_max_age\": 3000");
  sb_it_daemon_wait_log(&d, "retention: deleted the 3 oldest closed streams", 1, 30000);
  for (i = 0; i < 5; i++) {
    ASSERT_EQ(segment_exists(d.archive_dir, names[i], ".log"), !old_one[i]);
    ASSERT_EQ(segment_exists(d.archive_dir, names[i], ".json"), !old_one[i]);
  }
  st = status(&loop, &d);
  ar = cJSON_GetObjectItemCaseSensitive(st, "archive");
  ASSERT_EQ(jnum(ar, "files"), 4);
  ASSERT_EQ(jnum(ar, "bytes"), (double)(sizes[2] + sizes[4]));
  ASSERT_EQ(counter(st, "archive_retention_files"), 6);
  ASSERT_EQ(counter(st, "archive_retention_bytes"), (double)old_bytes);
  cJSON_Delete(st);

  /* By size: one byte under what is left, so the older of the two (r/5) goes. */
  snprintf(extra, sizeof(extra), "\"archive_max_age\": 3000, \"archive_max_bytes\": %llu",
           (unsigned long long)(sizes[2] + sizes[4] - 1));
  restart_with(&d, config, extra);
  sb_it_daemon_wait_log(&d, "retention: deleted the 1 oldest closed streams", 1, 30000);
  ASSERT(!segment_exists(d.archive_dir, "r/5", ".log"));
  ASSERT(segment_exists(d.archive_dir, "r/3", ".log"));

  /* An open stream of 2000 bytes: over the limit with it, every closed stream goes
   * (r/3, then r/6 once it closes), it stays. */
  ASSERT_OK(sb_client_open(&c, d.address));
  memset(&o, 0, sizeof(o));
  o.name = "r/open";
  ASSERT_OK(sb_stream_open(c, &o, &s));
  ASSERT_OK(sb_stream_write(s, thousand, 1000));
  ASSERT_OK(sb_stream_write(s, thousand, 1000));
  {
    static const char* const open_names[] = {"r/open"};
    static const size_t open_sizes[] = {2000};
    sizes_t wait = {NULL, open_names, open_sizes, 1};
    wait.archive_dir = d.archive_dir;
    ASSERT(sb_it_run_until(&loop, 30000, all_written, &wait));
    /* The opening sidecar is written before any data. */
    ASSERT(segment_exists(d.archive_dir, "r/open", ".json"));
  }
  set_age(d.archive_dir, "r/open", 100000); /* old on disk, but open */
  sbcat_ok(&loop, &d, "r/6", NULL, NULL, thousand);
  sb_it_daemon_wait_log(&d, "\"r/6\" closed", 1, 30000);
  gone.archive_dir = d.archive_dir;
  gone.name = "r/6";
  if (!sb_it_run_until(&loop, 30000, segment_gone, &gone)) {
    sb_it_daemon_dump(&d);
    sb_test_fail(__FILE__, __LINE__, "r/6 was not deleted");
  }
  ASSERT(!segment_exists(d.archive_dir, "r/3", ".log"));
  ASSERT(segment_exists(d.archive_dir, "r/open", ".log"));
  ASSERT(segment_exists(d.archive_dir, "r/open", ".json"));
  ASSERT_OK(sb_stream_close(s));
  sb_client_close(c);
  sb_it_daemon_close(&d);
  free(config);
  free(thousand);
  ASSERT_OK(uv_loop_close(&loop));
}
