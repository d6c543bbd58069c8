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
 *  - JSON lines in `jsonl-location`.
 *
 * Threading: frames are sampled and converted to small RGB copies on the
 * streaming thread; model loading and inference run on one worker thread.
 * Closed windows wait in a queue of at most `max-pending` entries; when it is
 * full the oldest waiting window is dropped (and counted), never the video.
 *
 * window = 0 keeps one growing window over the whole stream, answered at EOS
 * and on the "ask" action signal (a new question over everything seen so
 * far). Its frames are encoded on the worker thread as they arrive and only
 * their reduced visual tokens are kept, in one md_reduce session under a
 * global cap (max-visual-tokens, max-frames blocks), so memory does not grow
 * with the stream.
 *
 * Example launch line:
 * |[
 * gst-launch-1.0 filesrc location=clip.mp4 ! decodebin ! videoconvert ! \
 *   mustdropvqa model=llava.gguf mmproj=mmproj.gguf window=5 \
 *     question="What is the person doing?" ! fakesink
 * ]|
 */
#include "gstmustdropvqa.h"
#include "gstmustdropmeta.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <gst/video/video.h>

#include "mustdrop.h"
#include "mustdrop-vision.h"
#include "mustdrop-reduce.h"
#include "tokenizer.h"

GST_DEBUG_CATEGORY_STATIC (mustdrop_vqa_debug);
#define GST_CAT_DEFAULT mustdrop_vqa_debug

#define VIDEO_CAPS GST_VIDEO_CAPS_MAKE ("{ RGB, RGBA, BGRx, BGRA, I420, NV12 }")
#define TEXT_CAPS "text/x-raw, format = (string) utf8"

/* Side of the RGB copies before the model says what it wants. */
#define DEFAULT_FRAME_SIDE 336

#define DEFAULT_QUESTION "Describe what happens in the video."
#define DEFAULT_SAMPLE_FPS 1.0
#define DEFAULT_WINDOW 10.0
#define DEFAULT_WINDOW_OVERLAP 0.0
#define DEFAULT_MAX_FRAMES 8
#define DEFAULT_REDUCE "none"
#define DEFAULT_MAX_NEW_TOKENS 64
#define DEFAULT_TEMPERATURE 0.0
#define DEFAULT_SEED 0x5eed
#define DEFAULT_DEVICE "auto"
#define DEFAULT_THREADS 0
#define DEFAULT_MAX_PENDING 2
#define DEFAULT_TEXT_TIMING GST_MUSTDROP_TEXT_TIMING_ANSWER
#define DEFAULT_STATS FALSE
#define DEFAULT_STREAM_TOKENS FALSE
#define DEFAULT_CONTEXT_SIZE 0
#define DEFAULT_CUSTOM_META FALSE
#define DEFAULT_MAX_VISUAL_TOKENS 0
/* window = 0 with max-visual-tokens = 0 and no cap in the reduce spec */
#define AUTO_VISUAL_TOKENS 1024
/* text rows of a prompt besides the question (template, system prompt,
 * markers), and per frame block, for fitting the cap into the context */
#define PROMPT_TEXT_EST 64
/* text-timing=window: seconds without video before warning of a stall */
#define STALL_WARN_S 5
/* fewest answer tokens a prompt must leave room for */
#define ANSWER_MIN 8
#define BLOCK_MARKER_EST 8
/* window = 0: most sampled RGB frames waiting for the encoder */
#define STREAM_QUEUE 16

enum
{
  PROP_0,
  PROP_MODEL,
  PROP_MMPROJ,
  PROP_QUESTION,
  PROP_SYSTEM_PROMPT,
  PROP_SAMPLE_FPS,
  PROP_WINDOW,
  PROP_WINDOW_OVERLAP,
  PROP_MAX_FRAMES,
  PROP_REDUCE,
  PROP_MAX_NEW_TOKENS,
  PROP_TEMPERATURE,
  PROP_SEED,
  PROP_DEVICE,
  PROP_THREADS,
  PROP_CONTEXT_SIZE,
  PROP_MAX_PENDING,
  PROP_TEXT_TIMING,
  PROP_STATS,
  PROP_STREAM_TOKENS,
  PROP_JSONL_LOCATION,
  PROP_CUSTOM_META,
  PROP_MAX_VISUAL_TOKENS,
  PROP_HELD_VISUAL_TOKENS,
  PROP_HELD_VISUAL_BYTES,
  PROP_FRAMES_ENCODED,
};

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
    GST_PAD_SRC, GST_PAD_REQUEST, GST_STATIC_CAPS (TEXT_CAPS));

/* Settings: what the properties say; under settings_lock. */
typedef struct
{
  gchar *model, *mmproj, *question, *system_prompt, *reduce, *device;
  gchar *jsonl_location;
  gdouble sample_fps, window, window_overlap, temperature;
  guint max_frames, max_new_tokens, threads, context_size, max_pending;
  guint max_visual_tokens;
  guint64 seed;
  GstMustdropTextTiming text_timing;
  gboolean stats, stream_tokens, custom_meta;
} Settings;

/* One sampled frame: an RGB copy, shared by the windows holding it. With
 * window = 0 it waits in the encoder queue instead (seq, epoch,
 * generation say where it belongs). */
typedef struct
{
  GstBuffer *rgb;
  gint width, height, stride;
  GstClockTime pts;
  guint64 seq;
  guint epoch;
  gint generation;
} Frame;

/* An open window collecting frames. At most max_frames are kept: when full,
 * every other frame is dropped and only every `keep_every`-th later sampled
 * frame is taken, so the kept frames stay uniformly spread (bounded
 * memory even for window = 0). */
typedef struct
{
  guint64 index;
  GstClockTime start, end;      /* PTS; end NONE for the growing window */
  GPtrArray *frames;            /* Frame* */
  guint keep_every, seen;
  gboolean wants;               /* takes the frame being converted */
} Window;

/* A window handed to the worker. */
typedef struct
{
  guint64 index;
  gchar *question, *system_prompt;
  gchar *reduce;                /* canonical reduction spec of the run */
  GPtrArray *frames;            /* NULL for a window = 0 question */
  gboolean stream;              /* window = 0: answer from the session */
  guint64 seq;                  /* stream: frames up to this one first */
  guint epoch;                  /* stream: the stream it asks about */
  GstClockTime start, end, start_rt, end_rt;
  gint generation;
  guint max_new_tokens;
  gdouble temperature;
  guint64 seed;
  gboolean stream_tokens, stats;
} Job;

/* A finished answer, waiting for the next outgoing video buffer. */
typedef struct
{
  Job *job;
  gchar *answer;
  guint frames, visual_tokens, visual_tokens_kept, visual_tokens_final;
  guint prompt_tokens;
  guint generated_tokens;
  gdouble encode_ms, prefill_ms, decode_ms;
} Result;

/* What only the worker thread touches. */
typedef struct
{
  struct md_model *model;
  struct md_vision *vision;
  struct md_context *ctx;
  struct md_reduce_session *reduce;     /* NULL: no reduction */
  FILE *jsonl;
  /* window = 0: reduce is the growing window's session */
  gboolean stream;
  guint epoch;                  /* stream epoch of the frames in it */
  guint frames;                 /* frames encoded into it */
  gdouble encode_ms;            /* their encoding time */
  gchar *spec;                  /* canonical spec with the cap in force */
} Engine;

struct _GstMustdropVqa
{
  GstElement parent;

  GstPad *sinkpad, *srcpad;
  GstPad *textpad;              /* request pad or NULL; object lock */

  GMutex settings_lock;
  Settings settings;

  /* State: under lock; cond signals queue/worker changes. */
  GMutex lock;
  GCond cond;
  GstVideoInfo in_info;
  gboolean have_info;
  GstVideoConverter *converter; /* streaming thread only */
  gint conv_w, conv_h;
  GstSegment segment;
  GstClockTime origin;          /* PTS where window 0 starts */
  GstClockTime next_sample;
  guint64 next_window;
  GQueue windows;               /* Window*, oldest first */
  GQueue pending;               /* Job*, oldest first */
  GQueue ready;                 /* Result*, oldest first */
  Job *busy_job;                /* the job being answered, if any */
  gboolean announcing;          /* the worker is posting an answer */
  gboolean flushing;
  gboolean stopping;
  /* the window/sampling settings of this run (copied at start) */
  GstClockTime window_ns, step_ns, sample_ns;
  guint max_frames, max_pending;
  GstMustdropTextTiming text_timing;
  gboolean stats, custom_meta;
  gchar *reduce_spec;           /* canonical spec of this run */
  /* text pad timeline (streaming thread) */
  GstClockTime text_pos;        /* how far the text stream has been brought */
  GstClockTime text_end;        /* end of the latest text buffer */
  gboolean text_need_start, text_need_segment;
  guint64 text_seqnum;
  /* counters: every window closed with frames (and every "ask") ends up in
   * exactly one of answered, dropped (max-pending), failed (inference) and
   * aborted (flush, stop); until then it is pending */
  guint64 n_windows, n_answered, n_dropped, n_failed, n_aborted;
  guint64 n_asked;              /* of n_windows, questions from "ask" */
  guint64 n_empty;              /* windows closed without a frame (not in
                                 * n_windows: nothing to answer) */
  GstClockTime max_infer_ns, reported_latency;

  gint generation;              /* atomic: bumped on flush/stop */
  gint job_generation;          /* atomic: generation of the running job */
  GstClockTime last_end;        /* end of the latest buffer (streaming) */
  gint64 last_buffer_us;        /* monotonic time the latest buffer came */
  gboolean stall_warned;        /* warn_if_text_stalls_locked said it */
  gint shutdown;                /* atomic */
  gint model_side;              /* RGB copy side for the model */
  Engine *engine;               /* loaded at start; the worker's from then */
  GThread *worker;

  /* window = 0 (under lock): sampled frames waiting for the encoder, the
   * stream they belong to, what the session holds */
  GQueue stream_frames;         /* Frame*, oldest first */
  guint stream_max_queue;
  guint64 stream_seq;           /* last frame queued (never reset) */
  guint stream_epoch;           /* bumped when the windows restart */
  guint64 stream_sampled;       /* frames queued in this epoch */
  GstClockTime stream_last_pts;
  guint64 n_frames_encoded, n_frames_dropped;
  guint held_tokens, held_tokens_max, visual_cap;
  guint64 held_bytes, held_bytes_max;
};

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
 * Small helpers
 * ------------------------------------------------------------------------ */

static void
frame_clear (gpointer data)
{
  Frame *f = data;
  gst_clear_buffer (&f->rgb);
}

static void
frame_unref (gpointer data)
{
  g_atomic_rc_box_release_full (data, frame_clear);
}

static Window *
window_new (guint64 index, GstClockTime start, GstClockTime end)
{
  Window *w = g_new0 (Window, 1);
  w->index = index;
  w->start = start;
  w->end = end;
  w->frames = g_ptr_array_new_with_free_func (frame_unref);
  w->keep_every = 1;
  return w;
}

static void
window_free (Window * w)
{
  g_ptr_array_unref (w->frames);
  g_free (w);
}

/* Whether w takes the next sampled frame (counts it as seen). */
static gboolean
window_takes_frame (Window * w)
{
  return w->seen++ % w->keep_every == 0;
}

static void
window_add_frame (Window * w, Frame * f, guint max_frames)
{
  if (w->frames->len >= max_frames) {
    /* Full: keep every other frame, take every other one from now on. */
    GPtrArray *kept = g_ptr_array_new_with_free_func (frame_unref);
    for (guint i = 0; i < w->frames->len; i += 2)
      g_ptr_array_add (kept, g_atomic_rc_box_acquire (w->frames->pdata[i]));
    g_ptr_array_unref (w->frames);
    w->frames = kept;
    w->keep_every *= 2;
    w->seen = 1;
  }
  g_ptr_array_add (w->frames, g_atomic_rc_box_acquire (f));
}

