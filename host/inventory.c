/* inventory.c - a host's configuration with its plugins loaded and checked. */
#include "inventory.h"

#include "web_server.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "group.h"
#include "log.h"
#include "mdb.h"
#include "position.h"
#include "subscription.h"
#include "viewdb.h"

static const char *store_name(const chd_instance_config *inst)
{
  if (inst->position_store == CHD_POSITION_VIEW_DATA)
    return "view_data";
  return inst->position_format == CHD_POSITION_FORMAT_EVENTIDE ? "message_store (eventide)"
                                                               : "message_store";
}

/* Checks that span instances, or need the plugin and the config together. */
static int check_instance(chd_inventory *inv, size_t i, char *err, size_t errlen)
{
  const chd_instance_config *inst = &inv->cfg.instances[i];
  const chd_plugin *p = &inv->plugins[i];
  const char *file = inv->cfg.path;

  if (chd_config_resolve_secrets(&inv->cfg, &inv->cfg.instances[i], p->desc.config_keys,
                                 p->desc.secret_keys, err, errlen) != 0 ||
      chd_config_check_plugin_keys(&inv->cfg, inst, p->desc.config_keys, err, errlen) != 0)
    return -1;
  if (!inv->cfg.view_data && p->desc.migrations && p->desc.migrations[0].id) {
    snprintf(err, errlen, "%s:%d: [%s]: plugin %s has view-data migrations, but no view"
             " database is configured (set [host] view_data or DATABASE_URL)",
             file, inst->line, inst->name, p->desc.name);
    return -1;
  }
  for (size_t j = 0; j < i; j++) {
    const chd_plugin *q = &inv->plugins[j];
    if (!strcmp(p->desc.name, q->desc.name) && strcmp(p->path, q->path) != 0) {
      snprintf(err, errlen, "%s:%d: [%s]: plugin name '%s' of '%s' is also the name of '%s'"
               " ([%s]): two libraries cannot share a plugin name", file, inst->line,
               inst->name, p->desc.name, p->path, q->path, inv->cfg.instances[j].name);
      return -1;
    }
  }
  for (size_t s = 0; p->desc.subscriptions[s].stream_name; s++) {
    const char *stream = p->desc.subscriptions[s].stream_name;
    char id[256];

    if (!strcmp(stream, "$all") &&
        (inst->group_size > 0 || inst->position_format == CHD_POSITION_FORMAT_EVENTIDE)) {
      snprintf(err, errlen, "%s:%d: [%s]: plugin %s reads $all, which %s", file, inst->line,
               inst->name, p->desc.name, inst->group_size > 0
               ? "cannot be split among consumer group members (group_size)"
               : "has no category for the eventide position format");
      return -1;
    }
    for (int64_t a = 0; a < chd_group_ids(inst); a++) {
      chd_group_id(&p->desc.subscriptions[s], inst, a, id, sizeof id);
      for (size_t j = 0; j <= i; j++) {
        const chd_plugin *q = &inv->plugins[j];
        const chd_instance_config *other_inst = &inv->cfg.instances[j];
        size_t end = j == i ? s : SIZE_MAX;
        for (size_t t = 0; t < end && q->desc.subscriptions[t].stream_name; t++)
          for (int64_t b = 0; b < chd_group_ids(other_inst); b++) {
            char other[256];
            chd_group_id(&q->desc.subscriptions[t], other_inst, b, other, sizeof other);
            if (!strcmp(id, other)) {
              snprintf(err, errlen, "%s:%d: [%s]: subscriber id '%s' is used by [%s] too:"
                       " each subscription needs its own (run copies of a plugin as"
                       " consumer group members, with group_member and group_size)",
                       file, inst->line, inst->name, id, inv->cfg.instances[j].name);
              return -1;
            }
          }
      }
    }
  }
  return 0;
}

int chd_inventory_load(chd_inventory *inv, const char *config_path,
                       const char *plugin_dir_override, char *err, size_t errlen)
{
  memset(inv, 0, sizeof *inv);
  if (chd_config_load(&inv->cfg, config_path, plugin_dir_override, err, errlen) != 0)
    return -1;
  /* the commands that only need the connections take a file without any */
  if (inv->cfg.instance_count == 0) {
    snprintf(err, errlen, "%s: no plugin instance: add a section per plugin", config_path);
    chd_inventory_release(inv);
    return -1;
  }
  inv->plugins = calloc(inv->cfg.instance_count, sizeof *inv->plugins);
  if (!inv->plugins) {
    snprintf(err, errlen, "out of memory");
    chd_inventory_release(inv);
    return -1;
  }
  for (size_t i = 0; i < inv->cfg.instance_count; i++) {
    const chd_instance_config *inst = &inv->cfg.instances[i];
    char why[1024];

    if (chd_plugin_load(&inv->plugins[i], inst->library, why, sizeof why) != 0) {
      snprintf(err, errlen, "%s:%d: [%s] library: %s", inv->cfg.path,
               inst->library_line ? inst->library_line : inst->line, inst->name, why);
      chd_inventory_release(inv);
      return -1;
    }
    inv->count = i + 1;
    /* aggregators commit a batch's view writes at once unless told otherwise:
     * one commit (one fsync) per batch instead of one per message */
    if (!inst->batch_transaction_set && inv->cfg.view_data &&
        inv->plugins[i].desc.kind == CH_KIND_AGGREGATOR)
      inv->cfg.instances[i].batch_transaction = true;
    if (check_instance(inv, i, err, errlen) != 0) {
      chd_inventory_release(inv);
      return -1;
    }
  }
  {
    chd_web_site *sites;
    size_t n;

    if (chd_web_sites(inv, &sites, &n, err, errlen) != 0) {
      chd_inventory_release(inv);
      return -1;
    }
    chd_web_sites_free(sites, n);
  }
  return 0;
}

