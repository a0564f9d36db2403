/* posix/listener.c - the control and admin sockets: directory, stale sockets, modes,
 * libuv's accept loop, peers. */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../internal.h"

/*
 * A socket file left by a dead instance refuses connections: it is removed. One that
 * accepts belongs to a live instance: we refuse to start rather than steal its name.
 * Anything that is not a socket is left alone and is an error.
 */
static int listener_prepare(const char* path, const char* what_key) {
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
    char why[1024];
    mode_t old;
    *slash = '\0';
    /* Made 0750 (the umask of the service's files would make it 0700): the socket's
     * group reaches the socket through it. */
    old = umask(027);
    r = sb__mkdir_p(dir);
    umask(old);
    if (r != 0) {
      SB_LOG_E("listener", "creating %s: %s", dir, sb_strerror(r));
      return r;
    }
    /* Only the service (or root) may write in it: whoever else could would put a
     * server of their own in the socket's place, and clients would talk to it. */
    if ((r = sb__dir_secure(what_key, path, dir, SB__DIR_STICKY_OK, why,
                            sizeof(why))) != 0) {
      SB_LOG_E("listener", "%s", why);
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
  if ((r = listener_prepare(path, admin_only ? "admin_pipe" : "control_pipe")) != 0)
    return r;
  l = sb__xcalloc(1, sizeof(*l));
  l->what = sb__xstrdup(what);
  l->cb = cb;
  l->arg = arg;
  l->counters = counters;
  uv_pipe_init(loop, &l->pipe, 0);
  l->pipe.data = l;
  /* The socket is born with its mode, 0660 (0600 for the admin pipe): a umask around
   * bind, not a chmod after it, which would leave a moment in which anyone could
   * connect. The loop's other threads create nothing yet (the listeners start first).
   * The directory (0750) and the socket's group decide who connects. */
  {
    mode_t old = umask(admin_only ? 0177 : 0117);
    r = uv_pipe_bind(&l->pipe, path);
    umask(old);
  }
  if (r != 0) {
    SB_LOG_E("listener", "%s: bind %s: %s", what, path, uv_strerror(r));
    r = r == UV_EADDRINUSE ? SB_EEXIST : sb__uv_err(r);
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

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif

/* The "Groups:" line of /proc/PID/status: the process's groups now (the fallback for
 * kernels before SO_PEERGROUPS). -1 when it cannot be read. */
static int proc_groups(int64_t pid, int64_t* out, int max) {
  char path[64], line[8192];
  FILE* f;
  int n = -1;
  snprintf(path, sizeof(path), "/proc/%lld/status", (long long)pid);
  if (pid <= 0 || (f = fopen(path, "re")) == NULL)
    return -1;
  while (fgets(line, sizeof(line), f) != NULL) {
    char *p = line + 7, *end;
    if (strncmp(line, "Groups:", 7) != 0)
      continue;
    n = 0;
    for (;;) {
      unsigned long long v = strtoull(p, &end, 10);
      if (end == p)
        break;
      if (n < max)
        out[n++] = (int64_t)v;
      p = end;
    }
    break;
  }
  fclose(f);
  return n;
}

/* The supplementary groups of the peer's process as it connected (SO_PEERGROUPS,
 * Linux 4.13), else as /proc/PID/status says; -1 when neither can tell. */
static int peer_groups(int fd, int64_t pid, int64_t* out, int max) {
  gid_t stack[256];
  gid_t* g = stack;
  socklen_t len = sizeof(stack);
  int r, n, i;
  r = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len);
  if (r != 0 && errno == ERANGE && (g = malloc(len)) != NULL)
    r = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len);
  if (r != 0 || g == NULL) {
    if (g != stack)
      free(g);
    return proc_groups(pid, out, max);
  }
  n = (int)(len / sizeof(gid_t));
  for (i = 0; i < n && i < max; i++)
    out[i] = g[i];
  if (g != stack)
    free(g);
  return n < max ? n : max;
}

void sb__peer_credentials(uv_pipe_t* pipe, sb__peer_t* peer) {
  uv_os_fd_t fd;
  struct ucred cred;
  socklen_t len = sizeof(cred);
  peer->pid = peer->uid = peer->gid = -1;
  peer->user[0] = '\0';
  peer->privileged = 0;
  peer->ngroups = -1;
  if (uv_fileno((uv_handle_t*)pipe, &fd) != 0 ||
      getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
    return;
  peer->pid = cred.pid;
  peer->uid = cred.uid;
  peer->gid = cred.gid;
  snprintf(peer->user, sizeof(peer->user), "uid %lld", (long long)cred.uid);
  peer->ngroups = peer_groups(fd, peer->pid, peer->groups, SB__PEER_GROUPS_MAX);
  /* The reserves' holders: root, the service's own user, and processes running as
   * its own group (their effective gid). Mere membership does not count: it is how
   * every client gets to the socket (the streambroker group). */
  peer->privileged = cred.uid == 0 || cred.uid == geteuid() || cred.gid == getegid();
}

/* Whether the peer holds gid: its (effective) gid, or one of the supplementary groups
 * its process holds. The group database is not asked: a process that dropped a group
 * has not got it, whatever /etc/group says of its user. */
static int peer_in_group(const sb__peer_t* peer, gid_t gid) {
  int i;
  if (peer->gid == (int64_t)gid)
    return 1;
  for (i = 0; i < peer->ngroups; i++) {
    if (peer->groups[i] == (int64_t)gid)
      return 1;
  }
  return 0;
}

int sb__peer_allowed(const sb__peer_t* peer, const char* allowed_groups, char* why,
                     size_t why_size) {
  char* list;
  char* name;
  char* save = NULL;
  int ok = 0;
  if (allowed_groups == NULL || allowed_groups[0] == '\0')
    return 1;
  if (peer->uid < 0) {
    snprintf(why, why_size, "its credentials are unknown");
    return 0;
  }
  list = sb__xstrdup(allowed_groups);
  for (name = strtok_r(list, ", ", &save); name && !ok;
       name = strtok_r(NULL, ", ", &save)) {
    struct group gr, *res = NULL;
    char buf[4096];
    if (getgrnam_r(name, &gr, buf, sizeof(buf), &res) == 0 && res != NULL)
      ok = peer_in_group(peer, gr.gr_gid);
  }
  free(list);
  if (!ok)
    snprintf(why, why_size,
             "uid %lld (gid %lld) is in none of allowed_groups \"%s\" (its process "
             "holds %d supplementary groups)",
             (long long)peer->uid, (long long)peer->gid, allowed_groups, peer->ngroups);
  return ok;
}
