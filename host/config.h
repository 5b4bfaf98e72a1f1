/*
 * config.h - the host's INI configuration (inih).
 *
 * One file describes one host: a [host] section and one section per plugin
 * instance. Relative paths in the file are relative to the file's directory.
 *
 *   [host]
 *   message_store = postgresql://message_store@127.0.0.1:55432/message_store
 *   view_data = postgresql://postgres@127.0.0.1:55432/view_data
 *   plugin_dir = ../build/plugins
 *   log_level = info
 *
 *   [home-page]              ; the instance name; also the default library
 *   library = home-page      ; <plugin_dir>/home-page.so, or a path with '/'
 *   batch_size = 100
 *   some_plugin_key = value  ; anything not a host key belongs to the plugin
 *
 * Every error names the file, the line and the key:
 *   "config/x.ini:12: [home-page] batch_size: '1x' is not a whole number"
 */
#ifndef CHD_CONFIG_H
#define CHD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <comphost/plugin.h>

#include "parse.h"
#include "position.h"

/* What a subscription does with a message that fails for good (CH_FAIL, the
 * retries used up, a crash loop, data that is not JSON): park its stream and
 * go on with the others, or stop there (the book's behaviour). */
typedef enum chd_on_failure {
  CHD_ON_FAILURE_PARK = 0,
  CHD_ON_FAILURE_STOP = 1
} chd_on_failure;

/* 4 MiB of message text per read: with jansson's trees a worker stays well
 * under 64 MB whatever the sizes of the messages. */
#define CHD_DEFAULT_BATCH_BYTES (INT64_C(4) * 1024 * 1024)

/* group_member = auto: at most this many slots (group_size), and the lease
 * timeout by default. */
#define CHD_GROUP_AUTO_MAX 64
#define CHD_DEFAULT_LEASE_TIMEOUT_MS 10000

/* Where the value of a plugin setting came from. */
typedef enum chd_config_source {
  CHD_FROM_INI = 0,                /* key = value in the instance's section */
  CHD_FROM_FILE = 1,               /* <key>_file = PATH: the file's content */
  CHD_FROM_ENV = 2                 /* COMPHOST_<SECTION>_<KEY> */
} chd_config_source;

/* A key=value of an instance section that the host does not own: the
 * plugin's own setting, checked against its declared keys after loading. */
typedef struct chd_config_kv {
  char *key;
  char *value;
  int line;                        /* of the key, or of its <key>_file (for
                                      a value from the environment, of the
                                      last of them, else of the section) */
  bool secret;                     /* one of the plugin's secret_keys: print
                                      CHD_SECRET_TEXT, never the value */
  chd_config_source source;
  char *origin;                    /* CHD_FROM_FILE: the file's path;
                                      CHD_FROM_ENV: the variable; else NULL */
} chd_config_kv;

/* What is printed in place of a secret value. */
#define CHD_SECRET_TEXT "(secret)"

