/*
 * writer.c - a short-lived stream writer for tests: connects, writes one text stream
 * and exits at once, the commonest client there is.
 *
 *   sb_writer lib ADDRESS NAME HEX   through the client library: sb_stream_open, one
 *                                    sb_stream_write, sb_stream_close (which on
 *                                    Windows waits until the server has read it all)
 *   sb_writer raw ADDRESS NAME HEX   the shape of LUCI's Go client: open the pipe or
 *                                    socket, write the handshake and the data, close
 *                                    the handle at once (no flush, no waiting)
 *
 * HEX is the stream's data. With a fifth argument "go", it first says "ready" on stdout
 * and waits for the end of stdin, so that a test can start many writers and then let
 * them all connect at once. Exit status 0 when every call succeeded, 1 otherwise (the
 * error on stderr), 2 for a usage error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "platform.h"
#include "protocol.h"
#include "task.h"

/* Long enough for any burst of a test: a busy server is waited for, not given up. */
#define SB__WRITER_DIAL_TIMEOUT_MS 120000u

static int write_lib(const char* address, const sb_stream_opts_t* o, const void* data,
                     size_t len) {
  sb_client_t* client;
  sb_stream_t* s;
  int err;
  if ((err = sb_client_open(&client, address)) != 0)
    return err;
  sb_client_set_timeout(client, SB__WRITER_DIAL_TIMEOUT_MS);
  /* The name is the test's, whatever LOGDOG_NAMESPACE the environment has. */
  if ((err = sb_client_set_namespace(client, NULL)) == 0 &&
      (err = sb_stream_open(client, o, &s)) == 0) {
    err = sb_stream_write(s, data, len);
    int cerr = sb_stream_close(s);
    if (err == 0)
      err = cerr;
  }
  sb_client_close(client);
  return err;
}

/* The client library's own dialer and writes, without its close: CloseHandle (or
 * close) right after the last WriteFile. */
static int write_raw(const char* address, const sb_stream_opts_t* o, const void* data,
                     size_t len) {
  sb__props_t props;
  sb__buf_t wire = {0};
  sb_os_handle_t h;
  const char* path;
  int kind, err;
  if ((err = sb__address_parse(address, &kind, &path)) != 0)
    return err;
  if ((err = sb__props_from_opts(&props, o, NULL)) != 0)
    return err;
  err = sb__handshake_encode(&props, &wire);
  sb__props_free(&props);
  sb__buf_append(&wire, data, len);
  if (err == 0)
    err = wire.err;
  if (err == 0 &&
      (err = sb__dial(kind, path, SB__WRITER_DIAL_TIMEOUT_MS, 0, &h)) == 0) {
    /* One write, as a Go client's handshake and first line often are. */
    err = sb__handle_write(h, wire.data, wire.len);
    sb__handle_close(h);
  }
  sb__buf_free(&wire);
  return err;
}

int main(int argc, char** argv) {
  sb_stream_opts_t o;
  unsigned char* data;
  size_t len;
  int err;
  if ((argc != 5 && (argc != 6 || strcmp(argv[5], "go") != 0)) ||
      (strcmp(argv[1], "lib") != 0 && strcmp(argv[1], "raw") != 0)) {
    fprintf(stderr, "usage: sb_writer lib|raw ADDRESS NAME HEX [go]\n");
    return 2;
  }
  if (argc == 6) {
    char buf[256];
    fputs("ready\n", stdout);
    fflush(stdout);
    while (fread(buf, 1, sizeof(buf), stdin) > 0) {
    }
  }
  memset(&o, 0, sizeof(o));
  o.name = argv[3];
  data = sb_test_unhex(argv[4], &len);
  err = strcmp(argv[1], "lib") == 0 ? write_lib(argv[2], &o, data, len)
                                    : write_raw(argv[2], &o, data, len);
  free(data);
  if (err != 0) {
    fprintf(stderr, "sb_writer %s %s: %s\n", argv[1], argv[3], sb_strerror(err));
    return 1;
  }
  return 0;
}
