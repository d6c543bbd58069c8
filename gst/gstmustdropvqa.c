/* mustdropvqa: windowed video question answering with libmustdrop.
 *
 * SECTION:element-mustdropvqa
 * @title: mustdropvqa
 *
 * Passes video through untouched and, for every window of `window` seconds
 * (sampled at `sample-fps`, at most `max-frames` frames), asks a LLaVA-style
 * vision-language model `question`. Answers come out as
 *  - a #GstMustdropAnswerMeta on the first video buffer leaving the element
 *    after the answer is ready,
 *  - an element message "mustdrop-answer" on the bus,
 *  - the "answer" signal,
 *  - text/x-raw,format=utf8 buffers on the optional request pad text_src
 *    (GAP events keep that pad's timeline moving),
 *  - JSON lines in `jsonl-location`,
 *  - the same JSON objects published to an MQTT broker (`mqtt-uri`, QoS 1;
 *    mdv-mqtt.c).
 *
 * Threading: the model loads when the element goes to PAUSED (a file that
 * cannot be loaded fails that state change); frames are sampled and
 * converted to small RGB copies on the streaming thread; inference runs on
 * one worker thread. Closed windows wait in a queue of at most `max-pending`
 * entries; when it is full the oldest waiting window is dropped (and
 * counted), never the video.
 *
 * window = 0 keeps one growing window over the whole stream, answered at EOS
 * and on the "ask" action signal (a new question over everything seen so
 * far). Its frames are encoded on the worker thread as they arrive and only
 * their reduced visual tokens are kept, under a global cap
 * (max-visual-tokens, max-frames blocks), so memory does not grow with the
 * stream.
 *
 * What answers a question is libmustdrop's md_vqa (mustdrop-vqa.h); this
 * element only orchestrates. Its files: gstmustdropvqa-priv.h.
 *
 * Example launch line:
 * |[
 * gst-launch-1.0 filesrc location=clip.mp4 ! decodebin ! videoconvert ! \
 *   mustdropvqa model=llava.gguf mmproj=mmproj.gguf window=5 \
 *     question="What is the person doing?" ! fakesink
 * ]|
 */
#include <string.h>

#include "gstmustdropvqa-priv.h"

GST_DEBUG_CATEGORY (mustdrop_vqa_debug);

#define VIDEO_CAPS GST_VIDEO_CAPS_MAKE ("{ RGB, RGBA, BGRx, BGRA, I420, NV12 }")

enum
{
  SIGNAL_ANSWER,
  SIGNAL_ASK,
  LAST_SIGNAL
};

static guint signals[LAST_SIGNAL];

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE ("sink",
    GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS (VIDEO_CAPS));
static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE ("src",
    GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS (VIDEO_CAPS));
static GstStaticPadTemplate text_template = GST_STATIC_PAD_TEMPLATE ("text_src",
    GST_PAD_SRC, GST_PAD_REQUEST, GST_STATIC_CAPS (MDV_TEXT_CAPS));

#define gst_mustdrop_vqa_parent_class parent_class
G_DEFINE_TYPE (GstMustdropVqa, gst_mustdrop_vqa, GST_TYPE_ELEMENT);
GST_ELEMENT_REGISTER_DEFINE (mustdropvqa, "mustdropvqa", GST_RANK_NONE,
    GST_TYPE_MUSTDROP_VQA);

GType
gst_mustdrop_text_timing_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    {GST_MUSTDROP_TEXT_TIMING_ANSWER,
          "Timestamp text with the video frame the answer is ready at "
          "(live display, e.g. textoverlay)", "answer"},
    {GST_MUSTDROP_TEXT_TIMING_WINDOW,
          "Timestamp text with the window it describes (subtitle files; the "
          "text pad lags by the window plus inference time)", "window"},
    {0, NULL, NULL}
  };

  if (g_once_init_enter (&type)) {
    GType t = g_enum_register_static ("GstMustdropTextTiming", values);
    g_once_init_leave (&type, t);
  }
  return type;
}

/* ------------------------------------------------------------------------
 * Windows: the streaming thread's side
 * ------------------------------------------------------------------------ */

/* Ends the windows in `closed`: each goes to the worker (force: whatever
 * max-pending says), ending at `end` or the last buffer, whichever is
 * earlier. Lock held. */
static void
enqueue_closed_locked (GstMustdropVqa * self, GQueue * closed, gboolean force)
{
  MdvWindow *w;

  while ((w = g_queue_pop_head (closed))) {
    GstClockTime end = w->end;
    if (force && GST_CLOCK_TIME_IS_VALID (self->last_end) &&
        (!GST_CLOCK_TIME_IS_VALID (end) || end > self->last_end))
      end = self->last_end;
    mdv_enqueue_window_locked (self, w, end, NULL, force);
  }
}

/* The stream ends (EOS, a new stream, timestamps going back): every open
 * window is answered over the frames it has, ending with the last buffer;
 * the next buffer starts new windows. Lock held. */
