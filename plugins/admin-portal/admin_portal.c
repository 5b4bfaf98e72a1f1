/*
 * admin_portal.c - the book's Admin Portal (chapter 13), behind the
 * authentication the book leaves out (p219): only the users named in the
 * `admins` setting see it; anyone else gets 403.
 *
 *   GET /admin                              -> /admin/users
 *   GET /admin/users                        admin_users, by email
 *   GET /admin/users/:id                    a user, their log-in events
 *                                           (authentication-<id>) and their
 *                                           viewings (viewing, data.userId)
 *   GET /admin/messages?before=N            every message, newest first, a
 *                                           page at a time
 *   GET /admin/correlated-messages/:traceId the messages of one traceId
 *   GET /admin/streams?before=N             admin_streams, most recent first
 *   GET /admin/streams/:name?from=N         one stream's messages
 *   GET /admin/subscriber-positions         where each subscriber stands:
 *                                           admin_subscriber_positions (the
 *                                           book's Read records) and the
 *                                           positions kept in the view
 *                                           database (comphost_positions)
 *
 * The views are read from the view database; the messages from the message
 * store, on the host's connection (store_db(), read-only queries, each one
 * parameterized). Nothing is written.
 *
 * `admins` lists emails or user ids, separated by commas or spaces: a
 * logged-in user is an administrator when their id is listed, or the email
 * user_credentials has for them (compared without case).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libpq-fe.h>

#include <comphost/plugin.h>
#include <comphost/web.h>

#include "site.h"

typedef struct admin {
  const char *admins;        /* the setting, borrowed */
  int page_size;
} admin;

/* The columns every message list reads, in this order. */
#define MESSAGE_COLUMNS \
  "global_position, position, stream_name, type, time::timestamp(0)::text," \
  " metadata->>'traceId', metadata->>'userId', data::text, metadata::text"
enum { M_GLOBAL, M_POSITION, M_STREAM, M_TYPE, M_TIME, M_TRACE, M_USER, M_DATA, M_META };

/* ---- access ---- */

/* True when `item` is one of the entries of `list` (commas or spaces
 * between them), without regard to case. */
static bool listed(const char *list, const char *item)
{
  size_t n = strlen(item);

  while (list && *list) {
    size_t len;
    list += strspn(list, ", \t");
    len = strcspn(list, ", \t");
    if (len == n && n > 0 && !strncasecmp(list, item, n))
      return true;
    list += len;
  }
  return false;
}

static void admin_nav(ch_ctx *ctx)
{
  ch_web->html_raw(ctx, "<nav class=\"subnav\">"
                        "<span><strong>Views</strong> <a href=\"/admin/users\">Users</a></span>"
                        "<span><strong>Messages</strong> <a href=\"/admin/messages\">Messages</a>"
                        " <a href=\"/admin/streams\">Streams</a></span>"
                        "<span><strong>System Health</strong>"
                        " <a href=\"/admin/subscriber-positions\">Subscriber positions</a></span>"
                        "</nav>\n");
}

static void forbidden(ch_ctx *ctx, const ch_request *req)
{
  site_begin(ctx, req, "Forbidden", NULL);
  site_h1(ctx, "Administrators only");
  if (req->user_id)
    ch_web->html_raw(ctx, "<p class=\"notice bad\" id=\"forbidden\">Your account is not an"
                          " administrator of this site.</p>\n");
  else
    ch_web->html_raw(ctx, "<p class=\"notice bad\" id=\"forbidden\">The Admin Portal is for"
                          " administrators. <a href=\"" SITE_LOG_IN "\">Log in</a> as"
                          " one.</p>\n");
  site_end(ctx);
  ch_web->status(ctx, 403);
}

/*
 * Let an administrator through: returns CH_OK and *allowed. When not
 * allowed, the 403 page is built. Anything else is a failure to return.
 */
static ch_result check_admin(ch_ctx *ctx, const admin *a, const ch_request *req, bool *allowed)
{
  const char *params[1] = { req->user_id };
  ch_result failure = CH_FAIL;
  PGresult *res;

  *allowed = false;
  if (req->user_id && listed(a->admins, req->user_id)) {
    *allowed = true;
    return CH_OK;
  }
  if (req->user_id) {
    res = site_query(ctx, site_view(ctx), "SELECT email FROM user_credentials WHERE id = $1",
                     1, params, &failure);
    if (!res)
      return failure;
    *allowed = PQntuples(res) == 1 && listed(a->admins, PQgetvalue(res, 0, 0));
    PQclear(res);
  }
  if (!*allowed)
    forbidden(ctx, req);
  return CH_OK;
}

