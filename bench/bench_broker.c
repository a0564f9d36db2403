/*
 * bench_broker.c - throughput and memory of client -> streambrokerd -> upstream,
 * beside client -> upstream directly, in one run.
 *
 * The upstream is a discard server in this process (a libuv loop on its own thread
 * that reads and counts), so the figures are the broker's cost and not a disk's.
 * Prints MB/s and lines/s for each path, the ratio broker/direct, and the broker's
 * peak resident memory (Linux: VmHWM) for each workload.
 *
 *   bench_broker [--gib N] [--lines N] [--clients N] [--streams N]
 */
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "task.h"

/* ---- the discard upstream ---- */

typedef struct {
  uv_loop_t loop;
  uv_pipe_t server;
  uv_async_t stop;
  uv_thread_t thread;
  char address[256], bind_path[256];
  uint64_t bytes;       /* written by the server thread, read after a barrier */
  uint64_t conns_done;
  uv_mutex_t lock;
  uv_cond_t cond;
} discard_t;

typedef struct {
  uv_pipe_t pipe;
  discard_t* d;
} discard_conn_t;

static char discard_slab[1 << 17];

static void d_alloc(uv_handle_t* h, size_t s, uv_buf_t* buf) {
  (void)h;
  (void)s;
  buf->base = discard_slab;
  buf->len = sizeof(discard_slab);
}

static void d_closed(uv_handle_t* h) {
  free(h);
}

static void d_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  discard_conn_t* c = (discard_conn_t*)s;
  (void)buf;
  if (n > 0) {
    uv_mutex_lock(&c->d->lock);
    c->d->bytes += (uint64_t)n;
    uv_mutex_unlock(&c->d->lock);
  } else if (n < 0) {
    uv_mutex_lock(&c->d->lock);
    c->d->conns_done++;
    uv_cond_broadcast(&c->d->cond);
    uv_mutex_unlock(&c->d->lock);
    uv_close((uv_handle_t*)s, d_closed);
  }
}

static void d_conn(uv_stream_t* server, int status) {
  discard_t* d = server->data;
  discard_conn_t* c = malloc(sizeof(*c));
  ASSERT_OK(status);
  ASSERT_NOT_NULL(c);
  c->d = d;
  uv_pipe_init(&d->loop, &c->pipe, 0);
  ASSERT_OK(uv_accept(server, (uv_stream_t*)&c->pipe));
  ASSERT_OK(uv_read_start((uv_stream_t*)&c->pipe, d_alloc, d_read));
}

static void d_walk_close(uv_handle_t* h, void* arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, h->type == UV_NAMED_PIPE && h != arg ? d_closed : NULL);
}

static void d_stop(uv_async_t* a) {
  discard_t* d = a->data;
  uv_walk(&d->loop, d_walk_close, &d->server);
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
  ASSERT_OK(uv_thread_create(&d->thread, d_thread, d));
}

static void discard_stop(discard_t* d) {
  ASSERT_OK(uv_async_send(&d->stop));
  ASSERT_OK(uv_thread_join(&d->thread));
  uv_loop_close(&d->loop);
}

/* Waits until conns connections have ended; returns the bytes received. */
static uint64_t discard_wait(discard_t* d, uint64_t conns) {
  uint64_t b;
  uv_mutex_lock(&d->lock);
  while (d->conns_done < conns)
    uv_cond_wait(&d->cond, &d->lock);
  b = d->bytes;
  uv_mutex_unlock(&d->lock);
  return b;
}

/* ---- workloads, each run on client threads ---- */

typedef struct {
  const char* address;
  int kind;              /* 0: one big binary stream; 1: small lines; 2: many streams */
  uint64_t size;         /* bytes for kind 0; lines per client for kind 1 */
  int clients;
  int streams;           /* kind 2 */
  uint64_t payload;      /* bytes the clients wrote (handshakes excluded) */
} workload_t;

