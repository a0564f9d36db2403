/*
 * test_winservice.c - streambrokerd as the Windows service StreamBroker, driven with
 * Windows' own tools under Wine: install, net start, sc query, a stream through the
 * pipe to an upstream, sbctl, a stream spooled while the upstream is away, net stop
 * (the spool keeps it), net start (it is delivered), uninstall; and a failed start that
 * reports its exit code. The recovery settings are read back from the SCM.
 */
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <windows.h>
#endif

#include "helpers.h"
#include "task.h"

#ifdef _WIN32
/* The service's failure-actions flag as the SCM holds it (1 or 0), after setting it
 * to set when set >= 0; -2 when the SCM knows no such setting (Wine 8's answers
 * ERROR_INVALID_LEVEL: only real Windows can show the flag); -1 when it cannot be read
 * (the test then fails). Also checks the three restart actions when want_actions. */
static int failure_flag(int set, int want_actions) {
  SC_HANDLE scm = OpenSCManagerW(NULL, NULL, SC_MANAGER_CONNECT), svc = NULL;
  BYTE buf[8192];
  DWORD need = 0;
  int r = -1;
  if (scm != NULL)
    svc = OpenServiceW(scm, L"StreamBroker",
                       SERVICE_QUERY_CONFIG | SERVICE_CHANGE_CONFIG);
  if (svc != NULL && set >= 0) {
    SERVICE_FAILURE_ACTIONS_FLAG f;
    f.fFailureActionsOnNonCrashFailures = set ? TRUE : FALSE;
    if (!ChangeServiceConfig2W(svc, SERVICE_CONFIG_FAILURE_ACTIONS_FLAG, &f))
      fprintf(stderr, "ChangeServiceConfig2W(FAILURE_ACTIONS_FLAG): error %lu\n",
              GetLastError());
  }
  if (svc != NULL) {
    if (QueryServiceConfig2W(svc, SERVICE_CONFIG_FAILURE_ACTIONS_FLAG, buf, sizeof(buf),
                             &need))
      r = ((SERVICE_FAILURE_ACTIONS_FLAG*)buf)->fFailureActionsOnNonCrashFailures ? 1
                                                                                  : 0;
    else if (GetLastError() == ERROR_INVALID_LEVEL)
      r = -2; /* Wine's SCM: no such level */
    else
      fprintf(stderr, "QueryServiceConfig2W(FAILURE_ACTIONS_FLAG): error %lu\n",
              GetLastError());
  }
  if (svc != NULL && r != -1 && want_actions) {
    SERVICE_FAILURE_ACTIONSW* fa = (SERVICE_FAILURE_ACTIONSW*)buf;
    if (!QueryServiceConfig2W(svc, SERVICE_CONFIG_FAILURE_ACTIONS, buf, sizeof(buf),
                              &need)) {
      if (GetLastError() != ERROR_INVALID_LEVEL) { /* Wine cannot read them back */
        fprintf(stderr, "QueryServiceConfig2W(FAILURE_ACTIONS): error %lu\n",
                GetLastError());
        r = -1;
      }
    } else if (fa->cActions != 3 || fa->lpsaActions[0].Type != SC_ACTION_RESTART ||
               fa->lpsaActions[0].Delay != 5000 || fa->lpsaActions[2].Delay != 30000) {
      fprintf(stderr, "the restart actions are not the service's\n");
      r = -1;
    }
  }
  if (svc != NULL)
    CloseServiceHandle(svc);
  if (scm != NULL)
    CloseServiceHandle(scm);
  return r;
}
#else
static int failure_flag(int set, int want_actions) {
  (void)set;
  (void)want_actions;
  return -1;
}
#endif

static void run_prog(uv_loop_t* loop, const char* const* argv, sb_it_result_t* res) {
  sb_it_run(loop, argv, NULL, "", 0, NULL, 0, res);
}

/* Runs argv and fails the test unless its exit status is want and its output (out
 * and err) contains needle. */
