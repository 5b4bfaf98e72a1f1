/*
 * test_video_publishing.c - the book's video-publishing component
 * (plugins/video-publishing), unit tested with the test kit: PublishVideo
 * and NameVideo, and the book's chapter 14 test of a failing fetch.
 * docs/components/video-publishing.md is the contract.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <comphost/testkit.h>

#define PUBLISH "{\"ownerId\": \"o1\", \"sourceUri\": \"https://sourceurl.com/\"," \
                " \"videoId\": \"v1\"}"
#define TRACE "{\"traceId\": \"t-1\", \"userId\": \"o1\"}"
#define FAKE_URI "https://www.youtube.com/watch?v=GI_P3UtZXAA"
#define STREAM "videoPublishing-v1"
#define COMMANDS "videoPublishing:command-v1"

static int setup(void **state)
{
  ch_test *t = ch_test_load(VIDEO_PUBLISHING_PLUGIN);

  if (ch_test_start(t) != 0)
    fail_msg("%s", ch_test_error(t));
  *state = t;
  return 0;
}

static int teardown(void **state)
{
  ch_test_free(*state);
  return 0;
}

/* PublishVideo -> VideoPublished with the fake transcoder's URI, once. */
static void test_publish(void **state)
{
  ch_test *t = *state;
  const ch_test_write *w;
  int64_t gp = ch_test_given(t, COMMANDS, "PublishVideo", PUBLISH, TRACE);

  assert_int_equal(ch_test_deliver(t, gp), CH_OK);
  assert_true(ch_test_logged(t, "Transcode https://sourceurl.com/ to " FAKE_URI));
  w = ch_test_written(t, STREAM, "VideoPublished");
  assert_non_null(w);
  assert_int_equal(w->expected_version, CH_VERSION_EMPTY);
  assert_true(ch_test_json_has(w->data, "{\"ownerId\": \"o1\", \"sourceUri\":"
                                        " \"https://sourceurl.com/\", \"transcodedUri\": \""
                                        FAKE_URI "\", \"videoId\": \"v1\"}"));
  assert_true(ch_test_json_has(w->metadata, TRACE));

  /* attempted already: nothing, not even a transcoding */
  assert_int_equal(ch_test_deliver(t, gp), CH_OK);
  assert_int_equal(ch_test_write_count(t), 0);
  assert_false(ch_test_logged(t, "Transcode"));
}

/* A command that breaks the contract, or a video that cannot be loaded:
 * VideoPublishingFailed with the reason. */
static void test_publishing_fails(void **state)
{
  ch_test *t = *state;
  const ch_test_write *w;

  assert_int_equal(ch_test_when(t, COMMANDS, "PublishVideo",
                                "{\"ownerId\": \"o1\", \"videoId\": \"v1\"}", TRACE), CH_OK);
  w = ch_test_written(t, STREAM, "VideoPublishingFailed");
  assert_non_null(w);
  assert_true(ch_test_json_has(w->data, "{\"ownerId\": \"o1\", \"videoId\": \"v1\","
                                        " \"reason\": \"sourceUri is missing\"}"));
  assert_null(json_object_get(w->data, "transcodedUri"));

  /* the book's chapter 14: a fetch that fails is a failed publication */
  ch_test_fail(t, CH_TEST_READS, CH_RC_ERROR, 1, "boom");
  assert_int_equal(ch_test_when(t, "videoPublishing:command-v2", "PublishVideo",
                                "{\"ownerId\": \"o1\", \"sourceUri\": \"s\","
                                " \"videoId\": \"v2\"}", NULL), CH_OK);
  w = ch_test_written(t, "videoPublishing-v2", "VideoPublishingFailed");
  assert_non_null(w);
  assert_int_equal(w->expected_version, CH_VERSION_ANY);
  assert_true(ch_test_json_has(w->data, "{\"reason\": \"cannot load the video: boom\"}"));

  /* no database at all is not a failure of the video: try again */
  ch_test_fail(t, CH_TEST_READS, CH_RC_UNAVAILABLE, 1, "no connection");
  assert_int_equal(ch_test_when(t, "videoPublishing:command-v3", "PublishVideo",
                                "{\"ownerId\": \"o1\", \"sourceUri\": \"s\","
                                " \"videoId\": \"v3\"}", NULL), CH_RETRY);
  assert_string_equal(ch_test_error(t), "cannot load the video: no connection");
  assert_int_equal(ch_test_write_count(t), 0);
}

/* NameVideo -> VideoNamed {name}; a blank name -> VideoNameRejected with
 * the book's reason. Each records the command's position. */
