/*
 * test_broker.c - the real streambrokerd, in front of a second streambrokerd in
 * archive mode that plays the upstream. Clients are the client library (on a thread,
 * since its calls block), sbcat, and raw connections that send malformed bytes.
 */
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "internal.h"
#include "platform.h" /* the client's raw dialer, to send malformed bytes */
#include "task.h"

/* ---- deterministic stream contents ---- */

static uint32_t rnd(uint32_t* x) {
  *x = *x * 1103515245u + 12345u;
  return *x >> 8;
}

/* The bytes stream i of the given type carries on the wire after its handshake (for
 * datagram streams: the framing too, which the archive keeps). */
static void make_content(int type, int i, sb__buf_t* wire, sb__buf_t* datagrams,
                         size_t* ndgrams) {
  uint32_t x = (uint32_t)(i * 7919 + type);
  int j, n;
  char line[128];
  *ndgrams = 0;
  switch (type) {
  case SB_TEXT:
    n = i % 40 + 1;
    for (j = 0; j < n; j++) {
      int len = snprintf(line, sizeof(line), "stream %d line %d %s\n", i, j,
                         j % 3 ? "lorem ipsum" : "\xc3\xa9t\xc3\xa9\r");
      sb__buf_append(wire, line, (size_t)len);
    }
    break;
  case SB_BINARY:
    n = (int)(rnd(&x) % 300000) + 1;
    for (j = 0; j < n; j++)
      sb__buf_putc(wire, (char)rnd(&x));
    break;
  default:
    n = i % 20 + 1;
    for (j = 0; j < n; j++) {
      size_t len = j % 5 == 0 ? 0 : rnd(&x) % (j % 7 == 0 ? 70000 : 300);
      uint8_t hdr[SB_VARINT_MAX_LEN];
      size_t k;
      sb__buf_append(wire, hdr, sb__varint_encode(len, hdr));
      for (k = 0; k < len; k++) {
        char c = (char)rnd(&x);
        sb__buf_putc(wire, c);
        sb__buf_putc(datagrams, c);
      }
      (*ndgrams)++;
    }
  }
  ASSERT_OK(wire->err);
}

/* Writes stream content through the public API: datagrams one by one. */
static void send_content(sb_stream_t* s, int type, const sb__buf_t* wire) {
  if (type != SB_DATAGRAM) {
    /* In uneven pieces, so the broker sees arbitrary splits. */
    size_t off = 0, step = 1;
    while (off < wire->len) {
      size_t n = wire->len - off < step ? wire->len - off : step;
      ASSERT_OK(sb_stream_write(s, wire->data + off, n));
      off += n;
      step = step * 3 + 1;
    }
    return;
  }
  {
    sb__dgram_t d;
    sb__dgram_event_t ev;
    const uint8_t* p = (const uint8_t*)wire->data;
    size_t off = 0, start = 0;
    uint64_t size = 0;
    sb__dgram_init(&d, 0);
    for (;;) {
      int64_t r = sb__dgram_next(&d, p + off, wire->len - off, &ev);
      ASSERT_GE(r, 0);
      off += (size_t)r;
      if (ev.kind == SB__DGRAM_START) {
        size = ev.size;
        start = off;
      } else if (ev.kind == SB__DGRAM_END) {
        ASSERT_OK(sb_stream_send_datagram(s, p + start, (size_t)size));
      } else if (ev.kind == SB__DGRAM_NONE) {
        break;
      }
    }
  }
}

static const char* const type_names[] = {"text", "binary", "datagram"};

/* Checks the upstream's archive of stream i: data and sidecar. */
static void check_archived(const char* archive_dir, const char* name, int type, int i) {
  char path[1024];
  sb__buf_t wire = {0}, dg = {0};
  size_t n, len;
  char* got;
  snprintf(path, sizeof(path), "%s/%s.log", archive_dir, name);
  got = sb_it_read_file(path, &len);
  if (got == NULL)
    sb_test_fail(__FILE__, __LINE__, "stream %s: no archive file %s", name, path);
  make_content(type, i, &wire, &dg, &n);
  if (len != wire.len || memcmp(got, wire.data, len) != 0)
    sb_test_fail(__FILE__, __LINE__,
                 "stream %s: archived %zu bytes, sent %zu, or they "
                 "differ",
                 name, len, wire.len);
  free(got);
  snprintf(path, sizeof(path), "%s/%s.json", archive_dir, name);
  got = sb_it_read_file(path, &len);
  ASSERT_NOT_NULL(got);
  ASSERT(sb_it_contains(got, len, name));
  ASSERT(sb_it_contains(got, len, type_names[type]));
  free(got);
  sb__buf_free(&wire);
  sb__buf_free(&dg);
}

