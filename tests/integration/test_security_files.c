/*
 * test_security_files.c - a machine-wide service that trusts no local user, on Linux:
 * what it creates is its own (modes under any umask), reading is not writing
 * (reader_group, allowed_groups), it never writes through a planted link, and neither
 * it nor its clients use a socket in a directory someone else controls.
 *
 * Run as root, with throwaway users and groups the tests create and remove (useradd,
 * groupadd); skipped with a message elsewhere. A "victim" file stands for a root-only
 * file an attacker would like overwritten: its content and mode must be unchanged.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "helpers.h"
#include "streams.h"
#include "task.h"

#ifndef _WIN32
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- throwaway users and groups, removed at exit whatever happens ---- */

static char sec_users[4][32];
static char sec_groups[4][32];
static int sec_nusers, sec_ngroups;
static char sec_tmpfs[600];

static void sec_cleanup(void) {
  char cmd[256];
  int i;
  if (sec_tmpfs[0])
    umount2(sec_tmpfs, MNT_DETACH);
  sec_tmpfs[0] = '\0';
  for (i = 0; i < sec_nusers; i++) {
    snprintf(cmd, sizeof(cmd), "userdel %s >/dev/null 2>&1", sec_users[i]);
    if (system(cmd) != 0)
      fprintf(stderr, "could not remove the test user %s\n", sec_users[i]);
  }
  for (i = 0; i < sec_ngroups; i++) {
    snprintf(cmd, sizeof(cmd), "groupdel %s >/dev/null 2>&1", sec_groups[i]);
    if (system(cmd) != 0)
      fprintf(stderr, "could not remove the test group %s\n", sec_groups[i]);
  }
  sec_nusers = sec_ngroups = 0;
}

static void sec_need_root(void) {
  static int registered;
  if (geteuid() != 0)
    TEST_SKIP("needs root: it creates throwaway users and groups, and runs the "
              "service as root with files owned by them");
  if (!registered) {
    atexit(sec_cleanup);
    registered = 1;
  }
}

static int sec_run(const char* fmt, ...) {
  char cmd[2048];
  va_list ap;
  int st;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof(cmd), fmt, ap);
  va_end(ap);
  st = system(cmd);
  return st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* A new group sbtTAG<pid>; its gid. */
static gid_t sec_group(const char* tag, char* name, size_t size) {
  struct group* gr;
  snprintf(name, size, "sbt%s%d", tag, (int)getpid() % 100000);
  ASSERT_EQ(sec_run("groupadd %s", name), 0);
  snprintf(sec_groups[sec_ngroups++], sizeof(sec_groups[0]), "%s", name);
  gr = getgrnam(name);
  ASSERT_NOT_NULL(gr);
  return gr->gr_gid;
}

/* A new user sbtTAG<pid> whose only group is group; its uid. */
static uid_t sec_user(const char* tag, const char* group, char* name, size_t size) {
  struct passwd* pw;
  snprintf(name, size, "sbt%s%d", tag, (int)getpid() % 100000);
  ASSERT_EQ(sec_run("useradd -M -N -d /nonexistent -s /usr/sbin/nologin -g %s %s",
                    group, name),
            0);
  snprintf(sec_users[sec_nusers++], sizeof(sec_users[0]), "%s", name);
  pw = getpwnam(name);
  ASSERT_NOT_NULL(pw);
  return pw->pw_uid;
}

/* Whether user can read path (cat as that user). */
static int sec_can_read(const char* user, const char* path) {
  return sec_run("runuser -u %s -- cat '%s' >/dev/null 2>&1", user, path) == 0;
}

/* ---- files ---- */

static unsigned sec_mode(const char* path) {
  struct stat st;
  ASSERT_EQ(lstat(path, &st), 0);
  return (unsigned)(st.st_mode & 07777);
}

/* A root-only file an attacker would like the service to overwrite. */
static void sec_victim(const char* dir, char* path, size_t size) {
  snprintf(path, size, "%s/victim", dir);
  sb_it_write_file(path, "root's secret\n", 14);
  ASSERT_EQ(chmod(path, 0600), 0);
}

static void sec_victim_intact(const char* path) {
  size_t len = 0;
  char* text = sb_it_read_file(path, &len);
  ASSERT_NOT_NULL(text);
  ASSERT_MEM_EQ(text, len, "root's secret\n", 14);
  free(text);
  ASSERT_EQ(sec_mode(path), 0600);
}

