/*
 * sb_butler - a test upstream that treats stream names as the LUCI LogDog butler does.
 * A test program, not part of the product.
 *
 *   sb_butler --listen ADDRESS --out DIR
 *
 * ADDRESS is unix:PATH or net.pipe:NAME. Each connection's handshake is read with the
 * project's codec (the Go server's rules) and nothing past it is used until the stream
 * is accepted; a bad handshake closes the connection. A stream name is accepted once
 * per process lifetime: a name seen before, or one under a closed namespace, is refused
 * by closing the connection right after the handshake, its data unread, as the butler
 * does ("duplicate registration").
 *
 * An accepted stream's bytes (datagram framing included) go to DIR/<k>.data, and its
 * properties to DIR/<k>.json: {"name", "type", "timestamp", "tags", "bytes",
 * "complete", "ended"}, written when it is accepted (ended false) and again when it
 * ends. k is "<start>-<n>": start counts the processes run on DIR (DIR/starts), n the
 * streams this process accepted, both zero-padded, so names sort in acceptance order
 * across restarts. A handshake without a timestamp gets this process's clock, as the
 * butler fills in its own.
 *
 * Commands on stdin, one a line: "close-ns PREFIX/" (refuse new streams under it),
 * "cut NAME" (close the live connection of stream NAME now, data unread),
 * "read-close BYTES COUNT" (each of the next COUNT streams accepted stops reading
 * once BYTES of its data were read and stored, and is closed 100 ms later, as by an
 * upstream that breaks mid-stream),
 * "open-ns PREFIX/" (undoes close-ns),
 * "pace MS" (after each read of an accepted stream's data the whole process sleeps MS
 * milliseconds, as an upstream whose disk is slow: its socket buffers fill; 0 ends
 * it; a restarted process is not paced),
 * "hold-and-die NAME" (the next stream accepted as NAME is read but not stored, as
 * by an upstream that has not written it yet, and at its end of input the process
 * exits at once, as one killed at that moment would, with its connections open),
 * "quit".
 * End of stdin is a quit too, so a test that dies takes this process with it.
 * Events on stdout, one a line, flushed: "ready", "accepted NAME",
 * "refused NAME duplicate", "refused NAME namespace", "ended NAME BYTES", "cut NAME",
 * "read-closed NAME BYTES", "read-close BYTES COUNT", "opened-ns PREFIX/", "pace MS",
 * "holding NAME" (the command took effect), "dying NAME BYTES" (held bytes, lost),
 * "bad-handshake ERROR", "closed-ns PREFIX/" (the command took effect), and
 * "error TEXT" for a command it cannot carry out.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "protocol.h"

typedef struct conn_s {
  uv_pipe_t pipe;
  struct conn_s* next;
  sb__handshake_t hs;
  sb__props_t props;
  int accepted;
  int closing;
  FILE* data;
  char base[1024]; /* DIR/<k> without the extension */
  uint64_t bytes;
  int hold; /* hold-and-die: read, not stored; the process exits at the end */
  uint64_t close_after; /* read-close: closed once this many bytes were read (0: no) */
  int close_due;        /* read-close: read all it will, closed at the reaper's turn */
} conn_t;

static uv_loop_t* loop;
static uv_pipe_t server;
static uv_async_t commands;
static uv_mutex_t cmd_mutex;
static sb__buf_t cmd_queue; /* lines read by the stdin thread, not yet handled */
static conn_t* conns;
static const char* out_dir;
static unsigned start_no;
static unsigned accepted_count;
static char** seen; /* every name accepted so far */
static size_t nseen, cap_seen;
static char** closed_ns;
static size_t nclosed_ns;
static char* hold_name; /* hold-and-die's NAME, until a stream of it is accepted */
static uint64_t read_close_bytes; /* read-close BYTES */
static unsigned read_close_left;  /* read-close COUNT, less the streams it closed */
static unsigned pace_ms;          /* pace MS */
static uv_timer_t reaper;         /* closes the read-close connections that are due */

static void die(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "sb_butler: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(1);
}

