/* test_client.c - the client library's API without a server. */
#include "protocol.h"
#include "task.h"

TEST_IMPL(error_names) {
  /* Every code in the table has its own name and text. */
  int e;
  for (e = -1; e > SB__ERR_MIN; e--) {
    ASSERT(strcmp(sb_err_name(e), "SB_UNKNOWN") != 0);
    ASSERT(strcmp(sb_strerror(e), "unknown error") != 0);
  }
  ASSERT_STR_EQ(sb_err_name(SB_ENAME), "SB_ENAME");
  ASSERT_STR_EQ(sb_strerror(SB_EFRAMESIZE), "frame size exceeds maximum");
  ASSERT_STR_EQ(sb_err_name(SB__ERR_MIN), "SB_UNKNOWN");
  ASSERT_STR_EQ(sb_strerror(1), "unknown error");
}

TEST_IMPL(client_open_addresses) {
  sb_client_t* c = NULL;
  sb_stream_t* s = NULL;
  sb_stream_opts_t o;
  ASSERT_ERR(sb_client_open(&c, "tcp4:127.0.0.1:1"), SB_EADDRESS);
  ASSERT_NULL(c);
  ASSERT_ERR(sb_client_open(&c, "unix:relative/path"), SB_EADDRESS);
  ASSERT_ERR(sb_client_open(NULL, "unix:/x"), SB_EINVAL);
  ASSERT_OK(sb_client_open(&c, "unix:/nonexistent/streambroker-test.sock"));
  ASSERT_ERR(sb_client_set_namespace(c, "bad namespace"), SB_ENAME);
  ASSERT_OK(sb_client_set_namespace(c, "ok/ns/"));
  /* Validation happens before any dialing. */
  memset(&o, 0, sizeof(o));
  o.name = "bad name";
  ASSERT_ERR(sb_stream_open(c, &o, &s), SB_ENAME);
  ASSERT_NULL(s);
  o.name = "good";
  o.type = SB_DATAGRAM;
  {
    sb_os_handle_t h;
    ASSERT_ERR(sb_stream_open_for_process(c, &o, &h), SB_ESTREAMTYPE);
  }
  sb_client_close(c);
}

TEST_IMPL(client_absent_server) {
  /* Whichever address kind this platform has fails at once with "no server"; the
   * other platform's kind is "not supported". */
  sb_client_t *u = NULL, *p = NULL;
  sb_stream_t* s = NULL;
  sb_stream_opts_t o;
  int ru, rp;
  memset(&o, 0, sizeof(o));
  o.name = "test";
  ASSERT_OK(sb_client_open(&u, "unix:/nonexistent/streambroker-test.sock"));
  ASSERT_OK(sb_client_open(&p, "net.pipe:streambroker-test-absent"));
  ru = sb_stream_open(u, &o, &s);
  ASSERT_NULL(s);
  rp = sb_stream_open(p, &o, &s);
  ASSERT_NULL(s);
  ASSERT((ru == SB_ENOSERVER && rp == SB_ENOTSUP) || (ru == SB_ENOTSUP && rp == SB_ENOSERVER));
  sb_client_close(u);
  sb_client_close(p);
}
