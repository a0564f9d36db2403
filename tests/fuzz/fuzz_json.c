/*
 * fuzz_json.c - the JSON reader, the JSON string writer and the timestamp codec on
 * arbitrary bytes. What must hold:
 * - sb__json_skip and reading the same value piece by piece (object members, strings,
 *   null) agree on success and on where the value ends;
 * - every decoded string is valid UTF-8 and survives a write/read round trip;
 * - the writer's output is one JSON string of printable ASCII and valid UTF-8 that
 *   reads back to the input, exactly when the input is valid UTF-8;
 * - sb__json_key_equal agrees with a plain fold-then-compare;
 * - an accepted timestamp that formats reads back as the same instant.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

#define CHECK(cond)                                                                    \
  do {                                                                                 \
    if (!(cond))                                                                       \
      abort();                                                                         \
  } while (0)

/* Valid UTF-8 by the Unicode standard's Table 3-7 (no overlongs, no surrogates). */
static int valid_utf8(const unsigned char* s, size_t len) {
  size_t i = 0;
  while (i < len) {
    unsigned char c = s[i];
    size_t n, k;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c < 0x80) {
      i++;
      continue;
    }
    if (c >= 0xc2 && c <= 0xdf)
      n = 2;
    else if (c >= 0xe0 && c <= 0xef)
      n = 3;
    else if (c >= 0xf0 && c <= 0xf4)
      n = 4;
    else
      return 0;
    if (c == 0xe0)
      lo = 0xa0;
    if (c == 0xed)
      hi = 0x9f;
    if (c == 0xf0)
      lo = 0x90;
    if (c == 0xf4)
      hi = 0x8f;
    if (len - i < n || s[i + 1] < lo || s[i + 1] > hi)
      return 0;
    for (k = 2; k < n; k++)
      if (s[i + k] < 0x80 || s[i + k] > 0xbf)
        return 0;
    i += n;
  }
  return 1;
}

/* Writes s, checks the output's shape, reads it back; returns the decoded copy. */
static char* write_and_read(const char* s, size_t len, size_t* back_len) {
  sb__buf_t b = {0};
  sb__json_t j;
  char* back;
  size_t i;
  sb__json_write_string(&b, s, len);
  CHECK(b.err == 0 && b.len >= 2 && b.data[0] == '"' && b.data[b.len - 1] == '"');
  for (i = 0; i < b.len; i++) {
    unsigned char c = (unsigned char)b.data[i];
    CHECK(c >= 0x20 && c != '<' && c != '>' && c != '&');
  }
  CHECK(valid_utf8((const unsigned char*)b.data, b.len));
  sb__json_init(&j, b.data, b.len);
  CHECK(sb__json_skip(&j) == 0 && j.p == j.end);
  sb__json_init(&j, b.data, b.len);
  CHECK(sb__json_string(&j, &back, back_len) == 0 && j.p == j.end);
  CHECK(back[*back_len] == '\0');
  CHECK(valid_utf8((const unsigned char*)back, *back_len));
  sb__buf_free(&b);
  return back;
}

/* A decoded string: valid UTF-8, and a round trip gives it back unchanged. */
static void check_decoded(const char* s, size_t len) {
  size_t back_len;
  char* back;
  CHECK(s[len] == '\0');
  CHECK(valid_utf8((const unsigned char*)s, len));
  back = write_and_read(s, len, &back_len);
  CHECK(back_len == len && memcmp(back, s, len) == 0);
  free(back);
}

/*
 * Reads the value at the cursor piece by piece where the API allows it (an object's
 * members, strings, null) and skips the rest. Returns 0 or the first error.
 */
