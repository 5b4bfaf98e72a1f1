/*
 * creators_portal.c - the book's Creators Portal (chapters 10 and 11), for
 * logged-in users only: anyone else is sent to log in.
 *
 *   GET  /creators-portal                              the dashboard: the
 *        user's videos (creators_portal_videos) and a form to publish one
 *   POST /creators-portal/publish-video                sourceUri (a form, or
 *        the book's JSON body): PublishVideo {ownerId, sourceUri, videoId}
 *        to videoPublishing:command-<videoId>, then to the video's page
 *   GET  /creators-portal/videos/:id                   a video, with the form
 *        that names it; "publishing" (and a reload) until the view has it
 *   POST /creators-portal/videos/:id/name              name: NameVideo
 *        {name, videoId} to videoPublishing:command-<videoId>, then to the
 *        operation's page
 *   GET  /creators-portal/video-operations/:traceId    "pending" and a reload
 *        every second until video_operations has the traceId's row; then the
 *        video's page, or the reason it failed
 *
 * The application does not validate names: video-publishing does, and
 * answers with VideoNamed or VideoNameRejected (p181-186); the outcome
 * reaches this page through the video-operations aggregator, keyed by the
 * traceId of the request that asked (p176-181).
 */
#include <stdio.h>
#include <string.h>

#include <libpq-fe.h>

#include <comphost/plugin.h>
#include <comphost/web.h>

#include "site.h"

#define MAX_SOURCE_URI 2048
#define RELOAD_HEAD "<meta http-equiv=\"refresh\" content=\"1\">\n"

/* ---- helpers ---- */

/* Logged-out visitors are sent to log in; true when that was done. */
static bool send_to_log_in(ch_ctx *ctx, const ch_request *req)
{
  if (req->user_id)
    return false;
  ch_web->redirect(ctx, 302, SITE_LOG_IN);
  return true;
}

static ch_result write_failed(ch_ctx *ctx, int rc, const char *type, const char *stream)
{
  ch_host->set_error(ctx, "writing %s to %s: %s", type, stream, ch_host->last_error(ctx));
  return rc == CH_RC_UNAVAILABLE ? CH_RETRY : CH_FAIL;
}

/* An http(s) URL of printable ASCII with a host. */
static bool valid_source_uri(const char *s)
{
  const char *rest;
  size_t n = strlen(s);

  if (n > MAX_SOURCE_URI)
    return false;
  if (!strncmp(s, "https://", 8))
    rest = s + 8;
  else if (!strncmp(s, "http://", 7))
    rest = s + 7;
  else
    return false;
  if (!*rest || *rest == '/')
    return false;
  for (const char *p = s; *p; p++)
    if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
      return false;
  return true;
}

/* ---- dashboard and publishing ---- */

