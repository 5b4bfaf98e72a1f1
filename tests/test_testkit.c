/*
 * test_testkit.c - the test kit (comphost/testkit.h) with its fixture
 * tests/testkit/fx_kit.c and the loader's fixtures: loading, settings, the
 * store, deliveries and runs, failures; and that its follow() and write ids
 * are the host's.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <comphost/testkit.h>

#include "loader.h"
#include "uuid.h"

#if !defined(FX_KIT) || !defined(FIXTURE_DIR) || !defined(GUESTBOOK)
#error "FX_KIT, FIXTURE_DIR and GUESTBOOK must name the plugins"
#endif

/* fx_kit, started with its required setting and any others given. */
static ch_test *kit(const char *key, const char *value)
{
  ch_test *t = ch_test_load(FX_KIT);

  ch_test_set(t, "name", "kit");
  if (key)
    ch_test_set(t, key, value);
  if (ch_test_start(t) != 0)
    fail_msg("%s", ch_test_error(t));
  return t;
}

/* ch_test_start()'s error for the fixture `name` of FIXTURE_DIR. */
static void expect_refused(const char *path, const char *text)
{
  ch_test *t = ch_test_load(path);

  assert_null(ch_test_desc(t));
  assert_int_equal(ch_test_start(t), -1);
  if (!strstr(ch_test_error(t), text))
    fail_msg("'%s' is refused with \"%s\", not \"%s\"", path, ch_test_error(t), text);
  ch_test_free(t);
}

static void test_refuses_what_the_host_refuses(void **state)
{
  (void)state;
  expect_refused(FIXTURE_DIR "/no-such-plugin.so", "cannot load");
  expect_refused(FIXTURE_DIR "/fx_bad_magic.so", "bad magic");
  expect_refused(FIXTURE_DIR "/fx_abi_major_2.so", "built for plugin ABI 2.0");
  expect_refused(FIXTURE_DIR "/fx_abi_minor_future.so", "this test kit has ABI");
  expect_refused(FIXTURE_DIR "/fx_small_struct.so", "smaller than");
  expect_refused(FIXTURE_DIR "/fx_missing_entry.so", "exports no comphost_plugin_query");
  expect_refused(FIXTURE_DIR "/fx_null_desc.so", "returned no descriptor");
  expect_refused(FIXTURE_DIR "/fx_bad_name.so", "is not valid");
  expect_refused(FIXTURE_DIR "/fx_dup_handler.so", "appears twice");
  expect_refused(FIXTURE_DIR "/fx_dup_subscriber.so", "appears twice");
  expect_refused(FIXTURE_DIR "/fx_bad_category.so", "is not a category");
  expect_refused(FIXTURE_DIR "/fx_bad_kind.so", "is not component");
  expect_refused(GUESTBOOK, "an application");
  ch_test_free(NULL);
}

static void test_settings_are_checked_as_the_host_does(void **state)
{
  ch_test *t = ch_test_load(FX_KIT);
  (void)state;

  assert_string_equal(ch_test_desc(t)->name, "fx-kit");
  assert_int_equal(ch_test_start(t), -1);
  assert_string_equal(ch_test_error(t), "setting 'name': required by the plugin, not set");
  ch_test_free(t);

  t = ch_test_load(FX_KIT);
  ch_test_set(t, "name", "kit");
  ch_test_set(t, "colour", "red");
  assert_int_equal(ch_test_start(t), -1);
  assert_non_null(strstr(ch_test_error(t), "setting 'colour': unknown key (the plugin"
                                           " declares: name greeting count"));
  ch_test_free(t);

  t = ch_test_load(FX_KIT);
  ch_test_set(t, "name", "kit");
  ch_test_set(t, "count", "many");
  assert_int_equal(ch_test_start(t), -1);
  assert_string_equal(ch_test_error(t), "setting 'count': 'many' is not a whole number");
  ch_test_free(t);

  t = ch_test_load(FX_KIT);
  ch_test_set(t, "name", "kit");
  ch_test_set(t, "refuse", "yes");
  assert_int_equal(ch_test_start(t), -1);
  assert_string_equal(ch_test_error(t), "init() refused: refused, as asked");
  ch_test_free(t);
}

