/*
 * fx_runtime.c - a plugin whose handlers do what the message tells them, for
 * the end-to-end tests of the host.
 *
 * Every handled message is recorded as a row of fx_seen (no unique key: a
 * message handled twice shows twice). Types on the `fxrun` category:
 *   Count     record it
 *   Crash     kill the worker with SIGSEGV when data.plugin is this plugin's
 *             name, else record it
 *   Retry     return CH_RETRY until it was tried data.times times, then record
 *   Fail      return CH_FAIL with data.reason
 *   WriteTwo  write First and Second to fxout-<data.id>; with crash_marker
 *             set and that file absent, create it and die between the writes
 *   Slow      sleep data.ms, then record
 *   FailUnless  return CH_FAIL unless the file data.file exists, then record
 *   Skip      return CH_SKIP with data.reason
 *   Forward   when data.plugin is this plugin's name, write Forwarded to
 *             the stream data.to, with data.origin as originStreamName;
 *             then record it
 *   WriteAt   write At to data.stream expecting version data.expected; on a
 *             version conflict, read the stream's version and write at that
 *             (logged); then record it
 *   WriteBad  write a message the database refuses (a NUL in its data),
 *             ignore the failure, as a careless handler would, and record it
 *   (others)  no handler
 * `fxorigin` records what comes from the origin category `fxsource`, and
 * `fxbatch` records Count messages in batches and fails on Fail.
 * Built with FX_ALL, the plugin has one more subscription: `$all`,
 * recording every message of a stream whose name starts with "fxall".
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include <comphost/plugin.h>

static const ch_migration migrations[] = {
  { "1_fx_seen",
    "CREATE TABLE IF NOT EXISTS fx_seen (subscriber text, global_position bigint, stream_name text,"
    " type text, label text, at timestamptz DEFAULT clock_timestamp())", { 0 } },
  { NULL, NULL, { 0 } },
};

static const ch_config_key config_keys[] = {
  { "label", CH_CONFIG_STRING, "a", false, "recorded with every row", { 0 } },
  { "crash_marker", CH_CONFIG_STRING, NULL, false,
    "WriteTwo dies between its writes when this file does not exist", { 0 } },
  { NULL, 0, NULL, false, NULL, { 0 } },
};

static ch_result record(ch_ctx *ctx, const char *subscriber, const ch_message *m)
{
  char gp[24];
  const char *params[5] = { subscriber, gp, m->stream_name, m->type,
                            ch_host->config_get(ctx, "label") };
  PGresult *res;
  ch_result r = CH_OK;

  snprintf(gp, sizeof gp, "%" PRId64, m->global_position);
  res = PQexecParams((PGconn *)ch_host->view_db(ctx),
                     "INSERT INTO fx_seen (subscriber, global_position, stream_name, type, label)"
                     " VALUES ($1, $2::bigint, $3, $4, $5)", 5, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(res) != PGRES_COMMAND_OK) {
    ch_host->set_error(ctx, "%s", PQresultErrorMessage(res));
    r = CH_FAIL;
  }
  PQclear(res);
  return r;
}

static int64_t data_int(const ch_message *m, const char *key)
{
  return (int64_t)json_integer_value(json_object_get(m->data, key));
}

static ch_result on_count(ch_ctx *ctx, void *state, const ch_message *m)
{
  (void)state;
  return record(ctx, FX_PREFIX ":run", m);
}

static ch_result on_crash(ch_ctx *ctx, void *state, const ch_message *m)
{
  const char *who = json_string_value(json_object_get(m->data, "plugin"));
  (void)state;

  if (who && !strcmp(who, FX_NAME))
    raise(SIGSEGV);
  return record(ctx, FX_PREFIX ":run", m);
}

/* attempts per global position, for Retry */
static struct { int64_t gp; int64_t tries; } attempts[64];

static ch_result on_retry(ch_ctx *ctx, void *state, const ch_message *m)
{
  size_t i;
  (void)state;

  for (i = 0; i < 64 && attempts[i].gp && attempts[i].gp != m->global_position; i++)
    ;
  if (i == 64)
    return CH_FAIL;
  attempts[i].gp = m->global_position;
  if (attempts[i].tries++ < data_int(m, "times")) {
    ch_host->set_error(ctx, "not yet (try %" PRId64 ")", attempts[i].tries);
    return CH_RETRY;
  }
  return record(ctx, FX_PREFIX ":run", m);
}

