/* Portable C integer-dot GEMV (cpu-qdot.h), for CPUs without the x86
 * kernels: each weight block is decoded once into byte values and dotted
 * with every token's int8 activations (md_xq_quantize_row's rows) in
 * fixed-length loops that a compiler vectorizes for the target's SIMD
 * (SSE2, NEON, ...): integer sums are exact in any order, so nothing asks
 * for reassociation. md_qdot_ref computes the same sums token by token
 * with the weights decoded again for each; this file only reorders that
 * work (results agree to f32 rounding of the scales, as the ISA kernels
 * do). Which of two forms each type takes was measured (GCC 12, -O3,
 * SSE2; docs/benchmarks/cpu/2026-12-07-portable/): the legacy types are
 * decoded to signed values with the offset applied (Q4_0 u - 8, Q5_0
 * u - 16; Q4_1, Q5_1 u, plus m sum(x)) and dotted as int8 x int8, which ran
 * faster there than unsigned values with the offset through sum(x); the K
 * quants are decoded unsigned (u, 0..63) with the offsets through the
 * activations' sums (Q6_K -32 per 16 values; Q4_K, Q5_K -m sum(x) per 32),
 * faster the other way round. Q8_0 is dotted as stored. */
#include <string.h>

#include "cpu-qdot.h"
#include "quant.h"

#define MAX_T 8   /* tokens one pass over W serves (the GEMV's group) */

static inline float f16_at(const uint8_t *p)
{
    return md_half_to_float((uint16_t)(p[0] | (p[1] << 8)));
}

static inline int32_t dot_s8(const int8_t *a, const int8_t *b, int n)
{
    int32_t s = 0;
    for (int j = 0; j < n; j++)
        s += a[j] * b[j];
    return s;
}

/* Unsigned weights: widening them is a zero-extension, cheaper than a
 * sign-extension where the ISA has no widening multiply (SSE2). */
static inline int32_t dot_u8(const uint8_t *a, const int8_t *b, int n)
{
    int32_t s = 0;
    for (int j = 0; j < n; j++)
        s += a[j] * b[j];
    return s;
}

/* A legacy 4/5-bit block's 32 unsigned values: low nibbles of qs[0..15],
 * then their high nibbles; bit j of qh on top as bit 4 (five), found
 * without variable shifts, which SSE2 has not. */
static inline void nibbles(const uint8_t *qs, bool five, uint32_t qh, int8_t *w)
{
    for (int j = 0; j < 16; j++) {
        w[j] = (int8_t)(qs[j] & 0x0f);
        w[j + 16] = (int8_t)(qs[j] >> 4);
    }
    /* qh a byte at a time: the byte times 0x0101... copies it into all 8
     * bytes, byte i keeps bit i, adding 0x7f sets the top bit of the
     * non-zero bytes (no carry crosses a byte), shifted down to 0x10;
     * byte i of the word is element 8k + i on a little-endian host */
    for (int k = 0; five && k < 4; k++) {
        uint64_t x = ((qh >> (8 * k)) & 0xffu) * 0x0101010101010101ull;
        x = (((x & 0x8040201008040201ull) + 0x7f7f7f7f7f7f7f7full) & 0x8080808080808080ull) >> 3;
        uint64_t v;
        memcpy(&v, w + 8 * k, 8);
        v |= x;
        memcpy(w + 8 * k, &v, 8);
    }
}

static inline uint32_t u32_at(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;   /* little-endian hosts only, like the rest of the engine */
}

/* always_inline: md_qdot_portable calls it with a constant type, so that
 * each type gets its own loop without the type's branches (measured: Q4_0
 * at one token three times as fast as one shared loop). */
