/*
 * test_subscription.c - the consumer loop (subscription.c) on an in-memory
 * store, without PostgreSQL: gaps of $all, retries and their backoff,
 * failures that park a stream or stop the subscription, the replay of a
 * batch after a failure, CH_SKIP, how often the position is saved, and a
 * consumer group slot whose lease was taken over (fencing).
 *
 * The in-memory store (struct mem) holds the messages of the category (or
 * of $all), the saved position, a transaction of its own that holds the
 * position and the handler's "effects", the parked streams, and what the
 * loop asked of it. The handler records each delivery; what it returns per
 * global position is set by the test.
 */
#include "support.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "group.h"
#include "host_api.h"
#include "subscription.h"

#define MAX_MESSAGES 64

typedef struct mem {
  ch_message messages[MAX_MESSAGES];  /* in global order */
  char ids[MAX_MESSAGES][40];
  char streams[MAX_MESSAGES][64];
  size_t count;

  int64_t xmin, xmax;                 /* the snapshot */
  int snapshots;

  int64_t saved;                      /* the committed position */
  int64_t puts[MAX_MESSAGES];         /* every committed position, in order */
  size_t put_count;
  bool in_tx;
  bool pending_set;
  int64_t pending;                    /* a position put in the open transaction */
  int begins, commits, rollbacks;

  int64_t effects[MAX_MESSAGES];      /* global positions the handler changed */
  size_t effect_count;
  size_t effects_at_begin;

  int64_t stopped_at;
  char stop_reason[512];
  int parks;
  bool fenced;                        /* the slot's lease is someone else's */
} mem;

static mem store;

/* ---- the handler ---- */

static int calls[MAX_MESSAGES + 1];          /* per global position */
static int retries_first[MAX_MESSAGES + 1];  /* CH_RETRY this many times first */
static ch_result results[MAX_MESSAGES + 1];  /* then this (CH_OK by default) */
static int64_t delivered[4 * MAX_MESSAGES];
static size_t delivered_count;

static ch_result handle(ch_ctx *ctx, void *state, const ch_message *m)
{
  int64_t gp = m->global_position;
  (void)state;

  calls[gp]++;
  delivered[delivered_count++] = gp;
  store.effects[store.effect_count++] = gp;
  if (calls[gp] <= retries_first[gp]) {
    snprintf(ctx->error, sizeof ctx->error, "not yet (call %d)", calls[gp]);
    return CH_RETRY;
  }
  if (results[gp] != CH_OK)
    snprintf(ctx->error, sizeof ctx->error, "message %" PRId64 " is bad", gp);
  return results[gp];
}

/* ---- the in-memory store ---- */

static chd_store_rc failed_store(chd_sub *s, const char *what)
{
  snprintf(s->error, sizeof s->error, "%s", what);
  return CHD_STORE_ERROR;
}

/* A batch of copies of the messages that `take` selects, up to `max`. */
static chd_store_rc batch_of(chd_mdb_batch *out, int64_t max,
                             bool (*take)(const ch_message *m, const void *arg),
                             const void *arg)
{
  memset(out, 0, sizeof *out);
  out->messages = calloc(MAX_MESSAGES, sizeof *out->messages);
  if (!out->messages)
    return CHD_STORE_ERROR;
  for (size_t i = 0; i < store.count && (int64_t)out->count < max; i++) {
    ch_message *m = &out->messages[out->count];
    if (!take(&store.messages[i], arg))
      continue;
    *m = store.messages[i];
    json_incref(m->data);
    json_incref(m->metadata);
    out->count++;
  }
  return CHD_STORE_OK;
}

static bool from_global(const ch_message *m, const void *arg)
{
  return m->global_position >= *(const int64_t *)arg;
}

static chd_store_rc mem_read(chd_sub *s, int64_t from, chd_mdb_batch *out)
{
  return batch_of(out, s->ctx->inst->batch_size, from_global, &from);
}

static chd_store_rc mem_snapshot(chd_sub *s, int64_t *xmin, int64_t *xmax)
{
  (void)s;
  store.snapshots++;
  *xmin = store.xmin;
  *xmax = store.xmax;
  return CHD_STORE_OK;
}

