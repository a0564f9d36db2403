/* list_reload.h - integration tests of test_reload.c. */
#ifndef SB_LIST_RELOAD_H
#define SB_LIST_RELOAD_H

#define TEST_LIST_RELOAD(X)                                                            \
  X(reload_live_stream)                                                                \
  X(reload_bad_config)

#endif
