/* list_accept.h - integration tests of test_accept.c. */
#ifndef SB_LIST_ACCEPT_H
#define SB_LIST_ACCEPT_H

#define TEST_LIST_ACCEPT(X)                                                            \
  X(accept_short_lived_raw_writers)                                                    \
  X(accept_short_lived_raw_writers_few_instances)                                      \
  X(accept_short_lived_lib_writers)                                                    \
  X(accept_stop_accounts_for_waiting_connections)

#endif
