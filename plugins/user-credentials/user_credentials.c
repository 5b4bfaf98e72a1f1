/*
 * user_credentials.c - the book's user-credentials aggregator (chapter 8).
 *
 * Subscribes to `identity` as aggregators:user-credentials and inserts one
 * row of `user_credentials` (id, email, password_hash) per Registered event.
 * The primary key on id is the idempotence guard: INSERT ... ON CONFLICT DO
 * NOTHING, so the first Registered of a user wins, however often it or a
 * later one is delivered.
 *
 * A Registered that is not one (data not an object; userId, email or
 * passwordHash missing, not a non-empty string, or longer than checks.h
 * allows) is skipped (CH_SKIP): it never reaches the table.
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
  { "20180623124103_create-user-credentials",
    "CREATE TABLE IF NOT EXISTS user_credentials ("
    " id text PRIMARY KEY,"
    " email text NOT NULL,"
    " password_hash text NOT NULL);"
    "CREATE INDEX IF NOT EXISTS user_credentials_email_index ON user_credentials (email)",
    { NULL, NULL } },
  {0},
};

/* A Registered's userId, email and passwordHash into f[], or false with
 * the reason in why. */
static bool registered_fields(const ch_message *msg, const char *f[3], char *why, size_t size)
{
  if (!json_is_object(msg->data)) {
    snprintf(why, size, "data must be an object");
    return false;
  }
  return (f[0] = checked_string(msg->data, "userId", MAX_ID_BYTES, true, why, size)) &&
         (f[1] = checked_string(msg->data, "email", MAX_EMAIL_BYTES, true, why, size)) &&
         (f[2] = checked_string(msg->data, "passwordHash", SIZE_MAX, true, why, size));
}

static int init(ch_ctx *ctx, void **state)
{
  *state = NULL;
  if (!view(ctx)) {
    ch_host->set_error(ctx, "user-credentials needs a view database ([host] view_data)");
    return -1;
  }
  return 0;
}

/* createUserCredential */
static ch_result registered(ch_ctx *ctx, void *state, const ch_message *msg)
{
  const char *params[3];
  char why[200];
  (void)state;

  if (!registered_fields(msg, params, why, sizeof why)) {
    ch_host->set_error(ctx, "Registered skipped: %s", why);
    return CH_SKIP;
  }
  return exec(ctx,
              "INSERT INTO user_credentials (id, email, password_hash)"
              " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
              3, params);
}

/*
 * A whole batch in one statement: the first Registered of each user in the
 * batch, inserted unless the user has a row already. A Registered that is
 * not one fails the batch: the host then replays it message by message, and
 * the handler above skips it.
 */
static ch_result registered_batch(ch_ctx *ctx, void *state, const ch_message *msgs,
                                  size_t count)
{
  pg_array cols[3];
  const char *params[3];
  ch_result r = CH_OK;
  size_t n = 0;
  (void)state;

  memset(cols, 0, sizeof cols);
  for (size_t i = 0; i < count; i++) {
    const char *f[3];
    char why[200];
    if (strcmp(msgs[i].type, "Registered") != 0)
      continue;
    if (!registered_fields(&msgs[i], f, why, sizeof why)) {
      ch_host->set_error(ctx, "Registered at %" PRId64 ": %s", msgs[i].global_position, why);
      r = CH_FAIL;
      goto out;
    }
    add_text(&cols[0], f[0]);
    add_text(&cols[1], f[1]);
    add_text(&cols[2], f[2]);
    n++;
  }
  if (n == 0)
    goto out;
  for (int c = 0; c < 3; c++) {
    params[c] = finish(&cols[c]);
    if (!params[c]) {
      ch_host->set_error(ctx, "out of memory");
      r = CH_RETRY;
      goto out;
    }
  }
  r = exec(ctx,
           "INSERT INTO user_credentials (id, email, password_hash)"
           " SELECT DISTINCT ON (id) id, email, password_hash"
           " FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY"
           "   AS r(id, email, password_hash, n)"
           " ORDER BY id, n"
           " ON CONFLICT DO NOTHING",
           3, params);

out:
  for (int c = 0; c < 3; c++)
    pg_array_release(&cols[c]);
  return r;
}

static int reset(ch_ctx *ctx, void *state)
{
  (void)state;
  return exec(ctx, "TRUNCATE user_credentials", 0, NULL) == CH_OK ? 0 : -1;
}

static const ch_handler handlers[] = {
  { "Registered", registered, { NULL, NULL } },
  {0},
};

static const ch_subscription subscriptions[] = {
  { "identity", "aggregators:user-credentials", NULL, handlers, registered_batch,
    { NULL, NULL, NULL } },
  {0},
};

static const ch_plugin_desc user_credentials = CH_PLUGIN_DESC(
  .kind = CH_KIND_AGGREGATOR,
  .name = "user-credentials",
  .version = "1.0.0",
  .description = "the book's user credentials: email and password hash of every registered user",
  .subscriptions = subscriptions,
  .migrations = migrations,
  .init = init,
  .reset = reset);

CH_PLUGIN_DEFINE(user_credentials)
