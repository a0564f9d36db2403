/* win/platform.c - default paths and directories on Windows. */
#include <windows.h>
#include <shlobj.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../internal.h"

const char* sb__default_control_pipe(void) {
  return "net.pipe:streambroker";
}

/* %ProgramData%\StreamBroker, asked of the system once. */
const char* sb__default_data_dir(void) {
  static char dir[MAX_PATH * 3];
  if (dir[0] == '\0') {
    PWSTR wide = NULL;
    char base[MAX_PATH * 3] = "C:\\ProgramData";
    if (SHGetKnownFolderPath(&FOLDERID_ProgramData, 0, NULL, &wide) == S_OK) {
      WideCharToMultiByte(CP_UTF8, 0, wide, -1, base, (int)sizeof(base), NULL, NULL);
    }
    CoTaskMemFree(wide);
    snprintf(dir, sizeof(dir), "%s\\StreamBroker", base);
  }
  return dir;
}

const char* sb__default_config_path(void) {
  static char path[MAX_PATH * 3 + 32];
  if (path[0] == '\0')
    snprintf(path, sizeof(path), "%s\\streambroker.json", sb__default_data_dir());
  return path;
}

void sb__raise_fd_limit(void) {
}

static int sb__mkdir_one(const char* path) {
  WCHAR wide[32768];
  DWORD attr, e;
  if (MultiByteToWideChar(CP_UTF8, 0, path, -1, wide, 32768) == 0)
    return SB_EINVAL;
  if (CreateDirectoryW(wide, NULL))
    return 0;
  e = GetLastError();
  if (e == ERROR_ALREADY_EXISTS) {
    attr = GetFileAttributesW(wide);
    return attr != INVALID_FILE_ATTRIBUTES && (attr & FILE_ATTRIBUTE_DIRECTORY) ? 0
                                                                                 : SB_EEXIST;
  }
  switch (e) {
  case ERROR_ACCESS_DENIED:
    return SB_EACCES;
  case ERROR_DISK_FULL:
    return SB_ENOSPC;
  case ERROR_PATH_NOT_FOUND:
    return SB_ENOENT;
  default:
    return SB_EIO;
  }
}

/* Both separators count, and a drive ("C:") or the root is never created. */
int sb__mkdir_p(const char* path) {
  char* p = sb__xstrdup(path);
  char* s;
  int r = 0;
  for (s = p; *s && r == 0; s++) {
    if ((*s == '/' || *s == '\\') && s > p && s[-1] != ':' && s[-1] != '/' &&
        s[-1] != '\\') {
      char c = *s;
      *s = '\0';
      r = sb__mkdir_one(p);
      *s = c;
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
  while (la > 0 && (a[la - 1] == '/' || a[la - 1] == '\\'))
    la--;
  while (lb > 0 && (b[0] == '/' || b[0] == '\\')) {
    b++;
    lb--;
  }
  memcpy(out, a, la);
  out[la] = '\\';
  memcpy(out + la + 1, b, lb + 1);
  return out;
}
