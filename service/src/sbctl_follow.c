/*
 * sbctl_follow.c - sbctl follow [NAME|PREFIX]: prints live streams' bytes as the
 * service reads them (the events are described in follow.c). Text comes out as lines,
 * each with its stream's name before it; a binary stream's reads as byte counts; a
 * datagram stream's datagrams one per line, control bytes as \xNN.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "admin.h"
#include "alloc.h"
#include "protocol.h"

/* A partial text line longer than this is printed without waiting for its end. */
#define FL_LINE_MAX (64u * 1024u)

typedef struct fl_stream_s {
  struct fl_stream_s* next;
  uint64_t id;
  char* name;
  sb__buf_t line;  /* text: the line so far */
  sb__dgram_t dg;  /* datagram: the framing */
  sb__buf_t dgram; /* datagram: the one so far */
  int dg_lost;     /* datagram: bytes were missed; wait for a boundary */
} fl_stream_t;

typedef struct {
  uv_pipe_t pipe;
  uv_connect_t connect;
  uv_write_t write;
  sb__buf_t request;
  sb__buf_t in; /* what arrived and is not handled yet */
  cJSON* head;  /* the header whose payload is awaited */
  size_t need;  /* its payload's length */
  fl_stream_t* streams;
  int err;
  int closed_by_service;
} fl_t;

static fl_stream_t* fl_stream(fl_t* f, uint64_t id, const char* name) {
  fl_stream_t* s;
  for (s = f->streams; s != NULL; s = s->next) {
    if (s->id == id)
      return s;
  }
  s = sb__xcalloc(1, sizeof(*s));
  s->id = id;
  s->name = sb__xstrdup(name);
  sb__dgram_init(&s->dg, 0);
  s->next = f->streams;
  f->streams = s;
  return s;
}

static void fl_print_line(const fl_stream_t* s, const char* text, size_t len) {
  if (len > 0 && text[len - 1] == '\r')
    len--;
  printf("%s: %.*s\n", s->name, (int)len, text);
}

static void fl_flush_line(fl_stream_t* s) {
  if (s->line.len > 0)
    fl_print_line(s, s->line.data, s->line.len);
  s->line.len = 0;
}

static void fl_text(fl_stream_t* s, const char* data, size_t len) {
  while (len > 0) {
    const char* nl = memchr(data, '\n', len);
    size_t take = nl != NULL ? (size_t)(nl - data) : len;
    sb__buf_append(&s->line, data, take);
    if (nl != NULL || s->line.len >= FL_LINE_MAX)
      fl_flush_line(s);
    if (nl != NULL)
      take++;
    data += take;
    len -= take;
  }
}

static void fl_print_dgram(const fl_stream_t* s) {
  size_t i;
  printf("%s: ", s->name);
  for (i = 0; i < s->dgram.len; i++) {
    unsigned char ch = (unsigned char)s->dgram.data[i];
    if (ch < 0x20 || ch == 0x7f || ch == '\\')
      printf("\\x%02x", ch);
    else
      putchar(ch);
  }
  putchar('\n');
}

static void fl_datagram(fl_stream_t* s, const char* data, size_t len, int boundary) {
  size_t off = 0;
  if (s->dg_lost) {
    if (!boundary)
      return; /* the framing is lost until a read starts at a datagram */
    s->dg_lost = 0;
    sb__dgram_init(&s->dg, 0);
    s->dgram.len = 0;
  }
  for (;;) {
    /* Called again at the end of the input too: a datagram's END comes then. */
    sb__dgram_event_t ev;
    int64_t r = sb__dgram_next(&s->dg, (const uint8_t*)data + off, len - off, &ev);
    if (r < 0) {
      printf("%s: (framing error: %s)\n", s->name, sb_strerror((int)r));
      s->dg_lost = 1;
      return;
    }
    off += (size_t)r;
    if (ev.kind == SB__DGRAM_START)
      s->dgram.len = 0;
    else if (ev.kind == SB__DGRAM_DATA)
      sb__buf_append(&s->dgram, ev.data, ev.len);
    else if (ev.kind == SB__DGRAM_END)
      fl_print_dgram(s);
    else
      break;
  }
}

static void fl_forget(fl_t* f, uint64_t id) {
  fl_stream_t **pp, *s;
  for (pp = &f->streams; (s = *pp) != NULL; pp = &s->next) {
    if (s->id == id) {
      *pp = s->next;
      fl_flush_line(s);
      sb__buf_free(&s->line);
      sb__buf_free(&s->dgram);
      free(s->name);
      free(s);
      return;
    }
  }
}

static void fl_event(fl_t* f, const cJSON* h, const char* payload, size_t len) {
  const cJSON* v;
  fl_stream_t* s;
  uint64_t id;
  const char* type;
  if ((v = cJSON_GetObjectItemCaseSensitive(h, "following")) != NULL) {
    if (cJSON_IsString(v) && v->valuestring[0] != '\0')
      fprintf(stderr, "sbctl: following streams named \"%s...\" (Ctrl+C stops)\n",
              v->valuestring);
    else
      fprintf(stderr, "sbctl: following every stream (Ctrl+C stops)\n");
    return;
  }
  if ((v = cJSON_GetObjectItemCaseSensitive(h, "missed")) != NULL) {
    printf("sbctl: missed %.0f bytes: this output fell behind (the streams were not "
           "slowed)\n",
           cJSON_IsNumber(v) ? v->valuedouble : 0.0);
    for (s = f->streams; s != NULL; s = s->next)
      s->dg_lost = 1;
    return;
  }
  v = cJSON_GetObjectItemCaseSensitive(h, "id");
  id = cJSON_IsNumber(v) ? (uint64_t)v->valuedouble : 0;
  v = cJSON_GetObjectItemCaseSensitive(h, "name");
  if (!cJSON_IsString(v))
    return;
  if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(h, "closed"))) {
    fl_forget(f, id);
    return;
  }
  s = fl_stream(f, id, v->valuestring);
  v = cJSON_GetObjectItemCaseSensitive(h, "type");
  type = cJSON_IsString(v) ? v->valuestring : "";
  if (strcmp(type, "binary") == 0) {
    v = cJSON_GetObjectItemCaseSensitive(h, "bytes");
    printf("%s: %.0f bytes (binary)\n", s->name,
           cJSON_IsNumber(v) ? v->valuedouble : 0.0);
  } else if (strcmp(type, "datagram") == 0) {
    fl_datagram(s, payload, len,
                cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(h, "boundary")));
  } else {
    fl_text(s, payload, len);
  }
}

