/* The element's windowing policy (gst/mdv-windows.c) without a pipeline:
 * which windows open and close for a timestamp, which take a frame (the
 * sampling rule of md_vqa, spread over each window), overlap, gaps, timestamps going back,
 * the growing window. Window streams come from an md_vqa engine over the
 * tiny LLaVA fixture; frames are 4x4 grey squares. */
#include <string.h>

#include "md_test.h"
#include "mdv-windows.h"

GST_DEBUG_CATEGORY (mustdrop_vqa_debug);

#define MS (GST_MSECOND)

static uint8_t pixels[4 * 4 * 3];

static char model_path[1024], mmproj_path[1024];

/* The engine over the tiny fixture, loaded once with a sampling rate
 * none of the windows use (1/7 fps): each element's windows sample at
 * their own rate (md_vqa_stream_params), whoever loaded the engine. */
static struct md_vqa *
engine (struct md_vqa **vqa)
{
  struct md_vqa_params p = md_vqa_default_params ();
  char err[512];

  if (*vqa)
    return *vqa;
  p.model = model_path;
  p.mmproj = mmproj_path;
  p.device = "cpu";
  p.n_threads = 1;
  p.sample_fps = 1.0 / 7;
  if (md_vqa_load (&p, vqa, err, sizeof err) != MD_OK) {
    fprintf (stderr, "load: %s\n", err);
    exit (1);
  }
  return *vqa;
}

static struct md_vqa_stream_params stream_params;

/* The windows' stream settings: the engine's, sampling at fps. */
static const struct md_vqa_stream_params *
sampling (struct md_vqa **vqa, double fps)
{
  stream_params = md_vqa_stream_default_params (engine (vqa));
  stream_params.sample_fps = fps;
  return &stream_params;
}

/* Offers and, when taken, adds the frame at t; returns whether taken. */
static gboolean
feed (MdvWindows * w, GstClockTime t, GQueue * closed)
{
  CHECK (mdv_windows_advance (w, t, closed));
  if (!mdv_windows_offer (w, t))
    return FALSE;
  struct md_frame f = { pixels, 4, 4, 12, (int64_t) t };
  CHECK (mdv_windows_add (w, &f) == MD_OK);
  return TRUE;
}

static void
free_all (GQueue * q)
{
  MdvWindow *win;
  while ((win = g_queue_pop_head (q)))
    mdv_window_free (win);
}

static int32_t
frames_of (const MdvWindow * win)
{
  return win->stream ? md_vqa_stream_n_frames (win->stream) : 0;
}

/* 1 s windows, 10 fps video sampled at 5 fps: frames 0, 0.2 ... 0.8 s in
 * window 0, closed by the first frame at 1 s. */
static void
plain_windows (struct md_vqa **vqa)
{
  MdvWindows w;
  GQueue closed = G_QUEUE_INIT;
  guint taken = 0;

  mdv_windows_init (&w, engine (vqa), sampling (vqa, 5.0),
      GST_SECOND, GST_SECOND);
  for (guint i = 0; i < 10; i++)
    taken += feed (&w, i * 100 * MS, &closed);
  CHECK (taken == 5 && g_queue_is_empty (&closed));
  feed (&w, GST_SECOND, &closed);
  CHECK (g_queue_get_length (&closed) == 1);
  MdvWindow *win = g_queue_peek_head (&closed);
  CHECKF (win->index == 0 && win->start == 0 && win->end == GST_SECOND,
      "window %" G_GUINT64_FORMAT " [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
      ")", win->index, win->start, win->end);
  CHECKF (frames_of (win) == 5, "%d frames", frames_of (win));
  CHECK (md_vqa_stream_first_pts (win->stream) == 0);
  CHECK (md_vqa_stream_last_pts (win->stream) == 800 * (int64_t) MS);
  free_all (&closed);
  mdv_windows_take_all (&w, &closed);
  CHECK (g_queue_get_length (&closed) == 1);
  free_all (&closed);
}

/* Every frame offered (sample-fps 0) to a 1 s window of max_frames 8: its
 * bounds are its span, so the frames are taken on a 125 ms grid across all
 * of it (0, 0.2, 0.3, 0.4, 0.5, 0.7, 0.8, 0.9 s), not thinned as they come
 * (which kept 0, 0.2, 0.4, 0.6, 0.8). */
