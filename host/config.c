/* config.c - the host's INI configuration (inih). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <fcntl.h>
#include <unistd.h>

#include <ini.h>

#include "log.h"

#ifndef COMPHOST_PLUGINDIR
#error "COMPHOST_PLUGINDIR must name the installed plugin directory"
#endif

/*
 * How the file is read. inih splits "key = value" lines and strips comments,
 * but it does not tell its handler about section headers or line numbers. So
 * inih reads the file through read_line(), which numbers the lines, handles
 * the section headers itself and refuses what inih would silently bend:
 *
 * - indented lines: inih would take them as the continuation of the previous
 *   value (multi-line values), which no key of ours wants;
 * - lines longer than inih's line buffer: inih would cut them in two;
 * - section names longer than inih keeps (its MAX_SECTION is 50), text after
 *   the ']' of a header (inih ignores it).
 *
 * inih processes each line completely before it asks for the next one, so
 * when the handler runs, p->line is the line of its key. Parsing stops at the
 * first error: read_line() returns NULL once one is recorded.
 */
#define MAX_SECTION_NAME 49

enum kind {
  K_CONNINFO,   /* a connection string: empty means not set */
  K_TEXT,       /* any non-empty text */
  K_OPT_TEXT,   /* any text: empty means not set */
  K_INT,        /* a whole number in min..max */
  K_BOOL,
  K_ENUM        /* one of choices, stored as its index */
};

struct key_def {
  const char *name;
  enum kind kind;
  int64_t min, max;               /* K_INT */
  const char *const *choices;     /* K_ENUM: NULL-terminated, in enum order */
  size_t offset;                  /* K_INT, K_BOOL: the field it sets */
};

static const char *const log_levels[] = { "error", "warn", "info", "debug", NULL };
static const char *const position_stores[] = { "message_store", "view_data", NULL };
static const char *const position_formats[] = { "book", "eventide", NULL };
static const char *const failure_policies[] = { "park", "stop", NULL };

enum {
  HK_MESSAGE_STORE, HK_VIEW_DATA, HK_PLUGIN_DIR, HK_LOG_LEVEL, HK_SHUTDOWN_TIMEOUT_MS,
  HK_RESTART_BACKOFF_MAX_MS, HK_MAX_CRASH_RESTARTS, HK_HTTP_LISTEN,
  HK_HEALTH_MAX_HEARTBEAT_AGE_MS, HK_STATE_FILE, HK_HEALTH_MAX_STALL_MS, HK_SESSION_SECRET,
  HK_SESSION_SECRET_FILE, HK_COOKIE_SECURE, HK_SESSION_MAX_AGE_S, HK_MAX_BODY_BYTES,
  HK_REQUEST_TIMEOUT_S, HK_STATIC_DIR, HK_MESSAGE_STORE_READ, HK_COUNT
};

static const struct key_def host_keys[HK_COUNT] = {
  [HK_MESSAGE_STORE] = { .name = "message_store", .kind = K_CONNINFO },
  [HK_VIEW_DATA] = { .name = "view_data", .kind = K_CONNINFO },
  [HK_PLUGIN_DIR] = { .name = "plugin_dir", .kind = K_TEXT },
  [HK_LOG_LEVEL] = { .name = "log_level", .kind = K_ENUM, .choices = log_levels },
  [HK_SHUTDOWN_TIMEOUT_MS] = { .name = "shutdown_timeout_ms", .kind = K_INT,
    .min = 1, .max = 3600000, .offset = offsetof(chd_config, shutdown_timeout_ms) },
  [HK_RESTART_BACKOFF_MAX_MS] = { .name = "restart_backoff_max_ms", .kind = K_INT,
    .min = 1, .max = 3600000, .offset = offsetof(chd_config, restart_backoff_max_ms) },
  [HK_MAX_CRASH_RESTARTS] = { .name = "max_crash_restarts", .kind = K_INT,
    .min = 1, .max = 1000, .offset = offsetof(chd_config, max_crash_restarts) },
  [HK_HTTP_LISTEN] = { .name = "http_listen", .kind = K_OPT_TEXT },
  [HK_HEALTH_MAX_HEARTBEAT_AGE_MS] = { .name = "health_max_heartbeat_age_ms", .kind = K_INT,
    .min = 2000, .max = 3600000, .offset = offsetof(chd_config, health_max_heartbeat_age_ms) },
  [HK_STATE_FILE] = { .name = "state_file", .kind = K_OPT_TEXT },
  [HK_HEALTH_MAX_STALL_MS] = { .name = "health_max_stall_ms", .kind = K_INT,
    .min = 1000, .max = 86400000, .offset = offsetof(chd_config, health_max_stall_ms) },
  [HK_SESSION_SECRET] = { .name = "session_secret", .kind = K_OPT_TEXT },
  [HK_SESSION_SECRET_FILE] = { .name = "session_secret_file", .kind = K_OPT_TEXT },
  [HK_COOKIE_SECURE] = { .name = "cookie_secure", .kind = K_BOOL,
    .offset = offsetof(chd_config, cookie_secure) },
  [HK_SESSION_MAX_AGE_S] = { .name = "session_max_age_s", .kind = K_INT,
    .min = 60, .max = 31536000, .offset = offsetof(chd_config, session_max_age_s) },
  [HK_MAX_BODY_BYTES] = { .name = "max_body_bytes", .kind = K_INT,
    .min = 1024, .max = 67108864, .offset = offsetof(chd_config, max_body_bytes) },
  [HK_REQUEST_TIMEOUT_S] = { .name = "request_timeout_s", .kind = K_INT,
    .min = 1, .max = 3600, .offset = offsetof(chd_config, request_timeout_s) },
  [HK_STATIC_DIR] = { .name = "static_dir", .kind = K_OPT_TEXT },
  [HK_MESSAGE_STORE_READ] = { .name = "message_store_read", .kind = K_CONNINFO },
};

enum {
  IK_LIBRARY, IK_BATCH_SIZE, IK_POLL_INTERVAL_MS, IK_POSITION_UPDATE_INTERVAL,
  IK_GROUP_MEMBER, IK_GROUP_SIZE, IK_POSITION_STORE, IK_POSITION_FORMAT, IK_MAX_RETRIES,
  IK_RETRY_BACKOFF_MS, IK_BATCH_TRANSACTION, IK_STORE_TRANSACTION, IK_DETERMINISTIC_IDS,
  IK_ON_FAILURE, IK_BATCH_BYTES, IK_READ_AHEAD, IK_LISTEN, IK_MOUNT, IK_WORKERS,
  IK_VIEW_SYNCHRONOUS_COMMIT, IK_NOTIFY_WRITES, IK_LEASE_TIMEOUT_MS, IK_COUNT
};

