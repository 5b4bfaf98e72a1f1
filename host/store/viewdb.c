/* viewdb.c - the view database: connection, transactions, migrations. */
#include "viewdb.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "mdb.h"

/* One line from a libpq message. */
static void one_line(char *s)
{
  size_t n = strlen(s);

  while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' '))
    s[--n] = '\0';
  for (; *s; s++)
    if (*s == '\n')
      *s = ' ';
}

static void describe(const char *url, char *buf, size_t size)
{
  PQconninfoOption *opts = PQconninfoParse(url, NULL);
  const char *host = "localhost", *port = "5432", *db = "?";

  if (opts) {
    for (PQconninfoOption *o = opts; o->keyword; o++) {
      if (!o->val || !*o->val)
        continue;
      if (!strcmp(o->keyword, "host"))
        host = o->val;
      else if (!strcmp(o->keyword, "port"))
        port = o->val;
      else if (!strcmp(o->keyword, "dbname"))
        db = o->val;
    }
  }
  snprintf(buf, size, "%s:%s/%s", host, port, db);
  PQconninfoFree(opts);
}

PGconn *chd_viewdb_connect(const char *url, char *err, size_t errlen)
{
  const char *keys[] = { "connect_timeout", "fallback_application_name", "dbname", NULL };
  const char *vals[] = { "10", "comphost", url, NULL };
  char *perr = NULL, where[256];
  PQconninfoOption *opts = PQconninfoParse(url, &perr);
  PGconn *conn;

  if (!opts) {
    snprintf(err, errlen, "invalid view database connection string: %s",
             perr ? perr : "out of memory");
    PQfreemem(perr);
    one_line(err);
    return NULL;
  }
  PQconninfoFree(opts);
  describe(url, where, sizeof where);
  conn = PQconnectdbParams(keys, vals, 1);
  if (!conn || PQstatus(conn) != CONNECTION_OK) {
    snprintf(err, errlen, "cannot connect to view database at %s: %s", where,
             conn ? PQerrorMessage(conn) : "out of memory");
    one_line(err);
    PQfinish(conn);
    return NULL;
  }
  PQsetNoticeProcessor(conn, chd_log_pq_notice, NULL);
  return conn;
}

int chd_viewdb_ensure(PGconn **conn, const char *url, const volatile sig_atomic_t *stop,
                      char *err, size_t errlen)
{
  int delay = 100;

  bool was_connected = *conn != NULL;

  if (*conn && PQstatus(*conn) == CONNECTION_OK)
    return 0;
  PQfinish(*conn);
  *conn = NULL;
  for (;;) {
    PQconninfoOption *opts = PQconninfoParse(url, NULL);

    if (!opts) {
      chd_viewdb_connect(url, err, errlen);     /* for its message */
      return -2;
    }
    PQconninfoFree(opts);
    *conn = chd_viewdb_connect(url, err, errlen);
    if (*conn) {
      if (was_connected)
        chd_log_info("reconnected to the view database");
      return 0;
    }
    if (chd_pq_refused_for_good(err))
      return -2;
    chd_log_warn("%s; retrying in %d ms", err, delay);
    for (int slept = 0; slept < delay; slept += 50) {
      struct timespec ts = { 0, 50 * 1000000L };
      if (stop && *stop)
        return -1;
      while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
    }
    delay = delay * 2 > 5000 ? 5000 : delay * 2;
  }
}

int chd_viewdb_exec(PGconn *conn, const char *sql, char *err, size_t errlen)
{
  PGresult *res = PQexec(conn, sql);
  int rc = 0;

  if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
    if (err && errlen) {
      snprintf(err, errlen, "%s", PQresultErrorMessage(res));
      one_line(err);
    }
    rc = -1;
  }
  PQclear(res);
  return rc;
}

int chd_viewdb_commit(PGconn *conn, char *err, size_t errlen)
{
  PGresult *res = PQexec(conn, "COMMIT");
  int rc = 0;

  if (PQresultStatus(res) != PGRES_COMMAND_OK) {
    snprintf(err, errlen, "commit failed: %s", PQresultErrorMessage(res));
    one_line(err);
    rc = -1;
  } else if (strcmp(PQcmdStatus(res), "COMMIT") != 0) {
    /* a statement of the transaction failed: PostgreSQL rolled it back */
    snprintf(err, errlen, "the transaction was rolled back (a statement in it failed)");
    rc = -1;
  }
  PQclear(res);
  return rc;
}

