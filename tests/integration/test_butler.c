/*
 * test_butler.c - the broker in front of an upstream that treats names as the LUCI
 * butler does (sb_butler: each name once per process lifetime, closed namespaces
 * refused, connections cut on command, restarts that forget every name).
 *
 * The first test checks sb_butler itself against plain sbcat; the others put a
 * streambrokerd (B) in front of it and check that every stream arrives whole, under
 * names the butler accepts, tagged with the original name, and that a stream the
 * butler keeps refusing is given up without holding up the others.
 */
#include <stdlib.h>
#include <string.h>

#include "butler.h"
#include "helpers.h"
#include "platform.h"
#include "streams.h"
#include "task.h"

/* ---- deterministic contents: line k of a stream depends on its label only ---- */

static void content(const char* label, size_t len, sb__buf_t* out) {
  char line[256];
  uint64_t k = 0;
  out->len = 0;
  while (out->len < len) {
    int n = snprintf(line, sizeof(line), "%s line %06llu %.*s\n", label,
                     (unsigned long long)k, (int)(k % 53),
                     "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0");
    sb__buf_append(out, line, (size_t)n);
    k++;
  }
  out->len = len;
  ASSERT_OK(out->err);
}

static void sbcat_ok(uv_loop_t* loop, const char* address, const char* name,
                     const char* input) {
  sb_it_result_t res;
  sb_it_run_tool(loop, "sbcat", SB_IT_ARGS("--name", name, "--server", address), input,
                 strlen(input), &res);
  if (res.exit_status != 0)
    sb_test_fail(__FILE__, __LINE__, "sbcat --name %s: exit %d: %s", name,
                 (int)res.exit_status, res.err.data);
  sb_it_result_free(&res);
}

/* sbcat whose stream the butler refuses: its exit status depends on whether the close
 * reached it before it had written everything, so only the butler's word counts. */
static void sbcat_any(uv_loop_t* loop, const char* address, const char* name,
                      const char* input) {
  sb_it_result_t res;
  sb_it_run_tool(loop, "sbcat", SB_IT_ARGS("--name", name, "--server", address), input,
                 strlen(input), &res);
  sb_it_result_free(&res);
}

static const sb_it_bstream_t* find_stream(const sb_it_blist_t* l, const char* name,
                                          size_t nth) {
  size_t i;
  for (i = 0; i < l->n; i++)
    if (strcmp(l->s[i].name, name) == 0 && nth-- == 0)
      return &l->s[i];
  return NULL;
}

static void expect_stream(const sb_it_blist_t* l, const char* name, size_t nth,
                          const char* data, int complete) {
  const sb_it_bstream_t* s = find_stream(l, name, nth);
  if (s == NULL)
    sb_test_fail(__FILE__, __LINE__, "no stream %s (#%zu) arrived", name, nth + 1);
  ASSERT(s->ended);
  ASSERT_EQ(s->complete, complete);
  if (complete)
    ASSERT_MEM_EQ(s->data, s->len, data, strlen(data));
  else
    ASSERT(s->len >= strlen(data) && memcmp(s->data, data, strlen(data)) == 0);
}

/* Waits until the butler has stored at least len bytes of its first stream name. */
static void wait_stored(uv_loop_t* loop, const sb_it_butler_t* bt, const char* name,
                        size_t len) {
  int tries;
  for (tries = 0; tries < 300; tries++) {
    sb_it_blist_t l;
    const sb_it_bstream_t* s;
    size_t got;
    sb_it_butler_list(bt, &l);
    s = find_stream(&l, name, 0);
    got = s != NULL ? s->len : 0;
    sb_it_blist_free(&l);
    if (got >= len)
      return;
    sb_it_pause_ms(loop, 100);
  }
  sb_test_fail(__FILE__, __LINE__, "the butler did not store %zu bytes of %s", len, name);
}

/* Writes raw bytes to address on a connection of their own. */
static void send_raw(const char* address, const void* data, size_t len) {
  sb_os_handle_t h;
  int kind;
  const char* path;
  ASSERT_OK(sb__address_parse(address, &kind, &path));
  ASSERT_OK(sb__dial(kind, path, 5000, 0, &h));
  ASSERT_OK(sb__handle_write(h, data, len));
  sb__handle_close(h);
}

/* A segment for check_reassembly: data is NUL-terminated text. */
static sb_it_bstream_t segment(const char* name, const char* original, const char* type,
                               uint64_t offset, const char* data, size_t len) {
  sb_it_bstream_t s;
  memset(&s, 0, sizeof(s));
  s.name = (char*)name;
  s.original = (char*)original;
  s.type = (char*)type;
  s.offset = offset;
  s.has_offset = offset > 0;
  s.data = (char*)data;
  s.len = len;
  snprintf(s.file, sizeof(s.file), "%s", name);
  return s;
}

/* The reassembly the other tests rely on: segments laid at their offsets in any
 * order, overlaps checked, gaps refused; datagram streams by datagram index. */
static void check_reassembly(void) {
  sb_it_bstream_t s[4];
  sb_it_blist_t l = {s, 0};
  sb__buf_t out = {0};
  char why[256];
  int n;
  s[0] = segment("x:2", "x", "text", 4, "456789", 6);
  s[1] = segment("x", "x", "text", 0, "012345", 6);
  s[2] = segment("y", "y", "text", 0, "other", 5);
  l.n = 3;
  ASSERT_OK(sb_it_butler_reassemble(&l, "x", &out, &n, why, sizeof(why)));
  ASSERT_MEM_EQ(out.data, out.len, "0123456789", 10);
  ASSERT_EQ(n, 2);
  /* A gap: bytes 6 and 7 never arrived. */
  s[0] = segment("x:2", "x", "text", 8, "89", 2);
  ASSERT_EQ(sb_it_butler_reassemble(&l, "x", &out, &n, why, sizeof(why)), -1);
  ASSERT(strstr(why, "starts at byte 8") != NULL);
  /* An overlap that says otherwise. */
  s[0] = segment("x:2", "x", "text", 4, "4X6789", 6);
  ASSERT_EQ(sb_it_butler_reassemble(&l, "x", &out, &n, why, sizeof(why)), -1);
  ASSERT(strstr(why, "differs") != NULL);
  ASSERT_EQ(sb_it_butler_reassemble(&l, "z", &out, &n, why, sizeof(why)), -1);
  /* Datagrams "a", "bc", "" then, from index 1 on, "bc", "", "def" (the first
   * segment's last datagram cut short). */
  s[0] = segment("d", "d", "datagram", 0,
                 "\x01"
                 "a"
                 "\x02"
                 "bc"
                 "\x00"
                 "\x03"
                 "d",
                 9);
  s[1] = segment("d:2", "d", "datagram", 1,
                 "\x02"
                 "bc"
                 "\x00"
                 "\x03"
                 "def",
                 8);
  l.n = 2;
  ASSERT_OK(sb_it_butler_reassemble(&l, "d", &out, &n, why, sizeof(why)));
  ASSERT_MEM_EQ(out.data, out.len,
                "\x01"
                "a"
                "\x02"
                "bc"
                "\x00"
                "\x03"
                "def",
                10);
  s[1] = segment("d:2", "d", "datagram", 4,
                 "\x01"
                 "g",
                 2);
  ASSERT_EQ(sb_it_butler_reassemble(&l, "d", &out, &n, why, sizeof(why)), -1);
  sb__buf_free(&out);
}

