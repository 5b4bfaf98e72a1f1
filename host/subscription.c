/* subscription.c - one subscription of a plugin instance: the book's loop. */
#include "subscription.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "status.h"
#include "stream_name.h"

#define MAX_RETRY_BACKOFF_MS 30000

int chd_sub_nap(int64_t ms, const volatile sig_atomic_t *stop)
{
  int64_t end = chd_now_ms() + ms;

  for (;;) {
    int64_t left = end - chd_now_ms();
    if (left <= 0)
      return stop && *stop ? -1 : 0;
    chd_status_heartbeat();
    if (chd_nap_ms(left > 50 ? 50 : left, stop) != 0)
      return -1;
  }
}

void chd_sub_effective_id(const ch_subscription *desc, const chd_instance_config *inst,
                          char *buf, size_t size)
{
  if (inst->group_size > 0 && !inst->group_auto)
    snprintf(buf, size, "%s:%" PRId64, desc->subscriber_id, inst->group_member);
  else
    snprintf(buf, size, "%s", desc->subscriber_id);
}

static chd_log_fields fields_of(const chd_sub *s, const ch_message *m)
{
  chd_log_fields f = { s->ctx->inst->name, s->subscriber_id, m, NULL };
  return f;
}

bool chd_sub_view_tx(const chd_sub *s)
{
  return s->ctx->inst->batch_transaction && s->ctx->view;
}

bool chd_sub_store_tx(const chd_sub *s)
{
  return s->ctx->inst->store_transaction;
}

#define view_tx chd_sub_view_tx
#define store_tx chd_sub_store_tx

/* Does the position commit inside the batch's transaction? */
static bool position_in_tx(const chd_sub *s)
{
  return s->ctx->inst->position_store == CHD_POSITION_VIEW_DATA ? view_tx(s) : store_tx(s);
}

/* Show the counters in the worker's status (metrics, status). */
static void publish(const chd_sub *s)
{
  chd_status_sub *ss = chd_status_sub_of(s->index);

  if (!ss)
    return;
  ss->failures = s->failures;
  ss->skipped = s->skipped;
  ss->parked_streams = (int64_t)s->parked.count;
  ss->parked_messages = s->parked_messages;
}

/* The parked streams, from the status stream, with the messages held
 * behind each up to the position. */
static int load_parked(chd_sub *s, char *err, size_t errlen)
{
  chd_park_status_stream(s->subscriber_id, s->status_stream, sizeof s->status_stream);
  if (s->store->park_fold(s) != CHD_STORE_OK) {
    snprintf(err, errlen, "cannot read the parked streams of '%s': %s", s->subscriber_id,
             s->error);
    return -1;
  }
  s->parked_messages = 0;
  for (size_t i = 0; i < s->parked.count; i++) {
    chd_parked *p = &s->parked.items[i];
    int64_t n = 0;
    if (s->store->park_count(s, p, &n) != CHD_STORE_OK) {
      snprintf(err, errlen, "cannot count the parked messages of '%s': %s", p->stream,
               s->error);
      return -1;
    }
    p->messages = n > 0 ? n : 1;
    s->parked_messages += p->messages;
  }
  if (s->parked.count > 0) {
    chd_log_fields f = fields_of(s, NULL);
    chd_log(CH_LOG_WARN, &f, "%zu parked stream%s (%" PRId64 " messages): see `comphost"
            " parked`", s->parked.count, s->parked.count == 1 ? "" : "s", s->parked_messages);
  }
  chd_status_moved(s->index);      /* a stall counts from the start */
  publish(s);
  return 0;
}

int chd_sub_init(chd_sub *s, ch_ctx *ctx, int index, const chd_sub_store *store,
                 void *store_arg, char *err, size_t errlen)
{
  return chd_sub_init_slot(s, ctx, index, ctx->inst->group_member, index, store, store_arg,
                           err, errlen);
}

int chd_sub_init_slot(chd_sub *s, ch_ctx *ctx, int index, int64_t member, int status_index,
                      const chd_sub_store *store, void *store_arg, char *err, size_t errlen)
{
  const ch_subscription *desc = &ctx->plugin->desc.subscriptions[index];

  memset(s, 0, sizeof *s);
  s->ctx = ctx;
  s->desc = desc;
  s->index = status_index;
  s->member = member;
  s->store = store;
  s->store_arg = store_arg;
  s->nap = chd_sub_nap;
  s->gap_timeout_ms = CHD_GAP_TIMEOUT_MS;
  chd_park_set_init(&s->parked);
  s->envelope_only = chd_plugin_envelope_only(ctx->plugin, desc);
  if (ctx->inst->group_size > 0)
    snprintf(s->subscriber_id, sizeof s->subscriber_id, "%s:%" PRId64, desc->subscriber_id,
             member);
  else
    chd_sub_effective_id(desc, ctx->inst, s->subscriber_id, sizeof s->subscriber_id);
  if (chd_stream_is_all(desc->stream_name) && ctx->inst->group_size > 0) {
    snprintf(err, errlen, "subscription '%s' reads $all: consumer groups need a category",
             s->subscriber_id);
    return -1;
  }
  if (chd_stream_is_all(desc->stream_name) &&
      ctx->inst->position_format == CHD_POSITION_FORMAT_EVENTIDE) {
    snprintf(err, errlen, "subscription '%s' reads $all: the eventide position format"
             " needs a category", s->subscriber_id);
    return -1;
  }
  chd_position_stream(ctx->inst->position_format, desc->stream_name, s->subscriber_id,
                      s->position_stream, sizeof s->position_stream);
  if (store->get_position(s, &s->position) != CHD_STORE_OK) {
    snprintf(err, errlen, "cannot load the position of '%s': %s", s->subscriber_id,
             s->error);
    return -1;
  }
  s->saved_position = s->position;
  return load_parked(s, err, errlen);
}

