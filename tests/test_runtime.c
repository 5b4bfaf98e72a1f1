/*
 * test_runtime.c - the host end to end: real comphost processes, real
 * plugins, a real PostgreSQL with Message DB.
 */
#include "support.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "e2e.h"

#define HOME_PAGE COMPHOST_BUILD_PLUGIN_DIR "/home-page.so"
#define WAIT 60000

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
  unsetenv("FX_INIT_FAIL");
  ch_e2e_db_drop(&db);
  return 0;
}

static int64_t videos_watched(void)
{
  return ch_e2e_int(db.view_url,
                    "SELECT (page_data->>'videosWatched')::bigint FROM pages WHERE page_name = 'home'");
}

static int64_t last_gp(const char *category)
{
  char sql[256];

  snprintf(sql, sizeof sql,
           "SELECT max(global_position) FROM message_store.messages"
           " WHERE message_store.category(stream_name) = '%s'", category);
  return ch_e2e_int(db.store_url, sql);
}

static int64_t seen(const char *where)
{
  char sql[512];

  snprintf(sql, sizeof sql, "SELECT count(*) FROM fx_seen WHERE %s", where);
  return ch_e2e_int(db.view_url, sql);
}

static void write_one(const char *stream, const char *type, const char *data_json,
                      const char *meta_json)
{
  chd_mdb *m = ch_e2e_store(&db);
  json_t *data = json_loads(data_json ? data_json : "{}", 0, NULL);
  json_t *meta = meta_json ? json_loads(meta_json, 0, NULL) : NULL;

  assert_int_equal(chd_mdb_write(m, stream, NULL, type, data, meta, CH_VERSION_ANY, NULL),
                   CHD_STORE_OK);
  json_decref(data);
  json_decref(meta);
  chd_mdb_free(m);
}

static void stop_cleanly(ch_e2e_host *h)
{
  int status = ch_e2e_host_stop(h, SIGTERM, WAIT);

  assert_true(status != -1 && WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

/* N VideoViewed -> videosWatched = N; a restart resumes with no double count. */
static void test_home_page_counts_and_resumes(void **state)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "home.ini", "[home-page]\nlibrary = " HOME_PAGE "\n");
  char sql[256];
  (void)state;

  ch_e2e_write_many(&db, "viewing", "VideoViewed", 500, 37);
  ch_e2e_host_start(&h, &db, ini, "home.log");
  assert_int_equal(ch_e2e_wait_int(db.view_url,
                   "SELECT (page_data->>'videosWatched')::bigint FROM pages WHERE page_name='home'",
                   500, WAIT), 500);
  stop_cleanly(&h);
  assert_true(ch_e2e_log_contains(&h, "Started aggregators:home-page"));
  assert_true(ch_e2e_log_contains(&h, "Stopped aggregators:home-page"));
  /* the position was flushed on stop, in the book's format */
  snprintf(sql, sizeof sql,
           "SELECT (data->>'position')::bigint FROM message_store.messages"
           " WHERE stream_name = 'subscriberPosition-aggregators:home-page' AND type = 'Read'"
           " ORDER BY position DESC LIMIT 1");
  assert_int_equal(ch_e2e_int(db.store_url, sql), last_gp("viewing"));

  ch_e2e_write_many(&db, "viewing", "VideoViewed", 300, 11);
  ch_e2e_host_start(&h, &db, ini, "home2.log");
  assert_int_equal(ch_e2e_wait_int(db.view_url,
                   "SELECT (page_data->>'videosWatched')::bigint FROM pages WHERE page_name='home'",
                   800, WAIT), 800);
  ch_e2e_sleep_ms(300);
  stop_cleanly(&h);
  assert_int_equal(videos_watched(), 800);
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT (page_data->>'lastViewProcessed')::bigint"
                                           " FROM pages WHERE page_name = 'home'"),
                   last_gp("viewing"));
  /* the second run started where the first stopped */
  assert_false(ch_e2e_log_contains(&h, "Started aggregators:home-page at global position 1 "));
}

/* kill -9 of the whole host in the middle of a run, with each position store. */
static void kill9_run(const char *body, const char *count_sql, int n)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "kill.ini", body);
  pid_t workers[8];
  int nworkers;

  ch_e2e_host_start(&h, &db, ini, "kill1.log");
  /* kill it somewhere in the middle */
  for (int i = 0; i < 600 && ch_e2e_int(db.view_url, count_sql) < n / 5; i++)
    ch_e2e_sleep_ms(20);
  assert_true(ch_e2e_int(db.view_url, count_sql) < n);
  nworkers = ch_e2e_workers(&h, workers, 8);
  assert_true(nworkers >= 1);
  kill(h.pid, SIGKILL);
  assert_true(ch_e2e_host_wait(&h, WAIT) != -1);
  /* no orphan goes on working beside the next host */
  ch_e2e_sleep_ms(300);
  for (int i = 0; i < nworkers; i++)
    assert_false(ch_e2e_process_alive(workers[i]));

  ch_e2e_host_start(&h, &db, ini, "kill2.log");
  assert_int_equal(ch_e2e_wait_int(db.view_url, count_sql, n, WAIT), n);
  ch_e2e_sleep_ms(500);
  stop_cleanly(&h);
  assert_int_equal(ch_e2e_int(db.view_url, count_sql), n);
}

