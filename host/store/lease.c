/* lease.c - who owns which slot of a consumer group: leases in PostgreSQL. */
#include "lease.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pq.h"

/* The tables; %s is the schema ("public." in the message store, whose
 * sessions search message_store first; "" in the view database). */
#define LEASES_TABLE(schema)                                                   \
  "CREATE TABLE IF NOT EXISTS " schema "comphost_leases ("                    \
  " subscriber_id text NOT NULL, slot int NOT NULL, owner text,"              \
  " generation bigint NOT NULL DEFAULT 0,"                                    \
  " acquired_at timestamptz, renewed_at timestamptz,"                         \
  " expires_at timestamptz NOT NULL DEFAULT '-infinity',"                     \
  " store_pid int, store_started bigint, view_pid int, view_started bigint,"  \
  " PRIMARY KEY (subscriber_id, slot))"
#define MEMBERS_TABLE(schema)                                                  \
  "CREATE TABLE IF NOT EXISTS " schema "comphost_lease_members ("             \
  " subscriber_id text NOT NULL, owner text NOT NULL, group_size int NOT NULL," \
  " joined_at timestamptz NOT NULL DEFAULT now(), expires_at timestamptz NOT NULL," \
  " PRIMARY KEY (subscriber_id, owner))"

static const char *const store_ddl[] = {
  LEASES_TABLE("public."),
  MEMBERS_TABLE("public."),
  NULL,
};

#define MS(param) "now() + " param "::bigint * interval '1 millisecond'"

#define MEMBER_UPSERT                                                          \
  "INSERT INTO comphost_lease_members (subscriber_id, owner, group_size, expires_at)" \
  " VALUES ($1, $2, $3::int, " MS("$4") ")"                                   \
  " ON CONFLICT (subscriber_id, owner) DO UPDATE"                             \
  " SET group_size = EXCLUDED.group_size, expires_at = EXCLUDED.expires_at"

/* The owner's backends, parameters $a..$a+3. */
#define BACKENDS(a, b, c, d)                                                   \
  "store_pid = nullif(" a "::int, 0), store_started = nullif(" b "::bigint, 0)," \
  " view_pid = nullif(" c "::int, 0), view_started = nullif(" d "::bigint, 0)"

#define BACKEND_START_US "(extract(epoch FROM backend_start) * 1000000)::bigint"

void chd_lease_store_init(chd_lease_store *ls, chd_position_where where, chd_mdb *mdb,
                          chd_viewdb *view)
{
  memset(ls, 0, sizeof *ls);
  ls->where = where;
  ls->mdb = mdb;
  ls->view = view;
}

const char *chd_lease_error(const chd_lease_store *ls)
{
  return ls->error;
}

static chd_store_rc fail(chd_lease_store *ls, chd_store_rc rc, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));

static chd_store_rc fail(chd_lease_store *ls, chd_store_rc rc, const char *fmt, ...)
{
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(ls->error, sizeof ls->error, fmt, ap);
  va_end(ap);
  chd_pq_one_line(ls->error);
  return rc;
}

static PGconn *conn_of(chd_lease_store *ls)
{
  if (ls->where == CHD_POSITION_VIEW_DATA)
    return ls->view ? chd_viewdb_conn(ls->view) : NULL;
  return ls->mdb ? chd_mdb_conn(ls->mdb) : NULL;
}

static bool has_state(const PGresult *res, const char *state)
{
  const char *s = PQresultErrorField(res, PG_DIAG_SQLSTATE);

  return s && !strcmp(s, state);
}

/*
 * Run `sql` with text parameters on `conn`; rows or a command expected. On
 * failure the result is cleared, *out is NULL and the text goes to err.
 */
