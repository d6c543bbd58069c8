/* What an answer of mustdropvqa becomes (gstmustdropvqa-priv.h): the bus
 * message and signal structure, JSON lines, buffer meta, text_src buffers
 * and GAPs, the stats message. */
#include <string.h>

#include "gstmustdropmeta.h"
#include "gstmustdropvqa-priv.h"

static void set_value (GstStructure * s, const gchar * field,
    const struct md_value *v);

/* A parsed answer's object as a structure named "value" (the schema keeps
 * property names GstStructure can take). */
static GstStructure *
value_structure (const struct md_value *v)
{
  GstStructure *s = gst_structure_new_empty ("value");
  for (gint32 i = 0; i < v->n_members; i++)
    set_value (s, v->keys[i], &v->members[i]);
  return s;
}

static void
set_value (GstStructure * s, const gchar * field, const struct md_value *v)
{
  switch (v->type) {
    case MD_VALUE_BOOL:
      gst_structure_set (s, field, G_TYPE_BOOLEAN, (gboolean) v->boolean, NULL);
      break;
    case MD_VALUE_INT:
      gst_structure_set (s, field, G_TYPE_INT64, (gint64) v->integer, NULL);
      break;
    case MD_VALUE_STRING:
      gst_structure_set (s, field, G_TYPE_STRING, v->string, NULL);
      break;
    case MD_VALUE_OBJECT:{
      GValue sub = G_VALUE_INIT;
      g_value_init (&sub, GST_TYPE_STRUCTURE);
      g_value_take_boxed (&sub, value_structure (v));
      gst_structure_take_value (s, field, &sub);
      break;
    }
  }
}

/* The structure of "mustdrop-answer" messages and the "answer" signal. */
GstStructure *
mdv_result_structure (const MdvResult * r, gboolean stats)
{
  const MdvJob *j = r->job;
  const struct md_vqa_answer *a = &r->answer;
  GstStructure *s = gst_structure_new ("mustdrop-answer",
      "question", G_TYPE_STRING, j->question,
      "answer", G_TYPE_STRING, a->text,
      "window-index", G_TYPE_UINT64, j->index,
      "window-start", G_TYPE_UINT64, (guint64) j->start,
      "window-end", G_TYPE_UINT64, (guint64) j->end,
      "window-start-running-time", G_TYPE_UINT64, (guint64) j->start_rt,
      "window-end-running-time", G_TYPE_UINT64, (guint64) j->end_rt,
      "frames", G_TYPE_UINT, (guint) a->frames,
      "reduce", G_TYPE_STRING, a->reduce,
      "visual-tokens", G_TYPE_UINT, (guint) a->visual_tokens,
      "visual-tokens-kept", G_TYPE_UINT, (guint) a->visual_tokens_kept,
      "visual-tokens-final", G_TYPE_UINT, (guint) a->visual_tokens_final,
      "prompt-tokens", G_TYPE_UINT, (guint) a->prompt_tokens,
      "generated-tokens", G_TYPE_UINT, (guint) a->generated_tokens, NULL);
  if (a->value) {
    set_value (s, "value", a->value);
    gst_structure_set (s, "choice", G_TYPE_INT, (gint) a->choice, NULL);
  }
  if (stats)
    gst_structure_set (s, "encode-ms", G_TYPE_DOUBLE, a->timings.encode_ms,
        "prefill-ms", G_TYPE_DOUBLE, a->timings.prefill_ms,
        "decode-ms", G_TYPE_DOUBLE, a->timings.decode_ms,
        "batched", G_TYPE_UINT, (guint) a->batched, NULL);
  return s;
}

/* s as a JSON string; invalid UTF-8 (which nothing should let through) is
 * replaced rather than written, so every line parses. */
static void
json_string (GString * out, const gchar * text)
{
  gchar *valid = g_utf8_make_valid (text ? text : "", -1);
  const gchar *s = valid;

  g_string_append_c (out, '"');
  for (; *s; s++) {
    guchar c = (guchar) * s;
    if (c == '"' || c == '\\')
      g_string_append_printf (out, "\\%c", c);
    else if (c == '\n')
      g_string_append (out, "\\n");
    else if (c < 0x20)
      g_string_append_printf (out, "\\u%04x", c);
    else
      g_string_append_c (out, (gchar) c);
  }
  g_string_append_c (out, '"');
  g_free (valid);
}

