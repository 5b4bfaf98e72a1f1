/*
 * test_web.c - serving applications: a real host with the fx_web fixture
 * application, mounted twice on one site (at /fx and at /), served by two
 * worker processes, and a client (libcurl) that acts as a browser: routes
 * and parameters, query and bodies, sessions and tampered cookies, CSRF,
 * error statuses, a failing and a crashing handler, escaping, the metadata
 * of writes, and a clean stop that finishes the request in hand.
 */
#include "support.h"

#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "e2e.h"

#define SECRET "a-test-secret-of-at-least-thirty-two-characters"

static ch_e2e_db db;
static ch_e2e_host host;
static int port;

typedef struct reply {
  long status;
  char *body;
  size_t len;
  char headers[8192];
} reply;

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
  reply *r = arg;
  char *more = realloc(r->body, r->len + size * n + 1);

  if (!more)
    return 0;
  r->body = more;
  memcpy(r->body + r->len, p, size * n);
  r->len += size * n;
  r->body[r->len] = '\0';
  return size * n;
}

static size_t collect_header(char *p, size_t size, size_t n, void *arg)
{
  reply *r = arg;
  size_t have = strlen(r->headers);

  if (have + size * n + 1 < sizeof r->headers) {
    memcpy(r->headers + have, p, size * n);
    r->headers[have + size * n] = '\0';
  }
  return size * n;
}

static void reply_free(reply *r)
{
  free(r->body);
  memset(r, 0, sizeof *r);
}

/* A browser: one curl handle with its cookies. */
static CURL *browser(void)
{
  CURL *c = curl_easy_init();

  assert_non_null(c);
  curl_easy_setopt(c, CURLOPT_COOKIEFILE, "");
  return c;
}

/*
 * method path on the site with `body` of `type` (NULL: none), extra header
 * lines (NULL-terminated array, may be NULL). Returns the status; the body
 * and the headers in *r.
 */
static long request(CURL *c, const char *method, const char *path, const char *type,
                    const char *body, size_t body_len, const char *const *extra, reply *r)
{
  struct curl_slist *hs = NULL;
  char url[512], line[256];
  CURLcode rc;

  memset(r, 0, sizeof *r);
  snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(c, CURLOPT_NOBODY, strcmp(method, "HEAD") ? 0L : 1L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collect_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  if (body) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body_len);
  } else {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, NULL);
    curl_easy_setopt(c, CURLOPT_HTTPGET, strcmp(method, "GET") ? 0L : 1L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  }
  if (type) {
    snprintf(line, sizeof line, "Content-Type: %s", type);
    hs = curl_slist_append(hs, line);
  }
  hs = curl_slist_append(hs, "Expect:");
  for (size_t i = 0; extra && extra[i]; i++)
    hs = curl_slist_append(hs, extra[i]);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
  rc = curl_easy_perform(c);
  curl_slist_free_all(hs);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
  if (rc != CURLE_OK)
    return -1;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
  return r->status;
}

static long get(CURL *c, const char *path, reply *r)
{
  return request(c, "GET", path, NULL, NULL, 0, NULL, r);
}

static long post_form(CURL *c, const char *path, const char *form, reply *r)
{
  return request(c, "POST", path, "application/x-www-form-urlencoded", form, strlen(form),
                 NULL, r);
}

/* The CSRF token of the page at path, into token. */
static void csrf_of(CURL *c, const char *path, char *token, size_t size)
{
  reply r;
  const char *p, *end;

  assert_int_equal(get(c, path, &r), 200);
  p = strstr(r.body, "name=\"_csrf\" value=\"");
  assert_non_null(p);
  p += strlen("name=\"_csrf\" value=\"");
  end = strchr(p, '"');
  assert_non_null(end);
  snprintf(token, size, "%.*s", (int)(end - p), p);
  reply_free(&r);
}

