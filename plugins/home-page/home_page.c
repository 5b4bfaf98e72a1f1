/*
 * home_page.c - the book's home-page aggregator (chapter 4).
 *
 * Subscribes to `viewing` as aggregators:home-page and counts VideoViewed
 * events into the `home` row of the `pages` view table:
 *   page_data = {"videosWatched": N, "lastViewProcessed": G}
 * The guard `lastViewProcessed < globalPosition` makes every event count
 * once, however often it is delivered (positions are bigint, not the
 * book's int). Neither handler looks at an event's data or metadata, so the
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

/* incrementVideosWatched */
static ch_result video_viewed(ch_ctx *ctx, void *state, const ch_message *msg)
{
  char pos[24];
  const char *params[1] = { pos };
  (void)state;

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
 * A whole batch in one statement: count the VideoViewed events beyond
 * lastViewProcessed and move it to the last of them. Same result as the
 * handler applied to each event in turn.
 */
static ch_result video_viewed_batch(ch_ctx *ctx, void *state, const ch_message *msgs,
                                    size_t count)
{
  size_t cap = count * 21 + 3, len = 0;
  char *list = malloc(cap);
  const char *params[1];
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
  }
  list[len++] = '}';
  list[len] = '\0';
  if (len == 2) {
    free(list);
    return CH_OK;
  }
  params[0] = list;
  r = exec(ctx,
           "WITH viewed AS (SELECT g FROM unnest($1::bigint[]) AS g),"
           " home AS (SELECT (page_data->>'lastViewProcessed')::bigint AS last"
           "          FROM pages WHERE page_name = 'home'),"
           " fresh AS (SELECT count(*) AS n, max(g) AS top FROM viewed, home"
           "           WHERE g > home.last)"
           " UPDATE pages SET page_data = jsonb_set(jsonb_set(page_data,"
           " '{videosWatched}', ((page_data->>'videosWatched')::bigint + fresh.n)::text::jsonb),"
           " '{lastViewProcessed}', fresh.top::text::jsonb)"
           " FROM fresh WHERE page_name = 'home' AND fresh.n > 0",
           1, params);
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
  { "viewing", "aggregators:home-page", NULL, handlers, video_viewed_batch,
    { NULL, NULL, NULL } },
  {0},
};

/* Its handlers read only the type and the global position of each event:
 * the host need not decode data and metadata. */
static const char *const envelope_only[] = { "aggregators:home-page", NULL };

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
