/* log.c - one line per event, with its UTC time, level and module. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char* const sb__level_names[] = {"error", "warn", "info", "debug"};
#define SB__NLEVELS (int)(sizeof(sb__level_names) / sizeof(sb__level_names[0]))

/* Everything below is guarded by sb__log_lock, which exists from the first call on,
 * open or not: the log may be written before it is opened (to stderr), and from the
 * Windows service control handler's thread. */
static uv_once_t sb__log_once = UV_ONCE_INIT;
static uv_mutex_t sb__log_lock;
static FILE* sb__log_file; /* NULL: stderr */
static int sb__log_level = SB_LOG_INFO;

static void sb__log_init(void) {
  if (uv_mutex_init(&sb__log_lock) != 0) {
    fputs("streambrokerd: cannot create the log's mutex\n", stderr);
    abort();
  }
}

int sb__log_level_parse(const char* name) {
  int i;
  for (i = 0; name != NULL && i < SB__NLEVELS; i++) {
    if (strcmp(name, sb__level_names[i]) == 0)
      return i;
  }
  return -1;
}

int sb__log_open(const char* path, int level) {
  FILE* f = NULL;
  uv_once(&sb__log_once, sb__log_init);
  if (level < SB_LOG_ERROR || level > SB_LOG_DEBUG)
    return SB_EINVAL;
  if (path != NULL && path[0] != '\0' && (f = fopen(path, "ab")) == NULL) {
    switch (errno) {
    case ENOENT:
      return SB_ENOENT;
    case EACCES:
    case EPERM:
      return SB_EACCES;
    case ENOSPC:
      return SB_ENOSPC;
    default:
      return SB_EIO;
    }
  }
  uv_mutex_lock(&sb__log_lock);
  if (sb__log_file != NULL)
    fclose(sb__log_file);
  sb__log_file = f;
  sb__log_level = level;
  uv_mutex_unlock(&sb__log_lock);
  return 0;
}

void sb__log_close(void) {
  uv_once(&sb__log_once, sb__log_init);
  uv_mutex_lock(&sb__log_lock);
  if (sb__log_file != NULL)
    fclose(sb__log_file);
  sb__log_file = NULL;
  uv_mutex_unlock(&sb__log_lock);
}

/*
 * "2026-11-25T02:00:00.123Z" (24 characters) from Unix time. gmtime_r is missing on
 * mingw and gmtime is not thread-safe, so the date comes from Howard Hinnant's
 * days-to-civil algorithm, exact for every proleptic Gregorian date.
 */
static void sb__log_time(char out[64]) {
  sb__time_t t = sb__time_now();
  int64_t days = t.sec / 86400, secs = t.sec % 86400, era, y;
  unsigned doe, yoe, doy, mp, d, m;
  if (secs < 0) {
    secs += 86400;
    days--;
  }
  days += 719468; /* from 1970-01-01 to 0000-03-01 */
  era = (days >= 0 ? days : days - 146096) / 146097;
  doe = (unsigned)(days - era * 146097);
  yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  y = (int64_t)yoe + era * 400;
  doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y += m <= 2;
  snprintf(out, 64, "%04lld-%02u-%02uT%02u:%02u:%02u.%03uZ", (long long)y, m, d,
           (unsigned)(secs / 3600), (unsigned)(secs / 60 % 60), (unsigned)(secs % 60),
           (unsigned)(t.nsec / 1000000) % 1000);
}

/*
 * The whole line is formatted first, then written with one fwrite and flushed under
 * the lock, so lines of two threads never interleave and a killed service leaves its
 * last words. Line breaks inside the message (from a stream name, say) become spaces:
 * one event is always one line.
 */
void sb__log(int level, const char* module, const char* fmt, ...) {
  char stack[1024], ts[64];
  char* line = stack;
  va_list ap;
  size_t head, len, i;
  int n;
  FILE* out;
  uv_once(&sb__log_once, sb__log_init);
  uv_mutex_lock(&sb__log_lock);
  if (level > sb__log_level) {
    uv_mutex_unlock(&sb__log_lock);
    return;
  }
  sb__log_time(ts);
  n = snprintf(stack, sizeof(stack), "%s %-5s %s: ", ts,
               sb__level_names[level < 0              ? 0
                               : level >= SB__NLEVELS ? SB__NLEVELS - 1
                                                      : level],
               module);
  head = n > 0 ? (size_t)n : 0;
  if (head >= sizeof(stack))
    head = sizeof(stack) - 1;
  va_start(ap, fmt);
  n = vsnprintf(stack + head, sizeof(stack) - head, fmt, ap);
  va_end(ap);
  len = head + (n > 0 ? (size_t)n : 0);
  if (len + 2 > sizeof(stack)) {
    line = sb__xmalloc(len + 2);
    memcpy(line, stack, head);
    va_start(ap, fmt);
    vsnprintf(line + head, len - head + 1, fmt, ap);
    va_end(ap);
  }
  for (i = head; i < len; i++) {
    if (line[i] == '\n' || line[i] == '\r')
      line[i] = ' ';
  }
  line[len++] = '\n';
  out = sb__log_file != NULL ? sb__log_file : stderr;
  fwrite(line, 1, len, out);
  fflush(out);
  uv_mutex_unlock(&sb__log_lock);
  if (line != stack)
    free(line);
}
