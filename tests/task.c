/* task.c - the assertion helpers of task.h, shared by test programs and benchmarks. */
#include <ctype.h>
#include <stdarg.h>

#include "streambroker.h"
#include "task.h"

void (*sb_test_fail_hook)(void);

void sb_test_fail(const char* file, int line, const char* fmt, ...) {
  va_list ap;
  void (*hook)(void) = sb_test_fail_hook;
  fprintf(stderr, "%s:%d: ", file, line);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  /* Once: a failure inside the hook must not loop. */
  sb_test_fail_hook = NULL;
  if (hook != NULL)
    hook();
  fflush(stderr);
  exit(1);
}

void sb_test_hexdump(const char* label, const void* data, size_t len) {
  const unsigned char* p = data;
  size_t i;
  fprintf(stderr, "%s (%zu bytes):", label, len);
  for (i = 0; i < len && i < 512; i++)
    fprintf(stderr, "%s%02x", i % 32 ? "" : "\n  ", p[i]);
  fprintf(stderr, "%s\n", len > 512 ? " ..." : "");
}

const char* sb_test_err_name(int err) {
  return err == 0 ? "ok" : sb_err_name(err);
}

unsigned char* sb_test_unhex(const char* hex, size_t* len) {
  size_t n = strlen(hex), o = 0;
  unsigned char* out = malloc(n / 2 + 1);
  int hi = -1;
  if (out == NULL)
    sb_test_fail(__FILE__, __LINE__, "out of memory");
  for (; *hex; hex++) {
    int v;
    if (*hex == ' ' || *hex == '|' || *hex == '\n')
      continue;
    if (!isxdigit((unsigned char)*hex))
      sb_test_fail(__FILE__, __LINE__, "bad hex digit '%c'", *hex);
    v = isdigit((unsigned char)*hex) ? *hex - '0' : (tolower((unsigned char)*hex) - 'a' + 10);
    if (hi < 0) {
      hi = v;
    } else {
      out[o++] = (unsigned char)(hi << 4 | v);
      hi = -1;
    }
  }
  *len = o;
  return out;
}