static chd_store_rc run_on(PGconn *conn, const char *sql, int n, const char *const *params,
                           const char *doing, PGresult **out, char *err, size_t size)
{
  PGresult *res;
  chd_store_rc rc;

  *out = NULL;
  if (!conn || PQstatus(conn) != CONNECTION_OK) {
    snprintf(err, size, "%s: no connection", doing);
    return CHD_STORE_DISCONNECTED;
  }
  res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(res) == PGRES_TUPLES_OK || PQresultStatus(res) == PGRES_COMMAND_OK) {
    *out = res;
    return CHD_STORE_OK;
  }
  rc = PQstatus(conn) == CONNECTION_BAD ? CHD_STORE_DISCONNECTED : CHD_STORE_ERROR;
  snprintf(err, size, "%s: %s", doing, PQresultErrorMessage(res));
  chd_pq_one_line(err);
  if (has_state(res, "55P03"))      /* lock_not_available: lock_timeout */
    rc = CHD_STORE_CONFLICT;
  PQclear(res);
  return rc;
}

static chd_store_rc run(chd_lease_store *ls, const char *sql, int n, const char *const *params,
                        const char *doing, PGresult **out)
{
  return run_on(conn_of(ls), sql, n, params, doing, out, ls->error, sizeof ls->error);
}

/* A statement whose rows do not matter. */
static chd_store_rc exec(chd_lease_store *ls, const char *sql, int n, const char *const *params,
                         const char *doing)
{
  PGresult *res;
  chd_store_rc rc = run(ls, sql, n, params, doing, &res);

  PQclear(res);
  return rc;
}

/* BEGIN with a bound on row-lock waits. */
static chd_store_rc begin(chd_lease_store *ls)
{
  char sql[96];
  chd_store_rc rc = exec(ls, "BEGIN", 0, NULL, "beginning a lease transaction");

  if (rc != CHD_STORE_OK)
    return rc;
  snprintf(sql, sizeof sql, "SET LOCAL lock_timeout = %d", CHD_LEASE_LOCK_MS);
  rc = exec(ls, sql, 0, NULL, "setting lock_timeout");
  if (rc != CHD_STORE_OK)
    exec(ls, "ROLLBACK", 0, NULL, "rolling back");
  return rc;
}

/* COMMIT when rc is OK, else ROLLBACK (the error of rc kept). */
static chd_store_rc end(chd_lease_store *ls, chd_store_rc rc)
{
  char why[sizeof ls->error];

  if (rc == CHD_STORE_OK)
    return exec(ls, "COMMIT", 0, NULL, "committing a lease transaction");
  snprintf(why, sizeof why, "%s", ls->error);
  if (PQstatus(conn_of(ls)) == CONNECTION_OK)
    exec(ls, "ROLLBACK", 0, NULL, "rolling back");
  snprintf(ls->error, sizeof ls->error, "%s", why);
  return rc;
}

static int64_t int_at(const PGresult *res, int row, int col)
{
  int64_t v = 0;

  if (!PQgetisnull(res, row, col))
    sscanf(PQgetvalue(res, row, col), "%" SCNd64, &v);
  return v;
}

static void text_at(const PGresult *res, int row, int col, char *buf, size_t size)
{
  snprintf(buf, size, "%s", PQgetisnull(res, row, col) ? "" : PQgetvalue(res, row, col));
}

