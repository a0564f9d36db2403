/*
 * budget.h - the replay-memory budget (budget.c): what the upstream module holds in
 * memory for all streams, bounded by replay_memory_max. Included by internal.h (the
 * broker embeds one); written only by budget.c, read through the accessors below
 * (stream.c, admin.c) and driven by the upstream files.
 */
#ifndef SB_SERVICE_BUDGET_H
#define SB_SERVICE_BUDGET_H

#include <stdint.h>

/* What the budget counts, each in bytes of memory. */
typedef enum {
  SB__BUDGET_WINDOWS, /* live streams' replay windows, with what is in flight */
  SB__BUDGET_SPILLS,  /* window chunks being written to the spool */
  SB__BUDGET_APPENDS, /* data read from clients waiting for its spool append */
  SB__BUDGET_DRAIN,   /* data read back from the spool, not yet written upstream (held
                         apart, to a quarter of the budget: not in sb__budget_used) */
  SB__BUDGET_KINDS
} sb__budget_kind_t;

/* A window in the budget's list, oldest first (embedded in its owner). */
typedef struct sb__budget_window_s {
  struct sb__budget_window_s *prev, *next;
  int listed;
} sb__budget_window_t;

/* A waiter for room to read back (embedded in its owner). */
typedef struct sb__budget_waiter_s {
  struct sb__budget_waiter_s *prev, *next;
  int listed;
} sb__budget_waiter_t;

typedef struct sb__budget_s sb__budget_t;

/* What the budget asks of its owner. */
typedef struct {
  /* Write the whole window w to the spool now (its stream stays live). */
  void (*spill)(sb__budget_t* bud, sb__budget_window_t* w);
  /* Hold (on) or let go (!on) every client; or, with pusher, hold that one. */
  void (*hold)(sb__budget_t* bud, void* pusher, int on);
  /* Room to read back: waiter w, taken off the list, may go on. */
  void (*wake)(sb__budget_t* bud, sb__budget_waiter_t* w);
} sb__budget_ops_t;

struct sb__budget_s {
  const uint64_t* max; /* replay_memory_max (the config's, which a reload may change) */
  uint64_t read_size;  /* the most one read back takes */
  const sb__budget_ops_t* ops;
  void* data; /* the owner's */
  uint64_t bytes[SB__BUDGET_KINDS];
  uint64_t peak; /* the most sb__budget_used was */
  int hold;      /* over the budget: clients are held */
  sb__budget_window_t *win_head, *win_tail;
  sb__budget_waiter_t *wait_head, *wait_tail;
  uint64_t waiters;
};

/* Sets the bound, the size of one read back and the owner's callbacks (again:
 * harmless). A zeroed budget counts, but cannot act until then. */
void sb__budget_setup(sb__budget_t* bud, const uint64_t* max, uint64_t read_size,
                      const sb__budget_ops_t* ops, void* data);

/* Counts n bytes more (charge) or less (credit) of a kind; nothing else happens. */
void sb__budget_charge(sb__budget_t* bud, sb__budget_kind_t kind, uint64_t n);
void sb__budget_credit(sb__budget_t* bud, sb__budget_kind_t kind, uint64_t n);

/* A window's memory: charged with w listed last (newest) if it was not; credited, and
 * w taken off the list when empty. */
void sb__budget_window_add(sb__budget_t* bud, sb__budget_window_t* w, uint64_t n);
void sb__budget_window_sub(sb__budget_t* bud, sb__budget_window_t* w, uint64_t n,
                           int empty);
/* Takes w off the list (not listed: nothing). */
void sb__budget_window_remove(sb__budget_t* bud, sb__budget_window_t* w);

/*
 * After a charge: past the bound, whole windows, oldest first, are spilled until the
 * windows hold half of it; while that is not enough, every client is held (or, already
 * held, pusher is) until sb__budget_release finds a quarter of the bound free.
 */
void sb__budget_check(sb__budget_t* bud, void* pusher);
/* After a credit: wakes readers while there is room, lets clients go once a quarter
 * of the bound is free. */
void sb__budget_release(sb__budget_t* bud);

/* Whether one more read back would pass a quarter of the bound. */
int sb__budget_drain_full(const sb__budget_t* bud);
/* Waits for room to read back (listed last); sb__budget_unwait leaves the list. */
void sb__budget_wait(sb__budget_t* bud, sb__budget_waiter_t* w);
void sb__budget_unwait(sb__budget_t* bud, sb__budget_waiter_t* w);
/* Wakes waiters, first listed first, while there is room for a read. */
void sb__budget_wake(sb__budget_t* bud);

/* The readers' view (status, the clients' reads). */
uint64_t sb__budget_used(const sb__budget_t* bud); /* windows + spills + appends */
uint64_t sb__budget_bytes(const sb__budget_t* bud, sb__budget_kind_t kind);
uint64_t sb__budget_peak(const sb__budget_t* bud);
int sb__budget_holding(const sb__budget_t* bud);

#endif /* SB_SERVICE_BUDGET_H */
