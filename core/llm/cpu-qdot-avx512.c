/* AVX-512 VNNI integer-dot GEMV kernels (cpu-qdot.h) for Q4_0, Q4_1,
 * Q5_0, Q5_1, Q8_0, Q4_K, Q5_K and Q6_K, on the GGUF row layout and the md_xq activation
 * rows. They do what cpu-qdot-avx2.c does with half the instructions per
 * weight byte, which is what keeps a GEMV at the memory bound on a core
 * that also has to unpack nibbles:
 * - Q4_0 and the other 4- and 5-bit legacy types (four blocks per vector:
 *   their low nibbles, then their high ones, into the same lanes; Q5's
 *   fifth bits OR-ed in; Q4_1/Q5_1's min applied per lane from the same
 *   offsets): vpdpbusd multiplies the unsigned weights with x, starting
 *   each 32-bit lane from its share of the offset (md_xq128): the lane
 *   ends as the exact dot of its signed weights with x (the AVX2 kernels'
 *   sign trick gives such lanes too), without per-token sign work; the
 *   blocks' scales are applied in one multiply.
 * - Q8_0 (two blocks per vector) the other way round: x + 128 unsigned
 *   (the md_xq64 layout), the weights signed as stored, each lane started
 *   from -128 times its weights' sum, computed once for all tokens; a
 *   token then reads 64 + 8 bytes a pair instead of 192 (1, 2 and 4
 *   tokens, one thread, W from DRAM: +5, +16 and +7 %).
 * - K quants: one 64-value vector per step (Q4_K/Q5_K: the low and high
 *   nibbles of 32 bytes, i.e. two sub-blocks; Q6_K: four 16-value
 *   groups), maddubs to int16 pairs, then vpdpwssd with the group scales;
 *   the super-block's integer sum is converted once and accumulated in
 *   f32 lanes, reduced once per row.
 * - Rows in groups (4 rows for one token, 2 for two, 1 for three to
 *   four), read one after another (W stays one sequential stream, which
 *   the hardware prefetchers follow: interleaving the group's rows block
 *   by block was 10 % slower in decode): a 1024-wide row is only 4
 *   K-quant super-blocks, and reducing one row's 16 lanes to a float took
 *   as long as its products (perf annotate of tg128); a group's sums are
 *   reduced together (sum4_ps), off the rows' dependency chains.
 * Every function carries a target attribute (the file builds with -O2). */
#include "cpu-qdot.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <string.h>

#include "quant.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline)) TGT
#define MAX_T 8
#define MAX_ACC 8   /* rows x tokens of a group */
#ifndef PF_DIST
#define PF_DIST 4096   /* bytes ahead of the block being read */
#endif
#define UNROLL _Pragma("GCC unroll 4")

INL uint16_t ld16(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return h;
}

INL float f16(const uint8_t *p)
{
    return _cvtsh_ss(ld16(p));
}

/* The sums of the 16 lanes of a, b, c and d, in lanes 0..3. */
INL __m128 sum4_ps(__m512 a, __m512 b, __m512 c, __m512 d)
{
    /* quarters: ab = a's low + high halves, then b's; cd likewise */
    const __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xee));
    const __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, 0x44), _mm512_shuffle_f32x4(c, d, 0xee));
    /* quarter k: four partial sums of the k-th vector */
    __m512 s = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xdd));
    s = _mm512_add_ps(s, _mm512_permute_ps(s, 0x4e));
    s = _mm512_add_ps(s, _mm512_permute_ps(s, 0xb1));
    return _mm512_castps512_ps128(_mm512_permutexvar_ps(_mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                                                         12, 8, 4, 0), s));
}

/* Store a group's sums: acc[t * R + i] (minus mins[t * R + i] when
 * given) is row i's dot with token t, y[t * ldy + i]; R * T <= 8. */
INL void store_group(const int R, const int T, const __m512 *acc, const __m128 *mins, float *y, int64_t ldy)
{
    const __m512 z = _mm512_setzero_ps();
    const __m128 zq = _mm_setzero_ps();
    const int n = R * T;
    for (int q = 0; q < n; q += 4) {
        __m128 s = sum4_ps(acc[q], n > q + 1 ? acc[q + 1] : z, n > q + 2 ? acc[q + 2] : z,
                           n > q + 3 ? acc[q + 3] : z);
        if (mins) {
            const __m128 m01 = _mm_hadd_ps(mins[q], n > q + 1 ? mins[q + 1] : zq);
            const __m128 m23 = _mm_hadd_ps(n > q + 2 ? mins[q + 2] : zq, n > q + 3 ? mins[q + 3] : zq);
            s = _mm_sub_ps(s, _mm_hadd_ps(m01, m23));
        }
        if (T == 1 && R == 4) {
            _mm_storeu_ps(y, s);
            return;
        }
        float v[4];
        _mm_storeu_ps(v, s);
        for (int k = q; k < n && k < q + 4; k++)
            y[(k / R) * ldy + k % R] = v[k - q];
    }
}

