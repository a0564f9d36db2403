/*
 * win/spawn.c - sbrun's child, started with only the handles meant for it: its
 * stdin, and the two streams as stdout and stderr. The streams' handles are not
 * inheritable (the client library opens them so); inheritable duplicates are made
 * for this one CreateProcessW, named in PROC_THREAD_ATTRIBUTE_HANDLE_LIST (so the
 * child inherits those and nothing else of ours), and closed at once.
 */
#include <windows.h>
#include <io.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include <uv.h>

#include "../tools.h"

static WCHAR* wide(const char* s) {
  int n = MultiByteToWideChar(CP_UTF8, 0, s, -1, NULL, 0);
  WCHAR* w;
  if (n <= 0 || (w = malloc((size_t)n * sizeof(WCHAR))) == NULL)
    return NULL;
  MultiByteToWideChar(CP_UTF8, 0, s, -1, w, n);
  return w;
}

/* One argument as the C runtime's parser reads it back: quoted when it holds a space,
 * tab or quote (or is empty); a run of backslashes doubled only where a quote follows
 * it (the closing one included). out has room for 2 * wcslen(a) + 3 more. */
static void quote_arg(const WCHAR* a, WCHAR* out, size_t* o) {
  size_t i = 0, bs, k;
  if (a[0] != 0 && wcspbrk(a, L" \t\"") == NULL) {
    while (a[i])
      out[(*o)++] = a[i++];
    return;
  }
  out[(*o)++] = L'"';
  for (;;) {
    for (bs = 0; a[i] == L'\\'; i++)
      bs++;
    if (a[i] == 0) {
      for (k = 0; k < bs * 2; k++)
        out[(*o)++] = L'\\';
      break;
    }
    if (a[i] == L'"')
      bs = bs * 2 + 1;
    for (k = 0; k < bs; k++)
      out[(*o)++] = L'\\';
    out[(*o)++] = a[i++];
  }
  out[(*o)++] = L'"';
}

static int cmp_env(const void* a, const void* b) {
  return _wcsicmp(*(WCHAR* const*)a, *(WCHAR* const*)b);
}

/* The UTF-16 environment block of env ("K=V" strings), sorted as Windows keeps it. */
static WCHAR* env_block(char** env) {
  size_t n = 0, i, len = 1, o = 0;
  WCHAR** w;
  WCHAR* block = NULL;
  while (env[n])
    n++;
  if ((w = calloc(n + 1, sizeof(*w))) == NULL)
    return NULL;
  for (i = 0; i < n; i++) {
    if ((w[i] = wide(env[i])) == NULL)
      goto done;
    len += wcslen(w[i]) + 1;
  }
  qsort(w, n, sizeof(*w), cmp_env);
  if ((block = malloc(len * sizeof(WCHAR))) == NULL)
    goto done;
  for (i = 0; i < n; i++) {
    size_t l = wcslen(w[i]) + 1;
    memcpy(block + o, w[i], l * sizeof(WCHAR));
    o += l;
  }
  block[o] = 0;
done:
  for (i = 0; i < n; i++)
    free(w[i]);
  free(w);
  return block;
}

/*
 * The C runtime's table of inherited descriptors (STARTUPINFO's lpReserved2: a count,
 * a flag byte per descriptor, then the handles), as libuv's uv_spawn passes it, so a
 * child built on the C runtime opens its descriptors 0 to 2 as before: open, a pipe
 * or a device, and without FTEXT, so in binary mode (nothing translated).
 */
static void crt_fds(HANDLE std[3], BYTE* out) {
  int count = 3, i;
  memcpy(out, &count, sizeof(int));
  for (i = 0; i < 3; i++) {
    DWORD type = GetFileType(std[i]);
    out[sizeof(int) + i] = type == FILE_TYPE_PIPE   ? 0x09
                           : type == FILE_TYPE_CHAR ? 0x41
                                                    : 0x01;
    memcpy(out + sizeof(int) + 3 + i * sizeof(HANDLE), &std[i], sizeof(HANDLE));
  }
}

static int uv_error_of(DWORD e) {
  switch (e) {
  case ERROR_FILE_NOT_FOUND:
  case ERROR_PATH_NOT_FOUND:
  case ERROR_BAD_PATHNAME:
    return UV_ENOENT;
  case ERROR_ACCESS_DENIED:
    return UV_EACCES;
  case ERROR_NOT_ENOUGH_MEMORY:
  case ERROR_OUTOFMEMORY:
    return UV_ENOMEM;
  case ERROR_BAD_EXE_FORMAT:
    return UV_EINVAL;
  default:
    return UV_EIO;
  }
}

