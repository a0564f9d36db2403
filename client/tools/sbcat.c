/*
 * sbcat - copies standard input into one log stream.
 *
 *   sbcat --name NAME [--type text|binary|datagram] [--content-type T]
 *         [--tag KEY=VALUE]... [--server ADDR] [--timeout MS] [--close-timeout MS]
 *
 * For a datagram stream each input line (without its "\n" or "\r\n") is one datagram.
 * Exit status: 0 when all of stdin was sent (on Windows: and read by the server, which
 * the close waits for, up to --close-timeout), 1 when the stream could not be opened,
 * written or (Windows) was not read in time, 2 for a usage error (bad option, invalid
 * name or tag).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "streambroker.h"
#include "tools.h"

static const char usage[] =
    "usage: sbcat --name NAME [--type text|binary|datagram] [--content-type TYPE]\n"
    "             [--tag KEY=VALUE]... [--server ADDR] [--timeout MS]\n"
    "             [--close-timeout MS]\n"
    "Copies standard input into the log stream NAME. ADDR is unix:PATH or\n"
    "net.pipe:NAME; by default the address in " SB_ENV_SERVER_PATH ", or when\n"
    "that is unset the service's control pipe, " SB_DEFAULT_SERVER ".\n"
    "For datagram streams each input line is one datagram. --timeout: how long to\n"
    "retry a busy server; --close-timeout: how long to wait at the end for the server\n"
    "to read the stream (Windows; default 30000).\n";

static int fail_usage(const char* fmt, const char* arg) {
  fprintf(stderr, "sbcat: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n%s", usage);
  return 2;
}

/* Sends each line of stdin as one datagram. Lines may be up to the datagram limit. */
static int copy_datagrams(sb_stream_t* s) {
  size_t cap = 4096, len = 0;
  char* line = malloc(cap);
  int c, err = 0;
  if (line == NULL)
    return SB_ENOMEM;
  for (;;) {
    c = getchar();
    if (c == EOF || c == '\n') {
      if (c == '\n' || len > 0) {
        size_t n = len;
        if (c == '\n' && n > 0 && line[n - 1] == '\r')
          n--;
        if ((err = sb_stream_send_datagram(s, line, n)) != 0)
          break;
      }
      len = 0;
      if (c == EOF)
        break;
      continue;
    }
    if (len == cap) {
      char* grown;
      if (cap > SB_MAX_DATAGRAM_SIZE) {
        err = SB_ETOOBIG;
        break;
      }
      grown = realloc(line, cap * 2);
      if (grown == NULL) {
        err = SB_ENOMEM;
        break;
      }
      line = grown;
      cap *= 2;
    }
    line[len++] = (char)c;
  }
  free(line);
  if (err == 0 && ferror(stdin))
    err = SB_EIO;
  return err;
}

/* Whatever arrives goes on at once: a log stream must not wait for a full buffer. */
static int copy_bytes(sb_stream_t* s) {
  static char buf[65536];
  long n;
  int err;
  while ((n = sb__tool_read_stdin(buf, sizeof(buf))) > 0) {
    if ((err = sb_stream_write(s, buf, (size_t)n)) != 0)
      return err;
  }
  return n < 0 ? SB_EIO : 0;
}

