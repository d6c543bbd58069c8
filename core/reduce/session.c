/* The session's life cycle (new, reset, free), what it holds (blocks,
 * visual rows, bytes) and the helpers every stage shares (errors, clock,
 * freeing a block). The stages (encode.c, prefill.c) build on this file;
 * it calls none of them. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llm.h"
#include "session.h"

/* ---- shared by the stages ---------------------------------------------------- */

int md_reduce_fail(struct md_reduce_session *s, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof s->err, fmt, ap);
    va_end(ap);
    return rc;
}

double md_reduce_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

void md_reduce_block_free(struct md_block *b)
{
    free(b->embd);
    free(b->score);
    free(b->key);
    free(b->src);
    memset(b, 0, sizeof *b);
}

/* ---- life cycle ------------------------------------------------------------- */

/* MustDrop prunes at 2/6/10/14 of Vicuna-7B's 32 layers
 * (docs/reduction-methods.md §1.3). Other depths get round(l * n_layer /
 * 32), duplicates dropped, clamped to [0, n_layer - 2] so a later layer
 * always sees the result: 40 layers -> 3/8/13/18, 4 layers (the test
 * fixture) -> 0/1/2. */
static int32_t scale_layers(const struct md_reduce_config *c, int32_t n_layer, int32_t *out)
{
    static const int32_t ref[4] = { 2, 6, 10, 14 };
    int32_t n = 0, max = n_layer - 2;
    if (max < 0)
        return 0;
    for (int32_t i = 0; i < (c->md_n_layers ? c->md_n_layers : 4); i++) {
        int32_t l = c->md_n_layers ? c->md_layers[i]
                                   : (int32_t)lround((double)ref[i] * n_layer / 32.0);
        l = l > max ? max : l;
        if (l < 0 || (n && l <= out[n - 1]) || (c->md_n_layers && c->md_layers[i] >= n_layer))
            continue;
        out[n++] = l;
    }
    return n;
}

static void free_tracking(struct md_reduce_session *s)
{
    for (int32_t l = 0; s->ent && l < s->n_layer; l++) {
        free(s->ent[l]);
        free(s->att_max[l]);
    }
    free(s->ent);
    free(s->att_max);
    s->ent = NULL;
    s->att_max = NULL;
}

static int alloc_tracking(struct md_reduce_session *s)
{
    s->ent = calloc((size_t)s->n_layer, sizeof *s->ent);
    s->att_max = calloc((size_t)s->n_layer, sizeof *s->att_max);
    if (!s->ent || !s->att_max)
        return MD_ERR_NOMEM;
    for (int32_t l = 0; l < s->n_layer; l++) {
        s->ent[l] = malloc(sizeof(int32_t) * (size_t)s->n_ctx);
        s->att_max[l] = calloc((size_t)s->n_ctx, sizeof(float));
        if (!s->ent[l] || !s->att_max[l])
            return MD_ERR_NOMEM;
    }
    s->row_vis = calloc((size_t)s->n_ctx, sizeof(bool));
    s->row_key = calloc((size_t)s->n_ctx, sizeof(bool));
    s->logits = malloc(sizeof(float) * (size_t)s->n_vocab);
    return s->row_vis && s->row_key && s->logits ? MD_OK : MD_ERR_NOMEM;
}

int md_reduce_session_new(struct md_context *ctx, struct md_vision *vis,
                          const struct md_reduce_config *cfg, struct md_reduce_session **out,
                          char *err, size_t errlen)
{
    if (out)
        *out = NULL;
    if (!ctx || !out) {
        if (err && errlen)
            snprintf(err, errlen, "session: no context or no place for the session");
        return MD_ERR_INVALID;
    }
    const struct md_model *m = md_context_model(ctx);
    if (vis && md_vision_n_embd(vis) != md_model_n_embd(m)) {
        if (err)
            snprintf(err, errlen, "session: vision rows have %d values, the LLM wants %d",
                     md_vision_n_embd(vis), md_model_n_embd(m));
        return MD_ERR_INVALID;
    }
    struct md_reduce_session *s = calloc(1, sizeof *s);
    if (!s)
        return MD_ERR_NOMEM;
    s->ctx = ctx;
    s->vis = vis;
    s->cfg = cfg ? *cfg : md_reduce_default_config();
    md_reduce_format(&s->cfg, s->spec, sizeof s->spec);
    s->E = md_model_n_embd(m);
    s->n_layer = md_model_n_layer(m);
    s->n_vocab = md_model_n_vocab(m);
    s->n_ctx = md_context_n_ctx(ctx);
    s->md_n_layers = scale_layers(&s->cfg, s->n_layer, s->md_layers);
    if (alloc_tracking(s)) {
        md_reduce_session_free(s);
        if (err)
            snprintf(err, errlen, "session: out of memory");
        return MD_ERR_NOMEM;
    }
    s->st.n_layer = s->n_layer < MD_REDUCE_MAX_LLM_LAYERS ? s->n_layer : MD_REDUCE_MAX_LLM_LAYERS;
    *out = s;
    return MD_OK;
}

/* The buffers the temporal methods size by the config (stmerge's group of
 * st_frames frames, DyCoke's reference frames): made again on first use. */
static void free_frame_bufs(struct md_reduce_session *s)
{
    free(s->anchor);
    free(s->prev);
    free(s->pending);
    free(s->pending_score);
    s->anchor = s->prev = s->pending = s->pending_score = NULL;
    s->frame_n = 0;
}

