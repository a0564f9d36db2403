/*
 * bench_broker.c - throughput, memory and disk writes of client -> streambrokerd ->
 * upstream, beside client -> upstream directly and client -> a minimal relay ->
 * upstream, in one run.
 *
 * The upstream is a discard server in this process (a libuv loop on its own thread
 * that reads and counts), so the figures are the broker's cost and not a disk's. The
 * minimal relay (another loop thread here) only copies bytes, with 128 KiB reads as the
 * broker's, and stops reading a client while 1 MiB is queued to the upstream (the
 * broker's default watermark): it is what any forwarding costs, so broker/relay is the
 * broker's own overhead. The broker runs once per workload and durability ("backlog",
 * "spool", "always"), so its peak resident memory (Linux: VmHWM) and disk writes
 * (write_bytes of /proc/PID/io) are those of the workload alone.
 *
 * Workloads: one big binary stream; small lines from several clients; many streams at
 * once; a stall (the upstream stops reading for a while: the producers' rate during
 * it, the spool's peak and the time to drain); and starvation (one stream drains a
 * backlog while another writes live: the live stream's rate beside its rate alone).
 * Targets are printed beside the figures, never asserted: timings are not tests.
 *
 *   bench_broker [--gib N] [--lines N] [--clients N] [--streams N] [--stall-ms N]
 *                [--backlog-mb N] [--json]
 *
 * --json prints the figures as one JSON object on stdout (the table goes to stderr).
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "task.h"

#define MB 1e6
#define MIB 1048576.0

/* ---- the discard upstream ---- */

typedef struct discard_conn_s discard_conn_t;

typedef struct {
  uv_loop_t loop;
  uv_pipe_t server;
  uv_async_t stop;
  uv_async_t ctl; /* applies want_stall */
  uv_thread_t thread;
  char address[256], bind_path[256];
  uv_mutex_t lock; /* guards the fields up to the loop thread's own */
  uv_cond_t cond;
  uint64_t bytes; /* stream bytes, handshakes excluded */
  uint64_t conns_done;
  /* A connection whose first read holds tag[i] (a stream name in its handshake)
   * counts its bytes in tag_bytes[i] too, so one stream's rate can be followed. */
  char tag[2][64];
  uint64_t tag_bytes[2];
  int want_stall;   /* 0: read; 1: the connections open now stop; 2: new ones too */
  uint64_t applied; /* want_stall changes the loop has applied */
  /* The loop thread's own. */
  int stall;
  discard_conn_t* conns;
} discard_t;

struct discard_conn_s {
  uv_pipe_t pipe;
  discard_t* d;
  discard_conn_t *prev, *next;
  int tag;       /* -1: not known yet (no byte read), 0: none, i + 1: tag[i] */
  uint64_t skip; /* handshake bytes still to come, not counted */
  int reading;
};

static char discard_slab[1 << 17];

static void d_alloc(uv_handle_t* h, size_t s, uv_buf_t* buf) {
  (void)h;
  (void)s;
  buf->base = discard_slab;
  buf->len = sizeof(discard_slab);
}

static void d_closed(uv_handle_t* h) {
  discard_conn_t* c = (discard_conn_t*)h;
  if (c->prev)
    c->prev->next = c->next;
  else
    c->d->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  free(c);
}

/* The length of the handshake a connection starts with (magic, varint, JSON), from
 * its first read, so that only stream bytes are counted; 0 if it shows none. */
static uint64_t handshake_len(const unsigned char* p, size_t n) {
  uint64_t v = 0;
  size_t i;
  if (n < 7 || memcmp(p, "BTLR1\x1e", 6) != 0)
    return 0;
  for (i = 6; i < n && i < 16; i++) {
    v |= (uint64_t)(p[i] & 0x7f) << (7 * (i - 6));
    if ((p[i] & 0x80) == 0)
      return i + 1 + v;
  }
  return 0;
}

static void d_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  discard_conn_t* c = (discard_conn_t*)s;
  discard_t* d = c->d;
  uint64_t data;
  int i;
  if (n > 0) {
    uv_mutex_lock(&d->lock);
    if (c->tag < 0) {
      c->tag = 0;
      for (i = 0; i < 2; i++)
        if (d->tag[i][0] && sb_it_contains(buf->base, (size_t)n, d->tag[i]))
          c->tag = i + 1;
      c->skip = handshake_len((const unsigned char*)buf->base, (size_t)n);
    }
    data = (uint64_t)n;
    if (c->skip > 0) {
      uint64_t hs = c->skip < data ? c->skip : data;
      c->skip -= hs;
      data -= hs;
    }
    d->bytes += data;
    if (c->tag > 0)
      d->tag_bytes[c->tag - 1] += data;
    uv_mutex_unlock(&d->lock);
  } else if (n < 0) {
    uv_mutex_lock(&d->lock);
    d->conns_done++;
    uv_cond_broadcast(&d->cond);
    uv_mutex_unlock(&d->lock);
    uv_close((uv_handle_t*)s, d_closed);
  }
}

static void d_conn(uv_stream_t* server, int status) {
  discard_t* d = server->data;
  discard_conn_t* c = calloc(1, sizeof(*c));
  ASSERT_OK(status);
  ASSERT_NOT_NULL(c);
  c->d = d;
  c->tag = -1;
  uv_pipe_init(&d->loop, &c->pipe, 0);
  ASSERT_OK(uv_accept(server, (uv_stream_t*)&c->pipe));
  c->next = d->conns;
  if (d->conns)
    d->conns->prev = c;
  d->conns = c;
  if (d->stall < 2) {
    ASSERT_OK(uv_read_start((uv_stream_t*)&c->pipe, d_alloc, d_read));
    c->reading = 1;
  }
}

/* A stalled upstream stops reading (its socket buffers fill, the sender's writes
 * wait), as a busy or hung stream server does; it resumes where it stopped. */
static void d_ctl(uv_async_t* a) {
  discard_t* d = a->data;
  discard_conn_t* c;
  int want;
  uv_mutex_lock(&d->lock);
  want = d->want_stall;
  uv_mutex_unlock(&d->lock);
  for (c = d->conns; c; c = c->next) {
    if (uv_is_closing((uv_handle_t*)&c->pipe))
      continue;
    if (want && c->reading && (want == 2 || d->stall == 0)) {
      uv_read_stop((uv_stream_t*)&c->pipe);
      c->reading = 0;
    } else if (!want && !c->reading) {
      ASSERT_OK(uv_read_start((uv_stream_t*)&c->pipe, d_alloc, d_read));
      c->reading = 1;
    }
  }
  d->stall = want;
  uv_mutex_lock(&d->lock);
  d->applied++;
  uv_cond_broadcast(&d->cond);
  uv_mutex_unlock(&d->lock);
}

static void d_walk_close(uv_handle_t* h, void* arg) {
  discard_t* d = arg;
  if (!uv_is_closing(h))
    uv_close(h, h->type == UV_NAMED_PIPE && h != (uv_handle_t*)&d->server ? d_closed
                                                                          : NULL);
}

static void d_stop(uv_async_t* a) {
  discard_t* d = a->data;
  uv_walk(&d->loop, d_walk_close, d);
}