/* Forget the batch being read ahead, if any (next_batch). */
static void drop_ahead(chd_sub *s)
{
  if (s->ahead_from > 0) {
    s->ahead_from = 0;
    s->store->drop_ahead(s);
    s->ahead_dropped++;
  }
}

void chd_sub_release(chd_sub *s)
{
  drop_ahead(s);
  chd_park_set_release(&s->parked);
}

static bool origin_matches(const chd_sub *s, const ch_message *m)
{
  const char *origin;
  char category[256];

  if (!s->desc->origin_stream_name)
    return true;
  origin = json_string_value(json_object_get(m->metadata, "originStreamName"));
  if (!origin || chd_stream_category(origin, category, sizeof category) != 0)
    return false;
  return strcmp(category, s->desc->origin_stream_name) == 0;
}

static ch_handler_fn handler_for(const chd_sub *s, const ch_message *m)
{
  return origin_matches(s, m) ? chd_handler_find(s->desc, m->type) : NULL;
}

static ch_result call_handler(chd_sub *s, ch_handler_fn fn, const ch_message *m)
{
  ch_ctx *ctx = s->ctx;
  int64_t started;
  ch_result r;

  chd_ctx_begin_message(ctx, s->subscriber_id, m);
  chd_status_begin(s->index, m);
  started = chd_now_us();
  r = fn(ctx, ctx->state, m);
  chd_status_handler_done(s->index, started);
  chd_status_end();
  chd_ctx_end_message(ctx);
  if (r != CH_OK && r != CH_RETRY && r != CH_FAIL && r != CH_SKIP) {
    snprintf(ctx->error, sizeof ctx->error, "handler returned %d, which is no ch_result",
             (int)r);
    r = CH_FAIL;
  }
  return r;
}

static bool connections_broken(chd_sub *s)
{
  return s->store->broken(s);
}

/*
 * Go back to the position the store keeps when it may have lost some it
 * had acknowledged (recheck in subscription.h): what follows it is read and
 * handled again. Returns 0 when nothing was lost, 1 when the position went
 * back, -1 when the store could not tell (ask again before going on).
 */
static int recheck_position(chd_sub *s)
{
  int64_t position;
  bool lost = false;

  if (!s->store->recheck)
    return 0;
  if (s->store->recheck(s, &lost, &position) != CHD_STORE_OK)
    return -1;
  if (!lost || position == s->position)
    return 0;
  {
    chd_log_fields f = fields_of(s, NULL);
    chd_log(CH_LOG_WARN, &f, "the position store holds global position %" PRId64 ", not %"
            PRId64 ": commits were lost with the connection (a server crash?); reading"
            " again from there", position, s->position);
  }
  s->position = position;
  s->saved_position = position;
  s->since_save = 0;
  s->gap_at = 0;
  if (chd_status_sub_of(s->index))
    chd_status_sub_of(s->index)->position = position;
  return 1;
}

/* Reconnect whatever is broken. Returns -1 when told to stop meanwhile. */
static int recover(chd_sub *s)
{
  return s->store->recover(s);
}

static int tx_begin(chd_sub *s)
{
  return s->store->begin(s) == CHD_STORE_OK ? 0 : -1;
}

static void tx_rollback(chd_sub *s)
{
  s->store->rollback(s);
}

/*
 * The store answered CHD_STORE_FENCED: the slot's lease (group.h) is
 * someone else's now, and nothing of the work in hand was committed. The
 * subscription handles nothing more, and a batch read ahead for it is
 * dropped: the slot's next holder reads from the position it finds.
 */
static void lose_slot(chd_sub *s)
{
  chd_log_fields f = fields_of(s, NULL);

  if (s->state != CHD_SUB_RUNNING)
    return;
  s->state = CHD_SUB_LOST;
  drop_ahead(s);
  chd_log(CH_LOG_WARN, &f, "%s; handling nothing more of %s", s->error, s->subscriber_id);
}

/* Commit. The store commits the transaction that holds the position last,
 * so a crash between the two commits redelivers rather than skips. */
