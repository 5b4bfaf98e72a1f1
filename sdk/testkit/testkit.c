/*
 * testkit.c - the test kit: a plugin loaded as the host loads it, a host
 * function table, and a message store in memory (comphost/testkit.h).
 *
 * Everything here runs in the test's process and thread. Texts and JSON
 * handed out live in the ch_test until ch_test_free(), or, for what belongs
 * to an act (writes, log lines, the error), until the next act begins.
 */
#define _POSIX_C_SOURCE 200809L
#include <comphost/testkit.h>

#include <dlfcn.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "fetch.h"
#include "parse.h"
#include "stream_name.h"
#include "uuid.h"

#define TEXT_MAX 1024
#define NAME_MAX_LEN 64
/* handler calls one ch_test_run() may make before the kit calls it a loop */
#define RUN_MAX_CALLS 100000

/* The context the plugin passes back on every host call. */
struct ch_ctx {
  ch_test *test;
};

/* A message of the store; msg points into the strings and JSON here. */
typedef struct stored {
  ch_message msg;
  char *id;
  char *stream_name;
  char *type;
  char *time;
} stored;

/* A write() call; pub points into the strings and JSON here. */
typedef struct write_rec {
  ch_test_write pub;
  char *stream_name;
  char *type;
  json_t *data;
  json_t *metadata;
} write_rec;

typedef struct setting {
  char *key;
  char *value;
} setting;

struct ch_test {
  struct ch_ctx ctx;

  /* the plugin */
  void *handle;
  ch_plugin_desc desc;            /* the kit's copy, as the host makes it */
  bool loaded;
  bool started;
  void *state;                    /* the plugin's, from init() */
  char load_error[TEXT_MAX];

  /* its settings and connections */
  setting *settings;
  size_t setting_count;
  char *config_dir;
  char **paths;                   /* what config_path() returned */
  size_t path_count;
  struct pg_conn *view;

  /* the store, in global order: messages[i] is at global position i + 1 */
  stored **messages;
  size_t message_count;
  size_t message_cap;
  int64_t positions[CH_MAX_SUBSCRIPTIONS];  /* ch_test_run(): the last read */

  /* the handler call in progress */
  const ch_message *current;
  const char *subscriber_id;
  unsigned write_index;
  char call_error[TEXT_MAX];      /* set_error() */
  char last_error[TEXT_MAX];      /* the last failed host call */

  /* the last act */
  write_rec *writes;
  size_t write_count;
  size_t write_cap;
  char **log_lines;
  size_t log_count;
  size_t log_cap;
  size_t handled;
  bool failed;                    /* a handler call returned other than CH_OK */
  char error[TEXT_MAX];

  /* ch_test_fail() */
  unsigned fail_ops;
  int fail_rc;
  int fail_count;
  char fail_text[TEXT_MAX];

  int echo_level;                 /* COMPHOST_TEST_LOG: echo at or above, -1: none */
};

static const char *const level_names[] = { "error", "warn", "info", "debug" };

/* ---- Helpers --------------------------------------------------------------- */

static _Noreturn void die(const char *fmt, ...) CH_PRINTF(1, 2);

