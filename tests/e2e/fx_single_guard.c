/*
 * fx_single_guard.c - the book's home-page aggregator as it was: one guard,
 * the last global position counted, for every reader.
 *
 * Counts VideoViewed events of `viewing` into the row 'single-guard' of
 * `pages`, and counts one only when its global position is beyond the
 * guard. test_group runs it as two consumer group members that do not move
 * together, to show that such a guard drops the events of the member that
 * is behind (home-page keeps its guard per subscriber id instead).
 */
#include <inttypes.h>
#include <stdio.h>

#include <libpq-fe.h>

#include <comphost/plugin.h>

static const ch_migration migrations[] = {
  { "20180303013723_create-pages",
    "CREATE TABLE IF NOT EXISTS pages (page_name text PRIMARY KEY, page_data jsonb DEFAULT '{}')",
    { NULL, NULL } },
  { NULL, NULL, { NULL, NULL } },
};

static ch_result run(ch_ctx *ctx, const char *sql, int n, const char *const *params)
{
  PGresult *res = PQexecParams((PGconn *)ch_host->view_db(ctx), sql, n, NULL, params, NULL,
                               NULL, 0);
  ch_result r = PQresultStatus(res) == PGRES_COMMAND_OK ? CH_OK : CH_FAIL;

  if (r != CH_OK)
    ch_host->set_error(ctx, "%s", PQresultErrorMessage(res));
  PQclear(res);
  return r;
}

static int init(ch_ctx *ctx, void **state)
{
  *state = NULL;
  return run(ctx, "INSERT INTO pages (page_name, page_data) VALUES ('single-guard',"
                  " '{\"lastViewProcessed\": 0, \"videosWatched\": 0}') ON CONFLICT DO NOTHING",
             0, NULL) == CH_OK ? 0 : -1;
}

static ch_result viewed(ch_ctx *ctx, void *state, const ch_message *msg)
{
  char pos[24];
  const char *params[1] = { pos };
  (void)state;

  snprintf(pos, sizeof pos, "%" PRId64, msg->global_position);
  return run(ctx, "UPDATE pages SET page_data = jsonb_build_object("
                  " 'videosWatched', (page_data->>'videosWatched')::bigint + 1,"
                  " 'lastViewProcessed', $1::bigint)"
                  " WHERE page_name = 'single-guard'"
                  " AND (page_data->>'lastViewProcessed')::bigint < $1::bigint", 1, params);
}

static const ch_handler handlers[] = {
  { "VideoViewed", viewed, { NULL, NULL } },
  { NULL, NULL, { NULL, NULL } },
};

static const ch_subscription subscriptions[] = {
  { "viewing", "fx:single-guard", NULL, handlers, NULL, { NULL, NULL, NULL } },
  { NULL, NULL, NULL, NULL, NULL, { NULL, NULL, NULL } },
};

static const ch_plugin_desc fx_single_guard = {
  .magic = CH_PLUGIN_MAGIC,
  .abi_major = CH_ABI_MAJOR,
  .abi_minor = CH_ABI_MINOR,
  .struct_size = sizeof(ch_plugin_desc),
  .kind = CH_KIND_AGGREGATOR,
  .name = "fx-single-guard",
  .version = "1.0.0",
  .description = "the book's single guard, to show where it fails",
  .subscriptions = subscriptions,
  .migrations = migrations,
  .init = init,
};

CH_PLUGIN_DEFINE(fx_single_guard)
