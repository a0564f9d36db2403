/*
 * bench_spool.c - how fast the SQLite spool (spool.c) takes data in and gives it back,
 * beside the disk's raw sequential write rate, in one run.
 *
 *   1. raw: N MiB in 1 MiB writes, then fdatasync (what `dd conv=fdatasync` shows);
 *   2. write: APPEND jobs submitted from the loop thread over 8 streams with at most
 *      32 MiB in flight, timed from the first submit to the last done callback; first
 *      128 KiB chunks, then 100-byte lines, one per chunk (the broker's worst case);
 *   3. drain: each stream read back with READ jobs of 256 KiB, acknowledged and
 *      trimmed as it is read (ACK), then forgotten (FORGET), as an upstream does.
 * Writes and drains run with synchronous NORMAL, then FULL, each in a fresh spool.
 * Prints MB/s and chunks/s (lines/s), the ratio to raw, and whether the targets are
 * met: large chunks at >= 50% of raw and >= 200,000 lines/s, both with NORMAL. A
 * missed target is reported, never a failure; only errors exit non-zero.
 *
 *   bench_spool [--mib N] [--lines N] [--dir DIR]
 *
 * Everything happens in a fresh directory under DIR (default: $TMPDIR or /tmp),
 * removed at the end (left behind for inspection when the run fails).
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define NSTREAMS 8
#define WINDOW (32u << 20) /* APPEND bytes in flight, as the broker bounds them */
#define LARGE (128u << 10) /* a full client read (SB__READ_SIZE) */
#define LINE 100u
#define READ_LIMIT (256u << 10) /* what upstream.c asks for */
#define SRC_SIZE (1u << 20)

typedef struct bench_s bench_t;

typedef struct {
  bench_t* b;
  int64_t sid;
  uint64_t end; /* bytes appended */
  uint64_t seq; /* of the next APPEND */
  uint64_t off; /* drain: bytes read back */
} stream_t;

struct bench_s {
  uv_loop_t* loop;
  sb__spool_t* sp;
  stream_t st[NSTREAMS];
  char* src;          /* SRC_SIZE bytes of text that chunks are cut from */
  uint64_t chunk;     /* chunk size */
  uint64_t total;     /* bytes to write */
  uint64_t submitted; /* bytes submitted */
  uint64_t inflight;  /* APPEND bytes whose done has not run */
  uint64_t pending;   /* jobs whose done has not run */
  uint64_t chunks;    /* appended, then read back */
  uint64_t got;       /* bytes read back */
  int next;           /* stream of the next chunk */
};

typedef struct {
  double write_s, drain_s;
  uint64_t bytes, chunks, commits;
} result_t;

static char* g_root; /* the working directory, named when a run fails */

static _Noreturn void fail(const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(SB_PRINTF_FORMAT, 1, 2)))
#endif
    ;

static void fail(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("bench_spool: ", stderr);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  if (g_root != NULL)
    fprintf(stderr, "bench_spool: files left in %s\n", g_root);
  exit(1);
}

static double seconds_since(uint64_t t0) {
  return (double)(uv_hrtime() - t0) / 1e9;
}

static double per_s(uint64_t n, double s) {
  return (double)n / s;
}

/* Removes a directory and everything in it. Entries of unknown type are tried as
 * files first, then as directories. */
static void rm_tree(const char* path) {
  uv_fs_t req, u;
  uv_dirent_t ent;
  if (uv_fs_scandir(NULL, &req, path, 0, NULL) >= 0) {
    while (uv_fs_scandir_next(&req, &ent) != UV_EOF) {
      char* p = sb__path_join(path, ent.name);
      int r = ent.type == UV_DIRENT_DIR ? -1 : uv_fs_unlink(NULL, &u, p, NULL);
      if (ent.type != UV_DIRENT_DIR)
        uv_fs_req_cleanup(&u);
      if (r < 0)
        rm_tree(p);
      free(p);
    }
  }
  uv_fs_req_cleanup(&req);
  uv_fs_rmdir(NULL, &u, path, NULL);
  uv_fs_req_cleanup(&u);
}

/* ---- 1. the raw baseline ---- */

/* MB/s of mib MiB written in 1 MiB writes and made durable with fdatasync (which is
 * FlushFileBuffers in libuv on Windows, so the baseline means the same there). */
