/*
 * test_cli.c - the operator's commands (write, read, trace, migrate-store,
 * status, rebuild) as an operator runs them: the comphost binary against a
 * fresh database, with good and bad input, and --json read back.
 */
#include "support.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "e2e.h"

#define HOME_PAGE COMPHOST_BUILD_PLUGIN_DIR "/home-page.so"
#define WAIT 60000

static ch_e2e_db db;

static int setup(void **state)
{
  (void)state;
  ch_e2e_db_create(&db);
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  ch_e2e_db_drop(&db);
  return 0;
}

/* A command's outcome: exit code, stdout and stderr. */
typedef struct result {
  int code;
  char *out;
  char *err;
} result;

static char *slurp(const char *path)
{
  FILE *f = fopen(path, "r");
  char *buf;
  long size;

  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  size = ftell(f);
  fseek(f, 0, SEEK_SET);
  buf = malloc((size_t)size + 1);
  assert_non_null(buf);
  buf[fread(buf, 1, (size_t)size, f)] = '\0';
  fclose(f);
  return buf;
}

static void child_env(void)
{
  setenv("MESSAGE_STORE_CONNECTION_STRING", db.store_url, 1);
  setenv("DATABASE_URL", db.view_url, 1);
  unsetenv("COMPHOST_PLUGIN_DIR");
}

/* Start comphost with argv (NULL-terminated, no program name), stdout and
 * stderr into files of the test's directory. */
static pid_t spawn(const char *const argv[], const char *name)
{
  char out[400], err[400];
  pid_t pid;

  snprintf(out, sizeof out, "%s/%s.out", db.dir, name);
  snprintf(err, sizeof err, "%s/%s.err", db.dir, name);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    char *args[32];
    int n = 0, fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600),
        fe = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fo < 0 || fe < 0)
      _exit(127);
    dup2(fo, STDOUT_FILENO);
    dup2(fe, STDERR_FILENO);
    close(fo);
    close(fe);
    args[n++] = strdup("comphost");
    for (int i = 0; argv[i] && n < 31; i++)
      args[n++] = strdup(argv[i]);
    args[n] = NULL;
    child_env();
    execv(COMPHOST_BIN, args);
    _exit(127);
  }
  return pid;
}

static result run(const char *const argv[])
{
  char path[400];
  result r;
  int status;
  pid_t pid = spawn(argv, "cmd");

  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  snprintf(path, sizeof path, "%s/cmd.out", db.dir);
  r.out = slurp(path);
  snprintf(path, sizeof path, "%s/cmd.err", db.dir);
  r.err = slurp(path);
  if (strstr(r.err, "Sanitizer") || strstr(r.err, "runtime error:")) {
    print_error("%s %s: a sanitizer reported a problem:\n%s\n", argv[0], argv[1], r.err);
    fail();
  }
  return r;
}

static void release(result *r)
{
  free(r->out);
  free(r->err);
}

/* stdout as one JSON document. */
static json_t *parse(const result *r)
{
  json_error_t e;
  json_t *doc = json_loads(r->out, 0, &e);

  if (!doc) {
    print_error("not JSON (%s): %s\nstderr: %s\n", e.text, r->out, r->err);
    fail();
  }
  return doc;
}

/* The number of lines of s. */
static int lines(const char *s)
{
  int n = 0;

  for (; *s; s++)
    n += *s == '\n';
  return n;
}

static int64_t jint(json_t *o, const char *key)
{
  json_t *v = json_object_get(o, key);

  if (!json_is_integer(v)) {
    print_error("no integer '%s' in %s\n", key, json_dumps(o, JSON_COMPACT));
    fail();
  }
  return (int64_t)json_integer_value(v);
}

static const char *jstr(json_t *o, const char *key)
{
  const char *v = json_string_value(json_object_get(o, key));

  if (!v) {
    print_error("no string '%s'\n", key);
    fail();
  }
  return v;
}

static const char *ini(const char *name, const char *body)
{
  static char path[400];

  snprintf(path, sizeof path, "%s", ch_e2e_write_ini(&db, name, body));
  return path;
}

/* The admin (owner) connection of the test's store. */
static void admin_url_of_store(char *out, size_t size)
{
  PQconninfoOption *opts = PQconninfoParse(getenv("COMPHOST_DEV_DB_ADMIN_URL"), NULL);
  size_t len = 0;

  assert_non_null(opts);
  out[0] = '\0';
  for (PQconninfoOption *o = opts; o->keyword; o++)
    if (o->val && *o->val && strcmp(o->keyword, "dbname"))
      len += (size_t)snprintf(out + len, size - len, "%s='%s' ", o->keyword, o->val);
  snprintf(out + len, size - len, "dbname='%s'", db.store_name);
  PQconninfoFree(opts);
}

