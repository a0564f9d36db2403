/* props.c - stream properties: the handshake's JSON object, both directions. */
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

static const char* const sb__type_names[] = {"text", "binary", "datagram"};
static const char* const sb__default_ctypes[] = {
    "text/plain; charset=utf-8", "application/octet-stream",
    "application/x-logdog-datagram"};

const char* sb__props_default_content_type(int type) {
  return type >= SB_TEXT && type <= SB_DATAGRAM ? sb__default_ctypes[type] : NULL;
}

static char* sb__strndup(const char* s, size_t len) {
  char* d = malloc(len + 1);
  if (d != NULL) {
    memcpy(d, s, len);
    d[len] = '\0';
  }
  return d;
}

static void sb__tags_free(sb__tag_t* tags, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    free(tags[i].key);
    free(tags[i].value);
  }
  free(tags);
}

void sb__props_free(sb__props_t* props) {
  free(props->name);
  free(props->content_type);
  sb__tags_free(props->tags, props->tag_count);
  memset(props, 0, sizeof(*props));
}

int sb__props_copy(sb__props_t* dst, const sb__props_t* src) {
  size_t i;
  memset(dst, 0, sizeof(*dst));
  dst->type = src->type;
  dst->has_timestamp = src->has_timestamp;
  dst->timestamp = src->timestamp;
  if (src->name && (dst->name = sb__strndup(src->name, strlen(src->name))) == NULL)
    goto fail;
  if (src->content_type &&
      (dst->content_type = sb__strndup(src->content_type, strlen(src->content_type))) ==
          NULL)
    goto fail;
  if (src->tag_count > 0) {
    dst->tags = calloc(src->tag_count, sizeof(*dst->tags));
    if (dst->tags == NULL)
      goto fail;
    dst->tag_count = src->tag_count;
    for (i = 0; i < src->tag_count; i++) {
      dst->tags[i].key = sb__strndup(src->tags[i].key, strlen(src->tags[i].key));
      dst->tags[i].value = sb__strndup(src->tags[i].value, strlen(src->tags[i].value));
      if (dst->tags[i].key == NULL || dst->tags[i].value == NULL)
        goto fail;
    }
  }
  return 0;
fail:
  sb__props_free(dst);
  return SB_ENOMEM;
}

