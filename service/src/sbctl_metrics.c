/*
 * sbctl_metrics.c - sbctl metrics: the status reply in the Prometheus text format,
 * with each known field's family name, type and help (the counters' from counters.h).
 */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "counters.h"
#include "sbctl_metrics.h"

static const char* str(const cJSON* o, const char* name) {
  const cJSON* v = cJSON_GetObjectItemCaseSensitive(o, name);
  return cJSON_IsString(v) ? v->valuestring : "-";
}

/*
 * Every number in the status reply becomes a sample, so a counter added to the
 * service later still appears here. The table below names each field the service
 * reports: its family name (Prometheus style: the base unit spelled out before
 * "_total"), its type and its help text. A field the table does not know (a newer
 * service) follows the rule: under "counters", a counter streambroker_NAME_total (an
 * object of numbers there is one counter with a "reason" label per member); under
 * another object OBJ, a gauge streambroker_OBJ_NAME; at the top, a gauge
 * streambroker_NAME. The strings at the top become the labels of streambroker_info.
 */
typedef struct {
  const char* path; /* "counters.bytes_in", "spool.bytes", "uptime_s" */
  const char* name; /* NULL: by the rule; "": not exported (another family has it) */
  const char* type; /* NULL: by the rule */
  const char* help;
  int per_upstream; /* labelled upstream="ADDR" when the service forwards */
} sbctl_metric_t;

#define C_ "counter"
#define G_ "gauge"
static const sbctl_metric_t known[] = {
    {"uptime_s", "streambroker_uptime_seconds", G_,
     "Seconds since the service started.", 0},
    {"streams_open", NULL, G_, "Streams open now (handshake done).", 0},
    {"connections_open", NULL, G_,
     "Client connections open now, handshaking or streaming, with the streams whose "
     "client is gone while their data still goes upstream.",
     0},
    {"handshakes_open", NULL, G_,
     "Client connections still in their handshake (max_handshakes).", 0},
    {"handshake_bytes", NULL, G_,
     "Bytes the handshakes in flight hold (handshake_memory_max).", 0},
    {"process.start_time_s", "process_start_time_seconds", G_,
     "Start time of the service process since the Unix epoch, in seconds.", 0},
    {"process.resident_memory_bytes", "process_resident_memory_bytes", G_,
     "Resident memory size of the service process, in bytes.", 0},
    {"process.open_handles", "process_open_fds", G_,
     "Open file descriptors (Windows: open handles) of the service process.", 0},
/* clang-format off */
#define SBCTL_COUNTER(field, name, metric, per_upstream, help)                         \
  {"counters." name, metric, C_, help, per_upstream},
    SB__COUNTERS(SBCTL_COUNTER)
#undef SBCTL_COUNTER
#define SBCTL_FAMILY(family, metric, help) {"counters." family, metric, C_, help, 0},
    SB__COUNTER_FAMILIES(SBCTL_FAMILY)
#undef SBCTL_FAMILY
    /* clang-format on */
    {"archive.bytes", NULL, G_, "Bytes in the archive directory's stream files.", 0},
    {"archive.files", NULL, G_, "Files in the archive directory (.log and .json).", 0},
    {"archive.closed_streams", NULL, G_,
     "Closed streams in the archive, which retention may delete.", 0},
    {"archive.max_bytes", NULL, G_,
     "The archive's size limit for retention (archive_max_bytes; 0: none).", 0},
    {"archive.max_age_s", "streambroker_archive_max_age_seconds", G_,
     "The archive's age limit for retention (archive_max_age; 0: none).", 0},
    {"archive.retention_deleted_streams",
     "streambroker_archive_retention_deleted_streams_total", C_,
     "Closed streams deleted by retention.", 0},
    /* The same figures as the counters archive_retention_files and _bytes. */
    {"archive.retention_deleted_files", "", NULL, "", 0},
    {"archive.retention_deleted_bytes", "", NULL, "", 0},
    {"archive.writable", NULL, G_,
     "1 while no stream's archive files fail to be written, else 0.", 0},
    {"archive.streams_cannot_write", NULL, G_,
     "Streams whose archive files cannot be written now (retrying).", 0},
    {"archive.streams_waiting", NULL, G_,
     "Streams with data in the spool waiting for the archive.", 0},
    {"archive.bytes_waiting", NULL, G_, "Bytes in the spool waiting for the archive.",
     0},
    {"replay_memory.bytes", NULL, G_,
     "Bytes of replay memory in use: windows, and data being spilled or spooled.", 0},
    {"replay_memory.windows_bytes", NULL, G_,
     "Bytes held in the streams' replay windows.", 0},
    {"replay_memory.being_spilled_bytes", NULL, G_,
     "Bytes of replay windows being written to the spool.", 0},
    {"replay_memory.being_spooled_bytes", NULL, G_,
     "Bytes read from clients being written to the spool.", 0},
    {"replay_memory.read_back_bytes", NULL, G_,
     "Bytes read back from the spool to be sent again.", 0},
    {"replay_memory.clients_held", NULL, G_,
     "1 while live streams' clients are held because replay memory is used up.", 0},
    {"replay_memory.max_bytes", NULL, G_,
     "The replay memory budget (replay_memory_max).", 0},
    {"replay_memory.peak_bytes", NULL, G_, "The most replay memory used since start.",
     0},
    {"spool.bytes", NULL, G_, "Data bytes held in the spool.", 0},
    {"spool.chunks", NULL, G_, "Chunks held in the spool.", 0},
    {"spool.max_bytes", NULL, G_, "The spool's cap (spool_max_bytes).", 0},
    {"spool.oldest_unsent_age_s", "streambroker_spool_oldest_unsent_age_seconds", G_,
     "Age of the oldest data in the spool not yet sent upstream; 0: none.", 0},
    {"spool.commits", "streambroker_spool_commits_total", C_,
     "Spool transactions committed.", 0},
    {"spool.transaction_errors", "streambroker_spool_transaction_errors_total", C_,
     "Spool transactions that failed (disk full, I/O errors).", 0},
    {"spool.moved_aside", "streambroker_spool_moved_aside_total", C_,
     "Damaged or foreign spool databases moved aside at start.", 0},
    {"spool.dropped_bytes", "streambroker_spool_dropped_bytes_total", C_,
     "Bytes dropped from the spool by drop-oldest.", 0},
    {"spool.refused_bytes", "streambroker_spool_refused_bytes_total", C_,
     "Bytes the spool refused (cap or full disk).", 0},
    {"spool.corrupt_chunks", "streambroker_spool_corrupt_chunks_total", C_,
     "Spool chunks that failed their checksum (never forwarded).", 0},
    {"spool.corrupt_bytes", "streambroker_spool_corrupt_bytes_total", C_,
     "Bytes in spool chunks that failed their checksum.", 0},
    {"spool.pending_deletes", NULL, G_,
     "Streams whose delivered data waits to be deleted from the spool (retried).", 0},
};
#undef C_
#undef G_

