/*
 * log.h - one line per event on stderr, as key=value pairs.
 *
 *   time=2026-11-28T06:16:27.123Z level=info pid=4242 plugin=home-page
 *   subscriber=aggregators:home-page stream=viewing-1 position=0
 *   global_position=17 type=VideoViewed trace_id=... msg="handler failed"
 *
 * Values with spaces, quotes or '=' are quoted. Each line is written with one
 * write(2), so the lines of the supervisor and its workers never interleave.
 */
#ifndef CHD_LOG_H
#define CHD_LOG_H

#include <stdarg.h>
#include <stddef.h>

#include <comphost/plugin.h>

/* What a line is about; every field may be NULL. */
typedef struct chd_log_fields {
  const char *plugin;        /* the instance name */
  const char *subscriber;    /* the subscriber id */
  const ch_message *msg;     /* stream, positions, type and traceId of it */
  const char *extra;         /* more pairs, already "k=v k2=v2" */
} chd_log_fields;

/* Only lines at `level` or more severe are written. Default: info. */
void chd_log_set_level(ch_log_level level);
ch_log_level chd_log_get_level(void);

/* Parse "error", "warn", "info" or "debug"; returns 0 or -1. */
int chd_log_parse_level(const char *s, ch_log_level *out);
const char *chd_log_level_name(ch_log_level level);

void chd_log(ch_log_level level, const chd_log_fields *f, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));
void chd_logv(ch_log_level level, const chd_log_fields *f, const char *fmt, va_list ap)
  __attribute__((format(printf, 3, 0)));

/* A libpq notice processor: server notices become debug lines, instead of
 * text on stderr. Install with PQsetNoticeProcessor(conn, chd_log_pq_notice, NULL). */
void chd_log_pq_notice(void *arg, const char *message);

/*
 * Secrets that no line may show: the values of secret plugin settings and the
 * passwords of connection strings. Every occurrence in a line's message is
 * written "(secret)"; so are they in text given to chd_log_redact() (the
 * commands' error messages). Values shorter than CHD_LOG_SECRET_MIN
 * characters are not looked for (they would hide ordinary words); at most
 * CHD_LOG_MAX_SECRETS are kept. chd_log_add_secret() copies the value.
 * Workers inherit the list from the supervisor.
 */
#define CHD_LOG_SECRET_MIN 4
#define CHD_LOG_MAX_SECRETS 64
void chd_log_add_secret(const char *value);
void chd_log_redact(char *text, size_t size);

/* Shorthands for lines about nothing in particular. */
#define chd_log_error(...) chd_log(CH_LOG_ERROR, NULL, __VA_ARGS__)
#define chd_log_warn(...)  chd_log(CH_LOG_WARN, NULL, __VA_ARGS__)
#define chd_log_info(...)  chd_log(CH_LOG_INFO, NULL, __VA_ARGS__)
#define chd_log_debug(...) chd_log(CH_LOG_DEBUG, NULL, __VA_ARGS__)

#endif /* CHD_LOG_H */
