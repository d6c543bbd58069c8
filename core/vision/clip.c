/* The vision tower forward (CLIP and SigLIP ViTs), written once against the
 * backend vtable so any backend runs it. A run holds n_img images of n_tok
 * tokens each as one [n_img * n_tok][hidden] activation; matmuls, norms and
 * the activation see the whole batch, attention runs per image (tokens of
 * different images never attend to each other).
 *
 * Layer (pre-norm, HF CLIPEncoderLayer / SiglipEncoderLayer):
 *   h += attn_out(attention(ln1(h)))
 *   h += down(act(up(ln2(h))))
 * Embeddings: im2col patches x conv kernel (+ patch bias), class token first
 * (HF order), + position embeddings, then pre-LN when the tower has one.
 *
 * Pruning hooks (docs/reduction-methods.md §1.1-1.2, §2): runs stop after
 * any layer, expose hidden states, give one query row's attention
 * probabilities per head (q_row . K^T, a small product, never the
 * n_tok x n_tok matrix), and keep a subset of tokens per image before
 * continuing. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vision-impl.h"

struct md_vision_run {
    struct md_vision *v;
    int32_t n_img;
    int32_t n_tok;        /* tokens per image now */
    int32_t n_tok_max;    /* the buffers' capacity per image */
    /* [n_img * n_tok_max] rows each; h holds the residual stream */
    struct md_tensor h, x, q, k, val, a, tmp, ff;
};

#define OPS(r) ((r)->v->be->ops)

static struct md_tensor rows_of(const struct md_tensor *t, int64_t r0, int64_t n)
{
    return md_tensor_rows(t, r0, n);
}

/* A view with a different row length over the same contiguous storage
 * (e.g. [n][n_head*head_dim] seen as [n*n_head][head_dim]). */
static struct md_tensor reshape_view(const struct md_tensor *t, int64_t ne0, int64_t ne1)
{
    struct md_tensor r = *t;
    r.ne[0] = ne0;
    r.ne[1] = ne1;
    r.ne[2] = r.ne[3] = 1;
    r.owned = false;
    r.nbytes = sizeof(float) * (size_t)(ne0 * ne1);
    return r;
}

static void run_free_buffers(struct md_vision_run *r)
{
    struct md_backend *be = r->v->be;
    struct md_tensor *ts[] = { &r->h, &r->x, &r->q, &r->k, &r->val, &r->a, &r->tmp, &r->ff };
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        if (ts[i]->data)
            be->ops->tensor_free(be, ts[i]);
}

static int run_alloc_buffers(struct md_vision_run *r)
{
    struct md_backend *be = r->v->be;
    const struct md_clip_hparams *hp = &r->v->hp;
    int64_t rows = (int64_t)r->n_img * r->n_tok_max;
    struct md_tensor *wide[] = { &r->h, &r->x, &r->q, &r->k, &r->val, &r->a, &r->tmp };
    for (size_t i = 0; i < sizeof wide / sizeof wide[0]; i++) {
        int rc = md_backend_alloc_2d(be, wide[i], MD_TYPE_F32, hp->hidden, rows);
        if (rc)
            return rc;
    }
    return md_backend_alloc_2d(be, &r->ff, MD_TYPE_F32, hp->n_ff, rows);
}

/* im2col of n_img images pixels[n][3][S][S]: one row per patch (row-major
 * over the patch grid), elements ordered (channel, ky, kx) like the conv
 * kernel's rows. */
static void im2col(const struct md_clip_hparams *hp, const float *pixels, int32_t n_img, float *out)
{
    int32_t S = hp->image_size, P = hp->patch_size, ns = hp->n_side;
    size_t plane = (size_t)S * S, row = 3 * (size_t)P * P;
    for (int32_t i = 0; i < n_img; i++) {
        const float *img = pixels + (size_t)i * 3 * plane;
        for (int32_t py = 0; py < ns; py++)
            for (int32_t px = 0; px < ns; px++) {
                float *o = out + ((size_t)i * hp->n_patches + (size_t)py * ns + px) * row;
                for (int c = 0; c < 3; c++)
                    for (int32_t ky = 0; ky < P; ky++) {
                        const float *src = img + c * plane + (size_t)(py * P + ky) * S + (size_t)px * P;
                        memcpy(o, src, sizeof(float) * (size_t)P);
                        o += P;
                    }
            }
    }
}

