/* The windowing policy of mustdropvqa (mdv-windows.h). */
#include "mdv-windows.h"

GST_DEBUG_CATEGORY_EXTERN (mustdrop_vqa_debug);
#define GST_CAT_DEFAULT mustdrop_vqa_debug

static void
grid_init (MdvWindows * w)
{
  md_vqa_grid_init (&w->grid, w->params ? w->params->sample_fps : 0);
}

void
mdv_windows_init (MdvWindows * w, struct md_vqa *vqa,
    const struct md_vqa_stream_params *params, GstClockTime window_ns,
    GstClockTime step_ns)
{
  w->vqa = vqa;
  w->params = vqa ? params : NULL;
  w->window_ns = window_ns;
  w->step_ns = step_ns;
  w->origin = GST_CLOCK_TIME_NONE;
  w->next_index = 0;
  g_queue_init (&w->open);
  grid_init (w);
}

static MdvWindow *
window_new (MdvWindows * w, GstClockTime start, GstClockTime end)
{
  MdvWindow *win = g_new0 (MdvWindow, 1);
  char err[256] = "";

  win->index = w->next_index;
  win->start = start;
  win->end = end;
  if (GST_CLOCK_TIME_IS_VALID (end) &&
      md_vqa_stream_new_with (w->vqa, MD_VQA_WINDOW, w->params, &win->stream,
          err, sizeof err) != MD_OK)
    GST_WARNING ("window %" G_GUINT64_FORMAT ": no stream (%s), it stays "
        "empty", win->index, err);
  /* its bounds are known: max-frames frames spread over all of it */
  if (win->stream)
    md_vqa_stream_set_span (win->stream, (int64_t) start, (int64_t) (end - start));
  return win;
}

void
mdv_window_free (MdvWindow * win)
{
  if (!win)
    return;
  md_vqa_stream_free (win->stream);
  g_free (win);
}

gboolean
mdv_window_has_frames (const MdvWindow * win)
{
  return win->stream ? md_vqa_stream_n_frames (win->stream) > 0 :
      win->sampled > 0;
}

gboolean
mdv_windows_advance (MdvWindows * w, GstClockTime pts, GQueue * closed)
{
  if (GST_CLOCK_TIME_IS_VALID (w->origin) && pts < w->origin)
    return FALSE;
  if (!GST_CLOCK_TIME_IS_VALID (w->origin))
    w->origin = pts;
  if (w->window_ns == 0) {
    if (g_queue_is_empty (&w->open)) {
      g_queue_push_tail (&w->open, window_new (w, w->origin,
              GST_CLOCK_TIME_NONE));
      w->next_index++;
    }
    return TRUE;
  }
  for (;;) {
    MdvWindow *win = g_queue_peek_head (&w->open);
    if (!win || pts < win->end)
      break;
    g_queue_push_tail (closed, g_queue_pop_head (&w->open));
  }
  for (;;) {
    GstClockTime start = w->origin + w->next_index * w->step_ns;
    if (pts < start)
      break;
    /* a window already over when the first buffer after it came is skipped
     * (a gap in the stream) */
    if (pts < start + w->window_ns)
      g_queue_push_tail (&w->open, window_new (w, start, start + w->window_ns));
    w->next_index++;
  }
  return TRUE;
}

gboolean
mdv_windows_offer (MdvWindows * w, GstClockTime pts)
{
  gboolean any = FALSE;
  int64_t t = GST_CLOCK_TIME_IS_VALID (pts) ? (int64_t) pts : -1;

  for (GList * l = w->open.head; l; l = l->next) {
    MdvWindow *win = l->data;
    if (win->stream)
      win->wants = pts >= win->start && md_vqa_stream_offer (win->stream, t);
    else
      win->wants = pts >= win->start && md_vqa_grid_take (&w->grid, t);
    win->sampled += win->wants && !win->stream;
    any |= win->wants;
  }
  return any;
}

int
mdv_windows_add (MdvWindows * w, const struct md_frame *frame)
{
  int rc = MD_OK;

  for (GList * l = w->open.head; l; l = l->next) {
    MdvWindow *win = l->data;
    if (win->wants && win->stream) {
      int r = md_vqa_stream_add (win->stream, frame);
      if (r && !rc) {
        GST_WARNING ("window %" G_GUINT64_FORMAT ": %s", win->index,
            md_vqa_stream_error (win->stream));
        rc = r;
      }
    }
    win->wants = FALSE;
  }
  return rc;
}

void
mdv_windows_take_all (MdvWindows * w, GQueue * out)
{
  MdvWindow *win;

  while ((win = g_queue_pop_head (&w->open)))
    g_queue_push_tail (out, win);
  w->origin = GST_CLOCK_TIME_NONE;
  w->next_index = 0;
  grid_init (w);
}
