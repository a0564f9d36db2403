/*
 * test_archive_spool.c - an archive that cannot write loses nothing: with the real
 * streambrokerd in archive mode, streams whose files cannot be written (a read-only
 * bind mount of the archive directory, as root on Linux; the directory replaced by a
 * file, on every platform and under Wine) go to the spool, their clients are told
 * they are stored only once they are committed, and once the archive can write again
 * every byte is archived, in order, once; also across a restart of the service during
 * the outage. And the recovery of a .log left empty without a sidecar.
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#ifndef _WIN32
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#endif

#include "helpers.h"
#include "streams.h"
#include "task.h"

/* Fast retries, so that the archive is found writable soon after it is. */
#define FAST_RETRIES "\"backoff_initial_ms\": 20, \"backoff_max_ms\": 300"

/* ---- helpers ---- */

static void run_sbcat(uv_loop_t* loop, const char* address, const char* name,
                      const char* type, const char* in, size_t in_len,
                      sb_it_result_t* res) {
  char prog[4096];
  const char* argv[10];
  int n = 0;
  sb_it_program("sbcat", prog, sizeof(prog));
  argv[n++] = prog;
  argv[n++] = "--name";
  argv[n++] = name;
  argv[n++] = "--server";
  argv[n++] = address;
  if (type) {
    argv[n++] = "--type";
    argv[n++] = type;
  }
  argv[n] = NULL;
  sb_it_run(loop, argv, NULL, in, in_len, NULL, 0, res);
}

static void sbcat_ok(uv_loop_t* loop, sb_it_daemon_t* d, const char* name,
                     const char* in) {
  sb_it_result_t res;
  run_sbcat(loop, d->address, name, NULL, in, strlen(in), &res);
  if (res.exit_status != 0) {
    sb_it_daemon_dump(d);
    sb_test_fail(__FILE__, __LINE__, "sbcat \"%s\": exit %d: %s", name,
                 (int)res.exit_status, res.err.data);
  }
  sb_it_result_free(&res);
}

/* ARCHIVE_DIR/name + suffix, with the platform's separators. */
static void archive_path(const sb_it_daemon_t* d, const char* name, const char* suffix,
                         char* out, size_t size) {
  char* c;
  snprintf(out, size, "%s/%s%s", d->archive_dir, name, suffix);
  if (sb_it_is_windows())
    for (c = out; *c; c++)
      if (*c == '/')
        *c = '\\';
}

/* The bytes the spool holds of a stream (by name), or -1 when it cannot tell. */
static int64_t spool_bytes(sb_it_daemon_t* d, const char* name) {
  char sql[512];
  snprintf(sql, sizeof(sql),
           "SELECT total(length(c.data)) FROM chunks c JOIN streams s ON s.id = c.sid "
           "WHERE s.name = '%s'",
           name);
  return sb_it_spool_int(d, sql);
}

typedef struct {
  sb_it_daemon_t* d;
  const char* name;
  int64_t bytes;
} spool_has_t;

static int spool_has(void* arg) {
  spool_has_t* w = arg;
  return spool_bytes(w->d, w->name) >= w->bytes;
}

/* Waits until the spool has committed len bytes of the stream. */
static void wait_spooled(uv_loop_t* loop, sb_it_daemon_t* d, const char* name,
                         size_t len) {
  spool_has_t w = {d, name, (int64_t)len};
  if (!sb_it_run_until(loop, 30000, spool_has, &w)) {
    sb_it_daemon_dump(d);
    sb_test_fail(__FILE__, __LINE__, "the spool holds %lld bytes of \"%s\", want %zu",
                 (long long)spool_bytes(d, name), name, len);
  }
}

static int file_exists(const char* path) {
  uv_fs_t req;
  int r = uv_fs_stat(NULL, &req, path, NULL);
  uv_fs_req_cleanup(&req);
  return r == 0;
}

static int spool_no_rows(void* arg) {
  return sb_it_spool_int(arg, "SELECT count(*) FROM streams") == 0 &&
         sb_it_spool_int(arg, "SELECT count(*) FROM chunks") == 0;
}

/* The stream's sidecar (segment seq), parsed; fails the test when absent. */
static cJSON* sidecar(const sb_it_daemon_t* d, const char* name, int seq) {
  char path[1200], suffix[32];
  size_t len;
  char* text;
  cJSON* doc;
  if (seq == 0)
    snprintf(suffix, sizeof(suffix), ".json");
  else
    snprintf(suffix, sizeof(suffix), "+%d.json", seq);
  archive_path(d, name, suffix, path, sizeof(path));
  text = sb_it_read_file(path, &len);
  if (text == NULL)
    sb_test_fail(__FILE__, __LINE__, "no sidecar %s", path);
  doc = cJSON_ParseWithLength(text, len);
  ASSERT_NOT_NULL(doc);
  free(text);
  return doc;
}

static int jtrue(const cJSON* doc, const char* key) {
  return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, key));
}

static double jnum(const cJSON* doc, const char* key) {
  const cJSON* it = cJSON_GetObjectItemCaseSensitive(doc, key);
  if (!cJSON_IsNumber(it))
    sb_test_fail(__FILE__, __LINE__, "no number \"%s\"", key);
  return it->valuedouble;
}

/* The stream's .log (segment 0) holds exactly want, and its sidecar says complete,
 * with spooled_bytes when it went through the spool. */
static void expect_archived(const sb_it_daemon_t* d, const char* name, const void* want,
                            size_t len, int spooled) {
  char path[1200];
  size_t got_len;
  char* got;
  cJSON* doc;
  archive_path(d, name, ".log", path, sizeof(path));
  got = sb_it_read_file(path, &got_len);
  if (got == NULL)
    sb_test_fail(__FILE__, __LINE__, "\"%s\" is not archived (%s)", name, path);
  if (got_len != len || memcmp(got, want, len) != 0)
    sb_test_fail(__FILE__, __LINE__, "\"%s\": %zu bytes archived, want %zu, %s", name,
                 got_len, len, got_len == len ? "different" : "");
  free(got);
  doc = sidecar(d, name, 0);
  if (!jtrue(doc, "complete"))
    sb_test_fail(__FILE__, __LINE__, "\"%s\": its sidecar does not say complete", name);
  ASSERT_EQ(jnum(doc, "bytes"), (double)len);
  if (spooled)
    ASSERT_GT(jnum(doc, "spooled_bytes"), 0);
  cJSON_Delete(doc);
  /* One segment: nothing was archived twice. */
  archive_path(d, name, "+1.log", path, sizeof(path));
  got = sb_it_read_file(path, &got_len);
  if (got != NULL)
    sb_test_fail(__FILE__, __LINE__, "\"%s\" has a second segment", name);
}

static cJSON* status(uv_loop_t* loop, sb_it_daemon_t* d) {
  return sb_it_admin(loop, d, "status");
}

static int archive_writable(const cJSON* st) {
  const cJSON* ar = cJSON_GetObjectItemCaseSensitive(st, "archive");
  return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ar, "writable"));
}

/* What sbctl status prints. */
static void sbctl_text(uv_loop_t* loop, sb_it_daemon_t* d, sb_it_result_t* res) {
  char prog[4096];
  const char* argv[] = {prog, "--admin", d->admin_address, "status", NULL};
  sb_it_program("sbctl", prog, sizeof(prog));
  sb_it_run(loop, argv, NULL, "", 0, NULL, 0, res);
  ASSERT_EQ(res->exit_status, 0);
}

