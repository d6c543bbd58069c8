/* Stages (c) and (d): the LLM prefill run layer by layer with MustDrop's
 * dual-attention filter or FastV at chosen layers, MustDrop's KV policy
 * after it, and decode steps that can evict vision KV entries. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm.h"
#include "session.h"
#include "vision-impl.h"

/* ---- reading back what a layer left -------------------------------------- */

/* Keys of cache entries [e0, e0 + n) of layer il as F32 host rows. */
static int read_keys(struct md_context *ctx, int32_t il, int32_t e0, int32_t n, float *out)
{
    const struct md_kv_cache *kv = ctx->kv;
    const struct md_kv_layer *L = &kv->layers[il];
    size_t row = (size_t)kv->n_embd_kv;
    if (kv->type == MD_TYPE_F32)
        return ctx->be->ops->tensor_get(ctx->be, &L->k, sizeof(float) * row * (size_t)e0, out,
                                        sizeof(float) * row * (size_t)n);
    uint16_t *h = malloc(sizeof(uint16_t) * row * (size_t)n);
    if (!h)
        return MD_ERR_NOMEM;
    int rc = ctx->be->ops->tensor_get(ctx->be, &L->k, sizeof(uint16_t) * row * (size_t)e0, h,
                                      sizeof(uint16_t) * row * (size_t)n);
    for (size_t i = 0; !rc && i < row * (size_t)n; i++)
        out[i] = md_half_to_float(h[i]);
    free(h);
    return rc;
}

/* What the layer just run left for one probability block: the query rows
 * q0.. of the batch [n_rows - q0][H*d], every row's lse [H][n_rows], and
 * the cached keys of entries [k0, k0 + n_k) (only the span the block's
 * columns cover is read back: in decode mode this runs every step). */
struct layer_view {
    float *q, *lse, *k;
    int32_t n_rows, q0, k0;
};

static void layer_view_free(struct layer_view *v)
{
    free(v->q);
    free(v->lse);
    free(v->k);
}

/* cols: ascending cache entries the block will read; q [n][H*d] and lse
 * [H][n] (backend tensors of be) are what the layer left for its n rows. */
static int layer_view_read_from(struct md_context *ctx, struct md_backend *be,
                                const struct md_tensor *q, const struct md_tensor *lse, int32_t n,
                                int32_t il, int32_t q0, const int32_t *cols, int32_t n_cols,
                                struct layer_view *v)
{
    const struct md_hparams *hp = &ctx->model->hp;
    int32_t nq_rows = n - q0;
    int32_t k0 = n_cols ? cols[0] : 0, n_k = n_cols ? cols[n_cols - 1] - k0 + 1 : 0;
    size_t nq = (size_t)hp->n_head * hp->head_dim, nk = (size_t)ctx->kv->n_embd_kv;
    v->n_rows = n;
    v->q0 = q0;
    v->k0 = k0;
    v->q = malloc(sizeof(float) * nq * (size_t)(nq_rows > 0 ? nq_rows : 1));
    v->lse = malloc(sizeof(float) * (size_t)hp->n_head * (size_t)n);
    v->k = malloc(sizeof(float) * nk * (size_t)(n_k > 0 ? n_k : 1));
    if (!v->q || !v->lse || !v->k || q0 < 0 || nq_rows <= 0)
        return v->q && v->lse && v->k ? MD_ERR_INVALID : MD_ERR_NOMEM;
    /* q and lse first: reading through be waits for its work, which may
     * have written ctx's keys (a multi-sequence step) */
    int rc = be->ops->tensor_get(be, q, sizeof(float) * nq * (size_t)q0, v->q,
                                 sizeof(float) * nq * (size_t)nq_rows);
    if (!rc)
        rc = be->ops->tensor_get(be, lse, 0, v->lse, sizeof(float) * (size_t)hp->n_head * (size_t)n);
    if (!rc && n_k > 0)
        rc = read_keys(ctx, il, k0, n_k, v->k);
    return rc;
}

/* The same for the rows of ctx's own last md_llm_layer. */
static int layer_view_read(struct md_context *ctx, int32_t il, int32_t q0, const int32_t *cols,
                           int32_t n_cols, struct layer_view *v)
{
    struct md_tensor q = md_llm_q(ctx), lse = md_llm_lse(ctx);
    return layer_view_read_from(ctx, ctx->be, &q, &lse, md_llm_n_rows(ctx), il, q0, cols, n_cols, v);
}

/* Probabilities [n_q][n_cols] of the view's query rows over cache entries
 * cols[] of the layer just run, mean over heads (docs/reduction-methods.md
 * §5.1). */
static int probs_block(struct md_context *ctx, const struct layer_view *v, int32_t n_q,
                       const int32_t *cols, int32_t n_cols, float *out)
{
    const struct md_hparams *hp = &ctx->model->hp;
    size_t nk = (size_t)ctx->kv->n_embd_kv;
    float *kg = malloc(sizeof(float) * nk * (size_t)(n_cols > 0 ? n_cols : 1));
    if (!kg)
        return MD_ERR_NOMEM;
    for (int32_t j = 0; j < n_cols; j++)
        memcpy(kg + (size_t)j * nk, v->k + (size_t)(cols[j] - v->k0) * nk, sizeof(float) * nk);
    struct md_attn_block b = {
        .q = v->q, .q_stride = hp->n_head * hp->head_dim,
        .k = kg, .k_stride = (int64_t)nk, .lse = v->lse + v->q0, .lse_stride = v->n_rows,
        .n_q = n_q, .n_k = n_cols, .n_head = hp->n_head, .n_head_kv = hp->n_head_kv,
        .head_dim = hp->head_dim, .scale = 1.0f / sqrtf((float)hp->head_dim),
    };
    md_reduce_attn_probs(&b, out);
    free(kg);
    return MD_OK;
}

