/*
 * register_users.c - the book's register-users application (chapter 6).
 *
 *   GET  /register                        the form, with a new user id in the
 *                                         hidden field `id`
 *   POST /register                        id, email, password
 *   GET  /register/registration-complete  the confirmation
 *
 * POST validates superficially (p92-99): the email is present and valid,
 * the password has at least 8 characters, and no user of user_credentials
 * has the email (eventually consistent view data, a deliberate trade-off,
 * p99-102). Then it hashes the password (bcrypt, cost 10) and writes
 * Register {userId, email, passwordHash} (metadata {traceId, userId}) to
 * identity:command-<userId>, and answers 301 to registration-complete. A
 * validation failure is a 400 with the form again, each error next to its
 * field, what was typed kept (but the password).
 */
#include <stdio.h>
#include <string.h>

#include <libpq-fe.h>

#include <comphost/plugin.h>
#include <comphost/web.h>

#include "site.h"

#define MIN_PASSWORD 8
#define MAX_EMAIL 254

typedef struct form_errors {
  const char *email;
  const char *password;
} form_errors;

/*
 * An email address as validate.js takes one: a local part and a domain
 * around one '@', no spaces or control characters, a dotted domain of
 * letters, digits and '-', ending in a label of two letters or more.
 */
static bool valid_email(const char *s)
{
  const char *at = strchr(s, '@'), *p, *label, *last_dot;
  size_t n = strlen(s);

  if (n > MAX_EMAIL || !at || at == s || strchr(at + 1, '@'))
    return false;
  for (p = s; p < at; p++)
    if ((unsigned char)*p <= ' ' || *p == 0x7f || strchr("()<>,;:\\\"[]", *p))
      return false;
  last_dot = strrchr(at + 1, '.');
  if (!last_dot)
    return false;
  label = at + 1;
  for (p = at + 1;; p++) {
    if (*p == '.' || *p == '\0') {
      if (p == label || *label == '-' || p[-1] == '-')
        return false;
      if (*p == '\0')
        break;
      label = p + 1;
    } else if (!isalnum((unsigned char)*p) && *p != '-') {
      return false;
    }
  }
  if (strlen(last_dot + 1) < 2)
    return false;
  for (p = last_dot + 1; *p; p++)
    if (!isalpha((unsigned char)*p))
      return false;
  return true;
}

static void render_form(ch_ctx *ctx, const ch_request *req, const char *user_id,
                        const char *email, const form_errors *errors)
{
  site_begin(ctx, req, "Register", NULL);
  site_h1(ctx, "Register");
  if (errors && (errors->email || errors->password))
    ch_web->html_raw(ctx, "<p class=\"notice bad\" id=\"errors\">Please fix what is"
                          " marked below.</p>\n");
  site_form(ctx, req, req->mount[0] ? req->mount : "/", "stacked");
  ch_web->html_raw(ctx, "<input type=\"hidden\" name=\"id\" value=\"");
  ch_web->html_attr(ctx, user_id);
  ch_web->html_raw(ctx, "\">\n");
  site_input(ctx, "email", "Email", "email", email, errors ? errors->email : NULL,
             "autocomplete=\"email\"");
  site_input(ctx, "password", "Password (8 characters or more)", "password", NULL,
             errors ? errors->password : NULL, "autocomplete=\"new-password\"");
  ch_web->html_raw(ctx, "<button type=\"submit\">Register</button>\n</form>\n"
                        "<p class=\"muted\">Registered already? <a href=\"" SITE_LOG_IN
                        "\">Log in</a>.</p>\n");
  site_end(ctx);
}

static ch_result show_form(ch_ctx *ctx, void *state, const ch_request *req)
{
  char user_id[37];
  (void)state;

  /* "generate identifiers as early as possible" */
  ch_host->uuid_v4(user_id);
  render_form(ctx, req, user_id, NULL, NULL);
  return CH_OK;
}

/* loadExistingIdentity: true when user_credentials has the email. */
static int email_taken(ch_ctx *ctx, const char *email, ch_result *failure)
{
  const char *params[1] = { email };
  PGresult *res = site_query(ctx, site_view(ctx),
                             "SELECT 1 FROM user_credentials WHERE email = $1 LIMIT 1", 1,
                             params, failure);
  int taken;

  if (!res)
    return -1;
  taken = PQntuples(res) > 0;
  PQclear(res);
  return taken;
}

