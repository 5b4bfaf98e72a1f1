/* main.c - the comphost command line. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "inspect.h"
#include "inventory.h"
#include "log.h"
#include "supervisor.h"

static void usage(FILE *out)
{
  fprintf(out,
          "usage: comphost -c FILE [--plugin-dir DIR]     run the plugins of FILE\n"
          "       comphost check -c FILE [--plugin-dir DIR] [--no-db]\n"
          "                                              check FILE and its plugins, print\n"
          "                                              what would run, start nothing\n"
          "       comphost inspect PLUGIN [--plugin-dir DIR]\n"
          "                                              print what a plugin file declares\n"
          "                                              (a path, or a name in the plugin\n"
          "                                              directory), run none of it\n"
          "       comphost write -c FILE --stream S --type T --data JSON [--metadata JSON]\n"
          "                      [--expected-version N] [--id UUID] [--json]\n"
          "                                              write one message\n"
          "       comphost read -c FILE STREAM|CATEGORY|'$all' [--from N] [--limit N]\n"
          "                     [--follow] [--json]      print messages\n"
          "       comphost trace -c FILE TRACE_ID [--json]\n"
          "                                              every message of one traceId\n"
          "       comphost status -c FILE [--json]       positions, lag, workers\n"
          "       comphost rebuild -c FILE INSTANCE --yes [--force] [--json]\n"
          "                                              empty an aggregator's views and\n"
          "                                              replay it from the start\n"
          "       comphost migrate-store -c FILE [--admin-url URL]\n"
          "                                              add the trace index to the store\n"
          "       comphost parked -c FILE [--json]       streams parked after a failure\n"
          "       comphost retry|skip -c FILE (STREAM | --all) [--subscriber ID] [--wait S]\n"
          "                                              deliver a parked stream again, or\n"
          "                                              drop it, with a record\n"
          "       comphost --version\n"
          "\n"
          "Environment: MESSAGE_STORE_CONNECTION_STRING and DATABASE_URL override the\n"
          "connection strings of FILE, COMPHOST_PLUGIN_DIR its plugin directory.\n");
}

typedef struct options {
  const char *config;
  const char *plugin_dir;
  int no_db;
} options;

/* Parse -c/--config, --plugin-dir and --no-db. Returns 0, or 2 on a usage error. */
static int parse_options(int argc, char **argv, options *o)
{
  static const struct option longs[] = {
    { "config", required_argument, NULL, 'c' },
    { "plugin-dir", required_argument, NULL, 'p' },
    { "no-db", no_argument, NULL, 'n' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  int c;

  memset(o, 0, sizeof *o);
  optind = 1;
  while ((c = getopt_long(argc, argv, "c:h", longs, NULL)) != -1) {
    switch (c) {
    case 'c': o->config = optarg; break;
    case 'p': o->plugin_dir = optarg; break;
    case 'n': o->no_db = 1; break;
    case 'h': usage(stdout); exit(0);
    default: return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "comphost: unexpected argument '%s'\n", argv[optind]);
    return 2;
  }
  if (!o->config) {
    fprintf(stderr, "comphost: no configuration: give -c FILE\n");
    return 2;
  }
  return 0;
}

static int cmd_check(int argc, char **argv)
{
  chd_inventory inv;
  options o;
  char err[2048];
  int rc;

  if (parse_options(argc, argv, &o) != 0) {
    usage(stderr);
    return 2;
  }
  if (chd_inventory_load(&inv, o.config, o.plugin_dir, err, sizeof err) != 0) {
    chd_log_redact(err, sizeof err);
    fprintf(stderr, "comphost: %s\n", err);
    return 1;
  }
  rc = chd_inventory_print(&inv, stdout, !o.no_db);
  chd_inventory_release(&inv);
  if (rc != 0) {
    fprintf(stderr, "comphost: the configuration is valid, but positions could not be read"
            " (--no-db skips them)\n");
    return 1;
  }
  printf("\nok: %s is valid\n", o.config);
  return 0;
}

static int cmd_inspect(int argc, char **argv)
{
  static const struct option longs[] = {
    { "plugin-dir", required_argument, NULL, 'p' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  const char *plugin_dir = NULL;
  char err[2048];
  int c;

  optind = 1;
  while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
    switch (c) {
    case 'p': plugin_dir = optarg; break;
    case 'h': usage(stdout); exit(0);
    default: usage(stderr); return 2;
    }
  }
  if (argc - optind != 1) {
    fprintf(stderr, "comphost: inspect needs one plugin (a file, or a name)\n");
    usage(stderr);
    return 2;
  }
  if (chd_inspect(argv[optind], plugin_dir, stdout, err, sizeof err) != 0) {
    fprintf(stderr, "comphost: %s\n", err);
    return 1;
  }
  return 0;
}

static int cmd_run(int argc, char **argv)
{
  chd_inventory inv;
  options o;
  char err[2048];
  int rc;

  if (parse_options(argc, argv, &o) != 0) {
    usage(stderr);
    return 2;
  }
  if (chd_inventory_load(&inv, o.config, o.plugin_dir, err, sizeof err) != 0) {
    chd_log_redact(err, sizeof err);
    fprintf(stderr, "comphost: %s\n", err);
    return 1;
  }
  chd_log_set_level(inv.cfg.log_level);
  chd_inventory_log(&inv);
  chd_supervisor_set_reexec(argv, o.plugin_dir);
  rc = chd_supervisor_run(&inv);
  chd_inventory_release(&inv);
  return rc;
}

/* The operator's commands (cli.h, docs/operations.md). */
static const struct {
  const char *name;
  int (*run)(int argc, char **argv);
} commands[] = {
  { "write", chd_cli_write },
  { "read", chd_cli_read },
  { "trace", chd_cli_trace },
  { "status", chd_cli_status },
  { "rebuild", chd_cli_rebuild },
  { "parked", chd_cli_parked },
  { "retry", chd_cli_retry },
  { "skip", chd_cli_skip },
  { "migrate-store", chd_cli_migrate_store },
};

int main(int argc, char **argv)
{
  if (argc >= 2 && !strcmp(argv[1], "--version")) {
    printf("comphost %s (plugin ABI %u.%u)\n", COMPHOST_VERSION, CH_ABI_MAJOR, CH_ABI_MINOR);
    return 0;
  }
  if (argc >= 2 && !strcmp(argv[1], "check"))
    return cmd_check(argc - 1, argv + 1);
  if (argc >= 2 && !strcmp(argv[1], "inspect"))
    return cmd_inspect(argc - 1, argv + 1);
  for (size_t i = 0; argc >= 2 && i < sizeof commands / sizeof commands[0]; i++)
    if (!strcmp(argv[1], commands[i].name))
      return commands[i].run(argc - 1, argv + 1);
  if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
    usage(stdout);
    return 0;
  }
  if (argc >= 2 && argv[1][0] != '-') {
    fprintf(stderr, "comphost: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
  }
  return cmd_run(argc, argv);
}