#define INST_INT(key, lo, hi) \
  { .name = #key, .kind = K_INT, .min = (lo), .max = (hi), \
    .offset = offsetof(chd_instance_config, key) }
#define INST_BOOL(key) \
  { .name = #key, .kind = K_BOOL, .offset = offsetof(chd_instance_config, key) }

static const struct key_def instance_keys[IK_COUNT] = {
  [IK_LIBRARY] = { .name = "library", .kind = K_TEXT },
  [IK_BATCH_SIZE] = INST_INT(batch_size, 1, 100000),
  [IK_POLL_INTERVAL_MS] = INST_INT(poll_interval_ms, 1, 3600000),
  [IK_POSITION_UPDATE_INTERVAL] = INST_INT(position_update_interval, 1, 1000000),
  /* the upper bound is group_size - 1, checked at the end of the section */
  [IK_GROUP_MEMBER] = INST_INT(group_member, 0, 32766),
  [IK_GROUP_SIZE] = INST_INT(group_size, 0, 32767),
  [IK_POSITION_STORE] = { .name = "position_store", .kind = K_ENUM,
                          .choices = position_stores },
  [IK_POSITION_FORMAT] = { .name = "position_format", .kind = K_ENUM,
                           .choices = position_formats },
  [IK_MAX_RETRIES] = INST_INT(max_retries, 0, 1000),
  [IK_RETRY_BACKOFF_MS] = INST_INT(retry_backoff_ms, 1, 3600000),
  [IK_BATCH_TRANSACTION] = INST_BOOL(batch_transaction),
  [IK_STORE_TRANSACTION] = INST_BOOL(store_transaction),
  [IK_DETERMINISTIC_IDS] = INST_BOOL(deterministic_ids),
  [IK_ON_FAILURE] = { .name = "on_failure", .kind = K_ENUM, .choices = failure_policies },
  [IK_BATCH_BYTES] = INST_INT(batch_bytes, 1024, INT64_C(1073741824)),
  [IK_READ_AHEAD] = INST_BOOL(read_ahead),
  [IK_LISTEN] = { .name = "listen", .kind = K_OPT_TEXT },
  [IK_MOUNT] = { .name = "mount", .kind = K_OPT_TEXT },
  [IK_WORKERS] = INST_INT(workers, 1, 64),
  [IK_VIEW_SYNCHRONOUS_COMMIT] = INST_BOOL(view_synchronous_commit),
  [IK_NOTIFY_WRITES] = INST_BOOL(notify_writes),
  [IK_LEASE_TIMEOUT_MS] = INST_INT(lease_timeout_ms, 1000, 600000),
};

/* The lines of an instance's host keys, 0 when not set. */
struct instance_lines {
  int key[IK_COUNT];
};

struct parser {
  chd_config *cfg;
  const char *path;
  FILE *fp;
  char *buf;                      /* the line being read (getline) */
  size_t bufsize;
  int line;                       /* the number of the line inih has */
  enum { SEC_NONE, SEC_HOST, SEC_INSTANCE } sec;
  char section[MAX_SECTION_NAME + 1];
  int host_line;                  /* line of [host], 0 if none */
  int host_key_line[HK_COUNT];
  char *plugin_dir;               /* [host] plugin_dir as written */
  char *state_file;               /* [host] state_file as written */
  char *secret;                   /* [host] session_secret */
  char *secret_file;              /* [host] session_secret_file as written */
  char *static_dir;               /* [host] static_dir as written */
  struct instance_lines *lines;   /* parallel to cfg->instances */
  size_t capacity;                /* of cfg->instances and lines */
  char *err;
  size_t errlen;
  int err_line;
  bool failed;
};

/* Append to the string in buf, truncating at size. */
static void append(char *buf, size_t size, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));

static void append(char *buf, size_t size, const char *fmt, ...)
{
  size_t n;
  va_list ap;

  if (!buf || size == 0)
    return;
  n = strnlen(buf, size);
  if (n >= size - 1)
    return;
  va_start(ap, fmt);
  vsnprintf(buf + n, size - n, fmt, ap);
  va_end(ap);
}

/* "FILE:LINE: " (or "FILE: " when line is 0) and the message, into err. */
static void vformat_error(char *err, size_t errlen, const char *path, int line,
                          const char *fmt, va_list ap)
  __attribute__((format(printf, 5, 0)));

static void vformat_error(char *err, size_t errlen, const char *path, int line,
                          const char *fmt, va_list ap)
{
  size_t n;

  if (!err || errlen == 0)
    return;
  if (line > 0)
    snprintf(err, errlen, "%s:%d: ", path, line);
  else
    snprintf(err, errlen, "%s: ", path);
  n = strlen(err);
  if (n < errlen - 1)
    vsnprintf(err + n, errlen - n, fmt, ap);
}

static void format_error(char *err, size_t errlen, const char *path, int line,
                         const char *fmt, ...)
  __attribute__((format(printf, 5, 6)));

static void format_error(char *err, size_t errlen, const char *path, int line,
                         const char *fmt, ...)
{
  va_list ap;

  va_start(ap, fmt);
  vformat_error(err, errlen, path, line, fmt, ap);
  va_end(ap);
}

/* Record the first error of the parse; later ones are dropped. */
static void fail(struct parser *p, int line, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));

static void fail(struct parser *p, int line, const char *fmt, ...)
{
  va_list ap;

  if (p->failed)
    return;
  p->failed = true;
  p->err_line = line;
  va_start(ap, fmt);
  vformat_error(p->err, p->errlen, p->path, line, fmt, ap);
  va_end(ap);
}

/* a, b, c and d in a new string. */
static char *concat(const char *a, const char *b, const char *c, const char *d)
{
  size_t n = strlen(a) + strlen(b) + strlen(c) + strlen(d) + 1;
  char *s = malloc(n);

  if (s)
    snprintf(s, n, "%s%s%s%s", a, b, c, d);
  return s;
}

/* `rel` relative to the directory of the file `file`: as given when it is
 * absolute or when `file` has no directory part. */
static char *beside(const char *file, const char *rel)
{
  const char *slash = strrchr(file, '/');
  size_t dirlen;
  char *s;

  if (rel[0] == '/' || !slash)
    return strdup(rel);
  dirlen = (size_t)(slash - file) + 1;
  s = malloc(dirlen + strlen(rel) + 1);
  if (!s)
    return NULL;
  memcpy(s, file, dirlen);
  strcpy(s + dirlen, rel);
  return s;
}

static int find_key(const struct key_def *defs, int count, const char *name)
{
  for (int i = 0; i < count; i++)
    if (!strcmp(defs[i].name, name))
      return i;
  return -1;
}

#define BOOL_HINT "(true/false, yes/no, on/off, 1/0)"

