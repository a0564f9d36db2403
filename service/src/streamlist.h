/*
 * streamlist.h - the broker's list of streams (b->streams, b->nstreams): adding and
 * removing written once. Included by broker.c (a client's stream admitted, a stream
 * gone) and stream.c (a stream resumed from the spool); loop thread.
 */
#ifndef SB_STREAMLIST_H
#define SB_STREAMLIST_H

#include "internal.h"

/* s goes first in the list, which counts it. */
static inline void sb__streamlist_add(sb__broker_t* b, sb__stream_t* s) {
  s->next = b->streams;
  if (b->streams)
    b->streams->prev = s;
  b->streams = s;
  b->nstreams++;
}

/* s leaves the list, which no longer counts it. */
static inline void sb__streamlist_remove(sb__broker_t* b, sb__stream_t* s) {
  if (s->prev)
    s->prev->next = s->next;
  else
    b->streams = s->next;
  if (s->next)
    s->next->prev = s->prev;
  b->nstreams--;
}

#endif
