/* helpers.c - recording server and program runner for integration tests. */
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "task.h"

void sb_it_program(const char* name, char* out, size_t size) {
  char self[4096];
  size_t len = sizeof(self);
  char* slash;
  ASSERT_OK(uv_exepath(self, &len));
  slash = strrchr(self, '/');
  if (strrchr(self, '\\') > slash)
    slash = strrchr(self, '\\');
  ASSERT_NOT_NULL(slash);
  slash[1] = '\0';
  /* The same suffix as this program's own: ".exe" on Windows, none elsewhere. */
  snprintf(out, size, "%s%s%s", self, name,
           len > 4 && strcmp(self + len - 4, ".exe") == 0 ? ".exe" : "");
}

static void on_conn_close(uv_handle_t* h) {
  (void)h;
}

void sb_it_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf) {
  static char slab[65536];
  (void)h;
  (void)suggested;
  buf->base = slab;
  buf->len = sizeof(slab);
}

static void on_conn_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  struct sb_it_conn* c = (struct sb_it_conn*)s;
  sb_it_recorder_t* r = s->data;
  if (n > 0) {
    sb__buf_append(&c->data, buf->base, (size_t)n);
    ASSERT_OK(c->data.err);
    return;
  }
  if (n < 0) {
    /* EOF, or a reset from a client that went away: the recording ends either way.
     * The connection is closed at once, as a stream server does after reading a
     * stream to its end: a client waiting in sb_stream_close learns it was read. */
    uv_read_stop(s);
    c->closed = 1;
    r->nclosed++;
    uv_close((uv_handle_t*)s, on_conn_close);
  }
}

static void on_connection(uv_stream_t* server, int status) {
  sb_it_recorder_t* r = server->data;
  struct sb_it_conn* c;
  ASSERT_OK(status);
  if (!r->accept)
    return;
  ASSERT_LT(r->nconns, SB_IT_MAX_CONNS);
  c = &r->conns[r->nconns];
  ASSERT_OK(uv_pipe_init(server->loop, &c->pipe, 0));
  ASSERT_OK(uv_accept(server, (uv_stream_t*)&c->pipe));
  c->pipe.data = r;
  r->nconns++;
  ASSERT_OK(uv_read_start((uv_stream_t*)&c->pipe, sb_it_alloc, on_conn_read));
}

int sb_it_recorder_start(sb_it_recorder_t* r, uv_loop_t* loop, const char* bind_path,
                         int backlog, int accept) {
  int err;
  memset(r, 0, sizeof(*r));
  r->accept = accept;
  ASSERT_OK(uv_pipe_init(loop, &r->server, 0));
  r->server.data = r;
  if ((err = uv_pipe_bind(&r->server, bind_path)) != 0)
    return err;
  return uv_listen((uv_stream_t*)&r->server, backlog, on_connection);
}

void sb_it_recorder_close(sb_it_recorder_t* r) {
  int i;
  uv_close((uv_handle_t*)&r->server, NULL);
  for (i = 0; i < r->nconns; i++) {
    if (!uv_is_closing((uv_handle_t*)&r->conns[i].pipe))
      uv_close((uv_handle_t*)&r->conns[i].pipe, on_conn_close);
  }
  uv_run(r->server.loop, UV_RUN_DEFAULT);
  for (i = 0; i < r->nconns; i++)
    sb__buf_free(&r->conns[i].data);
}

struct sb_it_run {
  uv_process_t proc;
  uv_pipe_t in, out, err;
  uv_write_t write;
  uv_shutdown_t shutdown;
  uv_timer_t timer;
  sb_it_result_t* res;
  int exited, out_done, err_done, timed_out, closed;
};

static void on_run_close(uv_handle_t* h) {
  struct sb_it_run* run = h->data;
  run->closed++;
}

static void on_exit_cb(uv_process_t* p, int64_t status, int sig) {
  struct sb_it_run* run = (struct sb_it_run*)p;
  run->res->exit_status = status;
  run->res->term_signal = sig;
  run->exited = 1;
}

static void on_out_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  struct sb_it_run* run = s->data;
  int is_out = s == (uv_stream_t*)&run->out;
  if (n > 0) {
    sb__buf_append(is_out ? &run->res->out : &run->res->err, buf->base, (size_t)n);
  } else if (n < 0) {
    uv_read_stop(s);
    if (is_out)
      run->out_done = 1;
    else
      run->err_done = 1;
  }
}

