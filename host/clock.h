/*
 * clock.h - the host's clocks and sleeps.
 *
 * Monotonic time (CLOCK_MONOTONIC) measures durations and schedules work;
 * wall time (CLOCK_REALTIME) is for what people and other processes read.
 * Every module takes its time from here.
 */
#ifndef CHD_CLOCK_H
#define CHD_CLOCK_H

#include <signal.h>
#include <stdint.h>

/* Milliseconds and microseconds of CLOCK_MONOTONIC. */
int64_t chd_now_ms(void);
int64_t chd_now_us(void);

/* Milliseconds of CLOCK_REALTIME (Unix time). */
int64_t chd_wall_ms(void);

/* Sleep `ms` milliseconds; a signal ends the sleep early. */
void chd_sleep_ms(int64_t ms);

/*
 * Sleep `ms` milliseconds in slices of at most 50 ms, returning early once
 * *stop is non-zero (stop may be NULL). Returns 0 after the whole sleep, -1
 * when stopped.
 */
int chd_nap_ms(int64_t ms, const volatile sig_atomic_t *stop);

#endif /* CHD_CLOCK_H */
