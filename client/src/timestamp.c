/*
 * timestamp.c - RFC 3339 timestamps as Go's time package reads and writes them.
 *
 * Pure arithmetic on a proleptic Gregorian calendar: no timegm/mktime (Windows has no
 * timegm, and both depend on the C library's idea of time zones), so every platform
 * gives the same answer. The wall clock (sb__time_now) lives in posix/ and win/.
 */
#include <string.h>

#include "protocol.h"

/* 0000-01-01T00:00:00Z and 10000-01-01T00:00:00Z: the years Go can format. */
#define MIN_SEC INT64_C(-62167219200)
#define END_SEC INT64_C(253402300800)

/*
 * Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * days_from_civil): years are counted from March so that the leap day ends a year,
 * and eras of 400 years (146097 days) repeat exactly.
 */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  int64_t era;
  unsigned yoe, doy, doe;
  y -= m <= 2;
  era = (y >= 0 ? y : y - 399) / 400;
  yoe = (unsigned)(y - era * 400);
  doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

/* The inverse of days_from_civil. */
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

/* Exactly n decimal digits at s, within [min, max]; -1 otherwise. */
static int field(const char* s, size_t n, int min, int max) {
  int v = 0;
  size_t i;
  for (i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v < min || v > max ? -1 : v;
}

static int days_in_month(int y, int m) {
  static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (m == 2 && y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))
    return 29;
  return days[m - 1];
}

/*
 * The strict RFC 3339 grammar of Go's parseRFC3339 (the fast path of
 * time.Time.UnmarshalJSON): fixed-width fields, uppercase 'T' and 'Z', a '.' fraction
 * of at least one digit, an offset within +-23:59. When that fails Go falls back to
 * time.Parse(time.RFC3339), which today also takes a one-digit hour, a ',' fraction
 * and offsets up to 24:60; Go marks that fallback as a compatibility hole to close
 * (go.dev/issue/54580, and encoding/json/v2 rejects those forms), no Go client writes
 * them, so they are rejected here.
 */
int sb__time_parse(const char* s, size_t len, sb__time_t* out) {
  int y, mo, d, h, mi, sec, oh = 0, om = 0;
  int32_t nsec = 0;
  size_t i = 19;
  int64_t t;
  if (len < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
      s[16] != ':')
    return SB_ETIMESTAMP;
  if ((y = field(s, 4, 0, 9999)) < 0 || (mo = field(s + 5, 2, 1, 12)) < 0 ||
      (d = field(s + 8, 2, 1, days_in_month(y, mo))) < 0 ||
      (h = field(s + 11, 2, 0, 23)) < 0 || (mi = field(s + 14, 2, 0, 59)) < 0 ||
      (sec = field(s + 17, 2, 0, 59)) < 0)
    return SB_ETIMESTAMP;
  if (s[i] == '.') {
    int ndigits = 0;
    for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++, ndigits++) {
      if (ndigits < 9) /* Go drops digits past the ninth */
        nsec = nsec * 10 + (s[i] - '0');
    }
    if (ndigits == 0)
      return SB_ETIMESTAMP;
    for (; ndigits < 9; ndigits++)
      nsec *= 10;
  }
  if (len - i == 1 && s[i] == 'Z') {
    /* UTC */
  } else if (len - i == 6 && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':' &&
             (oh = field(s + i + 1, 2, 0, 23)) >= 0 &&
             (om = field(s + i + 4, 2, 0, 59)) >= 0) {
    if (s[i] == '-') {
      oh = -oh;
      om = -om;
    }
  } else {
    return SB_ETIMESTAMP;
  }
  t = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + sec;
  out->sec = t - (oh * 3600 + om * 60);
  out->nsec = nsec;
  return 0;
}

/* Writes v as exactly n decimal digits (v >= 0). */
static char* put_digits(char* p, int64_t v, int n) {
  int i;
  for (i = n - 1; i >= 0; i--) {
    p[i] = (char)('0' + v % 10);
    v /= 10;
  }
  return p + n;
}

/* Go's Time.Format(time.RFC3339Nano) of a UTC time, which MarshalJSON also uses. */
int sb__time_format(sb__time_t t, char* out) {
  int64_t days, secs, y;
  unsigned m, d;
  char* p = out;
  if (t.sec < MIN_SEC || t.sec >= END_SEC || t.nsec < 0 || t.nsec >= 1000000000)
    return SB_ETIMESTAMP;
  /* Floor division: MIN_SEC is a multiple of 86400, so this never goes below it. */
  days = (t.sec - MIN_SEC) / 86400 + MIN_SEC / 86400;
  secs = t.sec - days * 86400;
  civil_from_days(days, &y, &m, &d);
  p = put_digits(p, y, 4);
  *p++ = '-';
  p = put_digits(p, m, 2);
  *p++ = '-';
  p = put_digits(p, d, 2);
  *p++ = 'T';
  p = put_digits(p, secs / 3600, 2);
  *p++ = ':';
  p = put_digits(p, secs / 60 % 60, 2);
  *p++ = ':';
  p = put_digits(p, secs % 60, 2);
  if (t.nsec > 0) {
    int32_t frac = t.nsec;
    int n = 9;
    while (frac % 10 == 0) {
      frac /= 10;
      n--;
    }
    *p++ = '.';
    p = put_digits(p, frac, n);
  }
  *p++ = 'Z';
  *p = '\0';
  return (int)(p - out);
}
