/* cli.c - helpers shared by the operator's commands. */
#include "cli.h"

#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

volatile sig_atomic_t chd_cli_interrupted;

static int vreport(int code, const char *fmt, va_list ap)
{
  char line[2048];

  vsnprintf(line, sizeof line, fmt, ap);
  chd_log_redact(line, sizeof line);     /* a password quoted by libpq, say */
  for (char *p = line; *p; p++)
    if (*p == '\n')
      *p = ' ';
  fprintf(stderr, "comphost: %s\n", line);
  return code;
}

int chd_cli_fail(const char *fmt, ...)
{
  va_list ap;
  int rc;

  va_start(ap, fmt);
  rc = vreport(CHD_CLI_FAILED, fmt, ap);
  va_end(ap);
  return rc;
}

int chd_cli_usage(const char *fmt, ...)
{
  va_list ap;
  int rc;

  va_start(ap, fmt);
  rc = vreport(CHD_CLI_USAGE, fmt, ap);
  va_end(ap);
  return rc;
}

int chd_cli_config(chd_config *cfg, const char *path)
{
  char err[2048];

  if (chd_config_load(cfg, path, NULL, err, sizeof err) != 0)
    return chd_cli_fail("%s", err);
  return 0;
}

chd_mdb *chd_cli_store(const chd_config *cfg)
{
  chd_mdb *db = chd_mdb_new(cfg->message_store);

  if (!db) {
    chd_cli_fail("out of memory");
    return NULL;
  }
  if (chd_mdb_connect(db) != CHD_STORE_OK) {
    chd_cli_fail("%s", chd_mdb_error(db));
    chd_mdb_free(db);
    return NULL;
  }
  return db;
}

chd_viewdb *chd_cli_view(const chd_config *cfg)
{
  chd_viewdb *v = chd_viewdb_new(cfg->view_data);

  if (!v) {
    chd_cli_fail("%s", cfg->view_data ? "out of memory" : "no view database is configured");
    return NULL;
  }
  if (chd_viewdb_connect(v) != CHD_STORE_OK) {
    chd_cli_fail("%s", chd_viewdb_error(v));
    chd_viewdb_free(v);
    return NULL;
  }
  return v;
}

int chd_cli_int(const char *option, const char *text, int64_t min, int64_t *out)
{
  if (chd_parse_int64(text, out) != 0)
    return chd_cli_usage("%s: '%s' is not a whole number", option, text);
  if (*out < min)
    return chd_cli_usage("%s: '%s' is below %" PRId64, option, text, min);
  return 0;
}

void chd_cli_json_line(json_t *doc)
{
  char *text = json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY);

  if (text) {
    fputs(text, stdout);
    fputc('\n', stdout);
    free(text);
  }
  json_decref(doc);
}

void chd_cli_iso_time(const char *store_time, char *buf, size_t size)
{
  size_t n;

  snprintf(buf, size, "%s", store_time ? store_time : "");
  for (char *p = buf; *p; p++)
    if (*p == ' ')
      *p = 'T';
  n = strlen(buf);
  if (n > 0 && n + 1 < size && buf[n - 1] != 'Z') {
    buf[n] = 'Z';
    buf[n + 1] = '\0';
  }
}

json_t *chd_cli_message_json(const ch_message *m)
{
  char time[64];

  chd_cli_iso_time(m->time, time, sizeof time);
  return json_pack("{s:I, s:I, s:s, s:s, s:s, s:s, s:O, s:O}",
                   "global_position", (json_int_t)m->global_position,
                   "position", (json_int_t)m->position, "time", time,
                   "stream", m->stream_name, "type", m->type, "id", m->id,
                   "data", m->data, "metadata", m->metadata);
}

static void on_signal(int sig)
{
  (void)sig;
  chd_cli_interrupted = 1;
}

void chd_cli_catch_signals(void)
{
  struct sigaction sa;

  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}
