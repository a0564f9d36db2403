/* butler.c - the test upstream sb_butler, driven from tests (see butler.h). */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "butler.h"
#include "helpers.h"
#include "task.h"

/* Butlers still running, or directories not removed, when a test program exits (a
 * failed assertion exits at once): the processes are killed and the directories
 * named, so the failure can be looked into. */
#define SB_IT_MAX_BUTLERS 8
static sb_it_butler_t* live[SB_IT_MAX_BUTLERS];

static void at_exit(void) {
  int i;
  for (i = 0; i < SB_IT_MAX_BUTLERS; i++) {
    if (live[i] == NULL)
      continue;
    if (live[i]->running)
      uv_kill(live[i]->proc.pid, SIGKILL);
    fprintf(stderr, "sb_butler %s: its streams are kept in %s\n", live[i]->address,
            live[i]->dir);
  }
}

static void track(sb_it_butler_t* b, int on) {
  static int registered;
  int i;
  if (!registered) {
    atexit(at_exit);
    registered = 1;
  }
  for (i = 0; i < SB_IT_MAX_BUTLERS; i++) {
    if (on ? live[i] == NULL : live[i] == b) {
      live[i] = on ? b : NULL;
      return;
    }
  }
  ASSERT(!on);
}

static void on_out(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  sb_it_butler_t* b = s->data;
  if (n > 0) {
    sb__buf_append(&b->events, buf->base, (size_t)n);
    ASSERT_OK(b->events.err);
    if (getenv("SB_TEST_VERBOSE"))
      fwrite(buf->base, 1, (size_t)n, stderr);
  } else if (n < 0) {
    uv_read_stop(s);
    b->out_done = 1;
  }
}

static void on_exit_cb(uv_process_t* p, int64_t status, int sig) {
  sb_it_butler_t* b = p->data;
  b->exit_status = status;
  b->term_signal = sig;
  b->running = 0;
}

static void on_closed(uv_handle_t* h) {
  sb_it_butler_t* b = h->data;
  b->closed++;
}

static void spawn(sb_it_butler_t* b) {
  char prog[4096];
  const char* argv[6];
  uv_process_options_t opts;
  uv_stdio_container_t stdio[3];
  int r;
  sb_it_program("sb_butler", prog, sizeof(prog));
  argv[0] = prog;
  argv[1] = "--listen";
  argv[2] = b->address;
  argv[3] = "--out";
  argv[4] = b->dir;
  argv[5] = NULL;
  memset(&opts, 0, sizeof(opts));
  ASSERT_OK(uv_pipe_init(b->loop, &b->in, 0));
  ASSERT_OK(uv_pipe_init(b->loop, &b->out, 0));
  b->in.data = b->out.data = b;
  stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
  stdio[0].data.stream = (uv_stream_t*)&b->in;
  stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[1].data.stream = (uv_stream_t*)&b->out;
  /* Its complaints, if any, go straight into the test's output. */
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = 2;
  opts.file = prog;
  opts.args = (char**)argv;
  opts.stdio = stdio;
  opts.stdio_count = 3;
  opts.exit_cb = on_exit_cb;
  r = uv_spawn(b->loop, &b->proc, &opts);
  if (r != 0)
    sb_test_fail(__FILE__, __LINE__, "spawn %s: %s", prog, uv_strerror(r));
  b->proc.data = b;
  b->running = 1;
  b->out_done = 0;
  b->closed = 0;
  ASSERT_OK(uv_read_start((uv_stream_t*)&b->out, sb_it_alloc, on_out));
}

/* Closes the handles of a process that has exited. */
static void close_handles(sb_it_butler_t* b) {
  if (b->closed >= 3)
    return;
  b->closed = 0;
  uv_close((uv_handle_t*)&b->proc, on_closed);
  uv_close((uv_handle_t*)&b->in, on_closed);
  uv_close((uv_handle_t*)&b->out, on_closed);
  while (b->closed < 3)
    uv_run(b->loop, UV_RUN_ONCE);
}

