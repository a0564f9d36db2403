/*
 * link.h - a stream's upstream connection (link.c). Included by upstream.c and
 * link.c, after upstream_int.h; the files below link.c reach it through up->ops.
 */
#ifndef SB_SERVICE_LINK_H
#define SB_SERVICE_LINK_H

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