static chd_store_rc mem_lag(chd_sub *s, int64_t *lag)
{
  *lag = 0;
  for (size_t i = 0; i < store.count; i++)
    *lag += store.messages[i].global_position > s->position;
  return CHD_STORE_OK;
}

static chd_store_rc mem_get_position(chd_sub *s, int64_t *position)
{
  (void)s;
  *position = store.saved;
  return CHD_STORE_OK;
}

static void commit_position(int64_t position)
{
  store.saved = position;
  store.puts[store.put_count++] = position;
}

static chd_store_rc mem_put_position(chd_sub *s, int64_t position)
{
  if (store.fenced) {
    snprintf(s->error, sizeof s->error, "the lease of slot %" PRId64 " was taken over",
             s->member);
    return CHD_STORE_FENCED;
  }
  if (store.in_tx) {
    store.pending_set = true;
    store.pending = position;
  } else {
    commit_position(position);
  }
  return CHD_STORE_OK;
}

static chd_store_rc mem_mark_stopped(chd_sub *s, const ch_message *m, const char *reason)
{
  (void)s;
  store.stopped_at = m->global_position;
  snprintf(store.stop_reason, sizeof store.stop_reason, "%s", reason);
  return CHD_STORE_OK;
}

static chd_store_rc mem_begin(chd_sub *s)
{
  if (store.in_tx)
    return failed_store(s, "BEGIN inside a transaction");
  store.in_tx = true;
  store.pending_set = false;
  store.effects_at_begin = store.effect_count;
  store.begins++;
  return CHD_STORE_OK;
}

static chd_store_rc mem_commit(chd_sub *s)
{
  if (!store.in_tx)
    return failed_store(s, "COMMIT outside a transaction");
  if (store.pending_set)
    commit_position(store.pending);
  store.in_tx = false;
  store.commits++;
  return CHD_STORE_OK;
}

static void mem_rollback(chd_sub *s)
{
  (void)s;
  if (!store.in_tx)
    return;
  store.effect_count = store.effects_at_begin;
  store.in_tx = false;
  store.pending_set = false;
  store.rollbacks++;
}

static bool mem_broken(chd_sub *s)
{
  (void)s;
  return false;
}

static int mem_recover(chd_sub *s)
{
  (void)s;
  return 0;
}

static chd_store_rc mem_park_version(chd_sub *s, int64_t *version)
{
  *version = s->parked.version;       /* no operator writes records here */
  return CHD_STORE_OK;
}

static chd_store_rc mem_park_fold(chd_sub *s)
{
  (void)s;
  return CHD_STORE_OK;
}

static chd_store_rc mem_park_add(chd_sub *s, const ch_message *m, const char *reason,
                                 const char *cause)
{
  (void)cause;
  store.parks++;
  return chd_park_enter(&s->parked, m, reason) == 0 ? CHD_STORE_OK
                                                    : failed_store(s, "out of memory");
}

static chd_store_rc mem_park_close(chd_sub *s, const char *stream, chd_park_request request,
                                   int64_t count)
{
  (void)request;
  (void)count;
  chd_park_drop(&s->parked, stream);
  return CHD_STORE_OK;
}

static chd_store_rc mem_park_count(chd_sub *s, const chd_parked *p, int64_t *count)
{
  *count = 0;
  for (size_t i = 0; i < store.count; i++) {
    const ch_message *m = &store.messages[i];
    *count += !strcmp(m->stream_name, p->stream) && m->global_position >= p->global_position &&
              m->global_position <= s->position;
  }
  return CHD_STORE_OK;
}

typedef struct stream_from {
  const char *stream;
  int64_t from;
} stream_from;

static bool in_stream(const ch_message *m, const void *arg)
{
  const stream_from *sf = arg;
  return !strcmp(m->stream_name, sf->stream) && m->position >= sf->from;
}

static chd_store_rc mem_read_stream(chd_sub *s, const char *stream, int64_t from,
                                    int64_t count, chd_mdb_batch *out)
{
  stream_from sf = { stream, from };
  (void)s;
  return batch_of(out, count, in_stream, &sf);
}

