/*
 * win/listener.c - the control and admin pipes: a pool of named pipe instances of our
 * own, each waiting for a client in an overlapped ConnectNamedPipe; the pipe's name;
 * the client's process id. The pipe's security descriptor is win/pipesec.c's.
 *
 * Why not libuv's uv_listen: libuv 1.44 keeps 4 instances, and when a client connected
 * to a fresh instance, wrote and closed before libuv's ConnectNamedPipe on it (a
 * short-lived writer in a burst), ConnectNamedPipe says ERROR_NO_DATA and libuv closes
 * the instance, and with it what the client wrote: the stream vanishes, and nobody
 * says so. The named pipe file system keeps what a closed client wrote readable by the
 * server until it is read (checked under Wine: ReadFile returns it, then
 * ERROR_BROKEN_PIPE), so here such an instance is handed over like any connected one
 * and its stream is read to its end.
 *
 * Each instance has an event for its ConnectNamedPipe, waited on in the thread pool
 * (RegisterWaitForSingleObject); the wait's callback queues the instance and wakes the
 * loop (uv_async_send). On the loop thread a connected instance is replaced by a new
 * one first (so the name never lacks a waiting instance), then handed over as a
 * uv_pipe_t (uv_pipe_open, which takes a C runtime descriptor in libuv 1.44).
 */
#include <windows.h>
#include <aclapi.h>
#include <fcntl.h>
#include <io.h>
#include <sddl.h>
#include <stdlib.h>
#include <string.h>

#include "../internal.h"
#include "pipesec.h"

/* The pipes' buffers, as libuv's: what a client may write before the service reads. */
#define SB__PIPE_BUFFER 65536
/* After a failed CreateNamedPipeW, the pool is filled again this much later. */
#define SB__REFILL_RETRY_MS 1000
/* Losses logged one by one per minute; more are summed up in one line. */
#define SB__LOST_LOG_BURST 20
#define SB__LOST_LOG_WINDOW_MS 60000

typedef enum {
  SB__INST_LISTENING, /* ConnectNamedPipe pending; its wait registered */
  SB__INST_SIGNALLED, /* ConnectNamedPipe finished (its wait ran): queued */
  SB__INST_CONNECTED  /* a client came at once (ERROR_PIPE_CONNECTED, ERROR_NO_DATA) */
} sb__inst_state_t;

typedef struct sb__inst_s {
  struct sb__listener_s* l;
  HANDLE pipe;
  OVERLAPPED ov; /* ov.hEvent: set when ConnectNamedPipe finishes */
  HANDLE wait;   /* RegisterWaitForSingleObject's, or NULL */
  sb__inst_state_t state;
  DWORD result;                   /* CONNECTED: ERROR_SUCCESS or ERROR_NO_DATA */
  struct sb__inst_s *prev, *next; /* the listener's instances */
  struct sb__inst_s* queued;      /* the queue of finished instances */
} sb__inst_t;

struct sb__listener_s {
  uv_loop_t* loop;
  uv_async_t async;  /* the thread pool's waits wake the loop */
  uv_timer_t refill; /* a failed CreateNamedPipeW is retried */
  int pending_closes;
  WCHAR path[300];
  char* what;
  sb__pipesec_t sec; /* every instance's security attributes (win/pipesec.c) */
  int want;          /* instances to keep waiting */
  int waiting;       /* instances created and not yet handed over */
  sb__inst_t* insts;
  /* Finished instances, in the order their waits ran; under lock. */
  SRWLOCK lock;
  sb__inst_t *queue_head, *queue_tail;
  HANDLE handing; /* the connection the callback may accept, or NULL */
  int stopping;
  sb__listener_cb cb;
  void* arg;
  sb__counters_t* counters;
  uint64_t lost_window_start, lost_logged, lost_unlogged;
  void (*closed)(void* arg);
  void* closed_arg;
};

/* A connection dropped unread: counted, and logged (up to SB__LOST_LOG_BURST lines a
 * minute; the rest are summed up once the minute is over). */
