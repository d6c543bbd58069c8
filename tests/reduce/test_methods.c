/* VisionZip's and CDPruner's rules on hand-made inputs
 * (docs/reduction-methods.md): dominant set and stride targets, the merge
 * rule checked by hand, similarity deciding membership; the DPP's greedy
 * MAP against a naive step-wise determinant maximisation and a brute-force
 * search, its picks on orthogonal, clustered and duplicated tokens, the
 * relevance normalisation. */
#include <math.h>
#include <stdint.h>

#include "md_test.h"
#include "reduce-impl.h"

/* ---- VisionZip ---------------------------------------------------------- */

static void vz_split(void)
{
    int32_t d, c;
    md_reduce_visionzip_split(576, 0.11f, 0, 54.0f / 64.0f, &d, &c);   /* 63 = 53 + 10 */
    CHECKF(d == 53 && c == 10, "576 x 0.11: %d + %d", d, c);
    md_reduce_visionzip_split(196, 0.0f, 50, 54.0f / 64.0f, &d, &c);  /* HoliTom port: 42 + 8 */
    CHECKF(d == 42 && c == 8, "tokens=50: %d + %d", d, c);
    md_reduce_visionzip_split(9, 0.25f, 0, 54.0f / 64.0f, &d, &c);    /* 2 = 1 + 1 */
    CHECKF(d == 1 && c == 1, "9 x 0.25: %d + %d", d, c);
    md_reduce_visionzip_split(9, 0.0f, 0, 0.5f, &d, &c);              /* never empty */
    CHECK(d == 1 && c == 0);
}

/* 24 tokens in D = 2: scores pick 4 dominant ones; the 20 left get C = 4
 * targets at stride 5 of their order; every member goes to the target of
 * its direction. */
static void vz_rules(void)
{
    enum { N = 24, D = 2 };
    float x[N * D], score[N], out[N * D];
    int32_t src[N], osrc[N];
    static const int32_t dom[4] = { 2, 9, 15, 20 };
    for (int32_t j = 0; j < N; j++) {
        score[j] = 0.001f * (float)j;
        src[j] = 100 + j;
        x[j * D] = 1.0f;   /* all along x: one cluster, except below */
        x[j * D + 1] = 0.0f;
    }
    for (int32_t i = 0; i < 4; i++)
        score[dom[i]] = 1.0f + (float)(3 - i);   /* score order differs from index order */
    /* remaining order: 0 1 3 4 5 6 7 8 10 11 12 13 14 16 17 18 19 21 22 23;
     * targets at 0, 5, 10, 15 of it: rows 0, 6, 12, 18 */
    x[6 * D] = 0.0f; x[6 * D + 1] = 1.0f;      /* target 6 points along y */
    x[7 * D] = 0.0f; x[7 * D + 1] = 2.0f;      /* 7 and 8 too: members of 6 */
    x[8 * D] = 0.0f; x[8 * D + 1] = 4.0f;
    int32_t k = md_reduce_visionzip(x, score, NULL, src, N, D, 4, 4, false, out, osrc);
    CHECK(k == 8);
    for (int32_t i = 0; i < 4; i++)   /* dominant ascending by index, not by score */
        CHECKF(osrc[i] == 100 + dom[i] && out[i * D] == 1.0f, "dominant %d: src %d", i, osrc[i]);
    static const int32_t tgt[4] = { 0, 6, 12, 18 };
    for (int32_t t = 0; t < 4; t++)
        CHECKF(osrc[4 + t] == 100 + tgt[t], "contextual %d stands at src %d", t, osrc[4 + t]);
    /* target 6 = (0,1) + mean((0,2), (0,4)) = (0, 4) */
    CHECKF(out[5 * D] == 0.0f && out[5 * D + 1] == 4.0f, "target 6 -> (%g, %g)", out[5 * D],
           out[5 * D + 1]);
    /* the x-direction members (14 of them) tie between targets 0, 12, 18:
     * all go to the first, 0; target 0 = (1,0) + mean = (2, 0); 12 and 18
     * have no member and stay themselves */
    CHECKF(out[4 * D] == 2.0f && out[4 * D + 1] == 0.0f, "target 0 -> (%g, %g)", out[4 * D],
           out[4 * D + 1]);
    CHECK(out[6 * D] == 1.0f && out[7 * D] == 1.0f);
    /* merge=mean: (1,0) and 14 members equal to it stay (1,0); target 6:
     * ((0,1)+(0,2)+(0,4))/3 */
    k = md_reduce_visionzip(x, score, NULL, src, N, D, 4, 4, true, out, osrc);
    CHECK(k == 8 && out[4 * D] == 1.0f && fabsf(out[5 * D + 1] - 7.0f / 3.0f) < 1e-6f);
    /* forced rows are dominant first; no score: evenly spaced dominant */
    bool force[N] = { false };
    force[23] = true;
    k = md_reduce_visionzip(x, score, force, NULL, N, D, 2, 0, false, out, osrc);
    CHECKF(k == 2 && osrc[0] == 2 && osrc[1] == 23, "forced: %d rows, %d %d", k, osrc[0], osrc[1]);
    k = md_reduce_visionzip(x, NULL, NULL, NULL, N, D, 3, 1, false, out, osrc);
    CHECK(k == 4 && osrc[0] == 0 && osrc[1] == 8 && osrc[2] == 16 && osrc[3] == 1);
}

