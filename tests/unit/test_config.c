/*
 * test_config.c - streambroker.json parsing and validation, the key table and the
 * shipped config (config/), the log's line format, and the platform's path helpers.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "internal.h"
#include "task.h"

static int parse(sb__config_t* cfg, const char* text, char* err, size_t size) {
  sb__config_defaults(cfg);
  err[0] = '\0';
  return sb__config_parse(cfg, text, strlen(text), "test.json", err, size);
}

/* Parses text over what cfg holds already (a second file over the first). */
static int reparse(sb__config_t* cfg, const char* text, char* err, size_t size) {
  return sb__config_parse(cfg, text, strlen(text), "more.json", err, size);
}

/* Parses text over the defaults and expects SB_ECONFIG with exactly the message want.
 */
#define EXPECT_ERROR(text, want) expect_error(__LINE__, text, want)
static void expect_error(int line, const char* text, const char* want) {
  sb__config_t cfg;
  char err[512];
  int r = parse(&cfg, text, err, sizeof(err));
  sb__config_free(&cfg);
  if (r != SB_ECONFIG || strcmp(err, want) != 0)
    sb_test_fail(__FILE__, line,
                 "config:\n%s\n  got %s \"%s\"\n  want SB_ECONFIG \"%s\"", text,
                 sb_test_err_name(r), err, want);
}

/* An address of the other platform's kind, and what the error says on this one. */
static int on_unix(void) {
  return strncmp(sb__default_control_pipe(), "unix:", 5) == 0;
}

static const char* address_error(void) {
  return on_unix() ? "must be an address unix:/ABSOLUTE/PATH (104 bytes at most)"
                   : "must be an address net.pipe:NAME";
}

/* A path in the system's temp directory that is unique to this process. */
static char* temp_path(const char* name) {
  char tmp[1024], leaf[128];
  size_t len = sizeof(tmp);
  ASSERT_OK(uv_os_tmpdir(tmp, &len));
  snprintf(leaf, sizeof(leaf), "sbunit-%d-%s", (int)uv_os_getpid(), name);
  return sb__path_join(tmp, leaf);
}

static char* read_all(const char* path, size_t* len) {
  FILE* f = fopen(path, "rb");
  char* data = NULL;
  size_t n = 0, got;
  if (f == NULL)
    sb_test_fail(__FILE__, __LINE__, "cannot open %s", path);
  data = malloc(1);
  do {
    data = realloc(data, n + 4096 + 1);
    ASSERT_NOT_NULL(data);
    got = fread(data + n, 1, 4096, f);
    n += got;
  } while (got > 0);
  fclose(f);
  data[n] = '\0';
  if (len)
    *len = n;
  return data;
}

/* What a writer (sb__config_write_table, ...) prints, through a real file. */
static char* capture(void (*writer)(FILE*), const char* name) {
  char* path = temp_path(name);
  FILE* f = fopen(path, "wb");
  char* text;
  ASSERT_NOT_NULL(f);
  writer(f);
  ASSERT_EQ(fclose(f), 0);
  text = read_all(path, NULL);
  remove(path);
  free(path);
  return text;
}

TEST_IMPL(config_empty_object_defaults) {
  sb__config_t cfg;
  char err[256];
  char* archive = sb__path_join(sb__default_data_dir(), "archive");
  ASSERT_OK(parse(&cfg, "{}", err, sizeof(err)));
  ASSERT_STR_EQ(cfg.control_pipe, sb__default_control_pipe());
  ASSERT_NULL(cfg.upstream);
  ASSERT_STR_EQ(cfg.data_dir, sb__default_data_dir());
  ASSERT_STR_EQ(cfg.archive_dir, archive);
  ASSERT_UEQ(cfg.handshake_timeout_ms, 5000);
  ASSERT_UEQ(cfg.max_frame_size, 1048576);
  ASSERT_UEQ(cfg.max_datagram_size, 10485760);
  ASSERT_UEQ(cfg.max_streams, 8192);
  ASSERT_UEQ(cfg.max_streams_per_client, 4096);
  ASSERT_UEQ(cfg.backoff_initial_ms, 100);
  ASSERT_UEQ(cfg.backoff_max_ms, 10000);
  ASSERT_UEQ(cfg.upstream_high_watermark, 1048576);
  /* A broker's replay window must cover what a default upstream broker can hold
   * read and not stored (its watermark, one read, socket buffers). */
  ASSERT_UEQ(cfg.replay_window, 4194304);
  ASSERT(cfg.replay_window >= cfg.upstream_high_watermark + SB__READ_SIZE + 1048576);
  ASSERT_UEQ(cfg.upstream_max_refusals, 5);
  ASSERT_UEQ(cfg.spool_reserve_bytes, 16777216);
  ASSERT_EQ(cfg.log_level, SB_LOG_INFO);
  ASSERT_STR_EQ(cfg.log_file, "");
  sb__config_free(&cfg);
  sb__config_free(&cfg); /* twice is fine */
  /* Whitespace around the object, and a UTF-8 byte order mark, are fine too. */
  ASSERT_OK(parse(&cfg, " \r\n\t{ } \n", err, sizeof(err)));
  sb__config_free(&cfg);
  ASSERT_OK(parse(&cfg, "\xEF\xBB\xBF{}", err, sizeof(err)));
  sb__config_free(&cfg);
  free(archive);
}

/* An absolute path of this platform's kind, as a JSON string's contents. */
static const char* abs_path(const char* rest, char* out, size_t size) {
  snprintf(out, size, "%s%s", on_unix() ? "/" : "C:/", rest);
  return out;
}

