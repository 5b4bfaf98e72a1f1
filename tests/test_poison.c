/*
 * test_poison.c - no message can block a subscription: messages that cannot
 * be decoded, that fail for good, that crash the worker or that are too
 * large are parked with the rest of their stream while the other streams
 * flow; `comphost parked`, `retry` and `skip`; CH_SKIP; /healthz on a stall.
 * End to end, against the dev database.
 */
#include "support.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "e2e.h"

#define WAIT 20000
#define FXRUN "{plugin=\"fx\",subscriber=\"fx:run\"}"

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

/* Write one message with `data` as SQL text (a JSON literal or an
 * expression). */
static void write_sql(const char *stream, const char *type, const char *data_sql)
{
  size_t size = strlen(data_sql) + 512;
  char *sql = malloc(size);

  assert_non_null(sql);
  snprintf(sql, size, "SELECT message_store.write_message(gen_random_uuid()::text, '%s',"
           " '%s', (%s)::jsonb)", stream, type, data_sql);
  ch_e2e_exec(db.store_url, sql);
  free(sql);
}

static void write_count(const char *stream)
{
  write_sql(stream, "Count", "'{}'");
}

static int64_t seen(const char *where)
{
  char sql[512];

  snprintf(sql, sizeof sql, "SELECT count(*) FROM fx_seen WHERE %s", where);
  return ch_e2e_int(db.view_url, sql);
}

static int64_t wait_seen(const char *where, int64_t want)
{
  char sql[512];

  snprintf(sql, sizeof sql, "SELECT count(*) FROM fx_seen WHERE %s", where);
  return ch_e2e_wait_int(db.view_url, sql, want, WAIT);
}

static void stop_cleanly(ch_e2e_host *h)
{
  assert_int_equal(ch_e2e_host_stop(h, SIGTERM, WAIT), 0);
}

/* Run the command line; its exit code, its output in *out. */
static int run(const char *const argv[], char **out)
{
  return ch_e2e_run(&db, argv, out);
}

/* The metrics of the running host. */
static char *metrics(const ch_e2e_host *h)
{
  char base[256], url[300], *body = NULL;

  ch_e2e_http_base(h, base, sizeof base);
  snprintf(url, sizeof url, "%s/metrics", base);
  assert_int_equal(ch_e2e_http_get(url, &body), 200);
  return body;
}

static double metric(const ch_e2e_host *h, const char *series)
{
  char *body = metrics(h);
  double v = ch_e2e_metric(body, series);

  free(body);
  return v;
}

/* Data that Message DB stores but jansson cannot decode, among good
 * messages: an integer beyond 64 bits and arrays nested 2,100 deep. Each is
 * parked with the later messages of its stream; the others flow; metrics,
 * /healthz and `comphost parked` show it; skip drops it with a record and
 * later messages of the stream flow again. */
