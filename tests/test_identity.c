/*
 * test_identity.c - the book's identity component (plugins/identity), unit
 * tested with the test kit: Register, its own Registered, send-email's Sent,
 * and the registration email's templates. docs/components/identity.md is
 * the contract.
 */
#define _POSIX_C_SOURCE 200809L   /* mkdtemp */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <comphost/testkit.h>

#define REGISTER "{\"userId\": \"u1\", \"email\": \"together@example.com\"," \
                 " \"passwordHash\": \"$2b$10$abc\"}"
#define REGISTERED REGISTER
/* uuid v5 of together@example.com in the book's namespace (value from
 * another implementation) */
#define EMAIL_ID "4850bb5e-621b-59d1-97c7-ec5955127a34"
#define TRACE "{\"traceId\": \"t-1\", \"userId\": \"u1\"}"

static ch_test *started(ch_test *t)
{
  if (ch_test_start(t) != 0)
    fail_msg("%s", ch_test_error(t));
  return t;
}

static int setup(void **state)
{
  *state = started(ch_test_load(IDENTITY_PLUGIN));
  return 0;
}

static int teardown(void **state)
{
  ch_test_free(*state);
  return 0;
}

/* Register -> Registered {userId, email, passwordHash} on identity-<userId>,
 * expecting an empty stream, with the command's trace. */
static void test_register(void **state)
{
  ch_test *t = *state;
  const ch_test_write *w;
  int64_t gp = ch_test_given(t, "identity:command-u1", "Register", REGISTER, TRACE);

  assert_int_equal(ch_test_deliver(t, gp), CH_OK);
  assert_int_equal(ch_test_write_count(t), 1);
  w = ch_test_written(t, "identity-u1", "Registered");
  assert_non_null(w);
  assert_int_equal(w->expected_version, CH_VERSION_EMPTY);
  assert_true(ch_test_json_has(w->data, REGISTERED));
  assert_int_equal(json_object_size(w->data), 3);
  assert_true(ch_test_json_has(w->metadata, "{\"traceId\": \"t-1\", \"userId\": \"u1\","
                                            " \"causationMessageStreamName\":"
                                            " \"identity:command-u1\"}"));
  assert_int_equal(json_integer_value(json_object_get(w->metadata,
                                                      "causationMessageGlobalPosition")), gp);
  assert_null(json_object_get(w->metadata, "originStreamName"));
}

/* The book: registering a registered identity does nothing (p111-115). */
static void test_register_twice(void **state)
{
  ch_test *t = *state;

  ch_test_given(t, "identity-u1", "Registered", REGISTERED, TRACE);
  assert_int_equal(ch_test_when(t, "identity:command-u1", "Register", REGISTER, TRACE), CH_OK);
  assert_int_equal(ch_test_write_count(t), 0);
  assert_true(ch_test_logged(t, "identity-u1 is registered already"));
}

/* A Register that breaks the contract: RegistrationRejected with the reason,
 * once, however often the command comes. */
static void test_bad_register_is_rejected(void **state)
{
  ch_test *t = *state;
  const ch_test_write *w;
  int64_t gp = ch_test_given(t, "identity:command-u2", "Register",
                             "{\"userId\": \"u2\", \"passwordHash\": \"h\"}", TRACE);

  assert_int_equal(ch_test_deliver(t, gp), CH_OK);
  w = ch_test_written(t, "identity-u2", "RegistrationRejected");
  assert_non_null(w);
  assert_true(ch_test_json_has(w->data, "{\"userId\": \"u2\", \"passwordHash\": \"h\","
                                        " \"reason\": \"email is missing\"}"));
  assert_int_equal(json_integer_value(json_object_get(w->metadata,
                                                      "causationMessageGlobalPosition")), gp);
  assert_true(ch_test_logged(t, "Register rejected: email is missing"));

  assert_int_equal(ch_test_deliver(t, gp), CH_OK);
  assert_int_equal(ch_test_write_count(t), 0);
  assert_int_equal(ch_test_version(t, "identity-u2"), 0);

  /* no user in the data nor in the stream name: nowhere to answer */
  assert_int_equal(ch_test_when(t, "identity:command", "Register", "[]", NULL), CH_SKIP);
  assert_non_null(strstr(ch_test_error(t), "Register names no user"));
}

