/*
 * transcoder_fake.c - the book's simulated transcoding (p168): nothing is
 * done, and every video is said to be at one target URI, by default the
 * book's FAKE_TRANSCODING_DESTINATION.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transcoder.h"

typedef struct fake {
  transcoder base;
  char *target;
} fake;

static int fake_transcode(transcoder *t, ch_ctx *ctx, const char *video_id,
                          const char *source_uri, char **out_uri, char *err, size_t errlen)
{
  fake *f = (fake *)t;
  (void)video_id;

  if (!(*out_uri = strdup(f->target))) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  ch_host->log(ctx, CH_LOG_INFO, "Transcode %s to %s", source_uri, f->target);
  return 0;
}

static void fake_destroy(transcoder *t)
{
  fake *f = (fake *)t;

  if (f) {
    free(f->target);
    free(f);
  }
}

transcoder *fake_transcoder_new(const char *target_uri)
{
  fake *f = calloc(1, sizeof *f);

  if (!f || !(f->target = strdup(target_uri))) {
    free(f);
    return NULL;
  }
  f->base.name = "fake";
  f->base.transcode = fake_transcode;
  f->base.destroy = fake_destroy;
  return &f->base;
}
