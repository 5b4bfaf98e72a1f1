/*
 * mdb.h - the Message DB client.
 *
 * One chd_mdb is one libpq connection to a message store with Message DB 1.3
 * installed. It is not thread-safe: use one per thread (the host uses one per
 * worker process). Messages are written and read through Message DB's own
 * functions; the reads that Message DB has no function for ("$all", the
 * operators' views below) select from message_store.messages, read only.
 *
 * Every query of the message store lives here: Message DB's functions, the
 * "$all" read, and the few that only the messages table answers (heads and
 * lags, a trace, a message's global position, the trace index).
 *
 * Errors: every function returns a chd_store_rc (store.h). On anything but
 * CHD_STORE_OK, chd_mdb_error() holds a one-line description that names
 * what failed; it stays valid until the next call on the same handle.
 *
 * Connection loss: a call that finds the connection broken returns
 * CHD_STORE_DISCONNECTED. chd_mdb_reconnect() then reconnects with backoff;
 * every call also tries one immediate reconnect first when the connection is
 * known to be broken, so a short outage costs one failed call.
 */
#ifndef CHD_MDB_H
#define CHD_MDB_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <libpq-fe.h>

#include <comphost/message.h>

#include "store.h"

typedef struct chd_mdb chd_mdb;

/* What a CHD_STORE_CONFLICT was about. */
typedef struct chd_mdb_conflict {
  const char *stream_name;
  int64_t expected_version;   /* what the writer expected (-1: empty stream) */
  int64_t actual_version;     /* the stream's version (-1: empty stream) */
} chd_mdb_conflict;

/*
 * A batch of messages read by one call. The messages and every string and
 * JSON value in them belong to the batch until chd_mdb_batch_release().
 * Messages are in global order (a stream's order is its global order too).
 */
typedef struct chd_mdb_batch {
  ch_message *messages;
  size_t count;
  /* NULL when every message decoded; else `count` entries: NULL for a
   * message that decoded, else why it could not be (data or metadata that
   * is not JSON jansson can decode, or larger than a bounded read allows).
   * Such a message still has its id, stream, type and positions, and empty
   * objects as data and metadata. */
  char **decode_errors;
  /*
   * A lazy batch (chd_mdb_take_read) leaves each message's data and metadata
   * NULL until chd_mdb_batch_decode() decodes them from here: 2 entries per
   * message, the text of its data and of its metadata (NULL for SQL NULL,
   * which decodes as {}). The array is the batch's; the texts belong to
   * whoever filled the batch (for a read, the result below). NULL in a batch
   * that was decoded when it was read.
   */
  const char **texts;
  PGresult *result_;          /* private: the strings point into it */
} chd_mdb_batch;

/* The parts of a message chd_mdb_batch_decode() decodes. */
#define CHD_MDB_DATA 1u
#define CHD_MDB_METADATA 2u

/* Options of a category read. Zero-initialise, then set what you need. */
typedef struct chd_mdb_category_opts {
  const char *correlation;    /* category of metadata.correlationStreamName, or NULL */
  int64_t group_member;       /* consumer group member, 0-based ... */
  int64_t group_size;         /* ... of group_size members; 0 = no group */
  int64_t max_bytes;          /* > 0: stop before the bytes of data and metadata
                                 pass this (at least one message is returned; one
                                 larger than this comes without them, with a
                                 decode error) */
} chd_mdb_category_opts;

/*
 * Create a client for `conninfo` (a libpq key=value string or a
 * postgresql:// URI) without connecting. Returns NULL only when out of memory
 * or when conninfo is NULL.
 */
chd_mdb *chd_mdb_new(const char *conninfo);

/* Close the connection and free the client. NULL is allowed. */
void chd_mdb_free(chd_mdb *db);

/*
 * Connect, set search_path to message_store, public, check that Message DB
 * 1.3 or later is installed, and prepare the statements.
 * Returns CHD_STORE_OK, CHD_STORE_INVALID (the connection string does not parse),
 * CHD_STORE_DISCONNECTED (no server answers, or it is starting, stopping or
 * full: worth trying again) or CHD_STORE_ERROR (the server refused us, as for a
 * wrong password or a database that does not exist, or there is no usable
 * Message DB there: trying again will not help).
 */
chd_store_rc chd_mdb_connect(chd_mdb *db);

/*
 * Reconnect after CHD_STORE_DISCONNECTED, waiting between attempts with
 * exponential backoff (100 ms doubling up to 5 s). Gives up after max_wait_ms
 * (a negative value waits forever) or when the interrupt flag becomes
 * non-zero.
 */
