/* Micro-benchmark of the integer-dot GEMM (built, never run as a test).
 *
 *   bench_qgemm [-t threads] [-r reps] [-n n_tok] [-type Q4_0,Q4_K,...] [-cpu 1]
 *   bench_qgemm -gemv 1 [-type ...] [-r reps]
 *
 * For each type, the matmuls of one layer of the 0.27B LLaMA of
 * docs/benchmarks (n_embd 1024, n_ff 2816: q, k, v, o at 1024 x 1024,
 * gate and up at 1024 -> 2816, down at 2816 -> 1024) at n_tok tokens
 * (default 512), through md_matmul_qdot (dequantized f32 panels for
 * n_tok > 8) and md_matmul_qgemm (integer dots where the CPU has AVX-512
 * VNNI), in ms per layer and GFLOP/s (2 n_in n_out n_tok per product);
 * medians over the repetitions, wall time (-cpu 1: process CPU time, for
 * single-thread tuning on a shared machine; not a wall-clock figure). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu-kernels.h"
#include "cpu-qdot.h"
#include "cpu-qgemm.h"
#include "quant.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static bool use_cpu_time;

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double clock_s(void)
{
    return use_cpu_time ? cpu_s() : now_s();
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static uint64_t rng_state = 88172645463325252ull;

static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}

static void put_f16(uint8_t *p, float v)
{
    const uint16_t h = md_fp32_to_fp16(v);
    memcpy(p, &h, 2);
}

/* Random quantized values with ordinary fp16 scales (and mins). */
static void *make_weights(uint32_t type, int64_t n_in, int64_t n_out)
{
    const size_t total = (size_t)(md_type_row_bytes(type, n_in) * n_out);
    const size_t bb = (size_t)md_type_block_bytes(type);
    uint8_t *w = malloc(total);
    if (!w) abort();
    for (size_t i = 0; i < total; i++)
        w[i] = (uint8_t)rnd();
    for (uint8_t *blk = w; blk < w + total; blk += bb) {
        if (type == MD_TYPE_Q6_K) {
            put_f16(blk + 208, 0.01f);
            continue;
        }
        put_f16(blk, 0.01f);
        if (type == MD_TYPE_Q4_1 || type == MD_TYPE_Q5_1 || type == MD_TYPE_Q4_K || type == MD_TYPE_Q5_K)
            put_f16(blk + 2, 0.005f);
    }
    return w;
}

typedef int (*matmul_fn)(struct md_threadpool *, enum md_cpu_isa, const float *, int64_t, int64_t,
                         const void *, uint32_t, int64_t, float *);

struct shape { int64_t n_in, n_out; int count; };
static const struct shape layer[] = { { 1024, 1024, 4 }, { 1024, 2816, 2 }, { 2816, 1024, 1 } };

/* Median seconds of one layer's products. */
static double time_layer(matmul_fn fn, struct md_threadpool *tp, enum md_cpu_isa isa, uint32_t type,
                         int64_t n_tok, int reps, void *const *W, const float *X, float *Y)
{
    double *ts = malloc(sizeof(double) * (size_t)reps);
    if (!ts) abort();
    for (int r = -1; r < reps; r++) {   /* r = -1: warm-up */
        const double t0 = clock_s();
        for (size_t s = 0; s < sizeof layer / sizeof layer[0]; s++)
            for (int c = 0; c < layer[s].count; c++)
                if (fn(tp, isa, X, n_tok, layer[s].n_in, W[s], type, layer[s].n_out, Y) != 0)
                    abort();
        if (r >= 0)
            ts[r] = clock_s() - t0;
    }
    qsort(ts, (size_t)reps, sizeof(double), cmp_d);
    const double med = ts[reps / 2];
    free(ts);
    return med;
}

#if defined(__x86_64__) || defined(__i386__)
/* GEMV kernels on one thread with W in L2 (n_in 1024, 128 rows): GB/s of
 * weights they sustain when memory is not the limit, to compare with the
 * read bandwidth per core (bytes-moved arithmetic: a kernel at the memory
 * bound needs comfortably more). */
