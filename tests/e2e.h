/*
 * e2e.h - end-to-end tests: run the comphost binary against fresh databases.
 *
 * Every test gets its own message store (a copy of the dev cluster's
 * message_store_template, which has Message DB installed) and its own view
 * database, so tests never see each other's messages.
 */
#ifndef CH_E2E_H
#define CH_E2E_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "mdb.h"

typedef struct ch_e2e_db {
  char store_name[64];
  char view_name[64];
  char store_url[512];       /* as the message_store role */
  char view_url[512];
  char dir[256];             /* a temporary directory for INI files and logs */
} ch_e2e_db;

typedef struct ch_e2e_host {
  pid_t pid;
  char log_path[320];
} ch_e2e_host;

/* Create the databases and the directory; drop and remove them. Dropping
 * first kills any host the test started and left running (a test that failed
 * half way), and fails the test when a sanitizer reported anything in the
 * test's logs. */
void ch_e2e_db_create(ch_e2e_db *db);
void ch_e2e_db_drop(ch_e2e_db *db);

/*
 * Write <dir>/<name> with a [host] section for db (log_level debug, the
 * build's plugin directory) followed by `body`. Returns the path (static
 * buffer, valid until the next call).
 */
const char *ch_e2e_write_ini(const ch_e2e_db *db, const char *name, const char *body);

/* Start `comphost -c ini` with stdout and stderr appended to <dir>/<log>. The environment's connection strings are replaced
 * by db's; COMPHOST_PLUGIN_DIR is unset, or set to COMPHOST_E2E_PLUGIN_DIR
 * when the test sets that. */
void ch_e2e_host_start(ch_e2e_host *h, const ch_e2e_db *db, const char *ini,
                       const char *log_name);

/* Send sig and wait up to timeout_ms; returns the wait status, or -1 if the
 * host did not end (it is then killed). */
int ch_e2e_host_stop(ch_e2e_host *h, int sig, int timeout_ms);

/* Wait for the host to end by itself; returns the wait status or -1. */
int ch_e2e_host_wait(ch_e2e_host *h, int timeout_ms);

/* Run comphost to completion with `argv` (NULL-terminated, without the
 * program name); stdout+stderr into *out (caller frees). Returns the exit
 * code, or -1. */
int ch_e2e_run(const ch_e2e_db *db, const char *const argv[], char **out);

/* True when the host's log holds `text`. */
bool ch_e2e_log_contains(const ch_e2e_host *h, const char *text);
/* Times `text` appears in the host's log. */
int ch_e2e_log_count(const ch_e2e_host *h, const char *text);

/* The pids of the host's direct children. Returns how many (at most max). */
int ch_e2e_workers(const ch_e2e_host *h, pid_t *pids, int max);

/* One integer from `sql` on `url`; -1 for NULL, no row, or a table that does
 * not exist yet. Fails the test on any other SQL error. */
int64_t ch_e2e_int(const char *url, const char *sql);
/* Run SQL that returns nothing; fails the test on error. */
void ch_e2e_exec(const char *url, const char *sql);

/* Wait until ch_e2e_int(url, sql) == want, up to timeout_ms. Returns the
 * last value seen. */
int64_t ch_e2e_wait_int(const char *url, const char *sql, int64_t want, int timeout_ms);

/* Wait until `text` is in the log, up to timeout_ms. */
bool ch_e2e_wait_log(const ch_e2e_host *h, const char *text, int timeout_ms);

/* A client for db's store; fails the test if it cannot connect. */
chd_mdb *ch_e2e_store(const ch_e2e_db *db);

/* Write `n` messages of `type` to streams "<category>-<i % streams>" with
 * data {"n": i} in one transaction. */
void ch_e2e_write_many(const ch_e2e_db *db, const char *category, const char *type,
                       int n, int streams);

/* Set COMPHOST_SESSION_SECRET, unless set: a configuration with
 * applications (config/video-tutorials.ini) needs one to start or pass
 * `comphost check`. The hosts and commands started here call it. */
void ch_e2e_session_secret(void);

/* Stop and start the dev database server (scripts/dev-db of this tree, or
 * the script COMPHOST_DEV_DB_SCRIPT names: the tree that runs the cluster). */
void ch_e2e_restart_server(int down_ms);
/* The same with a crash (scripts/dev-db crash: pg_ctl stop -m immediate):
 * what was committed but not yet flushed is lost, and the start recovers. */
void ch_e2e_crash_server(int down_ms);

void ch_e2e_sleep_ms(int ms);

/* A new string of n hex digits (caller frees) that never repeats a run, so
 * PostgreSQL cannot compress it: an id too long for any btree index when n
 * passes about 2700. The same seed gives the same string. */
char *ch_e2e_long_id(size_t n, unsigned seed);

/* True while `pid` exists and is not a zombie. */
bool ch_e2e_process_alive(pid_t pid);

/* GET url: the HTTP status (0 when none came), the body in *body (caller
 * frees). */
long ch_e2e_http_get(const char *url, char **body);

/* The host's metrics address, "http://HOST:PORT", from its log line
 * "listening on http://HOST:PORT/". */
void ch_e2e_http_base(const ch_e2e_host *h, char *buf, size_t size);

/* The value of the sample `series` (name with labels, as printed) in a
 * Prometheus text, or NAN. */
double ch_e2e_metric(const char *text, const char *series);

#endif /* CH_E2E_H */