chd_store_rc chd_mdb_reconnect(chd_mdb *db, int max_wait_ms);

/* A flag that, once non-zero, stops chd_mdb_reconnect() (a signal flag). */
void chd_mdb_set_interrupt(chd_mdb *db, const volatile sig_atomic_t *flag);

/* A statement to run on every new session, after the version check (the
 * worker's subscriber locks, sublock.h); NULL for none. Returns 0, or -1
 * when out of memory. */
int chd_mdb_set_session_sql(chd_mdb *db, const char *sql);

/* The application_name of the next sessions, unless the connection string
 * names one ("comphost" by default): pg_stat_activity shows it. */
void chd_mdb_set_app_name(chd_mdb *db, const char *name);

/* The text of the last error, "" if none. */
const char *chd_mdb_error(const chd_mdb *db);

/* Details of the last CHD_STORE_CONFLICT, or NULL when the last call had none. */
const chd_mdb_conflict *chd_mdb_conflict_info(const chd_mdb *db);

/* A safe description of the server, "host:port/dbname" (no password). */
const char *chd_mdb_describe(const chd_mdb *db);

/* Put `text` as the handle's error and return rc: for the store's modules
 * that report through the connection they used (park.c). */
chd_store_rc chd_mdb_set_error(chd_mdb *db, chd_store_rc rc, const char *text);

/* The underlying connection: for plugins (store_db()) and the advisory
 * locks of sublock.h. NULL when not connected. */
PGconn *chd_mdb_conn(chd_mdb *db);

/* True when there is no connection or it is known to be broken. */
bool chd_mdb_broken(const chd_mdb *db);

/* Run a statement without rows (BEGIN, ROLLBACK, SAVEPOINT ...) on the
 * connection as it is: it does not reconnect, since an open transaction
 * would not survive that (CHD_STORE_DISCONNECTED instead). */
chd_store_rc chd_mdb_exec(chd_mdb *db, const char *sql);

/* COMMIT; CHD_STORE_ERROR also when the transaction had been aborted. */
chd_store_rc chd_mdb_commit(chd_mdb *db);

/*
 * Write one message with write_message(). `id` may be NULL (a random UUID is
 * used); `metadata` may be NULL (stored as NULL, read back as {}); `data` may
 * be NULL (stored as NULL). expected_version is CH_VERSION_ANY, -1 (stream
 * must be empty) or the version N the stream must be at.
 * On CHD_STORE_OK, *out_position (if not NULL) is the message's stream position.
 * A reused id gives CHD_STORE_DUPLICATE_ID; a version mismatch CHD_STORE_CONFLICT.
 */
chd_store_rc chd_mdb_write(chd_mdb *db, const char *stream_name, const char *id,
                         const char *type, const json_t *data,
                         const json_t *metadata, int64_t expected_version,
                         int64_t *out_position);

/* How chd_mdb_write_with() writes. Zero-initialise for chd_mdb_write()'s
 * way, then set what you need. With checked or commit the write belongs to
 * the transaction open on the connection: it never reconnects (the
 * transaction would not survive it), and a session without a transaction,
 * one that replaced the session that had begun it, gives
 * CHD_STORE_DISCONNECTED instead of a write committed on its own. */
typedef struct chd_mdb_write_opts {
  bool notify;    /* wake the listeners of the stream's category and of "$all"
                     (chd_mdb_listen()); delivered when the transaction
                     commits, at once outside one */
  bool checked;   /* for a write inside a transaction: look for the id and
                     the expected version first, so that a reused id or a
                     wrong version is answered (CHD_STORE_DUPLICATE_ID,
                     CHD_STORE_CONFLICT) without the error that would abort
                     the transaction. A writer of the same stream or id that
                     commits in between still gets the error, which aborts it */
  bool commit;    /* COMMIT the open transaction with the write, in the same
                     round trip (chd_pq_then_commit()); on any failure the
                     transaction is aborted or rolled back. Not with checked
                     (a write refused after looking would still commit) */
} chd_mdb_write_opts;

/* chd_mdb_write() with options; opts may be NULL. */
chd_store_rc chd_mdb_write_with(chd_mdb *db, const char *stream_name, const char *id,
                                const char *type, const json_t *data,
                                const json_t *metadata, int64_t expected_version,
                                const chd_mdb_write_opts *opts, int64_t *out_position);

/*
 * Read up to batch_size messages of one entity stream, from stream position
 * from_position (inclusive), in stream order. A stream with no message gives
 * an empty batch. batch_size -1 reads all.
 */