int md_reduce_session_configure(struct md_reduce_session *s, const struct md_reduce_config *cfg)
{
    if (!s || !cfg)
        return MD_ERR_INVALID;
    if (s->n_blocks || s->n_frames || s->n_pending || s->clip_frames || s->prefilled)
        return md_reduce_fail(s, MD_ERR_INVALID, "configure: the session holds frames "
                              "(reset it first)");
    char spec[sizeof s->spec];
    md_reduce_format(cfg, spec, sizeof spec);
    if (strcmp(spec, s->spec))   /* stmerge's group size is in the spec */
        free_frame_bufs(s);
    s->cfg = *cfg;
    snprintf(s->spec, sizeof s->spec, "%s", spec);
    s->md_n_layers = scale_layers(&s->cfg, s->n_layer, s->md_layers);
    return MD_OK;
}

static void free_blocks(struct md_reduce_session *s)
{
    for (int32_t i = 0; i < s->n_blocks; i++)
        md_reduce_block_free(&s->blocks[i]);
    s->n_blocks = 0;
}

void md_reduce_session_free(struct md_reduce_session *s)
{
    if (!s)
        return;
    free_blocks(s);
    free(s->blocks);
    free_frame_bufs(s);
    free(s->clip);
    free(s->clip_score);
    free_tracking(s);
    md_reduce_unmark(s);
    free(s->row_vis);
    free(s->row_key);
    free(s->logits);
    free(s);
}

void md_reduce_reset(struct md_reduce_session *s)
{
    if (!s)
        return;
    free_blocks(s);
    s->n_frames = 0;
    s->n_pending = 0;
    s->clip_frames = 0;
    s->prefilled = false;
    md_reduce_unmark(s);
    md_kv_clear(s->ctx);
    int32_t nl = s->st.n_layer;
    memset(&s->st, 0, sizeof s->st);
    s->st.n_layer = nl;
}

const float *md_reduce_logits(const struct md_reduce_session *s)
{
    return s && s->prefilled ? s->logits : NULL;
}

const struct md_reduce_stats *md_reduce_stats(const struct md_reduce_session *s)
{
    return s ? &s->st : NULL;
}

const char *md_reduce_error(const struct md_reduce_session *s)
{
    return s ? s->err : "no session";
}

/* ---- mark and rewind (md_vqa scores continuations from one prefill) ---- */
int md_reduce_mark(struct md_reduce_session *s)
{
    if (!s || !s->prefilled)
        return s ? md_reduce_fail(s, MD_ERR_INVALID, "mark before a successful prefill")
                 : MD_ERR_INVALID;
    md_reduce_unmark(s);
    s->mark_logits = malloc(sizeof(float) * (size_t)s->n_vocab);
    if (!s->mark_logits || md_kv_snapshot_init(&s->mark_kv, s->n_layer)) {
        md_reduce_unmark(s);
        return md_reduce_fail(s, MD_ERR_NOMEM, "mark: out of memory");
    }
    md_kv_snapshot_take(s->ctx->kv, &s->mark_kv);
    memcpy(s->mark_logits, s->logits, sizeof(float) * (size_t)s->n_vocab);
    s->marked = true;
    return MD_OK;
}

int md_reduce_rewind(struct md_reduce_session *s)
{
    if (!s || !s->marked)
        return s ? md_reduce_fail(s, MD_ERR_INVALID, "rewind without a mark") : MD_ERR_INVALID;
    md_kv_snapshot_restore(s->ctx->kv, &s->mark_kv);
    memcpy(s->logits, s->mark_logits, sizeof(float) * (size_t)s->n_vocab);
    return MD_OK;
}

void md_reduce_unmark(struct md_reduce_session *s)
{
    if (!s)
        return;
    md_kv_snapshot_free(&s->mark_kv);
    free(s->mark_logits);
    s->mark_logits = NULL;
    s->marked = false;
}

/* ---- what the session holds ------------------------------------------------ */

int32_t md_reduce_n_visual(const struct md_reduce_session *s)
{
    int32_t n = 0;
    for (int32_t i = 0; s && i < s->n_blocks; i++)
        n += s->blocks[i].n;
    return n;
}

int32_t md_reduce_n_blocks(const struct md_reduce_session *s)
{
    return s ? s->n_blocks : 0;
}

size_t md_reduce_held_bytes(const struct md_reduce_session *s)
{
    if (!s)
        return 0;
    size_t E = (size_t)s->E, b = sizeof(struct md_block) * (size_t)s->cap_blocks;
    for (int32_t i = 0; i < s->n_blocks; i++) {
        const struct md_block *bl = &s->blocks[i];
        size_t n = (size_t)(bl->n > 0 ? bl->n : 1);
        b += n * (sizeof(float) * E + sizeof(bool) + sizeof(int32_t));
        if (bl->score)
            b += n * sizeof(float);
    }
    size_t fn = (size_t)(s->frame_n > 0 ? s->frame_n : 0);
    if (s->anchor)
        b += sizeof(float) * fn * E;
    if (s->prev)
        b += sizeof(float) * fn * E;
    if (s->pending)
        b += sizeof(float) * (size_t)s->cfg.st_frames * fn * (E + 1);
    if (s->clip)
        b += sizeof(float) * (size_t)s->clip_cap * (size_t)s->clip_n * (E + 1);
    return b;
}
