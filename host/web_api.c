/* web_api.c - the web functions route handlers call (ch_host->web). */
#include "web_server.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "host_api.h"
#include "web_session.h"

#define HTML_TYPE "text/html; charset=utf-8"

static chd_web_call *call_of(ch_ctx *ctx)
{
  return ctx ? ctx->web : NULL;
}

static int invalid(ch_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int invalid(ch_ctx *ctx, const char *fmt, ...)
{
  va_list ap;

  if (ctx) {
    va_start(ap, fmt);
    vsnprintf(ctx->last_error, sizeof ctx->last_error, fmt, ap);
    va_end(ap);
  }
  return CH_RC_INVALID;
}

static int web_status(ch_ctx *ctx, int status)
{
  chd_web_call *c = call_of(ctx);

  if (!c)
    return invalid(ctx, "status(): not in a route handler");
  if (status < 100 || status > 599)
    return invalid(ctx, "status(): %d is no HTTP status", status);
  c->status = status;
  return CH_RC_OK;
}

static bool token(const char *s)
{
  if (!s || !*s)
    return false;
  for (; *s; s++)
    if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
      return false;
  return true;
}

static int web_header(ch_ctx *ctx, const char *name, const char *value)
{
  chd_web_call *c = call_of(ctx);
  chd_web_header *h;

  if (!c)
    return invalid(ctx, "header(): not in a route handler");
  if (!token(name) || !value || strpbrk(value, "\r\n"))
    return invalid(ctx, "header(): '%s' is no header name, or its value has a line break",
                   name ? name : "");
  if (!strcasecmp(name, "Content-Length") || !strcasecmp(name, "Set-Cookie") ||
      !strcasecmp(name, "Transfer-Encoding"))
    return invalid(ctx, "header(): %s is set by the host", name);
  h = realloc(c->headers, (c->header_count + 1) * sizeof *h);
  if (!h) {
    c->failed = true;
    return CH_RC_ERROR;
  }
  c->headers = h;
  h = &c->headers[c->header_count];
  h->name = strdup(name);
  h->value = strdup(value);
  if (!h->name || !h->value) {
    free(h->name);
    free(h->value);
    c->failed = true;
    return CH_RC_ERROR;
  }
  c->header_count++;
  if (!strcasecmp(name, "Content-Type"))
    c->content_type_set = true;
  return CH_RC_OK;
}

static const char *web_request_header(ch_ctx *ctx, const char *name)
{
  chd_web_call *c = call_of(ctx);

  if (!c || !name)
    return NULL;
  return MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, name);
}

/* The body is HTML from now on. */
static chd_buf *html_body(ch_ctx *ctx)
{
  chd_web_call *c = call_of(ctx);

  if (!c)
    return NULL;
  c->content_type = HTML_TYPE;
  return &c->body;
}

static void web_html_txt(ch_ctx *ctx, const char *s)
{
  chd_buf *b = html_body(ctx);

  if (b)
    chd_html_txt(b, s);
}

static void web_html_attr(ch_ctx *ctx, const char *s)
{
  chd_buf *b = html_body(ctx);

  if (b)
    chd_html_attr(b, s);
}

static void web_html_url(ch_ctx *ctx, const char *s)
{
  chd_buf *b = html_body(ctx);

  if (b)
    chd_html_url(b, s);
}

static void web_html_raw(ch_ctx *ctx, const char *s)
{
  chd_buf *b = html_body(ctx);

  if (b)
    chd_buf_adds(b, s);
}

static void web_html_txtf(ch_ctx *ctx, const char *fmt, ...)
{
  chd_buf *b = html_body(ctx), tmp = { 0 };
  va_list ap;

  if (!b || !fmt)
    return;
  va_start(ap, fmt);
  chd_buf_vaddf(&tmp, fmt, ap);
  va_end(ap);
  if (tmp.failed)
    b->failed = true;
  else
    chd_html_txt(b, tmp.data);
  chd_buf_free(&tmp);
}

