/* position.c - where subscriptions keep their read positions. */
#include "position.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "stream_name.h"

static const char *record_type(const chd_instance_config *inst)
{
  return inst->position_format == CHD_POSITION_FORMAT_EVENTIDE ? "Recorded" : "Read";
}

void chd_position_stream(const chd_instance_config *inst, const char *category,
                         const char *subscriber_id, char *buf, size_t size)
{
  /* Eventide adds the type "position" to the category's types:
   * account -> account:position, account:command -> account:command+position */
  if (inst->position_format == CHD_POSITION_FORMAT_EVENTIDE)
    snprintf(buf, size, "%s%sposition-%s", category, strchr(category, ':') ? "+" : ":",
             subscriber_id);
  else
    snprintf(buf, size, "subscriberPosition-%s", subscriber_id);
}

/* Where a stopped subscription is recorded: beside, not in, the position
 * stream, whose readers (the book's, Eventide's) take its last message. */
static void status_stream(const char *subscriber_id, char *buf, size_t size)
{
  snprintf(buf, size, "subscriberStatus-%s", subscriber_id);
}

static int view_failed(ch_ctx *ctx, PGresult *res, const char *what)
{
  snprintf(ctx->last_error, sizeof ctx->last_error, "%s: %s", what,
           PQresultErrorMessage(res));
  PQclear(res);
  return -1;
}

/* The position in the data of a position message. */
static int64_t position_of(const ch_message *m)
{
  json_t *p = json_object_get(m->data, "position");

  return json_is_integer(p) ? (int64_t)json_integer_value(p) : 0;
}

static int read_message_store(chd_mdb *mdb, const char *stream, const char *type,
                              int64_t *position, char *reason, size_t reason_size,
                              char *err, size_t errlen)
{
  chd_mdb_batch b;
  chd_mdb_rc rc = chd_mdb_read_last(mdb, stream, type, &b);

  if (rc != CHD_MDB_OK) {
    snprintf(err, errlen, "%s", chd_mdb_error(mdb));
    return -1;
  }
  *position = b.count ? position_of(&b.messages[0]) : 0;
  if (reason && reason_size) {
    const char *r = b.count ? json_string_value(json_object_get(b.messages[0].data, "reason"))
                            : NULL;
    snprintf(reason, reason_size, "%s", r ? r : "");
  }
  chd_mdb_batch_release(&b);
  return 0;
}

