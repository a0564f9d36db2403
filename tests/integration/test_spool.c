/*
 * test_spool.c - the spool, with real processes: a broker (B) in front of an archive
 * broker playing the upstream (U), killed, restarted and starved of space while
 * clients write. What arrives is read back from U's archive: every stream's files
 * (NAME.log, NAME+1.log, ... in the order U opened them), each placed at its
 * streambroker.offset tag, overlaps checked byte for byte, gaps refused.
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>
#ifndef _WIN32
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>
#endif

#include "helpers.h"
#include "task.h"

/* ---- deterministic contents: line k of a stream depends on its name only ---- */

static size_t content_line(const char* name, uint64_t k, char* out, size_t size) {
  int n = snprintf(out, size, "%s line %llu %.*s\n", name, (unsigned long long)k,
                   (int)(k % 61),
                   "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
  return (size_t)n;
}

/* The first len bytes of a stream's content. */
static void content(const char* name, size_t len, sb__buf_t* out) {
  char line[256];
  uint64_t k = 0;
  out->len = 0;
  while (out->len < len) {
    size_t n = content_line(name, k++, line, sizeof(line));
    sb__buf_append(out, line, n);
  }
  out->len = len;
  ASSERT_OK(out->err);
}

/* ---- reading back what the upstream archived ---- */

/*
 * The segments U archived of one stream: every sidecar in the stream's directory whose
 * name is the stream's, or whose tag streambroker.name is (the broker sends a reopen,
 * or a second stream of a name, as NAME:N), in the order U opened them.
 */
typedef struct {
  char log_path[1024];
  int64_t offset;       /* its streambroker.offset tag, 0 when absent */
  int dropped;          /* it has the tag streambroker.dropped */
  int closed;           /* its sidecar has a close time */
  sb__time_t opened;
} segment_t;

static int segment_cmp(const void* a, const void* b) {
  const segment_t *x = a, *y = b;
  if (x->opened.sec != y->opened.sec)
    return x->opened.sec < y->opened.sec ? -1 : 1;
  if (x->opened.nsec != y->opened.nsec)
    return x->opened.nsec < y->opened.nsec ? -1 : 1;
  return strcmp(x->log_path, y->log_path);
}

static int segments(const char* archive_dir, const char* name, segment_t** out) {
  char dir[1024];
  const char* slash = strrchr(name, '/');
  uv_fs_t req;
  uv_dirent_t ent;
  int n = 0, cap = 0;
  *out = NULL;
  if (slash)
    snprintf(dir, sizeof(dir), "%s/%.*s", archive_dir, (int)(slash - name), name);
  else
    snprintf(dir, sizeof(dir), "%s", archive_dir);
  if (uv_fs_scandir(NULL, &req, dir, 0, NULL) < 0) {
    uv_fs_req_cleanup(&req);
    return 0;
  }
  while (uv_fs_scandir_next(&req, &ent) != UV_EOF) {
    size_t nl = strlen(ent.name), len;
    char json_path[1100];
    char* text;
    cJSON *doc, *tags, *v;
    const char* orig;
    if (nl < 6 || strcmp(ent.name + nl - 5, ".json") != 0)
      continue;
    snprintf(json_path, sizeof(json_path), "%s/%s", dir, ent.name);
    if ((text = sb_it_read_file(json_path, &len)) == NULL)
      continue;
    doc = cJSON_ParseWithLength(text, len);
    free(text);
    if (doc == NULL)
      continue;
    tags = cJSON_GetObjectItemCaseSensitive(doc, "tags");
    v = cJSON_GetObjectItemCaseSensitive(tags, "streambroker.name");
    orig = cJSON_IsString(v) ? v->valuestring
                             : cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "name"));
    if (orig && strcmp(orig, name) == 0) {
      segment_t* sg;
      if (n == cap) {
        cap = cap ? 2 * cap : 8;
        *out = realloc(*out, (size_t)cap * sizeof(**out));
        ASSERT_NOT_NULL(*out);
      }
      sg = &(*out)[n++];
      memset(sg, 0, sizeof(*sg));
      snprintf(sg->log_path, sizeof(sg->log_path), "%.*s.log", (int)(strlen(json_path) - 5),
               json_path);
      v = cJSON_GetObjectItemCaseSensitive(tags, "streambroker.offset");
      if (cJSON_IsString(v))
        sg->offset = strtoll(v->valuestring, NULL, 10);
      sg->dropped = cJSON_GetObjectItemCaseSensitive(tags, "streambroker.dropped") != NULL;
      sg->closed = cJSON_IsString(cJSON_GetObjectItemCaseSensitive(doc, "closed"));
      v = cJSON_GetObjectItemCaseSensitive(doc, "opened");
      if (cJSON_IsString(v))
        sb__time_parse(v->valuestring, strlen(v->valuestring), &sg->opened);
    }
    cJSON_Delete(doc);
  }
  uv_fs_req_cleanup(&req);
  if (n > 1)
    qsort(*out, (size_t)n, sizeof(**out), segment_cmp);
  return n;
}

/*
 * Reassembles a text or binary stream from U's archive: each segment at its offset
 * tag, in the order U opened them. A segment must start within what is known so far
 * (no gap) unless allow_gap, and bytes it repeats must be the same. Returns the number
 * of segments.
 */
