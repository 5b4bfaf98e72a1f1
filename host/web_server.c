/* web_server.c - serving a site: the applications of one `listen` address. */
#include "web_server.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "clock.h"
#include "host_api.h"
#include "log.h"
#include "subscription.h"
#include "uuid.h"
#include "viewdb.h"
#include "web_route.h"
#include "worker.h"

/* ---- sites ---------------------------------------------------------------- */

const char *chd_web_mount(const chd_inventory *inv, size_t i)
{
  const char *m = inv->cfg.instances[i].mount;

  if (!m)
    m = inv->plugins[i].desc.mount;
  return m ? m : "/";
}

void chd_web_sites_free(chd_web_site *sites, size_t count)
{
  for (size_t i = 0; i < count; i++)
    free(sites[i].apps);
  free(sites);
}

int chd_web_sites(const chd_inventory *inv, chd_web_site **out, size_t *count, char *err,
                  size_t errlen)
{
  const chd_config *cfg = &inv->cfg;
  chd_web_site *sites = NULL;
  size_t n = 0;

  *out = NULL;
  *count = 0;
  for (size_t i = 0; i < inv->count; i++) {
    const chd_instance_config *inst = &cfg->instances[i];
    bool app = inv->plugins[i].desc.kind == CH_KIND_APPLICATION;
    chd_web_site *s = NULL;
    size_t *apps;

    if (!app) {
      if (inst->listen || inst->mount || inst->workers != 1) {
        snprintf(err, errlen, "%s:%d: [%s] listen, mount and workers are settings of"
                 " applications; %s is a %s", cfg->path, inst->line, inst->name,
                 inv->plugins[i].desc.name, chd_kind_name(inv->plugins[i].desc.kind));
        goto fail;
      }
      continue;
    }
    if (!inst->listen) {
      snprintf(err, errlen, "%s:%d: [%s] listen: an application needs the address of its"
               " site (listen = 127.0.0.1:3000)", cfg->path, inst->line, inst->name);
      goto fail;
    }
    if (!cfg->session_secret) {
      snprintf(err, errlen, "%s: [%s] is an application, and there is no session secret:"
               " set COMPHOST_SESSION_SECRET, or [host] session_secret_file or"
               " session_secret (at least 32 characters)", cfg->path, inst->name);
      goto fail;
    }
    for (size_t j = 0; j < n; j++)
      if (!strcmp(sites[j].listen, inst->listen))
        s = &sites[j];
    if (!s) {
      chd_web_site *grown = realloc(sites, (n + 1) * sizeof *grown);
      if (!grown)
        goto oom;
      sites = grown;
      s = &sites[n++];
      memset(s, 0, sizeof *s);
      s->listen = inst->listen;
    }
    for (size_t j = 0; j < s->app_count; j++)
      if (!strcmp(chd_web_mount(inv, s->apps[j]), chd_web_mount(inv, i))) {
        snprintf(err, errlen, "%s:%d: [%s] mount: '%s' is also the mount of [%s] on %s",
                 cfg->path, inst->line, inst->name, chd_web_mount(inv, i),
                 cfg->instances[s->apps[j]].name, s->listen);
        goto fail;
      }
    apps = realloc(s->apps, (s->app_count + 1) * sizeof *apps);
    if (!apps)
      goto oom;
    s->apps = apps;
    s->apps[s->app_count++] = i;
    if (inst->workers > s->workers)
      s->workers = (int)inst->workers;
  }
  *out = sites;
  *count = n;
  return 0;
oom:
  snprintf(err, errlen, "out of memory");
fail:
  chd_web_sites_free(sites, n);
  return -1;
}

/* ---- the process ---------------------------------------------------------- */

typedef struct app {
  size_t index;                 /* instance index */
  const char *mount;
  ch_ctx ctx;
  bool inited, started;
} app;

/* A request on its way in: the body so far. */
typedef struct pending {
  chd_buf body;
  bool too_large;
} pending;

static volatile sig_atomic_t stop_requested;
static const chd_inventory *w_inv;
static const chd_config *w_cfg;
static app *w_apps;
static size_t w_app_count;
static chd_mdb *w_mdb;
static chd_viewdb *w_view;
static int w_inflight;          /* requests begun and not completed */
static char w_mhd_message[512];

static void on_stop(int sig)
{
  (void)sig;
  stop_requested = 1;
}