static const sbctl_metric_t* find_known(const char* path) {
  size_t i;
  for (i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
    if (strcmp(known[i].path, path) == 0)
      return &known[i];
  }
  return NULL;
}

/* Appends s to a metric name, as [a-zA-Z0-9_] (anything else becomes '_'). */
static void name_append(char* out, size_t size, const char* s) {
  size_t o = strlen(out);
  for (; *s && o + 1 < size; s++) {
    char c = *s;
    out[o++] = ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                (c >= '0' && c <= '9') || c == '_')
                   ? c
                   : '_';
  }
  out[o] = '\0';
}

/* A label value: backslash, double quote and line feed escaped. */
static void print_label_value(const char* s) {
  for (; *s; s++) {
    if (*s == '\\' || *s == '"')
      printf("\\%c", *s);
    else if (*s == '\n')
      printf("\\n");
    else
      putchar(*s);
  }
}

/* Help text on one line, with backslash and line feed escaped. */
static void print_help(const char* name, const char* help) {
  printf("# HELP %s ", name);
  for (; *help; help++) {
    if (*help == '\\')
      printf("\\\\");
    else if (*help == '\n')
      printf("\\n");
    else
      putchar(*help);
  }
  printf("\n");
}

static void print_value(double v) {
  if (v == (double)(long long)v && v < 9e15 && v > -9e15)
    printf("%lld\n", (long long)v);
  else
    printf("%.15g\n", v);
}

/* A sample's name and labels, and the space before its value: upstream="ADDR" and
 * reason="R", each when given. */
