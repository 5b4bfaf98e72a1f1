/*
 * view_sql.h - what the book's aggregators share for writing their views:
 * the view connection, a statement runner that reports failures through
 * set_error, and a builder of PostgreSQL array literals for batch handlers
 * (unnest($1::text[]) and friends), on strbuf.h. Header only: each plugin
 * compiles its own copy and stays a single file with one exported symbol.
 */
#ifndef COMPHOST_PLUGINS_VIEW_SQL_H
#define COMPHOST_PLUGINS_VIEW_SQL_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include <comphost/plugin.h>

#include "strbuf.h"

static inline PGconn *view(ch_ctx *ctx)
{
  return (PGconn *)ch_host->view_db(ctx);
}

/*
 * Run a statement; on failure say why through set_error: PostgreSQL's
 * primary message and SQLSTATE only. The DETAIL ("Failing row contains
 * (...)", "Key (id)=(...) already exists") carries row values, which do not
 * belong in logs and stop records, so it is left out.
 */
static inline ch_result exec(ch_ctx *ctx, const char *sql, int nparams, const char *const *params)
{
  PGresult *res = PQexecParams(view(ctx), sql, nparams, NULL, params, NULL, NULL, 0);
  ch_result r = CH_OK;

  if (PQresultStatus(res) != PGRES_COMMAND_OK) {
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

    if (primary)
      ch_host->set_error(ctx, "%s (SQLSTATE %s)", primary, state ? state : "unknown");
    else {   /* no server error: libpq's own message, which holds no row values */
      const char *m = PQerrorMessage(view(ctx));
      int n = (int)strcspn(m, "\n");
      ch_host->set_error(ctx, "%.*s", n, m);
    }
    r = CH_FAIL;
  }
  PQclear(res);
  return r;
}

/*
 * A PostgreSQL array literal, built one element at a time: {"a","b",NULL}.
 * Text elements are quoted, with '"' and '\' escaped. Start it zeroed;
 * pg_array_release() frees it.
 */
typedef struct pg_array {
  strbuf s;
  size_t count;
} pg_array;

/* The separator before the next element: "{" first, "," after. */
static inline void next_element(pg_array *a)
{
  strbuf_put(&a->s, a->count++ ? "," : "{", 1);
}

static inline void add_text(pg_array *a, const char *s)
{
  next_element(a);
  if (!s) {
    strbuf_puts(&a->s, "NULL");
    return;
  }
  strbuf_put(&a->s, "\"", 1);
  while (*s) {
    size_t n = strcspn(s, "\"\\");
    strbuf_put(&a->s, s, n);
    s += n;
    if (*s) {
      strbuf_put(&a->s, "\\", 1);
      strbuf_put(&a->s, s++, 1);
    }
  }
  strbuf_put(&a->s, "\"", 1);
}

static inline void add_int(pg_array *a, int64_t v)
{
  next_element(a);
  strbuf_putf(&a->s, "%" PRId64, v);
}

static inline void add_bool(pg_array *a, bool v)
{
  next_element(a);
  strbuf_put(&a->s, v ? "t" : "f", 1);
}

/* Close the literal; NULL when memory ran out. The text stays a's. */
static inline const char *finish(pg_array *a)
{
  strbuf_puts(&a->s, a->count ? "}" : "{}");
  return a->s.failed ? NULL : a->s.text;
}

static inline void pg_array_release(pg_array *a)
{
  strbuf_release(&a->s);
  a->count = 0;
}

#endif /* COMPHOST_PLUGINS_VIEW_SQL_H */
