/* The integer-dot GEMV (cpu-qdot.h, md_matmul_qdot) for every quantized
 * type, on random blocks including extreme fp16 scales and activations
 * spanning 1e-6..1e4 between blocks:
 *
 * 1. ISA kernels against the portable reference on the same quantized
 *    activations. Both compute each block's integer product exactly and
 *    differ only in the f32 order of the scaled block sums, so the
 *    tolerance is f32 accumulation error: 1e-5 * sum_i |w_i| |xq_i|
 *    (xq_i = d * q_i, the dequantized activation), where for the types
 *    with a min (w = d u + m: Q4_1, Q5_1, Q4_K, Q5_K) |w_i| counts both
 *    terms, |d u| + |m|, which the kernels sum separately.
 * 2. md_matmul_qdot (ISAs, thread pools, n_tok 1..8) against the exact
 *    double product of the dequantized weights with the float X. The
 *    activation rounding moves each x_i by at most d/2 = amax(block)/254,
 *    so |Y - exact| <= sum_i |w_i| amax(block of i) / 254 plus the f32
 *    term of 1. That bound is the tolerance (a rigorous one, not a fitted
 *    constant); the test also prints the measured error relative to
 *    sum_i |w_i x_i|. Measured (AVX-512 machine, these seeds), max error
 *    relative to sum |w x|: 1.2e-3..2.5e-3 for activations of one
 *    magnitude (all types); with 32-value blocks of magnitudes spread over
 *    1e-6..1e4, 2e-3..3e-3 for the legacy types and 6e-2..2.4e-1 for the K
 *    quants, whose one scale per 256 values rounds the small blocks next
 *    to a large one to zero (as llama.cpp's Q8_K does). At most 35% of
 *    the bound is reached.
 * 3. A NaN activation makes its outputs NaN (not silently zero), and
 *    md_matmul_qdot on F16 equals md_matmul (nothing quantized). */
#include "md_test.h"

#include <math.h>
#include <stdint.h>

#include "cpu-kernels.h"
#include "cpu-qdot.h"
#include "cpu-qgemm.h"
#include "quant.h"
#include "md_test_quant.h"

/* An fp16 scale: mostly ordinary, sometimes the extremes (subnormal,
 * largest finite, zero, negative). */
static float rand_scale(struct rng *r)
{
    switch (rng_u32(r) % 8) {
    case 0: return 6.0e-8f;      /* fp16 subnormal */
    case 1: return 65504.0f;     /* largest fp16 */
    case 2: return 0.0f;
    case 3: return -rng_f(r, 0.0f, 0.05f);
    default: return rng_f(r, 0.0f, 0.05f);
    }
}

static uint8_t *make_weights(struct rng *r, uint32_t type, int64_t n_in, int64_t n_out)
{
    const int64_t rb = md_type_row_bytes(type, n_in), bb = md_type_block_bytes(type);
    const size_t total = (size_t)(rb * n_out);
    uint8_t *w = malloc(total);
    if (!w) abort();
    for (size_t i = 0; i < total; i++)
        w[i] = (uint8_t)rng_u32(r);
    for (size_t b = 0; b < total / (size_t)bb; b++) {
        uint8_t *blk = w + b * (size_t)bb;
        if (type == MD_TYPE_Q6_K) {
            put_f16(blk + 208, rand_scale(r));
            continue;
        }
        put_f16(blk, rand_scale(r));
        if (type == MD_TYPE_Q4_1 || type == MD_TYPE_Q5_1 || type == MD_TYPE_Q4_K || type == MD_TYPE_Q5_K)
            put_f16(blk + 2, rand_scale(r));
    }
    return w;
}

/* X: each 32-value block has its own magnitude 10^(-6..4) when `spread`;
 * some blocks are a single spike, some zero. */
static void make_x(struct rng *r, float *x, int64_t n, bool spread)
{
    for (int64_t b = 0; b < n; b += 32) {
        const float mag = spread ? powf(10.0f, rng_f(r, -6.0f, 4.0f)) : 1.0f;
        const uint32_t kind = rng_u32(r) % 10;
        for (int i = 0; i < 32; i++)
            x[b + i] = kind == 0 ? 0.0f : kind == 1 ? (i == 5 ? mag : 0.0f) : mag * rng_f(r, -1.0f, 1.0f);
    }
}

