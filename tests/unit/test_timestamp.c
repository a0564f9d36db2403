/*
 * test_timestamp.c - RFC 3339 timestamps of timestamp.c against Go's time package:
 * what time.Time.UnmarshalJSON accepts (its strict parseRFC3339 grammar) and what
 * MarshalJSON (RFC3339Nano in UTC) writes.
 */
#include <stdint.h>

#include "protocol.h"
#include "task.h"

static int parse(const char* s, sb__time_t* t) {
  return sb__time_parse(s, strlen(s), t);
}

/* Parses text, which must give sec/nsec, and formats that back to formatted. */
static void check(const char* text, int64_t sec, int32_t nsec, const char* formatted) {
  sb__time_t t = {0, 0};
  char buf[SB__TIME_BUF];
  int n;
  if (parse(text, &t) != 0)
    sb_test_fail(__FILE__, __LINE__, "\"%s\" rejected", text);
  if (t.sec != sec || t.nsec != nsec)
    sb_test_fail(__FILE__, __LINE__,
                 "\"%s\": got %" PRId64 ".%09d, want %" PRId64 ".%09d", text, t.sec,
                 (int)t.nsec, sec, (int)nsec);
  n = sb__time_format(t, buf);
  ASSERT_EQ(n, strlen(formatted));
  ASSERT_STR_EQ(buf, formatted);
}

TEST_IMPL(time_parse_vectors) {
  /* The protocol's vectors (PROTOCOL.md 6.1, 6.4, 6.5). */
  check("2016-02-03T04:05:06.000000007Z", INT64_C(1454472306), 7,
        "2016-02-03T04:05:06.000000007Z");
  check("2015-05-07T01:29:51Z", INT64_C(1430962191), 0, "2015-05-07T01:29:51Z");
  check("0001-01-01T00:00:00Z", SB__TIME_ZERO_SEC, 0, "0001-01-01T00:00:00Z");
  /* Around the epoch, and the ends of the four-digit years. */
  check("1970-01-01T00:00:00Z", 0, 0, "1970-01-01T00:00:00Z");
  check("1970-01-01T00:00:01Z", 1, 0, "1970-01-01T00:00:01Z");
  check("1969-12-31T23:59:59Z", -1, 0, "1969-12-31T23:59:59Z");
  check("1969-12-31T23:59:59.5Z", -1, 500000000, "1969-12-31T23:59:59.5Z");
  check("0000-01-01T00:00:00Z", INT64_C(-62167219200), 0, "0000-01-01T00:00:00Z");
  check("9999-12-31T23:59:59.999999999Z", INT64_C(253402300799), 999999999,
        "9999-12-31T23:59:59.999999999Z");
  /* Dates that catch a wrong month table or leap rule. */
  check("2000-02-29T00:00:00Z", INT64_C(951782400), 0, "2000-02-29T00:00:00Z");
  check("2000-03-01T00:00:00Z", INT64_C(951868800), 0, "2000-03-01T00:00:00Z");
  check("2024-02-29T23:59:59Z", INT64_C(1709251199), 0, "2024-02-29T23:59:59Z");
  check("2038-01-19T03:14:08Z", INT64_C(2147483648), 0, "2038-01-19T03:14:08Z");
  check("2100-03-01T00:00:00Z", INT64_C(4107542400), 0, "2100-03-01T00:00:00Z");
  check("1600-02-29T00:00:00Z", INT64_C(-11670998400), 0, "1600-02-29T00:00:00Z");
  check("0000-02-29T00:00:00Z", INT64_C(-62162121600), 0, "0000-02-29T00:00:00Z");
  check("2016-12-31T23:59:59Z", INT64_C(1483228799), 0, "2016-12-31T23:59:59Z");
}

