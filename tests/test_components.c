/*
 * test_components.c - the book's components (identity, send-email,
 * video-publishing) end to end: real comphost processes started with the
 * INI files of config/, a real PostgreSQL with Message DB, .eml files and a
 * fake SMTP server.
 */
#define _POSIX_C_SOURCE 200809L
#include "support.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "e2e.h"
#include "uuid.h"

#define PLUGINS COMPHOST_BUILD_PLUGIN_DIR
#define CONFIG COMPHOST_SOURCE_DIR "/config/"
#define WAIT 60000
#define EMAIL_NS "0c46e0b7-dfaf-443a-b150-053b67905cc2"

static const char *const subscriber_ids[] = {
  "components:identity:command", "components:identity", "components:identity:sendEmailEvents",
  "components:send-email", "video-publishing",
};
#define SUBSCRIBER_COUNT (sizeof subscriber_ids / sizeof subscriber_ids[0])

static ch_e2e_db db;
/* SYSTEM_SENDER_EMAIL_ADDRESS for the hosts started next, NULL for none */
static const char *env_sender;
/* STATE_DIRECTORY for the hosts started next, without EMAIL_DIRECTORY;
 * NULL for none */
static const char *env_state_dir;
/* EMAIL_DIRECTORY for the hosts started next; NULL for <dir>/email */
static const char *env_email_dir;

static int setup(void **state)
{
  (void)state;
  env_sender = NULL;
  env_state_dir = NULL;
  env_email_dir = NULL;
  ch_e2e_db_create(&db);
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  ch_e2e_db_drop(&db);
  return 0;
}

/* ---- helpers ---- */

static void email_dir(const ch_e2e_db *d, char *out, size_t size)
{
  snprintf(out, size, "%s/email", d->dir);
}

/*
 * Start `comphost -c ini --plugin-dir <build>/plugins` against d, as
 * ch_e2e_host_start does, with EMAIL_DIRECTORY in d's directory: so the INI
 * files of config/ run as they are, on the test's databases.
 */
/*
 * An INI file with the web site of config/video-tutorials.ini on a port the
 * system picks (127.0.0.1:0) instead of 3000, copied into d's directory:
 * tests run side by side, and beside a site someone runs. Other files are
 * used as they are.
 */
static const char *site_on_any_port(const ch_e2e_db *d, const char *ini, char *buf, size_t size)
{
  const char *name = strrchr(ini, '/') ? strrchr(ini, '/') + 1 : ini, *p, *hit;
  char *text = NULL;
  size_t len = 0;
  FILE *in = fopen(ini, "r"), *out;

  assert_non_null(in);
  assert_true(getdelim(&text, &len, '\0', in) > 0);
  fclose(in);
  if (!strstr(text, "127.0.0.1:3000")) {
    free(text);
    return ini;
  }
  snprintf(buf, size, "%s/%s", d->dir, name);
  out = fopen(buf, "w");
  assert_non_null(out);
  for (p = text; (hit = strstr(p, "127.0.0.1:3000")); p = hit + strlen("127.0.0.1:3000"))
    fprintf(out, "%.*s127.0.0.1:0", (int)(hit - p), p);
  fputs(p, out);
  fclose(out);
  free(text);
  return buf;
}

static void start_host(ch_e2e_host *h, const ch_e2e_db *d, const char *ini, const char *log)
{
  char dir[400], copy[400];
  pid_t pid;

  ini = site_on_any_port(d, ini, copy, sizeof copy);
  ch_e2e_session_secret();
  email_dir(d, dir, sizeof dir);
  snprintf(h->log_path, sizeof h->log_path, "%s/%s", d->dir, log);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int fd = open(h->log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
      dup2(fd, STDERR_FILENO);
      dup2(fd, STDOUT_FILENO);
      close(fd);
    }
    setenv("MESSAGE_STORE_CONNECTION_STRING", d->store_url, 1);
    setenv("DATABASE_URL", d->view_url, 1);
    unsetenv("STATE_DIRECTORY");
    if (env_state_dir) {
      unsetenv("EMAIL_DIRECTORY");
      setenv("STATE_DIRECTORY", env_state_dir, 1);
    } else {
      setenv("EMAIL_DIRECTORY", env_email_dir ? env_email_dir : dir, 1);
    }
    if (env_sender)
      setenv("SYSTEM_SENDER_EMAIL_ADDRESS", env_sender, 1);
    else
      unsetenv("SYSTEM_SENDER_EMAIL_ADDRESS");
    unsetenv("COMPHOST_PLUGIN_DIR");
    if (getenv("ASAN_OPTIONS")) {
      char opts[1024];
      snprintf(opts, sizeof opts, "%s:handle_segv=0", getenv("ASAN_OPTIONS"));
      setenv("ASAN_OPTIONS", opts, 1);
    }
    execl(COMPHOST_BIN, "comphost", "-c", ini, "--plugin-dir", PLUGINS, (char *)NULL);
    _exit(127);
  }
  h->pid = pid;
}

