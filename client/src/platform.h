/*
 * platform.h - what each platform directory (posix/, win/) provides to the client
 * library. Shared files call only these.
 */
#ifndef SB_CLIENT_PLATFORM_H
#define SB_CLIENT_PLATFORM_H

#include <stddef.h>
#include <stdint.h>

#include "streambroker.h"

/*
 * Dials a stream server. kind is SB__ADDR_UNIX or SB__ADDR_PIPE (the other platform's
 * kind gives SB_ENOTSUP). While the server is busy (POSIX: EAGAIN from a full listen
 * backlog; Windows: ERROR_PIPE_BUSY), retries with capped exponential backoff until
 * timeout_ms has passed, then SB_EBUSY. An absent server is SB_ENOSERVER at once.
 * for_process: POSIX, the descriptor is made inheritable; Windows handles are never
 * inheritable (the caller hands one to its child alone) and always synchronous,
 * never overlapped, as child stdio needs. Windows also checks who serves the pipe
 * (SB_ESERVER when it is not the service: win/pipe.h).
 */
int sb__dial(int kind, const char* path, uint32_t timeout_ms, int for_process,
             sb_os_handle_t* out);
/* Writes all of buf, blocking. SB_EPIPE when the server is gone; never SIGPIPE. */
int sb__handle_write(sb_os_handle_t h, const void* buf, size_t len);
void sb__handle_close(sb_os_handle_t h);
/*
 * Waits until the server has read everything written on h, up to timeout_ms: Windows,
 * FlushFileBuffers on a thread of its own, cancelled (CancelSynchronousIo) at the
 * deadline: 0, SB_ETIMEDOUT, SB_EPIPE (the server closed first), SB_ENOMEM, SB_EIO.
 * POSIX: 0 at once (the kernel keeps what was written for the server).
 */
int sb__handle_flush(sb_os_handle_t h, uint32_t timeout_ms);
/*
 * Ends a stream and learns whether the server took it, up to timeout_ms: 0 when the
 * server read everything, SB_EPIPE when it closed the connection without (a
 * refusal), SB_ETIMEDOUT, SB_EIO. POSIX: shuts down the write side and waits for the
 * server's end of file (taken) or a reset (refused). Windows: sb__handle_flush.
 */
int sb__handle_finish(sb_os_handle_t h, uint32_t timeout_ms);
/* Sleeps about ms milliseconds. */
void sb__sleep_ms(uint32_t ms);
/* A monotonic clock in milliseconds. */
uint64_t sb__now_ms(void);

/* Backoff shared by both dialers: first delay, and the cap, in milliseconds. */
#define SB__DIAL_BACKOFF_FIRST_MS 1u
#define SB__DIAL_BACKOFF_CAP_MS 100u

#endif