/* The daemon's log says each stream closed. */
static void wait_closed(uv_loop_t* loop, sb_it_daemon_t* d, const char* name) {
  char needle[300];
  (void)loop; /* the daemon's own */
  snprintf(needle, sizeof(needle), "\"%s\" closed: ", name);
  sb_it_daemon_wait_log(d, needle, 1, 60000);
}

/* Datagram stream content: n datagrams of varied lengths, and their wire framing. */
static void dgram_content(const char* name, int n, sb__buf_t* wire) {
  int k;
  wire->len = 0;
  for (k = 0; k < n; k++) {
    char body[600];
    size_t len = (size_t)snprintf(body, sizeof(body), "%s datagram %d ", name, k);
    uint8_t hdr[10];
    size_t h;
    while (len < (size_t)(k * 37 % 500))
      body[len++] = (char)('a' + k % 26);
    h = sb__varint_encode(len, hdr);
    sb__buf_append(wire, hdr, h);
    sb__buf_append(wire, body, len);
  }
  ASSERT_OK(wire->err);
}

/* Sends datagrams [from, to) of the content above on s. */
static void send_dgrams(sb_stream_t* s, const char* name, int from, int to) {
  int k;
  for (k = from; k < to; k++) {
    char body[600];
    size_t len = (size_t)snprintf(body, sizeof(body), "%s datagram %d ", name, k);
    while (len < (size_t)(k * 37 % 500))
      body[len++] = (char)('a' + k % 26);
    ASSERT_OK(sb_stream_send_datagram(s, body, len));
  }
}

/* ---- a read-only archive (Linux, as root) ---- */

#ifndef _WIN32
/* The archive directory bind-mounted on itself, then made read-only: every path in it
 * refuses writes (EROFS) even to root, which chmod cannot do. Mounts left by a failing
 * test are taken down at exit. */
static char mounted[8][600];
static int nmounted;

static void unmount_all(void) {
  int i;
  for (i = 0; i < nmounted; i++)
    if (mounted[i][0])
      umount2(mounted[i], MNT_DETACH);
  nmounted = 0;
}

/* A mount the test made, taken down at exit if the test does not. */
static void track_mount(const char* dir) {
  static int registered;
  if (!registered) {
    atexit(unmount_all);
    registered = 1;
  }
  ASSERT_LT(nmounted, 8);
  snprintf(mounted[nmounted++], sizeof(mounted[0]), "%s", dir);
}

static int ro_mount(const char* dir) {
  if (mount(dir, dir, NULL, MS_BIND, NULL) != 0)
    return -1;
  track_mount(dir);
  if (mount(NULL, dir, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) != 0)
    sb_test_fail(__FILE__, __LINE__, "remounting %s read-only (a file open in it?)",
                 dir);
  return 0;
}

static void ro_unmount(const char* dir) {
  int i;
  ASSERT_EQ(umount(dir), 0);
  for (i = 0; i < nmounted; i++)
    if (strcmp(mounted[i], dir) == 0)
      mounted[i][0] = '\0';
}

/*
 * A client that waits for its end to be confirmed, as a broker in front does: it
 * writes its stream, shuts its side down and reads until the service closes the
 * connection. Returns once the service did.
 */
static void confirmed_write(const sb_it_daemon_t* d, const char* name,
                            const char* data) {
  struct sockaddr_un sa;
  sb__props_t props;
  sb__buf_t hs = {0};
  char buf[64];
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  ASSERT_LT(strlen(d->bind_path), sizeof(sa.sun_path));
  memcpy(sa.sun_path, d->bind_path, strlen(d->bind_path) + 1);
  ASSERT_EQ(connect(fd, (struct sockaddr*)&sa, sizeof(sa)), 0);
  memset(&props, 0, sizeof(props));
  props.name = (char*)name;
  props.content_type = (char*)"text/plain";
  props.type = SB_TEXT;
  ASSERT_OK(sb__handshake_encode(&props, &hs));
  sb__buf_append(&hs, data, strlen(data));
  ASSERT_EQ(write(fd, hs.data, hs.len), (ssize_t)hs.len);
  sb__buf_free(&hs);
  ASSERT_EQ(shutdown(fd, SHUT_WR), 0);
  ASSERT_EQ(read(fd, buf, sizeof(buf)),
            0); /* the service's end: the stream is stored */
  close(fd);
}
#endif

/*
 * The archive directory made read-only while the service runs (no file of it open:
 * a mount that has files open for writing cannot be remounted read-only). Short
 * streams (sbcat) exit 0, and their bytes are in the spool; a client waiting for its
 * end finds its bytes committed in the spool when the service confirms it; a text
 * and a datagram stream start during the outage and go on writing after it; sbctl
 * says the archive is not writable and what waits. Writable again: every byte is in
 * the archive, in order, once, in one segment per stream; the spool is empty; the
 * outage was logged once per stream and counted.
 */
