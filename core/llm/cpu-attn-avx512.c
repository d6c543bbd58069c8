/* The decode attention kernel (cpu-attn-body.h) with AVX-512: 16 lanes
 * along the head dimension, F16 keys and values converted in registers
 * (vcvtph2ps), masked loads for head sizes that are not multiples of 16. */
#include "cpu-attn.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <math.h>

#define ATTN_TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#define ATTN_INL static inline __attribute__((always_inline)) ATTN_TGT

ATTN_INL __mmask16 tail_mask(int32_t left)
{
    return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
}

/* 16 elements of a cache row from element e, the lanes outside m zero. */
ATTN_INL __m512 load16(const void *p, bool f16, int32_t e, __mmask16 m)
{
    if (f16)
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)p + e));
    return _mm512_maskz_loadu_ps(m, (const float *)p + e);
}

ATTN_INL float attn_dot(const float *q, const void *k, bool f16, int32_t d)
{
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int32_t e = 0;
    for (; e + 32 <= d; e += 32) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + e), load16(k, f16, e, 0xffff), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + e + 16), load16(k, f16, e + 16, 0xffff), a1);
    }
    for (; e < d; e += 16) {
        __mmask16 m = tail_mask(d - e);
        a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + e), load16(k, f16, e, m), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

ATTN_INL void attn_axpy(float *acc, float w, const void *v, bool f16, int32_t d)
{
    const __m512 wv = _mm512_set1_ps(w);
    for (int32_t e = 0; e < d; e += 16) {
        __mmask16 m = tail_mask(d - e);
        __m512 a = _mm512_maskz_loadu_ps(m, acc + e);
        _mm512_mask_storeu_ps(acc + e, m, _mm512_fmadd_ps(wv, load16(v, f16, e, m), a));
    }
}

ATTN_INL void attn_scale(float *x, float c, int32_t d)
{
    const __m512 cv = _mm512_set1_ps(c);
    for (int32_t e = 0; e < d; e += 16) {
        __mmask16 m = tail_mask(d - e);
        _mm512_mask_storeu_ps(x + e, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + e), cv));
    }
}

ATTN_INL float attn_max(const float *s, int32_t n)
{
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int32_t t = 0; t < n; t += 16)
        mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(mx, tail_mask(n - t), s + t));
    return _mm512_reduce_max_ps(mx);
}

/* exp(x): x clamped to [-87, 88] (NaN to -87), 2^(x log2 e) split into a
 * rounded integer, applied by vscalefps, and a fraction in [-0.5, 0.5]
 * whose 2^f is a degree-6 polynomial (relative error < 2e-7). */
ATTN_INL __m512 exp16(__m512 x)
{
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
    __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f));
    __m512 r = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_sub_ps(t, r);
    __m512 p = _mm512_set1_ps(1.5403530393381606e-4f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3333558146428443e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291076284772e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504108664821580e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022650695910071e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718055994531e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, r);
}

ATTN_INL float attn_exp_sum(float *s, int32_t n, float m)
{
    const __m512 mv = _mm512_set1_ps(m);
    __m512 sum = _mm512_setzero_ps();
    for (int32_t t = 0; t < n; t += 16) {
        __mmask16 k = tail_mask(n - t);
        __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + t), mv));
        _mm512_mask_storeu_ps(s + t, k, e);
        sum = _mm512_mask_add_ps(sum, k, sum, e);
    }
    return _mm512_reduce_add_ps(sum);
}

#include "cpu-attn-body.h"

ATTN_TGT void md_attn_part_avx512(const struct md_attn_part *a)
{
    ATTN_PART_BODY(a);
}

#endif