static int read_value(sb__json_t* j) {
  int kind = sb__json_peek(j), r;
  if (kind == SB__JSON_STRING) {
    char* s;
    size_t len;
    if ((r = sb__json_string(j, &s, &len)) == 0) {
      check_decoded(s, len);
      free(s);
    }
    return r;
  }
  if (kind == SB__JSON_NULL && sb__json_null(j))
    return 0;
  if (kind != SB__JSON_OBJECT)
    return sb__json_skip(j);
  {
    unsigned depth = j->max_depth;
    char* key;
    size_t key_len;
    if ((r = sb__json_object_begin(j)) != 0)
      return r;
    while ((r = sb__json_object_next(j, &key, &key_len)) == 1) {
      check_decoded(key, key_len);
      free(key);
      /* One level of members only: deeper objects are skipped whole. */
      kind = sb__json_peek(j);
      if (kind == SB__JSON_STRING || kind == SB__JSON_NULL)
        r = read_value(j);
      else
        r = sb__json_skip(j);
      if (r != 0)
        return r;
    }
    CHECK(r <= 0);
    if (r == 0)
      CHECK(j->max_depth == depth);
    return r;
  }
}

/* Go's foldName for an ASCII want: fold the key, then compare. */
static int fold_equal(const unsigned char* key, size_t len, const char* want) {
  char folded[64];
  size_t i = 0, n = 0;
  while (i < len) {
    if (n == sizeof(folded))
      return 0;
    if (key[i] >= 'A' && key[i] <= 'Z') {
      folded[n++] = (char)(key[i] - 'A' + 'a');
      i++;
    } else if (len - i >= 2 && key[i] == 0xc5 && key[i + 1] == 0xbf) {
      folded[n++] = 's';
      i += 2;
    } else if (len - i >= 3 && key[i] == 0xe2 && key[i + 1] == 0x84 &&
               key[i + 2] == 0xaa) {
      folded[n++] = 'k';
      i += 3;
    } else {
      folded[n++] = (char)key[i++];
    }
  }
  return n == strlen(want) && memcmp(folded, want, n) == 0;
}

static void fuzz_reader(const char* text, size_t size) {
  sb__json_t a, b;
  int ra, rb;
  sb__json_init(&a, text, size);
  ra = sb__json_skip(&a);
  CHECK(ra == 0 || ra == SB_EJSON);
  CHECK(a.p >= text && a.p <= a.end);
  sb__json_init(&b, text, size);
  rb = read_value(&b);
  CHECK(rb == 0 || rb == SB_EJSON);
  CHECK((ra == 0) == (rb == 0));
  if (ra == 0)
    CHECK(a.p == b.p);
}

static void fuzz_writer(const char* text, size_t size) {
  size_t back_len;
  char* back = write_and_read(text, size, &back_len);
  if (valid_utf8((const unsigned char*)text, size))
    CHECK(back_len == size && memcmp(back, text, size) == 0);
  else
    CHECK(back_len > size); /* each invalid byte became three */
  free(back);
}

static void fuzz_keys(const char* text, size_t size) {
  static const char* const wants[] = {
      "", "s", "k", "name", "tags", "timestamp", "contenttype", "type", "sk"};
  size_t i;
  for (i = 0; i < sizeof(wants) / sizeof(wants[0]); i++)
    CHECK(sb__json_key_equal(text, size, wants[i]) ==
          fold_equal((const unsigned char*)text, size, wants[i]));
}

static void fuzz_time(const char* text, size_t size) {
  sb__time_t t, back;
  char buf[SB__TIME_BUF];
  int n;
  if (sb__time_parse(text, size, &t) != 0)
    return;
  CHECK(t.nsec >= 0 && t.nsec < 1000000000);
  n = sb__time_format(t, buf);
  if (n == SB_ETIMESTAMP)
    return; /* an offset moved it out of 0000..9999 */
  CHECK(n >= 20 && n < SB__TIME_BUF && buf[n] == '\0');
  CHECK(sb__time_parse(buf, (size_t)n, &back) == 0);
  CHECK(back.sec == t.sec && back.nsec == t.nsec);
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  /* A private copy, so that a read past the end is caught even at offset 0. */
  char* text = malloc(size ? size : 1);
  CHECK(text != NULL);
  if (size)
    memcpy(text, data, size);
  fuzz_reader(text, size);
  fuzz_writer(text, size);
  fuzz_keys(text, size);
  fuzz_time(text, size);
  free(text);
  return 0;
}
