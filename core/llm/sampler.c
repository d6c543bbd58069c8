/* Token sampling: greedy, or temperature → top-k → top-p (HF's order) and a
 * draw from the sampler's own xoshiro256** stream, seeded by splitmix64, so
 * a seed fixes the output on every platform. An optional CTRL-style
 * repetition penalty divides positive (multiplies negative) logits of
 * tokens seen in the last repeat_last_n. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mustdrop.h"

struct md_candidate {
    int32_t id;
    float logit;
};

struct md_sampler {
    struct md_sampler_params p;
    uint64_t s[4];                 /* xoshiro256** state */
    struct md_candidate *cand;     /* [cap] work space */
    float *prob;                   /* [cap] */
    int32_t cap;
    int32_t *hist;                 /* ring of the last repeat_last_n tokens */
    int32_t n_hist, hist_head;
};

/* ---- random numbers -------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t xoshiro_next(uint64_t s[4])
{
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* Uniform in [0, 1) with 53 random bits. */
static double uniform(struct md_sampler *smp)
{
    return (double)(xoshiro_next(smp->s) >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- lifecycle ------------------------------------------------------- */

struct md_sampler_params md_sampler_default_params(void)
{
    struct md_sampler_params p = {
        .temp = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
        .repeat_penalty = 1.0f,
        .repeat_last_n = 64,
        .seed = 0x5eed,
    };
    return p;
}

void md_sampler_reset(struct md_sampler *smp)
{
    if (!smp)
        return;
    uint64_t x = smp->p.seed;
    for (int i = 0; i < 4; i++)
        smp->s[i] = splitmix64(&x);
    smp->n_hist = smp->hist_head = 0;
}

struct md_sampler *md_sampler_new(const struct md_sampler_params *params)
{
    struct md_sampler_params p = params ? *params : md_sampler_default_params();
    if (isnan(p.temp) || !(p.top_p > 0.0f) || !(p.repeat_penalty > 0.0f) || p.repeat_last_n < 0 ||
        p.repeat_last_n > (1 << 20))
        return NULL;
    struct md_sampler *smp = calloc(1, sizeof *smp);
    if (!smp)
        return NULL;
    smp->p = p;
    if (p.repeat_last_n > 0 && !(smp->hist = malloc(sizeof(int32_t) * (size_t)p.repeat_last_n))) {
        free(smp);
        return NULL;
    }
    md_sampler_reset(smp);
    return smp;
}

void md_sampler_free(struct md_sampler *smp)
{
    if (!smp)
        return;
    free(smp->cand);
    free(smp->prob);
    free(smp->hist);
    free(smp);
}

void md_sampler_accept(struct md_sampler *smp, int32_t token)
{
    if (!smp || smp->p.repeat_last_n <= 0)
        return;
    smp->hist[smp->hist_head] = token;
    smp->hist_head = (smp->hist_head + 1) % smp->p.repeat_last_n;
    if (smp->n_hist < smp->p.repeat_last_n)
        smp->n_hist++;
}

/* ---- steps ----------------------------------------------------------- */

/* Candidate order: higher logit first, lower id on ties (so top-k = 1 picks
 * what greedy picks). */
static bool better(const struct md_candidate *a, const struct md_candidate *b)
{
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int cmp_candidates(const void *pa, const void *pb)
{
    const struct md_candidate *a = pa, *b = pb;
    return better(a, b) ? -1 : better(b, a) ? 1 : 0;
}

static int ensure_cap(struct md_sampler *smp, int32_t n)
{
    if (smp->cap >= n)
        return 0;
    struct md_candidate *c = realloc(smp->cand, sizeof *c * (size_t)n);
    if (c)
        smp->cand = c;
    float *p = realloc(smp->prob, sizeof *p * (size_t)n);
    if (p)
        smp->prob = p;
    if (!c || !p)
        return -1;
    smp->cap = n;
    return 0;
}

/* Logits with NaN mapped to -inf so they never win or poison a softmax. */
static float clean(float x) { return isnan(x) ? -INFINITY : x; }

static void apply_penalty(struct md_sampler *smp, int32_t n)
{
    if (smp->p.repeat_penalty == 1.0f || smp->n_hist == 0)
        return;
    /* Each distinct token is penalised once: mark with a flag bit in the
     * candidate id while walking the history. Candidates are still in id
     * order here (cand[i].id == i). */
    for (int32_t h = 0; h < smp->n_hist; h++) {
        int32_t t = smp->hist[h];
        if (t < 0 || t >= n || smp->cand[t].id < 0)
            continue;
        float *l = &smp->cand[t].logit;
        *l = *l > 0.0f ? *l / smp->p.repeat_penalty : *l * smp->p.repeat_penalty;
        smp->cand[t].id = -1 - t;   /* seen */
    }
    for (int32_t h = 0; h < smp->n_hist; h++) {
        int32_t t = smp->hist[h];
        if (t >= 0 && t < n)
            smp->cand[t].id = t;
    }
}

static void sift_down(struct md_candidate *heap, int32_t n, int32_t i)
{
    /* Min-heap by `better`: the root is the worst of the kept candidates. */
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && better(&heap[w], &heap[l]))
            w = l;
        if (r < n && better(&heap[w], &heap[r]))
            w = r;
        if (w == i)
            return;
        struct md_candidate tmp = heap[i];
        heap[i] = heap[w];
        heap[w] = tmp;
        i = w;
    }
}

/* Move the k best candidates to the front, sorted best first. */
static int32_t keep_top_k(struct md_candidate *c, int32_t n, int32_t k)
{
    if (k <= 0 || k >= n) {
        qsort(c, (size_t)n, sizeof *c, cmp_candidates);
        return n;
    }
    for (int32_t i = k / 2 - 1; i >= 0; i--)
        sift_down(c, k, i);
    for (int32_t i = k; i < n; i++) {
        if (better(&c[i], &c[0])) {
            c[0] = c[i];
            sift_down(c, k, 0);
        }
    }
    qsort(c, (size_t)k, sizeof *c, cmp_candidates);
    return k;
}

static int32_t argmax(const struct md_candidate *c, int32_t n)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (better(&c[i], &c[best]))
            best = i;
    return c[best].id;
}