static json_t *json_of(const reply *r)
{
  json_t *j = json_loads(r->body ? r->body : "", 0, NULL);

  if (!j)
    fail_msg("not JSON: %s", r->body ? r->body : "(no body)");
  return j;
}

static int free_port(void)
{
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  int fd = socket(AF_INET, SOCK_STREAM, 0), p;

  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  p = ntohs(a.sin_port);
  close(fd);
  return p;
}

/* Until the site answers GET path with 200 (or timeout). */
static bool wait_site(int timeout_ms)
{
  for (int waited = 0; waited < timeout_ms; waited += 100) {
    CURL *c = browser();
    reply r;
    long st = get(c, "/fx/pid", &r);
    reply_free(&r);
    curl_easy_cleanup(c);
    if (st == 200)
      return true;
    ch_e2e_sleep_ms(100);
  }
  return false;
}

static int group_setup(void **state)
{
  char body[512];
  const char *ini;

  (void)state;
  curl_global_init(CURL_GLOBAL_ALL);
  ch_e2e_db_create(&db);
  port = free_port();
  snprintf(body, sizeof body,
           "http_listen = 127.0.0.1:0\n\n"
           "[fxweb]\nlibrary = fx_web\nlisten = 127.0.0.1:%d\nworkers = 2\n\n"
           "[fxroot]\nlibrary = fx_web\nlisten = 127.0.0.1:%d\nmount = /\n\n"
           "[guestbook]\nlisten = 127.0.0.1:%d\n", port, port, port);
  ini = ch_e2e_write_ini(&db, "web.ini", body);
  setenv("COMPHOST_SESSION_SECRET", SECRET, 1);
  ch_e2e_host_start(&host, &db, ini, "web.log");
  if (!wait_site(30000))
    fail_msg("the site did not come up on port %d", port);
  return 0;
}

static int group_teardown(void **state)
{
  (void)state;
  if (host.pid > 0)
    ch_e2e_host_stop(&host, SIGTERM, 15000);
  ch_e2e_db_drop(&db);
  curl_global_cleanup();
  return 0;
}

/* Mounts and routes: the longest mount wins, literal segments beat
 * parameters, parameters and the query are decoded. */
static void test_routes(void **state)
{
  CURL *c = browser();
  reply r;
  json_t *j;

  (void)state;
  assert_int_equal(get(c, "/", &r), 200);
  assert_non_null(strstr(r.body, "<p id=\"mount\">/</p>"));
  assert_non_null(strstr(r.headers, "text/html; charset=utf-8"));
  reply_free(&r);
  assert_int_equal(get(c, "/fx", &r), 200);
  assert_non_null(strstr(r.body, "<p id=\"mount\">/fx</p>"));
  reply_free(&r);
  assert_int_equal(get(c, "/fx/", &r), 200);
  reply_free(&r);

  assert_int_equal(get(c, "/fx/items/a%20b?x=1&y=two%20words&y=last", &r), 200);
  j = json_of(&r);
  assert_string_equal(json_string_value(json_object_get(j, "route")), "item");
  assert_string_equal(json_string_value(json_object_get(json_object_get(j, "params"), "id")),
                      "a b");
  assert_string_equal(json_string_value(json_object_get(json_object_get(j, "query"), "x")),
                      "1");
  assert_string_equal(json_string_value(json_object_get(json_object_get(j, "query"), "y")),
                      "last");
  assert_int_equal(strlen(json_string_value(json_object_get(j, "traceId"))), 36);
  assert_null(json_string_value(json_object_get(j, "userId")));
  json_decref(j);
  reply_free(&r);

  assert_int_equal(get(c, "/fx/items/new", &r), 200);
  j = json_of(&r);
  assert_string_equal(json_string_value(json_object_get(j, "route")), "new");
  json_decref(j);
  reply_free(&r);

  /* HEAD is served by the GET route, without a body */
  assert_int_equal(request(c, "HEAD", "/fx/items/1", NULL, NULL, 0, NULL, &r), 200);
  assert_null(r.body);
  reply_free(&r);
  curl_easy_cleanup(c);
}

