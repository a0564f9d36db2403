/* log.c - one line per event, with its time, level and module. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static FILE* sb__log_file;
static int sb__log_level = SB_LOG_INFO;
static uv_mutex_t sb__log_lock;
static int sb__log_ready;

static const char* const sb__level_names[] = {"error", "warn", "info", "debug"};

int sb__log_level_parse(const char* name) {
  int i;
  for (i = 0; i < 4; i++) {
    if (strcmp(name, sb__level_names[i]) == 0)
      return i;
  }
  return -1;
}

int sb__log_open(const char* path, int level) {
  if (!sb__log_ready) {
    if (uv_mutex_init(&sb__log_lock) != 0)
      return SB_ENOMEM;
    sb__log_ready = 1;
  }
  sb__log_level = level;
  if (path != NULL && path[0] != '\0') {
    FILE* f = fopen(path, "ab");
    if (f == NULL)
      return SB_EACCES;
    sb__log_file = f;
  }
  return 0;
}

void sb__log_close(void) {
  if (sb__log_file != NULL)
    fclose(sb__log_file);
  sb__log_file = NULL;
}

/*
 * The line is formatted whole, then written with one call under the lock (the
 * Windows service control handler logs from its own thread), so lines never
 * interleave; it is flushed at once so a killed service leaves its last words.
 */
void sb__log(int level, const char* module, const char* fmt, ...) {
  char line[2048], ts[SB__TIME_BUF];
  sb__time_t now;
  va_list ap;
  int n, t;
  FILE* out;
  if (level > sb__log_level)
    return;
  now = sb__time_now();
  now.nsec = now.nsec / 1000000 * 1000000 + 1; /* milliseconds, never trimmed away */
  t = sb__time_format(now, ts);
  if (t > 4)
    memmove(ts + t - 7, ts + t - 1, 2); /* "...SS.mmm000001Z" -> "...SS.mmmZ" */
  n = snprintf(line, sizeof(line), "%s %-5s %s: ", t > 0 ? ts : "?",
               sb__level_names[level < 0 ? 0 : level > 3 ? 3 : level], module);
  va_start(ap, fmt);
  if (n > 0 && (size_t)n < sizeof(line))
    n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  if ((size_t)n >= sizeof(line) - 1)
    n = (int)sizeof(line) - 2;
  line[n++] = '\n';
  line[n] = '\0';
  if (sb__log_ready)
    uv_mutex_lock(&sb__log_lock);
  out = sb__log_file ? sb__log_file : stderr;
  fwrite(line, 1, (size_t)n, out);
  fflush(out);
  if (sb__log_ready)
    uv_mutex_unlock(&sb__log_lock);
}
