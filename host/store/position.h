/*
 * position.h - where subscriptions keep their read positions: the position
 * store, keyed by subscriber id (as Eventide's PositionStore).
 *
 * message_store (default), book format: stream subscriberPosition-<id>,
 * type Read, data {"position": N}, no metadata. Eventide format:
 * <category>:position-<id> (<category>+position-<id> when the category has
 * types already, as "account:command"), type Recorded. The position is the
 * global position of the last message done; reading resumes at position + 1.
 * The category (the stream the subscription reads) only names the Eventide
 * stream; the subscriber id is the key.
 *
 * view_data: a row of the host's table in the view database,
 *
 *   comphost_positions(subscriber_id text PRIMARY KEY, position bigint,
 *                      updated_at timestamptz, stopped_at bigint, stop_reason text)
 *
 * written on the view connection, inside whatever transaction is open there
 * (the batch's), so views and positions change together.
 *
 * A stopped subscription is recorded too: a Stopped message (data
 * {"position", "stream", "type", "reason"}) in subscriberStatus-<id>, kept
 * out of the position stream whose last message other readers take as the
 * position; or the stopped_at and stop_reason columns. It counts while the
 * position is below it.
 *
 * Errors as in store.h: a chd_store_rc, the text in chd_position_error().
 */
#ifndef CHD_POSITION_H
#define CHD_POSITION_H

#include <stddef.h>
#include <stdint.h>

#include <comphost/message.h>

#include "mdb.h"
#include "store.h"
#include "viewdb.h"

typedef enum chd_position_where {
  CHD_POSITION_MESSAGE_STORE = 0,  /* "message_store" (default) */
  CHD_POSITION_VIEW_DATA = 1       /* "view_data" */
} chd_position_where;

typedef enum chd_position_format {
  CHD_POSITION_FORMAT_BOOK = 0,    /* subscriberPosition-<id>, type Read (default) */
  CHD_POSITION_FORMAT_EVENTIDE = 1 /* <category>:position-<id>, type Recorded */
} chd_position_format;

struct chd_lease_fence;

/* A position store. The connections are borrowed: they must outlive it. */
typedef struct chd_position_store {
  chd_position_where where;
  chd_position_format format;
  chd_mdb *mdb;
  chd_viewdb *view;              /* NULL without a view database */
  /* a consumer-group slot's lease (lease.h), borrowed, or NULL: then every
   * put checks it in the put's transaction and commits nothing once the
   * lease is gone (CHD_STORE_FENCED) */
  const struct chd_lease_fence *fence;
  char error[1024];
} chd_position_store;

void chd_position_store_init(chd_position_store *ps, chd_position_where where,
                             chd_position_format format, chd_mdb *mdb, chd_viewdb *view);

/* The text of the last error, "" if none. */
const char *chd_position_error(const chd_position_store *ps);

/* The position stream of a subscriber id in `format`. */
void chd_position_stream(chd_position_format format, const char *category,
                         const char *subscriber_id, char *buf, size_t size);

/* Create the position table when the view database has none (under the
 * migration lock); nothing to do for the message store. */
chd_store_rc chd_position_prepare(chd_position_store *ps);

/* The saved position of `subscriber_id`, 0 when never saved. */
chd_store_rc chd_position_get(chd_position_store *ps, const char *category,
                              const char *subscriber_id, int64_t *position);

/* Save `position` for `subscriber_id`. With a fence, the lease is checked
 * in the same transaction: the caller's open one (the batch's), or one of
 * the put's own; CHD_STORE_FENCED when the slot was taken over. */
chd_store_rc chd_position_put(chd_position_store *ps, const char *category,
                              const char *subscriber_id, int64_t position);

/* Save `position` for `subscriber_id` inside the transaction open on the
 * position's connection (the view database's, or the message store's) and
 * COMMIT it, in one round trip. With a fence, the lease is checked in that
 * transaction first (one more round trip), and CHD_STORE_FENCED rolls it
 * back: nothing of it commits. On failure the transaction is aborted or
 * rolled back. */
chd_store_rc chd_position_put_commit(chd_position_store *ps, const char *category,
                                     const char *subscriber_id, int64_t position);

/* Record that `subscriber_id` stopped at msg, with its position then and
 * `reason`. */
chd_store_rc chd_position_mark_stopped(chd_position_store *ps, const char *subscriber_id,
                                       int64_t position, const ch_message *msg,
                                       const char *reason);

/*
 * What check and status show: the saved position and, when the subscription
 * is recorded as stopped beyond it, where and why (0 and "" otherwise). A
 * view database the host never ran against, with no table yet, reads as
 * position 0.
 */
chd_store_rc chd_position_inspect(chd_position_store *ps, const char *category,
                                  const char *subscriber_id, int64_t *position,
                                  int64_t *stopped_at, char *reason, size_t reason_size);

/* Milliseconds since the position was saved, -1 when never. */
chd_store_rc chd_position_age(chd_position_store *ps, const char *category,
                              const char *subscriber_id, int64_t *age_ms);

/*
 * Set the position back to 0 and clear a recorded stop (`comphost
 * rebuild`). A message-store position already at 0, and a stop not
 * recorded, write nothing. Runs in whatever transaction the caller opened
 * on the connection.
 */
chd_store_rc chd_position_reset(chd_position_store *ps, const char *category,
                                const char *subscriber_id);

#endif /* CHD_POSITION_H */
