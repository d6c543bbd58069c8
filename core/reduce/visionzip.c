/* VisionZip (Yang et al., CVPR 2025; docs/reduction-methods.md "VisionZip"):
 * per image, the dominant tokens by class attention, and contextual tokens
 * that each absorb the remaining tokens most similar to them. */
#include <stdlib.h>
#include <string.h>

#include "reduce-impl.h"

void md_reduce_visionzip_split(int32_t n, float keep, int32_t tokens, float dominant,
                               int32_t *n_dom, int32_t *n_ctx)
{
    int32_t t = tokens > 0 ? tokens : (int32_t)((double)keep * n + 0.5);
    t = t < 1 ? 1 : t > n ? n : t;
    /* int(), as the reference's int(S * 54 / 64); at least one dominant */
    int32_t d = (int32_t)((double)t * dominant);
    d = d < 1 ? 1 : d > t ? t : d;
    *n_dom = d;
    *n_ctx = t - d;
}

/* Stride targets in the remaining tokens' order (not by score), then every
 * other remaining token joins its most similar target (ties: the first). */
static void assign_members(const float *x, int32_t D, const int32_t *rest, int32_t n_rest,
                           int32_t C, int32_t *target, int32_t *owner)
{
    int32_t step = n_rest / C > 1 ? n_rest / C : 1;
    for (int32_t t = 0; t < C; t++)
        target[t] = t * step;
    for (int32_t r = 0; r < n_rest; r++)
        owner[r] = -1;
    for (int32_t t = 0; t < C; t++)
        owner[target[t]] = t;
    for (int32_t r = 0; r < n_rest; r++) {
        if (owner[r] >= 0 && target[owner[r]] == r)
            continue;
        int32_t best = 0;
        float best_c = -2.0f;
        for (int32_t t = 0; t < C; t++) {
            float c = md_reduce_cosine(x + (size_t)rest[r] * D, x + (size_t)rest[target[t]] * D, D);
            if (c > best_c) {
                best_c = c;
                best = t;
            }
        }
        owner[r] = C + best;   /* C + t: a member of target t (a target owns itself: t) */
    }
}

int32_t md_reduce_visionzip(const float *x, const float *score, const bool *force,
                            const int32_t *src, int32_t n, int32_t D, int32_t n_dom, int32_t n_ctx,
                            bool mean_merge, float *out, int32_t *out_src)
{
    if (n <= 0)
        return 0;
    n_dom = n_dom < 0 ? 0 : n_dom > n ? n : n_dom;
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)n), *rest = malloc(sizeof(int32_t) * (size_t)n);
    int32_t *target = malloc(sizeof(int32_t) * (size_t)n), *owner = malloc(sizeof(int32_t) * (size_t)n);
    bool *dom = calloc((size_t)n, sizeof(bool));
    float *acc = malloc(sizeof(float) * (size_t)D);
    int32_t k = 0;
    if (!idx || !rest || !target || !owner || !dom || !acc)
        goto done;
    if (score) {
        k = md_reduce_topk_forced(score, force, n, n_dom, idx);
    } else {   /* no attention known: evenly spaced */
        for (k = 0; k < n_dom; k++)
            idx[k] = (int32_t)((int64_t)k * n / n_dom);
    }
    for (int32_t i = 0; i < k; i++) {
        dom[idx[i]] = true;
        memcpy(out + (size_t)i * D, x + (size_t)idx[i] * D, sizeof(float) * (size_t)D);
        out_src[i] = src ? src[idx[i]] : idx[i];
    }
    int32_t n_rest = 0;
    for (int32_t j = 0; j < n; j++)
        if (!dom[j])
            rest[n_rest++] = j;
    int32_t C = n_ctx < n_rest ? n_ctx : n_rest;
    if (C <= 0)
        goto done;
    assign_members(x, D, rest, n_rest, C, target, owner);
    for (int32_t t = 0; t < C; t++) {
        int32_t m = 0;
        memset(acc, 0, sizeof(float) * (size_t)D);
        for (int32_t r = 0; r < n_rest; r++)
            if (owner[r] == C + t) {
                const float *xr = x + (size_t)rest[r] * D;
                for (int32_t d = 0; d < D; d++)
                    acc[d] += xr[d];
                m++;
            }
        const float *xt = x + (size_t)rest[target[t]] * D;
        float *o = out + (size_t)(k + t) * D;
        /* faithful: target + mean(members), the reference's rule; mean: the
         * plain mean of target and members */
        for (int32_t d = 0; d < D; d++)
            o[d] = mean_merge ? (xt[d] + acc[d]) / (float)(m + 1)
                              : xt[d] + (m ? acc[d] / (float)m : 0.0f);
        out_src[k + t] = src ? src[rest[target[t]]] : rest[target[t]];
    }
    k += C;
done:
    free(idx);
    free(rest);
    free(target);
    free(owner);
    free(dom);
    free(acc);
    return k;
}
