/* mustdropvqa's engine and inference thread (gstmustdropvqa-priv.h): the
 * engine is libmustdrop's md_vqa, loaded when the element starts; the worker
 * answers closed windows one at a time and, with window = 0, encodes the
 * sampled frames into the growing stream as they come. */
#include <errno.h>
#include <string.h>

#include "gstmustdropvqa-priv.h"

/* ------------------------------------------------------------------------
 * Jobs, results, frames
 * ------------------------------------------------------------------------ */

void
mdv_job_free (MdvJob * j)
{
  if (!j)
    return;
  g_free (j->question);
  g_free (j->system_prompt);
  g_free (j->choices);
  g_free (j->schema_text);
  md_vqa_stream_free (j->stream);
  g_free (j);
}

void
mdv_result_free (MdvResult * r)
{
  if (!r)
    return;
  mdv_job_free (r->job);
  md_vqa_answer_clear (&r->answer);
  g_free (r);
}

static void
frame_clear (gpointer data)
{
  MdvFrame *f = data;
  gst_clear_buffer (&f->rgb);
}

void
mdv_frame_unref (gpointer data)
{
  g_atomic_rc_box_release_full (data, frame_clear);
}

/* ------------------------------------------------------------------------
 * The engine
 * ------------------------------------------------------------------------ */

/* md_vqa's abort: the element stops, or a flush made the item in hand (a
 * job or a growing frame) stale. */
static bool
abort_cb (void *user)
{
  GstMustdropVqa *self = user;
  return g_atomic_int_get (&self->shutdown) ||
      g_atomic_int_get (&self->generation) !=
      g_atomic_int_get (&self->work_generation);
}

/* A message of libmustdrop as a headline: it starts with its cause. */
static gchar *
headline (const char *err)
{
  gchar *h = g_strdup_printf ("%s.", *err ? err : "unknown error");
  h[0] = g_ascii_toupper (h[0]);
  return h;
}

static void
post_error (GstMustdropVqa * self, GstResourceError code, gchar * msg,
    gchar * dbg)
{
  gst_element_message_full (GST_ELEMENT (self), GST_MESSAGE_ERROR,
      GST_RESOURCE_ERROR, code, msg, dbg, __FILE__, GST_FUNCTION, __LINE__);
}

/* A failed md_vqa_load: for a file the loader refused, the path and its
 * cause ("truncated", "empty file (0 bytes)", ...) in the headline; else
 * md_vqa's message, which names the cause first. */
static void
post_load_error (GstMustdropVqa * self, int rc, const char *err,
    const gchar * model, const gchar * mmproj)
{
  const gchar *path = NULL, *what = NULL;
  char cause[512];

  if (g_str_has_prefix (err, model) && !strncmp (err + strlen (model), ": ", 2))
    path = model, what = "language model";
  else if (g_str_has_prefix (err, mmproj) &&
      !strncmp (err + strlen (mmproj), ": ", 2))
    path = mmproj, what = "vision projector";
  gchar *dbg = g_strdup_printf ("%s (%s)", err, md_status_str (rc));
  if (!path) {
    post_error (self, rc == MD_ERR_INVALID || rc == MD_ERR_CONTEXT_FULL ?
        GST_RESOURCE_ERROR_SETTINGS : GST_RESOURCE_ERROR_OPEN_READ,
        headline (err), dbg);
    return;
  }
  post_error (self, !g_file_test (path, G_FILE_TEST_EXISTS) ?
      GST_RESOURCE_ERROR_NOT_FOUND : rc == MD_ERR_IO ?
      GST_RESOURCE_ERROR_OPEN_READ : GST_RESOURCE_ERROR_FAILED,
      g_strdup_printf ("Could not load the %s \"%s\": %s.", what, path,
          md_load_error_cause (err, path, cause, sizeof cause)), dbg);
}