static void stop_cleanly(ch_e2e_host *h)
{
  int status = ch_e2e_host_stop(h, SIGTERM, WAIT);

  assert_true(status != -1 && WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

/* Wait until the host logged that every subscription in ids has started. */
static void wait_started(const ch_e2e_host *h, const char *const *ids, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    char text[200];
    snprintf(text, sizeof text, "Started %s at", ids[i]);
    assert_true(ch_e2e_wait_log(h, text, WAIT));
  }
}

static void write_msg_to(const ch_e2e_db *d, const char *stream, const char *type,
                         const char *data_json, const char *meta_json)
{
  chd_mdb *m = ch_e2e_store(d);
  json_error_t e;
  json_t *data = json_loads(data_json, JSON_DECODE_ANY, &e);
  json_t *meta = meta_json ? json_loads(meta_json, 0, &e) : NULL;

  assert_non_null(data);
  assert_true(!meta_json || meta);
  assert_int_equal(chd_mdb_write(m, stream, NULL, type, data, meta, CH_VERSION_ANY, NULL),
                   CHD_STORE_OK);
  json_decref(data);
  json_decref(meta);
  chd_mdb_free(m);
}

static void write_msg(const char *stream, const char *type, const char *data_json,
                      const char *meta_json)
{
  write_msg_to(&db, stream, type, data_json, meta_json);
}

/* The first column of the first row of sql on url, as a new string; NULL
 * for SQL NULL or no row. */
static char *sql_text(const char *url, const char *sql)
{
  PGconn *c = PQconnectdb(url);
  PGresult *res;
  char *v = NULL;

  if (PQstatus(c) != CONNECTION_OK) {
    print_error("cannot connect: %s\n", PQerrorMessage(c));
    PQfinish(c);
    fail();
  }
  res = PQexec(c, sql);
  if (PQresultStatus(res) != PGRES_TUPLES_OK) {
    print_error("%s: %s\n", sql, PQresultErrorMessage(res));
    PQclear(res);
    PQfinish(c);
    fail();
  }
  if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
    v = strdup(PQgetvalue(res, 0, 0));
  PQclear(res);
  PQfinish(c);
  return v;
}

static void assert_sql_text(const char *sql, const char *want)
{
  char *got = sql_text(db.store_url, sql);

  if (!got || strcmp(got, want) != 0) {
    print_error("%s\n  got:  %s\n  want: %s\n", sql, got ? got : "(null)", want);
    free(got);
    fail();
  }
  free(got);
}

static int64_t count_where(const ch_e2e_db *d, const char *where)
{
  char sql[1024];

  snprintf(sql, sizeof sql, "SELECT count(*) FROM message_store.messages WHERE %s", where);
  return ch_e2e_int(d->store_url, sql);
}

static int64_t count_type(const char *type)
{
  char where[200];

  snprintf(where, sizeof where, "type = '%s'", type);
  return count_where(&db, where);
}

static int64_t wait_type(const ch_e2e_db *d, const char *type, int64_t want)
{
  char sql[300];

  snprintf(sql, sizeof sql, "SELECT count(*) FROM message_store.messages WHERE type = '%s'",
           type);
  return ch_e2e_wait_int(d->store_url, sql, want, WAIT);
}

/* Every message but read positions. */
static int64_t domain_messages(const ch_e2e_db *d)
{
  return count_where(d, "message_store.category(stream_name) <> 'subscriberPosition'");
}

/* .eml files in d's email directory; *others gets the count of other entries. */
static int eml_files(const ch_e2e_db *d, int *others)
{
  char dir[400];
  DIR *dp;
  struct dirent *e;
  int n = 0, o = 0;

  email_dir(d, dir, sizeof dir);
  if (!(dp = opendir(dir))) {
    if (others)
      *others = 0;
    return 0;
  }
  while ((e = readdir(dp))) {
    size_t len = strlen(e->d_name);
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
      continue;
    if (e->d_name[0] != '.' && len > 4 && !strcmp(e->d_name + len - 4, ".eml"))
      n++;
    else
      o++;
  }
  closedir(dp);
  if (others)
    *others = o;
  return n;
}

/* The content of the only .eml file whose name holds `part` (new string). */
static char *read_eml(const ch_e2e_db *d, const char *part)
{
  char dir[400], path[800];
  DIR *dp;
  struct dirent *e;
  FILE *f;
  char *buf = NULL;
  long size;

  email_dir(d, dir, sizeof dir);
  assert_non_null(dp = opendir(dir));
  path[0] = '\0';
  while ((e = readdir(dp)))
    if (e->d_name[0] != '.' && (!part || strstr(e->d_name, part)))
      snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
  closedir(dp);
  assert_true(path[0] != '\0');
  assert_non_null(f = fopen(path, "rb"));
  fseek(f, 0, SEEK_END);
  size = ftell(f);
  fseek(f, 0, SEEK_SET);
  assert_non_null(buf = malloc((size_t)size + 1));
  assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
  buf[size] = '\0';
  fclose(f);
  return buf;
}

static void assert_contains(const char *text, const char *part)
{
  if (!strstr(text, part)) {
    print_error("'%s' is not in:\n%s\n", part, text);
    fail();
  }
}

/* Reset every component subscription to position 0 (a Read {position: 0}). */
static void reset_positions(const ch_e2e_db *d)
{
  for (size_t i = 0; i < SUBSCRIBER_COUNT; i++) {
    char stream[200];
    snprintf(stream, sizeof stream, "subscriberPosition-%s", subscriber_ids[i]);
    write_msg_to(d, stream, "Read", "{\"position\": 0}", NULL);
  }
}

/* The position the last Read of a subscriber holds. */
static int64_t stored_position(const ch_e2e_db *d, const char *subscriber_id)
{
  char sql[400];

  snprintf(sql, sizeof sql, "SELECT (data->>'position')::bigint FROM message_store.messages"
           " WHERE stream_name = 'subscriberPosition-%s' ORDER BY position DESC LIMIT 1",
           subscriber_id);
  return ch_e2e_int(d->store_url, sql);
}

static int64_t last_gp(const ch_e2e_db *d, const char *category)
{
  char sql[300];

  snprintf(sql, sizeof sql, "SELECT max(global_position) FROM message_store.messages"
           " WHERE message_store.category(stream_name) = '%s'", category);
  return ch_e2e_int(d->store_url, sql);
}

/*
 * Replay every component subscription from the first message with `ini`,
 * then stop: the host must have gone through everything and written no
 * message but positions.
 */
static void replay_adds_nothing(const char *ini, int emails)
{
  static const char *const categories[SUBSCRIBER_COUNT] = {
    "identity:command", "identity", "sendEmail", "sendEmail:command", "videoPublishing:command",
  };
  int64_t before = domain_messages(&db);
  bool through = false;
  ch_e2e_host h;

  reset_positions(&db);
  /* run until every subscription went through its whole category again
   * (positions are stored when the host stops) */
  for (int run = 0; run < 20 && !through; run++) {
    char log[40];

    snprintf(log, sizeof log, "replay%d.log", run);
    start_host(&h, &db, ini, log);
    wait_started(&h, subscriber_ids, SUBSCRIBER_COUNT);
    ch_e2e_sleep_ms(500);
    stop_cleanly(&h);
    assert_false(ch_e2e_log_contains(&h, "subscription stopped"));
    through = true;
    for (size_t i = 0; i < SUBSCRIBER_COUNT; i++) {
      int64_t end = last_gp(&db, categories[i]);
      if (end > 0 && stored_position(&db, subscriber_ids[i]) != end)
        through = false;
    }
  }
  assert_true(through);
  assert_int_equal(domain_messages(&db), before);
  assert_int_equal(eml_files(&db, NULL), emails);
}

/* An INI for db that runs the three components from the build, with `extra`
 * host keys in each section and the given [send-email] settings. */
static const char *components_ini(const char *name, const char *extra, const char *send_email)
{
  char body[2048];

  snprintf(body, sizeof body,
           "[identity]\nlibrary = " PLUGINS "/identity.so\n%s\n"
           "[send-email]\nlibrary = " PLUGINS "/send-email.so\n%s%s\n"
           "[video-publishing]\nlibrary = " PLUGINS "/video-publishing.so\n%s\n",
           extra, extra, send_email, extra);
  return ch_e2e_write_ini(&db, name, body);
}

static void new_uuid(char out[37])
{
  chd_uuid_v4(out);
}

static void register_user(const ch_e2e_db *d, const char *user_id, const char *email,
                          const char *trace_id)
{
  char stream[100], data[400], meta[200];

  snprintf(stream, sizeof stream, "identity:command-%s", user_id);
  snprintf(data, sizeof data, "{\"userId\": \"%s\", \"email\": \"%s\","
           " \"passwordHash\": \"$2b$10$abcdefghijklmnopqrstuv\"}", user_id, email);
  snprintf(meta, sizeof meta, "{\"traceId\": \"%s\", \"userId\": \"%s\"}", trace_id, user_id);
  write_msg_to(d, stream, "Register", data, meta);
}

/* ---- registration ---- */

/* One Register: the book's five messages with one traceId, one .eml; the
 * same Register again and a replay from position 0 add nothing. */
static void test_registration_end_to_end(void **state)
{
  char user[37], trace[37], email_id[37], email[100], sql[1200], want[600], where[200];
  char user2[37], trace2[37], email2[100];
  ch_e2e_host h;
  char *eml;
  (void)state;

  new_uuid(user);
  new_uuid(trace);
  snprintf(email, sizeof email, "user-%.8s@example.com", user);
  assert_int_equal(chd_uuid_v5(EMAIL_NS, email, email_id), 0);

  start_host(&h, &db, CONFIG "video-tutorials.ini", "run.log");
  register_user(&db, user, email, trace);
  snprintf(where, sizeof where, "metadata->>'traceId' = '%s'", trace);
  assert_int_equal(wait_type(&db, "RegistrationEmailSent", 1), 1);

  /* five messages, one traceId, in the book's order and streams */
  assert_int_equal(count_where(&db, where), 5);
  snprintf(sql, sizeof sql, "SELECT string_agg(type || ' ' || stream_name, ',' ORDER BY"
           " global_position) FROM message_store.messages WHERE %s", where);
  snprintf(want, sizeof want, "Register identity:command-%s,Registered identity-%s,"
           "Send sendEmail:command-%s,Sent sendEmail-%s,RegistrationEmailSent identity-%s",
           user, user, email_id, email_id, user);
  assert_sql_text(sql, want);

  /* Registered {userId, email, passwordHash}, traceId and userId carried */
  snprintf(sql, sizeof sql, "SELECT data::text FROM message_store.messages"
           " WHERE type = 'Registered' AND metadata->>'userId' = '%s'", user);
  snprintf(want, sizeof want, "{\"email\": \"%s\", \"userId\": \"%s\", \"passwordHash\":"
           " \"$2b$10$abcdefghijklmnopqrstuv\"}", email, user);
  assert_sql_text(sql, want);

  /* Send {emailId, to, subject, text, html} with originStreamName */
  snprintf(sql, sizeof sql, "SELECT concat_ws('|', data->>'emailId', data->>'to',"
           " data->>'subject', data->>'text', data->>'html', metadata->>'originStreamName',"
           " metadata->>'userId') FROM message_store.messages WHERE type = 'Send'");
  snprintf(want, sizeof want, "%s|%s|Welcome to Video Tutorials|Hello,\n\nthank you for"
           " registering with Video Tutorials. You can now log in as %s.\n|<p>Hello,</p><p>"
           "thank you for registering with Video Tutorials. You can now log in as %s.</p>"
           "|identity-%s|%s", email_id, email, email, email, user, user);
  assert_sql_text(sql, want);

  /* Sent: data = the command's data, metadata carried through */
  assert_int_equal(count_where(&db, "type = 'Sent' AND data = (SELECT data FROM"
                                    " message_store.messages WHERE type = 'Send')"
                                    " AND metadata->>'originStreamName' LIKE 'identity-%'"), 1);
  /* RegistrationEmailSent {userId, emailId} */
  snprintf(sql, sizeof sql, "SELECT data::text FROM message_store.messages"
           " WHERE type = 'RegistrationEmailSent'");
  snprintf(want, sizeof want, "{\"userId\": \"%s\", \"emailId\": \"%s\"}", user, email_id);
  assert_sql_text(sql, want);

  /* exactly one .eml file, an RFC 5322 message */
  assert_int_equal(eml_files(&db, NULL), 1);
  eml = read_eml(&db, NULL);
  assert_contains(eml, "From: no-reply@example.com\r\n");
  snprintf(want, sizeof want, "To: %s\r\n", email);
  assert_contains(eml, want);
  assert_contains(eml, "Subject: Welcome to Video Tutorials\r\n");
  assert_contains(eml, "\r\nDate: ");
  assert_contains(eml, "@example.com>\r\nMIME-Version: 1.0\r\n");
  assert_contains(eml, "Content-Type: multipart/alternative;");
  assert_contains(eml, "Content-Type: text/plain; charset=utf-8\r\n");
  assert_contains(eml, "Content-Type: text/html; charset=utf-8\r\n");
  /* quoted-printable: lines of at most 76 characters, soft breaks */
  assert_contains(eml, "\r\nthank you for registering with Video Tutorials. You can now log in as"
                       " user-=\r\n");
  free(eml);

  /* the same Register again: nothing new (the next user shows it was handled) */
  register_user(&db, user, email, trace);
  new_uuid(user2);
  new_uuid(trace2);
  snprintf(email2, sizeof email2, "second-%.8s@example.com", user2);
  register_user(&db, user2, email2, trace2);
  assert_int_equal(wait_type(&db, "RegistrationEmailSent", 2), 2);
  ch_e2e_sleep_ms(300);
  stop_cleanly(&h);
  assert_int_equal(count_where(&db, where), 6);
  assert_int_equal(count_type("Registered"), 2);
  assert_int_equal(count_type("Send"), 2);
  assert_int_equal(count_type("Sent"), 2);
  assert_int_equal(domain_messages(&db), 11);
  assert_int_equal(eml_files(&db, NULL), 2);
  assert_false(ch_e2e_log_contains(&h, "subscription stopped"));

  /* every position back to 0: the whole flow again adds no event */
  replay_adds_nothing(CONFIG "video-tutorials.ini", 2);
  /* and without the host's deterministic ids: the projections alone suffice */
  replay_adds_nothing(components_ini("nodet.ini", "deterministic_ids = false\n",
                                     "system_sender_email_address = no-reply@example.com\n"), 2);
}

/* Templates from config and files, HTML escaping, the book's env overrides. */
static void test_registration_email_from_templates(void **state)
{
  char user[37], trace[37], body[1500], path[400], sql[300], want[600], *eml;
  const char *email = "tom&jerry@example.com";
  const char *ini;
  ch_e2e_host h;
  FILE *f;
  (void)state;

  snprintf(path, sizeof path, "%s/welcome.txt", db.dir);
  assert_non_null(f = fopen(path, "w"));
  fputs("Dear {{ email }},\nyour id is {{userId}}.\n\n-- {{appName}}\n", f);
  fclose(f);
  snprintf(body, sizeof body,
           "[identity]\nlibrary = " PLUGINS "/identity.so\napp_name = Tubes\n"
           "registration_email_subject = Hi {{email}}, welcome to {{appName}}\n"
           "registration_email_text_file = %s\n"
           "registration_email_html = <b>{{email}}</b> & {{appName}}\\n\n"
           "[send-email]\nlibrary = " PLUGINS "/send-email.so\n"
           "system_sender_email_address = from-config@example.com\n", path);
  ini = ch_e2e_write_ini(&db, "templates.ini", body);
  env_sender = "Video Tutorials <from-env@example.com>";
  new_uuid(user);
  new_uuid(trace);
  register_user(&db, user, email, trace);
  start_host(&h, &db, ini, "templates.log");
  assert_int_equal(wait_type(&db, "RegistrationEmailSent", 1), 1);
  stop_cleanly(&h);

  snprintf(sql, sizeof sql, "SELECT concat_ws('|', data->>'subject', data->>'text',"
           " data->>'html') FROM message_store.messages WHERE type = 'Send'");
  snprintf(want, sizeof want, "Hi %s, welcome to Tubes|Dear %s,\nyour id is %s.\n\n-- Tubes\n"
           "|<b>tom&amp;jerry@example.com</b> & Tubes\n", email, email, user);
  assert_sql_text(sql, want);
  eml = read_eml(&db, NULL);
  /* SYSTEM_SENDER_EMAIL_ADDRESS won over the INI, EMAIL_DIRECTORY was used */
  assert_contains(eml, "From: Video Tutorials <from-env@example.com>\r\n");
  assert_contains(eml, "Subject: Hi tom&jerry@example.com, welcome to Tubes\r\n");
  assert_contains(eml, "Message-ID: <");
  assert_contains(eml, "@example.com>\r\n");
  assert_contains(eml, "<b>tom&amp;jerry@example.com</b> & Tubes");
  free(eml);
}

/* Settings that cannot work refuse to start, with the reason. */
static void test_bad_settings_refused(void **state)
{
  static const struct { const char *body; const char *expect; } cases[] = {
    { "[identity]\nlibrary = " PLUGINS "/identity.so\n"
      "registration_email_subject = Hi {{emial}}\n",
      "registration_email_subject: unknown placeholder '{{emial}}'" },
    { "[identity]\nlibrary = " PLUGINS "/identity.so\n"
      "registration_email_html_file = /nonexistent/welcome.html\n",
      "registration_email_html_file: cannot open '/nonexistent/welcome.html'" },
    { "[send-email]\nlibrary = " PLUGINS "/send-email.so\n"
      "system_sender_email_address = a@example.com\ntransport = carrier-pigeon\n",
      "transport: 'carrier-pigeon' is not one of pickup, smtp" },
    { "[send-email]\nlibrary = " PLUGINS "/send-email.so\n",
      "no sender address: set system_sender_email_address or SYSTEM_SENDER_EMAIL_ADDRESS" },
    { "[send-email]\nlibrary = " PLUGINS "/send-email.so\n"
      "system_sender_email_address = a@example.com\ntransport = smtp\n"
      "smtp_url = http://example.com\n",
      "smtp_url: 'http://example.com' is not an smtp:// or smtps:// URL" },
    { "[video-publishing]\nlibrary = " PLUGINS "/video-publishing.so\ntranscoder = ffmpeg\n",
      "transcoder: 'ffmpeg' is not one of fake" },
  };
  (void)state;

  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char log[40];
    ch_e2e_host h;
    int status;

    snprintf(log, sizeof log, "bad%zu.log", i);
    start_host(&h, &db, ch_e2e_write_ini(&db, "bad.ini", cases[i].body), log);
    status = ch_e2e_host_wait(&h, WAIT);
    assert_true(status != -1 && WIFEXITED(status));
    assert_int_not_equal(WEXITSTATUS(status), 0);
    if (!ch_e2e_log_contains(&h, cases[i].expect)) {
      print_error("case %zu: '%s' not logged\n", i, cases[i].expect);
      fail();
    }
  }
}