/* Patch embeddings into a temporary, then per image: class token, patches,
 * + position embeddings into h. */
static int run_embed(struct md_vision_run *r, const float *pixels)
{
    struct md_vision *v = r->v;
    struct md_backend *be = v->be;
    const struct md_clip_hparams *hp = &v->hp;
    int64_t n_rows = (int64_t)r->n_img * hp->n_patches, row = 3 * (int64_t)hp->patch_size * hp->patch_size;
    float *cols = malloc(sizeof(float) * (size_t)(n_rows * row));
    if (!cols)
        return MD_ERR_NOMEM;
    im2col(hp, pixels, r->n_img, cols);
    struct md_tensor pat = { 0 }, emb = { 0 };
    int rc = md_backend_alloc_2d(be, &pat, MD_TYPE_F32, row, n_rows);
    if (!rc)
        rc = be->ops->tensor_set(be, &pat, 0, cols, sizeof(float) * (size_t)(n_rows * row));
    free(cols);
    if (!rc)
        rc = md_backend_alloc_2d(be, &emb, MD_TYPE_F32, hp->hidden, n_rows);
    if (!rc)
        rc = be->ops->matmul(be, &pat, &v->patch_w, hp->has_patch_bias ? &v->patch_b : NULL, &emb);
    int32_t off = hp->has_class ? 1 : 0;
    for (int32_t i = 0; i < r->n_img && !rc; i++) {
        struct md_tensor src = rows_of(&emb, (int64_t)i * hp->n_patches, hp->n_patches);
        struct md_tensor dst = rows_of(&r->h, (int64_t)i * r->n_tok, r->n_tok);
        rc = be->ops->set_rows(be, &r->h, (int64_t)i * r->n_tok + off, &src);
        if (!rc && hp->has_class)
            rc = be->ops->set_rows(be, &r->h, (int64_t)i * r->n_tok, &v->class_embd);
        if (!rc)
            rc = be->ops->add(be, &dst, &v->pos_embd, &dst);
    }
    if (pat.data)
        be->ops->tensor_free(be, &pat);
    if (emb.data)
        be->ops->tensor_free(be, &emb);
    return rc;
}

/* out = LayerNorm(h) over the current rows. */
static int run_norm(struct md_vision_run *r, const struct md_tensor *w, const struct md_tensor *b,
                    struct md_tensor *out)
{
    int64_t n = (int64_t)r->n_img * r->n_tok;
    struct md_tensor hv = rows_of(&r->h, 0, n), ov = rows_of(out, 0, n);
    return OPS(r)->layer_norm(r->v->be, &hv, w, b, r->v->hp.eps, &ov);
}

/* The pre-LN is applied in place on the residual stream: swap h and x. */
static int run_pre_ln(struct md_vision_run *r)
{
    if (!r->v->hp.has_pre_ln)
        return MD_OK;
    int rc = run_norm(r, &r->v->pre_ln_w, &r->v->pre_ln_b, &r->x);
    struct md_tensor t = r->h;
    r->h = r->x;
    r->x = t;
    return rc;
}

static int matmul_rows(struct md_vision_run *r, const struct md_tensor *in, const struct md_tensor *w,
                       const struct md_tensor *b, struct md_tensor *out, int64_t n)
{
    struct md_tensor iv = rows_of(in, 0, n), ov = rows_of(out, 0, n);
    return OPS(r)->matmul(r->v->be, &iv, w, b, &ov);
}

/* Non-causal self-attention of each image's tokens: q,k,val -> a. */
static int run_attention(struct md_vision_run *r)
{
    const struct md_clip_hparams *hp = &r->v->hp;
    struct md_attn_params p = {
        .n_q = r->n_tok, .n_kv = r->n_tok, .q_start = 0, .n_head = hp->n_head,
        .n_head_kv = hp->n_head, .head_dim = hp->head_dim,
        .scale = 1.0f / sqrtf((float)hp->head_dim), .causal = false,
    };
    for (int32_t i = 0; i < r->n_img; i++) {
        int64_t r0 = (int64_t)i * r->n_tok;
        struct md_tensor q = rows_of(&r->q, r0, r->n_tok), k = rows_of(&r->k, r0, r->n_tok);
        struct md_tensor vv = rows_of(&r->val, r0, r->n_tok), a = rows_of(&r->a, r0, r->n_tok);
        int rc = OPS(r)->attention(r->v->be, &p, &q, &k, &vv, &a, NULL);
        if (rc)
            return rc;
    }
    return MD_OK;
}

