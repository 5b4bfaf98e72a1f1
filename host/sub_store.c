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

/* Send the subscription's read from `from` on connection db. */
static chd_store_rc send_read(chd_sub *s, chd_mdb *db, int64_t from)
{
  const chd_instance_config *inst = s->ctx->inst;
  chd_mdb_category_opts o = { NULL, s->member, inst->group_size, inst->batch_bytes };

  return chd_mdb_send_read(db, s->desc->stream_name, from, inst->batch_size, &o);
}

/*
 * The connection of the subscription's reads: for a category, the replica
 * when there is one ([host] message_store_read); "$all" always on the
 * message store, whose gaps are judged by the message store's own snapshot
 * (pg_snapshot).
 */
static chd_mdb *read_conn(chd_sub *s)
{
  const chd_sub_pg_arg *a = arg_of(s);

  if (a && a->read && !chd_stream_is_all(s->desc->stream_name))
    return a->read;
  return s->ctx->mdb;
}

/* Lazy batches: the subscription decodes what it needs (subscription.h). */
static chd_store_rc pg_read(chd_sub *s, int64_t from, chd_mdb_batch *out)
{
  chd_mdb *db = read_conn(s);
  chd_store_rc rc = send_read(s, db, from);

  if (rc == CHD_STORE_OK)
    rc = chd_mdb_take_read(db, out);
  else
    memset(out, 0, sizeof *out);
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

static bool view_session_async(const chd_sub *s);
static chd_store_rc run(chd_sub *s, const char *sql, bool on_view);

/* Read the position; a new view session in per-message mode with
 * asynchronous commit (view_session_async) is set up here, since every new
 * view session passes through here before a message is handled. */
static chd_store_rc pg_get_position(chd_sub *s, int64_t *position)
{
  chd_position_store ps;
  unsigned epoch = s->ctx->view ? chd_viewdb_connects(s->ctx->view) : 0;
  chd_store_rc rc;

  positions(s, &ps);
  rc = chd_position_get(&ps, s->desc->stream_name, s->subscriber_id, position);
  if (rc != CHD_STORE_OK)
    return failed(s, rc, chd_position_error(&ps));
  if (view_session_async(s) && (rc = run(s, "SET synchronous_commit = off", true)) !=
      CHD_STORE_OK)
    return rc;
  s->store_epoch = epoch;
  return rc;
}

/*
 * Positions in the view database commit with the view's changes: when the
 * view's session was replaced since the position was last read, a commit
 * may have been lost (asynchronous, before a server crash) or may have
 * happened although its answer was lost with the connection. Read the
 * position again. (Positions in the message store commit synchronously;
 * a lost answer there leads to a redelivery, which deterministic ids
 * absorb.)
 */
static int pg_recover(chd_sub *s);

static chd_store_rc pg_recheck(chd_sub *s, bool *lost, int64_t *position)
{
  chd_store_rc rc;

  *lost = false;
  if (s->ctx->inst->position_store != CHD_POSITION_VIEW_DATA || !s->ctx->view)
    return CHD_STORE_OK;
  /* a view known to be down: reconnect now, the position depends on it */
  if (chd_viewdb_broken(s->ctx->view) && pg_recover(s) != 0) {
    if (s->ctx->stop && *s->ctx->stop)
      return failed(s, CHD_STORE_INTERRUPTED, "stopped while reconnecting to the view database");
    return failed(s, CHD_STORE_DISCONNECTED, "the view database is away");
  }
  if (chd_viewdb_connects(s->ctx->view) == s->store_epoch)
    return CHD_STORE_OK;
  rc = pg_get_position(s, position);
  *lost = rc == CHD_STORE_OK;
  return rc;
}

/* Is the transaction that holds the position open? (subscription.c puts
 * the position in it just before committing.) */
static bool position_tx_open(const chd_sub *s)
{
  return s->ctx->inst->position_store == CHD_POSITION_VIEW_DATA ? s->ctx->in_view_tx
                                                                 : s->ctx->in_store_tx;
}

static chd_store_rc pg_put_position(chd_sub *s, int64_t position)
{
  chd_position_store ps;
  chd_store_rc rc;

  if (position_tx_open(s)) {
    /* written with the COMMIT (pg_commit), in the same round trip */
    s->ctx->tx_position = position;
    s->ctx->tx_position_set = true;
    return CHD_STORE_OK;
  }
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

static void end_tx(ch_ctx *ctx)
{
  ctx->in_view_tx = false;
  ctx->view_tx_async = false;
  ctx->in_store_tx = false;
  ctx->tx_position_set = false;
}

static void pg_rollback(chd_sub *s)
{
  if (chd_sub_view_tx(s) && !chd_viewdb_broken(s->ctx->view))
    chd_viewdb_exec(s->ctx->view, "ROLLBACK");
  if (chd_sub_store_tx(s) && !chd_mdb_broken(s->ctx->mdb))
    chd_mdb_exec(s->ctx->mdb, "ROLLBACK");
  end_tx(s->ctx);
}

/*
 * Does the view transaction commit asynchronously? Only when it holds the
 * position (view_synchronous_commit, config.h): the view's changes and the
 * position then commit together into one write-ahead log, so a server crash
 * can lose only the last of these transactions, each whole, and the
 * subscription reads again from the position that survived (pg_recheck).
 * A transaction that ends up without a position commits synchronously
 * (commit_one).
 */
static bool view_async(const chd_sub *s)
{
  const chd_instance_config *inst = s->ctx->inst;

  return inst->position_store == CHD_POSITION_VIEW_DATA && !inst->view_synchronous_commit;
}

/*
 * Per-message mode (no batch transaction) with view_data positions: the
 * handler's statements commit on their own and the position every
 * position_update_interval messages, all on the view session, which then
 * commits asynchronously as a whole (SET synchronous_commit = off, by
 * pg_get_position on every new session). The position's commit follows
 * the commits of the messages it covers in the one write-ahead log, and a
 * crash loses only a suffix of the log: a position that survives has its
 * messages' commits with it. What follows it is handled again, as after
 * any crash in this mode (at least once). A reconnected session commits
 * synchronously until pg_get_position has run on it.
 */
static bool view_session_async(const chd_sub *s)
{
  return s->ctx->view && view_async(s) && !chd_sub_view_tx(s);
}

/* Wait until what the view session committed is on disk: a synchronous
 * commit of a transaction that writes (txid_current) flushes the log up to
 * it, the asynchronous commits before it included. */
static chd_store_rc flush_view(chd_sub *s)
{
  if (!view_session_async(s))
    return CHD_STORE_OK;
  return run(s, "BEGIN; SET LOCAL synchronous_commit = on; SELECT txid_current(); COMMIT",
             true);
}

static chd_store_rc pg_begin(chd_sub *s)
{
  chd_store_rc rc;

  end_tx(s->ctx);
  if (chd_sub_view_tx(s)) {
    /* one statement string: one round trip */
    rc = run(s, view_async(s) ? "BEGIN; SET LOCAL synchronous_commit = off" : "BEGIN", true);
    if (rc != CHD_STORE_OK)
      return rc;
    s->ctx->in_view_tx = true;
    s->ctx->view_tx_async = view_async(s);
  }
  if (chd_sub_store_tx(s)) {
    if ((rc = run(s, "BEGIN", false)) != CHD_STORE_OK) {
      if (chd_sub_view_tx(s))
        chd_viewdb_exec(s->ctx->view, "ROLLBACK");
      end_tx(s->ctx);
      return rc;
    }
    s->ctx->in_store_tx = true;
  }
  return CHD_STORE_OK;
}

/* COMMIT the view's (on_view) or the store's transaction; the one holding
 * the position writes it first, in the same round trip. */
static chd_store_rc commit_one(chd_sub *s, bool on_view, char *why, size_t size)
{
  ch_ctx *ctx = s->ctx;
  bool holds = (ctx->inst->position_store == CHD_POSITION_VIEW_DATA) == on_view;
  chd_store_rc rc;

  if (on_view && ctx->view_tx_async && !(holds && ctx->tx_position_set)) {
    /* no position in it (a parked stream's retry): nothing would replay it */
    rc = chd_viewdb_exec(ctx->view, "SET LOCAL synchronous_commit = on");
    if (rc != CHD_STORE_OK) {
      snprintf(why, size, "view database: %s", chd_viewdb_error(ctx->view));
      return rc;
    }
  }
  if (holds && ctx->tx_position_set) {
    chd_position_store ps;
    positions(s, &ps);
    rc = chd_position_put_commit(&ps, s->desc->stream_name, s->subscriber_id,
                                 ctx->tx_position);
    if (rc != CHD_STORE_OK)
      snprintf(why, size, "%s: %s", on_view ? "view database" : "message store",
               chd_position_error(&ps));
    return rc;
  }
  rc = on_view ? chd_viewdb_commit(ctx->view) : chd_mdb_commit(ctx->mdb);
  if (rc != CHD_STORE_OK)
    snprintf(why, size, "%s: %s", on_view ? "view database" : "message store",
             on_view ? chd_viewdb_error(ctx->view) : chd_mdb_error(ctx->mdb));
  return rc;
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
    if (on_view ? !chd_sub_view_tx(s) : !chd_sub_store_tx(s))
      continue;
    if (!on_view)
      ctx->in_store_tx = false;
    if ((rc = commit_one(s, on_view, why, sizeof why)) != CHD_STORE_OK) {
      pg_rollback(s);
      return failed(s, rc, why);
    }
  }
  end_tx(ctx);
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
  chd_store_rc rc;

  /* the retried messages' effects first: nothing would handle them again */
  if (request == CHD_PARK_RETRY && (rc = flush_view(s)) != CHD_STORE_OK)
    return rc;
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

/* ---- reading ahead, on a connection of its own ---- */

/* The text of a failure on the reading connection into s->error. */
static chd_store_rc reader_result(chd_sub *s, chd_store_rc rc)
{
  return rc == CHD_STORE_OK ? rc : failed(s, rc, chd_mdb_error(s->ctx->reader));
}

/*
 * The worker's reading connection, made on first use. It holds no
 * subscriber locks (sublock.h): it only reads, for subscriptions whose
 * locks the worker's main connection holds. With a replica for category
 * reads ([host] message_store_read) it goes there, as those reads do.
 */
static chd_mdb *reader(chd_sub *s)
{
  ch_ctx *ctx = s->ctx;
  const char *url = ctx->cfg->message_store_read ? ctx->cfg->message_store_read
                                                 : ctx->cfg->message_store;
  chd_log_fields f = { ctx->inst->name, s->subscriber_id, NULL, NULL };

  if (ctx->reader)
    return ctx->reader;
  ctx->reader = chd_mdb_new(url);
  if (ctx->reader) {
    chd_mdb_set_interrupt(ctx->reader, ctx->stop);
    chd_log(CH_LOG_DEBUG, &f, "reading ahead on a second connection to the %s",
            ctx->cfg->message_store_read ? "replica (message_store_read)" : "message store");
  }
  return ctx->reader;
}

static chd_store_rc pg_read_ahead(chd_sub *s, int64_t from)
{
  chd_mdb *db;

  if (s->ctx->cfg->message_store_read && chd_stream_is_all(s->desc->stream_name))
    /* "$all" is read on the message store (read_conn), not ahead on the replica */
    return failed(s, CHD_STORE_INVALID, "no reading ahead of $all from a replica");
  if (!(db = reader(s)))
    return failed(s, CHD_STORE_ERROR, "out of memory");
  if (chd_mdb_read_pending(db))
    return failed(s, CHD_STORE_INVALID, "the reading connection is busy");
  /* send_read connects when needed: once, no waiting on a server that is away */
  return reader_result(s, send_read(s, db, from));
}

static chd_store_rc pg_take_ahead(chd_sub *s, chd_mdb_batch *out)
{
  return reader_result(s, chd_mdb_take_read(s->ctx->reader, out));
}

static void pg_drop_ahead(chd_sub *s)
{
  chd_mdb_batch b;

  if (chd_mdb_take_read(s->ctx->reader, &b) == CHD_STORE_OK)
    chd_mdb_batch_release(&b);
}

const chd_sub_store chd_sub_store_pg = {
  .read = pg_read,
  .snapshot = pg_snapshot,
  .lag = pg_lag,
  .get_position = pg_get_position,
  .put_position = pg_put_position,
  .mark_stopped = pg_mark_stopped,
  .recheck = pg_recheck,
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
  .read_ahead = pg_read_ahead,
  .take_ahead = pg_take_ahead,
  .drop_ahead = pg_drop_ahead,
};