/* ---- prefill ------------------------------------------------------------------ */

struct prefill {
    int32_t *orig;      /* [n] prompt row of each row in flight */
    int32_t n;          /* rows in flight */
    int32_t *keep;      /* scratch [n] */
    int32_t *vis;       /* scratch: in-flight indices of vision rows */
    float *M;           /* scratch probabilities */
};

static int32_t vision_rows(const struct md_reduce_session *s, const struct prefill *p, int32_t *vis,
                           int32_t *last)
{
    int32_t nv = 0;
    *last = -1;
    for (int32_t i = 0; i < p->n; i++)
        if (s->row_vis[p->orig[i]]) {
            vis[nv++] = i;
            *last = i;
        }
    return nv;
}

/* Rows kept = every non-vision row + the kept vision rows (kv[] indexes
 * vis[]), ascending; then the hidden state is shortened. */
static int keep_vision(struct md_reduce_session *s, struct prefill *p, const int32_t *vis,
                       int32_t nv, const int32_t *kept, int32_t nk)
{
    bool *drop = calloc((size_t)p->n, sizeof(bool));
    if (!drop)
        return MD_ERR_NOMEM;
    for (int32_t j = 0; j < nv; j++)
        drop[vis[j]] = true;
    for (int32_t j = 0; j < nk; j++)
        drop[vis[kept[j]]] = false;
    int32_t m = 0;
    for (int32_t i = 0; i < p->n; i++)
        if (!drop[i]) {
            p->keep[m] = i;
            p->orig[m++] = p->orig[i];
        }
    free(drop);
    if (m == p->n)
        return MD_OK;
    p->n = m;
    int rc = md_llm_keep_rows(s->ctx, p->keep, m);
    return rc;
}

/* MustDrop B at a pruning layer: text rows (after the last vision row) x
 * vision columns, dual filter, key tokens kept (docs/reduction-methods.md
 * §1.3). */
static int mustdrop_filter(struct md_reduce_session *s, struct prefill *p, int32_t il)
{
    int32_t last, nv = vision_rows(s, p, p->vis, &last);
    int32_t nt = p->n - last - 1;
    if (nv == 0 || nt <= 0)
        return MD_OK;
    struct layer_view v = { 0 };
    float *M = malloc(sizeof(float) * (size_t)nt * (size_t)nv);
    bool *key = malloc(sizeof(bool) * (size_t)nv);
    int32_t *kept = malloc(sizeof(int32_t) * (size_t)nv);
    int32_t e0 = s->ctx->kv->layers[il].n - p->n;   /* this batch's first entry */
    int32_t *cols = malloc(sizeof(int32_t) * (size_t)nv);
    int rc = M && key && kept && cols ? MD_OK : MD_ERR_NOMEM;
    for (int32_t j = 0; !rc && j < nv; j++) {
        cols[j] = e0 + p->vis[j];
        key[j] = s->row_key[p->orig[p->vis[j]]];
    }
    if (!rc)
        rc = layer_view_read(s->ctx, il, last + 1, cols, nv, &v);
    if (!rc)
        rc = probs_block(s->ctx, &v, nt, cols, nv, M);
    if (!rc) {
        int32_t nk = md_reduce_dual_filter(M, nt, nv, s->cfg.md_tau_g, s->cfg.md_tau_i, key, kept);
        rc = keep_vision(s, p, p->vis, nv, kept, nk);
    }
    layer_view_free(&v);
    free(M);
    free(key);
    free(kept);
    free(cols);
    return rc;
}

/* FastV after layer K-1: the last row's attention over the vision rows,
 * mean over heads; keep round(n * (1 - R)) (docs/reduction-methods.md §4). */
static int fastv_filter(struct md_reduce_session *s, struct prefill *p, int32_t il)
{
    int32_t last, nv = vision_rows(s, p, p->vis, &last);
    if (nv == 0)
        return MD_OK;
    struct layer_view v = { 0 };
    float *a = malloc(sizeof(float) * (size_t)nv);
    int32_t *cols = malloc(sizeof(int32_t) * (size_t)nv), *kept = malloc(sizeof(int32_t) * (size_t)nv);
    int32_t e0 = s->ctx->kv->layers[il].n - p->n;
    int rc = a && cols && kept ? MD_OK : MD_ERR_NOMEM;
    for (int32_t j = 0; !rc && j < nv; j++)
        cols[j] = e0 + p->vis[j];
    if (!rc)
        rc = layer_view_read(s->ctx, il, p->n - 1, cols, nv, &v);
    if (!rc)
        rc = probs_block(s->ctx, &v, 1, cols, nv, a);
    if (!rc) {
        int32_t k = (int32_t)lround((double)nv * (1.0 - s->cfg.fastv_r));
        md_reduce_topk(a, nv, k, kept);
        rc = keep_vision(s, p, p->vis, nv, kept, k < 0 ? 0 : k > nv ? nv : k);
    }
    layer_view_free(&v);
    free(a);
    free(cols);
    free(kept);
    return rc;
}

static bool is_md_layer(const struct md_reduce_session *s, int32_t il)
{
    for (int32_t i = 0; i < s->md_n_layers; i++)
        if (s->md_layers[i] == il)
            return true;
    return false;
}