/* Registered -> Send to sendEmail:command-<emailId>, emailId the uuid v5 of
 * the address, with the origin identity-<userId>. */
static void test_registered_sends_the_email(void **state)
{
  ch_test *t = *state;
  const ch_test_write *w;
  int64_t gp = ch_test_given(t, "identity-u1", "Registered", REGISTERED, TRACE);

  assert_int_equal(ch_test_deliver(t, gp), CH_OK);
  w = ch_test_written(t, "sendEmail:command-" EMAIL_ID, "Send");
  assert_non_null(w);
  assert_int_equal(w->expected_version, CH_VERSION_ANY);
  assert_true(ch_test_json_has(w->data, "{\"emailId\": \"" EMAIL_ID "\","
                                        " \"to\": \"together@example.com\","
                                        " \"subject\": \"Welcome to Video Tutorials\","
                                        " \"html\": \"<p>Hello,</p><p>thank you for registering"
                                        " with Video Tutorials. You can now log in as"
                                        " together@example.com.</p>\"}"));
  assert_non_null(strstr(json_string_value(json_object_get(w->data, "text")),
                         "Hello,\n\nthank you for registering"));
  assert_true(ch_test_json_has(w->metadata, "{\"originStreamName\": \"identity-u1\","
                                            " \"traceId\": \"t-1\", \"userId\": \"u1\"}"));

  /* the email was sent: nothing more */
  ch_test_given(t, "identity-u1", "RegistrationEmailSent",
                "{\"userId\": \"u1\", \"emailId\": \"" EMAIL_ID "\"}", NULL);
  assert_int_equal(ch_test_deliver(t, gp), CH_OK);
  assert_int_equal(ch_test_write_count(t), 0);
}

/* Sent (origin identity) -> RegistrationEmailSent {userId, emailId} on the
 * origin stream, once; a Sent of another origin is not for identity. */
static void test_sent_is_recorded(void **state)
{
  ch_test *t = *state;
  const ch_test_write *w;
  int64_t gp;

  ch_test_given(t, "identity-u1", "Registered", REGISTERED, TRACE);
  gp = ch_test_given(t, "sendEmail-" EMAIL_ID, "Sent", "{\"emailId\": \"" EMAIL_ID "\"}",
                     "{\"originStreamName\": \"identity-u1\", \"traceId\": \"t-1\"}");
  assert_int_equal(ch_test_deliver(t, gp), CH_OK);
  w = ch_test_written(t, "identity-u1", "RegistrationEmailSent");
  assert_non_null(w);
  assert_int_equal(w->expected_version, 0);
  assert_true(ch_test_json_has(w->data, "{\"userId\": \"u1\", \"emailId\": \"" EMAIL_ID "\"}"));
  assert_true(ch_test_json_has(w->metadata, "{\"traceId\": \"t-1\"}"));

  assert_int_equal(ch_test_deliver(t, gp), CH_OK);
  assert_int_equal(ch_test_write_count(t), 0);

  assert_int_equal(ch_test_when(t, "sendEmail-x", "Sent", "{\"emailId\": \"x\"}",
                                "{\"originStreamName\": \"billing-1\"}"), CH_OK);
  assert_int_equal(ch_test_handled(t), 0);
}

/* The whole registration, as the host runs it: the kit plays send-email. */
static void test_registration_end_to_end(void **state)
{
  ch_test *t = *state;

  ch_test_given(t, "identity:command-u1", "Register", REGISTER, TRACE);
  assert_int_equal(ch_test_run(t), CH_OK);
  assert_non_null(ch_test_written(t, "identity-u1", "Registered"));
  assert_non_null(ch_test_written(t, "sendEmail:command-" EMAIL_ID, "Send"));

  ch_test_given(t, "sendEmail-" EMAIL_ID, "Sent", "{\"emailId\": \"" EMAIL_ID "\"}",
                "{\"originStreamName\": \"identity-u1\", \"traceId\": \"t-1\"}");
  assert_int_equal(ch_test_run(t), CH_OK);
  assert_int_equal(ch_test_handled(t), 1);
  assert_non_null(ch_test_written(t, "identity-u1", "RegistrationEmailSent"));
  assert_int_equal(ch_test_version(t, "identity-u1"), 1);
}