/* One plugin instance: one worker process. */
typedef struct chd_instance_config {
  char *name;                      /* the section name */
  int line;                        /* line of the section header */
  char *library;                   /* resolved path of the .so */
  int library_line;                /* 0 when defaulted from the name */

  /* subscription tuning (host keys), for every subscription of the plugin */
  int64_t batch_size;              /* batch_size, default 100 (the book's messagesPerTick) */
  int64_t poll_interval_ms;        /* poll_interval_ms, default 100 (tickIntervalMs) */
  int64_t position_update_interval;/* position_update_interval, default 100 */
  int64_t group_member;            /* group_member, default 0 */
  int64_t group_size;              /* group_size, default 0 = no consumer group */
  bool group_auto;                 /* group_member = auto: the hosts of this instance
                                      share the group_size slots through leases
                                      (group.h); group_member is then 0 and unused */
  int64_t lease_timeout_ms;        /* lease_timeout_ms, default 10000: a slot whose
                                      lease was not renewed for this long is taken over */
  chd_position_where position_store;   /* position_store */
  chd_position_format position_format; /* position_format = book | eventide */
  int64_t max_retries;             /* max_retries, default 5: CH_RETRY attempts per message */
  int64_t retry_backoff_ms;        /* retry_backoff_ms, default 200, doubling, max 30 s */
  bool batch_transaction;          /* batch_transaction: one view-data transaction per batch
                                      (default: true with position_store = view_data; the
                                      host also turns it on for aggregators when a view
                                      database is configured, unless the file sets it) */
  bool batch_transaction_set;      /* the file set batch_transaction */
  bool store_transaction;          /* store_transaction: one message-store transaction per
                                      batch, for the batch's writes and position (default false) */
  bool view_synchronous_commit;    /* view_synchronous_commit: whether the view's commits
                                      (the batch's transaction, or in per-message mode
                                      the whole view session) wait to be on disk.
                                      Default off (asynchronous) with position_store =
                                      view_data, where a server crash loses only a
                                      suffix of the log, positions included, which is
                                      then handled again; on otherwise, and off is
                                      refused there */
  bool deterministic_ids;          /* deterministic_ids, default true */
  chd_on_failure on_failure;       /* on_failure = park (default) | stop */
  int64_t batch_bytes;             /* batch_bytes: the most bytes of data and metadata
                                      one read holds (default CHD_DEFAULT_BATCH_BYTES);
                                      a single larger message is parked unread */
  bool read_ahead;                 /* read_ahead, default true: while a whole batch is
                                      handled, read the next one on a second connection
                                      (subscription.h) */
  bool notify_writes;              /* notify_writes, default true: the plugin's writes
                                      notify their category (host_api.c) */

  /* applications (comphost/web.h) */
  char *listen;                    /* listen: "HOST:PORT" of the site; NULL: none */
  int listen_line;
  char *mount;                     /* mount: as written, NULL: the plugin's */
  int64_t workers;                 /* workers, default 1: processes serving the site */

  chd_config_kv *plugin_keys;      /* the rest, in file order */
  size_t plugin_key_count;
} chd_instance_config;

typedef struct chd_config {
  char *path;                      /* the file, as given */
  char *message_store;             /* [host] message_store, or MESSAGE_STORE_CONNECTION_STRING */
  char *view_data;                 /* [host] view_data, or DATABASE_URL; NULL if neither */
  char *message_store_read;        /* [host] message_store_read: a streaming replica of the
                                      message store for the subscriptions' category reads;
                                      NULL: they read the message store */
  char *plugin_dir;                /* resolved; see chd_config_load() */
  ch_log_level log_level;          /* [host] log_level = error|warn|info|debug, default info */
  int64_t shutdown_timeout_ms;     /* [host] shutdown_timeout_ms, default 30000 */
  int64_t restart_backoff_max_ms;  /* [host] restart_backoff_max_ms, default 60000 */
  int64_t max_crash_restarts;      /* [host] max_crash_restarts, default 3: crashes on
                                      the same message before its subscription stops */
  char *http_listen;               /* [host] http_listen, "HOST:PORT" of the metrics and
                                      health listener; NULL: none */
  int64_t health_max_heartbeat_age_ms; /* [host] health_max_heartbeat_age_ms, default
                                      10000: /healthz fails past it */
  int64_t health_max_stall_ms;     /* [host] health_max_stall_ms, default 60000:
                                      /healthz fails when a subscription with lag has
                                      not moved, or has not read, for that long */
  char *state_file;                /* [host] state_file, resolved; NULL: the default
                                      (see monitor.h) */
  /* the web site (applications) */
  char *session_secret;            /* COMPHOST_SESSION_SECRET, else [host]
                                      session_secret, else the content of
                                      session_secret_file (first line); NULL:
                                      none. Never printed. */
  bool cookie_secure;              /* [host] cookie_secure, default false */
  int64_t session_max_age_s;       /* [host] session_max_age_s, default 604800 */
  int64_t max_body_bytes;          /* [host] max_body_bytes, default 65536 */
  int64_t request_timeout_s;       /* [host] request_timeout_s, default 30 */
  char *static_dir;                /* [host] static_dir, resolved; NULL: none */

  chd_instance_config *instances;
  size_t instance_count;
} chd_config;