static void lost(sb__listener_t* l, const char* why, DWORD err) {
  uint64_t now = uv_now(l->loop);
  if (l->counters)
    l->counters->accept_lost++;
  if (now - l->lost_window_start >= SB__LOST_LOG_WINDOW_MS) {
    if (l->lost_unlogged > 0)
      SB_LOG_E("listener",
               "%s: %llu more connections dropped unread in the last minute", l->what,
               (unsigned long long)l->lost_unlogged);
    l->lost_window_start = now;
    l->lost_logged = l->lost_unlogged = 0;
  }
  if (l->lost_logged++ < SB__LOST_LOG_BURST)
    SB_LOG_E("listener", "%s: a connection was dropped unread: %s (error %lu)", l->what,
             why, (unsigned long)err);
  else
    l->lost_unlogged++;
}

/* Thread pool: an instance's ConnectNamedPipe finished. Queued for the loop; nothing
 * of the instance is touched after the lock is released (the loop may free it). */
/* Hands an instance whose connect finished to the loop thread (any thread). */
static void inst_queue(sb__listener_t* l, sb__inst_t* inst, int state) {
  AcquireSRWLockExclusive(&l->lock);
  inst->state = state;
  inst->queued = NULL;
  if (l->queue_tail)
    l->queue_tail->queued = inst;
  else
    l->queue_head = inst;
  l->queue_tail = inst;
  ReleaseSRWLockExclusive(&l->lock);
  uv_async_send(&l->async);
}

static VOID CALLBACK on_signalled(PVOID ctx, BOOLEAN timed_out) {
  sb__inst_t* inst = ctx;
  sb__listener_t* l = inst->l;
  (void)timed_out;
  inst_queue(l, inst, SB__INST_SIGNALLED);
}

/* Closes an instance's handles (the wait first: its callback is over) and frees it.
 * Its ConnectNamedPipe must be over too (finished, or cancelled and waited for). */
static void inst_free(sb__listener_t* l, sb__inst_t* inst) {
  if (inst->wait != NULL)
    UnregisterWaitEx(inst->wait, INVALID_HANDLE_VALUE);
  if (inst->pipe != INVALID_HANDLE_VALUE)
    CloseHandle(inst->pipe);
  if (inst->ov.hEvent != NULL)
    CloseHandle(inst->ov.hEvent);
  if (inst->prev)
    inst->prev->next = inst->next;
  else if (l->insts == inst)
    l->insts = inst->next;
  if (inst->next)
    inst->next->prev = inst->prev;
  l->waiting--;
  free(inst);
}

/*
 * One more instance waiting for a client. A client may come between CreateNamedPipeW
 * and ConnectNamedPipe: ERROR_PIPE_CONNECTED, or ERROR_NO_DATA when it already wrote
 * and closed; either is a connection, queued for the loop as a finished wait is.
 * first: the pipe's first instance (FILE_FLAG_FIRST_PIPE_INSTANCE). Returns 0 or the
 * Win32 error of the failed call (logged).
 */
