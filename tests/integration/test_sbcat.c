/*
 * test_sbcat.c - sbcat and the client library against a plain recording server: the
 * raw bytes on the wire are checked against the protocol, byte by byte.
 */
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "task.h"

typedef struct {
  uv_loop_t loop;
  sb_it_recorder_t rec;
  char address[256];
  char bind_path[256];
  char sbcat[4096];
} fixture_t;

static void fixture_start(fixture_t* f, const char* tag) {
  memset(f, 0, sizeof(*f));
  ASSERT_OK(uv_loop_init(&f->loop));
  sb_it_address(tag, f->address, f->bind_path, sizeof(f->address));
  ASSERT_OK(sb_it_recorder_start(&f->rec, &f->loop, f->bind_path, 128, 1));
  sb_it_program("sbcat", f->sbcat, sizeof(f->sbcat));
}

static void fixture_stop(fixture_t* f) {
  sb_it_recorder_close(&f->rec);
  ASSERT_OK(uv_loop_close(&f->loop));
}

/*
 * Checks one recorded connection: the magic, a minimal varint giving the JSON's exact
 * length, JSON that decodes and re-encodes to the very same bytes (so field order,
 * omissions and escaping are the Go client's), and then the payload. Returns the
 * decoded properties.
 */
static void check_wire(const sb__buf_t* wire, const void* payload, size_t payload_len,
                       sb__props_t* props) {
  const uint8_t* b = (const uint8_t*)wire->data;
  sb__varint_t v;
  size_t i = SB_MAGIC_LEN, json_len;
  uint8_t minimal[SB_VARINT_MAX_LEN];
  sb__buf_t again = {0};
  int r = 0;
  ASSERT_GE(wire->len, SB_MAGIC_LEN + 1);
  ASSERT_MEM_EQ(b, SB_MAGIC_LEN, "BTLR1\x1e", 6);
  sb__varint_reset(&v);
  while (i < wire->len && (r = sb__varint_feed(&v, b[i++])) == 0) {
  }
  ASSERT_EQ(r, 1);
  json_len = (size_t)v.value;
  ASSERT_MEM_EQ(b + SB_MAGIC_LEN, i - SB_MAGIC_LEN, minimal,
                sb__varint_encode(json_len, minimal));
  ASSERT_LE(i + json_len, wire->len);
  ASSERT_OK(sb__props_decode_json((const char*)b + i, json_len, props));
  ASSERT_OK(sb__props_encode_json(props, &again));
  ASSERT_MEM_EQ(again.data, again.len, b + i, json_len);
  sb__buf_free(&again);
  ASSERT_MEM_EQ(b + i + json_len, wire->len - i - json_len, payload, payload_len);
}

TEST_IMPL(sbcat_text_stream_wire_bytes) {
  fixture_t f;
  sb_it_result_t res;
  sb__props_t p;
  static const char input[] = "hello world!!\nsecond line\r\nno newline at end";
  const char* argv[] = {NULL,    "--name",  "app/stdout",   "--tag", "host=a<b>&c",
                        "--tag", "zz=last", "--tag",        "aa=first", "--server",
                        NULL,    NULL};
  sb__time_t before = sb__time_now();
  fixture_start(&f, "text");
  argv[0] = f.sbcat;
  argv[10] = f.address;
  sb_it_run(&f.loop, argv, NULL, input, strlen(input), &f.rec, 1, &res);
  ASSERT_EQ(res.exit_status, 0);
  ASSERT_EQ(res.err.len, 0);
  ASSERT_EQ(f.rec.nconns, 1);
  check_wire(&f.rec.conns[0].data, input, strlen(input), &p);
  ASSERT_STR_EQ(p.name, "app/stdout");
  ASSERT_EQ(p.type, SB_TEXT);
  ASSERT_STR_EQ(p.content_type, "text/plain; charset=utf-8");
  ASSERT_EQ(p.tag_count, 3);
  ASSERT_STR_EQ(p.tags[0].key, "aa");
  ASSERT_STR_EQ(sb__props_get_tag(&p, "host"), "a<b>&c");
  /* The Go client always sends the stream's creation time. */
  ASSERT_EQ(p.has_timestamp, 1);
  ASSERT_GE(p.timestamp.sec, before.sec);
  ASSERT_LE(p.timestamp.sec, sb__time_now().sec);
  /* And the JSON is exactly the Go order: type left out for text. */
  ASSERT(sb_it_contains(f.rec.conns[0].data.data, f.rec.conns[0].data.len,
                        "{\"name\":\"app/stdout\",\"contentType\":\"text/plain; "
                        "charset=utf-8\",\"timestamp\":\""));
  ASSERT(sb_it_contains(f.rec.conns[0].data.data, f.rec.conns[0].data.len,
                        "\"tags\":{\"aa\":\"first\",\"host\":\"a\\u003cb\\u003e\\u0026c\","
                        "\"zz\":\"last\"}}"));
  sb__props_free(&p);
  sb_it_result_free(&res);
  fixture_stop(&f);
}

