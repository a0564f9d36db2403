/* varint.c - unsigned LEB128, byte-compatible with Go's encoding/binary. */
#include "protocol.h"

size_t sb__varint_encode(uint64_t v, uint8_t* out) {
  size_t n = 0;
  while (v >= 0x80) {
    out[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  out[n++] = (uint8_t)v;
  return n;
}

void sb__varint_reset(sb__varint_t* v) {
  v->value = 0;
  v->shift = 0;
  v->nbytes = 0;
}

/*
 * The overflow rule is Go's ReadUvarint: the 10th byte may only carry the single bit
 * left of a 64-bit value, and there is never an 11th byte. Over-long encodings that
 * stay within 10 bytes (80 00 for zero) are accepted, as Go accepts them.
 */
int sb__varint_feed(sb__varint_t* v, uint8_t byte) {
  if (v->nbytes == SB_VARINT_MAX_LEN - 1 && byte > 1)
    return SB_EVARINT;
  v->nbytes++;
  v->value |= (uint64_t)(byte & 0x7f) << v->shift;
  if (byte < 0x80)
    return 1;
  v->shift += 7;
  return 0;
}