/* The engine's parameters from the settings (settings_lock held). */
static struct md_vqa_params
engine_params (GstMustdropVqa * self)
{
  const MdvSettings *s = &self->settings;
  struct md_vqa_params p = md_vqa_default_params ();

  p.model = s->model;
  p.mmproj = s->mmproj;
  p.device = s->device;
  p.n_threads = (int32_t) s->threads;
  p.n_ctx = (int32_t) s->context_size;
  p.max_batch = (int32_t) s->max_batch;
  p.reduce = s->reduce;
  p.max_visual_tokens = (int32_t) s->max_visual_tokens;
  p.sample_fps = s->sample_fps;
  p.max_frames = (int32_t) s->max_frames;
  /* the growing window's cap leaves room for the question and the system
   * prompt (freed by mdv_engine_load) */
  p.question_hint = g_strconcat (s->question, " ", s->system_prompt, NULL);
  p.max_new_tokens = (int32_t) s->max_new_tokens;
  /* the engine may be shared: the abort is this element's streams' (set on
   * each), the log the engine's (mdv-engines.c) */
  return p;
}

static void
stream_params_clear (GstMustdropVqa * self)
{
  g_free ((gchar *) self->stream_params.reduce);
  g_free ((gchar *) self->stream_params.question_hint);
  memset (&self->stream_params, 0, sizeof self->stream_params);
}

/* This element's streams' settings, from the engine's parameters as this
 * element would load them: a shared engine loaded by another element
 * samples and reduces this element's windows as this element says. The
 * strings become the element's own. */
static void
take_stream_params (GstMustdropVqa * self, const struct md_vqa_params *p)
{
  struct md_vqa_stream_params *sp = &self->stream_params;

  stream_params_clear (self);
  sp->sample_fps = p->sample_fps;
  sp->max_frames = p->max_frames;
  sp->reduce = g_strdup (p->reduce);
  sp->max_visual_tokens = p->max_visual_tokens;
  sp->question_hint = g_strdup (p->question_hint);
  sp->max_new_tokens = p->max_new_tokens;
}

/* NULL, or why spec is not a reduction spec. */
static gchar *
reduce_error (const gchar * spec)
{
  struct md_reduce_config cfg;
  char err[256] = "";

  if (md_reduce_parse (spec, &cfg, err, sizeof err) == MD_OK)
    return NULL;
  return g_strdup_printf ("Invalid reduce spec \"%s\": %s", spec, err);
}

/* Opens jsonl-location: "-" is the process's own stdout stream, so that the
 * lines and what the application prints share one file position (a second
 * description of a redirected stdout, opened by name, would overwrite). */
static gboolean
open_jsonl (GstMustdropVqa * self, const gchar * path)
{
  if (!path || !*path)
    return TRUE;
  self->jsonl = !strcmp (path, "-") ? stdout : fopen (path, "a");
  if (self->jsonl)
    return TRUE;
  post_error (self, GST_RESOURCE_ERROR_OPEN_WRITE,
      g_strdup_printf ("Could not open \"%s\" for writing answers: %s.", path,
          g_strerror (errno)), NULL);
  return FALSE;
}

/* What the engine needs beyond loading: a question it can take (the
 * property's), window = 0's growing stream, the JSON lines file. */
static gboolean
engine_start (GstMustdropVqa * self, const gchar * question,
    const gchar * system, const gchar * jsonl, gboolean growing)
{
  char err[1024] = "";

  if (md_vqa_check_question (self->vqa, question, system, err, sizeof err)) {
    post_error (self, GST_RESOURCE_ERROR_SETTINGS, headline (err), NULL);
    return FALSE;
  }
  /* a window's settings are known now, not when its stream is made */
  struct md_vqa_stream *probe = NULL;
  if (!growing && md_vqa_stream_new_with (self->vqa, MD_VQA_WINDOW,
          &self->stream_params, &probe, err, sizeof err)) {
    post_error (self, GST_RESOURCE_ERROR_SETTINGS, headline (err), NULL);
    return FALSE;
  }
  md_vqa_stream_free (probe);
  if (growing && !md_vqa_stream_new_with (self->vqa, MD_VQA_GROWING,
          &self->stream_params, &self->growing, err, sizeof err))
    md_vqa_stream_set_client (self->growing, self, abort_cb, self);
  else if (growing) {
    post_error (self, GST_RESOURCE_ERROR_SETTINGS, headline (err),
        g_strdup ("window=0: raise context-size, or lower max-frames, "
            "max-new-tokens or max-visual-tokens"));
    return FALSE;
  }
  if (growing)
    self->visual_cap = (guint) md_vqa_stream_visual_cap (self->growing);
  self->frame_side = md_vqa_frame_side (self->vqa);
  return open_jsonl (self, jsonl);
}