TEST_IMPL(sbcat_datagram_stream_wire_bytes) {
  fixture_t f;
  sb_it_result_t res;
  sb__props_t p;
  /* Lines: "a", "", "bcd" (CRLF), "last" (no newline). */
  static const char input[] = "a\n\nbcd\r\nlast";
  static const uint8_t want[] = {1, 'a', 0, 3, 'b', 'c', 'd', 4, 'l', 'a', 's', 't'};
  const char* argv[] = {NULL, "--name", "build.proto", "--type", "datagram",
                        "--content-type", "application/x-proto", "--server", NULL, NULL};
  fixture_start(&f, "dgram");
  argv[0] = f.sbcat;
  argv[8] = f.address;
  sb_it_run(&f.loop, argv, NULL, input, strlen(input), &f.rec, 1, &res);
  ASSERT_EQ(res.exit_status, 0);
  ASSERT_EQ(f.rec.nconns, 1);
  check_wire(&f.rec.conns[0].data, want, sizeof(want), &p);
  ASSERT_EQ(p.type, SB_DATAGRAM);
  ASSERT_STR_EQ(p.content_type, "application/x-proto");
  ASSERT(sb_it_contains(f.rec.conns[0].data.data, f.rec.conns[0].data.len,
                        "\"contentType\":\"application/x-proto\",\"type\":\"datagram\","));
  sb__props_free(&p);
  sb_it_result_free(&res);
  fixture_stop(&f);
}

TEST_IMPL(sbcat_binary_stream_all_bytes) {
  fixture_t f;
  sb_it_result_t res;
  sb__props_t p;
  size_t len = 3 * 1024 * 1024 + 17, i;
  uint8_t* input = malloc(len);
  const char* argv[] = {NULL, "--name", "blob", "--type", "binary", "--server", NULL, NULL};
  uint32_t x = 12345;
  ASSERT_NOT_NULL(input);
  for (i = 0; i < len; i++) {
    x = x * 1103515245u + 12345u;
    input[i] = (uint8_t)(i < 256 ? i : x >> 16); /* every byte value, then noise */
  }
  fixture_start(&f, "bin");
  argv[0] = f.sbcat;
  argv[6] = f.address;
  sb_it_run(&f.loop, argv, NULL, input, len, &f.rec, 1, &res);
  ASSERT_EQ(res.exit_status, 0);
  check_wire(&f.rec.conns[0].data, input, len, &p);
  ASSERT_EQ(p.type, SB_BINARY);
  ASSERT_STR_EQ(p.content_type, "application/octet-stream");
  sb__props_free(&p);
  sb_it_result_free(&res);
  fixture_stop(&f);
  free(input);
}

