/* win/address.c - test addresses are named pipes. */
#include <windows.h>
#include <stdio.h>

#include "../helpers.h"

void sb_it_address(const char* tag, char* address, char* bind_path, size_t size) {
  snprintf(bind_path, size, "\\\\.\\pipe\\sbit-%lu-%s", GetCurrentProcessId(), tag);
  snprintf(address, size, "net.pipe:sbit-%lu-%s", GetCurrentProcessId(), tag);
}

int sb_it_is_windows(void) {
  return 1;
}

void sb_it_platform_init(void) {
}
