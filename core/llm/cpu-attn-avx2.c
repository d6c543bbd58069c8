/* The decode attention kernel (cpu-attn-body.h) with AVX2 + FMA + F16C:
 * 8 lanes along the head dimension, F16 converted in registers
 * (vcvtph2ps), scalar loops for the last head_dim % 8 elements. */
#include "cpu-attn.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <math.h>

#define ATTN_TGT __attribute__((target("avx2,fma,f16c")))
#define ATTN_INL static inline __attribute__((always_inline)) ATTN_TGT

/* 8 elements of a cache row from element e. */
ATTN_INL __m256 load8(const void *p, bool f16, int32_t e)
{
    if (f16)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + e)));
    return _mm256_loadu_ps((const float *)p + e);
}

ATTN_INL float load1(const void *p, bool f16, int32_t e)
{
    return f16 ? _cvtsh_ss(((const uint16_t *)p)[e]) : ((const float *)p)[e];
}

ATTN_INL float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

ATTN_INL float attn_dot(const float *q, const void *k, bool f16, int32_t d)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int32_t e = 0;
    for (; e + 16 <= d; e += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + e), load8(k, f16, e), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + e + 8), load8(k, f16, e + 8), a1);
    }
    for (; e + 8 <= d; e += 8)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + e), load8(k, f16, e), a0);
    float acc = hsum8(_mm256_add_ps(a0, a1));
    for (; e < d; e++)
        acc += q[e] * load1(k, f16, e);
    return acc;
}

ATTN_INL void attn_axpy(float *acc, float w, const void *v, bool f16, int32_t d)
{
    const __m256 wv = _mm256_set1_ps(w);
    int32_t e = 0;
    for (; e + 8 <= d; e += 8)
        _mm256_storeu_ps(acc + e, _mm256_fmadd_ps(wv, load8(v, f16, e), _mm256_loadu_ps(acc + e)));
    for (; e < d; e++)
        acc[e] += w * load1(v, f16, e);
}

ATTN_INL void attn_scale(float *x, float c, int32_t d)
{
    const __m256 cv = _mm256_set1_ps(c);
    int32_t e = 0;
    for (; e + 8 <= d; e += 8)
        _mm256_storeu_ps(x + e, _mm256_mul_ps(_mm256_loadu_ps(x + e), cv));
    for (; e < d; e++)
        x[e] *= c;
}

ATTN_INL float attn_max(const float *s, int32_t n)
{
    __m256 mx = _mm256_set1_ps(-INFINITY);
    int32_t t = 0;
    for (; t + 8 <= n; t += 8)
        mx = _mm256_max_ps(mx, _mm256_loadu_ps(s + t));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    float m = _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
    for (; t < n; t++)
        m = s[t] > m ? s[t] : m;
    return m;
}

/* exp(x) as in the AVX-512 file: clamp (NaN to -87), round, degree-6
 * polynomial for 2^f, the exponent added by integer arithmetic. */
ATTN_INL __m256 exp8(__m256 x)
{
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    __m256 t = _mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f));
    __m256 r = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 f = _mm256_sub_ps(t, r);
    __m256 p = _mm256_set1_ps(1.5403530393381606e-4f);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.3333558146428443e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.6181291076284772e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.5504108664821580e-2f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.4022650695910071e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.9314718055994531e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    __m256i ex = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(r), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(ex));
}

ATTN_INL float attn_exp_sum(float *s, int32_t n, float m)
{
    const __m256 mv = _mm256_set1_ps(m);
    __m256 sum = _mm256_setzero_ps();
    int32_t t = 0;
    for (; t + 8 <= n; t += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + t), mv));
        _mm256_storeu_ps(s + t, e);
        sum = _mm256_add_ps(sum, e);
    }
    float tail = 0.0f;
    for (; t < n; t++) {
        float e[8] = { s[t] - m };
        _mm256_storeu_ps(e, exp8(_mm256_loadu_ps(e)));
        s[t] = e[0];
        tail += e[0];
    }
    return hsum8(sum) + tail;
}

#include "cpu-attn-body.h"

ATTN_TGT void md_attn_part_avx2(const struct md_attn_part *a)
{
    ATTN_PART_BODY(a);
}

#endif