/* A new engine is about to load (not a shared one): the progress message
 * says so, which is how an application (and the tests) count loads. */
static void
engine_loading (GstElement * element)
{
  GstMustdropVqa *self = GST_MUSTDROP_VQA (element);

  *self->loading_now = TRUE;
  mdv_post_progress (self, GST_PROGRESS_TYPE_START, "Loading the model");
}

gboolean
mdv_engine_load (GstMustdropVqa * self)
{
  char err[1024] = "";
  gchar *model, *mmproj, *question, *system, *jsonl, *why, *name;
  gchar *device, *reduce;

  /* a bad constraint or reduction is known before the model is loaded;
   * the reduction is this element's own, so an engine shared with others
   * must not be loaded with a bad one (their load would fail with it) */
  g_mutex_lock (&self->settings_lock);
  why = mdv_constraints_error_locked (&self->settings);
  if (!why)
    why = reduce_error (self->settings.reduce);
  g_mutex_unlock (&self->settings_lock);
  if (why) {
    mdv_post_progress (self, GST_PROGRESS_TYPE_START, "Loading the model");
    post_error (self, GST_RESOURCE_ERROR_SETTINGS, why, NULL);
    return FALSE;
  }

  g_mutex_lock (&self->settings_lock);
  struct md_vqa_params p = engine_params (self);
  model = g_strdup (self->settings.model);
  mmproj = g_strdup (self->settings.mmproj);
  question = g_strdup (self->settings.question);
  system = g_strdup (self->settings.system_prompt);
  jsonl = g_strdup (self->settings.jsonl_location);
  name = g_strdup (self->settings.engine_name);
  device = g_strdup (p.device);
  reduce = g_strdup (p.reduce);
  g_mutex_unlock (&self->settings_lock);
  /* the settings' strings may change once unlocked: the copies */
  p.model = model;
  p.mmproj = mmproj;
  p.device = device;
  p.reduce = reduce;
  take_stream_params (self, &p);
  /* the table's lock is taken without settings_lock: a load takes seconds */
  gboolean loaded = FALSE;
  self->loading_now = &loaded;
  int rc = mdv_engines_acquire (GST_ELEMENT (self), name, &p, engine_loading,
      &self->engine, err, sizeof err);
  self->loading_now = NULL;
  if (rc == MD_OK && !loaded)
    mdv_post_progress (self, GST_PROGRESS_TYPE_START,
        "Using the loaded engine");
  self->vqa = mdv_engine_vqa (self->engine);
  g_free ((gchar *) p.question_hint);
  g_free (name);
  g_free (device);
  g_free (reduce);

  gboolean ok = rc == MD_OK;
  if (!ok)
    post_load_error (self, rc, err, model, mmproj);
  else
    ok = engine_start (self, question, system, jsonl,
        self->windows.window_ns == 0);
  g_free (model);
  g_free (mmproj);
  g_free (question);
  g_free (system);
  g_free (jsonl);
  return ok;
}

void
mdv_engine_free (GstMustdropVqa * self)
{
  md_vqa_stream_free (self->growing);
  self->growing = NULL;
  self->vqa = NULL;
  stream_params_clear (self);
  mdv_engines_release (self->engine);
  self->engine = NULL;
  if (self->jsonl && self->jsonl != stdout)
    fclose (self->jsonl);
  self->jsonl = NULL;
}

/* ------------------------------------------------------------------------
 * The queue
 * ------------------------------------------------------------------------ */

static MdvJob *
job_new_locked (GstMustdropVqa * self, MdvWindow * w, GstClockTime end,
    const gchar * question)
{
  MdvJob *j = g_new0 (MdvJob, 1);

  j->index = w->index;
  j->stream = w->stream;        /* the job owns the window's frames now */
  w->stream = NULL;
  j->growing = j->stream == NULL;
  j->seq = self->growing_seq;
  j->epoch = self->growing_epoch;
  j->start = w->start;
  j->end = end;
  j->start_rt = gst_segment_to_running_time (&self->segment, GST_FORMAT_TIME,
      j->start);
  j->end_rt = gst_segment_to_running_time (&self->segment, GST_FORMAT_TIME,
      j->end);
  j->generation = g_atomic_int_get (&self->generation);

  g_mutex_lock (&self->settings_lock);
  j->question = g_strdup (question ? question : self->settings.question);
  j->system_prompt = g_strdup (self->settings.system_prompt);
  if (self->settings.choices && *self->settings.choices)
    j->choices = g_strdup (self->settings.choices);
  j->schema_text = g_strdup (self->settings.schema_text);
  j->max_new_tokens = self->settings.max_new_tokens;
  j->temperature = self->settings.temperature;
  j->seed = self->settings.seed;
  j->stream_tokens = self->settings.stream_tokens;
  j->stats = self->settings.stats;
  self->max_pending = self->settings.max_pending;
  g_mutex_unlock (&self->settings_lock);
  return j;
}

