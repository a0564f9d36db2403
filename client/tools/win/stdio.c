/* win/stdio.c - the C runtime's stdin/stdout translate CRLF unless told not to. */
#include <windows.h>
#include <shellapi.h>
#include <fcntl.h>
#include <io.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "../tools.h"

void sb__tool_binary_stdio(void) {
  _setmode(_fileno(stdin), _O_BINARY);
  _setmode(_fileno(stdout), _O_BINARY);
}

int sb__tool_handle_fd(sb_os_handle_t h) {
  return _open_osfhandle((intptr_t)h, _O_BINARY);
}

long sb__tool_read_stdin(void* buf, unsigned size) {
  int n = _read(_fileno(stdin), buf, size);
  return n;
}

char** sb__tool_utf8_argv(int* argc, char** argv) {
  int n, i;
  LPWSTR* w = CommandLineToArgvW(GetCommandLineW(), &n);
  char** out;
  if (w == NULL)
    return argv;
  out = calloc((size_t)n + 1, sizeof(*out));
  for (i = 0; out != NULL && i < n; i++) {
    int len = WideCharToMultiByte(CP_UTF8, 0, w[i], -1, NULL, 0, NULL, NULL);
    if (len <= 0 || (out[i] = malloc((size_t)len)) == NULL ||
        WideCharToMultiByte(CP_UTF8, 0, w[i], -1, out[i], len, NULL, NULL) != len) {
      LocalFree(w);
      return argv; /* what the C runtime gave, as before (the copies leak: exiting) */
    }
  }
  LocalFree(w);
  if (out == NULL)
    return argv;
  *argc = n;
  return out;
}
