/* posix/platform.c - default paths, the open-file limit, directories, and the files
 * the service keeps to itself on POSIX. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../internal.h"
#include "oserror.h"
#include "../path.h"

/* Standard error: the journal keeps it under systemd, the terminal otherwise. */
const char* sb__default_service_log(void) {
  return NULL;
}

const char* sb__default_config_path(void) {
  return "/etc/streambroker/streambroker.json";
}

/* Each stream holds two descriptors (its client and its upstream or archive file), so
 * the usual soft limit of 1024 would cap the service near 500 streams; the hard limit
 * is what the administrator allows. */
void sb__process_init(void) {
  /* An upstream that dies makes writes fail with EPIPE; the default SIGPIPE would kill
   * the service instead. */
  signal(SIGPIPE, SIG_IGN);
}

/* logrotate and systemctl reload (ExecReload) send SIGHUP. */
int sb__reload_signal(void) {
  return SIGHUP;
}

void sb__raise_fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
      SB_LOG_W("platform", "setrlimit(RLIMIT_NOFILE, %llu): %s",
               (unsigned long long)rl.rlim_max, strerror(errno));
  }
}

/* The entries of /proc/self/fd, less the one the count itself opens (Linux; elsewhere,
 * without /proc, unknown). */
int64_t sb__process_open_handles(void) {
  DIR* d = opendir("/proc/self/fd");
  struct dirent* e;
  int64_t n = 0;
  if (d == NULL)
    return -1;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] != '.')
      n++;
  }
  closedir(d);
  return n > 0 ? n - 1 : 0;
}

/* A directory that already exists is success whatever mkdir says about it (EEXIST,
 * but also EACCES or EROFS for a parent such as /var that we may not write). */
static int sb__mkdir_one(const char* path) {
  struct stat st;
  int e;
  /* The umask (sb__files_policy) makes it 0700, or 0750 with reader_group. */
  if (mkdir(path, 0750) == 0)
    return 0;
  e = errno;
  if (stat(path, &st) == 0)
    return S_ISDIR(st.st_mode) ? 0 : SB_EEXIST;
  /* A read-only file system refuses as a permission would; a quota as a full disk. */
  if (e == EROFS)
    return SB_EACCES;
#ifdef EDQUOT
  if (e == EDQUOT)
    return SB_ENOSPC;
#endif
  return sb__err_keep(sb__os_err((unsigned long)e),
                      SB__ERR_BIT(SB_EACCES) | SB__ERR_BIT(SB_ENOSPC) |
                          SB__ERR_BIT(SB_ENOENT) | SB__ERR_BIT(SB_EINVAL));
}

/* The leading '/' is the only root, and is skipped anyway. */
int sb__mkdir_p(const char* path) {
  return sb__path_mkdirs(path, NULL, sb__mkdir_one);
}

int sb__path_is_absolute(const char* path) {
  return path != NULL && path[0] == '/';
}

/* "/a/b/" -> "/a"; "/a" -> "/"; "/" and "a" -> NULL. */
char* sb__path_parent(const char* path) {
  size_t n = strlen(path);
  char* out;
  while (n > 1 && path[n - 1] == '/')
    n--;
  while (n > 0 && path[n - 1] != '/')
    n--;
  if (n == 0 || (n == 1 && strlen(path) > 0 && strspn(path, "/") == strlen(path)))
    return NULL; /* no directory part, or the root itself */
  while (n > 1 && path[n - 1] == '/')
    n--;
  out = sb__xmalloc(n + 1);
  memcpy(out, path, n);
  out[n] = '\0';
  return out;
}

/* POSIX calls take any path up to PATH_MAX; the archive keeps its paths below it. */
char* sb__path_long(const char* path) {
  return sb__xstrdup(path);
}

/* ---- files the service keeps to itself ---- */

/* reader_group's gid, or (gid_t)-1 when none is set: data is the service's alone. */
static gid_t sb__reader_gid = (gid_t)-1;

/* The mode of a data file and of a data directory under the policy. */
static mode_t sb__file_mode(void) {
  return sb__reader_gid != (gid_t)-1 ? 0640 : 0600;
}

static mode_t sb__dir_mode(void) {
  /* setgid: what is made inside (SQLite's -wal and -shm, the archive's subdirectories)
   * takes reader_group, not the service's own group, which clients may share. */
  return sb__reader_gid != (gid_t)-1 ? 02750 : 0700;
}