/* Each handler starts with this: 403 (or a failure) unless an admin. */
#define ADMIN_ONLY(ctx, a, req)                         \
  do {                                                  \
    bool allowed_;                                      \
    ch_result r_ = check_admin(ctx, a, req, &allowed_); \
    if (r_ != CH_OK || !allowed_)                       \
      return r_;                                        \
  } while (0)

/* ---- the message store ---- */

static PGresult *store_query(ch_ctx *ctx, admin *a, const char *sql, int n,
                             const char *const *params, ch_result *failure)
{
  (void)a;
  return site_query(ctx, (PGconn *)ch_host->store_db(ctx), sql, n, params, failure);
}

/* ---- rendering ---- */

static void cell_text(ch_ctx *ctx, const char *s)
{
  ch_web->html_raw(ctx, "<td>");
  ch_web->html_txt(ctx, s);
  ch_web->html_raw(ctx, "</td>");
}

static void cell_link(ch_ctx *ctx, const char *prefix, const char *segment, const char *text)
{
  ch_web->html_raw(ctx, "<td>");
  if (segment)
    site_link(ctx, prefix, segment, text);
  ch_web->html_raw(ctx, "</td>");
}

/* A link to prefix<id> that shows the first 8 characters of id (a UUID),
 * the whole id in its title. */
static void short_link(ch_ctx *ctx, const char *prefix, const char *id)
{
  char shown[16];

  snprintf(shown, sizeof shown, "%.8s", id);
  ch_web->html_raw(ctx, "<a href=\"");
  ch_web->html_attr(ctx, prefix);
  ch_web->html_url(ctx, id);
  ch_web->html_raw(ctx, "\" title=\"");
  ch_web->html_attr(ctx, id);
  ch_web->html_raw(ctx, "\">");
  ch_web->html_txt(ctx, shown);
  ch_web->html_raw(ctx, strlen(id) > 8 ? "&hellip;</a>" : "</a>");
}

/* A table of messages (columns MESSAGE_COLUMNS). `in_stream` leaves out the
 * stream column and shows the stream position and the metadata instead. */
static void message_table(ch_ctx *ctx, const PGresult *res, int rows, bool in_stream)
{
  if (rows == 0) {
    ch_web->html_raw(ctx, "<p class=\"empty\">No messages.</p>\n");
    return;
  }
  ch_web->html_raw(ctx, "<table class=\"messages\">\n<thead><tr><th class=\"num\">#</th>");
  ch_web->html_raw(ctx, in_stream ? "<th class=\"num\">Position</th>" : "<th>Stream</th>");
  ch_web->html_raw(ctx, "<th>Type</th><th>Trace</th><th>User</th><th>Time (UTC)</th>"
                        "<th>Data</th>");
  if (in_stream)
    ch_web->html_raw(ctx, "<th>Metadata</th>");
  ch_web->html_raw(ctx, "</tr></thead>\n<tbody>\n");
  for (int i = 0; i < rows; i++) {
    const char *trace = site_get(res, i, M_TRACE), *user = site_get(res, i, M_USER);

    ch_web->html_raw(ctx, "<tr><td class=\"num\">");
    ch_web->html_txt(ctx, PQgetvalue(res, i, M_GLOBAL));
    ch_web->html_raw(ctx, "</td>");
    if (in_stream) {
      ch_web->html_raw(ctx, "<td class=\"num\">");
      ch_web->html_txt(ctx, PQgetvalue(res, i, M_POSITION));
      ch_web->html_raw(ctx, "</td>");
    } else {
      cell_link(ctx, "/admin/streams/", PQgetvalue(res, i, M_STREAM),
                PQgetvalue(res, i, M_STREAM));
    }
    cell_text(ctx, PQgetvalue(res, i, M_TYPE));
    ch_web->html_raw(ctx, "<td class=\"mono\">");
    if (trace)
      short_link(ctx, "/admin/correlated-messages/", trace);
    ch_web->html_raw(ctx, "</td><td class=\"mono\">");
    if (user)
      short_link(ctx, "/admin/users/", user);
    ch_web->html_raw(ctx, "</td>");
    cell_text(ctx, PQgetvalue(res, i, M_TIME));
    ch_web->html_raw(ctx, "<td><pre class=\"json\">");
    ch_web->html_txt(ctx, PQgetvalue(res, i, M_DATA));
    ch_web->html_raw(ctx, "</pre></td>");
    if (in_stream) {
      ch_web->html_raw(ctx, "<td><pre class=\"json\">");
      ch_web->html_txt(ctx, PQgetvalue(res, i, M_META));
      ch_web->html_raw(ctx, "</pre></td>");
    }
    ch_web->html_raw(ctx, "</tr>\n");
  }
  ch_web->html_raw(ctx, "</tbody>\n</table>\n");
}

