/*
 * win/confirm.c - the end of a stream's upstream connection, confirmed (Windows): the
 * pipe is opened write-only, so a broken pipe shows at the next write, and the end is
 * confirmed by a flush on the threadpool (below). The twin of posix/confirm.c.
 */
#include "upstream_int.h"
#include "confirm.h"

/* Every byte is written: end the connection. */
/* Windows: FlushFileBuffers on a pipe returns once the server has read everything, so
 * it confirms a stream's end as the upstream's EOF does on POSIX. It blocks, so it runs
 * on the threadpool, counted as a job so that the sink outlives it; at the deadline the
 * loop cancels it (CancelSynchronousIo), so an upstream that never reads does not hold
 * a threadpool thread. state (under lock): 0 queued, 1 flushing (thread valid), 2
 * finished, 3 cancelled before it began.
 *
 * The job flushes its own duplicate of the pipe handle, closed by the worker when it is
 * done: the connection's handle may close at the deadline while the worker still runs,
 * and a redial may then get the same handle value, which the worker must never flush.
 * State 1 is published just before the worker enters FlushFileBuffers: a cancel in that
 * gap finds no I/O to cancel, so the loop cancels again every SB__FLUSH_RECANCEL_MS
 * until the worker is out. */
#define SB__FLUSH_RECANCEL_MS 20
typedef struct {
  uv_work_t work;
  sb__upstream_t* up;
  HANDLE pipe; /* the job's own duplicate: the worker closes it */
  HANDLE thread;
  SRWLOCK lock;
  int state;
  uint64_t gen;
  BOOL ok;
  int recancel;       /* the timer below was started: freed in its close callback */
  unsigned cancels;   /* cancels tried that found nothing */
  uv_timer_t retimer; /* cancels again while the worker has not entered the flush */
} sb__flush_t;

/* Test-only: SB_TEST_FLUSH_DELAY_MS holds the worker between publishing state 1 and
 * entering FlushFileBuffers, the gap a real Windows threadpool may leave; for the
 * first SB_TEST_FLUSH_DELAYS flushes of the process (default 1). */
static DWORD flush_test_delay(void) {
  static volatile LONG delay = -1, left;
  if (delay < 0) {
    const char* v = getenv("SB_TEST_FLUSH_DELAY_MS");
    const char* n = getenv("SB_TEST_FLUSH_DELAYS");
    InterlockedExchange(&left, n != NULL ? atol(n) : 1);
    InterlockedExchange(&delay, v != NULL ? atol(v) : 0);
  }
  return delay > 0 && InterlockedDecrement(&left) >= 0 ? (DWORD)delay : 0;
}

/*
 * After the flush, a zero-byte write asks whether the server still holds its end: a
 * stream server keeps it until our end closes (that is the stream's end), so a closed
 * one means it went away, or refused the stream, without reading everything (Wine's
 * FlushFileBuffers returns TRUE then). The event's low bit keeps the completion off
 * libuv's port.
 */
static void flush_work(uv_work_t* w) {
  sb__flush_t* f = SB_CONTAINER_OF(w, sb__flush_t, work);
  OVERLAPPED ov;
  DWORD n = 0, delay = flush_test_delay();
  HANDLE ev;
  int cancelled;
  AcquireSRWLockExclusive(&f->lock);
  cancelled = f->state == 3;
  if (!cancelled &&
      DuplicateHandle(GetCurrentProcess(), GetCurrentThread(), GetCurrentProcess(),
                      &f->thread, 0, FALSE, DUPLICATE_SAME_ACCESS))
    f->state = 1;
  ReleaseSRWLockExclusive(&f->lock);
  if (delay > 0)
    Sleep(delay);
  f->ok = !cancelled && FlushFileBuffers(f->pipe);
  AcquireSRWLockExclusive(&f->lock);
  if (f->state == 1)
    CloseHandle(f->thread);
  f->state = 2;
  ReleaseSRWLockExclusive(&f->lock);
  if (f->ok && (ev = CreateEventW(NULL, TRUE, FALSE, NULL)) != NULL) {
    memset(&ov, 0, sizeof(ov));
    ov.hEvent = (HANDLE)((uintptr_t)ev | 1);
    if (!WriteFile(f->pipe, "", 0, &n, &ov) &&
        (GetLastError() != ERROR_IO_PENDING ||
         !GetOverlappedResult(f->pipe, &ov, &n, TRUE)))
      f->ok = FALSE;
    CloseHandle(ev);
  } else if (f->ok) {
    f->ok = FALSE;
  }
  CloseHandle(f->pipe);
}

