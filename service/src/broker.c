/* broker.c - the control pipe listener, the stream limits, and an orderly stop. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "streamlist.h"

#define SB__STOP_TIMEOUT_MS 15000

static void on_stopped_check(sb__broker_t* b) {
  if (b->stopping && b->streams == NULL && b->pending_closes == 0 && b->on_stopped) {
    void (*cb)(sb__broker_t*) = b->on_stopped;
    b->on_stopped = NULL;
    uv_timer_stop(&b->stop_timer);
    cb(b);
  }
}

static void on_handle_closed(uv_handle_t* h) {
  sb__broker_t* b = h->data;
  b->pending_closes--;
  on_stopped_check(b);
}

static void on_listener_closed(void* arg) {
  sb__broker_t* b = arg;
  b->pending_closes--;
  on_stopped_check(b);
}

/* Refuses a connection that a limit does not admit: accepted, logged, closed. */
static void on_refused_closed(uv_handle_t* h) {
  free(h);
}

uint64_t sb__broker_client_streams(sb__broker_t* b, int64_t pid) {
  uint64_t n = 0;
  sb__stream_t* s;
  if (pid < 0)
    return 0;
  for (s = b->streams; s; s = s->next)
    n += s->peer_pid == pid;
  return n;
}

/* A user's warning bucket (sb__broker_client_log_ok). */
typedef struct sb__client_log_s {
  struct sb__client_log_s* next;
  double tokens;
  uint64_t refilled;   /* uv_now of the last refill */
  uint64_t suppressed; /* held back since this user's last warning */
  char user[192];
} sb__client_log_t;

/* The buckets of users not heard from in a while are forgotten, so that the list
 * stays as short as the users currently misbehaving. */
#define SB__CLIENT_LOG_MAX 256

int sb__broker_client_log_ok(sb__broker_t* b, const char* user) {
  sb__client_log_t **pp, *e, *oldest = NULL;
  uint64_t now = uv_now(b->loop);
  size_t n = 0;
  if (user == NULL)
    user = "";
  for (pp = &b->client_logs; (e = *pp) != NULL; pp = &e->next, n++) {
    if (strcmp(e->user, user) == 0)
      break;
    if (oldest == NULL || e->refilled < oldest->refilled)
      oldest = e;
  }
  if (e == NULL) {
    if (n >= SB__CLIENT_LOG_MAX && oldest != NULL && oldest->suppressed == 0) {
      e = oldest; /* reused: its user had nothing held back */
    } else {
      e = sb__xcalloc(1, sizeof(*e));
      e->next = b->client_logs;
      b->client_logs = e;
    }
    snprintf(e->user, sizeof(e->user), "%s", user);
    e->tokens = SB__CLIENT_LOG_BURST;
    e->refilled = now;
    e->suppressed = 0;
  }
  e->tokens += (double)(now - e->refilled) / SB__CLIENT_LOG_REFILL_MS;
  e->refilled = now;
  if (e->tokens > SB__CLIENT_LOG_BURST)
    e->tokens = SB__CLIENT_LOG_BURST;
  if (e->tokens < 1) {
    e->suppressed++;
    b->counters.log_suppressed++;
    return 0;
  }
  e->tokens -= 1;
  if (e->suppressed > 0) {
    SB_LOG_W("listener",
             "suppressed %llu warnings caused by %s: they came faster than %d a "
             "second (counter log_suppressed)",
             (unsigned long long)e->suppressed, user[0] ? user : "an unknown user",
             1000 / SB__CLIENT_LOG_REFILL_MS);
    e->suppressed = 0;
  }
  return 1;
}

/* Says what the buckets still hold back, at the stop. */
static void client_logs_free(sb__broker_t* b) {
  sb__client_log_t* e;
  while ((e = b->client_logs) != NULL) {
    b->client_logs = e->next;
    if (e->suppressed > 0)
      SB_LOG_W("listener",
               "suppressed %llu warnings caused by %s (counter "
               "log_suppressed)",
               (unsigned long long)e->suppressed,
               e->user[0] ? e->user : "an unknown user");
    free(e);
  }
}

