/* test_mdb.c - the Message DB client against the dev database. */
#include "support.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream_name.h"
#include "uuid.h"

static chd_mdb *db;
static char cat[64];

static int setup(void **state)
{
  (void)state;
  db = ch_test_connect();
  ch_test_unique_category("mdbTest", cat, sizeof cat);
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  chd_mdb_free(db);
  db = NULL;
  return 0;
}

static void stream_of(const char *id, char *buf, size_t size)
{
  assert_int_equal(chd_stream_name(cat, id, buf, size), 0);
}

static int64_t write_simple(const char *stream, const char *type, int n)
{
  json_t *data = json_pack("{s:i}", "n", n);
  int64_t pos = -99;

  assert_int_equal(chd_mdb_write(db, stream, NULL, type, data, NULL, CH_VERSION_ANY, &pos),
                   CHD_STORE_OK);
  json_decref(data);
  return pos;
}

static void test_round_trip(void **state)
{
  char stream[128], id[CHD_UUID_LEN];
  json_t *data = json_pack("{s:s, s:i, s:{s:b}}", "email", "a@b.c", "n", 7, "nested", "ok", 1);
  json_t *meta = json_pack("{s:s, s:s}", "traceId", "t-1", "userId", "u-1");
  chd_mdb_batch b;
  int64_t pos = -1;
  (void)state;

  stream_of("rt", stream, sizeof stream);
  chd_uuid_v4(id);
  assert_int_equal(chd_mdb_write(db, stream, id, "Registered", data, meta, CH_VERSION_ANY, &pos),
                   CHD_STORE_OK);
  assert_int_equal(pos, 0);
  assert_int_equal(chd_mdb_read_stream(db, stream, 0, 1000, &b), CHD_STORE_OK);
  assert_int_equal(b.count, 1);
  assert_string_equal(b.messages[0].id, id);
  assert_string_equal(b.messages[0].stream_name, stream);
  assert_string_equal(b.messages[0].type, "Registered");
  assert_int_equal(b.messages[0].position, 0);
  assert_true(b.messages[0].global_position > 0);
  assert_true(json_equal(b.messages[0].data, data));
  assert_true(json_equal(b.messages[0].metadata, meta));
  assert_int_equal(strlen(b.messages[0].time) >= 19, 1);   /* YYYY-MM-DD HH:MM:SS */
  assert_int_equal(b.messages[0].time[10], ' ');
  chd_mdb_batch_release(&b);
  json_decref(data);
  json_decref(meta);
}

static void test_null_data_and_metadata_read_as_empty_objects(void **state)
{
  char stream[128];
  chd_mdb_batch b;
  (void)state;

  stream_of("nulls", stream, sizeof stream);
  assert_int_equal(chd_mdb_write(db, stream, NULL, "Nothing", NULL, NULL, CH_VERSION_ANY, NULL),
                   CHD_STORE_OK);
  assert_int_equal(chd_mdb_read_last(db, stream, NULL, &b), CHD_STORE_OK);
  assert_int_equal(b.count, 1);
  assert_true(json_is_object(b.messages[0].data) && json_object_size(b.messages[0].data) == 0);
  assert_true(json_is_object(b.messages[0].metadata) &&
              json_object_size(b.messages[0].metadata) == 0);
  chd_mdb_batch_release(&b);
}

static void test_positions_and_batches(void **state)
{
  char stream[128];
  chd_mdb_batch b;
  (void)state;

  stream_of("pos", stream, sizeof stream);
  for (int i = 0; i < 5; i++)
    assert_int_equal(write_simple(stream, "Counted", i), i);

  assert_int_equal(chd_mdb_read_stream(db, stream, 0, 1000, &b), CHD_STORE_OK);
  assert_int_equal(b.count, 5);
  for (size_t i = 0; i < b.count; i++) {
    assert_int_equal(b.messages[i].position, (int64_t)i);
    assert_int_equal(json_integer_value(json_object_get(b.messages[i].data, "n")), (int)i);
    if (i > 0)
      assert_true(b.messages[i].global_position > b.messages[i - 1].global_position);
  }
  chd_mdb_batch_release(&b);

  assert_int_equal(chd_mdb_read_stream(db, stream, 2, 2, &b), CHD_STORE_OK);
  assert_int_equal(b.count, 2);
  assert_int_equal(b.messages[0].position, 2);
  assert_int_equal(b.messages[1].position, 3);
  chd_mdb_batch_release(&b);

  assert_int_equal(chd_mdb_read_stream(db, stream, 5, 10, &b), CHD_STORE_OK);
  assert_int_equal(b.count, 0);
  chd_mdb_batch_release(&b);

  assert_int_equal(chd_mdb_read_stream(db, stream, 0, -1, &b), CHD_STORE_OK);
  assert_int_equal(b.count, 5);
  chd_mdb_batch_release(&b);
}

static void test_expected_version_empty(void **state)
{
  char stream[128];
  const chd_mdb_conflict *c;
  int64_t pos;
  (void)state;

  stream_of("ev1", stream, sizeof stream);
  assert_null(chd_mdb_conflict_info(db));
  assert_int_equal(chd_mdb_write(db, stream, NULL, "First", NULL, NULL, CH_VERSION_EMPTY, &pos),
                   CHD_STORE_OK);
  assert_int_equal(pos, 0);
  assert_int_equal(chd_mdb_write(db, stream, NULL, "Again", NULL, NULL, CH_VERSION_EMPTY, &pos),
                   CHD_STORE_CONFLICT);
  c = chd_mdb_conflict_info(db);
  assert_non_null(c);
  assert_string_equal(c->stream_name, stream);
  assert_int_equal(c->expected_version, -1);
  assert_int_equal(c->actual_version, 0);
  assert_non_null(strstr(chd_mdb_error(db), "version conflict"));
  assert_non_null(strstr(chd_mdb_error(db), stream));
}

