/*
 * test_archive.c - sb__archive_path: stream names to relative archive paths. The
 * mapping must be safe on any input (never a traversal, an absolute path, a Windows
 * device or reserved character), and injective, so that two streams never share a
 * file. The archive sink itself is exercised end to end by the integration tests
 * against the real daemon.
 */
#include "internal.h"
#include "task.h"

static const char* const devices[] = {
    "CON",  "PRN",  "AUX",  "NUL",  "COM0", "COM1", "COM2",   "COM3",   "COM4",
    "COM5", "COM6", "COM7", "COM8", "COM9", "LPT0", "LPT1",   "LPT2",   "LPT3",
    "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9", "CONIN$", "CONOUT$"};

static int lower(int c) {
  return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

static int eq_nocase(const char* a, size_t n, const char* b) {
  size_t i;
  if (strlen(b) != n)
    return 0;
  for (i = 0; i < n; i++)
    if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
      return 0;
  return 1;
}

static int ends_nocase(const char* s, size_t n, const char* suffix) {
  size_t k = strlen(suffix);
  return n >= k && eq_nocase(s + n - k, k, suffix);
}

static int hexval(int c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1; /* the mapping writes uppercase hex only */
}

static char* map(const char* name) {
  char* p = sb__archive_path(name);
  ASSERT_NOT_NULL(p);
  return p;
}

/*
 * Checks everything a mapped path must be, whatever the input: relative, made of
 * [A-Za-z0-9_.-] and well-formed escapes only, no empty, "." or ".." segment, no
 * segment ending in '.' or ' ', no device base name, no '+' (the sequence suffix) and
 * no '~' (Windows short names).
 */
/* The shortened form of a long segment ends in "%%" and 32 lowercase hex digits. */
#define HASHED_TAIL 34

static int is_hashed(const char* seg, size_t n) {
  size_t i;
  if (n < HASHED_TAIL + 1 || seg[n - HASHED_TAIL] != '%' || seg[n - HASHED_TAIL + 1] != '%')
    return 0;
  for (i = n - 32; i < n; i++)
    if (!((seg[i] >= '0' && seg[i] <= '9') || (seg[i] >= 'a' && seg[i] <= 'f')))
      return 0;
  return 1;
}

static void check_safe(const char* in, const char* out) {
  const char* seg = out;
  if (out[0] == '\0' || out[0] == '/')
    sb_test_fail(__FILE__, __LINE__, "\"%s\" -> \"%s\": empty or absolute", in, out);
  for (;;) {
    const char* end = strchr(seg, '/');
    size_t n = end ? (size_t)(end - seg) : strlen(seg), i, base = 0;
    /* Every component fits a file system's 255 bytes with the longest suffix. */
    if (n > 200)
      sb_test_fail(__FILE__, __LINE__, "\"%.40s...\": a segment of %zu bytes", in, n);
    if (is_hashed(seg, n))
      n -= HASHED_TAIL; /* the prefix is checked as any segment */
    if (n == 0 || (n == 1 && seg[0] == '.') ||
        (n == 2 && seg[0] == '.' && seg[1] == '.'))
      sb_test_fail(__FILE__, __LINE__, "\"%s\" -> \"%s\": bad segment", in, out);
    if (seg[n - 1] == '.' || seg[n - 1] == ' ')
      sb_test_fail(__FILE__, __LINE__, "\"%s\" -> \"%s\": trailing dot", in, out);
    while (base < n && seg[base] != '.')
      base++;
    for (i = 0; i < sizeof(devices) / sizeof(devices[0]); i++)
      if (eq_nocase(seg, base, devices[i]))
        sb_test_fail(__FILE__, __LINE__, "\"%s\" -> \"%s\": device", in, out);
    for (i = 0; i < n; i++) {
      unsigned char c = (unsigned char)seg[i];
      int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
               (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
      if (c == '%')
        ok =
            n == 1 || (i + 2 < n && hexval(seg[i + 1]) >= 0 && hexval(seg[i + 2]) >= 0);
      if (!ok)
        sb_test_fail(__FILE__, __LINE__, "\"%s\" -> \"%s\": byte 0x%02x at %lu", in,
                     out, c, (unsigned long)((size_t)(seg - out) + i));
    }
    if (end == NULL)
      break;
    /* A directory never has an archive file's extension. */
    if (ends_nocase(seg, n, ".log") || ends_nocase(seg, n, ".json") ||
        ends_nocase(seg, n, ".tmp"))
      sb_test_fail(__FILE__, __LINE__, "\"%s\" -> \"%s\": directory with a file's name",
                   in, out);
    seg = end + 1;
  }
  ASSERT_NULL(strchr(out, '\\'));
  ASSERT_NULL(strchr(out, ':'));
  ASSERT_NULL(strchr(out, '+'));
  ASSERT_NULL(strchr(out, '~'));
}

/* The inverse of the mapping, as its comment in archive.c states it. */
static char* unmap(const char* out) {
  char* res = malloc(strlen(out) + 1);
  const char* seg = out;
  size_t o = 0;
  ASSERT_NOT_NULL(res);
  for (;;) {
    const char* end = strchr(seg, '/');
    size_t n = end ? (size_t)(end - seg) : strlen(seg), i = 0;
    if (!(n == 1 && seg[0] == '%')) {
      if (n > 0 && seg[0] == '_')
        i = 1;
      while (i < n) {
        if (seg[i] == '%') {
          ASSERT(i + 2 < n);
          res[o++] = (char)(hexval(seg[i + 1]) << 4 | hexval(seg[i + 2]));
          i += 3;
        } else {
          res[o++] = seg[i++];
        }
      }
    }
    if (end == NULL)
      break;
    res[o++] = '/';
    seg = end + 1;
  }
  res[o] = '\0';
  return res;
}

static void check_one(const char* in) {
  char* out = map(in);
  char* back;
  check_safe(in, out);
  /* Short names keep the reversible mapping, which never writes "%%". */
  ASSERT_NULL(strstr(out, "%%"));
  ASSERT_LE(strlen(out), 5 * strlen(in) + 7);
  back = unmap(out);
  if (strcmp(back, in) != 0)
    sb_test_fail(__FILE__, __LINE__, "\"%s\" -> \"%s\" -> \"%s\"", in, out, back);
  free(back);
  free(out);
}

static const struct {
  const char* in;
  const char* out;
} path_vectors[] = {
    /* valid stream names */
    {"a", "a"},
    {"stdout", "stdout"},
    {"build/step:1/stdout", "build/step%3A1/stdout"},
    {"name.with.dots", "name.with.dots"},
    {"a-b_c/D-9", "a-b_c/D-9"},
    {"x.log", "x.log"},
    {"x.log/y", "x%2Elog/y"},
    {"x.JSON/y", "x%2EJSON/y"},
    {"a.json.tmp/b", "a.json%2Etmp/b"},
    {"a.1", "a.1"},
    {"a./b", "a%2E/b"},
    {"a.b.", "a.b%2E"},
    /* devices */
    {"CON", "_CON"},
    {"con.txt", "_con.txt"},
    {"Com1.tar.gz", "_Com1.tar.gz"},
    {"lpt9", "_lpt9"},
    {"NUL/x", "_NUL/x"},
    {"a/aux", "a/_aux"},
    {"COM10", "COM10"},
    {"CONSOLE", "CONSOLE"},
    {"xCON", "xCON"},
    {"CONIN$", "_CONIN%24"},
    {"conout$.x", "_conout%24.x"},
    /* hostile inputs */
    {"", "%"},
    {"/", "%/%"},
    {".", "%2E"},
    {"..", "%2E%2E"},
    {"...", "%2E%2E%2E"},
    {"../x", "%2E%2E/x"},
    {"/etc/passwd", "%/etc/passwd"},
    {"a/../../b", "a/%2E%2E/%2E%2E/b"},
    {"a/./b", "a/%2E/b"},
    {"C:\\x", "C%3A%5Cx"},
    {"a\\..\\b", "a%5C..%5Cb"},
    {"\\\\?\\C:\\", "%5C%5C%3F%5CC%3A%5C"},
    {"a//b", "a/%/b"},
    {"a/", "a/%"},
    {"a ", "a%20"},
    {" a", "%20a"},
    {"_a", "%5Fa"},
    {"a_b", "a_b"},
    {"100%", "100%25"},
    {"%2E", "%252E"},
    {"a+1", "a%2B1"},
    {"A~1", "A%7E1"},
    {"a:b:$DATA", "a%3Ab%3A%24DATA"},
    {"a\tb\n", "a%09b%0A"},
    {"\xc3\xa9", "%C3%A9"},
    {"\x7f\xff", "%7F%FF"},
    {"<>\"|?*", "%3C%3E%22%7C%3F%2A"},
};

TEST_IMPL(archive_path_table) {
  size_t i;
  for (i = 0; i < sizeof(path_vectors) / sizeof(path_vectors[0]); i++) {
    char* out = map(path_vectors[i].in);
    ASSERT_STR_EQ(out, path_vectors[i].out);
    check_safe(path_vectors[i].in, out);
    free(out);
  }
}

static const char* const hostile[] = {"../x",
                                      "/etc/passwd",
                                      "a/../../b",
                                      "C:\\x",
                                      "a\\..\\b",
                                      "",
                                      "a//b",
                                      "..",
                                      ".",
                                      "//",
                                      "///",
                                      "../../../../../../etc/shadow",
                                      "..\\..\\windows\\system32",
                                      "./.",
                                      "a/..",
                                      "../",
                                      "/..",
                                      "a/.../b",
                                      "C:",
                                      "c:/x",
                                      "\\\\server\\share\\f",
                                      "NUL.",
                                      "CON ",
                                      "con:",
                                      "aux..",
                                      "file.",
                                      "file. ",
                                      "file .",
                                      ". .",
                                      "%",
                                      "%%",
                                      "%2e%2e",
                                      "%2F",
                                      "_CON",
                                      "__",
                                      "_",
                                      "-",
                                      ".git/config",
                                      "x/.ssh/id",
                                      "\x01",
                                      "a\x1f",
                                      "a\x7f",
                                      "\xe2\x80\x8b",
                                      "\xef\xbc\x8e\xef\xbc\x8e",
                                      "COM\xc2\xb9",
                                      "a.log/",
                                      "a.LoG/b",
                                      ".log/b",
                                      ".tmp/.json/.log"};

TEST_IMPL(archive_path_hostile) {
  size_t i;
  for (i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++)
    check_one(hostile[i]);
}

TEST_IMPL(archive_path_devices) {
  static const char* const suffixes[] = {"", ".txt", ".tar.gz", ".", ".log"};
  static const char* const not_devices[] = {"CONX", "COM10", "LPT",  "COM",  "CONSOLE",
                                            "nul_", "xCON",  "AUXX", "PRN1", "CON-1"};
  char in[64], want[80];
  size_t i, j, k;
  for (i = 0; i < sizeof(devices) / sizeof(devices[0]); i++) {
    for (j = 0; j < sizeof(suffixes) / sizeof(suffixes[0]); j++) {
      for (k = 0; k < 2; k++) {
        char* out;
        size_t n;
        snprintf(in, sizeof(in), "%s%s", devices[i], suffixes[j]);
        if (k == 1) /* lower case */
          for (n = 0; in[n]; n++)
            in[n] = (char)lower((unsigned char)in[n]);
        out = map(in);
        ASSERT_EQ(out[0], '_');
        check_safe(in, out);
        /* The rest is the segment as any other would be mapped. */
        snprintf(want, sizeof(want), "x%s", in);
        {
          char* plain = map(want);
          ASSERT_STR_EQ(out + 1, plain + 1);
          free(plain);
        }
        free(out);
        /* Also as a directory. */
        snprintf(want, sizeof(want), "%s/f", in);
        out = map(want);
        ASSERT_EQ(out[0], '_');
        check_safe(want, out);
        free(out);
      }
    }
  }
  for (i = 0; i < sizeof(not_devices) / sizeof(not_devices[0]); i++) {
    char* out = map(not_devices[i]);
    ASSERT_STR_EQ(out, not_devices[i]);
    free(out);
  }
}

/* Pairs a careless escaping would merge. */
static const char* const tricky[] = {
    "a",         "A",        "a/b",    "a%2Fb", "a:b",   "a%3Ab", "a%253Ab", "CON",
    "_CON",      "%5FCON",   "a.",     "a%2E",  "a..",   "",      "%",       "/",
    "//",        "a/",       "a//",    "/a",    "a.1",   "a+1",   "a.log",   "a.log/b",
    "a%2Elog/b", "a.json/b", "a.json", ".",     "..",    "%2E",   "%2E%2E",  "...",
    "con",       "con.",     "_con.",  "a b",   "a%20b", "a_b",   "_a_b",    "__",
    "_",         "%5F",      "a\\b",   "a/b/",  "a/b//", "NUL/x", "_NUL/x",  "x.",
    "x%2E",      "x.%2E"};

TEST_IMPL(archive_path_injective) {
  size_t n = sizeof(tricky) / sizeof(tricky[0]), i, j;
  char* out[sizeof(tricky) / sizeof(tricky[0])];
  for (i = 0; i < n; i++) {
    check_one(tricky[i]);
    out[i] = map(tricky[i]);
  }
  for (i = 0; i < n; i++)
    for (j = i + 1; j < n; j++)
      if (strcmp(tricky[i], tricky[j]) != 0 && strcmp(out[i], out[j]) == 0)
        sb_test_fail(__FILE__, __LINE__, "\"%s\" and \"%s\" both map to \"%s\"",
                     tricky[i], tricky[j], out[i]);
  for (i = 0; i < n; i++)
    free(out[i]);
}

/*
 * The sink names its files PATH.log, PATH.json, PATH.json.tmp, and PATH+N.* for a
 * name archived before: no such file of one name may be another's (case folded, for
 * Windows and macOS), nor a directory another name needs.
 */
TEST_IMPL(archive_path_files_not_dirs) {
  static const char* const names[] = {
      "a",       "a.log/b", "a.LOG/b",   "a.json/b", "a.json.tmp/b", "a.1/b", "a.1",
      "a.1.log", "x/a",     "x/a.log/c", "b.tmp/c",  "b.json",       "b",     "a.json",
      "a+1/b",   "a.log",   "A"};
  static const char* const exts[] = {".log", ".json", ".json.tmp"};
  enum { NN = sizeof(names) / sizeof(names[0]), NSEQ = 3, NEXT = 3 };
  char* files[NN * NSEQ * NEXT];
  char* dirs[NN * 8];
  size_t nf = 0, nd = 0, i, j;
  for (i = 0; i < NN; i++) {
    char* p = map(names[i]);
    char* slash;
    unsigned seq;
    size_t e;
    for (seq = 0; seq < NSEQ; seq++) {
      for (e = 0; e < NEXT; e++) {
        char buf[256];
        if (seq == 0)
          snprintf(buf, sizeof(buf), "%s%s", p, exts[e]);
        else
          snprintf(buf, sizeof(buf), "%s+%u%s", p, seq, exts[e]);
        files[nf] = malloc(strlen(buf) + 1);
        strcpy(files[nf++], buf);
      }
    }
    /* Every directory the name needs. */
    for (slash = strchr(p, '/'); slash != NULL; slash = strchr(slash + 1, '/')) {
      dirs[nd] = malloc((size_t)(slash - p) + 1);
      memcpy(dirs[nd], p, (size_t)(slash - p));
      dirs[nd++][slash - p] = '\0';
    }
    free(p);
  }
  for (i = 0; i < nf; i++) {
    for (j = 0; j < nd; j++)
      if (eq_nocase(files[i], strlen(files[i]), dirs[j]))
        sb_test_fail(__FILE__, __LINE__, "file %s is also a directory", files[i]);
    /* Files differ exactly (case folding collisions are resolved by the exclusive
     * create and the next sequence number). */
    for (j = i + 1; j < nf; j++)
      if (strcmp(files[i], files[j]) == 0)
        sb_test_fail(__FILE__, __LINE__, "file %s named twice", files[i]);
  }
  for (i = 0; i < nf; i++)
    free(files[i]);
  for (i = 0; i < nd; i++)
    free(dirs[i]);
}

/* Random strings over the characters that matter, deterministic seed. */
TEST_IMPL(archive_path_random) {
  static const char alphabet[] = "/./.%_:\\ aCONcolgjst+~-1$\x01\xff\xc3";
  uint64_t x = 0x9e3779b97f4a7c15ull;
  char in[48];
  int iter;
  for (iter = 0; iter < 20000; iter++) {
    size_t len, i;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    len = (size_t)(x % sizeof(in));
    for (i = 0; i < len; i++) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      in[i] = alphabet[x % (sizeof(alphabet) - 1)];
    }
    in[len] = '\0';
    check_one(in);
  }
}

/* ---- long and deep names ---- */

static size_t count_segments(const char* p) {
  size_t n = 1;
  for (; *p; p++)
    n += *p == '/';
  return n;
}

static char* repeat(const char* unit, size_t times, const char* tail) {
  size_t ul = strlen(unit), tl = strlen(tail), i;
  char* s = malloc(ul * times + tl + 1);
  ASSERT_NOT_NULL(s);
  for (i = 0; i < times; i++)
    memcpy(s + i * ul, unit, ul);
  memcpy(s + ul * times, tail, tl + 1);
  return s;
}

/* A segment too long for a file name (255 bytes, less after escaping and the suffix)
 * is shortened to a prefix and a hash; the result is stable, distinct for distinct
 * names, and the directories of siblings are shared. */
TEST_IMPL(archive_path_long_segments) {
  static const size_t lens[] = {200, 201, 239, 247, 255, 300, 1000, 4096};
  size_t i;
  for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
    char* a = repeat("x", lens[i], "");
    char* b = repeat("x", lens[i] - 1, "y");
    char* pa = map(a);
    char* pa2 = map(a);
    char* pb = map(b);
    check_safe(a, pa);
    check_safe(b, pb);
    ASSERT_STR_EQ(pa, pa2);
    if (strcmp(pa, pb) == 0)
      sb_test_fail(__FILE__, __LINE__, "%zu bytes: both map to %s", lens[i], pa);
    if (lens[i] <= 200)
      ASSERT_STR_EQ(pa, a); /* short enough: unchanged */
    else
      ASSERT(is_hashed(pa, strlen(pa)) && strncmp(pa, "xxxxxxxx", 8) == 0);
    free(a);
    free(b);
    free(pa);
    free(pa2);
    free(pb);
  }
  /* Escaping triples a byte: 100 ':' is 300 bytes mapped. */
  {
    char* a = repeat(":", 100, "");
    char* b = repeat(":", 99, "");
    char* pa = map(a);
    char* pb = map(b);
    check_safe(a, pa);
    check_safe(b, pb);
    ASSERT(is_hashed(pa, strlen(pa)));
    ASSERT(strcmp(pa, pb) != 0);
    /* The prefix never cuts an escape. */
    ASSERT_EQ((strlen(pa) - HASHED_TAIL) % 3, 0);
    free(a);
    free(b);
    free(pa);
    free(pb);
  }
  /* Siblings under a long directory share it. */
  {
    char* a = repeat("d", 300, "/one");
    char* b = repeat("d", 300, "/two");
    char* pa = map(a);
    char* pb = map(b);
    check_safe(a, pa);
    check_safe(b, pb);
    ASSERT_EQ(strchr(pa, '/') - pa, strchr(pb, '/') - pb);
    ASSERT(strncmp(pa, pb, (size_t)(strchr(pa, '/') - pa)) == 0);
    ASSERT_STR_EQ(strchr(pa, '/'), "/one");
    free(a);
    free(b);
    free(pa);
    free(pb);
  }
}

