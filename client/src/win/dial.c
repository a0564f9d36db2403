/* win/dial.c - the client's named pipe dialer. */
#include <windows.h>
#include <stdlib.h>
#include <string.h>

#include "../platform.h"
#include "../protocol.h"

void sb__sleep_ms(uint32_t ms) {
  Sleep(ms);
}

uint64_t sb__now_ms(void) {
  return GetTickCount64();
}

static int sb__win_to_sb(DWORD e) {
  switch (e) {
  case ERROR_FILE_NOT_FOUND:
  case ERROR_PATH_NOT_FOUND:
  case ERROR_BAD_PATHNAME:
    return SB_ENOSERVER;
  case ERROR_ACCESS_DENIED:
    return SB_EACCES;
  case ERROR_PIPE_BUSY:
  case ERROR_SEM_TIMEOUT:
    return SB_EBUSY;
  case ERROR_NO_DATA:
  case ERROR_BROKEN_PIPE:
  case ERROR_PIPE_NOT_CONNECTED:
    return SB_EPIPE;
  case ERROR_NOT_ENOUGH_MEMORY:
  case ERROR_OUTOFMEMORY:
    return SB_ENOMEM;
  case ERROR_INVALID_NAME:
    return SB_EADDRESS;
  default:
    return SB_EIO;
  }
}

/* "\\.\pipe\" + name as UTF-16; NULL on failure. */
static WCHAR* sb__pipe_path(const char* name) {
  static const char prefix[] = "\\\\.\\pipe\\";
  size_t plen = sizeof(prefix) - 1, nlen = strlen(name);
  char* utf8 = malloc(plen + nlen + 1);
  WCHAR* wide = NULL;
  int n;
  if (utf8 == NULL)
    return NULL;
  memcpy(utf8, prefix, plen);
  memcpy(utf8 + plen, name, nlen + 1);
  n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, utf8, -1, NULL, 0);
  if (n > 0 && (wide = malloc((size_t)n * sizeof(WCHAR))) != NULL &&
      MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, utf8, -1, wide, n) != n) {
    free(wide);
    wide = NULL;
  }
  free(utf8);
  return wide;
}

/*
 * Write-only, anonymous impersonation level (the server learns nothing it could
 * impersonate us with), never overlapped (so the handle can be a child's stdout).
 * While every pipe instance is busy, WaitNamedPipeW sleeps until one is free or the
 * current backoff step ends, whichever is first.
 */
int sb__dial(int kind, const char* path, uint32_t timeout_ms, int for_process,
             sb_os_handle_t* out) {
  WCHAR* wpath;
  HANDLE h;
  DWORD e;
  uint64_t start = sb__now_ms();
  uint32_t delay = SB__DIAL_BACKOFF_FIRST_MS;
  if (kind != SB__ADDR_PIPE)
    return SB_ENOTSUP;
  if ((wpath = sb__pipe_path(path)) == NULL)
    return SB_EADDRESS;
  for (;;) {
    h = CreateFileW(wpath, GENERIC_WRITE, 0, NULL, OPEN_EXISTING,
                    SECURITY_SQOS_PRESENT | SECURITY_ANONYMOUS, NULL);
    if (h != INVALID_HANDLE_VALUE)
      break;
    e = GetLastError();
    if (e != ERROR_PIPE_BUSY) {
      free(wpath);
      return sb__win_to_sb(e);
    }
    uint64_t waited = sb__now_ms() - start;
    if (waited >= timeout_ms) {
      free(wpath);
      return SB_EBUSY;
    }
    uint64_t left = timeout_ms - waited;
    DWORD step = (DWORD)(left < delay ? left : delay);
    if (!WaitNamedPipeW(wpath, step ? step : 1) && GetLastError() != ERROR_SEM_TIMEOUT)
      sb__sleep_ms(step);
    delay = delay * 2 > SB__DIAL_BACKOFF_CAP_MS ? SB__DIAL_BACKOFF_CAP_MS : delay * 2;
  }
  free(wpath);
  if (for_process &&
      !SetHandleInformation(h, HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT)) {
    e = GetLastError();
    CloseHandle(h);
    return sb__win_to_sb(e);
  }
  *out = h;
  return 0;
}

int sb__handle_write(sb_os_handle_t h, const void* buf, size_t len) {
  const char* p = buf;
  while (len > 0) {
    DWORD chunk = len > 0x10000000u ? 0x10000000u : (DWORD)len, n = 0;
    if (!WriteFile(h, p, chunk, &n, NULL))
      return sb__win_to_sb(GetLastError());
    p += n;
    len -= n;
  }
  return 0;
}