static void on_written(uv_write_t* w, int status) {
  struct sb_it_run* run = w->data;
  (void)status; /* a child that exits early closes its stdin; that is its business */
  run->shutdown.data = run;
  if (uv_shutdown(&run->shutdown, (uv_stream_t*)&run->in, NULL) != 0)
    uv_close((uv_handle_t*)&run->in, on_run_close);
}

static void on_timeout(uv_timer_t* t) {
  struct sb_it_run* run = t->data;
  run->timed_out = 1;
}

/* Whether extra (NAME=VALUE entries) sets name: it then replaces the inherited one. */
static int extra_sets(const char* const* extra, const char* name) {
  size_t n = strlen(name);
  for (; extra && *extra; extra++) {
    if (strncmp(*extra, name, n) == 0 && (*extra)[n] == '=')
      return 1;
  }
  return 0;
}

/* Copies the environment without LOGDOG_ variables and those extra sets, then
 * appends extra. */
static char** make_env(const char* const* extra) {
  uv_env_item_t* items = NULL;
  int count = 0, i, n = 0, nextra = 0;
  char** env;
  while (extra && extra[nextra])
    nextra++;
  ASSERT_OK(uv_os_environ(&items, &count));
  env = calloc((size_t)(count + nextra + 1), sizeof(*env));
  ASSERT_NOT_NULL(env);
  for (i = 0; i < count; i++) {
    size_t len;
    if (strncmp(items[i].name, "LOGDOG_", 7) == 0 || extra_sets(extra, items[i].name))
      continue;
    len = strlen(items[i].name) + strlen(items[i].value) + 2;
    env[n] = malloc(len);
    ASSERT_NOT_NULL(env[n]);
    snprintf(env[n], len, "%s=%s", items[i].name, items[i].value);
    n++;
  }
  for (i = 0; i < nextra; i++) {
    env[n] = malloc(strlen(extra[i]) + 1);
    ASSERT_NOT_NULL(env[n]);
    strcpy(env[n++], extra[i]);
  }
  uv_os_free_environ(items, count);
  return env;
}

void sb_it_run_tool(uv_loop_t* loop, const char* tool, const char* const* args,
                    const void* in, size_t in_len, sb_it_result_t* res) {
  sb_it_run_tool_as(loop, tool, args, in, in_len, res, -1, -1);
}

void sb_it_run_tool_as(uv_loop_t* loop, const char* tool, const char* const* args,
                       const void* in, size_t in_len, sb_it_result_t* res, int uid,
                       int gid) {
  char prog[4096];
  const char* argv[32];
  int n = 0;
  sb_it_program(tool, prog, sizeof(prog));
  argv[n++] = prog;
  while (args && args[n - 1]) {
    ASSERT_LT(n, 31);
    argv[n] = args[n - 1];
    n++;
  }
  argv[n] = NULL;
  sb_it_run_as(loop, argv, NULL, in ? in : "", in ? in_len : 0, NULL, 0, res, uid, gid);
}

void sb_it_run(uv_loop_t* loop, const char* const* argv, const char* const* env,
               const void* in, size_t in_len, sb_it_recorder_t* rec, int wait_conns,
               sb_it_result_t* res) {
  sb_it_run_as(loop, argv, env, in, in_len, rec, wait_conns, res, -1, -1);
}