static void install_signals(void)
{
  struct sigaction sa;

  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sa.sa_handler = SIG_IGN;
  sigaction(SIGHUP, &sa, NULL);
  sigaction(SIGPIPE, &sa, NULL);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
  size_t n;

  (void)cls;
  vsnprintf(w_mhd_message, sizeof w_mhd_message, fmt, ap);
  n = strlen(w_mhd_message);
  while (n > 0 && (w_mhd_message[n - 1] == '\n' || w_mhd_message[n - 1] == ' '))
    w_mhd_message[--n] = '\0';
  chd_log_debug("http: %s", w_mhd_message);
}

/* ---- static files ----------------------------------------------------------- */

static const char builtin_css[] =
  "*,*::before,*::after{box-sizing:border-box}\n"
  "body{margin:0;font:16px/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif;"
  "color:#222;background:#fafafa}\n"
  "header,main,footer{max-width:48rem;margin:0 auto;padding:1rem}\n"
  "header{display:flex;gap:1rem;align-items:center;border-bottom:1px solid #ddd}\n"
  "header nav{margin-left:auto;display:flex;gap:1rem}\n"
  "a{color:#0b57d0}\n"
  "h1{font-size:1.6rem}\n"
  "form{display:grid;gap:.5rem;max-width:24rem}\n"
  "input,button,textarea,select{font:inherit;padding:.4rem .6rem}\n"
  "button{cursor:pointer}\n"
  "table{border-collapse:collapse;width:100%}\n"
  "th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #eee}\n"
  ".error{color:#b00020}\n"
  ".trace{color:#777;font-size:.85rem}\n";

static const char *content_type_of(const char *name)
{
  static const char *const types[][2] = {
    { ".css", "text/css; charset=utf-8" }, { ".js", "text/javascript; charset=utf-8" },
    { ".html", "text/html; charset=utf-8" }, { ".txt", "text/plain; charset=utf-8" },
    { ".svg", "image/svg+xml" }, { ".png", "image/png" }, { ".jpg", "image/jpeg" },
    { ".ico", "image/x-icon" }, { ".woff2", "font/woff2" }, { ".json", "application/json" },
  };
  size_t n = strlen(name);

  for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
    size_t e = strlen(types[i][0]);
    if (n > e && !strcmp(name + n - e, types[i][0]))
      return types[i][1];
  }
  return "application/octet-stream";
}

static bool static_name_valid(const char *s)
{
  if (!*s || *s == '.')
    return false;
  for (; *s; s++)
    if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.')
      return false;
  return true;
}

/*
 * GET /static/<name>: from static_dir, else the built-in stylesheet as
 * comphost.css. Cached for an hour, revalidated by ETag. Returns the status
 * queued, or 0 when name is no static file (the caller answers 404).
 */
static int serve_static(struct MHD_Connection *conn, const char *name)
{
  struct MHD_Response *resp = NULL;
  const char *inm = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                MHD_HTTP_HEADER_IF_NONE_MATCH);
  char etag[64];
  int status = MHD_HTTP_OK;

  if (!static_name_valid(name))
    return 0;
  if (w_cfg->static_dir) {
    char path[4096];
    struct stat sb;
    int fd;

    snprintf(path, sizeof path, "%s/%s", w_cfg->static_dir, name);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0 && fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode)) {
      snprintf(etag, sizeof etag, "\"%" PRIx64 "-%" PRIx64 "\"", (uint64_t)sb.st_mtime,
               (uint64_t)sb.st_size);
      if (inm && !strcmp(inm, etag)) {
        close(fd);
        resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        status = MHD_HTTP_NOT_MODIFIED;
      } else {
        resp = MHD_create_response_from_fd((uint64_t)sb.st_size, fd);   /* takes fd */
        if (!resp)
          close(fd);
      }
    } else if (fd >= 0) {
      close(fd);
    }
  }
  if (!resp && status == MHD_HTTP_OK) {
    if (strcmp(name, "comphost.css") != 0)
      return 0;
    snprintf(etag, sizeof etag, "\"builtin-%zx\"", sizeof builtin_css);
    if (inm && !strcmp(inm, etag)) {
      resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
      status = MHD_HTTP_NOT_MODIFIED;
    } else {
      resp = MHD_create_response_from_buffer(sizeof builtin_css - 1, (void *)(uintptr_t)builtin_css,
                                             MHD_RESPMEM_PERSISTENT);
    }
  }
  if (!resp)
    return -1;
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type_of(name));
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "public, max-age=3600");
  MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
  MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
  MHD_queue_response(conn, (unsigned)status, resp);
  MHD_destroy_response(resp);
  return status;
}

