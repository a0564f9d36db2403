/* list_security_limits.h - integration tests of test_security_limits.c. */
#ifndef SB_LIST_SECURITY_LIMITS_H
#define SB_LIST_SECURITY_LIMITS_H

#define TEST_LIST_SECURITY_LIMITS(X)                                                   \
  X(security_user_flood_leaves_others_served)                                          \
  X(security_silent_flood_leaves_root_served)                                          \
  X(security_handshake_memory_bounded)                                                 \
  X(security_log_flood_keeps_log)                                                      \
  X(security_sbcat_refused_by_groups_fails)                                            \
  X(security_sbcat_refused_by_max_streams_fails)                                       \
  X(security_squatted_name_goes_to_plus_one)                                           \
  X(security_sidecar_names_client_sid)

#endif