static void test_expected_version_n(void **state)
{
  char stream[128];
  const chd_mdb_conflict *c;
  int64_t pos, version;
  (void)state;

  stream_of("evn", stream, sizeof stream);
  assert_int_equal(chd_mdb_stream_version(db, stream, &version), CHD_STORE_OK);
  assert_int_equal(version, -1);
  write_simple(stream, "A", 0);
  assert_int_equal(chd_mdb_write(db, stream, NULL, "B", NULL, NULL, 0, &pos), CHD_STORE_OK);
  assert_int_equal(pos, 1);
  assert_int_equal(chd_mdb_write(db, stream, NULL, "C", NULL, NULL, 1, &pos), CHD_STORE_OK);
  assert_int_equal(pos, 2);
  assert_int_equal(chd_mdb_stream_version(db, stream, &version), CHD_STORE_OK);
  assert_int_equal(version, 2);

  /* a stale writer: conflict carries stream, expected and actual */
  assert_int_equal(chd_mdb_write(db, stream, NULL, "D", NULL, NULL, 1, &pos), CHD_STORE_CONFLICT);
  c = chd_mdb_conflict_info(db);
  assert_non_null(c);
  assert_string_equal(c->stream_name, stream);
  assert_int_equal(c->expected_version, 1);
  assert_int_equal(c->actual_version, 2);

  /* the next successful call clears the conflict */
  assert_int_equal(chd_mdb_stream_version(db, stream, &version), CHD_STORE_OK);
  assert_null(chd_mdb_conflict_info(db));
}

static void test_conflict_on_empty_stream_reports_minus_one(void **state)
{
  char stream[128];
  const chd_mdb_conflict *c;
  (void)state;

  /* the book's regex misses a negative actual version: we must not */
  stream_of("ev-empty", stream, sizeof stream);
  assert_int_equal(chd_mdb_write(db, stream, NULL, "X", NULL, NULL, 3, NULL), CHD_STORE_CONFLICT);
  c = chd_mdb_conflict_info(db);
  assert_non_null(c);
  assert_int_equal(c->expected_version, 3);
  assert_int_equal(c->actual_version, -1);
}

static void test_duplicate_id(void **state)
{
  char s1[128], s2[128], id[CHD_UUID_LEN];
  (void)state;

  stream_of("dup1", s1, sizeof s1);
  stream_of("dup2", s2, sizeof s2);
  chd_uuid_v4(id);
  assert_int_equal(chd_mdb_write(db, s1, id, "Once", NULL, NULL, CH_VERSION_ANY, NULL),
                   CHD_STORE_OK);
  /* the same id in the same or in another stream: refused, distinctly */
  assert_int_equal(chd_mdb_write(db, s1, id, "Once", NULL, NULL, CH_VERSION_ANY, NULL),
                   CHD_STORE_DUPLICATE_ID);
  assert_non_null(strstr(chd_mdb_error(db), id));
  assert_non_null(strstr(chd_mdb_error(db), "already in the store"));
  assert_int_equal(chd_mdb_write(db, s2, id, "Once", NULL, NULL, CH_VERSION_ANY, NULL),
                   CHD_STORE_DUPLICATE_ID);
}

/* Inside a transaction, a checked write answers a reused id and a wrong
 * version without aborting it; a write with commit commits in the same
 * call. */
static void test_checked_writes_keep_the_transaction(void **state)
{
  chd_mdb_write_opts checked = { .notify = true, .checked = true };
  chd_mdb_write_opts commit = { .commit = true };
  char stream[128], id[CHD_UUID_LEN];
  const chd_mdb_conflict *c;
  int64_t pos = -9, v;
  (void)state;

  stream_of("checked", stream, sizeof stream);
  chd_uuid_v4(id);
  assert_int_equal(chd_mdb_exec(db, "BEGIN"), CHD_STORE_OK);
  assert_int_equal(chd_mdb_write_with(db, stream, id, "A", NULL, NULL, -1, &checked, &pos),
                   CHD_STORE_OK);
  assert_int_equal(pos, 0);
  /* the same id again: found before writing, even with a wrong version */
  assert_int_equal(chd_mdb_write_with(db, stream, id, "A", NULL, NULL, -1, &checked, NULL),
                   CHD_STORE_DUPLICATE_ID);
  assert_non_null(strstr(chd_mdb_error(db), "already in the store"));
  /* a wrong version: a conflict, with what the stream is at */
  assert_int_equal(chd_mdb_write_with(db, stream, NULL, "B", NULL, NULL, 5, &checked, NULL),
                   CHD_STORE_CONFLICT);
  c = chd_mdb_conflict_info(db);
  assert_non_null(c);
  assert_int_equal(c->expected_version, 5);
  assert_int_equal(c->actual_version, 0);
  assert_non_null(strstr(chd_mdb_error(db), "expected version 5, stream is at 0"));
  /* the transaction goes on: one more write, and the commit with it */
  assert_int_equal(chd_mdb_write_with(db, stream, NULL, "B", NULL, NULL, 0, &commit, &pos),
                   CHD_STORE_OK);
  assert_int_equal(pos, 1);
  assert_int_equal(chd_mdb_stream_version(db, stream, &v), CHD_STORE_OK);
  assert_int_equal(v, 1);
  /* committed: a ROLLBACK now finds no transaction, and changes nothing */
  assert_int_equal(chd_mdb_exec(db, "ROLLBACK"), CHD_STORE_OK);
  assert_int_equal(chd_mdb_stream_version(db, stream, &v), CHD_STORE_OK);
  assert_int_equal(v, 1);

  /* a failing write with commit: the transaction is aborted, nothing is in */
  assert_int_equal(chd_mdb_exec(db, "BEGIN"), CHD_STORE_OK);
  assert_int_equal(chd_mdb_write_with(db, stream, NULL, "C", NULL, NULL, 1, NULL, NULL),
                   CHD_STORE_OK);
  assert_int_equal(chd_mdb_write_with(db, stream, NULL, "D", NULL, NULL, 7, &commit, NULL),
                   CHD_STORE_CONFLICT);
  assert_int_equal(chd_mdb_exec(db, "ROLLBACK"), CHD_STORE_OK);
  assert_int_equal(chd_mdb_stream_version(db, stream, &v), CHD_STORE_OK);
  assert_int_equal(v, 1);
}

