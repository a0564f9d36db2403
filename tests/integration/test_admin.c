/* test_admin.c - the admin pipe and sbctl against a running streambrokerd. */
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "platform.h"
#include "task.h"

static void run_sbctl(uv_loop_t* loop, const char* admin, const char* a1, const char* a2,
                      sb_it_result_t* res) {
  char prog[4096];
  const char* argv[] = {prog, "--admin", admin, a1, a2, NULL};
  sb_it_program("sbctl", prog, sizeof(prog));
  sb_it_run(loop, argv, NULL, "", 0, NULL, 0, res);
}

TEST_IMPL(admin_status_and_streams) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  sb_it_result_t res;
  sb_client_t* c;
  sb_stream_t *s1, *s2;
  sb_stream_opts_t o;
  sb_os_handle_t raw;
  int kind;
  const char* path;
  char needle[128];
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start(&d, &loop, "admin", NULL, NULL);

  /* Two open streams with data, one bad handshake. */
  ASSERT_OK(sb_client_open(&c, d.address));
  memset(&o, 0, sizeof(o));
  o.name = "admin/one";
  ASSERT_OK(sb_stream_open(c, &o, &s1));
  ASSERT_OK(sb_stream_write(s1, "0123456789", 10));
  o.name = "admin/two";
  o.type = SB_DATAGRAM;
  ASSERT_OK(sb_stream_open(c, &o, &s2));
  ASSERT_OK(sb_stream_send_datagram(s2, "abc", 3));
  ASSERT_OK(sb__address_parse(d.address, &kind, &path));
  ASSERT_OK(sb__dial(kind, path, 5000, 0, &raw));
  ASSERT_OK(sb__handle_write(raw, "NOT A HANDSHAKE", 15));
  sb__handle_close(raw);
  sb_it_daemon_wait_log(&d, "opened", 2, 30000);
  sb_it_daemon_wait_log(&d, "bad handshake", 1, 30000);
  /* The data has been read once the streams' byte counts show it. */

  run_sbctl(&loop, d.admin_address, "--json", "status", &res);
  ASSERT_EQ(res.exit_status, 0);
  ASSERT(sb_it_contains(res.out.data, res.out.len, "\"streams_open\":2"));
  ASSERT(sb_it_contains(res.out.data, res.out.len, "\"mode\":\"archive\""));
  ASSERT(sb_it_contains(res.out.data, res.out.len, "\"SB_EMAGIC\":1"));
  ASSERT(sb_it_contains(res.out.data, res.out.len, "\"version\":\"" SB_VERSION_STRING "\""));
  sb_it_result_free(&res);

  run_sbctl(&loop, d.admin_address, "status", NULL, &res);
  ASSERT_EQ(res.exit_status, 0);
  ASSERT(sb_it_contains(res.out.data, res.out.len, "streams open:    2"));
  ASSERT(sb_it_contains(res.out.data, res.out.len, "1 SB_EMAGIC"));
  sb_it_result_free(&res);

  run_sbctl(&loop, d.admin_address, "--json", "streams", &res);
  ASSERT_EQ(res.exit_status, 0);
  ASSERT(sb_it_contains(res.out.data, res.out.len, "\"name\":\"admin/one\""));
  ASSERT(sb_it_contains(res.out.data, res.out.len, "\"name\":\"admin/two\""));
  snprintf(needle, sizeof(needle), "\"pid\":%d", (int)uv_os_getpid());
  ASSERT(sb_it_contains(res.out.data, res.out.len, needle));
  sb_it_result_free(&res);

  ASSERT_OK(sb_stream_close(s1));
  ASSERT_OK(sb_stream_close(s2));
  sb_client_close(c);
  sb_it_daemon_wait_log(&d, "\" closed: ", 2, 30000);
  run_sbctl(&loop, d.admin_address, "--json", "status", &res);
  ASSERT(sb_it_contains(res.out.data, res.out.len, "\"streams_open\":0"));
  ASSERT(sb_it_contains(res.out.data, res.out.len, "\"bytes_in\":14"));
  sb_it_result_free(&res);
  sb_it_daemon_close(&d);
  ASSERT_OK(uv_loop_close(&loop));
}