void sb_it_butler_start(sb_it_butler_t* b, uv_loop_t* loop, const char* tag) {
  sb_it_platform_init();
  memset(b, 0, sizeof(*b));
  b->loop = loop;
  b->closed = 3;
  sb_it_tempdir(tag, b->dir, sizeof(b->dir));
  sb_it_address(tag, b->address, b->bind_path, sizeof(b->address));
  track(b, 1);
  spawn(b);
  sb_it_butler_wait(b, "ready", 1, 30000);
}

struct cmd {
  uv_write_t req;
  char text[1];
};

static void on_cmd_written(uv_write_t* w, int status) {
  (void)status; /* a butler killed meanwhile never reads it; that is the test's doing */
  free(w);
}

void sb_it_butler_command(sb_it_butler_t* b, const char* line) {
  size_t n = strlen(line);
  struct cmd* c = malloc(sizeof(*c) + n + 1);
  uv_buf_t buf;
  ASSERT(b->running);
  ASSERT_NOT_NULL(c);
  memcpy(c->text, line, n);
  c->text[n] = '\n';
  buf = uv_buf_init(c->text, (unsigned)n + 1);
  ASSERT_OK(uv_write(&c->req, (uv_stream_t*)&b->in, &buf, 1, on_cmd_written));
}

/* Calls fn on each complete line; stops when fn returns nonzero. */
static long each_line(const sb_it_butler_t* b, int (*fn)(const char*, size_t, void*),
                      void* arg) {
  size_t start = 0, i;
  long index = 0;
  for (i = 0; i < b->events.len; i++) {
    if (b->events.data[i] != '\n')
      continue;
    if (fn(b->events.data + start, i - start, arg))
      return index;
    index++;
    start = i + 1;
  }
  return -1;
}

struct match {
  const char* prefix;
  size_t nth;
  size_t seen;
  long last;
  long index;
};

static int match_line(const char* line, size_t len, void* arg) {
  struct match* m = arg;
  size_t n = strlen(m->prefix);
  m->index++;
  if (len >= n && memcmp(line, m->prefix, n) == 0) {
    m->seen++;
    m->last = m->index - 1;
    if (m->nth != 0 && m->seen == m->nth)
      return 1;
  }
  return 0;
}

size_t sb_it_butler_count(const sb_it_butler_t* b, const char* prefix) {
  struct match m = {prefix, 0, 0, -1, 0};
  each_line(b, match_line, &m);
  return m.seen;
}

long sb_it_butler_find(const sb_it_butler_t* b, const char* prefix, size_t nth) {
  struct match m = {prefix, nth, 0, -1, 0};
  long at = each_line(b, match_line, &m);
  return nth == 0 ? m.last : at;
}

struct wait {
  sb_it_butler_t* b;
  const char* prefix;
  size_t count;
};

static int has_events(void* arg) {
  struct wait* w = arg;
  return sb_it_butler_count(w->b, w->prefix) >= w->count || w->b->out_done;
}

void sb_it_butler_wait(sb_it_butler_t* b, const char* prefix, size_t count,
                       uint64_t ms) {
  struct wait w = {b, prefix, count};
  sb_it_run_until(b->loop, ms, has_events, &w);
  if (sb_it_butler_count(b, prefix) < count) {
    sb_it_butler_dump(b);
    sb_test_fail(__FILE__, __LINE__, "sb_butler (%s): %zu of %zu \"%s\" events %s",
                 b->address, sb_it_butler_count(b, prefix), count, prefix,
                 b->out_done ? "when its output ended" : "after the timeout");
  }
}

static int has_exited(void* arg) {
  sb_it_butler_t* b = arg;
  return !b->running && b->out_done;
}

static void wait_exit(sb_it_butler_t* b) {
  sb_it_run_until(b->loop, 30000, has_exited, b);
  if (b->running) {
    sb_it_butler_dump(b);
    sb_test_fail(__FILE__, __LINE__, "sb_butler (%s) did not exit within 30 s",
                 b->address);
  }
}

