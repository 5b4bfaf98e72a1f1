/*
 * test_hotswap.c - replacing a plugin on a running system: the new file is
 * renamed over the old one while messages keep coming, then the host is
 * restarted (SIGTERM and start) or reloads (SIGHUP: check, drain, re-execute
 * with the same pid). Every message is handled exactly once in total, those
 * after the restart by the new version. A SIGHUP whose configuration or
 * plugin is refused leaves the running workers alone. And `comphost inspect`.
 *
 * The plugin is fx_hotswap (tests/e2e/fx_hotswap.c), built as version 1 and
 * version 2; it records (global position, version) per message, with its
 * positions in the view database, in the same transaction.
 */
#include "support.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "e2e.h"

#define WAIT 60000
#define V1 COMPHOST_HOTSWAP_DIR "/fx_hotswap_v1.so"
#define V2 COMPHOST_HOTSWAP_DIR "/fx_hotswap_v2.so"
#define BAD_MAGIC COMPHOST_FIXTURE_DIR "/fx_bad_magic.so"

static ch_e2e_db db;
static char plugin_path[400];   /* <db.dir>/plugins/fx-hotswap.so */

static int setup(void **state)
{
  char dir[320];

  (void)state;
  ch_e2e_db_create(&db);
  snprintf(dir, sizeof dir, "%s/plugins", db.dir);
  assert_int_equal(mkdir(dir, 0700), 0);
  snprintf(plugin_path, sizeof plugin_path, "%s/fx-hotswap.so", dir);
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  ch_e2e_db_drop(&db);
  return 0;
}

/*
 * Put `src` in place as the plugin file the way a deployment must: copy to a
 * temporary name in the same directory, then rename over the old file. The
 * running host keeps the old file's inode mapped and is not disturbed.
 */
static void deploy(const char *src)
{
  char tmp[420], buf[65536];
  FILE *in = fopen(src, "rb"), *out;
  size_t n;

  assert_non_null(in);
  snprintf(tmp, sizeof tmp, "%s.new", plugin_path);
  out = fopen(tmp, "wb");
  assert_non_null(out);
  while ((n = fread(buf, 1, sizeof buf, in)) > 0)
    assert_int_equal(fwrite(buf, 1, n, out), n);
  fclose(in);
  assert_int_equal(fclose(out), 0);
  assert_int_equal(chmod(tmp, 0755), 0);
  assert_int_equal(rename(tmp, plugin_path), 0);
}

static const char *write_ini(const char *name)
{
  char body[600];

  snprintf(body, sizeof body, "[fx-hotswap]\nlibrary = %s\nposition_store = view_data\n"
           "batch_size = 20\npoll_interval_ms = 20\n", plugin_path);
  return ch_e2e_write_ini(&db, name, body);
}

/* A process writing one message every millisecond until its pipe closes. */
typedef struct writer {
  pid_t pid;
  int stop_fd;
} writer;

static void writer_start(writer *w)
{
  int fds[2];

  /* close-on-exec: a host started meanwhile must not hold the pipe open */
  assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
  fflush(NULL);
  w->pid = fork();
  assert_true(w->pid >= 0);
  if (w->pid == 0) {
    chd_mdb *m;
    int rc = 0;

    close(fds[1]);
    m = chd_mdb_new(db.store_url);
    if (!m || chd_mdb_connect(m) != CHD_STORE_OK)
      _exit(1);
    for (int i = 0; rc == 0; i++) {
      struct pollfd p = { fds[0], POLLIN, 0 };
      char stream[64];
      json_t *data = json_pack("{s:i}", "n", i);

      snprintf(stream, sizeof stream, "hswap-%d", i % 10);
      if (chd_mdb_write(m, stream, NULL, "Tick", data, NULL, CH_VERSION_ANY, NULL) !=
          CHD_STORE_OK)
        rc = 1;
      json_decref(data);
      if (poll(&p, 1, 1) != 0)
        break;
    }
    chd_mdb_free(m);
    _exit(rc);
  }
  close(fds[0]);
  w->stop_fd = fds[1];
}

