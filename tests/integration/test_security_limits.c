/*
 * test_security_limits.c - a local user against the service (issue 21, items 3 to 6):
 * one user cannot lock out others or root, handshakes in flight hold bounded memory,
 * client text cannot wipe or pollute the log, and a refused client learns it at
 * sb_stream_close (sbcat exits non-zero).
 *
 * The attackers run as throwaway users the test creates (useradd) and removes
 * (userdel, also when the test fails), so the tests need root; they are skipped with
 * a message otherwise, and on Windows (whose pipes have no uid; its refusals fail
 * FlushFileBuffers already). A flood runs in a forked child that connects with raw
 * sockets, holds its connections until the test lets it go, and reports through a
 * pipe once it is done connecting.
 */
#ifndef _WIN32
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#endif
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "helpers.h"
#include "task.h"

#ifdef _WIN32

#define SKIP_ALL(name)                                                                 \
  TEST_IMPL(name) {                                                                    \
    TEST_SKIP("uid-based limits and socket resets are Linux's; Windows refusals fail " \
              "FlushFileBuffers already");                                             \
  }
SKIP_ALL(security_user_flood_leaves_others_served)
SKIP_ALL(security_silent_flood_leaves_root_served)
SKIP_ALL(security_handshake_memory_bounded)
SKIP_ALL(security_log_flood_keeps_log)
SKIP_ALL(security_sbcat_refused_by_groups_fails)
SKIP_ALL(security_sbcat_refused_by_max_streams_fails)
SKIP_ALL(security_squatted_name_goes_to_plus_one)

/* The sidecar names the SID of the client process's user (Windows has no uid), read
 * from its token by the listener: who wrote each stream shows. */
TEST_IMPL(security_sidecar_names_client_sid) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  sb_it_result_t res;
  char path[1024];
  char* json;
  size_t len;
  cJSON *root, *sid;
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start(&d, &loop, "sid", NULL, NULL);
  sb_it_run_tool(&loop, "sbcat",
                 SB_IT_ARGS("--name", "sid/line", "--server", d.address), "who\n", 4,
                 &res);
  ASSERT_EQ(res.exit_status, 0);
  sb_it_result_free(&res);
  sb_it_daemon_wait_log(&d, "\"sid/line\" closed: ", 1, 60000);
  snprintf(path, sizeof(path), "%s/sid/line.json", d.archive_dir);
  json = sb_it_read_file(path, &len);
  ASSERT_NOT_NULL(json);
  root = cJSON_ParseWithLength(json, len);
  sid = cJSON_GetObjectItemCaseSensitive(
      cJSON_GetObjectItemCaseSensitive(root, "client"), "sid");
  if (!cJSON_IsString(sid) || strncmp(sid->valuestring, "S-1-5-", 6) != 0)
    sb_test_fail(__FILE__, __LINE__, "no client SID in %s: %.*s", path, (int)len, json);
  cJSON_Delete(root);
  free(json);
  sb_it_daemon_close(&d);
  ASSERT_OK(uv_loop_close(&loop));
}

#else

TEST_IMPL(security_sidecar_names_client_sid) {
  TEST_SKIP("Windows: a POSIX sidecar names the uid and gid");
}

/* ---- throwaway users ---- */

#define MAX_USERS 4
static char users[MAX_USERS][32];
static int nusers;
static char group_name[32];

/* Flood children still running (a failed test exits without stopping them): killed
 * before their user is removed, which userdel refuses while it runs processes. */
static pid_t flood_pids[8];
static int nflood_pids;

static void remove_users(void) {
  char cmd[256];
  int i, status;
  for (i = 0; i < nflood_pids; i++) {
    if (flood_pids[i] > 0 && kill(flood_pids[i], SIGKILL) == 0)
      waitpid(flood_pids[i], &status, 0);
  }
  nflood_pids = 0;
  for (i = 0; i < nusers; i++) {
    snprintf(cmd, sizeof(cmd), "userdel %s >/dev/null 2>&1", users[i]);
    if (system(cmd) != 0)
      fprintf(stderr, "could not remove the test user %s\n", users[i]);
    snprintf(cmd, sizeof(cmd), "groupdel %s >/dev/null 2>&1", users[i]);
    (void)system(cmd);
  }
  nusers = 0;
  if (group_name[0]) {
    snprintf(cmd, sizeof(cmd), "groupdel %s >/dev/null 2>&1", group_name);
    (void)system(cmd);
    group_name[0] = '\0';
  }
}