void sb_it_run_as(uv_loop_t* loop, const char* const* argv, const char* const* env,
                  const void* in, size_t in_len, sb_it_recorder_t* rec, int wait_conns,
                  sb_it_result_t* res, int uid, int gid) {
  struct sb_it_run run;
  uv_process_options_t opts;
  uv_stdio_container_t stdio[3];
  uv_buf_t buf = uv_buf_init((char*)in, (unsigned)in_len);
  char** envp = make_env(env);
  int i, r, tries = 0;

  sb_it_platform_init();
again:
  memset(&run, 0, sizeof(run));
  memset(res, 0, sizeof(*res));
  memset(&opts, 0, sizeof(opts));
  run.res = res;
  ASSERT_OK(uv_pipe_init(loop, &run.in, 0));
  ASSERT_OK(uv_pipe_init(loop, &run.out, 0));
  ASSERT_OK(uv_pipe_init(loop, &run.err, 0));
  run.in.data = run.out.data = run.err.data = &run;
  stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
  stdio[0].data.stream = (uv_stream_t*)&run.in;
  stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[1].data.stream = (uv_stream_t*)&run.out;
  stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[2].data.stream = (uv_stream_t*)&run.err;
  opts.file = argv[0];
  opts.args = (char**)argv;
  opts.env = envp;
  opts.stdio = stdio;
  opts.stdio_count = 3;
  opts.exit_cb = on_exit_cb;
  if (uid >= 0) {
    opts.flags |= UV_PROCESS_SETUID | UV_PROCESS_SETGID;
    opts.uid = (uv_uid_t)uid;
    opts.gid = (uv_gid_t)gid;
  }
  r = uv_spawn(loop, &run.proc, &opts);
  if (r == UV_UNKNOWN && ++tries < 5) {
    /* Under Wine a process creation fails now and then (ERROR_INTERNAL_ERROR) when
     * many processes come and go: what a test runs is not that; it is tried again. */
    fprintf(stderr, "spawn %s: %s (OS error %lu); trying again\n", argv[0],
            uv_strerror(r), sb_it_os_error());
    run.closed = 0;
    run.proc.data = &run;
    uv_close((uv_handle_t*)&run.proc, on_run_close);
    uv_close((uv_handle_t*)&run.in, on_run_close);
    uv_close((uv_handle_t*)&run.out, on_run_close);
    uv_close((uv_handle_t*)&run.err, on_run_close);
    while (run.closed < 4)
      uv_run(loop, UV_RUN_ONCE);
    uv_sleep(200);
    goto again;
  }
  if (r != 0)
    sb_test_fail(__FILE__, __LINE__, "spawn %s: %s", argv[0], uv_strerror(r));
  run.proc.data = &run;
  ASSERT_OK(uv_read_start((uv_stream_t*)&run.out, sb_it_alloc, on_out_read));
  ASSERT_OK(uv_read_start((uv_stream_t*)&run.err, sb_it_alloc, on_out_read));
  run.write.data = &run;
  /* A child that needs no input may be gone already: on Windows the write then fails at
   * once (EPIPE), with no callback; its stdin is closed as after a failed shutdown. */
  if (uv_write(&run.write, (uv_stream_t*)&run.in, &buf, 1, on_written) != 0)
    uv_close((uv_handle_t*)&run.in, on_run_close);
  ASSERT_OK(uv_timer_init(loop, &run.timer));
  run.timer.data = &run;
  ASSERT_OK(uv_timer_start(&run.timer, on_timeout, 300000, 0));
  while (!(run.exited && run.out_done && run.err_done &&
           (rec == NULL || rec->nclosed >= wait_conns)) &&
         !run.timed_out)
    uv_run(loop, UV_RUN_ONCE);
  if (run.timed_out)
    sb_test_fail(__FILE__, __LINE__, "%s did not finish within 300 s (exited %d)", argv[0],
                 run.exited);
  run.closed = 0;
  uv_close((uv_handle_t*)&run.timer, on_run_close);
  uv_close((uv_handle_t*)&run.proc, on_run_close);
  if (!uv_is_closing((uv_handle_t*)&run.in))
    uv_close((uv_handle_t*)&run.in, on_run_close);
  else
    run.closed++; /* closed already, after a failed write or shutdown */
  uv_close((uv_handle_t*)&run.out, on_run_close);
  uv_close((uv_handle_t*)&run.err, on_run_close);
  /* run lives on this stack frame: every close must finish before it returns. */
  while (run.closed < 5)
    uv_run(loop, UV_RUN_ONCE);
  for (i = 0; envp[i]; i++)
    free(envp[i]);
  free(envp);
  sb__buf_putc(&res->out, '\0');
  sb__buf_putc(&res->err, '\0');
  res->out.len--;
  res->err.len--;
}

void sb_it_result_free(sb_it_result_t* res) {
  sb__buf_free(&res->out);
  sb__buf_free(&res->err);
}