chd_store_rc chd_lease_prepare(chd_lease_store *ls)
{
  PGresult *res;
  chd_store_rc rc;
  bool present;

  if (ls->where == CHD_POSITION_VIEW_DATA) {
    if (!ls->view)
      return fail(ls, CHD_STORE_INVALID, "leases with position_store = view_data need a view"
                  " database");
    if (chd_viewdb_exec_locked(ls->view, LEASES_TABLE("")) != CHD_STORE_OK ||
        chd_viewdb_exec_locked(ls->view, MEMBERS_TABLE("")) != CHD_STORE_OK)
      return fail(ls, CHD_STORE_ERROR, "cannot create the lease tables in the view database: %s",
                  chd_viewdb_error(ls->view));
    return CHD_STORE_OK;
  }
  rc = run(ls, "SELECT to_regclass('public.comphost_leases') IS NOT NULL"
           " AND to_regclass('public.comphost_lease_members') IS NOT NULL", 0, NULL,
           "looking for the lease tables", &res);
  if (rc != CHD_STORE_OK)
    return rc;
  present = !strcmp(PQgetvalue(res, 0, 0), "t");
  PQclear(res);
  if (present)
    return CHD_STORE_OK;
  for (size_t i = 0; store_ddl[i]; i++) {
    rc = exec(ls, store_ddl[i], 0, NULL, "creating the lease tables");
    if (rc == CHD_STORE_ERROR)
      return fail(ls, rc, "the message store has no lease tables and this role cannot create"
                  " them (%s): run `comphost migrate-store -c FILE --admin-url URL` once",
                  ls->error);
    if (rc != CHD_STORE_OK)
      return rc;
  }
  return CHD_STORE_OK;
}

chd_store_rc chd_lease_store_create(chd_lease_store *ls, const char *role, bool *created)
{
  PGconn *conn = conn_of(ls);
  PGresult *res;
  chd_store_rc rc;
  char *quoted, sql[512];

  *created = false;
  rc = run(ls, "SELECT to_regclass('public.comphost_leases') IS NOT NULL"
           " AND to_regclass('public.comphost_lease_members') IS NOT NULL", 0, NULL,
           "looking for the lease tables", &res);
  if (rc != CHD_STORE_OK)
    return rc;
  *created = strcmp(PQgetvalue(res, 0, 0), "t") != 0;
  PQclear(res);
  for (size_t i = 0; *created && store_ddl[i]; i++)
    if ((rc = exec(ls, store_ddl[i], 0, NULL, "creating the lease tables")) != CHD_STORE_OK)
      return rc;
  if (!role || !*role)
    return CHD_STORE_OK;
  quoted = PQescapeIdentifier(conn, role, strlen(role));
  if (!quoted)
    return fail(ls, CHD_STORE_ERROR, "cannot quote role '%s'", role);
  snprintf(sql, sizeof sql, "GRANT SELECT, INSERT, UPDATE, DELETE ON public.comphost_leases,"
           " public.comphost_lease_members TO %s", quoted);
  PQfreemem(quoted);
  return exec(ls, sql, 0, NULL, "granting the lease tables");
}

chd_store_rc chd_lease_join(chd_lease_store *ls, const char *group, int64_t size,
                            const char *owner, int64_t lease_ms)
{
  char n[24], ms[24];
  const char *params[4] = { group, owner, n, ms };
  const char *rows[2] = { group, n };
  PGresult *res;
  chd_store_rc rc;

  snprintf(n, sizeof n, "%" PRId64, size);
  snprintf(ms, sizeof ms, "%" PRId64, lease_ms);
  rc = exec(ls, "INSERT INTO comphost_leases (subscriber_id, slot)"
            " SELECT $1, s FROM generate_series(0, $2::int - 1) AS s ON CONFLICT DO NOTHING",
            2, rows, "creating the slots' lease rows");
  if (rc != CHD_STORE_OK)
    return rc;
  rc = run(ls, "SELECT group_size, owner FROM comphost_lease_members WHERE subscriber_id = $1"
           " AND owner <> $2 AND expires_at > now() AND group_size <> $3::int LIMIT 1",
           3, params, "reading the group's members", &res);
  if (rc != CHD_STORE_OK)
    return rc;
  if (PQntuples(res) > 0) {
    rc = fail(ls, CHD_STORE_INVALID, "host %s runs %s with group_size = %s, this one with"
              " %" PRId64 ": stop every host of the group to change its size",
              PQgetvalue(res, 0, 1), group, PQgetvalue(res, 0, 0), size);
    PQclear(res);
    return rc;
  }
  PQclear(res);
  rc = exec(ls, "DELETE FROM comphost_lease_members WHERE subscriber_id = $1"
            " AND expires_at < now() - interval '1 day'", 1, params,
            "deleting members gone for a day");
  if (rc != CHD_STORE_OK)
    return rc;
  return exec(ls, MEMBER_UPSERT, 4, params, "joining the group");
}