/*
 * sb_butler itself, with no broker: a name is accepted once (a second "stdout" is
 * refused and nothing of it is kept), a closed namespace refuses the names under it
 * only, a cut ends a live stream as incomplete, a bad handshake is closed, a handshake
 * without a timestamp gets the butler's clock, and a restart forgets every name and
 * namespace while the streams' files stay apart.
 */
TEST_IMPL(butler_refuses_like_the_butler) {
  uv_loop_t loop;
  sb_it_butler_t bt;
  sb_it_blist_t l;
  sb_client_t* client;
  sb_stream_t* s;
  sb_stream_opts_t o;
  sb__props_t props;
  sb__buf_t raw = {0};
  int i, r = 0;
  check_reassembly();
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_butler_start(&bt, &loop, "bref");

  sbcat_ok(&loop, bt.address, "stdout", "first\n");
  sb_it_butler_wait(&bt, "ended stdout ", 1, 30000);
  sbcat_any(&loop, bt.address, "stdout", "second\n");
  sb_it_butler_wait(&bt, "refused stdout duplicate", 1, 30000);

  sb_it_butler_command(&bt, "close-ns ns/");
  sb_it_butler_wait(&bt, "closed-ns ns/", 1, 30000);
  sbcat_any(&loop, bt.address, "ns/a", "refused\n");
  sb_it_butler_wait(&bt, "refused ns/a namespace", 1, 30000);
  sbcat_ok(&loop, bt.address, "nsx/a", "not under ns/\n");
  sb_it_butler_wait(&bt, "ended nsx/a ", 1, 30000);

  /* A live stream cut: its connection closes, the butler goes on. */
  ASSERT_OK(sb_client_open(&client, bt.address));
  memset(&o, 0, sizeof(o));
  o.name = "live";
  ASSERT_OK(sb_stream_open(client, &o, &s));
  ASSERT_OK(sb_stream_write(s, "hello\n", 6));
  sb_it_butler_wait(&bt, "accepted live", 1, 30000);
  /* The handshake and "hello\n" may come in two reads: cut only once it has both. */
  wait_stored(&loop, &bt, "live", 6);
  sb_it_butler_command(&bt, "cut live");
  sb_it_butler_wait(&bt, "cut live", 1, 30000);
  /* The writer learns of it at a write (the first may still fit in a buffer). */
  for (i = 0; i < 1000 && (r = sb_stream_write(s, "more\n", 5)) == 0; i++)
    uv_sleep(5);
  ASSERT_ERR(r, SB_EPIPE);
  sb_stream_close(s);
  sb_client_close(client);

  /* A bad handshake is closed; one without a timestamp gets the butler's clock. */
  send_raw(bt.address, "NOT A HANDSHAKE", 15);
  sb_it_butler_wait(&bt, "bad-handshake SB_EMAGIC", 1, 30000);
  memset(&props, 0, sizeof(props));
  props.name = "no-timestamp";
  props.content_type = (char*)"text/plain; charset=utf-8";
  ASSERT_OK(sb__handshake_encode(&props, &raw));
  sb__buf_append(&raw, "abc", 3);
  ASSERT_OK(raw.err);
  send_raw(bt.address, raw.data, raw.len);
  sb__buf_free(&raw);
  sb_it_butler_wait(&bt, "ended no-timestamp 3", 1, 30000);

  sb_it_butler_list(&bt, &l);
  ASSERT_EQ(l.n, 4);
  expect_stream(&l, "stdout", 0, "first\n", 1);
  ASSERT_NULL(find_stream(&l, "stdout", 1));
  ASSERT_NULL(find_stream(&l, "ns/a", 0));
  expect_stream(&l, "nsx/a", 0, "not under ns/\n", 1);
  expect_stream(&l, "live", 0, "hello\n", 0);
  expect_stream(&l, "no-timestamp", 0, "abc", 1);
  ASSERT_STR_EQ(find_stream(&l, "stdout", 0)->type, "text");
  ASSERT_STR_EQ(find_stream(&l, "no-timestamp", 0)->original, "no-timestamp");
  ASSERT(strncmp(find_stream(&l, "no-timestamp", 0)->timestamp, "0001-", 5) != 0);
  ASSERT(strncmp(find_stream(&l, "no-timestamp", 0)->timestamp, "20", 2) == 0);
  sb_it_blist_free(&l);

  /* A new process has seen nothing. */
  sb_it_butler_restart(&bt);
  sbcat_ok(&loop, bt.address, "stdout", "third\n");
  sb_it_butler_wait(&bt, "ended stdout ", 2, 30000);
  sbcat_ok(&loop, bt.address, "ns/b", "namespace open again\n");
  sb_it_butler_wait(&bt, "ended ns/b ", 1, 30000);
  sbcat_any(&loop, bt.address, "stdout", "fourth\n");
  sb_it_butler_wait(&bt, "refused stdout duplicate", 2, 30000);
  ASSERT_EQ(sb_it_butler_count(&bt, "refused "), 3);

  sb_it_butler_list(&bt, &l);
  ASSERT_EQ(l.n, 6);
  expect_stream(&l, "stdout", 0, "first\n", 1);
  expect_stream(&l, "stdout", 1, "third\n", 1);
  expect_stream(&l, "ns/b", 0, "namespace open again\n", 1);
  ASSERT_STR_EQ(l.s[l.n - 1].name, "ns/b");
  sb_it_blist_free(&l);

  sb_it_butler_stop(&bt);
  sb_it_butler_close(&bt);
  ASSERT_OK(uv_loop_close(&loop));
}

/* ---- B in front of the butler ---- */

#define B_CONFIG "\"backoff_initial_ms\": 50, \"backoff_max_ms\": 500"

/* Stops B and removes what it left: its directory and (killed) its socket files. */
static void close_broker(sb_it_daemon_t* b) {
  sb_it_daemon_close(b);
  sb_it_remove_tree(b->dir);
  sb_it_remove_socket(b->address);
  sb_it_remove_socket(b->admin_address);
}

/* Asserts what every stream that arrived through B must be: renamed ones under
 * "ORIGINAL:N" and tagged with the original, every name accepted once. */
static void check_names(const sb_it_blist_t* l) {
  size_t i, j;
  for (i = 0; i < l->n; i++) {
    const sb_it_bstream_t* s = &l->s[i];
    const char* tag = sb_it_bstream_tag(s, "streambroker.name");
    size_t n = strlen(s->original);
    for (j = 0; j < i; j++)
      if (strcmp(l->s[j].name, s->name) == 0)
        sb_test_fail(__FILE__, __LINE__, "%s arrived twice (%s, %s)", s->name,
                     l->s[j].file, s->file);
    if (strcmp(s->name, s->original) == 0) {
      /* Untagged: then it is no rename of another stream that arrived. */
      const char* colon = strrchr(s->name, ':');
      for (j = 0; colon && j < l->n; j++)
        if (strlen(l->s[j].original) == (size_t)(colon - s->name) &&
            strncmp(l->s[j].original, s->name, (size_t)(colon - s->name)) == 0)
          sb_test_fail(__FILE__, __LINE__, "%s (%s) is a rename of %s without the tag",
                       s->name, s->file, l->s[j].original);
      continue;
    }
    if (tag == NULL || strncmp(s->name, tag, n) != 0 || s->name[n] != ':' ||
        atoi(s->name + n + 1) < 2)
      sb_test_fail(__FILE__, __LINE__, "%s (%s) is not ORIGINAL:N for its tag %s",
                   s->name, s->file, tag ? tag : "(none)");
  }
}

typedef struct {
  char address[256];
  size_t bytes; /* per stream */
  int err;
} twenty_t;

