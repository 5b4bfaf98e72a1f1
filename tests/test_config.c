/* test_config.c - the INI configuration: values, defaults, overrides, errors. */
#include "support.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "host_api.h"
#include "log.h"

/* The first lines of most files: a [host] with a message store. */
#define STORE "[host]\nmessage_store = ms\n"

static char tmp[256];        /* this test's directory */
static char path[512];       /* the file written last */
static char err[1024];
static chd_config cfg;
static int cwd = -1;         /* the directory to return to */

static void unset_env(void)
{
  unsetenv("MESSAGE_STORE_CONNECTION_STRING");
  unsetenv("DATABASE_URL");
  unsetenv("COMPHOST_PLUGIN_DIR");
  unsetenv("COMPHOST_FX_API_TOKEN");
  unsetenv("COMPHOST_FX_2_API_TOKEN");
}

static int setup(void **state)
{
  const char *base = getenv("TMPDIR");
  (void)state;

  unset_env();
  memset(&cfg, 0, sizeof cfg);
  err[0] = '\0';
  snprintf(tmp, sizeof tmp, "%s/comphost-config-XXXXXX", base && *base ? base : "/tmp");
  if (!mkdtemp(tmp))
    return -1;
  cwd = open(".", O_RDONLY | O_DIRECTORY);
  return cwd < 0 ? -1 : 0;
}

static int remove_entry(const char *name, const struct stat *st, int flag, struct FTW *ftw)
{
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(name);
}

