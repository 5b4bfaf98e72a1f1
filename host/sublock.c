/* sublock.c - who is running a subscriber id: an advisory lock. */
#include "sublock.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "group.h"
#include "subscription.h"

int64_t chd_sublock_key(const char *subscriber_id)
{
  static const char prefix[] = "comphost subscriber ";
  uint64_t h = 14695981039346656037ULL;

  for (const char *p = prefix; *p; p++)
    h = (h ^ (unsigned char)*p) * 1099511628211ULL;
  for (const char *p = subscriber_id; *p; p++)
    h = (h ^ (unsigned char)*p) * 1099511628211ULL;
  return (int64_t)h;
}

char *chd_sublock_session_sql(const chd_instance_config *inst, const chd_plugin *plugin)
{
  size_t n = chd_plugin_subscription_count(plugin), ids = (size_t)chd_group_ids(inst);
  size_t size = 16 + n * ids * 64, len;
  char *sql = malloc(size);

  if (!sql)
    return NULL;
  len = (size_t)snprintf(sql, size, "SELECT 1");
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < ids; j++) {
      char id[256];
      chd_group_id(&plugin->desc.subscriptions[i], inst, (int64_t)j, id, sizeof id);
      len += (size_t)snprintf(sql + len, size - len, ", pg_advisory_lock_shared(%" PRId64 ")",
                              chd_sublock_key(id));
    }
  return sql;
}
