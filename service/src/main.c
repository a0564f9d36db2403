/*
 * main.c - streambrokerd's command line. Everything else is in the core library.
 *
 * Exit status (and, as a Windows service, the service-specific exit code): 0 after a
 * clean stop (or a valid config with --check-config), 2 for a usage error, 3 for an
 * invalid config, 4 when the service cannot start (control pipe in use, directories
 * not writable; --check-config too, for the directories).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "tools.h"

static const char usage[] =
    "usage: streambrokerd [--config FILE] [--console]  run the broker\n"
    "       streambrokerd install [--config FILE] [--account NAME [--password PW]]\n"
    "                                               register the Windows service\n"
    "       streambrokerd uninstall                 remove the Windows service\n"
    "       streambrokerd --check-config FILE  validate a config file and exit\n"
    "       streambrokerd --print-config-keys  the table of config keys (Markdown)\n"
    "       streambrokerd --print-default-config  every key with its default (JSON)\n"
    "       streambrokerd init-config [--config FILE] [--upstream ADDR]\n"
    "                   [--archive-dir DIR] [--data-dir DIR]  write the config from\n"
    "                   the shipped default, unless one exists (the MSI runs this)\n"
    "       streambrokerd path-add|path-remove  this program's directory on the\n"
    "                   system PATH, or off it (Windows; the MSI runs this)\n"
    "       streambrokerd --version\n"
    "       streambrokerd --console --event-log  also report to the Windows Event "
    "Log,\n"
    "                                               as the service does\n"
    "Without --config it reads the platform's config file when there is one\n"
    "(/etc/streambroker/streambroker.json; "
    "%ProgramData%\\StreamBroker\\streambroker.json),\n"
    "else the built-in defaults apply. Started by the Windows service control manager\n"
    "it runs as the service StreamBroker; otherwise (or with --console) in the\n"
    "foreground, where Ctrl+C, SIGINT or SIGTERM stop it: what was read from clients\n"
    "is written out first.\n";

/* What runs beside the broker: systemd's notifications (a signal seen, a periodic
 * STATUS line). The broker has signal handles of its own for the same signals; libuv
 * calls each. */
static struct {
  sb__broker_t* broker;
  uv_signal_t sigint, sigterm;
  uv_timer_t status;
  int open;
} sb__main;

#define SB__STATUS_INTERVAL_MS 10000

/* STATUS=: what systemctl status shows under the unit's name. */
static void notify_status(sb__broker_t* b, const char* head) {
  char text[256];
  sb__spool_stats_t st;
  uint64_t live = 0;
  sb__stream_t* s;
  memset(&st, 0, sizeof(st));
  if (b->spool != NULL)
    sb__spool_stats(b->spool, &st);
  for (s = b->streams; s; s = s->next)
    live += s->handshaken;
  snprintf(text, sizeof(text), "%sSTATUS=%llu streams open, %llu bytes spooled", head,
           (unsigned long long)live, (unsigned long long)st.bytes);
  sb__notify(text);
}

static void on_status_timer(uv_timer_t* t) {
  notify_status(sb__main.broker, "");
  (void)t;
}

static void on_main_signal(uv_signal_t* sig, int signum) {
  (void)sig;
  (void)signum;
  /* The broker's own handle stops it; systemd learns it is on purpose. */
  sb__notify("STOPPING=1\nSTATUS=stopping: writing out what was read");
}

static void main_handles_start(sb__broker_t* b) {
  sb__main.broker = b;
  uv_signal_init(b->loop, &sb__main.sigint);
  uv_signal_init(b->loop, &sb__main.sigterm);
  uv_signal_start(&sb__main.sigint, on_main_signal, SIGINT);
  uv_signal_start(&sb__main.sigterm, on_main_signal, SIGTERM);
  uv_timer_init(b->loop, &sb__main.status);
  uv_timer_start(&sb__main.status, on_status_timer, SB__STATUS_INTERVAL_MS,
                 SB__STATUS_INTERVAL_MS);
  uv_unref((uv_handle_t*)&sb__main.sigint);
  uv_unref((uv_handle_t*)&sb__main.sigterm);
  uv_unref((uv_handle_t*)&sb__main.status);
  sb__main.open = 1;
}

