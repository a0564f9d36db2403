/*
 * sbrun - runs a command with its stdout and stderr as two text log streams.
 *
 *   sbrun [--server ADDR] [--name-prefix P] [--timeout MS] -- COMMAND [ARGS...]
 *
 * The streams are opened "for a process": the connections themselves become the
 * child's stdout and stderr, so sbrun copies nothing and the child's output reaches
 * the server even if sbrun is killed. The child finds the server in
 * LOGDOG_STREAM_SERVER_PATH, to open streams of its own. Once the child has exited,
 * sbrun waits (Windows) until the server has read both streams, up to --close-timeout
 * (default 30 s), as the client library's close does. sbrun exits with the child's
 * exit status (128 + the signal number when a signal ended it), 127 when the command
 * cannot be started, 1 when the streams cannot be opened, or when the child exited 0
 * but a stream was not read by the server in time (or its connection broke), 2 for a
 * usage error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "streambroker.h"
#include "tools.h"

static const char usage[] =
    "usage: sbrun [--server ADDR] [--name-prefix P] [--timeout MS]\n"
    "             [--close-timeout MS] -- COMMAND [ARGS...]\n"
    "Runs COMMAND with its stdout and stderr as the text streams P/stdout and\n"
    "P/stderr (stdout and stderr without a prefix). ADDR is unix:PATH or\n"
    "net.pipe:NAME; by default the address in " SB_ENV_SERVER_PATH ", or when\n"
    "that is unset the service's control pipe, " SB_DEFAULT_SERVER ".\n"
    "--timeout: how long to retry a busy server; --close-timeout: how long to wait,\n"
    "once COMMAND has exited, for the server to read the streams (Windows; default\n"
    "30000).\n";

/* The parent's environment with LOGDOG_STREAM_SERVER_PATH set to address. */
static char** child_env(const char* address) {
  uv_env_item_t* items = NULL;
  int count = 0, i, n = 0;
  char** env;
  size_t len;
  if (uv_os_environ(&items, &count) != 0)
    return NULL;
  env = calloc((size_t)count + 2, sizeof(*env));
  if (env == NULL)
    goto done;
  for (i = 0; i < count; i++) {
    if (strcmp(items[i].name, SB_ENV_SERVER_PATH) == 0)
      continue;
    len = strlen(items[i].name) + strlen(items[i].value) + 2;
    if ((env[n] = malloc(len)) == NULL)
      break;
    snprintf(env[n++], len, "%s=%s", items[i].name, items[i].value);
  }
  len = strlen(SB_ENV_SERVER_PATH) + strlen(address) + 2;
  if ((env[n] = malloc(len)) != NULL)
    snprintf(env[n], len, "%s=%s", SB_ENV_SERVER_PATH, address);
done:
  uv_os_free_environ(items, count);
  return env;
}

static void free_env(char** env) {
  int i;
  for (i = 0; env && env[i]; i++)
    free(env[i]);
  free(env);
}

int main(int argc, char** argv) {
  const char* server = NULL;
  const char* prefix = NULL;
  long timeout = -1, close_timeout = 0;
  int i, err, status = 1;
  sb_client_t* client = NULL;
  sb_os_handle_t handles[2] = {SB_INVALID_OS_HANDLE, SB_INVALID_OS_HANDLE};
  int fds[2] = {-1, -1};
  char names[2][512];
  char** env = NULL;
  int64_t exit_status = -1;
  int term_signal = 0;

  argv = sb__tool_utf8_argv(&argc, argv); /* uv_spawn takes UTF-8 */
  for (i = 1; i < argc; i++) {
    const char* a = argv[i];
    if (strcmp(a, "--") == 0) {
      i++;
      break;
    }
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      fputs(usage, stdout);
      return 0;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "sbrun: unknown option or missing value: %s\n%s", a, usage);
      return 2;
    }
    if (strcmp(a, "--server") == 0) {
      server = argv[++i];
    } else if (strcmp(a, "--name-prefix") == 0) {
      prefix = argv[++i];
    } else if (strcmp(a, "--timeout") == 0 || strcmp(a, "--close-timeout") == 0) {
      char* end;
      long v = strtol(argv[++i], &end, 10);
      if (*end != '\0' || v < 0 || (a[2] == 'c' && v == 0)) {
        fprintf(stderr, "sbrun: %s takes milliseconds, not \"%s\"\n", a, argv[i]);
        return 2;
      }
      if (a[2] == 'c')
        close_timeout = v;
      else
        timeout = v;
    } else {
      fprintf(stderr, "sbrun: unknown option: %s\n%s", a, usage);
      return 2;
    }
  }
  if (i >= argc) {
    fprintf(stderr, "sbrun: no command given\n%s", usage);
    return 2;
  }
  if (server == NULL)
    server = sb_default_address();
  if ((err = sb_client_open(&client, server)) != 0) {
    fprintf(stderr, "sbrun: stream server %s: %s\n", server, sb_strerror(err));
    return err == SB_EADDRESS || err == SB_ENAME ? 2 : 1;
  }
  if (timeout >= 0)
    sb_client_set_timeout(client, (uint32_t)timeout);
  for (int k = 0; k < 2; k++) {
    sb_stream_opts_t o;
    const char* std = k == 0 ? "stdout" : "stderr";
    memset(&o, 0, sizeof(o));
    snprintf(names[k], sizeof(names[k]), "%s%s%s", prefix ? prefix : "", prefix ? "/" : "",
             std);
    o.name = names[k];
    if ((err = sb_stream_open_for_process(client, &o, &handles[k])) != 0) {
      fprintf(stderr, "sbrun: cannot open stream \"%s\": %s\n", names[k], sb_strerror(err));
      status = err == SB_ENAME ? 2 : 1;
      goto done;
    }
    if ((fds[k] = sb__tool_handle_fd(handles[k])) < 0) {
      fprintf(stderr, "sbrun: stream \"%s\": cannot make a descriptor of it\n", names[k]);
      goto done;
    }
    handles[k] = SB_INVALID_OS_HANDLE; /* owned by fds[k] now */
  }
  if ((env = child_env(server)) == NULL) {
    fprintf(stderr, "sbrun: out of memory\n");
    goto done;
  }

  /* Our copies stay open while the child runs (the streams end when the child's and
   * ours are closed, just after it exits), so that we can ask whether the server read
   * what it wrote. */
  err = sb__tool_run(argv + i, env, fds[0], fds[1], &exit_status, &term_signal);
  if (err != 0) {
    fprintf(stderr, "sbrun: cannot run %s: %s\n", argv[i], uv_strerror(err));
    status = 127;
    goto done;
  }
  status = term_signal ? 128 + term_signal : (int)exit_status;
  for (int k = 0; k < 2; k++) {
    err = sb_os_handle_flush((sb_os_handle_t)uv_get_osfhandle(fds[k]),
                             (uint32_t)close_timeout);
    if (err != 0) {
      fprintf(stderr, "sbrun: stream \"%s\": %s\n", names[k], sb_strerror(err));
      if (status == 0)
        status = 1;
    }
  }

done:
  for (int k = 0; k < 2; k++) {
    if (fds[k] >= 0) {
      uv_fs_t req;
      uv_fs_close(NULL, &req, fds[k], NULL);
      uv_fs_req_cleanup(&req);
    }
  }
  free_env(env);
  sb_client_close(client);
  uv_loop_close(uv_default_loop());
  return status;
}