TEST_IMPL(archive_spool_read_only) {
#ifdef _WIN32
  TEST_SKIP("a read-only bind mount is Linux's (archive_spool_blocked covers Windows)");
#else
  uv_loop_t loop;
  sb_it_daemon_t d;
  sb_client_t* client;
  sb_stream_t *lt, *dg;
  sb_stream_opts_t o;
  sb__buf_t want = {0}, wire = {0};
  sb_it_result_t res;
  cJSON* st;
  char name[64], needle[128];
  int i;
  if (geteuid() != 0)
    TEST_SKIP("a read-only bind mount needs root");
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start(&d, &loop, "arro", NULL,
                     FAST_RETRIES ", \"upstream_high_watermark\": 65536");
  sbcat_ok(&loop, &d, "ro/before", "before the outage\n");
  wait_closed(&loop, &d, "ro/before");
  if (ro_mount(d.archive_dir) != 0) {
    sb_it_daemon_close(&d);
    TEST_SKIP("cannot bind-mount here");
  }

  /* Short streams: exit 0, and the bytes are in the spool. */
  for (i = 0; i < 5; i++) {
    char line[64];
    snprintf(name, sizeof(name), "ro/short-%d", i);
    snprintf(line, sizeof(line), "hello %d\n", i);
    sbcat_ok(&loop, &d, name, line);
    wait_spooled(&loop, &d, name, strlen(line));
  }
  /* The service confirms the end only once the bytes are committed. */
  confirmed_write(&d, "ro/confirmed", "stored before the end is confirmed\n");
  ASSERT_EQ(spool_bytes(&d, "ro/confirmed"), 35);

  /* Two streams that start now and go on after the outage. */
  ASSERT_OK(sb_client_open(&client, d.address));
  memset(&o, 0, sizeof(o));
  o.name = "ro/long";
  o.type = SB_BINARY;
  ASSERT_OK(sb_stream_open(client, &o, &lt));
  o.name = "ro/dgram";
  o.type = SB_DATAGRAM;
  ASSERT_OK(sb_stream_open(client, &o, &dg));
  sb_it_content("ro/long", 3000000, &want);
  ASSERT_OK(sb_stream_write(lt, want.data, 1000000));
  send_dgrams(dg, "ro/dgram", 0, 1500);
  wait_spooled(&loop, &d, "ro/long", 1000000);
  dgram_content("ro/dgram", 1500, &wire);
  wait_spooled(&loop, &d, "ro/dgram", wire.len);

  /* sbctl: not writable, and what waits. */
  st = sb_it_admin_until(&loop, &d, "status", "archive.bytes_waiting",
                         (double)(1000000 + wire.len));
  ASSERT(!archive_writable(st));
  ASSERT_EQ(sb_it_json_num(st, "archive.streams_cannot_write"), 8);
  ASSERT_EQ(sb_it_json_num(st, "archive.streams_waiting"), 8);
  cJSON_Delete(st);
  sbctl_text(&loop, &d, &res);
  ASSERT(sb_it_contains(res.out.data, res.out.len, "NOT WRITABLE for 8 streams"));
  ASSERT(sb_it_contains(res.out.data, res.out.len, "read-only file system"));
  sb_it_result_free(&res);

  /* Writable again; the two streams go on and end. */
  ro_unmount(d.archive_dir);
  ASSERT_OK(sb_stream_write(lt, want.data + 1000000, 2000000));
  send_dgrams(dg, "ro/dgram", 1500, 3000);
  ASSERT_OK(sb_stream_close(lt));
  ASSERT_OK(sb_stream_close(dg));
  sb_client_close(client);
  for (i = 0; i < 5; i++) {
    snprintf(name, sizeof(name), "ro/short-%d", i);
    wait_closed(&loop, &d, name);
  }
  wait_closed(&loop, &d, "ro/confirmed");
  wait_closed(&loop, &d, "ro/long");
  wait_closed(&loop, &d, "ro/dgram");

  for (i = 0; i < 5; i++) {
    char line[64];
    snprintf(name, sizeof(name), "ro/short-%d", i);
    snprintf(line, sizeof(line), "hello %d\n", i);
    expect_archived(&d, name, line, strlen(line), 1);
  }
  expect_archived(&d, "ro/confirmed", "stored before the end is confirmed\n", 35, 1);
  expect_archived(&d, "ro/long", want.data, want.len, 1);
  dgram_content("ro/dgram", 3000, &wire);
  expect_archived(&d, "ro/dgram", wire.data, wire.len, 1);
  {
    cJSON* doc = sidecar(&d, "ro/dgram", 0);
    ASSERT_EQ(jnum(doc, "datagrams"), 3000);
    cJSON_Delete(doc);
  }
  if (!sb_it_run_until(&loop, 30000, spool_no_rows, &d))
    sb_test_fail(__FILE__, __LINE__, "the spool still holds archive streams");

  /* Logged once per stream (not per chunk), counted; nothing lost or failed. */
  snprintf(needle, sizeof(needle), "\"ro/long\": creating");
  ASSERT_EQ(sb_it_count(d.log.data, d.log.len, needle), 1);
  ASSERT_EQ(sb_it_count(d.log.data, d.log.len, "the archive cannot write"), 8);
  st = status(&loop, &d);
  ASSERT(archive_writable(st));
  ASSERT_EQ(sb_it_json_num(st, "archive.streams_waiting"), 0);
  ASSERT_EQ(sb_it_json_num(st, "counters.archive_streams_spooled"), 8);
  ASSERT_EQ(sb_it_json_num(st, "counters.archive_errors"), 8);
  ASSERT_GE(sb_it_json_num(st, "counters.archive_bytes_spooled"), 1000000 + 40);
  ASSERT_EQ(sb_it_json_num(st, "counters.archive_streams_failed"), 0);
  ASSERT_EQ(sb_it_json_num(st, "counters.archive_bytes_lost"), 0);
  ASSERT_EQ(sb_it_json_num(st, "counters.bytes_in"),
            sb_it_json_num(st, "counters.bytes_out"));
  cJSON_Delete(st);
  sb_it_daemon_close(&d);
  sb__buf_free(&want);
  sb__buf_free(&wire);
  ASSERT_OK(uv_loop_close(&loop));
#endif
}

/*
 * The service stopped, and killed, while the archive is read-only: what the spool
 * committed is kept, resumed at the next start (still read-only: it waits), and
 * archived once the archive can write, in a new segment of its own where a segment
 * began before the outage.
 */
TEST_IMPL(archive_spool_read_only_restart) {
#ifdef _WIN32
  TEST_SKIP("a read-only bind mount is Linux's (archive_spool_blocked_restart covers "
            "Windows)");
#else
  uv_loop_t loop;
  sb_it_daemon_t d;
  sb_client_t* client;
  sb_stream_t* open_s;
  sb_stream_opts_t o;
  sb__buf_t want = {0};
  cJSON* st;
  int i;
  if (geteuid() != 0)
    TEST_SKIP("a read-only bind mount needs root");
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start(&d, &loop, "arrr", NULL, FAST_RETRIES);
  if (ro_mount(d.archive_dir) != 0) {
    sb_it_daemon_close(&d);
    TEST_SKIP("cannot bind-mount here");
  }
  for (i = 0; i < 3; i++) {
    char name[64], line[64];
    snprintf(name, sizeof(name), "rr/short-%d", i);
    snprintf(line, sizeof(line), "kept %d\n", i);
    sbcat_ok(&loop, &d, name, line);
    wait_spooled(&loop, &d, name, strlen(line));
  }
  /* One still open when the service stops: its client is cut, what it sent is kept. */
  ASSERT_OK(sb_client_open(&client, d.address));
  memset(&o, 0, sizeof(o));
  o.name = "rr/open";
  ASSERT_OK(sb_stream_open(client, &o, &open_s));
  sb_it_content("rr/open", 500000, &want);
  ASSERT_OK(sb_stream_write(open_s, want.data, want.len));
  wait_spooled(&loop, &d, "rr/open", want.len);

  /* A graceful stop keeps them in the spool. */
  sb_it_daemon_kill(&d, SIGTERM);
  sb_it_daemon_wait_exit(&d, 30000);
  ASSERT_EQ(d.exit_status, 0);
  ASSERT_EQ(sb_it_count(d.log.data, d.log.len, "kept in the spool for the next start"),
            4);
  sb_stream_close(open_s); /* the service is gone: an error is fine */
  sb_client_close(client);
  sb_it_daemon_restart(&d);
  sb_it_daemon_wait_log(&d, "4 streams to resume", 1, 30000);
  st = status(&loop, &d);
  ASSERT_EQ(sb_it_json_num(st, "archive.streams_waiting"), 4);
  cJSON_Delete(st);

  /* Killed now (SIGKILL): the spool still has everything. */
  sbcat_ok(&loop, &d, "rr/late", "written to a restarted service\n");
  wait_spooled(&loop, &d, "rr/late", 31);
  sb_it_daemon_kill(&d, SIGKILL);
  sb_it_daemon_wait_exit(&d, 30000);
  sb_it_daemon_restart(&d);
  sb_it_daemon_wait_log(&d, "5 streams to resume", 1, 30000);

  /* Writable: each is archived whole, marked resumed. */
  ro_unmount(d.archive_dir);
  if (!sb_it_run_until(&loop, 60000, spool_no_rows, &d)) {
    sb_it_daemon_dump(&d);
    sb_test_fail(__FILE__, __LINE__, "the spool was not drained into the archive");
  }
  sb_it_daemon_wait_log(&d, "\"rr/late\" closed: ", 1, 30000);
  sb_it_daemon_wait_log(&d, "\"rr/open\" closed: ", 1, 30000);
  for (i = 0; i < 3; i++) {
    char name[64], line[64];
    cJSON* doc;
    snprintf(name, sizeof(name), "rr/short-%d", i);
    snprintf(line, sizeof(line), "kept %d\n", i);
    wait_closed(&loop, &d, name);
    expect_archived(&d, name, line, strlen(line), 0);
    doc = sidecar(&d, name, 0);
    ASSERT(jtrue(doc, "resumed"));
    cJSON_Delete(doc);
  }
  expect_archived(&d, "rr/open", want.data, want.len, 0);
  expect_archived(&d, "rr/late", "written to a restarted service\n", 31, 0);
  st = status(&loop, &d);
  ASSERT(archive_writable(st));
  ASSERT_EQ(sb_it_json_num(st, "counters.streams_resumed"), 5);
  ASSERT_EQ(sb_it_json_num(st, "counters.archive_bytes_lost"), 0);
  cJSON_Delete(st);
  sb_it_daemon_close(&d);
  sb__buf_free(&want);
  ASSERT_OK(uv_loop_close(&loop));
#endif
}

