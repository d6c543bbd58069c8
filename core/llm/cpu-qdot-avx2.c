/* AVX2 integer-dot GEMV kernels (cpu-qdot.h), used on AVX2 and AVX-512
 * CPUs. Weight values are unpacked to unsigned bytes in registers and
 * multiplied with the signed 8-bit activations by maddubs (pairs summed
 * to int16: at most 2 * 63 * 127, never saturating since |q| <= 127),
 * then madd with the block's 16-bit scale (or 1) sums pairs to int32.
 * Every int32 lane holds products of one block only, with their true
 * signs: Q8_0 multiplies |w| by x with w's sign; the 4- and 5-bit legacy
 * types start each lane from its own share of the -8/-16 offset
 * (md_xq128.off). Subtracting the offset through the whole block's sum in
 * one lane instead left lanes of opposite sign that cancel only in the
 * final sum, measured to lose 2% of a result to f32 rounding when a
 * block's weights are near the offset. The K quants sum each super-block
 * in int32 lanes (exact), convert the lanes and accumulate them scaled in
 * float lanes, summed across once per row. One pass over a weight row
 * serves all n_tok tokens.
 * Every function carries a target attribute (the file builds with -O2). */
#include "cpu-qdot.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <string.h>

#include "quant.h"

#define TGT __attribute__((target("avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline)) TGT
#define MAX_T 8
/* Software prefetch distance, bytes ahead of the block being read (as in
 * cpu-qdot-avx512.c: 4 KiB measured faster than 1 KiB in decode). */
#ifndef PF_DIST
#define PF_DIST 4096
#endif

INL float f16(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

INL float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ---- Q8_0: one 32-value block per step ---------------------------------- */

INL void row_q8_0(const int T, const uint8_t *row, int64_t nb, const struct md_xq32 *const *X,
                  float *y, int64_t ldy)
{
    __m256 acc[MAX_T];
    for (int t = 0; t < T; t++)
        acc[t] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = row + b * 34;
        _mm_prefetch((const char *)blk + PF_DIST, _MM_HINT_T0);
        const float dw = f16(blk);
        /* |w| times x with w's sign (maddubs wants u8 x s8) */
        const __m256i w = _mm256_loadu_si256((const __m256i *)(blk + 2));
        const __m256i u = _mm256_abs_epi8(w);
        for (int t = 0; t < T; t++) {
            const struct md_xq32 *x = X[t] + b;
            const __m256i xv = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)x->q), w);
            const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(u, xv), ones);
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * x->d), acc[t]);
        }
    }
    for (int t = 0; t < T; t++)
        y[t * ldy] = hsum8(acc[t]);
}

/* ---- 4- and 5-bit legacy types: two blocks per step --------------------- */

/* 16 bytes at a in the low 128-bit lane, 16 at b in the high one. */
INL __m256i load_2x16(const uint8_t *a, const uint8_t *b)
{
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)a)),
                                   _mm_loadu_si128((const __m128i *)b), 1);
}

/* a in the low four lanes, b in the high four. */
INL __m256 set_2x4(float a, float b)
{
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_set1_ps(a)), _mm_set1_ps(b), 1);
}

/* Q4_0, Q4_1, Q5_0, Q5_1 against activation rows of md_xq128 (what
 * md_xq_avx2_row makes): blocks b and b + 1 in one register, b's 16
 * leading bytes of nibbles in the low lane and b + 1's in the high one, so
 * that the low nibbles are both blocks' elements 0..15 (md_xq128.lo) and
 * the high nibbles their elements 16..31 (.hi). The weights stay unsigned;
 * a lane starts from its share of the -8 (Q5_0: -16) offset, md_xq128.off,
 * and holds one block's exact integer product, so the scales go on by a
 * vector of four lanes a block: half the per-token work of a block a step,
 * and no sign juggling. Q4_1/Q5_1 add m times the activations' sum, which
 * off gives as well (-8 times each lane's share). */
