/* list_upstream.h - unit tests of test_upstream.c (names, budget, window, backoff). */
#ifndef SB_LIST_UPSTREAM_H
#define SB_LIST_UPSTREAM_H

#define TEST_LIST_UPSTREAM(X)                                                          \
  X(names_first_is_original)                                                           \
  X(names_sent_twice_takes_next)                                                       \
  X(names_skip_taken)                                                                  \
  X(names_suffix_cut)                                                                  \
  X(budget_spills_oldest_first)                                                        \
  X(budget_hold_release)                                                               \
  X(budget_wake_order)                                                                 \
  X(window_push_counts)                                                                \
  X(window_trim_boundaries)                                                            \
  X(backoff_doubling_cap)                                                              \
  X(backoff_given_up_delay)

#endif
