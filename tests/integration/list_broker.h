/* list_broker.h - integration tests of test_broker.c. */
#ifndef SB_LIST_BROKER_H
#define SB_LIST_BROKER_H

#define TEST_LIST_BROKER(X)                                                            \
  X(broker_forwards_all_stream_types)                                                  \
  X(broker_many_concurrent_clients)                                                    \
  X(broker_bad_input_keeps_serving)                                                    \
  X(broker_refuses_second_instance)                                                    \
  X(broker_graceful_stop)                                                              \
  X(broker_config_errors)                                                              \
  X(broker_allowed_groups)

#endif
