/* md_matmul against a double-precision reference built from
 * md_dequantize_row, for every weight type, every ISA path this CPU has
 * (scalar always), thread pools of 1, 2 and 3 threads and no pool, and odd
 * shapes (tails of every tile size, several K blocks, GEMV and GEMM paths).
 *
 * Tolerance: |Y - ref| <= 1e-5 * sum_i |x_i| |w_i| + 1e-30 per element, i.e.
 * f32 accumulation error relative to the magnitude of the dot product's
 * terms (the paths sum in different orders, so bit equality is not
 * expected). Also checks the thread pool itself (every index runs once per
 * call, wake-up after the workers went to sleep) and that
 * md_dequantize_row_isa is bit-identical to md_dequantize_row. */
#include "md_test.h"

#include <stdint.h>
#include <time.h>

#include "cpu-kernels.h"
#include "quant.h"
#include "md_test_quant.h"

#define TOL 1e-5

/* Random weights of `type`, n_out rows of n_in: fp16 scale fields hold
 * finite values, the other bytes are random. */
static uint8_t *make_weights(struct rng *r, uint32_t type, int64_t n_in, int64_t n_out)
{
    const int64_t rb = md_type_row_bytes(type, n_in);
    const size_t total = (size_t)(rb * n_out);
    uint8_t *w = malloc(total ? total : 1);
    if (!w) abort();
    if (type == MD_TYPE_F32) {
        for (size_t i = 0; i < total / 4; i++) {
            float v = rng_f(r, -1.0f, 1.0f);
            memcpy(w + 4 * i, &v, 4);
        }
        return w;
    }
    if (type == MD_TYPE_F16 || type == MD_TYPE_BF16) {
        for (size_t i = 0; i < total / 2; i++) {
            float v = rng_f(r, -1.0f, 1.0f);
            uint16_t h = type == MD_TYPE_F16 ? md_fp32_to_fp16(v) : md_fp32_to_bf16(v);
            w[2 * i] = (uint8_t)h;
            w[2 * i + 1] = (uint8_t)(h >> 8);
        }
        return w;
    }
    for (size_t i = 0; i < total; i++)
        w[i] = (uint8_t)rng_u32(r);
    const int64_t bb = md_type_block_bytes(type);
    for (size_t b = 0; b < total / (size_t)bb; b++) {
        uint8_t *blk = w + b * (size_t)bb;
        switch (type) {
        case MD_TYPE_Q4_0: case MD_TYPE_Q5_0: case MD_TYPE_Q8_0:
            put_f16(blk, rng_f(r, -0.02f, 0.02f));
            break;
        case MD_TYPE_Q4_1: case MD_TYPE_Q5_1: case MD_TYPE_Q4_K: case MD_TYPE_Q5_K:
            put_f16(blk, rng_f(r, -0.02f, 0.02f));
            put_f16(blk + 2, rng_f(r, -0.02f, 0.02f));
            break;
        case MD_TYPE_Q6_K:
            put_f16(blk + 208, rng_f(r, -0.002f, 0.002f));
            break;
        default:
            break;
        }
    }
    return w;
}

struct shape_stats { double max_rel; int runs; };

static const uint32_t types[] = {
    MD_TYPE_F32, MD_TYPE_F16, MD_TYPE_BF16, MD_TYPE_Q8_0, MD_TYPE_Q4_0, MD_TYPE_Q4_1,
    MD_TYPE_Q5_0, MD_TYPE_Q5_1, MD_TYPE_Q4_K, MD_TYPE_Q5_K, MD_TYPE_Q6_K,
};