static void test_settings_reach_the_plugin(void **state)
{
  ch_test *t = kit(NULL, NULL);
  (void)state;

  assert_true(ch_test_logged(t, "started as kit"));
  assert_int_equal(ch_test_when(t, "kit:command-1", "Config", NULL, NULL), CH_OK);
  assert_true(ch_test_logged(t, "name=kit greeting=Hello count=3 loud=0 dir=(null)"));
  /* subscriber_id(), the last field of ABI 1.1: the subscription in hand */
  assert_true(ch_test_logged(t, "subscriber=kit:commands"));
  assert_false(ch_test_logged(t, "started as kit"));   /* of the last act only */
  ch_test_free(t);

  t = ch_test_load(FX_KIT);
  ch_test_set(t, "name", "other");
  ch_test_set(t, "name", "again");                     /* the last one counts */
  ch_test_set(t, "count", "-12");
  ch_test_set(t, "loud", "On");
  ch_test_set(t, "dir", "mail/out");
  ch_test_set_config_dir(t, "/etc/kit/");
  assert_int_equal(ch_test_start(t), 0);
  assert_int_equal(ch_test_when(t, "kit:command-1", "Config", NULL, NULL), CH_OK);
  assert_true(ch_test_logged(t, "name=again greeting=Hello count=-12 loud=1"
                                " dir=/etc/kit/mail/out"));
  ch_test_free(t);

  t = kit("dir", "/var/mail");
  ch_test_set_config_dir(t, "/etc/kit");
  assert_int_equal(ch_test_when(t, "kit:command-1", "Config", NULL, NULL), CH_OK);
  assert_true(ch_test_logged(t, " dir=/var/mail"));
  ch_test_free(t);
}

/* Given, when, then: the writes, the store, the metadata. */
static void test_a_command_is_answered(void **state)
{
  ch_test *t = kit(NULL, NULL);
  const ch_test_write *w;
  const ch_message *cmd, *m;
  int64_t gp;
  (void)state;

  ch_test_given(t, "other-1", "Unrelated", "{\"a\": [1, 2.5, {\"b\": null}]}", NULL);
  gp = ch_test_given(t, "kit:command-7", "Echo", "{\"id\": \"x\", \"text\": \"hi\"}",
                     "{\"traceId\": \"t-1\", \"userId\": \"u-1\","
                     " \"originStreamName\": \"kitProcess-3\"}");
  assert_int_equal(gp, 2);
  assert_int_equal(ch_test_handled(t), 0);
  assert_int_equal(ch_test_deliver(t, gp), CH_OK);
  /* the command subscription answered, the $all one saw it (its origin) */
  assert_int_equal(ch_test_handled(t), 2);
  assert_true(ch_test_logged(t, "saw Echo"));
  assert_string_equal(ch_test_error(t), "");

  assert_int_equal(ch_test_write_count(t), 1);
  w = ch_test_written(t, "echo-x", "Echoed");
  assert_ptr_equal(w, ch_test_write_at(t, 0));
  assert_null(ch_test_write_at(t, 1));
  assert_null(ch_test_written(t, "echo-x", "Other"));
  assert_null(ch_test_written(t, "echo-y", NULL));
  assert_ptr_equal(ch_test_written(t, NULL, NULL), w);
  assert_int_equal(w->rc, CH_RC_OK);
  assert_int_equal(w->expected_version, CH_VERSION_EMPTY);
  assert_true(ch_test_json_has(w->data, "{\"text\": \"hi\", \"count\": 1}"));
  assert_true(ch_test_json_has(w->data, "{\"count\": 1.0}"));
  assert_false(ch_test_json_has(w->data, "{\"text\": \"hi\", \"missing\": 1}"));
  assert_false(ch_test_json_has(w->data, "{\"count\": \"1\"}"));
  assert_true(ch_test_json_has(w->metadata,
                               "{\"traceId\": \"t-1\", \"userId\": \"u-1\","
                               " \"originStreamName\": \"kitProcess-3\","
                               " \"causationMessageStreamName\": \"kit:command-7\","
                               " \"causationMessagePosition\": 0,"
                               " \"causationMessageGlobalPosition\": 2}"));

  /* in the store: after the two given */
  m = w->message;
  assert_non_null(m);
  assert_ptr_equal(ch_test_message(t, 3), m);
  assert_ptr_equal(ch_test_read(t, "echo-x", 0), m);
  assert_null(ch_test_read(t, "echo-x", 1));
  assert_null(ch_test_message(t, 4));
  assert_null(ch_test_message(t, 0));
  assert_int_equal(m->position, 0);
  assert_int_equal(m->global_position, 3);
  assert_int_equal(ch_test_version(t, "echo-x"), 0);
  assert_int_equal(ch_test_version(t, "echo-y"), -1);
  assert_int_equal(ch_test_head(t), 3);
  assert_int_equal(strlen(m->time), 26);
  assert_true(ch_test_json_has(ch_test_message(t, 1)->data, "{\"a\": [1, 2.5, {\"b\": null}]}"));
  assert_false(ch_test_json_has(ch_test_message(t, 1)->data, "{\"a\": [1, 2.5]}"));
  assert_true(ch_test_json_has(ch_test_message(t, 1)->metadata, "{}"));

  /* the same id as the host gives it: v5 in the command's namespace */
  {
    char id[CHD_UUID_LEN];

    cmd = ch_test_message(t, gp);
    assert_int_equal(chd_uuid_v5(cmd->id, "kit:commands/0/echo-x/Echoed", id), 0);
    assert_string_equal(m->id, id);
  }

  /* a second command: count 2, expected version 0 */
  assert_int_equal(ch_test_when(t, "kit:command-8", "Echo", "{\"id\": \"x\", \"text\": \"ho\"}",
                                NULL), CH_OK);
  w = ch_test_written(t, "echo-x", "Echoed");
  assert_int_equal(w->expected_version, 0);
  assert_int_equal(w->message->position, 1);
  assert_true(ch_test_json_has(w->data, "{\"text\": \"ho\", \"count\": 2}"));
  assert_false(ch_test_logged(t, "saw"));                /* no origin: not for $all */
  assert_int_equal(ch_test_handled(t), 1);
  ch_test_free(t);
}

