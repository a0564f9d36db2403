/* posix/time.c - the wall clock. */
#include <time.h>

#include "../protocol.h"

sb__time_t sb__time_now(void) {
  struct timespec ts;
  sb__time_t t;
  clock_gettime(CLOCK_REALTIME, &ts);
  t.sec = ts.tv_sec;
  t.nsec = (int32_t)ts.tv_nsec;
  return t;
}
