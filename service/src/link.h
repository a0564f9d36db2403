/*
 * link.h - a stream's upstream connection (link.c): its state (sb__link_state_t) and
 * its functions. Included by upstream_int.h (for the state), so by every file of the
 * upstream module; upstream.c and link.c call the functions: the files below link.c
 * reach them through up->ops.
 */
#ifndef SB_SERVICE_LINK_H
#define SB_SERVICE_LINK_H

/*
 * Where a stream's upstream connection stands: one state at a time. Beside it, the
 * pipe handle's own facts (pipe_open, pipe_closing: its libuv lifetime) and the
 * sink's final close (closing) stay flags of sb__upstream_t.
 */
typedef enum {
  SB__LINK_IDLE,        /* no connection, and no dial pending */
  SB__LINK_BACKOFF,     /* no connection: the next dial waits on the timer */
  SB__LINK_WAIT_MEMORY, /* a reopen waits for room in the budget before it dials
                           (it reads its window back at once) */
  SB__LINK_OPENING,     /* connected; a reopen reads its window back before its
                           handshake */
  SB__LINK_OPEN,        /* connected: the connection takes data */
  SB__LINK_ENDING,      /* every byte written: the end waits for the upstream's
                           confirmation (POSIX: its EOF; Windows: the flush) */
  SB__LINK_LINGERING,   /* the upstream read the end but could not say it stored it:
                           the window is kept for upstream_end_linger_ms (timer) */
  SB__LINK_GIVEN_UP,    /* refused too often: no dials until its retry timer, the
                           upstream appearing, or sbctl retry */
} sb__link_state_t;

/* Whether the state is one of a connection that was made (the pipe is open). */
static inline int sb__link_connected(sb__link_state_t s) {
  return s == SB__LINK_OPENING || s == SB__LINK_OPEN || s == SB__LINK_ENDING;
}

/* Defined in upstream_int.h, which includes this header before it. */
typedef struct sb__upstream_s sb__upstream_t;

/* One dial attempt now (or a wait: for room in the budget, for a close to finish). */
void sb__link_dial(sb__upstream_t* up);
/* What to do next on the connection: acks, the end, reads of the spool, going live. */
void sb__link_pump(sb__upstream_t* up);
/* Writes c (a new reference) upstream; it must start at send_off. drain: read back
 * from the spool (counted in the budget until written). */
void sb__link_send(sb__upstream_t* up, sb__chunk_t* c, int drain);
/* Writes c live: it joins the window (the caller's reference passes to it). */
void sb__link_send_live(sb__upstream_t* up, sb__chunk_t* c);
/* Writes the handshake under the next name; tag: a reopen, tagged with mark. */
void sb__link_handshake(sb__upstream_t* up, int tag, int64_t mark);
/* Ends the current connection (its pending writes are cancelled). */
void sb__link_close(sb__upstream_t* up);
/* The connection broke (err): a refusal, a give-up, or a break resent on a new one. */
void sb__link_broken(sb__upstream_t* up, int err);
/* Tries a given-up stream again now (why: for the log). */
void sb__link_retry_given_up(sb__upstream_t* up, const char* why);
/* The delay before a given-up stream is tried again after rounds rounds: 60 s,
 * doubling at each round up to an hour. */
uint64_t sb__link_given_up_delay(unsigned rounds);
/* The end was not confirmed in time: read (delivered) if nothing is left unread,
 * else a break. */
void sb__link_end_unconfirmed(sb__upstream_t* up);
/* The upstream read every byte: delivered, or lingering until its process is seen
 * to live on. */
void sb__link_end_read(sb__upstream_t* up);
/* The upstream exited before confirming the end: the window is resent. */
void sb__link_end_lost(sb__upstream_t* up);
/* Whether the upstream's process lives (1), exited (0) or cannot be known (< 0). */
int sb__link_proc_alive(sb__upstream_t* up);

#endif /* SB_SERVICE_LINK_H */