static void expect(uv_loop_t* loop, const char* const* argv, int want,
                   const char* needle) {
  sb_it_result_t res;
  run_prog(loop, argv, &res);
  if ((want >= 0 && res.exit_status != want) ||
      (needle && !sb_it_contains(res.out.data, res.out.len, needle) &&
       !sb_it_contains(res.err.data, res.err.len, needle)))
    sb_test_fail(__FILE__, __LINE__,
                 "%s %s: exit %d, out \"%s\", err \"%s\"; want %d, \"%s\"", argv[0],
                 argv[1] ? argv[1] : "", (int)res.exit_status, res.out.data,
                 res.err.data, want, needle ? needle : "");
  sb_it_result_free(&res);
}

/* Runs argv until its output holds needle, for up to ms (then fails as expect does).
 * sc query: the service writes its last log line a moment before it reports STOPPED;
 * sbctl: a stream that reached the upstream is closed once the upstream's end is
 * confirmed, after upstream_end_linger_ms on Windows. */
static void wait_state(uv_loop_t* loop, const char* const* query, const char* state,
                       int ms) {
  int waited;
  for (waited = 0; waited < ms; waited += 200) {
    sb_it_result_t res;
    int found;
    run_prog(loop, query, &res);
    found = sb_it_contains(res.out.data, res.out.len, state);
    sb_it_result_free(&res);
    if (found)
      return;
    uv_sleep(200);
  }
  expect(loop, query, 0, state); /* fails, saying what sc query says */
}

struct file_wait {
  uv_timer_t tick;
  const char* path;
  const char* needle;
};

static void on_tick(uv_timer_t* t) {
  (void)t;
}

static int file_has(void* arg) {
  struct file_wait* w = arg;
  size_t len;
  char* text = sb_it_read_file(w->path, &len);
  int found = text != NULL && sb_it_contains(text, len, w->needle);
  free(text);
  return found;
}

static void on_tick_closed(uv_handle_t* h) {
  *(int*)h->data = 1;
}

/* Waits (up to ms) until the file exists and contains needle: the service writes it
 * in another process, so it is looked at every 50 ms. */
static int wait_file(uv_loop_t* loop, const char* path, const char* needle, int ms) {
  struct file_wait w;
  int closed = 0, found;
  w.path = path;
  w.needle = needle;
  ASSERT_OK(uv_timer_init(loop, &w.tick));
  ASSERT_OK(uv_timer_start(&w.tick, on_tick, 50, 50));
  found = sb_it_run_until(loop, (uint64_t)ms, file_has, &w);
  w.tick.data = &closed;
  uv_close((uv_handle_t*)&w.tick, on_tick_closed);
  while (!closed)
    uv_run(loop, UV_RUN_ONCE);
  return found;
}

