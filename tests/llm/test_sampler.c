/* Sampler: greedy == argmax, top-k = 1 == greedy, a seed gives the same
 * stream every time (and reset restarts it), frequencies follow softmax(l/T),
 * top-k / top-p never pick outside their set, repetition penalty, bad input. */
#include "md_test.h"
#include "mustdrop.h"

#define NV 1000

static void fill(float *l, uint64_t seed)
{
    for (int i = 0; i < NV; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        l[i] = (float)((double)(seed >> 11) / 9007199254740992.0 * 8.0 - 4.0);
    }
}

static int argmax(const float *l, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > l[b])
            b = i;
    return b;
}

static void check_greedy(void)
{
    float l[NV];
    struct md_sampler_params p = md_sampler_default_params();
    p.temp = 0.0f;
    struct md_sampler *g = md_sampler_new(&p);
    p.temp = 1.5f;
    p.top_k = 1;
    struct md_sampler *k1 = md_sampler_new(&p);
    for (int r = 0; r < 50; r++) {
        fill(l, (uint64_t)r);
        int a = argmax(l, NV);
        CHECK(md_sampler_sample(g, l, NV) == a);
        CHECK(md_sampler_sample(k1, l, NV) == a);
    }
    /* ties go to the lowest id, for both */
    for (int i = 0; i < NV; i++)
        l[i] = 0.0f;
    l[7] = l[300] = 2.0f;
    CHECK(md_sampler_sample(g, l, NV) == 7);
    CHECK(md_sampler_sample(k1, l, NV) == 7);
    /* NaN never wins */
    l[5] = NAN;
    CHECK(md_sampler_sample(g, l, NV) == 7);
    md_sampler_free(g);
    md_sampler_free(k1);
}

static void check_determinism(void)
{
    float l[NV];
    fill(l, 42);
    struct md_sampler_params p = md_sampler_default_params();
    p.seed = 1234;
    struct md_sampler *a = md_sampler_new(&p), *b = md_sampler_new(&p);
    p.seed = 1235;
    struct md_sampler *c = md_sampler_new(&p);
    int32_t first[64];
    int same_c = 0;
    for (int i = 0; i < 64; i++) {
        first[i] = md_sampler_sample(a, l, NV);
        CHECK(first[i] == md_sampler_sample(b, l, NV));
        same_c += first[i] == md_sampler_sample(c, l, NV);
    }
    CHECK(same_c < 64);
    md_sampler_reset(a);
    for (int i = 0; i < 64; i++)
        CHECK(md_sampler_sample(a, l, NV) == first[i]);
    /* a fixed seed gives a fixed stream on every platform: pin one value */
    p = md_sampler_default_params();
    p.top_k = 0;
    p.top_p = 1.0f;
    p.temp = 1.0f;
    p.seed = 7;
    struct md_sampler *d = md_sampler_new(&p), *e = md_sampler_new(&p);
    int32_t t1 = md_sampler_sample(d, l, NV);
    CHECK(t1 == md_sampler_sample(e, l, NV));
    CHECK(t1 >= 0 && t1 < NV);
    md_sampler_free(a);
    md_sampler_free(b);
    md_sampler_free(c);
    md_sampler_free(d);
    md_sampler_free(e);
}