TEST_IMPL(config_every_key) {
  sb__config_t cfg;
  char err[256], text[2048], d[32], ar[32], log[32];
  const char* addr = sb__default_control_pipe();
  snprintf(
      text, sizeof(text),
      "{\"control_pipe\": \"%s-x\", \"upstream\": \"%s-up\", \"data_dir\": \"%s\",\n"
      " \"archive_dir\": \"%s\", \"handshake_timeout_ms\": 100,\n"
      " \"max_frame_size\": 64, \"max_datagram_size\": 1, \"max_streams\": 1000000,\n"
      " \"max_streams_per_client\": 7, \"backoff_initial_ms\": 5,\n"
      " \"backoff_max_ms\": 30000, \"upstream_high_watermark\": 1073741824,\n"
      " \"log_level\": \"debug\", \"log_file\": \"%s\"}",
      addr, addr, abs_path("d", d, sizeof(d)), abs_path("ar", ar, sizeof(ar)),
      abs_path("x.log", log, sizeof(log)));
  ASSERT_OK(parse(&cfg, text, err, sizeof(err)));
  snprintf(text, sizeof(text), "%s-x", addr);
  ASSERT_STR_EQ(cfg.control_pipe, text);
  snprintf(text, sizeof(text), "%s-up", addr);
  ASSERT_STR_EQ(cfg.upstream, text);
  ASSERT_STR_EQ(cfg.data_dir, d);
  ASSERT_STR_EQ(cfg.archive_dir, ar);
  ASSERT_UEQ(cfg.handshake_timeout_ms, 100);
  ASSERT_UEQ(cfg.max_frame_size, 64);
  ASSERT_UEQ(cfg.max_datagram_size, 1);
  ASSERT_UEQ(cfg.max_streams, 1000000);
  ASSERT_UEQ(cfg.max_streams_per_client, 7);
  ASSERT_UEQ(cfg.backoff_initial_ms, 5);
  ASSERT_UEQ(cfg.backoff_max_ms, 30000);
  ASSERT_UEQ(cfg.upstream_high_watermark, 1073741824);
  ASSERT_EQ(cfg.log_level, SB_LOG_DEBUG);
  ASSERT_STR_EQ(cfg.log_file, log);
  sb__config_free(&cfg);
  /* Every level name, and integers written with an exponent or a zero fraction. */
  ASSERT_OK(parse(&cfg,
                  "{\"log_level\": \"error\", \"max_streams\": 1e3,\n"
                  " \"max_streams_per_client\": 2.0}",
                  err, sizeof(err)));
  ASSERT_EQ(cfg.log_level, SB_LOG_ERROR);
  ASSERT_UEQ(cfg.max_streams, 1000);
  ASSERT_UEQ(cfg.max_streams_per_client, 2);
  sb__config_free(&cfg);
  ASSERT_OK(parse(&cfg, "{\"log_level\": \"warn\"}", err, sizeof(err)));
  ASSERT_EQ(cfg.log_level, SB_LOG_WARN);
  sb__config_free(&cfg);
}

/* archive_dir "" (or absent) is DATA_DIR/archive, for the data_dir of the file. */
TEST_IMPL(config_archive_dir_follows_data_dir) {
  sb__config_t cfg;
  char err[256], text[256], sb[32], other[32], a[32];
  char* want;
  abs_path("srv/sb", sb, sizeof(sb));
  abs_path("srv/other", other, sizeof(other));
  abs_path("a", a, sizeof(a));
  want = sb__path_join(sb, "archive");
  snprintf(text, sizeof(text), "{\"data_dir\": \"%s\"}", sb);
  ASSERT_OK(parse(&cfg, text, err, sizeof(err)));
  ASSERT_STR_EQ(cfg.archive_dir, want);
  sb__config_free(&cfg);
  snprintf(text, sizeof(text), "{\"archive_dir\": \"\", \"data_dir\": \"%s\"}", sb);
  ASSERT_OK(parse(&cfg, text, err, sizeof(err)));
  ASSERT_STR_EQ(cfg.archive_dir, want);
  /* A second file over the first: still derived from the latest data_dir ... */
  free(want);
  want = sb__path_join(other, "archive");
  snprintf(text, sizeof(text), "{\"data_dir\": \"%s\"}", other);
  ASSERT_OK(reparse(&cfg, text, err, sizeof(err)));
  ASSERT_STR_EQ(cfg.archive_dir, want);
  /* ... until it is set explicitly, which then stays. */
  snprintf(text, sizeof(text), "{\"archive_dir\": \"%s\"}", a);
  ASSERT_OK(reparse(&cfg, text, err, sizeof(err)));
  snprintf(text, sizeof(text), "{\"data_dir\": \"%s\"}", sb);
  ASSERT_OK(reparse(&cfg, text, err, sizeof(err)));
  ASSERT_STR_EQ(cfg.archive_dir, a);
  sb__config_free(&cfg);
  free(want);
}

TEST_IMPL(config_unknown_key_line) {
  EXPECT_ERROR("{\n"
               "  \"max_streams\": 10,\n"
               "\n"
               "  \"log_level\": \"info\", \"bogus\": 1\n"
               "}",
               "test.json:4: key \"bogus\": unknown key");
  EXPECT_ERROR("{\"Max_Streams\": 1}", "test.json:1: key \"Max_Streams\": unknown key");
}

TEST_IMPL(config_wrong_type) {
  EXPECT_ERROR(
      "{\n  \"max_streams\": \"10\"\n}",
      "test.json:2: key \"max_streams\": must be an integer from 1 to 1000000");
  EXPECT_ERROR(
      "{\"max_streams\": true}",
      "test.json:1: key \"max_streams\": must be an integer from 1 to 1000000");
  EXPECT_ERROR(
      "{\"max_streams\": null}",
      "test.json:1: key \"max_streams\": must be an integer from 1 to 1000000");
  EXPECT_ERROR("{\"log_file\": 5}", "test.json:1: key \"log_file\": must be a string");
  EXPECT_ERROR("{\"data_dir\": null}",
               "test.json:1: key \"data_dir\": must be a string");
  EXPECT_ERROR("{\"archive_dir\": [\"a\"]}",
               "test.json:1: key \"archive_dir\": must be a string");
  EXPECT_ERROR("{\"control_pipe\": null}",
               "test.json:1: key \"control_pipe\": must be a string");
  EXPECT_ERROR("{\"upstream\": {}}",
               "test.json:1: key \"upstream\": must be a string or null");
  EXPECT_ERROR("{\"log_level\": 3}",
               "test.json:1: key \"log_level\": must be one of \"error\", \"warn\", "
               "\"info\", \"debug\"");
  EXPECT_ERROR("{\"log_level\": \"INFO\"}",
               "test.json:1: key \"log_level\": must be one of \"error\", \"warn\", "
               "\"info\", \"debug\"");
  EXPECT_ERROR("{\"data_dir\": \"\"}",
               "test.json:1: key \"data_dir\": must not be empty");
}