int32_t md_sampler_sample(struct md_sampler *smp, const float *logits, int32_t n_vocab)
{
    if (!smp || !logits || n_vocab <= 0 || ensure_cap(smp, n_vocab))
        return -1;
    struct md_candidate *c = smp->cand;
    for (int32_t i = 0; i < n_vocab; i++) {
        c[i].id = i;
        c[i].logit = clean(logits[i]);
    }
    apply_penalty(smp, n_vocab);

    int32_t tok;
    if (smp->p.temp <= 0.0f) {
        tok = argmax(c, n_vocab);
    } else {
        for (int32_t i = 0; i < n_vocab; i++)
            c[i].logit /= smp->p.temp;
        bool need_sort = smp->p.top_k > 0 || smp->p.top_p < 1.0f;
        int32_t n = need_sort ? keep_top_k(c, n_vocab, smp->p.top_k) : n_vocab;
        float max = c[0].logit;
        for (int32_t i = 1; i < n; i++)
            max = fmaxf(max, c[i].logit);
        double sum = 0.0;
        for (int32_t i = 0; i < n; i++) {
            smp->prob[i] = max == -INFINITY ? 1.0f : expf(c[i].logit - max);
            sum += smp->prob[i];
        }
        /* top-p: the shortest best-first prefix holding top_p of the mass. */
        if (smp->p.top_p < 1.0f) {
            double cum = 0.0;
            for (int32_t i = 0; i < n; i++) {
                cum += smp->prob[i];
                if (cum >= smp->p.top_p * sum) {
                    n = i + 1;
                    break;
                }
            }
            sum = cum;
        }
        double u = uniform(smp) * sum, acc = 0.0;
        tok = c[n - 1].id;
        for (int32_t i = 0; i < n; i++) {
            acc += smp->prob[i];
            if (u < acc) {
                tok = c[i].id;
                break;
            }
        }
    }
    md_sampler_accept(smp, tok);
    return tok;
}
