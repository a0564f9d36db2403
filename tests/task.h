/*
 * task.h - assertions and test registration shared by every test program.
 *
 * Assertions print both operands and the location, and stay on in every build type
 * (they never use assert()). A failing assertion ends the test process with exit code
 * 1; each test runs in a process of its own under ctest.
 */
#ifndef SB_TASK_H
#define SB_TASK_H

#include <inttypes.h>
#include <stdio.h>

/* The printf dialect the format checks assume: mingw's C99 one on Windows. */
#if defined(__MINGW32__)
#define SB_PRINTF_FORMAT gnu_printf
#else
#define SB_PRINTF_FORMAT printf
#endif
#include <stdlib.h>
#include <string.h>

#define TEST_IMPL(name) void run_test_##name(void)
#define TEST_DECLARE(name) void run_test_##name(void);

void sb_test_fail(const char* file, int line, const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(SB_PRINTF_FORMAT, 3, 4), noreturn))
#endif
    ;
void sb_test_hexdump(const char* label, const void* data, size_t len);

#define ASSERT(expr)                                                                  \
  do {                                                                                \
    if (!(expr))                                                                      \
      sb_test_fail(__FILE__, __LINE__, "assertion failed: %s", #expr);                \
  } while (0)

#define SB__ASSERT_CMP(a, op, b, type, fmt)                                           \
  do {                                                                                \
    type sb__a = (type)(a);                                                           \
    type sb__b = (type)(b);                                                           \
    if (!(sb__a op sb__b))                                                            \
      sb_test_fail(__FILE__, __LINE__, "%s %s %s: " fmt " vs " fmt, #a, #op, #b,      \
                   sb__a, sb__b);                                                     \
  } while (0)

#define ASSERT_EQ(a, b) SB__ASSERT_CMP(a, ==, b, int64_t, "%" PRId64)
#define ASSERT_NE(a, b) SB__ASSERT_CMP(a, !=, b, int64_t, "%" PRId64)
#define ASSERT_LT(a, b) SB__ASSERT_CMP(a, <, b, int64_t, "%" PRId64)
#define ASSERT_LE(a, b) SB__ASSERT_CMP(a, <=, b, int64_t, "%" PRId64)
#define ASSERT_GT(a, b) SB__ASSERT_CMP(a, >, b, int64_t, "%" PRId64)
#define ASSERT_GE(a, b) SB__ASSERT_CMP(a, >=, b, int64_t, "%" PRId64)
#define ASSERT_UEQ(a, b) SB__ASSERT_CMP(a, ==, b, uint64_t, "%" PRIu64)

/* An SB_E* result: prints the error's name when it is not the expected one. */
#define ASSERT_ERR(expr, want)                                                        \
  do {                                                                                \
    int sb__r = (int)(expr);                                                          \
    int sb__w = (int)(want);                                                          \
    if (sb__r != sb__w)                                                               \
      sb_test_fail(__FILE__, __LINE__, "%s: got %d (%s), want %d (%s)", #expr, sb__r, \
                   sb_test_err_name(sb__r), sb__w, sb_test_err_name(sb__w));          \
  } while (0)
#define ASSERT_OK(expr) ASSERT_ERR(expr, 0)

#define ASSERT_NULL(p) ASSERT((p) == NULL)
#define ASSERT_NOT_NULL(p) ASSERT((p) != NULL)

#define ASSERT_STR_EQ(a, b)                                                           \
  do {                                                                                \
    const char* sb__a = (a);                                                          \
    const char* sb__b = (b);                                                          \
    if (sb__a == NULL || sb__b == NULL || strcmp(sb__a, sb__b) != 0)                  \
      sb_test_fail(__FILE__, __LINE__, "%s == %s: \"%s\" vs \"%s\"", #a, #b,          \
                   sb__a ? sb__a : "(null)", sb__b ? sb__b : "(null)");               \
  } while (0)

#define ASSERT_MEM_EQ(a, alen, b, blen)                                               \
  do {                                                                                \
    size_t sb__al = (size_t)(alen), sb__bl = (size_t)(blen);                          \
    if (sb__al != sb__bl || memcmp((a), (b), sb__al) != 0) {                          \
      sb_test_hexdump(#a, (a), sb__al);                                               \
      sb_test_hexdump(#b, (b), sb__bl);                                               \
      sb_test_fail(__FILE__, __LINE__, "%s != %s (%zu vs %zu bytes)", #a, #b, sb__al, \
                   sb__bl);                                                           \
    }                                                                                 \
  } while (0)

/* Ends the test as skipped (ctest reports it so), for what a platform cannot do. */
#define SB_TEST_SKIP_CODE 77
#define TEST_SKIP(why)                                                                \
  do {                                                                                \
    printf("skip - %s\n", why);                                                       \
    exit(SB_TEST_SKIP_CODE);                                                          \
  } while (0)

/*
 * Temporary files and directories (cleanup.c, in the test programs that have a
 * runner): sb_test_temp registers a path the test made; when the test passes, the
 * runner calls sb_test_cleanup, which runs the sb_test_before_cleanup hooks (stopping
 * what may still use the paths), then removes every path, directories with all they
 * hold. Returns 0, or -1 after printing what could not be removed. When a test fails,
 * sb_test_fail lists the paths ("kept for inspection: PATH") and removes nothing.
 */
void sb_test_temp(const char* path);
void sb_test_before_cleanup(void (*fn)(void));
int sb_test_cleanup(void);
/* Called by sb_test_fail after the message, when set (cleanup.c sets it). */
extern void (*sb_test_fail_hook)(void);

/* Provided by the runner so task.h does not depend on any library. */
const char* sb_test_err_name(int err);

/* Decodes a hex string (spaces and '|' ignored) into a new buffer; *len its length. */
unsigned char* sb_test_unhex(const char* hex, size_t* len);

#endif /* SB_TASK_H */
