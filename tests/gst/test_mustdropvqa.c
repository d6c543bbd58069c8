/* gst-check tests of the mustdropvqa element with the tiny random LLaVA in
 * models/fixtures/vision (answers are nonsense, every step is real). */
#include <stdlib.h>
#include <string.h>

#include <glib/gstdio.h>
#include <unistd.h>

#include <gst/check/gstcheck.h>
#include <gst/check/gstharness.h>
#include <gst/video/video.h>

#include "../../gst/gstmustdropmeta.h"

/* The meta's functions live in the plugin: look its API type up by name
 * (the plugin is loaded once the first element is made). */
static GstMustdropAnswerMeta *
get_answer_meta (GstBuffer * b)
{
  GType api = g_type_from_name ("GstMustdropAnswerMetaAPI");
  fail_unless (api != 0, "meta API not registered");
  return (GstMustdropAnswerMeta *) gst_buffer_get_meta (b, api);
}

#define W 32
#define H 24
#define CAPS_RGB "video/x-raw,format=RGB,width=32,height=24,framerate=10/1"
#define MSG_TIMEOUT (15 * GST_SECOND)

static gchar *llm_path, *mmproj_path;

static void
find_models (void)
{
  const gchar *dir = g_getenv ("MD_TESTS_DIR");
  gchar *vis = g_build_filename (dir ? dir : ".", "..", "models", "fixtures",
      "vision", NULL);
  llm_path = g_build_filename (vis, "tiny-llava-llm-f32.gguf", NULL);
  mmproj_path = g_build_filename (vis, "tiny-llava-mmproj-f32.gguf", NULL);
  g_free (vis);
}

/* A configured element with its own bus (the harness has no pipeline). */
static GstElement *
make_vqa (GstBus ** bus, const gchar * first, ...)
{
  GstElement *e = gst_element_factory_make ("mustdropvqa", NULL);
  va_list ap;

  fail_unless (e != NULL, "mustdropvqa not found (GST_PLUGIN_PATH?)");
  g_object_set (e, "model", llm_path, "mmproj", mmproj_path, "threads", 1,
      "max-new-tokens", 4, NULL);
  if (first) {
    va_start (ap, first);
    g_object_set_valist (G_OBJECT (e), first, ap);
    va_end (ap);
  }
  *bus = gst_bus_new ();
  gst_element_set_bus (e, *bus);
  return e;
}

/* A frame whose bytes all equal `fill`. */
static GstBuffer *
make_frame (guint8 fill, GstClockTime pts, gsize size)
{
  GstBuffer *b = gst_buffer_new_allocate (NULL, size, NULL);
  gst_buffer_memset (b, 0, fill, size);
  GST_BUFFER_PTS (b) = pts;
  GST_BUFFER_DURATION (b) = GST_SECOND / 10;
  return b;
}

static void
check_frame (GstBuffer * b, guint8 fill, GstClockTime pts, gsize size)
{
  GstMapInfo map;
  fail_unless_equals_uint64 (GST_BUFFER_PTS (b), pts);
  fail_unless (gst_buffer_map (b, &map, GST_MAP_READ));
  fail_unless_equals_int ((gint) map.size, (gint) size);
  for (gsize i = 0; i < map.size; i++)
    if (map.data[i] != fill)
      fail ("byte %zu of the frame at %" GST_TIME_FORMAT " changed", i,
          GST_TIME_ARGS (pts));
  gst_buffer_unmap (b, &map);
}

/* Next element message named `name`; fails on an error message. */
static GstStructure *
wait_element_message (GstBus * bus, const gchar * name)
{
  for (;;) {
    GstMessage *m = gst_bus_timed_pop_filtered (bus, MSG_TIMEOUT,
        GST_MESSAGE_ELEMENT | GST_MESSAGE_ERROR);
    fail_unless (m != NULL, "no %s message", name);
    if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_ERROR) {
      GError *err;
      gchar *dbg;
      gst_message_parse_error (m, &err, &dbg);
      fail ("error: %s (%s)", err->message, dbg);
    }
    if (gst_message_has_name (m, name)) {
      GstStructure *s = gst_structure_copy (gst_message_get_structure (m));
      gst_message_unref (m);
      return s;
    }
    gst_message_unref (m);
  }
}

static guint64
get_u64 (const GstStructure * s, const gchar * f)
{
  guint64 v = G_MAXUINT64;
  fail_unless (gst_structure_get_uint64 (s, f, &v), "field %s", f);
  return v;
}

/* A "mustdrop-stats" message accounts for every window: each is answered,
 * dropped, failed, aborted or still pending. */
static void
check_stats_add_up (const GstStructure * s)
{
  guint pending = G_MAXUINT;
  fail_unless (gst_structure_get_uint (s, "pending", &pending));
  guint64 sum = get_u64 (s, "answered") + get_u64 (s, "dropped") +
      get_u64 (s, "failed") + get_u64 (s, "aborted") + pending;
  fail_unless_equals_uint64 (get_u64 (s, "windows"), sum);
}

/* The error a state change to PAUSED posts, which must fail it. */
static GstMessage *expect_state_change_error (GstElement * e, GstBus * bus);

/* The headline of an error or warning message (to free). */
static gchar *
headline (GstMessage * m)
{
  GError *err = NULL;
  gchar *dbg = NULL, *text;
  if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_ERROR)
    gst_message_parse_error (m, &err, &dbg);
  else
    gst_message_parse_warning (m, &err, &dbg);
  GST_INFO ("message: %s (%s)", err->message, dbg);
  text = g_strdup (err->message);
  g_error_free (err);
  g_free (dbg);
  return text;
}

GST_START_TEST (test_meta_and_message)
{
  GstBus *bus;
  GstElement *e = make_vqa (&bus, "window", 1.0, "sample-fps", 0.0,
      "question", "What colour?", "custom-meta", TRUE, NULL);
  GstHarness *h = gst_harness_new_with_element (e, "sink", "src");
  gsize size = W * H * 3;
  guint n_in = 0;

  gst_harness_set_src_caps_str (h, CAPS_RGB);
  /* window 0 = [0, 1 s): frames 0..9; frame 10 closes it */
  for (guint i = 0; i <= 10; i++, n_in++)
    fail_unless_equals_int (gst_harness_push (h, make_frame (i, i * GST_SECOND
                / 10, size)), GST_FLOW_OK);

  GstStructure *s = wait_element_message (bus, "mustdrop-answer");
  fail_unless_equals_string (gst_structure_get_string (s, "question"),
      "What colour?");
  fail_unless (gst_structure_get_string (s, "answer") != NULL);
  fail_unless_equals_uint64 (get_u64 (s, "window-index"), 0);
  fail_unless_equals_uint64 (get_u64 (s, "window-start"), 0);
  fail_unless_equals_uint64 (get_u64 (s, "window-end"), GST_SECOND);
  fail_unless_equals_uint64 (get_u64 (s, "window-end-running-time"),
      GST_SECOND);
  guint frames = 0;
  fail_unless (gst_structure_get_uint (s, "frames", &frames));
  /* every frame offered, max-frames 8 spread over the 1 s window (a grid
   * of 125 ms): 0, 0.2, 0.3, 0.4, 0.5, 0.7, 0.8, 0.9 s */
  fail_unless_equals_int (frames, 8);
  gst_structure_free (s);

  /* the answer rides on the next buffer out */
  fail_unless_equals_int (gst_harness_push (h, make_frame (11,
              11 * GST_SECOND / 10, size)), GST_FLOW_OK);
  n_in++;
  guint metas = 0;
  for (guint i = 0; i < n_in; i++) {
    GstBuffer *b = gst_harness_pull (h);
    fail_unless (b != NULL);
    check_frame (b, i, i * GST_SECOND / 10, size);
    GstMustdropAnswerMeta *m = get_answer_meta (b);
    if (m) {
      metas++;
      /* the first buffer out after the answer is ready: frame 10 (whose
       * arrival closed the window) when the worker was quick enough to
       * answer before that frame left, else frame 11 */
      fail_unless (i == 10 || i == 11, "meta on frame %u", i);
      fail_unless_equals_string (m->question, "What colour?");
      fail_unless_equals_uint64 (m->window_start, 0);
      fail_unless_equals_uint64 (m->window_end, GST_SECOND);
      fail_unless_equals_int (m->frames, 8);
      fail_unless (m->visual_tokens > 0 && m->generated_tokens <= 4);
      /* the same as a GstCustomMeta structure (for bindings) */
      GstCustomMeta *cm = gst_buffer_get_custom_meta (b,
          "GstMustdropAnswerCustomMeta");
      fail_unless (cm != NULL);
      GstStructure *cs = gst_custom_meta_get_structure (cm);
      fail_unless_equals_string (gst_structure_get_string (cs, "answer"),
          m->answer);
      fail_unless_equals_uint64 (get_u64 (cs, "window-end"), GST_SECOND);
      /* the meta survives a copy */
      GstBuffer *c = gst_buffer_copy (b);
      GstMustdropAnswerMeta *mc = get_answer_meta (c);
      fail_unless (mc != NULL && mc != m);
      fail_unless_equals_string (mc->answer, m->answer);
      fail_unless (gst_buffer_get_custom_meta (c,
              "GstMustdropAnswerCustomMeta") != NULL);
      gst_buffer_unref (c);
    }
    gst_buffer_unref (b);
  }
  fail_unless_equals_int (metas, 1);

  gst_harness_teardown (h);
  gst_object_unref (e);
  gst_object_unref (bus);
}

GST_END_TEST;

/* choices: the answer is one of them, and the meta carries it as its value
 * and index (a copy too); the tiny fixture's answers are nonsense, the
 * constraint is what is checked. */