static const uint32_t qtypes[] = {
    MD_TYPE_Q4_0, MD_TYPE_Q4_1, MD_TYPE_Q5_0, MD_TYPE_Q5_1, MD_TYPE_Q8_0,
    MD_TYPE_Q4_K, MD_TYPE_Q5_K, MD_TYPE_Q6_K,
};

/* Dequantized activation i of a quantized row. */
static double xq_value(uint32_t type, const void *xq, int64_t i)
{
    if (type == MD_TYPE_Q4_K || type == MD_TYPE_Q5_K || type == MD_TYPE_Q6_K) {
        const struct md_xq256 *b = (const struct md_xq256 *)xq + i / 256;
        return (double)b->d * b->q[i % 256];
    }
    const struct md_xq32 *b = (const struct md_xq32 *)xq + i / 32;
    return (double)b->d * b->q[i % 32];
}

/* |w_i|, or |d u_i| + |m| (both terms) for the types with a min. */
static double w_terms(uint32_t type, const uint8_t *row, int64_t i, float w)
{
    if (type != MD_TYPE_Q4_1 && type != MD_TYPE_Q5_1 && type != MD_TYPE_Q4_K && type != MD_TYPE_Q5_K)
        return fabs((double)w);
    const int64_t be = md_type_block_elems(type), bb = md_type_block_bytes(type);
    const uint8_t *blk = row + i / be * bb;
    float mins[256];
    /* the min of i's sub-block: the dequantized value of u = 0 */
    uint8_t tmp[176];
    memcpy(tmp, blk, (size_t)bb);
    /* keep d and m (Q4_1/Q5_1: 4 bytes; K quants: d, dmin, scales) */
    const size_t keep = type == MD_TYPE_Q4_1 || type == MD_TYPE_Q5_1 ? 4 : 16;
    memset(tmp + keep, 0, (size_t)bb - keep);
    md_dequantize_row(type, tmp, mins, be);
    const double m = mins[i % be];
    return fabs((double)w - m) + fabs(m);
}

struct errs { double max_rel; double max_of_bound; };

/* An ISA GEMV kernel against the reference's Yref, tokens 1..n_tok. */
static void check_kernel(const char *name, md_qdot_fn fn, uint32_t type, const float *X, const char *XQ,
                         int n_tok, int64_t n_in, const uint8_t *W, int64_t n_out, const float *Wf,
                         const float *Yref)
{
    const int64_t rb = md_type_row_bytes(type, n_in);
    const size_t xb = md_xq_row_bytes(type, n_in);
    float *Y = malloc(sizeof(float) * (size_t)(n_tok * n_out));
    if (!Y) abort();
    (void)X;
    /* the ISA kernels read rows of their own layout, same values */
    const bool avx512 = strcmp(name, "avx512vnni") == 0;
    const bool avx2 = strcmp(name, "avx2") == 0;
    const size_t kb = avx512 ? md_xq_avx512_row_bytes(type, n_in)
                      : avx2 ? md_xq_avx2_row_bytes(type, n_in) : xb;
    char *KQ = malloc(kb * (size_t)n_tok);
    if (!KQ) abort();
    for (int t = 0; t < n_tok; t++) {
        if (avx512)
            md_xq_avx512_row(type, XQ + t * xb, n_in, KQ + t * kb);
        else if (avx2)
            md_xq_avx2_row(type, XQ + t * xb, n_in, KQ + t * kb);
        else
            memcpy(KQ + t * kb, XQ + t * xb, xb);
    }
    for (int T = 1; T <= n_tok; T++) {
        fn(type, KQ, T, kb, n_in, W, (size_t)rb, n_out, Y, n_out);
        for (int t = 0; t < T; t++)
            for (int64_t o = 0; o < n_out; o++) {
                double s = 0;
                for (int64_t i = 0; i < n_in; i++)
                    s += w_terms(type, W + o * rb, i, Wf[o * n_in + i]) * fabs(xq_value(type, XQ + t * xb, i));
                const double d = fabs((double)Y[t * n_out + o] - Yref[t * n_out + o]);
                CHECKF(d <= 1e-5 * s + 1e-30, "%s %s T=%d t=%d o=%lld: %g vs ref %g (terms %g)",
                       md_type_name(type), name, T, t, (long long)o, Y[t * n_out + o], Yref[t * n_out + o], s);
            }
    }
    free(KQ);
    free(Y);
}

