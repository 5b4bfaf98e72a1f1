/*
 * test_example.c - the SDK example, examples/greeter, in a real host against
 * a real Message DB; and docs/sdk.md showing it and its unit test
 * (test_greeter.c) exactly as they are.
 *
 *   test_example        everything (needs the dev database)
 *   test_example doc    only the comparison of docs/sdk.md with the source
 */
#include "support.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "e2e.h"
#include "uuid.h"

#define WAIT 60000
#define SUBSCRIBER "components:greeter"

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

/* Write a message to `stream`; data and metadata are JSON texts, or NULL. */
static void write_message(const char *stream, const char *type, const char *data_json,
                          const char *meta_json)
{
  chd_mdb *m = ch_e2e_store(&db);
  json_t *data = data_json ? json_loads(data_json, 0, NULL) : NULL;
  json_t *meta = meta_json ? json_loads(meta_json, 0, NULL) : NULL;

  assert_true(!data_json || data);
  assert_true(!meta_json || meta);
  assert_int_equal(chd_mdb_write(m, stream, NULL, type, data, meta, CH_VERSION_ANY, NULL),
                   CHD_STORE_OK);
  json_decref(data);
  json_decref(meta);
  chd_mdb_free(m);
}

/* A Greet command in a command stream of its own, as an application sends it. */
static void greet(const char *data_json, const char *meta_json)
{
  char u[CHD_UUID_LEN], stream[80];

  chd_uuid_v4(u);
  snprintf(stream, sizeof stream, "greeting:command-%s", u);
  write_message(stream, "Greet", data_json, meta_json);
}

/* How many messages of the entity stream greeting-<id> match `where`. */
static int64_t count(const char *id, const char *where)
{
  char sql[512];

  snprintf(sql, sizeof sql, "SELECT count(*) FROM message_store.messages"
           " WHERE stream_name = 'greeting-%s' AND %s", id, where);
  return ch_e2e_int(db.store_url, sql);
}

/* Wait for greeting-<id> to hold a Greeted, and for nothing else. */
static void wait_greeted(const char *id)
{
  char sql[256];

  snprintf(sql, sizeof sql, "SELECT count(*) FROM message_store.messages"
           " WHERE stream_name = 'greeting-%s' AND type = 'Greeted'", id);
  assert_int_equal(ch_e2e_wait_int(db.store_url, sql, 1, WAIT), 1);
}

static void stop_cleanly(ch_e2e_host *h)
{
  int status = ch_e2e_host_stop(h, SIGTERM, WAIT);

  assert_true(status != -1 && WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

/* A Greet gets one Greeted, with the command's trace and the configured word. */
static void test_greet_is_answered(void **state)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "greeter.ini", "[greeter]\ngreeting = Hi\n");
  (void)state;

  greet("{\"greetingId\": \"g1\", \"name\": \"Ada\"}",
        "{\"traceId\": \"t-1\", \"userId\": \"u-1\"}");
  ch_e2e_host_start(&h, &db, ini, "greet.log");
  wait_greeted("g1");
  stop_cleanly(&h);
  assert_true(ch_e2e_log_contains(&h, "Started " SUBSCRIBER " at global position 1 "));
  assert_int_equal(count("g1", "true"), 1);
  assert_int_equal(count("g1", "type = 'Greeted' AND position = 0"
                               " AND data->>'greetingId' = 'g1' AND data->>'name' = 'Ada'"
                               " AND data->>'text' = 'Hi, Ada!'"), 1);
  /* follow(): the trace goes on; there was no origin to carry */
  assert_int_equal(count("g1", "metadata->>'traceId' = 't-1' AND metadata->>'userId' = 'u-1'"
                               " AND NOT metadata ? 'originStreamName'"), 1);
}

