/* mdb.c - the Message DB client (libpq). */
#include "mdb.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pq.h"
#include "stream_name.h"
#include "uuid.h"

#define MESSAGE_COLUMNS \
  "id, stream_name, type, position, global_position, data, metadata, time"
#define ALL_COLUMNS \
  "id::varchar, stream_name::varchar, type::varchar, position, global_position," \
  " data::varchar, metadata::varchar, time"
/* Rows of `query` (MESSAGE_COLUMNS, in global order) while the bytes of
 * data and metadata before each row stay under `bound`. */
#define BOUNDED(query, bound)                                                    \
  "SELECT id, stream_name, type, position, global_position,"                     \
  " CASE WHEN size > " bound "::bigint THEN NULL ELSE data END,"                 \
  " CASE WHEN size > " bound "::bigint THEN NULL ELSE metadata END,"             \
  " time, size > " bound "::bigint"                                              \
  " FROM (SELECT q.*, size, sum(size) OVER (ORDER BY q.global_position) AS total" \
  "  FROM (" query ") AS q,"                                                    \
  "  LATERAL (SELECT coalesce(octet_length(q.data), 0)"                          \
  "   + coalesce(octet_length(q.metadata), 0) AS size) AS z) AS t"               \
  " WHERE total - size < " bound "::bigint ORDER BY global_position"

/*
 * The consumer group member `member` of `size`, as get_category_messages()
 * picks it, MOD(@hash_64(cardinal_id(stream_name)), size) = member, written
 * out in SQL: Message DB's functions are PL/pgSQL, some 10 us a row, and a
 * member's read passes over the rows of all the other members. A stream
 * without an id belongs to no member, as there.
 */
#define GROUP_FILTER(size, member)                                               \
  " AND strpos(stream_name, '-') > 0 AND MOD(@(('x' || left(md5(split_part("     \
  "substring(stream_name FROM strpos(stream_name, '-') + 1), '+', 1)), 16))"     \
  "::bit(64)::bigint), " size "::bigint) = " member "::bigint"
/* A category's messages from $2, of group member $5 of $6, correlated to
 * $4 when not NULL, up to $3 (-1: all), as get_category_messages(). Not
 * prepared (exec_planned): a plan made for any position scans the rest of
 * the category and sorts it; one made for the position at hand walks the
 * category's index in order and stops at the limit, as Message DB's own
 * function (dynamic SQL) does. */
#define CATEGORY_GROUP                                                           \
  "SELECT " ALL_COLUMNS " FROM messages"                                         \
  " WHERE category(stream_name) = $1::varchar AND global_position >= $2::bigint" \
  " AND ($4::varchar IS NULL OR"                                                 \
  "  category(metadata->>'correlationStreamName') = $4::varchar)"                \
  GROUP_FILTER("$6", "$5")                                                       \
  " ORDER BY global_position"                                                    \
  " LIMIT CASE WHEN $3::bigint < 0 THEN NULL ELSE $3::bigint END"

/* The statements, prepared on every (re)connection. Parameters are typed
 * explicitly and passed positionally: Message DB's documented parameter names
 * do not match its code. */
static const struct statement {
  const char *name;
  const char *sql;
  int nparams;
} statements[] = {
  { "chd_write",
    "SELECT write_message($1::varchar, $2::varchar, $3::varchar, $4::jsonb,"
    " $5::jsonb, $6::bigint)", 6 },
  { "chd_stream",
    "SELECT " MESSAGE_COLUMNS " FROM get_stream_messages($1::varchar,"
    " $2::bigint, $3::bigint)", 3 },
  { "chd_category",
    "SELECT " MESSAGE_COLUMNS " FROM get_category_messages($1::varchar,"
    " $2::bigint, $3::bigint, $4::varchar, $5::bigint, $6::bigint)", 6 },
  { "chd_last",
    "SELECT " MESSAGE_COLUMNS " FROM get_last_stream_message($1::varchar,"
    " $2::varchar)", 2 },
  { "chd_version", "SELECT stream_version($1::varchar)", 1 },
  { "chd_snapshot",
    "SELECT pg_snapshot_xmin(s)::text, pg_snapshot_xmax(s)::text"
    " FROM pg_current_snapshot() AS s", 0 },
  /* "$all": Message DB has no function for it. Ordered (the book's query is
   * not) and inclusive like the category read. LIMIT NULL means no limit. */
  { "chd_all",
    "SELECT " ALL_COLUMNS " FROM messages WHERE global_position >= $1::bigint"
    " ORDER BY global_position"
    " LIMIT CASE WHEN $2::bigint < 0 THEN NULL ELSE $2::bigint END", 2 },
  /* The subscriptions' reads, bounded by bytes as well as by count
   * (chd_mdb_category_opts.max_bytes): messages while the bytes before them
   * are under the bound, so always the first one; a message larger than the
   * bound comes without its data and metadata, flagged in column 9. */
  { "chd_category_bounded",
    BOUNDED("SELECT * FROM get_category_messages($1::varchar, $2::bigint, $3::bigint,"
            " $4::varchar, $5::bigint, $6::bigint)", "$7"), 7 },
  { "chd_all_bounded",
    BOUNDED("SELECT " ALL_COLUMNS " FROM messages WHERE global_position >= $1::bigint"
            " ORDER BY global_position"
            " LIMIT CASE WHEN $2::bigint < 0 THEN NULL ELSE $2::bigint END", "$3"), 3 },
};

