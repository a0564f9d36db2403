/* posix/eventlog.c - no event log on POSIX: under systemd the journal keeps standard
 * error, which has every line already. */
#include "../internal.h"

void sb__eventlog_open(void) {
}

void sb__eventlog_report(int event_id, const char* text) {
  (void)event_id;
  (void)text;
}

void sb__eventlog_close(void) {
}

int sb__eventlog_install(void) {
  return SB_ENOTSUP;
}

int sb__eventlog_uninstall(void) {
  return SB_ENOTSUP;
}