static int reassemble(const char* archive_dir, const char* name, sb__buf_t* out,
                      int allow_gap, int* has_dropped) {
  segment_t* seg;
  int n = segments(archive_dir, name, &seg), i;
  out->len = 0;
  for (i = 0; i < n; i++) {
    size_t len, overlap;
    int64_t off = seg[i].offset;
    char* data = sb_it_read_file(seg[i].log_path, &len);
    if (data == NULL)
      continue;
    if (has_dropped && seg[i].dropped)
      *has_dropped = 1;
    if ((size_t)off > out->len) {
      if (!allow_gap) {
        fprintf(stderr, "%s: segment %s starts at %lld, after the %zu bytes known\n",
                name, seg[i].log_path, (long long)off, out->len);
        ASSERT(0);
      }
      /* Zeros stand for the gap; the caller checks what it expected there. */
      char* zeros = calloc(1, (size_t)off - out->len);
      ASSERT_NOT_NULL(zeros);
      sb__buf_append(out, zeros, (size_t)off - out->len);
      free(zeros);
    }
    overlap = out->len - (size_t)off;
    if (overlap > len)
      overlap = len;
    if (overlap > 0 && memcmp(out->data + off, data, overlap) != 0) {
      fprintf(stderr, "%s: segment %s differs from earlier bytes at offset %lld\n",
              name, seg[i].log_path, (long long)off);
      ASSERT(0);
    }
    sb__buf_append(out, data + overlap, len - overlap);
    free(data);
  }
  free(seg);
  return n;
}

/* Whether the last segment U archived of a stream is closed (its sidecar rewritten):
 * U closes a connection once it has stored it, but rewrites the sidecar after that.
 * (Earlier segments may never be closed: a killed U leaves them open.) */
static int settled(const char* archive_dir, const char* name, int need) {
  segment_t* seg;
  int n = segments(archive_dir, name, &seg);
  int closed = n > 0 ? seg[n - 1].closed : !need;
  free(seg);
  return closed;
}

typedef struct {
  const char* archive_dir;
  char** names;
  int n;
  int need; /* each stream must have arrived */
} settle_t;

static int all_settled(void* arg) {
  settle_t* st = arg;
  int i;
  for (i = 0; i < st->n; i++)
    if (!settled(st->archive_dir, st->names[i], st->need))
      return 0;
  return 1;
}

/* Waits (up to a minute) until U has closed every file of the streams named. */
static void wait_settled(uv_loop_t* loop, const char* archive_dir, char** names, int n,
                         int need) {
  settle_t st = {archive_dir, names, n, need};
  int i;
  if (sb_it_run_until(loop, 60000, all_settled, &st))
    return;
  for (i = 0; i < n; i++)
    if (!settled(archive_dir, names[i], need))
      fprintf(stderr, "%s/%s: not (completely) archived\n", archive_dir, names[i]);
  ASSERT(0);
}

static void wait_settled1(uv_loop_t* loop, const char* archive_dir, const char* name) {
  char* names[1];
  names[0] = (char*)name;
  wait_settled(loop, archive_dir, names, 1, 1);
}

/* ---- clients on a thread ---- */

#define MAX_NAMES 4096

typedef struct {
  char address[256];
  int nstreams;
  int binary_every; /* every Nth stream is binary (0: none) */
  size_t min_bytes; /* per stream, before stopping is allowed */
  volatile int stop;
  volatile int done;
  int reconnect; /* on a failed write, open new streams and go on */
  uv_mutex_t mutex;
  char* names[MAX_NAMES];
  size_t written[MAX_NAMES]; /* bytes whose write returned */
  int nnames;
  int generations;
} writer_t;

static int writer_add(writer_t* w, const char* name) {
  int i;
  uv_mutex_lock(&w->mutex);
  ASSERT(w->nnames < MAX_NAMES);
  i = w->nnames++;
  w->names[i] = malloc(strlen(name) + 1);
  ASSERT_NOT_NULL(w->names[i]);
  memcpy(w->names[i], name, strlen(name) + 1);
  uv_mutex_unlock(&w->mutex);
  return i;
}

static void writer_run(void* arg) {
  writer_t* w = arg;
  int gen = 0;
  while (!w->stop || gen == 0) {
    sb_client_t* client = NULL;
    sb_stream_t* streams[64];
    int idx[64], i, failed = 0, r;
    size_t rounds = 0;
    uint64_t k = 0;
    if (sb_client_open(&client, w->address) != 0) {
      uv_sleep(20);
      continue;
    }
    sb_client_set_timeout(client, 2000);
    for (i = 0; i < w->nstreams; i++) {
      char name[128];
      sb_stream_opts_t o;
      memset(&o, 0, sizeof(o));
      snprintf(name, sizeof(name), "spool/g%d-s%d", gen, i);
      o.name = name;
      o.type = w->binary_every && i % w->binary_every == 0 ? SB_BINARY : SB_TEXT;
      if (sb_stream_open(client, &o, &streams[i]) != 0) {
        streams[i] = NULL;
        failed = 1;
        break;
      }
      idx[i] = writer_add(w, name);
    }
    gen++;
    if (failed) {
      /* The broker is down: what was opened goes, and a new try follows. */
      while (i-- > 0) {
        sb_stream_close(streams[i]);
      }
      sb_client_close(client);
      uv_sleep(20);
      if (!w->reconnect)
        break;
      continue;
    }
    w->generations = gen;
    while (!failed) {
      for (i = 0; i < w->nstreams && !failed; i++) {
        char line[256];
        size_t n = content_line(w->names[idx[i]], k, line, sizeof(line));
        if ((r = sb_stream_write(streams[i], line, n)) != 0)
          failed = 1;
        else
          w->written[idx[i]] += n;
      }
      k++;
      rounds++;
      if (w->stop && w->written[idx[0]] >= w->min_bytes)
        break;
      /* Under Wine every write is a round trip to its server and a restart takes
       * seconds: a slower writer keeps the data, and the test, to a size Wine drains
       * in reasonable time. */
      if (sb_it_is_windows())
        uv_sleep(40);
      else if (rounds % 64 == 0)
        uv_sleep(1);
    }
    for (i = 0; i < w->nstreams; i++)
      sb_stream_close(streams[i]);
    sb_client_close(client);
    if (!failed || !w->reconnect)
      break;
  }
  w->done = 1;
}