/* Connections of a user still attached (in their handshake, or streaming), and of
 * those, the ones in their handshake. */
static void user_counts(sb__broker_t* b, const char* user, uint64_t* attached,
                        uint64_t* handshakes) {
  sb__stream_t* s;
  *attached = *handshakes = 0;
  for (s = b->streams; s; s = s->next) {
    if (s->client_eof || strcmp(s->peer_user, user) != 0)
      continue;
    (*attached)++;
    *handshakes += !s->handshaken;
  }
}

/*
 * Why a limit refuses a new connection of peer, or NULL. A connection in its
 * handshake counts against max_handshakes and, until it is done, against its user's
 * and its process's streams (so that a stream never has to be refused after its
 * handshake, when the client may have nothing left unread to be told by);
 * max_handshakes keeps a flood of silent connections from taking more than that many of
 * max_streams. The last stream_reserve streams and hs_reserve handshakes are for
 * privileged peers only, who are not limited per user either: one user cannot lock out
 * root.
 */
static const char* admission_refusal(sb__broker_t* b, const sb__peer_t* peer,
                                     uint64_t** counter) {
  uint64_t attached = b->nstreams - b->ndetached, user_attached = 0, user_hs = 0;
  int priv = peer->privileged;
  *counter = &b->counters.refused_limit;
  if (b->stopping)
    return "the service is stopping";
  if (attached >= b->cfg.max_streams)
    return "max_streams reached";
  if (!priv && attached >= b->cfg.max_streams - b->stream_reserve)
    return "max_streams reached (the rest is reserved for root and the service's "
           "group)";
  *counter = &b->counters.refused_handshakes;
  if (b->nhandshakes >= b->cfg.max_handshakes)
    return "max_handshakes reached";
  if (!priv && b->nhandshakes >= b->cfg.max_handshakes - b->hs_reserve)
    return "max_handshakes reached (the rest is reserved for root and the service's "
           "group)";
  /* A peer of unknown user (Windows: its process already gone) is limited by the
   * totals only: it cannot be told from another. */
  if (!priv && peer->user[0] != '\0') {
    user_counts(b, peer->user, &user_attached, &user_hs);
    if (user_hs >= b->hs_per_user)
      return "its user's share of max_handshakes reached";
    *counter = &b->counters.refused_user;
    if (user_attached >= b->per_user)
      return "max_streams_per_user reached";
  }
  *counter = &b->counters.refused_limit;
  if (sb__broker_client_streams(b, peer->pid) >= b->cfg.max_streams_per_client)
    return "max_streams_per_client reached";
  return NULL;
}

/* Refuses an accepted connection: closed at once, before anything is read, so that a
 * client that wrote finds its connection reset (Linux: the kernel resets a socket
 * closed with unread data; Windows: its flush fails), not ended cleanly. */
static void refuse(sb__broker_t* b, sb__stream_t* s, const sb__peer_t* peer,
                   const char* why) {
  SB_LOG_CW(b, peer->user, "listener", "refused a connection from pid %lld (%s): %s",
            (long long)peer->pid, peer->user[0] ? peer->user : "unknown user", why);
  uv_close((uv_handle_t*)&s->client, on_refused_closed);
}

/* A connection waits on the control pipe (the listener logged and counted any it
 * could not hand over). */
static void on_connection(sb__listener_t* l, void* arg) {
  sb__broker_t* b = arg;
  sb__stream_t* s;
  sb__peer_t peer;
  const char* why_limit;
  uint64_t* counter;
  char why[512];
  s = sb__xcalloc(1, sizeof(*s));
  uv_pipe_init(b->loop, &s->client, 0);
  if (sb__listener_accept(l, &s->client) != 0) {
    uv_close((uv_handle_t*)&s->client, on_refused_closed);
    return;
  }
  sb__peer_credentials(&s->client, &peer);
  if ((why_limit = admission_refusal(b, &peer, &counter)) != NULL) {
    (*counter)++;
    refuse(b, s, &peer, why_limit);
    return;
  }
  if (b->cfg.allowed_groups && b->cfg.allowed_groups[0] &&
      !sb__peer_allowed(&peer, b->cfg.allowed_groups, why, sizeof(why))) {
    b->counters.refused_group++;
    refuse(b, s, &peer, why);
    return;
  }
  s->peer_pid = peer.pid;
  s->peer_uid = peer.uid;
  s->peer_gid = peer.gid;
  snprintf(s->peer_user, sizeof(s->peer_user), "%s", peer.user);
  s->peer_privileged = peer.privileged;
  s->broker = b;
  s->id = ++b->next_id;
  sb__streamlist_add(b, s);
  b->nhandshakes++;
  sb__stream_start(b, s);
}