void sb_it_butler_kill(sb_it_butler_t* b) {
  if (b->running)
    ASSERT_OK(uv_process_kill(&b->proc, SIGKILL));
  wait_exit(b);
  close_handles(b);
}

void sb_it_butler_restart(sb_it_butler_t* b) {
  size_t ready = sb_it_butler_count(b, "ready");
  sb_it_butler_kill(b);
  spawn(b);
  sb_it_butler_wait(b, "ready", ready + 1, 30000);
}

void sb_it_butler_stop(sb_it_butler_t* b) {
  sb_it_butler_command(b, "quit");
  wait_exit(b);
  ASSERT_EQ(b->exit_status, 0);
  close_handles(b);
}

void sb_it_remove_tree(const char* dir) {
  uv_fs_t req;
  uv_dirent_t ent;
  char path[1100];
  ASSERT_GE(uv_fs_scandir(NULL, &req, dir, 0, NULL), 0);
  while (uv_fs_scandir_next(&req, &ent) != UV_EOF) {
    uv_fs_t rm;
    snprintf(path, sizeof(path), "%s/%s", dir, ent.name);
    if (ent.type == UV_DIRENT_DIR) {
      sb_it_remove_tree(path);
      continue;
    }
    if (uv_fs_unlink(NULL, &rm, path, NULL) != 0)
      sb_test_fail(__FILE__, __LINE__, "cannot remove %s", path);
    uv_fs_req_cleanup(&rm);
  }
  uv_fs_req_cleanup(&req);
  ASSERT_OK(uv_fs_rmdir(NULL, &req, dir, NULL));
  uv_fs_req_cleanup(&req);
}

void sb_it_remove_socket(const char* address) {
  uv_fs_t req;
  if (strncmp(address, "unix:", 5) != 0)
    return;
  uv_fs_unlink(NULL, &req, address + 5, NULL);
  uv_fs_req_cleanup(&req);
}

void sb_it_butler_close(sb_it_butler_t* b) {
  sb_it_butler_kill(b);
  sb_it_remove_tree(b->dir);
  /* A killed butler leaves its socket file. */
  sb_it_remove_socket(b->address);
  track(b, 0);
  sb__buf_free(&b->events);
}

void sb_it_butler_dump(const sb_it_butler_t* b) {
  fprintf(stderr, "---- sb_butler %s events (streams in %s) ----\n%.*s---- end ----\n",
          b->address, b->dir, (int)b->events.len, b->events.data ? b->events.data : "");
}

/* ---- reading back what it received ---- */

static char* dup_str(const char* s) {
  char* d = malloc(strlen(s) + 1);
  ASSERT_NOT_NULL(d);
  strcpy(d, s);
  return d;
}

static int by_name(const void* a, const void* b) {
  return strcmp(*(char* const*)a, *(char* const*)b);
}

/* Fills s from DIR/<k>.json (path) and DIR/<k>.data. */
static void read_stream(const char* dir, const char* json_name, sb_it_bstream_t* s) {
  char path[1100];
  size_t len, n = strlen(json_name) - 5;
  char* text;
  cJSON *doc, *tags, *t;
  snprintf(s->file, sizeof(s->file), "%s/%.*s", dir, (int)n, json_name);
  snprintf(path, sizeof(path), "%s.json", s->file);
  text = sb_it_read_file(path, &len);
  ASSERT_NOT_NULL(text);
  doc = cJSON_ParseWithLength(text, len);
  if (doc == NULL)
    sb_test_fail(__FILE__, __LINE__, "%s: not JSON: %s", path, text);
  s->name =
      dup_str(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "name")));
  s->type =
      dup_str(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "type")));
  s->timestamp =
      dup_str(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "timestamp")));
  s->ended = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "ended"));
  s->complete = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "complete"));
  tags = cJSON_GetObjectItemCaseSensitive(doc, "tags");
  s->tag_count = (size_t)cJSON_GetArraySize(tags);
  s->tags = calloc(s->tag_count + 1, sizeof(*s->tags));
  ASSERT_NOT_NULL(s->tags);
  n = 0;
  cJSON_ArrayForEach(t, tags) {
    ASSERT(cJSON_IsString(t));
    s->tags[n].key = dup_str(t->string);
    s->tags[n].value = dup_str(t->valuestring);
    n++;
  }
  cJSON_Delete(doc);
  free(text);
  s->original = dup_str(sb_it_bstream_tag(s, "streambroker.name")
                            ? sb_it_bstream_tag(s, "streambroker.name")
                            : s->name);
  if (sb_it_bstream_tag(s, "streambroker.offset")) {
    s->has_offset = 1;
    s->offset = strtoull(sb_it_bstream_tag(s, "streambroker.offset"), NULL, 10);
  }
  snprintf(path, sizeof(path), "%s.data", s->file);
  s->data = sb_it_read_file(path, &s->len);
  if (s->data == NULL) {
    /* Accepted by a butler killed before it created the file. */
    s->data = dup_str("");
    s->len = 0;
  }
}

