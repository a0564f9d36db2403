/* posix/fsname.c - whether a name an exclusive create was refused is taken anyway. */
#include "../internal.h"

/* POSIX has no delete-pending names: only EEXIST says a name is taken. */
int sb__fs_name_taken(int uv_err, const char* path) {
  (void)path;
  return uv_err == UV_EEXIST;
}
