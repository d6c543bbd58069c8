/* The LLaMA-family forward pass, written once against the backend ops.
 *
 * Per block (pre-norm):
 *     h   = x + Wo · attn(rope(Wq·rms(x)), rope(Wk·rms(x)), Wv·rms(x))
 *     out = h + Wdown · (silu(Wgate·rms(h)) * Wup·rms(h))
 * The only architecture differences are q/k/v biases and the RoPE pairing
 * (llama: (2i, 2i+1) because the converter permuted Q/K rows; qwen2: NEOX). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llm.h"

static struct md_tensor rows(const struct md_tensor *t, int64_t n)
{
    return md_tensor_rows(t, 0, n);
}

#define TRY(expr) do { int rc_ = (expr); if (rc_) return rc_; } while (0)

/* ---- begin: input rows ----------------------------------------------- */

/* Embedding rows of batch rows before row0 (they were consumed by earlier chunks). */
static int64_t embd_rows_before(const struct md_batch *b, int32_t row0)
{
    if (!b->tokens)
        return row0;
    int64_t n = 0;
    for (int32_t i = 0; i < row0; i++)
        n += b->tokens[i] == MD_TOKEN_EMBD;
    return n;
}

int md_llm_check_room(struct md_context *ctx, int32_t n)
{
    const struct md_kv_cache *kv = ctx->kv;
    for (int32_t il = 0; il < kv->n_layer; il++)
        if (kv->layers[il].n + n > kv->capacity)
            return md_llm_error(ctx, MD_ERR_CONTEXT_FULL,
                                "context full: layer %d holds %d of %d entries, the batch needs %d more",
                                il, kv->layers[il].n, kv->capacity, n);
    return MD_OK;
}

/* Fill x rows from token ids (gathered in runs) and embedding rows. */
static int embed_rows(struct md_context *ctx, const struct md_batch *b, int32_t row0, int32_t n)
{
    struct md_backend *be = ctx->be;
    const struct md_model *m = ctx->model;
    int64_t n_embd = m->hp.n_embd;
    size_t row_bytes = sizeof(float) * (size_t)n_embd;
    const float *embd = b->embd ? b->embd + embd_rows_before(b, row0) * n_embd : NULL;
    for (int32_t i = 0; i < n;) {
        bool is_tok = b->tokens && b->tokens[row0 + i] != MD_TOKEN_EMBD;
        int32_t j = i + 1;
        while (j < n && (b->tokens && b->tokens[row0 + j] != MD_TOKEN_EMBD) == is_tok)
            j++;
        if (is_tok) {
            memcpy(ctx->ids_host, b->tokens + row0 + i, sizeof(int32_t) * (size_t)(j - i));
            TRY(be->ops->tensor_set(be, &ctx->ids, 0, ctx->ids_host,
                                    sizeof(int32_t) * (size_t)(j - i)));
            struct md_tensor ids = md_llm_vec_view(&ctx->ids, 0, j - i);
            struct md_tensor dst = md_tensor_rows(&ctx->x, i, j - i);
            TRY(be->ops->get_rows(be, &m->tok_embd, &ids, &dst));
        } else {
            TRY(be->ops->tensor_set(be, &ctx->x, row_bytes * (size_t)i, embd,
                                    row_bytes * (size_t)(j - i)));
            embd += (size_t)(j - i) * (size_t)n_embd;
        }
        i = j;
    }
    return MD_OK;
}

int md_llm_begin(struct md_context *ctx, const struct md_batch *b, int32_t row0, int32_t n)
{
    const struct md_model *m = ctx->model;
    if (n <= 0 || n > ctx->params.n_batch)
        return md_llm_error(ctx, MD_ERR_INVALID, "batch of %d rows (1..n_batch %d)", n,
                            ctx->params.n_batch);
    for (int32_t i = 0; b->tokens && i < n; i++) {
        int32_t t = b->tokens[row0 + i];
        if (t == MD_TOKEN_EMBD ? !b->embd : (t < 0 || t >= m->hp.n_vocab))
            return md_llm_error(ctx, MD_ERR_INVALID, t == MD_TOKEN_EMBD
                                ? "row %d wants an embedding row but embd is NULL"
                                : "row %d: token id %d out of range [0, %d)",
                                row0 + i, t, m->hp.n_vocab);
    }
    TRY(md_llm_check_room(ctx, n));
    int rc = embed_rows(ctx, b, row0, n);
    if (rc)
        return md_llm_error(ctx, rc, "backend failed embedding the batch");
    int32_t max_pos = -1;
    for (int32_t i = 0; i < n; i++) {
        ctx->row_pos[i] = b->pos ? b->pos[row0 + i] : ctx->kv->seq_pos + i;
        if (ctx->row_pos[i] > max_pos)
            max_pos = ctx->row_pos[i];
    }
    ctx->n_rows = ctx->n_out = n;
    ctx->cut_last = false;
    ctx->next_seq_pos = max_pos + 1;
    ctx->n_layer_pos = 0;
    ctx->last_layer = -1;
    return MD_OK;
}