static void d_thread(void* arg) {
  discard_t* d = arg;
  uv_run(&d->loop, UV_RUN_DEFAULT);
}

static void discard_start(discard_t* d) {
  memset(d, 0, sizeof(*d));
  ASSERT_OK(uv_loop_init(&d->loop));
  ASSERT_OK(uv_mutex_init(&d->lock));
  ASSERT_OK(uv_cond_init(&d->cond));
  sb_it_address("discard", d->address, d->bind_path, sizeof(d->address));
  uv_pipe_init(&d->loop, &d->server, 0);
  d->server.data = d;
  ASSERT_OK(uv_pipe_bind(&d->server, d->bind_path));
  ASSERT_OK(uv_listen((uv_stream_t*)&d->server, 1024, d_conn));
  ASSERT_OK(uv_async_init(&d->loop, &d->stop, d_stop));
  d->stop.data = d;
  ASSERT_OK(uv_async_init(&d->loop, &d->ctl, d_ctl));
  d->ctl.data = d;
  ASSERT_OK(uv_thread_create(&d->thread, d_thread, d));
}

static void discard_stop(discard_t* d) {
  ASSERT_OK(uv_async_send(&d->stop));
  ASSERT_OK(uv_thread_join(&d->thread));
  uv_loop_close(&d->loop);
}

/* Stalls (1: the connections open now; 2: new ones too) or resumes (0) the upstream,
 * and returns once its loop has done so. */
static void discard_stall(discard_t* d, int want) {
  uint64_t before;
  uv_mutex_lock(&d->lock);
  d->want_stall = want;
  before = d->applied;
  uv_mutex_unlock(&d->lock);
  ASSERT_OK(uv_async_send(&d->ctl));
  uv_mutex_lock(&d->lock);
  while (d->applied == before)
    uv_cond_wait(&d->cond, &d->lock);
  uv_mutex_unlock(&d->lock);
}

/* Starts counting the bytes of connections whose handshake names tag (slot i). */
static void discard_tag(discard_t* d, int i, const char* tag) {
  uv_mutex_lock(&d->lock);
  snprintf(d->tag[i], sizeof(d->tag[i]), "%s", tag);
  d->tag_bytes[i] = 0;
  uv_mutex_unlock(&d->lock);
}

static uint64_t discard_tag_bytes(discard_t* d, int i) {
  uint64_t b;
  uv_mutex_lock(&d->lock);
  b = d->tag_bytes[i];
  uv_mutex_unlock(&d->lock);
  return b;
}

/* How long the upstream may see nothing new before a wait gives up, in seconds. */
#define STUCK_S 90

/*
 * Waits until conns connections have ended in all and bytes have arrived (those of
 * tag slot tag, or all when tag is -1); returns the bytes received. Fails, saying
 * what is missing, when nothing new arrives for STUCK_S seconds: bytes the broker
 * lost would hang here.
 */
static uint64_t discard_wait(discard_t* d, uint64_t conns, int tag, uint64_t bytes) {
  uint64_t b, last_b = 0, last_conns = 0, since = uv_hrtime();
  uv_mutex_lock(&d->lock);
  for (;;) {
    b = tag < 0 ? d->bytes : d->tag_bytes[tag];
    if (d->conns_done >= conns && b >= bytes)
      break;
    if (b != last_b || d->conns_done != last_conns) {
      last_b = b;
      last_conns = d->conns_done;
      since = uv_hrtime();
    } else if (uv_hrtime() - since > STUCK_S * (uint64_t)1e9) {
      sb_test_fail(__FILE__, __LINE__,
                   "the upstream got nothing for %d s: %llu of %llu connections ended, "
                   "%llu of %llu bytes",
                   STUCK_S, (unsigned long long)d->conns_done,
                   (unsigned long long)conns, (unsigned long long)b,
                   (unsigned long long)bytes);
    }
    /* Bytes are not signalled (one broadcast per read would cost the loop). */
    (void)uv_cond_timedwait(&d->cond, &d->lock, 2 * (uint64_t)1e6);
  }
  b = d->bytes;
  uv_mutex_unlock(&d->lock);
  return b;
}

static uint64_t discard_conns_done(discard_t* d) {
  uint64_t n;
  uv_mutex_lock(&d->lock);
  n = d->conns_done;
  uv_mutex_unlock(&d->lock);
  return n;
}

/* ---- the minimal relay: accept, dial the upstream, copy; nothing else ---- */

typedef struct {
  uv_loop_t loop;
  uv_pipe_t server;
  uv_async_t stop;
  uv_thread_t thread;
  char address[256], bind_path[256];
  const char* upstream; /* the path to dial */
} relay_t;

/* The relay reads on while less than this is queued to the upstream, and again once
 * half of it is written: the broker's default upstream_high_watermark. */
#define RELAY_HIGH_WATERMARK (1u << 20)
#define RELAY_READ_SIZE (1u << 17)

typedef struct {
  uv_pipe_t client, up;
  uv_connect_t connect;
  uv_shutdown_t shutdown;
  int closed;
  int paused; /* reading stopped for the watermark */
  int eof;    /* the client ended: reading is over */
} relay_conn_t;

typedef struct relay_write_s {
  uv_write_t req;
  struct relay_write_s* next; /* in the free list */
  char data[RELAY_READ_SIZE];
} relay_write_t;

/* Spent buffers, reused (the relay's loop thread only): a malloc and free of 128 KiB
 * per read would cost more than the copy. */
static relay_write_t* relay_free_list;

static void r_closed(uv_handle_t* h) {
  relay_conn_t* c = h->data;
  if (++c->closed == 2)
    free(c);
}

static void r_close(relay_conn_t* c) {
  if (!uv_is_closing((uv_handle_t*)&c->client))
    uv_close((uv_handle_t*)&c->client, r_closed);
  if (!uv_is_closing((uv_handle_t*)&c->up))
    uv_close((uv_handle_t*)&c->up, r_closed);
}

/* Each read gets a buffer of its own, which its write then owns and frees. */
static void r_alloc(uv_handle_t* h, size_t s, uv_buf_t* buf) {
  relay_write_t* w = relay_free_list;
  (void)h;
  (void)s;
  if (w != NULL)
    relay_free_list = w->next;
  else
    w = malloc(sizeof(*w));
  ASSERT_NOT_NULL(w);
  buf->base = w->data;
  buf->len = sizeof(w->data);
}

static void r_put(relay_write_t* w) {
  w->next = relay_free_list;
  relay_free_list = w;
}

static void r_free(const uv_buf_t* buf) {
  if (buf->base != NULL)
    r_put((relay_write_t*)(buf->base - offsetof(relay_write_t, data)));
}

static void r_shut(uv_shutdown_t* req, int status) {
  (void)status;
  r_close(req->data);
}

static void r_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf);

static void r_written(uv_write_t* req, int status) {
  relay_conn_t* c = req->data;
  r_put((relay_write_t*)req);
  if (status < 0) {
    if (status != UV_ECANCELED)
      fprintf(stderr, "relay: upstream write: %s\n", uv_strerror(status));
    r_close(c);
    return;
  }
  if (c->paused && !c->eof &&
      uv_stream_get_write_queue_size((uv_stream_t*)&c->up) <=
          RELAY_HIGH_WATERMARK / 2) {
    c->paused = 0;
    ASSERT_OK(uv_read_start((uv_stream_t*)&c->client, r_alloc, r_read));
  }
}

