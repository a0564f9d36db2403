/*
 * admin.c - the administrators' pipe: one JSON request line in, one JSON reply line
 * out, then the connection closes.
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "internal.h"

#define SB__ADMIN_MAX_REQUEST 4096

/* Wall-clock time the admin pipe started, in seconds since the epoch: the process's
 * start as metrics know it (process_start_time_seconds), taken once per process. */
static double process_started_s;

typedef struct {
  uv_pipe_t pipe;
  uv_write_t write;
  sb__broker_t* broker;
  sb__buf_t request;
  char* reply;
  int answered;
  sb__follow_t* follow; /* sbctl follow: this connection gets the streams' bytes */
} sb__admin_conn_t;

static void on_conn_closed(uv_handle_t* h) {
  sb__admin_conn_t* c = h->data;
  if (c->follow != NULL)
    sb__follow_remove(c->broker, c->follow);
  sb__buf_free(&c->request);
  free(c->reply);
  free(c);
}

static void on_written(uv_write_t* w, int status) {
  sb__admin_conn_t* c = w->data;
  (void)status;
  uv_close((uv_handle_t*)&c->pipe, on_conn_closed);
}

static void add_u64(cJSON* o, const char* name, uint64_t v) {
  cJSON_AddNumberToObject(o, name, (double)v);
}

/* The object of counters by reason named family, made at its first reason. */
static cJSON* by_reason(cJSON* c, const char* family) {
  cJSON* o = cJSON_GetObjectItemCaseSensitive(c, family);
  return o != NULL ? o : cJSON_AddObjectToObject(c, family);
}

