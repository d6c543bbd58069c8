/* AVX-512 (F/BW/VL/DQ + FMA/F16C) matmul kernels. Every function carries a
 * target attribute, so the file builds with plain -O2 and the driver calls
 * into it only after md_cpu_isa_detect() reported MD_ISA_AVX512.
 *
 * GEMM: outer-product micro-kernel of 6 tokens x 64 outputs (24 zmm
 * accumulators, 4 loads + 6 broadcasts per 24 FMAs), over a [k][64] f32
 * panel of W (F16/BF16/Q8_0 converted while packing, 16x16 register
 * transposes; other types dequantized first) and X packed in [k][6] tiles.
 * GEMV: one W row at a time against up to 8 tokens, vectors along n_in,
 * weights converted in registers, one pass over W per 8 tokens. */
#include "cpu-matmul-impl.h"

#if MD_HAVE_X86

#include <immintrin.h>
#include <string.h>

#include "quant.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline)) TGT

/* Tile: MR tokens x NV vectors of 16 outputs (NR = 16 * NV outputs).
 * 6 x 64 measured 2-5% faster than 12 x 32 and 8 x 48 (single thread,
 * F16, n_tok 512): fewer broadcasts per FMA (1 per 4 instead of 1 per 2). */
#ifndef MD_AVX512_NV
#define MD_AVX512_NV 4
#endif
#ifndef MD_AVX512_MR
#define MD_AVX512_MR 6
#endif
#define NV MD_AVX512_NV
#define NR (16 * NV)
#define MR MD_AVX512_MR

/* ---- element loaders: 16 consecutive elements of a row as f32 ---------- */

/* The fp16 at p converted and broadcast to 16 lanes (vpbroadcastw +
 * vcvtph2ps: no trip through a general register). */
INL __m512 bcast_f16(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return _mm512_cvtph_ps(_mm256_set1_epi16((short)h));
}

/* k is a multiple of 16; mask selects the valid elements (tails). */
INL __m512 load16(uint32_t type, const uint8_t *row, int64_t k, __mmask16 mask)
{
    switch (type) {
    case MD_TYPE_F32:
        return _mm512_maskz_loadu_ps(mask, (const float *)row + k);
    case MD_TYPE_F16:
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, (const uint16_t *)row + k));
    case MD_TYPE_BF16:
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(
            _mm256_maskz_loadu_epi16(mask, (const uint16_t *)row + k)), 16));
    default: { /* MD_TYPE_Q8_0: no tails (n_in % 32 == 0) */
        const uint8_t *b = row + (k >> 5) * 34;
        __m512 q = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
            _mm_loadu_si128((const __m128i *)(b + 2 + (k & 31)))));
        return _mm512_mul_ps(q, bcast_f16(b));
    }
    }
}

INL __m512 load16_full(uint32_t type, const uint8_t *row, int64_t k)
{
    switch (type) {
    case MD_TYPE_F32:
        return _mm512_loadu_ps((const float *)row + k);
    case MD_TYPE_F16:
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + k)));
    case MD_TYPE_BF16:
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(
            _mm256_loadu_si256((const __m256i *)((const uint16_t *)row + k))), 16));
    default:
        return load16(type, row, k, 0xffff);
    }
}

/* ---- 16x16 transpose: r[i] = row i; writes column j to dst + j * ld ---- */