enum {
  ST_WRITE, ST_STREAM, ST_CATEGORY, ST_LAST, ST_VERSION, ST_SNAPSHOT, ST_ALL,
  ST_CATEGORY_BOUNDED, ST_ALL_BOUNDED
};

/* A consumer group member's share of a category (GROUP_FILTER), planned
 * for its parameters each time (exec_planned): 6 and 7 parameters. */
static const char category_group[] = CATEGORY_GROUP;
static const char category_group_bounded[] = BOUNDED(CATEGORY_GROUP, "$7");

struct chd_mdb {
  chd_pq pq;
  char *session_sql;          /* run on every new session, or NULL */
  bool has_conflict;
  chd_mdb_conflict conflict;
  char *conflict_stream;
};

#define fail(db, ...) chd_pq_fail(&(db)->pq, __VA_ARGS__)

chd_mdb *chd_mdb_new(const char *conninfo)
{
  chd_mdb *db;

  if (!conninfo)
    return NULL;
  db = calloc(1, sizeof *db);
  if (!db)
    return NULL;
  if (chd_pq_init(&db->pq, conninfo, "message store") != 0) {
    free(db);
    return NULL;
  }
  return db;
}

void chd_mdb_free(chd_mdb *db)
{
  if (!db)
    return;
  chd_pq_release(&db->pq);
  free(db->conflict_stream);
  free(db->session_sql);
  free(db);
}

const char *chd_mdb_error(const chd_mdb *db)
{
  return db->pq.error;
}

chd_store_rc chd_mdb_set_error(chd_mdb *db, chd_store_rc rc, const char *text)
{
  return fail(db, rc, "%s", text);
}

const chd_mdb_conflict *chd_mdb_conflict_info(const chd_mdb *db)
{
  return db->has_conflict ? &db->conflict : NULL;
}

const char *chd_mdb_describe(const chd_mdb *db)
{
  return db->pq.describe;
}

PGconn *chd_mdb_conn(chd_mdb *db)
{
  return db->pq.conn;
}

bool chd_mdb_broken(const chd_mdb *db)
{
  return chd_pq_broken(&db->pq);
}

void chd_mdb_set_interrupt(chd_mdb *db, const volatile sig_atomic_t *flag)
{
  db->pq.interrupt = flag;
}

void chd_mdb_set_app_name(chd_mdb *db, const char *name)
{
  chd_pq_set_app_name(&db->pq, name);
}

int chd_mdb_set_session_sql(chd_mdb *db, const char *sql)
{
  char *copy = sql ? strdup(sql) : NULL;

  if (sql && !copy)
    return -1;
  free(db->session_sql);
  db->session_sql = copy;
  return 0;
}

/* Message DB 1.3 or later: get_last_stream_message() takes a type. */
static chd_store_rc check_version(chd_mdb *db)
{
  PGresult *res = PQexec(db->pq.conn, "SELECT message_store.message_store_version()");
  chd_store_rc rc = CHD_STORE_OK;
  int major = 0, minor = 0;

  if (PQresultStatus(res) != PGRES_TUPLES_OK) {
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (PQstatus(db->pq.conn) == CONNECTION_BAD)
      rc = fail(db, CHD_STORE_DISCONNECTED, "lost connection to message store at %s: %s",
                db->pq.describe, PQerrorMessage(db->pq.conn));
    else if (state && (!strcmp(state, "3F000") || !strcmp(state, "42883")))
      rc = fail(db, CHD_STORE_ERROR,
                "no Message DB in database %s: message_store.message_store_version()"
                " does not exist (install Message DB 1.3; scripts/dev-db sets up one)",
                db->pq.describe);
    else
      rc = fail(db, CHD_STORE_ERROR, "cannot check the Message DB version at %s: %s",
                db->pq.describe, PQresultErrorMessage(res));
  } else if (sscanf(PQgetvalue(res, 0, 0), "%d.%d", &major, &minor) != 2 ||
             major < 1 || (major == 1 && minor < 3)) {
    rc = fail(db, CHD_STORE_ERROR,
              "Message DB at %s is version %s; comphost needs 1.3 or later",
              db->pq.describe, PQgetvalue(res, 0, 0));
  }
  PQclear(res);
  return rc;
}

