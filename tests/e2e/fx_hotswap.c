/*
 * fx_hotswap.c - a plugin built twice, as version "1" and "2" of the plugin
 * fx-hotswap (FX_VERSION), for the hot-swap tests: every message of the
 * category `hswap` is recorded as a row (global position, version) of
 * hs_seen, with no unique key, so that a message handled twice shows twice.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdio.h>

#include <libpq-fe.h>

#include <comphost/plugin.h>

#ifndef FX_VERSION
#error "FX_VERSION must be set"
#endif

static const ch_migration migrations[] = {
  { "1_hs_seen", "CREATE TABLE IF NOT EXISTS hs_seen (global_position bigint, version text)",
    { 0 } },
  { NULL, NULL, { 0 } },
};

static ch_result on_any(ch_ctx *ctx, void *state, const ch_message *m)
{
  char gp[24];
  const char *params[2] = { gp, FX_VERSION };
  PGresult *res;
  ch_result r = CH_OK;

  (void)state;
  snprintf(gp, sizeof gp, "%" PRId64, m->global_position);
  res = PQexecParams((PGconn *)ch_host->view_db(ctx),
                     "INSERT INTO hs_seen (global_position, version) VALUES ($1::bigint, $2)",
                     2, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(res) != PGRES_COMMAND_OK) {
    ch_host->set_error(ctx, "%s", PQresultErrorMessage(res));
    r = CH_RETRY;
  }
  PQclear(res);
  return r;
}

static const ch_handler handlers[] = {
  { "$any", on_any, { 0 } },
  { NULL, NULL, { 0 } },
};

static const ch_subscription subscriptions[] = {
  { .stream_name = "hswap", .subscriber_id = "fx:hotswap", .handlers = handlers },
  { .stream_name = NULL },
};

static const ch_plugin_desc plugin = {
  .magic = CH_PLUGIN_MAGIC,
  .abi_major = CH_ABI_MAJOR,
  .abi_minor = CH_ABI_MINOR,
  .struct_size = sizeof(ch_plugin_desc),
  .kind = CH_KIND_AGGREGATOR,
  .name = "fx-hotswap",
  .version = FX_VERSION,
  .description = "records which version handled each message",
  .subscriptions = subscriptions,
  .migrations = migrations,
};

CH_PLUGIN_DEFINE(plugin)
