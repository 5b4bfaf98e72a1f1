/* status.c - what each worker is doing, in memory shared with the supervisor. */
#include "status.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "clock.h"

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
  if (sub_index >= CHD_STATUS_MAX_SUBS && sub_index < CHD_STATUS_MAX_SUBS + CHD_STATUS_MAX_SLOTS) {
    st->sub_index = st->slots[sub_index - CHD_STATUS_MAX_SUBS].sub;
    st->slot = st->slots[sub_index - CHD_STATUS_MAX_SUBS].slot;
  } else {
    st->sub_index = sub_index;
    st->slot = -1;
  }
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

void chd_status_request(int status, int64_t started_us)
{
  int cls = status / 100;

  if (!chd_status_self || cls < 1 || cls > 5)
    return;
  chd_status_self->http_requests[cls - 1]++;
  if (started_us)
    chd_hist_observe(&chd_status_self->http, chd_now_us() - started_us);
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

chd_status_sub *chd_status_sub_of(int index)
{
  if (!chd_status_self || index < 0)
    return NULL;
  if (index < CHD_STATUS_MAX_SUBS)
    return &chd_status_self->subs[index];
  if (index < CHD_STATUS_MAX_SUBS + CHD_STATUS_MAX_SLOTS)
    return &chd_status_self->slots[index - CHD_STATUS_MAX_SUBS].s;
  return NULL;
}

static void log_progress(const chd_log_fields *f, chd_status_sub *ss, int64_t now)
{
  chd_log_fields lf = *f;
  int64_t done = ss->handled - ss->progress_handled;
  double secs = (double)(now - ss->progress_ms) / 1000.0;
  double rate = ss->progress_ms && secs > 0 ? (double)done / secs : 0;
  char extra[160];

  if (rate >= 1) {
    int64_t eta = (int64_t)((double)ss->lag / rate);
    snprintf(extra, sizeof extra, "lag=%" PRId64 " rate=%.0f eta_s=%" PRId64, ss->lag, rate,
             eta);
    lf.extra = extra;
    chd_log(CH_LOG_INFO, &lf, "catching up: %s%" PRId64 " messages behind; %" PRId64
            " done in %.1f s (%.0f/s); about %" PRId64 " min %02" PRId64 " s to go",
            ss->lag >= CHD_LAG_BOUND ? "at least " : "", ss->lag, done, secs, rate,
            eta / 60, eta % 60);
  } else {
    snprintf(extra, sizeof extra, "lag=%" PRId64, ss->lag);
    lf.extra = extra;
    chd_log(CH_LOG_INFO, &lf, "catching up: %s%" PRId64 " messages behind",
            ss->lag >= CHD_LAG_BOUND ? "at least " : "", ss->lag);
  }
}

/* A progress line when far behind and one is due. */
static void progress(const chd_log_fields *f, chd_status_sub *ss)
{
  int64_t now = chd_now_ms();

  if (ss->lag > CHD_PROGRESS_MIN_LAG &&
      (ss->progress_ms == 0 || now - ss->progress_ms >= CHD_PROGRESS_INTERVAL_MS)) {
    log_progress(f, ss, now);
    ss->progress_ms = now;
    ss->progress_handled = ss->handled;
  }
}

/* The end of a catch-up that logged its progress. */
static void caught_up(const chd_log_fields *f, chd_status_sub *ss, int64_t position)
{
  if (ss->progress_ms) {
    chd_log(CH_LOG_INFO, f, "caught up at global position %" PRId64, position);
    ss->progress_ms = 0;
  }
}

bool chd_status_read(int index, size_t count, int64_t batch_size, const chd_log_fields *f,
                     int64_t position)
{
  chd_status_sub *ss = chd_status_sub_of(index);
  int64_t now;

  if (!ss)
    return false;
  now = chd_now_ms();
  ss->last_poll_ms = chd_wall_ms();
  if ((int64_t)count < batch_size) {
    ss->lag = (int64_t)count;           /* caught up once these are done */
    if (count == 0)
      caught_up(f, ss, position);
  } else if (ss->lag_checked_ms == 0 || now - ss->lag_checked_ms >= CHD_PROGRESS_INTERVAL_MS) {
    ss->lag_checked_ms = now;
    return true;                        /* chd_status_lag() logs the progress */
  }
  progress(f, ss);
  return false;
}

void chd_status_lag(int index, int64_t lag, const chd_log_fields *f)
{
  chd_status_sub *ss = chd_status_sub_of(index);

  if (!ss)
    return;
  if (lag >= 0)
    ss->lag = lag;
  progress(f, ss);
}

void chd_status_batch_done(int index, size_t count, bool full, int64_t started_us,
                           const chd_log_fields *f, int64_t position)
{
  chd_status_sub *ss = chd_status_sub_of(index);

  if (!ss || count == 0)
    return;
  chd_hist_observe(&ss->batch, chd_now_us() - started_us);
  if (!full) {
    caught_up(f, ss, position);
    ss->lag = 0;
  } else if (ss->lag > 0) {
    ss->lag = ss->lag > (int64_t)count ? ss->lag - (int64_t)count : 0;
  }
}

void chd_status_handler_done(int index, int64_t started_us)
{
  chd_status_sub *ss = chd_status_sub_of(index);

  if (ss)
    chd_hist_observe(&ss->handler, chd_now_us() - started_us);
}

void chd_status_moved(int index)
{
  chd_status_sub *ss = chd_status_sub_of(index);

  if (ss)
    ss->moved_ms = chd_now_ms();
}
