/*
 * test_spool.c - the spool, with real processes: a broker (B) in front of an archive
 * broker playing the upstream (U), killed, restarted and starved of space while
 * clients write. What arrives is read back from U's archive (streams.h): every
 * segment of a stream (reopens and renames included, in the order U opened them),
 * each placed at its streambroker.offset tag, overlaps checked byte for byte, gaps
 * refused.
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>
#ifndef _WIN32
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>
#endif

#include "helpers.h"
#include "streams.h"
#include "task.h"

/* Windows has no job control: the test that stops the upstream is skipped there. */
#ifdef _WIN32
#define SPOOL_SIGSTOP 0
#else
#define SPOOL_SIGSTOP SIGSTOP
#endif

/*
 * The upstream is down while clients write all three types of stream; the broker is
 * stopped (gracefully) and started again meanwhile; then the upstream comes up and
 * everything arrives, byte-identical, datagram framing included.
 */
TEST_IMPL(spool_upstream_down_then_up) {
  uv_loop_t loop;
  sb_it_daemon_t up, b;
  sb__buf_t want = {0}, got = {0};
  sb_client_t* client;
  int i, n = 12;
  uv_loop_init(&loop);
  sb_it_start_upstream_down(&loop, &up, "spu", &b, "spb",
                            "\"backoff_initial_ms\": 20, \"backoff_max_ms\": 200");
  ASSERT_OK(sb_client_open(&client, b.address));
  for (i = 0; i < n; i++) {
    char name[64];
    sb_stream_opts_t o;
    sb_stream_t* s;
    memset(&o, 0, sizeof(o));
    snprintf(name, sizeof(name), "down/s%d", i);
    o.name = name;
    o.type = (sb_stream_type_t)(i % 3);
    ASSERT_OK(sb_stream_open(client, &o, &s));
    sb_it_content(name, (size_t)(i + 1) * 50000, &want);
    if (o.type == SB_DATAGRAM) {
      size_t off;
      for (off = 0; off < want.len; off += 7000)
        ASSERT_OK(sb_stream_send_datagram(
            s, want.data + off, want.len - off < 7000 ? want.len - off : 7000));
    } else {
      ASSERT_OK(sb_stream_write(s, want.data, want.len));
    }
    ASSERT_OK(sb_stream_close(s));
  }
  sb_client_close(client);
  sb_it_daemon_wait_log(&b, "spooling, retrying", (size_t)n, 30000);
  /* Once the broker has read every stream to its end, a graceful stop keeps it all.
   * (Windows has no SIGTERM: the process is terminated there, once the spool holds
   * every stream; the service's STOP control is tested in test_winservice.c.) */
  sb_it_daemon_wait_log(&b, "client finished after", (size_t)n, 30000);
  if (sb_it_is_windows()) {
    ASSERT(sb_it_run_until(&loop, 30000, sb_it_spool_has_all, &b));
    sb_it_daemon_kill(&b, SIGKILL);
    sb_it_daemon_wait_exit(&b, 30000);
  } else {
    sb_it_daemon_kill(&b, SIGTERM);
    sb_it_daemon_wait_exit(&b, 30000);
    ASSERT_EQ(b.exit_status, 0);
  }
  ASSERT_EQ(sb_it_spool_int(&b, "SELECT count(*) FROM streams"), n);
  sb_it_daemon_restart(&b);
  sb_it_daemon_wait_log(&b, "resumed from the spool", (size_t)n, 30000);
  sb_it_daemon_restart(&up);
  ASSERT(sb_it_run_until(&loop, 60000, sb_it_spool_empty, &b));
  for (i = 0; i < n; i++) {
    char name[64];
    snprintf(name, sizeof(name), "down/s%d", i);
    sb_it_wait_settled1(&loop, up.archive_dir, name);
    sb_it_content(name, (size_t)(i + 1) * 50000, &want);
    sb_it_reassemble(up.archive_dir, name, &got, 0, NULL);
    if (i % 3 == SB_DATAGRAM) {
      /* The archive keeps the framing: take it off. */
      sb__buf_t body = {0};
      size_t p = 0;
      while (p < got.len) {
        uint64_t v = 0;
        unsigned shift = 0;
        while ((uint8_t)got.data[p] & 0x80) {
          v |= (uint64_t)((uint8_t)got.data[p++] & 0x7f) << shift;
          shift += 7;
        }
        v |= (uint64_t)(uint8_t)got.data[p++] << shift;
        ASSERT(p + v <= got.len);
        sb__buf_append(&body, got.data + p, v);
        p += v;
      }
      ASSERT_EQ(body.len, want.len);
      ASSERT(memcmp(body.data, want.data, want.len) == 0);
      sb__buf_free(&body);
    } else {
      ASSERT_EQ(got.len, want.len);
      ASSERT(memcmp(got.data, want.data, want.len) == 0);
    }
  }
  sb__buf_free(&want);
  sb__buf_free(&got);
  sb_it_daemon_close(&b);
  sb_it_daemon_close(&up);
  uv_loop_close(&loop);
}