/* ---- an archive directory blocked by a file (every platform, Wine included) ---- */

/* ARCHIVE_DIR moves aside (to ARCHIVE_DIR.away) and a file takes its name: nothing
 * can be made in it. */
static void block_archive(sb_it_daemon_t* d) {
  char away[700];
  uv_fs_t req;
  snprintf(away, sizeof(away), "%s.away", d->archive_dir);
  ASSERT_OK(uv_fs_rename(NULL, &req, d->archive_dir, away, NULL));
  uv_fs_req_cleanup(&req);
  sb_it_write_file(d->archive_dir, "not a directory\n", 16);
}

/* The file goes; the service makes the directory again itself (moving the old one
 * back would race with it). */
static void unblock_archive(sb_it_daemon_t* d) {
  uv_fs_t req;
  ASSERT_OK(uv_fs_unlink(NULL, &req, d->archive_dir, NULL));
  uv_fs_req_cleanup(&req);
}

/*
 * The archive directory replaced by a file: short streams go to the spool (sbcat
 * exits 0), and a text and a datagram stream start then and go on after the file is
 * gone (the service makes the directory again); sbctl says the archive is not
 * writable. Then every byte is archived, in
 * order, once, and the spool is empty.
 */
TEST_IMPL(archive_spool_blocked) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  sb_client_t* client;
  sb_stream_t *lt, *dg;
  sb_stream_opts_t o;
  sb__buf_t want = {0}, wire = {0};
  sb_it_result_t res;
  cJSON* st;
  int i;
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start(&d, &loop, "arblk", NULL,
                     FAST_RETRIES ", \"upstream_high_watermark\": 65536");
  sbcat_ok(&loop, &d, "blk/before", "before\n");
  wait_closed(&loop, &d, "blk/before");
  block_archive(&d);
  for (i = 0; i < 3; i++) {
    char name[64], line[64];
    snprintf(name, sizeof(name), i == 2 ? "other/short-%d" : "blk/short-%d", i);
    snprintf(line, sizeof(line), "blocked %d\n", i);
    sbcat_ok(&loop, &d, name, line);
    wait_spooled(&loop, &d, name, strlen(line));
  }
  ASSERT_OK(sb_client_open(&client, d.address));
  memset(&o, 0, sizeof(o));
  o.name = "blk/long";
  o.type = SB_TEXT;
  ASSERT_OK(sb_stream_open(client, &o, &lt));
  o.name = "blk/dgram";
  o.type = SB_DATAGRAM;
  ASSERT_OK(sb_stream_open(client, &o, &dg));
  sb_it_content("blk/long", 2000000, &want);
  ASSERT_OK(sb_stream_write(lt, want.data, 700000));
  send_dgrams(dg, "blk/dgram", 0, 1000);
  wait_spooled(&loop, &d, "blk/long", 700000);
  dgram_content("blk/dgram", 1000, &wire);
  wait_spooled(&loop, &d, "blk/dgram", wire.len);
  st = status(&loop, &d);
  ASSERT(!archive_writable(st));
  ASSERT_EQ(sb_it_json_num(st, "archive.streams_waiting"), 5);
  cJSON_Delete(st);
  sbctl_text(&loop, &d, &res);
  ASSERT(sb_it_contains(res.out.data, res.out.len, "NOT WRITABLE"));
  sb_it_result_free(&res);

  unblock_archive(&d);
  ASSERT_OK(sb_stream_write(lt, want.data + 700000, 1300000));
  send_dgrams(dg, "blk/dgram", 1000, 2000);
  ASSERT_OK(sb_stream_close(lt));
  ASSERT_OK(sb_stream_close(dg));
  sb_client_close(client);
  for (i = 0; i < 3; i++) {
    char name[64], line[64];
    snprintf(name, sizeof(name), i == 2 ? "other/short-%d" : "blk/short-%d", i);
    snprintf(line, sizeof(line), "blocked %d\n", i);
    wait_closed(&loop, &d, name);
    expect_archived(&d, name, line, strlen(line), 1);
  }
  wait_closed(&loop, &d, "blk/long");
  wait_closed(&loop, &d, "blk/dgram");
  expect_archived(&d, "blk/long", want.data, want.len, 1);
  dgram_content("blk/dgram", 2000, &wire);
  expect_archived(&d, "blk/dgram", wire.data, wire.len, 1);
  {
    /* What was archived before the outage is where it was (moved aside with it). */
    char path[1200];
    size_t len;
    char* got;
    snprintf(path, sizeof(path), "%s.away/blk/before.log", d.archive_dir);
    got = sb_it_read_file(path, &len);
    ASSERT_NOT_NULL(got);
    ASSERT_MEM_EQ(got, len, "before\n", 7);
    free(got);
  }
  if (!sb_it_run_until(&loop, 30000, spool_no_rows, &d))
    sb_test_fail(__FILE__, __LINE__, "the spool still holds archive streams");
  st = status(&loop, &d);
  ASSERT(archive_writable(st));
  ASSERT_EQ(sb_it_json_num(st, "counters.archive_streams_spooled"), 5);
  ASSERT_EQ(sb_it_json_num(st, "counters.archive_bytes_lost"), 0);
  ASSERT_EQ(sb_it_json_num(st, "counters.bytes_in"),
            sb_it_json_num(st, "counters.bytes_out"));
  cJSON_Delete(st);
  sb_it_daemon_close(&d);
  sb__buf_free(&want);
  sb__buf_free(&wire);
  ASSERT_OK(uv_loop_close(&loop));
}

/*
 * The service killed while the archive directory is blocked (SIGKILL; under Wine,
 * TerminateProcess): the streams the spool committed are resumed at the next start,
 * wait while it is still blocked, and are archived, whole, once it is back.
 */