/* Events go to the test that reads them line by line: each one flushed at once. */
static void event(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  putchar('\n');
  fflush(stdout);
}

static char* dup_str(const char* s) {
  size_t n = strlen(s) + 1;
  char* d = malloc(n);
  if (d == NULL)
    die("out of memory");
  memcpy(d, s, n);
  return d;
}

static int name_seen(const char* name) {
  size_t i;
  for (i = 0; i < nseen; i++)
    if (strcmp(seen[i], name) == 0)
      return 1;
  return 0;
}

static void remember(const char* name) {
  if (nseen == cap_seen) {
    cap_seen = cap_seen ? cap_seen * 2 : 64;
    seen = realloc(seen, cap_seen * sizeof(*seen));
    if (seen == NULL)
      die("out of memory");
  }
  seen[nseen++] = dup_str(name);
}

static int under_closed_ns(const char* name) {
  size_t i;
  for (i = 0; i < nclosed_ns; i++)
    if (strncmp(name, closed_ns[i], strlen(closed_ns[i])) == 0)
      return 1;
  return 0;
}

static const char* type_name(int type) {
  return type == SB_BINARY ? "binary" : type == SB_DATAGRAM ? "datagram" : "text";
}

static void put(sb__buf_t* b, const char* s) {
  sb__buf_append(b, s, strlen(s));
}

/* Writes (or rewrites) DIR/<k>.json: a temporary file renamed over it, so a reader
 * never sees half of one. */
static void write_props(conn_t* c, int ended, int complete) {
  sb__buf_t b = {0};
  char ts[SB__TIME_BUF], num[32], path[1100], tmp[1100];
  size_t i;
  FILE* f;
  uv_fs_t req;
  int r;
  put(&b, "{\"name\":");
  sb__json_write_string(&b, c->props.name, strlen(c->props.name));
  put(&b, ",\"type\":\"");
  put(&b, type_name(c->props.type));
  put(&b, "\",\"timestamp\":\"");
  if (sb__time_format(c->props.timestamp, ts) < 0)
    snprintf(ts, sizeof(ts), "invalid");
  put(&b, ts);
  put(&b, "\",\"tags\":{");
  for (i = 0; i < c->props.tag_count; i++) {
    if (i > 0)
      sb__buf_putc(&b, ',');
    sb__json_write_string(&b, c->props.tags[i].key, strlen(c->props.tags[i].key));
    sb__buf_putc(&b, ':');
    sb__json_write_string(&b, c->props.tags[i].value, strlen(c->props.tags[i].value));
  }
  snprintf(num, sizeof(num), "%llu", (unsigned long long)c->bytes);
  put(&b, "},\"bytes\":");
  put(&b, num);
  put(&b, ",\"complete\":");
  put(&b, complete ? "true" : "false");
  put(&b, ",\"ended\":");
  put(&b, ended ? "true" : "false");
  put(&b, "}\n");
  if (b.err)
    die("out of memory");
  snprintf(path, sizeof(path), "%s.json", c->base);
  snprintf(tmp, sizeof(tmp), "%s.json.tmp", c->base);
  f = fopen(tmp, "wb");
  if (f == NULL || fwrite(b.data, 1, b.len, f) != b.len || fclose(f) != 0)
    die("write %s: %s", tmp, strerror(errno));
  /* uv_fs_rename replaces an existing file on Windows too, but not while a test has
   * it open for reading: that is tried again for a while. */
  for (i = 0;; i++) {
    r = uv_fs_rename(NULL, &req, tmp, path, NULL);
    uv_fs_req_cleanup(&req);
    if (r == 0)
      break;
    if (i == 200)
      die("rename %s: %s", tmp, uv_strerror(r));
    uv_sleep(10);
  }
  sb__buf_free(&b);
}

static void on_closed(uv_handle_t* h) {
  conn_t* c = h->data;
  conn_t** p;
  for (p = &conns; *p; p = &(*p)->next) {
    if (*p == c) {
      *p = c->next;
      break;
    }
  }
  sb__handshake_destroy(&c->hs);
  sb__props_free(&c->props);
  free(c);
}

