/* list_archive_spool.h - integration tests of test_archive_spool.c. */
#ifndef SB_LIST_ARCHIVE_SPOOL_H
#define SB_LIST_ARCHIVE_SPOOL_H

#define TEST_LIST_ARCHIVE_SPOOL(X)                                                     \
  X(archive_spool_read_only)                                                           \
  X(archive_spool_read_only_restart)                                                   \
  X(archive_spool_blocked)                                                             \
  X(archive_spool_blocked_restart)                                                     \
  X(archive_spool_empty_log_removed)                                                   \
  X(archive_spool_full_disk_empty_log)                                                 \
  X(archive_spool_check_config_dirs)                                                   \
  X(archive_spool_segment_gone)                                                        \
  X(archive_spool_dropped)

#endif