INL void row_legacy45(uint32_t type, const int T, const uint8_t *row, int64_t nb,
                      const struct md_xq128 *const *X, float *y, int64_t ldy)
{
    static const uint8_t zero_block[24];   /* the partner of an odd last block */
    const bool five = type == MD_TYPE_Q5_0 || type == MD_TYPE_Q5_1;
    const bool has_min = type == MD_TYPE_Q4_1 || type == MD_TYPE_Q5_1;
    const int64_t bb = type == MD_TYPE_Q4_0 ? 18 : type == MD_TYPE_Q4_1 ? 20 :
                       type == MD_TYPE_Q5_0 ? 22 : 24;
    const int qs_at = type == MD_TYPE_Q4_0 ? 2 : type == MD_TYPE_Q4_1 ? 4 :
                      type == MD_TYPE_Q5_0 ? 6 : 8;
    const int qh_at = type == MD_TYPE_Q5_0 ? 2 : 4;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[MAX_T];
    for (int t = 0; t < T; t++)
        acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b += 2) {
        const uint8_t *b0 = row + b * bb, *b1 = b + 1 < nb ? b0 + bb : zero_block;
        _mm_prefetch((const char *)b0 + PF_DIST, _MM_HINT_T0);
        const __m256i q = load_2x16(b0 + qs_at, b1 + qs_at);
        __m256i lo = _mm256_and_si256(q, m4);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        if (five) {   /* byte j of lo: bit j of b's qh, then of b + 1's; hi: bits 16.. */
            uint32_t h0, h1;
            memcpy(&h0, b0 + qh_at, 4);
            memcpy(&h1, b1 + qh_at, 4);
            const __m256i h = _mm256_set1_epi64x((long long)((uint64_t)h1 << 32 | h0));
            const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
            const __m256i f = _mm256_set1_epi8(0x10);
            const __m256i sel_lo = _mm256_set_epi64x(0x0505050505050505LL, 0x0404040404040404LL,
                                                     0x0101010101010101LL, 0);
            const __m256i sel_hi = _mm256_add_epi8(sel_lo, _mm256_set1_epi8(2));
            lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(
                     _mm256_shuffle_epi8(h, sel_lo), bit), bit), f));
            hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(
                     _mm256_shuffle_epi8(h, sel_hi), bit), bit), f));
        }
        const __m256 dw = set_2x4(f16(b0), f16(b1));
        /* Q4_1/Q5_1: -m / 8, as off is -8 times each lane's share of sum x */
        const __m256 mw = has_min ? _mm256_mul_ps(set_2x4(f16(b0 + 2), f16(b1 + 2)),
                                                  _mm256_set1_ps(-0.125f))
                                  : _mm256_setzero_ps();
        const int h = (int)(b / 2 % 2);
        for (int t = 0; t < T; t++) {
            const struct md_xq128 *x = X[t] + b / 4;
            const __m256i xl = _mm256_loadu_si256((const __m256i *)(x->lo + 32 * h));
            const __m256i xh = _mm256_loadu_si256((const __m256i *)(x->hi + 32 * h));
            const __m256i off = _mm256_loadu_si256((const __m256i *)(x->off + 8 * h));
            const __m256 dx = _mm256_loadu_ps(x->d + 8 * h);
            /* each int16 at most 2 * 2 * 31 * 127 = 15,748: no saturation */
            const __m256i p16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xl),
                                                 _mm256_maddubs_epi16(hi, xh));
            __m256i p = _mm256_madd_epi16(p16, ones);
            if (type == MD_TYPE_Q4_0)
                p = _mm256_add_epi32(p, off);
            else if (type == MD_TYPE_Q5_0)
                p = _mm256_add_epi32(p, _mm256_add_epi32(off, off));
            __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(p), dw);
            if (has_min)
                v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(off), mw, v);
            acc[t] = _mm256_fmadd_ps(v, dx, acc[t]);
        }
    }
    for (int t = 0; t < T; t++)
        y[t * ldy] = hsum8(acc[t]);
}

/* ---- K quants: one 256-value super-block per step ----------------------- */

/* The 8 scales (bytes 0..7) and 8 mins (bytes 8..15) of a Q4_K/Q5_K
 * super-block: quant.c's k_scale_min done on 32-bit words. */
INL __m128i k_scales_mins(const uint8_t *s)
{
    uint32_t a, b, c;
    memcpy(&a, s, 4);
    memcpy(&b, s + 4, 4);
    memcpy(&c, s + 8, 4);
    const uint32_t sc_lo = a & 0x3f3f3f3fu, m_lo = b & 0x3f3f3f3fu;
    const uint32_t sc_hi = (c & 0x0f0f0f0fu) | ((a >> 2) & 0x30303030u);
    const uint32_t m_hi = ((c >> 4) & 0x0f0f0f0fu) | ((b >> 2) & 0x30303030u);
    return _mm_set_epi32((int)m_hi, (int)m_lo, (int)sc_hi, (int)sc_lo);
}