/* ---- 4- and 5-bit legacy types: blocks b..b+3 in one vector -------------- */

/* quant.c's (ggml's) block layouts: d (f16), for Q4_1/Q5_1 a min m (f16),
 * for Q5_0/Q5_1 32 high bits qh, then 16 bytes of nibbles qs. */
INL int leg_bytes(uint32_t t) { return t == MD_TYPE_Q4_0 ? 18 : t == MD_TYPE_Q4_1 ? 20 : t == MD_TYPE_Q5_0 ? 22 : 24; }
INL int leg_qs(uint32_t t) { return t == MD_TYPE_Q4_0 ? 2 : t == MD_TYPE_Q4_1 ? 4 : t == MD_TYPE_Q5_0 ? 6 : 8; }
INL bool leg_min(uint32_t t) { return t == MD_TYPE_Q4_1 || t == MD_TYPE_Q5_1; }
INL bool leg_five(uint32_t t) { return t == MD_TYPE_Q5_0 || t == MD_TYPE_Q5_1; }

/* The nibbles of n <= 4 blocks from b0 (missing ones zero) by 128-bit
 * lane: block k's qs in lane k. */
INL __m512i leg_quad(uint32_t type, const uint8_t *b0, int n)
{
    const int bb = leg_bytes(type), qs = leg_qs(type);
    __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(b0 + qs)));
    const __m128i z = _mm_setzero_si128();
    v = _mm512_inserti32x4(v, n > 1 ? _mm_loadu_si128((const __m128i *)(b0 + bb + qs)) : z, 1);
    v = _mm512_inserti32x4(v, n > 2 ? _mm_loadu_si128((const __m128i *)(b0 + 2 * bb + qs)) : z, 2);
    return _mm512_inserti32x4(v, n > 3 ? _mm_loadu_si128((const __m128i *)(b0 + 3 * bb + qs)) : z, 3);
}

/* Q4_0: block k's scale in lanes 4k..4k+3 (n <= 4 blocks from b0, the
 * rest 0); with 4 blocks one load of their first 64 bytes holds all 4. */
INL __m512 q4_0_quad_scales(const uint8_t *b0, int n)
{
    __m256i h;
    if (n == 4) {
        const __m512i idx = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                             27, 27, 27, 27, 18, 18, 18, 18, 9, 9, 9, 9, 0, 0, 0, 0);
        h = _mm512_castsi512_si256(_mm512_permutexvar_epi16(idx, _mm512_loadu_si512((const void *)b0)));
    } else {
        uint16_t s[4] = { 0, 0, 0, 0 };
        for (int k = 0; k < n; k++)
            s[k] = ld16(b0 + 18 * k);
        h = _mm256_set_epi16((short)s[3], (short)s[3], (short)s[3], (short)s[3], (short)s[2], (short)s[2],
                             (short)s[2], (short)s[2], (short)s[1], (short)s[1], (short)s[1], (short)s[1],
                             (short)s[0], (short)s[0], (short)s[0], (short)s[0]);
    }
    return _mm512_cvtph_ps(h);
}

/* What the headers of n <= 4 blocks from b0 hold, by lane (block k in
 * lanes 4k..4k+3; missing blocks 0): dw = d, mw = m (the types with a
 * min), and for Q5 the fifth bits as byte masks over lo and hi (bit j of
 * block k's qh is the fifth bit of its value j: values 0..15 are lo's
 * 128-bit lane k, 16..31 hi's). Four blocks take two loads and two word
 * permutes; gathering the fields one by one made Q5_1 slower than AVX2. */
