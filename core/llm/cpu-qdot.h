/* Integer-dot GEMV for quantized weights (decode): the activations are
 * quantized once per row to 8 bits (one scale per 32 values for the legacy
 * types, per 256 with block sums for the K quants), and each weight block is
 * multiplied with them in integers, its scales applied once per block. This
 * is an approximation of the exact product with dequantized weights (the
 * activation rounding, at most 1/254 of a block's largest value per
 * element); md_matmul_mode(MD_MATMUL_EXACT) keeps the exact path.
 * Internal to the CPU backend; not installed. */
#ifndef MD_CPU_QDOT_H
#define MD_CPU_QDOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* 32 activations of a legacy-type block: x ~= d * q, sum = sum of q. */
struct md_xq32 {
    int8_t q[32];
    float d;
    int32_t sum;
};

/* 256 activations of a K-quant super-block: x ~= d * q; bsum16[i] and
 * bsum32[i]: sums of q over the i-th 16 and 32 values (the K quants'
 * sub-block offsets and mins multiply them). */
struct md_xq256 {
    int8_t q[256];
    int16_t bsum16[16];
    int16_t bsum32[8];
    float d;
};

/* A Q8_0 activation row as the AVX-512 GEMV reads it, by pairs of blocks
 * (an odd last block is paired with zeros): first every pair's 64 values
 * as unsigned bytes x + 128 (md_xq64_u), then every pair's two scales
 * (md_xq64_d). vpdpbusd then multiplies these with the signed weights as
 * stored, starting each lane from -128 times its weights' sum (a property
 * of the weights, computed once for all tokens), so a token costs one
 * 64-byte load and 8 bytes of scales a pair: 8 tokens' rows stay in L1
 * beside the weight stream. */
static inline int64_t md_xq64_pairs(int64_t n_in) { return (n_in / 32 + 1) / 2; }
static inline const uint8_t *md_xq64_u(const void *row, int64_t i)
{
    return (const uint8_t *)row + 64 * i;
}
static inline const float *md_xq64_d(const void *row, int64_t n_in, int64_t i)
{
    return (const float *)((const uint8_t *)row + 64 * md_xq64_pairs(n_in)) + 2 * i;
}

/* Four activation blocks k = 0..3 for the AVX-512 GEMV of Q4_0, Q4_1,
 * Q5_0 and Q5_1, in the order
 * of 4 blocks' low and high nibbles: lo[16k + j] = q_k[j], hi[16k + j] =
 * q_k[16 + j] (j < 16); lane l = 4k + m gets off[l] = -8 * (the sum of
 * lo[4l..4l+3] and hi[4l..4l+3]) and d[l] = d_k. Missing blocks are zero. */
struct md_xq128 {
    int8_t lo[64];
    int8_t hi[64];
    int32_t off[16];
    float d[16];
};

/* Bytes of one quantized activation row of n_in values for weights of
 * `wtype`; 0 when wtype has no integer-dot path (F32/F16/BF16). */
size_t md_xq_row_bytes(uint32_t wtype, int64_t n_in);

/* Quantizes n_in floats (a multiple of the type's block) for `wtype`.
 * Blocks holding a NaN or an infinity get d = NaN (the products are then
 * NaN, as the exact path's would be), never an undefined conversion. */
void md_xq_quantize_row(uint32_t wtype, const float *x, int64_t n_in, void *dst);

/* Y[t * ldy + r] = dot(activation row t, weight row r) for t < n_tok,
 * r < n_rows; activation row t at (const char *)XQ + t * xq_row_bytes.
 * The integer part of every block product is exact; the scales are applied
 * in f32 (the ISA kernels sum blocks in another order than the reference,
 * so results agree to f32 rounding, not bit for bit). */
typedef void (*md_qdot_fn)(uint32_t wtype, const void *XQ, int n_tok, size_t xq_row_bytes,
                           int64_t n_in, const uint8_t *W, size_t row_bytes,
                           int64_t n_rows, float *Y, int64_t ldy);

/* The activation row of md_qdot_avx512vnni from a row of
 * md_xq_quantize_row (same values): md_xq128 for Q4_0, Q4_1, Q5_0 and Q5_1, the md_xq64 layout for Q8_0,
 * a copy for the K quants; 0 bytes for the float types. */
size_t md_xq_avx512_row_bytes(uint32_t wtype, int64_t n_in);
void md_xq_avx512_row(uint32_t wtype, const void *xq, int64_t n_in, void *dst);

