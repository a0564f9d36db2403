/* posix/dial.c - one non-blocking connect to the upstream's Unix socket. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../internal.h"
#include "oserror.h"

#if defined(__linux__)
#include <linux/sockios.h>
#endif

int sb__pipe_adopt(uv_pipe_t* pipe, uv_os_fd_t fd) {
  int r = uv_pipe_open(pipe, fd);
  if (r != 0)
    close(fd);
  return r;
}

int64_t sb__pipe_unread(uv_pipe_t* pipe) {
#if defined(SIOCOUTQ)
  uv_os_fd_t fd;
  int n = 0;
  if (uv_fileno((uv_handle_t*)pipe, &fd) != 0 || ioctl(fd, SIOCOUTQ, &n) != 0)
    return -1;
  return n;
#else
  (void)pipe;
  return -1;
#endif
}

/* ---- the upstream's process ---- */

#define SB__PF_EXITING 0x4u /* the kernel's flag, set as a process starts to exit */

/*
 * Reads /proc/PID/stat: its state letter, flags (field 9) and start time (field 22).
 * The fields are counted after the last ')', since the command name may hold spaces
 * and parentheses. 0, SB_ENOENT when the process is gone, or another SB_E* code.
 */
static int proc_stat(int64_t pid, char* state, unsigned long* flags,
                     unsigned long long* start) {
  char path[64], buf[1024];
  const char* p;
  ssize_t n;
  int fd, field;
  snprintf(path, sizeof(path), "/proc/%lld/stat", (long long)pid);
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return errno == ENOENT || errno == ESRCH ? SB_ENOENT
           : errno == EACCES                 ? SB_EACCES
                                             : SB_EIO;
  n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n < 0)
    return errno == ESRCH ? SB_ENOENT : SB_EIO;
  buf[n] = '\0';
  if ((p = strrchr(buf, ')')) == NULL || p[1] != ' ')
    return SB_EIO;
  p += 2;
  *state = *p;
  for (field = 3; field < 22 && *p; field++) {
    p = strchr(p, ' ');
    if (p == NULL)
      return SB_EIO;
    p++;
    if (field + 1 == 9)
      *flags = strtoul(p, NULL, 10);
  }
  if (field != 22)
    return SB_EIO;
  *start = strtoull(p, NULL, 10);
  return 0;
}

int sb__upstream_proc_open(uv_os_fd_t fd, sb__upstream_proc_t* proc) {
#if defined(SO_PEERCRED)
  struct ucred cred;
  socklen_t len = sizeof(cred);
  unsigned long flags = 0;
  unsigned long long start = 0;
  char state = 0;
  int r;
  proc->pid = -1;
  proc->handle = NULL;
  /* The pid of the process that listened: 0 when it lives in another pid namespace. */
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.pid <= 0)
    return SB_ENOTSUP;
  r = proc_stat(cred.pid, &state, &flags, &start);
  if (r == SB_ENOENT)
    start = UINT64_MAX; /* gone already: no process has that start time */
  else if (r != 0)
    return r;
  proc->pid = cred.pid;
  proc->start = start;
  return 0;
#else
  (void)fd;
  proc->pid = -1;
  proc->handle = NULL;
  return SB_ENOTSUP;
#endif
}

int sb__upstream_proc_alive(const sb__upstream_proc_t* proc) {
  unsigned long flags = 0;
  unsigned long long start = 0;
  char state = 0;
  int r;
  if (proc->pid <= 0)
    return SB_ENOTSUP;
  r = proc_stat(proc->pid, &state, &flags, &start);
  if (r == SB_ENOENT)
    return 0;
  if (r != 0)
    return r;
  if (start != proc->start || state == 'Z' || state == 'X' || state == 'x' ||
      (flags & SB__PF_EXITING))
    return 0;
  return 1;
}

void sb__upstream_proc_close(sb__upstream_proc_t* proc) {
  proc->pid = -1;
}

/* A connect's errors: no socket file there is no upstream (yet); EAGAIN is the
 * upstream's full backlog. */
static int dial_err(int e) {
  if (e == ENOENT)
    return SB_ENOSERVER;
  return sb__err_keep(sb__os_err((unsigned long)e), SB__ERR_BIT(SB_EBUSY) |
                                                        SB__ERR_BIT(SB_ENOSERVER) |
                                                        SB__ERR_BIT(SB_EACCES));
}

int sb__upstream_dial(const char* address, uv_os_fd_t* out) {
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
    return sb__err_keep(sb__os_err((unsigned long)errno), SB__ERR_BIT(SB_ELIMIT));
  if (connect(fd, (struct sockaddr*)&sa, sizeof(sa)) == 0) {
    *out = fd;
    return 0;
  }
  e = errno;
  close(fd);
  return dial_err(e);
}

/* ---- watching for the upstream to appear: its socket's directory ---- */

typedef struct {
  uv_fs_event_t event;
  uv_timer_t settle;
  int closing;
  char* base; /* the socket's file name */
  void (*appeared)(void* arg);
  void* arg;
} sb__watch_t;

static void on_settled(uv_timer_t* t) {
  sb__watch_t* w = t->data;
  w->appeared(w->arg);
}

/* The socket file appears at bind, a moment before the server listens: the streams
 * dial 50 ms later. */
static void on_dir_event(uv_fs_event_t* h, const char* filename, int events,
                         int status) {
  sb__watch_t* w = h->data;
  (void)events;
  if (status == 0 && (filename == NULL || strcmp(filename, w->base) == 0))
    uv_timer_start(&w->settle, on_settled, 50, 0);
}

static void on_watch_closed(uv_handle_t* h) {
  sb__watch_t* w = h->data;
  if (++w->closing < 2)
    return;
  free(w->base);
  free(w);
}

void* sb__upstream_watch_start(uv_loop_t* loop, const char* address,
                               void (*appeared)(void* arg), void* arg) {
  const char* path;
  const char* slash;
  char dir[sizeof(((struct sockaddr_un*)0)->sun_path)];
  sb__watch_t* w;
  int kind, r;
  if (sb__address_parse(address, &kind, &path) != 0 || kind != SB__ADDR_UNIX ||
      (slash = strrchr(path, '/')) == NULL || (size_t)(slash - path) >= sizeof(dir))
    return NULL;
  memcpy(dir, path, (size_t)(slash - path));
  dir[slash - path] = '\0';
  if (dir[0] == '\0')
    strcpy(dir, "/");
  w = sb__xcalloc(1, sizeof(*w));
  w->base = sb__xstrdup(slash + 1);
  w->appeared = appeared;
  w->arg = arg;
  uv_fs_event_init(loop, &w->event);
  uv_timer_init(loop, &w->settle);
  w->event.data = w->settle.data = w;
  if ((r = uv_fs_event_start(&w->event, on_dir_event, dir, 0)) != 0) {
    /* No directory yet, or no inotify: the backoff alone finds the upstream. */
    SB_LOG_D("upstream", "cannot watch %s: %s", dir, uv_strerror(r));
    sb__upstream_watch_stop(w);
    return NULL;
  }
  uv_unref((uv_handle_t*)&w->event);
  uv_unref((uv_handle_t*)&w->settle);
  return w;
}

void sb__upstream_watch_waiting(void* watch) {
  (void)watch; /* inotify reports creations whether anyone waits or not */
}

void sb__upstream_watch_stop(void* watch) {
  sb__watch_t* w = watch;
  if (w == NULL)
    return;
  uv_close((uv_handle_t*)&w->event, on_watch_closed);
  uv_close((uv_handle_t*)&w->settle, on_watch_closed);
}