/* Parse the value of a host key into *n (K_INT; K_BOOL as 0 or 1; K_ENUM as
 * the index of the choice). Returns false after fail(). */
static bool parse_value(struct parser *p, const struct key_def *def, const char *value,
                        int64_t *n)
{
  bool b;

  *n = 0;
  if (def->kind == K_CONNINFO || def->kind == K_OPT_TEXT)
    return true;
  if (!*value) {
    fail(p, p->line, "[%s] %s: empty value", p->section, def->name);
    return false;
  }
  switch (def->kind) {
  case K_INT:
    if (chd_parse_int64(value, n) != 0) {
      fail(p, p->line, "[%s] %s: '%s' is not a whole number", p->section, def->name, value);
      return false;
    }
    if (*n < def->min || *n > def->max) {
      fail(p, p->line, "[%s] %s: '%s' is out of range (%" PRId64 "..%" PRId64 ")",
           p->section, def->name, value, def->min, def->max);
      return false;
    }
    return true;
  case K_BOOL:
    if (chd_parse_bool(value, &b) != 0) {
      fail(p, p->line, "[%s] %s: '%s' is not a boolean " BOOL_HINT, p->section, def->name,
           value);
      return false;
    }
    *n = b;
    return true;
  case K_ENUM:
    for (int i = 0; def->choices[i]; i++) {
      if (!strcmp(def->choices[i], value)) {
        *n = i;
        return true;
      }
    }
    {
      char list[256] = "";

      for (int i = 0; def->choices[i]; i++)
        append(list, sizeof list, "%s%s", i ? ", " : "", def->choices[i]);
      fail(p, p->line, "[%s] %s: '%s' is not one of %s", p->section, def->name, value, list);
    }
    return false;
  default:
    return true;
  }
}

/* Set the K_INT or K_BOOL field of def in the struct at base. */
static void set_field(void *base, const struct key_def *def, int64_t n)
{
  char *field = (char *)base + def->offset;

  if (def->kind == K_INT)
    *(int64_t *)(void *)field = n;
  else if (def->kind == K_BOOL)
    *(bool *)(void *)field = n != 0;
}

static bool set_string(struct parser *p, char **dst, const char *value)
{
  char *s = NULL;

  if (value && *value && !(s = strdup(value))) {
    fail(p, 0, "out of memory");
    return false;
  }
  free(*dst);
  *dst = s;
  return true;
}

static void host_key(struct parser *p, const char *name, const char *value)
{
  chd_config *cfg = p->cfg;
  int id = find_key(host_keys, HK_COUNT, name);
  int64_t n;

  if (id < 0) {
    char list[512] = "";

    for (int i = 0; i < HK_COUNT; i++)
      append(list, sizeof list, "%s%s", i ? ", " : "", host_keys[i].name);
    fail(p, p->line, "[host] %s: unknown key (known: %s)", name, list);
    return;
  }
  if (p->host_key_line[id]) {
    fail(p, p->line, "[host] %s: duplicate key (first on line %d)", name,
         p->host_key_line[id]);
    return;
  }
  p->host_key_line[id] = p->line;
  if (!parse_value(p, &host_keys[id], value, &n))
    return;
  switch (id) {
  case HK_MESSAGE_STORE:
    set_string(p, &cfg->message_store, value);
    break;
  case HK_VIEW_DATA:
    set_string(p, &cfg->view_data, value);
    break;
  case HK_MESSAGE_STORE_READ:
    set_string(p, &cfg->message_store_read, value);
    break;
  case HK_PLUGIN_DIR:
    set_string(p, &p->plugin_dir, value);
    break;
  case HK_LOG_LEVEL:
    cfg->log_level = (ch_log_level)n;
    break;
  case HK_HTTP_LISTEN: {
    char host[64];
    int port;

    if (*value && chd_parse_listen(value, host, sizeof host, &port) != 0)
      fail(p, p->line, "[host] http_listen: '%s' is not HOST:PORT (an IP address or"
           " localhost, and a port from 0 to 65535)", value);
    else
      set_string(p, &cfg->http_listen, value);
    break;
  }
  case HK_STATE_FILE:
    set_string(p, &p->state_file, value);
    break;
  case HK_SESSION_SECRET:
    set_string(p, &p->secret, value);
    break;
  case HK_SESSION_SECRET_FILE:
    set_string(p, &p->secret_file, value);
    break;
  case HK_STATIC_DIR:
    set_string(p, &p->static_dir, value);
    break;
  default:
    set_field(cfg, &host_keys[id], n);
    break;
  }
}

static void plugin_key(struct parser *p, chd_instance_config *inst, const char *name,
                       const char *value)
{
  const chd_config_kv *first = chd_config_plugin_key(inst, name);
  chd_config_kv *kvs, *kv;

  if (first) {
    fail(p, p->line, "[%s] %s: duplicate key (first on line %d)", p->section, name,
         first->line);
    return;
  }
  kvs = realloc(inst->plugin_keys, (inst->plugin_key_count + 1) * sizeof *kvs);
  if (!kvs) {
    fail(p, 0, "out of memory");
    return;
  }
  inst->plugin_keys = kvs;
  kv = &kvs[inst->plugin_key_count];
  memset(kv, 0, sizeof *kv);
  kv->key = strdup(name);
  kv->value = strdup(value);
  kv->line = p->line;
  inst->plugin_key_count++;
  if (!kv->key || !kv->value)
    fail(p, 0, "out of memory");
}

static void instance_key(struct parser *p, const char *name, const char *value)
{
  chd_config *cfg = p->cfg;
  chd_instance_config *inst = &cfg->instances[cfg->instance_count - 1];
  struct instance_lines *lines = &p->lines[cfg->instance_count - 1];
  int id = find_key(instance_keys, IK_COUNT, name);
  int64_t n;

  if (id < 0) {
    plugin_key(p, inst, name, value);
    return;
  }
  if (lines->key[id]) {
    fail(p, p->line, "[%s] %s: duplicate key (first on line %d)", p->section, name,
         lines->key[id]);
    return;
  }
  lines->key[id] = p->line;
  if (id == IK_GROUP_MEMBER && !strcmp(value, "auto")) {
    inst->group_auto = true;        /* the slots are claimed through leases */
    return;
  }
  if (!parse_value(p, &instance_keys[id], value, &n))
    return;
  switch (id) {
  case IK_LIBRARY: {
    size_t len = strlen(value);

    /* a name gets ".so" appended: "x.so" would look for x.so.so */
    if (!strchr(value, '/') && len > 3 && !strcmp(value + len - 3, ".so")) {
      fail(p, p->line, "[%s] library: '%s' is taken as a plugin name, not a file: "
           "write '%.*s', or a path with '/'", p->section, value, (int)(len - 3), value);
      return;
    }
    if (set_string(p, &inst->library, value))
      inst->library_line = p->line;
    break;
  }
  case IK_POSITION_STORE:
    inst->position_store = (chd_position_where)n;
    break;
  case IK_POSITION_FORMAT:
    inst->position_format = (chd_position_format)n;
    break;
  case IK_ON_FAILURE:
    inst->on_failure = (chd_on_failure)n;
    break;
  case IK_LISTEN: {
    char host[64];
    int port;

    if (*value && chd_parse_listen(value, host, sizeof host, &port) != 0)
      fail(p, p->line, "[%s] listen: '%s' is not HOST:PORT (an IP address or"
           " localhost, and a port from 0 to 65535)", p->section, value);
    else if (set_string(p, &inst->listen, value))
      inst->listen_line = p->line;
    break;
  }
  case IK_MOUNT:
    if (*value && !chd_config_mount_valid(value))
      fail(p, p->line, "[%s] mount: '%s' is not a path such as / or /name (a-z, 0-9, '-',"
           " '_' and '.' between slashes, no trailing slash)", p->section, value);
    else
      set_string(p, &inst->mount, value);
    break;
  default:
    set_field(inst, &instance_keys[id], n);
    break;
  }
}

