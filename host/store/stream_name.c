/* stream_name.c - Message DB stream-name grammar. */
#include "stream_name.h"

#include <stdio.h>
#include <string.h>

static int copy_span(const char *src, size_t len, char *buf, size_t size)
{
  if (len >= size) {
    if (size > 0)
      buf[0] = '\0';
    return -1;
  }
  memcpy(buf, src, len);
  buf[len] = '\0';
  return 0;
}

int chd_stream_category(const char *stream, char *buf, size_t size)
{
  if (!stream)
    return copy_span("", 0, buf, size);
  return copy_span(stream, strcspn(stream, "-"), buf, size);
}

const char *chd_stream_id(const char *stream)
{
  const char *dash = stream ? strchr(stream, '-') : NULL;
  return dash ? dash + 1 : NULL;
}

int chd_stream_cardinal_id(const char *stream, char *buf, size_t size)
{
  const char *id = chd_stream_id(stream);
  if (!id)
    return copy_span("", 0, buf, size);
  return copy_span(id, strcspn(id, "+"), buf, size);
}

bool chd_stream_is_category(const char *stream)
{
  return stream && !strchr(stream, '-');
}

bool chd_stream_is_all(const char *stream)
{
  return stream && strcmp(stream, CHD_STREAM_ALL) == 0;
}

static int compose(const char *category, const char *suffix, const char *id,
                   char *buf, size_t size)
{
  int n;

  if (!category || !*category || strchr(category, '-') || !id) {
    if (size > 0)
      buf[0] = '\0';
    return -1;
  }
  n = snprintf(buf, size, "%s%s-%s", category, suffix, id);
  if (n < 0 || (size_t)n >= size) {
    if (size > 0)
      buf[0] = '\0';
    return -1;
  }
  return 0;
}

int chd_stream_name(const char *category, const char *id, char *buf, size_t size)
{
  return compose(category, "", id, buf, size);
}

int chd_stream_command(const char *category, const char *id, char *buf, size_t size)
{
  return compose(category, ":command", id, buf, size);
}