static void test_write_refuses_bad_input(void **state)
{
  char stream[128];
  (void)state;

  stream_of("bad", stream, sizeof stream);
  assert_int_equal(chd_mdb_write(db, stream, NULL, NULL, NULL, NULL, CH_VERSION_ANY, NULL),
                   CHD_STORE_INVALID);
  assert_non_null(strstr(chd_mdb_error(db), "messages must have a type"));
  assert_int_equal(chd_mdb_write(db, stream, NULL, "", NULL, NULL, CH_VERSION_ANY, NULL),
                   CHD_STORE_INVALID);
  assert_int_equal(chd_mdb_write(db, stream, "not-a-uuid", "T", NULL, NULL, CH_VERSION_ANY, NULL),
                   CHD_STORE_INVALID);
  assert_non_null(strstr(chd_mdb_error(db), "'not-a-uuid' is not a UUID"));
  assert_int_equal(chd_mdb_write(db, "$all", NULL, "T", NULL, NULL, CH_VERSION_ANY, NULL),
                   CHD_STORE_INVALID);
  assert_int_equal(chd_mdb_write(db, "", NULL, "T", NULL, NULL, CH_VERSION_ANY, NULL),
                   CHD_STORE_INVALID);
  assert_int_equal(chd_mdb_write(db, stream, NULL, "T", NULL, NULL, -2, NULL), CHD_STORE_INVALID);
  /* nothing reached the store */
  {
    int64_t v;
    assert_int_equal(chd_mdb_stream_version(db, stream, &v), CHD_STORE_OK);
    assert_int_equal(v, -1);
  }
}

static void test_category_reads(void **state)
{
  char s[3][128];
  chd_mdb_batch all, b;
  int64_t first;
  (void)state;

  stream_of("a", s[0], sizeof s[0]);
  stream_of("b", s[1], sizeof s[1]);
  stream_of("c", s[2], sizeof s[2]);
  for (int i = 0; i < 9; i++)
    write_simple(s[i % 3], "Seen", i);

  assert_int_equal(chd_mdb_read_category(db, cat, 1, 1000, NULL, &all), CHD_STORE_OK);
  assert_true(all.count >= 9);
  for (size_t i = 1; i < all.count; i++)
    assert_true(all.messages[i].global_position > all.messages[i - 1].global_position);
  for (size_t i = 0; i < all.count; i++) {
    char c[64];
    chd_stream_category(all.messages[i].stream_name, c, sizeof c);
    assert_string_equal(c, cat);
  }
  first = all.messages[0].global_position;

  /* batches: inclusive from-position, at most batch_size */
  assert_int_equal(chd_mdb_read_category(db, cat, first, 4, NULL, &b), CHD_STORE_OK);
  assert_int_equal(b.count, 4);
  assert_int_equal(b.messages[0].global_position, first);
  assert_int_equal(b.messages[3].global_position, all.messages[3].global_position);
  chd_mdb_batch_release(&b);

  assert_int_equal(chd_mdb_read_category(db, cat, all.messages[4].global_position, 3, NULL, &b),
                   CHD_STORE_OK);
  assert_int_equal(b.count, 3);
  assert_int_equal(b.messages[0].global_position, all.messages[4].global_position);
  assert_string_equal(b.messages[0].id, all.messages[4].id);
  chd_mdb_batch_release(&b);

  assert_int_equal(chd_mdb_read_category(db, cat,
                                         all.messages[all.count - 1].global_position + 1, 10,
                                         NULL, &b), CHD_STORE_OK);
  assert_int_equal(b.count, 0);
  chd_mdb_batch_release(&b);
  chd_mdb_batch_release(&all);
}