/* Run one statement of the session's setup; on failure, disconnect. */
static chd_store_rc setup(chd_mdb *db, const char *sql)
{
  PGresult *res = PQexec(db->pq.conn, sql);
  chd_store_rc rc = CHD_STORE_OK;

  if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK)
    rc = fail(db, PQstatus(db->pq.conn) == CONNECTION_BAD ? CHD_STORE_DISCONNECTED
                                                          : CHD_STORE_ERROR,
              "cannot set up the session at %s: %s", db->pq.describe,
              PQresultErrorMessage(res));
  PQclear(res);
  return rc;
}

chd_store_rc chd_mdb_connect(chd_mdb *db)
{
  PGresult *res;
  chd_store_rc rc = chd_pq_connect(&db->pq);

  if (rc != CHD_STORE_OK)
    return rc;
  rc = setup(db, "SET search_path = message_store, public; SET datestyle = 'ISO, YMD'");
  if (rc == CHD_STORE_OK)
    rc = check_version(db);
  if (rc == CHD_STORE_OK && db->session_sql)
    rc = setup(db, db->session_sql);
  for (size_t i = 0; rc == CHD_STORE_OK && i < sizeof statements / sizeof statements[0]; i++) {
    res = PQprepare(db->pq.conn, statements[i].name, statements[i].sql,
                    statements[i].nparams, NULL);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
      rc = fail(db, CHD_STORE_ERROR, "cannot prepare %s at %s: %s", statements[i].name,
                db->pq.describe, PQresultErrorMessage(res));
    PQclear(res);
  }
  if (rc != CHD_STORE_OK) {
    chd_pq_disconnect(&db->pq);
    return rc;
  }
  db->pq.error[0] = '\0';
  return CHD_STORE_OK;
}

static chd_store_rc connect_cb(void *arg)
{
  return chd_mdb_connect(arg);
}

chd_store_rc chd_mdb_reconnect(chd_mdb *db, int max_wait_ms)
{
  return chd_pq_reconnect(&db->pq, max_wait_ms, false, connect_cb, db);
}

/* Before a call: connect when there is no connection, or it is known broken. */
static chd_store_rc ensure_connected(chd_mdb *db)
{
  db->has_conflict = false;
  if (!chd_pq_broken(&db->pq))
    return CHD_STORE_OK;
  return chd_mdb_connect(db);
}

static chd_store_rc result_error(chd_mdb *db, PGresult *res, const char *what)
{
  return chd_pq_result_error(&db->pq, res, what);
}

static PGresult *exec_prepared(chd_mdb *db, int st, const char *const *params)
{
  return PQexecPrepared(db->pq.conn, statements[st].name, statements[st].nparams,
                        params, NULL, NULL, 0);
}

/* A statement planned for its parameters, each time. */
static PGresult *exec_planned(chd_mdb *db, const char *sql, int nparams,
                              const char *const *params)
{
  return PQexecParams(db->pq.conn, sql, nparams, NULL, params, NULL, NULL, 0);
}

static char *fmt_i64(char buf[24], int64_t v)
{
  snprintf(buf, 24, "%" PRId64, v);
  return buf;
}

static int parse_i64(const char *s, int64_t *out)
{
  char *end;
  long long v;

  if (!s || !*s)
    return -1;
  errno = 0;
  v = strtoll(s, &end, 10);
  if (errno || *end)
    return -1;
  *out = v;
  return 0;
}

/* "Wrong expected version: E (Stream: S, Stream Version: A)" */
static void record_conflict(chd_mdb *db, const char *stream_name,
                            int64_t expected, const char *message)
{
  const char *p = message ? strstr(message, "Stream Version: ") : NULL;
  int64_t actual = -1;

  if (p) {
    char *end;
    long long v = strtoll(p + strlen("Stream Version: "), &end, 10);
    if (end != p + strlen("Stream Version: "))
      actual = v;
  }
  free(db->conflict_stream);
  db->conflict_stream = strdup(stream_name);
  db->conflict.stream_name = db->conflict_stream ? db->conflict_stream : "";
  db->conflict.expected_version = expected;
  db->conflict.actual_version = actual;
  db->has_conflict = true;
}