INL void transpose16_store(__m512 r[16], float *dst, int64_t ld, int nstore)
{
    __m512 t[16], u[16];
    #pragma GCC unroll 16
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    #pragma GCC unroll 16
    for (int i = 0; i < 4; i++) {
        u[4 * i + 0] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    /* u[4g + j] lane L = element 4L + j of rows 4g..4g+3 */
    #pragma GCC unroll 16
    for (int j = 0; j < 4; j++) {
        __m512 v = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88);
        __m512 w = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);
        __m512 v2 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88);
        __m512 w2 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
        __m512 o0 = _mm512_shuffle_f32x4(v, v2, 0x88);   /* L = 0 */
        __m512 o2 = _mm512_shuffle_f32x4(v, v2, 0xDD);   /* L = 2 */
        __m512 o1 = _mm512_shuffle_f32x4(w, w2, 0x88);   /* L = 1 */
        __m512 o3 = _mm512_shuffle_f32x4(w, w2, 0xDD);   /* L = 3 */
        if (j < nstore) _mm512_store_ps(dst + (int64_t)j * ld, o0);
        if (4 + j < nstore) _mm512_store_ps(dst + (int64_t)(4 + j) * ld, o1);
        if (8 + j < nstore) _mm512_store_ps(dst + (int64_t)(8 + j) * ld, o2);
        if (12 + j < nstore) _mm512_store_ps(dst + (int64_t)(12 + j) * ld, o3);
    }
}

/* Elements [k, k + n) (n < 16: the end of an F32/F16/BF16 row) of nrows
 * rows into dst[k'][32], k' < n. Not unrolled: runs once per panel at most. */
static __attribute__((noinline)) TGT void pack_tail(uint32_t type, const uint8_t *W, size_t stride,
                                                    int nrows, int64_t k, int n, float *dst)
{
    const __mmask16 mask = (__mmask16)((1u << n) - 1);
    for (int h = 0; h < NV; h++) {
        __m512 r[16];
        for (int i = 0; i < 16; i++) {
            const int row = 16 * h + i;
            r[i] = row < nrows ? load16(type, W + (size_t)row * stride, k, mask) : _mm512_setzero_ps();
        }
        transpose16_store(r, dst + 16 * h, NR, n);
    }
}

/* Pack nrows (<= NR) rows, each `stride` bytes apart, elements [k0, k0+klen)
 * into dst[k][NR]. */
INL void pack_rows(uint32_t type, const uint8_t *W, size_t stride, int nrows,
                   int64_t k0, int64_t klen, float *dst)
{
    int64_t kk = 0;
    for (; kk + 16 <= klen; kk += 16) {
        #pragma GCC unroll 4
        for (int h = 0; h < NV; h++) {
            __m512 r[16];
            #pragma GCC unroll 16
            for (int i = 0; i < 16; i++) {
                const int row = 16 * h + i;
                r[i] = row < nrows ? load16_full(type, W + (size_t)row * stride, k0 + kk)
                                   : _mm512_setzero_ps();
            }
            transpose16_store(r, dst + kk * NR + 16 * h, NR, 16);
        }
    }
    if (kk < klen)
        pack_tail(type, W, stride, nrows, k0 + kk, (int)(klen - kk), dst + kk * NR);
}

static TGT void pack_avx512(uint32_t wtype, const uint8_t *W, size_t row_bytes, int nrows,
                            int64_t k0, int64_t klen, float *tmp, float *dst)
{
    switch (wtype) {
    case MD_TYPE_F32: pack_rows(MD_TYPE_F32, W, row_bytes, nrows, k0, klen, dst); return;
    case MD_TYPE_F16: pack_rows(MD_TYPE_F16, W, row_bytes, nrows, k0, klen, dst); return;
    case MD_TYPE_BF16: pack_rows(MD_TYPE_BF16, W, row_bytes, nrows, k0, klen, dst); return;
    case MD_TYPE_Q8_0: pack_rows(MD_TYPE_Q8_0, W, row_bytes, nrows, k0, klen, dst); return;
    default: {
        const int64_t be = md_type_block_elems(wtype), bb = md_type_block_bytes(wtype);
        for (int r = 0; r < nrows; r++) {
            const uint8_t *src = W + (size_t)r * row_bytes + (size_t)(k0 / be * bb);
            float *row = tmp + (size_t)r * (size_t)klen;
            if (!md_dequant_row_avx2(wtype, src, row, klen))
                md_dequantize_row(wtype, src, row, klen);
        }
        pack_rows(MD_TYPE_F32, (const uint8_t *)tmp, (size_t)klen * sizeof(float), nrows,
                  0, klen, dst);
        return;
    }
    }
}