static int32_t count_vis(const struct md_reduce_session *s, const struct prefill *p)
{
    int32_t c = 0;
    for (int32_t i = 0; i < p->n; i++)
        c += s->row_vis[p->orig[i]];
    return c;
}

/* MustDrop C, faithful: every layer from the first pruning layer on keeps
 * exactly the final rows (docs/reduction-methods.md §1.4); the layers
 * before it stay whole. Positions stay as rotated; decode uses each
 * layer's own length (MD_KV_POS_LAYER_LEN, set before the prefill). */
static int compact_faithful(struct md_reduce_session *s, const struct prefill *p)
{
    if (s->md_n_layers == 0)
        return MD_OK;
    bool *final = calloc((size_t)s->n_rows_prompt, sizeof(bool));
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)s->n_ctx);
    int rc = final && idx ? MD_OK : MD_ERR_NOMEM;
    for (int32_t i = 0; !rc && i < p->n; i++)
        final[p->orig[i]] = true;
    struct md_kv_cache *kv = md_context_kv(s->ctx);
    for (int32_t l = s->md_layers[0]; !rc && l < s->n_layer; l++) {
        int32_t len = md_kv_cache_len(kv, l), m = 0;
        for (int32_t i = 0; i < len; i++)
            if (final[s->ent[l][i]]) {
                idx[m] = i;
                s->ent[l][m++] = s->ent[l][i];
            }
        if (m < len)
            rc = md_kv_cache_keep(kv, l, idx, m);
    }
    free(final);
    free(idx);
    return rc;
}

static void prefill_stats(struct md_reduce_session *s, const int32_t *rows_in)
{
    struct md_llm_dims d = md_reduce_llm_dims(&s->ctx->model->hp);
    double fl = md_reduce_flops_logits(&d);   /* the last row */
    double sum = 0;
    for (int32_t l = 0; l < s->st.n_layer; l++) {
        fl += md_reduce_flops_llm_layer(&d, rows_in[l], 0);
        sum += s->st.vis_per_layer[l];
    }
    s->st.flops_prefill = fl;
    s->st.vis_layer_avg = s->st.n_layer ? sum / s->st.n_layer : 0;
    s->st.vis_layer_avg_per_part = s->st.vis_layer_avg / (s->st.n_parts > 0 ? s->st.n_parts : 1);
    s->st.vis_final = s->st.n_layer ? s->st.vis_per_layer[s->st.n_layer - 1] : 0;
    s->st.kv_bytes_prefill = md_kv_cache_bytes(md_context_kv(s->ctx));
    int32_t last = s->n_layer - 1, c = 0;
    for (int32_t i = 0; last >= 0 && i < md_kv_cache_len(md_context_kv(s->ctx), last); i++)
        c += s->ent[last][i] >= 0 && s->row_vis[s->ent[last][i]];
    s->st.vis_kv_after_decode = c;
    s->st.kv_bytes_decode = s->st.kv_bytes_prefill;
}

/* Whether a stage-(c) hook reads every row of layer il once it has run. */
static bool reads_layer(const struct md_reduce_session *s, int32_t il)
{
    return (has(s, MD_REDUCE_MUSTDROP) && is_md_layer(s, il)) ||
           (has(s, MD_REDUCE_FASTV) && il == s->cfg.fastv_k - 1);
}

/* Every layer, with the stage-(c) hooks between them. */
static int run_layers(struct md_reduce_session *s, struct prefill *p, int32_t *rows_in)
{
    int rc = MD_OK;
    struct md_kv_cache *kv = md_context_kv(s->ctx);
    for (int32_t il = 0; il < s->n_layer && !rc; il++) {
        if (il < MD_REDUCE_MAX_LLM_LAYERS)
            rows_in[il] = p->n;
        int32_t e0 = md_kv_cache_len(kv, il);
        if (il == s->n_layer - 1 && !reads_layer(s, il))
            md_llm_want_last(s->ctx, 1);   /* as md_decode_batch: only the last row's logits */
        rc = md_llm_layer(s->ctx, il);
        for (int32_t i = 0; !rc && i < p->n; i++)
            s->ent[il][e0 + i] = p->orig[i];
        if (!rc && has(s, MD_REDUCE_MUSTDROP) && is_md_layer(s, il))
            rc = mustdrop_filter(s, p, il);
        if (!rc && has(s, MD_REDUCE_FASTV) && il == s->cfg.fastv_k - 1)
            rc = fastv_filter(s, p, il);
        if (il < MD_REDUCE_MAX_LLM_LAYERS)
            s->st.vis_per_layer[il] = count_vis(s, p);
    }
    return rc;
}

/* Without a stage-(c) method nothing needs the whole prompt at once: it goes
 * through in chunks of n_batch rows, as md_decode_batch would, with the
 * per-layer counts summed over the chunks. */
static int run_chunks(struct md_reduce_session *s, const struct md_batch *b, struct prefill *p,
                      int32_t *rows_in)
{
    int32_t nb = md_context_n_batch(s->ctx), n_vis[MD_REDUCE_MAX_LLM_LAYERS] = { 0 };
    int rc = MD_OK;
    for (int32_t row0 = 0; row0 < b->n && !rc; row0 += nb) {
        p->n = b->n - row0 < nb ? b->n - row0 : nb;
        for (int32_t i = 0; i < p->n; i++)
            p->orig[i] = row0 + i;
        rc = md_llm_begin(s->ctx, b, row0, p->n);
        if (!rc)
            rc = run_layers(s, p, rows_in);
        for (int32_t l = 0; !rc && l < s->st.n_layer; l++)
            n_vis[l] += s->st.vis_per_layer[l];
        if (!rc)
            rc = md_llm_end(s->ctx, false, row0 + p->n == b->n ? s->logits : NULL);
    }
    for (int32_t l = 0; l < s->st.n_layer; l++) {
        rows_in[l] = b->n;
        s->st.vis_per_layer[l] = n_vis[l];
    }
    p->n = b->n;
    return rc;
}

