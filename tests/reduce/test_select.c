/* The methods' pure algorithms: local merge (identical windows merge,
 * orthogonal ones do not), the dual filter's truth table, key tokens
 * surviving any threshold, HiRED budgets (worked example, sums), top-k
 * ties, pooling, random subsets, the global cap, DyCoke and stmerge. */
#include <stdint.h>

#include "md_test.h"
#include "reduce-impl.h"

#define D 8

static void lsm(void)
{
    /* 6x6 grid: 4 windows. Window 0 identical tokens, window 1 orthogonal
     * basis vectors, windows 2-3 identical but different per window. */
    float x[36 * D], out[36 * D], sc[4];
    int32_t src[36];
    memset(x, 0, sizeof x);
    for (int32_t y = 0; y < 6; y++)
        for (int32_t c = 0; c < 6; c++) {
            int32_t j = y * 6 + c, w = (y / 3) * 2 + c / 3, k = (y % 3) * 3 + c % 3;
            float *r = x + j * D;
            if (w == 1)
                r[k % D] = 1.0f, r[(k + 1) % D] = k >= D ? 1.0f : 0.0f;
            else
                r[w] = 2.0f, r[7] = (float)w;
        }
    CHECK(md_reduce_lsm_n_windows(6, 6, 3) == 4 && md_reduce_lsm_n_windows(4, 4, 3) == 1);
    CHECK(md_reduce_lsm_n_windows(2, 5, 3) == 0);
    md_reduce_lsm_scores(x, 6, 6, D, 3, sc);
    CHECKF(fabsf(sc[0] - 1.0f) < 1e-5f, "identical window score %g", sc[0]);
    CHECKF(sc[1] < 0.2f, "orthogonal window score %g", sc[1]);
    CHECK(md_reduce_lsm_count(sc, 4, 0.8f) == 3);
    int32_t n = md_reduce_lsm_merge(x, 6, 6, D, 3, sc, 3, out, src);
    CHECK(n == 36 - 3 * 8);
    /* merged first (score desc, ties by index: 0, 2, 3), each at its bottom-right cell */
    CHECK(src[0] == 14 && src[1] == 32 && src[2] == 35);
    CHECK(out[0 * D + 0] == 2.0f && out[1 * D + 2] == 2.0f && out[1 * D + 7] == 2.0f);
    /* then window 1's nine tokens in raster order, unchanged */
    CHECK(src[3] == 3 && src[4] == 4 && src[5] == 5 && src[6] == 9 && src[11] == 17);
    CHECK(!memcmp(out + 3 * D, x + 3 * D, sizeof(float) * D));
    /* r = 0 is the identity */
    CHECK(md_reduce_lsm_merge(x, 6, 6, D, 3, sc, 0, out, src) == 36 && !memcmp(out, x, sizeof x));
    /* zero tokens do not crash */
    CHECK(md_reduce_lsm_merge(x, 0, 0, D, 3, sc, 2, out, src) == 0);
}

static void dual_filter(void)
{
    /* 2 text rows x 4 vision columns; G = total. Columns:
     * 0: high global, high individual -> keep
     * 1: high global, low individual  -> keep (global test fails to drop)
     * 2: low global, high individual  -> keep
     * 3: low global, low individual   -> drop */
    float M[2][4] = { { 0.30f, 0.20f, 0.00f, 0.001f }, { 0.30f, 0.20f, 0.05f, 0.001f } };
    int32_t keep[4];
    float tg = 0.1f, ti = 0.04f;   /* g = .6 .4 .05 .002, G = 1.052: share .57 .38 .048 .002 */
    int32_t n = md_reduce_dual_filter(&M[0][0], 2, 4, tg, ti, NULL, keep);
    CHECK(n == 3 && keep[0] == 0 && keep[1] == 1 && keep[2] == 2);
    float M2[1][4] = { { 0.02f, 0.5f, 0.02f, 0.02f } };   /* column 1 share .89 > tg, m .5 */
    n = md_reduce_dual_filter(&M2[0][0], 1, 4, 0.1f, 0.3f, NULL, keep);
    CHECK(n == 1 && keep[0] == 1);
    n = md_reduce_dual_filter(&M2[0][0], 1, 4, 0.1f, 0.01f, NULL, keep);   /* m test keeps all */
    CHECK(n == 4);
    /* key tokens survive any threshold */
    bool key[4] = { false, false, true, true };
    n = md_reduce_dual_filter(&M2[0][0], 1, 4, 1.0f, 1.0f, key, keep);
    CHECK(n == 2 && keep[0] == 2 && keep[1] == 3);
    n = md_reduce_dual_filter(&M2[0][0], 1, 4, 0.0f, 0.0f, NULL, keep);    /* keep-all setting */
    CHECK(n == 4);
    CHECK(md_reduce_dual_filter(&M2[0][0], 1, 0, 1, 1, NULL, keep) == 0);
    CHECK(md_reduce_dual_filter(&M2[0][0], 0, 4, 0.5f, 0.5f, NULL, keep) == 4);   /* no text */
}

