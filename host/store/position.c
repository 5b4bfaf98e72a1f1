/* position.c - where subscriptions keep their read positions. */
#include "position.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lease.h"
#include "park.h"
#include "pq.h"

static const char positions_table[] =
  "CREATE TABLE IF NOT EXISTS comphost_positions ("
  " subscriber_id text PRIMARY KEY, position bigint NOT NULL,"
  " updated_at timestamptz NOT NULL DEFAULT now(),"
  " stopped_at bigint, stop_reason text)";

void chd_position_store_init(chd_position_store *ps, chd_position_where where,
                             chd_position_format format, chd_mdb *mdb, chd_viewdb *view)
{
  memset(ps, 0, sizeof *ps);
  ps->where = where;
  ps->format = format;
  ps->mdb = mdb;
  ps->view = view;
}

const char *chd_position_error(const chd_position_store *ps)
{
  return ps->error;
}

static chd_store_rc fail(chd_position_store *ps, chd_store_rc rc, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));

static chd_store_rc fail(chd_position_store *ps, chd_store_rc rc, const char *fmt, ...)
{
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(ps->error, sizeof ps->error, fmt, ap);
  va_end(ap);
  chd_pq_one_line(ps->error);
  return rc;
}

/* The error of the message store, as the position store's. */
static chd_store_rc store_failed(chd_position_store *ps, chd_store_rc rc)
{
  return fail(ps, rc, "%s", chd_mdb_error(ps->mdb));
}

static const char *record_type(const chd_position_store *ps)
{
  return ps->format == CHD_POSITION_FORMAT_EVENTIDE ? "Recorded" : "Read";
}

void chd_position_stream(chd_position_format format, const char *category,
                         const char *subscriber_id, char *buf, size_t size)
{
  /* Eventide adds the type "position" to the category's types:
   * account -> account:position, account:command -> account:command+position */
  if (format == CHD_POSITION_FORMAT_EVENTIDE)
    snprintf(buf, size, "%s%sposition-%s", category, strchr(category, ':') ? "+" : ":",
             subscriber_id);
  else
    snprintf(buf, size, "subscriberPosition-%s", subscriber_id);
}

/* A query on the position table. PGRES_TUPLES_OK or PGRES_COMMAND_OK
 * expected; on failure the result is cleared and *out is NULL. */
static chd_store_rc view_query(chd_position_store *ps, const char *sql, int n,
                               const char *const *params, const char *doing, PGresult **out)
{
  PGconn *conn = ps->view ? chd_viewdb_conn(ps->view) : NULL;
  PGresult *res;
  chd_store_rc rc;

  *out = NULL;
  if (!conn)
    return fail(ps, CHD_STORE_DISCONNECTED, "%s: no view database connection", doing);
  res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(res) == PGRES_TUPLES_OK || PQresultStatus(res) == PGRES_COMMAND_OK) {
    *out = res;
    return CHD_STORE_OK;
  }
  rc = PQstatus(conn) == CONNECTION_BAD ? CHD_STORE_DISCONNECTED : CHD_STORE_ERROR;
  fail(ps, rc, "%s: %s", doing, PQresultErrorMessage(res));
  PQclear(res);
  return rc;
}

chd_store_rc chd_position_prepare(chd_position_store *ps)
{
  chd_store_rc rc;

  if (ps->where != CHD_POSITION_VIEW_DATA)
    return CHD_STORE_OK;
  if (!ps->view)
    return fail(ps, CHD_STORE_INVALID, "position_store = view_data needs a view database");
  rc = chd_viewdb_exec_locked(ps->view, positions_table);
  if (rc != CHD_STORE_OK)
    return fail(ps, rc, "cannot create the host's tables in the view database: %s",
                chd_viewdb_error(ps->view));
  return CHD_STORE_OK;
}

/* The position in the data of a position message. */
static int64_t position_of(const ch_message *m)
{
  json_t *p = json_object_get(m->data, "position");

  return json_is_integer(p) ? (int64_t)json_integer_value(p) : 0;
}

/* The position (and reason) of the last `type` message of `stream`. */
static chd_store_rc read_last(chd_position_store *ps, const char *stream, const char *type,
                              int64_t *position, char *reason, size_t reason_size)
{
  chd_mdb_batch b;
  chd_store_rc rc = chd_mdb_read_last(ps->mdb, stream, type, &b);

  if (rc != CHD_STORE_OK)
    return store_failed(ps, rc);
  *position = b.count ? position_of(&b.messages[0]) : 0;
  if (reason && reason_size) {
    const char *r = b.count ? json_string_value(json_object_get(b.messages[0].data, "reason"))
                            : NULL;
    snprintf(reason, reason_size, "%s", r ? r : "");
  }
  chd_mdb_batch_release(&b);
  return CHD_STORE_OK;
}

