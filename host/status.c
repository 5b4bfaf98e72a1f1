/* status.c - what each worker is doing, in memory shared with the supervisor. */
#include "status.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "clock.h"
#include "subscription.h"

chd_status *chd_status_self;

/* 0.5 ms to 10 s */
const int64_t chd_hist_bounds_us[CHD_HIST_BUCKETS] = {
  500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
  1000000, 2500000, 5000000, 10000000,
};

chd_status *chd_status_map(size_t count)
{
  void *p = mmap(NULL, count * sizeof(chd_status), PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);

  return p == MAP_FAILED ? NULL : p;
}

void chd_status_unmap(chd_status *st, size_t count)
{
  if (st)
    munmap(st, count * sizeof(chd_status));
}

void chd_status_begin(int sub_index, const ch_message *msg)
{
  chd_status *st = chd_status_self;

  if (!st)
    return;
  st->heartbeat_ms = chd_now_ms();
  st->sub_index = sub_index;
  st->global_position = msg->global_position;
  snprintf(st->stream, sizeof st->stream, "%s", msg->stream_name);
  snprintf(st->type, sizeof st->type, "%s", msg->type);
  st->in_handler = 1;
}

void chd_status_end(void)
{
  if (chd_status_self)
    chd_status_self->in_handler = 0;
}

void chd_status_heartbeat(void)
{
  if (chd_status_self)
    chd_status_self->heartbeat_ms = chd_now_ms();
}

void chd_status_set_state(chd_worker_state state)
{
  if (chd_status_self)
    chd_status_self->state = (int)state;
}

void chd_status_worker_ended(chd_status *st, int restarts, int64_t restart_at_ms,
                             const char *how)
{
  st->restarts = restarts;
  st->restart_at_ms = restart_at_ms;
  st->state = restart_at_ms ? CHD_WORKER_RESTARTING : CHD_WORKER_EXITED;
  st->in_handler = 0;
  snprintf(st->last_exit, sizeof st->last_exit, "%s", how ? how : "");
}

void chd_hist_observe(chd_hist *h, int64_t us)
{
  int b = 0;

  if (us < 0)
    us = 0;
  while (b < CHD_HIST_BUCKETS && us > chd_hist_bounds_us[b])
    b++;
  h->counts[b]++;
  h->sum_us += us;
  h->count++;
}

const char *chd_worker_state_name(int state)
{
  switch (state) {
  case CHD_WORKER_STARTING:   return "starting";
  case CHD_WORKER_RUNNING:    return "running";
  case CHD_WORKER_STOPPING:   return "stopping";
  case CHD_WORKER_RESTARTING: return "restarting";
  case CHD_WORKER_EXITED:     return "exited";
  default:                    return "unknown";
  }
}