static void check_type(struct rng *r, uint32_t type, int64_t n_in, int64_t n_out, bool spread,
                       struct md_threadpool **pools, enum md_cpu_isa max_isa, struct errs *e)
{
    const int n_tok = 8;
    const int64_t rb = md_type_row_bytes(type, n_in);
    const size_t xb = md_xq_row_bytes(type, n_in);
    uint8_t *W = make_weights(r, type, n_in, n_out);
    float *X = malloc(sizeof(float) * (size_t)(n_tok * n_in));
    float *Wf = malloc(sizeof(float) * (size_t)(n_in * n_out));
    char *XQ = malloc(xb * n_tok);
    float *Yref = malloc(sizeof(float) * (size_t)(n_tok * n_out));
    float *Y = malloc(sizeof(float) * (size_t)(n_tok * n_out));
    double *terms = malloc(sizeof(double) * (size_t)(n_tok * n_out));
    if (!X || !Wf || !XQ || !Yref || !Y || !terms) abort();
    for (int t = 0; t < n_tok; t++) {
        make_x(r, X + t * n_in, n_in, spread);
        md_xq_quantize_row(type, X + t * n_in, n_in, XQ + t * xb);
    }
    for (int64_t o = 0; o < n_out; o++)
        md_dequantize_row(type, W + o * rb, Wf + o * n_in, n_in);
    md_qdot_ref(type, XQ, n_tok, xb, n_in, W, (size_t)rb, n_out, Yref, n_out);

    /* 1. ISA kernels against the reference */
    check_kernel("portable", md_qdot_portable, type, X, XQ, n_tok, n_in, W, n_out, Wf, Yref);
#if defined(__x86_64__) || defined(__i386__)
    if (max_isa >= MD_ISA_AVX2 && md_qdot_avx2_has(type))
        check_kernel("avx2", md_qdot_avx2, type, X, XQ, n_tok, n_in, W, n_out, Wf, Yref);
    if (max_isa >= MD_ISA_AVX512 && md_qgemm_avx512vnni_usable() && md_qdot_avx512vnni_has(type))
        check_kernel("avx512vnni", md_qdot_avx512vnni, type, X, XQ, n_tok, n_in, W, n_out, Wf, Yref);
#else
    (void)max_isa;
#endif