static void test_errors(void **state)
{
  CURL *c = browser();
  char big[70 * 1024];
  reply r;

  (void)state;
  assert_int_equal(get(c, "/fx/nothing/here", &r), 404);
  assert_non_null(strstr(r.body, "404 Not Found"));
  reply_free(&r);
  assert_int_equal(get(c, "/elsewhere", &r), 404);
  reply_free(&r);
  assert_int_equal(request(c, "DELETE", "/fx/items/1", NULL, NULL, 0, NULL, &r), 405);
  assert_non_null(strstr(r.headers, "Allow: "));
  assert_non_null(strstr(r.headers, "POST"));
  reply_free(&r);
  assert_int_equal(request(c, "BREW", "/fx/", NULL, NULL, 0, NULL, &r), 405);
  reply_free(&r);

  /* malformed bodies: 400, after the CSRF token is known to be good */
  {
    char token[128], json[256];
    const char *hdr[2] = { NULL, NULL };
    char line[200];

    csrf_of(c, "/fx/", token, sizeof token);
    snprintf(line, sizeof line, "X-CSRF-Token: %s", token);
    hdr[0] = line;
    snprintf(json, sizeof json, "{\"broken\": ");
    assert_int_equal(request(c, "POST", "/fx/items/1", "application/json", json,
                             strlen(json), hdr, &r), 400);
    reply_free(&r);
    assert_int_equal(request(c, "POST", "/fx/items/1", "application/x-www-form-urlencoded",
                             "a=%ff%fe", 8, hdr, &r), 400);
    reply_free(&r);
  }

  /* too large: 413, whether the length is announced or the body streams */
  memset(big, 'a', sizeof big);
  big[0] = 'x';
  big[1] = '=';
  assert_int_equal(request(c, "POST", "/fx/api/items/big", "application/x-www-form-urlencoded",
                           big, sizeof big, NULL, &r), 413);
  reply_free(&r);
  {
    const char *chunked[] = { "Transfer-Encoding: chunked", NULL };
    assert_int_equal(request(c, "POST", "/fx/api/items/big",
                             "application/x-www-form-urlencoded", big, sizeof big, chunked,
                             &r), 413);
    reply_free(&r);
  }
  assert_int_equal(ch_e2e_int(db.store_url, "SELECT count(*) FROM message_store.messages"
                              " WHERE stream_name = 'fxweb-big'"), 0);
  curl_easy_cleanup(c);
}

/* Escaping: a <script> in the query shows as text, in text and attribute */
static void test_escaping(void **state)
{
  CURL *c = browser();
  reply r;

  (void)state;
  assert_int_equal(get(c, "/fx/?q=%3Cscript%3Ealert(%22x%22)%3C%2Fscript%3E%20%26'", &r), 200);
  assert_null(strstr(r.body, "<script>"));
  assert_non_null(strstr(r.body, "<p id=\"q\">&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"
                                 " &amp;&#39;</p>"));
  assert_non_null(strstr(r.body, "title=\"&lt;script&gt;"));
  assert_non_null(strstr(r.body, "href=\"?q=%3Cscript%3Ealert%28%22x%22%29"));
  reply_free(&r);
  curl_easy_cleanup(c);
}

/* CSRF: a POST without a token, with a forged one or with another visitor's
 * is 403 and writes nothing; with the page's token it goes through. */