/* follow() of the kit and of the host give the same metadata. */
static void test_follow_is_the_hosts(void **state)
{
  ch_test *t = kit(NULL, NULL);
  const ch_test_write *w;
  json_t *host;
  int64_t gp;
  (void)state;

  ch_test_given(t, "kit:command-1", "Echo", "{\"id\": \"a\"}", NULL);
  gp = ch_test_given(t, "kit:command-1", "Echo", "{\"id\": \"b\"}",
                     "{\"traceId\": \"t\", \"userId\": 42, \"other\": true,"
                     " \"originStreamName\": \"kitProcess-1\"}");
  assert_int_equal(ch_test_deliver(t, gp), CH_OK);
  w = ch_test_written(t, "echo-b", NULL);
  host = chd_host_api.follow(NULL, ch_test_message(t, gp), "kitProcess-1");
  assert_non_null(host);
  assert_true(json_equal(w->metadata, host));
  json_decref(host);

  gp = ch_test_given(t, "kit:command-2", "Echo", "{\"id\": \"c\"}", NULL);
  assert_int_equal(ch_test_deliver(t, gp), CH_OK);
  w = ch_test_written(t, "echo-c", NULL);
  host = chd_host_api.follow(NULL, ch_test_message(t, gp), NULL);
  assert_true(json_equal(w->metadata, host));
  assert_null(json_object_get(host, "traceId"));
  json_decref(host);
  ch_test_free(t);
}

