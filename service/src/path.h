/*
 * path.h - path.c's making of directories, written once for both platforms (each
 * platform's sb__mkdir_p gives it what differs).
 * Included by path.c and the two platform.c files only.
 */
#ifndef SB_PATH_H
#define SB_PATH_H

#include <stddef.h>

/* The separator: the client library's. */
#include "paths.h"

/*
 * Makes the directory path and each of its ancestors below its root, in turn, through
 * the platform's mkdir_one (one directory, its parent existing; one that exists is
 * success). root_len gives the length in bytes of path's root, which is never made, or
 * SB_E* for a path the platform cannot take; NULL: no root (POSIX, whose leading '/'
 * is skipped anyway). Doubled separators are skipped. 0, or the first error; SB_EINVAL
 * for a NULL or empty path.
 */
int sb__path_mkdirs(const char* path, int (*root_len)(const char* path),
                    int (*mkdir_one)(const char* dir));

#endif