static void r_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  relay_conn_t* c = s->data;
  relay_write_t* w;
  uv_buf_t b;
  if (n <= 0) {
    r_free(buf);
    if (n == 0)
      return;
    /* The shutdown waits for the writes queued before it. */
    uv_read_stop(s);
    c->eof = 1;
    c->shutdown.data = c;
    if (uv_shutdown(&c->shutdown, (uv_stream_t*)&c->up, r_shut) != 0)
      r_close(c);
    return;
  }
  w = (relay_write_t*)(buf->base - offsetof(relay_write_t, data));
  b = uv_buf_init(buf->base, (unsigned)n);
  w->req.data = c;
  ASSERT_OK(uv_write(&w->req, (uv_stream_t*)&c->up, &b, 1, r_written));
  if (uv_stream_get_write_queue_size((uv_stream_t*)&c->up) >= RELAY_HIGH_WATERMARK) {
    uv_read_stop(s);
    c->paused = 1;
  }
}

static void r_connected(uv_connect_t* req, int status) {
  relay_conn_t* c = req->data;
  if (status < 0)
    sb_test_fail(__FILE__, __LINE__, "relay: dial upstream: %s", uv_strerror(status));
  ASSERT_OK(uv_read_start((uv_stream_t*)&c->client, r_alloc, r_read));
}

static void r_conn(uv_stream_t* server, int status) {
  relay_t* r = server->data;
  relay_conn_t* c = calloc(1, sizeof(*c));
  ASSERT_OK(status);
  ASSERT_NOT_NULL(c);
  uv_pipe_init(&r->loop, &c->client, 0);
  uv_pipe_init(&r->loop, &c->up, 0);
  c->client.data = c;
  c->up.data = c;
  ASSERT_OK(uv_accept(server, (uv_stream_t*)&c->client));
  c->connect.data = c;
  uv_pipe_connect(&c->connect, &c->up, r->upstream, r_connected);
}

static void r_walk_close(uv_handle_t* h, void* arg) {
  relay_t* r = arg;
  if (uv_is_closing(h))
    return;
  if (h == (uv_handle_t*)&r->server || h == (uv_handle_t*)&r->stop)
    uv_close(h, NULL);
  else
    r_close(h->data);
}

static void r_stop(uv_async_t* a) {
  relay_t* r = a->data;
  uv_walk(&r->loop, r_walk_close, r);
}

static void r_thread(void* arg) {
  relay_t* r = arg;
  uv_run(&r->loop, UV_RUN_DEFAULT);
}

static void relay_start(relay_t* r, const char* upstream_path) {
  memset(r, 0, sizeof(*r));
  r->upstream = upstream_path;
  ASSERT_OK(uv_loop_init(&r->loop));
  sb_it_address("relay", r->address, r->bind_path, sizeof(r->address));
  uv_pipe_init(&r->loop, &r->server, 0);
  r->server.data = r;
  ASSERT_OK(uv_pipe_bind(&r->server, r->bind_path));
  ASSERT_OK(uv_listen((uv_stream_t*)&r->server, 1024, r_conn));
  ASSERT_OK(uv_async_init(&r->loop, &r->stop, r_stop));
  r->stop.data = r;
  ASSERT_OK(uv_thread_create(&r->thread, r_thread, r));
}

static void relay_stop(relay_t* r) {
  ASSERT_OK(uv_async_send(&r->stop));
  ASSERT_OK(uv_thread_join(&r->thread));
  uv_loop_close(&r->loop);
  while (relay_free_list != NULL) {
    relay_write_t* w = relay_free_list;
    relay_free_list = w->next;
    free(w);
  }
}

/* ---- the broker's figures: admin status, /proc ---- */

typedef struct {
  uv_pipe_t pipe;
  uv_connect_t connect;
  uv_write_t write;
  char request[64];
  char slab[16384];
  sb__buf_t reply;
  int status;
} admin_req_t;

static void a_closed(uv_handle_t* h) {
  (void)h;
}

static void a_alloc(uv_handle_t* h, size_t s, uv_buf_t* buf) {
  admin_req_t* q = h->data;
  (void)s;
  buf->base = q->slab;
  buf->len = sizeof(q->slab);
}

static void a_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  admin_req_t* q = s->data;
  if (n > 0) {
    sb__buf_append(&q->reply, buf->base, (size_t)n);
  } else if (n < 0) {
    if (n != UV_EOF)
      q->status = (int)n;
    uv_close((uv_handle_t*)s, a_closed);
  }
}

static void a_written(uv_write_t* w, int status) {
  (void)w;
  (void)status;
}

static void a_connected(uv_connect_t* c, int status) {
  admin_req_t* q = c->data;
  uv_buf_t b = uv_buf_init(q->request, (unsigned)strlen(q->request));
  if (status < 0) {
    q->status = status;
    uv_close((uv_handle_t*)&q->pipe, a_closed);
    return;
  }
  q->write.data = q;
  if (uv_write(&q->write, (uv_stream_t*)&q->pipe, &b, 1, a_written) != 0 ||
      uv_read_start((uv_stream_t*)&q->pipe, a_alloc, a_read) != 0) {
    q->status = UV_EIO;
    uv_close((uv_handle_t*)&q->pipe, a_closed);
  }
}

/*
 * Asks the broker's admin pipe for command ("status", "streams"), on a loop of the
 * calling thread's own; returns the reply (NUL-terminated, the caller frees it), or
 * NULL when it could not be had. Never on the thread whose loop reads the broker's
 * log (broker_status): a broker blocked on its full log pipe would not answer.
 */
static char* admin_query(const char* admin_address, const char* command) {
  uv_loop_t loop;
  admin_req_t* q = calloc(1, sizeof(*q));
  char path[300], *reply;
  const char* name;
  int kind;
  ASSERT_NOT_NULL(q);
  ASSERT_OK(sb__address_parse(admin_address, &kind, &name));
  snprintf(path, sizeof(path), "%s%s", kind == SB__ADDR_PIPE ? "\\\\.\\pipe\\" : "",
           name);
  snprintf(q->request, sizeof(q->request), "{\"command\":\"%s\"}\n", command);
  ASSERT_OK(uv_loop_init(&loop));
  uv_pipe_init(&loop, &q->pipe, 0);
  q->pipe.data = q;
  q->connect.data = q;
  uv_pipe_connect(&q->connect, &q->pipe, path, a_connected);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_OK(uv_loop_close(&loop));
  sb__buf_putc(&q->reply, '\0');
  if (q->status != 0 || q->reply.err != 0) {
    sb__buf_free(&q->reply);
    free(q);
    return NULL;
  }
  reply = q->reply.data;
  free(q);
  return reply;
}

/* The number after "key": in the object that follows "section": in a reply from
 * admin_query (cJSON's compact print), or -1 when there is none. */