static _Noreturn void die(const char *fmt, ...)
{
  va_list ap;

  fputs("comphost testkit: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  abort();
}

static void *xmalloc(size_t n)
{
  void *p = malloc(n ? n : 1);

  if (!p)
    die("out of memory");
  return p;
}

static void *xrealloc(void *p, size_t n)
{
  p = realloc(p, n ? n : 1);
  if (!p)
    die("out of memory");
  return p;
}

static char *xstrdup(const char *s)
{
  char *copy = strdup(s);

  if (!copy)
    die("out of memory");
  return copy;
}

/* Make room for one more element in a growing array. */
static void *grow(void *array, size_t count, size_t *cap, size_t size)
{
  if (count < *cap)
    return array;
  *cap = *cap ? *cap * 2 : 16;
  return xrealloc(array, *cap * size);
}

static void set_text(char *buf, const char *fmt, ...) CH_PRINTF(2, 3);

static void set_text(char *buf, const char *fmt, ...)
{
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(buf, TEXT_MAX, fmt, ap);
  va_end(ap);
}

static ch_test *test_of(ch_ctx *ctx)
{
  return ctx->test;
}

static bool is_empty(const char *s)
{
  return !s || !*s;
}



/* The category of a stream name is what comes before its first '-'. */
static bool in_category(const char *stream_name, const char *category)
{
  size_t n = strcspn(stream_name, "-");

  return strlen(category) == n && !strncmp(stream_name, category, n);
}

/* JSON text, or NULL, as a new value ({} for NULL); dies when it is no JSON. */
static json_t *parse_json(const char *text, const char *what)
{
  json_error_t jerr;
  json_t *v;

  if (!text)
    return json_object();
  v = json_loads(text, JSON_DECODE_ANY, &jerr);
  if (!v)
    die("%s is not JSON (%s, at %d:%d): %s", what, jerr.text, jerr.line, jerr.column, text);
  return v;
}

/* ---- Host functions: ids, names, metadata ---------------------------------- */
/* uuid_v4/v5, stream_category/id are the host's own (store/uuid.c,
 * store/stream_name.c). */

/* As the host's: the book's traceId and userId, Eventide's causation. */
static json_t *kit_follow(ch_ctx *ctx, const ch_message *msg, const char *origin_stream_name)
{
  static const char *const carried[] = { "traceId", "userId" };
  json_t *meta = json_object();
  (void)ctx;

  if (!meta)
    return NULL;
  for (size_t i = 0; msg && i < sizeof carried / sizeof carried[0]; i++) {
    json_t *v = json_object_get(msg->metadata, carried[i]);
    if (v && json_object_set(meta, carried[i], v) != 0)
      goto oom;
  }
  if (msg && (json_object_set_new(meta, "causationMessageStreamName",
                                  json_string(msg->stream_name)) != 0 ||
              json_object_set_new(meta, "causationMessagePosition",
                                  json_integer(msg->position)) != 0 ||
              json_object_set_new(meta, "causationMessageGlobalPosition",
                                  json_integer(msg->global_position)) != 0))
    goto oom;
  if (origin_stream_name &&
      json_object_set_new(meta, "originStreamName", json_string(origin_stream_name)) != 0)
    goto oom;
  return meta;
oom:
  json_decref(meta);
  return NULL;
}

/* ---- Host functions: log, errors, settings --------------------------------- */

static void kit_log(ch_ctx *ctx, ch_log_level level, const char *fmt, ...) CH_PRINTF(3, 4);

static void kit_log(ch_ctx *ctx, ch_log_level level, const char *fmt, ...)
{
  ch_test *t = test_of(ctx);
  char line[TEXT_MAX];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  t->log_lines = grow(t->log_lines, t->log_count, &t->log_cap, sizeof *t->log_lines);
  t->log_lines[t->log_count++] = xstrdup(line);
  if ((int)level <= t->echo_level)
    fprintf(stderr, "comphost testkit: [%s] %s: %s\n", t->desc.name,
            level >= CH_LOG_ERROR && level <= CH_LOG_DEBUG ? level_names[level] : "?", line);
}

static void kit_set_error(ch_ctx *ctx, const char *fmt, ...) CH_PRINTF(2, 3);

static void kit_set_error(ch_ctx *ctx, const char *fmt, ...)
{
  ch_test *t = test_of(ctx);
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(t->call_error, sizeof t->call_error, fmt, ap);
  va_end(ap);
}

static const char *kit_last_error(ch_ctx *ctx)
{
  return test_of(ctx)->last_error;
}

static const setting *find_setting(const ch_test *t, const char *key)
{
  for (size_t i = 0; key && i < t->setting_count; i++)
    if (!strcmp(t->settings[i].key, key))
      return &t->settings[i];
  return NULL;
}

static const ch_config_key *find_key(const ch_plugin_desc *d, const char *name)
{
  for (const ch_config_key *k = d->config_keys; name && k && k->name; k++)
    if (!strcmp(k->name, name))
      return k;
  return NULL;
}

static const char *kit_config_get(ch_ctx *ctx, const char *key)
{
  ch_test *t = test_of(ctx);
  const setting *s = find_setting(t, key);
  const ch_config_key *k;

  if (s)
    return s->value;
  k = find_key(&t->desc, key);
  return k ? k->default_value : NULL;
}

static int64_t kit_config_int(ch_ctx *ctx, const char *key)
{
  int64_t v = 0;

  if (chd_parse_int64(kit_config_get(ctx, key), &v) != 0)
    v = 0;
  return v;
}

static bool kit_config_bool(ch_ctx *ctx, const char *key)
{
  bool v = false;

  if (chd_parse_bool(kit_config_get(ctx, key), &v) != 0)
    v = false;
  return v;
}

static const char *kit_config_path(ch_ctx *ctx, const char *key)
{
  ch_test *t = test_of(ctx);
  const char *value = kit_config_get(ctx, key);
  size_t n;
  char *path;

  t->last_error[0] = '\0';
  if (is_empty(value) || value[0] == '/' || !t->config_dir)
    return value;
  n = strlen(t->config_dir) + 1 + strlen(value) + 1;
  path = xmalloc(n);
  snprintf(path, n, "%s%s%s", t->config_dir,
           t->config_dir[strlen(t->config_dir) - 1] == '/' ? "" : "/", value);
  for (size_t i = 0; i < t->path_count; i++)
    if (!strcmp(t->paths[i], path)) {   /* kept once, as the host does */
      free(path);
      return t->paths[i];
    }
  t->paths = xrealloc(t->paths, (t->path_count + 1) * sizeof *t->paths);
  t->paths[t->path_count++] = path;
  return path;
}

static struct pg_conn *kit_view_db(ch_ctx *ctx)
{
  return test_of(ctx)->view;
}

static struct pg_conn *kit_store_db(ch_ctx *ctx)
{
  (void)ctx;
  return NULL;
}

/* ---- The store ------------------------------------------------------------- */

static int64_t version_of(const ch_test *t, const char *stream_name)
{
  for (size_t i = t->message_count; i > 0; i--)
    if (!strcmp(t->messages[i - 1]->stream_name, stream_name))
      return t->messages[i - 1]->msg.position;
  return -1;
}

static bool id_taken(const ch_test *t, const char *id)
{
  for (size_t i = 0; i < t->message_count; i++)
    if (!strcmp(t->messages[i]->id, id))
      return true;
  return false;
}

/* "YYYY-MM-DD HH:MM:SS.ffffff", UTC, as Message DB gives it. */
static void now_text(char out[32])
{
  struct timespec ts;
  struct tm tm;

  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  snprintf(out, 32, "%04d-%02d-%02d %02d:%02d:%02d.%06ld", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000);
}

/* Append a message, taking data and metadata (objects, never NULL). */
static stored *append(ch_test *t, const char *id, const char *stream_name, const char *type,
                      json_t *data, json_t *metadata)
{
  stored *m = xmalloc(sizeof *m);
  char time_text[32];

  now_text(time_text);
  m->id = xstrdup(id);
  m->stream_name = xstrdup(stream_name);
  m->type = xstrdup(type);
  m->time = xstrdup(time_text);
  m->msg.id = m->id;
  m->msg.stream_name = m->stream_name;
  m->msg.type = m->type;
  m->msg.position = version_of(t, stream_name) + 1;
  m->msg.global_position = (int64_t)t->message_count + 1;
  m->msg.data = data;
  m->msg.metadata = metadata;
  m->msg.time = m->time;
  t->messages = grow(t->messages, t->message_count, &t->message_cap, sizeof *t->messages);
  t->messages[t->message_count++] = m;
  return m;
}

static void free_stored(stored *m)
{
  json_decref(m->msg.data);
  json_decref(m->msg.metadata);
  free(m->id);
  free(m->stream_name);
  free(m->type);
  free(m->time);
  free(m);
}

/* A failure ch_test_fail() asked for, for a call of kind `op`: its rc, or 0. */
static int injected(ch_test *t, unsigned op)
{
  if (!(t->fail_ops & op) || t->fail_count <= 0)
    return 0;
  t->fail_count--;
  set_text(t->last_error, "%s", t->fail_text);
  return t->fail_rc;
}

/* JSON as the store keeps it: through its text, as it goes to PostgreSQL
 * and back. NULL value: {}. -1 when it does not encode. */
static int store_form(const json_t *value, json_t **out)
{
  char *text;

  if (!value) {
    *out = json_object();
  } else {
    if (!(text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY)))
      return -1;
    *out = json_loads(text, JSON_DECODE_ANY, NULL);
    free(text);
  }
  if (!*out)
    die("out of memory");
  return 0;
}