static chd_store_rc write_record(chd_position_store *ps, const char *stream, const char *type,
                                 json_t *data)
{
  chd_store_rc rc;

  if (!data)
    return fail(ps, CHD_STORE_ERROR, "out of memory");
  rc = chd_mdb_write(ps->mdb, stream, NULL, type, data, NULL, CH_VERSION_ANY, NULL);
  json_decref(data);
  return rc == CHD_STORE_OK ? rc : store_failed(ps, rc);
}

chd_store_rc chd_position_get(chd_position_store *ps, const char *category,
                              const char *subscriber_id, int64_t *position)
{
  char stream[320];

  *position = 0;
  if (ps->where == CHD_POSITION_VIEW_DATA) {
    const char *params[1] = { subscriber_id };
    PGresult *res;
    chd_store_rc rc = view_query(ps, "SELECT position FROM comphost_positions"
                                 " WHERE subscriber_id = $1", 1, params,
                                 "reading the position", &res);
    if (rc != CHD_STORE_OK)
      return rc;
    if (PQntuples(res) > 0)
      sscanf(PQgetvalue(res, 0, 0), "%" SCNd64, position);
    PQclear(res);
    return CHD_STORE_OK;
  }
  chd_position_stream(ps->format, category, subscriber_id, stream, sizeof stream);
  return read_last(ps, stream, record_type(ps), position, NULL, 0);
}

#define PUT_ROW \
  "INSERT INTO comphost_positions (subscriber_id, position)"                      \
  " VALUES ($1, $2::bigint) ON CONFLICT (subscriber_id) DO UPDATE"                \
  " SET position = EXCLUDED.position, updated_at = now()"

/* Save the position; with `commit`, COMMIT the open transaction with it. */
static chd_store_rc put(chd_position_store *ps, const char *category,
                        const char *subscriber_id, int64_t position, bool commit)
{
  char stream[320], pos[24];
  chd_store_rc rc;

  if (ps->where == CHD_POSITION_VIEW_DATA) {
    const char *params[2] = { subscriber_id, pos };
    PGresult *res;

    snprintf(pos, sizeof pos, "%" PRId64, position);
    if (!commit) {
      rc = view_query(ps, PUT_ROW, 2, params, "saving the position", &res);
      PQclear(res);
      return rc;
    }
    if (!ps->view)
      return fail(ps, CHD_STORE_DISCONNECTED, "saving the position: no view database");
    rc = chd_viewdb_then_commit(ps->view, PUT_ROW, 2, params, "saving the position");
    return rc == CHD_STORE_OK ? rc : fail(ps, rc, "%s", chd_viewdb_error(ps->view));
  }
  chd_position_stream(ps->format, category, subscriber_id, stream, sizeof stream);
  if (!commit)
    return write_record(ps, stream, record_type(ps),
                        json_pack("{s:I}", "position", (json_int_t)position));
  {
    chd_mdb_write_opts opts = { .commit = true };
    json_t *data = json_pack("{s:I}", "position", (json_int_t)position);

    if (!data)
      return fail(ps, CHD_STORE_ERROR, "out of memory");
    rc = chd_mdb_write_with(ps->mdb, stream, NULL, record_type(ps), data, NULL,
                            CH_VERSION_ANY, &opts, NULL);
    json_decref(data);
    return rc == CHD_STORE_OK ? rc : store_failed(ps, rc);
  }
}

/* A statement of a fenced put's transaction. */
static chd_store_rc tx_exec(chd_position_store *ps, const char *sql)
{
  chd_store_rc rc = ps->where == CHD_POSITION_VIEW_DATA ? chd_viewdb_exec(ps->view, sql)
                                                        : chd_mdb_exec(ps->mdb, sql);

  if (rc != CHD_STORE_OK)
    fail(ps, rc, "%s", ps->where == CHD_POSITION_VIEW_DATA ? chd_viewdb_error(ps->view)
                                                           : chd_mdb_error(ps->mdb));
  return rc;
}