static int64_t last_gp(const char *category)
{
  char sql[256];

  snprintf(sql, sizeof sql, "SELECT max(global_position) FROM message_store.messages"
           " WHERE message_store.category(stream_name) = '%s'", category);
  return ch_e2e_int(db.store_url, sql);
}

static void stop_cleanly(ch_e2e_host *h)
{
  int status = ch_e2e_host_stop(h, SIGTERM, WAIT);

  assert_true(status != -1 && WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_write_and_read(void **state)
{
  const char *cfg = ini("w.ini", "[fx]\nlibrary = fx_runtime\n");
  result r;
  json_t *doc, *m;
  int64_t gp;
  (void)state;

  /* write: the id, the trace id and the positions come back */
  {
    const char *argv[] = { "write", "-c", cfg, "--stream", "cliw-1", "--type", "Opened",
                           "--data", "{\"n\": 1}", "--json", NULL };
    r = run(argv);
    assert_int_equal(r.code, 0);
    doc = parse(&r);
    assert_string_equal(jstr(doc, "stream"), "cliw-1");
    assert_int_equal(jint(doc, "position"), 0);
    gp = jint(doc, "global_position");
    assert_true(gp >= 1);
    assert_int_equal(strlen(jstr(doc, "id")), 36);
    assert_int_equal(strlen(jstr(doc, "trace_id")), 36);
    json_decref(doc);
    release(&r);
  }
  /* a given traceId and an expected version are kept */
  {
    const char *argv[] = { "write", "-c", cfg, "--stream", "cliw-1", "--type", "Renamed",
                           "--data", "{\"name\": \"x\"}", "--metadata",
                           "{\"traceId\": \"t-cli\", \"userId\": \"u-1\"}",
                           "--expected-version", "0", NULL };
    r = run(argv);
    assert_int_equal(r.code, 0);
    assert_non_null(strstr(r.out, "wrote Renamed to cliw-1 at position 1"));
    assert_non_null(strstr(r.out, "trace id: t-cli"));
    release(&r);
  }
  /* read the stream back, as a table and as JSON lines */
  {
    const char *argv[] = { "read", "-c", cfg, "cliw-1", NULL };
    r = run(argv);
    assert_int_equal(r.code, 0);
    assert_int_equal(lines(r.out), 3);
    assert_non_null(strstr(r.out, "GLOBAL"));
    assert_non_null(strstr(r.out, "Renamed"));
    release(&r);
  }
  {
    const char *argv[] = { "read", "-c", cfg, "cliw-1", "--json", "--from", "1", NULL };
    r = run(argv);
    assert_int_equal(r.code, 0);
    assert_int_equal(lines(r.out), 1);
    doc = parse(&r);
    assert_string_equal(jstr(doc, "type"), "Renamed");
    assert_int_equal(jint(doc, "position"), 1);
    m = json_object_get(doc, "metadata");
    assert_string_equal(jstr(m, "traceId"), "t-cli");
    assert_string_equal(jstr(m, "userId"), "u-1");
    assert_string_equal(jstr(json_object_get(doc, "data"), "name"), "x");
    json_decref(doc);
    release(&r);
  }
  /* a category and $all, with --from and --limit */
  for (int i = 0; i < 5; i++) {
    char stream[32];
    const char *argv[] = { "write", "-c", cfg, "--stream", stream, "--type", "Counted",
                           "--data", "{}", NULL };
    snprintf(stream, sizeof stream, "cliw-%d", i + 2);
    r = run(argv);
    assert_int_equal(r.code, 0);
    release(&r);
  }
  {
    const char *argv[] = { "read", "-c", cfg, "cliw", "--json", "--limit", "4", NULL };
    r = run(argv);
    assert_int_equal(r.code, 0);
    assert_int_equal(lines(r.out), 4);
    release(&r);
  }
  {
    char from[24];
    const char *argv[] = { "read", "-c", cfg, "$all", "--from", from, NULL };
    snprintf(from, sizeof from, "%lld", (long long)gp + 1);
    r = run(argv);
    assert_int_equal(r.code, 0);
    assert_int_equal(lines(r.out), 1 + 6);
    release(&r);
  }
  /* the metadata carries a fresh traceId per write */
  assert_int_equal(ch_e2e_int(db.store_url, "SELECT count(DISTINCT metadata->>'traceId')"
                              " FROM message_store.messages WHERE stream_name LIKE 'cliw-%'"),
                   7);
}

static void test_bad_input(void **state)
{
  const char *cfg = ini("b.ini", "[fx]\nlibrary = fx_runtime\n");
  result r;
  (void)state;

  {
    const char *argv[] = { "write", "-c", cfg, "--stream", "clib-1", "--type", "T",
                           "--data", "{\"a\": 1", NULL };
    r = run(argv);
    assert_int_equal(r.code, 2);
    /* the parser's own message, on one line */
    assert_non_null(strstr(r.err, "comphost: --data: invalid JSON: '}' expected"));
    assert_int_equal(lines(r.err), 1);
    release(&r);
  }
  {
    const char *argv[] = { "write", "-c", cfg, "--stream", "clib-1", "--type", "T",
                           "--data", "{}", "--metadata", "[1]", NULL };
    r = run(argv);
    assert_int_equal(r.code, 2);
    assert_non_null(strstr(r.err, "--metadata: not a JSON object"));
    release(&r);
  }
  {
    const char *argv[] = { "write", "-c", cfg, "--stream", "clib-1", "--type", "T",
                           "--data", "{}", "--expected-version", "3", NULL };
    r = run(argv);
    assert_int_equal(r.code, 1);
    assert_non_null(strstr(r.err, "version conflict writing T to 'clib-1'"));
    release(&r);
  }
  {
    const char *argv[] = { "write", "-c", cfg, "--stream", "clib-1", "--type", "T", NULL };
    r = run(argv);
    assert_int_equal(r.code, 2);
    assert_non_null(strstr(r.err, "--stream, --type and --data are required"));
    release(&r);
  }
  {
    const char *argv[] = { "read", "-c", cfg, "nosuch-1", NULL };
    r = run(argv);
    assert_int_equal(r.code, 1);
    assert_string_equal(r.err, "comphost: no messages in stream 'nosuch-1'\n");
    assert_string_equal(r.out, "");
    release(&r);
  }
  {
    const char *argv[] = { "read", "-c", cfg, "nosuch", NULL };
    r = run(argv);
    assert_int_equal(r.code, 1);
    assert_non_null(strstr(r.err, "no messages in category 'nosuch'"));
    release(&r);
  }
  {
    const char *argv[] = { "read", "-c", cfg, "clib", "--limit", "x", NULL };
    r = run(argv);
    assert_int_equal(r.code, 2);
    assert_non_null(strstr(r.err, "--limit: 'x' is not a whole number"));
    release(&r);
  }
  {
    const char *argv[] = { "read", "clib-1", NULL };
    r = run(argv);
    assert_int_equal(r.code, 2);
    assert_non_null(strstr(r.err, "no configuration: give -c FILE"));
    release(&r);
  }
  {
    const char *argv[] = { "trace", "-c", cfg, "no-such-trace", NULL };
    r = run(argv);
    assert_int_equal(r.code, 1);
    assert_non_null(strstr(r.err, "no message has traceId 'no-such-trace'"));
    release(&r);
  }
  {
    const char *argv[] = { "rebuild", "-c", cfg, "nosuch", "--yes", NULL };
    r = run(argv);
    assert_int_equal(r.code, 1);
    assert_non_null(strstr(r.err, "no plugin instance [nosuch] in"));
    assert_non_null(strstr(r.err, "(it has: fx)"));
    release(&r);
  }
  {
    const char *argv[] = { "status", "-c", "/nonexistent.ini", NULL };
    r = run(argv);
    assert_int_equal(r.code, 1);
    assert_non_null(strstr(r.err, "cannot read '/nonexistent.ini'"));
    release(&r);
  }
}

static void test_read_follow(void **state)
{
  const char *cfg = ini("f.ini", "[fx]\nlibrary = fx_runtime\n");
  const char *argv[] = { "read", "-c", cfg, "clif", "--follow", "--json", "--interval-ms", "50",
                         NULL };
  char path[400], *out;
  chd_mdb *m = ch_e2e_store(&db);
  json_t *data = json_object();
  int status, n = 0;
  pid_t pid;
  (void)state;

  pid = spawn(argv, "follow");
  snprintf(path, sizeof path, "%s/follow.out", db.dir);
  ch_e2e_sleep_ms(300);
  for (int i = 0; i < 3; i++)
    assert_int_equal(chd_mdb_write(m, "clif-1", NULL, "Tick", data, NULL, CH_VERSION_ANY, NULL),
                     CHD_STORE_OK);
  for (int i = 0; i < 200 && n < 3; i++) {
    ch_e2e_sleep_ms(50);
    out = slurp(path);
    n = lines(out);
    free(out);
  }
  assert_int_equal(n, 3);
  assert_int_equal(chd_mdb_write(m, "clif-2", NULL, "Tock", data, NULL, CH_VERSION_ANY, NULL),
                   CHD_STORE_OK);
  for (int i = 0; i < 200 && n < 4; i++) {
    ch_e2e_sleep_ms(50);
    out = slurp(path);
    n = lines(out);
    free(out);
  }
  assert_int_equal(n, 4);
  out = slurp(path);
  assert_non_null(strstr(out, "\"type\":\"Tock\""));
  free(out);
  kill(pid, SIGINT);
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  snprintf(path, sizeof path, "%s/follow.err", db.dir);
  out = slurp(path);
  assert_string_equal(out, "");
  free(out);
  json_decref(data);
  chd_mdb_free(m);
}

static void test_trace_and_its_index(void **state)
{
  const char *cfg = ini("t.ini", "[fx]\nlibrary = fx_runtime\n");
  chd_mdb *m = ch_e2e_store(&db);
  json_t *data = json_object(), *meta = json_pack("{s:s}", "traceId", "trace-7"),
         *other = json_pack("{s:s}", "traceId", "trace-8"), *doc, *list;
  char admin[600];
  result r;
  (void)state;

  assert_int_equal(chd_mdb_write(m, "identity:command-1", NULL, "Register", data, meta,
                                 CH_VERSION_ANY, NULL), CHD_STORE_OK);
  assert_int_equal(chd_mdb_write(m, "identity-1", NULL, "Registered", data, meta,
                                 CH_VERSION_ANY, NULL), CHD_STORE_OK);
  assert_int_equal(chd_mdb_write(m, "identity-2", NULL, "Registered", data, other,
                                 CH_VERSION_ANY, NULL), CHD_STORE_OK);
  assert_int_equal(chd_mdb_write(m, "sendEmail:command-1", NULL, "Send", data, meta,
                                 CH_VERSION_ANY, NULL), CHD_STORE_OK);

  /* without the index: it works, and says what it costs */
  {
    const char *argv[] = { "trace", "-c", cfg, "trace-7", NULL };
    r = run(argv);
    assert_int_equal(r.code, 0);
    assert_non_null(strstr(r.err, "no trace index"));
    assert_int_equal(lines(r.out), 4);
    assert_true(strstr(r.out, "Register") < strstr(r.out, "Registered"));
    assert_true(strstr(r.out, "Registered") < strstr(r.out, "Send"));
    assert_null(strstr(r.out, "identity-2"));
    release(&r);
  }
  /* the message store's role cannot create it */
  {
    const char *argv[] = { "migrate-store", "-c", cfg, NULL };
    r = run(argv);
    assert_int_equal(r.code, 1);
    assert_non_null(strstr(r.err, "must be owner of"));
    assert_non_null(strstr(r.err, "--admin-url"));
    release(&r);
  }
  admin_url_of_store(admin, sizeof admin);
  {
    const char *argv[] = { "migrate-store", "-c", cfg, "--admin-url", admin, "--json", NULL };
    r = run(argv);
    assert_int_equal(r.code, 0);
    doc = parse(&r);
    assert_true(json_is_true(json_object_get(doc, "created")));
    assert_true(jint(doc, "bytes") > 0);
    assert_string_equal(jstr(doc, "notify_trigger"), "comphost_notify");
    assert_true(json_is_true(json_object_get(doc, "notify_created")));
    /* and the lease tables of group_member = auto, for the hosts' role */
    assert_true(json_is_true(json_object_get(doc, "lease_tables_created")));
    assert_string_equal(json_string_value(json_object_get(doc, "lease_tables_role")),
                        "message_store");
    json_decref(doc);
    release(&r);
  }
  {
    const char *argv[] = { "migrate-store", "-c", cfg, "--admin-url", admin, NULL };
    r = run(argv);
    assert_int_equal(r.code, 0);
    assert_non_null(strstr(r.out, "index message_store.messages_trace_id is there already"));
    assert_non_null(strstr(r.out, "trigger comphost_notify is there already"));
    assert_non_null(strstr(r.out, "lease tables (group_member = auto): there already; usable by"
                                  " role message_store"));
    release(&r);
  }
  {
    const char *argv[] = { "migrate-store", "-c", cfg, "--admin-url", admin, "--no-notify",
                           "--json", NULL };
    r = run(argv);
    assert_int_equal(r.code, 0);
    doc = parse(&r);
    assert_null(json_object_get(doc, "notify_trigger"));
    assert_false(json_is_true(json_object_get(doc, "lease_tables_created")));
    json_decref(doc);
    release(&r);
  }
  assert_int_equal(ch_e2e_int(db.store_url, "SELECT count(*) FROM pg_trigger WHERE"
                              " tgname = 'comphost_notify'"), 1);
  assert_int_equal(ch_e2e_int(db.store_url, "SELECT count(*) FROM comphost_leases"), 0);
  assert_int_equal(ch_e2e_int(db.store_url, "SELECT count(*) FROM pg_indexes WHERE"
                              " schemaname = 'message_store' AND indexname = 'messages_trace_id'"),
                   1);
  /* with it: no note, the same answer */
  {
    const char *argv[] = { "trace", "-c", cfg, "trace-7", "--json", NULL };
    r = run(argv);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.err, "");
    doc = parse(&r);
    assert_true(json_is_true(json_object_get(doc, "indexed")));
    assert_int_equal(jint(doc, "count"), 3);
    list = json_object_get(doc, "messages");
    assert_string_equal(jstr(json_array_get(list, 0), "stream"), "identity:command-1");
    assert_string_equal(jstr(json_array_get(list, 1), "type"), "Registered");
    assert_string_equal(jstr(json_array_get(list, 2), "stream"), "sendEmail:command-1");
    assert_true(jint(json_array_get(list, 0), "global_position") <
                jint(json_array_get(list, 2), "global_position"));
    json_decref(doc);
    release(&r);
  }
  json_decref(data);
  json_decref(meta);
  json_decref(other);
  chd_mdb_free(m);
}

/* The subscription of fx_runtime's fxrun category in status --json. */
static json_t *status_of(const char *cfg, const char *subscriber, json_t **doc)
{
  const char *argv[] = { "status", "-c", cfg, "--json", NULL };
  result r = run(argv);
  size_t i;
  json_t *s;

  if (r.code != 0)
    print_error("status failed: %s\n", r.err);
  assert_int_equal(r.code, 0);
  *doc = parse(&r);
  release(&r);
  json_array_foreach(json_object_get(*doc, "subscriptions"), i, s)
    if (!strcmp(jstr(s, "subscriber"), subscriber))
      return s;
  fail();
  return NULL;
}

static void test_status_lag_and_workers(void **state)
{
  const char *cfg = ini("s.ini", "[fx]\nlibrary = fx_runtime\n");
  ch_e2e_host h;
  json_t *doc, *s, *w;
  result r;
  (void)state;

  ch_e2e_write_many(&db, "fxrun", "Count", 25, 5);
  /* no host: positions and lag from the store alone */
  s = status_of(cfg, "fx:run", &doc);
  assert_int_equal(jint(s, "position"), 0);
  assert_int_equal(jint(s, "lag"), 25);
  assert_int_equal(jint(s, "head"), last_gp("fxrun"));
  assert_true(json_is_null(json_object_get(s, "worker")));
  assert_true(json_is_null(json_object_get(s, "moved_ms_ago")));
  assert_true(json_is_false(json_object_get(json_object_get(doc, "host"), "running")));
  json_decref(doc);

  ch_e2e_host_start(&h, &db, cfg, "s.log");
  assert_int_equal(ch_e2e_wait_int(db.view_url, "SELECT count(*) FROM fx_seen", 25, WAIT), 25);
  ch_e2e_sleep_ms(1500);    /* a fresh state file */
  s = status_of(cfg, "fx:run", &doc);
  assert_int_equal(jint(s, "lag"), 0);
  assert_int_equal(jint(s, "position"), last_gp("fxrun"));
  w = json_object_get(s, "worker");
  assert_string_equal(jstr(w, "state"), "running");
  assert_int_equal(jint(w, "restarts"), 0);
  assert_true(jint(w, "pid") > 0);
  assert_true(json_is_true(json_object_get(json_object_get(doc, "host"), "running")));
  assert_int_equal(jint(json_object_get(doc, "host"), "pid"), h.pid);
  json_decref(doc);
  {
    const char *argv[] = { "status", "-c", cfg, NULL };
    r = run(argv);
    assert_int_equal(r.code, 0);
    assert_non_null(strstr(r.out, "host: running"));
    assert_non_null(strstr(r.out, "SUBSCRIBER"));
    assert_non_null(strstr(r.out, "fx:run"));
    assert_non_null(strstr(r.out, "running (pid"));
    release(&r);
  }
  stop_cleanly(&h);

  /* a lag of N: messages after the saved position */
  ch_e2e_write_many(&db, "fxrun", "Count", 7, 3);
  s = status_of(cfg, "fx:run", &doc);
  assert_int_equal(jint(s, "lag"), 7);
  assert_int_equal(jint(s, "head"), last_gp("fxrun"));
  assert_true(jint(s, "moved_ms_ago") >= 0);
  assert_true(json_is_null(json_object_get(s, "worker")));
  json_decref(doc);
}

static void test_rebuild_aggregator(void **state)
{
  const char *cfg = ini("r.ini", "[home-page]\nlibrary = " HOME_PAGE "\n"
                        "position_store = view_data\n");
  const char *page = "SELECT (page_data->>'videosWatched')::bigint FROM pages"
                     " WHERE page_name = 'home'";
  const char *argv[] = { "rebuild", "-c", cfg, "home-page", "--yes", "--json", NULL };
  ch_e2e_host h;
  json_t *doc, *sub;
  result r;
  (void)state;

  ch_e2e_write_many(&db, "viewing", "VideoViewed", 30, 7);
  ch_e2e_host_start(&h, &db, cfg, "r1.log");
  assert_int_equal(ch_e2e_wait_int(db.view_url, page, 30, WAIT), 30);
  /* not while a host runs it */
  r = run(argv);
  assert_int_equal(r.code, 1);
  assert_non_null(strstr(r.err, "a host is running [home-page]"));
  assert_non_null(strstr(r.err, "stop it first"));
  release(&r);
  stop_cleanly(&h);
  assert_int_equal(ch_e2e_int(db.view_url, page), 30);

  /* not without --yes */
  {
    const char *no[] = { "rebuild", "-c", cfg, "home-page", NULL };
    r = run(no);
    assert_int_equal(r.code, 1);
    assert_non_null(strstr(r.err, "give --yes"));
    release(&r);
  }
  assert_int_equal(ch_e2e_int(db.view_url, page), 30);

  r = run(argv);
  assert_int_equal(r.code, 0);
  doc = parse(&r);
  release(&r);
  assert_true(json_is_true(json_object_get(doc, "reset")));
  assert_string_equal(jstr(doc, "kind"), "aggregator");
  sub = json_array_get(json_object_get(doc, "subscriptions"), 0);
  assert_string_equal(jstr(sub, "subscriber"), "aggregators:home-page");
  assert_int_equal(jint(sub, "position_before"), last_gp("viewing"));
  assert_int_equal(jint(sub, "position"), 0);
  json_decref(doc);
  assert_int_equal(ch_e2e_int(db.view_url, page), 0);
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT position FROM comphost_positions"
                              " WHERE subscriber_id = 'aggregators:home-page'"), 0);

  /* the host replays it all */
  ch_e2e_host_start(&h, &db, cfg, "r2.log");
  assert_int_equal(ch_e2e_wait_int(db.view_url, page, 30, WAIT), 30);
  assert_true(ch_e2e_log_contains(&h, "Started aggregators:home-page at global position 1 "));
  stop_cleanly(&h);
}

