/*
 * fx_kit.c - a component for test_testkit, one command per host function.
 *
 * kit:command-<id>, subscriber kit:commands:
 *   Echo {id, text}     Echoed {text, count} to echo-<id> with the version
 *                       fetch() saw; CH_RETRY on a conflict or no database
 *   Stale {id, version} Echoed to echo-<id> expecting `version`
 *   Fail, Retry, Skip   that result, with set_error("asked to ...")
 *   Config              logs every setting
 *   Inspect {stream}    logs read_last(), stream_version() and read_stream()
 *                       of the stream, and what write() to "$all" returns
 * echo-<id>, subscriber kit:events (its own events):
 *   Echoed              Noted {text} to note-<id>
 * "$all", subscriber kit:all, origin kitProcess:
 *   $any                logs "saw <type>"
 * Settings: name (required), greeting, count, loud, dir (a path), refuse
 * (init() refuses when true).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <comphost/plugin.h>

typedef struct echo {
  int64_t count;
} echo;

static void echo_init(void *entity)
{
  ((echo *)entity)->count = 0;
}

static void echo_echoed(void *entity, const ch_message *msg)
{
  (void)msg;
  ((echo *)entity)->count++;
}

static const ch_reducer echo_reducers[] = {
  { .type = "Echoed", .fn = echo_echoed },
  {0},
};

static const ch_projection echo_projection = { echo_init, echo_reducers };

static const char *field(const ch_message *msg, const char *key)
{
  const char *s = json_string_value(json_object_get(msg->data, key));

  return s ? s : "";
}

static ch_result write_echoed(ch_ctx *ctx, const ch_message *msg, const char *text,
                              int64_t count, int64_t expected_version)
{
  char stream[128];
  const char *origin = json_string_value(json_object_get(msg->metadata, "originStreamName"));
  json_t *data = json_pack("{s:s, s:I}", "text", text, "count", (json_int_t)count);
  json_t *meta = ch_host->follow(ctx, msg, origin);
  int rc;

  snprintf(stream, sizeof stream, "echo-%s", field(msg, "id"));
  rc = ch_host->write(ctx, stream, "Echoed", data, meta, expected_version, NULL);
  json_decref(data);
  json_decref(meta);
  if (rc == CH_RC_OK || rc == CH_RC_ALREADY_WRITTEN)
    return CH_OK;
  ch_host->set_error(ctx, "writing Echoed: %s", ch_host->last_error(ctx));
  return rc == CH_RC_CONFLICT || rc == CH_RC_UNAVAILABLE ? CH_RETRY : CH_FAIL;
}

static ch_result on_echo(ch_ctx *ctx, void *state, const ch_message *msg)
{
  char stream[128];
  echo e;
  int64_t version;
  int rc;
  (void)state;

  snprintf(stream, sizeof stream, "echo-%s", field(msg, "id"));
  rc = ch_host->fetch(ctx, stream, &echo_projection, &e, &version);
  if (rc != CH_RC_OK) {
    ch_host->set_error(ctx, "fetching %s: %s", stream, ch_host->last_error(ctx));
    return rc == CH_RC_UNAVAILABLE ? CH_RETRY : CH_FAIL;
  }
  return write_echoed(ctx, msg, field(msg, "text"), e.count + 1, version);
}

static ch_result on_stale(ch_ctx *ctx, void *state, const ch_message *msg)
{
  (void)state;
  return write_echoed(ctx, msg, "stale", 0,
                      (int64_t)json_integer_value(json_object_get(msg->data, "version")));
}

static ch_result on_fail(ch_ctx *ctx, void *state, const ch_message *msg)
{
  (void)state;
  ch_host->set_error(ctx, "asked to fail: %s", field(msg, "text"));
  return CH_FAIL;
}

static ch_result on_retry(ch_ctx *ctx, void *state, const ch_message *msg)
{
  (void)state;
  (void)msg;
  ch_host->set_error(ctx, "asked to retry");
  return CH_RETRY;
}

static ch_result on_skip(ch_ctx *ctx, void *state, const ch_message *msg)
{
  (void)state;
  (void)msg;
  ch_host->set_error(ctx, "asked to skip");
  return CH_SKIP;
}

static ch_result on_config(ch_ctx *ctx, void *state, const ch_message *msg)
{
  const char *dir = ch_host->config_path(ctx, "dir");
  const char *subscriber = CH_HOST_HAS(ch_host, subscriber_id) ? ch_host->subscriber_id(ctx)
                                                                : "(none)";
  (void)state;
  (void)msg;

  ch_host->log(ctx, CH_LOG_INFO, "name=%s greeting=%s count=%" PRId64 " loud=%d dir=%s",
               ch_host->config_get(ctx, "name"), ch_host->config_get(ctx, "greeting"),
               ch_host->config_int(ctx, "count"), (int)ch_host->config_bool(ctx, "loud"),
               dir ? dir : "(null)");
  ch_host->log(ctx, CH_LOG_INFO, "subscriber=%s", subscriber ? subscriber : "(null)");
  return CH_OK;
}

static int log_message(void *arg, const ch_message *msg)
{
  ch_ctx *ctx = arg;

  ch_host->log(ctx, CH_LOG_INFO, "read %s %s at %" PRId64 "/%" PRId64, msg->stream_name,
               msg->type, msg->position, msg->global_position);
  return 0;
}

static ch_result on_inspect(ch_ctx *ctx, void *state, const ch_message *msg)
{
  const char *stream = field(msg, "stream");
  int64_t version = -99, n;
  int found, rc;
  (void)state;

  found = ch_host->read_last(ctx, stream, NULL, log_message, ctx);
  ch_host->log(ctx, CH_LOG_INFO, "read_last: %d", found);
  rc = ch_host->stream_version(ctx, stream, &version);
  ch_host->log(ctx, CH_LOG_INFO, "stream_version: %d, %" PRId64, rc, version);
  n = ch_host->read_stream(ctx, stream, 1, 2, log_message, ctx);
  ch_host->log(ctx, CH_LOG_INFO, "read_stream: %" PRId64 " (%s)", n, ch_host->last_error(ctx));
  rc = ch_host->write(ctx, "$all", "Nothing", NULL, NULL, CH_VERSION_ANY, NULL);
  ch_host->log(ctx, CH_LOG_INFO, "write to $all: %d (%s)", rc, ch_host->last_error(ctx));
  return CH_OK;
}

static ch_result on_echoed(ch_ctx *ctx, void *state, const ch_message *msg)
{
  char stream[128];
  json_t *data = json_pack("{s:s}", "text", field(msg, "text"));
  int rc;
  (void)state;

  snprintf(stream, sizeof stream, "note-%s", ch_host->stream_id(msg->stream_name));
  rc = ch_host->write(ctx, stream, "Noted", data, NULL, CH_VERSION_ANY, NULL);
  json_decref(data);
  return rc >= 0 ? CH_OK : CH_RETRY;
}

static ch_result on_any(ch_ctx *ctx, void *state, const ch_message *msg)
{
  (void)state;
  ch_host->log(ctx, CH_LOG_INFO, "saw %s", msg->type);
  return CH_OK;
}

static int init(ch_ctx *ctx, void **state)
{
  *state = NULL;
  if (ch_host->config_bool(ctx, "refuse")) {
    ch_host->set_error(ctx, "refused, as asked");
    return -1;
  }
  ch_host->log(ctx, CH_LOG_INFO, "started as %s", ch_host->config_get(ctx, "name"));
  return 0;
}

static const ch_config_key config_keys[] = {
  { .name = "name", .type = CH_CONFIG_STRING, .required = true, .help = "a name" },
  { .name = "greeting", .type = CH_CONFIG_STRING, .default_value = "Hello", .help = "a word" },
  { .name = "count", .type = CH_CONFIG_INT, .default_value = "3", .help = "a number" },
  { .name = "loud", .type = CH_CONFIG_BOOL, .default_value = "off", .help = "a flag" },
  { .name = "dir", .type = CH_CONFIG_STRING, .help = "a directory" },
  { .name = "refuse", .type = CH_CONFIG_BOOL, .help = "init() refuses" },
  {0},
};

static const ch_handler command_handlers[] = {
  { .type = "Echo", .fn = on_echo },
  { .type = "Stale", .fn = on_stale },
  { .type = "Fail", .fn = on_fail },
  { .type = "Retry", .fn = on_retry },
  { .type = "Skip", .fn = on_skip },
  { .type = "Config", .fn = on_config },
  { .type = "Inspect", .fn = on_inspect },
  {0},
};

static const ch_handler event_handlers[] = {
  { .type = "Echoed", .fn = on_echoed },
  {0},
};

static const ch_handler all_handlers[] = {
  { .type = "$any", .fn = on_any },
  {0},
};

static const ch_subscription subscriptions[] = {
  { .stream_name = "kit:command", .subscriber_id = "kit:commands", .handlers = command_handlers },
  { .stream_name = "echo", .subscriber_id = "kit:events", .handlers = event_handlers },
  { .stream_name = "$all", .subscriber_id = "kit:all", .origin_stream_name = "kitProcess",
    .handlers = all_handlers },
  {0},
};

static const ch_plugin_desc desc = CH_PLUGIN_DESC(
  .kind = CH_KIND_COMPONENT,
  .name = "fx-kit",
  .version = "1.0.0",
  .description = "the test kit's own fixture",
  .config_keys = config_keys,
  .subscriptions = subscriptions,
  .init = init);

CH_PLUGIN_DEFINE(desc)
