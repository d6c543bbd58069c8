/* The decode attention kernel (cpu-attn.h), written once and included by
 * each ISA's file after it has defined:
 *   ATTN_TGT      its function attributes (target, or nothing)
 *   ATTN_INL      static inline always_inline ATTN_TGT
 *   float attn_dot(const float *q, const void *k, bool f16, int32_t d)
 *   void  attn_axpy(float *acc, float w, const void *v, bool f16, int32_t d)
 *   void  attn_scale(float *x, float c, int32_t d)
 *   float attn_max(const float *s, int32_t n)                    (n >= 1)
 *   float attn_exp_sum(float *s, int32_t n, float m)  s[t] = exp(s[t] - m),
 *                                                     returns their sum
 * Each ISA then defines its entry point as ATTN_PART_BODY(a). */
#include <math.h>
#include <string.h>

#include "cpu-attn.h"

/* Keys visible to pair pp (may exceed the block: callers clamp). */
ATTN_INL int32_t attn_vis(const struct md_attn_part *a, int32_t pp)
{
    return a->vis0 + pp / a->group * a->row_step;
}

ATTN_INL const void *attn_row(const void *base, bool f16, int64_t row, int64_t stride, int32_t col)
{
    return f16 ? (const void *)((const uint16_t *)base + row * stride + col)
               : (const void *)((const float *)base + row * stride + col);
}

/* Scores of keys c0..c0+n-1 for every pair, reading whole cache rows in
 * order (all heads of row t before row t + 1). */
ATTN_INL void attn_scores(const struct md_attn_part *a, int32_t c0, int32_t n, bool f16,
                          const int32_t d)
{
    const int32_t np = a->n_pair;
    for (int32_t t = 0; t < n; t++)
        for (int32_t hk = 0; hk < a->n_head_kv; hk++) {
            const void *kh = attn_row(a->k, f16, c0 + t, a->stride, hk * d);
            const float *qh = a->q + (size_t)hk * np * d;
            float *s = a->s + (size_t)hk * np * MD_ATTN_CHUNK + t;
            for (int32_t pp = 0; pp < np; pp++)
                s[(size_t)pp * MD_ATTN_CHUNK] = attn_dot(qh + (size_t)pp * d, kh, f16, d);
        }
}

/* Online softmax over the chunk: each pair's scores become weights
 * relative to its running max (0 for keys it does not see), and its sum
 * and accumulator are rescaled when the max grows. */
ATTN_INL void attn_softmax(const struct md_attn_part *a, int32_t c0, int32_t n, const int32_t d)
{
    const int32_t np = a->n_pair;
    for (int32_t i = 0; i < a->n_head_kv * np; i++) {
        float *s = a->s + (size_t)i * MD_ATTN_CHUNK, *st = a->state + (size_t)i * (d + 2);
        int32_t nv = attn_vis(a, i % np) - c0;
        nv = nv < 0 ? 0 : nv > n ? n : nv;
        if (nv < n)
            memset(s + nv, 0, sizeof(float) * (size_t)(n - nv));
        if (nv == 0)
            continue;
        float cm = attn_max(s, nv);
        if (cm > st[d]) {
            /* first chunk: st[d] = -inf, c = 0 multiplies zeros */
            float c = expf(st[d] - cm);
            attn_scale(st, c, d);
            st[d + 1] *= c;
            st[d] = cm;
        }
        st[d + 1] += attn_exp_sum(s, nv, st[d]);
    }
}

ATTN_INL void attn_values(const struct md_attn_part *a, int32_t c0, int32_t n, bool f16,
                          const int32_t d)
{
    const int32_t np = a->n_pair;
    for (int32_t t = 0; t < n; t++)
        for (int32_t hk = 0; hk < a->n_head_kv; hk++) {
            const void *vh = attn_row(a->v, f16, c0 + t, a->stride, hk * d);
            const float *w = a->s + (size_t)hk * np * MD_ATTN_CHUNK + t;
            float *st = a->state + (size_t)hk * np * (d + 2);
            for (int32_t pp = 0; pp < np; pp++)
                if (w[(size_t)pp * MD_ATTN_CHUNK] != 0.0f)
                    attn_axpy(st + (size_t)pp * (d + 2), w[(size_t)pp * MD_ATTN_CHUNK], vh, f16, d);
        }
}

ATTN_INL void attn_part_body(const struct md_attn_part *a, const bool f16, const int32_t d)
{
    const int32_t n_state = a->n_head_kv * a->n_pair;
    for (int32_t i = 0; i < n_state; i++) {
        float *st = a->state + (size_t)i * (d + 2);
        memset(st, 0, sizeof(float) * (size_t)d);
        st[d] = -INFINITY;
        st[d + 1] = 0.0f;
    }
    /* the last row sees the most keys */
    int32_t end = attn_vis(a, a->n_pair - 1);
    end = end < a->t1 ? end : a->t1;
    for (int32_t c0 = a->t0; c0 < end; c0 += MD_ATTN_CHUNK) {
        int32_t n = end - c0 < MD_ATTN_CHUNK ? end - c0 : MD_ATTN_CHUNK;
        attn_scores(a, c0, n, f16, d);
        attn_softmax(a, c0, n, d);
        attn_values(a, c0, n, f16, d);
    }
}

/* Separate loops for F16 and F32 caches and for the common head sizes 64
 * and 128 (constant there: the loops over d unroll, no tail masks). */
ATTN_INL void attn_part_dispatch(const struct md_attn_part *a, const bool f16)
{
    if (a->d == 64)
        attn_part_body(a, f16, 64);
    else if (a->d == 128)
        attn_part_body(a, f16, 128);
    else
        attn_part_body(a, f16, a->d);
}

#define ATTN_PART_BODY(a) ((a)->f16 ? attn_part_dispatch((a), true) : attn_part_dispatch((a), false))