static void on_stream_gone(sb__broker_t* b, sb__stream_t* s) {
  sb__streamlist_remove(b, s);
  if (s->client_eof)
    b->ndetached--;
  on_stopped_check(b);
}

/* The upstream's pipe appeared: streams waiting in backoff dial now, so the spool
 * drains at once instead of after the next backoff step. */
static void on_upstream_appeared(void* arg) {
  sb__broker_t* b = arg;
  sb__stream_t* s;
  int n = 0;
  b->upstream_epoch++; /* a restart: connections that ended at once were not refused */
  for (s = b->streams; s; s = s->next) {
    if (s->sink != NULL) {
      sb__upstream_kick(s->sink);
      n++;
    }
  }
  SB_LOG_D("upstream", "the upstream %s appeared: %d streams dial now", b->cfg.upstream,
           n);
}

/* The upstream address changed (a reload): the watch follows the new address, and
 * streams waiting in backoff dial it now; connected ones stay on the old upstream
 * until their connection ends. */
static void broker_upstream_changed(sb__broker_t* b) {
  if (b->stopping || b->cfg.upstream == NULL)
    return;
  sb__upstream_watch_stop(b->upstream_watch);
  b->upstream_watch =
      sb__upstream_watch_start(b->loop, b->cfg.upstream, on_upstream_appeared, b);
  SB_LOG_I("upstream",
           "upstream is now %s: streams connected to the old one stay there until "
           "their connection ends",
           b->cfg.upstream);
  on_upstream_appeared(b);
}

static void on_signal(uv_signal_t* sig, int signum) {
  sb__broker_t* b = sig->data;
  SB_LOG_I("broker", "signal %d: stopping", signum);
  sb__broker_stop(b);
}

static void on_stop_async(uv_async_t* a) {
  sb__broker_stop(a->data);
}

static void on_stop_timeout(uv_timer_t* t) {
  sb__broker_t* b = t->data;
  sb__stream_t* s;
  for (s = b->streams; s; s = s->next)
    SB_LOG_E("broker", "stream %llu \"%s\" still open at shutdown: %llu bytes read",
             (unsigned long long)s->id, s->props.name ? s->props.name : "(handshake)",
             (unsigned long long)s->bytes);
  SB_LOG_E("broker", "stop timed out after %d ms with %llu streams open",
           SB__STOP_TIMEOUT_MS, (unsigned long long)b->nstreams);
  if (b->on_stopped) {
    void (*cb)(sb__broker_t*) = b->on_stopped;
    b->on_stopped = NULL;
    cb(b);
  }
}

/*
 * One service per data directory, checked before anything else: a second instance
 * (an administrator's console beside the service) never probes the control pipe, never
 * opens the spool the first one writes, and says who holds the directory.
 */
static int broker_lock(sb__broker_t* b) {
  char holder[512];
  char who[700];
  int r;
  if ((r = sb__mkdir_p(b->cfg.data_dir)) != 0) {
    snprintf(b->start_error, sizeof(b->start_error), "data_dir \"%s\": %s",
             b->cfg.data_dir, sb_strerror(r));
    SB_LOG_E("broker", "%s", b->start_error);
    return r;
  }
  if ((r = sb__path_check_private("data_dir", b->cfg.data_dir, b->start_error,
                                  sizeof(b->start_error))) != 0) {
    SB_LOG_E("broker", "%s", b->start_error);
    return r;
  }
  snprintf(who, sizeof(who), "streambrokerd %s %s, serving %s", SB_VERSION_STRING,
           b->role ? b->role : "in a console", b->cfg.control_pipe);
  r = sb__lock_take(b->cfg.data_dir, who, &b->lock, holder, sizeof(holder));
  if (r == SB_EBUSY) {
    snprintf(
        b->start_error, sizeof(b->start_error),
        "data_dir \"%s\" is in use by another streambrokerd (%s); stop it, or give "
        "this one a data_dir of its own",
        b->cfg.data_dir, holder);
    SB_LOG_E("broker", "%s", b->start_error);
  } else if (r != 0) {
    snprintf(b->start_error, sizeof(b->start_error),
             "data_dir \"%s\": cannot take its lock file %s: %s", b->cfg.data_dir,
             SB__LOCK_FILE, sb_strerror(r));
  }
  return r;
}

