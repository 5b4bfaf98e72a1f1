/*
 * identity.c - the book's identity component (chapters 6, 7, 9 and 15).
 *
 * Three subscriptions, as in the book:
 *   identity:command  as components:identity:command
 *       Register -> Registered (or RegistrationRejected) on identity-<userId>
 *   identity          as components:identity (its own events)
 *       Registered -> Send on sendEmail:command-<emailId>, with
 *       emailId = uuid v5 of the address and originStreamName identity-<userId>
 *   sendEmail         as components:identity:sendEmailEvents, origin `identity`
 *       Sent -> RegistrationEmailSent on the origin stream
 *
 * Every handler projects identity-<id> (the book's identityProjection) and
 * does nothing when the work is already done. Events on the identity stream
 * are written with the version the projection saw as expected version (the
 * book's chapter 15): of two hosts racing on one command, one writes, the
 * other gets a conflict, projects again and finds the work done.
 *
 * Commands that do not keep the contract (data not an object, a field missing
 * or not a non-empty string) get RegistrationRejected with a reason, written
 * to identity-<id>, the id taken from data.userId or else the stream name.
 * The projection remembers the global position of the last command rejected
 * (metadata.causationMessageGlobalPosition of RegistrationRejected), so that
 * a redelivered rejected command is not rejected twice.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <comphost/plugin.h>

#include "checks.h"
#include "email_template.h"

/* the book's namespace of registration email ids (p148) */
#define EMAIL_ID_NAMESPACE "0c46e0b7-dfaf-443a-b150-053b67905cc2"
/* writes tried against a stream that keeps changing under us */
#define MAX_ATTEMPTS 5

typedef struct state {
  email_template email;
} state;

/* identityProjection, plus what a rejection needs */
typedef struct identity {
  char *id;
  char *email;
  bool is_registered;
  bool registration_email_sent;
  int64_t rejected_sequence;   /* global position of the last command rejected */
  bool out_of_memory;
} identity;

static void identity_init(void *entity)
{
  memset(entity, 0, sizeof(identity));
}

static void identity_release(identity *i)
{
  free(i->id);
  free(i->email);
  memset(i, 0, sizeof *i);
}

static void set_text(identity *i, char **dst, const json_t *v)
{
  const char *s = json_string_value(v);

  free(*dst);
  *dst = NULL;
  if (s && !(*dst = strdup(s)))
    i->out_of_memory = true;
}

static void on_registered(void *entity, const ch_message *e)
{
  identity *i = entity;

  set_text(i, &i->id, json_object_get(e->data, "userId"));
  set_text(i, &i->email, json_object_get(e->data, "email"));
  i->is_registered = true;
}

static void on_registration_email_sent(void *entity, const ch_message *e)
{
  identity *i = entity;
  (void)e;

  i->registration_email_sent = true;
}

static void on_registration_rejected(void *entity, const ch_message *e)
{
  identity *i = entity;
  int64_t seq = causation_position(e);

  if (seq > i->rejected_sequence)
    i->rejected_sequence = seq;
}

static const ch_reducer identity_reducers[] = {
  { "Registered", on_registered, { NULL, NULL } },
  { "RegistrationEmailSent", on_registration_email_sent, { NULL, NULL } },
  { "RegistrationRejected", on_registration_rejected, { NULL, NULL } },
  {0},
};

static const ch_projection identity_projection = { identity_init, identity_reducers };

/* loadIdentity: project identity-<id>. Returns a CH_RC_*. */
static int load_identity(ch_ctx *ctx, const char *stream, identity *i, int64_t *version)
{
  int rc = ch_host->fetch(ctx, stream, &identity_projection, i, version);

  if (rc == CH_RC_OK && i->out_of_memory)
    rc = CH_RC_UNAVAILABLE;
  return rc;
}

/* What a failed host call means for the handler. */
static ch_result host_failed(ch_ctx *ctx, int rc, const char *what)
{
  if (rc == CH_RC_UNAVAILABLE) {
    ch_host->set_error(ctx, "%s: %s", what,
                       *ch_host->last_error(ctx) ? ch_host->last_error(ctx) : "out of memory");
    return CH_RETRY;
  }
  ch_host->set_error(ctx, "%s: %s", what, ch_host->last_error(ctx));
  return CH_FAIL;
}

static ch_result out_of_memory(ch_ctx *ctx)
{
  ch_host->set_error(ctx, "out of memory");
  return CH_RETRY;
}