static int tx_commit(chd_sub *s)
{
  chd_store_rc rc = s->store->commit(s);

  if (rc == CHD_STORE_FENCED)
    lose_slot(s);
  return rc == CHD_STORE_OK ? 0 : -1;
}

/* A record of this subscription's own position: reading it must not lead
 * to writing another one (a subscriber to its position's category, or to
 * $all, would never settle). */
static bool own_record(const chd_sub *s, const ch_message *m)
{
  return strcmp(m->stream_name, s->position_stream) == 0;
}

/*
 * After the message at `global_position` (and `count` in all, `counted` of
 * them not own records) is done.
 */
static void advance(chd_sub *s, int64_t global_position, int64_t count, int64_t counted,
                    bool saved)
{
  s->position = global_position;
  s->handled += count;
  if (saved) {
    s->saved_position = global_position;
    s->since_save = 0;
  } else {
    s->since_save += counted;
  }
  if (chd_status_sub_of(s->index)) {
    chd_status_sub_of(s->index)->position = s->position;
    chd_status_sub_of(s->index)->handled = s->handled;
    chd_status_moved(s->index);
  }
  if (s->since_save >= s->ctx->inst->position_update_interval &&
      chd_sub_save_position(s) != 0) {
    chd_log_fields f = fields_of(s, NULL);
    chd_log(CH_LOG_WARN, &f, "cannot save the position %" PRId64 ": %s", s->position,
            s->error);
  }
}

/* Save `position` through the store: the batch's transaction holds it
 * when one is open. */
static int save_position(chd_sub *s, int64_t position)
{
  chd_store_rc rc = s->store->put_position(s, position);

  if (rc == CHD_STORE_FENCED)
    lose_slot(s);
  if (rc != CHD_STORE_OK)
    return -1;
  s->saved_position = position;
  s->since_save = 0;
  return 0;
}

int chd_sub_save_position(chd_sub *s)
{
  if (s->position == s->saved_position)
    return 0;
  return save_position(s, s->position);
}

/*
 * A reason that goes into logs, records and `status`: one line, and never
 * the values of a row. PostgreSQL's DETAIL ("Failing row contains (...)",
 * "Key (...)=(...)") quotes them, so it is cut off.
 */
static void clean_reason(const char *reason, char *out, size_t size)
{
  static const char *const cuts[] = { "DETAIL:", "Failing row contains", "Key (" };
  size_t n;

  snprintf(out, size, "%s", reason && *reason ? reason : "(no reason given)");
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    char *at = strstr(out, cuts[i]);
    if (at)
      *at = '\0';
  }
  for (char *c = out; *c; c++)
    if (*c == '\n' || *c == '\r' || *c == '\t')
      *c = ' ';
  n = strlen(out);
  while (n > 0 && (out[n - 1] == ' ' || out[n - 1] == ':' || out[n - 1] == ';'))
    out[--n] = '\0';
}

static void stop_subscription(chd_sub *s, const ch_message *m, const char *reason)
{
  chd_log_fields f = fields_of(s, m);
  char clean[CHD_PARK_REASON_MAX];

  drop_ahead(s);              /* a stopped subscription takes nothing more */
  clean_reason(reason, clean, sizeof clean);
  s->state = CHD_SUB_STOPPED;
  s->stopped_at = m->global_position;
  s->failures++;
  if (chd_status_sub_of(s->index))
    chd_status_sub_of(s->index)->stopped_at = s->stopped_at;
  publish(s);
  chd_log(CH_LOG_ERROR, &f, "subscription stopped: %s", clean);
  /* keep what was done before the failing message */
  if (!position_in_tx(s) && chd_sub_save_position(s) != 0)
    chd_log(CH_LOG_WARN, &f, "cannot save the position: %s", s->error);
  if (s->store->mark_stopped(s, m, clean) != CHD_STORE_OK)
    chd_log(CH_LOG_WARN, &f, "cannot record the stop: %s", s->error);
}

/*
 * Park m's stream at m (park.h); `cause` is the id of the retry request
 * being carried out, or NULL. Returns 0, or -1 when the record could not be
 * written (then nothing changed: the message is read again).
 */
static int park_message(chd_sub *s, const ch_message *m, const char *reason,
                        const char *cause)
{
  chd_log_fields f = fields_of(s, m);
  char clean[CHD_PARK_REASON_MAX];
  const chd_parked *before = chd_park_find(&s->parked, m->stream_name);
  int64_t held = before ? before->messages : 0;

  clean_reason(reason, clean, sizeof clean);
  if (s->store->park_add(s, m, clean, cause) != CHD_STORE_OK) {
    chd_log(CH_LOG_ERROR, &f, "cannot park stream %s: %s", m->stream_name, s->error);
    s->park_failed = true;
    return -1;
  }
  s->failures++;
  /* a retry that parks again further on: the messages it handled are gone */
  s->parked_messages += 1 - held;
  if (s->parked_messages < (int64_t)s->parked.count)
    s->parked_messages = (int64_t)s->parked.count;
  publish(s);
  chd_log(CH_LOG_ERROR, &f, "parked stream %s at position %" PRId64 ": %s; its later"
          " messages wait behind it (comphost parked, retry, skip)", m->stream_name,
          m->position, clean);
  return 0;
}

