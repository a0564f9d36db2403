/*
 * posix/spoolfile.c - the spool database's file before SQLite opens it: made with the
 * service's mode and group, or refused when something else is in its place.
 */
#include "../spool_int.h"

int sb__spool_file_prepare(const char* path, char* why, size_t why_size) {
  /* Log data: the service's alone, or reader_group's too (SQLite gives its -wal and
   * -shm files the database's mode). A link in its place is refused here, never
   * followed: SQLite would follow it (it opens its -wal and -journal with
   * O_NOFOLLOW itself). SQLITE_OPEN_NOFOLLOW is not used: it also refuses a data_dir
   * reached through a link, such as /var/lib on another disk. */
  uv_fs_t req;
  int fd = sb__file_open(path, UV_FS_O_RDWR | UV_FS_O_CREAT);
  if (fd == UV_ELOOP || fd == UV_EFTYPE || fd == UV_EPERM) {
    snprintf(why, why_size, "cannot open it (%s: refused, left as it is)",
             fd == UV_ELOOP    ? "a symbolic link"
             : fd == UV_EFTYPE ? "not a regular file"
                               : "not the service's own file");
    return -1;
  }
  if (fd >= 0) {
    uv_fs_close(NULL, &req, fd, NULL);
    uv_fs_req_cleanup(&req);
  }
  return 0;
}
