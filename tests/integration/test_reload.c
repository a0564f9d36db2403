/*
 * test_reload.c - the config re-read at run time: SIGHUP (POSIX) and sbctl reload
 * (both platforms) with a stream open, a log file moved away as logrotate does, and a
 * config that does not parse.
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "helpers.h"
#include "internal.h"
#include "streams.h"
#include "task.h"

/* Replaces the first `from` in the daemon's config file with `to`. */
static void config_edit(sb_it_daemon_t* d, const char* from, const char* to) {
  size_t len;
  char* text = sb_it_read_file(d->config_path, &len);
  char* at;
  sb__buf_t out = {0};
  ASSERT_NOT_NULL(text);
  at = strstr(text, from);
  if (at == NULL)
    sb_test_fail(__FILE__, __LINE__, "no \"%s\" in the config: %s", from, text);
  sb__buf_append(&out, text, (size_t)(at - text));
  sb__buf_append(&out, to, strlen(to));
  sb__buf_append(&out, at + strlen(from), strlen(at + strlen(from)));
  sb_it_write_file(d->config_path, out.data, out.len);
  sb__buf_free(&out);
  free(text);
}

/* sbctl reload; its exit status, with what it printed in res. */
static int64_t sbctl_reload(sb_it_daemon_t* d, sb_it_result_t* res) {
  sb_it_run_tool(d->loop, "sbctl", SB_IT_ARGS("--admin", d->admin_address, "reload"),
                 NULL, 0, res);
  return res->exit_status;
}

/*
 * A stream is open and has written; the log file is moved away (POSIX: as logrotate
 * does before it sends SIGHUP); the config changes log_level to debug, a limit (live)
 * and synchronous (restart needed). After SIGHUP (POSIX) or sbctl reload (Windows) the
 * service still runs, a new log file holds the reload's line, which names what
 * changed and what waits for a restart, debug lines appear, and the stream goes on:
 * every byte written before and after is archived, in one segment.
 */
TEST_IMPL(reload_live_stream) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  sb_client_t* c;
  sb_stream_t* s;
  sb_stream_opts_t o;
  sb_it_result_t res;
  sb__buf_t got = {0};
  char moved[700];
  size_t len;
  char* text;
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start_logfile(&d, &loop, "reload", NULL,
                             "\"log_level\": \"info\", \"max_streams\": 100",
                             "svc.log");
  ASSERT_OK(sb_client_open(&c, d.address));
  memset(&o, 0, sizeof(o));
  o.name = "reload/live";
  ASSERT_OK(sb_stream_open(c, &o, &s));
  ASSERT_OK(sb_stream_write(s, "before\n", 7));
  sb_it_wait_file(&loop, d.log_file, "\"reload/live\" opened", 1, 30000);

  config_edit(&d, "\"log_level\": \"info\"", "\"log_level\": \"debug\"");
  config_edit(&d, "\"max_streams\": 100",
              "\"max_streams\": 50, \"synchronous\": \"full\"");
  if (!sb_it_is_windows()) {
    /* logrotate's "create" way: the file is renamed, then the service told. */
    snprintf(moved, sizeof(moved), "%s.1", d.log_file);
    ASSERT_OK(rename(d.log_file, moved));
    sb_it_daemon_kill(&d, SIGHUP);
  } else {
    ASSERT_EQ(sbctl_reload(&d, &res), 0);
    ASSERT(sb_it_contains(res.out.data, res.out.len, "log_level"));
    ASSERT(sb_it_contains(res.out.data, res.out.len, "restart needed  synchronous"));
    sb_it_result_free(&res);
  }
  sb_it_wait_file(&loop, d.log_file, "reloaded ", 1, 30000);
  ASSERT(d.running);
  text = sb_it_read_file(d.log_file, &len);
  ASSERT_NOT_NULL(text);
  ASSERT(sb_it_contains(text, len, "log_level, max_streams changed"));
  ASSERT(sb_it_contains(text, len, "synchronous changed in"));
  free(text);
  if (!sb_it_is_windows()) {
    /* The moved file ends where the new one starts: nothing of the reload in it. */
    text = sb_it_read_file(moved, &len);
    ASSERT_NOT_NULL(text);
    ASSERT(sb_it_contains(text, len, "serving "));
    ASSERT(!sb_it_contains(text, len, "reloaded "));
    free(text);
  }

  /* The stream survived, and the new level applies: a client's end is a debug line. */
  ASSERT_OK(sb_stream_write(s, "after\n", 6));
  ASSERT_OK(sb_stream_close(s));
  sb_client_close(c);
  sb_it_wait_file(&loop, d.log_file, "client finished after 13 bytes", 1, 30000);
  sb_it_wait_settled1(&loop, d.archive_dir, "reload/live");
  ASSERT_EQ(sb_it_reassemble(d.archive_dir, "reload/live", &got, 0, NULL), 1);
  ASSERT_EQ(got.len, 13);
  ASSERT_OK(memcmp(got.data, "before\nafter\n", 13));
  sb__buf_free(&got);

  /* sbctl reload of the same file: nothing changed, synchronous still waits. */
  ASSERT_EQ(sbctl_reload(&d, &res), 0);
  ASSERT(sb_it_contains(res.out.data, res.out.len, "applied         (none)"));
  ASSERT(sb_it_contains(res.out.data, res.out.len, "restart needed  synchronous"));
  sb_it_result_free(&res);
  if (!sb_it_is_windows()) {
    sb_it_daemon_kill(&d, SIGTERM);
    sb_it_daemon_wait_exit(&d, 30000);
    ASSERT_EQ(d.exit_status, 0);
  }
  sb_it_daemon_close(&d);
  ASSERT_OK(uv_loop_close(&loop));
}

/*
 * A config that does not parse: SIGHUP (POSIX) logs why and changes nothing; sbctl
 * reload says why and exits 1; the service serves on with the config it had (a
 * stream opened afterwards is archived), and the next good config applies.
 */
TEST_IMPL(reload_bad_config) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  sb_it_result_t res;
  size_t len;
  char* text;
  char name[64];
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start_logfile(&d, &loop, "reloadbad", NULL, "\"log_level\": \"info\"",
                             "svc.log");
  config_edit(&d, "\"log_level\": \"info\"", "\"log_level\": \"loud\"");
  if (!sb_it_is_windows()) {
    sb_it_daemon_kill(&d, SIGHUP);
    sb_it_wait_file(&loop, d.log_file, "reload refused", 1, 30000);
  }
  ASSERT_EQ(sbctl_reload(&d, &res), 1);
  ASSERT(sb_it_contains(res.err.data, res.err.len, "log_level"));
  sb_it_result_free(&res);
  sb_it_wait_file(&loop, d.log_file, "reload refused", sb_it_is_windows() ? 1 : 2,
                  30000);
  ASSERT(d.running);
  snprintf(name, sizeof(name), "reloadbad/after");
  ASSERT_OK(sb_it_write_stream(d.address, name, 1000));
  sb_it_wait_settled1(&loop, d.archive_dir, name);

  config_edit(&d, "\"log_level\": \"loud\"", "\"log_level\": \"debug\"");
  ASSERT_EQ(sbctl_reload(&d, &res), 0);
  sb_it_result_free(&res);
  sb_it_wait_file(&loop, d.log_file, "reloaded ", 1, 30000);
  text = sb_it_read_file(d.log_file, &len);
  ASSERT_NOT_NULL(text);
  ASSERT(sb_it_contains(text, len, "log_level changed"));
  free(text);
  sb_it_daemon_close(&d);
  ASSERT_OK(uv_loop_close(&loop));
}