static int run_residual_add(struct md_vision_run *r, int64_t n)
{
    struct md_tensor hv = rows_of(&r->h, 0, n), tv = rows_of(&r->tmp, 0, n);
    return OPS(r)->add(r->v->be, &hv, &tv, &hv);
}

static int run_layer(struct md_vision_run *r, const struct md_clip_layer *L)
{
    struct md_backend *be = r->v->be;
    int64_t n = (int64_t)r->n_img * r->n_tok;
    int rc;
    if ((rc = run_norm(r, &L->ln1_w, &L->ln1_b, &r->x)) ||
        (rc = matmul_rows(r, &r->x, &L->q_w, &L->q_b, &r->q, n)) ||
        (rc = matmul_rows(r, &r->x, &L->k_w, &L->k_b, &r->k, n)) ||
        (rc = matmul_rows(r, &r->x, &L->v_w, &L->v_b, &r->val, n)) ||
        (rc = run_attention(r)) ||
        (rc = matmul_rows(r, &r->a, &L->o_w, &L->o_b, &r->tmp, n)) ||
        (rc = run_residual_add(r, n)) ||
        (rc = run_norm(r, &L->ln2_w, &L->ln2_b, &r->x)) ||
        (rc = matmul_rows(r, &r->x, &L->up_w, &L->up_b, &r->ff, n)))
        return rc;
    struct md_tensor fv = rows_of(&r->ff, 0, n);
    if ((rc = be->ops->unary(be, r->v->hp.act, &fv, &fv)) ||
        (rc = matmul_rows(r, &r->ff, &L->down_w, &L->down_b, &r->tmp, n)))
        return rc;
    return run_residual_add(r, n);
}

/* ---- public step-by-step API ------------------------------------------------ */

int md_vision_run_begin(struct md_vision *v, const float *pixels, int32_t n_img,
                        struct md_vision_run **out)
{
    if (!out)
        return MD_ERR_INVALID;
    *out = NULL;
    if (!v || !pixels || n_img <= 0 || n_img > 4096)
        return MD_ERR_INVALID;
    struct md_vision_run *r = calloc(1, sizeof *r);
    if (!r)
        return MD_ERR_NOMEM;
    r->v = v;
    r->n_img = n_img;
    r->n_tok = r->n_tok_max = v->hp.n_pos;
    int rc = run_alloc_buffers(r);
    if (!rc)
        rc = run_embed(r, pixels);
    if (!rc)
        rc = run_pre_ln(r);
    if (rc) {
        md_vision_run_end(r);
        return rc;
    }
    *out = r;
    return MD_OK;
}

void md_vision_run_end(struct md_vision_run *r)
{
    if (!r)
        return;
    run_free_buffers(r);
    free(r);
}

int32_t md_vision_run_n_img(const struct md_vision_run *r) { return r ? r->n_img : 0; }
int32_t md_vision_run_n_tok(const struct md_vision_run *r) { return r ? r->n_tok : 0; }

int md_vision_run_layers(struct md_vision_run *r, int32_t il0, int32_t il1)
{
    if (!r || il0 < 0 || il1 < il0 || il1 > r->v->hp.n_layer)
        return MD_ERR_INVALID;
    const struct md_vision_params *p = &r->v->params;
    for (int32_t il = il0; il < il1; il++) {
        if (p->abort_callback && p->abort_callback(p->abort_callback_user))
            return MD_ERR_ABORTED;
        int rc = run_layer(r, &r->v->layers[il]);
        if (rc)
            return rc;
    }
    return MD_OK;
}

int md_vision_run_hidden(struct md_vision_run *r, float *out)
{
    if (!r || !out)
        return MD_ERR_INVALID;
    size_t n = sizeof(float) * (size_t)r->n_img * (size_t)r->n_tok * (size_t)r->v->hp.hidden;
    return OPS(r)->tensor_get(r->v->be, &r->h, 0, out, n);
}