/* Every INI file of the components is valid as it stands. */
static void test_config_files_are_valid(void **state)
{
  static const char *const files[] = { "identity.ini", "send-email.ini", "video-publishing.ini",
                                       "video-tutorials.ini" };
  (void)state;

  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    char path[400], *out = NULL;
    const char *argv[] = { "check", "-c", path, "--plugin-dir", PLUGINS, "--no-db", NULL };

    snprintf(path, sizeof path, CONFIG "%s", files[i]);
    if (ch_e2e_run(&db, argv, &out) != 0) {
      print_error("%s:\n%s\n", files[i], out);
      free(out);
      fail();
    }
    assert_contains(out, "is valid");
    free(out);
  }
}

/* kill -9 at random moments during 200 registrations: after the restart,
 * every user has exactly one of each event. */
static void test_kill9_during_200_registrations(void **state)
{
  unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
  const char *done_sql = "SELECT count(*) FROM message_store.messages"
                         " WHERE type = 'RegistrationEmailSent'";
  int others = 0, kills = 0;
  ch_e2e_host h;
  (void)state;

  print_message("kill -9 seed %u\n", seed);
  srand(seed);
  ch_e2e_exec(db.store_url,
              "SET search_path = message_store, public;"
              "SELECT count(write_message(gen_random_uuid()::varchar,"
              " 'identity:command-' || u, 'Register',"
              " jsonb_build_object('userId', u, 'email', 'k-' || u || '@example.com',"
              "                    'passwordHash', 'x'),"
              " jsonb_build_object('traceId', gen_random_uuid()::text, 'userId', u)))"
              " FROM (SELECT gen_random_uuid()::text AS u FROM generate_series(1, 200)) AS s");

  for (int round = 0; round < 4; round++) {
    char log[40];
    int64_t target = 30 + 40 * round + rand() % 30, done = 0;

    snprintf(log, sizeof log, "kill%d.log", round);
    start_host(&h, &db, CONFIG "video-tutorials.ini", log);
    /* somewhere while it works: at a random count, after a random pause */
    for (int i = 0; i < 3000 && (done = ch_e2e_int(db.store_url, done_sql)) < target; i++)
      ch_e2e_sleep_ms(5);
    ch_e2e_sleep_ms(rand() % 40);
    if (ch_e2e_int(db.store_url, done_sql) < 200)
      kills++;
    kill(h.pid, SIGKILL);
    assert_true(ch_e2e_host_wait(&h, WAIT) != -1);
    ch_e2e_sleep_ms(300);      /* the workers follow their supervisor */
  }
  assert_true(kills >= 1);
  print_message("killed %d times while registrations were in flight\n", kills);

  start_host(&h, &db, CONFIG "video-tutorials.ini", "final.log");
  assert_int_equal(ch_e2e_wait_int(db.store_url, done_sql, 200, WAIT), 200);
  ch_e2e_sleep_ms(500);
  stop_cleanly(&h);

  assert_int_equal(count_type("Register"), 200);
  /* one of each per user: 200 messages in 200 different streams */
  assert_int_equal(count_where(&db, "type = 'Registered'"), 200);
  assert_int_equal(ch_e2e_int(db.store_url, "SELECT count(DISTINCT stream_name) FROM"
                                            " message_store.messages WHERE type = 'Registered'"),
                   200);
  assert_int_equal(count_type("Send"), 200);
  assert_int_equal(ch_e2e_int(db.store_url, "SELECT count(DISTINCT data->>'to') FROM"
                                            " message_store.messages WHERE type = 'Send'"), 200);
  assert_int_equal(count_type("Sent"), 200);
  assert_int_equal(ch_e2e_int(db.store_url, "SELECT count(DISTINCT stream_name) FROM"
                                            " message_store.messages WHERE type = 'Sent'"), 200);
  assert_int_equal(count_type("RegistrationEmailSent"), 200);
  assert_int_equal(ch_e2e_int(db.store_url, "SELECT count(DISTINCT stream_name) FROM"
                                            " message_store.messages"
                                            " WHERE type = 'RegistrationEmailSent'"), 200);
  /* every identity stream holds Registered then RegistrationEmailSent */
  assert_int_equal(ch_e2e_int(db.store_url,
                              "SELECT count(*) FROM (SELECT stream_name, string_agg(type, ','"
                              " ORDER BY position) AS t FROM message_store.messages"
                              " WHERE message_store.category(stream_name) = 'identity'"
                              " GROUP BY stream_name) AS s"
                              " WHERE t = 'Registered,RegistrationEmailSent'"), 200);
  /* an email delivered again after a kill rewrote its own file */
  assert_int_equal(eml_files(&db, &others), 200);
  assert_int_equal(others, 0);
  assert_int_equal(domain_messages(&db), 1000);
}

