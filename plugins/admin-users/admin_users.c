/*
 * admin_users.c - the book's admin-users aggregator (chapter 13): the Admin
 * Portal's users.
 *
 * One row of `admin_users` per user id, fed by two subscriptions, each with
 * its own last-position column, "because we have no guarantees of message
 * order across streams":
 *   identity        Registered (email), RegistrationEmailSent
 *                   (registration_email_sent), guarded by
 *                   last_identity_event_global_position
 *   authentication  UserLoggedIn (login_count + 1), guarded by
 *                   last_authentication_event_global_position
 * The book's handlers run ensureUser (INSERT ... ON CONFLICT DO NOTHING) and
 * then a guarded UPDATE; here each is one upsert with the same guard in its
 * DO UPDATE ... WHERE, which leaves the same row.
 *
 * An event that is not one (data not an object, userId not a non-empty
 * string of at most MAX_ID_BYTES, a Registered without such an email) is
 * skipped (CH_SKIP): it never reaches the table.
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
  { "20190805180637_create-admin-users",
    "CREATE TABLE IF NOT EXISTS admin_users ("
    " id text PRIMARY KEY,"
    " email text,"
    " registration_email_sent boolean NOT NULL DEFAULT false,"
    " last_identity_event_global_position bigint NOT NULL DEFAULT 0,"
    " login_count integer NOT NULL DEFAULT 0,"
    " last_authentication_event_global_position bigint NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS admin_users_email_index ON admin_users (email)",
    { NULL, NULL } },
  {0},
};

static void free_arrays(pg_array *cols, int n)
{
  for (int c = 0; c < n; c++)
    pg_array_release(&cols[c]);
}

/* Close every array into params. Returns CH_OK, or CH_RETRY out of memory. */
static ch_result finish_all(ch_ctx *ctx, pg_array *cols, const char **params, int n)
{
  for (int c = 0; c < n; c++) {
    params[c] = finish(&cols[c]);
    if (!params[c]) {
      ch_host->set_error(ctx, "out of memory");
      return CH_RETRY;
    }
  }
  return CH_OK;
}

/* data.userId, NULL when absent or not a string. */
static const char *user_id(const ch_message *msg)
{
  return json_string_value(json_object_get(msg->data, "userId"));
}

/* Does the event carry what its handler uses? If not, why. */
static bool usable(const ch_message *msg, char *why, size_t size)
{
  char reason[160] = "data must be an object";
  bool ok = json_is_object(msg->data) &&
            checked_string(msg->data, "userId", MAX_ID_BYTES, true, reason, sizeof reason) &&
            (strcmp(msg->type, "Registered") != 0 ||
             checked_string(msg->data, "email", MAX_EMAIL_BYTES, true, reason, sizeof reason));

  if (!ok)
    snprintf(why, size, "%s: %s", msg->type, reason);
  return ok;
}

/* For the per-message handlers: CH_OK when msg is usable, else CH_SKIP with
 * the reason. */
static ch_result check(ch_ctx *ctx, const ch_message *msg)
{
  char why[200];

  if (usable(msg, why, sizeof why))
    return CH_OK;
  ch_host->set_error(ctx, "skipped: %s", why);
  return CH_SKIP;
}

static int init(ch_ctx *ctx, void **state)
{
  *state = NULL;
  if (!view(ctx)) {
    ch_host->set_error(ctx, "admin-users needs a view database ([host] view_data)");
    return -1;
  }
  return 0;
}

/* ensureUser + setEmail */
static ch_result registered(ch_ctx *ctx, void *state, const ch_message *msg)
{
  char gp[24];
  const char *params[3] = {
    user_id(msg), json_string_value(json_object_get(msg->data, "email")), gp
  };
  (void)state;

  if (check(ctx, msg) != CH_OK)
    return CH_SKIP;
  snprintf(gp, sizeof gp, "%" PRId64, msg->global_position);
  return exec(ctx,
              "INSERT INTO admin_users AS a (id, email, last_identity_event_global_position)"
              " VALUES ($1, $2, $3::bigint)"
              " ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.email,"
              " last_identity_event_global_position = EXCLUDED.last_identity_event_global_position"
              " WHERE a.last_identity_event_global_position"
              "  < EXCLUDED.last_identity_event_global_position",
              3, params);
}

