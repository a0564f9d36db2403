/*
 * test_upstream.c - the pieces of the upstream sink that stand alone: the names sent
 * (names.c), the replay-memory budget (budget.c), the replay window's push and trim
 * (window.c) and the dial and give-up backoff (util.c, link.c).
 */
#include <stdlib.h>
#include <string.h>

#include "upstream_int.h"
#include "link.h"
#include "names.h"
#include "window.h"
#include "task.h"

/* A broker with no spool and no loop: enough for names and the window. */
static sb__broker_t* bare_broker(void) {
  sb__broker_t* b = calloc(1, sizeof(*b));
  ASSERT_NOT_NULL(b);
  return b;
}

static char* pick(sb__broker_t* b, const char* orig, int renamed, unsigned* n) {
  return sb__names_pick(b, orig, renamed, n);
}

TEST_IMPL(names_first_is_original) {
  sb__broker_t* b = bare_broker();
  unsigned n = 0;
  char* name = pick(b, "a/b", 0, &n);
  ASSERT_STR_EQ(name, "a/b");
  ASSERT_EQ(n, 0);
  free(name);
  sb__names_free(b);
  free(b);
}

TEST_IMPL(names_sent_twice_takes_next) {
  sb__broker_t* b = bare_broker();
  unsigned n1 = 0, n2 = 0;
  char *first = pick(b, "a/b", 0, &n1), *second = pick(b, "a/b", 0, &n2), *again;
  ASSERT_STR_EQ(first, "a/b");
  /* A second stream of the name: the first free NAME:N, N from 2. */
  ASSERT_STR_EQ(second, "a/b:2");
  ASSERT_EQ(n2, 2);
  /* The same stream reopened: past the N it used. */
  again = pick(b, "a/b", 1, &n2);
  ASSERT_STR_EQ(again, "a/b:3");
  ASSERT_EQ(n2, 3);
  /* The first one reopened: 2 and 3 are taken. */
  free(first);
  first = pick(b, "a/b", 1, &n1);
  ASSERT_STR_EQ(first, "a/b:4");
  ASSERT_EQ(n1, 4);
  free(first);
  free(second);
  free(again);
  sb__names_free(b);
  free(b);
}

TEST_IMPL(names_skip_taken) {
  sb__broker_t* b = bare_broker();
  unsigned n = 0;
  char *other = pick(b, "x:2", 0, &n), *x, *x2;
  n = 0;
  x = pick(b, "x", 0, &n);
  ASSERT_STR_EQ(x, "x");
  n = 0;
  x2 = pick(b, "x", 0, &n);
  ASSERT_STR_EQ(x2, "x:3"); /* x:2 went upstream as a stream's own name */
  ASSERT_EQ(n, 3);
  free(other);
  free(x);
  free(x2);
  /* Freed, the set starts empty: the name is free again. */
  sb__names_free(b);
  n = 0;
  x = pick(b, "x", 0, &n);
  ASSERT_STR_EQ(x, "x");
  free(x);
  sb__names_free(b);
  free(b);
}

TEST_IMPL(names_suffix_cut) {
  sb__broker_t* b = bare_broker();
  char* orig = malloc(SB_MAX_NAME_LEN + 1);
  char *first, *next;
  unsigned n = 0;
  memset(orig, 'a', SB_MAX_NAME_LEN);
  /* The cut lands just after a '/': it is dropped with the cut. */
  orig[SB_MAX_NAME_LEN - 3] = '/';
  orig[SB_MAX_NAME_LEN] = '\0';
  first = pick(b, orig, 0, &n);
  ASSERT_STR_EQ(first, orig);
  next = pick(b, orig, 1, &n);
  ASSERT_EQ(strlen(next), SB_MAX_NAME_LEN - 1);
  ASSERT(memcmp(next, orig, SB_MAX_NAME_LEN - 3) == 0);
  ASSERT_STR_EQ(next + SB_MAX_NAME_LEN - 3, ":2");
  free(first);
  free(next);
  free(orig);
  sb__names_free(b);
  free(b);
}