/* ---- requests ----------------------------------------------------------------- */

void chd_web_error_body(chd_web_call *c, int status, const char *text)
{
  const char *reason = MHD_get_reason_phrase_for((unsigned)status);

  if (!reason || !*reason)
    reason = "Error";
  c->status = status;
  free(c->location);
  c->location = NULL;
  c->content_type = "text/html; charset=utf-8";
  chd_buf_reset(&c->body);
  chd_buf_addf(&c->body, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
               "<title>%d ", status);
  chd_html_txt(&c->body, reason);
  chd_buf_adds(&c->body, "</title>\n<link rel=\"stylesheet\" href=\"/static/comphost.css\">\n"
               "</head>\n<body>\n<main>\n<h1>");
  chd_buf_addf(&c->body, "%d ", status);
  chd_html_txt(&c->body, reason);
  chd_buf_adds(&c->body, "</h1>\n");
  if (text) {
    chd_buf_adds(&c->body, "<p class=\"error\">");
    chd_html_txt(&c->body, text);
    chd_buf_adds(&c->body, "</p>\n");
  }
  if (c->req.trace_id) {
    chd_buf_adds(&c->body, "<p class=\"trace\">Trace id: ");
    chd_html_txt(&c->body, c->req.trace_id);
    chd_buf_adds(&c->body, "</p>\n");
  }
  chd_buf_adds(&c->body, "<p><a href=\"/\">Home</a></p>\n</main>\n</body>\n</html>\n");
}

static void call_release(chd_web_call *c)
{
  for (size_t i = 0; i < c->header_count; i++) {
    free(c->headers[i].name);
    free(c->headers[i].value);
  }
  free(c->headers);
  free(c->location);
  chd_buf_free(&c->body);
  json_decref((json_t *)(uintptr_t)c->req.params);
  json_decref((json_t *)(uintptr_t)c->req.query);
  json_decref((json_t *)(uintptr_t)c->req.body);
}

