/* AVX2 + FMA + F16C matmul kernels (8-wide), built with function target
 * attributes. Same structure as the AVX-512 file: GEMM micro-kernel of
 * 6 tokens x 16 outputs (12 ymm accumulators) over a [k][16] f32 panel
 * packed with 8x8 register transposes; GEMV one row at a time, vectors
 * along n_in. */
#include "cpu-matmul-impl.h"

#if MD_HAVE_X86

#include <immintrin.h>
#include <string.h>

#include "quant.h"

#define TGT __attribute__((target("avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline)) TGT

#define NR 16
#define MR 6

INL float ld_f16_scalar(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* 8 elements at k (a multiple of 8), all valid. */
INL __m256 load8(uint32_t type, const uint8_t *row, int64_t k)
{
    switch (type) {
    case MD_TYPE_F32:
        return _mm256_loadu_ps((const float *)row + k);
    case MD_TYPE_F16:
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + k)));
    case MD_TYPE_BF16:
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(
            _mm_loadu_si128((const __m128i *)((const uint16_t *)row + k))), 16));
    default: { /* MD_TYPE_Q8_0 */
        const uint8_t *b = row + (k >> 5) * 34;
        __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
            _mm_loadl_epi64((const __m128i *)(b + 2 + (k & 31)))));
        return _mm256_mul_ps(q, _mm256_set1_ps(ld_f16_scalar(b)));
    }
    }
}

/* The n < 8 elements at k (only F32/F16/BF16 rows have tails), zero-filled. */
INL __m256 load8_tail(uint32_t type, const uint8_t *row, int64_t k, int n)
{
    float tmp[8] = { 0 };
    #pragma GCC unroll 16
    for (int i = 0; i < n; i++) {
        if (type == MD_TYPE_F32) {
            memcpy(&tmp[i], row + 4 * (k + i), 4);
        } else {
            uint16_t h;
            memcpy(&h, row + 2 * (k + i), 2);
            if (type == MD_TYPE_F16) {
                tmp[i] = _cvtsh_ss(h);
            } else {
                uint32_t u = (uint32_t)h << 16;
                memcpy(&tmp[i], &u, 4);
            }
        }
    }
    return _mm256_loadu_ps(tmp);
}