/* The handler of inih: one "key = value" of the line p->line. */
static int on_key(void *user, const char *section, const char *name, const char *value)
{
  struct parser *p = user;

  if (p->failed)
    return 0;
  if (!value)
    value = "";
  if (!*name)
    fail(p, p->line, "missing key name before '='");
  else if (p->sec == SEC_NONE)
    fail(p, p->line, "%s: key outside any section (add [host] or a plugin section above it)",
         name);
  else if (strcmp(section, p->section))
    /* cannot happen: read_line() saw every header inih saw */
    fail(p, p->line, "[%s] %s: section header not understood", section, name);
  else if (p->sec == SEC_HOST)
    host_key(p, name, value);
  else
    instance_key(p, name, value);
  return !p->failed;
}

/* Checks that need the whole section. */
static void finish_section(struct parser *p)
{
  const chd_instance_config *inst;
  const struct instance_lines *lines;

  if (p->sec != SEC_INSTANCE || p->failed)
    return;
  inst = &p->cfg->instances[p->cfg->instance_count - 1];
  lines = &p->lines[p->cfg->instance_count - 1];
  if (inst->group_auto && inst->group_size == 0)
    fail(p, lines->key[IK_GROUP_MEMBER], "[%s] group_member: auto needs group_size (the"
         " number of slots the hosts share)", inst->name);
  else if (inst->group_auto && inst->group_size > CHD_GROUP_AUTO_MAX)
    fail(p, lines->key[IK_GROUP_SIZE], "[%s] group_size: '%" PRId64 "' is out of range with"
         " group_member = auto (1..%d)", inst->name, inst->group_size, CHD_GROUP_AUTO_MAX);
  else if (!inst->group_auto && lines->key[IK_LEASE_TIMEOUT_MS])
    fail(p, lines->key[IK_LEASE_TIMEOUT_MS], "[%s] lease_timeout_ms: only with group_member"
         " = auto", inst->name);
  else if (inst->group_size == 0 && inst->group_member > 0)
    fail(p, lines->key[IK_GROUP_MEMBER], "[%s] group_member: given without group_size",
         inst->name);
  else if (inst->group_size > 0 && inst->group_member >= inst->group_size)
    fail(p, lines->key[IK_GROUP_MEMBER],
         "[%s] group_member: '%" PRId64 "' is out of range (0..%" PRId64
         " with group_size = %" PRId64 ")",
         inst->name, inst->group_member, inst->group_size - 1, inst->group_size);
}

static void start_instance(struct parser *p, const char *name)
{
  chd_config *cfg = p->cfg;
  chd_instance_config *inst;

  if (cfg->instance_count == p->capacity) {
    size_t cap = p->capacity ? p->capacity * 2 : 4;
    chd_instance_config *insts = realloc(cfg->instances, cap * sizeof *insts);
    struct instance_lines *lines;

    if (!insts) {
      fail(p, 0, "out of memory");
      return;
    }
    cfg->instances = insts;
    lines = realloc(p->lines, cap * sizeof *lines);
    if (!lines) {
      fail(p, 0, "out of memory");
      return;
    }
    p->lines = lines;
    p->capacity = cap;
  }
  inst = &cfg->instances[cfg->instance_count];
  memset(inst, 0, sizeof *inst);
  memset(&p->lines[cfg->instance_count], 0, sizeof p->lines[0]);
  cfg->instance_count++;
  inst->line = p->line;
  inst->batch_size = 100;
  inst->poll_interval_ms = 100;
  inst->position_update_interval = 100;
  inst->group_member = 0;
  inst->group_size = 0;
  inst->group_auto = false;
  inst->lease_timeout_ms = CHD_DEFAULT_LEASE_TIMEOUT_MS;
  inst->position_store = CHD_POSITION_MESSAGE_STORE;
  inst->position_format = CHD_POSITION_FORMAT_BOOK;
  inst->max_retries = 5;
  inst->retry_backoff_ms = 200;
  inst->batch_transaction = false;   /* settled by resolve() */
  inst->store_transaction = false;
  inst->deterministic_ids = true;
  inst->on_failure = CHD_ON_FAILURE_PARK;
  inst->batch_bytes = CHD_DEFAULT_BATCH_BYTES;
  inst->read_ahead = true;
  inst->notify_writes = true;
  inst->workers = 1;
  if (!(inst->name = strdup(name)))
    fail(p, 0, "out of memory");
}

