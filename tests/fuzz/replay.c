/*
 * replay.c - runs a fuzz target over every file of a corpus directory, as a plain test
 * on every platform and compiler (the libFuzzer build is clang-only).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

static int replay_file(const char* path) {
  FILE* f = fopen(path, "rb");
  uint8_t* buf;
  long len;
  if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 ||
      fseek(f, 0, SEEK_SET) != 0) {
    fprintf(stderr, "replay: cannot read %s\n", path);
    if (f)
      fclose(f);
    return 1;
  }
  buf = malloc((size_t)len + 1);
  if (buf == NULL || fread(buf, 1, (size_t)len, f) != (size_t)len) {
    fprintf(stderr, "replay: cannot read %s\n", path);
    fclose(f);
    free(buf);
    return 1;
  }
  fclose(f);
  LLVMFuzzerTestOneInput(buf, (size_t)len);
  free(buf);
  return 0;
}

int main(int argc, char** argv) {
  int i, files = 0, failed = 0;
  for (i = 1; i < argc; i++) {
    uv_fs_t req;
    uv_dirent_t ent;
    int n = uv_fs_scandir(NULL, &req, argv[i], 0, NULL);
    if (n < 0) {
      fprintf(stderr, "replay: %s: %s\n", argv[i], uv_strerror(n));
      return 1;
    }
    while (uv_fs_scandir_next(&req, &ent) != UV_EOF) {
      char path[4096];
      if (ent.type == UV_DIRENT_DIR)
        continue;
      snprintf(path, sizeof(path), "%s/%s", argv[i], ent.name);
      failed += replay_file(path);
      files++;
    }
    uv_fs_req_cleanup(&req);
  }
  if (files == 0) {
    fprintf(stderr, "replay: no corpus files\n");
    return 1;
  }
  printf("replayed %d files\n", files);
  return failed ? 1 : 0;
}
