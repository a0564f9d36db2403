/*
 * sbctl - asks a running streambrokerd for its status, over the admin pipe.
 *
 *   sbctl [--admin ADDR] [--json] status     the service, its upstream, counters
 *   sbctl [--admin ADDR] [--json] streams    open streams, client pid, bytes, and
 *                                            where each goes (file or upstream)
 *   sbctl archive ls|cat ...                 reads an archive (sbctl_archive.c)
 *   sbctl [--admin ADDR] retry [NAME]        tries the given-up streams (of NAME)
 *                                            again now
 *   sbctl [--admin ADDR] [--json] reload     re-read the config (as SIGHUP does)
 *   sbctl [--admin ADDR] follow [PREFIX]     live streams' bytes (sbctl_follow.c)
 *   sbctl [--admin ADDR] [--from FILE] metrics   the status in the Prometheus text
 *                                            format, for textfile collectors
 *
 * --json prints the service's reply as it is, for scripts. --from reads a status
 * reply saved earlier (sbctl --json status; "-": standard input) instead of asking.
 * Exit status: 0, 1 when the service cannot be reached or answers with an error, 2 for
 * a usage error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "admin.h"
#include "alloc.h"
#include "counters.h"
#include "paths.h"
#include "protocol.h"
#include "tools.h"
#include "sbctl_archive.h"
#include "sbctl_metrics.h"

static const char usage[] =
    "usage: sbctl [--admin ADDR] [--json] status|streams|reload\n"
    "       sbctl [--admin ADDR] retry [NAME]\n"
    "       sbctl archive ls [--dir ARCHIVE]\n"
    "       sbctl archive cat NAME|ID [--dir ARCHIVE] [--raw]\n"
    "       sbctl [--admin ADDR] [--from FILE] metrics\n"
    "       sbctl [--admin ADDR] follow [NAME|PREFIX]\n"
    "ADDR is the service's admin_pipe (default: this platform's). metrics prints the\n"
    "status in the Prometheus text format (for node_exporter's or windows_exporter's\n"
    "textfile collector); --from FILE converts a reply saved with sbctl --json status\n"
    "(\"-\": standard input) instead of asking the service. follow prints what live\n"
    "streams named NAME... (all without it) write, as it arrives, until Ctrl+C.\n";

typedef struct {
  uv_pipe_t pipe;
  uv_connect_t connect;
  uv_write_t write;
  const char* request;
  sb__buf_t reply;
  int err;
} sbctl_t;

static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf) {
  static char slab[65536];
  (void)h;
  (void)suggested;
  buf->base = slab;
  buf->len = sizeof(slab);
}

static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  sbctl_t* c = s->data;
  if (n > 0) {
    sb__buf_append(&c->reply, buf->base, (size_t)n);
  } else if (n < 0) {
    if (n != UV_EOF)
      c->err = (int)n;
    uv_close((uv_handle_t*)s, NULL);
  }
}

static void on_written(uv_write_t* w, int status) {
  sbctl_t* c = w->data;
  if (status < 0) {
    c->err = status;
    uv_close((uv_handle_t*)&c->pipe, NULL);
  }
}

static void on_connect(uv_connect_t* req, int status) {
  sbctl_t* c = req->data;
  uv_buf_t buf = uv_buf_init((char*)c->request, (unsigned)strlen(c->request));
  if (status < 0) {
    c->err = status;
    uv_close((uv_handle_t*)&c->pipe, NULL);
    return;
  }
  c->write.data = c;
  if ((c->err = uv_write(&c->write, (uv_stream_t*)&c->pipe, &buf, 1, on_written)) !=
          0 ||
      (c->err = uv_read_start((uv_stream_t*)&c->pipe, on_alloc, on_read)) != 0)
    uv_close((uv_handle_t*)&c->pipe, NULL);
}

static double num(const cJSON* o, const char* name) {
  const cJSON* v = cJSON_GetObjectItemCaseSensitive(o, name);
  return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static const char* str(const cJSON* o, const char* name) {
  const cJSON* v = cJSON_GetObjectItemCaseSensitive(o, name);
  return cJSON_IsString(v) ? v->valuestring : "-";
}

/* The counters' names in the status reply, from the table (counters.h): a counter
 * renamed or removed there breaks this file's build, not its output. */
/* clang-format off */
enum {
#define SBCTL_COUNTER_ID(field, ...) K_##field,
  SB__COUNTERS(SBCTL_COUNTER_ID)
#undef SBCTL_COUNTER_ID
  K_COUNT
};
/* clang-format on */