chd_store_rc chd_mdb_read_stream(chd_mdb *db, const char *stream_name,
                               int64_t from_position, int64_t batch_size,
                               chd_mdb_batch *out);

/*
 * Read up to batch_size messages of a category, from global position
 * from_global (inclusive), in global order. opts may be NULL.
 */
chd_store_rc chd_mdb_read_category(chd_mdb *db, const char *category,
                                 int64_t from_global, int64_t batch_size,
                                 const chd_mdb_category_opts *opts,
                                 chd_mdb_batch *out);

/* Read up to batch_size messages of every stream, from global position
 * from_global (inclusive), in global order ("$all"); max_bytes as in
 * chd_mdb_category_opts (0: no bound). */
chd_store_rc chd_mdb_read_all(chd_mdb *db, int64_t from_global,
                            int64_t batch_size, int64_t max_bytes, chd_mdb_batch *out);

/*
 * Read by name: "$all", a category (no '-') or an entity stream, with
 * `from` a global position for the first two and a stream position for the
 * last (the book's read()).
 */
chd_store_rc chd_mdb_read(chd_mdb *db, const char *stream_name, int64_t from,
                        int64_t batch_size, chd_mdb_batch *out);

/*
 * Read the last message of an entity stream, of any type when `type` is NULL.
 * out->count is 0 when there is none.
 */
chd_store_rc chd_mdb_read_last(chd_mdb *db, const char *stream_name,
                             const char *type, chd_mdb_batch *out);

/* The version of a stream (position of its last message), -1 when empty. */
chd_store_rc chd_mdb_stream_version(chd_mdb *db, const char *stream_name,
                                  int64_t *out_version);

/*
 * The server's current snapshot: *xmin, the oldest transaction still in
 * progress, and *xmax, one past the newest that had started (as
 * pg_current_snapshot() gives them). Every transaction below xmin is over.
 */
chd_store_rc chd_mdb_snapshot(chd_mdb *db, int64_t *xmin, int64_t *xmax);

/*
 * The head of `stream`, a category or "$all": the global position of its
 * last message, 0 when it has none.
 */
chd_store_rc chd_mdb_head(chd_mdb *db, const char *stream, int64_t *head);

/*
 * Count the messages of `stream` (a category or "$all") after global
 * position `position`, of one consumer group member's share when
 * group_size > 0, up to `bound`: *lag == bound means "at least".
 */
chd_store_rc chd_mdb_lag(chd_mdb *db, const char *stream, int64_t position,
                         int64_t group_member, int64_t group_size, int64_t bound,
                         int64_t *lag);

/* The global position of the message with id `id`, -1 when there is none. */
chd_store_rc chd_mdb_global_position(chd_mdb *db, const char *id, int64_t *out);

/* Milliseconds since the last message of `stream_name` (of `type`, or any
 * when NULL) was written; -1 when there is none. */
chd_store_rc chd_mdb_last_age(chd_mdb *db, const char *stream_name, const char *type,
                              int64_t *age_ms);

/*
 * Up to `limit` messages whose metadata.traceId is `trace_id`, in global
 * order. Fast with the trace index (chd_mdb_trace_index_create), else the
 * whole table is read.
 */
chd_store_rc chd_mdb_read_trace(chd_mdb *db, const char *trace_id, int64_t limit,
                                chd_mdb_batch *out);

/*
 * The trace index, message_store.messages_trace_id on metadata->>'traceId':
 * *state is 0 when it is not there, 1 when it is there and valid, -1 when a
 * build that failed left it invalid; *bytes its size. Creating and dropping
 * it (CONCURRENTLY: writers are not blocked) take the owner of the table.
 */
#define CHD_MDB_TRACE_INDEX "message_store.messages_trace_id"
chd_store_rc chd_mdb_trace_index(chd_mdb *db, int *state, int64_t *bytes);
chd_store_rc chd_mdb_trace_index_create(chd_mdb *db);
chd_store_rc chd_mdb_trace_index_drop(chd_mdb *db);

/*
 * Push wake-ups. A write of a message to category C notifies the channel
 * "mdb:C" (when C is longer than 59 bytes, "mdb:" and the md5 of C: a
 * channel name has at most 63) and the channel "mdb:$all", with an empty
 * payload, when its transaction commits. PostgreSQL folds identical
 * notifications of one transaction, so a transaction notifies once per
 * category it wrote to, however many messages. Two sources: the trigger
 * below (every writer), and writes with chd_mdb_write_opts.notify (the
 * host's own).
 *
 * Nothing may depend on a notification for correctness: one sent while a
 * listener is disconnected is lost. Listeners read on a timer as well.
 */