static void test_kill9_home_page_message_store_positions(void **state)
{
  (void)state;
  ch_e2e_write_many(&db, "viewing", "VideoViewed", 20000, 500);
  kill9_run("[home-page]\nlibrary = " HOME_PAGE "\nbatch_size = 50\n",
            "SELECT (page_data->>'videosWatched')::bigint FROM pages WHERE page_name='home'",
            20000);
}

static void test_kill9_home_page_view_data_positions(void **state)
{
  (void)state;
  ch_e2e_write_many(&db, "viewing", "VideoViewed", 20000, 500);
  kill9_run("[home-page]\nlibrary = " HOME_PAGE "\nposition_store = view_data\nbatch_size = 50\n",
            "SELECT (page_data->>'videosWatched')::bigint FROM pages WHERE page_name='home'",
            20000);
}

/* fx_runtime counts with no idempotence guard: only the transaction makes it exact */
static void test_kill9_view_data_is_exactly_once(void **state)
{
  (void)state;
  ch_e2e_write_many(&db, "fxrun", "Count", 20000, 300);
  kill9_run("[fx]\nlibrary = fx_runtime\nposition_store = view_data\nbatch_size = 50\n",
            "SELECT count(*) FROM fx_seen", 20000);
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT count(DISTINCT global_position) FROM fx_seen"),
                   20000);
}

/* A worker killed alone is restarted by the supervisor. */
static void test_worker_killed_is_restarted(void **state)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "w.ini", "[fx]\nlibrary = fx_runtime\n"
                                     "position_store = view_data\n");
  pid_t workers[4];
  (void)state;

  ch_e2e_host_start(&h, &db, ini, "w.log");
  assert_true(ch_e2e_wait_log(&h, "host running", WAIT));
  assert_int_equal(ch_e2e_workers(&h, workers, 4), 1);
  kill(workers[0], SIGKILL);
  assert_true(ch_e2e_wait_log(&h, "killed by signal 9", WAIT));
  assert_true(ch_e2e_wait_log(&h, "restarting in 1000 ms", WAIT));
  ch_e2e_write_many(&db, "fxrun", "Count", 50, 5);
  assert_int_equal(ch_e2e_wait_int(db.view_url, "SELECT count(*) FROM fx_seen", 50, WAIT), 50);
  stop_cleanly(&h);
}

/* A plugin that segfaults is restarted while the other plugin goes on; after
 * max_crash_restarts on the same message, that subscription stops. */
static void test_crashing_plugin(void **state)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "crash.ini",
                                     "[fx]\nlibrary = fx_runtime\non_failure = stop\n"
                                     "[fx2]\nlibrary = fx_runtime2\n");
  char *out = NULL;
  const char *check[] = { "check", "-c", NULL, NULL };
  (void)state;

  /* the config has no max_crash_restarts: 3 by default */
  ch_e2e_write_many(&db, "fxrun", "Count", 5, 5);
  write_one("fxrun-crash", "Crash", "{\"plugin\": \"fx-runtime\"}", NULL);
  ch_e2e_write_many(&db, "fxrun", "Count", 5, 5);
  ch_e2e_host_start(&h, &db, ini, "crash.log");

  /* the other plugin handles everything meanwhile */
  assert_int_equal(ch_e2e_wait_int(db.view_url,
                   "SELECT count(*) FROM fx_seen WHERE subscriber = 'fx2:run'", 11, WAIT), 11);
  assert_true(ch_e2e_wait_log(&h, "subscription stopped at global position", WAIT));
  assert_true(ch_e2e_log_contains(&h, "killed by signal 11 (Segmentation fault)"));
  assert_true(ch_e2e_log_contains(&h, "while handling Crash"));
  assert_int_equal(ch_e2e_log_count(&h, "while handling Crash"), 3);
  assert_true(ch_e2e_log_contains(&h, "the worker crashed 3 times on Crash in fxrun-crash"));
  /* the restarted worker handles what came before the crash, then stops
   * there (the crashes rolled back the batch each time) */
  assert_true(ch_e2e_wait_log(&h, "subscription stopped: the worker crashed 3 times", WAIT));
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT count(DISTINCT global_position) FROM fx_seen"
                                           " WHERE subscriber = 'fx:run'"), 5);
  /* its other subscriptions still run in the restarted worker */
  write_one("fxorigin-1", "Anything", NULL, "{\"originStreamName\": \"fxsource-9\"}");
  assert_int_equal(ch_e2e_wait_int(db.view_url,
                   "SELECT count(*) FROM fx_seen WHERE subscriber = 'fx:origin'", 1, WAIT), 1);
  stop_cleanly(&h);
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT count(DISTINCT global_position) FROM fx_seen"
                                           " WHERE subscriber = 'fx:run'"), 5);

  /* check shows the subscription stopped at that message */
  check[2] = ini;
  assert_int_equal(ch_e2e_run(&db, check, &out), 0);
  assert_non_null(strstr(out, "subscription fx:run: fxrun"));
  assert_non_null(strstr(out, "STOPPED at global position"));
  assert_non_null(strstr(out, "crashed 3 times"));
  free(out);
}

