/*
 * initconfig.c - streambrokerd init-config: the platform's config file written once,
 * from the shipped default with what the administrator set at install time (the MSI's
 * UPSTREAM, ARCHIVEDIR and DATADIR). A config that exists is never touched.
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "internal.h"

static char* read_all(const char* path, size_t* len) {
  FILE* f = sb__file_read(path);
  sb__buf_t b = {0};
  char tmp[8192];
  size_t n;
  if (f == NULL)
    return NULL;
  while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
    sb__buf_append(&b, tmp, n);
  fclose(f);
  sb__buf_putc(&b, '\0');
  *len = b.len - 1;
  return b.data;
}

/* Sets key to value in the tree (value "" or NULL: the shipped one stays). */
static void set_key(cJSON* root, const char* key, const char* value) {
  if (value == NULL || value[0] == '\0')
    return;
  /* In its place when the shipped file has it, so the file reads as shipped. */
  if (cJSON_GetObjectItemCaseSensitive(root, key) != NULL)
    cJSON_ReplaceItemInObjectCaseSensitive(root, key, cJSON_CreateString(value));
  else
    cJSON_AddStringToObject(root, key, value);
}

/* The tree as text in the shipped file's style (two-space indent, ": "), so that the
 * file reads, and edits, like the one shipped. cJSON indents with tabs and writes none
 * inside strings (it escapes them), so every tab is layout. */
static char* json_text(cJSON* root) {
  char* printed = cJSON_Print(root);
  sb__buf_t b = {0};
  const char* p;
  if (printed == NULL)
    abort();
  for (p = printed; *p != '\0'; p++) {
    if (*p != '\t')
      sb__buf_putc(&b, *p);
    else if (p > printed && p[-1] == ':')
      sb__buf_putc(&b, ' ');
    else
      sb__buf_append(&b, "  ", 2);
  }
  sb__buf_append(&b, "\n", 2); /* with its NUL */
  cJSON_free(printed);
  return b.data;
}

int sb__config_init(const char* shipped, const char* dest, const char* upstream,
                    const char* archive_dir, const char* data_dir, char* msg,
                    size_t size) {
  char *text = NULL, *out = NULL, *dir = NULL;
  cJSON* root = NULL;
  sb__config_t cfg;
  size_t len = 0;
  uv_fs_t req;
  uv_file fd = -1;
  int r;
  FILE* exists = sb__file_read(dest);
  if (exists != NULL) {
    fclose(exists);
    snprintf(msg, size, "%s exists: kept as it is (install-time settings ignored)",
             dest);
    return 1;
  }
  if ((text = read_all(shipped, &len)) == NULL) {
    snprintf(msg, size, "cannot read the shipped config %s", shipped);
    r = SB_EIO;
    goto done;
  }
  if ((root = cJSON_ParseWithLength(text, len)) == NULL || !cJSON_IsObject(root)) {
    snprintf(msg, size, "%s: not a JSON object", shipped);
    r = SB_ECONFIG;
    goto done;
  }
  set_key(root, "upstream", upstream);
  set_key(root, "archive_dir", archive_dir);
  set_key(root, "data_dir", data_dir);
  if ((upstream == NULL || upstream[0] == '\0') &&
      (archive_dir == NULL || archive_dir[0] == '\0') &&
      (data_dir == NULL || data_dir[0] == '\0')) {
    out = text; /* nothing set: the shipped file as it is */
    text = NULL;
  } else {
    out = json_text(root);
  }
  /* What the service will read: checked now, so that a wrong value fails the install
   * with its reason instead of the service's first start. */
  sb__config_defaults(&cfg);
  r = sb__config_parse(&cfg, out, strlen(out), dest, msg, size);
  sb__config_free(&cfg);
  if (r != 0)
    goto done;
  if ((dir = sb__path_parent(dest)) != NULL && (r = sb__mkdir_p(dir)) != 0) {
    snprintf(msg, size, "%s: %s", dir, sb_strerror(r));
    goto done;
  }
  /* EXCL: a config that appeared meanwhile is never overwritten. */
  fd = uv_fs_open(NULL, &req, dest, UV_FS_O_WRONLY | UV_FS_O_CREAT | UV_FS_O_EXCL, 0640,
                  NULL);
  uv_fs_req_cleanup(&req);
  if (fd < 0) {
    r = sb__uv_err(fd);
    snprintf(msg, size, "%s: %s", dest, sb_strerror(r));
    goto done;
  }
  {
    uv_buf_t buf = uv_buf_init(out, (unsigned)strlen(out));
    int n = uv_fs_write(NULL, &req, fd, &buf, 1, -1, NULL);
    uv_fs_req_cleanup(&req);
    uv_fs_close(NULL, &req, fd, NULL);
    uv_fs_req_cleanup(&req);
    if (n != (int)buf.len) {
      r = SB_EIO;
      snprintf(msg, size, "%s: write failed", dest);
      uv_fs_unlink(NULL, &req, dest, NULL);
      uv_fs_req_cleanup(&req);
      goto done;
    }
  }
  snprintf(msg, size, "wrote %s (upstream %s, archive_dir %s, data_dir %s)", dest,
           upstream && upstream[0] ? upstream : "as shipped",
           archive_dir && archive_dir[0] ? archive_dir : "as shipped",
           data_dir && data_dir[0] ? data_dir : "as shipped");
  r = 0;
done:
  free(text);
  free(dir);
  free(out);
  cJSON_Delete(root);
  return r;
}
