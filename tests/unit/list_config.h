/* list_config.h - unit tests of test_config.c. */
#ifndef SB_LIST_CONFIG_H
#define SB_LIST_CONFIG_H

#define TEST_LIST_CONFIG(X)                                                            \
  X(config_empty_object_gives_defaults)                                                \
  X(config_every_key)                                                                  \
  X(config_errors_name_key_and_line)                                                   \
  X(config_syntax_error_line)                                                          \
  X(config_shipped_file_loads)                                                         \
  X(config_keys_table_matches_code)                                                    \
  X(config_paths)

#endif
