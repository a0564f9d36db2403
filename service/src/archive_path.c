/*
 * archive_path.c - the archive's paths: a stream name mapped to a safe relative path
 * (sb__archive_path: each segment kept when safe, else escaped and shortened), that
 * path joined below the archive directory, and a segment's file names (PATH.log,
 * PATH+N.json, ...). Pure string work: no file is touched here.
 */
#include <stdlib.h>
#include <string.h>

#include "archive_int.h"

/* ---- names to paths ---- */

static const char* const ar_devices[] = {
    "CON",  "PRN",  "AUX",  "NUL",  "COM0", "COM1", "COM2",   "COM3",   "COM4",
    "COM5", "COM6", "COM7", "COM8", "COM9", "LPT0", "LPT1",   "LPT2",   "LPT3",
    "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9", "CONIN$", "CONOUT$"};

/* The extensions archive files end with: a directory must not end with one, or it
 * could be the file of a shorter name (stream "a" has a.log; stream "a.log/b" needs
 * the directory a.log). */
static const char* const ar_file_exts[] = {".log", ".json", ".tmp"};

static int ar_lower(int c) {
  return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

static int ar_eq_nocase(const char* a, size_t n, const char* b) {
  size_t i;
  if (strlen(b) != n)
    return 0;
  for (i = 0; i < n; i++)
    if (ar_lower((unsigned char)a[i]) != ar_lower((unsigned char)b[i]))
      return 0;
  return 1;
}

static int ar_safe_char(int c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         c == '_' || c == '.' || c == '-';
}

/* Windows opens a device for these base names whatever the extension ("nul.txt"). */
static int ar_is_device(const char* seg, size_t n) {
  size_t base = 0, i;
  while (base < n && seg[base] != '.')
    base++;
  for (i = 0; i < sizeof(ar_devices) / sizeof(ar_devices[0]); i++)
    if (ar_eq_nocase(seg, base, ar_devices[i]))
      return 1;
  return 0;
}

/* The position of the '.' of a file extension the segment ends with, or n. */
static size_t ar_file_ext_dot(const char* seg, size_t n) {
  size_t i;
  for (i = 0; i < sizeof(ar_file_exts) / sizeof(ar_file_exts[0]); i++) {
    size_t el = strlen(ar_file_exts[i]);
    if (n >= el && ar_eq_nocase(seg + n - el, el, ar_file_exts[i]))
      return n - el;
  }
  return n;
}

/*
 * Maps one segment into out (room for 3 * n + 1 bytes); returns the bytes written.
 * Every change is either a faithful "%XX" of the byte it replaces or the device
 * prefix '_', which is why the mapping can be undone and so is injective.
 */
static size_t ar_map_segment(const char* seg, size_t n, int last, char* out) {
  static const char hex[] = "0123456789ABCDEF";
  size_t i, o = 0, ext_dot = last ? n : ar_file_ext_dot(seg, n);
  int all_dots = 1;
  if (n == 0) {
    out[o++] = '%'; /* a lone '%' is no escape, so no other segment maps to it */
    return o;
  }
  for (i = 0; i < n; i++)
    if (seg[i] != '.')
      all_dots = 0;
  if (ar_is_device(seg, n))
    out[o++] = '_';
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)seg[i];
    int esc = !ar_safe_char(c) || (i == 0 && c == '_') ||
              (c == '.' && (all_dots || i == n - 1 || i == ext_dot));
    if (esc) {
      out[o++] = '%';
      out[o++] = hex[c >> 4];
      out[o++] = hex[c & 15];
    } else {
      out[o++] = (char)c;
    }
  }
  return o;
}

/*
 * Long names. A file system takes at most 255 bytes per path component (Linux and
 * Windows alike) and a whole path of PATH_MAX (4096 on Linux; Windows paths past
 * MAX_PATH go through "\\?\" paths, see sb__path_long), while a stream name may be
 * 4096 bytes of any number of segments. So a mapped segment longer than AR_SEG_MAX
 * is shortened to a prefix of itself (cut between escapes), "%%" and 32 hex digits
 * of a hash of the original segment; and a path that would have more than
 * AR_DEPTH_MAX segments, or more than AR_REL_MAX bytes, keeps the directories that
 * fit and puts the rest of the name into one file name of the same form (hashed from
 * that rest, its first segment as the prefix). The normal mapping never writes "%%"
 * ('%' is always followed by two uppercase hex digits, or stands alone), so such a
 * name is never another name's normal one; the hash input starts with a byte saying
 * which kind it is, so a shortened segment and a shortened rest differ too. Two names
 * whose hashes collide still get files of their own (the exclusive create takes the
 * next sequence number), and the sidecar always holds the full name.
 * AR_SEG_MAX leaves room for the longest suffix, "+100000.json.tmp" (16 bytes).
 */
#define AR_SEG_MAX 200
#define AR_HASH_HEX 32
#define AR_REL_MAX 1024
#define AR_DEPTH_MAX 32

/* FNV-1a, 64 bits, with the murmur3 finalizer so that every input bit reaches every
 * output bit; two different offset bases give 128 bits. Stable across versions and
 * platforms: the names of existing files depend on it. */
