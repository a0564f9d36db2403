/*
 * alloc.h - allocation that aborts on failure (alloc.c), for the service and sbctl,
 * which can do nothing useful without small allocations. The client library's own
 * API never calls these: it returns SB_ENOMEM instead. Included by the service's
 * internal.h and sbctl's files.
 */
#ifndef SB_CLIENT_ALLOC_H
#define SB_CLIENT_ALLOC_H

#include <stddef.h>

/* The service aborts with a message on a failed small allocation (never on client
 * input sizes, which are bounded by limits first). */
void* sb__xmalloc(size_t n);
void* sb__xcalloc(size_t n, size_t size);
void* sb__xrealloc(void* p, size_t n);
char* sb__xstrdup(const char* s);

#endif