/* "{1,2,3}" of n values (caller frees). */
static char *array_of(const int64_t *v, size_t n)
{
  size_t cap = n * 21 + 3, len = 0;
  char *s = malloc(cap);

  if (!s)
    return NULL;
  s[len++] = '{';
  for (size_t i = 0; i < n; i++)
    len += (size_t)snprintf(s + len, cap - len, "%s%" PRId64, i ? "," : "", v[i]);
  snprintf(s + len, cap - len, "}");
  return s;
}

/* The text parameters that name a holder's sessions (BACKENDS): pid and
 * start of the message-store and of the view session, 0 for none. */
struct backend_text {
  char spid[16], sstart[24], vpid[16], vstart[24];
};

static void backend_text(struct backend_text *t, const chd_lease_backend *store,
                         const chd_lease_backend *view)
{
  snprintf(t->spid, sizeof t->spid, "%d", store ? store->pid : 0);
  snprintf(t->sstart, sizeof t->sstart, "%" PRId64, store ? store->started_us : 0);
  snprintf(t->vpid, sizeof t->vpid, "%d", view ? view->pid : 0);
  snprintf(t->vstart, sizeof t->vstart, "%" PRId64, view ? view->started_us : 0);
}

chd_store_rc chd_lease_renew(chd_lease_store *ls, const char *group, int64_t size,
                             const char *owner, int64_t lease_ms,
                             const chd_lease_backend *store, const chd_lease_backend *view,
                             const int64_t *slots, const int64_t *gens, size_t n, bool *held,
                             int64_t *members, int64_t *rank)
{
  char gsize[24], ms[24];
  struct backend_text b;
  char *slot_list = array_of(slots, n), *gen_list = array_of(gens, n);
  const char *member[4] = { group, owner, gsize, ms };
  const char *renew[9] = { group, owner, ms, slot_list, gen_list, b.spid, b.sstart, b.vpid,
                           b.vstart };
  PGresult *res = NULL;
  chd_store_rc rc;

  for (size_t i = 0; i < n; i++)
    held[i] = false;
  *members = 0;
  *rank = 0;
  if (!slot_list || !gen_list) {
    free(slot_list);
    free(gen_list);
    return fail(ls, CHD_STORE_ERROR, "out of memory");
  }
  snprintf(gsize, sizeof gsize, "%" PRId64, size);
  snprintf(ms, sizeof ms, "%" PRId64, lease_ms);
  backend_text(&b, store, view);
  rc = begin(ls);
  if (rc == CHD_STORE_OK)
    rc = exec(ls, MEMBER_UPSERT, 4, member, "renewing the membership");
  if (rc == CHD_STORE_OK)
    rc = run(ls, "UPDATE comphost_leases SET renewed_at = now(), expires_at = " MS("$3") ","
             " " BACKENDS("$6", "$7", "$8", "$9")
             " WHERE subscriber_id = $1 AND owner = $2 AND (slot, generation) IN"
             " (SELECT * FROM unnest($4::int[], $5::bigint[])) RETURNING slot, generation",
             9, renew, "renewing the leases", &res);
  if (rc == CHD_STORE_OK) {
    for (int r = 0; r < PQntuples(res); r++) {
      int64_t slot = int_at(res, r, 0), gen = int_at(res, r, 1);
      for (size_t i = 0; i < n; i++)
        if (slots[i] == slot && gens[i] == gen)
          held[i] = true;
    }
    PQclear(res);
    rc = run(ls, "SELECT owner FROM comphost_lease_members WHERE subscriber_id = $1"
             " AND expires_at > now() ORDER BY owner", 1, member, "counting the members",
             &res);
  }
  if (rc == CHD_STORE_OK) {
    *members = PQntuples(res);
    for (int r = 0; r < PQntuples(res); r++)
      if (strcmp(PQgetvalue(res, r, 0), owner) < 0)
        (*rank)++;
    PQclear(res);
  }
  free(slot_list);
  free(gen_list);
  return end(ls, rc);
}

