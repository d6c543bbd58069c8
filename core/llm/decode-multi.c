/* One decode step for several sequences at once (md_decode_multi).
 *
 * n contexts of one model each advance by one token. The lead (ctxs[0])
 * runs the step on its backend: its activation buffers hold the n stacked
 * rows (row i is ctxs[i]'s token), so every norm and weight product is one
 * pass over the weights for all of them; what depends on the sequence is
 * per row: the RoPE position (each row's own, by its cache layer's policy),
 * the K/V append (each context's own cache) and the attention (row i
 * against ctxs[i]'s cache). Everything goes through the backend ops, so a
 * device backend runs it too. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "llm.h"

#define TRY(expr) do { int rc_ = (expr); if (rc_) return rc_; } while (0)

/* Rows per weight product. The CPU serves up to 8 rows with its GEMV
 * kernels (integer dots for quantized weights), where each row's result is
 * the one it gets alone; more rows take other kernels that round
 * differently, and batching must not change an answer. Those kernels read
 * the weights once per 8 rows anyway. */
#define MULTI_MM_ROWS 8

/* ctxs[bad] holds the message; every other context gets one naming it. */
static int fail_at(struct md_context *const *ctxs, int32_t n, int32_t bad, int rc)
{
    for (int32_t i = 0; i < n; i++)
        if (ctxs[i] && ctxs[i] != ctxs[bad])   /* a repeated context is the one at fault */
            snprintf(ctxs[i]->err, sizeof ctxs[i]->err, "sequence %d of the multi-sequence step: %.190s",
                     bad, ctxs[bad]->err);
    return rc;
}

/* Why context i cannot join the lead's step, or MD_OK (message set in ctxs[i]). */
static int check_member(struct md_context *const *ctxs, int32_t i, int32_t token)
{
    struct md_context *lead = ctxs[0], *c = ctxs[i];
    for (int32_t j = 0; j < i; j++)
        if (ctxs[j] == c)
            return md_llm_error(c, MD_ERR_INVALID,
                                "the same context is sequence %d and %d: a step takes one token per context",
                                j, i);
    if (c->model != lead->model)
        return md_llm_error(c, MD_ERR_INVALID,
                            "sequence %d's context has another model than sequence 0's: a step shares the weights",
                            i);
    if (c->params.exact_matmul != lead->params.exact_matmul ||
        strcmp(md_context_isa(c), md_context_isa(lead)))
        return md_llm_error(c, MD_ERR_INVALID,
                            "sequence %d's context uses other kernels (isa %s, exact_matmul %d) than sequence 0's "
                            "(%s, %d), which runs the step", i, md_context_isa(c),
                            c->params.exact_matmul, md_context_isa(lead), lead->params.exact_matmul);
    if (token < 0 || token >= lead->model->hp.n_vocab)
        return md_llm_error(c, MD_ERR_INVALID, "sequence %d: token id %d out of range [0, %d)", i, token,
                            lead->model->hp.n_vocab);
    return md_llm_check_room(c, 1);
}

static int check_args(struct md_context *const *ctxs, const int32_t *tokens, int32_t n)
{
    if (!ctxs || n <= 0 || !ctxs[0])
        return MD_ERR_INVALID;
    for (int32_t i = 0; i < n; i++)
        if (ctxs[i]) {
            ctxs[i]->err[0] = '\0';
            ctxs[i]->n_logits = 0;
        }
    struct md_context *lead = ctxs[0];
    if (!tokens)
        return fail_at(ctxs, n, 0, md_llm_error(lead, MD_ERR_INVALID, "multi-sequence step: tokens is NULL"));
    if (n > lead->params.n_batch)
        return fail_at(ctxs, n, 0, md_llm_error(lead, MD_ERR_INVALID,
                       "%d sequences in one step: more than sequence 0's n_batch %d", n,
                       lead->params.n_batch));
    for (int32_t i = 1; i < n; i++)
        if (!ctxs[i])
            return fail_at(ctxs, n, 0, md_llm_error(lead, MD_ERR_INVALID,
                           "multi-sequence step: context %d of %d is NULL", i, n));
    for (int32_t i = 0; i < n; i++) {
        int rc = check_member(ctxs, i, tokens[i]);
        if (rc)
            return fail_at(ctxs, n, i, rc);
    }
    return MD_OK;
}