/* ---- clients on a thread ---- */

struct client_job {
  const char* address;
  int first, count;   /* streams first .. first+count-1 */
  int concurrent;     /* open this many at once before writing */
  const char* prefix; /* names are PREFIX/TYPE/I */
};

static void stream_name(char* out, size_t size, const char* prefix, int type, int i) {
  snprintf(out, size, "%s/%s/%d", prefix, type_names[type], i);
}

static void client_job_run(void* arg) {
  struct client_job* job = arg;
  sb_client_t* c;
  sb_stream_t** open = calloc((size_t)job->concurrent, sizeof(*open));
  int base, k;
  ASSERT_NOT_NULL(open);
  ASSERT_OK(sb_client_open(&c, job->address));
  sb_client_set_timeout(c, 30000);
  for (base = job->first; base < job->first + job->count; base += job->concurrent) {
    int n = job->first + job->count - base < job->concurrent
                ? job->first + job->count - base
                : job->concurrent;
    for (k = 0; k < n; k++) {
      int i = base + k, type = i % 3;
      char name[256];
      sb_stream_opts_t o;
      sb_tag_t tag = {"test.index", name};
      memset(&o, 0, sizeof(o));
      stream_name(name, sizeof(name), job->prefix, type, i);
      o.name = name;
      o.type = (sb_stream_type_t)type;
      o.tags = &tag;
      o.tag_count = 1;
      ASSERT_OK(sb_stream_open(c, &o, &open[k]));
    }
    for (k = 0; k < n; k++) {
      int i = base + k, type = i % 3;
      sb__buf_t wire = {0}, dg = {0};
      size_t nd;
      make_content(type, i, &wire, &dg, &nd);
      send_content(open[k], type, &wire);
      sb__buf_free(&wire);
      sb__buf_free(&dg);
    }
    for (k = 0; k < n; k++)
      ASSERT_OK(sb_stream_close(open[k]));
  }
  sb_client_close(c);
  free(open);
}

static void check_all(sb_it_daemon_t* up, const char* prefix, int count) {
  int i;
  for (i = 0; i < count; i++) {
    char name[256];
    stream_name(name, sizeof(name), prefix, i % 3, i);
    check_archived(up->archive_dir, name, i % 3, i);
  }
}

TEST_IMPL(broker_forwards_all_stream_types) {
  uv_loop_t loop;
  sb_it_daemon_t up, front;
  struct client_job job = {NULL, 0, 300, 50, "it"};
  sb_it_result_t res;
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start(&up, &loop, "up", NULL, NULL);
  sb_it_daemon_start(&front, &loop, "front", up.address, NULL);
  job.address = front.address;
  sb_it_run_thread(&loop, client_job_run, &job);
  /* And one datagram stream from sbcat. */
  sb_it_run_tool(&loop, "sbcat",
                 SB_IT_ARGS("--name", "it/sbcat/dgram", "--type", "datagram",
                            "--server", front.address),
                 "one\ntwo\n\nfour\n", 14, &res);
  ASSERT_EQ(res.exit_status, 0);
  sb_it_result_free(&res);

  sb_it_daemon_wait_log(&up, "\" closed: ", 301, 120000);
  sb_it_daemon_wait_log(&front, "\" closed: ", 301, 30000);
  check_all(&up, "it", 300);
  {
    char path[1024];
    size_t len;
    char* got;
    snprintf(path, sizeof(path), "%s/it/sbcat/dgram.log", up.archive_dir);
    got = sb_it_read_file(path, &len);
    ASSERT_NOT_NULL(got);
    ASSERT_MEM_EQ(got, len,
                  "\x03one\x03two\x00\x04"
                  "four",
                  14);
    free(got);
  }
  /* The front broker archived nothing itself: it had an upstream. */
  ASSERT(!sb_it_contains(front.log.data, front.log.len, "bad handshake"));
  sb_it_daemon_close(&front);
  sb_it_daemon_close(&up);
  ASSERT_OK(uv_loop_close(&loop));
}

