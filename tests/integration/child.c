/*
 * child.c - a program for sbrun to run in tests:
 *   sb_child write OUT_HEX ERR_HEX CODE   writes the bytes to stdout and stderr (binary
 *                                         mode), exits with CODE
 *   sb_child env                          prints LOGDOG_STREAM_SERVER_PATH to stdout
 *   sb_child sleep MS                     waits MS milliseconds, writes nothing
 *   sb_child args ARG                     prints ARG to stdout, in UTF-8
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _WIN32
#include <windows.h>
#else
#include <time.h>
#endif

#include "task.h"
#include "tools.h"

int main(int argc, char** argv) {
  sb__tool_binary_stdio();
  argv = sb__tool_utf8_argv(&argc, argv);
  if (argc == 3 && strcmp(argv[1], "args") == 0) {
    fputs(argv[2], stdout); /* UTF-8, as it arrived */
    return 0;
  }
  if (argc == 5 && strcmp(argv[1], "write") == 0) {
    size_t n;
    unsigned char* out = sb_test_unhex(argv[2], &n);
    fwrite(out, 1, n, stdout);
    fflush(stdout);
    free(out);
    out = sb_test_unhex(argv[3], &n);
    fwrite(out, 1, n, stderr);
    fflush(stderr);
    free(out);
    return atoi(argv[4]);
  }
  if (argc == 2 && strcmp(argv[1], "env") == 0) {
    const char* v = getenv("LOGDOG_STREAM_SERVER_PATH");
    fputs(v ? v : "(unset)", stdout);
    return 0;
  }
  if (argc == 3 && strcmp(argv[1], "sleep") == 0) {
#ifdef _WIN32
    Sleep((DWORD)atoi(argv[2]));
#else
    struct timespec ts;
    ts.tv_sec = atoi(argv[2]) / 1000;
    ts.tv_nsec = (long)(atoi(argv[2]) % 1000) * 1000000L;
    nanosleep(&ts, NULL);
#endif
    return 0;
  }
  fprintf(stderr, "usage: sb_child write OUT_HEX ERR_HEX CODE | env | sleep MS | args ARG\n");
  return 2;
}