void sb_it_butler_list(const sb_it_butler_t* b, sb_it_blist_t* out) {
  uv_fs_t req;
  uv_dirent_t ent;
  char** names = NULL;
  size_t n = 0, i;
  ASSERT_GE(uv_fs_scandir(NULL, &req, b->dir, 0, NULL), 0);
  while (uv_fs_scandir_next(&req, &ent) != UV_EOF) {
    size_t len = strlen(ent.name);
    if (len < 6 || strcmp(ent.name + len - 5, ".json") != 0)
      continue;
    names = realloc(names, (n + 1) * sizeof(*names));
    ASSERT_NOT_NULL(names);
    names[n++] = dup_str(ent.name);
  }
  uv_fs_req_cleanup(&req);
  /* Zero-padded "<start>-<n>": the names sort in acceptance order. */
  if (n > 0)
    qsort(names, n, sizeof(*names), by_name);
  out->n = n;
  out->s = calloc(n + 1, sizeof(*out->s));
  ASSERT_NOT_NULL(out->s);
  for (i = 0; i < n; i++) {
    read_stream(b->dir, names[i], &out->s[i]);
    free(names[i]);
  }
  free(names);
}

void sb_it_blist_free(sb_it_blist_t* l) {
  size_t i, j;
  for (i = 0; i < l->n; i++) {
    sb_it_bstream_t* s = &l->s[i];
    for (j = 0; j < s->tag_count; j++) {
      free(s->tags[j].key);
      free(s->tags[j].value);
    }
    free(s->tags);
    free(s->name);
    free(s->original);
    free(s->type);
    free(s->timestamp);
    free(s->data);
  }
  free(l->s);
  l->s = NULL;
  l->n = 0;
}

const char* sb_it_bstream_tag(const sb_it_bstream_t* s, const char* key) {
  size_t i;
  for (i = 0; i < s->tag_count; i++)
    if (strcmp(s->tags[i].key, key) == 0)
      return s->tags[i].value;
  return NULL;
}

/* ---- reassembly ---- */

static const sb_it_blist_t* sort_list;

static int by_offset(const void* a, const void* b) {
  const sb_it_bstream_t* x = &sort_list->s[*(const size_t*)a];
  const sb_it_bstream_t* y = &sort_list->s[*(const size_t*)b];
  if (x->offset != y->offset)
    return x->offset < y->offset ? -1 : 1;
  /* The same offset: acceptance order. */
  return *(const size_t*)a < *(const size_t*)b ? -1 : 1;
}

typedef struct {
  const char* p;
  size_t len;
} dgram_t;

/* Splits framed datagrams; a datagram cut short at the end of the segment (its
 * connection broke there) is left out: the next segment sends it again. */
