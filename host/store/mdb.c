/* mdb.c - the Message DB client (libpq). */
#include "mdb.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
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

/* The channel notified for category `c`, an SQL expression (mdb.h):
 * "mdb:<c>", or "mdb:<md5 of c>" when that would pass 63 bytes. */
#define CHANNEL(c) \
  "CASE WHEN octet_length(" c ") <= 59 THEN 'mdb:' || " c \
  " ELSE 'mdb:' || pg_catalog.md5(" c ") END"
#define WRITE_CALL \
  "write_message($1::varchar, $2::varchar, $3::varchar, $4::jsonb, $5::jsonb, $6::bigint)"
#define NOTIFY_COLUMNS \
  ", pg_catalog.pg_notify(" CHANNEL("message_store.category($2::varchar)") ", '')," \
  " pg_catalog.pg_notify('mdb:$all', '')"
/* Look before writing (chd_mdb_write_opts.checked): column 0 is the
 * position, NULL when nothing was written because column 1 says the id is
 * there already or column 2, the stream's version, is not the expected one. */
#define CHECKED_WRITE(notify) \
  "SELECT CASE WHEN c.dup OR c.version <> $6::bigint THEN NULL ELSE " WRITE_CALL " END," \
  " c.dup, c.version" notify                                                          \
  " FROM (SELECT EXISTS (SELECT 1 FROM messages WHERE id = $1::varchar::uuid) AS dup," \
  "  CASE WHEN $6::bigint IS NULL THEN NULL"                                           \
  "  ELSE coalesce(stream_version($2::varchar), -1) END AS version) AS c"
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
  { "chd_write", "SELECT " WRITE_CALL, 6 },
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
  /* the writes of chd_mdb_write_with(), by its options */
  { "chd_write_notify", "SELECT " WRITE_CALL NOTIFY_COLUMNS, 6 },
  { "chd_write_checked", CHECKED_WRITE(""), 6 },
  { "chd_write_checked_notify", CHECKED_WRITE(NOTIFY_COLUMNS), 6 },
};

enum {
  ST_WRITE, ST_STREAM, ST_CATEGORY, ST_LAST, ST_VERSION, ST_SNAPSHOT, ST_ALL,
  ST_CATEGORY_BOUNDED, ST_ALL_BOUNDED, ST_WRITE_NOTIFY, ST_WRITE_CHECKED,
  ST_WRITE_CHECKED_NOTIFY
};

/* A category listened to (chd_mdb_listen). */
struct listening {
  char *category;
  char *channel;              /* its channel; NULL until first connected */
  bool notified;
};

/* A consumer group member's share of a category (GROUP_FILTER), planned
 * for its parameters each time (exec_planned): 6 and 7 parameters. */
static const char category_group[] = CATEGORY_GROUP;
static const char category_group_bounded[] = BOUNDED(CATEGORY_GROUP, "$7");

