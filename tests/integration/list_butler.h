/* list_butler.h - integration tests of test_butler.c. */
#ifndef SB_LIST_BUTLER_H
#define SB_LIST_BUTLER_H

#define TEST_LIST_BUTLER(X)                                                            \
  X(butler_refuses_like_the_butler)                                                    \
  X(butler_twenty_clients_same_names)                                                  \
  X(butler_connection_cut)                                                             \
  X(butler_closed_namespace)                                                           \
  X(butler_dies_at_stream_end)                                                         \
  X(butler_reads_part_then_closes)                                                     \
  X(butler_given_up_retried)                                                           \
  X(butler_service_restarts)                                                           \
  X(butler_archive_cat_twenty_ids)                                                     \
  X(butler_archive_cat_datagrams)

#endif
