/*
 * streams.c - see streams.h.
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "streams.h"
#include "task.h"

/* ---- deterministic contents: line k of a stream depends on its name only ---- */

size_t sb_it_content_line(const char* name, uint64_t k, char* out, size_t size) {
  int n = snprintf(out, size, "%s line %llu %.*s\n", name, (unsigned long long)k,
                   (int)(k % 61),
                   "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
  return (size_t)n;
}

/* The first len bytes of a stream's content. */
void sb_it_content(const char* name, size_t len, sb__buf_t* out) {
  char line[256];
  uint64_t k = 0;
  out->len = 0;
  while (out->len < len) {
    size_t n = sb_it_content_line(name, k++, line, sizeof(line));
    sb__buf_append(out, line, n);
  }
  out->len = len;
  ASSERT_OK(out->err);
}

/* ---- reading back what the upstream archived ---- */

static int segment_cmp(const void* a, const void* b) {
  const sb_it_segment_t *x = a, *y = b;
  if (x->opened.sec != y->opened.sec)
    return x->opened.sec < y->opened.sec ? -1 : 1;
  if (x->opened.nsec != y->opened.nsec)
    return x->opened.nsec < y->opened.nsec ? -1 : 1;
  return strcmp(x->log_path, y->log_path);
}

int sb_it_segments(const char* archive_dir, const char* name, sb_it_segment_t** out) {
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
    orig = cJSON_IsString(v)
               ? v->valuestring
               : cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "name"));
    if (orig && strcmp(orig, name) == 0) {
      sb_it_segment_t* sg;
      if (n == cap) {
        cap = cap ? 2 * cap : 8;
        *out = realloc(*out, (size_t)cap * sizeof(**out));
        ASSERT_NOT_NULL(*out);
      }
      sg = &(*out)[n++];
      memset(sg, 0, sizeof(*sg));
      snprintf(sg->log_path, sizeof(sg->log_path), "%.*s.log",
               (int)(strlen(json_path) - 5), json_path);
      v = cJSON_GetObjectItemCaseSensitive(tags, "streambroker.offset");
      if (cJSON_IsString(v))
        sg->offset = strtoll(v->valuestring, NULL, 10);
      sg->dropped =
          cJSON_GetObjectItemCaseSensitive(tags, "streambroker.dropped") != NULL;
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
int sb_it_reassemble(const char* archive_dir, const char* name, sb__buf_t* out,
                     int allow_gap, int* has_dropped) {
  sb_it_segment_t* seg;
  int n = sb_it_segments(archive_dir, name, &seg), i;
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
int sb_it_settled(const char* archive_dir, const char* name, int need) {
  sb_it_segment_t* seg;
  int n = sb_it_segments(archive_dir, name, &seg);
  int closed = n > 0 ? seg[n - 1].closed : !need;
  free(seg);
  return closed;
}

int sb_it_all_settled(void* arg) {
  sb_it_settle_t* st = arg;
  int i;
  for (i = 0; i < st->n; i++)
    if (!sb_it_settled(st->archive_dir, st->names[i], st->need))
      return 0;
  return 1;
}

/* Waits (up to a minute) until U has closed every file of the streams named. */
void sb_it_wait_settled(uv_loop_t* loop, const char* archive_dir, char** names, int n,
                        int need) {
  sb_it_settle_t st = {archive_dir, names, n, need};
  int i;
  if (sb_it_run_until(loop, 60000, sb_it_all_settled, &st))
    return;
  for (i = 0; i < n; i++)
    if (!sb_it_settled(archive_dir, names[i], need))
      fprintf(stderr, "%s/%s: not (completely) archived\n", archive_dir, names[i]);
  ASSERT(0);
}

void sb_it_wait_settled1(uv_loop_t* loop, const char* archive_dir, const char* name) {
  char* names[1];
  names[0] = (char*)name;
  sb_it_wait_settled(loop, archive_dir, names, 1, 1);
}

/* ---- clients on a thread ---- */

int sb_it_writer_add(sb_it_writer_t* w, const char* name) {
  int i;
  uv_mutex_lock(&w->mutex);
  ASSERT(w->nnames < SB_IT_MAX_NAMES);
  i = w->nnames++;
  w->names[i] = malloc(strlen(name) + 1);
  ASSERT_NOT_NULL(w->names[i]);
  memcpy(w->names[i], name, strlen(name) + 1);
  uv_mutex_unlock(&w->mutex);
  return i;
}

void sb_it_writer_run(void* arg) {
  sb_it_writer_t* w = arg;
  int gen = 0;
  sb__buf_t batch = {0};
  while (!w->stop || gen == 0) {
    sb_client_t* client = NULL;
    sb_stream_t* streams[64];
    int idx[64], i, failed = 0, r;
    uint64_t kfast[64] = {0};
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
      snprintf(name, sizeof(name), "spool/%s%sg%d-s%d", w->prefix,
               w->prefix[0] ? "-" : "", gen, i);
      o.name = name;
      o.type = w->binary_every && i % w->binary_every == 0 ? SB_BINARY : SB_TEXT;
      if (sb_stream_open(client, &o, &streams[i]) != 0) {
        streams[i] = NULL;
        failed = 1;
        break;
      }
      idx[i] = sb_it_writer_add(w, name);
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
        size_t n = sb_it_content_line(w->names[idx[i]], k, line, sizeof(line));
        if (w->fast) {
          /* 64 KiB writes of whole lines, as a bulk producer writes; each stream
           * keeps its own line count. */
          batch.len = 0;
          while (batch.len + 256 < 65536) {
            n = sb_it_content_line(w->names[idx[i]], kfast[i]++, line, sizeof(line));
            sb__buf_append(&batch, line, n);
          }
          {
            uint64_t t0 = uv_hrtime(), dt;
            r = sb_stream_write(streams[i], batch.data, batch.len);
            dt = uv_hrtime() - t0;
            if (dt > w->max_write_ns)
              w->max_write_ns = dt;
          }
          if (r != 0)
            failed = 1;
          else
            w->written[idx[i]] += batch.len;
          continue;
        }
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
      if (w->fast)
        continue;
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
  sb__buf_free(&batch);
}

void sb_it_writer_start(sb_it_writer_t* w) {
  sb_it_thread_start(&w->thread, sb_it_writer_run, w);
}

int sb_it_writer_finished(void* arg) {
  return ((sb_it_writer_t*)arg)->thread.done;
}

void sb_it_writer_free(sb_it_writer_t* w) {
  int i;
  for (i = 0; i < w->nnames; i++)
    free(w->names[i]);
  uv_mutex_destroy(&w->mutex);
  free(w);
}

/* ---- the spool file, read while the broker is dead or alive ---- */

char* sb_it_spool_path(sb_it_daemon_t* d) {
  char* p = malloc(1024);
  snprintf(p, 1024, "%s/spool.db", d->dir);
  return p;
}

int64_t sb_it_spool_int(sb_it_daemon_t* d, const char* sql) {
  char* path = sb_it_spool_path(d);
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

int sb_it_spool_empty(void* arg) {
  return sb_it_spool_int(arg, "SELECT count(*) FROM streams") == 0;
}

/* The spool of the first test holds all its data: 12 streams of (i + 1) * 50000 bytes
 * (datagram streams a little more, with their framing). */
int sb_it_spool_has_all(void* arg) {
  return sb_it_spool_int(arg, "SELECT count(*) FROM streams") == 12 &&
         sb_it_spool_int(arg, "SELECT total(length(data)) FROM chunks") >= 3900000;
}

/* The spool has no stream left, and still none a moment later (a stream whose client
 * just closed may not have reached the spool yet when it is first looked at). */
int sb_it_spool_drained(void* arg) {
  if (!sb_it_spool_empty(arg))
    return 0;
  uv_sleep(300);
  return sb_it_spool_empty(arg);
}

/* Committed bytes per stream name, as the dead broker's spool says: its chunks' end
 * (or its cursor, when the window was trimmed). Raises committed[i] for names[i]. */
void sb_it_spool_committed(sb_it_daemon_t* d, sb_it_writer_t* w, size_t* committed) {
  char* path = sb_it_spool_path(d);
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

int sb_it_never(void* arg) {
  (void)arg;
  return 0;
}

void sb_it_pause_ms(uv_loop_t* loop, uint64_t ms) {
  sb_it_run_until(loop, ms, sb_it_never, NULL);
}

static void on_mute_connection(uv_stream_t* server, int status) {
  sb_it_mute_t* m = server->data;
  (void)status;
  m->connections++; /* never accepted, never read */
}

static void on_mute_closed(uv_handle_t* h) {
  ((sb_it_mute_t*)h->data)->closed = 1;
}

void sb_it_mute_start(uv_loop_t* loop, sb_it_mute_t* m, const char* bind_path,
                      int instances) {
  memset(m, 0, sizeof(*m));
  ASSERT_OK(uv_pipe_init(loop, &m->server, 0));
  m->server.data = m;
  uv_pipe_pending_instances(&m->server, instances);
  ASSERT_OK(uv_pipe_bind(&m->server, bind_path));
  ASSERT_OK(uv_listen((uv_stream_t*)&m->server, 128, on_mute_connection));
}

void sb_it_mute_close(uv_loop_t* loop, sb_it_mute_t* m) {
  uv_close((uv_handle_t*)&m->server, on_mute_closed);
  while (!m->closed)
    uv_run(loop, UV_RUN_ONCE);
}

int32_t sb_it_jitter(uint32_t* x, int lo, int hi) {
  *x = *x * 1103515245u + 12345u;
  return lo + (int32_t)((*x >> 8) % (uint32_t)(hi - lo + 1));
}

/* Starts U and stops it again (so its address is known but nobody serves it), then
 * B in front of it, with extra_json. */
void sb_it_start_upstream_down(uv_loop_t* loop, sb_it_daemon_t* up, const char* up_tag,
                               sb_it_daemon_t* b, const char* b_tag,
                               const char* extra_json) {
  sb_it_daemon_start(up, loop, up_tag, NULL, NULL);
  sb_it_daemon_kill(up, SIGKILL);
  sb_it_daemon_wait_exit(up, 30000);
  sb_it_daemon_start(b, loop, b_tag, up->address, extra_json);
}

/* Checks every stream the writer opened against U's archive; complete: each stream
 * must hold all the writer wrote (else a prefix of it, at least committed[i] long). */
void sb_it_check_streams(uv_loop_t* loop, sb_it_writer_t* w, const char* archive_dir,
                         const size_t* committed, int complete, int* reopened) {
  sb__buf_t want = {0}, got = {0};
  sb_it_settle_t st = {archive_dir, w->names, w->nnames, complete};
  int i;
  /* A killed U can leave a stream's last file unclosed for good (it had read
   * everything, so the broker was done with it, and died before closing the file):
   * the wait is bounded, and the bytes decide. */
  sb_it_run_until(loop, 10000, sb_it_all_settled, &st);
  for (i = 0; i < w->nnames; i++) {
    int segs = sb_it_reassemble(archive_dir, w->names[i], &got, 0, NULL);
    if (segs > 1)
      (*reopened)++;
    sb_it_content(w->names[i], got.len, &want);
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

/* Writes one stream of len bytes through the client library; returns the write's
 * result (a refused stream may fail). */
int sb_it_write_stream(const char* address, const char* name, size_t len) {
  sb__buf_t data = {0};
  sb_client_t* client;
  sb_stream_t* s;
  sb_stream_opts_t o;
  int r;
  memset(&o, 0, sizeof(o));
  o.name = name;
  sb_it_content(name, len, &data);
  ASSERT_OK(sb_client_open(&client, address));
  ASSERT_OK(sb_stream_open(client, &o, &s));
  r = sb_stream_write(s, data.data, data.len);
  sb_stream_close(s);
  sb_client_close(client);
  sb__buf_free(&data);
  return r;
}

/*
 * Waits until B has delivered the stream (its "closed" line) and U has closed its
 * file, then checks what arrived against the stream's content: all len bytes when
 * whole, else a prefix shorter than len (a stream the spool refused).
 */
void sb_it_expect_arrived(uv_loop_t* loop, sb_it_daemon_t* b, sb_it_daemon_t* up,
                          const char* name, size_t len, int whole) {
  sb__buf_t want = {0}, got = {0};
  const char* archive_dir = up->archive_dir;
  char needle[256];
  char* names[1];
  sb_it_settle_t st = {archive_dir, names, 1, 1};
  names[0] = (char*)name;
  snprintf(needle, sizeof(needle), "\"%s\" closed: ", name);
  sb_it_daemon_wait_log(b, needle, 1, 60000);
  if (!sb_it_run_until(loop, 60000, sb_it_all_settled, &st)) {
    sb_it_daemon_dump(up);
    sb_it_daemon_dump(b);
    sb_test_fail(__FILE__, __LINE__, "%s: not archived completely by the upstream",
                 name);
  }
  sb_it_reassemble(archive_dir, name, &got, 0, NULL);
  if (whole)
    ASSERT_EQ(got.len, len);
  else
    ASSERT(got.len < len);
  sb_it_content(name, got.len, &want);
  ASSERT(got.len == 0 || memcmp(got.data, want.data, got.len) == 0);
  sb__buf_free(&want);
  sb__buf_free(&got);
}

/* Asks the broker (sbctl --json streams) until none of its streams has a spool job out:
 * everything stored has also been handed back to the streams. */
void sb_it_wait_spool_idle(uv_loop_t* loop, sb_it_daemon_t* d) {
  int tries;
  for (tries = 0; tries < 200; tries++) {
    sb_it_result_t res;
    cJSON *doc, *streams, *st;
    int busy = 0;
    sb_it_run_tool(loop, "sbctl",
                   SB_IT_ARGS("--admin", d->admin_address, "--json", "streams"), NULL,
                   0, &res);
    doc = cJSON_ParseWithLength(res.out.data, res.out.len);
    streams = cJSON_GetObjectItemCaseSensitive(doc, "streams");
    cJSON_ArrayForEach(st, streams) {
      cJSON* jobs = cJSON_GetObjectItemCaseSensitive(st, "spool_jobs");
      if (cJSON_IsNumber(jobs) && jobs->valuedouble > 0)
        busy = 1;
    }
    cJSON_Delete(doc);
    sb_it_result_free(&res);
    if (!busy)
      return;
    sb_it_pause_ms(loop, 50);
  }
  ASSERT(!"the broker's spool jobs never finished");
}

cJSON* sb_it_admin(uv_loop_t* loop, sb_it_daemon_t* d, const char* command) {
  sb_it_result_t res;
  cJSON* doc;
  sb_it_run_tool(loop, "sbctl",
                 SB_IT_ARGS("--admin", d->admin_address, "--json", command), NULL, 0,
                 &res);
  doc = cJSON_ParseWithLength(res.out.data, res.out.len);
  if (doc == NULL) {
    sb_it_daemon_dump(d);
    sb_test_fail(__FILE__, __LINE__, "sbctl --json %s: exit %d: %s%s", command,
                 (int)res.exit_status, res.out.data, res.err.data);
  }
  sb_it_result_free(&res);
  return doc;
}

double sb_it_json_num(const cJSON* doc, const char* path) {
  char key[128];
  const char* dot;
  while ((dot = strchr(path, '.')) != NULL) {
    snprintf(key, sizeof(key), "%.*s", (int)(dot - path), path);
    doc = cJSON_GetObjectItemCaseSensitive(doc, key);
    path = dot + 1;
  }
  doc = cJSON_GetObjectItemCaseSensitive(doc, path);
  return cJSON_IsNumber(doc) ? doc->valuedouble : -1;
}

cJSON* sb_it_admin_until(uv_loop_t* loop, sb_it_daemon_t* d, const char* command,
                         const char* path, double min) {
  uint64_t deadline = uv_hrtime() + 30 * (uint64_t)1000000000;
  cJSON* doc;
  for (;;) {
    double got;
    doc = sb_it_admin(loop, d, command);
    got = sb_it_json_num(doc, path);
    if (got >= min)
      return doc;
    cJSON_Delete(doc);
    if (uv_hrtime() > deadline) {
      sb_it_daemon_dump(d);
      sb_test_fail(__FILE__, __LINE__, "%s: %s is %.0f, want at least %.0f", command,
                   path, got, min);
    }
    sb_it_pause_ms(loop, 50);
  }
}
