/* uverr.c - libuv's errors as SB_E*, translated once at the boundary (admin.h), for
 * the service and sbctl. */
#include <uv.h>

#include "streambroker.h"
#include "admin.h"

/* The one place libuv's codes become ours; anything unexpected is an I/O error that
 * the caller logs with libuv's own name for it. */
int sb__uv_err(int e) {
  switch (e) {
  case 0:
    return 0;
  case UV_ENOENT:
    return SB_ENOENT;
  case UV_EACCES:
  case UV_EPERM:
    return SB_EACCES;
  case UV_EADDRINUSE:
  case UV_EEXIST:
    return SB_EEXIST;
  case UV_ENOSPC:
    return SB_ENOSPC;
  case UV_ENOMEM:
    return SB_ENOMEM;
  case UV_EPIPE:
  case UV_ECONNRESET:
  case UV_EOF:
    return SB_EPIPE;
  case UV_ETIMEDOUT:
    return SB_ETIMEDOUT;
  case UV_ECANCELED:
    return SB_ECANCELED;
  case UV_EINVAL:
    return SB_EINVAL;
  case UV_EBUSY:
  case UV_EAGAIN:
    return SB_EBUSY;
  case UV_ECONNREFUSED:
    return SB_ENOSERVER;
  default:
    return SB_EIO;
  }
}
