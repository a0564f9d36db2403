/* test_json.c - the JSON reader and writer, and RFC 3339 timestamps. */
#include <stdlib.h>
#include <string.h>

#include "protocol.h"
#include "task.h"

static void check_write(const char* in, size_t len, const char* want) {
  sb__buf_t b = {0};
  sb__json_write_string(&b, in, len);
  ASSERT_OK(b.err);
  ASSERT_MEM_EQ(b.data, b.len, want, strlen(want));
  sb__buf_free(&b);
}

TEST_IMPL(json_write_go_escaping) {
  check_write("plain", 5, "\"plain\"");
  check_write("\"\\", 2, "\"\\\"\\\\\"");
  check_write("\n\r\t\b\f", 5, "\"\\n\\r\\t\\b\\f\"");
  check_write("\x01\x1f", 2, "\"\\u0001\\u001f\"");
  check_write("\0", 1, "\"\\u0000\"");
  check_write("<>&", 3, "\"\\u003c\\u003e\\u0026\"");
  check_write("\x7f/", 2, "\"\x7f/\"");
  check_write("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9, "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
  check_write("\xe2\x80\xa8\xe2\x80\xa9", 6, "\"\\u2028\\u2029\"");
  /* Each invalid byte becomes one U+FFFD escape: a lone continuation byte, a
   * truncated sequence, an overlong form, a UTF-8 surrogate, beyond U+10FFFF. */
  check_write("\x80", 1, "\"\\ufffd\"");
  check_write("\xc3", 1, "\"\\ufffd\"");
  check_write("\xc0\xaf", 2, "\"\\ufffd\\ufffd\"");
  check_write("\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\"");
  check_write("\xf4\x90\x80\x80", 4, "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");
  check_write("a\xffz", 3, "\"a\\ufffdz\"");
}

static void check_read(const char* json, const char* want, size_t want_len) {
  sb__json_t j;
  char* s;
  size_t len;
  sb__json_init(&j, json, strlen(json));
  ASSERT_OK(sb__json_string(&j, &s, &len));
  ASSERT_MEM_EQ(s, len, want, want_len);
  ASSERT_EQ(s[len], '\0');
  free(s);
}

TEST_IMPL(json_read_strings) {
  check_read("\"abc\"", "abc", 3);
  check_read("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t", 8);
  check_read("\"\\u0041\\u00e9\\u20ac\"", "A\xc3\xa9\xe2\x82\xac", 6);
  check_read("\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80", 4);
  check_read("\"\\u0000x\"", "\0x", 2);
  /* Unpaired surrogates and invalid UTF-8 become U+FFFD, as in Go. */
  check_read("\"\\ud83dx\"", "\xef\xbf\xbdx", 4);
  check_read("\"\\ude00\"", "\xef\xbf\xbd", 3);
  check_read("\"\\ud83d\\u0041\"", "\xef\xbf\xbd" "A", 4);
  check_read("\"\xff\"", "\xef\xbf\xbd", 3);
  check_read("\"\xc3\xa9\"", "\xc3\xa9", 2);
}

TEST_IMPL(json_read_rejects) {
  static const char* bad_strings[] = {
      "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\u12g4\"", "\"a\nb\"", "\"\t\"", "abc", "\"\\",
  };
  static const char* bad_values[] = {
      "01", "+1", ".5", "1.", "1e", "-", "0x10", "NaN", "tru", "nul", "[1,]", "[,1]",
      "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{,}", "{1:2}", "[1 2]", "{\"a\":1 \"b\":2}", "",
      "]", "[", "{\"a\":[}]",
  };
  static const char* good_values[] = {
      "0", "-0", "1.5e-3", "1E+9", "-12.25", "true", "false", "null", "[]", "{}",
      "[1,[2,[3]],{\"a\":{\"b\":null}}]", "\"x\"", " {\"a\" : [ true , false ] } ",
  };
  size_t i;
  for (i = 0; i < sizeof(bad_strings) / sizeof(bad_strings[0]); i++) {
    sb__json_t j;
    char* s;
    size_t len;
    sb__json_init(&j, bad_strings[i], strlen(bad_strings[i]));
    if (sb__json_string(&j, &s, &len) != SB_EJSON)
      sb_test_fail(__FILE__, __LINE__, "string %s was accepted", bad_strings[i]);
  }
  for (i = 0; i < sizeof(bad_values) / sizeof(bad_values[0]); i++) {
    sb__json_t j;
    int r;
    sb__json_init(&j, bad_values[i], strlen(bad_values[i]));
    r = sb__json_skip(&j);
    /* A value followed by more text is caught by the caller's trailing check. */
    if (r == 0 && sb__json_ws(&j))
      sb_test_fail(__FILE__, __LINE__, "value %s was accepted", bad_values[i]);
  }
  for (i = 0; i < sizeof(good_values) / sizeof(good_values[0]); i++) {
    sb__json_t j;
    sb__json_init(&j, good_values[i], strlen(good_values[i]));
    if (sb__json_skip(&j) != 0 || !sb__json_ws(&j))
      sb_test_fail(__FILE__, __LINE__, "value %s was rejected", good_values[i]);
  }
}

TEST_IMPL(json_skip_depth_limit) {
  size_t n = 10000, i;
  char* deep = malloc(2 * n + 3);
  sb__json_t j;
  for (i = 0; i < n; i++) {
    deep[i] = '[';
    deep[n + i] = ']';
  }
  sb__json_init(&j, deep, 2 * n);
  ASSERT_OK(sb__json_skip(&j));
  /* One more level than Go allows is an error, and costs no C stack. */
  memmove(deep + 1, deep, 2 * n);
  deep[0] = '[';
  deep[2 * n + 1] = ']';
  sb__json_init(&j, deep, 2 * n + 2);
  ASSERT_ERR(sb__json_skip(&j), SB_EJSON);
  free(deep);
}

TEST_IMPL(json_object_iteration_and_keys) {
  static const char text[] = "{ \"a\" : 1 , \"b\":{\"x\":[1,{}]},\"c\":\"s\" }";
  sb__json_t j;
  char* key;
  size_t len;
  int n = 0;
  sb__json_init(&j, text, strlen(text));
  ASSERT_OK(sb__json_object_begin(&j));
  while (sb__json_object_next(&j, &key, &len) == 1) {
    ASSERT_EQ(len, 1);
    ASSERT_EQ(key[0], "abc"[n]);
    free(key);
    ASSERT_OK(sb__json_skip(&j));
    n++;
  }
  ASSERT_EQ(n, 3);
  ASSERT(sb__json_ws(&j));
  ASSERT(sb__json_key_equal("name", 4, "name"));
  ASSERT(sb__json_key_equal("NaMe", 4, "name"));
  ASSERT(!sb__json_key_equal("names", 5, "name"));
  ASSERT(!sb__json_key_equal("nam", 3, "name"));
  ASSERT(sb__json_key_equal("tag\xc5\xbf", 5, "tags"));        /* long s */
  ASSERT(sb__json_key_equal("\xe2\x84\xaa" "ey", 5, "key"));   /* Kelvin sign */
  ASSERT(!sb__json_key_equal("\xe2\x84\xaa" "ag", 5, "tag"));
  ASSERT(sb__json_key_equal("ContentType", 11, "contenttype"));
}

TEST_IMPL(time_parse_and_format) {
  static const struct {
    const char* text;
    int64_t sec;
    int32_t nsec;
    const char* formatted;
  } ok[] = {
      {"2016-02-03T04:05:06.000000007Z", INT64_C(1454472306), 7,
       "2016-02-03T04:05:06.000000007Z"},
      {"2015-05-07T01:29:51Z", INT64_C(1430962191), 0, "2015-05-07T01:29:51Z"},
      {"0001-01-01T00:00:00Z", SB__TIME_ZERO_SEC, 0, "0001-01-01T00:00:00Z"},
      {"1970-01-01T00:00:00Z", 0, 0, "1970-01-01T00:00:00Z"},
      {"1969-12-31T23:59:59.5Z", -1, 500000000, "1969-12-31T23:59:59.5Z"},
      {"2024-02-29T12:00:00+05:30", INT64_C(1709188200), 0, "2024-02-29T06:30:00Z"},
      {"2000-01-01T00:00:00-01:00", INT64_C(946688400), 0, "2000-01-01T01:00:00Z"},
      {"9999-12-31T23:59:59.123456789123Z", INT64_C(253402300799), 123456789,
       "9999-12-31T23:59:59.123456789Z"},
  };
  static const char* bad[] = {
      "", "text-for-some-reason", "2016-02-03", "2016-02-03T04:05:06", "2016-02-03T04:05:06.Z",
      "2016-02-03 04:05:06Z", "2016-13-01T00:00:00Z", "2023-02-29T00:00:00Z",
      "1900-02-29T00:00:00Z", "2016-02-03T24:00:00Z", "2016-02-03T04:60:00Z",
      "2016-02-03T04:05:60Z", "2016-02-03T04:05:06+24:00", "2016-02-03T04:05:06+01:60",
      "2016-02-03T04:05:06z", "2016-02-03t04:05:06Z", "2016-02-03T04:05:06Zx",
      "2016-02-03T04:05:06+0100", "16-02-03T04:05:06Z",
  };
  size_t i;
  for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    sb__time_t t;
    char buf[SB__TIME_BUF];
    int n;
    ASSERT_OK(sb__time_parse(ok[i].text, strlen(ok[i].text), &t));
    ASSERT_EQ(t.sec, ok[i].sec);
    ASSERT_EQ(t.nsec, ok[i].nsec);
    n = sb__time_format(t, buf);
    ASSERT_EQ(n, strlen(ok[i].formatted));
    ASSERT_STR_EQ(buf, ok[i].formatted);
  }
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    sb__time_t t;
    if (sb__time_parse(bad[i], strlen(bad[i]), &t) != SB_ETIMESTAMP)
      sb_test_fail(__FILE__, __LINE__, "timestamp \"%s\" was accepted", bad[i]);
  }
  {
    sb__time_t t = {INT64_C(253402300800), 0}; /* year 10000 */
    char buf[SB__TIME_BUF];
    ASSERT_ERR(sb__time_format(t, buf), SB_ETIMESTAMP);
    t.sec = SB__TIME_ZERO_SEC - 1; /* year 0 is still four digits: allowed */
    ASSERT_GT(sb__time_format(t, buf), 0);
    ASSERT_STR_EQ(buf, "0000-12-31T23:59:59Z");
  }
}