static int fifty_closed(void* arg) {
  sb_it_daemon_t* d = arg;
  return sb_it_count(d->log.data, d->log.len, "closed: ") >= 50;
}

/*
 * 50 streams write while the upstream is killed (SIGKILL) and restarted again and
 * again: every stream arrives complete and in order once overlaps are removed by their
 * offset tags, and streams were reopened.
 */
TEST_IMPL(spool_upstream_killed_repeatedly) {
  uv_loop_t loop;
  sb_it_daemon_t up, b;
  sb_it_writer_t* w = calloc(1, sizeof(*w));
  int kill, reopened = 0;
  uv_loop_init(&loop);
  uv_mutex_init(&w->mutex);
  /* U: a small write queue, so that what a killed U loses fits the replay window. */
  sb_it_daemon_start(&up, &loop, "spku", NULL,
                     "\"upstream_high_watermark\": 65536, \"log_level\": \"info\"");
  sb_it_daemon_start(&b, &loop, "spkb", up.address,
                     "\"backoff_initial_ms\": 20, \"backoff_max_ms\": 300, "
                     "\"log_level\": \"info\"");
  snprintf(w->address, sizeof(w->address), "%s", b.address);
  w->nstreams = 50;
  w->binary_every = 2;
  w->min_bytes = 20000;
  sb_it_writer_start(w);
  for (kill = 0; kill < 6; kill++) {
    sb_it_pause_ms(&loop, 300);
    sb_it_daemon_kill(&up, SIGKILL);
    sb_it_daemon_wait_exit(&up, 30000);
    sb_it_pause_ms(&loop, 150);
    sb_it_daemon_restart(&up);
  }
  w->stop = 1;
  sb_it_thread_join(&loop, &w->thread, 120000);
  if (!sb_it_run_until(&loop, 240000, fifty_closed, &b)) {
    sb_it_daemon_dump(&up);
    sb_it_daemon_wait_log(&b, "closed: ", 50, 1);
  }
  sb_it_check_streams(&loop, w, up.archive_dir, NULL, 1, &reopened);
  ASSERT_EQ(w->nnames, 50);
  ASSERT(reopened > 0);
  sb_it_daemon_wait_log(&b, "reopening it from the replay window", 1, 10);
  sb_it_writer_free(w);
  sb_it_daemon_close(&b);
  sb_it_daemon_close(&up);
  uv_loop_close(&loop);
}

/* ---- a datagram stream through upstream kills ---- */

/* Datagram k: 300 to 499 bytes, its index first, so that kills 2500 datagrams apart
 * (about a megabyte) fall past a window that covers what U can lose. */
static size_t datagram(uint64_t k, char* out, size_t size) {
  size_t n = (size_t)snprintf(out, size, "datagram %llu ", (unsigned long long)k);
  size_t len = 300 + (size_t)(k * 37 % 200), i;
  if (len > size)
    len = size;
  for (i = n; i < len; i++)
    out[i] = (char)('a' + (k + i) % 26);
  return len;
}

typedef struct {
  char address[256];
  volatile int stop;
  sb_it_thread_t thread;
  volatile uint64_t sent;
  uint64_t kill_at;
  int err;
} dgram_writer_t;

static void dgram_writer_run(void* arg) {
  dgram_writer_t* w = arg;
  sb_client_t* client;
  sb_stream_t* s;
  sb_stream_opts_t o;
  char buf[512];
  memset(&o, 0, sizeof(o));
  o.name = "spool/datagrams";
  o.type = SB_DATAGRAM;
  w->err = sb_client_open(&client, w->address);
  if (w->err == 0 && (w->err = sb_stream_open(client, &o, &s)) == 0) {
    while (!w->stop || w->sent < 12000) {
      size_t n = datagram(w->sent, buf, sizeof(buf));
      if ((w->err = sb_stream_send_datagram(s, buf, n)) != 0)
        break;
      w->sent++;
      uv_sleep(w->sent % 16 == 0);
    }
    if (w->err == 0)
      w->err = sb_stream_close(s);
    sb_client_close(client);
  }
}