/* registerUser */
static ch_result register_user(ch_ctx *ctx, void *state, const ch_request *req)
{
  const char *id = site_field_value(req->body, "id");
  const char *email = site_field_value(req->body, "email");
  const char *password = site_field_value(req->body, "password");
  form_errors errors = { NULL, NULL };
  ch_result failure = CH_FAIL;
  char hash[64], stream[80], location[160];
  json_t *data, *metadata;
  int taken, rc;
  (void)state;

  if (!id || !site_is_uuid(id)) {
    ch_web->error_page(ctx, 400, "The form's user id is missing or is not a UUID:"
                                 " reload the registration page.");
    return CH_OK;
  }
  /* validate */
  if (!email || !*email)
    errors.email = "Email can't be blank";
  else if (!valid_email(email))
    errors.email = "Email is not a valid email";
  if (!password || !*password)
    errors.password = "Password can't be blank";
  else if (strlen(password) < MIN_PASSWORD)
    errors.password = "Password is too short (minimum is 8 characters)";
  /* ensureThereWasNoExistingIdentity */
  if (!errors.email) {
    taken = email_taken(ctx, email, &failure);
    if (taken < 0)
      return failure;
    if (taken)
      errors.email = "Email is already taken";
  }
  if (errors.email || errors.password) {
    render_form(ctx, req, id, email, &errors);
    ch_web->status(ctx, 400);
    return CH_OK;
  }

  /* hashPassword */
  if (ch_web->password_hash(ctx, password, hash) != CH_RC_OK) {
    ch_host->set_error(ctx, "hashing the password: %s", ch_host->last_error(ctx));
    return CH_FAIL;
  }
  /* writeRegisterCommand */
  snprintf(stream, sizeof stream, "identity:command-%s", id);
  data = json_pack("{s:s,s:s,s:s}", "userId", id, "email", email, "passwordHash", hash);
  metadata = json_pack("{s:s,s:s}", "traceId", req->trace_id, "userId", id);
  if (!data || !metadata) {
    json_decref(data);
    json_decref(metadata);
    ch_host->set_error(ctx, "out of memory");
    return CH_FAIL;
  }
  rc = ch_host->write(ctx, stream, "Register", data, metadata, CH_VERSION_ANY, NULL);
  json_decref(data);
  json_decref(metadata);
  if (rc != CH_RC_OK) {
    ch_host->set_error(ctx, "writing Register to %s: %s", stream, ch_host->last_error(ctx));
    return rc == CH_RC_UNAVAILABLE ? CH_RETRY : CH_FAIL;
  }
  snprintf(location, sizeof location, "%s/registration-complete", req->mount);
  ch_web->redirect(ctx, 301, location);
  return CH_OK;
}

static ch_result registration_complete(ch_ctx *ctx, void *state, const ch_request *req)
{
  (void)state;
  site_begin(ctx, req, "Registration complete", NULL);
  site_h1(ctx, "Registration complete");
  ch_web->html_raw(ctx, "<p class=\"notice good\">Thank you for registering. A welcome"
                        " email is on its way to you.</p>\n"
                        "<p><a class=\"button\" href=\"" SITE_LOG_IN "\">Log in</a></p>\n");
  site_end(ctx);
  return CH_OK;
}

static int init(ch_ctx *ctx, void **state)
{
  *state = NULL;
  if (!ch_host->web || !site_view(ctx)) {
    ch_host->set_error(ctx, "register-users needs a host with applications and a view"
                            " database ([host] view_data)");
    return -1;
  }
  return 0;
}

static const ch_route routes[] = {
  { "GET", "/", show_form, 0, { NULL, NULL } },
  { "POST", "/", register_user, 0, { NULL, NULL } },
  { "GET", "/registration-complete", registration_complete, 0, { NULL, NULL } },
  {0},
};

static const ch_plugin_desc register_users = CH_PLUGIN_DESC(
  .kind = CH_KIND_APPLICATION,
  .name = "register-users",
  .version = "1.0.0",
  .description = "the book's registration: validate, hash, write Register",
  .init = init,
  .routes = routes,
  .mount = "/register");

CH_PLUGIN_DEFINE(register_users)
