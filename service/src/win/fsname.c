/* win/fsname.c - whether a name an exclusive create was refused is taken anyway. */
#include <windows.h>
#include <stdlib.h>

#include "../internal.h"

/*
 * A file deleted while another process holds it open with FILE_SHARE_DELETE (an
 * antivirus, an administrator's viewer) stays "delete pending" until that process
 * closes it: its name is still in the directory, and creating a file of that name is
 * refused with access denied (STATUS_DELETE_PENDING), not "exists". Such a name is
 * taken. The directory listing tells it from a real refusal (a directory the service
 * may not write): FindFirstFileW still finds the pending entry by its name.
 */
int sb__fs_name_taken(int uv_err, const char* path) {
  WIN32_FIND_DATAW fd;
  HANDLE h;
  WCHAR* w;
  char* full;
  int n;
  if (uv_err == UV_EEXIST)
    return 1;
  if (uv_err != UV_EPERM && uv_err != UV_EACCES)
    return 0;
  full = sb__path_long(path);
  n = MultiByteToWideChar(CP_UTF8, 0, full, -1, NULL, 0);
  if (n <= 0) {
    free(full);
    return 0;
  }
  w = sb__xmalloc((size_t)n * sizeof(WCHAR));
  MultiByteToWideChar(CP_UTF8, 0, full, -1, w, n);
  free(full);
  h = FindFirstFileW(w, &fd);
  free(w);
  if (h == INVALID_HANDLE_VALUE)
    return 0;
  FindClose(h);
  return 1;
}