/*
 * A positive integer from the query's `name`, or `fallback` when absent.
 * Returns false (and builds a 400) when present and not one.
 */
static bool query_int(ch_ctx *ctx, const ch_request *req, const char *name, long long fallback,
                      long long *out)
{
  const char *s = site_field_value(req->query, name);
  char *end;

  *out = fallback;
  if (!s)
    return true;
  errno = 0;
  *out = strtoll(s, &end, 10);
  if (!*s || *end || errno || *out < 0) {
    ch_web->error_page(ctx, 400, "Page positions are whole numbers, 0 or more.");
    return false;
  }
  return true;
}

/* ---- routes ---- */

static ch_result to_users(ch_ctx *ctx, void *state, const ch_request *req)
{
  ADMIN_ONLY(ctx, state, req);
  ch_web->redirect(ctx, 302, "/admin/users");
  return CH_OK;
}

/* usersIndex */
static ch_result users(ch_ctx *ctx, void *state, const ch_request *req)
{
  ch_result failure = CH_FAIL;
  PGresult *res;
  int n;

  ADMIN_ONLY(ctx, state, req);
  res = site_query(ctx, site_view(ctx),
                   "SELECT id, email, login_count, registration_email_sent FROM admin_users"
                   " ORDER BY email ASC NULLS LAST, id",
                   0, NULL, &failure);
  if (!res)
    return failure;
  site_begin(ctx, req, "Users", NULL);
  site_h1(ctx, "Users");
  admin_nav(ctx);
  n = PQntuples(res);
  if (n == 0) {
    ch_web->html_raw(ctx, "<p class=\"empty\">No users yet.</p>\n");
  } else {
    ch_web->html_raw(ctx, "<table id=\"users\">\n<thead><tr><th>Email</th><th>Id</th>"
                          "<th class=\"num\">Log-ins</th><th>Registration email sent</th>"
                          "</tr></thead>\n<tbody>\n");
    for (int i = 0; i < n; i++) {
      const char *email = site_get(res, i, 1);
      ch_web->html_raw(ctx, "<tr>");
      cell_link(ctx, "/admin/users/", PQgetvalue(res, i, 0), email ? email : "(no email yet)");
      ch_web->html_raw(ctx, "<td class=\"mono\">");
      ch_web->html_txt(ctx, PQgetvalue(res, i, 0));
      ch_web->html_raw(ctx, "</td><td class=\"num login-count\">");
      ch_web->html_txt(ctx, PQgetvalue(res, i, 2));
      ch_web->html_raw(ctx, "</td><td class=\"email-sent\">");
      ch_web->html_txt(ctx, !strcmp(PQgetvalue(res, i, 3), "t") ? "yes" : "no");
      ch_web->html_raw(ctx, "</td></tr>\n");
    }
    ch_web->html_raw(ctx, "</tbody>\n</table>\n");
  }
  site_end(ctx);
  PQclear(res);
  return CH_OK;
}