/* Users and groups an earlier run left (killed by a timeout: no atexit): those whose
 * test process is gone are removed. */
static void remove_stale_users(void) {
  char line[512], cmd[256];
  const char* files[] = {"/etc/passwd", "/etc/group"};
  int k;
  for (k = 0; k < 2; k++) {
    FILE* f = fopen(files[k], "r");
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
      char name[64], path[64];
      long pid;
      if (sscanf(line, "sbsl%*c%ld:", &pid) != 1 || pid <= 0)
        continue;
      snprintf(path, sizeof(path), "/proc/%ld", pid);
      if (access(path, F_OK) == 0)
        continue;
      snprintf(name, sizeof(name), "%.*s", (int)(strchr(line, ':') - line), line);
      snprintf(cmd, sizeof(cmd), "%s %s >/dev/null 2>&1",
               k == 0 ? "userdel" : "groupdel", name);
      (void)system(cmd);
    }
    if (f != NULL)
      fclose(f);
  }
}

static void need_root(void) {
  if (geteuid() != 0)
    TEST_SKIP("needs root: it creates throwaway users (useradd) to attack as");
  remove_stale_users();
}

/* A new user with a group of its own (never root's, nor the service's), removed at
 * exit. */
static void add_user(char tag, int* uid, int* gid) {
  char cmd[160];
  struct passwd* pw;
  static int registered;
  ASSERT_LT(nusers, MAX_USERS);
  snprintf(users[nusers], sizeof(users[nusers]), "sbsl%c%ld", tag, (long)getpid());
  snprintf(cmd, sizeof(cmd), "useradd -M -U -s /usr/sbin/nologin %s", users[nusers]);
  if (!registered) {
    atexit(remove_users);
    registered = 1;
  }
  if (system(cmd) != 0)
    sb_test_fail(__FILE__, __LINE__, "%s failed", cmd);
  pw = getpwnam(users[nusers]);
  ASSERT_NOT_NULL(pw);
  *uid = (int)pw->pw_uid;
  *gid = (int)pw->pw_gid;
  ASSERT_NE(*gid, 0);
  nusers++;
}

/* ---- floods from a forked child ---- */

enum { FLOOD_SILENT, FLOOD_STREAM, FLOOD_BIG };

typedef struct {
  pid_t pid;
  int ready; /* read end: the child writes its count of connections there */
  int hold;  /* write end: closed to let the child go */
  char report[64];
  size_t got;
} flood_t;

#define BIG_FRAME 1048576u

/* The child: connects n times as uid/gid and keeps every connection until hold
 * closes. No allocation here: what it sends was made before the fork. */
