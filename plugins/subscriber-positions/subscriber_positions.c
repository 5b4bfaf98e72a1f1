/*
 * subscriber_positions.c - the book's admin-subscriber-positions aggregator
 * (chapter 13): the Admin Portal's "Component Read Positions".
 *
 * The book names the page but prints neither the aggregator nor its table.
 * This one subscribes to the `subscriberPosition` category, where the
 * subscriptions of the book's format record their read positions (type
 * Read, data {"position": N}), and keeps one row of
 * `admin_subscriber_positions` per subscriber id (the stream name after
 * `subscriberPosition-`): its last recorded position and when it was
 * recorded. The guard `last_message_global_position < globalPosition` makes
 * a redelivered Read change nothing.
 *
 * A Read that is not one (a stream name without a usable subscriber id,
 * data not an object, data.position not an integer of 0 or more) is skipped
 * (CH_SKIP): it never reaches the table.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include <comphost/plugin.h>

#include "checks.h"
#include "view_sql.h"

static const ch_migration migrations[] = {
  { "create-admin-subscriber-positions",
    "CREATE TABLE IF NOT EXISTS admin_subscriber_positions ("
    " subscriber_id text PRIMARY KEY,"
    " position bigint NOT NULL,"
    " recorded_at timestamp NOT NULL,"
    " last_message_global_position bigint NOT NULL DEFAULT 0)",
    { NULL, NULL } },
  {0},
};

/* A Read's subscriber id and position; false with why when it has either
 * not. */
static bool read_of(const ch_message *msg, const char **subscriber_id, int64_t *position,
                    char *why, size_t size)
{
  json_t *p = json_is_object(msg->data) ? json_object_get(msg->data, "position") : NULL;

  *subscriber_id = ch_host->stream_id(msg->stream_name);
  if (!usable_id(*subscriber_id)) {
    snprintf(why, size, "Read: the stream name has no usable subscriber id");
    return false;
  }
  if (!json_is_object(msg->data)) {
    snprintf(why, size, "Read: data must be an object");
    return false;
  }
  if (!json_is_integer(p) || json_integer_value(p) < 0) {
    snprintf(why, size, "Read: position must be an integer of 0 or more");
    return false;
  }
  *position = (int64_t)json_integer_value(p);
  return true;
}

static int init(ch_ctx *ctx, void **state)
{
  *state = NULL;
  if (!view(ctx)) {
    ch_host->set_error(ctx, "subscriber-positions needs a view database ([host] view_data)");
    return -1;
  }
  return 0;
}

static ch_result read_recorded(ch_ctx *ctx, void *state, const ch_message *msg)
{
  char pos[24], gp[24], why[200];
  const char *params[4] = { NULL, pos, msg->time, gp };
  int64_t position;
  (void)state;

  if (!read_of(msg, &params[0], &position, why, sizeof why)) {
    ch_host->set_error(ctx, "skipped: %s", why);
    return CH_SKIP;
  }
  snprintf(pos, sizeof pos, "%" PRId64, position);
  snprintf(gp, sizeof gp, "%" PRId64, msg->global_position);
  return exec(ctx,
              "INSERT INTO admin_subscriber_positions AS p"
              " (subscriber_id, position, recorded_at, last_message_global_position)"
              " VALUES ($1, $2::bigint, $3::timestamp, $4::bigint)"
              " ON CONFLICT (subscriber_id) DO UPDATE SET position = EXCLUDED.position,"
              " recorded_at = EXCLUDED.recorded_at,"
              " last_message_global_position = EXCLUDED.last_message_global_position"
              " WHERE p.last_message_global_position < EXCLUDED.last_message_global_position",
              4, params);
}

/*
 * A whole batch in one statement: the last Read of each subscriber in the
 * batch, applied when it is beyond the row's guard. A Read that is not one
 * fails the batch: the host then replays it message by message, and the
 * handler skips it.
 */
static ch_result read_batch(ch_ctx *ctx, void *state, const ch_message *msgs, size_t count)
{
  enum { NCOLS = 4 };
  pg_array cols[NCOLS];
  const char *params[NCOLS];
  ch_result r = CH_OK;
  size_t n = 0;
  (void)state;

  memset(cols, 0, sizeof cols);
  for (size_t i = 0; i < count; i++) {
    const char *id;
    int64_t position;
    char why[200];

    if (strcmp(msgs[i].type, "Read") != 0)
      continue;
    if (!read_of(&msgs[i], &id, &position, why, sizeof why)) {
      ch_host->set_error(ctx, "at %" PRId64 ": %s", msgs[i].global_position, why);
      r = CH_FAIL;
      goto out;
    }
    add_text(&cols[0], id);
    add_int(&cols[1], position);
    add_text(&cols[2], msgs[i].time);
    add_int(&cols[3], msgs[i].global_position);
    n++;
  }
  if (n == 0)
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
           "INSERT INTO admin_subscriber_positions AS p"
           " (subscriber_id, position, recorded_at, last_message_global_position)"
           " SELECT DISTINCT ON (subscriber_id) subscriber_id, position, recorded_at, gp"
           " FROM unnest($1::text[], $2::bigint[], $3::timestamp[], $4::bigint[])"
           "   AS r(subscriber_id, position, recorded_at, gp)"
           " ORDER BY subscriber_id, gp DESC"
           " ON CONFLICT (subscriber_id) DO UPDATE SET position = EXCLUDED.position,"
           "  recorded_at = EXCLUDED.recorded_at,"
           "  last_message_global_position = EXCLUDED.last_message_global_position"
           " WHERE p.last_message_global_position < EXCLUDED.last_message_global_position",
           NCOLS, params);

out:
  for (int c = 0; c < NCOLS; c++)
    pg_array_release(&cols[c]);
  return r;
}

static int reset(ch_ctx *ctx, void *state)
{
  (void)state;
  return exec(ctx, "TRUNCATE admin_subscriber_positions", 0, NULL) == CH_OK ? 0 : -1;
}

static const ch_handler handlers[] = {
  { "Read", read_recorded, { NULL, NULL } },
  {0},
};

static const ch_subscription subscriptions[] = {
  { "subscriberPosition", "aggregators:subscriber-positions", NULL, handlers, read_batch,
    { NULL, NULL, NULL } },
  {0},
};

static const ch_plugin_desc subscriber_positions = CH_PLUGIN_DESC(
  .kind = CH_KIND_AGGREGATOR,
  .name = "subscriber-positions",
  .version = "1.0.0",
  .description = "the Admin Portal's component read positions: the last Read of every subscriber",
  .subscriptions = subscriptions,
  .migrations = migrations,
  .init = init,
  .reset = reset);

CH_PLUGIN_DEFINE(subscriber_positions)
