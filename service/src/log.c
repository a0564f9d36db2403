/*
 * log.c - one line per event, with its UTC time, level and module; a log file that
 * rotates by size; errors and warnings copied, rate-limited, to the system event log.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "oserror.h"

static const char* const sb__level_names[] = {"error", "warn", "info", "debug"};
#define SB__NLEVELS (int)(sizeof(sb__level_names) / sizeof(sb__level_names[0]))

/* Everything below is guarded by sb__log_lock, which exists from the first call on,
 * open or not: the log may be written before it is opened (to stderr), and from the
 * Windows service control handler's thread. */
static uv_once_t sb__log_once = UV_ONCE_INIT;
static uv_mutex_t sb__log_lock;
static FILE* sb__log_file; /* NULL: stderr */
static char* sb__log_path; /* of sb__log_file */
static int sb__log_level = SB_LOG_INFO;
static uint64_t sb__log_size;       /* bytes in sb__log_file */
static uint64_t sb__log_max_bytes;  /* 0: no rotation */
static uint64_t sb__log_max_files;
static uint64_t sb__log_retry_at;   /* after a failed rotation: the size to try again */
static int sb__log_eventlog;        /* copy errors and warnings to the event log */
static double sb__log_tokens;       /* the event log's token bucket */
static uint64_t sb__log_refilled;   /* uv_hrtime of the last refill */
static uint64_t sb__log_suppressed; /* events the bucket held back, not yet reported */

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

/* The log file's open: a link in its place is refused, never followed (ELOOP: unsafe);
 * a path through a file that is no directory says no more than an I/O error. */
static int sb__log_errno(int e) {
  if (e == ENOTDIR)
    return SB_EIO;
  return sb__err_keep(sb__crt_err(e), SB__ERR_BIT(SB_ENOENT) | SB__ERR_BIT(SB_EACCES) |
                                          SB__ERR_BIT(SB_ENOSPC) |
                                          SB__ERR_BIT(SB_EUNSAFE));
}

/* Opens path for appending, with *size its current length: never through a link, with
 * the mode of the service's files (0600, 0640 with reader_group), not the umask's. */
static FILE* sb__log_fopen(const char* path, uint64_t* size) {
  FILE* f = sb__file_append(path);
  long end;
  if (f == NULL)
    return NULL;
  /* Append mode may report 0 until the first write: ask the end itself. */
  end = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
  *size = end > 0 ? (uint64_t)end : 0;
  return f;
}

int sb__log_open(const char* path, int level) {
  FILE* f = NULL;
  uint64_t size = 0;
  uv_once(&sb__log_once, sb__log_init);
  if (level < SB_LOG_ERROR || level > SB_LOG_DEBUG)
    return SB_EINVAL;
  if (path != NULL && path[0] != '\0' && (f = sb__log_fopen(path, &size)) == NULL)
    return sb__log_errno(errno);
  uv_mutex_lock(&sb__log_lock);
  if (sb__log_file != NULL)
    fclose(sb__log_file);
  free(sb__log_path);
  sb__log_file = f;
  sb__log_path = f != NULL ? sb__xstrdup(path) : NULL;
  sb__log_size = size;
  sb__log_retry_at = 0;
  sb__log_level = level;
  uv_mutex_unlock(&sb__log_lock);
  return 0;
}

/* The file is opened before the lock is taken, so that logging threads never wait on
 * a slow open; the path is checked again, in case it changed meanwhile. */
int sb__log_reopen(int level) {
  char* path = NULL;
  FILE* f;
  uint64_t size = 0;
  int e;
  uv_once(&sb__log_once, sb__log_init);
  if (level < SB_LOG_ERROR || level > SB_LOG_DEBUG)
    return SB_EINVAL;
  uv_mutex_lock(&sb__log_lock);
  sb__log_level = level;
  if (sb__log_path != NULL)
    path = sb__xstrdup(sb__log_path);
  uv_mutex_unlock(&sb__log_lock);
  if (path == NULL)
    return 0;
  if ((f = sb__log_fopen(path, &size)) == NULL) {
    e = errno;
    free(path);
    return sb__log_errno(e);
  }
  uv_mutex_lock(&sb__log_lock);
  if (sb__log_path != NULL && strcmp(sb__log_path, path) == 0) {
    if (sb__log_file != NULL)
      fclose(sb__log_file);
    sb__log_file = f;
    sb__log_size = size;
    sb__log_retry_at = 0;
    f = NULL;
  }
  uv_mutex_unlock(&sb__log_lock);
  if (f != NULL)
    fclose(f);
  free(path);
  return 0;
}