static ch_result on_fail(ch_ctx *ctx, void *state, const ch_message *m)
{
  const char *reason = json_string_value(json_object_get(m->data, "reason"));
  (void)state;

  ch_host->set_error(ctx, "told to fail: %s", reason ? reason : "no reason");
  return CH_FAIL;
}

static ch_result on_fail_unless(ch_ctx *ctx, void *state, const ch_message *m)
{
  const char *file = json_string_value(json_object_get(m->data, "file"));
  (void)state;

  if (!file || access(file, F_OK) != 0) {
    ch_host->set_error(ctx, "no file %s", file ? file : "(none named)");
    return CH_FAIL;
  }
  return record(ctx, FX_PREFIX ":run", m);
}

static ch_result on_skip(ch_ctx *ctx, void *state, const ch_message *m)
{
  const char *reason = json_string_value(json_object_get(m->data, "reason"));
  (void)state;

  ch_host->set_error(ctx, "malformed: %s", reason ? reason : "no reason");
  return CH_SKIP;
}

static ch_result on_write_two(ch_ctx *ctx, void *state, const ch_message *m)
{
  const char *id = json_string_value(json_object_get(m->data, "id"));
  const char *marker = ch_host->config_get(ctx, "crash_marker");
  char stream[200];
  json_t *meta = ch_host->follow(ctx, m, NULL);
  int rc;
  (void)state;

  snprintf(stream, sizeof stream, "fxout-%s", id ? id : "none");
  rc = ch_host->write(ctx, stream, "First", m->data, meta, CH_VERSION_ANY, NULL);
  if (rc < 0)
    goto failed;
  if (marker && access(marker, F_OK) != 0) {
    FILE *f = fopen(marker, "w");
    if (f)
      fclose(f);
    raise(SIGKILL);
  }
  rc = ch_host->write(ctx, stream, "Second", m->data, meta, CH_VERSION_ANY, NULL);
  if (rc < 0)
    goto failed;
  json_decref(meta);
  return record(ctx, FX_PREFIX ":run", m);

failed:
  json_decref(meta);
  ch_host->set_error(ctx, "write failed: %s", ch_host->last_error(ctx));
  return rc == CH_RC_UNAVAILABLE ? CH_RETRY : CH_FAIL;
}

static ch_result on_forward(ch_ctx *ctx, void *state, const ch_message *m)
{
  const char *who = json_string_value(json_object_get(m->data, "plugin"));
  const char *to = json_string_value(json_object_get(m->data, "to"));
  const char *origin = json_string_value(json_object_get(m->data, "origin"));
  (void)state;

  if (who && to && !strcmp(who, FX_NAME)) {
    json_t *meta = ch_host->follow(ctx, m, origin);
    int rc = ch_host->write(ctx, to, "Forwarded", m->data, meta, CH_VERSION_ANY, NULL);
    json_decref(meta);
    if (rc < 0) {
      ch_host->set_error(ctx, "write failed: %s", ch_host->last_error(ctx));
      return CH_RETRY;
    }
  }
  return record(ctx, FX_PREFIX ":run", m);
}

static ch_result on_write_at(ch_ctx *ctx, void *state, const ch_message *m)
{
  const char *stream = json_string_value(json_object_get(m->data, "stream"));
  int64_t expected = data_int(m, "expected"), version = -1;
  int rc;
  (void)state;

  if (!stream)
    return CH_SKIP;
  rc = ch_host->write(ctx, stream, "At", m->data, NULL, expected, NULL);
  if (rc == CH_RC_CONFLICT) {
    /* the transaction, if any, must still be usable */
    ch_host->log(ctx, CH_LOG_INFO, "conflict: %s", ch_host->last_error(ctx));
    if (ch_host->stream_version(ctx, stream, &version) != CH_RC_OK) {
      ch_host->set_error(ctx, "cannot read the version: %s", ch_host->last_error(ctx));
      return CH_FAIL;
    }
    rc = ch_host->write(ctx, stream, "At", m->data, NULL, version, NULL);
    if (rc >= 0)
      ch_host->log(ctx, CH_LOG_INFO, "wrote At at version %" PRId64 " after the conflict",
                   version + 1);
  }
  if (rc < 0) {
    ch_host->set_error(ctx, "write failed: %s", ch_host->last_error(ctx));
    return CH_FAIL;
  }
  return record(ctx, FX_PREFIX ":run", m);
}

