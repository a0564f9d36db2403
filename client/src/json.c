/* json.c - a small JSON reader and a Go-compatible string writer. */
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

void sb__json_init(sb__json_t* j, const char* text, size_t len) {
  j->p = text;
  j->end = text + len;
  j->max_depth = 10000;
}

int sb__json_ws(sb__json_t* j) {
  while (j->p < j->end &&
         (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
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
    if (*j->p == '-' || (*j->p >= '0' && *j->p <= '9'))
      return SB__JSON_NUMBER;
    return SB_EJSON;
  }
}

static int lit(sb__json_t* j, const char* word) {
  size_t n = strlen(word);
  if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0)
    return SB_EJSON;
  j->p += n;
  return 0;
}

int sb__json_null(sb__json_t* j) {
  if (sb__json_peek(j) == SB__JSON_NULL && lit(j, "null") == 0)
    return 1;
  return 0;
}

static int is_digit(char c) {
  return c >= '0' && c <= '9';
}

/* RFC 8259 number grammar, which Go enforces: no leading zeros, no '+', digits on
 * both sides of '.', an exponent with digits. */
static int number(sb__json_t* j) {
  const char* p = j->p;
  if (p < j->end && *p == '-')
    p++;
  if (p >= j->end || !is_digit(*p))
    return SB_EJSON;
  if (*p == '0')
    p++;
  else
    while (p < j->end && is_digit(*p))
      p++;
  if (p < j->end && *p == '.') {
    p++;
    if (p >= j->end || !is_digit(*p))
      return SB_EJSON;
    while (p < j->end && is_digit(*p))
      p++;
  }
  if (p < j->end && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < j->end && (*p == '+' || *p == '-'))
      p++;
    if (p >= j->end || !is_digit(*p))
      return SB_EJSON;
    while (p < j->end && is_digit(*p))
      p++;
  }
  j->p = p;
  return 0;
}

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
 * Decodes one UTF-8 sequence at s (n bytes available) the way Go's utf8.DecodeRune
 * does: returns its length, and *c, or 0 for an invalid byte (which counts as one byte
 * and becomes U+FFFD). Overlong forms, surrogates and values above U+10FFFF are invalid.
 */
static size_t utf8_decode(const unsigned char* s, size_t n, uint32_t* c) {
  unsigned char b0 = s[0];
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
    unsigned char lo = b0 == 0xe0 ? 0xa0 : 0x80, hi = b0 == 0xed ? 0x9f : 0xbf;
    if (n < 3 || s[1] < lo || s[1] > hi || (s[2] & 0xc0) != 0x80)
      return 0;
    *c = (uint32_t)(b0 & 0x0f) << 12 | (uint32_t)(s[1] & 0x3f) << 6 | (s[2] & 0x3f);
    return 3;
  }
  if (b0 >= 0xf0 && b0 <= 0xf4) {
    unsigned char lo = b0 == 0xf0 ? 0x90 : 0x80, hi = b0 == 0xf4 ? 0x8f : 0xbf;
    if (n < 4 || s[1] < lo || s[1] > hi || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
      return 0;
    *c = (uint32_t)(b0 & 0x07) << 18 | (uint32_t)(s[1] & 0x3f) << 12 |
         (uint32_t)(s[2] & 0x3f) << 6 | (s[3] & 0x3f);
    return 4;
  }
  return 0;
}

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