void sb__log_set_rotation(uint64_t max_bytes, uint64_t max_files) {
  uv_once(&sb__log_once, sb__log_init);
  uv_mutex_lock(&sb__log_lock);
  sb__log_max_bytes = max_bytes;
  sb__log_max_files = max_files < 2 ? 2 : max_files;
  uv_mutex_unlock(&sb__log_lock);
}

void sb__log_to_eventlog(int on) {
  uv_once(&sb__log_once, sb__log_init);
  uv_mutex_lock(&sb__log_lock);
  sb__log_eventlog = on;
  sb__log_tokens = SB__EVENTLOG_BURST;
  sb__log_refilled = uv_hrtime();
  sb__log_suppressed = 0;
  uv_mutex_unlock(&sb__log_lock);
}

/* Reports what the bucket held back (under the lock). */
static void sb__log_report_suppressed(void) {
  char text[256];
  if (sb__log_suppressed == 0)
    return;
  snprintf(text, sizeof(text),
           "%llu messages suppressed: errors and warnings came faster than the event "
           "log takes them; the log file has them all",
           (unsigned long long)sb__log_suppressed);
  sb__eventlog_report(SB__EVENT_SUPPRESSED, text);
  sb__log_suppressed = 0;
}

void sb__log_close(void) {
  uv_once(&sb__log_once, sb__log_init);
  uv_mutex_lock(&sb__log_lock);
  if (sb__log_eventlog)
    sb__log_report_suppressed();
  sb__log_eventlog = 0;
  if (sb__log_file != NULL)
    fclose(sb__log_file);
  sb__log_file = NULL;
  free(sb__log_path);
  sb__log_path = NULL;
  uv_mutex_unlock(&sb__log_lock);
}

/*
 * A token bucket: a burst of SB__EVENTLOG_BURST events, then one per
 * SB__EVENTLOG_REFILL_MS, so a flood of bad clients fills the log file (which
 * rotates) but not the Event Log, which an administrator reads by hand. Under the lock.
 */
static void sb__log_event(int level, const char* line) {
  uint64_t now = uv_hrtime();
  sb__log_tokens += (double)(now - sb__log_refilled) / 1e6 / SB__EVENTLOG_REFILL_MS;
  sb__log_refilled = now;
  if (sb__log_tokens > SB__EVENTLOG_BURST)
    sb__log_tokens = SB__EVENTLOG_BURST;
  if (sb__log_tokens < 1) {
    sb__log_suppressed++;
    return;
  }
  sb__log_tokens -= 1;
  sb__log_report_suppressed();
  sb__eventlog_report(level == SB_LOG_ERROR ? SB__EVENT_ERROR : SB__EVENT_WARNING, line);
}

/* PATH.n, a new string. */
static char* sb__log_numbered(const char* path, uint64_t n) {
  size_t len = strlen(path) + 24;
  char* s = sb__xmalloc(len);
  snprintf(s, len, "%s.%llu", path, (unsigned long long)n);
  return s;
}

/*
 * Each PATH.n becomes PATH.(n+1) up to the first gap (a missing PATH.n), or, with no
 * gap, PATH.(max-1) goes first; then PATH becomes PATH.1 and a new PATH opens. The
 * file is closed for the renames: Windows renames no open file. A rename can still
 * fail there (a reader holds the file): the current file then stays (reopened) and
 * grows, and the gap that failure may leave is what the next rotation fills, so no
 * file is lost or skipped. Under the lock; returns NULL, or what failed in why.
 */
