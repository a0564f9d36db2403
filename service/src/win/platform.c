/* win/platform.c - default paths and directories on Windows. */
#include <windows.h>
#include <knownfolders.h>
#include <shlobj.h>
#include <stdlib.h>
#include <string.h>

#include "../internal.h"

static uv_once_t sb__paths_once = UV_ONCE_INIT;
static char* sb__data_dir;    /* %ProgramData%\StreamBroker, UTF-8, never freed */
static char* sb__config_path; /* sb__data_dir\streambroker.json */
static char* sb__service_log; /* sb__data_dir\logs\streambrokerd.log */

/* UTF-16 to a new UTF-8 string, or NULL. */
static char* sb__utf8(const WCHAR* w) {
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

/* UTF-8 to a new UTF-16 string, or NULL for invalid UTF-8. */
static WCHAR* sb__utf16(const char* s) {
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

/*
 * ProgramData is asked of the shell (it may have been moved off C:), then of the
 * environment, else the usual place. Computed once: the paths are handed out as
 * plain const char* for the life of the process, possibly to several threads.
 */
static void sb__paths_init(void) {
  PWSTR known = NULL;
  WCHAR env[MAX_PATH];
  char* base = NULL;
  DWORD n;
  if (SHGetKnownFolderPath(&FOLDERID_ProgramData, 0, NULL, &known) == S_OK)
    base = sb__utf8(known);
  CoTaskMemFree(known);
  if (base == NULL) {
    n = GetEnvironmentVariableW(L"PROGRAMDATA", env, MAX_PATH);
    if (n > 0 && n < MAX_PATH)
      base = sb__utf8(env);
  }
  if (base == NULL)
    base = sb__xstrdup("C:\\ProgramData");
  sb__data_dir = sb__path_join(base, "StreamBroker");
  sb__config_path = sb__path_join(sb__data_dir, "streambroker.json");
  sb__service_log = sb__path_join(sb__data_dir, "logs\\streambrokerd.log");
  free(base);
}

const char* sb__default_control_pipe(void) {
  return "net.pipe:streambroker";
}

const char* sb__default_admin_pipe(void) {
  return "net.pipe:streambroker-admin";
}

const char* sb__default_data_dir(void) {
  uv_once(&sb__paths_once, sb__paths_init);
  return sb__data_dir;
}

/* A service has no console: its log goes under ProgramData unless log_file says. */
const char* sb__default_service_log(void) {
  uv_once(&sb__paths_once, sb__paths_init);
  return sb__service_log;
}

const char* sb__default_config_path(void) {
  uv_once(&sb__paths_once, sb__paths_init);
  return sb__config_path;
}

/* Windows has no per-process handle limit to raise. */
void sb__process_init(void) {
}

void sb__raise_fd_limit(void) {
}

int64_t sb__process_open_handles(void) {
  DWORD n = 0;
  return GetProcessHandleCount(GetCurrentProcess(), &n) ? (int64_t)n : -1;
}

static int sb__is_sep(WCHAR c) {
  return c == L'\\' || c == L'/';
}

static size_t sb__skip_seps(const WCHAR* p, size_t i) {
  while (sb__is_sep(p[i]))
    i++;
  return i;
}

static size_t sb__skip_part(const WCHAR* p, size_t i) {
  while (p[i] != 0 && !sb__is_sep(p[i]))
    i++;
  return i;
}

/*
 * The length of the path's root, which names a volume and is never created: "C:\",
 * "\", "\\server\share\", "\\?\C:\", "\\?\UNC\server\share\" or "\\?\Volume{...}\".
 */
static size_t sb__root_len(const WCHAR* p) {
  size_t i = 0;
  if (sb__is_sep(p[0]) && sb__is_sep(p[1])) {
    if ((p[2] == L'?' || p[2] == L'.') && sb__is_sep(p[3])) {
      if (p[4] != 0 && p[5] == L':')
        return sb__skip_seps(p, 6);
      if (_wcsnicmp(p + 4, L"UNC", 3) != 0 || !sb__is_sep(p[7]))
        return sb__skip_seps(p, sb__skip_part(p, 4));
      i = 8;
    } else {
      i = 2;
    }
    i = sb__skip_seps(p, sb__skip_part(p, i));    /* server */
    return sb__skip_seps(p, sb__skip_part(p, i)); /* share */
  }
  if (p[0] != 0 && p[1] == L':')
    i = 2;
  return sb__skip_seps(p, i);
}

/* A directory that already exists is success whatever CreateDirectoryW says. */
static int sb__mkdir_one(const WCHAR* path) {
  DWORD attr, e;
  if (CreateDirectoryW(path, NULL))
    return 0;
  e = GetLastError();
  attr = GetFileAttributesW(path);
  if (attr != INVALID_FILE_ATTRIBUTES)
    return (attr & FILE_ATTRIBUTE_DIRECTORY) ? 0 : SB_EEXIST;
  switch (e) {
  case ERROR_ACCESS_DENIED:
  case ERROR_WRITE_PROTECT:
    return SB_EACCES;
  case ERROR_DISK_FULL:
  case ERROR_HANDLE_DISK_FULL:
    return SB_ENOSPC;
  case ERROR_PATH_NOT_FOUND:
  case ERROR_FILE_NOT_FOUND:
  case ERROR_BAD_NETPATH:
    return SB_ENOENT;
  case ERROR_INVALID_NAME:
  case ERROR_FILENAME_EXCED_RANGE:
    return SB_EINVAL;
  default:
    return SB_EIO;
  }
}

/* Creates each ancestor below the root in turn; both separators count. */
int sb__mkdir_p(const char* path) {
  WCHAR* w;
  size_t i, root;
  int r = 0;
  if (path == NULL || path[0] == '\0')
    return SB_EINVAL;
  if ((w = sb__utf16(path)) == NULL)
    return SB_EINVAL;
  root = sb__root_len(w);
  for (i = root + 1; w[root] != 0 && w[i] != 0 && r == 0; i++) {
    if (sb__is_sep(w[i]) && !sb__is_sep(w[i - 1])) {
      WCHAR c = w[i];
      w[i] = 0;
      r = sb__mkdir_one(w);
      w[i] = c;
    }
  }
  if (r == 0)
    r = sb__mkdir_one(w);
  free(w);
  return r;
}

/* The root's length in bytes of the UTF-8 path. */
static size_t sb__root_len8(const char* p) {
  WCHAR* w = sb__utf16(p);
  size_t root;
  int n = 0;
  if (w == NULL)
    return 0;
  root = sb__root_len(w);
  if (root > 0)
    n = WideCharToMultiByte(CP_UTF8, 0, w, (int)root, NULL, 0, NULL, NULL);
  free(w);
  return n > 0 ? (size_t)n : 0;
}

int sb__path_is_absolute(const char* path) {
  if (path == NULL)
    return 0;
  if ((path[0] == '\\' || path[0] == '/') && (path[1] == '\\' || path[1] == '/'))
    return 1; /* UNC, or \\?\ */
  return ((path[0] >= 'A' && path[0] <= 'Z') || (path[0] >= 'a' && path[0] <= 'z')) &&
         path[1] == ':' && (path[2] == '\\' || path[2] == '/');
}

/* "C:\a\b\" -> "C:\a"; "C:\a" -> "C:\"; "C:\" -> NULL; UNC roots likewise. */
char* sb__path_parent(const char* path) {
  size_t root = sb__root_len8(path), n = strlen(path);
  char* out;
  while (n > root && (path[n - 1] == '\\' || path[n - 1] == '/'))
    n--;
  if (n <= root)
    return NULL;
  while (n > root && path[n - 1] != '\\' && path[n - 1] != '/')
    n--;
  if (n == 0)
    return NULL;
  while (n > root && (path[n - 1] == '\\' || path[n - 1] == '/'))
    n--;
  out = sb__xmalloc(n + 1);
  memcpy(out, path, n);
  out[n] = '\0';
  return out;
}

/* One '\' between the parts however many separators of either kind each brings; an
 * empty part gives the other one unchanged. */
char* sb__path_join(const char* a, const char* b) {
  size_t la = strlen(a), lb = strlen(b);
  char* out;
  if (la == 0 || lb == 0)
    return sb__xstrdup(la == 0 ? b : a);
  while (la > 0 && (a[la - 1] == '/' || a[la - 1] == '\\'))
    la--;
  while (lb > 0 && (b[0] == '/' || b[0] == '\\')) {
    b++;
    lb--;
  }
  out = sb__xmalloc(la + lb + 2);
  memcpy(out, a, la);
  out[la] = '\\';
  memcpy(out + la + 1, b, lb + 1);
  return out;
}

/*
 * Windows refuses paths of MAX_PATH (260) characters or more, and directories of 248
 * or more, unless they are in the "\\?\" form: absolute, '\' separators only, no "."
 * or ".." left. GetFullPathNameW makes them so; a UNC path becomes "\\?\UNC\...".
 */
char* sb__path_long(const char* path) {
  WCHAR* w;
  WCHAR* full;
  WCHAR* out;
  DWORD n;
  size_t len;
  char* res;
  if (strncmp(path, "\\\\?\\", 4) == 0 || (w = sb__utf16(path)) == NULL)
    return sb__xstrdup(path);
  n = GetFullPathNameW(w, 0, NULL, NULL);
  if (n == 0) {
    free(w);
    return sb__xstrdup(path);
  }
  full = sb__xmalloc((size_t)n * sizeof(WCHAR));
  n = GetFullPathNameW(w, n, full, NULL);
  free(w);
  len = wcslen(full);
  out = sb__xmalloc((len + 8) * sizeof(WCHAR));
  if (full[0] == L'\\' && full[1] == L'\\') {
    wcscpy(out, L"\\\\?\\UNC\\");
    wcscat(out, full + 2);
  } else {
    wcscpy(out, L"\\\\?\\");
    wcscat(out, full);
  }
  free(full);
  res = n > 0 ? sb__utf8(out) : NULL;
  free(out);
  return res ? res : sb__xstrdup(path);
}

/* ---- files the service keeps to itself: the POSIX side's twins ---- */

/* The access lists of the data directory, the archive and the logs are set where the
 * directories are made; no umask to set here. */
int sb__files_policy(const char* reader_group, int apply, char* err, size_t size) {
  (void)reader_group;
  (void)apply;
  (void)err;
  (void)size;
  return 0;
}

int sb__dir_secure(const char* key, const char* shown, const char* dir, unsigned how,
                   char* err, size_t size) {
  (void)key;
  (void)shown;
  (void)dir;
  (void)how;
  (void)err;
  (void)size;
  return 0;
}

uv_file sb__file_open(const char* path, int flags) {
  uv_fs_t req;
  uv_file fd = uv_fs_open(NULL, &req, path, flags, 0644, NULL);
  uv_fs_req_cleanup(&req);
  return fd;
}

FILE* sb__file_append(const char* path) {
  return fopen(path, "ab");
}

FILE* sb__file_read(const char* path) {
  return fopen(path, "rb");
}
