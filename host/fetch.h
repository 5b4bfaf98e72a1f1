/*
 * fetch.h - fold an entity stream through a projection: fetch() of the
 * host's function table, and of the test kit's.
 *
 * projection->init(entity), then each message of the stream, read with
 * `read_stream` (the table's own read_stream), through the reducer of its
 * type. *out_version (when not NULL) is the stream's version, -1 when it is
 * empty. Returns CH_RC_OK, or what read_stream returned when it failed.
 */
#ifndef CHD_FETCH_H
#define CHD_FETCH_H

#include <comphost/plugin.h>

typedef int64_t (*chd_read_stream_fn)(ch_ctx *ctx, const char *stream_name, int64_t from,
                                      int64_t max,
                                      int (*each)(void *arg, const ch_message *msg),
                                      void *arg);

int chd_fetch(ch_ctx *ctx, chd_read_stream_fn read_stream, const char *stream_name,
              const ch_projection *projection, void *entity, int64_t *out_version);

#endif /* CHD_FETCH_H */