/* "<prefix><id>" in a new string, or NULL when out of memory. */
static char *stream_of(const char *prefix, const char *id)
{
  size_t n = strlen(prefix) + strlen(id) + 1;
  char *s = malloc(n);

  if (s)
    snprintf(s, n, "%s%s", prefix, id);
  return s;
}

static const char *nonempty_string(const json_t *data, const char *key)
{
  const char *s = json_string_value(json_object_get(data, key));

  return s && *s ? s : NULL;
}

/* Is the Register command's data what the contract says? If not, why. The
 * userId names a stream and the email is indexed in the views: both have a
 * length limit (checks.h); the password hash is only stored. */
static bool valid_register(const json_t *data, char *reason, size_t size)
{
  static const checked_field fields[] = {
    { "userId", MAX_ID_BYTES }, { "email", MAX_EMAIL_BYTES }, { "passwordHash", SIZE_MAX },
  };

  return checked_fields(data, fields, sizeof fields / sizeof fields[0], reason, size);
}

/* Registered's data: the command's userId, email and passwordHash. */
static json_t *registered_data(const json_t *cmd)
{
  return json_pack("{s:O, s:O, s:O}", "userId", json_object_get(cmd, "userId"),
                   "email", json_object_get(cmd, "email"),
                   "passwordHash", json_object_get(cmd, "passwordHash"));
}

/* RegistrationRejected's data: the user, what the command had, and why. */
static json_t *rejected_data(const json_t *cmd, const char *user_id, const char *reason)
{
  json_t *d = json_pack("{s:s}", "userId", user_id);
  static const char *const copied[] = { "email", "passwordHash" };

  if (!d)
    return NULL;
  for (size_t i = 0; i < sizeof copied / sizeof copied[0]; i++) {
    json_t *v = json_object_get(cmd, copied[i]);
    if (v && json_object_set(d, copied[i], v) != 0)
      goto oom;
  }
  if (json_object_set_new(d, "reason", json_string(reason)) != 0)
    goto oom;
  return d;
oom:
  json_decref(d);
  return NULL;
}

/* Register (p111-115): Registered once per identity, expected version as read. */
static ch_result handle_register(ch_ctx *ctx, void *st, const ch_message *cmd)
{
  char reason[200], uuid[37];
  bool valid = valid_register(cmd->data, reason, sizeof reason);
  const char *user_id = valid ? nonempty_string(cmd->data, "userId")
                              : answer_id(json_string_value(json_object_get(cmd->data, "userId")),
                                          ch_host->stream_id(cmd->stream_name), uuid);
  char *stream;
  ch_result r = CH_OK;
  (void)st;

  if (!user_id) {
    ch_host->set_error(ctx, "Register names no user (%s), in the data nor in the stream"
                       " name", reason);
    return CH_SKIP;
  }
  if (!(stream = stream_of("identity-", user_id)))
    return out_of_memory(ctx);

  for (int attempt = 1;; attempt++) {
    identity i = { NULL, NULL, false, false, 0, false };
    int64_t version = CH_VERSION_ANY;
    json_t *data, *meta;
    int rc = load_identity(ctx, stream, &i, &version);

    if (rc != CH_RC_OK) {
      identity_release(&i);
      r = host_failed(ctx, rc, "cannot load the identity");
      break;
    }
    if (valid && i.is_registered) {
      ch_host->log(ctx, CH_LOG_DEBUG, "%s is registered already: nothing to do", stream);
      identity_release(&i);
      break;
    }
    if (!valid && i.rejected_sequence >= cmd->global_position) {
      ch_host->log(ctx, CH_LOG_DEBUG, "this Register was rejected already");
      identity_release(&i);
      break;
    }
    identity_release(&i);

    /* follow(): the trace, and the command's position for the rejection's
     * sequence */
    data = valid ? registered_data(cmd->data) : rejected_data(cmd->data, user_id, reason);
    meta = ch_host->follow(ctx, cmd, NULL);
    rc = data && meta ? ch_host->write(ctx, stream, valid ? "Registered" : "RegistrationRejected",
                                       data, meta, version, NULL)
                      : CH_RC_UNAVAILABLE;
    json_decref(data);
    json_decref(meta);
    if (!valid && rc >= 0)
      ch_host->log(ctx, CH_LOG_INFO, "Register rejected: %s", reason);
    if (rc == CH_RC_OK || rc == CH_RC_ALREADY_WRITTEN)
      break;
    if (rc == CH_RC_CONFLICT && attempt < MAX_ATTEMPTS) {
      /* another writer was first: see what it did */
      ch_host->log(ctx, CH_LOG_INFO, "%s changed while we handled Register (%s): reading"
                   " it again", stream, ch_host->last_error(ctx));
      continue;
    }
    r = rc == CH_RC_CONFLICT ? CH_RETRY : host_failed(ctx, rc, "cannot write to the identity");
    if (rc == CH_RC_CONFLICT)
      ch_host->set_error(ctx, "%s kept changing: %s", stream, ch_host->last_error(ctx));
    break;
  }
  free(stream);
  return r;
}