static int dgram_writer_reached(void* arg) {
  dgram_writer_t* w = arg;
  return w->sent >= w->kill_at || w->thread.done;
}

/*
 * A datagram stream while the upstream is killed and restarted: each reopened
 * connection starts on a datagram boundary, tagged with that datagram's index, and the
 * datagrams reassembled by index are all of them, in order, each intact.
 */
TEST_IMPL(spool_datagram_stream_reopened) {
  uv_loop_t loop;
  sb_it_daemon_t up, b;
  dgram_writer_t w;
  char** got = NULL;
  uint64_t ngot = 0, k;
  int i, kill, nseg, nsegments = 0, past_start = 0;
  sb_it_segment_t* seg;
  uv_loop_init(&loop);
  memset(&w, 0, sizeof(w));
  sb_it_daemon_start(&up, &loop, "spgu", NULL,
                     "\"upstream_high_watermark\": 65536, \"log_level\": \"info\"");
  /* A window that covers what U can lose (its 64 KiB watermark, one 128 KiB read and
   * the socket or pipe buffers), and small enough that later reopens start past
   * datagram 0. */
  sb_it_daemon_start(&b, &loop, "spgb", up.address,
                     "\"backoff_initial_ms\": 20, \"backoff_max_ms\": 300, "
                     "\"log_level\": \"info\", \"replay_window\": 524288");
  snprintf(w.address, sizeof(w.address), "%s", b.address);
  sb_it_thread_start(&w.thread, dgram_writer_run, &w);
  for (kill = 0; kill < 4; kill++) {
    /* Kills 2500 datagrams (about 1 MB) apart, so that later ones fall past the
     * window, whatever the writer's speed (Wine's is a tenth of Linux's). */
    w.kill_at = (uint64_t)(kill + 1) * 2500;
    ASSERT(sb_it_run_until(&loop, 60000, dgram_writer_reached, &w));
    sb_it_daemon_kill(&up, SIGKILL);
    sb_it_daemon_wait_exit(&up, 30000);
    sb_it_daemon_restart(&up);
  }
  w.stop = 1;
  sb_it_thread_join(&loop, &w.thread, 120000);
  ASSERT_OK(w.err);
  sb_it_daemon_wait_log(&b, "\"spool/datagrams\" closed: ", 1, 120000);
  sb_it_wait_settled1(&loop, up.archive_dir, "spool/datagrams");
  got = calloc(w.sent, sizeof(char*));
  nseg = sb_it_segments(up.archive_dir, "spool/datagrams", &seg);
  for (i = 0; i < nseg; i++) {
    size_t len, p = 0;
    char* data;
    uint64_t index;
    if ((data = sb_it_read_file(seg[i].log_path, &len)) == NULL)
      continue;
    nsegments++;
    index = (uint64_t)seg[i].offset;
    ASSERT_LE(index, ngot); /* no gap */
    if (index > 0)
      past_start++;
    /* Whole datagrams only: a killed U may have cut its file inside one. */
    if (index > ngot) {
      sb_it_daemon_dump(&up);
      sb_it_daemon_dump(&b);
    }
    while (p < len) {
      uint64_t v = 0;
      unsigned shift = 0;
      size_t q = p;
      while (q < len && ((uint8_t)data[q] & 0x80)) {
        v |= (uint64_t)((uint8_t)data[q++] & 0x7f) << shift;
        shift += 7;
      }
      if (q >= len)
        break;
      v |= (uint64_t)(uint8_t)data[q++] << shift;
      if (q + v > len)
        break;
      ASSERT(index < w.sent);
      if (index < ngot) {
        ASSERT_EQ(strlen(got[index]), v); /* a repeat: the same datagram */
        ASSERT(memcmp(got[index], data + q, v) == 0);
      } else {
        got[index] = calloc(1, v + 1);
        memcpy(got[index], data + q, v);
        ngot = index + 1;
      }
      index++;
      p = q + v;
    }
    free(data);
  }
  if (ngot != w.sent) {
    sb_it_daemon_dump(&up);
    sb_it_daemon_dump(&b);
  }
  ASSERT_EQ(ngot, w.sent);
  for (k = 0; k < ngot; k++) {
    char want[512];
    size_t n = datagram(k, want, sizeof(want));
    ASSERT_EQ(strlen(got[k]), n);
    ASSERT(memcmp(got[k], want, n) == 0);
    free(got[k]);
  }
  free(got);
  free(seg);
  ASSERT(nsegments > 1);
  ASSERT(past_start > 0);
  sb_it_daemon_close(&b);
  sb_it_daemon_close(&up);
  uv_loop_close(&loop);
}

