/*
 * test_instance.c - one service per data directory: a second streambrokerd on the same
 * data_dir (an administrator's console beside the service) refuses to start and says
 * who holds it, never touching the first one's spool; the lock goes with the process
 * that held it, however it ends.
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "helpers.h"
#include "streams.h"
#include "task.h"

/* Writes a config for another instance: its own pipes, the data_dir and upstream
 * given, into dir/streambroker.json (path returned in cfg_path). */
static void write_other_config(const char* tag, const char* dir, const char* data_dir,
                               const char* upstream, char* address, size_t address_size,
                               char* cfg_path, size_t cfg_size) {
  char admin[256], bind[256], text[4096];
  char* esc_addr;
  sb_it_address(tag, address, bind, address_size);
  snprintf(text, sizeof(text), "%s-admin", tag);
  sb_it_address(text, admin, bind, sizeof(admin));
  snprintf(cfg_path, cfg_size, "%s/streambroker.json", dir);
  {
    cJSON* c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "control_pipe", address);
    cJSON_AddStringToObject(c, "admin_pipe", admin);
    cJSON_AddStringToObject(c, "data_dir", data_dir);
    if (upstream != NULL)
      cJSON_AddStringToObject(c, "upstream", upstream);
    cJSON_AddStringToObject(c, "log_level", "debug");
    esc_addr = cJSON_Print(c);
    cJSON_Delete(c);
  }
  sb_it_write_file(cfg_path, esc_addr, strlen(esc_addr));
  free(esc_addr);
}

/* Runs streambrokerd --console on a config; it must refuse to start (exit 4). */
static void expect_refused(uv_loop_t* loop, const char* cfg_path, sb_it_result_t* res) {
  char prog[4096];
  const char* argv[] = {prog, "--config", cfg_path, "--console", NULL};
  sb_it_program("streambrokerd", prog, sizeof(prog));
  sb_it_run(loop, argv, NULL, "", 0, NULL, 0, res);
  if (res->exit_status != 4) {
    fwrite(res->err.data, 1, res->err.len, stderr);
    ASSERT_EQ(res->exit_status, 4);
  }
}

static int spool_has_four(void* arg) {
  return sb_it_spool_int(arg, "SELECT count(*) FROM streams") == 4;
}

/*
 * B spools streams for an absent upstream. A second instance with pipes of its own
 * and B's data_dir refuses to start, naming the directory and B's pid; it leaves B's
 * spool alone (before the lock it took B's streams and delivered them again). A third
 * with B's control pipe and a data_dir of its own is refused by the pipe's probe,
 * which B counts as an empty connection, not as a bad handshake. Then the upstream
 * comes, and every stream arrives once.
 */
