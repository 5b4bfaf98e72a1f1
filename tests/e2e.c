/* e2e.c - end-to-end tests: run the comphost binary against fresh databases. */
#include "e2e.h"

#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <libpq-fe.h>

#include "support.h"
#include "uuid.h"

void ch_e2e_sleep_ms(int ms)
{
  struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

  while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
    ;
}

static int64_t now_ms(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *admin_url(void)
{
  const char *v = getenv("COMPHOST_DEV_DB_ADMIN_URL");

  if (!v || !*v) {
    print_error("COMPHOST_DEV_DB_ADMIN_URL is not set: run the tests with scripts/test\n");
    fail();
  }
  return v;
}

/* url with its dbname replaced by `dbname` */
static void with_dbname(const char *url, const char *dbname, char *out, size_t size)
{
  PQconninfoOption *opts = PQconninfoParse(url, NULL);
  size_t len = 0;

  assert_non_null(opts);
  out[0] = '\0';
  for (PQconninfoOption *o = opts; o->keyword; o++) {
    const char *v = !strcmp(o->keyword, "dbname") ? dbname : o->val;
    if (!v || !*v || !strcmp(o->keyword, "dbname"))
      continue;
    len += (size_t)snprintf(out + len, size - len, "%s%s='%s'", len ? " " : "", o->keyword, v);
  }
  snprintf(out + len, size - len, "%sdbname='%s'", len ? " " : "", dbname);
  PQconninfoFree(opts);
}

void ch_e2e_exec(const char *url, const char *sql)
{
  PGconn *c = PQconnectdb(url);
  PGresult *res;

  if (PQstatus(c) != CONNECTION_OK) {
    print_error("cannot connect to %s: %s\n", url, PQerrorMessage(c));
    PQfinish(c);
    fail();
  }
  res = PQexec(c, sql);
  if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
    print_error("%s: %s\n", sql, PQresultErrorMessage(res));
    PQclear(res);
    PQfinish(c);
    fail();
  }
  PQclear(res);
  PQfinish(c);
}

static bool undefined_table(const PGresult *res)
{
  const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

  return state && !strcmp(state, "42P01");
}

int64_t ch_e2e_int(const char *url, const char *sql)
{
  PGconn *c = PQconnectdb(url);
  PGresult *res;
  int64_t v = -1;

  if (PQstatus(c) != CONNECTION_OK) {
    print_error("cannot connect to %s: %s\n", url, PQerrorMessage(c));
    PQfinish(c);
    fail();
  }
  res = PQexec(c, sql);
  if (PQresultStatus(res) != PGRES_TUPLES_OK && undefined_table(res)) {
    /* the host has not created it yet */
    PQclear(res);
    PQfinish(c);
    return -1;
  }
  if (PQresultStatus(res) != PGRES_TUPLES_OK) {
    print_error("%s: %s\n", sql, PQresultErrorMessage(res));
    PQclear(res);
    PQfinish(c);
    fail();
  }
  if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
    v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
  PQclear(res);
  PQfinish(c);
  return v;
}

int64_t ch_e2e_wait_int(const char *url, const char *sql, int64_t want, int timeout_ms)
{
  int64_t end = now_ms() + timeout_ms, v;

  for (;;) {
    v = ch_e2e_int(url, sql);
    if (v == want || now_ms() >= end)
      return v;
    ch_e2e_sleep_ms(50);
  }
}

