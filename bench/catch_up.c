/*
 * catch_up.c - the clients of bench/catch-up, which builds and runs this.
 *
 *   catch_up fetch URL CATEGORY BATCH        libpq alone: get_category_messages
 *                                            in batches, rows not even looked at
 *   catch_up read URL CATEGORY BATCH BYTES   the host's read alone (store/mdb.c):
 *                                            the subscription's bounded statement
 *                                            and its lazy batches, not decoded
 *   catch_up wait URL N                      poll the view database (autocommit,
 *                                            every 2 ms) until the home page
 *                                            counts N views
 *
 * fetch and read print "msgs=M secs=S"; wait prints "first=S1 counted=C
 * done=S2": the seconds from its start to the first commit (and what that
 * commit counted) and to N.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "mdb.h"

static double now(void)
{
  struct timespec t;

  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static PGconn *connect_to(const char *url)
{
  PGconn *c = PQconnectdb(url);

  if (PQstatus(c) != CONNECTION_OK) {
    fprintf(stderr, "catch_up: %s", PQerrorMessage(c));
    exit(1);
  }
  return c;
}

static int fetch(const char *url, const char *category, const char *batch)
{
  PGconn *c = connect_to(url);
  PGresult *res;
  int64_t from = 1, n = 0;
  double t0;

  PQclear(PQexec(c, "SET search_path = message_store, public"));   /* as the host does */
  res = PQprepare(c, "r", "SELECT id, stream_name, type, position, global_position, data,"
                  " metadata, time FROM get_category_messages($1::varchar, $2::bigint,"
                  " $3::bigint)", 3, NULL);
  if (PQresultStatus(res) != PGRES_COMMAND_OK) {
    fprintf(stderr, "catch_up: %s", PQresultErrorMessage(res));
    return 1;
  }
  PQclear(res);
  t0 = now();
  for (;;) {
    char f[24];
    const char *params[3] = { category, f, batch };
    int rows;

    snprintf(f, sizeof f, "%" PRId64, from);
    res = PQexecPrepared(c, "r", 3, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
      fprintf(stderr, "catch_up: %s", PQresultErrorMessage(res));
      return 1;
    }
    rows = PQntuples(res);
    if (rows == 0) {
      PQclear(res);
      break;
    }
    n += rows;
    from = strtoll(PQgetvalue(res, rows - 1, 4), NULL, 10) + 1;
    PQclear(res);
  }
  printf("msgs=%" PRId64 " secs=%.4f\n", n, now() - t0);
  PQfinish(c);
  return 0;
}

static int read_host(const char *url, const char *category, const char *batch,
                     const char *bytes)
{
  chd_mdb *db = chd_mdb_new(url);
  chd_mdb_category_opts opts = { NULL, 0, 0, strtoll(bytes, NULL, 10) };
  int64_t from = 1, n = 0, size = strtoll(batch, NULL, 10);
  double t0;

  if (!db || chd_mdb_connect(db) != CHD_STORE_OK) {
    fprintf(stderr, "catch_up: %s\n", db ? chd_mdb_error(db) : "out of memory");
    return 1;
  }
  t0 = now();
  for (;;) {
    chd_mdb_batch b;

    if (chd_mdb_send_read(db, category, from, size, &opts) != CHD_STORE_OK ||
        chd_mdb_take_read(db, &b) != CHD_STORE_OK) {
      fprintf(stderr, "catch_up: %s\n", chd_mdb_error(db));
      return 1;
    }
    if (b.count == 0) {
      chd_mdb_batch_release(&b);
      break;
    }
    n += (int64_t)b.count;
    from = b.messages[b.count - 1].global_position + 1;
    chd_mdb_batch_release(&b);
  }
  printf("msgs=%" PRId64 " secs=%.4f\n", n, now() - t0);
  chd_mdb_free(db);
  return 0;
}

static int wait_for(const char *url, const char *want)
{
  PGconn *c = connect_to(url);
  int64_t n = strtoll(want, NULL, 10), counted = -1;
  double t0 = now(), first = -1;

  for (;;) {
    PGresult *res = PQexec(c, "SELECT coalesce((SELECT (page_data->>'videosWatched')::bigint"
                              " FROM pages WHERE page_name = 'home'), 0)");
    int64_t v = PQresultStatus(res) == PGRES_TUPLES_OK
                ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : 0;

    PQclear(res);
    if (v > 0 && first < 0) {
      first = now() - t0;
      counted = v;
    }
    if (v >= n)
      break;
    usleep(2000);
  }
  printf("first=%.4f counted=%" PRId64 " done=%.4f\n", first, counted, now() - t0);
  PQfinish(c);
  return 0;
}

int main(int argc, char **argv)
{
  if (argc == 5 && !strcmp(argv[1], "fetch"))
    return fetch(argv[2], argv[3], argv[4]);
  if (argc == 6 && !strcmp(argv[1], "read"))
    return read_host(argv[2], argv[3], argv[4], argv[5]);
  if (argc == 4 && !strcmp(argv[1], "wait"))
    return wait_for(argv[2], argv[3]);
  fprintf(stderr, "usage: catch_up fetch URL CATEGORY BATCH\n"
                  "       catch_up read URL CATEGORY BATCH BYTES\n"
                  "       catch_up wait URL N\n");
  return 2;
}