TEST_IMPL(time_parse_fraction) {
  static const struct {
    const char* text;
    int32_t nsec;
    const char* formatted;
  } cases[] = {
      {"2016-02-03T04:05:06.1Z", 100000000, "2016-02-03T04:05:06.1Z"},
      {"2016-02-03T04:05:06.10Z", 100000000, "2016-02-03T04:05:06.1Z"},
      {"2016-02-03T04:05:06.0Z", 0, "2016-02-03T04:05:06Z"},
      {"2016-02-03T04:05:06.000000000Z", 0, "2016-02-03T04:05:06Z"},
      {"2016-02-03T04:05:06.12Z", 120000000, "2016-02-03T04:05:06.12Z"},
      {"2016-02-03T04:05:06.123Z", 123000000, "2016-02-03T04:05:06.123Z"},
      {"2016-02-03T04:05:06.1234Z", 123400000, "2016-02-03T04:05:06.1234Z"},
      {"2016-02-03T04:05:06.12345Z", 123450000, "2016-02-03T04:05:06.12345Z"},
      {"2016-02-03T04:05:06.123456Z", 123456000, "2016-02-03T04:05:06.123456Z"},
      {"2016-02-03T04:05:06.1234567Z", 123456700, "2016-02-03T04:05:06.1234567Z"},
      {"2016-02-03T04:05:06.12345678Z", 123456780, "2016-02-03T04:05:06.12345678Z"},
      {"2016-02-03T04:05:06.123456789Z", 123456789, "2016-02-03T04:05:06.123456789Z"},
      /* Digits past the ninth are dropped, not rounded. */
      {"2016-02-03T04:05:06.1234567899Z", 123456789, "2016-02-03T04:05:06.123456789Z"},
      {"2016-02-03T04:05:06.9999999999999999999999Z", 999999999,
       "2016-02-03T04:05:06.999999999Z"},
      {"2016-02-03T04:05:06.000000001Z", 1, "2016-02-03T04:05:06.000000001Z"},
      {"2016-02-03T04:05:06.0000000009Z", 0, "2016-02-03T04:05:06Z"},
      {"2016-02-03T04:05:06.5+01:00", 500000000, "2016-02-03T03:05:06.5Z"},
  };
  size_t i;
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    sb__time_t t;
    ASSERT_OK(parse(cases[i].text, &t));
    ASSERT_EQ(t.nsec, cases[i].nsec);
    check(cases[i].text, t.sec, cases[i].nsec, cases[i].formatted);
  }
}

TEST_IMPL(time_parse_offsets) {
  /* The result is UTC: local time minus the offset. */
  check("2016-02-03T04:05:06+00:00", INT64_C(1454472306), 0, "2016-02-03T04:05:06Z");
  check("2016-02-03T04:05:06-00:00", INT64_C(1454472306), 0, "2016-02-03T04:05:06Z");
  check("2016-02-03T04:05:06+01:00", INT64_C(1454468706), 0, "2016-02-03T03:05:06Z");
  check("2016-02-03T04:05:06-07:00", INT64_C(1454497506), 0, "2016-02-03T11:05:06Z");
  check("2024-02-29T12:00:00+05:30", INT64_C(1709188200), 0, "2024-02-29T06:30:00Z");
  check("2000-01-01T00:00:00-01:00", INT64_C(946688400), 0, "2000-01-01T01:00:00Z");
  check("2016-02-03T04:05:06.000000007+23:59", INT64_C(1454385966), 7,
        "2016-02-02T04:06:06.000000007Z");
  check("2016-02-03T04:05:06-23:59", INT64_C(1454558646), 0, "2016-02-04T04:04:06Z");
  /* Across a year boundary both ways. */
  check("2016-12-31T23:30:00-01:00", INT64_C(1483230600), 0, "2017-01-01T00:30:00Z");
  check("2017-01-01T00:30:00+01:00", INT64_C(1483227000), 0, "2016-12-31T23:30:00Z");
  /* A valid local time may fall outside 0000..9999 in UTC: parsed, not formattable
   * (Go's MarshalJSON refuses it the same way). */
  {
    sb__time_t t;
    char buf[SB__TIME_BUF];
    ASSERT_OK(parse("0000-01-01T00:00:00+00:01", &t));
    ASSERT_EQ(t.sec, INT64_C(-62167219260));
    ASSERT_ERR(sb__time_format(t, buf), SB_ETIMESTAMP);
    ASSERT_OK(parse("9999-12-31T23:59:59-00:01", &t));
    ASSERT_EQ(t.sec, INT64_C(253402300859));
    ASSERT_ERR(sb__time_format(t, buf), SB_ETIMESTAMP);
  }
}

