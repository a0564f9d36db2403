/*
 * sbctl - asks a running streambrokerd for its status, over the admin pipe.
 *
 *   sbctl [--admin ADDR] [--json] status     the service, its upstream, counters
 *   sbctl [--admin ADDR] [--json] streams    open streams, client pid and bytes
 *
 * --json prints the service's reply as it is, for scripts. Exit status: 0, 1 when the
 * service cannot be reached or answers with an error, 2 for a usage error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "internal.h"

static const char usage[] =
    "usage: sbctl [--admin ADDR] [--json] status|streams\n"
    "ADDR is the service's admin_pipe (default: this platform's).\n";

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

static void print_status(const cJSON* r) {
  const cJSON* c = cJSON_GetObjectItemCaseSensitive(r, "counters");
  const cJSON* bad = cJSON_GetObjectItemCaseSensitive(c, "bad_handshakes");
  const cJSON* sp = cJSON_GetObjectItemCaseSensitive(r, "spool");
  const cJSON* e;
  printf("streambrokerd %s, up %.0f s, serving %s\n", str(r, "version"),
         num(r, "uptime_s"), str(r, "control_pipe"));
  if (strcmp(str(r, "mode"), "archive") == 0)
    printf("mode:            archive (no upstream configured)\n");
  else
    printf("mode:            forward to %s\n", str(r, "upstream"));
  printf("streams open:    %.0f\n", num(r, "streams_open"));
  printf("streams:         %.0f opened, %.0f closed\n", num(c, "streams_opened"),
         num(c, "streams_closed"));
  printf("bytes:           %.0f in, %.0f out\n", num(c, "bytes_in"),
         num(c, "bytes_out"));
  printf("refused:         %.0f (stream limits)\n", num(c, "refused_limit"));
  printf("errors:          %.0f client, %.0f upstream, %.0f archive\n",
         num(c, "client_errors"), num(c, "upstream_errors"), num(c, "archive_errors"));
  printf("upstream dials:  %.0f, %.0f failed\n", num(c, "upstream_dials"),
         num(c, "upstream_dial_failures"));
  printf("bad handshakes:  %.0f timed out", num(c, "handshake_timeouts"));
  cJSON_ArrayForEach(e, bad) printf(", %.0f %s", e->valuedouble, e->string);
  printf("\n");
  if (sp != NULL) {
    printf("spool:           %.0f bytes in %.0f chunks (cap %.0f), oldest unsent %.1f "
           "s ago\n",
           num(sp, "bytes"), num(sp, "chunks"), num(sp, "max_bytes"),
           num(sp, "oldest_unsent_age_s"));
    printf("spooled:         %.0f bytes sent from the spool, %.0f resent after %.0f "
           "reopens, %.0f streams resumed\n",
           num(c, "bytes_spooled"), num(c, "bytes_resent"), num(c, "upstream_reopens"),
           num(c, "streams_resumed"));
    printf("spool full:      %.0f bytes refused (%.0f streams closed), %.0f bytes "
           "dropped\n",
           num(cJSON_GetObjectItemCaseSensitive(c, "bytes_refused"), "spool_full"),
           num(c, "streams_refused_spool_full"),
           num(cJSON_GetObjectItemCaseSensitive(c, "bytes_dropped"), "spool_full"));
  }
}

static void print_streams(const cJSON* r) {
  const cJSON* list = cJSON_GetObjectItemCaseSensitive(r, "streams");
  const cJSON* s;
  printf("%6s %8s %-8s %12s  %s\n", "ID", "PID", "TYPE", "BYTES", "NAME");
  cJSON_ArrayForEach(s, list) {
    printf("%6.0f %8.0f %-8s %12.0f  %s\n", num(s, "id"), num(s, "pid"), str(s, "type"),
           num(s, "bytes"), str(s, "name"));
  }
}

int main(int argc, char** argv) {
  const char* address = NULL;
  const char* command = NULL;
  int json = 0, i, status = 1;
  char path[1024], request[64];
  sbctl_t c;
  cJSON* reply;

  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--json") == 0) {
      json = 1;
    } else if (strcmp(argv[i], "--admin") == 0 && i + 1 < argc) {
      address = argv[++i];
    } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      fputs(usage, stdout);
      return 0;
    } else if (command == NULL &&
               (strcmp(argv[i], "status") == 0 || strcmp(argv[i], "streams") == 0)) {
      command = argv[i];
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
  if (sb__listener_bind_path(address, path, sizeof(path)) != 0) {
    fprintf(stderr, "sbctl: invalid admin address \"%s\"\n", address);
    return 2;
  }
  snprintf(request, sizeof(request), "{\"command\":\"%s\"}\n", command);
  memset(&c, 0, sizeof(c));
  c.request = request;
  uv_pipe_init(uv_default_loop(), &c.pipe, 0);
  c.pipe.data = &c;
  c.connect.data = &c;
  uv_pipe_connect(&c.connect, &c.pipe, path, on_connect);
  uv_run(uv_default_loop(), UV_RUN_DEFAULT);
  uv_loop_close(uv_default_loop());
  if (c.err != 0) {
    fprintf(stderr, "sbctl: cannot talk to streambrokerd at %s: %s\n", address,
            uv_strerror(c.err));
    sb__buf_free(&c.reply);
    return 1;
  }
  sb__buf_putc(&c.reply, '\0');
  reply = cJSON_Parse(c.reply.data);
  if (reply == NULL) {
    fprintf(stderr, "sbctl: the service's reply is not JSON\n");
  } else if (cJSON_GetObjectItemCaseSensitive(reply, "error") != NULL) {
    fprintf(stderr, "sbctl: the service says: %s\n", str(reply, "error"));
  } else {
    if (json)
      fputs(c.reply.data, stdout);
    else if (strcmp(command, "status") == 0)
      print_status(reply);
    else
      print_streams(reply);
    status = 0;
  }
  cJSON_Delete(reply);
  sb__buf_free(&c.reply);
  return status;
}