static double raw_write(const char* root, uint64_t mib, char* src) {
  char* path = sb__path_join(root, "raw.bin");
  uv_fs_t req;
  uint64_t t0, i;
  double s;
  int r, fd = uv_fs_open(NULL, &req, path,
                         UV_FS_O_WRONLY | UV_FS_O_CREAT | UV_FS_O_TRUNC, 0600, NULL);
  uv_fs_req_cleanup(&req);
  if (fd < 0)
    fail("%s: %s", path, uv_strerror(fd));
  t0 = uv_hrtime();
  for (i = 0; i < mib; i++) {
    size_t done = 0;
    while (done < SRC_SIZE) {
      uv_buf_t buf = uv_buf_init(src + done, (unsigned)(SRC_SIZE - done));
      r = uv_fs_write(NULL, &req, fd, &buf, 1, -1, NULL);
      uv_fs_req_cleanup(&req);
      if (r <= 0)
        fail("%s: write: %s", path, r < 0 ? uv_strerror(r) : "wrote nothing");
      done += (size_t)r;
    }
  }
  r = uv_fs_fdatasync(NULL, &req, fd, NULL);
  uv_fs_req_cleanup(&req);
  if (r != 0)
    fail("%s: fdatasync: %s", path, uv_strerror(r));
  s = seconds_since(t0);
  uv_fs_close(NULL, &req, fd, NULL);
  uv_fs_req_cleanup(&req);
  /* The spool runs that follow get the disk space back. */
  uv_fs_unlink(NULL, &req, path, NULL);
  uv_fs_req_cleanup(&req);
  free(path);
  return (double)(mib * SRC_SIZE) / s / 1e6;
}

/* ---- 2. and 3. the spool ---- */

static sb__spool_job_t* job_new(stream_t* s, sb__spool_op_t op,
                                void (*done)(sb__spool_job_t* job)) {
  sb__spool_job_t* j = calloc(1, sizeof(*j));
  if (j == NULL)
    fail("out of memory");
  j->op = op;
  j->sid = s->sid;
  j->done = done;
  j->data = s;
  s->b->pending++;
  return j;
}

static void job_check(sb__spool_job_t* j) {
  if (j->status != 0)
    fail("spool job %d of stream %lld: %s", (int)j->op, (long long)j->sid,
         sb_strerror(j->status));
}

/* OPEN, ACK and FORGET. */
static void on_done(sb__spool_job_t* j) {
  stream_t* s = j->data;
  job_check(j);
  s->b->pending--;
  free(j->props);
  free(j);
}

static void on_appended(sb__spool_job_t* j) {
  stream_t* s = j->data;
  job_check(j);
  s->b->inflight -= j->chunk->len;
  s->b->pending--;
  sb__chunk_free(j->chunk); /* the job's reference */
  free(j);
}

/* Submits chunks round-robin over the streams until the window is full. Called after
 * each turn of the loop rather than from each done callback, so the jobs freed by one
 * commit go back to the worker together and make its next batch. */
static void fill(bench_t* b) {
  while (b->inflight < WINDOW && b->submitted < b->total) {
    stream_t* s = &b->st[b->next];
    uint64_t len =
        b->total - b->submitted < b->chunk ? b->total - b->submitted : b->chunk;
    /* Chunk k is cut at a multiple of the chunk size, so lines stay whole lines. */
    uint64_t at = b->chunks % (SRC_SIZE / b->chunk) * b->chunk;
    sb__chunk_t* c = sb__chunk_new(b->src + at, (size_t)len);
    sb__spool_job_t* j = job_new(s, SB__SPOOL_APPEND, on_appended);
    c->off = s->end;
    c->mark = (int64_t)s->end; /* text: a resend may start at any byte */
    j->seq = s->seq++;
    j->chunk = c;
    s->end += len;
    b->submitted += len;
    b->inflight += len;
    b->chunks++;
    b->next = (b->next + 1) % NSTREAMS;
    sb__spool_submit(b->sp, j);
  }
}

static void on_read(sb__spool_job_t* j);

/* The stream's next READ, or its FORGET once everything was read. */
static void read_next(stream_t* s) {
  sb__spool_job_t* j;
  if (s->off >= s->end) {
    sb__spool_submit(s->b->sp, job_new(s, SB__SPOOL_FORGET, on_done));
    return;
  }
  j = job_new(s, SB__SPOOL_READ, on_read);
  j->off = s->off;
  j->limit = READ_LIMIT;
  sb__spool_submit(s->b->sp, j);
}

static void on_read(sb__spool_job_t* j) {
  stream_t* s = j->data;
  bench_t* b = s->b;
  sb__chunk_t *c, *next;
  sb__spool_job_t* ack;
  if (j->chunk == NULL)
    fail("stream %lld: nothing to read at %llu of %llu bytes", (long long)s->sid,
         (unsigned long long)s->off, (unsigned long long)s->end);
  for (c = j->chunk; c != NULL; c = next) {
    next = c->next;
    if (c->off != s->off)
      fail("stream %lld: chunk at %llu where %llu was expected", (long long)s->sid,
           (unsigned long long)c->off, (unsigned long long)s->off);
    s->off += c->len;
    b->got += c->len;
    b->chunks++;
    sb__chunk_free(c);
  }
  b->pending--;
  free(j);
  /* The bytes "went upstream": the cursor moves and they are trimmed, in the same
   * batch as the next READ. */
  ack = job_new(s, SB__SPOOL_ACK, on_done);
  ack->off = s->off;
  ack->trim = s->off;
  sb__spool_submit(b->sp, ack);
  read_next(s);
}

