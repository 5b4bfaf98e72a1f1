/*
 * subscription.h - one subscription of a plugin instance: the book's loop.
 *
 * Read batch_size messages from position + 1 of a category (or "$all"),
 * dispatch them in order, record the position. Messages filtered out by the
 * origin filter, or of a type with no handler, advance the position like
 * handled ones. The position is written every position_update_interval
 * messages and when the subscription stops.
 *
 * Handler results: CH_OK moves on; CH_SKIP (a malformed message) is logged,
 * counted and moves on; CH_RETRY backs off and delivers the same message
 * again, up to max_retries times, then counts as CH_FAIL; CH_FAIL parks the
 * message's stream (park.h) and goes on with the other streams, or, with
 * on_failure = stop, stops the subscription at that message (logged, and
 * recorded so that `comphost check` shows it). A message whose data or
 * metadata cannot be decoded, or that is larger than batch_bytes, is never
 * handed to the plugin: it fails for good at once (for an envelope-only
 * subscription: when that is asked for; see below).
 *
 * "$all" mixes categories, and Message DB orders commits only within a
 * category: a transaction can commit a message at a global position below
 * one already visible. So the $all reader delivers messages only while their
 * global positions are contiguous; at a gap it waits until every transaction
 * that was in progress when it saw the gap has ended (then the gap is a
 * failed or rolled-back write, forever empty), or CHD_GAP_TIMEOUT_MS passed.
 *
 * With a batch transaction (the view_data position store), the batch's view
 * writes and its position commit together. When a handler fails inside a
 * batch, the host rolls back and replays the batch one message per
 * transaction, so the good prefix commits and the position stops exactly
 * before the failing message. When the store may have lost positions it
 * had acknowledged (recheck: a server crash after asynchronous commits),
 * the subscription goes back to the position it kept and handles what
 * follows again.
 *
 * Decoding. A batch is read without decoding data and metadata. For a
 * subscription that is not envelope-only, every message is decoded right
 * after the read, as the ABI promises its handlers. An envelope-only one
 * (ch_plugin_desc.envelope_only) decodes a message's metadata for its
 * origin filter and nothing else: its handlers ask (message_data()), and a
 * message is a poison when what was asked for cannot be decoded.
 *
 * Reading ahead (read_ahead, on by default). When a batch comes whole (as
 * many messages as asked for, none held back by a gap of "$all" or a crash
 * loop), the loop starts reading the next one, from the last message + 1,
 * on a connection of its own, and then handles the batch in hand: the
 * server reads while the worker handles. The batch read ahead is used only
 * if the loop's position, when it comes to read, is exactly where it
 * starts; else (a failure, a replay that stopped short, a park that could
 * not be recorded, a stop) it is dropped and the loop reads from its
 * position as usual. Read earlier than it is used, it is what a read at that
 * time returned: the loop already takes any read at face value from
 * position + 1, so nothing else changes. A slot of a consumer group shared
 * through leases (group.h) reads ahead only while its lease is well within
 * its time (ahead_until_ms), and drops what it read ahead as soon as a put
 * finds the lease taken over (CHD_SUB_LOST); a slot given up or lost is
 * released with its batch read ahead, and one claimed again starts anew.
 *
 * The subscription reaches the store only through a chd_sub_store, a table
 * of functions: the host's (chd_sub_store_pg, sub_store.c) works on the
 * worker's connections; the unit tests give an in-memory one.
 */
#ifndef CHD_SUBSCRIPTION_H
#define CHD_SUBSCRIPTION_H

#include <stdbool.h>
#include <stdint.h>

#include <signal.h>

#include "host_api.h"
#include "mdb.h"
#include "park.h"

#define CHD_GAP_MIN_WAIT_MS 20
#define CHD_GAP_TIMEOUT_MS 5000
/* How often a subscription looks for operators' requests (retry, skip) in
 * its status stream. */
#define CHD_PARK_CHECK_MS 1000

typedef enum chd_sub_state {
  CHD_SUB_RUNNING = 0,
  CHD_SUB_STOPPED = 1,       /* after a FAIL: handles nothing more */
  CHD_SUB_LOST = 2           /* its slot's lease was taken over (put_position
                                or commit answered CHD_STORE_FENCED): handles
                                nothing more, the batch in hand was not
                                committed, and nothing read ahead is kept */
} chd_sub_state;

typedef struct chd_sub chd_sub;

/*
 * What the subscription asks of the store. Every function gets the
 * subscription (its ctx, subscriber id, stream, position, parked set and
 * store_arg) and returns CHD_STORE_OK, or another chd_store_rc with the
 * text of the failure in s->error (CHD_STORE_DISCONNECTED when a connection
 * broke: the caller recovers and reads again).
 */