chd_store_rc chd_mdb_write(chd_mdb *db, const char *stream_name, const char *id,
                         const char *type, const json_t *data,
                         const json_t *metadata, int64_t expected_version,
                         int64_t *out_position)
{
  char idbuf[CHD_UUID_LEN], evbuf[24];
  char *data_text = NULL, *meta_text = NULL;
  const char *params[6];
  PGresult *res;
  chd_store_rc rc;

  if (!stream_name || !*stream_name)
    return fail(db, CHD_STORE_INVALID, "cannot write a message: no stream name");
  if (chd_stream_is_all(stream_name))
    return fail(db, CHD_STORE_INVALID, "cannot write to '$all': it is no stream");
  if (!type || !*type)
    return fail(db, CHD_STORE_INVALID, "cannot write to '%s': messages must have a type",
                stream_name);
  if (id && !chd_uuid_valid(id))
    return fail(db, CHD_STORE_INVALID, "cannot write to '%s': message id '%s' is not a UUID",
                stream_name, id);
  if (expected_version != CH_VERSION_ANY && expected_version < -1)
    return fail(db, CHD_STORE_INVALID,
                "cannot write to '%s': expected version %" PRId64 " is below -1",
                stream_name, expected_version);
  rc = ensure_connected(db);
  if (rc != CHD_STORE_OK)
    return rc;

  if (!id) {
    chd_uuid_v4(idbuf);
    id = idbuf;
  }
  if (data && !(data_text = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY)))
    return fail(db, CHD_STORE_INVALID, "cannot write to '%s': data does not encode as JSON",
                stream_name);
  if (metadata && !(meta_text = json_dumps(metadata, JSON_COMPACT | JSON_ENCODE_ANY))) {
    free(data_text);
    return fail(db, CHD_STORE_INVALID, "cannot write to '%s': metadata does not encode as JSON",
                stream_name);
  }
  params[0] = id;
  params[1] = stream_name;
  params[2] = type;
  params[3] = data_text;
  params[4] = meta_text;
  params[5] = expected_version == CH_VERSION_ANY ? NULL : fmt_i64(evbuf, expected_version);

  res = exec_prepared(db, ST_WRITE, params);
  free(data_text);
  free(meta_text);

  if (PQresultStatus(res) == PGRES_TUPLES_OK) {
    if (out_position && parse_i64(PQgetvalue(res, 0, 0), out_position) != 0)
      *out_position = -1;
    PQclear(res);
    db->pq.error[0] = '\0';
    return CHD_STORE_OK;
  }

  {
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    const char *constraint = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);

    if (state && !strcmp(state, "P0001") && primary &&
        !strncmp(primary, "Wrong expected version", 22)) {
      record_conflict(db, stream_name, expected_version, primary);
      rc = fail(db, CHD_STORE_CONFLICT,
                "version conflict writing %s to '%s': expected version %" PRId64
                ", stream is at %" PRId64,
                type, stream_name, expected_version, db->conflict.actual_version);
    } else if (state && !strcmp(state, "23505") && constraint &&
               !strcmp(constraint, "messages_id")) {
      rc = fail(db, CHD_STORE_DUPLICATE_ID,
                "message id %s is already in the store (writing %s to '%s')",
                id, type, stream_name);
    } else {
      char what[300];
      snprintf(what, sizeof what, "writing %s to '%s'", type, stream_name);
      rc = result_error(db, res, what);
    }
  }
  PQclear(res);
  return rc;
}

int chd_message_decode(ch_message *m, const char *const fields[8],
                       char *err, size_t errlen)
{
  json_error_t jerr;

  memset(m, 0, sizeof *m);
  m->id = fields[0];
  m->stream_name = fields[1];
  m->type = fields[2];
  m->time = fields[7] ? fields[7] : "";
  if (!m->id || !m->stream_name || !m->type) {
    snprintf(err, errlen, "message has no id, stream name or type");
    return -1;
  }
  if (parse_i64(fields[3], &m->position) != 0 ||
      parse_i64(fields[4], &m->global_position) != 0) {
    snprintf(err, errlen, "message %s in '%s' has a bad position ('%s', '%s')",
             m->id, m->stream_name, fields[3] ? fields[3] : "", fields[4] ? fields[4] : "");
    return -1;
  }
  m->data = fields[5] ? json_loads(fields[5], JSON_DECODE_ANY, &jerr) : json_object();
  if (!m->data) {
    snprintf(err, errlen, "message at global position %" PRId64 " in '%s': data is not JSON"
             " that can be decoded: %s", m->global_position, m->stream_name, jerr.text);
    return -2;
  }
  m->metadata = fields[6] ? json_loads(fields[6], JSON_DECODE_ANY, &jerr) : json_object();
  if (!m->metadata) {
    snprintf(err, errlen, "message at global position %" PRId64 " in '%s': metadata is not"
             " JSON that can be decoded: %s", m->global_position, m->stream_name, jerr.text);
    json_decref(m->data);
    m->data = NULL;
    return -2;
  }
  return 0;
}

void chd_mdb_batch_release(chd_mdb_batch *batch)
{
  if (!batch)
    return;
  for (size_t i = 0; i < batch->count; i++) {
    json_decref(batch->messages[i].data);
    json_decref(batch->messages[i].metadata);
    if (batch->decode_errors)
      free(batch->decode_errors[i]);
  }
  free(batch->decode_errors);
  free(batch->messages);
  PQclear(batch->result_);
  memset(batch, 0, sizeof *batch);
}

