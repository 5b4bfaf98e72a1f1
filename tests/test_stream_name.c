/* test_stream_name.c - the stream-name grammar matches Message DB's. */
#include "support.h"

#include <string.h>

#include "stream_name.h"

static void test_category(void **state)
{
  char buf[64];
  (void)state;

  assert_int_equal(chd_stream_category("identity-123", buf, sizeof buf), 0);
  assert_string_equal(buf, "identity");
  assert_int_equal(chd_stream_category("identity:command-123-456", buf, sizeof buf), 0);
  assert_string_equal(buf, "identity:command");
  assert_int_equal(chd_stream_category("identity", buf, sizeof buf), 0);
  assert_string_equal(buf, "identity");
  assert_int_equal(chd_stream_category(NULL, buf, sizeof buf), 0);
  assert_string_equal(buf, "");
  assert_int_equal(chd_stream_category("-abc", buf, sizeof buf), 0);
  assert_string_equal(buf, "");
}

static void test_category_buffer_too_small(void **state)
{
  char buf[5] = "xxxx";
  (void)state;

  assert_int_equal(chd_stream_category("identity-1", buf, sizeof buf), -1);
  assert_string_equal(buf, "");
  assert_int_equal(chd_stream_category("abcd-1", buf, sizeof buf), 0);
  assert_string_equal(buf, "abcd");
}

static void test_id(void **state)
{
  (void)state;

  assert_string_equal(chd_stream_id("identity-123"), "123");
  /* the id is everything after the first dash, as Message DB's id() */
  assert_string_equal(chd_stream_id("identity-8f0c-11e9-a"), "8f0c-11e9-a");
  assert_string_equal(chd_stream_id("account-123+abc"), "123+abc");
  assert_null(chd_stream_id("identity"));
  assert_null(chd_stream_id(NULL));
  assert_string_equal(chd_stream_id("x-"), "");
}

static void test_cardinal_id(void **state)
{
  char buf[64];
  (void)state;

  assert_int_equal(chd_stream_cardinal_id("account-123+abc", buf, sizeof buf), 0);
  assert_string_equal(buf, "123");
  assert_int_equal(chd_stream_cardinal_id("account-123", buf, sizeof buf), 0);
  assert_string_equal(buf, "123");
  assert_int_equal(chd_stream_cardinal_id("account", buf, sizeof buf), 0);
  assert_string_equal(buf, "");
  assert_int_equal(chd_stream_cardinal_id("account-123456789", buf, 4), -1);
}

static void test_is_category(void **state)
{
  (void)state;

  assert_true(chd_stream_is_category("identity"));
  assert_true(chd_stream_is_category("identity:command"));
  assert_true(chd_stream_is_category("$all"));
  assert_false(chd_stream_is_category("identity-1"));
  assert_false(chd_stream_is_category(NULL));
  assert_true(chd_stream_is_all("$all"));
  assert_false(chd_stream_is_all("all"));
  assert_false(chd_stream_is_all(NULL));
}

static void test_compose(void **state)
{
  char buf[64];
  (void)state;

  assert_int_equal(chd_stream_name("identity", "42", buf, sizeof buf), 0);
  assert_string_equal(buf, "identity-42");
  assert_int_equal(chd_stream_command("identity", "42", buf, sizeof buf), 0);
  assert_string_equal(buf, "identity:command-42");
  assert_int_equal(chd_stream_command("sendEmail", "e1", buf, sizeof buf), 0);
  assert_string_equal(buf, "sendEmail:command-e1");
  /* a category with a dash, an empty one, or no room: refused */
  assert_int_equal(chd_stream_name("bad-cat", "1", buf, sizeof buf), -1);
  assert_string_equal(buf, "");
  assert_int_equal(chd_stream_name("", "1", buf, sizeof buf), -1);
  assert_int_equal(chd_stream_command("identity", "42", buf, 10), -1);
  assert_int_equal(chd_stream_name("identity", NULL, buf, sizeof buf), -1);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_category),
    cmocka_unit_test(test_category_buffer_too_small),
    cmocka_unit_test(test_id),
    cmocka_unit_test(test_cardinal_id),
    cmocka_unit_test(test_is_category),
    cmocka_unit_test(test_compose),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