static void set_policies(struct md_reduce_session *s)
{
    bool faithful = has(s, MD_REDUCE_MUSTDROP) && s->cfg.md_kv == MD_REDUCE_KV_FAITHFUL;
    md_kv_cache_set_pos_policy(md_context_kv(s->ctx), -1,
                               faithful ? MD_KV_POS_LAYER_LEN : MD_KV_POS_SEQUENCE);
}

int md_reduce_prefill_batch(struct md_reduce_session *s, const struct md_batch *b, const bool *key)
{
    if (!s)
        return MD_ERR_INVALID;
    if (!b || !b->tokens || b->n <= 0)
        return md_reduce_fail(s, MD_ERR_INVALID, "prefill: empty batch or no token ids");
    bool chunked = !(md_reduce_stages(&s->cfg) & MD_STAGE_PREFILL);
    if (b->n > s->n_ctx)
        return md_reduce_fail(s, MD_ERR_CONTEXT_FULL,
                              "prefill: the prompt is %d rows and the context holds %d", b->n,
                              s->n_ctx);
    /* layer-wise pruning sees the whole prompt in one pass */
    if (!chunked && md_context_reserve_batch(s->ctx, b->n) != MD_OK)
        return md_reduce_fail(s, MD_ERR_NOMEM, "prefill: %d prompt rows in one pass (layer-wise "
                              "pruning): %s", b->n, md_context_error(s->ctx));
    double t0 = md_reduce_now_ms();
    s->prefilled = false;
    md_reduce_unmark(s);
    md_kv_clear(s->ctx);
    set_policies(s);
    s->n_rows_prompt = b->n;
    int32_t nv = 0;
    for (int32_t i = 0; i < b->n; i++) {
        s->row_vis[i] = b->tokens[i] == MD_TOKEN_EMBD;
        s->row_key[i] = s->row_vis[i] && key && key[nv];
        nv += s->row_vis[i];
    }
    struct prefill p = { 0 };
    p.n = b->n;
    p.orig = malloc(sizeof(int32_t) * (size_t)b->n);
    p.keep = malloc(sizeof(int32_t) * (size_t)b->n);
    p.vis = malloc(sizeof(int32_t) * (size_t)b->n);
    int32_t *rows_in = calloc(MD_REDUCE_MAX_LLM_LAYERS, sizeof(int32_t));
    int rc = p.orig && p.keep && p.vis && rows_in ? MD_OK : MD_ERR_NOMEM;
    for (int32_t i = 0; !rc && i < b->n; i++)
        p.orig[i] = i;
    if (!rc && chunked) {
        rc = run_chunks(s, b, &p, rows_in);
    } else if (!rc) {
        rc = md_llm_begin(s->ctx, b, 0, b->n);
        if (!rc)
            rc = run_layers(s, &p, rows_in);
        if (!rc)
            rc = md_llm_end(s->ctx, false, s->logits);
    }
    if (!rc && has(s, MD_REDUCE_MUSTDROP) && s->cfg.md_kv == MD_REDUCE_KV_FAITHFUL)
        rc = compact_faithful(s, &p);
    s->ctx->n_rows = 0;
    if (!rc) {
        s->st.vis_after_select = nv;
        s->st.n_prompt = b->n;
        s->st.n_generated = 0;
        s->st.flops_decode = 0;
        s->since_evict = 0;
        prefill_stats(s, rows_in);
        s->prefilled = true;
    } else {
        md_kv_clear(s->ctx);
    }
    free(p.orig);
    free(p.keep);
    free(p.vis);
    free(rows_in);
    s->st.ms_prefill = md_reduce_now_ms() - t0;
    if (rc && !s->err[0])
        md_reduce_fail(s, rc, "prefill failed: %s", md_context_error(s->ctx));
    return rc;
}

/* The prompt's blocks: one <image> block per block held, except that a
 * OneVision model gets each run of video frames as one <video> block (the
 * frames' rows, then its image_newline row, which is marked key so it is
 * never dropped), as md_vision_encode_video builds it. */
struct prompt_parts {
    float *embd;
    bool *key;
    int32_t *rel;       /* [n_rows] offset of each row in its prompt block's unreduced rows */
    int32_t *rows;      /* [n_blocks] rows kept */
    int32_t *span;      /* [n_blocks] rows the unreduced model gives the block */
    enum md_vision_block *kinds;
    int32_t n_blocks, n_rows;
};

static void parts_free(struct prompt_parts *p)
{
    free(p->embd);
    free(p->key);
    free(p->rel);
    free(p->rows);
    free(p->span);
    free(p->kinds);
}

static int newline_row(const struct md_reduce_session *s, float *out)
{
    const struct md_vision *v = s->vis;
    if (!v || !md_tensor_present(&v->newline))
        return MD_ERR_UNSUPPORTED;
    return v->be->ops->tensor_get(v->be, &v->newline, 0, out, sizeof(float) * (size_t)s->E);
}

