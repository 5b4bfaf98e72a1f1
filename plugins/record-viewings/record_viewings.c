/*
 * record_viewings.c - the book's record-viewings application (chapters 1
 * and 2).
 *
 *   POST /record-viewing/:videoId
 *
 * writes the event VideoViewed {userId, videoId} (metadata {traceId,
 * userId}) to viewing-<videoId> and redirects to "/". The application writes
 * the event itself: there is no command and no component (p35-36). A
 * visitor who is not logged in watches too; userId is then null.
 */
#include <stdio.h>
#include <string.h>

#include <comphost/plugin.h>
#include <comphost/web.h>

#include "site.h"

/* A video id: 1 to 64 of [A-Za-z0-9_-] (a UUID, or the book's 12345), so
 * that viewing-<id> is an entity stream of the viewing category. */
static bool valid_video_id(const char *id)
{
  size_t n = strlen(id);

  return n >= 1 && n <= 64 && strspn(id, "abcdefghijklmnopqrstuvwxyz"
                                         "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                         "0123456789_-") == n;
}

/* recordViewing */
static ch_result record_viewing(ch_ctx *ctx, void *state, const ch_request *req)
{
  const char *video_id = site_param(req, "videoId");
  char stream[80];
  json_t *data;
  int rc;
  (void)state;

  if (!video_id || !valid_video_id(video_id)) {
    ch_web->error_page(ctx, 400, "A video id is 1 to 64 letters, digits, '-' or '_'.");
    return CH_OK;
  }
  snprintf(stream, sizeof stream, "viewing-%s", video_id);
  data = json_pack("{s:o,s:s}", "userId", req->user_id ? json_string(req->user_id) : json_null(),
                   "videoId", video_id);
  if (!data) {
    ch_host->set_error(ctx, "out of memory");
    return CH_FAIL;
  }
  /* metadata: the host adds the request's traceId and userId */
  rc = ch_host->write(ctx, stream, "VideoViewed", data, NULL, CH_VERSION_ANY, NULL);
  json_decref(data);
  if (rc != CH_RC_OK) {
    ch_host->set_error(ctx, "writing VideoViewed to %s: %s", stream, ch_host->last_error(ctx));
    return rc == CH_RC_UNAVAILABLE ? CH_RETRY : CH_FAIL;
  }
  ch_web->redirect(ctx, 302, "/");
  return CH_OK;
}

static int init(ch_ctx *ctx, void **state)
{
  *state = NULL;
  if (!ch_host->web) {
    ch_host->set_error(ctx, "record-viewings needs a host with applications");
    return -1;
  }
  return 0;
}

static const ch_route routes[] = {
  { "POST", "/:videoId", record_viewing, 0, { NULL, NULL } },
  {0},
};

static const ch_plugin_desc record_viewings = CH_PLUGIN_DESC(
  .kind = CH_KIND_APPLICATION,
  .name = "record-viewings",
  .version = "1.0.0",
  .description = "the book's record-viewings: POST a viewing, VideoViewed is written",
  .init = init,
  .routes = routes,
  .mount = "/record-viewing");

CH_PLUGIN_DEFINE(record_viewings)
