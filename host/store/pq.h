/*
 * pq.h - what the store's two clients (mdb.c, viewdb.c) share about a libpq
 * connection: connecting, a safe description of the server, one-line
 * errors, statements without rows, COMMIT, telling a refusal for good from
 * a server that does not answer yet, and reconnecting with backoff.
 *
 * A chd_pq is embedded in its client's handle and owned by it. It is not
 * thread-safe.
 */
#ifndef CHD_PQ_H
#define CHD_PQ_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

#include "store.h"

typedef struct chd_pq {
  char *conninfo;               /* owned */
  const char *what;             /* "message store", "view database": for messages */
  PGconn *conn;                 /* NULL when not connected */
  const volatile sig_atomic_t *interrupt;  /* stops chd_pq_reconnect(), or NULL */
  char app_name[64];            /* application_name unless the connection string
                                   sets one: "comphost" by default */
  char describe[256];           /* "user@host:port/dbname", never the password */
  char error[1024];             /* the last failure, one line; "" if none */
} chd_pq;

/* Set up pq for `conninfo` (copied) without connecting. Returns 0, or -1
 * when out of memory or conninfo is NULL. */
int chd_pq_init(chd_pq *pq, const char *conninfo, const char *what);

/* The application_name of the next connections (cut at 63 bytes), unless
 * the connection string or PGAPPNAME names one. */
void chd_pq_set_app_name(chd_pq *pq, const char *name);

/* Close the connection and free what chd_pq_init() allocated. */
void chd_pq_release(chd_pq *pq);

/*
 * Connect anew (closing any connection first) and install the log's notice
 * processor. Returns CHD_STORE_OK, CHD_STORE_INVALID (the connection string
 * does not parse), CHD_STORE_DISCONNECTED (no server answers, or it is
 * starting, stopping or full) or CHD_STORE_ERROR (refused for good).
 */
chd_store_rc chd_pq_connect(chd_pq *pq);

void chd_pq_disconnect(chd_pq *pq);

/* True when there is no connection or libpq knows it is broken. */
bool chd_pq_broken(const chd_pq *pq);

/*
 * Call connect(arg) until it returns anything but CHD_STORE_DISCONNECTED,
 * waiting 100 ms, doubling up to 5 s, between attempts (logged as warnings
 * when `warn`). Gives up after max_wait_ms (negative: never) with
 * CHD_STORE_DISCONNECTED, or with CHD_STORE_INTERRUPTED once pq->interrupt
 * is non-zero.
 */
chd_store_rc chd_pq_reconnect(chd_pq *pq, int max_wait_ms, bool warn,
                              chd_store_rc (*connect)(void *arg), void *arg);

/* Write a message into pq->error, on one line; returns rc. */
chd_store_rc chd_pq_fail(chd_pq *pq, chd_store_rc rc, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));

/* Put `prefix` and ": " before the error text; returns rc. */
chd_store_rc chd_pq_prefix(chd_pq *pq, chd_store_rc rc, const char *prefix);

/* The code and message of a failed result: CHD_STORE_DISCONNECTED ("lost
 * connection to <what> at <server> during <doing>") when the connection
 * broke, else CHD_STORE_ERROR ("<doing> failed: <server's message>"). */
chd_store_rc chd_pq_result_error(chd_pq *pq, const PGresult *res, const char *doing);

/* Run `sql`, which returns no rows that matter. */
chd_store_rc chd_pq_exec(chd_pq *pq, const char *sql);

/* Is a transaction open on the connection (begun, perhaps aborted)? False
 * also after a reconnection replaced the session that had begun it. */
bool chd_pq_in_transaction(const chd_pq *pq);

/* COMMIT; CHD_STORE_ERROR also when a failed statement had aborted the
 * transaction (PostgreSQL then rolls back), CHD_STORE_DISCONNECTED when no
 * transaction is open any more (lost with its session). */
chd_store_rc chd_pq_commit(chd_pq *pq);

/*
 * One statement and then COMMIT, sent together and answered in one round
 * trip (libpq's pipeline mode): `sql` with n text parameters, or the
 * prepared statement `prepared` when sql is NULL. *res gets the statement's
 * result, for the caller to read and PQclear() (NULL when none came).
 * Returns CHD_STORE_OK when the statement succeeded and the transaction
 * committed. Otherwise the transaction is aborted or rolled back (a ROLLBACK
 * after it is harmless): CHD_STORE_DISCONNECTED when the connection broke
 * or no transaction is open any more (nothing is sent then: the statement
 * would commit on its own), else CHD_STORE_ERROR, with "<doing> failed: ..."
 * (the statement's error) or the commit's error in pq->error.
 */
chd_store_rc chd_pq_then_commit(chd_pq *pq, const char *sql, const char *prepared, int n,
                                const char *const *params, const char *doing,
                                PGresult **res);

/* True when a libpq connection error says the server refused us for a
 * reason that asking again does not change (no such role or database, a
 * wrong password), not when it is starting, stopping or full. */
bool chd_pq_refused_for_good(const char *message);

/* Fold a libpq message onto one line: newlines become spaces, trailing
 * newlines and spaces go. */
void chd_pq_one_line(char *s);

#endif /* CHD_PQ_H */