/* Membership follows similarity, not position: two directions A and B
 * interleaved over the rows; each target absorbs exactly the rows of its
 * direction (checked through their z components, which differ). */
static void vz_groups(void)
{
    enum { N = 10, D = 3 };
    static const bool in_b[N] = { false, false, true, true, false, true, false, false, true, false };
    float x[N * D], out[N * D];
    int32_t osrc[N];
    for (int32_t j = 0; j < N; j++) {
        x[j * D] = in_b[j] ? 0.0f : 1.0f;
        x[j * D + 1] = in_b[j] ? 1.0f : 0.0f;
        x[j * D + 2] = 0.01f * (float)j;
    }
    /* dominant: row 0 (no score: stride); 9 rows left, C = 2, stride 4:
     * targets 1 (A) and 5 (B) */
    int32_t k = md_reduce_visionzip(x, NULL, NULL, NULL, N, D, 1, 2, true, out, osrc);
    CHECK(k == 3 && osrc[0] == 0 && osrc[1] == 1 && osrc[2] == 5);
    /* target 1 with 4, 6, 7, 9; target 5 with 2, 3, 8 (plain means) */
    float za = (0.01f + 0.04f + 0.06f + 0.07f + 0.09f) / 5.0f, zb = (0.05f + 0.02f + 0.03f + 0.08f) / 4.0f;
    CHECKF(out[D] == 1.0f && out[D + 1] == 0.0f && fabsf(out[D + 2] - za) < 1e-6f,
           "target 1 (%g, %g, %g)", out[D], out[D + 1], out[D + 2]);
    CHECKF(out[2 * D] == 0.0f && out[2 * D + 1] == 1.0f && fabsf(out[2 * D + 2] - zb) < 1e-6f,
           "target 5 (%g, %g, %g)", out[2 * D], out[2 * D + 1], out[2 * D + 2]);
}

/* ---- CDPruner ----------------------------------------------------------- */

/* det of the k x k principal minor of L at idx (Gaussian elimination). */
static double minor_det(const float *L, int32_t n, const int32_t *idx, int32_t k)
{
    double a[8][8];
    for (int32_t i = 0; i < k; i++)
        for (int32_t j = 0; j < k; j++)
            a[i][j] = L[(size_t)idx[i] * n + idx[j]];
    double det = 1.0;
    for (int32_t c = 0; c < k; c++) {
        int32_t p = c;
        for (int32_t r = c + 1; r < k; r++)
            if (fabs(a[r][c]) > fabs(a[p][c]))
                p = r;
        if (a[p][c] == 0.0)
            return 0.0;
        if (p != c) {
            for (int32_t j = 0; j < k; j++) {
                double t = a[c][j];
                a[c][j] = a[p][j];
                a[p][j] = t;
            }
            det = -det;
        }
        det *= a[c][c];
        for (int32_t r = c + 1; r < k; r++) {
            double f = a[r][c] / a[c][c];
            for (int32_t j = c; j < k; j++)
                a[r][j] -= f * a[c][j];
        }
    }
    return det;
}

static uint64_t rng(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 33;
}

/* Random features and relevances, n = 8: the greedy pick equals the naive
 * greedy (each step the token maximising det of the grown set), and its
 * det is within the greedy's known gap of the brute-force best. */
