/*
 * test_json.c - the JSON reader and writer of json.c against Go's encoding/json rules
 * (PROTOCOL.md 1.3 and 1.4): grammar, string decoding, nesting limit, object
 * iteration, the writer's escaping and key folding.
 */
#include <stdint.h>

#include "protocol.h"
#include "task.h"

/* A byte string literal and its length, embedded NULs included. */
#define S(lit) lit, sizeof(lit) - 1

/* Reads the string value in json; on success *out is owned by the caller. */
static int read_string(const char* json, size_t len, char** out, size_t* out_len) {
  sb__json_t j;
  sb__json_init(&j, json, len);
  return sb__json_string(&j, out, out_len);
}

/* Skips one value in json and tells where the cursor stopped. */
static int skip(const char* json, size_t len, size_t* consumed) {
  sb__json_t j;
  int r;
  sb__json_init(&j, json, len);
  r = sb__json_skip(&j);
  *consumed = (size_t)(j.p - json);
  return r;
}

/* Writes s with sb__json_write_string into a fresh buffer (NUL-terminated). */
static void write_string(sb__buf_t* b, const char* s, size_t len) {
  memset(b, 0, sizeof(*b));
  sb__json_write_string(b, s, len);
  sb__buf_putc(b, '\0');
  ASSERT_OK(b->err);
  b->len--;
}

/* "[" or "{\"k\":" n times, then a leaf, then the closers. */
static char* nested(size_t n, int objects) {
  size_t unit = objects ? 5 : 1, i;
  char* s = malloc(n * unit + 1 + n + 1);
  char* p = s;
  ASSERT_NOT_NULL(s);
  for (i = 0; i < n; i++) {
    memcpy(p, objects ? "{\"k\":" : "[", unit);
    p += unit;
  }
  *p++ = '1';
  for (i = 0; i < n; i++)
    *p++ = objects ? '}' : ']';
  *p = '\0';
  return s;
}

TEST_IMPL(json_ws_and_peek) {
  static const struct {
    const char* text;
    int kind;
    size_t at; /* where the cursor stands after peek */
  } cases[] = {
      {"", SB_EJSON, 0},
      {" \t\r\n", SB_EJSON, 4},
      {"\"", SB__JSON_STRING, 0},
      {" \n\t\r{", SB__JSON_OBJECT, 4},
      {"[", SB__JSON_ARRAY, 0},
      {"t", SB__JSON_TRUE, 0},
      {"f", SB__JSON_FALSE, 0},
      {"n", SB__JSON_NULL, 0},
      {"-", SB__JSON_NUMBER, 0},
      {"0", SB__JSON_NUMBER, 0},
      {"9", SB__JSON_NUMBER, 0},
      /* Not JSON whitespace, and not the start of any value. */
      {"\f1", SB_EJSON, 0},
      {"\v1", SB_EJSON, 0},
      {"\xc2\xa0"
       "1",
       SB_EJSON, 0},
      {"\xef\xbb\xbf{}", SB_EJSON, 0}, /* a BOM: Go rejects it too */
      {"+1", SB_EJSON, 0},
      {".5", SB_EJSON, 0},
      {"]", SB_EJSON, 0},
      {"}", SB_EJSON, 0},
      {",", SB_EJSON, 0},
      {":", SB_EJSON, 0},
      {"'a'", SB_EJSON, 0},
      {"T", SB_EJSON, 0},
      {"N", SB_EJSON, 0},
      {"I", SB_EJSON, 0},
      {"/", SB_EJSON, 0},
  };
  size_t i;
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    sb__json_t j;
    sb__json_init(&j, cases[i].text, strlen(cases[i].text));
    ASSERT_EQ(j.max_depth, 10000);
    ASSERT_ERR(sb__json_peek(&j), cases[i].kind);
    ASSERT_EQ(j.p - cases[i].text, cases[i].at);
    /* Peeking again changes nothing. */
    ASSERT_ERR(sb__json_peek(&j), cases[i].kind);
    ASSERT_EQ(j.p - cases[i].text, cases[i].at);
  }
  {
    sb__json_t j;
    sb__json_init(&j, " \t\n\r", 4);
    ASSERT_EQ(sb__json_ws(&j), 1);
    sb__json_init(&j, "  x ", 4);
    ASSERT_EQ(sb__json_ws(&j), 0);
    ASSERT_EQ(*j.p, 'x');
    sb__json_init(&j, "", 0);
    ASSERT_EQ(sb__json_ws(&j), 1);
  }
}

TEST_IMPL(json_skip_valid) {
  /* Each skips exactly one value; consumed is where the cursor must stop (leading
   * whitespace is consumed, trailing bytes are the caller's business). */
  static const struct {
    const char* text;
    size_t consumed;
  } cases[] = {
      {"0", 1},
      {"-0", 2},
      {"7", 1},
      {"-12", 3},
      {"1.5", 3},
      {"1e5", 3},
      {"1E+5", 4},
      {"-1.25e-05", 9},
      {"123456789012345678901234567890", 30},
      {"1e999", 5},
      {"true", 4},
      {"false", 5},
      {"null", 4},
      {"\"\"", 2},
      {"\"a\\\"b\"", 6},
      {"\"\\u00e9\\ud83d\\ude00\"", 20},
      {"\"\xff\xfe\xed\xa0\x80\"", 7}, /* invalid UTF-8 is not a grammar error */
      {"[]", 2},
      {"[ \n]", 4},
      {"{}", 2},
      {"{\t}", 3},
      {"[1,2,3]", 7},
      {"[ 1 , [ ] , { } , \"x\" ]", 23},
      {"{\"a\":1}", 7},
      {"{ \"a\" : [ true , false , null ] , \"b\" : { \"c\" : \"d\" } }", 55},
      {"{\"a\":1,\"a\":2}", 13},
      {"{\"\\u0041\\\"\":{}}", 15},
      {" \n\t\r[\n]", 7},
      {"[[[[]]],[[]]]", 13},
      /* The value ends before these bytes; the caller rejects them. */
      {"1 ", 1},
      {"[] x", 2},
      {"01", 1},
      {"-01", 2},
      {"0.5.3", 3},
      {"truex", 4},
      {"1x", 1},
      {"[1]]", 3},
      {"{}{}", 2},
  };
  size_t i, consumed;
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    if (skip(cases[i].text, strlen(cases[i].text), &consumed) != 0)
      sb_test_fail(__FILE__, __LINE__, "case %d: %s rejected", (int)i, cases[i].text);
    ASSERT_EQ(consumed, cases[i].consumed);
  }
}