/* ---- what the upstream received twice, and what it never got ---- */

typedef struct {
  char address[256];
  const char* name;
  volatile int stop;
  sb_it_thread_t thread;
  volatile uint64_t written; /* bytes whose write returned */
  uint64_t max;              /* stops by itself past this */
  uint64_t hold_at;          /* waits there until released (0: never) */
  volatile int released;
  int err;
} text_writer_t;

/* One text stream of sb_it_content(name), written 64 KiB at a time until stopped. */
static void text_writer_run(void* arg) {
  text_writer_t* w = arg;
  sb_client_t* client;
  sb_stream_t* s;
  sb_stream_opts_t o;
  sb__buf_t data = {0};
  memset(&o, 0, sizeof(o));
  o.name = w->name;
  sb_it_content(w->name, (size_t)w->max, &data);
  w->err = sb_client_open(&client, w->address);
  if (w->err == 0 && (w->err = sb_stream_open(client, &o, &s)) == 0) {
    while (!w->stop && w->written < w->max) {
      size_t n = w->max - w->written < 65536 ? (size_t)(w->max - w->written) : 65536;
      while (w->hold_at > 0 && w->written >= w->hold_at && !w->released && !w->stop)
        uv_sleep(10);
      if ((w->err = sb_stream_write(s, data.data + w->written, n)) != 0)
        break;
      w->written += n;
    }
    if (w->err == 0)
      w->err = sb_stream_close(s);
    sb_client_close(client);
  }
  sb__buf_free(&data);
}

typedef struct {
  text_writer_t* w;
  uint64_t at;
} text_reached_t;

static int text_writer_reached(void* arg) {
  text_reached_t* r = arg;
  return r->w->written >= r->at || r->w->thread.done;
}

/*
 * What U's archive holds of a stream twice: each segment, in the order U opened it,
 * laid at its offset tag; the bytes it repeats of what the segments before it hold
 * are counted. *end gets the end of what is held, *gaps the segments that start past
 * it.
 */
static uint64_t archived_overlap(const char* archive_dir, const char* name,
                                 uint64_t* end, int* gaps) {
  sb_it_segment_t* seg;
  uint64_t overlap = 0, known = 0;
  int i, n = sb_it_segments(archive_dir, name, &seg);
  *gaps = 0;
  for (i = 0; i < n; i++) {
    uv_fs_t req;
    uint64_t start = (uint64_t)seg[i].offset, len = 0;
    if (uv_fs_stat(NULL, &req, seg[i].log_path, NULL) == 0)
      len = req.statbuf.st_size;
    uv_fs_req_cleanup(&req);
    if (start > known)
      (*gaps)++;
    if (start < known)
      overlap += (start + len < known ? start + len : known) - start;
    if (start + len > known)
      known = start + len;
  }
  free(seg);
  *end = known;
  return overlap;
}

/*
 * bytes_resent against what U received twice. U is killed four times while one text
 * stream goes through B with the default 4 MiB window: each reopen resends the
 * window, from memory (spilled) and the spool. Every byte U's archive holds twice was
 * sent twice, so bytes_resent is at least that overlap; and it exceeds it only by what
 * U received and lost at each kill (read and not stored, or unread in the socket or
 * pipe: at most its 64 KiB watermark, one 128 KiB read and the buffers, bounded here
 * by 1 MiB a kill).
 */
