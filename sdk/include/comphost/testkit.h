/*
 * comphost/testkit.h - unit tests for plugins, with no host and no database.
 *
 * The test kit loads a plugin's shared object the way the host does
 * (dlopen(), comphost_plugin_query(), the same checks of the descriptor),
 * gives it settings, and answers its host calls (ch_host_api) from a message
 * store in memory. A test puts messages into that store, hands one to the
 * plugin, or lets every subscription read until it has caught up, and then
 * looks at what the plugin wrote and returned. Given, when, then:
 *
 *   ch_test *t = ch_test_load("build/greeter.so");
 *   ch_test_set(t, "greeting", "Hi");
 *   if (ch_test_start(t) != 0)
 *     fprintf(stderr, "%s\n", ch_test_error(t));
 *
 *   r = ch_test_when(t, "greeting:command-1", "Greet",
 *                    "{\"greetingId\": \"g1\", \"name\": \"Ada\"}",
 *                    "{\"traceId\": \"t-1\"}");
 *
 *   w = ch_test_written(t, "greeting-g1", "Greeted");
 *   assert(r == CH_OK && w && w->expected_version == CH_VERSION_EMPTY);
 *   assert(ch_test_json_has(w->data, "{\"text\": \"Hi, Ada!\"}"));
 *   ch_test_free(t);
 *
 * It works with any test framework (examples/greeter/test_greeter.c uses
 * cmocka): the kit returns values and asserts nothing itself. Link
 * libcomphost-testkit (CMake: comphost::testkit of the comphost-sdk
 * package; pkg-config: comphost-testkit), a static library that needs
 * jansson, libuuid and libdl.
 *
 * The store in memory behaves as Message DB and the host do:
 * - global positions count from 1 in the order of writes, positions in a
 *   stream from 0; a stream's version is the position of its last message,
 *   -1 when it has none; the category of a stream is its name up to the
 *   first '-';
 * - write() checks the expected version first (CH_RC_CONFLICT), then the
 *   message id; inside a handler the id is the host's deterministic one
 *   (UUID v5 of the subscriber id, the index of the write in the handler
 *   call, the stream and the type, in the namespace of the handled
 *   message's id), so a message delivered again makes the same writes
 *   CH_RC_ALREADY_WRITTEN; elsewhere the id is random;
 * - a message written without data or metadata reads as {};
 * - a subscription gets the messages of its category (or every message, for
 *   "$all"), in global order, only those whose originStreamName has the
 *   subscription's origin category when it has one, and the handler of the
 *   type, else the "$any" handler, else none (the message is passed over);
 * - follow(), uuid_v4(), uuid_v5(), stream_category() and stream_id() are
 *   the host's;
 * - subscriber_id() is the subscriber id of the subscription being handled,
 *   as written in the descriptor (the kit runs no consumer groups).
 * What it does not do: view_db() is the connection the test gives
 * (ch_test_set_view_db()), else NULL, and the kit runs no migrations and
 * no transactions on it; store_db() is NULL; batch handlers are never
 * called (the per-message handlers are, as in a host without a batch
 * transaction); retries, parking and positions in the store are the host's
 * business: the test sees each result as the handler returns it.
 * Applications (CH_KIND_APPLICATION) are not loaded: web is NULL.
 *
 * Ownership: a ch_test owns everything it hands out (messages, writes,
 * texts, JSON); the test frees nothing but the ch_test itself. The messages
 * of the store stay valid until ch_test_free(); what a function says is "of
 * the last act" (the writes, the log lines, the error) until the next act
 * begins. An act is ch_test_start(), ch_test_deliver(), ch_test_when() or
 * ch_test_run(): each begins with no writes, no log lines, no handler calls
 * and no error.
 *
 * Misuse is a bug in the test, not a result: JSON text that does not parse,
 * a global position the store does not have, a message handed over before
 * ch_test_start() succeeded, running out of memory. The kit then prints why
 * on stderr, starting with "comphost testkit:", and calls abort().
 *
 * Set COMPHOST_TEST_LOG to error, warn, info or debug to see the plugin's
 * log lines of that level and above on stderr as well.
 */
#ifndef COMPHOST_TESTKIT_H
#define COMPHOST_TESTKIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include <comphost/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One plugin instance and the store it runs against. */
typedef struct ch_test ch_test;

/* One call of write() the plugin made, whatever it returned. */
typedef struct ch_test_write {
  const char *stream_name;
  const char *type;
  const json_t *data;            /* a copy of what the plugin passed: NULL for NULL */
  const json_t *metadata;        /* the same */
  int64_t expected_version;      /* as passed: CH_VERSION_ANY, CH_VERSION_EMPTY or N */
  int rc;                        /* what write() returned: CH_RC_OK, CH_RC_CONFLICT, ... */
  const ch_message *message;     /* the message stored when rc is CH_RC_OK, else NULL */
} ch_test_write;

/* ---- Setting up ---------------------------------------------------------- */

/*
 * Load the plugin at `path` (a path without '/' is taken in the working
 * directory, not searched for) and check its descriptor. Never NULL: when
 * loading fails, the reason is kept, and ch_test_start() returns -1 with it.
 */
ch_test *ch_test_load(const char *path);

/* A setting of the instance, as `key = value` in its INI section: checked
 * against the plugin's config_keys by ch_test_start(). Call before it. */
void ch_test_set(ch_test *t, const char *key, const char *value);

