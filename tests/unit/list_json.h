/* list_json.h - unit tests of test_json.c. */
#ifndef SB_LIST_JSON_H
#define SB_LIST_JSON_H

#define TEST_LIST_JSON(X)                                                              \
  X(json_write_go_escaping)                                                            \
  X(json_read_strings)                                                                 \
  X(json_read_rejects)                                                                 \
  X(json_skip_depth_limit)                                                             \
  X(json_object_iteration_and_keys)                                                    \
  X(time_parse_and_format)

#endif
