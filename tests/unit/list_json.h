/* list_json.h - unit tests of test_json.c (json_*) and test_timestamp.c (time_*). */
#ifndef SB_LIST_JSON_H
#define SB_LIST_JSON_H

#define TEST_LIST_JSON(X)                                                              \
  X(json_ws_and_peek)                                                                  \
  X(json_skip_valid)                                                                   \
  X(json_skip_invalid)                                                                 \
  X(json_numbers)                                                                      \
  X(json_skip_depth)                                                                   \
  X(json_skip_max_depth_field)                                                         \
  X(json_depth_counts_whole_document)                                                  \
  X(json_string_escapes)                                                               \
  X(json_string_surrogates)                                                            \
  X(json_string_invalid_utf8)                                                          \
  X(json_string_errors)                                                                \
  X(json_string_cursor)                                                                \
  X(json_object_iterate)                                                               \
  X(json_object_errors)                                                                \
  X(json_null)                                                                         \
  X(json_write_ascii)                                                                  \
  X(json_write_vectors)                                                                \
  X(json_write_roundtrip)                                                              \
  X(json_buf)                                                                          \
  X(json_key_equal)                                                                    \
  X(time_parse_vectors)                                                                \
  X(time_parse_fraction)                                                               \
  X(time_parse_offsets)                                                                \
  X(time_parse_rejects)                                                                \
  X(time_parse_prefixes_and_length)                                                    \
  X(time_leap_years)                                                                   \
  X(time_every_day)                                                                    \
  X(time_zero_constant)                                                                \
  X(time_format_range)                                                                 \
  X(time_now)

#endif
