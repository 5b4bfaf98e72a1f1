/*
 * rebuild.c - `comphost rebuild`: reset a plugin instance so that it
 * replays its categories from the first message.
 *
 *   comphost rebuild -c FILE INSTANCE --yes [--force] [--plugin-dir DIR] [--json]
 *
 * Loads the instance's plugin as the host does, applies its migrations,
 * calls init(), then in one transaction on the view database its reset()
 * (which empties its tables) and, for position_store = view_data, its
 * positions back to 0; then, for positions in the message store, a Read
 * (Recorded) message with position 0 per subscription, and a stop record
 * cleared. The host replays from global position 1 when it next starts.
 *
 * It refuses without --yes; for a component (replaying commands repeats
 * their effects) or a plugin without reset() unless --force; and while a
 * host runs any of the instance's subscriptions, anywhere: it takes the
 * subscriber locks (sublock.h) exclusively and holds them to the end.
 */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "host_api.h"
#include "inventory.h"
#include "position.h"
#include "group.h"
#include "sublock.h"
#include "subscription.h"
#include "viewdb.h"

static void usage(FILE *out)
{
  fprintf(out,
          "usage: comphost rebuild -c FILE INSTANCE --yes [--force] [--plugin-dir DIR] [--json]\n"
          "Empty the views of INSTANCE (its plugin's reset()) and set its positions back\n"
          "to 0, so that the host replays it from the first message. The host must be\n"
          "stopped. --force: also for a component, or a plugin without reset().\n");
}

static bool has_view(const chd_inventory *inv)
{
  return inv->cfg.view_data != NULL;
}

/* Take every subscriber lock of the instance; the id of a taken one on failure. */
static int lock_all(chd_mdb *mdb, const chd_instance_config *inst, const chd_plugin *p,
                    char *busy, size_t size)
{
  for (size_t k = 0; p->desc.subscriptions[k].stream_name; k++)
    for (int64_t j = 0; j < chd_group_ids(inst); j++) {
      char id[256];
      bool got;

      chd_group_id(&p->desc.subscriptions[k], inst, j, id, sizeof id);
      if (chd_mdb_try_lock(mdb, chd_sublock_key(id), &got) != CHD_STORE_OK)
        return -1;
      if (!got) {
        snprintf(busy, size, "%s", id);
        return 1;
      }
    }
  return 0;
}

