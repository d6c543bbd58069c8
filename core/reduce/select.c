/* Token-selection algorithms on host arrays: top-k, MustDrop's dual filter
 * and local spatial merge, HiRED budgets, uniform pooling, random subsets,
 * the global cap. Pure functions, so tests can check them directly. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reduce-impl.h"

/* ---- top-k ------------------------------------------------------------ */

/* Descending score, then ascending index: deterministic ties. */
static bool ranks_before(const float *s, int32_t a, int32_t b)
{
    return s[a] > s[b] || (s[a] == s[b] && a < b);
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* The k best-ranked indices (skipping flagged ones) in rank order, kept
 * in a sorted list with binary-search insertion: O(n log k) comparisons
 * plus the moves, no allocation. Runs once per image or pruning layer. */
static void select_best(const float *s, const bool *skip, int32_t n, int32_t k, int32_t *out)
{
    int32_t m = 0;
    for (int32_t j = 0; j < n; j++) {
        if (skip && skip[j])
            continue;
        if (m == k && !ranks_before(s, j, out[m - 1]))
            continue;
        int32_t lo = 0, hi = m;
        while (lo < hi) {
            int32_t mid = (lo + hi) / 2;
            if (ranks_before(s, out[mid], j))
                lo = mid + 1;
            else
                hi = mid;
        }
        int32_t end = m < k ? m : k - 1;
        memmove(out + lo + 1, out + lo, sizeof(int32_t) * (size_t)(end - lo));
        out[lo] = j;
        if (m < k)
            m++;
    }
}

void md_reduce_topk(const float *score, int32_t n, int32_t k, int32_t *idx)
{
    md_reduce_topk_forced(score, NULL, n, k, idx);
}

int32_t md_reduce_topk_forced(const float *score, const bool *force, int32_t n, int32_t k,
                              int32_t *idx)
{
    if (n <= 0 || k <= 0) {
        int32_t m = 0;
        for (int32_t j = 0; force && j < n; j++)
            if (force[j])
                idx[m++] = j;
        return m;
    }
    if (k > n)
        k = n;
    int32_t m = 0;
    for (int32_t j = 0; force && j < n; j++)
        if (force[j])
            idx[m++] = j;
    if (m < k)
        select_best(score, force, n, k - m, idx + m);
    int32_t total = m < k ? k : m;
    qsort(idx, (size_t)total, sizeof(int32_t), cmp_i32);
    return total;
}

/* ---- MustDrop stage B: dual-attention filter ------------------------------
 * (docs/reduction-methods.md §1.3) */

int32_t md_reduce_dual_filter(const float *M, int32_t t, int32_t n, float tau_g, float tau_i,
                              const bool *key, int32_t *keep)
{
    if (n <= 0)
        return 0;
    double *g = calloc((size_t)n, sizeof(double));
    float *mx = calloc((size_t)n, sizeof(float));
    int32_t m = 0;
    if (!g || !mx) {   /* keep everything rather than fail the prompt */
        for (int32_t j = 0; j < n; j++)
            keep[j] = j;
        m = n;
        goto out;
    }
    double G = 0.0;
    for (int32_t i = 0; i < t; i++)
        for (int32_t j = 0; j < n; j++) {
            float p = M[(size_t)i * (size_t)n + (size_t)j];
            g[j] += p;
            mx[j] = p > mx[j] ? p : mx[j];
        }
    for (int32_t j = 0; j < n; j++)
        G += g[j];
    for (int32_t j = 0; j < n; j++) {
        bool drop = g[j] < (double)tau_g * G && mx[j] < tau_i;
        if (!drop || (key && key[j]))
            keep[m++] = j;
    }
out:
    free(g);
    free(mx);
    return m;
}

/* ---- MustDrop stage A: local spatial merge --------------------------------
 * (docs/reduction-methods.md §1.1) */

int32_t md_reduce_lsm_n_windows(int32_t gh, int32_t gw, int32_t win)
{
    return win > 0 && gh > 0 && gw > 0 ? (gh / win) * (gw / win) : 0;
}

float md_reduce_cosine(const float *a, const float *b, int32_t D)
{
    double ab = 0, aa = 0, bb = 0;
    for (int32_t i = 0; i < D; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return aa > 0 && bb > 0 ? (float)(ab / sqrt(aa * bb)) : 0.0f;
}

/* Mean off-diagonal cosine of m rows given by raster index:
 * sum_{a != b} u_a.u_b = |sum u|^2 - sum |u|^2, O(m*D) not O(m^2*D). */
static float mean_pair_cosine(const float *x, const int32_t *rows, int32_t m, int32_t D,
                              double *acc)
{
    if (m < 2)
        return 1.0f;
    for (int32_t e = 0; e < D; e++)
        acc[e] = 0.0;
    double self = 0.0;
    for (int32_t a = 0; a < m; a++) {
        const float *r = x + (size_t)rows[a] * (size_t)D;
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
    double tot = 0.0;
    for (int32_t e = 0; e < D; e++)
        tot += acc[e] * acc[e];
    return (float)((tot - self) / ((double)m * (m - 1)));
}

/* Raster indices of window w's tokens, row-major inside the window. */
static void window_rows(int32_t w, int32_t gw, int32_t win, int32_t *rows)
{
    int32_t nwx = gw / win, wy = w / nwx, wx = w % nwx;
    for (int32_t k = 0; k < win * win; k++)
        rows[k] = (wy * win + k / win) * gw + wx * win + k % win;
}

void md_reduce_lsm_scores(const float *x, int32_t gh, int32_t gw, int32_t D, int32_t win,
                          float *score)
{
    int32_t nw = md_reduce_lsm_n_windows(gh, gw, win);
    int32_t *rows = malloc(sizeof(int32_t) * (size_t)(win * win > 0 ? win * win : 1));
    double *acc = malloc(sizeof(double) * (size_t)(D > 0 ? D : 1));
    for (int32_t w = 0; w < nw; w++) {
        if (!rows || !acc) {
            score[w] = -1.0f;   /* nothing merges without memory */
            continue;
        }
        window_rows(w, gw, win, rows);
        score[w] = mean_pair_cosine(x, rows, win * win, D, acc);
    }
    free(rows);
    free(acc);
}

int32_t md_reduce_lsm_count(const float *score, int32_t n_win, float thresh)
{
    int32_t r = 0;
    for (int32_t w = 0; w < n_win; w++)
        r += score[w] >= thresh;
    return r;
}

int32_t md_reduce_lsm_merge(const float *x, int32_t gh, int32_t gw, int32_t D, int32_t win,
                            const float *score, int32_t r, float *out, int32_t *src)
{
    int32_t nw = md_reduce_lsm_n_windows(gh, gw, win), n = gh * gw, ww = win * win;
    r = r < 0 ? 0 : r > nw ? nw : r;
    int32_t *top = malloc(sizeof(int32_t) * (size_t)(r > 0 ? r : 1));
    int32_t *rows = malloc(sizeof(int32_t) * (size_t)ww);
    bool *merged = calloc((size_t)n, sizeof(bool));
    if (!top || !rows || !merged)
        r = 0;
    /* top-r in descending score order (the reference's topk order) */
    if (r > 0)
        select_best(score, NULL, nw, r, top);
    int32_t o = 0;
    for (int32_t t = 0; t < r; t++) {
        window_rows(top[t], gw, win, rows);
        float *dst = out + (size_t)o * (size_t)D;
        for (int32_t e = 0; e < D; e++)
            dst[e] = 0.0f;
        for (int32_t k = 0; k < ww; k++) {
            const float *s = x + (size_t)rows[k] * (size_t)D;
            for (int32_t e = 0; e < D; e++)
                dst[e] += s[e];
            merged[rows[k]] = true;
        }
        for (int32_t e = 0; e < D; e++)
            dst[e] /= (float)ww;
        src[o++] = rows[ww - 1];
    }
    for (int32_t j = 0; j < n; j++) {
        if (merged && merged[j])
            continue;
        memcpy(out + (size_t)o * (size_t)D, x + (size_t)j * (size_t)D, sizeof(float) * (size_t)D);
        src[o++] = j;
    }
    free(top);
    free(rows);
    free(merged);
    return o;
}

/* ---- HiRED budgets (docs/reduction-methods.md §2.2) -------------------- */

/* Tile i's share of S: the reference's contiguous row-major strips, or
 * the base-image rectangle above tile i. */
static int32_t hired_count(const bool *S, int32_t per, int32_t side, int32_t nph, int32_t npw,
                           int32_t i, bool geometric)
{
    int32_t c = 0, nt = nph * npw;
    if (!geometric) {
        int64_t a = (int64_t)i * per / nt, b = (int64_t)(i + 1) * per / nt;
        for (int64_t j = a; j < b; j++)
            c += S[j];
        return c;
    }
    int32_t ty = i / npw, tx = i % npw;
    int32_t y0 = ty * side / nph, y1 = (ty + 1) * side / nph;
    int32_t x0 = tx * side / npw, x1 = (tx + 1) * side / npw;
    for (int32_t y = y0; y < y1; y++)
        for (int32_t x = x0; x < x1; x++)
            c += S[y * side + x];
    return c;
}

/* Geometric mode hands the floor's leftovers to the largest remainders so
 * the tiles use B_sub exactly (capped at `per` each). */
static void spread_remainder(const double *exact, int32_t *b, int32_t nt, int32_t per,
                             int32_t left)
{
    while (left > 0) {
        int32_t best = -1;
        double br = -1.0;
        for (int32_t i = 0; i < nt; i++) {
            double rem = exact[i] - b[i];
            if (b[i] < per && rem > br) {
                br = rem;
                best = i;
            }
        }
        if (best < 0)
            return;
        b[best]++;
        left--;
    }
}

int32_t md_reduce_hired_budgets(int32_t P, int32_t per, float rho, float alpha,
                                const float *base_l0, int32_t side, int32_t nph, int32_t npw,
                                bool geometric, int32_t *budget)
{
    if (P <= 0 || per <= 0)
        return 0;
    /* LLaVA-1.5 variant: top-int(per*rho), no split
     * (docs/reduction-methods.md §2.4) */
    if (P == 1) {
        int32_t b = (int32_t)((double)per * rho);
        budget[0] = b > per ? per : b;
        return budget[0];
    }
    int32_t total = (int32_t)((double)P * per * rho);
    int32_t base = (int32_t)((double)total * alpha);
    base = base > per ? per : base;
    int32_t sub = total - base;
    sub = sub > (P - 1) * per ? (P - 1) * per : sub;
    budget[0] = base;
    int32_t nt = P - 1, sum = base;
    if (nph * npw != nt) {   /* grid unknown: one strip per tile */
        nph = 1;
        npw = nt;
    }
    int32_t ns = (int32_t)((double)per * (1.0 - alpha));
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)per);
    bool *S = calloc((size_t)per, sizeof(bool));
    double *exact = malloc(sizeof(double) * (size_t)nt);
    int32_t *cnt = malloc(sizeof(int32_t) * (size_t)nt);
    if (!idx || !S || !exact || !cnt) {
        for (int32_t i = 1; i < P; i++)
            budget[i] = 0;
        goto out;
    }
    md_reduce_topk(base_l0, per, ns, idx);
    for (int32_t j = 0; j < (ns < per ? ns : per); j++)
        S[idx[j]] = true;
    int64_t csum = 0;
    for (int32_t i = 0; i < nt; i++) {
        cnt[i] = hired_count(S, per, side, nph, npw, i, geometric);
        csum += cnt[i];
    }
    int32_t given = 0;
    for (int32_t i = 0; i < nt; i++) {
        exact[i] = csum > 0 ? (double)cnt[i] / (double)csum * sub : (double)sub / nt;
        int32_t b = (int32_t)exact[i];
        budget[1 + i] = b > per ? per : b;
        given += budget[1 + i];
    }
    if (geometric)
        spread_remainder(exact, budget + 1, nt, per, sub - given);
    for (int32_t i = 1; i < P; i++)
        sum += budget[i];
out:
    free(idx);
    free(S);
    free(exact);
    free(cnt);
    return sum;
}

/* ---- uniform pooling ---------------------------------------------------- */

int32_t md_reduce_pool_dims(int32_t gh, int32_t gw, int32_t tokens, int32_t *oh, int32_t *ow)
{
    if (gh <= 0 || gw <= 0 || tokens >= gh * gw || tokens <= 0) {
        *oh = gh > 0 ? gh : 0;
        *ow = gw > 0 ? gw : 0;
        if (tokens <= 0 && gh > 0 && gw > 0)
            *oh = *ow = 1;
        return *oh * *ow;
    }
    double s = sqrt((double)tokens / ((double)gh * gw));
    int32_t h = (int32_t)(gh * s + 1e-9), w = (int32_t)(gw * s + 1e-9);
    h = h < 1 ? 1 : h;
    w = w < 1 ? 1 : w;
    while (h * w > tokens) {
        if (h >= w) h--; else w--;
    }
    *oh = h;
    *ow = w;
    return h * w;
}

int32_t md_reduce_uniform_pool(const float *x, int32_t gh, int32_t gw, int32_t D, int32_t tokens,
                               float *out, int32_t *src)
{
    int32_t oh, ow;
    int32_t n = md_reduce_pool_dims(gh, gw, tokens, &oh, &ow);
    for (int32_t i = 0; i < oh; i++)
        for (int32_t j = 0; j < ow; j++) {
            /* torch adaptive_avg_pool2d cell bounds */
            int32_t y0 = i * gh / oh, y1 = ((i + 1) * gh + oh - 1) / oh;
            int32_t x0 = j * gw / ow, x1 = ((j + 1) * gw + ow - 1) / ow;
            float *o = out + ((size_t)i * ow + j) * (size_t)D;
            for (int32_t e = 0; e < D; e++)
                o[e] = 0.0f;
            for (int32_t y = y0; y < y1; y++)
                for (int32_t xx = x0; xx < x1; xx++) {
                    const float *s = x + ((size_t)y * gw + xx) * (size_t)D;
                    for (int32_t e = 0; e < D; e++)
                        o[e] += s[e];
                }
            float inv = 1.0f / (float)((y1 - y0) * (x1 - x0));
            for (int32_t e = 0; e < D; e++)
                o[e] *= inv;
            src[i * ow + j] = y0 * gw + x0;
        }
    return n;
}

/* ---- random ------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void md_reduce_random_subset(uint64_t seed, int32_t n, int32_t k, int32_t *idx)
{
    if (n <= 0 || k <= 0)
        return;
    k = k > n ? n : k;
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)n);
    if (!perm) {   /* fall back to a stride: still k distinct, ascending */
        for (int32_t i = 0; i < k; i++)
            idx[i] = (int32_t)((int64_t)i * n / k);
        return;
    }
    for (int32_t i = 0; i < n; i++)
        perm[i] = i;
    uint64_t s = seed;
    for (int32_t i = 0; i < k; i++) {   /* partial Fisher-Yates */
        int32_t j = i + (int32_t)(splitmix64(&s) % (uint64_t)(n - i));
        int32_t t = perm[i]; perm[i] = perm[j]; perm[j] = t;
    }
    memcpy(idx, perm, sizeof(int32_t) * (size_t)k);
    qsort(idx, (size_t)k, sizeof(int32_t), cmp_i32);
    free(perm);
}

