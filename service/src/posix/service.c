/* posix/service.c - no service manager to talk to: systemd runs the program as is. */
#include <stdio.h>

#include "../internal.h"

int sb__service_dispatch(sb__run_fn run, void* arg, int* exit_code) {
  (void)run;
  (void)arg;
  (void)exit_code;
  return 0;
}

int sb__service_install(const char* config_path, const char* account,
                        const char* password) {
  (void)config_path;
  (void)account;
  (void)password;
  fprintf(stderr,
          "streambrokerd: install and uninstall register the Windows service; on "
          "Linux use installer/install-linux.sh (a systemd unit)\n");
  return SB_ENOTSUP;
}

int sb__service_uninstall(void) {
  return sb__service_install(NULL, NULL, NULL);
}

int sb__service_path(int add) {
  (void)add;
  fprintf(stderr, "streambrokerd: path-add and path-remove edit the Windows system "
                  "PATH; on Linux the tools go to a directory already on it\n");
  return SB_ENOTSUP;
}

void sb__service_starting(void) {
}
