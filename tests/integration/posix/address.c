/* posix/address.c - test addresses are Unix sockets under /tmp. */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "../helpers.h"

void sb_it_address(const char* tag, char* address, char* bind_path, size_t size) {
  snprintf(bind_path, size, "/tmp/sbit-%ld-%s.sock", (long)getpid(), tag);
  unlink(bind_path);
  snprintf(address, size, "unix:%s", bind_path);
}

int sb_it_is_windows(void) {
  return 0;
}

void sb_it_platform_init(void) {
  signal(SIGPIPE, SIG_IGN);
}