/*
 * Every file and directory under dir the service made must have the mode wanted
 * (files: file_mode; directories: dir_mode), and group gid unless gid is -1. The test's
 * own config file is skipped. Returns the number checked.
 */
static int sec_check_tree(const char* dir, unsigned file_mode, unsigned dir_mode,
                          long gid) {
  char cmd[1200], line[1400];
  FILE* p;
  int n = 0;
  snprintf(cmd, sizeof(cmd), "find '%s' -printf '%%m %%g %%y %%p\\n'", dir);
  p = popen(cmd, "r");
  ASSERT_NOT_NULL(p);
  while (fgets(line, sizeof(line), p) != NULL) {
    unsigned mode;
    char type, path[1300], group[64];
    struct stat st;
    if (sscanf(line, "%o %63s %c %1299[^\n]", &mode, group, &type, path) != 4)
      continue;
    if (strstr(path, "streambroker.json") != NULL || type == 's')
      continue;
    if (lstat(path, &st) != 0)
      continue; /* gone since find saw it (a transient file) */
    if (type == 'd') {
      if (mode != dir_mode)
        sb_test_fail(__FILE__, __LINE__, "directory %s: mode %o, want %o", path, mode,
                     dir_mode);
    } else if (mode != file_mode) {
      sb_test_fail(__FILE__, __LINE__, "file %s: mode %o, want %o", path, mode,
                   file_mode);
    }
    if (gid >= 0 && (long)st.st_gid != gid)
      sb_test_fail(__FILE__, __LINE__, "%s: group %ld, want %ld", path, (long)st.st_gid,
                   gid);
    n++;
  }
  pclose(p);
  return n;
}

static void sec_sbcat(uv_loop_t* loop, const char* address, const char* name,
                      const char* text, int uid, int gid, sb_it_result_t* res) {
  sb_it_run_tool_as(loop, "sbcat", SB_IT_ARGS("--name", name, "--server", address),
                    text, strlen(text), res, uid, gid);
}

static void sec_sbcat_ok(uv_loop_t* loop, sb_it_daemon_t* d, const char* name,
                         const char* text) {
  sb_it_result_t res;
  sec_sbcat(loop, d->address, name, text, -1, -1, &res);
  if (res.exit_status != 0) {
    sb_it_daemon_dump(d);
    sb_test_fail(__FILE__, __LINE__, "sbcat exited %d: %.*s", (int)res.exit_status,
                 (int)res.err.len, res.err.data);
  }
  sb_it_result_free(&res);
}

/* root's sbcat to a socket that the fake server rec serves at sock: refused, and
 * the fake server got no connection. */
static void sec_expect_trap_refused(uv_loop_t* loop, const char* address,
                                    sb_it_recorder_t* rec, const char* sock) {
  sb_it_result_t res;
  sec_sbcat(loop, address, "trap/s", "root's token=abc\n", -1, -1, &res);
  if (res.exit_status == 0 || !sb_it_contains(res.err.data, res.err.len, "refused"))
    sb_test_fail(__FILE__, __LINE__,
                 "sbcat exited %d, want non-zero and a refusal: %.*s",
                 (int)res.exit_status, (int)res.err.len, res.err.data);
  sb_it_result_free(&res);
  ASSERT_EQ(rec->nconns, 0);
  sb_it_recorder_close(rec);
  unlink(sock);
}

static void sec_stop(sb_it_daemon_t* d) {
  sb_it_daemon_kill(d, SIGTERM);
  sb_it_daemon_wait_exit(d, 60000);
}

/* The daemon's config with one more member, written back (before a restart). */
static void sec_config_add(sb_it_daemon_t* d, const char* member) {
  size_t len;
  char* text = sb_it_read_file(d->config_path, &len);
  char* out;
  char* end;
  ASSERT_NOT_NULL(text);
  end = strrchr(text, '}');
  ASSERT_NOT_NULL(end);
  *end = '\0';
  out = malloc(len + strlen(member) + 16);
  ASSERT_NOT_NULL(out);
  sprintf(out, "%s,\n  %s\n}\n", text, member);
  sb_it_write_file(d->config_path, out, strlen(out));
  free(out);
  free(text);
}

/* Whether this test process holds fd open, not close-on-exec, on target: the service
 * inherited it (ctest leaves its own log open to its children); it did not open it. */
static int sec_inherited(int fd, const char* target) {
  char link[64], mine[400];
  ssize_t len;
  snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
  len = readlink(link, mine, sizeof(mine) - 1);
  if (len <= 0)
    return 0;
  mine[len] = '\0';
  return strcmp(mine, target) == 0 && (fcntl(fd, F_GETFD) & FD_CLOEXEC) == 0;
}