#define NCLIENTS 20

static void twenty_writer(void* arg) {
  twenty_t* t = arg;
  sb_client_t* clients[NCLIENTS];
  sb_stream_t* streams[NCLIENTS][2];
  sb__buf_t want[NCLIENTS][2];
  size_t off = 0;
  int i, j;
  memset(want, 0, sizeof(want));
  /* Every client opens its two streams before anyone writes: they are all open at
   * once, so B must name them apart itself. */
  for (i = 0; i < NCLIENTS; i++) {
    ASSERT_OK(sb_client_open(&clients[i], t->address));
    for (j = 0; j < 2; j++) {
      char label[64];
      sb_stream_opts_t o;
      memset(&o, 0, sizeof(o));
      o.name = j == 0 ? "stdout" : "stderr";
      ASSERT_OK(sb_stream_open(clients[i], &o, &streams[i][j]));
      snprintf(label, sizeof(label), "client %02d %s", i, o.name);
      content(label, t->bytes, &want[i][j]);
    }
  }
  while (off < t->bytes && t->err == 0) {
    size_t n = t->bytes - off < 16384 ? t->bytes - off : 16384;
    for (i = 0; i < NCLIENTS && t->err == 0; i++)
      for (j = 0; j < 2 && t->err == 0; j++)
        t->err = sb_stream_write(streams[i][j], want[i][j].data + off, n);
    off += n;
  }
  for (i = 0; i < NCLIENTS; i++) {
    for (j = 0; j < 2; j++) {
      if (sb_stream_close(streams[i][j]) != 0 && t->err == 0)
        t->err = SB_EIO;
      sb__buf_free(&want[i][j]);
    }
    sb_client_close(clients[i]);
  }
}

/*
 * Twenty clients each open "stdout" and "stderr" at once through B and write 1 MB to
 * each: all 40 streams arrive byte for byte, under 40 names, the first of each under
 * its own name and every other one as NAME:N tagged with its original name.
 */
TEST_IMPL(butler_twenty_clients_same_names) {
  uv_loop_t loop;
  sb_it_butler_t bt;
  sb_it_daemon_t b;
  sb_it_blist_t l;
  twenty_t t;
  sb__buf_t want = {0};
  int seen[NCLIENTS][2];
  size_t i;
  memset(&t, 0, sizeof(t));
  memset(seen, 0, sizeof(seen));
  t.bytes = 1024 * 1024;
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_butler_start(&bt, &loop, "btw");
  sb_it_daemon_start(&b, &loop, "btwb", bt.address, B_CONFIG);
  snprintf(t.address, sizeof(t.address), "%s", b.address);
  sb_it_run_thread(&loop, twenty_writer, &t);
  ASSERT_OK(t.err);
  sb_it_butler_wait(&bt, "ended ", 2 * NCLIENTS, 60000);

  sb_it_butler_list(&bt, &l);
  if (l.n != 2 * NCLIENTS) {
    sb_it_butler_dump(&bt);
    sb_it_daemon_dump(&b);
  }
  ASSERT_EQ(l.n, 2 * NCLIENTS);
  check_names(&l);
  /* B picked 40 free names itself: the butler had nothing to refuse. */
  ASSERT_EQ(sb_it_butler_count(&bt, "refused "), 0);
  ASSERT_NOT_NULL(find_stream(&l, "stdout", 0));
  ASSERT_NOT_NULL(find_stream(&l, "stderr", 0));
  for (i = 0; i < l.n; i++) {
    const sb_it_bstream_t* s = &l.s[i];
    int c = -1, j;
    char label[64];
    ASSERT(s->ended && s->complete);
    j = strcmp(s->original, "stdout") == 0 ? 0 : 1;
    ASSERT(j == 0 || strcmp(s->original, "stderr") == 0);
    /* Which client's it is: its first line says. */
    ASSERT(s->len > 12 && sscanf(s->data, "client %d", &c) == 1);
    ASSERT(c >= 0 && c < NCLIENTS);
    snprintf(label, sizeof(label), "client %02d %s", c, s->original);
    content(label, t.bytes, &want);
    if (s->len != want.len || memcmp(s->data, want.data, want.len) != 0)
      sb_test_fail(__FILE__, __LINE__, "%s (%s): %zu bytes, not the %zu of %s", s->name,
                   s->file, s->len, want.len, label);
    ASSERT(!s->has_offset || s->offset == 0);
    ASSERT_EQ(seen[c][j], 0);
    seen[c][j] = 1;
  }
  sb__buf_free(&want);
  sb_it_blist_free(&l);
  close_broker(&b);
  sb_it_butler_close(&bt);
  ASSERT_OK(uv_loop_close(&loop));
}

/* ---- a writer that goes on until told to stop ---- */

typedef struct {
  char address[256];
  const char* name;  /* a text stream */
  const char* dname; /* a datagram stream beside it, its handshake without timestamp */
  volatile int stop;
  size_t written;   /* bytes of the text stream */
  size_t datagrams; /* datagrams sent */
  int err;
} live_writer_t;

/* Datagram k of a stream: its own size (0 to a few hundred bytes), its own bytes. */
static size_t datagram(const char* name, size_t k, char* out, size_t size) {
  int n = snprintf(out, size, "%s datagram %06zu ", name, k);
  size_t len = (size_t)n + k * 37 % 301;
  size_t i;
  if (k % 17 == 0)
    return 0; /* empty ones are datagrams too */
  ASSERT_LE(len, size);
  for (i = (size_t)n; i < len; i++)
    out[i] = (char)('a' + (k + i) % 26);
  return len;
}

/* The first n datagrams as the wire carries them: each after its varint length. */
static void datagrams_framed(const char* name, size_t n, sb__buf_t* out) {
  char d[512];
  uint8_t hdr[SB_VARINT_MAX_LEN];
  size_t k;
  out->len = 0;
  for (k = 0; k < n; k++) {
    size_t len = datagram(name, k, d, sizeof(d));
    sb__buf_append(out, hdr, sb__varint_encode(len, hdr));
    sb__buf_append(out, d, len);
  }
  ASSERT_OK(out->err);
}

/* Dials address and sends a handshake for name without a timestamp, as a client of
 * another kind may: B must set one (the butler would otherwise use its own clock, a
 * different one for each segment). */
static int open_raw(const char* address, const char* name, int type,
                    sb_os_handle_t* h) {
  sb__props_t props;
  sb__buf_t hs = {0};
  int kind, r;
  const char* path;
  memset(&props, 0, sizeof(props));
  props.name = (char*)name;
  props.type = type;
  props.content_type = (char*)sb__props_default_content_type(type);
  if ((r = sb__address_parse(address, &kind, &path)) != 0 ||
      (r = sb__handshake_encode(&props, &hs)) != 0 || (r = hs.err) != 0 ||
      (r = sb__dial(kind, path, 5000, 0, h)) != 0) {
    sb__buf_free(&hs);
    return r;
  }
  r = sb__handle_write(*h, hs.data, hs.len);
  sb__buf_free(&hs);
  if (r != 0)
    sb__handle_close(*h);
  return r;
}

