/* FlashVID (docs/reduction-methods.md §10): per segment of similar frames,
 * attention- and diversity-based token selection (ADTS) in each frame, then
 * the other tokens merged along trees that link a token to its best match
 * in the previous frame, then the tree roots merged spatially by DPC-kNN.
 * Also DPC-kNN itself, which HoliTom shares. Pure host-array algorithms. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reduce-impl.h"

#define KNN 7   /* the reference's neighbour count for DPC-kNN */

static float dist(const float *a, const float *b, int32_t D)
{
    double s = 0.0;
    for (int32_t d = 0; d < D; d++) {
        double t = (double)a[d] - b[d];
        s += t * t;
    }
    return (float)sqrt(s / D);
}

/* Mean of the k smallest of v[0..n) (v is reordered). */
static double mean_smallest(float *v, int32_t n, int32_t k)
{
    double s = 0.0;
    for (int32_t i = 0; i < k; i++) {
        int32_t m = i;
        for (int32_t j = i + 1; j < n; j++)
            if (v[j] < v[m])
                m = j;
        float t = v[i];
        v[i] = v[m];
        v[m] = t;
        s += (double)v[i] * v[i];
    }
    return k > 0 ? s / k : 0.0;
}

int32_t md_reduce_dpc_knn(const float *x, int32_t n, int32_t D, int32_t k_c, int32_t knn,
                          int32_t *centre, int32_t *assign)
{
    if (n <= 0)
        return 0;
    k_c = k_c < 1 ? 1 : k_c > n ? n : k_c;
    knn = knn < 1 ? 1 : knn > n ? n : knn;
    float *d = malloc(sizeof(float) * (size_t)n * (size_t)n);
    float *row = malloc(sizeof(float) * (size_t)n);
    float *rho = malloc(sizeof(float) * (size_t)n), *score = malloc(sizeof(float) * (size_t)n);
    if (!d || !row || !rho || !score) {
        free(d), free(row), free(rho), free(score);
        return -1;
    }
    float dmax = 0.0f;
    for (int32_t i = 0; i < n; i++)
        for (int32_t j = 0; j < n; j++) {
            d[(size_t)i * n + j] = i == j ? 0.0f : dist(x + (size_t)i * D, x + (size_t)j * D, D);
            dmax = d[(size_t)i * n + j] > dmax ? d[(size_t)i * n + j] : dmax;
        }
    for (int32_t i = 0; i < n; i++) {
        memcpy(row, d + (size_t)i * n, sizeof(float) * (size_t)n);
        rho[i] = (float)exp(-mean_smallest(row, n, knn));
    }
    for (int32_t i = 0; i < n; i++) {
        float sig = dmax;
        for (int32_t j = 0; j < n; j++)
            if (rho[j] > rho[i] && d[(size_t)i * n + j] < sig)
                sig = d[(size_t)i * n + j];
        score[i] = rho[i] * sig;
    }
    md_reduce_topk(score, n, k_c, centre);
    for (int32_t i = 0; i < n; i++) {
        int32_t best = 0;
        for (int32_t c = 0; c < k_c; c++) {
            if (centre[c] == i) {
                best = c;
                break;
            }
            if (d[(size_t)i * n + centre[c]] < d[(size_t)i * n + centre[best]])
                best = c;
        }
        assign[i] = best;
    }
    free(d), free(row), free(rho), free(score);
    return k_c;
}

void md_reduce_flashvid_budget(const struct md_flashvid_params *p, int32_t n, int32_t *b,
                               int32_t *b_adts, int32_t *b_sttm)
{
    int32_t B = p->tokens > 0 ? p->tokens
                              : (int32_t)ceil((double)n * p->keep * p->expansion - 1e-9);
    B = B < 1 ? 1 : B > n ? n : B;
    int32_t A = (int32_t)ceil((double)B * p->alpha - 1e-9);
    A = A > B ? B : A;
    *b = B;
    *b_adts = A;
    *b_sttm = B - A;
}

