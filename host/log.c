/* log.c - one line per event on stderr, as key=value pairs. */
#include "log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

static ch_log_level current_level = CH_LOG_INFO;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void chd_log_set_level(ch_log_level level)
{
  current_level = level;
}

ch_log_level chd_log_get_level(void)
{
  return current_level;
}

int chd_log_parse_level(const char *s, ch_log_level *out)
{
  for (int i = 0; i < 4; i++)
    if (s && !strcmp(s, level_names[i])) {
      *out = (ch_log_level)i;
      return 0;
    }
  return -1;
}

const char *chd_log_level_name(ch_log_level level)
{
  return level >= CH_LOG_ERROR && level <= CH_LOG_DEBUG ? level_names[level] : "?";
}

static char *secrets[CHD_LOG_MAX_SECRETS];
static size_t secret_count;

void chd_log_add_secret(const char *value)
{
  char *copy;

  if (!value || strlen(value) < CHD_LOG_SECRET_MIN || secret_count == CHD_LOG_MAX_SECRETS)
    return;
  for (size_t i = 0; i < secret_count; i++)
    if (!strcmp(secrets[i], value))
      return;
  if ((copy = strdup(value)))
    secrets[secret_count++] = copy;
}

void chd_log_redact(char *text, size_t size)
{
  static const char mask[] = "(secret)";

  if (!text || size == 0)
    return;
  for (size_t i = 0; i < secret_count; i++) {
    size_t slen = strlen(secrets[i]);
    char *at = text;

    while ((at = strstr(at, secrets[i]))) {
      size_t len = strlen(text), tail = len - (size_t)(at - text) - slen;
      size_t room = size - 1 - (size_t)(at - text);   /* from `at` to the NUL */
      size_t m = sizeof mask - 1 < room ? sizeof mask - 1 : room;

      /* the tail after the secret moves to just after the mask, cut to fit */
      if (tail > room - m)
        tail = room - m;
      memmove(at + m, at + slen, tail);
      memcpy(at, mask, m);
      at[m + tail] = '\0';
      at += m;
    }
  }
}

/* A growing line in a fixed buffer; what does not fit is cut. */
typedef struct line {
  char buf[4096];
  size_t len;
} line;

static void put(line *l, const char *s, size_t n)
{
  size_t room = sizeof l->buf - 2 - l->len;   /* keep room for "\n\0" */

  if (n > room)
    n = room;
  memcpy(l->buf + l->len, s, n);
  l->len += n;
}

static void puts_(line *l, const char *s)
{
  put(l, s, strlen(s));
}

static void put_value(line *l, const char *v)
{
  if (*v && !strpbrk(v, " \t\n\r\"=\\")) {
    puts_(l, v);
    return;
  }
  put(l, "\"", 1);
  for (; *v; v++) {
    if (*v == '"' || *v == '\\') {
      put(l, "\\", 1);
      put(l, v, 1);
    } else if (*v == '\n') {
      puts_(l, "\\n");
    } else if (*v == '\r' || *v == '\t') {
      put(l, " ", 1);
    } else {
      put(l, v, 1);
    }
  }
  put(l, "\"", 1);
}

static void put_pair(line *l, const char *key, const char *value)
{
  if (!value)
    return;
  put(l, " ", 1);
  puts_(l, key);
  put(l, "=", 1);
  put_value(l, value);
}

static void put_int(line *l, const char *key, int64_t v)
{
  char n[24];

  snprintf(n, sizeof n, "%" PRId64, v);
  put_pair(l, key, n);
}

void chd_logv(ch_log_level level, const chd_log_fields *f, const char *fmt, va_list ap)
{
  line l;
  int64_t now;
  time_t secs;
  struct tm tm;
  char stamp[40], text[2048];

  if (level > current_level)
    return;
  l.len = 0;
  now = chd_wall_ms();
  secs = (time_t)(now / 1000);
  gmtime_r(&secs, &tm);
  strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(stamp + strlen(stamp), sizeof stamp - strlen(stamp), ".%03dZ",
           (int)(now % 1000));
  puts_(&l, "time=");
  puts_(&l, stamp);
  put_pair(&l, "level", chd_log_level_name(level));
  put_int(&l, "pid", (int64_t)getpid());
  if (f) {
    put_pair(&l, "plugin", f->plugin);
    put_pair(&l, "subscriber", f->subscriber);
    if (f->msg) {
      const char *trace = json_string_value(json_object_get(f->msg->metadata, "traceId"));
      put_pair(&l, "stream", f->msg->stream_name);
      put_int(&l, "position", f->msg->position);
      put_int(&l, "global_position", f->msg->global_position);
      put_pair(&l, "type", f->msg->type);
      put_pair(&l, "trace_id", trace);
    }
    if (f->extra && *f->extra) {
      put(&l, " ", 1);
      puts_(&l, f->extra);
    }
  }
  vsnprintf(text, sizeof text, fmt, ap);
  chd_log_redact(text, sizeof text);
  put_pair(&l, "msg", text);
  l.buf[l.len++] = '\n';
  /* one write per line: lines of several processes do not interleave */
  {
    const char *p = l.buf;
    size_t left = l.len;
    while (left > 0) {
      ssize_t w = write(STDERR_FILENO, p, left);
      if (w <= 0)
        break;
      p += w;
      left -= (size_t)w;
    }
  }
}

void chd_log(ch_log_level level, const chd_log_fields *f, const char *fmt, ...)
{
  va_list ap;

  va_start(ap, fmt);
  chd_logv(level, f, fmt, ap);
  va_end(ap);
}

void chd_log_pq_notice(void *arg, const char *message)
{
  char text[1024];
  size_t n;
  (void)arg;

  snprintf(text, sizeof text, "%s", message);
  n = strlen(text);
  while (n > 0 && text[n - 1] == '\n')
    text[--n] = '\0';
  chd_log(CH_LOG_DEBUG, NULL, "server notice: %s", text);
}
