/* win/stdio.c - the C runtime's stdin/stdout translate CRLF unless told not to. */
#include <fcntl.h>
#include <io.h>
#include <stdint.h>
#include <stdio.h>

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
