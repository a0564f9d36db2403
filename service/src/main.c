/*
 * main.c - streambrokerd's command line. Everything else is in the core library.
 *
 * Exit status: 0 after a clean stop (or a valid config with --check-config), 2 for a
 * usage error, 3 for an invalid config, 4 when the service cannot start (control pipe
 * in use, directories not writable).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char usage[] =
    "usage: streambrokerd [--config FILE]    run the broker in the foreground\n"
    "       streambrokerd --check-config FILE  validate a config file and exit\n"
    "       streambrokerd --print-config-keys  the table of config keys (Markdown)\n"
    "       streambrokerd --print-default-config  every key with its default (JSON)\n"
    "       streambrokerd --version\n"
    "Without --config it reads the platform's config file when there is one\n"
    "(/etc/streambroker/streambroker.json; %ProgramData%\\StreamBroker\\streambroker.json),\n"
    "else the built-in defaults apply. Ctrl+C, SIGINT or SIGTERM stop it: what was\n"
    "read from clients is written out first.\n";

static int exit_code;

static void on_stopped(sb__broker_t* b) {
  SB_LOG_I("broker", "stopped: %llu streams served, %llu bytes in, %llu bytes out",
           (unsigned long long)b->counters.streams_opened,
           (unsigned long long)b->counters.bytes_in,
           (unsigned long long)b->counters.bytes_out);
  sb__broker_close(b);
  uv_stop(b->loop);
}

static int load(sb__config_t* cfg, const char* path) {
  char err[512];
  sb__config_defaults(cfg);
  if (path == NULL)
    return 0;
  if (sb__config_load(cfg, path, err, sizeof(err)) != 0) {
    fprintf(stderr, "streambrokerd: %s\n", err);
    sb__config_free(cfg);
    return 3;
  }
  return 0;
}

int main(int argc, char** argv) {
  const char* config_path = NULL;
  sb__config_t cfg;
  sb__broker_t* broker;
  uv_loop_t* loop;
  int i, r;

  for (i = 1; i < argc; i++) {
    const char* a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(usage, stdout);
      return 0;
    } else if (strcmp(a, "--version") == 0) {
      printf("streambrokerd %s\n", SB_VERSION_STRING);
      return 0;
    } else if (strcmp(a, "--print-config-keys") == 0) {
      sb__config_write_table(stdout);
      return 0;
    } else if (strcmp(a, "--print-default-config") == 0) {
      sb__config_write_defaults(stdout);
      return 0;
    } else if (strcmp(a, "--check-config") == 0 && i + 1 < argc) {
      if ((r = load(&cfg, argv[i + 1])) != 0)
        return r;
      sb__config_free(&cfg);
      printf("%s: valid\n", argv[i + 1]);
      return 0;
    } else if (strcmp(a, "--config") == 0 && i + 1 < argc) {
      config_path = argv[++i];
    } else {
      fprintf(stderr, "streambrokerd: unknown option or missing value: %s\n%s", a, usage);
      return 2;
    }
  }

  if (config_path == NULL) {
    FILE* f = fopen(sb__default_config_path(), "rb");
    if (f != NULL) {
      fclose(f);
      config_path = sb__default_config_path();
    }
  }
  if ((r = load(&cfg, config_path)) != 0)
    return r;
  if ((r = sb__log_open(cfg.log_file, cfg.log_level)) != 0) {
    fprintf(stderr, "streambrokerd: log_file \"%s\": %s\n", cfg.log_file, sb_strerror(r));
    return 4;
  }
  SB_LOG_I("broker", "streambrokerd %s starting (config: %s)", SB_VERSION_STRING,
           config_path ? config_path : "built-in defaults");
  sb__raise_fd_limit();
  if (cfg.upstream == NULL && (r = sb__mkdir_p(cfg.archive_dir)) != 0) {
    SB_LOG_E("broker", "archive_dir \"%s\": %s", cfg.archive_dir, sb_strerror(r));
    return 4;
  }
  loop = uv_default_loop();
  broker = sb__xcalloc(1, sizeof(*broker));
  broker->on_stopped = on_stopped;
  if ((r = sb__broker_start(broker, loop, &cfg)) != 0) {
    SB_LOG_E("broker", "cannot start: %s", sb_strerror(r));
    return 4;
  }
  uv_run(loop, UV_RUN_DEFAULT);
  SB_LOG_I("broker", "exiting");
  sb__log_close();
  return exit_code;
}
