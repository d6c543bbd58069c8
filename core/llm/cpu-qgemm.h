/* Integer-dot GEMM for quantized weights (prefill): the activations are
 * quantized once per row as for the GEMV of cpu-qdot.h (same md_xq32 /
 * md_xq256 rows, same rounding), the weights are unpacked panel by panel
 * into unsigned bytes, 16 rows interleaved 4 bytes at a time, so that one
 * AVX-512 VNNI dpbusd multiplies 4 values of one token with 16 rows and
 * each 32-bit lane holds the integer dot of one (row, token) pair. The
 * block scales are applied once per block in f32; the integer part of
 * every block product is exact, so results agree with md_qdot_ref to f32
 * rounding. Internal to the CPU backend; not installed. */
#ifndef MD_CPU_QGEMM_H
#define MD_CPU_QGEMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cpu-kernels.h"

/* Rows of one packed panel (the lanes of a 512-bit i32 vector). */
#define MD_QGEMM_NR 16

/* One 32-value block of a legacy type (Q4_0/Q4_1/Q5_0/Q5_1/Q8_0) for 16
 * rows: value = d * (u - offset) + m, offset per type (8, 16, 128 for
 * Q4_0, Q5_0, Q8_0 whose u is the int8 value + 128; 0 with a min). */
struct md_qgemm_blk32 {
    uint8_t u[8][MD_QGEMM_NR][4];   /* u[s][r]: values 4s..4s+3 of row r */
    float d[MD_QGEMM_NR];
    float m[MD_QGEMM_NR];
};

/* One 256-value super-block of a K quant for 16 rows, in groups of 16
 * values (Q6_K) or 32 (Q4_K/Q5_K): value = d * sc[g] * u - dmin * mn[g]
 * for Q4_K/Q5_K; d * sc[g] * (u - 32) for Q6_K, whose mn[g] = 32 sc[g] and
 * dmin = d. mn2[p][r] holds mn[2p] (low) and mn[2p+1] (high) as int16, to
 * multiply pairs of the activation block sums (bsum32 / bsum16) at once. */
struct md_qgemm_blk256 {
    uint8_t u[64][MD_QGEMM_NR][4];
    int32_t sc[16][MD_QGEMM_NR];
    int32_t mn2[8][MD_QGEMM_NR];
    float d[MD_QGEMM_NR];
    float dmin[MD_QGEMM_NR];
};

/* Bytes of a packed panel of rows of n_in values of wtype; 0 when the
 * type has no integer-dot GEMM (F32/F16/BF16). */
size_t md_qgemm_panel_bytes(uint32_t wtype, int64_t n_in);

/* Packs rows [0, nrows) (nrows <= 16) of W into `panel` (64-byte aligned,
 * md_qgemm_panel_bytes); rows past nrows are zero. Portable C. */
void md_qgemm_pack(uint32_t wtype, const uint8_t *W, size_t row_bytes, int nrows,
                   int64_t n_in, void *panel);

#if defined(__x86_64__) || defined(__i386__)
/* True when the CPU has AVX-512 F/BW/VL and VNNI (libgcc's CPU model). */
bool md_qgemm_avx512vnni_usable(void);
/* Y[t * ldy + r] = dot(activation row t, panel row r) for t < n_tok and
 * r < nvalid (the other rows are not stored); activation rows as in
 * md_qdot_fn. Every type md_qgemm_panel_bytes accepts. */
void md_qgemm_avx512vnni(uint32_t wtype, const void *panel, int64_t n_in, const void *XQ,
                         int64_t n_tok, size_t xq_row_bytes, float *Y, int64_t ldy, int nvalid);
#endif

/* md_matmul_qdot, except that with an AVX-512 VNNI CPU (isa
 * MD_ISA_AVX512) products of quantized weights use the integer-dot GEMM
 * above for n_tok > 8 (instead of dequantized f32 panels) and the AVX-512
 * VNNI GEMV (md_qdot_avx512vnni) for n_tok <= 8 and the types it has: off
 * the exact product by the activation rounding, like md_matmul_qdot's GEMV
 * (measured in test_qdot). Other CPUs, types and shapes: exactly
 * md_matmul_qdot. */
int md_matmul_qgemm(struct md_threadpool *tp, enum md_cpu_isa isa,
                    const float *X, int64_t n_tok, int64_t n_in,
                    const void *W, uint32_t wtype, int64_t n_out, float *Y);

#endif