TEST_IMPL(instance_second_on_same_data_dir) {
  uv_loop_t loop;
  sb_it_daemon_t up, b;
  sb_it_result_t res;
  char dir[512], dir3[512], address[256], cfg_path[700], needle[600];
  int i, n = 4;
  cJSON* st;
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_start_upstream_down(&loop, &up, "inu", &b, "inb",
                            "\"backoff_initial_ms\": 20, \"backoff_max_ms\": 200");
  for (i = 0; i < n; i++) {
    char name[64];
    snprintf(name, sizeof(name), "instance/s%d", i);
    ASSERT_OK(sb_it_write_stream(b.address, name, 30000 + (size_t)i * 1000));
  }
  sb_it_daemon_wait_log(&b, "client finished after", (size_t)n, 30000);
  ASSERT(sb_it_run_until(&loop, 30000, spool_has_four, &b));

  /* The same data_dir, pipes of its own. */
  sb_it_tempdir("in2", dir, sizeof(dir));
  write_other_config("in2", dir, b.dir, up.address, address, sizeof(address), cfg_path,
                     sizeof(cfg_path));
  expect_refused(&loop, cfg_path, &res);
  snprintf(needle, sizeof(needle), "is in use by another streambrokerd (pid %d,",
           b.proc.pid);
  if (!sb_it_contains(res.err.data, res.err.len, needle) ||
      !sb_it_contains(res.err.data, res.err.len, b.dir)) {
    fwrite(res.err.data, 1, res.err.len, stderr);
    ASSERT(0 && "the refusal names the data_dir and the holder's pid");
  }
  ASSERT(sb_it_contains(res.err.data, res.err.len, "in a console"));
  sb_it_result_free(&res);
  ASSERT_EQ(sb_it_spool_int(&b, "SELECT count(*) FROM streams"), n);

  /* B's control pipe, a data_dir of its own. */
  sb_it_tempdir("in3", dir3, sizeof(dir3));
  {
    char cfg3[700];
    cJSON* c = cJSON_CreateObject();
    char* text;
    char admin[256], bind[256];
    sb_it_address("in3-admin", admin, bind, sizeof(admin));
    cJSON_AddStringToObject(c, "control_pipe", b.address);
    cJSON_AddStringToObject(c, "admin_pipe", admin);
    cJSON_AddStringToObject(c, "data_dir", dir3);
    cJSON_AddStringToObject(c, "upstream", up.address);
    text = cJSON_Print(c);
    cJSON_Delete(c);
    snprintf(cfg3, sizeof(cfg3), "%s/streambroker.json", dir3);
    sb_it_write_file(cfg3, text, strlen(text));
    free(text);
    expect_refused(&loop, cfg3, &res);
    ASSERT(sb_it_contains(res.err.data, res.err.len, "another instance is serving it"));
    sb_it_result_free(&res);
  }
  st = sb_it_admin(&loop, &b, "status");
  ASSERT(!sb_it_contains(b.log.data, b.log.len, "bad handshake"));
  /* POSIX probes by connecting; Windows asks WaitNamedPipe, which B never sees. */
  if (!sb_it_is_windows())
    ASSERT_GE(sb_it_json_num(st, "counters.connections_empty"), 1);
  cJSON_Delete(st);

  /* The upstream comes: each stream arrives, once. */
  sb_it_daemon_restart(&up);
  for (i = 0; i < n; i++) {
    char name[64];
    sb_it_segment_t* seg;
    snprintf(name, sizeof(name), "instance/s%d", i);
    sb_it_expect_arrived(&loop, &b, &up, name, 30000 + (size_t)i * 1000, 1);
    ASSERT_EQ(sb_it_segments(up.archive_dir, name, &seg), 1);
    free(seg);
  }
  sb_it_daemon_close(&b);
  sb_it_daemon_close(&up);
  ASSERT_OK(uv_loop_close(&loop));
}

/*
 * The lock belongs to the process: one killed (SIGKILL; TerminateProcess on Windows)
 * leaves the lock file behind but not its lock, and a new instance starts on the
 * directory at once and says it is the holder now.
 */
TEST_IMPL(instance_lock_survives_a_kill) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  char path[700], needle[64];
  char* text;
  size_t len;
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start(&d, &loop, "inlk", NULL, NULL);
  snprintf(path, sizeof(path), "%s/streambrokerd.lock", d.dir);
  ASSERT((text = sb_it_read_file(path, &len)) != NULL);
  snprintf(needle, sizeof(needle), "pid %d, ", d.proc.pid);
  ASSERT(sb_it_contains(text, len, needle));
  free(text);
  sb_it_daemon_kill(&d, SIGKILL);
  sb_it_daemon_wait_exit(&d, 30000);
  sb_it_daemon_restart(&d);
  ASSERT((text = sb_it_read_file(path, &len)) != NULL);
  snprintf(needle, sizeof(needle), "pid %d, ", d.proc.pid);
  ASSERT(sb_it_contains(text, len, needle));
  free(text);
  sb_it_daemon_close(&d);
  ASSERT_OK(uv_loop_close(&loop));
}