static void topk(void)
{
    float s[6] = { 0.1f, 0.5f, 0.5f, 0.9f, 0.0f, 0.5f };
    int32_t idx[6];
    md_reduce_topk(s, 6, 3, idx);
    CHECK(idx[0] == 1 && idx[1] == 2 && idx[2] == 3);   /* ties: lower index first */
    md_reduce_topk(s, 6, 99, idx);
    CHECK(idx[0] == 0 && idx[5] == 5);
    bool f[6] = { true, false, false, false, true, false };
    CHECK(md_reduce_topk_forced(s, f, 6, 3, idx) == 3 && idx[0] == 0 && idx[1] == 3 && idx[2] == 4);
    CHECK(md_reduce_topk_forced(s, f, 6, 1, idx) == 2);
    CHECK(md_reduce_topk_forced(s, NULL, 0, 3, idx) == 0);
}

static void hired(void)
{
    float l0[576];
    for (int32_t j = 0; j < 576; j++)
        l0[j] = (float)((j * 7919) % 576) / 576.0f;
    int32_t b[5];
    /* the worked example of docs/reduction-methods.md §2.2:
     * P = 5, rho = 0.2, alpha = 0.5 */
    int32_t sum = md_reduce_hired_budgets(5, 576, 0.2f, 0.5f, l0, 24, 2, 2, false, b);
    CHECKF(b[0] == 288, "base %d", b[0]);
    int32_t sub = b[1] + b[2] + b[3] + b[4];
    CHECKF(sub <= 288 && sub >= 288 - 4 && sum == 288 + sub, "sub %d sum %d", sub, sum);
    sum = md_reduce_hired_budgets(5, 576, 0.2f, 0.5f, l0, 24, 2, 2, true, b);
    CHECKF(sum == 576 && b[0] == 288, "geometric: total %d", sum);
    /* salient tokens spread evenly (every odd one): every tile gets a quarter */
    float flat[576];
    for (int32_t j = 0; j < 576; j++)
        flat[j] = (float)(j % 2);
    sum = md_reduce_hired_budgets(5, 576, 0.2f, 0.5f, flat, 24, 2, 2, false, b);
    CHECK(sum == 576 && b[1] == 72 && b[2] == 72 && b[3] == 72 && b[4] == 72);
    /* strips vs quadrants: attention only on the top 6 rows */
    for (int32_t j = 0; j < 576; j++)
        flat[j] = j < 144 ? 1.0f : 0.0f;
    md_reduce_hired_budgets(5, 576, 0.2f, 0.75f, flat, 24, 2, 2, false, b);
    CHECKF(b[1] == 144 && b[2] == 0, "strip: %d %d", b[1], b[2]);   /* S = top 144 = strip 0 */
    md_reduce_hired_budgets(5, 576, 0.2f, 0.75f, flat, 24, 2, 2, true, b);
    CHECKF(b[1] == 72 && b[2] == 72 && b[3] == 0, "geometric: %d %d %d", b[1], b[2], b[3]);
    /* single partition (LLaVA-1.5) and extremes */
    CHECK(md_reduce_hired_budgets(1, 576, 0.2f, 0.5f, NULL, 24, 0, 0, false, b) == 115);
    CHECK(md_reduce_hired_budgets(1, 576, 1.0f, 0.5f, NULL, 24, 0, 0, false, b) == 576);
    CHECK(md_reduce_hired_budgets(5, 576, 1.0f, 1.0f, l0, 24, 2, 2, true, b) == 576 + 4 * 576 - 0);
    CHECK(md_reduce_hired_budgets(0, 576, 0.2f, 0.5f, l0, 24, 2, 2, true, b) == 0);
    CHECK(md_reduce_hired_budgets(3, 576, 0.0f, 0.5f, l0, 24, 1, 2, true, b) == 0);
}

