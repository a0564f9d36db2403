/* posix/dial.c - the client's Unix socket dialer. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../oserror.h"
#include "../platform.h"
#include "../protocol.h"

void sb__sleep_ms(uint32_t ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (long)(ms % 1000) * 1000000L;
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

uint64_t sb__now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A dial's errors: a path with no socket behind it is no server, whatever the error
 * said; what a dial cannot tell its caller more about is an I/O error. */
static int sb__errno_to_sb(int e) {
  if (e == ENOENT || e == ENOTSOCK)
    return SB_ENOSERVER;
  return sb__err_keep(sb__os_err((unsigned long)e),
                      SB__ERR_BIT(SB_ENOSERVER) | SB__ERR_BIT(SB_EACCES) |
                          SB__ERR_BIT(SB_EPIPE) | SB__ERR_BIT(SB_ENOMEM));
}

/*
 * Whoever may write in the socket's directory may have put a server of their own in
 * its place (while the service was stopped, say), and would receive the stream. The
 * directory must be writable by no one but its owner; a sticky one owned by root (such
 * as /tmp) is allowed, since there only a socket's owner can remove or replace it,
 * provided the socket belongs to root, to the caller or to the directory's owner: a
 * socket another user put in /tmp is refused. Which user runs the service the client
 * cannot know: a directory that user owns is trusted (the service checks its own).
 */
static int sb__socket_safe(const char* path) {
  char dir[sizeof(((struct sockaddr_un*)0)->sun_path)];
  const char* slash = strrchr(path, '/');
  struct stat ds, ss;
  size_t n;
  if (slash == NULL) {
    strcpy(dir, ".");
  } else {
    n = slash == path ? 1 : (size_t)(slash - path);
    memcpy(dir, path, n);
    dir[n] = '\0';
  }
  if (stat(dir, &ds) != 0)
    return 0; /* the connect says what is wrong */
  if ((ds.st_mode & (S_IWGRP | S_IWOTH)) == 0)
    return 0;
  if ((ds.st_mode & S_ISVTX) == 0 || ds.st_uid != 0)
    return SB_EUNSAFE;
  if (lstat(path, &ss) != 0)
    return 0;
  if (ss.st_uid != 0 && ss.st_uid != geteuid() && ss.st_uid != ds.st_uid)
    return SB_EUNSAFE;
  return 0;
}

/*
 * The socket is connected non-blocking so that a full listen backlog shows as EAGAIN
 * (Linux) instead of blocking without limit; then it is made blocking again, since the
 * public API's writes block.
 */
int sb__dial(int kind, const char* path, uint32_t timeout_ms, int for_process,
             sb_os_handle_t* out) {
  struct sockaddr_un sa;
  uint64_t deadline = sb__now_ms() + timeout_ms;
  uint32_t delay = SB__DIAL_BACKOFF_FIRST_MS;
  int fd, flags, e;
  if (kind != SB__ADDR_UNIX)
    return SB_ENOTSUP;
  if (strlen(path) >= sizeof(sa.sun_path))
    return SB_EADDRESS;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, path, strlen(path));
  if ((e = sb__socket_safe(path)) != 0)
    return e;
  for (;;) {
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
      return sb__errno_to_sb(errno);
    if (connect(fd, (struct sockaddr*)&sa, sizeof(sa)) == 0)
      break;
    e = errno;
    close(fd);
    if (e != EAGAIN && e != EINTR)
      return sb__errno_to_sb(e);
    if (sb__now_ms() >= deadline)
      return SB_EBUSY;
    sb__sleep_ms(delay);
    delay = delay * 2 > SB__DIAL_BACKOFF_CAP_MS ? SB__DIAL_BACKOFF_CAP_MS : delay * 2;
  }
  flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0 ||
      (for_process && fcntl(fd, F_SETFD, 0) < 0)) {
    e = errno;
    close(fd);
    return sb__errno_to_sb(e);
  }
  /* The server never writes. A child's stdout says so, so nothing can block on its
   * side; a stream of ours keeps its read side, where sb__handle_finish learns how the
   * server ended the connection. */
  if (for_process)
    shutdown(fd, SHUT_RD);
  *out = fd;
  return 0;
}

int sb__handle_write(sb_os_handle_t h, const void* buf, size_t len) {
  const char* p = buf;
  while (len > 0) {
    ssize_t n = send(h, p, len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return sb__errno_to_sb(errno);
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

void sb__handle_close(sb_os_handle_t h) {
  if (h >= 0)
    close(h);
}

/*
 * The server reads to the end of the stream and then closes its end: we see end of
 * file. A server that refuses the stream (a limit, allowed_groups, a bad handshake)
 * closes it with our bytes unread, and the kernel resets the connection: we see
 * ECONNRESET. So we end our side (the server's EOF) and wait for the difference, up
 * to timeout_ms, as the Windows side waits for FlushFileBuffers.
 */
int sb__handle_finish(sb_os_handle_t h, uint32_t timeout_ms) {
  uint64_t deadline = sb__now_ms() + timeout_ms;
  char buf[256];
  if (h < 0)
    return SB_EINVAL;
  if (shutdown(h, SHUT_WR) != 0)
    return errno == ENOTCONN ? SB_EPIPE : sb__errno_to_sb(errno);
  for (;;) {
    struct pollfd p;
    uint64_t now = sb__now_ms();
    ssize_t n;
    int r;
    if (now >= deadline)
      return SB_ETIMEDOUT;
    p.fd = h;
    p.events = POLLIN;
    p.revents = 0;
    r = poll(&p, 1, (int)(deadline - now > 60000 ? 60000 : deadline - now));
    if (r < 0 && errno != EINTR)
      return sb__errno_to_sb(errno);
    if (r <= 0)
      continue;
    n = recv(h, buf, sizeof(buf), MSG_DONTWAIT);
    if (n == 0)
      return 0;
    if (n < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
      return sb__errno_to_sb(errno);
    /* Bytes from the server (it never writes any): ignored. */
  }
}

/* A Unix socket's unread bytes stay queued for the server after our close, and are
 * read after its accept even when we closed first: nothing to wait for. */
int sb__handle_flush(sb_os_handle_t h, uint32_t timeout_ms) {
  (void)timeout_ms;
  return h >= 0 ? 0 : SB_EINVAL;
}