static cJSON* status_reply(sb__broker_t* b) {
  const sb__counters_t* k = &b->counters;
  cJSON* r = cJSON_CreateObject();
  cJSON* c = cJSON_CreateObject();
  cJSON* bad = cJSON_CreateObject();
  sb__stream_t* s;
  uint64_t live = 0;
  int e;
  cJSON_AddStringToObject(r, "version", SB_VERSION_STRING);
  add_u64(r, "uptime_s", (uv_now(b->loop) - b->started_ms) / 1000);
  cJSON_AddStringToObject(r, "control_pipe", b->cfg.control_pipe);
  if (b->cfg.upstream)
    cJSON_AddStringToObject(r, "upstream", b->cfg.upstream);
  else
    cJSON_AddNullToObject(r, "upstream");
  cJSON_AddStringToObject(r, "mode", b->cfg.upstream ? "forward" : "archive");
  for (s = b->streams; s; s = s->next)
    live += s->handshaken;
  add_u64(r, "streams_open", live);
  add_u64(r, "connections_open", b->nstreams);
  add_u64(r, "handshakes_open", b->nhandshakes);
  add_u64(r, "handshake_bytes", b->hs_bytes);
#define SB__COUNTER_JSON(field, name, ...) add_u64(c, name, k->field);
  SB__COUNTERS(SB__COUNTER_JSON)
#undef SB__COUNTER_JSON
  /* Bad handshakes by reason, under the error's name. */
  for (e = 1; e < (int)(sizeof(k->bad_handshakes) / sizeof(k->bad_handshakes[0]));
       e++) {
    /* The handshake errors are there from the start at 0, so a metric's series does
     * not appear out of nowhere at its first error. */
    if (k->bad_handshakes[e] > 0 || (-e <= SB_EMAGIC && -e >= SB_ETRUNCATED))
      add_u64(bad, sb_err_name(-e), k->bad_handshakes[e]);
  }
  cJSON_AddItemToObject(c, "bad_handshakes", bad);
  /* Refused and dropped bytes, by reason. */
#define SB__COUNTER_BY_REASON_JSON(field, family, reason)                              \
  add_u64(by_reason(c, family), reason, k->field);
  SB__COUNTERS_BY_REASON(SB__COUNTER_BY_REASON_JSON)
#undef SB__COUNTER_BY_REASON_JSON
  cJSON_AddItemToObject(r, "counters", c);
  if (b->cfg.upstream) {
    cJSON* m = cJSON_CreateObject();
    const sb__budget_t* bud = &b->budget;
    add_u64(m, "bytes", sb__budget_used(bud));
    add_u64(m, "windows_bytes", sb__budget_bytes(bud, SB__BUDGET_WINDOWS));
    add_u64(m, "being_spilled_bytes", sb__budget_bytes(bud, SB__BUDGET_SPILLS));
    add_u64(m, "being_spooled_bytes", sb__budget_bytes(bud, SB__BUDGET_APPENDS));
    add_u64(m, "read_back_bytes", sb__budget_bytes(bud, SB__BUDGET_DRAIN));
    cJSON_AddBoolToObject(m, "clients_held", sb__budget_holding(bud));
    add_u64(m, "max_bytes", b->cfg.replay_memory_max);
    add_u64(m, "peak_bytes", sb__budget_peak(bud));
    cJSON_AddItemToObject(r, "replay_memory", m);
  }
  sb__archive_describe(b, r);
  {
    cJSON* p = cJSON_AddObjectToObject(r, "process");
    size_t rss = 0;
    int64_t handles = sb__process_open_handles();
    cJSON_AddNumberToObject(p, "start_time_s", process_started_s);
    if (uv_resident_set_memory(&rss) == 0)
      add_u64(p, "resident_memory_bytes", rss);
    if (handles >= 0)
      add_u64(p, "open_handles", (uint64_t)handles);
  }
  if (b->spool) {
    sb__spool_stats_t st;
    cJSON* sp = cJSON_CreateObject();
    sb__time_t now = sb__time_now();
    int64_t now_ms = now.sec * 1000 + now.nsec / 1000000;
    sb__spool_stats(b->spool, &st);
    add_u64(sp, "bytes", st.bytes);
    add_u64(sp, "chunks", st.chunks);
    add_u64(sp, "max_bytes", b->cfg.spool_max_bytes);
    cJSON_AddNumberToObject(sp, "oldest_unsent_age_s",
                            st.oldest_unsent_ms > 0 && now_ms > st.oldest_unsent_ms
                                ? (double)(now_ms - st.oldest_unsent_ms) / 1000.0
                                : 0.0);
    add_u64(sp, "commits", st.commits);
    add_u64(sp, "transaction_errors", st.full_errors);
    add_u64(sp, "moved_aside", st.moved_aside);
    add_u64(sp, "dropped_bytes", st.dropped_bytes);
    add_u64(sp, "refused_bytes", st.refused_bytes);
    add_u64(sp, "corrupt_chunks", st.corrupt_chunks);
    add_u64(sp, "corrupt_bytes", st.corrupt_bytes);
    add_u64(sp, "pending_deletes", st.pending_deletes);
    cJSON_AddItemToObject(r, "spool", sp);
  }
  return r;
}

static cJSON* streams_reply(sb__broker_t* b) {
  cJSON* r = cJSON_CreateObject();
  cJSON* list = cJSON_CreateArray();
  static const char* const types[] = {"text", "binary", "datagram"};
  sb__stream_t* s;
  char opened[SB__TIME_BUF];
  for (s = b->streams; s; s = s->next) {
    cJSON* o;
    if (!s->handshaken)
      continue;
    o = cJSON_CreateObject();
    add_u64(o, "id", s->id);
    cJSON_AddStringToObject(o, "name", s->props.name);
    cJSON_AddStringToObject(o, "type", types[s->props.type]);
    cJSON_AddNumberToObject(o, "pid", (double)s->peer_pid);
    if (s->peer_uid >= 0)
      cJSON_AddNumberToObject(o, "uid", (double)s->peer_uid);
    add_u64(o, "bytes", s->bytes);
    add_u64(o, "bytes_refused_spool_full", s->bytes_refused);
    add_u64(o, "bytes_dropped_spool_full", s->bytes_dropped);
    if (s->props.type == SB_DATAGRAM)
      add_u64(o, "datagrams", s->datagrams);
    if (sb__time_format(s->opened, opened) > 0)
      cJSON_AddStringToObject(o, "opened", opened);
    cJSON_AddBoolToObject(o, "client_open", !s->client_eof);
    if (s->sink != NULL && s->sink->describe != NULL)
      s->sink->describe(s->sink, o);
    cJSON_AddItemToArray(list, o);
  }
  cJSON_AddItemToObject(r, "streams", list);
  return r;
}