/* Softmax of one head's scores in place (host). */
static void softmax_row(float *s, int32_t n)
{
    float m = -INFINITY;
    for (int32_t j = 0; j < n; j++)
        m = fmaxf(m, s[j]);
    double sum = 0.0;
    for (int32_t j = 0; j < n; j++) {
        s[j] = expf(s[j] - m);
        sum += s[j];
    }
    for (int32_t j = 0; j < n; j++)
        s[j] = (float)(s[j] / sum);
}

/* Scores of query row q (one image's [n_head*hd] row, in qrow) against that
 * image's keys: K seen as [n_tok*n_head][hd] times q seen as [n_head][hd]
 * gives [n_tok*n_head][n_head]; head h's score for key j is element
 * (j*n_head + h, h). n_head times more products than the GEMV strictly
 * needs, still O(n_tok*hidden*n_head), and only vtable ops. */
static int attention_row_image(struct md_vision_run *r, int32_t i, const struct md_tensor *qrow,
                               struct md_tensor *prod, float *host, float *out)
{
    const struct md_clip_hparams *hp = &r->v->hp;
    int32_t H = hp->n_head, n = r->n_tok;
    struct md_tensor kv = rows_of(&r->k, (int64_t)i * n, n);
    struct md_tensor kh = reshape_view(&kv, hp->head_dim, (int64_t)n * H);
    struct md_tensor qh = reshape_view(qrow, hp->head_dim, H);
    int rc = OPS(r)->matmul(r->v->be, &kh, &qh, NULL, prod);
    if (!rc)
        rc = OPS(r)->tensor_get(r->v->be, prod, 0, host, sizeof(float) * (size_t)n * H * H);
    if (rc)
        return rc;
    float scale = 1.0f / sqrtf((float)hp->head_dim);
    for (int32_t h = 0; h < H; h++) {
        float *o = out + ((size_t)i * H + h) * n;
        for (int32_t j = 0; j < n; j++)
            o[j] = scale * host[((size_t)j * H + h) * H + h];
        softmax_row(o, n);
    }
    return MD_OK;
}

int md_vision_run_attention_row(struct md_vision_run *r, int32_t il, int32_t row, float *out)
{
    if (!r || !out || il < 0 || il >= r->v->hp.n_layer || row < 0 || row >= r->n_tok)
        return MD_ERR_INVALID;
    const struct md_clip_layer *L = &r->v->layers[il];
    struct md_backend *be = r->v->be;
    const struct md_clip_hparams *hp = &r->v->hp;
    int64_t n = (int64_t)r->n_img * r->n_tok;
    int rc;
    /* ln1 then K for all tokens; the query rows gathered into tmp */
    if ((rc = run_norm(r, &L->ln1_w, &L->ln1_b, &r->x)) ||
        (rc = matmul_rows(r, &r->x, &L->k_w, &L->k_b, &r->k, n)))
        return rc;
    for (int32_t i = 0; i < r->n_img && !rc; i++) {
        struct md_tensor src = rows_of(&r->x, (int64_t)i * r->n_tok + row, 1);
        rc = be->ops->set_rows(be, &r->tmp, i, &src);
    }
    if (!rc)
        rc = matmul_rows(r, &r->tmp, &L->q_w, &L->q_b, &r->q, r->n_img);
    if (rc)
        return rc;
    struct md_tensor prod = { 0 };
    int64_t H = hp->n_head;
    float *host = malloc(sizeof(float) * (size_t)(r->n_tok * H * H));
    rc = host ? md_backend_alloc_2d(be, &prod, MD_TYPE_F32, H, r->n_tok * H) : MD_ERR_NOMEM;
    for (int32_t i = 0; i < r->n_img && !rc; i++) {
        struct md_tensor qrow = rows_of(&r->q, i, 1);
        rc = attention_row_image(r, i, &qrow, &prod, host, out);
    }
    if (prod.data)
        be->ops->tensor_free(be, &prod);
    free(host);
    return rc;
}