static void main_handles_stop(void) {
  if (!sb__main.open)
    return;
  sb__main.open = 0;
  uv_close((uv_handle_t*)&sb__main.sigint, NULL);
  uv_close((uv_handle_t*)&sb__main.sigterm, NULL);
  uv_close((uv_handle_t*)&sb__main.status, NULL);
}

static void on_stopped(sb__broker_t* b) {
  sb__spool_stats_t st;
  memset(&st, 0, sizeof(st));
  if (b->spool != NULL)
    sb__spool_stats(b->spool, &st);
  /* A stop by the Windows service manager or a stop timeout told no one yet. */
  sb__notify("STOPPING=1");
  {
    char text[300];
    snprintf(text, sizeof(text),
             "%llu streams served, %llu bytes in, %llu bytes out; %llu bytes in %llu "
             "chunks stay in the spool",
             (unsigned long long)b->counters.streams_opened,
             (unsigned long long)b->counters.bytes_in,
             (unsigned long long)b->counters.bytes_out, (unsigned long long)st.bytes,
             (unsigned long long)st.chunks);
    SB_LOG_I("broker", "stopped: %s", text);
    sb__eventlog_report(SB__EVENT_STOPPED, text);
  }
  main_handles_stop();
  sb__broker_close(b);
  uv_stop(b->loop);
}

/* Whether errors, warnings, start and stop go to the Windows Event Log too: always as
 * the service, with --event-log in a console. */
static int sb__want_eventlog;

static int load_why(sb__config_t* cfg, const char* path, char* err, size_t err_size) {
  sb__config_defaults(cfg);
  if (path == NULL)
    return 0;
  if (sb__config_load(cfg, path, err, err_size) != 0) {
    fprintf(stderr, "streambrokerd: %s\n", err);
    SB_LOG_E("broker", "%s", err);
    sb__config_free(cfg);
    return 3;
  }
  return 0;
}

static int load(sb__config_t* cfg, const char* path) {
  char err[512];
  return load_why(cfg, path, err, sizeof(err));
}

/* A start that failed: said in the Event Log (a no-op unless it is open). */
static void start_failed(const char* why) {
  sb__eventlog_report(SB__EVENT_START_FAILED, why);
}

/* A directory the service cannot use, or must not (others control it): exit 4. */
static int dirs_refused(sb__config_t* cfg, const char* why) {
  SB_LOG_E("broker", "cannot start: %s", why);
  fprintf(stderr, "streambrokerd: %s\n", why);
  start_failed(why);
  sb__config_free(cfg);
  sb__log_close();
  sb__eventlog_close();
  return 4;
}

/* The default config an installer put beside this executable (a new string), or
 * NULL when the executable's path is unknown. */
static char* shipped_config(void) {
  char exe[4096];
  size_t len = sizeof(exe);
  char *slash, *bslash, *path;
  if (uv_exepath(exe, &len) != 0)
    return NULL;
  slash = strrchr(exe, '/');
  bslash = strrchr(exe, '\\');
  if (bslash > slash)
    slash = bslash;
  if (slash == NULL)
    return NULL;
  *slash = '\0';
  path = sb__path_join(exe, "streambroker.default.json");
  return path;
}

/* streambrokerd init-config: 0 written or kept, 3 a value the config refuses, 1
 * otherwise. */