TEST_IMPL(json_skip_invalid) {
  static const char* const cases[] = {
      "",
      " ",
      "-",
      "+1",
      ".5",
      "1.",
      "1.e5",
      "1e",
      "1e+",
      "1E-",
      "-x",
      "--1",
      "NaN",
      "Infinity",
      "-Infinity",
      "nul",
      "tru",
      "fals",
      "True",
      "FALSE",
      "NULL",
      "nUll",
      "[",
      "[1",
      "[1,",
      "[1,]",
      "[,1]",
      "[,]",
      "[1 2]",
      "[1,,2]",
      "[01]",
      "[-01]",
      "[1.]",
      "[-]",
      "[tru]",
      "[nulll]",
      "[truefalse]",
      "[\"a\" \"b\"]",
      "[1}",
      "]",
      "}",
      ",",
      ":",
      "{",
      "{\"a\"",
      "{\"a\":",
      "{\"a\":}",
      "{\"a\" 1}",
      "{\"a\":1,}",
      "{,}",
      "{,\"a\":1}",
      "{1:2}",
      "{a:1}",
      "{'a':1}",
      "{\"a\":1 \"b\":2}",
      "{\"a\":1;\"b\":2}",
      "{\"a\":1]",
      "{\"a\"::1}",
      "{\"a\":1,,\"b\":2}",
      "{\"a\",1}",
      "{\"a\"}",
      "{null:1}",
      "\"abc",
      "\"",
      "\"\\",
      "\"\\\"",
      "\"\\x\"",
      "\"\\u12\"",
      "\"\\u12G4\"",
      "\"\\U0041\"",
      "\"\t\"",
      "\"\n\"",
      "[\"\x1f\"]",
      "{\"\x01\":1}",
      "/* */ 1",
      "// x\n1",
      "'a'",
      "{\"a\":[}",
      "[{]}",
      "[{\"a\":1]}",
      ("\xef\xbb\xbf"
       "1"),
  };
  size_t i, consumed;
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    int r = skip(cases[i], strlen(cases[i]), &consumed);
    if (r != SB_EJSON)
      sb_test_fail(__FILE__, __LINE__, "case %d: \"%s\" gave %d", (int)i, cases[i], r);
  }
}

TEST_IMPL(json_numbers) {
  /* Each number alone inside an array, so that it must be consumed entirely. */
  static const char* const valid[] = {
      "0",     "-0",         "1",     "-1",    "9",
      "10",    "1234567890", "0.0",   "0.5",   "-0.5",
      "1.25",  "1e0",        "1E0",   "1e+0",  "1e-0",
      "1e10",  "0e5",        "-0E-5", "0.0e0", "1.5e300",
      "1e999", "-1e-999",    "100",   "1.000", "9007199254740993",
  };
  static const char* const invalid[] = {
      "-",     "+",     "+1",  "01",    "-01",  "00",       "000", "1.",  ".1",
      "-.1",   "1.e1",  "1e",  "1e+",   "1E-",  "e1",       "E1",  "0x1", "0X1",
      "1_000", "--1",   "1-",  "1e1.5", "1ee1", "1e++1",    "0.",  "-0.", "Infinity",
      "NaN",   "1.5.2", "0b1", "1f",    "1d",   "\xd9\xa1", /* ARABIC-INDIC DIGIT ONE */
  };
  char text[64];
  size_t i, consumed;
  for (i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
    snprintf(text, sizeof(text), "[%s]", valid[i]);
    if (skip(text, strlen(text), &consumed) != 0 || consumed != strlen(text))
      sb_test_fail(__FILE__, __LINE__, "number %s rejected", valid[i]);
    /* At top level the number alone is consumed completely too. */
    ASSERT_OK(skip(valid[i], strlen(valid[i]), &consumed));
    ASSERT_EQ(consumed, strlen(valid[i]));
  }
  for (i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
    snprintf(text, sizeof(text), "[%s]", invalid[i]);
    if (skip(text, strlen(text), &consumed) != SB_EJSON)
      sb_test_fail(__FILE__, __LINE__, "number %s accepted", invalid[i]);
    snprintf(text, sizeof(text), "{\"n\":%s}", invalid[i]);
    if (skip(text, strlen(text), &consumed) != SB_EJSON)
      sb_test_fail(__FILE__, __LINE__, "number %s accepted in an object", invalid[i]);
  }
}

TEST_IMPL(json_skip_depth) {
  size_t consumed;
  char* s;
  int objects;
  /* Go's limit is 10000 levels: 10000 are fine, 10001 are an error. */
  for (objects = 0; objects <= 1; objects++) {
    s = nested(10000, objects);
    ASSERT_OK(skip(s, strlen(s), &consumed));
    ASSERT_EQ(consumed, strlen(s));
    free(s);
    s = nested(10001, objects);
    ASSERT_ERR(skip(s, strlen(s), &consumed), SB_EJSON);
    free(s);
  }
  /* Mixed containers, alternating. */
  {
    size_t n = 10000, i;
    char* p;
    s = malloc(n * 6 + 2);
    ASSERT_NOT_NULL(s);
    p = s;
    for (i = 0; i < n; i++) {
      if (i % 2 == 0) {
        *p++ = '[';
      } else {
        memcpy(p, "{\"\":", 4);
        p += 4;
      }
    }
    *p++ = '0';
    for (i = n; i-- > 0;)
      *p++ = i % 2 == 0 ? ']' : '}';
    ASSERT_OK(skip(s, (size_t)(p - s), &consumed));
    ASSERT_EQ(consumed, (size_t)(p - s));
    free(s);
  }
  /* A million opening brackets fail at level 10001, without recursion. */
  {
    size_t n = 1000000;
    s = malloc(n);
    ASSERT_NOT_NULL(s);
    memset(s, '[', n);
    ASSERT_ERR(skip(s, n, &consumed), SB_EJSON);
    /* 10000 levels then end of input: an error too (unterminated). */
    ASSERT_ERR(skip(s, 10000, &consumed), SB_EJSON);
    free(s);
  }
  /* A closer of the wrong kind deep inside. */
  s = nested(5000, 0);
  s[5000 + 1 + 2000] = '}';
  ASSERT_ERR(skip(s, strlen(s), &consumed), SB_EJSON);
  free(s);
}