static void flood_child(const char* path, int uid, int gid, int mode, int n,
                        const char* hs, size_t hs_len, const char* body, int ready,
                        int hold) {
  struct sockaddr_un sa;
  struct rlimit rl = {20000, 20000};
  static int fds[12000];
  static size_t sent[12000];
  int i, connected = 0, progress;
  char line[32], c;
  if (n > 12000)
    n = 12000;
  /* Nothing of the test's: another flood's hold pipe kept here would keep that
   * flood's child from ever seeing its end. */
  for (i = 3; i < 65536; i++) {
    if (i != ready && i != hold)
      close(i);
  }
  setrlimit(RLIMIT_NOFILE, &rl);
  if (setgroups(0, NULL) != 0 || setgid((gid_t)gid) != 0 || setuid((uid_t)uid) != 0)
    _exit(3);
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, path, strlen(path));
  for (i = 0; i < n; i++) {
    fds[i] = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fds[i] < 0 || connect(fds[i], (struct sockaddr*)&sa, sizeof(sa)) != 0) {
      if (fds[i] >= 0)
        close(fds[i]);
      fds[i] = -1;
      continue;
    }
    connected++;
    if (mode != FLOOD_SILENT)
      (void)send(fds[i], hs, hs_len, MSG_NOSIGNAL);
    if (mode == FLOOD_BIG)
      fcntl(fds[i], F_SETFL, O_NONBLOCK);
    sent[i] = 0;
  }
  /* Big handshakes: every connection is pushed to one byte short of its frame, as
   * far as the service reads; it stops when two seconds pass without progress. */
  while (mode == FLOOD_BIG) {
    progress = 0;
    for (i = 0; i < n; i++) {
      ssize_t k;
      if (fds[i] < 0 || sent[i] >= BIG_FRAME - 1)
        continue;
      k = send(fds[i], body + sent[i], BIG_FRAME - 1 - sent[i], MSG_NOSIGNAL);
      if (k > 0) {
        sent[i] += (size_t)k;
        progress = 1;
      } else if (k < 0 && errno != EAGAIN && errno != EINTR) {
        close(fds[i]);
        fds[i] = -1;
      }
    }
    if (!progress) {
      static int idle;
      if (++idle > 20)
        break;
      usleep(100000);
    }
  }
  snprintf(line, sizeof(line), "%d\n", connected);
  (void)write(ready, line, strlen(line));
  while (read(hold, &c, 1) < 0 && errno == EINTR) {
  }
  _exit(0);
}

static void flood_start(flood_t* f, const char* path, int uid, int gid, int mode, int n,
                        const char* name) {
  int rp[2], hp[2];
  sb__props_t props;
  sb__buf_t hs = {0};
  char* body = NULL;
  memset(f, 0, sizeof(*f));
  memset(&props, 0, sizeof(props));
  props.name = (char*)name;
  props.type = SB_TEXT;
  if (mode == FLOOD_BIG) {
    /* The magic and a length of BIG_FRAME: the body follows, never finished. */
    uint8_t v[SB_VARINT_MAX_LEN];
    sb__buf_append(&hs, SB_MAGIC, SB_MAGIC_LEN);
    sb__buf_append(&hs, v, sb__varint_encode(BIG_FRAME, v));
    body = malloc(BIG_FRAME);
    ASSERT_NOT_NULL(body);
    memset(body, ' ', BIG_FRAME);
  } else if (mode == FLOOD_STREAM) {
    ASSERT_OK(sb__handshake_encode(&props, &hs));
  }
  ASSERT_OK(pipe2(rp, O_CLOEXEC));
  ASSERT_OK(pipe2(hp, O_CLOEXEC));
  f->pid = fork();
  ASSERT_GE(f->pid, 0);
  if (f->pid == 0) {
    close(rp[0]);
    close(hp[1]);
    flood_child(path, uid, gid, mode, n, (const char*)hs.data, hs.len, body, rp[1],
                hp[0]);
  }
  if (nflood_pids < 8)
    flood_pids[nflood_pids++] = f->pid;
  close(rp[1]);
  close(hp[0]);
  sb__buf_free(&hs);
  free(body);
  f->ready = rp[0];
  f->hold = hp[1];
  fcntl(f->ready, F_SETFL, O_NONBLOCK);
}

static int flood_ready(void* arg) {
  flood_t* f = arg;
  ssize_t k = read(f->ready, f->report + f->got, sizeof(f->report) - 1 - f->got);
  if (k > 0)
    f->got += (size_t)k;
  f->report[f->got] = '\0';
  return strchr(f->report, '\n') != NULL;
}

/* Waits (the loop running) until the child has made its connections; returns how
 * many connected. */
static int flood_wait(uv_loop_t* loop, flood_t* f) {
  if (!sb_it_run_until(loop, 600000, flood_ready, f))
    sb_test_fail(__FILE__, __LINE__, "the flood did not finish connecting");
  return atoi(f->report);
}