static DWORD inst_new(sb__listener_t* l, int first) {
  sb__inst_t* inst = sb__xcalloc(1, sizeof(*inst));
  DWORD e, n;
  inst->l = l;
  inst->pipe = CreateNamedPipeW(
      l->path,
      PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED |
          (first ? FILE_FLAG_FIRST_PIPE_INSTANCE | l->sec.first_access : 0),
      PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
      PIPE_UNLIMITED_INSTANCES, SB__PIPE_BUFFER, SB__PIPE_BUFFER, 0, &l->sec.sa);
  if (inst->pipe == INVALID_HANDLE_VALUE) {
    e = GetLastError();
    free(inst);
    if (!first || e != ERROR_ACCESS_DENIED)
      SB_LOG_E("listener", "%s: CreateNamedPipeW: error %lu", l->what,
               (unsigned long)e);
    return e;
  }
  inst->next = l->insts;
  if (l->insts)
    l->insts->prev = inst;
  l->insts = inst;
  l->waiting++;
  if ((inst->ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL)) == NULL) {
    e = GetLastError();
    SB_LOG_E("listener", "%s: CreateEventW: error %lu", l->what, (unsigned long)e);
    inst_free(l, inst);
    return e;
  }
  if (ConnectNamedPipe(inst->pipe, &inst->ov)) {
    e = ERROR_PIPE_CONNECTED;
  } else {
    e = GetLastError();
  }
  switch (e) {
  case ERROR_IO_PENDING:
    inst->state = SB__INST_LISTENING;
    /* WT_EXECUTEINWAITTHREAD: the callback only queues, so it may run right there. */
    if (!RegisterWaitForSingleObject(&inst->wait, inst->ov.hEvent, on_signalled, inst,
                                     INFINITE,
                                     WT_EXECUTEONLYONCE | WT_EXECUTEINWAITTHREAD)) {
      e = GetLastError();
      inst->wait = NULL;
      SB_LOG_E("listener", "%s: RegisterWaitForSingleObject: error %lu", l->what,
               (unsigned long)e);
      /* Over before its OVERLAPPED goes; a client that came first is lost. */
      CancelIoEx(inst->pipe, &inst->ov);
      if (GetOverlappedResult(inst->pipe, &inst->ov, &n, TRUE) ||
          GetLastError() == ERROR_PIPE_CONNECTED || GetLastError() == ERROR_NO_DATA)
        lost(l, "its instance could not be waited on", e);
      inst_free(l, inst);
      return e;
    }
    return 0;
  case ERROR_PIPE_CONNECTED:
  case ERROR_NO_DATA:
    inst->result = e == ERROR_NO_DATA ? ERROR_NO_DATA : ERROR_SUCCESS;
    inst_queue(l, inst, SB__INST_CONNECTED);
    return 0;
  default:
    SB_LOG_E("listener", "%s: ConnectNamedPipe: error %lu", l->what, (unsigned long)e);
    inst_free(l, inst);
    return e;
  }
}

static void on_refill(uv_timer_t* t);

/* Tops the pool up to its size; on failure, tries again after SB__REFILL_RETRY_MS. */
static void refill(sb__listener_t* l) {
  while (!l->stopping && l->waiting < l->want) {
    if (inst_new(l, 0) != 0) {
      if (!uv_is_active((uv_handle_t*)&l->refill))
        uv_timer_start(&l->refill, on_refill, SB__REFILL_RETRY_MS, 0);
      return;
    }
  }
}

static void on_refill(uv_timer_t* t) {
  refill(t->data);
}

/* The result of a finished ConnectNamedPipe: ERROR_SUCCESS when a client is there (or
 * was: it may have closed since, its data still to be read), else the error. */
static DWORD inst_result(sb__inst_t* inst) {
  DWORD n;
  if (inst->state == SB__INST_CONNECTED)
    return ERROR_SUCCESS;
  if (GetOverlappedResult(inst->pipe, &inst->ov, &n, FALSE))
    return ERROR_SUCCESS;
  n = GetLastError();
  return n == ERROR_PIPE_CONNECTED || n == ERROR_NO_DATA ? ERROR_SUCCESS : n;
}

/* A finished instance: replaced in the pool, then handed over to the callback. */
static void inst_done(sb__listener_t* l, sb__inst_t* inst) {
  DWORD e;
  if (inst->wait != NULL) {
    /* The wait ran once (WT_EXECUTEONLYONCE); this frees it, after its callback. */
    UnregisterWaitEx(inst->wait, INVALID_HANDLE_VALUE);
    inst->wait = NULL;
  }
  e = inst_result(inst);
  /* It leaves the pool's count now, so the pool is refilled before the hand-over. */
  l->waiting--;
  refill(l);
  l->waiting++;
  if (e != ERROR_SUCCESS) {
    /* No client came (the instance failed): nothing to read. */
    SB_LOG_E("listener", "%s: ConnectNamedPipe finished with error %lu", l->what,
             (unsigned long)e);
    inst_free(l, inst);
    return;
  }
  if (inst->state == SB__INST_CONNECTED && inst->result == ERROR_NO_DATA)
    SB_LOG_D("listener",
             "%s: a client wrote and closed before its instance was taken; "
             "reading what it wrote",
             l->what);
  l->handing = inst->pipe;
  l->cb(l, l->arg);
  if (l->handing != NULL) {
    lost(l, "the service did not take it", 0);
  } else {
    inst->pipe = INVALID_HANDLE_VALUE; /* it belongs to the accepted uv_pipe_t now */
  }
  l->handing = NULL;
  inst_free(l, inst);
}

