/* worker.c - one plugin instance in its own process. */
#include "worker.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "group.h"
#include "host_api.h"
#include "sublock.h"
#include "subscription.h"
#include "viewdb.h"

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
  (void)sig;
  stop_requested = 1;
}

static void install_signals(void)
{
  struct sigaction sa;

  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop;       /* no SA_RESTART: sleeps wake up */
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sa.sa_handler = SIG_IGN;
  sigaction(SIGHUP, &sa, NULL);
  sigaction(SIGPIPE, &sa, NULL);
}

static void write_all(int fd, const char *p, size_t n)
{
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return;
    p += w;
    n -= (size_t)w;
  }
}

int chd_worker_refuse(int ready_fd, const char *instance, const char *why)
{
  chd_log_fields f = { instance, NULL, NULL, NULL };

  chd_log(CH_LOG_ERROR, &f, "%s", why);
  if (ready_fd >= 0) {
    write_all(ready_fd, "F", 1);
    write_all(ready_fd, why, strlen(why));
  }
  return CHD_EXIT_CONFIG;
}

int chd_worker_handshake(int ready_fd, int go_fd, const volatile sig_atomic_t *stop)
{
  char c = 0;
  ssize_t r;

  if (ready_fd < 0)
    return 0;
  write_all(ready_fd, "R", 1);
  close(ready_fd);
  /* poll in slices: a SIGTERM that came before we block must count too */
  for (r = -1; !*stop;) {
    struct pollfd p = { go_fd, POLLIN, 0 };
    if (poll(&p, 1, 100) > 0) {
      r = read(go_fd, &c, 1);
      break;
    }
  }
  close(go_fd);
  return r == 1 && c == 'G' && !*stop ? 0 : -1;
}

/* Tell the supervisor we cannot run, and why. */
static int refuse(const chd_worker_args *a, const char *why)
{
  return chd_worker_refuse(a->ready_fd, a->inst->name, why);
}

/* The replica for category reads ([host] message_store_read), or NULL. */
static int connect_read(const chd_worker_args *a, const char *app_name, chd_mdb **out,
                        char *err, size_t errlen)
{
  chd_log_fields f = { a->inst->name, NULL, NULL, NULL };
  chd_store_rc rc;

  *out = NULL;
  if (!a->cfg->message_store_read)
    return 0;
  if (!(*out = chd_mdb_new(a->cfg->message_store_read))) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  chd_mdb_set_interrupt(*out, &stop_requested);
  chd_mdb_set_app_name(*out, app_name);
  rc = chd_mdb_connect(*out);
  if (rc == CHD_STORE_DISCONNECTED) {
    chd_log(CH_LOG_WARN, &f, "message_store_read: %s; retrying", chd_mdb_error(*out));
    rc = chd_mdb_reconnect(*out, -1);
  }
  if (rc != CHD_STORE_OK) {
    snprintf(err, errlen, "message_store_read: %s", chd_mdb_error(*out));
    return -1;
  }
  chd_log(CH_LOG_INFO, &f, "category reads go to %s (message_store_read)",
          chd_mdb_describe(*out));
  return 0;
}

/*
 * What a session of the worker runs first: `then` (or nothing), after, with
 * group_member = auto, the lease's session setting (chd_lease_session_sql:
 * the server ends a session of a paused worker that holds row locks).
 * Returns a malloc'd string, NULL when out of memory.
 */
static char *session_sql(const chd_instance_config *inst, const char *then)
{
  char lease[128] = "";
  size_t size;
  char *sql;

  if (inst->group_auto)
    chd_lease_session_sql(inst->lease_timeout_ms, lease, sizeof lease);
  size = sizeof lease + 2 + (then ? strlen(then) : 0);
  if (!(sql = malloc(size)))
    return NULL;
  snprintf(sql, size, "%s%s%s", lease, lease[0] && then ? "; " : "", then ? then : "");
  return sql;
}

