/* test_admin.c - the admin pipe and sbctl against a running streambrokerd. */
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "platform.h"
#include "task.h"

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

  sb_it_run_tool(&loop, "sbctl",
                 SB_IT_ARGS("--admin", d.admin_address, "--json", "status"), NULL, 0,
                 &res);
  ASSERT_EQ(res.exit_status, 0);
  ASSERT(sb_it_contains(res.out.data, res.out.len, "\"streams_open\":2"));
  ASSERT(sb_it_contains(res.out.data, res.out.len, "\"mode\":\"archive\""));
  ASSERT(sb_it_contains(res.out.data, res.out.len, "\"SB_EMAGIC\":1"));
  ASSERT(sb_it_contains(res.out.data, res.out.len, "\"version\":\"" SB_VERSION_STRING "\""));
  sb_it_result_free(&res);

  sb_it_run_tool(&loop, "sbctl", SB_IT_ARGS("--admin", d.admin_address, "status"), NULL,
                 0, &res);
  ASSERT_EQ(res.exit_status, 0);
  ASSERT(sb_it_contains(res.out.data, res.out.len, "streams open:    2"));
  ASSERT(sb_it_contains(res.out.data, res.out.len, "1 SB_EMAGIC"));
  sb_it_result_free(&res);

  sb_it_run_tool(&loop, "sbctl",
                 SB_IT_ARGS("--admin", d.admin_address, "--json", "streams"), NULL, 0,
                 &res);
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
  sb_it_run_tool(&loop, "sbctl",
                 SB_IT_ARGS("--admin", d.admin_address, "--json", "status"), NULL, 0,
                 &res);
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
  sb_it_run_tool(&loop, "sbctl", SB_IT_ARGS("--admin", absent, "status"), NULL, 0,
                 &res);
  ASSERT_EQ(res.exit_status, 1);
  ASSERT(sb_it_contains(res.err.data, res.err.len, "cannot talk to streambrokerd"));
  sb_it_result_free(&res);
  sb_it_run_tool(&loop, "sbctl", SB_IT_ARGS("--admin", absent, "launch"), NULL, 0,
                 &res);
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
  char prog[4096], cfg[700], text[2400];
  const char* argv[] = {prog, "--config", cfg, NULL};
  sb_it_result_t res;
  if (!sb_it_is_windows())
    TEST_SKIP("control_pipe_sddl applies to Windows named pipes only");
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start(&d, &loop, "sddl", NULL, NULL);
  sb_it_daemon_close(&d);
  /* The same config with a broken descriptor: the service refuses to start. */
  snprintf(cfg, sizeof(cfg), "%s/bad.json", d.dir);
  {
    /* data_dir: the daemon's own, absolute, its backslashes doubled for JSON. */
    char jdir[1100];
    size_t o = 0, i;
    for (i = 0; d.dir[i] && o < sizeof(jdir) - 2; i++) {
      if (d.dir[i] == '\\')
        jdir[o++] = '\\';
      jdir[o++] = d.dir[i];
    }
    jdir[o] = '\0';
    snprintf(text, sizeof(text),
             "{\"control_pipe\": \"%s\", \"admin_pipe\": \"%s\", \"data_dir\": \"%s\","
             " \"control_pipe_sddl\": \"D:(nonsense\"}",
             d.address, d.admin_address, jdir);
  }
  sb_it_write_file(cfg, text, strlen(text));
  sb_it_program("streambrokerd", prog, sizeof(prog));
  sb_it_run(&loop, argv, NULL, "", 0, NULL, 0, &res);
  ASSERT_EQ(res.exit_status, 4);
  ASSERT(sb_it_contains(res.err.data, res.err.len, "invalid security descriptor"));
  sb_it_result_free(&res);
  ASSERT_OK(uv_loop_close(&loop));
}

/* ---- sbctl metrics: the Prometheus text format ---- */

#define PROM_MAX_FAMILIES 128

typedef struct {
  char name[128];
  int has_help, has_type, samples;
} prom_family_t;

typedef struct {
  prom_family_t fam[PROM_MAX_FAMILIES];
  int n;
  int last; /* the family of the previous line, -1 before any */
} prom_t;