static int hex_value(char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Decode one urlencoded part ('+' is a space) into a new JSON string; NULL
 * when it is no UTF-8 text. */
static json_t *form_decode(const char *s, size_t n)
{
  char *out = malloc(n + 1);
  size_t o = 0;
  json_t *v;

  if (!out)
    return NULL;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '+') {
      out[o++] = ' ';
    } else if (s[i] == '%' && i + 2 < n && hex_value(s[i + 1]) >= 0 &&
               hex_value(s[i + 2]) >= 0) {
      out[o++] = (char)(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else {
      out[o++] = s[i];
    }
  }
  v = json_stringn(out, o);
  free(out);
  return v;
}

/* application/x-www-form-urlencoded into an object; NULL when malformed. */
static json_t *parse_form(const char *s, size_t n)
{
  json_t *obj = json_object();
  size_t i = 0;

  if (!obj)
    return NULL;
  while (i < n) {
    size_t j = i, eq;
    json_t *k, *v;

    while (j < n && s[j] != '&')
      j++;
    for (eq = i; eq < j && s[eq] != '='; eq++)
      ;
    if (j > i) {
      k = form_decode(s + i, eq - i);
      v = eq < j ? form_decode(s + eq + 1, j - eq - 1) : json_string("");
      if (!k || !v || json_object_set_new(obj, json_string_value(k), v) != 0) {
        json_decref(k);
        if (k)
          v = NULL;   /* set_new took it, or it was NULL */
        json_decref(v);
        json_decref(obj);
        return NULL;
      }
      json_decref(k);
    }
    i = j + 1;
  }
  return obj;
}

typedef struct query_state {
  json_t *obj;
  bool bad;
} query_state;

static enum MHD_Result add_query(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
  query_state *q = cls;
  json_t *v = json_string(value ? value : "");

  (void)kind;
  if (!v || !key || json_object_set_new(q->obj, key, v) != 0) {
    if (!key)
      json_decref(v);
    q->bad = true;
    return MHD_NO;
  }
  return MHD_YES;
}

static bool unsafe_method(const char *m)
{
  return strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0;
}

/* The application whose mount is the longest prefix of path. */
static app *app_for(const char *path, const char **rel)
{
  app *best = NULL;
  size_t best_len = 0;

  for (size_t i = 0; i < w_app_count; i++) {
    const char *r = chd_route_under(w_apps[i].mount, path);
    size_t len = strlen(w_apps[i].mount);
    if (r && (!best || len > best_len)) {
      best = &w_apps[i];
      best_len = len;
      *rel = r;
    }
  }
  return best;
}

static void add_cookie(struct MHD_Response *resp, const char *name, const char *value,
                       int64_t max_age)
{
  char line[512];

  snprintf(line, sizeof line, "%s=%s; Path=/; Max-Age=%" PRId64 "; HttpOnly; SameSite=Lax%s",
           name, value, max_age, w_cfg->cookie_secure ? "; Secure" : "");
  MHD_add_response_header(resp, MHD_HTTP_HEADER_SET_COOKIE, line);
}

static void add_header(chd_web_call *c, const char *name, const char *value)
{
  chd_web_header *h = realloc(c->headers, (c->header_count + 1) * sizeof *h);

  if (!h) {
    c->failed = true;
    return;
  }
  c->headers = h;
  h[c->header_count].name = strdup(name);
  h[c->header_count].value = strdup(value);
  c->header_count++;
  if (!h[c->header_count - 1].name || !h[c->header_count - 1].value)
    c->failed = true;
}

/* One line per request: "GET /path 200" with trace_id and duration; and
 * the request counted in the worker's status (/metrics). */
static void log_request(const app *a, const char *method, const char *path, int status,
                        const char *trace_id, int64_t started_us, const char *why)
{
  chd_log_fields f = { a ? w_inv->cfg.instances[a->index].name : NULL, NULL, NULL, NULL };
  char extra[160];

  chd_status_request(status, started_us);
  if (started_us)
    snprintf(extra, sizeof extra, "status=%d trace_id=%s ms=%.1f", status, trace_id,
             (double)(chd_now_us() - started_us) / 1000.0);
  else
    snprintf(extra, sizeof extra, "status=%d trace_id=%s", status, trace_id);
  f.extra = extra;
  chd_log(status >= 500 ? CH_LOG_ERROR : CH_LOG_INFO, &f, "%s %s%s%s", method, path,
          why ? ": " : "", why ? why : "");
}

/* Build and queue the response of c. */
static enum MHD_Result send_call(struct MHD_Connection *conn, chd_web_call *c,
                                 const char *new_visitor)
{
  struct MHD_Response *resp;
  enum MHD_Result rc;
  size_t len;
  char *body;
  bool cache_set = false;

  if (c->body.failed || c->failed) {
    chd_buf_free(&c->body);
    c->failed = false;
    chd_web_error_body(c, 500, NULL);
  }
  body = chd_buf_detach(&c->body, &len);
  if (!body)
    return MHD_NO;
  resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
  if (!resp) {
    free(body);
    return MHD_NO;
  }
  for (size_t i = 0; i < c->header_count; i++) {
    if (!c->headers[i].name || !c->headers[i].value)
      continue;
    MHD_add_response_header(resp, c->headers[i].name, c->headers[i].value);
    cache_set = cache_set || !strcasecmp(c->headers[i].name, "Cache-Control");
  }
  if (!c->content_type_set && c->content_type)
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, c->content_type);
  if (c->location)
    MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, c->location);
  if (!cache_set)
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
  MHD_add_response_header(resp, "Referrer-Policy", "same-origin");
  if (c->req.trace_id)
    MHD_add_response_header(resp, "X-Trace-Id", c->req.trace_id);
  if (new_visitor)
    add_cookie(resp, CHD_VISITOR_COOKIE, new_visitor, 31536000);
  if (c->session_op == 1) {
    char value[CHD_SESSION_VALUE_MAX];
    int64_t expires = (int64_t)time(NULL) + w_cfg->session_max_age_s;
    if (chd_session_sign(w_cfg->session_secret, c->session_user, expires, value,
                         sizeof value) == 0)
      add_cookie(resp, CHD_SESSION_COOKIE, value, w_cfg->session_max_age_s);
  } else if (c->session_op == 2) {
    add_cookie(resp, CHD_SESSION_COOKIE, "", 0);
  }
  if (stop_requested)
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
  rc = MHD_queue_response(conn, (unsigned)c->status, resp);
  MHD_destroy_response(resp);
  return rc;
}