/* With on_failure = stop, FAIL stops the subscription; the log names plugin,
 * subscriber, stream, position, type and the reason. */
static void test_handler_fail_stops_subscription(void **state)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "fail.ini", "[fx]\nlibrary = fx_runtime\n"
                                     "on_failure = stop\n");
  char *out = NULL;
  const char *check[] = { "check", "-c", ini, NULL };
  (void)state;

  ch_e2e_write_many(&db, "fxrun", "Count", 3, 3);
  write_one("fxrun-bad", "Fail", "{\"reason\": \"because\"}", "{\"traceId\": \"t-77\"}");
  ch_e2e_write_many(&db, "fxrun", "Count", 3, 3);
  ch_e2e_host_start(&h, &db, ini, "fail.log");
  assert_true(ch_e2e_wait_log(&h, "subscription stopped", WAIT));
  assert_true(ch_e2e_log_contains(&h, "level=error"));
  assert_true(ch_e2e_log_contains(&h, "plugin=fx subscriber=fx:run stream=fxrun-bad position=0"));
  assert_true(ch_e2e_log_contains(&h, "type=Fail trace_id=t-77"));
  assert_true(ch_e2e_log_contains(&h, "handler failed: told to fail: because"));
  ch_e2e_sleep_ms(500);
  assert_int_equal(seen("subscriber = 'fx:run'"), 3);
  stop_cleanly(&h);
  assert_int_equal(ch_e2e_run(&db, check, &out), 0);
  assert_non_null(strstr(out, "STOPPED at global position"));
  assert_non_null(strstr(out, "told to fail: because"));
  free(out);
}

static void test_retry_then_ok_and_retries_exhausted(void **state)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "retry.ini", "[fx]\nlibrary = fx_runtime\n"
                                     "retry_backoff_ms = 20\nmax_retries = 3\n"
                                     "on_failure = stop\n");
  (void)state;

  write_one("fxrun-r1", "Retry", "{\"times\": 2}", NULL);
  write_one("fxrun-r2", "Retry", "{\"times\": 9}", NULL);
  write_one("fxrun-r3", "Count", NULL, NULL);
  ch_e2e_host_start(&h, &db, ini, "retry.log");
  assert_true(ch_e2e_wait_log(&h, "subscription stopped", WAIT));
  /* handled once after two retries */
  assert_int_equal(seen("stream_name = 'fxrun-r1'"), 1);
  assert_true(ch_e2e_log_contains(&h, "retry 1 of 3 in 20 ms: not yet (try 1)"));
  assert_true(ch_e2e_log_contains(&h, "retry 2 of 3 in 40 ms"));
  /* the second gives up, and the subscription stops before the third */
  assert_true(ch_e2e_log_contains(&h, "gave up after 3 retries: not yet (try 4)"));
  assert_int_equal(seen("stream_name = 'fxrun-r2'"), 0);
  assert_int_equal(seen("stream_name = 'fxrun-r3'"), 0);
  stop_cleanly(&h);
}

/* A handler that writes two events and dies between them: after the restart,
 * the redelivered message's first write is recognised, not repeated. */