static ch_result render_dashboard(ch_ctx *ctx, const ch_request *req, const char *source_uri,
                                  const char *error)
{
  const char *params[1] = { req->user_id };
  ch_result failure = CH_FAIL;
  char prefix[96], action[96];
  PGresult *res;
  int n;

  res = site_query(ctx, site_view(ctx),
                   "SELECT id, name, transcoded_uri FROM creators_portal_videos"
                   " WHERE owner_id = $1 ORDER BY name, id",
                   1, params, &failure);
  if (!res)
    return failure;
  snprintf(prefix, sizeof prefix, "%s/videos/", req->mount);
  snprintf(action, sizeof action, "%s/publish-video", req->mount);

  site_begin(ctx, req, "Creators Portal", NULL);
  site_h1(ctx, "Creators Portal");
  ch_web->html_raw(ctx, "<h2>Your videos</h2>\n");
  n = PQntuples(res);
  if (n == 0) {
    ch_web->html_raw(ctx, "<p class=\"empty\" id=\"no-videos\">No videos yet: publish one"
                          " below.</p>\n");
  } else {
    ch_web->html_raw(ctx, "<table id=\"videos\">\n<thead><tr><th>Name</th><th>Video</th>"
                          "</tr></thead>\n<tbody>\n");
    for (int i = 0; i < n; i++) {
      ch_web->html_raw(ctx, "<tr><td>");
      site_link(ctx, prefix, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
      ch_web->html_raw(ctx, "</td><td>");
      if (site_get(res, i, 2)) {
        ch_web->html_raw(ctx, "<a href=\"");
        ch_web->html_attr(ctx, PQgetvalue(res, i, 2));
        ch_web->html_raw(ctx, "\" rel=\"noopener noreferrer\">watch</a>");
      }
      ch_web->html_raw(ctx, "</td></tr>\n");
    }
    ch_web->html_raw(ctx, "</tbody>\n</table>\n");
  }
  PQclear(res);

  ch_web->html_raw(ctx, "<h2>Publish a video</h2>\n"
                        "<p class=\"muted\">The upload itself is not part of this site:"
                        " give the address of the video's file.</p>\n");
  site_form(ctx, req, action, "stacked");
  site_input(ctx, "sourceUri", "Source URL", "url", source_uri, error,
             "placeholder=\"https://example.com/video.mp4\"");
  ch_web->html_raw(ctx, "<button type=\"submit\" id=\"publish\">Publish</button>\n</form>\n");
  site_end(ctx);
  return CH_OK;
}

static ch_result dashboard(ch_ctx *ctx, void *state, const ch_request *req)
{
  (void)state;
  if (send_to_log_in(ctx, req))
    return CH_OK;
  return render_dashboard(ctx, req, NULL, NULL);
}

/* handlePublishVideo */
static ch_result publish_video(ch_ctx *ctx, void *state, const ch_request *req)
{
  const char *source_uri = site_field_value(req->body, "sourceUri");
  bool wants_json = !strcmp(req->content_type, "application/json");
  char video_id[37], stream[80], location[160];
  json_t *data;
  ch_result r;
  int rc;
  (void)state;

  if (send_to_log_in(ctx, req))
    return CH_OK;
  if (!source_uri || !valid_source_uri(source_uri)) {
    const char *error = !source_uri || !*source_uri
                          ? "Source URL can't be blank"
                          : "Source URL is not an http or https URL";
    if (wants_json) {
      json_t *body = json_pack("{s:{s:[s]}}", "errors", "sourceUri", error);
      ch_web->json(ctx, 400, body);
      json_decref(body);
      return CH_OK;
    }
    r = render_dashboard(ctx, req, source_uri, error);
    ch_web->status(ctx, 400);
    return r;
  }
  ch_host->uuid_v4(video_id);
  snprintf(stream, sizeof stream, "videoPublishing:command-%s", video_id);
  data = json_pack("{s:s,s:s,s:s}", "ownerId", req->user_id, "sourceUri", source_uri,
                   "videoId", video_id);
  if (!data) {
    ch_host->set_error(ctx, "out of memory");
    return CH_FAIL;
  }
  rc = ch_host->write(ctx, stream, "PublishVideo", data, NULL, CH_VERSION_ANY, NULL);
  json_decref(data);
  if (rc != CH_RC_OK)
    return write_failed(ctx, rc, "PublishVideo", stream);
  if (wants_json) {
    json_t *body = json_pack("{s:s,s:s}", "videoId", video_id, "traceId", req->trace_id);
    ch_web->json(ctx, 202, body);
    json_decref(body);
    return CH_OK;
  }
  snprintf(location, sizeof location, "%s/videos/%s", req->mount, video_id);
  ch_web->redirect(ctx, 303, location);
  return CH_OK;
}

/* ---- a video ---- */

static void write_reason(ch_ctx *ctx, const char *reason);

/* What the store says of a video the view does not have yet. */
typedef struct publishing {
  const char *owner_id;      /* the requester */
  bool requested;            /* a PublishVideo of the requester's */
  char failure[512];         /* VideoPublishingFailed's reason, "" if none */
  bool failed;
} publishing;

static int each_command(void *arg, const ch_message *msg)
{
  publishing *p = arg;
  const char *owner = json_string_value(json_object_get(msg->data, "ownerId"));

  if (!strcmp(msg->type, "PublishVideo") && owner && !strcmp(owner, p->owner_id))
    p->requested = true;
  return 0;
}

static int each_event(void *arg, const ch_message *msg)
{
  publishing *p = arg;
  const char *reason = json_string_value(json_object_get(msg->data, "reason"));

  if (!strcmp(msg->type, "VideoPublishingFailed")) {
    p->failed = true;
    snprintf(p->failure, sizeof p->failure, "%s", reason ? reason : "no reason given");
  }
  return 0;
}

/*
 * A video the view does not have: publishing failed (the reason), or it is
 * under way (a page that reloads), or it is no video of this user's (404).
 */
static ch_result show_unpublished(ch_ctx *ctx, const ch_request *req, const char *id)
{
  publishing p = { req->user_id, false, "", false };
  char stream[80];
  int64_t n;

  snprintf(stream, sizeof stream, "videoPublishing:command-%s", id);
  n = ch_host->read_stream(ctx, stream, 0, 100, each_command, &p);
  if (n >= 0 && p.requested) {
    snprintf(stream, sizeof stream, "videoPublishing-%s", id);
    n = ch_host->read_stream(ctx, stream, 0, 100, each_event, &p);
  }
  if (n < 0) {
    ch_host->set_error(ctx, "reading %s: %s", stream, ch_host->last_error(ctx));
    return n == CH_RC_UNAVAILABLE ? CH_RETRY : CH_FAIL;
  }
  if (!p.requested) {
    ch_web->error_page(ctx, 404, "You have no video with that id.");
    return CH_OK;
  }
  if (p.failed) {
    site_begin(ctx, req, "Publishing failed", NULL);
    site_h1(ctx, "Publishing failed");
    ch_web->html_raw(ctx, "<p class=\"notice bad\" id=\"failure\">");
    write_reason(ctx, p.failure);
    ch_web->html_raw(ctx, "</p>\n<p><a href=\"/creators-portal\">Back to your videos</a></p>\n");
  } else {
    site_begin(ctx, req, "Publishing", RELOAD_HEAD);
    site_h1(ctx, "Publishing your video");
    ch_web->html_raw(ctx, "<p class=\"notice pending\" id=\"pending\">Your video is being"
                          " published... one moment please. This page reloads by"
                          " itself.</p>\n");
  }
  site_end(ctx);
  return CH_OK;
}

/* handleShowVideo */
static ch_result show_video(ch_ctx *ctx, void *state, const ch_request *req)
{
  const char *id = site_param(req, "id");
  const char *params[1] = { id };
  ch_result failure = CH_FAIL, r = CH_OK;
  char action[160];
  PGresult *res;
  (void)state;

  if (send_to_log_in(ctx, req))
    return CH_OK;
  if (!site_is_uuid(id)) {
    ch_web->error_page(ctx, 404, "A video id is a UUID.");
    return CH_OK;
  }
  res = site_query(ctx, site_view(ctx),
                   "SELECT owner_id, name, source_uri, transcoded_uri FROM creators_portal_videos"
                   " WHERE id = $1",
                   1, params, &failure);
  if (!res)
    return failure;
  if (PQntuples(res) == 0 || !site_get(res, 0, 0)) {
    /* not published yet (a row without owner is a video named before its
       VideoPublished arrived) */
    PQclear(res);
    return show_unpublished(ctx, req, id);
  }
  if (strcmp(PQgetvalue(res, 0, 0), req->user_id) != 0) {
    PQclear(res);
    ch_web->error_page(ctx, 404, "You have no video with that id.");
    return CH_OK;
  }
  site_begin(ctx, req, PQgetvalue(res, 0, 1), NULL);
  ch_web->html_raw(ctx, "<p><a href=\"/creators-portal\">&larr; Your videos</a></p>\n"
                        "<h1 id=\"video-name\">");
  ch_web->html_txt(ctx, PQgetvalue(res, 0, 1));
  ch_web->html_raw(ctx, "</h1>\n<dl class=\"facts\">\n<dt>Video id</dt><dd><code>");
  ch_web->html_txt(ctx, id);
  ch_web->html_raw(ctx, "</code></dd>\n<dt>Source</dt><dd>");
  ch_web->html_txt(ctx, site_get(res, 0, 2));
  ch_web->html_raw(ctx, "</dd>\n<dt>Transcoded</dt><dd>");
  if (site_get(res, 0, 3)) {
    ch_web->html_raw(ctx, "<a id=\"transcoded\" href=\"");
    ch_web->html_attr(ctx, PQgetvalue(res, 0, 3));
    ch_web->html_raw(ctx, "\" rel=\"noopener noreferrer\">");
    ch_web->html_txt(ctx, PQgetvalue(res, 0, 3));
    ch_web->html_raw(ctx, "</a>");
  }
  ch_web->html_raw(ctx, "</dd>\n</dl>\n<h2>Name this video</h2>\n");
  snprintf(action, sizeof action, "%s/videos/%s/name", req->mount, id);
  site_form(ctx, req, action, "stacked");
  site_input(ctx, "name", "Name", "text", PQgetvalue(res, 0, 1), NULL, NULL);
  ch_web->html_raw(ctx, "<button type=\"submit\" id=\"rename\">Name it</button>\n</form>\n");
  site_end(ctx);
  PQclear(res);
  return r;
}

/* handleNameVideo */
static ch_result name_video(ch_ctx *ctx, void *state, const ch_request *req)
{
  const char *id = site_param(req, "id");
  const char *name = site_field_value(req->body, "name");
  const char *params[1] = { id };
  char stream[80], location[160];
  ch_result failure = CH_FAIL;
  PGresult *res;
  json_t *data;
  bool mine;
  int rc;
  (void)state;

  if (send_to_log_in(ctx, req))
    return CH_OK;
  if (!site_is_uuid(id)) {
    ch_web->error_page(ctx, 404, "A video id is a UUID.");
    return CH_OK;
  }
  res = site_query(ctx, site_view(ctx),
                   "SELECT 1 FROM creators_portal_videos WHERE id = $1 AND owner_id = $2",
                   2, (const char *const[]){ params[0], req->user_id }, &failure);
  if (!res)
    return failure;
  mine = PQntuples(res) == 1;
  PQclear(res);
  if (!mine) {
    ch_web->error_page(ctx, 404, "You have no video with that id.");
    return CH_OK;
  }
  /* no validation here: video-publishing decides (a blank name is rejected) */
  snprintf(stream, sizeof stream, "videoPublishing:command-%s", id);
  data = json_pack("{s:s,s:s}", "name", name ? name : "", "videoId", id);
  if (!data) {
    ch_host->set_error(ctx, "out of memory");
    return CH_FAIL;
  }
  rc = ch_host->write(ctx, stream, "NameVideo", data, NULL, CH_VERSION_ANY, NULL);
  json_decref(data);
  if (rc != CH_RC_OK)
    return write_failed(ctx, rc, "NameVideo", stream);
  snprintf(location, sizeof location, "%s/video-operations/%s", req->mount, req->trace_id);
  ch_web->redirect(ctx, 302, location);
  return CH_OK;
}

/*
 * A failure reason as a person reads it. video-publishing writes a refused
 * name as the book does, "ValidationError**{ \"name\": [ \"Can't be blank\" ]}":
 * that shows as "Name: Can't be blank." (one line per problem); any other
 * reason shows as it is.
 */
static void write_reason(ch_ctx *ctx, const char *reason)
{
  static const char prefix[] = "ValidationError**";
  json_t *fields = NULL, *problems;
  const char *field;

  if (!strncmp(reason, prefix, sizeof prefix - 1))
    fields = json_loads(reason + sizeof prefix - 1, 0, NULL);
  if (!json_is_object(fields) || json_object_size(fields) == 0) {
    json_decref(fields);
    ch_web->html_txt(ctx, reason);
    return;
  }
  json_object_foreach(fields, field, problems) {
    size_t i;
    json_t *problem;
    json_array_foreach(problems, i, problem) {
      if (!json_is_string(problem))
        continue;
      ch_web->html_raw(ctx, "<span class=\"problem\">");
      ch_web->html_txtf(ctx, "%c%s: %s.", toupper((unsigned char)field[0]), field + (field[0] != 0),
                        json_string_value(problem));
      ch_web->html_raw(ctx, "</span> ");
    }
  }
  json_decref(fields);
}

/* handleShowVideoOperation */
static ch_result show_operation(ch_ctx *ctx, void *state, const ch_request *req)
{
  const char *trace_id = site_param(req, "traceId");
  const char *params[1] = { trace_id };
  char location[160];
  ch_result failure = CH_FAIL;
  PGresult *res;
  (void)state;

  if (send_to_log_in(ctx, req))
    return CH_OK;
  if (!site_is_uuid(trace_id)) {
    ch_web->error_page(ctx, 404, "An operation's id is a UUID.");
    return CH_OK;
  }
  res = site_query(ctx, site_view(ctx),
                   "SELECT video_id, succeeded, failure_reason FROM video_operations"
                   " WHERE trace_id = $1 LIMIT 1",
                   1, params, &failure);
  if (!res)
    return failure;
  if (PQntuples(res) == 0) {
    site_begin(ctx, req, "Operation pending", RELOAD_HEAD);
    site_h1(ctx, "Operation pending");
    ch_web->html_raw(ctx, "<p class=\"notice pending\" id=\"pending\">Your operation is"
                          " pending... one moment please.</p>\n");
  } else if (!strcmp(PQgetvalue(res, 0, 1), "t")) {
    snprintf(location, sizeof location, "%s/videos/%s", req->mount, PQgetvalue(res, 0, 0));
    PQclear(res);
    ch_web->redirect(ctx, 302, location);
    return CH_OK;
  } else {
    site_begin(ctx, req, "Operation failed", NULL);
    site_h1(ctx, "Operation failed");
    ch_web->html_raw(ctx, "<p class=\"notice bad\" id=\"failure\">");
    write_reason(ctx, site_get(res, 0, 2) ? PQgetvalue(res, 0, 2) : "no reason given");
    ch_web->html_raw(ctx, "</p>\n<p>");
    snprintf(location, sizeof location, "%s/videos/", req->mount);
    site_link(ctx, location, PQgetvalue(res, 0, 0), "Back to the video");
    ch_web->html_raw(ctx, "</p>\n");
  }
  site_end(ctx);
  PQclear(res);
  return CH_OK;
}

static int init(ch_ctx *ctx, void **state)
{
  *state = NULL;
  if (!ch_host->web || !site_view(ctx)) {
    ch_host->set_error(ctx, "creators-portal needs a host with applications and a view"
                            " database ([host] view_data)");
    return -1;
  }
  return 0;
}

static const ch_route routes[] = {
  { "GET", "/", dashboard, 0, { NULL, NULL } },
  { "POST", "/publish-video", publish_video, 0, { NULL, NULL } },
  { "GET", "/videos/:id", show_video, 0, { NULL, NULL } },
  { "POST", "/videos/:id/name", name_video, 0, { NULL, NULL } },
  { "GET", "/video-operations/:traceId", show_operation, 0, { NULL, NULL } },
  {0},
};

static const ch_plugin_desc creators_portal = CH_PLUGIN_DESC(
  .kind = CH_KIND_APPLICATION,
  .name = "creators-portal",
  .version = "1.0.0",
  .description = "the book's Creators Portal: publish and name videos",
  .init = init,
  .routes = routes,
  .mount = "/creators-portal");

CH_PLUGIN_DEFINE(creators_portal)
