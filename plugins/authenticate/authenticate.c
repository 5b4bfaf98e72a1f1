/*
 * authenticate.c - the book's authenticate application (chapter 8).
 *
 *   GET  /auth/log-in    the form (email, password)
 *   POST /auth/log-in    check the password against user_credentials
 *   GET  /auth/log-out   end the session, back to "/"
 *
 * A log-in is a query of view data, and its outcome an event of this
 * application's own (its contract, p122), in authentication-<userId>:
 * - the password matches: UserLoggedIn {userId} (metadata {traceId,
 *   userId}); the session holds the user id; redirect to "/";
 * - it does not: UserLoginFailed {userId, reason: "Incorrect password"}
 *   (metadata {traceId, userId: null}); 401;
 * - no user has the email: nothing is written (not domain information,
 *   only logged); 401.
 * Both failures show the same message and never say which field was wrong,
 * and take as long: an unknown email is checked against a hash made at
 * start-up, so the time of the answer does not tell that the email is
 * unknown.
 */
#include <stdio.h>
#include <string.h>

#include <libpq-fe.h>

#include <comphost/plugin.h>
#include <comphost/web.h>

#include "site.h"

#define FAILED_TEXT "That email and password do not match an account."

static void render_form(ch_ctx *ctx, const ch_request *req, const char *email, bool failed)
{
  char action[96];

  snprintf(action, sizeof action, "%s/log-in", req->mount);
  site_begin(ctx, req, "Log in", NULL);
  site_h1(ctx, "Log in");
  if (failed)
    ch_web->html_raw(ctx, "<p class=\"notice bad\" id=\"errors\">" FAILED_TEXT "</p>\n");
  site_form(ctx, req, action, "stacked");
  site_input(ctx, "email", "Email", "email", email, NULL, "autocomplete=\"username\"");
  site_input(ctx, "password", "Password", "password", NULL, NULL,
             "autocomplete=\"current-password\"");
  ch_web->html_raw(ctx, "<button type=\"submit\">Log in</button>\n</form>\n"
                        "<p class=\"muted\">New here? <a href=\"/register\">Register</a>.</p>\n");
  site_end(ctx);
}

static ch_result show_form(ch_ctx *ctx, void *state, const ch_request *req)
{
  (void)state;
  render_form(ctx, req, NULL, false);
  return CH_OK;
}

/* Write one event to authentication-<user_id>. */
static ch_result write_event(ch_ctx *ctx, const char *user_id, const char *type, json_t *data,
                             json_t *metadata)
{
  char stream[96];
  int rc;

  snprintf(stream, sizeof stream, "authentication-%s", user_id);
  if (!data || !metadata) {
    json_decref(data);
    json_decref(metadata);
    ch_host->set_error(ctx, "out of memory");
    return CH_FAIL;
  }
  rc = ch_host->write(ctx, stream, type, data, metadata, CH_VERSION_ANY, NULL);
  json_decref(data);
  json_decref(metadata);
  if (rc != CH_RC_OK) {
    ch_host->set_error(ctx, "writing %s to %s: %s", type, stream, ch_host->last_error(ctx));
    return rc == CH_RC_UNAVAILABLE ? CH_RETRY : CH_FAIL;
  }
  return CH_OK;
}

/* authenticate */
static ch_result log_in(ch_ctx *ctx, void *state, const ch_request *req)
{
  const char *email = site_field_value(req->body, "email");
  const char *password = site_field_value(req->body, "password");
  const char *params[1];
  ch_result failure = CH_FAIL, r;
  PGresult *res;
  const char *dummy_hash = state;
  int match;

  if (!email)
    email = "";
  if (!password)
    password = "";
  /* loadUserCredential */
  params[0] = email;
  res = site_query(ctx, site_view(ctx),
                   "SELECT id, password_hash FROM user_credentials WHERE email = $1 LIMIT 1",
                   1, params, &failure);
  if (!res)
    return failure;
  if (PQntuples(res) == 0) {
    /* handleCredentialNotFound: no event, "isn't domain information" */
    PQclear(res);
    (void)ch_web->password_verify(ctx, password, dummy_hash);
    ch_host->log(ctx, CH_LOG_INFO, "log-in with an email no user has (trace %s)",
                 req->trace_id);
    render_form(ctx, req, email, true);
    ch_web->status(ctx, 401);
    return CH_OK;
  }
  /* validatePassword */
  match = ch_web->password_verify(ctx, password, PQgetvalue(res, 0, 1));
  if (match < 0) {
    PQclear(res);
    ch_host->set_error(ctx, "checking a password: %s", ch_host->last_error(ctx));
    return CH_FAIL;
  }
  if (!match) {
    /* handleCredentialMismatch */
    r = write_event(ctx, PQgetvalue(res, 0, 0), "UserLoginFailed",
                    json_pack("{s:s,s:s}", "userId", PQgetvalue(res, 0, 0), "reason",
                              "Incorrect password"),
                    json_pack("{s:s,s:n}", "traceId", req->trace_id, "userId"));
    PQclear(res);
    if (r != CH_OK)
      return r;
    render_form(ctx, req, email, true);
    ch_web->status(ctx, 401);
    return CH_OK;
  }
  /* writeLoggedInEvent */
  r = write_event(ctx, PQgetvalue(res, 0, 0), "UserLoggedIn",
                  json_pack("{s:s}", "userId", PQgetvalue(res, 0, 0)),
                  json_pack("{s:s,s:s}", "traceId", req->trace_id, "userId",
                            PQgetvalue(res, 0, 0)));
  if (r == CH_OK && ch_web->session_set_user(ctx, PQgetvalue(res, 0, 0)) != CH_RC_OK) {
    ch_host->set_error(ctx, "the user id '%s' cannot be a session's", PQgetvalue(res, 0, 0));
    r = CH_FAIL;
  }
  PQclear(res);
  if (r != CH_OK)
    return r;
  ch_web->redirect(ctx, 302, "/");
  return CH_OK;
}

static ch_result log_out(ch_ctx *ctx, void *state, const ch_request *req)
{
  (void)state;
  (void)req;
  ch_web->session_clear(ctx);
  ch_web->redirect(ctx, 302, "/");
  return CH_OK;
}

/* state: a bcrypt hash of a random password, for unknown emails */
static int init(ch_ctx *ctx, void **state)
{
  static char dummy_hash[64];
  char password[37];

  *state = NULL;
  if (!ch_host->web || !site_view(ctx)) {
    ch_host->set_error(ctx, "authenticate needs a host with applications and a view"
                            " database ([host] view_data)");
    return -1;
  }
  ch_host->uuid_v4(password);
  if (ch_web->password_hash(ctx, password, dummy_hash) != CH_RC_OK) {
    ch_host->set_error(ctx, "bcrypt does not work: %s", ch_host->last_error(ctx));
    return -1;
  }
  *state = dummy_hash;
  return 0;
}

static const ch_route routes[] = {
  { "GET", "/log-in", show_form, 0, { NULL, NULL } },
  { "POST", "/log-in", log_in, 0, { NULL, NULL } },
  { "GET", "/log-out", log_out, 0, { NULL, NULL } },
  {0},
};

static const ch_plugin_desc authenticate = CH_PLUGIN_DESC(
  .kind = CH_KIND_APPLICATION,
  .name = "authenticate",
  .version = "1.0.0",
  .description = "the book's log-in and log-out: UserLoggedIn, UserLoginFailed",
  .init = init,
  .routes = routes,
  .mount = "/auth");

CH_PLUGIN_DEFINE(authenticate)
