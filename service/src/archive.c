/*
 * archive.c - the archive as a whole: with no upstream configured, each stream is
 * written to a file of its own under the archive directory, its properties beside it
 * as JSON. Here: the archive's open at start, its close, a reload, its status; and
 * the files' format, which the other archive files follow.
 *
 * Files of a stream whose name maps to PATH (sb__archive_path) in ARCHIVE_DIR:
 *   PATH.log        the data, exactly as read from the client (datagram streams keep
 *                   their varint framing)
 *   PATH.json       the sidecar: written when the stream opens, rewritten (through
 *                   PATH.json.tmp and a rename, so it is never half-written) when it
 *                   closes
 * A name archived before is never overwritten: the stream takes the first free
 * sequence number N >= 1 instead, as PATH+N.log and PATH+N.json, and the sidecar says
 * "sequence": N (0 for the first). A sequence number is claimed by creating its .log
 * exclusively (O_CREAT | O_EXCL), so two streams of one name open at the same time, or
 * names that differ only in case on a case-insensitive file system, still get files of
 * their own. '+' never occurs in a mapped name, so PATH+N cannot be another name's
 * PATH.
 *
 * A file that cannot be written (read-only, no permission, a full disk, a missing
 * directory or a file in its place) loses nothing: the stream turns to the spool and
 * the archive is tried again with backoff (archive_spool.c). Such a stream may go on
 * in a new segment, the next sequence number, tagged streambroker.offset with where
 * it starts, as a reopened stream is: when it resumes after a restart, or when the
 * .log it was writing is gone or no longer at its length.
 *
 * The sidecar:
 *   {"name": "a/b", "type": "text" | "binary" | "datagram", "contentType": "...",
 *    "timestamp": the stream's own RFC 3339 time, or null when the client sent none,
 *    "tags": {"k": "v", ...}, "sequence": N,
 *    "opened": RFC 3339 (when the broker accepted the connection),
 *    "closed": RFC 3339 or null while open,
 *    "bytes": bytes read from the client for this segment (datagram framing included;
 *             0 until closed),
 *    "datagrams": count (datagram streams only; 0 until closed),
 *    "client": {"pid": .., "uid": .., "gid": ..} (each left out when unknown),
 *    "gap": {"from": E, "to": X, "unit": "bytes" | "datagrams"[, "nothing_before":
 *            true]} (only when the segment starts past what the archive holds),
 *    "complete": true once closed with every byte in the .log and fsynced,
 *    "spooled_bytes": N (bytes that waited in the spool while the archive could not
 *                     write; only when some did),
 *    "dropped_bytes": N (of them, bytes the spool lost before they were archived:
 *                     dropped at its cap by drop-oldest, or damaged; "complete" is
 *                     then false, and "lost_bytes" and the gap say what is missing),
 *    "resumed": true (a segment of a stream resumed from the spool at start),
 *    "continued": true (a segment left for a new one: its stream goes on there),
 *    "error": "what failed: the call, the file, the reason", "archived_bytes": N,
 *    "lost_bytes": N (only when the archive failed),
 *    "recovered": true, "mapped_path": "..." (only on a stream an earlier run left
 *    unclosed, finished at start)}
 *
 * I/O: one libuv file request in flight at a time (on the threadpool), so the steps
 * of a stream (claim the .log, write the sidecar, append data, fsync, close, rewrite
 * the sidecar) happen strictly in order, and the loop thread never blocks on a file
 * except for creating directories at stream start and retry (see
 * sb__archive_sink_create) and the scan at service start (sb__archive_open).
 * Retention deletes on the threadpool.
 *
 * The files, lowest first (none calls a file above it; archive_io.c and
 * archive_spool.c report up through the writer's callbacks, ar_writer_ops_t):
 *   archive_path.c      names to paths
 *   archive_index.c     what the archive knows: names' ends, closed segments, gaps
 *   archive_sidecar.c   the sidecar's text, reads and writes
 *   archive_retention.c deleting the oldest segments
 *   archive_spool.c     a stream's way through the spool while its files fail
 *   archive_drain.c     the spool read back into the .log
 *   archive_io.c        a sink's file requests
 *   archive_writer.c    a stream's queue, segments, failures and next request
 *   archive_sink.c      the sink contract, and what each finished request means
 *   archive_recovery.c  the scan at start
 *   archive.c           open, close, reload, status
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "archive_int.h"

/*
 * Runs before serving, on the loop thread: new streams must not claim a sequence
 * number or read a name's end while the scan is still learning them, and the scan
 * is metadata plus the sidecars (the .logs are read only to count the datagrams of
 * a datagram stream left open), so it is short next to a service's life.
 */