struct chd_mdb {
  chd_pq pq;
  char *session_sql;          /* run on every new session, or NULL */
  struct listening *listens;
  size_t listen_count;
  bool has_conflict;
  chd_mdb_conflict conflict;
  char *conflict_stream;
  /* a read sent by chd_mdb_send_read(), not taken yet */
  bool pending;
  char pending_what[300];     /* "reading category 'x'", for errors */
  char pending_bound[24];     /* the byte bound of a bounded read, "" if none */
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
  for (size_t i = 0; i < db->listen_count; i++) {
    free(db->listens[i].category);
    free(db->listens[i].channel);
  }
  free(db->listens);
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

/* LISTEN on l's channel, which the server names (CHANNEL), on the
 * connection as it is. */
static chd_store_rc listen_on(chd_mdb *db, struct listening *l)
{
  const char *params[1] = { l->category };
  PGresult *res = PQexecParams(db->pq.conn, "SELECT " CHANNEL("$1::text") ", 'LISTEN '"
                               " || quote_ident(" CHANNEL("$1::text") ")",
                               1, NULL, params, NULL, NULL, 0);
  chd_store_rc rc = CHD_STORE_OK;

  if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
    rc = chd_pq_result_error(&db->pq, res, "naming the channel to listen on");
  } else {
    if (!l->channel && !(l->channel = strdup(PQgetvalue(res, 0, 0))))
      rc = fail(db, CHD_STORE_ERROR, "out of memory");
    if (rc == CHD_STORE_OK)
      rc = chd_pq_exec(&db->pq, PQgetvalue(res, 0, 1));
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
  chd_store_rc rc;

  db->pending = false;        /* a new session has nothing under way */
  rc = chd_pq_connect(&db->pq);

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
  for (size_t i = 0; rc == CHD_STORE_OK && i < db->listen_count; i++)
    rc = listen_on(db, &db->listens[i]);
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

/* The failure of a write whose statement failed: a conflict, a reused id
 * or anything else, in db's error; res is not cleared. */
static chd_store_rc write_failed(chd_mdb *db, PGresult *res, const char *stream_name,
                                 const char *id, const char *type, int64_t expected_version)
{
  const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
  const char *constraint = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);
  char what[300];

  if (PQstatus(db->pq.conn) != CONNECTION_BAD && state && !strcmp(state, "P0001") &&
      primary && !strncmp(primary, "Wrong expected version", 22)) {
    record_conflict(db, stream_name, expected_version, primary);
    return fail(db, CHD_STORE_CONFLICT,
                "version conflict writing %s to '%s': expected version %" PRId64
                ", stream is at %" PRId64,
                type, stream_name, expected_version, db->conflict.actual_version);
  }
  if (PQstatus(db->pq.conn) != CONNECTION_BAD && state && !strcmp(state, "23505") &&
      constraint && !strcmp(constraint, "messages_id"))
    return fail(db, CHD_STORE_DUPLICATE_ID,
                "message id %s is already in the store (writing %s to '%s')",
                id, type, stream_name);
  snprintf(what, sizeof what, "writing %s to '%s'", type, stream_name);
  return result_error(db, res, what);
}

chd_store_rc chd_mdb_write(chd_mdb *db, const char *stream_name, const char *id,
                         const char *type, const json_t *data,
                         const json_t *metadata, int64_t expected_version,
                         int64_t *out_position)
{
  return chd_mdb_write_with(db, stream_name, id, type, data, metadata, expected_version,
                            NULL, out_position);
}

chd_store_rc chd_mdb_write_with(chd_mdb *db, const char *stream_name, const char *id,
                                const char *type, const json_t *data,
                                const json_t *metadata, int64_t expected_version,
                                const chd_mdb_write_opts *opts, int64_t *out_position)
{
  static const chd_mdb_write_opts plain;
  char idbuf[CHD_UUID_LEN], evbuf[24];
  char *data_text = NULL, *meta_text = NULL;
  const char *params[6];
  PGresult *res;
  chd_store_rc rc;
  int st;

  if (!opts)
    opts = &plain;
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
  db->has_conflict = false;
  if (opts->checked || opts->commit) {
    if (!chd_pq_in_transaction(&db->pq))
      return fail(db, CHD_STORE_DISCONNECTED, "cannot write %s to '%s': the transaction was"
                  " lost with the connection to the message store", type, stream_name);
  } else if ((rc = ensure_connected(db)) != CHD_STORE_OK) {
    return rc;
  }

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

  st = opts->checked ? (opts->notify ? ST_WRITE_CHECKED_NOTIFY : ST_WRITE_CHECKED)
                     : (opts->notify ? ST_WRITE_NOTIFY : ST_WRITE);
  if (opts->commit) {
    char what[300];
    snprintf(what, sizeof what, "writing %s to '%s'", type, stream_name);
    rc = chd_pq_then_commit(&db->pq, NULL, statements[st].name, statements[st].nparams,
                            params, what, &res);
  } else {
    res = exec_prepared(db, st, params);
    rc = PQresultStatus(res) == PGRES_TUPLES_OK ? CHD_STORE_OK : CHD_STORE_ERROR;
  }
  free(data_text);
  free(meta_text);

  if (PQresultStatus(res) != PGRES_TUPLES_OK) {
    rc = write_failed(db, res, stream_name, id, type, expected_version);
  } else if (opts->checked && PQgetisnull(res, 0, 0)) {
    /* looked and did not write: the id is there, or the version is another */
    if (!strcmp(PQgetvalue(res, 0, 1), "t")) {
      rc = fail(db, CHD_STORE_DUPLICATE_ID,
                "message id %s is already in the store (writing %s to '%s')",
                id, type, stream_name);
    } else {
      char text[100];
      snprintf(text, sizeof text, "Stream Version: %s", PQgetvalue(res, 0, 2));
      record_conflict(db, stream_name, expected_version, text);
      rc = fail(db, CHD_STORE_CONFLICT,
                "version conflict writing %s to '%s': expected version %" PRId64
                ", stream is at %" PRId64,
                type, stream_name, expected_version, db->conflict.actual_version);
    }
  } else if (rc == CHD_STORE_OK) {
    /* written (and, with opts->commit, committed) */
    if (out_position && parse_i64(PQgetvalue(res, 0, 0), out_position) != 0)
      *out_position = -1;
    db->pq.error[0] = '\0';
  }
  /* else: written, and the commit failed (the error is in db's) */
  PQclear(res);
  return rc;
}

/* The envelope of a row: everything but data and metadata (see
 * chd_message_decode). Returns 0, or -1 with a reason. */
static int decode_envelope(ch_message *m, const char *const fields[8], char *err,
                           size_t errlen)
{
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
  return 0;
}

/* Decode `text` (NULL: SQL NULL, an empty object) into *out, a new
 * reference. Returns 0, or -1 with a reason naming m and `part`. */
static int decode_part(json_t **out, const char *text, const char *part, const ch_message *m,
                       char *err, size_t errlen)
{
  json_error_t jerr;

  *out = text ? json_loads(text, JSON_DECODE_ANY, &jerr) : json_object();
  if (*out)
    return 0;
  if (text)
    snprintf(err, errlen, "message at global position %" PRId64 " in '%s': %s is not JSON"
             " that can be decoded: %s", m->global_position, m->stream_name, part, jerr.text);
  else
    snprintf(err, errlen, "message at global position %" PRId64 " in '%s': out of memory",
             m->global_position, m->stream_name);
  return -1;
}

int chd_message_decode(ch_message *m, const char *const fields[8],
                       char *err, size_t errlen)
{
  if (decode_envelope(m, fields, err, errlen) != 0)
    return -1;
  if (decode_part(&m->data, fields[5], "data", m, err, errlen) != 0)
    return -2;
  if (decode_part(&m->metadata, fields[6], "metadata", m, err, errlen) != 0) {
    json_decref(m->data);
    m->data = NULL;
    return -2;
  }
  return 0;
}

/* A message that cannot be decoded has empty objects for data and metadata
 * (left NULL only when out of memory). */
static void empty_parts(ch_message *m)
{
  if (!m->data)
    m->data = json_object();
  if (!m->metadata)
    m->metadata = json_object();
}

/* Record why message i cannot be decoded. Returns the kept reason, or NULL
 * when out of memory. */
static const char *note_decode_error(chd_mdb_batch *b, size_t i, const char *why)
{
  if (!b->decode_errors && !(b->decode_errors = calloc(b->count, sizeof *b->decode_errors)))
    return NULL;
  free(b->decode_errors[i]);
  b->decode_errors[i] = strdup(why);
  empty_parts(&b->messages[i]);
  return b->decode_errors[i];
}

const char *chd_mdb_batch_decode(chd_mdb_batch *b, size_t i, unsigned parts)
{
  static const char out_of_memory[] = "out of memory decoding a message";
  ch_message *m = &b->messages[i];
  char err[512];
  const char *kept;

  if (b->decode_errors && b->decode_errors[i])
    return b->decode_errors[i];
  if (!b->texts)
    return NULL;
  if ((parts & CHD_MDB_DATA) && !m->data &&
      decode_part(&m->data, b->texts[2 * i], "data", m, err, sizeof err) != 0)
    goto failed;
  if ((parts & CHD_MDB_METADATA) && !m->metadata &&
      decode_part(&m->metadata, b->texts[2 * i + 1], "metadata", m, err, sizeof err) != 0)
    goto failed;
  return NULL;
failed:
  kept = note_decode_error(b, i, err);
  return kept ? kept : out_of_memory;
}

ptrdiff_t chd_mdb_batch_find(const chd_mdb_batch *b, const ch_message *m)
{
  size_t lo = 0, hi = b->count;

  /* a batch is in global order */
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int64_t gp = b->messages[mid].global_position;
    if (gp < m->global_position) {
      lo = mid + 1;
    } else if (gp > m->global_position) {
      hi = mid;
    } else {
      const ch_message *at = &b->messages[mid];
      bool same = at->id == m->id || (at->id && m->id && strcmp(at->id, m->id) == 0);
      return same ? (ptrdiff_t)mid : -1;
    }
  }
  return -1;
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
  free(batch->texts);
  free(batch->messages);
  PQclear(batch->result_);
  memset(batch, 0, sizeof *batch);
}

