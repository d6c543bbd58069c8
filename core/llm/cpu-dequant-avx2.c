/* AVX2 dequantization of whole rows, bit-identical to md_dequantize_row
 * (same operations in the same order: int -> float is exact, then the same
 * single-rounding multiplies / adds as quant.c, never fused). Used by the
 * AVX2 and the AVX-512 matmul paths for the types without a dedicated GEMV
 * kernel (GEMV: row into an L1 buffer, then dot products; GEMM: panel
 * packing) and by md_dequantize_row_isa(). */
#include "cpu-matmul-impl.h"

#if MD_HAVE_X86

#include <immintrin.h>
#include <string.h>

#include "quant.h"

#define TGT __attribute__((target("avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline)) TGT

INL float f16_at(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

INL uint32_t u32_at(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* 8 bytes at p zero-extended to 8 int32 */
INL __m256i u8x8(const uint8_t *p)
{
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
}

INL __m256 cvt(__m256i v) { return _mm256_cvtepi32_ps(v); }

static TGT void dq_q4_0(const uint8_t *b, float *y, int64_t nb)
{
    const __m256i m4 = _mm256_set1_epi32(15), c8 = _mm256_set1_epi32(8);
    for (int64_t i = 0; i < nb; i++, b += 18, y += 32) {
        const __m256 d = _mm256_set1_ps(f16_at(b));
        for (int h = 0; h < 2; h++) {
            const __m256i q = u8x8(b + 2 + 8 * h);
            const __m256i lo = _mm256_sub_epi32(_mm256_and_si256(q, m4), c8);
            const __m256i hi = _mm256_sub_epi32(_mm256_srli_epi32(q, 4), c8);
            _mm256_storeu_ps(y + 8 * h, _mm256_mul_ps(cvt(lo), d));
            _mm256_storeu_ps(y + 16 + 8 * h, _mm256_mul_ps(cvt(hi), d));
        }
    }
}

static TGT void dq_q4_1(const uint8_t *b, float *y, int64_t nb)
{
    const __m256i m4 = _mm256_set1_epi32(15);
    for (int64_t i = 0; i < nb; i++, b += 20, y += 32) {
        const __m256 d = _mm256_set1_ps(f16_at(b)), m = _mm256_set1_ps(f16_at(b + 2));
        for (int h = 0; h < 2; h++) {
            const __m256i q = u8x8(b + 4 + 8 * h);
            const __m256 p0 = _mm256_mul_ps(cvt(_mm256_and_si256(q, m4)), d);
            const __m256 p1 = _mm256_mul_ps(cvt(_mm256_srli_epi32(q, 4)), d);
            _mm256_storeu_ps(y + 8 * h, _mm256_add_ps(p0, m));
            _mm256_storeu_ps(y + 16 + 8 * h, _mm256_add_ps(p1, m));
        }
    }
}

/* bit (j + shift) of qh, for the 8 lanes j = 0..7, times 16 */
INL __m256i qh_bits(uint32_t qh, int shift)
{
    const __m256i sh = _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                        _mm256_set1_epi32(shift));
    return _mm256_slli_epi32(_mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)qh), sh),
                                              _mm256_set1_epi32(1)), 4);
}

static TGT void dq_q5_0(const uint8_t *b, float *y, int64_t nb)
{
    const __m256i m4 = _mm256_set1_epi32(15), c16 = _mm256_set1_epi32(16);
    for (int64_t i = 0; i < nb; i++, b += 22, y += 32) {
        const __m256 d = _mm256_set1_ps(f16_at(b));
        const uint32_t qh = u32_at(b + 2);
        for (int h = 0; h < 2; h++) {
            const __m256i q = u8x8(b + 6 + 8 * h);
            const __m256i lo = _mm256_or_si256(_mm256_and_si256(q, m4), qh_bits(qh, 8 * h));
            const __m256i hi = _mm256_or_si256(_mm256_srli_epi32(q, 4), qh_bits(qh, 16 + 8 * h));
            _mm256_storeu_ps(y + 8 * h, _mm256_mul_ps(cvt(_mm256_sub_epi32(lo, c16)), d));
            _mm256_storeu_ps(y + 16 + 8 * h, _mm256_mul_ps(cvt(_mm256_sub_epi32(hi, c16)), d));
        }
    }
}