int chd_position_load(chd_sub *s)
{
  ch_ctx *ctx = s->ctx;

  if (ctx->inst->position_store == CHD_POSITION_VIEW_DATA) {
    const char *params[1] = { s->subscriber_id };
    PGresult *res = PQexecParams(ctx->view,
                                 "SELECT position FROM comphost_positions WHERE subscriber_id = $1",
                                 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
      return view_failed(ctx, res, "reading the position");
    s->position = 0;
    if (PQntuples(res) > 0)
      sscanf(PQgetvalue(res, 0, 0), "%" SCNd64, &s->position);
    PQclear(res);
  } else if (read_message_store(ctx->mdb, s->position_stream, record_type(ctx->inst),
                                &s->position, NULL, 0, ctx->last_error,
                                sizeof ctx->last_error) != 0) {
    return -1;
  }
  s->saved_position = s->position;
  return 0;
}

int chd_position_save(chd_sub *s, int64_t position)
{
  ch_ctx *ctx = s->ctx;
  char pos[24];

  snprintf(pos, sizeof pos, "%" PRId64, position);
  if (ctx->inst->position_store == CHD_POSITION_VIEW_DATA) {
    const char *params[2] = { s->subscriber_id, pos };
    PGresult *res = PQexecParams(ctx->view,
                                 "INSERT INTO comphost_positions (subscriber_id, position)"
                                 " VALUES ($1, $2::bigint) ON CONFLICT (subscriber_id) DO UPDATE"
                                 " SET position = EXCLUDED.position, updated_at = now()",
                                 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
      return view_failed(ctx, res, "saving the position");
    PQclear(res);
  } else {
    json_t *data = json_pack("{s:I}", "position", (json_int_t)position);
    chd_mdb_rc rc = chd_mdb_write(ctx->mdb, s->position_stream, NULL, record_type(ctx->inst),
                                  data, NULL, CH_VERSION_ANY, NULL);
    json_decref(data);
    if (rc != CHD_MDB_OK) {
      snprintf(ctx->last_error, sizeof ctx->last_error, "%s", chd_mdb_error(ctx->mdb));
      return -1;
    }
  }
  s->saved_position = position;
  s->since_save = 0;
  return 0;
}

int chd_position_mark_stopped(chd_sub *s, const ch_message *msg, const char *reason)
{
  ch_ctx *ctx = s->ctx;
  char pos[24], at[24];

  snprintf(pos, sizeof pos, "%" PRId64, s->position);
  snprintf(at, sizeof at, "%" PRId64, msg->global_position);
  if (ctx->inst->position_store == CHD_POSITION_VIEW_DATA) {
    char text[1600];
    const char *params[4] = { s->subscriber_id, pos, at, text };
    PGresult *res;

    snprintf(text, sizeof text, "%s (type %s in stream %s)", reason, msg->type,
             msg->stream_name);
    res = PQexecParams(ctx->view,
                       "INSERT INTO comphost_positions (subscriber_id, position, stopped_at,"
                       " stop_reason) VALUES ($1, $2::bigint, $3::bigint, $4)"
                       " ON CONFLICT (subscriber_id) DO UPDATE SET stopped_at = EXCLUDED.stopped_at,"
                       " stop_reason = EXCLUDED.stop_reason, updated_at = now()",
                       4, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
      return view_failed(ctx, res, "recording the stop");
    PQclear(res);
    return 0;
  } else {
    json_t *data = json_pack("{s:I, s:s, s:s, s:s}", "position",
                             (json_int_t)msg->global_position, "stream", msg->stream_name,
                             "type", msg->type, "reason", reason);
    char stream[320];
    chd_mdb_rc rc;

    status_stream(s->subscriber_id, stream, sizeof stream);
    rc = chd_mdb_write(ctx->mdb, stream, NULL, "Stopped", data, NULL, CH_VERSION_ANY, NULL);
    json_decref(data);
    if (rc != CHD_MDB_OK) {
      snprintf(ctx->last_error, sizeof ctx->last_error, "%s", chd_mdb_error(ctx->mdb));
      return -1;
    }
    return 0;
  }
}

int chd_position_inspect(chd_mdb *mdb, PGconn *view, const chd_instance_config *inst,
                         const char *category, const char *subscriber_id,
                         int64_t *position, int64_t *stopped_at, char *reason,
                         size_t reason_size, char *err, size_t errlen)
{
  *position = 0;
  *stopped_at = 0;
  reason[0] = '\0';
  if (inst->position_store == CHD_POSITION_VIEW_DATA) {
    const char *params[1] = { subscriber_id };
    PGresult *res;

    if (!view) {
      snprintf(err, errlen, "no view database connection");
      return -1;
    }
    res = PQexecParams(view,
                       "SELECT position, coalesce(stopped_at, 0), coalesce(stop_reason, '')"
                       " FROM comphost_positions WHERE subscriber_id = $1",
                       1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
      /* a database the host never ran against has no table yet */
      const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
      int missing = state && !strcmp(state, "42P01");
      if (!missing)
        snprintf(err, errlen, "reading comphost_positions: %s", PQresultErrorMessage(res));
      PQclear(res);
      return missing ? 0 : -1;
    }
    if (PQntuples(res) > 0) {
      sscanf(PQgetvalue(res, 0, 0), "%" SCNd64, position);
      sscanf(PQgetvalue(res, 0, 1), "%" SCNd64, stopped_at);
      snprintf(reason, reason_size, "%s", PQgetvalue(res, 0, 2));
    }
    PQclear(res);
  } else {
    char stream[320], status[320];
    chd_position_stream(inst, category, subscriber_id, stream, sizeof stream);
    status_stream(subscriber_id, status, sizeof status);
    if (read_message_store(mdb, stream, record_type(inst), position, NULL, 0,
                           err, errlen) != 0 ||
        read_message_store(mdb, status, "Stopped", stopped_at, reason, reason_size,
                           err, errlen) != 0)
      return -1;
  }
  if (*stopped_at <= *position) {
    *stopped_at = 0;
    reason[0] = '\0';
  }
  return 0;
}