static void print_sample_name(const char* name, const char* upstream,
                              const char* reason) {
  if (upstream == NULL && reason == NULL) {
    printf("%s ", name);
    return;
  }
  printf("%s{", name);
  if (upstream != NULL) {
    printf("upstream=\"");
    print_label_value(upstream);
    printf("\"%s", reason != NULL ? "," : "");
  }
  if (reason != NULL) {
    printf("reason=\"");
    print_label_value(reason);
    printf("\"");
  }
  printf("} ");
}

/* One family: its HELP and TYPE, then its samples (one per member of an object of
 * numbers, labelled reason="MEMBER", or the one number). upstream: the address the
 * service forwards to, or NULL. */
static void print_family(const char* path, const char* prefix, const char* field,
                         const cJSON* v, int in_counters, const char* upstream) {
  const sbctl_metric_t* k = find_known(path);
  char name[256] = "";
  char fallback[300];
  const char* type;
  const cJSON* e;
  if (k != NULL && k->name != NULL && k->name[0] == '\0')
    return;
  if (k != NULL && k->name != NULL) {
    name_append(name, sizeof(name), k->name);
  } else {
    name_append(name, sizeof(name), "streambroker_");
    if (prefix != NULL) {
      name_append(name, sizeof(name), prefix);
      name_append(name, sizeof(name), "_");
    }
    name_append(name, sizeof(name), field);
    if (in_counters)
      name_append(name, sizeof(name), "_total");
  }
  type = k != NULL && k->type != NULL ? k->type : in_counters ? "counter" : "gauge";
  if (k == NULL || !k->per_upstream)
    upstream = NULL;
  snprintf(fallback, sizeof(fallback),
           "The status field %s (this sbctl is older than the service and does not "
           "describe it).",
           path);
  print_help(name, k != NULL ? k->help : fallback);
  printf("# TYPE %s %s\n", name, type);
  if (cJSON_IsObject(v)) {
    cJSON_ArrayForEach(e, v) {
      if (!cJSON_IsNumber(e))
        continue;
      print_sample_name(name, upstream, e->string);
      print_value(e->valuedouble);
    }
  } else {
    print_sample_name(name, upstream, NULL);
    print_value(cJSON_IsBool(v) ? (cJSON_IsTrue(v) ? 1 : 0) : v->valuedouble);
  }
}

/* Whether o is an object with nothing but numbers (bad_handshakes, say, which is
 * empty before a first error on an older service). */
static int numbers_only(const cJSON* o) {
  const cJSON* e;
  if (!cJSON_IsObject(o))
    return 0;
  cJSON_ArrayForEach(e, o) {
    if (!cJSON_IsNumber(e))
      return 0;
  }
  return 1;
}

void sb__sbctl_metrics(const cJSON* r) {
  const cJSON *e, *m;
  const cJSON* up = cJSON_GetObjectItemCaseSensitive(r, "upstream");
  const char* upstream = cJSON_IsString(up) ? up->valuestring : NULL;
  char path[512];
  int labels = 0;
  print_help("streambroker_build_info",
             "The service's version (value 1), as Prometheus build_info metrics go.");
  printf("# TYPE streambroker_build_info gauge\nstreambroker_build_info{version=\"");
  print_label_value(str(r, "version"));
  printf("\"} 1\n");
  /* The strings: one info sample whose labels carry them. */
  print_help("streambroker_info",
             "The service's version, mode and addresses as labels (value 1).");
  printf("# TYPE streambroker_info gauge\nstreambroker_info{");
  cJSON_ArrayForEach(e, r) {
    char label[128] = "";
    if (!cJSON_IsString(e))
      continue;
    name_append(label, sizeof(label), e->string);
    printf("%s%s=\"", labels++ ? "," : "", label);
    print_label_value(e->valuestring);
    printf("\"");
  }
  printf("} 1\n");
  cJSON_ArrayForEach(e, r) {
    if (cJSON_IsNumber(e) || cJSON_IsBool(e)) {
      print_family(e->string, NULL, e->string, e, 0, upstream);
    } else if (cJSON_IsObject(e)) {
      int in_counters = strcmp(e->string, "counters") == 0;
      cJSON_ArrayForEach(m, e) {
        snprintf(path, sizeof(path), "%s.%s", e->string, m->string);
        if (cJSON_IsNumber(m) || cJSON_IsBool(m) || (in_counters && numbers_only(m)))
          print_family(path, in_counters ? NULL : e->string, m->string, m, in_counters,
                       upstream);
      }
    }
  }
}
