/*
 * reload.c - the config re-read at run time (SIGHUP on POSIX, which logrotate and
 * systemctl reload send; sbctl reload on both platforms; the Windows service's
 * PARAMCHANGE control). What can change while streams run is applied, the rest is
 * named in the log as needing a restart, and a config that does not load changes
 * nothing: a reload never stops the service.
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "internal.h"

enum { RL_U64, RL_INT, RL_STR };

/* One key: where it lives in sb__config_t, and whether a reload may change it. */
typedef struct {
  const char* key;
  size_t off;
  int kind;
  int live; /* applied at run time; otherwise a change needs a restart */
} rl_key_t;

#define RL_KEY(name, kind, live)                                                       \
  { #name, offsetof(sb__config_t, name), kind, live }

/* Every key of sb__config_t. The live ones are read where they are used (a limit at
 * the next connection, backoff at the next retry, a watermark at the next read, the
 * upstream address at the next dial), so that changing them in b->cfg applies them;
 * the others were copied into objects made at start (the spool, the pipes, the
 * archive's directory). */
static const rl_key_t rl_keys[] = {
    RL_KEY(log_level, RL_INT, 1),
    RL_KEY(log_file, RL_STR, 1),
    RL_KEY(log_max_bytes, RL_U64, 1),
    RL_KEY(log_max_files, RL_U64, 1),
    RL_KEY(archive_max_bytes, RL_U64, 1),
    RL_KEY(archive_max_age, RL_U64, 1),
    RL_KEY(handshake_timeout_ms, RL_U64, 1),
    RL_KEY(max_frame_size, RL_U64, 1),
    RL_KEY(max_datagram_size, RL_U64, 1),
    RL_KEY(max_streams, RL_U64, 1),
    RL_KEY(max_streams_per_client, RL_U64, 1),
    RL_KEY(max_streams_per_user, RL_U64, 1),
    RL_KEY(max_handshakes, RL_U64, 1),
    RL_KEY(handshake_memory_max, RL_U64, 1),
    RL_KEY(backoff_initial_ms, RL_U64, 1),
    RL_KEY(backoff_max_ms, RL_U64, 1),
    RL_KEY(upstream_high_watermark, RL_U64, 1),
    RL_KEY(upstream_max_refusals, RL_U64, 1),
    RL_KEY(upstream_end_timeout_ms, RL_U64, 1),
    RL_KEY(upstream_end_linger_ms, RL_U64, 1),
    RL_KEY(upstream, RL_STR, 1),
    RL_KEY(allowed_groups, RL_STR, 1),
    RL_KEY(control_pipe, RL_STR, 0),
    RL_KEY(admin_pipe, RL_STR, 0),
    RL_KEY(data_dir, RL_STR, 0),
    RL_KEY(archive_dir, RL_STR, 0),
    RL_KEY(reader_group, RL_STR, 0),
    RL_KEY(control_pipe_sddl, RL_STR, 0),
    RL_KEY(durability, RL_INT, 0),
    RL_KEY(synchronous, RL_INT, 0),
    RL_KEY(spool_max_bytes, RL_U64, 0),
    RL_KEY(spool_full_policy, RL_INT, 0),
    RL_KEY(replay_window, RL_U64, 0),
    RL_KEY(replay_memory_max, RL_U64, 0),
    RL_KEY(spool_reserve_bytes, RL_U64, 0),
};
#define RL_NKEYS (sizeof(rl_keys) / sizeof(rl_keys[0]))

static const rl_key_t* rl_find(size_t off) {
  size_t i;
  for (i = 0; i < RL_NKEYS; i++) {
    if (rl_keys[i].off == off)
      return &rl_keys[i];
  }
  abort(); /* a key of the table above */
}

static char** rl_str(sb__config_t* c, const rl_key_t* k) {
  return (char**)((char*)c + k->off);
}

/* NULL and "" are the same: no value. */
static int rl_same(sb__config_t* a, sb__config_t* b, const rl_key_t* k) {
  switch (k->kind) {
  case RL_U64:
    return *(uint64_t*)((char*)a + k->off) == *(uint64_t*)((char*)b + k->off);
  case RL_INT:
    return *(int*)((char*)a + k->off) == *(int*)((char*)b + k->off);
  default: {
    const char* x = *rl_str(a, k);
    const char* y = *rl_str(b, k);
    return strcmp(x ? x : "", y ? y : "") == 0;
  }
  }
}

/* Keeps the running value of a live string key in the new config (a copy: the old
 * config's strings are freed below). */
static void rl_keep_str(sb__config_t* n, sb__config_t* cur, const rl_key_t* k) {
  char** dst = rl_str(n, k);
  const char* v = *rl_str(cur, k);
  free(*dst);
  *dst = v != NULL ? sb__xstrdup(v) : NULL;
}

static void rl_note(cJSON* list, const char* key) {
  if (list != NULL)
    cJSON_AddItemToArray(list, cJSON_CreateString(key));
}

int sb__broker_reload(sb__broker_t* b, void* report, char* err, size_t err_size) {
  sb__config_t* n = sb__xcalloc(1, sizeof(*n));
  sb__config_t* cur = &b->cfg;
  cJSON* applied = NULL;
  cJSON* restart = NULL;
  char list_applied[1024] = "", list_restart[1024] = "";
  const char* origin = b->config_path ? b->config_path : "built-in defaults";
  size_t i;
  int r, up_changed;

  sb__config_defaults(n);
  if (b->config_path != NULL &&
      (r = sb__config_load(n, b->config_path, err, err_size)) != 0) {
    b->reload_failures++;
    SB_LOG_E("config", "reload refused, the running config is kept: %s", err);
    sb__config_free(n);
    free(n);
    return SB_ECONFIG;
  }
  if (report != NULL) {
    applied = cJSON_AddArrayToObject(report, "applied");
    restart = cJSON_AddArrayToObject(report, "restart_needed");
  }
  for (i = 0; i < RL_NKEYS; i++) {
    const rl_key_t* k = &rl_keys[i];
    int live = k->live;
    if (rl_same(cur, n, k)) {
      if (k->kind == RL_STR && k->live)
        rl_keep_str(n, cur, k); /* the same text: keep it, from the new config */
      continue;
    }
    /* Forward and archive mode are different services; a log file that goes back to
     * the platform's place (stderr, or the service log) is chosen at start. */
    if (k->off == offsetof(sb__config_t, upstream) &&
        (cur->upstream == NULL || n->upstream == NULL))
      live = 0;
    if (k->off == offsetof(sb__config_t, log_file) &&
        (n->log_file == NULL || n->log_file[0] == '\0'))
      live = 0;
    if (!live) {
      if (k->kind == RL_STR && k->live)
        rl_keep_str(n, cur, k);
      rl_note(restart, k->key);
      snprintf(list_restart + strlen(list_restart),
               sizeof(list_restart) - strlen(list_restart), "%s%s",
               list_restart[0] ? ", " : "", k->key);
      continue;
    }
    rl_note(applied, k->key);
    snprintf(list_applied + strlen(list_applied),
             sizeof(list_applied) - strlen(list_applied), "%s%s",
             list_applied[0] ? ", " : "", k->key);
  }

  /* The log first: a new file (a changed log_file, or the same path after logrotate
   * moved it) takes the lines below. A file that cannot be opened keeps the old one. */
  sb__log_set_rotation(n->log_max_bytes, n->log_max_files);
  if (n->log_file != NULL && n->log_file[0] != '\0' &&
      (cur->log_file == NULL || strcmp(cur->log_file, n->log_file) != 0)) {
    if ((r = sb__log_open(n->log_file, n->log_level)) != 0) {
      SB_LOG_E("config", "reload: log_file \"%s\": %s; logging on where it was",
               n->log_file, sb_strerror(r));
      rl_keep_str(n, cur, rl_find(offsetof(sb__config_t, log_file)));
      sb__log_reopen(n->log_level);
    }
  } else if ((r = sb__log_reopen(n->log_level)) != 0) {
    SB_LOG_E("config",
             "reload: cannot reopen the log file: %s; logging on to the "
             "file that was open",
             sb_strerror(r));
  }

  up_changed = cur->upstream != NULL && n->upstream != NULL &&
               strcmp(cur->upstream, n->upstream) != 0;
  /* The live keys: every one of them is read from b->cfg where it is used. */
  for (i = 0; i < RL_NKEYS; i++) {
    const rl_key_t* k = &rl_keys[i];
    if (!k->live)
      continue;
    if (k->kind == RL_U64)
      *(uint64_t*)((char*)cur + k->off) = *(uint64_t*)((char*)n + k->off);
    else if (k->kind == RL_INT)
      *(int*)((char*)cur + k->off) = *(int*)((char*)n + k->off);
    else
      *rl_str(cur, k) = *rl_str(n, k); /* owned by n, kept in b->reloaded */
  }
  b->reload_applied(b, up_changed);
  sb__archive_reconfigure(b);
  if (b->reloaded != NULL) {
    sb__config_free(b->reloaded);
    free(b->reloaded);
  }
  b->reloaded = n;
  b->reloads++;
  SB_LOG_I("config", "reloaded %s: %s changed", origin,
           list_applied[0] ? list_applied : "nothing");
  if (list_restart[0] != '\0')
    SB_LOG_W("config",
             "reload: %s changed in %s but only take effect at a restart; the "
             "running values are kept",
             list_restart, origin);
  return 0;
}

static void on_reload_signal(uv_signal_t* sig, int signum) {
  sb__broker_t* b = sig->data;
  char err[512];
  SB_LOG_I("config", "signal %d: reloading", signum);
  sb__broker_reload(b, NULL, err, sizeof(err));
}

static void on_reload_async(uv_async_t* a) {
  sb__broker_t* b = a->data;
  char err[512];
  SB_LOG_I("config", "reload asked by the service manager");
  sb__broker_reload(b, NULL, err, sizeof(err));
}

void sb__reload_start(sb__broker_t* b,
                      void (*applied)(sb__broker_t* b, int upstream_changed)) {
  b->reload_applied = applied;
  int signum = sb__reload_signal();
  uv_async_init(b->loop, &b->reload_async, on_reload_async);
  b->reload_async.data = b;
  uv_unref((uv_handle_t*)&b->reload_async);
  uv_signal_init(b->loop, &b->sighup);
  b->sighup.data = b;
  if (signum != 0)
    uv_signal_start(&b->sighup, on_reload_signal, signum);
  uv_unref((uv_handle_t*)&b->sighup);
}

void sb__reload_stop(sb__broker_t* b, uv_close_cb done) {
  b->pending_closes += 2;
  uv_close((uv_handle_t*)&b->sighup, done);
  uv_close((uv_handle_t*)&b->reload_async, done);
}

void sb__reload_free(sb__broker_t* b) {
  if (b->reloaded == NULL)
    return;
  sb__config_free(b->reloaded);
  free(b->reloaded);
  b->reloaded = NULL;
}
