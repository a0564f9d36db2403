/*
 * sbctl_archive.c - sbctl archive ls|cat: reads an archive directory (a streambrokerd
 * in archive mode, behind other brokers or not) and puts its streams back together.
 *
 *   sbctl archive ls [--dir ARCHIVE]
 *   sbctl archive cat NAME|ID [--dir ARCHIVE] [--raw]
 *
 * The rule (README, "Reassembling a stream"): the segments of one client stream are
 * the archived streams (each a .log with its .json sidecar) whose tag
 * streambroker.stream is its id; a segment lacking the tag (written by an older
 * service) belongs to its original name (tag streambroker.name, else its name). Each
 * is laid at its tag streambroker.offset (absent: 0), a byte offset, or a datagram
 * index for datagram streams; bytes a segment repeats are dropped (the first copy
 * wins), and a segment that starts past what came before leaves a gap, said on
 * standard error.
 *
 * Datagram streams are printed one datagram a line as hex, or with --raw as the wire
 * carried them (each after its varint length). Exit status: 0, 1 when the stream is
 * not there, is ambiguous (a name several streams had: give an id) or has a gap, 2
 * for a usage error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <uv.h>

#include "alloc.h"
#include "paths.h"
#include "protocol.h"
#include "sbctl_archive.h"
#include "tags.h"

typedef struct {
  char* log_path;
  char* name;     /* the name it was archived under */
  char* original; /* tag streambroker.name, else name */
  char* id;       /* tag streambroker.stream, or NULL */
  int dgram;
  char* type;
  uint64_t offset; /* bytes, or datagrams */
  int complete, closed, dropped;
  char* opened;
  double sequence;
} seg_t;

typedef struct {
  seg_t* s;
  size_t n, cap;
} segs_t;

/* A stream: its segments (indices into segs_t), by key. */
typedef struct {
  char* key; /* the id, or "name:" ORIGINAL for segments without one */
  size_t* idx;
  size_t n;
} group_t;

static char* dup_or_null(const char* s) {
  return s ? sb__xstrdup(s) : NULL;
}

static const char* tag(const cJSON* doc, const char* key) {
  const cJSON* tags = cJSON_GetObjectItemCaseSensitive(doc, "tags");
  const cJSON* v = cJSON_GetObjectItemCaseSensitive(tags, key);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int read_file(const char* path, sb__buf_t* out) {
  FILE* f = sb__file_read(path); /* UTF-8, on Windows too */
  char chunk[65536];
  size_t n;
  if (f == NULL)
    return -1;
  while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
    sb__buf_append(out, chunk, n);
  fclose(f);
  return out->err ? -1 : 0;
}

/* Reads one sidecar; a file that is not one (no name) is skipped. */
static void add_sidecar(segs_t* l, const char* json_path) {
  sb__buf_t text = {0};
  cJSON* doc;
  const cJSON *name, *type, *v;
  const char* off;
  seg_t* s;
  size_t len = strlen(json_path);
  if (read_file(json_path, &text) != 0) {
    fprintf(stderr, "sbctl: cannot read %s\n", json_path);
    sb__buf_free(&text);
    return;
  }
  doc = cJSON_ParseWithLength(text.data ? text.data : "", text.len);
  sb__buf_free(&text);
  name = cJSON_GetObjectItemCaseSensitive(doc, "name");
  type = cJSON_GetObjectItemCaseSensitive(doc, "type");
  if (!cJSON_IsString(name)) {
    cJSON_Delete(doc);
    return;
  }
  if (l->n == l->cap) {
    l->cap = l->cap ? l->cap * 2 : 64;
    l->s = sb__xrealloc(l->s, l->cap * sizeof(*l->s));
  }
  s = &l->s[l->n++];
  memset(s, 0, sizeof(*s));
  s->log_path = sb__xmalloc(len + 1);
  memcpy(s->log_path, json_path, len - 5);
  strcpy(s->log_path + len - 5, ".log");
  s->name = sb__xstrdup(name->valuestring);
  s->original =
      sb__xstrdup(tag(doc, SB__TAG_NAME) ? tag(doc, SB__TAG_NAME)
                                                : name->valuestring);
  s->id = dup_or_null(tag(doc, SB__TAG_STREAM));
  s->type = sb__xstrdup(cJSON_IsString(type) ? type->valuestring : "text");
  s->dgram = strcmp(s->type, "datagram") == 0;
  off = tag(doc, SB__TAG_OFFSET);
  s->offset = off ? strtoull(off, NULL, 10) : 0;
  s->dropped = tag(doc, SB__TAG_DROPPED) != NULL;
  s->complete = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "complete"));
  v = cJSON_GetObjectItemCaseSensitive(doc, "closed");
  s->closed = cJSON_IsString(v);
  v = cJSON_GetObjectItemCaseSensitive(doc, "opened");
  s->opened = sb__xstrdup(cJSON_IsString(v) ? v->valuestring : "");
  v = cJSON_GetObjectItemCaseSensitive(doc, "sequence");
  s->sequence = cJSON_IsNumber(v) ? v->valuedouble : 0;
  cJSON_Delete(doc);
}