static void check_distribution(void)
{
    /* 4 tokens with logits log(1), log(2), log(3), log(4) at T=1: p = k/10 */
    float l[4] = { 0.0f, logf(2.0f), logf(3.0f), logf(4.0f) };
    struct md_sampler_params p = md_sampler_default_params();
    p.temp = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    struct md_sampler *s = md_sampler_new(&p);
    int count[4] = { 0 };
    const int n = 20000;
    for (int i = 0; i < n; i++) {
        int t = md_sampler_sample(s, l, 4);
        CHECK(t >= 0 && t < 4);
        if (t >= 0 && t < 4)
            count[t]++;
    }
    for (int k = 0; k < 4; k++)
        CHECKF(fabs(count[k] / (double)n - (k + 1) / 10.0) < 0.015, "token %d freq %g", k,
               count[k] / (double)n);
    md_sampler_free(s);

    /* temperature 0.5 squares the ratios: p ∝ 1, 4, 9, 16 */
    p.temp = 0.5f;
    s = md_sampler_new(&p);
    memset(count, 0, sizeof count);
    for (int i = 0; i < n; i++)
        count[md_sampler_sample(s, l, 4)]++;
    CHECK(fabs(count[3] / (double)n - 16.0 / 30.0) < 0.015);
    md_sampler_free(s);

    /* top-p 0.5: {4} has 0.4 < 0.5, {4,3} 0.7 >= 0.5 -> only tokens 3, 2 */
    p.temp = 1.0f;
    p.top_p = 0.5f;
    s = md_sampler_new(&p);
    memset(count, 0, sizeof count);
    for (int i = 0; i < 4000; i++)
        count[md_sampler_sample(s, l, 4)]++;
    CHECK(count[0] == 0 && count[1] == 0 && count[2] > 0 && count[3] > count[2]);
    CHECK(fabs(count[3] / 4000.0 - 4.0 / 7.0) < 0.03);
    md_sampler_free(s);

    /* top-k 2 over a big vocabulary: only the two best ever come out */
    float big[NV];
    fill(big, 9);
    int b1 = argmax(big, NV);
    float keep = big[b1];
    big[b1] = -INFINITY;
    int b2 = argmax(big, NV);
    big[b1] = keep;
    p.top_p = 1.0f;
    p.top_k = 2;
    p.temp = 100.0f;   /* nearly uniform inside the set */
    s = md_sampler_new(&p);
    int hit1 = 0, hit2 = 0;
    for (int i = 0; i < 1000; i++) {
        int t = md_sampler_sample(s, big, NV);
        CHECK(t == b1 || t == b2);
        hit1 += t == b1;
        hit2 += t == b2;
    }
    CHECK(hit1 > 300 && hit2 > 300);
    md_sampler_free(s);
}

static void check_penalty(void)
{
    float l[4] = { 1.0f, 0.9f, -1.0f, -1.1f };
    struct md_sampler_params p = md_sampler_default_params();
    p.temp = 0.0f;
    p.repeat_penalty = 2.0f;
    p.repeat_last_n = 2;
    struct md_sampler *s = md_sampler_new(&p);
    md_sampler_accept(s, 0);            /* 1.0 -> 0.5: token 1 wins */
    CHECK(md_sampler_sample(s, l, 4) == 1);   /* history now {0, 1} */
    CHECK(md_sampler_sample(s, l, 4) == 0);   /* 0.5 vs 0.45: token 0; history {1, 0} */
    /* the same token accepted twice is penalised once */
    md_sampler_reset(s);
    md_sampler_accept(s, 0);
    md_sampler_accept(s, 0);
    float l2[2] = { 1.0f, 0.3f };
    CHECK(md_sampler_sample(s, l2, 2) == 0);  /* 0.5 > 0.3 */
    /* negative logits get more negative */
    md_sampler_reset(s);
    float l3[2] = { -1.0f, -1.5f };
    md_sampler_accept(s, 0);
    CHECK(md_sampler_sample(s, l3, 2) == 1);  /* -2 < -1.5 */
    md_sampler_free(s);
}

static void check_bad_input(void)
{
    struct md_sampler_params p = md_sampler_default_params();
    CHECK(p.temp == 0.8f && p.top_k == 40 && p.top_p == 0.95f && p.repeat_penalty == 1.0f);
    p.top_p = 0.0f;
    CHECK(md_sampler_new(&p) == NULL);
    p = md_sampler_default_params();
    p.temp = NAN;
    CHECK(md_sampler_new(&p) == NULL);
    p = md_sampler_default_params();
    p.repeat_last_n = -1;
    CHECK(md_sampler_new(&p) == NULL);
    struct md_sampler *s = md_sampler_new(NULL);
    float l[3] = { 0, 1, 2 };
    CHECK(s != NULL);
    CHECK(md_sampler_sample(s, NULL, 3) == -1);
    CHECK(md_sampler_sample(s, l, 0) == -1);
    CHECK(md_sampler_sample(NULL, l, 3) == -1);
    /* all -inf logits still give a valid id */
    float ninf[3] = { -INFINITY, -INFINITY, -INFINITY };
    int t = md_sampler_sample(s, ninf, 3);
    CHECK(t >= 0 && t < 3);
    md_sampler_accept(NULL, 1);
    md_sampler_free(s);
    md_sampler_free(NULL);
}

int main(void)
{
    check_greedy();
    check_determinism();
    check_distribution();
    check_penalty();
    check_bad_input();
    return md_test_finish("sampler");
}