static double json_number(const char* text, const char* section, const char* key) {
  char needle[80];
  const char* p = text;
  if (p == NULL)
    return -1;
  if (section != NULL) {
    snprintf(needle, sizeof(needle), "\"%s\":{", section);
    if ((p = strstr(p, needle)) == NULL)
      return -1;
  }
  snprintf(needle, sizeof(needle), "\"%s\":", key);
  if ((p = strstr(p, needle)) == NULL)
    return -1;
  return strtod(p + strlen(needle), NULL);
}

static double admin_number(const char* admin_address, const char* section,
                           const char* key) {
  char* reply = admin_query(admin_address, "status");
  double v = json_number(reply, section, key);
  free(reply);
  return v;
}

typedef struct {
  const char* admin;
  char* reply;
} status_req_t;

static void status_thread(void* arg) {
  status_req_t* q = arg;
  q->reply = admin_query(q->admin, "status");
}

/* The broker's status reply (the caller frees it; NULL when there is none), asked
 * from a thread while loop runs: the loop reads the broker's log, and a broker whose
 * log pipe is full cannot answer. */
static char* broker_status(uv_loop_t* loop, const char* admin) {
  status_req_t q;
  q.admin = admin;
  q.reply = NULL;
  sb_it_run_thread(loop, status_thread, &q);
  return q.reply;
}

/* A number of /proc/PID/FILE after label (VmHWM in status, write_bytes in io); 0
 * where there is none (not Linux). */
static uint64_t proc_number(int pid, const char* file, const char* label) {
  char path[64], *text, *p;
  size_t len;
  uint64_t v = 0;
  snprintf(path, sizeof(path), "/proc/%d/%s", pid, file);
  text = sb_it_read_file(path, &len);
  if (text == NULL)
    return 0;
  if ((p = strstr(text, label)) != NULL)
    v = strtoull(p + strlen(label), NULL, 10);
  free(text);
  return v;
}

/* ---- workloads, each run on client threads ---- */

static char block[65536]; /* what 64 KiB writes write; filled before any thread runs */

enum { K_BULK, K_LINES, K_MANY, K_STALL, K_STARVE, K_COUNT };

typedef struct {
  const char* address; /* where the clients connect */
  int kind;
  uint64_t size; /* bytes for K_BULK and the K_STARVE backlog; lines per client */
  int clients;
  int streams;      /* K_MANY */
  uint64_t payload; /* bytes the clients wrote (handshakes excluded) */
  uv_mutex_t lock;  /* guards stop and written while producers run */
  int stop;         /* producers that write until told stop */
  uint64_t written; /* what running producers have written so far */
} workload_t;

typedef struct {
  workload_t* w;
  int index;
  const char* name; /* stream name, for producers */
  uint64_t written;
} worker_t;

static void worker_main(void* arg) {
  worker_t* wk = arg;
  workload_t* w = wk->w;
  sb_client_t* c;
  sb_stream_opts_t o;
  char name[64];
  ASSERT_OK(sb_client_open(&c, w->address));
  sb_client_set_timeout(c, 60000);
  memset(&o, 0, sizeof(o));
  o.name = name;
  if (w->kind == K_BULK) {
    sb_stream_t* s;
    uint64_t left = w->size;
    snprintf(name, sizeof(name), "bench/big/%d", wk->index);
    o.type = SB_BINARY;
    ASSERT_OK(sb_stream_open(c, &o, &s));
    while (left > 0) {
      size_t n = left < sizeof(block) ? (size_t)left : sizeof(block);
      ASSERT_OK(sb_stream_write(s, block, n));
      left -= n;
      wk->written += n;
    }
    ASSERT_OK(sb_stream_close(s));
  } else if (w->kind == K_LINES) {
    char line[100];
    sb_stream_t* s;
    uint64_t i;
    memset(line, 'x', sizeof(line));
    line[99] = '\n';
    snprintf(name, sizeof(name), "bench/lines/%d", wk->index);
    ASSERT_OK(sb_stream_open(c, &o, &s));
    for (i = 0; i < w->size; i++) {
      ASSERT_OK(sb_stream_write(s, line, sizeof(line)));
      wk->written += sizeof(line);
    }
    ASSERT_OK(sb_stream_close(s));
  } else {
    sb_stream_t** ss = calloc((size_t)w->streams, sizeof(*ss));
    int i, round;
    ASSERT_NOT_NULL(ss);
    for (i = 0; i < w->streams; i++) {
      snprintf(name, sizeof(name), "bench/many/%d/%d", wk->index, i);
      ASSERT_OK(sb_stream_open(c, &o, &ss[i]));
    }
    for (round = 0; round < 64; round++) {
      char line[256];
      memset(line, 'm', sizeof(line));
      line[255] = '\n';
      for (i = 0; i < w->streams; i++) {
        ASSERT_OK(sb_stream_write(ss[i], line, sizeof(line)));
        wk->written += sizeof(line);
      }
    }
    for (i = 0; i < w->streams; i++)
      ASSERT_OK(sb_stream_close(ss[i]));
    free(ss);
  }
  sb_client_close(c);
}

/*
 * A producer that writes until the workload says stop: 100-byte lines (one write
 * each) on a text stream, or 64 KiB writes on a binary one (binary != 0). It adds
 * what it wrote to w->written every 64 KiB or so, so a rate can be read while it runs.
 */
static void producer_run(worker_t* wk, int binary) {
  workload_t* w = wk->w;
  char line[100];
  sb_client_t* c;
  sb_stream_opts_t o;
  sb_stream_t* s;
  const char* data = binary ? block : line;
  size_t len = binary ? sizeof(block) : sizeof(line);
  uint64_t unpublished = 0;
  int stop = 0;
  memset(line, 'y', sizeof(line));
  line[99] = '\n';
  ASSERT_OK(sb_client_open(&c, w->address));
  sb_client_set_timeout(c, 60000);
  memset(&o, 0, sizeof(o));
  o.name = wk->name;
  o.type = binary ? SB_BINARY : SB_TEXT;
  ASSERT_OK(sb_stream_open(c, &o, &s));
  while (!stop) {
    ASSERT_OK(sb_stream_write(s, data, len));
    wk->written += len;
    unpublished += len;
    if (unpublished >= sizeof(block)) {
      uv_mutex_lock(&w->lock);
      w->written += unpublished;
      stop = w->stop;
      uv_mutex_unlock(&w->lock);
      unpublished = 0;
    }
  }
  uv_mutex_lock(&w->lock);
  w->written += unpublished;
  uv_mutex_unlock(&w->lock);
  ASSERT_OK(sb_stream_close(s));
  sb_client_close(c);
}

static void producer_lines(void* arg) {
  producer_run(arg, 0);
}

static void producer_binary(void* arg) {
  producer_run(arg, 1);
}

static uint64_t written_now(workload_t* w) {
  uint64_t n;
  uv_mutex_lock(&w->lock);
  n = w->written;
  uv_mutex_unlock(&w->lock);
  return n;
}

static void producers_stop(workload_t* w) {
  uv_mutex_lock(&w->lock);
  w->stop = 1;
  uv_mutex_unlock(&w->lock);
}

static double ratio(double a, double b) {
  return b > 0 ? a / b : 0.0;
}