/* Every descriptor of a running process but 0, 1 and 2 (and those it inherited from
 * this one) is close-on-exec (Linux's /proc/PID/fdinfo). Returns how many were
 * looked at. */
static int sec_all_cloexec(int pid) {
  char path[128], line[256];
  DIR* dir;
  struct dirent* e;
  int n = 0;
  snprintf(path, sizeof(path), "/proc/%d/fdinfo", pid);
  dir = opendir(path);
  ASSERT_NOT_NULL(dir);
  while ((e = readdir(dir)) != NULL) {
    char info[400];
    FILE* f;
    int fd = atoi(e->d_name);
    unsigned long flags = 0;
    if (e->d_name[0] == '.' || fd <= 2)
      continue;
    snprintf(info, sizeof(info), "%s/%s", path, e->d_name);
    if ((f = fopen(info, "r")) == NULL)
      continue; /* closed meanwhile */
    while (fgets(line, sizeof(line), f) != NULL)
      if (sscanf(line, "flags: %lo", &flags) == 1)
        break;
    fclose(f);
    if ((flags & O_CLOEXEC) == 0) {
      char link[400], target[400];
      ssize_t len;
      snprintf(link, sizeof(link), "/proc/%d/fd/%d", pid, fd);
      len = readlink(link, target, sizeof(target) - 1);
      target[len > 0 ? len : 0] = '\0';
      if (sec_inherited(fd, target))
        continue;
      closedir(dir);
      sb_test_fail(__FILE__, __LINE__, "descriptor %d (%s) is not close-on-exec", fd,
                   target);
    }
    n++;
  }
  closedir(dir);
  return n;
}

static int sec_exited(void* arg) {
  return !((sb_it_daemon_t*)arg)->running;
}

/* Starts the (stopped) daemon again on its config: it must refuse to start, exit 4 and
 * say needle on stderr. One that starts anyway is killed, and the test fails. */
static void sec_expect_start_refused(sb_it_daemon_t* d, const char* needle) {
  size_t before = d->log.len;
  sb_it_daemon_respawn(d);
  sb_it_run_until(d->loop, 30000, sec_exited, d);
  if (d->running) {
    uv_process_kill(&d->proc, SIGKILL);
    sb_it_daemon_wait_exit(d, 30000);
    sb_test_fail(__FILE__, __LINE__,
                 "streambrokerd started; want a refusal saying \"%s\"", needle);
  }
  if (d->exit_status != 4 ||
      !sb_it_contains(d->log.data + before, d->log.len - before, needle)) {
    sb_it_daemon_dump(d);
    sb_test_fail(__FILE__, __LINE__, "streambrokerd exited %d; want 4 and \"%s\"",
                 (int)d->exit_status, needle);
  }
}

/* Sets the string member key of the daemon's config to value (before a restart). */
static void sec_config_set(sb_it_daemon_t* d, const char* key, const char* value) {
  char member[1200], head[128];
  size_t len;
  char* text = sb_it_read_file(d->config_path, &len);
  char* at;
  char* end;
  char* out;
  ASSERT_NOT_NULL(text);
  snprintf(head, sizeof(head), "\"%s\": \"", key);
  snprintf(member, sizeof(member), "\"%s\": \"%s\"", key, value);
  at = strstr(text, head);
  ASSERT_NOT_NULL(at);
  end = strchr(at + strlen(head), '"');
  ASSERT_NOT_NULL(end);
  out = malloc(len + strlen(member) + 1);
  ASSERT_NOT_NULL(out);
  memcpy(out, text, (size_t)(at - text));
  strcpy(out + (at - text), member);
  strcat(out, end + 1);
  sb_it_write_file(d->config_path, out, strlen(out));
  free(out);
  free(text);
}

/* Runs streambrokerd --check-config on cfg_path: it must exit 4 and say needle. */
static void sec_expect_refused(uv_loop_t* loop, const char* first, const char* cfg_path,
                               const char* needle) {
  char prog[4096];
  const char* argv[] = {prog, first, cfg_path, NULL};
  sb_it_result_t res;
  sb_it_program("streambrokerd", prog, sizeof(prog));
  sb_it_run(loop, argv, NULL, "", 0, NULL, 0, &res);
  if (res.exit_status != 4 || !sb_it_contains(res.err.data, res.err.len, needle))
    sb_test_fail(__FILE__, __LINE__,
                 "streambrokerd %s: exit %d, want 4 and \"%s\": %.*s", first,
                 (int)res.exit_status, needle, (int)res.err.len, res.err.data);
  sb_it_result_free(&res);
}
#endif /* !_WIN32 */

