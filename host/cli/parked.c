/*
 * parked.c - `comphost parked`, `retry` and `skip`: the parked streams
 * of a configuration's subscriptions (park.h).
 *
 *   comphost parked -c FILE [--plugin-dir DIR] [--json]
 *   comphost retry  -c FILE [--plugin-dir DIR] [--subscriber ID] [--wait S] (STREAM | --all)
 *   comphost skip   -c FILE [--plugin-dir DIR] [--subscriber ID] [--wait S] (STREAM | --all)
 *
 * parked reads the status streams (no host needed). retry and skip write a
 * request into the status stream of every subscription that has the stream
 * parked (or only of --subscriber); the host that runs the subscription
 * carries it out within a second, or when it next starts. They wait up to
 * --wait seconds (default 15; 0: do not wait) for the outcome and print it:
 * exit 0 when every request was carried out (for retry: the stream flows
 * again), 1 when a retry parked the stream again, 3 when a request is still
 * waiting for its host.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "clock.h"
#include "group.h"
#include "inventory.h"
#include "park.h"
#include "position.h"
#include "subscription.h"
#include "viewdb.h"

#define CHD_CLI_PENDING 3

/* One parked stream of one subscription. */
typedef struct row {
  char plugin[64];
  char subscriber[256];
  chd_parked parked;          /* stream is owned by the row */
  int64_t messages;           /* up to the saved position */
  int64_t request_at;         /* retry/skip: position of its request record */
  int outcome;                /* retry/skip: 0 waiting, 1 done, 2 parked again */
  char detail[600];
} row;

typedef struct rows {
  row *items;
  size_t count, cap;
} rows;

static void rows_release(rows *r)
{
  for (size_t i = 0; i < r->count; i++)
    free(r->items[i].parked.stream);
  free(r->items);
}

static row *rows_add(rows *r)
{
  if (r->count == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 8;
    row *more = realloc(r->items, cap * sizeof *more);
    if (!more)
      return NULL;
    r->items = more;
    r->cap = cap;
  }
  memset(&r->items[r->count], 0, sizeof r->items[0]);
  return &r->items[r->count++];
}

/*
 * Every parked stream of every subscription of the inventory (of
 * `subscriber` only, when not NULL; of `stream` only, when not NULL), with
 * its messages counted up to the saved position. Returns 0 or an exit code.
 */
static int collect(const chd_inventory *inv, chd_mdb *mdb, chd_viewdb *view,
                   const char *subscriber, const char *stream, rows *out)
{

  for (size_t i = 0; i < inv->count; i++) {
    const chd_instance_config *inst = &inv->cfg.instances[i];
    const chd_plugin *p = &inv->plugins[i];
    size_t ids = (size_t)chd_group_ids(inst);    /* every slot's with group_member = auto */

    for (size_t x = 0; p->desc.subscriptions[x / ids].stream_name; x++) {
      size_t k = x / ids;
      const char *category = p->desc.subscriptions[k].stream_name;
      char id[256], status[320], reason[600];
      int64_t saved, stopped_at;
      chd_position_store ps;
      chd_park_set set;

      chd_group_id(&p->desc.subscriptions[k], inst, (int64_t)(x % ids), id, sizeof id);
      if (subscriber && strcmp(subscriber, id) != 0)
        continue;
      chd_position_store_init(&ps, inst->position_store, inst->position_format, mdb, view);
      if (chd_position_inspect(&ps, category, id, &saved, &stopped_at, reason,
                               sizeof reason) != CHD_STORE_OK)
        return chd_cli_fail("%s: %s", id, chd_position_error(&ps));
      chd_park_set_init(&set);
      chd_park_status_stream(id, status, sizeof status);
      if (chd_park_fold(&set, mdb, status) != CHD_STORE_OK) {
        chd_park_set_release(&set);
        return chd_cli_fail("reading %s: %s", status, chd_mdb_error(mdb));
      }
      for (size_t j = 0; j < set.count; j++) {
        chd_parked *pk = &set.items[j];
        row *r;
        if (stream && strcmp(stream, pk->stream) != 0)
          continue;
        if (!(r = rows_add(out))) {
          chd_park_set_release(&set);
          return chd_cli_fail("out of memory");
        }
        snprintf(r->plugin, sizeof r->plugin, "%s", inst->name);
        snprintf(r->subscriber, sizeof r->subscriber, "%s", id);
        r->parked = *pk;
        pk->stream = NULL;      /* the row has it now */
        if (chd_park_count(mdb, &r->parked, saved, &r->messages) != CHD_STORE_OK) {
          chd_park_set_release(&set);
          return chd_cli_fail("counting the messages of %s: %s", r->parked.stream,
                              chd_mdb_error(mdb));
        }
      }
      chd_park_set_release(&set);      /* frees what the rows did not take */
    }
  }
  return 0;
}