/* Ends a connection; an accepted stream's files are finished first. how: "ended"
 * (end of input: complete), "broken" (a read error), "cut" (by command). */
static void conn_end(conn_t* c, const char* how) {
  if (c->closing)
    return;
  c->closing = 1;
  if (c->accepted) {
    if (fclose(c->data) != 0)
      die("close %s.data: %s", c->base, strerror(errno));
    c->data = NULL;
    write_props(c, 1, strcmp(how, "ended") == 0);
    if (strcmp(how, "cut") == 0)
      event("cut %s", c->props.name);
    else if (strcmp(how, "read-closed") == 0)
      event("read-closed %s %llu", c->props.name, (unsigned long long)c->bytes);
    else
      event("ended %s %llu", c->props.name, (unsigned long long)c->bytes);
  }
  uv_close((uv_handle_t*)&c->pipe, on_closed);
}

static void on_reaper(uv_timer_t* t) {
  conn_t* c;
  (void)t;
  for (c = conns; c; c = c->next)
    if (c->close_due && !c->closing)
      conn_end(c, "read-closed");
}

static void store(conn_t* c, const char* data, size_t len) {
  int cut = 0;
  if (len == 0)
    return;
  if (c->close_after > 0 && c->bytes + len >= c->close_after) {
    len = (size_t)(c->close_after - c->bytes);
    cut = 1;
  }
  if (c->hold) {
    c->bytes += len;
    return;
  }
  /* Flushed at once: a killed process leaves on disk all it had read. */
  if (len > 0 && (fwrite(data, 1, len, c->data) != len || fflush(c->data) != 0))
    die("write %s.data: %s", c->base, strerror(errno));
  c->bytes += len;
  if (cut) {
    uv_read_stop((uv_stream_t*)&c->pipe);
    c->close_due = 1;
    uv_timer_start(&reaper, on_reaper, 100, 0);
  }
}

/* The handshake is complete: accept the stream or refuse it, as the butler would. */
static int decide(conn_t* c) {
  const char* name = c->props.name;
  char path[1100];
  if (under_closed_ns(name)) {
    event("refused %s namespace", name);
    return 0;
  }
  if (name_seen(name)) {
    event("refused %s duplicate", name);
    return 0;
  }
  remember(name);
  if (read_close_left > 0) {
    read_close_left--;
    c->close_after = read_close_bytes;
  }
  if (hold_name != NULL && strcmp(hold_name, name) == 0) {
    c->hold = 1;
    free(hold_name);
    hold_name = NULL;
  }
  if (!c->props.has_timestamp) {
    c->props.timestamp = sb__time_now();
    c->props.has_timestamp = 1;
  }
  snprintf(c->base, sizeof(c->base), "%s/%04u-%06u", out_dir, start_no,
           ++accepted_count);
  snprintf(path, sizeof(path), "%s.data", c->base);
  c->data = fopen(path, "wb");
  if (c->data == NULL)
    die("open %s: %s", path, strerror(errno));
  c->accepted = 1;
  write_props(c, 0, 0);
  event("accepted %s", name);
  return 1;
}

static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf) {
  static char slab[65536];
  (void)h;
  (void)suggested;
  buf->base = slab;
  buf->len = sizeof(slab);
}

static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  conn_t* c = s->data;
  if (c->closing)
    return;
  if (n < 0) {
    if (c->hold && n == UV_EOF) {
      event("dying %s %llu", c->props.name, (unsigned long long)c->bytes);
      _Exit(3);
    }
    if (!c->accepted && n == UV_EOF)
      event("bad-handshake %s", sb_err_name(sb__handshake_eof(&c->hs)));
    conn_end(c, n == UV_EOF ? "ended" : "broken");
    return;
  }
  if (n == 0)
    return;
  if (!c->accepted) {
    size_t used = 0;
    int r = sb__handshake_feed(&c->hs, (const uint8_t*)buf->base, (size_t)n, &used,
                               &c->props);
    if (r == 0)
      return;
    if (r < 0) {
      event("bad-handshake %s", sb_err_name(r));
      conn_end(c, "bad");
      return;
    }
    if (!decide(c)) {
      /* Refused: closed with whatever followed the handshake unread. */
      conn_end(c, "refused");
      return;
    }
    store(c, buf->base + used, (size_t)n - used);
    return;
  }
  store(c, buf->base, (size_t)n);
  if (pace_ms > 0)
    uv_sleep(pace_ms);
}