static void flood_stop(flood_t* f) {
  int status, i;
  for (i = 0; i < nflood_pids; i++) {
    if (flood_pids[i] == f->pid)
      flood_pids[i] = 0;
  }
  close(f->hold);
  close(f->ready);
  while (waitpid(f->pid, &status, 0) < 0 && errno == EINTR) {
  }
}

/* ---- the service ---- */

static void daemon_start(sb_it_daemon_t* d, uv_loop_t* loop, const char* tag,
                         const char* extra) {
  uv_fs_t req;
  sb_it_daemon_start_logfile(d, loop, tag, NULL, extra, "service.log");
  /* Anyone may reach the socket: the limits alone decide now. */
  ASSERT_OK(uv_fs_chmod(NULL, &req, d->bind_path, 0666, NULL));
  uv_fs_req_cleanup(&req);
  ASSERT_OK(uv_fs_chmod(NULL, &req, d->dir, 0755, NULL));
  uv_fs_req_cleanup(&req);
}

/* Runs sbcat (as uid/gid, or as ourselves with -1) with input as its stream name. */
static void run_sbcat(uv_loop_t* loop, sb_it_daemon_t* d, const char* name,
                      const char* input, int uid, int gid, sb_it_result_t* res) {
  sb_it_run_tool_as(loop, "sbcat", SB_IT_ARGS("--name", name, "--server", d->address),
                    input, strlen(input), res, uid, gid);
}

/* The archived stream's bytes equal input. */
static void expect_archived(sb_it_daemon_t* d, const char* name, const char* input) {
  char path[1024];
  char* got;
  size_t len;
  char needle[300];
  snprintf(path, sizeof(path), "%s/%s.log", d->archive_dir, name);
  snprintf(needle, sizeof(needle), "\"%s\" closed: ", name);
  sb_it_wait_file(d->loop, d->log_file, needle, 1, 60000);
  got = sb_it_read_file(path, &len);
  if (got == NULL)
    sb_test_fail(__FILE__, __LINE__, "%s was not archived (refused?)", name);
  ASSERT_MEM_EQ(got, len, input, strlen(input));
  free(got);
}

/* One user (three processes, each opening 300 streams) while another user writes: the
 * other's stream is still taken, and the flood is refused by max_streams_per_user. */
TEST_IMPL(security_user_flood_leaves_others_served) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  sb_it_result_t res;
  flood_t f[3];
  int ua, ga, ub, gb, i, total = 0;
  need_root();
  add_user('a', &ua, &ga);
  add_user('b', &ub, &gb);
  ASSERT_OK(uv_loop_init(&loop));
  daemon_start(&d, &loop, "userflood",
               "\"max_streams\": 512, \"handshake_timeout_ms\": 120000");
  for (i = 0; i < 3; i++) {
    char name[32];
    snprintf(name, sizeof(name), "flood/p%d", i);
    flood_start(&f[i], d.bind_path, ua, ga, FLOOD_STREAM, 300, name);
  }
  for (i = 0; i < 3; i++)
    total += flood_wait(&loop, &f[i]);
  ASSERT_EQ(total, 900);
  run_sbcat(&loop, &d, "other/user", "another user's line\n", ub, gb, &res);
  ASSERT_EQ(res.exit_status, 0);
  sb_it_result_free(&res);
  expect_archived(&d, "other/user", "another user's line\n");
  sb_it_wait_file(&loop, d.log_file, "max_streams_per_user reached", 1, 30000);
  for (i = 0; i < 3; i++)
    flood_stop(&f[i]);
  sb_it_daemon_close(&d);
  ASSERT_OK(uv_loop_close(&loop));
  remove_users();
}

/* 10,000 silent connections of one user (no handshake byte, and a handshake timeout
 * long enough that none is cut meanwhile): root's own sbcat is still served. */