/* ensureUser + markRegistrationEmailSent */
static ch_result registration_email_sent(ch_ctx *ctx, void *state, const ch_message *msg)
{
  char gp[24];
  const char *params[2] = { user_id(msg), gp };
  (void)state;

  if (check(ctx, msg) != CH_OK)
    return CH_SKIP;
  snprintf(gp, sizeof gp, "%" PRId64, msg->global_position);
  return exec(ctx,
              "INSERT INTO admin_users AS a"
              " (id, registration_email_sent, last_identity_event_global_position)"
              " VALUES ($1, true, $2::bigint)"
              " ON CONFLICT (id) DO UPDATE SET registration_email_sent = true,"
              " last_identity_event_global_position = EXCLUDED.last_identity_event_global_position"
              " WHERE a.last_identity_event_global_position"
              "  < EXCLUDED.last_identity_event_global_position",
              2, params);
}

/* not printed in the book: ensureUser, then count the login, guarded like the
 * identity handlers */
static ch_result user_logged_in(ch_ctx *ctx, void *state, const ch_message *msg)
{
  char gp[24];
  const char *params[2] = { user_id(msg), gp };
  (void)state;

  if (check(ctx, msg) != CH_OK)
    return CH_SKIP;
  snprintf(gp, sizeof gp, "%" PRId64, msg->global_position);
  return exec(ctx,
              "INSERT INTO admin_users AS a"
              " (id, login_count, last_authentication_event_global_position)"
              " VALUES ($1, 1, $2::bigint)"
              " ON CONFLICT (id) DO UPDATE SET login_count = a.login_count + 1,"
              " last_authentication_event_global_position ="
              "  EXCLUDED.last_authentication_event_global_position"
              " WHERE a.last_authentication_event_global_position"
              "  < EXCLUDED.last_authentication_event_global_position",
              2, params);
}

/*
 * The identity events of a batch in one statement. Per user, the events
 * beyond last_identity_event_global_position fold into: the last
 * Registered's email, registration_email_sent if any RegistrationEmailSent,
 * and the highest global position. An event that is not one fails the
 * batch: the host then replays it message by message, and the handlers skip
 * it.
 */
static ch_result identity_batch(ch_ctx *ctx, void *state, const ch_message *msgs,
                                size_t count)
{
  enum { NCOLS = 4 };
  pg_array cols[NCOLS];
  const char *params[NCOLS];
  ch_result r = CH_OK;
  size_t n = 0;
  (void)state;

  memset(cols, 0, sizeof cols);
  for (size_t i = 0; i < count; i++) {
    const ch_message *m = &msgs[i];
    bool reg = strcmp(m->type, "Registered") == 0;
    char why[200];
    if (!reg && strcmp(m->type, "RegistrationEmailSent") != 0)
      continue;
    if (!usable(m, why, sizeof why)) {
      ch_host->set_error(ctx, "at %" PRId64 ": %s", m->global_position, why);
      r = CH_FAIL;
      goto out;
    }
    add_text(&cols[0], user_id(m));
    add_int(&cols[1], m->global_position);
    add_bool(&cols[2], reg);
    add_text(&cols[3], reg ? json_string_value(json_object_get(m->data, "email")) : NULL);
    n++;
  }
  if (n == 0 || (r = finish_all(ctx, cols, params, NCOLS)) != CH_OK)
    goto out;
  r = exec(ctx,
           "WITH e AS ("
           "  SELECT * FROM unnest($1::text[], $2::bigint[], $3::boolean[], $4::text[])"
           "    AS e(id, gp, registered, email)),"
           " fresh AS ("
           "  SELECT e.* FROM e LEFT JOIN admin_users a ON a.id = e.id"
           "  WHERE e.gp > coalesce(a.last_identity_event_global_position, 0)),"
           " f AS ("
           "  SELECT id, max(gp) AS gp, bool_or(registered) AS registered,"
           "   bool_or(NOT registered) AS sent,"
           "   (array_agg(email ORDER BY gp DESC) FILTER (WHERE registered))[1] AS email"
           "  FROM fresh GROUP BY id)"
           " INSERT INTO admin_users AS a"
           "  (id, email, registration_email_sent, last_identity_event_global_position)"
           " SELECT f.id, CASE WHEN f.registered THEN f.email ELSE c.email END,"
           "  f.sent OR coalesce(c.registration_email_sent, false), f.gp"
           " FROM f LEFT JOIN admin_users c ON c.id = f.id"
           " ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.email,"
           "  registration_email_sent = EXCLUDED.registration_email_sent,"
           "  last_identity_event_global_position = EXCLUDED.last_identity_event_global_position"
           " WHERE a.last_identity_event_global_position"
           "  < EXCLUDED.last_identity_event_global_position",
           NCOLS, params);

out:
  free_arrays(cols, NCOLS);
  return r;
}

