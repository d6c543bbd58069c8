/* mustdropvqa's insides, shared by its files:
 *   gstmustdropvqa.c   the element: pads, events, queries, state changes,
 *                      the streaming thread
 *   mdv-properties.c   the properties: specs, defaults, the settings
 *   mdv-windows.c      the windowing policy: which windows are open, which
 *                      take a frame, which close (no pipeline needed)
 *   mdv-worker.c       the engine (md_vqa) and the inference thread with its
 *                      job queue
 *   mdv-outputs.c      what an answer becomes: meta, bus messages, the
 *                      "answer" signal's structure, JSON lines, text_src
 *   mdv-mqtt.c         the MQTT publisher of those JSON lines (built with
 *                      libmosquitto; mdv-mqtt.h)
 * The element only orchestrates: frames, prompts and generation are
 * libmustdrop's (md_vqa).
 *
 * Locks: settings_lock guards `settings` (what the properties say); lock
 * guards the state below it; the order is lock, then settings_lock, never the
 * other way. The object lock guards textpad. */
#ifndef GST_MUSTDROP_VQA_PRIV_H
#define GST_MUSTDROP_VQA_PRIV_H

#include <stdio.h>

#include <gst/video/video.h>

#include "gstmustdropvqa.h"
#include "mdv-engines.h"
#include "mdv-mqtt.h"
#include "mdv-windows.h"
#include <mustdrop/mustdrop-vqa.h>

G_BEGIN_DECLS

GST_DEBUG_CATEGORY_EXTERN (mustdrop_vqa_debug);
#define GST_CAT_DEFAULT mustdrop_vqa_debug

#define MDV_TEXT_CAPS "text/x-raw, format = (string) utf8"
/* window = 0: most sampled frames waiting for the encoder */
#define MDV_GROWING_QUEUE 16
/* text-timing=window: seconds without video before warning of a stall */
#define MDV_STALL_WARN_S 5
/* EOS and stop: most time spent getting the MQTT queue to the broker */
#define MDV_MQTT_FLUSH_US (2 * G_USEC_PER_SEC)

/* What the properties say (settings_lock). */
typedef struct
{
  gchar *model, *mmproj, *question, *system_prompt, *reduce, *device;
  gchar *jsonl_location;
  /* constrained answers: "a|b|c"; the json-schema property as set (inline
   * JSON or a file's path) and the schema text it gives (NULL when unset or
   * the file could not be read: schema_error says why) */
  gchar *choices, *json_schema, *schema_text, *schema_error;
  gchar *mqtt_uri, *mqtt_topic, *mqtt_client_id;
  gchar *engine_name;
  guint mqtt_queue;
  gdouble sample_fps, window, window_overlap, temperature;
  guint max_frames, max_new_tokens, threads, context_size, max_pending, max_batch;
  guint max_visual_tokens;
  guint64 seed;
  GstMustdropTextTiming text_timing;
  gboolean stats, stream_tokens, custom_meta;
} MdvSettings;

/* window = 0: a sampled frame (RGB copy) on its way to the encoder. seq,
 * epoch and generation say where it belongs. */
typedef struct
{
  GstBuffer *rgb;
  gint width, height, stride;
  GstClockTime pts;
  guint64 seq;
  guint epoch;
  gint generation;
} MdvFrame;

/* A question for the worker: a closed window (with its stream), an "ask",
 * or (growing) the question over everything its stream holds. */
typedef struct
{
  guint64 index;
  gchar *question, *system_prompt;
  gchar *choices, *schema_text; /* constraints (NULL: free text) */
  struct md_vqa_stream *stream; /* windows and window asks: owned */
  gboolean growing;             /* window = 0: the worker's growing stream */
  guint64 seq;                  /* growing: frames up to this one first */
  guint epoch;                  /* growing: the stream it asks about */
  GstClockTime start, end, start_rt, end_rt;
  gint generation;
  guint max_new_tokens;
  gdouble temperature;
  guint64 seed;
  gboolean stream_tokens, stats;
} MdvJob;

/* An answer waiting for the next outgoing video buffer. */
typedef struct
{
  MdvJob *job;
  struct md_vqa_answer answer;
  guint64 seq;                  /* 1, 2, ... over the answers of a run */
  gint64 answered_us;           /* wall-clock time of the answer */
} MdvResult;

struct _GstMustdropVqa
{
  GstElement parent;

  GstPad *sinkpad, *srcpad;
  GstPad *textpad;              /* request pad or NULL; object lock */

  GMutex settings_lock;
  MdvSettings settings;

