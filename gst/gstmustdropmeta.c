/* GstMustdropAnswerMeta registration (GStreamer 1.22 API: no analytics
 * library, so an own GstMeta with empty tags and a copy transform). */
#include "gstmustdropmeta.h"

#include <string.h>

GType
gst_mustdrop_answer_meta_api_get_type (void)
{
  static GType type = 0;
  static const gchar *tags[] = { NULL };

  if (g_once_init_enter (&type)) {
    GType t = gst_meta_api_type_register ("GstMustdropAnswerMetaAPI", tags);
    g_once_init_leave (&type, t);
  }
  return type;
}

static gboolean
answer_meta_init (GstMeta * meta, gpointer params, GstBuffer * buffer)
{
  GstMustdropAnswerMeta *m = (GstMustdropAnswerMeta *) meta;

  m->question = NULL;
  m->answer = NULL;
  m->reduce = NULL;
  m->window_index = 0;
  m->window_start = GST_CLOCK_TIME_NONE;
  m->window_end = GST_CLOCK_TIME_NONE;
  m->window_start_running_time = GST_CLOCK_TIME_NONE;
  m->window_end_running_time = GST_CLOCK_TIME_NONE;
  m->frames = 0;
  m->visual_tokens = 0;
  m->visual_tokens_kept = 0;
  m->visual_tokens_final = 0;
  m->prompt_tokens = 0;
  m->generated_tokens = 0;
  m->value = NULL;
  m->choice = -1;
  return TRUE;
}

static void
answer_meta_free (GstMeta * meta, GstBuffer * buffer)
{
  GstMustdropAnswerMeta *m = (GstMustdropAnswerMeta *) meta;

  g_clear_pointer (&m->question, g_free);
  g_clear_pointer (&m->answer, g_free);
  g_clear_pointer (&m->reduce, g_free);
  g_clear_pointer (&m->value, gst_structure_free);
}

static gboolean
answer_meta_transform (GstBuffer * dest, GstMeta * meta, GstBuffer * buffer,
    GQuark type, gpointer data)
{
  GstMustdropAnswerMeta *src = (GstMustdropAnswerMeta *) meta, *dst;

  /* The answer is about the content, not the geometry: keep it on copies
   * and on any other transform that asks (scale, convert, ...). */
  dst = gst_buffer_add_mustdrop_answer_meta (dest, src->question, src->answer,
      src->reduce);
  if (!dst)
    return FALSE;
  dst->window_index = src->window_index;
  dst->window_start = src->window_start;
  dst->window_end = src->window_end;
  dst->window_start_running_time = src->window_start_running_time;
  dst->window_end_running_time = src->window_end_running_time;
  dst->frames = src->frames;
  dst->visual_tokens = src->visual_tokens;
  dst->visual_tokens_kept = src->visual_tokens_kept;
  dst->visual_tokens_final = src->visual_tokens_final;
  dst->prompt_tokens = src->prompt_tokens;
  dst->generated_tokens = src->generated_tokens;
  dst->value = src->value ? gst_structure_copy (src->value) : NULL;
  dst->choice = src->choice;
  return TRUE;
}

const GstMetaInfo *
gst_mustdrop_answer_meta_get_info (void)
{
  static const GstMetaInfo *info = NULL;

  if (g_once_init_enter ((GstMetaInfo **) & info)) {
    const GstMetaInfo *i =
        gst_meta_register (GST_MUSTDROP_ANSWER_META_API_TYPE,
        "GstMustdropAnswerMeta", sizeof (GstMustdropAnswerMeta),
        answer_meta_init, answer_meta_free, answer_meta_transform);
    g_once_init_leave ((GstMetaInfo **) & info, (GstMetaInfo *) i);
  }
  return info;
}

GstMustdropAnswerMeta *
gst_buffer_add_mustdrop_answer_meta (GstBuffer * buffer,
    const gchar * question, const gchar * answer, const gchar * reduce)
{
  GstMustdropAnswerMeta *m;

  g_return_val_if_fail (GST_IS_BUFFER (buffer), NULL);
  m = (GstMustdropAnswerMeta *) gst_buffer_add_meta (buffer,
      GST_MUSTDROP_ANSWER_META_INFO, NULL);
  if (!m)
    return NULL;
  m->question = g_strdup (question ? question : "");
  m->answer = g_strdup (answer ? answer : "");
  m->reduce = g_strdup (reduce ? reduce : "none");
  return m;
}

static gboolean
custom_meta_transform (GstBuffer * dest, GstCustomMeta * meta,
    GstBuffer * buffer, GQuark type, gpointer data, gpointer user_data)
{
  GstCustomMeta *dst = gst_buffer_add_custom_meta (dest,
      GST_MUSTDROP_ANSWER_CUSTOM_META_NAME);
  GstStructure *d, *s = gst_custom_meta_get_structure (meta);

  if (!dst)
    return FALSE;
  d = gst_custom_meta_get_structure (dst);
  for (gint i = 0; i < gst_structure_n_fields (s); i++) {
    const gchar *f = gst_structure_nth_field_name (s, (guint) i);
    gst_structure_set_value (d, f, gst_structure_get_value (s, f));
  }
  return TRUE;
}

void
gst_mustdrop_answer_custom_meta_register (void)
{
  static gsize done = 0;
  static const gchar *tags[] = { NULL };

  if (g_once_init_enter (&done)) {
    /* content meta: kept on every transform, like the C meta */
    gst_meta_register_custom (GST_MUSTDROP_ANSWER_CUSTOM_META_NAME, tags,
        custom_meta_transform, NULL, NULL);
    g_once_init_leave (&done, 1);
  }
}
