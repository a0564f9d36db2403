/*
 * follow.c - sbctl follow: live streams' bytes copied, as they are read, to admin
 * connections that asked for them.
 *
 * A follower is an admin connection that sent {"command":"follow","name":PREFIX}. It
 * gets one event per read of each stream whose name starts with PREFIX ("": every
 * stream): a JSON header line, then, for text and datagram streams, the header's "len"
 * bytes exactly as the client wrote them (datagram framing included):
 *
 *   {"following":"app/"}
 *   {"id":3,"name":"app/x","type":"text","len":12}\n<12 bytes>
 *   {"id":4,"name":"app/b","type":"binary","bytes":65536}
 *   {"id":5,"name":"app/d","type":"datagram","len":9,"boundary":true}\n<9 bytes>
 *   {"missed":1048576}
 *   {"id":3,"name":"app/x","closed":true}
 *
 * A stream nobody follows costs one pointer test per read. A follower never slows a
 * producer: what it has not read yet is bounded (SB__FOLLOW_MAX_QUEUED); an event that
 * would pass the bound is dropped and its bytes counted, and the follower is told
 * ("missed") once it has read half of what waited. "boundary" says a datagram
 * stream's bytes start at a datagram's start, where a reader that missed some can
 * pick the framing up again.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct sb__follow_s {
  struct sb__follow_s* next;
  sb__broker_t* b;
  uv_stream_t* conn; /* the admin connection; admin.c owns and closes it */
  uv_close_cb closed;
  char* prefix;
  size_t prefix_len;
  uint64_t queued; /* bytes handed to uv_write and not written yet */
  uint64_t missed; /* bytes dropped and not told yet */
} sb__follow_t;

/* One event on its way: the write request and the bytes it writes. */
typedef struct {
  uv_write_t req;
  sb__follow_t* f;
  size_t len;
  char data[];
} sb__follow_write_t;

static int follow_send(sb__follow_t* f, const sb__buf_t* head, const char* payload,
                       size_t len);

/* The bytes it missed, told as soon as half of what waited is read. */
static void follow_tell_missed(sb__follow_t* f) {
  sb__buf_t head = {0};
  char text[64];
  if (f->missed == 0 || f->queued > SB__FOLLOW_MAX_QUEUED / 2)
    return;
  snprintf(text, sizeof(text), "{\"missed\":%llu}\n", (unsigned long long)f->missed);
  sb__buf_append(&head, text, strlen(text));
  if (follow_send(f, &head, NULL, 0) == 0)
    f->missed = 0;
  sb__buf_free(&head);
}

/* A write's end (ECANCELED when the connection closed: the follower still exists,
 * since libuv runs a handle's pending write callbacks before its close callback). */
static void on_written(uv_write_t* req, int status) {
  sb__follow_write_t* w = SB_CONTAINER_OF(req, sb__follow_write_t, req);
  sb__follow_t* f = w->f;
  f->queued -= w->len;
  free(w);
  if (status == 0)
    follow_tell_missed(f);
}

/* Queues head and payload as one write, unless that passes the bound: -1 then. */
static int follow_send(sb__follow_t* f, const sb__buf_t* head, const char* payload,
                       size_t len) {
  size_t total = head->len + len;
  sb__follow_write_t* w;
  uv_buf_t buf;
  if (f->queued + total > SB__FOLLOW_MAX_QUEUED || uv_is_closing((uv_handle_t*)f->conn))
    return -1;
  w = sb__xmalloc(sizeof(*w) + total);
  memcpy(w->data, head->data, head->len);
  if (len > 0)
    memcpy(w->data + head->len, payload, len);
  w->f = f;
  w->len = total;
  buf = uv_buf_init(w->data, (unsigned)total);
  if (uv_write(&w->req, f->conn, &buf, 1, on_written) != 0) {
    free(w);
    return -1;
  }
  f->queued += total;
  return 0;
}

