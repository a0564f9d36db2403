/* posix/stdio.c - POSIX stdio is already binary. */
#include <errno.h>
#include <unistd.h>

#include "../tools.h"

void sb__tool_binary_stdio(void) {
}

int sb__tool_handle_fd(sb_os_handle_t h) {
  return h;
}

long sb__tool_read_stdin(void* buf, unsigned size) {
  ssize_t n;
  do
    n = read(0, buf, size);
  while (n < 0 && errno == EINTR);
  return (long)n;
}

char** sb__tool_utf8_argv(int* argc, char** argv) {
  (void)argc;
  return argv;
}
