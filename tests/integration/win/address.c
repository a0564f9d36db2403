/* win/address.c - test addresses are named pipes. */
#include <windows.h>
#include <aclapi.h>
#include <sddl.h>
#include <stdio.h>

#include "../helpers.h"
#include "task.h"

void sb_it_address(const char* tag, char* address, char* bind_path, size_t size) {
  snprintf(bind_path, size, "\\\\.\\pipe\\sbit-%lu-%s", GetCurrentProcessId(), tag);
  snprintf(address, size, "net.pipe:sbit-%lu-%s", GetCurrentProcessId(), tag);
}

unsigned long sb_it_os_error(void) {
  return GetLastError();
}

int sb_it_is_windows(void) {
  return 1;
}

void sb_it_platform_init(void) {
}

int sb_it_pipe_security(const char* address, char* out, size_t size) {
  char path[300];
  WCHAR wide[300];
  HANDLE h;
  PSECURITY_DESCRIPTOR sd = NULL;
  LPSTR text = NULL;
  int r = -1;
  snprintf(path, sizeof(path), "\\\\.\\pipe\\%s", strchr(address, ':') + 1);
  MultiByteToWideChar(CP_UTF8, 0, path, -1, wide, 300);
  h = CreateFileW(wide, READ_CONTROL, 0, NULL, OPEN_EXISTING, 0, NULL);
  if (h == INVALID_HANDLE_VALUE)
    return -1;
  if (GetSecurityInfo(h, SE_KERNEL_OBJECT, DACL_SECURITY_INFORMATION, NULL, NULL, NULL,
                      NULL, &sd) == ERROR_SUCCESS &&
      ConvertSecurityDescriptorToStringSecurityDescriptorA(
          sd, SDDL_REVISION_1, DACL_SECURITY_INFORMATION, &text, NULL)) {
    snprintf(out, size, "%s", text);
    r = 0;
  }
  LocalFree(text);
  LocalFree(sd);
  CloseHandle(h);
  return r;
}

/* No systemd, so no NOTIFY_SOCKET to play. */
uv_os_sock_t sb_it_dgram_bind(const char* name) {
  sb_test_fail(__FILE__, __LINE__, "no AF_UNIX datagram socket for %s on Windows", name);
}

ssize_t sb_it_dgram_recv(uv_os_sock_t fd, char* buf, size_t size) {
  (void)fd;
  (void)buf;
  (void)size;
  return 0;
}

void sb_it_dgram_close(uv_os_sock_t fd) {
  (void)fd;
}

FILE* sb_it_fopen(const char* path, const char* mode) {
  WCHAR wpath[2048], wmode[16];
  if (MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, path, -1, wpath, 2048) == 0 ||
      MultiByteToWideChar(CP_UTF8, 0, mode, -1, wmode, 16) == 0)
    return NULL;
  return _wfopen(wpath, wmode);
}