void
mdv_enqueue_window_locked (GstMustdropVqa * self, MdvWindow * w,
    GstClockTime end, const gchar * question, gboolean force)
{
  if (!mdv_window_has_frames (w)) {
    GST_DEBUG_OBJECT (self, "window %" G_GUINT64_FORMAT " has no frames",
        w->index);
    self->n_empty++;
    mdv_window_free (w);
    return;
  }
  self->n_windows++;
  self->n_asked += question != NULL;
  MdvJob *j = job_new_locked (self, w, end, question);
  mdv_window_free (w);
  while (!force && g_queue_get_length (&self->pending) >= self->max_pending) {
    MdvJob *old = g_queue_pop_head (&self->pending);
    GST_INFO_OBJECT (self, "dropping pending window %" G_GUINT64_FORMAT
        " (max-pending %u)", old->index, self->max_pending);
    self->n_dropped++;
    mdv_job_free (old);
  }
  g_queue_push_tail (&self->pending, j);
  g_cond_broadcast (&self->cond);
}

void
mdv_clear_pending_locked (GstMustdropVqa * self)
{
  MdvJob *j;
  MdvResult *r;
  MdvFrame *f;

  while ((j = g_queue_pop_head (&self->pending))) {
    self->n_aborted++;
    mdv_job_free (j);
  }
  while ((r = g_queue_pop_head (&self->ready)))
    mdv_result_free (r);
  while ((f = g_queue_pop_head (&self->growing_frames)))
    mdv_frame_unref (f);
}

/* ------------------------------------------------------------------------
 * The worker
 * ------------------------------------------------------------------------ */

/* window = 0: one sampled frame into the growing stream (lock not held). */
static void
encode_growing_frame (GstMustdropVqa * self, MdvFrame * f, guint * epoch)
{
  GstMapInfo map;

  if (f->generation != g_atomic_int_get (&self->generation) ||
      g_atomic_int_get (&self->shutdown))
    return;                     /* flushed meanwhile */
  g_atomic_int_set (&self->work_generation, f->generation);
  if (f->epoch != *epoch) {
    /* the windows restarted (a new stream): forget the old frames */
    md_vqa_stream_reset (self->growing);
    *epoch = f->epoch;
  }
  if (!gst_buffer_map (f->rgb, &map, GST_MAP_READ))
    return;
  struct md_frame fr = { map.data, f->width, f->height, f->stride,
    GST_CLOCK_TIME_IS_VALID (f->pts) ? (int64_t) f->pts : -1
  };
  int rc = md_vqa_stream_add (self->growing, &fr);
  gst_buffer_unmap (f->rgb, &map);
  if (rc == MD_ERR_ABORTED)
    return;
  if (rc != MD_OK) {
    GST_ELEMENT_WARNING (self, STREAM, FAILED,
        ("Could not encode the frame at %" GST_TIME_FORMAT ".",
            GST_TIME_ARGS (f->pts)), ("%s (%s)",
            md_vqa_stream_error (self->growing), md_status_str (rc)));
    return;
  }
  guint tokens = (guint) MAX (md_vqa_stream_visual_tokens (self->growing), 0);
  guint64 bytes = md_vqa_stream_held_bytes (self->growing);
  g_mutex_lock (&self->lock);
  self->n_frames_encoded++;
  self->held_tokens = tokens;
  self->held_bytes = bytes;
  self->held_tokens_max = MAX (self->held_tokens_max, tokens);
  self->held_bytes_max = MAX (self->held_bytes_max, bytes);
  g_mutex_unlock (&self->lock);
}