/*
 * Turn a result of message rows into a batch; takes ownership of res. A
 * lazy batch keeps the texts of data and metadata for chd_mdb_batch_decode();
 * else every message is decoded now.
 */
static chd_store_rc fill_batch(chd_mdb *db, PGresult *res, const char *what,
                               const char *bound, bool lazy, chd_mdb_batch *out)
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
  out->texts = calloc(2 * (size_t)rows, sizeof *out->texts);
  if (!out->messages || !out->texts) {
    chd_mdb_batch_release(out);
    return fail(db, CHD_STORE_ERROR, "%s: out of memory for %d messages", what, rows);
  }
  out->count = (size_t)rows;  /* zeroed until filled: releasable at any point */
  for (int r = 0; r < rows; r++) {
    ch_message *m = &out->messages[r];
    const char *fields[8];
    char err[512];

    for (int c = 0; c < 8; c++)
      fields[c] = PQgetisnull(res, r, c) ? NULL : PQgetvalue(res, r, c);
    if (decode_envelope(m, fields, err, sizeof err) != 0) {
      chd_mdb_batch_release(out);
      return fail(db, CHD_STORE_ERROR, "%s: %s", what, err);
    }
    out->texts[2 * r] = fields[5];
    out->texts[2 * r + 1] = fields[6];
    if (PQnfields(res) > 8 && PQgetvalue(res, r, 8)[0] == 't') {
      /* a bounded read left out its data and metadata: a message all the
       * same, which goes to the caller with the reason */
      snprintf(err, sizeof err, "message at global position %" PRId64 " in '%s': its data"
               " and metadata are larger than batch_bytes (%s bytes), it was not read",
               m->global_position, m->stream_name, bound ? bound : "?");
      if (!note_decode_error(out, (size_t)r, err) || !m->data || !m->metadata) {
        chd_mdb_batch_release(out);
        return fail(db, CHD_STORE_ERROR, "%s: out of memory", what);
      }
    }
  }
  if (!lazy) {
    for (size_t i = 0; i < out->count; i++) {
      const char *why = chd_mdb_batch_decode(out, i, CHD_MDB_DATA | CHD_MDB_METADATA);
      ch_message *m = &out->messages[i];
      /* a message that does not decode goes on with its reason; a reason
       * not kept, or no empty objects, is out of memory */
      if ((why && (!out->decode_errors || !out->decode_errors[i])) || !m->data ||
          !m->metadata) {
        chd_mdb_batch_release(out);
        return fail(db, CHD_STORE_ERROR, "%s: out of memory", what);
      }
    }
    free(out->texts);
    out->texts = NULL;
  }
  db->pq.error[0] = '\0';
  return CHD_STORE_OK;
}

