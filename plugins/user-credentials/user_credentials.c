/*
 * user_credentials.c - the book's user-credentials aggregator (chapter 8).
 *
 * Subscribes to `identity` as aggregators:user-credentials and inserts one
 * row of `user_credentials` (id, email, password_hash) per Registered event.
 * The primary key on id is the idempotence guard: INSERT ... ON CONFLICT DO
 * NOTHING, so the first Registered of a user wins, however often it or a
 * later one is delivered.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include <comphost/plugin.h>

#include "view_sql.h"

static const ch_migration migrations[] = {
  { "20180623124103_create-user-credentials",
    "CREATE TABLE IF NOT EXISTS user_credentials ("
    " id text PRIMARY KEY,"
    " email text NOT NULL,"
    " password_hash text NOT NULL);"
    "CREATE INDEX IF NOT EXISTS user_credentials_email_index ON user_credentials (email)",
    { NULL, NULL } },
  { NULL, NULL, { NULL, NULL } },
};

/* A string field of data, NULL when absent or not a string. */
static const char *data_string(const ch_message *msg, const char *key)
{
  return json_string_value(json_object_get(msg->data, key));
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
  const char *params[3] = { data_string(msg, "userId"), data_string(msg, "email"),
                            data_string(msg, "passwordHash") };
  (void)state;

  return exec(ctx,
              "INSERT INTO user_credentials (id, email, password_hash)"
              " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
              3, params);
}

/*
 * A whole batch in one statement: the first Registered of each user in the
 * batch, inserted unless the user has a row already. A Registered missing a
 * field fails the batch: the host then replays it message by message, and
 * the handler above decides (the NOT NULL columns refuse it).
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
    const char *id, *email, *hash;
    if (strcmp(msgs[i].type, "Registered") != 0)
      continue;
    id = data_string(&msgs[i], "userId");
    email = data_string(&msgs[i], "email");
    hash = data_string(&msgs[i], "passwordHash");
    if (!id || !email || !hash) {
      ch_host->set_error(ctx, "Registered at %" PRId64 " lacks userId, email or passwordHash",
                         msgs[i].global_position);
      r = CH_FAIL;
      goto out;
    }
    add_text(&cols[0], id);
    add_text(&cols[1], email);
    add_text(&cols[2], hash);
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
    free(cols[c].text);
  return r;
}

static int reset(ch_ctx *ctx, void *state)
{
  (void)state;
  return exec(ctx, "TRUNCATE user_credentials", 0, NULL) == CH_OK ? 0 : -1;
}

static const ch_handler handlers[] = {
  { "Registered", registered, { NULL, NULL } },
  { NULL, NULL, { NULL, NULL } },
};

static const ch_subscription subscriptions[] = {
  { "identity", "aggregators:user-credentials", NULL, handlers, registered_batch,
    { NULL, NULL, NULL } },
  { NULL, NULL, NULL, NULL, NULL, { NULL, NULL, NULL } },
};

static const ch_plugin_desc user_credentials = {
  .magic = CH_PLUGIN_MAGIC,
  .abi_major = CH_ABI_MAJOR,
  .abi_minor = CH_ABI_MINOR,
  .struct_size = sizeof(ch_plugin_desc),
  .kind = CH_KIND_AGGREGATOR,
  .name = "user-credentials",
  .version = "1.0.0",
  .description = "the book's user credentials: email and password hash of every registered user",
  .subscriptions = subscriptions,
  .migrations = migrations,
  .init = init,
  .reset = reset,
};

CH_PLUGIN_DEFINE(user_credentials)
