/*
 * test_follow.c - sbctl follow: what live streams write, printed as it arrives; and a
 * follower that does not read, which must never slow a producer and is told what it
 * missed.
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "helpers.h"
#include "internal.h"
#include "streams.h"
#include "task.h"

/* ---- sbctl follow as a child process, its output read as it comes ---- */

typedef struct {
  uv_process_t proc;
  uv_pipe_t out;
  sb__buf_t got;
  int exited, out_done;
} follower_t;

static void fo_out_closed(uv_handle_t* h) {
  ((follower_t*)h->data)->out_done = 1;
}

static void fo_read(uv_stream_t* st, ssize_t n, const uv_buf_t* buf) {
  follower_t* f = st->data;
  if (n > 0)
    sb__buf_append(&f->got, buf->base, (size_t)n);
  else if (n < 0)
    uv_close((uv_handle_t*)st, fo_out_closed);
}

static void fo_exit(uv_process_t* p, int64_t status, int sig) {
  (void)status;
  (void)sig;
  ((follower_t*)p->data)->exited = 1;
  uv_close((uv_handle_t*)p, NULL);
}

static void follower_start(follower_t* f, sb_it_daemon_t* d, const char* prefix) {
  char prog[4096];
  char* args[] = {prog, "--admin", d->admin_address, "follow", (char*)prefix, NULL};
  uv_process_options_t o;
  uv_stdio_container_t io[3];
  memset(f, 0, sizeof(*f));
  sb_it_program("sbctl", prog, sizeof(prog));
  ASSERT_OK(uv_pipe_init(d->loop, &f->out, 0));
  f->out.data = f;
  f->proc.data = f;
  memset(&o, 0, sizeof(o));
  io[0].flags = UV_IGNORE;
  io[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  io[1].data.stream = (uv_stream_t*)&f->out;
  io[2].flags = UV_INHERIT_FD;
  io[2].data.fd = 2;
  o.file = prog;
  o.args = args;
  o.stdio = io;
  o.stdio_count = 3;
  o.exit_cb = fo_exit;
  ASSERT_OK(uv_spawn(d->loop, &f->proc, &o));
  ASSERT_OK(uv_read_start((uv_stream_t*)&f->out, sb_it_alloc, fo_read));
}

struct fo_wait {
  follower_t* f;
  const char* needle;
};

static int fo_has(void* arg) {
  struct fo_wait* w = arg;
  return sb_it_contains(w->f->got.data, w->f->got.len, w->needle);
}

static void follower_wait(sb_it_daemon_t* d, follower_t* f, const char* needle) {
  struct fo_wait w = {f, needle};
  if (!sb_it_run_until(d->loop, 30000, fo_has, &w)) {
    sb_it_daemon_dump(d);
    sb_test_fail(__FILE__, __LINE__, "no \"%s\" in sbctl follow's output: \"%.*s\"",
                 needle, (int)f->got.len, f->got.data ? f->got.data : "");
  }
}

static int fo_done(void* arg) {
  follower_t* f = arg;
  return f->exited && f->out_done;
}

/*
 * sbctl follow fol/ on a live service: a text stream's lines, each with its name (a
 * line written in two pieces comes out whole), a binary stream as byte counts, a
 * datagram stream's datagrams one per line; a stream of another name is not shown.
 * Linux and Windows.
 */
TEST_IMPL(follow_live_stream) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  follower_t f;
  sb_client_t* c;
  sb_stream_t *text, *other, *bin, *dg;
  sb_stream_opts_t o;
  char zeros[1000];
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start(&d, &loop, "follow", NULL, NULL);
  follower_start(&f, &d, "fol/");
  sb_it_daemon_wait_log(&d, "a follower attached", 1, 30000);

  ASSERT_OK(sb_client_open(&c, d.address));
  memset(&o, 0, sizeof(o));
  o.name = "fol/text";
  ASSERT_OK(sb_stream_open(c, &o, &text));
  o.name = "other/text";
  ASSERT_OK(sb_stream_open(c, &o, &other));
  o.name = "fol/bin";
  o.type = SB_BINARY;
  ASSERT_OK(sb_stream_open(c, &o, &bin));
  o.name = "fol/dg";
  o.type = SB_DATAGRAM;
  ASSERT_OK(sb_stream_open(c, &o, &dg));

  ASSERT_OK(sb_stream_write(other, "not for this follower\n", 22));
  ASSERT_OK(sb_stream_write(text, "hello 1\nhel", 11));
  follower_wait(&d, &f, "fol/text: hello 1\n");
  ASSERT_OK(sb_stream_write(text, "lo 2\n", 5));
  follower_wait(&d, &f, "fol/text: hello 2\n");
  memset(zeros, 0, sizeof(zeros));
  ASSERT_OK(sb_stream_write(bin, zeros, sizeof(zeros)));
  follower_wait(&d, &f, "fol/bin: 1000 bytes (binary)\n");
  ASSERT_OK(sb_stream_send_datagram(dg, "one", 3));
  ASSERT_OK(sb_stream_send_datagram(dg, "two\n", 4));
  follower_wait(&d, &f, "fol/dg: one\n");
  follower_wait(&d, &f, "fol/dg: two\\x0a\n");
  /* A last line without its line feed is printed when its stream closes. */
  ASSERT_OK(sb_stream_write(text, "the end", 7));
  ASSERT_OK(sb_stream_close(text));
  follower_wait(&d, &f, "fol/text: the end\n");
  ASSERT_OK(sb_stream_close(other));
  ASSERT_OK(sb_stream_close(bin));
  ASSERT_OK(sb_stream_close(dg));
  sb_client_close(c);
  sb_it_daemon_wait_log(&d, "\"other/text\" closed", 1, 30000);
  ASSERT(!sb_it_contains(f.got.data, f.got.len, "not for this follower"));
  ASSERT(!sb_it_contains(f.got.data, f.got.len, "other/text"));

  /* sbctl leaving is seen; a service that stops ends sbctl. */
  ASSERT_OK(uv_process_kill(&f.proc, SIGTERM));
  ASSERT(sb_it_run_until(&loop, 30000, fo_done, &f));
  sb_it_daemon_wait_log(&d, "a follower of \"fol/*\" left", 1, 30000);
  sb__buf_free(&f.got);
  follower_start(&f, &d, "");
  sb_it_daemon_wait_log(&d, "a follower attached", 2, 30000);
  if (!sb_it_is_windows()) {
    sb_it_daemon_kill(&d, SIGTERM);
    sb_it_daemon_wait_exit(&d, 30000);
    ASSERT_EQ(d.exit_status, 0);
    ASSERT(sb_it_run_until(&loop, 30000, fo_done, &f));
  } else {
    ASSERT_OK(uv_process_kill(&f.proc, SIGTERM));
    ASSERT(sb_it_run_until(&loop, 30000, fo_done, &f));
  }
  sb__buf_free(&f.got);
  sb_it_daemon_close(&d);
  ASSERT_OK(uv_loop_close(&loop));
}

