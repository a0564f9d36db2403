/* client.c - libstreambroker: clients and streams over the platform dialers. */
#include <stdlib.h>
#include <string.h>

#include "platform.h"
#include "protocol.h"

struct sb_client_s {
  int kind;
  char* path;
  char* ns;
  uint32_t timeout_ms;
  uint32_t close_timeout_ms;
};

struct sb_stream_s {
  sb_os_handle_t handle;
  int type;
  int err; /* first write error, reported again by close */
  uint32_t close_timeout_ms;
};

static char* sb__strdup(const char* s) {
  size_t n = strlen(s) + 1;
  char* d = malloc(n);
  if (d != NULL)
    memcpy(d, s, n);
  return d;
}

const char* sb_default_address(void) {
  const char* a = getenv(SB_ENV_SERVER_PATH);
  if (a != NULL && a[0] != '\0')
    return a;
  a = getenv(SB_ENV_DEFAULT_SERVER);
  return a != NULL && a[0] != '\0' ? a : SB_DEFAULT_SERVER;
}

int sb_client_open(sb_client_t** out, const char* address) {
  return sb_client_open_opts(out, address, NULL);
}

int sb_client_open_opts(sb_client_t** out, const char* address,
                        const sb_client_opts_t* opts) {
  sb_client_t* c;
  const char* path;
  int kind, err;
  if (out == NULL)
    return SB_EINVAL;
  *out = NULL;
  if (address == NULL) {
    address = sb_default_address();
  }
  if ((err = sb__address_parse(address, &kind, &path)) != 0)
    return err;
  c = calloc(1, sizeof(*c));
  if (c == NULL)
    return SB_ENOMEM;
  c->kind = kind;
  c->timeout_ms = opts != NULL && opts->dial_timeout_ms != 0
                      ? opts->dial_timeout_ms
                      : SB_DEFAULT_DIAL_TIMEOUT_MS;
  c->close_timeout_ms = opts != NULL && opts->close_timeout_ms != 0
                            ? opts->close_timeout_ms
                            : SB_CLOSE_TIMEOUT_MS;
  if ((c->path = sb__strdup(path)) == NULL) {
    sb_client_close(c);
    return SB_ENOMEM;
  }
  if ((err = sb_client_set_namespace(c, getenv(SB_ENV_NAMESPACE))) != 0) {
    sb_client_close(c);
    return err;
  }
  *out = c;
  return 0;
}

void sb_client_close(sb_client_t* client) {
  if (client == NULL)
    return;
  free(client->path);
  free(client->ns);
  free(client);
}

void sb_client_set_timeout(sb_client_t* client, uint32_t timeout_ms) {
  client->timeout_ms = timeout_ms;
}

int sb_client_set_namespace(sb_client_t* client, const char* ns) {
  char* joined = NULL;
  if (ns != NULL && ns[0] != '\0') {
    /* Normalised like a name part, and it must itself be a valid name. */
    if ((joined = sb__name_join(ns, NULL)) == NULL)
      return SB_ENOMEM;
    if (joined[0] != '\0' && sb_validate_name(joined, strlen(joined)) != 0) {
      free(joined);
      return SB_ENAME;
    }
  }
  free(client->ns);
  client->ns = joined;
  return 0;
}

/* Validates, encodes, dials and writes the handshake; *out is the connected handle. */
static int sb__open(sb_client_t* client, const sb_stream_opts_t* opts, int for_process,
                    sb_os_handle_t* out) {
  sb__props_t props;
  sb__buf_t hs = {0};
  sb_os_handle_t h = SB_INVALID_OS_HANDLE;
  int err;
  if ((err = sb__props_from_opts(&props, opts, client->ns)) != 0)
    return err;
  err = sb__handshake_encode(&props, &hs);
  sb__props_free(&props);
  if (err == 0)
    err = sb__dial(client->kind, client->path, client->timeout_ms, for_process, &h);
  if (err == 0 && (err = sb__handle_write(h, hs.data, hs.len)) != 0)
    sb__handle_close(h);
  sb__buf_free(&hs);
  if (err == 0)
    *out = h;
  return err;
}

int sb_stream_open(sb_client_t* client, const sb_stream_opts_t* opts, sb_stream_t** out) {
  sb_stream_t* s;
  int err;
  if (client == NULL || opts == NULL || out == NULL)
    return SB_EINVAL;
  *out = NULL;
  s = calloc(1, sizeof(*s));
  if (s == NULL)
    return SB_ENOMEM;
  if ((err = sb__open(client, opts, 0, &s->handle)) != 0) {
    free(s);
    return err;
  }
  s->type = (int)opts->type;
  s->close_timeout_ms = client->close_timeout_ms;
  *out = s;
  return 0;
}

int sb_stream_open_for_process(sb_client_t* client, const sb_stream_opts_t* opts,
                               sb_os_handle_t* out) {
  if (client == NULL || opts == NULL || out == NULL)
    return SB_EINVAL;
  *out = SB_INVALID_OS_HANDLE;
  /* A child cannot frame its stdout, so a datagram stream makes no sense here. */
  if (opts->type == SB_DATAGRAM)
    return SB_ESTREAMTYPE;
  return sb__open(client, opts, 1, out);
}

int sb_stream_write(sb_stream_t* stream, const void* buf, size_t len) {
  int err;
  if (stream == NULL || (buf == NULL && len > 0))
    return SB_EINVAL;
  if (stream->type == SB_DATAGRAM)
    return SB_ESTREAMTYPE;
  if (stream->err)
    return stream->err;
  if (len == 0)
    return 0;
  if ((err = sb__handle_write(stream->handle, buf, len)) != 0)
    stream->err = err;
  return err;
}

int sb_stream_send_datagram(sb_stream_t* stream, const void* buf, size_t len) {
  uint8_t small[4096];
  uint8_t hdr[SB_VARINT_MAX_LEN];
  size_t n;
  int err;
  if (stream == NULL || (buf == NULL && len > 0))
    return SB_EINVAL;
  if (stream->type != SB_DATAGRAM)
    return SB_ESTREAMTYPE;
  if (len > SB_MAX_DATAGRAM_SIZE)
    return SB_ETOOBIG;
  if (stream->err)
    return stream->err;
  n = sb__varint_encode(len, hdr);
  /* One write for a small datagram: fewer syscalls, and the frame is never split. */
  if (n + len <= sizeof(small)) {
    memcpy(small, hdr, n);
    if (len > 0)
      memcpy(small + n, buf, len);
    err = sb__handle_write(stream->handle, small, n + len);
  } else {
    err = sb__handle_write(stream->handle, hdr, n);
    if (err == 0)
      err = sb__handle_write(stream->handle, buf, len);
  }
  if (err)
    stream->err = err;
  return err;
}

int sb_stream_close(sb_stream_t* stream) {
  int err;
  if (stream == NULL)
    return SB_EINVAL;
  err = stream->err;
  if (err == 0)
    err = sb__handle_finish(stream->handle, stream->close_timeout_ms);
  sb__handle_close(stream->handle);
  free(stream);
  return err;
}

int sb_os_handle_flush(sb_os_handle_t handle, uint32_t timeout_ms) {
  if (handle == SB_INVALID_OS_HANDLE)
    return SB_EINVAL;
  return sb__handle_flush(handle, timeout_ms != 0 ? timeout_ms : SB_CLOSE_TIMEOUT_MS);
}