typedef enum outcome {
  DONE,       /* handled, skipped, filtered out or parked: go on */
  FAILED,     /* failed for good */
  STOPPING,   /* told to stop */
  AGAIN       /* could not record a park, or the store lost positions:
                 read it again later */
} outcome;

/* CH_SKIP: log it with the message and count it. */
static void note_skip(chd_sub *s, const ch_message *m)
{
  chd_log_fields f = fields_of(s, m);
  char clean[CHD_PARK_REASON_MAX];

  clean_reason(s->ctx->error, clean, sizeof clean);
  s->skipped++;
  publish(s);
  chd_log(CH_LOG_WARN, &f, "skipped a malformed message: %s", clean);
}

/*
 * Deliver one message on its own (its own transaction in transaction mode),
 * retrying as the handler asks and reconnecting when a connection broke.
 * With `move`, the position moves past it (in the transaction when the
 * position store is transactional); a retry of a parked stream delivers
 * without. FAILED leaves the reason in `reason`.
 */
static outcome deliver(chd_sub *s, const ch_message *m, bool move, char *reason,
                       size_t size)
{
  ch_ctx *ctx = s->ctx;
  ch_handler_fn fn = handler_for(s, m);
  bool tx = view_tx(s) || store_tx(s);
  bool pos_tx = move && position_in_tx(s);
  int64_t backoff = ctx->inst->retry_backoff_ms;
  int64_t attempts = 0;

  for (;;) {
    ch_result r = CH_OK;

    if (ctx->stop && *ctx->stop)
      return STOPPING;
    if (tx && tx_begin(s) != 0) {
      if (recover(s) != 0)
        return STOPPING;
      if (move && recheck_position(s) != 0)
        return AGAIN;          /* read again from where the store is */
      continue;
    }
    if (fn)
      r = call_handler(s, fn, m);
    if (fn && ctx->undecodable[0]) {
      /* it asked for what cannot be decoded: a poison, whatever it says */
      if (tx)
        tx_rollback(s);
      snprintf(reason, size, "%s", ctx->undecodable);
      return FAILED;
    }
    if (r == CH_SKIP) {
      if (tx)
        tx_rollback(s);      /* whatever it did before it gave up */
      note_skip(s, m);
      if (move)
        advance(s, m->global_position, 1, !own_record(s, m), false);
      return DONE;
    }
    if (r == CH_OK && tx) {
      bool saved = false;
      if (pos_tx)
        saved = save_position(s, m->global_position) == 0;
      if ((pos_tx && !saved) || tx_commit(s) != 0) {
        if (pos_tx && !saved)
          tx_rollback(s);
        if (s->state == CHD_SUB_LOST)
          return STOPPING;      /* the slot is someone else's now */
        snprintf(ctx->error, sizeof ctx->error, "%s", s->error);
        r = CH_RETRY;
      } else {
        if (move)
          advance(s, m->global_position, 1, !own_record(s, m), pos_tx);
        return DONE;
      }
    } else if (r == CH_OK) {
      if (move)
        advance(s, m->global_position, 1, !own_record(s, m), false);
      return DONE;
    } else if (tx) {
      tx_rollback(s);
    }

    if (connections_broken(s)) {
      /* a database went away: not the handler's fault, not a retry */
      if (recover(s) != 0)
        return STOPPING;
      if (move && recheck_position(s) != 0)
        return AGAIN;
      continue;
    }
    if (r == CH_RETRY) {
      chd_log_fields f = fields_of(s, m);
      attempts++;
      s->retries++;
      if (chd_status_sub_of(s->index))
        chd_status_sub_of(s->index)->retries = s->retries;
      if (attempts > ctx->inst->max_retries) {
        snprintf(reason, size, "gave up after %" PRId64 " retries: %s",
                 ctx->inst->max_retries, ctx->error[0] ? ctx->error : "(no reason given)");
        return FAILED;
      }
      chd_log(CH_LOG_WARN, &f, "retry %" PRId64 " of %" PRId64 " in %" PRId64 " ms: %s",
              attempts, ctx->inst->max_retries, backoff,
              ctx->error[0] ? ctx->error : "(no reason given)");
      if (s->nap(backoff, ctx->stop) != 0)
        return STOPPING;
      backoff = backoff * 2 > MAX_RETRY_BACKOFF_MS ? MAX_RETRY_BACKOFF_MS : backoff * 2;
      continue;
    }
    snprintf(reason, size, "handler failed: %s",
             ctx->error[0] ? ctx->error : "(no reason given)");
    return FAILED;
  }
}