/* Rows of the columns below into *rows. */
#define ROW_COLUMNS                                                            \
  "slot, generation, coalesce(owner, ''), owner IS NOT NULL AND expires_at < now(),"   \
  " coalesce(to_char(acquired_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), ''),"\
  " CASE WHEN owner IS NULL THEN -1"                                           \
  "  ELSE (extract(epoch FROM now() - acquired_at) * 1000)::bigint END,"       \
  " CASE WHEN owner IS NULL THEN -1"                                           \
  "  ELSE (extract(epoch FROM now() - renewed_at) * 1000)::bigint END,"        \
  " CASE WHEN owner IS NULL THEN 0"                                            \
  "  ELSE (extract(epoch FROM expires_at - now()) * 1000)::bigint END,"        \
  " coalesce(store_pid, 0), coalesce(store_started, 0),"                       \
  " coalesce(view_pid, 0), coalesce(view_started, 0)"

static chd_store_rc rows_of(chd_lease_store *ls, PGresult *res, chd_lease_row **rows,
                            size_t *n)
{
  int count = PQntuples(res);

  *rows = calloc(count > 0 ? (size_t)count : 1, sizeof **rows);
  *n = 0;
  if (!*rows)
    return fail(ls, CHD_STORE_ERROR, "out of memory");
  for (int r = 0; r < count; r++) {
    chd_lease_row *row = &(*rows)[r];
    row->slot = int_at(res, r, 0);
    row->generation = int_at(res, r, 1);
    text_at(res, r, 2, row->owner, sizeof row->owner);
    row->expired = !strcmp(PQgetvalue(res, r, 3), "t");
    text_at(res, r, 4, row->acquired_at, sizeof row->acquired_at);
    row->held_ms = int_at(res, r, 5);
    row->renewed_ms_ago = int_at(res, r, 6);
    row->expires_in_ms = int_at(res, r, 7);
    row->store.pid = (int)int_at(res, r, 8);
    row->store.started_us = int_at(res, r, 9);
    row->view.pid = (int)int_at(res, r, 10);
    row->view.started_us = int_at(res, r, 11);
  }
  *n = (size_t)count;
  return CHD_STORE_OK;
}

chd_store_rc chd_lease_claimable(chd_lease_store *ls, const char *group, int64_t size,
                                 chd_lease_row **rows, size_t *n)
{
  char gsize[24];
  const char *params[2] = { group, gsize };
  PGresult *res;
  chd_store_rc rc;

  *rows = NULL;
  *n = 0;
  snprintf(gsize, sizeof gsize, "%" PRId64, size);
  rc = run(ls, "SELECT " ROW_COLUMNS " FROM comphost_leases WHERE subscriber_id = $1"
           " AND slot < $2::int AND (owner IS NULL OR expires_at < now())"
           " ORDER BY owner IS NOT NULL, slot", 2, params, "reading the free slots", &res);
  if (rc != CHD_STORE_OK)
    return rc;
  rc = rows_of(ls, res, rows, n);
  PQclear(res);
  return rc;
}