static void test_csrf(void **state)
{
  CURL *c = browser(), *other = browser();
  char token[128], other_token[128], form[512];
  reply r;

  (void)state;
  csrf_of(c, "/fx/", token, sizeof token);
  csrf_of(other, "/fx/", other_token, sizeof other_token);
  assert_int_equal(post_form(c, "/fx/items/c1", "a=1", &r), 403);
  reply_free(&r);
  assert_int_equal(post_form(c, "/fx/items/c1",
                             "a=1&_csrf=00112233445566778899aabbccddeeff.AAAAAAAAAAAAAAAAAAAAAAA"
                             "AAAAAAAAAAAAAAAAAAAA", &r), 403);
  reply_free(&r);
  snprintf(form, sizeof form, "a=1&_csrf=%s", other_token);
  assert_int_equal(post_form(c, "/fx/items/c1", form, &r), 403);
  reply_free(&r);
  assert_int_equal(ch_e2e_int(db.store_url, "SELECT count(*) FROM message_store.messages"
                              " WHERE stream_name = 'fxweb-c1'"), 0);

  snprintf(form, sizeof form, "a=1&b=two+words&_csrf=%s", token);
  assert_int_equal(post_form(c, "/fx/items/c1", form, &r), 201);
  reply_free(&r);
  assert_int_equal(ch_e2e_int(db.store_url, "SELECT count(*) FROM message_store.messages"
                              " WHERE stream_name = 'fxweb-c1' AND data->>'b' = 'two words'"),
                   1);
  curl_easy_cleanup(c);
  curl_easy_cleanup(other);
}

/* Sessions: log in, writes carry userId and traceId, a tampered or foreign
 * cookie is a logged-out visitor, log out. */
static void test_session(void **state)
{
  CURL *c = browser();
  char token[128], form[512], cookie[512], header[600];
  struct curl_slist *cookies = NULL;
  reply r;
  json_t *j;
  const char *trace;

  (void)state;
  csrf_of(c, "/fx/", token, sizeof token);
  snprintf(form, sizeof form, "user=user-1&_csrf=%s", token);
  assert_int_equal(post_form(c, "/fx/login", form, &r), 303);
  assert_non_null(strstr(r.headers, "Location: /fx"));
  assert_non_null(strstr(r.headers, "HttpOnly"));
  assert_non_null(strstr(r.headers, "SameSite=Lax"));
  reply_free(&r);
  assert_int_equal(get(c, "/fx/", &r), 200);
  assert_non_null(strstr(r.body, "user user-1"));
  reply_free(&r);

  /* a JSON body, with the token in the header: metadata gets the request's ids */
  csrf_of(c, "/fx/", token, sizeof token);
  snprintf(header, sizeof header, "X-CSRF-Token: %s", token);
  {
    const char *hdr[] = { header, NULL };
    const char *json = "{\"n\": 5, \"s\": \"x\"}";
    assert_int_equal(request(c, "POST", "/fx/items/s1", "application/json; charset=utf-8",
                             json, strlen(json), hdr, &r), 201);
  }
  j = json_of(&r);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "body"), "n")), 5);
  assert_string_equal(json_string_value(json_object_get(j, "contentType")),
                      "application/json");
  json_decref(j);
  trace = strstr(r.headers, "X-Trace-Id: ");
  assert_non_null(trace);
  {
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM message_store.messages WHERE"
             " stream_name = 'fxweb-s1' AND metadata->>'userId' = 'user-1' AND"
             " metadata->>'traceId' = '%.36s'", trace + strlen("X-Trace-Id: "));
    assert_int_equal(ch_e2e_int(db.store_url, sql), 1);
  }
  reply_free(&r);

  /* the session cookie, tampered: logged out */
  curl_easy_getinfo(c, CURLINFO_COOKIELIST, &cookies);
  cookie[0] = '\0';
  for (struct curl_slist *s = cookies; s; s = s->next) {
    const char *name = strstr(s->data, "\tcomphost_session\t");
    if (name)
      snprintf(cookie, sizeof cookie, "%s", name + strlen("\tcomphost_session\t"));
  }
  curl_slist_free_all(cookies);
  assert_true(strlen(cookie) > 40);
  {
    CURL *t = browser();
    char forged[600];

    snprintf(forged, sizeof forged, "comphost_session=%s", cookie);
    curl_easy_setopt(t, CURLOPT_COOKIE, forged);
    assert_int_equal(get(t, "/fx/", &r), 200);
    assert_non_null(strstr(r.body, "user user-1"));
    reply_free(&r);
    forged[strlen("comphost_session=") + 5] = 'X';     /* user-1 -> user-X */
    curl_easy_setopt(t, CURLOPT_COOKIE, forged);
    assert_int_equal(get(t, "/fx/", &r), 200);
    assert_non_null(strstr(r.body, "user (none)"));
    reply_free(&r);
    /* the mac of another expiry */
    snprintf(forged, sizeof forged, "comphost_session=user-1.9999999999.%s",
             strrchr(cookie, '.') + 1);
    curl_easy_setopt(t, CURLOPT_COOKIE, forged);
    assert_int_equal(get(t, "/fx/", &r), 200);
    assert_non_null(strstr(r.body, "user (none)"));
    reply_free(&r);
    /* expired long ago, whatever the mac */
    curl_easy_setopt(t, CURLOPT_COOKIE, "comphost_session=user-1.1000.AAAAAAAAAAAAAAAAAAAAAAA"
                     "AAAAAAAAAAAAAAAAAAAA");
    assert_int_equal(get(t, "/fx/", &r), 200);
    assert_non_null(strstr(r.body, "user (none)"));
    reply_free(&r);
    curl_easy_cleanup(t);
  }

  csrf_of(c, "/fx/", token, sizeof token);
  snprintf(form, sizeof form, "_csrf=%s", token);
  assert_int_equal(post_form(c, "/fx/logout", form, &r), 302);
  assert_non_null(strstr(r.headers, "comphost_session=; Path=/; Max-Age=0"));
  reply_free(&r);
  assert_int_equal(get(c, "/fx/", &r), 200);
  assert_non_null(strstr(r.body, "user (none)"));
  reply_free(&r);
  curl_easy_cleanup(c);
}

