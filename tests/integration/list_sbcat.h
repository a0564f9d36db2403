/* list_sbcat.h - integration tests of test_sbcat.c. */
#ifndef SB_LIST_SBCAT_H
#define SB_LIST_SBCAT_H

#define TEST_LIST_SBCAT(X)                                                             \
  X(sbcat_text_stream_wire_bytes)                                                      \
  X(sbcat_datagram_stream_wire_bytes)                                                  \
  X(sbcat_binary_stream_all_bytes)                                                     \
  X(sbcat_address_and_namespace_from_env)                                              \
  X(sbcat_errors)                                                                      \
  X(sbcat_default_address)                                                             \
  X(client_busy_server_times_out)                                                      \
  X(sbcat_sbrun_unread_stream_fails)

#endif