INL __m256i tail_mask(int n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* 8x8 transpose of r[0..7]; column j stored to dst + j * ld (j < nstore). */
INL void transpose8_store(__m256 r[8], float *dst, int64_t ld, int nstore)
{
    __m256 t[8], u[8];
    #pragma GCC unroll 16
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    #pragma GCC unroll 16
    for (int i = 0; i < 2; i++) {
        u[4 * i + 0] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    #pragma GCC unroll 16
    for (int j = 0; j < 4; j++) {
        if (j < nstore)
            _mm256_store_ps(dst + (int64_t)j * ld, _mm256_permute2f128_ps(u[j], u[4 + j], 0x20));
        if (4 + j < nstore)
            _mm256_store_ps(dst + (int64_t)(4 + j) * ld, _mm256_permute2f128_ps(u[j], u[4 + j], 0x31));
    }
}

/* Elements [k, k + n) (n < 8: the end of an F32/F16/BF16 row) of nrows
 * rows into dst[k'][16], k' < n. Not unrolled: runs once per panel at most. */
static __attribute__((noinline)) TGT void pack_tail(uint32_t type, const uint8_t *W, size_t stride,
                                                    int nrows, int64_t k, int n, float *dst)
{
    for (int h = 0; h < 2; h++) {
        __m256 r[8];
        for (int i = 0; i < 8; i++) {
            const int row = 8 * h + i;
            r[i] = row < nrows ? load8_tail(type, W + (size_t)row * stride, k, n) : _mm256_setzero_ps();
        }
        transpose8_store(r, dst + 8 * h, NR, n);
    }
}

INL void pack_rows(uint32_t type, const uint8_t *W, size_t stride, int nrows,
                   int64_t k0, int64_t klen, float *dst)
{
    int64_t kk = 0;
    for (; kk + 8 <= klen; kk += 8) {
        #pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256 r[8];
            #pragma GCC unroll 16
            for (int i = 0; i < 8; i++) {
                const int row = 8 * h + i;
                r[i] = row < nrows ? load8(type, W + (size_t)row * stride, k0 + kk)
                                   : _mm256_setzero_ps();
            }
            transpose8_store(r, dst + kk * NR + 8 * h, NR, 8);
        }
    }
    if (kk < klen)
        pack_tail(type, W, stride, nrows, k0 + kk, (int)(klen - kk), dst + kk * NR);
}

static TGT void pack_avx2(uint32_t wtype, const uint8_t *W, size_t row_bytes, int nrows,
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

/* ---- GEMM micro-kernel: M tokens x 16 outputs ------------------------- */

INL void ukr(const int M, int64_t klen, const float *x, const float *wp,
             float *y, int64_t ldy, int nvalid, int accum)
{
    __m256 c0[MR], c1[MR];
#pragma GCC unroll 6
    for (int r = 0; r < M; r++) {
        c0[r] = _mm256_setzero_ps();
        c1[r] = _mm256_setzero_ps();
    }
    for (int64_t k = 0; k < klen; k++) {
        const __m256 b0 = _mm256_load_ps(wp + k * NR);
        const __m256 b1 = _mm256_load_ps(wp + k * NR + 8);
#pragma GCC unroll 6
        for (int r = 0; r < M; r++) {
            const __m256 a = _mm256_broadcast_ss(x + k * MR + r);
            c0[r] = _mm256_fmadd_ps(a, b0, c0[r]);
            c1[r] = _mm256_fmadd_ps(a, b1, c1[r]);
        }
    }
    if (nvalid == NR) {
#pragma GCC unroll 6
        for (int r = 0; r < M; r++) {
            float *yr = y + (int64_t)r * ldy;
            if (accum) {
                c0[r] = _mm256_add_ps(c0[r], _mm256_loadu_ps(yr));
                c1[r] = _mm256_add_ps(c1[r], _mm256_loadu_ps(yr + 8));
            }
            _mm256_storeu_ps(yr, c0[r]);
            _mm256_storeu_ps(yr + 8, c1[r]);
        }
    } else {
        const __m256i m0 = tail_mask(nvalid), m1 = tail_mask(nvalid - 8);
        #pragma GCC unroll 16
        for (int r = 0; r < M; r++) {
            float *yr = y + (int64_t)r * ldy;
            if (accum) {
                c0[r] = _mm256_add_ps(c0[r], _mm256_maskload_ps(yr, m0));
                c1[r] = _mm256_add_ps(c1[r], _mm256_maskload_ps(yr + 8, m1));
            }
            _mm256_maskstore_ps(yr, m0, c0[r]);
            _mm256_maskstore_ps(yr + 8, m1, c1[r]);
        }
    }
}

#define UKR_FN(M) \
    static TGT void ukr_##M(int64_t klen, const float *x, const float *wp, \
                            float *y, int64_t ldy, int nvalid, int accum) \
    { ukr(M, klen, x, wp, y, ldy, nvalid, accum); }
UKR_FN(1) UKR_FN(2) UKR_FN(3) UKR_FN(4) UKR_FN(5) UKR_FN(6)

static TGT void kernel_avx2(int m, int64_t klen, const float *x, const float *wp,
                            float *y, int64_t ldy, int nvalid, int accum)
{
    switch (m) {
    case 1: ukr_1(klen, x, wp, y, ldy, nvalid, accum); break;
    case 2: ukr_2(klen, x, wp, y, ldy, nvalid, accum); break;
    case 3: ukr_3(klen, x, wp, y, ldy, nvalid, accum); break;
    case 4: ukr_4(klen, x, wp, y, ldy, nvalid, accum); break;
    case 5: ukr_5(klen, x, wp, y, ldy, nvalid, accum); break;
    default: ukr_6(klen, x, wp, y, ldy, nvalid, accum); break;
    }
}

const struct md_gemm_isa md_gemm_isa_avx2 = {
    .mr = MR, .nr = NR, .pack = pack_avx2, .kernel = kernel_avx2,
};

/* ---- GEMV ---------------------------------------------------------------- */

INL float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* One row at a time (a single sequential stream per thread, see the
 * AVX-512 file); U accumulators per token, T * U <= 8. X comes
 * token-interleaved: element k of token t at X[k * T + t * 8]. */

#define XAT(k, t) (X + (int64_t)(k) * T + (t) * 8)

/* Software prefetch distance along a row, bytes (see the AVX-512 file). */
#ifndef GEMV_PREFETCH
#define GEMV_PREFETCH 4096
#endif

INL void gemv_row_elem(uint32_t type, const int T, const int U, const float *X,
                       int64_t n_in, const uint8_t *row, float *y, int64_t ldy)
{
    __m256 acc[MD_GEMV_MAX_TOK][4];
#pragma GCC unroll 16
    for (int t = 0; t < T; t++)
#pragma GCC unroll 16
        for (int u = 0; u < U; u++)
            acc[t][u] = _mm256_setzero_ps();
    int64_t k = 0;
    const int esz = type == MD_TYPE_F32 ? 4 : 2;
    for (; k + 8 * U <= n_in; k += 8 * U) {
#pragma GCC unroll 16
        for (int u = 0; u < U; u++) {
            if ((8 * u * esz) % 64 == 0)
                _mm_prefetch((const char *)row + (k + 8 * u) * esz + GEMV_PREFETCH, _MM_HINT_T0);
            const __m256 w = load8(type, row, k + 8 * u);
#pragma GCC unroll 16
            for (int t = 0; t < T; t++)
                acc[t][u] = _mm256_fmadd_ps(w, _mm256_loadu_ps(XAT(k + 8 * u, t)), acc[t][u]);
        }
    }
    for (; k + 8 <= n_in; k += 8) {
        const __m256 w = load8(type, row, k);
#pragma GCC unroll 16
        for (int t = 0; t < T; t++)
            acc[t][0] = _mm256_fmadd_ps(w, _mm256_loadu_ps(XAT(k, t)), acc[t][0]);
    }
    if (k < n_in) {
        const int n = (int)(n_in - k);
        const __m256i mask = tail_mask(n);
        const __m256 w = load8_tail(type, row, k, n);
#pragma GCC unroll 16
        for (int t = 0; t < T; t++)
            acc[t][0] = _mm256_fmadd_ps(w, _mm256_maskload_ps(XAT(k, t), mask), acc[t][0]);
    }
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) {
#pragma GCC unroll 16
        for (int u = 1; u < U; u++)
            acc[t][0] = _mm256_add_ps(acc[t][0], acc[t][u]);
        y[t * ldy] = hsum(acc[t][0]);
    }
}

