/*
 * test_group.c - hosts that share a consumer group through leases
 * (group_member = auto), end to end: several comphost processes on this
 * machine against one PostgreSQL.
 *
 * Ownership is recorded by triggers the tests install beside the host's
 * tables: every change of a lease's generation (test_claims), and every
 * commit of a slot's position (test_commits) with the session that made it
 * (its application_name names the host's owner id) and the lease as that
 * transaction saw it. The checks then read those records: each generation
 * had one owner, each commit was made by the lease's owner of the time, the
 * generations of a slot's commits never go back.
 */
#include "support.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "clock.h"
#include "e2e.h"
#include "proxy.h"

#define HOME_PAGE COMPHOST_BUILD_PLUGIN_DIR "/home-page.so"
#define SLOTS 8
#define STREAMS 1000
#define LEASE_MS 3000
#define WAIT 60000
#define VIEWED "SELECT (page_data->>'videosWatched')::bigint FROM pages WHERE page_name = 'home'"

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

/* The admin's connection to the test's store (dbname replaced). */
static void admin_store_url(char *out, size_t size)
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

static int64_t int_of(const char *url, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int64_t int_of(const char *url, const char *fmt, ...)
{
  char sql[4096];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(sql, sizeof sql, fmt, ap);
  va_end(ap);
  return ch_e2e_int(url, sql);
}

/* Wait until `sql` on url gives at least `want` (or timeout_ms). */
static int64_t wait_at_least(const char *url, const char *sql, int64_t want, int timeout_ms)
{
  int64_t end = chd_now_ms() + timeout_ms, v;

  for (;;) {
    v = ch_e2e_int(url, sql);
    if (v >= want || chd_now_ms() >= end)
      return v;
    ch_e2e_sleep_ms(100);
  }
}

/*
 * Write `n` VideoViewed events over STREAMS streams in one transaction, and
 * let the planner know the table as autovacuum would: a member's read of a
 * category planned without statistics sorts the rest of the category.
 */
static void write_wave(int n)
{
  char admin[512];

  admin_store_url(admin, sizeof admin);
  ch_e2e_write_many(&db, "viewing", "VideoViewed", n, STREAMS);
  ch_e2e_exec(admin, "ANALYZE message_store.messages");
}

/* The one worker of a host (one instance). */
static pid_t worker_of(const ch_e2e_host *h)
{
  pid_t pids[4];
  int64_t end = chd_now_ms() + WAIT;

  while (ch_e2e_workers(h, pids, 4) < 1) {
    assert_true(chd_now_ms() < end);
    ch_e2e_sleep_ms(50);
  }
  return pids[0];
}

/* The owner id of worker `pid`, once it joined the group (lease_url: the
 * database of the leases). */
static void owner_of(const char *lease_url, pid_t pid, char *out, size_t size)
{
  char sql[256];
  int64_t end = chd_now_ms() + WAIT;
  PGconn *c = PQconnectdb(lease_url);

  assert_int_equal(PQstatus(c), CONNECTION_OK);
  snprintf(sql, sizeof sql, "SELECT owner FROM comphost_lease_members WHERE owner LIKE '%%:%d.%%'",
           (int)pid);
  for (;;) {
    PGresult *res = PQexec(c, sql);
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
      snprintf(out, size, "%s", PQgetvalue(res, 0, 0));
      PQclear(res);
      break;
    }
    PQclear(res);
    assert_true(chd_now_ms() < end);
    ch_e2e_sleep_ms(50);
  }
  PQfinish(c);
}

static int64_t slots_of(const char *lease_url, const char *owner)
{
  return int_of(lease_url, "SELECT count(*) FROM comphost_leases WHERE owner = '%s'", owner);
}