/* The connection of the positions (and of the leases, beside them). */
static PGconn *conn_of(chd_position_store *ps)
{
  PGconn *conn = ps->where == CHD_POSITION_VIEW_DATA
                     ? (ps->view ? chd_viewdb_conn(ps->view) : NULL)
                     : chd_mdb_conn(ps->mdb);

  return conn && PQstatus(conn) == CONNECTION_OK ? conn : NULL;
}

/* Roll the open transaction back, keeping the error that made us. */
static chd_store_rc roll_back(chd_position_store *ps, chd_store_rc rc)
{
  char why[sizeof ps->error];

  if (!conn_of(ps))
    return rc;
  snprintf(why, sizeof why, "%s", ps->error);
  tx_exec(ps, "ROLLBACK");
  snprintf(ps->error, sizeof ps->error, "%s", why);
  return rc;
}

/*
 * Fencing (lease.h): the lease checked inside the transaction open on the
 * positions' connection, which then holds its row share-locked until it
 * ends. CHD_STORE_FENCED when the slot is no longer ours.
 */
static chd_store_rc check_fence(chd_position_store *ps)
{
  PGconn *conn = conn_of(ps);

  if (!conn)
    return fail(ps, CHD_STORE_DISCONNECTED, "saving the position: no connection");
  return chd_lease_check(conn, ps->fence, ps->error, sizeof ps->error);
}

chd_store_rc chd_position_put(chd_position_store *ps, const char *category,
                              const char *subscriber_id, int64_t position)
{
  PGconn *conn;
  chd_store_rc rc;

  if (!ps->fence)
    return put(ps, category, subscriber_id, position, false);
  if (!(conn = conn_of(ps)))
    return fail(ps, CHD_STORE_DISCONNECTED, "saving the position: no connection");
  if (PQtransactionStatus(conn) != PQTRANS_IDLE) {
    /* the caller's transaction, which it commits */
    rc = check_fence(ps);
    return rc == CHD_STORE_OK ? put(ps, category, subscriber_id, position, false) : rc;
  }
  /* one of its own: BEGIN, the check, then the put with the COMMIT */
  if ((rc = tx_exec(ps, "BEGIN")) != CHD_STORE_OK)
    return rc;
  if ((rc = check_fence(ps)) != CHD_STORE_OK)
    return roll_back(ps, rc);
  rc = put(ps, category, subscriber_id, position, true);
  return rc == CHD_STORE_OK ? rc : roll_back(ps, rc);
}

chd_store_rc chd_position_put_commit(chd_position_store *ps, const char *category,
                                     const char *subscriber_id, int64_t position)
{
  PGconn *conn;
  chd_store_rc rc;

  if (ps->fence) {
    conn = conn_of(ps);
    if (!conn || PQtransactionStatus(conn) == PQTRANS_IDLE)
      /* the transaction went with its session: nothing of it can commit */
      return fail(ps, CHD_STORE_DISCONNECTED, "saving the position: the transaction was lost"
                  " with the connection");
    if ((rc = check_fence(ps)) != CHD_STORE_OK)
      return roll_back(ps, rc);
  }
  rc = put(ps, category, subscriber_id, position, true);
  return rc;
}

chd_store_rc chd_position_mark_stopped(chd_position_store *ps, const char *subscriber_id,
                                       int64_t position, const ch_message *msg,
                                       const char *reason)
{
  char stream[320];

  if (ps->where == CHD_POSITION_VIEW_DATA) {
    char pos[24], at[24], text[1600];
    const char *params[4] = { subscriber_id, pos, at, text };
    PGresult *res;
    chd_store_rc rc;

    snprintf(pos, sizeof pos, "%" PRId64, position);
    snprintf(at, sizeof at, "%" PRId64, msg->global_position);
    snprintf(text, sizeof text, "%s (type %s in stream %s)", reason, msg->type,
             msg->stream_name);
    rc = view_query(ps, "INSERT INTO comphost_positions (subscriber_id, position, stopped_at,"
                    " stop_reason) VALUES ($1, $2::bigint, $3::bigint, $4)"
                    " ON CONFLICT (subscriber_id) DO UPDATE SET stopped_at = EXCLUDED.stopped_at,"
                    " stop_reason = EXCLUDED.stop_reason, updated_at = now()",
                    4, params, "recording the stop", &res);
    PQclear(res);
    return rc;
  }
  chd_park_status_stream(subscriber_id, stream, sizeof stream);
  return write_record(ps, stream, "Stopped",
                      json_pack("{s:I, s:s, s:s, s:s}", "position",
                                (json_int_t)msg->global_position, "stream", msg->stream_name,
                                "type", msg->type, "reason", reason));
}

