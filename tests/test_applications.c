/*
 * test_applications.c - the book's six applications end to end, over HTTP:
 * one real comphost runs config/video-tutorials.ini as it ships (the site,
 * the components and the aggregators) on the test's own databases and on a
 * free port instead of 3000; libcurl plays the browser, with a cookie jar
 * per visitor and the CSRF token taken from each form. Every route is
 * called, with good input and with bad, and what it wrote is read back from
 * the message store.
 */
#define _POSIX_C_SOURCE 200809L
#include "support.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>
#include <libpq-fe.h>

#include "e2e.h"

#define PLUGINS COMPHOST_BUILD_PLUGIN_DIR
#define SITE_INI COMPHOST_SOURCE_DIR "/config/video-tutorials.ini"
#define WAIT 60000
/* the administrator named in config/video-tutorials.ini */
#define ADMIN_EMAIL "admin@example.com"
#define PASSWORD "correct horse battery"
#define FAILED_TEXT "That email and password do not match an account."

static ch_e2e_db db;
static ch_e2e_host host;
static char base[64];

/* ---- the site ---- */

static int free_port(void)
{
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  int fd = socket(AF_INET, SOCK_STREAM, 0), port;

  assert_true(fd >= 0);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  port = ntohs(a.sin_port);
  close(fd);
  return port;
}

/* config/video-tutorials.ini, with the site's address on `port`. */
static const char *site_ini(int port)
{
  static char path[400];
  char addr[32], *text = NULL;
  size_t len = 0;
  FILE *in = fopen(SITE_INI, "r"), *out;
  const char *p, *hit;

  assert_non_null(in);
  assert_true(getdelim(&text, &len, '\0', in) > 0);
  fclose(in);
  snprintf(path, sizeof path, "%s/site.ini", db.dir);
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  out = fopen(path, "w");
  assert_non_null(out);
  for (p = text; (hit = strstr(p, "127.0.0.1:3000")); p = hit + strlen("127.0.0.1:3000"))
    fprintf(out, "%.*s%s", (int)(hit - p), p, addr);
  fputs(p, out);
  fclose(out);
  free(text);
  return path;
}

static void email_dir(char *out, size_t size)
{
  snprintf(out, size, "%s/email", db.dir);
}

static void start_site(void)
{
  char dir[400];
  const char *ini;
  int port = free_port();
  pid_t pid;

  ini = site_ini(port);
  snprintf(base, sizeof base, "http://127.0.0.1:%d", port);
  email_dir(dir, sizeof dir);
  snprintf(host.log_path, sizeof host.log_path, "%s/site.log", db.dir);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int fd = open(host.log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
      dup2(fd, STDERR_FILENO);
      dup2(fd, STDOUT_FILENO);
      close(fd);
    }
    setenv("MESSAGE_STORE_CONNECTION_STRING", db.store_url, 1);
    setenv("DATABASE_URL", db.view_url, 1);
    setenv("EMAIL_DIRECTORY", dir, 1);
    setenv("COMPHOST_SESSION_SECRET", "a test secret, 0123456789abcdef0123456789", 1);
    unsetenv("SYSTEM_SENDER_EMAIL_ADDRESS");
    unsetenv("COMPHOST_PLUGIN_DIR");
    execl(COMPHOST_BIN, "comphost", "-c", ini, "--plugin-dir", PLUGINS, (char *)NULL);
    _exit(127);
  }
  host.pid = pid;
}

/* ---- a visitor: libcurl with a cookie jar ---- */

typedef struct visitor {
  CURL *curl;
} visitor;

typedef struct response {
  long status;
  char *body;               /* never NULL */
  char location[512];       /* the path of a redirect's Location, else "" */
  char content_type[128];
} response;

typedef struct buffer {
  char *data;
  size_t len;
} buffer;

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
  buffer *b = arg;
  char *more = realloc(b->data, b->len + size * n + 1);

  if (!more)
    return 0;
  b->data = more;
  memcpy(b->data + b->len, p, size * n);
  b->len += size * n;
  b->data[b->len] = '\0';
  return size * n;
}

static void visitor_open(visitor *v)
{
  v->curl = curl_easy_init();
  assert_non_null(v->curl);
  curl_easy_setopt(v->curl, CURLOPT_COOKIEFILE, "");   /* a cookie jar in memory */
}

static void visitor_close(visitor *v)
{
  curl_easy_cleanup(v->curl);
  v->curl = NULL;
}

static void response_free(response *r)
{
  free(r->body);
  r->body = NULL;
}

/*
 * A request to the site: `body` (may be NULL) is sent with `content_type`,
 * and `extra_header` ("Name: value", may be NULL) with it. Redirects are not
 * followed: their target is in location.
 */
