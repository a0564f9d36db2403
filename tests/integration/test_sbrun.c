/*
 * test_sbrun.c - sbrun against a recording server: the child's stdout and stderr
 * arrive as two text streams, byte for byte, binary data included; sbrun exits with
 * the child's status; the child sees the server's address.
 */
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "task.h"

typedef struct {
  uv_loop_t loop;
  sb_it_recorder_t rec;
  char address[256], bind_path[256];
  char sbrun[4096], child[4096];
} fixture_t;

static void fixture_start(fixture_t* f, const char* tag) {
  memset(f, 0, sizeof(*f));
  ASSERT_OK(uv_loop_init(&f->loop));
  sb_it_address(tag, f->address, f->bind_path, sizeof(f->address));
  ASSERT_OK(sb_it_recorder_start(&f->rec, &f->loop, f->bind_path, 128, 1));
  sb_it_program("sbrun", f->sbrun, sizeof(f->sbrun));
  sb_it_program("sb_child", f->child, sizeof(f->child));
}

static void fixture_stop(fixture_t* f) {
  sb_it_recorder_close(&f->rec);
  ASSERT_OK(uv_loop_close(&f->loop));
}

/* The recorded connection whose handshake names the stream; its payload in *len. */
static const char* stream_payload(fixture_t* f, const char* name, size_t* len) {
  int i;
  for (i = 0; i < f->rec.nconns; i++) {
    sb__handshake_t hs;
    sb__props_t p;
    size_t used;
    const sb__buf_t* b = &f->rec.conns[i].data;
    sb__handshake_init(&hs, 0);
    if (sb__handshake_feed(&hs, (const uint8_t*)b->data, b->len, &used, &p) == 1) {
      int match = strcmp(p.name, name) == 0 && p.type == SB_TEXT;
      sb__props_free(&p);
      sb__handshake_destroy(&hs);
      if (match) {
        *len = b->len - used;
        return b->data + used;
      }
    } else {
      sb__handshake_destroy(&hs);
    }
  }
  sb_test_fail(__FILE__, __LINE__, "no stream \"%s\" among %d connections", name,
               f->rec.nconns);
}

TEST_IMPL(sbrun_passes_stdout_and_stderr) {
  fixture_t f;
  sb_it_result_t res;
  char out_hex[1024], code[8];
  const char* err_hex = "6572726f72206c696e650d0a"; /* "error line\r\n" */
  const char* argv[] = {NULL, "--server", NULL, "--name-prefix", "job/7", "--", NULL,
                        "write", out_hex, NULL, code, NULL};
  unsigned char want[256 + 2];
  const char* got;
  size_t len;
  int i;
  /* Every byte value, then CRLF: nothing may be translated on the way. */
  for (i = 0; i < 256; i++) {
    want[i] = (unsigned char)i;
    snprintf(out_hex + 2 * i, 3, "%02x", i);
  }
  want[256] = '\r';
  want[257] = '\n';
  strcat(out_hex, "0d0a");
  fixture_start(&f, "sbrun");
  argv[0] = f.sbrun;
  argv[2] = f.address;
  argv[6] = f.child;
  argv[9] = err_hex;
  snprintf(code, sizeof(code), "3");
  sb_it_run(&f.loop, argv, NULL, "", 0, &f.rec, 2, &res);
  if (res.exit_status != 3)
    sb_test_fail(__FILE__, __LINE__, "sbrun exit %d, stderr: %s", (int)res.exit_status,
                 res.err.data);
  ASSERT_EQ(res.out.len, 0); /* sbrun copies nothing itself */
  ASSERT_EQ(f.rec.nconns, 2);
  got = stream_payload(&f, "job/7/stdout", &len);
  ASSERT_MEM_EQ(got, len, want, sizeof(want));
  got = stream_payload(&f, "job/7/stderr", &len);
  ASSERT_MEM_EQ(got, len, "error line\r\n", 12);
  sb_it_result_free(&res);
  fixture_stop(&f);
}

TEST_IMPL(sbrun_exit_status_and_env) {
  fixture_t f;
  sb_it_result_t res;
  const char* argv[] = {NULL, "--", NULL, "env", NULL};
  char env_addr[300];
  const char* env[] = {env_addr, NULL};
  const char* got;
  size_t len;
  fixture_start(&f, "sbrunenv");
  snprintf(env_addr, sizeof(env_addr), "LOGDOG_STREAM_SERVER_PATH=%s", f.address);
  argv[0] = f.sbrun;
  argv[2] = f.child;
  sb_it_run(&f.loop, argv, env, "", 0, &f.rec, 2, &res);
  ASSERT_EQ(res.exit_status, 0);
  got = stream_payload(&f, "stdout", &len);
  ASSERT_MEM_EQ(got, len, f.address, strlen(f.address));
  got = stream_payload(&f, "stderr", &len);
  ASSERT_EQ(len, 0);
  sb_it_result_free(&res);
  fixture_stop(&f);
}

TEST_IMPL(sbrun_errors) {
  fixture_t f;
  sb_it_result_t res;
  char absent[256], absent_bind[256], missing[4200];
  const char* no_cmd[] = {NULL, "--server", NULL, NULL};
  const char* no_server[] = {NULL, "--server", absent, "--", NULL, "env", NULL};
  const char* not_found[] = {NULL, "--server", NULL, "--", missing, NULL};
  fixture_start(&f, "sbrunerr");
  sb_it_address("absent", absent, absent_bind, sizeof(absent));
  snprintf(missing, sizeof(missing), "%s-does-not-exist", f.child);
  no_cmd[0] = no_server[0] = not_found[0] = f.sbrun;
  no_cmd[2] = not_found[2] = f.address;
  no_server[4] = f.child;
  sb_it_run(&f.loop, no_cmd, NULL, "", 0, NULL, 0, &res);
  ASSERT_EQ(res.exit_status, 2);
  ASSERT(sb_it_contains(res.err.data, res.err.len, "no command given"));
  sb_it_result_free(&res);
  sb_it_run(&f.loop, no_server, NULL, "", 0, NULL, 0, &res);
  ASSERT_EQ(res.exit_status, 1);
  ASSERT(sb_it_contains(res.err.data, res.err.len, "no stream server at that address"));
  sb_it_result_free(&res);
  /* The command cannot start: 127, and both streams were opened and end empty. */
  sb_it_run(&f.loop, not_found, NULL, "", 0, &f.rec, 2, &res);
  ASSERT_EQ(res.exit_status, 127);
  ASSERT(sb_it_contains(res.err.data, res.err.len, "cannot run"));
  sb_it_result_free(&res);
  fixture_stop(&f);
}
