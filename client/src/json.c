/*
 * json.c - a small JSON reader and a Go-compatible string writer.
 *
 * The reader follows Go's encoding/json: the RFC 8259 grammar exactly (no leading
 * zeros, no '+', no bare '.', no NaN), strings decoded as Go's unquote does (invalid
 * UTF-8 and unpaired surrogates become U+FFFD), and a nesting limit of 10000 counted
 * over the whole document. Nothing here recurses, so hostile input cannot exhaust the
 * C stack.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

/* Go's scanner limit (encoding/json maxNestingDepth). */
#define SB__JSON_MAX_DEPTH 10000u

static int is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int is_digit(char c) {
  return c >= '0' && c <= '9';
}

void sb__json_init(sb__json_t* j, const char* text, size_t len) {
  j->p = text;
  j->end = text + len;
  j->max_depth = SB__JSON_MAX_DEPTH;
}

int sb__json_ws(sb__json_t* j) {
  while (j->p < j->end && is_ws(*j->p))
    j->p++;
  return j->p == j->end;
}

int sb__json_peek(sb__json_t* j) {
  if (sb__json_ws(j))
    return SB_EJSON;
  switch (*j->p) {
  case '"':
    return SB__JSON_STRING;
  case '{':
    return SB__JSON_OBJECT;
  case '[':
    return SB__JSON_ARRAY;
  case 't':
    return SB__JSON_TRUE;
  case 'f':
    return SB__JSON_FALSE;
  case 'n':
    return SB__JSON_NULL;
  default:
    if (*j->p == '-' || is_digit(*j->p))
      return SB__JSON_NUMBER;
    return SB_EJSON;
  }
}

/* Consumes word if the input continues with exactly it (case-sensitive, as Go). */
static int literal(sb__json_t* j, const char* word) {
  size_t n = strlen(word);
  if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0)
    return SB_EJSON;
  j->p += n;
  return 0;
}

int sb__json_null(sb__json_t* j) {
  if (sb__json_peek(j) == SB__JSON_NULL && literal(j, "null") == 0)
    return 1;
  return 0;
}

/*
 * The RFC 8259 number grammar, which Go's scanner enforces:
 *   -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
 * A digit right after a leading 0 is not part of the number; whoever looks at the next
 * byte rejects it (Go: "invalid character '1' after top-level value").
 */
static int number(sb__json_t* j) {
  const char* p = j->p;
  const char* end = j->end;
  if (p < end && *p == '-')
    p++;
  if (p >= end || !is_digit(*p))
    return SB_EJSON;
  if (*p++ != '0')
    while (p < end && is_digit(*p))
      p++;
  if (p < end && *p == '.') {
    p++;
    if (p >= end || !is_digit(*p))
      return SB_EJSON;
    while (p < end && is_digit(*p))
      p++;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < end && (*p == '+' || *p == '-'))
      p++;
    if (p >= end || !is_digit(*p))
      return SB_EJSON;
    while (p < end && is_digit(*p))
      p++;
  }
  j->p = p;
  return 0;
}

/* Appends code point c (at most U+10FFFF, never a surrogate) as UTF-8. */
static void put_utf8(sb__buf_t* b, uint32_t c) {
  char u[4];
  size_t n;
  if (c < 0x80) {
    u[0] = (char)c;
    n = 1;
  } else if (c < 0x800) {
    u[0] = (char)(0xc0 | c >> 6);
    u[1] = (char)(0x80 | (c & 0x3f));
    n = 2;
  } else if (c < 0x10000) {
    u[0] = (char)(0xe0 | c >> 12);
    u[1] = (char)(0x80 | ((c >> 6) & 0x3f));
    u[2] = (char)(0x80 | (c & 0x3f));
    n = 3;
  } else {
    u[0] = (char)(0xf0 | c >> 18);
    u[1] = (char)(0x80 | ((c >> 12) & 0x3f));
    u[2] = (char)(0x80 | ((c >> 6) & 0x3f));
    u[3] = (char)(0x80 | (c & 0x3f));
    n = 4;
  }
  sb__buf_append(b, u, n);
}

/*
 * The length of the valid UTF-8 sequence at s (n > 0 bytes available), and its code
 * point in *c; 0 when s[0] starts no valid sequence. This is the acceptance of Go's
 * utf8.DecodeRune, which replaces exactly one byte when it fails: overlong forms
 * (C0, C1, E0 80..9F, F0 80..8F), surrogates (ED A0..BF), values past U+10FFFF
 * (F4 90.., F5..FF), stray continuation bytes and truncated sequences are invalid.
 */