static void
job_free (Job * j)
{
  if (!j)
    return;
  g_free (j->question);
  g_free (j->system_prompt);
  g_free (j->reduce);
  if (j->frames)
    g_ptr_array_unref (j->frames);
  g_free (j);
}

static void
result_free (Result * r)
{
  if (!r)
    return;
  job_free (r->job);
  g_free (r->answer);
  g_free (r);
}

static GstClockTime
to_running_time (const GstSegment * seg, GstClockTime t)
{
  if (!GST_CLOCK_TIME_IS_VALID (t) || seg->format != GST_FORMAT_TIME)
    return GST_CLOCK_TIME_NONE;
  return gst_segment_to_running_time (seg, GST_FORMAT_TIME, t);
}

/* The structure of "mustdrop-answer" messages and the "answer" signal. */
static GstStructure *
result_structure (const Result * r, gboolean stats)
{
  const Job *j = r->job;
  GstStructure *s = gst_structure_new ("mustdrop-answer",
      "question", G_TYPE_STRING, j->question,
      "answer", G_TYPE_STRING, r->answer,
      "window-index", G_TYPE_UINT64, j->index,
      "window-start", G_TYPE_UINT64, (guint64) j->start,
      "window-end", G_TYPE_UINT64, (guint64) j->end,
      "window-start-running-time", G_TYPE_UINT64, (guint64) j->start_rt,
      "window-end-running-time", G_TYPE_UINT64, (guint64) j->end_rt,
      "frames", G_TYPE_UINT, r->frames,
      "reduce", G_TYPE_STRING, j->reduce,
      "visual-tokens", G_TYPE_UINT, r->visual_tokens,
      "visual-tokens-kept", G_TYPE_UINT, r->visual_tokens_kept,
      "visual-tokens-final", G_TYPE_UINT, r->visual_tokens_final,
      "prompt-tokens", G_TYPE_UINT, r->prompt_tokens,
      "generated-tokens", G_TYPE_UINT, r->generated_tokens, NULL);
  if (stats)
    gst_structure_set (s, "encode-ms", G_TYPE_DOUBLE, r->encode_ms,
        "prefill-ms", G_TYPE_DOUBLE, r->prefill_ms,
        "decode-ms", G_TYPE_DOUBLE, r->decode_ms, NULL);
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

static void
json_time (GString * out, const gchar * key, GstClockTime t)
{
  if (GST_CLOCK_TIME_IS_VALID (t))
    g_string_append_printf (out, ",\"%s\":%.6f", key, (double) t / GST_SECOND);
  else
    g_string_append_printf (out, ",\"%s\":null", key);
}

static void
write_jsonl (FILE * f, const Result * r)
{
  GString *s = g_string_new ("{\"window\":");
  g_string_append_printf (s, "%" G_GUINT64_FORMAT, r->job->index);
  json_time (s, "start", r->job->start);
  json_time (s, "end", r->job->end);
  json_time (s, "start_running_time", r->job->start_rt);
  json_time (s, "end_running_time", r->job->end_rt);
  g_string_append (s, ",\"question\":");
  json_string (s, r->job->question);
  g_string_append (s, ",\"answer\":");
  json_string (s, r->answer);
  g_string_append_printf (s, ",\"frames\":%u,\"reduce\":", r->frames);
  json_string (s, r->job->reduce);
  g_string_append_printf (s, ",\"visual_tokens\":%u,\"visual_tokens_kept\":%u,"
      "\"visual_tokens_final\":%u,\"prompt_tokens\":%u,"
      "\"generated_tokens\":%u}\n", r->visual_tokens, r->visual_tokens_kept,
      r->visual_tokens_final, r->prompt_tokens, r->generated_tokens);
  fputs (s->str, f);
  fflush (f);
  g_string_free (s, TRUE);
}

/* Parses "auto", "cpu", "cuda" or "cuda:N". */
static gboolean
parse_device (const gchar * dev, const gchar ** backend, gint * index)
{
  *index = 0;
  if (!dev || !g_strcmp0 (dev, "auto")) {
    *backend = NULL;
    return TRUE;
  }
  if (!g_strcmp0 (dev, "cpu")) {
    *backend = "cpu";
    return TRUE;
  }
  if (g_str_has_prefix (dev, "cuda")) {
    *backend = "cuda";
    if (dev[4] == '\0')
      return TRUE;
    if (dev[4] == ':' && g_ascii_isdigit (dev[5])) {
      gchar *end = NULL;
      guint64 v = g_ascii_strtoull (dev + 5, &end, 10);
      if (*end == '\0' && v < 1024) {
        *index = (gint) v;
        return TRUE;
      }
    }
  }
  return FALSE;
}

/* Why a question (or system prompt) cannot be asked, or NULL. Invalid UTF-8
 * would break the answer's bus message and JSON lines later on. */
static gchar *
text_problem (const gchar * what, const gchar * text, gboolean may_be_empty,
    gchar ** dbg)
{
  const gchar *bad = NULL;

  if (!text || !*text) {
    if (may_be_empty)
      return NULL;
    *dbg = g_strdup ("set 'question' to what the model should answer");
    return g_strdup_printf ("The %s is empty.", what);
  }
  if (!g_utf8_validate (text, -1, &bad)) {
    *dbg = g_strdup_printf ("invalid byte 0x%02x at offset %" G_GSIZE_FORMAT
        " (check the locale or the encoding of the script that set it)",
        (guchar) * bad, (gsize) (bad - text));
    return g_strdup_printf ("The %s is not valid UTF-8.", what);
  }
  return NULL;
}

/* ------------------------------------------------------------------------
 * Worker thread: model loading and inference
 * ------------------------------------------------------------------------ */

static bool
abort_cb (void *user)
{
  GstMustdropVqa *self = user;
  return g_atomic_int_get (&self->shutdown) ||
      g_atomic_int_get (&self->generation) !=
      g_atomic_int_get (&self->job_generation);
}

static void
post_progress (GstMustdropVqa * self, GstProgressType type, const gchar * text)
{
  gst_element_post_message (GST_ELEMENT (self),
      gst_message_new_progress (GST_OBJECT (self), type, "model-load", text));
}

static void
engine_free (Engine * e)
{
  if (!e)
    return;
  if (e->reduce)
    md_reduce_session_free (e->reduce);
  if (e->ctx)
    md_context_free (e->ctx);
  if (e->vision)
    md_vision_free (e->vision);
  if (e->model)
    md_model_free (e->model);
  if (e->jsonl && e->jsonl != stdout)
    fclose (e->jsonl);
  g_free (e->spec);
  g_free (e);
}

/* Tokens of the text around the frames: the question, the system prompt and
 * an allowance (PROMPT_TEXT_EST) for the template and markers. */
static gint64
prompt_text_tokens (const struct md_vocab *vocab, const gchar * question,
    const gchar * system, gint64 * question_tokens)
{
  gint64 q = md_tokenize (vocab, question, strlen (question), false, false,
      NULL, 0);
  gint64 sys = system ? md_tokenize (vocab, system, strlen (system), false,
      false, NULL, 0) : 0;
  if (question_tokens)
    *question_tokens = q;
  return PROMPT_TEXT_EST + q + sys;
}

/* Words for a prompt that leaves no room for `need` visual tokens: the
 * question when the rest would fit without it, else the context. */
static void
no_room_words (gint64 question_tokens, gint64 text_tokens, gint64 need,
    int32_t n_ctx, gchar ** msg, gchar ** dbg)
{
  if (text_tokens - question_tokens + need + ANSWER_MIN <= n_ctx)
    *msg = g_strdup_printf ("The question is too long for the model's context "
        "(%" G_GINT64_FORMAT " tokens; the context holds %d).",
        question_tokens, n_ctx);
  else
    *msg = g_strdup_printf ("The model's context (%d tokens) is too small for "
        "one frame.", n_ctx);
  *dbg = g_strdup_printf ("question %" G_GINT64_FORMAT " tokens, prompt text "
      "about %" G_GINT64_FORMAT ", visual tokens needed %" G_GINT64_FORMAT
      ", context %d; shorten the question or raise context-size",
      question_tokens, text_tokens, need, n_ctx);
}

/* The backend to load on: the one named by `device`, which must be usable
 * (else an error naming why), or for auto CUDA when its module loads and
 * sees the device, and the CPU otherwise (no GPU is the normal case). */
static const gchar *
usable_backend (GstMustdropVqa * self, const gchar * device,
    const gchar * named, gint index)
{
  char why[512] = "";

  if (named && !strcmp (named, "cpu"))
    return named;
  if (md_backend_check (named ? named : "cuda", index, why, sizeof why) ==
      MD_OK)
    return named ? named : "cuda";
  if (!named) {
    GST_INFO_OBJECT (self, "device=auto: using the CPU (%s)", why);
    return "cpu";
  }
  GST_ELEMENT_ERROR (self, RESOURCE, OPEN_READ,
      ("Device \"%s\" cannot be used: %s.", device, why),
      ("set device=cpu or device=auto to run on the CPU"));
  return NULL;
}

/* An element error for a file the loader refused: the headline is the path
 * and the loader's cause ("truncated", "empty file (0 bytes)", "a vision
 * projector (clip), not a language model; ..."), the debug string the whole
 * message. The code says missing, unreadable or unusable. */
static void
post_load_error (GstMustdropVqa * self, const gchar * what, const gchar * path,
    int rc, const char *err, const gchar * backend)
{
  char cause[512];
  GstResourceError code = !g_file_test (path, G_FILE_TEST_EXISTS) ?
      GST_RESOURCE_ERROR_NOT_FOUND : rc == MD_ERR_IO ?
      GST_RESOURCE_ERROR_OPEN_READ : GST_RESOURCE_ERROR_FAILED;
  gchar *msg = g_strdup_printf ("Could not load the %s \"%s\": %s.", what,
      path, md_load_error_cause (err, path, cause, sizeof cause));
  gchar *dbg = g_strdup_printf ("%s (%s, device %s)", err, md_status_str (rc),
      backend);
  gst_element_message_full (GST_ELEMENT (self), GST_MESSAGE_ERROR,
      GST_RESOURCE_ERROR, code, msg, dbg, __FILE__, GST_FUNCTION, __LINE__);
}

/* Loads LLM, mmproj and a context with the settings of this run. On failure
 * posts an element error and returns NULL. */
static Engine *
engine_load (GstMustdropVqa * self)
{
  Engine *e = g_new0 (Engine, 1);
  gchar *model, *mmproj, *device, *jsonl, *reduce, *question, *system;
  guint threads, n_ctx, max_frames, max_visual, max_new;
  gboolean stream;
  const gchar *backend = NULL;
  gint dev_index = 0;
  char err[512] = "";
  int rc;

  g_mutex_lock (&self->settings_lock);
  model = g_strdup (self->settings.model);
  mmproj = g_strdup (self->settings.mmproj);
  device = g_strdup (self->settings.device);
  jsonl = g_strdup (self->settings.jsonl_location);
  reduce = g_strdup (self->settings.reduce);
  threads = self->settings.threads;
  n_ctx = self->settings.context_size;
  question = g_strdup (self->settings.question);
  system = g_strdup (self->settings.system_prompt);
  max_frames = self->settings.max_frames;
  max_visual = self->settings.max_visual_tokens;
  max_new = self->settings.max_new_tokens;
  g_mutex_unlock (&self->settings_lock);
  g_mutex_lock (&self->lock);
  stream = self->window_ns == 0;
  g_mutex_unlock (&self->lock);
  e->stream = stream;

  parse_device (device, &backend, &dev_index);  /* checked at start */
  gboolean automatic = backend == NULL;
  if (!(backend = usable_backend (self, device, backend, dev_index)))
    goto fail;

  struct md_model_params mp = md_model_default_params ();
  mp.n_threads = (int32_t) threads;
  mp.device = dev_index;
  mp.backend = backend;
  rc = md_model_load (model, &mp, &e->model, err, sizeof err);
  if (rc != MD_OK && automatic && !strcmp (backend, "cuda") &&
      (rc == MD_ERR_NOMEM || rc == MD_ERR_BACKEND || rc == MD_ERR_UNSUPPORTED)) {
    /* auto: the GPU could not take the model; a bad file is reported */
    GST_ELEMENT_WARNING (self, RESOURCE, OPEN_READ,
        ("Could not load the model on cuda:%d; using the CPU.", dev_index),
        ("%s (%s)", err, md_status_str (rc)));
    mp.backend = backend = "cpu";
    rc = md_model_load (model, &mp, &e->model, err, sizeof err);
  }
  if (rc != MD_OK) {
    post_load_error (self, "language model", model, rc, err, backend);
    goto fail;
  }

  struct md_vision_params vp = md_vision_default_params ();
  vp.n_threads = (int32_t) threads;
  vp.backend = backend;
  vp.device = dev_index;
  rc = md_vision_load (mmproj, &vp, &e->vision, err, sizeof err);
  if (rc != MD_OK) {
    post_load_error (self, "vision projector", mmproj, rc, err, backend);
    goto fail;
  }
  if (!md_model_vocab (e->model) || md_vision_frame_tokens (e->vision) <= 0) {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS,
        ("The model cannot be used for video questions."),
        ("%s", !md_model_vocab (e->model) ? "the LLM file has no tokenizer" :
            "the vision projector gives no tokens per frame"));
    goto fail;
  }
  if (md_vision_n_embd (e->vision) != md_model_n_embd (e->model)) {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS,
        ("The vision projector does not fit the language model."),
        ("mmproj \"%s\" gives rows of %d, model \"%s\" has n_embd %d", mmproj,
            md_vision_n_embd (e->vision), model, md_model_n_embd (e->model)));
    goto fail;
  }

  struct md_reduce_config cfg = md_reduce_default_config ();
  md_reduce_parse (reduce, &cfg, err, sizeof err);      /* checked at start */

  struct md_context_params cp = md_context_default_params ();
  cp.n_ctx = (int32_t) n_ctx;
  /* a reduction session prefills the whole prompt in one batch (its
   * layer-wise pruning needs that): batches as large as the context */
  if (stream || cfg.methods != 0)
    cp.n_batch = 1 << 24;

  cp.n_threads = (int32_t) threads;
  cp.abort_callback = abort_cb;
  cp.abort_callback_user = self;
  rc = md_context_new (e->model, &cp, &e->ctx, err, sizeof err);
  if (rc != MD_OK) {
    GST_ELEMENT_ERROR (self, RESOURCE, FAILED,
        ("Could not create an inference context."), ("%s (%s)", err,
            md_status_str (rc)));
    goto fail;
  }

  rc = MD_OK;
  gint64 question_tokens;
  gint64 text = prompt_text_tokens (md_model_vocab (e->model), question, system,
      &question_tokens);
  int32_t n_ctx_run = md_context_n_ctx (e->ctx);
  if (!stream) {
    /* the question must leave room for at least one frame (windows with
     * more frames than fit are subsampled) */
    gint64 one = md_vision_frame_tokens (e->vision) +
        (md_vision_video_is_block (e->vision) ? 1 : 0);
    if (text + one + ANSWER_MIN > n_ctx_run) {
      gchar *msg, *dbg;
      no_room_words (question_tokens, text, one, n_ctx_run, &msg, &dbg);
      gst_element_message_full (GST_ELEMENT (self), GST_MESSAGE_ERROR,
          GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS, msg, dbg, __FILE__,
          GST_FUNCTION, __LINE__);
      goto fail;
    }
  } else {
    /* window = 0: one session keeps the reduced tokens of every frame,
     * under a global cap that also fits the prompt into the context */
    gint64 cap = max_visual ? (gint64) max_visual : cfg.max_visual_tokens > 0 ?
        (gint64) cfg.max_visual_tokens : AUTO_VISUAL_TOKENS;
    if (cfg.max_visual_frames <= 0)
      cfg.max_visual_frames = (int32_t) max_frames;
    gint64 room = (gint64) n_ctx_run - max_new - text -
        (gint64) BLOCK_MARKER_EST * cfg.max_visual_frames;
    if (cap > room) {
      GST_INFO_OBJECT (self, "visual-token cap %" G_GINT64_FORMAT " lowered to %"
          G_GINT64_FORMAT " to fit the context (%d)", cap, room,
          md_context_n_ctx (e->ctx));
      cap = room;
    }
    if (cap < cfg.max_visual_frames && room + question_tokens >=
        cfg.max_visual_frames) {
      gchar *msg, *dbg;
      no_room_words (question_tokens, text, cfg.max_visual_frames, n_ctx_run,
          &msg, &dbg);
      gst_element_message_full (GST_ELEMENT (self), GST_MESSAGE_ERROR,
          GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS, msg, dbg, __FILE__,
          GST_FUNCTION, __LINE__);
      goto fail;
    }
    if (cap < cfg.max_visual_frames) {
      GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS,
          ("The model's context is too small for window=0."),
          ("n_ctx %d leaves room for %" G_GINT64_FORMAT " visual tokens, "
              "fewer than max-frames (%d); raise context-size or lower "
              "max-frames / max-new-tokens", n_ctx_run, room,
              cfg.max_visual_frames));
      goto fail;
    }
    cfg.max_visual_tokens = (int32_t) cap;
    char canon[256];
    md_reduce_format (&cfg, canon, sizeof canon);
    g_mutex_lock (&self->lock);
    self->visual_cap = (guint) cap;
    g_free (self->reduce_spec);       /* answers report the cap in force */
    self->reduce_spec = g_strdup (canon);
    g_mutex_unlock (&self->lock);
    e->spec = g_strdup (canon);
  }
  if (cfg.methods != 0 || stream)
    rc = md_reduce_session_new (e->ctx, e->vision, &cfg, &e->reduce, err,
        sizeof err);
  if (rc != MD_OK) {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS,
        ("Could not set up token reduction \"%s\".", reduce),
        ("%s (%s)", err, md_status_str (rc)));
    goto fail;
  }

  if (jsonl && *jsonl) {
    /* "-": the process's own stdout stream, so that lines and whatever the
     * application prints share one file position (a second description of
     * a redirected stdout, opened by name, would overwrite each other) */
    e->jsonl = !strcmp (jsonl, "-") ? stdout : fopen (jsonl, "a");
    if (!e->jsonl) {
      GST_ELEMENT_ERROR (self, RESOURCE, OPEN_WRITE,
          ("Could not open \"%s\" for writing answers.", jsonl),
          ("%s", g_strerror (errno)));
      goto fail;
    }
  }

  GST_INFO_OBJECT (self, "loaded %s; %s; n_ctx %d, backend %s",
      md_model_desc (e->model), md_vision_desc (e->vision),
      md_context_n_ctx (e->ctx), backend ? backend : "cpu");
  g_free (model);
  g_free (mmproj);
  g_free (device);
  g_free (jsonl);
  g_free (reduce);
  g_free (question);
  g_free (system);
  return e;

