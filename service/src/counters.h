/*
 * counters.h - the service's counters, as one table: each counter's field in
 * sb__counters_t, its name in the status reply's "counters" object, its Prometheus
 * family and help text. internal.h makes sb__counters_t from it, admin.c the status
 * reply's counters, sbctl.c the metrics and the names its text prints. Plain C: it
 * includes nothing, so sbctl (which is not built from the service) includes it too.
 */
#ifndef SB_SERVICE_COUNTERS_H
#define SB_SERVICE_COUNTERS_H

/*
 * The counters, in the order the status reply lists them:
 *   X(FIELD, NAME, METRIC, PER_UPSTREAM, HELP)
 * FIELD: sb__counters_t's uint64_t; NAME: the key under "counters"; METRIC: the
 * Prometheus family, or NULL for streambroker_NAME_total; PER_UPSTREAM: 1 when the
 * metric is labelled upstream="ADDR" (forward mode); HELP: the metric's help text.
 * A counter added here appears everywhere; README's counter list is written by hand.
 */
#define SB__COUNTERS(X)                                                                \
  X(streams_opened, "streams_opened", NULL, 0, "Streams opened by clients.")           \
  X(streams_closed, "streams_closed", NULL, 0, "Streams closed.")                      \
  X(bytes_in, "bytes_in", "streambroker_received_bytes_total", 0,                      \
    "Payload bytes read from clients.")                                                \
  X(bytes_out, "bytes_out", "streambroker_written_bytes_total", 0,                     \
    "Bytes written to the upstream or to archive files.")                              \
  X(handshake_timeouts, "handshake_timeouts", NULL, 0,                                 \
    "Connections closed because the handshake did not arrive in "                      \
    "time.")                                                                           \
  X(connections_empty, "connections_empty", NULL, 0,                                   \
    "Connections that closed before sending a byte (probes; not bad "                  \
    "handshakes).")                                                                    \
  X(refused_limit, "refused_limit", NULL, 0,                                           \
    "Connections refused by max_streams or max_streams_per_client, "                   \
    "or while stopping.")                                                              \
  X(refused_group, "refused_group", NULL, 0, "Connections refused by allowed_groups.") \
  X(refused_user, "refused_user", NULL, 0,                                             \
    "Connections refused by max_streams_per_user.")                                    \
  X(refused_handshakes, "refused_handshakes", NULL, 0,                                 \
    "Connections refused by max_handshakes (in total, or a user's "                    \
    "quarter).")                                                                       \
  X(handshake_memory_waits, "handshake_memory_waits", NULL, 0,                         \
    "Handshakes paused because handshake_memory_max was reached.")                     \
  X(log_suppressed, "log_suppressed", NULL, 0,                                         \
    "Client-caused warnings held back by the per-user log rate "                       \
    "limit.")                                                                          \
  X(accept_lost, "accept_lost", NULL, 0,                                               \
    "Connections the control pipe's listener dropped unread: an "                      \
    "accept or a hand-over that failed, or a connection waiting at "                   \
    "a stop.")                                                                         \
  X(client_errors, "client_errors", NULL, 0,                                           \
    "Client connections that ended with an error.")                                    \
  X(upstream_dials, "upstream_dials", NULL, 1, "Connections dialed to the upstream.")  \
  X(upstream_dial_failures, "upstream_dial_failures", NULL, 1,                         \
    "Upstream dials that failed (busy or absent; retried with "                        \
    "backoff).")                                                                       \
  X(upstream_errors, "upstream_errors", NULL, 1, "Upstream connections that broke.")   \
  X(archive_errors, "archive_errors", NULL, 0,                                         \
    "Archive file errors (archive mode): each outage of a stream's "                   \
    "files counts once.")                                                              \
  X(archive_streams_failed, "archive_streams_failed", NULL, 0,                         \
    "Streams whose archive failed for good.")                                          \
  X(archive_bytes_lost, "archive_bytes_lost", "streambroker_archive_lost_bytes_total", \
    0, "Bytes read from clients and not archived.")                                    \
  X(archive_recovered, "archive_recovered",                                            \
    "streambroker_archive_recovered_streams_total", 0,                                 \
    "Streams an earlier run left unclosed, finished at start.")                        \
  X(archive_tmp_removed, "archive_tmp_removed",                                        \
    "streambroker_archive_tmp_removed_files_total", 0,                                 \
    "Stale .json.tmp sidecar files removed at start.")                                 \
  X(archive_gaps, "archive_gaps", NULL, 0,                                             \
    "Archive segments that start past what the archive holds (data "                   \
    "missing before them).")                                                           \
  X(archive_gap_bytes, "archive_gap_bytes", NULL, 0,                                   \
    "Bytes missing before archive gaps (text and binary streams).")                    \
  X(archive_gap_datagrams, "archive_gap_datagrams", NULL, 0,                           \
    "Datagrams missing before archive gaps.")                                          \
  X(archive_retention_files, "archive_retention_files",                                \
    "streambroker_archive_retention_deleted_files_total", 0,                           \
    "Archive files (.log and .json) deleted by retention.")                            \
  X(archive_retention_bytes, "archive_retention_bytes",                                \
    "streambroker_archive_retention_deleted_bytes_total", 0,                           \
    "Archive bytes deleted by retention.")                                             \
  X(archive_empty_removed, "archive_empty_removed",                                    \
    "streambroker_archive_empty_removed_files_total", 0,                               \
    "Empty .log files without a sidecar removed at start.")                            \
  X(archive_streams_spooled, "archive_streams_spooled", NULL, 0,                       \
    "Times a stream turned to the spool because its archive files "                    \
    "could not be written (once per outage per stream).")                              \
  X(archive_bytes_spooled, "archive_bytes_spooled",                                    \
    "streambroker_archive_spooled_bytes_total", 0,                                     \
    "Bytes archive streams put in the spool while their files could "                  \
    "not be written.")                                                                 \
  X(archive_retries, "archive_retries", NULL, 0,                                       \
    "Retries that found a stream's archive files still not "                           \
    "writable.")                                                                       \
  X(upstream_reopens, "upstream_reopens", NULL, 1,                                     \
    "Upstream connections reopened from the replay window.")                           \
  X(bytes_spooled, "bytes_spooled", "streambroker_spooled_bytes_total", 0,             \
    "Bytes that went upstream (archive mode: to the archive) from "                    \
    "the spool rather than live.")                                                     \
  X(bytes_resent, "bytes_resent", "streambroker_resent_bytes_total", 1,                \
    "Bytes sent again, from memory or the spool, below the furthest "                  \
    "offset a connection of their stream was handed (the overlap "                     \
    "the upstream sees twice).")                                                       \
  X(upstream_end_resends, "upstream_end_resends", NULL, 1,                             \
    "Stream ends the upstream did not confirm stored: its process "                    \
    "exited first, and the replay window was resent.")                                 \
  X(streams_resumed, "streams_resumed", NULL, 0,                                       \
    "Streams resumed from the spool at start.")                                        \
  X(upstream_refusals, "upstream_refusals", NULL, 1,                                   \
    "Upstream connections the upstream closed right after their "                      \
    "handshake (a name it refused).")                                                  \
  X(streams_given_up, "streams_given_up", NULL, 1,                                     \
    "Streams given up after the upstream refused them "                                \
    "upstream_max_refusals times in a row (their data stays in the "                   \
    "spool).")                                                                         \
  X(streams_refused_full, "streams_refused_spool_full", NULL, 0,                       \
    "Streams closed because the spool refused their data (cap or "                     \
    "full disk).")                                                                     \
  X(bytes_live, "bytes_live", "streambroker_live_bytes_total", 1,                      \
    "Bytes sent upstream without going through the spool "                             \
    "(durability backlog).")                                                           \
  X(windows_spilled, "windows_spilled", "streambroker_replay_windows_spilled_total",   \
    0,                                                                                 \
    "Replay windows written to the spool to stay within "                              \
    "replay_memory_max.")                                                              \
  X(window_bytes_spilled, "window_bytes_spilled",                                      \
    "streambroker_replay_window_spilled_bytes_total", 0,                               \
    "Bytes of replay windows written to the spool "                                    \
    "(replay_memory_max).")                                                            \
  X(window_holds, "window_holds", "streambroker_replay_window_holds_total", 0,         \
    "Times live streams' clients were held because replay memory "                     \
    "was used up.")                                                                    \
  X(window_bytes_unstored, "window_bytes_unstored",                                    \
    "streambroker_replay_window_unstored_bytes_total", 0,                              \
    "Replay window bytes a spill could not store (full disk).")

/*
 * Counters by reason: each is one member (REASON) of an object (FAMILY) under
 * "counters", which is one Prometheus counter with a reason label.
 *   X(FIELD, FAMILY, REASON)
 * Those objects come after the plain counters, after "bad_handshakes" (by error name,
 * from sb__counters_t's bad_handshakes array), in this order.
 */
#define SB__COUNTERS_BY_REASON(X)                                                      \
  X(bytes_refused_full, "bytes_refused", "spool_full")                                 \
  X(bytes_dropped_full, "bytes_dropped", "spool_full")                                 \
  X(bytes_dropped_corrupt, "bytes_dropped", "corrupt")

/* The objects of counters by reason: X(FAMILY, METRIC, HELP), as above. */
#define SB__COUNTER_FAMILIES(X)                                                        \
  X("bad_handshakes", NULL, "Connections closed for a bad handshake, by error.")       \
  X("bytes_refused", "streambroker_refused_bytes_total",                               \
    "Bytes refused and never delivered, by reason.")                                   \
  X("bytes_dropped", "streambroker_dropped_bytes_total",                               \
    "Bytes dropped before reaching the upstream or the archive, by "                   \
    "reason.")

#endif /* SB_SERVICE_COUNTERS_H */