TEST_IMPL(json_skip_max_depth_field) {
  sb__json_t j;
  char* s;
  /* The limit is the caller's to change: lower ... */
  sb__json_init(&j, S("[[[1]]]"));
  j.max_depth = 3;
  ASSERT_OK(sb__json_skip(&j));
  sb__json_init(&j, S("[[[[1]]]]"));
  j.max_depth = 3;
  ASSERT_ERR(sb__json_skip(&j), SB_EJSON);
  sb__json_init(&j, S("[]"));
  j.max_depth = 0;
  ASSERT_ERR(sb__json_skip(&j), SB_EJSON);
  sb__json_init(&j, S("\"scalars need no depth\""));
  j.max_depth = 0;
  ASSERT_OK(sb__json_skip(&j));
  /* ... or higher, past what fits on the C stack. */
  s = nested(50000, 1);
  sb__json_init(&j, s, strlen(s));
  j.max_depth = 50000;
  ASSERT_OK(sb__json_skip(&j));
  ASSERT_EQ(j.p, s + strlen(s));
  sb__json_init(&j, s, strlen(s));
  j.max_depth = 49999;
  ASSERT_ERR(sb__json_skip(&j), SB_EJSON);
  free(s);
}

TEST_IMPL(json_depth_counts_whole_document) {
  /* Go counts nesting over the whole document: inside an object opened with
   * sb__json_object_begin, a skipped value may nest 9999 more levels, not 10000. */
  size_t n;
  for (n = 9999; n <= 10000; n++) {
    char* inner = nested(n, 0);
    size_t len = strlen(inner) + 7;
    char* s = malloc(len + 1);
    sb__json_t j;
    char* key;
    size_t key_len, consumed;
    ASSERT_NOT_NULL(s);
    memcpy(s, "{\"a\":", 5);
    memcpy(s + 5, inner, strlen(inner));
    memcpy(s + len - 2, "}", 2);
    len--;
    /* Skipping the whole document agrees. */
    ASSERT_ERR(skip(s, len, &consumed), n == 9999 ? 0 : SB_EJSON);
    sb__json_init(&j, s, len);
    ASSERT_OK(sb__json_object_begin(&j));
    ASSERT_EQ(j.max_depth, 9999);
    ASSERT_EQ(sb__json_object_next(&j, &key, &key_len), 1);
    ASSERT_STR_EQ(key, "a");
    free(key);
    if (n == 9999) {
      ASSERT_OK(sb__json_skip(&j));
      ASSERT_EQ(sb__json_object_next(&j, &key, &key_len), 0);
      ASSERT_NULL(key);
      /* The closing brace gives the level back. */
      ASSERT_EQ(j.max_depth, 10000);
      ASSERT_EQ(j.p, s + len);
    } else {
      ASSERT_ERR(sb__json_skip(&j), SB_EJSON);
    }
    free(inner);
    free(s);
  }
  {
    /* Nested objects read with object_begin take a level each. */
    sb__json_t j;
    char* key;
    size_t key_len;
    sb__json_init(&j, S("{\"a\":{\"b\":[]}}"));
    j.max_depth = 2;
    ASSERT_OK(sb__json_object_begin(&j));
    ASSERT_EQ(sb__json_object_next(&j, &key, &key_len), 1);
    free(key);
    ASSERT_OK(sb__json_object_begin(&j));
    ASSERT_EQ(j.max_depth, 0);
    ASSERT_EQ(sb__json_object_next(&j, &key, &key_len), 1);
    free(key);
    ASSERT_ERR(sb__json_skip(&j), SB_EJSON); /* "[]" would be level 3 */
    sb__json_init(&j, S("{}"));
    j.max_depth = 0;
    ASSERT_ERR(sb__json_object_begin(&j), SB_EJSON);
  }
}

TEST_IMPL(json_string_escapes) {
  static const struct {
    const char* json;
    size_t json_len;
    const char* want;
    size_t want_len;
  } cases[] = {
      {S("\"\""), S("")},
      {S("\"abc\""), S("abc")},
      {S("\"\\\"\""), S("\"")},
      {S("\"\\\\\""), S("\\")},
      {S("\"\\/\""), S("/")},
      {S("\"/\""), S("/")},
      {S("\"\\b\\f\\n\\r\\t\""), S("\b\f\n\r\t")},
      {S("\"a\\nb\\\\c\\\"d\""), S("a\nb\\c\"d")},
      {S("\"\\u0041\\u00e9\\u20AC\""), S("A\xc3\xa9\xe2\x82\xac")},
      {S("\"\\u0000\""), S("\0")},
      {S("\"a\\u0000b\""), S("a\0b")},
      {S("\"\\u001f\\u007f\""), S("\x1f\x7f")},
      {S("\"\\u0080\""), S("\xc2\x80")},
      {S("\"\\u07FF\""), S("\xdf\xbf")},
      {S("\"\\u0800\""), S("\xe0\xa0\x80")},
      {S("\"\\uFFFF\""), S("\xef\xbf\xbf")},
      {S("\"\\ufffd\""), S("\xef\xbf\xbd")},
      {S("\"\\u2028\\u2029\""), S("\xe2\x80\xa8\xe2\x80\xa9")},
      {S("\"\\u003c\\u003E\\u0026\""), S("<>&")},
      {S("\"<>&\""), S("<>&")},
      {S("\"\x7f\""), S("\x7f")},
      {S("\"h\xc3\xa9llo \xf0\x9f\x98\x80\""), S("h\xc3\xa9llo \xf0\x9f\x98\x80")},
      {S("\"\xe2\x80\xa8\""), S("\xe2\x80\xa8")},
      {S("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0020\""), S("\"\\/\b\f\n\r\t ")},
  };
  size_t i;
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char* out;
    size_t out_len = 12345;
    ASSERT_OK(read_string(cases[i].json, cases[i].json_len, &out, &out_len));
    ASSERT_MEM_EQ(out, out_len, cases[i].want, cases[i].want_len);
    ASSERT_EQ(out[out_len], '\0');
    free(out);
  }
}

