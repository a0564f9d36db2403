/*
 * win/error.c - Win32 errors, and the C runtime's errno, as SB_E* codes: the one
 * translation of the OS's errors on Windows, for the client and the service
 * (oserror.h).
 */
#include <windows.h>
#include <errno.h>

#include "../oserror.h"

int sb__os_err(unsigned long e) {
  switch (e) {
  case ERROR_FILE_NOT_FOUND:
  case ERROR_PATH_NOT_FOUND:
    return SB_ENOENT;
  case ERROR_ACCESS_DENIED:
    return SB_EACCES;
  case ERROR_DISK_FULL:
  case ERROR_HANDLE_DISK_FULL:
    return SB_ENOSPC;
  case ERROR_INVALID_NAME:
  case ERROR_FILENAME_EXCED_RANGE:
    return SB_EINVAL;
  case ERROR_PIPE_BUSY:
    return SB_EBUSY;
  case ERROR_NO_DATA:
  case ERROR_BROKEN_PIPE:
  case ERROR_PIPE_NOT_CONNECTED:
    return SB_EPIPE;
  case ERROR_NOT_ENOUGH_MEMORY:
  case ERROR_OUTOFMEMORY:
    return SB_ENOMEM;
  default:
    return SB_EIO;
  }
}

/* The C runtime keeps errno values of its own (fopen, _wfopen): the same names as
 * POSIX's, so the same table. */
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
