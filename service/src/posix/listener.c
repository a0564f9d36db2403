/* posix/listener.c - the control and admin sockets: directory, stale sockets, modes,
 * libuv's accept loop, peers. */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../internal.h"

int sb__listener_bind_path(const char* address, char* out, size_t size) {
  int kind;
  const char* path;
  if (sb__address_parse(address, &kind, &path) != 0 || kind != SB__ADDR_UNIX ||
      strlen(path) >= size)
    return SB_EADDRESS;
  memcpy(out, path, strlen(path) + 1);
  return 0;
}

/*
 * A socket file left by a dead instance refuses connections: it is removed. One that
 * accepts belongs to a live instance: we refuse to start rather than steal its name.
 * Anything that is not a socket is left alone and is an error.
 */
static int listener_prepare(const char* path) {
  char dir[1024];
  char* slash;
  struct stat st;
  struct sockaddr_un sa;
  char address[sizeof(sa.sun_path) + 8];
  uv_file fd;
  int r;
  if (strlen(path) >= sizeof(dir) || strlen(path) >= sizeof(sa.sun_path))
    return SB_EADDRESS;
  strcpy(dir, path);
  slash = strrchr(dir, '/');
  if (slash != NULL && slash != dir) {
    *slash = '\0';
    if ((r = sb__mkdir_p(dir)) != 0) {
      SB_LOG_E("listener", "creating %s: %s", dir, sb_strerror(r));
      return r;
    }
  }
  if (lstat(path, &st) != 0)
    return 0;
  if (!S_ISSOCK(st.st_mode)) {
    SB_LOG_E("listener", "%s exists and is not a socket; not touching it", path);
    return SB_EEXIST;
  }
  /* The upstream dialer's single non-blocking connect is exactly the probe needed. */
  snprintf(address, sizeof(address), "unix:%s", path);
  r = sb__upstream_dial(address, &fd);
  if (r == 0)
    close(fd);
  if (r == 0 || r == SB_EBUSY) {
    SB_LOG_E("listener", "%s: another instance is serving it", path);
    return SB_EEXIST;
  }
  if (r != SB_ENOSERVER) {
    SB_LOG_E("listener", "probing %s: %s", path, sb_strerror(r));
    return r;
  }
  SB_LOG_I("listener", "removing the stale socket %s of a stopped instance", path);
  if (unlink(path) != 0 && errno != ENOENT) {
    SB_LOG_E("listener", "unlink %s: %s", path, strerror(errno));
    return SB_EACCES;
  }
  return 0;
}

struct sb__listener_s {
  uv_pipe_t pipe;
  char* what;
  sb__listener_cb cb;
  void* arg;
  sb__counters_t* counters;
  int handed; /* the callback accepted the waiting connection */
  void (*closed)(void* arg);
  void* closed_arg;
};

static void on_listener_closed(uv_handle_t* h) {
  sb__listener_t* l = h->data;
  if (l->closed)
    l->closed(l->closed_arg);
  free(l->what);
  free(l);
}

static void count_lost(sb__listener_t* l) {
  if (l->counters)
    l->counters->accept_lost++;
}

static void on_refused_closed(uv_handle_t* h) {
  free(h);
}

/* The kernel keeps a connection, and what its client wrote, until accept: a client
 * that closed before it is still read. An accept that fails (descriptors exhausted)
 * drops one; libuv reports it here. */
static void on_connection(uv_stream_t* server, int status) {
  sb__listener_t* l = server->data;
  if (status < 0) {
    count_lost(l);
    SB_LOG_E("listener", "%s: accept: %s; a connection was dropped unread", l->what,
             uv_strerror(status));
    return;
  }
  l->handed = 0;
  l->cb(l, l->arg);
  if (!l->handed) {
    /* Nobody took it: take it, so libuv goes on accepting, and close it. */
    uv_pipe_t* p = sb__xcalloc(1, sizeof(*p));
    uv_pipe_init(server->loop, p, 0);
    if (uv_accept(server, (uv_stream_t*)p) == 0) {
      count_lost(l);
      SB_LOG_E("listener", "%s: a connection was not taken; dropped unread", l->what);
    }
    uv_close((uv_handle_t*)p, on_refused_closed);
  }
}