static void on_async(uv_async_t* a) {
  sb__listener_t* l = a->data;
  sb__inst_t *inst, *next;
  AcquireSRWLockExclusive(&l->lock);
  inst = l->queue_head;
  l->queue_head = l->queue_tail = NULL;
  ReleaseSRWLockExclusive(&l->lock);
  for (; inst != NULL; inst = next) {
    next = inst->queued;
    inst_done(l, inst);
    if (l->stopping)
      break; /* the callback stopped the listener, which freed every instance */
  }
}

/* The descriptor only carries the handle into libuv (sb__pipe_adopt, win/dial.c). */
int sb__listener_accept(sb__listener_t* l, uv_pipe_t* client) {
  HANDLE h = l->handing;
  int r;
  if (h == NULL)
    return SB_EINVAL;
  l->handing = NULL;
  if ((r = sb__pipe_adopt(client, h)) == UV_EMFILE) {
    lost(l, "no C runtime descriptor is free", (DWORD)EMFILE);
    return SB_ELIMIT;
  }
  if (r != 0) {
    lost(l, uv_strerror(r), 0);
    return sb__uv_err(r);
  }
  return 0;
}

static void on_listener_closed(uv_handle_t* h) {
  sb__listener_t* l = h->data;
  if (--l->pending_closes > 0)
    return;
  if (l->closed)
    l->closed(l->closed_arg);
  sb__pipesec_destroy(&l->sec);
  free(l->what);
  free(l);
}

/*
 * Every instance's ConnectNamedPipe is cancelled and its wait removed (after its
 * callback, if it runs). An instance a client had connected to (its wait ran, or
 * the cancel came too late) is dropped unread: a stopping service takes no streams,
 * so it is counted and logged as lost.
 */
void sb__listener_stop(sb__listener_t* l, void (*closed)(void* arg), void* arg) {
  uint64_t dropped = 0;
  l->stopping = 1;
  l->closed = closed;
  l->closed_arg = arg;
  uv_timer_stop(&l->refill);
  while (l->insts != NULL) {
    sb__inst_t* inst = l->insts;
    DWORD n;
    /* After this the wait's callback has run to its end, or never will. */
    if (inst->wait != NULL) {
      UnregisterWaitEx(inst->wait, INVALID_HANDLE_VALUE);
      inst->wait = NULL;
    }
    if (inst->state == SB__INST_CONNECTED) {
      dropped++;
    } else {
      /* Cancelled (or finished already), and waited for, so that it is over before
       * its OVERLAPPED is freed; a client that came first is dropped. */
      CancelIoEx(inst->pipe, &inst->ov);
      if (GetOverlappedResult(inst->pipe, &inst->ov, &n, TRUE) ||
          GetLastError() == ERROR_PIPE_CONNECTED || GetLastError() == ERROR_NO_DATA)
        dropped++;
    }
    inst_free(l, inst);
  }
  /* The queue's instances were in the list too: all freed. */
  AcquireSRWLockExclusive(&l->lock);
  l->queue_head = l->queue_tail = NULL;
  ReleaseSRWLockExclusive(&l->lock);
  if (dropped > 0) {
    if (l->counters)
      l->counters->accept_lost += dropped;
    SB_LOG_W("listener", "%s: %llu connections waiting at the stop were dropped unread",
             l->what, (unsigned long long)dropped);
  }
  l->pending_closes = 2;
  uv_close((uv_handle_t*)&l->async, on_listener_closed);
  uv_close((uv_handle_t*)&l->refill, on_listener_closed);
}