/* A message failed for good: park its stream, or stop (on_failure). */
static outcome failed_for_good(chd_sub *s, const ch_message *m, const char *reason)
{
  if (s->ctx->inst->on_failure == CHD_ON_FAILURE_STOP) {
    stop_subscription(s, m, reason);
    return FAILED;
  }
  if (park_message(s, m, reason, NULL) != 0)
    return AGAIN;
  advance(s, m->global_position, 1, !own_record(s, m), false);
  return DONE;
}

/* A message of a parked stream, at or after where it was parked: pass. */
static void pass_parked(chd_sub *s, const ch_message *m)
{
  chd_parked *p = chd_park_find(&s->parked, m->stream_name);

  if (p && m->global_position > p->global_position) {
    p->messages++;
    s->parked_messages++;
    publish(s);
  }
}

/*
 * Why message i of b cannot be handed on, or NULL. A subscription that is
 * not envelope-only had the batch decoded (prepare_batch): its messages
 * whose data or metadata did not decode. An envelope-only one: only those
 * whose metadata the origin filter needs and cannot decode; its handlers
 * ask for the rest themselves.
 */
static const char *poison_of(chd_sub *s, chd_mdb_batch *b, size_t i)
{
  if (!s->envelope_only)
    return b->decode_errors ? b->decode_errors[i] : NULL;
  if (s->desc->origin_stream_name)
    return chd_mdb_batch_decode(b, i, CHD_MDB_METADATA);
  return NULL;
}

/*
 * A batch just read: unless the subscription is envelope-only, decode every
 * message now (its handlers read msg->data, which is never NULL for them).
 * Returns 0, or -1 when out of memory (s->error).
 */
static int prepare_batch(chd_sub *s, chd_mdb_batch *b)
{
  if (s->envelope_only || !b->texts)
    return 0;
  for (size_t i = 0; i < b->count; i++) {
    const char *why = chd_mdb_batch_decode(b, i, CHD_MDB_DATA | CHD_MDB_METADATA);
    if (why && (!b->decode_errors || !b->decode_errors[i])) {
      snprintf(s->error, sizeof s->error, "%s", why);
      return -1;
    }
  }
  return 0;
}

/*
 * Handle message i of b on its own: pass it when its stream is parked, fail
 * it at once when it cannot be handed on (poison_of), else deliver it.
 */
static outcome handle_alone(chd_sub *s, chd_mdb_batch *b, size_t i)
{
  const ch_message *m = &b->messages[i];
  const char *bad;
  char reason[1400];
  outcome o;

  if (s->state != CHD_SUB_RUNNING)
    return STOPPING;            /* lost its slot meanwhile */
  if (chd_park_holds(&s->parked, m)) {
    pass_parked(s, m);
    advance(s, m->global_position, 1, !own_record(s, m), false);
    return DONE;
  }
  bad = poison_of(s, b, i);
  if (bad)
    return failed_for_good(s, m, bad);
  o = deliver(s, m, true, reason, sizeof reason);
  return o == FAILED ? failed_for_good(s, m, reason) : o;
}

/*
 * Park, before the batch's transaction, the messages that cannot be handed
 * on (with on_failure = park), so the transaction passes over them with the
 * rest of their streams. Returns 0, or -1 when a park could not be
 * recorded (the batch is read again).
 */
static int park_undecodable(chd_sub *s, chd_mdb_batch *b)
{
  for (size_t i = 0; i < b->count; i++) {
    const ch_message *m = &b->messages[i];
    const char *bad;
    if (chd_park_holds(&s->parked, m))
      continue;
    bad = poison_of(s, b, i);
    if (bad && park_message(s, m, bad, NULL) != 0)
      return -1;
  }
  return 0;
}

/* Is there a message in b, not held back, that cannot be handed on? */
static bool any_poison(chd_sub *s, chd_mdb_batch *b)
{
  for (size_t i = 0; i < b->count; i++)
    if (!chd_park_holds(&s->parked, &b->messages[i]) && poison_of(s, b, i))
      return true;
  return false;
}

/*
 * A whole batch in one transaction. On any failure, roll back and replay the
 * batch message by message, so the good prefix commits and the position
 * stops right before the message that fails. Messages of parked streams
 * are passed over.
 */
