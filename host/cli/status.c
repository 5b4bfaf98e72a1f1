/*
 * status.c - `comphost status`: where every subscription of a
 * configuration stands.
 *
 *   comphost status -c FILE [--plugin-dir DIR] [--json]
 *
 * From the store (no host needed): the saved position, the category's head,
 * the lag in messages (counted up to CHD_LAG_BOUND), how long ago the
 * position was saved, and a stop if one is recorded. From the state file of
 * a host running this configuration on this machine (monitor.h): each
 * worker's state, pid and restarts, and the position it has reached, which
 * is ahead of the saved one between two saves. For an instance with
 * group_member = auto, a row per slot, and from the lease table (any
 * machine's hosts) which host holds each slot, since when, and how long ago
 * it renewed the lease.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "cli.h"
#include "clock.h"
#include "group.h"
#include "inventory.h"
#include "lease.h"
#include "monitor.h"
#include "position.h"
#include "status.h"
#include "subscription.h"
#include "viewdb.h"

/* A state file older than this is from a host that is gone. */
#define STATE_STALE_MS 10000

static void usage(FILE *out)
{
  fprintf(out,
          "usage: comphost status -c FILE [--plugin-dir DIR] [--json]\n"
          "For every subscription of FILE: position, category head, lag, time since the\n"
          "position was saved and, when a host runs FILE on this machine, its worker's\n"
          "state and restarts.\n");
}

/* The running host's state, or NULL when none runs this file here. */
static json_t *load_state(const chd_config *cfg, char *path, size_t size)
{
  json_t *doc;
  json_int_t pid, updated;

  if (chd_monitor_state_path(cfg, path, size) != 0)
    return NULL;
  doc = json_load_file(path, 0, NULL);
  if (!doc)
    return NULL;
  pid = json_integer_value(json_object_get(doc, "pid"));
  updated = json_integer_value(json_object_get(doc, "updated_unix_ms"));
  if (pid <= 0 || (kill((pid_t)pid, 0) != 0 && errno != EPERM) ||
      chd_wall_ms() - updated > STATE_STALE_MS) {
    json_decref(doc);
    return NULL;
  }
  return doc;
}

static json_t *find_by(json_t *array, const char *key, const char *value)
{
  size_t i;
  json_t *o;

  json_array_foreach(array, i, o) {
    const char *v = json_string_value(json_object_get(o, key));
    if (v && !strcmp(v, value))
      return o;
  }
  return NULL;
}

/* "5s", "3m07s", "2h05m", "4d03h"; "never" for -1. */
static void duration(int64_t ms, char *buf, size_t size)
{
  int64_t s = ms / 1000;

  if (ms < 0)
    snprintf(buf, size, "never");
  else if (s < 60)
    snprintf(buf, size, "%" PRId64 "s", s);
  else if (s < 3600)
    snprintf(buf, size, "%" PRId64 "m%02" PRId64 "s", s / 60, s % 60);
  else if (s < 86400)
    snprintf(buf, size, "%" PRId64 "h%02" PRId64 "m", s / 3600, s % 3600 / 60);
  else
    snprintf(buf, size, "%" PRId64 "d%02" PRId64 "h", s / 86400, s % 86400 / 3600);
}

/* "850 ms", "12.3 s", then as duration(). */
static void age(int64_t ms, char *buf, size_t size)
{
  if (ms < 0)
    snprintf(buf, size, "-");
  else if (ms < 1000)
    snprintf(buf, size, "%" PRId64 " ms", ms);
  else if (ms < 60000)
    snprintf(buf, size, "%.1f s", (double)ms / 1000.0);
  else
    duration(ms, buf, size);
}

/* A consumer group shared through leases: its slots' owners. */
typedef struct group {
  char plugin[64], subscriber[256];
  int64_t size, lease_ms, members;
  chd_lease_row *rows;
  size_t n;
} group;

static void print_groups(const group *groups, size_t n)
{
  for (size_t g = 0; g < n; g++) {
    const group *gr = &groups[g];
    int w_owner = 5;

    for (size_t r = 0; r < gr->n; r++)
      if ((int)strlen(gr->rows[r].owner) > w_owner)
        w_owner = (int)strlen(gr->rows[r].owner);
    printf("\ngroup %s of [%s]: %" PRId64 " slots, %" PRId64 " live host%s, lease timeout %"
           PRId64 " ms\n", gr->subscriber, gr->plugin, gr->size, gr->members,
           gr->members == 1 ? "" : "s", gr->lease_ms);
    printf("  %4s  %-*s  %10s  %-24s  %8s  %9s\n", "SLOT", w_owner, "OWNER", "GENERATION",
           "SINCE", "HELD", "LEASE AGE");
    for (size_t r = 0; r < gr->n; r++) {
      const chd_lease_row *l = &gr->rows[r];
      char held[24], lease_age[24];
      if (!l->owner[0]) {
        printf("  %4" PRId64 "  %-*s  %10" PRId64 "\n", l->slot, w_owner, "(free)",
               l->generation);
        continue;
      }
      duration(l->held_ms, held, sizeof held);
      age(l->renewed_ms_ago, lease_age, sizeof lease_age);
      printf("  %4" PRId64 "  %-*s  %10" PRId64 "  %-24s  %8s  %9s%s\n", l->slot, w_owner,
             l->owner, l->generation, l->acquired_at, held, lease_age,
             l->expired ? "  EXPIRED" : "");
    }
  }
}