static bool section_char(char c)
{
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

/* A "[name]" line, s without leading or trailing white space. */
static void section_header(struct parser *p, char *s)
{
  char *end = strchr(s, ']');
  const char *rest;
  size_t len;

  if (!end) {
    fail(p, p->line, "missing ']' after the section name");
    return;
  }
  for (rest = end + 1; isspace((unsigned char)*rest); rest++)
    ;
  if (*rest && *rest != ';' && *rest != '#') {
    fail(p, p->line, "unexpected text after ']': '%s'", rest);
    return;
  }
  *end = '\0';
  s++;
  len = strlen(s);
  if (len == 0) {
    fail(p, p->line, "empty section name");
    return;
  }
  for (const char *c = s; *c; c++) {
    if (!section_char(*c)) {
      fail(p, p->line, "invalid section name '%s' (use a-z, 0-9, '_', '.' and '-')", s);
      return;
    }
  }
  if (len > MAX_SECTION_NAME) {
    fail(p, p->line, "section name '%s' is too long (at most %d characters)", s,
         MAX_SECTION_NAME);
    return;
  }

  finish_section(p);
  if (p->failed)
    return;
  if (!strcmp(s, "host")) {
    if (p->host_line) {
      fail(p, p->line, "duplicate section [host] (first on line %d)", p->host_line);
      return;
    }
    p->host_line = p->line;
    p->sec = SEC_HOST;
  } else {
    for (size_t i = 0; i < p->cfg->instance_count; i++) {
      if (!strcmp(p->cfg->instances[i].name, s)) {
        fail(p, p->line, "duplicate section [%s] (first on line %d)", s,
             p->cfg->instances[i].line);
        return;
      }
    }
    start_instance(p, s);
    if (p->failed)
      return;
    p->sec = SEC_INSTANCE;
  }
  memcpy(p->section, s, len + 1);
}

/* The separator of a "key = value" line as inih finds it: the first '=' or
 * ':' before an inline comment (';' after white space). */
static bool has_separator(const char *s)
{
  bool was_space = false;

  for (; *s; s++) {
    if (*s == '=' || *s == ':')
      return true;
    if (was_space && *s == ';')
      return false;
    was_space = isspace((unsigned char)*s);
  }
  return false;
}

/* The reader of inih (fgets-like): the next line, checked, and a section
 * header applied to the parser. Blank lines and comments are passed on
 * empty, so their length does not matter. */
static char *read_line(char *str, int num, void *stream)
{
  struct parser *p = stream;
  ssize_t got;
  char *s, *t;
  size_t len;

  if (p->failed || num < 2)
    return NULL;
  errno = 0;
  got = getline(&p->buf, &p->bufsize, p->fp);
  if (got < 0) {
    if (ferror(p->fp)) {
      p->failed = true;
      p->err_line = p->line + 1;
      if (p->err && p->errlen)
        snprintf(p->err, p->errlen, "cannot read '%s': %s", p->path,
                 strerror(errno ? errno : EIO));
    }
    return NULL;
  }
  p->line++;
  s = p->buf;
  if (p->line == 1 && got >= 3 && !memcmp(s, "\xEF\xBB\xBF", 3))
    s += 3;   /* a UTF-8 byte order mark */
  len = strlen(s);
  while (len > 0 && isspace((unsigned char)s[len - 1]))
    s[--len] = '\0';
  for (t = s; isspace((unsigned char)*t); t++)
    ;

  if (!*t || *t == ';' || *t == '#') {
    strcpy(str, "\n");
    return str;
  }
  if (t != s) {
    fail(p, p->line, "unexpected indentation (multi-line values are not supported)");
    return NULL;
  }
  if (len > (size_t)num - 2) {
    /* inih would cut the line in two (room for '\n' and '\0') */
    fail(p, p->line, "line too long (%zu characters, at most %d)", len, num - 2);
    return NULL;
  }
  memcpy(str, s, len);
  str[len] = '\n';
  str[len + 1] = '\0';
  if (*s == '[')
    section_header(p, s);
  else if (!has_separator(s))
    fail(p, p->line, "expected 'key = value', '[section]' or a comment, not '%s'", s);
  return p->failed ? NULL : str;
}

/*
 * The passwords of a connection string, as spans of the text, for masking.
 * libpq takes two forms (and refuses what does not parse, quoting it in its
 * message, which is why the raw text matters here):
 * - a URI, postgresql://[user[:password]@]host.../db?password=...: the
 *   password of the user part ends at the first '@' before any '/', as libpq
 *   reads it; a query parameter ends at '&' or at the end;
 * - key=value pairs: a value is 'quoted' (with \' and \\ escapes) or runs
 *   to the next white space.
 * Returns the number of spans (at most max).
 */
struct span {
  size_t start, end;
};

static size_t password_spans(const char *s, struct span *spans, size_t max)
{
  size_t n = 0;

  if (!strncmp(s, "postgresql://", 13) || !strncmp(s, "postgres://", 11)) {
    const char *a = strstr(s, "://") + 3, *e = a, *q;

    while (*e && *e != '@' && *e != '/')
      e++;
    if (*e == '@') {
      const char *colon = memchr(a, ':', (size_t)(e - a));
      if (colon && n < max)
        spans[n++] = (struct span){ (size_t)(colon + 1 - s), (size_t)(e - s) };
    }
    for (q = strchr(s, '?'); q && *q; ) {
      const char *param = q + 1, *end = param + strcspn(param, "&");

      if (!strncmp(param, "password=", 9) && n < max)
        spans[n++] = (struct span){ (size_t)(param + 9 - s), (size_t)(end - s) };
      q = *end ? end : NULL;
    }
    return n;
  }
  for (const char *c = s; *c; ) {
    const char *key, *val;
    size_t keylen;

    while (isspace((unsigned char)*c))
      c++;
    key = c;
    while (*c && *c != '=' && !isspace((unsigned char)*c))
      c++;
    keylen = (size_t)(c - key);
    while (isspace((unsigned char)*c))
      c++;
    if (*c != '=') {
      if (c == key && *c)
        c++;      /* not a key: step over it */
      continue;
    }
    c++;
    while (isspace((unsigned char)*c))
      c++;
    if (*c == '\'') {
      val = ++c;
      while (*c && *c != '\'') {
        if (*c == '\\' && c[1])
          c++;
        c++;
      }
    } else {
      val = c;
      while (*c && !isspace((unsigned char)*c)) {
        if (*c == '\\' && c[1])
          c++;
        c++;
      }
    }
    if (keylen == 8 && !strncmp(key, "password", 8) && c > val && n < max)
      spans[n++] = (struct span){ (size_t)(val - s), (size_t)(c - s) };
    if (*c == '\'')
      c++;
  }
  return n;
}

void chd_conninfo_mask(const char *conninfo, char *out, size_t size)
{
  struct span spans[8];
  size_t n, from = 0;

  if (!out || size == 0)
    return;
  out[0] = '\0';
  if (!conninfo)
    return;
  n = password_spans(conninfo, spans, sizeof spans / sizeof spans[0]);
  for (size_t i = 0; i < n; i++) {
    append(out, size, "%.*s%s", (int)(spans[i].start - from), conninfo + from,
           CHD_SECRET_TEXT);
    from = spans[i].end;
  }
  append(out, size, "%s", conninfo + from);
}

void chd_conninfo_add_secrets(const char *conninfo)
{
  struct span spans[8];
  size_t n;

  if (!conninfo)
    return;
  n = password_spans(conninfo, spans, sizeof spans / sizeof spans[0]);
  for (size_t i = 0; i < n; i++) {
    char *pw = strndup(conninfo + spans[i].start, spans[i].end - spans[i].start);

    chd_log_add_secret(pw);
    free(pw);
  }
}

/* The first line of a secret file, without its line end. NULL after fail(). */
static char *read_secret(struct parser *p, const char *file)
{
  FILE *fp = fopen(file, "r");
  char *line = NULL;
  size_t size = 0;
  ssize_t got;

  if (!fp) {
    fail(p, p->host_key_line[HK_SESSION_SECRET_FILE], "[host] session_secret_file: cannot"
         " read '%s': %s", file, strerror(errno));
    return NULL;
  }
  got = getline(&line, &size, fp);
  fclose(fp);
  if (got <= 0) {
    free(line);
    fail(p, p->host_key_line[HK_SESSION_SECRET_FILE], "[host] session_secret_file: '%s'"
         " is empty", file);
    return NULL;
  }
  while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
    line[--got] = '\0';
  return line;
}

/* After the file: environment overrides, paths and checks across sections. */
static void resolve(struct parser *p, const char *plugin_dir_override)
{
  chd_config *cfg = p->cfg;
  const char *env;

  env = getenv("MESSAGE_STORE_CONNECTION_STRING");
  if (env && *env && !set_string(p, &cfg->message_store, env))
    return;
  env = getenv("DATABASE_URL");
  if (env && *env && !set_string(p, &cfg->view_data, env))
    return;
  if (!cfg->message_store) {
    fail(p, 0, "no message store: set [host] message_store or MESSAGE_STORE_CONNECTION_STRING");
    return;
  }
  chd_conninfo_add_secrets(cfg->message_store);
  chd_conninfo_add_secrets(cfg->view_data);
  chd_conninfo_add_secrets(cfg->message_store_read);

  env = getenv("COMPHOST_PLUGIN_DIR");
  if (plugin_dir_override && *plugin_dir_override)
    cfg->plugin_dir = strdup(plugin_dir_override);
  else if (env && *env)
    cfg->plugin_dir = strdup(env);
  else if (p->plugin_dir)
    cfg->plugin_dir = beside(p->path, p->plugin_dir);
  else
    cfg->plugin_dir = strdup(COMPHOST_PLUGINDIR);
  if (!cfg->plugin_dir) {
    fail(p, 0, "out of memory");
    return;
  }
  if (p->state_file && !(cfg->state_file = beside(p->path, p->state_file))) {
    fail(p, 0, "out of memory");
    return;
  }

  if (p->static_dir && !(cfg->static_dir = beside(p->path, p->static_dir))) {
    fail(p, 0, "out of memory");
    return;
  }
  env = getenv("COMPHOST_SESSION_SECRET");
  if (env && *env) {
    if (!set_string(p, &cfg->session_secret, env))
      return;
  } else if (p->secret) {
    cfg->session_secret = p->secret;
    p->secret = NULL;
  } else if (p->secret_file) {
    char *file = beside(p->path, p->secret_file);
    if (!file) {
      fail(p, 0, "out of memory");
      return;
    }
    cfg->session_secret = read_secret(p, file);
    free(file);
    if (p->failed)
      return;
  }
  if (cfg->session_secret && strlen(cfg->session_secret) < 32) {
    fail(p, p->host_key_line[HK_SESSION_SECRET] ? p->host_key_line[HK_SESSION_SECRET]
         : p->host_key_line[HK_SESSION_SECRET_FILE],
         "the session secret is too short (at least 32 characters)");
    return;
  }

  for (size_t i = 0; i < cfg->instance_count; i++) {
    chd_instance_config *inst = &cfg->instances[i];
    const struct instance_lines *lines = &p->lines[i];
    const char *lib = inst->library ? inst->library : inst->name;
    size_t dirlen = strlen(cfg->plugin_dir);
    char *path;

    if (strchr(lib, '/'))
      path = beside(p->path, lib);
    else
      path = concat(cfg->plugin_dir, dirlen > 0 && cfg->plugin_dir[dirlen - 1] == '/' ? "" : "/",
                    lib, ".so");
    if (!path) {
      fail(p, 0, "out of memory");
      return;
    }
    free(inst->library);
    inst->library = path;

    inst->batch_transaction_set = lines->key[IK_BATCH_TRANSACTION] != 0;
    if (!inst->batch_transaction_set)
      inst->batch_transaction = inst->position_store == CHD_POSITION_VIEW_DATA;
    if (inst->position_store == CHD_POSITION_VIEW_DATA && !cfg->view_data) {
      fail(p, lines->key[IK_POSITION_STORE],
           "[%s] position_store: view_data needs a view database: set [host] view_data"
           " or DATABASE_URL", inst->name);
      return;
    }
    if (!lines->key[IK_VIEW_SYNCHRONOUS_COMMIT]) {
      inst->view_synchronous_commit = inst->position_store != CHD_POSITION_VIEW_DATA;
    } else if (!inst->view_synchronous_commit &&
               inst->position_store != CHD_POSITION_VIEW_DATA) {
      /* the position commits elsewhere: a crash could keep it and lose the view */
      fail(p, lines->key[IK_VIEW_SYNCHRONOUS_COMMIT],
           "[%s] view_synchronous_commit: off needs position_store = view_data (the"
           " position must commit in the same transaction as the view)", inst->name);
      return;
    }
  }
}

int chd_config_load(chd_config *cfg, const char *path, const char *plugin_dir_override,
                    char *err, size_t errlen)
{
  struct parser p;
  int rc;

  memset(cfg, 0, sizeof *cfg);
  if (err && errlen)
    err[0] = '\0';
  memset(&p, 0, sizeof p);
  p.cfg = cfg;
  p.path = path ? path : "";
  p.err = err;
  p.errlen = errlen;

  cfg->log_level = CH_LOG_INFO;
  cfg->shutdown_timeout_ms = 30000;
  cfg->restart_backoff_max_ms = 60000;
  cfg->max_crash_restarts = 3;
  cfg->health_max_heartbeat_age_ms = 10000;
  cfg->health_max_stall_ms = 60000;
  cfg->session_max_age_s = 604800;
  cfg->max_body_bytes = 65536;
  cfg->request_timeout_s = 30;

  if (!path || !*path) {
    p.failed = true;
    if (err && errlen)
      snprintf(err, errlen, "no configuration file given");
    return -1;
  }
  if (!(cfg->path = strdup(path))) {
    fail(&p, 0, "out of memory");
    goto done;
  }
  p.fp = fopen(path, "r");
  if (!p.fp) {
    p.failed = true;
    if (err && errlen)
      snprintf(err, errlen, "cannot read '%s': %s", path, strerror(errno));
    goto done;
  }

  rc = ini_parse_stream(read_line, &p, on_key, &p);
  if (rc == -2) {
    fail(&p, 0, "out of memory");
  } else if (rc > 0 && (!p.failed || rc < p.err_line)) {
    /* a line inih refused that read_line() let through: should not happen */
    p.failed = false;
    fail(&p, rc, "cannot parse this line");
  }
  finish_section(&p);
  if (!p.failed)
    resolve(&p, plugin_dir_override);

done:
  if (p.fp)
    fclose(p.fp);
  free(p.buf);
  free(p.plugin_dir);
  free(p.state_file);
  if (p.secret) {
    explicit_bzero(p.secret, strlen(p.secret));
    free(p.secret);
  }
  free(p.secret_file);
  free(p.static_dir);
  free(p.lines);
  if (p.failed) {
    chd_config_release(cfg);
    return -1;
  }
  return 0;
}

void chd_config_release(chd_config *cfg)
{
  if (!cfg)
    return;
  for (size_t i = 0; i < cfg->instance_count; i++) {
    chd_instance_config *inst = &cfg->instances[i];

    for (size_t j = 0; j < inst->plugin_key_count; j++) {
      free(inst->plugin_keys[j].key);
      free(inst->plugin_keys[j].value);
      free(inst->plugin_keys[j].origin);
    }
    free(inst->plugin_keys);
    free(inst->name);
    free(inst->library);
    free(inst->listen);
    free(inst->mount);
  }
  free(cfg->instances);
  free(cfg->path);
  free(cfg->message_store);
  free(cfg->view_data);
  free(cfg->message_store_read);
  free(cfg->plugin_dir);
  free(cfg->http_listen);
  free(cfg->state_file);
  free(cfg->static_dir);
  if (cfg->session_secret) {
    explicit_bzero(cfg->session_secret, strlen(cfg->session_secret));
    free(cfg->session_secret);
  }
  memset(cfg, 0, sizeof *cfg);
}

const chd_config_kv *chd_config_plugin_key(const chd_instance_config *inst, const char *key)
{
  if (!inst || !key)
    return NULL;
  for (size_t i = 0; i < inst->plugin_key_count; i++)
    if (inst->plugin_keys[i].key && !strcmp(inst->plugin_keys[i].key, key))
      return &inst->plugin_keys[i];
  return NULL;
}

void chd_config_secret_env(const char *section, const char *key, char *buf, size_t size)
{
  size_t n;

  if (!buf || size == 0)
    return;
  snprintf(buf, size, "COMPHOST_%s_%s", section, key);
  for (n = 9; buf[n]; n++)
    buf[n] = isalnum((unsigned char)buf[n]) ? (char)toupper((unsigned char)buf[n]) : '_';
}

static const ch_config_key *find_declared(const ch_config_key *declared, const char *name)
{
  for (const ch_config_key *k = declared; k && k->name; k++)
    if (!strcmp(k->name, name))
      return k;
  return NULL;
}

/* The biggest secret file the host reads. */
#define SECRET_FILE_MAX 65536

/* The content of a secret file, one trailing newline dropped; NULL with the
 * reason in why. */
static char *read_secret_file(const char *path, char *why, size_t size)
{
  struct stat st;
  char *buf = NULL;
  size_t len = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

  if (fd < 0) {
    snprintf(why, size, "cannot read '%s': %s", path, strerror(errno));
    return NULL;
  }
  /* the file opened is the file checked */
  if (fstat(fd, &st) != 0) {
    snprintf(why, size, "cannot read '%s': %s", path, strerror(errno));
    goto fail;
  }
  if (!S_ISREG(st.st_mode)) {
    snprintf(why, size, "'%s' is not a regular file", path);
    goto fail;
  }
  if (st.st_mode & 007) {
    snprintf(why, size, "'%s' is open to other users (mode %04o): a secret file must not"
             " be (chmod o-rwx)", path, (unsigned)(st.st_mode & 07777));
    goto fail;
  }
  if (st.st_size > SECRET_FILE_MAX) {
    snprintf(why, size, "'%s' is too big for a secret (%lld bytes, at most %d)", path,
             (long long)st.st_size, SECRET_FILE_MAX);
    goto fail;
  }
  if (!(buf = malloc((size_t)st.st_size + 1))) {
    snprintf(why, size, "out of memory");
    goto fail;
  }
  for (;;) {
    ssize_t r = read(fd, buf + len, (size_t)st.st_size - len);

    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      snprintf(why, size, "cannot read '%s': %s", path, strerror(errno));
      goto fail;
    }
    if (r == 0 || (len += (size_t)r) == (size_t)st.st_size)
      break;
  }
  buf[len] = '\0';
  if (strlen(buf) != len) {
    snprintf(why, size, "'%s' holds a NUL byte", path);
    goto fail;
  }
  if (len > 0 && buf[len - 1] == '\n') {
    buf[--len] = '\0';
    if (len > 0 && buf[len - 1] == '\r')
      buf[--len] = '\0';
  }
  close(fd);
  return buf;

fail:
  free(buf);
  close(fd);
  return NULL;
}