void ch_e2e_db_create(ch_e2e_db *db)
{
  char u[CHD_UUID_LEN], hex[13], sql[256];
  size_t j = 0;

  memset(db, 0, sizeof *db);
  chd_uuid_v4(u);
  for (size_t i = 0; u[i] && j < 12; i++)
    if (u[i] != '-')
      hex[j++] = u[i];
  hex[j] = '\0';
  snprintf(db->store_name, sizeof db->store_name, "e2e_store_%s", hex);
  snprintf(db->view_name, sizeof db->view_name, "e2e_view_%s", hex);
  snprintf(sql, sizeof sql, "CREATE DATABASE %s TEMPLATE message_store_template", db->store_name);
  ch_e2e_exec(admin_url(), sql);
  snprintf(sql, sizeof sql, "CREATE DATABASE %s", db->view_name);
  ch_e2e_exec(admin_url(), sql);
  with_dbname(ch_test_store_url(), db->store_name, db->store_url, sizeof db->store_url);
  with_dbname(ch_test_view_url(), db->view_name, db->view_url, sizeof db->view_url);
  snprintf(db->dir, sizeof db->dir, "%s/comphost-e2e-%s",
           getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", hex);
  assert_int_equal(mkdir(db->dir, 0700), 0);
}

/* A sanitizer report in any log of the test (a worker's leak, say) fails it. */
static void assert_no_sanitizer_reports(const ch_e2e_db *db)
{
  char cmd[400];

  snprintf(cmd, sizeof cmd, "grep -l 'Sanitizer\\|runtime error:' '%s'/*.log >/dev/null 2>&1",
           db->dir);
  if (system(cmd) == 0) {
    print_error("a sanitizer reported a problem: see the logs in %s\n", db->dir);
    setenv("COMPHOST_E2E_KEEP", "1", 1);
    fail();
  }
}

/* Hosts started and not yet seen to end: a test that fails half way must not
 * leave them running against its dropped databases. */
static pid_t started[64];

static void remember(pid_t pid)
{
  for (size_t i = 0; i < sizeof started / sizeof started[0]; i++)
    if (!started[i]) {
      started[i] = pid;
      return;
    }
}

static void forget(pid_t pid)
{
  for (size_t i = 0; i < sizeof started / sizeof started[0]; i++)
    if (started[i] == pid)
      started[i] = 0;
}

static void kill_leftover_hosts(void)
{
  for (size_t i = 0; i < sizeof started / sizeof started[0]; i++)
    if (started[i]) {
      kill(started[i], SIGKILL);     /* its workers follow it (PR_SET_PDEATHSIG) */
      waitpid(started[i], NULL, 0);
      started[i] = 0;
    }
}

void ch_e2e_db_drop(ch_e2e_db *db)
{
  char sql[256];

  kill_leftover_hosts();
  snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", db->store_name);
  ch_e2e_exec(admin_url(), sql);
  snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", db->view_name);
  ch_e2e_exec(admin_url(), sql);
  assert_no_sanitizer_reports(db);
  if (!getenv("COMPHOST_E2E_KEEP")) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", db->dir);
    if (system(cmd) != 0)
      print_error("cannot remove %s\n", db->dir);
  }
}

const char *ch_e2e_write_ini(const ch_e2e_db *db, const char *name, const char *body)
{
  static char path[400];
  FILE *f;

  snprintf(path, sizeof path, "%s/%s", db->dir, name);
  f = fopen(path, "w");
  assert_non_null(f);
  fprintf(f, "[host]\nmessage_store = %s\nview_data = %s\nplugin_dir = %s\n"
          "log_level = debug\nshutdown_timeout_ms = 10000\n\n%s",
          db->store_url, db->view_url, COMPHOST_TEST_PLUGIN_DIR, body);
  fclose(f);
  return path;
}

void ch_e2e_session_secret(void)
{
  setenv("COMPHOST_SESSION_SECRET", "an end-to-end test's session secret, 0123456789", 0);
}

/* In a child: the environment the host under test sees. */
static void child_env(const ch_e2e_db *db)
{
  ch_e2e_session_secret();
  setenv("MESSAGE_STORE_CONNECTION_STRING", db->store_url, 1);
  setenv("DATABASE_URL", db->view_url, 1);
  if (getenv("COMPHOST_E2E_PLUGIN_DIR"))
    setenv("COMPHOST_PLUGIN_DIR", getenv("COMPHOST_E2E_PLUGIN_DIR"), 1);
  else
    unsetenv("COMPHOST_PLUGIN_DIR");
  /* let a worker that crashes die of its signal, as without sanitizers */
  if (getenv("ASAN_OPTIONS")) {
    char opts[1024];
    snprintf(opts, sizeof opts, "%s:handle_segv=0", getenv("ASAN_OPTIONS"));
    setenv("ASAN_OPTIONS", opts, 1);
  }
}