INL void row_q45_k(const int five, const int T, const uint8_t *row, int64_t nb,
                   const struct md_xq256 *const *X, float *y, int64_t ldy)
{
    /* per token: the scaled sums and the mins' sums, as vectors summed
     * once at the end (a horizontal sum per super-block cost a third of
     * the kernel's time) */
    __m256 acc[MAX_T];
    __m128 accm[MAX_T];
    for (int t = 0; t < T; t++) {
        acc[t] = _mm256_setzero_ps();
        accm[t] = _mm_setzero_ps();
    }
    const int64_t bb = five ? 176 : 144;
    const __m256i m4 = _mm256_set1_epi8(0x0f), one = _mm256_set1_epi8(1);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = row + b * bb;
        _mm_prefetch((const char *)blk + PF_DIST, _MM_HINT_T0);
        _mm_prefetch((const char *)blk + PF_DIST + 64, _MM_HINT_T0);
        _mm_prefetch((const char *)blk + PF_DIST + 128, _MM_HINT_T0);
        const float d = f16(blk), dmin = f16(blk + 2);
        const __m128i scm = k_scales_mins(blk + 4);
        /* scales as int16, both 128-bit lanes: sc[0..7] */
        const __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(scm));
        const __m128i mins16 = _mm_cvtepu8_epi16(_mm_srli_si128(scm, 8));
        const uint8_t *qs = blk + (five ? 48 : 16);
        const __m256i qh = five ? _mm256_loadu_si256((const __m256i *)(blk + 16)) : _mm256_setzero_si256();
        __m256i isum[MAX_T];
        for (int t = 0; t < T; t++)
            isum[t] = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
            __m256i lo = _mm256_and_si256(q, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            if (five) {
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(
                         _mm256_srli_epi16(qh, 2 * c), one), 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(
                         _mm256_srli_epi16(qh, 2 * c + 1), one), 4));
            }
            /* broadcast 16-bit scale 2c / 2c+1 */
            const __m256i s_lo = _mm256_shuffle_epi8(sc16, _mm256_set1_epi16((short)(0x0100 + 0x0202 * (2 * c))));
            const __m256i s_hi = _mm256_shuffle_epi8(sc16, _mm256_set1_epi16((short)(0x0100 + 0x0202 * (2 * c + 1))));
            for (int t = 0; t < T; t++) {
                const int8_t *xq = X[t][b].q + 64 * c;
                const __m256i p_lo = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)xq));
                const __m256i p_hi = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(xq + 32)));
                isum[t] = _mm256_add_epi32(isum[t], _mm256_add_epi32(_mm256_madd_epi16(p_lo, s_lo),
                                                                     _mm256_madd_epi16(p_hi, s_hi)));
            }
        }
        for (int t = 0; t < T; t++) {
            const struct md_xq256 *x = X[t] + b;
            const __m128i mm = _mm_madd_epi16(mins16, _mm_loadu_si128((const __m128i *)x->bsum32));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_set1_ps(d * x->d), acc[t]);
            accm[t] = _mm_fmadd_ps(_mm_cvtepi32_ps(mm), _mm_set1_ps(dmin * x->d), accm[t]);
        }
    }
    for (int t = 0; t < T; t++) {
        __m128 m = _mm_add_ps(accm[t], _mm_movehl_ps(accm[t], accm[t]));
        m = _mm_add_ss(m, _mm_movehdup_ps(m));
        y[t * ldy] = hsum8(acc[t]) - _mm_cvtss_f32(m);
    }
}

INL void row_q6_k(const int T, const uint8_t *row, int64_t nb,
                  const struct md_xq256 *const *X, float *y, int64_t ldy)
{
    __m256 acc[MAX_T];   /* summed once at the end, as in row_q45_k */
    for (int t = 0; t < T; t++)
        acc[t] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(3);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = row + b * 210;
        _mm_prefetch((const char *)blk + PF_DIST, _MM_HINT_T0);
        _mm_prefetch((const char *)blk + PF_DIST + 64, _MM_HINT_T0);
        _mm_prefetch((const char *)blk + PF_DIST + 128, _MM_HINT_T0);
        _mm_prefetch((const char *)blk + PF_DIST + 192, _MM_HINT_T0);
        const float d = f16(blk + 208);
        const __m128i sc8 = _mm_loadu_si128((const __m128i *)(blk + 192));
        const __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
        __m256i isum[MAX_T];
        for (int t = 0; t < T; t++)
            isum[t] = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const __m256i ql0 = _mm256_loadu_si256((const __m256i *)(blk + 64 * h));
            const __m256i ql1 = _mm256_loadu_si256((const __m256i *)(blk + 64 * h + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(blk + 128 + 32 * h));
            __m256i u[4];
            u[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4));
            u[1] = _mm256_or_si256(_mm256_and_si256(ql1, m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4));
            u[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4));
            u[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4));
            for (int k = 0; k < 4; k++) {
                /* 32 values = 16-value groups j, j+1 (j = 8h + 2k): scale
                 * sc[j] in the low 128-bit lane, sc[j+1] in the high one */
                const int j = 8 * h + 2 * k;
                const __m128i ctl = _mm_set_epi64x((long long)(0x0101010101010101ULL * (uint64_t)(j + 1)),
                                                   (long long)(0x0101010101010101ULL * (uint64_t)j));
                const __m256i s = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, ctl));
                for (int t = 0; t < T; t++) {
                    const __m256i xv = _mm256_loadu_si256((const __m256i *)(X[t][b].q + 128 * h + 32 * k));
                    isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(_mm256_maddubs_epi16(u[k], xv), s));
                }
            }
        }
        for (int t = 0; t < T; t++) {
            const struct md_xq256 *x = X[t] + b;
            /* the -32 offset: 32 * sum_j sc[j] * bsum16[j] */
            const __m256i off = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)x->bsum16));
            const __m256i v = _mm256_sub_epi32(isum[t], _mm256_slli_epi32(off, 5));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), _mm256_set1_ps(d * x->d), acc[t]);
        }
    }
    for (int t = 0; t < T; t++)
        y[t * ldy] = hsum8(acc[t]);
}