static const chd_sub_store mem_store = {
  .read = mem_read,
  .snapshot = mem_snapshot,
  .lag = mem_lag,
  .get_position = mem_get_position,
  .put_position = mem_put_position,
  .mark_stopped = mem_mark_stopped,
  .begin = mem_begin,
  .commit = mem_commit,
  .rollback = mem_rollback,
  .broken = mem_broken,
  .recover = mem_recover,
  .park_version = mem_park_version,
  .park_fold = mem_park_fold,
  .park_add = mem_park_add,
  .park_close = mem_park_close,
  .park_count = mem_park_count,
  .read_stream = mem_read_stream,
};

/* Put a message of `stream` at global position gp, in global order. */
static void add_message(const char *stream, int64_t gp)
{
  size_t at = store.count;
  ch_message *m;
  int64_t position = 0;

  assert_true(store.count < MAX_MESSAGES && gp <= MAX_MESSAGES);
  while (at > 0 && store.messages[at - 1].global_position > gp)
    at--;
  memmove(&store.messages[at + 1], &store.messages[at],
          (store.count - at) * sizeof store.messages[0]);
  memmove(&store.ids[at + 1], &store.ids[at], (store.count - at) * sizeof store.ids[0]);
  memmove(&store.streams[at + 1], &store.streams[at],
          (store.count - at) * sizeof store.streams[0]);
  store.count++;
  for (size_t i = 0; i < store.count; i++)
    if (i != at && !strcmp(store.streams[i], stream))
      position++;
  /* the pointers into the moved arrays, again */
  for (size_t i = 0; i < store.count; i++) {
    store.messages[i].id = store.ids[i];
    store.messages[i].stream_name = store.streams[i];
  }
  m = &store.messages[at];
  snprintf(store.ids[at], sizeof store.ids[at], "00000000-0000-4000-8000-%012" PRId64, gp);
  snprintf(store.streams[at], sizeof store.streams[at], "%s", stream);
  m->id = store.ids[at];
  m->stream_name = store.streams[at];
  m->type = "Thing";
  m->position = position;
  m->global_position = gp;
  m->data = json_object();
  m->metadata = json_object();
  m->time = "2026-01-01 00:00:00.000";
}

/* ---- the subscription under test ---- */

static const ch_handler handlers[] = { { "Thing", handle, { NULL, NULL } },
                                       { NULL, NULL, { NULL, NULL } } };
static ch_subscription subscriptions[] = {
  { "thing", "test:thing", NULL, handlers, NULL, { NULL, NULL, NULL } },
  { NULL, NULL, NULL, NULL, NULL, { NULL, NULL, NULL } },
};
static chd_plugin plugin;
static chd_config cfg;
static chd_instance_config inst;
static ch_ctx ctx;
static chd_sub sub;
static volatile sig_atomic_t never;

static int64_t naps[MAX_MESSAGES];
static size_t nap_count;

/* The retry backoff, recorded instead of slept. */
static int record_nap(int64_t ms, const volatile sig_atomic_t *stop)
{
  (void)stop;
  naps[nap_count++] = ms;
  return 0;
}

static int release_messages(void **state)
{
  (void)state;
  for (size_t i = 0; i < store.count; i++) {
    json_decref(store.messages[i].data);
    json_decref(store.messages[i].metadata);
  }
  store.count = 0;
  return 0;
}

static int setup(void **state)
{
  release_messages(state);
  memset(&store, 0, sizeof store);
  memset(calls, 0, sizeof calls);
  memset(retries_first, 0, sizeof retries_first);
  memset(results, 0, sizeof results);
  delivered_count = 0;
  nap_count = 0;
  memset(&plugin, 0, sizeof plugin);
  plugin.desc.name = "test";
  plugin.desc.subscriptions = subscriptions;
  subscriptions[0].stream_name = "thing";
  memset(&inst, 0, sizeof inst);
  inst.name = "test";
  inst.batch_size = 10;
  inst.position_update_interval = 100;
  inst.max_retries = 3;
  inst.retry_backoff_ms = 10;
  inst.batch_bytes = CHD_DEFAULT_BATCH_BYTES;
  inst.deterministic_ids = true;
  memset(&cfg, 0, sizeof cfg);
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  chd_sub_release(&sub);
  return 0;
}