static TGT void dq_q5_1(const uint8_t *b, float *y, int64_t nb)
{
    const __m256i m4 = _mm256_set1_epi32(15);
    for (int64_t i = 0; i < nb; i++, b += 24, y += 32) {
        const __m256 d = _mm256_set1_ps(f16_at(b)), m = _mm256_set1_ps(f16_at(b + 2));
        const uint32_t qh = u32_at(b + 4);
        for (int h = 0; h < 2; h++) {
            const __m256i q = u8x8(b + 8 + 8 * h);
            const __m256i lo = _mm256_or_si256(_mm256_and_si256(q, m4), qh_bits(qh, 8 * h));
            const __m256i hi = _mm256_or_si256(_mm256_srli_epi32(q, 4), qh_bits(qh, 16 + 8 * h));
            _mm256_storeu_ps(y + 8 * h, _mm256_add_ps(_mm256_mul_ps(cvt(lo), d), m));
            _mm256_storeu_ps(y + 16 + 8 * h, _mm256_add_ps(_mm256_mul_ps(cvt(hi), d), m));
        }
    }
}

static TGT void dq_q8_0(const uint8_t *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, b += 34, y += 32) {
        const __m256 d = _mm256_set1_ps(f16_at(b));
        for (int h = 0; h < 4; h++) {
            const __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b + 2 + 8 * h)));
            _mm256_storeu_ps(y + 8 * h, _mm256_mul_ps(cvt(q), d));
        }
    }
}

/* 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block */
static inline void k_scale_min(const uint8_t *q, int j, int *sc, int *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Q4_K (with_qh = 0) and Q5_K (with_qh = 1) */
INL void dq_k45(const uint8_t *b, float *y, int64_t nb, const int with_qh)
{
    const __m256i m4 = _mm256_set1_epi32(15), one = _mm256_set1_epi32(1);
    const int64_t bytes = with_qh ? 176 : 144;
    for (int64_t i = 0; i < nb; i++, b += bytes, y += 256) {
        const float d = f16_at(b), dmin = f16_at(b + 2);
        const uint8_t *scales = b + 4, *qh = b + 16, *qs = b + (with_qh ? 48 : 16);
        for (int c = 0; c < 4; c++) {
            int sc, m;
            k_scale_min(scales, 2 * c, &sc, &m);
            const __m256 d1 = _mm256_set1_ps(d * (float)sc), m1 = _mm256_set1_ps(dmin * (float)m);
            k_scale_min(scales, 2 * c + 1, &sc, &m);
            const __m256 d2 = _mm256_set1_ps(d * (float)sc), m2 = _mm256_set1_ps(dmin * (float)m);
            const uint8_t *q = qs + 32 * c;
            float *o = y + 64 * c;
            for (int g = 0; g < 4; g++) {
                const __m256i v = u8x8(q + 8 * g);
                __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_srli_epi32(v, 4);
                if (with_qh) {
                    const __m256i h = u8x8(qh + 8 * g);
                    lo = _mm256_or_si256(lo, _mm256_slli_epi32(
                        _mm256_and_si256(_mm256_srli_epi32(h, 2 * c), one), 4));
                    hi = _mm256_or_si256(hi, _mm256_slli_epi32(
                        _mm256_and_si256(_mm256_srli_epi32(h, 2 * c + 1), one), 4));
                }
                _mm256_storeu_ps(o + 8 * g, _mm256_sub_ps(_mm256_mul_ps(d1, cvt(lo)), m1));
                _mm256_storeu_ps(o + 32 + 8 * g, _mm256_sub_ps(_mm256_mul_ps(d2, cvt(hi)), m2));
            }
        }
    }
}

static TGT void dq_q4_k(const uint8_t *b, float *y, int64_t nb) { dq_k45(b, y, nb, 0); }
static TGT void dq_q5_k(const uint8_t *b, float *y, int64_t nb) { dq_k45(b, y, nb, 1); }

static TGT void dq_q6_k(const uint8_t *b, float *y, int64_t nb)
{
    const __m256i m4 = _mm256_set1_epi32(15), m2 = _mm256_set1_epi32(3), c32 = _mm256_set1_epi32(32);
    for (int64_t i = 0; i < nb; i++, b += 210, y += 256) {
        const float d = f16_at(b + 208);
        const int8_t *sc = (const int8_t *)(b + 192);
        for (int h = 0; h < 2; h++) {
            const uint8_t *l0 = b + 64 * h, *h0 = b + 128 + 32 * h;
            const int8_t *s = sc + 8 * h;
            float *o = y + 128 * h;
            for (int g = 0; g < 4; g++) {          /* l = 8g .. 8g+7 */
                const int is = g / 2;
                const __m256i a = u8x8(l0 + 8 * g), c = u8x8(l0 + 32 + 8 * g), hq = u8x8(h0 + 8 * g);
                const __m256i q1 = _mm256_sub_epi32(_mm256_or_si256(_mm256_and_si256(a, m4),
                    _mm256_slli_epi32(_mm256_and_si256(hq, m2), 4)), c32);
                const __m256i q2 = _mm256_sub_epi32(_mm256_or_si256(_mm256_and_si256(c, m4),
                    _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(hq, 2), m2), 4)), c32);
                const __m256i q3 = _mm256_sub_epi32(_mm256_or_si256(_mm256_srli_epi32(a, 4),
                    _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(hq, 4), m2), 4)), c32);
                const __m256i q4 = _mm256_sub_epi32(_mm256_or_si256(_mm256_srli_epi32(c, 4),
                    _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(hq, 6), m2), 4)), c32);
                _mm256_storeu_ps(o + 8 * g, _mm256_mul_ps(_mm256_set1_ps(d * (float)s[is]), cvt(q1)));
                _mm256_storeu_ps(o + 32 + 8 * g, _mm256_mul_ps(_mm256_set1_ps(d * (float)s[is + 2]), cvt(q2)));
                _mm256_storeu_ps(o + 64 + 8 * g, _mm256_mul_ps(_mm256_set1_ps(d * (float)s[is + 4]), cvt(q3)));
                _mm256_storeu_ps(o + 96 + 8 * g, _mm256_mul_ps(_mm256_set1_ps(d * (float)s[is + 6]), cvt(q4)));
            }
        }
    }
}