static double seconds_since(uint64_t t0) {
  return (double)(uv_hrtime() - t0) / 1e9;
}

/* What one run of a workload on one path gives. Rates are MB/s, or lines/s for the
 * lines workload; -1 where a figure does not apply. */
typedef struct {
  int ran;
  double rate;
  double seconds;
  uint64_t payload;
  uint64_t rss_kib;    /* the broker's peak resident memory */
  uint64_t disk_bytes; /* the broker's disk writes (write_bytes) */
  double live_bytes;   /* counters.bytes_live, -1 when the broker has none */
  double replay_peak;  /* replay_memory.peak_bytes, likewise */
  /* K_STALL */
  double pre_rate, stall_rate, drain_s, backlog_mb, peak_spool;
  int on_spool; /* streams whose route was "spool" at the resume, -1: not told */
  /* K_STARVE */
  double solo_rate, busy_rate, drain_rate;
} result_t;

typedef struct {
  workload_t* w;
  discard_t* d;
  const char* admin; /* the broker's admin address, or NULL for direct and relay */
  uint64_t stall_ms;
  result_t* res;
} run_t;

/* The fixed-size workloads: all clients write their share; timed until the upstream
 * has every byte and every connection ended. */
static void run_clients(void* arg) {
  run_t* r = arg;
  workload_t* w = r->w;
  worker_t wk[64];
  uv_thread_t t[64];
  uint64_t start, before, conns;
  int i;
  uv_mutex_lock(&r->d->lock);
  before = r->d->conns_done;
  r->d->bytes = 0;
  uv_mutex_unlock(&r->d->lock);
  conns = (uint64_t)w->clients * (w->kind == K_MANY ? (uint64_t)w->streams : 1);
  w->payload = 0;
  start = uv_hrtime();
  for (i = 0; i < w->clients; i++) {
    wk[i].w = w;
    wk[i].index = i;
    wk[i].written = 0;
    ASSERT_OK(uv_thread_create(&t[i], worker_main, &wk[i]));
  }
  for (i = 0; i < w->clients; i++) {
    ASSERT_OK(uv_thread_join(&t[i]));
    w->payload += wk[i].written;
  }
  discard_wait(r->d, before + conns, -1, w->payload);
  r->res->seconds = seconds_since(start);
  r->res->payload = w->payload;
  if (w->kind == K_LINES)
    r->res->rate = (double)(w->payload / 100) / r->res->seconds;
  else
    r->res->rate = (double)w->payload / r->res->seconds / MB;
}

/* Polls the spool's size for ms milliseconds (every 50 ms), keeping its peak; only
 * waits when there is no broker. */
static void watch_spool(run_t* r, uint64_t ms) {
  uint64_t t0 = uv_hrtime();
  if (r->admin == NULL) {
    uv_sleep((unsigned)ms);
    return;
  }
  do {
    double b = admin_number(r->admin, "spool", "bytes");
    if (b > r->res->peak_spool)
      r->res->peak_spool = b;
    uv_sleep(50);
  } while (seconds_since(t0) * 1000 < (double)ms);
}

/*
 * The stall: producers write lines for a second, the upstream then stops reading for
 * stall_ms, and resumes; the producers stop at the resume. Their rate before and
 * during the stall (they should not notice it), the spool's peak, and the time from
 * the resume until the upstream has everything.
 */
static void run_stall(void* arg) {
  run_t* r = arg;
  workload_t* w = r->w;
  result_t* res = r->res;
  worker_t wk[64];
  uv_thread_t t[64];
  char names[64][64];
  uint64_t t0, t1, t2, w0, w1, w2, before, got;
  int i;
  uv_mutex_lock(&r->d->lock);
  before = r->d->conns_done;
  r->d->bytes = 0;
  uv_mutex_unlock(&r->d->lock);
  w->stop = 0;
  w->written = 0;
  for (i = 0; i < w->clients; i++) {
    snprintf(names[i], sizeof(names[i]), "bench/stall/%d", i);
    wk[i].w = w;
    wk[i].index = i;
    wk[i].name = names[i];
    wk[i].written = 0;
    ASSERT_OK(uv_thread_create(&t[i], producer_lines, &wk[i]));
  }
  uv_sleep(200); /* connected and writing */
  w0 = written_now(w);
  t0 = uv_hrtime();
  watch_spool(r, 1000);
  w1 = written_now(w);
  t1 = uv_hrtime();
  discard_stall(r->d, 2);
  watch_spool(r, r->stall_ms);
  w2 = written_now(w);
  res->on_spool = -1;
  if (r->admin != NULL) {
    char* streams = admin_query(r->admin, "streams");
    if (streams != NULL && strstr(streams, "\"route\":") != NULL)
      res->on_spool = (int)sb_it_count(streams, strlen(streams), "\"route\":\"spool\"");
    free(streams);
  }
  uv_mutex_lock(&r->d->lock);
  got = r->d->bytes;
  uv_mutex_unlock(&r->d->lock);
  t2 = uv_hrtime();
  discard_stall(r->d, 0);
  producers_stop(w);
  w->payload = 0;
  for (i = 0; i < w->clients; i++) {
    ASSERT_OK(uv_thread_join(&t[i]));
    w->payload += wk[i].written;
  }
  res->pre_rate = (double)((w1 - w0) / 100) / ((double)(t1 - t0) / 1e9);
  res->stall_rate = (double)((w2 - w1) / 100) / ((double)(t2 - t1) / 1e9);
  if (r->admin != NULL) {
    /* Past the stall's spool peak: a last look while the backlog drains. */
    double b = admin_number(r->admin, "spool", "bytes");
    if (b > res->peak_spool)
      res->peak_spool = b;
  }
  discard_wait(r->d, before + (uint64_t)w->clients, -1, w->payload);
  res->drain_s = seconds_since(t2);
  res->payload = w->payload;
  /* What the upstream did not have at the resume (the handshakes it had are
   * counted, a few hundred bytes). */
  res->backlog_mb = got < w->payload ? (double)(w->payload - got) / MB : 0.0;
  res->rate = res->stall_rate;
}

/*
 * Starvation: a live stream's rate alone, then again while another stream drains a
 * backlog of w->size bytes, written while the upstream was stalled for that stream
 * only (its connection stopped reading; new ones are read).
 */
