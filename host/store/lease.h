/*
 * lease.h - who owns which slot of a consumer group: leases in PostgreSQL.
 *
 * With group_member = auto, the hosts that run an instance share its
 * consumer group (Message DB's members 0..group_size-1, here "slots")
 * through two tables beside the positions: in the view database for
 * position_store = view_data, in the message store (schema public) for
 * position_store = message_store.
 *
 *   comphost_leases(subscriber_id text, slot int, owner text, generation bigint,
 *                   acquired_at, renewed_at, expires_at timestamptz,
 *                   store_pid int, store_started bigint,
 *                   view_pid int, view_started bigint,
 *                   PRIMARY KEY (subscriber_id, slot))
 *   comphost_lease_members(subscriber_id text, owner text, group_size int,
 *                          joined_at, expires_at timestamptz,
 *                          PRIMARY KEY (subscriber_id, owner))
 *
 * subscriber_id is the subscription's id without the slot (the group); a
 * slot's position is kept under "<subscriber_id>:<slot>". A lease row names
 * its owner (NULL: free), a generation that every claim increments, when it
 * expires (the server's clock only), and the owner's backends on the message
 * store and the view database (pid and start time), so that a host taking
 * over can end them. A member row says that a host is alive and wants its
 * share of the slots.
 *
 * Fencing: chd_lease_check() runs inside the transaction that commits a
 * slot's position (position.h). It takes a share lock on the lease row and
 * finds it still the caller's, generation and all, or answers
 * CHD_STORE_FENCED. A claim updates that row, so it waits for such a
 * transaction to end; and a transaction that checks after a claim sees the
 * new generation. So a position is committed only by the holder of the
 * lease's latest generation.
 *
 * Errors as in store.h: a chd_store_rc, the text in chd_lease_error().
 */
#ifndef CHD_LEASE_H
#define CHD_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "mdb.h"
#include "position.h"
#include "store.h"
#include "viewdb.h"

/* An owner id: "<hostname>:<pid>.<4 hex digits>", unique per worker run. */
#define CHD_LEASE_OWNER_MAX 128

/* What a commit of a slot's position must still hold. Borrowed strings. */
typedef struct chd_lease_fence {
  const char *group;            /* the subscriber id without the slot */
  int64_t slot;
  const char *owner;
  int64_t generation;
} chd_lease_fence;

/* A PostgreSQL backend: its pid and start time (pid 0: none). */
typedef struct chd_lease_backend {
  int pid;
  int64_t started_us;           /* backend_start, microseconds since 1970 */
} chd_lease_backend;

/* One slot's lease as the table holds it. */
typedef struct chd_lease_row {
  int64_t slot;
  int64_t generation;
  char owner[CHD_LEASE_OWNER_MAX];   /* "" when free */
  bool expired;                 /* an owner, and its expiry has passed */
  char acquired_at[48];         /* ISO 8601 UTC, "" when never claimed */
  int64_t held_ms;              /* since the claim; -1 when free */
  int64_t renewed_ms_ago;       /* the lease's age: since the last renewal; -1 */
  int64_t expires_in_ms;        /* negative once expired */
  chd_lease_backend store, view;
} chd_lease_row;

/* The table's database: the message store's or the view database's
 * connection, borrowed (the one of `where`). */
typedef struct chd_lease_store {
  chd_position_where where;
  chd_mdb *mdb;
  chd_viewdb *view;
  char error[1024];
} chd_lease_store;

void chd_lease_store_init(chd_lease_store *ls, chd_position_where where, chd_mdb *mdb,
                          chd_viewdb *view);

/* The text of the last error, "" if none. */
const char *chd_lease_error(const chd_lease_store *ls);

/*
 * Create the tables in the message store when missing, on a connection that
 * may (an owner's or a superuser's: `comphost migrate-store`), and let
 * `role` (the hosts' role; NULL: none) use them. *created says whether they
 * were missing.
 */
chd_store_rc chd_lease_store_create(chd_lease_store *ls, const char *role, bool *created);

/*
 * Make sure the tables exist: created when missing (in the view database,
 * under the migration lock). In the message store, the host's role usually
 * may not create tables: then CHD_STORE_ERROR says to run `comphost
 * migrate-store`.
 */
chd_store_rc chd_lease_prepare(chd_lease_store *ls);

/*
 * Join group `group` of `size` slots as `owner`: the slot rows exist, the
 * member row says so until lease_ms from now, and members gone for long are
 * deleted. CHD_STORE_INVALID when a live member runs the group with another
 * size (the message says which).
 */