/*
 * 1,500 streams open at once through a broker in front of another, both on the
 * default limits (the front broker is a single client of the upstream, which takes
 * 4,096 streams of one client): every stream arrives, none is refused or reopened,
 * and the logs stay at a few lines per stream.
 */
TEST_IMPL(broker_many_concurrent_clients) {
  uv_loop_t loop;
  sb_it_daemon_t up, front;
  struct client_job job = {NULL, 0, 1500, 1500, "many"};
  ASSERT_OK(uv_loop_init(&loop));
  sb__raise_fd_limit();
  sb_it_daemon_start(&up, &loop, "up", NULL, "\"log_level\": \"info\"");
  sb_it_daemon_start(&front, &loop, "front", up.address, "\"log_level\": \"info\"");
  job.address = front.address;
  sb_it_run_thread(&loop, client_job_run, &job);
  sb_it_daemon_wait_log(&up, "\" closed: ", 1500, 180000);
  sb_it_daemon_wait_log(&front, "\" closed: ", 1500, 60000);
  check_all(&up, "many", 1500);
  ASSERT_EQ(sb_it_count(front.log.data, front.log.len, "refused"), 0);
  ASSERT_EQ(sb_it_count(up.log.data, up.log.len, "refused"), 0);
  ASSERT_EQ(sb_it_count(front.log.data, front.log.len, "reopening"), 0);
  /* "opened" and "closed" for each stream, a few lines more at start and stop. */
  fprintf(stderr, "front log: %zu bytes, upstream log: %zu bytes for 1,500 streams\n",
          front.log.len, up.log.len);
  ASSERT_LE(front.log.len, 1500u * 400u);
  ASSERT_LE(up.log.len, 1500u * 400u);
  sb_it_daemon_close(&front);
  sb_it_daemon_close(&up);
  ASSERT_OK(uv_loop_close(&loop));
}

/* ---- bad input ---- */

struct raw_job {
  const char* address;
  const char* hex; /* bytes to send, then close */
  int keep_open;   /* send nothing more and leave the connection open */
  sb_os_handle_t handle;
};

static void raw_send(void* arg) {
  struct raw_job* job = arg;
  int kind;
  const char* path;
  size_t len;
  unsigned char* b = sb_test_unhex(job->hex, &len);
  ASSERT_OK(sb__address_parse(job->address, &kind, &path));
  ASSERT_OK(sb__dial(kind, path, 5000, 0, &job->handle));
  if (len > 0)
    ASSERT_OK(sb__handle_write(job->handle, b, len));
  if (!job->keep_open)
    sb__handle_close(job->handle);
  free(b);
}

/* Hex of magic + varint + json. */
static char* handshake_hex(const char* json) {
  sb__buf_t b = {0};
  uint8_t v[SB_VARINT_MAX_LEN];
  size_t n = sb__varint_encode(strlen(json), v), i;
  char* hex;
  sb__buf_append(&b, SB_MAGIC, SB_MAGIC_LEN);
  sb__buf_append(&b, v, n);
  sb__buf_append(&b, json, strlen(json));
  hex = malloc(b.len * 2 + 1);
  ASSERT_NOT_NULL(hex);
  for (i = 0; i < b.len; i++)
    snprintf(hex + 2 * i, 3, "%02x", (unsigned char)b.data[i]);
  sb__buf_free(&b);
  return hex;
}

