/* list_faults.h - integration tests of test_faults.c. */
#ifndef SB_LIST_FAULTS_H
#define SB_LIST_FAULTS_H

#define TEST_LIST_FAULTS(X)                                                            \
  X(faults_full_disk_drains_and_takes_new_streams)                                     \
  X(faults_start_on_full_disk)                                                         \
  X(faults_spool_record_fails)                                                         \
  X(faults_slow_upstream_killed_mid_stream)                                            \
  X(faults_truncated_spool_never_corrupts)                                             \
  X(faults_broker_killed_loss_bound)

#endif
