/*
 * guestbook.c - the SDK's example application.
 *
 * GET  /guestbook/          the form, and the last entries of this visitor
 * POST /guestbook/entries   sign: writes Signed to guestbook-<visitor's id>
 * GET  /guestbook/entries/:id  one entry, as JSON
 * POST /guestbook/login     log in under a nickname (a demonstration: no
 *                           password; the book's applications use
 *                           password_hash() and password_verify())
 *
 * It keeps nothing in memory between requests: what was signed is in the
 * message store, read back with read_stream().
 */
#include <stdio.h>
#include <string.h>

#include <comphost/web.h>

#define MAX_TEXT 500

static void layout_top(ch_ctx *ctx, const char *title)
{
  ch_web->html_raw(ctx, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                        "<title>");
  ch_web->html_txt(ctx, title);
  ch_web->html_raw(ctx, "</title>\n<link rel=\"stylesheet\" href=\"/static/comphost.css\">\n"
                        "</head>\n<body>\n<main>\n<h1>");
  ch_web->html_txt(ctx, title);
  ch_web->html_raw(ctx, "</h1>\n");
}

static void layout_bottom(ch_ctx *ctx)
{
  ch_web->html_raw(ctx, "</main>\n</body>\n</html>\n");
}

/* One <li> per Signed message of the stream. */
static int list_entry(void *arg, const ch_message *msg)
{
  ch_ctx *ctx = arg;

  ch_web->html_raw(ctx, "<li>");
  ch_web->html_txt(ctx, json_string_value(json_object_get(msg->data, "text")));
  ch_web->html_raw(ctx, " <a href=\"entries/");
  ch_web->html_url(ctx, msg->id);
  ch_web->html_raw(ctx, "\">(json)</a></li>\n");
  return 0;
}

static ch_result home(ch_ctx *ctx, void *state, const ch_request *req)
{
  char stream[128];
  int64_t n;

  (void)state;
  if (!req->user_id) {
    layout_top(ctx, "Guestbook");
    ch_web->html_raw(ctx, "<form method=\"post\" action=\"");
    ch_web->html_attr(ctx, req->mount);
    ch_web->html_raw(ctx, "/login\">\n<input type=\"hidden\" name=\"" CH_CSRF_FIELD
                          "\" value=\"");
    ch_web->html_attr(ctx, req->csrf_token);
    ch_web->html_raw(ctx, "\">\n<input name=\"nickname\" pattern=\"[A-Za-z0-9_-]{1,64}\""
                          " required>\n<button>Log in</button>\n</form>\n");
    layout_bottom(ctx);
    return CH_OK;
  }
  snprintf(stream, sizeof stream, "guestbook-%s", req->user_id);
  layout_top(ctx, "Guestbook");
  ch_web->html_raw(ctx, "<form method=\"post\" action=\"");
  ch_web->html_attr(ctx, req->mount);
  ch_web->html_raw(ctx, "/entries\">\n<input type=\"hidden\" name=\"" CH_CSRF_FIELD
                        "\" value=\"");
  ch_web->html_attr(ctx, req->csrf_token);
  ch_web->html_raw(ctx, "\">\n<input name=\"text\" maxlength=\"500\" required>\n"
                        "<button>Sign</button>\n</form>\n<ul>\n");
  n = ch_host->read_stream(ctx, stream, 0, 20, list_entry, ctx);
  if (n < 0) {
    ch_host->set_error(ctx, "reading %s: %s", stream, ch_host->last_error(ctx));
    return n == CH_RC_UNAVAILABLE ? CH_RETRY : CH_FAIL;
  }
  ch_web->html_raw(ctx, "</ul>\n");
  layout_bottom(ctx);
  return CH_OK;
}