chd_store_rc chd_lease_join(chd_lease_store *ls, const char *group, int64_t size,
                            const char *owner, int64_t lease_ms);

/*
 * The heartbeat: the member row and the leases of slots[i] at gens[i]
 * (n of them) last lease_ms more, and name `store` and `view` as the
 * owner's backends. held[i] says whether slot i is still the owner's at
 * that generation. *members is the number of live members, *rank the
 * owner's place among them ordered by id (from 0).
 */
chd_store_rc chd_lease_renew(chd_lease_store *ls, const char *group, int64_t size,
                             const char *owner, int64_t lease_ms,
                             const chd_lease_backend *store, const chd_lease_backend *view,
                             const int64_t *slots, const int64_t *gens, size_t n, bool *held,
                             int64_t *members, int64_t *rank);

/*
 * The slots below `size` that may be claimed: free ones first, then those
 * whose owner let them expire, each in slot order. *rows is malloc'd
 * (caller frees), *n rows.
 */
chd_store_rc chd_lease_claimable(chd_lease_store *ls, const char *group, int64_t size,
                                 chd_lease_row **rows, size_t *n);

/*
 * Claim slot `slot`, seen free or expired at generation `seen`. *got is
 * false when someone else was quicker (or the row is locked for long);
 * else *generation is the new one. Waits up to CHD_LEASE_LOCK_MS for a row
 * lock.
 */
#define CHD_LEASE_LOCK_MS 3000
chd_store_rc chd_lease_claim(chd_lease_store *ls, const char *group, int64_t slot,
                             int64_t seen, const char *owner, int64_t lease_ms,
                             const chd_lease_backend *store, const chd_lease_backend *view,
                             bool *got, int64_t *generation);

/* Give slot `slot` up (it is free at once), if still the owner's at `generation`. */
chd_store_rc chd_lease_release(chd_lease_store *ls, const char *group, int64_t slot,
                               const char *owner, int64_t generation);

/* Leave the group: the member row goes (release the slots first). */
chd_store_rc chd_lease_leave(chd_lease_store *ls, const char *group, const char *owner);

/*
 * Every lease row of `group` below `size` (malloc'd, caller frees), and the
 * live members. A database without the table reads as no rows.
 */
chd_store_rc chd_lease_list(chd_lease_store *ls, const char *group, int64_t size,
                            chd_lease_row **rows, size_t *n, int64_t *members);

/*
 * Fencing, inside the caller's open transaction on `conn` (the database of
 * the leases): CHD_STORE_OK when slot f->slot is still f->owner's at
 * f->generation (the row stays share-locked until the transaction ends),
 * CHD_STORE_FENCED when not; the text of any failure in err.
 */
chd_store_rc chd_lease_check(PGconn *conn, const chd_lease_fence *f, char *err, size_t size);

/*
 * The statement every session of a slots' holder runs first: the server
 * ends a session left idle inside a transaction for longer than lease_ms. A
 * holder stopped in the middle of a batch (SIGSTOP, a stall) leaves its
 * transaction open, holding row locks that block the other hosts' batches,
 * and with them the loops that would take its slots over: so the server
 * itself rolls it back.
 */
void chd_lease_session_sql(int64_t lease_ms, char *buf, size_t size);

/* One of the two connections a lease store was given. */
typedef enum chd_lease_on {
  CHD_LEASE_ON_STORE = 0,       /* the message store's (mdb) */
  CHD_LEASE_ON_VIEW = 1         /* the view database's (view) */
} chd_lease_on;

/*
 * The backend behind connection `on` (its pid and start time) into *be,
 * looked up again only when its pid is no longer be->pid (a new session).
 * pid 0 when that connection is not there or not connected, or the lookup
 * failed.
 */
void chd_lease_own_backend(chd_lease_store *ls, chd_lease_on on, chd_lease_backend *be);

/*
 * End backend `be` of the server behind connection `on` with
 * pg_terminate_backend(), if it still runs (same pid and start time): its
 * transaction rolls back and its locks go. *ended says whether one was
 * ended. Needs the role of that backend (any role may end its own role's
 * backends), or membership in pg_signal_backend (not for a superuser's
 * backends, which only a superuser may end).
 */
chd_store_rc chd_lease_terminate(chd_lease_store *ls, chd_lease_on on,
                                 const chd_lease_backend *be, bool *ended);

#endif /* CHD_LEASE_H */