static size_t utf8_decode(const unsigned char* s, size_t n, uint32_t* c) {
  unsigned char b0 = s[0], lo = 0x80, hi = 0xbf;
  if (b0 < 0x80) {
    *c = b0;
    return 1;
  }
  if (b0 >= 0xc2 && b0 <= 0xdf) {
    if (n < 2 || (s[1] & 0xc0) != 0x80)
      return 0;
    *c = (uint32_t)(b0 & 0x1f) << 6 | (s[1] & 0x3f);
    return 2;
  }
  if (b0 >= 0xe0 && b0 <= 0xef) {
    if (b0 == 0xe0)
      lo = 0xa0;
    else if (b0 == 0xed)
      hi = 0x9f;
    if (n < 3 || s[1] < lo || s[1] > hi || (s[2] & 0xc0) != 0x80)
      return 0;
    *c = (uint32_t)(b0 & 0x0f) << 12 | (uint32_t)(s[1] & 0x3f) << 6 | (s[2] & 0x3f);
    return 3;
  }
  if (b0 >= 0xf0 && b0 <= 0xf4) {
    if (b0 == 0xf0)
      lo = 0x90;
    else if (b0 == 0xf4)
      hi = 0x8f;
    if (n < 4 || s[1] < lo || s[1] > hi || (s[2] & 0xc0) != 0x80 ||
        (s[3] & 0xc0) != 0x80)
      return 0;
    *c = (uint32_t)(b0 & 0x07) << 18 | (uint32_t)(s[1] & 0x3f) << 12 |
         (uint32_t)(s[2] & 0x3f) << 6 | (s[3] & 0x3f);
    return 4;
  }
  return 0;
}

/* Four hex digits (either case) at p, which the caller has checked are there. */
static int hex4(const char* p, uint32_t* v) {
  int i;
  *v = 0;
  for (i = 0; i < 4; i++) {
    char c = p[i];
    *v <<= 4;
    if (c >= '0' && c <= '9')
      *v |= (uint32_t)(c - '0');
    else if (c >= 'a' && c <= 'f')
      *v |= (uint32_t)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F')
      *v |= (uint32_t)(c - 'A' + 10);
    else
      return SB_EJSON;
  }
  return 0;
}

/*
 * Reads the string whose opening quote is at the cursor and leaves the cursor after
 * its closing quote. With out NULL it only validates, as Go's scanner does: control
 * bytes and unknown escapes are errors, invalid UTF-8 is not. With out it also decodes,
 * as Go's unquote does: a \u high surrogate followed by a \u low surrogate is one code
 * point, any other surrogate escape is U+FFFD (and the escape after an unpaired high
 * surrogate is decoded on its own), and each byte of invalid UTF-8 is U+FFFD.
 */
static int scan_string(sb__json_t* j, sb__buf_t* out) {
  const char* p = j->p + 1;
  const char* end = j->end;
  const char* run = p; /* start of raw bytes not yet copied to out */
  while (p < end) {
    unsigned char c = (unsigned char)*p;
    if (c == '"') {
      if (out)
        sb__buf_append(out, run, (size_t)(p - run));
      j->p = p + 1;
      return 0;
    }
    if (c < 0x20)
      return SB_EJSON;
    if (c == '\\') {
      uint32_t u, lo;
      char e;
      if (out)
        sb__buf_append(out, run, (size_t)(p - run));
      if (end - p < 2)
        return SB_EJSON;
      switch (p[1]) {
      case '"':
      case '\\':
      case '/':
        e = p[1];
        break;
      case 'b':
        e = '\b';
        break;
      case 'f':
        e = '\f';
        break;
      case 'n':
        e = '\n';
        break;
      case 'r':
        e = '\r';
        break;
      case 't':
        e = '\t';
        break;
      case 'u':
        if (end - p < 6 || hex4(p + 2, &u) != 0)
          return SB_EJSON;
        p += 6;
        if (u >= 0xd800 && u < 0xdc00 && end - p >= 6 && p[0] == '\\' && p[1] == 'u' &&
            hex4(p + 2, &lo) == 0 && lo >= 0xdc00 && lo < 0xe000) {
          u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
          p += 6;
        } else if (u >= 0xd800 && u < 0xe000) {
          u = 0xfffd;
        }
        if (out)
          put_utf8(out, u);
        run = p;
        continue;
      default:
        return SB_EJSON;
      }
      if (out)
        sb__buf_putc(out, e);
      p += 2;
      run = p;
      continue;
    }
    if (c < 0x80 || out == NULL) {
      p++;
    } else {
      uint32_t cp;
      size_t n = utf8_decode((const unsigned char*)p, (size_t)(end - p), &cp);
      if (n == 0) {
        sb__buf_append(out, run, (size_t)(p - run));
        sb__buf_append(out, "\xef\xbf\xbd", 3);
        run = ++p;
      } else {
        p += n;
      }
    }
  }
  return SB_EJSON;
}