/* A parsed answer as JSON (the schema's property order). */
static void
json_value (GString * out, const struct md_value *v)
{
  switch (v->type) {
    case MD_VALUE_BOOL:
      g_string_append (out, v->boolean ? "true" : "false");
      break;
    case MD_VALUE_INT:
      g_string_append_printf (out, "%" G_GINT64_FORMAT, (gint64) v->integer);
      break;
    case MD_VALUE_STRING:
      json_string (out, v->string);
      break;
    case MD_VALUE_OBJECT:
      g_string_append_c (out, '{');
      for (gint32 i = 0; i < v->n_members; i++) {
        if (i)
          g_string_append_c (out, ',');
        json_string (out, v->keys[i]);
        g_string_append_c (out, ':');
        json_value (out, &v->members[i]);
      }
      g_string_append_c (out, '}');
      break;
  }
}

static void
json_time (GString * out, const gchar * key, GstClockTime t)
{
  if (GST_CLOCK_TIME_IS_VALID (t))
    g_string_append_printf (out, ",\"%s\":%.6f", key, (double) t / GST_SECOND);
  else
    g_string_append_printf (out, ",\"%s\":null", key);
}

/* Who answered (stream, host, run, seq, time) first, then what. */
gchar *
mdv_result_json (GstMustdropVqa * self, const MdvResult * r)
{
  const struct md_vqa_answer *a = &r->answer;
  GString *s = g_string_new ("{\"stream\":");
  json_string (s, self->stream_name);
  g_string_append (s, ",\"host\":");
  json_string (s, self->host);
  g_string_append (s, ",\"run\":");
  json_string (s, self->run_id);
  g_string_append_printf (s, ",\"seq\":%" G_GUINT64_FORMAT ",\"time\":%.3f",
      r->seq, (double) r->answered_us / G_USEC_PER_SEC);
  g_string_append_printf (s, ",\"window\":%" G_GUINT64_FORMAT, r->job->index);
  json_time (s, "start", r->job->start);
  json_time (s, "end", r->job->end);
  json_time (s, "start_running_time", r->job->start_rt);
  json_time (s, "end_running_time", r->job->end_rt);
  g_string_append (s, ",\"question\":");
  json_string (s, r->job->question);
  g_string_append (s, ",\"answer\":");
  json_string (s, a->text);
  if (a->value) {
    g_string_append (s, ",\"value\":");
    json_value (s, a->value);
    g_string_append_printf (s, ",\"choice\":%d", a->choice);
  }
  g_string_append_printf (s, ",\"frames\":%d,\"reduce\":", a->frames);
  json_string (s, a->reduce);
  g_string_append_printf (s, ",\"visual_tokens\":%d,\"visual_tokens_kept\":%d,"
      "\"visual_tokens_final\":%d,\"prompt_tokens\":%d,"
      "\"generated_tokens\":%d,\"encode_ms\":%.3f,\"prefill_ms\":%.3f,"
      "\"decode_ms\":%.3f}", a->visual_tokens, a->visual_tokens_kept,
      a->visual_tokens_final, a->prompt_tokens, a->generated_tokens,
      a->timings.encode_ms, a->timings.prefill_ms, a->timings.decode_ms);
  return g_string_free (s, FALSE);
}

void
mdv_write_jsonl (FILE * f, const gchar * json)
{
  fputs (json, f);
  fputc ('\n', f);
  fflush (f);
}

void
mdv_post_partial (GstMustdropVqa * self, const MdvJob * j, const gchar * text)
{
  /* md_vqa hands over the valid UTF-8 prefix (a token may end inside a
   * character) */
  gst_element_post_message (GST_ELEMENT (self),
      gst_message_new_element (GST_OBJECT (self),
          gst_structure_new ("mustdrop-partial",
              "question", G_TYPE_STRING, j->question,
              "text", G_TYPE_STRING, text,
              "window-index", G_TYPE_UINT64, j->index,
              "window-start", G_TYPE_UINT64, (guint64) j->start,
              "window-end", G_TYPE_UINT64, (guint64) j->end, NULL)));
}

