/*
 * admin_streams.c - the book's admin-streams aggregator (chapter 13): the
 * Admin Portal's list of streams.
 *
 * Subscribes to `$all` with an `$any` handler and keeps one row of
 * `admin_streams` per stream: how many messages it holds, and the id and
 * global position of its last one. The guard
 * `last_message_global_position < globalPosition` makes every message count
 * once, however often it is delivered.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include <comphost/plugin.h>

#include "view_sql.h"

static const ch_migration migrations[] = {
  { "20190830155603_create-admin-streams",
    "CREATE TABLE IF NOT EXISTS admin_streams ("
    " stream_name text PRIMARY KEY,"
    " message_count integer NOT NULL DEFAULT 0,"
    " last_message_id text,"
    " last_message_global_position bigint NOT NULL DEFAULT 0)",
    { NULL, NULL } },
  {0},
};

static int init(ch_ctx *ctx, void **state)
{
  *state = NULL;
  if (!view(ctx)) {
    ch_host->set_error(ctx, "admin-streams needs a view database ([host] view_data)");
    return -1;
  }
  return 0;
}

/* upsertStream */
static ch_result any(ch_ctx *ctx, void *state, const ch_message *msg)
{
  char gp[24];
  const char *params[3] = { msg->stream_name, msg->id, gp };
  (void)state;

  snprintf(gp, sizeof gp, "%" PRId64, msg->global_position);
  return exec(ctx,
              "INSERT INTO admin_streams AS s"
              " (stream_name, message_count, last_message_id, last_message_global_position)"
              " VALUES ($1, 1, $2, $3::bigint)"
              " ON CONFLICT (stream_name) DO UPDATE"
              " SET message_count = s.message_count + 1,"
              " last_message_id = EXCLUDED.last_message_id,"
              " last_message_global_position = EXCLUDED.last_message_global_position"
              " WHERE s.last_message_global_position < EXCLUDED.last_message_global_position",
              3, params);
}

/*
 * A whole batch in one statement: per stream, the messages beyond
 * last_message_global_position are counted, and the last of them becomes the
 * stream's last message.
 */
static ch_result any_batch(ch_ctx *ctx, void *state, const ch_message *msgs, size_t count)
{
  enum { NCOLS = 3 };
  pg_array cols[NCOLS];
  const char *params[NCOLS];
  ch_result r = CH_OK;
  (void)state;

  memset(cols, 0, sizeof cols);
  for (size_t i = 0; i < count; i++) {
    add_text(&cols[0], msgs[i].stream_name);
    add_text(&cols[1], msgs[i].id);
    add_int(&cols[2], msgs[i].global_position);
  }
  if (count == 0)
    goto out;
  for (int c = 0; c < NCOLS; c++) {
    params[c] = finish(&cols[c]);
    if (!params[c]) {
      ch_host->set_error(ctx, "out of memory");
      r = CH_RETRY;
      goto out;
    }
  }
  r = exec(ctx,
           "WITH e AS ("
           "  SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])"
           "    AS e(stream_name, id, gp)),"
           " f AS ("
           "  SELECT e.stream_name, count(*) AS n, max(e.gp) AS gp,"
           "   (array_agg(e.id ORDER BY e.gp DESC))[1] AS id"
           "  FROM e LEFT JOIN admin_streams s ON s.stream_name = e.stream_name"
           "  WHERE e.gp > coalesce(s.last_message_global_position, 0)"
           "  GROUP BY e.stream_name)"
           " INSERT INTO admin_streams AS s"
           "  (stream_name, message_count, last_message_id, last_message_global_position)"
           " SELECT stream_name, n, id, gp FROM f"
           " ON CONFLICT (stream_name) DO UPDATE"
           "  SET message_count = s.message_count + EXCLUDED.message_count,"
           "  last_message_id = EXCLUDED.last_message_id,"
           "  last_message_global_position = EXCLUDED.last_message_global_position"
           " WHERE s.last_message_global_position < EXCLUDED.last_message_global_position",
           NCOLS, params);

out:
  for (int c = 0; c < NCOLS; c++)
    pg_array_release(&cols[c]);
  return r;
}

static int reset(ch_ctx *ctx, void *state)
{
  (void)state;
  return exec(ctx, "TRUNCATE admin_streams", 0, NULL) == CH_OK ? 0 : -1;
}

static const ch_handler handlers[] = {
  { "$any", any, { NULL, NULL } },
  {0},
};

static const ch_subscription subscriptions[] = {
  { "$all", "6db9a0ab-7679-4b02-b5ad-2ebc8ae06b6a", NULL, handlers, any_batch,
    { NULL, NULL, NULL } },
  {0},
};

static const ch_plugin_desc admin_streams = CH_PLUGIN_DESC(
  .kind = CH_KIND_AGGREGATOR,
  .name = "admin-streams",
  .version = "1.0.0",
  .description = "the Admin Portal's streams: message count and last message of every stream",
  .subscriptions = subscriptions,
  .migrations = migrations,
  .init = init,
  .reset = reset);

CH_PLUGIN_DEFINE(admin_streams)
