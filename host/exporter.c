/* exporter.c - the supervisor's view of its workers' status: /metrics and /healthz. */
#include "exporter.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "clock.h"
#include "group.h"
#include "subscription.h"

/* A label value: backslash, double quote and newline escaped. */
static void label(FILE *out, const char *s)
{
  for (; *s; s++) {
    if (*s == '\\' || *s == '"')
      fprintf(out, "\\%c", *s);
    else if (*s == '\n')
      fputs("\\n", out);
    else
      fputc(*s, out);
  }
}

/* {k1="v1",k2="v2"}: k2 may be NULL; `le`, when given, is added last. */
static void label_set(FILE *out, const char *k1, const char *v1, const char *k2,
                      const char *v2, const char *le)
{
  fprintf(out, "{%s=\"", k1);
  label(out, v1);
  if (k2) {
    fprintf(out, "\",%s=\"", k2);
    label(out, v2);
  }
  if (le)
    fprintf(out, "\",le=\"%s", le);
  fputs("\"}", out);
}

static void labels(FILE *out, const char *plugin, const char *subscriber)
{
  label_set(out, "plugin", plugin, subscriber ? "subscriber" : NULL, subscriber, NULL);
}

static void help(FILE *out, const char *name, const char *type, const char *text)
{
  fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

static bool worker_up(const chd_status *st)
{
  return st->state == CHD_WORKER_STARTING || st->state == CHD_WORKER_RUNNING ||
         st->state == CHD_WORKER_STOPPING;
}

/* What a per-subscription sample shows. */
typedef enum sub_field {
  F_HANDLED, F_RETRIES, F_FAILURES, F_POSITION, F_LAG, F_STOPPED, F_LAST_POLL,
  F_SKIPPED, F_PARKED_STREAMS, F_PARKED_MESSAGES,
  F_BATCH_HIST, F_HANDLER_HIST
} sub_field;

/* A histogram in seconds, labelled {k1="v1",k2="v2"}. */
static void histogram(FILE *out, const char *name, const char *k1, const char *v1,
                      const char *k2, const char *v2, const chd_hist *h)
{
  int64_t cumulative = 0;
  char le[32];

  for (int b = 0; b <= CHD_HIST_BUCKETS; b++) {
    cumulative += h->counts[b];
    if (b < CHD_HIST_BUCKETS)
      snprintf(le, sizeof le, "%g", (double)chd_hist_bounds_us[b] / 1e6);
    else
      snprintf(le, sizeof le, "+Inf");
    fprintf(out, "%s_bucket", name);
    label_set(out, k1, v1, k2, v2, le);
    fprintf(out, " %" PRId64 "\n", cumulative);
  }
  fprintf(out, "%s_sum", name);
  label_set(out, k1, v1, k2, v2, NULL);
  fprintf(out, " %.6f\n%s_count", (double)h->sum_us / 1e6, name);
  label_set(out, k1, v1, k2, v2, NULL);
  fprintf(out, " %" PRId64 "\n", cumulative);
}

/* One sample (or histogram) of `name` per subscription of every instance
 * (per slot held, with group_member = auto). */
static void sub_samples(FILE *out, const chd_inventory *inv, const chd_status *st,
                        const char *name, sub_field field)
{
  chd_group_entry entries[CHD_STATUS_MAX_SLOTS];

  for (size_t i = 0; i < inv->count; i++) {
    const char *plugin = inv->cfg.instances[i].name;
    size_t n = chd_group_entries(&inv->cfg.instances[i], &inv->plugins[i].desc, &st[i],
                                 entries, CHD_STATUS_MAX_SLOTS);

    for (size_t e = 0; e < n; e++) {
      const chd_status_sub *ss = entries[e].ss;
      const char *id = entries[e].id;

      if (field == F_BATCH_HIST || field == F_HANDLER_HIST) {
        histogram(out, name, "plugin", plugin, "subscriber", id,
                  field == F_BATCH_HIST ? &ss->batch : &ss->handler);
        continue;
      }
      if ((field == F_LAG || field == F_LAST_POLL) && !ss->last_poll_ms)
        continue;           /* not known yet */
      fputs(name, out);
      labels(out, plugin, id);
      switch (field) {
      case F_HANDLED:   fprintf(out, " %" PRId64 "\n", ss->handled); break;
      case F_RETRIES:   fprintf(out, " %" PRId64 "\n", ss->retries); break;
      case F_FAILURES:  fprintf(out, " %" PRId64 "\n", ss->failures); break;
      case F_POSITION:  fprintf(out, " %" PRId64 "\n", ss->position); break;
      case F_LAG:       fprintf(out, " %" PRId64 "\n", ss->lag); break;
      case F_STOPPED:   fprintf(out, " %d\n", ss->stopped_at > 0); break;
      case F_SKIPPED:   fprintf(out, " %" PRId64 "\n", ss->skipped); break;
      case F_PARKED_STREAMS:  fprintf(out, " %" PRId64 "\n", ss->parked_streams); break;
      case F_PARKED_MESSAGES: fprintf(out, " %" PRId64 "\n", ss->parked_messages); break;
      default:          fprintf(out, " %.3f\n", (double)ss->last_poll_ms / 1000.0); break;
      }
    }
  }
}

/* The consumer groups shared through leases (group_member = auto). */
static void group_samples(FILE *out, const chd_inventory *inv, const chd_status *st)
{
  static const struct {
    const char *name, *type, *help;
  } metrics[] = {
    { "comphost_group_slots_owned", "gauge",
      "Slots of the consumer group whose lease this host holds (group_member = auto)." },
    { "comphost_group_members", "gauge", "Live hosts of the group at the last renewal." },
    { "comphost_group_takeovers_total", "counter",
      "Slots claimed after their owner let the lease expire." },
    { "comphost_group_slots_lost_total", "counter",
      "Slots taken over by another host, or given up after failed renewals." },
    { "comphost_group_slots_given_total", "counter",
      "Slots released to balance the group (or on a clean stop)." },
  };

  for (size_t m = 0; m < sizeof metrics / sizeof metrics[0]; m++) {
    help(out, metrics[m].name, metrics[m].type, metrics[m].help);
    for (size_t i = 0; i < inv->count; i++) {
      const chd_instance_config *inst = &inv->cfg.instances[i];
      const ch_subscription *subs = inv->plugins[i].desc.subscriptions;

      if (!inst->group_auto)
        continue;
      for (size_t k = 0; subs[k].stream_name; k++) {
        int64_t v = 0;

        if (m == 0) {
          for (int j = 0; j < st[i].slot_count && j < CHD_STATUS_MAX_SLOTS; j++)
            v += st[i].slots[j].owned && st[i].slots[j].sub == (int)k;
        } else if (k > 0) {
          break;              /* per instance: on its first subscription */
        } else {
          v = m == 1 ? st[i].group_members : m == 2 ? st[i].takeovers
            : m == 3 ? st[i].slots_lost : st[i].slots_given;
        }
        fputs(metrics[m].name, out);
        labels(out, inst->name, subs[k].subscriber_id);
        fprintf(out, " %" PRId64 "\n", v);
      }
    }
  }
}

/* The labels of worker status i: {plugin="<instance>"}, and for a site's
 * workers after its first {plugin="<the site's first application>",worker="N"}. */
static void worker_labels(FILE *out, const chd_inventory *inv, const chd_status *st, size_t i)
{
  char n[16];

  if (i < inv->count) {
    labels(out, inv->cfg.instances[i].name, NULL);
    return;
  }
  snprintf(n, sizeof n, "%d", st[i].web_worker);
  label_set(out, "plugin", inv->cfg.instances[st[i].site_inst].name, "worker", n, NULL);
}

/* Is status i a worker of a site (its first, or another)? */
static bool site_worker(const chd_inventory *inv, const chd_status *st, size_t i)
{
  return st[i].site_inst >= 0 && (size_t)st[i].site_inst < inv->count;
}

/* Is status i one to show: an instance's, or a site's other worker? */
static bool shown(const chd_inventory *inv, const chd_status *st, size_t i)
{
  return i < inv->count || site_worker(inv, st, i);
}

/* Requests answered by each worker of each site (application instances). */
static void http_samples(FILE *out, const chd_inventory *inv, const chd_status *st,
                         size_t count)
{
  static const char *const classes[5] = { "1xx", "2xx", "3xx", "4xx", "5xx" };
  char n[16];

  help(out, "comphost_http_requests_total", "counter",
       "Requests a site's worker answered since it started, by status class.");
  for (size_t i = 0; i < count; i++) {
    if (!site_worker(inv, st, i))
      continue;
    snprintf(n, sizeof n, "%d", st[i].web_worker);
    for (int c = 0; c < 5; c++) {
      fputs("comphost_http_requests_total{site=\"", out);
      label(out, inv->cfg.instances[st[i].site_inst].listen);
      fprintf(out, "\",worker=\"%s\",code=\"%s\"} %" PRId64 "\n", n, classes[c],
              st[i].http_requests[c]);
    }
  }
  help(out, "comphost_http_request_duration_seconds", "histogram",
       "How long a site's worker took to answer a request, from its arrival.");
  for (size_t i = 0; i < count; i++) {
    if (!site_worker(inv, st, i))
      continue;
    snprintf(n, sizeof n, "%d", st[i].web_worker);
    histogram(out, "comphost_http_request_duration_seconds", "site",
              inv->cfg.instances[st[i].site_inst].listen, "worker", n, &st[i].http);
  }
}

/* The per-subscription families (sub_samples). */
static const struct {
  const char *name, *type, *help;
  sub_field field;
} sub_metrics[] = {
  { "comphost_messages_handled_total", "counter",
    "Messages done (handled, filtered out or without a handler) since the worker started.",
    F_HANDLED },
  { "comphost_handler_retries_total", "counter", "Handler calls that asked for a retry.",
    F_RETRIES },
  { "comphost_handler_failures_total", "counter",
    "Messages that failed for good: parked, or where their subscription stopped.", F_FAILURES },
  { "comphost_subscription_position", "gauge", "Global position of the last message done.",
    F_POSITION },
  { "comphost_subscription_lag_messages", "gauge",
    "Messages after the position at the last read (counted up to 1000000).", F_LAG },
  { "comphost_subscription_stopped", "gauge",
    "1 when the subscription stopped at a message that failed.", F_STOPPED },
  { "comphost_messages_skipped_total", "counter",
    "Malformed messages a handler passed over (CH_SKIP).", F_SKIPPED },
  { "comphost_parked_streams", "gauge",
    "Streams parked after a message failed for good (comphost parked).", F_PARKED_STREAMS },
  { "comphost_parked_messages", "gauge",
    "Messages parked: the failed one of each parked stream and those behind it.",
    F_PARKED_MESSAGES },
  { "comphost_subscription_last_poll_timestamp_seconds", "gauge",
    "Unix time of the subscription's last read of the store.", F_LAST_POLL },
  { "comphost_batch_duration_seconds", "histogram",
    "Time to read, handle and save one batch that had messages.", F_BATCH_HIST },
  { "comphost_handler_duration_seconds", "histogram",
    "Time of one handler call (a batch handler's call counts once).", F_HANDLER_HIST },
};

char *chd_exporter_metrics(const chd_inventory *inv, const chd_status *st, size_t count)
{
  char *buf = NULL;
  size_t size = 0;
  FILE *out = open_memstream(&buf, &size);
  int64_t now = chd_now_ms();

  if (!out)
    return NULL;
  help(out, "comphost_info", "gauge", "The host's version and plugin ABI.");
  fprintf(out, "comphost_info{version=\"%s\",abi=\"%u.%u\"} 1\n", COMPHOST_VERSION,
          CH_ABI_MAJOR, CH_ABI_MINOR);

  help(out, "comphost_worker_up", "gauge", "1 while the instance's worker process runs.");
  for (size_t i = 0; i < count; i++) {
    if (!shown(inv, st, i))
      continue;
    fputs("comphost_worker_up", out);
    worker_labels(out, inv, st, i);
    fprintf(out, " %d\n", worker_up(&st[i]));
  }
  help(out, "comphost_worker_restarts_total", "counter",
       "Times the instance's worker was restarted after it ended.");
  for (size_t i = 0; i < count; i++) {
    if (!shown(inv, st, i))
      continue;
    fputs("comphost_worker_restarts_total", out);
    worker_labels(out, inv, st, i);
    fprintf(out, " %d\n", st[i].restarts);
  }
  help(out, "comphost_worker_heartbeat_age_seconds", "gauge",
       "Time since the worker's loop last went round (absent before its first round).");
  for (size_t i = 0; i < count; i++) {
    if (!shown(inv, st, i) || !worker_up(&st[i]) || !st[i].heartbeat_ms)
      continue;
    fputs("comphost_worker_heartbeat_age_seconds", out);
    worker_labels(out, inv, st, i);
    fprintf(out, " %.3f\n", (double)(now - st[i].heartbeat_ms) / 1000.0);
  }

  for (size_t m = 0; m < sizeof sub_metrics / sizeof sub_metrics[0]; m++) {
    help(out, sub_metrics[m].name, sub_metrics[m].type, sub_metrics[m].help);
    sub_samples(out, inv, st, sub_metrics[m].name, sub_metrics[m].field);
  }
  group_samples(out, inv, st);
  http_samples(out, inv, st, count);
  if (fclose(out) != 0) {
    free(buf);
    return NULL;
  }
  return buf;
}

/*
 * A running subscription that is stuck: it has lag but its position has
 * not moved for max_stall_ms, or it has not read the store for that long.
 * Writes why into `why` and returns true.
 */
static bool stalled(const chd_inventory *inv, size_t i, const chd_status *w, int64_t max_stall_ms,
                    char *why, size_t size)
{
  chd_group_entry entries[CHD_STATUS_MAX_SLOTS];
  int64_t now = chd_now_ms(), wall = chd_wall_ms();
  size_t n = chd_group_entries(&inv->cfg.instances[i], &inv->plugins[i].desc, w, entries,
                               CHD_STATUS_MAX_SLOTS);

  for (size_t e = 0; e < n; e++) {
    const chd_status_sub *ss = entries[e].ss;
    const char *id = entries[e].id;

    if (ss->stopped_at > 0)
      continue;                         /* stopped on purpose: the metric says so */
    if (ss->lag > 0 && ss->moved_ms > 0 && now - ss->moved_ms > max_stall_ms) {
      snprintf(why, size, "[%s] subscription %s is stalled: %" PRId64 " messages behind and"
               " its position %" PRId64 " has not moved for %" PRId64 " ms (bound %" PRId64
               " ms)", inv->cfg.instances[i].name, id, ss->lag, ss->position,
               now - ss->moved_ms, max_stall_ms);
      return true;
    }
    if (ss->last_poll_ms > 0 && wall - ss->last_poll_ms > max_stall_ms) {
      snprintf(why, size, "[%s] subscription %s is stalled: no successful read of the store"
               " for %" PRId64 " ms (bound %" PRId64 " ms)", inv->cfg.instances[i].name, id,
               wall - ss->last_poll_ms, max_stall_ms);
      return true;
    }
  }
  return false;
}

bool chd_exporter_health(const chd_inventory *inv, const chd_status *st, int64_t max_age_ms,
                        int64_t max_stall_ms, char **body)
{
  json_t *doc = json_object(), *workers = json_array(), *problems = json_array();
  int64_t now = chd_now_ms();
  bool healthy = true;

  for (size_t i = 0; i < inv->count; i++) {
    const chd_status *w = &st[i];
    const char *name = inv->cfg.instances[i].name;
    int64_t age = w->heartbeat_ms ? now - w->heartbeat_ms : -1;
    json_t *o = json_pack("{s:s, s:i, s:s, s:i}", "plugin", name, "pid", (int)w->pid,
                          "state", chd_worker_state_name(w->state), "restarts", w->restarts);
    char why[600] = "";

    if (age >= 0)
      json_object_set_new(o, "heartbeat_age_ms", json_integer(age));
    if (!worker_up(w) && w->last_exit[0]) {
      snprintf(why, sizeof why, "[%s] the worker is %s (last: %s)", name,
               chd_worker_state_name(w->state), w->last_exit);
    } else if (!worker_up(w)) {
      snprintf(why, sizeof why, "[%s] the worker is %s", name, chd_worker_state_name(w->state));
    } else if (w->state != CHD_WORKER_RUNNING || age < 0) {
      snprintf(why, sizeof why, "[%s] the worker is %s", name,
               chd_worker_state_name(w->state));
    } else if (age > max_age_ms) {
      snprintf(why, sizeof why, "[%s] the loop is stalled: no heartbeat for %" PRId64
               " ms (bound %" PRId64 " ms)", name, age, max_age_ms);
      if (w->in_handler) {
        size_t n = strlen(why);
        snprintf(why + n, sizeof why - n, ", in a handler of %s at global position %" PRId64,
                 w->type, w->global_position);
      }
    } else {
      stalled(inv, i, w, max_stall_ms, why, sizeof why);
    }
    json_object_set_new(o, "healthy", json_boolean(!why[0]));
    json_array_append_new(workers, o);
    if (why[0]) {
      healthy = false;
      json_array_append_new(problems, json_string(why));
    }
  }
  json_object_set_new(doc, "status", json_string(healthy ? "ok" : "unhealthy"));
  json_object_set_new(doc, "max_heartbeat_age_ms", json_integer(max_age_ms));
  json_object_set_new(doc, "max_stall_ms", json_integer(max_stall_ms));
  json_object_set_new(doc, "workers", workers);
  json_object_set_new(doc, "problems", problems);
  *body = json_dumps(doc, JSON_COMPACT);
  json_decref(doc);
  return healthy;
}
