/* win/time.c - the wall clock, to the 100 ns the system keeps. */
#include <windows.h>

#include "../protocol.h"

/* FILETIME counts 100 ns ticks since 1601-01-01; 11644473600 s separate it from 1970.
 * The precise variant (Windows 8+) is the one that is not rounded to the tick timer. */
sb__time_t sb__time_now(void) {
  FILETIME ft;
  ULARGE_INTEGER u;
  sb__time_t t;
  GetSystemTimePreciseAsFileTime(&ft);
  u.LowPart = ft.dwLowDateTime;
  u.HighPart = ft.dwHighDateTime;
  t.sec = (int64_t)(u.QuadPart / 10000000u) - INT64_C(11644473600);
  t.nsec = (int32_t)(u.QuadPart % 10000000u) * 100;
  return t;
}