/* The plugin key `key` of an instance, to change, or NULL. */
static chd_config_kv *find_kv(chd_instance_config *inst, const char *key)
{
  for (size_t i = 0; i < inst->plugin_key_count; i++)
    if (!strcmp(inst->plugin_keys[i].key, key))
      return &inst->plugin_keys[i];
  return NULL;
}

/* Remove entry i of the instance's plugin keys. */
static void remove_kv(chd_instance_config *inst, size_t i)
{
  chd_config_kv *kv = &inst->plugin_keys[i];

  free(kv->key);
  free(kv->value);
  free(kv->origin);
  memmove(kv, kv + 1, (inst->plugin_key_count - i - 1) * sizeof *kv);
  inst->plugin_key_count--;
}

/* Give secret key `k` the value (taking value and origin), from `source`,
 * with line `line`: replaces the entry of the file if there is one. */
static int set_secret(chd_instance_config *inst, const char *k, char *value,
                      chd_config_source source, char *origin, int line)
{
  chd_config_kv *kv = find_kv(inst, k);

  if (!kv) {
    chd_config_kv *kvs = realloc(inst->plugin_keys, (inst->plugin_key_count + 1) * sizeof *kvs);
    char *key = strdup(k);

    if (!kvs || !key) {
      if (kvs)
        inst->plugin_keys = kvs;
      free(key);
      free(value);
      free(origin);
      return -1;
    }
    inst->plugin_keys = kvs;
    kv = &kvs[inst->plugin_key_count++];
    memset(kv, 0, sizeof *kv);
    kv->key = key;
    kv->line = line;
  } else if (source == CHD_FROM_FILE) {
    kv->line = line;       /* the line of the file's key, for what goes wrong */
  }
  free(kv->value);
  free(kv->origin);
  kv->value = value;
  kv->origin = origin;
  kv->source = source;
  return 0;
}