void chd_inventory_release(chd_inventory *inv)
{
  for (size_t i = 0; i < inv->count; i++)
    chd_plugin_unload(&inv->plugins[i]);
  free(inv->plugins);
  chd_config_release(&inv->cfg);
  memset(inv, 0, sizeof *inv);
}

/* "A, B, $any" into buf. */
static void handled_types(const ch_subscription *sub, char *buf, size_t size)
{
  size_t len = 0;

  buf[0] = '\0';
  for (const ch_handler *h = sub->handlers; h && h->type && len + 2 < size; h++) {
    int n = snprintf(buf + len, size - len, "%s%s", len ? ", " : "", h->type);
    if (n < 0)
      break;
    len += (size_t)n;
  }
  if (len >= size)
    buf[size - 1] = '\0';
}

/* The file's modification time, "2026-11-28T06:49:19Z", or "unknown". */
static void file_mtime(const char *path, char *buf, size_t size)
{
  struct stat st;
  struct tm tm;

  if (stat(path, &st) != 0 || !gmtime_r(&st.st_mtime, &tm) ||
      strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    snprintf(buf, size, "unknown");
}

void chd_inventory_log(const chd_inventory *inv)
{
  chd_log_info("comphost %s (plugin ABI %u.%u) runs %zu plugin instance%s from %s",
               COMPHOST_VERSION, CH_ABI_MAJOR, CH_ABI_MINOR, inv->count,
               inv->count == 1 ? "" : "s", inv->cfg.path);
  for (size_t i = 0; i < inv->count; i++) {
    const chd_instance_config *inst = &inv->cfg.instances[i];
    const chd_plugin *p = &inv->plugins[i];
    chd_log_fields f = { inst->name, NULL, NULL, NULL };
    char mtime[32];

    file_mtime(p->path, mtime, sizeof mtime);
    chd_log(CH_LOG_INFO, &f, "plugin %s %s (%s) from %s, %lld bytes, modified %s, build id %s",
            p->desc.name, p->desc.version, chd_kind_name(p->desc.kind), p->path,
            (long long)p->size, mtime, p->build_id[0] ? p->build_id : "(none)");
    for (size_t s = 0; p->desc.subscriptions[s].stream_name; s++) {
      const ch_subscription *sub = &p->desc.subscriptions[s];
      char id[256], types[1024];
      chd_sub_effective_id(sub, inst, id, sizeof id);
      handled_types(sub, types, sizeof types);
      f.subscriber = id;
      chd_log(CH_LOG_INFO, &f, "subscription to %s%s%s handles %s; positions in %s",
              sub->stream_name, sub->origin_stream_name ? " from origin " : "",
              sub->origin_stream_name ? sub->origin_stream_name : "", types, store_name(inst));
    }
  }
}

int chd_inventory_print(const chd_inventory *inv, FILE *out, int with_positions)
{
  chd_mdb *mdb = NULL;
  chd_viewdb *view = NULL;
  char err[1024];
  int rc = 0;

  if (with_positions) {
    mdb = chd_mdb_new(inv->cfg.message_store);
    if (!mdb || chd_mdb_connect(mdb) != CHD_STORE_OK) {
      snprintf(err, sizeof err, "%s", mdb ? chd_mdb_error(mdb) : "out of memory");
      chd_log_redact(err, sizeof err);
      fprintf(out, "positions: unavailable: %s\n", err);
      chd_mdb_free(mdb);
      mdb = NULL;
      rc = -1;
    }
    if (mdb && inv->cfg.view_data &&
        (!(view = chd_viewdb_new(inv->cfg.view_data)) ||
         chd_viewdb_connect(view) != CHD_STORE_OK)) {
      snprintf(err, sizeof err, "%s", view ? chd_viewdb_error(view) : "out of memory");
      chd_log_redact(err, sizeof err);
      fprintf(out, "positions: unavailable: %s\n", err);
      chd_viewdb_free(view);
      view = NULL;
      rc = -1;
    }
  }
  fprintf(out, "config %s: %zu plugin instance%s, plugin directory %s\n", inv->cfg.path,
          inv->count, inv->count == 1 ? "" : "s", inv->cfg.plugin_dir);
  {
    char masked[2048];

    chd_conninfo_mask(inv->cfg.message_store, masked, sizeof masked);
    fprintf(out, "message store: %s\n", masked);
    if (inv->cfg.view_data) {
      chd_conninfo_mask(inv->cfg.view_data, masked, sizeof masked);
      fprintf(out, "view data:     %s\n", masked);
    }
  }
  for (size_t i = 0; i < inv->count; i++) {
    const chd_instance_config *inst = &inv->cfg.instances[i];
    const chd_plugin *p = &inv->plugins[i];

    fprintf(out, "\n[%s] %s %s (%s, ABI %u.%u)\n", inst->name, p->desc.name, p->desc.version,
            chd_kind_name(p->desc.kind), p->desc.abi_major, p->desc.abi_minor);
    fprintf(out, "  file:      %s (%lld bytes, build id %s)\n", p->path, (long long)p->size,
            p->build_id[0] ? p->build_id : "none");
    if (p->desc.kind == CH_KIND_APPLICATION) {
      fprintf(out, "  site:      http://%s%s (workers %" PRId64 ")\n", inst->listen,
              strcmp(chd_web_mount(inv, i), "/") ? chd_web_mount(inv, i) : "/",
              inst->workers);
      for (const ch_route *r = p->desc.routes; r && r->pattern; r++)
        fprintf(out, "  route %-6s %s\n", r->method, r->pattern);
    } else if (inst->position_store == CHD_POSITION_VIEW_DATA ? inst->batch_transaction
                                                       : inst->store_transaction)
      fprintf(out, "  positions: %s, with every batch%s", store_name(inst),
              inst->position_store == CHD_POSITION_VIEW_DATA &&
              !inst->view_synchronous_commit ? " (asynchronous commit)" : "");
    else
      fprintf(out, "  positions: %s, every %" PRId64 " messages%s", store_name(inst),
              inst->position_update_interval,
              inst->position_store == CHD_POSITION_VIEW_DATA &&
              !inst->view_synchronous_commit ? " (asynchronous commit)" : "");
    if (p->desc.kind != CH_KIND_APPLICATION)
      fprintf(out, "; batch %" PRId64 " (%s), poll %" PRId64 " ms", inst->batch_size,
            inst->batch_transaction ? "one view transaction" : "no transaction",
            inst->poll_interval_ms);
    if (inst->group_auto)
      fprintf(out, "; group of %" PRId64 " slots shared through leases (lease timeout %"
              PRId64 " ms)", inst->group_size, inst->lease_timeout_ms);
    else if (inst->group_size > 0)
      fprintf(out, "; group member %" PRId64 " of %" PRId64, inst->group_member,
              inst->group_size);
    if (p->desc.kind != CH_KIND_APPLICATION)
      fputc('\n', out);
    for (const ch_config_key *k = p->desc.config_keys; k && k->name; k++) {
      const chd_config_kv *kv = chd_config_plugin_key(inst, k->name);
      bool secret = chd_config_is_secret(p->desc.secret_keys, k->name);
      const char *value = kv ? kv->value : k->default_value;

      if (value && secret)
        value = CHD_SECRET_TEXT;
      fprintf(out, "  setting %s = %s%s%s", k->name, value ? value : "(unset)",
              kv ? "" : k->default_value ? " (default)" : "", k->required ? ", required" : "");
      if (kv && kv->origin)     /* a secret's file or environment variable */
        fprintf(out, " (from %s)", kv->origin);
      if (k->help)
        fprintf(out, ": %s", k->help);
      fputc('\n', out);
    }
    for (size_t s = 0; p->desc.subscriptions[s].stream_name; s++) {
      const ch_subscription *sub = &p->desc.subscriptions[s];
      char id[256], types[1024];

      chd_sub_effective_id(sub, inst, id, sizeof id);
      handled_types(sub, types, sizeof types);
      fprintf(out, "  subscription %s: %s", id, sub->stream_name);
      if (sub->origin_stream_name)
        fprintf(out, " (origin %s)", sub->origin_stream_name);
      fprintf(out, "\n    handles: %s%s\n", types, sub->handle_batch ? " (and batches)" : "");
      for (int64_t j = 0; mdb && j < chd_group_ids(inst); j++) {
        int64_t pos = 0, stopped = 0;
        char reason[1024], slot[32] = "";
        chd_position_store ps;
        chd_position_store_init(&ps, inst->position_store, inst->position_format, mdb, view);
        chd_group_id(sub, inst, j, id, sizeof id);
        if (inst->group_auto)
          snprintf(slot, sizeof slot, " of slot %" PRId64, j);
        if (chd_position_inspect(&ps, sub->stream_name, id, &pos, &stopped, reason,
                                 sizeof reason) != CHD_STORE_OK) {
          fprintf(out, "    position%s: unavailable: %s\n", slot, chd_position_error(&ps));
          rc = -1;
        } else if (stopped) {
          fprintf(out, "    position%s: %" PRId64 "; STOPPED at global position %" PRId64
                  ": %s\n", slot, pos, stopped, reason);
        } else {
          fprintf(out, "    position%s: %" PRId64 "\n", slot, pos);
        }
      }
    }
  }
  chd_mdb_free(mdb);
  chd_viewdb_free(view);
  return rc;
}