static int split_datagrams(const sb_it_bstream_t* s, dgram_t** out, size_t* n) {
  size_t p = 0, cap = 0;
  *out = NULL;
  *n = 0;
  while (p < s->len) {
    sb__varint_t v;
    int r = 0;
    sb__varint_reset(&v);
    while (p < s->len && (r = sb__varint_feed(&v, (uint8_t)s->data[p++])) == 0) {
    }
    if (r < 0)
      return -1;
    if (r == 0 || v.value > s->len - p)
      break;
    if (*n == cap) {
      cap = cap ? cap * 2 : 256;
      *out = realloc(*out, cap * sizeof(**out));
      ASSERT_NOT_NULL(*out);
    }
    (*out)[*n].p = s->data + p;
    (*out)[(*n)++].len = (size_t)v.value;
    p += (size_t)v.value;
  }
  return 0;
}

int sb_it_butler_reassemble(const sb_it_blist_t* l, const char* original,
                            sb__buf_t* out, int* segments, char* why, size_t why_size) {
  size_t* idx = calloc(l->n + 1, sizeof(*idx));
  size_t n = 0, i, j;
  dgram_t* all = NULL;
  size_t nall = 0, capall = 0;
  const char* type = NULL;
  int r = -1;
  ASSERT_NOT_NULL(idx);
  out->len = 0;
  for (i = 0; i < l->n; i++)
    if (strcmp(l->s[i].original, original) == 0)
      idx[n++] = i;
  if (segments)
    *segments = (int)n;
  if (n == 0) {
    snprintf(why, why_size, "%s: no upstream stream of that name arrived", original);
    goto done;
  }
  sort_list = l;
  qsort(idx, n, sizeof(*idx), by_offset);
  for (i = 0; i < n; i++) {
    const sb_it_bstream_t* s = &l->s[idx[i]];
    if (type == NULL)
      type = s->type;
    if (strcmp(type, s->type) != 0) {
      snprintf(why, why_size, "%s: %s is %s, an earlier segment %s", original, s->file,
               s->type, type);
      goto done;
    }
    if (strcmp(type, "datagram") == 0) {
      dgram_t* d;
      size_t nd;
      if (split_datagrams(s, &d, &nd) != 0) {
        snprintf(why, why_size, "%s: %s: bad datagram framing", original, s->file);
        goto done;
      }
      if (s->offset > nall) {
        snprintf(why, why_size,
                 "%s: %s (%s) starts at datagram %llu, after the %zu known", original,
                 s->file, s->name, (unsigned long long)s->offset, nall);
        free(d);
        goto done;
      }
      for (j = 0; j < nd; j++) {
        size_t at = (size_t)s->offset + j;
        if (at < nall) {
          if (all[at].len != d[j].len || memcmp(all[at].p, d[j].p, d[j].len) != 0) {
            snprintf(why, why_size, "%s: %s (%s): datagram %zu differs from before",
                     original, s->file, s->name, at);
            free(d);
            goto done;
          }
          continue;
        }
        if (nall == capall) {
          capall = capall ? capall * 2 : 256;
          all = realloc(all, capall * sizeof(*all));
          ASSERT_NOT_NULL(all);
        }
        all[nall++] = d[j];
      }
      free(d);
      continue;
    }
    if (s->offset > out->len) {
      snprintf(why, why_size, "%s: %s (%s) starts at byte %llu, after the %zu known",
               original, s->file, s->name, (unsigned long long)s->offset, out->len);
      goto done;
    }
    {
      size_t overlap = out->len - (size_t)s->offset;
      if (overlap > s->len)
        overlap = s->len;
      if (overlap > 0 && memcmp(out->data + s->offset, s->data, overlap) != 0) {
        snprintf(why, why_size, "%s: %s (%s) differs from the bytes before it at %llu",
                 original, s->file, s->name, (unsigned long long)s->offset);
        goto done;
      }
      sb__buf_append(out, s->data + overlap, s->len - overlap);
    }
  }
  for (i = 0; i < nall; i++) {
    uint8_t hdr[SB_VARINT_MAX_LEN];
    sb__buf_append(out, hdr, sb__varint_encode(all[i].len, hdr));
    sb__buf_append(out, all[i].p, all[i].len);
  }
  ASSERT_OK(out->err);
  r = 0;
done:
  free(all);
  free(idx);
  return r;
}