/* A read of messages, ready to run: its statement, parameters and what to
 * call it in errors. */
typedef struct read_req {
  int st;
  const char *sql;            /* planned each time instead (exec_planned), or NULL */
  int nparams;                /* sql's */
  const char *params[7];
  char from[24], size[24], member[24], gsize[24], bytes[24];
  char what[300];
  const char *bound;          /* the byte bound of a bounded read, or NULL */
} read_req;

static chd_store_rc prepare_stream(chd_mdb *db, const char *stream_name, int64_t from_position,
                                   int64_t batch_size, read_req *rq)
{
  if (!stream_name || !*stream_name)
    return fail(db, CHD_STORE_INVALID, "cannot read a stream: no stream name");
  if (chd_stream_is_category(stream_name))
    return fail(db, CHD_STORE_INVALID,
                "'%s' is a category, not a stream (a stream name has a '-')", stream_name);
  rq->st = ST_STREAM;
  rq->sql = NULL;
  rq->params[0] = stream_name;
  rq->params[1] = fmt_i64(rq->from, from_position < 0 ? 0 : from_position);
  rq->params[2] = fmt_i64(rq->size, batch_size);
  rq->bound = NULL;
  snprintf(rq->what, sizeof rq->what, "reading stream '%s'", stream_name);
  return CHD_STORE_OK;
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

static chd_store_rc prepare_category(chd_mdb *db, const char *category, int64_t from_global,
                                     int64_t batch_size, const chd_mdb_category_opts *opts,
                                     read_req *rq)
{
  chd_store_rc rc;

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
  rq->st = opts->max_bytes > 0 ? ST_CATEGORY_BOUNDED : ST_CATEGORY;
  /* a consumer group member's read: GROUP_FILTER, planned for its position */
  rq->sql = opts->group_size <= 0 ? NULL
            : opts->max_bytes > 0 ? category_group_bounded : category_group;
  rq->nparams = opts->max_bytes > 0 ? 7 : 6;
  rq->params[0] = category;
  rq->params[1] = fmt_i64(rq->from, from_global < 1 ? 1 : from_global);
  rq->params[2] = fmt_i64(rq->size, batch_size);
  rq->params[3] = opts->correlation;
  rq->params[4] = opts->group_size ? fmt_i64(rq->member, opts->group_member) : NULL;
  rq->params[5] = opts->group_size ? fmt_i64(rq->gsize, opts->group_size) : NULL;
  rq->params[6] = fmt_i64(rq->bytes, opts->max_bytes);
  rq->bound = opts->max_bytes > 0 ? rq->params[6] : NULL;
  snprintf(rq->what, sizeof rq->what, "reading category '%s'", category);
  return CHD_STORE_OK;
}

static void prepare_all(int64_t from_global, int64_t batch_size, int64_t max_bytes,
                        read_req *rq)
{
  rq->st = max_bytes > 0 ? ST_ALL_BOUNDED : ST_ALL;
  rq->sql = NULL;
  rq->params[0] = fmt_i64(rq->from, from_global < 1 ? 1 : from_global);
  rq->params[1] = fmt_i64(rq->size, batch_size);
  rq->params[2] = fmt_i64(rq->bytes, max_bytes);
  rq->bound = max_bytes > 0 ? rq->params[2] : NULL;
  snprintf(rq->what, sizeof rq->what, "reading '$all'");
}

/* Run a read and wait for its batch, decoded. */
static chd_store_rc run_read(chd_mdb *db, const read_req *rq, chd_mdb_batch *out)
{
  chd_store_rc rc = ensure_connected(db);

  if (rc != CHD_STORE_OK)
    return rc;
  return fill_batch(db, rq->sql ? exec_planned(db, rq->sql, rq->nparams, rq->params)
                                : exec_prepared(db, rq->st, rq->params),
                    rq->what, rq->bound, false, out);
}

chd_store_rc chd_mdb_read_stream(chd_mdb *db, const char *stream_name,
                               int64_t from_position, int64_t batch_size,
                               chd_mdb_batch *out)
{
  read_req rq;
  chd_store_rc rc;

  memset(out, 0, sizeof *out);
  rc = prepare_stream(db, stream_name, from_position, batch_size, &rq);
  return rc == CHD_STORE_OK ? run_read(db, &rq, out) : rc;
}

chd_store_rc chd_mdb_read_category(chd_mdb *db, const char *category,
                                 int64_t from_global, int64_t batch_size,
                                 const chd_mdb_category_opts *opts,
                                 chd_mdb_batch *out)
{
  static const chd_mdb_category_opts none;
  read_req rq;
  chd_store_rc rc;

  memset(out, 0, sizeof *out);
  rc = prepare_category(db, category, from_global, batch_size, opts ? opts : &none, &rq);
  return rc == CHD_STORE_OK ? run_read(db, &rq, out) : rc;
}

chd_store_rc chd_mdb_read_all(chd_mdb *db, int64_t from_global,
                            int64_t batch_size, int64_t max_bytes, chd_mdb_batch *out)
{
  read_req rq;

  memset(out, 0, sizeof *out);
  prepare_all(from_global, batch_size, max_bytes, &rq);
  return run_read(db, &rq, out);
}

chd_store_rc chd_mdb_send_read(chd_mdb *db, const char *stream, int64_t from,
                               int64_t batch_size, const chd_mdb_category_opts *opts)
{
  static const chd_mdb_category_opts none;
  read_req rq;
  chd_store_rc rc;

  if (!opts)
    opts = &none;
  if (db->pending)
    return fail(db, CHD_STORE_INVALID, "a read is under way on this connection already");
  if (chd_stream_is_all(stream)) {
    if (opts->correlation || opts->group_size)
      return fail(db, CHD_STORE_INVALID,
                  "reading '$all': it takes no correlation or consumer group");
    prepare_all(from, batch_size, opts->max_bytes, &rq);
    rc = CHD_STORE_OK;
  } else if (stream && chd_stream_is_category(stream)) {
    rc = prepare_category(db, stream, from, batch_size, opts, &rq);
  } else {
    rc = prepare_stream(db, stream, from, batch_size, &rq);
  }
  if (rc == CHD_STORE_OK)
    rc = ensure_connected(db);
  if (rc != CHD_STORE_OK)
    return rc;
  if (!(rq.sql ? PQsendQueryParams(db->pq.conn, rq.sql, rq.nparams, NULL, rq.params, NULL,
                                   NULL, 0)
               : PQsendQueryPrepared(db->pq.conn, statements[rq.st].name,
                                     statements[rq.st].nparams, rq.params, NULL, NULL, 0))) {
    char why[512];
    snprintf(why, sizeof why, "%s", PQerrorMessage(db->pq.conn));
    chd_pq_one_line(why);
    return fail(db, PQstatus(db->pq.conn) == CONNECTION_BAD ? CHD_STORE_DISCONNECTED
                                                            : CHD_STORE_ERROR,
                "%s: %s", rq.what, why);
  }
  db->pending = true;
  snprintf(db->pending_what, sizeof db->pending_what, "%s", rq.what);
  snprintf(db->pending_bound, sizeof db->pending_bound, "%s", rq.bound ? rq.bound : "");
  return CHD_STORE_OK;
}

chd_store_rc chd_mdb_take_read(chd_mdb *db, chd_mdb_batch *out)
{
  PGresult *res = NULL, *next;

  memset(out, 0, sizeof *out);
  if (!db->pending)
    return fail(db, CHD_STORE_INVALID, "no read is under way on this connection");
  db->pending = false;
  /* the rows come in one result; the NULL after it ends the command */
  while ((next = PQgetResult(db->pq.conn)) != NULL) {
    if (!res)
      res = next;
    else
      PQclear(next);
  }
  return fill_batch(db, res, db->pending_what, db->pending_bound[0] ? db->pending_bound : NULL,
                    true, out);
}

bool chd_mdb_read_pending(const chd_mdb *db)
{
  return db->pending;
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
  return fill_batch(db, exec_prepared(db, ST_LAST, params), what, NULL, false, out);
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
                                     2, NULL, params, NULL, NULL, 0), what, NULL, false, out);
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

