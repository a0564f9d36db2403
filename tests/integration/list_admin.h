/* list_admin.h - integration tests of test_admin.c. */
#ifndef SB_LIST_ADMIN_H
#define SB_LIST_ADMIN_H

#define TEST_LIST_ADMIN(X)                                                             \
  X(admin_status_and_streams)                                                          \
  X(admin_sbctl_errors)

#endif
