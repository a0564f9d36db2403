/* list_archive.h - integration tests of test_archive.c. */
#ifndef SB_LIST_ARCHIVE_H
#define SB_LIST_ARCHIVE_H

#define TEST_LIST_ARCHIVE(X)                                                           \
  X(archive_long_names)                                                                \
  X(archive_disk_full)                                                                 \
  X(archive_recovery_after_kill)                                                       \
  X(archive_recovery_empty_open)                                                       \
  X(archive_gaps)                                                                      \
  X(archive_retention)

#endif
