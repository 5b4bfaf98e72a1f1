/*
 * view_sql.h - what the book's aggregators share for writing their views:
 * the view connection, a statement runner that reports failures through
 * set_error, and a builder of PostgreSQL array literals for batch handlers
 * (unnest($1::text[]) and friends). Header only: each plugin compiles its own
 * copy and stays a single file with one exported symbol.
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
 * Text elements are quoted, with '"' and '\' escaped.
 */
typedef struct pg_array {
  char *text;
  size_t len, cap, count;
  bool failed;
} pg_array;

static inline void put(pg_array *a, const char *s, size_t n)
{
  if (a->failed)
    return;
  if (a->len + n + 1 > a->cap) {
    size_t cap = a->cap ? a->cap : 256;
    char *p;
    while (a->len + n + 1 > cap)
      cap *= 2;
    p = realloc(a->text, cap);
    if (!p) {
      a->failed = true;
      return;
    }
    a->text = p;
    a->cap = cap;
  }
  memcpy(a->text + a->len, s, n);
  a->len += n;
  a->text[a->len] = '\0';
}

static inline void add_text(pg_array *a, const char *s)
{
  put(a, a->count++ ? "," : "{", 1);
  if (!s) {
    put(a, "NULL", 4);
    return;
  }
  put(a, "\"", 1);
  while (*s) {
    size_t n = strcspn(s, "\"\\");
    put(a, s, n);
    s += n;
    if (*s) {
      put(a, "\\", 1);
      put(a, s++, 1);
    }
  }
  put(a, "\"", 1);
}

static inline void add_int(pg_array *a, int64_t v)
{
  char buf[24];
  int n = snprintf(buf, sizeof buf, "%" PRId64, v);

  put(a, a->count++ ? "," : "{", 1);
  put(a, buf, (size_t)n);
}

static inline void add_bool(pg_array *a, bool v)
{
  put(a, a->count++ ? "," : "{", 1);
  put(a, v ? "t" : "f", 1);
}

/* Close the literal; NULL when memory ran out. */
static inline const char *finish(pg_array *a)
{
  put(a, a->count ? "}" : "{}", a->count ? 1 : 2);
  return a->failed ? NULL : a->text;
}

#endif /* COMPHOST_PLUGINS_VIEW_SQL_H */