/*
 * Who serves the pipe at path, for the message of a start that finds it taken: its
 * process id and user ("pid 812, user NT AUTHORITY\SYSTEM"). While the service is
 * down any user may create the name; clients then refuse that server (they check
 * who serves), and the administrator learns here whom to look at. Asked anonymously
 * (SECURITY_ANONYMOUS), nothing written.
 */
static void pipe_holder(const WCHAR* path, char* out, size_t size) {
  HANDLE h, proc, tok;
  ULONG pid = 0;
  BYTE buf[512];
  DWORD n;
  WCHAR name[256], domain[256];
  DWORD nn = 256, dn = 256;
  SID_NAME_USE use;
  char u8[600] = "";
  snprintf(out, size, "unknown");
  h = CreateFileW(path, FILE_READ_ATTRIBUTES, 0, NULL, OPEN_EXISTING,
                  SECURITY_SQOS_PRESENT | SECURITY_ANONYMOUS, NULL);
  if (h == INVALID_HANDLE_VALUE)
    return;
  if (GetNamedPipeServerProcessId(h, &pid) && pid != 0) {
    snprintf(out, size, "pid %lu", (unsigned long)pid);
    if ((proc = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, pid)) != NULL) {
      if (OpenProcessToken(proc, TOKEN_QUERY, &tok)) {
        if (GetTokenInformation(tok, TokenUser, buf, sizeof(buf), &n) &&
            LookupAccountSidW(NULL, ((TOKEN_USER*)buf)->User.Sid, name, &nn, domain,
                              &dn, &use)) {
          int l = WideCharToMultiByte(CP_UTF8, 0, domain, -1, u8, 256, NULL, NULL);
          if (l > 0) {
            u8[l - 1] = '\\';
            WideCharToMultiByte(CP_UTF8, 0, name, -1, u8 + l, 300, NULL, NULL);
          }
          snprintf(out, size, "pid %lu, user %s", (unsigned long)pid, u8);
        }
        CloseHandle(tok);
      }
      CloseHandle(proc);
    }
  }
  CloseHandle(h);
}

/*
 * A pipe of that name that exists, busy or free, belongs to someone else: said in plain
 * words here, naming its server, and also where FILE_FLAG_FIRST_PIPE_INSTANCE is not
 * enforced (Wine).
 */
static int listener_prepare(const WCHAR* path, const char* what) {
  char holder[700];
  if (WaitNamedPipeW(path, 1) || GetLastError() == ERROR_SEM_TIMEOUT) {
    pipe_holder(path, holder, sizeof(holder));
    SB_LOG_E("listener",
             "%s: another instance is serving it (%s); if that is not this service, "
             "someone took the name while the service was down: clients refuse it",
             what, holder);
    return SB_EEXIST;
  }
  return 0;
}

/*
 * Every instance is created with the descriptor of sb__pipesec_create, though on a
 * named pipe the first instance's is the pipe's and later ones' are ignored; the first
 * has FILE_FLAG_FIRST_PIPE_INSTANCE, so no instance of a pipe someone else created
 * (with a descriptor of theirs) is ever taken for ours.
 */
