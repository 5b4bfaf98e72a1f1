/*
 * greeter.c - a complete comphost component: the example of docs/sdk.md.
 *
 * Handles Greet commands of the category greeting:command, with data
 * {"greetingId": "g-1", "name": "Ada"}, and answers in greeting-<greetingId>:
 * Greeted {"greetingId", "name", "text": "Hello, Ada!"}, once per greeting
 * however often the command comes, or GreetingRejected {"greetingId",
 * "reason"} when the name is missing, empty or longer than MAX_NAME bytes.
 */
#include <stdlib.h>
#include <string.h>

#include <comphost/plugin.h>

#define MAX_ID 64
#define MAX_NAME 100

/* The instance's state, made by init() and freed by destroy(). */
typedef struct greeter {
  const char *greeting;   /* the "greeting" setting: borrowed until destroy() */
} greeter;

/* The entity: what the stream greeting-<greetingId> says so far. */
typedef struct greeting {
  bool greeted;
} greeting;

static void greeting_init(void *entity)
{
  ((greeting *)entity)->greeted = false;
}

static void greeting_greeted(void *entity, const ch_message *msg)
{
  (void)msg;
  ((greeting *)entity)->greeted = true;
}

static const ch_reducer greeting_reducers[] = {
  { .type = "Greeted", .fn = greeting_greeted },
  {0},
};

static const ch_projection greeting_projection = { greeting_init, greeting_reducers };

/*
 * Write one event in answer to `msg`, taking ownership of `data`. Its metadata
 * (follow()) carries the command's traceId and userId, where the command is
 * (causationMessageStreamName, ...Position, ...GlobalPosition), and its
 * originStreamName, if any, so that whoever sent the command can pick out the
 * answer.
 */
static ch_result answer(ch_ctx *ctx, const ch_message *msg, const char *stream,
                        const char *type, json_t *data, int64_t expected_version)
{
  const char *origin = json_string_value(json_object_get(msg->metadata, "originStreamName"));
  json_t *metadata = ch_host->follow(ctx, msg, origin);
  int rc;

  if (!data || !metadata) {
    json_decref(data);
    json_decref(metadata);
    ch_host->set_error(ctx, "out of memory");
    return CH_RETRY;
  }
  rc = ch_host->write(ctx, stream, type, data, metadata, expected_version, NULL);
  json_decref(data);
  json_decref(metadata);
  if (rc == CH_RC_OK || rc == CH_RC_ALREADY_WRITTEN)   /* (an earlier delivery wrote it) */
    return CH_OK;
  ch_host->set_error(ctx, "writing %s to %s: %s", type, stream, ch_host->last_error(ctx));
  /* Written to meanwhile (fetch again, decide again) or no database (the host
   * reconnects): worth another try. Anything else will not get better. */
  return rc == CH_RC_CONFLICT || rc == CH_RC_UNAVAILABLE ? CH_RETRY : CH_FAIL;
}

static ch_result handle_greet(ch_ctx *ctx, void *state, const ch_message *msg)
{
  const greeter *self = state;
  const char *id = json_string_value(json_object_get(msg->data, "greetingId"));
  const char *name = json_string_value(json_object_get(msg->data, "name"));
  const char *reason = NULL;
  char stream[16 + MAX_ID];
  greeting entity;
  int64_t version;

  if (!id || !*id || strlen(id) > MAX_ID) {
    /* No entity to answer in: a malformed command. CH_SKIP has the host
     * log it (with the message), count it and move on. */
    ch_host->set_error(ctx, "Greet without a usable greetingId");
    return CH_SKIP;
  }
  strcpy(stream, "greeting-");
  strcat(stream, id);

  if (!name)
    reason = "name is missing";
  else if (!*name)
    reason = "name is empty";
  else if (strlen(name) > MAX_NAME)
    reason = "name is too long";
  if (reason)
    return answer(ctx, msg, stream, "GreetingRejected",
                  json_pack("{s:s, s:s}", "greetingId", id, "reason", reason),
                  CH_VERSION_ANY);

  /* Idempotence: a greeting that was given already is not given again. */
  if (ch_host->fetch(ctx, stream, &greeting_projection, &entity, &version) != CH_RC_OK) {
    ch_host->set_error(ctx, "fetching %s: %s", stream, ch_host->last_error(ctx));
    return CH_RETRY;
  }
  if (entity.greeted)
    return CH_OK;
  /* The expected version makes a concurrent Greeted a conflict, not a twin. */
  return answer(ctx, msg, stream, "Greeted",
                json_pack("{s:s, s:s, s:o}", "greetingId", id, "name", name,
                          "text", json_sprintf("%s, %s!", self->greeting, name)),
                version);
}

static int init(ch_ctx *ctx, void **state)
{
  greeter *self = calloc(1, sizeof *self);

  if (!self) {
    ch_host->set_error(ctx, "out of memory");
    return -1;
  }
  self->greeting = ch_host->config_get(ctx, "greeting");   /* it has a default */
  *state = self;
  return 0;
}

static void destroy(ch_ctx *ctx, void *state)
{
  (void)ctx;
  free(state);
}

static const ch_config_key config_keys[] = {
  { .name = "greeting", .type = CH_CONFIG_STRING, .default_value = "Hello",
    .help = "the word each greeting starts with" },
  {0},
};

static const ch_handler handlers[] = {
  { .type = "Greet", .fn = handle_greet },
  {0},
};

static const ch_subscription subscriptions[] = {
  { .stream_name = "greeting:command", .subscriber_id = "components:greeter",
    .handlers = handlers },
  {0},
};

static const ch_plugin_desc greeter_plugin = CH_PLUGIN_DESC(
  .kind = CH_KIND_COMPONENT,
  .name = "greeter",
  .version = "1.0.0",
  .description = "the SDK example: answers Greet commands",
  .config_keys = config_keys,
  .subscriptions = subscriptions,
  .init = init,
  .destroy = destroy);

CH_PLUGIN_DEFINE(greeter_plugin)