static bool
partial_cb (const char *text, int32_t token, void *user)
{
  GstMustdropVqa *self = user;
  MdvJob *j = self->busy_job;   /* set for the whole answer */
  mdv_post_partial (self, j, text);
  return true;
}

/* Answers j over its stream; NULL (counted by the caller) when it could
 * not. A failure that is not an abort is said in a warning. */
static MdvResult *
answer (GstMustdropVqa * self, MdvJob * j, guint epoch)
{
  MdvResult *r = g_new0 (MdvResult, 1);
  struct md_vqa_stream *s = j->growing ? self->growing : j->stream;
  char err[1024] = "";
  int rc;

  if (j->growing && (epoch != j->epoch || md_vqa_stream_n_frames (s) == 0)) {
    GST_DEBUG_OBJECT (self, "question \"%s\": no frames of its stream",
        j->question);
    g_free (r);
    return NULL;
  }
  struct md_vqa_ask ask = md_vqa_default_ask (j->question);
  ask.system = j->system_prompt;
  ask.max_new_tokens = (int32_t) j->max_new_tokens;
  ask.sampling.temp = (float) j->temperature;
  ask.sampling.seed = j->seed;
  if (j->stream_tokens) {
    ask.on_token = partial_cb;
    ask.token_user = self;
  }
  char **choices = NULL;
  ask.json_schema = j->schema_text;
  rc = j->choices ? md_vqa_choices_parse (j->choices, &choices, &ask.n_choices,
      err, sizeof err) : MD_OK;
  ask.choices = (const char *const *) choices;
  /* the engine may serve other elements too: this one's turn, its abort */
  if (!j->growing)
    md_vqa_stream_set_client (s, self, abort_cb, self);
  if (rc == MD_OK)
    rc = md_vqa_answer (s, &ask, &r->answer, err, sizeof err);
  md_vqa_choices_free (choices);
  if (rc == MD_OK) {
    r->job = j;
    return r;
  }
  if (rc != MD_ERR_ABORTED)
    gst_element_message_full (GST_ELEMENT (self), GST_MESSAGE_WARNING,
        GST_STREAM_ERROR, GST_STREAM_ERROR_FAILED,
        rc == MD_ERR_CONTEXT_FULL ? headline (err) :
        g_strdup_printf ("Inference failed for window %" G_GUINT64_FORMAT ".",
            j->index), g_strdup_printf ("%s (%s)", err, md_status_str (rc)),
        __FILE__, GST_FUNCTION, __LINE__);
  g_free (r);
  return NULL;
}

static void
maybe_post_latency (GstMustdropVqa * self, GstClockTime took)
{
  gboolean post = FALSE;

  g_mutex_lock (&self->lock);
  if (took > self->max_infer_ns)
    self->max_infer_ns = took;
  if (self->text_timing == GST_MUSTDROP_TEXT_TIMING_WINDOW &&
      self->max_infer_ns > self->reported_latency + self->reported_latency / 4)
    post = TRUE;
  g_mutex_unlock (&self->lock);
  if (post)
    gst_element_post_message (GST_ELEMENT (self),
        gst_message_new_latency (GST_OBJECT (self)));
}

/* Answers one job and hands the result to the streaming thread and the
 * application (lock held on entry and on return). */