TEST_IMPL(broker_bad_input_keeps_serving) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  struct client_job good = {NULL, 0, 30, 30, "good"};
  struct client_job more = {NULL, 30, 30, 30, "good"};
  static const struct {
    const char* hex;
    const char* log;
  } bad[] = {
      {"4e4f5420412048414e445348414b45204d41474943", "handshake magic number mismatch"},
      {"42544c52311e207b226e61", "connection ended inside a frame"},
      {"42544c52311e818040", "frame size exceeds maximum"},
      {"42544c52311e07696e76616c6964", "handshake is not valid JSON"},
      {"42544c52311effffffffffffffffff79", "varint overflows a 64-bit integer"},
      {"42544c52311e155b225468697320697320616e20617272617921225d",
       "handshake JSON is not an object"},
      /* Connect, then close at once: a probe, not a bad handshake (debug level). */
      {"", "closed without sending a byte"},
  };
  char* bad_name = handshake_hex("{\"name\":\"test;stream;name\"}");
  char* bad_type = handshake_hex("{\"name\":\"x\",\"type\":\"video\"}");
  char* dg = handshake_hex("{\"name\":\"vanish/dgram\",\"type\":\"datagram\"}");
  char* big = handshake_hex("{\"name\":\"big/dgram\",\"type\":\"datagram\"}");
  char vanish[512], toobig[512];
  struct raw_job job;
  size_t i;
  char* got;
  size_t len;
  char path[1024];

  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start(&d, &loop, "bad", NULL, "\"handshake_timeout_ms\": 500");
  good.address = more.address = d.address;
  sb_it_run_thread(&loop, client_job_run, &good);

  memset(&job, 0, sizeof(job));
  job.address = d.address;
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    size_t before = sb_it_count(d.log.data, d.log.len, bad[i].log);
    job.hex = bad[i].hex;
    sb_it_run_thread(&loop, raw_send, &job);
    sb_it_daemon_wait_log(&d, bad[i].log, before + 1, 30000);
  }
  job.hex = bad_name;
  sb_it_run_thread(&loop, raw_send, &job);
  sb_it_daemon_wait_log(&d, "invalid stream name", 1, 30000);
  job.hex = bad_type;
  sb_it_run_thread(&loop, raw_send, &job);
  sb_it_daemon_wait_log(&d, "invalid stream type", 1, 30000);

  /* A client that vanishes in the middle of a datagram: what it sent is kept. */
  snprintf(vanish, sizeof(vanish), "%s0261620568656c", dg);
  job.hex = vanish;
  sb_it_run_thread(&loop, raw_send, &job);
  sb_it_daemon_wait_log(&d, "client ended inside a datagram", 1, 30000);
  /* A datagram above the limit ends that stream after the last good datagram. */
  snprintf(toobig, sizeof(toobig), "%s016181808005", big);
  job.hex = toobig;
  sb_it_run_thread(&loop, raw_send, &job);
  sb_it_daemon_wait_log(&d, "datagram exceeds the maximum size", 1, 30000);

  /* A client that connects and says nothing is cut off at the deadline. */
  job.hex = "42544c52";
  job.keep_open = 1;
  sb_it_run_thread(&loop, raw_send, &job);
  sb_it_daemon_wait_log(&d, "no complete handshake within 500 ms (4 bytes received)", 1,
                        10000);
  sb__handle_close(job.handle);

  /* Still serving: more good streams, and every good stream complete. */
  sb_it_run_thread(&loop, client_job_run, &more);
  sb_it_daemon_wait_log(&d, "\" closed: ", 62, 60000);
  check_all(&d, "good", 60);
  snprintf(path, sizeof(path), "%s/vanish/dgram.log", d.archive_dir);
  got = sb_it_read_file(path, &len);
  ASSERT_NOT_NULL(got);
  ASSERT_MEM_EQ(got, len,
                "\x02"
                "ab\x05hel",
                7);
  free(got);
  snprintf(path, sizeof(path), "%s/big/dgram.log", d.archive_dir);
  got = sb_it_read_file(path, &len);
  ASSERT_NOT_NULL(got);
  ASSERT_MEM_EQ(got, len,
                "\x01"
                "a",
                2);
  free(got);
  ASSERT(d.running);
  sb_it_daemon_close(&d);
  free(bad_name);
  free(bad_type);
  free(dg);
  free(big);
  ASSERT_OK(uv_loop_close(&loop));
}

/* ---- lifecycle ---- */

TEST_IMPL(broker_refuses_second_instance) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  sb_it_result_t res;
  char prog[4096];
  const char* argv[] = {prog, "--config", NULL, NULL};
  struct client_job job = {NULL, 0, 3, 3, "after"};
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start(&d, &loop, "second", NULL, NULL);
  sb_it_program("streambrokerd", prog, sizeof(prog));
  argv[2] = d.config_path;
  sb_it_run(&loop, argv, NULL, "", 0, NULL, 0, &res);
  ASSERT_EQ(res.exit_status, 4);
  ASSERT(sb_it_contains(res.err.data, res.err.len, "cannot start"));
  sb_it_result_free(&res);
  /* The first one still serves; killed, it leaves a stale socket (POSIX) that a new
   * instance removes. */
  job.address = d.address;
  sb_it_run_thread(&loop, client_job_run, &job);
  sb_it_daemon_wait_log(&d, "\" closed: ", 3, 30000);
  sb_it_daemon_kill(&d, SIGKILL);
  sb_it_daemon_wait_exit(&d, 30000);
  sb_it_daemon_restart(&d);
  job.first = 3;
  sb_it_run_thread(&loop, client_job_run, &job);
  sb_it_daemon_wait_log(&d, "\" closed: ", 6, 30000);
  check_all(&d, "after", 6);
  sb_it_daemon_close(&d);
  ASSERT_OK(uv_loop_close(&loop));
}