/* An answer that comes from the host alone (no application involved). */
static enum MHD_Result host_answer(struct MHD_Connection *conn, const char *method,
                                   const char *path, int status, const char *text,
                                   const char *allow)
{
  chd_web_call c;
  char trace[CHD_UUID_LEN];
  enum MHD_Result rc;

  memset(&c, 0, sizeof c);
  chd_uuid_v4(trace);
  c.req.trace_id = trace;
  chd_web_error_body(&c, status, text);
  if (allow)
    add_header(&c, "Allow", allow);
  rc = send_call(conn, &c, NULL);
  log_request(NULL, method, path, status, trace, 0, text);
  call_release(&c);
  return rc;
}

/* The CSRF token of the request: the form field, a JSON object's field, or
 * the header. */
static const char *csrf_given(struct MHD_Connection *conn, const json_t *body)
{
  const char *t = json_string_value(json_object_get(body, CH_CSRF_FIELD));

  return t ? t : MHD_lookup_connection_value(conn, MHD_HEADER_KIND, CH_CSRF_HEADER);
}

/* Lower case, without parameters. */
static void media_type(const char *header, char *out, size_t size)
{
  size_t n = 0;

  if (header)
    for (; header[n] && header[n] != ';' && n + 1 < size; n++)
      out[n] = (char)tolower((unsigned char)header[n]);
  while (n > 0 && out[n - 1] == ' ')
    n--;
  out[n] = '\0';
}

/* Reconnect what broke during a request, without waiting long. */
static void check_connections(void)
{
  if (chd_mdb_broken(w_mdb) &&
      chd_mdb_reconnect(w_mdb, 2000) == CHD_STORE_OK)
    chd_log_info("reconnected to the message store");
  if (w_view && chd_viewdb_broken(w_view) &&
      chd_viewdb_connect(w_view) == CHD_STORE_OK)
    chd_log_info("reconnected to the view database");
}