static void live_writer_run(void* arg) {
  live_writer_t* w = arg;
  sb_client_t* client;
  sb_stream_t* s;
  sb_os_handle_t ds;
  sb_stream_opts_t o;
  sb__buf_t text = {0};
  char d[512 + SB_VARINT_MAX_LEN];
  const size_t chunk = 16384, cap = 64u * 1024 * 1024;
  content(w->name, cap, &text);
  memset(&o, 0, sizeof(o));
  if ((w->err = sb_client_open(&client, w->address)) != 0)
    goto out;
  o.name = w->name;
  if ((w->err = sb_stream_open(client, &o, &s)) != 0)
    goto close_client;
  if ((w->err = open_raw(w->address, w->dname, SB_DATAGRAM, &ds)) != 0) {
    sb_stream_close(s);
    goto close_client;
  }
  /* About 1 MB/s (less under Wine): the test acts on how much arrived, and the
   * butler's events, not on time. */
  while (!w->stop && w->written + chunk <= cap) {
    uint8_t hdr[SB_VARINT_MAX_LEN];
    size_t len = datagram(w->dname, w->datagrams, d, 512);
    size_t hlen = sb__varint_encode(len, hdr);
    if ((w->err = sb_stream_write(s, text.data + w->written, chunk)) != 0)
      break;
    w->written += chunk;
    memmove(d + hlen, d, len);
    memcpy(d, hdr, hlen);
    if ((w->err = sb__handle_write(ds, d, hlen + len)) != 0)
      break;
    w->datagrams++;
    uv_sleep(sb_it_is_windows() ? 50 : 15);
  }
  if (sb_stream_close(s) != 0 && w->err == 0)
    w->err = SB_EIO;
  sb__handle_close(ds);
close_client:
  sb_client_close(client);
out:
  sb__buf_free(&text);
}

/* How much the butler's nth accepted segment of name (any of its names) holds. */
struct arrived {
  sb_it_butler_t* bt;
  const char* original;
  size_t nth;
  size_t want;
  uint64_t last_ms;
  size_t total; /* for until_whole: the whole stream */
};

static int segment_has(void* arg) {
  struct arrived* a = arg;
  sb_it_blist_t l;
  size_t i, k = 0;
  int r = 0;
  /* The directory is read at most every 50 ms, however busy the loop is. */
  if (uv_now(a->bt->loop) < a->last_ms + 50)
    return 0;
  a->last_ms = uv_now(a->bt->loop);
  sb_it_butler_list(a->bt, &l);
  for (i = 0; i < l.n; i++) {
    if (strcmp(l.s[i].original, a->original) != 0)
      continue;
    if (k++ == a->nth) {
      r = l.s[i].len >= a->want;
      break;
    }
  }
  sb_it_blist_free(&l);
  return r;
}

static void wait_segment(sb_it_butler_t* bt, const char* original, size_t nth,
                         size_t want) {
  struct arrived a;
  memset(&a, 0, sizeof(a));
  a.bt = bt;
  a.original = original;
  a.nth = nth;
  a.want = want;
  if (!sb_it_run_until(bt->loop, 30000, segment_has, &a)) {
    sb_it_butler_dump(bt);
    sb_test_fail(__FILE__, __LINE__, "segment %zu of %s never held %zu bytes", nth + 1,
                 original, want);
  }
}

/* The stream reassembles to total bytes and its last segment ended complete. */
static int whole(void* arg) {
  struct arrived* a = arg;
  sb_it_blist_t l;
  sb__buf_t got = {0};
  char why[512];
  size_t i;
  int r = 0, last_complete = 0;
  if (uv_now(a->bt->loop) < a->last_ms + 50)
    return 0;
  a->last_ms = uv_now(a->bt->loop);
  sb_it_butler_list(a->bt, &l);
  for (i = 0; i < l.n; i++)
    if (strcmp(l.s[i].original, a->original) == 0)
      last_complete = l.s[i].ended && l.s[i].complete;
  if (last_complete &&
      sb_it_butler_reassemble(&l, a->original, &got, NULL, why, sizeof(why)) == 0)
    r = got.len >= a->total;
  sb__buf_free(&got);
  sb_it_blist_free(&l);
  return r;
}

static void wait_whole(sb_it_butler_t* bt, const char* original, size_t total) {
  struct arrived a;
  memset(&a, 0, sizeof(a));
  a.bt = bt;
  a.original = original;
  a.total = total;
  if (!sb_it_run_until(bt->loop, 60000, whole, &a)) {
    sb_it_blist_t l;
    sb__buf_t got = {0};
    char why[512] = "";
    sb_it_butler_dump(bt);
    sb_it_butler_list(bt, &l);
    if (sb_it_butler_reassemble(&l, original, &got, NULL, why, sizeof(why)) == 0)
      snprintf(why, sizeof(why), "%zu bytes reassembled, the last segment %s", got.len,
               l.n > 0 && l.s[l.n - 1].complete ? "complete" : "not complete");
    sb_test_fail(__FILE__, __LINE__, "%s never arrived whole (%zu bytes): %s", original,
                 total, why);
  }
}

/* Reassembles original and checks it against what the writer wrote; every segment
 * carries the same timestamp. Returns the number of segments. */
static int check_whole(sb_it_butler_t* bt, const char* original,
                       const sb__buf_t* want) {
  sb_it_blist_t l;
  sb__buf_t got = {0};
  char why[512];
  const char* ts = NULL;
  int segments = 0;
  size_t i;
  sb_it_butler_list(bt, &l);
  check_names(&l);
  if (sb_it_butler_reassemble(&l, original, &got, &segments, why, sizeof(why)) != 0) {
    sb_it_butler_dump(bt);
    sb_test_fail(__FILE__, __LINE__, "%s", why);
  }
  if (got.len != want->len || memcmp(got.data, want->data, want->len) != 0) {
    size_t at = 0;
    while (at < got.len && at < want->len && got.data[at] == want->data[at])
      at++;
    sb_test_fail(__FILE__, __LINE__,
                 "%s: %zu bytes arrived, %zu were sent, first "
                 "difference at %zu",
                 original, got.len, want->len, at);
  }
  for (i = 0; i < l.n; i++) {
    if (strcmp(l.s[i].original, original) != 0)
      continue;
    if (ts == NULL)
      ts = l.s[i].timestamp;
    ASSERT(strncmp(l.s[i].timestamp, "0001-", 5) != 0);
    if (strcmp(ts, l.s[i].timestamp) != 0)
      sb_test_fail(__FILE__, __LINE__, "%s has timestamp %s, its first segment %s",
                   l.s[i].name, l.s[i].timestamp, ts);
    /* Every segment after the first says where it starts. */
    if (strcmp(l.s[i].name, original) != 0)
      ASSERT(l.s[i].has_offset);
  }
  sb__buf_free(&got);
  sb_it_blist_free(&l);
  return segments;
}

/*
 * A live stream's connection is cut by the butler while the client writes: B reopens
 * it under a new name (the butler would refuse the old one) and it arrives without a
 * gap; then the butler is killed and started again, and the stream goes on under yet
 * another name (B cannot know the butler forgot). Reassembled by its offset tags, the
 * stream is exactly what the client wrote. A datagram stream beside it goes through
 * the same, and is reassembled by datagram index.
 */
