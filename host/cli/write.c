/*
 * write.c - `comphost write`: write one message.
 *
 *   comphost write -c FILE --stream S --type T --data JSON [--metadata JSON]
 *                  [--expected-version N] [--id UUID] [--json]
 *
 * The id is a new random UUID unless given; metadata.traceId is a new one
 * unless the metadata has one. Like a plugin's write, it wakes the
 * subscribers of the stream's category (mdb.h: push wake-ups). Prints where
 * the message went.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "uuid.h"

static void usage(FILE *out)
{
  fprintf(out,
          "usage: comphost write -c FILE --stream STREAM --type TYPE --data JSON\n"
          "                      [--metadata JSON] [--expected-version N] [--id UUID] [--json]\n"
          "Write one message. The id and metadata.traceId are generated unless given;\n"
          "--expected-version -1 means the stream must be empty.\n");
}

/* A JSON object from an option, or NULL after printing why. */
static json_t *object_of(const char *option, const char *text, int *rc)
{
  json_error_t e;
  json_t *v = json_loads(text, 0, &e);

  if (!v) {
    *rc = chd_cli_usage("%s: invalid JSON: %s (line %d, column %d)", option, e.text, e.line,
                        e.column);
    return NULL;
  }
  if (!json_is_object(v)) {
    json_decref(v);
    *rc = chd_cli_usage("%s: not a JSON object (Message DB messages carry objects)", option);
    return NULL;
  }
  return v;
}

int chd_cli_write(int argc, char **argv)
{
  static const struct option longs[] = {
    { "config", required_argument, NULL, 'c' },
    { "stream", required_argument, NULL, 's' },
    { "type", required_argument, NULL, 't' },
    { "data", required_argument, NULL, 'd' },
    { "metadata", required_argument, NULL, 'm' },
    { "expected-version", required_argument, NULL, 'e' },
    { "id", required_argument, NULL, 'i' },
    { "json", no_argument, NULL, 'j' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  const char *config = NULL, *stream = NULL, *type = NULL, *data_text = NULL;
  const char *meta_text = NULL, *ev_text = NULL, *id = NULL;
  int64_t expected = CH_VERSION_ANY, position = -1, gp;
  json_t *data = NULL, *meta = NULL;
  char idbuf[CHD_UUID_LEN], trace[CHD_UUID_LEN];
  const char *trace_id;
  bool as_json = false;
  chd_config cfg;
  chd_mdb *db = NULL;
  chd_store_rc wrc;
  int c, rc = 0;

  optind = 1;
  while ((c = getopt_long(argc, argv, "c:h", longs, NULL)) != -1) {
    switch (c) {
    case 'c': config = optarg; break;
    case 's': stream = optarg; break;
    case 't': type = optarg; break;
    case 'd': data_text = optarg; break;
    case 'm': meta_text = optarg; break;
    case 'e': ev_text = optarg; break;
    case 'i': id = optarg; break;
    case 'j': as_json = true; break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return CHD_CLI_USAGE;
    }
  }
  if (optind < argc)
    return chd_cli_usage("write: unexpected argument '%s'", argv[optind]);
  if (!config)
    return chd_cli_usage("write: no configuration: give -c FILE");
  if (!stream || !type || !data_text)
    return chd_cli_usage("write: --stream, --type and --data are required");
  if (ev_text && (rc = chd_cli_int("--expected-version", ev_text, -1, &expected)) != 0)
    return rc;
  if (id && !chd_uuid_valid(id))
    return chd_cli_usage("--id: '%s' is not a UUID", id);
  if (!(data = object_of("--data", data_text, &rc)))
    return rc;
  if (meta_text ? !(meta = object_of("--metadata", meta_text, &rc)) : !(meta = json_object())) {
    json_decref(data);
    return rc ? rc : chd_cli_fail("out of memory");
  }
  trace_id = json_string_value(json_object_get(meta, "traceId"));
  if (!trace_id) {
    chd_uuid_v4(trace);
    json_object_set_new(meta, "traceId", json_string(trace));
    trace_id = trace;
  }
  if (!id) {
    chd_uuid_v4(idbuf);
    id = idbuf;
  }

  if ((rc = chd_cli_config(&cfg, config)) != 0)
    goto out;
  db = chd_cli_store(&cfg);
  chd_config_release(&cfg);
  if (!db) {
    rc = CHD_CLI_FAILED;
    goto out;
  }
  {
    chd_mdb_write_opts opts = { .notify = true };
    wrc = chd_mdb_write_with(db, stream, id, type, data, meta, expected, &opts, &position);
  }
  if (wrc != CHD_STORE_OK) {
    rc = wrc == CHD_STORE_INVALID ? chd_cli_usage("%s", chd_mdb_error(db))
                                : chd_cli_fail("%s", chd_mdb_error(db));
    goto out;
  }
  if (chd_mdb_global_position(db, id, &gp) != CHD_STORE_OK)
    gp = -1;
  if (as_json) {
    chd_cli_json_line(json_pack("{s:s, s:s, s:s, s:I, s:I, s:s}", "id", id, "stream", stream,
                                "type", type, "position", (json_int_t)position,
                                "global_position", (json_int_t)gp, "trace_id", trace_id));
  } else {
    printf("wrote %s to %s at position %" PRId64 " (global position %" PRId64 ")\n"
           "  id:       %s\n  trace id: %s\n", type, stream, position, gp, id, trace_id);
  }

out:
  chd_mdb_free(db);
  json_decref(data);
  json_decref(meta);
  return rc;
}