TEST_IMPL(sbcat_address_and_namespace_from_env) {
  fixture_t f;
  sb_it_result_t res;
  sb__props_t p;
  char env_addr[300];
  const char* env[] = {env_addr, "LOGDOG_NAMESPACE=steps/0/u/", NULL};
  const char* argv[] = {NULL, "--name", "stdout", NULL};
  fixture_start(&f, "env");
  argv[0] = f.sbcat;
  snprintf(env_addr, sizeof(env_addr), "LOGDOG_STREAM_SERVER_PATH=%s", f.address);
  sb_it_run(&f.loop, argv, env, "x", 1, &f.rec, 1, &res);
  ASSERT_EQ(res.exit_status, 0);
  check_wire(&f.rec.conns[0].data, "x", 1, &p);
  ASSERT_STR_EQ(p.name, "steps/0/u/stdout");
  sb__props_free(&p);
  sb_it_result_free(&res);
  fixture_stop(&f);
}

/* Runs sbcat with argv (argv[0] filled in) and checks exit status and message. */
static void expect_failure(fixture_t* f, const char** argv, const char* const* env,
                           int status, const char* message) {
  sb_it_result_t res;
  argv[0] = f->sbcat;
  sb_it_run(&f->loop, argv, env, "data\n", 5, NULL, 0, &res);
  if (res.exit_status != status || !sb_it_contains(res.err.data, res.err.len, message))
    sb_test_fail(__FILE__, __LINE__, "sbcat %s: exit %d, stderr \"%s\"; want %d and \"%s\"",
                 argv[1], (int)res.exit_status, res.err.data, status, message);
  sb_it_result_free(&res);
}

TEST_IMPL(sbcat_errors) {
  fixture_t f;
  char absent[256], absent_bind[256];
  const char* no_server[] = {NULL, "--name", "x", "--server", absent, NULL};
  const char* bad_name[] = {NULL, "--name", "test;stream;name", "--server", NULL, NULL};
  const char* bad_tag[] = {NULL, "--name", "x", "--tag", "bad+@!tag=v", NULL};
  const char* no_eq[] = {NULL, "--name", "x", "--tag", "novalue", NULL};
  const char* no_name[] = {NULL, "--type", "text", NULL};
  const char* bad_type[] = {NULL, "--name", "x", "--type", "video", NULL};
  const char* bad_addr[] = {NULL, "--name", "x", "--server", "tcp4:127.0.0.1:5", NULL};
  const char* no_env[] = {NULL, "--name", "x", NULL};
  char default_env[300], want[400];
  const char* env_default[] = {default_env, NULL};
  fixture_start(&f, "errors");
  sb_it_address("absent", absent, absent_bind, sizeof(absent));
  snprintf(default_env, sizeof(default_env), "%s=%s", SB_ENV_DEFAULT_SERVER, absent);
  snprintf(want, sizeof(want), "at %s: no stream server at that address", absent);
  bad_name[4] = f.address;
  expect_failure(&f, no_server, NULL, 1, "no stream server at that address");
  expect_failure(&f, bad_name, NULL, 2, "invalid stream name");
  expect_failure(&f, bad_tag, NULL, 2, "invalid tag \"bad+@!tag\"");
  expect_failure(&f, no_eq, NULL, 2, "--tag takes KEY=VALUE");
  expect_failure(&f, no_name, NULL, 2, "--name is required");
  expect_failure(&f, bad_type, NULL, 2, "--type must be text, binary or datagram");
  expect_failure(&f, bad_addr, NULL, 2, "invalid stream server address");
  /* No address and no variable: the default address, named when nothing is there. */
  expect_failure(&f, no_env, env_default, 1, want);
  /* None of them reached the server with anything. */
  uv_run(&f.loop, UV_RUN_NOWAIT);
  ASSERT_EQ(f.rec.nconns, 0);
  fixture_stop(&f);
}

/*
 * No --server and no LOGDOG_STREAM_SERVER_PATH: sbcat and sbrun reach the service on
 * the default control pipe (overridden to this test's service through
 * STREAMBROKER_DEFAULT_SERVER), and sbrun hands that address to its child. The
 * variable still wins when set.
 */