GST_START_TEST (test_meta_choice)
{
  static const gchar *choices[] = { "red", "green", "blue" };
  GstBus *bus;
  GstElement *e = make_vqa (&bus, "window", 1.0, "sample-fps", 0.0,
      "question", "What colour?", "choices", "red | green|blue", NULL);
  GstHarness *h = gst_harness_new_with_element (e, "sink", "src");
  gsize size = W * H * 3;

  gst_harness_set_src_caps_str (h, CAPS_RGB);
  for (guint i = 0; i <= 10; i++)
    fail_unless_equals_int (gst_harness_push (h, make_frame (i, i * GST_SECOND
                / 10, size)), GST_FLOW_OK);
  GstStructure *s = wait_element_message (bus, "mustdrop-answer");
  gint choice = -1;
  fail_unless (gst_structure_get_int (s, "choice", &choice));
  fail_unless (choice >= 0 && choice < 3, "choice %d", choice);
  fail_unless_equals_string (gst_structure_get_string (s, "value"),
      choices[choice]);
  fail_unless_equals_string (gst_structure_get_string (s, "answer"),
      choices[choice]);
  gst_structure_free (s);

  fail_unless_equals_int (gst_harness_push (h, make_frame (11,
              11 * GST_SECOND / 10, size)), GST_FLOW_OK);
  guint metas = 0;
  for (guint i = 0; i < 12; i++) {
    GstBuffer *b = gst_harness_pull (h);
    GstMustdropAnswerMeta *m = get_answer_meta (b);
    if (m) {
      metas++;
      fail_unless_equals_int (m->choice, choice);
      fail_unless (m->value != NULL);
      fail_unless_equals_string (gst_structure_get_string (m->value, "value"),
          choices[choice]);
      GstBuffer *c = gst_buffer_copy (b);
      GstMustdropAnswerMeta *mc = get_answer_meta (c);
      fail_unless (mc->value != NULL && mc->value != m->value);
      fail_unless (gst_structure_is_equal (mc->value, m->value));
      gst_buffer_unref (c);
    }
    gst_buffer_unref (b);
  }
  fail_unless_equals_int (metas, 1);

  gst_harness_teardown (h);
  gst_object_unref (e);
  gst_object_unref (bus);
}

GST_END_TEST;

/* Overlapping windows on the PTS grid; a question set while playing
 * applies from the next window. */
GST_START_TEST (test_overlap_and_question)
{
  GstBus *bus;
  GstElement *e = make_vqa (&bus, "window", 1.0, "window-overlap", 0.5,
      "sample-fps", 0.0, "question", "A?", "max-pending", 8, NULL);
  GstHarness *h = gst_harness_new_with_element (e, "sink", "src");
  gsize size = W * H * 3;

  gst_harness_set_src_caps_str (h, CAPS_RGB);
  /* frames 0..1.0 s: window [0, 1) closes at 1.0 s */
  for (guint i = 0; i <= 10; i++)
    gst_harness_push (h, make_frame (i, i * GST_SECOND / 10, size));
  GstStructure *s = wait_element_message (bus, "mustdrop-answer");
  fail_unless_equals_uint64 (get_u64 (s, "window-start"), 0);
  fail_unless_equals_string (gst_structure_get_string (s, "question"), "A?");
  guint frames = 0;
  gst_structure_get_uint (s, "frames", &frames);
  fail_unless_equals_int (frames, 8);   /* 10 frames, max-frames 8 */
  gst_structure_free (s);

  g_object_set (e, "question", "B?", NULL);
  /* up to 2.0 s: [0.5, 1.5) closes at 1.5 s, [1, 2) at 2.0 s */
  for (guint i = 11; i <= 20; i++)
    gst_harness_push (h, make_frame (i, i * GST_SECOND / 10, size));
  for (guint k = 1; k <= 2; k++) {
    s = wait_element_message (bus, "mustdrop-answer");
    fail_unless_equals_uint64 (get_u64 (s, "window-index"), k);
    fail_unless_equals_uint64 (get_u64 (s, "window-start"), k * GST_SECOND / 2);
    fail_unless_equals_uint64 (get_u64 (s, "window-end"),
        k * GST_SECOND / 2 + GST_SECOND);
    fail_unless_equals_string (gst_structure_get_string (s, "question"), "B?");
    gst_structure_free (s);
  }

  gst_harness_teardown (h);
  gst_object_unref (e);
  gst_object_unref (bus);
}

GST_END_TEST;

GST_START_TEST (test_eos_partial_window)
{
  GstBus *bus;
  /* a 1 s window at 5 fps (200 ms apart, more than 1 s / max-frames) */
  GstElement *e = make_vqa (&bus, "window", 1.0, "sample-fps", 5.0, NULL);
  GstHarness *h = gst_harness_new_with_element (e, "sink", "src");
  gsize size = W * H * 3;

  gst_harness_set_src_caps_str (h, CAPS_RGB);
  for (guint i = 0; i < 5; i++)
    gst_harness_push (h, make_frame (i, i * GST_SECOND / 10, size));
  /* returns once the partial window is answered */
  fail_unless (gst_harness_push_event (h, gst_event_new_eos ()));
  GstStructure *s = wait_element_message (bus, "mustdrop-answer");
  fail_unless_equals_uint64 (get_u64 (s, "window-start"), 0);
  fail_unless_equals_uint64 (get_u64 (s, "window-end"), GST_SECOND / 2);
  guint frames = 0;
  gst_structure_get_uint (s, "frames", &frames);
  fail_unless_equals_int (frames, 3);   /* 0, 0.2, 0.4 s */
  gst_structure_free (s);
  s = wait_element_message (bus, "mustdrop-stats");
  fail_unless_equals_uint64 (get_u64 (s, "answered"), 1);
  fail_unless_equals_uint64 (get_u64 (s, "windows"), 1);
  check_stats_add_up (s);
  gst_structure_free (s);
  for (guint i = 0; i < 5; i++) {
    GstBuffer *b = gst_harness_pull (h);
    check_frame (b, i, i * GST_SECOND / 10, size);
    gst_buffer_unref (b);
  }
  /* EOS went downstream after the answer */
  GstEvent *ev;
  gboolean eos = FALSE;
  while ((ev = gst_harness_try_pull_event (h))) {
    eos |= GST_EVENT_TYPE (ev) == GST_EVENT_EOS;
    gst_event_unref (ev);
  }
  fail_unless (eos);

  gst_harness_teardown (h);
  gst_object_unref (e);
  gst_object_unref (bus);
}

GST_END_TEST;

/* window = 0: one growing window, "ask" on demand, answered at EOS; frames
 * are encoded as they arrive (those the encoder cannot keep up with are
 * dropped and counted), the session's tokens stay under the cap. */
GST_START_TEST (test_growing_window_ask)
{
  GstBus *bus;
  GstElement *e = make_vqa (&bus, "window", 0.0, "sample-fps", 0.0,
      "max-frames", 4, "max-visual-tokens", 40, NULL);
  GstHarness *h = gst_harness_new_with_element (e, "sink", "src");
  gsize size = W * H * 3;
  gboolean queued = FALSE;

  gst_harness_set_src_caps_str (h, CAPS_RGB);
  g_signal_emit_by_name (e, "ask", "Anything?", &queued);
  fail_if (queued);             /* no frame yet */
  for (guint i = 0; i < 40; i++)
    gst_harness_push (h, make_frame (i, i * GST_SECOND / 10, size));
  g_signal_emit_by_name (e, "ask", "Is it dark?", &queued);
  fail_unless (queued);
  GstStructure *s = wait_element_message (bus, "mustdrop-answer");
  fail_unless_equals_string (gst_structure_get_string (s, "question"),
      "Is it dark?");
  guint frames = 0, kept = 0;
  gst_structure_get_uint (s, "frames", &frames);
  gst_structure_get_uint (s, "visual-tokens-kept", &kept);
  fail_unless (frames >= 1 && frames <= 40, "frames %u", frames);
  fail_unless (kept >= 1 && kept <= 40, "kept %u", kept);
  /* the default reduction (FlashVID), then the cap */
  fail_unless (g_str_has_suffix (gst_structure_get_string (s, "reduce"),
          "+cap:tokens=40,frames=4"), "%s", gst_structure_get_string (s,
          "reduce"));
  gst_structure_free (s);
  guint held = 0;
  g_object_get (e, "held-visual-tokens", &held, NULL);
  fail_unless (held >= 1 && held <= 40, "held %u", held);
  fail_unless (gst_harness_push_event (h, gst_event_new_eos ()));
  s = wait_element_message (bus, "mustdrop-answer");
  fail_unless_equals_uint64 (get_u64 (s, "window-start"), 0);
  fail_unless_equals_uint64 (get_u64 (s, "window-end"), 4 * GST_SECOND);
  gst_structure_free (s);
  s = wait_element_message (bus, "mustdrop-stats");
  fail_unless_equals_uint64 (get_u64 (s, "frames-encoded") + get_u64 (s,
          "frames-dropped"), 40);
  guint max_held = 0;
  gst_structure_get_uint (s, "held-visual-tokens-max", &max_held);
  fail_unless (max_held <= 40, "max held %u", max_held);
  gst_structure_free (s);

  gst_harness_teardown (h);
  gst_object_unref (e);
  gst_object_unref (bus);
}

GST_END_TEST;

/* window = 0 across a flush: frames waiting for the encoder are dropped,
 * the growing window restarts, and the EOS answer covers only the frames
 * after the flush. */
GST_START_TEST (test_growing_window_flush)
{
  GstBus *bus;
  GstElement *e = make_vqa (&bus, "window", 0.0, "sample-fps", 0.0,
      "reduce", "stmerge:thresh=0.9", NULL);
  GstHarness *h = gst_harness_new_with_element (e, "sink", "src");
  gsize size = W * H * 3;

  gst_harness_set_src_caps_str (h, CAPS_RGB);
  for (guint i = 0; i < 60; i++)
    gst_harness_push (h, make_frame (i, i * GST_SECOND / 10, size));
  fail_unless (gst_harness_push_event (h, gst_event_new_flush_start ()));
  fail_unless (gst_harness_push_event (h, gst_event_new_flush_stop (TRUE)));
  GstSegment seg;
  gst_segment_init (&seg, GST_FORMAT_TIME);
  fail_unless (gst_harness_push_event (h, gst_event_new_segment (&seg)));
  gst_bus_set_flushing (bus, TRUE);
  gst_bus_set_flushing (bus, FALSE);
  for (guint i = 0; i < 5; i++)
    gst_harness_push (h, make_frame (i, i * GST_SECOND / 10, size));
  fail_unless (gst_harness_push_event (h, gst_event_new_eos ()));
  GstStructure *s = wait_element_message (bus, "mustdrop-answer");
  guint frames = 0;
  gst_structure_get_uint (s, "frames", &frames);
  fail_unless_equals_int (frames, 5);
  fail_unless_equals_uint64 (get_u64 (s, "window-start"), 0);
  fail_unless (g_str_has_prefix (gst_structure_get_string (s, "reduce"),
          "stmerge:"));
  gst_structure_free (s);
  /* the window the flush abandoned is counted, not lost */
  s = wait_element_message (bus, "mustdrop-stats");
  fail_unless_equals_uint64 (get_u64 (s, "windows"), 2);
  fail_unless_equals_uint64 (get_u64 (s, "answered"), 1);
  fail_unless_equals_uint64 (get_u64 (s, "aborted"), 1);
  check_stats_add_up (s);
  gst_structure_free (s);

  gst_harness_teardown (h);
  gst_object_unref (e);
  gst_object_unref (bus);
}

