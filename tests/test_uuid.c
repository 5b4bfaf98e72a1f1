/* test_uuid.c - message ids: v4 random, v5 deterministic. */
#include "support.h"

#include <string.h>

#include "uuid.h"

static void test_v4(void **state)
{
  char a[CHD_UUID_LEN], b[CHD_UUID_LEN];
  (void)state;

  chd_uuid_v4(a);
  chd_uuid_v4(b);
  assert_int_equal(strlen(a), 36);
  assert_true(chd_uuid_valid(a));
  assert_string_not_equal(a, b);
  assert_int_equal(a[14], '4');              /* version nibble */
  assert_non_null(strchr("89ab", a[19]));    /* RFC 4122 variant */
}

static void test_v5_known_value(void **state)
{
  char out[CHD_UUID_LEN];
  (void)state;

  /* RFC 4122 appendix / Python's uuid.uuid5(NAMESPACE_DNS, "python.org") */
  assert_int_equal(chd_uuid_v5("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "python.org", out), 0);
  assert_string_equal(out, "886313e1-3b8a-5372-9b90-0c9aee199e5d");
}

static void test_v5_deterministic(void **state)
{
  char a[CHD_UUID_LEN], b[CHD_UUID_LEN], c[CHD_UUID_LEN];
  const char *ns = "0c46e0b7-dfaf-443a-b150-053b67905cc2";  /* the book's email namespace */
  (void)state;

  assert_int_equal(chd_uuid_v5(ns, "user@example.com", a), 0);
  assert_int_equal(chd_uuid_v5(ns, "user@example.com", b), 0);
  assert_int_equal(chd_uuid_v5(ns, "other@example.com", c), 0);
  assert_string_equal(a, b);
  assert_string_not_equal(a, c);
  assert_int_equal(a[14], '5');
}

static void test_v5_bad_namespace(void **state)
{
  char out[CHD_UUID_LEN];
  (void)state;

  assert_int_equal(chd_uuid_v5("not-a-uuid", "x", out), -1);
  assert_string_equal(out, "");
  assert_int_equal(chd_uuid_v5(NULL, "x", out), -1);
}

static void test_valid(void **state)
{
  (void)state;

  assert_true(chd_uuid_valid("886313E1-3B8A-5372-9B90-0C9AEE199E5D"));
  assert_false(chd_uuid_valid("886313e1-3b8a-5372-9b90-0c9aee199e5"));
  assert_false(chd_uuid_valid("886313e1-3b8a-5372-9b90-0c9aee199e5dd"));
  assert_false(chd_uuid_valid("zz6313e1-3b8a-5372-9b90-0c9aee199e5d"));
  assert_false(chd_uuid_valid(""));
  assert_false(chd_uuid_valid(NULL));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_v4),
    cmocka_unit_test(test_v5_known_value),
    cmocka_unit_test(test_v5_deterministic),
    cmocka_unit_test(test_v5_bad_namespace),
    cmocka_unit_test(test_valid),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
