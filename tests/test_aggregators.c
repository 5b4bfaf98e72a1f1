/*
 * test_aggregators.c - the book's aggregators end to end: real comphost
 * processes running the plugins of plugins/ against a real Message DB.
 *
 * Every view is checked row for row against the same rows computed by SQL
 * from message_store.messages: after a run, after every message was
 * delivered a second time, after a rebuild from position 0, and after kill -9
 * in the middle of 100,000 messages. Three ways of running are covered:
 * view_data positions with a batch transaction (batch handlers, exactly
 * once), the book's message_store positions with a batch transaction (the
 * host's default for aggregators: batch handlers, at least once) and without
 * one (per-message handlers). A test without a host checks that the batch
 * handlers leave what the per-message handlers leave.
 *
 *   test_aggregators [PATTERN]    runs the tests whose names match PATTERN
 */
#include "support.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "e2e.h"
#include "host_api.h"
#include "loader.h"
#include "viewdb.h"

#define PLUGIN_PATH(name) COMPHOST_BUILD_PLUGIN_DIR "/" name ".so"
#define WAIT 90000

static ch_e2e_db db;
static ch_e2e_host h;         /* the host a test runs; a failed test leaves it to teardown */

static int setup(void **state)
{
  (void)state;
  memset(&h, 0, sizeof h);
  ch_e2e_db_create(&db);
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  if (h.pid > 0)
    ch_e2e_host_stop(&h, SIGKILL, WAIT);
  ch_e2e_db_drop(&db);
  return 0;
}

/* ------------------------------------------------------------------ */
/* The plugins, their subscriptions and their views                    */
/* ------------------------------------------------------------------ */

static const char *const plugins[] = {
  "user-credentials", "video-operations", "creators-videos", "admin-users",
  "admin-streams", "subscriber-positions",
};
#define NPLUGINS (sizeof plugins / sizeof plugins[0])

typedef struct subscription {
  const char *subscriber_id;
  const char *category;       /* NULL: $all */
} subscription;

static const subscription subscriptions[] = {
  { "aggregators:user-credentials", "identity" },
  { "aggregators:video-operations", "videoPublishing" },
  { "aggregators:creators-videos", "videoPublishing" },
  { "e482ed56-311c-486c-9bb8-8c2e2ca6f6f4", "identity" },
  { "18b4c5d6-1f30-4a67-9b61-76a42884a9bb", "authentication" },
  { "6db9a0ab-7679-4b02-b5ad-2ebc8ae06b6a", NULL },
  { "aggregators:subscriber-positions", "subscriberPosition" },
};
#define NSUBS (sizeof subscriptions / sizeof subscriptions[0])
#define ADMIN_STREAMS_ID "6db9a0ab-7679-4b02-b5ad-2ebc8ae06b6a"
#define SUBSCRIBER_POSITIONS_ID "aggregators:subscriber-positions"

/*
 * A view table and the query that computes its rows from the messages,
 * column for column, independently of the plugin: `msgs` is
 * message_store.messages up to some global position.
 */
typedef struct view {
  const char *table;
  const char *key;            /* orders the rows */
  const char *subscriber_id;  /* whose position bounds `msgs`; NULL: the store's end */
  const char *expected;
} view;

static const view views[] = {
  { "user_credentials", "id", NULL,
    "SELECT DISTINCT ON (data->>'userId') data->>'userId' AS id,"
    " data->>'email' AS email, data->>'passwordHash' AS password_hash"
    " FROM msgs WHERE split_part(stream_name, '-', 1) = 'identity' AND type = 'Registered'"
    " ORDER BY data->>'userId', global_position" },
  { "video_operations", "trace_id", NULL,
    "SELECT DISTINCT ON (metadata->>'traceId') metadata->>'traceId' AS trace_id,"
    " substr(stream_name, strpos(stream_name, '-') + 1) AS video_id,"
    " type = 'VideoNamed' AS succeeded,"
    " CASE WHEN type = 'VideoNamed' THEN NULL ELSE data->>'reason' END AS failure_reason"
    " FROM msgs WHERE split_part(stream_name, '-', 1) = 'videoPublishing'"
    " AND type IN ('VideoNamed', 'VideoNameRejected')"
    " ORDER BY metadata->>'traceId', global_position" },
  { "creators_portal_videos", "id", NULL,
    "SELECT substr(stream_name, strpos(stream_name, '-') + 1) AS id,"
    " (array_agg(data->>'ownerId' ORDER BY position DESC)"
    "   FILTER (WHERE type = 'VideoPublished'))[1] AS owner_id,"
    " coalesce((array_agg(data->>'name' ORDER BY position DESC)"
    "   FILTER (WHERE type = 'VideoNamed'))[1], 'Untitled') AS name,"
    " (array_agg(data->>'sourceUri' ORDER BY position DESC)"
    "   FILTER (WHERE type = 'VideoPublished'))[1] AS source_uri,"
    " (array_agg(data->>'transcodedUri' ORDER BY position DESC)"
    "   FILTER (WHERE type = 'VideoPublished'))[1] AS transcoded_uri,"
    " max(position) AS position"
    " FROM msgs WHERE split_part(stream_name, '-', 1) = 'videoPublishing'"
    " AND type IN ('VideoPublished', 'VideoNamed') GROUP BY stream_name" },
  { "admin_users", "id", NULL,
    "SELECT data->>'userId' AS id,"
    " (array_agg(data->>'email' ORDER BY global_position DESC)"
    "   FILTER (WHERE type = 'Registered'))[1] AS email,"
    " bool_or(type = 'RegistrationEmailSent') AS registration_email_sent,"
    " coalesce(max(global_position) FILTER (WHERE type <> 'UserLoggedIn'), 0)"
    "   AS last_identity_event_global_position,"
    " (count(*) FILTER (WHERE type = 'UserLoggedIn'))::integer AS login_count,"
    " coalesce(max(global_position) FILTER (WHERE type = 'UserLoggedIn'), 0)"
    "   AS last_authentication_event_global_position"
    " FROM msgs WHERE (split_part(stream_name, '-', 1) = 'identity'"
    "   AND type IN ('Registered', 'RegistrationEmailSent'))"
    " OR (split_part(stream_name, '-', 1) = 'authentication' AND type = 'UserLoggedIn')"
    " GROUP BY data->>'userId'" },
  { "admin_streams", "stream_name", ADMIN_STREAMS_ID,
    "SELECT stream_name, count(*)::integer AS message_count,"
    " (array_agg(id::text ORDER BY global_position DESC))[1] AS last_message_id,"
    " max(global_position) AS last_message_global_position"
    " FROM msgs GROUP BY stream_name" },
  { "admin_subscriber_positions", "subscriber_id", SUBSCRIBER_POSITIONS_ID,
    "SELECT DISTINCT ON (stream_name)"
    " substr(stream_name, strpos(stream_name, '-') + 1) AS subscriber_id,"
    " (data->>'position')::bigint AS position, time AS recorded_at,"
    " global_position AS last_message_global_position"
    " FROM msgs WHERE split_part(stream_name, '-', 1) = 'subscriberPosition' AND type = 'Read'"
    " ORDER BY stream_name, global_position DESC" },
};
#define NVIEWS (sizeof views / sizeof views[0])

/* ------------------------------------------------------------------ */
/* SQL helpers                                                          */
/* ------------------------------------------------------------------ */

/* The one text value of `sql` ("" for NULL), or NULL when a table it reads
 * does not exist (yet); the caller frees it. */
