/* GstMustdropAnswerMeta: one answer of the mustdropvqa element, attached to
 * the first video buffer that leaves the element after the answer is ready.
 *
 * The meta has no tags (it does not depend on the picture's geometry or
 * format), so GstBaseTransform-based elements downstream copy it, and a copy
 * transform duplicates its strings. All strings are owned by the meta.
 *
 * Lookup from C:
 *
 *     gpointer state = NULL;
 *     GstMeta *m;
 *     while ((m = gst_buffer_iterate_meta_filtered (buf, &state,
 *                 GST_MUSTDROP_ANSWER_META_API_TYPE))) {
 *       GstMustdropAnswerMeta *a = (GstMustdropAnswerMeta *) m;
 *       g_print ("%s -> %s\n", a->question, a->answer);
 *     }
 *
 * Languages without access to C structs (Python) read the same fields from
 * the "mustdrop-answer" element message or the "answer" signal.
 */
#ifndef GST_MUSTDROP_META_H
#define GST_MUSTDROP_META_H

#include <gst/gst.h>

G_BEGIN_DECLS

#define GST_MUSTDROP_ANSWER_META_API_TYPE (gst_mustdrop_answer_meta_api_get_type ())
#define GST_MUSTDROP_ANSWER_META_INFO (gst_mustdrop_answer_meta_get_info ())

typedef struct _GstMustdropAnswerMeta GstMustdropAnswerMeta;

struct _GstMustdropAnswerMeta
{
  GstMeta meta;

  gchar *question;              /* owned */
  gchar *answer;                /* owned, valid UTF-8 */
  gchar *reduce;                /* owned: the reduction spec used ("none") */

  guint64 window_index;         /* 0, 1, ... since the last reset */
  GstClockTime window_start;    /* PTS of the window's start */
  GstClockTime window_end;      /* PTS of the window's end */
  GstClockTime window_start_running_time;
  GstClockTime window_end_running_time;

  guint frames;                 /* frames given to the model */
  guint visual_tokens;          /* visual tokens before reduction */
  guint visual_tokens_kept;     /* visual tokens entering the LLM */
  guint visual_tokens_final;    /* after the last LLM pruning layer */
  guint prompt_tokens;          /* the whole prompt */
  guint generated_tokens;

  /* constrained answers (properties choices, json-schema): the answer
   * parsed, as a "mustdrop-value" structure whose one field "value" is the
   * bus message's "value" field (a string for a choice; for a schema a
   * boolean, a gint64, a string or a structure named "value" with the
   * schema's properties in order); NULL for free text. Owned. */
  GstStructure *value;
  gint choice;                  /* choices: the index chosen, else -1 */
};

GType gst_mustdrop_answer_meta_api_get_type (void);
const GstMetaInfo *gst_mustdrop_answer_meta_get_info (void);

/* Adds an answer meta with copies of the strings; the numeric fields are
 * zero / GST_CLOCK_TIME_NONE for the caller to fill. */
GstMustdropAnswerMeta *gst_buffer_add_mustdrop_answer_meta (GstBuffer * buffer,
    const gchar * question, const gchar * answer, const gchar * reduce);

#define gst_buffer_get_mustdrop_answer_meta(b) \
  ((GstMustdropAnswerMeta *) gst_buffer_get_meta ((b), GST_MUSTDROP_ANSWER_META_API_TYPE))

/* The same answer as a GstCustomMeta holding a "mustdrop-answer" structure
 * (the fields of the bus message), attached when the element's custom-meta
 * property is set: readable from language bindings without C structs, e.g.
 * Python: buf.get_custom_meta("GstMustdropAnswerCustomMeta").get_structure().
 * Registered by the plugin. */
#define GST_MUSTDROP_ANSWER_CUSTOM_META_NAME "GstMustdropAnswerCustomMeta"
void gst_mustdrop_answer_custom_meta_register (void);

G_END_DECLS

#endif