static void test_undecodable_messages_are_parked(void **state)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "u.ini", "http_listen = 127.0.0.1:0\n"
                                     "[fx]\nlibrary = fx_runtime\n");
  const char *parked[] = { "parked", "-c", ini, "--json", NULL };
  const char *skip[] = { "skip", "-c", ini, "fxrun-p", NULL };
  char *deep, *out = NULL, base[256], url[300];
  size_t depth = 2100;
  (void)state;

  deep = malloc(2 * depth + 16);
  assert_non_null(deep);
  strcpy(deep, "'");
  memset(deep + 1, '[', depth);
  memset(deep + 1 + depth, ']', depth);
  strcpy(deep + 1 + 2 * depth, "'");

  write_count("fxrun-a");
  write_count("fxrun-p");
  write_sql("fxrun-p", "Count", "'{\"n\": 9223372036854775808}'");
  write_count("fxrun-p");
  write_count("fxrun-b");
  write_sql("fxrun-q", "Count", deep);
  write_count("fxrun-q");
  write_count("fxrun-c");
  free(deep);

  ch_e2e_host_start(&h, &db, ini, "u.log");
  assert_int_equal(wait_seen("subscriber = 'fx:run'", 4), 4);
  assert_true(ch_e2e_wait_log(&h, "parked stream fxrun-q", WAIT));
  assert_true(ch_e2e_log_contains(&h, "parked stream fxrun-p at position 1"));
  assert_true(ch_e2e_log_contains(&h, "data is not JSON that can be decoded"));
  ch_e2e_sleep_ms(500);
  assert_int_equal(seen("stream_name = 'fxrun-p'"), 1);     /* the one before */
  assert_int_equal(seen("stream_name = 'fxrun-q'"), 0);
  assert_int_equal(seen("stream_name IN ('fxrun-a', 'fxrun-b', 'fxrun-c')"), 3);
  assert_true(metric(&h, "comphost_parked_streams" FXRUN) == 2);
  assert_true(metric(&h, "comphost_parked_messages" FXRUN) == 4);
  assert_true(metric(&h, "comphost_handler_failures_total" FXRUN) == 2);
  ch_e2e_http_base(&h, base, sizeof base);
  snprintf(url, sizeof url, "%s/healthz", base);
  assert_int_equal(ch_e2e_http_get(url, &out), 200);
  free(out);

  assert_int_equal(run(parked, &out), 0);
  assert_non_null(strstr(out, "\"streamName\":\"fxrun-p\""));
  assert_non_null(strstr(out, "\"streamName\":\"fxrun-q\""));
  assert_non_null(strstr(out, "\"subscriber\":\"fx:run\""));
  assert_non_null(strstr(out, "not JSON that can be decoded"));
  free(out);

  /* a new message of a parked stream waits too */
  write_count("fxrun-p");
  write_count("fxrun-d");
  assert_int_equal(wait_seen("stream_name = 'fxrun-d'", 1), 1);
  assert_int_equal(seen("stream_name = 'fxrun-p'"), 1);

  assert_int_equal(run(skip, &out), 0);
  assert_non_null(strstr(out, "fx:run: fxrun-p: skipped: 3 messages dropped"));
  free(out);
  write_count("fxrun-p");
  assert_int_equal(wait_seen("stream_name = 'fxrun-p'", 2), 2);
  assert_true(metric(&h, "comphost_parked_streams" FXRUN) == 1);
  stop_cleanly(&h);
  assert_int_equal(ch_e2e_int(db.store_url, "SELECT count(*) FROM message_store.messages"
                                            " WHERE stream_name = 'subscriberStatus-fx:run'"
                                            " AND type = 'Skipped'"
                                            " AND data->>'streamName' = 'fxrun-p'"
                                            " AND (data->>'count')::int = 3"), 1);

  /* the parked one is still listed in text too, and skip of a stream that
   * is not parked says so */
  {
    const char *list[] = { "parked", "-c", ini, NULL };
    assert_int_equal(run(list, &out), 0);
    assert_non_null(strstr(out, "fxrun-q"));
    assert_null(strstr(out, "fxrun-p"));
    free(out);
    assert_int_equal(run(skip, &out), 1);
    assert_non_null(strstr(out, "fxrun-p is not parked"));
    free(out);
  }
}

/* CH_FAIL parks the stream; the park survives a restart; retry while the
 * cause remains parks it again; retry after the cause is gone delivers the
 * parked messages in order and the stream flows again. */
