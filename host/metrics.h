/*
 * metrics.h - what the host measures, and how it shows it.
 *
 * Worker side: the subscription loop reports each read, batch and handler
 * call here; they land in the worker's shared status (status.h) as counters,
 * the lag and latency histograms. While a subscription is far behind (more
 * than CHD_PROGRESS_MIN_LAG messages), a progress line is logged every
 * CHD_PROGRESS_INTERVAL_MS with the count, the rate and an ETA.
 *
 * The lag is counted, not estimated: the messages of the category (of the
 * consumer group member's share, or of $all) after the position, up to
 * CHD_LAG_BOUND. A subscription whose last read was not full has caught up
 * (lag 0 once that batch is handled); one that reads full batches counts
 * again every CHD_PROGRESS_INTERVAL_MS, and counts down between.
 *
 * Supervisor side: the Prometheus text of /metrics and the verdict of
 * /healthz, rendered from every worker's status.
 */
#ifndef CHD_METRICS_H
#define CHD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "inventory.h"
#include "status.h"
#include "subscription.h"

#define CHD_LAG_BOUND 1000000
#define CHD_PROGRESS_MIN_LAG 10000
#define CHD_PROGRESS_INTERVAL_MS 5000

/* Worker side. `count` messages were read (before any was held back). */
void chd_metrics_read(chd_sub *s, size_t count);
/* The batch of `count` messages read at `started_us` is done. */
void chd_metrics_batch_done(chd_sub *s, size_t count, bool full, int64_t started_us);
/* A handler call of subscription `index` that began at `started_us` returned. */
void chd_metrics_handler_done(int index, int64_t started_us);
/* The position of subscription `index` moved. */
void chd_metrics_moved(int index);

/*
 * Store queries, shared with the command line. `stream` is a category or
 * "$all". The head is the global position of its last message, 0 when it
 * has none. The lag counts its messages after `position` (of one consumer
 * group member's share when group_size > 0), up to `bound`: *lag == bound
 * means "at least". Return 0, or -1 with the reason in err.
 */
int chd_store_head(PGconn *conn, const char *stream, int64_t *head, char *err, size_t errlen);
int chd_store_lag(PGconn *conn, const char *stream, int64_t position, int64_t group_member,
                  int64_t group_size, int64_t bound, int64_t *lag, char *err, size_t errlen);

/* Supervisor side: the Prometheus text format of every worker's status, a
 * malloc'd string (NULL when out of memory). */
char *chd_metrics_render(const chd_inventory *inv, const chd_status *st);

/*
 * The verdict of /healthz: healthy when every instance's worker runs, its
 * loop's heartbeat is younger than max_age_ms, and no subscription is
 * stalled: behind with a position that has not moved for max_stall_ms, or
 * without a successful read for that long. *body is a malloc'd JSON
 * document naming the workers and what is wrong. Returns true when healthy.
 */
bool chd_metrics_health(const chd_inventory *inv, const chd_status *st, int64_t max_age_ms,
                        int64_t max_stall_ms, char **body);

#endif /* CHD_METRICS_H */
