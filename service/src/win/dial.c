/* win/dial.c - one attempt to open the upstream's named pipe. */
#include <windows.h>
#include <errno.h>
#include <fcntl.h>
#include <io.h>
#include <stdlib.h>
#include <string.h>

#include "../internal.h"
#include "oserror.h"

/*
 * libuv 1.44's uv_pipe_open on Windows takes a C runtime descriptor and keeps it for
 * the pipe's life, and C runtimes cap their table (msvcrt, and Wine's, at 2,048; the
 * mingw-w64 toolchain here has no UCRT, whose _setmaxstdio goes further): one per
 * client connection and one per upstream connection would exhaust it at about 1,000
 * streams (libuv's own accept needs none). So the descriptor only carries the handle
 * through uv_pipe_open: libuv is then given a duplicate of the handle, as if it had
 * been opened without a descriptor (u.fd -1: libuv closes the handle itself), and the
 * descriptor is closed. A duplicate shares the pipe's file object, and with it the
 * loop's completion port that uv_pipe_open associated. No I/O is pending yet, so
 * closing the original handle cancels nothing. These are fields of libuv 1.44's
 * uv_pipe_t on Windows (handle, u.fd); should the duplicate fail, the descriptor is
 * simply kept. A descriptor 0 to 2 (a service has no standard streams) libuv
 * duplicates itself and forgets: it is closed here too.
 *
 * Archive files do take a descriptor each (libuv's uv_fs_open): with 2,048 of them
 * open the table is full, and a connection could not even pass through. So one spare
 * descriptor (on NUL) is held, given up for the moment a handle passes while the
 * table is full, and taken again. A threadpool open may take the freed slot first: the
 * connection is then refused as before (the caller logs it).
 */
static int sb__crt_spare = -1;

static void spare_take(void) {
  if (sb__crt_spare < 0)
    sb__crt_spare = _open("NUL", _O_RDONLY | _O_BINARY);
}

int sb__pipe_adopt(uv_pipe_t* pipe, uv_os_fd_t h) {
  HANDLE dup = NULL;
  int fd, r;
  spare_take();
  fd = _open_osfhandle((intptr_t)h, _O_BINARY);
  if (fd < 0 && errno == EMFILE && sb__crt_spare >= 0) {
    _close(sb__crt_spare);
    sb__crt_spare = -1;
    fd = _open_osfhandle((intptr_t)h, _O_BINARY);
  }
  if (fd < 0) {
    CloseHandle(h);
    spare_take();
    return UV_EMFILE;
  }
  if ((r = uv_pipe_open(pipe, fd)) != 0) {
    _close(fd); /* and with it h */
    spare_take();
    return r;
  }
  if (fd <= 2) {
    _close(fd);
  } else if (pipe->handle == h && pipe->u.fd == fd &&
             DuplicateHandle(GetCurrentProcess(), h, GetCurrentProcess(), &dup, 0,
                             FALSE, DUPLICATE_SAME_ACCESS)) {
    pipe->handle = dup;
    pipe->u.fd = -1;
    _close(fd);
  }
  spare_take();
  return 0;
}

/*
 * Write access only (the protocol never reads), anonymous impersonation level so the
 * upstream cannot act as us, and overlapped, as libuv needs. ERROR_PIPE_BUSY is an
 * answer here, not something to wait on: the caller's timer retries.
 */
int64_t sb__pipe_unread(uv_pipe_t* pipe) {
  (void)pipe;
  return -1; /* a pipe's client cannot see what the server left unread */
}

int sb__upstream_dial(const char* address, uv_os_fd_t* out) {
  const char* name;
  WCHAR wpath[300];
  char path[300];
  HANDLE h;
  DWORD e;
  int kind, r;
  if (sb__address_parse(address, &kind, &name) != 0 || kind != SB__ADDR_PIPE ||
      strlen(name) + 10 > sizeof(path))
    return SB_EADDRESS;
  strcpy(path, "\\\\.\\pipe\\");
  strcat(path, name);
  if (MultiByteToWideChar(CP_UTF8, 0, path, -1, wpath, 300) == 0)
    return SB_EADDRESS;
  h = CreateFileW(wpath, GENERIC_WRITE | FILE_READ_ATTRIBUTES, 0, NULL, OPEN_EXISTING,
                  FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_ANONYMOUS,
                  NULL);
  if (h == INVALID_HANDLE_VALUE) {
    e = GetLastError();
    /* No pipe of that name is no upstream (yet). */
    r = sb__err_keep(sb__os_err(e), SB__ERR_BIT(SB_EBUSY) | SB__ERR_BIT(SB_ENOENT) |
                                        SB__ERR_BIT(SB_EACCES));
    return r == SB_ENOENT ? SB_ENOSERVER : r;
  }
  *out = h;
  return 0;
}