TEST_IMPL(config_out_of_range) {
  EXPECT_ERROR(
      "{\"max_streams\": 0}",
      "test.json:1: key \"max_streams\": must be an integer from 1 to 1000000");
  EXPECT_ERROR(
      "{\"max_streams\": 1000001}",
      "test.json:1: key \"max_streams\": must be an integer from 1 to 1000000");
  EXPECT_ERROR(
      "{\"max_streams\": -1}",
      "test.json:1: key \"max_streams\": must be an integer from 1 to 1000000");
  EXPECT_ERROR(
      "{\"handshake_timeout_ms\": 99}",
      "test.json:1: key \"handshake_timeout_ms\": must be an integer from 100 to "
      "600000");
  EXPECT_ERROR(
      "{\"max_frame_size\": 1048577}",
      "test.json:1: key \"max_frame_size\": must be an integer from 64 to 1048576");
  EXPECT_ERROR(
      "{\"upstream_high_watermark\": 4095}",
      "test.json:1: key \"upstream_high_watermark\": must be an integer from 4096 "
      "to 1073741824");
  EXPECT_ERROR("{\"max_datagram_size\": 1e400}",
               "test.json:1: key \"max_datagram_size\": must be an integer from 1 to "
               "10485760");
  EXPECT_ERROR(
      "{\"backoff_max_ms\": 18446744073709551616}",
      "test.json:1: key \"backoff_max_ms\": must be an integer from 1 to 30000");
}

TEST_IMPL(config_non_integer) {
  EXPECT_ERROR(
      "{\"handshake_timeout_ms\": 1000.5}",
      "test.json:1: key \"handshake_timeout_ms\": must be an integer from 100 to "
      "600000");
  EXPECT_ERROR(
      "{\"max_streams\": 15e-1}",
      "test.json:1: key \"max_streams\": must be an integer from 1 to 1000000");
}

TEST_IMPL(config_duplicate_key) {
  EXPECT_ERROR("{\n\"max_streams\": 1,\n\n\"max_streams\": 1}",
               "test.json:4: key \"max_streams\": duplicate key");
  /* Unknown keys are reported first, where they first appear. */
  EXPECT_ERROR("{\"x\": 1,\n\"x\": 2}", "test.json:1: key \"x\": unknown key");
}

TEST_IMPL(config_syntax_error_line) {
  EXPECT_ERROR("{\n  \"max_streams\": 1,,\n  \"log_file\": \"\"\n}",
               "test.json:2: invalid JSON near '\"max_streams\": 1,,'");
  /* A trailing comma: cJSON stops at the '}' where it wanted a key. */
  EXPECT_ERROR("{\n  \"max_streams\": 1,\n}", "test.json:3: invalid JSON near '}'");
  EXPECT_ERROR("{\n\n  \"max_streams\" 1\n}",
               "test.json:3: invalid JSON near '\"max_streams\" 1'");
  EXPECT_ERROR("{\"log_level\": info}",
               "test.json:1: invalid JSON near '{\"log_level\": info}'");
  EXPECT_ERROR("", "test.json:1: invalid JSON near the end of the text");
  EXPECT_ERROR("\n\n", "test.json:3: invalid JSON near the end of the text");
  EXPECT_ERROR("{\n\"max_streams\": 1\n",
               "test.json:2: invalid JSON near '\"max_streams\": 1'");
  /* A long line is quoted around the error only, control characters as '?'. */
  EXPECT_ERROR(
      "{\"log_file\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\t\"max_streams\": x}",
      "test.json:1: invalid JSON near 'aa\",?\"max_streams\": x}'");
}

TEST_IMPL(config_comment_is_syntax_error) {
  EXPECT_ERROR("{\n  \"max_streams\": 1\n  // the limit\n}",
               "test.json:3: invalid JSON near '// the limit'");
  EXPECT_ERROR("# streambroker\n{}", "test.json:1: invalid JSON near '# streambroker'");
  EXPECT_ERROR("{ /* c */ }", "test.json:1: invalid JSON near '{ /* c */ }'");
}

TEST_IMPL(config_trailing_text) {
  EXPECT_ERROR("{}\n\n}", "test.json:3: invalid JSON near '}'");
  EXPECT_ERROR("{} {}", "test.json:1: invalid JSON near '{} {}'");
  {
    sb__config_t cfg;
    char err[256];
    sb__config_defaults(&cfg);
    /* A NUL byte inside the given length is not the end of the text. */
    ASSERT_ERR(sb__config_parse(&cfg, "{}\0{}", 5, "z.json", err, sizeof(err)),
               SB_ECONFIG);
    ASSERT_STR_EQ(err, "z.json:1: invalid JSON near '{}?{}'");
    sb__config_free(&cfg);
  }
}

TEST_IMPL(config_top_level_not_object) {
  EXPECT_ERROR("[1, 2]", "test.json:1: the config must be a JSON object, not an array");
  EXPECT_ERROR("\n\n\"x\"",
               "test.json:3: the config must be a JSON object, not a string");
  EXPECT_ERROR("null", "test.json:1: the config must be a JSON object, not null");
  EXPECT_ERROR("12", "test.json:1: the config must be a JSON object, not a number");
}

TEST_IMPL(config_null_upstream) {
  sb__config_t cfg;
  char err[256], text[512];
  snprintf(text, sizeof(text), "{\"upstream\": \"%s\"}", sb__default_control_pipe());
  ASSERT_OK(parse(&cfg, text, err, sizeof(err)));
  ASSERT_STR_EQ(cfg.upstream, sb__default_control_pipe());
  /* A later file sets archive mode again. */
  ASSERT_OK(reparse(&cfg, "{\"upstream\": null}", err, sizeof(err)));
  ASSERT_NULL(cfg.upstream);
  sb__config_free(&cfg);
}

TEST_IMPL(config_bad_address) {
  const char* bad[] = {"",
                       "streambroker",
                       "tcp:127.0.0.1:1",
                       "unix:",
                       "unix:relative",
                       "net.pipe:",
                       "pipe:x",
                       NULL};
  char text[512], want[512];
  size_t i;
  for (i = 0; bad[i] != NULL; i++) {
    snprintf(text, sizeof(text), "{\n\"control_pipe\": \"%s\"}", bad[i]);
    snprintf(want, sizeof(want), "test.json:2: key \"control_pipe\": %s",
             address_error());
    EXPECT_ERROR(text, want);
    snprintf(text, sizeof(text), "{\"upstream\": \"%s\"}", bad[i]);
    snprintf(want, sizeof(want), "test.json:1: key \"upstream\": %s", address_error());
    EXPECT_ERROR(text, want);
  }
  /* 105 bytes of unix path is one too many (sun_path on macOS). */
  if (on_unix()) {
    char path[120];
    memset(path, 'a', sizeof(path));
    path[0] = '/';
    path[105] = '\0';
    snprintf(text, sizeof(text), "{\"control_pipe\": \"unix:%s\"}", path);
    snprintf(want, sizeof(want), "test.json:1: key \"control_pipe\": %s",
             address_error());
    EXPECT_ERROR(text, want);
  }
}