static GstPad *
get_textpad (GstMustdropVqa * self)
{
  GstPad *p;
  GST_OBJECT_LOCK (self);
  p = self->textpad ? gst_object_ref (self->textpad) : NULL;
  GST_OBJECT_UNLOCK (self);
  return p;
}

/* Sticky events the text pad needs before data. */
static gboolean
pad_has_sticky (GstPad * pad, GstEventType type)
{
  GstEvent *ev = gst_pad_get_sticky_event (pad, type, 0);
  if (ev)
    gst_event_unref (ev);
  return ev != NULL;
}

static void
text_prepare (GstMustdropVqa * self, GstPad * tp)
{
  /* a pad requested mid-stream has no sticky events yet */
  if (self->text_need_start || !pad_has_sticky (tp, GST_EVENT_STREAM_START)) {
    gchar *id = gst_pad_create_stream_id (tp, GST_ELEMENT (self), "text");
    gst_pad_push_event (tp, gst_event_new_stream_start (id));
    g_free (id);
    gst_pad_push_event (tp, gst_event_new_caps (gst_caps_from_string (MDV_TEXT_CAPS)));
    self->text_need_start = FALSE;
    self->text_need_segment = TRUE;
  }
  if (self->text_need_segment || !pad_has_sticky (tp, GST_EVENT_SEGMENT)) {
    GstSegment seg;
    g_mutex_lock (&self->lock);
    seg = self->segment;
    g_mutex_unlock (&self->lock);
    if (seg.format != GST_FORMAT_TIME)
      gst_segment_init (&seg, GST_FORMAT_TIME);
    gst_pad_push_event (tp, gst_event_new_segment (&seg));
    self->text_need_segment = FALSE;
  }
}

/* A new segment reaches the text pad with a GAP at its start: a sink behind
 * text_src prerolls (and a muxer learns the text stream is sparse) before
 * the first answer, which comes a window later (streaming thread). */
void
mdv_text_forward_event (GstMustdropVqa * self, GstEvent * event)
{
  GstPad *tp = get_textpad (self);
  if (tp) {
    gst_pad_push_event (tp, gst_event_ref (event));
    gst_object_unref (tp);
  }
}

void
mdv_text_preroll (GstMustdropVqa * self)
{
  GstPad *tp = get_textpad (self);
  GstClockTime start;

  if (!tp)
    return;
  text_prepare (self, tp);
  g_mutex_lock (&self->lock);
  start = self->segment.format == GST_FORMAT_TIME ? self->segment.start : 0;
  g_mutex_unlock (&self->lock);
  gst_pad_push_event (tp, gst_event_new_gap (start, 0));
  self->text_pos = start;
  self->text_end = GST_CLOCK_TIME_NONE;
  gst_object_unref (tp);
}

