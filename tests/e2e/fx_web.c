#define _POSIX_C_SOURCE 200809L
/*
 * fx_web.c - an application for the serving tests: routes with parameters,
 * query, bodies, sessions, writes, failures and a crash.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <comphost/web.h>

/* GET /?q=...: a page with a form, the query echoed as text and attribute */
static ch_result page(ch_ctx *ctx, void *state, const ch_request *req)
{
  const char *q = json_string_value(json_object_get(req->query, "q"));

  (void)state;
  ch_web->html_raw(ctx, "<!DOCTYPE html><html><body><p id=\"mount\">");
  ch_web->html_txt(ctx, req->mount[0] ? req->mount : "/");
  ch_web->html_raw(ctx, "</p><p id=\"q\">");
  ch_web->html_txt(ctx, q);
  ch_web->html_raw(ctx, "</p><a title=\"");
  ch_web->html_attr(ctx, q);
  ch_web->html_raw(ctx, "\" href=\"?q=");
  ch_web->html_url(ctx, q);
  ch_web->html_raw(ctx, "\">again</a><p id=\"user\">");
  ch_web->html_txtf(ctx, "user %s", req->user_id ? req->user_id : "(none)");
  ch_web->html_raw(ctx, "</p><form method=\"post\" action=\"login\">"
                   "<input type=\"hidden\" name=\"" CH_CSRF_FIELD "\" value=\"");
  ch_web->html_attr(ctx, req->csrf_token);
  ch_web->html_raw(ctx, "\"></form></body></html>");
  return CH_OK;
}

/* GET /items/:id and /items/new: what the host parsed, as JSON */
static ch_result item(ch_ctx *ctx, void *state, const ch_request *req)
{
  json_t *o = json_pack("{s:s, s:s, s:O, s:O, s:s, s:s?}", "route", "item", "method",
                        req->method, "params", req->params, "query", req->query,
                        "traceId", req->trace_id, "userId", req->user_id);

  (void)state;
  ch_web->json(ctx, 200, o);
  json_decref(o);
  return CH_OK;
}

static ch_result item_new(ch_ctx *ctx, void *state, const ch_request *req)
{
  json_t *o = json_pack("{s:s}", "route", "new");

  (void)state;
  (void)req;
  ch_web->json(ctx, 200, o);
  json_decref(o);
  return CH_OK;
}

/* POST /items/:id: write the body to fxweb-<id>; answer with the body */
static ch_result item_post(ch_ctx *ctx, void *state, const ch_request *req)
{
  const char *id = json_string_value(json_object_get(req->params, "id"));
  char stream[128];
  int64_t pos = -1;
  json_t *o;
  int rc;

  (void)state;
  snprintf(stream, sizeof stream, "fxweb-%s", id);
  rc = ch_host->write(ctx, stream, "Posted", req->body, NULL, CH_VERSION_ANY, &pos);
  if (rc != CH_RC_OK) {
    ch_host->set_error(ctx, "write failed: %s", ch_host->last_error(ctx));
    return rc == CH_RC_UNAVAILABLE ? CH_RETRY : CH_FAIL;
  }
  o = json_pack("{s:O?, s:s, s:I}", "body", req->body, "contentType", req->content_type,
                "position", (json_int_t)pos);
  ch_web->json(ctx, 201, o);
  json_decref(o);
  return CH_OK;
}

static ch_result login(ch_ctx *ctx, void *state, const ch_request *req)
{
  const char *user = json_string_value(json_object_get(req->body, "user"));

  (void)state;
  if (!user || ch_web->session_set_user(ctx, user) != CH_RC_OK)
    return ch_web->error_page(ctx, 400, "no valid user") == CH_RC_OK ? CH_OK : CH_FAIL;
  ch_web->redirect(ctx, 303, req->mount[0] ? req->mount : "/");
  return CH_OK;
}

static ch_result logout(ch_ctx *ctx, void *state, const ch_request *req)
{
  (void)state;
  ch_web->session_clear(ctx);
  ch_web->redirect(ctx, 0, req->mount[0] ? req->mount : "/");
  return CH_OK;
}

static ch_result fail(ch_ctx *ctx, void *state, const ch_request *req)
{
  (void)state;
  (void)req;
  ch_web->html_txt(ctx, "half a page");
  ch_host->set_error(ctx, "the fixture fails on purpose");
  return CH_FAIL;
}

static ch_result crash(ch_ctx *ctx, void *state, const ch_request *req)
{
  (void)ctx;
  (void)state;
  (void)req;
  raise(SIGKILL);
  return CH_OK;
}

static ch_result pid(ch_ctx *ctx, void *state, const ch_request *req)
{
  json_t *o = json_pack("{s:i}", "pid", (int)getpid());

  (void)state;
  (void)req;
  ch_web->json(ctx, 200, o);
  json_decref(o);
  return CH_OK;
}

static ch_result slow(ch_ctx *ctx, void *state, const ch_request *req)
{
  struct timespec ts = { 1, 500000000L };

  (void)state;
  (void)req;
  while (nanosleep(&ts, &ts) != 0)
    ;
  ch_web->html_txt(ctx, "slow done");
  return CH_OK;
}

/* GET /password?p=...: hash it and check it */
static ch_result password(ch_ctx *ctx, void *state, const ch_request *req)
{
  const char *p = json_string_value(json_object_get(req->query, "p"));
  const char *h = json_string_value(json_object_get(req->query, "hash"));
  char hash[64] = "";
  json_t *o;

  (void)state;
  if (!h) {
    if (ch_web->password_hash(ctx, p, hash) != CH_RC_OK)
      return CH_FAIL;
    h = hash;
  }
  o = json_pack("{s:s, s:i, s:i}", "hash", h, "ok", ch_web->password_verify(ctx, p, h),
                "wrong", ch_web->password_verify(ctx, "wrong", h));
  ch_web->json(ctx, 200, o);
  json_decref(o);
  return CH_OK;
}

static const ch_route routes[] = {
  { .method = "GET", .pattern = "/", .fn = page },
  { .method = "GET", .pattern = "/items/:id", .fn = item },
  { .method = "GET", .pattern = "/items/new", .fn = item_new },
  { .method = "POST", .pattern = "/items/:id", .fn = item_post },
  { .method = "POST", .pattern = "/api/items/:id", .fn = item_post,
    .flags = CH_ROUTE_NO_CSRF },
  { .method = "POST", .pattern = "/login", .fn = login },
  { .method = "POST", .pattern = "/logout", .fn = logout },
  { .method = "GET", .pattern = "/fail", .fn = fail },
  { .method = "GET", .pattern = "/crash", .fn = crash },
  { .method = "GET", .pattern = "/pid", .fn = pid },
  { .method = "GET", .pattern = "/slow", .fn = slow },
  { .method = "GET", .pattern = "/password", .fn = password },
  { .pattern = NULL },
};

static const ch_plugin_desc desc = {
  .magic = CH_PLUGIN_MAGIC,
  .abi_major = CH_ABI_MAJOR,
  .abi_minor = CH_ABI_MINOR,
  .struct_size = sizeof(ch_plugin_desc),
  .kind = CH_KIND_APPLICATION,
  .name = "fx-web",
  .version = "1.0.0",
  .description = "serving test application",
  .routes = routes,
  .mount = "/fx",
};

CH_PLUGIN_DEFINE(desc)