static int store_write(ch_test *t, write_rec *w, const json_t *data, const json_t *metadata,
                       int64_t *out_position)
{
  const char *stream_name = w->pub.stream_name, *type = w->pub.type;
  int64_t expected = w->pub.expected_version, version;
  json_t *stored_data, *stored_meta;
  char id[37];
  bool deterministic = false;
  stored *m;
  int rc;

  /* the host's deterministic id: the same write of the same delivery; as
   * in the host, every write() of the handler call counts, refused or not */
  if (t->current) {
    char name[700];
    snprintf(name, sizeof name, "%s/%u/%s/%s", t->subscriber_id ? t->subscriber_id : "",
             t->write_index++, stream_name ? stream_name : "", type ? type : "");
    deterministic = chd_uuid_v5(t->current->id, name, id) == 0;
  }
  if (!deterministic)
    chd_uuid_v4(id);

  if (is_empty(stream_name)) {
    set_text(t->last_error, "cannot write a message: no stream name");
    return CH_RC_INVALID;
  }
  if (chd_stream_is_all(stream_name)) {
    set_text(t->last_error, "cannot write to '$all': it is no stream");
    return CH_RC_INVALID;
  }
  if (is_empty(type)) {
    set_text(t->last_error, "cannot write to '%s': messages must have a type", stream_name);
    return CH_RC_INVALID;
  }
  if (expected != CH_VERSION_ANY && expected < -1) {
    set_text(t->last_error, "cannot write to '%s': expected version %" PRId64 " is below -1",
             stream_name, expected);
    return CH_RC_INVALID;
  }
  if (store_form(data, &stored_data) != 0) {
    set_text(t->last_error, "cannot write to '%s': data does not encode as JSON", stream_name);
    return CH_RC_INVALID;
  }
  if (store_form(metadata, &stored_meta) != 0) {
    json_decref(stored_data);
    set_text(t->last_error, "cannot write to '%s': metadata does not encode as JSON",
             stream_name);
    return CH_RC_INVALID;
  }
  if ((rc = injected(t, CH_TEST_WRITES)) != 0)
    goto refused;

  /* Message DB: the expected version first, then the id */
  version = version_of(t, stream_name);
  if (expected != CH_VERSION_ANY && expected != version) {
    set_text(t->last_error, "version conflict writing %s to '%s': expected version %" PRId64
             ", stream is at %" PRId64, type, stream_name, expected, version);
    rc = CH_RC_CONFLICT;
    goto refused;
  }
  if (id_taken(t, id)) {
    if (out_position)
      *out_position = -1;
    rc = deterministic ? CH_RC_ALREADY_WRITTEN : CH_RC_ERROR;
    if (rc == CH_RC_ERROR)
      set_text(t->last_error, "message id %s is already in the store (writing %s to '%s')",
               id, type, stream_name);
    goto refused;
  }
  m = append(t, id, stream_name, type, stored_data, stored_meta);
  w->pub.message = &m->msg;
  if (out_position)
    *out_position = m->msg.position;
  return CH_RC_OK;

refused:
  json_decref(stored_data);
  json_decref(stored_meta);
  return rc;
}

static json_t *copy_or_null(const json_t *v)
{
  json_t *copy;

  if (!v)
    return NULL;
  /* json_deep_copy() does not change its argument, but takes it non-const */
  copy = json_deep_copy((json_t *)(uintptr_t)v);
  if (!copy)
    die("out of memory");
  return copy;
}

