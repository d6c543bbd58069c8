/* CDPruner (Zhang et al., NeurIPS 2025; docs/reduction-methods.md
 * "CDPruner"): a conditional determinantal point process over one image's
 * visual tokens. The kernel L_ij = r_i cos(x_i, x_j) r_j weighs feature
 * similarity by each token's relevance r to the instruction; the greedy MAP
 * of the DPP picks the set with the (greedily) largest log det L_Y: tokens
 * relevant to the question and unlike each other. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reduce-impl.h"

/* Below this residual a token adds nothing the chosen set does not span
 * (a duplicate, or k above the kernel's rank); the reference has no guard
 * and takes sqrt of <= 0 there. */
#define DPP_EPS 1e-10

/* Greedy MAP with the incremental Cholesky update (Chen et al. 2018):
 * d_i is token i's residual variance given the chosen set, c_i its row of
 * the Cholesky factor; each step takes argmax d and updates every d by
 * e_i = (L_ji - <c_j, c_i>) / sqrt(d_j), d_i -= e_i^2. */
int32_t md_reduce_dpp_greedy(const float *L, int32_t n, int32_t k, int32_t *idx)
{
    k = k < 0 ? 0 : k > n ? n : k;
    double *d = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    double *c = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1) * (size_t)(k > 0 ? k : 1));
    bool *chosen = calloc((size_t)(n > 0 ? n : 1), sizeof(bool));
    int32_t m = 0;
    if (!d || !c || !chosen) {
        free(d);
        free(c);
        free(chosen);
        return -1;
    }
    for (int32_t i = 0; i < n; i++)
        d[i] = L[(size_t)i * n + i];
    for (; m < k; m++) {
        int32_t j = -1;
        for (int32_t i = 0; i < n; i++)
            if (!chosen[i] && (j < 0 || d[i] > d[j]))
                j = i;
        if (j < 0 || d[j] < DPP_EPS)
            break;
        chosen[j] = true;
        idx[m] = j;
        double sj = sqrt(d[j]);
        for (int32_t i = 0; i < n; i++) {
            if (chosen[i] && i != j)
                continue;
            double dot = 0.0;
            for (int32_t t = 0; t < m; t++)
                dot += c[(size_t)j * k + t] * c[(size_t)i * k + t];
            double e = ((double)L[(size_t)j * n + i] - dot) / sj;
            c[(size_t)i * k + m] = e;
            d[i] -= e * e;
        }
    }
    /* the set spans everything it can: the rest of the budget goes to the
     * most relevant tokens left (largest L_ii), so the count stays k */
    while (m < k) {
        int32_t j = -1;
        for (int32_t i = 0; i < n; i++)
            if (!chosen[i] && (j < 0 || L[(size_t)i * n + i] > L[(size_t)j * n + j]))
                j = i;
        chosen[j] = true;
        idx[m++] = j;
    }
    m = 0;
    for (int32_t i = 0; i < n; i++)   /* ascending: kept tokens stay in raster order */
        if (chosen[i])
            idx[m++] = i;
    free(d);
    free(c);
    free(chosen);
    return m;
}

void md_reduce_cdpruner_kernel(const float *x, const float *rel, int32_t n, int32_t D, float *L)
{
    float *norm = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    for (int32_t i = 0; i < n; i++) {
        double s = 0.0;
        for (int32_t d = 0; d < D; d++)
            s += (double)x[(size_t)i * D + d] * x[(size_t)i * D + d];
        if (norm)
            norm[i] = s > 0.0 ? (float)(1.0 / sqrt(s)) : 0.0f;
    }
    for (int32_t i = 0; i < n; i++)
        for (int32_t j = i; j < n; j++) {
            float s;
            if (norm) {
                double dot = 0.0;
                for (int32_t d = 0; d < D; d++)
                    dot += (double)x[(size_t)i * D + d] * x[(size_t)j * D + d];
                s = (float)(dot * norm[i] * norm[j]);
            } else {
                s = md_reduce_cosine(x + (size_t)i * D, x + (size_t)j * D, D);
            }
            if (i == j)
                s = 1.0f;   /* S_ii = 1 even for a zero row */
            L[(size_t)i * n + j] = L[(size_t)j * n + i] = rel[i] * s * rel[j];
        }
    free(norm);
}

void md_reduce_cdpruner_relevance(const float *x, int32_t n, int32_t D, const float *q, float *rel)
{
    float lo = 0.0f, hi = 0.0f;
    for (int32_t i = 0; i < n; i++) {
        rel[i] = md_reduce_cosine(x + (size_t)i * D, q, D);
        lo = i == 0 || rel[i] < lo ? rel[i] : lo;
        hi = i == 0 || rel[i] > hi ? rel[i] : hi;
    }
    /* min-max as the reference, (rho - min + 1e-6) / (max - min); all
     * equal: every token equally relevant */
    for (int32_t i = 0; i < n; i++)
        rel[i] = hi > lo ? (rel[i] - lo + 1e-6f) / (hi - lo) : 1.0f;
}
