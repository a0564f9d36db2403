/*
 * budget.c - the replay-memory budget: the bytes the upstream module holds in memory
 * (windows, spills, appends; and, apart, what was read back from the spool), its list
 * of windows oldest first, its list of streams waiting for room to read back, and
 * whether clients are held. It decides; its owner acts, through the callbacks it gave
 * (spill a window, hold or let go of clients, wake a waiter). Loop thread.
 */
#include <stddef.h>

#include "budget.h"

void sb__budget_setup(sb__budget_t* bud, const uint64_t* max, uint64_t read_size,
                      const sb__budget_ops_t* ops, void* data) {
  bud->max = max;
  bud->read_size = read_size;
  bud->ops = ops;
  bud->data = data;
}

void sb__budget_charge(sb__budget_t* bud, sb__budget_kind_t kind, uint64_t n) {
  bud->bytes[kind] += n;
}

void sb__budget_credit(sb__budget_t* bud, sb__budget_kind_t kind, uint64_t n) {
  bud->bytes[kind] -= n;
}

void sb__budget_window_remove(sb__budget_t* bud, sb__budget_window_t* w) {
  if (!w->listed)
    return;
  if (w->prev)
    w->prev->next = w->next;
  else
    bud->win_head = w->next;
  if (w->next)
    w->next->prev = w->prev;
  else
    bud->win_tail = w->prev;
  w->prev = w->next = NULL;
  w->listed = 0;
}

void sb__budget_window_add(sb__budget_t* bud, sb__budget_window_t* w, uint64_t n) {
  if (!w->listed) {
    w->prev = bud->win_tail;
    w->next = NULL;
    if (bud->win_tail)
      bud->win_tail->next = w;
    else
      bud->win_head = w;
    bud->win_tail = w;
    w->listed = 1;
  }
  bud->bytes[SB__BUDGET_WINDOWS] += n;
}

void sb__budget_window_sub(sb__budget_t* bud, sb__budget_window_t* w, uint64_t n,
                           int empty) {
  if (empty)
    sb__budget_window_remove(bud, w);
  bud->bytes[SB__BUDGET_WINDOWS] -= n;
}

uint64_t sb__budget_used(const sb__budget_t* bud) {
  return bud->bytes[SB__BUDGET_WINDOWS] + bud->bytes[SB__BUDGET_SPILLS] +
         bud->bytes[SB__BUDGET_APPENDS];
}

uint64_t sb__budget_bytes(const sb__budget_t* bud, sb__budget_kind_t kind) {
  return bud->bytes[kind];
}

uint64_t sb__budget_peak(const sb__budget_t* bud) {
  return bud->peak;
}

int sb__budget_holding(const sb__budget_t* bud) {
  return bud->hold;
}

void sb__budget_check(sb__budget_t* bud, void* pusher) {
  uint64_t max = *bud->max;
  if (sb__budget_used(bud) > bud->peak)
    bud->peak = sb__budget_used(bud);
  if (sb__budget_used(bud) <= max)
    return;
  while (bud->bytes[SB__BUDGET_WINDOWS] > max / 2 && bud->win_head) {
    sb__budget_window_t* w = bud->win_head;
    bud->ops->spill(bud, w);
    sb__budget_window_remove(bud, w);
  }
  if (sb__budget_used(bud) <= max)
    return;
  if (bud->hold) {
    if (pusher)
      bud->ops->hold(bud, pusher, 1);
    return;
  }
  bud->hold = 1;
  bud->ops->hold(bud, NULL, 1);
}

int sb__budget_drain_full(const sb__budget_t* bud) {
  return bud->bytes[SB__BUDGET_DRAIN] + bud->read_size > *bud->max / 4;
}

void sb__budget_wait(sb__budget_t* bud, sb__budget_waiter_t* w) {
  if (w->listed)
    return;
  w->prev = bud->wait_tail;
  w->next = NULL;
  if (bud->wait_tail)
    bud->wait_tail->next = w;
  else
    bud->wait_head = w;
  bud->wait_tail = w;
  w->listed = 1;
  bud->waiters++;
}

void sb__budget_unwait(sb__budget_t* bud, sb__budget_waiter_t* w) {
  if (!w->listed)
    return;
  if (w->prev)
    w->prev->next = w->next;
  else
    bud->wait_head = w->next;
  if (w->next)
    w->next->prev = w->prev;
  else
    bud->wait_tail = w->prev;
  w->prev = w->next = NULL;
  w->listed = 0;
  bud->waiters--;
}

void sb__budget_wake(sb__budget_t* bud) {
  /* A waiter woken may wait again (listed last) only while there is no room, which
   * ends the walk. */
  while (bud->wait_head && !sb__budget_drain_full(bud)) {
    sb__budget_waiter_t* w = bud->wait_head;
    sb__budget_unwait(bud, w);
    bud->ops->wake(bud, w);
  }
}

void sb__budget_release(sb__budget_t* bud) {
  uint64_t max = *bud->max;
  sb__budget_wake(bud);
  if (!bud->hold || sb__budget_used(bud) > max - max / 4)
    return;
  bud->hold = 0;
  bud->ops->hold(bud, NULL, 0);
}