/* Turn a result of message rows into a batch; takes ownership of res. */
static chd_store_rc fill_batch(chd_mdb *db, PGresult *res, const char *what,
                             const char *bound, chd_mdb_batch *out)
{
  int rows;

  memset(out, 0, sizeof *out);
  if (PQresultStatus(res) != PGRES_TUPLES_OK) {
    chd_store_rc rc = result_error(db, res, what);
    PQclear(res);
    return rc;
  }
  rows = PQntuples(res);
  out->result_ = res;
  if (rows == 0)
    return CHD_STORE_OK;
  out->messages = calloc((size_t)rows, sizeof *out->messages);
  if (!out->messages) {
    chd_mdb_batch_release(out);
    return fail(db, CHD_STORE_ERROR, "%s: out of memory for %d messages", what, rows);
  }
  for (int r = 0; r < rows; r++) {
    ch_message *m = &out->messages[r];
    const char *fields[8];
    char err[512];
    int drc;

    for (int c = 0; c < 8; c++)
      fields[c] = PQgetisnull(res, r, c) ? NULL : PQgetvalue(res, r, c);
    drc = chd_message_decode(m, fields, err, sizeof err);
    if (drc == 0 && PQnfields(res) > 8 && PQgetvalue(res, r, 8)[0] == 't') {
      /* a bounded read left out its data and metadata */
      snprintf(err, sizeof err, "message at global position %" PRId64 " in '%s': its data"
               " and metadata are larger than batch_bytes (%s bytes), it was not read",
               m->global_position, m->stream_name, bound ? bound : "?");
      drc = -2;
    }
    if (drc == -1) {
      chd_mdb_batch_release(out);
      return fail(db, CHD_STORE_ERROR, "%s: %s", what, err);
    }
    if (drc == -2) {
      /* a message all the same: it goes to the caller with empty data and
       * metadata and the reason, and the read goes on */
      if (!out->decode_errors &&
          !(out->decode_errors = calloc((size_t)rows, sizeof *out->decode_errors))) {
        chd_mdb_batch_release(out);
        return fail(db, CHD_STORE_ERROR, "%s: out of memory", what);
      }
      json_decref(m->data);
      json_decref(m->metadata);
      m->data = json_object();
      m->metadata = json_object();
      out->decode_errors[r] = strdup(err);
      if (!m->data || !m->metadata || !out->decode_errors[r]) {
        out->count++;
        chd_mdb_batch_release(out);
        return fail(db, CHD_STORE_ERROR, "%s: out of memory", what);
      }
    }
    out->count++;
  }
  db->pq.error[0] = '\0';
  return CHD_STORE_OK;
}

chd_store_rc chd_mdb_read_stream(chd_mdb *db, const char *stream_name,
                               int64_t from_position, int64_t batch_size,
                               chd_mdb_batch *out)
{
  char from[24], size[24], what[300];
  const char *params[3];
  chd_store_rc rc;

  memset(out, 0, sizeof *out);
  if (!stream_name || !*stream_name)
    return fail(db, CHD_STORE_INVALID, "cannot read a stream: no stream name");
  if (chd_stream_is_category(stream_name))
    return fail(db, CHD_STORE_INVALID,
                "'%s' is a category, not a stream (a stream name has a '-')", stream_name);
  rc = ensure_connected(db);
  if (rc != CHD_STORE_OK)
    return rc;
  params[0] = stream_name;
  params[1] = fmt_i64(from, from_position < 0 ? 0 : from_position);
  params[2] = fmt_i64(size, batch_size);
  snprintf(what, sizeof what, "reading stream '%s'", stream_name);
  return fill_batch(db, exec_prepared(db, ST_STREAM, params), what, NULL, out);
}

static chd_store_rc check_group(chd_mdb *db, const char *category,
                              const chd_mdb_category_opts *opts)
{
  if (opts->group_size == 0) {
    if (opts->group_member != 0)
      return fail(db, CHD_STORE_INVALID,
                  "reading category '%s': consumer group member %" PRId64
                  " given without a group size", category, opts->group_member);
    return CHD_STORE_OK;
  }
  if (opts->group_size < 0 || opts->group_size > 32767)
    return fail(db, CHD_STORE_INVALID,
                "reading category '%s': consumer group size %" PRId64
                " is out of range (1 to 32767)", category, opts->group_size);
  if (opts->group_member < 0 || opts->group_member >= opts->group_size)
    return fail(db, CHD_STORE_INVALID,
                "reading category '%s': consumer group member %" PRId64
                " is out of range (0 to %" PRId64 ")", category,
                opts->group_member, opts->group_size - 1);
  return CHD_STORE_OK;
}