static const char* sb__log_rotate(char* why, size_t why_size) {
  uint64_t n, gap;
  uv_fs_t req;
  char *from, *to;
  const char* failed = NULL;
  fclose(sb__log_file);
  sb__log_file = NULL;
  for (gap = 1; gap < sb__log_max_files - 1; gap++) {
    int r;
    to = sb__log_numbered(sb__log_path, gap);
    r = uv_fs_lstat(NULL, &req, to, NULL);
    uv_fs_req_cleanup(&req);
    free(to);
    if (r != 0)
      break;
  }
  if (gap == sb__log_max_files - 1) {
    to = sb__log_numbered(sb__log_path, gap);
    uv_fs_unlink(NULL, &req, to, NULL);
    uv_fs_req_cleanup(&req);
    free(to);
  }
  to = sb__log_numbered(sb__log_path, gap);
  for (n = gap; n >= 1 && failed == NULL; n--) {
    int r;
    from = n > 1 ? sb__log_numbered(sb__log_path, n - 1) : sb__xstrdup(sb__log_path);
    r = uv_fs_rename(NULL, &req, from, to, NULL);
    uv_fs_req_cleanup(&req);
    if (r != 0 && r != UV_ENOENT) {
      snprintf(why, why_size, "rename %s: %s", from, uv_strerror(r));
      failed = why;
    }
    free(to);
    to = from;
  }
  free(to);
  sb__log_file = sb__log_fopen(sb__log_path, &sb__log_size);
  if (sb__log_file == NULL) {
    snprintf(why, why_size, "fopen %s: %s", sb__log_path, strerror(errno));
    failed = why;
  }
  return failed;
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

/* The longest message a line carries; past it the line is cut and says so. */
#define SB__LOG_LINE_MAX 8192

/* Whether byte c would be a control byte in a terminal or an editor: C0, DEL. */
static int sb__log_control(unsigned char c) {
  return c < 0x20 || c == 0x7f;
}

const char* sb__log_text(char* out, size_t size, const char* text) {
  size_t full, i, o = 0;
  char tail[64];
  if (text == NULL)
    text = "";
  full = strlen(text);
  if (size == 0)
    return "";
  for (i = 0; i < full && i < SB__LOG_TEXT_MAX; i++) {
    unsigned char c = (unsigned char)text[i];
    if (o + 5 >= size)
      break;
    if (sb__log_control(c) || c == '\\') {
      snprintf(out + o, size - o, "\\x%02x", c);
      o += 4;
    } else {
      out[o++] = (char)c;
    }
  }
  out[o] = '\0';
  if (i < full) {
    snprintf(tail, sizeof(tail), "... (%llu bytes in all)", (unsigned long long)full);
    if (o + strlen(tail) < size)
      memcpy(out + o, tail, strlen(tail) + 1);
  }
  return out;
}

/*
 * The whole line is formatted first, then written with one fwrite and flushed under
 * the lock, so lines of two threads never interleave and a killed service leaves its
 * last words. Text that came from a client may hold anything: every control byte in
 * the message (a line break, ESC, BEL) is written as \xNN, so one event is always one
 * line and nothing reaches a terminal raw; and a message past SB__LOG_LINE_MAX bytes
 * is cut, saying its length, so that no one line rotates the log away.
 */
void sb__log(int level, const char* module, const char* fmt, ...) {
  char stack[1024], ts[64];
  char* line = stack;
  char* esc;
  va_list ap;
  size_t head, len, i, o, ncontrol = 0;
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
  for (i = head; i < len && i < head + SB__LOG_LINE_MAX; i++)
    ncontrol += sb__log_control((unsigned char)line[i]);
  if (ncontrol > 0 || len - head > SB__LOG_LINE_MAX) {
    /* Escaped and cut into a new buffer: 4 bytes per control byte, and the tail. */
    size_t msg = len - head;
    esc = sb__xmalloc(head + SB__LOG_LINE_MAX + 3 * ncontrol + 64);
    memcpy(esc, line, head);
    for (i = head, o = head; i < len && i < head + SB__LOG_LINE_MAX; i++) {
      unsigned char c = (unsigned char)line[i];
      if (sb__log_control(c)) {
        snprintf(esc + o, 5, "\\x%02x", c);
        o += 4;
      } else {
        esc[o++] = (char)c;
      }
    }
    if (msg > SB__LOG_LINE_MAX)
      o += (size_t)snprintf(esc + o, 64, "... (message cut: %llu bytes in all)",
                            (unsigned long long)msg);
    if (line != stack)
      free(line);
    line = esc;
    len = o;
  }
  line[len++] = '\n';
  /* A file that could not be reopened after a rotation: tried again for each line,
   * the line going to stderr meanwhile. */
  if (sb__log_file == NULL && sb__log_path != NULL)
    sb__log_file = sb__log_fopen(sb__log_path, &sb__log_size);
  /* Rotate before a line that would pass the size, so it starts the new file whole. */
  if (sb__log_file != NULL && sb__log_max_bytes > 0 && sb__log_size > 0 &&
      sb__log_size + len > sb__log_max_bytes && sb__log_size >= sb__log_retry_at) {
    char why[1024], note[1200];
    if (sb__log_rotate(why, sizeof(why)) != NULL) {
      /* Said in the log itself, once per retry interval. */
      sb__log_retry_at = sb__log_size + sb__log_max_bytes / 8;
      snprintf(note, sizeof(note), "%s error log: cannot rotate: %s\n", ts, why);
      fwrite(note, 1, strlen(note), sb__log_file != NULL ? sb__log_file : stderr);
    } else {
      sb__log_retry_at = 0;
    }
  }
  out = sb__log_file != NULL ? sb__log_file : stderr;
  if (fwrite(line, 1, len, out) == len && out == sb__log_file)
    sb__log_size += len;
  fflush(out);
  if (sb__log_eventlog && level <= SB_LOG_WARN) {
    line[len - 1] = '\0';
    /* The event shows its own time and type: the module and message suffice. */
    sb__log_event(level, line + strlen(ts) + 7);
  }
  uv_mutex_unlock(&sb__log_lock);
  if (line != stack)
    free(line);
}