static void handle_batch_tx(chd_sub *s, chd_mdb_batch *b)
{
  ch_ctx *ctx = s->ctx;
  size_t done = 0;
  bool failed = false;

  if (ctx->inst->on_failure == CHD_ON_FAILURE_STOP && any_poison(s, b))
    goto one_by_one;          /* it stops at the first of them */
  if (park_undecodable(s, b) != 0)
    return;
  if (tx_begin(s) != 0) {
    recover(s);
    return;
  }
  if (s->desc->handle_batch) {
    ch_message *passing = malloc(b->count * sizeof *passing);
    size_t n = 0;
    if (!passing) {
      failed = true;
    } else {
      for (size_t i = 0; i < b->count; i++)
        if (origin_matches(s, &b->messages[i]) && !chd_park_holds(&s->parked, &b->messages[i]))
          passing[n++] = b->messages[i];
      if (n > 0) {
        int64_t started = chd_now_us();
        chd_status_heartbeat();
        chd_ctx_begin_message(ctx, s->subscriber_id, NULL);
        failed = s->desc->handle_batch(ctx, ctx->state, passing, n) != CH_OK;
        chd_ctx_end_message(ctx);
        if (failed || ctx->undecodable[0]) {
          chd_log_fields f = fields_of(s, NULL);
          chd_log(CH_LOG_WARN, &f, "batch handler failed on %zu messages: %s; handling them"
                  " one by one", n, ctx->undecodable[0] ? ctx->undecodable
                  : ctx->error[0] ? ctx->error : "(no reason given)");
          failed = true;
        }
        chd_status_handler_done(s->index, started);
      }
      free(passing);
    }
    done = failed ? 0 : b->count;
  } else {
    for (; done < b->count; done++) {
      const ch_message *m = &b->messages[done];
      ch_handler_fn fn;
      if (ctx->stop && *ctx->stop)
        break;
      if (chd_park_holds(&s->parked, m))
        continue;
      fn = handler_for(s, m);
      if (fn && (call_handler(s, fn, m) != CH_OK || ctx->undecodable[0])) {
        failed = true;        /* CH_SKIP too: the replay rolls back its writes */
        break;
      }
    }
  }
  if (!failed && done == 0) {
    tx_rollback(s);
    return;
  }
  if (!failed) {
    int64_t last = b->messages[done - 1].global_position;
    if (position_in_tx(s))
      failed = save_position(s, last) != 0;
    if (failed)
      tx_rollback(s);
    else
      failed = tx_commit(s) != 0;
    if (!failed) {
      int64_t counted = 0;
      for (size_t i = 0; i < done; i++) {
        counted += !own_record(s, &b->messages[i]);
        if (chd_park_holds(&s->parked, &b->messages[i]))
          pass_parked(s, &b->messages[i]);
      }
      advance(s, last, (int64_t)done, counted, position_in_tx(s));
      return;
    }
  } else {
    tx_rollback(s);
  }

  if (s->state == CHD_SUB_LOST)
    return;         /* fenced: nothing of the batch was committed */
  if (connections_broken(s)) {
    recover(s);     /* the batch is read again on the next tick */
    return;
  }
one_by_one:
  for (size_t i = 0; i < b->count; i++)
    if (handle_alone(s, b, i) != DONE)
      break;
}

/*
 * How many messages of an $all batch may be delivered: the contiguous run
 * from position + 1, and past a gap only once nothing can fill it.
 * Returns the count, or -1 when the snapshot could not be read.
 */
static int64_t contiguous_prefix(chd_sub *s, const chd_mdb_batch *b)
{
  int64_t expected = s->position + 1, now = chd_now_ms();
  size_t n = 0;

  while (n < b->count) {
    int64_t gp = b->messages[n].global_position;
    int64_t xmin, xmax;

    if (gp <= expected) {                  /* contiguous */
      expected = gp + 1;
      n++;
      continue;
    }
    if (s->gap_at != expected) {           /* a new gap: note who could fill it */
      if (s->store->snapshot(s, &xmin, &xmax) != CHD_STORE_OK)
        return -1;
      s->gap_at = expected;
      s->gap_since_ms = now;
      s->gap_xmax = xmax;
      break;
    }
    if (now - s->gap_since_ms < CHD_GAP_MIN_WAIT_MS)
      break;
    if (now - s->gap_since_ms < s->gap_timeout_ms) {
      if (s->store->snapshot(s, &xmin, &xmax) != CHD_STORE_OK)
        return -1;
      if (xmin < s->gap_xmax)              /* a writer of that time still runs */
        break;
    }
    chd_log(CH_LOG_DEBUG, NULL, "%s: global positions %" PRId64 " to %" PRId64
            " are empty; going on", s->subscriber_id, expected, gp - 1);
    s->gap_at = 0;
    expected = gp + 1;
    n++;
  }
  if (n > 0 && s->gap_at && s->gap_at < expected)
    s->gap_at = 0;
  return (int64_t)n;
}

/* Keep the first `keep` messages of a batch, releasing the rest. */
static void truncate_batch(chd_mdb_batch *b, size_t keep)
{
  for (size_t i = keep; i < b->count; i++) {
    json_decref(b->messages[i].data);
    json_decref(b->messages[i].metadata);
    if (b->decode_errors) {
      free(b->decode_errors[i]);
      b->decode_errors[i] = NULL;
    }
  }
  if (keep < b->count)
    b->count = keep;
}

/*
 * Carry out the operator's request on parked stream `p` (park.h). Returns
 * 0 when done (or parked again), -1 on trouble with the store, 1 when told
 * to stop.
 */
