/* win/dial.c - one attempt to open the upstream's named pipe. */
#include <windows.h>
#include <fcntl.h>
#include <io.h>
#include <stdlib.h>
#include <string.h>

#include "../internal.h"

/*
 * Write access only (the protocol never reads), anonymous impersonation level so the
 * upstream cannot act as us, and overlapped, as libuv needs. ERROR_PIPE_BUSY is an
 * answer here, not something to wait on: the caller's timer retries.
 */
int64_t sb__pipe_unread(uv_pipe_t* pipe) {
  (void)pipe;
  return -1; /* a pipe's client cannot see what the server left unread */
}

int sb__upstream_dial(const char* address, uv_file* out) {
  const char* name;
  WCHAR wpath[300];
  char path[300];
  HANDLE h;
  DWORD e;
  int kind, fd;
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
    switch (e) {
    case ERROR_PIPE_BUSY:
      return SB_EBUSY;
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND:
      return SB_ENOSERVER;
    case ERROR_ACCESS_DENIED:
      return SB_EACCES;
    default:
      return SB_EIO;
    }
  }
  fd = _open_osfhandle((intptr_t)h, _O_BINARY);
  if (fd < 0) {
    CloseHandle(h);
    return SB_EIO;
  }
  *out = fd;
  return 0;
}

/* ---- the upstream's process ---- */

/*
 * The pipe's server process, by the id the pipe reports, held open so that its exit
 * stays visible (the handle is signalled once it exited, even after its id is reused).
 * Opening it may be refused (a service of another account): the caller then treats
 * the upstream as today, and says so once.
 */
int sb__upstream_proc_open(uv_file fd, sb__upstream_proc_t* proc) {
  HANDLE pipe = (HANDLE)_get_osfhandle(fd), h;
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