static void test_failed_message_parks_then_retry(void **state)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "f.ini", "[fx]\nlibrary = fx_runtime\n");
  const char *retry[] = { "retry", "-c", ini, "fxrun-r", NULL };
  char marker[400], data[600], *out = NULL;
  (void)state;

  snprintf(marker, sizeof marker, "%s/cause-gone", db.dir);
  snprintf(data, sizeof data, "'{\"file\": \"%s\"}'", marker);
  write_count("fxrun-r");
  write_sql("fxrun-r", "FailUnless", data);
  write_count("fxrun-r");
  write_count("fxrun-o");
  write_count("fxrun-o");

  ch_e2e_host_start(&h, &db, ini, "f1.log");
  assert_int_equal(wait_seen("stream_name = 'fxrun-o'", 2), 2);
  assert_true(ch_e2e_wait_log(&h, "parked stream fxrun-r at position 1: handler failed:"
                              " no file", WAIT));
  stop_cleanly(&h);
  assert_int_equal(seen("stream_name = 'fxrun-r'"), 1);

  /* parked across a restart: a new message of the stream waits */
  write_count("fxrun-r");
  write_count("fxrun-o");
  ch_e2e_host_start(&h, &db, ini, "f2.log");
  assert_true(ch_e2e_wait_log(&h, "1 parked stream", WAIT));
  assert_int_equal(wait_seen("stream_name = 'fxrun-o'", 3), 3);
  ch_e2e_sleep_ms(300);
  assert_int_equal(seen("stream_name = 'fxrun-r'"), 1);

  /* the cause is still there: parked again, exit 1 */
  assert_int_equal(run(retry, &out), 1);
  assert_non_null(strstr(out, "parked again at position 1"));
  free(out);

  /* the cause is gone: the three parked messages, in order */
  {
    FILE *f = fopen(marker, "w");
    assert_non_null(f);
    fclose(f);
  }
  assert_int_equal(run(retry, &out), 0);
  assert_non_null(strstr(out, "retried: 3 messages handled"));
  free(out);
  assert_int_equal(seen("stream_name = 'fxrun-r'"), 4);
  assert_int_equal(ch_e2e_int(db.view_url,
                              "SELECT count(*) FROM (SELECT global_position, lag(global_position)"
                              " OVER (ORDER BY at) AS before FROM fx_seen"
                              " WHERE stream_name = 'fxrun-r') AS t"
                              " WHERE before > global_position"), 0);
  /* and it flows */
  write_count("fxrun-r");
  assert_int_equal(wait_seen("stream_name = 'fxrun-r'", 5), 5);
  stop_cleanly(&h);
  {
    const char *list[] = { "parked", "-c", ini, NULL };
    assert_int_equal(run(list, &out), 0);
    assert_non_null(strstr(out, "no parked streams"));
    free(out);
  }
}

/* A message that crashes the worker max_crash_restarts times is parked, and
 * its stream waits, while the rest of the category flows. */
static void test_crash_loop_parks_the_stream(void **state)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "c.ini", "[fx]\nlibrary = fx_runtime\n");
  (void)state;

  write_count("fxrun-y");
  write_sql("fxrun-x", "Crash", "'{\"plugin\": \"fx-runtime\"}'");
  write_count("fxrun-x");
  write_count("fxrun-y");
  ch_e2e_host_start(&h, &db, ini, "c.log");
  assert_true(ch_e2e_wait_log(&h, "parked stream fxrun-x at position 0", WAIT));
  assert_true(ch_e2e_log_contains(&h, "crashed 3 times"));
  assert_int_equal(wait_seen("stream_name = 'fxrun-y'", 2), 2);
  write_count("fxrun-y");
  assert_int_equal(wait_seen("stream_name = 'fxrun-y'", 3), 3);
  assert_int_equal(seen("stream_name = 'fxrun-x'"), 0);
  stop_cleanly(&h);
}

/* In a batch transaction: the failing message parks its stream, the rest of
 * the batch commits, and the position reaches the end. */
static void test_batch_parks_and_commits_the_rest(void **state)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "b.ini", "[fx]\nlibrary = fx_runtime\n"
                                     "position_store = view_data\n");
  (void)state;

  ch_e2e_write_many(&db, "fxbatch", "Count", 10, 4);
  write_sql("fxbatch-f", "Fail", "'{\"reason\": \"in a batch\"}'");
  write_count("fxbatch-f");
  write_sql("fxbatch-f", "Count", "'{\"n\": 99999999999999999999}'");
  ch_e2e_write_many(&db, "fxbatch", "Count", 5, 4);
  ch_e2e_host_start(&h, &db, ini, "b.log");
  assert_int_equal(wait_seen("subscriber = 'fx:batch'", 15), 15);
  assert_true(ch_e2e_wait_log(&h, "parked stream fxbatch-f at position 0", WAIT));
  stop_cleanly(&h);
  assert_int_equal(seen("stream_name = 'fxbatch-f'"), 0);
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT position FROM comphost_positions"
                                           " WHERE subscriber_id = 'fx:batch'"),
                   ch_e2e_int(db.store_url, "SELECT max(global_position) FROM"
                                            " message_store.messages WHERE"
                                            " stream_name LIKE 'fxbatch%'"));
}

/* With on_failure = stop, a message that cannot be decoded stops the
 * subscription there, after the messages before it. */
