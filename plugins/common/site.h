/*
 * site.h - what the book's applications share: the page layout (head,
 * navigation, the site's stylesheet), form pieces that carry the CSRF token
 * and show an error next to their field, and parameterized queries on the
 * view database. Header only, like view_sql.h: each application compiles its
 * own copy and stays a single file with one exported symbol.
 *
 * Every string that came from a request or a database goes through
 * ch_web->html_txt/html_attr/html_url; html_raw only ever gets markup
 * written here or in the plugin itself.
 *
 * Links between the applications use their default mount paths ("/",
 * "/record-viewing", "/register", "/auth", "/creators-portal", "/admin"), as
 * the book's templates do.
 */
#ifndef COMPHOST_PLUGINS_SITE_H
#define COMPHOST_PLUGINS_SITE_H

#include <ctype.h>
#include <stdbool.h>
#include <string.h>

#include <libpq-fe.h>

#include <comphost/plugin.h>
#include <comphost/web.h>

#define SITE_NAME "Video Tutorials"
#define SITE_LOG_IN "/auth/log-in"

/* A string field of a parsed form or JSON body, or of the query; NULL when
 * absent or not a string. */
static inline const char *site_field_value(const json_t *obj, const char *name)
{
  const json_t *v = obj && json_is_object(obj) ? json_object_get(obj, name) : NULL;

  return json_is_string(v) ? json_string_value(v) : NULL;
}

/* A route parameter (always present for a matched route). */
static inline const char *site_param(const ch_request *req, const char *name)
{
  return site_field_value(req->params, name);
}

/* True for a UUID as the host writes them: 8-4-4-4-12 hex digits. */
static inline bool site_is_uuid(const char *s)
{
  if (!s || strlen(s) != 36)
    return false;
  for (int i = 0; i < 36; i++) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-')
        return false;
    } else if (!isxdigit((unsigned char)s[i])) {
      return false;
    }
  }
  return true;
}

/*
 * The start of a page, up to and including <main>: the title, the
 * stylesheet, `head_extra` (markup of the plugin's own, e.g. a refresh; may
 * be NULL) and the navigation, which shows Log in/Register or Log out.
 */
static inline void site_begin(ch_ctx *ctx, const ch_request *req, const char *title,
                              const char *head_extra)
{
  ch_web->html_raw(ctx, "<!doctype html>\n<html lang=\"en\">\n<head>\n"
                        "<meta charset=\"utf-8\">\n"
                        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                        "<title>");
  ch_web->html_txt(ctx, title);
  ch_web->html_raw(ctx, " | " SITE_NAME "</title>\n"
                        "<link rel=\"stylesheet\" href=\"/site.css\">\n");
  if (head_extra)
    ch_web->html_raw(ctx, head_extra);
  ch_web->html_raw(ctx, "</head>\n<body>\n<header class=\"site-header\"><nav>"
                        "<a class=\"brand\" href=\"/\">" SITE_NAME "</a>"
                        "<a href=\"/creators-portal\">Creators Portal</a>"
                        "<a href=\"/admin\">Admin</a>");
  if (req->user_id)
    ch_web->html_raw(ctx, "<span class=\"who\">Logged in</span>"
                          "<a href=\"/auth/log-out\" id=\"log-out\">Log out</a>");
  else
    ch_web->html_raw(ctx, "<a href=\"/register\">Register</a>"
                          "<a href=\"" SITE_LOG_IN "\" id=\"log-in\">Log in</a>");
  ch_web->html_raw(ctx, "</nav></header>\n<main>\n");
}

static inline void site_end(ch_ctx *ctx)
{
  ch_web->html_raw(ctx, "\n</main>\n</body>\n</html>\n");
}

/* <h1>text</h1> */
static inline void site_h1(ch_ctx *ctx, const char *text)
{
  ch_web->html_raw(ctx, "<h1>");
  ch_web->html_txt(ctx, text);
  ch_web->html_raw(ctx, "</h1>\n");
}

/* The opening tag of a POST form to `action` (a path the plugin built, its
 * parts escaped with html_url), with the CSRF token inside. */