TEST_IMPL(time_parse_rejects) {
  static const char* const cases[] = {
      "",
      "text-for-some-reason",
      "2016",
      "2016-02-03",
      "2016-02-03T04:05",
      "2016-02-03T04:05:06",   /* no zone */
      "2016-02-03T04:05:06.",  /* fraction without digits, and no zone */
      "2016-02-03T04:05:06.Z", /* fraction without digits */
      "2016-02-03T04:05:06.+01:00",
      "2016-02-03T04:05:06.123",
      "2016-02-03T04:05:06,123Z", /* ',' separator: strict RFC 3339 only */
      "2016-02-03T04:05:06.1.2Z",
      "2016-02-03T04:05:06.-1Z",
      /* Separators. */
      "2016-02-03 04:05:06Z",
      "2016-02-03_04:05:06Z",
      "2016/02/03T04:05:06Z",
      "2016-02-03T04.05.06Z",
      "20160203T040506Z",
      /* Case: Go accepts only 'T' and 'Z'. */
      "2016-02-03t04:05:06Z",
      "2016-02-03T04:05:06z",
      "2016-02-03t04:05:06z",
      /* Field widths: exactly 4 and 2 digits. */
      "16-02-03T04:05:06Z",
      "02016-02-03T04:05:06Z",
      "2016-2-03T04:05:06Z",
      "2016-02-3T04:05:06Z",
      "2016-02-03T4:05:06Z", /* Go's loose fallback takes this; strict RFC 3339 not */
      "2016-02-03T04:5:06Z",
      "2016-02-03T04:05:6Z",
      "+016-02-03T04:05:06Z",
      "-016-02-03T04:05:06Z",
      "2016-+2-03T04:05:06Z",
      "2016-02-03T-4:05:06Z",
      "2016-02-03T04:05: 6Z",
      " 2016-02-03T04:05:06Z",
      "2016-02-03T04:05:06Z ",
      "2016-02-03T04:05:06Zx",
      "2016-02-03T04:05:06ZZ",
      "\"2016-02-03T04:05:06Z\"",
      /* Field ranges. */
      "2016-00-03T04:05:06Z",
      "2016-13-03T04:05:06Z",
      "2016-02-00T04:05:06Z",
      "2016-01-32T04:05:06Z",
      "2016-04-31T04:05:06Z",
      "2016-06-31T04:05:06Z",
      "2016-09-31T04:05:06Z",
      "2016-11-31T04:05:06Z",
      "2016-02-30T04:05:06Z",
      "2023-02-29T00:00:00Z",
      "1900-02-29T00:00:00Z",
      "2100-02-29T00:00:00Z",
      "2016-02-03T24:00:00Z",
      "2016-02-03T04:60:00Z",
      "2016-02-03T04:05:60Z", /* no leap seconds, as Go */
      "2016-02-03T99:99:99Z",
      /* Offsets: +hh:mm or -hh:mm, hh < 24, mm < 60. */
      "2016-02-03T04:05:06+24:00",
      "2016-02-03T04:05:06-24:00",
      "2016-02-03T04:05:06+01:60",
      "2016-02-03T04:05:06+99:99",
      "2016-02-03T04:05:06+0100",
      "2016-02-03T04:05:06+01",
      "2016-02-03T04:05:06+1:00",
      "2016-02-03T04:05:06+01:0",
      "2016-02-03T04:05:06+01:000",
      "2016-02-03T04:05:06+01:00:00",
      "2016-02-03T04:05:06 01:00",
      "2016-02-03T04:05:06*01:00",
      "2016-02-03T04:05:06+01-00",
      "2016-02-03T04:05:06+0a:00",
      "2016-02-03T04:05:06Z+01:00",
      "2016-02-03T04:05:06+01:00Z",
      "2016-02-03T04:05:06UTC",
      "2016-02-03T04:05:06GMT",
      /* Non-ASCII digits and letters. */
      "\xef\xbc\x92\xef\xbc\x90\xef\xbc\x91\xef\xbc\x96-02-03T04:05:06Z",
      "2016-02-03T04:05:06\xef\xbc\xba",
  };
  size_t i;
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    sb__time_t t;
    if (parse(cases[i], &t) != SB_ETIMESTAMP)
      sb_test_fail(__FILE__, __LINE__, "\"%s\" accepted", cases[i]);
  }
}

