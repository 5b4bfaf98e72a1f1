/*
 * checks.h - what the book's plugins share for checking the messages they
 * read: every field of every message may be missing, of another JSON type,
 * huge or nested deep, and data or metadata may be no object at all. The
 * plugins check each field they use before they write anything with it.
 * Header only, like view_sql.h.
 *
 * Limits
 * - MAX_ID_BYTES: the longest id a plugin accepts (userId, emailId, videoId,
 *   ownerId, traceId, subscriber ids). Ids become stream names, and Message
 *   DB indexes stream_name in a btree whose entries cannot pass about 2700
 *   bytes; view tables index them too. 255 bytes leaves room for any
 *   category and is far more than a UUID (36) needs.
 * - MAX_EMAIL_BYTES: the longest email address (RFC 5321: 254). Addresses
 *   are indexed in the views.
 *
 * A component answers a command whose id is unusable in the stream of
 * answer_id(): the command stream's id, or when that is too long as well,
 * the UUID v5 of the id in LONG_ID_NAMESPACE, so that the rejection can be
 * written and the same command always gets the same stream.
 */
#ifndef COMPHOST_PLUGINS_CHECKS_H
#define COMPHOST_PLUGINS_CHECKS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <comphost/plugin.h>

#define MAX_ID_BYTES 255
#define MAX_EMAIL_BYTES 254
/* the namespace of the UUID v5 that stands for an id too long to use */
#define LONG_ID_NAMESPACE "5b0e2d1c-8f3a-5e47-9c61-2a7d4e8b0f13"

/*
 * obj[key] when it is a string of at most `max` bytes, and not empty when
 * `nonempty`. Otherwise NULL, with the reason in why (when why is not NULL):
 * "<key> is missing", "<key> must be a [non-empty ]string" or "<key> is too
 * long (N bytes, at most M)". obj may be anything, NULL too.
 */
static inline const char *checked_string(const json_t *obj, const char *key, size_t max,
                                         bool nonempty, char *why, size_t size)
{
  json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
  const char *s = json_string_value(v);
  size_t n = json_string_length(v);

  if (s && (!nonempty || n > 0) && n <= max && strlen(s) == n)
    return s;
  if (why) {
    if (!v)
      snprintf(why, size, "%s is missing", key);
    else if (!s || (nonempty && n == 0) || strlen(s) != n)
      snprintf(why, size, "%s must be a %sstring", key, nonempty ? "non-empty " : "");
    else
      snprintf(why, size, "%s is too long (%zu bytes, at most %zu)", key, n, max);
  }
  return NULL;
}

/* A field a message must have: a non-empty string of at most max bytes. */
typedef struct checked_field {
  const char *name;
  size_t max;
} checked_field;

/*
 * Is data an object with every field of `fields` (checked_string(),
 * non-empty)? If not, false with the reason in why: "data must be an
 * object", or the first field's that fails.
 */
static inline bool checked_fields(const json_t *data, const checked_field *fields,
                                  size_t count, char *why, size_t size)
{
  if (!json_is_object(data)) {
    snprintf(why, size, "data must be an object");
    return false;
  }
  for (size_t i = 0; i < count; i++)
    if (!checked_string(data, fields[i].name, fields[i].max, true, why, size))
      return false;
  return true;
}

/*
 * The global position of the message that an event answers: its
 * causationMessageGlobalPosition, which follow() sets; else, for an event
 * written without one (by the book's code), the event's own.
 */
static inline int64_t causation_position(const ch_message *e)
{
  json_t *v = json_object_get(e->metadata, "causationMessageGlobalPosition");

  return json_is_integer(v) ? (int64_t)json_integer_value(v) : e->global_position;
}

/* An id: a non-empty string of at most MAX_ID_BYTES. */
static inline bool usable_id(const char *id)
{
  return id && *id && strlen(id) <= MAX_ID_BYTES;
}

/*
 * The id a component answers a command under, when the command's own id
 * (data_id, as the data has it: NULL when it is no string) cannot be used:
 * the id of the command's stream when usable; else, when there is an id at
 * all, the UUID v5 of it (the stream's id first) in LONG_ID_NAMESPACE,
 * written into buf. NULL when there is no id anywhere.
 */
static inline const char *answer_id(const char *data_id, const char *stream_id, char buf[37])
{
  const char *basis = stream_id && *stream_id ? stream_id : data_id;

  if (usable_id(stream_id))
    return stream_id;
  if (!basis || !*basis || ch_host->uuid_v5(LONG_ID_NAMESPACE, basis, buf) != 0)
    return NULL;
  return buf;
}

#endif /* COMPHOST_PLUGINS_CHECKS_H */
