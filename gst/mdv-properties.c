/* mustdropvqa's properties: their specs, defaults and the settings they
 * write (gstmustdropvqa-priv.h; settings_lock). */
#include "gstmustdropvqa-priv.h"

#define DEFAULT_QUESTION "Describe what happens in the video."
#define DEFAULT_SAMPLE_FPS 1.0
#define DEFAULT_WINDOW 10.0
#define DEFAULT_WINDOW_OVERLAP 0.0
#define DEFAULT_MAX_FRAMES 8
/* the best measured method that keeps >= 97 % of the unreduced accuracy
 * on the bundled model (docs/accuracy.md, "The element's default") */
#define DEFAULT_REDUCE "flashvid:keep=0.5,segs=2"
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
#define DEFAULT_MAX_BATCH 8
#define DEFAULT_CUSTOM_META FALSE
#define DEFAULT_MAX_VISUAL_TOKENS 0
#define DEFAULT_MQTT_TOPIC "mustdrop/{host}/{stream}"
#define DEFAULT_MQTT_QUEUE 1000

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
  PROP_MAX_BATCH,
  PROP_MAX_PENDING,
  PROP_TEXT_TIMING,
  PROP_STATS,
  PROP_STREAM_TOKENS,
  PROP_JSONL_LOCATION,
  PROP_CHOICES,
  PROP_JSON_SCHEMA,
  PROP_CUSTOM_META,
  PROP_MAX_VISUAL_TOKENS,
  PROP_HELD_VISUAL_TOKENS,
  PROP_HELD_VISUAL_BYTES,
  PROP_FRAMES_ENCODED,
  PROP_MQTT_URI,
  PROP_MQTT_TOPIC,
  PROP_MQTT_CLIENT_ID,
  PROP_MQTT_QUEUE,
  PROP_MQTT_PUBLISHED,
  PROP_MQTT_DROPPED,
  PROP_MQTT_QUEUED,
  PROP_ENGINE_NAME,
  PROP_ENGINE_USERS,
};

void
mdv_settings_init (MdvSettings * s)
{
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
  s->max_batch = DEFAULT_MAX_BATCH;
  s->max_pending = DEFAULT_MAX_PENDING;
  s->text_timing = DEFAULT_TEXT_TIMING;
  s->stats = DEFAULT_STATS;
  s->stream_tokens = DEFAULT_STREAM_TOKENS;
  s->custom_meta = DEFAULT_CUSTOM_META;
  s->max_visual_tokens = DEFAULT_MAX_VISUAL_TOKENS;
  s->mqtt_topic = g_strdup (DEFAULT_MQTT_TOPIC);
  s->mqtt_queue = DEFAULT_MQTT_QUEUE;
}

void
mdv_settings_clear (MdvSettings * s)
{
  g_free (s->model);
  g_free (s->mmproj);
  g_free (s->question);
  g_free (s->system_prompt);
  g_free (s->reduce);
  g_free (s->device);
  g_free (s->jsonl_location);
  g_free (s->choices);
  g_free (s->json_schema);
  g_free (s->schema_text);
  g_free (s->schema_error);
  g_free (s->mqtt_uri);
  g_free (s->mqtt_topic);
  g_free (s->mqtt_client_id);
  g_free (s->engine_name);
}

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

/* A question or system prompt set while the engine runs is used from the
 * next window without another check: one md_vqa would refuse (empty, not
 * UTF-8, too long for the context) is refused here with a warning naming
 * why, and the previous one stays. Before the start, the start fails on it.
 * NULL for the text not being changed. */
static gboolean
text_accepted (GstMustdropVqa * self, const gchar * question,
    const gchar * system)
{
  char err[512] = "";
  gboolean ok = TRUE;

  g_mutex_lock (&self->lock);
  if (self->vqa) {
    g_mutex_lock (&self->settings_lock);
    gchar *q = g_strdup (question ? question : self->settings.question);
    gchar *sys = g_strdup (question ? self->settings.system_prompt : system);
    g_mutex_unlock (&self->settings_lock);
    ok = md_vqa_check_question (self->vqa, q, sys, err, sizeof err) == MD_OK;
    g_free (q);
    g_free (sys);
  }
  g_mutex_unlock (&self->lock);
  if (!ok) {
    err[0] = g_ascii_toupper (err[0]);
    GST_ELEMENT_WARNING (self, RESOURCE, SETTINGS,
        ("%s; the previous %s is kept.", err, question ? "question" :
            "system prompt"), (NULL));
  }
  return ok;
}

