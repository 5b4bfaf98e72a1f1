/*
 * cli.h - the operator's commands: write, read, trace, status, rebuild,
 * migrate-store, parked, retry and skip (docs/operations.md).
 *
 * Each takes -c FILE for the connection strings (the environment overrides
 * apply as for the host), prints a human table by default and one JSON
 * document with --json (one JSON object per line for read). A failure ends
 * it with one line "comphost: ..." on stderr and exit code 1; a wrong
 * command line, with exit code 2.
 */
#ifndef CHD_CLI_H
#define CHD_CLI_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "config.h"
#include "mdb.h"
#include "viewdb.h"

#define CHD_CLI_FAILED 1
#define CHD_CLI_USAGE 2

/* The commands: argv[0] is the command's name. Return the exit code. */
int chd_cli_write(int argc, char **argv);
int chd_cli_read(int argc, char **argv);
int chd_cli_trace(int argc, char **argv);
int chd_cli_migrate_store(int argc, char **argv);
int chd_cli_status(int argc, char **argv);
int chd_cli_rebuild(int argc, char **argv);
int chd_cli_parked(int argc, char **argv);
int chd_cli_retry(int argc, char **argv);
int chd_cli_skip(int argc, char **argv);

/* Helpers shared by the commands. */

/* "comphost: <message>" on stderr; return CHD_CLI_FAILED or CHD_CLI_USAGE. */
int chd_cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int chd_cli_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Load the connection settings of FILE (no plugin is loaded). Returns 0, or
 * prints why and returns CHD_CLI_FAILED. */
int chd_cli_config(chd_config *cfg, const char *path);

/* Connect to the message store of cfg. NULL after printing why. */
chd_mdb *chd_cli_store(const chd_config *cfg);

/* Connect to the view database of cfg. NULL after printing why. */
chd_viewdb *chd_cli_view(const chd_config *cfg);

/* A number option: 0, or CHD_CLI_USAGE after printing why. */
int chd_cli_int(const char *option, const char *text, int64_t min, int64_t *out);

/* Print doc compactly on one line and release it. */
void chd_cli_json_line(json_t *doc);

/* A message as a JSON object (time in ISO 8601, UTC). */
json_t *chd_cli_message_json(const ch_message *m);

/* "2026-11-28 06:49:19.640123" -> "2026-11-28T06:49:19.640123Z" */
void chd_cli_iso_time(const char *store_time, char *buf, size_t size);

/* Set by SIGINT/SIGTERM once chd_cli_catch_signals() ran. */
extern volatile sig_atomic_t chd_cli_interrupted;
void chd_cli_catch_signals(void);

#endif /* CHD_CLI_H */