static void on_flush_freed(uv_handle_t* h) {
  free(h->data);
}

/* Cancels the worker's flush if it is in it; 1 when it must be tried again (state 1,
 * and nothing was there to cancel yet). Loop thread. */
static int flush_cancel(sb__flush_t* f) {
  int again = 0;
  AcquireSRWLockExclusive(&f->lock);
  if (f->state == 1) {
    if (!CancelSynchronousIo(f->thread)) {
      f->cancels++;
      again = 1;
    }
  } else if (f->state == 0) {
    f->state = 3;
  }
  ReleaseSRWLockExclusive(&f->lock);
  return again;
}

static void on_flush_recancel(uv_timer_t* t) {
  sb__flush_t* f = t->data;
  if (!flush_cancel(f))
    uv_timer_stop(t);
}

static void flush_done(uv_work_t* w, int status) {
  sb__flush_t* f = SB_CONTAINER_OF(w, sb__flush_t, work);
  sb__upstream_t* up = f->up;
  up->jobs_out--;
  if (up->flush == f)
    up->flush = NULL;
  if (f->cancels > 0)
    SB_LOG_D("upstream",
             "stream %llu: the end's flush was cancelled after %u tries that found it "
             "not begun",
             up_id(up), f->cancels + 1);
  if (f->gen == up->gen && !up->closing && up->state == SB__LINK_ENDING) {
    uv_timer_stop(&up->timer);
    if (status == 0 && f->ok) {
      up->ops->end_read(up);
    } else {
      up->ops->broken(up, SB_EPIPE);
    }
  } else if (f->gen != up->gen) {
    /* A flush of an earlier connection, cancelled at its deadline, held the stream's
     * end on the current one (link.c's pump waits for every job): it may end now. */
    up->ops->pump(up);
  }
  if (f->recancel) {
    f->retimer.data = f;
    uv_close((uv_handle_t*)&f->retimer, on_flush_freed);
  } else {
    free(f);
  }
  up->ops->maybe_done(up);
}

void sb__confirm_timeout(uv_timer_t* t) {
  sb__upstream_t* up = t->data;
  sb__flush_t* f = up->flush;
  if (f == NULL || up->state != SB__LINK_ENDING || up->closing)
    return;
  if (flush_cancel(f)) {
    /* The worker published its thread but has not entered the flush: try again until
     * it is out (flush_done closes the timer). */
    f->recancel = 1;
    uv_timer_init(up->b->loop, &f->retimer);
    f->retimer.data = f;
    uv_timer_start(&f->retimer, on_flush_recancel, SB__FLUSH_RECANCEL_MS,
                   SB__FLUSH_RECANCEL_MS);
  }
  up->flush = NULL;
  up->ops->end_unconfirmed(up);
}

int sb__confirm_end(sb__upstream_t* up) {
  sb__flush_t* f = sb__xcalloc(1, sizeof(*f));
  uv_os_fd_t h;
  if (uv_fileno((uv_handle_t*)&up->pipe, &h) != 0) {
    free(f);
    up->conn_done = 1;
    up->ops->close(up);
    return -1;
  }
  /* The job's own handle: the connection's may close (and its value be reused by a
   * redial) before the worker is done with it. */
  if (!DuplicateHandle(GetCurrentProcess(), h, GetCurrentProcess(), &f->pipe, 0, FALSE,
                       DUPLICATE_SAME_ACCESS)) {
    DWORD e = GetLastError();
    free(f);
    SB_LOG_E("upstream", "stream %llu \"%s\": DuplicateHandle: error %lu", up_id(up),
             up_name(up), e);
    up->ops->broken(up, SB_EIO);
    return -1;
  }
  f->up = up;
  f->gen = up->gen;
  InitializeSRWLock(&f->lock);
  up->flush = f;
  up->state = SB__LINK_ENDING;
  up->jobs_out++;
  uv_queue_work(up->b->loop, &f->work, flush_work, flush_done);
  return 0;
}

void sb__confirm_watch(sb__upstream_t* up) {
  (void)up; /* the pipe is write-only: a break shows at the next write */
}