    /* 2. md_matmul_qdot against the exact product */
    for (int t = 0; t < n_tok; t++)
        for (int64_t o = 0; o < n_out; o++) {
            double exact = 0, mag = 0, bound = 0, fterms = 0;
            for (int64_t i = 0; i < n_in; i++) {
                const double w = Wf[o * n_in + i], x = X[t * n_in + i];
                exact += w * x;
                mag += fabs(w * x);
                fterms += w_terms(type, W + o * rb, i, w) * fabs(xq_value(type, XQ + t * xb, i));
                /* the activation block: 32 values, 256 for the K quants */
                float amax = 0;
                const int64_t bs = md_type_block_elems(type);
                for (int64_t k = i / bs * bs; k < i / bs * bs + bs; k++)
                    amax = fabsf(X[t * n_in + k]) > amax ? fabsf(X[t * n_in + k]) : amax;
                bound += fabs(w) * amax / 254.0 * (1 + 1e-6);
            }
            terms[t * n_out + o] = fterms;
            bound += 1e-5 * fterms + 1e-30;
            const double err = fabs((double)Yref[t * n_out + o] - exact);
            CHECKF(err <= bound, "%s ref t=%d o=%lld: %g vs exact %g (bound %g)", md_type_name(type),
                   t, (long long)o, Yref[t * n_out + o], exact, bound);
            if (mag > 0 && err / mag > e->max_rel)
                e->max_rel = err / mag;
            if (bound > 0 && err / bound > e->max_of_bound)
                e->max_of_bound = err / bound;
        }
    /* the driver (ISAs, pools, token counts) gives the reference's values
     * up to f32 order (1.) */
    for (int isa = MD_ISA_SCALAR; isa <= (int)max_isa; isa++)
        for (int p = -1; p < 3; p++)
            for (int T = 1; T <= n_tok; T += (T < 4 ? 1 : 4)) {
                for (int q = 0; q < 2; q++) {
                    CHECK((q ? md_matmul_qgemm : md_matmul_qdot)(p < 0 ? NULL : pools[p], (enum md_cpu_isa)isa,
                                                                 X, T, n_in, W, type, n_out, Y) == 0);
                    for (int t = 0; t < T; t++)
                        for (int64_t o = 0; o < n_out; o++) {
                            const double ref = Yref[t * n_out + o];
                            const double d = fabs((double)Y[t * n_out + o] - ref);
                            CHECKF(d <= 1e-5 * terms[t * n_out + o] + 1e-30,
                                   "%s %s isa=%d pool=%d T=%d: %g vs %g", md_type_name(type),
                                   q ? "md_matmul_qgemm" : "md_matmul_qdot", isa, p, T, Y[t * n_out + o], ref);
                        }
                }
            }
    free(W);
    free(X);
    free(Wf);
    free(XQ);
    free(Yref);
    free(Y);
    free(terms);
}

/* The integer-dot GEMM (cpu-qgemm.h) at prefill sizes: its AVX-512 VNNI
 * kernel on packed panels (every tile width 1..8, a partial last panel)
 * and md_matmul_qgemm (pools, token counts past one L2 chunk) against the
 * reference GEMV on the same quantized rows, with check_type's f32
 * tolerance; e gets the error of the GEMM against the exact product. */
static void check_gemm(struct rng *r, uint32_t type, int64_t n_in, int64_t n_out, bool spread,
                       struct md_threadpool **pools, enum md_cpu_isa isa, struct errs *e)
{
    const int64_t n_tok = 45, rb = md_type_row_bytes(type, n_in);
    const size_t xb = md_xq_row_bytes(type, n_in);
    uint8_t *W = make_weights(r, type, n_in, n_out);
    float *X = malloc(sizeof(float) * (size_t)(n_tok * n_in));
    float *Wf = malloc(sizeof(float) * (size_t)(n_in * n_out));
    double *wt = malloc(sizeof(double) * (size_t)(n_in * n_out));
    char *XQ = malloc(xb * (size_t)n_tok);
    float *Yref = malloc(sizeof(float) * (size_t)(n_tok * n_out));
    float *Y = malloc(sizeof(float) * (size_t)(n_tok * n_out));
    double *tol = malloc(sizeof(double) * (size_t)(n_tok * n_out));
    void *panel = aligned_alloc(64, (md_qgemm_panel_bytes(type, n_in) + 63) / 64 * 64);
    if (!X || !Wf || !wt || !XQ || !Yref || !Y || !tol || !panel) abort();
    for (int64_t t = 0; t < n_tok; t++) {
        make_x(r, X + t * n_in, n_in, spread);
        md_xq_quantize_row(type, X + t * n_in, n_in, XQ + t * xb);
    }
    for (int64_t o = 0; o < n_out; o++) {
        md_dequantize_row(type, W + o * rb, Wf + o * n_in, n_in);
        for (int64_t i = 0; i < n_in; i++)
            wt[o * n_in + i] = w_terms(type, W + o * rb, i, Wf[o * n_in + i]);
    }
    md_qdot_ref(type, XQ, (int)n_tok, xb, n_in, W, (size_t)rb, n_out, Yref, n_out);
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t o = 0; o < n_out; o++) {
            double s = 0;
            for (int64_t i = 0; i < n_in; i++)
                s += wt[o * n_in + i] * fabs(xq_value(type, XQ + t * xb, i));
            tol[t * n_out + o] = 1e-5 * s + 1e-30;
        }