/* Registered (p146-149): ask send-email for the registration email, once. */
static ch_result handle_registered(ch_ctx *ctx, void *st, const ch_message *event)
{
  state *s = st;
  const char *user_id = nonempty_string(event->data, "userId");
  char *stream, *origin = NULL, *command_stream = NULL;
  char email_id[37];
  identity i;
  rendered_email email;
  json_t *data = NULL, *meta = NULL;
  ch_result r = CH_OK;
  int rc;

  memset(&i, 0, sizeof i);
  if (!usable_id(user_id)) {
    ch_host->set_error(ctx, "Registered without a usable userId (a non-empty string of at"
                       " most %d bytes)", MAX_ID_BYTES);
    return CH_SKIP;
  }
  if (!(stream = stream_of("identity-", user_id)))
    return out_of_memory(ctx);
  rc = load_identity(ctx, stream, &i, NULL);
  if (rc != CH_RC_OK) {
    r = host_failed(ctx, rc, "cannot load the identity");
    goto out;
  }
  if (i.registration_email_sent) {
    ch_host->log(ctx, CH_LOG_DEBUG, "the registration email of %s was sent already", stream);
    goto out;
  }
  if (!usable_id(i.id) || !i.email || !*i.email || strlen(i.email) > MAX_EMAIL_BYTES) {
    ch_host->set_error(ctx, "%s has no usable user id or address to send to: no registration"
                       " email", stream);
    r = CH_SKIP;
    goto out;
  }
  if (ch_host->uuid_v5(EMAIL_ID_NAMESPACE, i.email, email_id) != 0) {
    ch_host->set_error(ctx, "cannot derive the email id");
    r = CH_FAIL;
    goto out;
  }
  if (email_template_render(&s->email, i.email, i.id, &email) != 0) {
    r = out_of_memory(ctx);
    goto out;
  }
  origin = stream_of("identity-", i.id);
  command_stream = stream_of("sendEmail:command-", email_id);
  data = json_pack("{s:s, s:s, s:s, s:s, s:s}", "emailId", email_id, "to", i.email,
                   "subject", email.subject, "text", email.text, "html", email.html);
  rendered_email_free(&email);
  meta = origin ? ch_host->follow(ctx, event, origin) : NULL;
  if (!command_stream || !data || !meta) {
    r = out_of_memory(ctx);
    goto out;
  }
  rc = ch_host->write(ctx, command_stream, "Send", data, meta, CH_VERSION_ANY, NULL);
  if (rc < 0)
    r = host_failed(ctx, rc, "cannot write Send");

out:
  json_decref(data);
  json_decref(meta);
  free(origin);
  free(command_stream);
  identity_release(&i);
  free(stream);
  return r;
}