int sb_it_contains(const char* haystack, size_t len, const char* needle) {
  size_t n = strlen(needle), i;
  for (i = 0; i + n <= len; i++) {
    if (memcmp(haystack + i, needle, n) == 0)
      return 1;
  }
  return 0;
}

size_t sb_it_count(const char* haystack, size_t len, const char* needle) {
  size_t n = strlen(needle), i, count = 0;
  for (i = 0; i + n <= len; i++) {
    if (memcmp(haystack + i, needle, n) == 0) {
      count++;
      i += n - 1;
    }
  }
  return count;
}

void sb_it_tempdir(const char* tag, char* out, size_t size) {
  char tmp[512];
  size_t len = sizeof(tmp);
  uv_fs_t req;
  static unsigned serial;
  int r;
  ASSERT_OK(uv_os_tmpdir(tmp, &len));
  /* Process ids repeat (quickly under Wine), so the clock makes the name unique. */
  do {
    snprintf(out, size, "%s/sbit-%d-%llx-%u-%s", tmp, (int)uv_os_getpid(),
             (unsigned long long)(uv_hrtime() / 1000), ++serial, tag);
    r = uv_fs_mkdir(NULL, &req, out, 0700, NULL);
    uv_fs_req_cleanup(&req);
  } while (r == UV_EEXIST);
  ASSERT_OK(r);
  /* Removed when the test passes, listed when it fails. */
  sb_test_temp(out);
}

char* sb_it_read_file(const char* path, size_t* len) {
  FILE* f = sb_it_fopen(path, "rb");
  sb__buf_t b = {0};
  char chunk[65536];
  size_t n;
  if (f == NULL)
    return NULL;
  while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
    sb__buf_append(&b, chunk, n);
  fclose(f);
  sb__buf_putc(&b, '\0');
  ASSERT_OK(b.err);
  *len = b.len - 1;
  return b.data;
}

void sb_it_write_file(const char* path, const void* data, size_t len) {
  FILE* f = sb_it_fopen(path, "wb");
  ASSERT_NOT_NULL(f);
  ASSERT_EQ(fwrite(data, 1, len, f), len);
  ASSERT_EQ(fclose(f), 0);
}

static void append_str(sb__buf_t* b, const char* s) {
  sb__buf_append(b, s, strlen(s));
}

/* Appends s to b as the inside of a JSON string (paths on Windows have backslashes). */
static void json_escape(sb__buf_t* b, const char* s) {
  for (; *s; s++) {
    if (*s == '\\' || *s == '"')
      sb__buf_putc(b, '\\');
    sb__buf_putc(b, *s);
  }
}

/* Daemons still running when a test program exits (a failed assertion exits at
 * once) are killed, so no test leaves a service behind. */
#define SB_IT_MAX_DAEMONS 16
static int live_pids[SB_IT_MAX_DAEMONS];

static void kill_live_daemons(void) {
  int i;
  for (i = 0; i < SB_IT_MAX_DAEMONS; i++) {
    if (live_pids[i] > 0)
      uv_kill(live_pids[i], SIGKILL);
  }
}

static void track_pid(int old_pid, int new_pid) {
  static int registered;
  int i;
  if (!registered) {
    atexit(kill_live_daemons);
    registered = 1;
  }
  /* A passing test's directories go only once no daemon writes in them. */
  sb_test_before_cleanup(kill_live_daemons);
  for (i = 0; i < SB_IT_MAX_DAEMONS; i++) {
    if (live_pids[i] == old_pid) {
      live_pids[i] = new_pid;
      return;
    }
  }
}

static void on_daemon_exit(uv_process_t* p, int64_t status, int sig) {
  sb_it_daemon_t* d = p->data;
  track_pid(p->pid, 0);
  d->exit_status = status;
  d->term_signal = sig;
  d->running = 0;
}

static void on_daemon_err(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  sb_it_daemon_t* d = s->data;
  if (n > 0) {
    sb__buf_append(&d->log, buf->base, (size_t)n);
    if (getenv("SB_TEST_VERBOSE"))
      fwrite(buf->base, 1, (size_t)n, stderr);
  } else if (n < 0) {
    uv_read_stop(s);
    d->err_done = 1;
  }
}

static void on_daemon_closed(uv_handle_t* h) {
  sb_it_daemon_t* d = h->data;
  d->closed++;
}