static json_t *groups_json(const group *groups, size_t n)
{
  json_t *a = json_array();

  for (size_t g = 0; g < n; g++) {
    const group *gr = &groups[g];
    json_t *leases = json_array();

    for (size_t r = 0; r < gr->n; r++) {
      const chd_lease_row *l = &gr->rows[r];
      json_t *o = json_pack("{s:I, s:I}", "slot", (json_int_t)l->slot, "generation",
                            (json_int_t)l->generation);
      json_object_set_new(o, "owner", l->owner[0] ? json_string(l->owner) : json_null());
      if (l->owner[0]) {
        json_object_set_new(o, "since", json_string(l->acquired_at));
        json_object_set_new(o, "held_ms", json_integer(l->held_ms));
        json_object_set_new(o, "lease_age_ms", json_integer(l->renewed_ms_ago));
        json_object_set_new(o, "expires_in_ms", json_integer(l->expires_in_ms));
        json_object_set_new(o, "expired", json_boolean(l->expired));
      }
      json_array_append_new(leases, o);
    }
    json_array_append_new(a, json_pack("{s:s, s:s, s:I, s:I, s:I, s:o}", "plugin", gr->plugin,
                                       "subscriber", gr->subscriber, "slots",
                                       (json_int_t)gr->size, "members",
                                       (json_int_t)gr->members, "lease_timeout_ms",
                                       (json_int_t)gr->lease_ms, "leases", leases));
  }
  return a;
}

typedef struct row {
  char plugin[64], subscriber[256], stream[256], worker[64];
  int64_t position, head, lag, moved_ms, stopped_at;
  int restarts;
  char reason[1024];
} row;

static void print_table(const row *rows, size_t n)
{
  int w_sub = 10, w_plugin = 6, w_stream = 8, w_worker = 6;

  for (size_t i = 0; i < n; i++) {
    int l;
    if ((l = (int)strlen(rows[i].subscriber)) > w_sub) w_sub = l;
    if ((l = (int)strlen(rows[i].plugin)) > w_plugin) w_plugin = l;
    if ((l = (int)strlen(rows[i].stream)) > w_stream) w_stream = l;
    if ((l = (int)strlen(rows[i].worker)) > w_worker) w_worker = l;
  }
  printf("%-*s  %-*s  %-*s  %10s  %10s  %8s  %6s  %-*s  %s\n", w_sub, "SUBSCRIBER", w_plugin,
         "PLUGIN", w_stream, "CATEGORY", "POSITION", "HEAD", "LAG", "MOVED", w_worker, "WORKER",
         "RESTARTS");
  for (size_t i = 0; i < n; i++) {
    char lag[24], moved[24], restarts[16];
    if (rows[i].lag >= CHD_LAG_BOUND)
      snprintf(lag, sizeof lag, ">%d", CHD_LAG_BOUND);
    else
      snprintf(lag, sizeof lag, "%" PRId64, rows[i].lag);
    duration(rows[i].moved_ms, moved, sizeof moved);
    if (rows[i].restarts >= 0)
      snprintf(restarts, sizeof restarts, "%d", rows[i].restarts);
    else
      snprintf(restarts, sizeof restarts, "-");
    printf("%-*s  %-*s  %-*s  %10" PRId64 "  %10" PRId64 "  %8s  %6s  %-*s  %s\n", w_sub,
           rows[i].subscriber, w_plugin, rows[i].plugin, w_stream, rows[i].stream,
           rows[i].position, rows[i].head, lag, moved, w_worker, rows[i].worker, restarts);
  }
  for (size_t i = 0; i < n; i++)
    if (rows[i].stopped_at)
      printf("%s: STOPPED at global position %" PRId64 ": %s\n", rows[i].subscriber,
             rows[i].stopped_at, rows[i].reason);
}