TEST_IMPL(spool_resent_counted) {
  uv_loop_t loop;
  sb_it_daemon_t up, b;
  text_writer_t w;
  text_reached_t r;
  uint64_t end, overlap;
  int kill, gaps;
  double resent;
  cJSON* st;
  const uint64_t step = 6u << 20; /* past the 4 MiB window */
  uv_loop_init(&loop);
  memset(&w, 0, sizeof(w));
  w.name = "resent/a";
  w.max = 5 * step;
  sb_it_daemon_start(&up, &loop, "sprcu", NULL, "\"upstream_high_watermark\": 65536");
  sb_it_daemon_start(&b, &loop, "sprcb", up.address,
                     "\"backoff_initial_ms\": 20, \"backoff_max_ms\": 300");
  snprintf(w.address, sizeof(w.address), "%s", b.address);
  sb_it_thread_start(&w.thread, text_writer_run, &w);
  r.w = &w;
  for (kill = 0; kill < 4; kill++) {
    r.at = (uint64_t)(kill + 1) * step;
    ASSERT(sb_it_run_until(&loop, 120000, text_writer_reached, &r));
    sb_it_daemon_kill(&up, SIGKILL);
    sb_it_daemon_wait_exit(&up, 30000);
    sb_it_daemon_restart(&up);
  }
  sb_it_thread_join(&loop, &w.thread, 240000);
  ASSERT_OK(w.err);
  ASSERT_EQ(w.written, w.max);
  sb_it_daemon_wait_log(&b, "\"resent/a\" closed: ", 1, 120000);
  sb_it_wait_settled1(&loop, up.archive_dir, "resent/a");
  overlap = archived_overlap(up.archive_dir, "resent/a", &end, &gaps);
  ASSERT_EQ(end, w.max);
  ASSERT_EQ(gaps, 0);
  st = sb_it_admin(&loop, &b, "status");
  resent = sb_it_json_num(st, "counters.bytes_resent");
  cJSON_Delete(st);
  fprintf(stderr, "overlap archived %llu, bytes_resent %.0f\n",
          (unsigned long long)overlap, resent);
  ASSERT_GT(overlap, 0);
  ASSERT_GE((int64_t)resent, (int64_t)overlap);
  ASSERT_LE((int64_t)resent, (int64_t)(overlap + 4 * (1u << 20)));
  sb_it_daemon_close(&b);
  sb_it_daemon_close(&up);
  uv_loop_close(&loop);
}

/*
 * A replay window smaller than what U loses: U is stopped (SIGSTOP) while B writes
 * to it, so that what B wrote piles up unread in U's socket (a few hundred KiB, past
 * the 64 KiB window), then killed. The reopen starts past what U holds: U records the
 * gap (its sidecar and counters), and B logs where the reopen starts; nothing is lost
 * silently. Linux only: Windows has no job control.
 *
 * B keeps its window in whole chunks of up to 128 KiB (its reads), so a window may
 * hold up to 192 KiB and, now and then, cover all U lost (a socket holds about 200
 * KiB): then the stream arrives whole, which is checked, and the attempt is made again
 * with another stream; one of five must leave a gap.
 */
static int gap_attempt(uv_loop_t* loop, sb_it_daemon_t* up, sb_it_daemon_t* b,
                       const char* name) {
  text_writer_t w;
  text_reached_t r;
  uint64_t end;
  int gaps;
  char needle[128];
  memset(&w, 0, sizeof(w));
  w.name = name;
  w.max = 8u << 20;
  /* The writer waits at 1 MiB until U is stopped: on a loaded machine it could
   * otherwise be done before the stop, and nothing would stall. */
  w.hold_at = 1u << 20;
  snprintf(w.address, sizeof(w.address), "%s", b->address);
  sb_it_thread_start(&w.thread, text_writer_run, &w);
  r.w = &w;
  r.at = 1u << 20;
  ASSERT(sb_it_run_until(loop, 120000, text_writer_reached, &r));
  sb_it_daemon_kill(up, SPOOL_SIGSTOP);
  w.released = 1;
  /* B turns the stream to the spool once U has held its watermark half a second:
   * by then U's socket is full. */
  snprintf(needle, sizeof(needle), "\"%s\": the upstream has not taken", name);
  sb_it_daemon_wait_log(b, needle, 1, 60000);
  sb_it_daemon_kill(up, SIGKILL);
  sb_it_daemon_wait_exit(up, 30000);
  sb_it_daemon_restart(up);
  sb_it_thread_join(loop, &w.thread, 240000);
  ASSERT_OK(w.err);
  snprintf(needle, sizeof(needle), "\"%s\" closed: ", name);
  sb_it_daemon_wait_log(b, needle, 1, 120000);
  sb_it_wait_settled1(loop, up->archive_dir, name);
  archived_overlap(up->archive_dir, name, &end, &gaps);
  ASSERT_EQ(end, w.max);
  ASSERT_LE(gaps, 1);
  if (gaps == 0)
    fprintf(stderr, "%s: the window covered what U lost; trying again\n", name);
  return gaps;
}

