/* posix/defaults.c - where a client finds the service on POSIX: the default sockets
 * and the data directory. */
#include "../paths.h"

const char* sb__default_control_pipe(void) {
  return "unix:/run/streambroker/streambroker.sock";
}

const char* sb__default_admin_pipe(void) {
  return "unix:/run/streambroker/admin.sock";
}

const char* sb__default_data_dir(void) {
  return "/var/lib/streambroker";
}