static int kit_write(ch_ctx *ctx, const char *stream_name, const char *type,
                     const json_t *data, const json_t *metadata, int64_t expected_version,
                     int64_t *out_position)
{
  ch_test *t = test_of(ctx);
  write_rec *w;
  int rc;

  t->last_error[0] = '\0';
  t->writes = grow(t->writes, t->write_count, &t->write_cap, sizeof *t->writes);
  w = &t->writes[t->write_count++];
  memset(w, 0, sizeof *w);
  w->stream_name = stream_name ? xstrdup(stream_name) : NULL;
  w->type = type ? xstrdup(type) : NULL;
  w->data = copy_or_null(data);
  w->metadata = copy_or_null(metadata);
  w->pub.stream_name = w->stream_name;
  w->pub.type = w->type;
  w->pub.data = w->data;
  w->pub.metadata = w->metadata;
  w->pub.expected_version = expected_version;
  rc = store_write(t, w, data, metadata, out_position);
  w->pub.rc = rc;
  return rc;
}

static int64_t kit_read_stream(ch_ctx *ctx, const char *stream_name, int64_t from,
                               int64_t max, int (*each)(void *, const ch_message *),
                               void *arg)
{
  ch_test *t = test_of(ctx);
  int64_t seen = 0;
  int rc;

  t->last_error[0] = '\0';
  if (is_empty(stream_name)) {
    set_text(t->last_error, "cannot read a stream: no stream name");
    return CH_RC_INVALID;
  }
  if (chd_stream_is_category(stream_name)) {
    set_text(t->last_error, "'%s' is a category, not a stream (a stream name has a '-')",
             stream_name);
    return CH_RC_INVALID;
  }
  if ((rc = injected(t, CH_TEST_READS)) != 0)
    return rc;
  /* by index: each() may not write, but if it does, the array may move */
  for (size_t i = 0; i < t->message_count && (max < 0 || seen < max); i++) {
    const ch_message *m = &t->messages[i]->msg;

    if (strcmp(m->stream_name, stream_name) != 0 || m->position < from)
      continue;
    seen++;
    if (each(arg, m) != 0)
      break;
  }
  return seen;
}

static int kit_read_last(ch_ctx *ctx, const char *stream_name, const char *type,
                         int (*each)(void *, const ch_message *), void *arg)
{
  ch_test *t = test_of(ctx);
  int rc;

  t->last_error[0] = '\0';
  if (is_empty(stream_name)) {
    set_text(t->last_error, "cannot read the last message: no stream name");
    return CH_RC_INVALID;
  }
  if (chd_stream_is_category(stream_name)) {
    set_text(t->last_error, "cannot read the last message of '%s': it is a category, not a"
             " stream", stream_name);
    return CH_RC_INVALID;
  }
  if ((rc = injected(t, CH_TEST_READS)) != 0)
    return rc;
  for (size_t i = t->message_count; i > 0; i--) {
    const ch_message *m = &t->messages[i - 1]->msg;

    if (!strcmp(m->stream_name, stream_name) && (!type || !strcmp(m->type, type))) {
      each(arg, m);
      return 1;
    }
  }
  return 0;
}

static int kit_stream_version(ch_ctx *ctx, const char *stream_name, int64_t *out_version)
{
  ch_test *t = test_of(ctx);
  int rc;

  t->last_error[0] = '\0';
  if (is_empty(stream_name)) {
    set_text(t->last_error, "cannot get a stream version: no stream name");
    return CH_RC_INVALID;
  }
  if ((rc = injected(t, CH_TEST_READS)) != 0)
    return rc;
  *out_version = version_of(t, stream_name);
  return CH_RC_OK;
}

static int kit_fetch(ch_ctx *ctx, const char *stream_name, const ch_projection *projection,
                     void *entity, int64_t *out_version)
{
  return chd_fetch(ctx, kit_read_stream, stream_name, projection, entity, out_version);
}

/* The kit decodes every message it stores: data and metadata are there. */
static json_t *kit_message_data(ch_ctx *ctx, const ch_message *msg)
{
  (void)ctx;
  return msg ? msg->data : NULL;
}

static json_t *kit_message_metadata(ch_ctx *ctx, const ch_message *msg)
{
  (void)ctx;
  return msg ? msg->metadata : NULL;
}

/* The kit runs no consumer groups: the id of the subscription being handled. */
static const char *kit_subscriber_id(ch_ctx *ctx)
{
  return test_of(ctx)->subscriber_id;
}

static const ch_host_api kit_api = {
  .struct_size = sizeof(ch_host_api),
  .abi_major = CH_ABI_MAJOR,
  .abi_minor = CH_ABI_MINOR,
  .log = kit_log,
  .set_error = kit_set_error,
  .last_error = kit_last_error,
  .config_get = kit_config_get,
  .config_int = kit_config_int,
  .config_bool = kit_config_bool,
  .write = kit_write,
  .read_stream = kit_read_stream,
  .read_last = kit_read_last,
  .stream_version = kit_stream_version,
  .fetch = kit_fetch,
  .view_db = kit_view_db,
  .follow = kit_follow,
  .uuid_v4 = chd_uuid_v4,
  .uuid_v5 = chd_uuid_v5,
  .stream_category = chd_stream_category,
  .stream_id = chd_stream_id,
  .web = NULL,
  .store_db = kit_store_db,
  .config_path = kit_config_path,
  .message_data = kit_message_data,
  .message_metadata = kit_message_metadata,
  .subscriber_id = kit_subscriber_id,
};