TEST_IMPL(spool_window_too_small_gap_recorded) {
  static const char* const names[] = {"gap/a", "gap/b", "gap/c", "gap/d", "gap/e"};
  uv_loop_t loop;
  sb_it_daemon_t up, b;
  cJSON* st;
  int i, gaps = 0;
  if (SPOOL_SIGSTOP == 0)
    TEST_SKIP("Windows has no SIGSTOP to hold the upstream's reads");
  uv_loop_init(&loop);
  sb_it_daemon_start(&up, &loop, "spgpu", NULL, "\"upstream_high_watermark\": 65536");
  sb_it_daemon_start(&b, &loop, "spgpb", up.address,
                     "\"backoff_initial_ms\": 20, \"backoff_max_ms\": 300, "
                     "\"replay_window\": 65536");
  for (i = 0; i < 5 && gaps == 0; i++)
    gaps = gap_attempt(&loop, &up, &b, names[i]);
  ASSERT_EQ(gaps, 1);
  /* The restarted U counts the gap of the last attempt only (counters are per run). */
  st = sb_it_admin(&loop, &up, "status");
  ASSERT_EQ(sb_it_json_num(st, "counters.archive_gaps"), 1);
  ASSERT_GT(sb_it_json_num(st, "counters.archive_gap_bytes"), 0);
  cJSON_Delete(st);
  sb_it_daemon_wait_log(&up, "never arrived", 1, 10);
  /* B cannot know what U lost, but says where the reopen starts. */
  sb_it_daemon_wait_log(&b, "reopened upstream at byte ", 1, 10);
  sb_it_daemon_close(&b);
  sb_it_daemon_close(&up);
  uv_loop_close(&loop);
}

/*
 * The upstream appears while a stream waits in a long backoff (30 s): the broker
 * notices (POSIX: the socket's directory; Windows: WaitNamedPipeW) and drains at once,
 * well before its next retry would.
 */
TEST_IMPL(spool_drains_when_upstream_appears) {
  uv_loop_t loop;
  sb_it_daemon_t up, b;
  uv_loop_init(&loop);
  sb_it_start_upstream_down(&loop, &up, "spau", &b, "spab",
                            "\"backoff_initial_ms\": 30000, \"backoff_max_ms\": 30000");
  sb_it_write_stream(b.address, "appear/a", 10000);
  sb_it_daemon_wait_log(&b, "spooling, retrying", 1, 30000);
  sb_it_daemon_restart(&up);
  sb_it_daemon_wait_log(&b, "appeared: 1 streams dial now", 1, 30000);
  /* The first retry is at least 15 s after the failed dial. */
  sb_it_daemon_wait_log(&b, "\"appear/a\" closed: 10000 bytes", 1, 12000);
  ASSERT(!sb_it_contains(b.log.data, b.log.len, "retry 1 in"));
  sb_it_daemon_close(&b);
  sb_it_daemon_close(&up);
  uv_loop_close(&loop);
}

/*
 * The cap with "refuse" (265,536 bytes: 200,000 of chunks and the WAL's 65,536): with
 * the upstream down, a stream that fits is kept; the one
 * that does not is closed with a logged reason, and what it had stored before is
 * kept. When the upstream is back the spool drains, and new streams work again.
 */
TEST_IMPL(spool_cap_refuse_and_recover) {
  uv_loop_t loop;
  sb_it_daemon_t up, b;
  uv_loop_init(&loop);
  sb_it_start_upstream_down(&loop, &up, "spcu", &b, "spcb",
                            "\"spool_max_bytes\": 265536, \"backoff_initial_ms\": 20, "
                            "\"backoff_max_ms\": 200");
  sb_it_write_stream(b.address, "cap/fits", 150000);
  sb_it_daemon_wait_log(&b, "\"cap/fits\" opened", 1, 30000);
  sb_it_pause_ms(&loop, 300);
  sb_it_write_stream(b.address, "cap/refused", 300000);
  sb_it_daemon_wait_log(&b, "the spool refused its data", 1, 30000);
  sb_it_daemon_restart(&up);
  sb_it_expect_arrived(&loop, &b, &up, "cap/fits", 150000, 1);
  /* The refused stream: a prefix, shorter than what was written. */
  sb_it_expect_arrived(&loop, &b, &up, "cap/refused", 300000, 0);
  /* Counted for the stream, and said when it closed. */
  ASSERT(sb_it_contains(b.log.data, b.log.len,
                        "refused and 0 dropped by the spool (full)"));
  /* Room again: a new stream goes through whole. */
  ASSERT_OK(sb_it_write_stream(b.address, "cap/after", 150000));
  sb_it_expect_arrived(&loop, &b, &up, "cap/after", 150000, 1);
  sb_it_daemon_close(&b);
  sb_it_daemon_close(&up);
  uv_loop_close(&loop);
}

