/* win/dial.c - the client's named pipe dialer, and its check of the pipe's server. */
#include <windows.h>
#include <aclapi.h>
#include <sddl.h>
#include <stdlib.h>
#include <string.h>

#include "../oserror.h"
#include "../platform.h"
#include "../protocol.h"
#include "pipe.h"

void sb__sleep_ms(uint32_t ms) {
  Sleep(ms);
}

uint64_t sb__now_ms(void) {
  return GetTickCount64();
}

/* A dial's errors: no pipe of that name is no server, a malformed name a bad
 * address, a wait that timed out a busy server; what a dial cannot tell its caller
 * more about is an I/O error. */
static int sb__win_to_sb(DWORD e) {
  int r;
  switch (e) {
  case ERROR_BAD_PATHNAME:
    return SB_ENOSERVER;
  case ERROR_INVALID_NAME:
    return SB_EADDRESS;
  case ERROR_SEM_TIMEOUT:
    return SB_EBUSY;
  default:
    r = sb__err_keep(sb__os_err(e), SB__ERR_BIT(SB_ENOENT) | SB__ERR_BIT(SB_EACCES) |
                                        SB__ERR_BIT(SB_EBUSY) | SB__ERR_BIT(SB_EPIPE) |
                                        SB__ERR_BIT(SB_ENOMEM));
    return r == SB_ENOENT ? SB_ENOSERVER : r;
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

/* A copy of one of a token's facts (TokenUser, TokenGroups), or NULL. */
static void* token_info(HANDLE tok, TOKEN_INFORMATION_CLASS c) {
  DWORD n = 0;
  void* p;
  GetTokenInformation(tok, c, NULL, 0, &n);
  if (n == 0 || (p = malloc(n)) == NULL)
    return NULL;
  if (!GetTokenInformation(tok, c, p, n, &n)) {
    free(p);
    return NULL;
  }
  return p;
}

/* The SIDs a client trusts as its pipe's server; each NULL when unknown. */
typedef struct {
  BYTE system[SECURITY_MAX_SID_SIZE];
  BYTE admins[SECURITY_MAX_SID_SIZE];
  BYTE service[SECURITY_MAX_SID_SIZE]; /* NT SERVICE\StreamBroker */
  PSID self;                           /* the client's user, or the test's SID */
  int has_service;
  TOKEN_USER* own; /* self's storage when it is the client's user */
} sb__trust_t;

static INIT_ONCE sb__service_once = INIT_ONCE_STATIC_INIT;
static BYTE sb__service_sid[SECURITY_MAX_SID_SIZE];
static int sb__service_known;

static BOOL CALLBACK service_sid_init(PINIT_ONCE once, PVOID arg, PVOID* ctx) {
  DWORD n = SECURITY_MAX_SID_SIZE, dn = 64;
  WCHAR domain[64];
  SID_NAME_USE use;
  (void)once;
  (void)arg;
  (void)ctx;
  sb__service_known = LookupAccountNameW(NULL, L"NT SERVICE\\StreamBroker",
                                         sb__service_sid, &n, domain, &dn, &use) != 0;
  return TRUE;
}

static int trust_init(sb__trust_t* t) {
  DWORD n = SECURITY_MAX_SID_SIZE;
  WCHAR test[256];
  HANDLE tok;
  memset(t, 0, sizeof(*t));
  if (!CreateWellKnownSid(WinLocalSystemSid, NULL, t->system, &n))
    return SB_EIO;
  n = SECURITY_MAX_SID_SIZE;
  if (!CreateWellKnownSid(WinBuiltinAdministratorsSid, NULL, t->admins, &n))
    return SB_EIO;
  /* Known to Windows once the service is installed (any service has its SID); looked
   * up once per process (a call to the security authority). */
  InitOnceExecuteOnce(&sb__service_once, service_sid_init, NULL, NULL);
  t->has_service = sb__service_known;
  if (t->has_service)
    memcpy(t->service, sb__service_sid, SECURITY_MAX_SID_SIZE);
  n = GetEnvironmentVariableW(L"" SB_ENV_TEST_SERVER_SID, test, 256);
  if (n > 0 && n < 256) {
    PSID sid = NULL;
    if (!ConvertStringSidToSidW(test, &sid))
      return SB_EINVAL;
    t->self = sid; /* LocalFree'd in trust_free */
    return 0;
  }
  if (OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &tok)) {
    t->own = token_info(tok, TokenUser);
    CloseHandle(tok);
  }
  if (t->own == NULL)
    return SB_ENOMEM;
  t->self = t->own->User.Sid;
  return 0;
}

static void trust_free(sb__trust_t* t) {
  if (t->own != NULL)
    free(t->own);
  else if (t->self != NULL)
    LocalFree(t->self);
}

static int trusted(const sb__trust_t* t, PSID sid, int admins_too) {
  return EqualSid(sid, (PSID)t->system) || EqualSid(sid, t->self) ||
         (t->has_service && EqualSid(sid, (PSID)t->service)) ||
         (admins_too && EqualSid(sid, (PSID)t->admins));
}

/*
 * The server process's token, when we may read it (our own user's processes; any
 * process for an administrator): its user, or its service SID among its groups.
 * 1 trusted, 0 not, -1 unreadable.
 */
static int check_token(HANDLE pipe, const sb__trust_t* t) {
  ULONG pid = 0;
  HANDLE proc, tok = NULL;
  TOKEN_USER* user = NULL;
  TOKEN_GROUPS* groups = NULL;
  DWORD i;
  int r = -1;
  if (!GetNamedPipeServerProcessId(pipe, &pid) || pid == 0)
    return -1;
  if ((proc = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, pid)) == NULL)
    return -1;
  if (OpenProcessToken(proc, TOKEN_QUERY, &tok) &&
      (user = token_info(tok, TokenUser)) != NULL) {
    r = trusted(t, user->User.Sid, 0);
    if (!r && t->has_service && (groups = token_info(tok, TokenGroups)) != NULL) {
      for (i = 0; i < groups->GroupCount; i++)
        if ((groups->Groups[i].Attributes & SE_GROUP_ENABLED) &&
            EqualSid(groups->Groups[i].Sid, (PSID)t->service))
          r = 1;
    }
  }
  free(groups);
  free(user);
  if (tok != NULL)
    CloseHandle(tok);
  CloseHandle(proc);
  return r;
}