/* ---- Loading: the host's checks, for what the kit runs --------------------- */

static int refuse(ch_test *t, const char *path, const char *fmt, ...) CH_PRINTF(3, 4);

static int refuse(ch_test *t, const char *path, const char *fmt, ...)
{
  char why[TEXT_MAX - 64];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  set_text(t->load_error, "'%s': %s", path, why);
  return -1;
}

static bool valid_name(const char *s)
{
  size_t n = strlen(s);

  if (n == 0 || n > NAME_MAX_LEN)
    return false;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
      return false;
  return true;
}

static bool reserved_zero(void *const *slots, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (slots[i])
      return false;
  return true;
}

#define RESERVED_ZERO(entry) \
  reserved_zero((entry).reserved, sizeof (entry).reserved / sizeof (entry).reserved[0])

static int check_subscription(ch_test *t, const char *path, const ch_subscription *s,
                              size_t n)
{
  if (is_empty(s->subscriber_id))
    return refuse(t, path, "subscription %zu has no subscriber id", n);
  if (!chd_stream_is_all(s->stream_name) && !(*s->stream_name && chd_stream_is_category(s->stream_name)))
    return refuse(t, path, "subscription '%s': stream name '%s' is not a category or \"$all\"",
                  s->subscriber_id, s->stream_name);
  if (s->origin_stream_name && (!*s->origin_stream_name || !chd_stream_is_category(s->origin_stream_name)))
    return refuse(t, path, "subscription '%s': origin stream name '%s' is not a category",
                  s->subscriber_id, s->origin_stream_name);
  if (!RESERVED_ZERO(*s))
    return refuse(t, path, "subscription '%s' sets reserved fields", s->subscriber_id);
  if (!s->handlers || !s->handlers[0].type)
    return refuse(t, path, "subscription '%s' has no handlers", s->subscriber_id);
  for (size_t i = 0; s->handlers[i].type; i++) {
    const ch_handler *h = &s->handlers[i];

    if (!*h->type || !h->fn || !RESERVED_ZERO(*h))
      return refuse(t, path, "subscription '%s': handler %zu has an empty type, no function"
                    " or reserved fields set", s->subscriber_id, i + 1);
    for (size_t j = 0; j < i; j++)
      if (!strcmp(s->handlers[j].type, h->type))
        return refuse(t, path, "subscription '%s': handler type '%s' appears twice",
                      s->subscriber_id, h->type);
  }
  return 0;
}

static int check_desc(ch_test *t, const char *path)
{
  const ch_plugin_desc *d = &t->desc;
  size_t count = 0;

  if (d->kind == CH_KIND_APPLICATION)
    return refuse(t, path, "an application: the test kit runs components and aggregators");
  if (d->kind != CH_KIND_COMPONENT && d->kind != CH_KIND_AGGREGATOR)
    return refuse(t, path, "kind %u is not component (%d) or aggregator (%d)",
                  (unsigned)d->kind, CH_KIND_COMPONENT, CH_KIND_AGGREGATOR);
  if (d->flags != 0)
    return refuse(t, path, "flags 0x%x are unknown", (unsigned)d->flags);
  if (is_empty(d->name) || !valid_name(d->name))
    return refuse(t, path, "name '%s' is not valid: use 1 to %d characters of a-z, 0-9, '_'"
                  " and '-'", d->name ? d->name : "", NAME_MAX_LEN);
  if (is_empty(d->version))
    return refuse(t, path, "the descriptor has no version");
  if (d->routes || d->mount)
    return refuse(t, path, "a %s has subscriptions, not routes",
                  d->kind == CH_KIND_COMPONENT ? "component" : "aggregator");
  if (!d->subscriptions || !d->subscriptions[0].stream_name)
    return refuse(t, path, "declares no subscriptions");
  while (d->subscriptions[count].stream_name)
    count++;
  if (count > CH_MAX_SUBSCRIPTIONS)
    return refuse(t, path, "declares %zu subscriptions; a plugin may have at most %d", count,
                  CH_MAX_SUBSCRIPTIONS);
  for (size_t i = 0; i < count; i++) {
    if (check_subscription(t, path, &d->subscriptions[i], i + 1) != 0)
      return -1;
    for (size_t j = 0; j < i; j++)
      if (!strcmp(d->subscriptions[j].subscriber_id, d->subscriptions[i].subscriber_id))
        return refuse(t, path, "subscriber id '%s' appears twice",
                      d->subscriptions[i].subscriber_id);
  }
  for (const ch_config_key *k = d->config_keys; k && k->name; k++) {
    if (!*k->name || !RESERVED_ZERO(*k))
      return refuse(t, path, "config key '%s' has an empty name or sets reserved fields",
                    k->name);
    if (k->type != CH_CONFIG_STRING && k->type != CH_CONFIG_INT && k->type != CH_CONFIG_BOOL)
      return refuse(t, path, "config key '%s': type %d is not string, int or bool", k->name,
                    (int)k->type);
  }
  for (const char *const *s = d->secret_keys; s && *s; s++) {
    const ch_config_key *k = find_key(d, *s);
    if (!k || k->type != CH_CONFIG_STRING)
      return refuse(t, path, "secret key '%s' is not one of its string config keys", *s);
  }
  return 0;
}