/* ---- dispatch ------------------------------------------------------------ */

INL void rows_type(uint32_t type, const int T, const void *XQ, size_t xq_row_bytes, int64_t n_in,
                   const uint8_t *W, size_t row_bytes, int64_t n_rows, float *Y, int64_t ldy)
{
    const void *X[MAX_T];
    for (int t = 0; t < T; t++)
        X[t] = (const char *)XQ + (size_t)t * xq_row_bytes;
    for (int64_t r = 0; r < n_rows; r++) {
        const uint8_t *row = W + (size_t)r * row_bytes;
        switch (type) {
        case MD_TYPE_Q4_K: row_q45_k(0, T, row, n_in / 256, (const struct md_xq256 *const *)X, Y + r, ldy); break;
        case MD_TYPE_Q5_K: row_q45_k(1, T, row, n_in / 256, (const struct md_xq256 *const *)X, Y + r, ldy); break;
        case MD_TYPE_Q6_K: row_q6_k(T, row, n_in / 256, (const struct md_xq256 *const *)X, Y + r, ldy); break;
        case MD_TYPE_Q8_0: row_q8_0(T, row, n_in / 32, (const struct md_xq32 *const *)X, Y + r, ldy); break;
        default: row_legacy45(type, T, row, n_in / 32, (const struct md_xq128 *const *)X, Y + r, ldy); break;
        }
    }
}

#define QDOT_TYPE(TYPE, NAME) MD_QDOT_BY_ROWS(TYPE, NAME, TGT)
QDOT_TYPE(MD_TYPE_Q4_0, q4_0)
QDOT_TYPE(MD_TYPE_Q4_1, q4_1)
QDOT_TYPE(MD_TYPE_Q5_0, q5_0)
QDOT_TYPE(MD_TYPE_Q5_1, q5_1)
QDOT_TYPE(MD_TYPE_Q8_0, q8_0)
QDOT_TYPE(MD_TYPE_Q4_K, q4_k)
QDOT_TYPE(MD_TYPE_Q5_K, q5_k)
QDOT_TYPE(MD_TYPE_Q6_K, q6_k)

bool md_qdot_avx2_has(uint32_t wtype)
{
    return md_xq_row_bytes(wtype, 256) > 0;
}

TGT void md_qdot_avx2(uint32_t wtype, const void *XQ, int n_tok, size_t xq_row_bytes,
                      int64_t n_in, const uint8_t *W, size_t row_bytes,
                      int64_t n_rows, float *Y, int64_t ldy)
{
    switch (wtype) {
    case MD_TYPE_Q4_0: qdot_q4_0(n_tok, XQ, xq_row_bytes, n_in, W, row_bytes, n_rows, Y, ldy); break;
    case MD_TYPE_Q4_1: qdot_q4_1(n_tok, XQ, xq_row_bytes, n_in, W, row_bytes, n_rows, Y, ldy); break;
    case MD_TYPE_Q5_0: qdot_q5_0(n_tok, XQ, xq_row_bytes, n_in, W, row_bytes, n_rows, Y, ldy); break;
    case MD_TYPE_Q5_1: qdot_q5_1(n_tok, XQ, xq_row_bytes, n_in, W, row_bytes, n_rows, Y, ldy); break;
    case MD_TYPE_Q8_0: qdot_q8_0(n_tok, XQ, xq_row_bytes, n_in, W, row_bytes, n_rows, Y, ldy); break;
    case MD_TYPE_Q4_K: qdot_q4_k(n_tok, XQ, xq_row_bytes, n_in, W, row_bytes, n_rows, Y, ldy); break;
    case MD_TYPE_Q5_K: qdot_q5_k(n_tok, XQ, xq_row_bytes, n_in, W, row_bytes, n_rows, Y, ldy); break;
    case MD_TYPE_Q6_K: qdot_q6_k(n_tok, XQ, xq_row_bytes, n_in, W, row_bytes, n_rows, Y, ldy); break;
    default: break;
    }
}

#endif