static int teardown(void **state)
{
  int rc = 0;
  (void)state;

  chd_config_release(&cfg);
  if (cwd >= 0) {
    if (fchdir(cwd) != 0)
      rc = -1;
    close(cwd);
    cwd = -1;
  }
  unset_env();
  if (nftw(tmp, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
    rc = -1;
  return rc;
}

/* Write text to <tmp>/<name> (name may have one directory) and return its
 * path, which stays valid until the next write_file(). */
static const char *write_file(const char *name, const char *text)
{
  const char *slash = strchr(name, '/');
  FILE *f;

  if (slash) {
    snprintf(path, sizeof path, "%s/%.*s", tmp, (int)(slash - name), name);
    assert_true(mkdir(path, 0700) == 0 || errno == EEXIST);
  }
  snprintf(path, sizeof path, "%s/%s", tmp, name);
  f = fopen(path, "w");
  assert_non_null(f);
  assert_int_equal(fputs(text, f) >= 0, 1);
  assert_int_equal(fclose(f), 0);
  return path;
}

static void expect_loaded(int rc)
{
  if (rc != 0) {
    print_error("chd_config_load: %s\n", err);
    fail();
  }
}

/* Load `text` from <tmp>/host.ini; it must load. */
static void load_ok(const char *text)
{
  chd_config_release(&cfg);
  expect_loaded(chd_config_load(&cfg, write_file("host.ini", text), NULL, err, sizeof err));
}

static void assert_released(void)
{
  assert_null(cfg.path);
  assert_null(cfg.instances);
  assert_int_equal(cfg.instance_count, 0);
  assert_null(cfg.message_store);
  assert_null(cfg.plugin_dir);
}

/* Load `text` from <tmp>/host.ini; it must fail with "<path><error>". */
static void load_fails(const char *text, const char *error)
{
  char want[1024];

  chd_config_release(&cfg);
  write_file("host.ini", text);
  assert_int_equal(chd_config_load(&cfg, path, NULL, err, sizeof err), -1);
  snprintf(want, sizeof want, "%s%s", path, error);
  assert_string_equal(err, want);
  assert_released();
}

/* tmp + suffix, in buf. */
static const char *in_tmp(char *buf, size_t size, const char *suffix)
{
  snprintf(buf, size, "%s%s", tmp, suffix);
  return buf;
}

static void test_full_file(void **state)
{
  const chd_instance_config *a, *b;
  char want[600];
  (void)state;

  load_ok("[host]\n"
          "message_store = postgresql://ms@db/message_store\n"
          "view_data = postgresql://vd@db/view_data\n"
          "plugin_dir = plugins\n"
          "log_level = debug\n"
          "shutdown_timeout_ms = 1500\n"
          "restart_backoff_max_ms = 9000\n"
          "max_crash_restarts = 7\n"
          "\n"
          "[home-page]\n"                                /* 10 */
          "library = libs/home-page-v2.so\n"
          "batch_size = 250\n"
          "poll_interval_ms = 50\n"
          "position_update_interval = 10\n"
          "group_member = 2\n"                           /* 15 */
          "group_size = 3\n"
          "position_store = view_data\n"
          "position_format = eventide\n"
          "max_retries = 0\n"
          "retry_backoff_ms = 1000\n"                    /* 20 */
          "batch_transaction = off\n"
          "store_transaction = yes\n"
          "deterministic_ids = false\n"
          "greeting = hello world\n"
          "count = 42\n"                                 /* 25 */
          "empty =\n"
          "\n"
          "[other]\n"
          "library = other\n");

  assert_string_equal(cfg.path, path);
  assert_string_equal(cfg.message_store, "postgresql://ms@db/message_store");
  assert_string_equal(cfg.view_data, "postgresql://vd@db/view_data");
  assert_string_equal(cfg.plugin_dir, in_tmp(want, sizeof want, "/plugins"));
  assert_int_equal(cfg.log_level, CH_LOG_DEBUG);
  assert_int_equal(cfg.shutdown_timeout_ms, 1500);
  assert_int_equal(cfg.restart_backoff_max_ms, 9000);
  assert_int_equal(cfg.max_crash_restarts, 7);
  assert_int_equal(cfg.instance_count, 2);

  a = &cfg.instances[0];
  assert_string_equal(a->name, "home-page");
  assert_int_equal(a->line, 10);
  assert_string_equal(a->library, in_tmp(want, sizeof want, "/libs/home-page-v2.so"));
  assert_int_equal(a->library_line, 11);
  assert_int_equal(a->batch_size, 250);
  assert_int_equal(a->poll_interval_ms, 50);
  assert_int_equal(a->position_update_interval, 10);
  assert_int_equal(a->group_member, 2);
  assert_int_equal(a->group_size, 3);
  assert_int_equal(a->position_store, CHD_POSITION_VIEW_DATA);
  assert_int_equal(a->position_format, CHD_POSITION_FORMAT_EVENTIDE);
  assert_int_equal(a->max_retries, 0);
  assert_int_equal(a->retry_backoff_ms, 1000);
  assert_false(a->batch_transaction);   /* explicit, despite view_data */
  assert_true(a->store_transaction);
  assert_false(a->deterministic_ids);
  assert_int_equal(a->plugin_key_count, 3);
  assert_string_equal(a->plugin_keys[0].key, "greeting");
  assert_string_equal(a->plugin_keys[0].value, "hello world");
  assert_int_equal(a->plugin_keys[0].line, 24);
  assert_string_equal(a->plugin_keys[1].key, "count");
  assert_string_equal(a->plugin_keys[1].value, "42");
  assert_int_equal(a->plugin_keys[1].line, 25);
  assert_string_equal(a->plugin_keys[2].key, "empty");
  assert_string_equal(a->plugin_keys[2].value, "");
  assert_int_equal(a->plugin_keys[2].line, 26);

  b = &cfg.instances[1];
  assert_string_equal(b->name, "other");
  assert_int_equal(b->line, 28);
  assert_string_equal(b->library, in_tmp(want, sizeof want, "/plugins/other.so"));
  assert_int_equal(b->library_line, 29);
  assert_int_equal(b->batch_size, 100);
  assert_int_equal(b->plugin_key_count, 0);
}

static void test_defaults(void **state)
{
  const chd_instance_config *a;
  (void)state;

  load_ok(STORE "[home-page]\n");
  assert_string_equal(cfg.message_store, "ms");
  assert_null(cfg.view_data);
  assert_string_equal(cfg.plugin_dir, COMPHOST_PLUGINDIR);
  assert_int_equal(cfg.log_level, CH_LOG_INFO);
  assert_int_equal(cfg.shutdown_timeout_ms, 30000);
  assert_int_equal(cfg.restart_backoff_max_ms, 60000);
  assert_int_equal(cfg.max_crash_restarts, 3);
  assert_int_equal(cfg.instance_count, 1);

  a = &cfg.instances[0];
  assert_string_equal(a->name, "home-page");
  assert_int_equal(a->line, 3);
  assert_string_equal(a->library, COMPHOST_PLUGINDIR "/home-page.so");
  assert_int_equal(a->library_line, 0);
  assert_int_equal(a->batch_size, 100);
  assert_int_equal(a->poll_interval_ms, 100);
  assert_int_equal(a->position_update_interval, 100);
  assert_int_equal(a->group_member, 0);
  assert_int_equal(a->group_size, 0);
  assert_int_equal(a->position_store, CHD_POSITION_MESSAGE_STORE);
  assert_int_equal(a->position_format, CHD_POSITION_FORMAT_BOOK);
  assert_int_equal(a->max_retries, 5);
  assert_int_equal(a->retry_backoff_ms, 200);
  assert_false(a->batch_transaction);
  assert_false(a->store_transaction);
  assert_true(a->deterministic_ids);
  assert_true(a->read_ahead);
  assert_int_equal(a->plugin_key_count, 0);
  assert_null(a->plugin_keys);

  /* an empty connection string is no connection string */
  load_ok("[host]\nmessage_store = ms\nview_data =\n[a]\n");
  assert_null(cfg.view_data);
}

static void test_batch_transaction_default(void **state)
{
  (void)state;

  load_ok("[host]\nmessage_store = ms\nview_data = vd\n"
          "[a]\nposition_store = view_data\n"
          "[b]\nposition_store = view_data\nbatch_transaction = false\n"
          "[c]\nbatch_transaction = true\n"
          "[d]\nposition_store = message_store\n");
  assert_true(cfg.instances[0].batch_transaction);
  assert_false(cfg.instances[1].batch_transaction);
  assert_true(cfg.instances[2].batch_transaction);
  assert_false(cfg.instances[3].batch_transaction);
}

static void test_env_overrides_connection_strings(void **state)
{
  (void)state;

  setenv("MESSAGE_STORE_CONNECTION_STRING", "env-ms", 1);
  setenv("DATABASE_URL", "env-vd", 1);
  load_ok("[host]\nmessage_store = file-ms\nview_data = file-vd\n[a]\n");
  assert_string_equal(cfg.message_store, "env-ms");
  assert_string_equal(cfg.view_data, "env-vd");

  /* the environment alone, without a [host] section */
  load_ok("[a]\n");
  assert_string_equal(cfg.message_store, "env-ms");
  assert_string_equal(cfg.view_data, "env-vd");

  /* an empty value in the file leaves it to the environment */
  load_ok("[host]\nmessage_store =\n[a]\n");
  assert_string_equal(cfg.message_store, "env-ms");

  /* a view database from the environment satisfies position_store */
  load_ok("[a]\nposition_store = view_data\n");
  assert_true(cfg.instances[0].batch_transaction);

  /* empty variables do not override */
  setenv("MESSAGE_STORE_CONNECTION_STRING", "", 1);
  setenv("DATABASE_URL", "", 1);
  load_ok("[host]\nmessage_store = file-ms\nview_data = file-vd\n[a]\n");
  assert_string_equal(cfg.message_store, "file-ms");
  assert_string_equal(cfg.view_data, "file-vd");
  load_fails("[host]\nmessage_store =\n[a]\n",
             ": no message store: set [host] message_store or MESSAGE_STORE_CONNECTION_STRING");
}

static void test_plugin_dir_precedence(void **state)
{
  const char *ini = "[host]\nmessage_store = ms\nplugin_dir = ../plugins\n"
                    "[a]\n[b]\nlibrary = ./lib/b.so\n[c]\nlibrary = /opt/comphost/c.so\n";
  char want[600];
  (void)state;

  /* [host] plugin_dir: relative to the file's directory, like library paths */
  write_file("conf/host.ini", ini);
  expect_loaded(chd_config_load(&cfg, path, NULL, err, sizeof err));
  assert_string_equal(cfg.plugin_dir, in_tmp(want, sizeof want, "/conf/../plugins"));
  assert_string_equal(cfg.instances[0].library,
                      in_tmp(want, sizeof want, "/conf/../plugins/a.so"));
  assert_string_equal(cfg.instances[1].library, in_tmp(want, sizeof want, "/conf/./lib/b.so"));
  assert_int_equal(cfg.instances[1].library_line, 6);
  assert_string_equal(cfg.instances[2].library, "/opt/comphost/c.so");
  chd_config_release(&cfg);

  /* COMPHOST_PLUGIN_DIR beats the file, and is kept as given */
  setenv("COMPHOST_PLUGIN_DIR", "env/plugins", 1);
  expect_loaded(chd_config_load(&cfg, path, NULL, err, sizeof err));
  assert_string_equal(cfg.plugin_dir, "env/plugins");
  assert_string_equal(cfg.instances[0].library, "env/plugins/a.so");
  assert_string_equal(cfg.instances[1].library, in_tmp(want, sizeof want, "/conf/./lib/b.so"));
  chd_config_release(&cfg);

  /* the argument beats both; an empty one is no argument */
  expect_loaded(chd_config_load(&cfg, path, "cli/plugins/", err, sizeof err));
  assert_string_equal(cfg.plugin_dir, "cli/plugins/");
  assert_string_equal(cfg.instances[0].library, "cli/plugins/a.so");
  chd_config_release(&cfg);
  expect_loaded(chd_config_load(&cfg, path, "", err, sizeof err));
  assert_string_equal(cfg.plugin_dir, "env/plugins");
  chd_config_release(&cfg);
  unsetenv("COMPHOST_PLUGIN_DIR");

  /* a relative path to the file: paths stay relative to where it is */
  assert_int_equal(chdir(tmp), 0);
  expect_loaded(chd_config_load(&cfg, "conf/host.ini", NULL, err, sizeof err));
  assert_string_equal(cfg.path, "conf/host.ini");
  assert_string_equal(cfg.plugin_dir, "conf/../plugins");
  assert_string_equal(cfg.instances[0].library, "conf/../plugins/a.so");
  assert_string_equal(cfg.instances[1].library, "conf/./lib/b.so");
  chd_config_release(&cfg);

  assert_int_equal(chdir("conf"), 0);
  expect_loaded(chd_config_load(&cfg, "host.ini", NULL, err, sizeof err));
  assert_string_equal(cfg.plugin_dir, "../plugins");
  assert_string_equal(cfg.instances[0].library, "../plugins/a.so");
  assert_string_equal(cfg.instances[1].library, "./lib/b.so");
  chd_config_release(&cfg);

  /* an absolute plugin_dir stays as it is */
  load_ok("[host]\nmessage_store = ms\nplugin_dir = /opt/comphost/plugins\n[a]\n");
  assert_string_equal(cfg.plugin_dir, "/opt/comphost/plugins");
  assert_string_equal(cfg.instances[0].library, "/opt/comphost/plugins/a.so");
}

static void test_line_numbers(void **state)
{
  char text[1024], comment[501];
  const chd_instance_config *a;
  (void)state;

  memset(comment, 'c', sizeof comment - 1);
  comment[0] = ';';
  comment[sizeof comment - 1] = '\0';
  snprintf(text, sizeof text,
           "\xEF\xBB\xBF; a comment after a byte order mark\n"
           "# another comment\n"
           "\n"
           "[host]   ; comment\n"
           "message_store = ms ; comment\n"         /* 5 */
           "   ; an indented comment\n"
           "\t\n"
           "[a]\n"
           "x = 1\n"
           "; x = 2\n"                              /* 10 */
           "y: 2\n"
           "z =\n"
           "w = a;b ; comment\n"
           "%s\n"                                   /* a long comment */
           "v = last\n", comment);                  /* 15 */
  load_ok(text);
  assert_string_equal(cfg.message_store, "ms");
  a = &cfg.instances[0];
  assert_int_equal(a->line, 8);
  assert_int_equal(a->plugin_key_count, 5);
  assert_string_equal(a->plugin_keys[0].key, "x");
  assert_string_equal(a->plugin_keys[0].value, "1");
  assert_int_equal(a->plugin_keys[0].line, 9);
  assert_string_equal(a->plugin_keys[1].key, "y");
  assert_string_equal(a->plugin_keys[1].value, "2");
  assert_int_equal(a->plugin_keys[1].line, 11);
  assert_string_equal(a->plugin_keys[2].key, "z");
  assert_string_equal(a->plugin_keys[2].value, "");
  assert_int_equal(a->plugin_keys[2].line, 12);
  assert_string_equal(a->plugin_keys[3].key, "w");
  assert_string_equal(a->plugin_keys[3].value, "a;b");
  assert_int_equal(a->plugin_keys[3].line, 13);
  assert_string_equal(a->plugin_keys[4].key, "v");
  assert_string_equal(a->plugin_keys[4].value, "last");
  assert_int_equal(a->plugin_keys[4].line, 15);

  /* CRLF line ends */
  load_ok("[host]\r\nmessage_store = ms\r\n\r\n[a]\r\nk = v\r\nbatch_size = 7\r\n");
  assert_string_equal(cfg.message_store, "ms");
  assert_int_equal(cfg.instances[0].line, 4);
  assert_string_equal(cfg.instances[0].plugin_keys[0].value, "v");
  assert_int_equal(cfg.instances[0].plugin_keys[0].line, 5);
  assert_int_equal(cfg.instances[0].batch_size, 7);
  load_fails("[host]\r\nmessage_store = ms\r\n; c\r\n[a]\r\nbatch_size = x\r\n",
             ":5: [a] batch_size: 'x' is not a whole number");

  /* errors after comments and blank lines */
  load_fails("; one\n\n# three\n[host]\n\nmessage_store = ms\n\n[a]\n; nine\n\n"
             "batch_size = 0\n",
             ":11: [a] batch_size: '0' is out of range (1..100000)");
}

static void test_error_names_the_file_as_given(void **state)
{
  (void)state;

  write_file("conf/x.ini", STORE "[home-page]\nbatch_size = 1x\n");
  assert_int_equal(chdir(tmp), 0);
  assert_int_equal(chd_config_load(&cfg, "conf/x.ini", NULL, err, sizeof err), -1);
  assert_string_equal(err, "conf/x.ini:4: [home-page] batch_size: '1x' is not a whole number");
  assert_released();
}

static void test_unreadable_file(void **state)
{
  char want[1024], name[600];
  (void)state;

  in_tmp(name, sizeof name, "/missing.ini");
  assert_int_equal(chd_config_load(&cfg, name, NULL, err, sizeof err), -1);
  snprintf(want, sizeof want, "cannot read '%s': %s", name, strerror(ENOENT));
  assert_string_equal(err, want);
  assert_released();

  assert_int_equal(chd_config_load(&cfg, tmp, NULL, err, sizeof err), -1);
  snprintf(want, sizeof want, "cannot read '%s': %s", tmp, strerror(EISDIR));
  assert_string_equal(err, want);
  assert_released();
}

static void test_bad_numbers(void **state)
{
  (void)state;

  load_fails(STORE "[a]\nbatch_size = 1x\n", ":4: [a] batch_size: '1x' is not a whole number");
  load_fails(STORE "[a]\nbatch_size = 1.5\n", ":4: [a] batch_size: '1.5' is not a whole number");
  load_fails(STORE "[a]\nbatch_size = 0x10\n", ":4: [a] batch_size: '0x10' is not a whole number");
  load_fails(STORE "[a]\nbatch_size = -\n", ":4: [a] batch_size: '-' is not a whole number");
  load_fails(STORE "[a]\nbatch_size = 99999999999999999999\n",
             ":4: [a] batch_size: '99999999999999999999' is not a whole number");
  load_fails(STORE "shutdown_timeout_ms = soon\n[a]\n",
             ":3: [host] shutdown_timeout_ms: 'soon' is not a whole number");
  load_ok(STORE "[a]\nbatch_size = +12\n");
  assert_int_equal(cfg.instances[0].batch_size, 12);
}

static const struct range {
  bool host;
  const char *key;
  const char *min, *max, *below, *above;
  size_t offset;
} ranges[] = {
  { false, "batch_size", "1", "100000", "0", "100001",
    offsetof(chd_instance_config, batch_size) },
  { false, "poll_interval_ms", "1", "3600000", "0", "3600001",
    offsetof(chd_instance_config, poll_interval_ms) },
  { false, "position_update_interval", "1", "1000000", "0", "1000001",
    offsetof(chd_instance_config, position_update_interval) },
  { false, "group_size", "0", "32767", "-1", "32768",
    offsetof(chd_instance_config, group_size) },
  { false, "max_retries", "0", "1000", "-1", "1001",
    offsetof(chd_instance_config, max_retries) },
  { false, "retry_backoff_ms", "1", "3600000", "0", "3600001",
    offsetof(chd_instance_config, retry_backoff_ms) },
  { true, "shutdown_timeout_ms", "1", "3600000", "0", "3600001",
    offsetof(chd_config, shutdown_timeout_ms) },
  { true, "restart_backoff_max_ms", "1", "3600000", "0", "3600001",
    offsetof(chd_config, restart_backoff_max_ms) },
  { true, "max_crash_restarts", "1", "1000", "0", "1001",
    offsetof(chd_config, max_crash_restarts) },
};

/* A file with `key = value`, on line 3 ([host]) or 4 ([a]). */
static void range_file(const struct range *r, const char *value, char *buf, size_t size)
{
  if (r->host)
    snprintf(buf, size, STORE "%s = %s\n[a]\n", r->key, value);
  else
    snprintf(buf, size, STORE "[a]\n%s = %s\n", r->key, value);
}

static int64_t range_field(const struct range *r)
{
  const char *base = r->host ? (const char *)&cfg : (const char *)&cfg.instances[0];
  int64_t v;

  memcpy(&v, base + r->offset, sizeof v);
  return v;
}

static void test_ranges(void **state)
{
  char text[256], error[256];
  (void)state;

  for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
    const struct range *r = &ranges[i];
    const char *bad[] = { r->below, r->above };

    range_file(r, r->min, text, sizeof text);
    load_ok(text);
    assert_int_equal(range_field(r), strtoll(r->min, NULL, 10));
    range_file(r, r->max, text, sizeof text);
    load_ok(text);
    assert_int_equal(range_field(r), strtoll(r->max, NULL, 10));
    for (int j = 0; j < 2; j++) {
      range_file(r, bad[j], text, sizeof text);
      snprintf(error, sizeof error, ":%d: [%s] %s: '%s' is out of range (%s..%s)",
               r->host ? 3 : 4, r->host ? "host" : "a", r->key, bad[j], r->min, r->max);
      load_fails(text, error);
    }
  }
}

static void test_enums_and_bools(void **state)
{
  static const char *const levels[] = { "error", "warn", "info", "debug" };
  (void)state;

  for (int i = 0; i < 4; i++) {
    char text[128];

    snprintf(text, sizeof text, STORE "log_level = %s\n[a]\n", levels[i]);
    load_ok(text);
    assert_int_equal(cfg.log_level, i);
  }
  load_fails(STORE "log_level = verbose\n[a]\n",
             ":3: [host] log_level: 'verbose' is not one of error, warn, info, debug");
  load_fails(STORE "log_level = INFO\n[a]\n",
             ":3: [host] log_level: 'INFO' is not one of error, warn, info, debug");
  load_fails(STORE "[a]\nposition_store = memory\n",
             ":4: [a] position_store: 'memory' is not one of message_store, view_data");
  load_fails(STORE "[a]\nposition_format = Book\n",
             ":4: [a] position_format: 'Book' is not one of book, eventide");
  load_fails(STORE "[a]\nbatch_transaction = maybe\n",
             ":4: [a] batch_transaction: 'maybe' is not a boolean "
             "(true/false, yes/no, on/off, 1/0)");
  load_fails(STORE "[a]\nstore_transaction = 2\n",
             ":4: [a] store_transaction: '2' is not a boolean (true/false, yes/no, on/off, 1/0)");
  load_fails(STORE "[a]\ndeterministic_ids = nope\n",
             ":4: [a] deterministic_ids: 'nope' is not a boolean "
             "(true/false, yes/no, on/off, 1/0)");
  load_ok(STORE "[a]\nstore_transaction = ON\ndeterministic_ids = No\nread_ahead = off\n");
  assert_false(cfg.instances[0].read_ahead);
  assert_true(cfg.instances[0].store_transaction);
  assert_false(cfg.instances[0].deterministic_ids);

  /* asynchronous view commits: the default with view_data positions only,
   * and refused where the position commits elsewhere */
  load_ok(STORE "view_data = vd\n[a]\nposition_store = view_data\n[b]\n");
  assert_false(cfg.instances[0].view_synchronous_commit);
  assert_true(cfg.instances[1].view_synchronous_commit);
  load_ok(STORE "view_data = vd\n[a]\nposition_store = view_data\n"
          "view_synchronous_commit = on\n");
  assert_true(cfg.instances[0].view_synchronous_commit);
  load_fails(STORE "view_data = vd\n[a]\nview_synchronous_commit = off\n",
             ":5: [a] view_synchronous_commit: off needs position_store = view_data (the"
             " position must commit in the same transaction as the view)");
}

static void test_empty_values(void **state)
{
  (void)state;

  load_fails(STORE "[a]\nbatch_size =\n", ":4: [a] batch_size: empty value");
  load_fails(STORE "[a]\nlibrary =\n", ":4: [a] library: empty value");
  load_fails(STORE "[a]\nposition_store =\n", ":4: [a] position_store: empty value");
  load_fails(STORE "[a]\nbatch_transaction =\n", ":4: [a] batch_transaction: empty value");
  load_fails(STORE "plugin_dir =\n[a]\n", ":3: [host] plugin_dir: empty value");
  load_fails(STORE "log_level = \n[a]\n", ":3: [host] log_level: empty value");
}

static void test_unknown_host_key(void **state)
{
  (void)state;

  load_fails(STORE "messge_store = x\n[a]\n",
             ":3: [host] messge_store: unknown key (known: message_store, view_data, "
             "plugin_dir, log_level, shutdown_timeout_ms, restart_backoff_max_ms, "
             "max_crash_restarts, http_listen, health_max_heartbeat_age_ms, state_file,"
             " health_max_stall_ms, session_secret, session_secret_file, cookie_secure,"
             " session_max_age_s, max_body_bytes, request_timeout_s, static_dir,"
             " message_store_read)");
  /* instance keys belong to instances */
  load_fails(STORE "batch_size = 5\n[a]\n",
             ":3: [host] batch_size: unknown key (known: message_store, view_data, "
             "plugin_dir, log_level, shutdown_timeout_ms, restart_backoff_max_ms, "
             "max_crash_restarts, http_listen, health_max_heartbeat_age_ms, state_file,"
             " health_max_stall_ms, session_secret, session_secret_file, cookie_secure,"
             " session_max_age_s, max_body_bytes, request_timeout_s, static_dir,"
             " message_store_read)");
}

static void test_structure_errors(void **state)
{
  (void)state;

  load_fails("; comment\nmessage_store = ms\n[host]\n[a]\n",
             ":2: message_store: key outside any section (add [host] or a plugin section "
             "above it)");
  load_fails(STORE "[a]\n= 5\n", ":4: missing key name before '='");
  load_fails(STORE "[a]\njust words\n",
             ":4: expected 'key = value', '[section]' or a comment, not 'just words'");
  load_fails(STORE "[a]\nk ; = v\n",
             ":4: expected 'key = value', '[section]' or a comment, not 'k ; = v'");
  load_fails(STORE "[a]\nx = 1\n  more\n",
             ":5: unexpected indentation (multi-line values are not supported)");
  load_fails(STORE "[a]\nx = 1\n\ty = 2\n",
             ":5: unexpected indentation (multi-line values are not supported)");
  load_fails(STORE "  [a]\n", ":3: unexpected indentation (multi-line values are not supported)");
}

static void test_long_lines(void **state)
{
  char value[301], text[512], want[1024];
  (void)state;

  /* a long line inih can hold is read whole */
  memset(value, 'v', 190);
  value[190] = '\0';
  snprintf(text, sizeof text, STORE "[a]\nk = %s\n", value);
  load_ok(text);
  assert_string_equal(cfg.instances[0].plugin_keys[0].value, value);

  /* a longer one is refused, not cut in two */
  memset(value, 'v', 300);
  value[300] = '\0';
  snprintf(text, sizeof text, STORE "[a]\nk = %s\n", value);
  chd_config_release(&cfg);
  write_file("host.ini", text);
  assert_int_equal(chd_config_load(&cfg, path, NULL, err, sizeof err), -1);
  snprintf(want, sizeof want, "%s:4: line too long (304 characters, at most ", path);
  assert_true(strncmp(err, want, strlen(want)) == 0);
  assert_released();
}

static void test_duplicates(void **state)
{
  (void)state;

  load_fails(STORE "[a]\n\n[host]\n", ":5: duplicate section [host] (first on line 1)");
  load_fails(STORE "[a]\nx = 1\n\n[b]\n[a]\n", ":7: duplicate section [a] (first on line 3)");
  load_fails("[host]\nmessage_store = a\nmessage_store = b\n[a]\n",
             ":3: [host] message_store: duplicate key (first on line 2)");
  load_fails("[host]\nmessage_store = a\nmessage_store =\n[a]\n",
             ":3: [host] message_store: duplicate key (first on line 2)");
  load_fails(STORE "[a]\nbatch_size = 1\n; c\nbatch_size = 2\n",
             ":6: [a] batch_size: duplicate key (first on line 4)");
  load_fails(STORE "[a]\nx = 1\nx = 1\n", ":5: [a] x: duplicate key (first on line 4)");
  /* the same keys in two sections are no duplicates */
  load_ok(STORE "[a]\nx = 1\nbatch_size = 1\n[b]\nx = 2\nbatch_size = 2\n");
  assert_string_equal(cfg.instances[1].plugin_keys[0].value, "2");
  assert_int_equal(cfg.instances[1].batch_size, 2);
}

static void test_section_names(void **state)
{
  char text[256], name[51];
  (void)state;

  load_fails(STORE "[Home]\n",
             ":3: invalid section name 'Home' (use a-z, 0-9, '_', '.' and '-')");
  load_fails(STORE "[home page]\n",
             ":3: invalid section name 'home page' (use a-z, 0-9, '_', '.' and '-')");
  load_fails(STORE "[]\n", ":3: empty section name");
  load_fails(STORE "[a\n", ":3: missing ']' after the section name");
  load_fails(STORE "[a] b\n", ":3: unexpected text after ']': 'b'");

  memset(name, 'n', 50);
  name[50] = '\0';
  snprintf(text, sizeof text, STORE "[%s]\nx = 1\n", name);
  load_fails(text,
             ":3: section name 'nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn' is too long "
             "(at most 49 characters)");
  name[49] = '\0';
  snprintf(text, sizeof text, STORE "[%s]\nx = 1\n", name);
  load_ok(text);
  assert_string_equal(cfg.instances[0].name, name);
  assert_int_equal(cfg.instances[0].plugin_key_count, 1);

  load_ok(STORE "[home-page.v2_0] ; comment\n[b] # comment\n");
  assert_string_equal(cfg.instances[0].name, "home-page.v2_0");
  assert_string_equal(cfg.instances[1].name, "b");
}

static void test_groups(void **state)
{
  (void)state;

  load_fails(STORE "[a]\ngroup_member = 1\n", ":4: [a] group_member: given without group_size");
  load_fails(STORE "[a]\ngroup_member = 1\ngroup_size = 0\n",
             ":4: [a] group_member: given without group_size");
  /* found at the end of the section, named on its line */
  load_fails(STORE "[a]\ngroup_member = 2\ngroup_size = 2\n[b]\n",
             ":4: [a] group_member: '2' is out of range (0..1 with group_size = 2)");
  load_fails(STORE "[a]\ngroup_size = 2\ngroup_member = -1\n",
             ":5: [a] group_member: '-1' is out of range (0..32766)");
  load_ok(STORE "[a]\ngroup_member = 0\n");
  assert_int_equal(cfg.instances[0].group_size, 0);
  load_ok(STORE "[a]\ngroup_member = 32766\ngroup_size = 32767\n");
  assert_int_equal(cfg.instances[0].group_member, 32766);
  assert_false(cfg.instances[0].group_auto);
}

/* group_member = auto: the slots are shared through leases. */
static void test_group_auto(void **state)
{
  const chd_instance_config *a;
  (void)state;

  load_ok(STORE "[a]\ngroup_member = auto\ngroup_size = 8\n");
  a = &cfg.instances[0];
  assert_true(a->group_auto);
  assert_int_equal(a->group_member, 0);
  assert_int_equal(a->group_size, 8);
  assert_int_equal(a->lease_timeout_ms, CHD_DEFAULT_LEASE_TIMEOUT_MS);
  load_ok(STORE "[a]\ngroup_size = 64\ngroup_member = auto\nlease_timeout_ms = 1000\n");
  assert_int_equal(cfg.instances[0].lease_timeout_ms, 1000);
  load_fails(STORE "[a]\ngroup_member = auto\n",
             ":4: [a] group_member: auto needs group_size (the number of slots the hosts"
             " share)");
  load_fails(STORE "[a]\ngroup_member = auto\ngroup_size = 65\n",
             ":5: [a] group_size: '65' is out of range with group_member = auto (1..64)");
  load_fails(STORE "[a]\ngroup_member = Auto\ngroup_size = 2\n",
             ":4: [a] group_member: 'Auto' is not a whole number");
  load_fails(STORE "[a]\ngroup_member = 1\ngroup_size = 2\nlease_timeout_ms = 5000\n",
             ":6: [a] lease_timeout_ms: only with group_member = auto");
  load_fails(STORE "[a]\ngroup_member = auto\ngroup_size = 2\nlease_timeout_ms = 999\n",
             ":6: [a] lease_timeout_ms: '999' is out of range (1000..600000)");
  /* a replica for the category reads */
  load_ok(STORE "message_store_read = host=replica dbname=ms\n[a]\n");
  assert_string_equal(cfg.message_store_read, "host=replica dbname=ms");
  load_ok(STORE "message_store_read =\n[a]\n");
  assert_null(cfg.message_store_read);
}

static void test_two_instances_of_a_library(void **state)
{
  const chd_instance_config *a, *b;
  (void)state;

  load_ok(STORE
          "[home-page.0]\nlibrary = home-page\ngroup_size = 2\ngroup_member = 0\n"
          "[home-page.1]\nlibrary = home-page\ngroup_size = 2\ngroup_member = 1\n");
  assert_int_equal(cfg.instance_count, 2);
  a = &cfg.instances[0];
  b = &cfg.instances[1];
  assert_string_equal(a->name, "home-page.0");
  assert_string_equal(b->name, "home-page.1");
  assert_string_equal(a->library, COMPHOST_PLUGINDIR "/home-page.so");
  assert_string_equal(b->library, COMPHOST_PLUGINDIR "/home-page.so");
  assert_int_equal(a->library_line, 4);
  assert_int_equal(b->library_line, 8);
  assert_int_equal(a->group_member, 0);
  assert_int_equal(b->group_member, 1);
  assert_int_equal(a->group_size, 2);
  assert_int_equal(b->group_size, 2);
}

static void test_missing_pieces(void **state)
{
  (void)state;

  load_fails("[a]\n",
             ": no message store: set [host] message_store or MESSAGE_STORE_CONNECTION_STRING");
  load_fails("",
             ": no message store: set [host] message_store or MESSAGE_STORE_CONNECTION_STRING");
  /* connection details alone are a configuration (for write, read, trace);
   * running needs a plugin, which the inventory checks */
  load_ok(STORE);
  assert_int_equal(cfg.instance_count, 0);
  load_fails(STORE "\n[a]\nbatch_size = 5\nposition_store = view_data\n",
             ":6: [a] position_store: view_data needs a view database: set [host] view_data"
             " or DATABASE_URL");
  load_fails(STORE "[a]\nlibrary = home-page.so\n",
             ":4: [a] library: 'home-page.so' is taken as a plugin name, not a file: "
             "write 'home-page', or a path with '/'");
  setenv("MESSAGE_STORE_CONNECTION_STRING", "env-ms", 1);
  load_ok("");
  assert_string_equal(cfg.message_store, "env-ms");
}

static const ch_config_key declared[] = {
  { .name = "greeting", .type = CH_CONFIG_STRING, .default_value = "hello" },
  { .name = "count", .type = CH_CONFIG_INT, .default_value = "3" },
  { .name = "enabled", .type = CH_CONFIG_BOOL },
  { .name = "token", .type = CH_CONFIG_STRING, .required = true },
  { .name = "region", .type = CH_CONFIG_STRING, .default_value = "eu", .required = true },
  { .name = NULL }
};

/* Check the plugin keys of instance i against keys; the result of the check. */
static int check(size_t i, const ch_config_key *keys)
{
  assert_true(i < cfg.instance_count);
  return chd_config_check_plugin_keys(&cfg, &cfg.instances[i], keys, err, sizeof err);
}

static void check_fails(size_t i, const ch_config_key *keys, const char *error)
{
  char want[1024];

  snprintf(want, sizeof want, "%s%s", cfg.path, error);
  assert_int_equal(check(i, keys), -1);
  assert_string_equal(err, want);
}

static void test_plugin_keys(void **state)
{
  static const ch_config_key none[] = { { .name = NULL } };
  static const ch_config_key bad_default[] = {
    { .name = "limit", .type = CH_CONFIG_INT, .default_value = "lots" },
    { .name = "strict", .type = CH_CONFIG_BOOL, .default_value = "sometimes" },
    { .name = NULL }
  };
  (void)state;

  load_ok(STORE
          "[ok]\ntoken = t\ncount = -9223372036854775808\nenabled = YES\n"      /* 3 */
          "[defaults]\ntoken =\n"                                               /* 7 */
          "[unknown]\ntoken = t\ncolor = red\n"                                 /* 9 */
          "[missing]\ncount = 1\n"                                              /* 12 */
          "[bad-int]\ntoken = t\ncount = 1x\n"                                  /* 14 */
          "[big-int]\ntoken = t\ncount = 9223372036854775808\n"                 /* 17 */
          "[empty-int]\ntoken = t\ncount =\n"                                   /* 20 */
          "[bad-bool]\ntoken = t\nenabled = maybe\n"                            /* 23 */
          "[no-keys]\n"                                                         /* 26 */
          "[limit]\nlimit = 10\nstrict = off\n");                               /* 27 */
  assert_int_equal(cfg.instance_count, 10);

  err[0] = 'x';
  assert_int_equal(check(0, declared), 0);
  assert_string_equal(err, "");
  /* an empty string is a value; defaults fill the rest, required or not */
  assert_int_equal(check(1, declared), 0);
  check_fails(2, declared,
              ":11: [unknown] color: unknown key (the plugin declares: greeting, count, "
              "enabled, token, region)");
  check_fails(2, NULL, ":10: [unknown] token: unknown key (the plugin declares no keys)");
  check_fails(2, none, ":10: [unknown] token: unknown key (the plugin declares no keys)");
  check_fails(3, declared, ":12: [missing] token: required by the plugin, not set");
  check_fails(4, declared, ":16: [bad-int] count: '1x' is not a whole number");
  check_fails(5, declared,
              ":19: [big-int] count: '9223372036854775808' is not a whole number");
  check_fails(6, declared, ":22: [empty-int] count: '' is not a whole number");
  check_fails(7, declared,
              ":25: [bad-bool] enabled: 'maybe' is not a boolean "
              "(true/false, yes/no, on/off, 1/0)");
  assert_int_equal(check(8, NULL), 0);
  assert_int_equal(check(8, none), 0);
  /* a default of the wrong type matters only when the key is not set */
  check_fails(8, bad_default, ":26: [no-keys] limit: the plugin's default 'lots' is not a "
              "whole number");
  assert_int_equal(check(9, bad_default), 0);
}

static void test_plugin_key_lookup(void **state)
{
  const chd_config_kv *kv;
  (void)state;

  load_ok(STORE "[a]\nbatch_size = 5\nx = 1\ny = two\n");
  kv = chd_config_plugin_key(&cfg.instances[0], "y");
  assert_non_null(kv);
  assert_string_equal(kv->key, "y");
  assert_string_equal(kv->value, "two");
  assert_int_equal(kv->line, 6);
  assert_ptr_equal(chd_config_plugin_key(&cfg.instances[0], "x"), &cfg.instances[0].plugin_keys[0]);
  assert_null(chd_config_plugin_key(&cfg.instances[0], "z"));
  assert_null(chd_config_plugin_key(&cfg.instances[0], "batch_size"));
}

/* The keys of the secret tests: api_token is secret, greeting is not. */
static const ch_config_key secret_declared[] = {
  { .name = "api_token", .type = CH_CONFIG_STRING },
  { .name = "greeting", .type = CH_CONFIG_STRING },
  { .name = NULL }
};
static const char *const secret_names[] = { "api_token", NULL };

/* Write a file of the test's directory with the given mode. */
static const char *write_secret(const char *name, const char *text, mode_t mode)
{
  const char *file = write_file(name, text);

  assert_int_equal(chmod(file, mode), 0);
  return file;
}

static int resolve(size_t i)
{
  assert_true(i < cfg.instance_count);
  return chd_config_resolve_secrets(&cfg, &cfg.instances[i], secret_declared, secret_names,
                                    err, sizeof err);
}

static void resolve_fails(size_t i, const char *error)
{
  char want[1024];

  snprintf(want, sizeof want, "%s%s", cfg.path, error);
  assert_int_equal(resolve(i), -1);
  assert_string_equal(err, want);
}

static void test_secret_from_file(void **state)
{
  const chd_config_kv *kv;
  char want[600];
  (void)state;

  /* one trailing newline goes; the one before it stays, as do spaces */
  write_secret("token", " tok-from-file \n\n", 0600);
  load_ok(STORE "[fx]\ngreeting = hi\napi_token_file = token\n");
  assert_int_equal(resolve(0), 0);
  assert_string_equal(err, "");
  assert_null(chd_config_plugin_key(&cfg.instances[0], "api_token_file"));
  kv = chd_config_plugin_key(&cfg.instances[0], "api_token");
  assert_non_null(kv);
  assert_string_equal(kv->value, " tok-from-file \n");
  assert_true(kv->secret);
  assert_int_equal(kv->source, CHD_FROM_FILE);
  assert_string_equal(kv->origin, in_tmp(want, sizeof want, "/token"));
  assert_int_equal(kv->line, 5);
  assert_false(chd_config_plugin_key(&cfg.instances[0], "greeting")->secret);
  assert_int_equal(chd_config_check_plugin_keys(&cfg, &cfg.instances[0], secret_declared,
                                                err, sizeof err), 0);

  /* an absolute path; the file's group may read it; "\r\n" is one newline */
  write_secret("sub/token", "abc\r\n", 0640);
  snprintf(want, sizeof want, STORE "[fx]\napi_token_file = %s/sub/token\n", tmp);
  load_ok(want);
  assert_int_equal(resolve(0), 0);
  assert_string_equal(chd_config_plugin_key(&cfg.instances[0], "api_token")->value, "abc");

  /* an empty file is an empty value */
  write_secret("empty", "", 0600);
  load_ok(STORE "[fx]\napi_token_file = empty\n");
  assert_int_equal(resolve(0), 0);
  assert_string_equal(chd_config_plugin_key(&cfg.instances[0], "api_token")->value, "");
}

static void test_secret_from_env(void **state)
{
  const chd_config_kv *kv;
  char var[128];
  (void)state;

  chd_config_secret_env("send-email", "smtp_password", var, sizeof var);
  assert_string_equal(var, "COMPHOST_SEND_EMAIL_SMTP_PASSWORD");
  chd_config_secret_env("fx.2", "api_token", var, sizeof var);
  assert_string_equal(var, "COMPHOST_FX_2_API_TOKEN");

  setenv("COMPHOST_FX_2_API_TOKEN", "tok-from-env", 1);
  load_ok(STORE "[fx]\n[fx.2]\ngreeting = hi\n");
  /* [fx] has its own variable, which is not set */
  assert_int_equal(resolve(0), 0);
  assert_null(chd_config_plugin_key(&cfg.instances[0], "api_token"));
  assert_int_equal(resolve(1), 0);
  kv = chd_config_plugin_key(&cfg.instances[1], "api_token");
  assert_non_null(kv);
  assert_string_equal(kv->value, "tok-from-env");
  assert_true(kv->secret);
  assert_int_equal(kv->source, CHD_FROM_ENV);
  assert_string_equal(kv->origin, "COMPHOST_FX_2_API_TOKEN");
  assert_int_equal(kv->line, 4);     /* the section's: the file does not have the key */

  /* an empty variable counts as not set */
  setenv("COMPHOST_FX_2_API_TOKEN", "", 1);
  load_ok(STORE "[fx.2]\napi_token = from-ini\n");
  assert_int_equal(resolve(0), 0);
  kv = chd_config_plugin_key(&cfg.instances[0], "api_token");
  assert_string_equal(kv->value, "from-ini");
  assert_int_equal(kv->source, CHD_FROM_INI);
  assert_null(kv->origin);
  assert_true(kv->secret);
}

static void test_secret_precedence(void **state)
{
  const char *text = STORE "[fx]\napi_token = from-ini\napi_token_file = token\n";
  const chd_config_kv *kv;
  (void)state;

  write_secret("token", "from-file\n", 0600);
  /* the environment, over the file and the INI value */
  setenv("COMPHOST_FX_API_TOKEN", "from-env", 1);
  load_ok(text);
  assert_int_equal(resolve(0), 0);
  kv = chd_config_plugin_key(&cfg.instances[0], "api_token");
  assert_string_equal(kv->value, "from-env");
  assert_int_equal(kv->line, 5);     /* of the file's key, which came last */
  assert_int_equal(cfg.instances[0].plugin_key_count, 1);
  /* the file, over the INI value */
  unsetenv("COMPHOST_FX_API_TOKEN");
  load_ok(text);
  assert_int_equal(resolve(0), 0);
  kv = chd_config_plugin_key(&cfg.instances[0], "api_token");
  assert_string_equal(kv->value, "from-file");
  assert_int_equal(kv->source, CHD_FROM_FILE);
  assert_int_equal(kv->line, 5);
  assert_int_equal(cfg.instances[0].plugin_key_count, 1);
  /* the environment wins over a file that could not be read, which is
   * still refused: the file names a mistake */
  setenv("COMPHOST_FX_API_TOKEN", "from-env", 1);
  load_ok(STORE "[fx]\napi_token_file = nosuch\n");
  assert_int_equal(resolve(0), -1);
}

static void test_secret_file_refused(void **state)
{
  char want[1024];
  (void)state;

  /* missing */
  load_ok(STORE "[fx]\ngreeting = hi\napi_token_file = nosuch\n");
  snprintf(want, sizeof want, ":5: [fx] api_token_file: cannot read '%s/nosuch': No such"
           " file or directory", tmp);
  resolve_fails(0, want);

  /* readable, or writable, by others */
  write_secret("token", "tok\n", 0644);
  load_ok(STORE "[fx]\napi_token_file = token\n");
  snprintf(want, sizeof want, ":4: [fx] api_token_file: '%s/token' is open to other users"
           " (mode 0644): a secret file must not be (chmod o-rwx)", tmp);
  resolve_fails(0, want);
  assert_int_equal(chmod(in_tmp(want, sizeof want, "/token"), 0602), 0);
  snprintf(want, sizeof want, ":4: [fx] api_token_file: '%s/token' is open to other users"
           " (mode 0602): a secret file must not be (chmod o-rwx)", tmp);
  resolve_fails(0, want);

  /* not a file */
  load_ok(STORE "[fx]\napi_token_file = .\n");
  snprintf(want, sizeof want, ":4: [fx] api_token_file: '%s/.' is not a regular file", tmp);
  resolve_fails(0, want);
  /* a FIFO is refused, not waited on */
  assert_int_equal(mkfifo(in_tmp(want, sizeof want, "/pipe"), 0600), 0);
  load_ok(STORE "[fx]\napi_token_file = pipe\n");
  snprintf(want, sizeof want, ":4: [fx] api_token_file: '%s/pipe' is not a regular file", tmp);
  resolve_fails(0, want);

  /* empty */
  load_ok(STORE "[fx]\napi_token_file =\n");
  resolve_fails(0, ":4: [fx] api_token_file: empty value (give the file that holds"
                " api_token)");

  /* for a key that is not a secret: unknown */
  write_secret("greeting", "hi\n", 0600);
  load_ok(STORE "[fx]\ngreeting_file = greeting\n");
  resolve_fails(0, ":4: [fx] greeting_file: unknown key (greeting is not a secret setting"
                " of the plugin: only a secret may be read from a file)");
  /* for a key the plugin does not have: left to the check of the keys */
  load_ok(STORE "[fx]\ncolor_file = greeting\n");
  assert_int_equal(resolve(0), 0);
  assert_int_equal(chd_config_check_plugin_keys(&cfg, &cfg.instances[0], secret_declared,
                                                err, sizeof err), -1);
  assert_non_null(strstr(err, ":4: [fx] color_file: unknown key"));
  /* a plugin that has no secret_keys */
  load_ok(STORE "[fx]\napi_token_file = greeting\n");
  assert_int_equal(chd_config_resolve_secrets(&cfg, &cfg.instances[0], secret_declared, NULL,
                                              err, sizeof err), -1);
  assert_non_null(strstr(err, ":4: [fx] api_token_file: unknown key (api_token is not a"
                         " secret"));
}

static void test_conninfo_mask(void **state)
{
  static const struct {
    const char *in, *out;
  } cases[] = {
    { "postgresql://u:hunter2@db/ms", "postgresql://u:(secret)@db/ms" },
    { "postgres://u:p%40ss@db:5432/ms?sslmode=require",
      "postgres://u:(secret)@db:5432/ms?sslmode=require" },
    { "postgresql://u@db/ms?sslmode=require&password=pw1&x=y",
      "postgresql://u@db/ms?sslmode=require&password=(secret)&x=y" },
    { "postgresql://db/ms", "postgresql://db/ms" },
    { "postgresql://u:pw@[::1/ms", "postgresql://u:(secret)@[::1/ms" },
    { "host=db user=u password=hunter2 dbname=ms",
      "host=db user=u password=(secret) dbname=ms" },
    { "host=db password = 'a b\\' c' dbname=ms", "host=db password = '(secret)' dbname=ms" },
    { "password=x", "password=(secret)" },
    { "host=db dbname=ms", "host=db dbname=ms" },
    { "", "" },
  };
  char out[256];
  (void)state;

  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    chd_conninfo_mask(cases[i].in, out, sizeof out);
    assert_string_equal(out, cases[i].out);
  }
}

