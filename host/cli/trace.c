/*
 * trace.c - `comphost trace`: every message of one traceId, and
 * `comphost migrate-store`: the index that makes it fast, and the trigger
 * that wakes subscribers.
 *
 *   comphost trace -c FILE TRACE_ID [--limit N] [--json]
 *   comphost migrate-store -c FILE [--admin-url URL] [--no-notify] [--json]
 *
 * Message DB indexes messages by id, stream and category, not by metadata:
 * without help, finding one traceId reads the whole table. migrate-store
 * creates the trace index of mdb.h (CONCURRENTLY: writers are not blocked),
 * and, unless --no-notify, the notify trigger of mdb.h, through which every
 * writer wakes the host's subscribers at once instead of at their next
 * poll. Both need the owner of the messages table (the message_store role
 * of Message DB cannot create them): --admin-url gives such a connection.
 * trace works without the index, reading every message, and says so.
 * migrate-store also creates the lease tables of group_member = auto with
 * message-store positions (lease.h), and lets the configuration's role use
 * them.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "clock.h"
#include "lease.h"

static void trace_usage(FILE *out)
{
  fprintf(out,
          "usage: comphost trace -c FILE TRACE_ID [--limit N] [--json]\n"
          "Print every message whose metadata.traceId is TRACE_ID, in global order.\n"
          "Fast with the index of `comphost migrate-store`; without it, every message\n"
          "of the store is read.\n");
}

int chd_cli_trace(int argc, char **argv)
{
  static const struct option longs[] = {
    { "config", required_argument, NULL, 'c' },
    { "limit", required_argument, NULL, 'l' },
    { "json", no_argument, NULL, 'j' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  const char *config = NULL, *trace_id;
  int64_t limit = 10000, bytes = 0;
  bool as_json = false;
  chd_config cfg;
  chd_mdb *db;
  chd_mdb_batch b = { 0 };
  int c, rc = 0, indexed;

  optind = 1;
  while ((c = getopt_long(argc, argv, "c:h", longs, NULL)) != -1) {
    switch (c) {
    case 'c': config = optarg; break;
    case 'l':
      if ((rc = chd_cli_int("--limit", optarg, 1, &limit)) != 0)
        return rc;
      break;
    case 'j': as_json = true; break;
    case 'h': trace_usage(stdout); return 0;
    default: trace_usage(stderr); return CHD_CLI_USAGE;
    }
  }
  if (!config)
    return chd_cli_usage("trace: no configuration: give -c FILE");
  if (argc - optind != 1 || !*argv[optind])
    return chd_cli_usage("trace: give one trace id");
  trace_id = argv[optind];

  if ((rc = chd_cli_config(&cfg, config)) != 0)
    return rc;
  db = chd_cli_store(&cfg);
  chd_config_release(&cfg);
  if (!db)
    return CHD_CLI_FAILED;
  if (chd_mdb_trace_index(db, &indexed, &bytes) != CHD_STORE_OK) {
    rc = chd_cli_fail("%s", chd_mdb_error(db));
    goto out;
  }
  if (indexed <= 0)
    fprintf(stderr, "comphost: note: no trace index in this store, so every message is read;"
            " `comphost migrate-store` creates it\n");
  if (chd_mdb_read_trace(db, trace_id, limit, &b) != CHD_STORE_OK) {
    rc = chd_cli_fail("%s", chd_mdb_error(db));
    goto out;
  }
  if (b.count == 0) {
    rc = chd_cli_fail("no message has traceId '%s'", trace_id);
    goto out;
  }
  {
    json_t *list = json_array();
    for (size_t r = 0; r < b.count; r++) {
      const ch_message *m = &b.messages[r];
      if (b.decode_errors && b.decode_errors[r]) {
        json_decref(list);
        rc = chd_cli_fail("reading trace %s: %s", trace_id, b.decode_errors[r]);
        goto out;
      }
      if (as_json) {
        json_array_append_new(list, chd_cli_message_json(m));
      } else {
        if (r == 0)
          printf("%10s  %-23s  %-40s %s\n", "GLOBAL", "TIME (UTC)", "STREAM", "TYPE");
        printf("%10" PRId64 "  %-23.23s  %-40s %s\n", m->global_position, m->time,
               m->stream_name, m->type);
      }
    }
    if (as_json)
      chd_cli_json_line(json_pack("{s:s, s:b, s:i, s:o}", "trace_id", trace_id,
                                  "indexed", indexed > 0, "count", (int)b.count,
                                  "messages", list));
    else
      json_decref(list);
  }

out:
  chd_mdb_batch_release(&b);
  chd_mdb_free(db);
  return rc;
}

static void migrate_usage(FILE *out)
{
  fprintf(out,
          "usage: comphost migrate-store -c FILE [--admin-url URL] [--no-notify] [--json]\n"
          "Create the store's index on metadata->>'traceId' (for `comphost trace`), if it\n"
          "is not there, without blocking writers; unless --no-notify, the trigger that\n"
          "notifies the categories written, which wakes subscribers at once; and the\n"
          "lease tables of group_member = auto. They need the owner of the messages\n"
          "table: give its connection with --admin-url (default: the message store's).\n");
}

int chd_cli_migrate_store(int argc, char **argv)
{
  static const struct option longs[] = {
    { "config", required_argument, NULL, 'c' },
    { "admin-url", required_argument, NULL, 'a' },
    { "no-notify", no_argument, NULL, 'n' },
    { "json", no_argument, NULL, 'j' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  const char *config = NULL, *admin = NULL, *url;
  bool as_json = false, created = false, notify = true, trigger_created = false;
  bool leases_created = false;
  char role[128] = "";
  chd_lease_store ls;
  int64_t bytes = 0, started;
  chd_config cfg;
  chd_mdb *db;
  int c, rc, state;

  optind = 1;
  while ((c = getopt_long(argc, argv, "c:h", longs, NULL)) != -1) {
    switch (c) {
    case 'c': config = optarg; break;
    case 'a': admin = optarg; break;
    case 'n': notify = false; break;
    case 'j': as_json = true; break;
    case 'h': migrate_usage(stdout); return 0;
    default: migrate_usage(stderr); return CHD_CLI_USAGE;
    }
  }
  if (optind < argc)
    return chd_cli_usage("migrate-store: unexpected argument '%s'", argv[optind]);
  if (!config)
    return chd_cli_usage("migrate-store: no configuration: give -c FILE");
  if ((rc = chd_cli_config(&cfg, config)) != 0)
    return rc;
  url = admin ? admin : cfg.message_store;
  chd_conninfo_add_secrets(admin);
  db = chd_mdb_new(url);
  if (!db || chd_mdb_connect(db) != CHD_STORE_OK) {
    rc = chd_cli_fail("cannot connect to the %s: %s",
                      admin ? "--admin-url database" : "message store",
                      db ? chd_mdb_error(db) : "out of memory");
    chd_mdb_free(db);
    chd_config_release(&cfg);
    return rc;
  }
  if (admin) {
    /* the hosts' role, to be let use the lease tables */
    PQconninfoOption *opts = PQconninfoParse(cfg.message_store, NULL);
    for (PQconninfoOption *o = opts; o && o->keyword; o++)
      if (!strcmp(o->keyword, "user") && o->val)
        snprintf(role, sizeof role, "%s", o->val);
    PQconninfoFree(opts);
  }
  chd_config_release(&cfg);
  started = chd_now_us();
  if (chd_mdb_trace_index(db, &state, &bytes) != CHD_STORE_OK) {
    rc = chd_cli_fail("%s", chd_mdb_error(db));
    goto out;
  }
  if (state < 0) {
    /* a CONCURRENTLY build that failed leaves an invalid index: start over */
    if (chd_mdb_trace_index_drop(db) != CHD_STORE_OK) {
      rc = chd_cli_fail("%s", chd_mdb_error(db));
      goto out;
    }
    state = 0;
  }
  if (state == 0) {
    if (chd_mdb_trace_index_create(db) != CHD_STORE_OK ||
        chd_mdb_trace_index(db, &state, &bytes) != CHD_STORE_OK) {
      rc = chd_cli_fail("%s", chd_mdb_error(db));
      goto out;
    }
    created = true;
  }
  if (notify && chd_mdb_notify_trigger_create(db, &trigger_created) != CHD_STORE_OK) {
    rc = chd_cli_fail("%s", chd_mdb_error(db));
    goto out;
  }
  chd_lease_store_init(&ls, CHD_POSITION_MESSAGE_STORE, db, NULL);
  if (chd_lease_store_create(&ls, role, &leases_created) != CHD_STORE_OK) {
    rc = chd_cli_fail("%s", chd_lease_error(&ls));
    goto out;
  }
  if (as_json) {
    json_t *doc = json_pack("{s:s, s:b, s:I, s:f, s:b, s:s?}", "index", CHD_MDB_TRACE_INDEX,
                            "created", created, "bytes", (json_int_t)bytes,
                            "seconds", (double)(chd_now_us() - started) / 1e6,
                            "lease_tables_created", leases_created,
                            "lease_tables_role", role[0] ? role : NULL);
    if (notify) {
      json_object_set_new(doc, "notify_trigger", json_string(CHD_MDB_NOTIFY_TRIGGER));
      json_object_set_new(doc, "notify_created", json_boolean(trigger_created));
    }
    chd_cli_json_line(doc);
  } else {
    if (created)
      printf("created index " CHD_MDB_TRACE_INDEX " on metadata->>'traceId'"
             " in %.2f s (%.1f MB)\n", (double)(chd_now_us() - started) / 1e6,
             (double)bytes / 1048576.0);
    else
      printf("index " CHD_MDB_TRACE_INDEX " is there already (%.1f MB)\n",
             (double)bytes / 1048576.0);
    if (notify && trigger_created)
      printf("created trigger " CHD_MDB_NOTIFY_TRIGGER " on message_store.messages:"
             " writers wake subscribers at once\n");
    else if (notify)
      printf("trigger " CHD_MDB_NOTIFY_TRIGGER " is there already\n");
  }
  if (!as_json)
    printf("lease tables (group_member = auto): %s%s%s\n",
           leases_created ? "created" : "there already", role[0] ? "; usable by role " : "",
           role);

out:
  chd_mdb_free(db);
  return rc;
}