static const char *request_name(chd_park_request r)
{
  return r == CHD_PARK_RETRY ? "retry" : r == CHD_PARK_SKIP ? "skip" : "";
}

static void print_rows(const rows *r, bool as_json)
{
  if (as_json) {
    json_t *list = json_array();
    for (size_t i = 0; i < r->count; i++) {
      const row *w = &r->items[i];
      json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:I, s:s, s:s}",
                            "plugin", w->plugin, "subscriber", w->subscriber,
                            "streamName", w->parked.stream,
                            "position", (json_int_t)w->parked.position,
                            "globalPosition", (json_int_t)w->parked.global_position,
                            "type", w->parked.type, "messages", (json_int_t)w->messages,
                            "parkedAt", w->parked.parked_at, "reason", w->parked.reason);
      if (o && w->parked.request != CHD_PARK_NONE)
        json_object_set_new(o, "request", json_string(request_name(w->parked.request)));
      json_array_append_new(list, o);
    }
    chd_cli_json_line(json_pack("{s:o}", "parked", list));
    return;
  }
  if (r->count == 0) {
    printf("no parked streams\n");
    return;
  }
  printf("%-16s %-28s %-40s %8s %10s %-20s %8s  %s\n", "PLUGIN", "SUBSCRIBER", "STREAM",
         "POSITION", "GLOBAL", "TYPE", "MESSAGES", "REASON");
  for (size_t i = 0; i < r->count; i++) {
    const row *w = &r->items[i];
    printf("%-16s %-28s %-40s %8" PRId64 " %10" PRId64 " %-20s %8" PRId64 "  %s%s%s\n",
           w->plugin, w->subscriber, w->parked.stream, w->parked.position,
           w->parked.global_position, w->parked.type, w->messages, w->parked.reason,
           w->parked.request != CHD_PARK_NONE ? " [requested: " : "",
           w->parked.request != CHD_PARK_NONE ? request_name(w->parked.request) : "");
    if (w->parked.request != CHD_PARK_NONE)
      printf("]\n");
  }
}

/* Look in the status stream for the answer to row w's request. */
static chd_store_rc check_outcome(chd_mdb *mdb, row *w)
{
  char status[320];
  chd_mdb_batch b;
  chd_store_rc rc;

  chd_park_status_stream(w->subscriber, status, sizeof status);
  rc = chd_mdb_read_stream(mdb, status, w->request_at + 1, 1000, &b);
  if (rc != CHD_STORE_OK)
    return rc;
  for (size_t i = 0; i < b.count && w->outcome == 0; i++) {
    const ch_message *m = &b.messages[i];
    const char *s = json_string_value(json_object_get(m->data, "streamName"));
    if (!s || strcmp(s, w->parked.stream) != 0)
      continue;
    if (!strcmp(m->type, "Retried") || !strcmp(m->type, "Skipped")) {
      w->outcome = 1;
      snprintf(w->detail, sizeof w->detail, "%s: %" PRId64 " message%s %s",
               !strcmp(m->type, "Retried") ? "retried" : "skipped",
               (int64_t)json_integer_value(json_object_get(m->data, "count")),
               json_integer_value(json_object_get(m->data, "count")) == 1 ? "" : "s",
               !strcmp(m->type, "Retried") ? "handled, the stream flows again" : "dropped");
    } else if (!strcmp(m->type, "Parked")) {
      w->outcome = 2;
      snprintf(w->detail, sizeof w->detail, "parked again at position %" PRId64 ": %s",
               (int64_t)json_integer_value(json_object_get(m->data, "position")),
               json_string_value(json_object_get(m->data, "reason"))
                 ? json_string_value(json_object_get(m->data, "reason")) : "");
    }
  }
  chd_mdb_batch_release(&b);
  return CHD_STORE_OK;
}

static void usage(FILE *out, const char *cmd)
{
  if (!strcmp(cmd, "parked"))
    fprintf(out,
            "usage: comphost parked -c FILE [--plugin-dir DIR] [--json]\n"
            "The parked streams of FILE's subscriptions: where each was parked, why, and\n"
            "how many of its messages wait.\n");
  else
    fprintf(out,
            "usage: comphost %s -c FILE [--plugin-dir DIR] [--subscriber ID] [--wait SECONDS]\n"
            "                (STREAM | --all)\n"
            "%s a parked stream (every parked stream with --all) in each subscription\n"
            "that has it parked (or in --subscriber ID only). The running host does it;\n"
            "this waits for the outcome (15 s by default, 0: do not wait).\n", cmd,
            !strcmp(cmd, "retry") ? "Deliver again, in order through the plugin,"
                                  : "Drop, with a record,");
}