/* ---- the budget, with callbacks that record what it asked ---- */

typedef struct {
  sb__budget_window_t win;
  sb__budget_waiter_t waiter;
  uint64_t bytes;
  char id;
} fake_t;

static char events[64];

static void event(char what, char id) {
  size_t n = strlen(events);
  ASSERT(n + 2 < sizeof(events));
  events[n] = what;
  events[n + 1] = id;
  events[n + 2] = '\0';
}

static void fake_spill(sb__budget_t* bud, sb__budget_window_t* w) {
  fake_t* f = SB_CONTAINER_OF(w, fake_t, win);
  event('s', f->id);
  sb__budget_window_sub(bud, w, f->bytes, 1);
  f->bytes = 0;
}

static void fake_hold(sb__budget_t* bud, void* pusher, int on) {
  (void)bud;
  event(on ? 'H' : 'L', pusher ? ((fake_t*)pusher)->id : '*');
}

static void fake_wake(sb__budget_t* bud, sb__budget_waiter_t* w) {
  fake_t* f = SB_CONTAINER_OF(w, fake_t, waiter);
  event('w', f->id);
  sb__budget_charge(bud, SB__BUDGET_DRAIN, bud->read_size);
}

static const sb__budget_ops_t fake_ops = {fake_spill, fake_hold, fake_wake};

static void add_window(sb__budget_t* bud, fake_t* f, uint64_t n) {
  f->bytes += n;
  sb__budget_window_add(bud, &f->win, n);
  sb__budget_check(bud, f);
}

TEST_IMPL(budget_spills_oldest_first) {
  sb__budget_t bud;
  uint64_t max = 1000;
  fake_t a = {.id = 'a'}, b = {.id = 'b'}, c = {.id = 'c'};
  memset(&bud, 0, sizeof(bud));
  events[0] = '\0';
  sb__budget_setup(&bud, &max, 100, &fake_ops, NULL);
  add_window(&bud, &a, 400);
  add_window(&bud, &b, 400);
  add_window(&bud, &a, 100); /* a stays the oldest */
  ASSERT_STR_EQ(events, "");
  add_window(&bud, &c, 200); /* 1100: spilled until the windows hold half */
  ASSERT_STR_EQ(events, "sasb");
  ASSERT_UEQ(sb__budget_bytes(&bud, SB__BUDGET_WINDOWS), 200);
  ASSERT_UEQ(sb__budget_used(&bud), 200);
  ASSERT_UEQ(sb__budget_peak(&bud), 1100);
  ASSERT(!sb__budget_holding(&bud));
  ASSERT(bud.win_head == &c.win && bud.win_tail == &c.win);
  /* Exactly at the bound: nothing happens. */
  events[0] = '\0';
  add_window(&bud, &a, 800);
  ASSERT_STR_EQ(events, "");
  ASSERT_UEQ(sb__budget_used(&bud), 1000);
}

TEST_IMPL(budget_hold_release) {
  sb__budget_t bud;
  uint64_t max = 1000;
  fake_t p = {.id = 'p'};
  memset(&bud, 0, sizeof(bud));
  events[0] = '\0';
  sb__budget_setup(&bud, &max, 100, &fake_ops, NULL);
  /* Appends and spills are not windows: nothing to spill, clients are held. */
  sb__budget_charge(&bud, SB__BUDGET_APPENDS, 900);
  sb__budget_charge(&bud, SB__BUDGET_SPILLS, 200);
  sb__budget_check(&bud, &p);
  ASSERT_STR_EQ(events, "H*");
  ASSERT(sb__budget_holding(&bud));
  /* Held already: only the one pushing. */
  sb__budget_check(&bud, &p);
  ASSERT_STR_EQ(events, "H*Hp");
  /* Let go once a quarter of the bound is free: 751 is not enough, 750 is. */
  sb__budget_credit(&bud, SB__BUDGET_APPENDS, 349);
  sb__budget_release(&bud);
  ASSERT_STR_EQ(events, "H*Hp");
  sb__budget_credit(&bud, SB__BUDGET_SPILLS, 1);
  sb__budget_release(&bud);
  ASSERT_STR_EQ(events, "H*HpL*");
  ASSERT(!sb__budget_holding(&bud));
  ASSERT_UEQ(sb__budget_peak(&bud), 1100);
  /* The read-back bytes are not in the bound that holds clients. */
  sb__budget_charge(&bud, SB__BUDGET_DRAIN, 5000);
  sb__budget_check(&bud, &p);
  ASSERT_STR_EQ(events, "H*HpL*");
}