static int web_json(ch_ctx *ctx, int status, const json_t *value)
{
  chd_web_call *c = call_of(ctx);
  char *text;

  if (!c)
    return invalid(ctx, "json(): not in a route handler");
  if (!value || (status && (status < 100 || status > 599)))
    return invalid(ctx, "json(): no value, or %d is no HTTP status", status);
  text = json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT);
  if (!text) {
    c->failed = true;
    return CH_RC_ERROR;
  }
  chd_buf_reset(&c->body);
  chd_buf_adds(&c->body, text);
  chd_buf_adds(&c->body, "\n");
  free(text);
  c->content_type = "application/json";
  if (status)
    c->status = status;
  return CH_RC_OK;
}

static bool location_valid(const char *s)
{
  if (!s || !*s || strpbrk(s, "\r\n") || strlen(s) > 2048)
    return false;
  for (const char *p = s; *p; p++)
    if ((unsigned char)*p < 0x21 || *p == 0x7f)
      return false;
  if (s[0] == '/')
    return s[1] != '/' && s[1] != '\\';   /* "//host" would leave the site */
  return !strncmp(s, "http://", 7) || !strncmp(s, "https://", 8);
}

static int web_redirect(ch_ctx *ctx, int status, const char *location)
{
  chd_web_call *c = call_of(ctx);
  char *loc;

  if (!c)
    return invalid(ctx, "redirect(): not in a route handler");
  if (status == 0)
    status = 302;
  if (status != 301 && status != 302 && status != 303 && status != 307 && status != 308)
    return invalid(ctx, "redirect(): %d is no redirect status", status);
  if (!location_valid(location))
    return invalid(ctx, "redirect(): '%s' is not a path or an http(s) URL",
                   location ? location : "");
  if (!(loc = strdup(location))) {
    c->failed = true;
    return CH_RC_ERROR;
  }
  free(c->location);
  c->location = loc;
  c->status = status;
  chd_buf_reset(&c->body);
  c->content_type = NULL;
  return CH_RC_OK;
}

static int web_error_page(ch_ctx *ctx, int status, const char *text)
{
  chd_web_call *c = call_of(ctx);

  if (!c)
    return invalid(ctx, "error_page(): not in a route handler");
  if (status < 400 || status > 599)
    return invalid(ctx, "error_page(): %d is no error status", status);
  chd_web_error_body(c, status, text);
  return CH_RC_OK;
}

static int web_session_set_user(ch_ctx *ctx, const char *user_id)
{
  chd_web_call *c = call_of(ctx);

  if (!c)
    return invalid(ctx, "session_set_user(): not in a route handler");
  if (!chd_user_id_valid(user_id))
    return invalid(ctx, "session_set_user(): a user id is 1 to %d characters of"
                   " A-Z a-z 0-9 - _", CHD_USER_ID_MAX);
  c->session_op = 1;
  snprintf(c->session_user, sizeof c->session_user, "%s", user_id);
  return CH_RC_OK;
}

static int web_session_clear(ch_ctx *ctx)
{
  chd_web_call *c = call_of(ctx);

  if (!c)
    return invalid(ctx, "session_clear(): not in a route handler");
  c->session_op = 2;
  c->session_user[0] = '\0';
  return CH_RC_OK;
}

static int web_password_hash(ch_ctx *ctx, const char *password, char out[64])
{
  char err[256];

  if (chd_password_hash(password, out, err, sizeof err) != 0) {
    if (ctx)
      snprintf(ctx->last_error, sizeof ctx->last_error, "%s", err);
    return CH_RC_ERROR;
  }
  return CH_RC_OK;
}

static int web_password_verify(ch_ctx *ctx, const char *password, const char *hash)
{
  char err[256];
  int rc = chd_password_verify(password, hash, err, sizeof err);

  if (rc < 0) {
    if (ctx)
      snprintf(ctx->last_error, sizeof ctx->last_error, "%s", err);
    return CH_RC_ERROR;
  }
  return rc;
}

const ch_web_api chd_web_api = {
  .struct_size = sizeof(ch_web_api),
  .status = web_status,
  .header = web_header,
  .request_header = web_request_header,
  .html_txt = web_html_txt,
  .html_attr = web_html_attr,
  .html_url = web_html_url,
  .html_txtf = web_html_txtf,
  .html_raw = web_html_raw,
  .json = web_json,
  .redirect = web_redirect,
  .error_page = web_error_page,
  .session_set_user = web_session_set_user,
  .session_clear = web_session_clear,
  .password_hash = web_password_hash,
  .password_verify = web_password_verify,
};
