/* HoliTom's outer-LLM merging (docs/reduction-methods.md §11): the clip is
 * cut into windows of frames by dynamic programming so that as many tokens
 * as possible repeat at the same position throughout their window; such a
 * "static" position becomes one token (the window's mean, then clustered),
 * the rest stay per-frame "dynamic" tokens chosen by attention. Pure
 * host-array algorithms. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reduce-impl.h"

#define KNN 7   /* the reference's neighbour count for DPC-kNN */

void md_reduce_holitom_sigma(const float *x, int32_t F, int32_t n, int32_t D, float *sigma)
{
    for (int32_t f = 0; f + 1 < F; f++)
        for (int32_t j = 0; j < n; j++)
            sigma[(size_t)f * n + j] = md_reduce_cosine(x + ((size_t)f * n + j) * D,
                                                        x + ((size_t)(f + 1) * n + j) * D, D);
}

int64_t md_reduce_holitom_gain(const float *sigma, int32_t n, int32_t s, int32_t e, float tau)
{
    int64_t st = 0;
    for (int32_t j = 0; j < n; j++) {
        bool all = true;
        for (int32_t t = s; all && t < e; t++)
            all = sigma[(size_t)t * n + j] > tau;
        st += all;
    }
    return st * (e - s);
}

int32_t md_reduce_holitom_windows(const float *sigma, int32_t F, int32_t n, float tau,
                                  int32_t max_window, int32_t *start, int64_t *removed)
{
    /* dp[i + 1]: best gain over frames 0..i; len[i]: its last window's length */
    int64_t *dp = calloc((size_t)F + 1, sizeof(int64_t));
    int32_t *len = malloc(sizeof(int32_t) * (size_t)(F > 0 ? F : 1));
    bool *stat = malloc(sizeof(bool) * (size_t)(n > 0 ? n : 1));
    if (!dp || !len || !stat) {
        free(dp), free(len), free(stat);
        return -1;
    }
    for (int32_t i = 0; i < F; i++) {
        dp[i + 1] = dp[i];
        len[i] = 1;
        int32_t n_stat = n;
        for (int32_t j = 0; j < n; j++)
            stat[j] = true;
        /* window [i-w+1, i]: the static set shrinks as the window grows */
        for (int32_t w = 2; w <= i + 1 && w <= max_window; w++) {
            int32_t pair = i - w + 1;
            for (int32_t j = 0; j < n; j++)
                if (stat[j] && !(sigma[(size_t)pair * n + j] > tau)) {
                    stat[j] = false;
                    n_stat--;
                }
            int64_t cand = dp[i - w + 1] + (int64_t)n_stat * (w - 1);
            if (cand > dp[i + 1]) {
                dp[i + 1] = cand;
                len[i] = w;
            }
        }
    }
    int32_t w = 0;
    for (int32_t i = F - 1; i >= 0; i -= len[i])   /* back-track, ends first */
        start[w++] = i - len[i] + 1;
    for (int32_t a = 0, b = w - 1; a < b; a++, b--) {
        int32_t t = start[a];
        start[a] = start[b];
        start[b] = t;
    }
    start[w] = F;
    *removed = dp[F];
    free(dp), free(len), free(stat);
    return w;
}

void md_reduce_holitom_merge(const float *x, int32_t D, int32_t c, const int32_t *member,
                             int32_t n_member, float beta, float *out)
{
    int32_t m = 0;
    for (int32_t i = 0; i < n_member; i++)
        m += member[i] != c;
    for (int32_t d = 0; d < D; d++) {
        double s = 0.0;
        for (int32_t i = 0; i < n_member; i++)
            if (member[i] != c)
                s += x[(size_t)member[i] * D + d];
        out[d] = m ? (float)(beta * x[(size_t)c * D + d] + (1.0 - beta) * s / m)
                   : x[(size_t)c * D + d];
    }
}

/* Output being built: rows with their frame, index and static flag. */
struct sink {
    float *out;
    int32_t *frame, *src;
    bool *stat;
    int32_t m, D;
};

static void emit(struct sink *k, const float *row, int32_t f, int32_t j, bool stat)
{
    memcpy(k->out + (size_t)k->m * k->D, row, sizeof(float) * (size_t)k->D);
    k->frame[k->m] = f;
    k->src[k->m] = j;
    k->stat[k->m++] = stat;
}

/* Static positions pos[0..S) of window [s, e]: their means over the
 * window, clustered to round(S * r') rows merged by the beta rule, emitted
 * in frame s at their centres' positions. */
