/* posix/address.c - test addresses are Unix sockets under /tmp. */
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <stdio.h>
#include <unistd.h>

#include "../helpers.h"
#include "task.h"

void sb_it_address(const char* tag, char* address, char* bind_path, size_t size) {
  snprintf(bind_path, size, "/tmp/sbit-%ld-%s.sock", (long)getpid(), tag);
  unlink(bind_path);
  snprintf(address, size, "unix:%s", bind_path);
  /* A killed server leaves its socket file: it goes with the test's other files. */
  sb_test_temp(bind_path);
}

int sb_it_is_windows(void) {
  return 0;
}

void sb_it_platform_init(void) {
  signal(SIGPIPE, SIG_IGN);
}

int sb_it_pipe_security(const char* address, char* out, size_t size) {
  struct stat st;
  const char* path = strchr(address, ':') + 1;
  if (stat(path, &st) != 0)
    return -1;
  snprintf(out, size, "%o", (unsigned)(st.st_mode & 0777));
  return 0;
}
