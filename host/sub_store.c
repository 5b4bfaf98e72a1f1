/* sub_store.c - the store of a running host, as a subscription sees it
 * (chd_sub_store_pg: see subscription.h). */
#include "subscription.h"

#include <stdio.h>
#include <string.h>

#include "position.h"
#include "status.h"
#include "stream_name.h"
#include "viewdb.h"

/* The text of a failure into s->error; returns rc. */
static chd_store_rc failed(chd_sub *s, chd_store_rc rc, const char *text)
{
  snprintf(s->error, sizeof s->error, "%s", text);
  return rc;
}

static chd_store_rc mdb_result(chd_sub *s, chd_store_rc rc)
{
  return rc == CHD_STORE_OK ? rc : failed(s, rc, chd_mdb_error(s->ctx->mdb));
}

static const chd_sub_pg_arg *arg_of(const chd_sub *s)
{
  return s->store_arg;
}

/* The position store of the instance, on the ctx's connections, fenced by
 * the slot's lease when it has one. */
static void positions(chd_sub *s, chd_position_store *ps)
{
  chd_position_store_init(ps, s->ctx->inst->position_store, s->ctx->inst->position_format,
                          s->ctx->mdb, s->ctx->view);
  ps->fence = arg_of(s) ? arg_of(s)->fence : NULL;
}

static chd_store_rc pg_read(chd_sub *s, int64_t from, chd_mdb_batch *out)
{
  const chd_instance_config *inst = s->ctx->inst;
  chd_mdb *db = arg_of(s) && arg_of(s)->read ? arg_of(s)->read : s->ctx->mdb;
  chd_mdb_category_opts o = { NULL, s->member, inst->group_size, inst->batch_bytes };
  chd_store_rc rc;

  if (chd_stream_is_all(s->desc->stream_name))
    return mdb_result(s, chd_mdb_read_all(s->ctx->mdb, from, inst->batch_size,
                                          inst->batch_bytes, out));
  rc = chd_mdb_read_category(db, s->desc->stream_name, from, inst->batch_size, &o, out);
  if (rc != CHD_STORE_OK && db != s->ctx->mdb) {
    char why[1100];
    snprintf(why, sizeof why, "reading the replica: %s", chd_mdb_error(db));
    return failed(s, rc, why);
  }
  return mdb_result(s, rc);
}

static chd_store_rc pg_snapshot(chd_sub *s, int64_t *xmin, int64_t *xmax)
{
  return mdb_result(s, chd_mdb_snapshot(s->ctx->mdb, xmin, xmax));
}

static chd_store_rc pg_lag(chd_sub *s, int64_t *lag)
{
  const chd_instance_config *inst = s->ctx->inst;

  return mdb_result(s, chd_mdb_lag(s->ctx->mdb, s->desc->stream_name, s->position,
                                   s->member, inst->group_size, CHD_LAG_BOUND, lag));
}

static chd_store_rc pg_get_position(chd_sub *s, int64_t *position)
{
  chd_position_store ps;
  chd_store_rc rc;

  positions(s, &ps);
  rc = chd_position_get(&ps, s->desc->stream_name, s->subscriber_id, position);
  return rc == CHD_STORE_OK ? rc : failed(s, rc, chd_position_error(&ps));
}

static chd_store_rc pg_put_position(chd_sub *s, int64_t position)
{
  chd_position_store ps;
  chd_store_rc rc;

  positions(s, &ps);
  rc = chd_position_put(&ps, s->desc->stream_name, s->subscriber_id, position);
  return rc == CHD_STORE_OK ? rc : failed(s, rc, chd_position_error(&ps));
}

static chd_store_rc pg_mark_stopped(chd_sub *s, const ch_message *m, const char *reason)
{
  chd_position_store ps;
  chd_store_rc rc;

  positions(s, &ps);
  rc = chd_position_mark_stopped(&ps, s->subscriber_id, s->position, m, reason);
  return rc == CHD_STORE_OK ? rc : failed(s, rc, chd_position_error(&ps));
}

/* ---- transactions of a batch, on the view database and/or the message store ---- */

static chd_store_rc run(chd_sub *s, const char *sql, bool on_view)
{
  chd_store_rc rc = on_view ? chd_viewdb_exec(s->ctx->view, sql)
                            : chd_mdb_exec(s->ctx->mdb, sql);
  if (rc != CHD_STORE_OK)
    failed(s, rc, on_view ? chd_viewdb_error(s->ctx->view) : chd_mdb_error(s->ctx->mdb));
  return rc;
}

static void pg_rollback(chd_sub *s)
{
  if (chd_sub_view_tx(s) && !chd_viewdb_broken(s->ctx->view))
    chd_viewdb_exec(s->ctx->view, "ROLLBACK");
  if (chd_sub_store_tx(s) && !chd_mdb_broken(s->ctx->mdb))
    chd_mdb_exec(s->ctx->mdb, "ROLLBACK");
  s->ctx->in_store_tx = false;
}

static chd_store_rc pg_begin(chd_sub *s)
{
  chd_store_rc rc;

  if (chd_sub_view_tx(s) && (rc = run(s, "BEGIN", true)) != CHD_STORE_OK)
    return rc;
  if (chd_sub_store_tx(s)) {
    if ((rc = run(s, "BEGIN", false)) != CHD_STORE_OK) {
      if (chd_sub_view_tx(s))
        chd_viewdb_exec(s->ctx->view, "ROLLBACK");
      return rc;
    }
    s->ctx->in_store_tx = true;
  }
  return CHD_STORE_OK;
}