static void test_deterministic_ids_across_a_crash(void **state)
{
  char body[600], marker[400];
  ch_e2e_host h;
  const char *ini;
  (void)state;

  snprintf(marker, sizeof marker, "%s/died-once", db.dir);
  snprintf(body, sizeof body, "[fx]\nlibrary = fx_runtime\ncrash_marker = %s\n", marker);
  ini = ch_e2e_write_ini(&db, "two.ini", body);
  write_one("fxrun-w", "WriteTwo", "{\"id\": \"abc\"}", "{\"traceId\": \"t-2\", \"userId\": \"u-2\"}");
  ch_e2e_host_start(&h, &db, ini, "two.log");
  assert_int_equal(ch_e2e_wait_int(db.view_url, "SELECT count(*) FROM fx_seen", 1, WAIT), 1);
  stop_cleanly(&h);
  assert_int_equal(access(marker, F_OK), 0);
  assert_true(ch_e2e_log_contains(&h, "killed by signal 9"));
  assert_true(ch_e2e_log_contains(&h, "First to 'fxout-abc' was written by an earlier delivery"));
  assert_int_equal(ch_e2e_int(db.store_url, "SELECT count(*) FROM message_store.messages"
                                            " WHERE stream_name = 'fxout-abc'"), 2);
  assert_int_equal(ch_e2e_int(db.store_url, "SELECT count(*) FROM message_store.messages"
                                            " WHERE stream_name = 'fxout-abc' AND type = 'First'"
                                            " AND position = 0"), 1);
  /* follow() carried traceId and userId */
  assert_int_equal(ch_e2e_int(db.store_url, "SELECT count(*) FROM message_store.messages"
                                            " WHERE stream_name = 'fxout-abc'"
                                            " AND metadata->>'traceId' = 't-2'"
                                            " AND metadata->>'userId' = 'u-2'"), 2);
}

/* Messages filtered by origin, or with no handler, still move the position. */
static void test_filtered_and_unhandled_messages_advance(void **state)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "origin.ini", "[fx]\nlibrary = fx_runtime\n");
  char sql[300];
  (void)state;

  write_one("fxorigin-1", "A", NULL, "{\"originStreamName\": \"fxsource-1\"}");
  write_one("fxorigin-2", "B", NULL, "{\"originStreamName\": \"elsewhere-1\"}");
  write_one("fxorigin-3", "C", NULL, NULL);
  write_one("fxorigin-4", "D", NULL, "{\"originStreamName\": \"fxsource:command-2\"}");
  write_one("fxorigin-5", "E", NULL, "{\"originStreamName\": \"fxsource\"}");
  ch_e2e_write_many(&db, "fxrun", "NoHandlerForThis", 7, 2);
  ch_e2e_host_start(&h, &db, ini, "origin.log");
  assert_int_equal(ch_e2e_wait_int(db.view_url,
                   "SELECT count(*) FROM fx_seen WHERE subscriber = 'fx:origin'", 2, WAIT), 2);
  ch_e2e_sleep_ms(300);
  stop_cleanly(&h);
  assert_int_equal(seen("subscriber = 'fx:origin' AND type IN ('A', 'E')"), 2);
  /* both positions reached the end of their categories */
  snprintf(sql, sizeof sql, "SELECT (data->>'position')::bigint FROM message_store.messages"
           " WHERE stream_name = 'subscriberPosition-fx:origin' ORDER BY position DESC LIMIT 1");
  assert_int_equal(ch_e2e_int(db.store_url, sql), last_gp("fxorigin"));
  snprintf(sql, sizeof sql, "SELECT (data->>'position')::bigint FROM message_store.messages"
           " WHERE stream_name = 'subscriberPosition-fx:run' ORDER BY position DESC LIMIT 1");
  assert_int_equal(ch_e2e_int(db.store_url, sql), last_gp("fxrun"));
}

/* In a batch transaction, a failing message leaves the good prefix committed
 * and the position right before it. */
static void test_batch_failure_commits_the_prefix(void **state)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "batch.ini", "[fx]\nlibrary = fx_runtime\n"
                                     "position_store = view_data\non_failure = stop\n");
  int64_t tenth;
  (void)state;

  ch_e2e_write_many(&db, "fxbatch", "Count", 10, 4);
  tenth = last_gp("fxbatch");
  write_one("fxbatch-f", "Fail", "{\"reason\": \"in a batch\"}", NULL);
  ch_e2e_write_many(&db, "fxbatch", "Count", 5, 4);
  ch_e2e_host_start(&h, &db, ini, "batch.log");
  assert_true(ch_e2e_wait_log(&h, "subscription stopped", WAIT));
  stop_cleanly(&h);
  assert_int_equal(seen("subscriber = 'fx:batch'"), 10);
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT position FROM comphost_positions"
                                           " WHERE subscriber_id = 'fx:batch'"), tenth);
  assert_true(ch_e2e_log_contains(&h, "told to fail: in a batch"));
}

/* SIGTERM during a handler: the message in hand is finished, then exit 0. */
static void test_sigterm_finishes_the_message_in_hand(void **state)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "slow.ini", "[fx]\nlibrary = fx_runtime\n");
  char sql[300];
  (void)state;

  write_one("fxrun-slow", "Slow", "{\"ms\": 1500}", NULL);
  write_one("fxrun-next", "Count", NULL, NULL);
  ch_e2e_host_start(&h, &db, ini, "slow.log");
  assert_true(ch_e2e_wait_log(&h, "host running", WAIT));
  ch_e2e_sleep_ms(500);
  stop_cleanly(&h);
  assert_int_equal(seen("stream_name = 'fxrun-slow'"), 1);
  assert_int_equal(seen("stream_name = 'fxrun-next'"), 0);
  snprintf(sql, sizeof sql, "SELECT (data->>'position')::bigint FROM message_store.messages"
           " WHERE stream_name = 'subscriberPosition-fx:run' ORDER BY position DESC LIMIT 1");
  assert_int_equal(ch_e2e_int(db.store_url, sql), last_gp("fxrun") - 1);
}

