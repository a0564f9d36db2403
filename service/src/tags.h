/*
 * tags.h - the stream tags the service sets and reads (LUCI stream properties' tags).
 *
 * Written on a stream the service forwards or archives, read back by the archive, its
 * recovery and `sbctl archive`. Plain strings, so sbctl includes it without the
 * service's headers.
 */
#ifndef SB_SERVICE_TAGS_H
#define SB_SERVICE_TAGS_H

/* Where a segment starts in its stream: a byte offset (text, binary) or a datagram
 * index, in decimal. Absent: 0. */
#define SB__TAG_OFFSET "streambroker.offset"
/* How much of the stream the service dropped before this segment (drop-oldest, a
 * damaged spool), in decimal. */
#define SB__TAG_DROPPED "streambroker.dropped"
/* The original name of a stream sent under another (name.N). */
#define SB__TAG_NAME "streambroker.name"
/* The stream's own id: 128 random bits in hex, set once when the service opens it. */
#define SB__TAG_STREAM "streambroker.stream"

#endif /* SB_SERVICE_TAGS_H */
