/*
 * test_wake.c - push wake-ups and fewer round trips, end to end: real
 * comphost processes against the dev database.
 *
 * - the notify trigger of `comphost migrate-store` notifies each category
 *   once per transaction, and wakes an idle subscriber at once;
 * - without the trigger, a plugin's write through the host wakes the
 *   subscribers of its category, unless notify_writes = false;
 * - notifications lost while a connection was down cost a poll, no more;
 * - store transactions without savepoints: a redelivered write and a
 *   version conflict leave the transaction usable; a write the database
 *   refuses rolls the batch back and the replay parks only its stream;
 * - asynchronous commit of the view transaction (position_store =
 *   view_data) survives a server crash exactly once. That test stops the
 *   dev cluster with scripts/dev-db crash: from a second worktree, point
 *   COMPHOST_DEV_DB_SCRIPT at the script of the tree that runs the cluster.
 */
#include "support.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "clock.h"
#include "e2e.h"

#define WAIT 60000
/* An idle subscriber polls every IDLE_POLL_MS: handling within FAST_MS
 * can only come from a wake-up. */
#define IDLE_POLL_MS "10000"
#define FAST_MS 500

static ch_e2e_db db;

static int setup(void **state)
{
  (void)state;
  ch_e2e_db_create(&db);
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  ch_e2e_db_drop(&db);
  return 0;
}