void md_llm_want_last(struct md_context *ctx, int32_t n_out)
{
    ctx->n_out = n_out < 1 ? 1 : n_out;
}

/* ---- one transformer block ------------------------------------------- */

int md_llm_matmul(struct md_context *ctx, const struct md_tensor *x, const struct md_tensor *w,
                  const struct md_tensor *bias, struct md_tensor *y)
{
    struct md_backend *be = ctx->be;
    int64_t n = md_tensor_nrows(x), g = ctx->mm_rows > 0 ? ctx->mm_rows : n;
    if (g >= n)
        return be->ops->matmul(be, x, w, bias, y);
    for (int64_t r = 0; r < n; r += g) {
        int64_t c = n - r < g ? n - r : g;
        struct md_tensor xg = md_tensor_rows(x, r, c), yg = md_tensor_rows(y, r, c);
        TRY(be->ops->matmul(be, &xg, w, bias, &yg));
    }
    return MD_OK;
}

struct md_rope_params md_llm_rope_params(const struct md_context *ctx, int32_t n_head)
{
    const struct md_model *m = ctx->model;
    const struct md_hparams *hp = &m->hp;
    struct md_rope_params rp = {
        .n_head = n_head, .head_dim = hp->head_dim, .n_rot = hp->n_rot,
        .mode = hp->rope_mode, .freq_base = hp->rope_freq_base, .freq_scale = hp->rope_freq_scale,
        .freq_factors = md_tensor_present(&m->rope_freqs) ? &m->rope_freqs : NULL,
    };
    return rp;
}

/* The positions layer il rotates the rows in flight with. */
static void layer_positions(const struct md_context *ctx, int32_t il, int32_t *pos)
{
    const struct md_kv_layer *L = &ctx->kv->layers[il];
    for (int32_t i = 0; i < ctx->n_rows; i++)
        pos[i] = L->policy == MD_KV_POS_LAYER_LEN ? L->n + i : ctx->row_pos[i];
}

int md_llm_set_positions(struct md_context *ctx, const int32_t *pos, int32_t n)
{
    if (ctx->n_layer_pos == n && !memcmp(pos, ctx->layer_pos, sizeof(int32_t) * (size_t)n))
        return MD_OK;
    TRY(ctx->be->ops->tensor_set(ctx->be, &ctx->pos, 0, pos, sizeof(int32_t) * (size_t)n));
    memcpy(ctx->layer_pos, pos, sizeof(int32_t) * (size_t)n);
    ctx->n_layer_pos = n;
    return MD_OK;
}

int md_llm_qkv(struct md_context *ctx, int32_t il, const int32_t *pos)
{
    struct md_backend *be = ctx->be;
    const struct md_hparams *hp = &ctx->model->hp;
    const struct md_layer *L = &ctx->model->layers[il];
    int32_t n = ctx->n_rows;
    struct md_tensor x = rows(&ctx->x, n), xb = rows(&ctx->xb, n);
    struct md_tensor q = rows(&ctx->q, n), k = rows(&ctx->k, n), v = rows(&ctx->v, n);

    TRY(be->ops->rms_norm(be, &x, &L->attn_norm, hp->rms_eps, &xb));
    TRY(md_llm_matmul(ctx, &xb, &L->wq, md_tensor_present(&L->bq) ? &L->bq : NULL, &q));
    TRY(md_llm_matmul(ctx, &xb, &L->wk, md_tensor_present(&L->bk) ? &L->bk : NULL, &k));
    TRY(md_llm_matmul(ctx, &xb, &L->wv, md_tensor_present(&L->bv) ? &L->bv : NULL, &v));
    TRY(md_llm_set_positions(ctx, pos, n));
    struct md_tensor pos_t = md_llm_vec_view(&ctx->pos, 0, n);
    struct md_rope_params rp = md_llm_rope_params(ctx, hp->n_head);
    TRY(be->ops->rope(be, &q, &pos_t, &rp));
    rp.n_head = hp->n_head_kv;
    return be->ops->rope(be, &k, &pos_t, &rp);
}

