/*
 * cli_trace.c - `comphost trace`: every message of one traceId, and
 * `comphost migrate-store`: the index that makes it fast.
 *
 *   comphost trace -c FILE TRACE_ID [--limit N] [--json]
 *   comphost migrate-store -c FILE [--admin-url URL] [--json]
 *
 * Message DB indexes messages by id, stream and category, not by metadata:
 * without help, finding one traceId reads the whole table. migrate-store
 * creates (CONCURRENTLY: writers are not blocked)
 *
 *   CREATE INDEX messages_trace_id ON message_store.messages
 *     ((metadata->>'traceId')) WHERE metadata->>'traceId' IS NOT NULL
 *
 * It needs the owner of the messages table (the message_store role of
 * Message DB cannot create indexes): --admin-url gives such a connection.
 * trace works without the index, reading every message, and says so.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "clock.h"
#include "metrics.h"

#define INDEX_NAME "messages_trace_id"

static const char create_index[] =
  "CREATE INDEX CONCURRENTLY IF NOT EXISTS " INDEX_NAME " ON message_store.messages"
  " ((metadata->>'traceId')) WHERE metadata->>'traceId' IS NOT NULL";

/* Whether the index is there and valid, and its size in bytes. -1 on error. */
static int index_state(PGconn *conn, bool *valid, int64_t *bytes, char *err, size_t errlen)
{
  PGresult *res = PQexec(conn, "SELECT i.indisvalid, pg_relation_size(c.oid)"
                               " FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid"
                               " JOIN pg_namespace n ON n.oid = c.relnamespace"
                               " WHERE n.nspname = 'message_store'"
                               " AND c.relname = '" INDEX_NAME "'");
  int rc = 0;

  if (PQresultStatus(res) != PGRES_TUPLES_OK) {
    snprintf(err, errlen, "looking for the index " INDEX_NAME ": %s",
             PQresultErrorMessage(res));
    rc = -1;
  } else if (PQntuples(res) == 0) {
    rc = 0;
  } else {
    *valid = !strcmp(PQgetvalue(res, 0, 0), "t");
    *bytes = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    rc = 1;
  }
  PQclear(res);
  return rc;
}

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
  const char *config = NULL, *trace_id, *params[2];
  int64_t limit = 10000, bytes = 0;
  bool as_json = false, valid = false;
  char lim[24], err[1024];
  chd_config cfg;
  chd_mdb *db;
  PGresult *res;
  int c, rc = 0, indexed, rows;

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
  indexed = index_state(chd_mdb_conn(db), &valid, &bytes, err, sizeof err);
  if (indexed < 0) {
    chd_mdb_free(db);
    return chd_cli_fail("%s", err);
  }
  if (indexed == 0 || !valid)
    fprintf(stderr, "comphost: note: no trace index in this store, so every message is read;"
            " `comphost migrate-store` creates it\n");
  snprintf(lim, sizeof lim, "%" PRId64, limit);
  params[0] = trace_id;
  params[1] = lim;
  res = PQexecParams(chd_mdb_conn(db),
                     "SELECT id::varchar, stream_name::varchar, type::varchar, position,"
                     " global_position, data::varchar, metadata::varchar, time"
                     " FROM message_store.messages WHERE metadata->>'traceId' = $1"
                     " ORDER BY global_position LIMIT $2::bigint",
                     2, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(res) != PGRES_TUPLES_OK) {
    rc = chd_cli_fail("reading trace %s: %s", trace_id, PQresultErrorMessage(res));
    goto out;
  }
  rows = PQntuples(res);
  if (rows == 0) {
    rc = chd_cli_fail("no message has traceId '%s'", trace_id);
    goto out;
  }
  {
    json_t *list = json_array();
    for (int r = 0; r < rows; r++) {
      const char *fields[8];
      ch_message m;
      for (int k = 0; k < 8; k++)
        fields[k] = PQgetisnull(res, r, k) ? NULL : PQgetvalue(res, r, k);
      if (chd_message_decode(&m, fields, err, sizeof err) != 0) {
        json_decref(list);
        rc = chd_cli_fail("reading trace %s: %s", trace_id, err);
        goto out;
      }
      if (as_json) {
        json_array_append_new(list, chd_cli_message_json(&m));
      } else {
        if (r == 0)
          printf("%10s  %-23s  %-40s %s\n", "GLOBAL", "TIME (UTC)", "STREAM", "TYPE");
        printf("%10" PRId64 "  %-23.23s  %-40s %s\n", m.global_position, m.time,
               m.stream_name, m.type);
      }
      json_decref(m.data);
      json_decref(m.metadata);
    }
    if (as_json)
      chd_cli_json_line(json_pack("{s:s, s:b, s:i, s:o}", "trace_id", trace_id,
                                  "indexed", indexed > 0 && valid, "count", rows,
                                  "messages", list));
    else
      json_decref(list);
  }