/* A statement that takes the owner of the messages table (the trace index,
 * the notify trigger); the server's primary message only, with a hint when
 * the role may not do it. */
static chd_store_rc owner_ddl(chd_mdb *db, const char *sql, const char *doing)
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
  return owner_ddl(db, "CREATE INDEX CONCURRENTLY IF NOT EXISTS " TRACE_INDEX
                   " ON message_store.messages ((metadata->>'traceId'))"
                   " WHERE metadata->>'traceId' IS NOT NULL",
                   "creating the index " CHD_MDB_TRACE_INDEX);
}

chd_store_rc chd_mdb_trace_index_drop(chd_mdb *db)
{
  return owner_ddl(db, "DROP INDEX CONCURRENTLY " CHD_MDB_TRACE_INDEX,
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

/* ---- push wake-ups ---- */

chd_store_rc chd_mdb_listen(chd_mdb *db, const char *category)
{
  struct listening *grown, *l;

  if (!category || !*category)
    return fail(db, CHD_STORE_INVALID, "cannot listen: no category");
  for (size_t i = 0; i < db->listen_count; i++)
    if (!strcmp(db->listens[i].category, category))
      return CHD_STORE_OK;
  grown = realloc(db->listens, (db->listen_count + 1) * sizeof *grown);
  if (!grown)
    return fail(db, CHD_STORE_ERROR, "out of memory");
  db->listens = grown;
  l = &db->listens[db->listen_count];
  memset(l, 0, sizeof *l);
  if (!(l->category = strdup(category)))
    return fail(db, CHD_STORE_ERROR, "out of memory");
  db->listen_count++;
  if (chd_pq_broken(&db->pq))
    return CHD_STORE_OK;          /* the next connect listens */
  return listen_on(db, l);
}

/* Take the notifications libpq has read; returns how many were of channels
 * listened to. */
static int take_notifies(chd_mdb *db)
{
  PGnotify *n;
  int taken = 0;

  if (!db->pq.conn)
    return 0;
  while ((n = PQnotifies(db->pq.conn)) != NULL) {
    for (size_t i = 0; i < db->listen_count; i++) {
      struct listening *l = &db->listens[i];
      if (l->channel && !strcmp(n->relname, l->channel)) {
        l->notified = true;
        taken++;
      }
    }
    PQfreemem(n);
  }
  return taken;
}

int chd_mdb_wait(chd_mdb *db, int64_t timeout_ms)
{
  int64_t end = chd_now_ms() + timeout_ms;
  int taken = take_notifies(db);

  while (taken == 0) {
    int64_t left = end - chd_now_ms();
    int sock = chd_pq_broken(&db->pq) ? -1 : PQsocket(db->pq.conn);
    struct pollfd p;

    if (left <= 0)
      break;
    if (sock < 0 || db->listen_count == 0) {
      chd_sleep_ms(left);           /* a signal ends it early */
      break;
    }
    p.fd = sock;
    p.events = POLLIN;
    p.revents = 0;
    if (poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left) <= 0)
      break;                        /* timed out, or a signal */
    /* anything the server sent: notifications, or the end of the connection
     * (then libpq marks it broken and the next statement reconnects) */
    if (!PQconsumeInput(db->pq.conn))
      break;
    taken = take_notifies(db);
  }
  return taken;
}

bool chd_mdb_notified(chd_mdb *db, const char *category)
{
  for (size_t i = 0; i < db->listen_count; i++) {
    struct listening *l = &db->listens[i];
    if (!strcmp(l->category, category)) {
      bool was = l->notified;
      l->notified = false;
      return was;
    }
  }
  return false;
}

chd_store_rc chd_mdb_notify_trigger(chd_mdb *db, bool *present)
{
  int64_t n = 0;
  chd_store_rc rc = one_int(db, "SELECT count(*) FROM pg_catalog.pg_trigger t"
                            " JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid"
                            " JOIN pg_catalog.pg_namespace s ON s.oid = c.relnamespace"
                            " WHERE s.nspname = 'message_store' AND c.relname = 'messages'"
                            " AND t.tgname = '" CHD_MDB_NOTIFY_TRIGGER "'", 0, NULL, &n,
                            "looking for the trigger " CHD_MDB_NOTIFY_TRIGGER);

  *present = n > 0;
  return rc;
}

/* The trigger's function: one notification per category of the statement's
 * new rows, and one for "$all"; PostgreSQL folds repeats within a
 * transaction. Every name is qualified: it runs with the writer's
 * search_path. */
#define NOTIFY_FUNCTION                                                                  \
  "CREATE OR REPLACE FUNCTION message_store." CHD_MDB_NOTIFY_TRIGGER "()"                \
  " RETURNS trigger LANGUAGE plpgsql AS $chd$ BEGIN"                                     \
  " PERFORM pg_catalog.pg_notify(" CHANNEL("n.c") ", '') FROM (SELECT DISTINCT"          \
  " message_store.category(stream_name) AS c FROM chd_new_messages) AS n;"               \
  " PERFORM pg_catalog.pg_notify('mdb:$all', ''); RETURN NULL; END $chd$"
#define NOTIFY_TRIGGER                                                                   \
  "CREATE TRIGGER " CHD_MDB_NOTIFY_TRIGGER " AFTER INSERT ON message_store.messages"      \
  " REFERENCING NEW TABLE AS chd_new_messages FOR EACH STATEMENT"                        \
  " EXECUTE FUNCTION message_store." CHD_MDB_NOTIFY_TRIGGER "()"

chd_store_rc chd_mdb_notify_trigger_create(chd_mdb *db, bool *created)
{
  bool present = false;
  chd_store_rc rc = chd_mdb_notify_trigger(db, &present);

  *created = false;
  if (rc != CHD_STORE_OK)
    return rc;
  /* the function is replaced every time (no lock on the table), the
   * trigger added once; one statement string is one transaction */
  rc = owner_ddl(db, present ? NOTIFY_FUNCTION : NOTIFY_FUNCTION "; " NOTIFY_TRIGGER,
                 "creating the trigger " CHD_MDB_NOTIFY_TRIGGER);
  *created = rc == CHD_STORE_OK && !present;
  return rc;
}
