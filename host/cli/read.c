/*
 * read.c - `comphost read`: the messages of a stream, a category or $all.
 *
 *   comphost read -c FILE STREAM [--from N] [--limit N] [--follow] [--json]
 *
 * --from is a stream position for an entity stream (default 0), a global
 * position for a category or $all (default 1); both inclusive. --follow keeps
 * reading new messages until SIGINT or SIGTERM.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "clock.h"
#include "stream_name.h"

#define READ_BATCH 1000
#define DEFAULT_LIMIT 1000

static void usage(FILE *out)
{
  fprintf(out,
          "usage: comphost read -c FILE STREAM [--from N] [--limit N] [--follow]\n"
          "                     [--interval-ms N] [--json]\n"
          "Print the messages of an entity stream, a category or '$all', in order.\n"
          "--from: stream position (entity stream, default 0) or global position\n"
          "(category, $all, default 1); --limit: at most N messages (default 1000,\n"
          "none with --follow); --follow: wait for new messages until interrupted.\n");
}

static void print_row(const ch_message *m, bool as_json)
{
  char *data;

  if (as_json) {
    chd_cli_json_line(chd_cli_message_json(m));
    return;
  }
  data = json_dumps(m->data, JSON_COMPACT | JSON_ENCODE_ANY);
  printf("%10" PRId64 " %8" PRId64 "  %-23.23s  %-32s %-20s %s\n", m->global_position,
         m->position, m->time, m->stream_name, m->type, data ? data : "");
  free(data);
}

static void print_header(void)
{
  printf("%10s %8s  %-23s  %-32s %-20s %s\n", "GLOBAL", "POSITION", "TIME (UTC)", "STREAM",
         "TYPE", "DATA");
}

/* Is there any message at all in `stream`? -1 when that could not be read. */
static int exists(chd_mdb *db, const char *stream)
{
  int64_t v;

  if (chd_stream_is_all(stream) || chd_stream_is_category(stream)) {
    if (chd_mdb_head(db, stream, &v) != CHD_STORE_OK)
      return -1;
    return v > 0;
  }
  if (chd_mdb_stream_version(db, stream, &v) != CHD_STORE_OK)
    return -1;
  return v >= 0;
}

int chd_cli_read(int argc, char **argv)
{
  static const struct option longs[] = {
    { "config", required_argument, NULL, 'c' },
    { "from", required_argument, NULL, 'f' },
    { "limit", required_argument, NULL, 'l' },
    { "follow", no_argument, NULL, 'F' },
    { "interval-ms", required_argument, NULL, 'i' },
    { "json", no_argument, NULL, 'j' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  const char *config = NULL, *stream, *from_text = NULL, *limit_text = NULL;
  int64_t from, limit = -1, interval = 500, printed = 0;
  bool follow = false, as_json = false, header = false;
  chd_config cfg;
  chd_mdb *db;
  int c, rc = 0;

  optind = 1;
  while ((c = getopt_long(argc, argv, "c:h", longs, NULL)) != -1) {
    switch (c) {
    case 'c': config = optarg; break;
    case 'f': from_text = optarg; break;
    case 'l': limit_text = optarg; break;
    case 'F': follow = true; break;
    case 'i':
      if ((rc = chd_cli_int("--interval-ms", optarg, 1, &interval)) != 0)
        return rc;
      break;
    case 'j': as_json = true; break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return CHD_CLI_USAGE;
    }
  }
  if (!config)
    return chd_cli_usage("read: no configuration: give -c FILE");
  if (argc - optind != 1)
    return chd_cli_usage("read: give one stream, category or '$all'");
  stream = argv[optind];
  if (!*stream)
    return chd_cli_usage("read: the stream name is empty");
  from = chd_stream_is_all(stream) || chd_stream_is_category(stream) ? 1 : 0;
  if (from_text && (rc = chd_cli_int("--from", from_text, 0, &from)) != 0)
    return rc;
  if (limit_text && (rc = chd_cli_int("--limit", limit_text, 1, &limit)) != 0)
    return rc;
  if (limit < 0 && !follow)
    limit = DEFAULT_LIMIT;

  if ((rc = chd_cli_config(&cfg, config)) != 0)
    return rc;
  db = chd_cli_store(&cfg);
  chd_config_release(&cfg);
  if (!db)
    return CHD_CLI_FAILED;
  if (follow)
    chd_cli_catch_signals();

  while (!chd_cli_interrupted && (limit < 0 || printed < limit)) {
    int64_t want = limit < 0 || limit - printed > READ_BATCH ? READ_BATCH : limit - printed;
    chd_mdb_batch b;
    chd_store_rc r = chd_mdb_read(db, stream, from, want, &b);
    size_t got;

    if (r == CHD_STORE_DISCONNECTED && follow) {
      chd_mdb_reconnect(db, -1);      /* tail through an outage */
      continue;
    }
    if (r != CHD_STORE_OK) {
      rc = r == CHD_STORE_INVALID ? chd_cli_usage("%s", chd_mdb_error(db))
                                : chd_cli_fail("%s", chd_mdb_error(db));
      break;
    }
    if (b.count == 0 && printed == 0 && !follow) {
      int e = exists(db, stream);
      if (e == 0 && chd_stream_is_all(stream))
        rc = chd_cli_fail("no messages in the store");
      else if (e == 0)
        rc = chd_cli_fail("no messages in %s '%s'",
                          chd_stream_is_category(stream) ? "category" : "stream", stream);
      else if (e < 0)
        rc = chd_cli_fail("%s", chd_mdb_error(db));
    }
    for (size_t i = 0; i < b.count; i++) {
      if (!as_json && !header) {
        print_header();
        header = true;
      }
      if (b.decode_errors && b.decode_errors[i])
        fprintf(stderr, "comphost: %s (shown with empty data and metadata)\n",
                b.decode_errors[i]);
      print_row(&b.messages[i], as_json);
      printed++;
    }
    if (b.count > 0) {
      const ch_message *last = &b.messages[b.count - 1];
      from = (chd_stream_is_all(stream) || chd_stream_is_category(stream)
                ? last->global_position : last->position) + 1;
    }
    fflush(stdout);
    got = b.count;
    chd_mdb_batch_release(&b);
    if ((int64_t)got < want && !follow)
      break;
    if (got == 0)
      chd_nap_ms(interval, &chd_cli_interrupted);
  }
  chd_mdb_free(db);
  return rc;
}
