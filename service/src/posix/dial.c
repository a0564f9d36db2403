/* posix/dial.c - one non-blocking connect to the upstream's Unix socket. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../internal.h"

int sb__upstream_dial(const char* address, uv_file* out) {
  struct sockaddr_un sa;
  const char* path;
  int kind, fd, e;
  if (sb__address_parse(address, &kind, &path) != 0 || kind != SB__ADDR_UNIX ||
      strlen(path) >= sizeof(sa.sun_path))
    return SB_EADDRESS;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  strcpy(sa.sun_path, path);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return errno == EMFILE || errno == ENFILE ? SB_ELIMIT : SB_EIO;
  if (connect(fd, (struct sockaddr*)&sa, sizeof(sa)) == 0) {
    *out = fd;
    return 0;
  }
  e = errno;
  close(fd);
  switch (e) {
  case EAGAIN:
    return SB_EBUSY; /* the upstream's backlog is full */
  case ENOENT:
  case ECONNREFUSED:
    return SB_ENOSERVER;
  case EACCES:
  case EPERM:
    return SB_EACCES;
  default:
    return SB_EIO;
  }
}