bool chd_config_is_secret(const char *const *secret_keys, const char *name)
{
  for (size_t i = 0; secret_keys && secret_keys[i]; i++)
    if (!strcmp(secret_keys[i], name))
      return true;
  return false;
}

int chd_config_resolve_secrets(const chd_config *cfg, chd_instance_config *inst,
                               const ch_config_key *declared, const char *const *secret_keys,
                               char *err, size_t errlen)
{
  const char *path = cfg && cfg->path ? cfg->path : "";

  if (err && errlen)
    err[0] = '\0';

  /* <key>_file: only for a secret key */
  for (size_t i = 0; i < inst->plugin_key_count; i++) {
    chd_config_kv *kv = &inst->plugin_keys[i];
    size_t len = strlen(kv->key);
    const ch_config_key *d;
    char base[256], why[1024], *file, *value;
    int line = kv->line;

    if (len <= 5 || strcmp(kv->key + len - 5, "_file") || find_declared(declared, kv->key) ||
        len - 5 >= sizeof base)
      continue;
    memcpy(base, kv->key, len - 5);
    base[len - 5] = '\0';
    if (!(d = find_declared(declared, base)))
      continue;     /* an unknown key, which chd_config_check_plugin_keys() reports */
    if (!chd_config_is_secret(secret_keys, d->name)) {
      format_error(err, errlen, path, line, "[%s] %s: unknown key (%s is not a secret"
                   " setting of the plugin: only a secret may be read from a file)",
                   inst->name, kv->key, base);
      return -1;
    }
    if (!*kv->value) {
      format_error(err, errlen, path, line, "[%s] %s: empty value (give the file that holds"
                   " %s)", inst->name, kv->key, base);
      return -1;
    }
    if (!(file = beside(path, kv->value))) {
      format_error(err, errlen, path, line, "out of memory");
      return -1;
    }
    if (!(value = read_secret_file(file, why, sizeof why))) {
      format_error(err, errlen, path, line, "[%s] %s: %s", inst->name, kv->key, why);
      free(file);
      return -1;
    }
    remove_kv(inst, i);
    if (set_secret(inst, base, value, CHD_FROM_FILE, file, line) != 0) {
      format_error(err, errlen, path, line, "out of memory");
      return -1;
    }
    i = (size_t)-1;     /* the entries moved: start again */
  }

  /* the environment, over the file and the INI value */
  for (const ch_config_key *k = declared; k && k->name; k++) {
    chd_config_kv *kv;
    char var[256];
    const char *env;
    char *value, *origin;

    if (!chd_config_is_secret(secret_keys, k->name))
      continue;
    chd_config_secret_env(inst->name, k->name, var, sizeof var);
    env = getenv(var);
    if (env && *env) {
      kv = find_kv(inst, k->name);
      value = strdup(env);
      origin = strdup(var);
      if (!value || !origin ||
          set_secret(inst, k->name, value, CHD_FROM_ENV, origin,
                     kv && kv->source == CHD_FROM_INI ? kv->line : inst->line) != 0) {
        if (!value || !origin) {
          free(value);
          free(origin);
        }
        format_error(err, errlen, path, 0, "out of memory");
        return -1;
      }
    }
    if ((kv = find_kv(inst, k->name))) {
      kv->secret = true;
      chd_log_add_secret(kv->value);
    }
  }
  return 0;
}