void ch_e2e_host_start(ch_e2e_host *h, const ch_e2e_db *db, const char *ini,
                       const char *log_name)
{
  pid_t pid;

  snprintf(h->log_path, sizeof h->log_path, "%s/%s", db->dir, log_name);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int fd = open(h->log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
      dup2(fd, STDERR_FILENO);
      dup2(fd, STDOUT_FILENO);
      close(fd);
    }
    child_env(db);
    execl(COMPHOST_BIN, "comphost", "-c", ini, (char *)NULL);
    _exit(127);
  }
  h->pid = pid;
  remember(pid);
}

int ch_e2e_host_wait(ch_e2e_host *h, int timeout_ms)
{
  int64_t end = now_ms() + timeout_ms;
  int status;

  for (;;) {
    pid_t r = waitpid(h->pid, &status, WNOHANG);
    if (r == h->pid) {
      forget(h->pid);
      h->pid = 0;
      return status;
    }
    if (now_ms() >= end)
      return -1;
    ch_e2e_sleep_ms(20);
  }
}

int ch_e2e_host_stop(ch_e2e_host *h, int sig, int timeout_ms)
{
  int status;

  if (h->pid <= 0)
    return -1;
  kill(h->pid, sig);
  status = ch_e2e_host_wait(h, timeout_ms);
  if (status == -1) {
    kill(h->pid, SIGKILL);
    waitpid(h->pid, NULL, 0);
    forget(h->pid);
    h->pid = 0;
  }
  return status;
}

int ch_e2e_run(const ch_e2e_db *db, const char *const argv[], char **out)
{
  int pipefd[2], status;
  pid_t pid;
  size_t len = 0, cap = 4096;
  char *buf = malloc(cap);

  assert_non_null(buf);
  assert_int_equal(pipe(pipefd), 0);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    char *args[32];
    int n = 0;
    args[n++] = strdup("comphost");
    for (int i = 0; argv[i] && n < 31; i++)
      args[n++] = strdup(argv[i]);
    args[n] = NULL;
    dup2(pipefd[1], STDOUT_FILENO);
    dup2(pipefd[1], STDERR_FILENO);
    close(pipefd[0]);
    close(pipefd[1]);
    ch_e2e_session_secret();
    if (db)
      child_env(db);
    execv(COMPHOST_BIN, args);
    _exit(127);
  }
  close(pipefd[1]);
  for (;;) {
    ssize_t r;
    if (len + 1024 > cap) {
      cap *= 2;
      buf = realloc(buf, cap);
      assert_non_null(buf);
    }
    r = read(pipefd[0], buf + len, cap - len - 1);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    len += (size_t)r;
  }
  buf[len] = '\0';
  close(pipefd[0]);
  waitpid(pid, &status, 0);
  *out = buf;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static char *read_log(const ch_e2e_host *h)
{
  FILE *f = fopen(h->log_path, "r");
  char *buf;
  long size;

  if (!f)
    return NULL;
  fseek(f, 0, SEEK_END);
  size = ftell(f);
  fseek(f, 0, SEEK_SET);
  buf = malloc((size_t)size + 1);
  if (buf) {
    size_t n = fread(buf, 1, (size_t)size, f);
    buf[n] = '\0';
  }
  fclose(f);
  return buf;
}

int ch_e2e_log_count(const ch_e2e_host *h, const char *text)
{
  char *log = read_log(h);
  int n = 0;

  for (const char *p = log; p && (p = strstr(p, text)); p += strlen(text))
    n++;
  free(log);
  return n;
}

bool ch_e2e_log_contains(const ch_e2e_host *h, const char *text)
{
  return ch_e2e_log_count(h, text) > 0;
}

bool ch_e2e_wait_log(const ch_e2e_host *h, const char *text, int timeout_ms)
{
  int64_t end = now_ms() + timeout_ms;

  while (!ch_e2e_log_contains(h, text)) {
    if (now_ms() >= end)
      return false;
    ch_e2e_sleep_ms(50);
  }
  return true;
}

int ch_e2e_workers(const ch_e2e_host *h, pid_t *pids, int max)
{
  char path[64], buf[4096];
  FILE *f;
  int n = 0;

  /* the children of the main thread */
  snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)h->pid, (int)h->pid);
  f = fopen(path, "r");
  if (!f)
    return 0;
  if (fgets(buf, sizeof buf, f)) {
    char *save = NULL;
    for (char *tok = strtok_r(buf, " \n", &save); tok && n < max;
         tok = strtok_r(NULL, " \n", &save))
      pids[n++] = (pid_t)atoi(tok);
  }
  fclose(f);
  return n;
}

