/* list_spool.h - integration tests of test_spool.c. */
#ifndef SB_LIST_SPOOL_H
#define SB_LIST_SPOOL_H

#define TEST_LIST_SPOOL(X)                                                             \
  X(spool_upstream_down_then_up)                                                       \
  X(spool_upstream_killed_repeatedly)                                                  \
  X(spool_drains_when_upstream_appears)                                                \
  X(spool_datagram_stream_reopened)                                                    \
  X(spool_resent_counted)                                                              \
  X(spool_window_too_small_gap_recorded)                                               \
  X(spool_cap_refuse_and_recover)                                                      \
  X(spool_cap_drop_oldest)                                                             \
  X(spool_corrupt_database_moved_aside)                                                \
  X(spool_old_schema_moved_aside)                                                      \
  X(spool_disk_full)

#endif
