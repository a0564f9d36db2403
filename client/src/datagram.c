/* datagram.c - the framing of a datagram stream: varint length, then that many bytes. */
#include <string.h>

#include "protocol.h"

void sb__dgram_init(sb__dgram_t* d, uint64_t max_size) {
  memset(d, 0, sizeof(*d));
  d->max_size = max_size ? max_size : SB_MAX_DATAGRAM_SIZE;
}

/*
 * Events rather than a callback, so the caller decides what to do between them (the
 * service stops at each boundary to count it and may switch routes there), and so the
 * parser keeps no pointer into the caller's buffers between calls.
 */
int64_t sb__dgram_next(sb__dgram_t* d, const uint8_t* buf, size_t len,
                       sb__dgram_event_t* ev) {
  size_t i = 0;
  int r;
  memset(ev, 0, sizeof(*ev));
  if (d->pending_end) {
    d->pending_end = 0;
    d->count++;
    ev->kind = SB__DGRAM_END;
    return 0;
  }
  if (d->in_body) {
    size_t n = d->remaining < len ? (size_t)d->remaining : len;
    if (n == 0)
      return 0;
    d->remaining -= n;
    ev->kind = SB__DGRAM_DATA;
    ev->data = buf;
    ev->len = n;
    if (d->remaining == 0) {
      d->in_body = 0;
      d->pending_end = 1;
    }
    return (int64_t)n;
  }
  while (i < len) {
    r = sb__varint_feed(&d->varint, buf[i++]);
    if (r < 0)
      return r;
    if (r == 1) {
      uint64_t size = d->varint.value;
      sb__varint_reset(&d->varint);
      if (size > d->max_size)
        return SB_ETOOBIG;
      ev->kind = SB__DGRAM_START;
      ev->size = size;
      if (size == 0) {
        d->pending_end = 1;
      } else {
        d->in_body = 1;
        d->remaining = size;
      }
      return (int64_t)i;
    }
  }
  return (int64_t)i;
}

int sb__dgram_eof(const sb__dgram_t* d) {
  return d->in_body ? SB_ETRUNCATED : 0;
}