/* Every sidecar under dir (.json, not .json.tmp), depth first. */
static int scan(segs_t* l, const char* dir, int depth) {
  uv_fs_t req;
  uv_dirent_t ent;
  int r = uv_fs_scandir(NULL, &req, dir, 0, NULL);
  if (r < 0) {
    uv_fs_req_cleanup(&req);
    if (depth == 0)
      fprintf(stderr, "sbctl: cannot read the archive %s: %s\n", dir, uv_strerror(r));
    return depth == 0 ? -1 : 0;
  }
  while (uv_fs_scandir_next(&req, &ent) != UV_EOF) {
    char* path = sb__path_join(dir, ent.name);
    size_t n = strlen(ent.name);
    if (ent.type == UV_DIRENT_DIR) {
      if (depth < 64)
        scan(l, path, depth + 1);
    } else if (n > 5 && strcmp(ent.name + n - 5, ".json") == 0) {
      add_sidecar(l, path);
    }
    free(path);
  }
  uv_fs_req_cleanup(&req);
  return 0;
}

static void segs_free(segs_t* l) {
  size_t i;
  for (i = 0; i < l->n; i++) {
    free(l->s[i].log_path);
    free(l->s[i].name);
    free(l->s[i].original);
    free(l->s[i].id);
    free(l->s[i].type);
    free(l->s[i].opened);
  }
  free(l->s);
}

static char* seg_key(const seg_t* s) {
  char* k;
  if (s->id)
    return sb__xstrdup(s->id);
  k = sb__xmalloc(strlen(s->original) + 6);
  strcpy(k, "name:");
  strcat(k, s->original);
  return k;
}

static segs_t* sort_segs; /* qsort has no argument */

/* By offset, then the order the archive opened them. */
static int cmp_idx(const void* a, const void* b) {
  const seg_t* x = &sort_segs->s[*(const size_t*)a];
  const seg_t* y = &sort_segs->s[*(const size_t*)b];
  int c;
  if (x->offset != y->offset)
    return x->offset < y->offset ? -1 : 1;
  if ((c = strcmp(x->opened, y->opened)) != 0)
    return c;
  return x->sequence < y->sequence ? -1 : x->sequence > y->sequence;
}

static void group_all(segs_t* l, group_t** out, size_t* nout) {
  group_t* g = NULL;
  size_t n = 0, i, j;
  for (i = 0; i < l->n; i++) {
    char* k = seg_key(&l->s[i]);
    for (j = 0; j < n && strcmp(g[j].key, k) != 0; j++)
      ;
    if (j == n) {
      g = sb__xrealloc(g, (n + 1) * sizeof(*g));
      memset(&g[n], 0, sizeof(*g));
      g[n].key = k;
      n++;
    } else {
      free(k);
    }
    g[j].idx = sb__xrealloc(g[j].idx, (g[j].n + 1) * sizeof(size_t));
    g[j].idx[g[j].n++] = i;
  }
  sort_segs = l;
  for (j = 0; j < n; j++)
    qsort(g[j].idx, g[j].n, sizeof(size_t), cmp_idx);
  *out = g;
  *nout = n;
}