static ch_result on_write_bad(ch_ctx *ctx, void *state, const ch_message *m)
{
  json_t *bad = json_pack("{s:s%}", "text", "a\0b", (size_t)3);
  (void)state;

  ch_host->write(ctx, "fxbad-1", "Bad", bad, NULL, CH_VERSION_ANY, NULL);
  json_decref(bad);
  return record(ctx, FX_PREFIX ":run", m);
}

static ch_result on_slow(ch_ctx *ctx, void *state, const ch_message *m)
{
  int64_t ms = data_int(m, "ms");
  struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
  (void)state;

  while (nanosleep(&ts, &ts) != 0)
    ;
  return record(ctx, FX_PREFIX ":run", m);
}

static ch_result on_origin(ch_ctx *ctx, void *state, const ch_message *m)
{
  (void)state;
  return record(ctx, FX_PREFIX ":origin", m);
}

static ch_result on_batch_count(ch_ctx *ctx, void *state, const ch_message *m)
{
  (void)state;
  return record(ctx, FX_PREFIX ":batch", m);
}

static ch_result on_batch(ch_ctx *ctx, void *state, const ch_message *msgs, size_t n)
{
  (void)state;
  for (size_t i = 0; i < n; i++) {
    if (!strcmp(msgs[i].type, "Fail")) {
      ch_host->set_error(ctx, "a Fail in the batch");
      return CH_FAIL;
    }
    if (!strcmp(msgs[i].type, "Count") && record(ctx, FX_PREFIX ":batch", &msgs[i]) != CH_OK)
      return CH_FAIL;
  }
  return CH_OK;
}

static const ch_handler run_handlers[] = {
  { "Count", on_count, { 0 } },
  { "Crash", on_crash, { 0 } },
  { "Retry", on_retry, { 0 } },
  { "Fail", on_fail, { 0 } },
  { "WriteTwo", on_write_two, { 0 } },
  { "Slow", on_slow, { 0 } },
  { "FailUnless", on_fail_unless, { 0 } },
  { "Skip", on_skip, { 0 } },
  { "Forward", on_forward, { 0 } },
  { "WriteAt", on_write_at, { 0 } },
  { "WriteBad", on_write_bad, { 0 } },
  { NULL, NULL, { 0 } },
};

static const ch_handler origin_handlers[] = {
  { "$any", on_origin, { 0 } },
  { NULL, NULL, { 0 } },
};

static const ch_handler batch_handlers[] = {
  { "Count", on_batch_count, { 0 } },
  { "Fail", on_fail, { 0 } },
  { NULL, NULL, { 0 } },
};

#ifdef FX_ALL
static ch_result on_all(ch_ctx *ctx, void *state, const ch_message *m)
{
  (void)state;
  return strncmp(m->stream_name, "fxall", 5) ? CH_OK : record(ctx, FX_PREFIX ":all", m);
}

static const ch_handler all_handlers[] = {
  { "$any", on_all, { 0 } },
  { NULL, NULL, { 0 } },
};
#endif

static const ch_subscription subscriptions[] = {
#ifdef FX_ALL
  { "$all", FX_PREFIX ":all", NULL, all_handlers, NULL, { 0 } },
#endif
  { "fxrun", FX_PREFIX ":run", NULL, run_handlers, NULL, { 0 } },
  { "fxorigin", FX_PREFIX ":origin", "fxsource", origin_handlers, NULL, { 0 } },
  { "fxbatch", FX_PREFIX ":batch", NULL, batch_handlers, on_batch, { 0 } },
  { NULL, NULL, NULL, NULL, NULL, { 0 } },
};

static int init(ch_ctx *ctx, void **state)
{
  *state = NULL;
  if (!ch_host->view_db(ctx)) {
    ch_host->set_error(ctx, "needs a view database");
    return -1;
  }
  if (getenv("FX_INIT_FAIL") && !strcmp(getenv("FX_INIT_FAIL"), FX_NAME)) {
    ch_host->set_error(ctx, "told to fail in init");
    return -1;
  }
  return 0;
}

static const ch_plugin_desc desc = {
  .magic = CH_PLUGIN_MAGIC,
  .abi_major = CH_ABI_MAJOR,
  .abi_minor = CH_ABI_MINOR,
  .struct_size = sizeof(ch_plugin_desc),
  .kind = CH_KIND_AGGREGATOR,
  .name = FX_NAME,
  .version = "0.0.1",
  .description = "does what each message says, for tests",
  .config_keys = config_keys,
  .subscriptions = subscriptions,
  .migrations = migrations,
  .init = init,
};

CH_PLUGIN_DEFINE(desc)