TEST_IMPL(json_string_surrogates) {
  /* Go's unquote: a high surrogate escape pairs with a following low surrogate escape;
   * anything else is U+FFFD and the next escape is read on its own. */
  static const struct {
    const char* json;
    size_t json_len;
    const char* want;
    size_t want_len;
  } cases[] = {
      {S("\"\\ud83d\\ude00\""), S("\xf0\x9f\x98\x80")},
      {S("\"\\uD83D\\uDE00\""), S("\xf0\x9f\x98\x80")},
      {S("\"\\ud800\\udc00\""), S("\xf0\x90\x80\x80")},
      {S("\"\\udbff\\udfff\""), S("\xf4\x8f\xbf\xbf")},
      {S("\"x\\ud83d\\ude00y\""), S("x\xf0\x9f\x98\x80y")},
      {S("\"\\ud800\""), S("\xef\xbf\xbd")},
      {S("\"\\udbff\""), S("\xef\xbf\xbd")},
      {S("\"\\udc00\""), S("\xef\xbf\xbd")},
      {S("\"\\udfff\""), S("\xef\xbf\xbd")},
      {S("\"\\ud800x\""), S("\xef\xbf\xbdx")},
      {S("\"\\ud800\\u0041\""), S("\xef\xbf\xbd"
                                  "A")},
      {S("\"\\ud800\\ud800\""), S("\xef\xbf\xbd\xef\xbf\xbd")},
      {S("\"\\ud800\\ud800\\udc00\""), S("\xef\xbf\xbd\xf0\x90\x80\x80")},
      {S("\"\\ude00\\ud83d\""), S("\xef\xbf\xbd\xef\xbf\xbd")},
      {S("\"\\ud800\\n\""), S("\xef\xbf\xbd\n")},
      {S("\"\\ud800\\\\udc00\""), S("\xef\xbf\xbd\\udc00")},
      {S("\"\\ud800\\uE000\""), S("\xef\xbf\xbd\xee\x80\x80")},
      {S("\"\\ud83d\xed\xb8\x80\""),
       S("\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd")},
      /* Surrogates written as raw UTF-8 are invalid bytes, one U+FFFD each. */
      {S("\"\xed\xa0\x80\""), S("\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd")},
  };
  size_t i;
  char* out;
  size_t out_len;
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    ASSERT_OK(read_string(cases[i].json, cases[i].json_len, &out, &out_len));
    ASSERT_MEM_EQ(out, out_len, cases[i].want, cases[i].want_len);
    free(out);
  }
  /* A broken escape after a high surrogate is still an error. */
  ASSERT_ERR(read_string(S("\"\\ud800\\udc0\""), &out, &out_len), SB_EJSON);
  ASSERT_ERR(read_string(S("\"\\ud800\\uzzzz\""), &out, &out_len), SB_EJSON);
  ASSERT_ERR(read_string(S("\"\\ud800\\u"), &out, &out_len), SB_EJSON);
}

TEST_IMPL(json_string_invalid_utf8) {
  /* Each byte that utf8.DecodeRune rejects becomes one U+FFFD. */
#define R "\xef\xbf\xbd"
  static const struct {
    const char* raw;
    size_t raw_len;
    const char* want;
    size_t want_len;
  } cases[] = {
      {S("\x80"), S(R)},
      {S("\xbf"), S(R)},
      {S("\xc0\x80"), S(R R)},
      {S("\xc1\xbf"), S(R R)},
      {S("\xc2"), S(R)},
      {S("\xc2\x41"), S(R "A")},
      {S("\xc2\x80"), S("\xc2\x80")},
      {S("\xdf\xbf"), S("\xdf\xbf")},
      {S("\xe0\x80\x80"), S(R R R)},
      {S("\xe0\x9f\xbf"), S(R R R)},
      {S("\xe0\xa0\x80"), S("\xe0\xa0\x80")},
      {S("\xed\x9f\xbf"), S("\xed\x9f\xbf")},
      {S("\xed\xa0\x80"), S(R R R)},
      {S("\xed\xbf\xbf"), S(R R R)},
      {S("\xee\x80\x80"), S("\xee\x80\x80")},
      {S("\xef\xbf\xbd"), S("\xef\xbf\xbd")},
      {S("\xef\xbf\xbf"), S("\xef\xbf\xbf")},
      {S("\xe2\x82"), S(R R)},
      {S("\xe2\x82"
         "A"),
       S(R R "A")},
      {S("\xe2\x82\xac\xac"), S("\xe2\x82\xac" R)},
      {S("\xf0\x80\x80\x80"), S(R R R R)},
      {S("\xf0\x8f\xbf\xbf"), S(R R R R)},
      {S("\xf0\x90\x80\x80"), S("\xf0\x90\x80\x80")},
      {S("\xf4\x8f\xbf\xbf"), S("\xf4\x8f\xbf\xbf")},
      {S("\xf4\x90\x80\x80"), S(R R R R)},
      {S("\xf5\x80\x80\x80"), S(R R R R)},
      {S("\xf8\x88\x80\x80\x80"), S(R R R R R)},
      {S("\xf0\x9f\x98"), S(R R R)},
      {S("\xfe"), S(R)},
      {S("\xff"), S(R)},
      {S("a\xff"
         "b\xfe"
         "c"),
       S("a" R "b" R "c")},
      {S("\xc3\xa9\xc3"), S("\xc3\xa9" R)},
      /* An invalid byte next to an escape. */
      {S("\xff\\n\xff"), S(R "\n" R)},
  };
#undef R
  size_t i;
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char json[32];
    char* out;
    size_t out_len;
    json[0] = '"';
    memcpy(json + 1, cases[i].raw, cases[i].raw_len);
    json[1 + cases[i].raw_len] = '"';
    ASSERT_OK(read_string(json, cases[i].raw_len + 2, &out, &out_len));
    ASSERT_MEM_EQ(out, out_len, cases[i].want, cases[i].want_len);
    free(out);
  }
}