static void run_starve(void* arg) {
  run_t* r = arg;
  workload_t* w = r->w;
  result_t* res = r->res;
  worker_t live;
  uv_thread_t lt;
  sb_client_t* c;
  sb_stream_opts_t o;
  sb_stream_t* s;
  uint64_t t0, b0, before, left, window_ms = r->stall_ms;
  double spooled, last = -1;
  int stable = 0;

  /* The live stream alone. */
  memset(&live, 0, sizeof(live));
  w->stop = 0;
  w->written = 0;
  live.w = w;
  live.name = "bench/live/solo";
  discard_tag(r->d, 0, "bench/live/");
  before = discard_conns_done(r->d);
  ASSERT_OK(uv_thread_create(&lt, producer_binary, &live));
  uv_sleep(300);
  b0 = discard_tag_bytes(r->d, 0);
  t0 = uv_hrtime();
  uv_sleep((unsigned)window_ms);
  res->solo_rate = (double)(discard_tag_bytes(r->d, 0) - b0) / seconds_since(t0) / MB;
  producers_stop(w);
  ASSERT_OK(uv_thread_join(&lt));
  discard_wait(r->d, before + 1, 0, live.written);
  res->payload = live.written;

  /* The backlog: its first bytes reach the upstream, which then stops reading that
   * connection; the rest waits in the broker. */
  discard_tag(r->d, 1, "bench/backlog/");
  before = discard_conns_done(r->d);
  memset(&o, 0, sizeof(o));
  o.name = "bench/backlog/0";
  o.type = SB_BINARY;
  ASSERT_OK(sb_client_open(&c, w->address));
  sb_client_set_timeout(c, 60000);
  ASSERT_OK(sb_stream_open(c, &o, &s));
  ASSERT_OK(sb_stream_write(s, block, sizeof(block)));
  discard_wait(r->d, 0, 1, 1);
  discard_stall(r->d, 1);
  for (left = w->size - sizeof(block); left > 0;) {
    size_t n = left < sizeof(block) ? (size_t)left : sizeof(block);
    ASSERT_OK(sb_stream_write(s, block, n));
    left -= n;
  }
  ASSERT_OK(sb_stream_close(s));
  sb_client_close(c);
  /* Until the spool holds it (or stops growing for a second: a part may be in the
   * upstream's socket buffers, or the broker keeps some in memory). */
  for (;;) {
    spooled = admin_number(r->admin, "spool", "bytes");
    if (spooled >= (double)w->size)
      break;
    stable = spooled == last ? stable + 1 : 0;
    if (stable >= 10)
      break;
    last = spooled;
    uv_sleep(100);
  }
  res->peak_spool = spooled;

  /* The live stream again, then the upstream resumes the backlog's connection. */
  memset(&live, 0, sizeof(live));
  w->stop = 0;
  w->written = 0;
  live.w = w;
  live.name = "bench/live/busy";
  discard_tag(r->d, 0, "bench/live/");
  ASSERT_OK(uv_thread_create(&lt, producer_binary, &live));
  uv_sleep(300);
  b0 = discard_tag_bytes(r->d, 0);
  t0 = uv_hrtime();
  discard_stall(r->d, 0);
  discard_wait(r->d, 0, 1, w->size);
  res->drain_s = seconds_since(t0);
  res->busy_rate = (double)(discard_tag_bytes(r->d, 0) - b0) / res->drain_s / MB;
  res->drain_rate = (double)w->size / res->drain_s / MB;
  producers_stop(w);
  ASSERT_OK(uv_thread_join(&lt));
  discard_wait(r->d, before + 2, 0, live.written);
  res->payload += live.written + w->size;
  res->rate = res->busy_rate;
}

/* ---- the run ---- */

static const char* const durabilities[] = {"backlog", "spool", "always"};
#define NDUR 3

typedef struct {
  const char* key;   /* for --json */
  const char* label; /* for the table */
  double target;     /* broker ("backlog") / relay wanted, 0: none */
  int clients;
  result_t direct, relay, broker[NDUR];
} bench_workload_t;

static FILE* out;

static const char* unit_of(int kind) {
  return kind == K_LINES || kind == K_STALL ? "l/s" : "MB/s";
}

static void print_broker_row(bench_workload_t* b, int kind, int i) {
  result_t* x = &b->broker[i];
  char live[32] = "-", rel[16] = "-", dir[16] = "-";
  if (b->relay.ran)
    snprintf(rel, sizeof(rel), "%.2f", x->rate / b->relay.rate);
  if (b->direct.ran)
    snprintf(dir, sizeof(dir), "%.2f", x->rate / b->direct.rate);
  if (x->live_bytes >= 0 && x->payload > 0)
    snprintf(live, sizeof(live), "%.0f %%", 100.0 * x->live_bytes / (double)x->payload);
  fprintf(out, "  broker %-9s %10.0f %-4s %7s %7s %9.1f MiB %9.1f MiB %7.2f %% %7s\n",
          durabilities[i], x->rate, unit_of(kind), rel, dir,
          (double)x->rss_kib / 1024.0, (double)x->disk_bytes / MIB,
          x->payload ? 100.0 * (double)x->disk_bytes / (double)x->payload : 0.0, live);
}

static void print_workload(bench_workload_t* b, int kind) {
  int i;
  fprintf(out, "\n%s\n", b->label);
  if (kind == K_STALL) {
    fprintf(out, "  %-16s %12s %12s %6s %11s %8s %16s %12s %12s\n", "path",
            "before stall", "during stall", "ratio", "peak spool", "spooled",
            "drain (backlog)", "peak RSS", "disk written");
    fprintf(out, "  %-16s %8.0f l/s %8.0f l/s %6.2f %11s %8s %5.2f s (%4.0f MB)\n",
            "direct", b->direct.pre_rate, b->direct.stall_rate,
            ratio(b->direct.stall_rate, b->direct.pre_rate), "-", "-",
            b->direct.drain_s, b->direct.backlog_mb);
    for (i = 0; i < NDUR; i++) {
      result_t* x = &b->broker[i];
      char spooled[16] = "-";
      if (x->on_spool >= 0)
        snprintf(spooled, sizeof(spooled), "%d/%d", x->on_spool, b->clients);
      fprintf(
          out,
          "  broker %-9s %8.0f l/s %8.0f l/s %6.2f %7.1f MiB %8s %5.2f s (%4.0f MB) "
          "%8.1f MiB %8.1f MiB\n",
          durabilities[i], x->pre_rate, x->stall_rate,
          ratio(x->stall_rate, x->pre_rate), x->peak_spool / MIB, spooled, x->drain_s,
          x->backlog_mb, (double)x->rss_kib / 1024.0, (double)x->disk_bytes / MIB);
    }
    fprintf(out,
            "  target: the producers do not block (during/before ~1); spooled: streams "
            "on the spool route at the resume\n");
    return;
  }
  if (kind == K_STARVE) {
    fprintf(out, "  %-16s %12s %16s %6s %22s %12s %12s\n", "durability", "live alone",
            "live beside it", "ratio", "backlog drain", "peak RSS", "disk written");
    for (i = 0; i < NDUR; i++) {
      result_t* x = &b->broker[i];
      fprintf(out,
              "  broker %-9s %7.0f MB/s %11.0f MB/s %6.2f %5.2f s at %5.0f MB/s "
              "%8.1f MiB %8.1f MiB\n",
              durabilities[i], x->solo_rate, x->busy_rate,
              x->solo_rate > 0 ? x->busy_rate / x->solo_rate : 0.0, x->drain_s,
              x->drain_rate, (double)x->rss_kib / 1024.0, (double)x->disk_bytes / MIB);
    }
    fprintf(out, "  target: live beside the drain >= 0.50 of live alone\n");
    return;
  }
  fprintf(out, "  %-16s %15s %7s %7s %13s %25s %7s\n", "path", "throughput", "/relay",
          "/direct", "peak RSS", "disk written", "live");
  fprintf(out, "  %-16s %10.0f %-4s\n", "direct", b->direct.rate, unit_of(kind));
  fprintf(out, "  %-16s %10.0f %-4s %7.2f\n", "minimal relay", b->relay.rate,
          unit_of(kind), b->relay.rate / b->direct.rate);
  for (i = 0; i < NDUR; i++)
    print_broker_row(b, kind, i);
  fprintf(out,
          "  target (backlog): >= %.2f of relay, peak RSS < 64 MiB, disk writes < 1 %% "
          "of the bytes forwarded\n",
          b->target);
}

