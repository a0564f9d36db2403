/* win/notify.c - no systemd on Windows: the service control manager hears of the
 * service's state from win/service.c. */
#include "../internal.h"

int sb__notify_open(void) {
  return 0;
}

void sb__notify(const char* text) {
  (void)text;
}

void sb__notify_close(void) {
}
