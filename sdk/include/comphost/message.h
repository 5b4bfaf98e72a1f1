/*
 * comphost/message.h - a message read from Message DB, as plugins see it.
 *
 * Part of the comphost SDK. See the ABI rules in comphost/plugin.h.
 */
#ifndef COMPHOST_MESSAGE_H
#define COMPHOST_MESSAGE_H

#include <stdint.h>
#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * One message of the store.
 *
 * Ownership: the host owns every field. A handler borrows the message for the
 * duration of the call: it must not free, decref or modify anything here, and
 * must copy (strdup, json_deep_copy) whatever it wants to keep.
 *
 * `data` and `metadata` are never NULL: a message stored with SQL NULL there
 * reads as an empty object, `{}`. The one exception is opted into: the
 * handlers of an envelope-only subscription (ch_plugin_desc.envelope_only,
 * ABI 1.1) may get them NULL, and ask the host for them
 * (ch_host_api.message_data, message_metadata). `time` is the time the
 * store wrote the message, in UTC, as "YYYY-MM-DD HH:MM:SS.ffffff".
 *
 * The struct never grows: batch handlers get arrays of it, so a field added
 * here would move every message after the first for a plugin built before.
 */
typedef struct ch_message {
  const char *id;             /* UUID, lower case */
  const char *stream_name;    /* e.g. "identity-8f0c..." */
  const char *type;           /* e.g. "Registered" */
  int64_t position;           /* 0-based position in its stream */
  int64_t global_position;    /* position in the whole store, from 1 */
  json_t *data;               /* borrowed, never NULL */
  json_t *metadata;           /* borrowed, never NULL */
  const char *time;           /* UTC, borrowed */
} ch_message;

/* Expected-version values for writes. A version N >= 0 means "the stream's
 * last message is at position N". */
#define CH_VERSION_ANY    INT64_MIN   /* no concurrency check */
#define CH_VERSION_EMPTY  (-1)        /* the stream must have no message */

#ifdef __cplusplus
}
#endif

#endif /* COMPHOST_MESSAGE_H */