static response request(visitor *v, const char *method, const char *path, const char *body,
                        const char *content_type, const char *extra_header)
{
  struct curl_slist *headers = NULL;
  response r = { 0, NULL, "", "" };
  buffer b = { NULL, 0 };
  char url[2048], header[160];
  char *redirect = NULL, *type = NULL;
  CURLcode rc;

  snprintf(url, sizeof url, "%s%s", base, path);
  /* every option a request sets is set each time (no curl_easy_reset: it
     would end the cookie engine visitor_open started) */
  curl_easy_setopt(v->curl, CURLOPT_URL, url);
  curl_easy_setopt(v->curl, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(v->curl, CURLOPT_WRITEDATA, &b);
  curl_easy_setopt(v->curl, CURLOPT_TIMEOUT_MS, 10000L);
  curl_easy_setopt(v->curl, CURLOPT_HTTPGET, 1L);
  curl_easy_setopt(v->curl, CURLOPT_CUSTOMREQUEST, strcmp(method, "GET") ? method : NULL);
  if (body) {
    curl_easy_setopt(v->curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(v->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    snprintf(header, sizeof header, "Content-Type: %s", content_type);
    headers = curl_slist_append(headers, header);
  }
  if (extra_header)
    headers = curl_slist_append(headers, extra_header);
  curl_easy_setopt(v->curl, CURLOPT_HTTPHEADER, headers);
  rc = curl_easy_perform(v->curl);
  curl_slist_free_all(headers);
  if (rc != CURLE_OK)
    fail_msg("%s %s: %s", method, path, curl_easy_strerror(rc));
  curl_easy_getinfo(v->curl, CURLINFO_RESPONSE_CODE, &r.status);
  curl_easy_getinfo(v->curl, CURLINFO_REDIRECT_URL, &redirect);
  curl_easy_getinfo(v->curl, CURLINFO_CONTENT_TYPE, &type);
  if (redirect)
    snprintf(r.location, sizeof r.location, "%s",
             !strncmp(redirect, base, strlen(base)) ? redirect + strlen(base) : redirect);
  if (type)
    snprintf(r.content_type, sizeof r.content_type, "%s", type);
  r.body = b.data ? b.data : strdup("");
  return r;
}

static response get(visitor *v, const char *path)
{
  return request(v, "GET", path, NULL, NULL, NULL);
}

/* POST a form to path: the arguments after path are key, value, key,
 * value, ... and NULL; each part is percent-encoded. */
static response post_form(visitor *v, const char *path, ...)
{
  size_t len = 0;
  char *body = calloc(1, 1);
  const char *key;
  response r;
  va_list ap;

  va_start(ap, path);
  while ((key = va_arg(ap, const char *))) {
    const char *value = va_arg(ap, const char *);
    char *k = curl_easy_escape(v->curl, key, 0), *val = curl_easy_escape(v->curl, value, 0);
    size_t n = strlen(k) + strlen(val) + 2;
    body = realloc(body, len + n + 1);
    assert_non_null(body);
    len += (size_t)sprintf(body + len, "%s%s=%s", len ? "&" : "", k, val);
    curl_free(k);
    curl_free(val);
  }
  va_end(ap);
  r = request(v, "POST", path, body, "application/x-www-form-urlencoded", NULL);
  free(body);
  return r;
}

/* The value="..." of the input named `name` in html, into out ("" if none). */
static void input_value(const char *html, const char *name, char *out, size_t size)
{
  char needle[100];
  const char *p, *v;

  snprintf(needle, sizeof needle, "name=\"%s\"", name);
  out[0] = '\0';
  p = strstr(html, needle);
  if (!p)
    return;
  v = strstr(p, "value=\"");
  if (!v || v > strchr(p, '>'))
    return;
  v += strlen("value=\"");
  snprintf(out, size, "%.*s", (int)strcspn(v, "\""), v);
}

/* GET `path` and return the CSRF token of its form. */
static void csrf_of(visitor *v, const char *path, char *token, size_t size)
{
  response r = get(v, path);

  assert_int_equal(r.status, 200);
  input_value(r.body, "_csrf", token, size);
  if (!token[0])
    fail_msg("no CSRF token in the form of %s:\n%s", path, r.body);
  response_free(&r);
}

#define assert_contains(text, part)                                     \
  do {                                                                  \
    if (!strstr((text), (part)))                                        \
      fail_msg("'%s' is not in:\n%s", (part), (text));                  \
  } while (0)
#define assert_lacks(text, part)                                        \
  do {                                                                  \
    if (strstr((text), (part)))                                         \
      fail_msg("'%s' should not be in:\n%s", (part), (text));           \
  } while (0)

/* ---- the databases ---- */

/* The first column of the first row of sql (with text parameters), as a
 * new string; NULL for SQL NULL or no row. */
static char *query(const char *url, const char *sql, int n, const char *const *params)
{
  PGconn *c = PQconnectdb(url);
  PGresult *res;
  char *v = NULL;

  if (PQstatus(c) != CONNECTION_OK)
    fail_msg("cannot connect: %s", PQerrorMessage(c));
  res = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(res) != PGRES_TUPLES_OK)
    fail_msg("%s: %s", sql, PQresultErrorMessage(res));
  if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
    v = strdup(PQgetvalue(res, 0, 0));
  PQclear(res);
  PQfinish(c);
  return v;
}

static char *store1(const char *sql, const char *param)
{
  return query(db.store_url, sql, param ? 1 : 0, &param);
}

static long store_count(const char *sql, const char *param)
{
  char *v = store1(sql, param);
  long n = v ? strtol(v, NULL, 10) : -1;

  free(v);
  return n;
}

static void assert_store_text(const char *sql, const char *param, const char *want)
{
  char *got = store1(sql, param);

  if (!got || strcmp(got, want) != 0)
    fail_msg("%s [%s]\n  got:  %s\n  want: %s", sql, param ? param : "", got ? got : "(null)",
             want);
  free(got);
}

/* Wait until the view database's answer to sql(param) is not NULL; returns
 * it (caller frees), or fails the test. */
static char *wait_view(const char *sql, const char *param)
{
  for (int waited = 0; waited < WAIT; waited += 100) {
    char *v = query(db.view_url, sql, param ? 1 : 0, &param);
    if (v)
      return v;
    ch_e2e_sleep_ms(100);
  }
  fail_msg("waited in vain for %s [%s]", sql, param ? param : "");
  return NULL;
}

/* GET path until its body holds `part` (other statuses allowed meanwhile);
 * returns the last response. */
static response wait_page(visitor *v, const char *path, const char *part)
{
  for (int waited = 0; waited < WAIT; waited += 200) {
    response r = get(v, path);
    if (strstr(r.body, part))
      return r;
    response_free(&r);
    ch_e2e_sleep_ms(200);
  }
  fail_msg("%s never showed '%s'", path, part);
  return (response){ 0, NULL, "", "" };
}

/* ---- journeys ---- */

/* Register `email` through the form; the new user's id into id, the
 * request's traceId (from the Register command) into trace (may be NULL). */
static void register_user(visitor *v, const char *email, char id[37], char *trace)
{
  char token[200], stream[80], *t;
  response r = get(v, "/register");

  assert_int_equal(r.status, 200);
  input_value(r.body, "id", id, 37);
  input_value(r.body, "_csrf", token, sizeof token);
  assert_int_equal(strlen(id), 36);
  response_free(&r);
  r = post_form(v, "/register", "_csrf", token, "id", id, "email", email, "password", PASSWORD, NULL);
  assert_int_equal(r.status, 301);
  assert_string_equal(r.location, "/register/registration-complete");
  response_free(&r);
  snprintf(stream, sizeof stream, "identity:command-%s", id);
  t = store1("SELECT metadata->>'traceId' FROM message_store.messages WHERE stream_name = $1",
             stream);
  assert_non_null(t);
  if (trace)
    snprintf(trace, 37, "%s", t);
  free(t);
}

/* Wait until user_credentials has the email (the log-in needs it). */
static void wait_credentials(const char *email)
{
  free(wait_view("SELECT id FROM user_credentials WHERE email = $1", email));
}

static void log_in(visitor *v, const char *email, const char *password)
{
  char token[200];
  response r;

  csrf_of(v, "/auth/log-in", token, sizeof token);
  r = post_form(v, "/auth/log-in", "_csrf", token, "email", email, "password", password, NULL);
  assert_int_equal(r.status, 302);
  assert_string_equal(r.location, "/");
  response_free(&r);
}

/* A registered, logged-in visitor with a fresh email "<prefix>-<n>@example.com". */
static void new_user(visitor *v, const char *prefix, char email[100], char id[37])
{
  char u[37];

  visitor_open(v);
  {
    response r = get(v, "/register");
    input_value(r.body, "id", u, sizeof u);
    response_free(&r);
  }
  snprintf(email, 100, "%s-%.8s@example.com", prefix, u);
  register_user(v, email, id, NULL);
  wait_credentials(email);
  log_in(v, email, PASSWORD);
}

/* The administrator of config/video-tutorials.ini, registered once. */
static void admin_visitor(visitor *v)
{
  static char id[37];
  char token[200];
  response r;

  visitor_open(v);
  if (!id[0]) {
    register_user(v, ADMIN_EMAIL, id, NULL);
    wait_credentials(ADMIN_EMAIL);
  }
  csrf_of(v, "/auth/log-in", token, sizeof token);
  r = post_form(v, "/auth/log-in", "_csrf", token, "email", ADMIN_EMAIL, "password", PASSWORD, NULL);
  assert_int_equal(r.status, 302);
  response_free(&r);
}

/* ---- setup ---- */

static int group_setup(void **state)
{
  visitor v;
  (void)state;

  curl_global_init(CURL_GLOBAL_DEFAULT);
  ch_e2e_db_create(&db);
  start_site();
  visitor_open(&v);
  for (int waited = 0;; waited += 100) {
    CURL *c = curl_easy_init();
    char url[128];
    long status = 0;
    snprintf(url, sizeof url, "%s/", base);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (curl_easy_perform(c) == CURLE_OK)
      curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    if (status == 200)
      break;
    if (waited > WAIT || !ch_e2e_process_alive(host.pid)) {
      print_error("the site never answered on %s: see %s\n", base, host.log_path);
      return -1;
    }
    ch_e2e_sleep_ms(100);
  }
  visitor_close(&v);
  return 0;
}

static int group_teardown(void **state)
{
  int status;
  (void)state;

  status = ch_e2e_host_stop(&host, SIGTERM, WAIT);
  ch_e2e_db_drop(&db);
  curl_global_cleanup();
  if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    print_error("the host did not stop cleanly (status %d)\n", status);
    return -1;
  }
  return 0;
}

/* ---- home ---- */

static void test_home(void **state)
{
  visitor v;
  response r;
  char token[200];
  (void)state;

  visitor_open(&v);
  r = get(&v, "/");
  assert_int_equal(r.status, 200);
  assert_contains(r.content_type, "text/html");
  assert_contains(r.body, "id=\"videos-watched\">");
  assert_contains(r.body, "action=\"/record-viewing/12345\"");
  assert_contains(r.body, "name=\"_csrf\"");
  assert_contains(r.body, "href=\"/site.css\"");
  assert_contains(r.body, "href=\"/auth/log-in\"");
  input_value(r.body, "_csrf", token, sizeof token);
  response_free(&r);

  r = get(&v, "/site.css");
  assert_int_equal(r.status, 200);
  assert_contains(r.content_type, "text/css");
  assert_contains(r.body, ".site-header");
  response_free(&r);

  /* bad: another method, a page that does not exist */
  r = post_form(&v, "/", "_csrf", token, NULL);
  assert_int_equal(r.status, 405);
  response_free(&r);
  r = get(&v, "/no-such-page");
  assert_int_equal(r.status, 404);
  response_free(&r);
  visitor_close(&v);
}

/* ---- record-viewings ---- */

static long videos_watched(visitor *v)
{
  response r = get(v, "/");
  const char *p = strstr(r.body, "id=\"videos-watched\">");
  long n;

  assert_non_null(p);
  n = strtol(p + strlen("id=\"videos-watched\">"), NULL, 10);
  response_free(&r);
  return n;
}

static void test_record_viewing(void **state)
{
  visitor anon, user;
  char token[200], video[37], video2[37], path[120], stream[80], email[100], id[37], want[200];
  char long_id[80];
  response r;
  long before;
  (void)state;

  visitor_open(&anon);
  csrf_of(&anon, "/", token, sizeof token);
  before = videos_watched(&anon);
  {
    response g = get(&anon, "/register");   /* any fresh UUID */
    input_value(g.body, "id", video, sizeof video);
    response_free(&g);
  }

  /* a visitor who is not logged in: userId null */
  snprintf(path, sizeof path, "/record-viewing/%s", video);
  r = post_form(&anon, path, "_csrf", token, NULL);
  assert_int_equal(r.status, 302);
  assert_string_equal(r.location, "/");
  response_free(&r);
  snprintf(stream, sizeof stream, "viewing-%s", video);
  snprintf(want, sizeof want, "VideoViewed {\"userId\": null, \"videoId\": \"%s\"}", video);
  assert_store_text("SELECT type || ' ' || data::text FROM message_store.messages"
                    " WHERE stream_name = $1", stream, want);
  assert_store_text("SELECT (metadata->>'traceId' ~ '^[0-9a-f-]{36}$')::text"
                    " FROM message_store.messages WHERE stream_name = $1", stream, "true");

  /* the home page counts it (the home-page aggregator) */
  for (int waited = 0; videos_watched(&anon) != before + 1; waited += 100) {
    if (waited > WAIT)
      fail_msg("videosWatched stayed at %ld", videos_watched(&anon));
    ch_e2e_sleep_ms(100);
  }

  /* a logged-in visitor: userId in the data and the metadata */
  new_user(&user, "viewer", email, id);
  csrf_of(&user, "/", token, sizeof token);
  r = post_form(&user, path, "_csrf", token, NULL);
  assert_int_equal(r.status, 302);
  response_free(&r);
  snprintf(want, sizeof want, "%s %s", id, id);
  assert_store_text("SELECT (data->>'userId') || ' ' || (metadata->>'userId')"
                    " FROM message_store.messages WHERE stream_name = $1 AND position = 1",
                    stream, want);

  /* bad: no CSRF token, a token of another visitor, an id that is no id */
  memcpy(video2, video, sizeof video2);
  video2[0] = video2[0] == 'a' ? 'b' : 'a';
  snprintf(path, sizeof path, "/record-viewing/%s", video2);
  snprintf(stream, sizeof stream, "viewing-%s", video2);
  r = post_form(&anon, path, "x", "y", NULL);
  assert_int_equal(r.status, 403);
  response_free(&r);
  csrf_of(&user, "/", token, sizeof token);
  r = post_form(&anon, path, "_csrf", token, NULL);
  assert_int_equal(r.status, 403);
  response_free(&r);
  assert_int_equal(store_count("SELECT count(*) FROM message_store.messages"
                               " WHERE stream_name = $1", stream), 0);
  csrf_of(&anon, "/", token, sizeof token);
  r = post_form(&anon, "/record-viewing/bad%20id%21", "_csrf", token, NULL);
  assert_int_equal(r.status, 400);
  response_free(&r);
  memset(long_id, 'a', 65);
  long_id[65] = '\0';
  snprintf(path, sizeof path, "/record-viewing/%s", long_id);
  r = post_form(&anon, path, "_csrf", token, NULL);
  assert_int_equal(r.status, 400);
  response_free(&r);
  assert_int_equal(store_count("SELECT count(*) FROM message_store.messages"
                               " WHERE stream_name IN ('viewing-bad id!', 'viewing-' || $1)",
                               long_id), 0);
  r = get(&anon, "/record-viewing/12345");
  assert_int_equal(r.status, 405);
  response_free(&r);
  visitor_close(&anon);
  visitor_close(&user);
}

/* ---- register-users ---- */

/* POST /register with these fields: expect 400, nothing written, and the
 * error texts given (NULL: that field has none). */
static void bad_registration(visitor *v, const char *email, const char *password,
                             const char *email_error, const char *password_error)
{
  char id[37], token[200], stream[80], got[200];
  response r = get(v, "/register");

  input_value(r.body, "id", id, sizeof id);
  input_value(r.body, "_csrf", token, sizeof token);
  response_free(&r);
  r = post_form(v, "/register", "_csrf", token, "id", id, "email", email, "password", password, NULL);
  assert_int_equal(r.status, 400);
  /* the form again, with the same user id, and the errors by their fields */
  input_value(r.body, "id", got, sizeof got);
  assert_string_equal(got, id);
  if (email_error) {
    assert_contains(r.body, "<p class=\"field-error\" id=\"email-error\">");
    assert_contains(r.body, email_error);
  } else {
    assert_lacks(r.body, "id=\"email-error\"");
  }
  if (password_error) {
    assert_contains(r.body, "<p class=\"field-error\" id=\"password-error\">");
    assert_contains(r.body, password_error);
  } else {
    assert_lacks(r.body, "id=\"password-error\"");
  }
  assert_lacks(r.body, password[0] ? password : "\x01");
  response_free(&r);
  snprintf(stream, sizeof stream, "identity:command-%s", id);
  assert_int_equal(store_count("SELECT count(*) FROM message_store.messages"
                               " WHERE stream_name = $1", stream), 0);
}

static void test_register(void **state)
{
  visitor v;
  char id[37], id2[37], trace[37], stream[80], email[100], token[200], dir[400], want[300];
  char cmd[600];
  response r;
  (void)state;

  visitor_open(&v);
  r = get(&v, "/register");
  assert_int_equal(r.status, 200);
  input_value(r.body, "id", id, sizeof id);
  assert_int_equal(strlen(id), 36);
  assert_contains(r.body, "name=\"email\"");
  assert_contains(r.body, "name=\"password\"");
  assert_contains(r.body, "name=\"_csrf\"");
  response_free(&r);
  r = get(&v, "/register");
  input_value(r.body, "id", id2, sizeof id2);
  assert_string_not_equal(id, id2);   /* a new id each time */
  response_free(&r);

  /* good */
  snprintf(email, sizeof email, "reg-%.8s@example.com", id);
  register_user(&v, email, id, trace);
  snprintf(stream, sizeof stream, "identity:command-%s", id);
  snprintf(want, sizeof want, "Register %s %s 60 true %s", id, email, id);
  assert_store_text("SELECT type || ' ' || (data->>'userId') || ' ' || (data->>'email') || ' '"
                    " || length(data->>'passwordHash') || ' '"
                    " || (data->>'passwordHash' LIKE '$2b$10$%')::text || ' '"
                    " || (metadata->>'userId') FROM message_store.messages"
                    " WHERE stream_name = $1", stream, want);
  r = get(&v, "/register/registration-complete");
  assert_int_equal(r.status, 200);
  assert_contains(r.body, "Registration complete");
  response_free(&r);

  /* the book's five messages of one registration, and the email */
  for (int waited = 0; store_count("SELECT count(*) FROM message_store.messages"
                                   " WHERE metadata->>'traceId' = $1", trace) < 5;
       waited += 100) {
    if (waited > WAIT)
      fail_msg("the registration's trace never had its five messages");
    ch_e2e_sleep_ms(100);
  }
  assert_store_text("SELECT string_agg(type, ',' ORDER BY global_position)"
                    " FROM message_store.messages WHERE metadata->>'traceId' = $1", trace,
                    "Register,Registered,Send,Sent,RegistrationEmailSent");
  email_dir(dir, sizeof dir);
  snprintf(cmd, sizeof cmd, "grep -l 'To: %s' '%s'/*.eml >/dev/null 2>&1", email, dir);
  assert_int_equal(system(cmd), 0);

  /* bad: each field, both, the email taken, markup in the email */
  bad_registration(&v, "not-an-email", PASSWORD, "Email is not a valid email", NULL);
  bad_registration(&v, "", PASSWORD, "Email can&#39;t be blank", NULL);
  bad_registration(&v, "someone@example.com", "pw-S7x", NULL,
                   "Password is too short (minimum is 8 characters)");
  bad_registration(&v, "someone@example.com", "", NULL, "Password can&#39;t be blank");
  bad_registration(&v, "a@b", "pw-Q2z!", "Email is not a valid email",
                   "Password is too short");
  wait_credentials(email);
  bad_registration(&v, email, PASSWORD, "Email is already taken", NULL);
  r = get(&v, "/register");
  input_value(r.body, "_csrf", token, sizeof token);
  response_free(&r);
  {
    char xid[37];
    response g = get(&v, "/register");
    input_value(g.body, "id", xid, sizeof xid);
    response_free(&g);
    r = post_form(&v, "/register", "_csrf", token, "id", xid, "email",
                  "\"><script>alert(1)</script>@example.com", "password", PASSWORD, NULL);
    assert_int_equal(r.status, 400);
    assert_lacks(r.body, "<script>alert(1)");
    assert_contains(r.body, "value=\"&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;@example.com\"");
    response_free(&r);
  }

  /* bad: no user id, an id that is no UUID, no CSRF token */
  r = post_form(&v, "/register", "_csrf", token, "email", "x@example.com", "password", PASSWORD, NULL);
  assert_int_equal(r.status, 400);
  response_free(&r);
  r = post_form(&v, "/register", "_csrf", token, "id", "123", "email", "x@example.com",
                "password", PASSWORD, NULL);
  assert_int_equal(r.status, 400);
  response_free(&r);
  r = post_form(&v, "/register", "id", id2, "email", "x@example.com", "password", PASSWORD, NULL);
  assert_int_equal(r.status, 403);
  response_free(&r);
  assert_int_equal(store_count("SELECT count(*) FROM message_store.messages"
                               " WHERE data->>'email' = $1", "x@example.com"), 0);
  visitor_close(&v);
}

/* ---- authenticate ---- */

/* The text of the page's failure notice, into out. */
static void notice_of(const char *html, char *out, size_t size)
{
  const char *p = strstr(html, "class=\"notice bad\"");

  out[0] = '\0';
  if (p && (p = strchr(p, '>')))
    snprintf(out, size, "%.*s", (int)strcspn(p + 1, "<"), p + 1);
}

static void test_log_in_and_out(void **state)
{
  visitor v;
  char id[37], email[100], token[200], stream[96], want[300], wrong[300], unknown[300];
  response r;
  long auth_messages;
  (void)state;

  visitor_open(&v);
  {
    response g = get(&v, "/register");
    char u[37];
    input_value(g.body, "id", u, sizeof u);
    response_free(&g);
    snprintf(email, sizeof email, "auth-%.8s@example.com", u);
  }
  register_user(&v, email, id, NULL);
  wait_credentials(email);
  snprintf(stream, sizeof stream, "authentication-%s", id);

  r = get(&v, "/auth/log-in");
  assert_int_equal(r.status, 200);
  assert_contains(r.body, "name=\"email\"");
  assert_contains(r.body, "name=\"password\"");
  input_value(r.body, "_csrf", token, sizeof token);
  response_free(&r);

  /* a wrong password: UserLoginFailed, metadata userId null, 401 */
  r = post_form(&v, "/auth/log-in", "_csrf", token, "email", email, "password", "not it at all", NULL);
  assert_int_equal(r.status, 401);
  notice_of(r.body, wrong, sizeof wrong);
  assert_string_equal(wrong, FAILED_TEXT);
  response_free(&r);
  snprintf(want, sizeof want, "UserLoginFailed {\"reason\": \"Incorrect password\","
           " \"userId\": \"%s\"} null true", id);
  assert_store_text("SELECT type || ' ' || data::text || ' ' || (metadata->'userId')::text"
                    " || ' ' || (metadata->>'traceId' ~ '^[0-9a-f-]{36}$')::text"
                    " FROM message_store.messages WHERE stream_name = $1", stream, want);
  r = get(&v, "/creators-portal");
  assert_int_equal(r.status, 302);     /* still logged out */
  response_free(&r);

  /* an unknown email: nothing written, the same 401 */
  auth_messages = store_count("SELECT count(*) FROM message_store.messages"
                              " WHERE message_store.category(stream_name) = $1",
                              "authentication");
  r = post_form(&v, "/auth/log-in", "_csrf", token, "email", "nobody@example.com",
                "password", PASSWORD, NULL);
  assert_int_equal(r.status, 401);
  notice_of(r.body, unknown, sizeof unknown);
  assert_string_equal(unknown, wrong);
  response_free(&r);
  r = post_form(&v, "/auth/log-in", "_csrf", token, NULL);    /* no fields at all */
  assert_int_equal(r.status, 401);
  response_free(&r);
  assert_int_equal(store_count("SELECT count(*) FROM message_store.messages"
                               " WHERE message_store.category(stream_name) = $1",
                               "authentication"), auth_messages);

  /* no CSRF token: 403, nothing written, not logged in */
  r = post_form(&v, "/auth/log-in", "email", email, "password", PASSWORD, NULL);
  assert_int_equal(r.status, 403);
  response_free(&r);
  assert_int_equal(store_count("SELECT count(*) FROM message_store.messages"
                               " WHERE stream_name = $1", stream), 1);

  /* the right password: UserLoggedIn, a session */
  log_in(&v, email, PASSWORD);
  snprintf(want, sizeof want, "UserLoggedIn {\"userId\": \"%s\"} %s", id, id);
  assert_store_text("SELECT type || ' ' || data::text || ' ' || (metadata->>'userId')"
                    " FROM message_store.messages WHERE stream_name = $1 AND position = 1",
                    stream, want);
  r = get(&v, "/");
  assert_contains(r.body, "href=\"/auth/log-out\"");
  response_free(&r);
  r = get(&v, "/creators-portal");
  assert_int_equal(r.status, 200);
  response_free(&r);

  /* log out */
  r = get(&v, "/auth/log-out");
  assert_int_equal(r.status, 302);
  assert_string_equal(r.location, "/");
  response_free(&r);
  r = get(&v, "/creators-portal");
  assert_int_equal(r.status, 302);
  assert_string_equal(r.location, "/auth/log-in");
  response_free(&r);
  visitor_close(&v);
}

/* ---- creators-portal ---- */

/* Name video `video` as `name`: the operation's traceId into trace. */
static void name_video(visitor *v, const char *video, const char *name, char trace[37])
{
  char path[160], token[200], stream[80], want[400];
  response r;

  snprintf(path, sizeof path, "/creators-portal/videos/%s", video);
  csrf_of(v, path, token, sizeof token);
  snprintf(path, sizeof path, "/creators-portal/videos/%s/name", video);
  r = post_form(v, path, "_csrf", token, "name", name, NULL);
  assert_int_equal(r.status, 302);
  assert_true(!strncmp(r.location, "/creators-portal/video-operations/", 34));
  snprintf(trace, 37, "%s", r.location + 34);
  response_free(&r);
  snprintf(stream, sizeof stream, "videoPublishing:command-%s", video);
  snprintf(want, sizeof want, "NameVideo|%s|%s", name, video);
  {
    const char *params[2] = { stream, trace };
    char *got = query(db.store_url,
                      "SELECT type || '|' || (data->>'name') || '|' || (data->>'videoId')"
                      " FROM message_store.messages"
                      " WHERE stream_name = $1 AND metadata->>'traceId' = $2",
                      2, params);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
  }
}

/* GET an operation's page until it redirects; its Location into location. */
static void wait_operation_done(visitor *v, const char *trace, char *location, size_t size)
{
  char path[120];

  snprintf(path, sizeof path, "/creators-portal/video-operations/%s", trace);
  for (int waited = 0;; waited += 200) {
    response r = get(v, path);
    if (r.status == 302) {
      snprintf(location, size, "%s", r.location);
      response_free(&r);
      return;
    }
    assert_int_equal(r.status, 200);
    assert_contains(r.body, "Operation pending");
    assert_contains(r.body, "http-equiv=\"refresh\"");
    response_free(&r);
    if (waited > WAIT)
      fail_msg("the operation %s never finished", trace);
    ch_e2e_sleep_ms(200);
  }
}

static void test_creators_portal(void **state)
{
  visitor anon, owner, other;
  char email[100], id[37], email2[100], id2[37], token[200], video[37], trace[37], path[200];
  char stream[80], want[400], random_id[37];
  response r;
  (void)state;

  /* logged out: sent to log in, nothing written */
  visitor_open(&anon);
  {
    response g = get(&anon, "/register");
    input_value(g.body, "id", random_id, sizeof random_id);
    response_free(&g);
  }
  snprintf(path, sizeof path, "/creators-portal/videos/%s", random_id);
  const char *logged_out_paths[] = { "/creators-portal", path };
  for (size_t i = 0; i < 2; i++) {
    r = get(&anon, logged_out_paths[i]);
    assert_int_equal(r.status, 302);
    assert_string_equal(r.location, "/auth/log-in");
    response_free(&r);
  }
  snprintf(path, sizeof path, "/creators-portal/video-operations/%s", random_id);
  r = get(&anon, path);
  assert_int_equal(r.status, 302);
  response_free(&r);
  csrf_of(&anon, "/", token, sizeof token);
  r = post_form(&anon, "/creators-portal/publish-video", "_csrf", token, "sourceUri",
                "https://example.com/anon.mp4", NULL);
  assert_int_equal(r.status, 302);
  assert_string_equal(r.location, "/auth/log-in");
  response_free(&r);
  assert_int_equal(store_count("SELECT count(*) FROM message_store.messages"
                               " WHERE data->>'sourceUri' = $1", "https://example.com/anon.mp4"),
                   0);

  /* the dashboard, empty */
  new_user(&owner, "creator", email, id);
  r = get(&owner, "/creators-portal");
  assert_int_equal(r.status, 200);
  assert_contains(r.body, "id=\"no-videos\"");
  assert_contains(r.body, "action=\"/creators-portal/publish-video\"");
  input_value(r.body, "_csrf", token, sizeof token);
  response_free(&r);

  /* publish: PublishVideo, then the video's page */
  r = post_form(&owner, "/creators-portal/publish-video", "_csrf", token, "sourceUri",
                "https://example.com/intro.mp4", NULL);
  assert_int_equal(r.status, 303);
  assert_true(!strncmp(r.location, "/creators-portal/videos/", 24));
  snprintf(video, sizeof video, "%s", r.location + 24);
  snprintf(path, sizeof path, "%s", r.location);
  response_free(&r);
  snprintf(stream, sizeof stream, "videoPublishing:command-%s", video);
  snprintf(want, sizeof want, "PublishVideo %s https://example.com/intro.mp4 %s", id, video);
  assert_store_text("SELECT type || ' ' || (data->>'ownerId') || ' ' || (data->>'sourceUri')"
                    " || ' ' || (data->>'videoId') FROM message_store.messages"
                    " WHERE stream_name = $1", stream, want);
  r = wait_page(&owner, path, "id=\"video-name\">Untitled</h1>");
  assert_int_equal(r.status, 200);
  assert_contains(r.body, "https://www.youtube.com/watch?v=GI_P3UtZXAA");
  response_free(&r);
  r = get(&owner, "/creators-portal");
  assert_contains(r.body, video);
  response_free(&r);

  /* name it: NameVideo, the operation's page, then the video's page */
  name_video(&owner, video, "Intro to C", trace);
  snprintf(want, sizeof want, "/creators-portal/videos/%s", video);
  wait_operation_done(&owner, trace, path, sizeof path);
  assert_string_equal(path, want);
  r = get(&owner, want);
  assert_contains(r.body, "id=\"video-name\">Intro to C</h1>");
  response_free(&r);

  /* a blank name: the component refuses, the page says why */
  name_video(&owner, video, "", trace);
  snprintf(path, sizeof path, "/creators-portal/video-operations/%s", trace);
  r = wait_page(&owner, path, "Operation failed");
  assert_int_equal(r.status, 200);
  assert_contains(r.body, "id=\"failure\"");
  assert_contains(r.body, "Name: Can&#39;t be blank.");
  assert_contains(r.body, want);       /* the link back to the video */
  response_free(&r);

  /* markup in a name is text */
  name_video(&owner, video, "<script>alert(1)</script>", trace);
  wait_operation_done(&owner, trace, path, sizeof path);
  r = wait_page(&owner, want, "&lt;script&gt;alert(1)&lt;/script&gt;");
  assert_lacks(r.body, "<script>alert(1)");
  response_free(&r);
  r = wait_page(&owner, "/creators-portal", "&lt;script&gt;alert(1)&lt;/script&gt;");
  assert_lacks(r.body, "<script>alert(1)");
  response_free(&r);

  /* publishing with the book's JSON body, the token in its header */
  {
    char header[300];
    json_t *reply;
    json_error_t e;

    csrf_of(&owner, "/creators-portal", token, sizeof token);
    snprintf(header, sizeof header, "X-CSRF-Token: %s", token);
    r = request(&owner, "POST", "/creators-portal/publish-video",
                "{\"sourceUri\": \"https://example.com/json.mp4\"}", "application/json", header);
    assert_int_equal(r.status, 202);
    reply = json_loads(r.body, 0, &e);
    assert_non_null(reply);
    assert_true(json_is_string(json_object_get(reply, "videoId")));
    json_decref(reply);
    response_free(&r);
    r = request(&owner, "POST", "/creators-portal/publish-video", "{\"sourceUri\": 7}",
                "application/json", header);
    assert_int_equal(r.status, 400);
    assert_contains(r.body, "\"errors\"");
    response_free(&r);
  }

  /* bad: a blank source, one that is no http(s) URL */
  csrf_of(&owner, "/creators-portal", token, sizeof token);
  r = post_form(&owner, "/creators-portal/publish-video", "_csrf", token, "sourceUri", "", NULL);
  assert_int_equal(r.status, 400);
  assert_contains(r.body, "id=\"sourceUri-error\"");
  assert_contains(r.body, "Source URL can&#39;t be blank");
  response_free(&r);
  r = post_form(&owner, "/creators-portal/publish-video", "_csrf", token, "sourceUri",
                "ftp://example.com/x\"><b>", NULL);
  assert_int_equal(r.status, 400);
  assert_contains(r.body, "not an http or https URL");
  assert_lacks(r.body, "x\"><b>");
  response_free(&r);
  assert_int_equal(store_count("SELECT count(*) FROM message_store.messages"
                               " WHERE data->>'sourceUri' LIKE $1", "ftp:%"), 0);
  r = post_form(&owner, "/creators-portal/publish-video", "sourceUri", "https://example.com/y", NULL);
  assert_int_equal(r.status, 403);
  response_free(&r);

  /* bad: ids that are no UUID, an operation no one asked for */
  r = get(&owner, "/creators-portal/videos/12345");
  assert_int_equal(r.status, 404);
  response_free(&r);
  r = get(&owner, "/creators-portal/video-operations/nope");
  assert_int_equal(r.status, 404);
  response_free(&r);
  snprintf(path, sizeof path, "/creators-portal/video-operations/%s", random_id);
  r = get(&owner, path);
  assert_int_equal(r.status, 200);
  assert_contains(r.body, "Operation pending");
  response_free(&r);
  snprintf(path, sizeof path, "/creators-portal/videos/%s", random_id);
  r = get(&owner, path);
  assert_int_equal(r.status, 404);
  response_free(&r);

  /* another user sees nor names the video */
  new_user(&other, "other", email2, id2);
  snprintf(path, sizeof path, "/creators-portal/videos/%s", video);
  r = get(&other, path);
  assert_int_equal(r.status, 404);
  response_free(&r);
  csrf_of(&other, "/creators-portal", token, sizeof token);
  snprintf(path, sizeof path, "/creators-portal/videos/%s/name", video);
  r = post_form(&other, path, "_csrf", token, "name", "Mine now", NULL);
  assert_int_equal(r.status, 404);
  response_free(&r);
  assert_int_equal(store_count("SELECT count(*) FROM message_store.messages"
                               " WHERE data->>'name' = $1", "Mine now"), 0);
  r = get(&other, "/creators-portal");
  assert_lacks(r.body, video);
  response_free(&r);

  visitor_close(&anon);
  visitor_close(&owner);
  visitor_close(&other);
}

/* ---- admin-portal ---- */

static void test_admin_portal(void **state)
{
  visitor anon, user, admin;
  char email[100], id[37], trace[37], path[200], token[200];
  static const char *const pages[] = {
    "/admin", "/admin/users", "/admin/messages", "/admin/streams",
    "/admin/subscriber-positions",
  };
  response r;
  (void)state;

  /* a user who registers (trace), logs in once, watches a video */
  visitor_open(&user);
  {
    response g = get(&user, "/register");
    char u[37];
    input_value(g.body, "id", u, sizeof u);
    response_free(&g);
    snprintf(email, sizeof email, "watched-%.8s@example.com", u);
  }
  register_user(&user, email, id, trace);
  wait_credentials(email);
  log_in(&user, email, PASSWORD);
  csrf_of(&user, "/", token, sizeof token);
  r = post_form(&user, "/record-viewing/12345", "_csrf", token, NULL);
  assert_int_equal(r.status, 302);
  response_free(&r);

  /* nobody but an administrator: 403 */
  visitor_open(&anon);
  for (size_t i = 0; i < sizeof pages / sizeof pages[0]; i++) {
    r = get(&anon, pages[i]);
    assert_int_equal(r.status, 403);
    assert_contains(r.body, "id=\"forbidden\"");
    response_free(&r);
    r = get(&user, pages[i]);
    assert_int_equal(r.status, 403);
    response_free(&r);
  }
  snprintf(path, sizeof path, "/admin/users/%s", id);
  r = get(&user, path);
  assert_int_equal(r.status, 403);
  response_free(&r);
  snprintf(path, sizeof path, "/admin/correlated-messages/%s", trace);
  r = get(&user, path);
  assert_int_equal(r.status, 403);
  response_free(&r);

  /* the administrator */
  admin_visitor(&admin);
  r = get(&admin, "/admin");
  assert_int_equal(r.status, 302);
  assert_string_equal(r.location, "/admin/users");
  response_free(&r);
  r = wait_page(&admin, "/admin/users", email);
  assert_int_equal(r.status, 200);
  assert_contains(r.body, ADMIN_EMAIL);
  response_free(&r);

  /* the user: one log-in, the email sent, the events */
  snprintf(path, sizeof path, "/admin/users/%s", id);
  r = wait_page(&admin, path, "id=\"email-sent\">yes<");
  response_free(&r);
  r = wait_page(&admin, path, "id=\"login-count\">1<");
  assert_contains(r.body, "UserLoggedIn");
  assert_contains(r.body, "VideoViewed");
  response_free(&r);
  r = get(&admin, "/admin/users/no-such-user");
  assert_int_equal(r.status, 404);
  response_free(&r);

  /* the registration's trace: its five messages */
  snprintf(path, sizeof path, "/admin/correlated-messages/%s", trace);
  r = wait_page(&admin, path, "id=\"message-count\">5<");
  assert_contains(r.body, "RegistrationEmailSent");
  assert_contains(r.body, "sendEmail-");
  response_free(&r);

  /* messages, a page at a time */
  r = get(&admin, "/admin/messages");
  assert_int_equal(r.status, 200);
  assert_contains(r.body, "Registered");
  response_free(&r);
  r = get(&admin, "/admin/messages?before=3");
  assert_int_equal(r.status, 200);
  assert_lacks(r.body, "id=\"older\"");
  assert_lacks(r.body, "<td class=\"num\">3</td>");
  assert_contains(r.body, "<td class=\"num\">2</td>");
  response_free(&r);
  ch_e2e_write_many(&db, "filler", "Filled", 60, 3);
  r = get(&admin, "/admin/messages");
  assert_contains(r.body, "id=\"older\"");     /* more than a page (50) */
  response_free(&r);
  r = get(&admin, "/admin/messages?before=40");
  assert_contains(r.body, "<td class=\"num\">39</td>");
  assert_lacks(r.body, "<td class=\"num\">40</td>");
  response_free(&r);
  r = get(&admin, "/admin/messages?before=abc");
  assert_int_equal(r.status, 400);
  response_free(&r);
  r = get(&admin, "/admin/messages?before=-1");
  assert_int_equal(r.status, 400);
  response_free(&r);

  /* streams and a stream */
  snprintf(path, sizeof path, "identity-%s", id);
  r = wait_page(&admin, "/admin/streams", path);
  response_free(&r);
  snprintf(path, sizeof path, "/admin/streams/identity-%s", id);
  r = get(&admin, path);
  assert_int_equal(r.status, 200);
  assert_contains(r.body, "Registered");
  assert_contains(r.body, "RegistrationEmailSent");
  response_free(&r);
  r = get(&admin, "/admin/streams?before=x");
  assert_int_equal(r.status, 400);
  response_free(&r);

  /* markup written into the store shows as text */
  ch_e2e_exec(db.store_url, "SELECT message_store.write_message(gen_random_uuid()::text,"
                            " 'viewing-markup', '<b>Bold</b>',"
                            " '{\"videoId\": \"<script>alert(1)</script>\"}')");
  r = get(&admin, "/admin/messages");
  assert_contains(r.body, "&lt;b&gt;Bold&lt;/b&gt;");
  assert_contains(r.body, "&lt;script&gt;alert(1)&lt;/script&gt;");
  assert_lacks(r.body, "<script>alert(1)");
  response_free(&r);
  r = get(&admin, "/admin/streams/viewing-markup?from=z");
  assert_int_equal(r.status, 400);
  response_free(&r);

  /* subscriber positions: the aggregators keep theirs in the view database */
  r = wait_page(&admin, "/admin/subscriber-positions", "aggregators:home-page");
  assert_int_equal(r.status, 200);
  assert_contains(r.body, "id=\"view-positions\"");
  response_free(&r);

  visitor_close(&anon);
  visitor_close(&user);
  visitor_close(&admin);
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_home),
    cmocka_unit_test(test_record_viewing),
    cmocka_unit_test(test_register),
    cmocka_unit_test(test_log_in_and_out),
    cmocka_unit_test(test_creators_portal),
    cmocka_unit_test(test_admin_portal),
  };

  if (argc > 1)
    cmocka_set_test_filter(argv[1]);
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
