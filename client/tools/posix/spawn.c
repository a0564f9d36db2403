/* posix/spawn.c - sbrun's child, through libuv (its descriptors other than 0 to 2 are
 * closed at exec by libuv's child setup and by FD_CLOEXEC). */
#include <uv.h>

#include "../tools.h"

static int64_t exit_status = -1;
static int term_signal;

static void on_exit_cb(uv_process_t* p, int64_t status, int sig) {
  exit_status = status;
  term_signal = sig;
  uv_close((uv_handle_t*)p, NULL);
}

int sb__tool_run(char** args, char** env, int out_fd, int err_fd, int64_t* status,
                 int* signal) {
  uv_process_t proc;
  uv_process_options_t opts = {0};
  uv_stdio_container_t stdio[3];
  int err;
  stdio[0].flags = UV_INHERIT_FD;
  stdio[0].data.fd = 0;
  stdio[1].flags = UV_INHERIT_FD;
  stdio[1].data.fd = out_fd;
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = err_fd;
  opts.file = args[0];
  opts.args = args;
  opts.env = env;
  opts.stdio = stdio;
  opts.stdio_count = 3;
  opts.exit_cb = on_exit_cb;
  err = uv_spawn(uv_default_loop(), &proc, &opts);
  if (err != 0)
    uv_close((uv_handle_t*)&proc, NULL);
  uv_run(uv_default_loop(), UV_RUN_DEFAULT);
  *status = exit_status;
  *signal = term_signal;
  return err;
}