void sb__handle_close(sb_os_handle_t h) {
  if (h != NULL && h != INVALID_HANDLE_VALUE)
    CloseHandle(h);
}

/*
 * FlushFileBuffers on a pipe returns once the server has read everything written, so
 * a writer that exits right after knows its stream arrived; but it blocks for as long
 * as the server does not read. So it runs on a thread of its own, and at the deadline
 * the caller cancels it (CancelSynchronousIo). A cancel can come before the thread has
 * entered FlushFileBuffers, when it finds nothing to cancel: the state (under lock)
 * says so, and the cancel is repeated until the thread is out. Should the thread still
 * not leave (a cancel that never takes), the caller gives up waiting after
 * SB__FLUSH_CANCEL_MS: the thread then frees what they share, the last one out.
 */
#define SB__FLUSH_CANCEL_MS 5000u

enum { SB__FLUSH_QUEUED, SB__FLUSH_RUNNING, SB__FLUSH_DONE, SB__FLUSH_CANCELLED };

typedef struct {
  HANDLE pipe;
  SRWLOCK lock;
  int state;
  DWORD err; /* FlushFileBuffers' error, 0 when it succeeded */
  volatile LONG refs;
} sb__flush_t;

static void flush_unref(sb__flush_t* f) {
  if (InterlockedDecrement(&f->refs) == 0)
    free(f);
}

static DWORD WINAPI flush_thread(LPVOID arg) {
  sb__flush_t* f = arg;
  BOOL ok = FALSE;
  DWORD e = ERROR_OPERATION_ABORTED;
  int run;
  AcquireSRWLockExclusive(&f->lock);
  run = f->state == SB__FLUSH_QUEUED;
  if (run)
    f->state = SB__FLUSH_RUNNING;
  ReleaseSRWLockExclusive(&f->lock);
  if (run) {
    ok = FlushFileBuffers(f->pipe);
    e = ok ? 0 : GetLastError();
  }
  AcquireSRWLockExclusive(&f->lock);
  f->err = e;
  f->state = SB__FLUSH_DONE;
  ReleaseSRWLockExclusive(&f->lock);
  flush_unref(f);
  return 0;
}

int sb__handle_flush(sb_os_handle_t h, uint32_t timeout_ms) {
  sb__flush_t* f;
  HANDLE t;
  uint64_t start;
  int state, timed_out = 0;
  DWORD e;
  if (h == NULL || h == INVALID_HANDLE_VALUE)
    return SB_EINVAL;
  if ((f = calloc(1, sizeof(*f))) == NULL)
    return SB_ENOMEM;
  f->pipe = h;
  f->state = SB__FLUSH_QUEUED;
  f->refs = 2;
  InitializeSRWLock(&f->lock);
  t = CreateThread(NULL, 64 * 1024, flush_thread, f, STACK_SIZE_PARAM_IS_A_RESERVATION,
                   NULL);
  if (t == NULL) {
    e = GetLastError();
    free(f);
    return e == ERROR_NOT_ENOUGH_MEMORY || e == ERROR_OUTOFMEMORY ? SB_ENOMEM : SB_EIO;
  }
  if (WaitForSingleObject(t, timeout_ms) != WAIT_OBJECT_0) {
    timed_out = 1;
    start = sb__now_ms();
    do {
      AcquireSRWLockExclusive(&f->lock);
      if (f->state == SB__FLUSH_QUEUED)
        f->state = SB__FLUSH_CANCELLED;
      else if (f->state == SB__FLUSH_RUNNING)
        CancelSynchronousIo(t);
      ReleaseSRWLockExclusive(&f->lock);
    } while (WaitForSingleObject(t, 10) != WAIT_OBJECT_0 &&
             sb__now_ms() - start < SB__FLUSH_CANCEL_MS);
  }
  CloseHandle(t);
  AcquireSRWLockExclusive(&f->lock);
  state = f->state;
  e = f->err;
  ReleaseSRWLockExclusive(&f->lock);
  flush_unref(f);
  if (state != SB__FLUSH_DONE)
    return SB_ETIMEDOUT; /* the thread never left: it frees f on its way out */
  if (e == 0)
    return 0; /* done, even if just past the deadline */
  if (timed_out && e == ERROR_OPERATION_ABORTED)
    return SB_ETIMEDOUT;
  return sb__win_to_sb(e);
}

/* A pipe has no half-close: the flush is the whole answer (a server that closed
 * without reading fails it). */
int sb__handle_finish(sb_os_handle_t h, uint32_t timeout_ms) {
  return sb__handle_flush(h, timeout_ms);
}
