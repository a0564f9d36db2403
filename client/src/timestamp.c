/* timestamp.c - RFC 3339 timestamps as Go's time package reads and writes them. */
#include <stdio.h>
#include <string.h>

#include "protocol.h"

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm),
 * so no timegm, which Windows lacks. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  int64_t era;
  unsigned yoe, doy, doe;
  y -= m <= 2;
  era = (y >= 0 ? y : y - 399) / 400;
  yoe = (unsigned)(y - era * 400);
  doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t* y, unsigned* m, unsigned* d) {
  int64_t era;
  unsigned doe, yoe, doy, mp;
  z += 719468;
  era = (z >= 0 ? z : z - 146096) / 146097;
  doe = (unsigned)(z - era * 146097);
  yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int digits(const char* s, size_t n, int* out) {
  size_t i;
  *out = 0;
  for (i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    *out = *out * 10 + (s[i] - '0');
  }
  return 0;
}

static int days_in_month(int y, int m) {
  static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (m == 2 && (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
    return 29;
  return dm[m - 1];
}

int sb__time_parse(const char* s, size_t len, sb__time_t* out) {
  int y, mo, d, h, mi, sec, oh = 0, om = 0;
  int32_t nsec = 0;
  size_t i = 19;
  int64_t t;
  if (len < 20 || digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) || s[7] != '-' ||
      digits(s + 8, 2, &d) || s[10] != 'T' || digits(s + 11, 2, &h) || s[13] != ':' ||
      digits(s + 14, 2, &mi) || s[16] != ':' || digits(s + 17, 2, &sec))
    return SB_ETIMESTAMP;
  if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 ||
      sec > 59)
    return SB_ETIMESTAMP;
  if (s[i] == '.') {
    int ndig = 0;
    i++;
    while (i < len && s[i] >= '0' && s[i] <= '9') {
      if (ndig < 9)
        nsec = nsec * 10 + (s[i] - '0');
      ndig++;
      i++;
    }
    if (ndig == 0)
      return SB_ETIMESTAMP;
    for (; ndig < 9; ndig++)
      nsec *= 10;
  }
  if (i == len - 1 && s[i] == 'Z') {
    /* UTC */
  } else if (i + 6 == len && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':' &&
             !digits(s + i + 1, 2, &oh) && !digits(s + i + 4, 2, &om) && oh < 24 &&
             om < 60) {
    if (s[i] == '-') {
      oh = -oh;
      om = -om;
    }
  } else {
    return SB_ETIMESTAMP;
  }
  t = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + sec;
  t -= (int64_t)oh * 3600 + (int64_t)om * 60;
  out->sec = t;
  out->nsec = nsec;
  return 0;
}

int sb__time_format(sb__time_t t, char* out) {
  int64_t days, y;
  int64_t secs;
  unsigned m, d;
  int n;
  char frac[11];
  if (t.nsec < 0 || t.nsec >= 1000000000)
    return SB_ETIMESTAMP;
  days = t.sec >= 0 ? t.sec / 86400 : -((-t.sec + 86399) / 86400);
  secs = t.sec - days * 86400;
  civil_from_days(days, &y, &m, &d);
  if (y < 0 || y > 9999)
    return SB_ETIMESTAMP;
  frac[0] = '\0';
  if (t.nsec > 0) {
    int k;
    snprintf(frac, sizeof(frac), ".%09d", (int)t.nsec);
    for (k = 9; frac[k] == '0'; k--)
      frac[k] = '\0';
  }
  n = snprintf(out, SB__TIME_BUF, "%04d-%02u-%02uT%02d:%02d:%02d%sZ", (int)y, m, d,
               (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60), frac);
  return n;
}