static void test_category_refuses_bad_input(void **state)
{
  chd_mdb_batch b;
  chd_mdb_category_opts o = { 0 };
  (void)state;

  assert_int_equal(chd_mdb_read_category(db, "has-dash", 1, 10, NULL, &b), CHD_STORE_INVALID);
  assert_non_null(strstr(chd_mdb_error(db), "'has-dash' is not a category"));
  o.group_member = 1;
  assert_int_equal(chd_mdb_read_category(db, cat, 1, 10, &o, &b), CHD_STORE_INVALID);
  assert_non_null(strstr(chd_mdb_error(db), "without a group size"));
  o.group_size = 2;
  o.group_member = 2;
  assert_int_equal(chd_mdb_read_category(db, cat, 1, 10, &o, &b), CHD_STORE_INVALID);
  assert_non_null(strstr(chd_mdb_error(db), "out of range (0 to 1)"));
  o.group_member = -1;
  assert_int_equal(chd_mdb_read_category(db, cat, 1, 10, &o, &b), CHD_STORE_INVALID);
  o.group_member = 0;
  o.group_size = 40000;
  assert_int_equal(chd_mdb_read_category(db, cat, 1, 10, &o, &b), CHD_STORE_INVALID);
  o.group_size = 0;
  o.correlation = "x-1";
  assert_int_equal(chd_mdb_read_category(db, cat, 1, 10, &o, &b), CHD_STORE_INVALID);
  assert_non_null(strstr(chd_mdb_error(db), "correlation"));
  assert_int_equal(chd_mdb_read_stream(db, cat, 0, 10, &b), CHD_STORE_INVALID);
  assert_non_null(strstr(chd_mdb_error(db), "is a category, not a stream"));
  assert_int_equal(chd_mdb_read_last(db, cat, NULL, &b), CHD_STORE_INVALID);
}

static void test_consumer_group_members_split_the_category(void **state)
{
  char gcat[64], stream[128], id[CHD_UUID_LEN];
  chd_mdb_batch m0, m1;
  chd_mdb_category_opts o0 = { .group_member = 0, .group_size = 2 };
  chd_mdb_category_opts o1 = { .group_member = 1, .group_size = 2 };
  (void)state;

  ch_test_unique_category("groupTest", gcat, sizeof gcat);
  for (int i = 0; i < 40; i++) {
    chd_uuid_v4(id);
    assert_int_equal(chd_stream_name(gcat, id, stream, sizeof stream), 0);
    write_simple(stream, "Seen", i);
    /* a second message of the same entity through a compound id */
    if (i % 4 == 0) {
      char compound[160];
      snprintf(compound, sizeof compound, "%s+extra", stream);
      write_simple(compound, "Seen", 100 + i);
    }
  }
  assert_int_equal(chd_mdb_read_category(db, gcat, 1, -1, &o0, &m0), CHD_STORE_OK);
  assert_int_equal(chd_mdb_read_category(db, gcat, 1, -1, &o1, &m1), CHD_STORE_OK);
  assert_int_equal(m0.count + m1.count, 50);
  assert_true(m0.count > 0 && m1.count > 0);
  /* no message is seen by both */
  for (size_t i = 0; i < m0.count; i++)
    for (size_t j = 0; j < m1.count; j++)
      assert_string_not_equal(m0.messages[i].id, m1.messages[j].id);
  /* an entity and its compound-id stream go to the same member */
  for (size_t i = 0; i < m0.count; i++) {
    char card[64];
    chd_stream_cardinal_id(m0.messages[i].stream_name, card, sizeof card);
    for (size_t j = 0; j < m1.count; j++) {
      char card1[64];
      chd_stream_cardinal_id(m1.messages[j].stream_name, card1, sizeof card1);
      assert_string_not_equal(card, card1);
    }
  }
  chd_mdb_batch_release(&m0);
  chd_mdb_batch_release(&m1);
}

/* The members' reads, written out in SQL (mdb.c's GROUP_FILTER), pick the
 * messages that Message DB's own get_category_messages() picks. */