int md_llm_multi_begin(struct md_context *const *ctxs, const int32_t *tokens, int32_t n)
{
    TRY(check_args(ctxs, tokens, n));
    struct md_context *lead = ctxs[0];
    struct md_backend *be = lead->be;
    /* A device backend queues each instance's work on its own stream and
     * this step works on the others' caches from the lead's: reading a
     * word through each waits for what it still has queued. */
    for (int32_t i = 1; i < n; i++) {
        int32_t word;
        struct md_backend *bi = ctxs[i]->be;
        if (bi->ops->tensor_get(bi, &ctxs[i]->pos, 0, &word, sizeof word))
            return fail_at(ctxs, n, i, md_llm_error(ctxs[i], MD_ERR_BACKEND,
                           "backend failed waiting for sequence %d's queued work", i));
    }
    memcpy(lead->ids_host, tokens, sizeof(int32_t) * (size_t)n);
    struct md_tensor ids = md_llm_vec_view(&lead->ids, 0, n), x = md_tensor_rows(&lead->x, 0, n);
    int rc = be->ops->tensor_set(be, &lead->ids, 0, lead->ids_host, sizeof(int32_t) * (size_t)n);
    if (!rc)
        rc = be->ops->get_rows(be, &lead->model->tok_embd, &ids, &x);
    if (rc)
        return fail_at(ctxs, n, 0, md_llm_error(lead, rc, "backend failed embedding the step's tokens"));
    for (int32_t i = 0; i < n; i++)
        lead->row_pos[i] = ctxs[i]->kv->seq_pos;
    lead->n_rows = n;
    lead->n_layer_pos = 0;
    lead->last_layer = -1;
    return MD_OK;
}

/* ---- one block --------------------------------------------------------- */

/* Each row's position for layer il (its own context's policy), in the
 * lead's ids_host (the ids are embedded by now). */
static const int32_t *layer_positions(struct md_context *const *ctxs, int32_t n, int32_t il)
{
    struct md_context *lead = ctxs[0];
    int32_t *pos = lead->ids_host;
    for (int32_t i = 0; i < n; i++) {
        const struct md_kv_layer *L = &ctxs[i]->kv->layers[il];
        pos[i] = L->policy == MD_KV_POS_LAYER_LEN ? L->n : lead->row_pos[i];
    }
    return pos;
}

/* Row i of the lead's k and v onto ctx's layer il, through the lead's
 * backend: the rows are the lead's, and a device orders work per instance. */
static int append_row(struct md_context *lead, struct md_context *ctx, int32_t il, int32_t i)
{
    struct md_backend *be = lead->be;
    struct md_kv_layer *L = &ctx->kv->layers[il];
    if (L->n >= ctx->kv->capacity)
        return MD_ERR_CONTEXT_FULL;
    struct md_tensor k = md_tensor_rows(&lead->k, i, 1), v = md_tensor_rows(&lead->v, i, 1);
    TRY(be->ops->set_rows(be, &L->k, L->n, &k));
    TRY(be->ops->set_rows(be, &L->v, L->n, &v));
    L->pos[L->n++] = lead->layer_pos[i];
    return MD_OK;
}

/* Row i's log-sum-exps, [n_head][1], kept in the lead's lse buffer at row i. */
struct md_tensor md_llm_multi_lse(const struct md_context *lead, int32_t i)
{
    struct md_tensor t = lead->lse;
    int32_t h = lead->model->hp.n_head;
    t.data = (float *)t.data + (size_t)i * (size_t)h;
    t.ne[0] = 1;
    t.ne[1] = h;
    t.nbytes = sizeof(float) * (size_t)h;
    t.owned = false;
    return t;
}

