/* Full forward passes of tiny random models against the naive double
 * reference in md_tiny_llm.h: llama with GQA, qwen2 with biases, quantized
 * weights, tied output, partial RoPE, linear scaling. Also: token-by-token
 * decoding equals a batched prefill, n_batch chunking, embedding-row input,
 * KV compaction and the per-layer position policy, context-full and abort
 * leaving the cache untouched. The contexts use exact_matmul: these are
 * checks of the forward's logic against tight f32 bounds, and the default
 * decode of quantized weights rounds the activations to 8 bits (measured
 * on its own in test_qdot). */
#include "md_test.h"
#include "md_tiny_llm.h"
#include "llm.h"

#define N_TOK 12

static const int32_t toks[N_TOK] = { 1, 17, 42, 5, 88, 3, 60, 61, 9, 23, 77, 2 };

static struct md_context *new_ctx(struct md_model *m, int n_ctx, int n_batch, int n_threads)
{
    struct md_context_params cp = md_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch;
    cp.n_threads = n_threads;
    cp.exact_matmul = true;
    struct md_context *ctx = NULL;
    char err[256];
    int rc = md_context_new(m, &cp, &ctx, err, sizeof err);
    CHECKF(rc == MD_OK, "context: %s", err);
    return ctx;
}

/* Batched prefill (all logits) against the reference, then token-by-token
 * against the batch. tol: reference tolerance (relative to max |logit|). */
static void check_model(const struct tiny_cfg *cfg, const char *what, double tol)
{
    struct tiny_model t;
    CHECK(tiny_build(&t, cfg) == 0);
    struct md_model *m = NULL;
    char err[256];
    int rc = tiny_load(&t, &m, err, sizeof err);
    CHECKF(rc == MD_OK, "%s: load: %s", what, err);
    if (rc) {
        tiny_free(&t);
        return;
    }
    int nv = cfg->n_vocab;
    int32_t pos[N_TOK];
    for (int i = 0; i < N_TOK; i++)
        pos[i] = i;
    double *ref = malloc(sizeof(double) * N_TOK * nv);
    tiny_ref_forward(&t, toks, pos, N_TOK, ref);

    struct md_context *ctx = new_ctx(m, 64, 512, 2);
    rc = md_decode(ctx, toks, N_TOK, true);
    CHECKF(rc == MD_OK, "%s: decode: %s", what, md_context_error(ctx));
    CHECK(md_n_logits(ctx) == N_TOK);
    float *batch = malloc(sizeof(float) * N_TOK * nv);
    for (int i = 0; i < N_TOK; i++) {
        const float *lg = md_get_logits(ctx, i);
        CHECK(lg != NULL);
        if (!lg)
            break;
        memcpy(batch + i * nv, lg, sizeof(float) * nv);
        double e = tiny_max_rel(lg, ref + (size_t)i * nv, nv);
        CHECKF(e < tol, "%s: row %d differs from the reference by %.3g", what, i, e);
    }
    CHECK(md_get_logits(ctx, -1) == md_get_logits(ctx, N_TOK - 1));
    CHECK(md_get_logits(ctx, N_TOK) == NULL);
    CHECK(md_context_n_past(ctx) == N_TOK);

    /* token by token, 1 thread: must equal the batch */
    md_context_free(ctx);
    ctx = new_ctx(m, 64, 512, 1);
    for (int i = 0; i < N_TOK; i++) {
        CHECK(md_decode(ctx, &toks[i], 1, false) == MD_OK);
        const float *lg = md_get_logits(ctx, -1);
        CHECK(md_get_logits(ctx, 0) == lg);
        double mb = 1e-30, md = 0;
        for (int j = 0; j < nv; j++) {
            mb = fmax(mb, fabs(batch[i * nv + j]));
            md = fmax(md, fabs(lg[j] - batch[i * nv + j]));
        }
        CHECKF(md / mb < 1e-5, "%s: token %d: step-by-step vs batch rel diff %.3g", what, i, md / mb);
    }
    struct md_timings tm = md_get_timings(ctx);
    CHECK(tm.n_decode == N_TOK && tm.n_prefill == 0);
    md_context_free(ctx);

    /* F16 cache: close to the reference, within fp16 rounding of K/V */
    struct md_context_params cp = md_context_default_params();
    cp.n_ctx = 64;
    cp.kv_type = MD_KV_F16;
    cp.exact_matmul = true;   /* like new_ctx: only the cache's rounding here */
    CHECK(md_context_new(m, &cp, &ctx, err, sizeof err) == MD_OK);
    CHECK(md_decode(ctx, toks, N_TOK, false) == MD_OK);
    double e16 = tiny_max_rel(md_get_logits(ctx, -1), ref + (size_t)(N_TOK - 1) * nv, nv);
    CHECKF(e16 < 5e-3, "%s: F16 KV differs by %.3g", what, e16);
    md_context_free(ctx);

    /* n_batch = 5: three chunks, last-row logits equal the batch's last row */
    ctx = new_ctx(m, 64, 5, 2);
    CHECK(md_decode(ctx, toks, N_TOK, false) == MD_OK);
    CHECK(md_n_logits(ctx) == 1);
    CHECK(md_get_logits(ctx, 0) == NULL);
    const float *lg = md_get_logits(ctx, -1);
    CHECK(lg && tiny_max_rel(lg, ref + (size_t)(N_TOK - 1) * nv, nv) < tol);
    tm = md_get_timings(ctx);
    CHECK(tm.n_prefill == N_TOK && tm.n_prefill_calls == 1);
    /* grown to take the prompt in one pass: every row's logits, as the
     * batch gave them; it never shrinks and stops at n_ctx */
    CHECK(md_context_reserve_batch(ctx, 0) == MD_ERR_INVALID);
    CHECK(md_context_reserve_batch(ctx, N_TOK) == MD_OK && md_context_n_batch(ctx) == N_TOK);
    md_kv_clear(ctx);
    CHECK(md_decode(ctx, toks, N_TOK, true) == MD_OK && md_n_logits(ctx) == N_TOK);
    for (int i = 0; i < N_TOK; i++)
        CHECKF(!memcmp(md_get_logits(ctx, i), batch + i * nv, sizeof(float) * nv),
               "%s: row %d after growing the batch differs", what, i);
    CHECK(md_context_reserve_batch(ctx, 3) == MD_OK && md_context_n_batch(ctx) == N_TOK);
    CHECK(md_context_reserve_batch(ctx, 1000) == MD_OK && md_context_n_batch(ctx) == 64);
    md_context_free(ctx);

    free(batch);
    free(ref);
    md_model_free(m);
    tiny_free(&t);
}

