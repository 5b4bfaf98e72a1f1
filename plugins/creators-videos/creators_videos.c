/*
 * creators_videos.c - the book's creators-videos aggregator (chapters 10 and
 * 11): the videos of the Creators Portal.
 *
 * Subscribes to `videoPublishing` as aggregators:creators-videos and keeps
 * one row of `creators_portal_videos` per video stream:
 *   VideoPublished  owner_id, source_uri, transcoded_uri (name stays
 *                   'Untitled' until the video is named)
 *   VideoNamed      name
 * The book prints only the VideoNamed handler; the schema and the
 * VideoPublished handler are this port's design (docs/aggregators.md).
 *
 * The row's id is the video id taken from the stream name
 * (videoPublishing-<videoId>), for both events, and `position` is the stream
 * position of the last event applied: the book's guard `position <
 * event.position`. Both handlers are upserts, so the view does not depend on
 * which event of a stream comes first.
 *
 * An event that is not one (a stream name without a usable video id, data
 * not an object, a VideoPublished whose ownerId, sourceUri or transcodedUri
 * is not a non-empty string or whose ownerId is longer than MAX_ID_BYTES, a
 * VideoNamed whose name is no string) is skipped (CH_SKIP): it never
 * reaches the table.
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
  { "20181013180427_create_creators-portal-videos",
    "CREATE TABLE IF NOT EXISTS creators_portal_videos ("
    " id text PRIMARY KEY,"
    " owner_id text,"
    " name text NOT NULL DEFAULT 'Untitled',"
    " source_uri text,"
    " transcoded_uri text,"
    " position bigint NOT NULL);"
    "CREATE INDEX IF NOT EXISTS creators_portal_videos_owner_id_index"
    " ON creators_portal_videos (owner_id)",
    { NULL, NULL } },
  {0},
};

/* What an event writes into its video's row. */
typedef struct video_event {
  const char *id;              /* from the stream name */
  bool published;              /* VideoPublished, else VideoNamed */
  const char *owner_id, *source_uri, *transcoded_uri;   /* VideoPublished */
  const char *name;                                      /* VideoNamed */
} video_event;

/* The fields of a VideoPublished or VideoNamed, or false with why. */
static bool video_event_of(const ch_message *msg, video_event *e, char *why, size_t size)
{
  char reason[160] = "data must be an object";
  bool ok;

  memset(e, 0, sizeof *e);
  e->id = ch_host->stream_id(msg->stream_name);
  e->published = strcmp(msg->type, "VideoPublished") == 0;
  if (!usable_id(e->id)) {
    snprintf(why, size, "%s: the stream name has no usable video id", msg->type);
    return false;
  }
  if (e->published)
    ok = json_is_object(msg->data) &&
         (e->owner_id = checked_string(msg->data, "ownerId", MAX_ID_BYTES, true, reason,
                                       sizeof reason)) &&
         (e->source_uri = checked_string(msg->data, "sourceUri", SIZE_MAX, true, reason,
                                         sizeof reason)) &&
         (e->transcoded_uri = checked_string(msg->data, "transcodedUri", SIZE_MAX, true,
                                             reason, sizeof reason));
  else
    ok = json_is_object(msg->data) &&
         (e->name = checked_string(msg->data, "name", SIZE_MAX, false, reason, sizeof reason));
  if (!ok)
    snprintf(why, size, "%s: %s", msg->type, reason);
  return ok;
}

/* For the per-message handlers: the event's fields, or CH_SKIP with why. */
static ch_result check(ch_ctx *ctx, const ch_message *msg, video_event *e)
{
  char why[200];

  if (video_event_of(msg, e, why, sizeof why))
    return CH_OK;
  ch_host->set_error(ctx, "skipped: %s", why);
  return CH_SKIP;
}

static int init(ch_ctx *ctx, void **state)
{
  *state = NULL;
  if (!view(ctx)) {
    ch_host->set_error(ctx, "creators-videos needs a view database ([host] view_data)");
    return -1;
  }
  return 0;
}

static ch_result video_published(ch_ctx *ctx, void *state, const ch_message *msg)
{
  char pos[24];
  video_event e;
  const char *params[5];
  (void)state;

  if (check(ctx, msg, &e) != CH_OK)
    return CH_SKIP;
  params[0] = e.id;
  params[1] = e.owner_id;
  params[2] = e.source_uri;
  params[3] = e.transcoded_uri;
  params[4] = pos;

  snprintf(pos, sizeof pos, "%" PRId64, msg->position);
  return exec(ctx,
              "INSERT INTO creators_portal_videos AS v"
              " (id, owner_id, source_uri, transcoded_uri, position)"
              " VALUES ($1, $2, $3, $4, $5::bigint)"
              " ON CONFLICT (id) DO UPDATE SET owner_id = EXCLUDED.owner_id,"
              " source_uri = EXCLUDED.source_uri, transcoded_uri = EXCLUDED.transcoded_uri,"
              " position = EXCLUDED.position"
              " WHERE v.position < EXCLUDED.position",
              5, params);
}

