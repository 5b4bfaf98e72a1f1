/*
 * test_greeter.c - the greeter's unit tests, written with the SDK's test kit
 * (comphost/testkit.h) and cmocka: no host, no database. The build defines
 * GREETER_PLUGIN, the path of greeter.so.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <comphost/testkit.h>

/* Each test gets a greeter of its own, started with greeting = Hi. */
static int setup(void **state)
{
  ch_test *t = ch_test_load(GREETER_PLUGIN);

  ch_test_set(t, "greeting", "Hi");
  if (ch_test_start(t) != 0) {
    print_error("%s\n", ch_test_error(t));
    ch_test_free(t);
    return -1;
  }
  *state = t;
  return 0;
}

static int teardown(void **state)
{
  ch_test_free(*state);
  return 0;
}

/* A Greet gets a Greeted in the greeting's stream, written with the version
 * fetch() saw, that carries the command's trace. */
static void test_greet_is_answered(void **state)
{
  ch_test *t = *state;
  const ch_test_write *w;

  assert_int_equal(ch_test_when(t, "greeting:command-1", "Greet",
                                "{\"greetingId\": \"g1\", \"name\": \"Ada\"}",
                                "{\"traceId\": \"t-1\", \"userId\": \"u-1\"}"), CH_OK);

  assert_int_equal(ch_test_write_count(t), 1);
  w = ch_test_written(t, "greeting-g1", "Greeted");
  assert_non_null(w);
  assert_int_equal(w->expected_version, CH_VERSION_EMPTY);
  assert_true(ch_test_json_has(w->data, "{\"greetingId\": \"g1\", \"name\": \"Ada\","
                                        " \"text\": \"Hi, Ada!\"}"));
  assert_true(ch_test_json_has(w->metadata, "{\"traceId\": \"t-1\", \"userId\": \"u-1\","
                                            " \"causationMessageStreamName\":"
                                            " \"greeting:command-1\"}"));
}

/* A greeting that was given is not given again. */
static void test_a_greeting_is_given_once(void **state)
{
  ch_test *t = *state;

  ch_test_given(t, "greeting-g2", "Greeted",
                "{\"greetingId\": \"g2\", \"name\": \"Bo\", \"text\": \"Hi, Bo!\"}", NULL);

  assert_int_equal(ch_test_when(t, "greeting:command-2", "Greet",
                                "{\"greetingId\": \"g2\", \"name\": \"Bo\"}", NULL), CH_OK);

  assert_int_equal(ch_test_write_count(t), 0);
  assert_int_equal(ch_test_version(t, "greeting-g2"), 0);
}

/* A name that is missing or empty is answered with GreetingRejected, and the
 * command's origin is carried, so that its sender finds the answer. */
static void test_bad_names_are_rejected(void **state)
{
  ch_test *t = *state;
  const ch_test_write *w;

  assert_int_equal(ch_test_when(t, "greeting:command-3", "Greet", "{\"greetingId\": \"g3\"}",
                                "{\"originStreamName\": \"greetingProcess-7\"}"), CH_OK);

  w = ch_test_written(t, "greeting-g3", "GreetingRejected");
  assert_non_null(w);
  assert_true(ch_test_json_has(w->data, "{\"greetingId\": \"g3\","
                                        " \"reason\": \"name is missing\"}"));
  assert_true(ch_test_json_has(w->metadata, "{\"originStreamName\": \"greetingProcess-7\"}"));

  assert_int_equal(ch_test_when(t, "greeting:command-4", "Greet",
                                "{\"greetingId\": \"g4\", \"name\": \"\"}", NULL), CH_OK);
  w = ch_test_written(t, "greeting-g4", "GreetingRejected");
  assert_non_null(w);
  assert_true(ch_test_json_has(w->data, "{\"reason\": \"name is empty\"}"));
}

/* Without a greetingId there is no stream to answer in: the handler skips
 * the command, and says why. */
static void test_a_command_without_id_is_skipped(void **state)
{
  ch_test *t = *state;

  assert_int_equal(ch_test_when(t, "greeting:command-5", "Greet", "{\"name\": \"Nobody\"}",
                                NULL), CH_SKIP);

  assert_string_equal(ch_test_error(t), "Greet without a usable greetingId");
  assert_int_equal(ch_test_write_count(t), 0);
}

/* With the database away, the handler asks the host to try again. */
static void test_no_database_is_a_retry(void **state)
{
  ch_test *t = *state;

  ch_test_fail(t, CH_TEST_READS, CH_RC_UNAVAILABLE, 1, "connection refused");

  assert_int_equal(ch_test_when(t, "greeting:command-6", "Greet",
                                "{\"greetingId\": \"g6\", \"name\": \"Cy\"}", NULL), CH_RETRY);

  assert_string_equal(ch_test_error(t), "fetching greeting-g6: connection refused");
  assert_int_equal(ch_test_write_count(t), 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_greet_is_answered, setup, teardown),
    cmocka_unit_test_setup_teardown(test_a_greeting_is_given_once, setup, teardown),
    cmocka_unit_test_setup_teardown(test_bad_names_are_rejected, setup, teardown),
    cmocka_unit_test_setup_teardown(test_a_command_without_id_is_skipped, setup, teardown),
    cmocka_unit_test_setup_teardown(test_no_database_is_a_retry, setup, teardown),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