static int init_config(const char* config_path, const char* upstream,
                       const char* archive_dir, const char* data_dir) {
  char msg[1024];
  char* shipped = shipped_config();
  int r;
  if (shipped == NULL) {
    fprintf(stderr, "streambrokerd: init-config: this program's path is unknown\n");
    return 1;
  }
  r = sb__config_init(shipped, config_path ? config_path : sb__default_config_path(),
                      upstream, archive_dir, data_dir, msg, sizeof(msg));
  free(shipped);
  if (r < 0) {
    fprintf(stderr, "streambrokerd: init-config: %s\n", msg);
    return r == SB_ECONFIG ? 3 : 1;
  }
  printf("streambrokerd: init-config: %s\n", msg);
  return 0;
}

static int file_exists(const char* path) {
  FILE* f = sb__file_read(path);
  if (f != NULL)
    fclose(f);
  return f != NULL;
}

/*
 * The config file to use: the one given, else the platform's if it exists. When it
 * does not and the installer put streambroker.default.json beside this executable
 * (the MSI does), that file becomes the platform's config first: installers then never
 * own the administrator's config, so upgrades and uninstalls leave it alone.
 */
static const char* config_to_use(const char* given) {
  char* shipped;
  if (given != NULL)
    return given;
  if (!file_exists(sb__default_config_path()) && (shipped = shipped_config()) != NULL) {
    if (file_exists(shipped) && sb__mkdir_p(sb__default_data_dir()) == 0) {
      uv_fs_t req;
      /* EXCL: a config that appeared meanwhile is never overwritten. */
      uv_fs_copyfile(NULL, &req, shipped, sb__default_config_path(),
                     UV_FS_COPYFILE_EXCL, NULL);
      uv_fs_req_cleanup(&req);
    }
    free(shipped);
  }
  return file_exists(sb__default_config_path()) ? sb__default_config_path() : NULL;
}

/*
 * Runs the broker until it stops. started (may be NULL) is called once the control
 * pipe is bound, with the broker, whose stop_async other threads may signal.
 */