/* app_name: the sessions' application_name, or NULL for the default. */
static int connect_store(ch_ctx *ctx, const chd_worker_args *a, const char *app_name, char *err,
                         size_t errlen)
{
  chd_log_fields f = { a->inst->name, NULL, NULL, NULL };
  chd_store_rc rc;

  ctx->mdb = chd_mdb_new(a->cfg->message_store);
  if (!ctx->mdb) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  chd_mdb_set_interrupt(ctx->mdb, &stop_requested);
  chd_mdb_set_app_name(ctx->mdb, app_name);
  {
    /* hold the subscriber locks on every session: `comphost rebuild` waits;
     * in a shared group, the server ends a session left in a transaction
     * (paused) for longer than a lease, so that its row locks go */
    char *lock_sql = chd_sublock_session_sql(a->inst, a->plugin);
    char *sql = lock_sql ? session_sql(a->inst, lock_sql) : NULL;
    int set = sql ? chd_mdb_set_session_sql(ctx->mdb, sql) : -1;
    free(lock_sql);
    free(sql);
    if (set != 0) {
      snprintf(err, errlen, "out of memory");
      return -1;
    }
  }
  rc = chd_mdb_connect(ctx->mdb);
  if (rc == CHD_STORE_DISCONNECTED) {
    chd_log(CH_LOG_WARN, &f, "%s; retrying", chd_mdb_error(ctx->mdb));
    rc = chd_mdb_reconnect(ctx->mdb, -1);
  }
  if (rc != CHD_STORE_OK) {
    snprintf(err, errlen, "%s", chd_mdb_error(ctx->mdb));
    return -1;
  }
  if (a->cfg->view_data) {
    chd_position_store ps;
    chd_store_rc vrc;

    if (!(ctx->view = chd_viewdb_new(a->cfg->view_data))) {
      snprintf(err, errlen, "out of memory");
      return -1;
    }
    chd_viewdb_set_interrupt(ctx->view, &stop_requested);
    chd_viewdb_set_app_name(ctx->view, app_name);
    if (a->inst->group_auto) {
      char *sql = session_sql(a->inst, NULL);
      int set = sql ? chd_viewdb_set_session_sql(ctx->view, sql) : -1;
      free(sql);
      if (set != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
      }
    }
    vrc = chd_viewdb_ensure(ctx->view);
    if (vrc == CHD_STORE_INTERRUPTED)
      snprintf(err, errlen, "stopped while connecting to the view database");
    else if (vrc == CHD_STORE_OK)
      vrc = chd_viewdb_migrate(ctx->view, a->plugin->desc.name, a->plugin->desc.migrations);
    if (vrc != CHD_STORE_OK) {
      if (vrc != CHD_STORE_INTERRUPTED)
        snprintf(err, errlen, "%s", chd_viewdb_error(ctx->view));
      return -1;
    }
    /* the host's table of positions, whatever this instance's store */
    chd_position_store_init(&ps, CHD_POSITION_VIEW_DATA, a->inst->position_format, ctx->mdb,
                            ctx->view);
    if (chd_position_prepare(&ps) != CHD_STORE_OK) {
      snprintf(err, errlen, "%s", chd_position_error(&ps));
      return -1;
    }
  }
  return 0;
}

/* A subscription that crashed the worker again and again runs up to that
 * message and stops there. */
static void apply_poison(chd_sub *s, const chd_worker_args *a)
{
  int64_t at = a->poisoned ? a->poisoned[s->index] : 0;

  if (at <= 0 || s->position >= at)
    return;
  s->stop_before = at;
  snprintf(s->stop_reason, sizeof s->stop_reason, "%s",
           a->poison_reason ? a->poison_reason : "it crashed the worker repeatedly");
}

/*
 * Listen for writes to each subscription's category (mdb.h: push
 * wake-ups): the plugin's subscriptions, whichever slots of a shared group
 * the worker holds. A subscription that cannot listen still polls.
 */
