/*
 * video_publishing.c - the book's video-publishing component (chapters 10
 * and 11).
 *
 * Subscribes to `videoPublishing:command` as video-publishing and writes to
 * videoPublishing-<videoId>:
 *   PublishVideo {ownerId, sourceUri, videoId}
 *       -> VideoPublished {ownerId, sourceUri, transcodedUri, videoId}, or
 *          VideoPublishingFailed {ownerId, sourceUri, videoId, reason};
 *          once per video: a video with either is not published again
 *   NameVideo {name, videoId}
 *       -> VideoNamed {name}, or VideoNameRejected {name, reason} for a
 *          blank, missing or non-string name
 *
 * NameVideo's idempotence (the book's erratum, spec section 9 item 15): the
 * book compares the command's global position with the global position of
 * the last naming *event*, which skips the second of two NameVideo commands
 * queued before the first is handled. Here each naming event records in its
 * metadata the global position of the command that caused it
 * (causationMessageGlobalPosition), the projection keeps the last one as
 * `sequence`, and a command at or before it is skipped (Eventide's sequence
 * pattern): a redelivered command is skipped, a newer one is handled. Naming
 * events without that field (written by the book's code) count with their
 * own global position, as in the book.
 *
 * Events are written with the version the projection saw as expected
 * version; on a conflict the handler projects again and decides again.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <comphost/plugin.h>

#include "checks.h"
#include "transcoder.h"

#define MAX_ATTEMPTS 5
#define CH_STR_(x) #x
#define CH_STR(x) CH_STR_(x)
/* the book's FAKE_TRANSCODING_DESTINATION */
#define FAKE_TRANSCODING_DESTINATION "https://www.youtube.com/watch?v=GI_P3UtZXAA"

typedef struct state {
  transcoder *transcoder;
} state;

/* videoPublishingProjection: only what the handlers decide on */
typedef struct video {
  bool publishing_attempted;
  int64_t sequence;            /* global position of the last naming command handled */
} video;

static void video_init(void *entity)
{
  memset(entity, 0, sizeof(video));
}

static void on_publishing_attempted(void *entity, const ch_message *e)
{
  video *v = entity;
  (void)e;

  v->publishing_attempted = true;
}

static void on_naming(void *entity, const ch_message *e)
{
  video *v = entity;

  v->sequence = causation_position(e);
}

static const ch_reducer video_reducers[] = {
  { "VideoPublished", on_publishing_attempted, { NULL, NULL } },
  { "VideoPublishingFailed", on_publishing_attempted, { NULL, NULL } },
  { "VideoNamed", on_naming, { NULL, NULL } },
  { "VideoNameRejected", on_naming, { NULL, NULL } },
  {0},
};

static const ch_projection video_projection = { video_init, video_reducers };

static ch_result host_failed(ch_ctx *ctx, int rc, const char *what)
{
  ch_host->set_error(ctx, "%s: %s", what,
                     *ch_host->last_error(ctx) ? ch_host->last_error(ctx) : "out of memory");
  return rc == CH_RC_UNAVAILABLE ? CH_RETRY : CH_FAIL;
}

static ch_result out_of_memory(ch_ctx *ctx)
{
  ch_host->set_error(ctx, "out of memory");
  return CH_RETRY;
}

static const char *nonempty_string(const json_t *data, const char *key)
{
  const char *s = json_string_value(json_object_get(data, key));

  return s && *s ? s : NULL;
}

/* The video a command is about: data.videoId when usable, else the stream's
 * id, else the UUID v5 of an id too long to use (checks.h), in buf. */
static const char *video_id_of(const ch_message *cmd, char buf[37])
{
  const char *id = nonempty_string(cmd->data, "videoId");

  return usable_id(id) ? id : answer_id(id, ch_host->stream_id(cmd->stream_name), buf);
}

static char *video_stream(const char *video_id)
{
  size_t n = strlen("videoPublishing-") + strlen(video_id) + 1;
  char *s = malloc(n);

  if (s)
    snprintf(s, n, "videoPublishing-%s", video_id);
  return s;
}

/* Is the PublishVideo command's data what the contract says? If not, why.
 * The ids name a stream or are indexed in the views: they have a length
 * limit (checks.h). */
static bool valid_publish(const json_t *data, char *reason, size_t size)
{
  static const checked_field fields[] = {
    { "ownerId", MAX_ID_BYTES }, { "sourceUri", SIZE_MAX }, { "videoId", MAX_ID_BYTES },
  };

  return checked_fields(data, fields, sizeof fields / sizeof fields[0], reason, size);
}

/* VideoPublishingFailed's data: what the command had, the video and why.
 * An ownerId too long to be one is left out. */
