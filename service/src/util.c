/* util.c - chunks, and backoff with jitter. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

sb__chunk_t* sb__chunk_new(const void* data, size_t len) {
  sb__chunk_t* c = sb__xmalloc(sizeof(*c) + len);
  c->next = NULL;
  c->len = len;
  c->cap = 0;
  c->refs = 1;
  c->off = 0;
  c->mark = -1;
  if (len > 0)
    memcpy(c->data, data, len);
  return c;
}

#define SB__READ_POOL_MAX 32

static sb__chunk_t* sb__read_pool;
static unsigned sb__read_pool_len;

sb__chunk_t* sb__chunk_new_read(void) {
  sb__chunk_t* c = sb__read_pool;
  if (c != NULL) {
    sb__read_pool = c->next;
    sb__read_pool_len--;
  } else {
    c = sb__xmalloc(sizeof(*c) + SB__READ_SIZE);
    c->cap = SB__READ_SIZE;
  }
  c->next = NULL;
  c->len = 0;
  c->refs = 1;
  c->off = 0;
  c->mark = -1;
  return c;
}

sb__chunk_t* sb__chunk_ref(sb__chunk_t* c) {
  c->refs++;
  return c;
}

void sb__chunk_free(sb__chunk_t* c) {
  if (c == NULL || --c->refs > 0)
    return;
  if (c->cap == SB__READ_SIZE && sb__read_pool_len < SB__READ_POOL_MAX) {
    c->next = sb__read_pool;
    sb__read_pool = c;
    sb__read_pool_len++;
    return;
  }
  free(c);
}

/* xorshift64: jitter needs spread, not quality; seeded from the clock once. Loop
 * thread only. */
static uint64_t sb__jitter_state;

static uint64_t sb__jitter_next(void) {
  if (sb__jitter_state == 0)
    sb__jitter_state = uv_hrtime() | 1;
  sb__jitter_state ^= sb__jitter_state << 13;
  sb__jitter_state ^= sb__jitter_state >> 7;
  sb__jitter_state ^= sb__jitter_state << 17;
  return sb__jitter_state;
}

uint64_t sb__backoff_ms(const sb__config_t* cfg, unsigned step) {
  uint64_t delay = cfg->backoff_initial_ms << (step < 20 ? step : 20);
  if (delay > cfg->backoff_max_ms)
    delay = cfg->backoff_max_ms;
  return delay / 2 + sb__jitter_next() % (delay / 2 + 1);
}
