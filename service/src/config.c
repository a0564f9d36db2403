/*
 * config.c - streambroker.json. One table of keys drives parsing, validation, the
 * printed key table (config/KEYS.md) and the printed defaults.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "internal.h"

typedef enum {
  SB__KEY_ADDRESS,  /* string: an address of this platform's kind */
  SB__KEY_UPSTREAM, /* like ADDRESS, or null */
  SB__KEY_PATH,     /* string, non-empty */
  SB__KEY_OPTPATH,  /* string, may be empty */
  SB__KEY_UINT,     /* integer within [min, max] */
  SB__KEY_LEVEL     /* one of the log level names */
} sb__key_type_t;

typedef struct {
  const char* name;
  sb__key_type_t type;
  size_t offset;
  uint64_t min, max, def; /* for SB__KEY_UINT */
  const char* def_text;   /* string default; NULL: the platform's, or null */
  const char* meaning;
} sb__key_t;

#define SB__OFF(field) offsetof(sb__config_t, field)

static const sb__key_t sb__keys[] = {
    {"control_pipe", SB__KEY_ADDRESS, SB__OFF(control_pipe), 0, 0, 0, NULL,
     "Address clients connect to: unix:PATH (Linux) or net.pipe:NAME (Windows). "
     "Default unix:/run/streambroker/streambroker.sock, net.pipe:streambroker."},
    {"upstream", SB__KEY_UPSTREAM, SB__OFF(upstream), 0, 0, 0, NULL,
     "Address of the upstream stream server every stream is forwarded to; null "
     "archives streams under archive_dir instead."},
    {"data_dir", SB__KEY_PATH, SB__OFF(data_dir), 0, 0, 0, NULL,
     "Directory of the service's state. Default /var/lib/streambroker, "
     "%ProgramData%\\StreamBroker."},
    {"archive_dir", SB__KEY_OPTPATH, SB__OFF(archive_dir), 0, 0, 0, "",
     "Directory of archived streams (archive mode); empty means DATA_DIR/archive."},
    {"handshake_timeout_ms", SB__KEY_UINT, SB__OFF(handshake_timeout_ms), 100, 600000, 5000,
     NULL, "A client must send its whole handshake within this time."},
    {"max_frame_size", SB__KEY_UINT, SB__OFF(max_frame_size), 64, 1048576, 1048576, NULL,
     "Largest handshake JSON accepted, in bytes (the protocol's limit is 1 MiB)."},
    {"max_datagram_size", SB__KEY_UINT, SB__OFF(max_datagram_size), 1, 10485760, 10485760,
     NULL, "Largest datagram accepted, in bytes (the protocol's limit is 10 MiB)."},
    {"max_streams", SB__KEY_UINT, SB__OFF(max_streams), 1, 1000000, 4096, NULL,
     "Open streams in total; further connections are refused and counted."},
    {"max_streams_per_client", SB__KEY_UINT, SB__OFF(max_streams_per_client), 1, 1000000,
     1024, NULL, "Open streams of one client process."},
    {"backoff_initial_ms", SB__KEY_UINT, SB__OFF(backoff_initial_ms), 1, 60000, 100, NULL,
     "First delay before dialing a busy or absent upstream again; it doubles each try."},
    {"backoff_max_ms", SB__KEY_UINT, SB__OFF(backoff_max_ms), 1, 30000, 10000, NULL,
     "Cap of that delay (at least backoff_initial_ms). Each delay is jittered."},
    {"upstream_high_watermark", SB__KEY_UINT, SB__OFF(upstream_high_watermark), 4096,
     1073741824, 1048576, NULL,
     "Bytes queued to one stream's upstream or archive file before the stream stops "
     "reading its client, until half of it is written."},
    {"log_level", SB__KEY_LEVEL, SB__OFF(log_level), 0, 0, SB_LOG_INFO, "info",
     "error, warn, info or debug."},
    {"log_file", SB__KEY_OPTPATH, SB__OFF(log_file), 0, 0, 0, "",
     "File the log is appended to; empty means standard error."},
};

#define SB__NKEYS (sizeof(sb__keys) / sizeof(sb__keys[0]))