static char *query_text(const char *url, const char *sql)
{
  PGconn *c = PQconnectdb(url);
  PGresult *res;
  const char *state;
  char *v;

  if (PQstatus(c) != CONNECTION_OK) {
    print_error("cannot connect to %s: %s\n", url, PQerrorMessage(c));
    PQfinish(c);
    fail();
  }
  res = PQexec(c, sql);
  state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  if (state && !strcmp(state, "42P01")) {
    PQclear(res);
    PQfinish(c);
    return NULL;
  }
  if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
    print_error("%s: %s\n", sql, PQresultErrorMessage(res));
    PQclear(res);
    PQfinish(c);
    fail();
  }
  v = strdup(PQgetisnull(res, 0, 0) ? "" : PQgetvalue(res, 0, 0));
  assert_non_null(v);
  PQclear(res);
  PQfinish(c);
  return v;
}

/* Every row of the view, as text, one a line, in key order. */
static char *view_rows(const view *v)
{
  char sql[512];

  snprintf(sql, sizeof sql, "SELECT string_agg(r::text, E'\\n' ORDER BY r.%s COLLATE \"C\")"
           " FROM %s r", v->key, v->table);
  return query_text(db.view_url, sql);
}

/* The rows the view must hold after the messages up to global position `upto`. */
static char *expected_rows(const view *v, int64_t upto)
{
  char sql[4096];

  snprintf(sql, sizeof sql,
           "WITH msgs AS (SELECT * FROM message_store.messages"
           "  WHERE global_position <= %" PRId64 ")"
           " SELECT string_agg(r::text, E'\\n' ORDER BY r.%s COLLATE \"C\") FROM (%s) r",
           upto, v->key, v->expected);
  return query_text(db.store_url, sql);
}

/* The first line where a and b differ, for the failure message. */
static void print_difference(const char *table, const char *got, const char *want)
{
  const char *g = got, *w = want;
  int line = 1;

  while (*g && *g == *w) {
    if (*g == '\n') {
      line++;
      got = g + 1;
      want = w + 1;
    }
    g++;
    w++;
  }
  print_error("%s differs at row %d:\n  view:     %.*s\n  expected: %.*s\n", table, line,
              (int)strcspn(got, "\n"), got, (int)strcspn(want, "\n"), want);
}

static bool view_matches(const view *v, int64_t upto, bool report)
{
  char *got = view_rows(v), *want = expected_rows(v, upto);
  bool same = got && strcmp(got, want) == 0;

  if (!got && report)
    print_error("%s does not exist\n", v->table);
  else if (!same && report)
    print_difference(v->table, got, want);
  free(got);
  free(want);
  return same;
}

static const view *view_named(const char *table)
{
  for (size_t i = 0; i < NVIEWS; i++)
    if (!strcmp(views[i].table, table))
      return &views[i];
  fail_msg("no view %s", table);
  return NULL;
}

static void assert_view_exact(const char *table, int64_t upto)
{
  assert_true(view_matches(view_named(table), upto, true));
}

static void assert_all_views_exact(void)
{
  for (size_t i = 0; i < NVIEWS; i++)
    assert_true(view_matches(&views[i], INT64_MAX, true));
}

/* Wait until the view holds the rows of every message in the store. */
static void wait_view_exact(const char *table)
{
  for (int i = 0; i < WAIT / 100; i++) {
    if (view_matches(view_named(table), INT64_MAX, false))
      return;
    ch_e2e_sleep_ms(100);
  }
  assert_view_exact(table, INT64_MAX);
}

/* The rows of `n` views (every view when tables is NULL), in one text, for
 * before/after comparisons. */
static char *snapshot_of(const char *const *tables, size_t n)
{
  size_t len = 0, cap = 1;
  char *all = malloc(cap);

  assert_non_null(all);
  all[0] = '\0';
  if (!tables)
    n = NVIEWS;
  for (size_t i = 0; i < n; i++) {
    const view *v = tables ? view_named(tables[i]) : &views[i];
    char *rows = view_rows(v);
    size_t more;
    assert_non_null(rows);
    more = strlen(v->table) + strlen(rows) + 3;
    all = realloc(all, cap += more);
    assert_non_null(all);
    len += (size_t)snprintf(all + len, cap - len, "%s:\n%s\n", v->table, rows);
    free(rows);
  }
  return all;
}

static char *snapshot(void)
{
  return snapshot_of(NULL, 0);
}

static void assert_snapshot_equal(const char *before, const char *after)
{
  if (strcmp(before, after) != 0) {
    print_difference("a view", after, before);
    fail_msg("the views changed");
  }
}

static int64_t store_int(const char *sql)
{
  return ch_e2e_int(db.store_url, sql);
}

/* The last global position of a category (NULL: of the whole store), 0 if none. */
static int64_t last_gp(const char *category)
{
  char sql[256];

  if (!category)
    return store_int("SELECT coalesce(max(global_position), 0) FROM message_store.messages");
  snprintf(sql, sizeof sql, "SELECT coalesce(max(global_position), 0)"
           " FROM message_store.messages WHERE split_part(stream_name, '-', 1) = '%s'",
           category);
  return store_int(sql);
}

/* The position a subscription saved: comphost_positions or its Read stream. */
static int64_t saved_position(const char *subscriber_id, bool view_data)
{
  char sql[512];

  if (view_data) {
    snprintf(sql, sizeof sql, "SELECT coalesce((SELECT position FROM comphost_positions"
             " WHERE subscriber_id = '%s'), 0)", subscriber_id);
    return ch_e2e_int(db.view_url, sql);
  }
  snprintf(sql, sizeof sql, "SELECT coalesce((SELECT (data->>'position')::bigint"
           " FROM message_store.messages WHERE stream_name = 'subscriberPosition-%s'"
           " AND type = 'Read' ORDER BY position DESC LIMIT 1), 0)", subscriber_id);
  return store_int(sql);
}

/* Wait until `sql` gives at least `want`. */
static void wait_at_least(const char *url, const char *sql, int64_t want)
{
  for (int i = 0; i < WAIT / 100 && ch_e2e_int(url, sql) < want; i++)
    ch_e2e_sleep_ms(100);
  if (ch_e2e_int(url, sql) < want)
    fail_msg("%s stayed below %" PRId64, sql, want);
}

/* Wait until every subscription saved the end of its category (view_data). */
static void wait_caught_up(void)
{
  for (size_t i = 0; i < NSUBS; i++) {
    char sql[512];
    int64_t want = last_gp(subscriptions[i].category);
    snprintf(sql, sizeof sql, "SELECT coalesce((SELECT position FROM comphost_positions"
             " WHERE subscriber_id = '%s'), 0)", subscriptions[i].subscriber_id);
    if (ch_e2e_wait_int(db.view_url, sql, want, WAIT) != want)
      fail_msg("%s did not reach %" PRId64, subscriptions[i].subscriber_id, want);
  }
}

/* ------------------------------------------------------------------ */
/* Messages                                                             */
/* ------------------------------------------------------------------ */

static void write_message(const char *stream, const char *type, const char *data_json,
                          const char *meta_json)
{
  chd_mdb *m = ch_e2e_store(&db);
  json_t *data = json_loads(data_json, JSON_DECODE_ANY, NULL);
  json_t *meta = meta_json ? json_loads(meta_json, JSON_DECODE_ANY, NULL) : NULL;

  assert_non_null(data);
  assert_int_equal(chd_mdb_write(m, stream, NULL, type, data, meta, CH_VERSION_ANY, NULL),
                   CHD_STORE_OK);
  json_decref(data);
  json_decref(meta);
  chd_mdb_free(m);
}

