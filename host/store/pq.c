/* pq.c - what the store's clients share about a libpq connection. */
#include "pq.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"

#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 5000

int chd_pq_init(chd_pq *pq, const char *conninfo, const char *what)
{
  memset(pq, 0, sizeof *pq);
  if (!conninfo || !(pq->conninfo = strdup(conninfo)))
    return -1;
  pq->what = what;
  snprintf(pq->describe, sizeof pq->describe, "(not connected)");
  snprintf(pq->app_name, sizeof pq->app_name, "comphost");
  return 0;
}

void chd_pq_set_app_name(chd_pq *pq, const char *name)
{
  snprintf(pq->app_name, sizeof pq->app_name, "%s", name && *name ? name : "comphost");
}

void chd_pq_release(chd_pq *pq)
{
  chd_pq_disconnect(pq);
  free(pq->conninfo);
  pq->conninfo = NULL;
}

void chd_pq_one_line(char *s)
{
  size_t n = strlen(s);

  while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' '))
    s[--n] = '\0';
  for (; *s; s++)
    if (*s == '\n')
      *s = ' ';
}

chd_store_rc chd_pq_fail(chd_pq *pq, chd_store_rc rc, const char *fmt, ...)
{
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(pq->error, sizeof pq->error, fmt, ap);
  va_end(ap);
  chd_pq_one_line(pq->error);
  return rc;
}

chd_store_rc chd_pq_prefix(chd_pq *pq, chd_store_rc rc, const char *prefix)
{
  char why[sizeof pq->error];

  snprintf(why, sizeof why, "%s", pq->error);
  return chd_pq_fail(pq, rc, "%s: %s", prefix, why);
}

bool chd_pq_refused_for_good(const char *message)
{
  static const char *const passing[] = {
    "the database system is starting up", "the database system is shutting down",
    "the database system is in recovery mode", "too many clients",
    "terminating connection", "remaining connection slots",
  };

  /* a server that answered with FATAL refused us; unless it was busy
   * starting, stopping or full, asking again gives the same answer */
  if (!message || !strstr(message, "FATAL:"))
    return false;
  for (size_t i = 0; i < sizeof passing / sizeof passing[0]; i++)
    if (strstr(message, passing[i]))
      return false;
  return true;
}

/* Fill pq->describe from the parsed connection string: never the password. */
static void describe(chd_pq *pq, const PQconninfoOption *opts)
{
  const char *host = NULL, *port = NULL, *dbname = NULL, *user = NULL;

  for (const PQconninfoOption *o = opts; o->keyword; o++) {
    if (!o->val || !*o->val)
      continue;
    if (!strcmp(o->keyword, "host") || (!host && !strcmp(o->keyword, "hostaddr")))
      host = o->val;
    else if (!strcmp(o->keyword, "port"))
      port = o->val;
    else if (!strcmp(o->keyword, "dbname"))
      dbname = o->val;
    else if (!strcmp(o->keyword, "user"))
      user = o->val;
  }
  snprintf(pq->describe, sizeof pq->describe, "%s%s%s:%s/%s",
           user ? user : "", user ? "@" : "", host ? host : "localhost",
           port ? port : "5432", dbname ? dbname : (user ? user : "?"));
}

void chd_pq_disconnect(chd_pq *pq)
{
  if (pq->conn) {
    PQfinish(pq->conn);
    pq->conn = NULL;
  }
}

bool chd_pq_broken(const chd_pq *pq)
{
  return !pq->conn || PQstatus(pq->conn) == CONNECTION_BAD;
}

chd_store_rc chd_pq_connect(chd_pq *pq)
{
  const char *keys[] = { "connect_timeout", "fallback_application_name", "dbname", NULL };
  const char *vals[] = { "10", pq->app_name, pq->conninfo, NULL };
  PQconninfoOption *opts;
  char *perr = NULL;
  chd_store_rc rc;

  chd_pq_disconnect(pq);
  opts = PQconninfoParse(pq->conninfo, &perr);
  if (!opts) {
    rc = chd_pq_fail(pq, CHD_STORE_INVALID, "invalid connection string for the %s: %s",
                     pq->what, perr ? perr : "out of memory");
    PQfreemem(perr);
    return rc;
  }
  describe(pq, opts);
  PQconninfoFree(opts);

  pq->conn = PQconnectdbParams(keys, vals, 1);
  if (!pq->conn)
    return chd_pq_fail(pq, CHD_STORE_ERROR, "out of memory connecting to %s", pq->describe);
  if (PQstatus(pq->conn) != CONNECTION_OK) {
    const char *why = PQerrorMessage(pq->conn);
    rc = chd_pq_fail(pq, chd_pq_refused_for_good(why) ? CHD_STORE_ERROR
                                                      : CHD_STORE_DISCONNECTED,
                     "cannot connect to %s at %s: %s", pq->what, pq->describe, why);
    chd_pq_disconnect(pq);
    return rc;
  }
  PQsetNoticeProcessor(pq->conn, chd_log_pq_notice, NULL);
  pq->error[0] = '\0';
  return CHD_STORE_OK;
}

chd_store_rc chd_pq_reconnect(chd_pq *pq, int max_wait_ms, bool warn,
                              chd_store_rc (*connect)(void *arg), void *arg)
{
  int delay = BACKOFF_FIRST_MS, waited = 0;
  chd_store_rc rc;

  for (;;) {
    rc = connect(arg);
    if (rc != CHD_STORE_DISCONNECTED)
      return rc;
    if (max_wait_ms >= 0 && waited >= max_wait_ms)
      return rc;
    if (warn)
      chd_log_warn("%s; retrying in %d ms", pq->error, delay);
    /* short slices, so that the interrupt flag is seen soon */
    if (chd_nap_ms(delay, pq->interrupt) != 0)
      return chd_pq_fail(pq, CHD_STORE_INTERRUPTED, "reconnecting to %s was interrupted",
                         pq->describe);
    waited += delay;
    delay = delay * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : delay * 2;
  }
}

