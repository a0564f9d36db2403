/*
 * strset.c - a set of strings with a value each: open addressing with linear probing
 * over a power-of-two table of pointers, grown at three quarters full, entries
 * allocated one by one so that their addresses stay put. The hash is 64-bit FNV-1a,
 * its bits mixed at the end (the table takes the low ones).
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "strset.h"

#define SB__STRSET_FIRST_CAP 64u

static uint64_t strset_hash(const char* s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

/* key's slot: its entry's, or the empty one where it would go. cap > 0. */
static sb__strset_entry_t** strset_slot(sb__strset_entry_t** slot, size_t cap,
                                        const char* key) {
  size_t i = (size_t)strset_hash(key) & (cap - 1);
  while (slot[i] != NULL && strcmp(slot[i]->key, key) != 0)
    i = (i + 1) & (cap - 1);
  return &slot[i];
}

static void strset_grow(sb__strset_t* set) {
  size_t cap = set->cap ? set->cap * 2 : SB__STRSET_FIRST_CAP, i;
  sb__strset_entry_t** slot = sb__xcalloc(cap, sizeof(*slot));
  for (i = 0; i < set->cap; i++)
    if (set->slot[i] != NULL)
      *strset_slot(slot, cap, set->slot[i]->key) = set->slot[i];
  free(set->slot);
  set->slot = slot;
  set->cap = cap;
}

sb__strset_entry_t* sb__strset_find(const sb__strset_t* set, const char* key) {
  if (set->cap == 0)
    return NULL;
  return *strset_slot(set->slot, set->cap, key);
}

sb__strset_entry_t* sb__strset_add(sb__strset_t* set, const char* key, int* added) {
  sb__strset_entry_t** at;
  size_t len;
  if (set->n + 1 > set->cap / 4 * 3)
    strset_grow(set);
  at = strset_slot(set->slot, set->cap, key);
  if (added != NULL)
    *added = *at == NULL;
  if (*at == NULL) {
    len = strlen(key);
    *at = sb__xmalloc(sizeof(**at) + len + 1);
    (*at)->value = 0;
    memcpy((*at)->key, key, len + 1);
    set->n++;
  }
  return *at;
}

size_t sb__strset_count(const sb__strset_t* set) {
  return set->n;
}

sb__strset_entry_t* sb__strset_next(const sb__strset_t* set, size_t* pos) {
  for (; *pos < set->cap; (*pos)++)
    if (set->slot[*pos] != NULL)
      return set->slot[(*pos)++];
  return NULL;
}

void sb__strset_clear(sb__strset_t* set) {
  size_t i;
  for (i = 0; i < set->cap; i++)
    free(set->slot[i]);
  free(set->slot);
  set->slot = NULL;
  set->cap = set->n = 0;
}
