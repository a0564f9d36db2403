/* win/file.c - a file a client or the service reads, opened by its UTF-8 path. */
#include <stdio.h>

#include "../paths.h"
#include "wide.h"

FILE* sb__file_read(const char* path) {
  return sb__wfopen(path, L"rb");
}
