/*
 * errno.c - a C library errno value as an SB_E* code, from the one table both
 * platforms share (oserror.h's SB__ERRNO_MAP): POSIX's OS errors (posix/error.c) and
 * the Windows C runtime's own (fopen, _wfopen).
 */
#include <errno.h>

#include "oserror.h"

int sb__crt_err(int e) {
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
