/*
 * host_api.h - the context behind every host call a plugin makes.
 *
 * One ch_ctx per plugin instance (per worker process). It holds the
 * instance's connections and configuration and, while a handler runs, the
 * message being handled: that is what makes write() ids deterministic and
 * what log lines are tagged with.
 */
#ifndef CHD_HOST_API_H
#define CHD_HOST_API_H

#include <signal.h>
#include <stdbool.h>

#include <libpq-fe.h>

#include <comphost/plugin.h>

#include "config.h"
#include "loader.h"
#include "log.h"
#include "mdb.h"
#include "viewdb.h"

struct ch_ctx {
  const chd_config *cfg;
  const chd_instance_config *inst;
  const chd_plugin *plugin;
  chd_mdb *mdb;                 /* the message store */
  chd_mdb *reader;              /* a second message store connection, for reading
                                   ahead (sub_store.c): opened on first use,
                                   NULL until then; the worker frees it */
  chd_viewdb *view;             /* the view database, NULL if none */
  const volatile sig_atomic_t *stop;  /* set when the worker must stop */
  void *state;                  /* the plugin's, from init() */

  /* while a handler runs */
  const char *subscriber_id;
  const ch_message *current;
  chd_mdb_batch *batch;         /* the batch the handler's messages come from,
                                   which message_data() decodes (subscription.c
                                   sets it); NULL when none */
  char undecodable[512];        /* the handler asked for data or metadata that
                                   cannot be decoded: why; "" when not */
  unsigned write_index;         /* writes made so far in this handler call */
  bool in_store_tx;             /* writes go into the batch's store transaction */

  /* the batch's transactions (sub_store.c) */
  bool in_view_tx;              /* the view database's is open, */
  bool view_tx_async;           /* committing asynchronously */
  bool tx_position_set;         /* a position put in the transaction that holds */
  int64_t tx_position;          /* it, written with its COMMIT in one round trip */

  /* while a route handler runs (applications) */
  struct chd_web_call *web;     /* the request and its response */
  char log_extra[96];           /* "trace_id=..." for log lines */

  char error[1024];             /* set_error(): why the handler failed */
  char last_error[1024];        /* the last failed host call */
};

/* Zero ctx and fill in the instance. Connections are set by the caller. */
void chd_ctx_init(ch_ctx *ctx, const chd_config *cfg, const chd_instance_config *inst,
                  const chd_plugin *plugin);

/* Mark the start and the end of a handler call for `msg`. */
void chd_ctx_begin_message(ch_ctx *ctx, const char *subscriber_id, const ch_message *msg);
void chd_ctx_end_message(ch_ctx *ctx);

/* The log fields of what the ctx is doing now. */
chd_log_fields chd_ctx_log_fields(const ch_ctx *ctx);

/* Map a store result to a CH_RC_* code. */
int chd_rc_from_store(chd_store_rc rc);

#endif /* CHD_HOST_API_H */