/* Embedding rows give the same result as the token ids they embed, alone
 * or mixed into a token batch. */
static void check_embd_input(void)
{
    struct tiny_cfg cfg = tiny_default("llama");
    struct tiny_model t;
    CHECK(tiny_build(&t, &cfg) == 0);
    struct md_model *m;
    char err[256];
    CHECK(tiny_load(&t, &m, err, sizeof err) == MD_OK);
    int e = cfg.n_embd, nv = cfg.n_vocab;
    float *embd = malloc(sizeof(float) * N_TOK * e);
    for (int i = 0; i < N_TOK; i++)
        memcpy(embd + i * e, t.tok_embd + (size_t)toks[i] * e, sizeof(float) * e);

    struct md_context *a = new_ctx(m, 64, 512, 2), *b = new_ctx(m, 64, 4, 2);
    CHECK(md_decode(a, toks, N_TOK, true) == MD_OK);
    CHECK(md_decode_embd(b, embd, N_TOK, true) == MD_OK);
    for (int i = 0; i < N_TOK; i++) {
        const float *la = md_get_logits(a, i), *lb = md_get_logits(b, i);
        double md = 0;
        for (int j = 0; j < nv; j++)
            md = fmax(md, fabs(la[j] - lb[j]));
        CHECKF(md < 1e-5, "embd row %d differs by %g", i, md);
    }
    /* mixed: rows 3..6 from embd, in a context with n_batch 4 (split runs) */
    md_kv_clear(b);
    int32_t mixed[N_TOK];
    memcpy(mixed, toks, sizeof mixed);
    for (int i = 3; i < 7; i++)
        mixed[i] = MD_TOKEN_EMBD;
    struct md_batch batch = { .n = N_TOK, .tokens = mixed, .embd = embd + 3 * e, .all_logits = true };
    CHECK(md_decode_batch(b, &batch) == MD_OK);
    for (int i = 0; i < N_TOK; i++) {
        const float *la = md_get_logits(a, i), *lb = md_get_logits(b, i);
        double md = 0;
        for (int j = 0; j < nv; j++)
            md = fmax(md, fabs(la[j] - lb[j]));
        CHECKF(md < 1e-5, "mixed row %d differs by %g", i, md);
    }
    /* an embd row without embd, and a bad token id, are refused cleanly */
    batch.embd = NULL;
    CHECK(md_decode_batch(b, &batch) == MD_ERR_INVALID);
    int32_t bad = nv;
    CHECK(md_decode(b, &bad, 1, false) == MD_ERR_INVALID);
    CHECK(strstr(md_context_error(b), "out of range") != NULL);
    CHECK(md_context_n_past(b) == N_TOK);
    md_context_free(a);
    md_context_free(b);
    free(embd);
    md_model_free(m);
    tiny_free(&t);
}

