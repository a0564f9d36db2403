/* posix/admin.c - the admin socket as its clients reach it: an address's bind path,
 * and sbctl's connection. */
#include <string.h>

#include "streambroker.h"
#include "protocol.h"
#include "../admin.h"

int sb__address_bind_path(const char* address, char* out, size_t size) {
  int kind;
  const char* path;
  if (sb__address_parse(address, &kind, &path) != 0 || kind != SB__ADDR_UNIX ||
      strlen(path) >= size)
    return SB_EADDRESS;
  memcpy(out, path, strlen(path) + 1);
  return 0;
}

/* The socket's mode (0600, the service's user) decides who serves and who talks. */
int sb__admin_connect(uv_loop_t* loop, uv_pipe_t* pipe, uv_connect_t* req,
                      const char* path, uv_connect_cb cb) {
  (void)loop;
  uv_pipe_connect(req, pipe, path, cb);
  return 0;
}
