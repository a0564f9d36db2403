/* posix/stdio.c - POSIX stdio is already binary. */
#include "../tools.h"

void sb__tool_binary_stdio(void) {
}

int sb__tool_handle_fd(sb_os_handle_t h) {
  return h;
}