out:
  PQclear(res);
  chd_mdb_free(db);
  return rc;
}

static void migrate_usage(FILE *out)
{
  fprintf(out,
          "usage: comphost migrate-store -c FILE [--admin-url URL] [--json]\n"
          "Create the store's index on metadata->>'traceId' (for `comphost trace`), if it\n"
          "is not there, without blocking writers. It needs the owner of the messages\n"
          "table: give its connection with --admin-url (default: the message store's).\n");
}

static void one_line(char *s)
{
  size_t n = strlen(s);

  while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' '))
    s[--n] = '\0';
  for (; *s; s++)
    if (*s == '\n')
      *s = ' ';
}

int chd_cli_migrate_store(int argc, char **argv)
{
  static const struct option longs[] = {
    { "config", required_argument, NULL, 'c' },
    { "admin-url", required_argument, NULL, 'a' },
    { "json", no_argument, NULL, 'j' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  const char *config = NULL, *admin = NULL, *url;
  bool as_json = false, valid = false, created = false;
  int64_t bytes = 0, started;
  char err[1024], why[1024];
  chd_config cfg;
  PGconn *conn;
  PGresult *res;
  int c, rc, state;

  optind = 1;
  while ((c = getopt_long(argc, argv, "c:h", longs, NULL)) != -1) {
    switch (c) {
    case 'c': config = optarg; break;
    case 'a': admin = optarg; break;
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
  conn = PQconnectdb(url);
  if (PQstatus(conn) != CONNECTION_OK) {
    snprintf(why, sizeof why, "%s", PQerrorMessage(conn));
    one_line(why);
    PQfinish(conn);
    chd_config_release(&cfg);
    return chd_cli_fail("cannot connect to the %s: %s",
                        admin ? "--admin-url database" : "message store", why);
  }
  chd_config_release(&cfg);
  started = chd_now_us();
  state = index_state(conn, &valid, &bytes, err, sizeof err);
  if (state < 0) {
    rc = chd_cli_fail("%s", err);
    goto out;
  }
  if (state > 0 && !valid) {
    /* a CONCURRENTLY build that failed leaves an invalid index: start over */
    res = PQexec(conn, "DROP INDEX CONCURRENTLY message_store." INDEX_NAME);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
      snprintf(why, sizeof why, "%s", PQresultErrorMessage(res));
      one_line(why);
      PQclear(res);
      rc = chd_cli_fail("dropping the invalid index message_store." INDEX_NAME ": %s", why);
      goto out;
    }
    PQclear(res);
    state = 0;
  }
  if (state == 0) {
    res = PQexec(conn, create_index);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
      const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
      const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
      snprintf(why, sizeof why, "%s", primary ? primary : PQresultErrorMessage(res));
      one_line(why);
      rc = chd_cli_fail("creating the index message_store." INDEX_NAME ": %s%s", why,
                        code && !strcmp(code, "42501")
                          ? " (it takes the owner of the messages table: give one with"
                            " --admin-url)" : "");
      PQclear(res);
      goto out;
    }
    PQclear(res);
    created = true;
    if (index_state(conn, &valid, &bytes, err, sizeof err) < 0) {
      rc = chd_cli_fail("%s", err);
      goto out;
    }
  }
  if (as_json) {
    chd_cli_json_line(json_pack("{s:s, s:b, s:I, s:f}", "index",
                                "message_store." INDEX_NAME, "created", created,
                                "bytes", (json_int_t)bytes,
                                "seconds", (double)(chd_now_us() - started) / 1e6));
  } else if (created) {
    printf("created index message_store." INDEX_NAME " on metadata->>'traceId'"
           " in %.2f s (%.1f MB)\n", (double)(chd_now_us() - started) / 1e6,
           (double)bytes / 1048576.0);
  } else {
    printf("index message_store." INDEX_NAME " is there already (%.1f MB)\n",
           (double)bytes / 1048576.0);
  }

out:
  PQfinish(conn);
  return rc;
}