static void
close_windows_locked (GstMustdropVqa * self)
{
  GQueue closed = G_QUEUE_INIT;

  mdv_windows_take_all (&self->windows, &closed);
  enqueue_closed_locked (self, &closed, TRUE);
  self->growing_epoch++;
  self->last_end = GST_CLOCK_TIME_NONE;
}

/* Forgets the open windows (a flush, a stop): those holding frames count as
 * aborted windows. Lock held. */
static void
reset_windows_locked (GstMustdropVqa * self)
{
  GQueue dropped = G_QUEUE_INIT;
  MdvWindow *w;

  mdv_windows_take_all (&self->windows, &dropped);
  while ((w = g_queue_pop_head (&dropped))) {
    if (mdv_window_has_frames (w)) {
      self->n_windows++;
      self->n_aborted++;
    }
    mdv_window_free (w);
  }
  self->growing_epoch++;
  self->growing_last_pts = GST_CLOCK_TIME_NONE;
  self->last_end = GST_CLOCK_TIME_NONE;
}

/* buf as a small RGB frame (the model's size; aspect kept), or NULL. */
static MdvFrame *
copy_frame (GstMustdropVqa * self, GstBuffer * buf)
{
  GstVideoInfo *in = &self->in_info;
  GstVideoInfo out;
  GstVideoFrame in_frame, out_frame;
  gint side = self->frame_side;
  gint w = GST_VIDEO_INFO_WIDTH (in), h = GST_VIDEO_INFO_HEIGHT (in);
  gint par_n = MAX (GST_VIDEO_INFO_PAR_N (in), 1);
  gint par_d = MAX (GST_VIDEO_INFO_PAR_D (in), 1);
  gdouble dw = (gdouble) w * par_n / par_d, dh = h;
  gdouble scale = MIN (1.0, side / MAX (dw, dh));
  gint ow = MAX (1, (gint) (dw * scale + 0.5));
  gint oh = MAX (1, (gint) (dh * scale + 0.5));
  MdvFrame *f;

  if (!self->converter || self->conv_w != ow || self->conv_h != oh) {
    GstVideoInfo tmp;
    if (self->converter)
      gst_video_converter_free (self->converter);
    gst_video_info_set_format (&tmp, GST_VIDEO_FORMAT_RGB, ow, oh);
    GST_VIDEO_INFO_FPS_N (&tmp) = GST_VIDEO_INFO_FPS_N (in);
    GST_VIDEO_INFO_FPS_D (&tmp) = GST_VIDEO_INFO_FPS_D (in);
    GST_VIDEO_INFO_INTERLACE_MODE (&tmp) = GST_VIDEO_INFO_INTERLACE_MODE (in);
    self->converter = gst_video_converter_new (in, &tmp,
        gst_structure_new ("config",
            GST_VIDEO_CONVERTER_OPT_THREADS, G_TYPE_UINT, 1,
            GST_VIDEO_CONVERTER_OPT_RESAMPLER_METHOD,
            GST_TYPE_VIDEO_RESAMPLER_METHOD, GST_VIDEO_RESAMPLER_METHOD_LINEAR,
            NULL));
    self->conv_w = ow;
    self->conv_h = oh;
    if (!self->converter)
      return NULL;
  }
  gst_video_info_set_format (&out, GST_VIDEO_FORMAT_RGB, ow, oh);

  if (!gst_video_frame_map (&in_frame, in, buf, GST_MAP_READ)) {
    GST_WARNING_OBJECT (self, "could not map the input frame");
    return NULL;
  }
  f = g_atomic_rc_box_new0 (MdvFrame);
  f->rgb = gst_buffer_new_allocate (NULL, GST_VIDEO_INFO_SIZE (&out), NULL);
  if (!f->rgb || !gst_video_frame_map (&out_frame, &out, f->rgb,
          GST_MAP_WRITE)) {
    gst_video_frame_unmap (&in_frame);
    mdv_frame_unref (f);
    return NULL;
  }
  gst_video_converter_frame (self->converter, &in_frame, &out_frame);
  f->width = ow;
  f->height = oh;
  f->stride = GST_VIDEO_FRAME_PLANE_STRIDE (&out_frame, 0);
  f->pts = GST_BUFFER_PTS (buf);
  gst_video_frame_unmap (&out_frame);
  gst_video_frame_unmap (&in_frame);
  return f;
}

/* window = 0: the sampled frame goes to the worker's encoder queue; a full
 * queue (the encoder is slower than sample-fps) loses its oldest frame. */
static void
queue_growing_frame (GstMustdropVqa * self, MdvFrame * f)
{
  g_mutex_lock (&self->lock);
  f->seq = ++self->growing_seq;
  f->epoch = self->growing_epoch;
  f->generation = g_atomic_int_get (&self->generation);
  self->growing_last_pts = f->pts;
  while (g_queue_get_length (&self->growing_frames) >= MDV_GROWING_QUEUE) {
    mdv_frame_unref (g_queue_pop_head (&self->growing_frames));
    self->n_frames_dropped++;
  }
  g_queue_push_tail (&self->growing_frames, f);
  g_cond_broadcast (&self->cond);
  g_mutex_unlock (&self->lock);
}

