/* posix/time.c - the wall clock, with the nanoseconds POSIX gives. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 */
#endif
#include <time.h>

#include "../protocol.h"

sb__time_t sb__time_now(void) {
  struct timespec ts;
  sb__time_t t;
  /* CLOCK_REALTIME cannot fail with a valid pointer; zero it all the same. */
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
    ts.tv_sec = 0;
    ts.tv_nsec = 0;
  }
  t.sec = (int64_t)ts.tv_sec;
  t.nsec = (int32_t)ts.tv_nsec;
  return t;
}