INL void leg_quad_head(uint32_t type, const uint8_t *b0, int n, __m512 *dw, __m512 *mw,
                       __mmask64 *mlo, __mmask64 *mhi)
{
    const int bb = leg_bytes(type), qh = type == MD_TYPE_Q5_0 ? 2 : 4;
    if (n == 4) {
        /* bytes 0..63 and 64..4bb-1 (a masked load: nothing read past the blocks) */
        const __m512i A = _mm512_loadu_si512((const void *)b0);
        const __m512i B = 4 * bb > 64 ? _mm512_maskz_loadu_epi8((__mmask64)((1ull << (4 * bb - 64)) - 1), b0 + 64)
                                      : _mm512_setzero_si512();
        const short w0 = 0, w1 = (short)(bb / 2), w2 = (short)bb, w3 = (short)(3 * bb / 2);
        /* words 0..15: d of blocks 0..3, each 4 times; 16..31: m likewise */
        const __m512i idx = _mm512_set_epi16(w3 + 1, w3 + 1, w3 + 1, w3 + 1, w2 + 1, w2 + 1, w2 + 1, w2 + 1,
                                             w1 + 1, w1 + 1, w1 + 1, w1 + 1, w0 + 1, w0 + 1, w0 + 1, w0 + 1,
                                             w3, w3, w3, w3, w2, w2, w2, w2, w1, w1, w1, w1, w0, w0, w0, w0);
        const __m512i dm = _mm512_permutex2var_epi16(A, idx, B);
        *dw = _mm512_cvtph_ps(_mm512_castsi512_si256(dm));
        *mw = leg_min(type) ? _mm512_cvtph_ps(_mm512_extracti64x4_epi64(dm, 1)) : _mm512_setzero_ps();
        if (leg_five(type)) {
            /* words 0..3: low halves of the 4 qh, 4..7: high halves */
            const short h = (short)(qh / 2);
            const __m512i hidx = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                                  0, 0, 0, 0, 0, 0, 0, 0,
                                                  w3 + h + 1, w2 + h + 1, w1 + h + 1, w0 + h + 1,
                                                  w3 + h, w2 + h, w1 + h, w0 + h);
            const __m128i q = _mm512_castsi512_si128(_mm512_permutex2var_epi16(A, hidx, B));
            *mlo = (__mmask64)(uint64_t)_mm_cvtsi128_si64(q);
            *mhi = (__mmask64)(uint64_t)_mm_extract_epi64(q, 1);
        }
        return;
    }
    uint16_t d[4] = { 0, 0, 0, 0 }, m[4] = { 0, 0, 0, 0 };
    uint64_t l = 0, hbits = 0;
    for (int k = 0; k < n; k++) {
        d[k] = ld16(b0 + bb * k);
        m[k] = leg_min(type) ? ld16(b0 + bb * k + 2) : 0;
        uint32_t v = 0;
        if (leg_five(type))
            memcpy(&v, b0 + bb * k + qh, 4);
        l |= (uint64_t)(v & 0xffffu) << (16 * k);
        hbits |= (uint64_t)(v >> 16) << (16 * k);
    }
    const __m512i lanes = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    const __m128 df = _mm_cvtph_ps(_mm_set_epi16(0, 0, 0, 0, (short)d[3], (short)d[2], (short)d[1], (short)d[0]));
    const __m128 mf = _mm_cvtph_ps(_mm_set_epi16(0, 0, 0, 0, (short)m[3], (short)m[2], (short)m[1], (short)m[0]));
    *dw = _mm512_permutexvar_ps(lanes, _mm512_castps128_ps512(df));
    *mw = _mm512_permutexvar_ps(lanes, _mm512_castps128_ps512(mf));
    *mlo = (__mmask64)l;
    *mhi = (__mmask64)hbits;
}

/* acc[t * R] += token t's dot with blocks b0..b0+n-1 (of one row):
 * vpdpbusd of the unsigned values with x, each lane started from its
 * share of the offset (Q4_0: -8 sum x, Q5_0: -16 sum x; md_xq128.off), or
 * for the types with a min from 0 and m times its share of sum x added. */