/*
 * Under umask 000 and 077, in archive mode and in spool mode (durability "always",
 * so the spool holds every byte): every file the service makes (spool.db and its
 * -wal/-shm, spool.reserve, the lock, the archive's .log and .json, the log file) is
 * 0600 and every directory (data_dir, the archive, its subdirectories, the log's
 * directory) 0700; the control socket 0660 and the admin socket 0600. Every
 * descriptor the services hold is close-on-exec.
 */
TEST_IMPL(security_modes_under_any_umask) {
#ifdef _WIN32
  TEST_SKIP("POSIX modes; the Windows access lists are tested under Wine elsewhere");
#else
  static const mode_t masks[2] = {0, 077};
  uv_loop_t loop;
  int m;
  sec_need_root();
  ASSERT_OK(uv_loop_init(&loop));
  for (m = 0; m < 2; m++) {
    sb_it_daemon_t u, b;
    char sec[700], path[700];
    mode_t old = umask(masks[m]);
    int n;
    /* Archive mode, with a log file in a directory of its own. */
    sb_it_daemon_start_logfile(&u, &loop, "secmu", NULL, NULL, "logs/u.log");
    snprintf(path, sizeof(path), "%s/logs", u.dir);
    /* Spool mode in front of it, with a 1 MiB reserve. */
    sb_it_daemon_start(&b, &loop, "secmb", u.address,
                       "\"durability\": \"always\", \"spool_reserve_bytes\": 1048576");
    umask(old);
    sec_sbcat_ok(&loop, &b, "modes/deep/s1", "one line\n");
    sec_sbcat_ok(&loop, &u, "modes/s2", "another line\n");
    sb_it_wait_settled1(&loop, u.archive_dir, "modes/deep/s1");
    sb_it_wait_settled1(&loop, u.archive_dir, "modes/s2");
    sb_it_daemon_wait_log(&b, "reserve of 1048576 bytes in place", 1, 30000);
    snprintf(sec, sizeof(sec), "%s/spool.db-wal", b.dir);
    ASSERT_EQ(access(sec, F_OK), 0); /* checked while it is there */
    n = sec_check_tree(b.dir, 0600, 0700, -1);
    ASSERT_GE(n, 6); /* dir, lock, spool.db, -wal, -shm, reserve */
    n = sec_check_tree(u.dir, 0600, 0700, -1);
    ASSERT_GE(n, 9); /* dir, lock, db, reserve, archive, 2 subdirs, logs, log, ... */
    ASSERT_EQ(sec_mode(path), 0700);
    ASSERT_EQ(sec_mode(u.log_file), 0600);
    /* Every descriptor they hold (log file, spool, lock, sockets) is close-on-exec. */
    ASSERT_GE(sec_all_cloexec(u.proc.pid), 5);
    ASSERT_GE(sec_all_cloexec(b.proc.pid), 5);
    ASSERT_EQ(sec_mode(b.bind_path) & 0777, 0660);
    {
      const char* admin = strchr(b.admin_address, ':') + 1;
      ASSERT_EQ(sec_mode(admin) & 0777, 0600);
    }
    sb_it_daemon_close(&b);
    sb_it_daemon_close(&u);
  }
  ASSERT_OK(uv_loop_close(&loop));
#endif
}

/*
 * Writing is not reading. The service runs with the socket's group as its group (as
 * systemd's Group= makes it), in a data_dir an older install left 0750 in that group,
 * with allowed_groups that group: a user of it writes a stream, and cannot read the
 * archive, the spool or the log. A second service with reader_group set: a member of
 * that group reads them all (files 0640, directories 2750, in the group), the writer
 * still reads none. reader_group that does not exist: --check-config and the start
 * say so (exit 4).
 */
