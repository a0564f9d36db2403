/* list_admin.h - integration tests of test_admin.c. */
#ifndef SB_LIST_ADMIN_H
#define SB_LIST_ADMIN_H

#define TEST_LIST_ADMIN(X)                                                             \
  X(admin_status_and_streams)                                                          \
  X(admin_sbctl_errors)                                                                \
  X(admin_pipes_are_restricted)                                                        \
  X(admin_bad_sddl_refused)                                                            \
  X(admin_metrics_prometheus)                                                          \
  X(admin_metrics_promtool)                                                            \
  X(admin_text_archive_and_destinations)

#endif
