/*
 * paths.h - a platform header: the path separator and the joining of two path parts
 * (paths.c), the default places, and reading a file, for the service and sbctl.
 * Included by the service's internal.h and path.h, and by sbctl's files.
 */
#ifndef SB_CLIENT_PATHS_H
#define SB_CLIENT_PATHS_H

#include <stdio.h>

#ifdef _WIN32
/* Windows writes '\' and reads either. */
#define SB__PATH_SEP '\\'
#define SB__IS_PATH_SEP(c) ((c) == '/' || (c) == '\\')
#else
#define SB__PATH_SEP '/'
#define SB__IS_PATH_SEP(c) ((c) == '/')
#endif

/* Joins two path parts with the platform's separator; returns a new string. */
char* sb__path_join(const char* a, const char* b);

/* Platform defaults for paths (posix/defaults.c, win/defaults.c; the static library
 * only): the control and admin pipes' addresses, the service's data directory. */
const char* sb__default_control_pipe(void);
const char* sb__default_admin_pipe(void);
const char* sb__default_data_dir(void);

/* A file to read (the config, a saved status, a sidecar): fopen(path, "rb") of a
 * UTF-8 path, close-on-exec on POSIX (posix/file.c, win/file.c; the static library
 * only). NULL with errno set. */
FILE* sb__file_read(const char* path);

#endif