/* updateVideoName */
static ch_result video_named(ch_ctx *ctx, void *state, const ch_message *msg)
{
  char pos[24];
  video_event e;
  const char *params[3];
  (void)state;

  if (check(ctx, msg, &e) != CH_OK)
    return CH_SKIP;
  params[0] = e.id;
  params[1] = e.name;
  params[2] = pos;

  snprintf(pos, sizeof pos, "%" PRId64, msg->position);
  return exec(ctx,
              "INSERT INTO creators_portal_videos AS v (id, name, position)"
              " VALUES ($1, $2, $3::bigint)"
              " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name,"
              " position = EXCLUDED.position"
              " WHERE v.position < EXCLUDED.position",
              3, params);
}

/*
 * A whole batch in one statement. Per video, the events of the batch beyond
 * the row's position are a suffix of its stream; folded, they give the last
 * VideoPublished's fields, the last VideoNamed's name and the highest
 * position, which is what the handlers above leave after applying them one
 * by one. An event that is not one fails the batch: the host then replays
 * it message by message, and the handlers skip it.
 */
static ch_result batch(ch_ctx *ctx, void *state, const ch_message *msgs, size_t count)
{
  enum { NCOLS = 7 };
  pg_array cols[NCOLS];
  const char *params[NCOLS];
  ch_result r = CH_OK;
  size_t n = 0;
  (void)state;

  memset(cols, 0, sizeof cols);
  for (size_t i = 0; i < count; i++) {
    const ch_message *m = &msgs[i];
    video_event e;
    char why[200];

    if (strcmp(m->type, "VideoPublished") != 0 && strcmp(m->type, "VideoNamed") != 0)
      continue;
    if (!video_event_of(m, &e, why, sizeof why)) {
      ch_host->set_error(ctx, "at %" PRId64 ": %s", m->global_position, why);
      r = CH_FAIL;
      goto out;
    }
    add_text(&cols[0], e.id);
    add_int(&cols[1], m->position);
    add_bool(&cols[2], e.published);
    add_text(&cols[3], e.owner_id);
    add_text(&cols[4], e.source_uri);
    add_text(&cols[5], e.transcoded_uri);
    add_text(&cols[6], e.name);
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
           "WITH e AS ("
           "  SELECT * FROM unnest($1::text[], $2::bigint[], $3::boolean[], $4::text[],"
           "                       $5::text[], $6::text[], $7::text[])"
           "    AS e(id, pos, published, owner_id, source_uri, transcoded_uri, name)),"
           " fresh AS ("
           "  SELECT e.* FROM e LEFT JOIN creators_portal_videos v ON v.id = e.id"
           "  WHERE v.id IS NULL OR e.pos > v.position),"
           " f AS ("
           "  SELECT id, max(pos) AS pos, bool_or(published) AS published,"
           "   bool_or(NOT published) AS named,"
           "   (array_agg(owner_id ORDER BY pos DESC) FILTER (WHERE published))[1] AS owner_id,"
           "   (array_agg(source_uri ORDER BY pos DESC) FILTER (WHERE published))[1]"
           "     AS source_uri,"
           "   (array_agg(transcoded_uri ORDER BY pos DESC) FILTER (WHERE published))[1]"
           "     AS transcoded_uri,"
           "   (array_agg(name ORDER BY pos DESC) FILTER (WHERE NOT published))[1] AS name"
           "  FROM fresh GROUP BY id)"
           " INSERT INTO creators_portal_videos AS v"
           "  (id, owner_id, name, source_uri, transcoded_uri, position)"
           " SELECT f.id,"
           "  CASE WHEN f.published THEN f.owner_id ELSE c.owner_id END,"
           "  CASE WHEN f.named THEN f.name ELSE coalesce(c.name, 'Untitled') END,"
           "  CASE WHEN f.published THEN f.source_uri ELSE c.source_uri END,"
           "  CASE WHEN f.published THEN f.transcoded_uri ELSE c.transcoded_uri END,"
           "  f.pos"
           " FROM f LEFT JOIN creators_portal_videos c ON c.id = f.id"
           " ON CONFLICT (id) DO UPDATE SET owner_id = EXCLUDED.owner_id,"
           "  name = EXCLUDED.name, source_uri = EXCLUDED.source_uri,"
           "  transcoded_uri = EXCLUDED.transcoded_uri, position = EXCLUDED.position"
           " WHERE v.position < EXCLUDED.position",
           NCOLS, params);

out:
  for (int c = 0; c < NCOLS; c++)
    pg_array_release(&cols[c]);
  return r;
}

static int reset(ch_ctx *ctx, void *state)
{
  (void)state;
  return exec(ctx, "TRUNCATE creators_portal_videos", 0, NULL) == CH_OK ? 0 : -1;
}

static const ch_handler handlers[] = {
  { "VideoPublished", video_published, { NULL, NULL } },
  { "VideoNamed", video_named, { NULL, NULL } },
  {0},
};

static const ch_subscription subscriptions[] = {
  { "videoPublishing", "aggregators:creators-videos", NULL, handlers, batch,
    { NULL, NULL, NULL } },
  {0},
};

static const ch_plugin_desc creators_videos = CH_PLUGIN_DESC(
  .kind = CH_KIND_AGGREGATOR,
  .name = "creators-videos",
  .version = "1.0.0",
  .description = "the Creators Portal's videos: owner, URIs and name of every published video",
  .subscriptions = subscriptions,
  .migrations = migrations,
  .init = init,
  .reset = reset);

CH_PLUGIN_DEFINE(creators_videos)