TEST_IMPL(config_wrong_platform_address) {
  const char* other = on_unix() ? "net.pipe:streambroker" : "unix:/run/sb.sock";
  char text[512], want[512];
  snprintf(text, sizeof(text), "{\"control_pipe\": \"%s\"}", other);
  snprintf(want, sizeof(want), "test.json:1: key \"control_pipe\": %s",
           address_error());
  EXPECT_ERROR(text, want);
  snprintf(text, sizeof(text), "{\"upstream\": \"%s\"}", other);
  snprintf(want, sizeof(want), "test.json:1: key \"upstream\": %s", address_error());
  EXPECT_ERROR(text, want);
}

TEST_IMPL(config_backoff_max_below_initial) {
  EXPECT_ERROR(
      "{\"backoff_max_ms\": 100,\n \"backoff_initial_ms\": 500}",
      "test.json:2: key \"backoff_max_ms\": must be at least backoff_initial_ms "
      "(500)");
  EXPECT_ERROR(
      "{\n\"backoff_initial_ms\": 20000}",
      "test.json:2: key \"backoff_max_ms\": must be at least backoff_initial_ms "
      "(20000)");
  {
    sb__config_t cfg;
    char err[256];
    ASSERT_OK(parse(&cfg, "{\"backoff_initial_ms\": 700, \"backoff_max_ms\": 700}", err,
                    sizeof(err)));
    sb__config_free(&cfg);
  }
}

/* A failed parse leaves the config as it was, so a reload can keep the old one. */
TEST_IMPL(config_error_leaves_config) {
  sb__config_t cfg;
  char err[256];
  ASSERT_OK(
      parse(&cfg, "{\"max_streams\": 9, \"allowed_groups\": \"a\"}", err, sizeof(err)));
  ASSERT_ERR(reparse(&cfg, "{\"allowed_groups\": \"b\", \"max_streams\": 0}", err,
                     sizeof(err)),
             SB_ECONFIG);
  ASSERT_UEQ(cfg.max_streams, 9);
  ASSERT_STR_EQ(cfg.allowed_groups, "a");
  /* A NULL or empty err buffer is allowed. */
  ASSERT_ERR(sb__config_parse(&cfg, "[]", 2, "c.json", NULL, 0), SB_ECONFIG);
  sb__config_free(&cfg);
}

/* Key lines come from a scan that must not be fooled by nested keys, by braces,
 * quotes and line breaks inside strings, or by keys inside arrays. */
TEST_IMPL(config_key_lines_skip_nested) {
  EXPECT_ERROR("{\"allowed_groups\": \"{\\\"a\\\": [\\n,\",\n"
               " \"control_pipe_sddl\": \"x\\\\\",\n"
               " \"upstream\": null,\n"
               " \"allowed_groups\": \"y\"}",
               "test.json:4: key \"allowed_groups\": duplicate key");
  EXPECT_ERROR("{\"nested\": {\"a\": {\"b\": [1,\n 2, {\"c\": 3}]},\n\"d\": 4},\n"
               "\n  \"other\": 1}",
               "test.json:1: key \"nested\": unknown key");
  EXPECT_ERROR("{\"max_streams\": 5, \"allowed_groups\": \"a\nb\",\n\"z\": [\n]}",
               "test.json:3: key \"z\": unknown key");
}

TEST_IMPL(config_load_errors) {
  sb__config_t cfg;
  char err[512];
  char* path = temp_path("absent.json");
  char* dir = temp_path("config-dir");
  sb__config_defaults(&cfg);
  ASSERT_ERR(sb__config_load(&cfg, path, err, sizeof(err)), SB_ENOENT);
  ASSERT(strstr(err, "absent.json: no such file") != NULL);
  ASSERT(strncmp(err, path, strlen(path)) == 0);
  /* A file with an error names itself as the origin. */
  {
    FILE* f = fopen(path, "wb");
    char want[1100];
    ASSERT_NOT_NULL(f);
    fputs("{\n\n\"max_streams\": 0\n}\n", f);
    fclose(f);
    ASSERT_ERR(sb__config_load(&cfg, path, err, sizeof(err)), SB_ECONFIG);
    snprintf(want, sizeof(want),
             "%s:3: key \"max_streams\": must be an integer from 1 to 1000000", path);
    ASSERT_STR_EQ(err, want);
    remove(path);
  }
  /* A directory cannot be read as a config (on POSIX fopen succeeds, fread fails). */
  ASSERT_OK(sb__mkdir_p(dir));
  {
    int r = sb__config_load(&cfg, dir, err, sizeof(err));
    ASSERT(r == SB_EIO || r == SB_ENOENT);
    ASSERT(strncmp(err, dir, strlen(dir)) == 0);
  }
  {
    uv_fs_t req;
    ASSERT_EQ(uv_fs_rmdir(NULL, &req, dir, NULL), 0);
    uv_fs_req_cleanup(&req);
  }
  sb__config_free(&cfg);
  free(path);
  free(dir);
}

TEST_IMPL(config_shipped_file_loads) {
  sb__config_t cfg, def;
  char err[512];
  sb__config_defaults(&cfg);
  sb__config_defaults(&def);
  ASSERT_OK(sb__config_load(&cfg, SB_SOURCE_DIR "/config/streambroker.json", err,
                            sizeof(err)));
  /* Loading the shipped file changes nothing: it holds the defaults. */
  ASSERT_STR_EQ(cfg.control_pipe, def.control_pipe);
  ASSERT_NULL(cfg.upstream);
  ASSERT_STR_EQ(cfg.data_dir, def.data_dir);
  ASSERT_STR_EQ(cfg.archive_dir, def.archive_dir);
  ASSERT_UEQ(cfg.handshake_timeout_ms, def.handshake_timeout_ms);
  ASSERT_UEQ(cfg.max_frame_size, def.max_frame_size);
  ASSERT_UEQ(cfg.max_datagram_size, def.max_datagram_size);
  ASSERT_UEQ(cfg.max_streams, def.max_streams);
  ASSERT_UEQ(cfg.max_streams_per_client, def.max_streams_per_client);
  ASSERT_UEQ(cfg.backoff_initial_ms, def.backoff_initial_ms);
  ASSERT_UEQ(cfg.backoff_max_ms, def.backoff_max_ms);
  ASSERT_UEQ(cfg.upstream_high_watermark, def.upstream_high_watermark);
  ASSERT_EQ(cfg.log_level, def.log_level);
  ASSERT_STR_EQ(cfg.log_file, def.log_file);
  sb__config_free(&cfg);
  sb__config_free(&def);
}