TEST_IMPL(budget_wake_order) {
  sb__budget_t bud;
  uint64_t max = 4000; /* reads back up to a quarter: one read of 1000 at a time */
  fake_t a = {.id = 'a'}, b = {.id = 'b'}, c = {.id = 'c'};
  memset(&bud, 0, sizeof(bud));
  events[0] = '\0';
  sb__budget_setup(&bud, &max, 1000, &fake_ops, NULL);
  ASSERT(!sb__budget_drain_full(&bud));
  sb__budget_charge(&bud, SB__BUDGET_DRAIN, 1000);
  ASSERT(sb__budget_drain_full(&bud));
  sb__budget_wait(&bud, &b.waiter);
  sb__budget_wait(&bud, &a.waiter);
  sb__budget_wait(&bud, &c.waiter);
  sb__budget_wait(&bud, &b.waiter); /* listed once */
  ASSERT_UEQ(bud.waiters, 3);
  sb__budget_wake(&bud);
  ASSERT_STR_EQ(events, "");
  /* Each read woken takes the room: one at a time, first listed first. */
  sb__budget_credit(&bud, SB__BUDGET_DRAIN, 1000);
  sb__budget_release(&bud);
  ASSERT_STR_EQ(events, "wb");
  sb__budget_unwait(&bud, &a.waiter); /* closed while waiting */
  ASSERT_UEQ(bud.waiters, 1);
  sb__budget_credit(&bud, SB__BUDGET_DRAIN, 1000);
  sb__budget_wake(&bud);
  ASSERT_STR_EQ(events, "wbwc");
  ASSERT_UEQ(bud.waiters, 0);
  ASSERT_NULL(bud.wait_head);
  ASSERT_NULL(bud.wait_tail);
}

/* ---- the window ---- */

static sb__upstream_t* bare_upstream(uint64_t replay_window) {
  sb__upstream_t* up = calloc(1, sizeof(*up));
  ASSERT_NOT_NULL(up);
  up->b = bare_broker();
  up->b->cfg.replay_window = replay_window;
  up->b->cfg.replay_memory_max = UINT64_MAX / 2; /* never over: no spill here */
  sb__budget_setup(&up->b->budget, &up->b->cfg.replay_memory_max, 0, &fake_ops, NULL);
  return up;
}

static void free_upstream(sb__upstream_t* up) {
  sb__window_clear(up);
  ASSERT_UEQ(sb__budget_bytes(&up->b->budget, SB__BUDGET_WINDOWS), 0);
  ASSERT_NULL(up->b->budget.win_head);
  free(up->b);
  free(up);
}

/* Pushes a chunk of len bytes at the window's end; mark < -1: the offset itself. */
static uint64_t push(sb__upstream_t* up, size_t len, int64_t mark) {
  static const char data[100];
  sb__chunk_t* c = sb__chunk_new(data, len);
  uint64_t mem = chunk_mem(c);
  c->off = up->next_off;
  c->mark = mark < -1 ? (int64_t)c->off : mark;
  up->next_off += len;
  sb__window_push(up, c);
  return mem;
}