static void test_rebuild_refuses_components_and_resets_store_positions(void **state)
{
  const char *cfg = ini("c.ini", "[greeter]\n[fx]\nlibrary = fx_runtime\n");
  const char *pos = "SELECT (data->>'position')::bigint FROM message_store.messages"
                    " WHERE stream_name = 'subscriberPosition-fx:run'"
                    " ORDER BY position DESC LIMIT 1";
  ch_e2e_host h;
  result r;
  (void)state;

  {
    const char *argv[] = { "rebuild", "-c", cfg, "greeter", "--yes", NULL };
    r = run(argv);
    assert_int_equal(r.code, 1);
    assert_non_null(strstr(r.err, "a component"));
    assert_non_null(strstr(r.err, "--force"));
    release(&r);
  }
  {
    const char *argv[] = { "rebuild", "-c", cfg, "greeter", "--yes", "--force", NULL };
    r = run(argv);
    assert_int_equal(r.code, 0);
    assert_non_null(strstr(r.out, "rebuilt [greeter]"));
    release(&r);
  }

  /* fx_runtime has no reset(): positions only, and only when forced */
  ch_e2e_write_many(&db, "fxrun", "Count", 12, 3);
  ch_e2e_host_start(&h, &db, cfg, "c.log");
  assert_int_equal(ch_e2e_wait_int(db.view_url, "SELECT count(*) FROM fx_seen", 12, WAIT), 12);
  stop_cleanly(&h);
  assert_int_equal(ch_e2e_int(db.store_url, pos), last_gp("fxrun"));
  {
    const char *argv[] = { "rebuild", "-c", cfg, "fx", "--yes", NULL };
    r = run(argv);
    assert_int_equal(r.code, 1);
    assert_non_null(strstr(r.err, "has no reset()"));
    release(&r);
  }
  {
    const char *argv[] = { "rebuild", "-c", cfg, "fx", "--yes", "--force", NULL };
    r = run(argv);
    assert_int_equal(r.code, 0);
    assert_non_null(strstr(r.out, "fx:run: position"));
    assert_non_null(strstr(r.out, "-> 0 (message_store)"));
    release(&r);
  }
  assert_int_equal(ch_e2e_int(db.store_url, pos), 0);
}