/* handleShowUser */
static ch_result user(ch_ctx *ctx, void *state, const ch_request *req)
{
  admin *a = state;
  const char *id = site_param(req, "id");
  char stream[96];
  const char *params[1] = { id }, *stream_params[1] = { stream };
  ch_result failure = CH_FAIL;
  PGresult *row, *logins, *viewings;

  ADMIN_ONLY(ctx, a, req);
  row = site_query(ctx, site_view(ctx),
                   "SELECT email, login_count, registration_email_sent FROM admin_users"
                   " WHERE id = $1",
                   1, params, &failure);
  if (!row)
    return failure;
  if (PQntuples(row) == 0) {
    PQclear(row);
    ch_web->error_page(ctx, 404, "No user has that id.");
    return CH_OK;
  }
  snprintf(stream, sizeof stream, "authentication-%s", id);
  logins = store_query(ctx, a,
                       "SELECT " MESSAGE_COLUMNS " FROM message_store.messages"
                       " WHERE stream_name = $1 ORDER BY global_position ASC",
                       1, stream_params, &failure);
  viewings = logins ? store_query(ctx, a,
                                  "SELECT " MESSAGE_COLUMNS " FROM message_store.messages"
                                  " WHERE message_store.category(stream_name) = 'viewing'"
                                  " AND data->>'userId' = $1 ORDER BY global_position ASC",
                                  1, params, &failure)
                    : NULL;
  if (!viewings) {
    PQclear(row);
    PQclear(logins);
    return failure;
  }
  site_begin(ctx, req, "User", NULL);
  site_h1(ctx, site_get(row, 0, 0) ? PQgetvalue(row, 0, 0) : id);
  admin_nav(ctx);
  ch_web->html_raw(ctx, "<dl class=\"facts\">\n<dt>Id</dt><dd><code>");
  ch_web->html_txt(ctx, id);
  ch_web->html_raw(ctx, "</code></dd>\n<dt>Email</dt><dd>");
  ch_web->html_txt(ctx, site_get(row, 0, 0));
  ch_web->html_raw(ctx, "</dd>\n<dt>Log-ins</dt><dd id=\"login-count\">");
  ch_web->html_txt(ctx, PQgetvalue(row, 0, 1));
  ch_web->html_raw(ctx, "</dd>\n<dt>Registration email sent</dt><dd id=\"email-sent\">");
  ch_web->html_txt(ctx, !strcmp(PQgetvalue(row, 0, 2), "t") ? "yes" : "no");
  ch_web->html_raw(ctx, "</dd>\n<dt>Streams</dt><dd>");
  snprintf(stream, sizeof stream, "identity-%s", id);
  site_link(ctx, "/admin/streams/", stream, stream);
  ch_web->html_raw(ctx, "<br>");
  snprintf(stream, sizeof stream, "authentication-%s", id);
  site_link(ctx, "/admin/streams/", stream, stream);
  ch_web->html_raw(ctx, "</dd>\n</dl>\n<h2>Log-in events</h2>\n<div id=\"login-events\">\n");
  message_table(ctx, logins, PQntuples(logins), false);
  ch_web->html_raw(ctx, "</div>\n<h2>Viewings</h2>\n<div id=\"viewing-events\">\n");
  message_table(ctx, viewings, PQntuples(viewings), false);
  ch_web->html_raw(ctx, "</div>\n");
  site_end(ctx);
  PQclear(row);
  PQclear(logins);
  PQclear(viewings);
  return CH_OK;
}

static ch_result messages(ch_ctx *ctx, void *state, const ch_request *req)
{
  admin *a = state;
  char before_text[24], limit_text[24];
  const char *params[2] = { before_text, limit_text };
  long long before;
  ch_result failure = CH_FAIL;
  PGresult *res;
  int n;

  ADMIN_ONLY(ctx, a, req);
  if (!query_int(ctx, req, "before", 0, &before))
    return CH_OK;
  /* before = 0: from the newest */
  snprintf(before_text, sizeof before_text, "%lld", before ? before : (long long)INT64_MAX);
  snprintf(limit_text, sizeof limit_text, "%d", a->page_size + 1);
  res = store_query(ctx, a,
                    "SELECT " MESSAGE_COLUMNS " FROM message_store.messages"
                    " WHERE global_position < $1::bigint ORDER BY global_position DESC"
                    " LIMIT $2::int",
                    2, params, &failure);
  if (!res)
    return failure;
  n = PQntuples(res);
  site_begin(ctx, req, "Messages", NULL);
  site_h1(ctx, "Messages");
  admin_nav(ctx);
  message_table(ctx, res, n > a->page_size ? a->page_size : n, false);
  ch_web->html_raw(ctx, "<p class=\"pager\">");
  if (before)
    ch_web->html_raw(ctx, "<a href=\"/admin/messages\">Newest</a>");
  if (n > a->page_size) {
    ch_web->html_raw(ctx, "<a id=\"older\" href=\"/admin/messages?before=");
    ch_web->html_url(ctx, PQgetvalue(res, a->page_size - 1, M_GLOBAL));
    ch_web->html_raw(ctx, "\">Older</a>");
  }
  ch_web->html_raw(ctx, "</p>\n");
  site_end(ctx);
  PQclear(res);
  return CH_OK;
}