int32_t md_reduce_dyseg(const float *g, int32_t F, int32_t D, float thresh, int32_t min_segs,
                        int32_t *start)
{
    if (F <= 0) {
        start[0] = 0;
        return 0;
    }
    /* cut[f]: a segment ends after frame f; sim of a cut pair reads as 1
     * (as the reference) so the fill-up below takes uncut pairs only */
    bool *cut = calloc((size_t)F, sizeof(bool));
    float *sim = malloc(sizeof(float) * (size_t)F);
    if (!cut || !sim) {   /* no memory: one segment, still a valid partition */
        free(cut), free(sim);
        start[0] = 0;
        start[1] = F;
        return 1;
    }
    int32_t n_cut = 0;
    for (int32_t f = 0; f + 1 < F; f++) {
        sim[f] = md_reduce_cosine(g + (size_t)f * D, g + (size_t)(f + 1) * D, D);
        if (sim[f] < thresh) {
            cut[f] = true;
            n_cut++;
        }
    }
    while (n_cut + 1 < min_segs && n_cut < F - 1) {
        int32_t m = -1;
        for (int32_t f = 0; f + 1 < F; f++)
            if (!cut[f] && (m < 0 || sim[f] < sim[m]))
                m = f;
        cut[m] = true;
        n_cut++;
    }
    int32_t n = 0;
    start[n++] = 0;
    for (int32_t f = 0; f + 1 < F; f++)
        if (cut[f])
            start[n++] = f + 1;
    start[n] = F;
    free(cut), free(sim);
    return n;
}

int32_t md_reduce_adts(const float *x, const float *a, const float *rel, int32_t n, int32_t D,
                       int32_t k, int32_t *idx)
{
    k = k < 0 ? 0 : k > n ? n : k;
    if (k == 0)
        return 0;
    float *w = malloc(sizeof(float) * (size_t)n * (size_t)n);
    float *near = malloc(sizeof(float) * (size_t)n);   /* min over chosen rows, per column */
    bool *taken = calloc((size_t)n, sizeof(bool));
    if (!w || !near || !taken) {
        free(w), free(near), free(taken);
        return -1;
    }
    for (int32_t i = 0; i < n; i++)
        for (int32_t j = 0; j < n; j++) {
            float dij = 1.0f - md_reduce_cosine(x + (size_t)i * D, x + (size_t)j * D, D);
            w[(size_t)i * n + j] = dij * (a ? a[j] : 1.0f) * (rel ? rel[j] : 1.0f);
        }
    /* first pick: the column whose smallest off-diagonal entry is largest */
    for (int32_t j = 0; j < n; j++) {
        near[j] = FLT_MAX;
        for (int32_t i = 0; i < n; i++)
            if (i != j && w[(size_t)i * n + j] < near[j])
                near[j] = w[(size_t)i * n + j];
    }
    for (int32_t t = 0; t < k; t++) {
        int32_t best = -1;
        for (int32_t j = 0; j < n; j++)
            if (!taken[j] && (best < 0 || near[j] > near[best]))
                best = j;
        taken[best] = true;
        for (int32_t j = 0; j < n; j++) {
            float v = w[(size_t)best * n + j];
            near[j] = t == 0 || v < near[j] ? v : near[j];
        }
    }
    int32_t m = 0;
    for (int32_t j = 0; j < n; j++)
        if (taken[j])
            idx[m++] = j;
    free(w), free(near), free(taken);
    return m;
}

/* The value of the (k+1)-th largest of v[0..n) (k < n): edges need more. */
static float kth_largest(const float *v, int32_t n, int32_t k)
{
    float *c = malloc(sizeof(float) * (size_t)n);
    if (!c)
        return -1.0f;
    memcpy(c, v, sizeof(float) * (size_t)n);
    for (int32_t i = 0; i <= k; i++)   /* partial selection sort, descending */
        for (int32_t j = i + 1; j < n; j++)
            if (c[j] > c[i]) {
                float t = c[i];
                c[i] = c[j];
                c[j] = t;
            }
    float r = c[k];
    free(c);
    return r;
}

