/*
 * comphost/plugin.h - the comphost plugin ABI.
 *
 * A plugin is a shared object that exports exactly one symbol,
 * comphost_plugin_query(), through CH_PLUGIN_DEFINE(). The host calls it once
 * after dlopen() with its function table and gets back a static descriptor:
 * what the plugin is, its settings, its subscriptions and handlers, its
 * view-data migrations and its lifecycle callbacks. Everything a plugin calls
 * goes through the host's function table (ch_host_api): plugins link nothing
 * from the host, only jansson (and libpq if they use the view database).
 *
 * ABI rules
 * - The host accepts a plugin when abi_major == CH_ABI_MAJOR and abi_minor <=
 *   the host's CH_ABI_MINOR, and its descriptor is at least as large as the
 *   first ABI's. The leading fields of ch_plugin_desc are fixed-width, so the
 *   host can read them from a plugin of any version.
 * - Structs change only by appending fields (MINOR + 1). Removing or changing a
 *   field is a new MAJOR. ch_handler, ch_subscription, ch_config_key,
 *   ch_migration and ch_reducer live in arrays, so they never grow: they carry
 *   reserved slots instead, which must be left zero. ch_message (message.h)
 *   is passed in arrays to batch handlers, so it never grows either.
 * - A plugin built against a newer minor may call functions of ch_host_api
 *   only after CH_HOST_HAS(host, fn) says the running host has them.
 *
 * Ownership (stated once, for everything in this header)
 * - A ch_message passed to a plugin, and all it points to, is borrowed for the
 *   duration of the call. Copy what you keep.
 * - Strings the host returns (config values, error texts) are borrowed and
 *   stay valid until the plugin's destroy().
 * - JSON a plugin passes to the host (data, metadata) stays the plugin's: the
 *   host never decrefs it. JSON the host returns to the plugin (follow()) is
 *   new and the plugin must json_decref() it.
 * - Plugin state is created in init() and freed in destroy(); the host never
 *   frees plugin memory.
 *
 * Threads and processes
 * - Each plugin instance runs in its own worker process, on one thread (the
 *   applications of one site share theirs: comphost/web.h). The
 *   host never calls an instance concurrently: init, start, handlers, stop and
 *   destroy are called one at a time, in that order.
 * - A plugin must not install signal handlers, fork, exit, or open
 *   transactions on the host's connections: the host manages transactions.
 *
 * Changes
 * - 1.0: first version.
 * - 1.1: CH_SKIP; ch_plugin_desc.secret_keys; applications
 *   (CH_KIND_APPLICATION, ch_plugin_desc.routes and .mount, ch_host_api.web:
 *   see comphost/web.h); ch_host_api.store_db; CH_PLUGIN_DESC() fills in a
 *   descriptor's header; CH_MAX_SUBSCRIPTIONS names the limit of 16
 *   subscriptions; follow() also sets causationMessageStreamName,
 *   causationMessagePosition and causationMessageGlobalPosition;
 *   ch_host_api.config_path resolves a path setting against the directory
 *   of the configuration file. Tables may end with {0}. The test kit,
 *   comphost/testkit.h, runs a plugin without a host or a database.
 *   Envelope-only subscriptions (ch_plugin_desc.envelope_only,
 *   ch_host_api.message_data and .message_metadata).
 *   ch_host_api.subscriber_id: the subscriber id of the subscription being
 *   handled, with its consumer group member (hosts sharing a group).
 */
#ifndef COMPHOST_PLUGIN_H
#define COMPHOST_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <jansson.h>

#include <comphost/message.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CH_PLUGIN_MAGIC 0x43485031u      /* "CHP1" */
#define CH_ABI_MAJOR 1u
#define CH_ABI_MINOR 1u

#if defined(__GNUC__)
#define CH_EXPORT __attribute__((visibility("default")))
#define CH_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CH_EXPORT
#define CH_PRINTF(f, a)
#endif