int sb__files_policy(const char* reader_group, int apply, char* err, size_t size) {
  struct group gr, *res = NULL;
  char buf[4096];
  gid_t gid = (gid_t)-1;
  if (reader_group != NULL && reader_group[0] != '\0') {
    if (getgrnam_r(reader_group, &gr, buf, sizeof(buf), &res) != 0 || res == NULL) {
      snprintf(err, size, "reader_group \"%s\": no such group", reader_group);
      return SB_ECONFIG;
    }
    gid = gr.gr_gid;
  }
  if (!apply)
    return 0;
  sb__reader_gid = gid;
  /* Whatever the umask the service was started with (0 included), what it and its
   * libraries create is at most the policy's mode; the calls below set exact modes. */
  umask(gid != (gid_t)-1 ? 027 : 077);
  return 0;
}

/* "uid 1234 (name)" for a message. */
static void sb__who(uid_t uid, char* out, size_t size) {
  snprintf(out, size, "uid %lu", (unsigned long)uid);
}

/*
 * A directory the path passes through may be replaced by whoever can write its parent.
 * Each one must be owned by root or by the service, and writable by no one else,
 * unless sticky (/tmp): there others cannot rename or remove what is not theirs.
 */
static int sb__check_ancestors(const char* key, const char* shown, const char* real,
                               char* err, size_t size) {
  char* p = sb__xstrdup(real);
  uid_t me = geteuid();
  int r = 0;
  for (;;) {
    char* parent = sb__path_parent(p);
    struct stat st;
    char who[64];
    free(p);
    if ((p = parent) == NULL)
      break;
    if (lstat(p, &st) != 0 || !S_ISDIR(st.st_mode))
      continue;
    if (st.st_uid != 0 && st.st_uid != me) {
      sb__who(st.st_uid, who, sizeof(who));
      snprintf(err, size,
               "%s \"%s\": %s is owned by %s, neither root nor this service's user "
               "(uid %lu): whoever owns it can replace what is under it; refused",
               key, shown, p, who, (unsigned long)me);
      r = SB_EUNSAFE;
      break;
    }
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 && (st.st_mode & S_ISVTX) == 0) {
      snprintf(err, size,
               "%s \"%s\": %s is writable by %s (mode %04o, not sticky): they can "
               "replace what is under it; refused",
               key, shown, p, st.st_mode & S_IWOTH ? "everyone" : "its group",
               (unsigned)(st.st_mode & 07777));
      r = SB_EUNSAFE;
      break;
    }
  }
  free(p);
  return r;
}

int sb__dir_secure(const char* key, const char* shown, const char* dir, unsigned how,
                   char* err, size_t size) {
  char real[PATH_MAX];
  struct stat st;
  uid_t me = geteuid();
  char who[64];
  int fd, r;
  if (realpath(dir, real) == NULL) {
    /* Not there yet: what it would be made in must be safe; a sticky directory of
     * root's (/tmp) is, since what the service makes there stays its own (and is
     * checked itself once made). */
    char* parent = sb__path_parent(dir);
    r = 0;
    if (parent != NULL)
      r = sb__dir_secure(key, shown, parent, SB__DIR_STICKY_OK, err, size);
    free(parent);
    return r;
  }
  if ((r = sb__check_ancestors(key, shown, real, err, size)) != 0)
    return r;
  fd = open(real, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 || fstat(fd, &st) != 0) {
    snprintf(err, size, "%s \"%s\": %s: %s", key, shown, real, strerror(errno));
    if (fd >= 0)
      close(fd);
    return SB_EACCES;
  }
  r = 0;
  if (st.st_uid != 0 && st.st_uid != me) {
    sb__who(st.st_uid, who, sizeof(who));
    snprintf(err, size,
             "%s \"%s\": %s is owned by %s, neither root nor this service's user "
             "(uid %lu); refused",
             key, shown, real, who, (unsigned long)me);
    r = SB_EUNSAFE;
  } else if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 &&
             !((how & SB__DIR_STICKY_OK) && (st.st_mode & S_ISVTX) && st.st_uid == 0)) {
    snprintf(err, size,
             "%s \"%s\": %s is writable by %s (mode %04o): others could plant files "
             "and links there; refused",
             key, shown, real, st.st_mode & S_IWOTH ? "everyone" : "its group",
             (unsigned)(st.st_mode & 07777));
    r = SB_EUNSAFE;
  } else if ((how & SB__DIR_PRIVATE) && st.st_uid == me && (how & SB__DIR_FIX)) {
    /* Ours: exactly the policy's mode and group, whatever an earlier version or an
     * installer left (a group that clients share must not read the data). */
    if (sb__reader_gid != (gid_t)-1 && st.st_gid != sb__reader_gid &&
        fchown(fd, (uid_t)-1, sb__reader_gid) != 0) {
      snprintf(err, size,
               "%s \"%s\": cannot give %s to reader_group (gid %lu): %s (the service's "
               "user must be a member of it)",
               key, shown, real, (unsigned long)sb__reader_gid, strerror(errno));
      r = SB_EACCES;
    } else if ((st.st_mode & 07777) != sb__dir_mode() &&
               fchmod(fd, sb__dir_mode()) != 0) {
      snprintf(err, size, "%s \"%s\": chmod %s to %04o: %s", key, shown, real,
               (unsigned)sb__dir_mode(), strerror(errno));
      r = SB_EACCES;
    }
  } else if ((how & SB__DIR_PRIVATE) && sb__reader_gid != (gid_t)-1 &&
             (st.st_gid != sb__reader_gid || (st.st_mode & S_ISGID) == 0)) {
    /* Not ours to change (root's, the service is not root): its files would take the
     * service's group, which clients may share, instead of reader_group. */
    snprintf(err, size,
             "%s \"%s\": %s belongs to root and is not setgid to reader_group (gid "
             "%lu); make it so (chgrp, chmod 2750) or let the service own it",
             key, shown, real, (unsigned long)sb__reader_gid);
    r = SB_EUNSAFE;
  }
  close(fd);
  return r;
}