/* Binary search over the sorted tags; returns the index of key or where it belongs. */
static size_t sb__tag_find(const sb__props_t* props, const char* key, int* found) {
  size_t lo = 0, hi = props->tag_count;
  *found = 0;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(props->tags[mid].key, key);
    if (c == 0) {
      *found = 1;
      return mid;
    }
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* Takes ownership of key and value in every case. */
static int sb__props_put_tag(sb__props_t* props, char* key, char* value) {
  int found;
  size_t at = sb__tag_find(props, key, &found);
  sb__tag_t* grown;
  if (found) {
    free(key);
    free(props->tags[at].value);
    props->tags[at].value = value;
    return 0;
  }
  grown = realloc(props->tags, (props->tag_count + 1) * sizeof(*grown));
  if (grown == NULL) {
    free(key);
    free(value);
    return SB_ENOMEM;
  }
  props->tags = grown;
  memmove(&grown[at + 1], &grown[at], (props->tag_count - at) * sizeof(*grown));
  grown[at].key = key;
  grown[at].value = value;
  props->tag_count++;
  return 0;
}

int sb__props_set_tag(sb__props_t* props, const char* key, const char* value) {
  char *k, *v;
  int err = sb_validate_tag(key, strlen(key), strlen(value));
  if (err)
    return err;
  k = sb__strndup(key, strlen(key));
  v = sb__strndup(value, strlen(value));
  if (k == NULL || v == NULL) {
    free(k);
    free(v);
    return SB_ENOMEM;
  }
  return sb__props_put_tag(props, k, v);
}

const char* sb__props_get_tag(const sb__props_t* props, const char* key) {
  int found;
  size_t at = sb__tag_find(props, key, &found);
  return found ? props->tags[at].value : NULL;
}

int sb__props_from_opts(sb__props_t* out, const sb_stream_opts_t* opts, const char* ns) {
  const char* ctype;
  size_t i;
  int err = SB_ENOMEM;
  char buf[SB__TIME_BUF];
  memset(out, 0, sizeof(*out));
  if (opts == NULL || opts->name == NULL)
    return SB_ENAME;
  if (opts->type < SB_TEXT || opts->type > SB_DATAGRAM)
    return SB_ETYPE;
  if (opts->tag_count > 0 && opts->tags == NULL)
    return SB_EINVAL;
  out->type = (int)opts->type;
  if ((out->name = sb__name_join(ns, opts->name)) == NULL)
    goto fail;
  if ((err = sb_validate_name(out->name, strlen(out->name))) != 0)
    goto fail;
  err = SB_ENOMEM;
  ctype = opts->content_type && opts->content_type[0] ? opts->content_type
                                                      : sb__default_ctypes[out->type];
  if ((out->content_type = sb__strndup(ctype, strlen(ctype))) == NULL)
    goto fail;
  for (i = 0; i < opts->tag_count; i++) {
    if (opts->tags[i].key == NULL || opts->tags[i].value == NULL) {
      err = SB_ETAG;
      goto fail;
    }
    if ((err = sb__props_set_tag(out, opts->tags[i].key, opts->tags[i].value)) != 0)
      goto fail;
  }
  out->has_timestamp = 1;
  if (opts->timestamp_sec == 0 && opts->timestamp_nsec == 0) {
    out->timestamp = sb__time_now();
  } else {
    out->timestamp.sec = opts->timestamp_sec;
    out->timestamp.nsec = opts->timestamp_nsec;
    if (opts->timestamp_nsec < 0 || opts->timestamp_nsec >= 1000000000 ||
        sb__time_format(out->timestamp, buf) < 0) {
      err = SB_ETIMESTAMP;
      goto fail;
    }
  }
  return 0;
fail:
  sb__props_free(out);
  return err;
}

static void sb__put_member(sb__buf_t* b, const char* key, const char* value, size_t len) {
  sb__buf_append(b, key, strlen(key));
  sb__json_write_string(b, value, len);
}

/*
 * The member order and the omissions are the Go client's json.Marshal of its Flags
 * struct; the bytes must match its output exactly for the same properties.
 */
int sb__props_encode_json(const sb__props_t* props, sb__buf_t* out) {
  char ts[SB__TIME_BUF];
  sb__time_t t = props->timestamp;
  int n;
  size_t i;
  const char* sep = "";
  if (!props->has_timestamp) {
    t.sec = SB__TIME_ZERO_SEC;
    t.nsec = 0;
  }
  if ((n = sb__time_format(t, ts)) < 0)
    return n;
  sb__buf_putc(out, '{');
  if (props->name && props->name[0]) {
    sb__put_member(out, "\"name\":", props->name, strlen(props->name));
    sep = ",";
  }
  if (props->content_type && props->content_type[0]) {
    sb__buf_append(out, sep, strlen(sep));
    sb__put_member(out, "\"contentType\":", props->content_type,
                   strlen(props->content_type));
    sep = ",";
  }
  if (props->type == SB_BINARY || props->type == SB_DATAGRAM) {
    sb__buf_append(out, sep, strlen(sep));
    sb__put_member(out, "\"type\":", sb__type_names[props->type],
                   strlen(sb__type_names[props->type]));
    sep = ",";
  }
  sb__buf_append(out, sep, strlen(sep));
  sb__put_member(out, "\"timestamp\":", ts, (size_t)n);
  if (props->tag_count > 0) {
    sb__buf_append(out, ",\"tags\":{", 9);
    for (i = 0; i < props->tag_count; i++) {
      if (i > 0)
        sb__buf_putc(out, ',');
      sb__json_write_string(out, props->tags[i].key, strlen(props->tags[i].key));
      sb__buf_putc(out, ':');
      sb__json_write_string(out, props->tags[i].value, strlen(props->tags[i].value));
    }
    sb__buf_putc(out, '}');
  }
  sb__buf_putc(out, '}');
  return out->err;
}

/*
 * Reads the "tags" object with TagMap.UnmarshalJSON's semantics: the whole map is
 * replaced, null means none, a null value is the empty string, any other non-string
 * value is an error, and every entry is validated.
 */
static int sb__decode_tags(sb__json_t* j, sb__props_t* out) {
  sb__props_t tmp;
  char *key = NULL, *value = NULL;
  size_t key_len, value_len;
  int r, kind;
  memset(&tmp, 0, sizeof(tmp));
  if (sb__json_null(j)) {
    sb__tags_free(out->tags, out->tag_count);
    out->tags = NULL;
    out->tag_count = 0;
    return 0;
  }
  if ((kind = sb__json_peek(j)) != SB__JSON_OBJECT)
    return kind < 0 ? kind : SB_ETAG;
  if ((r = sb__json_object_begin(j)) < 0)
    return r;
  while ((r = sb__json_object_next(j, &key, &key_len)) == 1) {
    if (sb__json_null(j)) {
      value_len = 0;
      value = sb__strndup("", 0);
      if (value == NULL) {
        r = SB_ENOMEM;
        break;
      }
    } else if ((kind = sb__json_peek(j)) != SB__JSON_STRING) {
      r = kind < 0 ? kind : SB_ETAG;
      break;
    } else if ((r = sb__json_string(j, &value, &value_len)) < 0) {
      break;
    }
    if (strlen(key) != key_len || strlen(value) != value_len ||
        sb_validate_tag(key, key_len, value_len) != 0) {
      r = SB_ETAG;
      break;
    }
    r = sb__props_put_tag(&tmp, key, value);
    key = value = NULL;
    if (r < 0)
      break;
  }
  free(key);
  free(value);
  if (r < 0) {
    sb__props_free(&tmp);
    return r;
  }
  sb__tags_free(out->tags, out->tag_count);
  out->tags = tmp.tags;
  out->tag_count = tmp.tag_count;
  return 0;
}

/* Reads a string member into *dst (replacing it); kind_err for a non-string value. */
static int sb__decode_string(sb__json_t* j, char** dst, size_t* len, int kind_err) {
  char* s;
  int kind = sb__json_peek(j), r;
  if (kind != SB__JSON_STRING)
    return kind < 0 ? kind : kind_err;
  if ((r = sb__json_string(j, &s, len)) < 0)
    return r;
  free(*dst);
  *dst = s;
  return 0;
}

static int sb__decode_member(sb__json_t* j, const char* key, size_t key_len,
                             sb__props_t* out) {
  char* s = NULL;
  size_t len;
  int r, i;
  if (sb__json_key_equal(key, key_len, "name")) {
    if ((r = sb__decode_string(j, &out->name, &len, SB_ENAME)) < 0)
      return r;
    return strlen(out->name) == len ? sb_validate_name(out->name, len) : SB_ENAME;
  }
  if (sb__json_key_equal(key, key_len, "contenttype")) {
    if (sb__json_null(j))
      return 0;
    return sb__decode_string(j, &out->content_type, &len, SB_ECONTENTTYPE);
  }
  if (sb__json_key_equal(key, key_len, "type")) {
    if ((r = sb__decode_string(j, &s, &len, SB_ETYPE)) < 0)
      return r;
    for (i = 0; i < 3; i++) {
      if (strlen(sb__type_names[i]) == len && memcmp(s, sb__type_names[i], len) == 0)
        break;
    }
    free(s);
    if (i == 3)
      return SB_ETYPE;
    out->type = i;
    return 0;
  }
  if (sb__json_key_equal(key, key_len, "timestamp")) {
    const char* q;
    if (sb__json_null(j))
      return 0;
    /* Go parses a time from the raw bytes between the quotes: any escape fails. */
    for (q = j->p + 1; q < j->end && *q != '"'; q++) {
      if (*q == '\\')
        return SB_ETIMESTAMP;
    }
    if ((r = sb__decode_string(j, &s, &len, SB_ETIMESTAMP)) < 0)
      return r;
    r = sb__time_parse(s, len, &out->timestamp);
    free(s);
    if (r < 0)
      return SB_ETIMESTAMP;
    out->has_timestamp = out->timestamp.sec != SB__TIME_ZERO_SEC || out->timestamp.nsec;
    return 0;
  }
  if (sb__json_key_equal(key, key_len, "tags"))
    return sb__decode_tags(j, out);
  return sb__json_skip(j);
}

int sb__props_decode_json(const char* json, size_t len, sb__props_t* out) {
  sb__json_t j;
  char* key = NULL;
  size_t key_len;
  int r, kind;
  const char* ctype;
  memset(out, 0, sizeof(*out));
  sb__json_init(&j, json, len);
  kind = sb__json_peek(&j);
  if (kind < 0) {
    r = kind;
    goto fail;
  }
  if (kind == SB__JSON_NULL) {
    /* Go decodes a top-level null into the struct as a no-op: no name. */
    sb__json_null(&j);
  } else if (kind != SB__JSON_OBJECT) {
    /* Still has to be valid JSON to be "not an object" rather than "not JSON". */
    r = sb__json_skip(&j) < 0 ? SB_EJSON : SB_ENOTOBJECT;
    goto fail;
  } else {
    if ((r = sb__json_object_begin(&j)) < 0)
      goto fail;
    while ((r = sb__json_object_next(&j, &key, &key_len)) == 1) {
      r = sb__decode_member(&j, key, key_len, out);
      free(key);
      key = NULL;
      if (r < 0)
        goto fail;
    }
    if (r < 0)
      goto fail;
  }
  if (!sb__json_ws(&j)) {
    r = SB_ETRAILING;
    goto fail;
  }
  if (out->name == NULL) {
    r = SB_ENONAME;
    goto fail;
  }
  if (out->content_type == NULL || out->content_type[0] == '\0') {
    ctype = sb__default_ctypes[out->type];
    free(out->content_type);
    if ((out->content_type = sb__strndup(ctype, strlen(ctype))) == NULL) {
      r = SB_ENOMEM;
      goto fail;
    }
  }
  return 0;
fail:
  sb__props_free(out);
  return r;
}
