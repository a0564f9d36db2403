/* test_config.c - streambroker.json parsing and validation, and the key table. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "task.h"

static int parse(sb__config_t* cfg, const char* text, char* err, size_t size) {
  sb__config_defaults(cfg);
  return sb__config_parse(cfg, text, strlen(text), "test.json", err, size);
}

/* Parses text, expects failure with exactly the message want. */
static void expect_error(const char* text, const char* want) {
  sb__config_t cfg;
  char err[512] = "";
  int r = parse(&cfg, text, err, sizeof(err));
  sb__config_free(&cfg);
  if (r != SB_ECONFIG || strcmp(err, want) != 0)
    sb_test_fail(__FILE__, __LINE__, "config %s\n  got %s \"%s\"\n  want \"%s\"", text,
                 sb_test_err_name(r), err, want);
}

TEST_IMPL(config_empty_object_gives_defaults) {
  sb__config_t cfg;
  char err[256];
  char* archive;
  ASSERT_OK(parse(&cfg, "{}", err, sizeof(err)));
  ASSERT_STR_EQ(cfg.control_pipe, sb__default_control_pipe());
  ASSERT_NULL(cfg.upstream);
  ASSERT_STR_EQ(cfg.data_dir, sb__default_data_dir());
  archive = sb__path_join(sb__default_data_dir(), "archive");
  ASSERT_STR_EQ(cfg.archive_dir, archive);
  free(archive);
  ASSERT_UEQ(cfg.handshake_timeout_ms, 5000);
  ASSERT_UEQ(cfg.max_frame_size, 1048576);
  ASSERT_UEQ(cfg.max_datagram_size, 10485760);
  ASSERT_UEQ(cfg.max_streams, 4096);
  ASSERT_UEQ(cfg.max_streams_per_client, 1024);
  ASSERT_UEQ(cfg.backoff_initial_ms, 100);
  ASSERT_UEQ(cfg.backoff_max_ms, 10000);
  ASSERT_UEQ(cfg.upstream_high_watermark, 1048576);
  ASSERT_EQ(cfg.log_level, SB_LOG_INFO);
  ASSERT_STR_EQ(cfg.log_file, "");
  sb__config_free(&cfg);
}

TEST_IMPL(config_every_key) {
  sb__config_t cfg;
  char err[256], text[2048];
  const char* addr = sb__default_control_pipe();
  snprintf(text, sizeof(text),
           "{\"control_pipe\": \"%s-x\", \"upstream\": \"%s-up\", \"data_dir\": \"d\",\n"
           " \"handshake_timeout_ms\": 100, \"max_frame_size\": 64,\n"
           " \"max_datagram_size\": 1, \"max_streams\": 1000000,\n"
           " \"max_streams_per_client\": 7, \"backoff_initial_ms\": 5,\n"
           " \"backoff_max_ms\": 30000, \"upstream_high_watermark\": 4096,\n"
           " \"log_level\": \"debug\", \"log_file\": \"x.log\"}",
           addr, addr);
  ASSERT_OK(parse(&cfg, text, err, sizeof(err)));
  ASSERT(strstr(cfg.control_pipe, "-x") != NULL);
  ASSERT(strstr(cfg.upstream, "-up") != NULL);
  ASSERT_STR_EQ(cfg.data_dir, "d");
  /* archive_dir follows data_dir unless set. */
  {
    char* want = sb__path_join("d", "archive");
    ASSERT_STR_EQ(cfg.archive_dir, want);
    free(want);
  }
  ASSERT_UEQ(cfg.handshake_timeout_ms, 100);
  ASSERT_UEQ(cfg.max_frame_size, 64);
  ASSERT_UEQ(cfg.max_datagram_size, 1);
  ASSERT_UEQ(cfg.max_streams, 1000000);
  ASSERT_UEQ(cfg.max_streams_per_client, 7);
  ASSERT_UEQ(cfg.backoff_initial_ms, 5);
  ASSERT_UEQ(cfg.backoff_max_ms, 30000);
  ASSERT_UEQ(cfg.upstream_high_watermark, 4096);
  ASSERT_EQ(cfg.log_level, SB_LOG_DEBUG);
  ASSERT_STR_EQ(cfg.log_file, "x.log");
  sb__config_free(&cfg);
  ASSERT_OK(parse(&cfg, "{\"archive_dir\": \"a\", \"upstream\": null}", err, sizeof(err)));
  ASSERT_STR_EQ(cfg.archive_dir, "a");
  ASSERT_NULL(cfg.upstream);
  sb__config_free(&cfg);
}

