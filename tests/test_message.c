/* test_message.c - decoding a row of the store into a ch_message. */
#include "support.h"

#include <string.h>

static void test_decode_full(void **state)
{
  const char *const f[8] = { "9a6e6c1c-0d5b-4cb0-9d8a-2f1b4bca3b80", "identity-42",
                             "Registered", "3", "1207", "{\"email\":\"a@b.c\"}",
                             "{\"traceId\":\"t1\"}", "2026-11-28 06:16:27.123456" };
  ch_message m;
  char err[256];
  (void)state;

  assert_int_equal(chd_message_decode(&m, f, err, sizeof err), 0);
  assert_string_equal(m.id, f[0]);
  assert_string_equal(m.stream_name, "identity-42");
  assert_string_equal(m.type, "Registered");
  assert_int_equal(m.position, 3);
  assert_int_equal(m.global_position, 1207);
  assert_string_equal(json_string_value(json_object_get(m.data, "email")), "a@b.c");
  assert_string_equal(json_string_value(json_object_get(m.metadata, "traceId")), "t1");
  assert_string_equal(m.time, "2026-11-28 06:16:27.123456");
  json_decref(m.data);
  json_decref(m.metadata);
}

static void test_decode_null_json_is_empty_object(void **state)
{
  const char *const f[8] = { "id", "s-1", "T", "0", "1", NULL, NULL, NULL };
  ch_message m;
  char err[256];
  (void)state;

  assert_int_equal(chd_message_decode(&m, f, err, sizeof err), 0);
  assert_true(json_is_object(m.data));
  assert_int_equal(json_object_size(m.data), 0);
  assert_true(json_is_object(m.metadata));
  assert_int_equal(json_object_size(m.metadata), 0);
  assert_string_equal(m.time, "");
  json_decref(m.data);
  json_decref(m.metadata);
}

static void test_decode_big_positions(void **state)
{
  const char *const f[8] = { "id", "s-1", "T", "9223372036854775806",
                             "9223372036854775807", "1", "[]", "t" };
  ch_message m;
  char err[256];
  (void)state;

  assert_int_equal(chd_message_decode(&m, f, err, sizeof err), 0);
  assert_true(m.position == INT64_C(9223372036854775806));
  assert_true(m.global_position == INT64_MAX);
  assert_true(json_is_integer(m.data));      /* data need not be an object */
  assert_true(json_is_array(m.metadata));
  json_decref(m.data);
  json_decref(m.metadata);
}

static void test_decode_bad_json(void **state)
{
  const char *const f[8] = { "id", "s-1", "T", "0", "17", "{\"a\":", NULL, "t" };
  ch_message m;
  char err[256];
  (void)state;

  assert_int_equal(chd_message_decode(&m, f, err, sizeof err), -2);
  assert_non_null(strstr(err, "global position 17"));
  assert_non_null(strstr(err, "'s-1'"));
  assert_non_null(strstr(err, "data is not JSON"));
}

static void test_decode_bad_metadata(void **state)
{
  const char *const f[8] = { "id", "s-1", "T", "0", "17", "{}", "nope", "t" };
  ch_message m;
  char err[256];
  (void)state;

  assert_int_equal(chd_message_decode(&m, f, err, sizeof err), -2);
  assert_non_null(strstr(err, "metadata is not JSON"));
  assert_null(m.data);
}

static void test_decode_bad_position(void **state)
{
  const char *const f1[8] = { "id", "s-1", "T", "x1", "17", NULL, NULL, "t" };
  const char *const f2[8] = { "id", "s-1", "T", "1", "", NULL, NULL, "t" };
  const char *const f3[8] = { NULL, "s-1", "T", "1", "2", NULL, NULL, "t" };
  ch_message m;
  char err[256];
  (void)state;

  assert_int_equal(chd_message_decode(&m, f1, err, sizeof err), -1);
  assert_non_null(strstr(err, "bad position"));
  assert_int_equal(chd_message_decode(&m, f2, err, sizeof err), -1);
  assert_int_equal(chd_message_decode(&m, f3, err, sizeof err), -1);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_decode_full),
    cmocka_unit_test(test_decode_null_json_is_empty_object),
    cmocka_unit_test(test_decode_big_positions),
    cmocka_unit_test(test_decode_bad_json),
    cmocka_unit_test(test_decode_bad_metadata),
    cmocka_unit_test(test_decode_bad_position),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