/* Reads a string; with out NULL it only validates and skips it. */
static int string(sb__json_t* j, sb__buf_t* out) {
  const char* p = j->p + 1;
  while (p < j->end) {
    unsigned char c = (unsigned char)*p;
    if (c == '"') {
      j->p = p + 1;
      return 0;
    }
    if (c < 0x20)
      return SB_EJSON;
    if (c == '\\') {
      uint32_t u, lo;
      if (p + 1 >= j->end)
        return SB_EJSON;
      switch (p[1]) {
      case '"': case '\\': case '/':
        if (out) sb__buf_putc(out, p[1]);
        p += 2;
        continue;
      case 'b': if (out) sb__buf_putc(out, '\b'); p += 2; continue;
      case 'f': if (out) sb__buf_putc(out, '\f'); p += 2; continue;
      case 'n': if (out) sb__buf_putc(out, '\n'); p += 2; continue;
      case 'r': if (out) sb__buf_putc(out, '\r'); p += 2; continue;
      case 't': if (out) sb__buf_putc(out, '\t'); p += 2; continue;
      case 'u':
        if (j->end - p < 6 || hex4(p + 2, &u) != 0)
          return SB_EJSON;
        p += 6;
        if (u >= 0xd800 && u < 0xdc00) {
          /* A high surrogate pairs only with a following \u low surrogate. */
          if (j->end - p >= 6 && p[0] == '\\' && p[1] == 'u' && hex4(p + 2, &lo) == 0 &&
              lo >= 0xdc00 && lo < 0xe000) {
            u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
            p += 6;
          } else {
            u = 0xfffd;
          }
        } else if (u >= 0xdc00 && u < 0xe000) {
          u = 0xfffd;
        }
        if (out)
          put_utf8(out, u);
        continue;
      default:
        return SB_EJSON;
      }
    }
    if (c < 0x80) {
      if (out)
        sb__buf_putc(out, (char)c);
      p++;
    } else {
      uint32_t cp;
      size_t n = utf8_decode((const unsigned char*)p, (size_t)(j->end - p), &cp);
      if (n == 0) {
        if (out)
          put_utf8(out, 0xfffd);
        p++;
      } else {
        if (out)
          sb__buf_append(out, p, n);
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
  if ((r = string(j, &b)) == 0) {
    sb__buf_putc(&b, '\0');
    r = b.err;
  }
  if (r != 0) {
    sb__buf_free(&b);
    return r;
  }
  *out = b.data;
  *out_len = b.len - 1;
  return 0;
}

/*
 * Skips any value without recursion: the containers still open are a stack of bits
 * ('{' or '['), so nesting is limited only by max_depth, never by the C stack.
 */
int sb__json_skip(sb__json_t* j) {
  unsigned char* stack = NULL;
  size_t depth = 0;
  int r = 0, kind;
  for (;;) {
    /* Here a value is expected. */
    kind = sb__json_peek(j);
    if (kind < 0) {
      r = kind;
      break;
    }
    if (kind == SB__JSON_OBJECT || kind == SB__JSON_ARRAY) {
      if (depth >= j->max_depth) {
        r = SB_EJSON;
        break;
      }
      if (stack == NULL && (stack = malloc(j->max_depth + 1)) == NULL) {
        r = SB_ENOMEM;
        break;
      }
      stack[depth++] = (unsigned char)*j->p;
      j->p++;
      if (sb__json_ws(j)) {
        r = SB_EJSON;
        break;
      }
      if ((kind == SB__JSON_OBJECT && *j->p == '}') ||
          (kind == SB__JSON_ARRAY && *j->p == ']')) {
        j->p++;
        depth--;
      } else {
        if (kind == SB__JSON_OBJECT) {
          if (*j->p != '"' || (r = string(j, NULL)) != 0 || sb__json_ws(j) ||
              *j->p != ':') {
            r = SB_EJSON;
            break;
          }
          j->p++;
        }
        continue;
      }
    } else if (kind == SB__JSON_STRING) {
      if ((r = string(j, NULL)) != 0)
        break;
    } else if (kind == SB__JSON_NUMBER) {
      if ((r = number(j)) != 0)
        break;
    } else {
      if ((r = lit(j, kind == SB__JSON_TRUE ? "true" : kind == SB__JSON_FALSE ? "false"
                                                                            : "null")) != 0)
        break;
    }
    /* After a value: close containers, or go on to the next member. */
    for (;;) {
      if (depth == 0)
        goto out;
      if (sb__json_ws(j)) {
        r = SB_EJSON;
        goto out;
      }
      if (*j->p == ',') {
        j->p++;
        if (stack[depth - 1] == '{') {
          if (sb__json_ws(j) || *j->p != '"' || (r = string(j, NULL)) != 0 ||
              sb__json_ws(j) || *j->p != ':') {
            r = SB_EJSON;
            goto out;
          }
          j->p++;
        }
        break;
      }
      if ((*j->p == '}' && stack[depth - 1] == '{') ||
          (*j->p == ']' && stack[depth - 1] == '[')) {
        j->p++;
        depth--;
        continue;
      }
      r = SB_EJSON;
      goto out;
    }
  }
out:
  free(stack);
  return r;
}

int sb__json_object_begin(sb__json_t* j) {
  if (sb__json_peek(j) != SB__JSON_OBJECT)
    return SB_EJSON;
  j->p++;
  return 0;
}

int sb__json_object_next(sb__json_t* j, char** key, size_t* key_len) {
  int r;
  *key = NULL;
  if (sb__json_ws(j))
    return SB_EJSON;
  if (*j->p == '}') {
    j->p++;
    return 0;
  }
  /* After the opening brace comes a key; after a member, a comma then a key. Which
   * one is told by the last non-space byte before the cursor: only the brace itself
   * can be '{' (a member's value ends in '"', '}', ']', a digit or a letter). */
  {
    const char* q = j->p - 1;
    while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')
      q--;
    if (*q != '{') {
      if (*j->p != ',')
        return SB_EJSON;
      j->p++;
      if (sb__json_ws(j))
        return SB_EJSON;
    }
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

void sb__buf_append(sb__buf_t* b, const void* data, size_t len) {
  if (b->err || len == 0)
    return;
  if (b->len + len > b->cap) {
    size_t cap = b->cap ? b->cap : 64;
    char* grown;
    while (cap < b->len + len)
      cap *= 2;
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

void sb__json_write_string(sb__buf_t* b, const char* s, size_t len) {
  static const char hex[] = "0123456789abcdef";
  size_t i = 0;
  sb__buf_putc(b, '"');
  while (i < len) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x80) {
      char esc[6] = {'\\', 'u', '0', '0', 0, 0};
      switch (c) {
      case '"': sb__buf_append(b, "\\\"", 2); break;
      case '\\': sb__buf_append(b, "\\\\", 2); break;
      case '\n': sb__buf_append(b, "\\n", 2); break;
      case '\r': sb__buf_append(b, "\\r", 2); break;
      case '\t': sb__buf_append(b, "\\t", 2); break;
      case '\b': sb__buf_append(b, "\\b", 2); break;
      case '\f': sb__buf_append(b, "\\f", 2); break;
      default:
        if (c < 0x20 || c == '<' || c == '>' || c == '&') {
          esc[4] = hex[c >> 4];
          esc[5] = hex[c & 15];
          sb__buf_append(b, esc, 6);
        } else {
          sb__buf_putc(b, (char)c);
        }
      }
      i++;
      continue;
    }
    {
      uint32_t cp;
      size_t n = utf8_decode((const unsigned char*)s + i, len - i, &cp);
      if (n == 0) {
        sb__buf_append(b, "\\ufffd", 6);
        i++;
      } else if (cp == 0x2028 || cp == 0x2029) {
        sb__buf_append(b, cp == 0x2028 ? "\\u2028" : "\\u2029", 6);
        i += n;
      } else {
        sb__buf_append(b, s + i, n);
        i += n;
      }
    }
  }
  sb__buf_putc(b, '"');
}

int sb__json_key_equal(const char* key, size_t key_len, const char* want) {
  size_t i = 0;
  for (; *want; want++) {
    unsigned char c;
    if (i >= key_len)
      return 0;
    c = (unsigned char)key[i];
    if (c >= 'A' && c <= 'Z')
      c = (unsigned char)(c - 'A' + 'a');
    if (c == (unsigned char)*want) {
      i++;
    } else if (*want == 's' && key_len - i >= 2 && (unsigned char)key[i] == 0xc5 &&
               (unsigned char)key[i + 1] == 0xbf) {
      i += 2; /* U+017F LATIN SMALL LETTER LONG S folds to s */
    } else if (*want == 'k' && key_len - i >= 3 && (unsigned char)key[i] == 0xe2 &&
               (unsigned char)key[i + 1] == 0x84 && (unsigned char)key[i + 2] == 0xaa) {
      i += 3; /* U+212A KELVIN SIGN folds to k */
    } else {
      return 0;
    }
  }
  return i == key_len;
}