static void listen_all(ch_ctx *ctx)
{
  const ch_plugin_desc *d = &ctx->plugin->desc;
  size_t n = chd_plugin_subscription_count(ctx->plugin);

  for (size_t i = 0; i < n; i++) {
    if (chd_mdb_listen(ctx->mdb, d->subscriptions[i].stream_name) != CHD_STORE_OK) {
      char id[256];
      chd_log_fields f = { ctx->inst->name, id, NULL, NULL };
      chd_sub_effective_id(&d->subscriptions[i], ctx->inst, id, sizeof id);
      chd_log(CH_LOG_WARN, &f, "cannot listen for writes to %s: %s; it polls every"
              " %" PRId64 " ms", d->subscriptions[i].stream_name, chd_mdb_error(ctx->mdb),
              ctx->inst->poll_interval_ms);
    }
  }
}

/*
 * The worker's loop: read each subscription when it is due; in between,
 * wait on the message store's connection, so that a notification of a
 * write to a subscription's category makes it due at once. Polling stays:
 * a notification that was lost costs at most poll_interval_ms. With a
 * group shared through leases, the subscriptions are its slots, of which
 * only those held run; the leases are looked after first, at each pass (a
 * batch boundary).
 */
static void run_loop(chd_sub *subs, size_t n, ch_ctx *ctx, chd_group *group)
{
  for (size_t i = 0; i < n; i++)
    subs[i].next_poll_ms = 0;
  listen_all(ctx);
  while (!stop_requested) {
    int64_t now = chd_now_ms(), wake = now + 1000;
    bool worked = false;

    chd_status_heartbeat();
    if (group) {
      /* a batch boundary: renew the leases, balance, claim (group.h) */
      chd_group_tick(group);
      now = chd_now_ms();
      if (chd_group_next_ms(group) < wake)
        wake = chd_group_next_ms(group);
    }
    for (size_t i = 0; i < n && !stop_requested; i++) {
      chd_sub *s = &subs[i];
      bool did = false;
      if (s->state != CHD_SUB_RUNNING || (group && !chd_group_valid(group)))
        continue;
      if (chd_mdb_notified(ctx->mdb, s->desc->stream_name))
        for (size_t j = i; j < n; j++)   /* every subscription of that category */
          if (subs[j].state == CHD_SUB_RUNNING && subs[j].desc &&
              !strcmp(subs[j].desc->stream_name, s->desc->stream_name))
            subs[j].next_poll_ms = now;
      if (now >= s->next_poll_ms) {
        if (chd_sub_tick(s, &did) != 0) {
          /* the store went away: reconnect, then read again */
          chd_log_fields f = { ctx->inst->name, s->subscriber_id, NULL, NULL };
          chd_log(CH_LOG_WARN, &f, "reading failed: %s; reconnecting", s->error);
          /* in a group, not for long: the leases need looking after */
          if (chd_mdb_reconnect(ctx->mdb, group ? 1000 : -1) == CHD_STORE_OK)
            chd_log(CH_LOG_INFO, &f, "reconnected to the message store");
          did = false;
        }
        s->next_poll_ms = did ? now : chd_now_ms() + ctx->inst->poll_interval_ms;
        worked = worked || did;
      }
      if (s->next_poll_ms < wake)
        wake = s->next_poll_ms;
    }
    /* while catching up, only take the notifications libpq has read with
     * the answers; when idle, wait for one (a signal ends it early) */
    if (!stop_requested)
      chd_mdb_wait(ctx->mdb, worked ? 0 : wake - chd_now_ms());
  }
}

