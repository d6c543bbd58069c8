/* AVX-512 VNNI kernel of the integer-dot GEMM (cpu-qgemm.h). A tile is
 * one packed panel (16 rows, one per 32-bit lane) times up to 8 tokens:
 * each dpbusd multiplies 4 unsigned weight bytes of every row with 4
 * activation bytes of one token (broadcast), so a block's integer dot
 * builds up in the lane without any horizontal sum, and the scales are
 * applied to 16 rows at once. The weight offsets (Q4_0/Q5_0/Q8_0) and the
 * K quants' mins go through the activation block sums in integers: the
 * dot of a block is exact before its one conversion to f32.
 * Every function carries a target attribute (the file builds with -O2). */
#include "cpu-qgemm.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <string.h>

#include "cpu-qdot.h"
#include "quant.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma")))
#define INL static inline __attribute__((always_inline)) TGT
#define MAX_T 8

bool md_qgemm_avx512vnni_usable(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vnni");
}

/* 4 activation bytes (or two int16 block sums) in every lane. */
INL __m512i bcast4(const void *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

INL void store_rows(const int T, const __m512 *acc, float *Y, int64_t ldy, int nvalid)
{
    const __mmask16 m = (__mmask16)((1u << nvalid) - 1u);
    for (int t = 0; t < T; t++)
        _mm512_mask_storeu_ps(Y + t * ldy, m, acc[t]);
}

/* Legacy types: value = d (u - off) + m per 32-value block. */
INL void tile_legacy(const int T, int off, bool has_min, const struct md_qgemm_blk32 *b, int64_t nb,
                     const struct md_xq32 *const *X, float *Y, int64_t ldy, int nvalid)
{
    __m512 acc[MAX_T];
    for (int t = 0; t < T; t++)
        acc[t] = _mm512_setzero_ps();
    for (int64_t k = 0; k < nb; k++, b++) {
        __m512i dot[MAX_T];
#pragma GCC unroll 8
        for (int t = 0; t < T; t++)
            dot[t] = _mm512_set1_epi32(-off * X[t][k].sum);
#pragma GCC unroll 8
        for (int s = 0; s < 8; s++) {
            const __m512i w = _mm512_load_si512((const void *)b->u[s]);
#pragma GCC unroll 8
            for (int t = 0; t < T; t++)
                dot[t] = _mm512_dpbusd_epi32(dot[t], w, bcast4(X[t][k].q + 4 * s));
        }
        const __m512 d = _mm512_load_ps(b->d);
#pragma GCC unroll 8
        for (int t = 0; t < T; t++)
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[t]), _mm512_mul_ps(d, _mm512_set1_ps(X[t][k].d)),
                                     acc[t]);
        if (has_min) {
            const __m512 m = _mm512_load_ps(b->m);
#pragma GCC unroll 8
            for (int t = 0; t < T; t++)
                acc[t] = _mm512_fmadd_ps(m, _mm512_set1_ps(X[t][k].d * (float)X[t][k].sum), acc[t]);
        }
    }
    store_rows(T, acc, Y, ldy, nvalid);
}

/* K quants: groups of 16 values (Q6_K) or 32 (Q4_K/Q5_K), an integer
 * scale each; the mins (Q6_K: the -32 offset times the scale) multiply
 * the activation's group sums, two groups per vpdpwssd. */