static void json_result(const char* name, result_t* x, int kind, int last) {
  printf("\"%s\":{\"rate\":%.1f,\"seconds\":%.3f,\"payload_bytes\":%llu", name, x->rate,
         x->seconds, (unsigned long long)x->payload);
  if (strcmp(name, "direct") != 0 && strcmp(name, "relay") != 0)
    printf(",\"peak_rss_bytes\":%llu,\"disk_bytes_written\":%llu,\"disk_pct\":%.3f",
           (unsigned long long)x->rss_kib * 1024, (unsigned long long)x->disk_bytes,
           x->payload ? 100.0 * (double)x->disk_bytes / (double)x->payload : 0.0);
  if (x->live_bytes >= 0)
    printf(",\"bytes_live\":%.0f", x->live_bytes);
  if (x->replay_peak >= 0)
    printf(",\"replay_memory_peak_bytes\":%.0f", x->replay_peak);
  if (kind == K_STALL)
    printf(",\"before_stall_lines_s\":%.0f,\"during_stall_lines_s\":%.0f,"
           "\"peak_spool_bytes\":%.0f,\"drain_s\":%.3f,\"backlog_mb\":%.1f",
           x->pre_rate, x->stall_rate, x->peak_spool, x->drain_s, x->backlog_mb);
  if (kind == K_STALL && x->on_spool >= 0)
    printf(",\"streams_on_spool_at_resume\":%d", x->on_spool);
  if (kind == K_STARVE)
    printf(",\"live_alone_mb_s\":%.1f,\"live_beside_drain_mb_s\":%.1f,\"ratio\":%.3f,"
           "\"drain_s\":%.3f,\"drain_mb_s\":%.1f,\"spooled_bytes\":%.0f",
           x->solo_rate, x->busy_rate,
           x->solo_rate > 0 ? x->busy_rate / x->solo_rate : 0, x->drain_s,
           x->drain_rate, x->peak_spool);
  printf("}%s", last ? "" : ",");
}

static void print_json(bench_workload_t* bw, int nw, int clients, double gib,
                       uint64_t lines, int streams, uint64_t stall_ms,
                       uint64_t backlog) {
  int k, i;
  printf("{\"clients\":%d,\"gib\":%.3f,\"lines\":%llu,\"streams\":%d,\"stall_ms\":%llu,"
         "\"backlog_bytes\":%llu,\"workloads\":[",
         clients, gib, (unsigned long long)lines, streams, (unsigned long long)stall_ms,
         (unsigned long long)backlog);
  for (k = 0; k < nw; k++) {
    bench_workload_t* b = &bw[k];
    printf("%s{\"name\":\"%s\",\"label\":\"%s\",\"unit\":\"%s\",", k ? "," : "", b->key,
           b->label, unit_of(k));
    if (b->direct.ran)
      json_result("direct", &b->direct, k, 0);
    if (b->relay.ran)
      json_result("relay", &b->relay, k, 0);
    printf("\"broker\":{");
    for (i = 0; i < NDUR; i++)
      json_result(durabilities[i], &b->broker[i], k, i == NDUR - 1);
    printf("},\"ratios\":{");
    for (i = 0; i < NDUR; i++) {
      result_t* x = &b->broker[i];
      printf("%s\"%s\":{", i ? "," : "", durabilities[i]);
      if (b->relay.ran && b->direct.ran)
        printf("\"broker_relay\":%.3f,\"broker_direct\":%.3f", x->rate / b->relay.rate,
               x->rate / b->direct.rate);
      else if (k == K_STALL)
        printf("\"during_before_stall\":%.3f",
               x->pre_rate > 0 ? x->stall_rate / x->pre_rate : 0.0);
      else
        printf("\"live_beside_alone\":%.3f",
               x->solo_rate > 0 ? x->busy_rate / x->solo_rate : 0.0);
      printf("}");
    }
    printf("},\"targets\":{\"durability\":\"backlog\"");
    if (b->target > 0)
      printf(",\"broker_relay_min\":%.2f,\"disk_pct_max\":1", b->target);
    if (k == K_STARVE)
      printf(",\"live_beside_alone_min\":0.5");
    printf(",\"peak_rss_max_bytes\":67108864}}");
  }
  printf("]}\n");
}