/*
 * The shipped file is sb__config_write_defaults' output without the keys whose
 * defaults depend on the platform (control_pipe, data_dir), so that one file is right
 * on Linux and Windows: same keys, same order, same values.
 */
TEST_IMPL(config_shipped_file_matches_defaults) {
  char* shipped_text = read_all(SB_SOURCE_DIR "/config/streambroker.json", NULL);
  char* defaults_text = capture(sb__config_write_defaults, "defaults.json");
  cJSON* shipped = cJSON_Parse(shipped_text);
  cJSON* defaults = cJSON_Parse(defaults_text);
  cJSON *d, *s;
  ASSERT_NOT_NULL(shipped);
  ASSERT_NOT_NULL(defaults);
  s = shipped->child;
  for (d = defaults->child; d != NULL; d = d->next) {
    if (strcmp(d->string, "control_pipe") == 0 ||
        strcmp(d->string, "admin_pipe") == 0 || strcmp(d->string, "data_dir") == 0)
      continue;
    if (s == NULL || strcmp(s->string, d->string) != 0)
      sb_test_fail(__FILE__, __LINE__,
                   "config/streambroker.json: want key \"%s\" next, "
                   "got \"%s\"",
                   d->string, s ? s->string : "(end)");
    if (!cJSON_Compare(s, d, 1))
      sb_test_fail(__FILE__, __LINE__,
                   "config/streambroker.json: key \"%s\" is not the "
                   "default",
                   d->string);
    s = s->next;
  }
  if (s != NULL)
    sb_test_fail(__FILE__, __LINE__, "config/streambroker.json: extra key \"%s\"",
                 s->string);
  cJSON_Delete(shipped);
  cJSON_Delete(defaults);
  free(shipped_text);
  free(defaults_text);
}

/* The printed defaults: every key in table order, two-space indent, and a valid
 * config that gives the defaults back. */
TEST_IMPL(config_write_defaults_parses) {
  char* text = capture(sb__config_write_defaults, "defaults2.json");
  sb__config_t cfg, def;
  char err[512];
  sb__config_defaults(&def);
  ASSERT(strncmp(text, "{\n  \"control_pipe\": \"", 21) == 0);
  ASSERT(strstr(text, "\n  \"upstream\": null,\n  \"data_dir\": ") != NULL);
  ASSERT(strstr(text,
                "\n  \"archive_dir\": \"\",\n  \"archive_max_bytes\": 0,\n"
                "  \"archive_max_age\": 0,\n  \"handshake_timeout_ms\": 5000,\n") !=
         NULL);
  ASSERT(strstr(text, "\n  \"log_level\": \"info\",\n  \"log_file\": \"\",\n"
                      "  \"log_max_bytes\": 10485760,\n  \"log_max_files\": 5,\n"
                      "  \"allowed_groups\": \"\",\n  \"reader_group\": \"\",\n"
                      "  \"control_pipe_sddl\": \"\"\n}\n") != NULL);
  ASSERT_NULL(strchr(text, '\t'));
  ASSERT_OK(parse(&cfg, text, err, sizeof(err)));
  ASSERT_STR_EQ(cfg.control_pipe, def.control_pipe);
  ASSERT_STR_EQ(cfg.data_dir, def.data_dir);
  ASSERT_STR_EQ(cfg.archive_dir, def.archive_dir);
  ASSERT_NULL(cfg.upstream);
  sb__config_free(&cfg);
  sb__config_free(&def);
  free(text);
}

/* config/KEYS.md holds the very table the code prints (its lines that start with '|'),
 * so neither can drift from the other. */
TEST_IMPL(config_keys_md_matches_table) {
  char* doc = read_all(SB_SOURCE_DIR "/config/KEYS.md", NULL);
  char* table = capture(sb__config_write_table, "keys.md");
  char* doc_table = malloc(strlen(doc) + 1);
  const char *p, *eol;
  size_t n = 0;
  ASSERT_NOT_NULL(doc_table);
  for (p = doc; *p; p = *eol ? eol + 1 : eol) {
    eol = strchr(p, '\n');
    if (eol == NULL)
      eol = p + strlen(p);
    if (*p == '|') {
      size_t len = (size_t)(eol - p);
      if (len > 0 && p[len - 1] == '\r')
        len--;
      memcpy(doc_table + n, p, len);
      n += len;
      doc_table[n++] = '\n';
    }
  }
  doc_table[n] = '\0';
  if (strcmp(doc_table, table) != 0)
    sb_test_fail(__FILE__, __LINE__,
                 "config/KEYS.md's table differs from the code's; "
                 "regenerate it with streambrokerd --print-config-keys:\n%s",
                 table);
  /* The documented platform defaults are this platform's. */
  ASSERT_NOT_NULL(strstr(table, sb__default_control_pipe()));
  if (strstr(table, sb__default_data_dir()) == NULL) {
    const char* d = sb__default_data_dir();
    size_t len = strlen(d);
    ASSERT(len > 13 && strcmp(d + len - 13, "\\StreamBroker") == 0);
    ASSERT_NOT_NULL(strstr(table, "%ProgramData%\\StreamBroker"));
  }
  free(doc);
  free(doc_table);
  free(table);
}

TEST_IMPL(config_log_levels) {
  const char* names[] = {"error", "warn", "info", "debug"};
  int i;
  for (i = 0; i < 4; i++)
    ASSERT_EQ(sb__log_level_parse(names[i]), i);
  ASSERT_EQ(SB_LOG_ERROR, 0);
  ASSERT_EQ(SB_LOG_DEBUG, 3);
  ASSERT_EQ(sb__log_level_parse("Info"), -1);
  ASSERT_EQ(sb__log_level_parse("warning"), -1);
  ASSERT_EQ(sb__log_level_parse(""), -1);
}