int main(int argc, char** argv) {
  sb_stream_opts_t opts;
  sb_tag_t* tags;
  sb_client_t* client = NULL;
  sb_stream_t* stream = NULL;
  const char* server = NULL;
  long timeout = -1, close_timeout = 0;
  int i, err, close_err, status = 1;
  sb_client_opts_t copts;

  argv = sb__tool_utf8_argv(&argc, argv); /* names and tags go out as UTF-8 */
  memset(&opts, 0, sizeof(opts));
  tags = calloc((size_t)argc, sizeof(*tags));
  if (tags == NULL) {
    fprintf(stderr, "sbcat: out of memory\n");
    return 1;
  }
  opts.tags = tags;
  for (i = 1; i < argc; i++) {
    const char* a = argv[i];
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      fputs(usage, stdout);
      status = 0;
      goto done;
    }
    if (i + 1 >= argc) {
      status = fail_usage("unknown option or missing value: %s", a);
      goto done;
    }
    if (strcmp(a, "--name") == 0) {
      opts.name = argv[++i];
    } else if (strcmp(a, "--type") == 0) {
      const char* t = argv[++i];
      if (strcmp(t, "text") == 0)
        opts.type = SB_TEXT;
      else if (strcmp(t, "binary") == 0)
        opts.type = SB_BINARY;
      else if (strcmp(t, "datagram") == 0)
        opts.type = SB_DATAGRAM;
      else {
        status = fail_usage("--type must be text, binary or datagram, not \"%s\"", t);
        goto done;
      }
    } else if (strcmp(a, "--content-type") == 0) {
      opts.content_type = argv[++i];
    } else if (strcmp(a, "--tag") == 0) {
      char* kv = argv[++i];
      char* eq = strchr(kv, '=');
      if (eq == NULL) {
        status = fail_usage("--tag takes KEY=VALUE, not \"%s\"", kv);
        goto done;
      }
      *eq = '\0';
      if (sb_validate_tag(kv, strlen(kv), strlen(eq + 1)) != 0) {
        fprintf(stderr,
                "sbcat: invalid tag \"%s\": a key is 1-64 bytes of [A-Za-z0-9:_.-/] "
                "starting each '/' segment with a letter or digit; a value at most "
                "4096 bytes\n",
                kv);
        status = 2;
        goto done;
      }
      tags[opts.tag_count].key = kv;
      tags[opts.tag_count].value = eq + 1;
      opts.tag_count++;
    } else if (strcmp(a, "--server") == 0) {
      server = argv[++i];
    } else if (strcmp(a, "--timeout") == 0) {
      char* end;
      timeout = strtol(argv[++i], &end, 10);
      if (*end != '\0' || timeout < 0) {
        status = fail_usage("--timeout takes milliseconds, not \"%s\"", argv[i]);
        goto done;
      }
    } else if (strcmp(a, "--close-timeout") == 0) {
      char* end;
      close_timeout = strtol(argv[++i], &end, 10);
      if (*end != '\0' || close_timeout <= 0) {
        status = fail_usage("--close-timeout takes milliseconds, not \"%s\"", argv[i]);
        goto done;
      }
    } else {
      {
        status = fail_usage("unknown option: %s", a);
        goto done;
      }
    }
  }
  if (opts.name == NULL) {
    status = fail_usage("%s", "--name is required");
    goto done;
  }

  sb__tool_binary_stdio();
  if (server == NULL)
    server = sb_default_address();
  memset(&copts, 0, sizeof(copts));
  copts.close_timeout_ms = (uint32_t)close_timeout;
  if ((err = sb_client_open_opts(&client, server, &copts)) != 0) {
    fprintf(stderr, "sbcat: stream server %s: %s\n", server, sb_strerror(err));
    status = err == SB_EADDRESS || err == SB_ENAME ? 2 : 1;
    goto done;
  }
  if (timeout >= 0)
    sb_client_set_timeout(client, (uint32_t)timeout);
  err = sb_stream_open(client, &opts, &stream);
  sb_client_close(client);
  if (err != 0) {
    fprintf(stderr, "sbcat: cannot open stream \"%s\" at %s: %s\n", opts.name, server,
            sb_strerror(err));
    status = err == SB_ENAME || err == SB_ETAG || err == SB_ETYPE ? 2 : 1;
    goto done;
  }
  err = opts.type == SB_DATAGRAM ? copy_datagrams(stream) : copy_bytes(stream);
  close_err = sb_stream_close(stream);
  if (err == 0)
    err = close_err;
  status = 0;
  if (err != 0) {
    fprintf(stderr, "sbcat: stream \"%s\": %s\n", opts.name, sb_strerror(err));
    status = 1;
  }
done:
  free(tags);
  return status;
}