static const char* const counter_names[K_COUNT] = {
#define SBCTL_COUNTER_NAME(field, name, ...) name,
    SB__COUNTERS(SBCTL_COUNTER_NAME)
#undef SBCTL_COUNTER_NAME
};

static double counter(const cJSON* c, int k) {
  return num(c, counter_names[k]);
}

static void print_status(const cJSON* r) {
  const cJSON* c = cJSON_GetObjectItemCaseSensitive(r, "counters");
  const cJSON* bad = cJSON_GetObjectItemCaseSensitive(c, "bad_handshakes");
  const cJSON* sp = cJSON_GetObjectItemCaseSensitive(r, "spool");
  const cJSON* ar = cJSON_GetObjectItemCaseSensitive(r, "archive");
  const cJSON* e;
  printf("streambrokerd %s, up %.0f s, serving %s\n", str(r, "version"),
         num(r, "uptime_s"), str(r, "control_pipe"));
  if (strcmp(str(r, "mode"), "archive") == 0)
    printf("mode:            archive (no upstream configured)\n");
  else
    printf("mode:            forward to %s\n", str(r, "upstream"));
  printf("streams open:    %.0f\n", num(r, "streams_open"));
  printf("streams:         %.0f opened, %.0f closed\n", counter(c, K_streams_opened),
         counter(c, K_streams_closed));
  printf("bytes:           %.0f in, %.0f out\n", counter(c, K_bytes_in),
         counter(c, K_bytes_out));
  printf("refused:         %.0f (stream limits), %.0f (per user), %.0f (handshakes), "
         "%.0f (groups)\n",
         counter(c, K_refused_limit), counter(c, K_refused_user),
         counter(c, K_refused_handshakes), counter(c, K_refused_group));
  printf("handshakes:      %.0f open, %.0f bytes held, %.0f waits for memory\n",
         num(r, "handshakes_open"), num(r, "handshake_bytes"),
         counter(c, K_handshake_memory_waits));
  printf("log suppressed:  %.0f (client warnings over the per-user rate)\n",
         counter(c, K_log_suppressed));
  printf("accept lost:     %.0f (connections dropped unread)\n",
         counter(c, K_accept_lost));
  printf("errors:          %.0f client, %.0f upstream, %.0f archive\n",
         counter(c, K_client_errors), counter(c, K_upstream_errors),
         counter(c, K_archive_errors));
  printf("upstream dials:  %.0f, %.0f failed\n", counter(c, K_upstream_dials),
         counter(c, K_upstream_dial_failures));
  printf("probes:          %.0f (connections closed before sending a byte)\n",
         counter(c, K_connections_empty));
  printf("bad handshakes:  %.0f timed out", counter(c, K_handshake_timeouts));
  /* Every handshake error is listed from the start: the ones seen are news. */
  cJSON_ArrayForEach(e, bad) {
    if (e->valuedouble > 0)
      printf(", %.0f %s", e->valuedouble, e->string);
  }
  printf("\n");
  if (ar != NULL) {
    const cJSON* w = cJSON_GetObjectItemCaseSensitive(ar, "writable");
    printf("archive:         %s: %.0f bytes in %.0f files, %.0f closed streams\n",
           str(ar, "dir"), num(ar, "bytes"), num(ar, "files"),
           num(ar, "closed_streams"));
    /* 0 is no limit (archive_max_bytes, archive_max_age). */
    printf("retention:       ");
    if (num(ar, "max_bytes") > 0)
      printf("max %.0f bytes", num(ar, "max_bytes"));
    else
      printf("no size limit");
    if (num(ar, "max_age_s") > 0)
      printf(", max age %.0f s", num(ar, "max_age_s"));
    else
      printf(", no age limit");
    printf("; deleted %.0f streams (%.0f files, %.0f bytes)\n",
           num(ar, "retention_deleted_streams"), num(ar, "retention_deleted_files"),
           num(ar, "retention_deleted_bytes"));
    if (cJSON_IsTrue(w))
      printf("archive writes:  writable");
    else
      printf("archive writes:  NOT WRITABLE for %.0f streams (%s)",
             num(ar, "streams_cannot_write"), str(ar, "last_error"));
    printf(", %.0f streams (%.0f bytes) waiting in the spool\n",
           num(ar, "streams_waiting"), num(ar, "bytes_waiting"));
    printf("archive spool:   %.0f outages, %.0f bytes spooled, %.0f retries failed\n",
           counter(c, K_archive_streams_spooled), counter(c, K_archive_bytes_spooled),
           counter(c, K_archive_retries));
  }
  if (sp != NULL) {
    printf("spool:           %.0f bytes in %.0f chunks (cap %.0f), oldest unsent %.1f "
           "s ago\n",
           num(sp, "bytes"), num(sp, "chunks"), num(sp, "max_bytes"),
           num(sp, "oldest_unsent_age_s"));
    printf("spooled:         %.0f bytes sent from the spool, %.0f resent after %.0f "
           "reopens (%.0f after an unconfirmed end), %.0f streams resumed\n",
           counter(c, K_bytes_spooled), counter(c, K_bytes_resent),
           counter(c, K_upstream_reopens), counter(c, K_upstream_end_resends),
           counter(c, K_streams_resumed));
    printf("spool full:      %.0f bytes refused (%.0f streams closed), %.0f bytes "
           "dropped\n",
           num(cJSON_GetObjectItemCaseSensitive(c, "bytes_refused"), "spool_full"),
           counter(c, K_streams_refused_full),
           num(cJSON_GetObjectItemCaseSensitive(c, "bytes_dropped"), "spool_full"));
  }
}