/*
 * Write n messages, i = first .. first + n - 1, in one statement: every type
 * the aggregators handle, and others, in 20 kinds. In groups of 20 messages
 * each kind comes once, starting at a different kind in each group; the
 * even groups are about one user and one video (of 61 and 53), so that a
 * batch holds several events of one stream, and the odd ones spread over
 * 1999 users and 1499 videos. So streams interleave, users log in before
 * they register, videos are named before they are published, traceIds
 * repeat, and names and emails hold quotes, backslashes, braces, commas,
 * "NULL" and nothing at all.
 */
static void seed(int64_t first, int64_t n)
{
  char sql[6000];

  snprintf(sql, sizeof sql,
    "SET search_path = message_store, public;"
    "SELECT count(write_message(gen_random_uuid()::varchar, s.stream_name, s.type,"
    " s.data, s.metadata)) FROM (SELECT"
    " CASE WHEN k < 3 THEN 'identity-' || u WHEN k < 7 THEN 'authentication-' || u"
    "  WHEN k < 13 THEN 'videoPublishing-' || v WHEN k < 16 THEN 'subscriberPosition-' || sub"
    "  WHEN k < 18 THEN 'viewing-' || v WHEN k = 18 THEN 'videoPublishing:command-' || v"
    "  ELSE 'identity:command-' || u END AS stream_name,"
    " (ARRAY['Registered', 'Registered', 'RegistrationEmailSent', 'UserLoggedIn',"
    "  'UserLoggedIn', 'UserLoggedIn', 'UserLoginFailed', 'VideoPublished', 'VideoPublished',"
    "  'VideoNamed', 'VideoNamed', 'VideoNameRejected', 'VideoPublishingFailed', 'Read',"
    "  'Read', 'Stopped', 'VideoViewed', 'VideoViewed', 'NameVideo', 'Register'])[k + 1]"
    "  AS type,"
    " CASE WHEN k IN (0, 1, 19) THEN jsonb_build_object('userId', u, 'email',"
    "   CASE i %% 5 WHEN 0 THEN 'o''brien+' || i || '@example.com'"
    "    WHEN 1 THEN 'back\\slash\"' || i || '@example.com'"
    "    ELSE 'user' || i || '@example.com' END, 'passwordHash', '$2b$10$' || md5(i::text))"
    "  WHEN k = 2 THEN jsonb_build_object('userId', u, 'emailId', md5('e' || i)::uuid)"
    "  WHEN k < 6 THEN jsonb_build_object('userId', u)"
    "  WHEN k = 6 THEN jsonb_build_object('userId', u, 'reason', 'Incorrect password')"
    "  WHEN k IN (7, 8) THEN jsonb_build_object('ownerId', u,"
    "   'sourceUri', 'https://example.com/s/' || i,"
    "   'transcodedUri', 'https://www.youtube.com/watch?v=GI_P3UtZXAA', 'videoId', v)"
    "  WHEN k IN (9, 10) THEN jsonb_build_object('name',"
    "   CASE i %% 7 WHEN 0 THEN 'NULL' WHEN 1 THEN 'say \"hi\" \\ ' || i"
    "    WHEN 2 THEN '{a,b}' WHEN 3 THEN 'Élan ☃ ' || i WHEN 4 THEN ''"
    "    ELSE 'Video ' || i END)"
    "  WHEN k = 11 THEN jsonb_build_object('name', '', 'reason',"
    "   'ValidationError**{\"name\": [\"Can''t be blank\"]}')"
    "  WHEN k = 12 THEN jsonb_build_object('ownerId', u, 'sourceUri', 'x', 'videoId', v,"
    "   'reason', 'Invalid format')"
    "  WHEN k IN (13, 14) THEN jsonb_build_object('position', i)"
    "  WHEN k = 15 THEN jsonb_build_object('position', i, 'reason', 'told to stop')"
    "  WHEN k IN (16, 17) THEN jsonb_build_object('userId', u, 'videoId', v)"
    "  ELSE jsonb_build_object('name', 'n' || i, 'videoId', v) END AS data,"
    " jsonb_build_object('traceId', 't' || (i / 3), 'userId', u) AS metadata"
    " FROM (SELECT i, (i + 7 * (i / 20)) %% 20 AS k,"
    "  md5('u' || CASE WHEN i / 20 %% 2 = 0 THEN i / 20 * 7919 %% 61"
    "   ELSE i * 7919 %% 1999 END)::uuid::text AS u,"
    "  md5('v' || CASE WHEN i / 20 %% 2 = 0 THEN i / 20 * 104729 %% 53"
    "   ELSE i * 104729 %% 1499 END)::uuid::text AS v,"
    "  'sub-' || (i %% 7) AS sub"
    "  FROM generate_series(%" PRId64 "::bigint, %" PRId64 "::bigint) AS i) g) s",
    first, first + n - 1);
  ch_e2e_exec(db.store_url, sql);
}

/* ------------------------------------------------------------------ */
/* Hosts                                                                */
/* ------------------------------------------------------------------ */

/* An INI running every aggregator with `keys` in each section. */
static const char *aggregators_ini(const char *name, const char *keys)
{
  char body[4096];
  size_t len = 0;

  body[0] = '\0';
  for (size_t i = 0; i < NPLUGINS; i++)
    len += (size_t)snprintf(body + len, sizeof body - len, "[%s]\nlibrary = %s/%s.so\n%s\n",
                            plugins[i], COMPHOST_BUILD_PLUGIN_DIR, plugins[i], keys);
  return ch_e2e_write_ini(&db, name, body);
}