/*
 * The UserLoggedIn events of a batch in one statement: per user, the number
 * of them beyond last_authentication_event_global_position is added to
 * login_count, and the highest global position becomes the guard.
 */
static ch_result authentication_batch(ch_ctx *ctx, void *state, const ch_message *msgs,
                                      size_t count)
{
  enum { NCOLS = 2 };
  pg_array cols[NCOLS];
  const char *params[NCOLS];
  ch_result r = CH_OK;
  size_t n = 0;
  (void)state;

  memset(cols, 0, sizeof cols);
  for (size_t i = 0; i < count; i++) {
    const ch_message *m = &msgs[i];
    char why[200];
    if (strcmp(m->type, "UserLoggedIn") != 0)
      continue;
    if (!usable(m, why, sizeof why)) {
      ch_host->set_error(ctx, "at %" PRId64 ": %s", m->global_position, why);
      r = CH_FAIL;
      goto out;
    }
    add_text(&cols[0], user_id(m));
    add_int(&cols[1], m->global_position);
    n++;
  }
  if (n == 0 || (r = finish_all(ctx, cols, params, NCOLS)) != CH_OK)
    goto out;
  r = exec(ctx,
           "WITH e AS (SELECT * FROM unnest($1::text[], $2::bigint[]) AS e(id, gp)),"
           " f AS ("
           "  SELECT e.id, count(*) AS n, max(e.gp) AS gp"
           "  FROM e LEFT JOIN admin_users a ON a.id = e.id"
           "  WHERE e.gp > coalesce(a.last_authentication_event_global_position, 0)"
           "  GROUP BY e.id)"
           " INSERT INTO admin_users AS a"
           "  (id, login_count, last_authentication_event_global_position)"
           " SELECT id, n, gp FROM f"
           " ON CONFLICT (id) DO UPDATE SET login_count = a.login_count + EXCLUDED.login_count,"
           "  last_authentication_event_global_position ="
           "   EXCLUDED.last_authentication_event_global_position"
           " WHERE a.last_authentication_event_global_position"
           "  < EXCLUDED.last_authentication_event_global_position",
           NCOLS, params);

out:
  free_arrays(cols, NCOLS);
  return r;
}

static int reset(ch_ctx *ctx, void *state)
{
  (void)state;
  return exec(ctx, "TRUNCATE admin_users", 0, NULL) == CH_OK ? 0 : -1;
}

static const ch_handler identity_handlers[] = {
  { "Registered", registered, { NULL, NULL } },
  { "RegistrationEmailSent", registration_email_sent, { NULL, NULL } },
  {0},
};

static const ch_handler authentication_handlers[] = {
  { "UserLoggedIn", user_logged_in, { NULL, NULL } },
  {0},
};

static const ch_subscription subscriptions[] = {
  { "identity", "e482ed56-311c-486c-9bb8-8c2e2ca6f6f4", NULL, identity_handlers,
    identity_batch, { NULL, NULL, NULL } },
  { "authentication", "18b4c5d6-1f30-4a67-9b61-76a42884a9bb", NULL, authentication_handlers,
    authentication_batch, { NULL, NULL, NULL } },
  {0},
};

static const ch_plugin_desc admin_users = CH_PLUGIN_DESC(
  .kind = CH_KIND_AGGREGATOR,
  .name = "admin-users",
  .version = "1.0.0",
  .description = "the Admin Portal's users: email, registration email sent, login count",
  .subscriptions = subscriptions,
  .migrations = migrations,
  .init = init,
  .reset = reset);

CH_PLUGIN_DEFINE(admin_users)