/* A failing handler is a 500 page with the trace id, in the log too; the
 * worker goes on. A crashing one takes its worker down, which comes back. */
static void test_failures(void **state)
{
  CURL *c = browser();
  reply r;
  const char *trace;
  char want[64];

  (void)state;
  assert_int_equal(get(c, "/fx/fail", &r), 500);
  assert_null(strstr(r.body, "half a page"));
  trace = strstr(r.headers, "X-Trace-Id: ");
  assert_non_null(trace);
  snprintf(want, sizeof want, "trace_id=%.36s", trace + strlen("X-Trace-Id: "));
  assert_non_null(strstr(r.body, want + strlen("trace_id=")));
  reply_free(&r);
  assert_true(ch_e2e_wait_log(&host, want, 5000));
  assert_true(ch_e2e_log_contains(&host, "the fixture fails on purpose"));
  assert_int_equal(get(c, "/fx/pid", &r), 200);
  reply_free(&r);

  /* the crash: the client sees the connection close */
  assert_int_equal(get(c, "/fx/crash", &r), -1);
  reply_free(&r);
  assert_true(ch_e2e_wait_log(&host, "while serving GET /fx/crash", 5000));
  assert_true(wait_site(20000));
  curl_easy_cleanup(c);
}

/* Two workers on one port: requests land on both processes. */
static void test_two_workers(void **state)
{
  int pids[2] = { 0, 0 };

  (void)state;
  for (int i = 0; i < 400 && !pids[1]; i++) {
    CURL *c = browser();       /* a new connection each time */
    reply r;
    json_t *j;
    int pid;

    assert_int_equal(get(c, "/fx/pid", &r), 200);
    j = json_of(&r);
    pid = (int)json_integer_value(json_object_get(j, "pid"));
    json_decref(j);
    reply_free(&r);
    curl_easy_cleanup(c);
    if (!pids[0])
      pids[0] = pid;
    else if (pid != pids[0])
      pids[1] = pid;
  }
  assert_true(pids[1] != 0);
}