/* Wait until every one of `slots` slots is held, and by `hosts` owners. */
static void wait_held(const char *lease_url, int slots, int hosts)
{
  char sql[256];

  snprintf(sql, sizeof sql, "SELECT CASE WHEN count(owner) = %d AND count(DISTINCT owner) = %d"
           " THEN 1 ELSE 0 END FROM comphost_leases", slots, hosts);
  assert_int_equal(ch_e2e_wait_int(lease_url, sql, 1, WAIT), 1);
}

/*
 * The records. `lease_url` is a superuser's connection to the database of
 * the leases; with `store_positions` the positions are Read messages of the
 * message store, else rows of comphost_positions.
 */
static void record(const char *lease_url, bool store_positions)
{
  ch_e2e_exec(lease_url,
              "CREATE TABLE public.test_claims (id bigserial PRIMARY KEY, slot int NOT NULL,"
              " owner text, generation bigint NOT NULL,"
              " at timestamptz NOT NULL DEFAULT clock_timestamp());"
              "CREATE TABLE public.test_commits (id bigserial PRIMARY KEY,"
              " slot_id text NOT NULL, position bigint NOT NULL, committer text NOT NULL,"
              " owner text, generation bigint,"
              " at timestamptz NOT NULL DEFAULT clock_timestamp());"
              "CREATE FUNCTION public.test_claim() RETURNS trigger LANGUAGE plpgsql"
              " SECURITY DEFINER SET search_path = public AS $$ BEGIN"
              "  INSERT INTO test_claims (slot, owner, generation)"
              "  VALUES (NEW.slot, NEW.owner, NEW.generation); RETURN NEW; END $$;"
              "CREATE TRIGGER test_claim AFTER UPDATE ON public.comphost_leases FOR EACH ROW"
              " WHEN (OLD.generation <> NEW.generation) EXECUTE FUNCTION public.test_claim();"
              /* the lease as the committing transaction sees it: share-locked by
               * the host's fencing check, when there is one */
              "CREATE FUNCTION public.test_commit_row(slot_id text, pos bigint) RETURNS void"
              " LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$"
              "  INSERT INTO test_commits (slot_id, position, committer, owner, generation)"
              "  SELECT s.slot_id, s.pos, current_setting('application_name'), l.owner,"
              "   l.generation FROM (SELECT slot_id, pos) AS s LEFT JOIN comphost_leases AS l"
              "   ON l.subscriber_id || ':' || l.slot = s.slot_id $$;");
  if (store_positions)
    ch_e2e_exec(lease_url,
                "CREATE FUNCTION public.test_commit() RETURNS trigger LANGUAGE plpgsql"
                " SECURITY DEFINER SET search_path = public AS $$ BEGIN"
                "  PERFORM test_commit_row(substr(NEW.stream_name, 20),"
                "   (NEW.data->>'position')::bigint); RETURN NEW; END $$;"
                "CREATE TRIGGER test_commit AFTER INSERT ON message_store.messages"
                " FOR EACH ROW WHEN (NEW.stream_name LIKE 'subscriberPosition-%')"
                " EXECUTE FUNCTION public.test_commit();");
  else
    ch_e2e_exec(lease_url,
                "CREATE FUNCTION public.test_commit() RETURNS trigger LANGUAGE plpgsql"
                " SECURITY DEFINER SET search_path = public AS $$ BEGIN"
                "  PERFORM test_commit_row(NEW.subscriber_id, NEW.position); RETURN NEW;"
                " END $$;"
                "CREATE TRIGGER test_commit AFTER INSERT OR UPDATE ON public.comphost_positions"
                " FOR EACH ROW EXECUTE FUNCTION public.test_commit();");
}

