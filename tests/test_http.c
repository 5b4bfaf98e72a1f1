/*
 * test_http.c - the host's HTTP listener: /metrics scraped and parsed as
 * Prometheus text, and /healthz, which must fail when a worker's loop stops
 * going round (here: SIGSTOP) even though nothing else looks wrong: the lag
 * stays 0, the process is there.
 */
#include "support.h"

#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "e2e.h"

#define WAIT 60000
#define BOUND_MS 2000
/* the labels of fx_runtime's fxrun subscription */
#define FXRUN "{plugin=\"fx\",subscriber=\"fx:run\"}"

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

static int64_t now_ms(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Every sample line is "name{labels} value" or "name value", with a number. */
static void assert_well_formed(const char *text)
{
  int samples = 0;

  for (const char *line = text; *line;) {
    const char *end = strchr(line, '\n');
    size_t len = end ? (size_t)(end - line) : strlen(line);
    char copy[1024], *space, *num_end;

    assert_true(len < sizeof copy);
    memcpy(copy, line, len);
    copy[len] = '\0';
    if (copy[0] == '#') {
      assert_true(!strncmp(copy, "# HELP ", 7) || !strncmp(copy, "# TYPE ", 7));
    } else if (len > 0) {
      space = strrchr(copy, ' ');
      assert_non_null(space);
      strtod(space + 1, &num_end);
      assert_true(*num_end == '\0' && num_end != space + 1);
      assert_true(!strncmp(copy, "comphost_", 9));
      samples++;
    }
    line = end ? end + 1 : line + len;
  }
  assert_true(samples > 20);
}

static pid_t the_worker(const ch_e2e_host *h)
{
  pid_t pids[4];

  assert_int_equal(ch_e2e_workers(h, pids, 4), 1);
  return pids[0];
}

static const char *start(ch_e2e_host *h, const char *extra_host_keys, const char *log)
{
  char body[600];
  const char *ini;

  /* one handler call per message: no batch transaction to replay */
  snprintf(body, sizeof body, "[fx]\nlibrary = fx_runtime\nretry_backoff_ms = 10\n"
           "batch_transaction = false\n");
  ini = ch_e2e_write_ini(&db, "http.ini", body);
  {
    /* the host keys of the test go right after "[host]" */
    FILE *f = fopen(ini, "r");
    char text[4096], out[4200];
    size_t n;
    assert_non_null(f);
    n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    snprintf(out, sizeof out, "[host]\n%s%s", extra_host_keys, text + strlen("[host]\n"));
    f = fopen(ini, "w");
    assert_non_null(f);
    fputs(out, f);
    fclose(f);
  }
  ch_e2e_host_start(h, &db, ini, log);
  return ini;
}

static void test_metrics_scraped_and_parsed(void **state)
{
  ch_e2e_host h;
  char url[256], series[256], *body;
  double count, inf;
  (void)state;

  ch_e2e_write_many(&db, "fxrun", "Count", 10, 3);
  {
    chd_mdb *m = ch_e2e_store(&db);
    json_t *data = json_pack("{s:i}", "times", 1);
    assert_int_equal(chd_mdb_write(m, "fxrun-r", NULL, "Retry", data, NULL, CH_VERSION_ANY,
                                   NULL), CHD_STORE_OK);
    json_decref(data);
    chd_mdb_free(m);
  }
  start(&h, "http_listen = 127.0.0.1:0\nhealth_max_heartbeat_age_ms = 2000\n", "m.log");
  assert_true(ch_e2e_wait_log(&h, "host running", WAIT));
  ch_e2e_http_base(&h, url, sizeof url);
  assert_int_equal(ch_e2e_wait_int(db.view_url, "SELECT count(*) FROM fx_seen", 11, WAIT), 11);
  ch_e2e_sleep_ms(300);

  snprintf(series, sizeof series, "%s/metrics", url);
  assert_int_equal(ch_e2e_http_get(series, &body), 200);
  assert_well_formed(body);
  assert_true(ch_e2e_metric(body, "comphost_worker_up{plugin=\"fx\"}") == 1);
  assert_true(ch_e2e_metric(body, "comphost_worker_restarts_total{plugin=\"fx\"}") == 0);
  assert_true(ch_e2e_metric(body, "comphost_messages_handled_total" FXRUN) == 11);
  assert_true(ch_e2e_metric(body, "comphost_handler_retries_total" FXRUN) == 1);
  assert_true(ch_e2e_metric(body, "comphost_handler_failures_total" FXRUN) == 0);
  assert_true(ch_e2e_metric(body, "comphost_subscription_lag_messages" FXRUN) == 0);
  assert_true(ch_e2e_metric(body, "comphost_subscription_last_poll_timestamp_seconds" FXRUN) >
              (double)time(NULL) - 60);
  /* the histograms: cumulative buckets, +Inf equal to the count */
  count = ch_e2e_metric(body, "comphost_handler_duration_seconds_count" FXRUN);
  inf = ch_e2e_metric(body, "comphost_handler_duration_seconds_bucket{plugin=\"fx\",subscriber=\"fx:run\","
               "le=\"+Inf\"}");
  assert_true(count == 12);      /* 10 Count, and Retry twice */
  assert_true(inf == count);
  assert_true(ch_e2e_metric(body, "comphost_handler_duration_seconds_bucket{plugin=\"fx\","
                     "subscriber=\"fx:run\",le=\"0.0005\"}") <=
              ch_e2e_metric(body, "comphost_handler_duration_seconds_bucket{plugin=\"fx\","
                     "subscriber=\"fx:run\",le=\"10\"}"));
  assert_true(ch_e2e_metric(body, "comphost_batch_duration_seconds_count" FXRUN) >= 1);
  assert_non_null(strstr(body, "# TYPE comphost_batch_duration_seconds histogram"));
  free(body);

  snprintf(series, sizeof series, "%s/healthz", url);
  assert_int_equal(ch_e2e_http_get(series, &body), 200);
  assert_non_null(strstr(body, "\"status\":\"ok\""));
  free(body);
  snprintf(series, sizeof series, "%s/nothing", url);
  assert_int_equal(ch_e2e_http_get(series, &body), 404);
  free(body);
  assert_int_equal(ch_e2e_host_stop(&h, SIGTERM, WAIT) != -1, 1);
}

/* The peers' most reported failure: a stalled loop that reports healthy. */
static void test_healthz_fails_when_a_worker_is_stopped(void **state)
{
  ch_e2e_host h;
  char url[256], *body = NULL;
  pid_t worker;
  int64_t stopped_at, took;
  long status = 0;
  (void)state;

  start(&h, "http_listen = 127.0.0.1:0\nhealth_max_heartbeat_age_ms = 2000\n", "s.log");
  assert_true(ch_e2e_wait_log(&h, "host running", WAIT));
  ch_e2e_http_base(&h, url, sizeof url);
  strcat(url, "/healthz");
  ch_e2e_sleep_ms(300);
  assert_int_equal(ch_e2e_http_get(url, &body), 200);
  free(body);
  body = NULL;

  worker = the_worker(&h);
  kill(worker, SIGSTOP);
  stopped_at = now_ms();
  for (status = 200; status == 200 && now_ms() - stopped_at < BOUND_MS + 3000;) {
    ch_e2e_sleep_ms(100);
    free(body);
    status = ch_e2e_http_get(url, &body);
  }
  took = now_ms() - stopped_at;
  assert_int_equal(status, 503);
  assert_true(took >= BOUND_MS - 200 && took <= BOUND_MS + 1500);
  assert_non_null(strstr(body, "\"status\":\"unhealthy\""));
  assert_non_null(strstr(body, "[fx] the loop is stalled: no heartbeat for"));
  free(body);
  body = NULL;
  /* nothing else would have told: the lag is 0 and the worker is up */
  {
    char metrics[300], *text;
    snprintf(metrics, sizeof metrics, "%.*s/metrics", (int)(strlen(url) - strlen("/healthz")),
             url);
    assert_int_equal(ch_e2e_http_get(metrics, &text), 200);
    assert_true(ch_e2e_metric(text, "comphost_worker_up{plugin=\"fx\"}") == 1);
    assert_true(ch_e2e_metric(text, "comphost_worker_heartbeat_age_seconds{plugin=\"fx\"}") >= 2.0);
    free(text);
  }

  kill(worker, SIGCONT);
  for (status = 503; status != 200 && now_ms() - stopped_at < 60000;) {
    ch_e2e_sleep_ms(100);
    free(body);
    status = ch_e2e_http_get(url, &body);
  }
  assert_int_equal(status, 200);
  free(body);
  body = NULL;

  /* a worker that is gone fails it too, until it is back */
  kill(worker, SIGKILL);
  assert_true(ch_e2e_wait_log(&h, "restarting in 1000 ms", WAIT));
  assert_int_equal(ch_e2e_http_get(url, &body), 503);
  assert_non_null(strstr(body, "the worker is restarting"));
  free(body);
  for (status = 503; status != 200 && now_ms() - stopped_at < 60000;) {
    ch_e2e_sleep_ms(100);
    status = ch_e2e_http_get(url, &body);
    free(body);
  }
  assert_int_equal(status, 200);
  assert_int_equal(ch_e2e_host_stop(&h, SIGTERM, WAIT) != -1, 1);
}

static void test_listener_refused(void **state)
{
  struct sockaddr_in sa;
  socklen_t len = sizeof sa;
  char keys[128];
  ch_e2e_host h;
  int fd = socket(AF_INET, SOCK_STREAM, 0), status;
  (void)state;

  /* a port that is taken */
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  assert_int_equal(listen(fd, 1), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
  snprintf(keys, sizeof keys, "http_listen = 127.0.0.1:%d\n", ntohs(sa.sin_port));
  start(&h, keys, "r.log");
  status = ch_e2e_host_wait(&h, WAIT);
  close(fd);
  assert_true(status != -1 && WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 1);
  assert_true(ch_e2e_log_contains(&h, "cannot listen on 127.0.0.1:"));

  /* a value that is no address: refused with the configuration */
  start(&h, "http_listen = localhost:99999\n", "bad.log");
  status = ch_e2e_host_wait(&h, WAIT);
  assert_true(status != -1 && WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 1);
  assert_true(ch_e2e_log_contains(&h, "http.ini:2: [host] http_listen: 'localhost:99999' is"
                                  " not HOST:PORT"));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_metrics_scraped_and_parsed, setup, teardown),
    cmocka_unit_test_setup_teardown(test_healthz_fails_when_a_worker_is_stopped, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_listener_refused, setup, teardown),
  };
  int rc;

  curl_global_init(CURL_GLOBAL_DEFAULT);
  rc = cmocka_run_group_tests(tests, NULL, NULL);
  curl_global_cleanup();
  return rc;
}