/* Listen for writes to `category` ("$all": to any), on this connection and
 * on every later one. Not connected, it listens at the next connect. */
chd_store_rc chd_mdb_listen(chd_mdb *db, const char *category);

/*
 * Wait up to timeout_ms for a notification of a category listened to, a
 * signal, or the connection's end. Notifications that came in meanwhile
 * (with the answers of other statements) are taken first, without waiting.
 * Without a usable connection, it sleeps. Returns how many notifications
 * of categories listened to it took (0: it timed out or was interrupted).
 */
int chd_mdb_wait(chd_mdb *db, int64_t timeout_ms);

/* Whether a write to `category` was notified since the last call for it;
 * the call clears it. */
bool chd_mdb_notified(chd_mdb *db, const char *category);

/*
 * The notify trigger, CHD_MDB_NOTIFY_TRIGGER on message_store.messages: a
 * statement-level AFTER INSERT trigger that notifies the categories the
 * statement wrote (from its transition table) and "$all". *present tells
 * whether it is there. Creating it (with its function, also named
 * CHD_MDB_NOTIFY_TRIGGER, in schema message_store) takes the owner of the
 * table; *created is false when it was there already.
 */
#define CHD_MDB_NOTIFY_TRIGGER "comphost_notify"
chd_store_rc chd_mdb_notify_trigger(chd_mdb *db, bool *present);
chd_store_rc chd_mdb_notify_trigger_create(chd_mdb *db, bool *created);

/* Try the session's exclusive advisory lock `key`: *got tells whether it
 * was taken (sublock.h). */
chd_store_rc chd_mdb_try_lock(chd_mdb *db, int64_t key, bool *got);

/*
 * A subscription's read in two steps, so that it can run while the reader
 * does something else: chd_mdb_send_read() sends it and returns without
 * waiting; chd_mdb_take_read() waits for the batch. `stream` is "$all", a
 * category or an entity stream, and `from` a global position for the first
 * two, a stream position for the last, as in chd_mdb_read(); opts (may be
 * NULL) as for chd_mdb_read_category() (for "$all" and a stream only
 * max_bytes applies, and "$all" takes no correlation or consumer group).
 * The batch is lazy: see chd_mdb_batch.texts.
 *
 * One read at a time on a handle, and between the two calls nothing else
 * may run on it: the host reads ahead on a connection of its own
 * (subscription.h). A reconnection forgets a read under way.
 * chd_mdb_send_read() returns CHD_STORE_INVALID when one is under way already.
 */
chd_store_rc chd_mdb_send_read(chd_mdb *db, const char *stream, int64_t from,
                               int64_t batch_size, const chd_mdb_category_opts *opts);
chd_store_rc chd_mdb_take_read(chd_mdb *db, chd_mdb_batch *out);

/* Is a read sent with chd_mdb_send_read() waiting to be taken? */
bool chd_mdb_read_pending(const chd_mdb *db);

/*
 * Decode the data and/or the metadata (`parts`: CHD_MDB_DATA,
 * CHD_MDB_METADATA) of message i of a batch, unless they are decoded
 * already. Returns NULL, or why the message cannot be decoded: its entry of
 * decode_errors, which stays, so that every later call on that message
 * returns it (its data and metadata are then {}, as in a batch decoded at
 * read). Only when out of memory does it return a reason it does not keep.
 * On a batch decoded at read it returns decode_errors[i] and decodes
 * nothing.
 */
const char *chd_mdb_batch_decode(chd_mdb_batch *b, size_t i, unsigned parts);

/* The index in b of message m (the same global position and id), or -1. */
ptrdiff_t chd_mdb_batch_find(const chd_mdb_batch *b, const ch_message *m);

/* Free a batch's contents and zero it. A zeroed batch is allowed. */
void chd_mdb_batch_release(chd_mdb_batch *batch);

/*
 * Decode one row (fields in the order id, stream_name, type, position,
 * global_position, data, metadata, time; data and metadata may be NULL) into
 * *m. Strings are borrowed from `fields`; data and metadata are new JSON
 * references the caller must json_decref().
 * Returns 0; -1 with a reason in err when the row is no message (no id,
 * stream or type, a bad position); -2 with a reason when it is a message
 * whose data or metadata cannot be decoded (then data and metadata are NULL
 * and the other fields are set).
 */
int chd_message_decode(ch_message *m, const char *const fields[8],
                       char *err, size_t errlen);

#endif /* CHD_MDB_H */