static int prom_name_ok(const char* s, size_t len) {
  size_t i;
  if (len == 0 || (s[0] >= '0' && s[0] <= '9'))
    return 0;
  for (i = 0; i < len; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '_' || c == ':'))
      return 0;
  }
  return 1;
}

static prom_family_t* prom_family(prom_t* p, const char* name, size_t len, int line) {
  int i;
  if (len >= sizeof(p->fam[0].name))
    sb_test_fail(__FILE__, __LINE__, "line %d: metric name too long", line);
  for (i = 0; i < p->n; i++) {
    if (strlen(p->fam[i].name) == len && memcmp(p->fam[i].name, name, len) == 0)
      break;
  }
  if (i == p->n) {
    ASSERT_LT(p->n, PROM_MAX_FAMILIES);
    memcpy(p->fam[i].name, name, len);
    p->fam[i].name[len] = '\0';
    p->n++;
  } else if (i != p->last) {
    /* A family's lines are one group: coming back to it later is invalid. */
    sb_test_fail(__FILE__, __LINE__, "line %d: family %s is split", line, p->fam[i].name);
  }
  p->last = i;
  return &p->fam[i];
}

/*
 * A small parser of the text exposition format, strict where the textfile collectors
 * are: "# HELP name text" and "# TYPE name type" (at most once each, before the
 * family's samples, a known type), then samples "name{label="value",...} value" whose
 * names and labels are valid and whose value is a number. Returns the families.
 */
static void prom_parse(const char* text, size_t len, prom_t* p) {
  const char* end = text + len;
  int line = 0;
  memset(p, 0, sizeof(*p));
  p->last = -1;
  ASSERT(len > 0 && text[len - 1] == '\n');
  while (text < end) {
    const char* nl = memchr(text, '\n', (size_t)(end - text));
    const char* s = text;
    size_t n;
    prom_family_t* f;
    line++;
    ASSERT_NOT_NULL(nl);
    if (strncmp(s, "# HELP ", 7) == 0 || strncmp(s, "# TYPE ", 7) == 0) {
      int help = s[2] == 'H';
      const char* name = s + 7;
      const char* sp = memchr(name, ' ', (size_t)(nl - name));
      if (sp == NULL || !prom_name_ok(name, (size_t)(sp - name)))
        sb_test_fail(__FILE__, __LINE__, "line %d: bad HELP/TYPE: %.*s", line,
                     (int)(nl - s), s);
      f = prom_family(p, name, (size_t)(sp - name), line);
      if (f->samples > 0 || (help ? f->has_help : f->has_type))
        sb_test_fail(__FILE__, __LINE__, "line %d: %s of %s after its samples or twice",
                     line, help ? "HELP" : "TYPE", f->name);
      if (help) {
        f->has_help = 1;
      } else {
        static const char* const types[] = {"counter", "gauge", "untyped", "summary",
                                            "histogram"};
        size_t t, tl = (size_t)(nl - sp - 1);
        for (t = 0; t < 5; t++) {
          if (strlen(types[t]) == tl && memcmp(sp + 1, types[t], tl) == 0)
            break;
        }
        if (t == 5)
          sb_test_fail(__FILE__, __LINE__, "line %d: unknown type %.*s", line, (int)tl,
                       sp + 1);
        f->has_type = 1;
      }
    } else {
      const char* v;
      char num[64], *stop;
      ASSERT(s[0] != '#');
      for (n = 0; s + n < nl && s[n] != '{' && s[n] != ' '; n++) {
      }
      if (!prom_name_ok(s, n))
        sb_test_fail(__FILE__, __LINE__, "line %d: bad sample: %.*s", line, (int)(nl - s),
                     s);
      f = prom_family(p, s, n, line);
      v = s + n;
      if (*v == '{') {
        /* label="value" pairs, values with \\, \" and \n escapes */
        v++;
        while (*v != '}') {
          const char* eq = v;
          while (eq < nl && *eq != '=')
            eq++;
          if (eq >= nl || !prom_name_ok(v, (size_t)(eq - v)) || eq[1] != '"')
            sb_test_fail(__FILE__, __LINE__, "line %d: bad label", line);
          for (v = eq + 2; v < nl && *v != '"'; v++) {
            if (*v == '\\') {
              v++;
              if (*v != '\\' && *v != '"' && *v != 'n')
                sb_test_fail(__FILE__, __LINE__, "line %d: bad escape", line);
            }
          }
          if (v >= nl)
            sb_test_fail(__FILE__, __LINE__, "line %d: unterminated label value", line);
          v++;
          if (*v == ',')
            v++;
          else if (*v != '}')
            sb_test_fail(__FILE__, __LINE__, "line %d: bad label list", line);
        }
        v++;
      }
      if (*v != ' ' || (size_t)(nl - v - 1) == 0 || (size_t)(nl - v - 1) >= sizeof(num))
        sb_test_fail(__FILE__, __LINE__, "line %d: no value", line);
      memcpy(num, v + 1, (size_t)(nl - v - 1));
      num[nl - v - 1] = '\0';
      strtod(num, &stop);
      if (*stop != '\0')
        sb_test_fail(__FILE__, __LINE__, "line %d: value \"%s\" is not a number", line,
                     num);
      f->samples++;
    }
    text = nl + 1;
  }
}