static char** sb__str_field(sb__config_t* cfg, const sb__key_t* k) {
  return (char**)((char*)cfg + k->offset);
}

static uint64_t* sb__uint_field(sb__config_t* cfg, const sb__key_t* k) {
  return (uint64_t*)((char*)cfg + k->offset);
}

static const char* sb__default_string(const sb__key_t* k) {
  if (k->type == SB__KEY_ADDRESS)
    return sb__default_control_pipe();
  if (k->type == SB__KEY_PATH)
    return sb__default_data_dir();
  return k->def_text;
}

void sb__config_defaults(sb__config_t* cfg) {
  size_t i;
  memset(cfg, 0, sizeof(*cfg));
  for (i = 0; i < SB__NKEYS; i++) {
    const sb__key_t* k = &sb__keys[i];
    const char* s = sb__default_string(k);
    if (k->type == SB__KEY_UINT)
      *sb__uint_field(cfg, k) = k->def;
    else if (k->type == SB__KEY_LEVEL)
      cfg->log_level = (int)k->def;
    else
      *sb__str_field(cfg, k) = s ? sb__xstrdup(s) : NULL;
  }
  free(cfg->archive_dir);
  cfg->archive_dir = sb__path_join(cfg->data_dir, "archive");
}

void sb__config_free(sb__config_t* cfg) {
  size_t i;
  for (i = 0; i < SB__NKEYS; i++) {
    const sb__key_t* k = &sb__keys[i];
    if (k->type != SB__KEY_UINT && k->type != SB__KEY_LEVEL) {
      free(*sb__str_field(cfg, k));
      *sb__str_field(cfg, k) = NULL;
    }
  }
}

/* 1-based line of the byte at offset off. */
static int sb__line_at(const char* text, size_t off) {
  int line = 1;
  size_t i;
  for (i = 0; i < off; i++)
    line += text[i] == '\n';
  return line;
}

/*
 * cJSON keeps no positions, so the lines of the top-level keys come from a scan of the
 * raw text: strings (with escapes) and nesting are tracked, and each string that
 * starts at depth 1 in key position records its line, in order. cJSON keeps members
 * in text order too, so the n-th member has the n-th line.
 */
static int* sb__key_lines(const char* text, size_t len, size_t* count) {
  int* lines = NULL;
  size_t n = 0, cap = 0, i;
  int depth = 0, expect_key = 0, line = 1;
  for (i = 0; i < len; i++) {
    char c = text[i];
    if (c == '\n') {
      line++;
    } else if (c == '"') {
      if (depth == 1 && expect_key) {
        if (n == cap) {
          cap = cap ? cap * 2 : 16;
          lines = sb__xrealloc(lines, cap * sizeof(*lines));
        }
        lines[n++] = line;
        expect_key = 0;
      }
      for (i++; i < len && text[i] != '"'; i++) {
        if (text[i] == '\\')
          i++;
        else if (text[i] == '\n')
          line++;
      }
    } else if (c == '{' || c == '[') {
      depth++;
      expect_key = depth == 1 && c == '{';
    } else if (c == '}' || c == ']') {
      depth--;
    } else if (c == ',' && depth == 1) {
      expect_key = 1;
    }
  }
  *count = n;
  return lines;
}

static int sb__fail(char* err, size_t size, const char* origin, int line, const char* key,
                    const char* what) {
  if (key)
    snprintf(err, size, "%s:%d: key \"%s\": %s", origin, line, key, what);
  else
    snprintf(err, size, "%s:%d: %s", origin, line, what);
  return SB_ECONFIG;
}

/* Checks an address against this platform's kind. */
static int sb__check_address(const char* s) {
  int kind, want;
  const char* path;
  if (sb__address_parse(s, &kind, &path) != 0 ||
      sb__address_parse(sb__default_control_pipe(), &want, &path) != 0)
    return -1;
  return kind == want ? 0 : -1;
}