/*
 * Parse `path` into *cfg. Environment overrides, applied after the file:
 * MESSAGE_STORE_CONNECTION_STRING and DATABASE_URL replace the connection
 * strings; plugin_dir_override (the --plugin-dir flag) or else the
 * environment's COMPHOST_PLUGIN_DIR replaces plugin_dir. Without any,
 * plugin_dir defaults to the host's installed plugin directory.
 * Library paths are resolved against the final plugin_dir.
 *
 * Checks: unknown [host] keys, bad numbers or enums, duplicate sections or
 * keys, no message store (a file without plugin instances is valid: the
 * commands that only connect use it; chd_inventory_load() wants one), group_member without group_size or
 * out of range, position_store = view_data without a view database.
 *
 * Returns 0, or -1 with a message in err ("FILE:LINE: [section] key: what").
 * On error *cfg is released.
 */
int chd_config_load(chd_config *cfg, const char *path, const char *plugin_dir_override,
                    char *err, size_t errlen);

/* Free everything in *cfg and zero it. */
void chd_config_release(chd_config *cfg);

/* The plugin key `key` of an instance, or NULL. */
const chd_config_kv *chd_config_plugin_key(const chd_instance_config *inst, const char *key);

/*
 * Check an instance's plugin keys against the plugin's declared keys: every
 * key known, every required key present, every value of its type.
 * Returns 0, or -1 with "FILE:LINE: [section] key: what" in err.
 */
int chd_config_check_plugin_keys(const chd_config *cfg, const chd_instance_config *inst,
                                 const ch_config_key *declared, char *err, size_t errlen);

/* True when `name` is one of a plugin's secret_keys (NULL-terminated, or NULL). */
bool chd_config_is_secret(const char *const *secret_keys, const char *name);

/*
 * Settle the instance's secret settings (the keys of `declared` that
 * `secret_keys` names: ch_plugin_desc.secret_keys, ABI 1.1), before
 * chd_config_check_plugin_keys(). A secret key K
 * takes its value from, first to last:
 *   1. the environment variable COMPHOST_<SECTION>_<K> (chd_config_secret_env()),
 *      when set and not empty;
 *   2. the file named by `K_file = PATH` in the section (relative to the INI
 *      file's directory), which must be a regular file that others cannot
 *      access (mode & 007 == 0); one trailing newline is dropped;
 *   3. `K = value` in the section.
 * The `K_file` entry is replaced by K, and every secret entry is marked
 * secret. `K_file` for a key that is not secret is refused (unless the plugin
 * declares a key of that very name). Every secret value is also handed to
 * chd_log_add_secret(), so that log lines never show it.
 * Returns 0, or -1 with "FILE:LINE: [section] key: what" in err.
 */
int chd_config_resolve_secrets(const chd_config *cfg, chd_instance_config *inst,
                               const ch_config_key *declared, const char *const *secret_keys,
                               char *err, size_t errlen);

/* The environment variable of secret `key` of instance `section`:
 * "COMPHOST_" and SECTION_KEY upper-cased, every character that is not a
 * letter or a digit written '_'. E.g. [send-email] smtp_password:
 * COMPHOST_SEND_EMAIL_SMTP_PASSWORD. */
void chd_config_secret_env(const char *section, const char *key, char *buf, size_t size);

/* A libpq connection string (key=value or URI) with its password written
 * CHD_SECRET_TEXT, into out (cut at size). Works on strings libpq refuses. */
void chd_conninfo_mask(const char *conninfo, char *out, size_t size);

/* Hand the passwords of a connection string to chd_log_add_secret(), so that
 * no log line or command error shows them. chd_config_load() does it for the
 * connection strings of the configuration. */
void chd_conninfo_add_secrets(const char *conninfo);

/* True when `name` is a key the host reads itself in an instance section
 * (batch_size, position_store, ...): a plugin cannot declare a key so named. */
bool chd_config_is_host_key(const char *name);

/* True when s is a mount path: "/" or "/a/b" (a-z A-Z 0-9 - _ . between
 * single slashes, no trailing slash). */
bool chd_config_mount_valid(const char *s);

#endif /* CHD_CONFIG_H */