fail:
  g_free (model);
  g_free (mmproj);
  g_free (device);
  g_free (jsonl);
  g_free (reduce);
  g_free (question);
  g_free (system);
  engine_free (e);
  return NULL;
}

static void
post_partial (GstMustdropVqa * self, const Job * j, const GString * text)
{
  /* only the valid UTF-8 prefix: a token may end inside a character */
  const gchar *end = NULL;
  gchar *valid;

  g_utf8_validate (text->str, (gssize) text->len, &end);
  valid = g_strndup (text->str, (gsize) (end - text->str));
  gst_element_post_message (GST_ELEMENT (self),
      gst_message_new_element (GST_OBJECT (self),
          gst_structure_new ("mustdrop-partial",
              "question", G_TYPE_STRING, j->question,
              "text", G_TYPE_STRING, valid,
              "window-index", G_TYPE_UINT64, j->index,
              "window-start", G_TYPE_UINT64, (guint64) j->start,
              "window-end", G_TYPE_UINT64, (guint64) j->end, NULL)));
  g_free (valid);
}

/* Keeps n of the job's frames, spread uniformly. */
static void
subsample_frames (Job * j, guint n)
{
  GPtrArray *src = j->frames, *dst;
  guint len = src->len;

  if (n >= len)
    return;
  dst = g_ptr_array_new_with_free_func (frame_unref);
  for (guint i = 0; i < n; i++) {
    guint k = (guint) (((guint64) i * len + len / (2 * n)) / n);
    g_ptr_array_add (dst, g_atomic_rc_box_acquire (src->pdata[MIN (k,
                    len - 1)]));
  }
  g_ptr_array_unref (src);
  j->frames = dst;
}

static void
unmap_frames (Job * j, GstMapInfo * maps, guint n)
{
  for (guint i = 0; i < n; i++)
    gst_buffer_unmap (((Frame *) j->frames->pdata[i])->rgb, &maps[i]);
  g_free (maps);
}

/* A reduced prompt's counts into the result; returns how many new tokens
 * fit the context (< 1: none). */
static gint
result_from_reduce (Result * r, const struct md_reduce_stats *st, guint frames,
    gdouble encode_ms, guint max_new_tokens, int32_t n_ctx)
{
  r->frames = frames;
  r->visual_tokens = (guint) MAX (st->vis_in, 0);
  r->visual_tokens_kept = (guint) MAX (st->vis_after_select, 0);
  r->visual_tokens_final = (guint) MAX (st->vis_final, 0);
  r->prompt_tokens = (guint) MAX (st->n_prompt, 0);
  r->encode_ms = encode_ms;
  return (gint) MIN ((gint64) max_new_tokens, (gint64) n_ctx - st->n_prompt);
}

/* Answers one window. Returns NULL (nothing posted) when aborted; posts a
 * warning and returns NULL on an engine failure. */