/* sbctl retry [NAME]: the given-up streams (of that name, if given) are tried again
 * now. The reply says how many. */
static cJSON* retry_reply(sb__broker_t* b, const cJSON* req) {
  const cJSON* name = cJSON_GetObjectItemCaseSensitive(req, "name");
  cJSON* r = cJSON_CreateObject();
  sb__stream_t* s;
  unsigned n = 0;
  if (name != NULL && !cJSON_IsString(name)) {
    cJSON_AddStringToObject(r, "error", "retry: \"name\" must be a string");
    return r;
  }
  if (b->cfg.upstream == NULL) {
    cJSON_AddStringToObject(r, "error", "retry: no upstream (archive mode)");
    return r;
  }
  for (s = b->streams; s; s = s->next)
    if (s->handshaken && s->sink != NULL &&
        (name == NULL || strcmp(s->props.name, name->valuestring) == 0))
      n += (unsigned)sb__upstream_retry(s->sink);
  SB_LOG_I("admin", "retry%s%s: %u given-up streams tried again", name ? " " : "",
           name ? name->valuestring : "", n);
  cJSON_AddNumberToObject(r, "retried", n);
  return r;
}

/* sbctl reload: what changed, or why nothing did. */
static cJSON* reload_reply(sb__broker_t* b) {
  cJSON* r = cJSON_CreateObject();
  char err[512];
  if (sb__broker_reload(b, r, err, sizeof(err)) != 0) {
    cJSON_Delete(r);
    r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "error", err);
  } else {
    cJSON_AddStringToObject(r, "config",
                            b->config_path ? b->config_path : "built-in defaults");
  }
  return r;
}

/* Answers the request in c->request (one line, or all of it at EOF). */
static void answer(sb__admin_conn_t* c) {
  cJSON* req =
      cJSON_ParseWithLength(c->request.data ? c->request.data : "", c->request.len);
  const cJSON* cmd = cJSON_GetObjectItemCaseSensitive(req, "command");
  cJSON* reply;
  char* text;
  uv_buf_t buf;
  c->answered = 1;
  if (cJSON_IsString(cmd) && strcmp(cmd->valuestring, "follow") == 0 &&
      !c->broker->stopping) {
    /* The connection stays: follow.c writes to it, and its end (sbctl gone) closes
     * it here. */
    const cJSON* name = cJSON_GetObjectItemCaseSensitive(req, "name");
    c->follow =
        sb__follow_add(c->broker, (uv_stream_t*)&c->pipe,
                       cJSON_IsString(name) ? name->valuestring : "", on_conn_closed);
    cJSON_Delete(req);
    return;
  }
  if (cJSON_IsString(cmd) && strcmp(cmd->valuestring, "status") == 0) {
    reply = status_reply(c->broker);
  } else if (cJSON_IsString(cmd) && strcmp(cmd->valuestring, "streams") == 0) {
    reply = streams_reply(c->broker);
  } else if (cJSON_IsString(cmd) && strcmp(cmd->valuestring, "retry") == 0) {
    reply = retry_reply(c->broker, req);
  } else if (cJSON_IsString(cmd) && strcmp(cmd->valuestring, "reload") == 0) {
    reply = reload_reply(c->broker);
  } else {
    reply = cJSON_CreateObject();
    cJSON_AddStringToObject(reply, "error",
                            "unknown request: send {\"command\": \"status\"}, "
                            "{\"command\": \"streams\"}, "
                            "{\"command\": \"reload\"} or "
                            "{\"command\": \"follow\", \"name\": PREFIX}");
  }
  cJSON_Delete(req);
  text = cJSON_PrintUnformatted(reply);
  cJSON_Delete(reply);
  if (text == NULL)
    abort();
  c->reply = sb__xmalloc(strlen(text) + 2);
  strcpy(c->reply, text);
  strcat(c->reply, "\n");
  cJSON_free(text);
  uv_read_stop((uv_stream_t*)&c->pipe);
  buf = uv_buf_init(c->reply, (unsigned)strlen(c->reply));
  c->write.data = c;
  if (uv_write(&c->write, (uv_stream_t*)&c->pipe, &buf, 1, on_written) != 0)
    uv_close((uv_handle_t*)&c->pipe, on_conn_closed);
}