GST_END_TEST;

/* One hour of 1 fps video into window=0: 3600 frames 1 s apart (64x48),
 * every one encoded (the test waits for the encoder as a real-time source
 * would), a question half way, the answer at EOS. The tokens and bytes the
 * growing window holds stay within the budget docs/usage-gst.md states
 * (HOUR_TOKENS tokens, HOUR_BYTES bytes with the tiny model, n_embd 64).
 * Measured on 2 cores: about 1 s in release, 6-7 s under ASan+UBSan, so
 * the whole hour runs in both. */
#define HOUR_TOKENS 256
#define HOUR_BYTES (80 * 1024)

static guint64
frames_encoded (GstElement * e)
{
  guint64 n = 0;
  g_object_get (e, "frames-encoded", &n, NULL);
  return n;
}

GST_START_TEST (test_one_hour_bounded)
{
  GstBus *bus;
  const guint queue = 8;        /* frames in flight (the element holds 16) */
  const guint n = 3600;
  GstElement *e = make_vqa (&bus, "window", 0.0, "sample-fps", 1.0,
      "max-frames", 16, "max-visual-tokens", HOUR_TOKENS,
      "reduce", "dycoke:k=0.7", NULL);
  GstHarness *h = gst_harness_new_with_element (e, "sink", "src");
  gsize size = 64 * 48 * 3;
  guint max_tokens = 0;
  guint64 max_bytes = 0;
  gint64 t0 = g_get_monotonic_time ();

  gst_harness_set_src_caps_str (h,
      "video/x-raw,format=RGB,width=64,height=48,framerate=1/1");
  for (guint i = 0; i < n; i++) {
    /* a scene that changes every 10 minutes, with a little motion */
    GstBuffer *b = make_frame ((guint8) ((i / 600) * 40 + (i % 7)),
        (GstClockTime) i * GST_SECOND, size);
    GST_BUFFER_DURATION (b) = GST_SECOND;
    fail_unless_equals_int (gst_harness_push (h, b), GST_FLOW_OK);
    /* wait for the encoder rather than fill its queue (a live source at
     * 1 fps leaves it a second per frame); in bursts, so that polling does
     * not compete with the encoder on a loaded machine */
    if (i + 1 - frames_encoded (e) >= queue - 1)
      while (i + 1 - frames_encoded (e) > 2)
        g_usleep (500);
    if (i % 50 == 0 || i + 1 == n) {
      guint tok = 0;
      guint64 bytes = 0;
      g_object_get (e, "held-visual-tokens", &tok, "held-visual-bytes", &bytes,
          NULL);
      max_tokens = MAX (max_tokens, tok);
      max_bytes = MAX (max_bytes, bytes);
      fail_unless (tok <= HOUR_TOKENS, "frame %u: %u tokens held", i, tok);
      fail_unless (bytes <= HOUR_BYTES, "frame %u: %" G_GUINT64_FORMAT
          " bytes held", i, bytes);
    }
    if (i == n / 2) {
      gboolean queued = FALSE;
      g_signal_emit_by_name (e, "ask", "What changed?", &queued);
      fail_unless (queued);
      GstStructure *s = wait_element_message (bus, "mustdrop-answer");
      guint frames = 0;
      gst_structure_get_uint (s, "frames", &frames);
      /* every frame sampled before the question */
      fail_unless_equals_int (frames, n / 2 + 1);
      fail_unless_equals_uint64 (get_u64 (s, "window-end"),
          (guint64) (n / 2) * GST_SECOND);
      gst_structure_free (s);
    }
  }
  fail_unless (gst_harness_push_event (h, gst_event_new_eos ()));
  GstStructure *s = wait_element_message (bus, "mustdrop-answer");
  guint frames = 0, kept = 0, in = 0;
  gst_structure_get_uint (s, "frames", &frames);
  gst_structure_get_uint (s, "visual-tokens", &in);
  gst_structure_get_uint (s, "visual-tokens-kept", &kept);
  fail_unless_equals_int (frames, n);
  fail_unless_equals_uint64 (get_u64 (s, "window-start"), 0);
  fail_unless_equals_uint64 (get_u64 (s, "window-end"),
      (guint64) n * GST_SECOND);
  fail_unless (gst_structure_get_string (s, "answer") != NULL);
  fail_unless (kept <= HOUR_TOKENS + 1, "kept %u", kept);
  gst_structure_free (s);
  s = wait_element_message (bus, "mustdrop-stats");
  guint held_max = 0;
  gst_structure_get_uint (s, "held-visual-tokens-max", &held_max);
  guint64 bytes_max = get_u64 (s, "held-visual-bytes-max");
  fail_unless_equals_uint64 (get_u64 (s, "frames-encoded"), n);
  fail_unless_equals_uint64 (get_u64 (s, "frames-dropped"), 0);
  fail_unless (held_max <= HOUR_TOKENS, "held max %u", held_max);
  fail_unless (bytes_max <= HOUR_BYTES, "bytes max %" G_GUINT64_FORMAT,
      bytes_max);
  g_print ("window=0, %u frames at 1 fps: %u visual tokens in, %u kept at the "
      "end; held at most %u tokens / %" G_GUINT64_FORMAT " bytes (budget %d / "
      "%d); %.1f s\n", n, in, kept, held_max, bytes_max, HOUR_TOKENS,
      HOUR_BYTES, (g_get_monotonic_time () - t0) / 1e6);
  gst_structure_free (s);

  gst_harness_teardown (h);
  gst_object_unref (e);
  gst_object_unref (bus);
}

GST_END_TEST;

/* Flush while windows are being answered: no deadlock, the window state
 * restarts at the new segment. */
GST_START_TEST (test_flush_during_inference)
{
  GstBus *bus;
  GstElement *e = make_vqa (&bus, "window", 0.2, "sample-fps", 0.0,
      "max-new-tokens", 200, "max-pending", 4, NULL);
  GstHarness *h = gst_harness_new_with_element (e, "sink", "src");
  gsize size = W * H * 3;

  gst_harness_set_src_caps_str (h, CAPS_RGB);
  for (guint round = 0; round < 3; round++) {
    for (guint i = 0; i < 10; i++)
      gst_harness_push (h, make_frame (i, i * GST_SECOND / 10, size));
    fail_unless (gst_harness_push_event (h, gst_event_new_flush_start ()));
    fail_unless (gst_harness_push_event (h, gst_event_new_flush_stop (TRUE)));
    GstSegment seg;
    gst_segment_init (&seg, GST_FORMAT_TIME);
    fail_unless (gst_harness_push_event (h, gst_event_new_segment (&seg)));
  }
  /* after the flushes: a fresh window 0 is answered */
  gst_bus_set_flushing (bus, TRUE);
  gst_bus_set_flushing (bus, FALSE);
  for (guint i = 0; i < 3; i++)
    gst_harness_push (h, make_frame (i, i * GST_SECOND / 10, size));
  fail_unless (gst_harness_push_event (h, gst_event_new_eos ()));
  GstStructure *s;
  for (;;) {
    s = wait_element_message (bus, "mustdrop-answer");
    if (get_u64 (s, "window-index") == 0)
      break;
    gst_structure_free (s);
  }
  fail_unless_equals_uint64 (get_u64 (s, "window-start"), 0);
  gst_structure_free (s);
  /* every window of the flushed rounds is answered or aborted */
  s = wait_element_message (bus, "mustdrop-stats");
  fail_unless (get_u64 (s, "aborted") >= 3, "aborted %" G_GUINT64_FORMAT,
      get_u64 (s, "aborted"));
  fail_unless_equals_uint64 (get_u64 (s, "failed"), 0);
  check_stats_add_up (s);
  gst_structure_free (s);

  gst_harness_teardown (h);
  gst_object_unref (e);
  gst_object_unref (bus);
}

GST_END_TEST;

/* A new stream mid-window (concat's next file) ends the open window as EOS
 * would: it is answered over its frames, then the new stream's windows
 * start from its own timestamps. Also with window = 0. */
static void
push_new_stream (GstHarness * h, const gchar * id)
{
  GstSegment seg;
  fail_unless (gst_harness_push_event (h, gst_event_new_stream_start (id)));
  fail_unless (gst_harness_push_event (h,
          gst_event_new_caps (gst_caps_from_string (CAPS_RGB))));
  gst_segment_init (&seg, GST_FORMAT_TIME);
  fail_unless (gst_harness_push_event (h, gst_event_new_segment (&seg)));
}

GST_START_TEST (test_new_stream_answers_open_window)
{
  for (guint growing = 0; growing < 2; growing++) {
    GstBus *bus;
    GstElement *e = make_vqa (&bus, "window", growing ? 0.0 : 1.0,
        "sample-fps", 5.0, NULL);
    GstHarness *h = gst_harness_new_with_element (e, "sink", "src");
    gsize size = W * H * 3;

    gst_harness_set_src_caps_str (h, CAPS_RGB);
    for (guint i = 0; i < 5; i++)
      gst_harness_push (h, make_frame (i, i * GST_SECOND / 10, size));
    push_new_stream (h, "second");
    for (guint i = 0; i < 3; i++)
      gst_harness_push (h, make_frame (i, i * GST_SECOND / 10, size));
    fail_unless (gst_harness_push_event (h, gst_event_new_eos ()));
    GstStructure *s = wait_element_message (bus, "mustdrop-answer");
    fail_unless_equals_uint64 (get_u64 (s, "window-end"), GST_SECOND / 2);
    guint frames = 0;
    gst_structure_get_uint (s, "frames", &frames);
    fail_unless_equals_int (frames, 3);  /* 0, 0.2, 0.4 s of the first */
    gst_structure_free (s);
    s = wait_element_message (bus, "mustdrop-answer");
    fail_unless_equals_uint64 (get_u64 (s, "window-end"), 3 * GST_SECOND / 10);
    gst_structure_free (s);
    s = wait_element_message (bus, "mustdrop-stats");
    fail_unless_equals_uint64 (get_u64 (s, "windows"), 2);
    fail_unless_equals_uint64 (get_u64 (s, "answered"), 2);
    check_stats_add_up (s);
    gst_structure_free (s);
    gst_harness_teardown (h);
    gst_object_unref (e);
    gst_object_unref (bus);
  }
}