static inline __attribute__((always_inline)) void
rows_legacy(uint32_t type, int T, const struct md_xq32 *const *X, int64_t nb, const uint8_t *W,
            size_t row_bytes, int64_t n_rows, float *Y, int64_t ldy)
{
    const int64_t bb = md_type_block_bytes(type);
    const bool has_min = type == MD_TYPE_Q4_1 || type == MD_TYPE_Q5_1;
    const int offset = type == MD_TYPE_Q4_0 ? 8 : type == MD_TYPE_Q5_0 ? 16 : 0;
    for (int64_t r = 0; r < n_rows; r++) {
        const uint8_t *blk = W + (size_t)r * row_bytes;
        float acc[MAX_T] = { 0 };
        for (int64_t b = 0; b < nb; b++, blk += bb) {
            const float d = f16_at(blk);
            if (type == MD_TYPE_Q8_0) {   /* the stored values are the ones to dot */
                for (int t = 0; t < T; t++)
                    acc[t] += d * X[t][b].d * (float)dot_s8((const int8_t *)blk + 2, X[t][b].q, 32);
                continue;
            }
            int8_t w[32];
            float m = 0.0f;
            switch (type) {
            case MD_TYPE_Q4_0: nibbles(blk + 2, false, 0, w); break;
            case MD_TYPE_Q4_1: nibbles(blk + 4, false, 0, w); m = f16_at(blk + 2); break;
            case MD_TYPE_Q5_0: nibbles(blk + 6, true, u32_at(blk + 2), w); break;
            default:   /* Q5_1 */
                nibbles(blk + 8, true, u32_at(blk + 4), w);
                m = f16_at(blk + 2);
                break;
            }
            for (int j = 0; j < 32; j++)
                w[j] = (int8_t)(w[j] - offset);
            for (int t = 0; t < T; t++) {
                const struct md_xq32 *x = X[t] + b;
                acc[t] += d * x->d * (float)dot_s8(w, x->q, 32);
                if (has_min)
                    acc[t] += m * x->d * (float)x->sum;
            }
        }
        for (int t = 0; t < T; t++)
            Y[t * ldy + r] = acc[t];
    }
}

/* Q4_K / Q5_K super-block: 256 unsigned values, sub-block j (32 values) is
 * the low (j even) or high (j odd) nibbles of qs[32 (j/2) ..], with bit j of
 * qh[l] as bit 4 for Q5_K. */
static void decode_q45_k(const uint8_t *blk, bool five, uint8_t *w)
{
    const uint8_t *qh = blk + 16, *qs = blk + (five ? 48 : 16);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            w[64 * c + l] = (uint8_t)(qs[32 * c + l] & 0x0f);
            w[64 * c + 32 + l] = (uint8_t)(qs[32 * c + l] >> 4);
        }
    if (five)
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                w[64 * c + l] = (uint8_t)(w[64 * c + l] | ((qh[l] & (1u << (2 * c))) ? 0x10 : 0));
                w[64 * c + 32 + l] =
                    (uint8_t)(w[64 * c + 32 + l] | ((qh[l] & (2u << (2 * c))) ? 0x10 : 0));
            }
}

/* Q6_K super-block: 256 unsigned values u (0..63) in element order; the
 * -32 offset goes on through the activations' sums. */