/* The limits that follow from the config: at start and after each reload. */
static void broker_limits(sb__broker_t* b) {
  const sb__config_t* cfg = &b->cfg;
  b->per_user = cfg->max_streams_per_user ? cfg->max_streams_per_user
                                          : (cfg->max_streams + 3) / 4;
  /* Small limits (tests, tiny machines) keep no reserve: it would be all of them. */
  b->stream_reserve = cfg->max_streams / 16;
  b->hs_reserve = cfg->max_handshakes / 16;
  b->hs_per_user = (cfg->max_handshakes + 3) / 4;
}

static void on_reload_applied(sb__broker_t* b, int upstream_changed) {
  broker_limits(b);
  if (upstream_changed)
    broker_upstream_changed(b);
}

int sb__broker_start(sb__broker_t* b, uv_loop_t* loop, const sb__config_t* cfg) {
  char path[1024];
  const char* test_instances;
  int r, instances = SB__CONTROL_INSTANCES;
  b->loop = loop;
  b->cfg = *cfg;
  /* The mode chooses the streams' sink: forwarded upstream, or archived. */
  b->sink_create = cfg->upstream ? sb__upstream_sink_create : sb__archive_sink_create;
  b->sink_resume = cfg->upstream ? sb__upstream_sink_resume : sb__archive_sink_resume;
  b->stream_gone = on_stream_gone;
  broker_limits(b);
  if ((r = broker_lock(b)) != 0)
    return r;
  if ((r = sb__address_bind_path(cfg->control_pipe, path, sizeof(path))) != 0) {
    SB_LOG_E("listener", "control_pipe \"%s\": %s", cfg->control_pipe, sb_strerror(r));
    return r;
  }
  /* For tests only: fewer instances (Windows) make bursts find every one taken, as
   * libuv's 4 did, so that clients that closed before they were taken are seen. */
  if ((test_instances = getenv("SB_TEST_CONTROL_PIPE_INSTANCES")) != NULL &&
      atoi(test_instances) > 0) {
    instances = atoi(test_instances);
    SB_LOG_W("listener", "SB_TEST_CONTROL_PIPE_INSTANCES: %d (for tests only)",
             instances);
  }
  if ((r = sb__listener_start(&b->listener, loop, path, "control pipe", 0,
                              cfg->control_pipe_sddl, instances, on_connection, b,
                              &b->counters)) != 0)
    return r;
  b->started_ms = uv_now(loop);
  if ((r = sb__admin_start(b)) != 0)
    return r;
  /* Archive mode: the scan finishes what an earlier run left open before any stream
   * (resumed ones included) claims a file. */
  if (cfg->upstream == NULL && (r = sb__archive_open(b)) != 0)
    return r;
  {
    /* The data directory's lock keeps a second instance from getting this far, so
     * it never opens the spool that the first one writes. Archive mode has one too:
     * it holds what the archive cannot write yet. */
    sb__spool_resume_t* resume;
    size_t nresume, i;
    if ((r = sb__spool_open(&b->spool, loop, cfg, &resume, &nresume)) != 0)
      return r;
    for (i = 0; i < nresume; i++)
      sb__stream_resume(b, &resume[i]);
    sb__spool_resume_free(resume, nresume);
  }
  if (cfg->upstream != NULL)
    b->upstream_watch =
        sb__upstream_watch_start(loop, cfg->upstream, on_upstream_appeared, b);

  uv_signal_init(loop, &b->sigint);
  uv_signal_init(loop, &b->sigterm);
  b->sigint.data = b->sigterm.data = b;
  uv_signal_start(&b->sigint, on_signal, SIGINT);
  uv_signal_start(&b->sigterm, on_signal, SIGTERM);
  uv_unref((uv_handle_t*)&b->sigint);
  uv_unref((uv_handle_t*)&b->sigterm);
  uv_async_init(loop, &b->stop_async, on_stop_async);
  b->stop_async.data = b;
  uv_unref((uv_handle_t*)&b->stop_async);
  uv_timer_init(loop, &b->stop_timer);
  b->stop_timer.data = b;
  sb__reload_start(b, on_reload_applied);
  SB_LOG_I("listener", "serving %s (%s)", cfg->control_pipe,
           cfg->upstream ? cfg->upstream : "archive mode");
  return 0;
}