/* Start the subscription on the in-memory store, as a worker does. */
static void start(void)
{
  char err[1024];

  chd_ctx_init(&ctx, &cfg, &inst, &plugin);
  ctx.stop = &never;
  if (chd_sub_init(&sub, &ctx, 0, &mem_store, &store, err, sizeof err) != 0)
    fail_msg("%s", err);
  sub.nap = record_nap;
}

/* One round of the loop; returns whether it read messages. */
static bool tick(void)
{
  bool did = false;

  assert_int_equal(chd_sub_tick(&sub, &did), 0);
  return did;
}

/* ---- the tests ---- */

/*
 * $all: a gap at 3 while a writer that started before it was seen still
 * runs (xmin below the xmax noted then): 1 and 2 are delivered, 4 and 5
 * wait. The missing message lands: it is delivered in order.
 */
static void test_all_gap_waits_for_a_writer(void **state)
{
  (void)state;
  subscriptions[0].stream_name = "$all";
  add_message("thing-a", 1);
  add_message("thing-a", 2);
  add_message("thing-b", 4);
  add_message("thing-b", 5);
  store.xmin = 100;
  store.xmax = 101;
  start();

  tick();
  assert_int_equal(sub.position, 2);
  assert_int_equal(delivered_count, 2);
  assert_int_equal(sub.gap_at, 3);
  chd_sleep_ms(CHD_GAP_MIN_WAIT_MS + 5);
  tick();                                     /* the writer still runs: xmin < 101 */
  assert_int_equal(sub.position, 2);
  assert_int_equal(delivered_count, 2);

  add_message("thing-c", 3);                  /* its commit shows up */
  tick();
  assert_int_equal(sub.position, 5);
  assert_int_equal(delivered_count, 5);
  for (size_t i = 0; i < 5; i++)
    assert_int_equal(delivered[i], (int64_t)i + 1);
  assert_int_equal(sub.gap_at, 0);
}

/*
 * $all: a gap that nothing fills. Before CHD_GAP_MIN_WAIT_MS nothing past
 * it goes; once every writer of that time has ended (xmin past the noted
 * xmax), the loop goes on past it; and past the gap timeout it goes on even
 * while old transactions run.
 */
static void test_all_gap_nothing_fills(void **state)
{
  (void)state;
  subscriptions[0].stream_name = "$all";
  add_message("thing-a", 1);
  add_message("thing-a", 4);
  store.xmin = 50;
  store.xmax = 60;
  start();

  tick();
  assert_int_equal(sub.position, 1);
  tick();                                     /* too soon to look again */
  assert_int_equal(sub.position, 1);
  store.xmin = 60;                            /* the writers of then are done */
  chd_sleep_ms(CHD_GAP_MIN_WAIT_MS + 5);
  tick();
  assert_int_equal(sub.position, 4);
  assert_int_equal(delivered_count, 2);
  assert_int_equal(delivered[1], 4);

  /* another gap, with a transaction that never ends: the timeout */
  add_message("thing-a", 7);
  store.xmin = 0;
  store.xmax = 100;
  sub.gap_timeout_ms = CHD_GAP_MIN_WAIT_MS + 10;
  tick();
  assert_int_equal(sub.position, 4);
  chd_sleep_ms(CHD_GAP_MIN_WAIT_MS + 15);
  tick();
  assert_int_equal(sub.position, 7);
}

/* CH_RETRY twice, then CH_OK: three calls, backoff 10 then 20 ms, two
 * retries counted, and the position moves on. */
static void test_retry_with_backoff(void **state)
{
  (void)state;
  add_message("thing-a", 1);
  add_message("thing-a", 2);
  retries_first[1] = 2;
  start();

  tick();
  assert_int_equal(calls[1], 3);
  assert_int_equal(calls[2], 1);
  assert_int_equal(sub.retries, 2);
  assert_int_equal(nap_count, 2);
  assert_int_equal(naps[0], 10);
  assert_int_equal(naps[1], 20);
  assert_int_equal(sub.position, 2);
  assert_int_equal(sub.failures, 0);
  assert_int_equal(store.parks, 0);
}

