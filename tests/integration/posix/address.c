/* posix/address.c - test addresses are Unix sockets under /tmp. */
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
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

unsigned long sb_it_os_error(void) {
  return (unsigned long)errno;
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

uv_os_sock_t sb_it_dgram_bind(const char* name) {
  struct sockaddr_un sa;
  size_t len = strlen(name);
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  ASSERT_LT(len, sizeof(sa.sun_path));
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, name, len);
  if (name[0] == '@')
    sa.sun_path[0] = '\0';
  else
    sb_test_temp(name);
  if (bind(fd, (struct sockaddr*)&sa,
           (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) != 0)
    sb_test_fail(__FILE__, __LINE__, "bind %s: %s", name, strerror(errno));
  return fd;
}

ssize_t sb_it_dgram_recv(uv_os_sock_t fd, char* buf, size_t size) {
  ssize_t n = recv(fd, buf, size, MSG_DONTWAIT);
  if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
    sb_test_fail(__FILE__, __LINE__, "recv: %s", strerror(errno));
  return n < 0 ? 0 : n;
}

void sb_it_dgram_close(uv_os_sock_t fd) {
  close(fd);
}

FILE* sb_it_fopen(const char* path, const char* mode) {
  return fopen(path, mode);
}