/* ---- global cap: water filling ----------------------------------------- */

int32_t md_reduce_cap_budgets(int32_t *n, int32_t n_blocks, int32_t cap)
{
    int64_t sum = 0;
    int32_t mx = 0;
    for (int32_t i = 0; i < n_blocks; i++) {
        sum += n[i];
        mx = n[i] > mx ? n[i] : mx;
    }
    if (cap <= 0 || sum <= cap)
        return (int32_t)sum;
    /* largest level lam with sum_i min(n_i, lam) <= cap */
    int32_t lo = 0, hi = mx;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo + 1) / 2;
        int64_t s = 0;
        for (int32_t i = 0; i < n_blocks; i++)
            s += n[i] < mid ? n[i] : mid;
        if (s <= cap) lo = mid; else hi = mid - 1;
    }
    int64_t used = 0;
    for (int32_t i = 0; i < n_blocks; i++)
        used += n[i] < lo ? n[i] : lo;
    /* the remainder, one each to blocks that lo + 1 still fits (latest
     * frames first: they are the freshest); lo is maximal, so there are
     * enough of them */
    for (int32_t i = n_blocks - 1; i >= 0; i--) {
        if (n[i] > lo && used < cap) {
            n[i] = lo + 1;
            used++;
        } else if (n[i] > lo) {
            n[i] = lo;
        }
    }
    return (int32_t)used;
}
