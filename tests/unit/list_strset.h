/* list_strset.h - unit tests of test_strset.c (the string set, strset.c). */
#ifndef SB_LIST_STRSET_H
#define SB_LIST_STRSET_H

#define TEST_LIST_STRSET(X)                                                            \
  X(strset_add_find)                                                                   \
  X(strset_grows_entries_stay)                                                         \
  X(strset_walk_each_once)                                                             \
  X(strset_clear_reuse)

#endif
