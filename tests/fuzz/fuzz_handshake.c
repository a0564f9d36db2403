/*
 * fuzz_handshake.c - the handshake decoder on arbitrary bytes, fed whole and in the
 * split the first byte picks. Both feedings must agree; an accepted handshake must
 * re-encode and decode to the same properties.
 */
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

static int decode(const uint8_t* data, size_t size, size_t split, sb__props_t* p,
                  size_t* used_total) {
  sb__handshake_t hs;
  size_t off = 0, used;
  int r = 0;
  sb__handshake_init(&hs, 0);
  while (off < size) {
    size_t n = size - off < split ? size - off : split;
    r = sb__handshake_feed(&hs, data + off, n, &used, p);
    if (used > n)
      abort();
    off += used;
    if (r != 0)
      break;
  }
  if (r == 0)
    r = sb__handshake_eof(&hs);
  *used_total = off;
  sb__handshake_destroy(&hs);
  return r;
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sb__props_t a, b;
  size_t used_a, used_b, split;
  int ra, rb;
  if (size == 0)
    return 0;
  split = (size_t)data[0] % 17 + 1;
  data++;
  size--;
  ra = decode(data, size, size ? size : 1, &a, &used_a);
  rb = decode(data, size, split, &b, &used_b);
  if (ra != rb || (ra == 1 && used_a != used_b))
    abort();
  if (rb == 1)
    sb__props_free(&b);
  if (ra == 1) {
    sb__buf_t enc = {0};
    sb__props_t c;
    int r = sb__props_encode_json(&a, &enc);
    /* Every decoded property set is encodable (a timestamp's year is within range) and
     * decodes to the same name, type and tag count. */
    if (r != 0 || sb__props_decode_json(enc.data, enc.len, &c) != 0)
      abort();
    if (strcmp(a.name, c.name) != 0 || a.type != c.type || a.tag_count != c.tag_count ||
        strcmp(a.content_type, c.content_type) != 0)
      abort();
    sb__props_free(&c);
    sb__buf_free(&enc);
    sb__props_free(&a);
  }
  return 0;
}