static int sb__set_key(sb__config_t* cfg, const sb__key_t* k, const cJSON* v, char* what,
                       size_t what_size) {
  char** sp;
  switch (k->type) {
  case SB__KEY_UINT: {
    double d = v->valuedouble;
    if (!cJSON_IsNumber(v) || d != floor(d) || d < (double)k->min || d > (double)k->max) {
      snprintf(what, what_size, "must be an integer from %llu to %llu",
               (unsigned long long)k->min, (unsigned long long)k->max);
      return -1;
    }
    *sb__uint_field(cfg, k) = (uint64_t)d;
    return 0;
  }
  case SB__KEY_LEVEL:
    if (!cJSON_IsString(v) || sb__log_level_parse(v->valuestring) < 0) {
      snprintf(what, what_size, "must be one of \"error\", \"warn\", \"info\", \"debug\"");
      return -1;
    }
    cfg->log_level = sb__log_level_parse(v->valuestring);
    return 0;
  default:
    break;
  }
  sp = sb__str_field(cfg, k);
  if (k->type == SB__KEY_UPSTREAM && cJSON_IsNull(v)) {
    free(*sp);
    *sp = NULL;
    return 0;
  }
  if (!cJSON_IsString(v)) {
    snprintf(what, what_size, "must be a string%s",
             k->type == SB__KEY_UPSTREAM ? " or null" : "");
    return -1;
  }
  if ((k->type == SB__KEY_ADDRESS || k->type == SB__KEY_UPSTREAM) &&
      sb__check_address(v->valuestring) != 0) {
    snprintf(what, what_size, "must be an address like %s (\"%s\" is not)",
             sb__default_control_pipe(), v->valuestring);
    return -1;
  }
  if (k->type == SB__KEY_PATH && v->valuestring[0] == '\0') {
    snprintf(what, what_size, "must not be empty");
    return -1;
  }
  free(*sp);
  *sp = sb__xstrdup(v->valuestring);
  return 0;
}

int sb__config_parse(sb__config_t* cfg, const char* text, size_t len, const char* origin,
                     char* err, size_t err_size) {
  const char* end = NULL;
  cJSON *root, *m, *prev;
  size_t nlines = 0, idx = 0, i;
  int* lines;
  int r = 0, line, archive_set = 0;
  char what[256];
  root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
  if (root == NULL) {
    size_t off = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
    char near[24];
    size_t n = len - off < sizeof(near) - 1 ? len - off : sizeof(near) - 1;
    memcpy(near, text + off, n);
    near[n] = '\0';
    for (i = 0; i < n; i++)
      if (near[i] == '\n' || near[i] == '\r')
        near[i] = ' ';
    snprintf(what, sizeof(what), "invalid JSON near \"%s\"", near);
    return sb__fail(err, err_size, origin, sb__line_at(text, off), NULL, what);
  }
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return sb__fail(err, err_size, origin, 1, NULL, "the config must be a JSON object");
  }
  lines = sb__key_lines(text, len, &nlines);
  for (m = root->child; m != NULL && r == 0; m = m->next, idx++) {
    const sb__key_t* k = NULL;
    line = idx < nlines ? lines[idx] : 1;
    for (prev = root->child; prev != m; prev = prev->next) {
      if (strcmp(prev->string, m->string) == 0)
        break;
    }
    if (prev != m) {
      r = sb__fail(err, err_size, origin, line, m->string, "duplicate key");
      break;
    }
    for (i = 0; i < SB__NKEYS; i++) {
      if (strcmp(sb__keys[i].name, m->string) == 0)
        k = &sb__keys[i];
    }
    if (k == NULL) {
      r = sb__fail(err, err_size, origin, line, m->string, "unknown key");
      break;
    }
    if (sb__set_key(cfg, k, m, what, sizeof(what)) != 0) {
      r = sb__fail(err, err_size, origin, line, m->string, what);
      break;
    }
    if (k->offset == SB__OFF(archive_dir))
      archive_set = cfg->archive_dir[0] != '\0';
  }
  if (r == 0 && cfg->backoff_max_ms < cfg->backoff_initial_ms) {
    line = 1;
    for (m = root->child, idx = 0; m != NULL; m = m->next, idx++) {
      if (strcmp(m->string, "backoff_max_ms") == 0 && idx < nlines)
        line = lines[idx];
    }
    r = sb__fail(err, err_size, origin, line, "backoff_max_ms",
                 "must be at least backoff_initial_ms");
  }
  if (r == 0 && !archive_set) {
    free(cfg->archive_dir);
    cfg->archive_dir = sb__path_join(cfg->data_dir, "archive");
  }
  free(lines);
  cJSON_Delete(root);
  return r;
}