/* dlopen(), the entry point, the descriptor's header, the copy, the rest. */
static int load(ch_test *t, const char *path)
{
  ch_plugin_query_fn query;
  const ch_plugin_desc *d;
  uint32_t head[4];
  char *dlpath;
  void *sym;

  if (is_empty(path))
    return refuse(t, "", "no plugin file given");
  /* without a '/', dlopen() would search the library path */
  dlpath = xmalloc(strlen(path) + 3);
  snprintf(dlpath, strlen(path) + 3, "%s%s", strchr(path, '/') ? "" : "./", path);
  dlerror();
  t->handle = dlopen(dlpath, RTLD_NOW | RTLD_LOCAL);
  free(dlpath);
  if (!t->handle)
    return refuse(t, path, "cannot load: %s", dlerror());
  sym = dlsym(t->handle, CH_PLUGIN_ENTRY);
  if (!sym)
    return refuse(t, path, "not a comphost plugin: it exports no %s", CH_PLUGIN_ENTRY);
  /* POSIX guarantees the conversion; memcpy keeps ISO C quiet about it */
  memcpy(&query, &sym, sizeof query);
  d = query(&kit_api);
  if (!d)
    return refuse(t, path, "%s returned no descriptor", CH_PLUGIN_ENTRY);
  memcpy(head, d, sizeof head);
  if (head[0] != CH_PLUGIN_MAGIC)
    return refuse(t, path, "bad magic 0x%08x (expected 0x%08x): not a comphost plugin"
                  " descriptor", (unsigned)head[0], (unsigned)CH_PLUGIN_MAGIC);
  if (head[1] != CH_ABI_MAJOR || head[2] > CH_ABI_MINOR)
    return refuse(t, path, "built for plugin ABI %u.%u, this test kit has ABI %u.%u",
                  (unsigned)head[1], (unsigned)head[2], CH_ABI_MAJOR, CH_ABI_MINOR);
  if (head[3] < CH_DESC_SIZE_1_0)
    return refuse(t, path, "descriptor is %u bytes, smaller than the %zu of ABI 1.0",
                  (unsigned)head[3], (size_t)CH_DESC_SIZE_1_0);
  memcpy(&t->desc, d, head[3] < sizeof t->desc ? head[3] : sizeof t->desc);
  if (check_desc(t, path) != 0) {
    memset(&t->desc, 0, sizeof t->desc);
    return -1;
  }
  return 0;
}

ch_test *ch_test_load(const char *path)
{
  ch_test *t = xmalloc(sizeof *t);
  const char *echo = getenv("COMPHOST_TEST_LOG");

  memset(t, 0, sizeof *t);
  t->ctx.test = t;
  t->echo_level = -1;
  for (int i = 0; echo && i < 4; i++)
    if (!strcmp(echo, level_names[i]))
      t->echo_level = i;
  if (load(t, path) == 0) {
    t->loaded = true;
  } else if (t->handle) {
    dlclose(t->handle);
    t->handle = NULL;
  }
  return t;
}

/* ---- Setting up, starting, ending ------------------------------------------ */

void ch_test_set(ch_test *t, const char *key, const char *value)
{
  setting *s;

  if (t->started)
    die("ch_test_set(\"%s\") after ch_test_start(): settings are read by init()",
        key ? key : "");
  if (!key || !value)
    die("ch_test_set(): a key and a value, please");
  for (size_t i = 0; i < t->setting_count; i++)
    if (!strcmp(t->settings[i].key, key)) {
      free(t->settings[i].value);
      t->settings[i].value = xstrdup(value);
      return;
    }
  t->settings = xrealloc(t->settings, (t->setting_count + 1) * sizeof *t->settings);
  s = &t->settings[t->setting_count++];
  s->key = xstrdup(key);
  s->value = xstrdup(value);
}

void ch_test_set_config_dir(ch_test *t, const char *dir)
{
  free(t->config_dir);
  t->config_dir = dir && *dir ? xstrdup(dir) : NULL;
}

void ch_test_set_view_db(ch_test *t, struct pg_conn *conn)
{
  t->view = conn;
}

const ch_plugin_desc *ch_test_desc(const ch_test *t)
{
  return t->loaded ? &t->desc : NULL;
}

/* Forget the last act: its writes, log lines, handler calls and error. */
static void act_begin(ch_test *t)
{
  for (size_t i = 0; i < t->write_count; i++) {
    free(t->writes[i].stream_name);
    free(t->writes[i].type);
    json_decref(t->writes[i].data);
    json_decref(t->writes[i].metadata);
  }
  t->write_count = 0;
  for (size_t i = 0; i < t->log_count; i++)
    free(t->log_lines[i]);
  t->log_count = 0;
  t->handled = 0;
  t->failed = false;
  t->error[0] = '\0';
}

static const char *type_problem(ch_config_type type, const char *value)
{
  int64_t n;
  bool b;

  if (type == CH_CONFIG_INT && chd_parse_int64(value, &n) != 0)
    return "is not a whole number";
  if (type == CH_CONFIG_BOOL && chd_parse_bool(value, &b) != 0)
    return "is not a boolean (true/false, yes/no, on/off, 1/0)";
  return NULL;
}