static void test_undecodable_stops_when_told(void **state)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "s.ini", "[fx]\nlibrary = fx_runtime\n"
                                     "on_failure = stop\n");
  (void)state;

  write_count("fxrun-a");
  write_sql("fxrun-b", "Count", "'{\"n\": -9223372036854775809}'");
  write_count("fxrun-c");
  ch_e2e_host_start(&h, &db, ini, "s.log");
  assert_true(ch_e2e_wait_log(&h, "subscription stopped: message at global position", WAIT));
  ch_e2e_sleep_ms(300);
  stop_cleanly(&h);
  assert_int_equal(seen("stream_name = 'fxrun-a'"), 1);
  assert_int_equal(seen("stream_name = 'fxrun-c'"), 0);
}

/* How many messages of fx:run were recorded more than once. */
static int64_t seen_twice(void)
{
  return ch_e2e_int(db.view_url, "SELECT count(*) FROM (SELECT global_position FROM fx_seen"
                                 " WHERE subscriber = 'fx:run' GROUP BY global_position"
                                 " HAVING count(*) > 1) AS d");
}

/* 30 messages of fxrun in batches of 5, each of a stream of its own: Count,
 * but a Fail at the 8th and a Retry (twice) at the 14th. */
static void write_thirty(void)
{
  char stream[32];

  for (int i = 1; i <= 30; i++) {
    snprintf(stream, sizeof stream, "fxrun-%d", i);
    if (i == 8)
      write_sql(stream, "Fail", "'{\"reason\": \"bad\"}'");
    else if (i == 14)
      write_sql(stream, "Retry", "'{\"times\": 2}'");
    else
      write_count(stream);
  }
}

/*
 * Reading ahead, batches of 5 in a view transaction: a batch that fails is
 * replayed, the failing message parked, the retried one retried, and the
 * batches read ahead meanwhile are used or dropped so that every message is
 * recorded once.
 */
static void test_read_ahead_through_failures(void **state)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "r.ini", "[fx]\nlibrary = fx_runtime\n"
                                     "batch_size = 5\nposition_store = view_data\n"
                                     "retry_backoff_ms = 10\n");
  (void)state;

  write_thirty();
  ch_e2e_host_start(&h, &db, ini, "r.log");
  assert_int_equal(wait_seen("subscriber = 'fx:run'", 29), 29);
  assert_true(ch_e2e_wait_log(&h, "parked stream fxrun-8", WAIT));
  ch_e2e_sleep_ms(300);
  stop_cleanly(&h);
  assert_true(ch_e2e_log_contains(&h, "reading ahead on a second connection"));
  assert_int_equal(seen("stream_name = 'fxrun-8'"), 0);
  assert_int_equal(seen("stream_name = 'fxrun-14'"), 1);
  assert_int_equal(seen_twice(), 0);
  assert_int_equal(seen("subscriber = 'fx:run'"), 29);
}

/* The same with on_failure = stop: the batch read ahead past the failing
 * message is dropped with the stop; nothing after it is recorded. */
static void test_read_ahead_dropped_on_a_stop(void **state)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "t.ini", "[fx]\nlibrary = fx_runtime\n"
                                     "batch_size = 5\nposition_store = view_data\n"
                                     "on_failure = stop\n");
  (void)state;

  write_thirty();
  ch_e2e_host_start(&h, &db, ini, "t.log");
  assert_true(ch_e2e_wait_log(&h, "subscription stopped", WAIT));
  ch_e2e_sleep_ms(300);
  stop_cleanly(&h);
  assert_true(ch_e2e_log_contains(&h, "reading ahead on a second connection"));
  assert_int_equal(seen("subscriber = 'fx:run'"), 7);
  assert_int_equal(seen_twice(), 0);
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT max(global_position) FROM fx_seen"),
                   ch_e2e_int(db.view_url, "SELECT position FROM comphost_positions"
                                           " WHERE subscriber_id = 'fx:run'"));
}

/* CH_SKIP: logged with its stream and reason, counted, and the stream goes
 * on. */
