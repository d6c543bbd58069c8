/* The "mustdrop" GStreamer plugin: element mustdropvqa. */
#include "gstmustdropvqa.h"
#include "gstmustdropmeta.h"

#ifndef PACKAGE
#define PACKAGE "gst-mustdrop"
#endif
#ifndef MUSTDROP_PACKAGE_ORIGIN
#define MUSTDROP_PACKAGE_ORIGIN "gst-mustdrop source build"
#endif

static gboolean
plugin_init (GstPlugin * plugin)
{
  /* Register the meta up front so that it exists before the first answer. */
  gst_mustdrop_answer_meta_get_info ();
  gst_mustdrop_answer_custom_meta_register ();
  return GST_ELEMENT_REGISTER (mustdropvqa, plugin);
}

GST_PLUGIN_DEFINE (GST_VERSION_MAJOR, GST_VERSION_MINOR, mustdrop,
    "Ask a vision-language model questions about video (libmustdrop)",
    plugin_init, MUSTDROP_PLUGIN_VERSION, "MIT", PACKAGE,
    MUSTDROP_PACKAGE_ORIGIN)