/* sel: NULL, or per block the rows to use (sel[i] NULL: all), n_sel[i] of them. */
static int build_parts(const struct md_reduce_session *s, int32_t *const *sel,
                       const int32_t *n_sel, struct prompt_parts *p)
{
    bool video = s->vis && md_vision_video_is_block(s->vis);
    int32_t cap = md_reduce_n_visual(s) + s->n_blocks;
    memset(p, 0, sizeof *p);
    p->embd = malloc(sizeof(float) * (size_t)cap * (size_t)s->E);
    p->key = malloc(sizeof(bool) * (size_t)cap);
    p->rel = malloc(sizeof(int32_t) * (size_t)cap);
    p->rows = calloc((size_t)s->n_blocks, sizeof(int32_t));
    p->span = calloc((size_t)s->n_blocks, sizeof(int32_t));
    p->kinds = calloc((size_t)s->n_blocks, sizeof *p->kinds);
    if (!p->embd || !p->key || !p->rel || !p->rows || !p->span || !p->kinds)
        return MD_ERR_NOMEM;
    for (int32_t i = 0; i < s->n_blocks; i++) {
        const struct md_block *bl = &s->blocks[i];
        bool in_video = video && bl->frame;
        if (!in_video || i == 0 || !s->blocks[i - 1].frame)
            p->kinds[p->n_blocks++] = in_video ? MD_VISION_BLOCK_VIDEO : MD_VISION_BLOCK_IMAGE;
        const int32_t *use = sel ? sel[i] : NULL;
        int32_t m = use ? n_sel[i] : bl->n;
        for (int32_t k = 0; k < m; k++) {
            int32_t j = use ? use[k] : k;
            memcpy(p->embd + (size_t)(p->n_rows + k) * s->E, bl->embd + (size_t)j * s->E,
                   sizeof(float) * (size_t)s->E);
            p->key[p->n_rows + k] = bl->key[j];
            p->rel[p->n_rows + k] = p->span[p->n_blocks - 1] + (bl->src ? bl->src[j] : j);
        }
        int32_t *span = &p->span[p->n_blocks - 1];
        *span += bl->n_orig > bl->n ? bl->n_orig : bl->n;
        p->n_rows += m;
        p->rows[p->n_blocks - 1] += m;
        bool last_frame = in_video && (i + 1 == s->n_blocks || !s->blocks[i + 1].frame);
        if (last_frame && !newline_row(s, p->embd + (size_t)p->n_rows * s->E)) {
            p->rel[p->n_rows] = (*span)++;
            p->key[p->n_rows++] = true;
            p->rows[p->n_blocks - 1]++;
        }
    }
    return MD_OK;
}

/* pos=keep: text rows count on from the end of the unreduced span before
 * them; a block's visual rows sit at the block's start + their offset in
 * its unreduced rows (rows of one block are contiguous in the prompt). */
static void keep_positions(const struct md_batch *b, const struct prompt_parts *pp, int32_t *pos)
{
    int32_t cur = 0, blk = -1, left = 0, base = 0, v = 0;
    for (int32_t i = 0; i < b->n; i++) {
        if (b->tokens[i] != MD_TOKEN_EMBD || (left == 0 && blk + 1 >= pp->n_blocks)) {
            pos[i] = cur++;
            continue;
        }
        if (left == 0) {
            base = cur;
            left = pp->rows[++blk];
        }
        pos[i] = base + pp->rel[v++];
        if (--left == 0)
            cur = base + pp->span[blk];
    }
}

static int prefill_parts(struct md_reduce_session *s, const struct md_batch *b,
                         const struct prompt_parts *pp)
{
    if (s->cfg.pos != MD_REDUCE_POS_KEEP || !b->tokens)
        return md_reduce_prefill_batch(s, b, pp->key);
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)b->n);
    if (!pos)
        return md_reduce_fail(s, MD_ERR_NOMEM, "prefill: out of memory");
    keep_positions(b, pp, pos);
    struct md_batch kb = *b;
    kb.pos = pos;
    int rc = md_reduce_prefill_batch(s, &kb, pp->key);
    free(pos);
    return rc;
}

/* The mean LLM input embedding of the question's tokens (CDPruner's
 * instruction; its CLIP text tower has no counterpart here). Runs only the
 * embedding lookup of md_llm_begin. Returns 1 when the question has no
 * tokens. */
static int question_embedding(struct md_reduce_session *s, const char *question, float *q)
{
    const struct md_vocab *voc = md_model_vocab(md_context_model(s->ctx));
    size_t len = question ? strlen(question) : 0;
    int32_t cap = md_context_n_batch(s->ctx);
    int32_t *toks = malloc(sizeof(int32_t) * (len + 16));
    if (!toks)
        return MD_ERR_NOMEM;
    int64_t n = voc && len ? md_tokenize(voc, question, len, false, false, toks,
                                         (int64_t)len + 16) : 0;
    n = n > cap ? cap : n;
    float *x = n > 0 ? malloc(sizeof(float) * (size_t)n * (size_t)s->E) : NULL;
    int rc = n <= 0 ? 1 : x ? MD_OK : MD_ERR_NOMEM;
    struct md_batch b = { .n = (int32_t)n, .tokens = toks };
    if (!rc)
        rc = md_llm_begin(s->ctx, &b, 0, (int32_t)n);
    if (!rc)
        rc = s->ctx->be->ops->tensor_get(s->ctx->be, &s->ctx->x, 0, x,
                                         sizeof(float) * (size_t)n * (size_t)s->E);
    s->ctx->n_rows = 0;
    for (int32_t d = 0; !rc && d < s->E; d++) {
        double acc = 0.0;
        for (int64_t i = 0; i < n; i++)
            acc += x[(size_t)i * s->E + d];
        q[d] = (float)(acc / (double)n);
    }
    free(x);
    free(toks);
    return rc;
}