/*
 * The last component is opened relative to its directory's descriptor, never through
 * a link (O_NOFOLLOW), never a FIFO or a device (O_NONBLOCK for the open, then a
 * regular file is required). A file opened for writing must be the service's own with
 * one link (a hard link to another file is refused), and gets the policy's mode and
 * group, whatever it had.
 */
uv_file sb__file_open(const char* path, int flags) {
  char* dir = sb__path_parent(path);
  const char* base = strrchr(path, '/');
  int writing = (flags & O_ACCMODE) != O_RDONLY;
  struct stat st;
  int dfd, fd, e;
  base = base != NULL ? base + 1 : path;
  dfd = open(dir != NULL ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  free(dir);
  if (dfd < 0)
    return -errno;
  fd = openat(dfd, base, flags | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
              sb__file_mode());
  e = errno;
  close(dfd);
  if (fd < 0) {
    if (e == ELOOP)
      SB_LOG_W("files", "%s is a symbolic link: refused (links are never followed)",
               path);
    return -e;
  }
  e = 0;
  if (fstat(fd, &st) != 0)
    e = errno;
  else if (!S_ISREG(st.st_mode))
    e = -1; /* no errno says "not a regular file": libuv's EFTYPE below */
  else if (writing && (st.st_uid != geteuid() || st.st_nlink > 1))
    e = EPERM;
  else if (writing && sb__reader_gid != (gid_t)-1 && st.st_gid != sb__reader_gid &&
           fchown(fd, (uid_t)-1, sb__reader_gid) != 0)
    e = errno;
  else if (writing && (st.st_mode & 07777) != sb__file_mode() &&
           fchmod(fd, sb__file_mode()) != 0)
    e = errno;
  else if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0)
    e = errno;
  if (e != 0) {
    if (e == EPERM)
      SB_LOG_W("files",
               "%s: not the service's own file (uid %lu, %lu links): refused, left as "
               "it is",
               path, (unsigned long)st.st_uid, (unsigned long)st.st_nlink);
    else if (e == -1)
      SB_LOG_W("files", "%s is not a regular file: refused, left as it is", path);
    close(fd);
    return e == -1 ? UV_EFTYPE : -e;
  }
  return fd;
}

FILE* sb__file_append(const char* path) {
  uv_file fd = sb__file_open(path, O_WRONLY | O_APPEND | O_CREAT);
  FILE* f;
  if (fd < 0) {
    errno = -fd;
    return NULL;
  }
  if ((f = fdopen(fd, "ab")) == NULL)
    close(fd);
  return f;
}

/* Windows checks access lists here; POSIX owners and modes are checked where the
 * files are opened. */
int sb__path_check_private(const char* key, const char* path, char* why, size_t size) {
  (void)key;
  (void)path;
  (void)why;
  (void)size;
  return 0;
}

/* The archive's opens follow no link on POSIX (checked where it opens). */
int sb__path_check_links(const char* root, const char* path) {
  (void)root;
  (void)path;
  return 0;
}

int sb__path_make_private(const char* path, char* why, size_t size) {
  int r = sb__mkdir_p(path);
  if (r != 0)
    snprintf(why, size, "\"%s\": %s", path, sb_strerror(r));
  return r;
}