/* Catching up a large backlog logs its progress, then that it caught up. */
static void test_progress_of_a_large_backlog(void **state)
{
  const char *cfg = ini("p.ini", "[fx]\nlibrary = fx_runtime\nposition_store = view_data\n"
                        "batch_size = 500\n");
  ch_e2e_host h;
  (void)state;

  ch_e2e_write_many(&db, "fxrun", "Count", 12000, 100);
  ch_e2e_host_start(&h, &db, cfg, "p.log");
  assert_true(ch_e2e_wait_log(&h, "catching up: 12000 messages behind", WAIT));
  assert_true(ch_e2e_log_contains(&h, "lag=12000"));
  assert_true(ch_e2e_wait_log(&h, "caught up at global position", WAIT));
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT count(*) FROM fx_seen"), 12000);
  stop_cleanly(&h);
}

/*
 * Secrets: a plugin's secret settings from a file and from the environment,
 * and a password in the store's connection string, never shown by check,
 * inspect, status or the host's log, which say (secret) instead.
 */
#define FX_SECRET COMPHOST_FIXTURE_DIR "/fx_secret.so"
#define TOKEN "tok-FILE-7731"
#define SIGNING "sig-ENV-5519"
#define PASSWORD "pw-STORE-4404"

static void assert_no_secret(const char *text)
{
  if (strstr(text, TOKEN) || strstr(text, SIGNING) || strstr(text, PASSWORD) ||
      strstr(text, "fx-default-signing-key")) {
    print_error("a secret is shown:\n%s\n", text);
    fail();
  }
}