static uint64_t path_hash(uint64_t h, char kind, const char* p, size_t n) {
  size_t i;
  h = (h ^ (unsigned char)kind) * 0x100000001b3ull;
  for (i = 0; i < n; i++)
    h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

/* Writes the shortened form of the mapped text m (mlen bytes) into out (room for
 * AR_SEG_MAX + 1): its prefix, "%%", the hash of kind and the original orig. */
static size_t ar_shorten(const char* m, size_t mlen, char kind, const char* orig,
                         size_t olen, char* out) {
  static const char hex[] = "0123456789abcdef";
  uint64_t h[2];
  size_t i = 0, o, k;
  h[0] = path_hash(0xcbf29ce484222325ull, kind, orig, olen);
  h[1] = path_hash(0x84222325cbf29ce4ull, kind, orig, olen);
  /* The prefix ends between escapes: "%XX" is never cut. */
  while (i < mlen) {
    size_t step = m[i] == '%' && mlen > 1 ? 3 : 1;
    if (i + step > AR_SEG_MAX - 2 - AR_HASH_HEX)
      break;
    i += step;
  }
  memcpy(out, m, i);
  o = i;
  out[o++] = '%';
  out[o++] = '%';
  for (k = 0; k < 2; k++) {
    int b;
    for (b = 60; b >= 0; b -= 4)
      out[o++] = hex[(h[k] >> b) & 15];
  }
  return o;
}

/*
 * The mapping, segment by segment (segments split at '/'; the result joins them with
 * '/' again):
 * - bytes outside [A-Za-z0-9_.-] become "%XX" (uppercase hex): '%', '\\', ':', space,
 *   control and non-ASCII bytes, and every character Windows forbids;
 * - a '_' at the start of a segment becomes "%5F" (a leading '_' means the next rule);
 * - a segment whose base name (up to its first '.') is a Windows device name (CON,
 *   PRN, AUX, NUL, COM0-9, LPT0-9, CONIN$, CONOUT$, any case) gets a '_' prefix;
 * - the dots of a segment made only of dots ("." and "..") become "%2E", and so does a
 *   segment's last '.' (Windows strips trailing dots);
 * - a segment other than the last that ends in ".log", ".json" or ".tmp" (any case)
 *   gets that '.' as "%2E", so no directory can have the name of an archive file;
 * - an empty segment (leading, trailing or doubled '/') becomes "%".
 * To undo it: a segment "%" is empty; otherwise drop a leading '_', then decode each
 * "%XX". So the mapping is injective, and no result is absolute, has a "." or ".."
 * segment, a '\\' or a ':'. Long segments and deep or long paths are shortened as
 * described above (those parts cannot be undone; the sidecar has the name).
 */
char* sb__archive_path(const char* name) {
  size_t len = strlen(name), o = 0, depth = 0;
  const char* seg = name;
  char* out;
  char* m;
  if (len > (SIZE_MAX - 8) / 5)
    abort();
  /* Each byte takes at most 3, each segment 1 more (prefix, or "%" when empty) and
   * each separator 1: at most len + 1 segments. Shortening only makes it shorter. */
  out = sb__xmalloc(5 * len + 8);
  m = sb__xmalloc(3 * len + AR_SEG_MAX + 2);
  for (;;) {
    const char* end = strchr(seg, '/');
    int last = end == NULL;
    size_t n, mlen;
    if (last)
      end = name + len;
    n = (size_t)(end - seg);
    mlen = ar_map_segment(seg, n, last, m);
    if (!last &&
        (depth + 2 > AR_DEPTH_MAX ||
         o + (mlen > AR_SEG_MAX ? AR_SEG_MAX : mlen) + 1 + AR_SEG_MAX > AR_REL_MAX)) {
      /* No room for this directory: the rest of the name becomes one file name. */
      o += ar_shorten(m, mlen, 'R', seg, len - (size_t)(seg - name), out + o);
      break;
    }
    if (mlen > AR_SEG_MAX)
      o += ar_shorten(m, mlen, 'S', seg, n, out + o);
    else {
      memcpy(out + o, m, mlen);
      o += mlen;
    }
    if (last)
      break;
    out[o++] = '/';
    depth++;
    seg = end + 1;
  }
  out[o] = '\0';
  free(m);
  return out;
}

char* sb__archive_path_with(const char* stem, unsigned seq, const char* ext) {
  size_t n = strlen(stem) + strlen(ext) + 16;
  char* p = sb__xmalloc(n);
  if (seq == 0)
    snprintf(p, n, "%s%s", stem, ext);
  else
    snprintf(p, n, "%s+%u%s", stem, seq, ext);
  return p;
}

/* ARCHIVE_DIR joined with each segment of the mapped path, with the platform's
 * separator; *parent gets the path without the last segment. */
char* sb__archive_path_join(const char* archive_dir, const char* rel, char** parent) {
  char* path = sb__xstrdup(archive_dir);
  const char* seg = rel;
  *parent = NULL;
  for (;;) {
    const char* end = strchr(seg, '/');
    size_t n = end ? (size_t)(end - seg) : strlen(seg);
    char* part = sb__xmalloc(n + 1);
    char* next;
    memcpy(part, seg, n);
    part[n] = '\0';
    if (end == NULL)
      *parent = sb__xstrdup(path);
    next = sb__path_join(path, part);
    free(part);
    free(path);
    path = next;
    if (end == NULL)
      return path;
    seg = end + 1;
  }
}

/* The sequence number in a stem's "+N" suffix ('+' is never in a mapped name). */
unsigned sb__archive_path_seq(const char* stem) {
  const char* plus = strrchr(stem, '+');
  const char* sep = strrchr(stem, '/');
  const char* bsep = strrchr(stem, '\\');
  if (bsep > sep)
    sep = bsep;
  if (plus == NULL || (sep != NULL && plus < sep))
    return 0;
  return (unsigned)strtoul(plus + 1, NULL, 10);
}
