/*
 * archive.h - the archive: with no upstream configured, each stream is written to files
 * of its own under the archive directory (archive.c and the archive_*.c files; what
 * those share is archive_int.h).
 *
 * Included by internal.h, after the stream, spool and upstream declarations it uses; a
 * module includes internal.h, not this file.
 */
#ifndef SB_SERVICE_ARCHIVE_H
#define SB_SERVICE_ARCHIVE_H

/* ---- archive.c, archive_sink.c, archive_path.c ---- */

/*
 * An archive sink for a stream whose handshake is done: the data goes to
 * ARCHIVE_DIR/<name>.log (datagram streams keep their varint framing) and the
 * properties to <name>.json, written when the stream opens and rewritten when it
 * closes (with the close time and the byte and datagram counts). Returns NULL after
 * logging when the files cannot be created. The sink reports to its stream through
 * events.
 */
sb__sink_t* sb__archive_sink_create(sb__stream_t* s, const sb__sink_events_t* events);
/*
 * The relative path (with '/' separators) for a stream name: each segment is kept when
 * it is safe, and otherwise changed so that no ".." or "." segment, no absolute path
 * and no Windows device name (CON, NUL, COM1, ...) or reserved character can result.
 * Returns a new string (free()).
 */
char* sb__archive_path(const char* name);

typedef struct sb__archive_state_s sb__archive_state_t;
struct sb__broker_s;
/*
 * Archive mode, at start (loop thread, after the control pipe is bound so that a
 * second instance never touches a running one's files, before serving): scans
 * ARCHIVE_DIR, finishes every stream an earlier run left unclosed (sidecar written
 * with "complete": false, "recovered": true; stale .json.tmp removed), and learns
 * each name's known end (for gaps) and the archive's size (for retention). Errors
 * are logged; returns 0 (a damaged archive does not stop the service).
 */
int sb__archive_open(struct sb__broker_s* b);
/* Frees what sb__archive_open made (after every stream is gone). */
void sb__archive_close(struct sb__broker_s* b);
/* Adds the archive's figures to the admin status (a cJSON object). */
void sb__archive_describe(struct sb__broker_s* b, void* cjson_object);
/* Retention changed (a reload): its timer runs when archive_max_age is set, and a
 * check runs now. */
void sb__archive_reconfigure(struct sb__broker_s* b);

/* A sink for a stream left in the spool by an earlier run (its client is gone): it is
 * archived, in a new segment, once the archive can write (archive_spool.c). */
sb__sink_t* sb__archive_sink_resume(sb__stream_t* s, const sb__spool_resume_t* r,
                                    const sb__sink_events_t* events);

#endif /* SB_SERVICE_ARCHIVE_H */