static json_t *failed_data(const json_t *cmd, const char *video_id, const char *reason)
{
  json_t *d = json_object();
  json_t *owner = json_object_get(cmd, "ownerId"), *source = json_object_get(cmd, "sourceUri");

  if (json_is_string(owner) && json_string_length(owner) > MAX_ID_BYTES)
    owner = NULL;

  if (!d || (owner && json_object_set(d, "ownerId", owner) != 0) ||
      (source && json_object_set(d, "sourceUri", source) != 0) ||
      json_object_set_new(d, "videoId", json_string(video_id)) != 0 ||
      json_object_set_new(d, "reason", json_string(reason)) != 0) {
    json_decref(d);
    return NULL;
  }
  return d;
}

/*
 * Write type/data to stream with the expected version, after a decision
 * made on that version. Returns CH_RC_OK (written or already written),
 * CH_RC_CONFLICT (decide again), or another CH_RC_* with ch_result in *r.
 */
static int write_decided(ch_ctx *ctx, const char *stream, const char *type, json_t *data,
                         json_t *meta, int64_t version, ch_result *r)
{
  int rc;

  if (!data || !meta) {
    json_decref(data);
    json_decref(meta);
    *r = out_of_memory(ctx);
    return CH_RC_UNAVAILABLE;
  }
  rc = ch_host->write(ctx, stream, type, data, meta, version, NULL);
  json_decref(data);
  json_decref(meta);
  if (rc == CH_RC_OK || rc == CH_RC_ALREADY_WRITTEN) {
    *r = CH_OK;
    return CH_RC_OK;
  }
  if (rc == CH_RC_CONFLICT) {
    ch_host->log(ctx, CH_LOG_INFO, "%s changed while we handled the command (%s): reading it"
                 " again", stream, ch_host->last_error(ctx));
    *r = CH_RETRY;
    ch_host->set_error(ctx, "%s kept changing: %s", stream, ch_host->last_error(ctx));
    return rc;
  }
  *r = host_failed(ctx, rc, "cannot write to the video");
  return rc;
}

/* PublishVideo (p164-170) */
static ch_result handle_publish(ch_ctx *ctx, void *st, const ch_message *cmd)
{
  state *s = st;
  char reason[600], uuid[37];
  bool valid = valid_publish(cmd->data, reason, sizeof reason);
  const char *video_id = video_id_of(cmd, uuid);
  char *stream;
  ch_result r = CH_OK;

  if (!video_id) {
    ch_host->set_error(ctx, "PublishVideo names no video (%s), in the data nor in the stream"
                       " name", reason);
    return CH_SKIP;
  }
  if (!(stream = video_stream(video_id)))
    return out_of_memory(ctx);

  for (int attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    video v;
    int64_t version = CH_VERSION_ANY;
    int rc = ch_host->fetch(ctx, stream, &video_projection, &v, &version);
    bool ok = valid;
    char *uri = NULL;
    json_t *data;

    if (rc == CH_RC_UNAVAILABLE) {
      r = host_failed(ctx, rc, "cannot load the video");
      break;
    }
    if (rc != CH_RC_OK) {
      /* the book: any error, loading too, is a failed publication */
      snprintf(reason, sizeof reason, "cannot load the video: %s", ch_host->last_error(ctx));
      ok = false;
      version = CH_VERSION_ANY;
    } else if (v.publishing_attempted) {
      ch_host->log(ctx, CH_LOG_DEBUG, "%s: publishing was attempted already", stream);
      break;
    }
    if (ok && s->transcoder->transcode(s->transcoder, ctx, video_id,
                                       nonempty_string(cmd->data, "sourceUri"), &uri, reason,
                                       sizeof reason) != 0)
      ok = false;
    if (ok) {
      data = json_pack("{s:O, s:O, s:s, s:s}", "ownerId", json_object_get(cmd->data, "ownerId"),
                       "sourceUri", json_object_get(cmd->data, "sourceUri"),
                       "transcodedUri", uri, "videoId", video_id);
    } else {
      ch_host->log(ctx, CH_LOG_WARN, "%s: VideoPublishingFailed: %s", stream, reason);
      data = failed_data(cmd->data, video_id, reason);
    }
    free(uri);
    rc = write_decided(ctx, stream, ok ? "VideoPublished" : "VideoPublishingFailed", data,
                       ch_host->follow(ctx, cmd, NULL), version, &r);
    if (rc != CH_RC_CONFLICT)
      break;
  }
  free(stream);
  return r;
}

/* Is NameVideo's data valid (the book's presence constraint, and types)? If
 * not, the reason, in the form of the book's example (p176). */