INL void quad_step(uint32_t type, const int T, const int R, const uint8_t *b0, int n,
                   const struct md_xq128 *const *X, int64_t i, __m512 *acc)
{
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m512i v = leg_quad(type, b0, n);
    __m512i lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
    __m512 dw, mw;
    __mmask64 ml = 0, mh = 0;
    if (type == MD_TYPE_Q4_0) {
        dw = q4_0_quad_scales(b0, n);
        mw = _mm512_setzero_ps();
    } else {
        leg_quad_head(type, b0, n, &dw, &mw, &ml, &mh);
    }
    if (leg_five(type)) {
        const __m512i b4 = _mm512_set1_epi8(0x10);
        lo = _mm512_or_si512(lo, _mm512_maskz_mov_epi8(ml, b4));
        hi = _mm512_or_si512(hi, _mm512_maskz_mov_epi8(mh, b4));
    }
    /* -m / 8: off holds -8 times each lane's share of sum x */
    if (leg_min(type))
        mw = _mm512_mul_ps(mw, _mm512_set1_ps(-0.125f));
    UNROLL for (int t = 0; t < T; t++) {
        const struct md_xq128 *x = X[t] + i;
        const __m512i off = _mm512_loadu_si512((const void *)x->off);
        __m512i p = leg_min(type) ? _mm512_setzero_si512()
                  : type == MD_TYPE_Q5_0 ? _mm512_add_epi32(off, off) : off;
        p = _mm512_dpbusd_epi32(p, lo, _mm512_loadu_si512((const void *)x->lo));
        p = _mm512_dpbusd_epi32(p, hi, _mm512_loadu_si512((const void *)x->hi));
        const __m512 dx = _mm512_loadu_ps(x->d);
        acc[t * R] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(dw, dx), acc[t * R]);
        if (leg_min(type))
            acc[t * R] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(off), _mm512_mul_ps(mw, dx), acc[t * R]);
    }
}

/* Rows w, w + rb, ... (R of them) times T tokens. */
INL void rows_legacy(uint32_t type, const int T, const int R, const uint8_t *w, size_t rb, int64_t nb,
                     const struct md_xq128 *const *X, float *y, int64_t ldy)
{
    const int bb = leg_bytes(type);
    /* two sets of accumulators: with one, the f32 add of each step waits
     * for the previous step's (one row's loop ran at that latency) */
    __m512 acc[MAX_ACC], acc2[MAX_ACC];
    UNROLL for (int k = 0; k < R * T; k++)
        acc[k] = acc2[k] = _mm512_setzero_ps();
    UNROLL for (int r = 0; r < R; r++) {
        const uint8_t *row = w + r * rb;
        int64_t b = 0;
        for (; b + 8 <= nb; b += 8) {
            const uint8_t *b0 = row + b * bb;
            _mm_prefetch((const char *)b0 + PF_DIST, _MM_HINT_T0);
            _mm_prefetch((const char *)b0 + PF_DIST + 64, _MM_HINT_T0);
            _mm_prefetch((const char *)b0 + PF_DIST + 128, _MM_HINT_T0);
            quad_step(type, T, R, b0, 4, X, b / 4, acc + r);
            quad_step(type, T, R, b0 + 4 * bb, 4, X, b / 4 + 1, acc2 + r);
        }
        for (; b < nb; b += 4)   /* the last 1..7 blocks: nothing read past them */
            quad_step(type, T, R, row + b * bb, nb - b < 4 ? (int)(nb - b) : 4, X, b / 4, acc + r);
    }
    UNROLL for (int k = 0; k < R * T; k++)
        acc[k] = _mm512_add_ps(acc[k], acc2[k]);
    store_group(R, T, acc, NULL, y, ldy);
}

/* ---- Q8_0: blocks b and b+1 in one vector --------------------------------- */

/* The int8 values of b0 and b1 (NULL: none, zeros), signed as stored. */
INL __m512i q8_0_pair(const uint8_t *b0, const uint8_t *b1)
{
    const __m256i a = _mm256_loadu_si256((const __m256i *)(b0 + 2));
    const __m256i b = b1 ? _mm256_loadu_si256((const __m256i *)(b1 + 2)) : _mm256_setzero_si256();
    return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
}

/* The scales of b0 and b1 (NULL: 0) in lanes 0..7 and 8..15. */
INL __m512 scale_lanes(const uint8_t *b0, const uint8_t *b1)
{
    const uint32_t h = ld16(b0) | (b1 ? (uint32_t)ld16(b1) << 16 : 0u);
    const __m512i idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(_mm_cvtph_ps(_mm_cvtsi32_si128((int)h))));
}

/* Pair i (blocks b0, b1 of one row) times T tokens: vpdpbusd of the
 * tokens' x + 128 (md_xq64_u) with the signed weights, each lane started
 * from -128 times its 4 weights' sum, is the exact dot of the lane. */