TEST_IMPL(winservice_install_start_use_stop_uninstall) {
  uv_loop_t loop;
  char dir[512], cfg[700], log[700], archive[700], text[4096];
  char address[256], bind[256], admin[256], admin_bind[256];
  char prog[4096], sbcat[4096], sbctl[4096], path[1200];
  const char* install[] = {prog, "install", "--config", cfg, NULL};
  const char* uninstall[] = {prog, "uninstall", NULL};
  const char* start[] = {"net", "start", "StreamBroker", NULL};
  const char* stop[] = {"net", "stop", "StreamBroker", NULL};
  const char* query[] = {"sc", "query", "StreamBroker", NULL};
  const char* cat[] = {sbcat, "--name", "svc/hello", "--server", address, NULL};
  const char* cat2[] = {sbcat, "--name", "svc/spooled", "--server", address, NULL};
  sb_it_daemon_t up;
  const char* status[] = {sbctl, "--admin", admin, "status", NULL};
  sb_it_result_t res;
  size_t i;
  if (!sb_it_is_windows())
    TEST_SKIP("the Windows service control manager is Windows only");
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_program("streambrokerd", prog, sizeof(prog));
  sb_it_program("sbcat", sbcat, sizeof(sbcat));
  sb_it_program("sbctl", sbctl, sizeof(sbctl));
  sb_it_tempdir("winsvc", dir, sizeof(dir));
  sb_it_address("svc", address, bind, sizeof(address));
  sb_it_address("svc-admin", admin, admin_bind, sizeof(admin));
  snprintf(cfg, sizeof(cfg), "%s\\streambroker.json", dir);
  snprintf(log, sizeof(log), "%s\\service.log", dir);
  /* The upstream: an archive-mode streambrokerd in the console. */
  sb_it_daemon_start(&up, &loop, "svcup", NULL, NULL);
  snprintf(archive, sizeof(archive), "%s", up.archive_dir);
  {
    /* JSON strings: the backslashes of Windows paths doubled. */
    char jdir[1100], jlog[1500];
    size_t o = 0;
    for (i = 0; dir[i] && o < sizeof(jdir) - 2; i++) {
      if (dir[i] == '\\')
        jdir[o++] = '\\';
      jdir[o++] = dir[i];
    }
    jdir[o] = '\0';
    snprintf(jlog, sizeof(jlog), "%s\\\\service.log", jdir);
    snprintf(text, sizeof(text),
             "{\"control_pipe\": \"%s\", \"admin_pipe\": \"%s\", \"data_dir\": \"%s\", "
             "\"log_file\": \"%s\", \"log_level\": \"debug\", \"upstream\": \"%s\", "
             "\"backoff_max_ms\": 500}",
             address, admin, jdir, jlog, up.address);
  }
  sb_it_write_file(cfg, text, strlen(text));

  /* A service left by an earlier failed run would make install fail. */
  run_prog(&loop, uninstall, &res);
  sb_it_result_free(&res);

  expect(&loop, install, 0, "installed the service StreamBroker");
  /* Restarts follow any failure, a clean failed start too, not only a crash. Where
   * the SCM cannot hold the flag (Wine), install says it tried. */
  {
    int flag = failure_flag(-1, 1);
    ASSERT(flag == 1 || flag == -2);
    if (flag == -2) {
      const char* again[] = {prog, "uninstall", NULL};
      sb_it_result_t r2;
      run_prog(&loop, again, &r2);
      sb_it_result_free(&r2);
      expect(&loop, install, 0, "cannot set the failure-actions flag");
    }
  }
  expect(&loop, install, 1, "already installed");
  expect(&loop, query, 0, "STOPPED");
  expect(&loop, start, 0, NULL);
  wait_state(&loop, query, "RUNNING", 20000);
  ASSERT(wait_file(&loop, log, "running as the service StreamBroker", 20000));

  /* Used like any other: a stream arrives, sbctl reports it. */
  sb_it_run(&loop, cat, NULL, "from a service\n", 15, NULL, 0, &res);
  ASSERT_EQ(res.exit_status, 0);
  sb_it_result_free(&res);
  snprintf(path, sizeof(path), "%s\\svc\\hello.json", archive);
  ASSERT(wait_file(&loop, path, "\"complete\":\ttrue", 20000));
  snprintf(path, sizeof(path), "%s\\svc\\hello.log", archive);
  ASSERT(wait_file(&loop, path, "from a service\n", 1000));
  wait_state(&loop, status, "1 opened, 1 closed", 20000);

  /* The upstream goes away; a stream written meanwhile waits in the spool. */
  sb_it_daemon_kill(&up, SIGKILL);
  sb_it_daemon_wait_exit(&up, 30000);
  sb_it_run(&loop, cat2, NULL, "kept in the spool\n", 18, NULL, 0, &res);
  ASSERT_EQ(res.exit_status, 0);
  sb_it_result_free(&res);
  ASSERT(
      wait_file(&loop, log, "\"svc/spooled\": client finished after 18 bytes", 20000));

  /* net stop: a clean stop, logged, the spool closed with the stream in it, and the
   * service reports STOPPED. */
  expect(&loop, stop, 0, NULL);
  ASSERT(wait_file(&loop, log, "stopped: 2 streams served", 20000));
  ASSERT(wait_file(&loop, log, "spool.db closed: 18 bytes in 1 chunks", 20000));
  wait_state(&loop, query, "STOPPED", 20000);

  /* Nothing was lost: started again, with the upstream back, it delivers the stream. */
  sb_it_daemon_restart(&up);
  expect(&loop, start, 0, NULL);
  snprintf(path, sizeof(path), "%s\\svc\\spooled.json", archive);
  ASSERT(wait_file(&loop, path, "\"complete\":\ttrue", 30000));
  snprintf(path, sizeof(path), "%s\\svc\\spooled.log", archive);
  ASSERT(wait_file(&loop, path, "kept in the spool\n", 1000));
  ASSERT(wait_file(&loop, log, "1 streams to resume", 1000));
  expect(&loop, stop, 0, NULL);
  wait_state(&loop, query, "STOPPED", 20000);
  expect(&loop, uninstall, 0, "removed the service StreamBroker");
  sb_it_daemon_close(&up);
  expect(&loop, uninstall, 1, "is not installed");
  ASSERT_OK(uv_loop_close(&loop));
}

