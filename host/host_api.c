/* host_api.c - the function table plugins call, and its context. */
#include "host_api.h"

#include "fetch.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream_name.h"
#include "uuid.h"
#include "web_server.h"

void chd_ctx_init(ch_ctx *ctx, const chd_config *cfg, const chd_instance_config *inst,
                  const chd_plugin *plugin)
{
  memset(ctx, 0, sizeof *ctx);
  ctx->cfg = cfg;
  ctx->inst = inst;
  ctx->plugin = plugin;
}

void chd_ctx_begin_message(ch_ctx *ctx, const char *subscriber_id, const ch_message *msg)
{
  ctx->subscriber_id = subscriber_id;
  ctx->current = msg;
  ctx->write_index = 0;
  ctx->error[0] = '\0';
  ctx->undecodable[0] = '\0';
}

void chd_ctx_end_message(ch_ctx *ctx)
{
  ctx->current = NULL;
}

chd_log_fields chd_ctx_log_fields(const ch_ctx *ctx)
{
  chd_log_fields f = { ctx->inst ? ctx->inst->name : NULL, ctx->subscriber_id,
                       ctx->current, ctx->web ? ctx->log_extra : NULL };
  return f;
}

int chd_rc_from_store(chd_store_rc rc)
{
  switch (rc) {
  case CHD_STORE_OK:           return CH_RC_OK;
  case CHD_STORE_CONFLICT:     return CH_RC_CONFLICT;
  case CHD_STORE_DISCONNECTED: return CH_RC_UNAVAILABLE;
  case CHD_STORE_INVALID:      return CH_RC_INVALID;
  case CHD_STORE_INTERRUPTED:  return CH_RC_UNAVAILABLE;
  default:                   return CH_RC_ERROR;
  }
}

/* Record the client's error as the ctx's last error and map the code. */
static int mdb_failed(ch_ctx *ctx, chd_store_rc rc)
{
  snprintf(ctx->last_error, sizeof ctx->last_error, "%s", chd_mdb_error(ctx->mdb));
  return chd_rc_from_store(rc);
}

static void api_log(ch_ctx *ctx, ch_log_level level, const char *fmt, ...)
{
  chd_log_fields f = chd_ctx_log_fields(ctx);
  va_list ap;

  va_start(ap, fmt);
  chd_logv(level, &f, fmt, ap);
  va_end(ap);
}

static void api_set_error(ch_ctx *ctx, const char *fmt, ...)
{
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(ctx->error, sizeof ctx->error, fmt, ap);
  va_end(ap);
}

static const char *api_last_error(ch_ctx *ctx)
{
  return ctx->last_error;
}

static const char *api_config_get(ch_ctx *ctx, const char *key)
{
  const chd_config_kv *kv = chd_config_plugin_key(ctx->inst, key);

  if (kv)
    return kv->value;
  for (const ch_config_key *k = ctx->plugin->desc.config_keys; k && k->name; k++)
    if (!strcmp(k->name, key))
      return k->default_value;
  return NULL;
}

static int64_t api_config_int(ch_ctx *ctx, const char *key)
{
  int64_t v = 0;
  const char *s = api_config_get(ctx, key);

  if (s && chd_parse_int64(s, &v) != 0)
    v = 0;
  return v;
}

static bool api_config_bool(ch_ctx *ctx, const char *key)
{
  bool v = false;
  const char *s = api_config_get(ctx, key);

  if (s && chd_parse_bool(s, &v) != 0)
    v = false;
  return v;
}

/* The metadata of a write from a route handler: the plugin's (copied), with
 * the request's traceId and userId where it has none. NULL when metadata is
 * not an object, or out of memory. */
