/* The windowing policy of mustdropvqa: windows of `window` ns every `step`
 * ns on the PTS grid of the first buffer after a reset, or (window 0) one
 * growing window. Which frames a window takes is libmustdrop's sampling rule
 * (md_vqa_stream_offer with the window's bounds as its span: at most
 * max-frames spread over the window; md_vqa_grid_take for the growing one),
 * so the CLI and the element agree. No pipeline needed:
 * tests/gst/test_windows.c drives it directly. */
#ifndef MDV_WINDOWS_H
#define MDV_WINDOWS_H

#include <gst/gst.h>

#include <mustdrop/mustdrop-vqa.h>

G_BEGIN_DECLS

typedef struct
{
  guint64 index;
  GstClockTime start, end;      /* PTS; end NONE for the growing window */
  struct md_vqa_stream *stream; /* its frames; NULL for the growing window
                                 * (the worker's stream has them) */
  gboolean wants;               /* takes the frame being converted */
  guint64 sampled;              /* growing: frames it took */
} MdvWindow;

typedef struct
{
  GstClockTime window_ns, step_ns;      /* window_ns 0: one growing window */
  GstClockTime origin;          /* PTS where window 0 starts; NONE: unset */
  guint64 next_index;
  GQueue open;                  /* MdvWindow*, oldest first */
  struct md_vqa *vqa;           /* window streams come from it... */
  const struct md_vqa_stream_params *params;    /* ...with these (the element's) */
  struct md_vqa_grid grid;      /* growing: the sampling rule */
} MdvWindows;

/* The engine (NULL until it is loaded) makes the windows' streams with
 * params (which give the sampling rule's rate; they must outlive w's use). */
void mdv_windows_init (MdvWindows * w, struct md_vqa *vqa,
    const struct md_vqa_stream_params *params, GstClockTime window_ns,
    GstClockTime step_ns);
/* Windows up to pts: those ending at or before it go (oldest first) to
 * `closed`, those starting by it open. FALSE when pts is before the origin
 * (timestamps went back without a flush): nothing changed, the caller ends
 * the old windows (mdv_windows_close_all) and resets. */
gboolean mdv_windows_advance (MdvWindows * w, GstClockTime pts, GQueue * closed);
/* The frame at pts is offered to every open window; TRUE when one takes it
 * (its `wants` is set) and the frame should be converted. */
gboolean mdv_windows_offer (MdvWindows * w, GstClockTime pts);
/* The converted frame into the window streams that took it; wants cleared.
 * MD_OK or the first stream's error. */
int mdv_windows_add (MdvWindows * w, const struct md_frame *frame);
/* Whether w has something to answer. */
gboolean mdv_window_has_frames (const MdvWindow * w);
/* Every open window into `out` (end of a stream, or a reset); the origin
 * restarts at the next buffer. */
void mdv_windows_take_all (MdvWindows * w, GQueue * out);
void mdv_window_free (MdvWindow * w);

G_END_DECLS

#endif