/* CH_RETRY for ever: max_retries retries (backoff doubling), then it
 * counts as a failure and its stream is parked; the others flow on. */
static void test_retries_used_up_park_the_stream(void **state)
{
  (void)state;
  add_message("thing-a", 1);
  add_message("thing-b", 2);
  add_message("thing-a", 3);
  retries_first[1] = 1000;
  start();

  tick();
  assert_int_equal(calls[1], (int)inst.max_retries + 1);
  assert_int_equal(nap_count, (size_t)inst.max_retries);
  assert_int_equal(naps[0], 10);
  assert_int_equal(naps[1], 20);
  assert_int_equal(naps[2], 40);
  assert_int_equal(sub.failures, 1);
  assert_int_equal(store.parks, 1);
  assert_non_null(chd_park_find(&sub.parked, "thing-a"));
  assert_int_equal(calls[2], 1);              /* the other stream flows */
  assert_int_equal(calls[3], 0);              /* held behind the parked one */
  assert_int_equal(sub.position, 3);
  assert_int_equal(sub.parked_messages, 2);
  assert_int_equal(sub.state, CHD_SUB_RUNNING);
}

/* CH_FAIL parks its stream at once: no retry. */
static void test_failure_parks_its_stream(void **state)
{
  (void)state;
  add_message("thing-a", 1);
  add_message("thing-a", 2);
  add_message("thing-b", 3);
  results[1] = CH_FAIL;
  start();

  tick();
  assert_int_equal(calls[1], 1);
  assert_int_equal(nap_count, 0);
  assert_int_equal(store.parks, 1);
  assert_int_equal(calls[2], 0);
  assert_int_equal(calls[3], 1);
  assert_int_equal(sub.position, 3);
  assert_int_equal(sub.failures, 1);
}

/* With on_failure = stop, the subscription stops at the failing message:
 * the position stays before it, the stop is recorded, nothing more runs. */
static void test_failure_stops_with_on_failure_stop(void **state)
{
  (void)state;
  add_message("thing-a", 1);
  add_message("thing-b", 2);
  add_message("thing-c", 3);
  results[2] = CH_FAIL;
  inst.on_failure = CHD_ON_FAILURE_STOP;
  start();

  tick();
  assert_int_equal(sub.state, CHD_SUB_STOPPED);
  assert_int_equal(sub.stopped_at, 2);
  assert_int_equal(sub.position, 1);
  assert_int_equal(store.saved, 1);
  assert_int_equal(store.stopped_at, 2);
  assert_non_null(strstr(store.stop_reason, "message 2 is bad"));
  assert_int_equal(calls[3], 0);
  assert_int_equal(store.parks, 0);
  assert_false(tick());                       /* a stopped subscription reads nothing */
  assert_int_equal(calls[3], 0);
}

/*
 * A batch in one transaction (store_transaction: the position commits in
 * it) where the third message fails: the batch is rolled back and replayed
 * one message per transaction, so 1 and 2 commit with their effects, the
 * position stops exactly before 3, and nothing of 3 (or after it) stays.
 */
static void test_batch_replay_after_a_failure(void **state)
{
  (void)state;
  for (int64_t gp = 1; gp <= 5; gp++)
    add_message(gp == 3 ? "thing-bad" : "thing-a", gp);
  results[3] = CH_FAIL;
  inst.store_transaction = true;
  inst.on_failure = CHD_ON_FAILURE_STOP;
  start();

  tick();
  assert_int_equal(calls[1], 2);              /* in the batch, then in the replay */
  assert_int_equal(calls[2], 2);
  assert_int_equal(calls[3], 2);
  assert_int_equal(calls[4], 0);
  assert_int_equal(store.saved, 2);
  assert_int_equal(sub.position, 2);
  assert_int_equal(store.stopped_at, 3);
  assert_false(store.in_tx);
  /* the effects that stayed: the replay's 1 and 2 */
  assert_int_equal(store.effect_count, 2);
  assert_int_equal(store.effects[0], 1);
  assert_int_equal(store.effects[1], 2);
  /* the replay commits one message per transaction */
  assert_int_equal(store.put_count, 2);
  assert_int_equal(store.puts[0], 1);
  assert_int_equal(store.puts[1], 2);
}