static void test_secrets_leave_the_logs(void **state)
{
  char text[64];
  (void)state;

  /* a loaded config's passwords, and resolved secrets */
  load_ok("[host]\nmessage_store = postgresql://u:pw-of-the-store@db/ms\n"
          "[fx]\napi_token = tok-of-fx\n");
  assert_int_equal(resolve(0), 0);
  snprintf(text, sizeof text, "a pw-of-the-store and tok-of-fx");
  chd_log_redact(text, sizeof text);
  assert_string_equal(text, "a (secret) and (secret)");
  /* a short value is not looked for; a cut text stays terminated */
  chd_log_add_secret("abc");
  chd_log_add_secret("wxyz");
  snprintf(text, sizeof text, "abc");
  chd_log_redact(text, sizeof text);
  assert_string_equal(text, "abc");
  snprintf(text, 8, "wxyz ab");
  chd_log_redact(text, 8);
  assert_string_equal(text, "(secret");
}

static void test_parse_int64(void **state)
{
  static const struct {
    const char *s;
    int64_t v;
  } good[] = {
    { "0", 0 }, { "-0", 0 }, { "+7", 7 }, { "007", 7 }, { "-42", -42 },
    { "9223372036854775807", INT64_MAX }, { "-9223372036854775808", INT64_MIN },
  };
  static const char *const bad[] = {
    "", "-", "+", " 1", "1 ", "0x10", "1e3", "1.0", "--1", "+-1", "12a",
    "9223372036854775808", "-9223372036854775809", "99999999999999999999",
  };
  int64_t v;
  (void)state;

  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    v = 12345;
    assert_int_equal(chd_parse_int64(good[i].s, &v), 0);
    assert_true(v == good[i].v);
  }
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    v = 12345;
    if (chd_parse_int64(bad[i], &v) != -1) {
      print_error("'%s' parsed\n", bad[i]);
      fail();
    }
    assert_int_equal(v, 12345);
  }
  assert_int_equal(chd_parse_int64(NULL, &v), -1);
}

