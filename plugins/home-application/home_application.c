/*
 * home_application.c - the book's home application (chapters 1 and 4).
 *
 *   GET /          the home page: how many videos were watched (the `home`
 *                  row of the `pages` view, kept by the home-page
 *                  aggregator) and a button that records a viewing of the
 *                  book's fake video 12345 (record-viewings)
 *   GET /site.css  the site's one stylesheet
 *
 * It writes nothing.
 */
#include <stdio.h>
#include <string.h>

#include <libpq-fe.h>

#include <comphost/plugin.h>
#include <comphost/web.h>

#include "site.h"
#include "site_css.h"

/* The book's template posts a fake video id. */
#define FAKE_VIDEO_ID "12345"

/* loadHomePage */
static ch_result home(ch_ctx *ctx, void *state, const ch_request *req)
{
  ch_result failure = CH_FAIL;
  PGresult *res;
  const char *watched = "0";
  (void)state;

  res = site_query(ctx, site_view(ctx),
                   "SELECT COALESCE(page_data->>'videosWatched', '0') FROM pages"
                   " WHERE page_name = 'home'",
                   0, NULL, &failure);
  if (!res)
    return failure;
  if (PQntuples(res) == 1)
    watched = PQgetvalue(res, 0, 0);

  site_begin(ctx, req, "Home", NULL);
  site_h1(ctx, SITE_NAME);
  ch_web->html_raw(ctx, "<p class=\"muted\">Watch a video, and the count goes up"
                        " once the home-page aggregator has seen it.</p>\n"
                        "<p>Videos watched</p>\n<p class=\"big\" id=\"videos-watched\">");
  ch_web->html_txt(ctx, watched);
  ch_web->html_raw(ctx, "</p>\n");
  site_form(ctx, req, "/record-viewing/" FAKE_VIDEO_ID, NULL);
  ch_web->html_raw(ctx, "<button type=\"submit\" id=\"record-viewing\">Record viewing video</button>\n"
                        "</form>\n");
  site_end(ctx);
  PQclear(res);
  return CH_OK;
}

static ch_result stylesheet(ch_ctx *ctx, void *state, const ch_request *req)
{
  (void)state;
  (void)req;
  ch_web->html_raw(ctx, site_css);
  ch_web->header(ctx, "Content-Type", "text/css; charset=utf-8");
  /* the book's express.static maxAge: one day */
  ch_web->header(ctx, "Cache-Control", "public, max-age=86400");
  return CH_OK;
}

static int init(ch_ctx *ctx, void **state)
{
  *state = NULL;
  if (!ch_host->web || !site_view(ctx)) {
    ch_host->set_error(ctx, "home-application needs a host with applications and a view"
                            " database ([host] view_data)");
    return -1;
  }
  return 0;
}

static const ch_route routes[] = {
  { "GET", "/", home, 0, { NULL, NULL } },
  { "GET", "/site.css", stylesheet, 0, { NULL, NULL } },
  {0},
};

static const ch_plugin_desc home_application = CH_PLUGIN_DESC(
  .kind = CH_KIND_APPLICATION,
  .name = "home-application",
  .version = "1.0.0",
  .description = "the book's home page: videos watched, and a button to watch one",
  .init = init,
  .routes = routes,
  .mount = "/");

CH_PLUGIN_DEFINE(home_application)