static void stop_cleanly(void)
{
  int status = ch_e2e_host_stop(&h, SIGTERM, WAIT);

  assert_true(status != -1 && WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  assert_false(ch_e2e_log_contains(&h, "subscription stopped"));
}

/* Run the host of `ini` until every subscription caught up (view_data). */
static void run_to_the_end(const char *ini, const char *log)
{
  ch_e2e_host_start(&h, &db, ini, log);
  wait_caught_up();
  stop_cleanly();
}

/* Call every plugin's reset() as the host would: in a view transaction. */
static void reset_every_plugin(void)
{
  chd_viewdb *vdb = chd_viewdb_new(db.view_url);
  PGconn *c;

  assert_int_equal(chd_viewdb_connect(vdb), CHD_STORE_OK);
  c = chd_viewdb_conn(vdb);
  for (size_t i = 0; i < NPLUGINS; i++) {
    char path[512], err[1024];
    chd_plugin p;
    ch_ctx ctx;
    void *state = NULL;
    PGresult *res;

    snprintf(path, sizeof path, "%s/%s.so", COMPHOST_BUILD_PLUGIN_DIR, plugins[i]);
    if (chd_plugin_load(&p, path, err, sizeof err) != 0)
      fail_msg("%s", err);
    assert_non_null(p.desc.reset);
    chd_ctx_init(&ctx, NULL, NULL, &p);
    ctx.view = vdb;
    assert_int_equal(p.desc.init(&ctx, &state), 0);
    PQclear(PQexec(c, "BEGIN"));
    if (p.desc.reset(&ctx, state) != 0)
      fail_msg("reset of %s: %s", plugins[i], ctx.error);
    res = PQexec(c, "COMMIT");
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    chd_plugin_unload(&p);
  }
  chd_viewdb_free(vdb);
}

/* ------------------------------------------------------------------ */
/* Tests                                                                */
/* ------------------------------------------------------------------ */

/* The book's examples, value by value, with batches or one message at a time. */
#define U1 "11111111-1111-4111-8111-111111111111"
#define U2 "22222222-2222-4222-8222-222222222222"
#define V1 "aaaaaaaa-0000-4000-8000-000000000001"
#define V2 "aaaaaaaa-0000-4000-8000-000000000002"
#define V3 "aaaaaaaa-0000-4000-8000-000000000003"

static void book_examples(bool batched)
{
  const char *ini = aggregators_ini("agg-book.ini", batched ? "position_store = view_data\n"
                                                            : "batch_transaction = false\n");
  int64_t reg2, login3;

  write_message("identity-" U1, "Registered", "{\"userId\": \"" U1 "\", \"email\":"
                " \"a@example.com\", \"passwordHash\": \"h1\"}", "{\"traceId\": \"r1\"}");
  write_message("identity-" U1, "RegistrationEmailSent", "{\"userId\": \"" U1 "\","
                " \"emailId\": \"e1\"}", NULL);
  /* a second Registered (the concurrency bug of chapter 15) */
  write_message("identity-" U1, "Registered", "{\"userId\": \"" U1 "\", \"email\":"
                " \"b@example.com\", \"passwordHash\": \"h2\"}", NULL);
  reg2 = last_gp("identity");
  for (int i = 0; i < 3; i++)
    write_message("authentication-" U1, "UserLoggedIn", "{\"userId\": \"" U1 "\"}", NULL);
  login3 = last_gp("authentication");
  write_message("authentication-" U1, "UserLoginFailed", "{\"userId\": \"" U1 "\","
                " \"reason\": \"Incorrect password\"}", NULL);
  write_message("authentication-" U2, "UserLoggedIn", "{\"userId\": \"" U2 "\"}", NULL);

  write_message("videoPublishing-" V1, "VideoPublished", "{\"ownerId\": \"" U1 "\","
                " \"sourceUri\": \"https://example.com/v1\", \"transcodedUri\":"
                " \"https://www.youtube.com/watch?v=GI_P3UtZXAA\", \"videoId\": \"" V1 "\"}",
                "{\"traceId\": \"p1\"}");
  write_message("videoPublishing-" V1, "VideoNamed", "{\"name\": \"My \\\"first\\\" video\"}",
                "{\"traceId\": \"n1\"}");
  write_message("videoPublishing-" V1, "VideoNameRejected", "{\"name\": \"\", \"reason\":"
                " \"ValidationError**{\\\"name\\\": [\\\"Can't be blank\\\"]}\"}",
                "{\"traceId\": \"n2\"}");
  write_message("videoPublishing-" V1, "VideoNamed", "{\"name\": \"NULL\"}",
                "{\"traceId\": \"n3\"}");
  /* named before it was published */
  write_message("videoPublishing-" V2, "VideoNamed", "{\"name\": \"named first\"}",
                "{\"traceId\": \"n4\"}");
  write_message("videoPublishing-" V2, "VideoPublished", "{\"ownerId\": \"" U2 "\","
                " \"sourceUri\": \"s2\", \"transcodedUri\": \"t2\", \"videoId\": \"" V2 "\"}",
                "{\"traceId\": \"p2\"}");
  write_message("videoPublishing-" V3, "VideoPublished", "{\"ownerId\": \"" U2 "\","
                " \"sourceUri\": \"s3\", \"transcodedUri\": \"t3\", \"videoId\": \"" V3 "\"}",
                "{\"traceId\": \"p3\"}");
  write_message("videoPublishing:command-" V3, "NameVideo", "{\"name\": \"x\"}",
                "{\"traceId\": \"n5\"}");

  write_message("subscriberPosition-components:identity", "Read", "{\"position\": 5}", NULL);
  write_message("subscriberPosition-components:identity", "Read", "{\"position\": 9}", NULL);
  write_message("subscriberPosition-aggregators:home-page", "Read", "{\"position\": 3}", NULL);
  write_message("subscriberPosition-aggregators:home-page", "Stopped", "{\"position\": 4,"
                " \"reason\": \"x\"}", NULL);

  ch_e2e_host_start(&h, &db, ini, "book.log");
  assert_int_equal(ch_e2e_wait_int(db.view_url, "SELECT count(*) FROM admin_subscriber_positions"
                   " WHERE subscriber_id IN ('components:identity', 'aggregators:home-page')",
                   2, WAIT), 2);
  wait_view_exact("user_credentials");
  wait_view_exact("video_operations");
  wait_view_exact("creators_portal_videos");
  wait_view_exact("admin_users");
  ch_e2e_sleep_ms(300);
  stop_cleanly();

  /* user-credentials: the first Registered wins */
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT count(*) FROM user_credentials"
                              " WHERE id = '" U1 "' AND email = 'a@example.com'"
                              " AND password_hash = 'h1'"), 1);
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT count(*) FROM user_credentials"), 1);

  /* video-operations: by traceId, the video id from the stream name */
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT count(*) FROM video_operations"), 4);
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT count(*) FROM video_operations"
                              " WHERE trace_id IN ('n1', 'n3') AND video_id = '" V1 "'"
                              " AND succeeded AND failure_reason IS NULL"), 2);
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT count(*) FROM video_operations"
                              " WHERE trace_id = 'n2' AND video_id = '" V1 "' AND NOT succeeded"
                              " AND failure_reason = 'ValidationError**{\"name\":"
                              " [\"Can''t be blank\"]}'"), 1);
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT count(*) FROM video_operations"
                              " WHERE trace_id = 'n4' AND video_id = '" V2 "' AND succeeded"), 1);

  /* creators-videos: one row per video, the stream position as guard */
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT count(*) FROM creators_portal_videos"
                              " WHERE id = '" V1 "' AND owner_id = '" U1 "' AND name = 'NULL'"
                              " AND source_uri = 'https://example.com/v1'"
                              " AND transcoded_uri = 'https://www.youtube.com/watch?v=GI_P3UtZXAA'"
                              " AND position = 3"), 1);
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT count(*) FROM creators_portal_videos"
                              " WHERE id = '" V2 "' AND owner_id = '" U2 "'"
                              " AND name = 'named first' AND transcoded_uri = 't2'"
                              " AND position = 1"), 1);
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT count(*) FROM creators_portal_videos"
                              " WHERE id = '" V3 "' AND name = 'Untitled' AND position = 0"), 1);
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT count(*) FROM creators_portal_videos"), 3);

  /* admin-users: the last email, the email sent, three logins */
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT login_count FROM admin_users"
                              " WHERE id = '" U1 "' AND email = 'b@example.com'"
                              " AND registration_email_sent"), 3);
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT last_identity_event_global_position"
                              " FROM admin_users WHERE id = '" U1 "'"), reg2);
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT last_authentication_event_global_position"
                              " FROM admin_users WHERE id = '" U1 "'"), login3);
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT login_count FROM admin_users"
                              " WHERE id = '" U2 "' AND email IS NULL"
                              " AND NOT registration_email_sent"
                              " AND last_identity_event_global_position = 0"), 1);

  /* admin-streams */
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT message_count FROM admin_streams"
                              " WHERE stream_name = 'identity-" U1 "'"), 3);
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT message_count FROM admin_streams"
                              " WHERE stream_name = 'authentication-" U1 "'"), 4);
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT message_count FROM admin_streams"
                              " WHERE stream_name = 'videoPublishing-" V1 "'"), 4);
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT last_message_global_position"
                              " FROM admin_streams WHERE stream_name = 'authentication-" U2 "'"),
                   store_int("SELECT global_position FROM message_store.messages"
                             " WHERE stream_name = 'authentication-" U2 "'"));

  /* subscriber-positions: the last Read of each subscriber; Stopped is no Read */
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT position FROM admin_subscriber_positions"
                              " WHERE subscriber_id = 'components:identity'"), 9);
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT position FROM admin_subscriber_positions"
                              " WHERE subscriber_id = 'aggregators:home-page'"), 3);

  /* and all of it as the SQL of the store computes it */
  assert_view_exact("user_credentials", INT64_MAX);
  assert_view_exact("video_operations", INT64_MAX);
  assert_view_exact("creators_portal_videos", INT64_MAX);
  assert_view_exact("admin_users", INT64_MAX);
  assert_view_exact("admin_streams", saved_position(ADMIN_STREAMS_ID, batched));
  assert_view_exact("admin_subscriber_positions",
                    saved_position(SUBSCRIBER_POSITIONS_ID, batched));
}

