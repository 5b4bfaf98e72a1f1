/*
 * send_email.c - the book's send-email component (chapter 9).
 *
 * Subscribes to `sendEmail:command` as components:send-email. A Send command
 * {emailId, to, subject, text, html} is delivered through the configured
 * transport from the system sender address; then Sent (data = the command's
 * data) or, when delivery fails, Failed (the command's data and a reason) is
 * written to sendEmail-<emailId>, with the command's originStreamName,
 * traceId and userId.
 *
 * Idempotence: the email projection (the book's emailProjection) says
 * whether it was sent. Failed records, in its metadata, the global position
 * of the command that failed (causationMessageGlobalPosition), and a command
 * at or before that position is not tried again: a redelivered failed
 * command stays failed, while a newer Send for the same email (a retry the
 * client asks for) is delivered. As in the book, an email may go out twice
 * when the host dies between delivering it and writing Sent.
 *
 * A Send that breaks the contract (data not an object, emailId, to or
 * subject missing or not a non-empty string, text or html not a string, or
 * neither) is Failed with the reason, in sendEmail-<id of the command stream>
 * when emailId is unusable.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <comphost/plugin.h>

#include "checks.h"
#include "rfc5322.h"
#include "transport.h"

typedef struct state {
  transport *transport;
  char *sender;                /* systemSenderEmailAddress */
} state;

/* emailProjection, plus the sequence of the last failure */
typedef struct email_state {
  bool is_sent;
  int64_t failed_sequence;
} email_state;

static void email_init(void *entity)
{
  memset(entity, 0, sizeof(email_state));
}

static void on_sent(void *entity, const ch_message *e)
{
  email_state *s = entity;
  (void)e;

  s->is_sent = true;
}

static void on_failed(void *entity, const ch_message *e)
{
  email_state *s = entity;
  int64_t seq = causation_position(e);

  if (seq > s->failed_sequence)
    s->failed_sequence = seq;
}

static const ch_reducer email_reducers[] = {
  { "Sent", on_sent, { NULL, NULL } },
  { "Failed", on_failed, { NULL, NULL } },
  {0},
};

static const ch_projection email_projection = { email_init, email_reducers };

static ch_result host_failed(ch_ctx *ctx, int rc, const char *what)
{
  ch_host->set_error(ctx, "%s: %s", what,
                     *ch_host->last_error(ctx) ? ch_host->last_error(ctx) : "out of memory");
  return rc == CH_RC_UNAVAILABLE ? CH_RETRY : CH_FAIL;
}

static const char *nonempty_string(const json_t *data, const char *key)
{
  const char *s = json_string_value(json_object_get(data, key));

  return s && *s ? s : NULL;
}

/* Is the Send command's data what the contract says? If not, why. */
static bool valid_send(const json_t *data, char *reason, size_t size)
{
  static const char *const required[] = { "emailId", "to", "subject" };
  static const char *const bodies[] = { "text", "html" };
  int body_count = 0;

  if (!json_is_object(data)) {
    snprintf(reason, size, "data must be an object");
    return false;
  }
  for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
    if (!checked_string(data, required[i], i == 0 ? MAX_ID_BYTES : SIZE_MAX, i < 2, reason,
                        size))
      return false;
  for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
    json_t *v = json_object_get(data, bodies[i]);
    if (v && !json_is_string(v)) {
      snprintf(reason, size, "%s must be a string", bodies[i]);
      return false;
    }
    body_count += v != NULL;
  }
  if (body_count == 0) {
    snprintf(reason, size, "text and html are missing");
    return false;
  }
  return true;
}

/* Write Sent, or Failed with reason. Failed names the email of its stream,
 * email_id, also when the command's emailId was unusable. The metadata is
 * the command's, carried through (follow()): its originStreamName, trace and
 * position, which is Failed's sequence. */
static ch_result write_outcome(ch_ctx *ctx, const ch_message *cmd, const char *stream,
                               const char *email_id, const char *reason)
{
  const char *origin = json_string_value(json_object_get(cmd->metadata, "originStreamName"));
  json_t *data, *meta = ch_host->follow(ctx, cmd, origin);
  int rc;

  if (reason) {
    data = json_is_object(cmd->data) ? json_copy(cmd->data) : json_object();
    if (data && (json_object_set_new(data, "emailId", json_string(email_id)) != 0 ||
                 json_object_set_new(data, "reason", json_string(reason)) != 0)) {
      json_decref(data);
      data = NULL;
    }
  } else {
    data = json_incref(cmd->data);
  }
  if (!data || !meta) {
    json_decref(data);
    json_decref(meta);
    ch_host->set_error(ctx, "out of memory");
    return CH_RETRY;
  }
  rc = ch_host->write(ctx, stream, reason ? "Failed" : "Sent", data, meta, CH_VERSION_ANY,
                      NULL);
  json_decref(data);
  json_decref(meta);
  if (rc < 0)
    return host_failed(ctx, rc, reason ? "cannot write Failed" : "cannot write Sent");
  return CH_OK;
}