TEST_IMPL(security_reader_group_reads_writers_do_not) {
#ifdef _WIN32
  TEST_SKIP("POSIX groups; the Windows reader group is in the access lists");
#else
  uv_loop_t loop;
  sb_it_daemon_t d;
  sb_it_result_t res;
  char ga[32], gr[32], writer[32], reader[32], extra[256], path[900], log_path[700];
  gid_t gid_a, gid_r;
  uid_t uid_w;
  int pass;
  sec_need_root();
  ASSERT_OK(uv_loop_init(&loop));
  gid_a = sec_group("a", ga, sizeof(ga));
  gid_r = sec_group("r", gr, sizeof(gr));
  uid_w = sec_user("w", ga, writer, sizeof(writer));
  sec_user("r", gr, reader, sizeof(reader));
  for (pass = 0; pass < 2; pass++) {
    const char* files[4] = {"archive/rd/s.log", "archive/rd/s.json", "spool.db", NULL};
    int i;
    if (pass == 0)
      snprintf(extra, sizeof(extra), "\"allowed_groups\": \"%s\"", ga);
    else
      snprintf(extra, sizeof(extra),
               "\"allowed_groups\": \"%s\", \"reader_group\": \"%s\"", ga, gr);
    /* The service's group is the socket's (systemd's Group=): what it makes gets it. */
    ASSERT_EQ(setegid(gid_a), 0);
    umask(022);
    sb_it_daemon_start_logfile(&d, &loop, pass ? "secrg1" : "secrg0", NULL, extra,
                               "sb.log");
    ASSERT_EQ(setegid(0), 0);
    snprintf(log_path, sizeof(log_path), "%s", d.log_file);
    /* As an older install left it: restart on a data_dir 0750 in the socket's group. */
    sec_stop(&d);
    ASSERT_EQ(chown(d.dir, 0, gid_a), 0);
    ASSERT_EQ(chmod(d.dir, 0750), 0);
    ASSERT_EQ(setegid(gid_a), 0);
    sb_it_daemon_restart(&d);
    ASSERT_EQ(setegid(0), 0);
    sec_sbcat(&loop, d.address, "rd/s", "password=hunter2\n", (int)uid_w, (int)gid_a,
              &res);
    if (res.exit_status != 0) {
      sb_it_daemon_dump(&d);
      sb_test_fail(__FILE__, __LINE__, "the writer was refused: %.*s", (int)res.err.len,
                   res.err.data);
    }
    sb_it_result_free(&res);
    sb_it_wait_settled1(&loop, d.archive_dir, "rd/s");
    for (i = 0; i < 4; i++) {
      if (files[i] != NULL)
        snprintf(path, sizeof(path), "%s/%s", d.dir, files[i]);
      else
        snprintf(path, sizeof(path), "%s", log_path);
      if (sec_can_read(writer, path))
        sb_test_fail(__FILE__, __LINE__, "the writer %s (allowed_groups) reads %s",
                     writer, path);
      if (pass == 1 && !sec_can_read(reader, path))
        sb_test_fail(__FILE__, __LINE__, "the reader %s (reader_group) cannot read %s",
                     reader, path);
      if (pass == 0 && sec_can_read(reader, path))
        sb_test_fail(__FILE__, __LINE__, "%s reads %s with no reader_group", reader,
                     path);
    }
    if (pass == 1) {
      snprintf(path, sizeof(path), "%s/archive", d.dir);
      ASSERT_EQ(sec_mode(d.dir), 02750);
      sec_check_tree(path, 0640, 02750, (long)gid_r);
      ASSERT_EQ(sec_mode(log_path), 0640);
    } else {
      ASSERT_EQ(sec_mode(d.dir), 0700);
    }
    sb_it_daemon_close(&d);
  }
  /* A reader_group that does not exist. */
  snprintf(extra, sizeof(extra), "\"reader_group\": \"sbt-no-such-group\"");
  sb_it_daemon_start(&d, &loop, "secrg2", NULL, NULL);
  sec_stop(&d);
  sec_config_add(&d, extra);
  sec_expect_refused(&loop, "--check-config", d.config_path,
                     "reader_group \"sbt-no-such-group\": no such group");
  sec_expect_start_refused(&d, "reader_group \"sbt-no-such-group\": no such group");
  sb_it_daemon_close(&d);
  ASSERT_OK(uv_loop_close(&loop));
#endif
}

/*
 * A NAME.json.tmp link planted in the archive directory, pointing at a root-only file:
 * the stream's sidecar is written anyway (the link removed, the .tmp made anew), the
 * file is untouched, and the log says what was in the way. A NAME.log link takes the
 * next sequence number instead of being written through.
 */