static void wait_jobs(bench_t* b) {
  /* The spool's uv_async_t keeps the loop alive: each turn waits for a batch. */
  while (b->pending > 0)
    uv_run(b->loop, UV_RUN_ONCE);
}

/* One spool, in its own directory: open NSTREAMS streams, write total bytes in chunks
 * of chunk bytes, drain them, close. */
static void run_spool(uv_loop_t* loop, const char* root, const char* name, int sync,
                      uint64_t chunk, uint64_t total, char* src, result_t* r) {
  static const char props_fmt[] =
      "{\"name\":\"bench/s%d\",\"contentType\":"
      "\"text/plain\",\"timestamp\":\"0001-01-01T00:00:00Z\"}";
  bench_t b;
  sb__config_t cfg;
  sb__spool_resume_t* resume;
  sb__spool_stats_t stats;
  size_t nresume;
  uint64_t t0;
  int i, e;
  memset(&b, 0, sizeof(b));
  b.loop = loop;
  b.src = src;
  b.chunk = chunk;
  b.total = total;
  sb__config_defaults(&cfg);
  free(cfg.data_dir);
  cfg.data_dir = sb__path_join(root, name);
  cfg.synchronous = sync;
  /* Room for it all: the cap must never be what is measured. */
  cfg.spool_max_bytes = 4 * total + (64u << 20);
  if ((e = sb__spool_open(&b.sp, loop, &cfg, &resume, &nresume)) != 0)
    fail("%s: cannot open the spool: %s", cfg.data_dir, sb_strerror(e));
  sb__spool_resume_free(resume, nresume);
  for (i = 0; i < NSTREAMS; i++) {
    stream_t* s = &b.st[i];
    sb__spool_job_t* j;
    char json[160];
    sb__props_t props;
    s->b = &b;
    s->sid = sb__spool_new_sid(b.sp);
    snprintf(json, sizeof(json), props_fmt, i);
    /* The spool stores what it is given; check it is a handshake the broker would
     * have accepted. */
    memset(&props, 0, sizeof(props));
    if ((e = sb__props_decode_json(json, strlen(json), &props)) != 0)
      fail("%s: %s", json, sb_strerror(e));
    sb__props_free(&props);
    j = job_new(s, SB__SPOOL_OPEN, on_done);
    j->type = SB_TEXT;
    j->props = sb__xstrdup(json);
    sb__spool_submit(b.sp, j);
  }
  wait_jobs(&b);

  sb__spool_stats(b.sp, &stats);
  r->commits = stats.commits; /* the opens' */
  t0 = uv_hrtime();
  fill(&b);
  while (b.pending > 0) {
    uv_run(loop, UV_RUN_ONCE);
    fill(&b);
  }
  r->write_s = seconds_since(t0);
  r->bytes = total;
  r->chunks = b.chunks;
  sb__spool_stats(b.sp, &stats);
  r->commits = stats.commits - r->commits;
  if (stats.bytes != total || stats.chunks != b.chunks)
    fail("%s: the spool holds %llu bytes in %llu chunks, not %llu in %llu", name,
         (unsigned long long)stats.bytes, (unsigned long long)stats.chunks,
         (unsigned long long)total, (unsigned long long)b.chunks);

  b.chunks = 0;
  t0 = uv_hrtime();
  for (i = 0; i < NSTREAMS; i++)
    read_next(&b.st[i]);
  wait_jobs(&b);
  r->drain_s = seconds_since(t0);
  sb__spool_stats(b.sp, &stats);
  if (b.got != total || b.chunks != r->chunks || stats.bytes != 0 || stats.chunks != 0)
    fail("%s: read back %llu bytes in %llu chunks of %llu in %llu; %llu bytes left",
         name, (unsigned long long)b.got, (unsigned long long)b.chunks,
         (unsigned long long)total, (unsigned long long)r->chunks,
         (unsigned long long)stats.bytes);

  sb__spool_close(b.sp);
  uv_run(loop, UV_RUN_DEFAULT); /* closes its uv_async_t, which frees it */
  rm_tree(cfg.data_dir);
  sb__config_free(&cfg);
}

static _Noreturn void usage(void) {
  fputs("usage: bench_spool [--mib N] [--lines N] [--dir DIR]\n", stderr);
  exit(2);
}