static void daemon_spawn(sb_it_daemon_t* d) {
  char prog[4096];
  const char* argv[16];
  char** envp = make_env(d->env);
  uv_process_options_t opts;
  uv_stdio_container_t stdio[3];
  int r, i;
  sb_it_program("streambrokerd", prog, sizeof(prog));
  argv[0] = prog;
  argv[1] = "--config";
  argv[2] = d->config_path;
  /* Not the Windows service: no asking the service manager, which under Wine answers
   * "not a service" only after some seconds. */
  argv[3] = "--console";
  for (i = 0; d->args && d->args[i]; i++) {
    ASSERT_LT(4 + i, 15);
    argv[4 + i] = d->args[i];
  }
  argv[4 + i] = NULL;
  memset(&opts, 0, sizeof(opts));
  ASSERT_OK(uv_pipe_init(d->loop, &d->err, 0));
  d->err.data = d;
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_IGNORE;
  stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[2].data.stream = (uv_stream_t*)&d->err;
  opts.file = prog;
  opts.args = (char**)argv;
  opts.env = envp;
  opts.stdio = stdio;
  opts.stdio_count = 3;
  opts.exit_cb = on_daemon_exit;
  r = uv_spawn(d->loop, &d->proc, &opts);
  if (r != 0)
    sb_test_fail(__FILE__, __LINE__, "spawn %s: %s", prog, uv_strerror(r));
  d->proc.data = d;
  track_pid(0, d->proc.pid);
  d->running = 1;
  d->err_done = 0;
  d->closed = 0;
  ASSERT_OK(uv_read_start((uv_stream_t*)&d->err, sb_it_alloc, on_daemon_err));
  for (i = 0; envp[i]; i++)
    free(envp[i]);
  free(envp);
}

static void daemon_start(sb_it_daemon_t* d, uv_loop_t* loop, const char* tag,
                         const char* upstream, const char* extra_json,
                         const char* log_name, const char* const* args,
                         const char* const* env) {
  sb__buf_t cfg = {0};
  sb_it_platform_init();
  memset(d, 0, sizeof(*d));
  d->loop = loop;
  d->args = args;
  d->env = env;
  sb_it_tempdir(tag, d->dir, sizeof(d->dir));
  sb_it_address(tag, d->address, d->bind_path, sizeof(d->address));
  {
    char admin_tag[64], admin_bind[256];
    snprintf(admin_tag, sizeof(admin_tag), "%s-admin", tag);
    sb_it_address(admin_tag, d->admin_address, admin_bind, sizeof(admin_bind));
  }
  snprintf(d->config_path, sizeof(d->config_path), "%s/streambroker.json", d->dir);
  snprintf(d->archive_dir, sizeof(d->archive_dir), "%s/archive", d->dir);
  append_str(&cfg, "{\n  \"control_pipe\": \"");
  json_escape(&cfg, d->address);
  append_str(&cfg, "\",\n  \"admin_pipe\": \"");
  json_escape(&cfg, d->admin_address);
  append_str(&cfg, "\",\n  \"data_dir\": \"");
  json_escape(&cfg, d->dir);
  append_str(&cfg, "\",\n  \"archive_dir\": \"");
  json_escape(&cfg, d->archive_dir);
  append_str(&cfg, "\"");
  if (extra_json == NULL || strstr(extra_json, "\"log_level\"") == NULL)
    append_str(&cfg, ",\n  \"log_level\": \"debug\"");
  /* A small spool reserve: the suite starts a daemon some hundred times, and each
   * would write the default 16 MiB (archive mode has a spool too). */
  if (extra_json == NULL || strstr(extra_json, "\"spool_reserve_bytes\"") == NULL)
    append_str(&cfg, ",\n  \"spool_reserve_bytes\": 1048576");
  if (log_name != NULL) {
    snprintf(d->log_file, sizeof(d->log_file), "%s/%s", d->dir, log_name);
    append_str(&cfg, ",\n  \"log_file\": \"");
    json_escape(&cfg, d->log_file);
    sb__buf_putc(&cfg, '"');
  }
  if (upstream) {
    append_str(&cfg, ",\n  \"upstream\": \"");
    json_escape(&cfg, upstream);
    sb__buf_putc(&cfg, '"');
  }
  if (extra_json) {
    append_str(&cfg, ",\n  ");
    sb__buf_append(&cfg, extra_json, strlen(extra_json));
  }
  append_str(&cfg, "\n}\n");
  ASSERT_OK(cfg.err);
  sb_it_write_file(d->config_path, cfg.data, cfg.len);
  sb__buf_free(&cfg);
  daemon_spawn(d);
  if (log_name != NULL)
    sb_it_wait_file(loop, d->log_file, "serving ", 1, 30000);
  else
    sb_it_daemon_wait_log(d, "serving ", 1, 30000);
}