chd_store_rc chd_lease_claim(chd_lease_store *ls, const char *group, int64_t slot,
                             int64_t seen, const char *owner, int64_t lease_ms,
                             const chd_lease_backend *store, const chd_lease_backend *view,
                             bool *got, int64_t *generation)
{
  char s[24], g[24], ms[24];
  struct backend_text b;
  const char *params[9] = { group, s, owner, g, ms, b.spid, b.sstart, b.vpid, b.vstart };
  PGresult *res;
  chd_store_rc rc;

  *got = false;
  *generation = 0;
  snprintf(s, sizeof s, "%" PRId64, slot);
  snprintf(g, sizeof g, "%" PRId64, seen);
  snprintf(ms, sizeof ms, "%" PRId64, lease_ms);
  backend_text(&b, store, view);
  rc = begin(ls);
  if (rc != CHD_STORE_OK)
    return rc;
  rc = run(ls, "UPDATE comphost_leases SET owner = $3, generation = generation + 1,"
           " acquired_at = now(), renewed_at = now(), expires_at = " MS("$5") ","
           " " BACKENDS("$6", "$7", "$8", "$9")
           " WHERE subscriber_id = $1 AND slot = $2::int AND generation = $4::bigint"
           " AND (owner IS NULL OR expires_at < now()) RETURNING generation",
           9, params, "claiming a slot", &res);
  if (rc == CHD_STORE_OK) {
    *got = PQntuples(res) == 1;
    if (*got)
      *generation = int_at(res, 0, 0);
    PQclear(res);
  } else if (rc == CHD_STORE_CONFLICT) {
    end(ls, rc);                /* locked for longer than CHD_LEASE_LOCK_MS: not now */
    return CHD_STORE_OK;
  }
  rc = end(ls, rc);
  if (rc != CHD_STORE_OK)
    *got = false;
  return rc;
}

chd_store_rc chd_lease_release(chd_lease_store *ls, const char *group, int64_t slot,
                               const char *owner, int64_t generation)
{
  char s[24], g[24];
  const char *params[4] = { group, s, owner, g };

  snprintf(s, sizeof s, "%" PRId64, slot);
  snprintf(g, sizeof g, "%" PRId64, generation);
  return exec(ls, "UPDATE comphost_leases SET owner = NULL, expires_at = '-infinity',"
              " renewed_at = now(), " BACKENDS("0", "0", "0", "0")
              " WHERE subscriber_id = $1 AND slot = $2::int AND owner = $3"
              " AND generation = $4::bigint", 4, params, "releasing a slot");
}

chd_store_rc chd_lease_leave(chd_lease_store *ls, const char *group, const char *owner)
{
  const char *params[2] = { group, owner };

  return exec(ls, "DELETE FROM comphost_lease_members WHERE subscriber_id = $1 AND owner = $2",
              2, params, "leaving the group");
}

chd_store_rc chd_lease_list(chd_lease_store *ls, const char *group, int64_t size,
                            chd_lease_row **rows, size_t *n, int64_t *members)
{
  char gsize[24];
  const char *params[2] = { group, gsize };
  PGresult *res;
  chd_store_rc rc;

  *rows = NULL;
  *n = 0;
  *members = 0;
  snprintf(gsize, sizeof gsize, "%" PRId64, size);
  rc = run(ls, "SELECT to_regclass('comphost_leases') IS NOT NULL"
           " AND to_regclass('comphost_lease_members') IS NOT NULL", 0, NULL,
           "looking for the lease tables", &res);
  if (rc != CHD_STORE_OK)
    return rc;
  if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
    PQclear(res);
    *rows = calloc(1, sizeof **rows);   /* no table: no host ever ran the group */
    return *rows ? CHD_STORE_OK : fail(ls, CHD_STORE_ERROR, "out of memory");
  }
  PQclear(res);
  rc = run(ls, "SELECT " ROW_COLUMNS " FROM comphost_leases WHERE subscriber_id = $1"
           " AND slot < $2::int ORDER BY slot", 2, params, "reading the leases", &res);
  if (rc != CHD_STORE_OK)
    return rc;
  rc = rows_of(ls, res, rows, n);
  PQclear(res);
  if (rc != CHD_STORE_OK)
    return rc;
  rc = run(ls, "SELECT count(*) FROM comphost_lease_members WHERE subscriber_id = $1"
           " AND expires_at > now()", 1, params, "counting the members", &res);
  if (rc == CHD_STORE_OK) {
    *members = int_at(res, 0, 0);
    PQclear(res);
  }
  return rc;
}