TEST_IMPL(admin_sbctl_errors) {
  uv_loop_t loop;
  sb_it_result_t res;
  char absent[256], bind[256];
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_address("noadmin", absent, bind, sizeof(absent));
  run_sbctl(&loop, absent, "status", NULL, &res);
  ASSERT_EQ(res.exit_status, 1);
  ASSERT(sb_it_contains(res.err.data, res.err.len, "cannot talk to streambrokerd"));
  sb_it_result_free(&res);
  run_sbctl(&loop, absent, "launch", NULL, &res);
  ASSERT_EQ(res.exit_status, 2);
  sb_it_result_free(&res);
  ASSERT_OK(uv_loop_close(&loop));
}

/* The control pipe admits local users, the admin pipe administrators only. Wine does
 * not enforce descriptors, so on Windows the DACL is read back and checked. */
TEST_IMPL(admin_pipes_are_restricted) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  char control[512], admin[512];
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start(&d, &loop, "secure", NULL, NULL);
  ASSERT_OK(sb_it_pipe_security(d.address, control, sizeof(control)));
  ASSERT_OK(sb_it_pipe_security(d.admin_address, admin, sizeof(admin)));
  if (!sb_it_is_windows()) {
    ASSERT_STR_EQ(control, "660");
    ASSERT_STR_EQ(admin, "600");
  } else {
    /* Network logons denied; SYSTEM and Administrators allowed (Wine does not keep
     * the protected flag, so "D:P" is not required of the read-back);
     * Authenticated Users on the control pipe only. */
    if (strncmp(control, "D:", 2) != 0 || strstr(control, "(D;") == NULL ||
        strstr(control, ";;;NU)") == NULL || strstr(control, ";;;SY)") == NULL ||
        strstr(control, ";;;BA)") == NULL || strstr(control, ";;;AU)") == NULL)
      sb_test_fail(__FILE__, __LINE__, "control pipe DACL: %s", control);
    if (strncmp(admin, "D:", 2) != 0 || strstr(admin, ";;;NU)") == NULL ||
        strstr(admin, ";;;BA)") == NULL || strstr(admin, ";;;AU)") != NULL)
      sb_test_fail(__FILE__, __LINE__, "admin pipe DACL: %s", admin);
  }
  sb_it_daemon_close(&d);
  ASSERT_OK(uv_loop_close(&loop));
}

TEST_IMPL(admin_bad_sddl_refused) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  char prog[4096], cfg[700], text[1200];
  const char* argv[] = {prog, "--config", cfg, NULL};
  sb_it_result_t res;
  if (!sb_it_is_windows())
    TEST_SKIP("control_pipe_sddl applies to Windows named pipes only");
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start(&d, &loop, "sddl", NULL, NULL);
  sb_it_daemon_close(&d);
  /* The same config with a broken descriptor: the service refuses to start. */
  snprintf(cfg, sizeof(cfg), "%s/bad.json", d.dir);
  snprintf(text, sizeof(text),
           "{\"control_pipe\": \"%s\", \"admin_pipe\": \"%s\", \"data_dir\": \"x\","
           " \"control_pipe_sddl\": \"D:(nonsense\"}",
           d.address, d.admin_address);
  sb_it_write_file(cfg, text, strlen(text));
  sb_it_program("streambrokerd", prog, sizeof(prog));
  sb_it_run(&loop, argv, NULL, "", 0, NULL, 0, &res);
  ASSERT_EQ(res.exit_status, 4);
  ASSERT(sb_it_contains(res.err.data, res.err.len, "invalid security descriptor"));
  sb_it_result_free(&res);
  ASSERT_OK(uv_loop_close(&loop));
}