/* Window streams take the sampled frame (md_vqa copies it). */
static void
add_window_frame (GstMustdropVqa * self, MdvFrame * f)
{
  GstMapInfo map;

  if (!gst_buffer_map (f->rgb, &map, GST_MAP_READ))
    return;
  struct md_frame fr = { map.data, f->width, f->height, f->stride,
    GST_CLOCK_TIME_IS_VALID (f->pts) ? (int64_t) f->pts : -1
  };
  g_mutex_lock (&self->lock);
  mdv_windows_add (&self->windows, &fr);
  g_mutex_unlock (&self->lock);
  gst_buffer_unmap (f->rgb, &map);
}

/* Windows up to pts; whether some window takes the frame (lock held). */
static gboolean
advance_locked (GstMustdropVqa * self, GstClockTime pts)
{
  GQueue closed = G_QUEUE_INIT;

  if (!mdv_windows_advance (&self->windows, pts, &closed)) {
    /* timestamps went back without a flush (e.g. a looping source): what
     * came before is a stream of its own */
    GST_DEBUG_OBJECT (self, "PTS %" GST_TIME_FORMAT " before the window "
        "origin, restarting the windows", GST_TIME_ARGS (pts));
    close_windows_locked (self);
    mdv_windows_advance (&self->windows, pts, &closed);
  }
  enqueue_closed_locked (self, &closed, FALSE);
  return mdv_windows_offer (&self->windows, pts);
}

static void
sample (GstMustdropVqa * self, GstBuffer * buf)
{
  GstClockTime pts = GST_BUFFER_PTS (buf);
  GstClockTime end = GST_BUFFER_DURATION_IS_VALID (buf) ?
      pts + GST_BUFFER_DURATION (buf) : pts;
  gboolean take;

  g_mutex_lock (&self->lock);
  self->last_buffer_us = g_get_monotonic_time ();
  take = advance_locked (self, pts);
  if (!GST_CLOCK_TIME_IS_VALID (self->last_end) || end > self->last_end)
    self->last_end = end;
  g_mutex_unlock (&self->lock);
  if (!take)
    return;
  MdvFrame *f = copy_frame (self, buf);
  if (!f)
    return;
  if (self->windows.window_ns == 0) {
    queue_growing_frame (self, f);
  } else {
    add_window_frame (self, f);
    mdv_frame_unref (f);
  }
}

static GstFlowReturn
gst_mustdrop_vqa_chain (GstPad * pad, GstObject * parent, GstBuffer * buf)
{
  GstMustdropVqa *self = GST_MUSTDROP_VQA (parent);
  GstClockTime pts = GST_BUFFER_PTS (buf);
  GstClockTime end = GST_CLOCK_TIME_NONE;
  GPtrArray *results;

  if (!self->have_info) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION, (NULL),
        ("buffer before caps"));
    gst_buffer_unref (buf);
    return GST_FLOW_NOT_NEGOTIATED;
  }
  /* buffers without a timestamp pass but are not sampled */
  if (GST_CLOCK_TIME_IS_VALID (pts)) {
    end = GST_BUFFER_DURATION_IS_VALID (buf) ?
        pts + GST_BUFFER_DURATION (buf) : pts;
    sample (self, buf);
  }
  results = mdv_take_ready (self);
  if (results) {
    buf = gst_buffer_make_writable (buf);
    mdv_attach_answers (self, buf, results);
    if (self->stats)
      mdv_post_stats (self);
  }
  mdv_text_output (self, results, pts, end);
  if (results)
    g_ptr_array_unref (results);
  return gst_pad_push (self->srcpad, buf);
}

/* EOS: answer the open windows and wait for every pending answer. */
static void
drain (GstMustdropVqa * self)
{
  GPtrArray *results;
  GstClockTime last;

  g_mutex_lock (&self->lock);
  last = self->last_end;
  close_windows_locked (self);
  while (!self->flushing && !self->stopping &&
      (!g_queue_is_empty (&self->pending) || self->busy_job ||
          self->announcing))
    g_cond_wait (&self->cond, &self->lock);
  g_mutex_unlock (&self->lock);

  results = mdv_take_ready (self);
  mdv_text_output (self, results, last, GST_CLOCK_TIME_NONE);
  if (results)
    g_ptr_array_unref (results);
  /* bounded: a broker that is away must not hold EOS; what is left is
   * counted in the stats and tried again until the stop */
  if (self->mqtt && !mdv_mqtt_flush (self->mqtt, MDV_MQTT_FLUSH_US))
    GST_INFO_OBJECT (self, "EOS: MQTT answers still queued after %d s",
        (int) (MDV_MQTT_FLUSH_US / G_USEC_PER_SEC));
  mdv_post_stats (self);
}