INL void pair_step(const int T, const int R, const uint8_t *b0, const uint8_t *b1,
                   const uint8_t *const *X, int64_t n_in, int64_t i, __m512 *acc)
{
    const __m512i w = q8_0_pair(b0, b1);
    const __m512i zero = _mm512_setzero_si512();
    const __m512i start = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, _mm512_set1_epi8((char)0x80), w));
    const __m512 dw = scale_lanes(b0, b1);
    const __m512i pick = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    UNROLL for (int t = 0; t < T; t++) {
        const __m512i p = _mm512_dpbusd_epi32(start, _mm512_loadu_si512((const void *)md_xq64_u(X[t], i)), w);
        const __m128 d2 = _mm_castpd_ps(_mm_load_sd((const double *)md_xq64_d(X[t], n_in, i)));
        const __m512 dx = _mm512_permutexvar_ps(pick, _mm512_castps128_ps512(d2));
        acc[t * R] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(dw, dx), acc[t * R]);
    }
}

INL void rows_q8_0(const int T, const int R, const uint8_t *w, size_t rb, int64_t n_in,
                   const uint8_t *const *X, float *y, int64_t ldy)
{
    const int64_t nb = n_in / 32;
    __m512 acc[MAX_ACC], acc2[MAX_ACC];   /* two sets, as in rows_legacy */
    UNROLL for (int k = 0; k < R * T; k++)
        acc[k] = acc2[k] = _mm512_setzero_ps();
    UNROLL for (int r = 0; r < R; r++) {
        const uint8_t *row = w + r * rb;
        int64_t b = 0;
        for (; b + 4 <= nb; b += 4) {
            const uint8_t *b0 = row + b * 34;
            _mm_prefetch((const char *)b0 + PF_DIST, _MM_HINT_T0);
            _mm_prefetch((const char *)b0 + PF_DIST + 64, _MM_HINT_T0);
            _mm_prefetch((const char *)b0 + PF_DIST + 128, _MM_HINT_T0);
            pair_step(T, R, b0, b0 + 34, X, n_in, b / 2, acc + r);
            pair_step(T, R, b0 + 68, b0 + 102, X, n_in, b / 2 + 1, acc2 + r);
        }
        if (b + 2 <= nb) {
            pair_step(T, R, row + b * 34, row + (b + 1) * 34, X, n_in, b / 2, acc + r);
            b += 2;
        }
        if (b < nb)   /* an odd last block: nothing read past it */
            pair_step(T, R, row + b * 34, NULL, X, n_in, b / 2, acc2 + r);
    }
    UNROLL for (int k = 0; k < R * T; k++)
        acc[k] = _mm512_add_ps(acc[k], acc2[k]);
    store_group(R, T, acc, NULL, y, ldy);
}

/* ---- K quants: 64 values per step ---------------------------------------- */

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

/* Words 0..15 of a vector = scale g0, words 16..31 = scale g1 (of 16
 * int16 scales in sc16). */
INL __m512i scale_pair(__m256i sc16, int g0, int g1)
{
    const __m512i idx = _mm512_inserti64x4(_mm512_set1_epi16((short)g0), _mm256_set1_epi16((short)g1), 1);
    return _mm512_permutexvar_epi16(idx, _mm512_castsi256_si512(sc16));
}

/* Scales of 4 consecutive 16-value groups g..g+3, 8 words each. */
INL __m512i scale_quad(__m256i sc16, int g)
{
    const __m512i idx = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_set_m128i(_mm_set1_epi16((short)(g + 1)), _mm_set1_epi16((short)g))),
        _mm256_set_m128i(_mm_set1_epi16((short)(g + 3)), _mm_set1_epi16((short)(g + 2))), 1);
    return _mm512_permutexvar_epi16(idx, _mm512_castsi256_si512(sc16));
}

/* One Q4_K/Q5_K super-block of one row: isum[t] = its integer products
 * with token t's values, scaled by the sub-block scales; mins[t * R] +=
 * the min correction (dmin dx times the mins' dot with the sub-block
 * sums), acc[t * R] += d dx isum[t]. 64 bytes of nibbles at a time:
 * sub-blocks 4h and 4h+2 in the low nibbles, 4h+1 and 4h+3 in the high
 * ones, against the activations in that order (md_xq_avx512_row reorders
 * them): one load, two ANDs and a shift per 128 values, where 32 bytes at a
 * time needed a shift, an insert and an AND per 64. Q5_K's fifth bits:
 * bit j of qh byte l is value l of sub-block j, OR-ed in as 16 under a byte
 * mask (vptestmb) instead of shifted out pair by pair. One thread, W in L2:
 * Q4_K 16-21 -> 23 GB/s, Q5_K 18-19 -> 19-22. */
