/*
 * test_subscription.c - the consumer loop (subscription.c) on an in-memory
 * store, without PostgreSQL: gaps of $all, retries and their backoff,
 * failures that park a stream or stop the subscription, the replay of a
 * batch after a failure, CH_SKIP, how often the position is saved, the
 * way back after the store lost acknowledged commits, and a consumer group
 * slot whose lease was taken over (fencing).
 *
 * The in-memory store (struct mem) holds the messages of the category (or
 * of $all), the saved position, a transaction of its own that holds the
 * position and the handler's "effects", the parked streams, and what the
 * loop asked of it. The handler records each delivery; what it returns per
 * global position is set by the test.
 *
 * The store can also give lazy batches (data and metadata as texts, decoded
 * when asked: envelope-only subscriptions) and read ahead: a read ahead
 * copies what a read returns at that moment, and hands it over later.
 *
 * Fencing is as the host's store does it: a position put inside the
 * batch's transaction is written with its COMMIT, which finds the lease
 * gone and rolls everything back (CHD_STORE_FENCED); a put on its own
 * answers CHD_STORE_FENCED.
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
  char park_reasons[MAX_MESSAGES][CHD_PARK_REASON_MAX];
  bool park_fails;                    /* park_add cannot record */

  bool lazy;                          /* reads give lazy batches, from texts */
  const char *texts[MAX_MESSAGES][2]; /* data and metadata text of each message */

  int reads;                          /* read() calls */
  bool ahead_pending;                 /* a read ahead is under way */
  chd_mdb_batch ahead;                /* ... what it read */
  int ahead_reads, ahead_taken, ahead_dropped;
  int64_t ahead_froms[MAX_MESSAGES];
  bool lost;                          /* recheck: commits were lost */
  bool fenced;                        /* the slot's lease is someone else's */
  int fenced_commits;                 /* commits refused for it */
} mem;

static mem store;

/* ---- the handler ---- */

static int calls[MAX_MESSAGES + 1];          /* per global position */
static int retries_first[MAX_MESSAGES + 1];  /* CH_RETRY this many times first */
static ch_result results[MAX_MESSAGES + 1];  /* then this (CH_OK by default) */
static int64_t delivered[4 * MAX_MESSAGES];
static size_t delivered_count;

static bool ask_data[MAX_MESSAGES + 1];      /* the handlers ask for its data */
static bool got_data[MAX_MESSAGES + 1];      /* ... and got it */
static bool data_null[MAX_MESSAGES + 1];     /* msg->data was NULL in a handler */
static bool meta_null[MAX_MESSAGES + 1];     /* msg->metadata was */
static void (*on_deliver)(int64_t gp);        /* called by the handler, if set */
static int64_t check_accessors_at;           /* look closely at this message */

/* The accessors on message gp 1 of test_envelope_only_per_message: data
 * {"n": 1}, metadata {"traceId": "t-1"}, decoded once. */
static void check_accessors(ch_ctx *ctx, const ch_message *m)
{
  ch_message copy = *m;
  json_t *d = chd_host_api.message_data(ctx, m);
  json_t *md = chd_host_api.message_metadata(ctx, m);
  json_t *f;

  assert_non_null(d);
  assert_int_equal(json_integer_value(json_object_get(d, "n")), 1);
  assert_ptr_equal(chd_host_api.message_data(ctx, m), d);
  assert_ptr_equal(chd_host_api.message_data(ctx, &copy), d);   /* a copy of it too */
  assert_string_equal(json_string_value(json_object_get(md, "traceId")), "t-1");
  f = chd_host_api.follow(ctx, m, "origin-9");
  assert_string_equal(json_string_value(json_object_get(f, "traceId")), "t-1");
  assert_string_equal(json_string_value(json_object_get(f, "originStreamName")), "origin-9");
  json_decref(f);
  /* a message the host did not hand over, without data of its own */
  copy.id = "00000000-0000-4000-8000-999999999999";
  assert_null(chd_host_api.message_data(ctx, &copy));
  assert_non_null(strstr(chd_host_api.last_error(ctx), "not one the host handed"));
  assert_int_equal(ctx->undecodable[0], '\0');
}