#if defined(__x86_64__) || defined(__i386__)
    const bool vnni = isa >= MD_ISA_AVX512 && md_qgemm_avx512vnni_usable();
    for (int64_t o0 = 0; vnni && o0 < n_out; o0 += MD_QGEMM_NR) {
        const int nrows = (int)(n_out - o0 < MD_QGEMM_NR ? n_out - o0 : MD_QGEMM_NR);
        md_qgemm_pack(type, W + o0 * rb, (size_t)rb, nrows, n_in, panel);
        for (int64_t T = 1; T <= n_tok; T += (T < 9 ? 1 : n_tok - 9)) {
            for (int64_t i = 0; i < n_tok * n_out; i++)
                Y[i] = -12345.0f;   /* the kernel stores only its nrows columns */
            md_qgemm_avx512vnni(type, panel, n_in, XQ, T, xb, Y + o0, n_out, nrows);
            for (int64_t t = 0; t < n_tok; t++)
                for (int64_t o = 0; o < n_out; o++) {
                    const float y = Y[t * n_out + o], ref = Yref[t * n_out + o];
                    if (t >= T || o < o0 || o >= o0 + nrows)
                        CHECKF(y == -12345.0f, "%s kernel T=%lld wrote t=%lld o=%lld", md_type_name(type),
                               (long long)T, (long long)t, (long long)o);
                    else
                        CHECKF(fabs((double)y - ref) <= tol[t * n_out + o],
                               "%s kernel T=%lld t=%lld o=%lld: %g vs ref %g", md_type_name(type),
                               (long long)T, (long long)t, (long long)o, y, ref);
                }
        }
    }
#else
    const bool vnni = false;
#endif
    /* the driver: the GEMM where it applies, else exactly md_matmul */
    float *Yexact = malloc(sizeof(float) * (size_t)(n_tok * n_out));
    if (!Yexact) abort();
    for (int p = -1; p < 3; p++)
        for (int64_t T = 9; T <= n_tok; T += n_tok - 9) {
            CHECK(md_matmul_qgemm(p < 0 ? NULL : pools[p], isa, X, T, n_in, W, type, n_out, Y) == 0);
            if (!vnni) {
                CHECK(md_matmul(p < 0 ? NULL : pools[p], isa, X, T, n_in, W, type, n_out, Yexact) == 0);
                CHECK(memcmp(Y, Yexact, sizeof(float) * (size_t)(T * n_out)) == 0);
                continue;
            }
            for (int64_t i = 0; i < T * n_out; i++)
                CHECKF(fabs((double)Y[i] - Yref[i]) <= tol[i], "%s md_matmul_qgemm pool=%d T=%lld i=%lld: %g vs %g",
                       md_type_name(type), p, (long long)T, (long long)i, Y[i], Yref[i]);
        }
    /* error of the last product (all tokens) against the exact one */
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t o = 0; o < n_out; o++) {
            double exact = 0, mag = 0;
            for (int64_t i = 0; i < n_in; i++) {
                exact += (double)Wf[o * n_in + i] * X[t * n_in + i];
                mag += fabs((double)Wf[o * n_in + i] * X[t * n_in + i]);
            }
            const double err = fabs((double)Y[t * n_out + o] - exact);
            if (mag > 0 && err / mag > e->max_rel)
                e->max_rel = err / mag;
        }
    free(Yexact);
    free(W);
    free(X);
    free(Wf);
    free(wt);
    free(XQ);
    free(Yref);
    free(Y);
    free(tol);
    free(panel);
}

/* A NaN in token 0 (of 1, and of 9: the GEMM) makes that token's outputs
 * NaN and does not spread to the other tokens (each of which is NaN only
 * where the same row alone gives NaN: the extreme test scales can make
 * inf - inf). */