/* ---- the upstream's process ---- */

/*
 * The pipe's server process, by the id the pipe reports, held open so that its exit
 * stays visible (the handle is signalled once it exited, even after its id is reused).
 * Opening it may be refused (a service of another account): the caller then treats
 * the upstream as today, and says so once.
 */
int sb__upstream_proc_open(uv_os_fd_t pipe, sb__upstream_proc_t* proc) {
  HANDLE h;
  ULONG pid = 0;
  proc->pid = -1;
  proc->handle = NULL;
  if (pipe == INVALID_HANDLE_VALUE || !GetNamedPipeServerProcessId(pipe, &pid) ||
      pid == 0)
    return SB_ENOTSUP;
  h = OpenProcess(SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION, FALSE, pid);
  if (h == NULL) {
    DWORD e = GetLastError();
    /* A process that exited between the two calls: unknown, like one not ours. */
    return e == ERROR_ACCESS_DENIED ? SB_EACCES : SB_ENOTSUP;
  }
  proc->pid = (int64_t)pid;
  proc->handle = h;
  return 0;
}

int sb__upstream_proc_alive(const sb__upstream_proc_t* proc) {
  if (proc->handle == NULL)
    return SB_ENOTSUP;
  switch (WaitForSingleObject((HANDLE)proc->handle, 0)) {
  case WAIT_TIMEOUT:
    return 1;
  case WAIT_OBJECT_0:
    return 0;
  default:
    return SB_EIO;
  }
}

void sb__upstream_proc_close(sb__upstream_proc_t* proc) {
  if (proc->handle != NULL)
    CloseHandle((HANDLE)proc->handle);
  proc->handle = NULL;
  proc->pid = -1;
}

/* ---- watching for the upstream to appear: WaitNamedPipeW on a thread ---- */

/*
 * While some stream found the upstream's pipe absent, the thread asks every 100 ms
 * whether the pipe exists, and wakes the loop once when it does. WaitNamedPipeW with a
 * 1 ms timeout says so: it fails with ERROR_FILE_NOT_FOUND only while no instance
 * exists; a free instance (TRUE) or busy ones (ERROR_SEM_TIMEOUT) mean it is there.
 * Whether a dial then succeeds is the streams' business: a busy upstream, or one whose
 * access list refuses us, is not watched (the dialer says waiting only when absent), so
 * such dials follow their own jittered backoff instead of all being woken together
 * each time an instance frees.
 */
typedef struct {
  uv_async_t async;
  uv_thread_t thread;
  WCHAR wpath[300];
  volatile LONG waiting;
  volatile LONG quit;
  void (*appeared)(void* arg);
  void* arg;
} sb__watch_t;

static void watch_thread(void* arg) {
  sb__watch_t* w = arg;
  while (!w->quit) {
    DWORD e;
    if (w->waiting &&
        (WaitNamedPipeW(w->wpath, 1) ||
         ((e = GetLastError()) != ERROR_FILE_NOT_FOUND && e != ERROR_PATH_NOT_FOUND))) {
      InterlockedExchange(&w->waiting, 0);
      uv_async_send(&w->async);
    }
    Sleep(100);
  }
}

static void on_appeared(uv_async_t* a) {
  sb__watch_t* w = a->data;
  w->appeared(w->arg);
}

static void on_watch_closed(uv_handle_t* h) {
  free(h->data);
}

void* sb__upstream_watch_start(uv_loop_t* loop, const char* address,
                               void (*appeared)(void* arg), void* arg) {
  const char* name;
  char path[300];
  sb__watch_t* w;
  int kind;
  if (sb__address_parse(address, &kind, &name) != 0 || kind != SB__ADDR_PIPE ||
      strlen(name) + 10 > sizeof(path))
    return NULL;
  w = sb__xcalloc(1, sizeof(*w));
  strcpy(path, "\\\\.\\pipe\\");
  strcat(path, name);
  MultiByteToWideChar(CP_UTF8, 0, path, -1, w->wpath, 300);
  w->appeared = appeared;
  w->arg = arg;
  uv_async_init(loop, &w->async, on_appeared);
  w->async.data = w;
  uv_unref((uv_handle_t*)&w->async);
  if (uv_thread_create(&w->thread, watch_thread, w) != 0) {
    uv_close((uv_handle_t*)&w->async, on_watch_closed);
    return NULL;
  }
  return w;
}

void sb__upstream_watch_waiting(void* watch) {
  sb__watch_t* w = watch;
  if (w != NULL)
    InterlockedExchange(&w->waiting, 1);
}

void sb__upstream_watch_stop(void* watch) {
  sb__watch_t* w = watch;
  if (w == NULL)
    return;
  InterlockedExchange(&w->quit, 1);
  uv_thread_join(&w->thread);
  uv_close((uv_handle_t*)&w->async, on_watch_closed);
}
