/*
 * status.h - what each worker is doing, in memory shared with the supervisor.
 *
 * The supervisor maps one chd_status per instance before forking; the worker
 * writes it, the supervisor reads it: after a crash, to say which message the
 * worker was handling, and to notice a worker stuck on one message.
 * Only the worker writes; torn reads are harmless (they feed logs).
 */
#ifndef CHD_STATUS_H
#define CHD_STATUS_H

#include <stdint.h>
#include <sys/types.h>

#include <comphost/message.h>

#define CHD_STATUS_MAX_SUBS 16

typedef struct chd_status_sub {
  int64_t position;
  int64_t handled;
  int64_t retries;
  int64_t failures;
  int64_t stopped_at;        /* 0 unless stopped */
} chd_status_sub;

typedef struct chd_status {
  volatile pid_t pid;
  volatile int64_t heartbeat_ms;     /* CLOCK_MONOTONIC, set every loop */
  volatile int in_handler;           /* 1 while a handler runs */
  volatile int sub_index;            /* of the message in hand, or last one */
  volatile int64_t global_position;
  char stream[256];
  char type[128];
  chd_status_sub subs[CHD_STATUS_MAX_SUBS];
} chd_status;

/* The calling worker's own status, or NULL outside a worker. */
extern chd_status *chd_status_self;

/* Map `count` zeroed statuses shared across fork(). NULL on failure. */
chd_status *chd_status_map(size_t count);
void chd_status_unmap(chd_status *st, size_t count);

/* Worker side: a handler starts on / has finished `msg`. */
void chd_status_begin(int sub_index, const ch_message *msg);
void chd_status_end(void);
void chd_status_heartbeat(void);

#endif /* CHD_STATUS_H */
