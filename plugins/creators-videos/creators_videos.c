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
  { NULL, NULL, { NULL, NULL } },
};

/* A string field of data, NULL when absent or not a string. */
static const char *data_string(const ch_message *msg, const char *key)
{
  return json_string_value(json_object_get(msg->data, key));
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
  const char *params[5] = { ch_host->stream_id(msg->stream_name), data_string(msg, "ownerId"),
                            data_string(msg, "sourceUri"), data_string(msg, "transcodedUri"),
                            pos };
  (void)state;

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
  const char *params[3] = { ch_host->stream_id(msg->stream_name), data_string(msg, "name"),
                            pos };
  (void)state;

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
 * by one. A VideoNamed with no name, or an event in a stream with no id,
 * fails the batch: the host then replays it message by message, and the
 * handlers decide.
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
    bool published = strcmp(m->type, "VideoPublished") == 0;
    const char *id;
    if (!published && strcmp(m->type, "VideoNamed") != 0)
      continue;
    id = ch_host->stream_id(m->stream_name);
    if (!id || (!published && !data_string(m, "name"))) {
      ch_host->set_error(ctx, "%s at %" PRId64 " has no video id or no name", m->type,
                         m->global_position);
      r = CH_FAIL;
      goto out;
    }
    add_text(&cols[0], id);
    add_int(&cols[1], m->position);
    add_bool(&cols[2], published);
    add_text(&cols[3], published ? data_string(m, "ownerId") : NULL);
    add_text(&cols[4], published ? data_string(m, "sourceUri") : NULL);
    add_text(&cols[5], published ? data_string(m, "transcodedUri") : NULL);
    add_text(&cols[6], published ? NULL : data_string(m, "name"));
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
    free(cols[c].text);
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
  { NULL, NULL, { NULL, NULL } },
};

static const ch_subscription subscriptions[] = {
  { "videoPublishing", "aggregators:creators-videos", NULL, handlers, batch,
    { NULL, NULL, NULL } },
  { NULL, NULL, NULL, NULL, NULL, { NULL, NULL, NULL } },
};

static const ch_plugin_desc creators_videos = {
  .magic = CH_PLUGIN_MAGIC,
  .abi_major = CH_ABI_MAJOR,
  .abi_minor = CH_ABI_MINOR,
  .struct_size = sizeof(ch_plugin_desc),
  .kind = CH_KIND_AGGREGATOR,
  .name = "creators-videos",
  .version = "1.0.0",
  .description = "the Creators Portal's videos: owner, URIs and name of every published video",
  .subscriptions = subscriptions,
  .migrations = migrations,
  .init = init,
  .reset = reset,
};

CH_PLUGIN_DEFINE(creators_videos)