static gboolean
set_caps (GstMustdropVqa * self, GstEvent * event)
{
  GstCaps *caps;
  GstVideoInfo info;

  gst_event_parse_caps (event, &caps);
  if (!gst_video_info_from_caps (&info, caps)) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION, (NULL),
        ("invalid caps %" GST_PTR_FORMAT, caps));
    gst_event_unref (event);
    return FALSE;
  }
  self->in_info = info;
  self->have_info = TRUE;
  if (self->converter) {
    gst_video_converter_free (self->converter);
    self->converter = NULL;
  }
  return gst_pad_push_event (self->srcpad, event);
}

static gboolean
gst_mustdrop_vqa_sink_event (GstPad * pad, GstObject * parent,
    GstEvent * event)
{
  GstMustdropVqa *self = GST_MUSTDROP_VQA (parent);

  GST_LOG_OBJECT (self, "event %" GST_PTR_FORMAT, event);
  switch (GST_EVENT_TYPE (event)) {
    case GST_EVENT_CAPS:
      return set_caps (self, event);
    case GST_EVENT_STREAM_START:
      /* a new stream (e.g. concat's next file) ends the windows of the old
       * one as EOS would, without waiting for their answers */
      g_mutex_lock (&self->lock);
      close_windows_locked (self);
      g_mutex_unlock (&self->lock);
      self->text_need_start = TRUE;
      return gst_pad_push_event (self->srcpad, event);
    case GST_EVENT_SEGMENT:{
      const GstSegment *seg;
      gst_event_parse_segment (event, &seg);
      g_mutex_lock (&self->lock);
      self->segment = *seg;
      g_mutex_unlock (&self->lock);
      self->text_need_segment = TRUE;
      self->text_pos = self->text_end = GST_CLOCK_TIME_NONE;
      mdv_text_preroll (self);
      return gst_pad_push_event (self->srcpad, event);
    }
    case GST_EVENT_GAP:{
      GstClockTime ts, dur;
      gst_event_parse_gap (event, &ts, &dur);
      mdv_text_output (self, NULL, ts, GST_CLOCK_TIME_IS_VALID (dur) ?
          ts + dur : ts);
      return gst_pad_push_event (self->srcpad, event);
    }
    case GST_EVENT_EOS:
      drain (self);
      mdv_text_forward_event (self, event);
      return gst_pad_push_event (self->srcpad, event);
    case GST_EVENT_FLUSH_START:
      g_mutex_lock (&self->lock);
      self->flushing = TRUE;
      g_atomic_int_inc (&self->generation);
      mdv_clear_pending_locked (self);
      g_cond_broadcast (&self->cond);
      g_mutex_unlock (&self->lock);
      mdv_text_forward_event (self, event);
      return gst_pad_push_event (self->srcpad, event);
    case GST_EVENT_FLUSH_STOP:
      g_mutex_lock (&self->lock);
      reset_windows_locked (self);
      mdv_clear_pending_locked (self);
      self->flushing = FALSE;
      g_mutex_unlock (&self->lock);
      self->text_pos = self->text_end = GST_CLOCK_TIME_NONE;
      mdv_text_forward_event (self, event);
      return gst_pad_push_event (self->srcpad, event);
    default:
      return gst_pad_event_default (pad, parent, event);
  }
}

static GstIterator *
gst_mustdrop_vqa_iterate_internal_links (GstPad * pad, GstObject * parent)
{
  GstMustdropVqa *self = GST_MUSTDROP_VQA (parent);
  GstPad *other = NULL;
  GstIterator *it;
  GValue v = G_VALUE_INIT;

  if (pad == self->sinkpad)
    other = self->srcpad;
  else if (pad == self->srcpad)
    other = self->sinkpad;
  if (!other)
    return NULL;
  g_value_init (&v, GST_TYPE_PAD);
  g_value_set_object (&v, other);
  it = gst_iterator_new_single (GST_TYPE_PAD, &v);
  g_value_unset (&v);
  return it;
}

/* ------------------------------------------------------------------------
 * Request pad, "ask"
 * ------------------------------------------------------------------------ */

static GstPad *
gst_mustdrop_vqa_request_new_pad (GstElement * element, GstPadTemplate * templ,
    const gchar * name, const GstCaps * caps)
{
  GstMustdropVqa *self = GST_MUSTDROP_VQA (element);
  GstPad *pad;

  GST_OBJECT_LOCK (self);
  if (self->textpad) {
    GST_OBJECT_UNLOCK (self);
    GST_WARNING_OBJECT (self, "text_src already requested");
    return NULL;
  }
  GST_OBJECT_UNLOCK (self);
  pad = gst_pad_new_from_template (templ, "text_src");
  gst_pad_set_query_function (pad, GST_DEBUG_FUNCPTR (mdv_text_query));
  gst_pad_use_fixed_caps (pad);
  GST_OBJECT_LOCK (self);
  self->textpad = pad;
  GST_OBJECT_UNLOCK (self);
  if (GST_STATE (self) > GST_STATE_READY)
    gst_pad_set_active (pad, TRUE);
  gst_element_add_pad (element, pad);
  return pad;
}