/* Two hosts race on the same Register commands, without the host's
 * deterministic ids: the expected version leaves one Registered per user. */
static void test_two_hosts_race_on_register(void **state)
{
  const char *ini = ch_e2e_write_ini(&db, "race.ini", "[identity]\nlibrary = " PLUGINS
                                     "/identity.so\ndeterministic_ids = false\n");
  ch_e2e_host a, b;
  (void)state;

  ch_e2e_exec(db.store_url,
              "SET search_path = message_store, public;"
              "SELECT count(write_message(gen_random_uuid()::varchar,"
              " 'identity:command-' || u, 'Register',"
              " jsonb_build_object('userId', u, 'email', 'r-' || u || '@example.com',"
              "                    'passwordHash', 'x'),"
              " jsonb_build_object('traceId', gen_random_uuid()::text, 'userId', u)))"
              " FROM (SELECT gen_random_uuid()::text AS u FROM generate_series(1, 300)) AS s");
  start_host(&a, &db, ini, "race-a.log");
  start_host(&b, &db, ini, "race-b.log");
  assert_int_equal(wait_type(&db, "Registered", 300), 300);
  /* let the second host go through every command too */
  ch_e2e_sleep_ms(1500);
  stop_cleanly(&a);
  stop_cleanly(&b);
  assert_int_equal(count_type("Registered"), 300);
  assert_int_equal(ch_e2e_int(db.store_url, "SELECT count(DISTINCT stream_name) FROM"
                                            " message_store.messages WHERE type = 'Registered'"),
                   300);
  print_message("version conflicts resolved by reading again: %d\n",
                ch_e2e_log_count(&a, "changed while we handled Register") +
                ch_e2e_log_count(&b, "changed while we handled Register"));
  assert_false(ch_e2e_log_contains(&a, "subscription stopped"));
  assert_false(ch_e2e_log_contains(&b, "subscription stopped"));
}

/* ---- send-email ---- */

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

/* A Send from a client other than identity (origin category `tester`). */
static void send_command(const char *email_id, const char *to, const char *trace)
{
  char stream[100], data[600], meta[300];

  snprintf(stream, sizeof stream, "sendEmail:command-%s", email_id);
  snprintf(data, sizeof data, "{\"emailId\": \"%s\", \"to\": \"%s\", \"subject\": \"Hi\","
           " \"text\": \"Hello\", \"html\": \"<p>Hello</p>\"}", email_id, to);
  snprintf(meta, sizeof meta, "{\"traceId\": \"%s\", \"userId\": \"u-1\","
           " \"originStreamName\": \"tester-%s\"}", trace, email_id);
  write_msg(stream, "Send", data, meta);
}

/* SMTP with nothing listening: Failed with the reason, and it goes on; the
 * failed command stays failed on a replay, a new Send is delivered. */
static void test_smtp_failure_writes_failed(void **state)
{
  char body[600], id1[37], id2[37], sql[400], want[600];
  const char *ini;
  ch_e2e_host h;
  char *reason;
  (void)state;

  snprintf(body, sizeof body, "transport = smtp\nsmtp_url = smtp://127.0.0.1:%d\n"
           "smtp_tls = off\nsmtp_connect_timeout_ms = 3000\nsmtp_timeout_ms = 5000\n"
           "system_sender_email_address = no-reply@example.com\n", free_port());
  ini = components_ini("smtp-down.ini", "", body);
  new_uuid(id1);
  new_uuid(id2);
  send_command(id1, "one@example.com", "t-1");
  send_command(id2, "two@example.com", "t-2");
  start_host(&h, &db, ini, "smtp-down.log");
  assert_int_equal(wait_type(&db, "Failed", 2), 2);
  ch_e2e_sleep_ms(200);
  assert_true(ch_e2e_process_alive(h.pid));
  stop_cleanly(&h);
  assert_false(ch_e2e_log_contains(&h, "subscription stopped"));
  assert_int_equal(count_type("Sent"), 0);

  /* Failed: the command's data and the reason, its metadata carried */
  snprintf(sql, sizeof sql, "SELECT data->>'reason' FROM message_store.messages"
           " WHERE type = 'Failed' AND stream_name = 'sendEmail-%s'", id1);
  reason = sql_text(db.store_url, sql);
  assert_non_null(reason);
  print_message("reason: %s\n", reason);
  assert_true(!strncmp(reason, "smtp: ", 6));
  assert_true(strstr(reason, "onnect") != NULL);
  free(reason);
  snprintf(sql, sizeof sql, "SELECT concat_ws('|', data->>'emailId', data->>'to',"
           " data->>'subject', data->>'text', data->>'html', metadata->>'traceId',"
           " metadata->>'userId', metadata->>'originStreamName') FROM message_store.messages"
           " WHERE type = 'Failed' AND stream_name = 'sendEmail-%s'", id2);
  snprintf(want, sizeof want, "%s|two@example.com|Hi|Hello|<p>Hello</p>|t-2|u-1|tester-%s",
           id2, id2);
  assert_sql_text(sql, want);

  /* replayed with a transport that works: the failed commands stay failed */
  replay_adds_nothing(components_ini("pickup.ini", "deterministic_ids = false\n",
                                     "system_sender_email_address = no-reply@example.com\n"), 0);
  /* a new Send for the same email (a retry) goes out */
  send_command(id1, "one@example.com", "t-3");
  start_host(&h, &db, ch_e2e_write_ini(&db, "pickup2.ini", "[send-email]\nlibrary = " PLUGINS
                                       "/send-email.so\nsystem_sender_email_address ="
                                       " no-reply@example.com\n"), "retry.log");
  assert_int_equal(wait_type(&db, "Sent", 1), 1);
  stop_cleanly(&h);
  snprintf(sql, sizeof sql, "SELECT count(*) FROM message_store.messages WHERE type = 'Sent'"
           " AND stream_name = 'sendEmail-%s' AND metadata->>'traceId' = 't-3'", id1);
  assert_int_equal(ch_e2e_int(db.store_url, sql), 1);
  assert_int_equal(eml_files(&db, NULL), 1);
}

/* A fake SMTP server for one connection: it logs what the client says into
 * `transcript` and accepts everything (AUTH PLAIN included). */
static void fake_smtp_server(int lfd, const char *transcript)
{
  FILE *log = fopen(transcript, "w"), *in, *out;
  char line[2048];
  int c = accept(lfd, NULL, NULL);
  bool data = false;

  if (c < 0 || !log || !(in = fdopen(c, "r")) || !(out = fdopen(dup(c), "w")))
    _exit(1);
  setvbuf(log, NULL, _IONBF, 0);
  fputs("220 fake ESMTP\r\n", out);
  fflush(out);
  while (fgets(line, sizeof line, in)) {
    const char *reply = "250 OK\r\n";
    fputs(line, log);
    if (data) {
      if (!strcmp(line, ".\r\n"))
        data = false;
      else
        continue;
    } else if (!strncmp(line, "EHLO", 4)) {
      reply = "250-fake\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n";
    } else if (!strncmp(line, "AUTH PLAIN", 10)) {
      if (strlen(line) <= 12) {
        fputs("334 \r\n", out);
        fflush(out);
        if (!fgets(line, sizeof line, in))
          break;
        fputs(line, log);
      }
      reply = "235 2.7.0 Authentication successful\r\n";
    } else if (!strncmp(line, "DATA", 4)) {
      data = true;
      reply = "354 go ahead\r\n";
    } else if (!strncmp(line, "QUIT", 4)) {
      fputs("221 bye\r\n", out);
      fflush(out);
      break;
    }
    fputs(reply, out);
    fflush(out);
  }
  fclose(out);
  fclose(in);
  fclose(log);
  _exit(0);
}

static char *read_text_file(const char *path)
{
  FILE *f = fopen(path, "rb");
  char *buf;
  long size;

  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  size = ftell(f);
  fseek(f, 0, SEEK_SET);
  assert_non_null(buf = malloc((size_t)size + 1));
  assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
  buf[size] = '\0';
  fclose(f);
  return buf;
}