static int attention_block(struct md_context *ctx, int32_t il)
{
    struct md_backend *be = ctx->be;
    const struct md_hparams *hp = &ctx->model->hp;
    const struct md_layer *L = &ctx->model->layers[il];
    int32_t n = ctx->n_rows;
    struct md_tensor x = rows(&ctx->x, n), xb = rows(&ctx->xb, n);
    struct md_tensor q = rows(&ctx->q, n), k = rows(&ctx->k, n), v = rows(&ctx->v, n);
    struct md_tensor att = rows(&ctx->att, n);

    int32_t *pos = ctx->ids_host;   /* scratch: ids are not needed after begin */
    layer_positions(ctx, il, pos);
    TRY(md_llm_qkv(ctx, il, pos));

    /* Append first, then attend: the batch sees itself through the cache. */
    TRY(md_kv_cache_append(ctx->kv, il, &k, &v, ctx->layer_pos));
    if (il == hp->n_layer - 1 && ctx->n_out < n) {
        /* only the last n_out rows go on (md_llm_want_last); pos is free
         * scratch again */
        for (int32_t i = 0; i < ctx->n_out; i++)
            pos[i] = n - ctx->n_out + i;
        TRY(md_llm_keep_rows(ctx, pos, ctx->n_out));
        TRY(be->ops->keep_rows(be, &q, pos, ctx->n_out));
        ctx->cut_last = true;
        n = ctx->n_rows;
        x = rows(&ctx->x, n);
        xb = rows(&ctx->xb, n);
        q = rows(&ctx->q, n);
        att = rows(&ctx->att, n);
    }
    const struct md_kv_layer *C = &ctx->kv->layers[il];
    struct md_attn_params ap = {
        .n_q = n, .n_kv = C->n, .q_start = C->n - n, .n_head = hp->n_head,
        .n_head_kv = hp->n_head_kv, .head_dim = hp->head_dim,
        .scale = 1.0f / sqrtf((float)hp->head_dim), .causal = true,
    };
    struct md_tensor lse = ctx->lse;
    lse.ne[0] = n;
    lse.ne[1] = hp->n_head;
    TRY(be->ops->attention(be, &ap, &q, &C->k, &C->v, &att, &lse));

    TRY(md_llm_matmul(ctx, &att, &L->wo, md_tensor_present(&L->bo) ? &L->bo : NULL, &xb));
    return be->ops->add(be, &x, &xb, &x);
}

int md_llm_ffn_block(struct md_context *ctx, int32_t il)
{
    struct md_backend *be = ctx->be;
    const struct md_layer *L = &ctx->model->layers[il];
    int32_t n = ctx->n_rows;
    struct md_tensor x = rows(&ctx->x, n), xb = rows(&ctx->xb, n);
    struct md_tensor hb = rows(&ctx->hb, n), hb2 = rows(&ctx->hb2, n);

    TRY(be->ops->rms_norm(be, &x, &L->ffn_norm, ctx->model->hp.rms_eps, &xb));
    TRY(md_llm_matmul(ctx, &xb, &L->ffn_gate, NULL, &hb));
    TRY(md_llm_matmul(ctx, &xb, &L->ffn_up, NULL, &hb2));
    TRY(be->ops->glu(be, MD_UNARY_SILU, &hb, &hb2, &hb));
    TRY(md_llm_matmul(ctx, &hb, &L->ffn_down, NULL, &xb));
    return be->ops->add(be, &x, &xb, &x);
}

int md_llm_layer(struct md_context *ctx, int32_t il)
{
    if (il < 0 || il >= ctx->model->hp.n_layer || ctx->n_rows <= 0)
        return md_llm_error(ctx, MD_ERR_INVALID, "layer %d with %d rows in flight", il, ctx->n_rows);
    int rc = attention_block(ctx, il);
    if (!rc)
        rc = md_llm_ffn_block(ctx, il);
    if (rc == MD_ERR_CONTEXT_FULL)
        return md_llm_error(ctx, rc, "context full at layer %d", il);
    if (rc)
        return md_llm_error(ctx, rc, "backend '%s' failed in layer %d (%s)", ctx->be->ops->name,
                            il, md_status_str(rc));
    ctx->last_layer = il;
    return MD_OK;
}