/* Where a stream goes: archive mode, its .log file; forward mode, the name it has
 * upstream and its route (live, spool, ...), or "-" when the reply does not say. */
static void print_destination(const cJSON* s) {
  const cJSON* file = cJSON_GetObjectItemCaseSensitive(s, "archive_file");
  const cJSON* up = cJSON_GetObjectItemCaseSensitive(s, "upstream_name");
  if (cJSON_IsString(file))
    printf("%s", file->valuestring);
  else if (cJSON_IsString(up))
    printf("upstream %s (%s, %s)", up->valuestring, str(s, "upstream"),
           str(s, "route"));
  else
    printf("-");
}

static void print_streams(const cJSON* r) {
  const cJSON* list = cJSON_GetObjectItemCaseSensitive(r, "streams");
  const cJSON* s;
  printf("%6s %8s %-8s %12s  %-30s  %s\n", "ID", "PID", "TYPE", "BYTES", "NAME",
         "GOES TO");
  cJSON_ArrayForEach(s, list) {
    printf("%6.0f %8.0f %-8s %12.0f  %-30s  ", num(s, "id"), num(s, "pid"),
           str(s, "type"), num(s, "bytes"), str(s, "name"));
    print_destination(s);
    printf("\n");
  }
}

/* sbctl reload: the keys applied, and those that wait for a restart. */
static void print_reload(const cJSON* r) {
  const cJSON* lists[2];
  const char* const heads[2] = {"applied", "restart needed"};
  int i;
  lists[0] = cJSON_GetObjectItemCaseSensitive(r, "applied");
  lists[1] = cJSON_GetObjectItemCaseSensitive(r, "restart_needed");
  printf("reloaded %s\n", str(r, "config"));
  for (i = 0; i < 2; i++) {
    const cJSON* k;
    int n = 0;
    printf("%-15s", heads[i]);
    cJSON_ArrayForEach(k, lists[i]) {
      if (cJSON_IsString(k))
        printf("%s%s", n++ ? ", " : " ", k->valuestring);
    }
    printf("%s\n", n ? "" : " (none)");
  }
}

/* sbctl_follow.c */
int sbctl_follow(const char* path, const char* address, const char* prefix);

/* Reads a saved status reply into reply (NUL-terminated); 0, or 1 after a message. */
static int read_from(const char* path, sb__buf_t* reply) {
  FILE* f = strcmp(path, "-") == 0 ? stdin : sb__file_read(path);
  char chunk[65536];
  size_t n;
  if (f == NULL) {
    fprintf(stderr, "sbctl: cannot open %s\n", path);
    return 1;
  }
  while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
    sb__buf_append(reply, chunk, n);
  if (f != stdin)
    fclose(f);
  return 0;
}

/* The retry request, its name (if any) escaped as JSON; freed by the caller. */
static char* retry_request_new(const char* name) {
  cJSON* o = cJSON_CreateObject();
  char *text, *out;
  cJSON_AddStringToObject(o, "command", "retry");
  if (name != NULL)
    cJSON_AddStringToObject(o, "name", name);
  text = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  if (text == NULL)
    abort();
  out = sb__xmalloc(strlen(text) + 2);
  strcpy(out, text);
  strcat(out, "\n");
  cJSON_free(text);
  return out;
}

