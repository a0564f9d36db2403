/* posix/file.c - a file a client or the service reads, opened close-on-exec. */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "../paths.h"

/* Close-on-exec, as every descriptor of the service; a link is followed (a config
 * kept elsewhere by a configuration tool is usual). */
FILE* sb__file_read(const char* path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  FILE* f;
  if (fd < 0)
    return NULL;
  if ((f = fdopen(fd, "rb")) == NULL)
    close(fd);
  return f;
}