/* Send (p139-144) */
static ch_result handle_send(ch_ctx *ctx, void *st, const ch_message *cmd)
{
  state *s = st;
  char reason[600], why[512], uuid[37];
  bool valid = valid_send(cmd->data, reason, sizeof reason);
  const char *email_id = valid ? nonempty_string(cmd->data, "emailId")
                               : answer_id(checked_string(cmd->data, "emailId", SIZE_MAX, true,
                                                          NULL, 0),
                                           ch_host->stream_id(cmd->stream_name), uuid);
  email_state es;
  char *stream;
  size_t n;
  ch_result r;
  int rc;

  if (!email_id) {
    ch_host->set_error(ctx, "Send names no email (%s), in the data nor in the stream name",
                       reason);
    return CH_SKIP;
  }
  n = strlen("sendEmail-") + strlen(email_id) + 1;
  if (!(stream = malloc(n))) {
    ch_host->set_error(ctx, "out of memory");
    return CH_RETRY;
  }
  snprintf(stream, n, "sendEmail-%s", email_id);

  rc = ch_host->fetch(ctx, stream, &email_projection, &es, NULL);
  if (rc != CH_RC_OK) {
    r = host_failed(ctx, rc, "cannot load the email");
    goto out;
  }
  if (es.is_sent) {
    ch_host->log(ctx, CH_LOG_DEBUG, "%s was sent already", stream);
    r = CH_OK;
    goto out;
  }
  if (es.failed_sequence >= cmd->global_position) {
    ch_host->log(ctx, CH_LOG_DEBUG, "this Send failed already");
    r = CH_OK;
    goto out;
  }
  if (valid) {
    email e = { cmd->id, s->sender, nonempty_string(cmd->data, "to"),
                json_string_value(json_object_get(cmd->data, "subject")),
                json_string_value(json_object_get(cmd->data, "text")),
                json_string_value(json_object_get(cmd->data, "html")) };

    why[0] = '\0';
    if (s->transport->send(s->transport, &e, why, sizeof why) != 0) {
      snprintf(reason, sizeof reason, "%s", why[0] ? why : "delivery failed");
      valid = false;
    }
  }
  if (!valid)
    ch_host->log(ctx, CH_LOG_WARN, "%s: Failed: %s", stream, reason);
  else
    ch_host->log(ctx, CH_LOG_DEBUG, "%s: Sent through %s", stream, s->transport->name);
  r = write_outcome(ctx, cmd, stream, email_id, valid ? NULL : reason);

out:
  free(stream);
  return r;
}

static bool has_line_break(const char *s)
{
  return s && strpbrk(s, "\r\n");
}

static int one_address(void *arg, const char *addr)
{
  (void)arg;
  (void)addr;
  return 0;
}

/*
 * The pickup directory, a new string (NULL when out of memory): the book's
 * EMAIL_DIRECTORY, else the email_directory setting (relative to the INI
 * file's directory), else "email" in the service's state directory
 * ($STATE_DIRECTORY, the first of its entries, as systemd's
 * StateDirectory= sets it), else tmp/email in the directory comphost runs
 * in.
 */
static char *email_directory(ch_ctx *ctx)
{
  const char *env_dir = getenv("EMAIL_DIRECTORY");
  const char *set = ch_host->config_path(ctx, "email_directory");
  const char *state_dir = getenv("STATE_DIRECTORY");
  char *dir;
  size_t n;

  if (env_dir && *env_dir)
    return strdup(env_dir);
  if (!set && ch_host->config_get(ctx, "email_directory"))
    return NULL;   /* out of memory */
  if (set && *set)
    return strdup(set);
  if (!state_dir || !*state_dir || *state_dir == ':')
    return strdup("tmp/email");
  n = strcspn(state_dir, ":");
  if ((dir = malloc(n + sizeof "/email")))
    snprintf(dir, n + sizeof "/email", "%.*s/email", (int)n, state_dir);
  return dir;
}

