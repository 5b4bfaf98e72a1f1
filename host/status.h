/*
 * status.h - what each worker is doing, in memory shared with the supervisor.
 *
 * The supervisor maps one chd_status per instance before forking; the worker
 * writes it, the supervisor reads it: after a crash, to say which message the
 * worker was handling, and to notice a worker stuck on one message; and for
 * /metrics, /healthz (exporter.h) and the state file (monitor.h). The worker
 * writes all of it but the fields marked "supervisor", which only the
 * supervisor writes. Torn reads are harmless: they feed logs and metrics.
 *
 * Worker side, this is also where the subscription loop reports each read,
 * batch and handler call: counters, the lag, latency histograms. While a
 * subscription is far behind (more than CHD_PROGRESS_MIN_LAG messages), a
 * progress line is logged every CHD_PROGRESS_INTERVAL_MS with the count,
 * the rate and an ETA.
 *
 * The lag is counted, not estimated: the subscription counts the messages
 * after its position in the store (chd_mdb_lag, up to CHD_LAG_BOUND) when
 * chd_status_read() asks for it. A subscription whose last read was not
 * full has caught up (lag 0 once that batch is handled); one that reads
 * full batches counts again every CHD_PROGRESS_INTERVAL_MS, and counts down
 * between.
 */
#ifndef CHD_STATUS_H
#define CHD_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <comphost/plugin.h>

#include "log.h"

/* a slot per subscription a plugin may have */
#define CHD_STATUS_MAX_SUBS CH_MAX_SUBSCRIPTIONS
/* Consumer-group slots a worker may hold (group_member = auto): its
 * subscriptions times group_size. */
#define CHD_STATUS_MAX_SLOTS 64

#define CHD_LAG_BOUND 1000000
#define CHD_PROGRESS_MIN_LAG 10000
#define CHD_PROGRESS_INTERVAL_MS 5000

/* Latency histograms: fixed buckets, upper bounds in microseconds
 * (chd_hist_bounds_us), then one for everything above. */
#define CHD_HIST_BUCKETS 14

typedef struct chd_hist {
  int64_t counts[CHD_HIST_BUCKETS + 1];  /* per bucket, not cumulative */
  int64_t sum_us;
  int64_t count;
} chd_hist;

extern const int64_t chd_hist_bounds_us[CHD_HIST_BUCKETS];

typedef struct chd_status_sub {
  int64_t position;
  int64_t handled;
  int64_t retries;
  int64_t failures;
  int64_t stopped_at;        /* 0 unless stopped */
  int64_t skipped;           /* CH_SKIP: malformed messages passed over */
  int64_t parked_streams;    /* streams parked now */
  int64_t parked_messages;   /* messages parked now (the first of each stream
                                and those behind it, up to the position) */

  /* metrics */
  int64_t lag;               /* messages behind at the last read */
  int64_t lag_checked_ms;    /* CLOCK_MONOTONIC of the last count of the lag */
  int64_t last_poll_ms;      /* CLOCK_REALTIME of the last read, 0: none yet */
  int64_t moved_ms;          /* CLOCK_MONOTONIC when the position last moved */
  int64_t progress_ms;       /* the last progress line, and ... */
  int64_t progress_handled;  /* ... `handled` then */
  chd_hist batch;            /* read, handle and save one non-empty batch */
  chd_hist handler;          /* one handler call (a batch handler's: one) */
} chd_status_sub;

/*
 * A consumer-group slot of a worker with group_member = auto: which
 * subscription and slot, whether its lease is held, and its counters as a
 * subscription's. The status index of slot record j is
 * CHD_STATUS_MAX_SUBS + j (chd_status_sub_of).
 */
typedef struct chd_status_slot {
  int sub;                   /* the subscription's index in the plugin */
  int64_t slot;              /* the consumer group member */
  volatile int owned;        /* 1 while its lease is held */
  int64_t generation;        /* of the lease */
  int64_t since_ms;          /* CLOCK_REALTIME of the claim */
  int64_t renewed_ms;        /* CLOCK_REALTIME of the last renewal */
  chd_status_sub s;
} chd_status_slot;

typedef enum chd_worker_state {
  CHD_WORKER_STARTING = 0,   /* connecting, migrating, init, waiting for the go */
  CHD_WORKER_RUNNING = 1,    /* in its loop */
  CHD_WORKER_STOPPING = 2,   /* left its loop: saving positions, stop() */
  CHD_WORKER_RESTARTING = 3, /* supervisor: it died, a restart is planned */
  CHD_WORKER_EXITED = 4      /* supervisor: it ended and will not restart */
} chd_worker_state;