static void test_book_examples_in_batches(void **state)
{
  (void)state;
  book_examples(true);
}

static void test_book_examples_one_by_one(void **state)
{
  (void)state;
  book_examples(false);
}

/*
 * view_data positions, batch handlers: the views equal the store's SQL;
 * then every message is delivered again (positions back to 0), and nothing
 * changes.
 */
static void test_batches_exact_and_redelivery_changes_nothing(void **state)
{
  const char *ini = aggregators_ini("agg-batch.ini", "position_store = view_data\n");
  char *before, *after;
  (void)state;

  seed(0, 6000);
  run_to_the_end(ini, "first.log");
  assert_all_views_exact();
  before = snapshot();

  ch_e2e_exec(db.view_url, "UPDATE comphost_positions SET position = 0");
  run_to_the_end(ini, "again.log");
  after = snapshot();
  assert_snapshot_equal(before, after);
  free(after);

  /* and from the middle: half of it a third time, then new messages */
  ch_e2e_exec(db.view_url, "UPDATE comphost_positions SET position = position / 2");
  seed(6000, 1000);
  run_to_the_end(ini, "third.log");
  assert_all_views_exact();
  free(before);
}

/*
 * The book's message_store positions: the views equal the store's SQL; then
 * a Read {position: 0} for every subscriber, and nothing changes. `keys`
 * choose per-message handlers (no batch transaction) or batch handlers.
 */
static void book_positions_redelivered(const char *keys)
{
  const char *ini = aggregators_ini("agg-book.ini", keys);
  const char *const category_views[] = { "user_credentials", "video_operations",
                                          "creators_portal_videos", "admin_users" };
  char *before = NULL, *after;

  seed(0, 3000);
  for (int round = 0; round < 2; round++) {
    int64_t end = last_gp(NULL);
    ch_e2e_host_start(&h, &db, ini, round ? "again.log" : "first.log");
    for (size_t i = 0; i < 4; i++)
      wait_view_exact(category_views[i]);
    /* the host's position writes are messages too: the $all and
     * subscriberPosition views are exact up to where they read */
    wait_at_least(db.view_url, "SELECT max(last_message_global_position) FROM admin_streams",
                  end);
    ch_e2e_sleep_ms(300);
    stop_cleanly();
    assert_view_exact("admin_streams", saved_position(ADMIN_STREAMS_ID, false));
    assert_view_exact("admin_subscriber_positions",
                      saved_position(SUBSCRIBER_POSITIONS_ID, false));
    if (round == 0) {
      before = snapshot_of(category_views, 4);
      for (size_t i = 0; i < NSUBS; i++) {
        char stream[300];
        snprintf(stream, sizeof stream, "subscriberPosition-%s", subscriptions[i].subscriber_id);
        write_message(stream, "Read", "{\"position\": 0}", NULL);
      }
    }
  }
  assert_true(ch_e2e_log_contains(&h, "Started aggregators:user-credentials at global"
                                  " position 1 "));
  after = snapshot_of(category_views, 4);
  assert_snapshot_equal(before, after);
  free(before);
  free(after);
}

static void test_one_by_one_exact_and_redelivery_changes_nothing(void **state)
{
  (void)state;
  book_positions_redelivered("batch_transaction = false\n");
}

/* The host's default for aggregators with message_store positions: a view
 * transaction per batch, the position written after it commits. */
static void test_book_positions_in_batches_redelivery_changes_nothing(void **state)
{
  (void)state;
  book_positions_redelivered("");
}

/* reset() empties every view; a rebuild from position 0 yields the same views. */
static void test_rebuild_from_zero_equals_live(void **state)
{
  const char *ini = aggregators_ini("agg-rebuild.ini", "position_store = view_data\n");
  char *live, *rebuilt;
  (void)state;

  seed(0, 5000);
  run_to_the_end(ini, "live.log");
  live = snapshot();

  reset_every_plugin();
  for (size_t i = 0; i < NVIEWS; i++) {
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", views[i].table);
    assert_int_equal(ch_e2e_int(db.view_url, sql), 0);
  }
  ch_e2e_exec(db.view_url, "DELETE FROM comphost_positions");
  run_to_the_end(ini, "rebuild.log");
  rebuilt = snapshot();
  assert_snapshot_equal(live, rebuilt);
  assert_all_views_exact();
  free(live);
  free(rebuilt);
}

/*
 * Malformed events, in the middle of good ones: every aggregator skips what
 * it cannot project (the subscription goes on to the end of its category),
 * puts no NULL and no garbage into its table, projects the good events
 * after them, and says why without row values.
 */
#define G1 "99999999-0000-4000-8000-000000000001"
#define GV "99999999-0000-4000-8000-0000000000f1"

