/* fetch.c - fold an entity stream through a projection (see fetch.h). */
#include "fetch.h"

#include <string.h>

typedef struct fetch_state {
  const ch_projection *projection;
  void *entity;
  int64_t version;
} fetch_state;

static int fetch_one(void *arg, const ch_message *msg)
{
  fetch_state *fs = arg;

  fs->version = msg->position;
  for (const ch_reducer *r = fs->projection->reducers; r && r->type; r++)
    if (!strcmp(r->type, msg->type)) {
      r->fn(fs->entity, msg);
      break;
    }
  return 0;
}

int chd_fetch(ch_ctx *ctx, chd_read_stream_fn read_stream, const char *stream_name,
              const ch_projection *projection, void *entity, int64_t *out_version)
{
  fetch_state fs = { projection, entity, -1 };
  int64_t n;

  if (projection->init)
    projection->init(entity);
  n = read_stream(ctx, stream_name, 0, -1, fetch_one, &fs);
  if (n < 0)
    return (int)n;
  if (out_version)
    *out_version = fs.version;
  return CH_RC_OK;
}
