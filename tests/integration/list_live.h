/* list_live.h - integration tests of test_live.c. */
#ifndef SB_LIST_LIVE_H
#define SB_LIST_LIVE_H

#define TEST_LIST_LIVE(X)                                                              \
  X(live_kill_loops_all_durabilities)                                                  \
  X(live_upstream_stalled)                                                             \
  X(live_memory_budget)                                                                \
  X(live_graceful_stop_resends_windows)                                                \
  X(live_healthy_upstream_no_spool)                                                    \
  X(live_end_timeout)

#endif