int sb__json_string(sb__json_t* j, char** out, size_t* out_len) {
  sb__buf_t b = {0};
  int r;
  *out = NULL;
  if (sb__json_peek(j) != SB__JSON_STRING)
    return SB_EJSON;
  r = scan_string(j, &b);
  if (r == 0) {
    sb__buf_putc(&b, '\0');
    r = b.err;
  }
  if (r != 0) {
    sb__buf_free(&b);
    return r;
  }
  *out = b.data;
  if (out_len)
    *out_len = b.len - 1;
  return 0;
}

/* Reads an object member's key and the ':' after it (the value follows). */
static int member_key(sb__json_t* j) {
  if (sb__json_ws(j) || *j->p != '"' || scan_string(j, NULL) != 0 || sb__json_ws(j) ||
      *j->p != ':')
    return SB_EJSON;
  j->p++;
  return 0;
}

/* Reads one scalar value of the given kind (from sb__json_peek). */
static int scalar(sb__json_t* j, int kind) {
  switch (kind) {
  case SB__JSON_STRING:
    return scan_string(j, NULL);
  case SB__JSON_NUMBER:
    return number(j);
  case SB__JSON_TRUE:
    return literal(j, "true");
  case SB__JSON_FALSE:
    return literal(j, "false");
  case SB__JSON_NULL:
    return literal(j, "null");
  default:
    return SB_EJSON;
  }
}

/*
 * Skips any value without recursion. The containers still open are a stack of bits
 * (1 for an object, 0 for an array): the default limit of 10000 fits in 1250 bytes on
 * the C stack, so only a caller that raises max_depth can make this allocate.
 */
int sb__json_skip(sb__json_t* j) {
  unsigned char fixed[SB__JSON_MAX_DEPTH / 8];
  unsigned char* bits = fixed;
  size_t depth = 0, cap = sizeof(fixed) * 8;
  int r = 0, kind;
  for (;;) {
    /* A value starts here. */
    kind = sb__json_peek(j);
    if (kind == SB__JSON_OBJECT || kind == SB__JSON_ARRAY) {
      size_t byte = depth / 8;
      unsigned char bit = (unsigned char)(1u << (depth % 8));
      if (depth >= j->max_depth) {
        r = SB_EJSON;
        goto out;
      }
      if (depth == cap) {
        unsigned char* grown = malloc(j->max_depth / 8 + 1);
        if (grown == NULL) {
          r = SB_ENOMEM;
          goto out;
        }
        memcpy(grown, fixed, sizeof(fixed));
        bits = grown;
        cap = (j->max_depth / 8 + 1) * 8;
      }
      if (kind == SB__JSON_OBJECT)
        bits[byte] = (unsigned char)(bits[byte] | bit);
      else
        bits[byte] = (unsigned char)(bits[byte] & ~bit);
      depth++;
      j->p++;
      if (sb__json_ws(j)) {
        r = SB_EJSON;
        goto out;
      }
      if (*j->p == (kind == SB__JSON_OBJECT ? '}' : ']')) {
        j->p++;
        depth--;
      } else {
        if (kind == SB__JSON_OBJECT && (r = member_key(j)) != 0)
          goto out;
        continue;
      }
    } else if ((r = scalar(j, kind)) != 0) {
      goto out;
    }
    /* A value ended: close containers until one goes on with another value. */
    for (;;) {
      int object;
      if (depth == 0)
        goto out;
      object = (bits[(depth - 1) / 8] >> ((depth - 1) % 8)) & 1;
      if (sb__json_ws(j)) {
        r = SB_EJSON;
        goto out;
      }
      if (*j->p == ',') {
        j->p++;
        if (object && (r = member_key(j)) != 0)
          goto out;
        break;
      }
      if (*j->p != (object ? '}' : ']')) {
        r = SB_EJSON;
        goto out;
      }
      j->p++;
      depth--;
    }
  }
out:
  if (bits != fixed)
    free(bits);
  return r;
}

/*
 * An open object takes one level of max_depth until its '}' is read, so that a value
 * skipped inside it gets the nesting Go would still allow there: Go counts the depth
 * of the whole document, not of the value.
 */
int sb__json_object_begin(sb__json_t* j) {
  if (sb__json_peek(j) != SB__JSON_OBJECT || j->max_depth == 0)
    return SB_EJSON;
  j->p++;
  j->max_depth--;
  return 0;
}

/*
 * The cursor holds no state, so whether a ',' must come first is told by the last
 * byte before the cursor that is not whitespace: it is the object's '{' right after
 * sb__json_object_begin, and the last byte of a value ('"', '}', ']', a digit or a
 * letter) after a member. object_begin guarantees that '{' is within the text.
 */