/* correlatedMessages */
static ch_result correlated(ch_ctx *ctx, void *state, const ch_request *req)
{
  admin *a = state;
  const char *trace_id = site_param(req, "traceId");
  const char *params[1] = { trace_id };
  ch_result failure = CH_FAIL;
  PGresult *res;

  ADMIN_ONLY(ctx, a, req);
  /* no index on metadata->>'traceId': a scan, as in the book (p222) */
  res = store_query(ctx, a,
                    "SELECT " MESSAGE_COLUMNS " FROM message_store.messages"
                    " WHERE metadata->>'traceId' = $1 ORDER BY global_position ASC",
                    1, params, &failure);
  if (!res)
    return failure;
  site_begin(ctx, req, "Correlated Messages", NULL);
  site_h1(ctx, "Correlated Messages");
  admin_nav(ctx);
  ch_web->html_raw(ctx, "<p>Trace <code id=\"trace-id\">");
  ch_web->html_txt(ctx, trace_id);
  ch_web->html_raw(ctx, "</code>: <span id=\"message-count\">");
  ch_web->html_txtf(ctx, "%d", PQntuples(res));
  ch_web->html_raw(ctx, "</span> messages.</p>\n");
  message_table(ctx, res, PQntuples(res), false);
  site_end(ctx);
  PQclear(res);
  return CH_OK;
}

static ch_result streams(ch_ctx *ctx, void *state, const ch_request *req)
{
  admin *a = state;
  char before_text[24], limit_text[24];
  const char *params[2] = { before_text, limit_text };
  long long before;
  ch_result failure = CH_FAIL;
  PGresult *res;
  int n, shown;

  ADMIN_ONLY(ctx, a, req);
  if (!query_int(ctx, req, "before", 0, &before))
    return CH_OK;
  snprintf(before_text, sizeof before_text, "%lld", before ? before : (long long)INT64_MAX);
  snprintf(limit_text, sizeof limit_text, "%d", a->page_size + 1);
  res = site_query(ctx, site_view(ctx),
                   "SELECT stream_name, message_count, last_message_global_position"
                   " FROM admin_streams WHERE last_message_global_position < $1::bigint"
                   " ORDER BY last_message_global_position DESC LIMIT $2::int",
                   2, params, &failure);
  if (!res)
    return failure;
  n = PQntuples(res);
  shown = n > a->page_size ? a->page_size : n;
  site_begin(ctx, req, "Streams", NULL);
  site_h1(ctx, "Streams");
  admin_nav(ctx);
  if (n == 0) {
    ch_web->html_raw(ctx, "<p class=\"empty\">No streams.</p>\n");
  } else {
    ch_web->html_raw(ctx, "<table id=\"streams\">\n<thead><tr><th>Stream</th>"
                          "<th class=\"num\">Messages</th>"
                          "<th class=\"num\">Last global position</th></tr></thead>\n<tbody>\n");
    for (int i = 0; i < shown; i++) {
      ch_web->html_raw(ctx, "<tr>");
      cell_link(ctx, "/admin/streams/", PQgetvalue(res, i, 0), PQgetvalue(res, i, 0));
      ch_web->html_raw(ctx, "<td class=\"num\">");
      ch_web->html_txt(ctx, PQgetvalue(res, i, 1));
      ch_web->html_raw(ctx, "</td><td class=\"num\">");
      ch_web->html_txt(ctx, PQgetvalue(res, i, 2));
      ch_web->html_raw(ctx, "</td></tr>\n");
    }
    ch_web->html_raw(ctx, "</tbody>\n</table>\n");
  }
  ch_web->html_raw(ctx, "<p class=\"pager\">");
  if (before)
    ch_web->html_raw(ctx, "<a href=\"/admin/streams\">Most recent</a>");
  if (n > a->page_size) {
    ch_web->html_raw(ctx, "<a id=\"older\" href=\"/admin/streams?before=");
    ch_web->html_url(ctx, PQgetvalue(res, shown - 1, 2));
    ch_web->html_raw(ctx, "\">Older</a>");
  }
  ch_web->html_raw(ctx, "</p>\n");
  site_end(ctx);
  PQclear(res);
  return CH_OK;
}

