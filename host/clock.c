/* clock.c - the host's clocks and sleeps. */
#include "clock.h"

#include <time.h>

int64_t chd_now_ms(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t chd_now_us(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t chd_wall_ms(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void chd_sleep_ms(int64_t ms)
{
  struct timespec ts;

  if (ms <= 0)
    return;
  ts.tv_sec = (time_t)(ms / 1000);
  ts.tv_nsec = (long)(ms % 1000) * 1000000L;
  nanosleep(&ts, NULL);
}

int chd_nap_ms(int64_t ms, const volatile sig_atomic_t *stop)
{
  int64_t end = chd_now_ms() + ms;

  for (;;) {
    int64_t left = end - chd_now_ms();

    if (stop && *stop)
      return -1;
    if (left <= 0)
      return 0;
    chd_sleep_ms(left > 50 ? 50 : left);
  }
}
