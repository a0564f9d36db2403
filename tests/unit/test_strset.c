/*
 * test_strset.c - the string set (strset.c): what is added is found with its value,
 * nothing else is; entries keep their addresses while the table grows (the archive
 * keeps pointers to them); a walk sees each entry once; a cleared set is empty and
 * usable again.
 */
#include <stdio.h>
#include <string.h>

#include "strset.h"
#include "task.h"

#define MANY 20000

TEST_IMPL(strset_add_find) {
  sb__strset_t set = {0};
  sb__strset_entry_t *a, *b;
  int added = -1;
  ASSERT_NULL(sb__strset_find(&set, "a"));
  ASSERT_EQ(sb__strset_count(&set), 0);
  a = sb__strset_add(&set, "a/b/c", &added);
  ASSERT_NOT_NULL(a);
  ASSERT_EQ(added, 1);
  ASSERT_STR_EQ(a->key, "a/b/c");
  ASSERT_UEQ(a->value, 0);
  a->value = 42;
  b = sb__strset_add(&set, "a/b/c", &added);
  ASSERT(b == a);
  ASSERT_EQ(added, 0);
  ASSERT_UEQ(b->value, 42);
  /* Prefixes, extensions and the empty string are other keys. */
  ASSERT_NULL(sb__strset_find(&set, "a/b"));
  ASSERT_NULL(sb__strset_find(&set, "a/b/c/"));
  ASSERT_NULL(sb__strset_find(&set, ""));
  b = sb__strset_add(&set, "", NULL);
  ASSERT(b != a);
  ASSERT_STR_EQ(b->key, "");
  ASSERT(sb__strset_find(&set, "") == b);
  ASSERT(sb__strset_find(&set, "a/b/c") == a);
  ASSERT_EQ(sb__strset_count(&set), 2);
  sb__strset_clear(&set);
}

TEST_IMPL(strset_grows_entries_stay) {
  static sb__strset_entry_t* kept[MANY];
  sb__strset_t set = {0};
  char key[64];
  int i, added;
  for (i = 0; i < MANY; i++) {
    snprintf(key, sizeof(key), "prefix/stream%d", i);
    kept[i] = sb__strset_add(&set, key, &added);
    ASSERT_EQ(added, 1);
    kept[i]->value = (uint64_t)i * 7;
  }
  ASSERT_EQ(sb__strset_count(&set), MANY);
  for (i = 0; i < MANY; i++) {
    snprintf(key, sizeof(key), "prefix/stream%d", i);
    ASSERT(sb__strset_find(&set, key) == kept[i]);
    ASSERT_STR_EQ(kept[i]->key, key);
    ASSERT_UEQ(kept[i]->value, (uint64_t)i * 7);
    ASSERT(sb__strset_add(&set, key, &added) == kept[i]);
    ASSERT_EQ(added, 0);
  }
  ASSERT_EQ(sb__strset_count(&set), MANY);
  snprintf(key, sizeof(key), "prefix/stream%d", MANY);
  ASSERT_NULL(sb__strset_find(&set, key));
  sb__strset_clear(&set);
}

TEST_IMPL(strset_walk_each_once) {
  static unsigned char seen[MANY];
  sb__strset_t set = {0};
  sb__strset_entry_t* e;
  char key[64];
  size_t pos = 0, n = 0;
  int i;
  ASSERT_NULL(sb__strset_next(&set, &pos));
  for (i = 0; i < MANY; i++) {
    snprintf(key, sizeof(key), "%d", i);
    sb__strset_add(&set, key, NULL)->value = (uint64_t)i;
  }
  pos = 0;
  while ((e = sb__strset_next(&set, &pos)) != NULL) {
    ASSERT_LT(e->value, MANY);
    snprintf(key, sizeof(key), "%d", (int)e->value);
    ASSERT_STR_EQ(e->key, key);
    ASSERT_EQ(seen[e->value], 0);
    seen[e->value] = 1;
    n++;
  }
  ASSERT_EQ(n, MANY);
  ASSERT_NULL(sb__strset_next(&set, &pos));
  sb__strset_clear(&set);
}

TEST_IMPL(strset_clear_reuse) {
  sb__strset_t set = {0};
  char key[32];
  int i, added;
  sb__strset_clear(&set); /* an empty set may be cleared */
  for (i = 0; i < 1000; i++) {
    snprintf(key, sizeof(key), "k%d", i);
    sb__strset_add(&set, key, NULL);
  }
  sb__strset_clear(&set);
  ASSERT_EQ(sb__strset_count(&set), 0);
  ASSERT_NULL(sb__strset_find(&set, "k1"));
  ASSERT(sb__strset_add(&set, "k1", &added) != NULL);
  ASSERT_EQ(added, 1);
  ASSERT_EQ(sb__strset_count(&set), 1);
  sb__strset_clear(&set);
  sb__strset_clear(&set); /* and cleared twice */
  ASSERT_EQ(sb__strset_count(&set), 0);
}