/* A complete request: route it, check it, call its handler, answer. */
static enum MHD_Result dispatch(struct MHD_Connection *conn, const char *method,
                                const char *path, pending *p)
{
  const union MHD_ConnectionInfo *ci;
  chd_web_call c;
  const ch_route *route = NULL;
  json_t *params = NULL;
  const char *rel = NULL, *cookie;
  char trace[CHD_UUID_LEN], allow[64], ctype[128], user[CHD_USER_ID_MAX + 1];
  char visitor[CHD_VISITOR_ID_LEN + 1], binding[CHD_USER_ID_MAX + 8];
  char token[CHD_CSRF_TOKEN_MAX], addr[64] = "";
  const char *new_visitor = NULL;
  int64_t started_us = chd_now_us();
  query_state q = { NULL, false };
  bool failed;
  enum MHD_Result rc;
  app *a;
  ch_result result;

  if (!strncmp(path, "/static/", 8) && (!strcmp(method, "GET") || !strcmp(method, "HEAD"))) {
    int st = serve_static(conn, path + 8);
    if (st > 0) {
      chd_status_request(st, started_us);
      return MHD_YES;
    }
    if (st < 0)
      return MHD_NO;
  }
  a = app_for(path, &rel);
  if (!a)
    return host_answer(conn, method, path, 404, "There is no page here.", NULL);
  switch (chd_route_find((const ch_route *)w_inv->plugins[a->index].desc.routes, method, rel,
                         &route, &params, allow, sizeof allow)) {
  case CHD_ROUTE_FOUND:
    break;
  case CHD_ROUTE_BAD_METHOD:
    return host_answer(conn, method, path, 405, NULL, allow);
  case CHD_ROUTE_NO_MEMORY:
    return host_answer(conn, method, path, 500, NULL, NULL);
  default:
    return host_answer(conn, method, path, 404, "There is no page here.", NULL);
  }
  if (p->too_large) {
    json_decref(params);
    return host_answer(conn, method, path, 413, "The request is too large.", NULL);
  }

  memset(&c, 0, sizeof c);
  chd_uuid_v4(trace);
  c.cfg = w_cfg;
  c.conn = conn;
  c.status = 200;
  c.req.struct_size = sizeof c.req;
  c.req.method = strcmp(method, "HEAD") ? method : "GET";
  c.req.path = path;
  c.req.mount = strcmp(a->mount, "/") ? a->mount : "";
  c.req.params = params;
  c.req.trace_id = trace;
  c.req.raw_body = p->body.data ? p->body.data : "";
  c.req.raw_body_len = p->body.len;
  media_type(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE),
             ctype, sizeof ctype);
  c.req.content_type = ctype;
  ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  if (ci && ci->client_addr) {
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
      inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, addr,
                sizeof addr);
    else if (sa->sa_family == AF_INET6)
      inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, addr,
                sizeof addr);
  }
  c.req.remote_addr = addr;

  /* query and body */
  q.obj = json_object();
  if (q.obj)
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, add_query, &q);
  c.req.query = q.obj;
  if (!q.obj || q.bad) {
    c.failed = !q.obj;
    chd_web_error_body(&c, 400, "The query string is not valid.");
    goto answer;
  }
  if (p->body.len > 0 && !strcmp(ctype, "application/x-www-form-urlencoded")) {
    if (!(c.req.body = parse_form(p->body.data, p->body.len))) {
      chd_web_error_body(&c, 400, "The form data is not valid.");
      goto answer;
    }
  } else if (p->body.len > 0 && !strcmp(ctype, "application/json")) {
    json_error_t jerr;
    if (!(c.req.body = json_loadb(p->body.data, p->body.len, JSON_DECODE_ANY, &jerr))) {
      chd_web_error_body(&c, 400, "The JSON body is not valid.");
      goto answer;
    }
  }

  /* who: the session, else the visitor */
  cookie = MHD_lookup_connection_value(conn, MHD_COOKIE_KIND, CHD_SESSION_COOKIE);
  if (cookie && chd_session_verify(w_cfg->session_secret, cookie, (int64_t)time(NULL),
                                   user) == 0)
    c.req.user_id = user;
  cookie = MHD_lookup_connection_value(conn, MHD_COOKIE_KIND, CHD_VISITOR_COOKIE);
  if (cookie && chd_visitor_id_valid(cookie)) {
    snprintf(visitor, sizeof visitor, "%s", cookie);
  } else if (chd_random_hex(visitor, CHD_VISITOR_ID_LEN / 2) == 0) {
    new_visitor = visitor;
  } else {
    c.failed = true;
    goto answer;
  }
  if (c.req.user_id)
    snprintf(binding, sizeof binding, "u:%s", c.req.user_id);
  else
    snprintf(binding, sizeof binding, "v:%s", visitor);
  if (unsafe_method(method) && !(route->flags & CH_ROUTE_NO_CSRF) &&
      (new_visitor && !c.req.user_id ? true
       : !chd_csrf_valid(w_cfg->session_secret, binding, csrf_given(conn, c.req.body)))) {
    chd_web_error_body(&c, 403, "The form has expired or did not come from this site:"
                       " go back, reload the page and try again.");
    goto answer;
  }
  if (chd_csrf_make(w_cfg->session_secret, binding, token) != 0) {
    c.failed = true;
    goto answer;
  }
  c.req.csrf_token = token;

  /* the handler */
  a->ctx.web = &c;
  a->ctx.error[0] = '\0';
  snprintf(a->ctx.log_extra, sizeof a->ctx.log_extra, "trace_id=%s", trace);
  if (chd_status_self) {
    snprintf(chd_status_self->request, sizeof chd_status_self->request, "%s %s trace_id=%s",
             method, path, trace);
    chd_status_self->in_request = 1;
  }
  result = route->fn(&a->ctx, a->ctx.state, &c.req);
  if (chd_status_self)
    chd_status_self->in_request = 0;
  a->ctx.web = NULL;
  if (result != CH_OK) {
    int status = result == CH_RETRY ? 503 : result == CH_SKIP ? 400 : 500;
    char why[1100];
    snprintf(why, sizeof why, "the handler returned %s: %s",
             result == CH_RETRY ? "RETRY" : result == CH_SKIP ? "SKIP" : "FAIL",
             a->ctx.error[0] ? a->ctx.error : "(no reason given)");
    chd_web_error_body(&c, status, status == 503 ? "The site is busy: try again shortly."
                       : status == 400 ? "The request cannot be handled." : NULL);
    rc = send_call(conn, &c, new_visitor);
    log_request(a, method, path, status, trace, started_us, why);
    call_release(&c);
    check_connections();
    return rc;
  }

