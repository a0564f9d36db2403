/* list_codec.h - unit tests of test_codec.c and test_client.c. */
#ifndef SB_LIST_CODEC_H
#define SB_LIST_CODEC_H

#define TEST_LIST_CODEC(X)                                                             \
  X(varint_encode_vectors)                                                             \
  X(varint_decode_vectors)                                                             \
  X(varint_edge_cases)                                                                 \
  X(name_validation_table)                                                             \
  X(name_length_limits)                                                                \
  X(tag_validation)                                                                    \
  X(address_parse)                                                                     \
  X(name_join)                                                                         \
  X(handshake_encode_go_vectors)                                                       \
  X(handshake_encode_zero_timestamp)                                                   \
  X(handshake_encode_escaping)                                                         \
  X(props_from_opts_errors)                                                            \
  X(handshake_decode_go_vectors)                                                       \
  X(handshake_roundtrip_reencode)                                                      \
  X(handshake_decode_rejects)                                                          \
  X(handshake_frame_size_limit)                                                        \
  X(handshake_stops_at_payload)                                                        \
  X(handshake_decode_go_semantics)                                                     \
  X(datagram_vectors)                                                                  \
  X(datagram_limits_and_truncation)                                                    \
  X(error_names)                                                                       \
  X(client_open_addresses)                                                             \
  X(client_absent_server)

#endif