int32_t md_reduce_tstm(float *x, const bool *skip, int32_t F, int32_t n, int32_t D, float thresh,
                       int32_t bound, bool *root)
{
    size_t T = (size_t)F * (size_t)n;
    float *m = malloc(sizeof(float) * T), *cnt = malloc(sizeof(float) * T);
    int32_t *par = malloc(sizeof(int32_t) * T);
    if (!m || !cnt || !par) {
        free(m), free(cnt), free(par);
        return -1;
    }
    for (size_t i = 0; i < T; i++) {
        m[i] = -1.0f;
        par[i] = -1;
        cnt[i] = 1.0f;
    }
    for (int32_t t = 1; t < F; t++)
        for (int32_t j = 0; j < n; j++) {
            size_t c = (size_t)t * n + j;
            for (int32_t q = 0; !skip[c] && q < n; q++) {
                size_t p = (size_t)(t - 1) * n + q;
                if (skip[p])
                    continue;
                float s = md_reduce_cosine(x + c * D, x + p * D, D);
                if (par[c] < 0 || s > m[c]) {
                    m[c] = s;
                    par[c] = q;
                }
            }
        }
    int32_t edges = 0;
    for (size_t i = 0; i < T; i++)
        edges += m[i] > thresh;
    if ((int64_t)T - edges < bound && bound > 0) {
        float th = bound >= (int32_t)T ? 1.0f : kth_largest(m, (int32_t)T, (int32_t)T - bound);
        thresh = th > -1.0f + 1e-6f ? th : -1.0f + 1e-6f;
    }
    /* sums flow from the last frame to the roots; a root's row ends as its
     * tree's mean */
    for (int32_t t = F - 1; t >= 0; t--)
        for (int32_t j = 0; j < n; j++) {
            size_t c = (size_t)t * n + j;
            bool merged = t > 0 && par[c] >= 0 && m[c] > thresh;
            root[c] = !skip[c] && !merged;
            if (!merged)
                continue;
            size_t p = (size_t)(t - 1) * n + par[c];
            for (int32_t d = 0; d < D; d++)
                x[p * D + d] += x[c * D + d];
            cnt[p] += cnt[c];
        }
    int32_t roots = 0;
    for (size_t i = 0; i < T; i++) {
        if (!root[i])
            continue;
        roots++;
        for (int32_t d = 0; d < D; d++)
            x[i * D + d] /= cnt[i];
    }
    free(m), free(cnt), free(par);
    return roots;
}

/* e_j = x_j . (mean of the segment's frame means): v2's event relevance. */
static void event_relevance(const float *x, int32_t F, int32_t n, int32_t D, float *rel)
{
    double *g = calloc((size_t)D, sizeof(double));
    if (!g) {
        for (size_t i = 0; i < (size_t)F * n; i++)
            rel[i] = 1.0f;
        return;
    }
    for (size_t i = 0; i < (size_t)F * n; i++)
        for (int32_t d = 0; d < D; d++)
            g[d] += x[i * D + d];
    for (size_t i = 0; i < (size_t)F * n; i++) {
        double s = 0.0;
        for (int32_t d = 0; d < D; d++)
            s += x[i * D + d] * (g[d] / ((double)F * n));
        rel[i] = (float)s;
    }
    free(g);
}

/* k_c DPC-kNN clusters of the rows ids[0..nr) of x, each becoming the
 * plain mean of its members at its centre's row; keep flags the centres. */
static int cluster_mean(float *x, const int32_t *ids, int32_t nr, int32_t D, int32_t kc,
                        bool *keep)
{
    float *r = malloc(sizeof(float) * (size_t)nr * D);
    double *sum = calloc((size_t)nr * D, sizeof(double));
    int32_t *centre = malloc(sizeof(int32_t) * (size_t)nr);
    int32_t *as = malloc(sizeof(int32_t) * (size_t)nr), *cnt = calloc((size_t)nr, sizeof(int32_t));
    int rc = r && sum && centre && as && cnt ? 0 : -1;
    for (int32_t i = 0; !rc && i < nr; i++)
        memcpy(r + (size_t)i * D, x + (size_t)ids[i] * D, sizeof(float) * (size_t)D);
    if (!rc)
        kc = md_reduce_dpc_knn(r, nr, D, kc, kc < KNN ? kc : KNN, centre, as);
    rc = rc || kc < 0 ? -1 : 0;
    for (int32_t i = 0; !rc && i < nr; i++) {
        cnt[as[i]]++;
        for (int32_t d = 0; d < D; d++)
            sum[(size_t)as[i] * D + d] += r[(size_t)i * D + d];
    }
    for (int32_t c = 0; !rc && c < kc; c++) {
        float *dst = x + (size_t)ids[centre[c]] * D;
        for (int32_t d = 0; d < D; d++)
            dst[d] = (float)(sum[(size_t)c * D + d] / cnt[c]);
        keep[ids[centre[c]]] = true;
    }
    free(r), free(sum), free(centre), free(as), free(cnt);
    return rc;
}