int chd_cli_status(int argc, char **argv)
{
  static const struct option longs[] = {
    { "config", required_argument, NULL, 'c' },
    { "plugin-dir", required_argument, NULL, 'p' },
    { "json", no_argument, NULL, 'j' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  const char *config = NULL, *plugin_dir = NULL;
  bool as_json = false, need_view = false;
  char err[2048], state_path[4096] = "";
  chd_inventory inv;
  chd_mdb *mdb = NULL;
  chd_viewdb *view = NULL;
  json_t *state = NULL, *subs_json = json_array();
  row *rows = NULL;
  group *groups = NULL;
  size_t nrows = 0, cap = 0, ngroups = 0;
  int c, rc = 0;

  optind = 1;
  while ((c = getopt_long(argc, argv, "c:h", longs, NULL)) != -1) {
    switch (c) {
    case 'c': config = optarg; break;
    case 'p': plugin_dir = optarg; break;
    case 'j': as_json = true; break;
    case 'h': usage(stdout); json_decref(subs_json); return 0;
    default: usage(stderr); json_decref(subs_json); return CHD_CLI_USAGE;
    }
  }
  if (optind < argc || !config) {
    json_decref(subs_json);
    return optind < argc ? chd_cli_usage("status: unexpected argument '%s'", argv[optind])
                         : chd_cli_usage("status: no configuration: give -c FILE");
  }
  if (chd_inventory_load(&inv, config, plugin_dir, err, sizeof err) != 0) {
    json_decref(subs_json);
    return chd_cli_fail("%s", err);
  }
  for (size_t i = 0; i < inv.count; i++)
    need_view = need_view || inv.cfg.instances[i].position_store == CHD_POSITION_VIEW_DATA;
  if (!(mdb = chd_cli_store(&inv.cfg))) {
    rc = CHD_CLI_FAILED;
    goto out;
  }
  if (need_view && !(view = chd_cli_view(&inv.cfg))) {
    rc = CHD_CLI_FAILED;
    goto out;
  }
  state = load_state(&inv.cfg, state_path, sizeof state_path);

  for (size_t i = 0; i < inv.count; i++) {
    const chd_instance_config *inst = &inv.cfg.instances[i];
    const chd_plugin *p = &inv.plugins[i];
    json_t *w = state ? find_by(json_object_get(state, "instances"), "plugin", inst->name) : NULL;
    size_t ids = (size_t)chd_group_ids(inst);
    group *gr = NULL;

    for (size_t x = 0; p->desc.subscriptions[x / ids].stream_name; x++) {
      size_t k = x / ids;
      const char *category = p->desc.subscriptions[k].stream_name;
      json_t *live = NULL, *o, *worker = json_null();
      chd_position_store ps;
      row *r;
      int64_t saved;

      if (inst->group_auto && x % ids == 0) {
        /* the group's leases: who holds which slot */
        chd_lease_store ls;
        group *more = realloc(groups, (ngroups + 1) * sizeof *groups);
        if (!more) {
          rc = chd_cli_fail("out of memory");
          goto out;
        }
        groups = more;
        gr = &groups[ngroups++];
        memset(gr, 0, sizeof *gr);
        snprintf(gr->plugin, sizeof gr->plugin, "%s", inst->name);
        snprintf(gr->subscriber, sizeof gr->subscriber, "%s",
                 p->desc.subscriptions[k].subscriber_id);
        gr->size = inst->group_size;
        gr->lease_ms = inst->lease_timeout_ms;
        chd_lease_store_init(&ls, inst->position_store, mdb, view);
        if (chd_lease_list(&ls, gr->subscriber, gr->size, &gr->rows, &gr->n, &gr->members)
            != CHD_STORE_OK) {
          rc = chd_cli_fail("reading the leases of %s: %s", gr->subscriber,
                            chd_lease_error(&ls));
          goto out;
        }
      }

      if (nrows == cap) {
        row *more = realloc(rows, (cap = cap ? cap * 2 : 8) * sizeof *rows);
        if (!more) {
          rc = chd_cli_fail("out of memory");
          goto out;
        }
        rows = more;
      }
      r = &rows[nrows++];
      memset(r, 0, sizeof *r);
      snprintf(r->plugin, sizeof r->plugin, "%s", inst->name);
      snprintf(r->stream, sizeof r->stream, "%s", category);
      chd_group_id(&p->desc.subscriptions[k], inst, (int64_t)(x % ids), r->subscriber,
                   sizeof r->subscriber);
      chd_position_store_init(&ps, inst->position_store, inst->position_format, mdb, view);
      if (chd_position_inspect(&ps, category, r->subscriber, &saved, &r->stopped_at,
                               r->reason, sizeof r->reason) != CHD_STORE_OK) {
        rc = chd_cli_fail("reading the position of %s: %s", r->subscriber,
                          chd_position_error(&ps));
        goto out;
      }
      r->position = saved;
      if (chd_position_age(&ps, category, r->subscriber, &r->moved_ms) != CHD_STORE_OK)
        r->moved_ms = -1;
      r->restarts = -1;
      snprintf(r->worker, sizeof r->worker, "%s", state ? "-" : "no host here");
      if (w) {
        json_int_t pid = json_integer_value(json_object_get(w, "pid"));
        const char *st = json_string_value(json_object_get(w, "state"));
        json_t *hb = json_object_get(w, "heartbeat_age_ms");
        bool stalled = json_is_integer(hb) && st && !strcmp(st, "running") &&
                       json_integer_value(hb) > inv.cfg.health_max_heartbeat_age_ms;

        r->restarts = (int)json_integer_value(json_object_get(w, "restarts"));
        snprintf(r->worker, sizeof r->worker, "%s (pid %d)", stalled ? "stalled"
                 : st ? st : "unknown", (int)pid);
        worker = json_pack("{s:s, s:I, s:i, s:O*}", "state",
                           stalled ? "stalled" : st ? st : "unknown", "pid", (json_int_t)pid,
                           "restarts", r->restarts, "heartbeat_age_ms", hb);
        live = find_by(json_object_get(w, "subscriptions"), "subscriber", r->subscriber);
      }
      if (inst->group_auto && !live && gr) {
        /* a slot that this machine's host does not hold */
        const chd_lease_row *l = NULL;
        for (size_t j = 0; j < gr->n; j++)
          if (gr->rows[j].slot == (int64_t)(x % ids))
            l = &gr->rows[j];
        snprintf(r->worker, sizeof r->worker, "%s", l && l->owner[0] ? l->owner : "(free)");
        json_decref(worker);
        worker = l && l->owner[0] ? json_pack("{s:s}", "owner", l->owner) : json_null();
        r->restarts = -1;
      }
      if (live) {
        json_int_t lp = json_integer_value(json_object_get(live, "position"));
        json_t *moved = json_object_get(live, "moved_age_ms");
        if (lp > r->position) {
          r->position = lp;
          if (json_is_integer(moved))
            r->moved_ms = json_integer_value(moved);
        }
      }
      if (chd_mdb_head(mdb, category, &r->head) != CHD_STORE_OK ||
          chd_mdb_lag(mdb, category, r->position, chd_group_member_of(inst, (int64_t)(x % ids)),
                      inst->group_size, CHD_LAG_BOUND, &r->lag) != CHD_STORE_OK) {
        json_decref(worker);
        rc = chd_cli_fail("%s", chd_mdb_error(mdb));
        goto out;
      }
      o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:b}", "plugin", r->plugin,
                    "subscriber", r->subscriber, "category", category,
                    "position", (json_int_t)r->position, "saved_position", (json_int_t)saved,
                    "head", (json_int_t)r->head, "lag", (json_int_t)r->lag,
                    "lag_capped", r->lag >= CHD_LAG_BOUND);
      json_object_set_new(o, "moved_ms_ago", r->moved_ms >= 0 ? json_integer(r->moved_ms)
                                                              : json_null());
      json_object_set_new(o, "stopped_at", r->stopped_at ? json_integer(r->stopped_at)
                                                         : json_null());
      json_object_set_new(o, "stop_reason", r->stopped_at ? json_string(r->reason)
                                                          : json_null());
      json_object_set_new(o, "worker", worker);
      json_array_append_new(subs_json, o);
    }
  }

  if (as_json) {
    json_t *host = json_pack("{s:b, s:s}", "running", state != NULL, "state_file", state_path);
    if (state) {
      json_object_set(host, "pid", json_object_get(state, "pid"));
      json_object_set(host, "http", json_object_get(state, "http"));
    }
    chd_cli_json_line(json_pack("{s:s, s:o, s:O, s:o}", "config", config, "host", host,
                                "subscriptions", subs_json, "groups",
                                groups_json(groups, ngroups)));
  } else {
    if (state)
      printf("host: running (pid %d), state file %s\n",
             (int)json_integer_value(json_object_get(state, "pid")), state_path);
    else
      printf("host: none runs %s on this machine\n", config);
    print_table(rows, nrows);
    print_groups(groups, ngroups);
  }

out:
  json_decref(subs_json);
  json_decref(state);
  free(rows);
  for (size_t g = 0; g < ngroups; g++)
    free(groups[g].rows);
  free(groups);
  chd_mdb_free(mdb);
  chd_viewdb_free(view);
  chd_inventory_release(&inv);
  return rc;
}
