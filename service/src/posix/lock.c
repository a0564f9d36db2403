/* posix/lock.c - one service per data directory: a lock on DATA_DIR/streambrokerd.lock.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../internal.h"
#include "oserror.h"

struct sb__lock_s {
  int fd;
};

/* A read-only file system refuses the lock as a permission would. */
static int lock_errno(int e) {
  if (e == EROFS)
    return SB_EACCES;
  return sb__err_keep(sb__os_err((unsigned long)e), SB__ERR_BIT(SB_EACCES) |
                                                        SB__ERR_BIT(SB_ENOENT) |
                                                        SB__ERR_BIT(SB_ENOSPC));
}

/* What the holder wrote: one line, cut to size. */
static void read_holder(int fd, char* holder, size_t size) {
  ssize_t n = pread(fd, holder, size - 1, 0);
  char* nl;
  holder[n > 0 ? (size_t)n : 0] = '\0';
  if ((nl = strchr(holder, '\n')) != NULL)
    *nl = '\0';
  if (holder[0] == '\0')
    snprintf(holder, size, "a process that has not said who it is yet");
}

/*
 * flock, not fcntl: it belongs to the open file, so nothing else in this process
 * (a library that opens and closes the same file) can drop it, and the kernel
 * releases it when the process dies however it dies. The file itself stays: removing
 * it at exit would race with a new instance that opened it already, and leave two
 * instances holding locks on two different files.
 */
int sb__lock_take(const char* data_dir, const char* who, sb__lock_t** out, char* holder,
                  size_t holder_size) {
  char* path = sb__path_join(data_dir, SB__LOCK_FILE);
  struct stat st;
  char text[512];
  int fd, r = 0;
  *out = NULL;
  holder[0] = '\0';
  /* A link planted in the data directory is refused, never followed; the file is the
   * service's, with its mode. */
  fd = sb__file_open(path, O_RDWR | O_CREAT);
  if (fd < 0) {
    r = fd == UV_ELOOP || fd == UV_EFTYPE ? SB_EEXIST : lock_errno(-fd);
    SB_LOG_E("broker", "data_dir lock %s: %s", path, uv_strerror(fd));
    fd = -1;
    goto done;
  }
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    SB_LOG_E("broker", "data_dir lock %s: not a regular file", path);
    r = SB_EEXIST;
    goto done;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      read_holder(fd, holder, holder_size);
      r = SB_EBUSY;
    } else {
      SB_LOG_E("broker", "data_dir lock %s: flock: %s", path, strerror(errno));
      r = lock_errno(errno);
    }
    goto done;
  }
  snprintf(text, sizeof(text), "pid %ld, %s\n", (long)getpid(), who);
  if (ftruncate(fd, 0) != 0 ||
      pwrite(fd, text, strlen(text), 0) != (ssize_t)strlen(text))
    SB_LOG_W("broker", "data_dir lock %s: writing who holds it: %s", path,
             strerror(errno));
  *out = sb__xcalloc(1, sizeof(**out));
  (*out)->fd = fd;
  fd = -1;
done:
  if (fd >= 0)
    close(fd);
  free(path);
  return r;
}

void sb__lock_release(sb__lock_t* lock) {
  if (lock == NULL)
    return;
  close(lock->fd);
  free(lock);
}