INL void blk_q45_k(const bool five, const int T, const int R, const uint8_t *blk,
                   const struct md_xq256 *const *X, int64_t b, __m512 *acc, __m128 *mins)
{
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    _mm_prefetch((const char *)blk + PF_DIST, _MM_HINT_T0);
    _mm_prefetch((const char *)blk + PF_DIST + 64, _MM_HINT_T0);
    _mm_prefetch((const char *)blk + PF_DIST + 128, _MM_HINT_T0);
    const __m128 dd = _mm_cvtph_ps(_mm_cvtsi32_si128((int)(ld16(blk) | (uint32_t)ld16(blk + 2) << 16)));
    const __m128i scm = k_scales_mins(blk + 4);
    const __m256i sc16 = _mm256_cvtepu8_epi16(scm);   /* words 0..7 scales, 8..15 mins */
    const __m128i mins16 = _mm256_extracti128_si256(sc16, 1);
    const uint8_t *qs = blk + (five ? 48 : 16);
    const __m512i qh = five ? _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(blk + 16)))
                            : _mm512_setzero_si512();
    __m512i isum[MAX_T];
    for (int t = 0; t < T; t++)
        isum[t] = _mm512_setzero_si512();
    for (int h = 0; h < 2; h++) {
        const __m512i v = _mm512_loadu_si512((const void *)(qs + 64 * h));
        __m512i lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
        if (five) {
            const __m512i b16 = _mm512_set1_epi8(0x10);
            /* lower 32 bytes test sub-block 4h (lo) / 4h+1 (hi), upper 32 4h+2 / 4h+3 */
            const __m512i t_lo = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (4 * h))),
                                                    _mm256_set1_epi8((char)(1 << (4 * h + 2))), 1);
            const __m512i t_hi = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (4 * h + 1))),
                                                    _mm256_set1_epi8((char)(1 << (4 * h + 3))), 1);
            lo = _mm512_mask_add_epi8(lo, _mm512_test_epi8_mask(qh, t_lo), lo, b16);   /* lo < 16: + is OR */
            hi = _mm512_mask_add_epi8(hi, _mm512_test_epi8_mask(qh, t_hi), hi, b16);
        }
        const __m512i s_lo = scale_pair(sc16, 4 * h, 4 * h + 2), s_hi = scale_pair(sc16, 4 * h + 1, 4 * h + 3);
        for (int t = 0; t < T; t++) {
            const int8_t *xq = X[t][b].q + 128 * h;
            isum[t] = _mm512_dpwssd_epi32(isum[t], _mm512_maddubs_epi16(lo, _mm512_loadu_si512((const void *)xq)), s_lo);
            isum[t] = _mm512_dpwssd_epi32(isum[t], _mm512_maddubs_epi16(hi, _mm512_loadu_si512((const void *)(xq + 64))), s_hi);
        }
    }
    for (int t = 0; t < T; t++) {
        const struct md_xq256 *x = X[t] + b;
        const __m128 dx = _mm_mul_ps(dd, _mm_set1_ps(x->d));   /* d dx, dmin dx */
        acc[t * R] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_set1_ps(_mm_cvtss_f32(dx)), acc[t * R]);
        const __m128i mm = _mm_madd_epi16(mins16, _mm_loadu_si128((const __m128i *)x->bsum32));
        mins[t * R] = _mm_fmadd_ps(_mm_cvtepi32_ps(mm), _mm_shuffle_ps(dx, dx, 0x55), mins[t * R]);
    }
}

INL void rows_q45_k(const bool five, const int T, const int R, const uint8_t *w, size_t rb, int64_t nb,
                    const struct md_xq256 *const *X, float *y, int64_t ldy)
{
    const int64_t bb = five ? 176 : 144;
    __m512 acc[MAX_ACC];
    __m128 mins[MAX_ACC];
    UNROLL for (int k = 0; k < R * T; k++) {
        acc[k] = _mm512_setzero_ps();
        mins[k] = _mm_setzero_ps();
    }
    UNROLL for (int r = 0; r < R; r++)
        for (int64_t b = 0; b < nb; b++)
            blk_q45_k(five, T, R, w + r * rb + b * bb, X, b, acc + r, mins + r);
    store_group(R, T, acc, mins, y, ldy);
}