void sb_it_daemon_start(sb_it_daemon_t* d, uv_loop_t* loop, const char* tag,
                        const char* upstream, const char* extra_json) {
  daemon_start(d, loop, tag, upstream, extra_json, NULL, NULL, NULL);
}

void sb_it_daemon_start_logfile(sb_it_daemon_t* d, uv_loop_t* loop, const char* tag,
                                const char* upstream, const char* extra_json,
                                const char* log_name) {
  daemon_start(d, loop, tag, upstream, extra_json, log_name, NULL, NULL);
}

void sb_it_daemon_start_with(sb_it_daemon_t* d, uv_loop_t* loop, const char* tag,
                             const char* upstream, const char* extra_json,
                             const char* log_name, const char* const* args,
                             const char* const* env) {
  daemon_start(d, loop, tag, upstream, extra_json, log_name, args, env);
}

struct file_wait {
  const char* path;
  const char* needle;
  size_t count;
};

static int file_has(void* arg) {
  struct file_wait* w = arg;
  size_t len;
  char* text = sb_it_read_file(w->path, &len);
  int found = text != NULL && sb_it_count(text, len, w->needle) >= w->count;
  free(text);
  return found;
}

void sb_it_wait_file(uv_loop_t* loop, const char* path, const char* needle, size_t count,
                     uint64_t ms) {
  struct file_wait w = {path, needle, count};
  if (!sb_it_run_until(loop, ms, file_has, &w)) {
    size_t len = 0;
    char* text = sb_it_read_file(path, &len);
    sb_test_fail(__FILE__, __LINE__, "%s: fewer than %zu \"%s\" after %llu ms: \"%.*s\"",
                 path, count, needle, (unsigned long long)ms, (int)len,
                 text ? text : "(cannot read it)");
  }
}

/* Closes the handles of its last run (once), so that they can be set up again. */
static void daemon_close_handles(sb_it_daemon_t* d) {
  if (d->closed < 2) {
    uv_close((uv_handle_t*)&d->proc, on_daemon_closed);
    if (!uv_is_closing((uv_handle_t*)&d->err))
      uv_close((uv_handle_t*)&d->err, on_daemon_closed);
    while (d->closed < 2)
      uv_run(d->loop, UV_RUN_ONCE);
  }
}

void sb_it_daemon_respawn(sb_it_daemon_t* d) {
  ASSERT(!d->running);
  daemon_close_handles(d);
  daemon_spawn(d);
}

void sb_it_daemon_restart(sb_it_daemon_t* d) {
  size_t before = sb_it_count(d->log.data, d->log.len, "serving ");
  if (d->log_file[0] != '\0') {
    size_t len = 0;
    char* text = sb_it_read_file(d->log_file, &len);
    before = text ? sb_it_count(text, len, "serving ") : 0;
    free(text);
  }
  sb_it_daemon_respawn(d);
  if (d->log_file[0] != '\0')
    sb_it_wait_file(d->loop, d->log_file, "serving ", before + 1, 30000);
  else
    sb_it_daemon_wait_log(d, "serving ", before + 1, 30000);
}

static void on_wait_timeout(uv_timer_t* t) {
  *(int*)t->data = 1;
}

static void on_wait_timer_closed(uv_handle_t* h) {
  (*(int*)h->data)++;
}

static void on_wait_tick(uv_timer_t* t) {
  (void)t; /* a loop turn, so that done is asked again */
}