/* A plugin whose init fails: nothing starts, the host exits non-zero. */
static void test_init_failure_starts_nothing(void **state)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "init.ini", "[fx]\nlibrary = fx_runtime\n"
                                     "[fx2]\nlibrary = fx_runtime2\n");
  int status;
  (void)state;

  ch_e2e_write_many(&db, "fxrun", "Count", 20, 2);
  setenv("FX_INIT_FAIL", "fx-runtime2", 1);
  ch_e2e_host_start(&h, &db, ini, "init.log");
  status = ch_e2e_host_wait(&h, WAIT);
  unsetenv("FX_INIT_FAIL");
  assert_true(status != -1 && WIFEXITED(status));
  assert_int_not_equal(WEXITSTATUS(status), 0);
  assert_true(ch_e2e_log_contains(&h, "init of plugin fx-runtime2 failed: told to fail in init"));
  assert_true(ch_e2e_log_contains(&h, "not every plugin could start"));
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT count(*) FROM fx_seen"), 0);
}

static void test_bad_config_and_wrong_abi_refused(void **state)
{
  char *out = NULL;
  const char *run[] = { "-c", NULL, NULL };
  (void)state;

  run[1] = ch_e2e_write_ini(&db, "bad.ini", "[fx]\nlibrary = fx_runtime\n"
                                    "batch_size = 1x\n");
  assert_int_equal(ch_e2e_run(&db, run, &out), 1);
  assert_non_null(strstr(out, "bad.ini:10: [fx] batch_size:"));
  free(out);

  run[1] = ch_e2e_write_ini(&db, "none.ini", "");
  assert_int_equal(ch_e2e_run(&db, run, &out), 1);
  assert_non_null(strstr(out, "none.ini: no plugin instance: add a section per plugin"));
  free(out);

  run[1] = ch_e2e_write_ini(&db, "abi.ini", "[old]\nlibrary = "
                                    COMPHOST_FIXTURE_DIR "/fx_abi_major_2.so\n");
  assert_int_equal(ch_e2e_run(&db, run, &out), 1);
  assert_non_null(strstr(out, "abi.ini:9: [old] library:"));
  assert_non_null(strstr(out, "built for plugin ABI 2."));
  assert_non_null(strstr(out, "this host has ABI 1.2"));
  free(out);
}

/* The database server restarted under a running host: it resumes by itself. */
static void test_database_restart(void **state)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "restart.ini", "[fx]\nlibrary = fx_runtime\n"
                                     "[home-page]\nlibrary = " HOME_PAGE "\n"
                                     "position_store = view_data\n");
  (void)state;

  ch_e2e_write_many(&db, "fxrun", "Count", 100, 7);
  ch_e2e_host_start(&h, &db, ini, "restart.log");
  assert_int_equal(ch_e2e_wait_int(db.view_url, "SELECT count(*) FROM fx_seen", 100, WAIT), 100);
  ch_e2e_restart_server(1500);
  ch_e2e_write_many(&db, "fxrun", "Count", 100, 7);
  ch_e2e_write_many(&db, "viewing", "VideoViewed", 40, 7);
  assert_int_equal(ch_e2e_wait_int(db.view_url, "SELECT count(*) FROM fx_seen", 200, WAIT), 200);
  assert_int_equal(ch_e2e_wait_int(db.view_url,
                   "SELECT (page_data->>'videosWatched')::bigint FROM pages WHERE page_name='home'",
                   40, WAIT), 40);
  assert_true(ch_e2e_log_contains(&h, "reconnect"));
  stop_cleanly(&h);
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT count(DISTINCT global_position) FROM fx_seen"),
                   200);
}

/* Two instances of one library as consumer group members. */
static void test_consumer_group_instances(void **state)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "group.ini",
                                     "[fx-a]\nlibrary = fx_runtime\ngroup_member = 0\ngroup_size = 2\n"
                                     "[fx-b]\nlibrary = fx_runtime\ngroup_member = 1\ngroup_size = 2\n");
  (void)state;

  ch_e2e_write_many(&db, "fxrun", "Count", 200, 50);
  ch_e2e_host_start(&h, &db, ini, "group.log");
  assert_int_equal(ch_e2e_wait_int(db.view_url, "SELECT count(*) FROM fx_seen", 200, WAIT), 200);
  ch_e2e_sleep_ms(300);
  stop_cleanly(&h);
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT count(DISTINCT global_position) FROM fx_seen"),
                   200);
  assert_true(ch_e2e_log_contains(&h, "subscriber=fx:run:0"));
  assert_true(ch_e2e_log_contains(&h, "subscriber=fx:run:1"));
  assert_int_equal(ch_e2e_int(db.store_url, "SELECT count(DISTINCT stream_name) FROM"
                                            " message_store.messages WHERE stream_name IN"
                                            " ('subscriberPosition-fx:run:0',"
                                            "  'subscriberPosition-fx:run:1')"), 2);
}