/* The sum of the samples of comphost_http_requests_total for this site
 * with status class `code` ("2xx"), and how many workers have samples. */
static double requests_of(const char *text, const char *code, int *workers)
{
  char prefix[128], tail[32];
  double sum = 0;

  snprintf(prefix, sizeof prefix, "comphost_http_requests_total{site=\"127.0.0.1:%d\","
           "worker=\"", port);
  snprintf(tail, sizeof tail, "\",code=\"%s\"} ", code);
  *workers = 0;
  for (const char *line = strstr(text, prefix); line; line = strstr(line + 1, prefix)) {
    const char *end = strchr(line, '\n'), *t = strstr(line, tail);
    if (t && (!end || t < end)) {
      sum += strtod(t + strlen(tail), NULL);
      (*workers)++;
    }
  }
  return sum;
}

/* /metrics shows every worker of the site and counts its requests by
 * status class, with their durations. */
static void test_site_metrics(void **state)
{
  char base[128], url[160], series[200], *before = NULL, *after = NULL;
  double ok0, ok1, missing0, missing1, timed0, timed1;
  int workers;
  (void)state;

  ch_e2e_http_base(&host, base, sizeof base);
  snprintf(url, sizeof url, "%s/metrics", base);
  assert_int_equal(ch_e2e_http_get(url, &before), 200);
  for (int i = 0; i < 10; i++) {
    CURL *c = browser();
    reply r;
    assert_int_equal(get(c, "/fx/pid", &r), 200);
    reply_free(&r);
    curl_easy_cleanup(c);
  }
  {
    CURL *c = browser();
    reply r;
    assert_int_equal(get(c, "/nowhere-at-all", &r), 404);
    reply_free(&r);
    curl_easy_cleanup(c);
  }
  assert_int_equal(ch_e2e_http_get(url, &after), 200);

  /* both workers of the site, the second with its number */
  assert_true(ch_e2e_metric(after, "comphost_worker_up{plugin=\"fxweb\"}") == 1);
  assert_true(ch_e2e_metric(after, "comphost_worker_up{plugin=\"fxweb\",worker=\"1\"}") == 1);
  ok0 = requests_of(before, "2xx", &workers);
  missing0 = requests_of(before, "4xx", &workers);
  ok1 = requests_of(after, "2xx", &workers);
  assert_int_equal(workers, 2);
  missing1 = requests_of(after, "4xx", &workers);
  print_message("2xx %.0f -> %.0f, 4xx %.0f -> %.0f\n", ok0, ok1, missing0, missing1);
  assert_true(ok1 - ok0 == 10);
  assert_true(missing1 - missing0 == 1);
  /* the handled requests are timed (the host's own 404 is not) */
  timed0 = timed1 = 0;
  for (int w = 0; w < 2; w++) {
    snprintf(series, sizeof series, "comphost_http_request_duration_seconds_count{site="
             "\"127.0.0.1:%d\",worker=\"%d\"}", port, w);
    timed0 += ch_e2e_metric(before, series);
    timed1 += ch_e2e_metric(after, series);
  }
  assert_true(timed1 - timed0 == 10);
  free(before);
  free(after);
}