TEST_IMPL(sbcat_default_address) {
  fixture_t f;
  sb_it_daemon_t d;
  sb_it_result_t res;
  sb__props_t p;
  char default_env[300], env_addr[300], sbrun[4096], child[4096], path[1024];
  const char* env_default[] = {default_env, NULL};
  const char* env_both[] = {default_env, env_addr, NULL};
  const char* cat[] = {f.sbcat, "--name", "dflt/cat", NULL};
  const char* run[] = {sbrun, "--name-prefix", "dflt/run", "--", child, "env", NULL};
  size_t len;
  char* text;
  fixture_start(&f, "dflt");
  sb_it_program("sbrun", sbrun, sizeof(sbrun));
  sb_it_program("sb_child", child, sizeof(child));
  sb_it_daemon_start(&d, &f.loop, "dflt-svc", NULL, NULL);
  snprintf(default_env, sizeof(default_env), "%s=%s", SB_ENV_DEFAULT_SERVER, d.address);
  snprintf(env_addr, sizeof(env_addr), "%s=%s", SB_ENV_SERVER_PATH, f.address);

  sb_it_run(&f.loop, cat, env_default, "by default\n", 11, NULL, 0, &res);
  ASSERT_EQ(res.exit_status, 0);
  sb_it_result_free(&res);
  sb_it_run(&f.loop, run, env_default, "", 0, NULL, 0, &res);
  ASSERT_EQ(res.exit_status, 0);
  sb_it_result_free(&res);
  sb_it_daemon_wait_log(&d, "\" closed: ", 3, 30000);
  snprintf(path, sizeof(path), "%s/dflt/cat.log", d.archive_dir);
  text = sb_it_read_file(path, &len);
  ASSERT_NOT_NULL(text);
  ASSERT_MEM_EQ(text, len, "by default\n", 11);
  free(text);
  /* The child was told the address sbrun used. */
  snprintf(path, sizeof(path), "%s/dflt/run/stdout.log", d.archive_dir);
  text = sb_it_read_file(path, &len);
  ASSERT_NOT_NULL(text);
  ASSERT_MEM_EQ(text, len, d.address, strlen(d.address));
  free(text);

  /* LOGDOG_STREAM_SERVER_PATH set: it wins over the default. */
  sb_it_run(&f.loop, cat, env_both, "y", 1, &f.rec, 1, &res);
  ASSERT_EQ(res.exit_status, 0);
  check_wire(&f.rec.conns[0].data, "y", 1, &p);
  ASSERT_STR_EQ(p.name, "dflt/cat");
  sb__props_free(&p);
  sb_it_result_free(&res);
  sb_it_daemon_close(&d);
  fixture_stop(&f);
}

/* The client library from this process: a busy server (one that never accepts) makes
 * sb_stream_open give up with SB_EBUSY after its timeout; the loop of the server runs
 * on a thread of its own meanwhile. */
struct busy_server {
  fixture_t f;
  uv_async_t stop;
};

static void on_stop(uv_async_t* a) {
  uv_close((uv_handle_t*)a, NULL);
  uv_stop(a->loop);
}

static void busy_thread(void* arg) {
  struct busy_server* b = arg;
  uv_run(&b->f.loop, UV_RUN_DEFAULT);
}