struct md_tensor md_llm_multi_q(const struct md_context *lead, int32_t i)
{
    return md_tensor_rows(&lead->q, i, 1);
}

/* Row i against its own cache (appended first: it sees itself). */
static int attend_row(struct md_context *const *ctxs, int32_t i, int32_t il, bool want_lse)
{
    struct md_context *lead = ctxs[0];
    const struct md_hparams *hp = &lead->model->hp;
    const struct md_kv_layer *C = &ctxs[i]->kv->layers[il];
    struct md_attn_params ap = {
        .n_q = 1, .n_kv = C->n, .q_start = C->n - 1, .n_head = hp->n_head,
        .n_head_kv = hp->n_head_kv, .head_dim = hp->head_dim,
        .scale = 1.0f / sqrtf((float)hp->head_dim), .causal = true,
    };
    struct md_tensor q = md_tensor_rows(&lead->q, i, 1), out = md_tensor_rows(&lead->att, i, 1);
    struct md_tensor lse = md_llm_multi_lse(lead, i);
    return lead->be->ops->attention(lead->be, &ap, &q, &C->k, &C->v, &out, want_lse ? &lse : NULL);
}

/* The attention half of block il; *bad: the sequence whose cache failed. */
static int attention_rows(struct md_context *const *ctxs, int32_t n, int32_t il, bool want_lse,
                          int32_t *bad)
{
    struct md_context *lead = ctxs[0];
    struct md_backend *be = lead->be;
    const struct md_layer *L = &lead->model->layers[il];
    struct md_tensor x = md_tensor_rows(&lead->x, 0, n), xb = md_tensor_rows(&lead->xb, 0, n);
    struct md_tensor att = md_tensor_rows(&lead->att, 0, n);

    TRY(md_llm_qkv(lead, il, layer_positions(ctxs, n, il)));
    for (int32_t i = 0; i < n; i++) {
        *bad = i;
        TRY(append_row(lead, ctxs[i], il, i));
        TRY(attend_row(ctxs, i, il, want_lse));
    }
    *bad = 0;
    TRY(md_llm_matmul(lead, &att, &L->wo, md_tensor_present(&L->bo) ? &L->bo : NULL, &xb));
    return be->ops->add(be, &x, &xb, &x);
}

int md_llm_multi_layer(struct md_context *const *ctxs, int32_t n, int32_t il, bool want_lse)
{
    struct md_context *lead = ctxs[0];
    if (il < 0 || il >= lead->model->hp.n_layer || lead->n_rows != n)
        return fail_at(ctxs, n, 0, md_llm_error(lead, MD_ERR_INVALID,
                       "multi-sequence layer %d with %d rows in flight, %d sequences", il,
                       lead->n_rows, n));
    int32_t bad = 0;
    lead->mm_rows = MULTI_MM_ROWS;
    int rc = attention_rows(ctxs, n, il, want_lse, &bad);
    if (!rc)
        rc = md_llm_ffn_block(lead, il);
    lead->mm_rows = 0;
    if (rc == MD_ERR_CONTEXT_FULL)
        return fail_at(ctxs, n, bad, md_llm_error(ctxs[bad], rc, "context full at layer %d: %d of %d entries",
                                                  il, ctxs[bad]->kv->layers[il].n,
                                                  ctxs[bad]->kv->capacity));
    if (rc)
        return fail_at(ctxs, n, bad, md_llm_error(ctxs[bad], rc, "backend '%s' failed in layer %d (%s)",
                                                  lead->be->ops->name, il, md_status_str(rc)));
    lead->last_layer = il;
    return MD_OK;
}

/* ---- logits ------------------------------------------------------------- */