/* A whole batch that succeeds commits once, with its position. */
static void test_batch_commits_once(void **state)
{
  (void)state;
  for (int64_t gp = 1; gp <= 4; gp++)
    add_message("thing-a", gp);
  inst.store_transaction = true;
  start();

  tick();
  assert_int_equal(store.begins, 1);
  assert_int_equal(store.commits, 1);
  assert_int_equal(store.put_count, 1);
  assert_int_equal(store.saved, 4);
  assert_int_equal(store.effect_count, 4);
}

/* CH_SKIP: counted, logged, passed over; the next message goes on; in a
 * transaction, what the handler did before it gave up is rolled back. */
static void test_skip(void **state)
{
  (void)state;
  add_message("thing-a", 1);
  add_message("thing-a", 2);
  add_message("thing-a", 3);
  results[2] = CH_SKIP;
  inst.store_transaction = true;
  start();

  tick();
  assert_int_equal(sub.skipped, 1);
  assert_int_equal(sub.failures, 0);
  assert_int_equal(store.parks, 0);
  assert_int_equal(calls[2], 2);              /* in the batch, then in the replay */
  assert_int_equal(calls[3], 1);              /* the batch stopped before it */
  assert_int_equal(sub.position, 3);
  assert_int_equal(store.saved, 3);
  for (size_t i = 0; i < store.effect_count; i++)
    assert_true(store.effects[i] != 2);       /* the skip's writes are gone */
}

/* Without a transaction, the position is saved every
 * position_update_interval messages, and the rest on request. */
static void test_position_interval(void **state)
{
  (void)state;
  for (int64_t gp = 1; gp <= 7; gp++)
    add_message("thing-a", gp);
  inst.position_update_interval = 3;
  start();

  tick();
  assert_int_equal(sub.position, 7);
  assert_int_equal(store.put_count, 2);
  assert_int_equal(store.puts[0], 3);
  assert_int_equal(store.puts[1], 6);
  assert_int_equal(store.saved, 6);
  assert_int_equal(chd_sub_save_position(&sub), 0);
  assert_int_equal(store.saved, 7);
  assert_int_equal(chd_sub_save_position(&sub), 0);   /* nothing moved: no write */
  assert_int_equal(store.put_count, 3);
}

/* A restart resumes after the saved position. */
static void test_resumes_after_the_saved_position(void **state)
{
  (void)state;
  for (int64_t gp = 1; gp <= 4; gp++)
    add_message("thing-a", gp);
  store.saved = 2;
  start();

  assert_int_equal(sub.position, 2);
  tick();
  assert_int_equal(delivered_count, 2);
  assert_int_equal(delivered[0], 3);
  assert_int_equal(delivered[1], 4);
}

/*
 * A slot whose lease was taken over (put_position answers FENCED): the
 * batch commits nothing, is not replayed, retried or parked, and the
 * subscription handles nothing more.
 */
static void test_fenced_batch_commits_nothing(void **state)
{
  bool did = false;
  (void)state;
  for (int64_t gp = 1; gp <= 5; gp++)
    add_message("thing-a", gp);
  inst.store_transaction = true;
  start();
  store.fenced = true;

  tick();
  assert_int_equal(sub.state, CHD_SUB_LOST);
  assert_int_equal(store.commits, 0);
  assert_int_equal(store.put_count, 0);
  assert_int_equal(store.effect_count, 0);    /* rolled back */
  assert_int_equal(store.parks, 0);
  assert_int_equal(nap_count, 0);             /* no retry */
  for (int64_t gp = 1; gp <= 5; gp++)
    assert_int_equal(calls[gp], 1);           /* no replay one by one */
  assert_int_equal(chd_sub_tick(&sub, &did), 0);
  assert_false(did);
  assert_int_equal(calls[1], 1);
}

