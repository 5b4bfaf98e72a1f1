/*
 * comphost/web.h - applications: plugins that answer HTTP requests (ABI 1.1).
 *
 * An application is a plugin of kind CH_KIND_APPLICATION. Instead of
 * subscriptions it declares routes (ch_plugin_desc.routes) under a mount
 * path (ch_plugin_desc.mount, or the instance's `mount =` setting). The host
 * serves every application that shares one `listen =` address as one site,
 * in worker processes like every other instance, and calls a route's handler
 * for each request that matches it, one call at a time.
 *
 * Before a handler is called, the host has already:
 * - matched the method and the path (404 for no path, 405 for a path whose
 *   routes take other methods; HEAD is served by the GET route);
 * - read the body (413 past [host] max_body_bytes, 64 KiB by default) and
 *   parsed it: application/x-www-form-urlencoded into a JSON object of
 *   strings, application/json into any JSON value (400 when malformed);
 * - checked the CSRF token of every POST, PUT, PATCH and DELETE (403, and
 *   the handler is not called, without a valid one), unless the route says
 *   CH_ROUTE_NO_CSRF;
 * - verified the session cookie (a tampered or expired one is a logged-out
 *   visitor) and made a new traceId for the request.
 *
 * The handler answers through ch_web (ch_host->web): a status, headers and a
 * body. Nothing is sent until the handler returns, so a handler may set the
 * status or headers after writing body text. What the handler returns:
 * - CH_OK: the response as built (status 200 unless set; an empty body is
 *   sent as it is);
 * - CH_FAIL: whatever was built is dropped and the client gets the host's
 *   500 page; the reason given with set_error() is logged with the traceId;
 * - CH_RETRY: likewise, a 503 page (e.g. the database is unavailable);
 * - CH_SKIP: likewise, a 400 page (the request makes no sense).
 * A handler that crashes takes its worker process down: the client gets a
 * closed connection, the supervisor starts the worker again, and the site's
 * other workers go on serving.
 *
 * Writing HTML: every string goes through html_txt() (text) or html_attr()
 * (an attribute value between double quotes), which escape it; only
 * html_raw() writes as is, for markup the plugin wrote itself. Do not pass
 * anything that came from a request or a database to html_raw().
 *
 * Messages: ch_host->write() called from a route handler writes with a new
 * random id, and the host puts the request's traceId and userId (when
 * logged in) into the metadata: into a copy of the plugin's metadata when it
 * lacks them (the plugin's values win), or into new metadata when the plugin
 * passes NULL. ch_host->view_db() is the view database, read with
 * parameterized SQL only (PQexecParams).
 *
 * Configuration (INI). An application instance takes three host keys:
 *   [register-users]
 *   listen = 127.0.0.1:3000   ; required: the site's address
 *   mount = /register         ; default: the descriptor's mount, else "/"
 *   workers = 2               ; processes serving the site (default 1; the
 *                             ; site takes the largest of its applications)
 * and the site's settings are in [host]:
 *   session_secret_file = /etc/comphost/session-secret  ; or session_secret,
 *                             ; or COMPHOST_SESSION_SECRET in the environment:
 *                             ; at least 32 characters, required with any
 *                             ; application, never printed
 *   cookie_secure = false     ; add Secure to the cookies (behind HTTPS)
 *   session_max_age_s = 604800
 *   max_body_bytes = 65536
 *   request_timeout_s = 30    ; a client that sends nothing for this long is
 *                             ; cut off
 *   static_dir = ../static    ; files served at /static/ (default: the host's
 *                             ; own stylesheet only, /static/comphost.css)
 * Applications that share `listen` must not share a mount path.
 *
 * Threads and processes: all the applications of a site live together in
 * each of the site's worker processes (init() runs once per process), and
 * each process calls one handler at a time. Keep no per-request data in
 * state between calls.
 *
 * Ownership follows plugin.h: the ch_request and everything it points to is
 * borrowed for the handler call; strings and JSON passed to ch_web stay the
 * plugin's (the host copies what it needs).
 */
#ifndef COMPHOST_WEB_H
#define COMPHOST_WEB_H

#include <comphost/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A request, as the host hands it to a route handler. Host-owned, read-only.
 * Fields are only ever appended; struct_size says how many there are. */
typedef struct ch_request {
  uint32_t struct_size;
  const char *method;       /* "GET", "POST", ... ("GET" for a HEAD) */
  const char *path;         /* the whole path, decoded, without the query:
                               "/creators-portal/videos/3f2..." */
  const char *mount;        /* the application's mount path without a
                               trailing '/': "" for "/", "/creators-portal" */
  const json_t *params;     /* object: each :name of the pattern -> its
                               decoded value (a string) */
  const json_t *query;      /* object: each query parameter -> its decoded
                               value (a string; the last one of a repeated
                               name wins); empty when none */
  const json_t *body;       /* form: object of strings (as query); JSON: the
                               parsed value; NULL for no body or another
                               content type (see raw_body) */
  const char *raw_body;     /* the body as received, NUL-terminated; "" if none */
  size_t raw_body_len;
  const char *content_type; /* without parameters, lower case; "" if none */
  const char *user_id;      /* the session's user id, NULL when logged out */
  const char *trace_id;     /* a new UUID per request (the book's
                               primeRequestContext) */
  const char *csrf_token;   /* put it in every form that POSTs:
                               <input type="hidden" name="_csrf" value="...">
                               (or send it as the X-CSRF-Token header) */
  const char *remote_addr;  /* the client's address, "" if unknown */
} ch_request;