/* ---- a follower that does not read ---- */

#define SLOW_BYTES (8u * 1024u * 1024u)

typedef struct {
  uv_pipe_t pipe;
  uv_connect_t connect;
  uv_write_t write;
  sb__buf_t in;
  size_t need; /* payload bytes of the current event still to come */
  int in_head; /* reading a header line */
  uint64_t data_bytes, missed, events;
  int connected, closed;
} raw_follower_t;

static void raw_connected(uv_connect_t* req, int status) {
  raw_follower_t* r = req->data;
  static char request[] = "{\"command\":\"follow\",\"name\":\"slow/\"}\n";
  uv_buf_t buf = uv_buf_init(request, sizeof(request) - 1);
  ASSERT_OK(status);
  ASSERT_OK(uv_write(&r->write, (uv_stream_t*)&r->pipe, &buf, 1, NULL));
  r->connected = 1;
}

/* Counts the payload of text events, and what "missed" events say. */
static void raw_parse(raw_follower_t* r) {
  size_t pos = 0;
  for (;;) {
    if (r->need == 0) {
      const char* nl = memchr(r->in.data + pos, '\n', r->in.len - pos);
      cJSON* h;
      const cJSON* v;
      if (nl == NULL)
        break;
      h = cJSON_ParseWithLength(r->in.data + pos, (size_t)(nl - r->in.data) - pos);
      ASSERT_NOT_NULL(h);
      pos = (size_t)(nl - r->in.data) + 1;
      r->events++;
      if ((v = cJSON_GetObjectItemCaseSensitive(h, "missed")) != NULL)
        r->missed += (uint64_t)v->valuedouble;
      if ((v = cJSON_GetObjectItemCaseSensitive(h, "len")) != NULL) {
        r->need = (size_t)v->valuedouble;
        r->data_bytes += r->need;
      }
      cJSON_Delete(h);
      continue;
    }
    {
      size_t take = r->in.len - pos < r->need ? r->in.len - pos : r->need;
      if (take == 0)
        break;
      pos += take;
      r->need -= take;
    }
  }
  memmove(r->in.data, r->in.data + pos, r->in.len - pos);
  r->in.len -= pos;
}