/* The host's per-instance context: opaque, host-owned. */
typedef struct ch_ctx ch_ctx;

/* The view database connection (libpq's PGconn). */
struct pg_conn;

typedef enum ch_kind {
  CH_KIND_COMPONENT = 1,   /* handles commands, writes events */
  CH_KIND_AGGREGATOR = 2,  /* projects events into view tables */
  CH_KIND_APPLICATION = 3  /* 1.1: answers HTTP requests (comphost/web.h) */
} ch_kind;

/* Applications (1.1): defined in comphost/web.h. */
struct ch_route;
struct ch_web_api;

/* What a handler returns. */
typedef enum ch_result {
  CH_OK = 0,      /* handled (a no-op because "already done" is also OK) */
  CH_RETRY = 1,   /* transient failure: back off, deliver the same message again */
  CH_FAIL = 2,    /* give up on this message: the host parks it and every
                     later message of its stream (or stops the subscription,
                     when the instance says on_failure = stop) */
  CH_SKIP = 3     /* 1.1: the message is malformed and can never be handled:
                     the host logs it (stream, position and the reason given
                     with set_error()), counts it and goes on */
} ch_result;

/* Return codes of host functions. */
enum {
  CH_RC_OK = 0,
  CH_RC_ALREADY_WRITTEN = 1,  /* write(): this handler's write was done by an
                                 earlier delivery of the same message */
  CH_RC_ERROR = -1,           /* see last_error() */
  CH_RC_CONFLICT = -2,        /* write(): the stream is not at the expected version */
  CH_RC_UNAVAILABLE = -3,     /* the database is unreachable: return CH_RETRY */
  CH_RC_INVALID = -4          /* refused before the database (bad argument) */
};

typedef enum ch_log_level {
  CH_LOG_ERROR = 0,
  CH_LOG_WARN = 1,
  CH_LOG_INFO = 2,
  CH_LOG_DEBUG = 3
} ch_log_level;

/*
 * A message handler. `state` is what init() stored. Return CH_OK, CH_RETRY
 * or CH_FAIL; with RETRY and FAIL, say why with host->set_error().
 */
typedef ch_result (*ch_handler_fn)(ch_ctx *ctx, void *state, const ch_message *msg);

/* One entry of a handler table. The type "$any" matches every type without
 * its own entry. A table ends with an entry whose type is NULL: {0}.
 * (Every table of this header ends so: an entry of zeros.) */
typedef struct ch_handler {
  const char *type;
  ch_handler_fn fn;
  void *reserved[2];
} ch_handler;

/*
 * Optional batch handler of an aggregator: all messages of one read that
 * passed the origin filter, in order, inside the batch's transaction. Return
 * CH_OK when every message is handled. On anything else the host rolls the
 * batch back and replays it through the per-message handlers, one message per
 * transaction, to find the message that fails: a subscription with a batch
 * handler must therefore have handlers for the same types too.
 */
typedef ch_result (*ch_batch_fn)(ch_ctx *ctx, void *state, const ch_message *msgs,
                                 size_t count);

/*
 * A subscription: one category (or "$all") read in global order.
 * subscriber_id names the subscription's read position and must be unique
 * across everything that runs against the store. origin_stream_name, when
 * not NULL, keeps only messages whose metadata.originStreamName has that
 * category. Messages filtered out, or of a type with no handler, advance the
 * position as if handled. A table ends with an entry whose stream_name is NULL
 * ({0}); a plugin has at most CH_MAX_SUBSCRIPTIONS subscriptions.
 */
#define CH_MAX_SUBSCRIPTIONS 16

typedef struct ch_subscription {
  const char *stream_name;
  const char *subscriber_id;
  const char *origin_stream_name;
  const ch_handler *handlers;
  ch_batch_fn handle_batch;          /* optional, aggregators */
  void *reserved[3];
} ch_subscription;