static void groups_free(group_t* g, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    free(g[i].key);
    free(g[i].idx);
  }
  free(g);
}

/* One varint (protobuf's); 0, or -1 when data ends first. */
static int varint(const unsigned char* p, size_t len, size_t* used, uint64_t* v) {
  size_t i;
  *v = 0;
  for (i = 0; i < len && i < 10; i++) {
    *v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
    if (!(p[i] & 0x80)) {
      *used = i + 1;
      return 0;
    }
  }
  return -1;
}

typedef struct {
  int out; /* print (else only measure) */
  int raw;
  uint64_t end; /* bytes, or datagrams, put together so far */
  uint64_t gaps, gap_units;
  int complete; /* the segment reaching furthest was closed complete */
  int open;     /* ... or is still open */
} put_t;

/* Standard output through libuv: bytes as they are (no newline translation on Windows,
 * where stdio's stdout is in text mode). */
static sb__buf_t out_buf;

static void out_flush(void) {
  size_t at = 0;
  while (at < out_buf.len) {
    uv_fs_t req;
    uv_buf_t b = uv_buf_init(out_buf.data + at, (unsigned)(out_buf.len - at));
    int r = uv_fs_write(NULL, &req, 1, &b, 1, -1, NULL);
    uv_fs_req_cleanup(&req);
    if (r <= 0) {
      fprintf(stderr, "sbctl: writing standard output: %s\n", uv_strerror(r));
      exit(1);
    }
    at += (size_t)r;
  }
  out_buf.len = 0;
}

static void out(const void* data, size_t len) {
  sb__buf_append(&out_buf, data, len);
  if (out_buf.len >= 1 << 20)
    out_flush();
}

static void gap(put_t* p, const seg_t* s, uint64_t from, uint64_t to) {
  p->gaps++;
  p->gap_units += to - from;
  if (p->out)
    fprintf(stderr, "sbctl: gap: %s %llu to %llu missing (%llu), before %s\n",
            s->dgram ? "datagrams" : "bytes", (unsigned long long)from,
            (unsigned long long)to, (unsigned long long)(to - from), s->log_path);
}

/* Lays one segment at its offset: what it repeats is dropped. */
static int put_seg(put_t* p, const seg_t* s) {
  sb__buf_t data = {0};
  uint64_t k = s->offset;
  size_t at = 0;
  int reached;
  if (read_file(s->log_path, &data) != 0) {
    fprintf(stderr, "sbctl: cannot read %s\n", s->log_path);
    sb__buf_free(&data);
    return -1;
  }
  if (s->offset > p->end)
    gap(p, s, p->end, s->offset);
  if (!s->dgram) {
    uint64_t end = s->offset + data.len;
    if (end > p->end) {
      size_t skip = (size_t)(p->end > s->offset ? p->end - s->offset : 0);
      if (p->out)
        out(data.data + skip, data.len - skip);
      p->end = end;
    }
    reached = end >= p->end;
  } else {
    /* A datagram cut short (a segment whose writer was killed) is left out. */
    while (at < data.len) {
      uint64_t n;
      size_t used;
      const unsigned char* d = (const unsigned char*)data.data + at;
      if (varint(d, data.len - at, &used, &n) != 0 || n > data.len - at - used)
        break;
      if (k >= p->end) {
        if (p->out && p->raw) {
          out(d, used + (size_t)n);
        } else if (p->out) {
          static const char digits[] = "0123456789abcdef";
          size_t i;
          for (i = 0; i < n; i++) {
            char hx[2] = {digits[d[used + i] >> 4], digits[d[used + i] & 15]};
            out(hx, 2);
          }
          out("\n", 1);
        }
        p->end = k + 1;
      }
      k++;
      at += used + (size_t)n;
    }
    reached = k >= p->end;
  }
  if (reached) {
    p->complete = s->complete;
    p->open = !s->closed;
  }
  sb__buf_free(&data);
  return 0;
}