/* One Q6_K super-block of one row into acc[t * R]. */
INL void blk_q6_k(const int T, const int R, const uint8_t *blk, const struct md_xq256 *const *X, int64_t b,
                  __m512 *acc)
{
    const __m512i m4 = _mm512_set1_epi8(0x0f), m3 = _mm512_set1_epi8(0x30);
    _mm_prefetch((const char *)blk + PF_DIST, _MM_HINT_T0);
    _mm_prefetch((const char *)blk + PF_DIST + 64, _MM_HINT_T0);
    _mm_prefetch((const char *)blk + PF_DIST + 128, _MM_HINT_T0);
    _mm_prefetch((const char *)blk + PF_DIST + 192, _MM_HINT_T0);
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(blk + 192)));
    __m512i isum[MAX_T];
    for (int t = 0; t < T; t++)
        isum[t] = _mm512_setzero_si512();
    for (int h = 0; h < 2; h++) {
        /* ql0 | ql1 (values 128h + l and 128h + 32 + l), their 5th/6th
         * bits from qh (pairs 0, 1) and, for the high nibbles, pairs 2, 3 */
        const __m512i ql = _mm512_loadu_si512((const void *)(blk + 64 * h));
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(blk + 128 + 32 * h));
        const __m512i qh2 = _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
        const __m512i lo = _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_and_si512(_mm512_slli_epi16(qh2, 4), m3));
        const __m512i hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4), _mm512_and_si512(qh2, m3));
        const __m512i s_lo = scale_quad(sc16, 8 * h), s_hi = scale_quad(sc16, 8 * h + 4);
        for (int t = 0; t < T; t++) {
            const int8_t *xq = X[t][b].q + 128 * h;
            isum[t] = _mm512_dpwssd_epi32(isum[t], _mm512_maddubs_epi16(lo, _mm512_loadu_si512((const void *)xq)), s_lo);
            isum[t] = _mm512_dpwssd_epi32(isum[t], _mm512_maddubs_epi16(hi, _mm512_loadu_si512((const void *)(xq + 64))), s_hi);
        }
    }
    const float d = f16(blk + 208);
    const __m256i sc_off = _mm256_slli_epi16(sc16, 5);   /* the -32 offset: 32 sc[g] bsum16[g] */
    for (int t = 0; t < T; t++) {
        const struct md_xq256 *x = X[t] + b;
        const __m256i off = _mm256_madd_epi16(sc_off, _mm256_loadu_si256((const __m256i *)x->bsum16));
        const __m512i v = _mm512_sub_epi32(isum[t], _mm512_zextsi256_si512(off));
        acc[t * R] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), _mm512_set1_ps(d * x->d), acc[t * R]);
    }
}

INL void rows_q6_k(const int T, const int R, const uint8_t *w, size_t rb, int64_t nb,
                   const struct md_xq256 *const *X, float *y, int64_t ldy)
{
    __m512 acc[MAX_ACC];
    UNROLL for (int k = 0; k < R * T; k++)
        acc[k] = _mm512_setzero_ps();
    UNROLL for (int r = 0; r < R; r++)
        for (int64_t b = 0; b < nb; b++)
            blk_q6_k(T, R, w + r * rb + b * 210, X, b, acc + r);
    store_group(R, T, acc, NULL, y, ldy);
}

/* ---- dispatch ------------------------------------------------------------ */

/* R rows from w (R * T <= MAX_ACC). */
INL void group_type(uint32_t type, const int T, const int R, const void *const *X, int64_t n_in,
                    const uint8_t *w, size_t rb, float *y, int64_t ldy)
{
    const struct md_xq256 *const *xk = (const struct md_xq256 *const *)X;
    switch (type) {
    case MD_TYPE_Q4_0: case MD_TYPE_Q4_1: case MD_TYPE_Q5_0: case MD_TYPE_Q5_1:
        rows_legacy(type, T, R, w, rb, n_in / 32, (const struct md_xq128 *const *)X, y, ldy);
        break;
    case MD_TYPE_Q8_0: rows_q8_0(T, R, w, rb, n_in, (const uint8_t *const *)X, y, ldy); break;
    case MD_TYPE_Q4_K: rows_q45_k(false, T, R, w, rb, n_in / 256, xk, y, ldy); break;
    case MD_TYPE_Q5_K: rows_q45_k(true, T, R, w, rb, n_in / 256, xk, y, ldy); break;
    default: rows_q6_k(T, R, w, rb, n_in / 256, xk, y, ldy); break;
    }
}

