/*
 * park.h - the parked streams of a subscription.
 *
 * When a message fails for good (CH_FAIL, its retries used up, a crash loop,
 * data or metadata that cannot be decoded) and the instance says
 * on_failure = park (the default), the subscription parks the message's
 * stream: it records the message and the reason, then passes over every
 * later message of that stream, since order within a stream is the
 * contract, while the other streams of the category flow on. Parked
 * messages advance the position like handled ones; they are found again by
 * reading their stream.
 *
 * The records live in the subscription's status stream,
 * subscriberStatus-<subscriber id> (beside Stopped), whatever the position
 * store:
 *
 *   Parked          {streamName, position, globalPosition, type, reason}
 *   RetryRequested  {streamName}            by `comphost retry`
 *   SkipRequested   {streamName}            by `comphost skip`
 *   Retried         {streamName, through, count, requestId}
 *   Skipped         {streamName, through, count, requestId}
 *
 * A stream is parked from its latest Parked record until a Retried or
 * Skipped record. A request is carried out by the worker that runs the
 * subscription (on its next check of the status stream, or at start-up):
 * retry delivers the stream's parked messages again, in order, through the
 * plugin's handlers (with the same deterministic write ids as before), up
 * to the subscription's position; if one fails again, the stream stays
 * parked at that message with a new Parked record. Skip drops them.
 * `through` is the subscription's global position when it was done: later
 * messages of the stream are read as usual.
 *
 * Errors as in store.h: the calls that use the message store return a
 * chd_store_rc, with the text in chd_mdb_error() of the handle used.
 */
#ifndef CHD_PARK_H
#define CHD_PARK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <comphost/message.h>

#include "mdb.h"
#include "store.h"

#define CHD_PARK_REASON_MAX 512

typedef enum chd_park_request {
  CHD_PARK_NONE = 0,
  CHD_PARK_RETRY = 1,
  CHD_PARK_SKIP = 2
} chd_park_request;

typedef struct chd_parked {
  char *stream;                  /* the parked stream */
  int64_t position;              /* stream position of its first parked message */
  int64_t global_position;       /* ... and that message's global position */
  char type[128];                /* ... and type */
  char reason[CHD_PARK_REASON_MAX];
  char parked_at[32];            /* the store's time of the Parked record */
  int64_t messages;              /* parked messages seen by this process (>= 1) */
  chd_park_request request;      /* an operator's request not carried out yet */
  char request_id[40];           /* ... the id of its record */
} chd_parked;

/* The parked streams of one subscription, sorted by stream name. */
typedef struct chd_park_set {
  chd_parked *items;
  size_t count;
  size_t capacity;
  int64_t version;               /* of the status stream, folded up to (-1: none) */
} chd_park_set;

/* The status stream of a subscriber id. */
void chd_park_status_stream(const char *subscriber_id, char *buf, size_t size);

void chd_park_set_init(chd_park_set *set);
void chd_park_set_release(chd_park_set *set);

/* The parked entry of `stream`, or NULL. */
chd_parked *chd_park_find(const chd_park_set *set, const char *stream);

/* Is `m` held back: its stream is parked at or before it? */
bool chd_park_holds(const chd_park_set *set, const ch_message *m);

/*
 * Read the records of `status_stream` after set->version and fold them into
 * the set (on failure the set keeps what was folded before).
 */
chd_store_rc chd_park_fold(chd_park_set *set, chd_mdb *mdb, const char *status_stream);

/*
 * Park m's stream at m: write the Parked record (its id derived from m's id,
 * the subscriber id and `cause`, the id of the request being carried out or
 * NULL, so a redelivery writes it once) and enter it in the set
 * (chd_park_enter).
 */
chd_store_rc chd_park_add(chd_park_set *set, chd_mdb *mdb, const char *subscriber_id,
                          const ch_message *m, const char *reason, const char *cause);

/* Enter m's stream in the set as parked at m with `reason`, replacing an
 * entry of the same stream; nothing is written. Returns 0, or -1 when out
 * of memory. */
int chd_park_enter(chd_park_set *set, const ch_message *m, const char *reason);

/*
 * Close the entry of `stream`: write Retried or Skipped (per `request`) with
 * `through` and `count`, then drop it from the set.
 */
chd_store_rc chd_park_close(chd_park_set *set, chd_mdb *mdb, const char *subscriber_id,
                            const char *stream, chd_park_request request, int64_t through,
                            int64_t count);

/* Drop the entry of `stream` from the set; nothing is written. */
void chd_park_drop(chd_park_set *set, const char *stream);

/*
 * Count the messages of a parked stream from its first parked one up to
 * global position `through`, into *count.
 */
chd_store_rc chd_park_count(chd_mdb *mdb, const chd_parked *p, int64_t through,
                            int64_t *count);

/* Write a RetryRequested or SkipRequested record for `stream` into the
 * status stream of `subscriber_id`, at *out_position (if not NULL). */
chd_store_rc chd_park_request_write(chd_mdb *mdb, const char *subscriber_id,
                                    const char *stream, chd_park_request request,
                                    int64_t *out_position);

#endif /* CHD_PARK_H */