static void
answer_job_locked (GstMustdropVqa * self, MdvJob * j, guint epoch)
{
  self->busy_job = j;
  g_atomic_int_set (&self->work_generation, j->generation);
  g_mutex_unlock (&self->lock);

  gint64 t0 = g_get_monotonic_time ();
  MdvResult *r = answer (self, j, epoch);
  GstClockTime took = (g_get_monotonic_time () - t0) * GST_USECOND;
  GstStructure *s = NULL;
  gboolean current = r && j->generation == g_atomic_int_get (&self->generation)
      && !g_atomic_int_get (&self->shutdown);

  if (current) {
    GST_DEBUG_OBJECT (self, "window %" G_GUINT64_FORMAT " answered in %"
        GST_TIME_FORMAT ": %s", j->index, GST_TIME_ARGS (took), r->answer.text);
    r->seq = ++self->answer_seq;
    r->answered_us = g_get_real_time ();
    if (self->jsonl || self->mqtt) {
      gchar *json = mdv_result_json (self, r);
      if (self->jsonl)
        mdv_write_jsonl (self->jsonl, json);
      if (self->mqtt)
        mdv_mqtt_publish (self->mqtt, json);
      g_free (json);
    }
    s = mdv_result_structure (r, j->stats);
  }

  /* queue it for the video first, then tell the application */
  g_mutex_lock (&self->lock);
  self->busy_job = NULL;
  if (current && j->generation == g_atomic_int_get (&self->generation)) {
    self->n_answered++;
    self->announcing = TRUE;
    g_queue_push_tail (&self->ready, r);
  } else {
    /* a flush or a stop interrupted it, or inference failed */
    if (j->generation != g_atomic_int_get (&self->generation) ||
        g_atomic_int_get (&self->shutdown))
      self->n_aborted++;
    else
      self->n_failed++;
    if (r)
      mdv_result_free (r);
    else
      mdv_job_free (j);
    gst_clear_structure (&s);
  }
  g_cond_broadcast (&self->cond);
  g_mutex_unlock (&self->lock);

  if (s) {
    g_signal_emit_by_name (self, "answer", s);
    gst_element_post_message (GST_ELEMENT (self),
        gst_message_new_element (GST_OBJECT (self), s));
    maybe_post_latency (self, took);
  }
  g_mutex_lock (&self->lock);
  self->announcing = FALSE;
  g_cond_broadcast (&self->cond);
}

/* text-timing=window: the text of a window exists only once the video has
 * passed its end. Anything that waits for the text before letting more video
 * through (a muxer behind a short queue) stops the stream for good; nothing
 * inside the element can see that, but this: the worker idle, a window open
 * and no video for MDV_STALL_WARN_S. One warning per run names the likely
 * cause (lock held). */
static void
warn_if_text_stalls_locked (GstMustdropVqa * self)
{
  MdvWindow *w = g_queue_peek_head (&self->windows.open);
  gint64 now = g_get_monotonic_time ();

  if (self->stall_warned || !w || self->busy_job ||
      !g_queue_is_empty (&self->pending) || self->last_buffer_us == 0 ||
      now - self->last_buffer_us < MDV_STALL_WARN_S * G_USEC_PER_SEC ||
      !g_atomic_pointer_get (&self->textpad))
    return;
  self->stall_warned = TRUE;
  GstClockTime start = w->start;
  g_mutex_unlock (&self->lock);
  GST_ELEMENT_WARNING (self, STREAM, FAILED,
      ("No video for %d s while text_src waits for the window starting at %"
          GST_TIME_FORMAT " (text-timing=window).", MDV_STALL_WARN_S,
          GST_TIME_ARGS (start)),
      ("The text of a window comes after the video has passed its end. If a "
          "muxer joins text_src and the video, the video branch needs a queue "
          "holding a window plus the inference time (e.g. queue "
          "max-size-time=0 max-size-buffers=0 max-size-bytes=0), or use "
          "text-timing=answer."));
  g_mutex_lock (&self->lock);
}

gpointer
mdv_worker_main (gpointer data)
{
  GstMustdropVqa *self = data;
  guint epoch = 0;              /* of the frames in the growing stream */

  g_mutex_lock (&self->lock);
  epoch = self->growing_epoch;
  while (!g_atomic_int_get (&self->shutdown)) {
    MdvJob *j = g_queue_peek_head (&self->pending);
    MdvFrame *f = g_queue_peek_head (&self->growing_frames);
    /* window = 0: frames are encoded as they come, and before a question
     * every frame sampled before it */
    if (f && (!j || !j->growing || f->seq <= j->seq)) {
      g_queue_pop_head (&self->growing_frames);
      g_cond_broadcast (&self->cond);
      g_mutex_unlock (&self->lock);
      encode_growing_frame (self, f, &epoch);
      mdv_frame_unref (f);
      g_mutex_lock (&self->lock);
      continue;
    }
    j = g_queue_pop_head (&self->pending);
    if (j) {
      answer_job_locked (self, j, epoch);
    } else if (self->text_timing == GST_MUSTDROP_TEXT_TIMING_WINDOW) {
      g_cond_wait_until (&self->cond, &self->lock,
          g_get_monotonic_time () + G_USEC_PER_SEC);
      warn_if_text_stalls_locked (self);
    } else {
      g_cond_wait (&self->cond, &self->lock);
    }
  }
  g_mutex_unlock (&self->lock);
  return NULL;
}