TEST_IMPL(client_busy_server_times_out) {
  struct busy_server b;
  uv_thread_t tid;
  sb_client_t* c;
  sb_client_opts_t copts;
  sb_stream_t* streams[64];
  sb_stream_opts_t o;
  int i, n = 0, r = 0;
  memset(&b, 0, sizeof(b));
  ASSERT_OK(uv_loop_init(&b.f.loop));
  sb_it_address("busy", b.f.address, b.f.bind_path, sizeof(b.f.address));
  ASSERT_OK(sb_it_recorder_start(&b.f.rec, &b.f.loop, b.f.bind_path, 1, 0));
  ASSERT_OK(uv_async_init(&b.f.loop, &b.stop, on_stop));
  ASSERT_OK(uv_thread_create(&tid, busy_thread, &b));
  /* A server that never reads holds a Windows close only until its deadline. */
  memset(&copts, 0, sizeof(copts));
  copts.dial_timeout_ms = 200;
  copts.close_timeout_ms = 500;
  ASSERT_OK(sb_client_open_opts(&c, b.f.address, &copts));
  memset(&o, 0, sizeof(o));
  o.name = "busy";
  /* The first few fill the backlog (or the pipe's spare instances); then busy. */
  for (i = 0; i < 64; i++) {
    r = sb_stream_open(c, &o, &streams[n]);
    if (r != 0)
      break;
    n++;
  }
  ASSERT_ERR(r, SB_EBUSY);
  ASSERT_LT(n, 64);
  /* The close waits for the server to read the stream (Windows: FlushFileBuffers;
   * POSIX: its close after end of file), and this one never does: past the deadline
   * the wait ends. */
  for (i = 0; i < n; i++)
    ASSERT_ERR(sb_stream_close(streams[i]), SB_ETIMEDOUT);
  sb_client_close(c);
  ASSERT_OK(uv_async_send(&b.stop));
  ASSERT_OK(uv_thread_join(&tid));
  fixture_stop(&b.f);
}

/*
 * A server that takes the connections and never reads them: sbcat waits at the end
 * for it to read its stream (Windows: FlushFileBuffers; POSIX: the server's close
 * after end of file), up to --close-timeout, then exits 1 saying so (its writes all
 * succeeded: only the wait tells). sbrun does the same on Windows; on POSIX its
 * children's handles are not waited for (sb_os_handle_flush returns at once), and it
 * exits 0.
 */
TEST_IMPL(sbcat_sbrun_unread_stream_fails) {
  struct busy_server b;
  sb_it_result_t res;
  char sbrun[4096], child[4096];
  const char* cat[] = {NULL, "--name",          "unread/cat", "--server",
                       NULL, "--close-timeout", "300",        NULL};
  const char* run[] = {sbrun,    "--server", NULL,  "--close-timeout",
                       "300",    "--",       child, "write",
                       "68690a", "",         "0",   NULL};
  int want = sb_it_is_windows() ? 1 : 0;
  int want_cat = 1;
  memset(&b, 0, sizeof(b));
  ASSERT_OK(uv_loop_init(&b.f.loop));
  sb_it_address("unread", b.f.address, b.f.bind_path, sizeof(b.f.address));
  ASSERT_OK(sb_it_recorder_start(&b.f.rec, &b.f.loop, b.f.bind_path, 16, 0));
  sb_it_program("sbcat", b.f.sbcat, sizeof(b.f.sbcat));
  sb_it_program("sbrun", sbrun, sizeof(sbrun));
  sb_it_program("sb_child", child, sizeof(child));
  cat[0] = b.f.sbcat;
  cat[4] = b.f.address;
  run[2] = b.f.address;
  sb_it_run(&b.f.loop, cat, NULL, "a line\n", 7, NULL, 0, &res);
  fprintf(stderr, "sbcat: exit %lld, stderr: %s\n", (long long)res.exit_status,
          res.err.data);
  ASSERT_EQ(res.exit_status, want_cat);
  ASSERT(sb_it_contains(res.err.data, res.err.len, "timed out"));
  sb_it_result_free(&res);
  sb_it_run(&b.f.loop, run, NULL, "", 0, NULL, 0, &res);
  fprintf(stderr, "sbrun: exit %lld, stderr: %s\n", (long long)res.exit_status,
          res.err.data);
  ASSERT_EQ(res.exit_status, want);
  if (want)
    ASSERT_EQ(sb_it_count(res.err.data, res.err.len, "timed out"), 2);
  sb_it_result_free(&res);
  fixture_stop(&b.f);
}