static json_t *request_metadata(ch_ctx *ctx, const json_t *metadata)
{
  const ch_request *req = &ctx->web->req;
  json_t *meta;

  if (metadata && !json_is_object(metadata))
    return NULL;
  /* json_copy() does not change its argument, but takes it non-const */
  meta = metadata ? json_copy((json_t *)(uintptr_t)metadata) : json_object();
  if (!meta)
    return NULL;
  if (!json_object_get(meta, "traceId") &&
      json_object_set_new(meta, "traceId", json_string(req->trace_id)) != 0)
    goto fail;
  if (req->user_id && !json_object_get(meta, "userId") &&
      json_object_set_new(meta, "userId", json_string(req->user_id)) != 0)
    goto fail;
  return meta;
fail:
  json_decref(meta);
  return NULL;
}

/*
 * Every write of a plugin notifies its category (mdb.h: push wake-ups), so
 * that subscribers wake at once even where the store has no notify
 * trigger; with the trigger, the two notifications fold into one.
 * notify_writes = false leaves it to the trigger, or to polling.
 *
 * Inside the batch's store transaction, the write looks for its id and its
 * expected version before writing (chd_mdb_write_opts.checked): a
 * redelivered write and a version conflict are answered without an error,
 * which would abort the transaction, and the handler goes on in it. Any
 * other failed write does abort it: the handler's later statements fail,
 * the commit fails, and the batch is replayed one message per transaction.
 */
static int api_write(ch_ctx *ctx, const char *stream_name, const char *type,
                     const json_t *data, const json_t *metadata,
                     int64_t expected_version, int64_t *out_position)
{
  chd_mdb_write_opts opts = { .notify = ctx->inst->notify_writes,
                              .checked = ctx->in_store_tx };
  char id[CHD_UUID_LEN];
  const char *use_id = NULL;
  chd_store_rc rc;

  ctx->last_error[0] = '\0';
  if (ctx->current && ctx->inst->deterministic_ids) {
    char name[700];
    /* the same write of the same delivery: same subscriber, place, stream
     * and type; a handler that decides otherwise on a redelivery writes anew */
    snprintf(name, sizeof name, "%s/%u/%s/%s", ctx->subscriber_id ? ctx->subscriber_id : "",
             ctx->write_index++, stream_name ? stream_name : "", type ? type : "");
    if (chd_uuid_v5(ctx->current->id, name, id) == 0)
      use_id = id;
  }
  if (ctx->web) {
    json_t *meta = request_metadata(ctx, metadata);
    if (!meta) {
      snprintf(ctx->last_error, sizeof ctx->last_error, "metadata is not an object,"
               " or out of memory");
      return CH_RC_INVALID;
    }
    rc = chd_mdb_write_with(ctx->mdb, stream_name, NULL, type, data, meta, expected_version,
                            &opts, out_position);
    json_decref(meta);
    return rc == CHD_STORE_OK ? CH_RC_OK : mdb_failed(ctx, rc);
  }
  rc = chd_mdb_write_with(ctx->mdb, stream_name, use_id, type, data, metadata,
                          expected_version, &opts, out_position);
  if (rc == CHD_STORE_DUPLICATE_ID && use_id) {
    chd_log_fields f = chd_ctx_log_fields(ctx);
    chd_log(CH_LOG_DEBUG, &f, "%s to '%s' was written by an earlier delivery", type,
            stream_name);
    if (out_position)
      *out_position = -1;
    return CH_RC_ALREADY_WRITTEN;
  }
  if (rc != CHD_STORE_OK)
    return mdb_failed(ctx, rc);
  return CH_RC_OK;
}

#define FETCH_PAGE 1000

static int64_t api_read_stream(ch_ctx *ctx, const char *stream_name, int64_t from,
                               int64_t max, int (*each)(void *, const ch_message *),
                               void *arg)
{
  int64_t seen = 0;

  ctx->last_error[0] = '\0';
  for (;;) {
    int64_t want = FETCH_PAGE;
    chd_mdb_batch b;
    chd_store_rc rc;
    bool stop = false;

    if (max >= 0 && max - seen < want)
      want = max - seen;
    if (want <= 0)
      return seen;
    rc = chd_mdb_read_stream(ctx->mdb, stream_name, from, want, &b);
    if (rc != CHD_STORE_OK)
      return mdb_failed(ctx, rc);
    for (size_t i = 0; i < b.count && !stop; i++) {
      if (b.decode_errors && b.decode_errors[i]) {
        snprintf(ctx->last_error, sizeof ctx->last_error, "%s", b.decode_errors[i]);
        chd_mdb_batch_release(&b);
        return CH_RC_ERROR;
      }
      seen++;
      from = b.messages[i].position + 1;
      stop = each(arg, &b.messages[i]) != 0;
    }
    stop = stop || (int64_t)b.count < want;
    chd_mdb_batch_release(&b);
    if (stop)
      return seen;
  }
}