static void raw_read(uv_stream_t* st, ssize_t n, const uv_buf_t* buf) {
  raw_follower_t* r = st->data;
  if (n > 0) {
    sb__buf_append(&r->in, buf->base, (size_t)n);
    raw_parse(r);
  }
}

static int raw_told_all(void* arg) {
  raw_follower_t* r = arg;
  return r->data_bytes + r->missed >= SLOW_BYTES && r->need == 0;
}

static int raw_is_connected(void* arg) {
  return ((raw_follower_t*)arg)->connected;
}

static void raw_closed(uv_handle_t* h) {
  ((raw_follower_t*)h->data)->closed = 1;
}

struct slow_writer {
  const char* address;
  int r;
};

static void slow_write(void* arg) {
  struct slow_writer* w = arg;
  w->r = sb_it_write_stream(w->address, "slow/x", SLOW_BYTES);
}

/*
 * A follower that reads nothing while a producer writes 8 MiB: the producer finishes
 * and every byte is archived before the follower reads a byte. Then it reads: what it
 * gets plus what it is told it missed is exactly the 8 MiB, and it missed some (its
 * queue is bounded). Linux and Windows.
 */
TEST_IMPL(follow_slow_follower) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  raw_follower_t r;
  struct slow_writer w;
  sb__buf_t got = {0};
  char path[1024];
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start(&d, &loop, "followslow", NULL, "\"log_level\": \"info\"");
  memset(&r, 0, sizeof(r));
  ASSERT_OK(sb__address_bind_path(d.admin_address, path, sizeof(path)));
  ASSERT_OK(uv_pipe_init(&loop, &r.pipe, 0));
  r.pipe.data = &r;
  r.connect.data = &r;
  uv_pipe_connect(&r.connect, &r.pipe, path, raw_connected);
  ASSERT(sb_it_run_until(&loop, 30000, raw_is_connected, &r));
  sb_it_daemon_wait_log(&d, "a follower attached", 1, 30000);

  w.address = d.address;
  w.r = -1;
  sb_it_run_thread(&loop, slow_write, &w);
  ASSERT_OK(w.r);
  sb_it_wait_settled1(&loop, d.archive_dir, "slow/x");
  ASSERT_EQ(sb_it_reassemble(d.archive_dir, "slow/x", &got, 0, NULL), 1);
  ASSERT_EQ(got.len, SLOW_BYTES);
  sb__buf_free(&got);

  ASSERT_OK(uv_read_start((uv_stream_t*)&r.pipe, sb_it_alloc, raw_read));
  if (!sb_it_run_until(&loop, 60000, raw_told_all, &r))
    sb_test_fail(__FILE__, __LINE__,
                 "the follower got %llu bytes and was told of %llu missed, of %u",
                 (unsigned long long)r.data_bytes, (unsigned long long)r.missed,
                 SLOW_BYTES);
  printf("follow_slow_follower: %llu bytes shown, %llu missed, %llu events\n",
         (unsigned long long)r.data_bytes, (unsigned long long)r.missed,
         (unsigned long long)r.events);
  ASSERT_EQ(r.data_bytes + r.missed, SLOW_BYTES);
  ASSERT_GT(r.missed, 0);
  uv_close((uv_handle_t*)&r.pipe, raw_closed);
  while (!r.closed)
    uv_run(&loop, UV_RUN_ONCE);
  sb__buf_free(&r.in);
  sb_it_daemon_wait_log(&d, "a follower of \"slow/*\" left", 1, 30000);
  sb_it_daemon_close(&d);
  ASSERT_OK(uv_loop_close(&loop));
}