static void
gst_mustdrop_vqa_release_pad (GstElement * element, GstPad * pad)
{
  GstMustdropVqa *self = GST_MUSTDROP_VQA (element);

  GST_OBJECT_LOCK (self);
  if (self->textpad != pad) {
    GST_OBJECT_UNLOCK (self);
    return;
  }
  self->textpad = NULL;
  GST_OBJECT_UNLOCK (self);
  gst_pad_set_active (pad, FALSE);
  gst_element_remove_pad (element, pad);
}

/* A question now: over the frames of the current window (a copy of its
 * stream), or with window = 0 over everything seen so far. */
static gboolean
gst_mustdrop_vqa_ask (GstMustdropVqa * self, const gchar * question)
{
  char err[512] = "";
  gboolean ok = FALSE;
  MdvWindow *w, *snap = NULL;

  g_mutex_lock (&self->lock);
  if (!self->vqa || md_vqa_check_question (self->vqa, question, NULL, err,
          sizeof err)) {
    g_mutex_unlock (&self->lock);
    if (*err) {
      err[0] = g_ascii_toupper (err[0]);
      GST_ELEMENT_WARNING (self, RESOURCE, SETTINGS, ("%s.", err), (NULL));
    }
    return FALSE;
  }
  w = g_queue_peek_tail (&self->windows.open);
  if (w && mdv_window_has_frames (w) && !self->flushing && !self->stopping) {
    snap = g_new0 (MdvWindow, 1);
    *snap = *w;
    snap->stream = NULL;
    if (w->stream && md_vqa_stream_clone (w->stream, &snap->stream, err,
            sizeof err))
      GST_WARNING_OBJECT (self, "ask: %s", err);
    ok = !w->stream || snap->stream;
  }
  if (ok)
    mdv_enqueue_window_locked (self, snap, w->stream ?
        (GstClockTime) md_vqa_stream_last_pts (snap->stream) :
        self->growing_last_pts, question, FALSE);
  else
    mdv_window_free (snap);
  g_mutex_unlock (&self->lock);
  GST_DEBUG_OBJECT (self, "ask \"%s\": %s", question, ok ? "queued" :
      "no frames yet");
  return ok;
}

/* ------------------------------------------------------------------------
 * State changes
 * ------------------------------------------------------------------------ */

/* Neither 'model' nor 'mmproj' set: the bundled default model (libmustdrop's
 * lookup: MUSTDROP_MODEL_DIR, the installed data dir, the source tree). The
 * paths found are stored in the settings, so the properties show what runs.
 * Called with the settings lock held. */
static void
use_default_model (MdvSettings * s, gchar ** msg, gchar ** dbg)
{
  char llm[4096], mm[4096], dir[4096];
  if (md_default_model_paths (llm, sizeof llm, mm, sizeof mm) == 0) {
    g_free (s->model);
    g_free (s->mmproj);
    s->model = g_strdup (llm);
    s->mmproj = g_strdup (mm);
    return;
  }
  GString *dirs = g_string_new (NULL);
  for (int i = 0; md_default_model_dir (i, dir, sizeof dir) == 0; i++)
    g_string_append_printf (dirs, "%s%s", i ? ", " : "", dir);
  *msg = g_strdup ("No model given, and the bundled default model was not "
      "found.");
  *dbg = g_strdup_printf ("set 'model' and 'mmproj', or put "
      "synthvqa-llm-f16.gguf and synthvqa-mmproj-f16.gguf in one of: %s "
      "(or a directory named by MUSTDROP_MODEL_DIR)", dirs->str);
  g_string_free (dirs, TRUE);
}

/* Checks what can be checked without the model and copies the settings of
 * this run into the state. Returns FALSE after posting an error. */