/* SMTP to a server that takes it, with authentication: Sent. */
static void test_smtp_delivers(void **state)
{
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  char body[800], transcript[400], id[37], *t;
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  pid_t server;
  ch_e2e_host h;
  (void)state;

  assert_true(lfd >= 0);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(lfd, 4), 0);
  assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &len), 0);
  snprintf(transcript, sizeof transcript, "%s/smtp.txt", db.dir);
  server = fork();
  assert_true(server >= 0);
  if (server == 0)
    fake_smtp_server(lfd, transcript);
  close(lfd);

  snprintf(body, sizeof body, "transport = smtp\nsmtp_url = smtp://127.0.0.1:%d\n"
           "smtp_tls = off\nsmtp_username = mailer\nsmtp_password = secret\n"
           "system_sender_email_address = Video Tutorials <no-reply@example.com>\n",
           (int)ntohs(a.sin_port));
  new_uuid(id);
  send_command(id, "Ann <ann@example.com>, bob@example.com", "t-9");
  start_host(&h, &db, components_ini("smtp.ini", "", body), "smtp.log");
  assert_int_equal(wait_type(&db, "Sent", 1), 1);
  stop_cleanly(&h);
  kill(server, SIGKILL);
  waitpid(server, NULL, 0);

  t = read_text_file(transcript);
  /* base64 of "\0mailer\0secret" */
  assert_contains(t, "AG1haWxlcgBzZWNyZXQ=");
  assert_contains(t, "MAIL FROM:<no-reply@example.com>");
  assert_contains(t, "RCPT TO:<ann@example.com>");
  assert_contains(t, "RCPT TO:<bob@example.com>");
  assert_contains(t, "From: Video Tutorials <no-reply@example.com>\r\n");
  assert_contains(t, "To: Ann <ann@example.com>, bob@example.com\r\n");
  assert_contains(t, "Subject: Hi\r\n");
  assert_contains(t, "<p>Hello</p>");
  free(t);
  assert_int_equal(count_type("Failed"), 0);
  assert_int_equal(eml_files(&db, NULL), 0);
}

/* ---- video-publishing ---- */

static void video_command(const char *type, const char *video_id, const char *data_json,
                          const char *trace)
{
  char stream[100], meta[200];

  snprintf(stream, sizeof stream, "videoPublishing:command-%s", video_id);
  snprintf(meta, sizeof meta, "{\"traceId\": \"%s\", \"userId\": \"owner-1\"}", trace);
  write_msg(stream, type, data_json, meta);
}

static void test_video_publishing(void **state)
{
  char video[37], other[37], data[400], sql[600], want[600], stream[100];
  ch_e2e_host h;
  (void)state;

  new_uuid(video);
  new_uuid(other);
  snprintf(stream, sizeof stream, "videoPublishing-%s", video);
  snprintf(data, sizeof data, "{\"ownerId\": \"owner-1\", \"sourceUri\":"
           " \"https://sourceurl.com/\", \"videoId\": \"%s\"}", video);
  /* all queued before the component runs */
  video_command("PublishVideo", video, data, "t-pub-1");
  video_command("PublishVideo", video, data, "t-pub-2");
  snprintf(data, sizeof data, "{\"name\": \"First name\", \"videoId\": \"%s\"}", video);
  video_command("NameVideo", video, data, "t-name-1");
  snprintf(data, sizeof data, "{\"name\": \"Second name\", \"videoId\": \"%s\"}", video);
  video_command("NameVideo", video, data, "t-name-2");
  snprintf(data, sizeof data, "{\"name\": \"\", \"videoId\": \"%s\"}", other);
  video_command("NameVideo", other, data, "t-name-3");

  start_host(&h, &db, CONFIG "video-publishing.ini", "video.log");
  assert_int_equal(wait_type(&db, "VideoNameRejected", 1), 1);
  assert_int_equal(wait_type(&db, "VideoNamed", 2), 2);
  ch_e2e_sleep_ms(300);
  stop_cleanly(&h);

  /* PublishVideo twice: one VideoPublished, with the fake transcoder's URI */
  assert_int_equal(count_type("VideoPublished"), 1);
  assert_int_equal(count_type("VideoPublishingFailed"), 0);
  snprintf(sql, sizeof sql, "SELECT data::text || (metadata->>'traceId') FROM"
           " message_store.messages WHERE type = 'VideoPublished' AND stream_name = '%s'",
           stream);
  snprintf(want, sizeof want, "{\"ownerId\": \"owner-1\", \"videoId\": \"%s\", \"sourceUri\":"
           " \"https://sourceurl.com/\", \"transcodedUri\":"
           " \"https://www.youtube.com/watch?v=GI_P3UtZXAA\"}t-pub-1", video);
  assert_sql_text(sql, want);
  assert_true(ch_e2e_log_contains(&h, "Transcode https://sourceurl.com/ to"
                                      " https://www.youtube.com/watch?v=GI_P3UtZXAA"));

  /* two NameVideo queued: both handled, in order (the book skipped the second) */
  snprintf(sql, sizeof sql, "SELECT string_agg(data::text, ',' ORDER BY position) FROM"
           " message_store.messages WHERE type = 'VideoNamed' AND stream_name = '%s'", stream);
  assert_sql_text(sql, "{\"name\": \"First name\"},{\"name\": \"Second name\"}");
  /* each naming event records the position of the command that caused it */
  assert_int_equal(ch_e2e_int(db.store_url,
                              "SELECT count(*) FROM message_store.messages e"
                              " JOIN message_store.messages c ON c.global_position ="
                              "   (e.metadata->>'causationMessageGlobalPosition')::bigint"
                              " WHERE e.type IN ('VideoNamed', 'VideoNameRejected')"
                              " AND c.type = 'NameVideo'"
                              " AND c.metadata->>'traceId' = e.metadata->>'traceId'"), 3);

  /* NameVideo "" -> VideoNameRejected with the book's reason */
  snprintf(sql, sizeof sql, "SELECT data::text FROM message_store.messages"
           " WHERE type = 'VideoNameRejected' AND stream_name = 'videoPublishing-%s'", other);
  assert_sql_text(sql, "{\"name\": \"\", \"reason\": \"ValidationError**{ \\\"name\\\": ["
                       " \\\"Can't be blank\\\" ]}\"}");

  /* the old NameVideo redelivered after the newer one's event: nothing */
  replay_adds_nothing(components_ini("video-nodet.ini", "deterministic_ids = false\n",
                                     "system_sender_email_address = no-reply@example.com\n"), 0);
  /* a newer one still names it */
  snprintf(data, sizeof data, "{\"name\": \"Third name\", \"videoId\": \"%s\"}", video);
  video_command("NameVideo", video, data, "t-name-4");
  start_host(&h, &db, CONFIG "video-publishing.ini", "video2.log");
  assert_int_equal(wait_type(&db, "VideoNamed", 3), 3);
  stop_cleanly(&h);
  snprintf(sql, sizeof sql, "SELECT data->>'name' FROM message_store.messages"
           " WHERE stream_name = '%s' ORDER BY position DESC LIMIT 1", stream);
  assert_sql_text(sql, "Third name");
}

/* ---- bad input ---- */

typedef struct bad_case {
  const char *stream_prefix;   /* command category + '-' */
  const char *type;
  const char *data;            /* JSON; %s is the id */
  const char *event_prefix;    /* where the rejection goes */
  const char *event;
  const char *reason;
} bad_case;

/* tmpl with its "%s" (if any) replaced by id */
static void subst(const char *tmpl, const char *id, char *out, size_t size)
{
  const char *at = strstr(tmpl, "%s");

  if (at)
    snprintf(out, size, "%.*s%s%s", (int)(at - tmpl), tmpl, id, at + 2);
  else
    snprintf(out, size, "%s", tmpl);
}

/* Commands that break the contract are rejected through it, and the
 * subscriptions go on. */