/* Sent (p149-151): record RegistrationEmailSent on the origin stream, once. */
static ch_result handle_sent(ch_ctx *ctx, void *st, const ch_message *event)
{
  const char *origin = json_string_value(json_object_get(event->metadata, "originStreamName"));
  const char *user_id = ch_host->stream_id(origin);
  const char *email_id = checked_string(event->data, "emailId", MAX_ID_BYTES, true, NULL, 0);
  ch_result r = CH_OK;
  (void)st;

  if (!usable_id(user_id) || strncmp(origin, "identity-", 9) != 0) {
    ch_host->set_error(ctx, "Sent with an origin that names no usable identity");
    return CH_SKIP;
  }
  if (!email_id) {
    ch_host->set_error(ctx, "Sent without a usable emailId");
    return CH_SKIP;
  }
  for (int attempt = 1;; attempt++) {
    identity i = { NULL, NULL, false, false, 0, false };
    int64_t version = CH_VERSION_ANY;
    json_t *data, *meta;
    int rc = load_identity(ctx, origin, &i, &version);
    bool done = i.registration_email_sent;

    identity_release(&i);
    if (rc != CH_RC_OK)
      return host_failed(ctx, rc, "cannot load the identity");
    if (done) {
      ch_host->log(ctx, CH_LOG_DEBUG, "RegistrationEmailSent is in %s already", origin);
      return CH_OK;
    }
    data = json_pack("{s:s, s:s}", "userId", user_id, "emailId", email_id);
    meta = ch_host->follow(ctx, event, NULL);
    rc = data && meta ? ch_host->write(ctx, origin, "RegistrationEmailSent", data, meta,
                                       version, NULL)
                      : CH_RC_UNAVAILABLE;
    json_decref(data);
    json_decref(meta);
    if (rc == CH_RC_OK || rc == CH_RC_ALREADY_WRITTEN)
      return CH_OK;
    if (rc == CH_RC_CONFLICT && attempt < MAX_ATTEMPTS) {
      ch_host->log(ctx, CH_LOG_INFO, "%s changed while we handled Sent (%s): reading it"
                   " again", origin, ch_host->last_error(ctx));
      continue;
    }
    if (rc == CH_RC_CONFLICT) {
      ch_host->set_error(ctx, "%s kept changing: %s", origin, ch_host->last_error(ctx));
      r = CH_RETRY;
    } else {
      r = host_failed(ctx, rc, "cannot write RegistrationEmailSent");
    }
    return r;
  }
}

static int init(ch_ctx *ctx, void **out)
{
  state *s = calloc(1, sizeof *s);
  char err[600];

  *out = NULL;
  if (!s) {
    ch_host->set_error(ctx, "out of memory");
    return -1;
  }
  if (email_template_load(ctx, &s->email, err, sizeof err) != 0) {
    ch_host->set_error(ctx, "%s", err);
    free(s);
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
  email_template_free(&s->email);
  free(s);
}

static const ch_config_key config_keys[] = {
  { "app_name", CH_CONFIG_STRING, "Video Tutorials", false,
    "the system's name, {{appName}} in the registration email", { NULL, NULL } },
  { "registration_email_subject", CH_CONFIG_STRING, "Welcome to {{appName}}", false,
    "subject template of the registration email", { NULL, NULL } },
  { "registration_email_text", CH_CONFIG_STRING,
    "Hello,\\n\\nthank you for registering with {{appName}}. You can now log in as"
    " {{email}}.\\n", false,
    "text template of the registration email (\\n for a line break)", { NULL, NULL } },
  { "registration_email_html", CH_CONFIG_STRING,
    "<p>Hello,</p><p>thank you for registering with {{appName}}. You can now log in as"
    " {{email}}.</p>", false,
    "HTML template of the registration email", { NULL, NULL } },
  { "registration_email_text_file", CH_CONFIG_STRING, NULL, false,
    "a file holding the text template, relative to the INI file (wins over"
    " registration_email_text)", { NULL, NULL } },
  { "registration_email_html_file", CH_CONFIG_STRING, NULL, false,
    "a file holding the HTML template, relative to the INI file (wins over"
    " registration_email_html)", { NULL, NULL } },
  {0},
};

static const ch_handler command_handlers[] = {
  { "Register", handle_register, { NULL, NULL } },
  {0},
};

static const ch_handler event_handlers[] = {
  { "Registered", handle_registered, { NULL, NULL } },
  {0},
};

static const ch_handler send_email_handlers[] = {
  { "Sent", handle_sent, { NULL, NULL } },
  {0},
};

static const ch_subscription subscriptions[] = {
  { "identity:command", "components:identity:command", NULL, command_handlers, NULL,
    { NULL, NULL, NULL } },
  { "identity", "components:identity", NULL, event_handlers, NULL, { NULL, NULL, NULL } },
  { "sendEmail", "components:identity:sendEmailEvents", "identity", send_email_handlers, NULL,
    { NULL, NULL, NULL } },
  {0},
};

static const ch_plugin_desc identity_desc = CH_PLUGIN_DESC(
  .kind = CH_KIND_COMPONENT,
  .name = "identity",
  .version = "1.0.0",
  .description = "the book's identity component: registration and its welcome email",
  .config_keys = config_keys,
  .subscriptions = subscriptions,
  .init = init,
  .destroy = destroy);

CH_PLUGIN_DEFINE(identity_desc)