chd_store_rc chd_pq_result_error(chd_pq *pq, const PGresult *res, const char *doing)
{
  if (PQstatus(pq->conn) == CONNECTION_BAD)
    return chd_pq_fail(pq, CHD_STORE_DISCONNECTED, "lost connection to %s at %s during %s: %s",
                       pq->what, pq->describe, doing, PQerrorMessage(pq->conn));
  return chd_pq_fail(pq, CHD_STORE_ERROR, "%s failed: %s", doing, PQresultErrorMessage(res));
}

chd_store_rc chd_pq_exec(chd_pq *pq, const char *sql)
{
  PGresult *res;
  chd_store_rc rc = CHD_STORE_OK;

  if (!pq->conn)
    return chd_pq_fail(pq, CHD_STORE_DISCONNECTED, "%s: not connected to the %s", sql,
                       pq->what);
  res = PQexec(pq->conn, sql);
  if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
    rc = chd_pq_result_error(pq, res, sql);
  PQclear(res);
  return rc;
}

bool chd_pq_in_transaction(const chd_pq *pq)
{
  PGTransactionStatusType t = pq->conn ? PQtransactionStatus(pq->conn) : PQTRANS_UNKNOWN;

  return t == PQTRANS_INTRANS || t == PQTRANS_INERROR;
}

/* Before a COMMIT: a session that has no transaction lost it, with the
 * connection it replaced (a COMMIT there would only warn). */
static chd_store_rc transaction_open(chd_pq *pq, const char *doing)
{
  if (!pq->conn)
    return chd_pq_fail(pq, CHD_STORE_DISCONNECTED, "%s: not connected to the %s", doing,
                       pq->what);
  if (!chd_pq_in_transaction(pq))
    return chd_pq_fail(pq, CHD_STORE_DISCONNECTED, "%s: the transaction was lost with the"
                       " connection to the %s", doing, pq->what);
  return CHD_STORE_OK;
}

chd_store_rc chd_pq_commit(chd_pq *pq)
{
  PGresult *res;
  chd_store_rc rc = transaction_open(pq, "commit");

  if (rc != CHD_STORE_OK)
    return rc;
  res = PQexec(pq->conn, "COMMIT");
  if (PQresultStatus(res) != PGRES_COMMAND_OK)
    rc = chd_pq_result_error(pq, res, "commit");
  else if (strcmp(PQcmdStatus(res), "COMMIT") != 0)
    /* a statement of the transaction failed: PostgreSQL rolled it back */
    rc = chd_pq_fail(pq, CHD_STORE_ERROR,
                     "the transaction was rolled back (a statement in it failed)");
  PQclear(res);
  return rc;
}

chd_store_rc chd_pq_then_commit(chd_pq *pq, const char *sql, const char *prepared, int n,
                                const char *const *params, const char *doing,
                                PGresult **res)
{
  PGconn *c = pq->conn;
  PGresult *commit = NULL;
  int query = 0;
  chd_store_rc rc;

  *res = NULL;
  if ((rc = transaction_open(pq, doing)) != CHD_STORE_OK)
    return rc;
  if (!PQenterPipelineMode(c))
    return chd_pq_fail(pq, PQstatus(c) == CONNECTION_BAD ? CHD_STORE_DISCONNECTED
                                                         : CHD_STORE_ERROR,
                       "%s: %s", doing, PQerrorMessage(c));
  if (!(sql ? PQsendQueryParams(c, sql, n, NULL, params, NULL, NULL, 0)
            : PQsendQueryPrepared(c, prepared, n, params, NULL, NULL, 0)) ||
      !PQsendQueryParams(c, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) || !PQpipelineSync(c)) {
    /* half a pipeline sent: the connection is of no use any more */
    chd_pq_fail(pq, CHD_STORE_DISCONNECTED, "%s: %s", doing, PQerrorMessage(c));
    chd_pq_disconnect(pq);
    return CHD_STORE_DISCONNECTED;
  }
  /* the statement's result and a NULL, the commit's and a NULL, the sync */
  for (int guard = 0; guard < 16; guard++) {
    PGresult *r = PQgetResult(c);

    if (!r) {
      if (PQstatus(c) == CONNECTION_BAD)
        break;
      query++;
      continue;
    }
    if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
      PQclear(r);
      break;
    }
    if (query == 0 && !*res)
      *res = r;
    else if (query == 1 && !commit)
      commit = r;
    else
      PQclear(r);
  }
  if (PQstatus(c) != CONNECTION_BAD)
    PQexitPipelineMode(c);

  if (PQstatus(c) == CONNECTION_BAD)
    rc = chd_pq_fail(pq, CHD_STORE_DISCONNECTED, "lost connection to %s at %s during %s: %s",
                     pq->what, pq->describe, doing, PQerrorMessage(c));
  else if (!*res || (PQresultStatus(*res) != PGRES_TUPLES_OK &&
                     PQresultStatus(*res) != PGRES_COMMAND_OK))
    rc = chd_pq_result_error(pq, *res, doing);
  else if (!commit || PQresultStatus(commit) != PGRES_COMMAND_OK)
    rc = chd_pq_result_error(pq, commit, "commit");
  else if (strcmp(PQcmdStatus(commit), "COMMIT") != 0)
    rc = chd_pq_fail(pq, CHD_STORE_ERROR,
                     "the transaction was rolled back (a statement in it failed)");
  else
    rc = CHD_STORE_OK;
  PQclear(commit);
  return rc;
}