INL void tile_k(const int T, const bool q6, const struct md_qgemm_blk256 *b, int64_t nb,
                const struct md_xq256 *const *X, float *Y, int64_t ldy, int nvalid)
{
    const int n_groups = q6 ? 16 : 8, steps = q6 ? 4 : 8;
    __m512 acc[MAX_T];
    for (int t = 0; t < T; t++)
        acc[t] = _mm512_setzero_ps();
    for (int64_t k = 0; k < nb; k++, b++) {
        __m512i isum[MAX_T], dot[MAX_T];
        for (int t = 0; t < T; t++)
            isum[t] = _mm512_setzero_si512();
        for (int g = 0; g < n_groups; g++) {
#pragma GCC unroll 8
            for (int t = 0; t < T; t++)
                dot[t] = _mm512_setzero_si512();
#pragma GCC unroll 8
            for (int s = g * steps; s < (g + 1) * steps; s++) {
                const __m512i w = _mm512_load_si512((const void *)b->u[s]);
#pragma GCC unroll 8
                for (int t = 0; t < T; t++)
                    dot[t] = _mm512_dpbusd_epi32(dot[t], w, bcast4(X[t][k].q + 4 * s));
            }
            const __m512i sc = _mm512_load_si512((const void *)b->sc[q6 ? g : 2 * g]);
#pragma GCC unroll 8
            for (int t = 0; t < T; t++)
                isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(dot[t], sc));
        }
        /* mins: dot[t] becomes sum_g mn[g] * bsum[g] */
        for (int t = 0; t < T; t++)
            dot[t] = _mm512_setzero_si512();
        for (int p = 0; p < n_groups / 2; p++) {
            const __m512i mn = _mm512_load_si512((const void *)b->mn2[p]);
#pragma GCC unroll 8
            for (int t = 0; t < T; t++)
                dot[t] = _mm512_dpwssd_epi32(dot[t], mn, bcast4((q6 ? X[t][k].bsum16 : X[t][k].bsum32) + 2 * p));
        }
        const __m512 d = _mm512_load_ps(b->d);
        if (q6) {
#pragma GCC unroll 8
            for (int t = 0; t < T; t++)
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(isum[t], dot[t])),
                                         _mm512_mul_ps(d, _mm512_set1_ps(X[t][k].d)), acc[t]);
        } else {
            const __m512 dmin = _mm512_load_ps(b->dmin);
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) {
                const __m512 dx = _mm512_set1_ps(X[t][k].d);
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(d, dx), acc[t]);
                acc[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(dot[t]), _mm512_mul_ps(dmin, dx), acc[t]);
            }
        }
    }
    store_rows(T, acc, Y, ldy, nvalid);
}

INL void tile(uint32_t wtype, const int T, const void *panel, int64_t n_in, const void *const *X,
              float *Y, int64_t ldy, int nvalid)
{
    const struct md_qgemm_blk32 *b32 = panel;
    const struct md_xq32 *const *x32 = (const struct md_xq32 *const *)X;
    switch (wtype) {
    case MD_TYPE_Q4_0: tile_legacy(T, 8, false, b32, n_in / 32, x32, Y, ldy, nvalid); break;
    case MD_TYPE_Q5_0: tile_legacy(T, 16, false, b32, n_in / 32, x32, Y, ldy, nvalid); break;
    case MD_TYPE_Q8_0: tile_legacy(T, 128, false, b32, n_in / 32, x32, Y, ldy, nvalid); break;
    case MD_TYPE_Q4_1:
    case MD_TYPE_Q5_1: tile_legacy(T, 0, true, b32, n_in / 32, x32, Y, ldy, nvalid); break;
    case MD_TYPE_Q6_K:
        tile_k(T, true, panel, n_in / 256, (const struct md_xq256 *const *)X, Y, ldy, nvalid);
        break;
    default:
        tile_k(T, false, panel, n_in / 256, (const struct md_xq256 *const *)X, Y, ldy, nvalid);
        break;
    }
}

#define TILE_T(N) \
    static TGT void tile_##N(uint32_t wtype, const void *panel, int64_t n_in, const void *const *X, \
                             float *Y, int64_t ldy, int nvalid) \
    { \
        tile(wtype, N, panel, n_in, X, Y, ldy, nvalid); \
    }
TILE_T(1)
TILE_T(2)
TILE_T(3)
TILE_T(4)
TILE_T(5)
TILE_T(6)
TILE_T(7)
TILE_T(8)

typedef void (*tile_fn)(uint32_t, const void *, int64_t, const void *const *, float *, int64_t, int);

TGT void md_qgemm_avx512vnni(uint32_t wtype, const void *panel, int64_t n_in, const void *XQ,
                             int64_t n_tok, size_t xq_row_bytes, float *Y, int64_t ldy, int nvalid)
{
    static const tile_fn tiles[MAX_T + 1] = { NULL, tile_1, tile_2, tile_3, tile_4,
                                              tile_5, tile_6, tile_7, tile_8 };
    for (int64_t t0 = 0; t0 < n_tok; t0 += MAX_T) {
        const int T = (int)(n_tok - t0 < MAX_T ? n_tok - t0 : MAX_T);
        const void *X[MAX_T];
        for (int t = 0; t < T; t++)
            X[t] = (const char *)XQ + (size_t)(t0 + t) * xq_row_bytes;
        tiles[T](wtype, panel, n_in, X, Y + t0 * ldy, ldy, nvalid);
    }
}

#endif
