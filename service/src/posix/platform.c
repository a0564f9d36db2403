/* posix/platform.c - default paths, the open-file limit and directories on POSIX. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "../internal.h"

const char* sb__default_control_pipe(void) {
  return "unix:/run/streambroker/streambroker.sock";
}

const char* sb__default_admin_pipe(void) {
  return "unix:/run/streambroker/admin.sock";
}

const char* sb__default_data_dir(void) {
  return "/var/lib/streambroker";
}

/* Standard error: the journal keeps it under systemd, the terminal otherwise. */
const char* sb__default_service_log(void) {
  return NULL;
}

const char* sb__default_config_path(void) {
  return "/etc/streambroker/streambroker.json";
}

/* Each stream holds two descriptors (its client and its upstream or archive file), so
 * the usual soft limit of 1024 would cap the service near 500 streams; the hard limit
 * is what the administrator allows. */
void sb__process_init(void) {
  /* An upstream that dies makes writes fail with EPIPE; the default SIGPIPE would kill
   * the service instead. */
  signal(SIGPIPE, SIG_IGN);
}

void sb__raise_fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
      SB_LOG_W("platform", "setrlimit(RLIMIT_NOFILE, %llu): %s",
               (unsigned long long)rl.rlim_max, strerror(errno));
  }
}

/* A directory that already exists is success whatever mkdir says about it (EEXIST,
 * but also EACCES or EROFS for a parent such as /var that we may not write). */
static int sb__mkdir_one(const char* path) {
  struct stat st;
  int e;
  if (mkdir(path, 0750) == 0)
    return 0;
  e = errno;
  if (stat(path, &st) == 0)
    return S_ISDIR(st.st_mode) ? 0 : SB_EEXIST;
  switch (e) {
  case EACCES:
  case EPERM:
  case EROFS:
    return SB_EACCES;
  case ENOSPC:
#ifdef EDQUOT
  case EDQUOT:
#endif
    return SB_ENOSPC;
  case ENOENT:
  case ENOTDIR:
    return SB_ENOENT;
  case ENAMETOOLONG:
    return SB_EINVAL;
  default:
    return SB_EIO;
  }
}

/* Creates each ancestor in turn (the root and doubled slashes are skipped). */
int sb__mkdir_p(const char* path) {
  char* p;
  size_t i;
  int r = 0;
  if (path == NULL || path[0] == '\0')
    return SB_EINVAL;
  p = sb__xstrdup(path);
  for (i = 1; p[i] != '\0' && r == 0; i++) {
    if (p[i] == '/' && p[i - 1] != '/') {
      p[i] = '\0';
      r = sb__mkdir_one(p);
      p[i] = '/';
    }
  }
  if (r == 0)
    r = sb__mkdir_one(p);
  free(p);
  return r;
}

/* One '/' between the parts however many each brings; an empty part gives the other
 * one unchanged. */
char* sb__path_join(const char* a, const char* b) {
  size_t la = strlen(a), lb = strlen(b);
  char* out;
  if (la == 0 || lb == 0)
    return sb__xstrdup(la == 0 ? b : a);
  while (la > 0 && a[la - 1] == '/')
    la--;
  while (lb > 0 && b[0] == '/') {
    b++;
    lb--;
  }
  out = sb__xmalloc(la + lb + 2);
  memcpy(out, a, la);
  out[la] = '/';
  memcpy(out + la + 1, b, lb + 1);
  return out;
}

int sb__path_is_absolute(const char* path) {
  return path != NULL && path[0] == '/';
}

/* "/a/b/" -> "/a"; "/a" -> "/"; "/" and "a" -> NULL. */
char* sb__path_parent(const char* path) {
  size_t n = strlen(path);
  char* out;
  while (n > 1 && path[n - 1] == '/')
    n--;
  while (n > 0 && path[n - 1] != '/')
    n--;
  if (n == 0 || (n == 1 && strlen(path) > 0 && strspn(path, "/") == strlen(path)))
    return NULL; /* no directory part, or the root itself */
  while (n > 1 && path[n - 1] == '/')
    n--;
  out = sb__xmalloc(n + 1);
  memcpy(out, path, n);
  out[n] = '\0';
  return out;
}

/* POSIX calls take any path up to PATH_MAX; the archive keeps its paths below it. */
char* sb__path_long(const char* path) {
  return sb__xstrdup(path);
}

/* Windows checks access lists here; POSIX owners and modes are checked where the
 * files are opened. */
int sb__path_check_private(const char* key, const char* path, char* why, size_t size) {
  (void)key;
  (void)path;
  (void)why;
  (void)size;
  return 0;
}

/* The archive's opens follow no link on POSIX (checked where it opens). */
int sb__path_check_links(const char* root, const char* path) {
  (void)root;
  (void)path;
  return 0;
}

int sb__path_make_private(const char* path, char* why, size_t size) {
  int r = sb__mkdir_p(path);
  if (r != 0)
    snprintf(why, size, "\"%s\": %s", path, sb_strerror(r));
  return r;
}
