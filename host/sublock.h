/*
 * sublock.h - who is running a subscriber id: an advisory lock.
 *
 * A worker holds a shared advisory lock per subscriber id of its instance on
 * its message-store session, taken again after every reconnection (see
 * chd_mdb_set_session_sql). `comphost rebuild` takes the same locks
 * exclusively, on the same database, for as long as it changes the views and
 * positions: so it refuses while any host, on any machine, runs one of the
 * subscriptions it would reset, and a host that starts meanwhile waits for
 * it to finish.
 *
 * The lock key of a subscriber id is the 64-bit FNV-1a hash of
 * "comphost subscriber <id>".
 */
#ifndef CHD_SUBLOCK_H
#define CHD_SUBLOCK_H

#include <stddef.h>
#include <stdint.h>

#include "loader.h"
#include "config.h"

int64_t chd_sublock_key(const char *subscriber_id);

/*
 * The statement a worker runs on each new message-store session:
 * "SELECT pg_advisory_lock_shared(K1), ..." for every subscriber id of the
 * instance (every slot's with group_member = auto, whether held or not).
 * Returns a malloc'd string, or NULL when out of memory.
 */
char *chd_sublock_session_sql(const chd_instance_config *inst, const chd_plugin *plugin);

#endif /* CHD_SUBLOCK_H */