int sb__config_load(sb__config_t* cfg, const char* path, char* err, size_t err_size) {
  FILE* f = fopen(path, "rb");
  sb__buf_t text = {0};
  char chunk[4096];
  size_t n;
  int r;
  if (f == NULL) {
    snprintf(err, err_size, "%s: cannot open the config file", path);
    return SB_ENOENT;
  }
  while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && text.len < (1u << 20))
    sb__buf_append(&text, chunk, n);
  if (ferror(f) || text.err) {
    fclose(f);
    sb__buf_free(&text);
    snprintf(err, err_size, "%s: cannot read the config file", path);
    return SB_EIO;
  }
  fclose(f);
  r = sb__config_parse(cfg, text.data ? text.data : "", text.len, path, err, err_size);
  sb__buf_free(&text);
  return r;
}

static const char* sb__type_text(const sb__key_t* k) {
  switch (k->type) {
  case SB__KEY_ADDRESS:
    return "address";
  case SB__KEY_UPSTREAM:
    return "address or null";
  case SB__KEY_UINT:
    return "integer";
  case SB__KEY_LEVEL:
    return "string";
  default:
    return "path";
  }
}

void sb__config_write_table(FILE* out) {
  size_t i;
  fprintf(out, "| key | type | default | allowed | meaning |\n");
  fprintf(out, "| --- | --- | --- | --- | --- |\n");
  for (i = 0; i < SB__NKEYS; i++) {
    const sb__key_t* k = &sb__keys[i];
    char def[64], allowed[64];
    switch (k->type) {
    case SB__KEY_UINT:
      snprintf(def, sizeof(def), "%llu", (unsigned long long)k->def);
      snprintf(allowed, sizeof(allowed), "%llu to %llu", (unsigned long long)k->min,
               (unsigned long long)k->max);
      break;
    case SB__KEY_LEVEL:
      snprintf(def, sizeof(def), "`\"%s\"`", k->def_text);
      snprintf(allowed, sizeof(allowed), "error, warn, info, debug");
      break;
    case SB__KEY_UPSTREAM:
      snprintf(def, sizeof(def), "`null`");
      snprintf(allowed, sizeof(allowed), "address, null");
      break;
    case SB__KEY_ADDRESS:
    case SB__KEY_PATH:
      snprintf(def, sizeof(def), "per platform");
      snprintf(allowed, sizeof(allowed), "%s", k->type == SB__KEY_PATH ? "non-empty" : "address");
      break;
    default:
      snprintf(def, sizeof(def), "`\"\"`");
      snprintf(allowed, sizeof(allowed), "any");
    }
    fprintf(out, "| `%s` | %s | %s | %s | %s |\n", k->name, sb__type_text(k), def, allowed,
            k->meaning);
  }
}

void sb__config_write_defaults(FILE* out) {
  sb__config_t cfg;
  cJSON* root = cJSON_CreateObject();
  char* text;
  size_t i;
  sb__config_defaults(&cfg);
  for (i = 0; i < SB__NKEYS; i++) {
    const sb__key_t* k = &sb__keys[i];
    if (k->type == SB__KEY_UINT)
      cJSON_AddNumberToObject(root, k->name, (double)*sb__uint_field(&cfg, k));
    else if (k->type == SB__KEY_LEVEL)
      cJSON_AddStringToObject(root, k->name, k->def_text);
    else if (k->offset == SB__OFF(archive_dir))
      cJSON_AddStringToObject(root, k->name, "");
    else if (*sb__str_field(&cfg, k) == NULL)
      cJSON_AddNullToObject(root, k->name);
    else
      cJSON_AddStringToObject(root, k->name, *sb__str_field(&cfg, k));
  }
  text = cJSON_Print(root);
  if (text != NULL)
    fprintf(out, "%s\n", text);
  free(text);
  cJSON_Delete(root);
  sb__config_free(&cfg);
}
