/*
 * win/wide.h - UTF-8 paths and strings as Windows takes them (win/wide.c): UTF-16 and
 * back, and fopen by a UTF-8 path. Included by the client's win/ files and the
 * service's win/platform.c.
 */
#ifndef SB_CLIENT_WIN_WIDE_H
#define SB_CLIENT_WIN_WIDE_H

#include <windows.h>
#include <stdio.h>

/* UTF-16 to a new UTF-8 string, or NULL. */
char* sb__utf8(const WCHAR* w);
/* UTF-8 to a new UTF-16 string, or NULL for invalid UTF-8. */
WCHAR* sb__utf16(const char* s);
/* fopen of a UTF-8 path with a wide mode (L"rb"); NULL with errno set (EINVAL for
 * invalid UTF-8). */
FILE* sb__wfopen(const char* path, const WCHAR* mode);

#endif
