/* The process's md_vqa engines: one per engine-name, files and settings,
 * shared by every mustdropvqa element that names them (mdv-engines.c). */
#ifndef MDV_ENGINES_H
#define MDV_ENGINES_H

#include <gst/gst.h>

#include <mustdrop/mustdrop-vqa.h>

G_BEGIN_DECLS

typedef struct _MdvEngine MdvEngine;

/* Called just before a new engine is loaded (not when one is shared). */
typedef void (*MdvEngineLoadingFunc) (GstElement * element);

/* The engine for params under name (NULL or "": grouped by settings only):
 * a loaded one with the same files and engine settings (mdv-engines.c says
 * which), or one loaded now on the caller's thread, with element getting
 * its load warnings. params' log is replaced. MD_OK with *out, or
 * md_vqa_load's error in err. */
int mdv_engines_acquire (GstElement * element, const gchar * name,
    const struct md_vqa_params *params, MdvEngineLoadingFunc loading,
    MdvEngine ** out, char *err, size_t errlen);
/* One user less; the last frees the engine. */
void mdv_engines_release (MdvEngine * e);
struct md_vqa *mdv_engine_vqa (const MdvEngine * e);
/* Elements using e now. */
guint mdv_engine_users (const MdvEngine * e);

G_END_DECLS

#endif
