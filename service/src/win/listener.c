/* win/listener.c - the control pipe's name and the client's process id. */
#include <windows.h>
#include <aclapi.h>
#include <sddl.h>
#include <string.h>

#include "../internal.h"

int sb__listener_bind_path(const char* address, char* out, size_t size) {
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
 * libuv creates the first instance with FILE_FLAG_FIRST_PIPE_INSTANCE, so on Windows a
 * second instance fails to bind; the probe here says why in plain words, and also
 * holds where that flag is not enforced (Wine): a pipe of that name that exists, busy
 * or free, belongs to someone else.
 */
int sb__listener_prepare(const char* path) {
  WCHAR wide[300];
  if (MultiByteToWideChar(CP_UTF8, 0, path, -1, wide, 300) == 0)
    return SB_EADDRESS;
  if (WaitNamedPipeW(wide, 1) || GetLastError() == ERROR_SEM_TIMEOUT) {
    SB_LOG_E("listener", "%s: another instance is serving it", path);
    return SB_EEXIST;
  }
  return 0;
}

/*
 * libuv creates the pipe with WRITE_DAC and its default descriptor; the DACL of ours
 * replaces it on the first instance before anyone can connect (the pipe does not
 * listen yet), and every later instance shares the pipe's descriptor. Protected, so
 * nothing is inherited into it.
 */
int sb__listener_secure(uv_pipe_t* pipe, const char* path, int admin_only,
                        const char* sddl) {
  PSECURITY_DESCRIPTOR sd = NULL;
  PACL dacl = NULL;
  BOOL present = FALSE, defaulted = FALSE;
  uv_os_fd_t h;
  WCHAR wide[512];
  DWORD e;
  if (sddl == NULL || sddl[0] == '\0')
    sddl = admin_only ? SB__ADMIN_SDDL : SB__DEFAULT_CONTROL_SDDL;
  if (MultiByteToWideChar(CP_UTF8, 0, sddl, -1, wide, 512) == 0 ||
      !ConvertStringSecurityDescriptorToSecurityDescriptorW(wide, SDDL_REVISION_1, &sd,
                                                            NULL) ||
      !GetSecurityDescriptorDacl(sd, &present, &dacl, &defaulted) || !present) {
    SB_LOG_E("listener", "%s: invalid security descriptor \"%s\" (error %lu)", path,
             sddl, GetLastError());
    LocalFree(sd);
    return SB_ECONFIG;
  }
  if (uv_fileno((uv_handle_t*)pipe, &h) != 0) {
    LocalFree(sd);
    return SB_EIO;
  }
  e = SetSecurityInfo(h, SE_KERNEL_OBJECT,
                      DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
                      NULL, NULL, dacl, NULL);
  LocalFree(sd);
  if (e != ERROR_SUCCESS) {
    SB_LOG_E("listener", "SetSecurityInfo %s: error %lu", path, e);
    return SB_EACCES;
  }
  SB_LOG_D("listener", "%s: security descriptor %s", path, sddl);
  return 0;
}

void sb__peer_credentials(uv_pipe_t* pipe, int64_t* pid, int64_t* uid, int64_t* gid) {
  uv_os_fd_t h;
  ULONG client_pid = 0;
  *pid = *uid = *gid = -1;
  if (uv_fileno((uv_handle_t*)pipe, &h) == 0 &&
      GetNamedPipeClientProcessId(h, &client_pid))
    *pid = client_pid;
}

int sb__peer_allowed(int64_t uid, int64_t gid, const char* allowed_groups, char* why,
                     size_t why_size) {
  (void)uid;
  (void)gid;
  (void)allowed_groups;
  (void)why;
  (void)why_size;
  return 1;
}