TEST_IMPL(security_symlink_sidecar_tmp) {
#ifdef _WIN32
  TEST_SKIP("symbolic links as an unprivileged user are a POSIX matter here");
#else
  uv_loop_t loop;
  sb_it_daemon_t d;
  char other[512], victim[600], link[900], json[900];
  size_t len;
  char* text;
  sec_need_root();
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_tempdir("secvt", other, sizeof(other));
  sec_victim(other, victim, sizeof(victim));
  sb_it_daemon_start(&d, &loop, "secsl", NULL, NULL);
  snprintf(link, sizeof(link), "%s/planted.json.tmp", d.archive_dir);
  ASSERT_EQ(symlink(victim, link), 0);
  snprintf(link, sizeof(link), "%s/planted2.log", d.archive_dir);
  ASSERT_EQ(symlink(victim, link), 0);
  sec_sbcat_ok(&loop, &d, "planted", "a line\n");
  sec_sbcat_ok(&loop, &d, "planted2", "another line\n");
  sb_it_wait_settled1(&loop, d.archive_dir, "planted");
  sb_it_wait_settled1(&loop, d.archive_dir, "planted2");
  sec_victim_intact(victim);
  snprintf(json, sizeof(json), "%s/planted.json", d.archive_dir);
  text = sb_it_read_file(json, &len);
  ASSERT_NOT_NULL(text);
  {
    cJSON* doc = cJSON_ParseWithLength(text, len);
    const cJSON* name = cJSON_GetObjectItemCaseSensitive(doc, "name");
    ASSERT(cJSON_IsString(name));
    ASSERT_STR_EQ(name->valuestring, "planted");
    ASSERT(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "complete")));
    cJSON_Delete(doc);
  }
  free(text);
  sb_it_daemon_wait_log(&d, "planted.json.tmp was in the way", 1, 30000);
  /* The .log link was skipped, not written through: the stream is planted2+1. */
  snprintf(json, sizeof(json), "%s/planted2+1.log", d.archive_dir);
  text = sb_it_read_file(json, &len);
  ASSERT_NOT_NULL(text);
  ASSERT_MEM_EQ(text, len, "another line\n", 13);
  free(text);
  sb_it_daemon_close(&d);
  ASSERT_OK(uv_loop_close(&loop));
#endif
}

/*
 * The recovery at start finishes a stream an earlier run left without a sidecar,
 * writing NAME.json through NAME.json.tmp: a link planted there is removed, never
 * written through.
 */
TEST_IMPL(security_symlink_recovery_tmp) {
#ifdef _WIN32
  TEST_SKIP("symbolic links as an unprivileged user are a POSIX matter here");
#else
  uv_loop_t loop;
  sb_it_daemon_t d;
  char other[512], victim[600], path[900];
  size_t len;
  char* text;
  sec_need_root();
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_tempdir("secvr", other, sizeof(other));
  sec_victim(other, victim, sizeof(victim));
  sb_it_daemon_start(&d, &loop, "secrc", NULL, NULL);
  sec_stop(&d);
  /* What a killed run leaves: a .log and no sidecar; and the plant. */
  snprintf(path, sizeof(path), "%s/left.log", d.archive_dir);
  sb_it_write_file(path, "left open\n", 10);
  ASSERT_EQ(chmod(path, 0600), 0);
  snprintf(path, sizeof(path), "%s/left.json.tmp", d.archive_dir);
  ASSERT_EQ(symlink(victim, path), 0);
  sb_it_daemon_restart(&d);
  sb_it_daemon_wait_log(&d, "recovered", 1, 30000);
  sec_victim_intact(victim);
  snprintf(path, sizeof(path), "%s/left.json", d.archive_dir);
  text = sb_it_read_file(path, &len);
  ASSERT_NOT_NULL(text);
  ASSERT(sb_it_contains(text, len, "\"recovered\""));
  free(text);
  ASSERT_EQ(sec_mode(path), 0600);
  sb_it_daemon_close(&d);
  ASSERT_OK(uv_loop_close(&loop));
#endif
}

/*
 * spool.reserve swapped for a link to a root-only file while the service runs on a
 * disk too full for the reserve: once room comes back the reserve is made, as a file
 * of its own, and the other file keeps its content (before: truncated and filled with
 * zeros). A link in place of spool.db stops the start, naming it.
 */
