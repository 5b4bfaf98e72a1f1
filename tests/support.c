/* support.c - helpers shared by the tests. */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>

#include "uuid.h"

static const char *env_or_fail(const char *name)
{
  const char *v = getenv(name);

  if (!v || !*v) {
    print_error("%s is not set: run the tests with scripts/test, or "
                "scripts/dev-db start && eval \"$(scripts/dev-db env)\"\n", name);
    fail();
  }
  return v;
}

const char *ch_test_store_url(void)
{
  return env_or_fail("MESSAGE_STORE_CONNECTION_STRING");
}

const char *ch_test_view_url(void)
{
  return env_or_fail("DATABASE_URL");
}

chd_mdb *ch_test_connect(void)
{
  chd_mdb *db = chd_mdb_new(ch_test_store_url());

  assert_non_null(db);
  if (chd_mdb_connect(db) != CHD_STORE_OK) {
    print_error("cannot connect: %s\n", chd_mdb_error(db));
    fail();
  }
  return db;
}

void ch_test_unique_category(const char *prefix, char *buf, size_t size)
{
  char u[CHD_UUID_LEN];
  char hex[17];
  size_t j = 0;

  chd_uuid_v4(u);
  for (size_t i = 0; u[i] && j < 16; i++)
    if (u[i] != '-')
      hex[j++] = u[i];
  hex[j] = '\0';
  snprintf(buf, size, "%s%s", prefix, hex);
}