int md_llm_keep_rows(struct md_context *ctx, const int32_t *idx, int32_t n)
{
    if (n <= 0 || n > ctx->n_rows || !idx)
        return md_llm_error(ctx, MD_ERR_INVALID, "keep %d of %d rows", n, ctx->n_rows);
    for (int32_t i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= ctx->n_rows || (i && idx[i] <= idx[i - 1]))
            return md_llm_error(ctx, MD_ERR_INVALID,
                                "keep list entry %d (= %d) is not strictly increasing in [0, %d)",
                                i, idx[i], ctx->n_rows);
    struct md_tensor x = rows(&ctx->x, ctx->n_rows);
    int rc = ctx->be->ops->keep_rows(ctx->be, &x, idx, n);
    if (rc)
        return md_llm_error(ctx, rc, "backend failed compacting rows");
    for (int32_t i = 0; i < n; i++)
        ctx->row_pos[i] = ctx->row_pos[idx[i]];
    ctx->n_rows = n;
    ctx->n_layer_pos = 0;
    return MD_OK;
}

/* ---- end: logits ----------------------------------------------------- */

/* Make the device logits chunk hold at least want rows (grown once). */
int md_llm_ensure_out_rows(struct md_context *ctx, int32_t want)
{
    if (ctx->out_rows >= want)
        return MD_OK;
    if (ctx->out.data)
        ctx->be->ops->tensor_free(ctx->be, &ctx->out);
    ctx->out_rows = 0;
    TRY(md_backend_alloc_2d(ctx->be, &ctx->out, MD_TYPE_F32, ctx->model->hp.n_vocab, want));
    ctx->out_rows = want;
    return MD_OK;
}

static int output_logits(struct md_context *ctx, bool all, float *logits)
{
    struct md_backend *be = ctx->be;
    const struct md_model *m = ctx->model;
    int32_t n = ctx->n_rows, first = all ? 0 : n - 1, n_out = n - first;
    int64_t n_vocab = m->hp.n_vocab;
    struct md_tensor x = md_tensor_rows(&ctx->x, first, n_out), xb = rows(&ctx->xb, n_out);
    TRY(be->ops->rms_norm(be, &x, &m->output_norm, m->hp.rms_eps, &xb));
    /* Chunks bound the device buffer: n_batch x n_vocab would be huge. */
    const int32_t chunk = 32;
    TRY(md_llm_ensure_out_rows(ctx, n_out < chunk ? n_out : chunk));
    for (int32_t r = 0; r < n_out; r += ctx->out_rows) {
        int32_t c = n_out - r < ctx->out_rows ? n_out - r : ctx->out_rows;
        struct md_tensor xc = md_tensor_rows(&ctx->xb, r, c), oc = rows(&ctx->out, c);
        TRY(be->ops->matmul(be, &xc, &m->output, NULL, &oc));
        TRY(be->ops->tensor_get(be, &oc, 0, logits + (size_t)r * (size_t)n_vocab,
                                sizeof(float) * (size_t)c * (size_t)n_vocab));
    }
    return MD_OK;
}

int md_llm_end(struct md_context *ctx, bool all, float *logits)
{
    if (ctx->n_rows <= 0)
        return md_llm_error(ctx, MD_ERR_INVALID, "no rows in flight");
    if (logits && all && ctx->cut_last)
        return md_llm_error(ctx, MD_ERR_INVALID, "logits of all rows asked for, but the last layer "
                            "ran only the last %d (md_llm_want_last)", ctx->n_rows);
    if (logits) {
        int rc = output_logits(ctx, all, logits);
        if (rc)
            return md_llm_error(ctx, rc, "backend failed computing logits (%s)", md_status_str(rc));
    }
    ctx->kv->seq_pos = ctx->next_seq_pos;
    return MD_OK;
}

/* ---- decode calls ---------------------------------------------------- */

double md_llm_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int md_llm_ensure_logits(struct md_context *ctx, int32_t want)
{
    if (ctx->logits_cap >= want)
        return MD_OK;
    float *p = realloc(ctx->logits, sizeof(float) * (size_t)want * (size_t)ctx->model->hp.n_vocab);
    if (!p)
        return md_llm_error(ctx, MD_ERR_NOMEM, "out of memory for %d logits rows", want);
    ctx->logits = p;
    ctx->logits_cap = want;
    return MD_OK;
}

bool md_llm_aborted(const struct md_context *ctx)
{
    return ctx->params.abort_callback && ctx->params.abort_callback(ctx->params.abort_callback_user);
}

/* One chunk of at most n_batch rows, through every layer. */
static int decode_chunk(struct md_context *ctx, const struct md_batch *b, int32_t row0, int32_t n,
                        float *logits)
{
    TRY(md_llm_begin(ctx, b, row0, n));
    if (!b->all_logits)
        md_llm_want_last(ctx, 1);
    for (int32_t il = 0; il < ctx->model->hp.n_layer; il++) {
        if (md_llm_aborted(ctx))
            return md_llm_error(ctx, MD_ERR_ABORTED, "decode aborted by the callback at layer %d", il);
        TRY(md_llm_layer(ctx, il));
    }
    return md_llm_end(ctx, b->all_logits, logits);
}