  /* State: under lock; cond signals queue/worker changes. */
  GMutex lock;
  GCond cond;
  GstVideoInfo in_info;
  gboolean have_info;
  GstVideoConverter *converter; /* streaming thread only */
  gint conv_w, conv_h;
  GstSegment segment;
  MdvWindows windows;
  GQueue pending;               /* MdvJob*, oldest first */
  GQueue ready;                 /* MdvResult*, oldest first */
  MdvJob *busy_job;             /* the job being answered, if any */
  gboolean announcing;          /* the worker is posting an answer */
  gboolean flushing, stopping;
  /* the settings of this run (copied at start) */
  guint max_pending;
  GstMustdropTextTiming text_timing;
  gboolean stats, custom_meta;
  /* text pad timeline (streaming thread) */
  GstClockTime text_pos;        /* how far the text stream has been brought */
  GstClockTime text_end;        /* end of the latest text buffer */
  gboolean text_need_start, text_need_segment;
  /* counters: every window closed with frames (and every "ask") ends up in
   * exactly one of answered, dropped (max-pending), failed (inference) and
   * aborted (flush, stop); until then it is pending */
  guint64 n_windows, n_answered, n_dropped, n_failed, n_aborted;
  guint64 n_asked;              /* of n_windows, questions from "ask" */
  guint64 n_empty;              /* windows closed without a frame */
  GstClockTime max_infer_ns, reported_latency;
  GstClockTime last_end;        /* end of the latest buffer (streaming) */
  gint64 last_buffer_us;        /* monotonic time the latest buffer came */
  gboolean stall_warned;

  gint generation;              /* atomic: bumped on flush/stop */
  gint work_generation;         /* atomic: generation of the worker's item */
  gint shutdown;                /* atomic */
  gint frame_side;              /* RGB copy side for the model */
  MdvEngine *engine;            /* taken at start, perhaps shared */
  gboolean *loading_now;        /* during mdv_engine_load: set if it loads */
  struct md_vqa *vqa;           /* the engine's; answers on the worker */
  /* this element's streams' own settings (the engine may be another's):
   * taken from the settings at start, strings owned, fixed while running */
  struct md_vqa_stream_params stream_params;
  struct md_vqa_stream *growing;        /* window = 0: the worker's stream */
  FILE *jsonl;                  /* worker: JSON lines, NULL, or stdout */
  /* who answers, in every JSON line (fixed while running): the element's
   * name, the host, an id of this run (seq restarts with each run) */
  gchar *stream_name, *host, *run_id;
  guint64 answer_seq;           /* worker: answers of this run so far */
  /* mqtt-uri: the publisher (started with the engine, stopped after the
   * worker); its last counts stay readable after the stop */
  MdvMqtt *mqtt;
  MdvMqttCounts mqtt_final;
  GThread *worker;

  /* window = 0 (under lock): sampled frames waiting for the encoder, the
   * stream they belong to, what the growing stream holds */
  GQueue growing_frames;        /* MdvFrame*, oldest first */
  guint64 growing_seq;          /* last frame queued (never reset) */
  guint growing_epoch;          /* bumped when the windows restart */
  GstClockTime growing_last_pts;
  guint64 n_frames_encoded, n_frames_dropped;
  guint held_tokens, held_tokens_max, visual_cap;
  guint64 held_bytes, held_bytes_max;
};

/* gstmustdropvqa.c: a "model-load" progress message */
void mdv_post_progress (GstMustdropVqa * self, GstProgressType type,
    const gchar * text);

/* mdv-properties.c */
void mdv_settings_init (MdvSettings * s);
void mdv_settings_clear (MdvSettings * s);
void mdv_install_properties (GObjectClass * gobject_class);
void mdv_set_property (GObject * object, guint prop_id, const GValue * value,
    GParamSpec * pspec);
void mdv_get_property (GObject * object, guint prop_id, GValue * value,
    GParamSpec * pspec);

/* Whether the constraints in the settings can be used: NULL, or why not
 * (settings_lock held). */
gchar *mdv_constraints_error_locked (const MdvSettings * s);

/* mdv-worker.c */
gboolean mdv_engine_load (GstMustdropVqa * self);
void mdv_engine_free (GstMustdropVqa * self);
gpointer mdv_worker_main (gpointer data);
void mdv_job_free (MdvJob * j);
void mdv_result_free (MdvResult * r);
void mdv_frame_unref (gpointer frame);
/* Hands a closed window (or, with `question`, an "ask") to the worker; with
 * `force` the queue limit does not apply. Lock held; takes w. */
void mdv_enqueue_window_locked (GstMustdropVqa * self, MdvWindow * w,
    GstClockTime end, const gchar * question, gboolean force);
/* Drops the queued jobs (aborted), the answers not yet attached to a video
 * buffer and the frames waiting for the growing encoder. */
void mdv_clear_pending_locked (GstMustdropVqa * self);

/* mdv-outputs.c */
GstStructure *mdv_result_structure (const MdvResult * r, gboolean stats);
/* The answer as one JSON object (no newline): the JSON line's and the MQTT
 * message's text alike. */
gchar *mdv_result_json (GstMustdropVqa * self, const MdvResult * r);
void mdv_write_jsonl (FILE * f, const gchar * json);
void mdv_attach_answers (GstMustdropVqa * self, GstBuffer * buf,
    GPtrArray * results);
void mdv_post_stats (GstMustdropVqa * self);
void mdv_post_partial (GstMustdropVqa * self, const MdvJob * j,
    const gchar * text);
void mdv_text_preroll (GstMustdropVqa * self);
void mdv_text_output (GstMustdropVqa * self, GPtrArray * results,
    GstClockTime now, GstClockTime until);
GPtrArray *mdv_take_ready (GstMustdropVqa * self);
gboolean mdv_text_query (GstPad * pad, GstObject * parent, GstQuery * query);
/* A serialized event for text_src too (EOS, flushes). */
void mdv_text_forward_event (GstMustdropVqa * self, GstEvent * event);

G_END_DECLS

#endif
