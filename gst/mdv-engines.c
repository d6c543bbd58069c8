/* The process's md_vqa engines (mdv-engines.h): elements naming the same
 * files and settings share one engine, loaded once and freed when its last
 * element stops. The table is the plugin's: libmustdrop keeps no global
 * state, and an engine serves many threads by itself (its fair queue). */
#include <stdlib.h>
#include <string.h>

#include "mdv-engines.h"

GST_DEBUG_CATEGORY_EXTERN (mustdrop_vqa_debug);
#define GST_CAT_DEFAULT mustdrop_vqa_debug

/* What makes two elements' engines the same: the engine-name, the files
 * (canonical paths), and what the weights and the contexts are made with.
 * Sampling, the reduction and the answer's length are each stream's own
 * (md_vqa_stream_params), with one limit: with the context's size left to
 * the engine, it was sized for the loading element's max-frames and
 * max-new-tokens, so an element asking for more gets an engine of its own
 * rather than answers over fewer frames. */
typedef struct
{
  gchar *name, *model, *mmproj, *device, *isa;
  gint n_threads, n_ctx, max_frames, max_new_tokens, max_batch;
} MdvEngineKey;

struct _MdvEngine
{
  MdvEngineKey key;
  struct md_vqa *vqa;
  gint users;                   /* atomic: changed under engines_lock */
  GstElement *loader;           /* during the load only: gets its warnings */
  /* under engines_lock: TRUE while the loader loads (outside the lock);
   * then the load's result, which elements that waited for it share */
  gboolean loading;
  int load_rc;
  gchar *load_err;
};

/* The table, and engines_loaded signalled when any load ends. A load runs
 * outside the lock: elements of other engines neither wait for it nor
 * for each other's loads; elements of the same engine wait for it. */
static GMutex engines_lock;
static GCond engines_loaded;
static GList *engines;          /* MdvEngine*, under engines_lock */

static gchar *
canonical (const gchar * path)
{
  char *real = path ? realpath (path, NULL) : NULL;
  gchar *c = g_strdup (real ? real : path ? path : "");
  free (real);
  return c;
}

static void
key_init (MdvEngineKey * k, const gchar * name, const struct md_vqa_params *p)
{
  k->name = g_strdup (name ? name : "");
  k->model = canonical (p->model);
  k->mmproj = canonical (p->mmproj);
  k->device = g_strdup (p->device ? p->device : "auto");
  k->isa = g_strdup (p->isa ? p->isa : "auto");
  k->n_threads = p->n_threads;
  k->n_ctx = p->n_ctx;
  k->max_frames = p->max_frames;
  k->max_new_tokens = p->max_new_tokens;
  k->max_batch = p->max_batch;
}

static void
key_clear (MdvEngineKey * k)
{
  g_free (k->name);
  g_free (k->model);
  g_free (k->mmproj);
  g_free (k->device);
  g_free (k->isa);
}

/* NULL when a and b give the same engine, else the first setting that
 * differs, in words ("threads 2, the shared engine's 4"). */
static gchar *
key_difference (const MdvEngineKey * a, const MdvEngineKey * b)
{
#define DIFF_STR(field, what) \
  if (g_strcmp0 (a->field, b->field)) \
    return g_strdup_printf ("%s \"%s\", the loaded engine's \"%s\"", what, \
        a->field ? a->field : "", b->field ? b->field : "");
#define DIFF_NUM(field, what) \
  if (a->field != b->field) \
    return g_strdup_printf ("%s %g, the loaded engine's %g", what, \
        (double) a->field, (double) b->field);
  DIFF_STR (name, "engine-name");
  DIFF_STR (model, "model");
  DIFF_STR (mmproj, "mmproj");
  DIFF_STR (device, "device");
  DIFF_STR (isa, "isa");
  DIFF_NUM (n_threads, "threads");
  DIFF_NUM (n_ctx, "context-size");
  DIFF_NUM (max_batch, "max-batch");
  /* a context sized by the engine holds what its loader asked for */
  if (!a->n_ctx && a->max_frames > b->max_frames)
    return g_strdup_printf ("max-frames %d, more than the loaded engine's "
        "context was sized for (%d; set context-size to share it)",
        a->max_frames, b->max_frames);
  if (!a->n_ctx && a->max_new_tokens > b->max_new_tokens)
    return g_strdup_printf ("max-new-tokens %d, more than the loaded engine's "
        "context was sized for (%d; set context-size to share it)",
        a->max_new_tokens, b->max_new_tokens);
#undef DIFF_STR
#undef DIFF_NUM
  return NULL;
}

/* The engine's messages: while it loads, as the loading element's (its
 * warnings, a fallback to the CPU, reach the application); later, when any
 * of its elements may be gone, in the debug log only. */