/* Q8_0: q * d rounded to f32 once per row (as md_dequantize_row does), then
 * one FMA per 8 elements and token; U accumulators per token. */
INL void gemv_row_q8_0(const int T, const int U, const float *X,
                       int64_t n_in, const uint8_t *row, float *y, int64_t ldy)
{
    __m256 acc[MD_GEMV_MAX_TOK][4];
#pragma GCC unroll 16
    for (int t = 0; t < T; t++)
#pragma GCC unroll 16
        for (int u = 0; u < U; u++)
            acc[t][u] = _mm256_setzero_ps();
    const int64_t nb = n_in / 32;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = row + (size_t)b * 34;
        _mm_prefetch((const char *)blk + GEMV_PREFETCH, _MM_HINT_T0);
        const __m256 d = _mm256_set1_ps(ld_f16_scalar(blk));
        __m256 w[4];
#pragma GCC unroll 16
        for (int i = 0; i < 4; i++)
            w[i] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
                       _mm_loadl_epi64((const __m128i *)(blk + 2 + 8 * i)))));
#pragma GCC unroll 16
        for (int t = 0; t < T; t++)
#pragma GCC unroll 16
            for (int i = 0; i < 4; i++)
                acc[t][i % U] = _mm256_fmadd_ps(w[i], _mm256_loadu_ps(XAT(32 * b + 8 * i, t)), acc[t][i % U]);
    }
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) {
#pragma GCC unroll 16
        for (int u = 1; u < U; u++)
            acc[t][0] = _mm256_add_ps(acc[t][0], acc[t][u]);
        y[t * ldy] = hsum(acc[t][0]);
    }
}

#undef XAT

INL void gemv_type(uint32_t type, const int T, const float *X, int64_t n_in,
                   const uint8_t *W, size_t row_bytes, int64_t n_rows, float *Y, int64_t ldy)
{
    const int U = T == 1 ? 4 : T <= 4 ? 2 : 1;
    for (int64_t o = 0; o < n_rows; o++) {
        if (type == MD_TYPE_Q8_0)
            gemv_row_q8_0(T, U, X, n_in, W + (size_t)o * row_bytes, Y + o, ldy);
        else
            gemv_row_elem(type, T, U, X, n_in, W + (size_t)o * row_bytes, Y + o, ldy);
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

TGT bool md_gemv_avx2(uint32_t wtype, const float *X, int n_tok, int64_t n_in,
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

TGT void md_dotrows_avx2(const float *w, const float *X, int n_tok,
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