static void on_connection(uv_stream_t* srv, int status) {
  conn_t* c;
  if (status != 0) {
    fprintf(stderr, "sb_butler: accept: %s\n", uv_strerror(status));
    return;
  }
  c = calloc(1, sizeof(*c));
  if (c == NULL)
    die("out of memory");
  if (uv_pipe_init(loop, &c->pipe, 0) != 0)
    die("uv_pipe_init");
  c->pipe.data = c;
  c->next = conns;
  conns = c;
  sb__handshake_init(&c->hs, 0);
  if (uv_accept(srv, (uv_stream_t*)&c->pipe) != 0 ||
      uv_read_start((uv_stream_t*)&c->pipe, on_alloc, on_read) != 0) {
    c->closing = 1;
    uv_close((uv_handle_t*)&c->pipe, on_closed);
  }
}

static void quit(void) {
  conn_t* c;
  for (c = conns; c; c = c->next)
    conn_end(c, "broken");
  if (!uv_is_closing((uv_handle_t*)&server))
    uv_close((uv_handle_t*)&server, NULL);
  if (!uv_is_closing((uv_handle_t*)&reaper))
    uv_close((uv_handle_t*)&reaper, NULL);
  uv_close((uv_handle_t*)&commands, NULL);
}

static void command(const char* line) {
  if (strncmp(line, "close-ns ", 9) == 0 && line[9] != '\0') {
    closed_ns = realloc(closed_ns, (nclosed_ns + 1) * sizeof(*closed_ns));
    if (closed_ns == NULL)
      die("out of memory");
    closed_ns[nclosed_ns++] = dup_str(line + 9);
    event("closed-ns %s", line + 9);
  } else if (strncmp(line, "open-ns ", 8) == 0 && line[8] != '\0') {
    size_t i;
    for (i = 0; i < nclosed_ns; i++) {
      if (strcmp(closed_ns[i], line + 8) == 0) {
        free(closed_ns[i]);
        closed_ns[i] = closed_ns[--nclosed_ns];
        break;
      }
    }
    event("opened-ns %s", line + 8);
  } else if (strncmp(line, "read-close ", 11) == 0) {
    unsigned long long bytes = 0;
    unsigned count = 0;
    if (sscanf(line + 11, "%llu %u", &bytes, &count) != 2 || bytes == 0) {
      event("error bad read-close %s", line + 11);
    } else {
      read_close_bytes = bytes;
      read_close_left = count;
      event("read-close %llu %u", bytes, count);
    }
  } else if (strncmp(line, "cut ", 4) == 0) {
    conn_t* c;
    int found = 0;
    for (c = conns; c; c = c->next) {
      if (c->accepted && !c->closing && strcmp(c->props.name, line + 4) == 0) {
        conn_end(c, "cut");
        found = 1;
        break;
      }
    }
    if (!found)
      event("error no live stream %s", line + 4);
  } else if (strncmp(line, "hold-and-die ", 13) == 0 && line[13] != '\0') {
    free(hold_name);
    hold_name = dup_str(line + 13);
    event("holding %s", line + 13);
  } else if (strncmp(line, "pace ", 5) == 0) {
    pace_ms = (unsigned)strtoul(line + 5, NULL, 10);
    event("pace %u", pace_ms);
  } else if (strcmp(line, "quit") == 0) {
    quit();
  } else {
    event("error unknown command %s", line);
  }
}

static void on_commands(uv_async_t* a) {
  sb__buf_t q;
  size_t start = 0, i;
  (void)a;
  uv_mutex_lock(&cmd_mutex);
  q = cmd_queue;
  memset(&cmd_queue, 0, sizeof(cmd_queue));
  uv_mutex_unlock(&cmd_mutex);
  for (i = 0; i < q.len; i++) {
    if (q.data[i] != '\n')
      continue;
    q.data[i] = '\0';
    if (i > start && q.data[i - 1] == '\r')
      q.data[i - 1] = '\0';
    if (uv_is_closing((uv_handle_t*)&commands))
      break;
    command(q.data + start);
    start = i + 1;
  }
  sb__buf_free(&q);
}