static const char host_tables[] =
  "CREATE TABLE IF NOT EXISTS comphost_migrations ("
  " plugin text NOT NULL, id text NOT NULL,"
  " applied_at timestamptz NOT NULL DEFAULT now(),"
  " PRIMARY KEY (plugin, id));"
  "CREATE TABLE IF NOT EXISTS comphost_positions ("
  " subscriber_id text PRIMARY KEY, position bigint NOT NULL,"
  " updated_at timestamptz NOT NULL DEFAULT now(),"
  " stopped_at bigint, stop_reason text)";

/* Serialises migrations of every instance against one view database. */
#define MIGRATION_LOCK "SELECT pg_advisory_lock(7236385425871958016)"
#define MIGRATION_UNLOCK "SELECT pg_advisory_unlock(7236385425871958016)"

static int applied(PGconn *conn, const char *plugin, const char *id, int *out,
                   char *err, size_t errlen)
{
  const char *params[2] = { plugin, id };
  PGresult *res = PQexecParams(conn,
                               "SELECT 1 FROM comphost_migrations WHERE plugin = $1 AND id = $2",
                               2, NULL, params, NULL, NULL, 0);
  int rc = 0;

  if (PQresultStatus(res) != PGRES_TUPLES_OK) {
    snprintf(err, errlen, "cannot read comphost_migrations: %s", PQresultErrorMessage(res));
    one_line(err);
    rc = -1;
  } else {
    *out = PQntuples(res) > 0;
  }
  PQclear(res);
  return rc;
}

static int apply_one(PGconn *conn, const char *plugin, const ch_migration *m,
                     char *err, size_t errlen)
{
  const char *params[2] = { plugin, m->id };
  char why[1024];
  PGresult *res;

  if (chd_viewdb_exec(conn, "BEGIN", why, sizeof why) != 0)
    goto failed;
  if (chd_viewdb_exec(conn, m->sql, why, sizeof why) != 0) {
    chd_viewdb_exec(conn, "ROLLBACK", NULL, 0);
    goto failed;
  }
  res = PQexecParams(conn, "INSERT INTO comphost_migrations (plugin, id) VALUES ($1, $2)",
                     2, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(res) != PGRES_COMMAND_OK) {
    snprintf(why, sizeof why, "%s", PQresultErrorMessage(res));
    one_line(why);
    PQclear(res);
    chd_viewdb_exec(conn, "ROLLBACK", NULL, 0);
    goto failed;
  }
  PQclear(res);
  if (chd_viewdb_commit(conn, why, sizeof why) != 0)
    goto failed;
  chd_log_info("applied migration %s of plugin %s", m->id, plugin);
  return 0;

failed:
  snprintf(err, errlen, "migration %s of plugin %s failed: %s", m->id, plugin, why);
  return -1;
}

int chd_viewdb_migrate(PGconn *conn, const char *plugin_name,
                       const ch_migration *migrations, char *err, size_t errlen)
{
  char why[1024];
  int rc = 0;

  if (chd_viewdb_exec(conn, MIGRATION_LOCK, why, sizeof why) != 0) {
    snprintf(err, errlen, "cannot lock the view database for migrations: %s", why);
    return -1;
  }
  if (chd_viewdb_exec(conn, host_tables, why, sizeof why) != 0) {
    snprintf(err, errlen, "cannot create the host's tables in the view database: %s", why);
    rc = -1;
  }
  for (const ch_migration *m = migrations; rc == 0 && m && m->id; m++) {
    int done = 0;
    rc = applied(conn, plugin_name, m->id, &done, err, errlen);
    if (rc == 0 && !done)
      rc = apply_one(conn, plugin_name, m, err, errlen);
  }
  chd_viewdb_exec(conn, MIGRATION_UNLOCK, why, sizeof why);
  return rc;
}
