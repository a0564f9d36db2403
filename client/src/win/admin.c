/* win/admin.c - the admin pipe as its clients reach it: an address's bind path, and
 * sbctl's connection, which checks who serves the pipe. */
#include <windows.h>
#include <fcntl.h>
#include <io.h>
#include <string.h>

#include "streambroker.h"
#include "protocol.h"
#include "oserror.h"
#include "../admin.h"
#include "pipe.h"

int sb__address_bind_path(const char* address, char* out, size_t size) {
  int kind;
  const char* name;
  if (sb__address_parse(address, &kind, &name) != 0 || kind != SB__ADDR_PIPE ||
      strlen(name) + 10 > size)
    return SB_EADDRESS;
  strcpy(out, "\\\\.\\pipe\\");
  strcat(out, name);
  return 0;
}

/*
 * sbctl's dial of the admin pipe, made here rather than by uv_pipe_connect (which
 * asks for no security quality of service, so the server could impersonate the
 * administrator running sbctl at impersonation level): identification level only,
 * and the server checked to be the service before the request is written.
 */
int sb__admin_connect(uv_loop_t* loop, uv_pipe_t* pipe, uv_connect_t* req,
                      const char* path, uv_connect_cb cb) {
  WCHAR wide[300];
  HANDLE h = INVALID_HANDLE_VALUE;
  DWORD e = 0;
  int fd, r, tries;
  (void)loop;
  if (MultiByteToWideChar(CP_UTF8, 0, path, -1, wide, 300) == 0)
    return SB_EADDRESS;
  for (tries = 0; tries < 50; tries++) {
    h = CreateFileW(
        wide, GENERIC_READ | FILE_WRITE_DATA | FILE_WRITE_ATTRIBUTES, 0, NULL,
        OPEN_EXISTING,
        FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION, NULL);
    if (h != INVALID_HANDLE_VALUE || (e = GetLastError()) != ERROR_PIPE_BUSY)
      break;
    WaitNamedPipeW(wide, 100);
  }
  if (h == INVALID_HANDLE_VALUE) {
    /* No pipe of that name is no server. */
    r = sb__err_keep(sb__os_err(e), SB__ERR_BIT(SB_ENOENT) | SB__ERR_BIT(SB_EACCES) |
                                        SB__ERR_BIT(SB_EBUSY));
    return r == SB_ENOENT ? SB_ENOSERVER : r;
  }
  if ((r = sb__pipe_check_server(h)) != 0) {
    CloseHandle(h);
    return r;
  }
  if ((fd = _open_osfhandle((intptr_t)h, _O_BINARY)) < 0) {
    CloseHandle(h);
    return SB_ELIMIT;
  }
  if ((r = uv_pipe_open(pipe, fd)) != 0) {
    _close(fd);
    return sb__uv_err(r);
  }
  req->handle = (uv_stream_t*)pipe;
  cb(req, 0);
  return 0;
}