static void test_bad_input_is_rejected(void **state)
{
  static const bad_case cases[] = {
    { "identity:command-", "Register", "{\"userId\": \"%s\", \"passwordHash\": \"x\"}",
      "identity-", "RegistrationRejected", "email is missing" },
    { "identity:command-", "Register", "{\"userId\": 42, \"email\": \"a@example.com\","
      " \"passwordHash\": \"x\"}", "identity-", "RegistrationRejected",
      "userId must be a non-empty string" },
    { "identity:command-", "Register", "[\"%s\"]", "identity-", "RegistrationRejected",
      "data must be an object" },
    { "videoPublishing:command-", "PublishVideo", "{\"ownerId\": \"o\", \"videoId\": \"%s\"}",
      "videoPublishing-", "VideoPublishingFailed", "sourceUri is missing" },
    { "videoPublishing:command-", "PublishVideo", "{\"ownerId\": \"o\", \"sourceUri\": \"s\","
      " \"videoId\": 7}", "videoPublishing-", "VideoPublishingFailed",
      "videoId must be a non-empty string" },
    { "videoPublishing:command-", "PublishVideo", "\"%s\"", "videoPublishing-",
      "VideoPublishingFailed", "data must be an object" },
    { "videoPublishing:command-", "NameVideo", "{\"videoId\": \"%s\"}", "videoPublishing-",
      "VideoNameRejected", "ValidationError**{ \"name\": [ \"Can't be blank\" ]}" },
    { "videoPublishing:command-", "NameVideo", "{\"name\": 42, \"videoId\": \"%s\"}",
      "videoPublishing-", "VideoNameRejected",
      "ValidationError**{ \"name\": [ \"Must be a string\" ]}" },
    { "videoPublishing:command-", "NameVideo", "17", "videoPublishing-", "VideoNameRejected",
      "ValidationError**{ \"data\": [ \"Must be an object\" ]}" },
    { "sendEmail:command-", "Send", "{\"emailId\": \"%s\", \"subject\": \"s\", \"text\": \"t\"}",
      "sendEmail-", "Failed", "to is missing" },
    { "sendEmail:command-", "Send", "{\"emailId\": \"%s\", \"to\": \"a@example.com\","
      " \"subject\": 5, \"text\": \"t\"}", "sendEmail-", "Failed", "subject must be a string" },
    { "sendEmail:command-", "Send", "null", "sendEmail-", "Failed", "data must be an object" },
    { "sendEmail:command-", "Send", "{\"emailId\": \"%s\", \"to\": \"not an address\","
      " \"subject\": \"s\", \"text\": \"t\"}", "sendEmail-", "Failed",
      "'not an address' is not an email address" },
  };
  char ids[sizeof cases / sizeof cases[0]][37];
  char user[37], video[37], email_id[37], data[400];
  ch_e2e_host h;
  (void)state;

  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char stream[100];
    new_uuid(ids[i]);
    snprintf(stream, sizeof stream, "%s%s", cases[i].stream_prefix, ids[i]);
    subst(cases[i].data, ids[i], data, sizeof data);
    write_msg(stream, cases[i].type, data, "{\"traceId\": \"t-bad\"}");
  }
  /* good commands behind them */
  new_uuid(user);
  new_uuid(video);
  new_uuid(email_id);
  register_user(&db, user, "good@example.com", "t-good");
  snprintf(data, sizeof data, "{\"ownerId\": \"o\", \"sourceUri\": \"s\", \"videoId\": \"%s\"}",
           video);
  video_command("PublishVideo", video, data, "t-good");
  snprintf(data, sizeof data, "{\"name\": \"Good\", \"videoId\": \"%s\"}", video);
  video_command("NameVideo", video, data, "t-good");
  send_command(email_id, "good@example.com", "t-good");

  start_host(&h, &db, CONFIG "video-tutorials.ini", "bad.log");
  assert_int_equal(wait_type(&db, "RegistrationEmailSent", 1), 1);
  assert_int_equal(wait_type(&db, "VideoNamed", 1), 1);
  assert_int_equal(wait_type(&db, "Sent", 2), 2);
  ch_e2e_sleep_ms(300);
  assert_true(ch_e2e_process_alive(h.pid));
  stop_cleanly(&h);
  assert_false(ch_e2e_log_contains(&h, "subscription stopped"));
  assert_int_equal(count_type("VideoPublished"), 1);

  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char sql[600], *reason;
    snprintf(sql, sizeof sql, "SELECT data->>'reason' FROM message_store.messages"
             " WHERE stream_name = '%s%s' AND type = '%s'", cases[i].event_prefix, ids[i],
             cases[i].event);
    reason = sql_text(db.store_url, sql);
    if (!reason || strcmp(reason, cases[i].reason) != 0) {
      print_error("case %zu (%s %s): reason '%s', want '%s'\n", i, cases[i].type, cases[i].data,
                  reason ? reason : "(no event)", cases[i].reason);
      free(reason);
      fail();
    }
    free(reason);
  }
  /* RegistrationRejected names the user of the stream */
  assert_int_equal(count_where(&db, "type = 'RegistrationRejected'"
                                    " AND stream_name = 'identity-' || (data->>'userId')"), 3);
  /* VideoPublishingFailed names the video */
  assert_int_equal(count_where(&db, "type = 'VideoPublishingFailed'"
                                    " AND stream_name = 'videoPublishing-' || (data->>'videoId')"),
                   3);
  assert_int_equal(count_where(&db, "type IN ('RegistrationRejected', 'VideoPublishingFailed',"
                                    " 'VideoNameRejected', 'Failed')"), 13);

  /* rejected commands delivered again are not rejected twice */
  replay_adds_nothing(components_ini("bad-nodet.ini", "deterministic_ids = false\n",
                                     "system_sender_email_address = no-reply@example.com\n"), 2);
}

/* ---- hostile input ---- */