static gboolean
configure_run (GstMustdropVqa * self)
{
  MdvSettings *s = &self->settings;
  gchar *msg = NULL, *dbg = NULL;
  GstResourceError code = GST_RESOURCE_ERROR_SETTINGS;

  /* errors are posted after unlocking (a sync bus handler may read the
   * properties) */
  g_mutex_lock (&self->settings_lock);
  if ((!s->model || !*s->model) && (!s->mmproj || !*s->mmproj))
    use_default_model (s, &msg, &dbg);
  if (msg) {
    code = GST_RESOURCE_ERROR_NOT_FOUND;
  } else if (!s->model || !*s->model || !s->mmproj || !*s->mmproj) {
    code = GST_RESOURCE_ERROR_NOT_FOUND;
    msg = g_strdup ("No model given.");
    dbg = g_strdup ("set both 'model' (LLM .gguf) and 'mmproj' (vision "
        "projector .gguf), or neither for the bundled default model");
  } else if (s->window > 0 && s->window_overlap >= s->window) {
    msg = g_strdup ("window-overlap must be smaller than window.");
    dbg = g_strdup_printf ("window %g s, window-overlap %g s", s->window,
        s->window_overlap);
  } else if (s->jsonl_location && *s->jsonl_location &&
      g_file_test (s->jsonl_location, G_FILE_TEST_IS_DIR)) {
    code = GST_RESOURCE_ERROR_OPEN_WRITE;
    msg = g_strdup_printf ("jsonl-location \"%s\" is a directory.",
        s->jsonl_location);
  }
  if (msg) {
    g_mutex_unlock (&self->settings_lock);
    gst_element_message_full (GST_ELEMENT (self), GST_MESSAGE_ERROR,
        GST_RESOURCE_ERROR, code, msg, dbg, __FILE__, GST_FUNCTION, __LINE__);
    return FALSE;
  }
  GstClockTime window_ns = (GstClockTime) (s->window * GST_SECOND);
  GstClockTime step_ns = window_ns ? window_ns -
      (GstClockTime) (s->window_overlap * GST_SECOND) : 0;
  g_mutex_lock (&self->lock);
  mdv_windows_init (&self->windows, NULL, NULL, window_ns, step_ns);
  self->max_pending = s->max_pending;
  self->text_timing = s->text_timing;
  self->stats = s->stats;
  self->custom_meta = s->custom_meta;
  g_mutex_unlock (&self->lock);
  g_mutex_unlock (&self->settings_lock);
  return TRUE;
}

/* Zeroes the state of a run: windows, queues, counters, text timeline. */
static void
reset_run_state (GstMustdropVqa * self)
{
  g_mutex_lock (&self->lock);
  reset_windows_locked (self);
  mdv_clear_pending_locked (self);
  gst_segment_init (&self->segment, GST_FORMAT_TIME);
  self->flushing = self->stopping = FALSE;
  self->last_buffer_us = 0;
  self->stall_warned = FALSE;
  self->n_windows = self->n_answered = self->n_dropped = 0;
  self->n_failed = self->n_aborted = self->n_asked = self->n_empty = 0;
  self->max_infer_ns = self->reported_latency = 0;
  self->n_frames_encoded = self->n_frames_dropped = 0;
  self->held_tokens = self->held_tokens_max = self->visual_cap = 0;
  self->held_bytes = self->held_bytes_max = 0;
  self->text_pos = self->text_end = GST_CLOCK_TIME_NONE;
  self->text_need_start = TRUE;
  self->text_need_segment = TRUE;
  g_mutex_unlock (&self->lock);
}

void
mdv_post_progress (GstMustdropVqa * self, GstProgressType type,
    const gchar * text)
{
  gst_element_post_message (GST_ELEMENT (self),
      gst_message_new_progress (GST_OBJECT (self), type, "model-load", text));
}

/* Who answers, for the JSON lines: fixed for the run. */
static void
name_run (GstMustdropVqa * self)
{
  g_free (self->stream_name);
  g_free (self->host);
  g_free (self->run_id);
  self->stream_name = gst_object_get_name (GST_OBJECT (self));
  self->host = g_strdup (g_get_host_name ());
  self->run_id = g_uuid_string_random ();
  self->answer_seq = 0;
}

/* mqtt-uri: starts the publisher (connecting in the background). FALSE
 * after posting an error for settings that cannot work. */
static gboolean
mqtt_start (GstMustdropVqa * self)
{
  MdvSettings *s = &self->settings;
  gchar *err = NULL, *uri, *topic, *client_id;
  guint queue;
  MdvMqtt *m = NULL;

  g_mutex_lock (&self->lock);
  memset (&self->mqtt_final, 0, sizeof self->mqtt_final);
  g_mutex_unlock (&self->lock);
  /* copied: the start may post a warning (broker not reachable), and a sync
   * bus handler may read the properties */
  g_mutex_lock (&self->settings_lock);
  uri = g_strdup (s->mqtt_uri);
  topic = g_strdup (s->mqtt_topic);
  client_id = g_strdup (s->mqtt_client_id);
  queue = s->mqtt_queue;
  g_mutex_unlock (&self->settings_lock);
  if (uri && *uri)
    m = mdv_mqtt_start (GST_ELEMENT (self), uri, topic, self->host,
        self->stream_name, client_id, queue, &err);
  g_free (uri);
  g_free (topic);
  g_free (client_id);
  if (err) {
    gchar *msg = g_strdup_printf ("%s.", err);
    g_free (err);
    gst_element_message_full (GST_ELEMENT (self), GST_MESSAGE_ERROR,
        GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS, msg, NULL, __FILE__,
        GST_FUNCTION, __LINE__);
    return FALSE;
  }
  g_mutex_lock (&self->lock);
  self->mqtt = m;
  g_mutex_unlock (&self->lock);
  return TRUE;
}

/* Gives the publisher a bounded time to empty its queue, then stops it; what
 * was still queued is dropped, counted and said. */