chd_store_rc chd_mdb_read_category(chd_mdb *db, const char *category,
                                 int64_t from_global, int64_t batch_size,
                                 const chd_mdb_category_opts *opts,
                                 chd_mdb_batch *out)
{
  static const chd_mdb_category_opts none;
  char from[24], size[24], member[24], gsize[24], bytes[24], what[300];
  const char *params[7];
  chd_store_rc rc;

  memset(out, 0, sizeof *out);
  if (!opts)
    opts = &none;
  if (!category || !*category)
    return fail(db, CHD_STORE_INVALID, "cannot read a category: no category name");
  if (!chd_stream_is_category(category))
    return fail(db, CHD_STORE_INVALID,
                "'%s' is not a category: a category name has no '-'", category);
  if (opts->correlation && !chd_stream_is_category(opts->correlation))
    return fail(db, CHD_STORE_INVALID,
                "reading category '%s': correlation '%s' is not a category (it has a '-')",
                category, opts->correlation);
  rc = check_group(db, category, opts);
  if (rc != CHD_STORE_OK)
    return rc;
  rc = ensure_connected(db);
  if (rc != CHD_STORE_OK)
    return rc;
  params[0] = category;
  params[1] = fmt_i64(from, from_global < 1 ? 1 : from_global);
  params[2] = fmt_i64(size, batch_size);
  params[3] = opts->correlation;
  params[4] = opts->group_size ? fmt_i64(member, opts->group_member) : NULL;
  params[5] = opts->group_size ? fmt_i64(gsize, opts->group_size) : NULL;
  params[6] = fmt_i64(bytes, opts->max_bytes);
  snprintf(what, sizeof what, "reading category '%s'", category);
  if (opts->group_size > 0 && opts->max_bytes > 0)
    return fill_batch(db, exec_planned(db, category_group_bounded, 7, params), what,
                      params[6], out);
  if (opts->group_size > 0)
    return fill_batch(db, exec_planned(db, category_group, 6, params), what, NULL, out);
  if (opts->max_bytes > 0)
    return fill_batch(db, exec_prepared(db, ST_CATEGORY_BOUNDED, params), what, params[6],
                      out);
  return fill_batch(db, exec_prepared(db, ST_CATEGORY, params), what, NULL, out);
}

chd_store_rc chd_mdb_read_all(chd_mdb *db, int64_t from_global,
                            int64_t batch_size, int64_t max_bytes, chd_mdb_batch *out)
{
  char from[24], size[24], bytes[24];
  const char *params[3];
  chd_store_rc rc;

  memset(out, 0, sizeof *out);
  rc = ensure_connected(db);
  if (rc != CHD_STORE_OK)
    return rc;
  params[0] = fmt_i64(from, from_global < 1 ? 1 : from_global);
  params[1] = fmt_i64(size, batch_size);
  params[2] = fmt_i64(bytes, max_bytes);
  if (max_bytes > 0)
    return fill_batch(db, exec_prepared(db, ST_ALL_BOUNDED, params), "reading '$all'",
                      params[2], out);
  return fill_batch(db, exec_prepared(db, ST_ALL, params), "reading '$all'", NULL, out);
}

chd_store_rc chd_mdb_read(chd_mdb *db, const char *stream_name, int64_t from,
                        int64_t batch_size, chd_mdb_batch *out)
{
  if (chd_stream_is_all(stream_name))
    return chd_mdb_read_all(db, from, batch_size, 0, out);
  if (chd_stream_is_category(stream_name))
    return chd_mdb_read_category(db, stream_name, from, batch_size, NULL, out);
  return chd_mdb_read_stream(db, stream_name, from, batch_size, out);
}

chd_store_rc chd_mdb_read_last(chd_mdb *db, const char *stream_name,
                             const char *type, chd_mdb_batch *out)
{
  char what[300];
  const char *params[2];
  chd_store_rc rc;

  memset(out, 0, sizeof *out);
  if (!stream_name || !*stream_name)
    return fail(db, CHD_STORE_INVALID, "cannot read the last message: no stream name");
  if (chd_stream_is_category(stream_name))
    return fail(db, CHD_STORE_INVALID,
                "cannot read the last message of '%s': it is a category, not a stream",
                stream_name);
  rc = ensure_connected(db);
  if (rc != CHD_STORE_OK)
    return rc;
  params[0] = stream_name;
  params[1] = type;
  snprintf(what, sizeof what, "reading the last message of '%s'", stream_name);
  return fill_batch(db, exec_prepared(db, ST_LAST, params), what, NULL, out);
}

chd_store_rc chd_mdb_stream_version(chd_mdb *db, const char *stream_name,
                                  int64_t *out_version)
{
  const char *params[1];
  PGresult *res;
  chd_store_rc rc;

  if (!stream_name || !*stream_name)
    return fail(db, CHD_STORE_INVALID, "cannot get a stream version: no stream name");
  rc = ensure_connected(db);
  if (rc != CHD_STORE_OK)
    return rc;
  params[0] = stream_name;
  res = exec_prepared(db, ST_VERSION, params);
  if (PQresultStatus(res) != PGRES_TUPLES_OK) {
    char what[300];
    snprintf(what, sizeof what, "reading the version of '%s'", stream_name);
    rc = result_error(db, res, what);
  } else if (PQgetisnull(res, 0, 0)) {
    *out_version = -1;
  } else if (parse_i64(PQgetvalue(res, 0, 0), out_version) != 0) {
    rc = fail(db, CHD_STORE_ERROR, "stream version of '%s' is not a number: '%s'",
              stream_name, PQgetvalue(res, 0, 0));
  }
  PQclear(res);
  return rc;
}