/* CDPruner per block: relevance to the question min-max normalised over
 * every block of the request, then the DPP's k rows (ascending). */
static int cdpruner_select(struct md_reduce_session *s, const char *question, int32_t **sel,
                           int32_t *n_sel)
{
    int32_t total = md_reduce_n_visual(s), E = s->E, max_n = 1;
    float *q = malloc(sizeof(float) * (size_t)E), *all = malloc(sizeof(float) * (size_t)total * E);
    float *rel = malloc(sizeof(float) * (size_t)total);
    int rc = q && all && rel ? MD_OK : MD_ERR_NOMEM;
    for (int32_t i = 0, o = 0; !rc && i < s->n_blocks; o += s->blocks[i++].n) {
        memcpy(all + (size_t)o * E, s->blocks[i].embd, sizeof(float) * (size_t)s->blocks[i].n * E);
        max_n = s->blocks[i].n > max_n ? s->blocks[i].n : max_n;
    }
    int qrc = rc ? rc : question_embedding(s, question, q);
    if (qrc == 1) {   /* no instruction: all equally relevant, diversity alone */
        for (int32_t i = 0; i < total; i++)
            rel[i] = 1.0f;
    } else if (!(rc = qrc)) {
        md_reduce_cdpruner_relevance(all, total, E, q, rel);
    }
    float *L = rc ? NULL : malloc(sizeof(float) * (size_t)max_n * (size_t)max_n);
    rc = rc ? rc : L ? MD_OK : MD_ERR_NOMEM;
    for (int32_t i = 0, o = 0; !rc && i < s->n_blocks; o += s->blocks[i++].n) {
        /* a temporal method's fixed leading rows pass; the DPP picks from the rest */
        int32_t nf = s->blocks[i].n_fixed, n = s->blocks[i].n - nf;
        int32_t k = s->cfg.cd_tokens > 0 ? s->cfg.cd_tokens : (int32_t)lround(s->cfg.cd_keep * n);
        k = k < 1 ? 1 : k > n ? n : k;
        sel[i] = malloc(sizeof(int32_t) * (size_t)(nf + n > 0 ? nf + n : 1));
        if (!sel[i]) {
            rc = MD_ERR_NOMEM;
            break;
        }
        for (int32_t j = 0; j < nf; j++)
            sel[i][j] = j;
        md_reduce_cdpruner_kernel(all + (size_t)(o + nf) * E, rel + o + nf, n, E, L);
        int32_t got = n > 0 ? md_reduce_dpp_greedy(L, n, k, sel[i] + nf) : 0;
        for (int32_t j = 0; j < got; j++)
            sel[i][nf + j] += nf;
        n_sel[i] = got < 0 ? -1 : nf + got;
        rc = got < 0 ? MD_ERR_NOMEM : MD_OK;
    }
    free(L);
    free(q);
    free(all);
    free(rel);
    return rc;
}

int md_reduce_prefill(struct md_reduce_session *s, const char *tmpl, const char *system,
                      const char *question)
{
    if (!s)
        return MD_ERR_INVALID;
    s->err[0] = '\0';
    int rc = md_reduce_flush_pending(s);
    if (rc)
        return md_reduce_fail(s, rc, "prefill: reducing the frames held failed (out of memory)");
    rc = md_reduce_apply_cap(s);
    if (rc)
        return md_reduce_fail(s, rc, "prefill: applying the cap failed");
    if (s->n_blocks == 0)
        return md_reduce_fail(s, MD_ERR_INVALID, "prefill: no image or frame was added");
    struct prompt_parts pp;
    memset(&pp, 0, sizeof pp);
    int32_t **sel = NULL, *n_sel = NULL;
    if (has(s, MD_REDUCE_CDPRUNER)) {
        double t0 = md_reduce_now_ms();
        sel = calloc((size_t)s->n_blocks, sizeof *sel);
        n_sel = calloc((size_t)s->n_blocks, sizeof *n_sel);
        rc = sel && n_sel ? cdpruner_select(s, question, sel, n_sel) : MD_ERR_NOMEM;
        s->st.ms_select += md_reduce_now_ms() - t0;
    }
    rc = rc ? rc : build_parts(s, sel, n_sel, &pp);
    for (int32_t i = 0; sel && i < s->n_blocks; i++)
        free(sel[i]);
    free(sel);
    free(n_sel);
    if (rc) {
        parts_free(&pp);
        return md_reduce_fail(s, rc, "prefill: %s", rc == MD_ERR_NOMEM ? "out of memory"
                              : md_context_error(s->ctx));
    }
    struct md_vision_prompt pr;
    char err[256] = "";
    rc = md_vision_prompt_build_multi(md_context_model(s->ctx), tmpl, system,
                                      question ? question : "", pp.embd, pp.rows, pp.kinds,
                                      pp.n_blocks, s->E, &pr, err, sizeof err);
    if (!rc) {
        rc = prefill_parts(s, &pr.batch, &pp);
        md_vision_prompt_free(&pr);
    } else {
        md_reduce_fail(s, rc, "prefill: prompt: %s", err);
    }
    parts_free(&pp);
    return rc;
}

/* ---- decode ------------------------------------------------------------------- */

/* Where a decode row's query and log-sum-exps are: the session's own
 * context after md_llm_layer, or a row of a multi-sequence step's lead. */
struct decode_row {
    struct md_backend *be;
    struct md_tensor q, lse;
};