static void test_secrets_are_not_shown(void **state)
{
  char token[400], body[600], url[sizeof db.store_url];
  const char *cfg;
  FILE *f;
  result r;
  ch_e2e_host h;
  (void)state;

  snprintf(token, sizeof token, "%s/token", db.dir);
  f = fopen(token, "w");
  assert_non_null(f);
  fputs(TOKEN "\n", f);
  fclose(f);
  assert_int_equal(chmod(token, 0600), 0);
  snprintf(body, sizeof body, "[fx]\nlibrary = %s\napi_token_file = token\n", FX_SECRET);
  cfg = ini("secret.ini", body);
  setenv("COMPHOST_FX_SIGNING_KEY", SIGNING, 1);
  /* a password in the store's connection string (the dev cluster trusts
   * local connections, so it is not asked for) */
  snprintf(url, sizeof url, "%s", db.store_url);
  snprintf(db.store_url, sizeof db.store_url, "%s password='" PASSWORD "'", url);

  {
    const char *argv[] = { "check", "-c", cfg, NULL };
    r = run(argv);
    if (r.code != 0)
      print_error("check: %s\n", r.err);
    assert_int_equal(r.code, 0);
    assert_no_secret(r.out);
    assert_no_secret(r.err);
    assert_non_null(strstr(r.out, "setting api_token = (secret), required (from "));
    assert_non_null(strstr(r.out, "/token)"));
    assert_non_null(strstr(r.out, "setting signing_key = (secret) (from "
                           "COMPHOST_FX_SIGNING_KEY)"));
    assert_non_null(strstr(r.out, "setting greeting = hello (default)"));
    assert_non_null(strstr(r.out, "password='(secret)'"));
    assert_non_null(strstr(r.out, "position: 0"));
    release(&r);
  }
  {
    const char *argv[] = { "inspect", FX_SECRET, NULL };
    r = run(argv);
    assert_int_equal(r.code, 0);
    assert_no_secret(r.out);
    assert_non_null(strstr(r.out, "  api_token (string, required, secret): "));
    assert_non_null(strstr(r.out, "  signing_key (string, default (secret), secret): "));
    assert_non_null(strstr(r.out, "  greeting (string, default hello): "));
    release(&r);
  }
  {
    const char *argv[] = { "status", "-c", cfg, NULL };
    r = run(argv);
    assert_int_equal(r.code, 0);
    assert_no_secret(r.out);
    assert_no_secret(r.err);
    release(&r);
  }

  /* the host: its plugin logs the token, the log shows (secret) */
  ch_e2e_host_start(&h, &db, cfg, "secret.log");
  assert_true(ch_e2e_wait_log(&h, "fx_secret: api_token is (secret), greeting is hello", WAIT));
  stop_cleanly(&h);
  {
    char *log = slurp(h.log_path);
    assert_no_secret(log);
    free(log);
  }

  /* a connection string libpq refuses: its message quotes it */
  snprintf(db.store_url, sizeof db.store_url,
           "postgresql://message_store:" PASSWORD "@[::1/nosuch");
  {
    const char *argv[] = { "check", "-c", cfg, NULL };
    r = run(argv);
    assert_int_equal(r.code, 1);
    assert_no_secret(r.out);
    assert_no_secret(r.err);
    assert_non_null(strstr(r.out, "message store: postgresql://message_store:(secret)@[::1/"));
    assert_non_null(strstr(r.out, "positions: unavailable: "));
    release(&r);
  }
  {
    const char *argv[] = { "status", "-c", cfg, NULL };
    r = run(argv);
    assert_int_equal(r.code, 1);
    assert_no_secret(r.out);
    assert_no_secret(r.err);
    assert_non_null(strstr(r.err, "(secret)"));
    release(&r);
  }
  snprintf(db.store_url, sizeof db.store_url, "%s", url);
  unsetenv("COMPHOST_FX_SIGNING_KEY");
}