/* A store that is away, a stream that keeps changing: try again later. */
static void test_store_trouble_is_a_retry(void **state)
{
  ch_test *t = *state;
  int64_t gp = ch_test_given(t, "identity:command-u1", "Register", REGISTER, TRACE);

  ch_test_fail(t, CH_TEST_READS, CH_RC_UNAVAILABLE, 1, "no connection");
  assert_int_equal(ch_test_deliver(t, gp), CH_RETRY);
  assert_string_equal(ch_test_error(t), "cannot load the identity: no connection");

  /* a conflict: it reads again and decides again, five times at most */
  ch_test_fail(t, CH_TEST_WRITES, CH_RC_CONFLICT, 1, "somebody was first");
  assert_int_equal(ch_test_deliver(t, gp), CH_OK);
  assert_int_equal(ch_test_write_count(t), 2);
  assert_int_equal(ch_test_write_at(t, 0)->rc, CH_RC_CONFLICT);
  assert_int_equal(ch_test_write_at(t, 1)->rc, CH_RC_OK);

  ch_test_fail(t, CH_TEST_WRITES, CH_RC_CONFLICT, 5, "somebody was first");
  gp = ch_test_given(t, "identity:command-u3", "Register",
                     "{\"userId\": \"u3\", \"email\": \"u3@example.com\","
                     " \"passwordHash\": \"h\"}", NULL);
  assert_int_equal(ch_test_deliver(t, gp), CH_RETRY);
  assert_string_equal(ch_test_error(t), "identity-u3 kept changing: somebody was first");
}

/* The templates, from files named relative to the INI file's directory
 * (config_path()). */
static void test_templates_from_files(void **state)
{
  char dir[] = "/tmp/comphost-identity-XXXXXX", path[64];
  ch_test *t;
  FILE *f;
  (void)state;

  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/welcome.txt", dir);
  f = fopen(path, "w");
  assert_non_null(f);
  fputs("Dear {{email}} of {{appName}}: you are {{userId}}.\n", f);
  assert_int_equal(fclose(f), 0);

  t = ch_test_load(IDENTITY_PLUGIN);
  ch_test_set_config_dir(t, dir);
  ch_test_set(t, "app_name", "Tutorials");
  ch_test_set(t, "registration_email_text_file", "welcome.txt");
  started(t);
  assert_int_equal(ch_test_when(t, "identity-u1", "Registered", REGISTERED, TRACE), CH_OK);
  assert_true(ch_test_json_has(ch_test_written(t, NULL, "Send")->data,
                               "{\"text\": \"Dear together@example.com of Tutorials: you are"
                               " u1.\\n\", \"subject\": \"Welcome to Tutorials\"}"));
  ch_test_free(t);

  /* a file that is not there refuses the configuration */
  t = ch_test_load(IDENTITY_PLUGIN);
  ch_test_set_config_dir(t, dir);
  ch_test_set(t, "registration_email_html_file", "missing.html");
  assert_int_equal(ch_test_start(t), -1);
  assert_non_null(strstr(ch_test_error(t), "registration_email_html_file: cannot open"));
  assert_non_null(strstr(ch_test_error(t), "/missing.html"));
  ch_test_free(t);

  assert_int_equal(unlink(path), 0);
  assert_int_equal(rmdir(dir), 0);
}

#define TEST(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
  const struct CMUnitTest tests[] = {
    TEST(test_register),
    TEST(test_register_twice),
    TEST(test_bad_register_is_rejected),
    TEST(test_registered_sends_the_email),
    TEST(test_sent_is_recorded),
    TEST(test_registration_end_to_end),
    TEST(test_store_trouble_is_a_retry),
    cmocka_unit_test(test_templates_from_files),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