static void stop_cleanly(ch_e2e_host *h)
{
  int status = ch_e2e_host_stop(h, SIGTERM, WAIT);

  assert_true(status != -1 && WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

static void write_one(const char *stream, const char *type, const char *data_json)
{
  chd_mdb *m = ch_e2e_store(&db);
  json_t *data = json_loads(data_json ? data_json : "{}", 0, NULL);

  assert_non_null(data);
  assert_int_equal(chd_mdb_write(m, stream, NULL, type, data, NULL, CH_VERSION_ANY, NULL),
                   CHD_STORE_OK);
  json_decref(data);
  chd_mdb_free(m);
}

static int64_t seen(const char *where)
{
  char sql[512];

  snprintf(sql, sizeof sql, "SELECT count(*) FROM fx_seen WHERE %s", where);
  return ch_e2e_int(db.view_url, sql);
}

static int64_t store_count(const char *where)
{
  char sql[512];

  snprintf(sql, sizeof sql, "SELECT count(*) FROM message_store.messages WHERE %s", where);
  return ch_e2e_int(db.store_url, sql);
}

static int64_t last_gp(const char *category)
{
  char sql[256];

  snprintf(sql, sizeof sql, "SELECT max(global_position) FROM message_store.messages"
           " WHERE message_store.category(stream_name) = '%s'", category);
  return ch_e2e_int(db.store_url, sql);
}

/* Milliseconds until `where` matches `want` rows of fx_seen (WAIT at most). */
static int64_t ms_until_seen(const char *where, int64_t want)
{
  int64_t started = chd_now_ms();

  while (seen(where) < want && chd_now_ms() - started < WAIT)
    ch_e2e_sleep_ms(2);
  assert_int_equal(seen(where), want);
  return chd_now_ms() - started;
}

/* `comphost migrate-store` with an owner's connection: the trace index and
 * the notify trigger. */
static void migrate_store(void)
{
  PQconninfoOption *opts = PQconninfoParse(getenv("COMPHOST_DEV_DB_ADMIN_URL"), NULL);
  const char *ini = ch_e2e_write_ini(&db, "migrate.ini", "");
  char admin[600], *out = NULL;
  size_t len = 0;

  assert_non_null(opts);
  for (PQconninfoOption *o = opts; o->keyword; o++)
    if (o->val && *o->val && strcmp(o->keyword, "dbname"))
      len += (size_t)snprintf(admin + len, sizeof admin - len, "%s='%s' ", o->keyword, o->val);
  snprintf(admin + len, sizeof admin - len, "dbname='%s'", db.store_name);
  PQconninfoFree(opts);
  {
    const char *argv[] = { "migrate-store", "-c", ini, "--admin-url", admin, NULL };
    assert_int_equal(ch_e2e_run(&db, argv, &out), 0);
  }
  assert_non_null(strstr(out, "created trigger comphost_notify"));
  free(out);
}

static bool has_trigger(void)
{
  return ch_e2e_int(db.store_url, "SELECT count(*) FROM pg_trigger WHERE tgname ="
                                  " 'comphost_notify'") == 1;
}

/* The notifications a LISTENing connection got within ms. */
static int drain(PGconn *c, int ms, char names[][64], int max)
{
  int64_t end = chd_now_ms() + ms;
  int n = 0;

  while (chd_now_ms() < end) {
    PGnotify *note;
    assert_int_equal(PQconsumeInput(c), 1);
    while ((note = PQnotifies(c)) != NULL) {
      if (n < max)
        snprintf(names[n], 64, "%s", note->relname);
      n++;
      PQfreemem(note);
    }
    ch_e2e_sleep_ms(10);
  }
  return n;
}

static void exec_ok(PGconn *c, const char *sql)
{
  PGresult *res = PQexec(c, sql);

  assert_true(PQresultStatus(res) == PGRES_COMMAND_OK ||
              PQresultStatus(res) == PGRES_TUPLES_OK);
  PQclear(res);
}

/* The trigger notifies each category a transaction wrote once, however many
 * messages and statements, and "$all" once; a long category by its md5. */
static void test_trigger_notifies_once_per_category_and_transaction(void **state)
{
  static const char long_category[] =
    "aCategoryWhoseNameIsLongerThanAnyChannelNameThatPostgreSQLAllows";
  PGconn *listener, *writer;
  chd_mdb *m;
  char names[16][64];
  char stream[128];
  int n;
  (void)state;

  migrate_store();
  assert_true(has_trigger());
  listener = PQconnectdb(db.store_url);
  writer = PQconnectdb(db.store_url);
  assert_int_equal(PQstatus(listener), CONNECTION_OK);
  assert_int_equal(PQstatus(writer), CONNECTION_OK);
  exec_ok(listener, "LISTEN \"mdb:fxa\"; LISTEN \"mdb:fxb\"; LISTEN \"mdb:$all\"");

  exec_ok(writer, "BEGIN");
  exec_ok(writer, "SELECT message_store.write_message(gen_random_uuid()::varchar, 'fxa-1',"
                  " 'T', '{}'::jsonb)");
  exec_ok(writer, "SELECT message_store.write_message(gen_random_uuid()::varchar, 'fxa-2',"
                  " 'T', '{}'::jsonb)");
  exec_ok(writer, "SELECT count(message_store.write_message(gen_random_uuid()::varchar,"
                  " 'fx' || (ARRAY['a', 'b'])[1 + g % 2] || '-' || g, 'T', '{}'::jsonb))"
                  " FROM generate_series(1, 10) AS g");
  /* nothing before the commit */
  assert_int_equal(drain(listener, 100, names, 16), 0);
  exec_ok(writer, "COMMIT");
  n = drain(listener, 300, names, 16);
  assert_int_equal(n, 3);
  for (int i = 0; i < 3; i++)
    assert_true(!strcmp(names[i], "mdb:fxa") || !strcmp(names[i], "mdb:fxb") ||
                !strcmp(names[i], "mdb:$all"));
  assert_string_not_equal(names[0], names[1]);
  assert_string_not_equal(names[1], names[2]);
  assert_string_not_equal(names[0], names[2]);

  /* the store's client: a long category, and "$all" */
  m = ch_e2e_store(&db);
  assert_int_equal(chd_mdb_listen(m, long_category), CHD_STORE_OK);
  assert_int_equal(chd_mdb_listen(m, "$all"), CHD_STORE_OK);
  assert_int_equal(chd_mdb_wait(m, 50), 0);
  snprintf(stream, sizeof stream, "%s-1", long_category);
  write_one(stream, "T", NULL);
  assert_true(chd_mdb_wait(m, 5000) > 0);
  while (chd_mdb_wait(m, 100) > 0)
    ;
  assert_true(chd_mdb_notified(m, long_category));
  assert_false(chd_mdb_notified(m, long_category));   /* taken */
  assert_true(chd_mdb_notified(m, "$all"));
  chd_mdb_free(m);
  PQfinish(listener);
  PQfinish(writer);
}

/* With the trigger, a message written by anyone wakes an idle subscriber
 * at once: it polls every 10 s. */
static void test_trigger_wakes_an_idle_subscriber(void **state)
{
  ch_e2e_host h;
  const char *ini;
  char stream[32], where[64];
  (void)state;

  migrate_store();
  ini = ch_e2e_write_ini(&db, "idle.ini", "[fx]\nlibrary = fx_runtime\n"
                         "poll_interval_ms = " IDLE_POLL_MS "\n");
  ch_e2e_host_start(&h, &db, ini, "idle.log");
  assert_true(ch_e2e_wait_log(&h, "host running", WAIT));
  ch_e2e_sleep_ms(300);             /* past the first reads: idle */
  for (int i = 1; i <= 3; i++) {
    int64_t ms;
    snprintf(stream, sizeof stream, "fxrun-%d", i);
    snprintf(where, sizeof where, "stream_name = '%s'", stream);
    write_one(stream, "Count", NULL);
    ms = ms_until_seen(where, 1);
    print_message("handled %d ms after it was written\n", (int)ms);
    assert_true(ms < FAST_MS);
    ch_e2e_sleep_ms(100);
  }
  stop_cleanly(&h);
}

/* Without the trigger, a plugin's write through the host wakes the
 * subscribers of its category, in another worker (and in its own). */
static void test_host_writes_wake_without_the_trigger(void **state)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "fwd.ini",
                                     "[fx]\nlibrary = fx_runtime\npoll_interval_ms = 20\n"
                                     "[fx2]\nlibrary = fx_runtime2\n"
                                     "poll_interval_ms = " IDLE_POLL_MS "\n");
  int64_t ms;
  (void)state;

  assert_false(has_trigger());
  ch_e2e_host_start(&h, &db, ini, "fwd.log");
  assert_true(ch_e2e_wait_log(&h, "host running", WAIT));
  ch_e2e_sleep_ms(300);
  /* fx forwards it to fxorigin-1 (from fxsource), which fx2 records */
  write_one("fxrun-1", "Forward", "{\"plugin\": \"fx-runtime\", \"to\": \"fxorigin-1\","
                                  " \"origin\": \"fxsource-1\"}");
  ms = ms_until_seen("subscriber = 'fx2:origin'", 1);
  print_message("the reply was handled by the other worker %d ms after the command was"
                " written\n", (int)ms);
  assert_true(ms < FAST_MS);
  assert_int_equal(ch_e2e_wait_int(db.view_url, "SELECT count(*) FROM fx_seen WHERE"
                                   " subscriber = 'fx:origin'", 1, WAIT), 1);
  /* fx2's own fxrun subscription was not woken: nothing notified it */
  assert_int_equal(seen("subscriber = 'fx2:run'"), 0);
  stop_cleanly(&h);
  assert_false(has_trigger());
}