static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf) {
  static char slab[SB__ADMIN_MAX_REQUEST];
  (void)h;
  (void)suggested;
  buf->base = slab;
  buf->len = sizeof(slab);
}

static void on_read(uv_stream_t* h, ssize_t n, const uv_buf_t* buf) {
  sb__admin_conn_t* c = h->data;
  if (c->follow != NULL) {
    /* A follower says nothing more; its end is sbctl leaving. */
    if (n < 0 && !uv_is_closing((uv_handle_t*)&c->pipe))
      uv_close((uv_handle_t*)&c->pipe, on_conn_closed);
    return;
  }
  if (n > 0) {
    const char* nl = memchr(buf->base, '\n', (size_t)n);
    sb__buf_append(&c->request, buf->base, nl ? (size_t)(nl - buf->base) : (size_t)n);
    if (c->request.len > SB__ADMIN_MAX_REQUEST) {
      SB_LOG_W("admin", "request over %d bytes; connection closed",
               SB__ADMIN_MAX_REQUEST);
      uv_close((uv_handle_t*)&c->pipe, on_conn_closed);
    } else if (nl != NULL) {
      answer(c);
    }
    return;
  }
  if (n < 0) {
    if (n == UV_EOF && c->request.len > 0)
      answer(c);
    else
      uv_close((uv_handle_t*)&c->pipe, on_conn_closed);
  }
}

static void on_connection(sb__listener_t* l, void* arg) {
  sb__broker_t* b = arg;
  sb__admin_conn_t* c;
  c = sb__xcalloc(1, sizeof(*c));
  c->broker = b;
  uv_pipe_init(b->loop, &c->pipe, 0);
  c->pipe.data = c;
  if (sb__listener_accept(l, &c->pipe) != 0 ||
      uv_read_start((uv_stream_t*)&c->pipe, on_alloc, on_read) != 0)
    uv_close((uv_handle_t*)&c->pipe, on_conn_closed);
}

int sb__admin_start(sb__broker_t* b) {
  char path[1024];
  int r;
  if (process_started_s == 0) {
    sb__time_t now = sb__time_now();
    process_started_s = (double)now.sec + (double)(now.nsec / 1000000) / 1000.0;
  }
  if ((r = sb__address_bind_path(b->cfg.admin_pipe, path, sizeof(path))) != 0) {
    SB_LOG_E("admin", "admin_pipe \"%s\": %s", b->cfg.admin_pipe, sb_strerror(r));
    return r;
  }
  /* Its connections are requests, not streams: a lost one is logged (sbctl sees no
   * reply), not counted with the control pipe's. */
  if ((r = sb__listener_start(&b->admin, b->loop, path, "admin pipe", 1, NULL,
                              SB__ADMIN_INSTANCES, on_connection, b, NULL)) != 0)
    return r;
  SB_LOG_I("admin", "status on %s", b->cfg.admin_pipe);
  return 0;
}