static int api_read_last(ch_ctx *ctx, const char *stream_name, const char *type,
                         int (*each)(void *, const ch_message *), void *arg)
{
  chd_mdb_batch b;
  chd_store_rc rc;
  int found;

  ctx->last_error[0] = '\0';
  rc = chd_mdb_read_last(ctx->mdb, stream_name, type, &b);
  if (rc != CHD_STORE_OK)
    return mdb_failed(ctx, rc);
  found = b.count > 0;
  if (found && b.decode_errors && b.decode_errors[0]) {
    snprintf(ctx->last_error, sizeof ctx->last_error, "%s", b.decode_errors[0]);
    chd_mdb_batch_release(&b);
    return CH_RC_ERROR;
  }
  if (found)
    each(arg, &b.messages[0]);
  chd_mdb_batch_release(&b);
  return found;
}

static int api_stream_version(ch_ctx *ctx, const char *stream_name, int64_t *out_version)
{
  chd_store_rc rc;

  ctx->last_error[0] = '\0';
  rc = chd_mdb_stream_version(ctx->mdb, stream_name, out_version);
  return rc == CHD_STORE_OK ? CH_RC_OK : mdb_failed(ctx, rc);
}

static int api_fetch(ch_ctx *ctx, const char *stream_name, const ch_projection *projection,
                     void *entity, int64_t *out_version)
{
  return chd_fetch(ctx, api_read_stream, stream_name, projection, entity, out_version);
}

static struct pg_conn *api_view_db(ch_ctx *ctx)
{
  return ctx->view ? chd_viewdb_conn(ctx->view) : NULL;
}

static struct pg_conn *api_store_db(ch_ctx *ctx)
{
  PGconn *c = ctx->mdb ? chd_mdb_conn(ctx->mdb) : NULL;

  if ((!c || PQstatus(c) != CONNECTION_OK) && ctx->mdb &&
      chd_mdb_reconnect(ctx->mdb, 0) == CHD_STORE_OK)
    c = chd_mdb_conn(ctx->mdb);
  return c && PQstatus(c) == CONNECTION_OK ? c : NULL;
}

/*
 * The data or the metadata (`part`) of msg: from the batch the handler's
 * messages come from, decoded now if it was not (an envelope-only
 * subscription), else the message's own. A part that cannot be decoded
 * makes the message fail (ctx->undecodable).
 */
static json_t *message_part(ch_ctx *ctx, const ch_message *msg, unsigned part)
{
  ptrdiff_t i = ctx && ctx->batch && msg ? chd_mdb_batch_find(ctx->batch, msg) : -1;
  const char *why;
  json_t *j;

  if (!ctx)                  /* outside any call of the host's: the message's own */
    return msg ? (part == CHD_MDB_DATA ? msg->data : msg->metadata) : NULL;
  ctx->last_error[0] = '\0';
  if (!msg) {
    snprintf(ctx->last_error, sizeof ctx->last_error, "no message given");
    return NULL;
  }
  if (i < 0) {
    j = part == CHD_MDB_DATA ? msg->data : msg->metadata;
    if (!j)
      snprintf(ctx->last_error, sizeof ctx->last_error, "message at global position %" PRId64
               " is not one the host handed to this call", msg->global_position);
    return j;
  }
  why = chd_mdb_batch_decode(ctx->batch, (size_t)i, part);
  if (why) {
    snprintf(ctx->last_error, sizeof ctx->last_error, "%s", why);
    if (!ctx->undecodable[0])
      snprintf(ctx->undecodable, sizeof ctx->undecodable, "%s", why);
    return NULL;
  }
  return part == CHD_MDB_DATA ? ctx->batch->messages[i].data : ctx->batch->messages[i].metadata;
}

