/* viewdb.c - the view database: connection, transactions, migrations. */
#include "viewdb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pq.h"

struct chd_viewdb {
  chd_pq pq;
  unsigned connects;            /* successful connections so far */
  char *session_sql;            /* run on every new session, or NULL */
};

/* Serialises migrations of every instance against one view database. */
#define MIGRATION_LOCK "SELECT pg_advisory_lock(7236385425871958016)"
#define MIGRATION_UNLOCK "SELECT pg_advisory_unlock(7236385425871958016)"

chd_viewdb *chd_viewdb_new(const char *url)
{
  chd_viewdb *v = calloc(1, sizeof *v);

  if (!v)
    return NULL;
  if (chd_pq_init(&v->pq, url, "view database") != 0) {
    free(v);
    return NULL;
  }
  return v;
}

void chd_viewdb_free(chd_viewdb *v)
{
  if (!v)
    return;
  chd_pq_release(&v->pq);
  free(v->session_sql);
  free(v);
}

void chd_viewdb_set_interrupt(chd_viewdb *v, const volatile sig_atomic_t *flag)
{
  v->pq.interrupt = flag;
}

void chd_viewdb_set_app_name(chd_viewdb *v, const char *name)
{
  chd_pq_set_app_name(&v->pq, name);
}

int chd_viewdb_set_session_sql(chd_viewdb *v, const char *sql)
{
  char *copy = sql ? strdup(sql) : NULL;

  if (sql && !copy)
    return -1;
  free(v->session_sql);
  v->session_sql = copy;
  return 0;
}

chd_store_rc chd_viewdb_connect(chd_viewdb *v)
{
  chd_store_rc rc = chd_pq_connect(&v->pq);

  if (rc == CHD_STORE_OK && v->session_sql) {
    rc = chd_pq_exec(&v->pq, v->session_sql);
    if (rc != CHD_STORE_OK) {
      chd_pq_prefix(&v->pq, rc, "cannot set up the session");
      chd_pq_disconnect(&v->pq);
    }
  }
  if (rc == CHD_STORE_OK)
    v->connects++;
  return rc;
}

unsigned chd_viewdb_connects(const chd_viewdb *v)
{
  return v->connects;
}

static chd_store_rc connect_cb(void *arg)
{
  return chd_viewdb_connect(arg);
}

chd_store_rc chd_viewdb_ensure(chd_viewdb *v)
{
  bool was_connected = v->pq.conn != NULL;
  chd_store_rc rc;

  if (!chd_pq_broken(&v->pq))
    return CHD_STORE_OK;
  rc = chd_pq_reconnect(&v->pq, -1, true, connect_cb, v);
  if (rc == CHD_STORE_OK && was_connected)
    chd_log_info("reconnected to the view database");
  return rc;
}

PGconn *chd_viewdb_conn(chd_viewdb *v)
{
  return v->pq.conn;
}

bool chd_viewdb_broken(const chd_viewdb *v)
{
  return chd_pq_broken(&v->pq);
}

const char *chd_viewdb_error(const chd_viewdb *v)
{
  return v->pq.error;
}

chd_store_rc chd_viewdb_exec(chd_viewdb *v, const char *sql)
{
  return chd_pq_exec(&v->pq, sql);
}

chd_store_rc chd_viewdb_commit(chd_viewdb *v)
{
  return chd_pq_commit(&v->pq);
}

chd_store_rc chd_viewdb_then_commit(chd_viewdb *v, const char *sql, int n,
                                    const char *const *params, const char *doing)
{
  PGresult *res;
  chd_store_rc rc = chd_pq_then_commit(&v->pq, sql, NULL, n, params, doing, &res);

  PQclear(res);
  return rc;
}