TEST_IMPL(security_silent_flood_leaves_root_served) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  sb_it_result_t res;
  flood_t f;
  int ua, ga, n;
  need_root();
  add_user('s', &ua, &ga);
  ASSERT_OK(uv_loop_init(&loop));
  daemon_start(&d, &loop, "silent",
               "\"max_streams\": 512, \"max_handshakes\": 64, "
               "\"handshake_timeout_ms\": 120000");
  flood_start(&f, d.bind_path, ua, ga, FLOOD_SILENT, 10000, "x");
  n = flood_wait(&loop, &f);
  fprintf(stderr, "%d silent connections made\n", n);
  ASSERT_EQ(n, 10000);
  run_sbcat(&loop, &d, "root/line", "root gets through\n", -1, -1, &res);
  ASSERT_EQ(res.exit_status, 0);
  sb_it_result_free(&res);
  expect_archived(&d, "root/line", "root gets through\n");
  sb_it_wait_file(&loop, d.log_file, "its user's share of max_handshakes reached", 1,
                  30000);
  flood_stop(&f);
  sb_it_daemon_close(&d);
  ASSERT_OK(uv_loop_close(&loop));
  remove_users();
}

/* VmRSS of a process, in bytes. */
static uint64_t rss_of(int pid) {
  char path[64];
  char* text;
  const char* p;
  size_t len;
  uint64_t kb = 0;
  snprintf(path, sizeof(path), "/proc/%d/status", pid);
  text = sb_it_read_file(path, &len);
  ASSERT_NOT_NULL(text);
  p = strstr(text, "VmRSS:");
  ASSERT_NOT_NULL(p);
  kb = strtoull(p + 6, NULL, 10);
  free(text);
  return kb * 1024;
}

/* 2,000 unfinished 1 MiB handshakes (limits on count set high, so only the memory
 * bound holds): the service's RSS stays under its idle RSS + handshake_memory_max +
 * 64 MiB. */
TEST_IMPL(security_handshake_memory_bounded) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  sb_it_result_t res;
  flood_t f;
  uint64_t idle, busy;
  int ua, ga;
  need_root();
  add_user('m', &ua, &ga);
  ASSERT_OK(uv_loop_init(&loop));
  daemon_start(&d, &loop, "hsmem",
               "\"max_streams\": 100000, \"max_handshakes\": 100000, "
               "\"handshake_timeout_ms\": 600000, \"log_level\": \"info\"");
  idle = rss_of(d.proc.pid);
  flood_start(&f, d.bind_path, ua, ga, FLOOD_BIG, 2000, "x");
  ASSERT_EQ(flood_wait(&loop, &f), 2000);
  busy = rss_of(d.proc.pid);
  fprintf(stderr, "RSS idle %llu MiB, with 2,000 big handshakes %llu MiB\n",
          (unsigned long long)(idle >> 20), (unsigned long long)(busy >> 20));
  ASSERT_LE(busy, idle + (16u << 20) + (64u << 20));
  sb_it_wait_file(&loop, d.log_file, "handshake_memory_max is", 1, 30000);
  /* And the service still serves. */
  run_sbcat(&loop, &d, "after/memory", "still here\n", -1, -1, &res);
  ASSERT_EQ(res.exit_status, 0);
  sb_it_result_free(&res);
  expect_archived(&d, "after/memory", "still here\n");
  flood_stop(&f);
  sb_it_daemon_close(&d);
  ASSERT_OK(uv_loop_close(&loop));
  remove_users();
}

/* Sends a handshake on a new connection to path and closes it. */
static void send_raw(const char* path, const void* data, size_t len) {
  struct sockaddr_un sa;
  const char* p = data;
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, path, strlen(path));
  ASSERT_OK(connect(fd, (struct sockaddr*)&sa, sizeof(sa)));
  while (len > 0) {
    ssize_t k = send(fd, p, len, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      break;
    p += k;
    len -= (size_t)k;
  }
  close(fd);
}

/* 60 handshakes with a 1 MB content type full of escape sequences: the log keeps its
 * earlier lines (nothing rotated away), cut fields say their length, and no raw
 * control byte reaches it. */