static int run(void* arg, void (*started)(sb__broker_t*)) {
  const char* config_path = config_to_use(arg);
  const char* log_path;
  sb__config_t cfg;
  sb__broker_t* broker;
  uv_loop_t* loop;
  char why[1024];
  int r;

  if (started != NULL || sb__want_eventlog)
    sb__eventlog_open();
  /* A config someone else could write would run the service their way: checked
   * before it is read (Windows: owner and access list of the file and its folder). */
  if (config_path != NULL) {
    char* dir = sb__path_parent(config_path);
    r = sb__path_check_private("config", config_path, why, sizeof(why));
    if (r == 0 && dir != NULL)
      r = sb__path_check_private("config's directory", dir, why, sizeof(why));
    free(dir);
    if (r != 0) {
      fprintf(stderr, "streambrokerd: %s\n", why);
      start_failed(why);
      sb__eventlog_close();
      return 4;
    }
  }
  if ((r = load_why(&cfg, config_path, why, sizeof(why))) != 0) {
    start_failed(why);
    /* A service has no console: the reason goes to a log file in the data directory,
     * since the config that names the real one did not load. */
    if (started != NULL) {
      char* path = sb__path_join(sb__default_data_dir(), "streambrokerd-start.log");
      if (sb__mkdir_p(sb__default_data_dir()) == 0 &&
          sb__log_open(path, SB_LOG_ERROR) == 0)
        load(&cfg, config_path);
      free(path);
      sb__log_close();
    }
    sb__eventlog_close();
    return r;
  }
  /* Before anything is created (the log file first): what the service makes is its
   * own, readable by reader_group when set, whatever umask it was started with. */
  if (sb__files_policy(cfg.reader_group, 1, why, sizeof(why)) != 0) {
    fprintf(stderr, "streambrokerd: %s\n", why);
    start_failed(why);
    sb__eventlog_close();
    sb__config_free(&cfg);
    return 4;
  }
  /* A service has no stderr to read: without log_file it logs where the platform
   * says (Windows: under ProgramData; Linux: stderr, the journal's). */
  log_path = cfg.log_file;
  if ((log_path == NULL || log_path[0] == '\0') && started != NULL &&
      sb__default_service_log() != NULL) {
    char* dir = sb__xstrdup(sb__default_service_log());
    char* sep = strrchr(dir, '\\');
    if (sep != NULL)
      *sep = '\0';
    sb__mkdir_p(dir);
    free(dir);
    log_path = sb__default_service_log();
  }
  sb__log_set_rotation(cfg.log_max_bytes, cfg.log_max_files);
  /* The log's directory first: its errors can only go to stderr (and the Event Log). */
  if (sb__config_check_dirs(&cfg, SB__DIRS_LOG, 1, why, sizeof(why)) != 0) {
    fprintf(stderr, "streambrokerd: %s\n", why);
    start_failed(why);
    sb__eventlog_close();
    sb__config_free(&cfg);
    return 4;
  }
  if ((r = sb__log_open(log_path, cfg.log_level)) != 0) {
    snprintf(why, sizeof(why), "log_file \"%s\": %s", log_path, sb_strerror(r));
    fprintf(stderr, "streambrokerd: %s\n", why);
    start_failed(why);
    sb__eventlog_close();
    sb__config_free(&cfg);
    return 4;
  }
  if (started != NULL || sb__want_eventlog)
    sb__log_to_eventlog(1);
  SB_LOG_I("broker", "streambrokerd %s starting (config: %s)", SB_VERSION_STRING,
           config_path ? config_path : "built-in defaults");
  sb__notify_open();
  sb__process_init();
  sb__raise_fd_limit();
  /* data_dir (the spool, in either mode): made, and writable, before anything binds,
   * so that a wrong path is told at once, naming its key. */
  if (sb__config_check_dirs(&cfg, SB__DIRS_DATA | SB__DIRS_SOCKETS, 1, why,
                            sizeof(why)) != 0) {
    return dirs_refused(&cfg, why);
  }
  /* archive_dir: made, and checked, naming the key; but an archive that cannot be
   * written does not stop the service: streams wait in the spool until it can (a
   * read-only or full archive disk at boot loses nothing, and streams left in the
   * spool are archived once it is back). */
  if (cfg.upstream == NULL &&
      (r = sb__config_check_dirs(&cfg, SB__DIRS_ARCHIVE, 1, why, sizeof(why))) != 0) {
    if (r == SB_EUNSAFE) {
      /* One that others control is no outage to wait out: they could read or
       * redirect what is archived there. */
      return dirs_refused(&cfg, why);
    }
    SB_LOG_E("broker", "%s; streams wait in the spool until it can be written", why);
  }
  sb__service_starting();
  loop = uv_default_loop();
  broker = sb__xcalloc(1, sizeof(*broker));
  broker->on_stopped = on_stopped;
  broker->config_path = config_path; /* re-read at a reload */
  /* Who holds the data directory, for a second instance to say. */
  broker->role = started != NULL                   ? "as the service " SB_SERVICE_NAME
                 : getenv("INVOCATION_ID") != NULL ? "under systemd"
                                                   : "in a console";
  if ((r = sb__broker_start(broker, loop, &cfg)) != 0) {
    if (broker->start_error[0] != '\0')
      snprintf(why, sizeof(why), "%s", broker->start_error);
    else
      snprintf(why, sizeof(why), "%s (the log has the details)", sb_strerror(r));
    SB_LOG_E("broker", "cannot start: %s", why);
    fprintf(stderr, "streambrokerd: cannot start: %s\n", why);
    start_failed(why);
    sb__broker_abort(broker);
    r = 4;
  } else {
    if (started)
      started(broker);
    snprintf(why, sizeof(why), "streambrokerd %s, config %s, serving %s (%s)",
             SB_VERSION_STRING, config_path ? config_path : "built-in defaults",
             cfg.control_pipe, cfg.upstream ? cfg.upstream : "archive mode");
    sb__eventlog_report(SB__EVENT_STARTED, why);
    main_handles_start(broker);
    /* The control pipe listens: clients may come (Type=notify units wait for this). */
    notify_status(broker, "READY=1\n");
    uv_run(loop, UV_RUN_DEFAULT);
    SB_LOG_I("broker", "exiting");
  }
  /* on_stopped stopped the loop with close callbacks still due: let them run. */
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  free(broker);
  sb__config_free(&cfg);
  sb__notify_close();
  sb__log_close();
  sb__eventlog_close();
  return r;
}