static void run_case(struct rng *r, uint32_t type, int64_t n_tok, int64_t n_in, int64_t n_out,
                     struct md_threadpool **pools, int n_pools, enum md_cpu_isa max_isa,
                     struct shape_stats *st)
{
    uint8_t *W = make_weights(r, type, n_in, n_out);
    /* X and Y one float past an allocation: not 16-byte aligned */
    float *Xb = malloc(sizeof(float) * (size_t)(n_tok * n_in + 1));
    float *Wf = malloc(sizeof(float) * (size_t)(n_in * n_out));
    double *ref = malloc(sizeof(double) * (size_t)(n_tok * n_out));
    double *mag = malloc(sizeof(double) * (size_t)(n_tok * n_out));
    float *Yb = malloc(sizeof(float) * (size_t)(n_tok * n_out + 1));
    if (!Xb || !Wf || !ref || !mag || !Yb) abort();
    float *X = Xb + 1, *Y = Yb + 1;
    for (int64_t i = 0; i < n_tok * n_in; i++)
        X[i] = rng_f(r, -1.0f, 1.0f);
    const int64_t rb = md_type_row_bytes(type, n_in);
    for (int64_t o = 0; o < n_out; o++)
        md_dequantize_row(type, W + o * rb, Wf + o * n_in, n_in);
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t o = 0; o < n_out; o++) {
            double s = 0, m = 0;
            for (int64_t i = 0; i < n_in; i++) {
                s += (double)X[t * n_in + i] * Wf[o * n_in + i];
                m += fabs((double)X[t * n_in + i] * Wf[o * n_in + i]);
            }
            ref[t * n_out + o] = s;
            mag[t * n_out + o] = m;
        }
    for (int isa = MD_ISA_SCALAR; isa <= (int)max_isa; isa++) {
        for (int p = -1; p < n_pools; p++) {
            struct md_threadpool *tp = p < 0 ? NULL : pools[p];
            for (int64_t i = 0; i < n_tok * n_out; i++)
                Y[i] = NAN;
            md_matmul(tp, (enum md_cpu_isa)isa, X, n_tok, n_in, W, type, n_out, Y);
            int bad = 0;
            for (int64_t i = 0; i < n_tok * n_out && bad < 3; i++) {
                const double err = fabs((double)Y[i] - ref[i]);
                const double lim = TOL * mag[i] + 1e-30;
                if (mag[i] > 0 && err / mag[i] > st->max_rel)
                    st->max_rel = err / mag[i];
                if (!(err <= lim)) {
                    bad++;
                    CHECKF(0, "%s isa=%s threads=%d n_tok=%lld n_in=%lld n_out=%lld: "
                           "Y[%lld][%lld]=%.9g ref=%.9g (err %.3g, limit %.3g)",
                           md_type_name(type), md_cpu_isa_name((enum md_cpu_isa)isa),
                           tp ? md_threadpool_n_threads(tp) : 0, (long long)n_tok,
                           (long long)n_in, (long long)n_out, (long long)(i / n_out),
                           (long long)(i % n_out), (double)Y[i], ref[i], err, lim);
                }
            }
            st->runs++;
        }
    }
    free(W);
    free(Xb);
    free(Wf);
    free(ref);
    free(mag);
    free(Yb);
}

/* md_dequantize_row_isa: bit-identical to md_dequantize_row on every path */
static void test_dequant(struct rng *r, enum md_cpu_isa max_isa)
{
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const uint32_t type = types[ti];
        const int64_t be = md_type_block_elems(type);
        const int64_t n = be == 1 ? 1037 : be * 13;
        uint8_t *w = make_weights(r, type, n, 1);
        float *ref = malloc(sizeof(float) * (size_t)n), *got = malloc(sizeof(float) * (size_t)n);
        if (!ref || !got) abort();
        md_dequantize_row(type, w, ref, n);
        for (int isa = MD_ISA_SCALAR; isa <= (int)max_isa; isa++) {
            memset(got, 0xff, sizeof(float) * (size_t)n);
            md_dequantize_row_isa((enum md_cpu_isa)isa, type, w, got, n);
            CHECKF(memcmp(ref, got, sizeof(float) * (size_t)n) == 0, "%s isa=%s differs",
                   md_type_name(type), md_cpu_isa_name((enum md_cpu_isa)isa));
        }
        free(w);
        free(ref);
        free(got);
    }
}

/* ---- thread pool ------------------------------------------------------- */

struct count_arg { int nth_seen; int hits[8]; };

static void count_fn(void *arg, int ith, int nth)
{
    struct count_arg *a = arg;
    a->hits[ith]++;     /* each ith is run by exactly one thread */
    if (ith == 0)
        a->nth_seen = nth;
}