int sb__listener_start(sb__listener_t** out, uv_loop_t* loop, const char* path,
                       const char* what, int admin_only, const char* sddl,
                       int instances, sb__listener_cb cb, void* arg,
                       sb__counters_t* counters) {
  sb__listener_t* l;
  int r;
  (void)sddl;
  (void)instances;
  *out = NULL;
  if ((r = listener_prepare(path)) != 0)
    return r;
  l = sb__xcalloc(1, sizeof(*l));
  l->what = sb__xstrdup(what);
  l->cb = cb;
  l->arg = arg;
  l->counters = counters;
  uv_pipe_init(loop, &l->pipe, 0);
  l->pipe.data = l;
  if ((r = uv_pipe_bind(&l->pipe, path)) != 0) {
    SB_LOG_E("listener", "%s: bind %s: %s", what, path, uv_strerror(r));
    r = r == UV_EADDRINUSE ? SB_EEXIST : sb__uv_err(r);
    goto fail;
  }
  /* Mode 0660 before listen (0600 for the admin pipe): the directory (0750) and the
   * group decide who connects. */
  if (chmod(path, admin_only ? 0600 : 0660) != 0) {
    SB_LOG_E("listener", "chmod %s: %s", path, strerror(errno));
    r = SB_EACCES;
    goto fail;
  }
  if ((r = uv_listen((uv_stream_t*)&l->pipe, admin_only ? 16 : 511, on_connection)) !=
      0) {
    SB_LOG_E("listener", "%s: listen %s: %s", what, path, uv_strerror(r));
    r = sb__uv_err(r);
    goto fail;
  }
  *out = l;
  return 0;
fail:
  uv_close((uv_handle_t*)&l->pipe, on_listener_closed);
  return r;
}

int sb__listener_accept(sb__listener_t* l, uv_pipe_t* client) {
  int r;
  l->handed = 1;
  if ((r = uv_accept((uv_stream_t*)&l->pipe, (uv_stream_t*)client)) != 0) {
    count_lost(l);
    SB_LOG_E("listener", "%s: accept: %s; a connection was dropped unread", l->what,
             uv_strerror(r));
    return sb__uv_err(r);
  }
  return 0;
}

/* Connections still in the kernel's backlog would go with the socket, unread and
 * unseen: they are taken and closed here, so that each is counted. */
void sb__listener_stop(sb__listener_t* l, void (*closed)(void* arg), void* arg) {
  uv_os_fd_t fd;
  uint64_t n = 0;
  int c;
  if (uv_fileno((uv_handle_t*)&l->pipe, &fd) == 0) {
    while ((c = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
      close(c);
      n++;
    }
  }
  if (n > 0) {
    if (l->counters)
      l->counters->accept_lost += n;
    SB_LOG_W("listener", "%s: %llu connections waiting at the stop were dropped unread",
             l->what, (unsigned long long)n);
  }
  l->closed = closed;
  l->closed_arg = arg;
  uv_close((uv_handle_t*)&l->pipe, on_listener_closed);
}

void sb__peer_credentials(uv_pipe_t* pipe, int64_t* pid, int64_t* uid, int64_t* gid) {
  uv_os_fd_t fd;
  struct ucred cred;
  socklen_t len = sizeof(cred);
  *pid = *uid = *gid = -1;
  if (uv_fileno((uv_handle_t*)pipe, &fd) != 0 ||
      getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
    return;
  *pid = cred.pid;
  *uid = cred.uid;
  *gid = cred.gid;
}

/* Whether gid is uid's primary group or one of its supplementary groups. */
static int sb__user_in_group(uid_t uid, gid_t peer_gid, gid_t gid) {
  struct passwd pw, *res = NULL;
  char buf[4096];
  gid_t groups[256];
  int n = 256, i;
  if (peer_gid == gid)
    return 1;
  if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) != 0 || res == NULL)
    return 0;
  if (pw.pw_gid == gid)
    return 1;
  if (getgrouplist(pw.pw_name, pw.pw_gid, groups, &n) < 0)
    return 0;
  for (i = 0; i < n; i++) {
    if (groups[i] == gid)
      return 1;
  }
  return 0;
}

int sb__peer_allowed(int64_t uid, int64_t gid, const char* allowed_groups, char* why,
                     size_t why_size) {
  char* list;
  char* name;
  char* save = NULL;
  int ok = 0;
  if (allowed_groups == NULL || allowed_groups[0] == '\0')
    return 1;
  if (uid < 0) {
    snprintf(why, why_size, "its credentials are unknown");
    return 0;
  }
  list = sb__xstrdup(allowed_groups);
  for (name = strtok_r(list, ", ", &save); name && !ok;
       name = strtok_r(NULL, ", ", &save)) {
    struct group gr, *res = NULL;
    char buf[4096];
    if (getgrnam_r(name, &gr, buf, sizeof(buf), &res) == 0 && res != NULL)
      ok = sb__user_in_group((uid_t)uid, (gid_t)gid, gr.gr_gid);
  }
  free(list);
  if (!ok)
    snprintf(why, why_size, "uid %lld (gid %lld) is in none of allowed_groups \"%s\"",
             (long long)uid, (long long)gid, allowed_groups);
  return ok;
}

/* The socket's mode (0600, the service's user) decides who serves and who talks. */
int sb__admin_connect(uv_loop_t* loop, uv_pipe_t* pipe, uv_connect_t* req,
                      const char* path, uv_connect_cb cb) {
  (void)loop;
  uv_pipe_connect(req, pipe, path, cb);
  return 0;
}