/*
 * The cap with "drop-oldest": the oldest chunks make room for new ones; the stream
 * that lost them arrives with a gap, reopened at the first byte kept with the tags
 * streambroker.offset and streambroker.dropped; the newer stream arrives whole.
 */
static int new_stored(void* arg) {
  return sb_it_spool_int(arg, "SELECT coalesce(max(c.end_off), 0) FROM chunks c JOIN "
                              "streams s ON s.id = c.sid WHERE s.name = 'drop/new'") ==
         150000;
}

TEST_IMPL(spool_cap_drop_oldest) {
  uv_loop_t loop;
  sb_it_daemon_t up, b;
  sb__buf_t want = {0}, got = {0};
  int dropped = 0;
  uv_loop_init(&loop);
  sb_it_start_upstream_down(
      &loop, &up, "spdu", &b, "spdb",
      "\"spool_max_bytes\": 265536, \"spool_full_policy\": \"drop-oldest\", "
      "\"backoff_initial_ms\": 20, \"backoff_max_ms\": 200");
  sb_it_write_stream(b.address, "drop/old", 150000);
  sb_it_daemon_wait_log(&b, "\"drop/old\": client finished", 1, 30000);
  ASSERT_OK(sb_it_write_stream(b.address, "drop/new", 150000));
  sb_it_daemon_wait_log(&b, "\"drop/new\": client finished", 1, 30000);
  /* Read is not stored yet: wait until the spool holds all of drop/new (so it has
   * dropped drop/old's oldest chunks), and the streams have heard so (else a chunk
   * just stored goes upstream from memory), before the upstream comes. */
  ASSERT(sb_it_run_until(&loop, 10000, new_stored, &b));
  sb_it_wait_spool_idle(&loop, &b);
  sb_it_daemon_restart(&up);
  sb_it_expect_arrived(&loop, &b, &up, "drop/new", 150000, 1);
  sb_it_daemon_wait_log(&b, "\"drop/old\" closed: ", 1, 60000);
  sb_it_wait_settled1(&loop, up.archive_dir, "drop/old");
  if (sb_it_reassemble(up.archive_dir, "drop/old", &got, 1, &dropped) < 2) {
    sb_it_daemon_dump(&b);
    sb_it_daemon_dump(&up);
    ASSERT(!"drop/old arrived in fewer than 2 segments");
  }
  ASSERT(dropped);
  ASSERT_EQ(got.len, 150000);
  sb_it_content("drop/old", 150000, &want);
  /* What arrived after the gap is the end of the stream, intact. */
  ASSERT(memcmp(got.data + 150000 - 10000, want.data + 150000 - 10000, 10000) == 0);
  sb_it_daemon_wait_log(&b, "were dropped from the spool", 1, 10);
  sb_it_daemon_wait_log(&b, "refused and 1", 1, 10); /* "... and 1xxxxx dropped" */
  sb__buf_free(&want);
  sb__buf_free(&got);
  sb_it_daemon_close(&b);
  sb_it_daemon_close(&up);
  uv_loop_close(&loop);
}

/* Starts a broker, stops it, replaces its spool.db with bytes, and starts it again:
 * it must move the file aside, say so, and serve. */
static void bad_spool(const char* tag, const void* bytes, size_t len, int sqlite_made,
                      const char* why) {
  uv_loop_t loop;
  sb_it_daemon_t up, b;
  char* path;
  uv_loop_init(&loop);
  sb_it_daemon_start(&up, &loop, "sbsu", NULL, NULL);
  sb_it_daemon_start(&b, &loop, tag, up.address, NULL);
  sb_it_daemon_kill(&b, SIGTERM);
  sb_it_daemon_wait_exit(&b, 30000);
  path = sb_it_spool_path(&b);
  {
    /* Windows has no SIGTERM (the broker was terminated): its WAL is still there. */
    char aux[1100];
    snprintf(aux, sizeof(aux), "%s-wal", path);
    remove(aux);
    snprintf(aux, sizeof(aux), "%s-shm", path);
    remove(aux);
  }
  ASSERT_OK(remove(path));
  if (sqlite_made) {
    sqlite3* db;
    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, (const char*)bytes, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
  } else {
    sb_it_write_file(path, bytes, len);
  }
  sb_it_daemon_restart(&b);
  sb_it_daemon_wait_log(&b, "moved aside as", 1, 30000);
  sb_it_daemon_wait_log(&b, why, 1, 10);
  ASSERT_OK(sb_it_write_stream(b.address, "bad/after", 10000));
  sb_it_expect_arrived(&loop, &b, &up, "bad/after", 10000, 1);
  free(path);
  sb_it_daemon_close(&b);
  sb_it_daemon_close(&up);
  uv_loop_close(&loop);
}