static void dpp_vs_naive(void)
{
    enum { N = 8, D = 5, K = 3 };
    uint64_t st = 7;
    for (int trial = 0; trial < 20; trial++) {
        float x[N * D], rel[N], L[N * N];
        for (int32_t i = 0; i < N * D; i++)
            x[i] = (float)(rng(&st) % 2001) / 1000.0f - 1.0f;
        for (int32_t i = 0; i < N; i++)
            rel[i] = 0.1f + (float)(rng(&st) % 900) / 1000.0f;
        md_reduce_cdpruner_kernel(x, rel, N, D, L);
        int32_t got[K];
        CHECK(md_reduce_dpp_greedy(L, N, K, got) == K);
        int32_t naive[K];
        bool used[N] = { false };
        for (int32_t t = 0; t < K; t++) {
            int32_t best = -1;
            double best_det = -1.0;
            for (int32_t i = 0; i < N; i++) {
                if (used[i])
                    continue;
                naive[t] = i;
                double d = minor_det(L, N, naive, t + 1);
                if (d > best_det) {
                    best_det = d;
                    best = i;
                }
            }
            naive[t] = best;
            used[best] = true;
        }
        bool same = true;
        for (int32_t i = 0; i < N; i++) {
            bool in_got = false;
            for (int32_t t = 0; t < K; t++)
                in_got |= got[t] == i;
            same &= in_got == used[i];
        }
        CHECKF(same, "trial %d: greedy differs from the naive step-wise determinant", trial);
        for (int32_t t = 1; t < K; t++)
            CHECK(got[t] > got[t - 1]);   /* ascending */
        /* brute force over all 56 triples: the greedy's det is positive and
         * no better than the best */
        double best = 0.0;
        for (int32_t a = 0; a < N; a++)
            for (int32_t b = a + 1; b < N; b++)
                for (int32_t c = b + 1; c < N; c++) {
                    int32_t t3[3] = { a, b, c };
                    double d = minor_det(L, N, t3, 3);
                    best = d > best ? d : best;
                }
        double g = minor_det(L, N, got, K);
        CHECKF(g > 0.0 && g <= best * (1 + 1e-9), "trial %d: det %g, best %g", trial, g, best);
    }
}

static void dpp_rules(void)
{
    enum { N = 6 };
    /* orthogonal tokens (S = I): the k most relevant */
    float x[N * N], rel[N] = { 0.2f, 0.9f, 0.1f, 0.7f, 0.5f, 0.8f }, L[N * N];
    for (int32_t i = 0; i < N * N; i++)
        x[i] = i % (N + 1) == 0 ? 1.0f : 0.0f;
    md_reduce_cdpruner_kernel(x, rel, N, N, L);
    int32_t idx[N];
    CHECK(md_reduce_dpp_greedy(L, N, 3, idx) == 3 && idx[0] == 1 && idx[1] == 3 && idx[2] == 5);
    /* three clusters of identical vectors, equal relevance: one per cluster */
    float y[N * 3] = { 1, 0, 0,  1, 0, 0,  0, 1, 0,  0, 1, 0,  0, 0, 1,  0, 0, 1 };
    float one[N] = { 1, 1, 1, 1, 1, 1 };
    md_reduce_cdpruner_kernel(y, one, N, 3, L);
    CHECK(md_reduce_dpp_greedy(L, N, 3, idx) == 3);
    CHECKF(idx[0] / 2 != idx[1] / 2 && idx[1] / 2 != idx[2] / 2 && idx[0] / 2 != idx[2] / 2,
           "clusters: %d %d %d", idx[0], idx[1], idx[2]);
    /* k above the rank (3): no NaN, the budget still filled, no repeats */
    CHECK(md_reduce_dpp_greedy(L, N, 5, idx) == 5);
    for (int32_t t = 1; t < 5; t++)
        CHECK(idx[t] > idx[t - 1]);
    CHECK(md_reduce_dpp_greedy(L, N, 0, idx) == 0);
}

static void relevance(void)
{
    enum { N = 4, D = 2 };
    float x[N * D] = { 1, 0,  0, 1,  -1, 0,  1, 1 }, q[D] = { 1, 0 }, rel[N];
    md_reduce_cdpruner_relevance(x, N, D, q, rel);
    /* cos: 1, 0, -1, 0.707 -> (c + 1 + 1e-6) / 2 */
    CHECKF(fabsf(rel[0] - 1.0f) < 1e-5f && fabsf(rel[1] - 0.5f) < 1e-5f && rel[2] > 0.0f &&
           rel[2] < 1e-5f && fabsf(rel[3] - 0.853553f) < 1e-5f, "rel %g %g %g %g", rel[0], rel[1],
           rel[2], rel[3]);
    float same[N * D] = { 1, 0, 1, 0, 1, 0, 1, 0 };
    md_reduce_cdpruner_relevance(same, N, D, q, rel);
    CHECK(rel[0] == 1.0f && rel[3] == 1.0f);
    /* the most relevant of two otherwise identical tokens is picked */
    float L[N * N];
    float r2[N] = { 0.3f, 0.3f, 0.9f, 0.3f };
    md_reduce_cdpruner_kernel(same, r2, N, D, L);
    int32_t idx[1];
    CHECK(md_reduce_dpp_greedy(L, N, 1, idx) == 1 && idx[0] == 2);
}

int main(void)
{
    vz_split();
    vz_rules();
    vz_groups();
    dpp_vs_naive();
    dpp_rules();
    relevance();
    return md_test_finish("reduce_methods");
}
