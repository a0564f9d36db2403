/*
 * config.c - streambroker.json: the defaults, parsing and validation of a config,
 * and the check of its directories, all driven by the table of keys (config_keys.c,
 * which also prints the key table and the default config).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "config_keys.h"

/* Larger config files are refused before parsing (a config is a few hundred bytes). */
#define SB__CONFIG_MAX_SIZE (1u << 20)

static char** sb__str_field(sb__config_t* cfg, const sb__key_t* k) {
  return (char**)((char*)cfg + k->offset);
}

static uint64_t* sb__uint_field(sb__config_t* cfg, const sb__key_t* k) {
  return (uint64_t*)((char*)cfg + k->offset);
}

static int* sb__enum_field(sb__config_t* cfg, const sb__key_t* k) {
  return (int*)((char*)cfg + k->offset);
}

static char* sb__dup_or_null(const char* s) {
  return s ? sb__xstrdup(s) : NULL;
}

/* archive_dir "" stands for DATA_DIR/archive; consumers only ever see the result. */
static char* sb__derived_archive_dir(const char* data_dir) {
  return sb__path_join(data_dir, "archive");
}

static int sb__archive_dir_is_derived(const sb__config_t* cfg) {
  char* derived;
  int r;
  if (cfg->archive_dir == NULL || cfg->archive_dir[0] == '\0')
    return 1;
  if (cfg->data_dir == NULL)
    return 0;
  derived = sb__derived_archive_dir(cfg->data_dir);
  r = strcmp(derived, cfg->archive_dir) == 0;
  free(derived);
  return r;
}

void sb__config_defaults(sb__config_t* cfg) {
  size_t i;
  memset(cfg, 0, sizeof(*cfg));
  for (i = 0; i < SB__NKEYS; i++) {
    const sb__key_t* k = &sb__keys[i];
    if (k->type == SB__KEY_UINT)
      *sb__uint_field(cfg, k) = k->def;
    else if (k->type == SB__KEY_ENUM)
      *sb__enum_field(cfg, k) = (int)k->def;
    else
      *sb__str_field(cfg, k) = sb__dup_or_null(sb__config_key_default(k));
  }
  free(cfg->archive_dir);
  cfg->archive_dir = sb__derived_archive_dir(cfg->data_dir);
}

void sb__config_free(sb__config_t* cfg) {
  size_t i;
  for (i = 0; i < SB__NKEYS; i++) {
    const sb__key_t* k = &sb__keys[i];
    if (k->type == SB__KEY_STRING) {
      free(*sb__str_field(cfg, k));
      *sb__str_field(cfg, k) = NULL;
    }
  }
}

/* A deep copy, so that a failed parse can leave the caller's config untouched. */
static void sb__config_copy(sb__config_t* dst, const sb__config_t* src) {
  size_t i;
  *dst = *src;
  for (i = 0; i < SB__NKEYS; i++) {
    if (sb__keys[i].type == SB__KEY_STRING) {
      char** f = sb__str_field(dst, &sb__keys[i]);
      *f = sb__dup_or_null(*f);
    }
  }
}

/* ---- positions ---- */

static int sb__is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
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
 * cJSON keeps no positions, so the line of each top-level key comes from a scan of the
 * raw text, which cJSON has already accepted: strings (with their escapes) are
 * skipped, nesting is tracked, and each string that starts at depth 1 where a key is
 * expected records its line. cJSON keeps members in text order, duplicates included,
 * so the n-th member's key is on lines[n]. Returns the number of lines recorded.
 */