int chd_worker_run(const chd_worker_args *a)
{
  const ch_plugin_desc *d = &a->plugin->desc;
  size_t n = chd_plugin_subscription_count(a->plugin);
  chd_sub *subs = NULL;
  chd_group *group = NULL;
  chd_mdb *read = NULL;
  chd_sub_pg_arg pg_arg = { NULL, NULL };
  char owner[CHD_LEASE_OWNER_MAX] = "", app_name[CHD_LEASE_OWNER_MAX + 16] = "";
  ch_ctx ctx;
  char err[1400];
  int rc = CHD_EXIT_CONFIG;
  bool inited = false, started = false;

  stop_requested = 0;
  install_signals();
  chd_ctx_init(&ctx, a->cfg, a->inst, a->plugin);
  ctx.stop = &stop_requested;

  if (a->inst->group_auto) {
    /* who holds the leases, also in pg_stat_activity */
    chd_group_owner_id(owner, sizeof owner);
    snprintf(app_name, sizeof app_name, "comphost %s", owner);
  }
  if (connect_store(&ctx, a, app_name[0] ? app_name : NULL, err, sizeof err) != 0 ||
      connect_read(a, app_name[0] ? app_name : NULL, &read, err, sizeof err) != 0) {
    rc = stop_requested ? CHD_EXIT_OK : refuse(a, err);
    goto out;
  }
  pg_arg.read = read;
  if (d->init && d->init(&ctx, &ctx.state) != 0) {
    snprintf(err, sizeof err, "init of plugin %s failed: %s", d->name,
             ctx.error[0] ? ctx.error : "(no reason given)");
    rc = refuse(a, err);
    goto out;
  }
  inited = true;
  if (a->inst->group_auto) {
    /* the slots are claimed once running: none is held yet */
    chd_group_args ga = { owner, read, a->poisoned, a->poisoned_slot, a->poison_reason };
    if (!(group = chd_group_new(&ctx, &ga, err, sizeof err))) {
      rc = refuse(a, err);
      goto out;
    }
    subs = chd_group_subs(group, &n);
  } else {
    subs = calloc(n, sizeof *subs);
    if (!subs) {
      rc = refuse(a, "out of memory");
      goto out;
    }
    for (size_t i = 0; i < n; i++) {
      if (chd_sub_init(&subs[i], &ctx, (int)i, &chd_sub_store_pg, &pg_arg, err, sizeof err)
          != 0) {
        rc = refuse(a, err);
        goto out;
      }
      apply_poison(&subs[i], a);
    }
  }
  /* start() belongs to getting ready: a plugin that cannot start stops the
   * whole host before any message is handled */
  if (d->start && d->start(&ctx, ctx.state) != 0) {
    snprintf(err, sizeof err, "start of plugin %s failed: %s", d->name,
             ctx.error[0] ? ctx.error : "(no reason given)");
    rc = refuse(a, err);
    goto out;
  }
  started = true;
  if (chd_worker_handshake(a->ready_fd, a->go_fd, &stop_requested) != 0) {
    rc = CHD_EXIT_OK;
    goto out;
  }
  for (size_t i = 0; i < n && !group; i++) {
    chd_log_fields f = { a->inst->name, subs[i].subscriber_id, NULL, NULL };
    if (chd_status_sub_of((int)i))
      chd_status_sub_of((int)i)->position = subs[i].position;
    if (subs[i].state == CHD_SUB_RUNNING)
      chd_log(CH_LOG_INFO, &f, "Started %s at global position %" PRId64 " of %s",
              subs[i].subscriber_id, subs[i].position + 1, subs[i].desc->stream_name);
  }

  chd_status_set_state(CHD_WORKER_RUNNING);
  run_loop(subs, n, &ctx, group);
  chd_status_set_state(CHD_WORKER_STOPPING);

  if (group)
    chd_group_leave(group);   /* saves each slot's position and releases it */
  for (size_t i = 0; i < n && !group; i++) {
    chd_log_fields f = { a->inst->name, subs[i].subscriber_id, NULL, NULL };
    if (chd_sub_save_position(&subs[i]) != 0)
      chd_log(CH_LOG_ERROR, &f, "cannot save the position %" PRId64 ": %s",
              subs[i].position, subs[i].error);
    chd_log(CH_LOG_INFO, &f, "Stopped %s at global position %" PRId64,
            subs[i].subscriber_id, subs[i].position);
  }
  rc = CHD_EXIT_OK;

out:
  if (started && d->stop)
    d->stop(&ctx, ctx.state);
  if (inited && d->destroy)
    d->destroy(&ctx, ctx.state);
  if (group) {
    chd_group_free(group);
  } else {
    for (size_t i = 0; subs && i < n; i++)
      chd_sub_release(&subs[i]);
    free(subs);
  }
  chd_mdb_free(ctx.reader);
  chd_mdb_free(read);
  chd_mdb_free(ctx.mdb);
  chd_viewdb_free(ctx.view);
  return rc;
}