/* notify_writes = false: the same write wakes nobody; the other worker
 * finds it at its next poll. */
static void test_writes_without_notify(void **state)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "quiet.ini",
                                     "[fx]\nlibrary = fx_runtime\npoll_interval_ms = 20\n"
                                     "notify_writes = false\n"
                                     "[fx2]\nlibrary = fx_runtime2\n"
                                     "poll_interval_ms = 2000\n");
  int64_t ms;
  (void)state;

  assert_false(has_trigger());
  ch_e2e_host_start(&h, &db, ini, "quiet.log");
  assert_true(ch_e2e_wait_log(&h, "host running", WAIT));
  ch_e2e_sleep_ms(300);
  write_one("fxrun-1", "Forward", "{\"plugin\": \"fx-runtime\", \"to\": \"fxorigin-1\","
                                  " \"origin\": \"fxsource-1\"}");
  ms = ms_until_seen("subscriber = 'fx2:origin'", 1);
  print_message("the reply was handled by the other worker %d ms after the command was"
                " written\n", (int)ms);
  assert_true(ms >= FAST_MS);
  stop_cleanly(&h);
}

/* A notification sent while the host's connection was gone is lost: the
 * message comes with the next poll; after the reconnection the host
 * listens again. */
static void test_polling_delivers_what_notifications_missed(void **state)
{
  ch_e2e_host h;
  const char *ini;
  char sql[300];
  int64_t ms;
  (void)state;

  migrate_store();
  ini = ch_e2e_write_ini(&db, "lost.ini", "[fx]\nlibrary = fx_runtime\n"
                         "poll_interval_ms = 1000\n");
  ch_e2e_host_start(&h, &db, ini, "lost.log");
  assert_true(ch_e2e_wait_log(&h, "host running", WAIT));
  ch_e2e_sleep_ms(300);
  write_one("fxrun-a", "Count", NULL);
  assert_true(ms_until_seen("stream_name = 'fxrun-a'", 1) < FAST_MS);

  /* cut the host's message-store sessions, and write while they are gone */
  snprintf(sql, sizeof sql, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
           " WHERE datname = '%s' AND pid <> pg_backend_pid()", db.store_name);
  assert_true(ch_e2e_int(getenv("COMPHOST_DEV_DB_ADMIN_URL"), sql) >= 1);
  write_one("fxrun-b", "Count", NULL);
  ms = ms_until_seen("stream_name = 'fxrun-b'", 1);
  print_message("with the notification lost: handled after %d ms\n", (int)ms);

  /* listening again */
  ch_e2e_sleep_ms(300);
  write_one("fxrun-c", "Count", NULL);
  ms = ms_until_seen("stream_name = 'fxrun-c'", 1);
  print_message("after the reconnection: handled after %d ms\n", (int)ms);
  assert_true(ms < FAST_MS);
  stop_cleanly(&h);
  assert_int_equal(seen("true"), 3);
}