TEST_IMPL(archive_spool_blocked_restart) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  sb_client_t* client;
  sb_stream_t* open_s;
  sb_stream_opts_t o;
  sb__buf_t want = {0};
  cJSON* st;
  int i;
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start(&d, &loop, "arbr", NULL, FAST_RETRIES);
  block_archive(&d);
  for (i = 0; i < 3; i++) {
    char name[64], line[64];
    snprintf(name, sizeof(name), "br/short-%d", i);
    snprintf(line, sizeof(line), "kept %d\n", i);
    sbcat_ok(&loop, &d, name, line);
    wait_spooled(&loop, &d, name, strlen(line));
  }
  ASSERT_OK(sb_client_open(&client, d.address));
  memset(&o, 0, sizeof(o));
  o.name = "br/open";
  o.type = SB_BINARY;
  ASSERT_OK(sb_stream_open(client, &o, &open_s));
  sb_it_content("br/open", 300000, &want);
  ASSERT_OK(sb_stream_write(open_s, want.data, want.len));
  wait_spooled(&loop, &d, "br/open", want.len);
  sb_it_daemon_kill(&d, SIGKILL);
  sb_it_daemon_wait_exit(&d, 30000);
  sb_stream_close(open_s);
  sb_client_close(client);

  sb_it_daemon_restart(&d);
  sb_it_daemon_wait_log(&d, "4 streams to resume", 1, 30000);
  st = status(&loop, &d);
  ASSERT_EQ(sb_it_json_num(st, "archive.streams_waiting"), 4);
  cJSON_Delete(st);
  unblock_archive(&d);
  if (!sb_it_run_until(&loop, 60000, spool_no_rows, &d)) {
    sb_it_daemon_dump(&d);
    sb_test_fail(__FILE__, __LINE__, "the spool was not drained into the archive");
  }
  for (i = 0; i < 3; i++) {
    char name[64], line[64];
    cJSON* doc;
    snprintf(name, sizeof(name), "br/short-%d", i);
    snprintf(line, sizeof(line), "kept %d\n", i);
    wait_closed(&loop, &d, name);
    expect_archived(&d, name, line, strlen(line), 0);
    doc = sidecar(&d, name, 0);
    ASSERT(jtrue(doc, "resumed"));
    cJSON_Delete(doc);
  }
  wait_closed(&loop, &d, "br/open");
  expect_archived(&d, "br/open", want.data, want.len, 0);
  st = status(&loop, &d);
  ASSERT(archive_writable(st));
  ASSERT_EQ(sb_it_json_num(st, "counters.streams_resumed"), 4);
  cJSON_Delete(st);
  sb_it_daemon_close(&d);
  sb__buf_free(&want);
  ASSERT_OK(uv_loop_close(&loop));
}

/* ---- recovery of a .log left without a sidecar ---- */

/*
 * A .log with no sidecar at start: removed when it is empty and no .json.tmp is
 * beside it (what a stream whose sidecar could not be written leaves, on a full
 * disk), counted and logged; completed (a sidecar, "recovered") when it holds data or
 * its sidecar was being written. A start after that finds nothing to do.
 */
TEST_IMPL(archive_spool_empty_log_removed) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  char path[1200];
  cJSON *st, *doc;
  uv_fs_t req;
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start(&d, &loop, "aremp", NULL, NULL);
  sb_it_daemon_kill(&d, SIGKILL);
  sb_it_daemon_wait_exit(&d, 30000);
  archive_path(&d, "e", "", path, sizeof(path));
  ASSERT_OK(uv_fs_mkdir(NULL, &req, path, 0700, NULL));
  uv_fs_req_cleanup(&req);
  archive_path(&d, "e/empty", ".log", path, sizeof(path));
  sb_it_write_file(path, "", 0);
  archive_path(&d, "e/empty+1", ".log", path, sizeof(path));
  sb_it_write_file(path, "", 0);
  /* One killed while it wrote its sidecar: finished, not removed. */
  archive_path(&d, "e/empty-with-tmp+1", ".log", path, sizeof(path));
  sb_it_write_file(path, "", 0);
  archive_path(&d, "e/empty-with-tmp+1", ".json.tmp", path, sizeof(path));
  sb_it_write_file(path, "{\"name\": \"e/empty-with-tmp\"}", 28);
  archive_path(&d, "e/data", ".log", path, sizeof(path));
  sb_it_write_file(path, "some data\n", 10);
  sb_it_daemon_restart(&d);

  archive_path(&d, "e/empty", ".log", path, sizeof(path));
  ASSERT(!file_exists(path));
  archive_path(&d, "e/empty+1", ".log", path, sizeof(path));
  ASSERT(!file_exists(path));
  archive_path(&d, "e/empty-with-tmp+1", ".json.tmp", path, sizeof(path));
  ASSERT(!file_exists(path));
  doc = sidecar(&d, "e/empty-with-tmp", 1);
  ASSERT(jtrue(doc, "recovered"));
  ASSERT_EQ(jnum(doc, "bytes"), 0);
  cJSON_Delete(doc);
  doc = sidecar(&d, "e/data", 0);
  ASSERT(jtrue(doc, "recovered"));
  ASSERT_EQ(jnum(doc, "bytes"), 10);
  cJSON_Delete(doc);
  ASSERT_EQ(sb_it_count(d.log.data, d.log.len, "left empty and without a sidecar"), 2);
  st = status(&loop, &d);
  ASSERT_EQ(sb_it_json_num(st, "counters.archive_empty_removed"), 2);
  ASSERT_EQ(sb_it_json_num(st, "counters.archive_recovered"), 2);
  cJSON_Delete(st);
  /* A name whose empty .log went is archived under it again. */
  sbcat_ok(&loop, &d, "e/empty", "now\n");
  wait_closed(&loop, &d, "e/empty");
  expect_archived(&d, "e/empty", "now\n", 4, 0);

  sb_it_daemon_kill(&d, SIGTERM);
  sb_it_daemon_wait_exit(&d, 30000);
  sb_it_daemon_restart(&d);
  st = status(&loop, &d);
  ASSERT_EQ(sb_it_json_num(st, "counters.archive_empty_removed"), 0);
  ASSERT_EQ(sb_it_json_num(st, "counters.archive_recovered"), 0);
  cJSON_Delete(st);
  sb_it_daemon_close(&d);
  ASSERT_OK(uv_loop_close(&loop));
}

/*
 * A full disk (a small tmpfs, as root): the sidecar of a new stream cannot be written,
 * so its .log stays empty without one and the stream waits in the spool; the service
 * is killed. The next start removes the empty .log, resumes the stream and, once there
 * is room, archives it whole.
 */