static void test_static_and_password(void **state)
{
  CURL *c = browser();
  reply r;
  json_t *j;

  (void)state;
  assert_int_equal(get(c, "/static/comphost.css", &r), 200);
  assert_non_null(strstr(r.headers, "text/css"));
  assert_non_null(strstr(r.headers, "max-age=3600"));
  assert_non_null(strstr(r.headers, "ETag: "));
  reply_free(&r);
  {
    const char *inm[] = { "If-None-Match: \"nothing\"", NULL };
    assert_int_equal(request(c, "GET", "/static/comphost.css", NULL, NULL, 0, inm, &r), 200);
    reply_free(&r);
  }
  assert_int_equal(get(c, "/static/../web.ini", &r), 404);
  reply_free(&r);

  assert_int_equal(get(c, "/fx/password?p=secret", &r), 200);
  j = json_of(&r);
  assert_memory_equal(json_string_value(json_object_get(j, "hash")), "$2b$10$", 7);
  assert_int_equal(json_integer_value(json_object_get(j, "ok")), 1);
  assert_int_equal(json_integer_value(json_object_get(j, "wrong")), 0);
  json_decref(j);
  reply_free(&r);
  /* hashes made elsewhere verify: the published bcrypt test vector of "U*U" */
  assert_int_equal(get(c, "/fx/password?p=U*U&hash=%242a%2405%24CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmy"
                          "uRGyh0XouQYb4YMJKvyOeW", &r), 200);
  j = json_of(&r);
  assert_int_equal(json_integer_value(json_object_get(j, "ok")), 1);
  assert_int_equal(json_integer_value(json_object_get(j, "wrong")), 0);
  json_decref(j);
  reply_free(&r);
  curl_easy_cleanup(c);
}

/* The SDK's example application, on the same site. */
static void test_guestbook(void **state)
{
  CURL *c = browser();
  char token[128], form[512];
  reply r;

  (void)state;
  csrf_of(c, "/guestbook/", token, sizeof token);
  snprintf(form, sizeof form, "nickname=ann&_csrf=%s", token);
  assert_int_equal(post_form(c, "/guestbook/login", form, &r), 303);
  reply_free(&r);
  csrf_of(c, "/guestbook/", token, sizeof token);
  snprintf(form, sizeof form, "text=%%3Cb%%3Ehello%%3C%%2Fb%%3E&_csrf=%s", token);
  assert_int_equal(post_form(c, "/guestbook/entries", form, &r), 303);
  assert_non_null(strstr(r.headers, "Location: /guestbook/"));
  reply_free(&r);
  assert_int_equal(get(c, "/guestbook/", &r), 200);
  assert_non_null(strstr(r.body, "<li>&lt;b&gt;hello&lt;/b&gt;"));
  reply_free(&r);
  assert_int_equal(ch_e2e_int(db.store_url, "SELECT count(*) FROM message_store.messages"
                              " WHERE stream_name = 'guestbook-ann'"
                              " AND metadata->>'userId' = 'ann'"), 1);
  curl_easy_cleanup(c);
}

typedef struct slow_arg {
  long status;
  char body[64];
} slow_arg;

static void *slow_request(void *arg)
{
  slow_arg *a = arg;
  CURL *c = browser();
  reply r;

  a->status = get(c, "/fx/slow", &r);
  snprintf(a->body, sizeof a->body, "%s", r.body ? r.body : "");
  reply_free(&r);
  curl_easy_cleanup(c);
  return NULL;
}

/* Last: SIGTERM while a request is in hand; it is answered, then the host
 * exits 0. */
static void test_clean_stop(void **state)
{
  pthread_t t;
  slow_arg a = { 0, "" };
  int ws;

  (void)state;
  pthread_create(&t, NULL, slow_request, &a);
  ch_e2e_sleep_ms(500);
  ws = ch_e2e_host_stop(&host, SIGTERM, 15000);
  pthread_join(t, NULL);
  host.pid = 0;
  assert_int_equal(a.status, 200);
  assert_string_equal(a.body, "slow done");
  assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_routes),
    cmocka_unit_test(test_errors),
    cmocka_unit_test(test_escaping),
    cmocka_unit_test(test_csrf),
    cmocka_unit_test(test_session),
    cmocka_unit_test(test_static_and_password),
    cmocka_unit_test(test_guestbook),
    cmocka_unit_test(test_failures),
    cmocka_unit_test(test_two_workers),
    cmocka_unit_test(test_site_metrics),
    cmocka_unit_test(test_clean_stop),
  };

  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