/* parked, retry and skip. */
static int run(int argc, char **argv)
{
  static const struct option longs[] = {
    { "config", required_argument, NULL, 'c' },
    { "plugin-dir", required_argument, NULL, 'p' },
    { "json", no_argument, NULL, 'j' },
    { "subscriber", required_argument, NULL, 's' },
    { "wait", required_argument, NULL, 'w' },
    { "all", no_argument, NULL, 'a' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  const char *cmd = argv[0], *config = NULL, *plugin_dir = NULL, *subscriber = NULL;
  const char *stream = NULL;
  bool listing = !strcmp(cmd, "parked"), as_json = false, all = false, need_view = false;
  chd_park_request request = !strcmp(cmd, "skip") ? CHD_PARK_SKIP : CHD_PARK_RETRY;
  int64_t wait_s = 15;
  char err[2048];
  chd_inventory inv;
  chd_mdb *mdb = NULL;
  chd_viewdb *view = NULL;
  rows r = { NULL, 0, 0 };
  int c, rc;

  optind = 1;
  while ((c = getopt_long(argc, argv, "c:h", longs, NULL)) != -1) {
    switch (c) {
    case 'c': config = optarg; break;
    case 'p': plugin_dir = optarg; break;
    case 'j': as_json = true; break;
    case 's': subscriber = optarg; break;
    case 'a': all = true; break;
    case 'w':
      if (chd_cli_int("--wait", optarg, 0, &wait_s) != 0)
        return CHD_CLI_USAGE;
      break;
    case 'h': usage(stdout, cmd); return 0;
    default: usage(stderr, cmd); return CHD_CLI_USAGE;
    }
  }
  if (!listing && optind < argc)
    stream = argv[optind++];
  if (optind < argc)
    return chd_cli_usage("%s: unexpected argument '%s'", cmd, argv[optind]);
  if (!config)
    return chd_cli_usage("%s: no configuration: give -c FILE", cmd);
  if (listing && (subscriber || all))
    return chd_cli_usage("parked: --subscriber and --all are for retry and skip");
  if (!listing && !stream == !all)
    return chd_cli_usage("%s: name one parked stream, or --all", cmd);

  if (chd_inventory_load(&inv, config, plugin_dir, err, sizeof err) != 0)
    return chd_cli_fail("%s", err);
  for (size_t i = 0; i < inv.count; i++)
    need_view = need_view || inv.cfg.instances[i].position_store == CHD_POSITION_VIEW_DATA;
  rc = 0;
  if (!(mdb = chd_cli_store(&inv.cfg)))
    rc = CHD_CLI_FAILED;
  else if (need_view && !(view = chd_cli_view(&inv.cfg)))
    rc = CHD_CLI_FAILED;
  if (rc == 0)
    rc = collect(&inv, mdb, view, subscriber, stream, &r);
  if (rc != 0)
    goto out;
  if (listing) {
    print_rows(&r, as_json);
    goto out;
  }
  if (r.count == 0) {
    rc = chd_cli_fail("%s: %s is not parked%s%s", cmd, stream ? stream : "nothing",
                      subscriber ? " in " : "", subscriber ? subscriber : "");
    goto out;
  }
  for (size_t i = 0; i < r.count; i++) {
    row *w = &r.items[i];
    if (chd_park_request_write(mdb, w->subscriber, w->parked.stream, request,
                               &w->request_at) != CHD_STORE_OK) {
      rc = chd_cli_fail("%s", chd_mdb_error(mdb));
      goto out;
    }
    printf("%s: requested %s of %s (%" PRId64 " message%s)\n", w->subscriber, cmd,
           w->parked.stream, w->messages, w->messages == 1 ? "" : "s");
  }
  fflush(stdout);
  for (int64_t waited = 0; ; waited += 200) {
    bool pending = false;
    for (size_t i = 0; i < r.count; i++) {
      if (r.items[i].outcome == 0 && check_outcome(mdb, &r.items[i]) != CHD_STORE_OK) {
        rc = chd_cli_fail("%s", chd_mdb_error(mdb));
        goto out;
      }
      pending = pending || r.items[i].outcome == 0;
    }
    if (!pending || waited >= wait_s * 1000 || chd_cli_interrupted)
      break;
    chd_sleep_ms(200);
  }
  for (size_t i = 0; i < r.count; i++) {
    const row *w = &r.items[i];
    if (w->outcome == 0) {
      printf("%s: %s of %s waits for the host that runs this subscription\n", w->subscriber,
             cmd, w->parked.stream);
      if (rc == 0)
        rc = CHD_CLI_PENDING;
    } else {
      printf("%s: %s: %s\n", w->subscriber, w->parked.stream, w->detail);
      if (w->outcome == 2)
        rc = CHD_CLI_FAILED;
    }
  }
out:
  rows_release(&r);
  chd_viewdb_free(view);
  chd_mdb_free(mdb);
  chd_inventory_release(&inv);
  return rc;
}

int chd_cli_parked(int argc, char **argv)
{
  return run(argc, argv);
}

int chd_cli_retry(int argc, char **argv)
{
  return run(argc, argv);
}

int chd_cli_skip(int argc, char **argv)
{
  return run(argc, argv);
}