gchar *
mdv_constraints_error_locked (const MdvSettings * s)
{
  char err[512] = "";
  gboolean has_choices = s->choices && *s->choices;

  if (s->json_schema && *s->json_schema && s->schema_error)
    return g_strdup (s->schema_error);
  if (has_choices && s->schema_text)
    return g_strdup ("choices and json-schema are both set; an answer takes "
        "one constraint");
  if (has_choices) {
    char **list = NULL;
    int32_t n = 0;
    if (md_vqa_choices_parse (s->choices, &list, &n, err, sizeof err))
      return g_strdup_printf ("Invalid choices \"%s\": %s", s->choices, err);
    md_vqa_choices_free (list);
  }
  if (s->schema_text && md_vqa_check_schema (s->schema_text, err, sizeof err))
    return g_strdup_printf ("Invalid json-schema: %s", err);
  return NULL;
}

/* The json-schema property: inline JSON (it starts with '{') or the path of
 * a file holding it, read now so that a missing file is reported where the
 * value is set (or at the start). */
static void
resolve_schema (MdvSettings * s)
{
  GError *error = NULL;
  const gchar *v = s->json_schema;

  g_clear_pointer (&s->schema_text, g_free);
  g_clear_pointer (&s->schema_error, g_free);
  if (!v || !*v)
    return;
  while (g_ascii_isspace (*v))
    v++;
  if (*v == '{') {
    s->schema_text = g_strdup (v);
  } else if (!g_file_get_contents (v, &s->schema_text, NULL, &error)) {
    s->schema_error = g_strdup_printf ("Could not read the json-schema file "
        "\"%s\": %s", v, error->message);
    g_error_free (error);
  }
}

/* choices or json-schema set while the engine runs apply from the next
 * window, if valid: an invalid one is refused with a warning naming why and
 * the previous constraints stay. Before the start, the start fails on it. */
static void
set_constraint (GstMustdropVqa * self, gboolean schema, const GValue * value)
{
  MdvSettings *s = &self->settings;
  gchar *why;
  gboolean running;

  g_mutex_lock (&self->lock);
  running = self->vqa != NULL;
  g_mutex_unlock (&self->lock);

  g_mutex_lock (&self->settings_lock);
  MdvSettings old = *s;
  gchar **field = schema ? &s->json_schema : &s->choices;
  *field = g_value_dup_string (value);
  if (schema) {
    s->schema_text = s->schema_error = NULL;
    resolve_schema (s);
  }
  why = running ? mdv_constraints_error_locked (s) : NULL;
  if (why) {                    /* put the previous value back */
    g_free (*field);
    if (schema) {
      g_free (s->schema_text);
      g_free (s->schema_error);
      s->schema_text = old.schema_text;
      s->schema_error = old.schema_error;
    }
    *field = schema ? old.json_schema : old.choices;
  } else {
    g_free (schema ? old.json_schema : old.choices);
    if (schema) {
      g_free (old.schema_text);
      g_free (old.schema_error);
    }
  }
  g_mutex_unlock (&self->settings_lock);
  if (why) {
    GST_ELEMENT_WARNING (self, RESOURCE, SETTINGS,
        ("%s; the previous constraint is kept.", why), (NULL));
    g_free (why);
  }
}

