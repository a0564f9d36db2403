/* win/lock.c - one service per data directory: a lock on DATA_DIR\streambrokerd.lock.
 */
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../internal.h"
#include "oserror.h"

struct sb__lock_s {
  HANDLE file;
};

/* The byte locked: far past the text, so that a second instance can still read who
 * holds the lock (a locked range cannot be read through another handle). */
#define SB__LOCK_OFFSET_HIGH 1u

/* A write-protected medium refuses the lock as a permission would. */
static int lock_error(DWORD e) {
  if (e == ERROR_WRITE_PROTECT)
    return SB_EACCES;
  return sb__err_keep(sb__os_err(e), SB__ERR_BIT(SB_EACCES) | SB__ERR_BIT(SB_ENOENT) |
                                         SB__ERR_BIT(SB_ENOSPC));
}

static void read_holder(HANDLE h, char* holder, size_t size) {
  OVERLAPPED ov;
  DWORD n = 0;
  char* nl;
  memset(&ov, 0, sizeof(ov));
  if (!ReadFile(h, holder, (DWORD)(size - 1), &n, &ov))
    n = 0;
  holder[n] = '\0';
  if ((nl = strpbrk(holder, "\r\n")) != NULL)
    *nl = '\0';
  if (holder[0] == '\0')
    snprintf(holder, size, "a process that has not said who it is yet");
}

/*
 * LockFileEx holds until the handle closes or the process ends, however it ends.
 * FILE_FLAG_OPEN_REPARSE_POINT opens a link planted in the data directory as itself,
 * and a file that is not a plain file is refused.
 */
int sb__lock_take(const char* data_dir, const char* who, sb__lock_t** out, char* holder,
                  size_t holder_size) {
  char* path = sb__path_join(data_dir, SB__LOCK_FILE);
  char* longp = sb__path_long(path);
  WCHAR* wide = NULL;
  HANDLE h = INVALID_HANDLE_VALUE;
  BY_HANDLE_FILE_INFORMATION info;
  OVERLAPPED ov;
  char text[512];
  DWORD n;
  int len, r = 0;
  *out = NULL;
  holder[0] = '\0';
  len = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, longp, -1, NULL, 0);
  if (len <= 0) {
    r = SB_EINVAL;
    goto done;
  }
  wide = sb__xmalloc((size_t)len * sizeof(WCHAR));
  MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, longp, -1, wide, len);
  h = CreateFileW(wide, GENERIC_READ | GENERIC_WRITE,
                  FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL,
                  OPEN_ALWAYS, FILE_ATTRIBUTE_NORMAL | FILE_FLAG_OPEN_REPARSE_POINT,
                  NULL);
  if (h == INVALID_HANDLE_VALUE) {
    SB_LOG_E("broker", "data_dir lock %s: CreateFileW: error %lu", path,
             GetLastError());
    r = lock_error(GetLastError());
    goto done;
  }
  if (!GetFileInformationByHandle(h, &info) ||
      (info.dwFileAttributes &
       (FILE_ATTRIBUTE_DIRECTORY | FILE_ATTRIBUTE_REPARSE_POINT))) {
    SB_LOG_E("broker", "data_dir lock %s: not a plain file", path);
    r = SB_EEXIST;
    goto done;
  }
  memset(&ov, 0, sizeof(ov));
  ov.OffsetHigh = SB__LOCK_OFFSET_HIGH;
  if (!LockFileEx(h, LOCKFILE_EXCLUSIVE_LOCK | LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0,
                  &ov)) {
    DWORD e = GetLastError();
    if (e == ERROR_LOCK_VIOLATION || e == ERROR_IO_PENDING) {
      read_holder(h, holder, holder_size);
      r = SB_EBUSY;
    } else {
      SB_LOG_E("broker", "data_dir lock %s: LockFileEx: error %lu", path, e);
      r = lock_error(e);
    }
    goto done;
  }
  snprintf(text, sizeof(text), "pid %lu, %s\r\n", GetCurrentProcessId(), who);
  memset(&ov, 0, sizeof(ov));
  if (!SetEndOfFile(h) || !WriteFile(h, text, (DWORD)strlen(text), &n, &ov))
    SB_LOG_W("broker", "data_dir lock %s: writing who holds it: error %lu", path,
             GetLastError());
  *out = sb__xcalloc(1, sizeof(**out));
  (*out)->file = h;
  h = INVALID_HANDLE_VALUE;
done:
  if (h != INVALID_HANDLE_VALUE)
    CloseHandle(h);
  free(wide);
  free(longp);
  free(path);
  return r;
}

void sb__lock_release(sb__lock_t* lock) {
  if (lock == NULL)
    return;
  CloseHandle(lock->file);
  free(lock);
}