static void
mqtt_stop (GstMustdropVqa * self)
{
  MdvMqttCounts before, after;
  MdvMqtt *m;

  g_mutex_lock (&self->lock);
  m = self->mqtt;
  g_mutex_unlock (&self->lock);
  if (!m)
    return;
  mdv_mqtt_flush (m, MDV_MQTT_FLUSH_US);
  mdv_mqtt_counts (m, &before);
  g_mutex_lock (&self->lock);
  self->mqtt = NULL;
  g_mutex_unlock (&self->lock);
  mdv_mqtt_stop (m, &after);
  g_mutex_lock (&self->lock);
  self->mqtt_final = after;
  g_mutex_unlock (&self->lock);
  if (after.dropped > before.dropped)
    GST_ELEMENT_WARNING (self, RESOURCE, WRITE,
        ("%" G_GUINT64_FORMAT " answers were not published to the MQTT broker "
            "before the stop (it did not acknowledge them within %d s); %"
            G_GUINT64_FORMAT " were dropped in all this run.",
            after.dropped - before.dropped,
            (int) (MDV_MQTT_FLUSH_US / G_USEC_PER_SEC), after.dropped),
        ("published %" G_GUINT64_FORMAT, after.published));
}

/* READY -> PAUSED: the settings are checked and the model is loaded here,
 * on the caller's thread, so that a bad file fails the state change itself.
 * An error posted later from another thread can reach an application before
 * it listens (gst-launch-1.0 quits a main loop that is not running yet and
 * then waits forever). */
static gboolean
validate_and_start (GstMustdropVqa * self)
{
  if (!configure_run (self))
    return FALSE;
  reset_run_state (self);
  g_atomic_int_set (&self->shutdown, 0);
  name_run (self);
  if (!mqtt_start (self))
    return FALSE;
  if (!mdv_engine_load (self)) {
    mdv_engine_free (self);
    mqtt_stop (self);
    mdv_post_progress (self, GST_PROGRESS_TYPE_ERROR, "Model load failed");
    return FALSE;
  }
  g_mutex_lock (&self->lock);
  mdv_windows_init (&self->windows, self->vqa, &self->stream_params,
      self->windows.window_ns, self->windows.step_ns);
  g_mutex_unlock (&self->lock);
  mdv_post_progress (self, GST_PROGRESS_TYPE_COMPLETE, "Model loaded");
  self->worker = g_thread_new ("mustdropvqa", mdv_worker_main, self);
  return TRUE;
}

static void
stop (GstMustdropVqa * self)
{
  g_mutex_lock (&self->lock);
  self->stopping = TRUE;
  g_atomic_int_set (&self->shutdown, 1);
  g_atomic_int_inc (&self->generation);
  g_cond_broadcast (&self->cond);
  g_mutex_unlock (&self->lock);
  if (self->worker) {
    g_thread_join (self->worker);
    self->worker = NULL;
  }
  mqtt_stop (self);             /* after the worker: nothing more comes */
  g_mutex_lock (&self->lock);
  reset_windows_locked (self);
  mdv_clear_pending_locked (self);
  self->have_info = FALSE;
  self->windows.vqa = NULL;
  self->windows.params = NULL;
  mdv_engine_free (self);       /* under lock: "ask" and the properties look */
  g_mutex_unlock (&self->lock);
  if (self->converter) {
    gst_video_converter_free (self->converter);
    self->converter = NULL;
  }
}

static GstStateChangeReturn
gst_mustdrop_vqa_change_state (GstElement * element, GstStateChange transition)
{
  GstMustdropVqa *self = GST_MUSTDROP_VQA (element);
  GstStateChangeReturn ret;

  switch (transition) {
    case GST_STATE_CHANGE_READY_TO_PAUSED:
      if (!validate_and_start (self))
        return GST_STATE_CHANGE_FAILURE;
      break;
    case GST_STATE_CHANGE_PAUSED_TO_READY:
      /* unblock a streaming thread waiting in EOS before pads deactivate */
      g_mutex_lock (&self->lock);
      self->stopping = TRUE;
      g_atomic_int_inc (&self->generation);
      g_cond_broadcast (&self->cond);
      g_mutex_unlock (&self->lock);
      break;
    default:
      break;
  }

  ret = GST_ELEMENT_CLASS (parent_class)->change_state (element, transition);
  if (ret == GST_STATE_CHANGE_FAILURE) {
    if (transition == GST_STATE_CHANGE_READY_TO_PAUSED)
      stop (self);
    return ret;
  }
  if (transition == GST_STATE_CHANGE_PAUSED_TO_READY)
    stop (self);
  return ret;
}

/* ------------------------------------------------------------------------
 * GObject
 * ------------------------------------------------------------------------ */

