/*
 * exporter.h - the supervisor's view of its workers' status (status.h), as
 * the HTTP listener of monitor.h serves it: the Prometheus text of /metrics
 * and the verdict of /healthz. Used by the supervisor side only; workers
 * record into status.h.
 */
#ifndef CHD_EXPORTER_H
#define CHD_EXPORTER_H

#include <stdbool.h>
#include <stdint.h>

#include "inventory.h"
#include "status.h"

/* The Prometheus text format of every worker's status, a malloc'd string
 * (NULL when out of memory). `st` holds `count` records: one per instance
 * (inv's order), then the sites' other workers (status.h: site_inst). */
char *chd_exporter_metrics(const chd_inventory *inv, const chd_status *st, size_t count);

/*
 * The verdict of /healthz: healthy when every instance's worker runs, its
 * loop's heartbeat is younger than max_age_ms, and no subscription is
 * stalled: behind with a position that has not moved for max_stall_ms, or
 * without a successful read for that long. *body is a malloc'd JSON
 * document naming the workers and what is wrong. Returns true when healthy.
 */
bool chd_exporter_health(const chd_inventory *inv, const chd_status *st, int64_t max_age_ms,
                         int64_t max_stall_ms, char **body);

#endif /* CHD_EXPORTER_H */