TEST_IMPL(butler_connection_cut) {
  uv_loop_t loop;
  sb_it_butler_t bt;
  sb_it_daemon_t b;
  live_writer_t w;
  sb_it_thread_t th;
  sb__buf_t want = {0};
  /* More than a second's worth from the writer (a quarter under Wine, as slow). */
  const size_t step = sb_it_is_windows() ? 384 * 1024 : 1536 * 1024;
  int segments;
  memset(&w, 0, sizeof(w));
  w.name = "cut/live";
  w.dname = "cut/dgram";
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_butler_start(&bt, &loop, "bcut");
  sb_it_daemon_start(&b, &loop, "bcutb", bt.address, B_CONFIG);
  snprintf(w.address, sizeof(w.address), "%s", b.address);
  sb_it_thread_start(&th, live_writer_run, &w);

  sb_it_butler_wait(&bt, "accepted cut/live", 1, 30000);
  sb_it_butler_wait(&bt, "accepted cut/dgram", 1, 30000);
  wait_segment(&bt, "cut/live", 0, step);
  sb_it_butler_command(&bt, "cut cut/live");
  sb_it_butler_command(&bt, "cut cut/dgram");
  sb_it_butler_wait(&bt, "cut cut/live", 1, 30000);
  sb_it_butler_wait(&bt, "cut cut/dgram", 1, 30000);
  sb_it_butler_wait(&bt, "accepted cut/live", 2, 30000);
  sb_it_butler_wait(&bt, "accepted cut/dgram", 2, 30000);
  wait_segment(&bt, "cut/live", 1, step);

  sb_it_butler_restart(&bt);
  sb_it_butler_wait(&bt, "accepted cut/live", 3, 30000);
  sb_it_butler_wait(&bt, "accepted cut/dgram", 3, 30000);
  wait_segment(&bt, "cut/live", 2, step / 2);

  w.stop = 1;
  sb_it_thread_join(&loop, &th, 60000);
  ASSERT_OK(w.err);
  content("cut/live", w.written, &want);
  wait_whole(&bt, "cut/live", want.len);
  segments = check_whole(&bt, "cut/live", &want);
  ASSERT_GE(segments, 3);
  datagrams_framed("cut/dgram", w.datagrams, &want);
  wait_whole(&bt, "cut/dgram", want.len);
  segments = check_whole(&bt, "cut/dgram", &want);
  ASSERT_GE(segments, 3);
  ASSERT_EQ(sb_it_butler_count(&bt, "refused "), 0);
  sb__buf_free(&want);

  close_broker(&b);
  sb_it_butler_close(&bt);
  ASSERT_OK(uv_loop_close(&loop));
}

/* ---- a namespace closed under open streams ---- */

typedef struct {
  char address[256];
  volatile int go;   /* set once the butler refused a closed/ stream */
  volatile int stop; /* set once both closed/ streams were given up */
  size_t flow_bytes;
  int err;
} ns_writer_t;

/*
 * closed/a is an application's stream that goes on logging a line now and then until
 * it is closed on it; closed/b writes its data and ends at once. open/flow starts once
 * the butler refused a closed/ stream, and is written to its end meanwhile.
 */
static void ns_writer_run(void* arg) {
  ns_writer_t* w = arg;
  sb_client_t* client;
  sb_stream_t *a, *b, *flow;
  sb_stream_opts_t o;
  sb__buf_t text = {0};
  size_t off = 0;
  int a_open = 1, flow_open = 0;
  uint64_t k = 0;
  memset(&o, 0, sizeof(o));
  ASSERT_OK(sb_client_open(&client, w->address));
  o.name = "closed/a";
  ASSERT_OK(sb_stream_open(client, &o, &a));
  o.name = "closed/b";
  ASSERT_OK(sb_stream_open(client, &o, &b));
  /* What B accepts of these stays in its spool, and B closes them once given up: the
   * results of their writes are not the test's concern. */
  content("closed/b", 65536, &text);
  sb_stream_write(b, text.data, text.len);
  sb_stream_close(b);
  content("open/flow", w->flow_bytes, &text);
  while (!w->stop) {
    char line[64];
    int n =
        snprintf(line, sizeof(line), "closed/a line %llu\n", (unsigned long long)k++);
    if (a_open && sb_stream_write(a, line, (size_t)n) != 0)
      a_open = 0;
    if (w->go && !flow_open) {
      o.name = "open/flow";
      if ((w->err = sb_stream_open(client, &o, &flow)) != 0)
        break;
      flow_open = 1;
    }
    if (flow_open && off < text.len) {
      size_t n2 = text.len - off < 16384 ? text.len - off : 16384;
      if ((w->err = sb_stream_write(flow, text.data + off, n2)) != 0)
        break;
      off += n2;
      if (off == text.len && (w->err = sb_stream_close(flow)) != 0)
        break;
    }
    uv_sleep(off < text.len && w->go ? 1 : 20);
  }
  sb_stream_close(a);
  sb_client_close(client);
  sb__buf_free(&text);
}

#define MAX_REFUSALS 4

/* Every refusal was of a name not refused before: B moved on to a new one each time. */
static void refusals_distinct(const sb_it_butler_t* bt) {
  const char* ev = bt->events.data;
  size_t i;
  for (i = 0; i + 8 < bt->events.len; i++) {
    char needle[512];
    const char* sp;
    if ((i > 0 && ev[i - 1] != '\n') || strncmp(ev + i, "refused ", 8) != 0)
      continue;
    sp = memchr(ev + i + 8, ' ', bt->events.len - i - 8);
    ASSERT_NOT_NULL(sp);
    ASSERT_LT((size_t)(sp - ev - i), sizeof(needle) - 2);
    /* "refused NAME " at a line's start: the line before is in the needle too. */
    snprintf(needle, sizeof(needle), "\n%.*s", (int)(sp - ev - i + 1), ev + i);
    if (sb_it_count(ev, bt->events.len, needle) != 1) {
      sb_it_butler_dump(bt);
      sb_test_fail(__FILE__, __LINE__, "%s was refused more than once", needle + 9);
    }
  }
}

/*
 * The butler closes the namespace closed/ before two streams under it are opened
 * through B: B reopens each under new names with backoff until it has been refused
 * MAX_REFUSALS times in a row, then gives it up: counted (sbctl status), listed
 * (sbctl streams, "given-up"), and not tried again before its retry timer (a minute).
 * Meanwhile another stream, opened after the first refusal, is delivered completely
 * before the refusals end.
 */