static void test_parse_bool(void **state)
{
  static const char *const yes[] = { "true", "TRUE", "True", "yes", "Yes", "on", "ON", "1" };
  static const char *const no[] = { "false", "FALSE", "no", "NO", "off", "Off", "0" };
  static const char *const bad[] = { "", "2", "tru", "yes ", " no", "y", "n", "01", "enabled" };
  bool b;
  (void)state;

  for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
    b = false;
    assert_int_equal(chd_parse_bool(yes[i], &b), 0);
    assert_true(b);
  }
  for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
    b = true;
    assert_int_equal(chd_parse_bool(no[i], &b), 0);
    assert_false(b);
  }
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    b = true;
    if (chd_parse_bool(bad[i], &b) != -1) {
      print_error("'%s' parsed\n", bad[i]);
      fail();
    }
    assert_true(b);
  }
  assert_int_equal(chd_parse_bool(NULL, &b), -1);
}

static void test_release(void **state)
{
  (void)state;

  chd_config_release(&cfg);   /* a zeroed config */
  assert_released();
  load_ok(STORE "[a]\nx = 1\n[b]\n");
  assert_non_null(cfg.instances);
  chd_config_release(&cfg);
  assert_released();
  assert_int_equal(cfg.log_level, 0);
  chd_config_release(&cfg);   /* again */
  assert_released();
}