/* Store transactions without savepoints: a version conflict and a
 * redelivered write are answered inside the transaction, which goes on. */
static void test_store_transaction_conflicts_and_redeliveries(void **state)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "stx.ini", "[fx]\nlibrary = fx_runtime\n"
                                     "store_transaction = true\n"
                                     "batch_transaction = false\n");
  char stream[32], data[64];
  chd_mdb *m;
  json_t *pos;
  (void)state;

  for (int i = 0; i < 10; i++) {
    snprintf(stream, sizeof stream, "fxrun-%d", i);
    snprintf(data, sizeof data, "{\"id\": \"t%d\"}", i);
    write_one(stream, "WriteTwo", data);
  }
  write_one("fxat-1", "Before", NULL);
  write_one("fxrun-at", "WriteAt", "{\"stream\": \"fxat-1\", \"expected\": -1}");
  ch_e2e_host_start(&h, &db, ini, "stx1.log");
  assert_int_equal(ch_e2e_wait_int(db.view_url, "SELECT count(*) FROM fx_seen", 11, WAIT), 11);
  stop_cleanly(&h);
  assert_true(ch_e2e_log_contains(&h, "conflict: version conflict writing At to 'fxat-1'"));
  assert_true(ch_e2e_log_contains(&h, "wrote At at version 1 after the conflict"));
  assert_int_equal(store_count("stream_name = 'fxat-1'"), 2);
  assert_int_equal(store_count("stream_name LIKE 'fxout-t%'"), 20);
  assert_false(ch_e2e_log_contains(&h, "one by one"));
  assert_false(ch_e2e_log_contains(&h, "retry"));

  /* deliver everything again: the writes are recognised, not repeated */
  m = ch_e2e_store(&db);
  pos = json_pack("{s:i}", "position", 0);
  assert_int_equal(chd_mdb_write(m, "subscriberPosition-fx:run", NULL, "Read", pos, NULL,
                                 CH_VERSION_ANY, NULL), CHD_STORE_OK);
  json_decref(pos);
  chd_mdb_free(m);
  ch_e2e_host_start(&h, &db, ini, "stx2.log");
  assert_int_equal(ch_e2e_wait_int(db.view_url, "SELECT count(*) FROM fx_seen", 22, WAIT), 22);
  stop_cleanly(&h);
  assert_true(ch_e2e_log_contains(&h, "First to 'fxout-t0' was written by an earlier"
                                      " delivery"));
  assert_true(ch_e2e_log_contains(&h, "Second to 'fxout-t9' was written by an earlier"
                                      " delivery"));
  assert_int_equal(store_count("stream_name LIKE 'fxout-t%'"), 20);
  /* WriteAt's first write is the same write again: recognised too */
  assert_int_equal(store_count("stream_name = 'fxat-1'"), 2);
  assert_false(ch_e2e_log_contains(&h, "one by one"));
  assert_false(ch_e2e_log_contains(&h, "retry"));
  assert_false(ch_e2e_log_contains(&h, "parked"));
}