/* The host's checks of an instance's settings. */
static int check_settings(ch_test *t)
{
  const char *problem;

  for (size_t i = 0; i < t->setting_count; i++) {
    const setting *s = &t->settings[i];
    const ch_config_key *k = find_key(&t->desc, s->key);

    if (!k) {
      set_text(t->error, "setting '%s': unknown key (the plugin declares:", s->key);
      for (k = t->desc.config_keys; k && k->name; k++)
        snprintf(t->error + strlen(t->error), sizeof t->error - strlen(t->error), " %s",
                 k->name);
      snprintf(t->error + strlen(t->error), sizeof t->error - strlen(t->error), ")");
      return -1;
    }
    if ((problem = type_problem(k->type, s->value))) {
      set_text(t->error, "setting '%s': '%s' %s", s->key, s->value, problem);
      return -1;
    }
  }
  for (const ch_config_key *k = t->desc.config_keys; k && k->name; k++) {
    if (find_setting(t, k->name))
      continue;
    if (!k->default_value && k->required) {
      set_text(t->error, "setting '%s': required by the plugin, not set", k->name);
      return -1;
    }
    if (k->default_value && (problem = type_problem(k->type, k->default_value))) {
      set_text(t->error, "setting '%s': the plugin's default '%s' %s", k->name,
               k->default_value, problem);
      return -1;
    }
  }
  return 0;
}

int ch_test_start(ch_test *t)
{
  if (t->started)
    die("ch_test_start() twice");
  act_begin(t);
  if (!t->loaded) {
    set_text(t->error, "%s", t->load_error);
    return -1;
  }
  if (check_settings(t) != 0)
    return -1;
  t->call_error[0] = '\0';
  t->state = NULL;
  if (t->desc.init && t->desc.init(&t->ctx, &t->state) != 0) {
    set_text(t->error, "init() refused: %s", t->call_error[0] ? t->call_error : "(no reason)");
    return -1;
  }
  if (t->desc.start && t->desc.start(&t->ctx, t->state) != 0) {
    set_text(t->error, "start() refused: %s",
             t->call_error[0] ? t->call_error : "(no reason)");
    if (t->desc.destroy)
      t->desc.destroy(&t->ctx, t->state);
    t->state = NULL;
    return -1;
  }
  t->started = true;
  return 0;
}

void ch_test_free(ch_test *t)
{
  if (!t)
    return;
  if (t->started) {
    if (t->desc.stop)
      t->desc.stop(&t->ctx, t->state);
    if (t->desc.destroy)
      t->desc.destroy(&t->ctx, t->state);
  }
  if (t->handle)
    dlclose(t->handle);
  act_begin(t);
  free(t->writes);
  free(t->log_lines);
  for (size_t i = 0; i < t->message_count; i++)
    free_stored(t->messages[i]);
  free(t->messages);
  for (size_t i = 0; i < t->setting_count; i++) {
    free(t->settings[i].key);
    free(t->settings[i].value);
  }
  free(t->settings);
  for (size_t i = 0; i < t->path_count; i++)
    free(t->paths[i]);
  free(t->paths);
  free(t->config_dir);
  free(t);
}

/* ---- Given, when ----------------------------------------------------------- */

int64_t ch_test_given(ch_test *t, const char *stream_name, const char *type,
                      const char *data_json, const char *metadata_json)
{
  char id[37];
  json_t *data, *metadata;

  if (is_empty(stream_name) || chd_stream_is_all(stream_name) || is_empty(type))
    die("ch_test_given(): a stream name (not \"$all\") and a type, please");
  data = parse_json(data_json, "the data");
  metadata = parse_json(metadata_json, "the metadata");
  chd_uuid_v4(id);
  return append(t, id, stream_name, type, data, metadata)->msg.global_position;
}

/* Does `sub` take `msg`? Its handler, or NULL. */
static ch_handler_fn handler_for(const ch_subscription *sub, const ch_message *msg)
{
  ch_handler_fn any = NULL;

  if (!chd_stream_is_all(sub->stream_name) && !in_category(msg->stream_name, sub->stream_name))
    return NULL;
  if (sub->origin_stream_name) {
    const char *origin = json_string_value(json_object_get(msg->metadata, "originStreamName"));
    if (!origin || !in_category(origin, sub->origin_stream_name))
      return NULL;
  }
  for (const ch_handler *h = sub->handlers; h->type; h++) {
    if (!strcmp(h->type, msg->type))
      return h->fn;
    if (!any && !strcmp(h->type, "$any"))
      any = h->fn;
  }
  return any;
}

static ch_result call(ch_test *t, const ch_subscription *sub, ch_handler_fn fn,
                      const ch_message *msg)
{
  ch_result r;

  t->current = msg;
  t->subscriber_id = sub->subscriber_id;
  t->write_index = 0;
  t->call_error[0] = '\0';
  r = fn(&t->ctx, t->state, msg);
  t->current = NULL;
  t->subscriber_id = NULL;
  t->handled++;
  if (r != CH_OK && !t->failed) {
    t->failed = true;
    set_text(t->error, "%s", t->call_error);
  }
  return r;
}

static const ch_message *message_at(const ch_test *t, int64_t global_position)
{
  if (global_position < 1 || global_position > (int64_t)t->message_count)
    return NULL;
  return &t->messages[global_position - 1]->msg;
}