/* $all holds back a message beyond a gap that an open transaction may still
 * fill, and passes a gap left by a rolled-back write. */
static void test_all_waits_for_gaps(void **state)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "all.ini", "[fxa]\nlibrary = fx_all\n");
  PGconn *open_tx = PQconnectdb(db.store_url);
  PGresult *res;
  (void)state;

  assert_int_equal(PQstatus(open_tx), CONNECTION_OK);
  ch_e2e_host_start(&h, &db, ini, "all.log");
  assert_true(ch_e2e_wait_log(&h, "host running", WAIT));

  /* a write that stays uncommitted takes a global position ... */
  res = PQexec(open_tx, "BEGIN; SELECT message_store.write_message(gen_random_uuid()::varchar,"
                        " 'fxallA-1', 'Early', '{}'::jsonb)");
  assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
  PQclear(res);
  /* ... and a later one, in another category, commits */
  write_one("fxallB-1", "Later", NULL, NULL);
  ch_e2e_sleep_ms(1000);
  assert_int_equal(seen("subscriber = 'fxa:all'"), 0);

  res = PQexec(open_tx, "COMMIT");
  assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
  PQclear(res);
  assert_int_equal(ch_e2e_wait_int(db.view_url, "SELECT count(*) FROM fx_seen"
                                   " WHERE subscriber = 'fxa:all'", 2, WAIT), 2);
  /* in global order: the early one first */
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT count(*) FROM fx_seen a, fx_seen b"
                              " WHERE a.type = 'Early' AND b.type = 'Later'"
                              " AND a.at < b.at AND a.global_position < b.global_position"), 1);

  /* a rolled-back write leaves a gap for good: the reader goes past it */
  res = PQexec(open_tx, "BEGIN; SELECT message_store.write_message(gen_random_uuid()::varchar,"
                        " 'fxallA-2', 'Never', '{}'::jsonb); ROLLBACK");
  assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
  PQclear(res);
  write_one("fxallB-2", "AfterGap", NULL, NULL);
  assert_int_equal(ch_e2e_wait_int(db.view_url, "SELECT count(*) FROM fx_seen"
                                   " WHERE subscriber = 'fxa:all'", 3, 3000), 3);
  PQfinish(open_tx);
  stop_cleanly(&h);
}

/* Eventide's position format: <category>:position-<id>, type Recorded. */
static void test_eventide_position_format(void **state)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "evt.ini", "[fx]\nlibrary = fx_runtime\n"
                                     "position_format = eventide\nposition_update_interval = 5\n"
                                     "batch_transaction = false\n");
  (void)state;

  ch_e2e_write_many(&db, "fxrun", "Count", 12, 3);
  ch_e2e_host_start(&h, &db, ini, "evt.log");
  assert_int_equal(ch_e2e_wait_int(db.view_url, "SELECT count(*) FROM fx_seen", 12, WAIT), 12);
  stop_cleanly(&h);
  /* every 5 messages, and once more on stop */
  assert_int_equal(ch_e2e_int(db.store_url, "SELECT count(*) FROM message_store.messages"
                              " WHERE stream_name = 'fxrun:position-fx:run' AND type = 'Recorded'"),
                   3);
  assert_int_equal(ch_e2e_int(db.store_url, "SELECT (data->>'position')::bigint"
                              " FROM message_store.messages"
                              " WHERE stream_name = 'fxrun:position-fx:run'"
                              " ORDER BY position DESC LIMIT 1"), last_gp("fxrun"));
  assert_int_equal(ch_e2e_int(db.store_url, "SELECT count(*) FROM message_store.messages"
                              " WHERE stream_name LIKE 'subscriberPosition-%'"), 0);
  /* a restart resumes from there */
  ch_e2e_host_start(&h, &db, ini, "evt2.log");
  assert_true(ch_e2e_wait_log(&h, "host running", WAIT));
  ch_e2e_sleep_ms(400);
  stop_cleanly(&h);
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT count(*) FROM fx_seen"), 12);
}