static void
gst_mustdrop_vqa_finalize (GObject * object)
{
  GstMustdropVqa *self = GST_MUSTDROP_VQA (object);

  stop (self);
  mdv_settings_clear (&self->settings);
  g_free (self->stream_name);
  g_free (self->host);
  g_free (self->run_id);
  g_mutex_clear (&self->settings_lock);
  g_mutex_clear (&self->lock);
  g_cond_clear (&self->cond);
  G_OBJECT_CLASS (parent_class)->finalize (object);
}

static void
gst_mustdrop_vqa_init (GstMustdropVqa * self)
{
  g_mutex_init (&self->settings_lock);
  g_mutex_init (&self->lock);
  g_cond_init (&self->cond);
  mdv_windows_init (&self->windows, NULL, NULL, 0, 0);
  g_queue_init (&self->pending);
  g_queue_init (&self->ready);
  g_queue_init (&self->growing_frames);
  self->growing_last_pts = GST_CLOCK_TIME_NONE;
  self->last_end = GST_CLOCK_TIME_NONE;
  gst_segment_init (&self->segment, GST_FORMAT_TIME);
  self->text_pos = self->text_end = GST_CLOCK_TIME_NONE;
  self->frame_side = 336;
  mdv_settings_init (&self->settings);

  self->sinkpad = gst_pad_new_from_static_template (&sink_template, "sink");
  gst_pad_set_chain_function (self->sinkpad,
      GST_DEBUG_FUNCPTR (gst_mustdrop_vqa_chain));
  gst_pad_set_event_function (self->sinkpad,
      GST_DEBUG_FUNCPTR (gst_mustdrop_vqa_sink_event));
  gst_pad_set_iterate_internal_links_function (self->sinkpad,
      GST_DEBUG_FUNCPTR (gst_mustdrop_vqa_iterate_internal_links));
  GST_PAD_SET_PROXY_CAPS (self->sinkpad);
  GST_PAD_SET_PROXY_ALLOCATION (self->sinkpad);
  gst_element_add_pad (GST_ELEMENT (self), self->sinkpad);

  self->srcpad = gst_pad_new_from_static_template (&src_template, "src");
  gst_pad_set_iterate_internal_links_function (self->srcpad,
      GST_DEBUG_FUNCPTR (gst_mustdrop_vqa_iterate_internal_links));
  GST_PAD_SET_PROXY_CAPS (self->srcpad);
  gst_element_add_pad (GST_ELEMENT (self), self->srcpad);
}

static void
gst_mustdrop_vqa_class_init (GstMustdropVqaClass * klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);

  GST_DEBUG_CATEGORY_INIT (mustdrop_vqa_debug, "mustdropvqa", 0,
      "Video question answering with libmustdrop");

  gobject_class->finalize = gst_mustdrop_vqa_finalize;
  mdv_install_properties (gobject_class);

  /**
   * GstMustdropVqa::answer:
   * @self: the element
   * @info: the "mustdrop-answer" structure (question, answer, window-start,
   *   window-end, window-*-running-time, frames, token counts)
   *
   * Emitted from the inference thread when a window is answered.
   */
  signals[SIGNAL_ANSWER] = g_signal_new ("answer", G_TYPE_FROM_CLASS (klass),
      G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL, G_TYPE_NONE, 1,
      GST_TYPE_STRUCTURE | G_SIGNAL_TYPE_STATIC_SCOPE);

  /**
   * GstMustdropVqa::ask:
   * @self: the element
   * @question: the question
   *
   * Action signal: ask about the frames of the current window now; with
   * window = 0, about everything seen since the stream started (the
   * question is answered once every frame sampled before it is encoded).
   * The answer comes out like the others (meta, "mustdrop-answer" message,
   * "answer" signal, text_src). Returns %TRUE when queued, %FALSE before
   * the first frame.
   */
  signals[SIGNAL_ASK] = g_signal_new_class_handler ("ask",
      G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST | G_SIGNAL_ACTION,
      G_CALLBACK (gst_mustdrop_vqa_ask), NULL, NULL, NULL, G_TYPE_BOOLEAN, 1,
      G_TYPE_STRING);

  gst_element_class_add_static_pad_template (element_class, &sink_template);
  gst_element_class_add_static_pad_template (element_class, &src_template);
  gst_element_class_add_static_pad_template (element_class, &text_template);
  gst_element_class_set_static_metadata (element_class,
      "Video question answering (libmustdrop)", "Filter/Analyzer/Video",
      "Asks a LLaVA-style vision-language model a question about windows of "
      "video off the streaming thread; answers as meta, bus messages, "
      "signals and an optional text pad. Video passes through untouched.",
      "gst-mustdrop developers");

  element_class->change_state =
      GST_DEBUG_FUNCPTR (gst_mustdrop_vqa_change_state);
  element_class->request_new_pad =
      GST_DEBUG_FUNCPTR (gst_mustdrop_vqa_request_new_pad);
  element_class->release_pad = GST_DEBUG_FUNCPTR (gst_mustdrop_vqa_release_pad);

  gst_type_mark_as_plugin_api (GST_TYPE_MUSTDROP_TEXT_TIMING, 0);
}