TEST_IMPL(json_string_errors) {
  static const struct {
    const char* json;
    size_t len;
  } cases[] = {
      /* Not a string. */
      {S("")},
      {S("   ")},
      {S("abc")},
      {S("'abc'")},
      {S("1")},
      {S("{}")},
      {S("null")},
      /* Unterminated. */
      {S("\"")},
      {S("\"abc")},
      {S("\"\\")},
      {S("\"\\\"")},
      {S("\"abc\\\"")},
      {S("\"\\u")},
      {S("\"\\u00")},
      {S("\"\\u0041")},
      /* Escapes RFC 8259 does not have. */
      {S("\"\\a\"")},
      {S("\"\\x41\"")},
      {S("\"\\'\"")},
      {S("\"\\0\"")},
      {S("\"\\U0041\"")},
      {S("\"\\v\"")},
      {S("\"\\e\"")},
      {S("\"\\ \"")},
      {S("\"\\N\"")},
      {S("\"\\B\"")},
      {S("\"\\\xc3\xa9\"")},
      /* \u needs exactly four hex digits. */
      {S("\"\\u\"")},
      {S("\"\\u1\"")},
      {S("\"\\u12\"")},
      {S("\"\\u123\"")},
      {S("\"\\u123g\"")},
      {S("\"\\uGGGG\"")},
      {S("\"\\u+123\"")},
      {S("\"\\u-123\"")},
      {S("\"\\u 123\"")},
  };
  size_t i;
  int c;
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char* out = (char*)"untouched";
    size_t out_len;
    if (read_string(cases[i].json, cases[i].len, &out, &out_len) != SB_EJSON)
      sb_test_fail(__FILE__, __LINE__, "case %d: %s accepted", (int)i, cases[i].json);
    ASSERT_NULL(out);
  }
  /* Every raw control byte is an error, anywhere in the string; DEL is not. */
  for (c = 0; c <= 0x7f; c++) {
    char json[5] = {'"', 'a', (char)c, 'b', '"'};
    char* out;
    size_t out_len;
    int r = read_string(json, sizeof(json), &out, &out_len);
    size_t consumed;
    if (c < 0x20) {
      ASSERT_ERR(r, SB_EJSON);
      ASSERT_ERR(skip(json, sizeof(json), &consumed), SB_EJSON);
    } else if (c != '"' && c != '\\') {
      ASSERT_OK(r);
      ASSERT_EQ(out_len, 3);
      ASSERT_EQ((unsigned char)out[1], c);
      free(out);
    } else {
      /* "a" then junk for the caller, or "a\b" with the \b escape. */
      ASSERT_OK(r);
      ASSERT_EQ(out_len, c == '"' ? 1 : 2);
      free(out);
    }
  }
}

TEST_IMPL(json_string_cursor) {
  sb__json_t j;
  char* out;
  size_t out_len;
  const char text[] = " \n\"ab\\\"c\" , \"d\"";
  sb__json_init(&j, text, sizeof(text) - 1);
  ASSERT_OK(sb__json_string(&j, &out, &out_len));
  ASSERT_STR_EQ(out, "ab\"c");
  ASSERT_EQ(out_len, 4);
  free(out);
  ASSERT_EQ(j.p - text, 9); /* right after the closing quote */
  /* A failed read leaves nothing allocated. */
  ASSERT_ERR(sb__json_string(&j, &out, &out_len), SB_EJSON);
  ASSERT_NULL(out);
  j.p++;
  ASSERT_OK(sb__json_string(&j, &out, &out_len));
  ASSERT_STR_EQ(out, "d");
  free(out);
  ASSERT_EQ(sb__json_ws(&j), 1);
  /* A long string, crossing every growth step of the buffer. */
  {
    size_t n = 100000, k;
    char* s = malloc(n + 2);
    ASSERT_NOT_NULL(s);
    s[0] = '"';
    for (k = 1; k <= n; k++)
      s[k] = (char)('a' + k % 26);
    s[n + 1] = '"';
    ASSERT_OK(read_string(s, n + 2, &out, &out_len));
    ASSERT_MEM_EQ(out, out_len, s + 1, n);
    free(out);
    free(s);
  }
}

TEST_IMPL(json_object_iterate) {
  static const char text[] =
      " { \"name\" : \"a\" , \"NAME\":\"b\", \"tags\" : "
      "{\"x\":[1,{\"y\":[]}],\"z\":null}"
      " , \"n\": null,\"num\":-1.5e3 ,\"t\":true, \"empty\" : {}, \"name\":\"c\","
      "\"n\\u0061me\\u0000\":\"d\" } \n";
  static const char* const keys[] = {"name", "NAME",  "tags", "n",   "num",
                                     "t",    "empty", "name", "name"};
  static const size_t key_lens[] = {4, 4, 4, 1, 3, 1, 5, 4, 5};
  sb__json_t j;
  char* key;
  char* value;
  size_t key_len, value_len, n = 0;
  int r;
  sb__json_init(&j, text, sizeof(text) - 1);
  ASSERT_OK(sb__json_object_begin(&j));
  while ((r = sb__json_object_next(&j, &key, &key_len)) == 1) {
    ASSERT_LT(n, sizeof(keys) / sizeof(keys[0]));
    ASSERT_MEM_EQ(key, key_len, keys[n], key_lens[n]);
    ASSERT_EQ(key[key_len], '\0');
    if (sb__json_key_equal(key, key_len, "name")) {
      ASSERT_OK(sb__json_string(&j, &value, &value_len));
      ASSERT_EQ(value_len, 1);
      ASSERT_EQ(value[0], n == 0 ? 'a' : n == 1 ? 'b' : 'c');
      free(value);
    } else if (strcmp(key, "n") == 0) {
      ASSERT_EQ(sb__json_null(&j), 1);
    } else {
      ASSERT_OK(sb__json_skip(&j));
    }
    free(key);
    n++;
  }
  ASSERT_EQ(r, 0);
  ASSERT_NULL(key);
  ASSERT_EQ(n, sizeof(keys) / sizeof(keys[0]));
  ASSERT_EQ(j.max_depth, 10000);
  ASSERT_EQ(j.p[0], ' ');
  ASSERT_EQ(sb__json_ws(&j), 1);

  /* Empty objects. */
  sb__json_init(&j, S("{}"));
  ASSERT_OK(sb__json_object_begin(&j));
  ASSERT_EQ(sb__json_object_next(&j, &key, &key_len), 0);
  ASSERT_EQ(sb__json_ws(&j), 1);
  sb__json_init(&j, S("{ \n\t\r}"));
  ASSERT_OK(sb__json_object_begin(&j));
  ASSERT_EQ(sb__json_object_next(&j, &key, &key_len), 0);
  ASSERT_EQ(sb__json_ws(&j), 1);

  /* A nested object read member by member, and the outer one going on after it. */
  sb__json_init(&j, S("{\"a\":{\"b\":\"c\" ,\"d\":{}} , \"e\":\"f\"}"));
  ASSERT_OK(sb__json_object_begin(&j));
  ASSERT_EQ(sb__json_object_next(&j, &key, &key_len), 1);
  ASSERT_STR_EQ(key, "a");
  free(key);
  ASSERT_OK(sb__json_object_begin(&j));
  ASSERT_EQ(sb__json_object_next(&j, &key, &key_len), 1);
  ASSERT_STR_EQ(key, "b");
  free(key);
  ASSERT_OK(sb__json_string(&j, &value, &value_len));
  ASSERT_STR_EQ(value, "c");
  free(value);
  ASSERT_EQ(sb__json_object_next(&j, &key, &key_len), 1);
  ASSERT_STR_EQ(key, "d");
  free(key);
  ASSERT_OK(sb__json_object_begin(&j));
  ASSERT_EQ(sb__json_object_next(&j, &key, &key_len), 0);
  ASSERT_EQ(sb__json_object_next(&j, &key, &key_len), 0);
  ASSERT_EQ(sb__json_object_next(&j, &key, &key_len), 1);
  ASSERT_STR_EQ(key, "e");
  free(key);
  ASSERT_OK(sb__json_string(&j, &value, &value_len));
  ASSERT_STR_EQ(value, "f");
  free(value);
  ASSERT_EQ(sb__json_object_next(&j, &key, &key_len), 0);
  ASSERT_EQ(sb__json_ws(&j), 1);
  ASSERT_EQ(j.max_depth, 10000);

  /* Values of every kind end in a byte the comma check knows. */
  sb__json_init(&j, S("{\"a\":\"{\",\"b\":[\"{\"],\"c\":1,\"d\":false,\"e\":null}"));
  ASSERT_OK(sb__json_object_begin(&j));
  for (n = 0; (r = sb__json_object_next(&j, &key, &key_len)) == 1; n++) {
    free(key);
    ASSERT_OK(sb__json_skip(&j));
  }
  ASSERT_EQ(r, 0);
  ASSERT_EQ(n, 5);
}