/* store_transaction: a batch's writes and its position commit together. */
static void test_store_transaction(void **state)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "stx.ini", "[fx]\nlibrary = fx_runtime\n"
                                     "store_transaction = true\n");
  char data[64], stream[32];
  (void)state;

  for (int i = 0; i < 30; i++) {
    snprintf(stream, sizeof stream, "fxrun-%d", i);
    snprintf(data, sizeof data, "{\"id\": \"s%d\"}", i);
    write_one(stream, "WriteTwo", data, NULL);
  }
  ch_e2e_host_start(&h, &db, ini, "stx.log");
  assert_int_equal(ch_e2e_wait_int(db.view_url, "SELECT count(*) FROM fx_seen", 30, WAIT), 30);
  stop_cleanly(&h);
  assert_int_equal(ch_e2e_int(db.store_url, "SELECT count(*) FROM message_store.messages"
                              " WHERE stream_name LIKE 'fxout-s%'"), 60);
  /* the position went into the same transaction as the batch's writes: the
   * store stamps every message with its transaction's start time */
  assert_int_equal(ch_e2e_int(db.store_url, "SELECT count(*) FROM message_store.messages p,"
                              " message_store.messages w WHERE p.stream_name ="
                              " 'subscriberPosition-fx:run' AND w.stream_name = 'fxout-s29'"
                              " AND p.time = w.time AND w.type = 'Second'"), 1);
}

static void test_duplicate_subscriber_and_plugin_name_refused(void **state)
{
  char *out = NULL, copy[400], cmd[800], body[600];
  const char *check[] = { "check", "-c", NULL, "--no-db", NULL };
  (void)state;

  check[2] = ch_e2e_write_ini(&db, "dup.ini", "[one]\nlibrary = fx_runtime\n"
                              "[two]\nlibrary = fx_runtime\n");
  assert_int_equal(ch_e2e_run(&db, check, &out), 1);
  assert_non_null(strstr(out, "dup.ini:10: [two]: subscriber id 'fx:run' is used by [one] too"));
  free(out);

  /* the same plugin name from two files */
  snprintf(copy, sizeof copy, "%s/copy.so", db.dir);
  snprintf(cmd, sizeof cmd, "cp '%s/fx_runtime.so' '%s'", COMPHOST_TEST_PLUGIN_DIR, copy);
  assert_int_equal(system(cmd), 0);
  snprintf(body, sizeof body, "[one]\nlibrary = fx_runtime\n[two]\nlibrary = %s\n", copy);
  check[2] = ch_e2e_write_ini(&db, "name.ini", body);
  assert_int_equal(ch_e2e_run(&db, check, &out), 1);
  assert_non_null(strstr(out, "plugin name 'fx-runtime' of"));
  assert_non_null(strstr(out, "two libraries cannot share a plugin name"));
  free(out);
}

/* --plugin-dir beats COMPHOST_PLUGIN_DIR, which beats the INI's plugin_dir. */
static void test_plugin_dir_overrides(void **state)
{
  char *out = NULL;
  const char *check[] = { "check", "-c", NULL, "--no-db", NULL, NULL, NULL };
  (void)state;

  check[2] = ch_e2e_write_ini(&db, "dir.ini", "[fx]\nlibrary = fx_runtime\n");
  check[4] = "--plugin-dir";
  check[5] = "/nonexistent";
  assert_int_equal(ch_e2e_run(&db, check, &out), 1);
  assert_non_null(strstr(out, "'/nonexistent/fx_runtime.so': cannot load"));
  free(out);

  setenv("COMPHOST_E2E_PLUGIN_DIR", "/elsewhere", 1);
  check[4] = NULL;
  assert_int_equal(ch_e2e_run(&db, check, &out), 1);
  assert_non_null(strstr(out, "'/elsewhere/fx_runtime.so': cannot load"));
  free(out);

  check[4] = "--plugin-dir";
  check[5] = COMPHOST_TEST_PLUGIN_DIR;
  assert_int_equal(ch_e2e_run(&db, check, &out), 0);
  assert_non_null(strstr(out, COMPHOST_TEST_PLUGIN_DIR "/fx_runtime.so"));
  free(out);
  unsetenv("COMPHOST_E2E_PLUGIN_DIR");
}

/* A server that refuses us (no such role, no such database) is an error to
 * report, not an outage to wait out. */
static void test_refused_connections_fail_fast(void **state)
{
  ch_e2e_db bad = db;
  ch_e2e_host h;
  const char *ini;
  int status;
  (void)state;

  snprintf(bad.store_url, sizeof bad.store_url, "%s user='nosuchrole'", db.store_url);
  ini = ch_e2e_write_ini(&bad, "refused.ini", "[fx]\nlibrary = fx_runtime\n");
  ch_e2e_host_start(&h, &bad, ini, "refused.log");
  status = ch_e2e_host_wait(&h, 20000);
  assert_true(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 1);
  assert_true(ch_e2e_log_contains(&h, "role \\\"nosuchrole\\\" does not exist"));

  bad = db;
  snprintf(bad.view_url, sizeof bad.view_url, "%s dbname='nosuchdb'", db.view_url);
  ini = ch_e2e_write_ini(&bad, "refused2.ini", "[fx]\nlibrary = fx_runtime\n");
  ch_e2e_host_start(&h, &bad, ini, "refused2.log");
  status = ch_e2e_host_wait(&h, 20000);
  assert_true(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 1);
  assert_true(ch_e2e_log_contains(&h, "cannot connect to view database"));
  assert_true(ch_e2e_log_contains(&h, "database \\\"nosuchdb\\\" does not exist"));
}