static void test_skip_result_is_logged_and_counted(void **state)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "k.ini", "http_listen = 127.0.0.1:0\n"
                                     "[fx]\nlibrary = fx_runtime\n");
  (void)state;

  write_sql("fxrun-k", "Skip", "'{\"reason\": \"no userId\"}'");
  write_count("fxrun-k");
  ch_e2e_host_start(&h, &db, ini, "k.log");
  assert_int_equal(wait_seen("stream_name = 'fxrun-k'", 1), 1);
  assert_true(ch_e2e_wait_log(&h, "skipped a malformed message: malformed: no userId", WAIT));
  assert_true(ch_e2e_log_contains(&h, "stream=fxrun-k position=0"));
  assert_true(metric(&h, "comphost_messages_skipped_total" FXRUN) == 1);
  assert_true(metric(&h, "comphost_parked_streams" FXRUN) == 0);
  stop_cleanly(&h);
}

/* A subscription that has lag and does not move is unhealthy. */
static void test_stall_is_unhealthy(void **state)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "h.ini", "http_listen = 127.0.0.1:0\n"
                                     "health_max_stall_ms = 1000\n"
                                     "[fx]\nlibrary = fx_runtime\nmax_retries = 1000\n"
                                     "retry_backoff_ms = 400\n");
  char base[256], url[300], *body = NULL;
  long status = 0;
  (void)state;

  write_sql("fxrun-h", "Retry", "'{\"times\": 1000}'");
  write_count("fxrun-i");
  ch_e2e_host_start(&h, &db, ini, "h.log");
  assert_true(ch_e2e_wait_log(&h, "retry 2 of 1000", WAIT));
  ch_e2e_http_base(&h, base, sizeof base);
  snprintf(url, sizeof url, "%s/healthz", base);
  for (int i = 0; i < 100; i++) {
    free(body);
    body = NULL;
    status = ch_e2e_http_get(url, &body);
    if (status == 503)
      break;
    ch_e2e_sleep_ms(100);
  }
  assert_int_equal(status, 503);
  assert_non_null(strstr(body, "subscription fx:run is stalled"));
  assert_non_null(strstr(body, "has not moved"));
  free(body);
  stop_cleanly(&h);
}

/* batch_bytes bounds a read by bytes: large messages come a few at a time,
 * and one larger than the bound is parked unread. */
static void test_batch_bytes_bounds_reads(void **state)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "m.ini", "[fx]\nlibrary = fx_runtime\n"
                                     "batch_bytes = 1048576\n");
  (void)state;

  for (int i = 0; i < 6; i++)
    write_sql("fxrun-big", "Count", "json_build_object('pad', repeat('x', 400000))");
  write_sql("fxrun-huge", "Count", "json_build_object('pad', repeat('y', 1500000))");
  write_count("fxrun-huge");
  write_count("fxrun-after");
  ch_e2e_host_start(&h, &db, ini, "m.log");
  assert_int_equal(wait_seen("stream_name = 'fxrun-after'", 1), 1);
  assert_int_equal(seen("stream_name = 'fxrun-big'"), 6);
  assert_true(ch_e2e_wait_log(&h, "parked stream fxrun-huge at position 0", WAIT));
  assert_true(ch_e2e_log_contains(&h, "larger than batch_bytes (1048576 bytes)"));
  assert_int_equal(seen("stream_name = 'fxrun-huge'"), 0);
  stop_cleanly(&h);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_undecodable_messages_are_parked, setup, teardown),
    cmocka_unit_test_setup_teardown(test_failed_message_parks_then_retry, setup, teardown),
    cmocka_unit_test_setup_teardown(test_crash_loop_parks_the_stream, setup, teardown),
    cmocka_unit_test_setup_teardown(test_batch_parks_and_commits_the_rest, setup, teardown),
    cmocka_unit_test_setup_teardown(test_undecodable_stops_when_told, setup, teardown),
    cmocka_unit_test_setup_teardown(test_read_ahead_through_failures, setup, teardown),
    cmocka_unit_test_setup_teardown(test_read_ahead_dropped_on_a_stop, setup, teardown),
    cmocka_unit_test_setup_teardown(test_skip_result_is_logged_and_counted, setup, teardown),
    cmocka_unit_test_setup_teardown(test_stall_is_unhealthy, setup, teardown),
    cmocka_unit_test_setup_teardown(test_batch_bytes_bounds_reads, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