TEST_IMPL(security_symlink_spool_reserve) {
#ifdef _WIN32
  TEST_SKIP("needs a small file system: Linux tmpfs, as root");
#else
  uv_loop_t loop;
  sb_it_daemon_t u, b;
  char other[512], victim[600], path[900], filler[900];
  size_t len;
  char* cfg;
  char* data;
  FILE* f;
  struct stat st;
  int i;
  sec_need_root();
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_tempdir("secvs", other, sizeof(other));
  sec_victim(other, victim, sizeof(victim));
  sb_it_daemon_start(&u, &loop, "secru", NULL, NULL);
  sb_it_daemon_start(&b, &loop, "secrb", u.address,
                     "\"durability\": \"always\", \"spool_reserve_bytes\": 1048576");
  sec_stop(&b);
  /* data_dir on a 4 MiB tmpfs, 2.5 MiB of it taken: less than twice the reserve free.
   */
  cfg = sb_it_read_file(b.config_path, &len);
  ASSERT_NOT_NULL(cfg);
  if (mount("sbsecres", b.dir, "tmpfs", 0, "size=4m,mode=0700") != 0) {
    free(cfg);
    sb_it_daemon_close(&b);
    sb_it_daemon_close(&u);
    TEST_SKIP("cannot mount a tmpfs here");
  }
  snprintf(sec_tmpfs, sizeof(sec_tmpfs), "%s", b.dir);
  sb_it_write_file(b.config_path, cfg, len);
  free(cfg);
  snprintf(filler, sizeof(filler), "%s/filler", b.dir);
  data = calloc(1, 128u * 1024u);
  ASSERT_NOT_NULL(data);
  f = fopen(filler, "wb");
  ASSERT_NOT_NULL(f);
  for (i = 0; i < 20; i++)
    ASSERT_EQ(fwrite(data, 1, 128u * 1024u, f), 128u * 1024u);
  ASSERT_EQ(fclose(f), 0);
  free(data);
  sb_it_daemon_restart(&b);
  snprintf(path, sizeof(path), "%s/spool.reserve", b.dir);
  ASSERT_NE(lstat(path, &st), 0); /* no room for it yet */
  ASSERT_EQ(symlink(victim, path), 0);
  /* Room again; a stream makes the spool look at the disk. */
  ASSERT_EQ(remove(filler), 0);
  sec_sbcat_ok(&loop, &b, "reserve/s", "a line\n");
  sb_it_daemon_wait_log(&b, "reserve of 1048576 bytes in place", 1, 30000);
  sec_victim_intact(victim);
  ASSERT_EQ(lstat(path, &st), 0);
  ASSERT(S_ISREG(st.st_mode));
  ASSERT_EQ(st.st_size, 1048576);
  ASSERT_EQ(st.st_mode & 07777, 0600);
  /* A link in place of spool.db: the start is refused, naming it. */
  sec_stop(&b);
  snprintf(path, sizeof(path), "%s/spool.db", b.dir);
  ASSERT_EQ(rename(path, filler), 0);
  ASSERT_EQ(symlink(victim, path), 0);
  sec_expect_start_refused(&b, "a symbolic link");
  sec_victim_intact(victim);
  sb_it_daemon_close(&b);
  sb_it_daemon_close(&u);
  ASSERT_EQ(umount2(sec_tmpfs, MNT_DETACH), 0);
  sec_tmpfs[0] = '\0';
  ASSERT_OK(uv_loop_close(&loop));
#endif
}

/*
 * The socket-directory trap. A socket directory owned by another user: the service
 * refuses to start (exit 4, naming control_pipe), --check-config too. A data_dir owned
 * by that user, or under a directory of theirs: refused the same way. A fake server in
 * a directory anyone may write: sbcat (as root) refuses to connect, exits non-zero,
 * and the fake server receives nothing; in a sticky directory of root's (like /tmp), a
 * socket another user owns is refused too.
 */
