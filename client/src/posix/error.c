/*
 * posix/error.c - errno as SB_E* codes: the one translation of the OS's errors on
 * POSIX, for the client and the service (oserror.h).
 */
#include <limits.h>

#include "../oserror.h"

/* The OS's errors are the C library's errno here: one table (errno.c). */
int sb__os_err(unsigned long e) {
  return e > (unsigned long)INT_MAX ? SB_EIO : sb__crt_err((int)e);
}