/* ---- GEMM micro-kernel: M tokens x NR outputs ------------------------- */

INL void ukr(const int M, int64_t klen, const float *x, const float *wp,
             float *y, int64_t ldy, int nvalid, int accum)
{
    __m512 c[MR][NV];
#pragma GCC unroll 16
    for (int r = 0; r < M; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            c[r][v] = _mm512_setzero_ps();
    for (int64_t k = 0; k < klen; k++) {
        __m512 b[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            b[v] = _mm512_load_ps(wp + k * NR + 16 * v);
#pragma GCC unroll 16
        for (int r = 0; r < M; r++) {
            const __m512 a = _mm512_set1_ps(x[k * MR + r]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++)
                c[r][v] = _mm512_fmadd_ps(a, b[v], c[r][v]);
        }
    }
    __mmask16 mk[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) {
        const int n = nvalid - 16 * v;
        mk[v] = n >= 16 ? (__mmask16)0xffff : n > 0 ? (__mmask16)((1u << n) - 1) : (__mmask16)0;
    }
    if (nvalid == NR) {
#pragma GCC unroll 16
        for (int r = 0; r < M; r++) {
            float *yr = y + (int64_t)r * ldy;
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) {
                if (accum)
                    c[r][v] = _mm512_add_ps(c[r][v], _mm512_loadu_ps(yr + 16 * v));
                _mm512_storeu_ps(yr + 16 * v, c[r][v]);
            }
        }
    } else {
#pragma GCC unroll 16
        for (int r = 0; r < M; r++) {
            float *yr = y + (int64_t)r * ldy;
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) {
                if (accum)
                    c[r][v] = _mm512_add_ps(c[r][v], _mm512_maskz_loadu_ps(mk[v], yr + 16 * v));
                _mm512_mask_storeu_ps(yr + 16 * v, mk[v], c[r][v]);
            }
        }
    }
}

#define UKR_FN(M) \
    static TGT void ukr_##M(int64_t klen, const float *x, const float *wp, \
                            float *y, int64_t ldy, int nvalid, int accum) \
    { ukr(M, klen, x, wp, y, ldy, nvalid, accum); }
UKR_FN(1) UKR_FN(2) UKR_FN(3) UKR_FN(4) UKR_FN(5) UKR_FN(6)
#if MR > 6
UKR_FN(7) UKR_FN(8)
#endif
#if MR > 8
UKR_FN(9) UKR_FN(10) UKR_FN(11) UKR_FN(12)
#endif
#if MR > 12
#error "MD_AVX512_MR > 12"
#endif

static TGT void kernel_avx512(int m, int64_t klen, const float *x, const float *wp,
                              float *y, int64_t ldy, int nvalid, int accum)
{
    switch (m) {
    case 1: ukr_1(klen, x, wp, y, ldy, nvalid, accum); break;
    case 2: ukr_2(klen, x, wp, y, ldy, nvalid, accum); break;
    case 3: ukr_3(klen, x, wp, y, ldy, nvalid, accum); break;
    case 4: ukr_4(klen, x, wp, y, ldy, nvalid, accum); break;
    case 5: ukr_5(klen, x, wp, y, ldy, nvalid, accum); break;
#if MR > 6
    case 6: ukr_6(klen, x, wp, y, ldy, nvalid, accum); break;
    case 7: ukr_7(klen, x, wp, y, ldy, nvalid, accum); break;
#endif
#if MR > 8
    case 8: ukr_8(klen, x, wp, y, ldy, nvalid, accum); break;
    case 9: ukr_9(klen, x, wp, y, ldy, nvalid, accum); break;
    case 10: ukr_10(klen, x, wp, y, ldy, nvalid, accum); break;
    case 11: ukr_11(klen, x, wp, y, ldy, nvalid, accum); break;
    default: ukr_12(klen, x, wp, y, ldy, nvalid, accum); break;
#elif MR > 6
    default: ukr_8(klen, x, wp, y, ldy, nvalid, accum); break;
#else
    default: ukr_6(klen, x, wp, y, ldy, nvalid, accum); break;
#endif
    }
}

