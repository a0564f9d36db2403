/* name.c - LogDog stream name and tag rules (types.StreamName.Validate). */
#include <string.h>

#include "protocol.h"

static int sb__is_alnum(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

int sb_validate_name(const char* name, size_t len) {
  size_t i;
  int seg_start = 1;
  if (name == NULL || len == 0 || len > SB_MAX_NAME_LEN)
    return SB_ENAME;
  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)name[i];
    if (seg_start) {
      /* Covers a leading '/', '//' and an empty segment. */
      if (!sb__is_alnum(c))
        return SB_ENAME;
      seg_start = 0;
    } else if (c == '/') {
      seg_start = 1;
    } else if (!sb__is_alnum(c) && c != ':' && c != '_' && c != '-' && c != '.') {
      return SB_ENAME;
    }
  }
  /* A trailing '/' leaves an empty last segment. */
  return seg_start ? SB_ENAME : 0;
}

int sb_validate_tag(const char* key, size_t key_len, size_t value_len) {
  if (key_len > SB_MAX_TAG_KEY_LEN || value_len > SB_MAX_TAG_VALUE_LEN)
    return SB_ETAG;
  return sb_validate_name(key, key_len) == 0 ? 0 : SB_ETAG;
}