static void check_nan(uint32_t type)
{
    const int64_t n_in = 512, n_out = 4;
    struct rng r = { 12345 };
    uint8_t *W = make_weights(&r, type, n_in, n_out);
    float X[9 * 512];
    for (int i = 0; i < 9 * n_in; i++)
        X[i] = 0.5f;
    X[300] = NAN;
    float Y[9 * 4], Yclean[4];
    for (int isa = MD_ISA_SCALAR; isa <= (int)md_cpu_isa_detect(); isa++)
        for (int q = 0; q < 3; q++) {
            CHECK(md_matmul_qgemm(NULL, (enum md_cpu_isa)isa, X + n_in, 1, n_in, W, type, n_out, Yclean) == 0);
            const int n_tok = q == 2 ? 9 : 1;
            CHECK((q ? md_matmul_qgemm : md_matmul_qdot)(NULL, (enum md_cpu_isa)isa, X, n_tok, n_in, W, type,
                                                         n_out, Y) == 0);
            for (int i = 0; i < n_tok * n_out; i++)
                CHECKF(i < n_out ? isnan(Y[i]) : !isnan(Y[i]) == !isnan(Yclean[i % n_out]), "%s isa=%d q=%d: Y[%d] = %g",
                       md_type_name(type), isa, q, i, Y[i]);
        }
    free(W);
}

int main(void)
{
    const enum md_cpu_isa isa = md_cpu_isa_detect();
    printf("detected ISA: %s\n", md_cpu_isa_name(isa));
    struct md_threadpool *pools[3];
    for (int i = 0; i < 3; i++)
        pools[i] = md_threadpool_new(i + 1);
    struct rng r = { 0x2545f4914f6cdd1dull };
    for (size_t ti = 0; ti < sizeof qtypes / sizeof qtypes[0]; ti++) {
        const uint32_t type = qtypes[ti];
        struct errs one = { 0, 0 }, spread = { 0, 0 };
        const int64_t n_in = md_type_block_elems(type) == 256 ? 768 : 800;
        check_type(&r, type, n_in, 37, false, pools, isa, &one);
        check_type(&r, type, n_in, 37, true, pools, isa, &spread);
        printf("%-5s activation quantization error / sum|w x|: max %.2e (one magnitude), "
               "%.2e (1e-6..1e4 blocks); at most %.0f%% of the bound\n",
               md_type_name(type), one.max_rel, spread.max_rel,
               100.0 * (one.max_of_bound > spread.max_of_bound ? one.max_of_bound : spread.max_of_bound));
        struct errs g1 = { 0, 0 }, g2 = { 0, 0 };
        check_gemm(&r, type, n_in, 37, false, pools, isa, &g1);
        check_gemm(&r, type, n_in, 37, true, pools, isa, &g2);
        printf("%-5s prefill GEMM (45 tokens) error / sum|w x| against the exact product: max %.2e "
               "(one magnitude), %.2e (1e-6..1e4 blocks)\n", md_type_name(type), g1.max_rel, g2.max_rel);
        check_nan(type);
    }
    /* rows of 1..14 legacy blocks: every tail of the kernels' 2-, 4- and
     * 8-block steps */
    for (size_t ti = 0; ti < 5; ti++)
        for (int nblk = 1; nblk <= 14; nblk++) {
            struct errs tails = { 0, 0 };
            check_type(&r, qtypes[ti], 32 * nblk, 19, nblk % 2 == 0, pools, isa, &tails);
        }
    /* unquantized types are not approximated */
    {
        const int64_t n_in = 64, n_out = 5;
        uint16_t W[64 * 5];
        float X[64], Y1[5], Y2[5];
        for (int i = 0; i < 64 * 5; i++)
            W[i] = md_fp32_to_fp16(rng_f(&r, -1, 1));
        for (int i = 0; i < 64; i++)
            X[i] = rng_f(&r, -1, 1);
        CHECK(md_matmul(pools[1], isa, X, 1, n_in, W, MD_TYPE_F16, n_out, Y1) == 0);
        CHECK(md_matmul_qdot(pools[1], isa, X, 1, n_in, W, MD_TYPE_F16, n_out, Y2) == 0);
        CHECK(memcmp(Y1, Y2, sizeof Y1) == 0);
    }
    for (int i = 0; i < 3; i++)
        md_threadpool_free(pools[i]);
    return md_test_finish("qdot");
}