static void decode_q6_k(const uint8_t *blk, uint8_t *w)
{
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = blk + 64 * h, *qh = blk + 128 + 32 * h;
        uint8_t *o = w + 128 * h;
        for (int l = 0; l < 32; l++) {
            o[l] = (uint8_t)((ql[l] & 0x0f) | ((qh[l] & 3) << 4));
            o[l + 32] = (uint8_t)((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4));
            o[l + 64] = (uint8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
            o[l + 96] = (uint8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
        }
    }
}

static inline __attribute__((always_inline)) void
rows_k(uint32_t type, int T, const struct md_xq256 *const *X, int64_t nb, const uint8_t *W,
       size_t row_bytes, int64_t n_rows, float *Y, int64_t ldy)
{
    const int64_t bb = md_type_block_bytes(type);
    for (int64_t r = 0; r < n_rows; r++) {
        const uint8_t *blk = W + (size_t)r * row_bytes;
        float acc[MAX_T] = { 0 };
        for (int64_t b = 0; b < nb; b++, blk += bb) {
            uint8_t w[256];
            if (type == MD_TYPE_Q6_K) {
                decode_q6_k(blk, w);
                const int8_t *sc = (const int8_t *)(blk + 192);
                const float d = f16_at(blk + 208);
                for (int t = 0; t < T; t++) {
                    const struct md_xq256 *x = X[t] + b;
                    int32_t isum = 0;
                    for (int j = 0; j < 16; j++)
                        isum += sc[j] * (dot_u8(w + 16 * j, x->q + 16 * j, 16) - 32 * x->bsum16[j]);
                    acc[t] += d * x->d * (float)isum;
                }
                continue;
            }
            int sc[8], m[8];
            md_k_scales(blk + 4, sc, m);
            decode_q45_k(blk, type == MD_TYPE_Q5_K, w);
            const float d = f16_at(blk), dmin = f16_at(blk + 2);
            for (int t = 0; t < T; t++) {
                const struct md_xq256 *x = X[t] + b;
                int32_t isum = 0, msum = 0;
                for (int j = 0; j < 8; j++) {
                    isum += sc[j] * dot_u8(w + 32 * j, x->q + 32 * j, 32);
                    msum += m[j] * x->bsum32[j];
                }
                acc[t] += d * x->d * (float)isum - dmin * x->d * (float)msum;
            }
        }
        for (int t = 0; t < T; t++)
            Y[t * ldy + r] = acc[t];
    }
}

void md_qdot_portable(uint32_t wtype, const void *XQ, int n_tok, size_t xq_row_bytes,
                      int64_t n_in, const uint8_t *W, size_t row_bytes,
                      int64_t n_rows, float *Y, int64_t ldy)
{
    for (int t0 = 0; t0 < n_tok; t0 += MAX_T) {
        const int T = n_tok - t0 < MAX_T ? n_tok - t0 : MAX_T;
        const void *X[MAX_T];
        for (int t = 0; t < T; t++)
            X[t] = (const char *)XQ + (size_t)(t0 + t) * xq_row_bytes;
        if (wtype == MD_TYPE_Q4_K && T == 1) {
            /* one token: the reference's loop, decoding and dotting in one
             * pass, measured 10-40 % faster for Q4_K (and only for it) */
            md_qdot_ref(wtype, X[0], 1, xq_row_bytes, n_in, W, row_bytes, n_rows, Y + t0 * ldy,
                        ldy);
            continue;
        }
        const struct md_xq32 *const *X32 = (const struct md_xq32 *const *)X;
        const struct md_xq256 *const *X256 = (const struct md_xq256 *const *)X;
        const int64_t nb = n_in / MD_QK, nbk = n_in / MD_QK_K;
        float *y = Y + t0 * ldy;
#define LEGACY(TYPE) rows_legacy(TYPE, T, X32, nb, W, row_bytes, n_rows, y, ldy)
#define KQUANT(TYPE) rows_k(TYPE, T, X256, nbk, W, row_bytes, n_rows, y, ldy)
        switch (wtype) {
        case MD_TYPE_Q4_0: LEGACY(MD_TYPE_Q4_0); break;
        case MD_TYPE_Q4_1: LEGACY(MD_TYPE_Q4_1); break;
        case MD_TYPE_Q5_0: LEGACY(MD_TYPE_Q5_0); break;
        case MD_TYPE_Q5_1: LEGACY(MD_TYPE_Q5_1); break;
        case MD_TYPE_Q8_0: LEGACY(MD_TYPE_Q8_0); break;
        case MD_TYPE_Q4_K: KQUANT(MD_TYPE_Q4_K); break;
        case MD_TYPE_Q5_K: KQUANT(MD_TYPE_Q5_K); break;
        case MD_TYPE_Q6_K: KQUANT(MD_TYPE_Q6_K); break;
        default: break;
        }
#undef LEGACY
#undef KQUANT
    }
}