static void
engine_log (enum md_log_level level, const char *text, void *user)
{
  MdvEngine *e = user;
  GstElement *el = e->loader;

  if (el && level == MD_LOG_WARN) {
    GST_ELEMENT_WARNING (el, RESOURCE, SETTINGS, ("%s.", text), (NULL));
    return;
  }
  if (level == MD_LOG_ERROR)
    GST_CAT_ERROR_OBJECT (GST_CAT_DEFAULT, el, "%s", text);
  else if (level == MD_LOG_WARN)
    GST_CAT_WARNING_OBJECT (GST_CAT_DEFAULT, el, "%s", text);
  else if (level == MD_LOG_INFO)
    GST_CAT_INFO_OBJECT (GST_CAT_DEFAULT, el, "%s", text);
  else
    GST_CAT_DEBUG_OBJECT (GST_CAT_DEFAULT, el, "%s", text);
}

/* A loaded engine of the same key, or NULL; when one for the same files
 * differs in a setting, *why says which. */
static MdvEngine *
find_locked (const MdvEngineKey * k, gchar ** why)
{
  for (GList * l = engines; l; l = l->next) {
    MdvEngine *e = l->data;
    gchar *d = key_difference (k, &e->key);
    if (!d)
      return e;
    if (!*why && !g_strcmp0 (k->model, e->key.model) &&
        !g_strcmp0 (k->mmproj, e->key.mmproj))
      *why = d;
    else
      g_free (d);
  }
  return NULL;
}

static void
engine_free (MdvEngine * e)
{
  md_vqa_free (e->vqa);
  key_clear (&e->key);
  g_free (e->load_err);
  g_free (e);
}

/* Wait (holding the table's lock) for e's load; MD_OK, or its error. */
static int
wait_loaded_locked (MdvEngine * e, char *err, size_t errlen)
{
  while (e->loading)
    g_cond_wait (&engines_loaded, &engines_lock);
  if (e->load_rc == MD_OK)
    return MD_OK;
  g_strlcpy (err, e->load_err ? e->load_err : "", errlen);
  return e->load_rc;
}

/* Load e's md_vqa (without the table's lock), then publish the result. */
static int
load (GstElement * element, MdvEngine * e, const struct md_vqa_params *params,
    MdvEngineLoadingFunc loading, char *err, size_t errlen)
{
  struct md_vqa_params p = *params;
  p.log = engine_log;
  p.log_user = e;
  if (loading)
    loading (element);
  struct md_vqa *vqa = NULL;
  int rc = md_vqa_load (&p, &vqa, err, errlen);

  g_mutex_lock (&engines_lock);
  e->loader = NULL;
  e->vqa = vqa;
  e->loading = FALSE;
  e->load_rc = rc;
  if (rc != MD_OK) {
    /* out of the table: the next element to ask tries again; those that
     * waited get this error, and the last of them frees e */
    e->load_err = g_strdup (err);
    engines = g_list_remove (engines, e);
  }
  gboolean last = rc != MD_OK && g_atomic_int_dec_and_test (&e->users);
  g_cond_broadcast (&engines_loaded);
  g_mutex_unlock (&engines_lock);
  if (last)
    engine_free (e);
  return rc;
}

int
mdv_engines_acquire (GstElement * element, const gchar * name,
    const struct md_vqa_params *params, MdvEngineLoadingFunc loading,
    MdvEngine ** out, char *err, size_t errlen)
{
  MdvEngineKey k;
  gchar *why = NULL;

  *out = NULL;
  key_init (&k, name, params);
  g_mutex_lock (&engines_lock);
  MdvEngine *e = find_locked (&k, &why);
  if (e) {
    key_clear (&k);
    g_free (why);
    g_atomic_int_inc (&e->users);
    int rc = wait_loaded_locked (e, err, errlen);
    gboolean last = rc != MD_OK && g_atomic_int_dec_and_test (&e->users);
    g_mutex_unlock (&engines_lock);
    if (last)
      engine_free (e);
    if (rc != MD_OK)
      return rc;
    GST_INFO_OBJECT (element, "sharing the loaded engine of %s (%d elements)",
        e->key.model, g_atomic_int_get (&e->users));
    *out = e;
    return MD_OK;
  }
  if (why)
    GST_INFO_OBJECT (element, "a separate engine for %s: %s", k.model, why);
  g_free (why);

  /* in the table before it loads: an element naming the same engine waits
   * for this load instead of starting its own */
  e = g_new0 (MdvEngine, 1);
  e->key = k;
  e->users = 1;
  e->loader = element;
  e->loading = TRUE;
  engines = g_list_prepend (engines, e);
  g_mutex_unlock (&engines_lock);

  int rc = load (element, e, params, loading, err, errlen);
  *out = rc == MD_OK ? e : NULL;
  return rc;
}

struct md_vqa *
mdv_engine_vqa (const MdvEngine * e)
{
  return e ? e->vqa : NULL;
}

/* An atomic read, without the table's lock (a bus handler may ask). */
guint
mdv_engine_users (const MdvEngine * e)
{
  return e ? (guint) g_atomic_int_get (&e->users) : 0;
}

void
mdv_engines_release (MdvEngine * e)
{
  if (!e)
    return;
  g_mutex_lock (&engines_lock);
  gboolean last = g_atomic_int_dec_and_test (&e->users);
  if (last)
    engines = g_list_remove (engines, e);
  g_mutex_unlock (&engines_lock);
  if (last)
    engine_free (e);
}