struct slow_job {
  const char* address;
  sb_stream_t* streams[8];
  size_t sent[8];
};

static void open_and_write(void* arg) {
  struct slow_job* job = arg;
  sb_client_t* c;
  int k;
  ASSERT_OK(sb_client_open(&c, job->address));
  for (k = 0; k < 8; k++) {
    char name[64];
    sb_stream_opts_t o;
    sb__buf_t wire = {0}, dg = {0};
    size_t nd;
    memset(&o, 0, sizeof(o));
    snprintf(name, sizeof(name), "stop/%d", k);
    o.name = name;
    o.type = SB_BINARY;
    ASSERT_OK(sb_stream_open(c, &o, &job->streams[k]));
    make_content(SB_BINARY, k, &wire, &dg, &nd);
    ASSERT_OK(sb_stream_write(job->streams[k], wire.data, wire.len));
    job->sent[k] = wire.len;
    sb__buf_free(&wire);
    sb__buf_free(&dg);
  }
  sb_client_close(c);
}

TEST_IMPL(broker_graceful_stop) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  struct slow_job job;
  int k;
  if (sb_it_is_windows())
    TEST_SKIP("no SIGTERM on Windows: the service's STOP control does this there");
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start(&d, &loop, "stop", NULL, NULL);
  memset(&job, 0, sizeof(job));
  job.address = d.address;
  /* Streams stay open, with data written, when the service is told to stop. */
  sb_it_run_thread(&loop, open_and_write, &job);
  sb_it_daemon_wait_log(&d, "opened", 8, 30000);
  sb_it_daemon_kill(&d, SIGTERM);
  sb_it_daemon_wait_exit(&d, 30000);
  ASSERT_EQ(d.exit_status, 0);
  ASSERT(sb_it_contains(d.log.data, d.log.len, "stopped: 8 streams served"));
  /* Whatever it had read is archived and flushed, as a prefix of what was sent. */
  for (k = 0; k < 8; k++) {
    char path[1024], needle[128];
    sb__buf_t wire = {0}, dg = {0};
    size_t nd, len;
    char* got;
    snprintf(path, sizeof(path), "%s/stop/%d.log", d.archive_dir, k);
    got = sb_it_read_file(path, &len);
    ASSERT_NOT_NULL(got);
    make_content(SB_BINARY, k, &wire, &dg, &nd);
    ASSERT_LE(len, wire.len);
    ASSERT_MEM_EQ(got, len, wire.data, len);
    snprintf(needle, sizeof(needle), "\"stop/%d\" closed: %zu bytes", k, len);
    ASSERT(sb_it_contains(d.log.data, d.log.len, needle));
    free(got);
    sb__buf_free(&wire);
    sb__buf_free(&dg);
    sb_stream_close(job.streams[k]); /* the broker is gone: an error is fine */
  }
  sb_it_daemon_close(&d);
  ASSERT_OK(uv_loop_close(&loop));
}