/* config_path() of the host's function table: a plugin's path setting,
 * relative to the directory of the file. */
static void test_config_path(void **state)
{
  static const ch_config_key keys[] = {
    { .name = "dir", .type = CH_CONFIG_STRING },
    { .name = "abs", .type = CH_CONFIG_STRING },
    { .name = "empty", .type = CH_CONFIG_STRING },
    { .name = "token", .type = CH_CONFIG_STRING },
    { .name = "fallback", .type = CH_CONFIG_STRING, .default_value = "templates/x.txt" },
    { .name = "unset", .type = CH_CONFIG_STRING },
    {0},
  };
  chd_plugin plugin;
  ch_ctx ctx;
  char want[600];
  const char *p;
  (void)state;

  memset(&plugin, 0, sizeof plugin);
  plugin.desc.config_keys = keys;
  write_file("conf/host.ini", STORE "[a]\ndir = mail/out\nabs = /var/mail\nempty =\n"
                              "token = t/1\n");
  expect_loaded(chd_config_load(&cfg, path, NULL, err, sizeof err));
  chd_ctx_init(&ctx, &cfg, &cfg.instances[0], &plugin);
  p = chd_host_api.config_path(&ctx, "dir");
  assert_string_equal(p, in_tmp(want, sizeof want, "/conf/mail/out"));
  assert_ptr_equal(chd_host_api.config_path(&ctx, "dir"), p);   /* kept once */
  assert_string_equal(chd_host_api.config_get(&ctx, "dir"), "mail/out");
  assert_string_equal(chd_host_api.config_path(&ctx, "abs"), "/var/mail");
  assert_string_equal(chd_host_api.config_path(&ctx, "empty"), "");
  assert_string_equal(chd_host_api.config_path(&ctx, "fallback"),
                      in_tmp(want, sizeof want, "/conf/templates/x.txt"));
  assert_null(chd_host_api.config_path(&ctx, "unset"));
  assert_string_equal(chd_host_api.last_error(&ctx), "");
  /* a value from the environment (a secret's) is taken as it is */
  cfg.instances[0].plugin_keys[3].source = CHD_FROM_ENV;
  assert_string_equal(chd_host_api.config_path(&ctx, "token"), "t/1");
  chd_config_release(&cfg);

  /* a file named without a directory lies in the working directory */
  assert_int_equal(chdir(tmp), 0);
  write_file("host.ini", STORE "[a]\ndir = mail/out\n");
  expect_loaded(chd_config_load(&cfg, "host.ini", NULL, err, sizeof err));
  chd_ctx_init(&ctx, &cfg, &cfg.instances[0], &plugin);
  assert_string_equal(chd_host_api.config_path(&ctx, "dir"), "mail/out");
}