TEST_IMPL(spool_corrupt_database_moved_aside) {
  char junk[8192];
  size_t i;
  memcpy(junk, "SQLite format 3", 16);
  for (i = 16; i < sizeof(junk); i++)
    junk[i] = (char)(i * 131 + 7);
  bad_spool("sbcb", junk, sizeof(junk), 0, "not a usable database");
}

TEST_IMPL(spool_old_schema_moved_aside) {
  bad_spool("sbob",
            "PRAGMA application_id=1396855632; PRAGMA user_version=0;"
            "CREATE TABLE chunks(stream TEXT, data BLOB);"
            "INSERT INTO chunks VALUES ('old', x'00');",
            0, 1, "schema version 0");
}

/*
 * A full disk: the broker's directory is a small tmpfs (Linux, as root), nearly
 * filled. A stream that does not fit is refused (closed, logged); what it had stored
 * is kept and delivered; once space returns, a new stream goes through whole.
 */
TEST_IMPL(spool_disk_full) {
#ifdef _WIN32
  TEST_SKIP("needs a small file system: Linux tmpfs, as root");
#else
  uv_loop_t loop;
  sb_it_daemon_t up, b;
  char filler[1100];
  char* config;
  size_t config_len, chunk = 65536, left;
  FILE* f;
  char* zeros;
  if (geteuid() != 0)
    TEST_SKIP("mounting a tmpfs needs root");
  uv_loop_init(&loop);
  sb_it_start_upstream_down(&loop, &up, "spfu", &b, "spfb",
                            "\"backoff_initial_ms\": 20, \"backoff_max_ms\": 200");
  sb_it_daemon_kill(&b, SIGTERM);
  sb_it_daemon_wait_exit(&b, 30000);
  config = sb_it_read_file(b.config_path, &config_len);
  ASSERT_NOT_NULL(config);
  remove(b.config_path);
  {
    char path[1024];
    snprintf(path, sizeof(path), "%s/spool.db", b.dir);
    remove(path);
  }
  if (mount("sbtmp", b.dir, "tmpfs", 0, "size=8m,mode=0700") != 0) {
    free(config);
    sb_it_daemon_close(&b);
    sb_it_daemon_close(&up);
    TEST_SKIP("cannot mount a tmpfs here");
  }
  sb_it_write_file(b.config_path, config, config_len);
  free(config);
  sb_it_daemon_restart(&b);
  /* Leave 1 MiB free: less than the stream about to be written. */
  {
    struct statvfs fs;
    ASSERT_OK(statvfs(b.dir, &fs));
    left = (size_t)fs.f_bavail * fs.f_frsize;
    ASSERT(left > 2 * 1024 * 1024);
    left -= 1024 * 1024;
  }
  snprintf(filler, sizeof(filler), "%s/filler", b.dir);
  f = fopen(filler, "wb");
  ASSERT_NOT_NULL(f);
  zeros = calloc(1, chunk);
  for (; left >= chunk; left -= chunk)
    ASSERT_EQ(fwrite(zeros, 1, chunk, f), chunk);
  ASSERT_OK(fclose(f));
  free(zeros);
  sb_it_write_stream(b.address, "full/a", 2000000);
  sb_it_daemon_wait_log(&b, "the spool refused its data", 1, 30000);
  sb_it_daemon_wait_log(&b, "disk full", 1, 10);
  /* Space returns; the upstream too. */
  remove(filler);
  sb_it_daemon_restart(&up);
  sb_it_expect_arrived(&loop, &b, &up, "full/a", 2000000, 0);
  if (sb_it_write_stream(b.address, "full/b", 1000000) != 0) {
    sb_it_daemon_dump(&b);
    ASSERT(!"full/b was refused with room on the disk again");
  }
  sb_it_expect_arrived(&loop, &b, &up, "full/b", 1000000, 1);
  sb_it_daemon_kill(&b, SIGTERM);
  sb_it_daemon_wait_exit(&b, 30000);
  umount(b.dir);
  sb_it_daemon_close(&b);
  sb_it_daemon_close(&up);
  uv_loop_close(&loop);
#endif
}
