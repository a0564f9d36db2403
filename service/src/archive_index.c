/*
 * archive_index.c - what the archive knows, kept on the loop: the archive's state (made
 * at first use), each name's end (bytes or datagrams over every segment archived, for
 * gaps), the closed segments oldest first with the archive's size (for retention), and
 * the gaps a stream's segment records.
 */
#include <stdlib.h>
#include <string.h>

#include "archive_int.h"
#include "tags.h"

sb__archive_state_t* sb__archive_index_state(sb__broker_t* b) {
  if (b->archive == NULL)
    b->archive = sb__xcalloc(1, sizeof(*b->archive));
  return b->archive;
}

/* The entry of a name, made (end 0) when create and absent. */
ar_known_t* sb__archive_index_known(sb__archive_state_t* st, const char* name,
                                    int create) {
  return create ? sb__strset_add(&st->known, name, NULL)
                : sb__strset_find(&st->known, name);
}

void sb__archive_index_end(ar_known_t* k, uint64_t end) {
  if (k != NULL && end > k->value)
    k->value = end;
}

void sb__archive_index_add_closed(sb__archive_state_t* st, const char* stem,
                                  uint64_t bytes, uint64_t files, int64_t time) {
  if (st->head > 0 && st->head * 2 >= st->nclosed) {
    /* The deleted front is reused. */
    memmove(st->closed, st->closed + st->head,
            (st->nclosed - st->head) * sizeof(*st->closed));
    st->nclosed -= st->head;
    st->head = 0;
  }
  if (st->nclosed == st->closed_cap) {
    st->closed_cap = st->closed_cap ? 2 * st->closed_cap : 64;
    st->closed = sb__xrealloc(st->closed, st->closed_cap * sizeof(*st->closed));
  }
  st->closed[st->nclosed].stem = sb__xstrdup(stem);
  st->closed[st->nclosed].bytes = bytes;
  st->closed[st->nclosed].files = files;
  st->closed[st->nclosed].time = time;
  st->nclosed++;
}

/* The streambroker.offset tag: 1 with *out set, 0 when absent, -1 when not a
 * decimal number (logged by the caller). */
int sb__archive_index_offset_tag(const char* v, uint64_t* out) {
  uint64_t x = 0;
  if (v == NULL)
    return 0;
  if (*v == '\0')
    return -1;
  for (; *v; v++) {
    if (*v < '0' || *v > '9' || x > (UINT64_MAX - 9) / 10)
      return -1;
    x = x * 10 + (uint64_t)(*v - '0');
  }
  *out = x;
  return 1;
}

int sb__archive_index_closed_cmp(const void* a, const void* b) {
  const ar_closed_t* x = a;
  const ar_closed_t* y = b;
  if (x->time != y->time)
    return x->time < y->time ? -1 : 1;
  return strcmp(x->stem, y->stem);
}

void sb__archive_index_free(sb__archive_state_t* st) {
  size_t i;
  sb__strset_clear(&st->known);
  for (i = st->head; i < st->nclosed; i++)
    free(st->closed[i].stem);
  free(st->closed);
  free(st->last_error);
  free(st);
}

/* The key of a stream's name in what the archive knows: a broker in front sends a
 * reopen, or a second stream of one name, as NAME:N with the original in
 * streambroker.name: the data is the original's. */
const char* sb__archive_index_key(const sb__stream_t* s) {
  const char* key = sb__props_get_tag(&s->props, SB__TAG_NAME);
  return key != NULL ? key : s->props.name;
}

void sb__archive_gap(sb__archive_t* ar, uint64_t from, uint64_t to) {
  sb__stream_t* s = ar->sink.stream;
  sb__broker_t* b = s->broker;
  int dgram = s->props.type == SB_DATAGRAM;
  if (to <= from)
    return;
  /* A gap that follows the one the segment records already (the spool dropped more
   * before the segment could begin) makes it longer. */
  if (ar->gap == 0 || from != ar->gap_to) {
    ar->gap_from = from;
    b->counters.archive_gaps++;
  }
  ar->gap = ar->gap == 2 && from == ar->gap_to ? 2 : 1;
  ar->gap_to = to;
  if (dgram)
    b->counters.archive_gap_datagrams += to - from;
  else
    b->counters.archive_gap_bytes += to - from;
}

/*
 * Gaps: a stream tagged streambroker.offset X starts at X of its name's data. When
 * the archive holds this name only up to E < X, E..X never arrived (the broker in
 * front lost it): the sidecar says so, a warning is logged and it is counted. The end
 * is over every segment of the name, kept as data is read.
 */
void sb__archive_check_gap(sb__archive_t* ar, uint64_t at) {
  sb__stream_t* s = ar->sink.stream;
  sb__archive_state_t* st = s->broker->archive;
  int dgram = s->props.type == SB_DATAGRAM;
  ar_known_t* k =
      ar->known ? ar->known : sb__archive_index_known(st, sb__archive_index_key(s), 0);
  if (at > 0 && (k == NULL || k->value < at)) {
    uint64_t from = k ? k->value : 0;
    sb__archive_gap(ar, from, at);
    ar->gap = k ? 1 : 2;
    SB_LOG_W("archive",
             "stream %llu \"%s\" starts at %s %llu, but the archive holds %s %llu: "
             "%llu %s never arrived",
             sb__archive_id(ar), s->props.name, dgram ? "datagram" : "byte",
             (unsigned long long)at, k ? "it only up to" : "nothing of it before",
             (unsigned long long)from, (unsigned long long)(at - from),
             dgram ? "datagrams" : "bytes");
  }
  if (k == NULL)
    k = sb__archive_index_known(st, sb__archive_index_key(s), 1);
  ar->known = k;
  sb__archive_index_end(k, at);
}