chd_store_rc chd_position_inspect(chd_position_store *ps, const char *category,
                                  const char *subscriber_id, int64_t *position,
                                  int64_t *stopped_at, char *reason, size_t reason_size)
{
  chd_store_rc rc;

  *position = 0;
  *stopped_at = 0;
  reason[0] = '\0';
  if (ps->where == CHD_POSITION_VIEW_DATA) {
    const char *params[1] = { subscriber_id };
    PGconn *conn = ps->view ? chd_viewdb_conn(ps->view) : NULL;
    PGresult *res;

    if (!conn)
      return fail(ps, CHD_STORE_DISCONNECTED, "no view database connection");
    res = PQexecParams(conn, "SELECT position, coalesce(stopped_at, 0),"
                       " coalesce(stop_reason, '') FROM comphost_positions"
                       " WHERE subscriber_id = $1", 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
      /* a database the host never ran against has no table yet */
      const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
      bool missing = state && !strcmp(state, "42P01");
      rc = missing ? CHD_STORE_OK
                   : fail(ps, CHD_STORE_ERROR, "reading comphost_positions: %s",
                          PQresultErrorMessage(res));
      PQclear(res);
      return rc;
    }
    if (PQntuples(res) > 0) {
      sscanf(PQgetvalue(res, 0, 0), "%" SCNd64, position);
      sscanf(PQgetvalue(res, 0, 1), "%" SCNd64, stopped_at);
      snprintf(reason, reason_size, "%s", PQgetvalue(res, 0, 2));
    }
    PQclear(res);
  } else {
    char stream[320], status[320];
    chd_position_stream(ps->format, category, subscriber_id, stream, sizeof stream);
    chd_park_status_stream(subscriber_id, status, sizeof status);
    if ((rc = read_last(ps, stream, record_type(ps), position, NULL, 0)) != CHD_STORE_OK ||
        (rc = read_last(ps, status, "Stopped", stopped_at, reason, reason_size))
          != CHD_STORE_OK)
      return rc;
  }
  if (*stopped_at <= *position) {
    *stopped_at = 0;
    reason[0] = '\0';
  }
  return CHD_STORE_OK;
}

chd_store_rc chd_position_age(chd_position_store *ps, const char *category,
                              const char *subscriber_id, int64_t *age_ms)
{
  char stream[320];
  chd_store_rc rc;

  *age_ms = -1;
  if (ps->where == CHD_POSITION_VIEW_DATA) {
    const char *params[1] = { subscriber_id };
    PGresult *res;
    rc = view_query(ps, "SELECT (extract(epoch FROM now() - updated_at) * 1000)::bigint"
                    " FROM comphost_positions WHERE subscriber_id = $1", 1, params,
                    "reading the time of the position", &res);
    if (rc != CHD_STORE_OK)
      return rc;
    if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
      sscanf(PQgetvalue(res, 0, 0), "%" SCNd64, age_ms);
    PQclear(res);
    return CHD_STORE_OK;
  }
  chd_position_stream(ps->format, category, subscriber_id, stream, sizeof stream);
  rc = chd_mdb_last_age(ps->mdb, stream, record_type(ps), age_ms);
  return rc == CHD_STORE_OK ? rc : store_failed(ps, rc);
}

chd_store_rc chd_position_reset(chd_position_store *ps, const char *category,
                                const char *subscriber_id)
{
  char status[320], reason[1024];
  int64_t position, stopped;
  chd_store_rc rc;

  if (ps->where == CHD_POSITION_VIEW_DATA) {
    const char *params[1] = { subscriber_id };
    PGresult *res;
    rc = view_query(ps, "UPDATE comphost_positions SET position = 0, stopped_at = NULL,"
                    " stop_reason = NULL, updated_at = now() WHERE subscriber_id = $1",
                    1, params, "resetting the position", &res);
    PQclear(res);
    return rc;
  }
  rc = chd_position_inspect(ps, category, subscriber_id, &position, &stopped, reason,
                            sizeof reason);
  if (rc == CHD_STORE_OK && position != 0)
    rc = chd_position_put(ps, category, subscriber_id, 0);
  if (rc == CHD_STORE_OK && stopped) {
    chd_park_status_stream(subscriber_id, status, sizeof status);
    rc = write_record(ps, status, "Stopped",
                      json_pack("{s:i, s:s}", "position", 0, "reason",
                                "cleared by comphost rebuild"));
  }
  return rc;
}