typedef struct chd_sub_store {
  /* Up to batch_size messages (and batch_bytes) of the subscription's
   * category or "$all" from global position `from`, in global order. The
   * batch may be lazy (chd_mdb_batch.texts) or decoded; so may those of
   * read_stream. */
  chd_store_rc (*read)(chd_sub *s, int64_t from, chd_mdb_batch *out);
  /* The server's snapshot (see chd_mdb_snapshot): gaps of "$all". */
  chd_store_rc (*snapshot)(chd_sub *s, int64_t *xmin, int64_t *xmax);
  /* The messages after s->position, up to CHD_LAG_BOUND (status.h). */
  chd_store_rc (*lag)(chd_sub *s, int64_t *lag);

  /* The position store (position.h), keyed by s->subscriber_id. put runs
   * inside the batch's transaction when one is open (and may only be
   * written with its commit); CHD_STORE_FENCED when the slot's lease is
   * gone (the subscription is then lost). */
  chd_store_rc (*get_position)(chd_sub *s, int64_t *position);
  chd_store_rc (*put_position)(chd_sub *s, int64_t position);
  chd_store_rc (*mark_stopped)(chd_sub *s, const ch_message *m, const char *reason);
  /* Whether the position store may have lost positions it acknowledged
   * since the last call (or get_position): a commit whose answer was lost
   * with the connection, or an asynchronous commit before a server crash.
   * Then *lost is true and *position the position it holds now. May be
   * NULL: nothing acknowledged is ever lost. */
  chd_store_rc (*recheck)(chd_sub *s, bool *lost, int64_t *position);

  /* The batch's transactions (chd_sub_view_tx, chd_sub_store_tx); commit
   * commits the one that holds the position last, and rolls back all on a
   * failure: CHD_STORE_FENCED when the position's put found the slot's
   * lease gone (nothing committed; the subscription is then lost). */
  chd_store_rc (*begin)(chd_sub *s);
  chd_store_rc (*commit)(chd_sub *s);
  void (*rollback)(chd_sub *s);

  /* Whether a connection is broken; reconnect (0, or -1 when told to stop
   * meanwhile). */
  bool (*broken)(chd_sub *s);
  int (*recover)(chd_sub *s);

  /* Parking (park.h): the version of the status stream s->status_stream;
   * fold its new records into s->parked; park m's stream (record and
   * enter); close a parked stream after a request (record and drop);
   * count a parked stream's messages up to s->position; read a stream. */
  chd_store_rc (*park_version)(chd_sub *s, int64_t *version);
  chd_store_rc (*park_fold)(chd_sub *s);
  chd_store_rc (*park_add)(chd_sub *s, const ch_message *m, const char *reason,
                           const char *cause);
  chd_store_rc (*park_close)(chd_sub *s, const char *stream, chd_park_request request,
                             int64_t count);
  chd_store_rc (*park_count)(chd_sub *s, const chd_parked *p, int64_t *count);
  chd_store_rc (*read_stream)(chd_sub *s, const char *stream, int64_t from, int64_t count,
                              chd_mdb_batch *out);

  /*
   * Reading ahead; optional (NULL: the store cannot). read_ahead starts
   * what read(s, from) would return, without waiting for it, and returns
   * CHD_STORE_OK when it did (anything else: nothing started, nothing to
   * undo). take_ahead waits for that batch (on failure, nothing is left
   * under way); drop_ahead waits for it and throws it away. A store reads
   * ahead for one subscription at a time: read_ahead refuses while another
   * read ahead is under way.
   */
  chd_store_rc (*read_ahead)(chd_sub *s, int64_t from);
  chd_store_rc (*take_ahead)(chd_sub *s, chd_mdb_batch *out);
  void (*drop_ahead)(chd_sub *s);
} chd_sub_store;

/* The store of a running host: the ctx's message store, view database and
 * position store (sub_store.c). */
extern const chd_sub_store chd_sub_store_pg;

struct chd_lease_fence;

/* What chd_sub_store_pg takes as store_arg (NULL: none of it). Borrowed. */
typedef struct chd_sub_pg_arg {
  chd_mdb *read;               /* the category reads' connection (a replica:
                                  [host] message_store_read), NULL: ctx->mdb */
  const struct chd_lease_fence *fence;  /* the slot's lease, which every put of
                                  its position checks (lease.h), or NULL */
} chd_sub_pg_arg;

