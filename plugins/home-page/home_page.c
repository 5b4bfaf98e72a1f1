/*
 * home_page.c - the book's home-page aggregator (chapter 4).
 *
 * Subscribes to `viewing` as aggregators:home-page and counts VideoViewed
 * events into the `home` row of the `pages` view table:
 *   page_data = {"videosWatched": N, "lastViewProcessed": G}
 * and, run as a consumer group, "lastViewProcessedBy": {"<member id>": G, ...}
 *
 * The book guards the count with lastViewProcessed, the last global
 * position counted, so that an event delivered again counts once. One guard
 * serves one reader; the members of a consumer group each read their share
 * of the category, at their own speed, and one member's guard would make
 * the others drop their events. So in a group the guard is kept per
 * subscriber id (per member: "aggregators:home-page:3"), in
 * lastViewProcessedBy; within one member the global positions only grow.
 * lastViewProcessed stays the highest of them. The only reader keeps the
 * book's row and statements. With position_store = view_data the host
 * delivers each batch exactly once and the guard never refuses anything;
 * with message-store positions it absorbs redeliveries, also those of a
 * member whose slot another host took over.
 *
 * The count and the guard move in one UPDATE whose increment is computed
 * from the row itself, so that two writers of the same member (a host that
 * lost its slot and the one that took it over) never count an event twice:
 * the second waits for the first's row lock and counts what lies beyond the
 * guard as the first left it.
 *
 * Neither handler looks at an event's data or metadata, so the
 * subscription is envelope-only (ABI 1.1): the host leaves them undecoded,
 * and an event whose data jansson cannot decode counts like any other.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include <comphost/plugin.h>

#include "view_sql.h"

#define SUBSCRIBER_ID "aggregators:home-page"

static const ch_migration migrations[] = {
  { "20180303013723_create-pages",
    "CREATE TABLE IF NOT EXISTS pages ("
    " page_name text PRIMARY KEY,"
    " page_data jsonb DEFAULT '{}')", { NULL, NULL } },
  {0},
};

static int init(ch_ctx *ctx, void **state)
{
  *state = NULL;
  if (!view(ctx)) {
    ch_host->set_error(ctx, "home-page needs a view database ([host] view_data)");
    return -1;
  }
  /* ensureHomePage */
  return exec(ctx, "INSERT INTO pages (page_name, page_data)"
                   " VALUES ('home', '{\"lastViewProcessed\": 0, \"videosWatched\": 0}')"
                   " ON CONFLICT DO NOTHING", 0, NULL) == CH_OK ? 0 : -1;
}

/*
 * The subscriber id in hand when it is a consumer group member's
 * ("aggregators:home-page:3"), NULL when the subscription is the only
 * reader of the category (then the book's one guard is right). A host
 * without subscriber_id() (an earlier 1.1) runs no shared group.
 */
static const char *group_member(ch_ctx *ctx)
{
  const char *id = CH_HOST_HAS(ch_host, subscriber_id) ? ch_host->subscriber_id(ctx) : NULL;

  return id && strcmp(id, SUBSCRIBER_ID) != 0 ? id : NULL;
}

/*
 * Count the events at `positions` (a PostgreSQL array, in global order,
 * the last one `top`) that lie beyond the guard, and move the guard to
 * `top`: the book's lastViewProcessed for the only reader, the member's
 * entry of lastViewProcessedBy in a group.
 */