static ch_result stream(ch_ctx *ctx, void *state, const ch_request *req)
{
  admin *a = state;
  const char *name = site_param(req, "name");
  char from_text[24], limit_text[24];
  const char *params[3] = { name, from_text, limit_text };
  long long from;
  ch_result failure = CH_FAIL;
  PGresult *res;
  int n, shown;

  ADMIN_ONLY(ctx, a, req);
  if (!query_int(ctx, req, "from", 0, &from))
    return CH_OK;
  snprintf(from_text, sizeof from_text, "%lld", from);
  snprintf(limit_text, sizeof limit_text, "%d", a->page_size + 1);
  res = store_query(ctx, a,
                    "SELECT " MESSAGE_COLUMNS " FROM message_store.messages"
                    " WHERE stream_name = $1 AND position >= $2::bigint ORDER BY position ASC"
                    " LIMIT $3::int",
                    3, params, &failure);
  if (!res)
    return failure;
  n = PQntuples(res);
  shown = n > a->page_size ? a->page_size : n;
  site_begin(ctx, req, name, NULL);
  site_h1(ctx, name);
  admin_nav(ctx);
  message_table(ctx, res, shown, true);
  ch_web->html_raw(ctx, "<p class=\"pager\">");
  if (from) {
    ch_web->html_raw(ctx, "<a href=\"/admin/streams/");
    ch_web->html_url(ctx, name);
    ch_web->html_raw(ctx, "\">First</a>");
  }
  if (n > a->page_size) {
    ch_web->html_raw(ctx, "<a id=\"later\" href=\"/admin/streams/");
    ch_web->html_url(ctx, name);
    ch_web->html_raw(ctx, "?from=");
    ch_web->html_url(ctx, PQgetvalue(res, a->page_size, M_POSITION));
    ch_web->html_raw(ctx, "\">Later</a>");
  }
  ch_web->html_raw(ctx, "</p>\n");
  site_end(ctx);
  PQclear(res);
  return CH_OK;
}

static void positions_table(ch_ctx *ctx, const PGresult *res, const char *id, const char *head,
                            const char *when)
{
  int n = PQntuples(res);

  if (n == 0) {
    ch_web->html_raw(ctx, "<p class=\"empty\">None.</p>\n");
    return;
  }
  ch_web->html_raw(ctx, "<table id=\"");
  ch_web->html_attr(ctx, id);
  ch_web->html_raw(ctx, "\">\n<thead><tr><th>Subscriber</th><th class=\"num\">Position</th>"
                        "<th class=\"num\">Written since</th><th>");
  ch_web->html_txt(ctx, when);
  ch_web->html_raw(ctx, "</th></tr></thead>\n<tbody>\n");
  for (int i = 0; i < n; i++) {
    long long behind = head ? strtoll(head, NULL, 10) - strtoll(PQgetvalue(res, i, 1), NULL, 10)
                            : 0;
    ch_web->html_raw(ctx, "<tr>");
    cell_text(ctx, PQgetvalue(res, i, 0));
    ch_web->html_raw(ctx, "<td class=\"num\">");
    ch_web->html_txt(ctx, PQgetvalue(res, i, 1));
    ch_web->html_raw(ctx, "</td><td class=\"num\">");
    if (head)
      ch_web->html_txtf(ctx, "%lld", behind > 0 ? behind : 0);
    ch_web->html_raw(ctx, "</td>");
    cell_text(ctx, PQgetvalue(res, i, 2));
    ch_web->html_raw(ctx, "</tr>\n");
  }
  ch_web->html_raw(ctx, "</tbody>\n</table>\n");
}

/* The positions kept in the view database: comphost_positions, which
 * exists once a subscription keeps its position there; else no rows. */
static PGresult *view_positions(ch_ctx *ctx, ch_result *failure)
{
  PGresult *res = site_query(ctx, site_view(ctx),
                             "SELECT to_regclass('comphost_positions') IS NOT NULL", 0, NULL,
                             failure);
  bool present;

  if (!res)
    return NULL;
  present = !strcmp(PQgetvalue(res, 0, 0), "t");
  PQclear(res);
  return site_query(ctx, site_view(ctx),
                    present ? "SELECT subscriber_id, position,"
                              " (updated_at AT TIME ZONE 'UTC')::timestamp(0)::text"
                              " FROM comphost_positions ORDER BY subscriber_id"
                            : "SELECT NULL, NULL, NULL WHERE false",
                    0, NULL, failure);
}