/*
 * Commit. The transaction that holds the position commits last, so a crash
 * between the two commits redelivers (and idempotent handlers absorb that)
 * rather than skips.
 */
static chd_store_rc pg_commit(chd_sub *s)
{
  ch_ctx *ctx = s->ctx;
  bool view_first = ctx->inst->position_store != CHD_POSITION_VIEW_DATA;
  char why[1100];
  chd_store_rc rc;

  for (int pass = 0; pass < 2; pass++) {
    bool on_view = (pass == 0) == view_first;
    if (on_view && chd_sub_view_tx(s)) {
      if ((rc = chd_viewdb_commit(ctx->view)) != CHD_STORE_OK) {
        snprintf(why, sizeof why, "view database: %s", chd_viewdb_error(ctx->view));
        pg_rollback(s);
        return failed(s, rc, why);
      }
    } else if (!on_view && chd_sub_store_tx(s)) {
      ctx->in_store_tx = false;
      if ((rc = chd_mdb_commit(ctx->mdb)) != CHD_STORE_OK) {
        snprintf(why, sizeof why, "message store: %s", chd_mdb_error(ctx->mdb));
        pg_rollback(s);
        return failed(s, rc, why);
      }
    }
  }
  ctx->in_store_tx = false;
  return CHD_STORE_OK;
}

/* ---- connections ---- */

static bool pg_broken(chd_sub *s)
{
  return chd_mdb_broken(s->ctx->mdb) || (s->ctx->view && chd_viewdb_broken(s->ctx->view));
}

/* A slot of a group shared through leases: one attempt per broken
 * connection, so that the worker's loop gets back to the leases soon (a host
 * cut off from the database must notice its leases run out). */
static int recover_slot(chd_sub *s)
{
  ch_ctx *ctx = s->ctx;

  if (chd_mdb_broken(ctx->mdb) && chd_mdb_connect(ctx->mdb) != CHD_STORE_OK)
    return -1;
  if (ctx->view && chd_viewdb_broken(ctx->view) && chd_viewdb_connect(ctx->view) != CHD_STORE_OK)
    return -1;
  return 0;
}

static int pg_recover(chd_sub *s)
{
  ch_ctx *ctx = s->ctx;
  chd_log_fields f = { ctx->inst->name, s->subscriber_id, NULL, NULL };
  chd_store_rc rc;

  if (arg_of(s) && arg_of(s)->fence)
    return recover_slot(s);
  if (chd_mdb_broken(ctx->mdb)) {
    chd_log(CH_LOG_WARN, &f, "lost the message store: %s; reconnecting",
            chd_mdb_error(ctx->mdb));
    if (chd_mdb_reconnect(ctx->mdb, -1) != CHD_STORE_OK)
      return -1;
    chd_log(CH_LOG_INFO, &f, "reconnected to the message store");
  }
  if (ctx->view && chd_viewdb_broken(ctx->view)) {
    chd_log(CH_LOG_WARN, &f, "lost the view database; reconnecting");
    while ((rc = chd_viewdb_ensure(ctx->view)) == CHD_STORE_ERROR ||
           rc == CHD_STORE_INVALID) {
      /* refused now, after having worked: wait for an operator, loudly */
      chd_log(CH_LOG_ERROR, &f, "%s; trying again in 10 s", chd_viewdb_error(ctx->view));
      if (chd_sub_nap(10000, ctx->stop) != 0)
        return -1;
    }
    if (rc != CHD_STORE_OK)
      return -1;
  }
  return 0;
}

/* ---- parking ---- */

static chd_store_rc pg_park_version(chd_sub *s, int64_t *version)
{
  return mdb_result(s, chd_mdb_stream_version(s->ctx->mdb, s->status_stream, version));
}

static chd_store_rc pg_park_fold(chd_sub *s)
{
  return mdb_result(s, chd_park_fold(&s->parked, s->ctx->mdb, s->status_stream));
}

static chd_store_rc pg_park_add(chd_sub *s, const ch_message *m, const char *reason,
                                const char *cause)
{
  return mdb_result(s, chd_park_add(&s->parked, s->ctx->mdb, s->subscriber_id, m, reason,
                                    cause));
}

static chd_store_rc pg_park_close(chd_sub *s, const char *stream, chd_park_request request,
                                  int64_t count)
{
  return mdb_result(s, chd_park_close(&s->parked, s->ctx->mdb, s->subscriber_id, stream,
                                      request, s->position, count));
}

static chd_store_rc pg_park_count(chd_sub *s, const chd_parked *p, int64_t *count)
{
  return mdb_result(s, chd_park_count(s->ctx->mdb, p, s->position, count));
}

static chd_store_rc pg_read_stream(chd_sub *s, const char *stream, int64_t from, int64_t count,
                                   chd_mdb_batch *out)
{
  return mdb_result(s, chd_mdb_read_stream(s->ctx->mdb, stream, from, count, out));
}

const chd_sub_store chd_sub_store_pg = {
  .read = pg_read,
  .snapshot = pg_snapshot,
  .lag = pg_lag,
  .get_position = pg_get_position,
  .put_position = pg_put_position,
  .mark_stopped = pg_mark_stopped,
  .begin = pg_begin,
  .commit = pg_commit,
  .rollback = pg_rollback,
  .broken = pg_broken,
  .recover = pg_recover,
  .park_version = pg_park_version,
  .park_fold = pg_park_fold,
  .park_add = pg_park_add,
  .park_close = pg_park_close,
  .park_count = pg_park_count,
  .read_stream = pg_read_stream,
};