/* What a handler does with a message's data: look, and ask when told to. */
static void look_at(ch_ctx *ctx, const ch_message *m)
{
  int64_t gp = m->global_position;

  data_null[gp] = data_null[gp] || !m->data;
  meta_null[gp] = meta_null[gp] || !m->metadata;
  if (ask_data[gp])
    got_data[gp] = chd_host_api.message_data(ctx, m) != NULL;
  if (gp == check_accessors_at)
    check_accessors(ctx, m);
}

static ch_result handle(ch_ctx *ctx, void *state, const ch_message *m)
{
  int64_t gp = m->global_position;
  (void)state;

  calls[gp]++;
  delivered[delivered_count++] = gp;
  store.effects[store.effect_count++] = gp;
  look_at(ctx, m);
  if (on_deliver)
    on_deliver(gp);
  if (calls[gp] <= retries_first[gp]) {
    snprintf(ctx->error, sizeof ctx->error, "not yet (call %d)", calls[gp]);
    return CH_RETRY;
  }
  if (results[gp] != CH_OK)
    snprintf(ctx->error, sizeof ctx->error, "message %" PRId64 " is bad", gp);
  return results[gp];
}

/* The batch handler: every message counts as one delivery. */
static int batch_calls;
static size_t batch_sizes[MAX_MESSAGES];
static ch_result batch_result;

