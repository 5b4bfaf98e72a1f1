/* monitor.c - what the supervisor shows of its workers: state file, HTTP. */
#include "monitor.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "clock.h"
#include "exporter.h"
#include "group.h"
#include "http.h"
#include "log.h"
#include "subscription.h"

static const chd_inventory *m_inv;
static chd_status *m_status;
static size_t m_count;             /* statuses: the instances, then the sites' other workers */
static chd_http *m_http;
static char m_state_path[PATH_MAX];
static int64_t m_next_state_ms;
static bool m_state_warned;

/* A directory only we can use: created 0700 if missing. */
static int private_dir(const char *dir, char *why, size_t size)
{
  struct stat sb;

  if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
    snprintf(why, size, "cannot create %s: %s", dir, strerror(errno));
    return -1;
  }
  if (lstat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode) || sb.st_uid != geteuid() ||
      (sb.st_mode & 022)) {
    snprintf(why, size, "%s is not a directory of this user's that only it can write", dir);
    return -1;
  }
  return 0;
}

int chd_monitor_state_path(const chd_config *cfg, char *buf, size_t size)
{
  const char *service = getenv("RUNTIME_DIRECTORY");   /* systemd's RuntimeDirectory= */
  const char *runtime = getenv("XDG_RUNTIME_DIR");
  char dir[PATH_MAX], abs[PATH_MAX];
  uint64_t h = 14695981039346656037ULL;
  struct stat sb;

  if (cfg->state_file) {
    snprintf(buf, size, "%s", cfg->state_file);
    return 0;
  }
  if (!realpath(cfg->path, abs))
    snprintf(abs, sizeof abs, "%s", cfg->path);
  for (const char *p = abs; *p; p++)
    h = (h ^ (unsigned char)*p) * 1099511628211ULL;
  if (service && service[0] == '/') {
    /* the first of its entries: a directory of this service alone */
    snprintf(dir, sizeof dir, "%.*s", (int)strcspn(service, ":"), service);
  } else if (runtime && runtime[0] == '/' && stat(runtime, &sb) == 0 && S_ISDIR(sb.st_mode)) {
    snprintf(dir, sizeof dir, "%s/comphost", runtime);
  } else {
    snprintf(dir, sizeof dir, "%s/comphost-%u", getenv("TMPDIR") && getenv("TMPDIR")[0] == '/'
             ? getenv("TMPDIR") : "/tmp", (unsigned)geteuid());
  }
  if (private_dir(dir, buf, size) != 0)
    return -1;
  snprintf(buf, size, "%s/%016" PRIx64 ".json", dir, h);
  return 0;
}

static json_t *instance_json(size_t i, int64_t now)
{
  const chd_instance_config *inst = &m_inv->cfg.instances[i];
  const chd_plugin *p = &m_inv->plugins[i];
  const chd_status *st = &m_status[i];
  json_t *subs = json_array();
  json_t *o = json_pack("{s:s, s:i, s:s, s:i}", "plugin", inst->name, "pid", (int)st->pid,
                        "state", chd_worker_state_name(st->state), "restarts", st->restarts);
  chd_group_entry entries[CHD_STATUS_MAX_SLOTS];
  size_t n = chd_group_entries(inst, &p->desc, st, entries, CHD_STATUS_MAX_SLOTS);

  if (st->heartbeat_ms)
    json_object_set_new(o, "heartbeat_age_ms", json_integer(now - st->heartbeat_ms));
  if (st->last_exit[0])
    json_object_set_new(o, "last_exit", json_string(st->last_exit));
  if (st->state == CHD_WORKER_RESTARTING)
    json_object_set_new(o, "restart_in_ms", json_integer(st->restart_at_ms - now));
  for (size_t e = 0; e < n; e++) {
    const chd_status_sub *ss = entries[e].ss;
    json_t *s;

    s = json_pack("{s:s, s:I, s:I, s:I}", "subscriber", entries[e].id, "position",
                  (json_int_t)ss->position, "handled", (json_int_t)ss->handled,
                  "lag", (json_int_t)ss->lag);
    if (ss->moved_ms)
      json_object_set_new(s, "moved_age_ms", json_integer(now - ss->moved_ms));
    if (entries[e].slot)
      json_object_set_new(s, "lease", json_pack("{s:I, s:I, s:I}", "generation",
                          (json_int_t)entries[e].slot->generation, "since_unix_ms",
                          (json_int_t)entries[e].slot->since_ms, "renewed_unix_ms",
                          (json_int_t)entries[e].slot->renewed_ms));
    json_array_append_new(subs, s);
  }
  json_object_set_new(o, "subscriptions", subs);
  if (inst->group_auto)
    json_object_set_new(o, "group", json_pack("{s:I, s:I, s:I, s:I, s:I}", "slots",
                        (json_int_t)inst->group_size, "members", (json_int_t)st->group_members,
                        "takeovers", (json_int_t)st->takeovers, "slots_lost",
                        (json_int_t)st->slots_lost, "slots_given",
                        (json_int_t)st->slots_given));
  return o;
}

