/*
 * monitor.h - what the supervisor shows of its workers: the state file and
 * the HTTP listener.
 *
 * The state file is a small JSON document that `comphost status` reads to
 * tell each worker's state, pid, restarts and live position: rewritten
 * every second (write and rename) while the host runs, removed when it
 * stops. Its path is [host] state_file, or else
 *   $RUNTIME_DIRECTORY/<hash>.json (set by systemd's RuntimeDirectory=: the
 *   first of its entries), or $XDG_RUNTIME_DIR/comphost/<hash>.json, or
 *   /tmp/comphost-<uid>/<hash>.json
 * where <hash> is 16 hex digits of the FNV-1a hash of the configuration
 * file's absolute path: a host and a command given the same file find
 * the same state file.
 *
 * With [host] http_listen, the supervisor also answers GET /metrics
 * (Prometheus text) and GET /healthz (200 or 503, JSON) on that address.
 */
#ifndef CHD_MONITOR_H
#define CHD_MONITOR_H

#include <stddef.h>
#include <stdint.h>

#include "inventory.h"
#include "status.h"

#define CHD_STATE_FILE_INTERVAL_MS 1000

/* Start listening (when configured) and write the first state file.
 * `status` holds `count` records: one per instance, in file order, then one
 * per site worker after each site's first. Returns 0, or -1 with the
 * reason in err (the listener could not start). */
int chd_monitor_start(const chd_inventory *inv, chd_status *status, size_t count, char *err,
                      size_t errlen);

/* Wait up to ms, answering HTTP requests meanwhile; rewrite the state file
 * when it is due. Instead of a sleep: a signal ends it early. */
void chd_monitor_wait(int64_t ms);

/* In a worker just forked from the supervisor: let go of the listener. */
void chd_monitor_child(void);

/* Stop listening and remove the state file. */
void chd_monitor_stop(void);

/* The state file of a configuration. Returns 0, or -1 when it cannot be
 * named (no usable directory), with the reason in buf. */
int chd_monitor_state_path(const chd_config *cfg, char *buf, size_t size);

#endif /* CHD_MONITOR_H */