static void test_pool(void)
{
    for (int n = 1; n <= 4; n++) {
        struct md_threadpool *tp = md_threadpool_new(n);
        CHECK(tp != NULL);
        if (!tp) continue;
        CHECK(md_threadpool_n_threads(tp) == n);
        struct count_arg a;
        memset(&a, 0, sizeof a);
        for (int it = 0; it < 2000; it++)
            md_threadpool_run(tp, count_fn, &a);
        CHECK(a.nth_seen == n);
        for (int i = 0; i < n; i++)
            CHECKF(a.hits[i] == 2000, "n=%d hits[%d]=%d", n, i, a.hits[i]);
        /* let the workers fall asleep, then wake them */
        struct timespec ts = { 0, 20 * 1000 * 1000 };
        nanosleep(&ts, NULL);
        md_threadpool_run(tp, count_fn, &a);
        for (int i = 0; i < n; i++)
            CHECK(a.hits[i] == 2001);
        md_threadpool_free(tp);
    }
    md_threadpool_free(NULL);
    CHECK(md_threadpool_n_threads(NULL) == 1);
    struct count_arg a;
    memset(&a, 0, sizeof a);
    md_threadpool_run(NULL, count_fn, &a);
    CHECK(a.hits[0] == 1 && a.nth_seen == 1);
}

int main(void)
{
    const enum md_cpu_isa isa = md_cpu_isa_detect();
    printf("detected ISA: %s\n", md_cpu_isa_name(isa));
    CHECK(strcmp(md_cpu_isa_name(MD_ISA_SCALAR), "scalar") == 0);
    test_pool();

    struct md_threadpool *pools[3];
    for (int i = 0; i < 3; i++)
        pools[i] = md_threadpool_new(i + 1);

    static const int64_t toks[] = { 1, 2, 3, 7, 12, 17, 64, 100 };
    static const int64_t outs[] = { 1, 3, 31, 65, 300 };
    struct rng r = { 0x9e3779b97f4a7c15ull };
    test_dequant(&r, isa);
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const uint32_t type = types[ti];
        const int64_t be = md_type_block_elems(type);
        int64_t ins[8];
        int n_ins = 0;
        if (be == 1) {
            static const int64_t e[] = { 1, 7, 33, 100, 257, 768, 4096 };
            for (size_t i = 0; i < sizeof e / sizeof e[0]; i++) ins[n_ins++] = e[i];
        } else if (be == 32) {
            static const int64_t e[] = { 32, 96, 256, 800, 4096 };
            for (size_t i = 0; i < sizeof e / sizeof e[0]; i++) ins[n_ins++] = e[i];
        } else {
            static const int64_t e[] = { 256, 768, 4096 };
            for (size_t i = 0; i < sizeof e / sizeof e[0]; i++) ins[n_ins++] = e[i];
        }
        struct shape_stats st = { 0, 0 };
        for (int ii = 0; ii < n_ins; ii++)
            for (size_t a = 0; a < sizeof toks / sizeof toks[0]; a++)
                for (size_t b = 0; b < sizeof outs / sizeof outs[0]; b++) {
                    const int64_t n_in = ins[ii], n_tok = toks[a], n_out = outs[b];
                    /* keep the reference affordable: big products only
                     * for a few shapes */
                    if (n_tok * n_in * n_out > 3000000 && !(n_in >= 4096 && (b + a) % 4 == 1))
                        continue;
                    run_case(&r, type, n_tok, n_in, n_out, pools, 3, isa, &st);
                }
        printf("%-5s %4d runs, max |err| / sum|x||w| = %.3g (limit %.0e)\n",
               md_type_name(type), st.runs, st.max_rel, TOL);
    }

    /* n_in not a multiple of the block: Y is set to NaN */
    {
        float X[40] = { 0 }, Y[2] = { 0, 0 };
        uint8_t Wq[2 * 34] = { 0 };
        md_matmul(pools[1], isa, X, 1, 40, Wq, MD_TYPE_Q8_0, 2, Y);
        CHECK(isnan(Y[0]) && isnan(Y[1]));
    }

    for (int i = 0; i < 3; i++)
        md_threadpool_free(pools[i]);
    return md_test_finish("test_matmul");
}
