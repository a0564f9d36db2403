/*
 * names.h - the names sent upstream (names.c). Included by the upstream files
 * (upstream.c, link.c) and the unit tests; needs internal.h first.
 */
#ifndef SB_SERVICE_NAMES_H
#define SB_SERVICE_NAMES_H

/*
 * The name a stream goes upstream under on its next connection: its original name
 * orig, unless this service (or an earlier run, per the spool) sent it already or the
 * stream was renamed before (renamed), else the first NAME:N (N >= 2, past *name_n;
 * cut to SB_MAX_NAME_LEN) not sent yet, whose N is stored in *name_n. The name is
 * added to the set and recorded in the spool (when the broker has one). Returns a new
 * string the caller frees.
 */
char* sb__names_pick(sb__broker_t* b, const char* orig, int renamed, unsigned* name_n);
/* Frees the set (at broker close); the broker may pick names again after it. */
void sb__names_free(sb__broker_t* b);

#endif /* SB_SERVICE_NAMES_H */