void
mdv_set_property (GObject * object, guint prop_id,
    const GValue * value, GParamSpec * pspec)
{
  GstMustdropVqa *self = GST_MUSTDROP_VQA (object);
  MdvSettings *s = &self->settings;

  switch (prop_id) {
    case PROP_MODEL:
      set_string (self, &s->model, value, NULL);
      return;
    case PROP_MMPROJ:
      set_string (self, &s->mmproj, value, NULL);
      return;
    case PROP_ENGINE_NAME:
      set_string (self, &s->engine_name, value, NULL);
      return;
    case PROP_QUESTION:
      if (text_accepted (self, g_value_get_string (value) ?
              g_value_get_string (value) : DEFAULT_QUESTION, NULL))
        set_string (self, &s->question, value, DEFAULT_QUESTION);
      return;
    case PROP_SYSTEM_PROMPT:
      if (text_accepted (self, NULL, g_value_get_string (value)))
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
    case PROP_CHOICES:
      set_constraint (self, FALSE, value);
      return;
    case PROP_JSON_SCHEMA:
      set_constraint (self, TRUE, value);
      return;
    case PROP_MQTT_URI:
      set_string (self, &s->mqtt_uri, value, NULL);
      return;
    case PROP_MQTT_TOPIC:
      set_string (self, &s->mqtt_topic, value, DEFAULT_MQTT_TOPIC);
      return;
    case PROP_MQTT_CLIENT_ID:
      set_string (self, &s->mqtt_client_id, value, NULL);
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
    case PROP_MAX_BATCH:
      s->max_batch = g_value_get_uint (value);
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
    case PROP_MQTT_QUEUE:
      s->mqtt_queue = g_value_get_uint (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  g_mutex_unlock (&self->settings_lock);
}

void
mdv_get_property (GObject * object, guint prop_id,
    GValue * value, GParamSpec * pspec)
{
  GstMustdropVqa *self = GST_MUSTDROP_VQA (object);
  MdvSettings *s = &self->settings;

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
  if (prop_id == PROP_ENGINE_USERS) {
    g_mutex_lock (&self->lock);
    g_value_set_uint (value, self->engine ? mdv_engine_users (self->engine) :
        0);
    g_mutex_unlock (&self->lock);
    return;
  }
  if (prop_id == PROP_MQTT_PUBLISHED || prop_id == PROP_MQTT_DROPPED ||
      prop_id == PROP_MQTT_QUEUED) {
    MdvMqttCounts c;
    g_mutex_lock (&self->lock);
    if (self->mqtt)
      mdv_mqtt_counts (self->mqtt, &c);
    else
      c = self->mqtt_final;
    g_mutex_unlock (&self->lock);
    if (prop_id == PROP_MQTT_QUEUED)
      g_value_set_uint (value, c.queued);
    else
      g_value_set_uint64 (value, prop_id == PROP_MQTT_PUBLISHED ?
          c.published : c.dropped);
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
    case PROP_ENGINE_NAME:
      g_value_set_string (value, s->engine_name);
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
    case PROP_CHOICES:
      g_value_set_string (value, s->choices);
      break;
    case PROP_JSON_SCHEMA:
      g_value_set_string (value, s->json_schema);
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
    case PROP_MAX_BATCH:
      g_value_set_uint (value, s->max_batch);
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
    case PROP_MQTT_URI:
      g_value_set_string (value, s->mqtt_uri);
      break;
    case PROP_MQTT_TOPIC:
      g_value_set_string (value, s->mqtt_topic);
      break;
    case PROP_MQTT_CLIENT_ID:
      g_value_set_string (value, s->mqtt_client_id);
      break;
    case PROP_MQTT_QUEUE:
      g_value_set_uint (value, s->mqtt_queue);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  g_mutex_unlock (&self->settings_lock);
}


static void
install_mqtt_properties (GObjectClass * gobject_class, GParamFlags ready)
{
  const GParamFlags counter = G_PARAM_READABLE | G_PARAM_STATIC_STRINGS;

  g_object_class_install_property (gobject_class, PROP_MQTT_URI,
      g_param_spec_string ("mqtt-uri", "MQTT broker",
          "Publish every answer (its JSON line, as jsonl-location writes it) "
          "to this MQTT broker with QoS 1: mqtt://[user[:password]@]host[:port] "
          "(port 1883 by default; no TLS). A broker that is down is no error: "
          "answers wait (mqtt-queue) and go once it is up. NULL: don't",
          NULL, ready));
  g_object_class_install_property (gobject_class, PROP_MQTT_TOPIC,
      g_param_spec_string ("mqtt-topic", "MQTT topic",
          "Topic of the answers; {host} becomes the host name and {stream} "
          "the element's name", DEFAULT_MQTT_TOPIC, ready));
  g_object_class_install_property (gobject_class, PROP_MQTT_CLIENT_ID,
      g_param_spec_string ("mqtt-client-id", "MQTT client id",
          "Client identifier sent to the broker (NULL: a random one)", NULL,
          ready));
  g_object_class_install_property (gobject_class, PROP_MQTT_QUEUE,
      g_param_spec_uint ("mqtt-queue", "MQTT queue",
          "Most answers kept while the broker is away or slow (including the "
          "one awaiting its acknowledgement); beyond it the oldest waiting "
          "answer is dropped and counted (mqtt-dropped)", 1, 1000000,
          DEFAULT_MQTT_QUEUE, ready));
  g_object_class_install_property (gobject_class, PROP_MQTT_PUBLISHED,
      g_param_spec_uint64 ("mqtt-published", "MQTT published",
          "Answers the broker acknowledged in this run", 0, G_MAXUINT64, 0,
          counter));
  g_object_class_install_property (gobject_class, PROP_MQTT_DROPPED,
      g_param_spec_uint64 ("mqtt-dropped", "MQTT dropped",
          "Answers not published in this run: the queue was full, or they "
          "were still queued when the element stopped", 0, G_MAXUINT64, 0,
          counter));
  g_object_class_install_property (gobject_class, PROP_MQTT_QUEUED,
      g_param_spec_uint ("mqtt-queued", "MQTT queued",
          "Answers waiting for the broker now", 0, G_MAXUINT, 0, counter));
}

void
mdv_install_properties (GObjectClass * gobject_class)
{
  const GParamFlags rw = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS;
  const GParamFlags ready = rw | GST_PARAM_MUTABLE_READY;
  const GParamFlags playing = rw | GST_PARAM_MUTABLE_PLAYING;

  gobject_class->set_property = mdv_set_property;
  gobject_class->get_property = mdv_get_property;
  g_object_class_install_property (gobject_class, PROP_MODEL,
      g_param_spec_string ("model", "Model",
          "Path of the language model GGUF (LLaVA-style LLM: llama or qwen2); "
          "loaded when going to PAUSED (a file that cannot be loaded fails that "
          "state change). With neither "
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
          "Visual-token reduction spec, e.g. \"none\" (no reduction), "
          "\"mustdrop:tokens=128\", "
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
  g_object_class_install_property (gobject_class, PROP_ENGINE_NAME,
      g_param_spec_string ("engine-name", "Engine name",
          "Elements of the process with the same model, mmproj, device, "
          "threads, context-size and max-batch share one loaded engine "
          "(weights in memory once, answers taking turns fairly), each "
          "sampling and reducing as its own properties say; elements with "
          "different names never share. NULL: grouped by the settings alone. "
          "Give each element its own name for one engine per element", NULL,
          ready));
  g_object_class_install_property (gobject_class, PROP_ENGINE_USERS,
      g_param_spec_uint ("engine-users", "Engine users",
          "Elements using this element's engine now (0 when not started)", 0,
          G_MAXUINT, 0, G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
  g_object_class_install_property (gobject_class, PROP_THREADS,
      g_param_spec_uint ("threads", "Threads",
          "CPU threads for inference (0 = online CPUs)", 0, 1024,
          DEFAULT_THREADS, ready));
  g_object_class_install_property (gobject_class, PROP_CONTEXT_SIZE,
      g_param_spec_uint ("context-size", "Context size",
          "KV-cache tokens (0 = min(model context, 4096)); frames that do not "
          "fit are subsampled", 0, 1 << 20, DEFAULT_CONTEXT_SIZE, ready));
  g_object_class_install_property (gobject_class, PROP_MAX_BATCH,
      g_param_spec_uint ("max-batch", "Max batch",
          "Window answers of elements sharing the engine that are waiting at "
          "once are decoded together, up to this many (one pass over the "
          "weights per token for all; 1 = one at a time)", 1, 64,
          DEFAULT_MAX_BATCH, ready));
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
  g_object_class_install_property (gobject_class, PROP_CHOICES,
      g_param_spec_string ("choices", "Choices",
          "The answer is exactly one of these, '|'-separated (\"yes|no\"): "
          "the one the model finds most likely, scored in full; the choice "
          "goes out as the answer's \"value\" too. NULL: free text. Applies "
          "from the next window", NULL, playing));
  g_object_class_install_property (gobject_class, PROP_JSON_SCHEMA,
      g_param_spec_string ("json-schema", "JSON schema",
          "The answer is JSON valid for this schema (docs/structured.md: "
          "objects, booleans, integer ranges, enums, short strings), given "
          "inline (starting with '{') or as a file's path; the parsed value "
          "goes out as the answer's \"value\" structure. NULL: free text. "
          "Applies from the next window", NULL, playing));
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
  install_mqtt_properties (gobject_class, ready);
}