/* A write the database refuses aborts the batch's store transaction,
 * although its handler ignores the failure: the batch is rolled back and
 * replayed one message per transaction, and only that message's stream is
 * parked. */
static void test_refused_write_in_a_store_transaction(void **state)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "bad.ini", "[fx]\nlibrary = fx_runtime\n"
                                     "store_transaction = true\n"
                                     "max_retries = 1\nretry_backoff_ms = 10\n");
  char stream[32], data[64], sql[300];
  (void)state;

  for (int i = 0; i < 5; i++) {
    snprintf(stream, sizeof stream, "fxrun-a%d", i);
    snprintf(data, sizeof data, "{\"id\": \"a%d\"}", i);
    write_one(stream, "WriteTwo", data);
  }
  write_one("fxrun-bad", "WriteBad", NULL);
  for (int i = 0; i < 3; i++) {
    snprintf(stream, sizeof stream, "fxrun-b%d", i);
    snprintf(data, sizeof data, "{\"id\": \"b%d\"}", i);
    write_one(stream, "WriteTwo", data);
  }
  ch_e2e_host_start(&h, &db, ini, "bad.log");
  assert_true(ch_e2e_wait_log(&h, "parked stream fxrun-bad", WAIT));
  assert_int_equal(ch_e2e_wait_int(db.store_url, "SELECT count(*) FROM message_store.messages"
                                   " WHERE stream_name LIKE 'fxout-%'", 16, WAIT), 16);
  ch_e2e_sleep_ms(300);
  stop_cleanly(&h);
  assert_int_equal(store_count("stream_name LIKE 'fxout-%'"), 16);
  assert_int_equal(store_count("stream_name = 'fxbad-1'"), 0);
  assert_true(ch_e2e_log_contains(&h, "gave up after 1 retries"));
  snprintf(sql, sizeof sql, "SELECT (data->>'position')::bigint FROM message_store.messages"
           " WHERE stream_name = 'subscriberPosition-fx:run' ORDER BY position DESC LIMIT 1");
  assert_int_equal(ch_e2e_int(db.store_url, sql), last_gp("fxrun"));
  /* the view's part of the failed batch was rolled back with it: every good
   * message counts once */
  assert_int_equal(seen("stream_name ~ '^fxrun-[ab][0-9]$'"), 8);
}

/* position_store = view_data commits the view asynchronously by default:
 * the server crashes in the middle of a run, loses its last commits, and
 * every message still counts exactly once. */
static void test_async_commit_survives_a_server_crash(void **state)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "crash.ini", "[fx]\nlibrary = fx_runtime\n"
                                     "position_store = view_data\nbatch_size = 10\n");
  const char *count = "SELECT count(*) FROM fx_seen";
  char *out = NULL;
  int64_t before, after;
  (void)state;

  {
    const char *argv[] = { "check", "-c", ini, NULL };
    assert_int_equal(ch_e2e_run(&db, argv, &out), 0);
    assert_non_null(strstr(out, "with every batch (asynchronous commit)"));
    free(out);
  }
  ch_e2e_write_many(&db, "fxrun", "Count", 20000, 300);
  ch_e2e_host_start(&h, &db, ini, "crash.log");
  while (ch_e2e_int(db.view_url, count) < 2000)
    ch_e2e_sleep_ms(5);
  before = ch_e2e_int(db.view_url, count);
  assert_true(before < 20000);
  ch_e2e_crash_server(300);
  after = ch_e2e_int(db.view_url, count);
  print_message("counted %lld before the crash, %lld after the recovery\n",
                (long long)before, (long long)after);
  assert_int_equal(ch_e2e_wait_int(db.view_url, count, 20000, WAIT), 20000);
  ch_e2e_sleep_ms(500);
  stop_cleanly(&h);
  assert_true(ch_e2e_log_contains(&h, "reconnect"));
  print_message("the host %s\n", ch_e2e_log_contains(&h, "commits were lost")
                ? "went back to the position the server kept" : "lost no commit this time");
  assert_int_equal(ch_e2e_int(db.view_url, count), 20000);
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT count(DISTINCT global_position) FROM fx_seen"),
                   20000);
}