static int emit_static(const float *x, int32_t s, int32_t e, int32_t n, int32_t D,
                       const int32_t *pos, int32_t S, double r, float beta, struct sink *k)
{
    float *mean = calloc((size_t)S * D, sizeof(float)), *row = malloc(sizeof(float) * (size_t)D);
    int32_t *centre = malloc(sizeof(int32_t) * (size_t)S), *as = malloc(sizeof(int32_t) * (size_t)S);
    int32_t *mem = malloc(sizeof(int32_t) * (size_t)S);
    int rc = mean && row && centre && as && mem ? 0 : -1;
    for (int32_t i = 0; !rc && i < S; i++)
        for (int32_t f = s; f <= e; f++)
            for (int32_t d = 0; d < D; d++)
                mean[(size_t)i * D + d] += x[((size_t)f * n + pos[i]) * D + d] / (float)(e - s + 1);
    int32_t kc = (int32_t)lround(S * r);
    kc = kc < 1 ? 1 : kc;
    if (!rc)
        kc = md_reduce_dpc_knn(mean, S, D, kc, kc < KNN ? kc : KNN, centre, as);
    rc = rc || kc < 0 ? -1 : 0;
    for (int32_t c = 0; !rc && c < kc; c++) {
        int32_t nm = 0;
        for (int32_t i = 0; i < S; i++)
            if (as[i] == c)
                mem[nm++] = i;
        md_reduce_holitom_merge(mean, D, centre[c], mem, nm, beta, row);
        emit(k, row, s, pos[centre[c]], true);
    }
    free(mean), free(row), free(centre), free(as), free(mem);
    return rc;
}

/* Frame f's dynamic rows (positions pos[0..S)): the top ceil(S * r) by
 * score, or all of them. */
static int emit_dynamic(const float *x, const float *a, int32_t f, int32_t n, int32_t D,
                        const int32_t *pos, int32_t S, double r, bool select, struct sink *k)
{
    int32_t keep = select ? (int32_t)ceil(S * r - 1e-9) : S;
    keep = keep > S ? S : keep;
    float *sc = malloc(sizeof(float) * (size_t)(S > 0 ? S : 1));
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)(S > 0 ? S : 1));
    if (!sc || !idx) {
        free(sc), free(idx);
        return -1;
    }
    for (int32_t i = 0; i < S; i++)
        sc[i] = a ? a[(size_t)f * n + pos[i]] : 0.0f;
    md_reduce_topk(sc, S, keep, idx);
    for (int32_t i = 0; i < keep; i++)
        emit(k, x + ((size_t)f * n + pos[idx[i]]) * D, f, pos[idx[i]], false);
    free(sc), free(idx);
    return 0;
}

/* Window [s, e]: static positions (sigma > tau on every pair) merged, then
 * each frame's dynamic rows. */
static int window(const float *x, const float *a, const float *sigma, int32_t s, int32_t e,
                  int32_t n, int32_t D, const struct md_holitom_params *p, double r,
                  struct sink *k)
{
    int32_t *stat = malloc(sizeof(int32_t) * (size_t)n), *dyn = malloc(sizeof(int32_t) * (size_t)n);
    int32_t ns = 0, nd = 0;
    int rc = stat && dyn ? 0 : -1;
    for (int32_t j = 0; !rc && j < n; j++) {
        bool all = e > s;
        for (int32_t t = s; all && t < e; t++)
            all = sigma[(size_t)t * n + j] > p->tau;
        if (all)
            stat[ns++] = j;
        else
            dyn[nd++] = j;
    }
    if (!rc && ns > 0)
        rc = emit_static(x, s, e, n, D, stat, ns, r, p->beta, k);
    for (int32_t f = s; !rc && f <= e; f++)
        rc = emit_dynamic(x, a, f, n, D, dyn, nd, r, p->select_dynamic, k);
    free(stat), free(dyn);
    return rc;
}

int32_t md_reduce_holitom(const float *x, const float *a, int32_t F, int32_t n, int32_t D,
                          const struct md_holitom_params *p, float *out, int32_t *out_frame,
                          int32_t *out_src, bool *out_static)
{
    if (F <= 0 || n <= 0)
        return 0;
    float *sigma = malloc(sizeof(float) * (size_t)(F > 1 ? F - 1 : 1) * n);
    int32_t *start = malloc(sizeof(int32_t) * (size_t)(F + 1));
    if (!sigma || !start) {
        free(sigma), free(start);
        return -1;
    }
    md_reduce_holitom_sigma(x, F, n, D, sigma);
    int64_t removed = 0;
    int32_t nw = md_reduce_holitom_windows(sigma, F, n, p->tau, p->max_window, start, &removed);
    /* r' = r / (share left after the temporal merge): the total stays near r */
    double total = (double)F * n;
    double r = nw < 0 ? 0.0 : fmin((double)p->keep * total / (total - (double)removed), 1.0);
    struct sink k = { out, out_frame, out_src, out_static, 0, D };
    int rc = nw < 0 ? -1 : 0;
    for (int32_t w = 0; !rc && w < nw; w++)
        rc = window(x, a, sigma, start[w], start[w + 1] - 1, n, D, p, r, &k);
    free(sigma), free(start);
    return rc ? -1 : k.m;
}