GST_END_TEST;

/* Text that is not valid UTF-8 never reaches a bus message or a JSON line:
 * refused at start (the state change fails, naming it), refused while
 * running (a warning; the previous question stays), refused by "ask". An
 * empty question is refused the same way. */
GST_START_TEST (test_bad_question_text)
{
  static const gchar *bad[] = { "caf\xe9?", "" };
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++) {
    GstBus *bus;
    GstElement *e = make_vqa (&bus, "question", bad[i], NULL);
    GstMessage *m = expect_state_change_error (e, bus);
    gchar *text = headline (m);
    fail_unless (strstr (text, i == 0 ? "not valid UTF-8" : "is empty"),
        "headline: %s", text);
    g_free (text);
    gst_message_unref (m);
    gst_object_unref (e);
    gst_object_unref (bus);
  }

  GstBus *bus;
  GstElement *e = make_vqa (&bus, "question", "Fine?", "window", 0.5,
      "sample-fps", 0.0, NULL);
  GstHarness *h = gst_harness_new_with_element (e, "sink", "src");
  gst_harness_set_src_caps_str (h, CAPS_RGB);
  g_object_set (e, "question", "caf\xe9?", NULL);
  GstMessage *m = gst_bus_timed_pop_filtered (bus, MSG_TIMEOUT,
      GST_MESSAGE_WARNING);
  fail_unless (m != NULL, "no warning for a non-UTF-8 question");
  gchar *text = headline (m);
  fail_unless (strstr (text, "not valid UTF-8") && strstr (text, "kept"),
      "headline: %s", text);
  g_free (text);
  gst_message_unref (m);
  gchar *q = NULL;
  g_object_get (e, "question", &q, NULL);
  fail_unless_equals_string (q, "Fine?");
  g_free (q);
  gst_harness_push (h, make_frame (1, 0, W * H * 3));
  gboolean queued = TRUE;
  g_signal_emit_by_name (e, "ask", "\xff\xfe", &queued);
  fail_if (queued);
  gst_harness_teardown (h);
  gst_object_unref (e);
  gst_object_unref (bus);
}

GST_END_TEST;

/* Size and format change mid-stream: every buffer passes unchanged, the
 * window spanning the change is answered. */
GST_START_TEST (test_caps_change)
{
  GstBus *bus;
  GstElement *e = make_vqa (&bus, "window", 1.0, "sample-fps", 0.0, NULL);
  GstHarness *h = gst_harness_new_with_element (e, "sink", "src");
  gsize rgb = W * H * 3, i420 = 64 * 48 * 3 / 2;

  gst_harness_set_src_caps_str (h, CAPS_RGB);
  for (guint i = 0; i < 5; i++)
    gst_harness_push (h, make_frame (i, i * GST_SECOND / 10, rgb));
  gst_harness_set_src_caps_str (h,
      "video/x-raw,format=I420,width=64,height=48,framerate=10/1");
  for (guint i = 5; i < 12; i++)
    gst_harness_push (h, make_frame (i, i * GST_SECOND / 10, i420));
  GstStructure *s = wait_element_message (bus, "mustdrop-answer");
  guint frames = 0;
  gst_structure_get_uint (s, "frames", &frames);
  fail_unless_equals_int (frames, 8);   /* max-frames over the 1 s window */
  gst_structure_free (s);
  for (guint i = 0; i < 12; i++) {
    GstBuffer *b = gst_harness_pull (h);
    check_frame (b, i, i * GST_SECOND / 10, i < 5 ? rgb : i420);
    gst_buffer_unref (b);
  }

  gst_harness_teardown (h);
  gst_object_unref (e);
  gst_object_unref (bus);
}

GST_END_TEST;

/* Every accepted input format (odd size, padded strides) is sampled and
 * answered, and passes unchanged. */
GST_START_TEST (test_formats)
{
  static const gchar *formats[] = { "RGB", "RGBA", "BGRx", "BGRA", "I420",
    "NV12"
  };
  for (guint f = 0; f < G_N_ELEMENTS (formats); f++) {
    GstBus *bus;
    GstElement *e = make_vqa (&bus, "window", 0.5, "sample-fps", 0.0, NULL);
    GstHarness *h = gst_harness_new_with_element (e, "sink", "src");
    GstVideoInfo info;
    gchar *caps = g_strdup_printf ("video/x-raw,format=%s,width=37,height=21,"
        "framerate=10/1", formats[f]);

    gst_harness_set_src_caps_str (h, caps);
    GstCaps *c = gst_caps_from_string (caps);
    fail_unless (gst_video_info_from_caps (&info, c));
    gst_caps_unref (c);
    for (guint i = 0; i < 6; i++)
      gst_harness_push (h, make_frame (i, i * GST_SECOND / 10,
              GST_VIDEO_INFO_SIZE (&info)));
    GstStructure *s = wait_element_message (bus, "mustdrop-answer");
    guint frames = 0;
    gst_structure_get_uint (s, "frames", &frames);
    fail_unless_equals_int (frames, 5);
    gst_structure_free (s);
    for (guint i = 0; i < 6; i++) {
      GstBuffer *b = gst_harness_pull (h);
      check_frame (b, i, i * GST_SECOND / 10, GST_VIDEO_INFO_SIZE (&info));
      gst_buffer_unref (b);
    }
    g_free (caps);
    gst_harness_teardown (h);
    gst_object_unref (e);
    gst_object_unref (bus);
  }
}

GST_END_TEST;

static GstMessage *
expect_state_change_error (GstElement * e, GstBus * bus)
{
  fail_unless_equals_int (gst_element_set_state (e, GST_STATE_PAUSED),
      GST_STATE_CHANGE_FAILURE);
  GstMessage *m = gst_bus_timed_pop_filtered (bus, 0, GST_MESSAGE_ERROR);
  fail_unless (m != NULL, "no error message");
  gst_element_set_state (e, GST_STATE_NULL);
  return m;
}

GST_START_TEST (test_bad_properties)
{
  static const struct
  {
    const gchar *prop, *value;
  } cases[] = {
    {"model", "/nonexistent/model.gguf"},
    {"mmproj", "/nonexistent/mmproj.gguf"},
    {"reduce", "mustdrop:bogus"},
    {"device", "tpu:3"},
    {"device", "cuda:x"},
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    GstBus *bus;
    GstElement *e = make_vqa (&bus, NULL, NULL);
    g_object_set (e, cases[i].prop, cases[i].value, NULL);
    gst_message_unref (expect_state_change_error (e, bus));
    gst_object_unref (e);
    gst_object_unref (bus);
  }
  /* a bad reduction is refused by name before any engine is asked for
   * (an engine may be shared: its load must not fail for one element) */
  GstBus *bus;
  GstElement *e = make_vqa (&bus, "reduce", "mustdrop:bogus", NULL);
  GstMessage *m = expect_state_change_error (e, bus);
  GError *ge = NULL;
  gchar *dbg = NULL;
  gst_message_parse_error (m, &ge, &dbg);
  fail_unless (strstr (ge->message, "Invalid reduce spec \"mustdrop:bogus\"")
      != NULL, "%s", ge->message);
  g_error_free (ge);
  g_free (dbg);
  gst_message_unref (m);
  gst_object_unref (e);
  gst_object_unref (bus);
  /* overlap must be shorter than the window */
  e = make_vqa (&bus, "window", 2.0, "window-overlap", 2.0, NULL);
  gst_message_unref (expect_state_change_error (e, bus));
  gst_object_unref (e);
  gst_object_unref (bus);
  /* an LLM without its mmproj */
  e = gst_element_factory_make ("mustdropvqa", NULL);
  bus = gst_bus_new ();
  gst_element_set_bus (e, bus);
  g_object_set (e, "model", "/nonexistent/model.gguf", NULL);
  gst_message_unref (expect_state_change_error (e, bus));
  gst_object_unref (e);
  gst_object_unref (bus);
  /* no model at all: the bundled default model when the source tree has it
   * (the lookup is libmustdrop's, tested in tests/cli), else a clear error */
  const gchar *tests = g_getenv ("MD_TESTS_DIR");
  gchar *def = g_build_filename (tests ? tests : ".", "..", "models", "synthvqa",
      "synthvqa-llm-f16.gguf", NULL);
  e = gst_element_factory_make ("mustdropvqa", NULL);
  bus = gst_bus_new ();
  gst_element_set_bus (e, bus);
  if (tests && g_file_test (def, G_FILE_TEST_IS_REGULAR)
      && !g_getenv ("MUSTDROP_MODEL_DIR")) {
    fail_if (gst_element_set_state (e, GST_STATE_PAUSED) ==
        GST_STATE_CHANGE_FAILURE, "the default model was not used");
    gchar *model = NULL, *mmproj = NULL;
    g_object_get (e, "model", &model, "mmproj", &mmproj, NULL);
    fail_unless (model && g_str_has_suffix (model, "synthvqa-llm-f16.gguf"),
        "model property: %s", model ? model : "(null)");
    fail_unless (mmproj && g_str_has_suffix (mmproj, "synthvqa-mmproj-f16.gguf"),
        "mmproj property: %s", mmproj ? mmproj : "(null)");
    g_free (model);
    g_free (mmproj);
    gst_element_set_state (e, GST_STATE_NULL);
  } else {
    gst_message_unref (expect_state_change_error (e, bus));
  }
  g_free (def);
  gst_object_unref (e);
  gst_object_unref (bus);
}

GST_END_TEST;

/* device=cuda: loads where CUDA is built and present, else the state
 * change fails with an error whose headline names CUDA. */
GST_START_TEST (test_device_cuda)
{
  GstBus *bus;
  GstElement *e = make_vqa (&bus, "device", "cuda:0", NULL);

  if (gst_element_set_state (e, GST_STATE_PAUSED) == GST_STATE_CHANGE_FAILURE) {
    GstMessage *m = gst_bus_timed_pop_filtered (bus, 0, GST_MESSAGE_ERROR);
    fail_unless (m != NULL, "state change failed without an error");
    gchar *text = headline (m);
    fail_unless (strstr (text, "CUDA") != NULL, "headline: %s", text);
    g_free (text);
    gst_message_unref (m);
  }
  gst_element_set_state (e, GST_STATE_NULL);
  gst_object_unref (e);
  gst_object_unref (bus);
}