int sb__json_object_next(sb__json_t* j, char** key, size_t* key_len) {
  const char* q = j->p - 1;
  int r;
  *key = NULL;
  while (is_ws(*q))
    q--;
  if (sb__json_ws(j))
    return SB_EJSON;
  if (*j->p == '}') {
    j->p++;
    j->max_depth++;
    return 0;
  }
  if (*q != '{') {
    if (*j->p != ',')
      return SB_EJSON;
    j->p++;
    if (sb__json_ws(j))
      return SB_EJSON;
  }
  if (*j->p != '"')
    return SB_EJSON;
  if ((r = sb__json_string(j, key, key_len)) != 0)
    return r;
  if (sb__json_ws(j) || *j->p != ':') {
    free(*key);
    *key = NULL;
    return SB_EJSON;
  }
  j->p++;
  return 1;
}

/*
 * Grows geometrically. A size that cannot be represented, or more than PTRDIFF_MAX,
 * is treated as an allocation failure without asking the allocator.
 */
void sb__buf_append(sb__buf_t* b, const void* data, size_t len) {
  if (b->err || len == 0)
    return;
  if (len > b->cap - b->len) {
    size_t need, cap;
    char* grown;
    if (len > (size_t)PTRDIFF_MAX - b->len) {
      b->err = SB_ENOMEM;
      return;
    }
    need = b->len + len;
    cap = b->cap ? b->cap : 64;
    while (cap < need)
      cap = cap > (size_t)PTRDIFF_MAX / 2 ? need : cap * 2;
    if ((grown = realloc(b->data, cap)) == NULL) {
      b->err = SB_ENOMEM;
      return;
    }
    b->data = grown;
    b->cap = cap;
  }
  memcpy(b->data + b->len, data, len);
  b->len += len;
}

void sb__buf_putc(sb__buf_t* b, char c) {
  sb__buf_append(b, &c, 1);
}

void sb__buf_free(sb__buf_t* b) {
  free(b->data);
  memset(b, 0, sizeof(*b));
}

/*
 * Go's encoding/json appendString with HTML escaping on (json.Marshal's default), as
 * of Go 1.22 (short \b and \f). Bytes that need no escape are copied in runs.
 */
void sb__json_write_string(sb__buf_t* b, const char* s, size_t len) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char* u = (const unsigned char*)s;
  size_t i = 0, run = 0;
  sb__buf_putc(b, '"');
  while (i < len) {
    unsigned char c = u[i];
    char esc[6] = {'\\', 'u', '0', '0', 0, 0};
    size_t n = 1, elen = 2;
    if (c < 0x80) {
      if (c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&') {
        i++;
        continue;
      }
      switch (c) {
      case '"':
      case '\\':
        esc[1] = (char)c;
        break;
      case '\b':
        esc[1] = 'b';
        break;
      case '\f':
        esc[1] = 'f';
        break;
      case '\n':
        esc[1] = 'n';
        break;
      case '\r':
        esc[1] = 'r';
        break;
      case '\t':
        esc[1] = 't';
        break;
      default:
        esc[4] = hex[c >> 4];
        esc[5] = hex[c & 15];
        elen = 6;
      }
    } else {
      uint32_t cp;
      n = utf8_decode(u + i, len - i, &cp);
      if (n != 0 && cp != 0x2028 && cp != 0x2029) {
        i += n;
        continue;
      }
      if (n == 0) {
        memcpy(esc, "\\ufffd", 6);
        n = 1;
      } else {
        memcpy(esc, cp == 0x2028 ? "\\u2028" : "\\u2029", 6);
      }
      elen = 6;
    }
    sb__buf_append(b, s + run, i - run);
    sb__buf_append(b, esc, elen);
    i += n;
    run = i;
  }
  sb__buf_append(b, s + run, i - run);
  sb__buf_putc(b, '"');
}

/*
 * Go's encoding/json matches a key to a field exactly, or else by foldName: ASCII
 * letters fold by case, and among other runes only U+017F (long s) and U+212A (Kelvin
 * sign) fold to ASCII letters. Every other non-ASCII rune (and U+FFFD from invalid
 * UTF-8) folds to itself, so it cannot match an ASCII want.
 */
int sb__json_key_equal(const char* key, size_t key_len, const char* want) {
  const unsigned char* k = (const unsigned char*)key;
  size_t i = 0;
  for (; *want; want++) {
    unsigned char c;
    if (i >= key_len)
      return 0;
    c = k[i];
    if (c >= 'A' && c <= 'Z')
      c = (unsigned char)(c - 'A' + 'a');
    if (c == (unsigned char)*want) {
      i++;
    } else if (*want == 's' && key_len - i >= 2 && k[i] == 0xc5 && k[i + 1] == 0xbf) {
      i += 2;
    } else if (*want == 'k' && key_len - i >= 3 && k[i] == 0xe2 && k[i + 1] == 0x84 &&
               k[i + 2] == 0xaa) {
      i += 3;
    } else {
      return 0;
    }
  }
  return i == key_len;
}