TEST_IMPL(broker_config_errors) {
  uv_loop_t loop;
  char dir[512], path[600], prog[4096];
  const char* argv[] = {prog, "--check-config", path, NULL};
  static const struct {
    const char* text;
    int status;
    const char* message;
  } cases[] = {
      {"{}", 0, "valid"},
      {"{\n  \"max_streams\": 10,\n  \"bogus\": 1\n}", 3,
       ":3: key \"bogus\": unknown key"},
      {"{\n  \"max_streams\": \"ten\"\n}", 3, ":2: key \"max_streams\": must be"},
      {"{\n\n  \"max_streams\": 0\n}", 3,
       ":3: key \"max_streams\": must be an integer from 1"},
      {"{\n  \"handshake_timeout_ms\": 1.5\n}", 3, ":2: key \"handshake_timeout_ms\""},
      {"{\n  \"log_level\": \"loud\"\n}", 3, ":2: key \"log_level\""},
      {"{\n  \"upstream\": \"tcp4:1.2.3.4:5\"\n}", 3, ":2: key \"upstream\""},
      {"{\n  \"max_streams\": 1,\n  \"max_streams\": 2\n}", 3,
       ":3: key \"max_streams\": duplicate key"},
      {"{\n  \"max_streams\": 1,,\n}", 3, ":2: invalid JSON"},
      {"[1]", 3, ":1:"},
  };
  size_t i;
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_program("streambrokerd", prog, sizeof(prog));
  sb_it_tempdir("config", dir, sizeof(dir));
  snprintf(path, sizeof(path), "%s/streambroker.json", dir);
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    sb_it_result_t res;
    sb_it_write_file(path, cases[i].text, strlen(cases[i].text));
    sb_it_run(&loop, argv, NULL, "", 0, NULL, 0, &res);
    if (res.exit_status != cases[i].status ||
        (!sb_it_contains(res.err.data, res.err.len, cases[i].message) &&
         !sb_it_contains(res.out.data, res.out.len, cases[i].message)))
      sb_test_fail(
          __FILE__, __LINE__, "config %zu: exit %d, stderr \"%s\"; want %d, \"%s\"", i,
          (int)res.exit_status, res.err.data, cases[i].status, cases[i].message);
    sb_it_result_free(&res);
  }
  /* A missing file is an error too. */
  {
    sb_it_result_t res;
    snprintf(path, sizeof(path), "%s/absent.json", dir);
    sb_it_run(&loop, argv, NULL, "", 0, NULL, 0, &res);
    ASSERT_EQ(res.exit_status, 3);
    sb_it_result_free(&res);
  }
  ASSERT_OK(uv_loop_close(&loop));
}

/* allowed_groups: a client outside the listed groups is refused with a logged reason,
 * one inside is served. Runs sbcat as nobody:nogroup, so it needs root. */
TEST_IMPL(broker_allowed_groups) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  sb_it_result_t res;
  uv_passwd_t me;
  uv_fs_t req;
  char path[1024];
  char* got;
  size_t len;
  int i;
  static const struct {
    const char* groups;
    const char* name;
    int allowed;
  } cases[] = {{"root, adm", "groups/refused", 0},
               {"adm,nogroup", "groups/allowed", 1}};
  if (sb_it_is_windows())
    TEST_SKIP("allowed_groups is for Unix sockets; Windows uses the pipe's DACL");
  ASSERT_OK(uv_os_get_passwd(&me));
  i = (int)me.uid;
  uv_os_free_passwd(&me);
  if (i != 0)
    TEST_SKIP("running a client as another user needs root");
  ASSERT_OK(uv_loop_init(&loop));
  for (i = 0; i < 2; i++) {
    char extra[128];
    snprintf(extra, sizeof(extra), "\"allowed_groups\": \"%s\"", cases[i].groups);
    sb_it_daemon_start(&d, &loop, "groups", NULL, extra);
    /* Let anyone reach the socket: only allowed_groups decides now. */
    ASSERT_OK(uv_fs_chmod(NULL, &req, d.bind_path, 0666, NULL));
    uv_fs_req_cleanup(&req);
    sb_it_run_tool_as(&loop, "sbcat",
                      SB_IT_ARGS("--name", cases[i].name, "--server", d.address),
                      "as nobody\n", 10, &res, 65534, 65534);
    sb_it_result_free(&res);
    snprintf(path, sizeof(path), "%s/%s.log", d.archive_dir, cases[i].name);
    if (cases[i].allowed) {
      sb_it_daemon_wait_log(&d, "\" closed: ", 1, 30000);
      got = sb_it_read_file(path, &len);
      ASSERT_NOT_NULL(got);
      ASSERT_MEM_EQ(got, len, "as nobody\n", 10);
      free(got);
    } else {
      sb_it_daemon_wait_log(&d, "uid 65534 (gid 65534) is in none of allowed_groups", 1,
                            30000);
      ASSERT_NULL(sb_it_read_file(path, &len));
    }
    sb_it_daemon_close(&d);
  }
  ASSERT_OK(uv_loop_close(&loop));
}