TEST_IMPL(config_errors_name_key_and_line) {
  char text[256];
  expect_error("{\n  \"max_streams\": 10,\n  \"bogus\": 1\n}",
               "test.json:3: key \"bogus\": unknown key");
  expect_error("{\n  \"max_streams\": \"ten\"\n}",
               "test.json:2: key \"max_streams\": must be an integer from 1 to 1000000");
  expect_error("{\"max_streams\": 0}",
               "test.json:1: key \"max_streams\": must be an integer from 1 to 1000000");
  expect_error("{\"max_streams\": 1000001}",
               "test.json:1: key \"max_streams\": must be an integer from 1 to 1000000");
  expect_error("{\"max_streams\": -1}",
               "test.json:1: key \"max_streams\": must be an integer from 1 to 1000000");
  expect_error("{\"handshake_timeout_ms\": 1000.5}",
               "test.json:1: key \"handshake_timeout_ms\": must be an integer from 100 to "
               "600000");
  expect_error("{\"log_level\": \"loud\"}",
               "test.json:1: key \"log_level\": must be one of \"error\", \"warn\", "
               "\"info\", \"debug\"");
  expect_error("{\"log_file\": 5}", "test.json:1: key \"log_file\": must be a string");
  expect_error("{\"upstream\": 5}", "test.json:1: key \"upstream\": must be a string or null");
  expect_error("{\"data_dir\": \"\"}", "test.json:1: key \"data_dir\": must not be empty");
  expect_error("{\n\"max_streams\": 1,\n\n\"max_streams\": 2}",
               "test.json:4: key \"max_streams\": duplicate key");
  expect_error("{\"backoff_initial_ms\": 500,\n \"backoff_max_ms\": 100}",
               "test.json:2: key \"backoff_max_ms\": must be at least backoff_initial_ms");
  expect_error("[1, 2]", "test.json:1: the config must be a JSON object");
  {
    sb__config_t cfg;
    char err[512];
    ASSERT_ERR(parse(&cfg, "{\n  \"a\": 1,,\n}", err, sizeof(err)), SB_ECONFIG);
    ASSERT(strncmp(err, "test.json:2: invalid JSON near \"", 32) == 0);
    sb__config_free(&cfg);
  }
  /* Lines are counted in nested values and multi-line strings too. */
  expect_error("{\"archive_dir\": \"x\",\n \"upstream\": null,\n \"log_file\": \"a\\nb\",\n"
               " \"nested\": {\"a\": [1,\n 2]}}",
               "test.json:4: key \"nested\": unknown key");
  /* Addresses: a scheme of the other platform, or garbage. */
  snprintf(text, sizeof(text), "{\"control_pipe\": \"%s\"}",
           strncmp(sb__default_control_pipe(), "unix:", 5) == 0 ? "net.pipe:x" : "unix:/x");
  {
    sb__config_t cfg;
    char err[512];
    ASSERT_ERR(parse(&cfg, text, err, sizeof(err)), SB_ECONFIG);
    ASSERT(strstr(err, "test.json:1: key \"control_pipe\": must be an address like") != NULL);
    sb__config_free(&cfg);
    ASSERT_ERR(parse(&cfg, "{\"upstream\": \"tcp4:1.2.3.4:5\"}", err, sizeof(err)),
               SB_ECONFIG);
    ASSERT(strstr(err, "key \"upstream\": must be an address like") != NULL);
    sb__config_free(&cfg);
  }
}

