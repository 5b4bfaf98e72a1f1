/*
 * test_send_email.c - the book's send-email component (plugins/send-email),
 * unit tested with the test kit and its pickup transport, into a directory
 * of the test's own. docs/components/send-email.md is the contract.
 */
#define _XOPEN_SOURCE 700   /* nftw, mkdtemp, unsetenv */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <comphost/testkit.h>

#define SEND "{\"emailId\": \"e1\", \"to\": \"ada@example.com\", \"subject\": \"Hello\"," \
             " \"text\": \"Hi Ada\", \"html\": \"<p>Hi Ada</p>\"}"
#define ORIGIN "{\"originStreamName\": \"identity-u1\", \"traceId\": \"t-1\"," \
               " \"userId\": \"u1\"}"

static char dir[64];          /* the test's directory: the "INI file's" */
static char mail[128];        /* dir/mail, the pickup directory */

/* send-email with the pickup transport into mail/, relative to dir. */
static ch_test *send_email(const char *key, const char *value)
{
  ch_test *t = ch_test_load(SEND_EMAIL_PLUGIN);

  ch_test_set_config_dir(t, dir);
  ch_test_set(t, "system_sender_email_address", "no-reply@example.com");
  ch_test_set(t, "email_directory", "mail");
  if (key)
    ch_test_set(t, key, value);
  if (ch_test_start(t) != 0)
    fail_msg("%s", ch_test_error(t));
  return t;
}

static int setup(void **state)
{
  snprintf(dir, sizeof dir, "/tmp/comphost-send-email-XXXXXX");
  if (!mkdtemp(dir))
    return -1;
  snprintf(mail, sizeof mail, "%s/mail", dir);
  *state = send_email(NULL, NULL);
  return 0;
}

static int remove_entry(const char *name, const struct stat *st, int flag, struct FTW *ftw)
{
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(name);
}