int sb_it_run_until(uv_loop_t* loop, uint64_t ms, int (*done)(void* arg), void* arg) {
  uv_timer_t timer, tick;
  int timed_out = 0, closed = 0, r;
  ASSERT_OK(uv_timer_init(loop, &timer));
  ASSERT_OK(uv_timer_init(loop, &tick));
  timer.data = &timed_out;
  ASSERT_OK(uv_timer_start(&timer, on_wait_timeout, ms, 0));
  ASSERT_OK(uv_timer_start(&tick, on_wait_tick, 50, 50));
  while (!(r = done(arg)) && !timed_out)
    uv_run(loop, UV_RUN_ONCE);
  timer.data = tick.data = &closed;
  uv_close((uv_handle_t*)&timer, on_wait_timer_closed);
  uv_close((uv_handle_t*)&tick, on_wait_timer_closed);
  while (closed < 2)
    uv_run(loop, UV_RUN_ONCE);
  return r;
}

struct log_wait {
  sb_it_daemon_t* d;
  const char* needle;
  size_t count;
};

static int log_has(void* arg) {
  struct log_wait* w = arg;
  return sb_it_count(w->d->log.data, w->d->log.len, w->needle) >= w->count ||
         (!w->d->running && w->d->err_done);
}

void sb_it_daemon_wait_log(sb_it_daemon_t* d, const char* needle, size_t count,
                           uint64_t ms) {
  struct log_wait w = {d, needle, count};
  sb_it_run_until(d->loop, ms, log_has, &w);
  if (sb_it_count(d->log.data, d->log.len, needle) < count) {
    sb_it_daemon_dump(d);
    sb_test_fail(__FILE__, __LINE__, "streambrokerd (%s): %zu of %zu \"%s\" in its log %s",
                 d->address, sb_it_count(d->log.data, d->log.len, needle), count, needle,
                 d->running ? "after the timeout" : "when it exited");
  }
}

void sb_it_daemon_kill(sb_it_daemon_t* d, int signum) {
  if (d->running)
    ASSERT_OK(uv_process_kill(&d->proc, signum));
}

static int has_exited(void* arg) {
  sb_it_daemon_t* d = arg;
  return !d->running && d->err_done;
}

void sb_it_daemon_wait_exit(sb_it_daemon_t* d, uint64_t ms) {
  sb_it_run_until(d->loop, ms, has_exited, d);
  if (d->running) {
    sb_it_daemon_dump(d);
    sb_test_fail(__FILE__, __LINE__, "streambrokerd (%s) did not exit within %llu ms",
                 d->address, (unsigned long long)ms);
  }
}

void sb_it_daemon_close(sb_it_daemon_t* d) {
  if (d->running) {
    uv_process_kill(&d->proc, SIGKILL);
    /* A killed service under ASan on a loaded machine can take long to be torn down
     * (its shadow memory); the kill itself cannot fail, so the wait is generous. */
    sb_it_daemon_wait_exit(d, 120000);
  }
  daemon_close_handles(d);
  sb__buf_free(&d->log);
}

void sb_it_daemon_dump(sb_it_daemon_t* d) {
  fprintf(stderr, "---- streambrokerd %s log ----\n%.*s---- end ----\n", d->address,
          (int)d->log.len, d->log.data ? d->log.data : "");
}

static void thread_main(void* arg) {
  sb_it_thread_t* t = arg;
  t->fn(t->arg);
  t->done = 1;
}

void sb_it_thread_start(sb_it_thread_t* t, void (*fn)(void*), void* arg) {
  t->fn = fn;
  t->arg = arg;
  t->done = 0;
  ASSERT_OK(uv_thread_create(&t->tid, thread_main, t));
}

int sb_it_thread_done(void* arg) {
  return ((sb_it_thread_t*)arg)->done;
}

void sb_it_thread_join(uv_loop_t* loop, sb_it_thread_t* t, uint64_t ms) {
  if (!sb_it_run_until(loop, ms, sb_it_thread_done, t))
    sb_test_fail(__FILE__, __LINE__, "a writer thread still runs after %llu ms",
                 (unsigned long long)ms);
  ASSERT_OK(uv_thread_join(&t->tid));
}

void sb_it_run_thread(uv_loop_t* loop, void (*fn)(void*), void* arg) {
  sb_it_thread_t t;
  sb_it_thread_start(&t, fn, arg);
  /* No bound of its own: the test's timeout is the bound, as it always was. */
  sb_it_thread_join(loop, &t, UINT64_MAX / 1000000);
}