static int carry_out(chd_sub *s, const chd_parked *p)
{
  ch_ctx *ctx = s->ctx;
  chd_log_fields f = fields_of(s, NULL);
  chd_park_request request = p->request;
  char stream[sizeof s->status_stream + 1024], request_id[40];
  int64_t from = p->position, count = 0, held = p->messages;

  snprintf(stream, sizeof stream, "%s", p->stream);
  snprintf(request_id, sizeof request_id, "%s", p->request_id);
  if (request == CHD_PARK_SKIP) {
    if (s->store->park_count(s, p, &count) != CHD_STORE_OK ||
        s->store->park_close(s, stream, CHD_PARK_SKIP, count) != CHD_STORE_OK) {
      chd_log(CH_LOG_ERROR, &f, "cannot skip parked stream %s: %s", stream, s->error);
      return -1;
    }
    chd_log(CH_LOG_WARN, &f, "skipped parked stream %s: %" PRId64 " message%s dropped",
            stream, count, count == 1 ? "" : "s");
    s->parked_messages = s->parked_messages > held ? s->parked_messages - held : 0;
    publish(s);
    return 0;
  }

  chd_log(CH_LOG_INFO, &f, "retrying parked stream %s from position %" PRId64, stream, from);
  for (;;) {
    chd_mdb_batch b;
    bool end;

    memset(&b, 0, sizeof b);
    if (s->store->read_stream(s, stream, from, 100, &b) != CHD_STORE_OK ||
        prepare_batch(s, &b) != 0) {
      chd_log(CH_LOG_ERROR, &f, "cannot read parked stream %s: %s", stream, s->error);
      chd_mdb_batch_release(&b);
      return -1;
    }
    end = b.count < 100;
    ctx->batch = &b;
    for (size_t i = 0; i < b.count; i++) {
      const ch_message *m = &b.messages[i];
      const char *bad;
      char reason[1400];
      outcome o;

      if (m->global_position > s->position) {
        end = true;             /* not read yet: it comes as usual */
        break;
      }
      bad = poison_of(s, &b, i);
      o = bad ? FAILED : deliver(s, m, false, reason, sizeof reason);
      if (o == STOPPING) {
        ctx->batch = NULL;
        chd_mdb_batch_release(&b);
        return 1;
      }
      if (o == FAILED) {
        int rc = park_message(s, m, bad ? bad : reason, request_id);
        ctx->batch = NULL;
        chd_mdb_batch_release(&b);
        return rc;
      }
      count++;
      from = m->position + 1;
    }
    ctx->batch = NULL;
    chd_mdb_batch_release(&b);
    if (end)
      break;
  }
  if (s->store->park_close(s, stream, CHD_PARK_RETRY, count) != CHD_STORE_OK) {
    chd_log(CH_LOG_ERROR, &f, "cannot record the retry of %s: %s", stream, s->error);
    return -1;
  }
  chd_log(CH_LOG_INFO, &f, "retried parked stream %s: %" PRId64 " message%s handled; it"
          " flows again", stream, count, count == 1 ? "" : "s");
  s->parked_messages = s->parked_messages > held ? s->parked_messages - held : 0;
  publish(s);
  return 0;
}

/* Read new records of the status stream, and carry out requests. Returns 0,
 * or -1 on trouble with the store. */
static int park_check(chd_sub *s)
{
  chd_log_fields f = fields_of(s, NULL);
  int64_t version;
  chd_store_rc rc;

  s->next_park_check_ms = chd_now_ms() + CHD_PARK_CHECK_MS;
  rc = s->store->park_version(s, &version);
  if (rc != CHD_STORE_OK) {
    if (rc != CHD_STORE_DISCONNECTED)
      chd_log(CH_LOG_ERROR, &f, "%s", s->error);
    return -1;
  }
  if (version > s->parked.version && s->store->park_fold(s) != CHD_STORE_OK) {
    chd_log(CH_LOG_ERROR, &f, "reading %s: %s", s->status_stream, s->error);
    return -1;
  }
  for (size_t i = 0; i < s->parked.count; i++) {
    int rc_req;
    if (s->parked.items[i].request == CHD_PARK_NONE)
      continue;
    rc_req = carry_out(s, &s->parked.items[i]);
    if (rc_req != 0)
      return rc_req < 0 ? -1 : 0;
    i = (size_t)-1;             /* the set changed: look again from the start */
  }
  publish(s);
  return 0;
}

/*
 * The next batch, from s->position + 1: the one read ahead when it starts
 * there, else a new read. A batch read ahead from anywhere else (the batch
 * before it was not handled to its end: a failure, a stop, a message held
 * back) is dropped unseen.
 */
static chd_store_rc next_batch(chd_sub *s, chd_mdb_batch *b)
{
  int64_t from = s->ahead_from;

  if (from > 0) {
    s->ahead_from = 0;
    if (from != s->position + 1) {
      s->store->drop_ahead(s);
      s->ahead_dropped++;
    } else if (s->store->take_ahead(s, b) == CHD_STORE_OK) {
      s->ahead_used++;
      return CHD_STORE_OK;
    } else {
      chd_log_fields f = fields_of(s, NULL);
      chd_log(CH_LOG_DEBUG, &f, "reading ahead failed: %s; reading again", s->error);
    }
  }
  return s->store->read(s, s->position + 1, b);
}