/* One layer: K/V depend only on the token and its position, so compacting
 * the cache then decoding equals a fresh run over the kept tokens with
 * their original positions, and the layer-length policy shifts the new
 * token's position to the cache length. */
static void check_compaction(void)
{
    struct tiny_cfg cfg = tiny_default("qwen2");
    cfg.n_layer = 1;
    struct tiny_model t;
    CHECK(tiny_build(&t, &cfg) == 0);
    struct md_model *m;
    char err[256];
    CHECK(tiny_load(&t, &m, err, sizeof err) == MD_OK);
    int nv = cfg.n_vocab;
    const int32_t keep[3] = { 0, 2, 3 };
    int32_t rt[4] = { toks[0], toks[2], toks[3], toks[4] };
    double ref[4 * 96];

    for (int policy = 0; policy < 2; policy++) {
        struct md_context *ctx = new_ctx(m, 64, 512, 2);
        struct md_kv_cache *kv = md_context_kv(ctx);
        CHECK(md_decode(ctx, toks, 4, false) == MD_OK);
        CHECK(md_kv_cache_keep(kv, 0, keep, 3) == MD_OK);
        CHECK(md_kv_cache_len(kv, 0) == 3);
        CHECK(md_kv_cache_set_pos_policy(kv, 0, policy ? MD_KV_POS_LAYER_LEN : MD_KV_POS_SEQUENCE) == MD_OK);
        CHECK(md_kv_cache_next_pos(kv, 0) == (policy ? 3 : 4));
        CHECK(md_decode(ctx, &toks[4], 1, false) == MD_OK);
        int32_t rp[4] = { 0, 2, 3, policy ? 3 : 4 };
        tiny_ref_forward(&t, rt, rp, 4, ref);
        double e = tiny_max_rel(md_get_logits(ctx, -1), ref + 3 * nv, nv);
        CHECKF(e < 1e-4, "policy %d: compacted decode differs by %.3g", policy, e);
        const int32_t *p = md_kv_cache_pos(kv, 0);
        CHECK(p[0] == 0 && p[1] == 2 && p[2] == 3 && p[3] == rp[3]);
        md_context_free(ctx);
    }

    /* layer stepping: keep rows mid-prefill (identity keep changes nothing) */
    struct md_context *ctx = new_ctx(m, 64, 512, 2);
    struct md_batch b = { .n = 5, .tokens = toks };
    float *lg = malloc(sizeof(float) * nv);
    const int32_t all5[5] = { 0, 1, 2, 3, 4 };
    CHECK(md_llm_begin(ctx, &b, 0, 5) == MD_OK);
    CHECK(md_llm_layer(ctx, 0) == MD_OK);
    CHECK(md_llm_n_rows(ctx) == 5);
    struct md_tensor lse = md_llm_lse(ctx);
    CHECK(lse.ne[0] == 5 && lse.ne[1] == cfg.n_head);
    CHECK(md_llm_keep_rows(ctx, all5, 5) == MD_OK);
    const int32_t bad[2] = { 3, 1 };
    CHECK(md_llm_keep_rows(ctx, bad, 2) == MD_ERR_INVALID);
    CHECK(md_llm_end(ctx, false, lg) == MD_OK);
    int32_t rp5[5] = { 0, 1, 2, 3, 4 };
    double ref5[5 * 96];
    tiny_ref_forward(&t, toks, rp5, 5, ref5);
    CHECK(tiny_max_rel(lg, ref5 + 4 * nv, nv) < 1e-4);
    CHECK(md_context_n_past(ctx) == 5);
    md_context_free(ctx);

    /* md_llm_want_last: the last layer runs the last 2 rows alone, every
     * row's key and value still reach the cache */
    ctx = new_ctx(m, 64, 512, 2);
    CHECK(md_llm_begin(ctx, &b, 0, 5) == MD_OK);
    md_llm_want_last(ctx, 2);
    for (int32_t il = 0; il < cfg.n_layer; il++)
        CHECK(md_llm_layer(ctx, il) == MD_OK);
    CHECK(md_llm_n_rows(ctx) == 2);
    CHECK(md_llm_row_pos(ctx)[0] == 3 && md_llm_row_pos(ctx)[1] == 4);
    CHECK(md_llm_lse(ctx).ne[0] == 2);
    CHECK(md_llm_end(ctx, true, lg) == MD_ERR_INVALID);   /* rows 0..2 never reached the end */
    CHECK(md_llm_end(ctx, false, lg) == MD_OK);
    CHECK(tiny_max_rel(lg, ref5 + 4 * nv, nv) < 1e-4);
    CHECK(md_kv_cache_len(md_context_kv(ctx), cfg.n_layer - 1) == 5);
    const int32_t t6[6] = { toks[0], toks[1], toks[2], toks[3], toks[4], toks[1] };
    int32_t rp6[6] = { 0, 1, 2, 3, 4, 5 };
    double ref6[6 * 96];
    tiny_ref_forward(&t, t6, rp6, 6, ref6);
    CHECK(md_decode(ctx, &t6[5], 1, false) == MD_OK);
    CHECK(tiny_max_rel(md_get_logits(ctx, -1), ref6 + 5 * nv, nv) < 1e-4);
    free(lg);
    md_context_free(ctx);
    md_model_free(m);
    tiny_free(&t);
}

