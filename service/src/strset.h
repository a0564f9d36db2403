/*
 * strset.h - a set of strings, each with a 64-bit value (strset.c). For any module
 * that keeps names in memory (the archive's index of names and sizes, the names sent
 * upstream); loop thread, or one thread at a time.
 */
#ifndef SB_STRSET_H
#define SB_STRSET_H

#include <stddef.h>
#include <stdint.h>

/* One string and its value. Its address stays the same until the set is cleared, so a
 * user may keep a pointer to it (the set grows by moving pointers, not entries). */
typedef struct {
  uint64_t value;
  char key[]; /* the string, a copy owned by the set */
} sb__strset_entry_t;

/* Embedded by its owner; all zero is an empty set. sb__strset_clear frees it. */
typedef struct {
  sb__strset_entry_t** slot; /* open addressing, a power of two of them */
  size_t cap, n;
} sb__strset_t;

/* The entry of key, or NULL. */
sb__strset_entry_t* sb__strset_find(const sb__strset_t* set, const char* key);
/* The entry of key, made (value 0, key copied) when absent; *added (may be NULL) says
 * which. Aborts when memory runs out, as the service's other small allocations. */
sb__strset_entry_t* sb__strset_add(sb__strset_t* set, const char* key, int* added);
/* How many strings the set holds. */
size_t sb__strset_count(const sb__strset_t* set);
/* Walks the set in no particular order: start with *pos 0; NULL at the end. The set
 * must not change meanwhile. */
sb__strset_entry_t* sb__strset_next(const sb__strset_t* set, size_t* pos);
/* Frees every entry and the table: the set is empty again, ready for use. */
void sb__strset_clear(sb__strset_t* set);

#endif
