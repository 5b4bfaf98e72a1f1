/* uuid.c - UUIDs for message ids (libuuid). */
#include "uuid.h"

#include <string.h>
#include <uuid/uuid.h>

void chd_uuid_v4(char out[CHD_UUID_LEN])
{
  uuid_t u;

  uuid_generate_random(u);
  uuid_unparse_lower(u, out);
}

int chd_uuid_v5(const char *ns, const char *name, char out[CHD_UUID_LEN])
{
  uuid_t ns_bin, u;

  if (!ns || !name || uuid_parse(ns, ns_bin) != 0) {
    out[0] = '\0';
    return -1;
  }
  uuid_generate_sha1(u, ns_bin, name, strlen(name));
  uuid_unparse_lower(u, out);
  return 0;
}

bool chd_uuid_valid(const char *text)
{
  uuid_t u;

  return text && strlen(text) == CHD_UUID_LEN - 1 && uuid_parse(text, u) == 0;
}