GST_END_TEST;

/* Files that cannot be loaded fail the state change to PAUSED itself, with
 * an error posted before it returns (an application never waits for a
 * model that will not come), whatever the defect. */
GST_START_TEST (test_bad_model_file)
{
  gchar *dir = g_dir_make_tmp ("mustdrop-bad-XXXXXX", NULL);
  fail_unless (dir != NULL);
  gchar *junk = g_build_filename (dir, "junk.gguf", NULL);
  gchar *empty = g_build_filename (dir, "empty.gguf", NULL);
  gchar *cut = g_build_filename (dir, "cut.gguf", NULL);
  gchar *data = NULL;
  gsize len = 0;
  /* "GGUF" magic, then garbage; an empty file; a cut-off LLM */
  fail_unless (g_file_set_contents (junk, "GGUF\003\000\000\000garbage!garbage!",
          24, NULL));
  fail_unless (g_file_set_contents (empty, "", 0, NULL));
  fail_unless (g_file_get_contents (llm_path, &data, &len, NULL));
  fail_unless (g_file_set_contents (cut, data, (gssize) len / 2, NULL));
  g_free (data);
  const gchar *cases[][3] = {
    {mmproj_path, mmproj_path, NULL},   /* a vision projector as the LLM */
    {junk, mmproj_path, NULL},
    {llm_path, junk, NULL},
    {llm_path, llm_path, NULL}, /* an LLM as the projector */
    {empty, mmproj_path, "empty"},
    {cut, mmproj_path, "truncated"},
    {dir, mmproj_path, "directory"},
    {llm_path, dir, "directory"},
  };

  for (guint c = 0; c < G_N_ELEMENTS (cases); c++) {
    GstBus *bus;
    GstElement *e = make_vqa (&bus, "model", cases[c][0], "mmproj",
        cases[c][1], NULL);
    GstMessage *m = expect_state_change_error (e, bus);
    gchar *text = headline (m);
    fail_unless (*text, "case %u: empty headline", c);
    if (cases[c][2])
      fail_unless (strstr (text, cases[c][2]) != NULL, "case %u: %s", c, text);
    g_free (text);
    gst_message_unref (m);
    gst_object_unref (e);
    gst_object_unref (bus);
  }
  for (const gchar * const *f = (const gchar *[]) {
      junk, empty, cut, NULL}; *f; f++)
    g_unlink (*f);
  g_rmdir (dir);
  g_free (junk);
  g_free (empty);
  g_free (cut);
  g_free (dir);
}

GST_END_TEST;

/* A question longer than the model's context fails at start, and says the
 * question is the cause. */
GST_START_TEST (test_question_too_long)
{
  GstBus *bus;
  gchar *q = g_strnfill (20000, 'a');
  GstElement *e = make_vqa (&bus, "question", q, "context-size", 512, NULL);
  GstMessage *m = expect_state_change_error (e, bus);
  gchar *text = headline (m);
  fail_unless (strstr (text, "question is 20000 tokens") != NULL, "%s", text);
  g_free (text);
  gst_message_unref (m);
  gst_object_unref (e);
  gst_object_unref (bus);
  g_free (q);
}

GST_END_TEST;

static GstPadProbeReturn
count_buffers (GstPad * pad, GstPadProbeInfo * info, gpointer user)
{
  g_atomic_int_inc ((gint *) user);
  return GST_PAD_PROBE_OK;
}

static void
slow_answer (GstElement * e, const GstStructure * s, gpointer user)
{
  /* runs on the inference thread: makes every answer take 150 ms more */
  g_usleep (150 * 1000);
}

/* Runs a launch line to EOS, counting buffers reaching element `probe`'s
 * sink pad into *count; returns the answers posted. */
static guint
run_pipeline (const gchar * launch, const gchar * probe, gint * count,
    guint64 * dropped, gboolean slow)
{
  GError *err = NULL;
  GstElement *p = gst_parse_launch (launch, &err);
  guint answers = 0;

  fail_unless (p != NULL, "parse: %s", err ? err->message : "?");
  if (probe) {
    GstElement *e = gst_bin_get_by_name (GST_BIN (p), probe);
    GstPad *pad = gst_element_get_static_pad (e, "sink");
    gst_pad_add_probe (pad, GST_PAD_PROBE_TYPE_BUFFER, count_buffers, count,
        NULL);
    gst_object_unref (pad);
    gst_object_unref (e);
  }
  if (slow) {
    GstElement *v = gst_bin_get_by_name (GST_BIN (p), "v");
    g_signal_connect (v, "answer", G_CALLBACK (slow_answer), NULL);
    gst_object_unref (v);
  }
  GstBus *bus = gst_element_get_bus (p);
  fail_unless (gst_element_set_state (p, GST_STATE_PLAYING) !=
      GST_STATE_CHANGE_FAILURE);
  for (;;) {
    GstMessage *m = gst_bus_timed_pop_filtered (bus, MSG_TIMEOUT,
        GST_MESSAGE_EOS | GST_MESSAGE_ERROR | GST_MESSAGE_ELEMENT);
    fail_unless (m != NULL, "pipeline timed out");
    if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_ERROR) {
      GError *e2;
      gchar *dbg;
      gst_message_parse_error (m, &e2, &dbg);
      fail ("error: %s (%s)", e2->message, dbg);
    }
    if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_EOS) {
      gst_message_unref (m);
      break;
    }
    if (gst_message_has_name (m, "mustdrop-answer"))
      answers++;
    if (gst_message_has_name (m, "mustdrop-stats") && dropped)
      gst_structure_get_uint64 (gst_message_get_structure (m), "dropped",
          dropped);
    gst_message_unref (m);
  }
  gst_element_set_state (p, GST_STATE_NULL);
  gst_object_unref (bus);
  gst_object_unref (p);
  return answers;
}

/* Live 30 fps source, ten windows a second, and a slow model
 * (long sampled answers, and an "answer" handler that takes its time):
 * pending windows are dropped, video never is. */
GST_START_TEST (test_live_drops_windows_not_video)
{
  gint video = 0;
  guint64 dropped = 0;
  gchar *launch = g_strdup_printf ("videotestsrc is-live=true num-buffers=90 "
      "! video/x-raw,format=I420,width=320,height=240,framerate=30/1 "
      "! mustdropvqa name=v model=%s mmproj=%s threads=1 window=0.1 "
      "sample-fps=0 max-frames=2 max-pending=1 max-new-tokens=400 "
      "temperature=1.0 context-size=1024 stats=true "
      "! fakesink name=s sync=true",
      llm_path, mmproj_path);
  guint answers = run_pipeline (launch, "s", &video, &dropped, TRUE);

  g_free (launch);
  GST_INFO ("video %d, answers %u, dropped %" G_GUINT64_FORMAT, video, answers,
      dropped);
  fail_unless_equals_int (g_atomic_int_get (&video), 90);
  fail_unless (answers >= 1);
  fail_unless (dropped >= 1, "no window dropped (answers %u)", answers);
}

GST_END_TEST;

/* text_src through a queue into textoverlay: no stall, text buffers and the
 * JSON lines file get the answers. */
GST_START_TEST (test_text_pad_textoverlay)
{
  GstElement *to = gst_element_factory_make ("textoverlay", NULL);
  fail_unless (to != NULL, "textoverlay not found (Debian 12: gstreamer1.0-x; "
      "bash .ci/install-deps)");
  gst_object_unref (to);
  gint texts = 0;
  gchar *jsonl = NULL;
  gint fd = g_file_open_tmp ("mustdrop-test-XXXXXX.jsonl", &jsonl, NULL);
  fail_unless (fd >= 0);
  close (fd);                   /* the element appends to it */
  gchar *launch = g_strdup_printf ("videotestsrc num-buffers=30 "
      "! video/x-raw,format=I420,width=64,height=48,framerate=10/1 "
      "! mustdropvqa name=v model=%s mmproj=%s threads=1 window=1 "
      "sample-fps=4 max-new-tokens=4 jsonl-location=%s "
      "! textoverlay name=o ! fakesink "
      "v.text_src ! queue ! tee name=t ! queue ! o.text_sink "
      "t. ! queue ! fakesink name=ts", llm_path, mmproj_path, jsonl);
  guint answers = run_pipeline (launch, "ts", &texts, NULL, FALSE);
  fail_unless_equals_int (answers, 3);
  fail_unless_equals_int (g_atomic_int_get (&texts), 3);

  gchar *contents = NULL;
  fail_unless (g_file_get_contents (jsonl, &contents, NULL, NULL));
  gchar **lines = g_strsplit (g_strstrip (contents), "\n", -1);
  fail_unless_equals_int (g_strv_length (lines), 3);
  /* who answered first (the element's name, seq 1..), then the window */
  fail_unless (g_str_has_prefix (lines[0], "{\"stream\":\"v\",\"host\":"));
  for (guint i = 0; i < 3; i++) {
    gchar *seq = g_strdup_printf (",\"seq\":%u,", i + 1);
    gchar *window = g_strdup_printf (",\"window\":%u,\"start\":%u.000000", i, i);
    fail_unless (strstr (lines[i], seq) && strstr (lines[i], window), "%s", lines[i]);
    g_free (seq);
    g_free (window);
  }
  g_strfreev (lines);
  g_free (contents);
  g_unlink (jsonl);
  g_free (jsonl);
  g_free (launch);
}

GST_END_TEST;

/* JSON lines escape what JSON requires (quotes, backslashes, control
 * characters) and keep UTF-8 as it is. */