static void test_naming(void **state)
{
  ch_test *t = *state;
  const ch_test_write *w;
  int64_t gp = ch_test_given(t, COMMANDS, "NameVideo",
                             "{\"name\": \"My video\", \"videoId\": \"v1\"}", TRACE);

  assert_int_equal(ch_test_deliver(t, gp), CH_OK);
  w = ch_test_written(t, STREAM, "VideoNamed");
  assert_non_null(w);
  assert_true(ch_test_json_has(w->data, "{\"name\": \"My video\"}"));
  assert_int_equal(json_object_size(w->data), 1);
  assert_true(ch_test_json_has(w->metadata, TRACE));
  assert_int_equal(json_integer_value(json_object_get(w->metadata,
                                                      "causationMessageGlobalPosition")), gp);

  assert_int_equal(ch_test_when(t, COMMANDS, "NameVideo",
                                "{\"name\": \"  \", \"videoId\": \"v1\"}", TRACE), CH_OK);
  w = ch_test_written(t, STREAM, "VideoNameRejected");
  assert_non_null(w);
  assert_int_equal(w->expected_version, 0);
  assert_true(ch_test_json_has(w->data, "{\"name\": \"  \", \"reason\":"
                                        " \"ValidationError**{ \\\"name\\\": ["
                                        " \\\"Can't be blank\\\" ]}\"}"));
}

/* Two NameVideo queued are both handled, in order; delivered again, the
 * older one changes nothing (the sequence of the causing command). */
static void test_naming_in_order_and_once(void **state)
{
  ch_test *t = *state;
  int64_t first = ch_test_given(t, COMMANDS, "NameVideo",
                                "{\"name\": \"First\", \"videoId\": \"v1\"}", NULL);
  int64_t second = ch_test_given(t, COMMANDS, "NameVideo",
                                 "{\"name\": \"Second\", \"videoId\": \"v1\"}", NULL);

  assert_int_equal(ch_test_run(t), CH_OK);
  assert_int_equal(ch_test_handled(t), 2);
  assert_true(ch_test_json_has(ch_test_read(t, STREAM, 0)->data, "{\"name\": \"First\"}"));
  assert_true(ch_test_json_has(ch_test_read(t, STREAM, 1)->data, "{\"name\": \"Second\"}"));

  assert_int_equal(ch_test_deliver(t, first), CH_OK);
  assert_int_equal(ch_test_deliver(t, second), CH_OK);
  assert_int_equal(ch_test_write_count(t), 0);
  assert_int_equal(ch_test_version(t, STREAM), 1);
}

/* Written to meanwhile: it reads the video again and decides again. */
static void test_conflict_decides_again(void **state)
{
  ch_test *t = *state;

  ch_test_fail(t, CH_TEST_WRITES, CH_RC_CONFLICT, 1, "somebody was first");
  assert_int_equal(ch_test_when(t, COMMANDS, "NameVideo",
                                "{\"name\": \"Mine\", \"videoId\": \"v1\"}", NULL), CH_OK);
  assert_int_equal(ch_test_write_count(t), 2);
  assert_int_equal(ch_test_write_at(t, 0)->rc, CH_RC_CONFLICT);
  assert_int_equal(ch_test_write_at(t, 1)->rc, CH_RC_OK);
  assert_true(ch_test_logged(t, "changed while we handled the command"));
}

/* No usable video id, in the data nor in the stream name: skipped. */
static void test_no_video_is_skipped(void **state)
{
  ch_test *t = *state;

  assert_int_equal(ch_test_when(t, "videoPublishing:command", "NameVideo", "{\"name\": \"x\"}",
                                NULL), CH_SKIP);
  assert_string_equal(ch_test_error(t),
                      "NameVideo names no video, in the data nor in the stream name");
}

/* fake_transcoded_uri sets what the fake transcoder answers. */
static void test_transcoded_uri_setting(void **state)
{
  ch_test *t = ch_test_load(VIDEO_PUBLISHING_PLUGIN);
  (void)state;

  ch_test_set(t, "fake_transcoded_uri", "https://cdn.example.com/v.mp4");
  assert_int_equal(ch_test_start(t), 0);
  assert_int_equal(ch_test_when(t, COMMANDS, "PublishVideo", PUBLISH, NULL), CH_OK);
  assert_true(ch_test_json_has(ch_test_written(t, STREAM, "VideoPublished")->data,
                               "{\"transcodedUri\": \"https://cdn.example.com/v.mp4\"}"));
  ch_test_free(t);

  t = ch_test_load(VIDEO_PUBLISHING_PLUGIN);
  ch_test_set(t, "transcoder", "ffmpeg");
  assert_int_equal(ch_test_start(t), -1);
  assert_string_equal(ch_test_error(t), "init() refused: transcoder: 'ffmpeg' is not one of"
                                        " fake");
  ch_test_free(t);
}

#define TEST(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
  const struct CMUnitTest tests[] = {
    TEST(test_publish),
    TEST(test_publishing_fails),
    TEST(test_naming),
    TEST(test_naming_in_order_and_once),
    TEST(test_conflict_decides_again),
    TEST(test_no_video_is_skipped),
    cmocka_unit_test(test_transcoded_uri_setting),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