/* Pushes answers on the text pad and GAPs up to `until` (streaming thread). */
void
mdv_text_output (GstMustdropVqa * self, GPtrArray * results, GstClockTime now,
    GstClockTime until)
{
  GstPad *tp = get_textpad (self);
  GstClockTime hold = GST_CLOCK_TIME_NONE;

  if (!tp)
    return;
  text_prepare (self, tp);
  for (guint i = 0; results && i < results->len; i++) {
    MdvResult *r = results->pdata[i];
    gsize len = strlen (r->answer.text);
    GstBuffer *b = gst_buffer_new_memdup (r->answer.text, len);
    GstClockTime pts, dur;
    if (self->text_timing == GST_MUSTDROP_TEXT_TIMING_WINDOW &&
        GST_CLOCK_TIME_IS_VALID (r->job->start)) {
      pts = r->job->start;
      dur = GST_CLOCK_TIME_IS_VALID (r->job->end) && r->job->end > pts ?
          r->job->end - pts : GST_CLOCK_TIME_NONE;
    } else {
      pts = GST_CLOCK_TIME_IS_VALID (now) ? now : r->job->end;
      dur = self->windows.step_ns ? self->windows.step_ns : 5 * GST_SECOND;
    }
    GST_BUFFER_PTS (b) = pts;
    GST_BUFFER_DURATION (b) = dur;
    if (GST_CLOCK_TIME_IS_VALID (pts)) {
      if (!GST_CLOCK_TIME_IS_VALID (self->text_pos) || pts > self->text_pos)
        self->text_pos = pts;
      if (GST_CLOCK_TIME_IS_VALID (dur) &&
          (!GST_CLOCK_TIME_IS_VALID (self->text_end) ||
              pts + dur > self->text_end))
        self->text_end = pts + dur;
    }
    gst_pad_push (tp, b);
  }
  if (self->text_timing == GST_MUSTDROP_TEXT_TIMING_WINDOW) {
    /* don't move past the oldest window still to be answered */
    g_mutex_lock (&self->lock);
    MdvWindow *w = g_queue_peek_head (&self->windows.open);
    MdvJob *j = self->busy_job ? self->busy_job : g_queue_peek_head
        (&self->pending);
    if (j)
      hold = j->start;
    else if (w)
      hold = w->start;
    g_mutex_unlock (&self->lock);
    if (GST_CLOCK_TIME_IS_VALID (hold) && GST_CLOCK_TIME_IS_VALID (until))
      until = MIN (until, hold);
  }
  if (GST_CLOCK_TIME_IS_VALID (until) &&
      (!GST_CLOCK_TIME_IS_VALID (self->text_pos) || until > self->text_pos)) {
    GstClockTime from = GST_CLOCK_TIME_IS_VALID (self->text_pos) ?
        self->text_pos : GST_CLOCK_TIME_IS_VALID (now) ? MIN (now, until) :
        until;
    /* no gap over a text still shown; inside one, a GAP of no duration
     * still tells a muxer (which waits on a sparse pad that has data) that
     * the text stream has reached `until` */
    if (GST_CLOCK_TIME_IS_VALID (self->text_end))
      from = MAX (from, self->text_end);
    if (until > from)
      gst_pad_push_event (tp, gst_event_new_gap (from, until - from));
    else
      gst_pad_push_event (tp, gst_event_new_gap (until, 0));
    self->text_pos = until;
  }
  gst_object_unref (tp);
}

GPtrArray *
mdv_take_ready (GstMustdropVqa * self)
{
  GPtrArray *out = NULL;
  MdvResult *r;

  g_mutex_lock (&self->lock);
  while ((r = g_queue_pop_head (&self->ready))) {
    if (!out)
      out = g_ptr_array_new_with_free_func ((GDestroyNotify) mdv_result_free);
    g_ptr_array_add (out, r);
  }
  g_mutex_unlock (&self->lock);
  return out;
}

void
mdv_post_stats (GstMustdropVqa * self)
{
  GstStructure *s;
  g_mutex_lock (&self->lock);
  s = gst_structure_new ("mustdrop-stats",
      "windows", G_TYPE_UINT64, self->n_windows,
      "answered", G_TYPE_UINT64, self->n_answered,
      "dropped", G_TYPE_UINT64, self->n_dropped,
      "failed", G_TYPE_UINT64, self->n_failed,
      "aborted", G_TYPE_UINT64, self->n_aborted,
      "pending", G_TYPE_UINT, g_queue_get_length (&self->pending) +
      (self->busy_job ? 1 : 0),
      "asked", G_TYPE_UINT64, self->n_asked,
      "empty-windows", G_TYPE_UINT64, self->n_empty,
      "max-inference-time", G_TYPE_UINT64, (guint64) self->max_infer_ns, NULL);
  if (self->windows.window_ns == 0)
    gst_structure_set (s,
        "frames-encoded", G_TYPE_UINT64, self->n_frames_encoded,
        "frames-dropped", G_TYPE_UINT64, self->n_frames_dropped,
        "visual-token-cap", G_TYPE_UINT, self->visual_cap,
        "held-visual-tokens", G_TYPE_UINT, self->held_tokens,
        "held-visual-tokens-max", G_TYPE_UINT, self->held_tokens_max,
        "held-visual-bytes", G_TYPE_UINT64, self->held_bytes,
        "held-visual-bytes-max", G_TYPE_UINT64, self->held_bytes_max, NULL);
  if (self->mqtt) {
    MdvMqttCounts c;
    mdv_mqtt_counts (self->mqtt, &c);
    gst_structure_set (s, "mqtt-published", G_TYPE_UINT64, c.published,
        "mqtt-dropped", G_TYPE_UINT64, c.dropped,
        "mqtt-queued", G_TYPE_UINT, c.queued, NULL);
  }
  g_mutex_unlock (&self->lock);
  gst_element_post_message (GST_ELEMENT (self),
      gst_message_new_element (GST_OBJECT (self), s));
}