TEST_IMPL(json_object_errors) {
  /* Each fails somewhere while its members are read and their values skipped. */
  static const char* const cases[] = {
      "{\"a\":1,}",
      "{,\"a\":1}",
      "{,}",
      "{\"a\" 1}",
      "{\"a\"}",
      "{\"a\":1 \"b\":2}",
      "{\"a\":1;\"b\":2}",
      "{1:1}",
      "{a:1}",
      "{'a':1}",
      "{\"a\":1",
      "{\"a\":1,",
      "{\"a\"",
      "{\"a\":",
      "{",
      "{\"a\":1]",
      "{\"a\",1}",
      "{\"a\"::1}",
      "{\"\x01\":1}",
      "{\"a\":1,,\"b\":2}",
      "{\"a\\\":1}",
      "{\"a\\x\":1}",
      "{\"a\":1 , }",
      "{null:1}",
      "{\"a\":1}}", /* fine: the extra brace is the caller's to reject */
  };
  size_t i;
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    sb__json_t j;
    char* key;
    size_t key_len;
    int r;
    sb__json_init(&j, cases[i], strlen(cases[i]));
    ASSERT_OK(sb__json_object_begin(&j));
    while ((r = sb__json_object_next(&j, &key, &key_len)) == 1) {
      free(key);
      key = NULL;
      if ((r = sb__json_skip(&j)) != 0)
        break;
    }
    if (strcmp(cases[i], "{\"a\":1}}") == 0) {
      ASSERT_EQ(r, 0);
      ASSERT_EQ(*j.p, '}');
      continue;
    }
    if (r != SB_EJSON)
      sb_test_fail(__FILE__, __LINE__, "case %d: %s gave %d", (int)i, cases[i], r);
    if (r < 0 && key != NULL)
      sb_test_fail(__FILE__, __LINE__, "case %d: key left after an error", (int)i);
  }
  {
    static const char* const not_objects[] = {"", " ", "[]", "\"{\"", "null", "1", "}"};
    for (i = 0; i < sizeof(not_objects) / sizeof(not_objects[0]); i++) {
      sb__json_t j;
      sb__json_init(&j, not_objects[i], strlen(not_objects[i]));
      ASSERT_ERR(sb__json_object_begin(&j), SB_EJSON);
    }
  }
}

TEST_IMPL(json_null) {
  static const struct {
    const char* text;
    int want;
    size_t at; /* cursor afterwards */
  } cases[] = {
      {"null", 1, 4}, {" \nnull,", 1, 6}, {"nullx", 1, 4},    {"nul", 0, 0},
      {"Null", 0, 0}, {"NULL", 0, 0},     {"\"null\"", 0, 0}, {"0", 0, 0},
      {"", 0, 0},     {"  ", 0, 2},       {"true", 0, 0},     {"n", 0, 0},
  };
  size_t i;
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    sb__json_t j;
    sb__json_init(&j, cases[i].text, strlen(cases[i].text));
    ASSERT_EQ(sb__json_null(&j), cases[i].want);
    if (cases[i].want)
      ASSERT_EQ(j.p - cases[i].text, cases[i].at);
    else /* only whitespace may have been passed */
      ASSERT_LE(j.p - cases[i].text, cases[i].at);
  }
}

/* What Go writes for one ASCII byte, spelled out from the rules of PROTOCOL.md 1.4. */
static const char* go_ascii(int c, char* buf) {
  switch (c) {
  case '"':
    return "\\\"";
  case '\\':
    return "\\\\";
  case '\n':
    return "\\n";
  case '\r':
    return "\\r";
  case '\t':
    return "\\t";
  case '\b':
    return "\\b";
  case '\f':
    return "\\f";
  case '<':
    return "\\u003c";
  case '>':
    return "\\u003e";
  case '&':
    return "\\u0026";
  }
  if (c < 0x20) {
    snprintf(buf, 8, "\\u%04x", (unsigned)c);
    return buf;
  }
  buf[0] = (char)c;
  buf[1] = '\0';
  return buf;
}

TEST_IMPL(json_write_ascii) {
  int c;
  for (c = 0; c < 0x80; c++) {
    char in = (char)c, buf[8], want[16];
    sb__buf_t b;
    snprintf(want, sizeof(want), "\"%s\"", go_ascii(c, buf));
    write_string(&b, &in, 1);
    ASSERT_MEM_EQ(b.data, b.len, want, strlen(want));
    sb__buf_free(&b);
  }
}