struct chd_sub {
  ch_ctx *ctx;
  const chd_sub_store *store;
  void *store_arg;             /* for the store's own use */
  unsigned store_epoch;        /* the store's too: sub_store.c, recheck */
  char error[1024];            /* the store's last failure */
  /* how the loop waits between retries (chd_sub_nap; tests: injectable) */
  int (*nap)(int64_t ms, const volatile sig_atomic_t *stop);
  int64_t gap_timeout_ms;      /* CHD_GAP_TIMEOUT_MS */
  const ch_subscription *desc;
  int index;                   /* its status record (status.h): its index in the
                                  plugin's table, or for a slot of group_member =
                                  auto CHD_STATUS_MAX_SUBS + the slot's record */
  int64_t member;              /* the consumer group member it reads (0: no group) */
  bool envelope_only;          /* ch_plugin_desc.envelope_only names it */
  char subscriber_id[256];     /* effective: with ":<member>" in a consumer group */
  char position_stream[320];   /* message_store position store */
  int64_t position;            /* global position of the last message done */
  int64_t saved_position;      /* what the position store holds */
  int64_t since_save;          /* messages done since the last save */
  int64_t next_poll_ms;        /* monotonic time of the next read */
  chd_sub_state state;
  int64_t stopped_at;          /* global position it stopped at, when stopped */

  /* a message that crashed the worker again and again: handle what comes
   * before it, then stop there (0: none) */
  int64_t stop_before;
  char stop_reason[512];

  /* "$all": a gap in global positions that the reader waits on */
  int64_t gap_at;              /* first missing global position, 0 if none */
  int64_t gap_since_ms;
  int64_t gap_xmax;            /* the server's snapshot xmax when it was seen */

  /* reading ahead: a read of the batch after the one in hand, from this
   * global position, is under way (0: none) */
  int64_t ahead_from;
  int64_t ahead_used;          /* batches read ahead and handled */
  int64_t ahead_dropped;       /* ... and thrown away */
  /* a slot of a group shared through leases (group.h): no reading ahead
   * from this monotonic time on, when its lease may be running out; NULL:
   * no such limit */
  const int64_t *ahead_until_ms;

  /* parked streams (park.h) */
  chd_park_set parked;
  char status_stream[320];
  int64_t next_park_check_ms;
  bool park_failed;            /* a park could not be recorded in this tick */

  /* counters */
  int64_t handled;
  int64_t retries;
  int64_t failures;            /* messages that failed for good: parked or stopped at */
  int64_t skipped;             /* CH_SKIP */
  int64_t parked_messages;     /* parked, and held behind a parked one */
};

/*
 * Set up subscription `index` of the ctx's plugin on `store` (store_arg is
 * the store's), load its position and its parked streams. Returns 0, or -1
 * with a message in err (a bad combination of settings, or the store could
 * not be read). chd_sub_release() is due either way.
 */
int chd_sub_init(chd_sub *s, ch_ctx *ctx, int index, const chd_sub_store *store,
                 void *store_arg, char *err, size_t errlen);

/* The same for slot `member` of a consumer group shared through leases
 * (group_member = auto, group.h): subscription `index` of the plugin, its
 * subscriber id "<id>:<member>", its counters in status record
 * `status_index`. */
int chd_sub_init_slot(chd_sub *s, ch_ctx *ctx, int index, int64_t member, int status_index,
                      const chd_sub_store *store, void *store_arg, char *err, size_t errlen);

/*
 * Read one batch and handle it. *did_work is true when the read returned
 * messages. Returns 0; -1 when the message store connection was lost (the
 * caller reconnects and calls again: nothing was skipped).
 */
int chd_sub_tick(chd_sub *s, bool *did_work);

/* Write the position if it moved since the last save. Returns 0, or -1
 * with the reason in s->error. */
int chd_sub_save_position(chd_sub *s);

/* Free what chd_sub_init() allocated. */
void chd_sub_release(chd_sub *s);

/* Is the batch's view work one transaction? Is the store's? */
bool chd_sub_view_tx(const chd_sub *s);
bool chd_sub_store_tx(const chd_sub *s);

/* Sleep ms with heartbeats (the loop waits on purpose and is alive),
 * waking early when *stop is set. Returns -1 if stopped. */
int chd_sub_nap(int64_t ms, const volatile sig_atomic_t *stop);

/* The effective subscriber id of subscription `desc` for an instance: with
 * group_member = auto, the group's id, to which each slot adds ":<slot>"
 * (group.h). */
void chd_sub_effective_id(const ch_subscription *desc, const chd_instance_config *inst,
                          char *buf, size_t size);

#endif /* CHD_SUBSCRIPTION_H */