static void bench_gemv_l2(const char *types, int reps)
{
    const int64_t n_in = 1024, n_out = 128;
    printf("GEMV kernels, W in L2 (%lld x %lld), 1 thread, CPU time, GB/s of weights\n",
           (long long)n_in, (long long)n_out);
    char buf[256];
    snprintf(buf, sizeof buf, "%s", types);
    for (char *name = strtok(buf, ","); name; name = strtok(NULL, ",")) {
        uint32_t type = 0;
        while (type < 64 && (!md_type_supported(type) || strcmp(md_type_name(type), name)))
            type++;
        if (type == 64 || md_xq_row_bytes(type, n_in) == 0)
            continue;
        void *W = make_weights(type, n_in, n_out);
        const size_t rb = (size_t)md_type_row_bytes(type, n_in), xb = md_xq_row_bytes(type, n_in);
        float X[4 * 1024], Y[4 * 128];
        const size_t ab = md_xq_avx512_row_bytes(type, n_in), b2 = md_xq_avx2_row_bytes(type, n_in);
        char *XQ = malloc(4 * xb), *XA = malloc(4 * ab + 1), *X2 = malloc(4 * b2);
        if (!XQ || !XA || !X2) abort();
        for (int i = 0; i < 4 * 1024; i++)
            X[i] = (float)((int)(rnd() % 2001) - 1000) * 1e-3f;
        for (int t = 0; t < 4; t++) {
            md_xq_quantize_row(type, X + t * n_in, n_in, XQ + t * xb);
            if (ab)
                md_xq_avx512_row(type, XQ + t * xb, n_in, XA + t * ab);
            md_xq_avx2_row(type, XQ + t * xb, n_in, X2 + t * b2);
        }
        for (int T = 1; T <= 4; T++) {
            double best[2] = { 1e30, 1e30 };
            for (int k = 0; k < 2; k++)
                for (int r = 0; r < reps; r++) {
                    const double t0 = cpu_s();
                    for (int i = 0; i < 200; i++) {
                        if (k == 0)
                            md_qdot_avx2(type, X2, T, b2, n_in, W, rb, n_out, Y, n_out);
                        else if (md_qdot_avx512vnni_has(type))
                            md_qdot_avx512vnni(type, XA, T, ab, n_in, W, rb, n_out, Y, n_out);
                    }
                    const double dt = (cpu_s() - t0) / 200;
                    best[k] = dt < best[k] ? dt : best[k];
                }
            const double bytes = (double)(rb * (size_t)n_out);
            printf("%-5s n_tok=%d  avx2 %6.1f GB/s   avx512vnni %6.1f GB/s\n", name, T,
                   bytes / best[0] * 1e-9, md_qdot_avx512vnni_has(type) ? bytes / best[1] * 1e-9 : 0.0);
        }
        free(XQ);
        free(XA);
        free(X2);
        free(W);
    }
}
#endif

int main(int argc, char **argv)
{
    int n_threads = 2, reps = 7;
    int64_t n_tok = 512;
    bool gemv = false;
    const char *types = "Q4_0,Q8_0,Q4_K,Q6_K,Q5_K,Q4_1,Q5_0,Q5_1";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-t")) n_threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-r")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-n")) n_tok = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "-type")) types = argv[i + 1];
        else if (!strcmp(argv[i], "-cpu")) use_cpu_time = atoi(argv[i + 1]) != 0;
        else if (!strcmp(argv[i], "-gemv")) gemv = atoi(argv[i + 1]) != 0;
        else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }
#if defined(__x86_64__) || defined(__i386__)
    if (gemv) {
        bench_gemv_l2(types, reps);
        return 0;
    }
#endif
    const enum md_cpu_isa isa = md_cpu_isa_detect();
    struct md_threadpool *tp = md_threadpool_new(n_threads);
    float *X = malloc(sizeof(float) * (size_t)(n_tok * 2816));
    float *Y = malloc(sizeof(float) * (size_t)(n_tok * 2816));
    if (!tp || !X || !Y) abort();
    for (int64_t i = 0; i < n_tok * 2816; i++)
        X[i] = (float)((int)(rnd() % 2001) - 1000) * 1e-3f;
    double flop = 0;
    for (size_t s = 0; s < sizeof layer / sizeof layer[0]; s++)
        flop += 2.0 * (double)(layer[s].n_in * layer[s].n_out * layer[s].count) * (double)n_tok;
    printf("isa %s, %d threads, %lld tokens, one 0.27B LLaMA layer (%.2f GFLOP), %s time\n",
           md_cpu_isa_name(isa), n_threads, (long long)n_tok, flop * 1e-9, use_cpu_time ? "CPU" : "wall");
    printf("%-5s %12s %12s %14s %14s %8s\n", "type", "f32 ms", "int8 ms", "f32 GFLOP/s", "int8 GFLOP/s", "speedup");
    char buf[256];
    snprintf(buf, sizeof buf, "%s", types);
    for (char *name = strtok(buf, ","); name; name = strtok(NULL, ",")) {
        uint32_t type = 0;
        while (type < 64 && (!md_type_supported(type) || strcmp(md_type_name(type), name)))
            type++;
        if (type == 64) { fprintf(stderr, "unknown type %s\n", name); return 2; }
        void *W[3];
        for (int s = 0; s < 3; s++)
            W[s] = make_weights(type, layer[s].n_in, layer[s].n_out);
        const double tf = time_layer(md_matmul_qdot, tp, isa, type, n_tok, reps, W, X, Y);
        const double ti = time_layer(md_matmul_qgemm, tp, isa, type, n_tok, reps, W, X, Y);
        printf("%-5s %12.2f %12.2f %14.1f %14.1f %7.2fx\n", name, tf * 1e3, ti * 1e3, flop / tf * 1e-9,
               flop / ti * 1e-9, tf / ti);
        fflush(stdout);
        for (int s = 0; s < 3; s++)
            free(W[s]);
    }
    free(X);
    free(Y);
    md_threadpool_free(tp);
    return 0;
}