static void test_group_reads_match_message_db(void **state)
{
  char gcat[64], stream[160], id[CHD_UUID_LEN];
  size_t total = 0;
  (void)state;

  ch_test_unique_category("groupSame", gcat, sizeof gcat);
  for (int i = 0; i < 60; i++) {
    chd_uuid_v4(id);
    assert_int_equal(chd_stream_name(gcat, id, stream, sizeof stream), 0);
    write_simple(stream, "Seen", i);
    if (i % 5 == 0) {
      char compound[200];
      snprintf(compound, sizeof compound, "%s+part-%d", stream, i);
      write_simple(compound, "Seen", 100 + i);
    }
  }
  write_simple(gcat, "Seen", 999);     /* a stream without an id: no member's */
  for (int64_t member = 0; member < 5; member++) {
    char m[24];
    const char *params[2] = { gcat, m };
    PGresult *res;
    chd_mdb_batch b, bounded;
    chd_mdb_category_opts o = { .group_member = member, .group_size = 5 };
    chd_mdb_category_opts ob = { .group_member = member, .group_size = 5,
                                 .max_bytes = 1 << 20 };

    snprintf(m, sizeof m, "%" PRId64, member);
    res = PQexecParams(chd_mdb_conn(db), "SELECT global_position FROM"
                       " message_store.get_category_messages($1, 1, -1, NULL, $2::bigint, 5,"
                       " NULL)", 2, NULL, params, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_int_equal(chd_mdb_read_category(db, gcat, 1, -1, &o, &b), CHD_STORE_OK);
    assert_int_equal(chd_mdb_read_category(db, gcat, 1, 1000, &ob, &bounded), CHD_STORE_OK);
    assert_int_equal(b.count, (size_t)PQntuples(res));
    assert_int_equal(bounded.count, b.count);
    for (size_t i = 0; i < b.count; i++) {
      assert_int_equal(b.messages[i].global_position,
                       strtoll(PQgetvalue(res, (int)i, 0), NULL, 10));
      assert_int_equal(bounded.messages[i].global_position, b.messages[i].global_position);
    }
    total += b.count;
    PQclear(res);
    chd_mdb_batch_release(&b);
    chd_mdb_batch_release(&bounded);
  }
  assert_int_equal(total, 72);
}

static void test_read_last(void **state)
{
  char stream[128], empty[128];
  chd_mdb_batch b;
  (void)state;

  stream_of("last", stream, sizeof stream);
  stream_of("never-written", empty, sizeof empty);
  write_simple(stream, "Opened", 0);
  write_simple(stream, "Deposited", 1);
  write_simple(stream, "Deposited", 2);
  write_simple(stream, "Closed", 3);

  assert_int_equal(chd_mdb_read_last(db, stream, NULL, &b), CHD_STORE_OK);
  assert_int_equal(b.count, 1);
  assert_string_equal(b.messages[0].type, "Closed");
  assert_int_equal(b.messages[0].position, 3);
  chd_mdb_batch_release(&b);

  assert_int_equal(chd_mdb_read_last(db, stream, "Deposited", &b), CHD_STORE_OK);
  assert_int_equal(b.count, 1);
  assert_int_equal(b.messages[0].position, 2);
  assert_int_equal(json_integer_value(json_object_get(b.messages[0].data, "n")), 2);
  chd_mdb_batch_release(&b);

  assert_int_equal(chd_mdb_read_last(db, stream, "Withdrawn", &b), CHD_STORE_OK);
  assert_int_equal(b.count, 0);
  chd_mdb_batch_release(&b);

  assert_int_equal(chd_mdb_read_last(db, empty, NULL, &b), CHD_STORE_OK);
  assert_int_equal(b.count, 0);
  chd_mdb_batch_release(&b);

  assert_int_equal(chd_mdb_read_stream(db, empty, 0, 10, &b), CHD_STORE_OK);
  assert_int_equal(b.count, 0);
  assert_null(b.messages);
  chd_mdb_batch_release(&b);
}

static void test_read_all_is_ordered_across_categories(void **state)
{
  char other[64], s1[128], s2[128];
  chd_mdb_batch b;
  int64_t first = 0;
  int seen = 0;
  (void)state;

  ch_test_unique_category("allTest", other, sizeof other);
  stream_of("all1", s1, sizeof s1);
  assert_int_equal(chd_stream_name(other, "all2", s2, sizeof s2), 0);
  for (int i = 0; i < 6; i++) {
    json_t *d = json_pack("{s:i}", "n", i);
    int64_t pos;
    chd_mdb_batch last;
    const char *s = i % 2 ? s2 : s1;
    assert_int_equal(chd_mdb_write(db, s, NULL, "Mixed", d, NULL, CH_VERSION_ANY, &pos),
                     CHD_STORE_OK);
    json_decref(d);
    if (i == 0) {
      assert_int_equal(chd_mdb_read_last(db, s, NULL, &last), CHD_STORE_OK);
      first = last.messages[0].global_position;
      chd_mdb_batch_release(&last);
    }
  }
  assert_int_equal(chd_mdb_read(db, "$all", first, 1000, &b), CHD_STORE_OK);
  assert_int_equal(b.messages[0].global_position, first);   /* inclusive */
  for (size_t i = 0; i < b.count; i++) {
    if (i > 0)
      assert_true(b.messages[i].global_position > b.messages[i - 1].global_position);
    if (!strcmp(b.messages[i].stream_name, s1) || !strcmp(b.messages[i].stream_name, s2)) {
      assert_int_equal(json_integer_value(json_object_get(b.messages[i].data, "n")), seen);
      seen++;
    }
  }
  assert_int_equal(seen, 6);
  chd_mdb_batch_release(&b);

  assert_int_equal(chd_mdb_read_all(db, first, 2, 0, &b), CHD_STORE_OK);
  assert_int_equal(b.count, 2);
  chd_mdb_batch_release(&b);
}

static void test_read_dispatches_on_name(void **state)
{
  char stream[128];
  chd_mdb_batch b;
  (void)state;

  stream_of("disp", stream, sizeof stream);
  write_simple(stream, "One", 0);
  assert_int_equal(chd_mdb_read(db, stream, 0, 10, &b), CHD_STORE_OK);
  assert_int_equal(b.count, 1);
  chd_mdb_batch_release(&b);
  assert_int_equal(chd_mdb_read(db, cat, 1, 1000, &b), CHD_STORE_OK);
  assert_true(b.count >= 1);
  chd_mdb_batch_release(&b);
}

/* Write a message with data and metadata given as SQL (jsonb, or NULL),
 * as anyone can: Message DB takes any JSON PostgreSQL accepts. */
static void write_raw(const char *stream, const char *data_sql, const char *meta_sql)
{
  char sql[1024];
  PGresult *res;

  snprintf(sql, sizeof sql, "SELECT write_message(gen_random_uuid()::varchar, '%s', 'Raw',"
           " %s, %s)", stream, data_sql, meta_sql);
  res = PQexec(chd_mdb_conn(db), sql);
  if (PQresultStatus(res) != PGRES_TUPLES_OK)
    fail_msg("%s: %s", sql, PQresultErrorMessage(res));
  PQclear(res);
}

/*
 * A read in two steps gives a lazy batch: the envelope of every message,
 * data and metadata NULL until decoded, one part at a time. A message whose
 * data jansson cannot decode reads like the others; it fails when its data
 * is asked for, then for good, with empty objects, as a batch decoded at
 * read has it.
 */
static void test_lazy_batches_decode_on_demand(void **state)
{
  char s1[128], s2[128], s3[128];
  chd_mdb_batch b, eager;
  ch_message copy;
  const char *why;
  (void)state;

  ch_test_unique_category("mdbLazy", cat, sizeof cat);   /* messages of this test only */
  stream_of("lazy1", s1, sizeof s1);
  stream_of("lazy2", s2, sizeof s2);
  stream_of("lazy3", s3, sizeof s3);
  write_raw(s1, "'{\"n\": 1}'", "'{\"traceId\": \"t-1\"}'");
  write_raw(s2, "'{\"n\": 9223372036854775808}'", "'{\"traceId\": \"t-2\"}'");
  write_raw(s3, "NULL", "NULL");

  assert_false(chd_mdb_read_pending(db));
  assert_int_equal(chd_mdb_send_read(db, cat, 1, 10, NULL), CHD_STORE_OK);
  assert_true(chd_mdb_read_pending(db));
  assert_int_equal(chd_mdb_take_read(db, &b), CHD_STORE_OK);
  assert_false(chd_mdb_read_pending(db));
  assert_int_equal(b.count, 3);
  assert_non_null(b.texts);
  assert_null(b.decode_errors);
  for (size_t i = 0; i < b.count; i++) {
    assert_null(b.messages[i].data);
    assert_null(b.messages[i].metadata);
    assert_string_equal(b.messages[i].type, "Raw");
  }
  assert_string_equal(b.messages[1].stream_name, s2);

  /* one part at a time */
  assert_null(chd_mdb_batch_decode(&b, 0, CHD_MDB_DATA));
  assert_int_equal(json_integer_value(json_object_get(b.messages[0].data, "n")), 1);
  assert_null(b.messages[0].metadata);
  assert_null(chd_mdb_batch_decode(&b, 0, CHD_MDB_METADATA));
  assert_string_equal(json_string_value(json_object_get(b.messages[0].metadata, "traceId")),
                      "t-1");

  /* the metadata of the second decodes; its data does not, for good */
  assert_null(chd_mdb_batch_decode(&b, 1, CHD_MDB_METADATA));
  why = chd_mdb_batch_decode(&b, 1, CHD_MDB_DATA);
  assert_non_null(why);
  assert_non_null(strstr(why, "data is not JSON that can be decoded"));
  assert_non_null(b.decode_errors);
  assert_ptr_equal(b.decode_errors[1], why);
  assert_ptr_equal(chd_mdb_batch_decode(&b, 1, CHD_MDB_DATA | CHD_MDB_METADATA), why);
  assert_true(json_is_object(b.messages[1].data) && json_object_size(b.messages[1].data) == 0);
  assert_true(json_is_object(b.messages[1].metadata));

  /* SQL NULL decodes as {} */
  assert_null(chd_mdb_batch_decode(&b, 2, CHD_MDB_DATA | CHD_MDB_METADATA));
  assert_int_equal(json_object_size(b.messages[2].data), 0);
  assert_int_equal(json_object_size(b.messages[2].metadata), 0);

  /* finding a message: by its global position and id, also from a copy */
  for (size_t i = 0; i < b.count; i++) {
    copy = b.messages[i];
    assert_int_equal(chd_mdb_batch_find(&b, &copy), (ptrdiff_t)i);
  }
  copy = b.messages[1];
  copy.id = "00000000-0000-4000-8000-000000000000";
  assert_int_equal(chd_mdb_batch_find(&b, &copy), -1);
  copy = b.messages[2];
  copy.global_position++;
  assert_int_equal(chd_mdb_batch_find(&b, &copy), -1);

  /* a read decoded at once says the same */
  assert_int_equal(chd_mdb_read_category(db, cat, 1, 10, NULL, &eager), CHD_STORE_OK);
  assert_int_equal(eager.count, 3);
  assert_null(eager.texts);
  assert_null(eager.decode_errors[0]);
  assert_string_equal(eager.decode_errors[1], b.decode_errors[1]);
  assert_ptr_equal(chd_mdb_batch_decode(&eager, 1, CHD_MDB_DATA), eager.decode_errors[1]);
  assert_null(chd_mdb_batch_decode(&eager, 0, CHD_MDB_DATA));
  assert_true(json_equal(eager.messages[0].data, b.messages[0].data));
  chd_mdb_batch_release(&eager);
  chd_mdb_batch_release(&b);
}

/*
 * One read under way at a time: a second send is refused, a take without a
 * send too. Reads in two steps go by name ("$all", a category, a stream) and
 * keep the byte bound; a reconnection forgets a read under way.
 */
static void test_reads_in_two_steps(void **state)
{
  char stream[128];
  chd_mdb_category_opts bounded = { NULL, 0, 0, 1024 };
  chd_mdb_category_opts group = { NULL, 0, 2, 0 };
  chd_mdb_batch b;
  int64_t first;
  (void)state;

  ch_test_unique_category("mdbTwo", cat, sizeof cat);    /* messages of this test only */
  stream_of("two", stream, sizeof stream);
  write_simple(stream, "Small", 1);
  write_raw(stream, "jsonb_build_object('pad', repeat('x', 2000))", "NULL");
  write_simple(stream, "Small", 3);

  assert_int_equal(chd_mdb_send_read(db, cat, 1, 10, NULL), CHD_STORE_OK);
  assert_int_equal(chd_mdb_send_read(db, cat, 1, 10, NULL), CHD_STORE_INVALID);
  assert_non_null(strstr(chd_mdb_error(db), "under way"));
  assert_int_equal(chd_mdb_take_read(db, &b), CHD_STORE_OK);
  assert_int_equal(b.count, 3);
  first = b.messages[0].global_position;
  chd_mdb_batch_release(&b);
  assert_int_equal(chd_mdb_take_read(db, &b), CHD_STORE_INVALID);
  assert_int_equal(b.count, 0);

  /* bounded: the large one comes without its data, flagged */
  assert_int_equal(chd_mdb_send_read(db, cat, first, 10, &bounded), CHD_STORE_OK);
  assert_int_equal(chd_mdb_take_read(db, &b), CHD_STORE_OK);
  assert_int_equal(b.count, 2);             /* the bytes before the third pass the bound */
  assert_null(chd_mdb_batch_decode(&b, 0, CHD_MDB_DATA));
  {
    const char *why = chd_mdb_batch_decode(&b, 1, CHD_MDB_DATA);
    assert_non_null(why);
    assert_non_null(strstr(why, "larger than batch_bytes (1024 bytes)"));
  }
  chd_mdb_batch_release(&b);
  /* "$all" (other writers may interleave: look for ours) */
  assert_int_equal(chd_mdb_send_read(db, "$all", first, 1024, &bounded), CHD_STORE_OK);
  assert_int_equal(chd_mdb_take_read(db, &b), CHD_STORE_OK);
  assert_int_equal(b.messages[0].global_position, first);
  for (size_t i = 0; i < b.count; i++)
    if (!strcmp(b.messages[i].stream_name, stream) && !strcmp(b.messages[i].type, "Raw"))
      assert_non_null(chd_mdb_batch_decode(&b, i, CHD_MDB_DATA));
  chd_mdb_batch_release(&b);

  /* an entity stream, from a stream position */
  assert_int_equal(chd_mdb_send_read(db, stream, 2, 10, NULL), CHD_STORE_OK);
  assert_int_equal(chd_mdb_take_read(db, &b), CHD_STORE_OK);
  assert_int_equal(b.count, 1);
  assert_null(chd_mdb_batch_decode(&b, 0, CHD_MDB_DATA));
  assert_int_equal(json_integer_value(json_object_get(b.messages[0].data, "n")), 3);
  chd_mdb_batch_release(&b);

  /* refused before the server */
  assert_int_equal(chd_mdb_send_read(db, "$all", 1, 10, &group), CHD_STORE_INVALID);
  assert_int_equal(chd_mdb_send_read(db, "", 1, 10, NULL), CHD_STORE_INVALID);
  assert_false(chd_mdb_read_pending(db));

  /* a new session has nothing under way */
  assert_int_equal(chd_mdb_send_read(db, cat, 1, 10, NULL), CHD_STORE_OK);
  assert_int_equal(chd_mdb_connect(db), CHD_STORE_OK);
  assert_false(chd_mdb_read_pending(db));
  assert_int_equal(chd_mdb_send_read(db, cat, 1, 10, NULL), CHD_STORE_OK);
  assert_int_equal(chd_mdb_take_read(db, &b), CHD_STORE_OK);
  assert_int_equal(b.count, 3);
  chd_mdb_batch_release(&b);
}

static void test_server_down_is_a_clear_error(void **state)
{
  chd_mdb *down = chd_mdb_new("postgresql://message_store@127.0.0.1:1/message_store");
  chd_mdb_batch b;
  (void)state;

  assert_int_equal(chd_mdb_connect(down), CHD_STORE_DISCONNECTED);
  assert_non_null(strstr(chd_mdb_error(down), "cannot connect to message store at "
                                             "message_store@127.0.0.1:1/message_store"));
  /* calls on a client with no server fail the same way, without a crash */
  assert_int_equal(chd_mdb_read_category(down, "x", 1, 10, NULL, &b), CHD_STORE_DISCONNECTED);
  assert_int_equal(b.count, 0);
  assert_int_equal(chd_mdb_write(down, "x-1", NULL, "T", NULL, NULL, CH_VERSION_ANY, NULL),
                   CHD_STORE_DISCONNECTED);
  /* bounded reconnect gives up */
  assert_int_equal(chd_mdb_reconnect(down, 200), CHD_STORE_DISCONNECTED);
  chd_mdb_free(down);
}

static void test_reconnect_can_be_interrupted(void **state)
{
  chd_mdb *down = chd_mdb_new("host=127.0.0.1 port=1 dbname=x");
  volatile sig_atomic_t stop = 1;
  (void)state;

  chd_mdb_set_interrupt(down, &stop);
  assert_int_equal(chd_mdb_reconnect(down, -1), CHD_STORE_INTERRUPTED);
  assert_non_null(strstr(chd_mdb_error(down), "interrupted"));
  chd_mdb_free(down);
}

static void test_bad_conninfo(void **state)
{
  chd_mdb *bad = chd_mdb_new("host=localhost port");
  (void)state;

  assert_int_equal(chd_mdb_connect(bad), CHD_STORE_INVALID);
  assert_non_null(strstr(chd_mdb_error(bad), "invalid connection string"));
  chd_mdb_free(bad);
  bad = chd_mdb_new("postgresql://[::1");
  assert_int_equal(chd_mdb_connect(bad), CHD_STORE_INVALID);
  chd_mdb_free(bad);
  assert_null(chd_mdb_new(NULL));
}

static void test_database_without_message_db(void **state)
{
  chd_mdb *views = chd_mdb_new(ch_test_view_url());
  (void)state;

  assert_int_equal(chd_mdb_connect(views), CHD_STORE_ERROR);
  assert_non_null(strstr(chd_mdb_error(views), "no Message DB"));
  chd_mdb_free(views);
}

static void test_lost_connection_reconnects(void **state)
{
  char stream[128];
  chd_mdb_batch b;
  PGresult *res;
  PGconn *killer;
  char sql[128];
  (void)state;

  stream_of("reconn", stream, sizeof stream);
  write_simple(stream, "Before", 0);

  /* end our backend from another session, as a server restart would */
  killer = PQconnectdb(ch_test_store_url());
  assert_int_equal(PQstatus(killer), CONNECTION_OK);
  snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%d)", PQbackendPID(chd_mdb_conn(db)));
  res = PQexec(killer, sql);
  assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
  PQclear(res);
  PQfinish(killer);

  assert_int_equal(chd_mdb_read_stream(db, stream, 0, 10, &b), CHD_STORE_DISCONNECTED);
  assert_non_null(strstr(chd_mdb_error(db), "lost connection"));
  assert_int_equal(chd_mdb_reconnect(db, 5000), CHD_STORE_OK);
  assert_int_equal(chd_mdb_read_stream(db, stream, 0, 10, &b), CHD_STORE_OK);
  assert_int_equal(b.count, 1);
  chd_mdb_batch_release(&b);

  /* and without an explicit reconnect, the next call reconnects by itself */
  killer = PQconnectdb(ch_test_store_url());
  snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%d)", PQbackendPID(chd_mdb_conn(db)));
  PQclear(PQexec(killer, sql));
  PQfinish(killer);
  assert_int_equal(chd_mdb_write(db, stream, NULL, "During", NULL, NULL, CH_VERSION_ANY, NULL),
                   CHD_STORE_DISCONNECTED);
  assert_int_equal(write_simple(stream, "After", 2), 1);

  /* a transaction lost with its session: a read reconnects, but writes that
   * belong to the transaction, and its COMMIT, refuse to go on without it */
  assert_int_equal(chd_mdb_exec(db, "BEGIN"), CHD_STORE_OK);
  killer = PQconnectdb(ch_test_store_url());
  snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%d)", PQbackendPID(chd_mdb_conn(db)));
  PQclear(PQexec(killer, sql));
  PQfinish(killer);
  assert_int_equal(chd_mdb_read_stream(db, stream, 0, 10, &b), CHD_STORE_DISCONNECTED);
  assert_int_equal(chd_mdb_read_stream(db, stream, 0, 10, &b), CHD_STORE_OK);
  chd_mdb_batch_release(&b);
  {
    chd_mdb_write_opts checked = { .checked = true }, commit = { .commit = true };
    assert_int_equal(chd_mdb_write_with(db, stream, NULL, "Lost", NULL, NULL, CH_VERSION_ANY,
                                        &checked, NULL), CHD_STORE_DISCONNECTED);
    assert_non_null(strstr(chd_mdb_error(db), "the transaction was lost"));
    assert_int_equal(chd_mdb_write_with(db, stream, NULL, "Lost", NULL, NULL, CH_VERSION_ANY,
                                        &commit, NULL), CHD_STORE_DISCONNECTED);
    assert_int_equal(chd_mdb_commit(db), CHD_STORE_DISCONNECTED);
  }
  assert_int_equal(write_simple(stream, "Last", 3), 2);   /* nothing of "Lost" */
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_round_trip),
    cmocka_unit_test(test_null_data_and_metadata_read_as_empty_objects),
    cmocka_unit_test(test_positions_and_batches),
    cmocka_unit_test(test_expected_version_empty),
    cmocka_unit_test(test_expected_version_n),
    cmocka_unit_test(test_conflict_on_empty_stream_reports_minus_one),
    cmocka_unit_test(test_duplicate_id),
    cmocka_unit_test(test_checked_writes_keep_the_transaction),
    cmocka_unit_test(test_write_refuses_bad_input),
    cmocka_unit_test(test_category_reads),
    cmocka_unit_test(test_category_refuses_bad_input),
    cmocka_unit_test(test_consumer_group_members_split_the_category),
    cmocka_unit_test(test_group_reads_match_message_db),
    cmocka_unit_test(test_read_last),
    cmocka_unit_test(test_read_all_is_ordered_across_categories),
    cmocka_unit_test(test_read_dispatches_on_name),
    cmocka_unit_test(test_lazy_batches_decode_on_demand),
    cmocka_unit_test(test_reads_in_two_steps),
    cmocka_unit_test(test_server_down_is_a_clear_error),
    cmocka_unit_test(test_reconnect_can_be_interrupted),
    cmocka_unit_test(test_bad_conninfo),
    cmocka_unit_test(test_database_without_message_db),
    cmocka_unit_test(test_lost_connection_reconnects),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
