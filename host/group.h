/*
 * group.h - a consumer group shared by hosts through leases
 * (group_member = auto).
 *
 * Every host that runs an instance with group_member = auto and group_size
 * = N joins the group of each of its subscriptions and claims some of the N
 * slots (Message DB's consumer group members 0..N-1) through leases kept in
 * PostgreSQL (lease.h). For each slot it holds, the worker runs one
 * subscription (subscription.h) with the subscriber id "<id>:<slot>" and
 * that slot's own position, so whoever holds a slot resumes where the last
 * holder stopped. Each position put checks the lease's generation in its
 * transaction (fencing): a host that lost a slot commits nothing more for
 * it.
 *
 * chd_group_tick(), called by the worker's loop between batches (so always
 * at a batch boundary), renews the leases every lease_timeout_ms / 4 and
 * balances: with M live hosts, the host of rank r (by owner id) aims at
 * N / M slots, one more when r < N % M (chd_group_target). A host above its
 * share saves the position of a slot and releases it; one below claims free
 * slots, then slots whose lease expired (a takeover): it first ends the
 * backends the last owner recorded (pg_terminate_backend), so that a paused
 * owner's open transaction cannot hold row locks, or ever commit. A host
 * that could not renew for lease_timeout_ms stops its slots' work; when it
 * can reach the database again it finds which slots were taken and claims
 * its share anew.
 *
 * The subscriptions live in an array the worker's loop runs over: a slot
 * the worker does not hold is in state CHD_SUB_LOST and is not run.
 */
#ifndef CHD_GROUP_H
#define CHD_GROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "host_api.h"
#include "lease.h"
#include "status.h"
#include "subscription.h"

typedef struct chd_group chd_group;

/* How many subscriber ids a subscription of `inst` has: group_size with
 * group_member = auto, else 1. */
int64_t chd_group_ids(const chd_instance_config *inst);

/* Subscriber id j (0 <= j < chd_group_ids()): "<id>:<j>" with group_member =
 * auto, else the effective id (chd_sub_effective_id). */
void chd_group_id(const ch_subscription *desc, const chd_instance_config *inst, int64_t j,
                  char *buf, size_t size);

/* The consumer group member that subscriber id j reads. */
int64_t chd_group_member_of(const chd_instance_config *inst, int64_t j);

/* How many of `slots` the member of rank `rank` among `members` live ones
 * holds when balanced. */
int64_t chd_group_target(int64_t slots, int64_t members, int64_t rank);

/* A new owner id, "<hostname>:<pid>.<4 hex digits>" (the hostname cut at 40
 * characters): with "comphost " before it, it fits an application_name. */
void chd_group_owner_id(char *buf, size_t size);

/* A subscription as a worker reports it in its status. */
typedef struct chd_group_entry {
  char id[256];                /* its subscriber id */
  const chd_status_sub *ss;
  const chd_status_slot *slot; /* its slot's record, NULL outside a group */
} chd_group_entry;

/* The subscriptions that the worker of `inst` (plugin `d`) reports in `st`:
 * each of its subscriptions, or with group_member = auto each slot it
 * holds. Returns how many (at most `max`). */
size_t chd_group_entries(const chd_instance_config *inst, const ch_plugin_desc *d,
                         const chd_status *st, chd_group_entry *out, size_t max);

/* What a slot's subscription needs besides the ctx. */
typedef struct chd_group_args {
  const char *owner;           /* the owner id (chd_group_owner_id) */
  chd_mdb *read;               /* category reads' connection, or NULL (borrowed) */
  /* per subscription: a message that crashed the worker again and again,
   * and its slot (supervisor.c); NULL when none */
  const int64_t *poisoned;
  const int64_t *poisoned_slot;
  const char *poison_reason;
} chd_group_args;

/*
 * Set up the group of ctx's instance (group_member = auto): check its size,
 * create the lease tables if needed and join the group of each
 * subscription. Claims nothing yet. Returns NULL with the reason in err.
 */
chd_group *chd_group_new(ch_ctx *ctx, const chd_group_args *args, char *err, size_t errlen);

/* The subscriptions, one per (subscription, slot), for the worker's loop
 * (owned by the group); *n of them. */
chd_sub *chd_group_subs(chd_group *g, size_t *n);

/*
 * Between batches: drop slots found taken over, and when due renew the
 * leases, balance and claim. Never blocks for long: a database that does
 * not answer is tried again on the next call.
 */
void chd_group_tick(chd_group *g);

/* Whether the leases are fresh enough to work on the slots (renewed less
 * than lease_timeout_ms ago, with a margin). */
bool chd_group_valid(const chd_group *g);

/* The monotonic time of the next renewal. */
int64_t chd_group_next_ms(const chd_group *g);

/* A clean stop: save each held slot's position, release its lease, leave
 * the group (so others take the slots at once). */
void chd_group_leave(chd_group *g);

/* Free the group and its subscriptions. NULL is allowed. */
void chd_group_free(chd_group *g);

#endif /* CHD_GROUP_H */