static int follow_matches(const sb__follow_t* f, const sb__stream_t* s) {
  return s->props.name != NULL && strncmp(s->props.name, f->prefix, f->prefix_len) == 0;
}

/* {"id":N,"name":"...", — the start of a stream's header. */
static void head_start(sb__buf_t* head, const sb__stream_t* s) {
  char text[64];
  snprintf(text, sizeof(text), "{\"id\":%llu,\"name\":", (unsigned long long)s->id);
  sb__buf_append(head, text, strlen(text));
  sb__json_write_string(head, s->props.name, strlen(s->props.name));
}

void sb__follow_data(sb__stream_t* s, const char* data, size_t len, int64_t mark) {
  sb__follow_t* f;
  for (f = s->broker->followers; f != NULL; f = f->next) {
    sb__buf_t head = {0};
    char text[96];
    const char* payload = data;
    size_t plen = len;
    if (!follow_matches(f, s))
      continue;
    head_start(&head, s);
    if (s->props.type == SB_BINARY) {
      snprintf(text, sizeof(text), ",\"type\":\"binary\",\"bytes\":%llu}\n",
               (unsigned long long)len);
      plen = 0;
    } else if (s->props.type == SB_DATAGRAM) {
      snprintf(text, sizeof(text),
               ",\"type\":\"datagram\",\"len\":%llu,\"boundary\":%s}\n",
               (unsigned long long)len, mark >= 0 ? "true" : "false");
    } else {
      snprintf(text, sizeof(text), ",\"type\":\"text\",\"len\":%llu}\n",
               (unsigned long long)len);
    }
    sb__buf_append(&head, text, strlen(text));
    if (follow_send(f, &head, payload, plen) != 0)
      f->missed += len;
    sb__buf_free(&head);
  }
}

void sb__follow_closed(sb__stream_t* s) {
  sb__follow_t* f;
  if (!s->handshaken || s->props.name == NULL)
    return;
  for (f = s->broker->followers; f != NULL; f = f->next) {
    sb__buf_t head = {0};
    if (!follow_matches(f, s))
      continue;
    head_start(&head, s);
    sb__buf_append(&head, ",\"closed\":true}\n", 16);
    follow_send(f, &head, NULL, 0); /* dropped with the data when it has no room */
    sb__buf_free(&head);
  }
}

sb__follow_t* sb__follow_add(sb__broker_t* b, uv_stream_t* conn, const char* prefix,
                             uv_close_cb closed) {
  sb__follow_t* f = sb__xcalloc(1, sizeof(*f));
  sb__buf_t head = {0};
  f->b = b;
  f->conn = conn;
  f->closed = closed;
  f->prefix = sb__xstrdup(prefix != NULL ? prefix : "");
  f->prefix_len = strlen(f->prefix);
  f->next = b->followers;
  b->followers = f;
  sb__buf_append(&head, "{\"following\":", 13);
  sb__json_write_string(&head, f->prefix, f->prefix_len);
  sb__buf_append(&head, "}\n", 2);
  follow_send(f, &head, NULL, 0);
  sb__buf_free(&head);
  SB_LOG_I("admin", "a follower attached: streams named \"%s*\"", f->prefix);
  return f;
}

void sb__follow_remove(sb__broker_t* b, sb__follow_t* f) {
  sb__follow_t** pp;
  for (pp = &b->followers; *pp != NULL; pp = &(*pp)->next) {
    if (*pp == f) {
      *pp = f->next;
      break;
    }
  }
  SB_LOG_I("admin", "a follower of \"%s*\" left", f->prefix);
  free(f->prefix);
  free(f);
}

void sb__follow_stop_all(sb__broker_t* b) {
  sb__follow_t* f;
  for (f = b->followers; f != NULL; f = f->next) {
    if (!uv_is_closing((uv_handle_t*)f->conn))
      uv_close((uv_handle_t*)f->conn, f->closed);
  }
}