TEST_IMPL(archive_spool_full_disk_empty_log) {
#ifdef _WIN32
  TEST_SKIP("needs a small file system: Linux tmpfs, as root");
#else
  uv_loop_t loop;
  sb_it_daemon_t d;
  char filler[1200], path[1200];
  cJSON* st;
  size_t len;
  char* data;
  if (geteuid() != 0)
    TEST_SKIP("mounting a tmpfs needs root");
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start(&d, &loop, "arfe", NULL, FAST_RETRIES);
  if (mount("sbarfe", d.archive_dir, "tmpfs", 0, "size=64k,mode=0700") != 0) {
    sb_it_daemon_close(&d);
    TEST_SKIP("cannot mount a tmpfs here");
  }
  track_mount(d.archive_dir);
  /* Fill it: every block taken (a file's creation needs none). */
  snprintf(filler, sizeof(filler), "%s/filler", d.archive_dir);
  data = calloc(1, 65536);
  ASSERT_NOT_NULL(data);
  {
    FILE* f = fopen(filler, "wb");
    ASSERT_NOT_NULL(f);
    while (fwrite(data, 1, 4096, f) == 4096 && fflush(f) == 0)
      ;
    fclose(f);
  }
  free(data);
  sbcat_ok(&loop, &d, "full-empty", "waits for room\n");
  wait_spooled(&loop, &d, "full-empty", 15);
  sb_it_daemon_wait_log(&d, "no space left on device", 1, 30000);
  archive_path(&d, "full-empty", ".log", path, sizeof(path));
  data = sb_it_read_file(path, &len);
  ASSERT_NOT_NULL(data);
  ASSERT_EQ(len, 0);
  free(data);
  archive_path(&d, "full-empty", ".json", path, sizeof(path));
  ASSERT(!file_exists(path));
  sb_it_daemon_kill(&d, SIGKILL);
  sb_it_daemon_wait_exit(&d, 30000);
  /* A kill between the failed sidecar write and its removal leaves an empty
   * .json.tmp (it needs no block): it holds no sidecar either. */
  archive_path(&d, "full-empty", ".json.tmp", path, sizeof(path));
  sb_it_write_file(path, "", 0);

  sb_it_daemon_restart(&d);
  sb_it_daemon_wait_log(&d, "left empty and without a sidecar", 1, 30000);
  sb_it_daemon_wait_log(&d, "1 streams to resume", 1, 30000);
  ASSERT_EQ(remove(filler), 0);
  if (!sb_it_run_until(&loop, 60000, spool_no_rows, &d)) {
    sb_it_daemon_dump(&d);
    sb_test_fail(__FILE__, __LINE__, "the spool was not drained into the archive");
  }
  wait_closed(&loop, &d, "full-empty");
  expect_archived(&d, "full-empty", "waits for room\n", 15, 0);
  st = status(&loop, &d);
  ASSERT_EQ(sb_it_json_num(st, "counters.archive_empty_removed"), 1);
  cJSON_Delete(st);
  sb_it_daemon_kill(&d, SIGTERM);
  sb_it_daemon_wait_exit(&d, 30000);
  ro_unmount(d.archive_dir);
  sb_it_daemon_close(&d);
  ASSERT_OK(uv_loop_close(&loop));
#endif
}

/* ---- the directories, checked by --check-config and at start ---- */

/* s as the contents of a JSON string. */
static void json_str(const char* s, char* out, size_t size) {
  size_t o = 0;
  for (; *s && o + 2 < size; s++) {
    if (*s == '\\' || *s == '"')
      out[o++] = '\\';
    out[o++] = *s;
  }
  out[o] = '\0';
}

/* Runs --check-config on text (written to cfg); it must exit with status and say want.
 */
static void check_config(uv_loop_t* loop, const char* cfg, const char* text, int status,
                         const char* want) {
  char prog[4096];
  const char* argv[] = {prog, "--check-config", cfg, NULL};
  sb_it_result_t res;
  sb_it_program("streambrokerd", prog, sizeof(prog));
  sb_it_write_file(cfg, text, strlen(text));
  sb_it_run(loop, argv, NULL, "", 0, NULL, 0, &res);
  if (res.exit_status != status || (!sb_it_contains(res.err.data, res.err.len, want) &&
                                    !sb_it_contains(res.out.data, res.out.len, want)))
    sb_test_fail(__FILE__, __LINE__, "%s\n  exit %d: %s%s\n  want %d: %s", text,
                 (int)res.exit_status, res.out.data, res.err.data, status, want);
  sb_it_result_free(&res);
}

/*
 * --check-config, and the start, check the directories the config names: data_dir,
 * archive_dir (archive mode) and log_file's directory must exist or be creatable and
 * be writable; each error names the key and the path (exit 4). A data_dir under a file
 * is data_dir's error, not that of the archive_dir under it. A relative path is
 * refused (exit 3). A directory that can be made is fine, and --check-config makes
 * nothing.
 */
TEST_IMPL(archive_spool_check_config_dirs) {
  uv_loop_t loop;
  char dir[512], file[600], jfile[1200], jdir[1200], cfg[600], text[4000], want[4000];
  char prog[4096], address[256], bind[256], admin[256], admin_bind[256];
  const char* start[] = {prog, "--config", cfg, "--console", NULL};
  sb_it_result_t res;
  uv_fs_t req;
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_program("streambrokerd", prog, sizeof(prog));
  sb_it_tempdir("dirs", dir, sizeof(dir));
  snprintf(file, sizeof(file), "%s/file", dir);
  snprintf(cfg, sizeof(cfg), "%s/streambroker.json", dir);
  sb_it_write_file(file, "a file\n", 7);
  json_str(file, jfile, sizeof(jfile));
  json_str(dir, jdir, sizeof(jdir));

  snprintf(text, sizeof(text), "{\"data_dir\": \"%s/sub\"}", jfile);
  snprintf(want, sizeof(want), "data_dir \"%s/sub\": %s is not a directory", file,
           file);
  check_config(&loop, cfg, text, 4, want);
  snprintf(text, sizeof(text), "{\"data_dir\": \"%s\"}", jfile);
  snprintf(want, sizeof(want), "data_dir \"%s\": %s is not a directory", file, file);
  check_config(&loop, cfg, text, 4, want);
  snprintf(text, sizeof(text), "{\"data_dir\": \"%s/d\", \"archive_dir\": \"%s/a\"}",
           jdir, jfile);
  snprintf(want, sizeof(want), "archive_dir \"%s/a\": %s is not a directory", file,
           file);
  check_config(&loop, cfg, text, 4, want);
  snprintf(text, sizeof(text), "{\"data_dir\": \"%s/d\", \"log_file\": \"%s/x.log\"}",
           jdir, jfile);
  snprintf(want, sizeof(want), "log_file \"%s/x.log\": %s is not a directory", file,
           file);
  check_config(&loop, cfg, text, 4, want);
  /* Forward mode has no archive_dir to check. */
  sb_it_address("dirs-up", address, bind, sizeof(address));
  snprintf(text, sizeof(text),
           "{\"data_dir\": \"%s/d\", \"archive_dir\": \"%s/a\", \"upstream\": \"%s\"}",
           jdir, jfile, address);
  check_config(&loop, cfg, text, 0, "valid");
  /* Directories that can be made: valid, and not made. */
  snprintf(text, sizeof(text),
           "{\"data_dir\": \"%s/new/deeper\", \"log_file\": \"%s/logs/x.log\"}", jdir,
           jdir);
  check_config(&loop, cfg, text, 0, "valid");
  snprintf(want, sizeof(want), "%s/new", dir);
  ASSERT_EQ(uv_fs_stat(NULL, &req, want, NULL), UV_ENOENT);
  uv_fs_req_cleanup(&req);
  /* Relative paths. */
  check_config(&loop, cfg, "{\n  \"data_dir\": \"relative\"\n}", 3,
               ":2: key \"data_dir\": must be an absolute path");
  check_config(&loop, cfg, "{\n  \"log_file\": \"x.log\"\n}", 3,
               ":2: key \"log_file\": must be an absolute path");
  check_config(&loop, cfg, "{\n  \"archive_dir\": \"a/b\"\n}", 3,
               ":2: key \"archive_dir\": must be an absolute path");

  /* The start: the same error, naming data_dir (not archive_dir, under it), exit 4. */
  sb_it_address("dirs", address, bind, sizeof(address));
  sb_it_address("dirs-admin", admin, admin_bind, sizeof(admin));
  snprintf(
      text, sizeof(text),
      "{\"control_pipe\": \"%s\", \"admin_pipe\": \"%s\", \"data_dir\": \"%s/sub\"}",
      address, admin, jfile);
  sb_it_write_file(cfg, text, strlen(text));
  sb_it_run(&loop, start, NULL, "", 0, NULL, 0, &res);
  snprintf(want, sizeof(want), "data_dir \"%s/sub\": %s is not a directory", file,
           file);
  if (res.exit_status != 4 || !sb_it_contains(res.err.data, res.err.len, want) ||
      sb_it_contains(res.err.data, res.err.len, "archive_dir"))
    sb_test_fail(__FILE__, __LINE__, "start: exit %d: %s; want 4: %s",
                 (int)res.exit_status, res.err.data, want);
  sb_it_result_free(&res);

#ifndef _WIN32
  /* A read-only archive directory (as root: a read-only bind mount). */
  if (geteuid() == 0) {
    char ro[700], jro[1400];
    snprintf(ro, sizeof(ro), "%s/ro", dir);
    ASSERT_OK(uv_fs_mkdir(NULL, &req, ro, 0700, NULL));
    uv_fs_req_cleanup(&req);
    if (ro_mount(ro) == 0) {
      json_str(ro, jro, sizeof(jro));
      snprintf(text, sizeof(text), "{\"data_dir\": \"%s/d\", \"archive_dir\": \"%s\"}",
               jdir, jro);
      snprintf(want, sizeof(want),
               "archive_dir \"%s\": cannot write in %s: read-only file system", ro, ro);
      check_config(&loop, cfg, text, 4, want);
      /* And a directory that would have to be made in it. */
      snprintf(text, sizeof(text),
               "{\"data_dir\": \"%s/d\", \"archive_dir\": \"%s/a/b\"}", jdir, jro);
      snprintf(want, sizeof(want),
               "archive_dir \"%s/a/b\": cannot create %s/a/b: cannot write in %s: "
               "read-only file system",
               ro, ro, ro);
      check_config(&loop, cfg, text, 4, want);
      ro_unmount(ro);
    }
  }
#endif
  ASSERT_OK(uv_loop_close(&loop));
}