static inline void site_form(ch_ctx *ctx, const ch_request *req, const char *action,
                             const char *css_class)
{
  ch_web->html_raw(ctx, "<form method=\"post\" action=\"");
  ch_web->html_attr(ctx, action);
  ch_web->html_raw(ctx, "\"");
  if (css_class) {
    ch_web->html_raw(ctx, " class=\"");
    ch_web->html_attr(ctx, css_class);
    ch_web->html_raw(ctx, "\"");
  }
  ch_web->html_raw(ctx, ">\n<input type=\"hidden\" name=\"" CH_CSRF_FIELD "\" value=\"");
  ch_web->html_attr(ctx, req->csrf_token);
  ch_web->html_raw(ctx, "\">\n");
}

/*
 * A labelled input. `value` (may be NULL) is what the visitor typed before;
 * `error` (may be NULL) shows right under the field, which is then marked.
 * `extra` is markup of the plugin's own added to the <input> (e.g.
 * "required autocomplete=\"email\""), may be NULL.
 */
static inline void site_input(ch_ctx *ctx, const char *name, const char *label,
                              const char *type, const char *value, const char *error,
                              const char *extra)
{
  ch_web->html_raw(ctx, error ? "<div class=\"field has-error\">" : "<div class=\"field\">");
  ch_web->html_raw(ctx, "<label for=\"");
  ch_web->html_attr(ctx, name);
  ch_web->html_raw(ctx, "\">");
  ch_web->html_txt(ctx, label);
  ch_web->html_raw(ctx, "</label><input type=\"");
  ch_web->html_attr(ctx, type);
  ch_web->html_raw(ctx, "\" id=\"");
  ch_web->html_attr(ctx, name);
  ch_web->html_raw(ctx, "\" name=\"");
  ch_web->html_attr(ctx, name);
  ch_web->html_raw(ctx, "\"");
  if (value) {
    ch_web->html_raw(ctx, " value=\"");
    ch_web->html_attr(ctx, value);
    ch_web->html_raw(ctx, "\"");
  }
  if (extra) {
    ch_web->html_raw(ctx, " ");
    ch_web->html_raw(ctx, extra);
  }
  ch_web->html_raw(ctx, ">");
  if (error) {
    ch_web->html_raw(ctx, "<p class=\"field-error\" id=\"");
    ch_web->html_attr(ctx, name);
    ch_web->html_raw(ctx, "-error\">");
    ch_web->html_txt(ctx, error);
    ch_web->html_raw(ctx, "</p>");
  }
  ch_web->html_raw(ctx, "</div>\n");
}

/* <a href="prefix<segment, percent-encoded>">text</a> */
static inline void site_link(ch_ctx *ctx, const char *prefix, const char *segment,
                             const char *text)
{
  ch_web->html_raw(ctx, "<a href=\"");
  ch_web->html_attr(ctx, prefix);
  ch_web->html_url(ctx, segment);
  ch_web->html_raw(ctx, "\">");
  ch_web->html_txt(ctx, text);
  ch_web->html_raw(ctx, "</a>");
}

/*
 * Run a parameterized query on the view database. Returns the result (the
 * caller PQclear()s it), or NULL with the reason given to set_error: then
 * return *failure from the handler, CH_RETRY (503) when the connection is
 * gone, CH_FAIL (500) otherwise.
 */
static inline PGresult *site_query(ch_ctx *ctx, PGconn *conn, const char *sql, int nparams,
                                   const char *const *params, ch_result *failure)
{
  PGresult *res;

  if (!conn) {
    ch_host->set_error(ctx, "no database connection");
    *failure = CH_RETRY;
    return NULL;
  }
  res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(res) == PGRES_TUPLES_OK || PQresultStatus(res) == PGRES_COMMAND_OK)
    return res;
  ch_host->set_error(ctx, "%s", PQerrorMessage(conn));
  *failure = PQstatus(conn) == CONNECTION_OK ? CH_FAIL : CH_RETRY;
  PQclear(res);
  return NULL;
}

static inline PGconn *site_view(ch_ctx *ctx)
{
  return (PGconn *)ch_host->view_db(ctx);
}

/* A column of a row, NULL for SQL NULL. */
static inline const char *site_get(const PGresult *res, int row, int col)
{
  return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

#endif /* COMPHOST_PLUGINS_SITE_H */