/* printf into a new string. */
static char *str_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *str_printf(const char *fmt, ...)
{
  va_list ap;
  int n;
  char *s;

  va_start(ap, fmt);
  n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  assert_true(n >= 0);
  assert_non_null(s = malloc((size_t)n + 1));
  va_start(ap, fmt);
  vsnprintf(s, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return s;
}

/* JSON nested `depth` objects deep around `inner`. */
static char *nested(int depth, const char *inner)
{
  size_t len = strlen(inner) + (size_t)depth * 7 + 1;
  char *s = malloc(len), *p;

  assert_non_null(s);
  p = s;
  for (int i = 0; i < depth; i++)
    p += sprintf(p, "{\"a\":");
  p += sprintf(p, "%s", inner);
  for (int i = 0; i < depth; i++)
    *p++ = '}';
  *p = '\0';
  return s;
}

/* The UUID v5 a component answers an over-long id with (plugins/common/checks.h). */
#define LONG_ID_NS "5b0e2d1c-8f3a-5e47-9c61-2a7d4e8b0f13"

typedef struct hostile {
  const char *command_prefix;   /* the command's stream: prefix + stream_id */
  char *stream_id;
  const char *type;
  char *data;                   /* JSON */
  const char *event_prefix;     /* the rejection's stream: prefix + answer */
  char answer[300];
  const char *event;
  char *reason;                 /* the rejection's data.reason */
  const char *id_field;         /* the data field naming the entity, or NULL */
} hostile;

/* Commands a hostile client may write, each answered with the contract's
 * rejection, in the stream of a usable id: over-long ids (in the data, in
 * the stream name too), wrong JSON types, data that is no object, deep
 * nesting. The subscriptions go on: good commands behind them are handled. */
static void test_hostile_commands_are_rejected(void **state)
{
  hostile c[40];
  size_t n = 0;
  char *big = ch_e2e_long_id(3000, 1), *mega = ch_e2e_long_id(1 << 20, 2);
  char *kilo = ch_e2e_long_id(1000, 3), *kilo2 = ch_e2e_long_id(1000, 4);
  char *kilo3 = ch_e2e_long_id(1000, 5), *deep = nested(500, "\"x\"");
  char user[37], video[37], email_id[37], data[400];
  ch_e2e_host h;
  (void)state;

#define CASE(cp, sid, ty, dat, ep, ev, rsn, idf)                                         \
  do {                                                                                   \
    c[n].command_prefix = (cp);                                                          \
    c[n].stream_id = (sid);                                                              \
    c[n].type = (ty);                                                                    \
    c[n].data = (dat);                                                                   \
    c[n].event_prefix = (ep);                                                            \
    snprintf(c[n].answer, sizeof c[n].answer, "%s", c[n].stream_id);                     \
    c[n].event = (ev);                                                                   \
    c[n].reason = (rsn);                                                                 \
    c[n].id_field = (idf);                                                               \
    n++;                                                                                 \
  } while (0)
#define NEW_ID() (new_uuid(user), strdup(user))

  /* identity */
  CASE("identity:command-", NEW_ID(), "Register",
       str_printf("{\"userId\": \"%s\", \"email\": \"a@example.com\", \"passwordHash\": \"h\"}",
                  big),
       "identity-", "RegistrationRejected",
       strdup("userId is too long (3000 bytes, at most 255)"), "userId");
  CASE("identity:command-", strdup(kilo), "Register",
       str_printf("{\"userId\": \"%s\", \"email\": \"a@example.com\", \"passwordHash\": \"h\"}",
                  kilo),
       "identity-", "RegistrationRejected",
       strdup("userId is too long (1000 bytes, at most 255)"), "userId");
  assert_int_equal(chd_uuid_v5(LONG_ID_NS, kilo, c[n - 1].answer), 0);
  CASE("identity:command-", NEW_ID(), "Register",
       str_printf("{\"userId\": \"%s\", \"email\": \"%.300s\", \"passwordHash\": \"h\"}", user,
                  big),
       "identity-", "RegistrationRejected",
       strdup("email is too long (300 bytes, at most 254)"), "userId");
  CASE("identity:command-", NEW_ID(), "Register", strdup("42"), "identity-",
       "RegistrationRejected", strdup("data must be an object"), "userId");
  CASE("identity:command-", NEW_ID(), "Register", strdup("\"a string\""), "identity-",
       "RegistrationRejected", strdup("data must be an object"), "userId");
  CASE("identity:command-", NEW_ID(), "Register",
       str_printf("{\"userId\": %s, \"email\": \"a@example.com\", \"passwordHash\": \"h\"}",
                  deep),
       "identity-", "RegistrationRejected", strdup("userId must be a non-empty string"),
       "userId");
  CASE("identity:command-", NEW_ID(), "Register",
       str_printf("{\"userId\": \"%s\", \"email\": [\"a@example.com\"], \"passwordHash\": \"h\"}",
                  user),
       "identity-", "RegistrationRejected", strdup("email must be a non-empty string"),
       "userId");
  CASE("identity:command-", NEW_ID(), "Register",
       str_printf("{\"userId\": \"\", \"email\": \"a@example.com\", \"passwordHash\": 1.5}"),
       "identity-", "RegistrationRejected", strdup("userId must be a non-empty string"),
       "userId");

  /* send-email */
  CASE("sendEmail:command-", NEW_ID(), "Send",
       str_printf("{\"emailId\": \"%s\", \"to\": \"a@example.com\", \"subject\": \"s\","
                  " \"text\": \"t\"}", mega),
       "sendEmail-", "Failed", strdup("emailId is too long (1048576 bytes, at most 255)"),
       "emailId");
  CASE("sendEmail:command-", strdup(kilo2), "Send",
       str_printf("{\"emailId\": \"%s\", \"to\": \"a@example.com\", \"subject\": \"s\","
                  " \"text\": \"t\"}", kilo2),
       "sendEmail-", "Failed", strdup("emailId is too long (1000 bytes, at most 255)"),
       "emailId");
  assert_int_equal(chd_uuid_v5(LONG_ID_NS, kilo2, c[n - 1].answer), 0);
  CASE("sendEmail:command-", NEW_ID(), "Send", strdup("[1, 2, 3]"), "sendEmail-", "Failed",
       strdup("data must be an object"), "emailId");
  CASE("sendEmail:command-", NEW_ID(), "Send",
       str_printf("{\"emailId\": \"%s\", \"to\": \"a@example.com\", \"subject\": \"s\","
                  " \"text\": %s}", user, deep),
       "sendEmail-", "Failed", strdup("text must be a string"), "emailId");
  CASE("sendEmail:command-", NEW_ID(), "Send",
       str_printf("{\"emailId\": {\"id\": \"%s\"}, \"to\": \"a@example.com\","
                  " \"subject\": \"s\", \"text\": \"t\"}", user),
       "sendEmail-", "Failed", strdup("emailId must be a non-empty string"), "emailId");

  /* video-publishing */
  CASE("videoPublishing:command-", NEW_ID(), "PublishVideo",
       str_printf("{\"ownerId\": \"o\", \"sourceUri\": \"s\", \"videoId\": \"%s\"}", mega),
       "videoPublishing-", "VideoPublishingFailed",
       strdup("videoId is too long (1048576 bytes, at most 255)"), "videoId");
  CASE("videoPublishing:command-", NEW_ID(), "PublishVideo",
       str_printf("{\"ownerId\": \"%.300s\", \"sourceUri\": \"s\", \"videoId\": \"%s\"}", big,
                  user),
       "videoPublishing-", "VideoPublishingFailed",
       strdup("ownerId is too long (300 bytes, at most 255)"), "videoId");
  CASE("videoPublishing:command-", strdup(kilo3), "PublishVideo",
       str_printf("{\"ownerId\": \"o\", \"sourceUri\": \"s\", \"videoId\": \"%s\"}", kilo3),
       "videoPublishing-", "VideoPublishingFailed",
       strdup("videoId is too long (1000 bytes, at most 255)"), "videoId");
  assert_int_equal(chd_uuid_v5(LONG_ID_NS, kilo3, c[n - 1].answer), 0);
  CASE("videoPublishing:command-", NEW_ID(), "PublishVideo", strdup("[]"),
       "videoPublishing-", "VideoPublishingFailed", strdup("data must be an object"),
       "videoId");
  CASE("videoPublishing:command-", NEW_ID(), "PublishVideo",
       str_printf("{\"ownerId\": true, \"sourceUri\": \"s\", \"videoId\": \"%s\"}", user),
       "videoPublishing-", "VideoPublishingFailed", strdup("ownerId must be a non-empty string"),
       "videoId");
  CASE("videoPublishing:command-", NEW_ID(), "NameVideo",
       str_printf("{\"name\": \"n\", \"videoId\": \"%s\"}", mega), "videoPublishing-",
       "VideoNameRejected",
       strdup("ValidationError**{ \"videoId\": [ \"Is too long (maximum is 255 bytes)\" ]}"),
       NULL);
  CASE("videoPublishing:command-", strdup(big + 1000), "NameVideo",
       str_printf("{\"name\": \"n\", \"videoId\": \"%s\"}", big + 1000), "videoPublishing-",
       "VideoNameRejected",
       strdup("ValidationError**{ \"videoId\": [ \"Is too long (maximum is 255 bytes)\" ]}"),
       NULL);
  assert_int_equal(chd_uuid_v5(LONG_ID_NS, big + 1000, c[n - 1].answer), 0);
  CASE("videoPublishing:command-", NEW_ID(), "NameVideo",
       str_printf("{\"name\": %s, \"videoId\": \"%s\"}", deep, user), "videoPublishing-",
       "VideoNameRejected", strdup("ValidationError**{ \"name\": [ \"Must be a string\" ]}"),
       NULL);
  CASE("videoPublishing:command-", NEW_ID(), "NameVideo", strdup("\"name\""),
       "videoPublishing-", "VideoNameRejected",
       strdup("ValidationError**{ \"data\": [ \"Must be an object\" ]}"), NULL);
#undef CASE
#undef NEW_ID

  for (size_t i = 0; i < n; i++) {
    char *stream = str_printf("%s%s", c[i].command_prefix, c[i].stream_id);
    write_msg(stream, c[i].type, c[i].data, "{\"traceId\": \"t-hostile\"}");
    free(stream);
  }
  /* good commands behind them */
  new_uuid(user);
  new_uuid(video);
  new_uuid(email_id);
  register_user(&db, user, "good@example.com", "t-good");
  snprintf(data, sizeof data, "{\"ownerId\": \"o\", \"sourceUri\": \"s\", \"videoId\": \"%s\"}",
           video);
  video_command("PublishVideo", video, data, "t-good");
  snprintf(data, sizeof data, "{\"name\": \"Good\", \"videoId\": \"%s\"}", video);
  video_command("NameVideo", video, data, "t-good");
  send_command(email_id, "good@example.com", "t-good");

  start_host(&h, &db, CONFIG "video-tutorials.ini", "hostile.log");
  assert_int_equal(wait_type(&db, "RegistrationEmailSent", 1), 1);
  assert_int_equal(wait_type(&db, "VideoNamed", 1), 1);
  assert_int_equal(wait_type(&db, "Sent", 2), 2);
  assert_int_equal(count_type("VideoPublished"), 1);
  ch_e2e_sleep_ms(300);
  assert_true(ch_e2e_process_alive(h.pid));
  stop_cleanly(&h);
  assert_false(ch_e2e_log_contains(&h, "subscription stopped"));

  for (size_t i = 0; i < n; i++) {
    char *sql = str_printf("SELECT concat(data->>'reason', '|', %s%s%s)"
                           " FROM message_store.messages WHERE stream_name = '%s%s'"
                           " AND type = '%s'",
                           c[i].id_field ? "data->>'" : "''", c[i].id_field ? c[i].id_field : "",
                           c[i].id_field ? "'" : "", c[i].event_prefix, c[i].answer,
                           c[i].event);
    char *want = str_printf("%s|%s", c[i].reason, c[i].id_field ? c[i].answer : "");
    char *got = sql_text(db.store_url, sql);

    if (!got || strcmp(got, want) != 0) {
      print_error("case %zu (%s in %s%.40s): got '%s', want '%s'\n", i, c[i].type,
                  c[i].command_prefix, c[i].stream_id, got ? got : "(no event)", want);
      fail();
    }
    free(got);
    free(want);
    free(sql);
  }
  assert_int_equal(count_where(&db, "type IN ('RegistrationRejected', 'VideoPublishingFailed',"
                                    " 'VideoNameRejected', 'Failed')"), (int64_t)n);
  /* nothing was sent for them, and no id longer than 255 bytes named a stream */
  assert_int_equal(eml_files(&db, NULL), 2);
  assert_int_equal(count_where(&db, "length(stream_name) > 300"
                                    " AND stream_name NOT LIKE '%:command-%'"), 0);

  /* delivered again, they are not rejected twice */
  replay_adds_nothing(components_ini("hostile-nodet.ini", "deterministic_ids = false\n",
                                     "system_sender_email_address = no-reply@example.com\n"), 2);
  for (size_t i = 0; i < n; i++) {
    free(c[i].stream_id);
    free(c[i].data);
    free(c[i].reason);
  }
  free(big);
  free(mega);
  free(kilo);
  free(kilo2);
  free(kilo3);
  free(deep);
}

/* Events a component reads that are not what they claim: identity skips a
 * Registered whose userId is too long and a Sent whose origin names no
 * usable identity, writes nothing for them, and goes on. */
static void test_hostile_events_are_skipped(void **state)
{
  char *big = ch_e2e_long_id(3000, 7), *data, *meta, user[37], other[37];
  ch_e2e_host h;
  (void)state;

  new_uuid(other);
  data = str_printf("{\"userId\": \"%s\", \"email\": \"x@example.com\", \"passwordHash\": \"h\"}",
                    big);
  write_msg("identity-" "00000000-0000-4000-8000-000000000001", "Registered", data, NULL);
  free(data);
  write_msg("identity-00000000-0000-4000-8000-000000000002", "Registered", "[\"userId\"]", NULL);
  meta = str_printf("{\"originStreamName\": \"identity-%.2000s\"}", big);
  write_msg("sendEmail-00000000-0000-4000-8000-000000000003", "Sent",
            "{\"emailId\": \"00000000-0000-4000-8000-000000000003\"}", meta);
  free(meta);
  write_msg("sendEmail-00000000-0000-4000-8000-000000000004", "Sent", "{\"emailId\": 4}",
            "{\"originStreamName\": \"identity-00000000-0000-4000-8000-000000000004\"}");
  new_uuid(user);
  register_user(&db, user, "good@example.com", "t-good");

  start_host(&h, &db, CONFIG "video-tutorials.ini", "events.log");
  assert_int_equal(wait_type(&db, "RegistrationEmailSent", 1), 1);
  ch_e2e_sleep_ms(300);
  stop_cleanly(&h);
  assert_false(ch_e2e_log_contains(&h, "subscription stopped"));
  /* only the good user's Send, nothing on the bad identities */
  assert_int_equal(count_type("Send"), 1);
  assert_int_equal(count_where(&db, "stream_name LIKE 'identity-00000000-%'"
                                    " AND type <> 'Registered'"), 0);
  assert_true(ch_e2e_log_contains(&h, "Registered without a usable userId"));
  assert_true(ch_e2e_log_contains(&h, "Sent with an origin that names no usable identity"));
  assert_true(ch_e2e_log_contains(&h, "Sent without a usable emailId"));
  free(big);
}

/* The pickup directory: created 0750 with files 0640; by default in
 * $STATE_DIRECTORY; refused when another user owns it. */
static void test_pickup_directory_is_private(void **state)
{
  char dir[400], path[800], email_id[37];
  const char *ini;
  struct stat st;
  ch_e2e_host h;
  int status;
  mode_t old = umask(022);
  (void)state;

  /* no email_directory, no EMAIL_DIRECTORY: $STATE_DIRECTORY/email */
  ini = ch_e2e_write_ini(&db, "pickup.ini", "[send-email]\nlibrary = " PLUGINS "/send-email.so\n"
                         "system_sender_email_address = no-reply@example.com\n");
  snprintf(dir, sizeof dir, "%s/state", db.dir);
  env_state_dir = dir;
  new_uuid(email_id);
  send_command(email_id, "good@example.com", "t-pickup");
  start_host(&h, &db, ini, "pickup.log");
  assert_int_equal(wait_type(&db, "Sent", 1), 1);
  stop_cleanly(&h);
  snprintf(path, sizeof path, "%s/state/email", db.dir);
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0750);
  assert_true(ch_e2e_log_contains(&h, path));
  {
    DIR *dp = opendir(path);
    struct dirent *e;
    int files = 0;

    assert_non_null(dp);
    while ((e = readdir(dp))) {
      char file[1200];
      if (e->d_name[0] == '.')
        continue;
      snprintf(file, sizeof file, "%s/%s", path, e->d_name);
      assert_int_equal(stat(file, &st), 0);
      assert_int_equal(st.st_mode & 0777, 0640);
      files++;
    }
    closedir(dp);
    assert_int_equal(files, 1);
  }

  /* a directory of another user: init fails and says why */
  snprintf(path, sizeof path, "%s/theirs", db.dir);
  assert_int_equal(mkdir(path, 0755), 0);
  if (geteuid() == 0) {
    assert_int_equal(chown(path, 65534, 65534), 0);
  } else {
    snprintf(path, sizeof path, "/");   /* root's */
  }
  env_state_dir = NULL;
  env_email_dir = path;
  start_host(&h, &db, ini, "theirs.log");
  status = ch_e2e_host_wait(&h, WAIT);
  env_email_dir = NULL;
  assert_true(status != -1 && WIFEXITED(status));
  assert_int_not_equal(WEXITSTATUS(status), 0);
  assert_true(ch_e2e_log_contains(&h, "belongs to uid"));
  assert_true(ch_e2e_log_contains(&h, "not to the user comphost runs as"));
  umask(old);
}