/* Delivered again, a command makes the same writes: already written. */
static void test_redelivery_is_already_written(void **state)
{
  ch_test *t = kit(NULL, NULL);
  int64_t gp;
  (void)state;

  gp = ch_test_given(t, "kit:command-1", "Stale", "{\"id\": \"s\", \"version\": -1}", NULL);
  assert_int_equal(ch_test_deliver(t, gp), CH_OK);
  assert_int_equal(ch_test_write_at(t, 0)->rc, CH_RC_OK);
  /* again: the expected version no longer holds, a conflict comes first */
  assert_int_equal(ch_test_deliver(t, gp), CH_RETRY);
  assert_int_equal(ch_test_write_at(t, 0)->rc, CH_RC_CONFLICT);
  assert_null(ch_test_write_at(t, 0)->message);
  assert_null(ch_test_written(t, NULL, NULL));
  assert_string_equal(ch_test_error(t), "writing Echoed: version conflict writing Echoed to"
                                        " 'echo-s': expected version -1, stream is at 0");

  /* a write with any version: the id tells */
  gp = ch_test_given(t, "kit:command-2", "Stale", "{\"id\": \"s\", \"version\": 0}", NULL);
  assert_int_equal(ch_test_deliver(t, gp), CH_OK);
  assert_int_equal(ch_test_version(t, "echo-s"), 1);
  gp = ch_test_given(t, "kit:command-2", "Echo", "{\"id\": \"s\"}", NULL);
  assert_int_equal(ch_test_deliver(t, gp), CH_OK);
  assert_int_equal(ch_test_version(t, "echo-s"), 2);
  /* redelivered: fetch() sees 3 and expects version 2, which holds, but the
   * id is the one written the first time */
  assert_int_equal(ch_test_deliver(t, gp), CH_OK);
  assert_int_equal(ch_test_write_at(t, 0)->rc, CH_RC_ALREADY_WRITTEN);
  assert_null(ch_test_written(t, NULL, NULL));
  assert_int_equal(ch_test_version(t, "echo-s"), 2);
  ch_test_free(t);
}

static void test_results_and_reasons(void **state)
{
  ch_test *t = kit(NULL, NULL);
  (void)state;

  assert_int_equal(ch_test_when(t, "kit:command-1", "Fail", "{\"text\": \"why\"}", NULL),
                   CH_FAIL);
  assert_string_equal(ch_test_error(t), "asked to fail: why");
  assert_int_equal(ch_test_when(t, "kit:command-1", "Retry", NULL, NULL), CH_RETRY);
  assert_string_equal(ch_test_error(t), "asked to retry");
  assert_int_equal(ch_test_when(t, "kit:command-1", "Skip", NULL, NULL), CH_SKIP);
  assert_string_equal(ch_test_error(t), "asked to skip");
  /* a type without a handler, a category nobody reads: passed over */
  assert_int_equal(ch_test_when(t, "kit:command-1", "Unknown", NULL, NULL), CH_OK);
  assert_int_equal(ch_test_handled(t), 0);
  assert_string_equal(ch_test_error(t), "");
  assert_int_equal(ch_test_when(t, "elsewhere-1", "Echo", NULL, NULL), CH_OK);
  assert_int_equal(ch_test_handled(t), 0);
  ch_test_free(t);
}

/* The reads, and what the host refuses before the store. */
static void test_reads(void **state)
{
  ch_test *t = kit(NULL, NULL);
  (void)state;

  ch_test_given(t, "thing-1", "A", NULL, NULL);
  ch_test_given(t, "thing-2", "X", NULL, NULL);
  ch_test_given(t, "thing-1", "B", NULL, NULL);
  ch_test_given(t, "thing-1", "C", NULL, NULL);
  assert_int_equal(ch_test_when(t, "kit:command-1", "Inspect", "{\"stream\": \"thing-1\"}",
                                NULL), CH_OK);
  assert_true(ch_test_logged(t, "read thing-1 C at 2/4"));
  assert_true(ch_test_logged(t, "read_last: 1"));
  assert_true(ch_test_logged(t, "stream_version: 0, 2"));
  assert_true(ch_test_logged(t, "read thing-1 B at 1/3"));
  assert_true(ch_test_logged(t, "read_stream: 2 ()"));
  assert_true(ch_test_logged(t, "write to $all: -4 (cannot write to '$all': it is no stream)"));
  assert_int_equal(ch_test_write_count(t), 1);
  assert_int_equal(ch_test_write_at(t, 0)->rc, CH_RC_INVALID);
  assert_null(ch_test_write_at(t, 0)->data);

  assert_int_equal(ch_test_when(t, "kit:command-1", "Inspect", "{\"stream\": \"none-1\"}",
                                NULL), CH_OK);
  assert_true(ch_test_logged(t, "read_last: 0"));
  assert_true(ch_test_logged(t, "stream_version: 0, -1"));
  assert_true(ch_test_logged(t, "read_stream: 0 ()"));

  assert_int_equal(ch_test_when(t, "kit:command-1", "Inspect", "{\"stream\": \"thing\"}",
                                NULL), CH_OK);
  assert_true(ch_test_logged(t, "read_last: -4"));
  assert_true(ch_test_logged(t, "read_stream: -4 ('thing' is a category, not a stream"));
  ch_test_free(t);
}