/* Without a transaction: handling stops at the first position put refused. */
static void test_fenced_without_transaction(void **state)
{
  (void)state;
  for (int64_t gp = 1; gp <= 6; gp++)
    add_message("thing-a", gp);
  inst.position_update_interval = 2;
  start();
  store.fenced = true;

  tick();
  assert_int_equal(sub.state, CHD_SUB_LOST);
  assert_int_equal(calls[1], 1);
  assert_int_equal(calls[2], 1);
  assert_int_equal(calls[3], 0);
  assert_int_equal(store.put_count, 0);
  assert_int_equal(store.parks, 0);
}

/* A slot of a group shared through leases reads its member and keeps its
 * own subscriber id; the hosts share the slots evenly. */
static void test_group_slot(void **state)
{
  char err[1024], id[256];
  (void)state;
  inst.group_size = 8;
  inst.group_auto = true;
  chd_ctx_init(&ctx, &cfg, &inst, &plugin);
  ctx.stop = &never;
  assert_int_equal(chd_sub_init_slot(&sub, &ctx, 0, 5, 20, &mem_store, &store, err,
                                     sizeof err), 0);
  assert_string_equal(sub.subscriber_id, "test:thing:5");
  assert_int_equal(sub.member, 5);
  assert_int_equal(sub.index, 20);
  assert_int_equal(chd_group_ids(&inst), 8);
  chd_group_id(&subscriptions[0], &inst, 3, id, sizeof id);
  assert_string_equal(id, "test:thing:3");
  chd_sub_effective_id(&subscriptions[0], &inst, id, sizeof id);
  assert_string_equal(id, "test:thing");
  /* 8 slots over 3 hosts: 3, 3, 2; over 1: 8; more hosts than slots: 1 or 0 */
  assert_int_equal(chd_group_target(8, 3, 0), 3);
  assert_int_equal(chd_group_target(8, 3, 1), 3);
  assert_int_equal(chd_group_target(8, 3, 2), 2);
  assert_int_equal(chd_group_target(8, 1, 0), 8);
  assert_int_equal(chd_group_target(8, 4, 3), 2);
  assert_int_equal(chd_group_target(2, 3, 1), 1);
  assert_int_equal(chd_group_target(2, 3, 2), 0);
  inst.group_auto = false;
  inst.group_member = 1;
  assert_int_equal(chd_group_ids(&inst), 1);
  chd_group_id(&subscriptions[0], &inst, 0, id, sizeof id);
  assert_string_equal(id, "test:thing:1");
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_all_gap_waits_for_a_writer, setup, teardown),
    cmocka_unit_test_setup_teardown(test_all_gap_nothing_fills, setup, teardown),
    cmocka_unit_test_setup_teardown(test_retry_with_backoff, setup, teardown),
    cmocka_unit_test_setup_teardown(test_retries_used_up_park_the_stream, setup, teardown),
    cmocka_unit_test_setup_teardown(test_failure_parks_its_stream, setup, teardown),
    cmocka_unit_test_setup_teardown(test_failure_stops_with_on_failure_stop, setup, teardown),
    cmocka_unit_test_setup_teardown(test_batch_replay_after_a_failure, setup, teardown),
    cmocka_unit_test_setup_teardown(test_batch_commits_once, setup, teardown),
    cmocka_unit_test_setup_teardown(test_skip, setup, teardown),
    cmocka_unit_test_setup_teardown(test_position_interval, setup, teardown),
    cmocka_unit_test_setup_teardown(test_resumes_after_the_saved_position, setup, teardown),
    cmocka_unit_test_setup_teardown(test_fenced_batch_commits_nothing, setup, teardown),
    cmocka_unit_test_setup_teardown(test_fenced_without_transaction, setup, teardown),
    cmocka_unit_test_setup_teardown(test_group_slot, setup, teardown),
  };

  chd_log_set_level(CH_LOG_ERROR);
  return cmocka_run_group_tests(tests, NULL, release_messages);
}
