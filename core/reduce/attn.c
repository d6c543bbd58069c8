/* Attention probabilities of a query-row x key-column block, rebuilt from
 * post-RoPE queries, the cached keys and each (head, query) row's
 * log-sum-exp that the attention kernel already wrote
 * (docs/reduction-methods.md §5.1):
 *     P[h,i,j] = exp(scale * q_hi . k_hj - lse[h][i])
 * so no L x L matrix is ever formed: cost n_q * n_k * H * d. Vision keys
 * precede the text queries, so no causal mask is needed for the MustDrop
 * block; callers asking for other blocks must pass visible keys only. */
#include <math.h>

#include "cpu-kernels.h"
#include "reduce-impl.h"

void md_reduce_attn_probs(const struct md_attn_block *b, float *out)
{
    int32_t H = b->n_head, d = b->head_dim;
    int32_t group = b->n_head_kv > 0 && H % b->n_head_kv == 0 ? H / b->n_head_kv : 1;
    float inv_h = 1.0f / (float)H;
    for (int32_t i = 0; i < b->n_q; i++) {
        float *o = out + (size_t)i * (size_t)b->n_k;
        for (int32_t j = 0; j < b->n_k; j++)
            o[j] = 0.0f;
        for (int32_t h = 0; h < H; h++) {
            const float *q = b->q + (size_t)i * (size_t)b->q_stride + (size_t)h * (size_t)d;
            float lse = b->lse[(size_t)h * (size_t)b->lse_stride + (size_t)i];
            size_t koff = (size_t)(h / group) * (size_t)d;
            for (int32_t j = 0; j < b->n_k; j++) {
                const float *k = b->k + (size_t)j * (size_t)b->k_stride + koff;
                o[j] += expf(b->scale * md_dot_f32(q, k, d) - lse);
            }
        }
        for (int32_t j = 0; j < b->n_k; j++)
            o[j] *= inv_h;
    }
}