TEST_IMPL(winservice_failed_start_reports_exit_code) {
  uv_loop_t loop;
  char dir[512], cfg[700], text[1024];
  char address[256], bind[256], admin[256], admin_bind[256], prog[4096];
  const char* install[] = {prog, "install", "--config", cfg, NULL};
  const char* uninstall[] = {prog, "uninstall", NULL};
  const char* start[] = {"net", "start", "StreamBroker", NULL};
  const char* query[] = {"sc", "query", "StreamBroker", NULL};
  sb_it_result_t res;
  if (!sb_it_is_windows())
    TEST_SKIP("the Windows service control manager is Windows only");
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_program("streambrokerd", prog, sizeof(prog));
  sb_it_tempdir("winsvcfail", dir, sizeof(dir));
  sb_it_address("svcfail", address, bind, sizeof(address));
  sb_it_address("svcfail-admin", admin, admin_bind, sizeof(admin));
  snprintf(cfg, sizeof(cfg), "%s\\streambroker.json", dir);
  /* What the service makes inside the prefix goes with the test's other files: its
   * data directory, and ProgramData's StreamBroker (the start log, the service log). */
  sb_test_temp("C:\\sbtest");
  if (getenv("ProgramData") != NULL) {
    char pd[600];
    snprintf(pd, sizeof(pd), "%s\\StreamBroker", getenv("ProgramData"));
    sb_test_temp(pd);
  }
  /* A security descriptor that does not parse: the service cannot start (exit 4). */
  snprintf(text, sizeof(text),
           "{\"control_pipe\": \"%s\", \"admin_pipe\": \"%s\", \"data_dir\": "
           "\"C:\\\\sbtest\","
           " \"control_pipe_sddl\": \"D:(broken\"}",
           address, admin);
  sb_it_write_file(cfg, text, strlen(text));
  run_prog(&loop, uninstall, &res);
  sb_it_result_free(&res);
  expect(&loop, install, 0, "installed");
  /* As a service registered by the MSI (which cannot set the flag) would be: the
   * service sets it itself as its start begins, before anything can fail. */
  {
    int flag = failure_flag(0, 0);
    ASSERT(flag == 0 || flag == -2);
  }
  /* Whether net start itself says so differs (Wine's does not): what matters is what
   * the service reports. */
  run_prog(&loop, start, &res);
  sb_it_result_free(&res);
  /* STOPPED, with ERROR_SERVICE_SPECIFIC_ERROR (1066) and the service's own code, 4. */
  wait_state(&loop, query, "STOPPED", 20000);
  expect(&loop, query, 0, "1066");
  {
    int flag = failure_flag(-1, 1);
    ASSERT(flag == 1 || flag == -2);
  }
  expect(&loop, uninstall, 0, "removed");

  /* A config that does not load: the reason lands in the data directory's start log. */
  {
    const char* pd = getenv("ProgramData");
    char startlog[700], needle[800];
    ASSERT_NOT_NULL(pd);
    snprintf(startlog, sizeof(startlog), "%s\\StreamBroker\\streambrokerd-start.log",
             pd);
    static const char broken[] = "{\"max_streams\": 0}";
    /* install checks the config, so it is broken after installing. */
    sb_it_write_file(cfg, "{}", 2);
    expect(&loop, install, 0, "installed");
    sb_it_write_file(cfg, broken, strlen(broken));
    run_prog(&loop, start, &res);
    sb_it_result_free(&res);
    expect(&loop, query, 0, "1066");
    snprintf(needle, sizeof(needle), "key \"max_streams\": must be an integer");
    ASSERT(wait_file(&loop, startlog, needle, 20000));
    expect(&loop, uninstall, 0, "removed");
  }
  ASSERT_OK(uv_loop_close(&loop));
}