static int writer_finished(void* arg) {
  return ((writer_t*)arg)->done;
}

static void writer_free(writer_t* w) {
  int i;
  for (i = 0; i < w->nnames; i++)
    free(w->names[i]);
  uv_mutex_destroy(&w->mutex);
  free(w);
}

/* ---- the spool file, read while the broker is dead or alive ---- */

static char* spool_path(sb_it_daemon_t* d) {
  char* p = malloc(1024);
  snprintf(p, 1024, "%s/spool.db", d->dir);
  return p;
}

static int64_t spool_int(sb_it_daemon_t* d, const char* sql) {
  char* path = spool_path(d);
  sqlite3* db = NULL;
  sqlite3_stmt* st = NULL;
  int64_t v = -1;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 2000);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
      v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  free(path);
  return v;
}

static int spool_empty(void* arg) {
  return spool_int(arg, "SELECT count(*) FROM streams") == 0;
}

/* The spool of the first test holds all its data: 12 streams of (i + 1) * 50000 bytes
 * (datagram streams a little more, with their framing). */
static int spool_has_all(void* arg) {
  return spool_int(arg, "SELECT count(*) FROM streams") == 12 &&
         spool_int(arg, "SELECT total(length(data)) FROM chunks") >= 3900000;
}

/* The spool has no stream left, and still none a moment later (a stream whose client
 * just closed may not have reached the spool yet when it is first looked at). */
static int spool_drained(void* arg) {
  if (!spool_empty(arg))
    return 0;
  uv_sleep(300);
  return spool_empty(arg);
}

/* Committed bytes per stream name, as the dead broker's spool says: its chunks' end
 * (or its cursor, when the window was trimmed). Raises committed[i] for names[i]. */