chd_store_rc chd_lease_check(PGconn *conn, const chd_lease_fence *f, char *err, size_t size)
{
  char s[24], g[24];
  const char *params[4] = { f->group, s, f->owner, g };
  PGresult *res;
  chd_store_rc rc;
  bool ours;

  snprintf(s, sizeof s, "%" PRId64, f->slot);
  snprintf(g, sizeof g, "%" PRId64, f->generation);
  rc = run_on(conn, "SELECT 1 FROM comphost_leases WHERE subscriber_id = $1"
              " AND slot = $2::int AND owner = $3 AND generation = $4::bigint FOR SHARE",
              4, params, "checking the slot's lease", &res, err, size);
  if (rc != CHD_STORE_OK)
    return rc;
  ours = PQntuples(res) == 1;
  PQclear(res);
  if (ours)
    return CHD_STORE_OK;
  snprintf(err, size, "the lease of slot %" PRId64 " of %s (generation %" PRId64 ") was"
           " taken over: nothing committed", f->slot, f->group, f->generation);
  return CHD_STORE_FENCED;
}

void chd_lease_session_sql(int64_t lease_ms, char *buf, size_t size)
{
  snprintf(buf, size, "SET idle_in_transaction_session_timeout = %" PRId64, lease_ms);
}

/* The connection `on` of ls, NULL when it is not there or not connected. */
static PGconn *conn_on(chd_lease_store *ls, chd_lease_on on)
{
  PGconn *conn = on == CHD_LEASE_ON_VIEW ? (ls->view ? chd_viewdb_conn(ls->view) : NULL)
                                         : (ls->mdb ? chd_mdb_conn(ls->mdb) : NULL);

  return conn && PQstatus(conn) == CONNECTION_OK ? conn : NULL;
}

void chd_lease_own_backend(chd_lease_store *ls, chd_lease_on on, chd_lease_backend *be)
{
  PGconn *conn = conn_on(ls, on);
  int pid = conn ? PQbackendPID(conn) : 0;
  PGresult *res;

  if (pid == 0) {
    memset(be, 0, sizeof *be);
    return;
  }
  if (pid == be->pid)
    return;
  memset(be, 0, sizeof *be);
  if (run_on(conn, "SELECT pid, " BACKEND_START_US " FROM pg_stat_activity"
             " WHERE pid = pg_backend_pid()", 0, NULL, "reading the backend's pid", &res,
             ls->error, sizeof ls->error) != CHD_STORE_OK)
    return;
  if (PQntuples(res) == 1) {
    be->pid = (int)int_at(res, 0, 0);
    be->started_us = int_at(res, 0, 1);
  }
  PQclear(res);
}

chd_store_rc chd_lease_terminate(chd_lease_store *ls, chd_lease_on on,
                                 const chd_lease_backend *be, bool *ended)
{
  char pid[16], started[24];
  const char *params[2] = { pid, started };
  PGresult *res;
  chd_store_rc rc;

  *ended = false;
  if (be->pid <= 0)
    return CHD_STORE_OK;
  snprintf(pid, sizeof pid, "%d", be->pid);
  snprintf(started, sizeof started, "%" PRId64, be->started_us);
  rc = run_on(conn_on(ls, on), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
              " WHERE pid = $1::int AND " BACKEND_START_US " = $2::bigint", 2, params,
              "ending the backend of the slot's last owner", &res, ls->error,
              sizeof ls->error);
  if (rc != CHD_STORE_OK)
    return rc;
  *ended = PQntuples(res) == 1 && !strcmp(PQgetvalue(res, 0, 0), "t");
  PQclear(res);
  return CHD_STORE_OK;
}