chd_mdb *ch_e2e_store(const ch_e2e_db *db)
{
  chd_mdb *m = chd_mdb_new(db->store_url);

  assert_non_null(m);
  if (chd_mdb_connect(m) != CHD_STORE_OK) {
    print_error("cannot connect: %s\n", chd_mdb_error(m));
    fail();
  }
  return m;
}

void ch_e2e_write_many(const ch_e2e_db *db, const char *category, const char *type,
                       int n, int streams)
{
  char sql[1024];

  snprintf(sql, sizeof sql,
           "SET search_path = message_store, public;"
           "SELECT count(write_message(gen_random_uuid()::varchar,"
           " '%s-' || (i %% %d)::text, '%s', jsonb_build_object('n', i),"
           " jsonb_build_object('traceId', gen_random_uuid()::text)))"
           " FROM generate_series(0, %d) AS i",
           category, streams, type, n - 1);
  ch_e2e_exec(db->store_url, sql);
}

/* Run `scripts/dev-db <command>` of the tree that runs the dev cluster. */
static void dev_db(const char *command)
{
  const char *script = getenv("COMPHOST_DEV_DB_SCRIPT");
  char cmd[1024];

  if (script && *script)
    snprintf(cmd, sizeof cmd, "'%s' %s >/dev/null", script, command);
  else
    snprintf(cmd, sizeof cmd, "'%s/scripts/dev-db' %s >/dev/null", COMPHOST_SOURCE_DIR,
             command);
  assert_int_equal(system(cmd), 0);
}

void ch_e2e_restart_server(int down_ms)
{
  dev_db("stop");
  ch_e2e_sleep_ms(down_ms);
  dev_db("start");
}

void ch_e2e_crash_server(int down_ms)
{
  dev_db("crash");
  ch_e2e_sleep_ms(down_ms);
  dev_db("start");
}

bool ch_e2e_process_alive(pid_t pid)
{
  char path[64], buf[512], *close_paren;
  FILE *f;
  size_t n;

  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  f = fopen(path, "r");
  if (!f)
    return false;
  n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  /* "pid (comm) S ...": the state follows the last ')' */
  close_paren = strrchr(buf, ')');
  return close_paren && close_paren[1] == ' ' && close_paren[2] != 'Z' && close_paren[2] != 'X';
}

char *ch_e2e_long_id(size_t n, unsigned seed)
{
  static const char hex[] = "0123456789abcdef";
  uint64_t x = 0x9e3779b97f4a7c15ull ^ seed;
  char *s = malloc(n + 1);

  assert_non_null(s);
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s[i] = hex[x & 15];
  }
  s[n] = '\0';
  return s;
}

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

/* GET url; the status, the body in *body (caller frees). */
long ch_e2e_http_get(const char *url, char **body)
{
  CURL *c = curl_easy_init();
  buffer b = { NULL, 0 };
  long status = 0;

  assert_non_null(c);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
  if (curl_easy_perform(c) == CURLE_OK)
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(c);
  *body = b.data ? b.data : strdup("");
  return status;
}

/* The host's address, from its log line "listening on http://HOST:PORT/". */
void ch_e2e_http_base(const ch_e2e_host *h, char *buf, size_t size)
{
  FILE *f = fopen(h->log_path, "r");
  char line[2048];

  assert_non_null(f);
  buf[0] = '\0';
  while (fgets(line, sizeof line, f)) {
    char *p = strstr(line, "listening on http://");
    if (p) {
      p += strlen("listening on http://");
      snprintf(buf, size, "http://%.*s", (int)strcspn(p, "/"), p);
      break;
    }
  }
  fclose(f);
  assert_true(buf[0] != '\0');
}

/* The value of the sample `series` (name with labels, as printed), or NAN. */
double ch_e2e_metric(const char *text, const char *series)
{
  size_t n = strlen(series);

  for (const char *line = text; line && *line;) {
    const char *next = strchr(line, '\n');
    if (*line != '#' && !strncmp(line, series, n) && line[n] == ' ')
      return strtod(line + n + 1, NULL);
    line = next ? next + 1 : NULL;
  }
  return NAN;
}