/* The form field and the header that carry the CSRF token. */
#define CH_CSRF_FIELD "_csrf"
#define CH_CSRF_HEADER "X-CSRF-Token"

/*
 * A route handler. `state` is what init() stored. Build the response with
 * ch_web and return CH_OK, or CH_FAIL / CH_RETRY / CH_SKIP (see above) with
 * a reason through ch_host->set_error().
 */
typedef ch_result (*ch_route_fn)(ch_ctx *ctx, void *state, const ch_request *req);

/* Flags of a route. */
#define CH_ROUTE_NO_CSRF 0x1u     /* an unsafe method without the CSRF check
                                     (for clients that authenticate otherwise) */

/*
 * One entry of a route table. `pattern` is relative to the mount path and
 * starts with '/': "/" is the mount path itself (with or without a trailing
 * '/'), "/videos/:id" has one parameter, which matches one non-empty path
 * segment. Literal segments win over parameters, so "/videos/new" and
 * "/videos/:id" can both exist. A table ends with an entry whose pattern is
 * NULL ({0}); an application has at least one route, and at most 64.
 */
typedef struct ch_route {
  const char *method;       /* "GET", "POST", "PUT", "PATCH" or "DELETE" */
  const char *pattern;
  ch_route_fn fn;
  uintptr_t flags;          /* CH_ROUTE_* */
  void *reserved[2];
} ch_route;

/* The host's web functions: ch_host->web, present when
 * CH_HOST_HAS(ch_host, web) and ch_host->web is not NULL. Every function
 * takes the ctx of the running route handler; outside one they do nothing
 * and return CH_RC_INVALID. */
typedef struct ch_web_api {
  uint32_t struct_size;
  uint32_t reserved;

  /* The response's status (100 to 599; default 200). Returns CH_RC_OK or
   * CH_RC_INVALID. */
  int (*status)(ch_ctx *ctx, int status);

  /* Add a response header. Names are tokens, values have no CR, LF or NUL;
   * Content-Length, Set-Cookie and Transfer-Encoding are the host's. A
   * Content-Type replaces the one the writers set. Returns CH_RC_OK or
   * CH_RC_INVALID. */
  int (*header)(ch_ctx *ctx, const char *name, const char *value);

  /* A request header (case-insensitive name), or NULL. */
  const char *(*request_header)(ch_ctx *ctx, const char *name);

  /*
   * The HTML writer. Each call appends to the body and makes the content
   * type "text/html; charset=utf-8" unless a header set another.
   * html_txt: text; & < > " ' are escaped.
   * html_attr: an attribute value to go between double quotes; the same
   *   escapes, and newlines and tabs as character references.
   * html_url: a path segment or query value, percent-encoded (everything
   *   but A-Z a-z 0-9 - . _ ~), so it is safe inside an attribute too.
   * html_txtf: printf, then escaped as html_txt (the format's own text too).
   * html_raw: as is. Only for markup written by the plugin itself.
   * NULL strings write nothing. Out of memory makes the handler fail (500).
   */
  void (*html_txt)(ch_ctx *ctx, const char *s);
  void (*html_attr)(ch_ctx *ctx, const char *s);
  void (*html_url)(ch_ctx *ctx, const char *s);
  void (*html_txtf)(ch_ctx *ctx, const char *fmt, ...) CH_PRINTF(2, 3);
  void (*html_raw)(ch_ctx *ctx, const char *s);

  /* Replace the body with `value` as JSON (application/json) and set the
   * status (0: leave it). Returns CH_RC_OK or CH_RC_INVALID. */
  int (*json)(ch_ctx *ctx, int status, const json_t *value);

  /* Redirect: status 301, 302, 303, 307 or 308 (0: 302, as the book's
   * res.redirect) to `location`, a path ("/", "/auth/log-in") or an
   * absolute http(s) URL. Drops the body. Returns CH_RC_OK or CH_RC_INVALID. */
  int (*redirect)(ch_ctx *ctx, int status, const char *location);

  /* The host's own error page for `status` (400 to 599), with `text` as its
   * (escaped) message, or the status's reason phrase when NULL. Drops what
   * was written. Returns CH_RC_OK or CH_RC_INVALID. */
  int (*error_page)(ch_ctx *ctx, int status, const char *text);

  /* Log the visitor in as `user_id` ([A-Za-z0-9_-], 1 to 64 characters: a
   * UUID fits) or out: the response sets or clears the signed session
   * cookie. req->user_id does not change during this call. Returns CH_RC_OK
   * or CH_RC_INVALID. */
  int (*session_set_user)(ch_ctx *ctx, const char *user_id);
  int (*session_clear)(ch_ctx *ctx);

  /*
   * Passwords: bcrypt ($2b$, cost 10) through libcrypt; hashes of other
   * bcrypt implementations ($2a$, $2b$, $2y$, e.g. the book's bcrypt npm
   * package) verify too. password_hash writes the hash (60 characters and
   * a NUL) into out and returns CH_RC_OK, or CH_RC_ERROR (see last_error).
   * password_verify returns 1 when password matches hash, 0 when not (or
   * hash is no bcrypt hash), or CH_RC_ERROR. These two also work outside
   * route handlers (in components' handlers), and take ~50 ms each.
   */
  int (*password_hash)(ch_ctx *ctx, const char *password, char out[64]);
  int (*password_verify)(ch_ctx *ctx, const char *password, const char *hash);
  /* ABI 1.1 and later: append here */
} ch_web_api;

/* Shorthand: ch_web->html_txt(ctx, s). */
#define ch_web (ch_host->web)

#ifdef __cplusplus
}
#endif

#endif /* COMPHOST_WEB_H */