typedef enum ch_config_type {
  CH_CONFIG_STRING = 1,
  CH_CONFIG_INT = 2,                 /* a 64-bit signed integer */
  CH_CONFIG_BOOL = 3                 /* true/false, yes/no, on/off, 1/0 */
} ch_config_type;

/* A setting of the plugin, read from its INI section. The host refuses a
 * config with an unknown key, a missing required key or a value that is not
 * of the type. A table ends with an entry whose name is NULL ({0}). */
typedef struct ch_config_key {
  const char *name;
  ch_config_type type;
  const char *default_value;         /* NULL: no default */
  bool required;
  const char *help;                  /* one line, shown by `comphost check` */
  void *reserved[2];
} ch_config_key;

/* A view-data migration: SQL the host runs once, in a transaction, before
 * the plugin starts, and records as applied under (plugin name, id). Ids are
 * applied in table order; never change one that has shipped. A table ends
 * with an entry whose id is NULL ({0}). */
typedef struct ch_migration {
  const char *id;                    /* e.g. "20180303013723_create-pages" */
  const char *sql;
  void *reserved[2];
} ch_migration;

/*
 * A projection for fetch(): init() prepares the entity, and each reducer
 * folds one event of its type into it. Types without a reducer leave the
 * entity unchanged. Reducers must not call the host.
 */
typedef void (*ch_reducer_fn)(void *entity, const ch_message *msg);
typedef struct ch_reducer {
  const char *type;
  ch_reducer_fn fn;
  void *reserved[2];
} ch_reducer;
typedef struct ch_projection {
  void (*init)(void *entity);        /* entity points to the caller's storage */
  const ch_reducer *reducers;        /* ends with a NULL type ({0}) */
} ch_projection;

/*
 * The descriptor a plugin returns. Static and constant: the host copies it.
 * The first six fields are fixed-width and never move.
 */
typedef struct ch_plugin_desc {
  uint32_t magic;                    /* CH_PLUGIN_MAGIC */
  uint32_t abi_major;                /* CH_ABI_MAJOR */
  uint32_t abi_minor;                /* CH_ABI_MINOR */
  uint32_t struct_size;              /* sizeof(ch_plugin_desc) */
  uint32_t kind;                     /* ch_kind */
  uint32_t flags;                    /* none defined yet: 0 */

  const char *name;                  /* [a-z0-9_-]+, unique in a host */
  const char *version;               /* the plugin's own version, e.g. "1.2.0" */
  const char *description;           /* one line */
  const ch_config_key *config_keys;  /* may be NULL */
  const ch_subscription *subscriptions;
  const ch_migration *migrations;    /* may be NULL */

  /*
   * Lifecycle, every callback optional. init() reads settings, prepares
   * state and returns 0 (or non-zero with set_error(): the host refuses to
   * run the plugin). The view database's migrations have run before init.
   * start() runs after init, before the first message; stop() after the last
   * one, when the host shuts down; destroy() frees the state. reset() empties
   * what the plugin projected (its view tables), for a rebuild from the
   * first message; it runs in a transaction on the view database.
   */
  int (*init)(ch_ctx *ctx, void **state);
  int (*start)(ch_ctx *ctx, void *state);
  void (*stop)(ch_ctx *ctx, void *state);
  void (*destroy)(ch_ctx *ctx, void *state);
  int (*reset)(ch_ctx *ctx, void *state);

  /* ABI 1.1 */
  /*
   * Names of config keys that hold secrets (passwords, keys), ending with
   * NULL; may be NULL. Each must be a key of config_keys. (This is the one
   * way to mark a secret: ch_config_key lives in arrays and cannot grow, and
   * its reserved slots stay zero.) A secret may also come from `<key>_file` or the
   * environment (docs/configuration.md), and the host never prints it.
   */
  const char *const *secret_keys;

  /*
   * 1.1: applications (kind CH_KIND_APPLICATION, see comphost/web.h). An
   * application has routes and no subscriptions; other kinds have no routes.
   * mount is where its routes live on the site, "/" or "/name" without a
   * trailing '/' (NULL: "/"); the instance's `mount =` setting overrides it.
   */
  const struct ch_route *routes;     /* ends with a NULL pattern */
  const char *mount;

  /*
   * 1.1: the subscriber ids of the subscriptions whose handlers read only
   * the envelope of most messages (id, stream_name, type, position,
   * global_position, time), ending with NULL; may be NULL. Each must be the
   * subscriber_id of one of this plugin's subscriptions. (ch_subscription
   * lives in arrays and cannot grow, and its reserved slots stay zero: this
   * is the one way to mark one.)
   *
   * The host then does not decode data and metadata when it reads: every
   * handler of such a subscription, batch or per message, may get messages
   * whose `data` and `metadata` are NULL, and reads them with
   * message_data() and message_metadata(), which decode on first use. The
   * host decodes metadata itself only for an origin filter.
   *
   * A message whose data or metadata cannot be decoded is then a poison
   * only when something asks for it: the origin filter, or a handler
   * through message_data()/message_metadata()/follow(). Then it fails for
   * good whatever the handler returns (parked, or the subscription stops:
   * on_failure); in a batch handler, the host rolls the batch back and
   * replays it through the per-message handlers, one message at a time, as
   * after any failure. A message that nothing asks about is handled like
   * any other.
   */
  const char *const *envelope_only;
  /* append here */
} ch_plugin_desc;