static Result *
run_job (GstMustdropVqa * self, Engine * e, Job * j)
{
  Result *r = g_new0 (Result, 1);
  const struct md_vocab *vocab = md_model_vocab (e->model);
  int32_t n_embd = md_vision_n_embd (e->vision);
  int32_t n_ctx = md_context_n_ctx (e->ctx);
  bool block = md_vision_video_is_block (e->vision);
  int32_t per = md_vision_frame_tokens (e->vision);
  struct md_vision_prompt pr;
  struct md_frame *fr = NULL;
  GstMapInfo *maps = NULL;
  guint n_mapped = 0;
  float *embd = NULL;
  int32_t *n_rows = NULL;
  enum md_vision_block kind = MD_VISION_BLOCK_VIDEO;
  struct md_sampler *smp = NULL;
  GString *text = g_string_new (NULL);
  char err[512] = "";
  int rc = MD_OK;
  gboolean have_prompt = FALSE;
  gint64 t0, t1;

  memset (&pr, 0, sizeof pr);
  r->job = j;
  gint max_new = 0;

  if (j->stream) {
    /* window = 0: every frame is already encoded and reduced in the
     * session; prefill over what it holds */
    if (!e->reduce || e->epoch != j->epoch || e->frames == 0) {
      GST_DEBUG_OBJECT (self, "question \"%s\": no frames of its stream",
          j->question);
      goto fail;
    }
    rc = md_reduce_prefill (e->reduce, NULL, j->system_prompt, j->question);
    if (rc == MD_ERR_ABORTED)
      goto fail;
    if (rc != MD_OK) {
      g_strlcpy (err, md_reduce_error (e->reduce), sizeof err);
      goto engine_error;
    }
    const struct md_reduce_stats *st = md_reduce_stats (e->reduce);
    if (e->spec) {              /* asked before the model was loaded */
      g_free (j->reduce);
      j->reduce = g_strdup (e->spec);
    }
    max_new = result_from_reduce (r, st, e->frames, e->encode_ms,
        j->max_new_tokens, n_ctx);
    if (max_new < 1)
      goto context_full;
    goto generate;
  }

  /* How many frames fit the context next to the text and the answer. */
  gint64 question_tokens;
  int64_t text_est = prompt_text_tokens (vocab, j->question, j->system_prompt,
      &question_tokens);
  int64_t room = (int64_t) n_ctx - (int64_t) j->max_new_tokens - text_est;
  if (room < per + (block ? 1 : 0)) {
    /* leave at least one frame and a few tokens of answer */
    room = (int64_t) n_ctx - text_est - ANSWER_MIN;
  }
  guint fit = room > 0 ? (guint) ((room - (block ? 1 : 0)) / per) : 0;
  if (fit == 0) {
    /* a question changed while running (checked at start otherwise) */
    gchar *msg, *dbg;
    no_room_words (question_tokens, text_est, per + (block ? 1 : 0), n_ctx,
        &msg, &dbg);
    gst_element_message_full (GST_ELEMENT (self), GST_MESSAGE_WARNING,
        GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS, msg, dbg, __FILE__,
        GST_FUNCTION, __LINE__);
    goto fail;
  }
  if (j->frames->len > fit) {
    GST_DEBUG_OBJECT (self, "window %" G_GUINT64_FORMAT ": %u frames, %u fit",
        j->index, j->frames->len, fit);
    subsample_frames (j, fit);
  }

  guint n = j->frames->len;
  fr = g_new0 (struct md_frame, n);
  maps = g_new0 (GstMapInfo, n);
  for (guint i = 0; i < n; i++) {
    Frame *f = j->frames->pdata[i];
    if (!gst_buffer_map (f->rgb, &maps[i], GST_MAP_READ))
      goto fail;
    n_mapped++;
    fr[i].rgb = maps[i].data;
    fr[i].width = f->width;
    fr[i].height = f->height;
    fr[i].stride = f->stride;
    fr[i].pts_ns = GST_CLOCK_TIME_IS_VALID (f->pts) ? (int64_t) f->pts : -1;
  }

  if (e->reduce) {
    /* token reduction: the session encodes, reduces and prefills; frame by
     * frame, so that a flush or a stop interrupts the encoder */
    md_reduce_reset (e->reduce);
    rc = MD_OK;
    for (guint i = 0; i < n && rc == MD_OK; i++) {
      if (abort_cb (self))
        goto fail;
      rc = md_reduce_add_frames (e->reduce, &fr[i], 1);
    }
    if (rc == MD_OK)
      rc = md_reduce_prefill (e->reduce, NULL, j->system_prompt, j->question);
    if (rc == MD_ERR_ABORTED)
      goto fail;
    if (rc != MD_OK) {
      g_strlcpy (err, md_reduce_error (e->reduce), sizeof err);
      goto engine_error;
    }
    const struct md_reduce_stats *st = md_reduce_stats (e->reduce);
    max_new = result_from_reduce (r, st, n, st->ms_vision + st->ms_select,
        j->max_new_tokens, n_ctx);
    if (max_new < 1)
      goto context_full;
  } else {
    int32_t max_rows = block ? md_vision_video_tokens (e->vision, (int32_t) n)
        : per * (int32_t) n;
    int32_t got = 0;
    embd = g_try_malloc (sizeof (float) * (gsize) max_rows * (gsize) n_embd);
    if (!embd) {
      rc = MD_ERR_NOMEM;
      g_strlcpy (err, "out of memory for the frame embeddings", sizeof err);
      goto engine_error;
    }
    t0 = g_get_monotonic_time ();
    /* frame by frame, checking for a flush or a stop in between (the last
     * frame of a <video> block brings the block's newline row) */
    for (guint i = 0; i < n && rc == MD_OK; i++) {
      int32_t g = 0;
      if (abort_cb (self))
        goto fail;
      if (block && i + 1 == n)
        rc = md_vision_encode_video (e->vision, &fr[i], 1,
            embd + (gsize) got * (gsize) n_embd, max_rows - got, &g);
      else
        rc = md_vision_encode_frames (e->vision, &fr[i], 1,
            embd + (gsize) got * (gsize) n_embd, max_rows - got, &g);
      got += g;
    }
    t1 = g_get_monotonic_time ();
    r->encode_ms = (t1 - t0) / 1000.0;
    if (rc != MD_OK) {
      g_strlcpy (err, "frame encoding failed", sizeof err);
      goto engine_error;
    }
    if (abort_cb (self))
      goto fail;

    n_rows = g_new (int32_t, block ? 1 : n);
    if (block) {
      n_rows[0] = got;
    } else {
      for (guint i = 0; i < n; i++)
        n_rows[i] = per;
    }
    rc = md_vision_prompt_build_multi (e->model, NULL, j->system_prompt,
        j->question, embd, n_rows, block ? &kind : NULL,
        block ? 1 : (int32_t) n, n_embd, &pr, err, sizeof err);
    if (rc != MD_OK)
      goto engine_error;
    have_prompt = TRUE;

    r->frames = n;
    r->visual_tokens = (guint) got;
    r->visual_tokens_kept = (guint) pr.n_image;
    r->prompt_tokens = (guint) pr.n;

    max_new = (gint) MIN ((gint64) j->max_new_tokens, (gint64) n_ctx - pr.n);
    if (max_new < 1)
      goto context_full;

    md_kv_clear (e->ctx);
    md_reset_timings (e->ctx);
    rc = md_decode_batch (e->ctx, &pr.batch);
    if (rc == MD_ERR_ABORTED)
      goto fail;
    if (rc != MD_OK) {
      g_strlcpy (err, md_context_error (e->ctx), sizeof err);
      goto engine_error;
    }
    r->visual_tokens_final = r->visual_tokens_kept;
  }

generate:;
  struct md_sampler_params sp = md_sampler_default_params ();
  sp.temp = (float) j->temperature;
  sp.seed = j->seed;
  smp = md_sampler_new (&sp);
  if (!smp) {
    rc = MD_ERR_NOMEM;
    g_strlcpy (err, "sampler", sizeof err);
    goto engine_error;
  }
  int32_t n_vocab = md_model_n_vocab (e->model);
  for (gint i = 0; i < max_new; i++) {
    const float *logits = e->reduce ? md_reduce_logits (e->reduce) :
        md_get_logits (e->ctx, -1);
    if (!logits || abort_cb (self))
      break;
    int32_t t = md_sampler_sample (smp, logits, n_vocab);
    if (t < 0 || md_vocab_is_eog (vocab, t))
      break;
    char piece[256];
    int32_t np = md_token_to_piece (vocab, t, piece, sizeof piece, false);
    if (np > 0 && np <= (int32_t) sizeof piece)
      g_string_append_len (text, piece, np);
    r->generated_tokens++;
    if (j->stream_tokens)
      post_partial (self, j, text);
    if (i + 1 >= max_new)
      break;
    rc = e->reduce ? md_reduce_decode (e->reduce, t) :
        md_decode (e->ctx, &t, 1, false);
    if (rc == MD_ERR_ABORTED)
      break;
    if (rc != MD_OK) {
      g_strlcpy (err, e->reduce ? md_reduce_error (e->reduce) :
          md_context_error (e->ctx), sizeof err);
      goto engine_error;
    }
  }
  if (abort_cb (self))
    goto fail;
  if (e->reduce) {
    const struct md_reduce_stats *st = md_reduce_stats (e->reduce);
    r->prefill_ms = st->ms_prefill;
    r->decode_ms = st->ms_decode;
  } else {
    struct md_timings tm = md_get_timings (e->ctx);
    r->prefill_ms = tm.prefill_ms;
    r->decode_ms = tm.decode_ms;
  }
  r->answer = g_utf8_make_valid (g_strstrip (text->str), -1);

  md_sampler_free (smp);
  md_vision_prompt_free (&pr);
  g_free (n_rows);
  g_free (embd);
  unmap_frames (j, maps, n_mapped);
  g_free (fr);
  g_string_free (text, TRUE);
  return r;

context_full:
  GST_ELEMENT_WARNING (self, RESOURCE, SETTINGS,
      ("The prompt fills the model's context."),
      ("window %" G_GUINT64_FORMAT ": n_ctx %d; raise context-size or lower "
          "max-frames", j->index, n_ctx));
  goto fail;
engine_error:
  GST_ELEMENT_WARNING (self, STREAM, FAILED,
      ("Inference failed for window %" G_GUINT64_FORMAT ".", j->index),
      ("%s (%s)", err, md_status_str (rc)));
fail:
  if (smp)
    md_sampler_free (smp);
  if (have_prompt)
    md_vision_prompt_free (&pr);
  g_free (n_rows);
  g_free (embd);
  unmap_frames (j, maps, n_mapped);
  g_free (fr);
  g_string_free (text, TRUE);
  r->job = NULL;                /* the caller still owns the job */
  result_free (r);
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

/* window = 0: encode one sampled frame into the session (worker thread,
 * lock not held); its RGB copy is released by the caller right after. */
static void
encode_stream_frame (GstMustdropVqa * self, Engine * e, Frame * f)
{
  GstMapInfo map;
  struct md_frame fr;
  int rc;

  if (f->generation != g_atomic_int_get (&self->generation) ||
      g_atomic_int_get (&self->shutdown))
    return;                     /* flushed meanwhile */
  if (f->epoch != e->epoch) {
    /* the windows restarted (flush, new stream): forget the old frames */
    md_reduce_reset (e->reduce);
    e->epoch = f->epoch;
    e->frames = 0;
    e->encode_ms = 0;
  }
  if (!gst_buffer_map (f->rgb, &map, GST_MAP_READ))
    return;
  fr.rgb = map.data;
  fr.width = f->width;
  fr.height = f->height;
  fr.stride = f->stride;
  fr.pts_ns = GST_CLOCK_TIME_IS_VALID (f->pts) ? (int64_t) f->pts : -1;
  gint64 t0 = g_get_monotonic_time ();
  rc = md_reduce_add_frames (e->reduce, &fr, 1);
  gint64 t1 = g_get_monotonic_time ();
  gst_buffer_unmap (f->rgb, &map);
  if (rc != MD_OK) {
    GST_ELEMENT_WARNING (self, STREAM, FAILED,
        ("Could not encode the frame at %" GST_TIME_FORMAT ".",
            GST_TIME_ARGS (f->pts)), ("%s (%s)", md_reduce_error (e->reduce),
            md_status_str (rc)));
    return;
  }
  e->frames++;
  e->encode_ms += (t1 - t0) / 1000.0;

  guint tokens = (guint) MAX (md_reduce_n_visual (e->reduce), 0);
  guint64 bytes = md_reduce_held_bytes (e->reduce);
  g_mutex_lock (&self->lock);
  self->n_frames_encoded++;
  self->held_tokens = tokens;
  self->held_bytes = bytes;
  self->held_tokens_max = MAX (self->held_tokens_max, tokens);
  self->held_bytes_max = MAX (self->held_bytes_max, bytes);
  g_mutex_unlock (&self->lock);
}

/* Answers one job and hands the result to the streaming thread and the
 * application (worker thread, lock held on entry and on return). */
static void
answer_job_locked (GstMustdropVqa * self, Engine * e, Job * j)
{
  self->busy_job = j;
  g_atomic_int_set (&self->job_generation, j->generation);
  g_mutex_unlock (&self->lock);

  gint64 t0 = g_get_monotonic_time ();
  Result *r = run_job (self, e, j);
  GstClockTime took = (g_get_monotonic_time () - t0) * GST_USECOND;
  GstStructure *s = NULL;
  gboolean current = r && j->generation == g_atomic_int_get (&self->generation)
      && !g_atomic_int_get (&self->shutdown);

  if (current) {
    GST_DEBUG_OBJECT (self, "window %" G_GUINT64_FORMAT " answered in %"
        GST_TIME_FORMAT ": %s", j->index, GST_TIME_ARGS (took), r->answer);
    if (e->jsonl)
      write_jsonl (e->jsonl, r);
    s = result_structure (r, j->stats);
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
      result_free (r);
    else
      job_free (j);
    gst_clear_structure (&s);
  }
  g_cond_broadcast (&self->cond);
  g_mutex_unlock (&self->lock);

  if (s) {
    g_signal_emit (self, signals[SIGNAL_ANSWER], 0, s);
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
 * and no video for STALL_WARN_S. One warning per run names the likely cause
 * (worker thread, lock held). */
static void
warn_if_text_stalls_locked (GstMustdropVqa * self)
{
  Window *w = g_queue_peek_head (&self->windows);
  gint64 now = g_get_monotonic_time ();

  if (self->stall_warned || !w || self->busy_job ||
      !g_queue_is_empty (&self->pending) || self->last_buffer_us == 0 ||
      now - self->last_buffer_us < STALL_WARN_S * G_USEC_PER_SEC ||
      !g_atomic_pointer_get (&self->textpad))
    return;
  self->stall_warned = TRUE;
  GstClockTime start = w->start;
  g_mutex_unlock (&self->lock);
  GST_ELEMENT_WARNING (self, STREAM, FAILED,
      ("No video for %d s while text_src waits for the window starting at %"
          GST_TIME_FORMAT " (text-timing=window).", STALL_WARN_S,
          GST_TIME_ARGS (start)),
      ("The text of a window comes after the video has passed its end. If a "
          "muxer joins text_src and the video, the video branch needs a queue "
          "holding a window plus the inference time (e.g. queue "
          "max-size-time=0 max-size-buffers=0 max-size-bytes=0), or use "
          "text-timing=answer."));
  g_mutex_lock (&self->lock);
}

/* The inference thread: the engine was loaded when the element started. */
static gpointer
worker_main (gpointer data)
{
  GstMustdropVqa *self = data;
  Engine *e = self->engine;

  g_mutex_lock (&self->lock);
  while (!g_atomic_int_get (&self->shutdown)) {
    Job *j = g_queue_peek_head (&self->pending);
    Frame *f = g_queue_peek_head (&self->stream_frames);
    /* window = 0: frames are encoded as they come, and before a question
     * every frame sampled before it */
    if (f && (!j || !j->stream || f->seq <= j->seq)) {
      g_queue_pop_head (&self->stream_frames);
      g_cond_broadcast (&self->cond);
      g_mutex_unlock (&self->lock);
      encode_stream_frame (self, e, f);
      frame_unref (f);
      g_mutex_lock (&self->lock);
      continue;
    }
    j = g_queue_pop_head (&self->pending);
    if (!j) {
      if (self->text_timing == GST_MUSTDROP_TEXT_TIMING_WINDOW) {
        g_cond_wait_until (&self->cond, &self->lock,
            g_get_monotonic_time () + G_USEC_PER_SEC);
        warn_if_text_stalls_locked (self);
      } else {
        g_cond_wait (&self->cond, &self->lock);
      }
      continue;
    }
    answer_job_locked (self, e, j);
  }
  g_mutex_unlock (&self->lock);
  return NULL;
}

/* ------------------------------------------------------------------------
 * Streaming thread: sampling, windows, output
 * ------------------------------------------------------------------------ */

/* Whether w holds something to answer (window = 0: the session does). */
static gboolean
window_has_frames_locked (GstMustdropVqa * self, const Window * w)
{
  return self->window_ns == 0 ? self->stream_sampled > 0 : w->frames->len > 0;
}

/* Hands a closed window (or, with `question`, an "ask") to the worker; with
 * `force` the queue limit does not apply (EOS drain, end of a stream). Call
 * with lock held; takes w. */
static void
enqueue_window_locked (GstMustdropVqa * self, Window * w, GstClockTime end,
    const gchar * question, gboolean force)
{
  Job *j;
  gboolean stream = self->window_ns == 0;

  if (!window_has_frames_locked (self, w)) {
    GST_DEBUG_OBJECT (self, "window %" G_GUINT64_FORMAT " has no frames",
        w->index);
    self->n_empty++;
    window_free (w);
    return;
  }
  self->n_windows++;
  self->n_asked += question != NULL;
  j = g_new0 (Job, 1);
  j->index = w->index;
  if (stream) {
    /* the session holds the frames: the question waits for every frame
     * sampled so far */
    j->stream = TRUE;
    j->seq = self->stream_seq;
    j->epoch = self->stream_epoch;
  } else {
    j->frames = g_ptr_array_ref (w->frames);
  }
  j->start = w->start;
  j->end = end;
  j->start_rt = to_running_time (&self->segment, j->start);
  j->end_rt = to_running_time (&self->segment, j->end);
  j->generation = g_atomic_int_get (&self->generation);
  window_free (w);

  g_mutex_lock (&self->settings_lock);
  j->question = g_strdup (question ? question : self->settings.question);
  j->reduce = g_strdup (self->reduce_spec ? self->reduce_spec : "none");
  j->system_prompt = g_strdup (self->settings.system_prompt);
  j->max_new_tokens = self->settings.max_new_tokens;
  j->temperature = self->settings.temperature;
  j->seed = self->settings.seed;
  j->stream_tokens = self->settings.stream_tokens;
  j->stats = self->settings.stats;
  self->max_pending = self->settings.max_pending;
  g_mutex_unlock (&self->settings_lock);

  while (!force && g_queue_get_length (&self->pending) >= self->max_pending) {
    Job *old = g_queue_pop_head (&self->pending);
    GST_INFO_OBJECT (self, "dropping pending window %" G_GUINT64_FORMAT
        " (max-pending %u)", old->index, self->max_pending);
    self->n_dropped++;
    job_free (old);
  }
  g_queue_push_tail (&self->pending, j);
  g_cond_broadcast (&self->cond);
}

/* The stream ends (EOS, a new stream, timestamps going back): every open
 * window is answered over the frames it has, ending with the last buffer. */
static void
close_windows_locked (GstMustdropVqa * self)
{
  Window *w;

  while ((w = g_queue_pop_head (&self->windows))) {
    GstClockTime end = w->end;
    if (GST_CLOCK_TIME_IS_VALID (self->last_end) &&
        (!GST_CLOCK_TIME_IS_VALID (end) || end > self->last_end))
      end = self->last_end;
    enqueue_window_locked (self, w, end, NULL, TRUE);
  }
}

/* Opens windows up to pts and closes those ending at or before it. */
static void reset_windows_locked (GstMustdropVqa * self);

static void
advance_windows_locked (GstMustdropVqa * self, GstClockTime pts)
{
  if (GST_CLOCK_TIME_IS_VALID (self->origin) && pts < self->origin) {
    /* timestamps went back without a flush (e.g. a looping source): what
     * came before is a stream of its own */
    GST_DEBUG_OBJECT (self, "PTS %" GST_TIME_FORMAT " before the window "
        "origin, restarting the windows", GST_TIME_ARGS (pts));
    close_windows_locked (self);
    reset_windows_locked (self);
  }
  if (!GST_CLOCK_TIME_IS_VALID (self->origin)) {
    self->origin = pts;
    self->next_sample = pts;
  }
  if (self->window_ns == 0) {
    if (g_queue_is_empty (&self->windows))
      g_queue_push_tail (&self->windows, window_new (self->next_window++,
              self->origin, GST_CLOCK_TIME_NONE));
    return;
  }
  for (;;) {
    Window *w = g_queue_peek_head (&self->windows);
    if (!w || pts < w->end)
      break;
    g_queue_pop_head (&self->windows);
    enqueue_window_locked (self, w, w->end, NULL, FALSE);
  }
  for (;;) {
    GstClockTime start = self->origin + self->next_window * self->step_ns;
    if (pts < start)
      break;
    if (pts < start + self->window_ns)
      g_queue_push_tail (&self->windows, window_new (self->next_window, start,
              start + self->window_ns));
    self->next_window++;
  }
}

static void
clear_stream_frames_locked (GstMustdropVqa * self)
{
  Frame *f;
  while ((f = g_queue_pop_head (&self->stream_frames)))
    frame_unref (f);
}

/* Forgets the open windows (a flush, a stop, timestamps going back): those
 * holding frames count as aborted windows. */
static void
reset_windows_locked (GstMustdropVqa * self)
{
  Window *w;
  while ((w = g_queue_pop_head (&self->windows))) {
    if (window_has_frames_locked (self, w)) {
      self->n_windows++;
      self->n_aborted++;
    }
    window_free (w);
  }
  /* window = 0: the next frame starts a new session (frames still queued
   * for the encoder belong to the old one's question; a flush or a stop
   * clears them with the pending jobs) */
  self->stream_epoch++;
  self->stream_sampled = 0;
  self->stream_last_pts = GST_CLOCK_TIME_NONE;
  self->origin = GST_CLOCK_TIME_NONE;
  self->next_sample = GST_CLOCK_TIME_NONE;
  self->last_end = GST_CLOCK_TIME_NONE;
  self->next_window = 0;
}

/* Drops the queued jobs (aborted), the answers not yet attached to a video
 * buffer and the frames waiting for the window = 0 encoder. */
static void
clear_pending_locked (GstMustdropVqa * self)
{
  Job *j;
  Result *r;
  while ((j = g_queue_pop_head (&self->pending))) {
    self->n_aborted++;
    job_free (j);
  }
  while ((r = g_queue_pop_head (&self->ready)))
    result_free (r);
  clear_stream_frames_locked (self);
}

/* Copies buf to a small RGB frame (the model's size). */
static Frame *
copy_frame (GstMustdropVqa * self, GstBuffer * buf)
{
  GstVideoInfo *in = &self->in_info;
  GstVideoInfo out;
  GstVideoFrame in_frame, out_frame;
  gint side = self->model_side;
  gint w = GST_VIDEO_INFO_WIDTH (in), h = GST_VIDEO_INFO_HEIGHT (in);
  gint par_n = MAX (GST_VIDEO_INFO_PAR_N (in), 1);
  gint par_d = MAX (GST_VIDEO_INFO_PAR_D (in), 1);
  gdouble dw = (gdouble) w * par_n / par_d, dh = h;
  gdouble scale = MIN (1.0, side / MAX (dw, dh));
  gint ow = MAX (1, (gint) (dw * scale + 0.5));
  gint oh = MAX (1, (gint) (dh * scale + 0.5));
  Frame *f;

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
  f = g_atomic_rc_box_new0 (Frame);
  f->rgb = gst_buffer_new_allocate (NULL, GST_VIDEO_INFO_SIZE (&out), NULL);
  if (!f->rgb || !gst_video_frame_map (&out_frame, &out, f->rgb,
          GST_MAP_WRITE)) {
    gst_video_frame_unmap (&in_frame);
    frame_unref (f);
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
    gst_pad_push_event (tp, gst_event_new_caps (gst_static_caps_get
            (&text_template.static_caps)));
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
static void
text_preroll (GstMustdropVqa * self)
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
static void
text_output (GstMustdropVqa * self, GPtrArray * results, GstClockTime now,
    GstClockTime until)
{
  GstPad *tp = get_textpad (self);
  GstClockTime hold = GST_CLOCK_TIME_NONE;

  if (!tp)
    return;
  text_prepare (self, tp);
  for (guint i = 0; results && i < results->len; i++) {
    Result *r = results->pdata[i];
    gsize len = strlen (r->answer);
    GstBuffer *b = gst_buffer_new_memdup (r->answer, len);
    GstClockTime pts, dur;
    if (self->text_timing == GST_MUSTDROP_TEXT_TIMING_WINDOW &&
        GST_CLOCK_TIME_IS_VALID (r->job->start)) {
      pts = r->job->start;
      dur = GST_CLOCK_TIME_IS_VALID (r->job->end) && r->job->end > pts ?
          r->job->end - pts : GST_CLOCK_TIME_NONE;
    } else {
      pts = GST_CLOCK_TIME_IS_VALID (now) ? now : r->job->end;
      dur = self->step_ns ? self->step_ns : 5 * GST_SECOND;
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
    Window *w = g_queue_peek_head (&self->windows);
    Job *j = self->busy_job ? self->busy_job : g_queue_peek_head
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

static GPtrArray *
take_ready (GstMustdropVqa * self)
{
  GPtrArray *out = NULL;
  Result *r;

  g_mutex_lock (&self->lock);
  while ((r = g_queue_pop_head (&self->ready))) {
    if (!out)
      out = g_ptr_array_new_with_free_func ((GDestroyNotify) result_free);
    g_ptr_array_add (out, r);
  }
  g_mutex_unlock (&self->lock);
  return out;
}

static void
post_stats (GstMustdropVqa * self)
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
  if (self->window_ns == 0)
    gst_structure_set (s,
        "frames-encoded", G_TYPE_UINT64, self->n_frames_encoded,
        "frames-dropped", G_TYPE_UINT64, self->n_frames_dropped,
        "visual-token-cap", G_TYPE_UINT, self->visual_cap,
        "held-visual-tokens", G_TYPE_UINT, self->held_tokens,
        "held-visual-tokens-max", G_TYPE_UINT, self->held_tokens_max,
        "held-visual-bytes", G_TYPE_UINT64, self->held_bytes,
        "held-visual-bytes-max", G_TYPE_UINT64, self->held_bytes_max, NULL);
  g_mutex_unlock (&self->lock);
  gst_element_post_message (GST_ELEMENT (self),
      gst_message_new_element (GST_OBJECT (self), s));
}

static GstFlowReturn
gst_mustdrop_vqa_chain (GstPad * pad, GstObject * parent, GstBuffer * buf)
{
  GstMustdropVqa *self = GST_MUSTDROP_VQA (parent);
  GstClockTime pts = GST_BUFFER_PTS (buf);
  GstClockTime end = GST_CLOCK_TIME_NONE;
  GPtrArray *results;
  gboolean sample = FALSE;

  if (!self->have_info) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION, (NULL),
        ("buffer before caps"));
    gst_buffer_unref (buf);
    return GST_FLOW_NOT_NEGOTIATED;
  }

  if (GST_CLOCK_TIME_IS_VALID (pts)) {
    end = GST_BUFFER_DURATION_IS_VALID (buf) ?
        pts + GST_BUFFER_DURATION (buf) : pts;
    g_mutex_lock (&self->lock);
    self->last_buffer_us = g_get_monotonic_time ();
    advance_windows_locked (self, pts);
    if (!GST_CLOCK_TIME_IS_VALID (self->last_end) || end > self->last_end)
      self->last_end = end;
    if (!g_queue_is_empty (&self->windows) &&
        (self->sample_ns == 0 || pts >= self->next_sample)) {
      sample = TRUE;
      if (self->sample_ns) {
        /* next sampling point after pts, on the origin's grid */
        guint64 k = (pts - self->origin) / self->sample_ns + 1;
        self->next_sample = self->origin + k * self->sample_ns;
      }
      /* convert only when some window keeps the frame (full windows take
       * every keep_every-th one) */
      sample = FALSE;
      for (GList * l = self->windows.head; l; l = l->next) {
        Window *w = l->data;
        w->wants = pts >= w->start && window_takes_frame (w);
        sample |= w->wants;
      }
    }
    g_mutex_unlock (&self->lock);
  }

  if (sample && self->window_ns == 0) {
    /* window = 0: the worker encodes it into the session; only the copy
     * happens here. A full queue (the encoder is slower than sample-fps)
     * loses its oldest frame. */
    Frame *f = copy_frame (self, buf);
    if (f) {
      g_mutex_lock (&self->lock);
      f->seq = ++self->stream_seq;
      f->epoch = self->stream_epoch;
      f->generation = g_atomic_int_get (&self->generation);
      self->stream_sampled++;
      self->stream_last_pts = f->pts;
      while (g_queue_get_length (&self->stream_frames) >=
          self->stream_max_queue) {
        frame_unref (g_queue_pop_head (&self->stream_frames));
        self->n_frames_dropped++;
      }
      g_queue_push_tail (&self->stream_frames, f);
      for (GList * l = self->windows.head; l; l = l->next)
        ((Window *) l->data)->wants = FALSE;
      g_cond_broadcast (&self->cond);
      g_mutex_unlock (&self->lock);
    }
  } else if (sample) {
    Frame *f = copy_frame (self, buf);
    if (f) {
      g_mutex_lock (&self->lock);
      /* windows change on this thread only: the flags are still ours */
      for (GList * l = self->windows.head; l; l = l->next) {
        Window *w = l->data;
        if (w->wants)
          window_add_frame (w, f, self->max_frames);
        w->wants = FALSE;
      }
      g_mutex_unlock (&self->lock);
      frame_unref (f);
    }
  }

  results = take_ready (self);
  if (results) {
    buf = gst_buffer_make_writable (buf);
    for (guint i = 0; i < results->len; i++) {
      Result *r = results->pdata[i];
      GstMustdropAnswerMeta *m = gst_buffer_add_mustdrop_answer_meta (buf,
          r->job->question, r->answer, r->job->reduce);
      if (!m)
        continue;
      m->window_index = r->job->index;
      m->window_start = r->job->start;
      m->window_end = r->job->end;
      m->window_start_running_time = r->job->start_rt;
      m->window_end_running_time = r->job->end_rt;
      m->frames = r->frames;
      m->visual_tokens = r->visual_tokens;
      m->visual_tokens_kept = r->visual_tokens_kept;
      m->visual_tokens_final = r->visual_tokens_final;
      m->prompt_tokens = r->prompt_tokens;
      m->generated_tokens = r->generated_tokens;
      if (self->custom_meta) {
        GstCustomMeta *cm = gst_buffer_add_custom_meta (buf,
            GST_MUSTDROP_ANSWER_CUSTOM_META_NAME);
        if (cm) {
          GstStructure *src = result_structure (r, FALSE);
          GstStructure *dst = gst_custom_meta_get_structure (cm);
          for (gint k = 0; k < gst_structure_n_fields (src); k++) {
            const gchar *f = gst_structure_nth_field_name (src, (guint) k);
            gst_structure_set_value (dst, f, gst_structure_get_value (src, f));
          }
          gst_structure_free (src);
        }
      }
    }
    if (self->stats)
      post_stats (self);
  }
  text_output (self, results, pts, end);
  if (results)
    g_ptr_array_unref (results);

  return gst_pad_push (self->srcpad, buf);
}

/* EOS: answer the open windows and wait for every pending answer. */
static void
drain (GstMustdropVqa * self)
{
  GPtrArray *results;

  g_mutex_lock (&self->lock);
  close_windows_locked (self);
  while (!self->flushing && !self->stopping &&
      (!g_queue_is_empty (&self->pending) || self->busy_job ||
          self->announcing))
    g_cond_wait (&self->cond, &self->lock);
  g_mutex_unlock (&self->lock);

  results = take_ready (self);
  text_output (self, results, self->last_end, GST_CLOCK_TIME_NONE);
  if (results)
    g_ptr_array_unref (results);
  post_stats (self);
}

static void
forward_to_text (GstMustdropVqa * self, GstEvent * event)
{
  GstPad *tp = get_textpad (self);
  if (tp) {
    gst_pad_push_event (tp, gst_event_ref (event));
    gst_object_unref (tp);
  }
}

static gboolean
gst_mustdrop_vqa_sink_event (GstPad * pad, GstObject * parent,
    GstEvent * event)
{
  GstMustdropVqa *self = GST_MUSTDROP_VQA (parent);

  GST_LOG_OBJECT (self, "event %" GST_PTR_FORMAT, event);
  switch (GST_EVENT_TYPE (event)) {
    case GST_EVENT_CAPS:{
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
    case GST_EVENT_STREAM_START:
      /* a new stream (e.g. concat's next file) ends the windows of the old
       * one as EOS would, without waiting for their answers */
      g_mutex_lock (&self->lock);
      close_windows_locked (self);
      reset_windows_locked (self);
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
      text_preroll (self);
      return gst_pad_push_event (self->srcpad, event);
    }
    case GST_EVENT_GAP:{
      GstClockTime ts, dur;
      gst_event_parse_gap (event, &ts, &dur);
      text_output (self, NULL, ts, GST_CLOCK_TIME_IS_VALID (dur) ? ts + dur :
          ts);
      return gst_pad_push_event (self->srcpad, event);
    }
    case GST_EVENT_EOS:
      drain (self);
      forward_to_text (self, event);
      return gst_pad_push_event (self->srcpad, event);
    case GST_EVENT_FLUSH_START:
      g_mutex_lock (&self->lock);
      self->flushing = TRUE;
      g_atomic_int_inc (&self->generation);
      clear_pending_locked (self);
      g_cond_broadcast (&self->cond);
      g_mutex_unlock (&self->lock);
      forward_to_text (self, event);
      return gst_pad_push_event (self->srcpad, event);
    case GST_EVENT_FLUSH_STOP:
      g_mutex_lock (&self->lock);
      reset_windows_locked (self);
      clear_pending_locked (self);
      self->flushing = FALSE;
      g_mutex_unlock (&self->lock);
      self->text_pos = self->text_end = GST_CLOCK_TIME_NONE;
      forward_to_text (self, event);
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

static gboolean
gst_mustdrop_vqa_text_query (GstPad * pad, GstObject * parent,
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
        extra = self->window_ns + self->max_infer_ns;
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
      GstCaps *filter, *caps = gst_static_caps_get (&text_template.static_caps);
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

/* ------------------------------------------------------------------------
 * Request pad
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
  gst_pad_set_query_function (pad,
      GST_DEBUG_FUNCPTR (gst_mustdrop_vqa_text_query));
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

/* ------------------------------------------------------------------------
 * "ask" action signal
 * ------------------------------------------------------------------------ */

static gboolean
gst_mustdrop_vqa_ask (GstMustdropVqa * self, const gchar * question)
{
  Window *w, *snap;
  gboolean ok = FALSE;

  gchar *why, *dbg = NULL;
  if ((why = text_problem ("question", question, FALSE, &dbg))) {
    GST_WARNING_OBJECT (self, "ask: %s (%s)", why, dbg);
    gst_element_message_full (GST_ELEMENT (self), GST_MESSAGE_WARNING,
        GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS, why, dbg, __FILE__,
        GST_FUNCTION, __LINE__);
    return FALSE;
  }
  g_mutex_lock (&self->lock);
  w = g_queue_peek_tail (&self->windows);
  if (w && self->window_ns == 0 && self->stream_sampled > 0 &&
      !self->flushing && !self->stopping) {
    /* window = 0: a question over every frame sampled so far */
    snap = window_new (w->index, w->start, w->end);
    enqueue_window_locked (self, snap, self->stream_last_pts, question, FALSE);
    ok = TRUE;
  } else if (w && self->window_ns > 0 && w->frames->len > 0 &&
      !self->flushing && !self->stopping) {
    Frame *last = g_ptr_array_index (w->frames, w->frames->len - 1);
    snap = window_new (w->index, w->start, w->end);
    for (guint i = 0; i < w->frames->len; i++)
      g_ptr_array_add (snap->frames,
          g_atomic_rc_box_acquire (g_ptr_array_index (w->frames, i)));
    enqueue_window_locked (self, snap, last->pts, question, FALSE);
    ok = TRUE;
  }
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
use_default_model (Settings * s, gchar ** msg, gchar ** dbg)
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

/* Checks the settings and copies those of this run into the state.
 * Returns FALSE after posting an error. */
static gboolean
configure_run (GstMustdropVqa * self)
{
  Settings *s = &self->settings;
  const gchar *backend;
  gint idx;
  struct md_reduce_config rcfg = md_reduce_default_config ();
  char rerr[256] = "", canon[256] = "none";

  /* errors are posted after unlocking (a sync bus handler may read the
   * properties) */
  gchar *msg = NULL, *dbg = NULL;
  GstResourceError code = GST_RESOURCE_ERROR_SETTINGS;

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
  } else if ((msg = text_problem ("question", s->question, FALSE, &dbg))) {
  } else if ((msg = text_problem ("system prompt", s->system_prompt, TRUE,
              &dbg))) {
  } else if (md_reduce_parse (s->reduce, &rcfg, rerr, sizeof rerr) != MD_OK) {
    msg = g_strdup_printf ("Invalid reduce spec \"%s\".", s->reduce);
    dbg = g_strdup (rerr);
  } else if (!parse_device (s->device, &backend, &idx)) {
    msg = g_strdup_printf ("Invalid device \"%s\".", s->device);
    dbg = g_strdup ("expected auto, cpu, cuda or cuda:N");
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
  if (rcfg.methods != 0)
    md_reduce_format (&rcfg, canon, sizeof canon);

  /* lock order: lock, then settings_lock (never the other way); the
   * settings lock is still held */
  g_mutex_lock (&self->lock);
  self->window_ns = (GstClockTime) (s->window * GST_SECOND);
  self->step_ns = self->window_ns ? self->window_ns -
      (GstClockTime) (s->window_overlap * GST_SECOND) : 0;
  /* 1 ns .. 1e6 s between samples */
  self->sample_ns = s->sample_fps > 0 ?
      (GstClockTime) MIN (GST_SECOND / s->sample_fps, 1e15) : 0;
  self->max_frames = s->max_frames;
  self->max_pending = s->max_pending;
  self->text_timing = s->text_timing;
  self->stats = s->stats;
  self->custom_meta = s->custom_meta;
  g_free (self->reduce_spec);
  self->reduce_spec = g_strdup (canon);
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
  clear_pending_locked (self);
  gst_segment_init (&self->segment, GST_FORMAT_TIME);
  self->flushing = self->stopping = FALSE;
  self->last_buffer_us = 0;
  self->stall_warned = FALSE;
  self->n_windows = self->n_answered = self->n_dropped = 0;
  self->n_failed = self->n_aborted = self->n_asked = self->n_empty = 0;
  self->max_infer_ns = self->reported_latency = 0;
  self->stream_max_queue = STREAM_QUEUE;
  self->n_frames_encoded = self->n_frames_dropped = 0;
  self->held_tokens = self->held_tokens_max = self->visual_cap = 0;
  self->held_bytes = self->held_bytes_max = 0;
  self->text_pos = self->text_end = GST_CLOCK_TIME_NONE;
  self->text_need_start = TRUE;
  self->text_need_segment = TRUE;
  g_mutex_unlock (&self->lock);
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

  post_progress (self, GST_PROGRESS_TYPE_START, "Loading the model");
  self->engine = engine_load (self);
  if (!self->engine) {
    post_progress (self, GST_PROGRESS_TYPE_ERROR, "Model load failed");
    return FALSE;
  }
  gint side = md_vision_image_size (self->engine->vision);
  self->model_side = side > 0 ? side : DEFAULT_FRAME_SIDE;
  post_progress (self, GST_PROGRESS_TYPE_COMPLETE, "Model loaded");
  self->worker = g_thread_new ("mustdropvqa", worker_main, self);
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
  engine_free (self->engine);
  self->engine = NULL;
  g_mutex_lock (&self->lock);
  reset_windows_locked (self);
  clear_pending_locked (self);
  self->have_info = FALSE;
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
set_string (GstMustdropVqa * self, gchar ** dst, const GValue * value,
    const gchar * fallback)
{
  g_mutex_lock (&self->settings_lock);
  g_free (*dst);
  *dst = g_value_dup_string (value);
  if (!*dst && fallback)        /* NULL resets to the default */
    *dst = g_strdup (fallback);
  g_mutex_unlock (&self->settings_lock);
}

/* A question or system prompt set while running is used from the next
 * window without another check at start: a bad one is refused (the old one
 * stays) with a warning naming why. Before start, configure_run fails on it. */
static gboolean
text_accepted (GstMustdropVqa * self, const gchar * what, const gchar * text,
    gboolean may_be_empty)
{
  gchar *msg, *dbg = NULL;
  gboolean running;

  GST_OBJECT_LOCK (self);
  running = GST_STATE (self) > GST_STATE_READY ||
      GST_STATE_PENDING (self) > GST_STATE_READY;
  GST_OBJECT_UNLOCK (self);
  if (!running || !(msg = text_problem (what, text, may_be_empty, &dbg)))
    return TRUE;
  gchar *kept = g_strdup_printf ("%s The previous %s is kept.", msg, what);
  gst_element_message_full (GST_ELEMENT (self), GST_MESSAGE_WARNING,
      GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS, kept, dbg, __FILE__,
      GST_FUNCTION, __LINE__);
  g_free (msg);
  return FALSE;
}

static void
gst_mustdrop_vqa_set_property (GObject * object, guint prop_id,
    const GValue * value, GParamSpec * pspec)
{
  GstMustdropVqa *self = GST_MUSTDROP_VQA (object);
  Settings *s = &self->settings;

  switch (prop_id) {
    case PROP_MODEL:
      set_string (self, &s->model, value, NULL);
      return;
    case PROP_MMPROJ:
      set_string (self, &s->mmproj, value, NULL);
      return;
    case PROP_QUESTION:
      if (text_accepted (self, "question", g_value_get_string (value) ?
              g_value_get_string (value) : DEFAULT_QUESTION, FALSE))
        set_string (self, &s->question, value, DEFAULT_QUESTION);
      return;
    case PROP_SYSTEM_PROMPT:
      if (text_accepted (self, "system prompt", g_value_get_string (value),
              TRUE))
        set_string (self, &s->system_prompt, value, NULL);
      return;
    case PROP_REDUCE:
      set_string (self, &s->reduce, value, DEFAULT_REDUCE);
      return;
    case PROP_DEVICE:
      set_string (self, &s->device, value, DEFAULT_DEVICE);
      return;
    case PROP_JSONL_LOCATION:
      set_string (self, &s->jsonl_location, value, NULL);
      return;
    default:
      break;
  }

  g_mutex_lock (&self->settings_lock);
  switch (prop_id) {
    case PROP_SAMPLE_FPS:
      s->sample_fps = g_value_get_double (value);
      break;
    case PROP_WINDOW:
      s->window = g_value_get_double (value);
      break;
    case PROP_WINDOW_OVERLAP:
      s->window_overlap = g_value_get_double (value);
      break;
    case PROP_MAX_FRAMES:
      s->max_frames = g_value_get_uint (value);
      break;
    case PROP_MAX_NEW_TOKENS:
      s->max_new_tokens = g_value_get_uint (value);
      break;
    case PROP_TEMPERATURE:
      s->temperature = g_value_get_double (value);
      break;
    case PROP_SEED:
      s->seed = g_value_get_uint64 (value);
      break;
    case PROP_THREADS:
      s->threads = g_value_get_uint (value);
      break;
    case PROP_CONTEXT_SIZE:
      s->context_size = g_value_get_uint (value);
      break;
    case PROP_MAX_PENDING:
      s->max_pending = g_value_get_uint (value);
      break;
    case PROP_TEXT_TIMING:
      s->text_timing = g_value_get_enum (value);
      break;
    case PROP_STATS:
      s->stats = g_value_get_boolean (value);
      break;
    case PROP_STREAM_TOKENS:
      s->stream_tokens = g_value_get_boolean (value);
      break;
    case PROP_CUSTOM_META:
      s->custom_meta = g_value_get_boolean (value);
      break;
    case PROP_MAX_VISUAL_TOKENS:
      s->max_visual_tokens = g_value_get_uint (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  g_mutex_unlock (&self->settings_lock);
}

static void
gst_mustdrop_vqa_get_property (GObject * object, guint prop_id,
    GValue * value, GParamSpec * pspec)
{
  GstMustdropVqa *self = GST_MUSTDROP_VQA (object);
  Settings *s = &self->settings;

  /* state, not settings: under lock (taken before settings_lock, never
   * after) */
  if (prop_id == PROP_HELD_VISUAL_TOKENS || prop_id == PROP_HELD_VISUAL_BYTES
      || prop_id == PROP_FRAMES_ENCODED) {
    g_mutex_lock (&self->lock);
    if (prop_id == PROP_HELD_VISUAL_TOKENS)
      g_value_set_uint (value, self->held_tokens);
    else if (prop_id == PROP_HELD_VISUAL_BYTES)
      g_value_set_uint64 (value, self->held_bytes);
    else
      g_value_set_uint64 (value, self->n_frames_encoded);
    g_mutex_unlock (&self->lock);
    return;
  }

  g_mutex_lock (&self->settings_lock);
  switch (prop_id) {
    case PROP_MODEL:
      g_value_set_string (value, s->model);
      break;
    case PROP_MMPROJ:
      g_value_set_string (value, s->mmproj);
      break;
    case PROP_QUESTION:
      g_value_set_string (value, s->question);
      break;
    case PROP_SYSTEM_PROMPT:
      g_value_set_string (value, s->system_prompt);
      break;
    case PROP_REDUCE:
      g_value_set_string (value, s->reduce);
      break;
    case PROP_DEVICE:
      g_value_set_string (value, s->device);
      break;
    case PROP_JSONL_LOCATION:
      g_value_set_string (value, s->jsonl_location);
      break;
    case PROP_SAMPLE_FPS:
      g_value_set_double (value, s->sample_fps);
      break;
    case PROP_WINDOW:
      g_value_set_double (value, s->window);
      break;
    case PROP_WINDOW_OVERLAP:
      g_value_set_double (value, s->window_overlap);
      break;
    case PROP_MAX_FRAMES:
      g_value_set_uint (value, s->max_frames);
      break;
    case PROP_MAX_NEW_TOKENS:
      g_value_set_uint (value, s->max_new_tokens);
      break;
    case PROP_TEMPERATURE:
      g_value_set_double (value, s->temperature);
      break;
    case PROP_SEED:
      g_value_set_uint64 (value, s->seed);
      break;
    case PROP_THREADS:
      g_value_set_uint (value, s->threads);
      break;
    case PROP_CONTEXT_SIZE:
      g_value_set_uint (value, s->context_size);
      break;
    case PROP_MAX_PENDING:
      g_value_set_uint (value, s->max_pending);
      break;
    case PROP_TEXT_TIMING:
      g_value_set_enum (value, s->text_timing);
      break;
    case PROP_STATS:
      g_value_set_boolean (value, s->stats);
      break;
    case PROP_STREAM_TOKENS:
      g_value_set_boolean (value, s->stream_tokens);
      break;
    case PROP_CUSTOM_META:
      g_value_set_boolean (value, s->custom_meta);
      break;
    case PROP_MAX_VISUAL_TOKENS:
      g_value_set_uint (value, s->max_visual_tokens);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  g_mutex_unlock (&self->settings_lock);
}

static void
gst_mustdrop_vqa_finalize (GObject * object)
{
  GstMustdropVqa *self = GST_MUSTDROP_VQA (object);
  Settings *s = &self->settings;

  stop (self);
  g_free (s->model);
  g_free (s->mmproj);
  g_free (s->question);
  g_free (s->system_prompt);
  g_free (s->reduce);
  g_free (s->device);
  g_free (s->jsonl_location);
  g_free (self->reduce_spec);
  g_mutex_clear (&self->settings_lock);
  g_mutex_clear (&self->lock);
  g_cond_clear (&self->cond);
  G_OBJECT_CLASS (parent_class)->finalize (object);
}

static void
gst_mustdrop_vqa_init (GstMustdropVqa * self)
{
  Settings *s = &self->settings;

  g_mutex_init (&self->settings_lock);
  g_mutex_init (&self->lock);
  g_cond_init (&self->cond);
  g_queue_init (&self->windows);
  g_queue_init (&self->pending);
  g_queue_init (&self->ready);
  g_queue_init (&self->stream_frames);
  self->stream_last_pts = GST_CLOCK_TIME_NONE;
  gst_segment_init (&self->segment, GST_FORMAT_TIME);
  self->origin = self->next_sample = GST_CLOCK_TIME_NONE;
  self->text_pos = self->text_end = GST_CLOCK_TIME_NONE;
  self->model_side = DEFAULT_FRAME_SIDE;

  s->question = g_strdup (DEFAULT_QUESTION);
  s->reduce = g_strdup (DEFAULT_REDUCE);
  s->device = g_strdup (DEFAULT_DEVICE);
  s->sample_fps = DEFAULT_SAMPLE_FPS;
  s->window = DEFAULT_WINDOW;
  s->window_overlap = DEFAULT_WINDOW_OVERLAP;
  s->max_frames = DEFAULT_MAX_FRAMES;
  s->max_new_tokens = DEFAULT_MAX_NEW_TOKENS;
  s->temperature = DEFAULT_TEMPERATURE;
  s->seed = DEFAULT_SEED;
  s->threads = DEFAULT_THREADS;
  s->context_size = DEFAULT_CONTEXT_SIZE;
  s->max_pending = DEFAULT_MAX_PENDING;
  s->text_timing = DEFAULT_TEXT_TIMING;
  s->stats = DEFAULT_STATS;
  s->stream_tokens = DEFAULT_STREAM_TOKENS;
  s->custom_meta = DEFAULT_CUSTOM_META;
  s->max_visual_tokens = DEFAULT_MAX_VISUAL_TOKENS;

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
  const GParamFlags rw = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS;
  const GParamFlags ready = rw | GST_PARAM_MUTABLE_READY;
  const GParamFlags playing = rw | GST_PARAM_MUTABLE_PLAYING;

  GST_DEBUG_CATEGORY_INIT (mustdrop_vqa_debug, "mustdropvqa", 0,
      "Video question answering with libmustdrop");

  gobject_class->set_property = gst_mustdrop_vqa_set_property;
  gobject_class->get_property = gst_mustdrop_vqa_get_property;
  gobject_class->finalize = gst_mustdrop_vqa_finalize;

  g_object_class_install_property (gobject_class, PROP_MODEL,
      g_param_spec_string ("model", "Model",
          "Path of the language model GGUF (LLaVA-style LLM: llama or qwen2); "
          "loaded off the streaming thread when going to PAUSED. With neither "
          "model nor mmproj set, the bundled default model (synthvqa-llm-f16.gguf "
          "+ synthvqa-mmproj-f16.gguf from $MUSTDROP_MODEL_DIR, the installed "
          "data dir or the source tree) is used and its paths appear here", NULL,
          ready));
  g_object_class_install_property (gobject_class, PROP_MMPROJ,
      g_param_spec_string ("mmproj", "Vision projector",
          "Path of the vision tower + projector GGUF (llama.cpp mmproj) "
          "matching the model", NULL, ready));
  g_object_class_install_property (gobject_class, PROP_QUESTION,
      g_param_spec_string ("question", "Question",
          "The question asked about every window; a change applies from the "
          "next window", DEFAULT_QUESTION, playing));
  g_object_class_install_property (gobject_class, PROP_SYSTEM_PROMPT,
      g_param_spec_string ("system-prompt", "System prompt",
          "System part of the chat prompt (NULL: the chat template's default, "
          "\"\": none); applies from the next window", NULL, playing));
  g_object_class_install_property (gobject_class, PROP_SAMPLE_FPS,
      g_param_spec_double ("sample-fps", "Sample rate",
          "Frames per second taken from the video into a window "
          "(0 = every frame)", 0.0, 1000.0, DEFAULT_SAMPLE_FPS, ready));
  g_object_class_install_property (gobject_class, PROP_WINDOW,
      g_param_spec_double ("window", "Window",
          "Seconds of video per answer. 0 = one growing window over the whole "
          "stream: frames are encoded as they arrive and only their reduced "
          "visual tokens kept (at most max-visual-tokens); answered at EOS and "
          "whenever the \"ask\" action signal poses a new question over "
          "everything seen so far", 0.0, 86400.0, DEFAULT_WINDOW,
          ready));
  g_object_class_install_property (gobject_class, PROP_WINDOW_OVERLAP,
      g_param_spec_double ("window-overlap", "Window overlap",
          "Seconds each window shares with the previous one (< window)",
          0.0, 86400.0, DEFAULT_WINDOW_OVERLAP, ready));
  g_object_class_install_property (gobject_class, PROP_MAX_FRAMES,
      g_param_spec_uint ("max-frames", "Max frames",
          "Most frames kept per window; more sampled frames are subsampled "
          "uniformly. Memory per window is about max-frames x S x S x 3 bytes "
          "(S = the vision tower's input side, e.g. 336). window=0: most frame "
          "blocks in the prompt (adjacent ones merge beyond it)", 1, 1024,
          DEFAULT_MAX_FRAMES, ready));
  g_object_class_install_property (gobject_class, PROP_REDUCE,
      g_param_spec_string ("reduce", "Token reduction",
          "Visual-token reduction spec, e.g. \"none\", \"mustdrop:tokens=128\", "
          "\"dycoke:k=0.7\", \"fastv:k=2,r=0.5\", \"cap:tokens=512\", "
          "\"dycoke:k=0.7+cap:tokens=1024,frames=8\" "
          "(stages joined with '+'; see docs/reduction.md)", DEFAULT_REDUCE, ready));
  g_object_class_install_property (gobject_class, PROP_MAX_NEW_TOKENS,
      g_param_spec_uint ("max-new-tokens", "Max new tokens",
          "Most tokens generated per answer", 1, 8192, DEFAULT_MAX_NEW_TOKENS,
          playing));
  g_object_class_install_property (gobject_class, PROP_TEMPERATURE,
      g_param_spec_double ("temperature", "Temperature",
          "Sampling temperature (0 = greedy)", 0.0, 10.0, DEFAULT_TEMPERATURE,
          playing));
  g_object_class_install_property (gobject_class, PROP_SEED,
      g_param_spec_uint64 ("seed", "Seed",
          "Random seed of the sampler (each window starts from it)", 0,
          G_MAXUINT64, DEFAULT_SEED, playing));
  g_object_class_install_property (gobject_class, PROP_DEVICE,
      g_param_spec_string ("device", "Device",
          "Where the model runs: auto (a CUDA GPU if built and present, else "
          "the CPU), cpu, cuda or cuda:N", DEFAULT_DEVICE, ready));
  g_object_class_install_property (gobject_class, PROP_THREADS,
      g_param_spec_uint ("threads", "Threads",
          "CPU threads for inference (0 = online CPUs)", 0, 1024,
          DEFAULT_THREADS, ready));
  g_object_class_install_property (gobject_class, PROP_CONTEXT_SIZE,
      g_param_spec_uint ("context-size", "Context size",
          "KV-cache tokens (0 = min(model context, 4096)); frames that do not "
          "fit are subsampled", 0, 1 << 20, DEFAULT_CONTEXT_SIZE, ready));
  g_object_class_install_property (gobject_class, PROP_MAX_PENDING,
      g_param_spec_uint ("max-pending", "Max pending",
          "Closed windows waiting for inference; beyond it the oldest waiting "
          "window is dropped and counted (never the video)", 1, 64,
          DEFAULT_MAX_PENDING, playing));
  g_object_class_install_property (gobject_class, PROP_TEXT_TIMING,
      g_param_spec_enum ("text-timing", "Text timing",
          "How buffers on the text_src pad are timestamped. With window, the "
          "text lags the video by the window plus the inference time: a muxer "
          "joining the two needs a queue on the video branch holding that "
          "much (e.g. queue max-size-time=0 max-size-buffers=0 "
          "max-size-bytes=0); answer needs none",
          GST_TYPE_MUSTDROP_TEXT_TIMING, DEFAULT_TEXT_TIMING, ready));
  g_object_class_install_property (gobject_class, PROP_STATS,
      g_param_spec_boolean ("stats", "Statistics",
          "Add timings to answer messages and post \"mustdrop-stats\" "
          "messages (counters of windows, answers, drops) after answers "
          "(one is always posted at EOS)", DEFAULT_STATS, ready));
  g_object_class_install_property (gobject_class, PROP_STREAM_TOKENS,
      g_param_spec_boolean ("stream-tokens", "Stream tokens",
          "Post a \"mustdrop-partial\" element message with the text so far "
          "after every generated token", DEFAULT_STREAM_TOKENS, playing));
  g_object_class_install_property (gobject_class, PROP_JSONL_LOCATION,
      g_param_spec_string ("jsonl-location", "JSON lines file",
          "Append every answer as one JSON object per line to this file; "
          "\"-\" writes them to the process's stdout (use it rather than "
          "/dev/stdout, which loses lines when stdout is redirected to a "
          "file); NULL: don't", NULL, ready));
  g_object_class_install_property (gobject_class, PROP_CUSTOM_META,
      g_param_spec_boolean ("custom-meta", "Custom meta",
          "Also attach each answer as a GstCustomMeta "
          "\"GstMustdropAnswerCustomMeta\" holding the answer structure "
          "(readable from Python and other bindings)", DEFAULT_CUSTOM_META,
          ready));
  g_object_class_install_property (gobject_class, PROP_MAX_VISUAL_TOKENS,
      g_param_spec_uint ("max-visual-tokens", "Max visual tokens",
          "window=0 only: most visual tokens the growing window keeps (frames "
          "are encoded as they arrive and only their reduced tokens kept; "
          "beyond the cap the least important are dropped and, past "
          "max-frames frame blocks, adjacent blocks merge). 0 = the reduce "
          "spec's cap:tokens=N, else 1024; lowered to fit context-size",
          0, 1 << 24, DEFAULT_MAX_VISUAL_TOKENS, ready));
  g_object_class_install_property (gobject_class, PROP_HELD_VISUAL_TOKENS,
      g_param_spec_uint ("held-visual-tokens", "Held visual tokens",
          "window=0: visual tokens the growing window holds now "
          "(<= max-visual-tokens)", 0, G_MAXUINT, 0,
          G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
  g_object_class_install_property (gobject_class, PROP_HELD_VISUAL_BYTES,
      g_param_spec_uint64 ("held-visual-bytes", "Held visual bytes",
          "window=0: host bytes those tokens take (rows, scores, the "
          "temporal methods' reference frames)", 0, G_MAXUINT64, 0,
          G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
  g_object_class_install_property (gobject_class, PROP_FRAMES_ENCODED,
      g_param_spec_uint64 ("frames-encoded", "Frames encoded",
          "window=0: sampled frames encoded into the growing window so far "
          "(frames the encoder could not keep up with are counted as "
          "frames-dropped in \"mustdrop-stats\")", 0, G_MAXUINT64, 0,
          G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));

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