static ch_result handle_batch(ch_ctx *ctx, void *state, const ch_message *msgs, size_t count)
{
  (void)state;
  batch_sizes[batch_calls++] = count;
  for (size_t i = 0; i < count; i++) {
    int64_t gp = msgs[i].global_position;
    delivered[delivered_count++] = gp;
    store.effects[store.effect_count++] = gp;
    look_at(ctx, &msgs[i]);
  }
  if (batch_result != CH_OK)
    snprintf(ctx->error, sizeof ctx->error, "the batch is bad");
  return batch_result;
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
  if (store.lazy)
    out->texts = calloc(2 * MAX_MESSAGES, sizeof *out->texts);
  if (!out->messages || (store.lazy && !out->texts)) {
    chd_mdb_batch_release(out);
    return CHD_STORE_ERROR;
  }
  for (size_t i = 0; i < store.count && (int64_t)out->count < max; i++) {
    ch_message *m = &out->messages[out->count];
    if (!take(&store.messages[i], arg))
      continue;
    *m = store.messages[i];
    if (store.lazy) {
      m->data = m->metadata = NULL;
      out->texts[2 * out->count] = store.texts[i][0];
      out->texts[2 * out->count + 1] = store.texts[i][1];
    } else {
      json_incref(m->data);
      json_incref(m->metadata);
    }
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
  store.reads++;
  return batch_of(out, s->ctx->inst->batch_size, from_global, &from);
}

static chd_store_rc mem_read_ahead(chd_sub *s, int64_t from)
{
  if (store.ahead_pending)
    return failed_store(s, "busy");
  store.ahead_froms[store.ahead_reads++] = from;
  if (batch_of(&store.ahead, s->ctx->inst->batch_size, from_global, &from) != CHD_STORE_OK)
    return failed_store(s, "out of memory");
  store.ahead_pending = true;
  return CHD_STORE_OK;
}

static chd_store_rc mem_take_ahead(chd_sub *s, chd_mdb_batch *out)
{
  if (!store.ahead_pending)
    return failed_store(s, "nothing read ahead");
  *out = store.ahead;
  memset(&store.ahead, 0, sizeof store.ahead);
  store.ahead_pending = false;
  store.ahead_taken++;
  return CHD_STORE_OK;
}

static void mem_drop_ahead(chd_sub *s)
{
  (void)s;
  assert_true(store.ahead_pending);
  chd_mdb_batch_release(&store.ahead);
  store.ahead_pending = false;
  store.ahead_dropped++;
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

static chd_store_rc fenced(chd_sub *s)
{
  snprintf(s->error, sizeof s->error, "the lease of slot %" PRId64 " was taken over",
           s->member);
  return CHD_STORE_FENCED;
}

static chd_store_rc mem_put_position(chd_sub *s, int64_t position)
{
  if (store.in_tx) {
    /* written with the COMMIT, which checks the lease */
    store.pending_set = true;
    store.pending = position;
  } else if (store.fenced) {
    return fenced(s);
  } else {
    commit_position(position);
  }
  return CHD_STORE_OK;
}

static chd_store_rc mem_recheck(chd_sub *s, bool *lost, int64_t *position)
{
  (void)s;
  *lost = store.lost;
  *position = store.saved;
  store.lost = false;
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
  if (store.pending_set && store.fenced) {
    /* the lease checked before the position's put: all rolled back */
    store.effect_count = store.effects_at_begin;
    store.in_tx = false;
    store.pending_set = false;
    store.fenced_commits++;
    return fenced(s);
  }
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
  if (store.park_fails)
    return failed_store(s, "the status stream cannot be written");
  snprintf(store.park_reasons[m->global_position], sizeof store.park_reasons[0], "%s", reason);
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
  .recheck = mem_recheck,
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
  .read_ahead = mem_read_ahead,
  .take_ahead = mem_take_ahead,
  .drop_ahead = mem_drop_ahead,
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
  memmove(&store.texts[at + 1], &store.texts[at], (store.count - at) * sizeof store.texts[0]);
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
  store.texts[at][0] = NULL;                  /* SQL NULL: {} */
  store.texts[at][1] = NULL;
}

/* The texts of data and metadata of the message at gp (lazy reads), and
 * the same as JSON for reads that decode (NULL: {}; text that does not
 * decode: {} there, as a read that decodes gives it). */
static void set_texts(int64_t gp, const char *data, const char *metadata)
{
  for (size_t i = 0; i < store.count; i++) {
    ch_message *m = &store.messages[i];
    json_t *d, *md;
    if (m->global_position != gp)
      continue;
    store.texts[i][0] = data;
    store.texts[i][1] = metadata;
    d = data ? json_loads(data, JSON_DECODE_ANY, NULL) : NULL;
    md = metadata ? json_loads(metadata, JSON_DECODE_ANY, NULL) : NULL;
    json_decref(m->data);
    json_decref(m->metadata);
    m->data = d ? d : json_object();
    m->metadata = md ? md : json_object();
    return;
  }
  fail_msg("no message at %" PRId64, gp);
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
  chd_mdb_batch_release(&store.ahead);
  memset(&store, 0, sizeof store);
  memset(calls, 0, sizeof calls);
  memset(retries_first, 0, sizeof retries_first);
  memset(results, 0, sizeof results);
  memset(ask_data, 0, sizeof ask_data);
  memset(got_data, 0, sizeof got_data);
  memset(data_null, 0, sizeof data_null);
  memset(meta_null, 0, sizeof meta_null);
  on_deliver = NULL;
  check_accessors_at = 0;
  batch_calls = 0;
  batch_result = CH_OK;
  delivered_count = 0;
  nap_count = 0;
  memset(&plugin, 0, sizeof plugin);
  plugin.desc.name = "test";
  plugin.desc.subscriptions = subscriptions;
  subscriptions[0].stream_name = "thing";
  subscriptions[0].origin_stream_name = NULL;
  subscriptions[0].handle_batch = NULL;
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

/* ---- envelope-only subscriptions and lazy decoding ---- */

static const char *const envelope[] = { "test:thing", NULL };
#define UNDECODABLE "{\"n\": 9223372036854775808}"   /* JSON, but not for jansson */

/* Messages 1 to n, each of a stream of its own (thing-<gp>). */
static void add_messages(int64_t n)
{
  char stream[32];

  for (int64_t gp = 1; gp <= n; gp++) {
    snprintf(stream, sizeof stream, "thing-%" PRId64, gp);
    add_message(stream, gp);
  }
}

/* A lazy store, an envelope-only subscription with a batch handler, one
 * transaction per batch. */
static void envelope_only_batches(void)
{
  store.lazy = true;
  subscriptions[0].handle_batch = handle_batch;
  plugin.desc.envelope_only = envelope;
  inst.store_transaction = true;
}

/*
 * The batch handler of an envelope-only subscription gets the envelopes,
 * data and metadata NULL, nothing decoded; a message whose data cannot be
 * decoded is handled like the others, since nothing asks for it.
 */
static void test_envelope_only_batch_decodes_nothing(void **state)
{
  (void)state;
  add_messages(4);
  set_texts(1, "{\"n\": 1}", "{\"traceId\": \"t\"}");
  set_texts(3, UNDECODABLE, NULL);
  envelope_only_batches();
  start();
  assert_true(sub.envelope_only);

  tick();
  assert_int_equal(batch_calls, 1);
  assert_int_equal(batch_sizes[0], 4);
  for (int64_t gp = 1; gp <= 4; gp++) {
    assert_true(data_null[gp]);
    assert_true(meta_null[gp]);
    assert_int_equal(calls[gp], 0);          /* no replay */
  }
  assert_int_equal(store.parks, 0);
  assert_int_equal(sub.failures, 0);
  assert_int_equal(store.commits, 1);
  assert_int_equal(store.saved, 4);
}

/*
 * A batch handler that asks for data that cannot be decoded gets NULL, and
 * the batch fails whatever it returns: the host replays it one message at a
 * time, the per-message handler asks again, and that message's stream is
 * parked with the reason. The others commit; data that decodes is given.
 */
static void test_envelope_only_asking_for_undecodable_data(void **state)
{
  (void)state;
  add_messages(4);
  set_texts(2, "{\"n\": 2}", NULL);
  set_texts(3, UNDECODABLE, NULL);
  ask_data[2] = ask_data[3] = true;
  envelope_only_batches();
  start();

  tick();
  assert_int_equal(batch_calls, 1);
  assert_true(got_data[2]);
  assert_false(got_data[3]);
  for (int64_t gp = 1; gp <= 4; gp++)
    assert_int_equal(calls[gp], 1);          /* the replay */
  assert_int_equal(store.parks, 1);
  assert_non_null(chd_park_find(&sub.parked, "thing-3"));
  assert_non_null(strstr(store.park_reasons[3], "data is not JSON that can be decoded"));
  assert_int_equal(sub.failures, 1);
  assert_int_equal(sub.position, 4);
  assert_int_equal(store.saved, 4);
  assert_int_equal(store.effect_count, 3);   /* 1, 2 and 4; 3 rolled back */
  assert_int_equal(store.effects[2], 4);
}

/* The same with on_failure = stop: the subscription stops at it. */
static void test_envelope_only_undecodable_stops_when_told(void **state)
{
  (void)state;
  add_messages(4);
  set_texts(3, UNDECODABLE, NULL);
  ask_data[3] = true;
  envelope_only_batches();
  inst.on_failure = CHD_ON_FAILURE_STOP;
  start();

  tick();
  assert_int_equal(sub.state, CHD_SUB_STOPPED);
  assert_int_equal(store.stopped_at, 3);
  assert_int_equal(sub.position, 2);
  assert_int_equal(calls[4], 0);
  assert_non_null(strstr(store.stop_reason, "data is not JSON that can be decoded"));
}

/*
 * The origin filter needs metadata: the host decodes it (and not data) for
 * an envelope-only subscription. A message whose metadata cannot be decoded
 * is parked before the batch; one from another origin is filtered out.
 */
static void test_envelope_only_origin_filter_decodes_metadata(void **state)
{
  (void)state;
  add_messages(4);
  set_texts(1, "{\"x\": 1}", "{\"originStreamName\": \"origin-1\"}");
  set_texts(2, NULL, "{\"originStreamName\": \"other-1\"}");
  set_texts(3, NULL, "{\"originStreamName\": 9223372036854775808}");
  set_texts(4, UNDECODABLE, "{\"originStreamName\": \"origin-2\"}");
  envelope_only_batches();
  subscriptions[0].origin_stream_name = "origin";
  start();

  tick();
  assert_int_equal(batch_calls, 1);
  assert_int_equal(batch_sizes[0], 2);
  assert_int_equal(delivered[0], 1);
  assert_int_equal(delivered[1], 4);
  assert_true(data_null[1] && data_null[4]);
  assert_false(meta_null[1] || meta_null[4]);
  assert_int_equal(store.parks, 1);
  assert_non_null(strstr(store.park_reasons[3], "metadata is not JSON that can be decoded"));
  assert_int_equal(sub.position, 4);
}

/*
 * Per message (no batch transaction), an envelope-only subscription's
 * handler gets NULL data and asks: the accessors decode on demand (once),
 * follow() reads the metadata it needs; undecodable data nobody asks for
 * passes, asked for it parks the stream, whatever the handler returned.
 */
static void test_envelope_only_per_message(void **state)
{
  (void)state;
  add_messages(3);
  set_texts(1, "{\"n\": 1}", "{\"traceId\": \"t-1\"}");
  set_texts(2, UNDECODABLE, NULL);
  set_texts(3, UNDECODABLE, NULL);
  ask_data[3] = true;
  check_accessors_at = 1;
  store.lazy = true;
  plugin.desc.envelope_only = envelope;
  start();

  tick();
  for (int64_t gp = 1; gp <= 3; gp++) {
    assert_int_equal(calls[gp], 1);
    assert_true(data_null[gp]);
  }
  assert_int_equal(store.parks, 1);
  assert_non_null(chd_park_find(&sub.parked, "thing-3"));
  assert_int_equal(sub.failures, 1);
  assert_int_equal(sub.skipped, 0);
  assert_int_equal(sub.position, 3);
}

/*
 * A subscription that is not envelope-only gets every message decoded, as
 * ABI 1.0 promises, from lazy reads too: its handlers never see NULL, and a
 * message that does not decode never reaches them: it is parked.
 */
static void test_decoded_for_the_others(void **state)
{
  (void)state;
  add_messages(3);
  set_texts(1, "{\"n\": 1}", NULL);
  set_texts(2, UNDECODABLE, NULL);
  store.lazy = true;
  start();
  assert_false(sub.envelope_only);

  tick();
  assert_int_equal(calls[1], 1);
  assert_int_equal(calls[2], 0);
  assert_int_equal(calls[3], 1);
  assert_false(data_null[1] || meta_null[1] || data_null[3] || meta_null[3]);
  assert_int_equal(store.parks, 1);
  assert_non_null(strstr(store.park_reasons[2], "data is not JSON that can be decoded"));
  assert_int_equal(sub.position, 3);
}

/* The same through a batch handler: it sees decoded messages only. */
static void test_decoded_for_the_others_in_batches(void **state)
{
  (void)state;
  add_messages(3);
  set_texts(2, UNDECODABLE, NULL);
  envelope_only_batches();
  plugin.desc.envelope_only = NULL;
  start();

  tick();
  assert_int_equal(batch_calls, 1);
  assert_int_equal(batch_sizes[0], 2);          /* 2 was parked before it */
  assert_false(data_null[1] || data_null[3]);
  assert_int_equal(store.parks, 1);
  assert_int_equal(store.saved, 3);
}

/* ---- reading ahead ---- */

/*
 * Catching up: while each whole batch is handled, the next one is read
 * ahead and then used; a short batch (caught up) starts no read ahead.
 */
static void test_read_ahead_catches_up(void **state)
{
  (void)state;
  add_messages(25);
  inst.read_ahead = true;
  start();

  assert_true(tick());                        /* 1-10, reads 11- ahead */
  assert_int_equal(store.ahead_reads, 1);
  assert_int_equal(store.ahead_froms[0], 11);
  assert_true(store.ahead_pending);
  assert_true(tick());                        /* 11-20, reads 21- ahead */
  assert_true(tick());                        /* 21-25: short */
  assert_false(store.ahead_pending);
  assert_false(tick());
  assert_int_equal(delivered_count, 25);
  for (size_t i = 0; i < 25; i++)
    assert_int_equal(delivered[i], (int64_t)i + 1);
  assert_int_equal(store.reads, 2);           /* the first, and the last (empty) */
  assert_int_equal(store.ahead_reads, 2);
  assert_int_equal(store.ahead_taken, 2);
  assert_int_equal(store.ahead_dropped, 0);
  assert_int_equal(sub.ahead_used, 2);
  assert_int_equal(sub.position, 25);
}

/* Switched off, every batch is read in turn. */
static void test_read_ahead_off(void **state)
{
  (void)state;
  add_messages(25);
  start();

  while (tick())
    ;
  assert_int_equal(delivered_count, 25);
  assert_int_equal(store.ahead_reads, 0);
  assert_int_equal(store.reads, 4);
}

static void add_eleven(int64_t gp)
{
  if (gp == 5)
    add_message("thing-11", 11);
}

/*
 * A batch read ahead is what a read returned when it was made: a message
 * that comes later is not in it, and the next read finds it.
 */
static void test_read_ahead_is_a_read_of_its_time(void **state)
{
  (void)state;
  add_messages(10);
  inst.read_ahead = true;
  on_deliver = add_eleven;                    /* while 1-10 are handled */
  start();

  assert_true(tick());
  assert_false(tick());                       /* what was read ahead: nothing */
  assert_int_equal(store.ahead_taken, 1);
  assert_true(tick());                        /* a read: 11 */
  assert_int_equal(delivered_count, 11);
  assert_int_equal(delivered[10], 11);
  assert_int_equal(sub.position, 11);
}

/* A batch that stops the subscription drops what was read ahead. */
static void test_read_ahead_dropped_on_a_stop(void **state)
{
  (void)state;
  add_messages(20);
  results[5] = CH_FAIL;
  inst.on_failure = CHD_ON_FAILURE_STOP;
  inst.read_ahead = true;
  start();

  tick();
  assert_int_equal(sub.state, CHD_SUB_STOPPED);
  assert_int_equal(sub.position, 4);
  assert_int_equal(store.ahead_reads, 1);
  assert_int_equal(store.ahead_dropped, 1);
  assert_false(store.ahead_pending);
  assert_false(tick());
  for (size_t i = 0; i < delivered_count; i++)
    assert_true(delivered[i] <= 5);
}

/*
 * A park that cannot be recorded leaves the position before the message:
 * the batch read ahead (from 11) does not fit it any more and is dropped,
 * and the loop reads from the position again. Every message is handled
 * once, the failing one once per attempt.
 */
static void test_read_ahead_dropped_after_a_short_batch(void **state)
{
  bool did = false;
  (void)state;
  add_messages(20);
  results[5] = CH_FAIL;
  store.park_fails = true;
  inst.read_ahead = true;
  start();

  assert_int_equal(chd_sub_tick(&sub, &did), -1);
  assert_int_equal(sub.position, 4);
  assert_true(store.ahead_pending);
  store.park_fails = false;
  assert_true(tick());                        /* drops 11-, reads 5-14, reads 15- ahead */
  assert_int_equal(store.ahead_dropped, 1);
  assert_int_equal(store.ahead_froms[1], 15);
  assert_true(tick());
  assert_false(tick());
  assert_int_equal(calls[5], 2);
  for (int64_t gp = 1; gp <= 20; gp++)
    if (gp != 5)
      assert_int_equal(calls[gp], 1);
  assert_int_equal(store.parks, 1);
  assert_int_equal(sub.position, 20);
  assert_int_equal(store.ahead_taken, 1);
}

/*
 * A batch that fails and is replayed one by one to its end leaves the
 * position at its last message: the batch read ahead fits, and is used.
 */
static void test_read_ahead_after_a_replay(void **state)
{
  (void)state;
  add_messages(20);
  retries_first[3] = 1;
  inst.store_transaction = true;
  inst.read_ahead = true;
  start();

  assert_true(tick());
  assert_int_equal(calls[1], 2);              /* in the batch, in the replay */
  assert_int_equal(calls[3], 2);
  assert_int_equal(calls[4], 1);
  assert_int_equal(sub.position, 10);
  assert_true(tick());
  assert_int_equal(store.ahead_taken, 1);
  assert_int_equal(store.ahead_dropped, 0);
  assert_int_equal(store.saved, 20);
  for (int64_t gp = 11; gp <= 20; gp++)
    assert_int_equal(calls[gp], 1);
}

/*
 * $all: a batch read ahead is held to the gap rules like any read; one cut
 * at a gap starts no read ahead past it.
 */
static void test_read_ahead_and_a_gap(void **state)
{
  (void)state;
  subscriptions[0].stream_name = "$all";
  add_messages(11);
  add_message("thing-13", 13);
  store.xmin = 100;
  store.xmax = 101;                           /* a writer that may fill 12 still runs */
  inst.read_ahead = true;
  start();

  assert_true(tick());                        /* 1-10, reads 11- ahead */
  assert_true(tick());                        /* 11; 13 waits behind the gap */
  assert_int_equal(store.ahead_taken, 1);
  assert_int_equal(sub.position, 11);
  assert_int_equal(sub.gap_at, 12);
  assert_int_equal(store.ahead_reads, 1);     /* nothing read past the gap */
  add_message("thing-12", 12);
  assert_true(tick());
  assert_int_equal(delivered_count, 13);
  for (size_t i = 0; i < 13; i++)
    assert_int_equal(delivered[i], (int64_t)i + 1);
}

/*
 * A subscription that handles up to a message that crashed the worker
 * again and again: the batch read ahead is cut before it, no read ahead
 * starts past it, and it is parked unread.
 */
static void test_read_ahead_and_a_crash_loop(void **state)
{
  (void)state;
  add_messages(20);
  inst.read_ahead = true;
  start();
  sub.stop_before = 15;
  snprintf(sub.stop_reason, sizeof sub.stop_reason, "it crashed the worker");

  assert_true(tick());                        /* 1-10, reads 11- ahead */
  assert_true(tick());                        /* 11-14 of it */
  assert_int_equal(sub.position, 14);
  assert_int_equal(store.ahead_reads, 1);
  assert_true(tick());                        /* 15 parked unread */
  assert_int_equal(store.parks, 1);
  assert_true(tick());                        /* 16-20 */
  assert_int_equal(calls[15], 0);
  for (int64_t gp = 1; gp <= 20; gp++)
    if (gp != 15)
      assert_int_equal(calls[gp], 1);
  assert_int_equal(sub.position, 20);
}

/* The store lost a commit it had acknowledged (an asynchronous commit, then
 * a server crash): the subscription goes back to the position it kept and
 * handles what follows again. */
static void test_lost_commits_are_handled_again(void **state)
{
  (void)state;
  for (int64_t gp = 1; gp <= 6; gp++)
    add_message("thing-a", gp);
  inst.batch_size = 3;
  inst.store_transaction = true;
  start();

  tick();
  tick();
  assert_int_equal(sub.position, 6);
  assert_int_equal(store.saved, 6);
  store.saved = 3;                            /* the second batch was lost */
  store.lost = true;
  add_message("thing-a", 7);
  tick();
  assert_int_equal(sub.position, 6);
  assert_int_equal(store.saved, 6);
  for (int64_t gp = 4; gp <= 6; gp++)
    assert_int_equal(calls[gp], 2);
  assert_int_equal(calls[7], 0);
  tick();
  assert_int_equal(sub.position, 7);
  assert_int_equal(calls[3], 1);
  tick();                                     /* nothing lost this time */
  assert_int_equal(calls[7], 1);
}

/* ---- a slot of a group shared through leases: fencing ---- */

/*
 * A slot whose lease was taken over (the commit of the batch's position
 * answers FENCED): the batch commits nothing, is not replayed, retried or
 * parked, and the subscription handles nothing more.
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
  assert_int_equal(store.fenced_commits, 1);
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
  assert_int_equal(store.reads, 1);
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

/*
 * A batch that failed is replayed one message per transaction; the first
 * of those commits finds the lease gone: the replay stops there, nothing
 * is parked, not even the message that failed.
 */
static void test_fenced_during_a_replay(void **state)
{
  (void)state;
  for (int64_t gp = 1; gp <= 5; gp++)
    add_message("thing-a", gp);
  results[3] = CH_FAIL;
  inst.store_transaction = true;
  start();
  store.fenced = true;

  tick();
  assert_int_equal(sub.state, CHD_SUB_LOST);
  assert_int_equal(calls[1], 2);              /* the batch, then its replay */
  assert_int_equal(calls[2], 1);
  assert_int_equal(calls[3], 1);
  assert_int_equal(store.fenced_commits, 1);
  assert_int_equal(store.put_count, 0);
  assert_int_equal(store.effect_count, 0);
  assert_int_equal(store.parks, 0);
  assert_int_equal(sub.failures, 0);
}

/*
 * A batch read ahead for a slot whose lease is found gone is dropped at
 * once, unused: the slot's next holder reads from the position it finds.
 */
static void test_fenced_drops_the_batch_read_ahead(void **state)
{
  (void)state;
  add_messages(25);
  inst.read_ahead = true;
  inst.store_transaction = true;
  start();
  store.fenced = true;

  assert_true(tick());                        /* 1-10, reads 11- ahead; fenced */
  assert_int_equal(sub.state, CHD_SUB_LOST);
  assert_int_equal(store.ahead_reads, 1);
  assert_false(store.ahead_pending);
  assert_int_equal(store.ahead_dropped, 1);
  assert_int_equal(store.ahead_taken, 0);
  assert_int_equal(sub.ahead_from, 0);
  assert_false(tick());
  assert_int_equal(store.ahead_reads, 1);
  assert_int_equal(calls[11], 0);
}

/*
 * A slot reads ahead only while its lease is well within its time
 * (ahead_until_ms): past it, each batch is read in turn; once the lease is
 * renewed, reading ahead resumes.
 */
static void test_read_ahead_only_while_the_lease_is_fresh(void **state)
{
  int64_t until;
  (void)state;
  add_messages(35);
  inst.read_ahead = true;
  start();
  until = chd_now_ms() - 1;                   /* renewals failing for a while */
  sub.ahead_until_ms = &until;

  assert_true(tick());                        /* 1-10 */
  assert_int_equal(store.ahead_reads, 0);
  assert_true(tick());                        /* 11-20 */
  assert_int_equal(store.ahead_reads, 0);
  until = chd_now_ms() + 60000;               /* renewed */
  assert_true(tick());                        /* 21-30, reads 31- ahead */
  assert_int_equal(store.ahead_reads, 1);
  assert_int_equal(store.ahead_froms[0], 31);
  assert_true(tick());                        /* 31-35, the batch read ahead */
  assert_int_equal(store.ahead_taken, 1);
  assert_int_equal(store.reads, 3);
  assert_int_equal(sub.position, 35);
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
    cmocka_unit_test_setup_teardown(test_envelope_only_batch_decodes_nothing, setup, teardown),
    cmocka_unit_test_setup_teardown(test_envelope_only_asking_for_undecodable_data, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_envelope_only_undecodable_stops_when_told, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_envelope_only_origin_filter_decodes_metadata, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_envelope_only_per_message, setup, teardown),
    cmocka_unit_test_setup_teardown(test_decoded_for_the_others, setup, teardown),
    cmocka_unit_test_setup_teardown(test_decoded_for_the_others_in_batches, setup, teardown),
    cmocka_unit_test_setup_teardown(test_read_ahead_catches_up, setup, teardown),
    cmocka_unit_test_setup_teardown(test_read_ahead_off, setup, teardown),
    cmocka_unit_test_setup_teardown(test_read_ahead_is_a_read_of_its_time, setup, teardown),
    cmocka_unit_test_setup_teardown(test_read_ahead_dropped_on_a_stop, setup, teardown),
    cmocka_unit_test_setup_teardown(test_read_ahead_dropped_after_a_short_batch, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_read_ahead_after_a_replay, setup, teardown),
    cmocka_unit_test_setup_teardown(test_read_ahead_and_a_gap, setup, teardown),
    cmocka_unit_test_setup_teardown(test_read_ahead_and_a_crash_loop, setup, teardown),
    cmocka_unit_test_setup_teardown(test_lost_commits_are_handled_again, setup, teardown),
    cmocka_unit_test_setup_teardown(test_fenced_batch_commits_nothing, setup, teardown),
    cmocka_unit_test_setup_teardown(test_fenced_without_transaction, setup, teardown),
    cmocka_unit_test_setup_teardown(test_fenced_during_a_replay, setup, teardown),
    cmocka_unit_test_setup_teardown(test_fenced_drops_the_batch_read_ahead, setup, teardown),
    cmocka_unit_test_setup_teardown(test_read_ahead_only_while_the_lease_is_fresh, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_group_slot, setup, teardown),
  };

  chd_log_set_level(CH_LOG_ERROR);
  return cmocka_run_group_tests(tests, NULL, release_messages);
}