TEST_IMPL(time_parse_prefixes_and_length) {
  /* Every proper prefix of a valid timestamp is rejected: the length, not a NUL,
   * ends the input. */
  static const char* const valid[] = {
      "2016-02-03T04:05:06.000000007Z",
      "2016-02-03T04:05:06+01:00",
      "2016-02-03T04:05:06.5-01:30",
  };
  size_t i, n;
  for (i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
    size_t len = strlen(valid[i]);
    sb__time_t t;
    ASSERT_OK(sb__time_parse(valid[i], len, &t));
    for (n = 0; n < len; n++) {
      if (sb__time_parse(valid[i], n, &t) != SB_ETIMESTAMP)
        sb_test_fail(__FILE__, __LINE__, "prefix %d of \"%s\" accepted", (int)n,
                     valid[i]);
    }
  }
  {
    /* Bytes past len are never read or needed. */
    const char text[] = "2015-05-07T01:29:51Zgarbage";
    sb__time_t t;
    ASSERT_OK(sb__time_parse(text, 20, &t));
    ASSERT_EQ(t.sec, INT64_C(1430962191));
    ASSERT_ERR(sb__time_parse(text, 21, &t), SB_ETIMESTAMP);
    /* An embedded NUL is just a bad byte. */
    ASSERT_ERR(sb__time_parse("2015-05-07T01:29:51Z\0", 21, &t), SB_ETIMESTAMP);
    ASSERT_ERR(sb__time_parse("2015-05-07T01:29:51\0Z", 21, &t), SB_ETIMESTAMP);
  }
}

TEST_IMPL(time_leap_years) {
  static const struct {
    int year;
    int leap;
  } years[] = {
      {0, 1},    {1, 0},    {4, 1},    {100, 0},  {400, 1},  {1600, 1},
      {1700, 0}, {1800, 0}, {1900, 0}, {1996, 1}, {2000, 1}, {2023, 0},
      {2024, 1}, {2100, 0}, {2400, 1}, {9996, 1}, {9999, 0},
  };
  size_t i;
  for (i = 0; i < sizeof(years) / sizeof(years[0]); i++) {
    char text[32];
    sb__time_t feb29, mar1;
    snprintf(text, sizeof(text), "%04d-02-29T00:00:00Z", years[i].year);
    ASSERT_ERR(parse(text, &feb29), years[i].leap ? 0 : SB_ETIMESTAMP);
    snprintf(text, sizeof(text), "%04d-03-01T00:00:00Z", years[i].year);
    ASSERT_OK(parse(text, &mar1));
    if (years[i].leap)
      ASSERT_EQ(mar1.sec - feb29.sec, 86400);
    snprintf(text, sizeof(text), "%04d-02-28T00:00:00Z", years[i].year);
    ASSERT_OK(parse(text, &feb29));
    ASSERT_EQ(mar1.sec - feb29.sec, years[i].leap ? 2 * 86400 : 86400);
  }
}

TEST_IMPL(time_every_day) {
  /* Walks every day of years 0000..9999 with a plain calendar counter: parsing the
   * day's text must give 86400 s more than the day before, and formatting must give
   * the text back. This checks days_from_civil and its inverse everywhere. */
  static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int y, m, d;
  int64_t want = INT64_C(-62167219200);
  for (y = 0; y <= 9999; y++) {
    int leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    for (m = 1; m <= 12; m++) {
      int last = mdays[m - 1] + (m == 2 && leap);
      for (d = 1; d <= last; d++) {
        char text[32], buf[SB__TIME_BUF];
        sb__time_t t;
        snprintf(text, sizeof(text), "%04d-%02d-%02dT00:00:00Z", y, m, d);
        if (parse(text, &t) != 0 || t.sec != want)
          sb_test_fail(__FILE__, __LINE__, "%s: got %" PRId64 ", want %" PRId64, text,
                       t.sec, want);
        if (sb__time_format(t, buf) != 20 || strcmp(buf, text) != 0)
          sb_test_fail(__FILE__, __LINE__, "%s formatted as %s", text, buf);
        want += 86400;
      }
      /* The day after the last one of the month does not exist. */
      if (y % 97 == 0) {
        char text[32];
        sb__time_t t;
        snprintf(text, sizeof(text), "%04d-%02d-%02dT00:00:00Z", y, m, last + 1);
        ASSERT_ERR(parse(text, &t), SB_ETIMESTAMP);
      }
    }
  }
  ASSERT_EQ(want, INT64_C(253402300800));
}