GST_START_TEST (test_jsonl_escapes)
{
  gchar *jsonl = NULL;
  gint fd = g_file_open_tmp ("mustdrop-test-XXXXXX.jsonl", &jsonl, NULL);
  fail_unless (fd >= 0);
  close (fd);
  GstBus *bus;
  GstElement *e = make_vqa (&bus, "window", 0.5, "sample-fps", 0.0,
      "jsonl-location", jsonl,
      "question", "A \"b\"\\c\td\ne\001 \xc3\xa9 \xf0\x9f\x98\x80?", NULL);
  GstHarness *h = gst_harness_new_with_element (e, "sink", "src");
  gst_harness_set_src_caps_str (h, CAPS_RGB);
  for (guint i = 0; i < 3; i++)
    gst_harness_push (h, make_frame (i, i * GST_SECOND / 10, W * H * 3));
  fail_unless (gst_harness_push_event (h, gst_event_new_eos ()));
  gst_structure_free (wait_element_message (bus, "mustdrop-stats"));
  gchar *contents = NULL;
  fail_unless (g_file_get_contents (jsonl, &contents, NULL, NULL));
  fail_unless (g_utf8_validate (contents, -1, NULL));
  fail_unless (strstr (contents, "\"question\":\"A \\\"b\\\"\\\\c\\u0009d"
          "\\ne\\u0001 \xc3\xa9 \xf0\x9f\x98\x80?\"") != NULL, "%s", contents);
  g_free (contents);
  gst_harness_teardown (h);
  gst_object_unref (e);
  gst_object_unref (bus);
  g_unlink (jsonl);
  g_free (jsonl);
}

GST_END_TEST;

/* A reduction spec goes to the engine; the answer reports its counts. */
GST_START_TEST (test_reduce)
{
  GstBus *bus;
  GstElement *e = make_vqa (&bus, "window", 1.0, "sample-fps", 4.0,
      "reduce", "uniform:tokens=4", NULL);
  GstHarness *h = gst_harness_new_with_element (e, "sink", "src");

  gst_harness_set_src_caps_str (h, CAPS_RGB);
  for (guint i = 0; i < 8; i++)
    gst_harness_push (h, make_frame (i, i * GST_SECOND / 10, W * H * 3));
  fail_unless (gst_harness_push_event (h, gst_event_new_eos ()));
  GstStructure *s = wait_element_message (bus, "mustdrop-answer");
  guint frames = 0, in = 0, kept = 0;
  gst_structure_get_uint (s, "frames", &frames);
  gst_structure_get_uint (s, "visual-tokens", &in);
  gst_structure_get_uint (s, "visual-tokens-kept", &kept);
  fail_unless (g_str_has_prefix (gst_structure_get_string (s, "reduce"),
          "uniform:"));
  fail_unless_equals_int (frames, 3);   /* 0, 0.3, 0.5 s (4 fps grid) */
  fail_unless_equals_int (kept, 4 * frames);
  fail_unless (in > kept, "in %u kept %u", in, kept);
  gst_structure_free (s);
  gst_harness_teardown (h);
  gst_object_unref (e);
  gst_object_unref (bus);
}

GST_END_TEST;

/* text_src in window timing: the answer as a text buffer spanning its
 * window, after stream-start/caps/segment; latency = upstream + window. */
GST_START_TEST (test_text_pad_window_timing)
{
  GstBus *bus;
  GstElement *e = make_vqa (&bus, "window", 1.0, "sample-fps", 0.0,
      "text-timing", 1, NULL);
  GstHarness *h = gst_harness_new_with_element (e, "sink", "src");
  GstHarness *ht = gst_harness_new_with_element (e, NULL, "text_src");

  gst_harness_set_src_caps_str (h, CAPS_RGB);
  for (guint i = 0; i <= 10; i++)
    gst_harness_push (h, make_frame (i, i * GST_SECOND / 10, W * H * 3));
  GstStructure *s = wait_element_message (bus, "mustdrop-answer");
  gchar *answer = g_strdup (gst_structure_get_string (s, "answer"));
  gst_structure_free (s);
  gst_harness_push (h, make_frame (11, 11 * GST_SECOND / 10, W * H * 3));

  GstBuffer *b = gst_harness_pull (ht);
  fail_unless (b != NULL);
  fail_unless_equals_uint64 (GST_BUFFER_PTS (b), 0);
  fail_unless_equals_uint64 (GST_BUFFER_DURATION (b), GST_SECOND);
  GstMapInfo map;
  fail_unless (gst_buffer_map (b, &map, GST_MAP_READ));
  fail_unless (map.size == strlen (answer) && !memcmp (map.data, answer,
          map.size));
  gst_buffer_unmap (b, &map);
  gst_buffer_unref (b);
  g_free (answer);

  GstPad *tp = gst_element_get_static_pad (e, "text_src");
  fail_unless (tp != NULL);
  GstCaps *caps = gst_pad_get_current_caps (tp);
  fail_unless (caps != NULL);
  fail_unless (gst_structure_has_name (gst_caps_get_structure (caps, 0),
          "text/x-raw"));
  gst_caps_unref (caps);
  GstQuery *q = gst_query_new_latency ();
  fail_unless (gst_pad_query (tp, q));
  GstClockTime min, max;
  gboolean live;
  gst_query_parse_latency (q, &live, &min, &max);
  fail_unless (min >= GST_SECOND, "text latency %" GST_TIME_FORMAT,
      GST_TIME_ARGS (min));
  gst_query_unref (q);
  gst_object_unref (tp);

  gst_harness_teardown (ht);
  gst_harness_teardown (h);
  gst_object_unref (e);
  gst_object_unref (bus);
}

GST_END_TEST;

/* Going to NULL while a long answer is being generated returns promptly. */
GST_START_TEST (test_stop_during_inference)
{
  GstBus *bus;
  GstElement *e = make_vqa (&bus, "window", 0.5, "sample-fps", 0.0,
      "max-new-tokens", 4000, "temperature", 1.0, "context-size", 4096,
      "max-frames", 4, "stream-tokens", TRUE, NULL);
  GstHarness *h = gst_harness_new_with_element (e, "sink", "src");

  gst_harness_set_src_caps_str (h, CAPS_RGB);
  for (guint i = 0; i < 6; i++)
    gst_harness_push (h, make_frame (i, i * GST_SECOND / 10, W * H * 3));
  /* generation has started once the first partial text is posted */
  GstStructure *s = wait_element_message (bus, "mustdrop-partial");
  fail_unless (gst_structure_get_string (s, "text") != NULL);
  gst_structure_free (s);
  gint64 t0 = g_get_monotonic_time ();
  fail_unless_equals_int (gst_element_set_state (e, GST_STATE_NULL),
      GST_STATE_CHANGE_SUCCESS);
  gint64 took = g_get_monotonic_time () - t0;
  fail_unless (took < 2 * G_USEC_PER_SEC, "stop took %" G_GINT64_FORMAT " us",
      took);

  gst_harness_teardown (h);
  gst_object_unref (e);
  gst_object_unref (bus);
}

GST_END_TEST;

/* ---- elements sharing one engine ---------------------------------------- */

static const gint branch_pattern[] = { 0, 2, 3, 4, 5, 6, 7, 8 };

/* One branch per pattern: 3 s of 10 fps video through mustdropvqa v<i>
 * (1 s windows, none dropped) into a fakesink. */
static gchar *
branches_launch (guint first, guint n, const gchar * extra)
{
  GString *l = g_string_new (NULL);
  for (guint i = first; i < first + n; i++)
    g_string_append_printf (l, "videotestsrc num-buffers=30 pattern=%d "
        "! video/x-raw,format=RGB,width=32,height=24,framerate=10/1 "
        "! mustdropvqa name=v%u model=%s mmproj=%s threads=1 max-new-tokens=4 "
        "window=1 max-pending=64 %s ! fakesink sync=false ",
        branch_pattern[i], i, llm_path, mmproj_path, extra ? extra : "");
  return g_string_free (l, FALSE);
}

/* What a run of branches gave: per element v<i>, its answers
 * ("index:text\n" in order) and the engine-users it saw; the engines
 * loaded (the "model-load" progress messages that say so). */
typedef struct
{
  GString *answers[8];
  guint users[8];
  guint loads;
  guint max_batched;            /* the largest "batched" of an answer (stats=true) */
  gchar order[256];             /* which element answered, in turn */
  gchar *reduce[8];             /* the spec of its last answer */
} BranchRun;

static gint
element_index (GstMessage * m)
{
  const gchar *name = GST_OBJECT_NAME (GST_MESSAGE_SRC (m));
  return name[0] == 'v' ? atoi (name + 1) : -1;
}

static void
note_message (GstMessage * m, BranchRun * r, guint first)
{
  if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_PROGRESS) {
    GstProgressType type;
    gchar *code, *text;
    gst_message_parse_progress (m, &type, &code, &text);
    r->loads += type == GST_PROGRESS_TYPE_START &&
        !g_strcmp0 (text, "Loading the model");
    g_free (code);
    g_free (text);
    return;
  }
  gint i = element_index (m) - (gint) first;
  if (i < 0 || i >= 8 || !gst_message_has_name (m, "mustdrop-answer"))
    return;
  const GstStructure *s = gst_message_get_structure (m);
  guint64 index = get_u64 (s, "window-index");
  g_string_append_printf (r->answers[i], "%" G_GUINT64_FORMAT ":%s\n", index,
      gst_structure_get_string (s, "answer"));
  g_free (r->reduce[i]);
  r->reduce[i] = g_strdup (gst_structure_get_string (s, "reduce"));
  guint batched = 0;
  if (gst_structure_get_uint (s, "batched", &batched))
    r->max_batched = MAX (r->max_batched, batched);
  gsize n = strlen (r->order);
  if (n + 1 < sizeof r->order)
    r->order[n] = (gchar) ('0' + i);
  if (!r->users[i]) {
    GstElement *e = GST_ELEMENT (GST_MESSAGE_SRC (m));
    g_object_get (e, "engine-users", &r->users[i], NULL);
  }
}

/* Runs a pipeline of branches, the first named v<first>, to EOS. */
static void
run_launch (gchar * launch, guint first, BranchRun * r)
{
  GError *err = NULL;
  GstElement *p = gst_parse_launch (launch, &err);

  g_free (launch);
  fail_unless (p != NULL, "parse: %s", err ? err->message : "?");
  memset (r, 0, sizeof *r);
  for (guint i = 0; i < 8; i++)
    r->answers[i] = g_string_new (NULL);
  GstBus *bus = gst_element_get_bus (p);
  fail_unless (gst_element_set_state (p, GST_STATE_PLAYING) !=
      GST_STATE_CHANGE_FAILURE);
  for (;;) {
    GstMessage *m = gst_bus_timed_pop_filtered (bus, 4 * MSG_TIMEOUT,
        GST_MESSAGE_EOS | GST_MESSAGE_ERROR | GST_MESSAGE_ELEMENT |
        GST_MESSAGE_PROGRESS);
    fail_unless (m != NULL, "pipeline timed out");
    if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_ERROR) {
      GError *e2;
      gchar *dbg;
      gst_message_parse_error (m, &e2, &dbg);
      fail ("error: %s (%s)", e2->message, dbg);
    }
    gboolean eos = GST_MESSAGE_TYPE (m) == GST_MESSAGE_EOS;
    note_message (m, r, first);
    gst_message_unref (m);
    if (eos)
      break;
  }
  gst_element_set_state (p, GST_STATE_NULL);
  gst_object_unref (bus);
  gst_object_unref (p);
}