const struct md_gemm_isa md_gemm_isa_avx512 = {
    .mr = MR, .nr = NR, .pack = pack_avx512, .kernel = kernel_avx512,
};

/* ---- GEMV ---------------------------------------------------------------- */

/* One row at a time: a single sequential stream per thread is what the
 * hardware prefetchers serve best (interleaving 4 rows measured ~35% slower
 * here). U independent accumulators per token hide the FMA latency. X comes
 * token-interleaved (see md_gemv_fn): element k of token t at
 * X[k * T + t * 16] for k a multiple of 16. */

#define XAT(k, t) (X + (int64_t)(k) * T + (t) * 16)

/* Software prefetch distance along a row, bytes: the hardware prefetcher
 * alone lets the multi-token kernels stall on W (n_tok = 8 from DRAM:
 * 4 KiB ahead measured ~2x faster). Below GEMV_FAR_PREFETCH_TOK tokens the
 * prefetch goes to the line about to be loaded instead: on AMD EPYC (Zen 4,
 * one thread, W from DRAM, with the 4 sums below) F16 then reads 21 GB/s
 * at one token and 13-15 at 3-4, against 11-12.6 and 9 with 4 KiB ahead
 * and 15 / 8-10 with no prefetch; distances of 128 B to 1 KiB fall in
 * between (docs/benchmarks/cpu/2026-12-07-attn). Prefetching past the end
 * of W is harmless. */
#ifndef GEMV_PREFETCH
#define GEMV_PREFETCH 4096
#endif
#ifndef GEMV_FAR_PREFETCH_TOK
#define GEMV_FAR_PREFETCH_TOK 5
#endif

/* Rows per pass of the 5-8 token GEMV (R x T accumulators <= 24), and
 * how far ahead it prefetches W, into L2 only: 5-8 tokens' activations
 * fill L1 (8 x 1024 floats are 32 KiB), and W prefetched into L1 evicted
 * them. F16, 8 tokens, one thread, W from DRAM (bench_matmul -only one,
 * GFLOP/s of the core's 117): one row at a time, 4 KiB ahead into L1, 66;
 * into L2 8 or 16 KiB ahead: 67 with one row, 55 with two, 86-96 with
 * three rows sharing each activation load; W already in L2: 95. */
#ifndef GEMV_ROWS
#define GEMV_ROWS 3
#endif
_Static_assert(GEMV_ROWS >= 1 && GEMV_ROWS <= 3, "gemv_rows_elem holds at most 3 rows of accumulators");
#ifndef GEMV_ROWS_PREFETCH
#define GEMV_ROWS_PREFETCH 8192
#endif

INL float hsum(__m512 v) { return _mm512_reduce_add_ps(v); }

/* y[t * ldy] = dot(row, token t) for T tokens, types with one element per
 * block (F32/F16/BF16). */
