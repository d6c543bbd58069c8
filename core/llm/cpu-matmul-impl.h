/* Internal interface between the matmul driver (cpu-kernels.c) and the
 * per-ISA kernels (cpu-matmul-avx2.c, cpu-matmul-avx512.c). Not installed,
 * not part of the engine's API. */
#ifndef MD_CPU_MATMUL_IMPL_H
#define MD_CPU_MATMUL_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__) || defined(__i386__)
#define MD_HAVE_X86 1
#else
#define MD_HAVE_X86 0
#endif

/* Largest n_tok served by the GEMV kernels (vectors along n_in, one pass
 * over W per group of up to MD_GEMV_MAX_TOK tokens). */
#define MD_GEMV_MAX_TOK 8

/* Per-ISA GEMM description. The driver computes Y = X W^T in tiles of
 * mr tokens x nr outputs. X is first packed tile by tile: tile i (tokens
 * i*mr .. i*mr+mr-1) is n_in x mr floats at xp + i * n_in * mr, element
 * (token i*mr + r, input k) at [k * mr + r], rows past n_tok zero. `pack`
 * writes nr rows of W, elements [k0, k0 + klen), as a [klen][nr] f32 panel
 * (64-byte aligned; rows past `nrows` zero; `tmp` is scratch of at least
 * nr * klen floats for types that are first dequantized row by row), and
 * `kernel` multiplies the first m rows of a packed X tile (x points at its
 * element k0) with such a panel into an m x nr block of Y (row stride ldy),
 * storing only the first `nvalid` columns; with `accum` it adds to Y instead
 * of overwriting it. k0 and klen are multiples of the type's block size. */
struct md_gemm_isa {
    int mr, nr;
    void (*pack)(uint32_t wtype, const uint8_t *W, size_t row_bytes, int nrows,
                 int64_t k0, int64_t klen, float *tmp, float *dst);
    void (*kernel)(int m, int64_t klen, const float *x, const float *wp,
                   float *y, int64_t ldy, int nvalid, int accum);
};

/* GEMV: Y[t * ldy + r] = dot(token t, row r of W) for t < n_tok
 * (1..MD_GEMV_MAX_TOK) and r < n_rows. X is token-interleaved in chunks of
 * the ISA's vector width V (md_gemv_vw): element k of token t is at
 * X[(k / V) * V * n_tok + t * V + k % V], the last chunk zero-padded (for
 * n_tok = 1 that is the plain row, and it need not be padded). Interleaving
 * keeps the tokens of one chunk in one stream: n_tok rows n_in apart alias
 * in L1 when n_in is a multiple of 1024 (measured 2.4x slower at 8 tokens).
 * Returns false (doing nothing) when the ISA has no kernel for wtype; the
 * driver then dequantizes rows and uses md_dotrows_fn (same X layout). */
typedef bool (*md_gemv_fn)(uint32_t wtype, const float *X, int n_tok, int64_t n_in,
                           const uint8_t *W, size_t row_bytes, int64_t n_rows,
                           float *Y, int64_t ldy);

/* Dot products of one f32 row w (n elements) with n_tok (<= MD_GEMV_MAX_TOK)
 * interleaved tokens: y[t * ldy] = dot(token t, w). */
typedef void (*md_dotrows_fn)(const float *w, const float *X, int n_tok,
                              int64_t n, float *y, int64_t ldy);

#if MD_HAVE_X86
extern const struct md_gemm_isa md_gemm_isa_avx2;
extern const struct md_gemm_isa md_gemm_isa_avx512;
bool md_gemv_avx2(uint32_t wtype, const float *X, int n_tok, int64_t n_in,
                  const uint8_t *W, size_t row_bytes, int64_t n_rows, float *Y, int64_t ldy);
bool md_gemv_avx512(uint32_t wtype, const float *X, int n_tok, int64_t n_in,
                    const uint8_t *W, size_t row_bytes, int64_t n_rows, float *Y, int64_t ldy);
/* Whole-row dequantization, bit-identical to md_dequantize_row; false for
 * types it does not know (cpu-dequant-avx2.c, used by both x86 paths). */
bool md_dequant_row_avx2(uint32_t type, const uint8_t *src, float *dst, int64_t n);
void md_dotrows_avx2(const float *w, const float *X, int n_tok,
                     int64_t n, float *y, int64_t ldy);
void md_dotrows_avx512(const float *w, const float *X, int n_tok,
                       int64_t n, float *y, int64_t ldy);
#endif

#endif