static void pooling_random_cap(void)
{
    int32_t oh, ow;
    CHECK(md_reduce_pool_dims(24, 24, 144, &oh, &ow) == 144 && oh == 12 && ow == 12);
    CHECK(md_reduce_pool_dims(4, 4, 100, &oh, &ow) == 16);
    CHECK(md_reduce_pool_dims(4, 4, 0, &oh, &ow) == 1);
    CHECK(md_reduce_pool_dims(4, 6, 6, &oh, &ow) <= 6 && oh * ow >= 4);
    float x[16 * D], out[16 * D];
    int32_t src[16];
    for (int32_t i = 0; i < 16 * D; i++)
        x[i] = (float)(i / D);
    CHECK(md_reduce_uniform_pool(x, 4, 4, D, 4, out, src) == 4);
    CHECK(out[0] == (0 + 1 + 4 + 5) / 4.0f && src[1] == 2 && src[3] == 10);
    int32_t a[10], b[10];
    md_reduce_random_subset(1, 100, 10, a);
    md_reduce_random_subset(1, 100, 10, b);
    CHECK(!memcmp(a, b, sizeof a));
    for (int32_t i = 1; i < 10; i++)
        CHECK(a[i] > a[i - 1] && a[i] < 100);
    md_reduce_random_subset(2, 100, 10, b);
    CHECK(memcmp(a, b, sizeof a));
    int32_t n[4] = { 100, 10, 100, 100 };
    CHECK(md_reduce_cap_budgets(n, 4, 100) == 100);
    CHECKF(n[1] == 10 && n[0] + n[2] + n[3] == 90 && n[0] >= 30 && n[3] == 30, "%d %d %d %d",
           n[0], n[1], n[2], n[3]);
    int32_t m[3] = { 5, 5, 5 };
    CHECK(md_reduce_cap_budgets(m, 3, 100) == 15 && m[0] == 5);
    CHECK(md_reduce_cap_budgets(m, 3, 0) == 15);
}

static void video(void)
{
    /* frame b equals frame a except tokens 1 and 3 (negated) */
    float a[4 * D], b[4 * D];
    for (int32_t i = 0; i < 4 * D; i++)
        a[i] = b[i] = (float)(1 + i % 5);
    for (int32_t e = 0; e < D; e++)
        b[1 * D + e] = -a[1 * D + e], b[3 * D + e] = -a[3 * D + e];
    int32_t keep[4];
    CHECK(md_reduce_dycoke_frame(b, a, 4, D, 0.5f, keep) == 2 && keep[0] == 1 && keep[1] == 3);
    CHECK(md_reduce_dycoke_frame(b, a, 4, D, 1.0f, keep) == 0);
    /* (1 - K) * n < 1: the most changed row, not none */
    CHECK(md_reduce_dycoke_frame(b, a, 4, D, 0.9f, keep) == 1 && (keep[0] == 1 || keep[0] == 3));
    CHECK(md_reduce_dycoke_ref(0) == -1 && md_reduce_dycoke_ref(1) == 0);
    CHECK(md_reduce_dycoke_ref(2) == 0 && md_reduce_dycoke_ref(3) == 2);
    /* stmerge: 2 frames of a 3x3 grid, static -> one token; changing -> all */
    float x[2 * 9 * D];
    bool k[18];
    for (int32_t i = 0; i < 18 * D; i++)
        x[i] = 1.0f;
    CHECK(md_reduce_stmerge(x, 2, 3, 3, D, 3, 0.8f, k) == 1 && k[8] && !k[0] && !k[17]);
    for (int32_t t = 0; t < 18; t++)
        for (int32_t e = 0; e < D; e++)
            x[t * D + e] = (e == t % D) ? 1.0f : 0.0f;
    CHECK(md_reduce_stmerge(x, 2, 3, 3, D, 3, 0.8f, k) == 18);
}

int main(void)
{
    lsm();
    dual_filter();
    topk();
    hired();
    pooling_random_cap();
    video();
    return md_test_finish("reduce_select");
}