int sb__listener_start(sb__listener_t** out, uv_loop_t* loop, const char* path,
                       const char* what, int admin_only, const char* sddl,
                       int instances, sb__listener_cb cb, void* arg,
                       sb__counters_t* counters) {
  sb__listener_t* l;
  DWORD e;
  int r;
  *out = NULL;
  l = sb__xcalloc(1, sizeof(*l));
  l->loop = loop;
  l->what = sb__xstrdup(what);
  l->cb = cb;
  l->arg = arg;
  l->counters = counters;
  l->want = instances > 0 ? instances : 1;
  InitializeSRWLock(&l->lock);
  uv_async_init(loop, &l->async, on_async);
  l->async.data = l;
  uv_timer_init(loop, &l->refill);
  l->refill.data = l;
  if (MultiByteToWideChar(CP_UTF8, 0, path, -1, l->path, 300) == 0) {
    SB_LOG_E("listener", "%s: invalid pipe name %s", what, path);
    sb__listener_stop(l, NULL, NULL);
    return SB_EADDRESS;
  }
  if (sddl == NULL || sddl[0] == '\0')
    sddl = admin_only ? SB__ADMIN_SDDL : SB__DEFAULT_CONTROL_SDDL;
  if ((r = sb__pipesec_create(&l->sec, sddl, path)) != 0) {
    sb__listener_stop(l, NULL, NULL);
    return r;
  }
  if (listener_prepare(l->path, path) != 0) {
    sb__listener_stop(l, NULL, NULL);
    return SB_EEXIST;
  }
  if ((e = inst_new(l, 1)) != 0) {
    if (e == ERROR_ACCESS_DENIED || e == ERROR_PIPE_BUSY)
      SB_LOG_E("listener", "%s: another instance is serving it", path);
    sb__listener_stop(l, NULL, NULL);
    return e == ERROR_ACCESS_DENIED || e == ERROR_PIPE_BUSY ? SB_EEXIST : SB_EIO;
  }
  sb__pipesec_label(&l->sec, l->insts != NULL ? l->insts->pipe : NULL, path);
  refill(l);
  SB_LOG_D("listener", "%s: %d instances waiting, security descriptor %s", path,
           l->waiting, sddl);
  *out = l;
  return 0;
}

/* The user SID of process pid (or of this process, pid 0) as a string; 0 or -1. */
static int process_sid(DWORD pid, char* out, size_t size) {
  HANDLE proc = pid ? OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, pid)
                    : GetCurrentProcess();
  HANDLE token = NULL;
  union {
    TOKEN_USER user;
    char bytes[256];
  } info;
  DWORD len = 0;
  char* text = NULL;
  int r = -1;
  if (proc == NULL)
    return -1;
  if (OpenProcessToken(proc, TOKEN_QUERY, &token) &&
      GetTokenInformation(token, TokenUser, &info, sizeof(info), &len) &&
      ConvertSidToStringSidA(info.user.User.Sid, &text) && strlen(text) < size) {
    memcpy(out, text, strlen(text) + 1);
    r = 0;
  }
  if (text != NULL)
    LocalFree(text);
  if (token != NULL)
    CloseHandle(token);
  if (pid)
    CloseHandle(proc);
  return r;
}

/*
 * The client's pid, and the user SID of its process for the per-user limits (the
 * service, as SYSTEM or an administrator, may open any process's token). Wine says
 * 0 for a client that has gone: unknown, as no pid at all; a client whose process is
 * gone or cannot be opened has no user ("").
 */
void sb__peer_credentials(uv_pipe_t* pipe, sb__peer_t* peer) {
  uv_os_fd_t h;
  ULONG client_pid = 0;
  char self[192];
  peer->pid = peer->uid = peer->gid = -1;
  peer->user[0] = '\0';
  peer->privileged = 0;
  peer->ngroups = -1;
  if (uv_fileno((uv_handle_t*)pipe, &h) == 0 &&
      GetNamedPipeClientProcessId(h, &client_pid) && client_pid != 0)
    peer->pid = client_pid;
  if (peer->pid < 0 ||
      process_sid((DWORD)peer->pid, peer->user, sizeof(peer->user)) != 0)
    return;
  /* The reserves' holders: SYSTEM and the service's own account. */
  peer->privileged =
      strcmp(peer->user, "S-1-5-18") == 0 ||
      (process_sid(0, self, sizeof(self)) == 0 && strcmp(peer->user, self) == 0);
}

int sb__peer_allowed(const sb__peer_t* peer, const char* allowed_groups, char* why,
                     size_t why_size) {
  (void)peer;
  (void)allowed_groups;
  (void)why;
  (void)why_size;
  return 1;
}