/* The checks of the records: one owner at a time, every slot. */
static void check_records(const char *url)
{
  int64_t commits = ch_e2e_int(url, "SELECT count(*) FROM test_commits");

  assert_true(commits > SLOTS);
  /* each commit was made by the lease's owner of the moment */
  assert_int_equal(ch_e2e_int(url, "SELECT count(*) FROM test_commits WHERE owner IS NULL"
                                   " OR committer <> 'comphost ' || owner"), 0);
  /* a slot's commits: generations and positions never go back */
  assert_int_equal(ch_e2e_int(url, "SELECT count(*) FROM (SELECT generation < max(generation)"
                                   " OVER w AS g_back, position < max(position) OVER w AS p_back"
                                   " FROM test_commits WINDOW w AS (PARTITION BY slot_id"
                                   " ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND 1"
                                   " PRECEDING)) AS t WHERE g_back OR p_back"), 0);
  /* every generation of a slot was claimed once, by one owner, in order */
  assert_int_equal(ch_e2e_int(url, "SELECT count(*) - count(DISTINCT (slot, generation))"
                                   " FROM test_claims"), 0);
  assert_int_equal(ch_e2e_int(url, "SELECT count(*) FROM (SELECT generation <= lag(generation)"
                                   " OVER (PARTITION BY slot ORDER BY id) AS back"
                                   " FROM test_claims) AS t WHERE back"), 0);
  assert_int_equal(ch_e2e_int(url, "SELECT count(DISTINCT slot_id) FROM test_commits"), SLOTS);
}

/*
 * Stop worker `w` (SIGSTOP) at a moment when its view-database session sits
 * in a transaction that has changed rows (it has a transaction id: home-page
 * has updated the home row, and holds its lock): the paused owner that
 * blocks every other member. Tries until it catches one.
 */
static void stop_in_a_transaction(pid_t w, const char *owner)
{
  char sql[512];
  PGconn *c = PQconnectdb(db.view_url);

  assert_int_equal(PQstatus(c), CONNECTION_OK);
  snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_stat_activity AS a JOIN pg_locks AS l"
           " ON l.pid = a.pid AND l.locktype = 'transactionid' AND l.granted"
           " WHERE a.application_name = 'comphost %s' AND a.datname = current_database()"
           " AND a.state = 'idle in transaction'", owner);
  for (int attempt = 0; attempt < 2000; attempt++) {
    PGresult *res;
    bool caught;

    kill(w, SIGSTOP);
    ch_e2e_sleep_ms(5);            /* what was on its way reaches the server */
    res = PQexec(c, sql);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    caught = strtoll(PQgetvalue(res, 0, 0), NULL, 10) > 0;
    PQclear(res);
    if (caught) {
      print_message("caught it after %d attempts\n", attempt + 1);
      PQfinish(c);
      return;
    }
    kill(w, SIGCONT);
    ch_e2e_sleep_ms(1 + attempt % 7);
  }
  PQfinish(c);
  fail_msg("worker %d was never caught in a transaction", (int)w);
}

/* A configuration for host k: the same instance, its own file (and so its
 * own state file), metrics on a free port. */
static const char *host_ini(int k, const char *position_store, int lease_ms)
{
  char name[32], body[512];

  snprintf(name, sizeof name, "h%d.ini", k);
  snprintf(body, sizeof body,
           "http_listen = 127.0.0.1:0\n\n"
           "[home-page]\nlibrary = " HOME_PAGE "\ngroup_member = auto\ngroup_size = %d\n"
           "position_store = %s\nlease_timeout_ms = %d\n", SLOTS, position_store, lease_ms);
  return ch_e2e_write_ini(&db, name, body);
}

static void start_host(ch_e2e_host *h, int k, const char *position_store)
{
  char log[32];

  snprintf(log, sizeof log, "h%d.log", k);
  ch_e2e_host_start(h, &db, host_ini(k, position_store, LEASE_MS), log);
}