/* Handles every whole event in f->in. */
static void fl_parse(fl_t* f) {
  size_t pos = 0;
  for (;;) {
    if (f->head == NULL) {
      const char* nl = memchr(f->in.data + pos, '\n', f->in.len - pos);
      const cJSON* len;
      if (nl == NULL)
        break;
      f->head =
          cJSON_ParseWithLength(f->in.data + pos, (size_t)(nl - f->in.data) - pos);
      pos = (size_t)(nl - f->in.data) + 1;
      if (f->head == NULL) {
        fprintf(stderr, "sbctl: the service sent something else than an event\n");
        f->err = UV_EPROTO;
        uv_close((uv_handle_t*)&f->pipe, NULL);
        return;
      }
      if (cJSON_GetObjectItemCaseSensitive(f->head, "error") != NULL) {
        fprintf(
            stderr, "sbctl: the service says: %s\n",
            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(f->head, "error")));
        f->err = UV_EPROTO;
      }
      len = cJSON_GetObjectItemCaseSensitive(f->head, "len");
      f->need = cJSON_IsNumber(len) ? (size_t)len->valuedouble : 0;
    }
    if (f->in.len - pos < f->need)
      break;
    fl_event(f, f->head, f->in.data + pos, f->need);
    pos += f->need;
    f->need = 0;
    cJSON_Delete(f->head);
    f->head = NULL;
  }
  memmove(f->in.data, f->in.data + pos, f->in.len - pos);
  f->in.len -= pos;
  fflush(stdout);
}

static void fl_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf) {
  static char slab[65536];
  (void)h;
  (void)suggested;
  buf->base = slab;
  buf->len = sizeof(slab);
}

static void fl_read(uv_stream_t* st, ssize_t n, const uv_buf_t* buf) {
  fl_t* f = st->data;
  if (n > 0) {
    sb__buf_append(&f->in, buf->base, (size_t)n);
    fl_parse(f);
  } else if (n < 0) {
    if (n != UV_EOF)
      f->err = (int)n;
    else
      f->closed_by_service = 1;
    if (!uv_is_closing((uv_handle_t*)st))
      uv_close((uv_handle_t*)st, NULL);
  }
}

static void fl_written(uv_write_t* w, int status) {
  fl_t* f = w->data;
  if (status < 0) {
    f->err = status;
    uv_close((uv_handle_t*)&f->pipe, NULL);
  }
}

static void fl_connected(uv_connect_t* req, int status) {
  fl_t* f = req->data;
  uv_buf_t buf = uv_buf_init(f->request.data, (unsigned)f->request.len);
  if (status < 0) {
    f->err = status;
    uv_close((uv_handle_t*)&f->pipe, NULL);
    return;
  }
  f->write.data = f;
  if ((f->err = uv_write(&f->write, (uv_stream_t*)&f->pipe, &buf, 1, fl_written)) !=
          0 ||
      (f->err = uv_read_start((uv_stream_t*)&f->pipe, fl_alloc, fl_read)) != 0)
    uv_close((uv_handle_t*)&f->pipe, NULL);
}

/* Follows until the service closes the connection (0) or it fails (1). */
int sbctl_follow(const char* path, const char* address, const char* prefix) {
  fl_t f;
  int status;
  memset(&f, 0, sizeof(f));
  sb__buf_append(&f.request, "{\"command\":\"follow\",\"name\":", 27);
  sb__json_write_string(&f.request, prefix, strlen(prefix));
  sb__buf_append(&f.request, "}\n", 2);
  uv_pipe_init(uv_default_loop(), &f.pipe, 0);
  f.pipe.data = &f;
  f.connect.data = &f;
  /* As sbctl's other commands: Windows checks the server is the service. */
  if ((status = sb__admin_connect(uv_default_loop(), &f.pipe, &f.connect, path,
                                  fl_connected)) != 0) {
    fprintf(stderr, "sbctl: cannot talk to streambrokerd at %s: %s\n", address,
            sb_strerror(status));
    uv_close((uv_handle_t*)&f.pipe, NULL);
    uv_run(uv_default_loop(), UV_RUN_DEFAULT);
    uv_loop_close(uv_default_loop());
    sb__buf_free(&f.request);
    return 1;
  }
  uv_run(uv_default_loop(), UV_RUN_DEFAULT);
  uv_loop_close(uv_default_loop());
  while (f.streams != NULL)
    fl_forget(&f, f.streams->id);
  fflush(stdout);
  status = 0;
  if (f.err != 0 && f.err != UV_EPROTO)
    fprintf(stderr, "sbctl: cannot talk to streambrokerd at %s: %s\n", address,
            uv_strerror(f.err));
  if (f.err != 0)
    status = 1;
  else if (f.closed_by_service)
    fprintf(stderr, "sbctl: the service closed the connection (it stopped)\n");
  cJSON_Delete(f.head);
  sb__buf_free(&f.in);
  sb__buf_free(&f.request);
  return status;
}