/* The same Greet twice (two messages) greets once; an origin is carried. */
static void test_same_greet_twice_greets_once(void **state)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "twice.ini", "[greeter]\n");
  (void)state;

  greet("{\"greetingId\": \"g2\", \"name\": \"Bo\"}", "{\"traceId\": \"t-2a\"}");
  greet("{\"greetingId\": \"g2\", \"name\": \"Bo\"}", "{\"traceId\": \"t-2b\"}");
  greet("{\"greetingId\": \"g3\", \"name\": \"Cy\"}",
        "{\"traceId\": \"t-3\", \"originStreamName\": \"greetingProcess-7\"}");
  ch_e2e_host_start(&h, &db, ini, "twice.log");
  /* handled in order: once g3 is greeted, both g2 commands were handled */
  wait_greeted("g3");
  stop_cleanly(&h);
  assert_int_equal(count("g2", "true"), 1);
  assert_int_equal(count("g2", "type = 'Greeted' AND data->>'text' = 'Hello, Bo!'"
                               " AND metadata->>'traceId' = 't-2a'"), 1);
  assert_int_equal(count("g3", "metadata->>'originStreamName' = 'greetingProcess-7'"
                               " AND metadata->>'traceId' = 't-3'"), 1);
}

/* Bad input is rejected with an event, or logged when it names no greeting. */
static void test_bad_input_is_rejected(void **state)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "bad.ini", "[greeter]\n");
  char data[400];
  (void)state;

  greet("{\"greetingId\": \"g4\"}", "{\"traceId\": \"t-4\"}");
  greet("{\"greetingId\": \"g5\", \"name\": \"\"}", NULL);
  snprintf(data, sizeof data, "{\"greetingId\": \"g6\", \"name\": \"%0101d\"}", 0);
  greet(data, NULL);
  greet("{\"name\": \"Nobody\"}", NULL);
  greet("{\"greetingId\": 7, \"name\": \"Seven\"}", NULL);
  greet("{\"greetingId\": \"g8\", \"name\": \"Di\"}", NULL);
  ch_e2e_host_start(&h, &db, ini, "bad.log");
  wait_greeted("g8");
  stop_cleanly(&h);
  assert_int_equal(count("g4", "true"), 1);
  assert_int_equal(count("g4", "type = 'GreetingRejected' AND data->>'greetingId' = 'g4'"
                               " AND data->>'reason' = 'name is missing'"
                               " AND metadata->>'traceId' = 't-4'"), 1);
  assert_int_equal(count("g5", "type = 'GreetingRejected'"
                               " AND data->>'reason' = 'name is empty'"), 1);
  assert_int_equal(count("g5", "true"), 1);
  assert_int_equal(count("g6", "type = 'GreetingRejected'"
                               " AND data->>'reason' = 'name is too long'"), 1);
  assert_int_equal(count("g6", "true"), 1);
  /* no greetingId (or not a string): nothing written, a skip logged */
  assert_int_equal(ch_e2e_log_count(&h, "skipped a malformed message: Greet without a usable"
                                        " greetingId"), 2);
  assert_int_equal(ch_e2e_int(db.store_url, "SELECT count(*) FROM message_store.messages"
                                            " WHERE stream_name LIKE 'greeting-%'"), 4);
  /* the subscription never stopped */
  assert_false(ch_e2e_log_contains(&h, "subscription stopped"));
}

/* Rewound to the start, the host delivers every command again: nothing new is
 * written (fetch() for Greeted, deterministic ids for the rejection). */
static void test_redelivery_changes_nothing(void **state)
{
  ch_e2e_host h;
  const char *ini = ch_e2e_write_ini(&db, "again.ini", "[greeter]\n");
  (void)state;

  greet("{\"greetingId\": \"g9\", \"name\": \"Ed\"}", NULL);
  greet("{\"greetingId\": \"g10\"}", NULL);
  greet("{\"greetingId\": \"g11\", \"name\": \"Flo\"}", NULL);
  ch_e2e_host_start(&h, &db, ini, "again1.log");
  wait_greeted("g11");
  stop_cleanly(&h);

  /* the book's way to rewind: a Read with an earlier position */
  write_message("subscriberPosition-" SUBSCRIBER, "Read", "{\"position\": 0}", NULL);
  greet("{\"greetingId\": \"g12\", \"name\": \"Gus\"}", NULL);
  ch_e2e_host_start(&h, &db, ini, "again2.log");
  wait_greeted("g12");
  stop_cleanly(&h);
  assert_true(ch_e2e_log_contains(&h, "Started " SUBSCRIBER " at global position 1 "));
  assert_true(ch_e2e_log_contains(&h, "GreetingRejected to 'greeting-g10' was written by an"
                                      " earlier delivery"));
  assert_int_equal(count("g9", "true"), 1);
  assert_int_equal(count("g10", "true"), 1);
  assert_int_equal(count("g11", "true"), 1);
}