static void malformed_events(bool batched)
{
  static const char *const good[] = {
    "SELECT count(*) FROM user_credentials WHERE id = '" G1 "'",
    "SELECT count(*) FROM admin_users WHERE id = '" G1 "' AND login_count = 1"
    " AND email IS NOT NULL",
    "SELECT count(*) FROM video_operations WHERE trace_id = 't2'",
    "SELECT count(*) FROM creators_portal_videos WHERE name = 'Good' AND owner_id IS NOT NULL",
    "SELECT count(*) FROM admin_subscriber_positions WHERE subscriber_id = 'sub-good'",
    "SELECT count(*) FROM admin_streams WHERE stream_name = 'subscriberPosition-sub-good'",
  };
  const char *ini = aggregators_ini("agg-hostile.ini",
                                    batched ? "position_store = view_data\n"
                                            : "position_store = view_data\n"
                                              "batch_transaction = false\n");
  char *big = ch_e2e_long_id(3000, 11), *kilo = ch_e2e_long_id(1000, 12);
  char *big_trace = ch_e2e_long_id(3000, 13);
  char *text, stream[1100], data[3300], meta[3300], deep[4000];
  size_t len = 0;

  for (int i = 0; i < 300; i++)
    len += (size_t)snprintf(deep + len, sizeof deep - len, "[");
  len += (size_t)snprintf(deep + len, sizeof deep - len, "\"x\"");
  for (int i = 0; i < 300; i++)
    len += (size_t)snprintf(deep + len, sizeof deep - len, "]");

  /* identity: user-credentials and admin-users */
  write_message("identity-b1", "Registered", "[1, 2]", NULL);
  write_message("identity-b2", "Registered", "\"registered\"", NULL);
  write_message("identity-b3", "Registered", "42", NULL);
  snprintf(data, sizeof data, "{\"userId\": \"%s\", \"email\": \"b4@example.com\","
           " \"passwordHash\": \"h\"}", big);
  write_message("identity-b4", "Registered", data, NULL);
  snprintf(data, sizeof data, "{\"userId\": \"b5\", \"email\": \"%s\", \"passwordHash\": \"h\"}",
           big);
  write_message("identity-b5", "Registered", data, NULL);
  snprintf(data, sizeof data, "{\"userId\": %s, \"email\": \"b6@example.com\","
           " \"passwordHash\": \"h\"}", deep);
  write_message("identity-b6", "Registered", data, NULL);
  write_message("identity-b7", "RegistrationEmailSent", "{\"userId\": 42}", NULL);
  write_message("identity-b8", "Registered", "{\"userId\": \"b8\", \"email\": null,"
                " \"passwordHash\": \"h\"}", NULL);
  /* authentication: admin-users */
  write_message("authentication-b9", "UserLoggedIn", "\"x\"", NULL);
  snprintf(data, sizeof data, "{\"userId\": \"%s\"}", big);
  write_message("authentication-b10", "UserLoggedIn", data, NULL);
  write_message("authentication-b11", "UserLoggedIn", "{\"userId\": [\"" G1 "\"]}", NULL);
  /* videoPublishing: video-operations and creators-videos */
  write_message("videoPublishing-" GV, "VideoNamed", "{\"name\": \"first\"}", NULL);
  write_message("videoPublishing-" GV, "VideoNamed", "[\"name\"]", "{\"traceId\": \"tb12\"}");
  snprintf(data, sizeof data, "{\"name\": %s}", deep);
  snprintf(meta, sizeof meta, "{\"traceId\": \"%s\"}", big_trace);
  write_message("videoPublishing-" GV, "VideoNamed", data, meta);
  write_message("videoPublishing-" GV, "VideoNameRejected", "{\"name\": \"\", \"reason\": 42}",
                "{\"traceId\": \"tb14\"}");
  snprintf(data, sizeof data, "{\"ownerId\": \"%s\", \"sourceUri\": \"s\","
           " \"transcodedUri\": \"t\", \"videoId\": \"" GV "\"}", big);
  write_message("videoPublishing-" GV, "VideoPublished", data, "{\"traceId\": \"tb15\"}");
  write_message("videoPublishing-" GV, "VideoPublished", "\"published\"",
                "{\"traceId\": \"tb16\"}");
  write_message("videoPublishing-" GV, "VideoNamed", "{\"name\": \"n\"}", "[\"traceId\"]");
  snprintf(stream, sizeof stream, "videoPublishing-%s", kilo);
  write_message(stream, "VideoNamed", "{\"name\": \"n\"}", "{\"traceId\": \"tb17\"}");
  /* subscriberPosition: subscriber-positions */
  write_message("subscriberPosition-sub-b18", "Read", "[1]", NULL);
  write_message("subscriberPosition-sub-b19", "Read", "{\"position\": \"5\"}", NULL);
  write_message("subscriberPosition-sub-b20", "Read", "{\"position\": -1}", NULL);
  write_message("subscriberPosition-sub-b21", "Read", "{\"position\": 1.5}", NULL);
  snprintf(stream, sizeof stream, "subscriberPosition-%s", kilo);
  write_message(stream, "Read", "{\"position\": 1}", NULL);

  /* the good events after them */
  write_message("identity-" G1, "Registered", "{\"userId\": \"" G1 "\", \"email\":"
                " \"g1@example.com\", \"passwordHash\": \"h1\"}", NULL);
  write_message("authentication-" G1, "UserLoggedIn", "{\"userId\": \"" G1 "\"}", NULL);
  write_message("videoPublishing-" GV, "VideoPublished", "{\"ownerId\": \"" G1 "\","
                " \"sourceUri\": \"s\", \"transcodedUri\": \"t\", \"videoId\": \"" GV "\"}",
                "{\"traceId\": \"t1\"}");
  write_message("videoPublishing-" GV, "VideoNamed", "{\"name\": \"Good\"}",
                "{\"traceId\": \"t2\"}");
  write_message("subscriberPosition-sub-good", "Read", "{\"position\": 5}", NULL);

  ch_e2e_host_start(&h, &db, ini, batched ? "hostile-batch.log" : "hostile-one.log");
  /* the good events come last: once they are in, everything before was passed */
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
    if (ch_e2e_wait_int(db.view_url, good[i], 1, WAIT) != 1)
      fail_msg("not projected: %s", good[i]);
  if (batched)
    wait_caught_up();
  stop_cleanly();

  /* only the good rows, and rows the book's handlers would write */
  text = query_text(db.view_url, "SELECT string_agg(concat_ws('|', id, email, password_hash),"
                    " ',' ORDER BY id) FROM user_credentials");
  assert_string_equal(text, G1 "|g1@example.com|h1");
  free(text);
  text = query_text(db.view_url, "SELECT string_agg(concat_ws('|', id, email,"
                    " registration_email_sent, login_count), ',' ORDER BY id) FROM admin_users");
  assert_string_equal(text, G1 "|g1@example.com|f|1");
  free(text);
  /* tb12: a VideoNamed's outcome needs only its traceId and stream */
  text = query_text(db.view_url, "SELECT string_agg(concat_ws('|', trace_id, video_id,"
                    " succeeded, coalesce(failure_reason, '-')), ',' ORDER BY trace_id)"
                    " FROM video_operations");
  assert_string_equal(text, "t2|" GV "|t|-,tb12|" GV "|t|-");
  free(text);
  text = query_text(db.view_url, "SELECT string_agg(concat_ws('|', id, owner_id, name,"
                    " source_uri, transcoded_uri, position), ',' ORDER BY id)"
                    " FROM creators_portal_videos");
  assert_string_equal(text, GV "|" G1 "|Good|s|t|8");
  free(text);
  text = query_text(db.view_url, "SELECT string_agg(subscriber_id || '|' || position, ','"
                    " ORDER BY subscriber_id) FROM admin_subscriber_positions");
  assert_string_equal(text, "sub-good|5");
  free(text);
  /* admin-streams reads no field: every stream, counted */
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT count(*) FROM admin_streams"),
                   store_int("SELECT count(DISTINCT stream_name) FROM message_store.messages"));
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT count(*) FROM admin_streams WHERE"
                              " last_message_id IS NULL"), 0);
  /* the reasons are logged, without row values */
  assert_true(ch_e2e_log_contains(&h, "data must be an object"));
  assert_true(ch_e2e_log_contains(&h, "userId is too long (3000 bytes, at most 255)"));
  assert_true(ch_e2e_log_contains(&h, "metadata.traceId is missing"));
  assert_true(ch_e2e_log_contains(&h, "position must be an integer of 0 or more"));
  assert_false(ch_e2e_log_contains(&h, "Failing row contains"));
  assert_false(ch_e2e_log_contains(&h, big));
  free(big);
  free(big_trace);
  free(kilo);
}

static void test_malformed_events_are_skipped_in_batches(void **state)
{
  (void)state;
  malformed_events(true);
}

static void test_malformed_events_are_skipped_one_by_one(void **state)
{
  (void)state;
  malformed_events(false);
}

/*
 * A message the handler refuses, inside a batch: the batch handler fails,
 * the host replays the batch one message at a time, the handler skips the
 * bad message, and the messages before and after it commit.
 */