/*
 * A descriptor with its header filled in: magic, the ABI of these headers
 * (CH_ABI_MAJOR, CH_ABI_MINOR) and the struct's size. The arguments are the
 * other fields, as designated initializers; the fields not named are zero:
 *
 *   static const ch_plugin_desc desc = CH_PLUGIN_DESC(
 *     .kind = CH_KIND_COMPONENT,
 *     .name = "greeter",
 *     .version = "1.0.0",
 *     .subscriptions = subscriptions,
 *     .init = init);
 *
 *   CH_PLUGIN_DEFINE(desc)
 *
 * Name none of the four header fields (with -Wextra, the compiler says when
 * one is initialized twice). The plugin then claims the ABI of the headers
 * it is built with, and loads into hosts of that minor and later (1.1: the
 * macro is new, the descriptor is not).
 */
#define CH_PLUGIN_DESC(...)                                                 \
  { .magic = CH_PLUGIN_MAGIC, .abi_major = CH_ABI_MAJOR,                    \
    .abi_minor = CH_ABI_MINOR, .struct_size = sizeof(ch_plugin_desc),       \
    __VA_ARGS__ }

/* The smallest descriptor the host accepts (ABI 1.0). */
#define CH_DESC_SIZE_1_0 (offsetof(ch_plugin_desc, reset) + sizeof(void *))

/*
 * The host's function table. Every function takes the ctx the host passed to
 * the callback that is running.
 */