TEST_IMPL(json_write_vectors) {
#define R "\\ufffd"
  static const struct {
    const char* in;
    size_t in_len;
    const char* want;
  } cases[] = {
      {S(""), "\"\""},
      {S("abc"), "\"abc\""},
      {S("a\"b\\c/d"), "\"a\\\"b\\\\c/d\""},
      {S("<a&b>"), "\"\\u003ca\\u0026b\\u003e\""},
      {S("\b\f\n\r\t"), "\"\\b\\f\\n\\r\\t\""},
      {S("\x00\x01\x0b\x0e\x1b\x1f\x7f"),
       "\"\\u0000\\u0001\\u000b\\u000e\\u001b\\u001f\x7f\""},
      {S("a\0b"), "\"a\\u0000b\""},
      {S("text/plain; charset=utf-8"), "\"text/plain; charset=utf-8\""},
      /* U+2028 and U+2029 are escaped; their neighbours are not. */
      {S("\xe2\x80\xa8"), "\"\\u2028\""},
      {S("\xe2\x80\xa9"), "\"\\u2029\""},
      {S("x\xe2\x80\xa8y\xe2\x80\xa9z"), "\"x\\u2028y\\u2029z\""},
      {S("\xe2\x80\xa7\xe2\x80\xaa"), "\"\xe2\x80\xa7\xe2\x80\xaa\""},
      /* Valid UTF-8 is written raw, U+FFFD included. */
      {S("h\xc3\xa9llo"), "\"h\xc3\xa9llo\""},
      {S("\xf0\x9f\x98\x80"), "\"\xf0\x9f\x98\x80\""},
      {S("\xef\xbf\xbd\xef\xbf\xbf"), "\"\xef\xbf\xbd\xef\xbf\xbf\""},
      {S("\xf4\x8f\xbf\xbf\xe0\xa0\x80\xed\x9f\xbf"),
       "\"\xf4\x8f\xbf\xbf\xe0\xa0\x80\xed\x9f\xbf\""},
      /* Each invalid byte is \ufffd. */
      {S("\xff"), "\"" R "\""},
      {S("a\x80"
         "b"),
       "\"a" R "b\""},
      {S("\xc0\x80"), "\"" R R "\""},
      {S("\xc2"), "\"" R "\""},
      {S("\xed\xa0\x80"), "\"" R R R "\""},
      {S("\xf4\x90\x80\x80"), "\"" R R R R "\""},
      {S("\xe2\x82"), "\"" R R "\""},
      {S("\xe2\x80"), "\"" R R "\""},
      {S("\xf0\x9f\x98"), "\"" R R R "\""},
      {S("\xf8\x88\x80\x80\x80"), "\"" R R R R R "\""},
      {S("\xe2\x82\xac\xac<"), "\"\xe2\x82\xac" R "\\u003c\""},
      /* The PROTOCOL.md 1.4 tag value. */
      {S("<a&b>\n\xe2\x80\xa8\xff"), "\"\\u003ca\\u0026b\\u003e\\n\\u2028" R "\""},
  };
#undef R
  size_t i;
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    sb__buf_t b;
    write_string(&b, cases[i].in, cases[i].in_len);
    ASSERT_MEM_EQ(b.data, b.len, cases[i].want, strlen(cases[i].want));
    sb__buf_free(&b);
  }
  /* It appends to what the buffer holds. */
  {
    sb__buf_t b = {0};
    sb__buf_append(&b, "{\"k\":", 5);
    sb__json_write_string(&b, "v", 1);
    sb__buf_putc(&b, ',');
    sb__json_write_string(&b, "<", 1);
    ASSERT_OK(b.err);
    ASSERT_MEM_EQ(b.data, b.len, "{\"k\":\"v\",\"\\u003c\"", 17);
    sb__buf_free(&b);
  }
}

/* Deterministic pseudo-random bytes (xorshift32). */
static uint32_t rnd(uint32_t* s) {
  *s ^= *s << 13;
  *s ^= *s >> 17;
  *s ^= *s << 5;
  return *s;
}

/*
 * An independent reading of "what Go's decoder gives back for raw bytes": every maximal
 * well-formed sequence of the Unicode standard's Table 3-7 is kept, every other byte is
 * U+FFFD. Returns the length written to out (room for 3 * len).
 */
static size_t go_sanitize(const unsigned char* s, size_t len, unsigned char* out) {
  static const struct {
    unsigned char lead_lo, lead_hi, lo, hi;
    int n;
  } table[] = {
      {0xc2, 0xdf, 0x80, 0xbf, 2}, {0xe0, 0xe0, 0xa0, 0xbf, 3},
      {0xe1, 0xec, 0x80, 0xbf, 3}, {0xed, 0xed, 0x80, 0x9f, 3},
      {0xee, 0xef, 0x80, 0xbf, 3}, {0xf0, 0xf0, 0x90, 0xbf, 4},
      {0xf1, 0xf3, 0x80, 0xbf, 4}, {0xf4, 0xf4, 0x80, 0x8f, 4},
  };
  size_t i = 0, o = 0, t;
  while (i < len) {
    int n = 0;
    if (s[i] < 0x80) {
      n = 1;
    } else {
      for (t = 0; t < sizeof(table) / sizeof(table[0]); t++) {
        int k, ok;
        if (s[i] < table[t].lead_lo || s[i] > table[t].lead_hi)
          continue;
        ok = len - i >= (size_t)table[t].n && s[i + 1] >= table[t].lo &&
             s[i + 1] <= table[t].hi;
        for (k = 2; ok && k < table[t].n; k++)
          ok = s[i + k] >= 0x80 && s[i + k] <= 0xbf;
        n = ok ? table[t].n : 0;
      }
    }
    if (n == 0) {
      memcpy(out + o, "\xef\xbf\xbd", 3);
      o += 3;
      i++;
    } else {
      memcpy(out + o, s + i, (size_t)n);
      o += (size_t)n;
      i += (size_t)n;
    }
  }
  return o;
}