int sb__archive_open(sb__broker_t* b) {
  sb__archive_state_t* st = sb__archive_index_state(b);
  ar_scan_t sc;
  char* root;
  uint64_t t0 = uv_hrtime();
  memset(&sc, 0, sizeof(sc));
  sc.b = b;
  sc.st = st;
  /* The long form, for the deep paths the sinks may have made on Windows. */
  root = sb__path_long(b->cfg.archive_dir);
  while (strlen(root) > 1 &&
         (root[strlen(root) - 1] == '/' || root[strlen(root) - 1] == '\\'))
    root[strlen(root) - 1] = '\0';
  sc.root = root;
  sb__archive_recovery_scan(&sc, root, 0);
  free(root);
  SB_LOG_I("archive",
           "%s: %llu streams, %llu files, %llu bytes; %llu recovered, %llu empty .log "
           "removed, %llu stale .tmp removed (%llu ms)",
           b->cfg.archive_dir, (unsigned long long)sc.segments,
           (unsigned long long)st->files, (unsigned long long)st->bytes,
           (unsigned long long)b->counters.archive_recovered,
           (unsigned long long)b->counters.archive_empty_removed,
           (unsigned long long)b->counters.archive_tmp_removed,
           (unsigned long long)((uv_hrtime() - t0) / 1000000));
  if (st->nclosed > 1)
    qsort(st->closed, st->nclosed, sizeof(*st->closed), sb__archive_index_closed_cmp);
  st->broker = b;
  if (b->cfg.archive_max_age > 0)
    sb__archive_retention_start(b, st);
  sb__archive_retention_check(b);
  return 0;
}

static void on_timer_closed(uv_handle_t* h) {
  sb__archive_state_t* st = h->data;
  st->timer_started = 0;
  if (!st->busy)
    sb__archive_index_free(st);
}

/* The state goes once its timer is closed and no deletion is under way (both end on
 * the loop, which the caller runs after). */
void sb__archive_close(sb__broker_t* b) {
  sb__archive_state_t* st = b->archive;
  /* Streams that outlived the stop timeout still use it: the process is exiting, so
   * it stays. */
  if (st == NULL || b->streams != NULL)
    return;
  b->archive = NULL;
  st->closing = 1;
  if (st->timer_started)
    uv_close((uv_handle_t*)&st->timer, on_timer_closed);
  else if (!st->busy)
    sb__archive_index_free(st);
}

/* A reload may set archive_max_age where there was none: the timer starts then (it
 * stays once started; a check with no limit does nothing). */
void sb__archive_reconfigure(sb__broker_t* b) {
  sb__archive_state_t* st = b->archive;
  if (st == NULL || st->closing)
    return;
  if (b->cfg.archive_max_age > 0 && !st->timer_started)
    sb__archive_retention_start(b, st);
  sb__archive_retention_check(b);
}

void sb__archive_describe(sb__broker_t* b, void* obj) {
  sb__archive_state_t* st = b->archive;
  cJSON* a;
  if (st == NULL)
    return;
  a = cJSON_AddObjectToObject(obj, "archive");
  if (a == NULL)
    return;
  cJSON_AddStringToObject(a, "dir", b->cfg.archive_dir);
  cJSON_AddNumberToObject(a, "bytes", (double)st->bytes);
  cJSON_AddNumberToObject(a, "files", (double)st->files);
  cJSON_AddNumberToObject(a, "closed_streams", (double)(st->nclosed - st->head));
  cJSON_AddNumberToObject(a, "max_bytes", (double)b->cfg.archive_max_bytes);
  cJSON_AddNumberToObject(a, "max_age_s", (double)b->cfg.archive_max_age);
  cJSON_AddNumberToObject(a, "retention_deleted_streams", (double)st->removed_streams);
  cJSON_AddNumberToObject(a, "retention_deleted_files",
                          (double)b->counters.archive_retention_files);
  cJSON_AddNumberToObject(a, "retention_deleted_bytes",
                          (double)b->counters.archive_retention_bytes);
  sb__archive_spool_status(b, a);
}