static bool abort_after(void *user)
{
    int *n = user;
    return --*n < 0;
}

static void check_full_and_abort(void)
{
    struct tiny_cfg cfg = tiny_default("llama");
    struct tiny_model t;
    CHECK(tiny_build(&t, &cfg) == 0);
    struct md_model *m;
    char err[256];
    CHECK(tiny_load(&t, &m, err, sizeof err) == MD_OK);
    struct md_context *ctx = new_ctx(m, 8, 512, 1);
    CHECK(md_context_n_batch(ctx) == 8);   /* clamped to n_ctx */
    CHECK(md_decode(ctx, toks, 6, false) == MD_OK);
    size_t bytes = md_kv_cache_bytes(md_context_kv(ctx));
    CHECK(bytes == (size_t)2 * cfg.n_layer * 6 * (cfg.n_head_kv * 16) * sizeof(float));
    CHECK(md_decode(ctx, toks, 3, false) == MD_ERR_CONTEXT_FULL);
    CHECK(strstr(md_context_error(ctx), "context full") != NULL);
    CHECK(md_context_n_past(ctx) == 6);
    CHECK(md_kv_cache_len(md_context_kv(ctx), 1) == 6);
    CHECK(md_decode(ctx, toks, 0, false) == MD_ERR_INVALID);
    CHECK(md_decode(ctx, NULL, 1, false) == MD_ERR_INVALID);
    CHECK(md_kv_truncate(ctx, 4) == MD_OK && md_context_n_past(ctx) == 4);
    CHECK(md_kv_truncate(ctx, 5) == MD_ERR_INVALID);
    md_context_free(ctx);

    /* abort in the middle of the second layer run: nothing is kept */
    int budget = 1;
    struct md_context_params cp = md_context_default_params();
    cp.n_ctx = 32;
    cp.abort_callback = abort_after;
    cp.abort_callback_user = &budget;
    CHECK(md_context_new(m, &cp, &ctx, err, sizeof err) == MD_OK);
    CHECK(md_decode(ctx, toks, 4, false) == MD_ERR_ABORTED);
    CHECK(md_context_n_past(ctx) == 0);
    CHECK(md_kv_cache_len(md_context_kv(ctx), 0) == 0);
    CHECK(md_get_logits(ctx, -1) == NULL);
    md_context_free(ctx);

    /* bad context parameters */
    cp = md_context_default_params();
    cp.isa = "sse9";
    CHECK(md_context_new(m, &cp, &ctx, err, sizeof err) == MD_ERR_INVALID && ctx == NULL);
    CHECK(strstr(err, "sse9") != NULL);
    md_model_free(m);
    tiny_free(&t);
}

int main(void)
{
    struct tiny_cfg c = tiny_default("llama");         /* GQA 4/2 */
    check_model(&c, "llama gqa f32", 1e-4);
    c.tied = 1;
    c.n_rot = 8;                                       /* partial rotary */
    c.rope_linear = 4.0f;
    c.seed = 77;
    check_model(&c, "llama tied partial-rope linear", 1e-4);
    c = tiny_default("llama");
    c.n_head_kv = 1;                                   /* MQA */
    c.wtype = MD_TYPE_F16;
    c.rope_base = 0;                                   /* default 10000 */
    check_model(&c, "llama mqa f16", 1e-4);
    c = tiny_default("qwen2");                         /* biases, NEOX */
    c.rope_base = 1000000.0f;
    check_model(&c, "qwen2 biases", 1e-4);
    c.wtype = MD_TYPE_Q8_0;
    c.n_head_kv = 4;
    c.seed = 5;
    check_model(&c, "qwen2 q8_0", 1e-4);
    check_embd_input();
    check_compaction();
    check_full_and_abort();
    return md_test_finish("forward");
}