static void writer_stop(writer *w)
{
  int status;

  close(w->stop_fd);
  assert_int_equal(waitpid(w->pid, &status, 0), w->pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static int64_t seen(const char *where)
{
  char sql[300];

  snprintf(sql, sizeof sql, "SELECT count(*) FROM hs_seen WHERE %s", where);
  return ch_e2e_int(db.view_url, sql);
}

/* Wait until `where` holds for at least `n` rows of hs_seen. */
static void wait_seen(const char *where, int64_t n)
{
  char sql[400];

  snprintf(sql, sizeof sql, "SELECT (count(*) >= %lld)::int FROM hs_seen WHERE %s",
           (long long)n, where);
  assert_int_equal(ch_e2e_wait_int(db.view_url, sql, 1, WAIT), 1);
}

static int64_t written(void)
{
  return ch_e2e_int(db.store_url, "SELECT count(*) FROM message_store.messages"
                                  " WHERE stream_name LIKE 'hswap-%'");
}

/* Every message once, version 1 before version 2, both with a share. */
static void assert_exactly_once_v1_then_v2(void)
{
  int64_t total = written();
  char sql[200];

  snprintf(sql, sizeof sql, "SELECT count(*) FROM hs_seen");
  assert_int_equal(ch_e2e_wait_int(db.view_url, sql, total, WAIT), total);
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT count(DISTINCT global_position) FROM hs_seen"),
                   total);
  assert_true(seen("version = '1'") >= 100);
  assert_true(seen("version = '2'") >= 100);
  assert_int_equal(ch_e2e_int(db.view_url,
                              "SELECT ((SELECT max(global_position) FROM hs_seen WHERE version = '1')"
                              " < (SELECT min(global_position) FROM hs_seen WHERE version = '2'))::int"),
                   1);
}

static void stop_cleanly(ch_e2e_host *h)
{
  int status = ch_e2e_host_stop(h, SIGTERM, WAIT);

  assert_true(status != -1 && WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

/* The supported path: rename the new file in, restart the host. */
static void test_swap_on_restart(void **state)
{
  const char *ini;
  ch_e2e_host h;
  writer w;
  (void)state;

  deploy(V1);
  ini = write_ini("restart.ini");
  ch_e2e_host_start(&h, &db, ini, "v1.log");
  assert_true(ch_e2e_wait_log(&h, "host running", WAIT));
  assert_true(ch_e2e_log_contains(&h, "plugin fx-hotswap 1 (aggregator) from "));
  assert_true(ch_e2e_log_contains(&h, " bytes, modified 20"));
  writer_start(&w);
  wait_seen("version = '1'", 100);

  deploy(V2);
  stop_cleanly(&h);
  ch_e2e_host_start(&h, &db, ini, "v2.log");
  assert_true(ch_e2e_wait_log(&h, "host running", WAIT));
  assert_true(ch_e2e_log_contains(&h, "plugin fx-hotswap 2 (aggregator) from "));
  wait_seen("version = '2'", 100);
  writer_stop(&w);
  assert_exactly_once_v1_then_v2();
  stop_cleanly(&h);
}

/* SIGHUP with a valid new plugin: drain, re-execute, same pid, version 2. */
static void test_swap_on_sighup(void **state)
{
  const char *ini;
  ch_e2e_host h;
  pid_t before[4], after[4];
  writer w;
  (void)state;

  deploy(V1);
  ini = write_ini("hup.ini");
  ch_e2e_host_start(&h, &db, ini, "hup.log");
  assert_true(ch_e2e_wait_log(&h, "host running", WAIT));
  assert_int_equal(ch_e2e_workers(&h, before, 4), 1);
  writer_start(&w);
  wait_seen("version = '1'", 100);

  deploy(V2);
  kill(h.pid, SIGHUP);
  assert_true(ch_e2e_wait_log(&h, "restarting in place", WAIT));
  wait_seen("version = '2'", 100);
  writer_stop(&w);
  assert_exactly_once_v1_then_v2();

  /* the same process, a new worker */
  assert_true(ch_e2e_process_alive(h.pid));
  assert_int_equal(ch_e2e_log_count(&h, "host running"), 2);
  assert_true(ch_e2e_log_contains(&h, "plugin fx-hotswap 2 (aggregator) from "));
  assert_int_equal(ch_e2e_workers(&h, after, 4), 1);
  assert_true(after[0] != before[0]);
  stop_cleanly(&h);
  assert_true(ch_e2e_log_contains(&h, "host stopped"));
}

/* The worker that runs, and whether its plugin version handles a new message. */
static void assert_still_v1(ch_e2e_host *h, pid_t worker, int64_t expect)
{
  pid_t now[4];

  assert_true(ch_e2e_process_alive(h->pid));
  assert_int_equal(ch_e2e_workers(h, now, 4), 1);
  assert_int_equal(now[0], worker);
  ch_e2e_write_many(&db, "hswap", "Tick", 10, 2);
  assert_int_equal(ch_e2e_wait_int(db.view_url, "SELECT count(*) FROM hs_seen WHERE version = '1'",
                                   expect, WAIT), expect);
}

/* SIGHUP with a broken configuration, then a broken plugin: both refused,
 * logged, and the old set goes on; then a good one is taken. */
static void test_sighup_refused_keeps_running(void **state)
{
  const char *ini;
  ch_e2e_host h;
  pid_t worker[4];
  FILE *f;
  (void)state;

  deploy(V1);
  ini = write_ini("refuse.ini");
  ch_e2e_host_start(&h, &db, ini, "refuse.log");
  assert_true(ch_e2e_wait_log(&h, "host running", WAIT));
  assert_int_equal(ch_e2e_workers(&h, worker, 4), 1);
  assert_still_v1(&h, worker[0], 10);

  /* a syntax error */
  f = fopen(ini, "a");
  assert_non_null(f);
  fputs("this line is not a key\n", f);
  fclose(f);
  kill(h.pid, SIGHUP);
  assert_true(ch_e2e_wait_log(&h, "SIGHUP: not reloading, the running plugins go on: ", WAIT));
  assert_true(ch_e2e_log_contains(&h, "refuse.ini:"));
  assert_still_v1(&h, worker[0], 20);

  /* a file that is not a plugin of this ABI */
  ini = write_ini("refuse.ini");
  deploy(BAD_MAGIC);
  kill(h.pid, SIGHUP);
  assert_true(ch_e2e_wait_log(&h, "bad magic", WAIT));
  assert_int_equal(ch_e2e_log_count(&h, "SIGHUP: not reloading"), 2);
  assert_still_v1(&h, worker[0], 30);
  assert_int_equal(ch_e2e_log_count(&h, "host running"), 1);

  /* and then a good one */
  deploy(V2);
  kill(h.pid, SIGHUP);
  assert_true(ch_e2e_wait_log(&h, "restarting in place", WAIT));
  assert_true(ch_e2e_wait_log(&h, "plugin fx-hotswap 2 (aggregator) from ", WAIT));
  ch_e2e_write_many(&db, "hswap", "Tick", 10, 2);
  assert_int_equal(ch_e2e_wait_int(db.view_url, "SELECT count(*) FROM hs_seen WHERE version = '2'",
                                   10, WAIT), 10);
  assert_int_equal(seen("true"), 40);
  assert_true(ch_e2e_process_alive(h.pid));
  stop_cleanly(&h);
}

/* `comphost inspect`: the descriptor, the file, and what it links. */
static void test_inspect(void **state)
{
  char *out = NULL;
  const char *argv[] = { "inspect", COMPHOST_TEST_PLUGIN_DIR "/fx_runtime.so", NULL, NULL, NULL };
  (void)state;

  assert_int_equal(ch_e2e_run(NULL, argv, &out), 0);
  assert_non_null(strstr(out, "plugin:       fx-runtime\n"));
  assert_non_null(strstr(out, "version:      "));
  assert_non_null(strstr(out, "kind:         "));
  assert_non_null(strstr(out, "abi:          1.2 (this host: 1.2)\n"));
  assert_non_null(strstr(out, "file:         " COMPHOST_TEST_PLUGIN_DIR "/fx_runtime.so\n"));
  assert_non_null(strstr(out, "modified:     20"));
  assert_non_null(strstr(out, "build id:     "));
  assert_null(strstr(out, "build id:     (none)"));
  assert_non_null(strstr(out, "needs:        "));
  assert_non_null(strstr(out, "libjansson.so.4"));
  assert_null(strstr(out, "comphost.so"));
  assert_non_null(strstr(out, "  label (string, default a): recorded with every row\n"));
  assert_non_null(strstr(out, "  fx:run: fxrun\n    handles: Count, Crash, Retry, Fail"));
  assert_non_null(strstr(out, "migrations:\n  1_fx_seen\n"));
  free(out);

  /* a name, in the plugin directory given */
  argv[1] = "fx_hotswap_v2";
  argv[2] = "--plugin-dir";
  argv[3] = COMPHOST_HOTSWAP_DIR;
  assert_int_equal(ch_e2e_run(NULL, argv, &out), 0);
  assert_non_null(strstr(out, "plugin:       fx-hotswap\nversion:      2\n"));
  assert_non_null(strstr(out, "kind:         aggregator\n"));
  assert_non_null(strstr(out, "config keys:  (none)\n"));
  assert_non_null(strstr(out, "  fx:hotswap: hswap\n    handles: $any\n"));
  free(out);

  /* refused as the host refuses it */
  argv[1] = BAD_MAGIC;
  argv[2] = NULL;
  assert_int_equal(ch_e2e_run(NULL, argv, &out), 1);
  assert_non_null(strstr(out, "comphost: '" BAD_MAGIC "': bad magic"));
  free(out);

  argv[1] = NULL;
  assert_int_equal(ch_e2e_run(NULL, argv, &out), 2);
  free(out);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_inspect),
    cmocka_unit_test_setup_teardown(test_swap_on_restart, setup, teardown),
    cmocka_unit_test_setup_teardown(test_swap_on_sighup, setup, teardown),
    cmocka_unit_test_setup_teardown(test_sighup_refused_keeps_running, setup, teardown),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