static struct decode_row own_row(struct md_context *ctx)
{
    struct decode_row r = { ctx->be, md_llm_q(ctx), md_llm_lse(ctx) };
    return r;
}

/* MustDrop C, decode mode: track the largest attention each vision entry
 * receives from the generated tokens (mean over heads) in layers from the
 * first pruning layer on. */
static int track_attention(struct md_reduce_session *s, int32_t il, const struct decode_row *row)
{
    struct md_kv_cache *kv = md_context_kv(s->ctx);
    int32_t len = md_kv_cache_len(kv, il), nv = 0;
    int32_t *cols = malloc(sizeof(int32_t) * (size_t)len);
    float *a = malloc(sizeof(float) * (size_t)len);
    struct layer_view v = { 0 };
    int rc = cols && a ? MD_OK : MD_ERR_NOMEM;
    for (int32_t i = 0; !rc && i < len; i++)
        if (s->ent[il][i] >= 0 && s->row_vis[s->ent[il][i]])
            cols[nv++] = i;
    if (!rc && nv == 0) {   /* nothing left to track in this layer */
        free(cols);
        free(a);
        return MD_OK;
    }
    if (!rc)
        rc = layer_view_read_from(s->ctx, row->be, &row->q, &row->lse, 1, il, 0, cols, nv, &v);
    if (!rc)
        rc = probs_block(s->ctx, &v, 1, cols, nv, a);
    for (int32_t j = 0; !rc && j < nv; j++)
        if (a[j] > s->att_max[il][cols[j]])
            s->att_max[il][cols[j]] = a[j];
    layer_view_free(&v);
    free(cols);
    free(a);
    return rc;
}

/* Evict, per layer, the non-key vision entries whose attention stayed
 * below the threshold since the last check; reset the trackers. */
static int evict(struct md_reduce_session *s)
{
    struct md_kv_cache *kv = md_context_kv(s->ctx);
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)s->n_ctx);
    if (!idx)
        return MD_ERR_NOMEM;
    int rc = MD_OK;
    for (int32_t l = s->md_n_layers ? s->md_layers[0] : 0; l < s->n_layer && !rc; l++) {
        int32_t len = md_kv_cache_len(kv, l), m = 0;
        for (int32_t i = 0; i < len; i++) {
            int32_t r = s->ent[l][i];
            bool vis = r >= 0 && s->row_vis[r] && !s->row_key[r];
            if (vis && s->att_max[l][i] < s->cfg.md_evict_thresh)
                continue;
            idx[m] = i;
            s->ent[l][m] = r;
            s->att_max[l][m++] = 0.0f;
        }
        if (m < len)
            rc = md_kv_cache_keep(kv, l, idx, m);
    }
    free(idx);
    return rc;
}

static bool evicting(const struct md_reduce_session *s)
{
    return has(s, MD_REDUCE_MUSTDROP) && s->cfg.md_kv == MD_REDUCE_KV_DECODE && !s->marked;
}

/* Whether layer il's decode row feeds the eviction tracker. */
static bool tracking(const struct md_reduce_session *s, int32_t il)
{
    return evicting(s) && il >= (s->md_n_layers ? s->md_layers[0] : 0);
}

/* Bookkeeping for the entry layer il just appended at e0 (the generated
 * token), then the tracker when it runs. */
static int after_layer(struct md_reduce_session *s, int32_t il, int32_t e0, const struct decode_row *row)
{
    struct md_llm_dims d = md_reduce_llm_dims(&s->ctx->model->hp);
    s->ent[il][e0] = -1;
    s->att_max[il][e0] = 0.0f;
    s->st.flops_decode += md_reduce_flops_llm_decode(&d, e0 + 1);
    return tracking(s, il) ? track_attention(s, il, row) : MD_OK;
}

static int decode_layers(struct md_reduce_session *s)
{
    struct md_kv_cache *kv = md_context_kv(s->ctx);
    int rc = MD_OK;
    for (int32_t il = 0; il < s->n_layer && !rc; il++) {
        int32_t e0 = md_kv_cache_len(kv, il);
        if (il == s->n_layer - 1 && !reads_layer(s, il))
            md_llm_want_last(s->ctx, 1);   /* as md_decode_batch: only the last row's logits */
        rc = md_llm_layer(s->ctx, il);
        if (!rc) {
            struct decode_row row = own_row(s->ctx);
            rc = after_layer(s, il, e0, &row);
        }
    }
    return rc;
}

/* After a decoded token: stats, and eviction when it is due. */
static int decode_done(struct md_reduce_session *s, double t0)
{
    struct md_llm_dims d = md_reduce_llm_dims(&s->ctx->model->hp);
    s->st.flops_decode += md_reduce_flops_logits(&d);
    s->st.n_generated++;
    int rc = MD_OK;
    if (evicting(s) && ++s->since_evict >= s->cfg.md_evict_every) {
        s->since_evict = 0;
        rc = evict(s);
    }
    struct md_kv_cache *kv = md_context_kv(s->ctx);
    int32_t last = s->n_layer - 1, c = 0;
    for (int32_t i = 0; i < md_kv_cache_len(kv, last); i++)
        c += s->ent[last][i] >= 0 && s->row_vis[s->ent[last][i]];
    s->st.vis_kv_after_decode = c;
    s->st.kv_bytes_decode = md_kv_cache_bytes(kv);
    s->st.ms_decode += md_reduce_now_ms() - t0;
    return rc ? md_reduce_fail(s, rc, "decode: eviction failed") : MD_OK;
}