static const prom_family_t* prom_find(const prom_t* p, const char* name) {
  int i;
  for (i = 0; i < p->n; i++) {
    if (strcmp(p->fam[i].name, name) == 0)
      return &p->fam[i];
  }
  sb_test_fail(__FILE__, __LINE__, "no metric %s", name);
}

/*
 * sbctl metrics against a service with a stream and a bad handshake behind it: valid
 * Prometheus text with every family described, the counters' values, and a status
 * field sbctl has never heard of still printed (from a saved reply, --from).
 */
TEST_IMPL(admin_metrics_prometheus) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  sb_it_result_t res;
  sb_client_t* c;
  sb_stream_t* s;
  sb_stream_opts_t o;
  sb_os_handle_t raw;
  prom_t p;
  int kind, i;
  const char* path;
  char saved[700];
  static const char future[] =
      "{\"version\":\"9.9\",\"queue_depth\":7,\"counters\":{\"bytes_in\":5,"
      "\"frobs\":3,\"frob_errors\":{\"EBADF\":2,\"x\\\"y\":1}},\"spool\":{\"bytes\":1.5}}";
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start(&d, &loop, "metrics", NULL, NULL);
  ASSERT_OK(sb_client_open(&c, d.address));
  memset(&o, 0, sizeof(o));
  o.name = "metrics/one";
  ASSERT_OK(sb_stream_open(c, &o, &s));
  ASSERT_OK(sb_stream_write(s, "0123456789", 10));
  ASSERT_OK(sb_stream_close(s));
  sb_client_close(c);
  ASSERT_OK(sb__address_parse(d.address, &kind, &path));
  ASSERT_OK(sb__dial(kind, path, 5000, 0, &raw));
  ASSERT_OK(sb__handle_write(raw, "NOT A HANDSHAKE", 15));
  sb__handle_close(raw);
  sb_it_daemon_wait_log(&d, "\" closed: ", 1, 30000);
  sb_it_daemon_wait_log(&d, "bad handshake", 1, 30000);

  sb_it_run_tool(&loop, "sbctl", SB_IT_ARGS("--admin", d.admin_address, "metrics"),
                 NULL, 0, &res);
  ASSERT_EQ(res.exit_status, 0);
  prom_parse(res.out.data, res.out.len, &p);
  for (i = 0; i < p.n; i++) {
    if (!p.fam[i].has_help || !p.fam[i].has_type || p.fam[i].samples == 0)
      sb_test_fail(__FILE__, __LINE__, "family %s: help %d, type %d, %d samples",
                   p.fam[i].name, p.fam[i].has_help, p.fam[i].has_type,
                   p.fam[i].samples);
    ASSERT(strncmp(p.fam[i].name, "streambroker_", 13) == 0 ||
           strncmp(p.fam[i].name, "process_", 8) == 0);
  }
  prom_find(&p, "streambroker_info");
  prom_find(&p, "streambroker_uptime_seconds");
  prom_find(&p, "streambroker_streams_open");
  ASSERT(sb_it_contains(res.out.data, res.out.len,
                        "# TYPE streambroker_received_bytes_total counter\n"));
  ASSERT(sb_it_contains(res.out.data, res.out.len,
                        "\nstreambroker_received_bytes_total 10\n"));
  ASSERT(sb_it_contains(res.out.data, res.out.len,
                        "\nstreambroker_streams_opened_total 1\n"));
  ASSERT(sb_it_contains(res.out.data, res.out.len,
                        "\nstreambroker_bad_handshakes_total{reason=\"SB_EMAGIC\"} 1\n"));
  ASSERT(sb_it_contains(res.out.data, res.out.len, "mode=\"archive\""));
  sb_it_result_free(&res);
  sb_it_daemon_close(&d);

  /* Fields added to the status later come out too, by the naming rule. */
  snprintf(saved, sizeof(saved), "%s/status.json", d.dir);
  sb_it_write_file(saved, future, strlen(future));
  sb_it_run_tool(&loop, "sbctl", SB_IT_ARGS("--from", saved, "metrics"), NULL, 0, &res);
  ASSERT_EQ(res.exit_status, 0);
  prom_parse(res.out.data, res.out.len, &p);
  ASSERT(sb_it_contains(
      res.out.data, res.out.len,
      "# TYPE streambroker_queue_depth gauge\nstreambroker_queue_depth 7\n"));
  ASSERT(sb_it_contains(res.out.data, res.out.len,
                        "# TYPE streambroker_frobs_total counter\nstreambroker_frobs_total 3\n"));
  ASSERT(sb_it_contains(res.out.data, res.out.len,
                        "streambroker_frob_errors_total{reason=\"x\\\"y\"} 1\n"));
  ASSERT(sb_it_contains(res.out.data, res.out.len, "\nstreambroker_spool_bytes 1.5\n"));
  sb_it_result_free(&res);
  ASSERT_OK(uv_loop_close(&loop));
}