/* ---- the whole system, together and apart ---- */

/* Write the same commands to a store. */
static void write_scenario(const ch_e2e_db *d, const char *const ids[4])
{
  char stream[100], data[400];

  register_user(d, ids[0], "together@example.com", "t-s1");
  register_user(d, ids[1], "apart@example.com", "t-s2");
  snprintf(stream, sizeof stream, "identity:command-%s", ids[2]);
  write_msg_to(d, stream, "Register", "{\"userId\": true}", "{\"traceId\": \"t-s3\"}");
  snprintf(stream, sizeof stream, "videoPublishing:command-%s", ids[3]);
  snprintf(data, sizeof data, "{\"ownerId\": \"o\", \"sourceUri\": \"s\", \"videoId\": \"%s\"}",
           ids[3]);
  write_msg_to(d, stream, "PublishVideo", data, "{\"traceId\": \"t-s4\"}");
  snprintf(data, sizeof data, "{\"name\": \"A\", \"videoId\": \"%s\"}", ids[3]);
  write_msg_to(d, stream, "NameVideo", data, "{\"traceId\": \"t-s5\"}");
  snprintf(data, sizeof data, "{\"name\": \" \", \"videoId\": \"%s\"}", ids[3]);
  write_msg_to(d, stream, "NameVideo", data, "{\"traceId\": \"t-s6\"}");
}

static void wait_scenario(const ch_e2e_db *d)
{
  assert_int_equal(wait_type(d, "RegistrationEmailSent", 2), 2);
  assert_int_equal(wait_type(d, "VideoNameRejected", 1), 1);
  assert_int_equal(wait_type(d, "VideoNamed", 1), 1);
  assert_int_equal(wait_type(d, "RegistrationRejected", 1), 1);
  ch_e2e_sleep_ms(300);
}

/* Everything but positions, with the metadata the book defines. */
static char *fingerprint(const ch_e2e_db *d)
{
  return sql_text(d->store_url,
                  "SELECT string_agg(concat_ws(' ', stream_name, position, type, data::text,"
                  " metadata->>'traceId', metadata->>'userId', metadata->>'originStreamName'),"
                  " E'\\n' ORDER BY stream_name, position) FROM message_store.messages"
                  " WHERE message_store.category(stream_name) <> 'subscriberPosition'");
}

static void test_together_and_apart_give_the_same_results(void **state)
{
  static const char *const apart[] = { "identity.ini", "send-email.ini", "video-publishing.ini" };
  char id_buf[4][37];
  const char *ids[4] = { id_buf[0], id_buf[1], id_buf[2], id_buf[3] };
  ch_e2e_db db2;
  ch_e2e_host together, hosts[3];
  char *a, *b;
  (void)state;

  for (int i = 0; i < 4; i++)
    new_uuid(id_buf[i]);
  ch_e2e_db_create(&db2);

  write_scenario(&db, ids);
  start_host(&together, &db, CONFIG "video-tutorials.ini", "together.log");
  wait_scenario(&db);
  stop_cleanly(&together);

  write_scenario(&db2, ids);
  for (int i = 0; i < 3; i++) {
    char path[400], log[40];
    snprintf(path, sizeof path, CONFIG "%s", apart[i]);
    snprintf(log, sizeof log, "apart%d.log", i);
    start_host(&hosts[i], &db2, path, log);
  }
  wait_scenario(&db2);
  for (int i = 0; i < 3; i++)
    stop_cleanly(&hosts[i]);

  a = fingerprint(&db);
  b = fingerprint(&db2);
  assert_non_null(a);
  assert_non_null(b);
  if (strcmp(a, b) != 0) {
    print_error("together:\n%s\napart:\n%s\n", a, b);
    fail();
  }
  assert_int_equal(domain_messages(&db), 18);
  /* the book's emailId: uuid v5 of the address (value from another implementation) */
  assert_int_equal(count_where(&db, "type = 'Send' AND stream_name ="
                                    " 'sendEmail:command-4850bb5e-621b-59d1-97c7-ec5955127a34'"
                                    " AND data->>'to' = 'together@example.com'"), 1);
  assert_int_equal(eml_files(&db, NULL), 2);
  assert_int_equal(eml_files(&db2, NULL), 2);
  free(a);
  free(b);
  ch_e2e_db_drop(&db2);
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_config_files_are_valid, setup, teardown),
    cmocka_unit_test_setup_teardown(test_registration_end_to_end, setup, teardown),
    cmocka_unit_test_setup_teardown(test_registration_email_from_templates, setup, teardown),
    cmocka_unit_test_setup_teardown(test_bad_settings_refused, setup, teardown),
    cmocka_unit_test_setup_teardown(test_bad_input_is_rejected, setup, teardown),
    cmocka_unit_test_setup_teardown(test_hostile_commands_are_rejected, setup, teardown),
    cmocka_unit_test_setup_teardown(test_hostile_events_are_skipped, setup, teardown),
    cmocka_unit_test_setup_teardown(test_pickup_directory_is_private, setup, teardown),
    cmocka_unit_test_setup_teardown(test_video_publishing, setup, teardown),
    cmocka_unit_test_setup_teardown(test_smtp_failure_writes_failed, setup, teardown),
    cmocka_unit_test_setup_teardown(test_smtp_delivers, setup, teardown),
    cmocka_unit_test_setup_teardown(test_together_and_apart_give_the_same_results, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_two_hosts_race_on_register, setup, teardown),
    cmocka_unit_test_setup_teardown(test_kill9_during_200_registrations, setup, teardown),
  };
  if (argc > 1)
    cmocka_set_test_filter(argv[1]);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