#ifdef _WIN32
/* Whether the service's command line, as the SCM holds it, contains want (UTF-8). */
static int service_command_has(const char* want) {
  SC_HANDLE scm = OpenSCManagerW(NULL, NULL, SC_MANAGER_CONNECT), svc = NULL;
  union {
    QUERY_SERVICE_CONFIGW c;
    BYTE b[8192];
  } buf;
  WCHAR wwant[1024];
  DWORD need = 0;
  int r = 0;
  if (scm != NULL)
    svc = OpenServiceW(scm, L"StreamBroker", SERVICE_QUERY_CONFIG);
  if (svc != NULL && MultiByteToWideChar(CP_UTF8, 0, want, -1, wwant, 1024) != 0 &&
      QueryServiceConfigW(svc, &buf.c, sizeof(buf), &need))
    r = wcsstr(buf.c.lpBinaryPathName, wwant) != NULL;
  if (svc != NULL)
    CloseServiceHandle(svc);
  if (scm != NULL)
    CloseServiceHandle(scm);
  return r;
}
#else
static int service_command_has(const char* want) {
  (void)want;
  return 0;
}
#endif

/*
 * install --config with a path outside the ANSI code page (Wine's is 1252: "ж" is not
 * in it): the service's command line holds the path itself, and the service started
 * by the SCM reads that config and logs to a file beside it.
 */
TEST_IMPL(winservice_unicode_config_path) {
  static const char u8[] = "\xc3\xa9\xe2\x82\xac\xd0\xb6"; /* "é€ж" */
  uv_loop_t loop;
  char tag[64], dir[512], cfg[700], log[700], text[4096], jdir[1100];
  char address[256], bind[256], admin[256], admin_bind[256], prog[4096];
  const char* install[] = {prog, "install", "--config", cfg, NULL};
  const char* uninstall[] = {prog, "uninstall", NULL};
  const char* start[] = {"net", "start", "StreamBroker", NULL};
  const char* stop[] = {"net", "stop", "StreamBroker", NULL};
  const char* query[] = {"sc", "query", "StreamBroker", NULL};
  sb_it_result_t res;
  size_t i, o = 0;
  if (!sb_it_is_windows())
    TEST_SKIP("the Windows service control manager is Windows only");
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_program("streambrokerd", prog, sizeof(prog));
  snprintf(tag, sizeof(tag), "winsvc-%s", u8);
  sb_it_tempdir(tag, dir, sizeof(dir));
  for (i = 0; dir[i]; i++)
    dir[i] = dir[i] == '/' ? '\\' : dir[i]; /* as the SCM's command line shows it */
  sb_it_address("svcu8", address, bind, sizeof(address));
  sb_it_address("svcu8-admin", admin, admin_bind, sizeof(admin));
  snprintf(cfg, sizeof(cfg), "%s\\config-%s.json", dir, u8);
  snprintf(log, sizeof(log), "%s\\log-%s.txt", dir, u8);
  for (i = 0; dir[i] && o < sizeof(jdir) - 2; i++) {
    if (dir[i] == '\\')
      jdir[o++] = '\\';
    jdir[o++] = dir[i];
  }
  jdir[o] = '\0';
  snprintf(text, sizeof(text),
           "{\"control_pipe\": \"%s\", \"admin_pipe\": \"%s\", \"data_dir\": \"%s\", "
           "\"archive_dir\": \"%s\\\\archive-%s\", \"log_file\": \"%s\\\\log-%s.txt\", "
           "\"log_level\": \"debug\", \"spool_reserve_bytes\": 1048576}",
           address, admin, jdir, jdir, u8, jdir, u8);
  sb_it_write_file(cfg, text, strlen(text));

  run_prog(&loop, uninstall, &res);
  sb_it_result_free(&res);
  expect(&loop, install, 0, "installed the service StreamBroker");
  if (!service_command_has(cfg)) {
    expect(&loop, uninstall, 0, "removed");
    sb_test_fail(__FILE__, __LINE__, "the service's command line does not hold %s",
                 cfg);
  }
  expect(&loop, start, 0, NULL);
  wait_state(&loop, query, "RUNNING", 20000);
  ASSERT(wait_file(&loop, log, "running as the service StreamBroker", 20000));
  snprintf(text, sizeof(text), "(config: %s)", cfg);
  ASSERT(wait_file(&loop, log, text, 1000));
  expect(&loop, stop, 0, NULL);
  wait_state(&loop, query, "STOPPED", 20000);
  expect(&loop, uninstall, 0, "removed the service StreamBroker");
  ASSERT_OK(uv_loop_close(&loop));
}