typedef struct ch_host_api {
  uint32_t struct_size;
  uint32_t abi_major;
  uint32_t abi_minor;
  uint32_t reserved;

  /* Log a line at `level`, tagged with the plugin, the subscription and the
   * message being handled. */
  void (*log)(ch_ctx *ctx, ch_log_level level, const char *fmt, ...) CH_PRINTF(3, 4);

  /* Attach a reason to the CH_RETRY/CH_FAIL (or failing init) being returned. */
  void (*set_error)(ch_ctx *ctx, const char *fmt, ...) CH_PRINTF(2, 3);

  /* The text of the last failed host call, "" if none. */
  const char *(*last_error)(ch_ctx *ctx);

  /* A setting of this instance: the INI value, else the declared default,
   * else NULL. The host validated types before init, so config_int and
   * config_bool of a declared key of that type cannot fail; for a key that is
   * not set and has no default they return 0 / false. */
  const char *(*config_get)(ch_ctx *ctx, const char *key);
  int64_t (*config_int)(ch_ctx *ctx, const char *key);
  bool (*config_bool)(ch_ctx *ctx, const char *key);

  /*
   * Write a message. data and metadata may be NULL. expected_version is
   * CH_VERSION_ANY, CH_VERSION_EMPTY or a stream version N. While a handler
   * runs, the message gets a deterministic id (UUID v5 in the namespace of
   * the handled message's id, of the subscriber id, the index of this write
   * in the handler call, the stream name and the type), so the writes of a
   * redelivered message are recognised: CH_RC_ALREADY_WRITTEN, not an
   * error (*out_position is then -1). A handler that makes the same writes
   * in the same order each time it sees a message is idempotent for free.
   * In a route handler (1.1) the id is random, and the host adds the
   * request's traceId and userId to the metadata where the plugin's lacks
   * them (comphost/web.h).
   * Returns CH_RC_OK (with *out_position, if not NULL, the stream position),
   * CH_RC_ALREADY_WRITTEN, CH_RC_CONFLICT, CH_RC_UNAVAILABLE, CH_RC_INVALID
   * or CH_RC_ERROR.
   */
  int (*write)(ch_ctx *ctx, const char *stream_name, const char *type,
               const json_t *data, const json_t *metadata,
               int64_t expected_version, int64_t *out_position);

  /*
   * Read messages of an entity stream from stream position `from`, at most
   * `max` (-1: all; the host pages through long streams), calling each() for
   * every one in order. each() returns 0 to go on, non-zero to stop.
   * Returns the number of messages passed to each(), or a CH_RC_* < 0.
   */
  int64_t (*read_stream)(ch_ctx *ctx, const char *stream_name, int64_t from,
                         int64_t max, int (*each)(void *arg, const ch_message *msg),
                         void *arg);

  /* Call each() with the last message of a stream (of `type`, if not NULL).
   * Returns 1 when there was one, 0 when not, or a CH_RC_* < 0. */
  int (*read_last)(ch_ctx *ctx, const char *stream_name, const char *type,
                   int (*each)(void *arg, const ch_message *msg), void *arg);

  /* The version of a stream (position of its last message), -1 when empty.
   * Returns CH_RC_OK or a CH_RC_* < 0. */
  int (*stream_version)(ch_ctx *ctx, const char *stream_name, int64_t *out_version);

  /*
   * Project a whole entity stream, however long, into *entity: projection
   * init(), then each event through its reducer. *out_version (if not NULL)
   * is the stream's version, -1 when empty: pass it as expected_version to
   * write the next event safely. Returns CH_RC_OK or a CH_RC_* < 0.
   */
  int (*fetch)(ch_ctx *ctx, const char *stream_name, const ch_projection *projection,
               void *entity, int64_t *out_version);

  /* The view database connection (a libpq PGconn), or NULL when the host has
   * none configured. Inside a handler, statements run in the host's
   * transaction for the batch (when it uses one). */
  struct pg_conn *(*view_db)(ch_ctx *ctx);

  /*
   * New metadata for a message written in response to `msg` (Eventide's
   * Metadata#follow): msg's traceId and userId, when it has them; from 1.1,
   * causationMessageStreamName, causationMessagePosition and
   * causationMessageGlobalPosition, msg's stream name, position and global
   * position; and originStreamName set to origin_stream_name when that is
   * not NULL. With msg NULL, only originStreamName. The caller owns the
   * result (json_decref) and may add to it. NULL when out of memory.
   */
  json_t *(*follow)(ch_ctx *ctx, const ch_message *msg, const char *origin_stream_name);

  /* UUIDs, written as 36 characters and a NUL. uuid_v5 returns 0, or -1
   * when ns is not a UUID. */
  void (*uuid_v4)(char out[37]);
  int (*uuid_v5)(const char *ns, const char *name, char out[37]);

  /* Stream names: category (before the first '-'; "" for NULL) and id
   * (after it; NULL when none). category returns 0, or -1 when buf is too
   * small. */
  int (*stream_category)(const char *stream_name, char *buf, size_t size);
  const char *(*stream_id)(const char *stream_name);

  /* 1.1: the web functions for applications (comphost/web.h); the password
   * functions in it serve every kind. */
  const struct ch_web_api *web;

  /*
   * 1.1: the message store connection (a libpq PGconn; search_path
   * message_store, public), for reading what Message DB has no function for:
   * every message in global order, messages by their metadata. Run SELECT
   * statements only, outside any transaction, and parameterized; write
   * messages only with write(). NULL when the store cannot be reached just
   * now (the host reconnects it).
   */
  struct pg_conn *(*store_db)(ch_ctx *ctx);

  /*
   * 1.1: a setting that names a file or a directory: config_get()'s value,
   * with a relative path taken relative to the directory of the
   * configuration (INI) file, so that the file means the same from any
   * working directory. An absolute path, "", and a value that came from the
   * environment or from a secret's <key>_file are returned as they are.
   * NULL when config_get() gives NULL, or out of memory (last_error() then
   * says so). Borrowed until destroy().
   */
  const char *(*config_path)(ch_ctx *ctx, const char *key);

  /*
   * 1.1: the data (the metadata) of `msg`, decoded now if the host has not
   * decoded it yet: for the handlers of an envelope-only subscription (see
   * ch_plugin_desc.envelope_only), where msg->data and msg->metadata may be
   * NULL. Of any other message it returns msg->data (msg->metadata).
   * Borrowed like the message, for the duration of the call. NULL when it
   * cannot be decoded (last_error() says why: the host then fails the
   * message, whatever the handler returns), or when msg is not a message
   * the host handed to this call and has no data of its own.
   */
  json_t *(*message_data)(ch_ctx *ctx, const ch_message *msg);
  json_t *(*message_metadata)(ch_ctx *ctx, const ch_message *msg);

  /*
   * 1.1: the subscriber id of the subscription whose message (or batch) is
   * being handled, as the host keeps its position: in a consumer group with
   * ":<member>" appended ("aggregators:home-page:3"). Members of a group move
   * through the category at different speeds, so a guard by global position
   * must be kept per subscriber id, not per plugin. Borrowed; NULL before
   * the first handler call. A host older than this field does not have it:
   * check with CH_HOST_HAS(ch_host, subscriber_id).
   */
  const char *(*subscriber_id)(ch_ctx *ctx);
  /* append here */
} ch_host_api;

/* True when the running host provides function `fn` of ch_host_api. */
#define CH_HOST_HAS(host, fn) \
  (offsetof(ch_host_api, fn) + sizeof(((ch_host_api *)0)->fn) <= (host)->struct_size)

/* The exported entry point. */
#define CH_PLUGIN_ENTRY "comphost_plugin_query"
typedef const ch_plugin_desc *(*ch_plugin_query_fn)(const ch_host_api *host);

/*
 * Define the entry point and the plugin's `ch_host` pointer, through which it
 * calls the host: ch_host->write(ctx, ...). Use once per plugin, with the
 * name of its static ch_plugin_desc.
 */
#define CH_PLUGIN_DEFINE(desc)                                              \
  const ch_host_api *ch_host;                                               \
  CH_EXPORT const ch_plugin_desc *comphost_plugin_query(const ch_host_api *h); \
  CH_EXPORT const ch_plugin_desc *comphost_plugin_query(const ch_host_api *h) \
  {                                                                         \
    ch_host = h;                                                            \
    return &(desc);                                                         \
  }

/* Declare ch_host in a plugin's other source files. */
extern const ch_host_api *ch_host;

#ifdef __cplusplus
}
#endif

#endif /* COMPHOST_PLUGIN_H */