static void test_refused_message_in_a_batch_is_skipped(void **state)
{
  char body[600];
  const char *ini;
  int64_t before_bad = 0;
  (void)state;

  for (int i = 0; i < 7; i++) {
    char stream[80], data[200];
    snprintf(stream, sizeof stream, "identity-0000000%d-0000-4000-8000-000000000000", i);
    snprintf(data, sizeof data, "{\"userId\": \"0000000%d-0000-4000-8000-000000000000\","
             " \"email\": \"u%d@example.com\", \"passwordHash\": \"h\"}", i, i);
    write_message(stream, "Registered", data, NULL);
    if (i == 4) {
      before_bad = last_gp("identity");
      write_message("identity-bad", "Registered", "{\"userId\": \"bad\"}", NULL);
    }
  }
  snprintf(body, sizeof body, "[user-credentials]\nlibrary = %s/user-credentials.so\n"
           "position_store = view_data\n", COMPHOST_BUILD_PLUGIN_DIR);
  ini = ch_e2e_write_ini(&db, "agg-bad.ini", body);
  ch_e2e_host_start(&h, &db, ini, "bad.log");
  if (ch_e2e_wait_int(db.view_url, "SELECT coalesce((SELECT position FROM comphost_positions"
                      " WHERE subscriber_id = 'aggregators:user-credentials'), 0)",
                      last_gp("identity"), WAIT) != last_gp("identity"))
    fail_msg("aggregators:user-credentials did not reach the end of identity");
  stop_cleanly();
  assert_true(ch_e2e_log_contains(&h, "Registered skipped: email is missing"));
  assert_false(ch_e2e_log_contains(&h, "violates not-null constraint"));
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT count(*) FROM user_credentials"), 7);
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT count(*) FROM user_credentials"
                              " WHERE id = 'bad'"), 0);
  assert_true(before_bad > 0);
}

/*
 * Batch handlers against per-message handlers, without a host: every
 * message of each subscription, once through the per-message handlers and
 * again (a redelivery), into schema `one`; and through the batch handler in
 * slices of random sizes, going back now and then to deliver a stretch
 * again, into schema `batch`. Every batch must succeed (no fallback hides a
 * failing statement), and both schemas must hold the same rows, which are
 * those the store's SQL computes.
 */
typedef struct message_list {
  chd_mdb_batch parts[256];
  size_t nparts;
  ch_message *msgs;
  size_t count;
} message_list;

static void read_everything(chd_mdb *m, const char *stream_name, message_list *l)
{
  int64_t from = 1;
  size_t k = 0;

  memset(l, 0, sizeof *l);
  for (;;) {
    chd_mdb_batch *b = &l->parts[l->nparts];
    assert_true(l->nparts < 256);
    assert_int_equal(chd_mdb_read(m, stream_name, from, 1000, b), CHD_STORE_OK);
    if (b->count == 0) {
      chd_mdb_batch_release(b);
      break;
    }
    from = b->messages[b->count - 1].global_position + 1;
    l->count += b->count;
    l->nparts++;
  }
  l->msgs = calloc(l->count ? l->count : 1, sizeof *l->msgs);
  assert_non_null(l->msgs);
  for (size_t p = 0; p < l->nparts; p++)
    for (size_t i = 0; i < l->parts[p].count; i++)
      l->msgs[k++] = l->parts[p].messages[i];
}

static void release_list(message_list *l)
{
  for (size_t p = 0; p < l->nparts; p++)
    chd_mdb_batch_release(&l->parts[p]);
  free(l->msgs);
}

static void exec_on(PGconn *c, const char *sql)
{
  PGresult *res = PQexec(c, sql);

  if (PQresultStatus(res) != PGRES_COMMAND_OK)
    fail_msg("%s: %s", sql, PQresultErrorMessage(res));
  PQclear(res);
}

/* A plugin instance on its own schema of the view database. */
typedef struct instance {
  chd_viewdb *view;
  PGconn *conn;
  ch_ctx ctx;
  void *state;
} instance;

static void open_instance(instance *in, const chd_plugin *p, const char *schema)
{
  char sql[200];

  in->view = chd_viewdb_new(db.view_url);
  assert_int_equal(chd_viewdb_connect(in->view), CHD_STORE_OK);
  in->conn = chd_viewdb_conn(in->view);
  snprintf(sql, sizeof sql, "SET client_min_messages = warning;"
           " CREATE SCHEMA IF NOT EXISTS %s; SET search_path = %s", schema,
           schema);
  exec_on(in->conn, sql);
  for (const ch_migration *mg = p->desc.migrations; mg && mg->id; mg++)
    exec_on(in->conn, mg->sql);
  chd_ctx_init(&in->ctx, NULL, NULL, p);
  in->ctx.view = in->view;
  in->state = NULL;
  assert_int_equal(p->desc.init(&in->ctx, &in->state), 0);
}

/* Deliver msgs[0..n) in one transaction, as a batch or one by one. */
static void deliver(instance *in, const ch_subscription *sub, const ch_message *msgs,
                    size_t n, bool batched)
{
  exec_on(in->conn, "BEGIN");
  if (batched) {
    if (sub->handle_batch(&in->ctx, in->state, msgs, n) != CH_OK)
      fail_msg("%s: a batch of %zu from %" PRId64 " failed: %s", sub->subscriber_id, n,
               msgs[0].global_position, in->ctx.error);
  } else {
    for (size_t i = 0; i < n; i++) {
      ch_handler_fn fn = chd_handler_find(sub, msgs[i].type);
      if (fn && fn(&in->ctx, in->state, &msgs[i]) != CH_OK)
        fail_msg("%s: %s at %" PRId64 " failed: %s", sub->subscriber_id, msgs[i].type,
                 msgs[i].global_position, in->ctx.error);
    }
  }
  exec_on(in->conn, "COMMIT");
}

static char *schema_rows(const char *schema, const view *v)
{
  char sql[512];

  snprintf(sql, sizeof sql, "SELECT string_agg(r::text, E'\\n' ORDER BY r.%s COLLATE \"C\")"
           " FROM %s.%s r", v->key, schema, v->table);
  return query_text(db.view_url, sql);
}

static void test_batch_handlers_equal_message_handlers(void **state)
{
  chd_mdb *m;
  size_t batches = 0, redelivered = 0;
  (void)state;

  seed(0, 4000);
  m = ch_e2e_store(&db);
  srand(20200401);
  for (size_t i = 0; i < NPLUGINS; i++) {
    char path[512], err[1024];
    chd_plugin p;
    instance one, batch;

    snprintf(path, sizeof path, "%s/%s.so", COMPHOST_BUILD_PLUGIN_DIR, plugins[i]);
    if (chd_plugin_load(&p, path, err, sizeof err) != 0)
      fail_msg("%s", err);
    open_instance(&one, &p, "one");
    open_instance(&batch, &p, "batch");
    for (const ch_subscription *sub = p.desc.subscriptions; sub->stream_name; sub++) {
      message_list l;
      size_t at = 0;

      assert_non_null(sub->handle_batch);
      read_everything(m, sub->stream_name, &l);
      assert_true(l.count > 0);
      deliver(&one, sub, l.msgs, l.count, false);
      deliver(&one, sub, l.msgs, l.count, false);
      while (at < l.count) {
        size_t n = 1 + (size_t)rand() % 150, back;
        if (n > l.count - at)
          n = l.count - at;
        deliver(&batch, sub, l.msgs + at, n, true);
        batches++;
        back = (size_t)rand() % 300;
        if (rand() % 4 == 0 && back > 0) {
          at = back > at ? 0 : at - back;
          redelivered++;
        } else {
          at += n;
        }
      }
      release_list(&l);
    }
    chd_viewdb_free(one.view);
    chd_viewdb_free(batch.view);
    chd_plugin_unload(&p);
  }
  chd_mdb_free(m);
  print_message("%zu batches, %zu times going back\n", batches, redelivered);

  for (size_t i = 0; i < NVIEWS; i++) {
    char *a = schema_rows("one", &views[i]), *b = schema_rows("batch", &views[i]);
    char *want = expected_rows(&views[i], INT64_MAX);
    assert_non_null(a);
    assert_non_null(b);
    if (strcmp(a, b) != 0) {
      print_difference(views[i].table, b, a);
      fail_msg("batches and single messages differ in %s", views[i].table);
    }
    if (strcmp(a, want) != 0) {
      print_difference(views[i].table, a, want);
      fail_msg("%s is not what the store says", views[i].table);
    }
    free(a);
    free(b);
    free(want);
  }
}