/* System Health: Component Read Positions (p208-209) */
static ch_result subscriber_positions(ch_ctx *ctx, void *state, const ch_request *req)
{
  admin *a = state;
  ch_result failure = CH_FAIL;
  PGresult *head, *reads, *kept;

  ADMIN_ONLY(ctx, a, req);
  head = store_query(ctx, a, "SELECT max(global_position)::text FROM message_store.messages",
                     0, NULL, &failure);
  if (!head)
    return failure;
  reads = site_query(ctx, site_view(ctx),
                     "SELECT subscriber_id, position, recorded_at::timestamp(0)::text"
                     " FROM admin_subscriber_positions ORDER BY subscriber_id",
                     0, NULL, &failure);
  kept = reads ? view_positions(ctx, &failure) : NULL;
  if (!kept) {
    PQclear(head);
    PQclear(reads);
    return failure;
  }
  site_begin(ctx, req, "Subscriber positions", NULL);
  site_h1(ctx, "Subscriber positions");
  admin_nav(ctx);
  ch_web->html_raw(ctx, "<p>The store's last global position: <strong id=\"head\">");
  ch_web->html_txt(ctx, site_get(head, 0, 0) ? PQgetvalue(head, 0, 0) : "none");
  ch_web->html_raw(ctx, "</strong>. <span class=\"muted\">&ldquo;Written since&rdquo; counts"
                        " the messages of every category past a position: a subscriber"
                        " of one category may have nothing left to read.</span></p>\n"
                        "<h2>Kept in the message store</h2>\n"
                        "<p class=\"muted\">The last <code>Read</code> record of each"
                        " <code>subscriberPosition-</code> stream.</p>\n");
  positions_table(ctx, reads, "read-positions", site_get(head, 0, 0), "Recorded (UTC)");
  ch_web->html_raw(ctx, "<h2>Kept in the view database</h2>\n"
                        "<p class=\"muted\">Subscriptions whose positions commit with their"
                        " view changes.</p>\n");
  positions_table(ctx, kept, "view-positions", site_get(head, 0, 0), "Updated (UTC)");
  site_end(ctx);
  PQclear(head);
  PQclear(reads);
  PQclear(kept);
  return CH_OK;
}

/* ---- lifecycle ---- */

static int init(ch_ctx *ctx, void **state)
{
  admin *a;

  *state = NULL;
  if (!CH_HOST_HAS(ch_host, store_db) || !ch_host->web || !site_view(ctx)) {
    ch_host->set_error(ctx, "admin-portal needs a host with applications and a view"
                            " database ([host] view_data)");
    return -1;
  }
  a = calloc(1, sizeof *a);
  if (!a) {
    ch_host->set_error(ctx, "out of memory");
    return -1;
  }
  a->admins = ch_host->config_get(ctx, "admins");
  a->page_size = (int)ch_host->config_int(ctx, "page_size");
  if (!a->admins || !*a->admins)
    ch_host->log(ctx, CH_LOG_WARN, "no admins are set: every visitor gets 403");
  *state = a;
  return 0;
}

static void destroy(ch_ctx *ctx, void *state)
{
  admin *a = state;
  (void)ctx;

  if (!a)
    return;
  free(a);
}

static const ch_config_key config_keys[] = {
  { "admins", CH_CONFIG_STRING, "", false,
    "who may use the portal: emails or user ids, separated by commas", { NULL, NULL } },
  { "page_size", CH_CONFIG_INT, "50", false, "messages and streams per page", { NULL, NULL } },
  {0},
};

static const ch_route routes[] = {
  { "GET", "/", to_users, 0, { NULL, NULL } },
  { "GET", "/users", users, 0, { NULL, NULL } },
  { "GET", "/users/:id", user, 0, { NULL, NULL } },
  { "GET", "/messages", messages, 0, { NULL, NULL } },
  { "GET", "/correlated-messages/:traceId", correlated, 0, { NULL, NULL } },
  { "GET", "/streams", streams, 0, { NULL, NULL } },
  { "GET", "/streams/:name", stream, 0, { NULL, NULL } },
  { "GET", "/subscriber-positions", subscriber_positions, 0, { NULL, NULL } },
  {0},
};

static const ch_plugin_desc admin_portal = CH_PLUGIN_DESC(
  .kind = CH_KIND_APPLICATION,
  .name = "admin-portal",
  .version = "1.0.0",
  .description = "the book's Admin Portal: users, messages, streams, positions",
  .config_keys = config_keys,
  .init = init,
  .destroy = destroy,
  .routes = routes,
  .mount = "/admin");

CH_PLUGIN_DEFINE(admin_portal)