#define TEST(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
  const struct CMUnitTest tests[] = {
    TEST(test_full_file),
    TEST(test_defaults),
    TEST(test_batch_transaction_default),
    TEST(test_env_overrides_connection_strings),
    TEST(test_plugin_dir_precedence),
    TEST(test_line_numbers),
    TEST(test_error_names_the_file_as_given),
    TEST(test_unreadable_file),
    TEST(test_bad_numbers),
    TEST(test_ranges),
    TEST(test_enums_and_bools),
    TEST(test_empty_values),
    TEST(test_unknown_host_key),
    TEST(test_structure_errors),
    TEST(test_long_lines),
    TEST(test_duplicates),
    TEST(test_section_names),
    TEST(test_groups),
    TEST(test_group_auto),
    TEST(test_two_instances_of_a_library),
    TEST(test_missing_pieces),
    TEST(test_plugin_keys),
    TEST(test_plugin_key_lookup),
    TEST(test_config_path),
    TEST(test_secret_from_file),
    TEST(test_secret_from_env),
    TEST(test_secret_precedence),
    TEST(test_secret_file_refused),
    TEST(test_conninfo_mask),
    TEST(test_secrets_leave_the_logs),
    TEST(test_parse_int64),
    TEST(test_parse_bool),
    TEST(test_release),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