static int output_rows(struct md_context *const *ctxs, int32_t n, float *const *logits)
{
    struct md_context *lead = ctxs[0];
    struct md_backend *be = lead->be;
    const struct md_model *m = lead->model;
    size_t row_bytes = sizeof(float) * (size_t)m->hp.n_vocab;
    struct md_tensor x = md_tensor_rows(&lead->x, 0, n), xb = md_tensor_rows(&lead->xb, 0, n);
    TRY(be->ops->rms_norm(be, &x, &m->output_norm, m->hp.rms_eps, &xb));
    TRY(md_llm_ensure_out_rows(lead, n < MULTI_MM_ROWS ? n : MULTI_MM_ROWS));
    int32_t group = lead->out_rows < MULTI_MM_ROWS ? lead->out_rows : MULTI_MM_ROWS;
    for (int32_t r = 0; r < n; r += group) {
        int32_t c = n - r < group ? n - r : group;
        struct md_tensor xc = md_tensor_rows(&lead->xb, r, c), oc = md_tensor_rows(&lead->out, 0, c);
        TRY(be->ops->matmul(be, &xc, &m->output, NULL, &oc));
        for (int32_t j = 0; j < c; j++) {
            float *dst = logits && logits[r + j] ? logits[r + j] : ctxs[r + j]->logits;
            TRY(be->ops->tensor_get(be, &oc, row_bytes * (size_t)j, dst, row_bytes));
        }
    }
    return MD_OK;
}

int md_llm_multi_end(struct md_context *const *ctxs, int32_t n, float *const *logits)
{
    struct md_context *lead = ctxs[0];
    for (int32_t i = 0; i < n; i++)
        if ((!logits || !logits[i]) && md_llm_ensure_logits(ctxs[i], 1))
            return fail_at(ctxs, n, i, MD_ERR_NOMEM);
    int rc = output_rows(ctxs, n, logits);
    if (rc)
        return fail_at(ctxs, n, 0, md_llm_error(lead, rc, "backend failed computing the step's logits (%s)",
                                                md_status_str(rc)));
    for (int32_t i = 0; i < n; i++)
        ctxs[i]->kv->seq_pos = lead->row_pos[i] + 1;
    return MD_OK;
}

/* ---- the public call ----------------------------------------------------- */

static int run_layers(struct md_context *const *ctxs, int32_t n)
{
    for (int32_t il = 0; il < ctxs[0]->model->hp.n_layer; il++) {
        for (int32_t i = 0; i < n; i++)
            if (md_llm_aborted(ctxs[i]))
                return fail_at(ctxs, n, i, md_llm_error(ctxs[i], MD_ERR_ABORTED,
                               "decode aborted by sequence %d's callback at layer %d", i, il));
        TRY(md_llm_multi_layer(ctxs, n, il, false));
    }
    return md_llm_multi_end(ctxs, n, NULL);
}

int md_decode_multi(struct md_context *const *ctxs, const int32_t *tokens, int32_t n)
{
    double t0 = md_llm_now_ms();
    TRY(md_llm_multi_begin(ctxs, tokens, n));
    for (int32_t i = 0; i < n; i++)
        md_kv_snapshot_take(ctxs[i]->kv, &ctxs[i]->snap);
    int rc = run_layers(ctxs, n);
    ctxs[0]->n_rows = 0;
    if (rc) {
        for (int32_t i = 0; i < n; i++)
            md_kv_snapshot_restore(ctxs[i]->kv, &ctxs[i]->snap);
        return rc;
    }
    /* each sequence waited the whole step for its token */
    double dt = md_llm_now_ms() - t0;
    for (int32_t i = 0; i < n; i++) {
        struct md_context *c = ctxs[i];
        c->n_logits = 1;
        c->n_last_rows = 1;
        c->timings.decode_ms += dt;
        c->timings.n_decode++;
    }
    return MD_OK;
}