int md_decode_batch(struct md_context *ctx, const struct md_batch *b)
{
    if (!ctx)
        return MD_ERR_INVALID;
    ctx->err[0] = '\0';
    if (!b || b->n <= 0 || (!b->tokens && !b->embd))
        return md_llm_error(ctx, MD_ERR_INVALID, "empty batch or no tokens and no embeddings");
    double t0 = md_llm_now_ms();
    int32_t n = b->n, nb = ctx->params.n_batch, n_vocab = ctx->model->hp.n_vocab;
    ctx->n_logits = 0;
    ctx->n_last_rows = 0;
    TRY(md_llm_check_room(ctx, n));
    TRY(md_llm_ensure_logits(ctx, b->all_logits ? n : 1));
    md_kv_snapshot_take(ctx->kv, &ctx->snap);
    int rc = MD_OK;
    for (int32_t row0 = 0; row0 < n && !rc; row0 += nb) {
        int32_t c = n - row0 < nb ? n - row0 : nb;
        bool last = row0 + c == n;
        float *dst = b->all_logits ? ctx->logits + (size_t)row0 * (size_t)n_vocab
                                   : (last ? ctx->logits : NULL);
        rc = decode_chunk(ctx, b, row0, c, dst);
    }
    ctx->n_rows = 0;
    if (rc) {
        md_kv_snapshot_restore(ctx->kv, &ctx->snap);
        return rc;
    }
    ctx->n_logits = b->all_logits ? n : 1;
    ctx->n_last_rows = n;
    double dt = md_llm_now_ms() - t0;
    if (n > 1) {
        ctx->timings.prefill_ms += dt;
        ctx->timings.n_prefill += n;
        ctx->timings.n_prefill_calls++;
    } else {
        ctx->timings.decode_ms += dt;
        ctx->timings.n_decode++;
    }
    return MD_OK;
}

int md_decode(struct md_context *ctx, const int32_t *tokens, int32_t n, bool all_logits)
{
    if (ctx && !tokens)
        return md_llm_error(ctx, MD_ERR_INVALID, "md_decode: tokens is NULL");
    struct md_batch b = { .n = n, .tokens = tokens, .all_logits = all_logits };
    return md_decode_batch(ctx, &b);
}

int md_decode_embd(struct md_context *ctx, const float *embd, int32_t n, bool all_logits)
{
    if (ctx && !embd)
        return md_llm_error(ctx, MD_ERR_INVALID, "md_decode_embd: embd is NULL");
    struct md_batch b = { .n = n, .embd = embd, .all_logits = all_logits };
    return md_decode_batch(ctx, &b);
}

const float *md_get_logits(struct md_context *ctx, int32_t i)
{
    if (!ctx || ctx->n_logits <= 0)
        return NULL;
    if (i == -1 || i == ctx->n_last_rows - 1)
        return ctx->logits + (size_t)(ctx->n_logits - 1) * (size_t)ctx->model->hp.n_vocab;
    if (ctx->n_logits == 1 || i < 0 || i >= ctx->n_logits)
        return NULL;
    return ctx->logits + (size_t)i * (size_t)ctx->model->hp.n_vocab;
}

int32_t md_n_logits(const struct md_context *ctx)
{
    return ctx ? ctx->n_logits : 0;
}

/* ---- accessors for reduction code ------------------------------------ */

int32_t md_llm_n_rows(const struct md_context *ctx) { return ctx->n_rows; }
const int32_t *md_llm_row_pos(const struct md_context *ctx) { return ctx->row_pos; }
struct md_tensor md_llm_q(const struct md_context *ctx) { return rows(&ctx->q, ctx->n_rows); }
struct md_tensor md_llm_hidden(const struct md_context *ctx) { return rows(&ctx->x, ctx->n_rows); }
struct md_backend *md_llm_backend(struct md_context *ctx) { return ctx->be; }

struct md_tensor md_llm_lse(const struct md_context *ctx)
{
    struct md_tensor t = ctx->lse;
    t.ne[0] = ctx->n_rows;
    t.ne[1] = ctx->model->hp.n_head;
    t.nbytes = sizeof(float) * (size_t)ctx->n_rows * (size_t)ctx->model->hp.n_head;
    t.owned = false;
    return t;
}
