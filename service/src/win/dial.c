/* win/dial.c - one attempt to open the upstream's named pipe. */
#include <windows.h>
#include <fcntl.h>
#include <io.h>
#include <stdlib.h>
#include <string.h>

#include "../internal.h"

/*
 * Write access only (the protocol never reads), anonymous impersonation level so the
 * upstream cannot act as us, and overlapped, as libuv needs. ERROR_PIPE_BUSY is an
 * answer here, not something to wait on: the caller's timer retries.
 */
int sb__upstream_dial(const char* address, uv_file* out) {
  const char* name;
  WCHAR wpath[300];
  char path[300];
  HANDLE h;
  DWORD e;
  int kind, fd;
  if (sb__address_parse(address, &kind, &name) != 0 || kind != SB__ADDR_PIPE ||
      strlen(name) + 10 > sizeof(path))
    return SB_EADDRESS;
  strcpy(path, "\\\\.\\pipe\\");
  strcat(path, name);
  if (MultiByteToWideChar(CP_UTF8, 0, path, -1, wpath, 300) == 0)
    return SB_EADDRESS;
  h = CreateFileW(wpath, GENERIC_WRITE | FILE_READ_ATTRIBUTES, 0, NULL, OPEN_EXISTING,
                  FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_ANONYMOUS,
                  NULL);
  if (h == INVALID_HANDLE_VALUE) {
    e = GetLastError();
    switch (e) {
    case ERROR_PIPE_BUSY:
      return SB_EBUSY;
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND:
      return SB_ENOSERVER;
    case ERROR_ACCESS_DENIED:
      return SB_EACCES;
    default:
      return SB_EIO;
    }
  }
  fd = _open_osfhandle((intptr_t)h, _O_BINARY);
  if (fd < 0) {
    CloseHandle(h);
    return SB_EIO;
  }
  *out = fd;
  return 0;
}