/* Fails the test when text has needle. */
static void assert_lacks(const sb_it_result_t* res, const char* what,
                         const char* needle) {
  if (sb_it_contains(res->out.data, res->out.len, needle))
    sb_test_fail(__FILE__, __LINE__, "%s metrics have \"%s\":\n%.*s", what, needle,
                 (int)res->out.len, res->out.data);
}

/*
 * The metrics as Prometheus' own linter sees them (promtool check metrics, POSIX; and,
 * with SB_METRICS_DIR set, the output saved there for tests/windows/test-promtool.sh
 * to check the Windows build's), of a service in archive mode and of one forwarding
 * to it, each with a stream open: LF line ends, every family typed and described,
 * counters ending in _total, series that exist before their first event, the process
 * figures, and the upstream's address on what is counted per upstream.
 */
TEST_IMPL(admin_metrics_promtool) {
  uv_loop_t loop;
  sb_it_daemon_t a, f;
  sb_it_daemon_t* ds[2];
  sb_it_result_t res;
  sb_client_t* c[2];
  sb_stream_t* s[2];
  sb_stream_opts_t o;
  const char* dir = getenv("SB_METRICS_DIR");
  char needle[512], saved[1024];
  const char* const what[2] = {"archive", "forward"};
  const char* name;
  int k;
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start(&a, &loop, "prom-archive", NULL, NULL);
  sb_it_daemon_start(&f, &loop, "prom-forward", a.address, NULL);
  ds[0] = &a;
  ds[1] = &f;
  for (k = 0; k < 2; k++) {
    ASSERT_OK(sb_client_open(&c[k], ds[k]->address));
    memset(&o, 0, sizeof(o));
    o.name = "prom/open";
    ASSERT_OK(sb_stream_open(c[k], &o, &s[k]));
    ASSERT_OK(sb_stream_write(s[k], "line\n", 5));
  }
  for (k = 0; k < 2; k++) {
    sb_it_run_tool(&loop, "sbctl",
                   SB_IT_ARGS("--admin", ds[k]->admin_address, "metrics"), NULL, 0,
                   &res);
    ASSERT_EQ(res.exit_status, 0);
    sb__buf_putc(&res.out, '\0'); /* for strstr; not part of the output */
    res.out.len--;
    if (dir != NULL) {
      sb_it_result_t st;
      snprintf(saved, sizeof(saved), "%s/%s.prom", dir, what[k]);
      sb_it_write_file(saved, res.out.data, res.out.len);
      /* The status too: the script runs sbctl metrics --from it through cmd's
       * redirection, as an administrator's task does (a program started here gets
       * binary stdio from libuv, which would hide a CRLF). */
      sb_it_run_tool(&loop, "sbctl",
                     SB_IT_ARGS("--admin", ds[k]->admin_address, "--json", "status"),
                     NULL, 0, &st);
      ASSERT_EQ(st.exit_status, 0);
      snprintf(saved, sizeof(saved), "%s/%s-status.json", dir, what[k]);
      sb_it_write_file(saved, st.out.data, st.out.len);
      sb_it_result_free(&st);
    }
    assert_lacks(&res, what[k], "\r");
    assert_lacks(&res, what[k], " untyped\n");
    assert_lacks(&res, what[k], "does not describe it");
    /* Once, under one name: the retention counters, not the archive's copies. */
    assert_lacks(&res, what[k], "streambroker_archive_retention_deleted_files ");
    /* Every counter family's name ends in _total. */
    for (name = res.out.data; (name = strstr(name, "# TYPE ")) != NULL; name += 7) {
      const char* sp = strchr(name + 7, ' ');
      ASSERT_NOT_NULL(sp);
      if (strncmp(sp, " counter\n", 9) == 0 &&
          (sp - name < 13 || strncmp(sp - 6, "_total", 6) != 0))
        sb_test_fail(__FILE__, __LINE__, "%s: counter %.*s without _total", what[k],
                     (int)(sp - name - 7), name + 7);
    }
    ASSERT(sb_it_contains(res.out.data, res.out.len,
                          "streambroker_build_info{version=\"" SB_VERSION_STRING
                          "\"} 1\n"));
    ASSERT(sb_it_contains(res.out.data, res.out.len, "\nprocess_start_time_seconds 1"));
    ASSERT(
        sb_it_contains(res.out.data, res.out.len, "\nprocess_resident_memory_bytes "));
    ASSERT(sb_it_contains(res.out.data, res.out.len, "\nprocess_open_fds "));
    /* Present at 0 before any bad handshake. */
    ASSERT(sb_it_contains(
        res.out.data, res.out.len,
        "\nstreambroker_bad_handshakes_total{reason=\"SB_EMAGIC\"} 0\n"));
#ifndef _WIN32
    {
      const char* lint[] = {"/bin/sh", "-c", "promtool check metrics 2>&1", NULL};
      sb_it_result_t pr;
      sb_it_run(&loop, lint, NULL, res.out.data, res.out.len, NULL, 0, &pr);
      if (pr.exit_status != 0 || pr.out.len != 0)
        sb_test_fail(__FILE__, __LINE__,
                     "promtool check metrics (%s mode), exit %d (127: apt-get install "
                     "prometheus):\n%.*s",
                     what[k], (int)pr.exit_status, (int)pr.out.len, pr.out.data);
      sb_it_result_free(&pr);
    }
#endif
    if (k == 1) {
      snprintf(needle, sizeof(needle),
               "\nstreambroker_upstream_dials_total{upstream=\"%s\"} ", a.address);
      ASSERT(sb_it_contains(res.out.data, res.out.len, needle));
    } else {
      ASSERT(
          sb_it_contains(res.out.data, res.out.len, "\nstreambroker_archive_files "));
    }
    sb_it_result_free(&res);
  }
  for (k = 0; k < 2; k++) {
    ASSERT_OK(sb_stream_close(s[k]));
    sb_client_close(c[k]);
  }
  sb_it_daemon_close(&f);
  sb_it_daemon_close(&a);
  ASSERT_OK(uv_loop_close(&loop));
}