TEST_IMPL(config_syntax_error_line) {
  sb__config_t cfg;
  char err[512];
  ASSERT_ERR(parse(&cfg, "{\n\"a\": 1\n// comment\n}", err, sizeof(err)), SB_ECONFIG);
  ASSERT(strncmp(err, "test.json:2: invalid JSON", 25) == 0 ||
         strncmp(err, "test.json:3: invalid JSON", 25) == 0);
  sb__config_free(&cfg);
  ASSERT_ERR(parse(&cfg, "", err, sizeof(err)), SB_ECONFIG);
  ASSERT(strncmp(err, "test.json:1: invalid JSON", 25) == 0);
  sb__config_free(&cfg);
}

TEST_IMPL(config_shipped_file_loads) {
  sb__config_t cfg;
  char err[512];
  sb__config_defaults(&cfg);
  ASSERT_OK(sb__config_load(&cfg, SB_SOURCE_DIR "/config/streambroker.json", err, sizeof(err)));
  ASSERT_NULL(cfg.upstream);
  ASSERT_STR_EQ(cfg.control_pipe, sb__default_control_pipe());
  sb__config_free(&cfg);
  sb__config_defaults(&cfg);
  ASSERT_ERR(sb__config_load(&cfg, SB_SOURCE_DIR "/config/absent.json", err, sizeof(err)),
             SB_ENOENT);
  ASSERT(strstr(err, "absent.json: cannot open the config file") != NULL);
  sb__config_free(&cfg);
}

/* config/KEYS.md holds the very table the code prints, so neither can drift. */
TEST_IMPL(config_keys_table_matches_code) {
  char path[] = SB_SOURCE_DIR "/config/KEYS.md";
  FILE* f = fopen(path, "rb");
  FILE* tmp = tmpfile();
  char *doc, *table;
  size_t len, tlen;
  long n;
  ASSERT_NOT_NULL(f);
  ASSERT_NOT_NULL(tmp);
  ASSERT_EQ(fseek(f, 0, SEEK_END), 0);
  len = (size_t)ftell(f);
  rewind(f);
  doc = malloc(len + 1);
  ASSERT_EQ(fread(doc, 1, len, f), len);
  doc[len] = '\0';
  fclose(f);
  sb__config_write_table(tmp);
  n = ftell(tmp);
  tlen = (size_t)n;
  rewind(tmp);
  table = malloc(tlen + 1);
  ASSERT_EQ(fread(table, 1, tlen, tmp), tlen);
  table[tlen] = '\0';
  fclose(tmp);
  if (strstr(doc, table) == NULL)
    sb_test_fail(__FILE__, __LINE__, "config/KEYS.md does not contain the table the code "
                 "prints; regenerate it with streambrokerd --print-config-keys:\n%s", table);
  free(doc);
  free(table);
}

TEST_IMPL(config_paths) {
  char* j = sb__path_join("a", "b");
  char dir[600], tmp[512];
  size_t len = sizeof(tmp);
  ASSERT(strcmp(j, "a/b") == 0 || strcmp(j, "a\\b") == 0);
  free(j);
  j = sb__path_join("a/", "/b");
  ASSERT(strcmp(j, "a/b") == 0 || strcmp(j, "a\\b") == 0);
  free(j);
  ASSERT_OK(uv_os_tmpdir(tmp, &len));
  snprintf(dir, sizeof(dir), "%s/sbunit-%d/x/y", tmp, (int)uv_os_getpid());
  ASSERT_OK(sb__mkdir_p(dir));
  ASSERT_OK(sb__mkdir_p(dir)); /* exists: fine */
  {
    uv_fs_t req;
    ASSERT_EQ(uv_fs_stat(NULL, &req, dir, NULL), 0);
    ASSERT(req.statbuf.st_mode & S_IFDIR);
    uv_fs_req_cleanup(&req);
  }
}