static int init(ch_ctx *ctx, void **out)
{
  const char *kind = ch_host->config_get(ctx, "transport");
  const char *env_sender = getenv("SYSTEM_SENDER_EMAIL_ADDRESS");
  const char *sender = env_sender && *env_sender
                       ? env_sender : ch_host->config_get(ctx, "system_sender_email_address");
  char err[600];
  state *s;
  int n;

  *out = NULL;
  if (!sender || !*sender) {
    ch_host->set_error(ctx, "no sender address: set system_sender_email_address or"
                       " SYSTEM_SENDER_EMAIL_ADDRESS");
    return -1;
  }
  n = rfc5322_addresses(sender, one_address, NULL, err, sizeof err);
  if (has_line_break(sender) || n != 1) {
    ch_host->set_error(ctx, "sender address '%s': %s", sender,
                       n < 0 ? err : "must be one email address");
    return -1;
  }
  if (!(s = calloc(1, sizeof *s)) || !(s->sender = strdup(sender))) {
    free(s);
    ch_host->set_error(ctx, "out of memory");
    return -1;
  }

  if (!strcmp(kind, "pickup")) {
    char *dir = email_directory(ctx);

    if (!dir)
      snprintf(err, sizeof err, "out of memory");
    else if ((s->transport = pickup_transport_new(dir, err, sizeof err)))
      ch_host->log(ctx, CH_LOG_INFO, "delivering into the pickup directory '%s'", dir);
    free(dir);
  } else if (!strcmp(kind, "smtp")) {
    static const char *const tls_modes[] = { "off", "try", "required" };
    const char *tls = ch_host->config_get(ctx, "smtp_tls");
    smtp_settings set;
    size_t i;

    memset(&set, 0, sizeof set);
    for (i = 0; i < sizeof tls_modes / sizeof tls_modes[0]; i++)
      if (!strcmp(tls, tls_modes[i]))
        break;
    if (i == sizeof tls_modes / sizeof tls_modes[0]) {
      snprintf(err, sizeof err, "smtp_tls: '%s' is not one of off, try, required", tls);
    } else {
      set.url = ch_host->config_get(ctx, "smtp_url");
      set.username = ch_host->config_get(ctx, "smtp_username");
      set.password = ch_host->config_get(ctx, "smtp_password");
      set.tls = (smtp_tls)i;
      set.verify = ch_host->config_bool(ctx, "smtp_verify");
      set.ca_file = ch_host->config_path(ctx, "smtp_ca_file");
      set.timeout_ms = ch_host->config_int(ctx, "smtp_timeout_ms");
      set.connect_timeout_ms = ch_host->config_int(ctx, "smtp_connect_timeout_ms");
      if (set.timeout_ms <= 0 || set.connect_timeout_ms <= 0)
        snprintf(err, sizeof err, "smtp_timeout_ms and smtp_connect_timeout_ms must be"
                 " positive");
      else if (set.password && *set.password && !(set.username && *set.username))
        snprintf(err, sizeof err, "smtp_password is set without smtp_username");
      else
        s->transport = smtp_transport_new(&set, err, sizeof err);
    }
    if (s->transport)
      ch_host->log(ctx, CH_LOG_INFO, "delivering through SMTP (TLS %s%s)", tls,
                   set.username && *set.username ? ", with authentication" : "");
  } else {
    snprintf(err, sizeof err, "transport: '%s' is not one of pickup, smtp", kind);
  }
  if (!s->transport) {
    ch_host->set_error(ctx, "%s", err);
    free(s->sender);
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
  s->transport->destroy(s->transport);
  free(s->sender);
  free(s);
}

static const ch_config_key config_keys[] = {
  { "transport", CH_CONFIG_STRING, "pickup", false,
    "how to deliver: pickup (.eml files) or smtp", { NULL, NULL } },
  { "system_sender_email_address", CH_CONFIG_STRING, NULL, false,
    "the From address (SYSTEM_SENDER_EMAIL_ADDRESS overrides it)", { NULL, NULL } },
  { "email_directory", CH_CONFIG_STRING, NULL, false,
    "pickup: the directory of the .eml files, relative to the INI file (EMAIL_DIRECTORY"
    " overrides it; default $STATE_DIRECTORY/email, else tmp/email)", { NULL, NULL } },
  { "smtp_url", CH_CONFIG_STRING, NULL, false,
    "smtp: smtp://host:port (STARTTLS) or smtps://host:port (TLS)", { NULL, NULL } },
  { "smtp_username", CH_CONFIG_STRING, NULL, false, "smtp: user to authenticate as",
    { NULL, NULL } },
  { "smtp_password", CH_CONFIG_STRING, NULL, false, "smtp: password of smtp_username",
    { NULL, NULL } },
  { "smtp_tls", CH_CONFIG_STRING, "required", false,
    "smtp: off, try (STARTTLS if offered) or required", { NULL, NULL } },
  { "smtp_verify", CH_CONFIG_BOOL, "true", false,
    "smtp: check the server's certificate and host name", { NULL, NULL } },
  { "smtp_ca_file", CH_CONFIG_STRING, NULL, false,
    "smtp: CA certificates to check the server with, relative to the INI file (default:"
    " the system's)", { NULL, NULL } },
  { "smtp_timeout_ms", CH_CONFIG_INT, "30000", false, "smtp: the most one email may take",
    { NULL, NULL } },
  { "smtp_connect_timeout_ms", CH_CONFIG_INT, "10000", false,
    "smtp: the most connecting may take", { NULL, NULL } },
  {0},
};

/* ABI 1.1: smtp_password may come from smtp_password_file or the
 * environment, and the host never shows it. */
static const char *const secret_keys[] = { "smtp_password", NULL };

static const ch_handler handlers[] = {
  { "Send", handle_send, { NULL, NULL } },
  {0},
};

static const ch_subscription subscriptions[] = {
  { "sendEmail:command", "components:send-email", NULL, handlers, NULL, { NULL, NULL, NULL } },
  {0},
};

static const ch_plugin_desc send_email_desc = CH_PLUGIN_DESC(
  .kind = CH_KIND_COMPONENT,
  .name = "send-email",
  .version = "1.0.0",
  .description = "the book's send-email component: delivers Send commands",
  .config_keys = config_keys,
  .subscriptions = subscriptions,
  .init = init,
  .destroy = destroy,
  .secret_keys = secret_keys);

CH_PLUGIN_DEFINE(send_email_desc)
