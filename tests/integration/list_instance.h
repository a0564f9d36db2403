/* list_instance.h - integration tests of test_instance.c. */
#ifndef SB_LIST_INSTANCE_H
#define SB_LIST_INSTANCE_H

#define TEST_LIST_INSTANCE(X)                                                          \
  X(instance_second_on_same_data_dir)                                                  \
  X(instance_lock_survives_a_kill)

#endif