static void spool_committed(sb_it_daemon_t* d, writer_t* w, size_t* committed) {
  char* path = spool_path(d);
  sqlite3* db = NULL;
  sqlite3_stmt* st = NULL;
  ASSERT_EQ(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
  ASSERT_EQ(
      sqlite3_prepare_v2(db,
                         "SELECT s.name, max(s.acked, ifnull((SELECT max(end_off) "
                         "FROM chunks WHERE sid = s.id), 0)) FROM streams s",
                         -1, &st, NULL),
      SQLITE_OK);
  while (sqlite3_step(st) == SQLITE_ROW) {
    const char* name = (const char*)sqlite3_column_text(st, 0);
    size_t end = (size_t)sqlite3_column_int64(st, 1);
    int i;
    uv_mutex_lock(&w->mutex);
    for (i = 0; i < w->nnames; i++) {
      if (strcmp(w->names[i], name) == 0 && committed[i] < end)
        committed[i] = end;
    }
    uv_mutex_unlock(&w->mutex);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  free(path);
}

static int never(void* arg) {
  (void)arg;
  return 0;
}

static void pause_ms(uv_loop_t* loop, uint64_t ms) {
  sb_it_run_until(loop, ms, never, NULL);
}

static int32_t jitter(uint32_t* x, int lo, int hi) {
  *x = *x * 1103515245u + 12345u;
  return lo + (int32_t)((*x >> 8) % (uint32_t)(hi - lo + 1));
}

/* ---- tests ---- */

/* Starts U and stops it again (so its address is known but nobody serves it), then
 * B in front of it, with extra_json. */
static void start_upstream_down(uv_loop_t* loop, sb_it_daemon_t* up, const char* up_tag,
                                sb_it_daemon_t* b, const char* b_tag,
                                const char* extra_json) {
  sb_it_daemon_start(up, loop, up_tag, NULL, NULL);
  sb_it_daemon_kill(up, SIGKILL);
  sb_it_daemon_wait_exit(up, 30000);
  sb_it_daemon_start(b, loop, b_tag, up->address, extra_json);
}

/*
 * The upstream is down while clients write all three types of stream; the broker is
 * stopped (gracefully) and started again meanwhile; then the upstream comes up and
 * everything arrives, byte-identical, datagram framing included.
 */
TEST_IMPL(spool_upstream_down_then_up) {
  uv_loop_t loop;
  sb_it_daemon_t up, b;
  sb__buf_t want = {0}, got = {0};
  sb_client_t* client;
  int i, n = 12;
  uv_loop_init(&loop);
  start_upstream_down(&loop, &up, "spu", &b, "spb",
                      "\"backoff_initial_ms\": 20, \"backoff_max_ms\": 200");
  ASSERT_OK(sb_client_open(&client, b.address));
  for (i = 0; i < n; i++) {
    char name[64];
    sb_stream_opts_t o;
    sb_stream_t* s;
    memset(&o, 0, sizeof(o));
    snprintf(name, sizeof(name), "down/s%d", i);
    o.name = name;
    o.type = (sb_stream_type_t)(i % 3);
    ASSERT_OK(sb_stream_open(client, &o, &s));
    content(name, (size_t)(i + 1) * 50000, &want);
    if (o.type == SB_DATAGRAM) {
      size_t off;
      for (off = 0; off < want.len; off += 7000)
        ASSERT_OK(sb_stream_send_datagram(
            s, want.data + off, want.len - off < 7000 ? want.len - off : 7000));
    } else {
      ASSERT_OK(sb_stream_write(s, want.data, want.len));
    }
    ASSERT_OK(sb_stream_close(s));
  }
  sb_client_close(client);
  sb_it_daemon_wait_log(&b, "spooling, retrying", (size_t)n, 30000);
  /* Once the broker has read every stream to its end, a graceful stop keeps it all.
   * (Windows has no SIGTERM: the process is terminated there, once the spool holds
   * every stream; the service's STOP control is tested in test_winservice.c.) */
  sb_it_daemon_wait_log(&b, "client finished after", (size_t)n, 30000);
  if (sb_it_is_windows()) {
    ASSERT(sb_it_run_until(&loop, 30000, spool_has_all, &b));
    sb_it_daemon_kill(&b, SIGKILL);
    sb_it_daemon_wait_exit(&b, 30000);
  } else {
    sb_it_daemon_kill(&b, SIGTERM);
    sb_it_daemon_wait_exit(&b, 30000);
    ASSERT_EQ(b.exit_status, 0);
  }
  ASSERT_EQ(spool_int(&b, "SELECT count(*) FROM streams"), n);
  sb_it_daemon_restart(&b);
  sb_it_daemon_wait_log(&b, "resumed from the spool", (size_t)n, 30000);
  sb_it_daemon_restart(&up);
  ASSERT(sb_it_run_until(&loop, 60000, spool_empty, &b));
  for (i = 0; i < n; i++) {
    char name[64];
    snprintf(name, sizeof(name), "down/s%d", i);
    wait_settled1(&loop, up.archive_dir, name);
    content(name, (size_t)(i + 1) * 50000, &want);
    reassemble(up.archive_dir, name, &got, 0, NULL);
    if (i % 3 == SB_DATAGRAM) {
      /* The archive keeps the framing: take it off. */
      sb__buf_t body = {0};
      size_t p = 0;
      while (p < got.len) {
        uint64_t v = 0;
        unsigned shift = 0;
        while ((uint8_t)got.data[p] & 0x80) {
          v |= (uint64_t)((uint8_t)got.data[p++] & 0x7f) << shift;
          shift += 7;
        }
        v |= (uint64_t)(uint8_t)got.data[p++] << shift;
        ASSERT(p + v <= got.len);
        sb__buf_append(&body, got.data + p, v);
        p += v;
      }
      ASSERT_EQ(body.len, want.len);
      ASSERT(memcmp(body.data, want.data, want.len) == 0);
      sb__buf_free(&body);
    } else {
      ASSERT_EQ(got.len, want.len);
      ASSERT(memcmp(got.data, want.data, want.len) == 0);
    }
  }
  sb__buf_free(&want);
  sb__buf_free(&got);
  sb_it_daemon_close(&b);
  sb_it_daemon_close(&up);
  uv_loop_close(&loop);
}

/* Checks every stream the writer opened against U's archive; complete: each stream
 * must hold all the writer wrote (else a prefix of it, at least committed[i] long). */
static void check_streams(uv_loop_t* loop, writer_t* w, const char* archive_dir,
                          const size_t* committed, int complete, int* reopened) {
  sb__buf_t want = {0}, got = {0};
  settle_t st = {archive_dir, w->names, w->nnames, complete};
  int i;
  /* A killed U can leave a stream's last file unclosed for good (it had read
   * everything, so the broker was done with it, and died before closing the file):
   * the wait is bounded, and the bytes decide. */
  sb_it_run_until(loop, 10000, all_settled, &st);
  for (i = 0; i < w->nnames; i++) {
    int segs = reassemble(archive_dir, w->names[i], &got, 0, NULL);
    if (segs > 1)
      (*reopened)++;
    content(w->names[i], got.len, &want);
    if (got.len > 0 && memcmp(got.data, want.data, got.len) != 0) {
      fprintf(stderr, "%s: the %zu bytes that arrived are not what was written\n",
              w->names[i], got.len);
      ASSERT(0);
    }
    if (complete)
      ASSERT_EQ(got.len, w->written[i]);
    if (committed && got.len < committed[i]) {
      fprintf(stderr, "%s: %zu bytes arrived, but the spool had committed %zu\n",
              w->names[i], got.len, committed[i]);
      ASSERT(0);
    }
  }
  sb__buf_free(&want);
  sb__buf_free(&got);
}

static int fifty_closed(void* arg) {
  sb_it_daemon_t* d = arg;
  return sb_it_count(d->log.data, d->log.len, "closed: ") >= 50;
}

/*
 * 50 streams write while the upstream is killed (SIGKILL) and restarted again and
 * again: every stream arrives complete and in order once overlaps are removed by their
 * offset tags, and streams were reopened.
 */
TEST_IMPL(spool_upstream_killed_repeatedly) {
  uv_loop_t loop;
  sb_it_daemon_t up, b;
  writer_t* w = calloc(1, sizeof(*w));
  uv_thread_t thread;
  int kill, reopened = 0;
  uv_loop_init(&loop);
  uv_mutex_init(&w->mutex);
  /* U: a small write queue, so that what a killed U loses fits the replay window. */
  sb_it_daemon_start(&up, &loop, "spku", NULL,
                     "\"upstream_high_watermark\": 65536, \"log_level\": \"info\"");
  sb_it_daemon_start(&b, &loop, "spkb", up.address,
                     "\"backoff_initial_ms\": 20, \"backoff_max_ms\": 300, "
                     "\"log_level\": \"info\"");
  snprintf(w->address, sizeof(w->address), "%s", b.address);
  w->nstreams = 50;
  w->binary_every = 2;
  w->min_bytes = 20000;
  ASSERT_OK(uv_thread_create(&thread, writer_run, w));
  for (kill = 0; kill < 6; kill++) {
    pause_ms(&loop, 300);
    sb_it_daemon_kill(&up, SIGKILL);
    sb_it_daemon_wait_exit(&up, 30000);
    pause_ms(&loop, 150);
    sb_it_daemon_restart(&up);
  }
  w->stop = 1;
  ASSERT(sb_it_run_until(&loop, 120000, writer_finished, w));
  uv_thread_join(&thread);
  if (!sb_it_run_until(&loop, 240000, fifty_closed, &b)) {
    sb_it_daemon_dump(&up);
    sb_it_daemon_wait_log(&b, "closed: ", 50, 1);
  }
  check_streams(&loop, w, up.archive_dir, NULL, 1, &reopened);
  ASSERT_EQ(w->nnames, 50);
  ASSERT(reopened > 0);
  sb_it_daemon_wait_log(&b, "reopening it from the replay window", 1, 10);
  writer_free(w);
  sb_it_daemon_close(&b);
  sb_it_daemon_close(&up);
  uv_loop_close(&loop);
}

/* ---- a datagram stream through upstream kills ---- */

static size_t datagram(uint64_t k, char* out, size_t size) {
  return (size_t)snprintf(out, size, "datagram %llu %.*s", (unsigned long long)k,
                          (int)(k % 50),
                          "0123456789012345678901234567890123456789012345678");
}

typedef struct {
  char address[256];
  volatile int stop;
  volatile int done;
  volatile uint64_t sent;
  uint64_t kill_at;
  int err;
} dgram_writer_t;

static void dgram_writer_run(void* arg) {
  dgram_writer_t* w = arg;
  sb_client_t* client;
  sb_stream_t* s;
  sb_stream_opts_t o;
  char buf[128];
  memset(&o, 0, sizeof(o));
  o.name = "spool/datagrams";
  o.type = SB_DATAGRAM;
  w->err = sb_client_open(&client, w->address);
  if (w->err == 0 && (w->err = sb_stream_open(client, &o, &s)) == 0) {
    while (!w->stop || w->sent < 12000) {
      size_t n = datagram(w->sent, buf, sizeof(buf));
      if ((w->err = sb_stream_send_datagram(s, buf, n)) != 0)
        break;
      w->sent++;
      uv_sleep(w->sent % 16 == 0);
    }
    if (w->err == 0)
      w->err = sb_stream_close(s);
    sb_client_close(client);
  }
  w->done = 1;
}

static int dgram_writer_reached(void* arg) {
  dgram_writer_t* w = arg;
  return w->sent >= w->kill_at || w->done;
}

static int dgram_writer_finished(void* arg) {
  return ((dgram_writer_t*)arg)->done;
}

/*
 * A datagram stream while the upstream is killed and restarted: each reopened
 * connection starts on a datagram boundary, tagged with that datagram's index, and the
 * datagrams reassembled by index are all of them, in order, each intact.
 */
TEST_IMPL(spool_datagram_stream_reopened) {
  uv_loop_t loop;
  sb_it_daemon_t up, b;
  dgram_writer_t w;
  uv_thread_t thread;
  char** got = NULL;
  uint64_t ngot = 0, k;
  int i, kill, nseg, nsegments = 0, past_start = 0;
  segment_t* seg;
  uv_loop_init(&loop);
  memset(&w, 0, sizeof(w));
  sb_it_daemon_start(&up, &loop, "spgu", NULL,
                     "\"upstream_high_watermark\": 65536, \"log_level\": \"info\"");
  /* The smallest replay window, so that reopens start past datagram 0. */
  sb_it_daemon_start(&b, &loop, "spgb", up.address,
                     "\"backoff_initial_ms\": 20, \"backoff_max_ms\": 300, "
                     "\"log_level\": \"info\", \"replay_window\": 65536");
  snprintf(w.address, sizeof(w.address), "%s", b.address);
  ASSERT_OK(uv_thread_create(&thread, dgram_writer_run, &w));
  for (kill = 0; kill < 4; kill++) {
    /* Kills 2500 datagrams (some 90 KB) apart, so that later ones fall past the
     * window, whatever the writer's speed (Wine's is a tenth of Linux's). */
    w.kill_at = (uint64_t)(kill + 1) * 2500;
    ASSERT(sb_it_run_until(&loop, 60000, dgram_writer_reached, &w));
    sb_it_daemon_kill(&up, SIGKILL);
    sb_it_daemon_wait_exit(&up, 30000);
    sb_it_daemon_restart(&up);
  }
  w.stop = 1;
  ASSERT(sb_it_run_until(&loop, 120000, dgram_writer_finished, &w));
  uv_thread_join(&thread);
  ASSERT_OK(w.err);
  sb_it_daemon_wait_log(&b, "\"spool/datagrams\" closed: ", 1, 120000);
  wait_settled1(&loop, up.archive_dir, "spool/datagrams");
  got = calloc(w.sent, sizeof(char*));
  nseg = segments(up.archive_dir, "spool/datagrams", &seg);
  for (i = 0; i < nseg; i++) {
    size_t len, p = 0;
    char* data;
    uint64_t index;
    if ((data = sb_it_read_file(seg[i].log_path, &len)) == NULL)
      continue;
    nsegments++;
    index = (uint64_t)seg[i].offset;
    ASSERT_LE(index, ngot); /* no gap */
    if (index > 0)
      past_start++;
    /* Whole datagrams only: a killed U may have cut its file inside one. */
    while (p < len) {
      uint64_t v = 0;
      unsigned shift = 0;
      size_t q = p;
      while (q < len && ((uint8_t)data[q] & 0x80)) {
        v |= (uint64_t)((uint8_t)data[q++] & 0x7f) << shift;
        shift += 7;
      }
      if (q >= len)
        break;
      v |= (uint64_t)(uint8_t)data[q++] << shift;
      if (q + v > len)
        break;
      ASSERT(index < w.sent);
      if (index < ngot) {
        ASSERT_EQ(strlen(got[index]), v); /* a repeat: the same datagram */
        ASSERT(memcmp(got[index], data + q, v) == 0);
      } else {
        got[index] = calloc(1, v + 1);
        memcpy(got[index], data + q, v);
        ngot = index + 1;
      }
      index++;
      p = q + v;
    }
    free(data);
  }
  ASSERT_EQ(ngot, w.sent);
  for (k = 0; k < ngot; k++) {
    char want[128];
    size_t n = datagram(k, want, sizeof(want));
    ASSERT_EQ(strlen(got[k]), n);
    ASSERT(memcmp(got[k], want, n) == 0);
    free(got[k]);
  }
  free(got);
  free(seg);
  ASSERT(nsegments > 1);
  ASSERT(past_start > 0);
  sb_it_daemon_close(&b);
  sb_it_daemon_close(&up);
  uv_loop_close(&loop);
}

/*
 * The broker itself is killed (SIGKILL) at random moments, 20 times and more, while
 * clients write (opening new streams whenever theirs broke) and the upstream is killed
 * too now and then. After each kill the dead broker's spool tells what it had
 * committed; in the end every stream that arrived is a prefix of what was written,
 * without gaps or differing overlaps, and at least as long as what was committed.
 */
static void broker_kill_loop(const char* durability) {
  uv_loop_t loop;
  sb_it_daemon_t up, b;
  writer_t* w = calloc(1, sizeof(*w));
  size_t* committed = calloc(MAX_NAMES, sizeof(size_t));
  uv_thread_t thread;
  char extra[256];
  uint32_t x = (uint32_t)uv_hrtime();
  int kill, reopened = 0, kills = 22;
  uv_loop_init(&loop);
  uv_mutex_init(&w->mutex);
  sb_it_daemon_start(&up, &loop, "spbu", NULL,
                     "\"upstream_high_watermark\": 65536, \"log_level\": \"info\"");
  snprintf(
      extra, sizeof(extra),
      "\"backoff_initial_ms\": 20, \"backoff_max_ms\": 200, \"log_level\": \"info\", "
      "\"durability\": \"%s\"",
      durability);
  sb_it_daemon_start(&b, &loop, "spbb", up.address, extra);
  snprintf(w->address, sizeof(w->address), "%s", b.address);
  w->nstreams = 5;
  w->binary_every = 0;
  w->reconnect = 1;
  ASSERT_OK(uv_thread_create(&thread, writer_run, w));
  for (kill = 0; kill < kills; kill++) {
    pause_ms(&loop, (uint64_t)jitter(&x, 50, 400));
    sb_it_daemon_kill(&b, SIGKILL);
    sb_it_daemon_wait_exit(&b, 30000);
    spool_committed(&b, w, committed);
    if (kill % 4 == 3) {
      sb_it_daemon_kill(&up, SIGKILL);
      sb_it_daemon_wait_exit(&up, 30000);
      sb_it_daemon_restart(&up);
    }
    sb_it_daemon_restart(&b);
  }
  w->stop = 1;
  ASSERT(sb_it_run_until(&loop, 120000, writer_finished, w));
  uv_thread_join(&thread);
  ASSERT(sb_it_run_until(&loop, 240000, spool_drained, &b));
  ASSERT(w->generations >= kills / 2);
  check_streams(&loop, w, up.archive_dir, committed, 0, &reopened);
  fprintf(stderr, "%d kills, %d streams, %d of them reopened\n", kills, w->nnames,
          reopened);
  writer_free(w);
  free(committed);
  sb_it_daemon_close(&b);
  sb_it_daemon_close(&up);
  uv_loop_close(&loop);
}

TEST_IMPL(spool_broker_killed_in_loop) {
  broker_kill_loop("spool");
}

TEST_IMPL(spool_broker_killed_in_loop_always) {
  broker_kill_loop("always");
}

/* Writes one stream of len bytes through the client library; returns the write's
 * result (a refused stream may fail). */
static int write_stream(const char* address, const char* name, size_t len) {
  sb__buf_t data = {0};
  sb_client_t* client;
  sb_stream_t* s;
  sb_stream_opts_t o;
  int r;
  memset(&o, 0, sizeof(o));
  o.name = name;
  content(name, len, &data);
  ASSERT_OK(sb_client_open(&client, address));
  ASSERT_OK(sb_stream_open(client, &o, &s));
  r = sb_stream_write(s, data.data, data.len);
  sb_stream_close(s);
  sb_client_close(client);
  sb__buf_free(&data);
  return r;
}

/*
 * The upstream appears while a stream waits in a long backoff (30 s): the broker
 * notices (POSIX: the socket's directory; Windows: WaitNamedPipeW) and drains at once,
 * well before its next retry would.
 */
TEST_IMPL(spool_drains_when_upstream_appears) {
  uv_loop_t loop;
  sb_it_daemon_t up, b;
  uv_loop_init(&loop);
  start_upstream_down(&loop, &up, "spau", &b, "spab",
                      "\"backoff_initial_ms\": 30000, \"backoff_max_ms\": 30000");
  write_stream(b.address, "appear/a", 10000);
  sb_it_daemon_wait_log(&b, "spooling, retrying", 1, 10000);
  sb_it_daemon_restart(&up);
  sb_it_daemon_wait_log(&b, "appeared: 1 streams dial now", 1, 10000);
  /* The first retry is at least 15 s after the failed dial. */
  sb_it_daemon_wait_log(&b, "\"appear/a\" closed: 10000 bytes", 1, 12000);
  ASSERT(!sb_it_contains(b.log.data, b.log.len, "retry 1 in"));
  sb_it_daemon_close(&b);
  sb_it_daemon_close(&up);
  uv_loop_close(&loop);
}

/*
 * Waits until B has delivered the stream (its "closed" line) and U has closed its
 * file, then checks what arrived against the stream's content: all len bytes when
 * whole, else a prefix shorter than len (a stream the spool refused).
 */
static void expect_arrived(uv_loop_t* loop, sb_it_daemon_t* b, sb_it_daemon_t* up,
                           const char* name, size_t len, int whole) {
  sb__buf_t want = {0}, got = {0};
  const char* archive_dir = up->archive_dir;
  char needle[256];
  char* names[1];
  settle_t st = {archive_dir, names, 1, 1};
  names[0] = (char*)name;
  snprintf(needle, sizeof(needle), "\"%s\" closed: ", name);
  sb_it_daemon_wait_log(b, needle, 1, 60000);
  if (!sb_it_run_until(loop, 60000, all_settled, &st)) {
    sb_it_daemon_dump(up);
    sb_it_daemon_dump(b);
    sb_test_fail(__FILE__, __LINE__, "%s: not archived completely by the upstream",
                 name);
  }
  reassemble(archive_dir, name, &got, 0, NULL);
  if (whole)
    ASSERT_EQ(got.len, len);
  else
    ASSERT(got.len < len);
  content(name, got.len, &want);
  ASSERT(got.len == 0 || memcmp(got.data, want.data, got.len) == 0);
  sb__buf_free(&want);
  sb__buf_free(&got);
}

/*
 * The cap with "refuse" (265,536 bytes: 200,000 of chunks and the WAL's 65,536): with
 * the upstream down, a stream that fits is kept; the one
 * that does not is closed with a logged reason, and what it had stored before is
 * kept. When the upstream is back the spool drains, and new streams work again.
 */
TEST_IMPL(spool_cap_refuse_and_recover) {
  uv_loop_t loop;
  sb_it_daemon_t up, b;
  uv_loop_init(&loop);
  start_upstream_down(&loop, &up, "spcu", &b, "spcb",
                      "\"spool_max_bytes\": 265536, \"backoff_initial_ms\": 20, "
                      "\"backoff_max_ms\": 200");
  write_stream(b.address, "cap/fits", 150000);
  sb_it_daemon_wait_log(&b, "\"cap/fits\" opened", 1, 10000);
  pause_ms(&loop, 300);
  write_stream(b.address, "cap/refused", 300000);
  sb_it_daemon_wait_log(&b, "the spool refused its data", 1, 30000);
  sb_it_daemon_restart(&up);
  expect_arrived(&loop, &b, &up, "cap/fits", 150000, 1);
  /* The refused stream: a prefix, shorter than what was written. */
  expect_arrived(&loop, &b, &up, "cap/refused", 300000, 0);
  /* Counted for the stream, and said when it closed. */
  ASSERT(sb_it_contains(b.log.data, b.log.len,
                        "refused and 0 dropped by the spool (full)"));
  /* Room again: a new stream goes through whole. */
  ASSERT_OK(write_stream(b.address, "cap/after", 150000));
  expect_arrived(&loop, &b, &up, "cap/after", 150000, 1);
  sb_it_daemon_close(&b);
  sb_it_daemon_close(&up);
  uv_loop_close(&loop);
}

/*
 * The cap with "drop-oldest": the oldest chunks make room for new ones; the stream
 * that lost them arrives with a gap, reopened at the first byte kept with the tags
 * streambroker.offset and streambroker.dropped; the newer stream arrives whole.
 */
TEST_IMPL(spool_cap_drop_oldest) {
  uv_loop_t loop;
  sb_it_daemon_t up, b;
  sb__buf_t want = {0}, got = {0};
  int dropped = 0;
  uv_loop_init(&loop);
  start_upstream_down(
      &loop, &up, "spdu", &b, "spdb",
      "\"spool_max_bytes\": 265536, \"spool_full_policy\": \"drop-oldest\", "
      "\"backoff_initial_ms\": 20, \"backoff_max_ms\": 200");
  write_stream(b.address, "drop/old", 150000);
  sb_it_daemon_wait_log(&b, "\"drop/old\": client finished", 1, 10000);
  ASSERT_OK(write_stream(b.address, "drop/new", 150000));
  sb_it_daemon_wait_log(&b, "\"drop/new\": client finished", 1, 10000);
  sb_it_daemon_restart(&up);
  expect_arrived(&loop, &b, &up, "drop/new", 150000, 1);
  sb_it_daemon_wait_log(&b, "\"drop/old\" closed: ", 1, 60000);
  wait_settled1(&loop, up.archive_dir, "drop/old");
  ASSERT(reassemble(up.archive_dir, "drop/old", &got, 1, &dropped) >= 2);
  ASSERT(dropped);
  ASSERT_EQ(got.len, 150000);
  content("drop/old", 150000, &want);
  /* What arrived after the gap is the end of the stream, intact. */
  ASSERT(memcmp(got.data + 150000 - 10000, want.data + 150000 - 10000, 10000) == 0);
  sb_it_daemon_wait_log(&b, "were dropped from the spool", 1, 10);
  sb_it_daemon_wait_log(&b, "refused and 1", 1, 10); /* "... and 1xxxxx dropped" */
  sb__buf_free(&want);
  sb__buf_free(&got);
  sb_it_daemon_close(&b);
  sb_it_daemon_close(&up);
  uv_loop_close(&loop);
}

/* Starts a broker, stops it, replaces its spool.db with bytes, and starts it again:
 * it must move the file aside, say so, and serve. */
static void bad_spool(const char* tag, const void* bytes, size_t len, int sqlite_made,
                      const char* why) {
  uv_loop_t loop;
  sb_it_daemon_t up, b;
  char* path;
  uv_loop_init(&loop);
  sb_it_daemon_start(&up, &loop, "sbsu", NULL, NULL);
  sb_it_daemon_start(&b, &loop, tag, up.address, NULL);
  sb_it_daemon_kill(&b, SIGTERM);
  sb_it_daemon_wait_exit(&b, 30000);
  path = spool_path(&b);
  {
    /* Windows has no SIGTERM (the broker was terminated): its WAL is still there. */
    char aux[1100];
    snprintf(aux, sizeof(aux), "%s-wal", path);
    remove(aux);
    snprintf(aux, sizeof(aux), "%s-shm", path);
    remove(aux);
  }
  ASSERT_OK(remove(path));
  if (sqlite_made) {
    sqlite3* db;
    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, (const char*)bytes, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
  } else {
    sb_it_write_file(path, bytes, len);
  }
  sb_it_daemon_restart(&b);
  sb_it_daemon_wait_log(&b, "moved aside as", 1, 10000);
  sb_it_daemon_wait_log(&b, why, 1, 10);
  ASSERT_OK(write_stream(b.address, "bad/after", 10000));
  expect_arrived(&loop, &b, &up, "bad/after", 10000, 1);
  free(path);
  sb_it_daemon_close(&b);
  sb_it_daemon_close(&up);
  uv_loop_close(&loop);
}

TEST_IMPL(spool_corrupt_database_moved_aside) {
  char junk[8192];
  size_t i;
  memcpy(junk, "SQLite format 3", 16);
  for (i = 16; i < sizeof(junk); i++)
    junk[i] = (char)(i * 131 + 7);
  bad_spool("sbcb", junk, sizeof(junk), 0, "not a usable database");
}

TEST_IMPL(spool_old_schema_moved_aside) {
  bad_spool("sbob",
            "PRAGMA application_id=1396855632; PRAGMA user_version=0;"
            "CREATE TABLE chunks(stream TEXT, data BLOB);"
            "INSERT INTO chunks VALUES ('old', x'00');",
            0, 1, "schema version 0");
}

/*
 * A full disk: the broker's directory is a small tmpfs (Linux, as root), nearly
 * filled. A stream that does not fit is refused (closed, logged); what it had stored
 * is kept and delivered; once space returns, a new stream goes through whole.
 */
TEST_IMPL(spool_disk_full) {
#ifdef _WIN32
  TEST_SKIP("needs a small file system: Linux tmpfs, as root");
#else
  uv_loop_t loop;
  sb_it_daemon_t up, b;
  char filler[1100];
  char* config;
  size_t config_len, chunk = 65536, left;
  FILE* f;
  char* zeros;
  if (geteuid() != 0)
    TEST_SKIP("mounting a tmpfs needs root");
  uv_loop_init(&loop);
  start_upstream_down(&loop, &up, "spfu", &b, "spfb",
                      "\"backoff_initial_ms\": 20, \"backoff_max_ms\": 200");
  sb_it_daemon_kill(&b, SIGTERM);
  sb_it_daemon_wait_exit(&b, 30000);
  config = sb_it_read_file(b.config_path, &config_len);
  ASSERT_NOT_NULL(config);
  remove(b.config_path);
  {
    char path[1024];
    snprintf(path, sizeof(path), "%s/spool.db", b.dir);
    remove(path);
  }
  if (mount("sbtmp", b.dir, "tmpfs", 0, "size=8m,mode=0700") != 0) {
    free(config);
    sb_it_daemon_close(&b);
    sb_it_daemon_close(&up);
    TEST_SKIP("cannot mount a tmpfs here");
  }
  sb_it_write_file(b.config_path, config, config_len);
  free(config);
  sb_it_daemon_restart(&b);
  /* Leave 1 MiB free: less than the stream about to be written. */
  {
    struct statvfs fs;
    ASSERT_OK(statvfs(b.dir, &fs));
    left = (size_t)fs.f_bavail * fs.f_frsize;
    ASSERT(left > 2 * 1024 * 1024);
    left -= 1024 * 1024;
  }
  snprintf(filler, sizeof(filler), "%s/filler", b.dir);
  f = fopen(filler, "wb");
  ASSERT_NOT_NULL(f);
  zeros = calloc(1, chunk);
  for (; left >= chunk; left -= chunk)
    ASSERT_EQ(fwrite(zeros, 1, chunk, f), chunk);
  ASSERT_OK(fclose(f));
  free(zeros);
  write_stream(b.address, "full/a", 2000000);
  sb_it_daemon_wait_log(&b, "the spool refused its data", 1, 30000);
  sb_it_daemon_wait_log(&b, "disk full", 1, 10);
  /* Space returns; the upstream too. */
  remove(filler);
  sb_it_daemon_restart(&up);
  expect_arrived(&loop, &b, &up, "full/a", 2000000, 0);
  ASSERT_OK(write_stream(b.address, "full/b", 1000000));
  expect_arrived(&loop, &b, &up, "full/b", 1000000, 1);
  sb_it_daemon_kill(&b, SIGTERM);
  sb_it_daemon_wait_exit(&b, 30000);
  umount(b.dir);
  sb_it_daemon_close(&b);
  sb_it_daemon_close(&up);
  uv_loop_close(&loop);
#endif
}