TEST_IMPL(time_zero_constant) {
  /* 0001-01-01 is 719162 days before 1970-01-01 (1969 years, 477 of them leap). */
  sb__time_t t;
  char buf[SB__TIME_BUF];
  ASSERT_EQ(SB__TIME_ZERO_SEC, -INT64_C(719162) * 86400);
  ASSERT_EQ(-INT64_C(719162),
            -(INT64_C(1969) * 365 + 1969 / 4 - 1969 / 100 + 1969 / 400));
  ASSERT_OK(parse("0001-01-01T00:00:00Z", &t));
  ASSERT_EQ(t.sec, SB__TIME_ZERO_SEC);
  ASSERT_EQ(t.nsec, 0);
  t.sec = SB__TIME_ZERO_SEC;
  t.nsec = 0;
  ASSERT_EQ(sb__time_format(t, buf), 20);
  ASSERT_STR_EQ(buf, "0001-01-01T00:00:00Z");
  /* The same instant written with an offset is the zero time too. */
  ASSERT_OK(parse("0001-01-01T01:00:00+01:00", &t));
  ASSERT_EQ(t.sec, SB__TIME_ZERO_SEC);
}

TEST_IMPL(time_format_range) {
  static const struct {
    int64_t sec;
    int32_t nsec;
    const char* want; /* NULL: SB_ETIMESTAMP */
  } cases[] = {
      {INT64_C(-62167219200), 0, "0000-01-01T00:00:00Z"},
      {INT64_C(-62167219201), 0, NULL},
      {INT64_C(-62167219201), 999999999, NULL},
      {INT64_C(-62135596801), 0, "0000-12-31T23:59:59Z"},
      {INT64_C(253402300799), 999999999, "9999-12-31T23:59:59.999999999Z"},
      {INT64_C(253402300800), 0, NULL},
      {INT64_MAX, 0, NULL},
      {INT64_MIN, 0, NULL},
      {INT64_MIN + 1, 0, NULL},
      {0, -1, NULL},
      {0, 1000000000, NULL},
      {0, INT32_MIN, NULL},
      {0, INT32_MAX, NULL},
      {0, 999999999, "1970-01-01T00:00:00.999999999Z"},
      {-1, 1, "1969-12-31T23:59:59.000000001Z"},
      {-86400, 0, "1969-12-31T00:00:00Z"},
      {-86401, 0, "1969-12-30T23:59:59Z"},
      {86399, 100, "1970-01-01T23:59:59.0000001Z"},
      {INT64_C(1454472306), 7, "2016-02-03T04:05:06.000000007Z"},
      {INT64_C(1454472306), 10, "2016-02-03T04:05:06.00000001Z"},
      {INT64_C(1454472306), 100000000, "2016-02-03T04:05:06.1Z"},
      {INT64_C(1454472306), 120000000, "2016-02-03T04:05:06.12Z"},
      {INT64_C(1454472306), 100000001, "2016-02-03T04:05:06.100000001Z"},
  };
  size_t i;
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    sb__time_t t;
    char buf[SB__TIME_BUF];
    int n;
    t.sec = cases[i].sec;
    t.nsec = cases[i].nsec;
    n = sb__time_format(t, buf);
    if (cases[i].want == NULL) {
      ASSERT_ERR(n, SB_ETIMESTAMP);
      continue;
    }
    ASSERT_EQ(n, strlen(cases[i].want));
    ASSERT_STR_EQ(buf, cases[i].want);
    ASSERT_LT(n, SB__TIME_BUF);
    /* And it reads back to the same instant. */
    {
      sb__time_t back;
      ASSERT_OK(sb__time_parse(buf, (size_t)n, &back));
      ASSERT_EQ(back.sec, t.sec);
      ASSERT_EQ(back.nsec, t.nsec);
    }
  }
}

TEST_IMPL(time_now) {
  sb__time_t a = sb__time_now(), b;
  char buf[SB__TIME_BUF];
  int i, nonzero = 0;
  /* Some time after this test was written (2025-11-01), within Go's range. */
  ASSERT_GT(a.sec, INT64_C(1761955200));
  ASSERT_LT(a.sec, INT64_C(253402300800));
  ASSERT_GE(a.nsec, 0);
  ASSERT_LT(a.nsec, 1000000000);
  ASSERT_EQ(sb__time_format(a, buf) >= 20, 1);
  /* The clock has sub-second resolution: across a few readings some nanosecond
   * field is not zero, and time does not jump by more than a minute. */
  for (i = 0; i < 100; i++) {
    b = sb__time_now();
    nonzero |= b.nsec != 0;
    ASSERT_GE(b.nsec, 0);
    ASSERT_LT(b.nsec, 1000000000);
    ASSERT_LT(b.sec - a.sec, 60);
    ASSERT_GT(b.sec - a.sec, -60);
  }
  ASSERT_EQ(nonzero || a.nsec != 0, 1);
}