static void
spread (struct md_vqa **vqa)
{
  MdvWindows w;
  GQueue closed = G_QUEUE_INIT;
  static const int64_t want[] = { 0, 200, 300, 400, 500, 700, 800, 900 };

  mdv_windows_init (&w, engine (vqa), sampling (vqa, 0.0),
      GST_SECOND, GST_SECOND);
  for (guint i = 0; i <= 10; i++)
    feed (&w, i * 100 * MS, &closed);
  CHECK (g_queue_get_length (&closed) == 1);
  MdvWindow *win = g_queue_peek_head (&closed);
  CHECKF (frames_of (win) == 8, "%d frames", frames_of (win));
  for (int32_t i = 0; i < 8 && frames_of (win) == 8; i++)
    CHECKF (md_vqa_stream_frame_pts (win->stream, i) == want[i] * (int64_t) MS,
        "frame %d at %" G_GINT64_FORMAT, i, md_vqa_stream_frame_pts (win->stream, i));
  free_all (&closed);
  mdv_windows_take_all (&w, &closed);
  free_all (&closed);
}

/* 2 s windows every 1 s: a frame in the overlap goes to both; a window over
 * before any buffer reached it (a 3 s gap) is skipped, not opened empty. */
static void
overlap_and_gap (struct md_vqa **vqa)
{
  MdvWindows w;
  GQueue closed = G_QUEUE_INIT;

  mdv_windows_init (&w, engine (vqa), sampling (vqa, 1.0),
      2 * GST_SECOND, GST_SECOND);
  feed (&w, 0, &closed);
  feed (&w, 1500 * MS, &closed);
  CHECK (g_queue_get_length (&w.open) == 2);
  CHECK (frames_of (g_queue_peek_head (&w.open)) == 2);
  CHECK (frames_of (g_queue_peek_tail (&w.open)) == 1);
  feed (&w, 6500 * MS, &closed);       /* windows 0 and 1 end; 2..4 skipped */
  CHECK (g_queue_get_length (&closed) == 2);
  MdvWindow *open = g_queue_peek_head (&w.open);
  CHECKF (open && open->index == 5 && open->start == 5 * GST_SECOND,
      "open window %" G_GUINT64_FORMAT, open ? open->index : 0);
  free_all (&closed);
  mdv_windows_take_all (&w, &closed);
  free_all (&closed);
}

/* Timestamps going back without a flush: refused, nothing changed; after
 * take_all the windows restart at the new origin. */
static void
going_back (struct md_vqa **vqa)
{
  MdvWindows w;
  GQueue closed = G_QUEUE_INIT;

  mdv_windows_init (&w, engine (vqa), sampling (vqa, 1.0),
      GST_SECOND, GST_SECOND);
  feed (&w, 5 * GST_SECOND, &closed);
  CHECK (!mdv_windows_advance (&w, GST_SECOND, &closed));
  CHECK (g_queue_get_length (&w.open) == 1 && g_queue_is_empty (&closed));
  mdv_windows_take_all (&w, &closed);
  CHECK (g_queue_get_length (&closed) == 1);
  free_all (&closed);
  CHECK (feed (&w, GST_SECOND, &closed));
  MdvWindow *win = g_queue_peek_head (&w.open);
  CHECK (win && win->index == 0 && win->start == GST_SECOND);
  mdv_windows_take_all (&w, &closed);
  free_all (&closed);
}

/* window = 0: one window without an end or a stream; it counts the frames
 * the sampling grid takes (the worker's stream encodes them). */
static void
growing (struct md_vqa **vqa)
{
  MdvWindows w;
  GQueue closed = G_QUEUE_INIT;
  guint taken = 0;

  mdv_windows_init (&w, engine (vqa), sampling (vqa, 2.0),
      0, 0);
  for (guint i = 0; i < 30; i++) {
    CHECK (mdv_windows_advance (&w, i * 100 * MS, &closed));
    taken += mdv_windows_offer (&w, i * 100 * MS);
  }
  MdvWindow *win = g_queue_peek_head (&w.open);
  CHECK (g_queue_get_length (&w.open) == 1 && g_queue_is_empty (&closed));
  CHECK (win->stream == NULL && !GST_CLOCK_TIME_IS_VALID (win->end));
  CHECKF (taken == 6 && win->sampled == 6, "taken %u, sampled %" G_GUINT64_FORMAT,
      taken, win->sampled);
  CHECK (mdv_window_has_frames (win));
  mdv_windows_take_all (&w, &closed);
  free_all (&closed);
}

int
main (void)
{
  struct md_vqa *vqa = NULL;

  gst_init (NULL, NULL);
  GST_DEBUG_CATEGORY_INIT (mustdrop_vqa_debug, "mustdropvqa", 0, "test");
  memset (pixels, 128, sizeof pixels);
  md_test_data ("../models/fixtures/vision/tiny-llava-llm-f32.gguf", model_path,
      sizeof model_path);
  md_test_data ("../models/fixtures/vision/tiny-llava-mmproj-f32.gguf",
      mmproj_path, sizeof mmproj_path);
  plain_windows (&vqa);
  spread (&vqa);
  overlap_and_gap (&vqa);
  going_back (&vqa);
  growing (&vqa);
  md_vqa_free (vqa);
  return md_test_finish ("gst_windows");
}