/* Waits until the service lists the stream name (its handshake was read). */
static void wait_listed(uv_loop_t* loop, const sb_it_daemon_t* d, const char* name) {
  sb_it_result_t res;
  int i;
  for (i = 0; i < 600; i++) {
    sb_it_run_tool(loop, "sbctl",
                   SB_IT_ARGS("--admin", d->admin_address, "--json", "streams"), NULL,
                   0, &res);
    if (sb_it_contains(res.out.data, res.out.len, name)) {
      sb_it_result_free(&res);
      return;
    }
    sb_it_result_free(&res);
    uv_sleep(100);
  }
  sb_test_fail(__FILE__, __LINE__, "the service never listed %s", name);
}

/*
 * sbctl's text, as an administrator reads it: status shows the archive (its
 * directory, bytes, files, retention) as the README says, and streams where each
 * stream goes, its archive file or its name upstream with the connection's state.
 */
TEST_IMPL(admin_text_archive_and_destinations) {
  uv_loop_t loop;
  sb_it_daemon_t a, f;
  sb_it_result_t res;
  sb_client_t *ca, *cf;
  sb_stream_t *sa, *sf;
  sb_stream_opts_t o;
  char needle[700];
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start(&a, &loop, "text-archive", NULL, "\"archive_max_bytes\": 1000000");
  sb_it_daemon_start(&f, &loop, "text-forward", a.address, NULL);
  memset(&o, 0, sizeof(o));
  o.name = "where/archived";
  ASSERT_OK(sb_client_open(&ca, a.address));
  ASSERT_OK(sb_stream_open(ca, &o, &sa));
  ASSERT_OK(sb_stream_write(sa, "abc\n", 4));
  o.name = "where/forwarded";
  ASSERT_OK(sb_client_open(&cf, f.address));
  ASSERT_OK(sb_stream_open(cf, &o, &sf));
  ASSERT_OK(sb_stream_write(sf, "abc\n", 4));
  wait_listed(&loop, &a, "where/archived");
  wait_listed(&loop, &f, "where/forwarded");

  sb_it_run_tool(&loop, "sbctl", SB_IT_ARGS("--admin", a.admin_address, "status"), NULL,
                 0, &res);
  ASSERT_EQ(res.exit_status, 0);
  snprintf(needle, sizeof(needle), "\narchive:         %s: ", a.archive_dir);
  if (!sb_it_contains(res.out.data, res.out.len, needle))
    sb_test_fail(__FILE__, __LINE__, "no \"%s\" in:\n%.*s", needle + 1,
                 (int)res.out.len, res.out.data);
  ASSERT(sb_it_contains(res.out.data, res.out.len, " bytes in "));
  ASSERT(sb_it_contains(res.out.data, res.out.len,
                        "\nretention:       max 1000000 bytes, no age limit; deleted 0 "
                        "streams (0 files, 0 bytes)\n"));
  sb_it_result_free(&res);

  sb_it_run_tool(&loop, "sbctl", SB_IT_ARGS("--admin", a.admin_address, "streams"),
                 NULL, 0, &res);
  ASSERT_EQ(res.exit_status, 0);
  ASSERT(sb_it_contains(res.out.data, res.out.len, "GOES TO"));
  ASSERT(sb_it_contains(res.out.data, res.out.len, a.archive_dir));
  ASSERT(sb_it_contains(res.out.data, res.out.len, "archived.log\n"));
  sb_it_result_free(&res);

  sb_it_run_tool(&loop, "sbctl", SB_IT_ARGS("--admin", f.admin_address, "streams"),
                 NULL, 0, &res);
  ASSERT_EQ(res.exit_status, 0);
  if (!sb_it_contains(res.out.data, res.out.len, "  upstream where/forwarded ("))
    sb_test_fail(__FILE__, __LINE__, "no upstream name in:\n%.*s", (int)res.out.len,
                 res.out.data);
  sb_it_result_free(&res);
  /* Forward mode has no archive section. */
  sb_it_run_tool(&loop, "sbctl", SB_IT_ARGS("--admin", f.admin_address, "status"), NULL,
                 0, &res);
  ASSERT(!sb_it_contains(res.out.data, res.out.len, "\narchive:"));
  sb_it_result_free(&res);

  ASSERT_OK(sb_stream_close(sa));
  ASSERT_OK(sb_stream_close(sf));
  sb_client_close(ca);
  sb_client_close(cf);
  sb_it_daemon_close(&f);
  sb_it_daemon_close(&a);
  ASSERT_OK(uv_loop_close(&loop));
}