/* kill -9 of the host at random moments of a 100,000-message run. */
static void test_kill9_during_100000_messages(void **state)
{
  const char *ini = aggregators_ini("agg-kill.ini", "position_store = view_data\n");
  unsigned seed_value = (unsigned)time(NULL) ^ (unsigned)getpid();
  int kills = 2 + (int)(seed_value % 2);
  int64_t end;
  (void)state;

  srand(seed_value);
  seed(0, 100000);
  end = last_gp(NULL);
  for (int k = 0; k <= kills; k++) {
    char log[32];
    snprintf(log, sizeof log, "run%d.log", k);
    ch_e2e_host_start(&h, &db, ini, log);
    if (k < kills) {
      pid_t workers[16];
      int n;
      int64_t at;
      ch_e2e_sleep_ms(700 + rand() % 1500);
      n = ch_e2e_workers(&h, workers, 16);
      kill(h.pid, SIGKILL);
      assert_true(ch_e2e_host_wait(&h, WAIT) != -1);
      ch_e2e_sleep_ms(300);
      for (int i = 0; i < n; i++)
        assert_false(ch_e2e_process_alive(workers[i]));
      at = saved_position(ADMIN_STREAMS_ID, true);
      print_message("kill -9 %d of %d (seed %u): $all read up to %" PRId64 " of %" PRId64 "\n",
                    k + 1, kills, seed_value, at, end);
      /* the first one, at least, lands in the middle of the run */
      if (k == 0)
        assert_true(at < end);
    }
  }
  wait_caught_up();
  stop_cleanly();
  assert_all_views_exact();
}

/* n VideoViewed events of their own streams; `data` is SQL for jsonb. */
static void write_views(int n, const char *data)
{
  char sql[512];

  snprintf(sql, sizeof sql, "SELECT count(message_store.write_message(gen_random_uuid()::text,"
           " 'viewing-' || gen_random_uuid(), 'VideoViewed', %s)) FROM generate_series(1, %d)",
           data, n);
  ch_e2e_exec(db.store_url, sql);
}

/* Wait until the home page counts `n` events, the last at `last`. */
static void wait_home(int64_t n, int64_t last)
{
  const char *count = "SELECT coalesce((SELECT (page_data->>'videosWatched')::bigint"
                      " FROM pages WHERE page_name = 'home'), 0)";
  const char *at = "SELECT coalesce((SELECT (page_data->>'lastViewProcessed')::bigint"
                   " FROM pages WHERE page_name = 'home'), 0)";

  if (ch_e2e_wait_int(db.view_url, count, n, WAIT) != n)
    fail_msg("the home page counts %" PRId64 " views, not %" PRId64,
             ch_e2e_int(db.view_url, count), n);
  assert_int_equal(ch_e2e_int(db.view_url, at), last);
}

/*
 * home-page's subscription is envelope-only: the host decodes neither data
 * nor metadata for it, so a VideoViewed whose data jansson cannot decode is
 * counted like the others, not parked, in batches and one by one. Batches
 * of 7 read ahead many times; every event counts once.
 */
static void test_home_page_reads_only_envelopes(void **state)
{
  const char *ini;
  (void)state;

  write_views(30, "'{}'");
  write_views(1, "'{\"n\": 9223372036854775808}'");
  write_views(29, "jsonb_build_object('userId', gen_random_uuid())");
  ini = ch_e2e_write_ini(&db, "home.ini", "[home-page]\nlibrary = " PLUGIN_PATH("home-page")
                         "\nbatch_size = 7\nposition_store = view_data\n");
  ch_e2e_host_start(&h, &db, ini, "batches.log");
  wait_home(60, last_gp("viewing"));
  stop_cleanly();
  assert_true(ch_e2e_log_contains(&h, "reading ahead on a second connection"));
  assert_false(ch_e2e_log_contains(&h, "parked"));
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT position FROM comphost_positions"
                              " WHERE subscriber_id = 'aggregators:home-page'"),
                   last_gp("viewing"));

  /* one by one, from the first message again: the guard counts nothing twice */
  write_views(2, "'{\"n\": 9223372036854775808}'");
  write_views(3, "'{}'");
  ini = ch_e2e_write_ini(&db, "home-one.ini", "[home-page]\nlibrary = "
                         PLUGIN_PATH("home-page") "\nbatch_size = 7\n"
                         "batch_transaction = false\n");
  ch_e2e_host_start(&h, &db, ini, "one.log");
  wait_home(65, last_gp("viewing"));
  stop_cleanly();
  assert_false(ch_e2e_log_contains(&h, "parked"));
}

/* config/aggregators.ini and config/video-tutorials.ini run every
 * aggregator, and their plugins load. */
static void test_shipped_configs_are_valid(void **state)
{
  const char *const files[] = { COMPHOST_SOURCE_DIR "/config/aggregators.ini",
                                COMPHOST_SOURCE_DIR "/config/video-tutorials.ini" };
  (void)state;

  for (size_t f = 0; f < 2; f++) {
    const char *argv[] = { "check", "-c", files[f], "--plugin-dir", COMPHOST_BUILD_PLUGIN_DIR,
                           "--no-db", NULL };
    char *out = NULL;
    int rc = ch_e2e_run(NULL, argv, &out);
    if (rc != 0)
      fail_msg("check %s: exit %d:\n%s", files[f], rc, out);
    for (size_t i = 0; i < NSUBS; i++) {
      char line[200];
      snprintf(line, sizeof line, "subscription %s: ", subscriptions[i].subscriber_id);
      if (!strstr(out, line))
        fail_msg("no %s in:\n%s", line, out);
    }
    if (f == 0 && !strstr(out, "subscription aggregators:home-page: viewing"))
      fail_msg("no home-page in:\n%s", out);
    free(out);
  }
}

/* An argument runs only the tests whose names match it ('*' and '?'). */
int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_shipped_configs_are_valid),
    cmocka_unit_test_setup_teardown(test_book_examples_in_batches, setup, teardown),
    cmocka_unit_test_setup_teardown(test_book_examples_one_by_one, setup, teardown),
    cmocka_unit_test_setup_teardown(test_batch_handlers_equal_message_handlers, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_batches_exact_and_redelivery_changes_nothing,
                                    setup, teardown),
    cmocka_unit_test_setup_teardown(test_one_by_one_exact_and_redelivery_changes_nothing,
                                    setup, teardown),
    cmocka_unit_test_setup_teardown(test_book_positions_in_batches_redelivery_changes_nothing,
                                    setup, teardown),
    cmocka_unit_test_setup_teardown(test_rebuild_from_zero_equals_live, setup, teardown),
    cmocka_unit_test_setup_teardown(test_refused_message_in_a_batch_is_skipped,
                                    setup, teardown),
    cmocka_unit_test_setup_teardown(test_malformed_events_are_skipped_in_batches,
                                    setup, teardown),
    cmocka_unit_test_setup_teardown(test_malformed_events_are_skipped_one_by_one,
                                    setup, teardown),
    cmocka_unit_test_setup_teardown(test_home_page_reads_only_envelopes, setup, teardown),
    cmocka_unit_test_setup_teardown(test_kill9_during_100000_messages, setup, teardown),
  };
  if (argc > 1)
    cmocka_set_test_filter(argv[1]);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