/* "(secret)", with where it came from, for an error about a secret value. */
static void secret_label(const chd_config_kv *kv, char *buf, size_t size)
{
  if (kv->source == CHD_FROM_FILE)
    snprintf(buf, size, CHD_SECRET_TEXT " from '%s'", kv->origin);
  else if (kv->source == CHD_FROM_ENV)
    snprintf(buf, size, CHD_SECRET_TEXT " from %s", kv->origin);
  else
    snprintf(buf, size, CHD_SECRET_TEXT);
}

/* Check one value of a declared type; what is wrong, or NULL. */
static const char *type_problem(ch_config_type type, const char *value)
{
  int64_t n;
  bool b;

  switch (type) {
  case CH_CONFIG_STRING:
    return NULL;
  case CH_CONFIG_INT:
    return chd_parse_int64(value, &n) == 0 ? NULL : "is not a whole number";
  case CH_CONFIG_BOOL:
    return chd_parse_bool(value, &b) == 0 ? NULL : "is not a boolean " BOOL_HINT;
  default:
    return "has a type the host does not know";
  }
}

int chd_config_check_plugin_keys(const chd_config *cfg, const chd_instance_config *inst,
                                 const ch_config_key *declared, char *err, size_t errlen)
{
  const char *path = cfg && cfg->path ? cfg->path : "";
  const char *problem;

  if (err && errlen)
    err[0] = '\0';
  for (size_t i = 0; i < inst->plugin_key_count; i++) {
    const chd_config_kv *kv = &inst->plugin_keys[i];
    const ch_config_key *d = NULL;

    for (const ch_config_key *k = declared; k && k->name; k++) {
      if (!strcmp(k->name, kv->key)) {
        d = k;
        break;
      }
    }
    if (!d) {
      format_error(err, errlen, path, kv->line, "[%s] %s: unknown key ", inst->name, kv->key);
      if (!declared || !declared->name) {
        append(err, errlen, "(the plugin declares no keys)");
      } else {
        append(err, errlen, "(the plugin declares: ");
        for (const ch_config_key *k = declared; k->name; k++)
          append(err, errlen, "%s%s", k == declared ? "" : ", ", k->name);
        append(err, errlen, ")");
      }
      return -1;
    }
    if ((problem = type_problem(d->type, kv->value))) {
      if (kv->secret) {
        char label[600];

        secret_label(kv, label, sizeof label);
        format_error(err, errlen, path, kv->line, "[%s] %s: %s %s", inst->name, kv->key,
                     label, problem);
      } else {
        format_error(err, errlen, path, kv->line, "[%s] %s: '%s' %s", inst->name, kv->key,
                     kv->value, problem);
      }
      return -1;
    }
  }
  for (const ch_config_key *k = declared; k && k->name; k++) {
    if (chd_config_plugin_key(inst, k->name))
      continue;
    if (!k->default_value) {
      if (k->required) {
        format_error(err, errlen, path, inst->line, "[%s] %s: required by the plugin, not set",
                     inst->name, k->name);
        return -1;
      }
    } else if ((problem = type_problem(k->type, k->default_value))) {
      format_error(err, errlen, path, inst->line, "[%s] %s: the plugin's default '%s' %s",
                   inst->name, k->name, k->default_value, problem);
      return -1;
    }
  }
  return 0;
}


bool chd_config_is_host_key(const char *name)
{
  return name && find_key(instance_keys, IK_COUNT, name) >= 0;
}

bool chd_config_mount_valid(const char *s)
{
  if (!s || s[0] != '/')
    return false;
  if (!s[1])
    return true;
  for (const char *c = s; *c; c++) {
    if (*c == '/') {
      if (c[1] == '/' || c[1] == '\0')
        return false;
    } else if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_' && *c != '.') {
      return false;
    }
  }
  return true;
}