/* Runs branches first..first+n (one pipeline) to EOS. */
static void
run_branches (guint first, guint n, const gchar * extra, BranchRun * r)
{
  run_launch (branches_launch (first, n, extra), first, r);
}

static void
branch_run_clear (BranchRun * r)
{
  for (guint i = 0; i < 8; i++) {
    g_string_free (r->answers[i], TRUE);
    g_free (r->reduce[i]);
  }
}

/* n elements of one pipeline load the model once, share it (engine-users),
 * and answer every window of every stream as each stream does alone, with
 * answers of several streams decoded together (max-batch 8) and without
 * (max-batch 1). */
static void
check_shared (guint n)
{
  BranchRun all, alone, unbatched;

  run_branches (0, n, "stats=true", &all);
  fail_unless_equals_int (all.loads, 1);
  /* non-live and unsynced, the streams' windows close faster than the
   * answers come, so while one answer runs the other streams' next windows
   * wait and the next turn takes them together. With two streams the one
   * whose answer just ended has not queued its next window yet when the
   * other's turn starts, so they may never batch (docs/streams.md). */
  if (n > 2)
    fail_unless (all.max_batched > 1, "no answers decoded together (%u)",
        all.max_batched);
  run_branches (0, n, "stats=true max-batch=1", &unbatched);
  fail_unless_equals_int (unbatched.max_batched, 1);
  for (guint i = 0; i < n; i++) {
    fail_unless_equals_string (all.answers[i]->str,
        unbatched.answers[i]->str);
    fail_unless_equals_int (all.users[i], n);
    run_branches (i, 1, NULL, &alone);
    fail_unless_equals_int (alone.loads, 1);
    fail_unless_equals_int (alone.users[0], 1);
    /* windows 0, 1, 2, each answered */
    fail_unless (g_str_has_prefix (alone.answers[0]->str, "0:") &&
        strstr (alone.answers[0]->str, "\n1:") &&
        strstr (alone.answers[0]->str, "\n2:"), "alone: %s",
        alone.answers[0]->str);
    fail_unless_equals_string (all.answers[i]->str, alone.answers[0]->str);
    branch_run_clear (&alone);
  }
  branch_run_clear (&all);
  branch_run_clear (&unbatched);
}

GST_START_TEST (test_shared_engine_two)
{
  check_shared (2);
}

GST_END_TEST;

GST_START_TEST (test_shared_engine_eight)
{
  check_shared (8);
}

GST_END_TEST;

/* engine-name keeps engines apart; a setting that changes the engine
 * (threads) does too. */
GST_START_TEST (test_engine_name_separates)
{
  BranchRun r;
  gchar *launch;

  run_branches (0, 2, "engine-name=cam", &r);
  fail_unless_equals_int (r.loads, 1);
  fail_unless_equals_int (r.users[0], 2);
  branch_run_clear (&r);

  /* v0 and v1 with names of their own */
  gchar *la = branches_launch (0, 1, "engine-name=a");
  gchar *lb = branches_launch (1, 1, "engine-name=b");
  launch = g_strconcat (la, lb, NULL);
  GstElement *p = gst_parse_launch (launch, NULL);
  g_free (la);
  g_free (lb);
  g_free (launch);
  fail_unless (p != NULL);
  GstBus *bus = gst_element_get_bus (p);
  fail_unless (gst_element_set_state (p, GST_STATE_PAUSED) !=
      GST_STATE_CHANGE_FAILURE);
  GstElement *v0 = gst_bin_get_by_name (GST_BIN (p), "v0");
  guint users = 0, loads = 0;
  g_object_get (v0, "engine-users", &users, NULL);
  fail_unless_equals_int (users, 1);
  GstMessage *m;
  while ((m = gst_bus_pop_filtered (bus, GST_MESSAGE_PROGRESS))) {
    BranchRun tmp = { 0 };
    note_message (m, &tmp, 0);
    loads += tmp.loads;
    gst_message_unref (m);
  }
  fail_unless_equals_int (loads, 2);
  gst_element_set_state (p, GST_STATE_NULL);
  g_object_get (v0, "engine-users", &users, NULL);
  fail_unless_equals_int (users, 0);
  gst_object_unref (v0);
  gst_object_unref (bus);
  gst_object_unref (p);
}

GST_END_TEST;

/* Elements that sample, reduce and answer differently share one engine,
 * and each answers every window as it does alone; the last prunes inside
 * the prefill (FastV), which the loading element's spec does not. */
static const gchar *const own_settings[4] = {
  "sample-fps=5 reduce=random:keep=0.5 max-new-tokens=3",
  "sample-fps=2 max-frames=4 reduce=visionzip:keep=0.5",
  "sample-fps=10 reduce=none",
  "reduce=fastv:k=1",
};

GST_START_TEST (test_shared_own_settings)
{
  BranchRun all, alone;
  gchar *l[4];

  for (guint i = 0; i < 4; i++)
    l[i] = branches_launch (i, 1, own_settings[i]);
  run_launch (g_strconcat (l[0], l[1], l[2], l[3], NULL), 0, &all);
  fail_unless_equals_int (all.loads, 1);
  fail_unless (g_str_has_prefix (all.reduce[0], "random:keep=0.5"), "%s",
      all.reduce[0]);
  fail_unless (g_str_has_prefix (all.reduce[1], "visionzip:keep=0.5"), "%s",
      all.reduce[1]);
  fail_unless_equals_string (all.reduce[2], "none");
  fail_unless (g_str_has_prefix (all.reduce[3], "fastv:k=1"), "%s",
      all.reduce[3]);
  for (guint i = 0; i < 4; i++) {
    fail_unless_equals_int (all.users[i], 4);
    run_launch (g_strdup (l[i]), i, &alone);
    fail_unless (strstr (alone.answers[0]->str, "\n2:") != NULL, "%s",
        alone.answers[0]->str);
    fail_unless_equals_string (all.answers[i]->str, alone.answers[0]->str);
    fail_unless_equals_string (all.reduce[i], alone.reduce[0]);
    branch_run_clear (&alone);
    g_free (l[i]);
  }
  branch_run_clear (&all);
}

GST_END_TEST;

/* With the context's size left to the engine (context-size=0), it is sized
 * for the loading element's max-frames and max-new-tokens: an element that
 * asks for more gets its own engine, one that asks for less shares; with a
 * context-size they share whatever they ask. Started one after the other,
 * so which element loads is known. */
GST_START_TEST (test_shared_context_fits)
{
  GstBus *bus[4];
  GstElement *e[4];
  guint users[4];

  e[0] = make_vqa (&bus[0], "max-frames", 8, NULL);
  e[1] = make_vqa (&bus[1], "max-frames", 4, "max-new-tokens", 2, NULL);
  e[2] = make_vqa (&bus[2], "max-frames", 64, NULL);
  e[3] = make_vqa (&bus[3], "max-frames", 8, "max-new-tokens", 8, NULL);
  for (guint i = 0; i < 4; i++)
    fail_unless (gst_element_set_state (e[i], GST_STATE_PAUSED) !=
        GST_STATE_CHANGE_FAILURE);
  for (guint i = 0; i < 4; i++)
    g_object_get (e[i], "engine-users", &users[i], NULL);
  /* e0 loads; e1 (fewer frames and tokens) shares it; e2 (more frames) and
   * e3 (more tokens than either loaded engine's context holds) load their
   * own */
  fail_unless (users[0] == 2 && users[1] == 2 && users[2] == 1 &&
      users[3] == 1, "engine-users %u %u %u %u", users[0], users[1], users[2],
      users[3]);
  for (guint i = 0; i < 4; i++) {
    gst_element_set_state (e[i], GST_STATE_NULL);
    gst_object_unref (e[i]);
    gst_object_unref (bus[i]);
  }
  /* an explicit context: one engine for all */
  e[0] = make_vqa (&bus[0], "max-frames", 8, "context-size", 2048, NULL);
  e[1] = make_vqa (&bus[1], "max-frames", 64, "context-size", 2048,
      "max-new-tokens", 8, NULL);
  for (guint i = 0; i < 2; i++)
    fail_unless (gst_element_set_state (e[i], GST_STATE_PAUSED) !=
        GST_STATE_CHANGE_FAILURE);
  g_object_get (e[1], "engine-users", &users[1], NULL);
  fail_unless_equals_int (users[1], 2);
  for (guint i = 0; i < 2; i++) {
    gst_element_set_state (e[i], GST_STATE_NULL);
    gst_object_unref (e[i]);
    gst_object_unref (bus[i]);
  }
}

GST_END_TEST;

/* Two pipelines share an engine; one goes to NULL while the other runs,
 * which goes on answering every window. */