/* Checks "YYYY-MM-DDTHH:MM:SS.mmmZ <level padded to 5> <rest>" and returns rest. */
static const char* check_log_line(const char* line, const char* level) {
  const char* fmt = "dddd-dd-ddTdd:dd:dd.dddZ ";
  char padded[8];
  size_t i;
  for (i = 0; fmt[i]; i++) {
    if (fmt[i] == 'd' ? line[i] < '0' || line[i] > '9' : line[i] != fmt[i])
      sb_test_fail(__FILE__, __LINE__, "bad time in log line: %.60s", line);
  }
  snprintf(padded, sizeof(padded), "%-5s ", level);
  if (strncmp(line + i, padded, 6) != 0)
    sb_test_fail(__FILE__, __LINE__, "bad level in log line: %.60s", line);
  return line + i + 6;
}

typedef struct {
  int id;
} log_thread_arg_t;

static void log_thread(void* arg) {
  int id = ((log_thread_arg_t*)arg)->id, i;
  for (i = 0; i < 200; i++)
    SB_LOG_I("thread", "t%d line %03d %s", id, i, "..........................");
}

TEST_IMPL(config_log_lines) {
  char* path = temp_path("log.txt");
  char* text;
  char *p, *eol;
  char big[3000];
  int counts[2] = {0, 0};
  uv_thread_t threads[2];
  log_thread_arg_t args[2] = {{0}, {1}};
  int i;
  remove(path);
  ASSERT_OK(sb__log_open(path, SB_LOG_INFO));
  SB_LOG_I("test", "hello %d", 42);
  SB_LOG_D("test", "skipped at info");
  SB_LOG_W("test", "two\nlines\r\n");
  SB_LOG_E("test", "bad");
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  SB_LOG_I("test", "%s!", big);
  for (i = 0; i < 2; i++)
    ASSERT_EQ(uv_thread_create(&threads[i], log_thread, &args[i]), 0);
  for (i = 0; i < 2; i++)
    ASSERT_EQ(uv_thread_join(&threads[i]), 0);
  sb__log_close();
  /* Appending: a second open adds after what is there. */
  ASSERT_OK(sb__log_open(path, SB_LOG_DEBUG));
  SB_LOG_D("test", "debug now");
  sb__log_close();

  text = read_all(path, NULL);
  p = text;
  eol = strchr(p, '\n');
  ASSERT_NOT_NULL(eol);
  *eol = '\0';
  ASSERT_STR_EQ(check_log_line(p, "info"), "test: hello 42");
  p = eol + 1;
  eol = strchr(p, '\n');
  *eol = '\0';
  ASSERT_STR_EQ(check_log_line(p, "warn"), "test: two\\x0alines\\x0d\\x0a");
  p = eol + 1;
  eol = strchr(p, '\n');
  *eol = '\0';
  ASSERT_STR_EQ(check_log_line(p, "error"), "test: bad");
  p = eol + 1;
  eol = strchr(p, '\n');
  *eol = '\0';
  {
    const char* rest = check_log_line(p, "info");
    ASSERT_EQ(strlen(rest), strlen("test: ") + sizeof(big));
    ASSERT_EQ(rest[strlen(rest) - 1], '!');
  }
  for (i = 0; i < 400; i++) {
    const char* rest;
    p = eol + 1;
    eol = strchr(p, '\n');
    ASSERT_NOT_NULL(eol);
    *eol = '\0';
    rest = check_log_line(p, "info");
    ASSERT(strncmp(rest, "thread: t", 9) == 0);
    ASSERT_EQ(strlen(rest), strlen("thread: t0 line 000 .........................."));
    counts[rest[9] - '0']++;
  }
  ASSERT_EQ(counts[0], 200);
  ASSERT_EQ(counts[1], 200);
  p = eol + 1;
  eol = strchr(p, '\n');
  ASSERT_NOT_NULL(eol);
  *eol = '\0';
  ASSERT_STR_EQ(check_log_line(p, "debug"), "test: debug now");
  ASSERT_EQ(eol[1], '\0');
  /* A log file that cannot be opened is an error, and the log stays usable. */
  ASSERT(sb__log_open(SB_SOURCE_DIR "/no/such/dir/x.log", SB_LOG_INFO) < 0);
  ASSERT_OK(sb__log_open(NULL, SB_LOG_ERROR));
  sb__log_close();
  remove(path);
  free(text);
  free(path);
}

TEST_IMPL(config_path_join) {
  /* '|' stands for the platform's separator, which the join inserts. */
  const char* cases[][3] = {
      {"a", "b", "a|b"},       {"a/", "/b", "a|b"}, {"/var/lib", "x", "/var/lib|x"},
      {"a//", "b/c", "a|b/c"}, {"", "b", "b"},      {"a", "", "a"},
  };
  char sep = on_unix() ? '/' : '\\';
  size_t i;
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char* j = sb__path_join(cases[i][0], cases[i][1]);
    char want[32], *bar;
    snprintf(want, sizeof(want), "%s", cases[i][2]);
    if ((bar = strchr(want, '|')) != NULL)
      *bar = sep;
    ASSERT_STR_EQ(j, want);
    free(j);
  }
  if (on_unix()) {
    char* j = sb__path_join("/", "x");
    ASSERT_STR_EQ(j, "/x");
    free(j);
  } else {
    char* j = sb__path_join("C:\\", "x");
    ASSERT_STR_EQ(j, "C:\\x");
    free(j);
    j = sb__path_join("C:\\ProgramData/", "\\StreamBroker");
    ASSERT_STR_EQ(j, "C:\\ProgramData\\StreamBroker");
    free(j);
  }
}

static int is_dir(const char* path) {
  uv_fs_t req;
  int r = uv_fs_stat(NULL, &req, path, NULL) == 0 &&
          (req.statbuf.st_mode & S_IFMT) == S_IFDIR;
  uv_fs_req_cleanup(&req);
  return r;
}

static void rmdir_ok(const char* path) {
  uv_fs_t req;
  ASSERT_EQ(uv_fs_rmdir(NULL, &req, path, NULL), 0);
  uv_fs_req_cleanup(&req);
}

