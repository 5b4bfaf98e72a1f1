/*
 * video_operations.c - the book's video-operations aggregator (chapter 11).
 *
 * Subscribes to `videoPublishing` as aggregators:video-operations and records
 * the outcome of every naming request in `video_operations`, keyed by the
 * request's traceId: VideoNamed (succeeded, no reason) and VideoNameRejected
 * (failed, with data.reason). The video id comes from the stream name
 * (videoPublishing-<videoId>), not from the event's data, which has none.
 * The primary key on trace_id is the idempotence guard: the first outcome of
 * a traceId wins, however often it is delivered.
 *
 * An event that is not one (metadata.traceId or the stream's id not a
 * non-empty string of at most MAX_ID_BYTES, a VideoNameRejected whose
 * data.reason is no string) is skipped (CH_SKIP): it never reaches the table.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include <comphost/plugin.h>

#include "checks.h"
#include "view_sql.h"

static const ch_migration migrations[] = {
  { "20181224101632_create-video-operations",
    "CREATE TABLE IF NOT EXISTS video_operations ("
    " trace_id text PRIMARY KEY,"
    " video_id text NOT NULL,"
    " succeeded boolean NOT NULL,"
    " failure_reason text)",
    { NULL, NULL } },
  {0},
};

/* What a naming event says: the row of video_operations it writes. */
typedef struct outcome {
  const char *trace_id;
  const char *video_id;
  bool succeeded;
  const char *failure_reason;
} outcome;

/* The row a naming event writes, or false with the reason in why. */
static bool outcome_of(const ch_message *msg, outcome *o, char *why, size_t size)
{
  char reason[160];

  o->video_id = ch_host->stream_id(msg->stream_name);   /* streamToEntityId */
  o->succeeded = strcmp(msg->type, "VideoNamed") == 0;
  o->failure_reason = NULL;
  o->trace_id = checked_string(msg->metadata, "traceId", MAX_ID_BYTES, true, reason,
                               sizeof reason);
  if (!o->trace_id) {
    snprintf(why, size, "%s: metadata.%s", msg->type, reason);
    return false;
  }
  if (!usable_id(o->video_id)) {
    snprintf(why, size, "%s: the stream name has no usable video id", msg->type);
    return false;
  }
  if (!o->succeeded && !(o->failure_reason = checked_string(msg->data, "reason", SIZE_MAX,
                                                            false, reason, sizeof reason))) {
    snprintf(why, size, "%s: %s", msg->type, reason);
    return false;
  }
  return true;
}

static bool is_naming_event(const ch_message *msg)
{
  return strcmp(msg->type, "VideoNamed") == 0 || strcmp(msg->type, "VideoNameRejected") == 0;
}

static int init(ch_ctx *ctx, void **state)
{
  *state = NULL;
  if (!view(ctx)) {
    ch_host->set_error(ctx, "video-operations needs a view database ([host] view_data)");
    return -1;
  }
  return 0;
}

/* writeResult, for VideoNamed and VideoNameRejected alike */
static ch_result write_result(ch_ctx *ctx, void *state, const ch_message *msg)
{
  outcome o;
  char why[200];
  const char *params[4];
  (void)state;

  if (!outcome_of(msg, &o, why, sizeof why)) {
    ch_host->set_error(ctx, "skipped: %s", why);
    return CH_SKIP;
  }
  params[0] = o.trace_id;
  params[1] = o.video_id;
  params[2] = o.succeeded ? "t" : "f";
  params[3] = o.failure_reason;

  return exec(ctx,
              "INSERT INTO video_operations (trace_id, video_id, succeeded, failure_reason)"
              " VALUES ($1, $2, $3::boolean, $4) ON CONFLICT (trace_id) DO NOTHING",
              4, params);
}

/*
 * A whole batch in one statement: the first outcome of each traceId in the
 * batch, inserted unless the traceId has a row already. An event that is
 * not one fails the batch: the host then replays it message by message, and
 * the handler above skips it.
 */
static ch_result write_result_batch(ch_ctx *ctx, void *state, const ch_message *msgs,
                                    size_t count)
{
  pg_array cols[4];
  const char *params[4];
  ch_result r = CH_OK;
  size_t n = 0;
  (void)state;

  memset(cols, 0, sizeof cols);
  for (size_t i = 0; i < count; i++) {
    outcome o;
    char why[200];

    if (!is_naming_event(&msgs[i]))
      continue;
    if (!outcome_of(&msgs[i], &o, why, sizeof why)) {
      ch_host->set_error(ctx, "at %" PRId64 ": %s", msgs[i].global_position, why);
      r = CH_FAIL;
      goto out;
    }

    add_text(&cols[0], o.trace_id);
    add_text(&cols[1], o.video_id);
    add_bool(&cols[2], o.succeeded);
    add_text(&cols[3], o.failure_reason);
    n++;
  }
  if (n == 0)
    goto out;
  for (int c = 0; c < 4; c++) {
    params[c] = finish(&cols[c]);
    if (!params[c]) {
      ch_host->set_error(ctx, "out of memory");
      r = CH_RETRY;
      goto out;
    }
  }
  r = exec(ctx,
           "INSERT INTO video_operations (trace_id, video_id, succeeded, failure_reason)"
           " SELECT DISTINCT ON (trace_id) trace_id, video_id, succeeded, failure_reason"
           " FROM unnest($1::text[], $2::text[], $3::boolean[], $4::text[]) WITH ORDINALITY"
           "   AS r(trace_id, video_id, succeeded, failure_reason, n)"
           " ORDER BY trace_id, n"
           " ON CONFLICT (trace_id) DO NOTHING",
           4, params);

out:
  for (int c = 0; c < 4; c++)
    pg_array_release(&cols[c]);
  return r;
}

static int reset(ch_ctx *ctx, void *state)
{
  (void)state;
  return exec(ctx, "TRUNCATE video_operations", 0, NULL) == CH_OK ? 0 : -1;
}

static const ch_handler handlers[] = {
  { "VideoNamed", write_result, { NULL, NULL } },
  { "VideoNameRejected", write_result, { NULL, NULL } },
  {0},
};

static const ch_subscription subscriptions[] = {
  { "videoPublishing", "aggregators:video-operations", NULL, handlers, write_result_batch,
    { NULL, NULL, NULL } },
  {0},
};

static const ch_plugin_desc video_operations = CH_PLUGIN_DESC(
  .kind = CH_KIND_AGGREGATOR,
  .name = "video-operations",
  .version = "1.0.0",
  .description = "the book's video operations: the outcome of every naming request, by traceId",
  .subscriptions = subscriptions,
  .migrations = migrations,
  .init = init,
  .reset = reset);

CH_PLUGIN_DEFINE(video_operations)