static void write_state_file(void)
{
  char tmp[PATH_MAX + 8], abs[PATH_MAX];
  int64_t now = chd_now_ms();
  json_t *doc, *insts = json_array();
  int rc;

  if (!m_state_path[0])
    return;
  if (!realpath(m_inv->cfg.path, abs))
    snprintf(abs, sizeof abs, "%s", m_inv->cfg.path);
  for (size_t i = 0; i < m_inv->count; i++)
    json_array_append_new(insts, instance_json(i, now));
  doc = json_pack("{s:i, s:s, s:I, s:o}", "pid", (int)getpid(), "config", abs,
                  "updated_unix_ms", (json_int_t)chd_wall_ms(), "instances", insts);
  json_object_set_new(doc, "http", m_http ? json_string(chd_http_address(m_http)) : json_null());
  snprintf(tmp, sizeof tmp, "%s.tmp", m_state_path);
  rc = json_dump_file(doc, tmp, JSON_INDENT(1));
  json_decref(doc);
  if (rc != 0 || rename(tmp, m_state_path) != 0) {
    if (!m_state_warned)
      chd_log_warn("cannot write the state file %s: %s", m_state_path, strerror(errno));
    m_state_warned = true;
    unlink(tmp);
  }
}

static int answer(void *arg, const char *path, char **body, const char **content_type)
{
  (void)arg;
  if (!strcmp(path, "/metrics")) {
    *content_type = "text/plain; version=0.0.4; charset=utf-8";
    *body = chd_exporter_metrics(m_inv, m_status, m_count);
    return *body ? 200 : 500;
  }
  if (!strcmp(path, "/healthz")) {
    bool ok = chd_exporter_health(m_inv, m_status, m_inv->cfg.health_max_heartbeat_age_ms,
                                 m_inv->cfg.health_max_stall_ms, body);
    *content_type = "application/json";
    return ok ? 200 : 503;
  }
  if (!strcmp(path, "/")) {
    *body = strdup("comphost: GET /metrics (Prometheus), GET /healthz\n");
    return 200;
  }
  *body = strdup("not found: try /metrics or /healthz\n");
  return 404;
}

int chd_monitor_start(const chd_inventory *inv, chd_status *status, size_t count, char *err,
                      size_t errlen)
{
  char why[PATH_MAX + 200];

  m_inv = inv;
  m_status = status;
  m_count = count;
  m_state_warned = false;
  if (inv->cfg.http_listen) {
    m_http = chd_http_start(inv->cfg.http_listen, answer, NULL, err, errlen);
    if (!m_http)
      return -1;
    chd_log_info("listening on http://%s/ for /metrics and /healthz", chd_http_address(m_http));
  }
  if (chd_monitor_state_path(&inv->cfg, m_state_path, sizeof m_state_path) != 0) {
    snprintf(why, sizeof why, "%s", m_state_path);
    m_state_path[0] = '\0';
    chd_log_warn("no state file (comphost status will not see this host): %s", why);
  } else {
    chd_log_debug("state file: %s", m_state_path);
  }
  write_state_file();
  m_next_state_ms = chd_now_ms() + CHD_STATE_FILE_INTERVAL_MS;
  return 0;
}

void chd_monitor_wait(int64_t ms)
{
  int64_t now = chd_now_ms();

  if (now >= m_next_state_ms) {
    write_state_file();
    m_next_state_ms = now + CHD_STATE_FILE_INTERVAL_MS;
  }
  if (m_http) {
    chd_http_run(m_http, (int)ms);
  } else {
    chd_sleep_ms(ms);         /* a signal ends it early: fine */
  }
}

void chd_monitor_child(void)
{
  chd_http_close_in_child(m_http);
  m_state_path[0] = '\0';
}

void chd_monitor_stop(void)
{
  chd_http_stop(m_http);
  m_http = NULL;
  if (m_state_path[0])
    unlink(m_state_path);
  m_state_path[0] = '\0';
}
