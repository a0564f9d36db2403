/*
 * cleanup.c - what a test made on disk goes when it passes, and stays when it fails.
 *
 * A full run makes hundreds of directories (spools, archives, sockets, service logs);
 * left behind, they filled /tmp by the gigabyte. So every temporary path is registered
 * here the moment it is made (sb_it_tempdir and sb_it_address do it for every test),
 * and the runner removes them all once the test returned: each test gets it without a
 * line of its own. A failing test exits through sb_test_fail, which lists them instead,
 * so the spool or log that shows why is still there to read.
 */
#include <sys/stat.h>

#include <uv.h>

#include "task.h"

#define SB_TEST_MAX_TEMPS 256
#define SB_TEST_MAX_HOOKS 8

static char* temps[SB_TEST_MAX_TEMPS];
static int ntemps;
static void (*hooks[SB_TEST_MAX_HOOKS])(void);
static int nhooks;

/* Lists what stays, for sb_test_fail (which prints the reason first). */
static void print_kept(void) {
  int i;
  for (i = 0; i < ntemps; i++)
    fprintf(stderr, "kept for inspection: %s\n", temps[i]);
}

void sb_test_temp(const char* path) {
  size_t n = strlen(path) + 1;
  if (ntemps == SB_TEST_MAX_TEMPS)
    sb_test_fail(__FILE__, __LINE__, "more than %d temporary paths", SB_TEST_MAX_TEMPS);
  temps[ntemps] = malloc(n);
  if (temps[ntemps] == NULL)
    sb_test_fail(__FILE__, __LINE__, "out of memory");
  memcpy(temps[ntemps++], path, n);
  sb_test_fail_hook = print_kept;
}

void sb_test_before_cleanup(void (*fn)(void)) {
  int i;
  for (i = 0; i < nhooks; i++) {
    if (hooks[i] == fn)
      return;
  }
  if (nhooks < SB_TEST_MAX_HOOKS)
    hooks[nhooks++] = fn;
}

/* Removes path, and everything in it when it is a directory, without following
 * symbolic links. 0, or the libuv error of the first thing that would not go. */
static int remove_tree(const char* path) {
  uv_fs_t req;
  uv_dirent_t ent;
  int r, first = 0;
  r = uv_fs_lstat(NULL, &req, path, NULL);
  if (r == UV_ENOENT) {
    uv_fs_req_cleanup(&req);
    return 0;
  }
  if (r == 0 && (req.statbuf.st_mode & S_IFMT) == S_IFDIR) {
    uv_fs_req_cleanup(&req);
    r = uv_fs_scandir(NULL, &req, path, 0, NULL);
    if (r < 0) {
      uv_fs_req_cleanup(&req);
      return r;
    }
    while (uv_fs_scandir_next(&req, &ent) != UV_EOF) {
      size_t n = strlen(path) + strlen(ent.name) + 2;
      char* child = malloc(n);
      if (child == NULL)
        sb_test_fail(__FILE__, __LINE__, "out of memory");
      snprintf(child, n, "%s/%s", path, ent.name);
      r = remove_tree(child);
      if (r != 0 && first == 0)
        first = r;
      free(child);
    }
    uv_fs_req_cleanup(&req);
    r = uv_fs_rmdir(NULL, &req, path, NULL);
  } else {
    uv_fs_req_cleanup(&req);
    r = uv_fs_unlink(NULL, &req, path, NULL);
  }
  uv_fs_req_cleanup(&req);
  if (r == UV_ENOENT)
    r = 0;
  return first != 0 ? first : r;
}

int sb_test_cleanup(void) {
  int i, tries, failed = 0;
  for (i = 0; i < nhooks; i++)
    hooks[i]();
  nhooks = 0;
  for (i = 0; i < ntemps; i++) {
    int r = remove_tree(temps[i]);
    /* Windows refuses to delete a file for a moment after the process that had it
     * open exited (a service just stopped, say): a few more tries, a second at most. */
    for (tries = 0; r != 0 && tries < 20; tries++) {
      uv_sleep(50);
      r = remove_tree(temps[i]);
    }
    if (r != 0) {
      fprintf(stderr, "cannot remove %s: %s\n", temps[i], uv_strerror(r));
      failed = 1;
    }
    free(temps[i]);
  }
  ntemps = 0;
  sb_test_fail_hook = NULL;
  return failed ? -1 : 0;
}