int main(int argc, char** argv) {
  uv_loop_t loop;
  discard_t d;
  relay_t relay;
  double gib = 1.0;
  uint64_t lines = 250000, stall_ms = 3000, backlog_mb = 500;
  int clients = 4, streams = 250, json = 0, i, k;
  bench_workload_t bw[K_COUNT];
  char label[K_COUNT][160];

  for (i = 1; i < argc; i++) {
    const char* v = i + 1 < argc ? argv[i + 1] : "0";
    if (strcmp(argv[i], "--json") == 0) {
      json = 1;
      continue;
    }
    if (strcmp(argv[i], "--gib") == 0)
      gib = atof(v);
    else if (strcmp(argv[i], "--lines") == 0)
      lines = strtoull(v, NULL, 10);
    else if (strcmp(argv[i], "--clients") == 0)
      clients = atoi(v);
    else if (strcmp(argv[i], "--streams") == 0)
      streams = atoi(v);
    else if (strcmp(argv[i], "--stall-ms") == 0)
      stall_ms = strtoull(v, NULL, 10);
    else if (strcmp(argv[i], "--backlog-mb") == 0)
      backlog_mb = strtoull(v, NULL, 10);
    else {
      fprintf(stderr,
              "usage: bench_broker [--gib N] [--lines N] [--clients N] [--streams N] "
              "[--stall-ms N] [--backlog-mb N] [--json]\n");
      return 2;
    }
    i++;
  }
  if (clients < 1 || clients > 64)
    clients = 4;
  if (stall_ms < 100)
    stall_ms = 100;
  if (backlog_mb < 1)
    backlog_mb = 1;
  out = json ? stderr : stdout;
  memset(block, 'b', sizeof(block));

  memset(bw, 0, sizeof(bw));
  snprintf(label[K_BULK], sizeof(label[K_BULK]),
           "one %.2f GiB binary stream, 64 KiB writes", gib);
  snprintf(label[K_LINES], sizeof(label[K_LINES]),
           "%d clients x %llu lines of 100 bytes, one write each", clients,
           (unsigned long long)lines);
  snprintf(label[K_MANY], sizeof(label[K_MANY]),
           "%d clients x %d streams open at once, 64 x 256-byte lines each", clients,
           streams);
  snprintf(label[K_STALL], sizeof(label[K_STALL]),
           "stall: %d clients write 100-byte lines; the upstream stops reading for "
           "%.1f s, then resumes",
           clients, (double)stall_ms / 1000.0);
  snprintf(label[K_STARVE], sizeof(label[K_STARVE]),
           "starvation: one stream drains a %llu MB backlog while another writes live "
           "(64 KiB writes)",
           (unsigned long long)backlog_mb);
  bw[K_BULK].key = "bulk";
  bw[K_BULK].target = 0.80;
  bw[K_LINES].key = "lines";
  bw[K_LINES].target = 0.90;
  bw[K_MANY].key = "many_streams";
  bw[K_MANY].target = 0.85;
  bw[K_STALL].key = "stall";
  bw[K_STARVE].key = "starvation";
  for (k = 0; k < K_COUNT; k++)
    bw[k].label = label[k];

  ASSERT_OK(uv_loop_init(&loop));
  discard_start(&d);
  relay_start(&relay, d.bind_path);
  fprintf(out,
          "streambroker benchmark: client -> upstream (direct), client -> minimal "
          "relay -> upstream, client -> broker -> upstream; the upstream discards\n");
  fprintf(
      out,
      "(the broker runs once per workload and durability; peak RSS and disk "
      "writes are its own for that run; live: bytes forwarded without the spool)\n");
  fflush(out);

  for (k = 0; k < K_COUNT; k++) {
    bench_workload_t* b = &bw[k];
    workload_t w;
    memset(&w, 0, sizeof(w));
    ASSERT_OK(uv_mutex_init(&w.lock));
    w.kind = k;
    w.clients = k == K_BULK ? 1 : clients;
    w.size = k == K_BULK     ? (uint64_t)(gib * 1073741824.0)
             : k == K_STARVE ? backlog_mb * 1000000
                             : lines;
    w.streams = streams;
    b->clients = w.clients;
    /* Direct and through the relay: the fixed-size workloads; the stall directly
     * too, to show what it does to producers with nothing in between. */
    for (i = 0; i < (k <= K_MANY ? 2 : k == K_STALL ? 1 : 0); i++) {
      run_t r;
      result_t* x = i == 0 ? &b->direct : &b->relay;
      memset(&r, 0, sizeof(r));
      memset(x, 0, sizeof(*x));
      r.w = &w;
      r.d = &d;
      r.res = x;
      r.stall_ms = stall_ms;
      w.address = i == 0 ? d.address : relay.address;
      sb_it_run_thread(&loop, k == K_STALL ? run_stall : run_clients, &r);
      x->ran = 1;
      x->live_bytes = -1;
      x->replay_peak = -1;
    }
    for (i = 0; i < NDUR; i++) {
      sb_it_daemon_t broker;
      char extra[512];
      run_t r;
      result_t* x = &b->broker[i];
      uint64_t disk0;
      double live0;
      char* status;
      snprintf(extra, sizeof(extra),
               "\"log_level\": \"info\", \"max_streams\": 100000, "
               "\"max_streams_per_client\": 100000, \"spool_reserve_bytes\": 0, "
               "\"spool_max_bytes\": 4294967296, \"durability\": \"%s\"",
               durabilities[i]);
      sb_it_daemon_start(&broker, &loop, "bench", d.address, extra);
      memset(&r, 0, sizeof(r));
      memset(x, 0, sizeof(*x));
      r.w = &w;
      r.d = &d;
      r.res = x;
      r.admin = broker.admin_address;
      r.stall_ms = stall_ms;
      w.address = broker.address;
      status = broker_status(&loop, broker.admin_address);
      live0 = json_number(status, "counters", "bytes_live");
      free(status);
      disk0 = proc_number(broker.proc.pid, "io", "write_bytes:");
      sb_it_run_thread(&loop,
                       k <= K_MANY    ? run_clients
                       : k == K_STALL ? run_stall
                                      : run_starve,
                       &r);
      x->ran = 1;
      x->disk_bytes = proc_number(broker.proc.pid, "io", "write_bytes:") - disk0;
      x->rss_kib = proc_number(broker.proc.pid, "status", "VmHWM:");
      status = broker_status(&loop, broker.admin_address);
      x->live_bytes = json_number(status, "counters", "bytes_live");
      x->live_bytes = x->live_bytes >= 0 && live0 >= 0 ? x->live_bytes - live0 : -1;
      x->replay_peak = json_number(status, "replay_memory", "peak_bytes");
      free(status);
      sb_it_daemon_kill(&broker, SIGTERM);
      sb_it_daemon_wait_exit(&broker, 60000);
      sb_it_daemon_close(&broker);
    }
    print_workload(b, k);
    fflush(out);
    uv_mutex_destroy(&w.lock);
  }

  /* The summary, as the README shows it. */
  fprintf(out, "\nsummary (broker with the default durability \"backlog\")\n");
  fprintf(out, "  %-14s %11s %11s %11s %11s %11s %14s %10s %8s\n", "workload", "direct",
          "relay", "backlog", "spool", "always", "backlog/relay", "peak RSS", "disk");
  for (k = 0; k <= K_MANY; k++) {
    bench_workload_t* b = &bw[k];
    fprintf(out,
            "  %-14s %6.0f %-4s %6.0f %-4s %6.0f %-4s %6.0f %-4s %6.0f %-4s "
            "%5.2f (>=%.2f) %6.1f MiB %6.2f %%\n",
            b->key, b->direct.rate, unit_of(k), b->relay.rate, unit_of(k),
            b->broker[0].rate, unit_of(k), b->broker[1].rate, unit_of(k),
            b->broker[2].rate, unit_of(k), b->broker[0].rate / b->relay.rate, b->target,
            (double)b->broker[0].rss_kib / 1024.0,
            b->broker[0].payload
                ? 100.0 * (double)b->broker[0].disk_bytes / (double)b->broker[0].payload
                : 0.0);
  }
  {
    result_t* st = bw[K_STALL].broker;
    result_t* sv = bw[K_STARVE].broker;
    fprintf(out,
            "  %-14s during/before the stall: %.2f backlog, %.2f spool, %.2f always, "
            "%.2f direct (target ~1); peak spool %.0f MiB, drain %.2f s (backlog)\n",
            "stall", ratio(st[0].stall_rate, st[0].pre_rate),
            ratio(st[1].stall_rate, st[1].pre_rate),
            ratio(st[2].stall_rate, st[2].pre_rate),
            ratio(bw[K_STALL].direct.stall_rate, bw[K_STALL].direct.pre_rate),
            st[0].peak_spool / MIB, st[0].drain_s);
    fprintf(out,
            "  %-14s live beside the drain / alone: %.2f backlog, %.2f spool, %.2f "
            "always (target >= 0.50)\n",
            "starvation", ratio(sv[0].busy_rate, sv[0].solo_rate),
            ratio(sv[1].busy_rate, sv[1].solo_rate),
            ratio(sv[2].busy_rate, sv[2].solo_rate));
  }
  fflush(out);
  if (json)
    print_json(bw, K_COUNT, clients, gib, lines, streams, stall_ms,
               backlog_mb * 1000000);

  relay_stop(&relay);
  discard_stop(&d);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_OK(uv_loop_close(&loop));
  return sb_test_cleanup() == 0 ? 0 : 1; /* its directories and sockets */
}
