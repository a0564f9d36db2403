/*
 * posix/notify.c - tells systemd how the service is doing, through the datagram socket
 * named in NOTIFY_SOCKET (a path, or an abstract name written with a leading '@'),
 * as sd_notify does; without NOTIFY_SOCKET every call is a no-op, so the same binary
 * runs under Type=notify, Type=simple or no systemd at all.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../internal.h"

static int sb__notify_fd = -1;
static struct sockaddr_un sb__notify_sa;
static socklen_t sb__notify_len;
static int sb__notify_failed; /* logged once */

int sb__notify_open(void) {
  const char* name = getenv("NOTIFY_SOCKET");
  size_t len;
  if (name == NULL || name[0] == '\0')
    return 0;
  len = strlen(name);
  if ((name[0] != '/' && name[0] != '@') || len >= sizeof(sb__notify_sa.sun_path)) {
    SB_LOG_W("notify", "NOTIFY_SOCKET \"%s\" is neither a path nor an abstract name; "
             "systemd is not told of the service's state", name);
    return 0;
  }
  memset(&sb__notify_sa, 0, sizeof(sb__notify_sa));
  sb__notify_sa.sun_family = AF_UNIX;
  memcpy(sb__notify_sa.sun_path, name, len);
  if (name[0] == '@')
    sb__notify_sa.sun_path[0] = '\0'; /* abstract: no terminating NUL counted */
  sb__notify_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
                               (name[0] == '/' ? 1 : 0));
  sb__notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sb__notify_fd < 0) {
    SB_LOG_W("notify", "socket(AF_UNIX, SOCK_DGRAM): %s", strerror(errno));
    return 0;
  }
  SB_LOG_D("notify", "telling systemd through %s", name);
  return 1;
}

/* One datagram, never blocking the loop: a full queue loses a STATUS line, which the
 * next one replaces. */
void sb__notify(const char* text) {
  if (sb__notify_fd < 0)
    return;
  if (sendto(sb__notify_fd, text, strlen(text), MSG_DONTWAIT | MSG_NOSIGNAL,
             (const struct sockaddr*)&sb__notify_sa, sb__notify_len) < 0 &&
      !sb__notify_failed) {
    sb__notify_failed = 1;
    SB_LOG_W("notify", "cannot tell systemd \"%.*s\": %s",
             (int)strcspn(text, "\n"), text, strerror(errno));
  }
}

void sb__notify_close(void) {
  if (sb__notify_fd >= 0)
    close(sb__notify_fd);
  sb__notify_fd = -1;
}