/*
 * Start reading the batch that follows b while b is handled. Only for a
 * batch that came whole (as many messages as asked for, none held back): a
 * shorter one means the subscription has caught up, and reading on past
 * messages held back would be wrong. Whether it is used is decided when it
 * is taken (next_batch).
 */
static void start_read_ahead(chd_sub *s, const chd_mdb_batch *b)
{
  int64_t from = b->messages[b->count - 1].global_position + 1;

  if (!s->ctx->inst->read_ahead || !s->store->read_ahead)
    return;
  if (s->ahead_until_ms && chd_now_ms() >= *s->ahead_until_ms)
    return;                   /* the slot's lease may run out before it is used */
  if (s->store->read_ahead(s, from) == CHD_STORE_OK)
    s->ahead_from = from;
}

int chd_sub_tick(chd_sub *s, bool *did_work)
{
  ch_ctx *ctx = s->ctx;
  int64_t started = chd_now_us();
  chd_mdb_batch b;
  chd_store_rc rc;
  bool full, cut = false;

  *did_work = false;
  if (s->state != CHD_SUB_RUNNING) {
    drop_ahead(s);
    return 0;
  }
  if (recheck_position(s) < 0) {
    chd_log_fields f = fields_of(s, NULL);
    if (ctx->stop && *ctx->stop)
      return 0;                /* stopped while reconnecting */
    chd_log(CH_LOG_ERROR, &f, "cannot read the position again: %s", s->error);
    return -1;
  }
  if (chd_now_ms() >= s->next_park_check_ms && park_check(s) != 0)
    return -1;
  rc = next_batch(s, &b);
  if (rc == CHD_STORE_OK && prepare_batch(s, &b) != 0) {
    chd_mdb_batch_release(&b);
    rc = CHD_STORE_ERROR;
  }
  if (rc != CHD_STORE_OK) {
    chd_log_fields f = fields_of(s, NULL);
    if (rc != CHD_STORE_DISCONNECTED)
      chd_log(CH_LOG_ERROR, &f, "%s", s->error);
    return -1;
  }
  full = (int64_t)b.count >= ctx->inst->batch_size;
  {
    chd_log_fields f = fields_of(s, NULL);
    if (chd_status_read(s->index, b.count, ctx->inst->batch_size, &f, s->position)) {
      int64_t lag = -1;
      if (s->store->lag(s, &lag) != CHD_STORE_OK)
        lag = -1;
      chd_status_lag(s->index, lag, &f);
    }
  }
  if (chd_stream_is_all(s->desc->stream_name)) {
    int64_t usable = contiguous_prefix(s, &b);
    if (usable < 0) {
      chd_mdb_batch_release(&b);
      return -1;
    }
    /* hold back what lies beyond a gap; the next read fetches it again */
    cut = (size_t)usable < b.count;
    truncate_batch(&b, (size_t)usable);
  }
  if (s->stop_before > 0 && b.count > 0) {
    size_t keep = 0;
    while (keep < b.count && b.messages[keep].global_position < s->stop_before)
      keep++;
    if (keep == 0 && ctx->inst->on_failure == CHD_ON_FAILURE_STOP) {
      stop_subscription(s, &b.messages[0], s->stop_reason);
      chd_mdb_batch_release(&b);
      return 0;
    }
    if (keep == 0) {
      /* the message that crashed the worker: parked unread, then on */
      const ch_message *m = &b.messages[0];
      int rc_park = chd_park_holds(&s->parked, m) ? 0
                    : park_message(s, m, s->stop_reason, NULL);
      if (rc_park == 0) {
        advance(s, m->global_position, 1, !own_record(s, m), false);
        s->stop_before = 0;
        *did_work = true;
      }
      chd_mdb_batch_release(&b);
      return rc_park;
    }
    cut = cut || keep < b.count;
    truncate_batch(&b, keep);
  }
  if (b.count == 0) {
    chd_mdb_batch_release(&b);
    return 0;
  }
  *did_work = true;
  s->park_failed = false;
  if (full && !cut && !(ctx->stop && *ctx->stop))
    start_read_ahead(s, &b);
  ctx->batch = &b;
  if (view_tx(s) || store_tx(s)) {
    handle_batch_tx(s, &b);
  } else {
    for (size_t i = 0; i < b.count; i++) {
      if (ctx->stop && *ctx->stop)
        break;
      if (handle_alone(s, &b, i) != DONE)
        break;
    }
  }
  ctx->batch = NULL;
  {
    chd_log_fields f = fields_of(s, NULL);
    chd_status_batch_done(s->index, b.count, full, started, &f, s->position);
  }
  chd_mdb_batch_release(&b);
  return s->park_failed ? -1 : 0;
}