static ch_result sign(ch_ctx *ctx, void *state, const ch_request *req)
{
  const char *text = json_string_value(json_object_get(req->body, "text"));
  char stream[128], back[160];
  json_t *data;
  int rc;

  (void)state;
  if (!req->user_id)
    return ch_web->error_page(ctx, 403, "Log in to sign.") == CH_RC_OK ? CH_OK : CH_FAIL;
  if (!text || !*text || strlen(text) > MAX_TEXT)
    return ch_web->error_page(ctx, 400, "Write 1 to 500 characters.") == CH_RC_OK
             ? CH_OK : CH_FAIL;
  snprintf(stream, sizeof stream, "guestbook-%s", req->user_id);
  data = json_pack("{s:s}", "text", text);
  if (!data)
    return CH_FAIL;
  /* the host adds the request's traceId and userId to the metadata */
  rc = ch_host->write(ctx, stream, "Signed", data, NULL, CH_VERSION_ANY, NULL);
  json_decref(data);
  if (rc != CH_RC_OK) {
    ch_host->set_error(ctx, "writing to %s: %s", stream, ch_host->last_error(ctx));
    return rc == CH_RC_UNAVAILABLE ? CH_RETRY : CH_FAIL;
  }
  /* post, redirect, get: a reload does not sign twice */
  snprintf(back, sizeof back, "%s/", req->mount);
  ch_web->redirect(ctx, 303, back);
  return CH_OK;
}

static ch_result login(ch_ctx *ctx, void *state, const ch_request *req)
{
  const char *nickname = json_string_value(json_object_get(req->body, "nickname"));
  char back[160];

  (void)state;
  if (ch_web->session_set_user(ctx, nickname) != CH_RC_OK)
    return ch_web->error_page(ctx, 400, "A nickname is 1 to 64 letters, digits, - or _.")
             == CH_RC_OK ? CH_OK : CH_FAIL;
  snprintf(back, sizeof back, "%s/", req->mount);
  ch_web->redirect(ctx, 303, back);
  return CH_OK;
}

typedef struct lookup {
  const char *id;
  json_t *found;
} lookup;

static int copy_message(void *arg, const ch_message *msg)
{
  lookup *l = arg;
  json_t **out = &l->found;

  if (!strcmp(msg->type, "Signed") && !strcmp(msg->id, l->id) && !*out)
    *out = json_pack("{s:s, s:O, s:I}", "id", msg->id, "data", msg->data, "position",
                     (json_int_t)msg->position);
  return 0;
}

static ch_result entry(ch_ctx *ctx, void *state, const ch_request *req)
{
  lookup l = { json_string_value(json_object_get(req->params, "id")), NULL };
  char stream[128];
  int64_t n;

  (void)state;
  if (!req->user_id)
    return ch_web->error_page(ctx, 403, NULL) == CH_RC_OK ? CH_OK : CH_FAIL;
  snprintf(stream, sizeof stream, "guestbook-%s", req->user_id);
  n = ch_host->read_stream(ctx, stream, 0, -1, copy_message, &l);
  if (n < 0) {
    json_decref(l.found);
    return CH_RETRY;
  }
  if (!l.found)
    return ch_web->error_page(ctx, 404, "No such entry.") == CH_RC_OK ? CH_OK : CH_FAIL;
  ch_web->json(ctx, 200, l.found);
  json_decref(l.found);
  return CH_OK;
}

static const ch_route routes[] = {
  { .method = "GET", .pattern = "/", .fn = home },
  { .method = "POST", .pattern = "/entries", .fn = sign },
  { .method = "GET", .pattern = "/entries/:id", .fn = entry },
  { .method = "POST", .pattern = "/login", .fn = login },
  {0},
};

static const ch_plugin_desc desc = CH_PLUGIN_DESC(
  .kind = CH_KIND_APPLICATION,
  .name = "guestbook",
  .version = "1.0.0",
  .description = "the SDK's example application: sign a guestbook",
  .routes = routes,
  .mount = "/guestbook");

CH_PLUGIN_DEFINE(desc)
