/* mustdropvqa: ask a vision-language model questions about video windows. */
#ifndef GST_MUSTDROP_VQA_H
#define GST_MUSTDROP_VQA_H

#include <gst/gst.h>

G_BEGIN_DECLS

#define GST_TYPE_MUSTDROP_VQA (gst_mustdrop_vqa_get_type ())
G_DECLARE_FINAL_TYPE (GstMustdropVqa, gst_mustdrop_vqa, GST, MUSTDROP_VQA,
    GstElement)

GST_ELEMENT_REGISTER_DECLARE (mustdropvqa);

/* How buffers on the text_src pad are timestamped. */
typedef enum
{
  GST_MUSTDROP_TEXT_TIMING_ANSWER = 0,
  GST_MUSTDROP_TEXT_TIMING_WINDOW = 1,
} GstMustdropTextTiming;

#define GST_TYPE_MUSTDROP_TEXT_TIMING (gst_mustdrop_text_timing_get_type ())
GType gst_mustdrop_text_timing_get_type (void);

G_END_DECLS

#endif