gboolean
mdv_text_query (GstPad * pad, GstObject * parent,
    GstQuery * query)
{
  GstMustdropVqa *self = GST_MUSTDROP_VQA (parent);

  switch (GST_QUERY_TYPE (query)) {
    case GST_QUERY_LATENCY:{
      gboolean live;
      GstClockTime min, max, extra = 0;
      if (!gst_pad_peer_query (self->sinkpad, query))
        return FALSE;
      gst_query_parse_latency (query, &live, &min, &max);
      g_mutex_lock (&self->lock);
      if (self->text_timing == GST_MUSTDROP_TEXT_TIMING_WINDOW) {
        extra = self->windows.window_ns + self->max_infer_ns;
        self->reported_latency = self->max_infer_ns;
      }
      g_mutex_unlock (&self->lock);
      min += extra;
      if (GST_CLOCK_TIME_IS_VALID (max))
        max += extra;
      GST_DEBUG_OBJECT (self, "text pad latency: live %d, min %" GST_TIME_FORMAT
          " (+%" GST_TIME_FORMAT ")", live, GST_TIME_ARGS (min),
          GST_TIME_ARGS (extra));
      gst_query_set_latency (query, live, min, max);
      return TRUE;
    }
    case GST_QUERY_CAPS:{
      GstCaps *filter, *caps = gst_caps_from_string (MDV_TEXT_CAPS);
      gst_query_parse_caps (query, &filter);
      if (filter) {
        GstCaps *i = gst_caps_intersect_full (filter, caps,
            GST_CAPS_INTERSECT_FIRST);
        gst_caps_unref (caps);
        caps = i;
      }
      gst_query_set_caps_result (query, caps);
      gst_caps_unref (caps);
      return TRUE;
    }
    default:
      return gst_pad_query_default (pad, parent, query);
  }
}

/* The answers ready now ride on buf: the answer meta, and with custom-meta
 * the same structure as a GstCustomMeta (for bindings). */
void
mdv_attach_answers (GstMustdropVqa * self, GstBuffer * buf, GPtrArray * results)
{
  for (guint i = 0; i < results->len; i++) {
    const MdvResult *r = results->pdata[i];
    const struct md_vqa_answer *a = &r->answer;
    GstMustdropAnswerMeta *m = gst_buffer_add_mustdrop_answer_meta (buf,
        r->job->question, a->text, a->reduce);
    if (!m)
      continue;
    m->window_index = r->job->index;
    m->window_start = r->job->start;
    m->window_end = r->job->end;
    m->window_start_running_time = r->job->start_rt;
    m->window_end_running_time = r->job->end_rt;
    m->frames = (guint) a->frames;
    m->visual_tokens = (guint) a->visual_tokens;
    m->visual_tokens_kept = (guint) a->visual_tokens_kept;
    m->visual_tokens_final = (guint) a->visual_tokens_final;
    m->prompt_tokens = (guint) a->prompt_tokens;
    m->generated_tokens = (guint) a->generated_tokens;
    m->choice = a->choice;
    if (a->value) {             /* the message's "value" field */
      m->value = gst_structure_new_empty ("mustdrop-value");
      set_value (m->value, "value", a->value);
    }
    if (!self->custom_meta)
      continue;
    GstCustomMeta *cm = gst_buffer_add_custom_meta (buf,
        GST_MUSTDROP_ANSWER_CUSTOM_META_NAME);
    if (cm) {
      GstStructure *src = mdv_result_structure (r, FALSE);
      GstStructure *dst = gst_custom_meta_get_structure (cm);
      for (gint k = 0; k < gst_structure_n_fields (src); k++) {
        const gchar *f = gst_structure_nth_field_name (src, (guint) k);
        gst_structure_set_value (dst, f, gst_structure_get_value (src, f));
      }
      gst_structure_free (src);
    }
  }
}
