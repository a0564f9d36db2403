/* list_config.h - unit tests of test_config.c (config, log, util, platform paths). */
#ifndef SB_LIST_CONFIG_H
#define SB_LIST_CONFIG_H

#define TEST_LIST_CONFIG(X)                                                            \
  X(config_empty_object_defaults)                                                      \
  X(config_every_key)                                                                  \
  X(config_archive_dir_follows_data_dir)                                               \
  X(config_unknown_key_line)                                                           \
  X(config_wrong_type)                                                                 \
  X(config_out_of_range)                                                               \
  X(config_non_integer)                                                                \
  X(config_duplicate_key)                                                              \
  X(config_syntax_error_line)                                                          \
  X(config_comment_is_syntax_error)                                                    \
  X(config_trailing_text)                                                              \
  X(config_top_level_not_object)                                                       \
  X(config_null_upstream)                                                              \
  X(config_bad_address)                                                                \
  X(config_wrong_platform_address)                                                     \
  X(config_backoff_max_below_initial)                                                  \
  X(config_error_leaves_config)                                                        \
  X(config_key_lines_skip_nested)                                                      \
  X(config_load_errors)                                                                \
  X(config_shipped_file_loads)                                                         \
  X(config_shipped_file_matches_defaults)                                              \
  X(config_write_defaults_parses)                                                      \
  X(config_keys_md_matches_table)                                                      \
  X(config_log_levels)                                                                 \
  X(config_log_lines)                                                                  \
  X(config_path_join)                                                                  \
  X(config_mkdir_p)                                                                    \
  X(config_uv_err)                                                                     \
  X(config_relative_paths_refused)                                                     \
  X(config_path_parent)                                                                \
  X(config_check_dirs)

#endif