static void stop_cleanly(ch_e2e_host *h)
{
  int status = ch_e2e_host_stop(h, SIGTERM, WAIT);

  assert_true(status != -1 && WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

static double metric(const ch_e2e_host *h, const char *series)
{
  char base[128], url[160], *body = NULL;
  double v;

  ch_e2e_http_base(h, base, sizeof base);
  snprintf(url, sizeof url, "%s/metrics", base);
  assert_int_equal(ch_e2e_http_get(url, &body), 200);
  v = ch_e2e_metric(body, series);
  free(body);
  return v;
}

#define OWNED "comphost_group_slots_owned{plugin=\"home-page\",subscriber=\"aggregators:home-page\"}"
#define GIVEN \
  "comphost_group_slots_given_total{plugin=\"home-page\",subscriber=\"aggregators:home-page\"}"
#define TAKEOVERS \
  "comphost_group_takeovers_total{plugin=\"home-page\",subscriber=\"aggregators:home-page\"}"

/*
 * Three hosts share home-page's group of 8 slots over `events` VideoViewed
 * events, written in four waves while they work: the worker of one is
 * stopped (SIGSTOP) past its lease, so its slots move, and then let go on;
 * another host is killed (kill -9); a fourth starts. The count ends exact,
 * and the records show one owner at a time for every slot.
 */
static void three_hosts(const char *position_store, int events)
{
  bool store_positions = !strcmp(position_store, "message_store");
  char admin[512], lease_url[600], records_url[600], w1_owner[128], w2_owner[128];
  char w4_owner[128], sql[1024], held[512] = "";
  ch_e2e_host h[5];
  int64_t started = chd_now_ms(), mark, wave = events / 4;
  pid_t w1;
  double owned = 0, takeovers = 0, given = 0;
  PGconn *c;
  PGresult *res;

  admin_store_url(admin, sizeof admin);
  /* the database of the leases: beside the positions */
  snprintf(lease_url, sizeof lease_url, "%s", store_positions ? db.store_url : db.view_url);
  snprintf(records_url, sizeof records_url, "%s", store_positions ? admin : db.view_url);
  if (store_positions) {
    /* the message store's role may not create tables: an owner makes them */
    const char *argv[] = { "migrate-store", "-c", host_ini(1, position_store, LEASE_MS),
                           "--admin-url", admin, NULL };
    char *out = NULL;
    assert_int_equal(ch_e2e_run(&db, argv, &out), 0);
    assert_non_null(strstr(out, "lease tables (group_member = auto): created; usable by role"));
    free(out);
  }
  for (int k = 1; k <= 3; k++)
    start_host(&h[k], k, position_store);
  wait_held(lease_url, SLOTS, 3);
  record(records_url, store_positions);
  print_message("hosts up in %.1f s\n", (double)(chd_now_ms() - started) / 1000.0);

  write_wave(wave);
  assert_true(wait_at_least(db.view_url, VIEWED, 1, WAIT) >= 1);
  write_wave(wave);

  /* host 1's worker stops past its lease: its slots move to the others */
  w1 = worker_of(&h[1]);
  owner_of(lease_url, w1, w1_owner, sizeof w1_owner);
  c = PQconnectdb(lease_url);
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  snprintf(sql, sizeof sql, "SELECT string_agg(format('(%%L, %%s)', subscriber_id || ':' || slot,"
           " generation), ', ') FROM comphost_leases WHERE owner = '%s'", w1_owner);
  stop_in_a_transaction(w1, w1_owner);
  print_message("host 1 stopped in a transaction holding the home row, with %" PRId64
                " of %" PRId64 " events counted\n", ch_e2e_int(db.view_url, VIEWED), 2 * wave);
  res = PQexec(c, sql);
  assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
  assert_false(PQgetisnull(res, 0, 0));        /* it held slots */
  snprintf(held, sizeof held, "%s", PQgetvalue(res, 0, 0));
  PQclear(res);
  PQfinish(c);
  snprintf(sql, sizeof sql, "SELECT count(*) FROM comphost_leases WHERE owner = '%s'", w1_owner);
  assert_int_equal(ch_e2e_wait_int(lease_url, sql, 0, WAIT), 0);
  wait_held(lease_url, SLOTS, 2);
  /* on SIGCONT it commits nothing for the slots it held */
  mark = ch_e2e_int(records_url, "SELECT coalesce(max(id), 0) FROM test_commits");
  kill(w1, SIGCONT);
  print_message("host 1 stopped and let go on at %.1f s\n",
                (double)(chd_now_ms() - started) / 1000.0);
  write_wave(wave);

  /* host 2 dies, its worker with it; a fourth host starts */
  owner_of(lease_url, worker_of(&h[2]), w2_owner, sizeof w2_owner);
  kill(h[2].pid, SIGKILL);
  assert_true(ch_e2e_host_wait(&h[2], WAIT) != -1);
  snprintf(sql, sizeof sql, "SELECT count(*) FROM comphost_leases WHERE owner = '%s'", w2_owner);
  assert_int_equal(ch_e2e_wait_int(lease_url, sql, 0, WAIT), 0);
  start_host(&h[4], 4, position_store);
  owner_of(lease_url, worker_of(&h[4]), w4_owner, sizeof w4_owner);
  write_wave(events - 3 * wave);
  print_message("host 2 killed, host 4 started at %.1f s\n",
                (double)(chd_now_ms() - started) / 1000.0);

  assert_int_equal(ch_e2e_wait_int(db.view_url, VIEWED, events, 300000), events);
  print_message("%d events counted at %.1f s\n", events, (double)(chd_now_ms() - started) / 1000.0);
  /* hosts 1, 3 and 4 share the slots */
  wait_held(lease_url, SLOTS, 3);
  assert_true(slots_of(lease_url, w4_owner) >= 2);
  for (int k = 1; k <= 4; k++) {
    if (k == 2)
      continue;
    owned += metric(&h[k], OWNED);
    takeovers += metric(&h[k], TAKEOVERS);
    given += metric(&h[k], GIVEN);
  }
  assert_true(owned == SLOTS);
  assert_true(takeovers >= 1);
  assert_true(given >= 1);                    /* to make room for hosts 1 and 4 */
  {
    const char *argv[] = { "status", "-c", host_ini(3, position_store, LEASE_MS), "--json",
                           NULL };
    char *out = NULL;
    json_t *doc, *leases;
    size_t i;
    json_t *l;
    assert_int_equal(ch_e2e_run(&db, argv, &out), 0);
    doc = json_loads(out, 0, NULL);
    assert_non_null(doc);
    leases = json_object_get(json_array_get(json_object_get(doc, "groups"), 0), "leases");
    assert_int_equal(json_array_size(leases), SLOTS);
    json_array_foreach(leases, i, l) {
      assert_true(json_is_string(json_object_get(l, "owner")));
      assert_true(json_is_integer(json_object_get(l, "lease_age_ms")));
    }
    json_decref(doc);
    free(out);
  }
  for (int k = 1; k <= 4; k++)
    if (k != 2)
      stop_cleanly(&h[k]);
  assert_int_equal(ch_e2e_int(db.view_url, VIEWED), events);

  check_records(records_url);
  assert_int_equal(int_of(records_url, "SELECT count(*) FROM test_commits WHERE id > %" PRId64
                          " AND committer = 'comphost %s' AND (slot_id, generation) IN (%s)",
                          mark, w1_owner, held), 0);
  assert_true(int_of(records_url, "SELECT count(*) FROM test_claims WHERE owner = '%s'",
                     w4_owner) >= 2);
  assert_true(ch_e2e_log_contains(&h[3], "took over slot") ||
              ch_e2e_log_contains(&h[1], "took over slot") ||
              ch_e2e_log_contains(&h[4], "took over slot"));
  assert_true(ch_e2e_log_contains(&h[1], "lost slot") ||
              ch_e2e_log_contains(&h[1], "gave up"));
  /* the paused worker's sessions were ended: by whoever took its slots
   * first, or, the one in a transaction, by the server (the lease's
   * idle_in_transaction_session_timeout) */
  assert_true(ch_e2e_log_contains(&h[2], "ended its backends") ||
              ch_e2e_log_contains(&h[3], "ended its backends") ||
              ch_e2e_log_contains(&h[1], "idle-in-transaction timeout"));
  print_message("done in %.1f s\n", (double)(chd_now_ms() - started) / 1000.0);
}

#define EVENTS 200000

static void test_three_hosts_view_data(void **state)
{
  (void)state;
  three_hosts("view_data", EVENTS);
}

static void test_three_hosts_message_store(void **state)
{
  (void)state;
  three_hosts("message_store", EVENTS);
}

/*
 * The book's guard (the last global position counted, one for all) drops
 * the events of a consumer group member that is behind another: member 0
 * counts its share first, then member 1 finds the guard past most of its
 * events. home-page keeps its guard per subscriber id and counts them all.
 */
static void test_single_guard_drops_a_slower_member(void **state)
{
  ch_e2e_host h;
  const char *ini;
  int64_t share0, single;
  (void)state;

  ch_e2e_write_many(&db, "viewing", "VideoViewed", 400, 40);
  share0 = ch_e2e_int(db.store_url, "SELECT count(*) FROM message_store.messages WHERE"
                                    " message_store.category(stream_name) = 'viewing' AND"
                                    " MOD(@message_store.hash_64(message_store.cardinal_id("
                                    "stream_name)), 2) = 0");
  assert_true(share0 > 0 && share0 < 400);
  /* member 0 alone, to the end of its share */
  ini = ch_e2e_write_ini(&db, "first.ini",
                         "[single-0]\nlibrary = fx_single_guard\ngroup_member = 0\n"
                         "group_size = 2\n"
                         "[home-0]\nlibrary = " HOME_PAGE "\ngroup_member = 0\ngroup_size = 2\n");
  ch_e2e_host_start(&h, &db, ini, "first.log");
  assert_int_equal(ch_e2e_wait_int(db.view_url, VIEWED, share0, WAIT), share0);
  assert_int_equal(ch_e2e_wait_int(db.view_url, "SELECT (page_data->>'videosWatched')::bigint"
                                   " FROM pages WHERE page_name = 'single-guard'", share0, WAIT),
                   share0);
  stop_cleanly(&h);
  /* then member 1 */
  ini = ch_e2e_write_ini(&db, "second.ini",
                         "[single-1]\nlibrary = fx_single_guard\ngroup_member = 1\n"
                         "group_size = 2\n"
                         "[home-1]\nlibrary = " HOME_PAGE "\ngroup_member = 1\ngroup_size = 2\n");
  ch_e2e_host_start(&h, &db, ini, "second.log");
  assert_int_equal(ch_e2e_wait_int(db.view_url, VIEWED, 400, WAIT), 400);
  ch_e2e_sleep_ms(500);
  stop_cleanly(&h);
  single = ch_e2e_int(db.view_url, "SELECT (page_data->>'videosWatched')::bigint FROM pages"
                                   " WHERE page_name = 'single-guard'");
  print_message("one guard for both members counted %" PRId64 " of 400 events\n", single);
  assert_true(single < 400);                  /* member 1's were dropped */
  assert_int_equal(ch_e2e_int(db.view_url, VIEWED), 400);
  /* one guard per member */
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT count(*) FROM pages, jsonb_object_keys("
                                           "page_data->'lastViewProcessedBy') AS k"
                                           " WHERE page_name = 'home'"), 2);
}

/*
 * A host whose database connection is cut gives its leases up (the other
 * host takes every slot), then takes its share back once it can connect.
 */
static void test_lost_connection_gives_leases_up(void **state)
{
  ch_proxy proxy;
  ch_e2e_db via = db;
  ch_e2e_host a, b;
  char host[128], a_owner[128], b_owner[128], sql[256];
  int port;
  const char *body = "[home-page]\nlibrary = " HOME_PAGE "\ngroup_member = auto\n"
                     "group_size = 8\nposition_store = view_data\nlease_timeout_ms = 2000\n";
  (void)state;

  /* host a reaches both databases through the proxy */
  ch_proxy_target(db.view_url, host, sizeof host, &port);
  ch_proxy_start(&proxy, host, port);
  ch_proxy_url(db.store_url, proxy.port, via.store_url, sizeof via.store_url);
  ch_proxy_url(db.view_url, proxy.port, via.view_url, sizeof via.view_url);
  ch_e2e_host_start(&a, &via, ch_e2e_write_ini(&via, "a.ini", body), "a.log");
  ch_e2e_host_start(&b, &db, ch_e2e_write_ini(&db, "b.ini", body), "b.log");
  wait_held(db.view_url, SLOTS, 2);
  record(db.view_url, false);
  owner_of(db.view_url, worker_of(&a), a_owner, sizeof a_owner);
  owner_of(db.view_url, worker_of(&b), b_owner, sizeof b_owner);
  write_wave(20000);
  assert_true(wait_at_least(db.view_url, VIEWED, 1, WAIT) >= 1);

  ch_proxy_cut(&proxy);
  /* b takes every slot; a says it gave them up */
  snprintf(sql, sizeof sql, "SELECT count(*) FROM comphost_leases WHERE owner = '%s'", b_owner);
  assert_int_equal(ch_e2e_wait_int(db.view_url, sql, SLOTS, WAIT), SLOTS);
  assert_true(ch_e2e_wait_log(&a, "cannot renew the leases", WAIT));
  assert_true(ch_e2e_wait_log(&a, "gave up", WAIT));
  write_wave(20000);
  ch_e2e_sleep_ms(1000);

  /* a is back: it takes its share again */
  ch_proxy_resume(&proxy);
  snprintf(sql, sizeof sql, "SELECT count(*) FROM comphost_leases WHERE owner = '%s'", a_owner);
  assert_int_equal(ch_e2e_wait_int(db.view_url, sql, SLOTS / 2, WAIT), SLOTS / 2);
  assert_true(ch_e2e_log_contains(&a, "renewing the leases again"));
  write_wave(20000);
  assert_int_equal(ch_e2e_wait_int(db.view_url, VIEWED, 60000, 120000), 60000);
  stop_cleanly(&a);
  stop_cleanly(&b);
  ch_proxy_stop(&proxy);
  assert_int_equal(ch_e2e_int(db.view_url, VIEWED), 60000);
  check_records(db.view_url);
  /* a claimed slots again after the cut (generations past its first ones) */
  assert_true(int_of(db.view_url, "SELECT count(*) FROM test_claims WHERE owner = '%s'",
                     a_owner) >= SLOTS / 2);
}

/*
 * Category reads from a replica (message_store_read): a replica that lags
 * delays the events, it loses none. Here the "replica" is a second database
 * into which the test copies the messages late.
 */
static void test_replica_reads(void **state)
{
  char admin[512], replica[80], replica_url[600], replica_admin[600], sql[256], body[1024];
  ch_e2e_host h;
  PGconn *from, *to;
  PGresult *rows;
  (void)state;

  admin_store_url(admin, sizeof admin);
  snprintf(replica, sizeof replica, "%s_r", db.store_name);
  snprintf(sql, sizeof sql, "CREATE DATABASE %s TEMPLATE message_store_template", replica);
  ch_e2e_exec(getenv("COMPHOST_DEV_DB_ADMIN_URL"), sql);
  /* the same role, the replica's database */
  snprintf(replica_url, sizeof replica_url, "%s", db.store_url);
  snprintf(strstr(replica_url, db.store_name), sizeof replica_url -
           (size_t)(strstr(replica_url, db.store_name) - replica_url), "%s'", replica);
  snprintf(replica_admin, sizeof replica_admin, "%s", admin);
  snprintf(strstr(replica_admin, db.store_name), sizeof replica_admin -
           (size_t)(strstr(replica_admin, db.store_name) - replica_admin), "%s'", replica);

  ch_e2e_write_many(&db, "viewing", "VideoViewed", 300, 30);
  snprintf(body, sizeof body, "message_store_read = %s\n\n[home-page]\nlibrary = " HOME_PAGE
           "\ngroup_member = auto\ngroup_size = 2\nposition_store = view_data\n", replica_url);
  ch_e2e_host_start(&h, &db, ch_e2e_write_ini(&db, "replica.ini", body), "replica.log");
  assert_true(ch_e2e_wait_log(&h, "category reads go to", WAIT));
  wait_held(db.view_url, 2, 1);
  ch_e2e_sleep_ms(1500);
  assert_int_equal(ch_e2e_int(db.view_url, VIEWED), 0);      /* the replica has nothing yet */

  /* the replica catches up */
  from = PQconnectdb(admin);
  to = PQconnectdb(replica_admin);
  assert_int_equal(PQstatus(from), CONNECTION_OK);
  assert_int_equal(PQstatus(to), CONNECTION_OK);
  rows = PQexec(from, "SELECT id::text, stream_name, type, position::text,"
                      " global_position::text, data::text, metadata::text, time::text"
                      " FROM message_store.messages AS m WHERE stream_name LIKE 'viewing-%'"
                      " ORDER BY m.global_position");
  assert_int_equal(PQresultStatus(rows), PGRES_TUPLES_OK);
  assert_int_equal(PQntuples(rows), 300);
  for (int r = 0; r < PQntuples(rows); r++) {
    const char *params[8];
    PGresult *res;
    for (int col = 0; col < 8; col++)
      params[col] = PQgetvalue(rows, r, col);
    res = PQexecParams(to, "INSERT INTO message_store.messages (id, stream_name, type, position,"
                           " global_position, data, metadata, time) VALUES ($1::uuid, $2, $3,"
                           " $4::bigint, $5::bigint, $6::jsonb, $7::jsonb, $8::timestamp)",
                       8, NULL, params, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
  }
  PQclear(rows);
  PQfinish(from);
  PQfinish(to);
  assert_int_equal(ch_e2e_wait_int(db.view_url, VIEWED, 300, WAIT), 300);
  stop_cleanly(&h);
  /* positions and leases stayed on the primary */
  assert_int_equal(ch_e2e_int(db.view_url, "SELECT count(*) FROM comphost_positions"
                              " WHERE subscriber_id LIKE 'aggregators:home-page:%'"), 2);
  {
    /* check shows the group and each slot's position */
    const char *argv[] = { "check", "-c", ch_e2e_write_ini(&db, "replica.ini", body), NULL };
    char *out = NULL;
    assert_int_equal(ch_e2e_run(&db, argv, &out), 0);
    assert_non_null(strstr(out, "group of 2 slots shared through leases (lease timeout 10000"
                                " ms)"));
    assert_non_null(strstr(out, "position of slot 0: "));
    assert_non_null(strstr(out, "position of slot 1: "));
    free(out);
  }
  snprintf(sql, sizeof sql, "DROP DATABASE %s WITH (FORCE)", replica);
  ch_e2e_exec(getenv("COMPHOST_DEV_DB_ADMIN_URL"), sql);
}

/* With an argument: only the tests whose names match it (cmocka's pattern). */
int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_single_guard_drops_a_slower_member, setup, teardown),
    cmocka_unit_test_setup_teardown(test_replica_reads, setup, teardown),
    cmocka_unit_test_setup_teardown(test_lost_connection_gives_leases_up, setup, teardown),
    cmocka_unit_test_setup_teardown(test_three_hosts_view_data, setup, teardown),
    cmocka_unit_test_setup_teardown(test_three_hosts_message_store, setup, teardown),
  };

  if (argc > 1)
    cmocka_set_test_filter(argv[1]);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
