/* list_ops.h - integration tests of test_ops.c. */
#ifndef SB_LIST_OPS_H
#define SB_LIST_OPS_H

#define TEST_LIST_OPS(X)                                                               \
  X(ops_systemd_notify)                                                                \
  X(ops_log_rotation)                                                                  \
  X(ops_eventlog_reports)

#endif