GST_START_TEST (test_shared_one_stops)
{
  gchar *la = g_strdup_printf ("videotestsrc is-live=true num-buffers=40 "
      "! video/x-raw,format=RGB,width=32,height=24,framerate=10/1 "
      "! mustdropvqa name=a model=%s mmproj=%s threads=1 max-new-tokens=4 "
      "window=1 max-pending=64 ! fakesink", llm_path, mmproj_path);
  gchar *lb = g_strdup_printf ("videotestsrc is-live=true "
      "! video/x-raw,format=RGB,width=32,height=24,framerate=10/1 "
      "! mustdropvqa name=b model=%s mmproj=%s threads=1 max-new-tokens=4 "
      "window=0.5 max-pending=64 ! fakesink", llm_path, mmproj_path);
  GstElement *pa = gst_parse_launch (la, NULL), *pb = gst_parse_launch (lb,
      NULL);
  g_free (la);
  g_free (lb);
  fail_unless (pa && pb);
  GstElement *a = gst_bin_get_by_name (GST_BIN (pa), "a");
  GstBus *bus_a = gst_element_get_bus (pa), *bus_b = gst_element_get_bus (pb);
  fail_unless (gst_element_set_state (pb, GST_STATE_PLAYING) !=
      GST_STATE_CHANGE_FAILURE);
  fail_unless (gst_element_set_state (pa, GST_STATE_PLAYING) !=
      GST_STATE_CHANGE_FAILURE);
  guint users = 0, answers = 0;
  g_object_get (a, "engine-users", &users, NULL);
  fail_unless_equals_int (users, 2);
  /* b answers, then stops while a runs */
  gst_structure_free (wait_element_message (bus_b, "mustdrop-answer"));
  fail_unless (gst_element_set_state (pb, GST_STATE_NULL) ==
      GST_STATE_CHANGE_SUCCESS);
  g_object_get (a, "engine-users", &users, NULL);
  fail_unless_equals_int (users, 1);
  for (;;) {
    GstMessage *m = gst_bus_timed_pop_filtered (bus_a, MSG_TIMEOUT,
        GST_MESSAGE_EOS | GST_MESSAGE_ERROR | GST_MESSAGE_ELEMENT);
    fail_unless (m != NULL, "pipeline a timed out");
    fail_unless (GST_MESSAGE_TYPE (m) != GST_MESSAGE_ERROR);
    gboolean eos = GST_MESSAGE_TYPE (m) == GST_MESSAGE_EOS;
    answers += gst_message_has_name (m, "mustdrop-answer");
    gst_message_unref (m);
    if (eos)
      break;
  }
  fail_unless_equals_int (answers, 4);  /* 4 s of video, 1 s windows */
  gst_element_set_state (pa, GST_STATE_NULL);
  gst_object_unref (a);
  gst_object_unref (bus_a);
  gst_object_unref (bus_b);
  gst_object_unref (pa);
  gst_object_unref (pb);
}

GST_END_TEST;

/* One pipeline whose element names the mmproj as its LLM, started on its
 * own thread: returns the error's text (or NULL). */
static gpointer
start_bad_model (gpointer unused)
{
  gchar *l = g_strdup_printf ("videotestsrc num-buffers=10 "
      "! video/x-raw,format=RGB,width=32,height=24,framerate=10/1 "
      "! mustdropvqa model=%s mmproj=%s threads=1 ! fakesink", mmproj_path,
      mmproj_path);
  GstElement *p = gst_parse_launch (l, NULL);
  g_free (l);
  GstBus *bus = gst_element_get_bus (p);
  gst_element_set_state (p, GST_STATE_PLAYING);
  GstMessage *m = gst_bus_timed_pop_filtered (bus, MSG_TIMEOUT,
      GST_MESSAGE_ERROR | GST_MESSAGE_EOS);
  gchar *text = NULL;
  if (m && GST_MESSAGE_TYPE (m) == GST_MESSAGE_ERROR) {
    GError *e;
    gst_message_parse_error (m, &e, NULL);
    text = g_strdup (e->message);
    g_error_free (e);
  }
  if (m)
    gst_message_unref (m);
  gst_element_set_state (p, GST_STATE_NULL);
  gst_object_unref (bus);
  gst_object_unref (p);
  return text;
}

/* Elements of one engine whose load fails, started at once (those that
 * find the load under way wait for it): each gets the load's cause as its
 * error; nothing is left in the table, so a good engine loads after. */
GST_START_TEST (test_shared_load_error)
{
  GThread *t[4];
  for (guint i = 0; i < 4; i++)
    t[i] = g_thread_new ("bad-model", start_bad_model, NULL);
  for (guint i = 0; i < 4; i++) {
    gchar *text = g_thread_join (t[i]);
    fail_unless (text && strstr (text, "not a language model"), "error %u: %s",
        i, text ? text : "(none)");
    g_free (text);
  }
  BranchRun r;
  run_branches (0, 1, NULL, &r);
  fail_unless_equals_int (r.loads, 1);
  fail_unless_equals_int (r.users[0], 1);
  branch_run_clear (&r);
}

GST_END_TEST;

/* A flooding element (a window every 0.1 s, 30 of them queued at once) and
 * one with three 1 s windows share an engine: the turns alternate, so the
 * second's answers come early, not after the flood. */
GST_START_TEST (test_shared_fair_to_slow_stream)
{
  BranchRun r;
  gchar *slow = branches_launch (1, 1, NULL);
  gchar *launch = g_strdup_printf ("videotestsrc num-buffers=30 pattern=0 "
      "! video/x-raw,format=RGB,width=32,height=24,framerate=10/1 "
      "! mustdropvqa name=v0 model=%s mmproj=%s threads=1 max-new-tokens=4 "
      "window=0.1 max-pending=64 ! fakesink sync=false %s",
      llm_path, mmproj_path, slow);
  GstElement *p = gst_parse_launch (launch, NULL);

  g_free (slow);
  g_free (launch);
  fail_unless (p != NULL);
  memset (&r, 0, sizeof r);
  for (guint i = 0; i < 8; i++)
    r.answers[i] = g_string_new (NULL);
  GstBus *bus = gst_element_get_bus (p);
  fail_unless (gst_element_set_state (p, GST_STATE_PLAYING) !=
      GST_STATE_CHANGE_FAILURE);
  for (;;) {
    GstMessage *m = gst_bus_timed_pop_filtered (bus, 4 * MSG_TIMEOUT,
        GST_MESSAGE_EOS | GST_MESSAGE_ERROR | GST_MESSAGE_ELEMENT);
    fail_unless (m != NULL && GST_MESSAGE_TYPE (m) != GST_MESSAGE_ERROR);
    gboolean eos = GST_MESSAGE_TYPE (m) == GST_MESSAGE_EOS;
    note_message (m, &r, 0);
    gst_message_unref (m);
    if (eos)
      break;
  }
  gst_element_set_state (p, GST_STATE_NULL);
  gst_object_unref (bus);
  gst_object_unref (p);
  GST_INFO ("answers in turn: %s", r.order);
  fail_unless_equals_int (r.users[0], 2);       /* one engine, two users */
  fail_unless_equals_int ((gint) strlen (r.order), 33);
  /* the slow stream's three answers before the flood's 15th */
  const gchar *third = strrchr (r.order, '1');
  guint flood_before = 0;
  for (const gchar * c = r.order; c < third; c++)
    flood_before += *c == '0';
  fail_unless (flood_before < 15, "answers in turn: %s", r.order);
  branch_run_clear (&r);
}

GST_END_TEST;

static Suite *
mustdropvqa_suite (void)
{
  Suite *s = suite_create ("mustdropvqa");
  TCase *tc = tcase_create ("general");

  find_models ();
  tcase_set_timeout (tc, 20);
  suite_add_tcase (s, tc);
  tcase_add_test (tc, test_meta_and_message);
  tcase_add_test (tc, test_meta_choice);
  tcase_add_test (tc, test_overlap_and_question);
  tcase_add_test (tc, test_eos_partial_window);
  tcase_add_test (tc, test_growing_window_ask);
  tcase_add_test (tc, test_growing_window_flush);
  tcase_add_test (tc, test_flush_during_inference);
  tcase_add_test (tc, test_caps_change);
  tcase_add_test (tc, test_formats);
  tcase_add_test (tc, test_reduce);
  tcase_add_test (tc, test_text_pad_window_timing);
  tcase_add_test (tc, test_stop_during_inference);
  tcase_add_test (tc, test_bad_properties);
  tcase_add_test (tc, test_bad_model_file);
  tcase_add_test (tc, test_device_cuda);
  tcase_add_test (tc, test_question_too_long);
  tcase_add_test (tc, test_bad_question_text);
  tcase_add_test (tc, test_new_stream_answers_open_window);
  tcase_add_test (tc, test_jsonl_escapes);
  tcase_add_test (tc, test_live_drops_windows_not_video);
  tcase_add_test (tc, test_text_pad_textoverlay);

  TCase *ts = tcase_create ("shared");
  tcase_set_timeout (ts, 120);
  suite_add_tcase (s, ts);
  tcase_add_test (ts, test_shared_engine_two);
  tcase_add_test (ts, test_shared_engine_eight);
  tcase_add_test (ts, test_engine_name_separates);
  tcase_add_test (ts, test_shared_own_settings);
  tcase_add_test (ts, test_shared_context_fits);
  tcase_add_test (ts, test_shared_one_stops);
  tcase_add_test (ts, test_shared_load_error);
  tcase_add_test (ts, test_shared_fair_to_slow_stream);

  /* one hour of 1 fps video */
  TCase *tl = tcase_create ("long");
  tcase_set_timeout (tl, 150);
  suite_add_tcase (s, tl);
  tcase_add_test (tl, test_one_hour_bounded);
  return s;
}

/* GStreamer's registry scan would run in this process (the uninstrumented
 * gst-plugin-scanner cannot load an ASan-built plugin, hence
 * GST_REGISTRY_FORK=no) and load every system plugin, some of which leak at
 * load (seen: OpenNI2 and codecalpha from plugins-bad). Those are not ours:
 * a fresh registry is made by a child process with leak detection off, and
 * this process only loads the plugins the tests use, with full leak
 * checking. GLib's deliberately abandoned quark tables are suppressed in
 * lsan.supp. */
static void
prime_registry (const char *self)
{
  const gchar *reg = g_getenv ("GST_REGISTRY");
  if (!reg || g_file_test (reg, G_FILE_TEST_EXISTS))
    return;
  gchar **env = g_environ_setenv (g_get_environ (), "ASAN_OPTIONS",
      "detect_leaks=0", TRUE);
  gchar *argv[] = { (gchar *) self, (gchar *) "--prime-registry", NULL };
  gint status = 0;
  GError *err = NULL;
  if (!g_spawn_sync (NULL, argv, env, G_SPAWN_DEFAULT, NULL, NULL, NULL, NULL,
          &status, &err)) {
    g_printerr ("cannot prime the registry: %s\n", err->message);
    g_clear_error (&err);
  }
  g_strfreev (env);
}

int
main (int argc, char **argv)
{
  if (argc > 1 && strcmp (argv[1], "--prime-registry") == 0) {
    gst_init (NULL, NULL);
    return 0;
  }
  prime_registry (argv[0]);
  gst_check_init (&argc, &argv);
  return gst_check_run_suite (mustdropvqa_suite (), "mustdropvqa", __FILE__);
}
