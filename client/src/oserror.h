/*
 * oserror.h - an operating system's error codes as SB_E* codes: one translation per
 * platform (posix/error.c: errno; win/error.c: Win32 errors), and the C library's
 * errno values from one table for both (errno.c). Included by the client's dialers
 * and by the service's platform files and log.c (the service sees it through the
 * sb_protocol interface).
 *
 * A caller whose contract names fewer codes keeps only those (sb__err_keep); a caller
 * that gives an error a meaning of its own (a dialer: no file there is no server)
 * says so at the call site, before or after the translation.
 */
#ifndef SB_CLIENT_OSERROR_H
#define SB_CLIENT_OSERROR_H

#include <stdint.h>

#include "streambroker.h"

/*
 * The OS's own error as a negative SB_E* code, SB_EIO for anything without a code of
 * its own (the caller logs the OS's number or text). POSIX: an errno value; Windows:
 * a Win32 error code (GetLastError, or a registry or security call's result).
 */
int sb__os_err(unsigned long e);
/*
 * A C library errno value (fopen and the like) as a negative SB_E* code. POSIX: the
 * same as sb__os_err; Windows: the C runtime's own errno values.
 */
int sb__crt_err(int e);

/* The bit of a negative SB_E* code in a set of codes, for sb__err_keep. */
#define SB__ERR_BIT(code) (UINT64_C(1) << (unsigned)-(code))

/* r when it is one of the codes in keep (SB__ERR_BIT ones, or'ed), SB_EIO otherwise. */
static inline int sb__err_keep(int r, uint64_t keep) {
  return r < 0 && r > SB__ERR_MIN && (keep & SB__ERR_BIT(r)) != 0 ? r : SB_EIO;
}

/*
 * The C library's errno values that have a code of their own, written once for both
 * platforms: the OS's errors on POSIX, the C runtime's on Windows (its <errno.h> has
 * every name used here).
 */
#define SB__ERRNO_MAP(XX)                                                              \
  XX(ENOENT, SB_ENOENT)                                                                \
  XX(ENOTDIR, SB_ENOENT)                                                               \
  XX(EACCES, SB_EACCES)                                                                \
  XX(EPERM, SB_EACCES)                                                                 \
  XX(ENOSPC, SB_ENOSPC)                                                                \
  XX(ENAMETOOLONG, SB_EINVAL)                                                          \
  XX(ELOOP, SB_EUNSAFE)                                                                \
  XX(EPIPE, SB_EPIPE)                                                                  \
  XX(ECONNRESET, SB_EPIPE)                                                             \
  XX(ENOMEM, SB_ENOMEM)                                                                \
  XX(ENOBUFS, SB_ENOMEM)                                                               \
  XX(ECONNREFUSED, SB_ENOSERVER)                                                       \
  XX(EAGAIN, SB_EBUSY)                                                                 \
  XX(EMFILE, SB_ELIMIT)                                                                \
  XX(ENFILE, SB_ELIMIT)

#endif