TEST_IMPL(security_log_flood_keeps_log) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  sb__props_t props;
  sb__buf_t hs = {0};
  char *ctype, *log;
  size_t len, i, ctl = 0;
  int k;
  need_root();
  ASSERT_OK(uv_loop_init(&loop));
  daemon_start(&d, &loop, "logflood", "\"log_level\": \"info\"");
  ctype = malloc(1000001);
  ASSERT_NOT_NULL(ctype);
  /* An escape sequence, BEL and a line break every 1,000 bytes (the JSON, with
   * them escaped, stays within the 1 MiB frame). */
  for (i = 0; i < 1000000; i++)
    ctype[i] = i % 1000 < 7 ? "\x1b[2J\x07\r\n"[i % 1000] : 'a';
  ctype[1000000] = '\0';
  memset(&props, 0, sizeof(props));
  props.type = SB_TEXT;
  props.content_type = ctype;
  for (k = 0; k < 60; k++) {
    char name[32];
    snprintf(name, sizeof(name), "flood/ct%d", k);
    props.name = name;
    hs.len = 0;
    ASSERT_OK(sb__handshake_encode(&props, &hs));
    send_raw(d.bind_path, hs.data, hs.len);
  }
  sb__buf_free(&hs);
  free(ctype);
  sb_it_wait_file(&loop, d.log_file, "\" closed: ", 60, 120000);
  log = sb_it_read_file(d.log_file, &len);
  ASSERT_NOT_NULL(log);
  ASSERT(sb_it_contains(log, len, "serving "));
  ASSERT(sb_it_contains(log, len, "bytes in all)"));
  for (i = 0; i < len; i++)
    ctl += ((unsigned char)log[i] < 0x20 && log[i] != '\n') || log[i] == 0x7f;
  if (ctl > 0)
    sb_test_fail(__FILE__, __LINE__, "%zu raw control bytes in the log", ctl);
  free(log);
  sb_it_daemon_close(&d);
  ASSERT_OK(uv_loop_close(&loop));
}

/* allowed_groups: a user listed in the group database but whose process does not
 * hold the group (its supplementary groups dropped, as libuv's setuid does) is
 * refused, and sbcat says so with a non-zero exit; a user whose process holds the
 * group (setpriv --init-groups) is served. */
TEST_IMPL(security_sbcat_refused_by_groups_fails) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  sb_it_result_t res;
  char extra[128], cmd[256], path[1024], sbcat[4096], uid_s[32];
  int ua, ga;
  size_t len;
  need_root();
  add_user('g', &ua, &ga);
  snprintf(group_name, sizeof(group_name), "sbslG%ld", (long)getpid());
  snprintf(cmd, sizeof(cmd), "groupadd %s && usermod -a -G %s %s", group_name,
           group_name, users[nusers - 1]);
  if (system(cmd) != 0)
    sb_test_fail(__FILE__, __LINE__, "%s failed", cmd);
  ASSERT_OK(uv_loop_init(&loop));
  snprintf(extra, sizeof(extra), "\"allowed_groups\": \"%s\"", group_name);
  daemon_start(&d, &loop, "groups", extra);
  run_sbcat(&loop, &d, "groups/dropped", "not mine to write\n", ua, ga, &res);
  if (res.exit_status == 0)
    sb_test_fail(__FILE__, __LINE__, "sbcat exited 0 though refused: %.*s",
                 (int)res.err.len, res.err.data ? res.err.data : "");
  sb_it_result_free(&res);
  sb_it_wait_file(&loop, d.log_file, "is in none of allowed_groups", 1, 30000);
  snprintf(path, sizeof(path), "%s/groups/dropped.log", d.archive_dir);
  ASSERT_NULL(sb_it_read_file(path, &len));
  /* The same user with its groups: served. */
  {
    const char* argv[] = {
        "/usr/bin/setpriv", "--reuid", uid_s, "--regid", NULL,
        "--init-groups",    "--",      sbcat, "--name",  "groups/held",
        "--server",         d.address, NULL};
    char gid_s[32];
    snprintf(uid_s, sizeof(uid_s), "%d", ua);
    snprintf(gid_s, sizeof(gid_s), "%d", ga);
    argv[4] = gid_s;
    sb_it_program("sbcat", sbcat, sizeof(sbcat));
    sb_it_run(&loop, argv, NULL, "mine\n", 5, NULL, 0, &res);
    ASSERT_EQ(res.exit_status, 0);
    sb_it_result_free(&res);
    expect_archived(&d, "groups/held", "mine\n");
  }
  sb_it_daemon_close(&d);
  ASSERT_OK(uv_loop_close(&loop));
  remove_users();
}