static uint64_t window_start(sb__upstream_t* up) {
  return up->mem_head ? up->mem_head->off : UINT64_MAX;
}

TEST_IMPL(window_push_counts) {
  sb__upstream_t* up = bare_upstream(100);
  uint64_t mem = 0;
  int i;
  for (i = 0; i < 5; i++)
    mem += push(up, 50, -2);
  ASSERT_UEQ(up->mem_bytes, mem);
  ASSERT_UEQ(sb__budget_bytes(&up->b->budget, SB__BUDGET_WINDOWS), mem);
  ASSERT(up->b->budget.win_head == &up->win);
  ASSERT_UEQ(window_start(up), 0);
  ASSERT_UEQ(up->mem_tail->off, 200);
  free_upstream(up);
}

TEST_IMPL(window_trim_boundaries) {
  sb__upstream_t* up = bare_upstream(100);
  int i;
  for (i = 0; i < 5; i++) /* bytes 0-250, resend points at 0, 50, ..., 200 */
    push(up, 50, -2);
  up->acked = 100; /* the window reaches back to 0 */
  sb__window_trim(up);
  ASSERT_UEQ(window_start(up), 0);
  up->acked = 149; /* to 49: the point at 0 is the last at or before it */
  sb__window_trim(up);
  ASSERT_UEQ(window_start(up), 0);
  up->acked = 150; /* to 50 */
  sb__window_trim(up);
  ASSERT_UEQ(window_start(up), 50);
  up->acked = 249; /* to 149 */
  sb__window_trim(up);
  ASSERT_UEQ(window_start(up), 100);
  free_upstream(up);

  /* Inside a datagram (mark -1) is no resend point: the window keeps its start. */
  up = bare_upstream(100);
  push(up, 50, 0);
  push(up, 50, -1);
  push(up, 50, -1);
  push(up, 50, 1);
  up->acked = 200; /* to 100: inside datagram 0, which starts at 0 */
  sb__window_trim(up);
  ASSERT_UEQ(window_start(up), 0);
  up->acked = 250; /* to 150: datagram 1 */
  sb__window_trim(up);
  ASSERT_UEQ(window_start(up), 150);
  up->acked = 249; /* nothing more to drop */
  sb__window_trim(up);
  ASSERT_UEQ(window_start(up), 150);
  ASSERT_UEQ(up->mem_bytes, sb__budget_bytes(&up->b->budget, SB__BUDGET_WINDOWS));
  free_upstream(up);
}

/* ---- backoff ---- */

TEST_IMPL(backoff_doubling_cap) {
  sb__config_t cfg;
  static const struct {
    unsigned step;
    uint64_t full;
  } want[] = {{0, 100},  {1, 200},   {2, 400},  {3, 800},
              {4, 1000}, {20, 1000}, {63, 1000}};
  size_t i;
  int k;
  memset(&cfg, 0, sizeof(cfg));
  cfg.backoff_initial_ms = 100;
  cfg.backoff_max_ms = 1000;
  /* Each delay is drawn from the upper half of its step's full delay (jitter). */
  for (i = 0; i < sizeof(want) / sizeof(want[0]); i++)
    for (k = 0; k < 200; k++) {
      uint64_t d = sb__backoff_ms(&cfg, want[i].step);
      ASSERT_UEQ(d >= want[i].full / 2 && d <= want[i].full, 1);
    }
}

TEST_IMPL(backoff_given_up_delay) {
  ASSERT_UEQ(sb__link_given_up_delay(0), 60000);
  ASSERT_UEQ(sb__link_given_up_delay(1), 120000);
  ASSERT_UEQ(sb__link_given_up_delay(5), 1920000);
  ASSERT_UEQ(sb__link_given_up_delay(6), 3600000); /* 3,840 s: capped at an hour */
  ASSERT_UEQ(sb__link_given_up_delay(1000), 3600000);
}
