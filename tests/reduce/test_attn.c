/* Attention probabilities from queries, keys and the kernel's per-row
 * log-sum-exp (docs/reduction-methods.md §5.1) against a naive full causal
 * softmax over every visible key, on the tiny LLaVA LLM fixture: the
 * text-query x vision-key block and whole rows (which must sum to 1). */
#include <stdint.h>

#include "md_test.h"
#include "llm.h"
#include "reduce-impl.h"

#define DIR "../models/fixtures/vision/"

/* Naive: mean over heads of softmax over keys 0..i (causal, row i). */
static void naive_row(const float *q, const float *k, int32_t i, int32_t H, int32_t Hkv, int32_t d,
                      float *out)
{
    int32_t g = H / Hkv;
    for (int32_t j = 0; j <= i; j++)
        out[j] = 0.0f;
    double *s = malloc(sizeof(double) * (size_t)(i + 1));
    for (int32_t h = 0; h < H; h++) {
        double mx = -1e300, sum = 0;
        for (int32_t j = 0; j <= i; j++) {
            double dot = 0;
            for (int32_t e = 0; e < d; e++)
                dot += (double)q[(size_t)i * H * d + h * d + e] * k[(size_t)j * Hkv * d + (h / g) * d + e];
            s[j] = dot / sqrt((double)d);
            mx = s[j] > mx ? s[j] : mx;
        }
        for (int32_t j = 0; j <= i; j++)
            sum += exp(s[j] - mx);
        for (int32_t j = 0; j <= i; j++)
            out[j] += (float)(exp(s[j] - mx) / sum / H);
    }
    free(s);
}

int main(void)
{
    char path[512], err[256] = "";
    struct md_model_params mp = md_model_default_params();
    struct md_model *model = NULL;
    if (md_model_load(md_test_data(DIR "tiny-llava-llm-f32.gguf", path, sizeof path), &mp, &model,
                      err, sizeof err) != MD_OK)
        SKIP("LLM fixture: %s", err);
    struct md_context_params cp = md_context_default_params();
    cp.n_threads = 1;
    struct md_context *ctx = NULL;
    CHECK(md_context_new(model, &cp, &ctx, err, sizeof err) == MD_OK);
    const struct md_hparams *hp = &model->hp;
    int32_t n = 48, H = hp->n_head, Hkv = hp->n_head_kv, d = hp->head_dim;
    int32_t tok[48];
    for (int32_t i = 0; i < n; i++)
        tok[i] = 5 + (i * 37) % 700;
    struct md_batch b = { .n = n, .tokens = tok };
    CHECK(md_llm_begin(ctx, &b, 0, n) == MD_OK);
    double worst = 0, worst_sum = 0;
    for (int32_t il = 0; il < hp->n_layer; il++) {
        CHECK(md_llm_layer(ctx, il) == MD_OK);
        float *q = malloc(sizeof(float) * n * H * d), *lse = malloc(sizeof(float) * H * n);
        float *k = malloc(sizeof(float) * n * Hkv * d);
        struct md_tensor qt = md_llm_q(ctx), lt = md_llm_lse(ctx);
        CHECK(!ctx->be->ops->tensor_get(ctx->be, &qt, 0, q, sizeof(float) * n * H * d));
        CHECK(!ctx->be->ops->tensor_get(ctx->be, &lt, 0, lse, sizeof(float) * H * n));
        CHECK(!ctx->be->ops->tensor_get(ctx->be, &ctx->kv->layers[il].k, 0, k,
                                        sizeof(float) * n * Hkv * d));
        /* "vision" keys 5..29, "text" queries 30..47 */
        int32_t q0 = 30, nq = n - q0, k0 = 5, nk = 25;
        float *blk = malloc(sizeof(float) * nq * nk), *ref = malloc(sizeof(float) * n);
        struct md_attn_block ab = {
            .q = q + (size_t)q0 * H * d, .q_stride = H * d, .k = k + (size_t)k0 * Hkv * d,
            .k_stride = Hkv * d, .lse = lse + q0, .lse_stride = n, .n_q = nq, .n_k = nk,
            .n_head = H, .n_head_kv = Hkv, .head_dim = d, .scale = 1.0f / sqrtf((float)d),
        };
        md_reduce_attn_probs(&ab, blk);
        for (int32_t i = 0; i < nq; i++) {
            naive_row(q, k, q0 + i, H, Hkv, d, ref);
            for (int32_t j = 0; j < nk; j++) {
                double e = fabs(blk[i * nk + j] - ref[k0 + j]);
                worst = e > worst ? e : worst;
            }
        }
        /* whole visible rows sum to 1 */
        for (int32_t i = 0; i < n; i += 7) {
            float *row = malloc(sizeof(float) * (size_t)(i + 1));
            ab.q = q + (size_t)i * H * d;
            ab.k = k;
            ab.lse = lse + i;
            ab.n_q = 1;
            ab.n_k = i + 1;
            md_reduce_attn_probs(&ab, row);
            double s = 0;
            for (int32_t j = 0; j <= i; j++)
                s += row[j];
            worst_sum = fabs(s - 1) > worst_sum ? fabs(s - 1) : worst_sum;
            free(row);
        }
        free(q); free(lse); free(k); free(blk); free(ref);
    }
    printf("LSE block vs naive softmax: max abs err %.3g; row sums off by %.3g\n", worst, worst_sum);
    CHECKF(worst < 1e-5, "block error %g", worst);
    CHECKF(worst_sum < 1e-4, "row sum error %g", worst_sum);
    ctx->n_rows = 0;
    md_context_free(ctx);
    md_model_free(model);
    return md_test_finish("reduce_attn");
}