/* The directory config_path() resolves relative settings against, as the
 * host does against the INI file's. NULL (the default): they stay
 * relative, as to an INI file in the working directory. */
void ch_test_set_config_dir(ch_test *t, const char *dir);

/* What view_db() returns, a libpq PGconn the test owns; NULL (the default)
 * for none. */
void ch_test_set_view_db(ch_test *t, struct pg_conn *conn);

/*
 * Check the settings as the host does (every key declared, every required
 * key given, every value of its type), then call the plugin's init() and
 * start(). Returns 0, or -1 with the reason in ch_test_error(): the load's,
 * the settings', or what init() or start() gave set_error().
 */
int ch_test_start(ch_test *t);

/* stop() and destroy() when ch_test_start() succeeded, then unload the
 * plugin and free everything. NULL is allowed. */
void ch_test_free(ch_test *t);

/* The plugin's descriptor, as loaded (its migrations, say, for a test that
 * prepares a view database); NULL when loading failed. */
const ch_plugin_desc *ch_test_desc(const ch_test *t);

/* ---- Given: messages in the store ----------------------------------------- */

/*
 * Put a message in the store, as another writer would: data and metadata
 * are JSON texts, or NULL for {}. No handler runs. Returns its global
 * position.
 */
int64_t ch_test_given(ch_test *t, const char *stream_name, const char *type,
                      const char *data_json, const char *metadata_json);

/* ---- When: handing messages to the plugin ---------------------------------- */

/*
 * Hand the message at `global_position` to every subscription that takes
 * it (its category or "$all", its origin filter, a handler for its type),
 * in the order of the subscription table. Returns CH_OK when every handler
 * called returned CH_OK (or none was called: see ch_test_handled()), else
 * the first other result; the reason is in ch_test_error(). The
 * subscriptions' read positions (ch_test_run()) do not move.
 */
ch_result ch_test_deliver(ch_test *t, int64_t global_position);

/* ch_test_given() and ch_test_deliver() of that message, in one. */
ch_result ch_test_when(ch_test *t, const char *stream_name, const char *type,
                       const char *data_json, const char *metadata_json);

/*
 * Let every subscription read, from its read position (at first, the
 * beginning of the store), every message it takes, in global order, one
 * subscription after the other and again, until none has anything new:
 * what the plugin writes is read too, by the subscriptions it concerns.
 * A result of CH_OK or CH_SKIP moves the subscription on. Any other
 * result ends the run and is returned, with the subscription still before
 * that message: the next ch_test_run() hands it over again. Returns CH_OK
 * when every subscription has caught up.
 */
ch_result ch_test_run(ch_test *t);

/* Kinds of host call that ch_test_fail() makes fail. */
typedef enum ch_test_op {
  CH_TEST_WRITES = 1,            /* write() */
  CH_TEST_READS = 2              /* read_stream(), read_last(), stream_version(), fetch() */
} ch_test_op;

/*
 * Make the next `count` host calls of the kinds in `ops` (CH_TEST_WRITES,
 * CH_TEST_READS, or both or-ed) fail with `rc`, a CH_RC_* below 0 (say
 * CH_RC_UNAVAILABLE: the database is away), and last_error() `text`.
 * A count of 0 ends a failure set before. The calls fail before they
 * touch the store.
 */
void ch_test_fail(ch_test *t, unsigned ops, int rc, int count, const char *text);

/* ---- Then: what the plugin did --------------------------------------------- */

/* The write() calls of the last act, in order: how many, and each (NULL
 * past the last). */
size_t ch_test_write_count(const ch_test *t);
const ch_test_write *ch_test_write_at(const ch_test *t, size_t index);

/* The first write of the last act that stored a message (rc CH_RC_OK) in
 * `stream_name` (NULL: any stream) of `type` (NULL: any type), or NULL. */
const ch_test_write *ch_test_written(const ch_test *t, const char *stream_name,
                                     const char *type);

/* How many handler calls the last act made. */
size_t ch_test_handled(const ch_test *t);

/* Why the last act did not go well: what the first handler call that did
 * not return CH_OK gave set_error() (a CH_SKIP's reason in a run too), or
 * why ch_test_start() failed. "" when there is nothing to say. */
const char *ch_test_error(const ch_test *t);

/* True when a line the plugin logged in the last act contains `text`. */
bool ch_test_logged(const ch_test *t, const char *text);

/* ---- Then: what the store holds -------------------------------------------- */

/* The message at a global position (from 1), or NULL. */
const ch_message *ch_test_message(const ch_test *t, int64_t global_position);

/* The message at `position` of a stream, or NULL. */
const ch_message *ch_test_read(const ch_test *t, const char *stream_name, int64_t position);

/* The version of a stream: the position of its last message, -1 when empty. */
int64_t ch_test_version(const ch_test *t, const char *stream_name);

/* The global position of the last message of the store, 0 when empty. */
int64_t ch_test_head(const ch_test *t);

/* ---- JSON ------------------------------------------------------------------ */

/*
 * True when `value` has everything `expected_json` has: for an object, each
 * of its keys, with a value that has everything the expected one has (keys
 * not named are not looked at); anything else must be equal (integers and
 * reals by value). `{"traceId": "t-1", "reason": "x"}` checks two fields of
 * an object. A NULL value has nothing. Aborts when expected_json does not
 * parse.
 */
bool ch_test_json_has(const json_t *value, const char *expected_json);

#ifdef __cplusplus
}
#endif

#endif /* COMPHOST_TESTKIT_H */