/* ch_test_fail(): the database away, a conflict, for a number of calls. */
static void test_failures_on_demand(void **state)
{
  ch_test *t = kit(NULL, NULL);
  int64_t gp;
  (void)state;

  gp = ch_test_given(t, "kit:command-1", "Echo", "{\"id\": \"f\"}", NULL);
  ch_test_fail(t, CH_TEST_READS, CH_RC_UNAVAILABLE, 1, "the database is away");
  assert_int_equal(ch_test_deliver(t, gp), CH_RETRY);
  assert_string_equal(ch_test_error(t), "fetching echo-f: the database is away");
  assert_int_equal(ch_test_write_count(t), 0);

  ch_test_fail(t, CH_TEST_WRITES, CH_RC_CONFLICT, 2, "somebody was first");
  assert_int_equal(ch_test_deliver(t, gp), CH_RETRY);
  assert_int_equal(ch_test_write_at(t, 0)->rc, CH_RC_CONFLICT);
  assert_int_equal(ch_test_deliver(t, gp), CH_RETRY);
  assert_int_equal(ch_test_deliver(t, gp), CH_OK);
  assert_int_equal(ch_test_version(t, "echo-f"), 0);

  ch_test_fail(t, CH_TEST_READS | CH_TEST_WRITES, CH_RC_ERROR, 5, "broken");
  ch_test_fail(t, 0, 0, 0, NULL);                        /* never mind */
  assert_int_equal(ch_test_deliver(t, gp), CH_OK);
  ch_test_free(t);
}

/* ch_test_run(): every subscription, until caught up, its own events too. */
static void test_run_until_caught_up(void **state)
{
  ch_test *t = kit(NULL, NULL);
  (void)state;

  ch_test_given(t, "kit:command-1", "Echo", "{\"id\": \"r1\", \"text\": \"one\"}", NULL);
  ch_test_given(t, "kit:command-2", "Echo", "{\"id\": \"r2\", \"text\": \"two\"}",
                "{\"originStreamName\": \"kitProcess-9\"}");
  ch_test_given(t, "kit:command-3", "Skip", NULL, NULL);
  assert_int_equal(ch_test_run(t), CH_OK);
  /* two Echo and a Skip, two Echoed, and the two the $all subscription took */
  assert_int_equal(ch_test_handled(t), 7);
  assert_string_equal(ch_test_error(t), "asked to skip");
  assert_true(ch_test_logged(t, "saw Echo"));
  assert_true(ch_test_logged(t, "saw Echoed"));          /* its answer carries the origin */
  assert_non_null(ch_test_written(t, "echo-r1", "Echoed"));
  assert_non_null(ch_test_written(t, "note-r1", "Noted"));
  assert_non_null(ch_test_written(t, "note-r2", "Noted"));
  assert_int_equal(ch_test_head(t), 7);

  /* caught up: nothing more; then a failure stops the run, and stays */
  assert_int_equal(ch_test_run(t), CH_OK);
  assert_int_equal(ch_test_handled(t), 0);
  ch_test_given(t, "kit:command-4", "Fail", "{\"text\": \"stop\"}", NULL);
  ch_test_given(t, "kit:command-5", "Echo", "{\"id\": \"r5\"}", NULL);
  assert_int_equal(ch_test_run(t), CH_FAIL);
  assert_string_equal(ch_test_error(t), "asked to fail: stop");
  assert_null(ch_test_written(t, "echo-r5", NULL));
  assert_int_equal(ch_test_run(t), CH_FAIL);
  assert_int_equal(ch_test_handled(t), 1);
  ch_test_free(t);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_refuses_what_the_host_refuses),
    cmocka_unit_test(test_settings_are_checked_as_the_host_does),
    cmocka_unit_test(test_settings_reach_the_plugin),
    cmocka_unit_test(test_a_command_is_answered),
    cmocka_unit_test(test_follow_is_the_hosts),
    cmocka_unit_test(test_redelivery_is_already_written),
    cmocka_unit_test(test_results_and_reasons),
    cmocka_unit_test(test_reads),
    cmocka_unit_test(test_failures_on_demand),
    cmocka_unit_test(test_run_until_caught_up),
  };

  unsetenv("COMPHOST_TEST_LOG");
  return cmocka_run_group_tests(tests, NULL, NULL);
}