INL void gemv_row_elem(uint32_t type, const int T, const int U, const float *X,
                       int64_t n_in, const uint8_t *row, float *y, int64_t ldy)
{
    __m512 acc[MD_GEMV_MAX_TOK][4];
#pragma GCC unroll 16
    for (int t = 0; t < T; t++)
#pragma GCC unroll 16
        for (int u = 0; u < U; u++)
            acc[t][u] = _mm512_setzero_ps();
    int64_t k = 0;
    const int esz = type == MD_TYPE_F32 ? 4 : 2;
    const int64_t ahead = T >= GEMV_FAR_PREFETCH_TOK ? GEMV_PREFETCH : 0;
    for (; k + 16 * U <= n_in; k += 16 * U) {
#pragma GCC unroll 16
        for (int u = 0; u < U; u++) {
            if ((16 * u * esz) % 64 == 0)
                _mm_prefetch((const char *)row + (k + 16 * u) * esz + ahead, _MM_HINT_T0);
            const __m512 w = load16_full(type, row, k + 16 * u);
#pragma GCC unroll 16
            for (int t = 0; t < T; t++)
                acc[t][u] = _mm512_fmadd_ps(w, _mm512_loadu_ps(XAT(k + 16 * u, t)), acc[t][u]);
        }
    }
    for (; k + 16 <= n_in; k += 16) {
        const __m512 w = load16_full(type, row, k);
#pragma GCC unroll 16
        for (int t = 0; t < T; t++)
            acc[t][0] = _mm512_fmadd_ps(w, _mm512_loadu_ps(XAT(k, t)), acc[t][0]);
    }
    if (k < n_in) {
        const __mmask16 mask = (__mmask16)((1u << (n_in - k)) - 1);
        const __m512 w = load16(type, row, k, mask);
#pragma GCC unroll 16
        for (int t = 0; t < T; t++)
            acc[t][0] = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(mask, XAT(k, t)), acc[t][0]);
    }
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) {
#pragma GCC unroll 16
        for (int u = 1; u < U; u++)
            acc[t][0] = _mm512_add_ps(acc[t][0], acc[t][u]);
        y[t * ldy] = hsum(acc[t][0]);
    }
}

/* The sums of the 16 lanes of v[0..7], in lanes 0..7 (v[i] past n: 0):
 * the eight reductions share their shuffles. */
INL __m256 sum8_ps(const __m512 *v, int n)
{
    const __m512 z = _mm512_setzero_ps();
    __m512 h[4];
    for (int i = 0; i < 4; i++) {
        const __m512 a = 2 * i < n ? v[2 * i] : z, b = 2 * i + 1 < n ? v[2 * i + 1] : z;
        /* quarters: a's 0+2, 1+3, then b's */
        h[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xee));
    }
    /* quarter k of q0: two partial sums of v[k] folded into one (k < 4) */
    __m512 q0 = _mm512_add_ps(_mm512_shuffle_f32x4(h[0], h[1], 0x88), _mm512_shuffle_f32x4(h[0], h[1], 0xdd));
    __m512 q1 = _mm512_add_ps(_mm512_shuffle_f32x4(h[2], h[3], 0x88), _mm512_shuffle_f32x4(h[2], h[3], 0xdd));
    q0 = _mm512_add_ps(q0, _mm512_permute_ps(q0, 0x4e));
    q1 = _mm512_add_ps(q1, _mm512_permute_ps(q1, 0x4e));
    q0 = _mm512_add_ps(q0, _mm512_permute_ps(q0, 0xb1));
    q1 = _mm512_add_ps(q1, _mm512_permute_ps(q1, 0xb1));
    const __m512i idx = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 28, 24, 20, 16, 12, 8, 4, 0);
    return _mm512_castps512_ps256(_mm512_permutex2var_ps(q0, idx, q1));
}

/* R rows (row + r * row_bytes) times T tokens, F32/F16/BF16, for 5-8
 * tokens: each activation vector, loaded once, serves the R rows. */
INL void gemv_rows_elem(uint32_t type, const int T, const int R, const float *X, int64_t n_in,
                        const uint8_t *row, size_t row_bytes, float *y, int64_t ldy)
{
    __m512 acc[3 * MD_GEMV_MAX_TOK];
#pragma GCC unroll 32
    for (int k = 0; k < R * T; k++)
        acc[k] = _mm512_setzero_ps();
    const int esz = type == MD_TYPE_F32 ? 4 : 2;
    int64_t k = 0;
    for (; k + 16 <= n_in; k += 16) {
        __m512 w[3];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint8_t *rr = row + (size_t)r * row_bytes;
            if ((16 * esz) % 64 == 0 || k % 32 == 0)
                _mm_prefetch((const char *)rr + k * esz + GEMV_ROWS_PREFETCH, _MM_HINT_T1);
            w[r] = load16_full(type, rr, k);
        }
#pragma GCC unroll 16
        for (int t = 0; t < T; t++) {
            __m512 x = _mm512_loadu_ps(X + k * T + t * 16);
            /* in a register: GCC otherwise folds the load into every
             * row's FMA, one load per FMA again */
            __asm__("" : "+v"(x));
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                acc[r * T + t] = _mm512_fmadd_ps(w[r], x, acc[r * T + t]);
        }
    }
    if (k < n_in) {
        const __mmask16 mask = (__mmask16)((1u << (n_in - k)) - 1);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const __m512 w = load16(type, row + (size_t)r * row_bytes, k, mask);
#pragma GCC unroll 16
            for (int t = 0; t < T; t++)
                acc[r * T + t] = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(mask, X + k * T + t * 16),
                                                 acc[r * T + t]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        float v[8];
        _mm256_storeu_ps(v, sum8_ps(acc + r * T, T));
        for (int t = 0; t < T; t++)
            y[t * ldy + r] = v[t];
    }
}