int main(int argc, char** argv) {
  const char* config_path = NULL;
  const char* account = NULL;
  const char* password = NULL;
  const char *upstream = NULL, *archive_dir = NULL, *data_dir = NULL;
  sb__config_t cfg;
  int i, r, console = 0, install = 0, uninstall = 0, initcfg = 0, path_edit = 0;

  /* Windows: argv is in the ANSI code page; paths are taken as UTF-8 everywhere. */
  argv = sb__tool_utf8_argv(&argc, argv);
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
      char why[1024];
      if ((r = load(&cfg, argv[i + 1])) != 0)
        return r;
      /* What the start would find: reader_group, and the directories, as this user
       * sees them. */
      r = sb__files_policy(cfg.reader_group, 0, why, sizeof(why));
      if (r == 0)
        r = sb__config_check_dirs(&cfg, SB__DIRS_ALL, 0, why, sizeof(why));
      sb__config_free(&cfg);
      if (r != 0) {
        fprintf(stderr, "streambrokerd: %s: %s\n", argv[i + 1], why);
        return 4;
      }
      printf("%s: valid\n", argv[i + 1]);
      return 0;
    } else if (strcmp(a, "--config") == 0 && i + 1 < argc) {
      config_path = argv[++i];
    } else if (strcmp(a, "--account") == 0 && i + 1 < argc) {
      account = argv[++i];
    } else if (strcmp(a, "--password") == 0 && i + 1 < argc) {
      password = argv[++i];
    } else if (strcmp(a, "--console") == 0) {
      console = 1;
    } else if (strcmp(a, "--event-log") == 0) {
      sb__want_eventlog = 1;
    } else if (i == 1 && strcmp(a, "install") == 0) {
      install = 1;
    } else if (i == 1 && strcmp(a, "uninstall") == 0) {
      uninstall = 1;
    } else if (i == 1 && strcmp(a, "init-config") == 0) {
      initcfg = 1;
    } else if (initcfg && strcmp(a, "--upstream") == 0 && i + 1 < argc) {
      upstream = argv[++i];
    } else if (initcfg && strcmp(a, "--archive-dir") == 0 && i + 1 < argc) {
      archive_dir = argv[++i];
    } else if (initcfg && strcmp(a, "--data-dir") == 0 && i + 1 < argc) {
      data_dir = argv[++i];
    } else if (i == 1 && argc == 2 && strcmp(a, "path-add") == 0) {
      path_edit = 1;
    } else if (i == 1 && argc == 2 && strcmp(a, "path-remove") == 0) {
      path_edit = -1;
    } else {
      fprintf(stderr, "streambrokerd: unknown option or missing value: %s\n%s", a,
              usage);
      return 2;
    }
  }
  if (initcfg)
    return init_config(config_path, upstream, archive_dir, data_dir);
  if (path_edit != 0) {
    r = sb__service_path(path_edit > 0);
    return r == 0 ? 0 : r == SB_ENOTSUP ? 2 : 1;
  }
  if (install || uninstall) {
    if (config_path != NULL && (r = load(&cfg, config_path)) != 0)
      return r;
    if (config_path != NULL)
      sb__config_free(&cfg);
    r = install ? sb__service_install(config_path, account, password)
                : sb__service_uninstall();
    return r == 0 ? 0 : r == SB_ENOTSUP || r == SB_EINVAL ? 2 : 1;
  }
  if (!console && sb__service_dispatch(run, (void*)config_path, &r))
    return r;
  return run((void*)config_path, NULL);
}