int main(int argc, char** argv) {
  uv_loop_t loop;
  uv_fs_t req;
  uint64_t mib = 256, lines = 1000000, i;
  const char* dir = NULL;
  char tmp[1024], *tmpl, *src;
  size_t tmp_len = sizeof(tmp);
  double raw, ratio = 0, lps = 0;
  int a, sync, e;

  for (a = 1; a < argc; a += 2) {
    if (a + 1 >= argc)
      usage();
    if (strcmp(argv[a], "--mib") == 0)
      mib = strtoull(argv[a + 1], NULL, 10);
    else if (strcmp(argv[a], "--lines") == 0)
      lines = strtoull(argv[a + 1], NULL, 10);
    else if (strcmp(argv[a], "--dir") == 0)
      dir = argv[a + 1];
    else
      usage();
  }
  if (mib == 0 || lines == 0)
    usage();
  /* The spool logs its opens and closes at info; only trouble matters here. */
  sb__log_open(NULL, SB_LOG_WARN);

  if (dir == NULL) {
    if ((e = uv_os_tmpdir(tmp, &tmp_len)) != 0)
      fail("no temporary directory: %s", uv_strerror(e));
    dir = tmp;
  } else if ((e = sb__mkdir_p(dir)) != 0) {
    fail("%s: %s", dir, sb_strerror(e));
  }
  tmpl = sb__path_join(dir, "bench_spool-XXXXXX");
  if ((e = uv_fs_mkdtemp(NULL, &req, tmpl, NULL)) != 0)
    fail("%s: %s", tmpl, uv_strerror(e));
  g_root = sb__xstrdup(req.path);
  uv_fs_req_cleanup(&req);
  free(tmpl);

  /* Text like a log: letters that change from line to line, '\n' every 100 bytes. */
  src = sb__xmalloc(SRC_SIZE);
  for (i = 0; i < SRC_SIZE; i++)
    src[i] = i % LINE == LINE - 1 ? '\n' : (char)('a' + (i * 7 + i / LINE * 13) % 26);

  if (uv_loop_init(&loop) != 0)
    fail("uv_loop_init failed");
  printf("streambroker spool benchmark in %s: %llu MiB in %u KiB chunks, %llu lines of "
         "%u bytes; %d streams, %u MiB in flight\n",
         g_root, (unsigned long long)mib, LARGE >> 10, (unsigned long long)lines, LINE,
         NSTREAMS, WINDOW >> 20);
  raw = raw_write(g_root, mib, src);
  printf("raw write: %llu MiB in 1 MiB writes + fdatasync: %.1f MB/s\n",
         (unsigned long long)mib, raw);
  fflush(stdout);

  for (sync = SB__SYNC_NORMAL; sync <= SB__SYNC_FULL; sync++) {
    const char* name = sync == SB__SYNC_FULL ? "FULL" : "NORMAL";
    result_t big, small;
    run_spool(&loop, g_root, "large", sync, LARGE, mib * SRC_SIZE, src, &big);
    printf("spool write large %s: %.1f MB/s, %.0f chunks/s, %llu commits (%.2f of raw "
           "%.1f MB/s)\n",
           name, per_s(big.bytes, big.write_s) / 1e6, per_s(big.chunks, big.write_s),
           (unsigned long long)big.commits, per_s(big.bytes, big.write_s) / 1e6 / raw,
           raw);
    printf("spool drain large %s: %.1f MB/s, %.0f chunks/s\n", name,
           per_s(big.bytes, big.drain_s) / 1e6, per_s(big.chunks, big.drain_s));
    fflush(stdout);
    run_spool(&loop, g_root, "lines", sync, LINE, lines * LINE, src, &small);
    printf("spool write lines %s: %.0f lines/s, %.1f MB/s, %llu commits\n", name,
           per_s(small.chunks, small.write_s), per_s(small.bytes, small.write_s) / 1e6,
           (unsigned long long)small.commits);
    printf("spool drain lines %s: %.0f lines/s, %.1f MB/s\n", name,
           per_s(small.chunks, small.drain_s), per_s(small.bytes, small.drain_s) / 1e6);
    fflush(stdout);
    if (sync == SB__SYNC_NORMAL) {
      ratio = per_s(big.bytes, big.write_s) / 1e6 / raw;
      lps = per_s(small.chunks, small.write_s);
    }
  }
  printf("targets (NORMAL): large chunks %.2f of raw (>= 0.50): %s; "
         "lines %.0f lines/s (>= 200000): %s\n",
         ratio, ratio >= 0.5 ? "met" : "not met", lps,
         lps >= 200000 ? "met" : "not met");

  if (uv_loop_close(&loop) != 0)
    fail("the loop still has handles");
  rm_tree(g_root);
  free(g_root);
  free(src);
  return 0;
}
