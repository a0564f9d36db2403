/* list_archive.h - unit tests of test_archive.c (stream names to archive paths). */
#ifndef SB_LIST_ARCHIVE_H
#define SB_LIST_ARCHIVE_H

#define TEST_LIST_ARCHIVE(X)                                                           \
  X(archive_path_table)                                                                \
  X(archive_path_hostile)                                                              \
  X(archive_path_devices)                                                              \
  X(archive_path_injective)                                                            \
  X(archive_path_files_not_dirs)                                                       \
  X(archive_path_random)                                                               \
  X(archive_path_long_segments)                                                        \
  X(archive_path_deep_names)                                                           \
  X(archive_path_long_injective)

#endif
