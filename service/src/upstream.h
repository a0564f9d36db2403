/*
 * upstream.h - the upstream sink: a stream's way to the upstream server (upstream.c).
 *
 * Included by internal.h, after the log, config and counters it uses; a module includes
 * internal.h, not this file.
 */
#ifndef SB_SERVICE_UPSTREAM_H
#define SB_SERVICE_UPSTREAM_H

/* ---- upstream.c ---- */

/*
 * An upstream sink: every chunk goes to the spool; it goes upstream as soon as it is
 * read while the connection keeps up (durability "spool"; "always": once committed),
 * else from the spool when the connection can take it. The connection is dialed with
 * backoff, and reopened (tag streambroker.offset) from the replay window when it
 * breaks. The sink is done when every byte was written upstream and the connection
 * closed, or at a stop, once every byte is in the spool. The sink reports to its stream
 * through events.
 */
sb__sink_t* sb__upstream_sink_create(sb__stream_t* s, const sb__sink_events_t* events);
/* Dials now if the sink waits in backoff (the upstream appeared). */
void sb__upstream_kick(sb__sink_t* sink);
/* Tries a given-up stream again now (sbctl retry): 1 if it was given up, else 0. */
int sb__upstream_retry(sb__sink_t* sink);
/* Frees the set of names sent upstream (at broker close). */
void sb__upstream_names_free(struct sb__broker_s* b);
/* A sink for a stream resumed from the spool (its client is gone). */
sb__sink_t* sb__upstream_sink_resume(sb__stream_t* s, const sb__spool_resume_t* r,
                                     const sb__sink_events_t* events);

#endif /* SB_SERVICE_UPSTREAM_H */