int md_vision_run_keep(struct md_vision_run *r, const int32_t *idx, int32_t n_keep)
{
    if (!r || !idx || n_keep <= 0 || n_keep > r->n_tok)
        return MD_ERR_INVALID;
    int64_t total = (int64_t)r->n_img * n_keep;
    int32_t *all = malloc(sizeof(int32_t) * (size_t)total);
    if (!all)
        return MD_ERR_NOMEM;
    /* per image strictly increasing and in range => globally increasing */
    for (int32_t i = 0; i < r->n_img; i++)
        for (int32_t j = 0; j < n_keep; j++) {
            int32_t t = idx[(size_t)i * n_keep + j];
            if (t < 0 || t >= r->n_tok || (j > 0 && t <= idx[(size_t)i * n_keep + j - 1])) {
                free(all);
                return MD_ERR_INVALID;
            }
            all[(size_t)i * n_keep + j] = i * r->n_tok + t;
        }
    int rc = OPS(r)->keep_rows(r->v->be, &r->h, all, total);
    free(all);
    if (!rc)
        r->n_tok = n_keep;
    return rc;
}

/* Token merging needs new values, not just a subset: overwrite every
 * image's tokens with host rows in[n_img][n_tok][hidden] (n_tok at most the
 * tokens the run started with). */
int md_vision_run_set_hidden(struct md_vision_run *r, const float *in, int32_t n_tok)
{
    if (!r || !in || n_tok <= 0 || n_tok > r->n_tok_max)
        return MD_ERR_INVALID;
    size_t n = sizeof(float) * (size_t)r->n_img * (size_t)n_tok * (size_t)r->v->hp.hidden;
    int rc = OPS(r)->tensor_set(r->v->be, &r->h, 0, in, n);
    if (!rc)
        r->n_tok = n_tok;
    return rc;
}

/* Post-LN (SigLIP), class token dropped, mm.0 -> GELU(erf) -> mm.2. The
 * hidden states are left as they were. */
int md_vision_run_project(struct md_vision_run *r, bool drop_cls, float *out, int32_t max_tokens,
                          int32_t *n_tokens)
{
    if (!r || !out || !n_tokens)
        return MD_ERR_INVALID;
    struct md_vision *v = r->v;
    struct md_backend *be = v->be;
    const struct md_clip_hparams *hp = &v->hp;
    int32_t skip = drop_cls && hp->has_class ? 1 : 0;
    if (r->n_tok - skip <= 0)
        return MD_ERR_INVALID;
    int64_t per = r->n_tok - skip, n = (int64_t)r->n_img * per;
    *n_tokens = (int32_t)n;
    if (n > max_tokens)
        return MD_ERR_INVALID;
    int rc = MD_OK;
    /* gather the kept rows into x */
    for (int32_t i = 0; i < r->n_img && !rc; i++) {
        struct md_tensor src = rows_of(&r->h, (int64_t)i * r->n_tok + skip, per);
        rc = be->ops->set_rows(be, &r->x, (int64_t)i * per, &src);
    }
    if (!rc && hp->has_post_ln) {
        struct md_tensor xv = rows_of(&r->x, 0, n), tv = rows_of(&r->tmp, 0, n);
        rc = be->ops->layer_norm(be, &xv, &v->post_ln_w, &v->post_ln_b, hp->eps, &tv);
        if (!rc)
            rc = be->ops->set_rows(be, &r->x, 0, &tv);
    }
    struct md_tensor mid = { 0 }, o = { 0 };
    if (!rc)
        rc = md_backend_alloc_2d(be, &mid, MD_TYPE_F32, hp->n_mm, n);
    if (!rc)
        rc = md_backend_alloc_2d(be, &o, MD_TYPE_F32, hp->n_embd_out, n);
    if (!rc)
        rc = matmul_rows(r, &r->x, &v->mm0_w, &v->mm0_b, &mid, n);
    if (!rc)
        rc = be->ops->unary(be, MD_UNARY_GELU_ERF, &mid, &mid);
    if (!rc)
        rc = be->ops->matmul(be, &mid, &v->mm2_w, &v->mm2_b, &o);
    if (!rc)
        rc = be->ops->tensor_get(be, &o, 0, out, sizeof(float) * (size_t)(n * hp->n_embd_out));
    if (mid.data)
        be->ops->tensor_free(be, &mid);
    if (o.data)
        be->ops->tensor_free(be, &o);
    return rc;
}