int main(int argc, char** argv) {
  const char* address = NULL;
  const char* command = NULL;
  const char* from = NULL;
  const char* prefix = ""; /* follow: every stream */
  int json = 0, i, status = 1;
  const char* retry_name = NULL;
  char path[1024], request[64];
  char* retry_request = NULL;
  sbctl_t c;
  cJSON* reply;

  argv = sb__tool_utf8_argv(&argc, argv); /* stream names and paths, as UTF-8 */
  if (argc > 1 && strcmp(argv[1], "archive") == 0)
    return sb__sbctl_archive(argc - 2, argv + 2);
  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--json") == 0) {
      json = 1;
    } else if (strcmp(argv[i], "--admin") == 0 && i + 1 < argc) {
      address = argv[++i];
    } else if (strcmp(argv[i], "--from") == 0 && i + 1 < argc) {
      from = argv[++i];
    } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      fputs(usage, stdout);
      return 0;
    } else if (command == NULL &&
               (strcmp(argv[i], "status") == 0 || strcmp(argv[i], "streams") == 0 ||
                strcmp(argv[i], "metrics") == 0 || strcmp(argv[i], "reload") == 0)) {
      command = argv[i];
    } else if (command == NULL && strcmp(argv[i], "retry") == 0) {
      command = argv[i];
      if (i + 1 < argc && argv[i + 1][0] != '-')
        retry_name = argv[++i];
    } else if (command == NULL && strcmp(argv[i], "follow") == 0) {
      command = argv[i];
      if (i + 1 < argc && argv[i + 1][0] != '-')
        prefix = argv[++i];
    } else {
      fprintf(stderr, "sbctl: unknown argument: %s\n%s", argv[i], usage);
      return 2;
    }
  }
  if (command == NULL) {
    fprintf(stderr, "sbctl: no command given\n%s", usage);
    return 2;
  }
  if (address == NULL)
    address = sb__default_admin_pipe();
  if (sb__address_bind_path(address, path, sizeof(path)) != 0) {
    fprintf(stderr, "sbctl: invalid admin address \"%s\"\n", address);
    return 2;
  }
  if (strcmp(command, "follow") == 0)
    return sbctl_follow(path, address, prefix);
  memset(&c, 0, sizeof(c));
  if (from != NULL) {
    if (strcmp(command, "metrics") != 0) {
      fprintf(stderr, "sbctl: --from goes with metrics only\n%s", usage);
      return 2;
    }
    if (read_from(from, &c.reply) != 0)
      return 1;
    goto parse;
  }
  /* metrics is the status, printed otherwise. */
  snprintf(request, sizeof(request), "{\"command\":\"%s\"}\n",
           strcmp(command, "metrics") == 0 ? "status" : command);
  c.request = request;
  if (strcmp(command, "retry") == 0)
    c.request = retry_request = retry_request_new(retry_name);
  uv_pipe_init(uv_default_loop(), &c.pipe, 0);
  c.pipe.data = &c;
  c.connect.data = &c;
  {
    int r = sb__admin_connect(uv_default_loop(), &c.pipe, &c.connect, path, on_connect);
    if (r != 0) {
      fprintf(stderr, "sbctl: cannot talk to streambrokerd at %s: %s\n", address,
              sb_strerror(r));
      uv_close((uv_handle_t*)&c.pipe, NULL);
      uv_run(uv_default_loop(), UV_RUN_DEFAULT);
      uv_loop_close(uv_default_loop());
      return 1;
    }
  }
  uv_run(uv_default_loop(), UV_RUN_DEFAULT);
  uv_loop_close(uv_default_loop());
  if (c.err != 0) {
    fprintf(stderr, "sbctl: cannot talk to streambrokerd at %s: %s\n", address,
            uv_strerror(c.err));
    sb__buf_free(&c.reply);
    return 1;
  }
parse:
  sb__buf_putc(&c.reply, '\0');
  reply = cJSON_Parse(c.reply.data);
  if (reply == NULL) {
    fprintf(stderr, "sbctl: the service's reply is not JSON\n");
  } else if (cJSON_GetObjectItemCaseSensitive(reply, "error") != NULL) {
    fprintf(stderr, "sbctl: the service says: %s\n", str(reply, "error"));
  } else {
    if (strcmp(command, "metrics") == 0) {
      /* The text format wants LF line ends: Windows' C runtime would write CRLF. */
      fflush(stdout);
      sb__tool_binary_stdio();
      sb__sbctl_metrics(reply);
    } else if (json)
      fputs(c.reply.data, stdout);
    else if (strcmp(command, "status") == 0)
      print_status(reply);
    else if (strcmp(command, "retry") == 0)
      printf("%.0f given-up streams tried again\n", num(reply, "retried"));
    else if (strcmp(command, "reload") == 0)
      print_reload(reply);
    else
      print_streams(reply);
    status = 0;
  }
  cJSON_Delete(reply);
  sb__buf_free(&c.reply);
  free(retry_request);
  return status;
}
