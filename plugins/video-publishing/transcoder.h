/*
 * transcoder.h - what video-publishing calls to turn an uploaded video into
 * one it can serve. The book fakes it (p168); a real transcoder (ffmpeg, a
 * transcoding service) implements the same interface and is chosen by the
 * `transcoder` key in video_publishing.c.
 *
 * transcode() may be called again for the same video (a command delivered
 * again after a crash): it must give the same result, or one as good.
 */
#ifndef VIDEO_PUBLISHING_TRANSCODER_H
#define VIDEO_PUBLISHING_TRANSCODER_H

#include <stddef.h>

#include <comphost/plugin.h>

typedef struct transcoder transcoder;
struct transcoder {
  const char *name;
  /* Transcode source_uri of video video_id. Returns 0 with *out_uri, a new
   * string the caller frees: where the transcoded video is; or -1 with the
   * reason in err (written as VideoPublishingFailed's reason). */
  int (*transcode)(transcoder *t, ch_ctx *ctx, const char *video_id, const char *source_uri,
                   char **out_uri, char *err, size_t errlen);
  void (*destroy)(transcoder *t);
};

/* The book's fake: every video "transcodes" to target_uri. NULL when out of
 * memory. */
transcoder *fake_transcoder_new(const char *target_uri);

#endif /* VIDEO_PUBLISHING_TRANSCODER_H */