static int teardown(void **state)
{
  ch_test_free(*state);
  return nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* The number of .eml files in `path`. */
static int eml_files(const char *path)
{
  DIR *d = opendir(path);
  struct dirent *e;
  int n = 0;

  assert_non_null(d);
  while ((e = readdir(d)))
    n += strlen(e->d_name) > 4 && !strcmp(e->d_name + strlen(e->d_name) - 4, ".eml") &&
         e->d_name[0] != '.';
  closedir(d);
  return n;
}

/* The file of the email the command at `gp` sent: <id>.eml. */
static char *eml_of(ch_test *t, const char *in, int64_t gp)
{
  char path[256];
  FILE *f;
  char *text = calloc(1, 65536);

  snprintf(path, sizeof path, "%s/%s.eml", in, ch_test_message(t, gp)->id);
  f = fopen(path, "r");
  assert_non_null(f);
  assert_non_null(text);
  assert_true(fread(text, 1, 65535, f) > 0);
  fclose(f);
  return text;
}

/* Send -> the email in the pickup directory, and Sent with the command's
 * data and metadata on sendEmail-<emailId>. */
static void test_send(void **state)
{
  ch_test *t = *state;
  const ch_test_write *w;
  int64_t gp = ch_test_given(t, "sendEmail:command-e1", "Send", SEND, ORIGIN);
  char *eml;

  assert_int_equal(ch_test_deliver(t, gp), CH_OK);
  assert_int_equal(eml_files(mail), 1);
  eml = eml_of(t, mail, gp);
  assert_non_null(strstr(eml, "From: no-reply@example.com\r\n"));
  assert_non_null(strstr(eml, "To: ada@example.com\r\n"));
  assert_non_null(strstr(eml, "Subject: Hello\r\n"));
  free(eml);

  assert_int_equal(ch_test_write_count(t), 1);
  w = ch_test_written(t, "sendEmail-e1", "Sent");
  assert_non_null(w);
  assert_true(json_equal(w->data, ch_test_message(t, gp)->data));
  assert_true(ch_test_json_has(w->metadata, ORIGIN));
  assert_true(ch_test_json_has(w->metadata, "{\"causationMessageStreamName\":"
                                            " \"sendEmail:command-e1\"}"));
}

/* An email that was sent is not sent again. */
static void test_sent_once(void **state)
{
  ch_test *t = *state;

  ch_test_given(t, "sendEmail-e1", "Sent", SEND, ORIGIN);
  assert_int_equal(ch_test_when(t, "sendEmail:command-e1", "Send", SEND, ORIGIN), CH_OK);
  assert_int_equal(ch_test_write_count(t), 0);
  assert_int_equal(eml_files(mail), 0);
}

/* A Send that breaks the contract: Failed with the reason, once per
 * command; a newer Send for the email is still delivered. */
static void test_bad_send_fails(void **state)
{
  ch_test *t = *state;
  const ch_test_write *w;
  int64_t gp = ch_test_given(t, "sendEmail:command-e1", "Send",
                             "{\"emailId\": \"e1\", \"subject\": \"Hello\", \"text\": \"x\"}",
                             ORIGIN);

  assert_int_equal(ch_test_deliver(t, gp), CH_OK);
  w = ch_test_written(t, "sendEmail-e1", "Failed");
  assert_non_null(w);
  assert_true(ch_test_json_has(w->data, "{\"emailId\": \"e1\", \"subject\": \"Hello\","
                                        " \"reason\": \"to is missing\"}"));
  assert_true(ch_test_json_has(w->metadata, ORIGIN));
  assert_int_equal(json_integer_value(json_object_get(w->metadata,
                                                      "causationMessageGlobalPosition")), gp);
  assert_int_equal(eml_files(mail), 0);

  assert_int_equal(ch_test_deliver(t, gp), CH_OK);
  assert_int_equal(ch_test_write_count(t), 0);
  assert_true(ch_test_logged(t, "this Send failed already"));

  assert_int_equal(ch_test_when(t, "sendEmail:command-e1", "Send", SEND, ORIGIN), CH_OK);
  assert_non_null(ch_test_written(t, "sendEmail-e1", "Sent"));
  assert_int_equal(eml_files(mail), 1);
}

/* The transport fails: Failed with its reason, and the subscription goes on. */
static void test_delivery_failure(void **state)
{
  ch_test *t = *state;
  const ch_test_write *w;
  FILE *f;

  /* the pickup directory made at start becomes a file */
  assert_int_equal(rmdir(mail), 0);
  f = fopen(mail, "w");
  assert_non_null(f);
  fclose(f);

  assert_int_equal(ch_test_when(t, "sendEmail:command-e1", "Send", SEND, ORIGIN), CH_OK);
  w = ch_test_written(t, "sendEmail-e1", "Failed");
  assert_non_null(w);
  assert_true(ch_test_json_has(w->data, "{\"to\": \"ada@example.com\"}"));
  assert_non_null(strstr(json_string_value(json_object_get(w->data, "reason")),
                         "cannot write"));
  assert_true(ch_test_logged(t, "sendEmail-e1: Failed: cannot write"));
}

/* No store: try again later (the email may go out twice, as in the book). */
static void test_store_away_is_a_retry(void **state)
{
  ch_test *t = *state;
  int64_t gp = ch_test_given(t, "sendEmail:command-e1", "Send", SEND, ORIGIN);

  ch_test_fail(t, CH_TEST_READS, CH_RC_UNAVAILABLE, 1, "no connection");
  assert_int_equal(ch_test_deliver(t, gp), CH_RETRY);
  assert_string_equal(ch_test_error(t), "cannot load the email: no connection");
  assert_int_equal(eml_files(mail), 0);

  ch_test_fail(t, CH_TEST_WRITES, CH_RC_UNAVAILABLE, 1, "no connection");
  assert_int_equal(ch_test_deliver(t, gp), CH_RETRY);
  assert_string_equal(ch_test_error(t), "cannot write Sent: no connection");
  assert_int_equal(ch_test_deliver(t, gp), CH_OK);
  assert_int_equal(eml_files(mail), 1);       /* the same file, written twice */
}

/* The settings: a sender is needed, transports are known, an absolute
 * directory stays as it is. */
static void test_settings(void **state)
{
  ch_test *t = ch_test_load(SEND_EMAIL_PLUGIN);
  char abs[160];
  int64_t gp;

  assert_int_equal(ch_test_start(t), -1);
  assert_non_null(strstr(ch_test_error(t), "no sender address"));
  ch_test_free(t);

  t = ch_test_load(SEND_EMAIL_PLUGIN);
  ch_test_set(t, "system_sender_email_address", "no-reply@example.com");
  ch_test_set(t, "transport", "fax");
  assert_int_equal(ch_test_start(t), -1);
  assert_non_null(strstr(ch_test_error(t), "transport: 'fax' is not one of pickup, smtp"));
  ch_test_free(t);

  snprintf(abs, sizeof abs, "%s/elsewhere", dir);
  ch_test_free(*state);
  *state = t = send_email("email_directory", abs);
  gp = ch_test_given(t, "sendEmail:command-e2", "Send", SEND, NULL);
  assert_int_equal(ch_test_deliver(t, gp), CH_OK);
  assert_int_equal(eml_files(abs), 1);
}

#define TEST(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
  const struct CMUnitTest tests[] = {
    TEST(test_send),
    TEST(test_sent_once),
    TEST(test_bad_send_fails),
    TEST(test_delivery_failure),
    TEST(test_store_away_is_a_retry),
    TEST(test_settings),
  };

  /* the book's environment would win over the settings */
  unsetenv("EMAIL_DIRECTORY");
  unsetenv("SYSTEM_SENDER_EMAIL_ADDRESS");
  unsetenv("STATE_DIRECTORY");
  return cmocka_run_group_tests(tests, NULL, NULL);
}