chd_store_rc chd_mdb_snapshot(chd_mdb *db, int64_t *xmin, int64_t *xmax)
{
  PGresult *res;
  chd_store_rc rc = ensure_connected(db);

  if (rc != CHD_STORE_OK)
    return rc;
  res = exec_prepared(db, ST_SNAPSHOT, NULL);
  if (PQresultStatus(res) != PGRES_TUPLES_OK)
    rc = result_error(db, res, "reading the current snapshot");
  else if (parse_i64(PQgetvalue(res, 0, 0), xmin) != 0 ||
           parse_i64(PQgetvalue(res, 0, 1), xmax) != 0)
    rc = fail(db, CHD_STORE_ERROR, "the current snapshot is not two numbers");
  PQclear(res);
  return rc;
}

chd_store_rc chd_mdb_exec(chd_mdb *db, const char *sql)
{
  /* no reconnection here: a transaction does not survive one */
  return chd_pq_exec(&db->pq, sql);
}

chd_store_rc chd_mdb_commit(chd_mdb *db)
{
  return chd_pq_commit(&db->pq);
}

/* One bigint (NULL and no row read as 0) from a query with parameters. */
static chd_store_rc one_int(chd_mdb *db, const char *sql, int n, const char *const *params,
                            int64_t *out, const char *what)
{
  PGresult *res;
  chd_store_rc rc = ensure_connected(db);

  if (rc != CHD_STORE_OK)
    return rc;
  res = PQexecParams(db->pq.conn, sql, n, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(res) != PGRES_TUPLES_OK)
    rc = result_error(db, res, what);
  else if (PQntuples(res) == 0 || PQgetisnull(res, 0, 0))
    *out = 0;
  else if (parse_i64(PQgetvalue(res, 0, 0), out) != 0)
    rc = fail(db, CHD_STORE_ERROR, "%s: '%s' is not a number", what, PQgetvalue(res, 0, 0));
  PQclear(res);
  return rc;
}

chd_store_rc chd_mdb_head(chd_mdb *db, const char *stream, int64_t *head)
{
  const char *params[1] = { stream };
  char what[300];

  snprintf(what, sizeof what, "reading the head of '%s'", stream);
  if (chd_stream_is_all(stream))
    return one_int(db, "SELECT max(global_position) FROM message_store.messages", 0, NULL,
                   head, what);
  /* the category index answers it from its last entry */
  return one_int(db, "SELECT max(global_position) FROM message_store.messages"
                 " WHERE message_store.category(stream_name) = $1", 1, params, head, what);
}

chd_store_rc chd_mdb_lag(chd_mdb *db, const char *stream, int64_t position,
                         int64_t group_member, int64_t group_size, int64_t bound,
                         int64_t *lag)
{
  char pos[24], lim[24], member[24], size[24], what[300];
  const char *params[5] = { pos, lim, stream, member, size };

  fmt_i64(pos, position);
  fmt_i64(lim, bound);
  fmt_i64(member, group_member);
  fmt_i64(size, group_size);
  snprintf(what, sizeof what, "counting the messages of '%s' after %" PRId64, stream, position);
  if (chd_stream_is_all(stream))
    return one_int(db, "SELECT count(*) FROM (SELECT 1 FROM message_store.messages"
                   " WHERE global_position > $1::bigint LIMIT $2::bigint) AS m",
                   2, params, lag, what);
  if (group_size > 0)
    return one_int(db, "SELECT count(*) FROM (SELECT 1 FROM message_store.messages"
                   " WHERE message_store.category(stream_name) = $3"
                   " AND global_position > $1::bigint" GROUP_FILTER("$5", "$4")
                   " LIMIT $2::bigint) AS m",
                   5, params, lag, what);
  return one_int(db, "SELECT count(*) FROM (SELECT 1 FROM message_store.messages"
                 " WHERE message_store.category(stream_name) = $3"
                 " AND global_position > $1::bigint LIMIT $2::bigint) AS m",
                 3, params, lag, what);
}

chd_store_rc chd_mdb_global_position(chd_mdb *db, const char *id, int64_t *out)
{
  const char *params[1] = { id };
  char what[100];

  *out = -1;
  if (!id || !chd_uuid_valid(id))
    return fail(db, CHD_STORE_INVALID, "'%s' is not a message id", id ? id : "");
  snprintf(what, sizeof what, "looking up message %s", id);
  return one_int(db, "SELECT coalesce((SELECT global_position FROM message_store.messages"
                 " WHERE id = $1::uuid), -1)", 1, params, out, what);
}

