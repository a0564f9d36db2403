/*
 * win/spoolfile.c - the spool database's file before SQLite opens it: nothing to do
 * on Windows (the file has no POSIX mode; see posix/spoolfile.c).
 */
#include "../spool_int.h"

int sb__spool_file_prepare(const char* path, char* why, size_t why_size) {
  (void)path;
  (void)why;
  (void)why_size;
  return 0;
}