int md_reduce_decode(struct md_reduce_session *s, int32_t token)
{
    if (!s)
        return MD_ERR_INVALID;
    if (!s->prefilled)
        return md_reduce_fail(s, MD_ERR_INVALID, "decode before a successful prefill");
    double t0 = md_reduce_now_ms();
    struct md_batch b = { .n = 1, .tokens = &token };
    md_kv_snapshot_take(s->ctx->kv, &s->ctx->snap);
    int rc = md_llm_begin(s->ctx, &b, 0, 1);
    if (!rc)
        rc = decode_layers(s);
    if (!rc)
        rc = md_llm_end(s->ctx, false, s->logits);
    s->ctx->n_rows = 0;
    if (rc) {
        md_kv_snapshot_restore(s->ctx->kv, &s->ctx->snap);
        return md_reduce_fail(s, rc, "decode: %s", md_context_error(s->ctx));
    }
    return decode_done(s, t0);
}

/* ---- several sessions in one step ------------------------------------------- */

/* Every layer of the step, each session's bookkeeping after it. *bad: the
 * session whose bookkeeping failed, -1 when the step itself did (its
 * contexts hold the messages). */
static int multi_layers(struct md_reduce_session *const *ss, struct md_context *const *ctxs,
                        int32_t n, int32_t *e0, int32_t *bad)
{
    struct md_context *lead = ctxs[0];
    for (int32_t il = 0; il < ss[0]->n_layer; il++) {
        bool want_lse = false;
        for (int32_t i = 0; i < n; i++) {
            e0[i] = md_kv_cache_len(md_context_kv(ctxs[i]), il);
            want_lse |= tracking(ss[i], il);
        }
        *bad = -1;
        int rc = md_llm_multi_layer(ctxs, n, il, want_lse);
        for (int32_t i = 0; !rc && i < n; i++) {
            struct decode_row row = { lead->be, md_llm_multi_q(lead, i), md_llm_multi_lse(lead, i) };
            *bad = i;
            rc = after_layer(ss[i], il, e0[i], &row);
        }
        if (rc)
            return rc;
    }
    return MD_OK;
}

/* The step failed: every session says why (its context's words, or which
 * session's tracker failed). */
static int multi_failed(struct md_reduce_session *const *ss, struct md_context *const *ctxs,
                        int32_t n, int32_t bad, int rc)
{
    for (int32_t i = 0; i < n; i++) {
        if (bad < 0)
            md_reduce_fail(ss[i], rc, "decode: %s", md_context_error(ctxs[i]));
        else if (i == bad)
            md_reduce_fail(ss[i], rc, "decode: tracking attention failed (%s)", md_status_str(rc));
        else
            md_reduce_fail(ss[i], rc, "decode: sequence %d of the step failed tracking attention", bad);
    }
    return rc;
}

static int multi_step(struct md_reduce_session *const *ss, struct md_context *const *ctxs,
                      const int32_t *tokens, int32_t n, int32_t *e0, float **logits)
{
    int rc = md_llm_multi_begin(ctxs, tokens, n);
    if (rc)
        return multi_failed(ss, ctxs, n, -1, rc);
    for (int32_t i = 0; i < n; i++) {
        md_kv_snapshot_take(ctxs[i]->kv, &ctxs[i]->snap);
        logits[i] = ss[i]->logits;
    }
    int32_t bad = -1;
    rc = multi_layers(ss, ctxs, n, e0, &bad);
    if (!rc)
        rc = md_llm_multi_end(ctxs, n, logits);
    ctxs[0]->n_rows = 0;
    if (!rc)
        return MD_OK;
    for (int32_t i = 0; i < n; i++)
        md_kv_snapshot_restore(ctxs[i]->kv, &ctxs[i]->snap);
    return multi_failed(ss, ctxs, n, bad, rc);
}

int md_reduce_decode_multi(struct md_reduce_session *const *ss, const int32_t *tokens, int32_t n)
{
    if (!ss || n <= 0)
        return MD_ERR_INVALID;
    for (int32_t i = 0; i < n; i++)
        if (!ss[i])
            return ss[0] && i ? md_reduce_fail(ss[0], MD_ERR_INVALID, "decode: session %d of %d is NULL", i, n)
                              : MD_ERR_INVALID;
    if (!tokens)
        return md_reduce_fail(ss[0], MD_ERR_INVALID, "decode: tokens is NULL");
    for (int32_t i = 0; i < n; i++)
        if (!ss[i]->prefilled)
            return md_reduce_fail(ss[i], MD_ERR_INVALID,
                                  "decode before a successful prefill (sequence %d of a step)", i);
    double t0 = md_reduce_now_ms();
    struct md_context **ctxs = malloc(sizeof *ctxs * (size_t)n);
    int32_t *e0 = malloc(sizeof *e0 * (size_t)n);
    float **logits = malloc(sizeof *logits * (size_t)n);
    int rc = ctxs && e0 && logits ? MD_OK : md_reduce_fail(ss[0], MD_ERR_NOMEM, "decode: out of memory");
    for (int32_t i = 0; !rc && i < n; i++)
        ctxs[i] = ss[i]->ctx;
    if (!rc && (rc = multi_step(ss, ctxs, tokens, n, e0, logits)) == MD_OK)
        for (int32_t i = 0; i < n; i++) {   /* each session's own; the first failure is returned */
            int rc_i = decode_done(ss[i], t0);
            if (rc_i && !rc)
                rc = rc_i;
        }
    free(ctxs);
    free(e0);
    free(logits);
    return rc;
}