typedef struct chd_status {
  volatile pid_t pid;
  volatile int64_t heartbeat_ms;     /* CLOCK_MONOTONIC, set every loop */
  volatile int in_handler;           /* 1 while a handler runs */
  volatile int sub_index;            /* of the message in hand, or last one */
  volatile int64_t slot;             /* its consumer group slot (group_member =
                                        auto), -1 otherwise */
  volatile int64_t global_position;
  char stream[256];
  char type[128];
  chd_status_sub subs[CHD_STATUS_MAX_SUBS];

  /* group_member = auto (group.h) */
  volatile int slot_count;           /* records in use in slots[] */
  chd_status_slot slots[CHD_STATUS_MAX_SLOTS];
  volatile int64_t group_members;    /* live hosts of the group at the last renewal */
  volatile int64_t takeovers;        /* slots claimed after their owner let the lease expire */
  volatile int64_t slots_lost;       /* slots taken over from this worker */
  volatile int64_t slots_given;      /* slots given up to balance the group */

  volatile int in_request;           /* 1 while a route handler runs (sites) */
  char request[256];                 /* "GET /path trace_id=..." of it */
  int site_inst;                     /* supervisor: for a site's worker, the instance
                                        index of the site's first application; -1
                                        for any other */
  int web_worker;                    /* supervisor: which of the site's workers, from 0 */
  int64_t http_requests[5];          /* requests answered, by status class 1xx to 5xx */
  chd_hist http;                     /* how long they took (those timed) */

  volatile int state;                /* chd_worker_state */
  volatile int restarts;             /* supervisor: restarts of this instance */
  volatile int64_t restart_at_ms;    /* supervisor: CLOCK_MONOTONIC of the planned restart */
  char last_exit[240];               /* supervisor: how the last worker ended */
} chd_status;

/* The calling worker's own status, or NULL outside a worker. */
extern chd_status *chd_status_self;

/* Map `count` zeroed statuses shared across fork(). NULL on failure. */
chd_status *chd_status_map(size_t count);
void chd_status_unmap(chd_status *st, size_t count);

/* Worker side: a handler starts on / has finished `msg` of the subscription
 * with status index `sub_index` (chd_status_sub_of). Starting one is also a
 * heartbeat: the loop is between two messages. */
void chd_status_begin(int sub_index, const ch_message *msg);
void chd_status_end(void);
void chd_status_heartbeat(void);
void chd_status_set_state(chd_worker_state state);

/*
 * Worker side, per subscription `index` of the instance. Each does nothing
 * outside a worker or for an index past CHD_STATUS_MAX_SUBS. `f` names the
 * subscription in log lines, `position` is its position now.
 */

/* The shared record of subscription `index` (below CHD_STATUS_MAX_SUBS), or
 * of slot record index - CHD_STATUS_MAX_SUBS; NULL for others. */
chd_status_sub *chd_status_sub_of(int index);

/* A read returned `count` messages, `batch_size` asked for. Returns true
 * when the lag should be counted again in the store, then reported with
 * chd_status_lag(). */
bool chd_status_read(int index, size_t count, int64_t batch_size, const chd_log_fields *f,
                     int64_t position);

/* The lag just counted (-1: it could not be: keep the last one). */
void chd_status_lag(int index, int64_t lag, const chd_log_fields *f);

/* The batch of `count` messages read at `started_us` (chd_now_us) is done;
 * `full` when the read filled batch_size. */
void chd_status_batch_done(int index, size_t count, bool full, int64_t started_us,
                           const chd_log_fields *f, int64_t position);

/* A handler call that began at `started_us` returned. */
void chd_status_handler_done(int index, int64_t started_us);

/* The position moved (for stalls: a stall counts from here). */
void chd_status_moved(int index);

/* Supervisor side: the worker of `st` ended; `restart_at_ms` is 0 when it
 * will not be restarted. */
void chd_status_worker_ended(chd_status *st, int restarts, int64_t restart_at_ms,
                             const char *how);

/* Worker side (sites): a request was answered with `status`; `started_us`
 * (chd_now_us) is when it came, 0 when not timed. */
void chd_status_request(int status, int64_t started_us);

/* Count one duration into a histogram. */
void chd_hist_observe(chd_hist *h, int64_t us);

/* "starting", "running", ... */
const char *chd_worker_state_name(int state);

#endif /* CHD_STATUS_H */