/* A name of thousands of segments, or of segments that add up past what a path may
 * hold, keeps a few directories and puts the rest in one hashed file name. */
TEST_IMPL(archive_path_deep_names) {
  char* deep = repeat("a/", 2047, "a"); /* 4095 bytes, 2048 segments */
  char* deep2 = repeat("a/", 2047, "b");
  char* wide = repeat("abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123"
                      "456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz"
                      "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuv"
                      "wxyz012345678/",
                      16, "end"); /* 16 segments of 255 bytes */
  char* p = map(deep);
  char* p2 = map(deep2);
  char* pw = map(wide);
  check_safe(deep, p);
  check_safe(deep2, p2);
  check_safe(wide, pw);
  ASSERT_LE(count_segments(p), 32);
  ASSERT_LE(strlen(p), 1024);
  ASSERT_LE(strlen(pw), 1024);
  ASSERT(strcmp(p, p2) != 0);
  ASSERT(is_hashed(p, strlen(p)));
  /* The same name maps the same way (the files of a name are found again). */
  {
    char* again = map(deep);
    ASSERT_STR_EQ(again, p);
    free(again);
  }
  /* A rest that is one segment and a long segment differ (hash domain). */
  {
    char* seg = repeat("q", 300, "");
    char* ps = map(seg);
    check_safe(seg, ps);
    ASSERT(strcmp(ps, p) != 0);
    free(seg);
    free(ps);
  }
  /* Names of up to 31 directories that fit keep their path. */
  {
    char* ok = repeat("a/", 31, "a");
    char* po = map(ok);
    ASSERT_STR_EQ(po, ok);
    free(ok);
    free(po);
  }
  free(deep);
  free(deep2);
  free(wide);
  free(p);
  free(p2);
  free(pw);
}

/* Many long names that differ in one byte anywhere all map apart. */
TEST_IMPL(archive_path_long_injective) {
  enum { N = 64 };
  char* outs[N];
  size_t i, j;
  for (i = 0; i < N; i++) {
    char* in = repeat("k/", 200, "z");
    in[(i * 97) % 400] = (char)('A' + (i % 26));
    if (in[(i * 97) % 400] == '/' || i >= 26)
      in[(i * 97 + 1) % 400] = (char)('0' + (i % 10));
    outs[i] = map(in);
    check_safe(in, outs[i]);
    free(in);
  }
  for (i = 0; i < N; i++)
    for (j = i + 1; j < N; j++)
      if (strcmp(outs[i], outs[j]) == 0)
        sb_test_fail(__FILE__, __LINE__, "%zu and %zu both map to %s", i, j, outs[i]);
  for (i = 0; i < N; i++)
    free(outs[i]);
}