answer:
  failed = c.failed || c.body.failed;         /* send_call answers 500 then */
  rc = send_call(conn, &c, new_visitor);
  log_request(a, method, path, c.status, trace, started_us,
              failed ? "out of memory building the response" : NULL);
  call_release(&c);
  return rc;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version,
                              const char *upload_data, size_t *upload_data_size,
                              void **req_cls)
{
  pending *p = *req_cls;
  static const char *const methods[] = { "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE",
                                         NULL };
  bool known = false;

  (void)cls;
  (void)version;
  if (!p) {
    const char *len = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                  MHD_HTTP_HEADER_CONTENT_LENGTH);
    int64_t n;

    if (!(p = calloc(1, sizeof *p)))
      return MHD_NO;
    *req_cls = p;
    w_inflight++;
    for (size_t i = 0; methods[i]; i++)
      known = known || !strcmp(methods[i], method);
    if (!known)
      return host_answer(conn, method, url, 405, NULL, "GET, HEAD, POST, PUT, PATCH, DELETE");
    if (len && chd_parse_int64(len, &n) == 0 && n > w_cfg->max_body_bytes)
      return host_answer(conn, method, url, 413, "The request is too large.", NULL);
    return MHD_YES;
  }
  if (*upload_data_size) {
    if (!p->too_large && p->body.len + *upload_data_size > (size_t)w_cfg->max_body_bytes) {
      p->too_large = true;
      chd_buf_free(&p->body);
    }
    if (!p->too_large)
      chd_buf_add(&p->body, upload_data, *upload_data_size);
    *upload_data_size = 0;
    return MHD_YES;
  }
  if (p->body.failed)
    return host_answer(conn, method, url, 500, NULL, NULL);
  return dispatch(conn, method, url, p);
}

static void completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                      enum MHD_RequestTerminationCode toe)
{
  pending *p = *req_cls;

  (void)cls;
  (void)conn;
  (void)toe;
  if (!p)
    return;
  chd_buf_free(&p->body);
  free(p);
  *req_cls = NULL;
  w_inflight--;
}

/* ---- the worker ------------------------------------------------------------- */

static int refuse(const chd_web_worker_args *a, const char *why)
{
  return chd_worker_refuse(a->ready_fd, w_inv->cfg.instances[a->site->apps[0]].name, why);
}

static struct MHD_Daemon *listen_on(const char *listen, char *err, size_t errlen)
{
  struct addrinfo *ai = NULL;
  struct MHD_Daemon *d;
  unsigned flags = MHD_USE_ERROR_LOG;
  int port;

  if (chd_parse_listen_addr(listen, "listen", NULL, &port, &ai, err, errlen) != 0)
    return NULL;
  if (ai->ai_family == AF_INET6)
    flags |= MHD_USE_IPv6;
  w_mhd_message[0] = '\0';
  /* no thread of its own: this thread polls it, so one handler runs at a time */
  d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, answer, NULL,
                       MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                       MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1,
                       MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
                       MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
                       MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)w_cfg->request_timeout_s,
                       MHD_OPTION_CONNECTION_LIMIT, (unsigned)512,
                       MHD_OPTION_END);
  freeaddrinfo(ai);
  if (!d)
    snprintf(err, errlen, "cannot listen on %s: %s", listen,
             w_mhd_message[0] ? w_mhd_message : "libmicrohttpd refused to start");
  return d;
}

static int connect_all(const chd_web_worker_args *a, char *err, size_t errlen)
{
  chd_store_rc rc;

  if (!(w_mdb = chd_mdb_new(w_cfg->message_store))) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  chd_mdb_set_interrupt(w_mdb, &stop_requested);
  rc = chd_mdb_connect(w_mdb);
  if (rc == CHD_STORE_DISCONNECTED) {
    chd_log_warn("%s; retrying", chd_mdb_error(w_mdb));
    rc = chd_mdb_reconnect(w_mdb, -1);
  }
  if (rc != CHD_STORE_OK) {
    snprintf(err, errlen, "%s", chd_mdb_error(w_mdb));
    return -1;
  }
  if (!w_cfg->view_data)
    return 0;
  if (!(w_view = chd_viewdb_new(w_cfg->view_data))) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  chd_viewdb_set_interrupt(w_view, &stop_requested);
  rc = chd_viewdb_ensure(w_view);
  if (rc == CHD_STORE_INTERRUPTED) {
    snprintf(err, errlen, "stopped while connecting to the view database");
    return -1;
  }
  for (size_t i = 0; rc == CHD_STORE_OK && i < a->site->app_count; i++) {
    const chd_plugin *p = &w_inv->plugins[a->site->apps[i]];
    rc = chd_viewdb_migrate(w_view, p->desc.name, p->desc.migrations);
  }
  if (rc != CHD_STORE_OK) {
    snprintf(err, errlen, "%s", chd_viewdb_error(w_view));
    return -1;
  }
  return 0;
}

