/*
 * fuzz_datagram.c - the datagram framing parser on arbitrary bytes, whole and split:
 * both must find the same datagrams, and each datagram's bytes must add up to its
 * declared size.
 */
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

static uint64_t parse(const uint8_t* data, size_t size, size_t split, int* err,
                      uint64_t* bytes) {
  sb__dgram_t d;
  sb__dgram_event_t ev;
  size_t off = 0;
  uint64_t want = 0, got = 0;
  sb__dgram_init(&d, 1u << 16);
  *err = 0;
  *bytes = 0;
  while (off < size || d.pending_end) {
    size_t n = size - off < split ? size - off : split;
    int64_t r = sb__dgram_next(&d, data + off, n, &ev);
    if (r < 0) {
      *err = (int)r;
      return d.count;
    }
    if ((size_t)r > n)
      abort();
    off += (size_t)r;
    if (ev.kind == SB__DGRAM_START) {
      want = ev.size;
      got = 0;
    } else if (ev.kind == SB__DGRAM_DATA) {
      if (ev.data != data + off - ev.len)
        abort();
      got += ev.len;
      *bytes += ev.len;
    } else if (ev.kind == SB__DGRAM_END) {
      if (got != want)
        abort();
    } else if ((size_t)r != n) {
      abort(); /* "need more" only once all it was given is used */
    }
  }
  if (*err == 0)
    *err = sb__dgram_eof(&d);
  return d.count;
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  int ea, eb;
  uint64_t ba, bb, ca, cb;
  size_t split;
  if (size == 0)
    return 0;
  split = (size_t)data[0] % 13 + 1;
  data++;
  size--;
  ca = parse(data, size, size ? size : 1, &ea, &ba);
  cb = parse(data, size, split, &eb, &bb);
  if (ca != cb || ea != eb || ba != bb)
    abort();
  return 0;
}