TEST_IMPL(butler_closed_namespace) {
  uv_loop_t loop;
  sb_it_butler_t bt;
  sb_it_daemon_t b;
  ns_writer_t w;
  sb_it_thread_t th;
  sb_it_result_t res;
  char cfg[256], needle[64];
  const char* given_up = "\"upstream\":\"given-up\"";
  int tries;
  memset(&w, 0, sizeof(w));
  w.flow_bytes = 1024 * 1024;
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_butler_start(&bt, &loop, "bns");
  sb_it_butler_command(&bt, "close-ns closed/");
  sb_it_butler_wait(&bt, "closed-ns closed/", 1, 30000);
  /* Refusals back off 0, 500, 1000 ms...: seconds in which the other stream flows. */
  snprintf(cfg, sizeof(cfg),
           "\"upstream_max_refusals\": %d, \"backoff_initial_ms\": 500, "
           "\"backoff_max_ms\": 4000",
           MAX_REFUSALS);
  sb_it_daemon_start(&b, &loop, "bnsb", bt.address, cfg);
  snprintf(w.address, sizeof(w.address), "%s", b.address);
  sb_it_thread_start(&th, ns_writer_run, &w);

  sb_it_butler_wait(&bt, "refused closed/a", 1, 30000);
  sb_it_butler_wait(&bt, "refused closed/b", 1, 30000);
  w.go = 1;
  sb_it_butler_wait(&bt, "ended open/flow ", 1, 60000);
  ASSERT_OK(w.err);

  /* Given up: counted and listed. */
  snprintf(needle, sizeof(needle), "\"streams_given_up\":2");
  for (tries = 0;; tries++) {
    int ok;
    sb_it_run_tool(&loop, "sbctl",
                   SB_IT_ARGS("--admin", b.admin_address, "--json", "status"), NULL, 0,
                   &res);
    ASSERT_EQ(res.exit_status, 0);
    ok = sb_it_contains(res.out.data, res.out.len, needle);
    if (ok || tries == 300) {
      if (!ok) {
        fprintf(stderr, "sbctl status: %s\n", res.out.data);
        sb_it_butler_dump(&bt);
        sb_it_daemon_dump(&b);
      }
      ASSERT(ok);
      sb_it_result_free(&res);
      break;
    }
    sb_it_result_free(&res);
    uv_sleep(100);
  }
  w.stop = 1;
  sb_it_thread_join(&loop, &th, 60000);
  ASSERT_OK(w.err);
  sb_it_run_tool(&loop, "sbctl",
                 SB_IT_ARGS("--admin", b.admin_address, "--json", "streams"), NULL, 0,
                 &res);
  ASSERT_EQ(res.exit_status, 0);
  if (sb_it_count(res.out.data, res.out.len, given_up) != 2)
    fprintf(stderr, "sbctl streams: %s\n", res.out.data);
  ASSERT_EQ(sb_it_count(res.out.data, res.out.len, given_up), 2);
  sb_it_result_free(&res);

  /* Refused exactly so often, each time under a new name; the other stream flowed
   * meanwhile: it ended before the last refusal. */
  ASSERT_EQ(sb_it_butler_count(&bt, "refused closed/a"), MAX_REFUSALS);
  ASSERT_EQ(sb_it_butler_count(&bt, "refused closed/b"), MAX_REFUSALS);
  ASSERT_EQ(sb_it_butler_count(&bt, "refused "), 2 * MAX_REFUSALS);
  ASSERT_EQ(sb_it_count(bt.events.data, bt.events.len, " duplicate\n"), 0);
  ASSERT_EQ(sb_it_butler_count(&bt, "accepted closed/"), 0);
  ASSERT_LT(sb_it_butler_find(&bt, "ended open/flow ", 1),
            sb_it_butler_find(&bt, "refused closed/a", 0));
  ASSERT_LT(sb_it_butler_find(&bt, "ended open/flow ", 1),
            sb_it_butler_find(&bt, "refused closed/b", 0));
  {
    sb__buf_t want = {0};
    content("open/flow", w.flow_bytes, &want);
    ASSERT_EQ(check_whole(&bt, "open/flow", &want), 1);
    sb__buf_free(&want);
  }
  refusals_distinct(&bt);
  {
    sb_it_blist_t l;
    sb_it_butler_list(&bt, &l);
    ASSERT_EQ(l.n, 1);
    sb_it_blist_free(&l);
  }
  close_broker(&b);
  sb_it_butler_close(&bt);
  ASSERT_OK(uv_loop_close(&loop));
}

/* ---- an upstream that dies at a stream's end ---- */

/* Sends n datagrams of name (datagram()) through address, and closes the stream. */
static void send_datagrams(const char* address, const char* name, size_t n) {
  sb_client_t* client;
  sb_stream_t* s;
  sb_stream_opts_t o;
  char d[512];
  size_t k;
  memset(&o, 0, sizeof(o));
  o.name = name;
  o.type = SB_DATAGRAM;
  ASSERT_OK(sb_client_open(&client, address));
  ASSERT_OK(sb_stream_open(client, &o, &s));
  for (k = 0; k < n; k++)
    ASSERT_OK(sb_stream_send_datagram(s, d, datagram(name, k, d, sizeof(d))));
  ASSERT_OK(sb_stream_close(s));
  sb_client_close(client);
}

/*
 * One stream through B (durability from b_json) to a butler that reads all of it
 * without storing it and exits at its end, as an upstream killed at that moment:
 * B must not count the stream delivered, but resend it, tagged, to the butler started
 * again; and say so in its log and its counters.
 */
static void end_lost_round(uv_loop_t* loop, const char* tag, const char* b_json,
                           const char* name, int dgram) {
  sb_it_butler_t bt;
  sb_it_daemon_t b;
  sb__buf_t want = {0};
  char line[300], closed[300];
  cJSON* st;
  sb_it_butler_start(&bt, loop, tag);
  snprintf(line, sizeof(line), "%s-b", tag);
  sb_it_daemon_start(&b, loop, line, bt.address, b_json);
  snprintf(line, sizeof(line), "hold-and-die %s", name);
  sb_it_butler_command(&bt, line);
  snprintf(line, sizeof(line), "holding %s", name);
  sb_it_butler_wait(&bt, line, 1, 30000);
  if (dgram) {
    send_datagrams(b.address, name, 3000);
    datagrams_framed(name, 3000, &want);
  } else {
    ASSERT_OK(sb_it_write_stream(b.address, name, 300000));
    sb_it_content(name, 300000, &want);
  }
  snprintf(line, sizeof(line), "dying %s %zu", name, want.len);
  sb_it_butler_wait(&bt, line, 1, 60000);
  /* Gone with what it read: B resends once the butler is back. */
  sb_it_butler_restart(&bt);
  sb_it_daemon_wait_log(&b, "exited before confirming it stored the stream's end", 1,
                        60000);
  snprintf(closed, sizeof(closed), "\"%s\" closed: ", name);
  sb_it_daemon_wait_log(&b, closed, 1, 60000);
  sb_it_daemon_wait_log(&b, "after an end the upstream did not store", 1, 10);
  wait_whole(&bt, name, want.len);
  ASSERT_EQ(check_whole(&bt, name, &want), 2);
  st = sb_it_admin(loop, &b, "status");
  ASSERT_EQ(sb_it_json_num(st, "counters.upstream_end_resends"), 1);
  /* All of it was sent twice: the window covers the whole stream. */
  ASSERT_EQ(sb_it_json_num(st, "counters.bytes_resent"), want.len);
  cJSON_Delete(st);
  sb__buf_free(&want);
  close_broker(&b);
  sb_it_butler_close(&bt);
}

/*
 * The upstream reads a stream to its end and dies before storing it (Linux: its
 * socket closes with the process, a FIN like a deliberate close; Windows: the flush
 * returned and the pipe was still held). B tells the death from a close by the
 * upstream's process, recorded at the dial, and resends the stream: a live text
 * stream, and a spooled datagram stream.
 */
TEST_IMPL(butler_dies_at_stream_end) {
  uv_loop_t loop;
  ASSERT_OK(uv_loop_init(&loop));
  end_lost_round(&loop, "bdie1", B_CONFIG, "end/live", 0);
  end_lost_round(&loop, "bdie2", B_CONFIG ", \"durability\": \"spool\"", "end/dgram",
                 1);
  ASSERT_OK(uv_loop_close(&loop));
}

/* ---- an upstream that breaks mid-stream, and given-up streams tried again ---- */

#define NBREAK 4
#define BREAK_BYTES (1024 * 1024)

typedef struct {
  char address[256];
  int results[NBREAK];
} break_writer_t;

static void break_writer_run(void* arg) {
  break_writer_t* w = arg;
  size_t i;
  for (i = 0; i < NBREAK; i++) {
    char name[32];
    snprintf(name, sizeof(name), "break/%zu", i);
    w->results[i] = sb_it_write_stream(w->address, name, BREAK_BYTES);
  }
}

/*
 * The butler takes each of the next 5 streams, reads 200 KB of it and closes the
 * connection, within a second of the dial: B must see breaks (the upstream read part
 * of the stream), not refusals, so that with upstream_max_refusals 2 nothing is given
 * up, and each stream goes on from its window under the next name until the butler
 * heals: all delivered whole, with no restart.
 */