/* The activation row of md_qdot_avx2 from a row of md_xq_quantize_row
 * (same values): md_xq128 for Q4_0, Q4_1, Q5_0 and Q5_1, a copy for the
 * others. */
size_t md_xq_avx2_row_bytes(uint32_t wtype, int64_t n_in);
void md_xq_avx2_row(uint32_t wtype, const void *xq, int64_t n_in, void *dst);

/* Portable C: every type md_xq_row_bytes accepts, each weight block
 * decoded once for all tokens, loops a compiler vectorizes; the kernel of
 * CPUs without the x86 ones (cpu-qdot-portable.c). */
void md_qdot_portable(uint32_t wtype, const void *XQ, int n_tok, size_t xq_row_bytes,
                      int64_t n_in, const uint8_t *W, size_t row_bytes,
                      int64_t n_rows, float *Y, int64_t ldy);

/* Portable C reference: every type md_xq_row_bytes accepts. */
void md_qdot_ref(uint32_t wtype, const void *XQ, int n_tok, size_t xq_row_bytes,
                 int64_t n_in, const uint8_t *W, size_t row_bytes,
                 int64_t n_rows, float *Y, int64_t ldy);

#if defined(__x86_64__) || defined(__i386__)
/* AVX2 + FMA + F16C kernels (256-bit maddubs/madd), also used on AVX-512
 * CPUs; false (nothing done) for a type they do not cover. Their
 * activation rows are made by md_xq_avx2_row (md_xq_avx2_row_bytes each). */
bool md_qdot_avx2_has(uint32_t wtype);
void md_qdot_avx2(uint32_t wtype, const void *XQ, int n_tok, size_t xq_row_bytes,
                  int64_t n_in, const uint8_t *W, size_t row_bytes,
                  int64_t n_rows, float *Y, int64_t ldy);
/* AVX-512 (F, BW, VL, DQ) + VNNI kernels: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
 * Q4_K, Q5_K, Q6_K;
 * the caller checks the CPU (md_qgemm_avx512vnni_usable in cpu-qgemm.h)
 * and md_qdot_avx512vnni_has(wtype). Their activation rows are made by
 * md_xq_avx512_row (md_xq_avx512_row_bytes each). */
bool md_qdot_avx512vnni_has(uint32_t wtype);
void md_qdot_avx512vnni(uint32_t wtype, const void *XQ, int n_tok, size_t xq_row_bytes,
                        int64_t n_in, const uint8_t *W, size_t row_bytes,
                        int64_t n_rows, float *Y, int64_t ldy);
#endif

/* The 6-bit scales and mins of the 8 sub-blocks of a Q4_K/Q5_K
 * super-block, from its 12 scale bytes s (quant.c's k_scale_min for
 * j = 0..7). */
static inline void md_k_scales(const uint8_t *s, int sc[8], int m[8])
{
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            sc[j] = s[j] & 63;
            m[j] = s[j + 4] & 63;
        } else {
            sc[j] = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
            m[j] = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        }
    }
}

/* A kernel file's md_qdot_fn for TYPE, qdot_NAME, from its
 * rows_type(TYPE, T, ...) for T = 1..4 (a compile-time T); 5..8 tokens
 * run as two passes over W. ATTR: the file's target attribute. */
#define MD_QDOT_BY_ROWS(TYPE, NAME, ATTR) \
    static ATTR void qdot_##NAME(int T, const void *XQ, size_t xb, int64_t n_in, \
                                 const uint8_t *W, size_t rb, int64_t n_rows, float *Y, int64_t ldy) \
    { \
        switch (T) { \
        case 1: rows_type(TYPE, 1, XQ, xb, n_in, W, rb, n_rows, Y, ldy); break; \
        case 2: rows_type(TYPE, 2, XQ, xb, n_in, W, rb, n_rows, Y, ldy); break; \
        case 3: rows_type(TYPE, 3, XQ, xb, n_in, W, rb, n_rows, Y, ldy); break; \
        case 4: rows_type(TYPE, 4, XQ, xb, n_in, W, rb, n_rows, Y, ldy); break; \
        default: \
            rows_type(TYPE, 4, XQ, xb, n_in, W, rb, n_rows, Y, ldy); \
            qdot_##NAME(T - 4, (const char *)XQ + 4 * xb, xb, n_in, W, rb, n_rows, Y + 4 * ldy, ldy); \
            break; \
        } \
    }

#endif
