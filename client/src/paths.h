/*
 * paths.h - a platform header: the path separator and the joining of two path parts
 * (paths.c), for the service and sbctl. Included by the service's internal.h and
 * path.h, and by sbctl's files.
 */
#ifndef SB_CLIENT_PATHS_H
#define SB_CLIENT_PATHS_H

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

#endif