/* The pipe's owner: 1 trusted, 0 not, -1 unreadable. */
static int check_owner(HANDLE pipe, const sb__trust_t* t) {
  PSECURITY_DESCRIPTOR sd = NULL;
  PSID owner = NULL;
  int r = -1;
  if (GetSecurityInfo(pipe, SE_KERNEL_OBJECT, OWNER_SECURITY_INFORMATION, &owner, NULL,
                      NULL, NULL, &sd) == ERROR_SUCCESS &&
      owner != NULL)
    r = trusted(t, owner, 1);
  LocalFree(sd);
  return r;
}

/*
 * Someone who creates the pipe's name while the service is down (a restart, an
 * upgrade) would receive what clients write: before writing, the client checks who
 * serves it. The process token first; a client that may not read it (a
 * non-administrator, and the service's process) checks the pipe's owner, which a
 * squatter cannot set to SYSTEM, Administrators or the service SID.
 */
int sb__pipe_check_server(HANDLE h) {
  sb__trust_t t;
  int r = trust_init(&t);
  if (r == 0) {
    r = check_token(h, &t);
    if (r < 0)
      r = check_owner(h, &t);
    r = r == 1 ? 0 : SB_ESERVER;
  }
  trust_free(&t);
  return r;
}

/*
 * Write access without FILE_APPEND_DATA (on a pipe, FILE_CREATE_PIPE_INSTANCE, which
 * GENERIC_WRITE holds and the pipe grants clients no longer), with READ_CONTROL for
 * the owner check; anonymous impersonation level (the server learns nothing it could
 * impersonate us with), never overlapped (so the handle can be a child's stdout).
 * While every pipe instance is busy, WaitNamedPipeW sleeps until one is free or the
 * current backoff step ends, whichever is first. The handle is never inheritable,
 * not even for a process: a child started meanwhile by another thread would hold
 * the stream open (see sb_stream_open_for_process).
 */
int sb__dial(int kind, const char* path, uint32_t timeout_ms, int for_process,
             sb_os_handle_t* out) {
  WCHAR* wpath;
  HANDLE h;
  DWORD e;
  uint64_t start = sb__now_ms();
  uint32_t delay = SB__DIAL_BACKOFF_FIRST_MS;
  int r;
  (void)for_process;
  if (kind != SB__ADDR_PIPE)
    return SB_ENOTSUP;
  if ((wpath = sb__pipe_path(path)) == NULL)
    return SB_EADDRESS;
  for (;;) {
    h = CreateFileW(wpath, SB__PIPE_CLIENT_ACCESS, 0, NULL, OPEN_EXISTING,
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
  if ((r = sb__pipe_check_server(h)) != 0) {
    CloseHandle(h);
    return r;
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
    return sb__err_keep(sb__os_err(e), SB__ERR_BIT(SB_ENOMEM));
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