static bool valid_name(const json_t *data, char *reason, size_t size)
{
  const char *field = NULL, *problem = NULL;
  json_t *name = json_object_get(data, "name"), *id = json_object_get(data, "videoId");

  if (!json_is_object(data)) {
    field = "data";
    problem = "Must be an object";
  } else if (!name || json_is_null(name) ||
             (json_is_string(name) && !json_string_value(name)[strspn(json_string_value(name),
                                                                       " \t\r\n\f\v")])) {
    field = "name";
    problem = "Can't be blank";
  } else if (!json_is_string(name)) {
    field = "name";
    problem = "Must be a string";
  } else if (!id || !json_is_string(id) || !*json_string_value(id)) {
    field = "videoId";
    problem = !id ? "Can't be blank" : "Must be a non-empty string";
  } else if (json_string_length(id) > MAX_ID_BYTES) {
    field = "videoId";
    problem = "Is too long (maximum is " CH_STR(MAX_ID_BYTES) " bytes)";
  }
  if (!field)
    return true;
  snprintf(reason, size, "ValidationError**{ \"%s\": [ \"%s\" ]}", field, problem);
  return false;
}

/* NameVideo (p181-186), with the sequence of the causing command */
static ch_result handle_name(ch_ctx *ctx, void *st, const ch_message *cmd)
{
  char reason[200], uuid[37];
  bool valid = valid_name(cmd->data, reason, sizeof reason);
  const char *video_id = video_id_of(cmd, uuid);
  char *stream;
  ch_result r = CH_OK;
  (void)st;

  if (!video_id) {
    ch_host->set_error(ctx, "NameVideo names no video, in the data nor in the stream name");
    return CH_SKIP;
  }
  if (!(stream = video_stream(video_id)))
    return out_of_memory(ctx);

  for (int attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    video v;
    int64_t version = CH_VERSION_ANY;
    int rc = ch_host->fetch(ctx, stream, &video_projection, &v, &version);
    json_t *data, *name = json_object_get(cmd->data, "name");

    if (rc != CH_RC_OK) {
      r = host_failed(ctx, rc, "cannot load the video");
      break;
    }
    if (v.sequence >= cmd->global_position) {
      ch_host->log(ctx, CH_LOG_DEBUG, "%s: this NameVideo was handled already (sequence %"
                   PRId64 ")", stream, v.sequence);
      break;
    }
    if (valid) {
      data = json_pack("{s:O}", "name", name);
    } else {
      ch_host->log(ctx, CH_LOG_INFO, "%s: VideoNameRejected: %s", stream, reason);
      data = json_pack("{s:O, s:s}", "name", json_is_string(name) ? name : json_null(),
                       "reason", reason);
    }
    rc = write_decided(ctx, stream, valid ? "VideoNamed" : "VideoNameRejected", data,
                       ch_host->follow(ctx, cmd, NULL), version, &r);
    if (rc != CH_RC_CONFLICT)
      break;
  }
  free(stream);
  return r;
}

static int init(ch_ctx *ctx, void **out)
{
  const char *kind = ch_host->config_get(ctx, "transcoder");
  state *s;

  *out = NULL;
  if (strcmp(kind, "fake") != 0) {
    ch_host->set_error(ctx, "transcoder: '%s' is not one of fake", kind);
    return -1;
  }
  if (!(s = calloc(1, sizeof *s)) ||
      !(s->transcoder = fake_transcoder_new(ch_host->config_get(ctx, "fake_transcoded_uri")))) {
    free(s);
    ch_host->set_error(ctx, "out of memory");
    return -1;
  }
  *out = s;
  return 0;
}

static void destroy(ch_ctx *ctx, void *st)
{
  state *s = st;
  (void)ctx;

  if (!s)
    return;
  s->transcoder->destroy(s->transcoder);
  free(s);
}

static const ch_config_key config_keys[] = {
  { "transcoder", CH_CONFIG_STRING, "fake", false,
    "how videos are transcoded: fake (the book's simulation)", { NULL, NULL } },
  { "fake_transcoded_uri", CH_CONFIG_STRING, FAKE_TRANSCODING_DESTINATION, false,
    "fake: the transcodedUri of every video", { NULL, NULL } },
  {0},
};

static const ch_handler handlers[] = {
  { "PublishVideo", handle_publish, { NULL, NULL } },
  { "NameVideo", handle_name, { NULL, NULL } },
  {0},
};

static const ch_subscription subscriptions[] = {
  { "videoPublishing:command", "video-publishing", NULL, handlers, NULL, { NULL, NULL, NULL } },
  {0},
};

static const ch_plugin_desc video_publishing_desc = CH_PLUGIN_DESC(
  .kind = CH_KIND_COMPONENT,
  .name = "video-publishing",
  .version = "1.0.0",
  .description = "the book's video-publishing component: publishing and naming videos",
  .config_keys = config_keys,
  .subscriptions = subscriptions,
  .init = init,
  .destroy = destroy);

CH_PLUGIN_DEFINE(video_publishing_desc)
