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
 * handed to the plugin: it fails for good at once.
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
 * before the failing message.
 */
#ifndef CHD_SUBSCRIPTION_H
#define CHD_SUBSCRIPTION_H

#include <stdbool.h>
#include <stdint.h>

#include "host_api.h"
#include "park.h"

#define CHD_GAP_MIN_WAIT_MS 20
#define CHD_GAP_TIMEOUT_MS 5000
/* How often a subscription looks for operators' requests (retry, skip) in
 * its status stream. */
#define CHD_PARK_CHECK_MS 1000

typedef enum chd_sub_state {
  CHD_SUB_RUNNING = 0,
  CHD_SUB_STOPPED = 1        /* after a FAIL: handles nothing more */
} chd_sub_state;

typedef struct chd_sub {
  ch_ctx *ctx;
  const ch_subscription *desc;
  int index;                   /* in the plugin's table */
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
} chd_sub;

/*
 * Set up subscription `index` of the ctx's plugin and load its position.
 * Returns 0, or -1 with a message in err (a bad combination of settings, or
 * the position store could not be read).
 */
int chd_sub_init(chd_sub *s, ch_ctx *ctx, int index, char *err, size_t errlen);

/*
 * Read one batch and handle it. *did_work is true when the read returned
 * messages. Returns 0; -1 when the message store connection was lost (the
 * caller reconnects and calls again: nothing was skipped).
 */
int chd_sub_tick(chd_sub *s, bool *did_work);

/* Write the position if it moved since the last save. Returns 0 or -1. */
int chd_sub_save_position(chd_sub *s);

/* Free what chd_sub_init() allocated. */
void chd_sub_release(chd_sub *s);

/* The effective subscriber id of subscription `desc` for an instance. */
void chd_sub_effective_id(const ch_subscription *desc, const chd_instance_config *inst,
                          char *buf, size_t size);

#endif /* CHD_SUBSCRIPTION_H */
