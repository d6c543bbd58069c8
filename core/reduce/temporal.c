/* Video: DyCoke's temporal token merging (TTM) and our spatio-temporal
 * 3x3xT merge, both on projected frame features. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reduce-impl.h"

/* DyCoke pass 1 pairs (2i, 2i+1); pass 2 re-prunes frame i+2 of each
 * 4-frame window against frame i (docs/reduction-methods.md §3).
 * Generalised to any window: odd positions against their predecessor, even
 * ones against the window's anchor. Unlike the reference (range(0, T-4,
 * 4)) the last window is covered too: streaming never knows which window
 * is the last. */
int32_t md_reduce_dycoke_ref(int32_t f)
{
    if (f <= 0)
        return -1;
    return f % 2 ? f - 1 : 0;
}

int32_t md_reduce_dycoke_frame(const float *cur, const float *ref, int32_t n, int32_t D, float K,
                               int32_t *keep)
{
    if (n <= 0)
        return 0;
    int32_t k = (int32_t)((1.0 - (double)K) * n);
    k = k < 0 ? 0 : k > n ? n : k;
    /* (1 - K) * n < 1 (K = 0.9 on a 3x3 frame) would prune a frame away:
     * it keeps its most changed row; only K >= 1 asks for none */
    if (k == 0 && K < 1.0f)
        k = 1;
    float *dis = malloc(sizeof(float) * (size_t)n);
    if (!dis) {   /* no memory: keep the frame whole rather than fail */
        for (int32_t j = 0; j < n; j++)
            keep[j] = j;
        return n;
    }
    /* lowest similarity first = highest dissimilarity */
    for (int32_t j = 0; j < n; j++)
        dis[j] = -md_reduce_cosine(cur + (size_t)j * D, ref + (size_t)j * D, D);
    md_reduce_topk(dis, n, k, keep);
    free(dis);
    return k;
}

/* Mean off-diagonal cosine of the window's win*win*T tokens (same identity
 * as the spatial merge: |sum u|^2 - sum |u|^2). */
static float st_window_score(const float *x, int32_t T, int32_t n, int32_t D, const int32_t *cells,
                             int32_t nc, double *acc)
{
    for (int32_t e = 0; e < D; e++)
        acc[e] = 0.0;
    double self = 0.0;
    int32_t m = T * nc;
    for (int32_t t = 0; t < T; t++)
        for (int32_t c = 0; c < nc; c++) {
            const float *r = x + ((size_t)t * n + cells[c]) * (size_t)D;
            double nn = 0.0;
            for (int32_t e = 0; e < D; e++)
                nn += (double)r[e] * r[e];
            if (nn <= 0.0)
                continue;
            double inv = 1.0 / sqrt(nn);
            for (int32_t e = 0; e < D; e++)
                acc[e] += r[e] * inv;
            self += 1.0;
        }
    if (m < 2)
        return 1.0f;
    double tot = 0.0;
    for (int32_t e = 0; e < D; e++)
        tot += acc[e] * acc[e];
    return (float)((tot - self) / ((double)m * (m - 1)));
}

static void st_merge_window(float *x, int32_t T, int32_t n, int32_t D, const int32_t *cells,
                            int32_t nc, bool *keep)
{
    float *dst = x + (size_t)cells[nc - 1] * D;   /* frame 0, bottom-right cell */
    double *sum = calloc((size_t)D, sizeof(double));
    if (!sum)
        return;
    for (int32_t t = 0; t < T; t++)
        for (int32_t c = 0; c < nc; c++) {
            const float *r = x + ((size_t)t * n + cells[c]) * (size_t)D;
            for (int32_t e = 0; e < D; e++)
                sum[e] += r[e];
            keep[(size_t)t * n + cells[c]] = false;
        }
    for (int32_t e = 0; e < D; e++)
        dst[e] = (float)(sum[e] / (double)(T * nc));
    keep[cells[nc - 1]] = true;
    free(sum);
}

int32_t md_reduce_stmerge(float *x, int32_t T, int32_t gh, int32_t gw, int32_t D, int32_t win,
                          float thresh, bool *keep)
{
    int32_t n = gh * gw, nwx = win > 0 ? gw / win : 0, nwy = win > 0 ? gh / win : 0;
    for (int32_t i = 0; i < T * n; i++)
        keep[i] = true;
    int32_t *cells = malloc(sizeof(int32_t) * (size_t)(win > 0 ? win * win : 1));
    double *acc = malloc(sizeof(double) * (size_t)(D > 0 ? D : 1));
    if (!cells || !acc || T <= 0 || D <= 0)
        nwx = nwy = 0;
    for (int32_t wy = 0; wy < nwy; wy++)
        for (int32_t wx = 0; wx < nwx; wx++) {
            for (int32_t k = 0; k < win * win; k++)
                cells[k] = (wy * win + k / win) * gw + wx * win + k % win;
            if (st_window_score(x, T, n, D, cells, win * win, acc) >= thresh)
                st_merge_window(x, T, n, D, cells, win * win, keep);
        }
    free(cells);
    free(acc);
    int32_t left = 0;
    for (int32_t i = 0; i < T * n; i++)
        left += keep[i];
    return left;
}
