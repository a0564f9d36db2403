/* posix/stdio.c - POSIX stdio is already binary. */
#include "../tools.h"

void sb__tool_binary_stdio(void) {
}