/* ---- a segment that cannot go on, and what the spool lost ---- */

/* The end of what the spool holds of a stream (its last chunk's), or -1. */
static int64_t spool_end(sb_it_daemon_t* d, const char* name) {
  char sql[512];
  snprintf(sql, sizeof(sql),
           "SELECT ifnull(max(c.end_off), -1) FROM chunks c JOIN streams s ON "
           "s.id = c.sid WHERE s.name = '%s'",
           name);
  return sb_it_spool_int(d, sql);
}

typedef struct {
  sb_it_daemon_t* d;
  const char* name;
  int64_t end;
} spool_end_t;

static int spool_reached(void* arg) {
  spool_end_t* w = arg;
  return spool_end(w->d, w->name) >= w->end;
}

static void wait_spool_end(uv_loop_t* loop, sb_it_daemon_t* d, const char* name,
                           size_t end) {
  spool_end_t w = {d, name, (int64_t)end};
  if (!sb_it_run_until(loop, 30000, spool_reached, &w)) {
    sb_it_daemon_dump(d);
    sb_test_fail(__FILE__, __LINE__, "the spool holds \"%s\" up to %lld, want %zu",
                 name, (long long)spool_end(d, name), end);
  }
}

static const char* jtag(const cJSON* doc, const char* key) {
  const cJSON* v = cJSON_GetObjectItemCaseSensitive(
      cJSON_GetObjectItemCaseSensitive(doc, "tags"), key);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

#ifndef _WIN32
/* The byte offset of datagram k in a framed stream (its length if k is past the end);
 * *complete gets the number of whole datagrams in the first len bytes. */
static size_t dgram_offset(const char* wire, size_t len, uint64_t k,
                           uint64_t* complete) {
  size_t off = 0, at = len;
  uint64_t i = 0;
  while (off < len) {
    uint64_t n = 0;
    int shift = 0;
    size_t p = off;
    if (i == k)
      at = off;
    while (p < len && (wire[p] & 0x80)) {
      n |= (uint64_t)(wire[p++] & 0x7f) << shift;
      shift += 7;
    }
    if (p >= len)
      break;
    n |= (uint64_t)(wire[p++] & 0x7f) << shift;
    if (p + n > len)
      break;
    off = p + (size_t)n;
    i++;
  }
  if (i == k && at == len)
    at = off;
  *complete = i;
  return at;
}
#endif

/*
 * A full disk (a tmpfs, as root) stops a datagram and a binary stream mid-way (the
 * datagram one most likely inside a datagram); while they wait in the spool, their
 * .log files are moved away. Once there is room, each
 * goes on in a new segment (NAME+1) tagged with where it starts: the binary one at
 * the byte its .log ended, the datagram one at the start of the datagram its .log
 * ended in (tagged with that datagram's index). The moved file and the new segment
 * hold the whole stream, nothing skipped.
 */
TEST_IMPL(archive_spool_segment_gone) {
#ifdef _WIN32
  TEST_SKIP("needs a small file system: Linux tmpfs, as root");
#else
  uv_loop_t loop;
  sb_it_daemon_t d;
  sb_client_t* client;
  sb_stream_t *bin, *dg;
  sb_stream_opts_t o;
  sb__buf_t want = {0}, wire = {0};
  char filler[1200], from[1200], to[1200];
  size_t moved_len, seg_len, b;
  char *moved, *seg;
  uint64_t k, complete;
  cJSON* doc;
  FILE* f;
  char* zeros;
  int i;
  if (geteuid() != 0)
    TEST_SKIP("mounting a tmpfs needs root");
  ASSERT_OK(uv_loop_init(&loop));
  /* Slow retries: the datagram stream must not take the room made for the other. */
  sb_it_daemon_start(&d, &loop, "argone", NULL,
                     "\"backoff_initial_ms\": 3000, \"backoff_max_ms\": 3000");
  if (mount("sbargone", d.archive_dir, "tmpfs", 0, "size=4m,mode=0700") != 0) {
    sb_it_daemon_close(&d);
    TEST_SKIP("cannot mount a tmpfs here");
  }
  track_mount(d.archive_dir);
  snprintf(filler, sizeof(filler), "%s/filler", d.archive_dir);
  zeros = calloc(1, 65536);
  ASSERT_NOT_NULL(zeros);
  f = fopen(filler, "wb");
  ASSERT_NOT_NULL(f);
  for (i = 0; i < 60; i++) /* 3,840 KiB of 4 MiB */
    ASSERT_EQ(fwrite(zeros, 1, 65536, f), 65536);
  ASSERT_EQ(fclose(f), 0);
  free(zeros);
  dgram_content("gone/dg", 3000, &wire);
  sb_it_content("gone/bin", 1500000, &want);

  ASSERT_OK(sb_client_open(&client, d.address));
  memset(&o, 0, sizeof(o));
  o.name = "gone/bin";
  o.type = SB_BINARY;
  ASSERT_OK(sb_stream_open(client, &o, &bin));
  o.name = "gone/dg";
  o.type = SB_DATAGRAM;
  ASSERT_OK(sb_stream_open(client, &o, &dg));
  /* The datagram stream fills the disk; 512 KiB more room, and the other does. */
  send_dgrams(dg, "gone/dg", 0, 3000);
  wait_spool_end(&loop, &d, "gone/dg", wire.len);
  ASSERT_EQ(sb_it_count(d.log.data, d.log.len, "the archive cannot write"), 1);
  ASSERT_EQ(truncate(filler, 3328 * 1024), 0);
  ASSERT_OK(sb_stream_write(bin, want.data, 1000000));
  wait_spool_end(&loop, &d, "gone/bin", 1000000);
  ASSERT_EQ(sb_it_count(d.log.data, d.log.len, "the archive cannot write"), 2);

  /* Moved away while they wait; then room again. */
  archive_path(&d, "gone/bin", ".log", from, sizeof(from));
  archive_path(&d, "gone/bin", ".log.moved", to, sizeof(to));
  ASSERT_EQ(rename(from, to), 0);
  archive_path(&d, "gone/dg", ".log", from, sizeof(from));
  archive_path(&d, "gone/dg", ".log.moved", to, sizeof(to));
  ASSERT_EQ(rename(from, to), 0);
  ASSERT_EQ(remove(filler), 0);
  ASSERT_OK(sb_stream_write(bin, want.data + 1000000, 500000));
  send_dgrams(dg, "gone/dg", 3000, 4000);
  ASSERT_OK(sb_stream_close(bin));
  ASSERT_OK(sb_stream_close(dg));
  sb_client_close(client);
  wait_closed(&loop, &d, "gone/bin");
  wait_closed(&loop, &d, "gone/dg");
  ASSERT_EQ(sb_it_count(d.log.data, d.log.len, "the stream goes on in a new segment"),
            2);

  /* The binary stream: the moved .log, then NAME+1 from the byte it ended at. */
  archive_path(&d, "gone/bin", ".log.moved", to, sizeof(to));
  moved = sb_it_read_file(to, &moved_len);
  ASSERT_NOT_NULL(moved);
  archive_path(&d, "gone/bin", "+1.log", from, sizeof(from));
  seg = sb_it_read_file(from, &seg_len);
  ASSERT_NOT_NULL(seg);
  ASSERT_GT(moved_len, 0);
  ASSERT_LT(moved_len, 1000000);
  ASSERT_MEM_EQ(moved, moved_len, want.data, moved_len);
  ASSERT_EQ(moved_len + seg_len, want.len);
  ASSERT_MEM_EQ(seg, seg_len, want.data + moved_len, want.len - moved_len);
  doc = sidecar(&d, "gone/bin", 1);
  ASSERT_NOT_NULL(jtag(doc, "streambroker.offset"));
  ASSERT_EQ(strtoull(jtag(doc, "streambroker.offset"), NULL, 10), moved_len);
  ASSERT(jtrue(doc, "complete"));
  ASSERT_EQ(jnum(doc, "bytes"), (double)seg_len);
  ASSERT_EQ(jnum(doc, "sequence"), 1);
  cJSON_Delete(doc);
  free(moved);
  free(seg);

  /* The datagram stream: NAME+1 starts with whole datagram k, k its tag. */
  dgram_content("gone/dg", 4000, &wire);
  archive_path(&d, "gone/dg", ".log.moved", to, sizeof(to));
  moved = sb_it_read_file(to, &moved_len);
  ASSERT_NOT_NULL(moved);
  archive_path(&d, "gone/dg", "+1.log", from, sizeof(from));
  seg = sb_it_read_file(from, &seg_len);
  ASSERT_NOT_NULL(seg);
  doc = sidecar(&d, "gone/dg", 1);
  ASSERT_NOT_NULL(jtag(doc, "streambroker.offset"));
  k = strtoull(jtag(doc, "streambroker.offset"), NULL, 10);
  ASSERT_GT(moved_len, 0);
  ASSERT_MEM_EQ(moved, moved_len, wire.data, moved_len); /* a prefix of the stream */
  dgram_offset(moved, moved_len, 0, &complete);
  ASSERT_EQ(complete, k); /* the new segment starts with the first datagram not whole */
  b = dgram_offset(wire.data, wire.len, k, &complete);
  ASSERT_LE(b, moved_len);
  ASSERT_EQ(seg_len, wire.len - b);
  ASSERT_MEM_EQ(seg, seg_len, wire.data + b, wire.len - b);
  ASSERT_EQ(jnum(doc, "datagrams"), (double)(4000 - k));
  ASSERT(jtrue(doc, "complete"));
  cJSON_Delete(doc);
  free(moved);
  free(seg);
  sb_it_daemon_kill(&d, SIGTERM);
  sb_it_daemon_wait_exit(&d, 30000);
  ro_unmount(d.archive_dir);
  sb_it_daemon_close(&d);
  sb__buf_free(&want);
  sb__buf_free(&wire);
  ASSERT_OK(uv_loop_close(&loop));
#endif
}

/*
 * The spool at its cap with "drop-oldest" while the archive directory is blocked: the
 * oldest chunks of a waiting stream go. Once the archive can write, the stream is
 * archived from the first chunk left, tagged with where that is; its sidecar records
 * the gap and says it is incomplete (lost_bytes), and the loss is counted.
 */
TEST_IMPL(archive_spool_dropped) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  sb_client_t* client;
  sb_stream_t* s;
  sb_stream_opts_t o;
  sb__buf_t want = {0};
  size_t len;
  char path[1200];
  char* got;
  uint64_t at;
  cJSON *doc, *gap, *st;
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start(&d, &loop, "ardrop", NULL,
                     FAST_RETRIES ", \"spool_max_bytes\": 1048576, "
                                  "\"spool_full_policy\": \"drop-oldest\"");
  block_archive(&d);
  ASSERT_OK(sb_client_open(&client, d.address));
  memset(&o, 0, sizeof(o));
  o.name = "drop/s";
  ASSERT_OK(sb_stream_open(client, &o, &s));
  sb_it_content("drop/s", 4000000, &want);
  ASSERT_OK(sb_stream_write(s, want.data, want.len));
  ASSERT_OK(sb_stream_close(s));
  sb_client_close(client);
  wait_spool_end(&loop, &d, "drop/s", want.len);
  unblock_archive(&d);
  wait_closed(&loop, &d, "drop/s");
  ASSERT(sb_it_contains(d.log.data, d.log.len, "are no longer in the spool"));
  ASSERT(sb_it_contains(d.log.data, d.log.len, "\"drop/s\": archive incomplete"));

  doc = sidecar(&d, "drop/s", 0);
  ASSERT_NOT_NULL(jtag(doc, "streambroker.offset"));
  at = strtoull(jtag(doc, "streambroker.offset"), NULL, 10);
  ASSERT_GT(at, 0);
  ASSERT_LT(at, want.len);
  archive_path(&d, "drop/s", ".log", path, sizeof(path));
  got = sb_it_read_file(path, &len);
  ASSERT_NOT_NULL(got);
  ASSERT_MEM_EQ(got, len, want.data + at, want.len - at);
  free(got);
  gap = cJSON_GetObjectItemCaseSensitive(doc, "gap");
  ASSERT_NOT_NULL(gap);
  ASSERT_EQ(jnum(gap, "from"), 0);
  ASSERT_EQ(jnum(gap, "to"), (double)at);
  ASSERT(!jtrue(doc, "complete"));
  ASSERT_EQ(jnum(doc, "lost_bytes"), (double)at);
  ASSERT_EQ(jnum(doc, "dropped_bytes"), (double)at);
  cJSON_Delete(doc);
  st = status(&loop, &d);
  ASSERT_EQ(sb_it_json_num(st, "counters.bytes_dropped.spool_full"), (double)at);
  ASSERT_EQ(sb_it_json_num(st, "counters.archive_bytes_lost"), (double)at);
  ASSERT_EQ(sb_it_json_num(st, "counters.archive_gaps"), 1);
  cJSON_Delete(st);
  sb_it_daemon_close(&d);
  sb__buf_free(&want);
  ASSERT_OK(uv_loop_close(&loop));
}