TEST_IMPL(config_mkdir_p) {
  char* top = temp_path("mkdir");
  char* x = sb__path_join(top, "x");
  char* y = sb__path_join(x, "y");
  char* file = sb__path_join(top, "file");
  char* under_file = sb__path_join(file, "z");
  char slashes[1200];
  FILE* f;
  ASSERT(!is_dir(top));
  ASSERT_OK(sb__mkdir_p(y));
  ASSERT(is_dir(top));
  ASSERT(is_dir(x));
  ASSERT(is_dir(y));
  ASSERT_OK(sb__mkdir_p(y)); /* it exists: fine */
  ASSERT_OK(sb__mkdir_p(top));
  /* A trailing separator, and '/' on every platform. */
  snprintf(slashes, sizeof(slashes), "%s/s1//s2/", top);
  ASSERT_OK(sb__mkdir_p(slashes));
  snprintf(slashes, sizeof(slashes), "%s/s1/s2", top);
  ASSERT(is_dir(slashes));
  /* A file in the way. */
  f = fopen(file, "wb");
  ASSERT_NOT_NULL(f);
  fclose(f);
  ASSERT_ERR(sb__mkdir_p(file), SB_EEXIST);
  ASSERT(sb__mkdir_p(under_file) < 0);
  ASSERT_ERR(sb__mkdir_p(""), SB_EINVAL);
  remove(file);
  rmdir_ok(slashes);
  snprintf(slashes, sizeof(slashes), "%s/s1", top);
  rmdir_ok(slashes);
  rmdir_ok(y);
  rmdir_ok(x);
  rmdir_ok(top);
  free(top);
  free(x);
  free(y);
  free(file);
  free(under_file);
}

TEST_IMPL(config_uv_err) {
  ASSERT_EQ(sb__uv_err(0), 0);
  ASSERT_ERR(sb__uv_err(UV_ENOENT), SB_ENOENT);
  ASSERT_ERR(sb__uv_err(UV_EACCES), SB_EACCES);
  ASSERT_ERR(sb__uv_err(UV_EPERM), SB_EACCES);
  ASSERT_ERR(sb__uv_err(UV_EADDRINUSE), SB_EEXIST);
  ASSERT_ERR(sb__uv_err(UV_EEXIST), SB_EEXIST);
  ASSERT_ERR(sb__uv_err(UV_ENOSPC), SB_ENOSPC);
  ASSERT_ERR(sb__uv_err(UV_ENOMEM), SB_ENOMEM);
  ASSERT_ERR(sb__uv_err(UV_EPIPE), SB_EPIPE);
  ASSERT_ERR(sb__uv_err(UV_ECONNRESET), SB_EPIPE);
  ASSERT_ERR(sb__uv_err(UV_EOF), SB_EPIPE);
  ASSERT_ERR(sb__uv_err(UV_ETIMEDOUT), SB_ETIMEDOUT);
  ASSERT_ERR(sb__uv_err(UV_ECANCELED), SB_ECANCELED);
  ASSERT_ERR(sb__uv_err(UV_EINVAL), SB_EINVAL);
  ASSERT_ERR(sb__uv_err(UV_EBUSY), SB_EBUSY);
  ASSERT_ERR(sb__uv_err(UV_EAGAIN), SB_EBUSY);
  ASSERT_ERR(sb__uv_err(UV_ECONNREFUSED), SB_ENOSERVER);
  ASSERT_ERR(sb__uv_err(UV_EMFILE), SB_EIO);
  {
    sb__chunk_t* c = sb__chunk_new("abc", 3);
    ASSERT_NULL(c->next);
    ASSERT_MEM_EQ(c->data, c->len, "abc", 3);
    free(c);
    c = sb__chunk_new(NULL, 0);
    ASSERT_UEQ(c->len, 0);
    free(c);
  }
}

/* Paths must be absolute, on this platform's terms; "" keeps its meaning. */
TEST_IMPL(config_relative_paths_refused) {
  sb__config_t cfg;
  char err[256], text[256];
  const char* why =
      on_unix() ? "must be an absolute path (starting with /)"
                : "must be an absolute path (C:\\... or \\\\server\\share\\...)";
  static const char* const keys[] = {"data_dir", "archive_dir", "log_file"};
  const char* rel[] = {"d",
                       "./d",
                       "../d",
                       "sub/d",
                       on_unix() ? "~/d" : "C:d",
                       on_unix() ? "C:/d" : "/d"};
  size_t k, i;
  for (k = 0; k < 3; k++) {
    for (i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
      char want[400];
      snprintf(text, sizeof(text), "{\n  \"max_streams\": 2,\n  \"%s\": \"%s\"\n}",
               keys[k], rel[i]);
      snprintf(want, sizeof(want), "test.json:3: key \"%s\": %s", keys[k], why);
      expect_error(__LINE__, text, want);
    }
  }
  /* Absolute ones, and "" for the two keys where it means a default. */
  if (on_unix()) {
    ASSERT_OK(parse(&cfg,
                    "{\"data_dir\": \"/srv/sb\", \"archive_dir\": \"//x\","
                    " \"log_file\": \"/var/log/sb.log\"}",
                    err, sizeof(err)));
  } else {
    ASSERT_OK(parse(
        &cfg,
        "{\"data_dir\": \"C:\\\\sb\", \"archive_dir\": \"\\\\\\\\srv\\\\share\\\\a\","
        " \"log_file\": \"d:/logs/sb.log\"}",
        err, sizeof(err)));
  }
  sb__config_free(&cfg);
  ASSERT_OK(
      parse(&cfg, "{\"archive_dir\": \"\", \"log_file\": \"\"}", err, sizeof(err)));
  sb__config_free(&cfg);
  EXPECT_ERROR("{\"data_dir\": \"\"}",
               "test.json:1: key \"data_dir\": must not be empty");
}

/* The platform's absolute paths and parents. */
TEST_IMPL(config_path_parent) {
  struct {
    const char* path;
    const char* parent; /* NULL: none */
  } unix_cases[] = {{"/a/b", "/a"},    {"/a/b/", "/a"}, {"/a", "/"}, {"/", NULL},
                    {"//a//b", "//a"}, {"a", NULL},     {"a/b", "a"}},
    win_cases[] = {
        {"C:\\a\\b", "C:\\a"},      {"C:\\a\\b\\", "C:\\a"},
        {"C:\\a", "C:\\"},          {"C:\\", NULL},
        {"C:/a/b", "C:/a"},         {"\\\\srv\\share\\a", "\\\\srv\\share\\"},
        {"\\\\srv\\share\\", NULL}, {"\\\\?\\C:\\a\\b", "\\\\?\\C:\\a"},
        {"\\\\?\\C:\\", NULL}};
  size_t i, n = on_unix() ? sizeof(unix_cases) / sizeof(unix_cases[0])
                          : sizeof(win_cases) / sizeof(win_cases[0]);
  for (i = 0; i < n; i++) {
    const char* path = on_unix() ? unix_cases[i].path : win_cases[i].path;
    const char* want = on_unix() ? unix_cases[i].parent : win_cases[i].parent;
    char* got = sb__path_parent(path);
    if (want == NULL ? got != NULL : got == NULL || strcmp(got, want) != 0)
      sb_test_fail(__FILE__, __LINE__, "parent of \"%s\": \"%s\", want \"%s\"", path,
                   got ? got : "(none)", want ? want : "(none)");
    free(got);
  }
  if (on_unix()) {
    ASSERT(sb__path_is_absolute("/"));
    ASSERT(sb__path_is_absolute("/x/y"));
    ASSERT(!sb__path_is_absolute("x"));
    ASSERT(!sb__path_is_absolute("./x"));
    ASSERT(!sb__path_is_absolute("C:\\x"));
  } else {
    ASSERT(sb__path_is_absolute("C:\\x"));
    ASSERT(sb__path_is_absolute("z:/x"));
    ASSERT(sb__path_is_absolute("\\\\srv\\share"));
    ASSERT(sb__path_is_absolute("\\\\?\\C:\\x"));
    ASSERT(!sb__path_is_absolute("\\x"));
    ASSERT(!sb__path_is_absolute("C:x"));
    ASSERT(!sb__path_is_absolute("x\\y"));
  }
  ASSERT(!sb__path_is_absolute(""));
}

