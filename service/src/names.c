/*
 * names.c - the names sent upstream: the set of stream names this service (and, from
 * the spool, its earlier runs) sent to the upstream, recorded in the spool, and the
 * choice of a stream's next name (the original, or the first free NAME:N). Owns the
 * broker's sent_names. Loop thread.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "names.h"
#include "strset.h"

/* The names sent upstream are remembered up to this many, then forgotten (a name
 * sent again is then refused by a butler, and renamed through the refusal path). */
#define SB__NAMES_MAX (1u << 20)

/* The set of names sent to the upstream, by this run and (from the spool's table
 * sent_names) by earlier runs, so that a service restarted under a butler that lives on
 * goes on with names it has not seen (loop thread), emptied at SB__NAMES_MAX. Each name
 * added is also written to the spool. */
struct sb__names_s {
  sb__strset_t set;
  int loaded;        /* the spool's names were taken */
  sb__buf_t unsaved; /* names to record, each after a '\n' (a name has none) */
  int saving;        /* a job records names now: the others wait for it, so that a
                        burst of new streams costs one commit, not one each */
};

static int names_has(struct sb__names_s* names, const char* name) {
  return names && sb__strset_find(&names->set, name) != NULL;
}

static void names_insert(sb__broker_t* b, const char* name, int record);

static void names_save(sb__broker_t* b);

static void on_name_recorded(sb__spool_job_t* j) {
  sb__broker_t* b = j->data;
  if (j->status != 0)
    SB_LOG_W("spool",
             "cannot record %zu stream names as sent upstream: %s; a service started "
             "again may send them again (the upstream's refusal moves them on)",
             (size_t)j->seq, sb_strerror(j->status));
  free(j->props);
  free(j);
  /* Stopping, names are handed over at once (the spool runs what was queued before
   * it closes, and nothing after). */
  if (b->sent_names != NULL && !b->stopping) {
    b->sent_names->saving = 0;
    names_save(b);
  }
}

/* Hands the names not recorded yet to the spool, in one job, unless one is out (but
 * at once while the service stops). */
static void names_save(sb__broker_t* b) {
  struct sb__names_s* set = b->sent_names;
  sb__spool_job_t* j;
  size_t i, n = 0;
  if ((set->saving && !b->stopping) || set->unsaved.len == 0 || b->spool == NULL)
    return;
  for (i = 0; i < set->unsaved.len; i++)
    n += set->unsaved.data[i] == '\n';
  sb__buf_putc(&set->unsaved, '\0');
  j = sb__xcalloc(1, sizeof(*j));
  j->op = SB__SPOOL_NAME;
  j->props = sb__xstrdup(set->unsaved.data + 1); /* past the first '\n' */
  j->seq = n;
  j->data = b;
  j->done = on_name_recorded;
  set->unsaved.len = 0;
  set->saving = 1;
  sb__spool_submit(b->spool, j);
}

/* The set, with the names of earlier runs in it from the first use on. */
static struct sb__names_s* names_get(sb__broker_t* b) {
  struct sb__names_s* set = b->sent_names;
  if (set == NULL)
    set = b->sent_names = sb__xcalloc(1, sizeof(*set));
  if (!set->loaded && b->spool != NULL) {
    char** names;
    size_t n, i;
    set->loaded = 1;
    sb__spool_names_take(b->spool, &names, &n);
    for (i = 0; i < n; i++) {
      names_insert(b, names[i], 0);
      free(names[i]);
    }
    free(names);
    if (n > 0)
      SB_LOG_I("upstream",
               "%zu stream names sent to %s before: streams go on with names it has "
               "not seen",
               n, b->cfg.upstream);
  }
  return set;
}

static void names_insert(sb__broker_t* b, const char* name, int record) {
  struct sb__names_s* names = b->sent_names;
  if (sb__strset_count(&names->set) >= SB__NAMES_MAX) {
    SB_LOG_I("upstream", "forgetting the %zu stream names sent upstream so far",
             sb__strset_count(&names->set));
    sb__strset_clear(&names->set);
  }
  sb__strset_add(&names->set, name, NULL);
  if (record && b->spool != NULL) {
    sb__buf_putc(&names->unsaved, '\n');
    sb__buf_append(&names->unsaved, name, strlen(name));
    names_save(b);
  }
}

static void names_add(sb__broker_t* b, const char* name) {
  names_get(b);
  names_insert(b, name, 1);
}

void sb__names_free(sb__broker_t* b) {
  if (b->sent_names) {
    sb__strset_clear(&b->sent_names->set);
    sb__buf_free(&b->sent_names->unsaved);
    free(b->sent_names);
    b->sent_names = NULL;
  }
}

/* NAME:N, shortened so that it stays within the protocol's 4096 bytes: the cut never
 * leaves a '/' before the suffix. Returns a new string. */
static char* name_with_suffix(const char* name, unsigned n) {
  char suffix[16];
  size_t len = strlen(name), sl = (size_t)snprintf(suffix, sizeof(suffix), ":%u", n);
  char* out;
  if (len + sl > SB_MAX_NAME_LEN)
    len = SB_MAX_NAME_LEN - sl;
  while (len > 1 && name[len - 1] == '/')
    len--;
  out = sb__xmalloc(len + sl + 1);
  memcpy(out, name, len);
  memcpy(out + len, suffix, sl + 1);
  return out;
}

/* The name for a stream's next connection: the original if this service never sent
 * it, else the first NAME:N not sent yet, N past the last one the stream used. */
char* sb__names_pick(sb__broker_t* b, const char* orig, int renamed, unsigned* name_n) {
  char* name = NULL;
  if (!renamed && !names_has(names_get(b), orig)) {
    name = sb__xstrdup(orig);
  } else {
    unsigned n = *name_n < 2 ? 2 : *name_n + 1;
    for (;; n++) {
      name = name_with_suffix(orig, n);
      if (!names_has(b->sent_names, name))
        break;
      free(name);
    }
    *name_n = n;
  }
  names_add(b, name);
  return name;
}