/* The contents of `path`; fails the test when it cannot be read. */
static char *slurp(const char *path)
{
  FILE *f = fopen(path, "rb");
  char *buf;
  long size;

  if (!f) {
    print_error("cannot read %s\n", path);
    fail();
  }
  assert_int_equal(fseek(f, 0, SEEK_END), 0);
  size = ftell(f);
  assert_true(size >= 0);
  assert_int_equal(fseek(f, 0, SEEK_SET), 0);
  buf = malloc((size_t)size + 1);
  assert_non_null(buf);
  assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
  buf[size] = '\0';
  fclose(f);
  return buf;
}

/*
 * docs/sdk.md shows `file` of examples/greeter whole, in the one ```c block
 * that starts with the file's first two lines ("/" "*" and " * <file> - "):
 * that block, with its final newline, must be the file byte for byte.
 */
static void doc_shows(const char *doc, const char *file)
{
  char path[512], head[128];
  char *src;
  const char *block = NULL, *p;
  int found = 0;

  snprintf(path, sizeof path, "%s/examples/greeter/%s", COMPHOST_SOURCE_DIR, file);
  snprintf(head, sizeof head, "/*\n * %s - ", file);
  src = slurp(path);
  assert_true(strncmp(src, head, strlen(head)) == 0);
  for (p = doc; (p = strstr(p, "```c\n")) != NULL; p += 5) {
    if ((p == doc || p[-1] == '\n') && !strncmp(p + 5, head, strlen(head))) {
      block = p + 5;
      found++;
    }
  }
  if (found != 1) {
    print_error("docs/sdk.md has %d ```c blocks that start like %s, not 1\n", found, file);
    fail();
  }
  p = strstr(block, "\n```\n");
  if (!p)
    p = strstr(block, "\n```");
  assert_non_null(p);
  if ((size_t)(p + 1 - block) != strlen(src) || strncmp(block, src, strlen(src)) != 0) {
    size_t i = 0, line = 1;
    while (block + i < p + 1 && src[i] && block[i] == src[i])
      line += src[i++] == '\n';
    print_error("docs/sdk.md differs from examples/greeter/%s at line %zu of the file: copy"
                " the file into the document again\n", file, line);
    fail();
  }
  free(src);
}

/* The guide shows the example and its unit test as they are. */
static void test_sdk_doc_shows_the_example(void **state)
{
  char *doc = slurp(COMPHOST_SOURCE_DIR "/docs/sdk.md");
  (void)state;

  doc_shows(doc, "greeter.c");
  doc_shows(doc, "test_greeter.c");
  free(doc);
}

int main(int argc, char **argv)
{
  const struct CMUnitTest all[] = {
    cmocka_unit_test(test_sdk_doc_shows_the_example),
    cmocka_unit_test_setup_teardown(test_greet_is_answered, setup, teardown),
    cmocka_unit_test_setup_teardown(test_same_greet_twice_greets_once, setup, teardown),
    cmocka_unit_test_setup_teardown(test_bad_input_is_rejected, setup, teardown),
    cmocka_unit_test_setup_teardown(test_redelivery_changes_nothing, setup, teardown),
  };
  const struct CMUnitTest doc[] = {
    cmocka_unit_test(test_sdk_doc_shows_the_example),
  };

  if (argc > 1 && !strcmp(argv[1], "doc"))
    return cmocka_run_group_tests(doc, NULL, NULL);
  return cmocka_run_group_tests(all, NULL, NULL);
}