/* Q8_0: the int8 values of a block are converted and scaled by d once per
 * row (q * d rounded to f32 exactly as md_dequantize_row does), then one
 * FMA per 16 elements and token. */
INL void q8_0_block(const uint8_t *blk, __m512 *w0, __m512 *w1)
{
    const __m512 d = bcast_f16(blk);
    *w0 = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(blk + 2)))));
    *w1 = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(blk + 18)))));
}

INL void gemv_row_q8_0(const int T, const int U, const float *X,
                       int64_t n_in, const uint8_t *row, float *y, int64_t ldy)
{
    __m512 acc[MD_GEMV_MAX_TOK][4];
#pragma GCC unroll 16
    for (int t = 0; t < T; t++)
#pragma GCC unroll 16
        for (int u = 0; u < U; u++)
            acc[t][u] = _mm512_setzero_ps();
    const int64_t nb = n_in / 32;
    int64_t b = 0;
    for (; b + U <= nb; b += U) {
#pragma GCC unroll 16
        for (int u = 0; u < U; u++) {
            __m512 w0, w1;
            _mm_prefetch((const char *)row + (b + u) * 34 + GEMV_PREFETCH, _MM_HINT_T0);
            q8_0_block(row + (size_t)(b + u) * 34, &w0, &w1);
#pragma GCC unroll 16
            for (int t = 0; t < T; t++) {
                acc[t][u] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(XAT(32 * (b + u), t)), acc[t][u]);
                acc[t][u] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(XAT(32 * (b + u) + 16, t)), acc[t][u]);
            }
        }
    }
    for (; b < nb; b++) {
        __m512 w0, w1;
        q8_0_block(row + (size_t)b * 34, &w0, &w1);
#pragma GCC unroll 16
        for (int t = 0; t < T; t++) {
            acc[t][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(XAT(32 * b, t)), acc[t][0]);
            acc[t][0] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(XAT(32 * b + 16, t)), acc[t][0]);
        }
    }
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) {
#pragma GCC unroll 16
        for (int u = 1; u < U; u++)
            acc[t][0] = _mm512_add_ps(acc[t][0], acc[t][u]);
        y[t * ldy] = hsum(acc[t][0]);
    }
}

#undef XAT

INL void gemv_type(uint32_t type, const int T, const float *X, int64_t n_in,
                   const uint8_t *W, size_t row_bytes, int64_t n_rows, float *Y, int64_t ldy)
{
    /* F16/BF16/F32 keep 4 independent sums a token up to 4 tokens (with 2,
     * F16 at 3-4 tokens read W at 6 GB/s, with 4 at 10-11; one thread) */
    const int U_q8 = T == 1 ? 4 : T <= 4 ? 2 : 1, U_elem = T <= 4 ? 4 : 1;
    int64_t o = 0;
    if (T >= 5 && type != MD_TYPE_Q8_0)
        for (; o + GEMV_ROWS <= n_rows; o += GEMV_ROWS)
            gemv_rows_elem(type, T, GEMV_ROWS, X, n_in, W + (size_t)o * row_bytes, row_bytes, Y + o, ldy);
    for (; o < n_rows; o++) {
        if (type == MD_TYPE_Q8_0)
            gemv_row_q8_0(T, U_q8, X, n_in, W + (size_t)o * row_bytes, Y + o, ldy);
        else
            gemv_row_elem(type, T, U_elem, X, n_in, W + (size_t)o * row_bytes, Y + o, ldy);
    }
}