int sb__tool_run(char** args, char** env, int out_fd, int err_fd, int64_t* status,
                 int* signal) {
  HANDLE self = GetCurrentProcess(), in = GetStdHandle(STD_INPUT_HANDLE);
  HANDLE std[3] = {NULL, NULL, NULL}, list[3];
  HANDLE src[3];
  STARTUPINFOEXW si;
  PROCESS_INFORMATION pi;
  LPPROC_THREAD_ATTRIBUTE_LIST attrs = NULL;
  SIZE_T attrs_size = 0;
  WCHAR *cmd = NULL, *block = NULL;
  size_t len = 1, o = 0, i, n = 0;
  DWORD code, e = 0;
  BYTE crt[sizeof(int) + 3 + 3 * sizeof(HANDLE)];
  int r = 0;
  *status = -1;
  *signal = 0;
  src[0] = in;
  src[1] = (HANDLE)_get_osfhandle(out_fd);
  src[2] = (HANDLE)_get_osfhandle(err_fd);
  /* stdin: ours, or NUL when we have none. */
  if (src[0] == NULL || src[0] == INVALID_HANDLE_VALUE) {
    SECURITY_ATTRIBUTES sa = {sizeof(sa), NULL, TRUE};
    std[0] = CreateFileW(L"NUL", GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE, &sa,
                         OPEN_EXISTING, 0, NULL);
    if (std[0] == INVALID_HANDLE_VALUE) {
      std[0] = NULL;
      e = GetLastError();
      goto fail;
    }
  }
  for (i = std[0] != NULL ? 1 : 0; i < 3; i++) {
    if (!DuplicateHandle(self, src[i], self, &std[i], 0, TRUE, DUPLICATE_SAME_ACCESS)) {
      e = GetLastError();
      std[i] = NULL;
      goto fail;
    }
  }
  for (i = 0; i < 3; i++)
    list[n++] = std[i];
  /* The command line. */
  for (i = 0; args[i]; i++)
    len += strlen(args[i]) * 2 + 3;
  if ((cmd = malloc(len * sizeof(WCHAR))) == NULL) {
    e = ERROR_OUTOFMEMORY;
    goto fail;
  }
  for (i = 0; args[i]; i++) {
    WCHAR* a = wide(args[i]);
    if (a == NULL) {
      e = ERROR_INVALID_PARAMETER;
      goto fail;
    }
    if (i > 0)
      cmd[o++] = L' ';
    quote_arg(a, cmd, &o);
    free(a);
  }
  cmd[o] = 0;
  if (env != NULL && (block = env_block(env)) == NULL) {
    e = ERROR_OUTOFMEMORY;
    goto fail;
  }
  InitializeProcThreadAttributeList(NULL, 1, 0, &attrs_size);
  if ((attrs = malloc(attrs_size)) == NULL ||
      !InitializeProcThreadAttributeList(attrs, 1, 0, &attrs_size)) {
    e = attrs == NULL ? ERROR_OUTOFMEMORY : GetLastError();
    free(attrs);
    attrs = NULL;
    goto fail;
  }
  if (!UpdateProcThreadAttribute(attrs, 0, PROC_THREAD_ATTRIBUTE_HANDLE_LIST, list,
                                 n * sizeof(HANDLE), NULL, NULL)) {
    e = GetLastError();
    goto fail;
  }
  memset(&si, 0, sizeof(si));
  si.StartupInfo.cb = sizeof(si);
  crt_fds(std, crt);
  si.StartupInfo.cbReserved2 = (WORD)sizeof(crt);
  si.StartupInfo.lpReserved2 = crt;
  si.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
  si.StartupInfo.hStdInput = std[0];
  si.StartupInfo.hStdOutput = std[1];
  si.StartupInfo.hStdError = std[2];
  si.lpAttributeList = attrs;
  if (!CreateProcessW(NULL, cmd, NULL, NULL, TRUE,
                      EXTENDED_STARTUPINFO_PRESENT | CREATE_UNICODE_ENVIRONMENT, block,
                      NULL, &si.StartupInfo, &pi)) {
    e = GetLastError();
    goto fail;
  }
  /* The child has its copies: ours go now, so that only the child holds the streams
   * (besides sbrun's own, kept to ask whether the server read them). */
  for (i = 0; i < 3; i++) {
    CloseHandle(std[i]);
    std[i] = NULL;
  }
  CloseHandle(pi.hThread);
  WaitForSingleObject(pi.hProcess, INFINITE);
  if (GetExitCodeProcess(pi.hProcess, &code))
    *status = (int64_t)code;
  CloseHandle(pi.hProcess);
  goto done;
fail:
  r = uv_error_of(e);
done:
  for (i = 0; i < 3; i++)
    if (std[i] != NULL)
      CloseHandle(std[i]);
  if (attrs != NULL) {
    DeleteProcThreadAttributeList(attrs);
    free(attrs);
  }
  free(cmd);
  free(block);
  return r;
}