typedef struct {
  workload_t* w;
  int index;
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
  if (w->kind == 0) {
    static char block[65536];
    sb_stream_t* s;
    uint64_t left = w->size;
    memset(block, 'b', sizeof(block));
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
  } else if (w->kind == 1) {
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

typedef struct {
  workload_t* w;
  discard_t* d;
  uint64_t conns;
  double seconds;
  uint64_t received;
} run_t;

static void run_clients(void* arg) {
  run_t* r = arg;
  worker_t wk[64];
  uv_thread_t t[64];
  uint64_t start = uv_hrtime(), before;
  int i;
  uv_mutex_lock(&r->d->lock);
  before = r->d->conns_done;
  r->d->bytes = 0;
  uv_mutex_unlock(&r->d->lock);
  r->w->payload = 0;
  for (i = 0; i < r->w->clients; i++) {
    wk[i].w = r->w;
    wk[i].index = i;
    wk[i].written = 0;
    ASSERT_OK(uv_thread_create(&t[i], worker_main, &wk[i]));
  }
  for (i = 0; i < r->w->clients; i++) {
    ASSERT_OK(uv_thread_join(&t[i]));
    r->w->payload += wk[i].written;
  }
  r->received = discard_wait(r->d, before + r->conns);
  r->seconds = (double)(uv_hrtime() - start) / 1e9;
}

/* Peak resident memory of a process in KiB, from /proc (0 where there is none). */
static uint64_t peak_rss_kib(int pid) {
  char path[64], *text, *p;
  size_t len;
  uint64_t kib = 0;
  snprintf(path, sizeof(path), "/proc/%d/status", pid);
  text = sb_it_read_file(path, &len);
  if (text == NULL)
    return 0;
  if ((p = strstr(text, "VmHWM:")) != NULL)
    kib = strtoull(p + 6, NULL, 10);
  free(text);
  return kib;
}

int main(int argc, char** argv) {
  uv_loop_t loop;
  discard_t d;
  sb_it_daemon_t broker;
  double gib = 1.0;
  uint64_t lines = 250000;
  int clients = 4, streams = 250, i, k;
  char extra[512];
  struct {
    const char* label;
    int kind;
  } wl[] = {{"one binary stream", 0}, {"100-byte lines", 1}, {"many streams", 2}};

  for (i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--gib") == 0)
      gib = atof(argv[i + 1]);
    else if (strcmp(argv[i], "--lines") == 0)
      lines = strtoull(argv[i + 1], NULL, 10);
    else if (strcmp(argv[i], "--clients") == 0)
      clients = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--streams") == 0)
      streams = atoi(argv[i + 1]);
  }
  if (clients < 1 || clients > 64)
    clients = 4;
  ASSERT_OK(uv_loop_init(&loop));
  discard_start(&d);
  snprintf(extra, sizeof(extra), "\"log_level\": \"info\", \"max_streams\": 100000, "
           "\"max_streams_per_client\": 100000");
  sb_it_daemon_start(&broker, &loop, "bench", d.address, extra);
  printf("streambroker benchmark: client -> broker -> discard upstream vs client -> "
         "upstream (%d clients)\n", clients);
  printf("%-26s %14s %14s %8s %12s\n", "workload", "direct", "via broker", "ratio",
         "broker RSS");
  for (k = 0; k < 3; k++) {
    workload_t w;
    run_t direct, via;
    double dv, bv;
    const char* unit;
    memset(&w, 0, sizeof(w));
    w.kind = wl[k].kind;
    w.clients = wl[k].kind == 0 ? 1 : clients;
    w.size = wl[k].kind == 0 ? (uint64_t)(gib * 1073741824.0) : lines;
    w.streams = streams;
    for (i = 0; i < 2; i++) {
      run_t* r = i == 0 ? &direct : &via;
      memset(r, 0, sizeof(*r));
      r->w = &w;
      r->d = &d;
      r->conns = (uint64_t)w.clients * (w.kind == 2 ? (uint64_t)streams : 1);
      w.address = i == 0 ? d.address : broker.address;
      sb_it_run_thread(&loop, run_clients, r);
      if (r->received < w.payload)
        sb_test_fail(__FILE__, __LINE__, "%s: upstream got %llu bytes of %llu",
                     wl[k].label, (unsigned long long)r->received,
                     (unsigned long long)w.payload);
    }
    if (w.kind == 1) {
      dv = (double)(lines * (uint64_t)w.clients) / direct.seconds;
      bv = (double)(lines * (uint64_t)w.clients) / via.seconds;
      unit = "lines/s";
    } else {
      dv = (double)w.payload / direct.seconds / 1e6;
      bv = (double)w.payload / via.seconds / 1e6;
      unit = "MB/s";
    }
    printf("%-26s %9.0f %-4s %9.0f %-4s %7.2f %9.1f MiB\n", wl[k].label, dv,
           unit[0] == 'M' ? "MB/s" : "l/s", bv, unit[0] == 'M' ? "MB/s" : "l/s", bv / dv,
           (double)peak_rss_kib(broker.proc.pid) / 1024.0);
    if (w.kind == 0)
      printf("  (%.2f GiB in 64 KiB writes)\n", gib);
    if (w.kind == 1)
      printf("  (%d clients x %llu lines, one write each)\n", w.clients,
             (unsigned long long)lines);
    if (w.kind == 2)
      printf("  (%d clients x %d streams open at once, 64 x 256-byte lines each)\n",
             w.clients, streams);
  }
  sb_it_daemon_kill(&broker, SIGTERM);
  sb_it_daemon_wait_exit(&broker, 60000);
  sb_it_daemon_close(&broker);
  discard_stop(&d);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_OK(uv_loop_close(&loop));
  return sb_test_cleanup() == 0 ? 0 : 1; /* its directory and sockets */
}