#define GEMV_T(TYPE, NAME) \
    static TGT void gemv_##NAME(int T, const float *X, int64_t n_in, \
                                const uint8_t *W, size_t row_bytes, int64_t n_rows, \
                                float *Y, int64_t ldy) \
    { \
        switch (T) { \
        case 1: gemv_type(TYPE, 1, X, n_in, W, row_bytes, n_rows, Y, ldy); break; \
        case 2: gemv_type(TYPE, 2, X, n_in, W, row_bytes, n_rows, Y, ldy); break; \
        case 3: gemv_type(TYPE, 3, X, n_in, W, row_bytes, n_rows, Y, ldy); break; \
        case 4: gemv_type(TYPE, 4, X, n_in, W, row_bytes, n_rows, Y, ldy); break; \
        case 5: gemv_type(TYPE, 5, X, n_in, W, row_bytes, n_rows, Y, ldy); break; \
        case 6: gemv_type(TYPE, 6, X, n_in, W, row_bytes, n_rows, Y, ldy); break; \
        case 7: gemv_type(TYPE, 7, X, n_in, W, row_bytes, n_rows, Y, ldy); break; \
        default: gemv_type(TYPE, 8, X, n_in, W, row_bytes, n_rows, Y, ldy); break; \
        } \
    }
GEMV_T(MD_TYPE_F32, f32)
GEMV_T(MD_TYPE_F16, f16)
GEMV_T(MD_TYPE_BF16, bf16)
GEMV_T(MD_TYPE_Q8_0, q8_0)

TGT bool md_gemv_avx512(uint32_t wtype, const float *X, int n_tok, int64_t n_in,
                        const uint8_t *W, size_t row_bytes, int64_t n_rows, float *Y, int64_t ldy)
{
    switch (wtype) {
    case MD_TYPE_F32: gemv_f32(n_tok, X, n_in, W, row_bytes, n_rows, Y, ldy); return true;
    case MD_TYPE_F16: gemv_f16(n_tok, X, n_in, W, row_bytes, n_rows, Y, ldy); return true;
    case MD_TYPE_BF16: gemv_bf16(n_tok, X, n_in, W, row_bytes, n_rows, Y, ldy); return true;
    case MD_TYPE_Q8_0: gemv_q8_0(n_tok, X, n_in, W, row_bytes, n_rows, Y, ldy); return true;
    default: return false;
    }
}

TGT void md_dotrows_avx512(const float *w, const float *X, int n_tok,
                           int64_t n, float *y, int64_t ldy)
{
    switch (n_tok) {
    case 1: gemv_row_elem(MD_TYPE_F32, 1, 4, X, n, (const uint8_t *)w, y, ldy); break;
    case 2: gemv_row_elem(MD_TYPE_F32, 2, 2, X, n, (const uint8_t *)w, y, ldy); break;
    case 3: gemv_row_elem(MD_TYPE_F32, 3, 2, X, n, (const uint8_t *)w, y, ldy); break;
    case 4: gemv_row_elem(MD_TYPE_F32, 4, 2, X, n, (const uint8_t *)w, y, ldy); break;
    case 5: gemv_row_elem(MD_TYPE_F32, 5, 1, X, n, (const uint8_t *)w, y, ldy); break;
    case 6: gemv_row_elem(MD_TYPE_F32, 6, 1, X, n, (const uint8_t *)w, y, ldy); break;
    case 7: gemv_row_elem(MD_TYPE_F32, 7, 1, X, n, (const uint8_t *)w, y, ldy); break;
    default: gemv_row_elem(MD_TYPE_F32, 8, 1, X, n, (const uint8_t *)w, y, ldy); break;
    }
}

#endif /* MD_HAVE_X86 */