/* A subscriber to the category of its own position stream settles: reading
 * its own Read does not count towards writing the next one. */
static void test_own_position_records_do_not_feed_back(void **state)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "self.ini", "[subscriber-positions]\nlibrary = "
                                     COMPHOST_BUILD_PLUGIN_DIR "/subscriber-positions.so\n"
                                     "position_update_interval = 1\n"
                                     "batch_transaction = false\n");
  int64_t first, later;
  (void)state;

  write_one("subscriberPosition-someone", "Read", "{\"position\": 7}", NULL);
  ch_e2e_host_start(&h, &db, ini, "self.log");
  assert_true(ch_e2e_wait_log(&h, "host running", WAIT));
  ch_e2e_sleep_ms(1500);
  first = ch_e2e_int(db.store_url, "SELECT count(*) FROM message_store.messages");
  ch_e2e_sleep_ms(1500);
  later = ch_e2e_int(db.store_url, "SELECT count(*) FROM message_store.messages");
  stop_cleanly(&h);
  assert_int_equal(first, later);
  assert_true(later <= 3);
}

static void test_check_prints_the_inventory(void **state)
{
  char *out = NULL;
  const char *check[] = { "check", "-c", NULL, NULL };
  (void)state;

  check[2] = ch_e2e_write_ini(&db, "inv.ini", "[home-page]\nlibrary = " HOME_PAGE "\n"
                                      "position_store = view_data\n");
  assert_int_equal(ch_e2e_run(&db, check, &out), 0);
  assert_non_null(strstr(out, "[home-page] home-page 1.0.0 (aggregator, ABI 1.2)"));
  assert_non_null(strstr(out, "build id "));
  assert_non_null(strstr(out, "positions: view_data"));
  assert_non_null(strstr(out, "subscription aggregators:home-page: viewing"));
  assert_non_null(strstr(out, "handles: VideoViewed"));
  assert_non_null(strstr(out, "position: 0"));
  assert_non_null(strstr(out, "is valid"));
  free(out);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_home_page_counts_and_resumes, setup, teardown),
    cmocka_unit_test_setup_teardown(test_kill9_home_page_message_store_positions, setup, teardown),
    cmocka_unit_test_setup_teardown(test_kill9_home_page_view_data_positions, setup, teardown),
    cmocka_unit_test_setup_teardown(test_kill9_view_data_is_exactly_once, setup, teardown),
    cmocka_unit_test_setup_teardown(test_worker_killed_is_restarted, setup, teardown),
    cmocka_unit_test_setup_teardown(test_crashing_plugin, setup, teardown),
    cmocka_unit_test_setup_teardown(test_handler_fail_stops_subscription, setup, teardown),
    cmocka_unit_test_setup_teardown(test_retry_then_ok_and_retries_exhausted, setup, teardown),
    cmocka_unit_test_setup_teardown(test_deterministic_ids_across_a_crash, setup, teardown),
    cmocka_unit_test_setup_teardown(test_filtered_and_unhandled_messages_advance, setup, teardown),
    cmocka_unit_test_setup_teardown(test_batch_failure_commits_the_prefix, setup, teardown),
    cmocka_unit_test_setup_teardown(test_sigterm_finishes_the_message_in_hand, setup, teardown),
    cmocka_unit_test_setup_teardown(test_init_failure_starts_nothing, setup, teardown),
    cmocka_unit_test_setup_teardown(test_bad_config_and_wrong_abi_refused, setup, teardown),
    cmocka_unit_test_setup_teardown(test_database_restart, setup, teardown),
    cmocka_unit_test_setup_teardown(test_consumer_group_instances, setup, teardown),
    cmocka_unit_test_setup_teardown(test_all_waits_for_gaps, setup, teardown),
    cmocka_unit_test_setup_teardown(test_eventide_position_format, setup, teardown),
    cmocka_unit_test_setup_teardown(test_store_transaction, setup, teardown),
    cmocka_unit_test_setup_teardown(test_duplicate_subscriber_and_plugin_name_refused, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_plugin_dir_overrides, setup, teardown),
    cmocka_unit_test_setup_teardown(test_refused_connections_fail_fast, setup, teardown),
    cmocka_unit_test_setup_teardown(test_own_position_records_do_not_feed_back, setup, teardown),
    cmocka_unit_test_setup_teardown(test_check_prints_the_inventory, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
