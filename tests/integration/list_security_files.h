/* list_security_files.h - integration tests of test_security_files.c. */
#ifndef SB_LIST_SECURITY_FILES_H
#define SB_LIST_SECURITY_FILES_H

#define TEST_LIST_SECURITY_FILES(X)                                                    \
  X(security_modes_under_any_umask)                                                    \
  X(security_reader_group_reads_writers_do_not)                                        \
  X(security_symlink_sidecar_tmp)                                                      \
  X(security_symlink_recovery_tmp)                                                     \
  X(security_symlink_spool_reserve)                                                    \
  X(security_symlink_log_file)                                                         \
  X(security_socket_dir_trap)

#endif
