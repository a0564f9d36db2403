/* alloc.c - allocation that aborts on failure, for the service and sbctl (alloc.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

/* The service can do nothing useful without small allocations (redis zmalloc does the
 * same); sizes that come from clients are bounded by limits before they get here. */
static void* sb__oom(size_t n) {
  fprintf(stderr, "streambrokerd: out of memory (%zu bytes)\n", n);
  fflush(stderr);
  abort();
}

void* sb__xmalloc(size_t n) {
  void* p = malloc(n ? n : 1);
  return p ? p : sb__oom(n);
}

void* sb__xcalloc(size_t n, size_t size) {
  void* p;
  if (size != 0 && n > (size_t)-1 / size)
    return sb__oom((size_t)-1);
  p = calloc(n ? n : 1, size ? size : 1);
  return p ? p : sb__oom(n * size);
}

void* sb__xrealloc(void* p, size_t n) {
  void* q = realloc(p, n ? n : 1);
  return q ? q : sb__oom(n);
}

char* sb__xstrdup(const char* s) {
  size_t n = strlen(s) + 1;
  return memcpy(sb__xmalloc(n), s, n);
}
