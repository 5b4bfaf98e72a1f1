/*
 * viewdb.h - the view database: connection, transactions, migrations.
 *
 * The view database holds what aggregators project (the book's View Data)
 * and, for instances with position_store = view_data, the host's position
 * table:
 *
 *   comphost_positions(subscriber_id text PRIMARY KEY, position bigint,
 *                      updated_at timestamptz, stopped_at bigint, stop_reason text)
 *   comphost_migrations(plugin text, id text, applied_at timestamptz,
 *                       PRIMARY KEY (plugin, id))
 */
#ifndef CHD_VIEWDB_H
#define CHD_VIEWDB_H

#include <signal.h>
#include <stddef.h>

#include <libpq-fe.h>

#include <comphost/plugin.h>

/*
 * Connect to `url`. Returns the connection, or NULL with a message in err
 * ("cannot connect to view database at HOST:PORT/DB: ...").
 */
PGconn *chd_viewdb_connect(const char *url, char *err, size_t errlen);

/*
 * Make sure *conn is usable: when it is broken, reconnect, waiting with
 * backoff (100 ms doubling to 5 s) until it works or *stop becomes non-zero.
 * Returns 0 when connected, -1 when stopped, -2 when asking again cannot
 * help (a connection string that does not parse, a refused login, a
 * database that does not exist), with the reason in err.
 */
int chd_viewdb_ensure(PGconn **conn, const char *url, const volatile sig_atomic_t *stop,
                      char *err, size_t errlen);

/* Run a statement with no result rows. Returns 0, or -1 with the server's
 * message in err. */
int chd_viewdb_exec(PGconn *conn, const char *sql, char *err, size_t errlen);

/*
 * COMMIT. Returns 0 when the transaction committed, -1 when it did not (an
 * error, or a transaction that a failed statement had aborted: PostgreSQL
 * then rolls back).
 */
int chd_viewdb_commit(PGconn *conn, char *err, size_t errlen);

/*
 * Create the host's own tables, then apply the plugin's migrations that are
 * not yet recorded for plugin_name, each in a transaction with its record,
 * under an advisory lock so that instances starting together apply each once.
 * Returns 0, or -1 with "migration ID of plugin NAME failed: ..." in err.
 */
int chd_viewdb_migrate(PGconn *conn, const char *plugin_name,
                       const ch_migration *migrations, char *err, size_t errlen);

#endif /* CHD_VIEWDB_H */
