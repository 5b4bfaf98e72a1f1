/*
 * viewdb.h - the view database: connection, transactions, migrations.
 *
 * The view database holds what aggregators project (the book's View Data),
 * the record of applied migrations,
 *
 *   comphost_migrations(plugin text, id text, applied_at timestamptz,
 *                       PRIMARY KEY (plugin, id))
 *
 * and, for instances with position_store = view_data, the position table
 * (position.h). One chd_viewdb is one libpq connection, reconnected with
 * backoff when it breaks; plugins get its PGconn through view_db(). Errors
 * as in store.h: a chd_store_rc, and the text in chd_viewdb_error().
 */
#ifndef CHD_VIEWDB_H
#define CHD_VIEWDB_H

#include <signal.h>
#include <stdbool.h>

#include <libpq-fe.h>

#include <comphost/plugin.h>

#include "store.h"

typedef struct chd_viewdb chd_viewdb;

/* A client for `url` (copied), not connected. NULL when out of memory or
 * url is NULL. */
chd_viewdb *chd_viewdb_new(const char *url);

/* Close the connection and free the client. NULL is allowed. */
void chd_viewdb_free(chd_viewdb *v);

/* A flag that, once non-zero, stops chd_viewdb_ensure() (a signal flag). */
void chd_viewdb_set_interrupt(chd_viewdb *v, const volatile sig_atomic_t *flag);

/* The application_name of the next sessions, unless the connection string
 * names one ("comphost" by default). */
void chd_viewdb_set_app_name(chd_viewdb *v, const char *name);

/* SQL run on every new session (copied; NULL: none), as
 * chd_mdb_set_session_sql(). Returns 0, or -1 when out of memory. */
int chd_viewdb_set_session_sql(chd_viewdb *v, const char *sql);

/*
 * Connect once. CHD_STORE_OK; CHD_STORE_DISCONNECTED when no server answers
 * (yet); CHD_STORE_ERROR or CHD_STORE_INVALID when asking again cannot help
 * (a connection string that does not parse, a refused login, a database
 * that does not exist). The error reads "cannot connect to view database at
 * HOST:PORT/DB: ...".
 */
chd_store_rc chd_viewdb_connect(chd_viewdb *v);

/*
 * Make sure the connection is usable: when there is none or it is broken,
 * connect, waiting with backoff (100 ms doubling to 5 s, each wait logged)
 * until it works; after a lost connection, logs that it is back. Returns as
 * chd_viewdb_connect(), but never CHD_STORE_DISCONNECTED: it goes on until
 * connected or the interrupt flag is set (CHD_STORE_INTERRUPTED).
 */
chd_store_rc chd_viewdb_ensure(chd_viewdb *v);

/* The connection (NULL when not connected), and whether it is broken. */
PGconn *chd_viewdb_conn(chd_viewdb *v);
bool chd_viewdb_broken(const chd_viewdb *v);

/* How many times the client connected. A change tells that the session was
 * replaced since: whatever it had in flight, and whatever the server had
 * acknowledged without writing it to disk (an asynchronous commit before a
 * crash), may be lost. */
unsigned chd_viewdb_connects(const chd_viewdb *v);

/* The text of the last error, "" if none. */
const char *chd_viewdb_error(const chd_viewdb *v);

/* Run a statement without result rows that matter. */
chd_store_rc chd_viewdb_exec(chd_viewdb *v, const char *sql);

/* Run `sql` with n text parameters and then COMMIT the open transaction, in
 * one round trip (chd_pq_then_commit()); `doing` names the statement in the
 * error. On failure the transaction is aborted or rolled back. */
chd_store_rc chd_viewdb_then_commit(chd_viewdb *v, const char *sql, int n,
                                    const char *const *params, const char *doing);

/* Run `sql` under the lock that serialises migrations of every instance
 * against one view database (for the host's own tables). */
chd_store_rc chd_viewdb_exec_locked(chd_viewdb *v, const char *sql);

/* COMMIT; CHD_STORE_ERROR also when a failed statement had aborted the
 * transaction (PostgreSQL then rolls back). */
chd_store_rc chd_viewdb_commit(chd_viewdb *v);

/*
 * Create comphost_migrations, then apply the plugin's migrations that are
 * not yet recorded for plugin_name, each in a transaction with its record,
 * under the migration lock, so that instances starting together apply each
 * once. The error reads "migration ID of plugin NAME failed: ...".
 */
chd_store_rc chd_viewdb_migrate(chd_viewdb *v, const char *plugin_name,
                                const ch_migration *migrations);

#endif /* CHD_VIEWDB_H */