/* max_streams 1, taken by a stream we hold open: a second sbcat is refused, and exits
 * non-zero (its bytes were not taken). */
TEST_IMPL(security_sbcat_refused_by_max_streams_fails) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  sb_it_result_t res;
  sb__props_t props;
  sb__buf_t hs = {0};
  struct sockaddr_un sa;
  int fd;
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_daemon_start_logfile(&d, &loop, "maxstreams", NULL, "\"max_streams\": 1",
                             "service.log");
  memset(&props, 0, sizeof(props));
  props.name = "held/open";
  props.type = SB_TEXT;
  ASSERT_OK(sb__handshake_encode(&props, &hs));
  fd = socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, d.bind_path, strlen(d.bind_path));
  ASSERT_OK(connect(fd, (struct sockaddr*)&sa, sizeof(sa)));
  ASSERT_EQ(send(fd, hs.data, hs.len, MSG_NOSIGNAL), (ssize_t)hs.len);
  sb__buf_free(&hs);
  sb_it_wait_file(&loop, d.log_file, "\"held/open\" opened", 1, 30000);
  run_sbcat(&loop, &d, "refused/one", "lost unless told\n", -1, -1, &res);
  if (res.exit_status == 0)
    sb_test_fail(__FILE__, __LINE__, "sbcat exited 0 though max_streams refused it");
  ASSERT(sb_it_contains(res.err.data, res.err.len, "refused/one"));
  sb_it_result_free(&res);
  sb_it_wait_file(&loop, d.log_file, "max_streams reached", 1, 30000);
  close(fd);
  sb_it_daemon_close(&d);
  ASSERT_OK(uv_loop_close(&loop));
}

/* A user takes a name first (squatting): root's stream of the same name goes to
 * NAME+1, and the first sidecar says whose stream the squatter's was. */
TEST_IMPL(security_squatted_name_goes_to_plus_one) {
  uv_loop_t loop;
  sb_it_daemon_t d;
  sb_it_result_t res;
  char path[1024];
  char* json;
  size_t len;
  int ua, ga;
  need_root();
  add_user('q', &ua, &ga);
  ASSERT_OK(uv_loop_init(&loop));
  daemon_start(&d, &loop, "squat", NULL);
  run_sbcat(&loop, &d, "squat/name", "squatter\n", ua, ga, &res);
  ASSERT_EQ(res.exit_status, 0);
  sb_it_result_free(&res);
  expect_archived(&d, "squat/name", "squatter\n");
  run_sbcat(&loop, &d, "squat/name", "the owner\n", -1, -1, &res);
  ASSERT_EQ(res.exit_status, 0);
  sb_it_result_free(&res);
  sb_it_wait_file(&loop, d.log_file, "\"squat/name\" closed: ", 2, 60000);
  snprintf(path, sizeof(path), "%s/squat/name+1.log", d.archive_dir);
  json = sb_it_read_file(path, &len);
  ASSERT_NOT_NULL(json);
  ASSERT_MEM_EQ(json, len, "the owner\n", 10);
  free(json);
  snprintf(path, sizeof(path), "%s/squat/name.json", d.archive_dir);
  json = sb_it_read_file(path, &len);
  ASSERT_NOT_NULL(json);
  {
    cJSON* root = cJSON_ParseWithLength(json, len);
    cJSON* client = cJSON_GetObjectItemCaseSensitive(root, "client");
    cJSON* uid = cJSON_GetObjectItemCaseSensitive(client, "uid");
    ASSERT(cJSON_IsNumber(uid));
    ASSERT_EQ(uid->valuedouble, ua);
    cJSON_Delete(root);
  }
  free(json);
  sb_it_daemon_close(&d);
  ASSERT_OK(uv_loop_close(&loop));
  remove_users();
}

#endif
