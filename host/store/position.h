/*
 * position.h - where subscriptions keep their read positions.
 *
 * message_store (default), book format: stream subscriberPosition-<id>,
 * type Read, data {"position": N}, no metadata. Eventide format:
 * <category>:position-<id> (<category>+position-<id> when the category has
 * types already, as "account:command"), type Recorded. The position is the global
 * position of the last message done; reading resumes at position + 1.
 *
 * view_data: a row of comphost_positions, written in the batch's view
 * transaction, so views and positions change together.
 *
 * A stopped subscription is recorded too: a Stopped message (data
 * {"position", "stream", "type", "reason"}) in subscriberStatus-<id>, kept
 * out of the position stream whose last message other readers take as the
 * position; or the stopped_at and stop_reason columns. It counts while the
 * position is below it.
 */
#ifndef CHD_POSITION_H
#define CHD_POSITION_H

#include <stdint.h>

#include "subscription.h"

/* The position stream of a subscriber id in the instance's format. */
void chd_position_stream(const chd_instance_config *inst, const char *category,
                         const char *subscriber_id, char *buf, size_t size);

/* Load s->position (0 when never saved). Returns 0, or -1 (ctx->last_error). */
int chd_position_load(chd_sub *s);

/* Save `position`. In view_data mode it runs on the view connection, inside
 * whatever transaction is open there. Returns 0, or -1 (ctx->last_error). */
int chd_position_save(chd_sub *s, int64_t position);

/* Record that the subscription stopped at msg with `reason`. */
int chd_position_mark_stopped(chd_sub *s, const ch_message *msg, const char *reason);

/*
 * What check and status show: the saved position and, when the subscription
 * is recorded as stopped beyond it, where and why (reason "" otherwise).
 * Works without a running host: pass connections and the subscriber id.
 */
int chd_position_inspect(chd_mdb *mdb, PGconn *view, const chd_instance_config *inst,
                         const char *category, const char *subscriber_id,
                         int64_t *position, int64_t *stopped_at, char *reason,
                         size_t reason_size, char *err, size_t errlen);

#endif /* CHD_POSITION_H */