TEST_IMPL(security_socket_dir_trap) {
#ifdef _WIN32
  TEST_SKIP("Unix socket directories");
#else
  uv_loop_t loop;
  sb_it_daemon_t d;
  sb_it_recorder_t rec;
  char gx[32], attacker[32], trap[512], member[2048], address[700], sock[600];
  uid_t uid_x;
  gid_t gid_x;
  sec_need_root();
  ASSERT_OK(uv_loop_init(&loop));
  gid_x = sec_group("x", gx, sizeof(gx));
  uid_x = sec_user("x", gx, attacker, sizeof(attacker));

  /* The service: a socket directory that belongs to the attacker. */
  sb_it_tempdir("sectrap", trap, sizeof(trap));
  ASSERT_EQ(chown(trap, uid_x, gid_x), 0);
  ASSERT_EQ(chmod(trap, 0755), 0);
  sb_it_daemon_start(&d, &loop, "sectd", NULL, NULL);
  sec_stop(&d);
  {
    /* The same config, the control pipe moved into the trap. */
    size_t len;
    char* text = sb_it_read_file(d.config_path, &len);
    char* at;
    char* out;
    ASSERT_NOT_NULL(text);
    at = strstr(text, d.address);
    ASSERT_NOT_NULL(at);
    snprintf(address, sizeof(address), "unix:%s/sb.sock", trap);
    out = malloc(len + strlen(address) + 1);
    ASSERT_NOT_NULL(out);
    memcpy(out, text, (size_t)(at - text));
    strcpy(out + (at - text), address);
    strcat(out, at + strlen(d.address));
    sb_it_write_file(d.config_path, out, strlen(out));
    free(out);
    free(text);
  }
  snprintf(member, sizeof(member), "control_pipe \"%s\": %s is owned by uid %d",
           address, trap, (int)uid_x);
  sec_expect_refused(&loop, "--check-config", d.config_path, member);
  sec_expect_start_refused(&d, member);
  snprintf(sock, sizeof(sock), "%s/sb.sock", trap);
  ASSERT_NE(access(sock, F_OK), 0);
  sb_it_daemon_close(&d);

  /* A data_dir under a directory of the attacker's. */
  sb_it_daemon_start(&d, &loop, "sectd2", NULL, NULL);
  sec_stop(&d);
  {
    char data[700];
    snprintf(data, sizeof(data), "%s/data", trap);
    ASSERT_EQ(mkdir(data, 0700), 0);
    sec_config_set(&d, "data_dir", data);
    snprintf(member, sizeof(member), "data_dir \"%s\": %s is owned by uid %d", data,
             trap, (int)uid_x);
    sec_expect_start_refused(&d, member);
    /* The data_dir back, an archive_dir of the attacker's: not an outage to wait out
     * in the spool, a refusal. */
    sec_config_set(&d, "data_dir", d.dir);
    snprintf(data, sizeof(data), "%s/archive", trap);
    sec_config_set(&d, "archive_dir", data);
    snprintf(member, sizeof(member), "archive_dir \"%s\": %s is owned by uid %d", data,
             trap, (int)uid_x);
    sec_expect_refused(&loop, "--check-config", d.config_path, member);
    sec_expect_start_refused(&d, member);
  }
  sb_it_daemon_close(&d);

  /* The client: a fake server in a directory anyone may write. */
  ASSERT_EQ(chmod(trap, 0777), 0);
  ASSERT_OK(sb_it_recorder_start(&rec, &loop, sock, 16, 1));
  sec_expect_trap_refused(&loop, address, &rec, sock);

  /* A sticky directory of root's, the attacker's socket in it. */
  ASSERT_EQ(chown(trap, 0, 0), 0);
  ASSERT_EQ(chmod(trap, 01777), 0);
  ASSERT_OK(sb_it_recorder_start(&rec, &loop, sock, 16, 1));
  ASSERT_EQ(lchown(sock, uid_x, gid_x), 0);
  sec_expect_trap_refused(&loop, address, &rec, sock);
  ASSERT_EQ(chmod(trap, 0700), 0);
  ASSERT_OK(uv_loop_close(&loop));
#endif
}

/*
 * The log file a link to a root-only file: the start is refused (exit 4, naming
 * log_file), the file untouched. A link in place of the data directory's lock: the
 * same, naming data_dir.
 */
TEST_IMPL(security_symlink_log_file) {
#ifdef _WIN32
  TEST_SKIP("symbolic links as an unprivileged user are a POSIX matter here");
#else
  uv_loop_t loop;
  sb_it_daemon_t d;
  char other[512], victim[600], path[900], needle[1000];
  sec_need_root();
  ASSERT_OK(uv_loop_init(&loop));
  sb_it_tempdir("secvl", other, sizeof(other));
  sec_victim(other, victim, sizeof(victim));
  sb_it_daemon_start_logfile(&d, &loop, "seclg", NULL, NULL, "sb.log");
  sec_stop(&d);
  ASSERT_EQ(unlink(d.log_file), 0);
  ASSERT_EQ(symlink(victim, d.log_file), 0);
  snprintf(needle, sizeof(needle), "log_file \"%s\"", d.log_file);
  sec_expect_start_refused(&d, needle);
  sec_victim_intact(victim);
  ASSERT_EQ(unlink(d.log_file), 0);
  snprintf(path, sizeof(path), "%s/streambrokerd.lock", d.dir);
  ASSERT_EQ(unlink(path), 0);
  ASSERT_EQ(symlink(victim, path), 0);
  snprintf(needle, sizeof(needle), "data_dir \"%s\": cannot take its lock file", d.dir);
  sec_expect_start_refused(&d, needle);
  sec_victim_intact(victim);
  sb_it_daemon_close(&d);
  ASSERT_OK(uv_loop_close(&loop));
#endif
}