/* A config over the defaults, with its directory keys in the temp dir top. */
static void dirs_config(sb__config_t* cfg, const char* data_dir,
                        const char* archive_dir, const char* log_file,
                        int archive_mode) {
  sb__config_defaults(cfg);
  free(cfg->data_dir);
  cfg->data_dir = sb__xstrdup(data_dir);
  free(cfg->archive_dir);
  cfg->archive_dir =
      archive_dir ? sb__xstrdup(archive_dir) : sb__path_join(data_dir, "archive");
  free(cfg->log_file);
  cfg->log_file = sb__xstrdup(log_file ? log_file : "");
  if (!archive_mode) {
    free(cfg->upstream);
    cfg->upstream = sb__xstrdup(sb__default_control_pipe());
  }
}

#define EXPECT_DIRS(cfg, create, want_err, ...)                                        \
  expect_dirs(__LINE__, cfg, create, want_err, __VA_ARGS__)
static void expect_dirs(int line, sb__config_t* cfg, int create, int want_err,
                        const char* fmt, ...) {
  char err[1024] = "", want[1024];
  va_list ap;
  int r = sb__config_check_dirs(cfg, SB__DIRS_ALL, create, err, sizeof(err));
  va_start(ap, fmt);
  vsnprintf(want, sizeof(want), fmt, ap);
  va_end(ap);
  if (r != want_err || (want_err != 0 && strcmp(err, want) != 0))
    sb_test_fail(__FILE__, line, "check_dirs: %s \"%s\", want %s \"%s\"",
                 sb_test_err_name(r), err, sb_test_err_name(want_err), want);
  sb__config_free(cfg);
}

/*
 * data_dir, archive_dir (archive mode only) and log_file's directory: a file in the
 * way is named with the key that points there (data_dir's, not archive_dir's, when
 * archive_dir is derived from it); a directory that can be made passes, and is made
 * only when asked.
 */
TEST_IMPL(config_check_dirs) {
  char* top = temp_path("dirs");
  char* file = sb__path_join(top, "file");
  char* under = sb__path_join(file, "sub");
  char* deeper = sb__path_join(under, "deeper");
  char* fresh = sb__path_join(top, "fresh");
  char* fresh_log = sb__path_join(fresh, "x.log");
  char* ok = sb__path_join(top, "ok");
  char* ok_archive = sb__path_join(ok, "archive");
  char* log_in_file = sb__path_join(under, "x.log");
  sb__config_t cfg;
  FILE* f;
  ASSERT_OK(sb__mkdir_p(ok));
  sb_test_temp(top);
  f = fopen(file, "wb");
  ASSERT_NOT_NULL(f);
  fclose(f);

  /* All fine; nothing is made by a check, and the check leaves nothing behind. */
  dirs_config(&cfg, ok, NULL, fresh_log, 1);
  EXPECT_DIRS(&cfg, 0, 0, "");
  ASSERT(!is_dir(fresh));
  ASSERT(!is_dir(ok_archive));
  /* Made when asked. */
  dirs_config(&cfg, ok, NULL, fresh_log, 1);
  EXPECT_DIRS(&cfg, 1, 0, "");
  ASSERT(is_dir(fresh));
  ASSERT(is_dir(ok_archive));
  {
    uv_fs_t req;
    uv_dirent_t ent;
    int n = 0;
    ASSERT_GE(uv_fs_scandir(NULL, &req, ok, 0, NULL), 0);
    while (uv_fs_scandir_next(&req, &ent) != UV_EOF)
      n++;
    uv_fs_req_cleanup(&req);
    ASSERT_EQ(n, 1); /* archive: no probe file left */
  }

  /* A file in the way of data_dir: named as data_dir's, though archive_dir is under
   * it too. */
  dirs_config(&cfg, under, NULL, NULL, 1);
  EXPECT_DIRS(&cfg, 0, SB_EEXIST, "data_dir \"%s\": %s is not a directory", under,
              file);
  dirs_config(&cfg, deeper, NULL, NULL, 1);
  EXPECT_DIRS(&cfg, 1, SB_EEXIST, "data_dir \"%s\": %s is not a directory", deeper,
              file);
  dirs_config(&cfg, file, NULL, NULL, 1);
  EXPECT_DIRS(&cfg, 0, SB_EEXIST, "data_dir \"%s\": %s is not a directory", file, file);
  /* archive_dir's own, in archive mode only. */
  dirs_config(&cfg, ok, under, NULL, 1);
  EXPECT_DIRS(&cfg, 0, SB_EEXIST, "archive_dir \"%s\": %s is not a directory", under,
              file);
  dirs_config(&cfg, ok, under, NULL, 0);
  EXPECT_DIRS(&cfg, 0, 0, "");
  /* The log file's directory. */
  dirs_config(&cfg, ok, NULL, log_in_file, 0);
  EXPECT_DIRS(&cfg, 0, SB_EEXIST, "log_file \"%s\": %s is not a directory", log_in_file,
              file);
  dirs_config(&cfg, ok, NULL, ok, 0);
  EXPECT_DIRS(&cfg, 0, SB_EEXIST, "log_file \"%s\": is a directory", ok);

  remove(fresh_log);
  free(top);
  free(file);
  free(under);
  free(deeper);
  free(fresh);
  free(fresh_log);
  free(ok);
  free(ok_archive);
  free(log_in_file);
}