static int put_group(segs_t* l, const group_t* g, put_t* p) {
  size_t i;
  for (i = 0; i < g->n; i++)
    if (put_seg(p, &l->s[g->idx[i]]) != 0)
      return -1;
  return 0;
}

static char* default_dir(void) {
  return sb__path_join(sb__default_data_dir(), "archive");
}

static int archive_ls(const char* dir) {
  segs_t l = {0};
  group_t* g;
  size_t n, i;
  if (scan(&l, dir, 0) != 0)
    return 1;
  group_all(&l, &g, &n);
  printf("%-32s %-8s %12s %4s %-10s %s\n", "STREAM", "TYPE", "SIZE", "SEGS", "STATE",
         "NAME");
  for (i = 0; i < n; i++) {
    const seg_t* first = &l.s[g[i].idx[0]];
    put_t p;
    const char* state;
    memset(&p, 0, sizeof(p));
    put_group(&l, &g[i], &p);
    state = p.gaps ? "gap" : p.open ? "open" : p.complete ? "complete" : "incomplete";
    printf("%-32s %-8s %12llu%s %4zu %-10s %s\n", first->id ? first->id : "-",
           first->type, (unsigned long long)p.end, first->dgram ? "d" : " ", g[i].n,
           state, first->original);
  }
  groups_free(g, n);
  segs_free(&l);
  return 0;
}

static int archive_cat(const char* dir, const char* what, int raw) {
  segs_t l = {0};
  group_t* g;
  size_t n, i, found = 0, hits = 0;
  int status = 0;
  if (scan(&l, dir, 0) != 0)
    return 1;
  group_all(&l, &g, &n);
  for (i = 0; i < n; i++) {
    if (strcmp(g[i].key, what) == 0) {
      found = i;
      hits = 1;
      break;
    }
  }
  if (hits == 0) {
    for (i = 0; i < n; i++) {
      if (strcmp(l.s[g[i].idx[0]].original, what) == 0) {
        if (hits++ == 0)
          found = i;
      }
    }
  }
  if (hits == 0) {
    fprintf(stderr, "sbctl: no stream %s in the archive %s\n", what, dir);
    status = 1;
  } else if (hits > 1) {
    fprintf(stderr,
            "sbctl: %zu streams in %s were named %s; give one's id (sbctl archive "
            "ls):\n",
            hits, dir, what);
    for (i = 0; i < n; i++)
      if (strcmp(l.s[g[i].idx[0]].original, what) == 0)
        fprintf(stderr, "  %s\n", g[i].key);
    status = 1;
  } else {
    put_t p;
    memset(&p, 0, sizeof(p));
    p.out = 1;
    p.raw = raw;
    if (put_group(&l, &g[found], &p) != 0 || p.gaps > 0)
      status = 1;
    out_flush();
    sb__buf_free(&out_buf);
  }
  groups_free(g, n);
  segs_free(&l);
  return status;
}

int sb__sbctl_archive(int argc, char** argv) {
  const char* dir = NULL;
  const char* what = NULL;
  const char* cmd = argc > 0 ? argv[0] : "";
  char* dflt = NULL;
  int raw = 0, i, r;
  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
      dir = argv[++i];
    else if (strcmp(argv[i], "--raw") == 0)
      raw = 1;
    else if (what == NULL && argv[i][0] != '-' && strcmp(cmd, "cat") == 0)
      what = argv[i];
    else {
      fprintf(stderr, "sbctl archive: unknown argument: %s\n", argv[i]);
      return 2;
    }
  }
  if (strcmp(cmd, "ls") != 0 && (strcmp(cmd, "cat") != 0 || what == NULL)) {
    fprintf(stderr, "usage: sbctl archive ls [--dir ARCHIVE]\n"
                    "       sbctl archive cat NAME|ID [--dir ARCHIVE] [--raw]\n");
    return 2;
  }
  if (dir == NULL)
    dir = dflt = default_dir();
  r = strcmp(cmd, "ls") == 0 ? archive_ls(dir) : archive_cat(dir, what, raw);
  free(dflt);
  return r;
}