TEST_IMPL(winservice_install_as_account) {
  uv_loop_t loop;
  char prog[4096];
  const char* install[] = {prog, "install", "--account", "NT AUTHORITY\\LocalService",
                           NULL};
  const char* uninstall[] = {prog, "uninstall", NULL};
  const char* query[] = {
      "reg", "query",      "HKLM\\System\\CurrentControlSet\\Services\\StreamBroker",
      "/v",  "ObjectName", NULL};
  sb_it_result_t res;
  if (!sb_it_is_windows())
    TEST_SKIP("the Windows service control manager is Windows only");
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_program("streambrokerd", prog, sizeof(prog));
  run_prog(&loop, uninstall, &res);
  sb_it_result_free(&res);
  expect(&loop, install, 0, "as NT AUTHORITY\\LocalService");
  expect(&loop, query, 0, "LocalService");
  expect(&loop, uninstall, 0, "removed");
  ASSERT_OK(uv_loop_close(&loop));
}

/* install registers the event source StreamBroker in the Application log, with the
 * message table in streambrokerd.exe; uninstall removes it. */
TEST_IMPL(winservice_event_source) {
  uv_loop_t loop;
  char prog[4096];
  const char* install[] = {prog, "install", NULL};
  const char* uninstall[] = {prog, "uninstall", NULL};
  const char* key = "HKLM\\SYSTEM\\CurrentControlSet\\Services\\EventLog\\Application\\"
                    "StreamBroker";
  const char* message_file[] = {"reg", "query", key, "/v", "EventMessageFile", NULL};
  const char* types[] = {"reg", "query", key, "/v", "TypesSupported", NULL};
  const char* whole[] = {"reg", "query", key, NULL};
  sb_it_result_t res;
  if (!sb_it_is_windows())
    TEST_SKIP("the Event Log is Windows only");
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_program("streambrokerd", prog, sizeof(prog));
  run_prog(&loop, uninstall, &res);
  sb_it_result_free(&res);
  expect(&loop, install, 0, "registered the event source StreamBroker");
  expect(&loop, message_file, 0, "streambrokerd.exe");
  expect(&loop, message_file, 0, "REG_EXPAND_SZ");
  expect(&loop, types, 0, "0x7");
  expect(&loop, uninstall, 0, "removed the event source StreamBroker");
  run_prog(&loop, whole, &res);
  if (res.exit_status == 0)
    sb_test_fail(__FILE__, __LINE__, "the event source is still registered: %s",
                 res.out.data);
  sb_it_result_free(&res);
  ASSERT_OK(uv_loop_close(&loop));
}