TEST_IMPL(json_write_roundtrip) {
  /* Random strings, biased towards bytes that matter, written and read back. */
  static const unsigned char pool[] = {
      0x00, 0x01, 0x08, 0x09, 0x0a, 0x0c, 0x0d, 0x1f, ' ',  '"',  '\\', '/',  '<',
      '>',  '&',  'a',  'Z',  '0',  0x7f, 0x80, 0x9f, 0xa0, 0xa8, 0xa9, 0xbf, 0xc0,
      0xc2, 0xc5, 0xdf, 0xe0, 0xe2, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff, 'u',  0x84,
  };
  uint32_t seed = 0x9e3779b9u;
  int iter;
  for (iter = 0; iter < 20000; iter++) {
    unsigned char in[48], want[48 * 6 * 3 + 8];
    size_t len = rnd(&seed) % sizeof(in), k, want_len, out_len, consumed;
    sb__buf_t b;
    char* out;
    for (k = 0; k < len; k++)
      in[k] = pool[rnd(&seed) % sizeof(pool)];
    write_string(&b, (const char*)in, len);
    /* The output is one complete JSON string of printable ASCII and valid UTF-8,
     * with none of < > & and no raw U+2028/U+2029. */
    for (k = 0; k < b.len; k++) {
      unsigned char c = (unsigned char)b.data[k];
      ASSERT(c >= 0x20 && c != '<' && c != '>' && c != '&');
    }
    ASSERT_EQ(go_sanitize((const unsigned char*)b.data, b.len, want), b.len);
    ASSERT_NULL(strstr(b.data, "\xe2\x80\xa8"));
    ASSERT_NULL(strstr(b.data, "\xe2\x80\xa9"));
    ASSERT_OK(skip(b.data, b.len, &consumed));
    ASSERT_EQ(consumed, b.len);
    /* Reading it back gives the input, with Go's U+FFFD for each invalid byte. */
    ASSERT_OK(read_string(b.data, b.len, &out, &out_len));
    want_len = go_sanitize(in, len, want);
    ASSERT_MEM_EQ(out, out_len, want, want_len);
    free(out);
    sb__buf_free(&b);
  }
}

TEST_IMPL(json_buf) {
  sb__buf_t b = {0};
  size_t i;
  /* Zero-length appends allocate nothing. */
  sb__buf_append(&b, NULL, 0);
  ASSERT_NULL(b.data);
  ASSERT_EQ(b.len, 0);
  for (i = 0; i < 100000; i++)
    sb__buf_putc(&b, (char)('a' + i % 26));
  ASSERT_OK(b.err);
  ASSERT_EQ(b.len, 100000);
  ASSERT_GE(b.cap, b.len);
  ASSERT_LT(b.cap, 2 * b.len + 64); /* geometric growth, not wildly over */
  for (i = 0; i < 100000; i++)
    ASSERT_EQ(b.data[i], 'a' + i % 26);
  sb__buf_append(&b, "xyz", 3);
  ASSERT_MEM_EQ(b.data + 100000, 3, "xyz", 3);
  sb__buf_free(&b);
  ASSERT_NULL(b.data);
  ASSERT_EQ(b.len, 0);
  ASSERT_EQ(b.cap, 0);
  ASSERT_EQ(b.err, 0);
  sb__buf_free(&b); /* twice is fine */

  /* A size that cannot be allocated is SB_ENOMEM, remembered; later appends are
   * ignored and the bytes already there stay. */
  sb__buf_append(&b, "ab", 2);
  sb__buf_append(&b, "x", SIZE_MAX);
  ASSERT_ERR(b.err, SB_ENOMEM);
  sb__buf_putc(&b, 'c');
  sb__buf_append(&b, "def", 3);
  sb__json_write_string(&b, "g", 1);
  ASSERT_ERR(b.err, SB_ENOMEM);
  ASSERT_MEM_EQ(b.data, b.len, "ab", 2);
  sb__buf_free(&b);
  sb__buf_putc(&b, 'a');
  sb__buf_append(&b, "x", (size_t)PTRDIFF_MAX);
  ASSERT_ERR(b.err, SB_ENOMEM);
  ASSERT_EQ(b.len, 1);
  sb__buf_free(&b);
  /* An error set by someone else is honoured too. */
  b.err = SB_ENOMEM;
  sb__buf_append(&b, "abc", 3);
  ASSERT_NULL(b.data);
  ASSERT_EQ(b.len, 0);
  sb__buf_free(&b);
}

TEST_IMPL(json_key_equal) {
  static const struct {
    const char* key;
    size_t key_len;
    const char* want;
    int equal;
  } cases[] = {
      {S("name"), "name", 1},
      {S("NAME"), "name", 1},
      {S("Name"), "name", 1},
      {S("nAmE"), "name", 1},
      {S("nam"), "name", 0},
      {S("names"), "name", 0},
      {S(""), "name", 0},
      {S(""), "", 1},
      {S("x"), "", 0},
      {S("name\0"), "name", 0},
      {S("na\0me"), "name", 0},
      {S("contentType"), "contenttype", 1},
      {S("CONTENTTYPE"), "contenttype", 1},
      {S("content_type"), "contenttype", 0},
      {S("contenttype "), "contenttype", 0},
      {S("a_b-1"), "a_b-1", 1},
      {S("A_B-1"), "a_b-1", 1},
      /* Only letters fold: '[' is not '{', '@' is not '`'. */
      {S("["), "{", 0},
      {S("@"), "`", 0},
      {S("_"), "\x7f", 0},
      /* U+017F LATIN SMALL LETTER LONG S folds to s, U+212A KELVIN SIGN to k. */
      {S("tag\xc5\xbf"), "tags", 1},
      {S("TAG\xc5\xbf"), "tags", 1},
      {S("time\xc5\xbftamp"), "timestamp", 1},
      {S("\xc5\xbf\xc5\xbf"), "ss", 1},
      {S("\xe2\x84\xaa"
         "ey"),
       "key", 1},
      {S("\xe2\x84\xaa\xe2\x84\xaa"), "kk", 1},
      {S("\xc5\xbf"), "k", 0},
      {S("\xe2\x84\xaa"), "s", 0},
      {S("\xc5"), "s", 0},
      {S("\xc5\xbf"), "S", 0}, /* want is lowercase by contract */
      {S("\xe2\x84"), "k", 0},
      {S("\xc5\xbfx"), "s", 0},
      {S("\xc5\xbf"), "sx", 0},
      {S("\xe2\x84\xab"), "k", 0}, /* U+212B ANGSTROM SIGN folds to å, not ASCII */
      /* Other look-alikes do not fold to ASCII. */
      {S("\xc4\xb0"), "i", 0}, /* U+0130 */
      {S("\xc4\xb1"), "i", 0}, /* U+0131 dotless i */
      {S("\xef\xbc\xae"
         "ame"),
       "name", 0},              /* fullwidth N */
      {S("\xc3\x9f"), "ss", 0}, /* sharp s: no simple fold to "ss" */
      {S("\xef\xbf\xbd"), "name", 0},
  };
  size_t i;
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    if (sb__json_key_equal(cases[i].key, cases[i].key_len, cases[i].want) !=
        cases[i].equal)
      sb_test_fail(__FILE__, __LINE__, "case %d: key vs \"%s\" should be %d", (int)i,
                   cases[i].want, cases[i].equal);
  }
}