static ch_result count_viewed(ch_ctx *ctx, const char *positions, int64_t top)
{
  const char *member = group_member(ctx);
  char last[24];
  const char *params[3] = { positions, last, member };

  snprintf(last, sizeof last, "%" PRId64, top);
  if (!member)
    return exec(ctx,
                "UPDATE pages SET page_data = jsonb_set(jsonb_set(page_data,"
                " '{videosWatched}', ((page_data->>'videosWatched')::bigint"
                "   + (SELECT count(*) FROM unnest($1::bigint[]) AS g"
                "      WHERE g > (page_data->>'lastViewProcessed')::bigint))::text::jsonb),"
                " '{lastViewProcessed}', $2::text::jsonb)"
                " WHERE page_name = 'home'"
                " AND (page_data->>'lastViewProcessed')::bigint < $2::bigint",
                2, params);
  return exec(ctx,
              "UPDATE pages SET page_data = page_data || jsonb_build_object("
              " 'videosWatched', (page_data->>'videosWatched')::bigint"
              "   + (SELECT count(*) FROM unnest($1::bigint[]) AS g WHERE g >"
              "      coalesce((page_data->'lastViewProcessedBy'->>$3::text)::bigint, 0)),"
              " 'lastViewProcessed',"
              "   greatest((page_data->>'lastViewProcessed')::bigint, $2::bigint),"
              " 'lastViewProcessedBy', coalesce(page_data->'lastViewProcessedBy', '{}')"
              "   || jsonb_build_object($3::text, $2::bigint))"
              " WHERE page_name = 'home'"
              " AND coalesce((page_data->'lastViewProcessedBy'->>$3::text)::bigint, 0)"
              "   < $2::bigint",
              3, params);
}

/* incrementVideosWatched: the book's statement for the only reader */
static ch_result video_viewed(ch_ctx *ctx, void *state, const ch_message *msg)
{
  char list[32], pos[24];
  const char *params[1] = { pos };
  (void)state;

  if (group_member(ctx)) {
    snprintf(list, sizeof list, "{%" PRId64 "}", msg->global_position);
    return count_viewed(ctx, list, msg->global_position);
  }
  snprintf(pos, sizeof pos, "%" PRId64, msg->global_position);
  return exec(ctx,
              "UPDATE pages SET page_data = jsonb_set(jsonb_set(page_data,"
              " '{videosWatched}', ((page_data->>'videosWatched')::bigint + 1)::text::jsonb),"
              " '{lastViewProcessed}', $1::text::jsonb)"
              " WHERE page_name = 'home'"
              " AND (page_data->>'lastViewProcessed')::bigint < $1::bigint",
              1, params);
}
/*
 * A whole batch in one statement: the same result as the handler applied
 * to each event in turn.
 */
static ch_result video_viewed_batch(ch_ctx *ctx, void *state, const ch_message *msgs,
                                    size_t count)
{
  size_t cap = count * 21 + 3, len = 0;
  char *list = malloc(cap);
  int64_t top = 0;
  ch_result r;
  (void)state;

  if (!list) {
    ch_host->set_error(ctx, "out of memory");
    return CH_RETRY;
  }
  list[len++] = '{';
  for (size_t i = 0; i < count; i++) {
    if (strcmp(msgs[i].type, "VideoViewed") != 0)
      continue;
    len += (size_t)snprintf(list + len, cap - len, "%s%" PRId64, len > 1 ? "," : "",
                            msgs[i].global_position);
    top = msgs[i].global_position;
  }
  list[len++] = '}';
  list[len] = '\0';
  r = len == 2 ? CH_OK : count_viewed(ctx, list, top);
  free(list);
  return r;
}

static int reset(ch_ctx *ctx, void *state)
{
  (void)state;
  return exec(ctx, "UPDATE pages SET page_data ="
                   " '{\"lastViewProcessed\": 0, \"videosWatched\": 0}'"
                   " WHERE page_name = 'home'", 0, NULL) == CH_OK ? 0 : -1;
}

static const ch_handler handlers[] = {
  { "VideoViewed", video_viewed, { NULL, NULL } },
  {0},
};

static const ch_subscription subscriptions[] = {
  { "viewing", SUBSCRIBER_ID, NULL, handlers, video_viewed_batch,
    { NULL, NULL, NULL } },
  {0},
};

/* Its handlers read only the type and the global position of each event:
 * the host need not decode data and metadata. */
static const char *const envelope_only[] = { SUBSCRIBER_ID, NULL };

static const ch_plugin_desc home_page = CH_PLUGIN_DESC(
  .kind = CH_KIND_AGGREGATOR,
  .name = "home-page",
  .version = "1.0.0",
  .description = "the book's home page: how many videos were watched",
  .subscriptions = subscriptions,
  .migrations = migrations,
  .init = init,
  .reset = reset,
  .envelope_only = envelope_only);

CH_PLUGIN_DEFINE(home_page)