TEST_IMPL(butler_reads_part_then_closes) {
  uv_loop_t loop;
  sb_it_butler_t bt;
  sb_it_daemon_t b;
  break_writer_t w;
  sb__buf_t want = {0};
  cJSON* st;
  size_t i;
  memset(&w, 0, sizeof(w));
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_butler_start(&bt, &loop, "bbrk");
  sb_it_butler_command(&bt, "read-close 204800 5");
  sb_it_butler_wait(&bt, "read-close 204800 5", 1, 30000);
  sb_it_daemon_start(&b, &loop, "bbrkb", bt.address,
                     B_CONFIG ", \"upstream_max_refusals\": 2");
  snprintf(w.address, sizeof(w.address), "%s", b.address);
  sb_it_run_thread(&loop, break_writer_run, &w);
  sb_it_butler_wait(&bt, "read-closed ", 5, 60000);
  for (i = 0; i < NBREAK; i++) {
    char name[32];
    snprintf(name, sizeof(name), "break/%zu", i);
    sb_it_content(name, BREAK_BYTES, &want);
    wait_whole(&bt, name, want.len);
    check_whole(&bt, name, &want);
    ASSERT_OK(w.results[i]);
  }
  ASSERT_EQ(sb_it_butler_count(&bt, "refused "), 0);
  st = sb_it_admin(&loop, &b, "status");
  if (sb_it_json_num(st, "counters.streams_given_up") != 0)
    sb_it_daemon_dump(&b);
  ASSERT_EQ(sb_it_json_num(st, "counters.streams_given_up"), 0);
  ASSERT_EQ(sb_it_json_num(st, "counters.upstream_refusals"), 0);
  ASSERT_GE(sb_it_json_num(st, "counters.upstream_errors"), 5);
  cJSON_Delete(st);
  sb__buf_free(&want);
  close_broker(&b);
  sb_it_butler_close(&bt);
  ASSERT_OK(uv_loop_close(&loop));
}

typedef struct {
  char address[256];
  const char* name;
} gone_writer_t;

static void gone_writer_run(void* arg) {
  gone_writer_t* w = arg;
  /* Given up, its client is closed on it: the write's result is not the point. */
  (void)sb_it_write_stream(w->address, w->name, 65536);
}

/* Writes name (64 KiB) through B while its namespace is closed, and waits until B
 * gave it up (the nth time), its log saying what it keeps. */
static void give_up(uv_loop_t* loop, sb_it_daemon_t* b, const char* name, size_t nth) {
  gone_writer_t w;
  memset(&w, 0, sizeof(w));
  snprintf(w.address, sizeof(w.address), "%s", b->address);
  w.name = name;
  sb_it_run_thread(loop, gone_writer_run, &w);
  sb_it_daemon_wait_log(b, "keeps 65536 bytes in the spool (bytes 0 to 65536", nth,
                        60000);
}

/*
 * A stream given up (its namespace closed) stays in B, and is delivered once the
 * namespace opens again: at sbctl retry, with no restart of B; and (Linux, where B
 * watches the socket's directory) when the butler starts again.
 */
TEST_IMPL(butler_given_up_retried) {
  uv_loop_t loop;
  sb_it_butler_t bt;
  sb_it_daemon_t b;
  sb_it_result_t res;
  sb__buf_t want = {0};
  cJSON* st;
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_butler_start(&bt, &loop, "bgur");
  sb_it_butler_command(&bt, "close-ns gone/");
  sb_it_butler_wait(&bt, "closed-ns gone/", 1, 30000);
  sb_it_daemon_start(&b, &loop, "bgurb", bt.address,
                     B_CONFIG ", \"upstream_max_refusals\": 2");
  give_up(&loop, &b, "gone/a", 1);
  ASSERT_EQ(sb_it_butler_count(&bt, "refused gone/a"), 2);

  sb_it_butler_command(&bt, "open-ns gone/");
  sb_it_butler_wait(&bt, "opened-ns gone/", 1, 30000);
  sb_it_run_tool(&loop, "sbctl",
                 SB_IT_ARGS("--admin", b.admin_address, "retry", "gone/a"), NULL, 0,
                 &res);
  if (res.exit_status != 0 || !sb_it_contains(res.out.data, res.out.len, "1 given-up"))
    fprintf(stderr, "sbctl retry: %d: %s%s\n", (int)res.exit_status, res.out.data,
            res.err.data);
  ASSERT_EQ(res.exit_status, 0);
  ASSERT(sb_it_contains(res.out.data, res.out.len, "1 given-up streams tried again"));
  sb_it_result_free(&res);
  sb_it_content("gone/a", 65536, &want);
  wait_whole(&bt, "gone/a", want.len);
  check_whole(&bt, "gone/a", &want);

  if (!sb_it_is_windows()) {
    /* Given up again, then the butler starts again (it forgot every name). */
    sb_it_butler_command(&bt, "close-ns gone/");
    sb_it_butler_wait(&bt, "closed-ns gone/", 2, 30000);
    give_up(&loop, &b, "gone/b", 2);
    sb_it_butler_restart(&bt);
    sb_it_content("gone/b", 65536, &want);
    wait_whole(&bt, "gone/b", want.len);
    check_whole(&bt, "gone/b", &want);
  }
  st = sb_it_admin(&loop, &b, "status");
  ASSERT_EQ(sb_it_json_num(st, "counters.streams_given_up"),
            sb_it_is_windows() ? 1 : 2);
  cJSON_Delete(st);
  sb__buf_free(&want);
  close_broker(&b);
  sb_it_butler_close(&bt);
  ASSERT_OK(uv_loop_close(&loop));
}

/* ---- the service restarts, the butler does not ---- */

/*
 * B is stopped and started again three times under the same butler, and each run
 * sends a new stream "stdout": each goes under a name the butler has not seen (B
 * remembers the names it sent in its spool), so the butler refuses none, and each
 * arrives whole, tagged with its original name.
 */
TEST_IMPL(butler_service_restarts) {
  uv_loop_t loop;
  sb_it_butler_t bt;
  sb_it_daemon_t b;
  sb_it_blist_t l;
  sb__buf_t want = {0};
  int run;
  size_t i;
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_butler_start(&bt, &loop, "bsrs");
  sb_it_daemon_start(&b, &loop, "bsrsb", bt.address, B_CONFIG);
  for (run = 0; run < 4; run++) {
    if (run > 0) {
      sb_it_daemon_kill(&b, SIGTERM);
      sb_it_daemon_wait_exit(&b, 60000);
      sb_it_daemon_restart(&b);
    }
    ASSERT_OK(sb_it_write_stream(b.address, "stdout", 100000));
    sb_it_butler_wait(&bt, "ended ", (size_t)run + 1, 60000);
  }
  if (sb_it_butler_count(&bt, "refused ") != 0) {
    sb_it_butler_dump(&bt);
    sb_it_daemon_dump(&b);
  }
  ASSERT_EQ(sb_it_butler_count(&bt, "refused "), 0);
  sb_it_butler_list(&bt, &l);
  ASSERT_EQ(l.n, 4);
  check_names(&l);
  sb_it_content("stdout", 100000, &want);
  for (i = 0; i < l.n; i++) {
    ASSERT_STR_EQ(l.s[i].original, "stdout");
    ASSERT(l.s[i].ended && l.s[i].complete);
    ASSERT_MEM_EQ(l.s[i].data, l.s[i].len, want.data, want.len);
  }
  sb_it_blist_free(&l);
  sb__buf_free(&want);
  close_broker(&b);
  sb_it_butler_close(&bt);
  ASSERT_OK(uv_loop_close(&loop));
}

