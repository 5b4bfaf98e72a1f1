/* park.c - the parked streams of a subscription (see park.h). */
#include "park.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uuid.h"

#define FOLD_PAGE 1000

void chd_park_status_stream(const char *subscriber_id, char *buf, size_t size)
{
  snprintf(buf, size, "subscriberStatus-%s", subscriber_id);
}

void chd_park_set_init(chd_park_set *set)
{
  memset(set, 0, sizeof *set);
  set->version = -1;
}

void chd_park_set_release(chd_park_set *set)
{
  for (size_t i = 0; i < set->count; i++)
    free(set->items[i].stream);
  free(set->items);
  chd_park_set_init(set);
}

/* Binary search: the index of `stream`, or where it would go. */
static size_t lower_bound(const chd_park_set *set, const char *stream, bool *found)
{
  size_t lo = 0, hi = set->count;

  *found = false;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(set->items[mid].stream, stream);
    if (c == 0) {
      *found = true;
      return mid;
    }
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

chd_parked *chd_park_find(const chd_park_set *set, const char *stream)
{
  bool found;
  size_t i;

  if (set->count == 0)
    return NULL;
  i = lower_bound(set, stream, &found);
  return found ? &set->items[i] : NULL;
}

bool chd_park_holds(const chd_park_set *set, const ch_message *m)
{
  const chd_parked *p = chd_park_find(set, m->stream_name);

  return p && m->global_position >= p->global_position;
}

/* The entry of `stream`, made (zeroed but for the name) when missing. */
static chd_parked *entry_for(chd_park_set *set, const char *stream)
{
  bool found;
  size_t i = lower_bound(set, stream, &found);
  chd_parked *p;

  if (found)
    return &set->items[i];
  if (set->count == set->capacity) {
    size_t cap = set->capacity ? set->capacity * 2 : 8;
    chd_parked *items = realloc(set->items, cap * sizeof *items);
    if (!items)
      return NULL;
    set->items = items;
    set->capacity = cap;
  }
  p = &set->items[i];
  memmove(p + 1, p, (set->count - i) * sizeof *p);
  memset(p, 0, sizeof *p);
  if (!(p->stream = strdup(stream))) {
    memmove(p, p + 1, (set->count - i) * sizeof *p);
    return NULL;
  }
  set->count++;
  return p;
}

static void drop(chd_park_set *set, const char *stream)
{
  bool found;
  size_t i = lower_bound(set, stream, &found);

  if (!found)
    return;
  free(set->items[i].stream);
  memmove(&set->items[i], &set->items[i + 1], (set->count - i - 1) * sizeof set->items[0]);
  set->count--;
}

static const char *str_field(const json_t *data, const char *key)
{
  const char *v = json_string_value(json_object_get(data, key));
  return v ? v : "";
}

static int64_t int_field(const json_t *data, const char *key)
{
  const json_t *v = json_object_get(data, key);
  return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

/* Fold one record into the set. Records of unknown types, or that do not
 * name a stream, are passed over (Stopped lives here too). */
static int fold_one(chd_park_set *set, const ch_message *m)
{
  const char *stream = str_field(m->data, "streamName");
  chd_parked *p;

  if (!*stream)
    return 0;
  if (!strcmp(m->type, "Parked")) {
    int64_t gp = int_field(m->data, "globalPosition");
    bool same;
    if (!(p = entry_for(set, stream)))
      return -1;
    same = p->global_position == gp;   /* this process's own record, read back */
    p->position = int_field(m->data, "position");
    p->global_position = gp;
    snprintf(p->type, sizeof p->type, "%s", str_field(m->data, "type"));
    snprintf(p->reason, sizeof p->reason, "%s", str_field(m->data, "reason"));
    snprintf(p->parked_at, sizeof p->parked_at, "%s", m->time);
    if (!same || p->messages < 1)
      p->messages = 1;
    p->request = CHD_PARK_NONE;       /* a request before it is answered by it */
    p->request_id[0] = '\0';
  } else if (!strcmp(m->type, "RetryRequested") || !strcmp(m->type, "SkipRequested")) {
    if ((p = chd_park_find(set, stream)) != NULL) {
      p->request = m->type[0] == 'R' ? CHD_PARK_RETRY : CHD_PARK_SKIP;
      snprintf(p->request_id, sizeof p->request_id, "%s", m->id);
    }
  } else if (!strcmp(m->type, "Retried") || !strcmp(m->type, "Skipped")) {
    drop(set, stream);
  }
  return 0;
}

chd_store_rc chd_park_fold(chd_park_set *set, chd_mdb *mdb, const char *status_stream)
{
  for (;;) {
    chd_mdb_batch b;
    chd_store_rc rc = chd_mdb_read_stream(mdb, status_stream, set->version + 1, FOLD_PAGE, &b);
    size_t n;

    if (rc != CHD_STORE_OK)
      return rc;
    for (size_t i = 0; i < b.count; i++) {
      /* a record that cannot be decoded names no stream: passed over */
      if (fold_one(set, &b.messages[i]) != 0) {
        chd_mdb_batch_release(&b);
        return chd_mdb_set_error(mdb, CHD_STORE_ERROR, "out of memory for the parked streams");
      }
      set->version = b.messages[i].position;
    }
    n = b.count;
    chd_mdb_batch_release(&b);
    if (n < FOLD_PAGE)
      return CHD_STORE_OK;
  }
}

/* Write one record with a deterministic id; an id already there is fine. */
static chd_store_rc write_record(chd_mdb *mdb, const char *subscriber_id, const char *type,
                                 json_t *data, const char *id_ns, const char *id_name,
                                 int64_t *out_position)
{
  char stream[320], id[CHD_UUID_LEN];
  const char *use_id = NULL;
  chd_store_rc rc;

  if (!data)
    return chd_mdb_set_error(mdb, CHD_STORE_ERROR, "out of memory");
  chd_park_status_stream(subscriber_id, stream, sizeof stream);
  if (id_ns && chd_uuid_v5(id_ns, id_name, id) == 0)
    use_id = id;
  rc = chd_mdb_write(mdb, stream, use_id, type, data, NULL, CH_VERSION_ANY, out_position);
  json_decref(data);
  if (rc != CHD_STORE_OK && rc != CHD_STORE_DUPLICATE_ID) {
    char why[1200];
    snprintf(why, sizeof why, "writing %s to '%s': %s", type, stream, chd_mdb_error(mdb));
    return chd_mdb_set_error(mdb, rc, why);
  }
  return CHD_STORE_OK;
}

chd_store_rc chd_park_add(chd_park_set *set, chd_mdb *mdb, const char *subscriber_id,
                          const ch_message *m, const char *reason, const char *cause)
{
  char name[600];
  json_t *data = json_pack("{s:s, s:I, s:I, s:s, s:s}", "streamName", m->stream_name,
                           "position", (json_int_t)m->position, "globalPosition",
                           (json_int_t)m->global_position, "type", m->type, "reason", reason);
  chd_store_rc rc;

  snprintf(name, sizeof name, "%s/parked/%s", subscriber_id, cause ? cause : "");
  rc = write_record(mdb, subscriber_id, "Parked", data, m->id, name, NULL);
  if (rc != CHD_STORE_OK)
    return rc;
  if (chd_park_enter(set, m, reason) != 0)
    return chd_mdb_set_error(mdb, CHD_STORE_ERROR, "out of memory for the parked streams");
  return CHD_STORE_OK;
}

int chd_park_enter(chd_park_set *set, const ch_message *m, const char *reason)
{
  chd_parked *p = entry_for(set, m->stream_name);

  if (!p)
    return -1;
  p->position = m->position;
  p->global_position = m->global_position;
  snprintf(p->type, sizeof p->type, "%s", m->type);
  snprintf(p->reason, sizeof p->reason, "%s", reason);
  p->parked_at[0] = '\0';
  p->messages = 1;
  p->request = CHD_PARK_NONE;
  p->request_id[0] = '\0';
  return 0;
}

chd_store_rc chd_park_close(chd_park_set *set, chd_mdb *mdb, const char *subscriber_id,
                            const char *stream, chd_park_request request, int64_t through,
                            int64_t count)
{
  chd_parked *p = chd_park_find(set, stream);
  const char *type = request == CHD_PARK_SKIP ? "Skipped" : "Retried";
  char name[600];
  json_t *data;
  chd_store_rc rc;

  if (!p)
    return CHD_STORE_OK;
  data = json_pack("{s:s, s:I, s:I, s:s}", "streamName", stream, "through",
                   (json_int_t)through, "count", (json_int_t)count, "requestId",
                   p->request_id);
  snprintf(name, sizeof name, "%s/%s/%s/%" PRId64, subscriber_id, type, stream,
           p->global_position);
  /* the request's id makes the record's id; without one (never, from the
   * commands) a v4 id */
  rc = write_record(mdb, subscriber_id, type, data, p->request_id[0] ? p->request_id : NULL,
                    name, NULL);
  if (rc == CHD_STORE_OK)
    drop(set, stream);
  return rc;
}

void chd_park_drop(chd_park_set *set, const char *stream)
{
  drop(set, stream);
}

chd_store_rc chd_park_count(chd_mdb *mdb, const chd_parked *p, int64_t through,
                            int64_t *out)
{
  int64_t from = p->position, count = 0;

  for (;;) {
    chd_mdb_batch b;
    chd_store_rc rc = chd_mdb_read_stream(mdb, p->stream, from, FOLD_PAGE, &b);
    bool done;

    if (rc != CHD_STORE_OK)
      return rc;
    done = b.count < FOLD_PAGE;
    for (size_t i = 0; i < b.count; i++) {
      if (b.messages[i].global_position > through) {
        done = true;
        break;
      }
      count++;
      from = b.messages[i].position + 1;
    }
    chd_mdb_batch_release(&b);
    if (done) {
      *out = count;
      return CHD_STORE_OK;
    }
  }
}

chd_store_rc chd_park_request_write(chd_mdb *mdb, const char *subscriber_id,
                                    const char *stream, chd_park_request request,
                                    int64_t *out_position)
{
  json_t *data = json_pack("{s:s}", "streamName", stream);

  return write_record(mdb, subscriber_id,
                      request == CHD_PARK_SKIP ? "SkipRequested" : "RetryRequested", data,
                      NULL, NULL, out_position);
}