ch_result ch_test_deliver(ch_test *t, int64_t global_position)
{
  const ch_message *msg = message_at(t, global_position);
  ch_result first = CH_OK;

  if (!t->started)
    die("ch_test_deliver() before ch_test_start() succeeded");
  if (!msg)
    die("ch_test_deliver(%" PRId64 "): the store has global positions 1 to %zu",
        global_position, t->message_count);
  act_begin(t);
  for (const ch_subscription *sub = t->desc.subscriptions; sub->stream_name; sub++) {
    ch_handler_fn fn = handler_for(sub, msg);
    ch_result r;

    if (fn && (r = call(t, sub, fn, msg)) != CH_OK && first == CH_OK)
      first = r;
  }
  return first;
}

ch_result ch_test_when(ch_test *t, const char *stream_name, const char *type,
                       const char *data_json, const char *metadata_json)
{
  return ch_test_deliver(t, ch_test_given(t, stream_name, type, data_json, metadata_json));
}

ch_result ch_test_run(ch_test *t)
{
  size_t calls = 0;

  if (!t->started)
    die("ch_test_run() before ch_test_start() succeeded");
  act_begin(t);
  for (;;) {
    size_t before = calls;

    for (size_t i = 0; t->desc.subscriptions[i].stream_name; i++) {
      const ch_subscription *sub = &t->desc.subscriptions[i];

      /* message_count grows as the handlers write */
      while (t->positions[i] < (int64_t)t->message_count) {
        const ch_message *msg = message_at(t, t->positions[i] + 1);
        ch_handler_fn fn = handler_for(sub, msg);

        if (fn) {
          ch_result r = call(t, sub, fn, msg);
          if (r != CH_OK && r != CH_SKIP)
            return r;
          if (++calls > RUN_MAX_CALLS)
            die("ch_test_run(): %d handler calls and not caught up: does the plugin answer"
                " its own messages without end?", RUN_MAX_CALLS);
        }
        t->positions[i]++;
      }
    }
    if (calls == before)
      return CH_OK;
  }
}

void ch_test_fail(ch_test *t, unsigned ops, int rc, int count, const char *text)
{
  if (count > 0 && rc >= 0)
    die("ch_test_fail(): rc %d is no failure (a CH_RC_* below 0, please)", rc);
  t->fail_ops = ops;
  t->fail_rc = rc;
  t->fail_count = count > 0 ? count : 0;
  set_text(t->fail_text, "%s", text ? text : "");
}

/* ---- Then ------------------------------------------------------------------ */

size_t ch_test_write_count(const ch_test *t)
{
  return t->write_count;
}

const ch_test_write *ch_test_write_at(const ch_test *t, size_t index)
{
  return index < t->write_count ? &t->writes[index].pub : NULL;
}

const ch_test_write *ch_test_written(const ch_test *t, const char *stream_name,
                                     const char *type)
{
  for (size_t i = 0; i < t->write_count; i++) {
    const ch_test_write *w = &t->writes[i].pub;

    if (w->rc == CH_RC_OK && (!stream_name || !strcmp(w->stream_name, stream_name)) &&
        (!type || !strcmp(w->type, type)))
      return w;
  }
  return NULL;
}

size_t ch_test_handled(const ch_test *t)
{
  return t->handled;
}

const char *ch_test_error(const ch_test *t)
{
  return t->error;
}

bool ch_test_logged(const ch_test *t, const char *text)
{
  for (size_t i = 0; i < t->log_count; i++)
    if (strstr(t->log_lines[i], text))
      return true;
  return false;
}

const ch_message *ch_test_message(const ch_test *t, int64_t global_position)
{
  return message_at(t, global_position);
}

const ch_message *ch_test_read(const ch_test *t, const char *stream_name, int64_t position)
{
  for (size_t i = 0; stream_name && i < t->message_count; i++) {
    const ch_message *m = &t->messages[i]->msg;
    if (m->position == position && !strcmp(m->stream_name, stream_name))
      return m;
  }
  return NULL;
}

int64_t ch_test_version(const ch_test *t, const char *stream_name)
{
  return stream_name ? version_of(t, stream_name) : -1;
}

int64_t ch_test_head(const ch_test *t)
{
  return (int64_t)t->message_count;
}

/* ---- JSON ------------------------------------------------------------------ */

static bool has(const json_t *value, json_t *want)
{
  if (!value)
    return false;
  if (json_is_object(want)) {
    const char *key;
    json_t *w;

    if (!json_is_object(value))
      return false;
    json_object_foreach(want, key, w)
      if (!has(json_object_get(value, key), w))
        return false;
    return true;
  }
  if (json_is_array(want)) {
    if (!json_is_array(value) || json_array_size(value) != json_array_size(want))
      return false;
    for (size_t i = 0; i < json_array_size(want); i++)
      if (!has(json_array_get(value, i), json_array_get(want, i)))
        return false;
    return true;
  }
  if (json_is_integer(want) && json_is_integer(value))
    return json_integer_value(want) == json_integer_value(value);
  if (json_is_number(want) && json_is_number(value))
    return !(json_number_value(want) < json_number_value(value)) &&
           !(json_number_value(want) > json_number_value(value));
  return json_equal(value, want);
}

bool ch_test_json_has(const json_t *value, const char *expected_json)
{
  json_t *want;
  bool yes;

  if (!expected_json)
    die("ch_test_json_has(): no expected JSON");
  want = parse_json(expected_json, "the expected JSON");
  yes = has(value, want);
  json_decref(want);
  return yes;
}