chd_store_rc chd_mdb_last_age(chd_mdb *db, const char *stream_name, const char *type,
                              int64_t *age_ms)
{
  const char *params[2] = { stream_name, type };
  char what[400];

  snprintf(what, sizeof what, "reading the time of the last message of '%s'", stream_name);
  *age_ms = -1;
  return one_int(db, "SELECT coalesce((SELECT (extract(epoch FROM (now() AT TIME ZONE 'utc')"
                 " - time) * 1000)::bigint FROM message_store.get_last_stream_message("
                 "$1::varchar, $2::varchar)), -1)", 2, params, age_ms, what);
}

chd_store_rc chd_mdb_read_trace(chd_mdb *db, const char *trace_id, int64_t limit,
                                chd_mdb_batch *out)
{
  char lim[24], what[300];
  const char *params[2] = { trace_id, fmt_i64(lim, limit) };
  chd_store_rc rc;

  memset(out, 0, sizeof *out);
  rc = ensure_connected(db);
  if (rc != CHD_STORE_OK)
    return rc;
  snprintf(what, sizeof what, "reading trace %s", trace_id);
  return fill_batch(db, PQexecParams(db->pq.conn,
                                     "SELECT " ALL_COLUMNS " FROM message_store.messages"
                                     " WHERE metadata->>'traceId' = $1"
                                     " ORDER BY global_position LIMIT $2::bigint",
                                     2, NULL, params, NULL, NULL, 0), what, NULL, out);
}

#define TRACE_INDEX "messages_trace_id"   /* in schema message_store */

chd_store_rc chd_mdb_trace_index(chd_mdb *db, int *state, int64_t *bytes)
{
  PGresult *res;
  chd_store_rc rc = ensure_connected(db);

  *state = 0;
  *bytes = 0;
  if (rc != CHD_STORE_OK)
    return rc;
  res = PQexec(db->pq.conn, "SELECT i.indisvalid, pg_relation_size(c.oid)"
                            " FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid"
                            " JOIN pg_namespace n ON n.oid = c.relnamespace"
                            " WHERE n.nspname = 'message_store'"
                            " AND c.relname = '" TRACE_INDEX "'");
  if (PQresultStatus(res) != PGRES_TUPLES_OK) {
    rc = result_error(db, res, "looking for the index " TRACE_INDEX);
  } else if (PQntuples(res) > 0) {
    *state = !strcmp(PQgetvalue(res, 0, 0), "t") ? 1 : -1;
    if (parse_i64(PQgetvalue(res, 0, 1), bytes) != 0)
      *bytes = 0;
  }
  PQclear(res);
  return rc;
}

/* A statement of the index's upkeep; the server's primary message only,
 * with a hint when the role may not do it. */
static chd_store_rc index_ddl(chd_mdb *db, const char *sql, const char *doing)
{
  PGresult *res;
  chd_store_rc rc = ensure_connected(db);

  if (rc != CHD_STORE_OK)
    return rc;
  res = PQexec(db->pq.conn, sql);
  if (PQresultStatus(res) != PGRES_COMMAND_OK) {
    const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    rc = fail(db, PQstatus(db->pq.conn) == CONNECTION_BAD ? CHD_STORE_DISCONNECTED
                                                          : CHD_STORE_ERROR,
              "%s: %s%s", doing, primary ? primary : PQresultErrorMessage(res),
              code && !strcmp(code, "42501")
                ? " (it takes the owner of the messages table: give one with --admin-url)"
                : "");
  }
  PQclear(res);
  return rc;
}

chd_store_rc chd_mdb_trace_index_create(chd_mdb *db)
{
  return index_ddl(db, "CREATE INDEX CONCURRENTLY IF NOT EXISTS " TRACE_INDEX
                   " ON message_store.messages ((metadata->>'traceId'))"
                   " WHERE metadata->>'traceId' IS NOT NULL",
                   "creating the index " CHD_MDB_TRACE_INDEX);
}

chd_store_rc chd_mdb_trace_index_drop(chd_mdb *db)
{
  return index_ddl(db, "DROP INDEX CONCURRENTLY " CHD_MDB_TRACE_INDEX,
                   "dropping the invalid index " CHD_MDB_TRACE_INDEX);
}

chd_store_rc chd_mdb_try_lock(chd_mdb *db, int64_t key, bool *got)
{
  char k[24];
  const char *params[1] = { fmt_i64(k, key) };
  PGresult *res;
  chd_store_rc rc = ensure_connected(db);

  *got = false;
  if (rc != CHD_STORE_OK)
    return rc;
  res = PQexecParams(db->pq.conn, "SELECT pg_try_advisory_lock($1::bigint)", 1, NULL,
                     params, NULL, NULL, 0);
  if (PQresultStatus(res) != PGRES_TUPLES_OK)
    rc = result_error(db, res, "taking an advisory lock");
  else
    *got = !strcmp(PQgetvalue(res, 0, 0), "t");
  PQclear(res);
  return rc;
}
