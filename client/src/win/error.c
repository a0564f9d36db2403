/*
 * win/error.c - Win32 errors as SB_E* codes: the one translation of the OS's errors on
 * Windows, for the client and the service (oserror.h; the C runtime's errno values
 * are errno.c's).
 */
#include <windows.h>

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