/* The book's loop (batch_transaction = false) with view_data positions:
 * the view session commits asynchronously as a whole, every new session
 * too, and a server crash in the middle loses nothing (at least once: what
 * followed the surviving position is handled again). */
static void test_per_message_async_commit_survives_a_server_crash(void **state)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "crash1.ini", "[fx]\nlibrary = fx_runtime\n"
                                     "position_store = view_data\nbatch_transaction = false\n"
                                     "batch_size = 100\nposition_update_interval = 50\n");
  const char *distinct = "SELECT count(DISTINCT global_position) FROM fx_seen";
  char *out = NULL;
  int64_t before, rows;
  (void)state;

  {
    const char *argv[] = { "check", "-c", ini, NULL };
    assert_int_equal(ch_e2e_run(&db, argv, &out), 0);
    assert_non_null(strstr(out, "every 50 messages (asynchronous commit)"));
    free(out);
  }
  /* the plugin's table, made first with a column whose default tells how
   * the inserting session commits */
  ch_e2e_exec(db.view_url, "CREATE TABLE fx_seen (subscriber text, global_position bigint,"
              " stream_name text, type text, label text, at timestamptz DEFAULT"
              " clock_timestamp(), mode text DEFAULT current_setting('synchronous_commit'))");
  ch_e2e_write_many(&db, "fxrun", "Count", 10000, 300);
  ch_e2e_host_start(&h, &db, ini, "crash1.log");
  while (ch_e2e_int(db.view_url, distinct) < 1000)
    ch_e2e_sleep_ms(5);
  before = ch_e2e_int(db.view_url, distinct);
  assert_true(before < 10000);
  ch_e2e_crash_server(300);
  assert_int_equal(ch_e2e_wait_int(db.view_url, distinct, 10000, WAIT), 10000);
  ch_e2e_sleep_ms(500);
  stop_cleanly(&h);
  assert_true(ch_e2e_log_contains(&h, "reconnect"));
  rows = ch_e2e_int(db.view_url, "SELECT count(*) FROM fx_seen");
  print_message("%lld before the crash; %lld rows for 10000 messages (%lld handled again)\n",
                (long long)before, (long long)rows, (long long)(rows - 10000));
  assert_int_equal(ch_e2e_int(db.view_url, distinct), 10000);
  /* every handler ran on an asynchronous session, the one after the crash too */
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT count(*) FROM fx_seen WHERE mode <> 'off'"),
                   0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_trigger_notifies_once_per_category_and_transaction,
                                    setup, teardown),
    cmocka_unit_test_setup_teardown(test_trigger_wakes_an_idle_subscriber, setup, teardown),
    cmocka_unit_test_setup_teardown(test_host_writes_wake_without_the_trigger, setup, teardown),
    cmocka_unit_test_setup_teardown(test_writes_without_notify, setup, teardown),
    cmocka_unit_test_setup_teardown(test_polling_delivers_what_notifications_missed, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_store_transaction_conflicts_and_redeliveries, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_refused_write_in_a_store_transaction, setup, teardown),
    cmocka_unit_test_setup_teardown(test_async_commit_survives_a_server_crash, setup, teardown),
    cmocka_unit_test_setup_teardown(test_per_message_async_commit_survives_a_server_crash, setup,
                                    teardown),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