/* Standard input is read on a thread of its own with plain stdio, which works the same
 * for every kind of handle a parent may give (pipes under Windows too); the lines reach
 * the loop through an async handle. */
static void stdin_thread(void* arg) {
  char line[8192];
  (void)arg;
  while (fgets(line, sizeof(line), stdin) != NULL) {
    size_t n = strlen(line);
    int last = strcmp(line, "quit\n") == 0 || strcmp(line, "quit\r\n") == 0;
    uv_mutex_lock(&cmd_mutex);
    sb__buf_append(&cmd_queue, line, n);
    if (n > 0 && line[n - 1] != '\n')
      sb__buf_putc(&cmd_queue, '\n');
    uv_mutex_unlock(&cmd_mutex);
    uv_async_send(&commands);
    if (last)
      return;
  }
  uv_mutex_lock(&cmd_mutex);
  sb__buf_append(&cmd_queue, "quit\n", 5);
  uv_mutex_unlock(&cmd_mutex);
  uv_async_send(&commands);
}

/* The start number: one more than the last process's on this directory. */
static unsigned next_start(void) {
  char path[1100];
  unsigned n = 0;
  FILE* f;
  snprintf(path, sizeof(path), "%s/starts", out_dir);
  f = fopen(path, "rb");
  if (f != NULL) {
    if (fscanf(f, "%u", &n) != 1)
      n = 0;
    fclose(f);
  }
  n++;
  f = fopen(path, "wb");
  if (f == NULL || fprintf(f, "%u\n", n) < 0 || fclose(f) != 0)
    die("write %s: %s", path, strerror(errno));
  return n;
}

int main(int argc, char** argv) {
  const char* address = NULL;
  const char* path;
  char bind_path[1024];
  int kind, i, r;
  uv_thread_t tid;
  for (i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--listen") == 0)
      address = argv[i + 1];
    else if (strcmp(argv[i], "--out") == 0)
      out_dir = argv[i + 1];
    else
      break;
  }
  if (i != argc || address == NULL || out_dir == NULL) {
    fprintf(stderr, "usage: sb_butler --listen ADDRESS --out DIR\n");
    return 2;
  }
  if (sb__address_parse(address, &kind, &path) != 0)
    die("bad address %s", address);
  if (kind == SB__ADDR_PIPE) {
    snprintf(bind_path, sizeof(bind_path), "\\\\.\\pipe\\%s", path);
  } else {
    uv_fs_t req;
    snprintf(bind_path, sizeof(bind_path), "%s", path);
    /* A killed predecessor leaves its socket file behind. */
    uv_fs_unlink(NULL, &req, bind_path, NULL);
    uv_fs_req_cleanup(&req);
  }
  start_no = next_start();
  loop = uv_default_loop();
  if (uv_mutex_init(&cmd_mutex) != 0 ||
      uv_async_init(loop, &commands, on_commands) != 0)
    die("init");
  if (uv_pipe_init(loop, &server, 0) != 0 || uv_timer_init(loop, &reaper) != 0)
    die("uv_pipe_init");
  /* Many clients dial at once (one connection per stream): enough pipe instances on
   * Windows that none of them sees the pipe busy. */
  uv_pipe_pending_instances(&server, 64);
  if ((r = uv_pipe_bind(&server, bind_path)) != 0)
    die("bind %s: %s", bind_path, uv_strerror(r));
  if ((r = uv_listen((uv_stream_t*)&server, 511, on_connection)) != 0)
    die("listen %s: %s", bind_path, uv_strerror(r));
  if (uv_thread_create(&tid, stdin_thread, NULL) != 0)
    die("thread");
  event("ready");
  uv_run(loop, UV_RUN_DEFAULT);
  /* The stdin thread may still be blocked in a read: the process ends without it. */
  fflush(stdout);
  return 0;
}
