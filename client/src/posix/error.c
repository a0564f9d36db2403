/*
 * posix/error.c - errno as SB_E* codes: the one translation of the OS's errors on
 * POSIX, for the client and the service (oserror.h).
 */
#include <errno.h>

#include "../oserror.h"

int sb__os_err(unsigned long e) {
  switch (e) {
#define SB__ERRNO_CASE(name, code)                                                     \
  case name:                                                                           \
    return code;
    SB__ERRNO_MAP(SB__ERRNO_CASE)
#undef SB__ERRNO_CASE
  default:
    return SB_EIO;
  }
}

/* The C library's errno is the OS's here. */
int sb__crt_err(int e) {
  return e < 0 ? SB_EIO : sb__os_err((unsigned long)e);
}
