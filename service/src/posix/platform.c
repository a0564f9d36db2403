/* posix/platform.c - default paths, file limits and directories on POSIX. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "../internal.h"

const char* sb__default_control_pipe(void) {
  return "unix:/run/streambroker/streambroker.sock";
}

const char* sb__default_data_dir(void) {
  return "/var/lib/streambroker";
}

const char* sb__default_config_path(void) {
  return "/etc/streambroker/streambroker.json";
}

/* Each stream holds two descriptors (client and upstream): the default soft limit of
 * 1024 would cap the service near 500 streams. */
void sb__raise_fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

static int sb__mkdir_one(const char* path) {
  struct stat st;
  if (mkdir(path, 0750) == 0)
    return 0;
  if (errno == EEXIST && stat(path, &st) == 0)
    return S_ISDIR(st.st_mode) ? 0 : SB_EEXIST;
  switch (errno) {
  case EACCES:
  case EPERM:
  case EROFS:
    return SB_EACCES;
  case ENOSPC:
    return SB_ENOSPC;
  case ENOENT:
    return SB_ENOENT;
  default:
    return SB_EIO;
  }
}

int sb__mkdir_p(const char* path) {
  char* p = sb__xstrdup(path);
  char* s;
  int r = 0;
  for (s = p + 1; *s && r == 0; s++) {
    if (*s == '/') {
      *s = '\0';
      r = sb__mkdir_one(p);
      *s = '/';
    }
  }
  if (r == 0)
    r = sb__mkdir_one(p);
  free(p);
  return r;
}

char* sb__path_join(const char* a, const char* b) {
  size_t la = strlen(a), lb = strlen(b);
  char* out = sb__xmalloc(la + lb + 2);
  while (la > 1 && a[la - 1] == '/')
    la--;
  while (lb > 0 && b[0] == '/') {
    b++;
    lb--;
  }
  memcpy(out, a, la);
  out[la] = '/';
  memcpy(out + la + 1, b, lb + 1);
  if (la == 1 && a[0] == '/')
    memmove(out + 1, out + 2, lb + 1);
  return out;
}
