/*
 * status.h - what each worker is doing, in memory shared with the supervisor.
 *
 * The supervisor maps one chd_status per instance before forking; the worker
 * writes it, the supervisor reads it: after a crash, to say which message the
 * worker was handling, and to notice a worker stuck on one message; and for
 * /metrics, /healthz and the state file (monitor.h). The worker writes all
 * of it but the fields marked "supervisor", which only the supervisor
 * writes. Torn reads are harmless: they feed logs and metrics.
 */
#ifndef CHD_STATUS_H
#define CHD_STATUS_H

#include <stdint.h>
#include <sys/types.h>

#include <comphost/plugin.h>

/* a slot per subscription a plugin may have */
#define CHD_STATUS_MAX_SUBS CH_MAX_SUBSCRIPTIONS

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
  volatile int64_t global_position;
  char stream[256];
  char type[128];
  chd_status_sub subs[CHD_STATUS_MAX_SUBS];

  volatile int in_request;           /* 1 while a route handler runs (sites) */
  char request[256];                 /* "GET /path trace_id=..." of it */

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

/* Worker side: a handler starts on / has finished `msg`. Starting one is
 * also a heartbeat: the loop is between two messages. */
void chd_status_begin(int sub_index, const ch_message *msg);
void chd_status_end(void);
void chd_status_heartbeat(void);
void chd_status_set_state(chd_worker_state state);

/* Supervisor side: the worker of `st` ended; `restart_at_ms` is 0 when it
 * will not be restarted. */
void chd_status_worker_ended(chd_status *st, int restarts, int64_t restart_at_ms,
                             const char *how);

/* Count one duration into a histogram. */
void chd_hist_observe(chd_hist *h, int64_t us);

/* "starting", "running", ... */
const char *chd_worker_state_name(int state);

#endif /* CHD_STATUS_H */
