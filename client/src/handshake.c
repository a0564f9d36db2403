/* handshake.c - the stream handshake: magic, varint length, JSON properties. */
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

enum { SB__HS_MAGIC, SB__HS_LENGTH, SB__HS_BODY, SB__HS_DONE, SB__HS_FAILED };

int sb__handshake_encode(const sb__props_t* props, sb__buf_t* out) {
  sb__buf_t json = {0};
  uint8_t len[SB_VARINT_MAX_LEN];
  int err = sb__props_encode_json(props, &json);
  if (err == 0 && json.len > SB_MAX_FRAME_SIZE)
    err = SB_EFRAMESIZE;
  if (err == 0) {
    sb__buf_append(out, SB_MAGIC, SB_MAGIC_LEN);
    sb__buf_append(out, len, sb__varint_encode(json.len, len));
    sb__buf_append(out, json.data, json.len);
    err = out->err;
  }
  sb__buf_free(&json);
  return err;
}

void sb__handshake_init(sb__handshake_t* hs, size_t max_frame) {
  memset(hs, 0, sizeof(*hs));
  hs->state = SB__HS_MAGIC;
  hs->max_frame = max_frame ? max_frame : SB_MAX_FRAME_SIZE;
}

void sb__handshake_destroy(sb__handshake_t* hs) {
  free(hs->body);
  hs->body = NULL;
}

/*
 * The body buffer is allocated only once the whole length is known and checked, so a
 * client cannot make us allocate more than max_frame, and it is sized exactly, so the
 * decoder can never read into the stream data that follows.
 */
int sb__handshake_feed(sb__handshake_t* hs, const uint8_t* buf, size_t len, size_t* used,
                       sb__props_t* props) {
  size_t i = 0, n;
  int r;
  *used = 0;
  while (i < len || hs->state == SB__HS_BODY) {
    switch (hs->state) {
    case SB__HS_MAGIC:
      if (buf[i] != (uint8_t)SB_MAGIC[hs->magic_pos]) {
        hs->state = SB__HS_FAILED;
        return SB_EMAGIC;
      }
      i++;
      if (++hs->magic_pos == SB_MAGIC_LEN)
        hs->state = SB__HS_LENGTH;
      break;
    case SB__HS_LENGTH:
      r = sb__varint_feed(&hs->varint, buf[i++]);
      if (r < 0) {
        hs->state = SB__HS_FAILED;
        return r;
      }
      if (r == 1) {
        if (hs->varint.value > hs->max_frame) {
          hs->state = SB__HS_FAILED;
          return SB_EFRAMESIZE;
        }
        hs->frame_len = (size_t)hs->varint.value;
        hs->body = malloc(hs->frame_len + 1);
        if (hs->body == NULL) {
          hs->state = SB__HS_FAILED;
          return SB_ENOMEM;
        }
        hs->state = SB__HS_BODY;
      }
      break;
    case SB__HS_BODY:
      n = hs->frame_len - hs->body_len;
      if (n > len - i)
        n = len - i;
      memcpy(hs->body + hs->body_len, buf + i, n);
      hs->body_len += n;
      i += n;
      if (hs->body_len < hs->frame_len) {
        hs->consumed += i;
        *used = i;
        return 0;
      }
      hs->body[hs->body_len] = '\0';
      r = sb__props_decode_json(hs->body, hs->body_len, props);
      free(hs->body);
      hs->body = NULL;
      hs->consumed += i;
      *used = i;
      hs->state = r < 0 ? SB__HS_FAILED : SB__HS_DONE;
      return r < 0 ? r : 1;
    default:
      return SB_EINVAL;
    }
  }
  hs->consumed += i;
  *used = i;
  return 0;
}

int sb__handshake_eof(const sb__handshake_t* hs) {
  if (hs->state == SB__HS_MAGIC && hs->magic_pos == 0)
    return SB_EMAGIC;
  return SB_ETRUNCATED;
}