/* ---- sbctl archive: one stream of many of a name, put back together by its id ---- */

/* sbctl archive ls, once no stream in it is still open. */
static void archive_ls_settled(uv_loop_t* loop, const char* dir, sb_it_result_t* res) {
  int tries;
  for (tries = 0;; tries++) {
    sb_it_run_tool(loop, "sbctl", SB_IT_ARGS("archive", "ls", "--dir", dir), NULL, 0,
                   res);
    ASSERT_EQ(res->exit_status, 0);
    if (!sb_it_contains(res->out.data, res->out.len, " open ") || tries == 600)
      return;
    sb_it_result_free(res);
    sb_it_pause_ms(loop, 100);
  }
}

/*
 * Twenty clients each write "stdout" (and "stderr") through B to U, an archive-mode
 * streambrokerd killed twice meanwhile: U's archive holds forty streams' segments under
 * names B picked. sbctl archive ls lists each client stream by its id
 * (streambroker.stream), and sbctl archive cat ID prints each one whole, exactly what
 * its client wrote; sbctl archive cat stdout refuses to guess which.
 */
TEST_IMPL(butler_archive_cat_twenty_ids) {
  uv_loop_t loop;
  sb_it_daemon_t up, b;
  twenty_t t;
  sb_it_thread_t th;
  sb_it_result_t res, cat;
  sb__buf_t want = {0};
  int seen[NCLIENTS], kill, nstdout = 0, multi = 0, c;
  const char* line;
  memset(&t, 0, sizeof(t));
  memset(seen, 0, sizeof(seen));
  t.bytes = sb_it_is_windows() ? 256 * 1024 : 1024 * 1024;
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start(&up, &loop, "acu", NULL, "\"upstream_high_watermark\": 65536");
  sb_it_daemon_start(&b, &loop, "acb", up.address, B_CONFIG);
  snprintf(t.address, sizeof(t.address), "%s", b.address);
  sb_it_thread_start(&th, twenty_writer, &t);
  for (kill = 0; kill < 2; kill++) {
    sb_it_pause_ms(&loop, 300);
    sb_it_daemon_kill(&up, SIGKILL);
    sb_it_daemon_wait_exit(&up, 30000);
    sb_it_pause_ms(&loop, 150);
    sb_it_daemon_restart(&up);
  }
  sb_it_thread_join(&loop, &th, 240000);
  ASSERT_OK(t.err);
  sb_it_daemon_wait_log(&b, "closed: ", 2 * NCLIENTS, 240000);
  archive_ls_settled(&loop, up.archive_dir, &res);

  /* Each line: ID TYPE SIZE SEGS STATE NAME. */
  for (line = res.out.data; line != NULL && *line != '\0'; line = strchr(line, '\n')) {
    char id[64], type[16], state[16], name[64];
    unsigned long long size;
    int segs;
    if (*line == '\n')
      line++;
    if (sscanf(line, "%63s %15s %llu %d %15s %63s", id, type, &size, &segs, state,
               name) != 6 ||
        strcmp(name, "stdout") != 0)
      continue;
    nstdout++;
    ASSERT_EQ(strlen(id), 32);
    /* "incomplete": a killed U can leave the file of a stream's last bytes unclosed
     * (it had read them all, and the broker was done with it): the bytes decide. */
    if (strcmp(state, "complete") != 0 && strcmp(state, "incomplete") != 0)
      sb_test_fail(__FILE__, __LINE__, "stream %s is %s", id, state);
    ASSERT_EQ(size, t.bytes);
    multi += segs > 1;
    sb_it_run_tool(&loop, "sbctl",
                   SB_IT_ARGS("archive", "cat", id, "--dir", up.archive_dir), NULL, 0,
                   &cat);
    if (cat.exit_status != 0)
      fprintf(stderr, "sbctl archive cat %s: %s\n", id, cat.err.data);
    ASSERT_EQ(cat.exit_status, 0);
    c = -1;
    ASSERT(cat.out.len > 12 && sscanf(cat.out.data, "client %d", &c) == 1);
    ASSERT(c >= 0 && c < NCLIENTS);
    ASSERT_EQ(seen[c], 0);
    seen[c] = 1;
    {
      char label[64];
      snprintf(label, sizeof(label), "client %02d stdout", c);
      content(label, t.bytes, &want);
    }
    ASSERT_MEM_EQ(cat.out.data, cat.out.len, want.data, want.len);
    sb_it_result_free(&cat);
  }
  if (nstdout != NCLIENTS || multi == 0)
    fprintf(stderr, "sbctl archive ls:\n%.*s\n", (int)res.out.len,
            res.out.len ? res.out.data : "");
  ASSERT_EQ(nstdout, NCLIENTS);
  /* The kills cut some streams into several segments. */
  ASSERT_GT(multi, 0);
  sb_it_result_free(&res);
  sb_it_run_tool(&loop, "sbctl",
                 SB_IT_ARGS("archive", "cat", "stdout", "--dir", up.archive_dir), NULL,
                 0, &cat);
  ASSERT_EQ(cat.exit_status, 1);
  ASSERT(sb_it_contains(cat.err.data, cat.err.len, "20 streams"));
  sb_it_result_free(&cat);
  sb__buf_free(&want);
  close_broker(&b);
  close_broker(&up);
  ASSERT_OK(uv_loop_close(&loop));
}

/* A datagram stream, through B to U, read back with sbctl archive cat: one datagram a
 * line as hex, and with --raw as the wire carried them. */
TEST_IMPL(butler_archive_cat_datagrams) {
  uv_loop_t loop;
  sb_it_daemon_t up, b;
  sb_it_result_t res;
  sb__buf_t want = {0}, hex = {0};
  char d[512];
  size_t k, n;
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start(&up, &loop, "acdu", NULL, NULL);
  sb_it_daemon_start(&b, &loop, "acdb", up.address, B_CONFIG);
  send_datagrams(b.address, "dg/cat", 2000);
  sb_it_daemon_wait_log(&b, "\"dg/cat\" closed: ", 1, 60000);
  archive_ls_settled(&loop, up.archive_dir, &res);
  sb_it_result_free(&res);
  for (k = 0; k < 2000; k++) {
    n = datagram("dg/cat", k, d, sizeof(d));
    size_t i;
    for (i = 0; i < n; i++) {
      char h[3];
      snprintf(h, sizeof(h), "%02x", (unsigned char)d[i]);
      sb__buf_append(&hex, h, 2);
    }
    sb__buf_putc(&hex, '\n');
  }
  sb_it_run_tool(&loop, "sbctl",
                 SB_IT_ARGS("archive", "cat", "dg/cat", "--dir", up.archive_dir), NULL,
                 0, &res);
  ASSERT_EQ(res.exit_status, 0);
  ASSERT_MEM_EQ(res.out.data, res.out.len, hex.data, hex.len);
  sb_it_result_free(&res);
  datagrams_framed("dg/cat", 2000, &want);
  sb_it_run_tool(
      &loop, "sbctl",
      SB_IT_ARGS("archive", "cat", "dg/cat", "--raw", "--dir", up.archive_dir), NULL, 0,
      &res);
  ASSERT_EQ(res.exit_status, 0);
  ASSERT_MEM_EQ(res.out.data, res.out.len, want.data, want.len);
  sb_it_result_free(&res);
  sb__buf_free(&want);
  sb__buf_free(&hex);
  close_broker(&b);
  close_broker(&up);
  ASSERT_OK(uv_loop_close(&loop));
}