INL void rows_type(uint32_t type, const int T, const void *XQ, size_t xq_row_bytes, int64_t n_in,
                   const uint8_t *W, size_t row_bytes, int64_t n_rows, float *Y, int64_t ldy)
{
    const void *X[MAX_T];
    for (int t = 0; t < T; t++)
        X[t] = (const char *)XQ + (size_t)t * xq_row_bytes;
    const int R = T == 1 ? 4 : T == 2 ? 2 : 1;
    int64_t r = 0;
    for (; r + R <= n_rows; r += R)
        group_type(type, T, R, X, n_in, W + (size_t)r * row_bytes, row_bytes, Y + r, ldy);
    for (; r < n_rows; r++)
        group_type(type, T, 1, X, n_in, W + (size_t)r * row_bytes, row_bytes, Y + r, ldy);
}

/* Up to 8 tokens. The K quants take them in one pass over W (their
 * activation rows are compact, 1.2 bytes a value, and the weights are
 * unpacked once for all tokens; Q6_K at 8 tokens 17 % faster than two
 * passes); the legacy types and Q8_0 in passes of 4 (the legacy rows are 2
 * bytes a value: 8 of them and the W stream overflow L1, 30-40 % slower in
 * one pass; Q8_0's fit, but one pass was no faster: its tokens cost 4
 * multiplier-pipe operations per 64 products, dpbusd, convert, scale
 * product and FMA, which bound it at 8 tokens either way; the second pass
 * finds the work item's rows in L2). */
#define QDOT_TYPE(TYPE, NAME) \
    static TGT void qdot_##NAME(int T, const void *XQ, size_t xb, int64_t n_in, \
                                const uint8_t *W, size_t rb, int64_t n_rows, float *Y, int64_t ldy) \
    { \
        const bool k_quant = TYPE == MD_TYPE_Q4_K || TYPE == MD_TYPE_Q5_K || TYPE == MD_TYPE_Q6_K; \
        switch (T) { \
        case 1: rows_type(TYPE, 1, XQ, xb, n_in, W, rb, n_rows, Y, ldy); return; \
        case 2: rows_type(TYPE, 2, XQ, xb, n_in, W, rb, n_rows, Y, ldy); return; \
        case 3: rows_type(TYPE, 3, XQ, xb, n_in, W, rb, n_rows, Y, ldy); return; \
        case 4: rows_type(TYPE, 4, XQ, xb, n_in, W, rb, n_rows, Y, ldy); return; \
        default: break; \
        } \
        if (!k_quant) { \
            rows_type(TYPE, 4, XQ, xb, n_in, W, rb, n_rows, Y, ldy); \
            qdot_##NAME(T - 4, (const char *)XQ + 4 * xb, xb, n_in, W, rb, n_rows, Y + 4 * ldy, ldy); \
            return; \
        } \
        switch (T) { \
        case 5: rows_type(TYPE, 5, XQ, xb, n_in, W, rb, n_rows, Y, ldy); break; \
        case 6: rows_type(TYPE, 6, XQ, xb, n_in, W, rb, n_rows, Y, ldy); break; \
        case 7: rows_type(TYPE, 7, XQ, xb, n_in, W, rb, n_rows, Y, ldy); break; \
        default: rows_type(TYPE, 8, XQ, xb, n_in, W, rb, n_rows, Y, ldy); break; \
        } \
    }
QDOT_TYPE(MD_TYPE_Q4_0, q4_0)
QDOT_TYPE(MD_TYPE_Q4_1, q4_1)
QDOT_TYPE(MD_TYPE_Q5_0, q5_0)
QDOT_TYPE(MD_TYPE_Q5_1, q5_1)
QDOT_TYPE(MD_TYPE_Q8_0, q8_0)
QDOT_TYPE(MD_TYPE_Q4_K, q4_k)
QDOT_TYPE(MD_TYPE_Q5_K, q5_k)
QDOT_TYPE(MD_TYPE_Q6_K, q6_k)

bool md_qdot_avx512vnni_has(uint32_t wtype)
{
    return wtype == MD_TYPE_Q4_0 || wtype == MD_TYPE_Q4_1 || wtype == MD_TYPE_Q5_0 ||
           wtype == MD_TYPE_Q5_1 || wtype == MD_TYPE_Q8_0 || wtype == MD_TYPE_Q4_K ||
           wtype == MD_TYPE_Q5_K || wtype == MD_TYPE_Q6_K;
}

TGT void md_qdot_avx512vnni(uint32_t wtype, const void *XQ, int n_tok, size_t xq_row_bytes,
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
