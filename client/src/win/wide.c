/* win/wide.c - UTF-8 as Windows takes it: UTF-16 strings and back, and fopen by a
 * UTF-8 path (win/wide.h). */
#include <windows.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "../alloc.h"
#include "wide.h"

char* sb__utf8(const WCHAR* w) {
  int n = WideCharToMultiByte(CP_UTF8, 0, w, -1, NULL, 0, NULL, NULL);
  char* s;
  if (n <= 0)
    return NULL;
  s = sb__xmalloc((size_t)n);
  if (WideCharToMultiByte(CP_UTF8, 0, w, -1, s, n, NULL, NULL) != n) {
    free(s);
    return NULL;
  }
  return s;
}

WCHAR* sb__utf16(const char* s) {
  int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, NULL, 0);
  WCHAR* w;
  if (n <= 0)
    return NULL;
  w = sb__xmalloc((size_t)n * sizeof(WCHAR));
  if (MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, w, n) != n) {
    free(w);
    return NULL;
  }
  return w;
}

/* Paths are UTF-8: fopen would take them in the ANSI code page, so a name with a
 * character outside it would not be found (or another file would be opened). */
FILE* sb__wfopen(const char* path, const WCHAR* mode) {
  WCHAR* w = sb__utf16(path);
  FILE* f;
  if (w == NULL) {
    errno = EINVAL;
    return NULL;
  }
  f = _wfopen(w, mode);
  free(w);
  return f;
}