/* The roots of one frame, merged down by ratio (>= 1: all kept). */
static int merge_roots(float *x, const bool *root, int32_t n, int32_t D, double ratio,
                       bool *keep)
{
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1)), nr = 0;
    if (!ids)
        return -1;
    for (int32_t j = 0; j < n; j++)
        if (root[j])
            ids[nr++] = j;
    int rc = 0;
    if (ratio >= 1.0)
        for (int32_t i = 0; i < nr; i++)
            keep[ids[i]] = true;
    else if (nr > 0 && ratio > 0.0)   /* B_sttm = 0: the roots are dropped */
        rc = cluster_mean(x, ids, nr, D, (int32_t)ceil(nr * ratio - 1e-9), keep);
    free(ids);
    return rc;
}

/* One segment (F frames of x, modified in place): keep[F][n] flags the
 * output rows (ADTS picks, merged roots). */
static int segment(float *x, const float *a, int32_t F, int32_t n, int32_t D,
                   const struct md_flashvid_params *p, bool *keep)
{
    int32_t B, BA, BS;
    md_reduce_flashvid_budget(p, n, &B, &BA, &BS);
    size_t T = (size_t)F * n;
    float *rel = p->adts_v1 ? NULL : malloc(sizeof(float) * T);
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)n);
    bool *skip = calloc(T, sizeof(bool)), *root = calloc(T, sizeof(bool));
    int rc = idx && skip && root && (p->adts_v1 || rel) ? 0 : -1;
    if (!rc && rel)
        event_relevance(x, F, n, D, rel);
    for (int32_t t = 0; !rc && t < F; t++) {
        size_t o = (size_t)t * n;
        int32_t k = md_reduce_adts(x + o * D, a ? a + o : NULL, rel ? rel + o : NULL, n, D, BA,
                                   idx);
        rc = k < 0 ? -1 : 0;
        for (int32_t i = 0; i < k; i++)
            skip[o + idx[i]] = keep[o + idx[i]] = true;
    }
    int32_t roots = 0;
    if (!rc && F > 1) {
        roots = md_reduce_tstm(x, skip, F, n, D, p->temp_thresh, B * F, root);
    } else if (!rc) {   /* one frame: its non-ADTS rows are the roots */
        for (size_t i = 0; i < T; i++)
            roots += root[i] = !skip[i];
    }
    rc = roots < 0 ? -1 : rc;
    double ratio = roots > 0 ? (double)BS * F / roots : 1.0;
    for (int32_t t = 0; !rc && t < F; t++)
        rc = merge_roots(x + (size_t)t * n * D, root + (size_t)t * n, n, D, ratio,
                         keep + (size_t)t * n);
    free(rel), free(idx), free(skip), free(root);
    return rc;
}

int32_t md_reduce_flashvid(const float *x, const float *a, int32_t F, int32_t n, int32_t D,
                           const struct md_flashvid_params *p, float *out, int32_t *out_frame,
                           int32_t *out_src)
{
    size_t T = (size_t)F * n;
    float *w = malloc(sizeof(float) * (T ? T : 1) * D), *g = calloc((size_t)F * D + 1, sizeof(float));
    int32_t *start = malloc(sizeof(int32_t) * (size_t)(F + 1));
    bool *keep = calloc(T ? T : 1, sizeof(bool));
    int32_t rc = w && g && start && keep ? 0 : -1;
    if (!rc) {
        memcpy(w, x, sizeof(float) * T * D);
        for (size_t i = 0; i < T; i++)   /* frame descriptors: mean of the frame's rows */
            for (int32_t d = 0; d < D; d++)
                g[(i / n) * D + d] += x[i * D + d] / (float)n;
    }
    int32_t ns = rc ? 0 : md_reduce_dyseg(g, F, D, p->seg_thresh, p->min_segs, start);
    for (int32_t s = 0; !rc && s < ns; s++) {
        size_t o = (size_t)start[s] * n;
        rc = segment(w + o * D, a ? a + o : NULL, start[s + 1] - start[s], n, D, p, keep + o);
    }
    int32_t m = 0;
    for (size_t i = 0; !rc && i < T; i++) {
        if (!keep[i])
            continue;
        memcpy(out + (size_t)m * D, w + i * D, sizeof(float) * (size_t)D);
        out_frame[m] = (int32_t)(i / n);
        out_src[m++] = (int32_t)(i % n);
    }
    free(w), free(g), free(start), free(keep);
    return rc ? -1 : m;
}