/* A secret file that is missing or open to others is refused, naming the
 * file, the line and the key; <key>_file for a key that is not secret too. */
static void test_secret_files_refused(void **state)
{
  char token[400], body[600], want[800];
  const char *cfg;
  FILE *f;
  result r;
  (void)state;

  snprintf(body, sizeof body, "[fx]\nlibrary = %s\napi_token_file = nosuch\n", FX_SECRET);
  cfg = ini("missing.ini", body);
  {
    const char *argv[] = { "check", "--no-db", "-c", cfg, NULL };
    r = run(argv);
    assert_int_equal(r.code, 1);
    snprintf(want, sizeof want, "comphost: %s:10: [fx] api_token_file: cannot read '%s/nosuch':"
             " No such file or directory\n", cfg, db.dir);
    assert_string_equal(r.err, want);
    release(&r);
  }

  snprintf(token, sizeof token, "%s/token", db.dir);
  f = fopen(token, "w");
  assert_non_null(f);
  fputs(TOKEN "\n", f);
  fclose(f);
  assert_int_equal(chmod(token, 0644), 0);
  snprintf(body, sizeof body, "[fx]\nlibrary = %s\napi_token_file = token\n", FX_SECRET);
  cfg = ini("open.ini", body);
  {
    const char *argv[] = { "check", "--no-db", "-c", cfg, NULL };
    r = run(argv);
    assert_int_equal(r.code, 1);
    assert_no_secret(r.err);
    snprintf(want, sizeof want, "comphost: %s:10: [fx] api_token_file: '%s' is open to other"
             " users (mode 0644): a secret file must not be (chmod o-rwx)\n", cfg, token);
    assert_string_equal(r.err, want);
    release(&r);
  }

  assert_int_equal(chmod(token, 0600), 0);
  snprintf(body, sizeof body, "[fx]\nlibrary = %s\napi_token = x\ngreeting_file = token\n",
           FX_SECRET);
  cfg = ini("notsecret.ini", body);
  {
    const char *argv[] = { "check", "--no-db", "-c", cfg, NULL };
    r = run(argv);
    assert_int_equal(r.code, 1);
    assert_no_secret(r.err);
    snprintf(want, sizeof want, "comphost: %s:11: [fx] greeting_file: unknown key (greeting is"
             " not a secret setting of the plugin: only a secret may be read from a file)\n",
             cfg);
    assert_string_equal(r.err, want);
    release(&r);
  }
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_write_and_read, setup, teardown),
    cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
    cmocka_unit_test_setup_teardown(test_read_follow, setup, teardown),
    cmocka_unit_test_setup_teardown(test_trace_and_its_index, setup, teardown),
    cmocka_unit_test_setup_teardown(test_status_lag_and_workers, setup, teardown),
    cmocka_unit_test_setup_teardown(test_rebuild_aggregator, setup, teardown),
    cmocka_unit_test_setup_teardown(test_rebuild_refuses_components_and_resets_store_positions,
                                    setup, teardown),
    cmocka_unit_test_setup_teardown(test_progress_of_a_large_backlog, setup, teardown),
    cmocka_unit_test_setup_teardown(test_secrets_are_not_shown, setup, teardown),
    cmocka_unit_test_setup_teardown(test_secret_files_refused, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