/*
 * Stopping closes the broker's own handles, then asks every stream to finish: a
 * stream stops reading its client and its sink writes out what was read. The last
 * stream gone (or the stop timeout) runs on_stopped.
 */
void sb__broker_stop(sb__broker_t* b) {
  sb__stream_t *s, *next;
  if (b->stopping)
    return;
  b->stopping = 1;
  sb__upstream_watch_stop(b->upstream_watch);
  b->upstream_watch = NULL;
  uv_timer_start(&b->stop_timer, on_stop_timeout, SB__STOP_TIMEOUT_MS, 0);
  uv_unref((uv_handle_t*)&b->stop_timer);
  if (b->listener) {
    b->pending_closes++;
    sb__listener_stop(b->listener, on_listener_closed, b);
    b->listener = NULL;
  }
  if (b->admin) {
    b->pending_closes++;
    sb__listener_stop(b->admin, on_listener_closed, b);
    b->admin = NULL;
  }
  b->pending_closes += 3;
  uv_close((uv_handle_t*)&b->sigint, on_handle_closed);
  uv_close((uv_handle_t*)&b->sigterm, on_handle_closed);
  uv_close((uv_handle_t*)&b->stop_async, on_handle_closed);
  sb__reload_stop(b, on_handle_closed);
  sb__follow_stop_all(b);
  for (s = b->streams; s; s = next) {
    next = s->next;
    /* A connection still in its handshake is a stream the stop refuses, as one that
     * comes during the stop is: counted and logged, never dropped unseen. */
    if (!s->handshaken && !s->client_eof) {
      b->counters.refused_limit++;
      SB_LOG_CW(b, s->peer_user, "listener",
                "connection %llu from pid %lld closed in its handshake (%llu bytes "
                "read): the service is stopping",
                (unsigned long long)s->id, (long long)s->peer_pid,
                (unsigned long long)s->hs.consumed);
    }
    sb__stream_stop(s);
  }
  on_stopped_check(b);
}

/* Closes the stop timer; the last handle, after on_stopped. */
void sb__broker_close(sb__broker_t* b) {
  uv_close((uv_handle_t*)&b->stop_timer, NULL);
  if (b->spool) {
    sb__spool_close(b->spool);
    b->spool = NULL;
  }
  sb__chunk_free(b->spare);
  b->spare = NULL;
  sb__upstream_names_free(b);
  sb__archive_close(b);
  sb__lock_release(b->lock);
  b->lock = NULL;
  client_logs_free(b);
  sb__reload_free(b);
}

/* After a failed sb__broker_start: closes what it had opened, then frees nothing else
 * (the caller frees the broker once the loop has run the closes). */
void sb__broker_abort(sb__broker_t* b) {
  if (b->listener)
    sb__listener_stop(b->listener, NULL, NULL);
  if (b->admin)
    sb__listener_stop(b->admin, NULL, NULL);
  b->listener = b->admin = NULL;
  if (b->spool) {
    sb__spool_close(b->spool);
    b->spool = NULL;
  }
  sb__archive_close(b);
  sb__lock_release(b->lock);
  b->lock = NULL;
  client_logs_free(b);
  sb__reload_free(b);
}
