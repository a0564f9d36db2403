/*
 * path.c - paths, written once for both platforms: making a directory with its
 * parents (joining two parts is the client library's, paths.c). The separator is the
 * platform's (path.h); the making of one directory and a path's root too, given by the
 * platform's sb__mkdir_p. Calls nothing of the platform files.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "path.h"

int sb__path_mkdirs(const char* path, int (*root_len)(const char* path),
                    int (*mkdir_one)(const char* dir)) {
  char *p, c;
  size_t i, root;
  int r = 0;
  if (path == NULL || path[0] == '\0')
    return SB_EINVAL;
  if (root_len != NULL && (r = root_len(path)) < 0)
    return r;
  root = (size_t)r;
  r = 0;
  p = sb__xstrdup(path);
  for (i = root + 1; p[root] != '\0' && p[i] != '\0' && r == 0; i++) {
    if (SB__IS_PATH_SEP(p[i]) && !SB__IS_PATH_SEP(p[i - 1])) {
      c = p[i];
      p[i] = '\0';
      r = mkdir_one(p);
      p[i] = c;
    }
  }
  if (r == 0)
    r = mkdir_one(p);
  free(p);
  return r;
}