static TGT void dq_f16(const uint8_t *b, float *y, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + 2 * i))));
    for (; i < n; i++)
        y[i] = f16_at(b + 2 * i);
}

static TGT void dq_bf16(const uint8_t *b, float *y, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(b + 2 * i))), 16)));
    for (; i < n; i++) {
        uint32_t u = (uint32_t)b[2 * i] << 16 | (uint32_t)b[2 * i + 1] << 24;
        memcpy(&y[i], &u, 4);
    }
}

TGT bool md_dequant_row_avx2(uint32_t type, const uint8_t *src, float *dst, int64_t n)
{
    switch (type) {
    case MD_TYPE_F32: memcpy(dst, src, sizeof(float) * (size_t)n); return true;
    case MD_TYPE_F16: dq_f16(src, dst, n); return true;
    case MD_TYPE_BF16: dq_bf16(src, dst, n); return true;
    case MD_TYPE_Q4_0: dq_q4_0(src, dst, n / 32); return true;
    case MD_TYPE_Q4_1: dq_q4_1(src, dst, n / 32); return true;
    case MD_TYPE_Q5_0: dq_q5_0(src, dst, n / 32); return true;
    case MD_TYPE_Q5_1: dq_q5_1(src, dst, n / 32); return true;
    case MD_TYPE_Q8_0: dq_q8_0(src, dst, n / 32); return true;
    case MD_TYPE_Q4_K: dq_q4_k(src, dst, n / 256); return true;
    case MD_TYPE_Q5_K: dq_q5_k(src, dst, n / 256); return true;
    case MD_TYPE_Q6_K: dq_q6_k(src, dst, n / 256); return true;
    default: return false;
    }
}

#endif /* MD_HAVE_X86 */