int chd_cli_rebuild(int argc, char **argv)
{
  static const struct option longs[] = {
    { "config", required_argument, NULL, 'c' },
    { "plugin-dir", required_argument, NULL, 'p' },
    { "yes", no_argument, NULL, 'y' },
    { "force", no_argument, NULL, 'f' },
    { "json", no_argument, NULL, 'j' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  static volatile sig_atomic_t never;
  const char *config = NULL, *plugin_dir = NULL, *name;
  bool yes = false, force = false, as_json = false, inited = false, reset_done = false;
  char err[2048], busy[256];
  const chd_instance_config *inst = NULL;
  const chd_plugin *p = NULL;
  const ch_plugin_desc *d = NULL;
  chd_inventory inv;
  chd_position_store ps;
  ch_ctx ctx;
  json_t *subs = json_array();
  int64_t *before = NULL;
  size_t nsubs, ids, nids;
  int c, rc = 0, locked;

  optind = 1;
  while ((c = getopt_long(argc, argv, "c:h", longs, NULL)) != -1) {
    switch (c) {
    case 'c': config = optarg; break;
    case 'p': plugin_dir = optarg; break;
    case 'y': yes = true; break;
    case 'f': force = true; break;
    case 'j': as_json = true; break;
    case 'h': usage(stdout); json_decref(subs); return 0;
    default: usage(stderr); json_decref(subs); return CHD_CLI_USAGE;
    }
  }
  if (!config || argc - optind != 1) {
    json_decref(subs);
    return !config ? chd_cli_usage("rebuild: no configuration: give -c FILE")
                   : chd_cli_usage("rebuild: give one plugin instance (a section of FILE)");
  }
  name = argv[optind];
  if (chd_inventory_load(&inv, config, plugin_dir, err, sizeof err) != 0) {
    json_decref(subs);
    return chd_cli_fail("%s", err);
  }
  chd_ctx_init(&ctx, &inv.cfg, NULL, NULL);
  for (size_t i = 0; i < inv.count; i++)
    if (!strcmp(inv.cfg.instances[i].name, name)) {
      inst = &inv.cfg.instances[i];
      p = &inv.plugins[i];
    }
  if (!inst) {
    char list[1024] = "";
    for (size_t i = 0; i < inv.count; i++) {
      size_t n = strlen(list);
      snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "", inv.cfg.instances[i].name);
    }
    rc = chd_cli_fail("no plugin instance [%s] in %s (it has: %s)", name, config, list);
    goto out;
  }
  d = &p->desc;
  nsubs = chd_plugin_subscription_count(p);
  ids = (size_t)chd_group_ids(inst);    /* every slot's, with group_member = auto */
  nids = nsubs * ids;
  if (d->kind == CH_KIND_COMPONENT && !force) {
    rc = chd_cli_fail("[%s] runs plugin %s, a component: replaying its commands repeats"
                      " their effects (writes, e-mails); give --force to do it anyway",
                      name, d->name);
    goto out;
  }
  if (!d->reset && !force) {
    rc = chd_cli_fail("plugin %s of [%s] has no reset(): its views would keep what they"
                      " have and count everything again; give --force to reset only the"
                      " positions", d->name, name);
    goto out;
  }
  if (!yes) {
    rc = chd_cli_fail("rebuild [%s]: this %sresets %zu subscription%s to position 0, to"
                      " replay from the first message; give --yes to do it", name,
                      d->reset ? "empties the plugin's views (reset()) and " : "", nids,
                      nids == 1 ? "" : "s");
    goto out;
  }

  chd_ctx_init(&ctx, &inv.cfg, inst, p);
  ctx.stop = &never;
  if (!(ctx.mdb = chd_cli_store(&inv.cfg))) {
    rc = CHD_CLI_FAILED;
    goto out;
  }
  locked = lock_all(ctx.mdb, inst, p, busy, sizeof busy);
  if (locked != 0) {
    rc = locked < 0 ? chd_cli_fail("%s", chd_mdb_error(ctx.mdb))
                    : chd_cli_fail("a host is running [%s] (subscription %s is in use):"
                                   " stop it first", name, busy);
    goto out;
  }
  if (has_view(&inv)) {
    chd_position_store views;
    if (!(ctx.view = chd_cli_view(&inv.cfg))) {
      rc = CHD_CLI_FAILED;
      goto out;
    }
    chd_position_store_init(&views, CHD_POSITION_VIEW_DATA, inst->position_format, ctx.mdb,
                            ctx.view);
    if (chd_viewdb_migrate(ctx.view, d->name, d->migrations) != CHD_STORE_OK) {
      rc = chd_cli_fail("%s", chd_viewdb_error(ctx.view));
      goto out;
    }
    if (chd_position_prepare(&views) != CHD_STORE_OK) {
      rc = chd_cli_fail("%s", chd_position_error(&views));
      goto out;
    }
  }
  before = calloc(nids ? nids : 1, sizeof *before);
  if (!before) {
    rc = chd_cli_fail("out of memory");
    goto out;
  }
  chd_position_store_init(&ps, inst->position_store, inst->position_format, ctx.mdb, ctx.view);
  for (size_t i = 0; i < nids; i++) {
    size_t k = i / ids;
    char id[256], reason[1024];
    int64_t stopped;
    chd_group_id(&d->subscriptions[k], inst, (int64_t)(i % ids), id, sizeof id);
    if (chd_position_inspect(&ps, d->subscriptions[k].stream_name, id, &before[i], &stopped,
                             reason, sizeof reason) != CHD_STORE_OK) {
      rc = chd_cli_fail("reading the position of %s: %s", id, chd_position_error(&ps));
      goto out;
    }
  }
  if (d->init && d->init(&ctx, &ctx.state) != 0) {
    rc = chd_cli_fail("init of plugin %s failed: %s", d->name,
                      ctx.error[0] ? ctx.error : "(no reason given)");
    goto out;
  }
  inited = true;

  /* the views and the view-data positions: one transaction */
  if (ctx.view) {
    if (chd_viewdb_exec(ctx.view, "BEGIN") != CHD_STORE_OK) {
      rc = chd_cli_fail("view database: %s", chd_viewdb_error(ctx.view));
      goto out;
    }
    if (d->reset && d->reset(&ctx, ctx.state) != 0) {
      chd_viewdb_exec(ctx.view, "ROLLBACK");
      rc = chd_cli_fail("reset of plugin %s failed, nothing changed: %s", d->name,
                        ctx.error[0] ? ctx.error : "(no reason given)");
      goto out;
    }
    if (inst->position_store == CHD_POSITION_VIEW_DATA) {
      for (size_t i = 0; i < nids; i++) {
        size_t k = i / ids;
        char id[256];
        chd_group_id(&d->subscriptions[k], inst, (int64_t)(i % ids), id, sizeof id);
        if (chd_position_reset(&ps, d->subscriptions[k].stream_name, id) != CHD_STORE_OK) {
          rc = chd_cli_fail("resetting the position of %s, nothing changed: %s", id,
                            chd_position_error(&ps));
          chd_viewdb_exec(ctx.view, "ROLLBACK");
          goto out;
        }
      }
    }
    if (chd_viewdb_commit(ctx.view) != CHD_STORE_OK) {
      rc = chd_cli_fail("view database, nothing changed: %s", chd_viewdb_error(ctx.view));
      goto out;
    }
    reset_done = d->reset != NULL;
  } else if (d->reset) {
    /* a plugin with a reset() but no view database: its reset has no
     * transaction to run in, as in the worker */
    if (d->reset(&ctx, ctx.state) != 0) {
      rc = chd_cli_fail("reset of plugin %s failed: %s", d->name,
                        ctx.error[0] ? ctx.error : "(no reason given)");
      goto out;
    }
    reset_done = true;
  }

  /* positions in the message store: after the views, together */
  if (inst->position_store == CHD_POSITION_MESSAGE_STORE) {
    if (chd_mdb_exec(ctx.mdb, "BEGIN") != CHD_STORE_OK) {
      snprintf(err, sizeof err, "%s", chd_mdb_error(ctx.mdb));
      goto store_failed;
    }
    for (size_t i = 0; i < nids; i++) {
      size_t k = i / ids;
      char id[256];

      chd_group_id(&d->subscriptions[k], inst, (int64_t)(i % ids), id, sizeof id);
      if (chd_position_reset(&ps, d->subscriptions[k].stream_name, id) != CHD_STORE_OK) {
        snprintf(err, sizeof err, "%s", chd_position_error(&ps));
        chd_mdb_exec(ctx.mdb, "ROLLBACK");
        goto store_failed;
      }
    }
    if (chd_mdb_commit(ctx.mdb) != CHD_STORE_OK) {
      snprintf(err, sizeof err, "%s", chd_mdb_error(ctx.mdb));
      goto store_failed;
    }
  }

  for (size_t i = 0; i < nids; i++) {
    size_t k = i / ids;
    char id[256];
    chd_group_id(&d->subscriptions[k], inst, (int64_t)(i % ids), id, sizeof id);
    json_array_append_new(subs, json_pack("{s:s, s:s, s:I, s:i}", "subscriber", id, "category",
                                          d->subscriptions[k].stream_name, "position_before",
                                          (json_int_t)before[i], "position", 0));
  }
  if (as_json) {
    chd_cli_json_line(json_pack("{s:s, s:s, s:s, s:b, s:s, s:O}", "instance", name,
                                "plugin", d->name, "kind", chd_kind_name(d->kind),
                                "reset", reset_done, "position_store",
                                inst->position_store == CHD_POSITION_VIEW_DATA ? "view_data"
                                                                               : "message_store",
                                "subscriptions", subs));
  } else {
    printf("rebuilt [%s] (plugin %s %s, %s):\n", name, d->name, d->version,
           chd_kind_name(d->kind));
    if (reset_done)
      printf("  reset(): its views are empty\n");
    else
      printf("  no reset(): its views are as they were\n");
    for (size_t i = 0; i < nids; i++) {
      size_t k = i / ids;
      char id[256];
      chd_group_id(&d->subscriptions[k], inst, (int64_t)(i % ids), id, sizeof id);
      printf("  %s: position %" PRId64 " -> 0 (%s)\n", id, before[i],
             inst->position_store == CHD_POSITION_VIEW_DATA ? "view_data" : "message_store");
    }
    printf("the host replays it from global position 1 when it starts\n");
  }
  goto out;

store_failed:
  rc = chd_cli_fail("%s but the positions in the message store could not be reset (%s):"
                    " run the rebuild again", reset_done ? "the views were emptied,"
                    : "nothing was reset,", err);

out:
  if (inited && d->destroy)
    d->destroy(&ctx, ctx.state);
  free(before);
  json_decref(subs);
  chd_mdb_free(ctx.mdb);
  chd_viewdb_free(ctx.view);
  chd_inventory_release(&inv);
  return rc;
}