static json_t *api_message_data(ch_ctx *ctx, const ch_message *msg)
{
  return message_part(ctx, msg, CHD_MDB_DATA);
}

static json_t *api_message_metadata(ch_ctx *ctx, const ch_message *msg)
{
  return message_part(ctx, msg, CHD_MDB_METADATA);
}

static const char *api_subscriber_id(ch_ctx *ctx)
{
  return ctx->subscriber_id;
}

/* Eventide's Metadata#follow, with the book's traceId and userId. */
static json_t *api_follow(ch_ctx *ctx, const ch_message *msg, const char *origin_stream_name)
{
  static const char *const carried[] = { "traceId", "userId" };
  json_t *from = msg ? message_part(ctx, msg, CHD_MDB_METADATA) : NULL;
  json_t *meta = json_object();

  if (!meta)
    return NULL;
  for (size_t i = 0; from && i < sizeof carried / sizeof carried[0]; i++) {
    json_t *v = json_object_get(from, carried[i]);
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

/*
 * The paths config_path() made, kept for the life of the process: the
 * strings it returns must stay valid until destroy(), and a worker has few
 * such settings. Equal paths are kept once.
 */
typedef struct resolved_path {
  struct resolved_path *next;
  char path[];
} resolved_path;

static resolved_path *resolved_paths;

static const char *keep_path(const char *dir, size_t dirlen, const char *rel)
{
  size_t n = dirlen + strlen(rel);
  resolved_path *p;

  for (p = resolved_paths; p; p = p->next)
    if (strlen(p->path) == n && !strncmp(p->path, dir, dirlen) &&
        !strcmp(p->path + dirlen, rel))
      return p->path;
  p = malloc(sizeof *p + n + 1);
  if (!p)
    return NULL;
  memcpy(p->path, dir, dirlen);
  strcpy(p->path + dirlen, rel);
  p->next = resolved_paths;
  resolved_paths = p;
  return p->path;
}

static const char *api_config_path(ch_ctx *ctx, const char *key)
{
  const chd_config_kv *kv = chd_config_plugin_key(ctx->inst, key);
  const char *value = api_config_get(ctx, key);
  const char *file = ctx->cfg ? ctx->cfg->path : NULL;
  const char *slash = file ? strrchr(file, '/') : NULL;

  ctx->last_error[0] = '\0';
  if (!value || !*value || value[0] == '/' || (kv && kv->source != CHD_FROM_INI) || !slash)
    return value;   /* (an INI file without a directory part lies in this one) */
  value = keep_path(file, (size_t)(slash - file) + 1, value);
  if (!value)
    snprintf(ctx->last_error, sizeof ctx->last_error, "out of memory");
  return value;
}

const ch_host_api chd_host_api = {
  .struct_size = sizeof(ch_host_api),
  .abi_major = CH_ABI_MAJOR,
  .abi_minor = CH_ABI_MINOR,
  .log = api_log,
  .set_error = api_set_error,
  .last_error = api_last_error,
  .config_get = api_config_get,
  .config_int = api_config_int,
  .config_bool = api_config_bool,
  .write = api_write,
  .read_stream = api_read_stream,
  .read_last = api_read_last,
  .stream_version = api_stream_version,
  .fetch = api_fetch,
  .view_db = api_view_db,
  .store_db = api_store_db,
  .follow = api_follow,
  .config_path = api_config_path,
  .uuid_v4 = chd_uuid_v4,
  .uuid_v5 = chd_uuid_v5,
  .stream_category = chd_stream_category,
  .stream_id = chd_stream_id,
  .web = &chd_web_api,
  .message_data = api_message_data,
  .message_metadata = api_message_metadata,
  .subscriber_id = api_subscriber_id,
};
