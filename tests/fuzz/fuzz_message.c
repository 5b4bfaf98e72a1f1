/*
 * fuzz_message.c - libFuzzer target for chd_message_decode() (host/store/mdb.c),
 * which turns the 8 text fields of a Message DB row into a ch_message.
 *
 * The input is the row's fields separated by NUL bytes, in the order of
 * Message DB's get_category_messages(): id, stream_name, type, position,
 * global_position, data, metadata, time. A field that is exactly "\N" is
 * SQL NULL (as in PostgreSQL's COPY text format); missing fields are NULL;
 * bytes after the eighth field are ignored.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "mdb.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A decoded message keeps what it was given, and its JSON values can be
 * written out again. */
static void use(const ch_message *m, const char *const fields[8])
{
  char *text;

  if (m->id != fields[0] || m->stream_name != fields[1] || m->type != fields[2] ||
      !m->data || !m->metadata || !m->time)
    abort();
  text = json_dumps(m->data, JSON_ENCODE_ANY | JSON_COMPACT);
  free(text);
  text = json_dumps(m->metadata, JSON_ENCODE_ANY | JSON_COMPACT);
  free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  char *copy = malloc(size + 1), *at, *end;
  const char *fields[8] = { NULL };
  char err[512];
  ch_message m;

  if (!copy)
    return 0;
  memcpy(copy, data, size);
  copy[size] = '\0';
  at = copy;
  end = copy + size;
  for (int i = 0; i < 8 && at <= end; i++) {
    size_t len = strlen(at);

    fields[i] = strcmp(at, "\\N") == 0 ? NULL : at;
    at += len + 1;
  }

  err[0] = '\0';
  if (chd_message_decode(&m, fields, err, sizeof err) == 0) {
    use(&m, fields);
    json_decref(m.data);
    json_decref(m.metadata);
  } else if (!err[0] || m.data || m.metadata) {
    /* a refusal says why and leaves no JSON to free */
    abort();
  }
  free(copy);
  return 0;
}