chd_store_rc chd_viewdb_exec_locked(chd_viewdb *v, const char *sql)
{
  chd_store_rc rc = chd_pq_exec(&v->pq, MIGRATION_LOCK);

  if (rc != CHD_STORE_OK)
    return rc;
  rc = chd_pq_exec(&v->pq, sql);
  if (rc != CHD_STORE_OK) {
    char why[sizeof v->pq.error];
    snprintf(why, sizeof why, "%s", v->pq.error);
    chd_pq_exec(&v->pq, MIGRATION_UNLOCK);
    return chd_pq_fail(&v->pq, rc, "%s", why);
  }
  return chd_pq_exec(&v->pq, MIGRATION_UNLOCK);
}

static const char migrations_table[] =
  "CREATE TABLE IF NOT EXISTS comphost_migrations ("
  " plugin text NOT NULL, id text NOT NULL,"
  " applied_at timestamptz NOT NULL DEFAULT now(),"
  " PRIMARY KEY (plugin, id))";

static chd_store_rc applied(chd_viewdb *v, const char *plugin, const char *id, bool *out)
{
  const char *params[2] = { plugin, id };
  PGresult *res = PQexecParams(v->pq.conn,
                               "SELECT 1 FROM comphost_migrations WHERE plugin = $1 AND id = $2",
                               2, NULL, params, NULL, NULL, 0);
  chd_store_rc rc = CHD_STORE_OK;

  if (PQresultStatus(res) != PGRES_TUPLES_OK)
    rc = chd_pq_result_error(&v->pq, res, "reading comphost_migrations");
  else
    *out = PQntuples(res) > 0;
  PQclear(res);
  return rc;
}

static chd_store_rc apply_one(chd_viewdb *v, const char *plugin, const ch_migration *m)
{
  const char *params[2] = { plugin, m->id };
  chd_store_rc rc = chd_pq_exec(&v->pq, "BEGIN");
  PGresult *res;

  if (rc == CHD_STORE_OK)
    rc = chd_pq_exec(&v->pq, m->sql);
  if (rc == CHD_STORE_OK) {
    res = PQexecParams(v->pq.conn, "INSERT INTO comphost_migrations (plugin, id) VALUES ($1, $2)",
                       2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
      rc = chd_pq_result_error(&v->pq, res, "recording the migration");
    PQclear(res);
  }
  if (rc == CHD_STORE_OK)
    rc = chd_pq_commit(&v->pq);
  if (rc != CHD_STORE_OK) {
    char what[600];
    PQclear(PQexec(v->pq.conn, "ROLLBACK"));
    snprintf(what, sizeof what, "migration %s of plugin %s failed", m->id, plugin);
    return chd_pq_prefix(&v->pq, rc, what);
  }
  chd_log_info("applied migration %s of plugin %s", m->id, plugin);
  return CHD_STORE_OK;
}

chd_store_rc chd_viewdb_migrate(chd_viewdb *v, const char *plugin_name,
                                const ch_migration *migrations)
{
  chd_store_rc rc = chd_pq_exec(&v->pq, MIGRATION_LOCK);

  if (rc != CHD_STORE_OK)
    return chd_pq_prefix(&v->pq, rc, "cannot lock the view database for migrations");
  rc = chd_pq_exec(&v->pq, migrations_table);
  if (rc != CHD_STORE_OK)
    chd_pq_prefix(&v->pq, rc, "cannot create the host's tables in the view database");
  for (const ch_migration *m = migrations; rc == CHD_STORE_OK && m && m->id; m++) {
    bool done = false;
    rc = applied(v, plugin_name, m->id, &done);
    if (rc == CHD_STORE_OK && !done)
      rc = apply_one(v, plugin_name, m);
  }
  if (rc != CHD_STORE_OK) {
    char why[sizeof v->pq.error];
    snprintf(why, sizeof why, "%s", v->pq.error);
    PQclear(PQexec(v->pq.conn, MIGRATION_UNLOCK));
    return chd_pq_fail(&v->pq, rc, "%s", why);
  }
  return chd_pq_exec(&v->pq, MIGRATION_UNLOCK);
}
