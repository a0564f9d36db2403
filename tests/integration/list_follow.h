/* list_follow.h - integration tests of test_follow.c. */
#ifndef SB_LIST_FOLLOW_H
#define SB_LIST_FOLLOW_H

#define TEST_LIST_FOLLOW(X)                                                            \
  X(follow_live_stream)                                                                \
  X(follow_slow_follower)

#endif