static size_t sb__key_lines(const char* text, size_t len, int* lines, size_t max) {
  size_t n = 0, i;
  int depth = 0, expect_key = 0, line = 1;
  for (i = 0; i < len; i++) {
    char c = text[i];
    if (c == '\n') {
      line++;
    } else if (c == '"') {
      if (depth == 1 && expect_key) {
        if (n < max)
          lines[n] = line;
        n++;
        expect_key = 0;
      }
      for (i++; i < len && text[i] != '"'; i++) {
        if (text[i] == '\\')
          i++;
        else if (text[i] == '\n') /* cJSON lets raw control characters through */
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
  return n < max ? n : max;
}

/* ---- errors ---- */

static int sb__fail(char* err, size_t size, const char* origin, int line,
                    const char* key, const char* what) {
  if (err == NULL || size == 0)
    return SB_ECONFIG;
  if (key)
    snprintf(err, size, "%s:%d: key \"%s\": %s", origin, line, key, what);
  else
    snprintf(err, size, "%s:%d: %s", origin, line, what);
  return SB_ECONFIG;
}

/*
 * cJSON's error offset is where it gave up, which after a missing token is often the
 * whitespace or newline that follows the culprit: back up to the last character
 * before it, so that the line named is the one to fix, and quote a short piece of
 * that line (one line, printable ASCII only) around it.
 */
static int sb__syntax_error(const char* text, size_t len, size_t off,
                            const char* origin, char* err, size_t size) {
  char what[96], quote[44];
  size_t p = off > len ? len : off, from, to, i, n = 0;
  if (p == len || sb__is_ws(text[p])) {
    size_t q = p;
    while (q > 0 && sb__is_ws(text[q - 1]))
      q--;
    p = q > 0 ? q - 1 : len;
  }
  if (p >= len || sb__is_ws(text[p]))
    return sb__fail(err, size, origin, sb__line_at(text, p), NULL,
                    "invalid JSON near the end of the text");
  from = p;
  while (from > 0 && p - from < 20 && text[from - 1] != '\n' && text[from - 1] != '\r')
    from--;
  to = p;
  while (to < len && to - p < 20 && text[to] != '\n' && text[to] != '\r')
    to++;
  while (from < to && sb__is_ws(text[from]))
    from++;
  for (i = from; i < to; i++) {
    unsigned char c = (unsigned char)text[i];
    quote[n++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
  }
  quote[n] = '\0';
  snprintf(what, sizeof(what), "invalid JSON near '%s'", quote);
  return sb__fail(err, size, origin, sb__line_at(text, p), NULL, what);
}

static const char* sb__json_kind(const cJSON* v) {
  if (cJSON_IsArray(v))
    return "an array";
  if (cJSON_IsString(v))
    return "a string";
  if (cJSON_IsNumber(v))
    return "a number";
  if (cJSON_IsBool(v))
    return "a boolean";
  if (cJSON_IsNull(v))
    return "null";
  return "an object";
}

/* ---- values ---- */

static int sb__address_ok(const char* s) {
  int kind, want;
  const char* path;
  if (sb__address_parse(s, &kind, &path) != 0 ||
      sb__address_parse(sb__default_control_pipe(), &want, &path) != 0)
    return 0;
  return kind == want;
}

static void sb__address_what(char* what, size_t size) {
  int kind = 0;
  const char* path;
  sb__address_parse(sb__default_control_pipe(), &kind, &path);
  snprintf(what, size, "must be an address %s",
           kind == SB__ADDR_UNIX ? "unix:/ABSOLUTE/PATH (104 bytes at most)"
                                 : "net.pipe:NAME");
}

static void sb__enum_what(const sb__key_t* k, char* what, size_t size) {
  size_t i, o = (size_t)snprintf(what, size, "must be one of ");
  for (i = 0; k->values[i] != NULL && o < size; i++)
    o += (size_t)snprintf(what + o, size - o, "%s\"%s\"", i ? ", " : "", k->values[i]);
}

/* Sets one key from its JSON value; on error writes what is wrong and returns -1. */
/* One name, as the group database or Windows would take it: what would end a list
 * (',') or a group file's field (':'), and control characters, are refused. */
static int sb__name_ok(const char* s) {
  size_t n = strlen(s);
  if (n > 256)
    return 0;
  for (; *s; s++) {
    if ((unsigned char)*s < 0x20 || *s == 0x7f || *s == ',' || *s == ':')
      return 0;
  }
  return 1;
}

static int sb__set_key(sb__config_t* cfg, const sb__key_t* k, const cJSON* v,
                       char* what, size_t size) {
  char** sp;
  size_t i;
  if (k->type == SB__KEY_UINT) {
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
    /* 1e3 is the integer 1000; 1.5 and 2.5e-1 are not integers. */
    if (!cJSON_IsNumber(v) || !isfinite(d) || d != floor(d) || d < (double)k->min ||
        d > (double)k->max) {
      snprintf(what, size, "must be an integer from %llu to %llu",
               (unsigned long long)k->min, (unsigned long long)k->max);
      return -1;
    }
    *sb__uint_field(cfg, k) = (uint64_t)d;
    return 0;
  }
  if (k->type == SB__KEY_ENUM) {
    for (i = 0; cJSON_IsString(v) && k->values[i] != NULL; i++) {
      if (strcmp(k->values[i], v->valuestring) == 0) {
        *sb__enum_field(cfg, k) = (int)i;
        return 0;
      }
    }
    sb__enum_what(k, what, size);
    return -1;
  }
  sp = sb__str_field(cfg, k);
  if ((k->flags & SB__KEY_NULLABLE) && cJSON_IsNull(v)) {
    free(*sp);
    *sp = NULL;
    return 0;
  }
  if (!cJSON_IsString(v)) {
    snprintf(what, size, "must be a string%s",
             k->flags & SB__KEY_NULLABLE ? " or null" : "");
    return -1;
  }
  if ((k->flags & SB__KEY_ADDRESS) && !sb__address_ok(v->valuestring)) {
    sb__address_what(what, size);
    return -1;
  }
  if ((k->flags & SB__KEY_NONEMPTY) && v->valuestring[0] == '\0') {
    snprintf(what, size, "must not be empty");
    return -1;
  }
  if ((k->flags & SB__KEY_NAME) && !sb__name_ok(v->valuestring)) {
    snprintf(what, size,
             "must be one group name (no control character, ',' or ':'; at most 256 "
             "bytes)");
    return -1;
  }
  /* A relative path would depend on the directory the service happens to start in
   * (a Windows service starts in System32): refused, with what to write instead. */
  if ((k->flags & SB__KEY_PATH) && v->valuestring[0] != '\0' &&
      !sb__path_is_absolute(v->valuestring)) {
    snprintf(what, size, "must be an absolute path (%s)",
             sb__path_is_absolute("/") ? "starting with /"
                                       : "C:\\... or \\\\server\\share\\...");
    return -1;
  }
  free(*sp);
  *sp = sb__xstrdup(v->valuestring);
  return 0;
}

static const sb__key_t* sb__key_find(const char* name) {
  size_t i;
  for (i = 0; i < SB__NKEYS; i++) {
    if (strcmp(sb__keys[i].name, name) == 0)
      return &sb__keys[i];
  }
  return NULL;
}

/*
 * Each member is checked in text order, so the first problem in the file is the one
 * reported; checks that involve two keys come after, at the line of the later key.
 * The keys are applied to a copy, so a failed parse leaves cfg as it was.
 */
int sb__config_parse(sb__config_t* cfg, const char* text, size_t len,
                     const char* origin, char* err, size_t err_size) {
  const char* end = NULL;
  cJSON *root, *m, *prev;
  sb__config_t next;
  size_t nmembers, nlines, idx, i;
  int* lines = NULL;
  int r = 0, derived, archive_given = 0, line_initial = 0, line_max = 0;
  char what[160];

  root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
  if (root == NULL)
    return sb__syntax_error(text, len, end ? (size_t)(end - text) : 0, origin, err,
                            err_size);
  /* cJSON stops after the value; only whitespace may follow it. */
  for (i = (size_t)(end - text); i < len && sb__is_ws(text[i]); i++)
    ;
  if (i < len) {
    cJSON_Delete(root);
    return sb__syntax_error(text, len, i, origin, err, err_size);
  }
  if (!cJSON_IsObject(root)) {
    for (i = 0; i < len && sb__is_ws(text[i]); i++)
      ;
    snprintf(what, sizeof(what), "the config must be a JSON object, not %s",
             sb__json_kind(root));
    cJSON_Delete(root);
    return sb__fail(err, err_size, origin, sb__line_at(text, i), NULL, what);
  }

  nmembers = (size_t)cJSON_GetArraySize(root);
  lines = sb__xcalloc(nmembers + 1, sizeof(*lines));
  nlines = sb__key_lines(text, len, lines, nmembers);
  derived = sb__archive_dir_is_derived(cfg);
  sb__config_copy(&next, cfg);

  for (m = root->child, idx = 0; m != NULL; m = m->next, idx++) {
    const sb__key_t* k;
    int line = idx < nlines ? lines[idx] : 1;
    for (prev = root->child; prev != m && strcmp(prev->string, m->string) != 0;)
      prev = prev->next;
    if (prev != m) {
      r = sb__fail(err, err_size, origin, line, m->string, "duplicate key");
      break;
    }
    if ((k = sb__key_find(m->string)) == NULL) {
      r = sb__fail(err, err_size, origin, line, m->string, "unknown key");
      break;
    }
    if (sb__set_key(&next, k, m, what, sizeof(what)) != 0) {
      r = sb__fail(err, err_size, origin, line, m->string, what);
      break;
    }
    if (k->offset == offsetof(sb__config_t, archive_dir))
      archive_given = 1;
    else if (k->offset == offsetof(sb__config_t, backoff_initial_ms))
      line_initial = line;
    else if (k->offset == offsetof(sb__config_t, backoff_max_ms))
      line_max = line;
  }

  if (r == 0 && next.backoff_max_ms < next.backoff_initial_ms) {
    snprintf(what, sizeof(what), "must be at least backoff_initial_ms (%llu)",
             (unsigned long long)next.backoff_initial_ms);
    r = sb__fail(err, err_size, origin,
                 line_max > line_initial ? line_max : line_initial, "backoff_max_ms",
                 what);
  }
  if (r == 0 && next.data_dir != NULL &&
      ((!archive_given && derived) || next.archive_dir == NULL ||
       next.archive_dir[0] == '\0')) {
    free(next.archive_dir);
    next.archive_dir = sb__derived_archive_dir(next.data_dir);
  }

  if (r == 0) {
    sb__config_free(cfg);
    *cfg = next;
  } else {
    sb__config_free(&next);
  }
  free(lines);
  cJSON_Delete(root);
  return r;
}

int sb__config_load(sb__config_t* cfg, const char* path, char* err, size_t err_size) {
  FILE* f = sb__file_read(path);
  char* text = NULL;
  size_t len = 0, cap = 0, n;
  int r, e;
  if (f == NULL) {
    e = errno;
    if (e == ENOENT) {
      snprintf(err, err_size, "%s: no such file", path);
      return SB_ENOENT;
    }
    snprintf(err, err_size, "%s: %s", path, strerror(e));
    return SB_EIO;
  }
  errno = 0;
  do {
    if (cap - len < 4096) {
      cap = cap ? cap * 2 : 8192;
      text = sb__xrealloc(text, cap);
    }
    n = fread(text + len, 1, cap - len, f);
    len += n;
  } while (n > 0 && len <= SB__CONFIG_MAX_SIZE);
  e = errno ? errno : EIO;
  if (ferror(f)) {
    fclose(f);
    free(text);
    snprintf(err, err_size, "%s: %s", path, strerror(e));
    return SB_EIO;
  }
  fclose(f);
  if (len > SB__CONFIG_MAX_SIZE) {
    free(text);
    snprintf(err, err_size, "%s: larger than %u bytes", path, SB__CONFIG_MAX_SIZE);
    return SB_ECONFIG;
  }
  r = sb__config_parse(cfg, text, len, path, err, err_size);
  free(text);
  return r;
}

/* ---- directories ---- */

/* 1 when path is a directory, 0 when it is something else, or a libuv error. */
static int sb__is_dir(const char* path) {
  uv_fs_t req;
  int r = uv_fs_stat(NULL, &req, path, NULL);
  int dir = r == 0 && (req.statbuf.st_mode & S_IFMT) == S_IFDIR;
  uv_fs_req_cleanup(&req);
  return r < 0 ? r : dir;
}

/* Creates a file in dir and removes it: 0, or the libuv error of the creation. What
 * can be written is what counts (a read-only mount, an ACL, root's rights), not the
 * mode bits. */
static int sb__probe_write(const char* dir) {
  char name[64];
  char* path;
  uv_fs_t req;
  int fd;
  snprintf(name, sizeof(name), ".streambroker-check-%d", (int)uv_os_getpid());
  path = sb__path_join(dir, name);
  /* The name is predictable: whatever is in its place (a link) is removed, never
   * followed, and the file is made anew. */
  uv_fs_unlink(NULL, &req, path, NULL);
  uv_fs_req_cleanup(&req);
  fd = uv_fs_open(NULL, &req, path,
                  UV_FS_O_WRONLY | UV_FS_O_CREAT | UV_FS_O_EXCL | UV_FS_O_NOFOLLOW,
                  0600, NULL);
  uv_fs_req_cleanup(&req);
  if (fd >= 0) {
    uv_fs_close(NULL, &req, fd, NULL);
    uv_fs_req_cleanup(&req);
    uv_fs_unlink(NULL, &req, path, NULL);
    uv_fs_req_cleanup(&req);
  }
  free(path);
  return fd < 0 ? fd : 0;
}

/*
 * One directory, shown as key "shown" (the key's value: the directory itself, or the
 * log file in it). The deepest part of its path that exists must be a directory this
 * process can write in: the directory itself, or the one it would be made in.
 */
static int sb__check_dir(const char* key, const char* shown, const char* dir,
                         unsigned how, int create, char* err, size_t size) {
  char* p = sb__xstrdup(dir);
  int r, made = create ? sb__mkdir_p(dir) : 0;
  for (;;) {
    char* parent;
    r = sb__is_dir(p);
    if (r == 1)
      break;
    if (r == 0) {
      snprintf(err, size, "%s \"%s\": %s is not a directory", key, shown, p);
      free(p);
      return SB_EEXIST;
    }
    if (r != UV_ENOENT && r != UV_ENOTDIR) {
      snprintf(err, size, "%s \"%s\": %s: %s", key, shown, p, uv_strerror(r));
      free(p);
      return sb__uv_err(r);
    }
    if ((parent = sb__path_parent(p)) == NULL) {
      snprintf(err, size, "%s \"%s\": %s does not exist", key, shown, p);
      free(p);
      return SB_ENOENT;
    }
    free(p);
    p = parent;
  }
  /* Owned by root or the service, writable by no one else (above it too); one the
   * service owns gets its mode (a start, not --check-config, changes it). */
  if ((r = sb__dir_secure(key, shown, dir, how | (create ? SB__DIR_FIX : 0u), err,
                          size)) != 0) {
    free(p);
    return r;
  }
  if ((r = sb__probe_write(p)) < 0) {
    if (strcmp(p, dir) == 0)
      snprintf(err, size, "%s \"%s\": cannot write in %s: %s", key, shown, p,
               uv_strerror(r));
    else
      snprintf(err, size, "%s \"%s\": cannot create %s: cannot write in %s: %s", key,
               shown, dir, p, uv_strerror(r));
    free(p);
    return sb__uv_err(r);
  }
  if (create && made != 0) {
    snprintf(err, size, "%s \"%s\": cannot create %s: %s", key, shown, dir,
             sb_strerror(made));
    free(p);
    return made;
  }
  free(p);
  return 0;
}

int sb__config_check_dirs(const sb__config_t* cfg, unsigned which, int create,
                          char* err, size_t err_size) {
  int r;
  if ((which & SB__DIRS_LOG) && cfg->log_file != NULL && cfg->log_file[0] != '\0') {
    char* dir = sb__path_parent(cfg->log_file);
    if (sb__is_dir(cfg->log_file) == 1) {
      snprintf(err, err_size, "log_file \"%s\": is a directory", cfg->log_file);
      free(dir);
      return SB_EEXIST;
    }
    r = dir ? sb__check_dir("log_file", cfg->log_file, dir, SB__DIR_STICKY_OK, create,
                            err, err_size)
            : 0;
    free(dir);
    if (r != 0)
      return r;
  }
  if ((which & SB__DIRS_DATA) &&
      (r = sb__check_dir("data_dir", cfg->data_dir, cfg->data_dir, SB__DIR_PRIVATE,
                         create, err, err_size)) != 0)
    return r;
  if ((which & SB__DIRS_ARCHIVE) && cfg->upstream == NULL &&
      (r = sb__check_dir("archive_dir", cfg->archive_dir, cfg->archive_dir,
                         SB__DIR_PRIVATE, create, err, err_size)) != 0)
    return r;
  if (which & SB__DIRS_SOCKETS) {
    /* A socket's directory: whoever may write in it may put a server of their own in
     * the socket's place before the service binds (clients would talk to it). */
    const char* keys[2] = {"control_pipe", "admin_pipe"};
    const char* values[2] = {cfg->control_pipe, cfg->admin_pipe};
    int i;
    for (i = 0; i < 2; i++) {
      int kind;
      const char* path;
      char* dir;
      if (values[i] == NULL || sb__address_parse(values[i], &kind, &path) != 0 ||
          kind != SB__ADDR_UNIX || (dir = sb__path_parent(path)) == NULL)
        continue;
      r = sb__dir_secure(keys[i], values[i], dir, SB__DIR_STICKY_OK, err, err_size);
      free(dir);
      if (r != 0)
        return r;
    }
  }
  return 0;
}