int chd_web_worker_run(const chd_web_worker_args *a)
{
  struct MHD_Daemon *d = NULL;
  char err[1400];
  int rc = CHD_EXIT_CONFIG;

  stop_requested = 0;
  install_signals();
  w_inv = a->inv;
  w_cfg = &a->inv->cfg;
  w_app_count = a->site->app_count;
  w_apps = calloc(w_app_count, sizeof *w_apps);
  if (!w_apps)
    return refuse(a, "out of memory");
  if (connect_all(a, err, sizeof err) != 0) {
    rc = stop_requested ? CHD_EXIT_OK : refuse(a, err);
    goto out;
  }
  for (size_t i = 0; i < w_app_count; i++) {
    app *ap = &w_apps[i];
    const chd_plugin *p;

    ap->index = a->site->apps[i];
    ap->mount = chd_web_mount(w_inv, ap->index);
    p = &w_inv->plugins[ap->index];
    chd_ctx_init(&ap->ctx, w_cfg, &w_cfg->instances[ap->index], p);
    ap->ctx.mdb = w_mdb;
    ap->ctx.view = w_view;
    ap->ctx.stop = &stop_requested;
    if (p->desc.init && p->desc.init(&ap->ctx, &ap->ctx.state) != 0) {
      snprintf(err, sizeof err, "init of plugin %s failed: %s", p->desc.name,
               ap->ctx.error[0] ? ap->ctx.error : "(no reason given)");
      rc = refuse(a, err);
      goto out;
    }
    ap->inited = true;
  }
  for (size_t i = 0; i < w_app_count; i++) {
    app *ap = &w_apps[i];
    const chd_plugin *p = &w_inv->plugins[ap->index];
    if (p->desc.start && p->desc.start(&ap->ctx, ap->ctx.state) != 0) {
      snprintf(err, sizeof err, "start of plugin %s failed: %s", p->desc.name,
               ap->ctx.error[0] ? ap->ctx.error : "(no reason given)");
      rc = refuse(a, err);
      goto out;
    }
    ap->started = true;
  }
  if (!(d = listen_on(a->site->listen, err, sizeof err))) {
    rc = refuse(a, err);
    goto out;
  }
  if (chd_worker_handshake(a->ready_fd, a->go_fd, &stop_requested) != 0) {
    rc = CHD_EXIT_OK;
    goto out;
  }
  {
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    chd_log_fields f = { w_cfg->instances[a->site->apps[0]].name, NULL, NULL, NULL };
    chd_log(CH_LOG_INFO, &f, "serving %zu application%s on %s (port %u, worker %d of %d)",
            w_app_count, w_app_count == 1 ? "" : "s", a->site->listen,
            info ? (unsigned)info->port : 0u, a->worker + 1, a->site->workers);
  }
  chd_status_set_state(CHD_WORKER_RUNNING);
  while (!stop_requested) {
    chd_status_heartbeat();
    MHD_run_wait(d, 1000);       /* a signal ends it early */
  }
  chd_status_set_state(CHD_WORKER_STOPPING);

  /* stop accepting; finish the requests in hand */
  {
    MHD_socket fd = MHD_quiesce_daemon(d);
    int64_t deadline = chd_now_ms() + (w_cfg->shutdown_timeout_ms > 1000
                                       ? w_cfg->shutdown_timeout_ms - 500
                                       : w_cfg->shutdown_timeout_ms / 2);
    if (fd != MHD_INVALID_SOCKET)
      close(fd);
    while (w_inflight > 0 && chd_now_ms() < deadline)
      MHD_run_wait(d, 100);
    if (w_inflight > 0)
      chd_log_warn("stopping with %d request%s unanswered", w_inflight,
                   w_inflight == 1 ? "" : "s");
  }
  rc = CHD_EXIT_OK;

out:
  if (d)
    MHD_stop_daemon(d);
  for (size_t i = w_app_count; i-- > 0;) {
    app *ap = &w_apps[i];
    const chd_plugin *p = &w_inv->plugins[ap->index];
    if (ap->started && p->desc.stop)
      p->desc.stop(&ap->ctx, ap->ctx.state);
  }
  for (size_t i = w_app_count; i-- > 0;) {
    app *ap = &w_apps[i];
    const chd_plugin *p = &w_inv->plugins[ap->index];
    if (ap->inited && p->desc.destroy)
      p->desc.destroy(&ap->ctx, ap->ctx.state);
  }
  free(w_apps);
  w_apps = NULL;
  chd_mdb_free(w_mdb);
  w_mdb = NULL;
  chd_viewdb_free(w_view);
  w_view = NULL;
  return rc;
}
