/* list_security_win.h - integration tests of test_security_win.c. */
#ifndef SB_LIST_SECURITY_WIN_H
#define SB_LIST_SECURITY_WIN_H

#define TEST_LIST_SECURITY_WIN(X)                                                      \
  X(security_win_pipe_acls)                                                            \
  X(security_win_dirs_private)                                                         \
  X(security_win_acl_decisions)                                                        \
  X(security_win_data_dir_refused)                                                     \
  X(security_win_client_checks_server)                                                 \
  X(security_win_custom_sddl_checked)                                                  \
  X(security_win_taken_name_named)                                                     \
  X(security_win_stream_not_inherited)

#endif
