/*
 * runner.c - the main() of a test program built from a TEST_LIST.
 *
 * "prog NAME" runs one test (ctest does this, one entry per test); "prog" alone runs
 * them all in this process and ends with the "N passed, N failed" line.
 */
#include "streambroker.h"
#include "task.h"

#define TEST_ENTRY(name) {#name, run_test_##name},
struct sb_test_entry {
  const char* name;
  void (*fn)(void);
};

#include TEST_LIST_HEADER

static const struct sb_test_entry tests[] = {TEST_LIST(TEST_ENTRY){NULL, NULL}};

int main(int argc, char** argv) {
  const struct sb_test_entry* t;
  int passed = 0, failed = 0;
  setvbuf(stdout, NULL, _IONBF, 0);
  if (argc > 1) {
    for (t = tests; t->name; t++) {
      if (strcmp(t->name, argv[1]) == 0) {
        t->fn();
        /* Passed: what it made on disk goes (a failure exited with it kept). */
        if (sb_test_cleanup() != 0) {
          printf("not ok - %s: it left files it made\n", t->name);
          return 1;
        }
        printf("ok - %s\n", t->name);
        return 0;
      }
    }
    fprintf(stderr, "no test named %s\n", argv[1]);
    return 2;
  }
  /* All in one process: a failing assertion exits, so reaching the end means all
   * passed. */
  for (t = tests; t->name; t++) {
    t->fn();
    if (sb_test_cleanup() != 0) {
      printf("not ok - %s: it left files it made\n", t->name);
      failed++;
      continue;
    }
    printf("ok - %s\n", t->name);
    passed++;
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed != 0;
}
