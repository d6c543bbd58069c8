/* Micro-benchmark of md_matmul (built, never run as a test).
 *
 *   bench_matmul [-t threads] [-r reps] [-isa scalar|avx2|avx512]
 *                [-type F16,Q8_0,...] [-only peak|bw|pool|gemv|gemm|model|sweep|one]
 *                [-n n_tok] [-in n_in] [-out n_out] [-cpu] [-exact] [-hot]
 *       bench_matmul -only kernels [-type ...] [-isa ...]
 *
 * Measures the machine first: FMA peak (a register-only FMA loop on every
 * thread) and streaming read bandwidth (1 GiB, every thread reading its
 * part, the best of at least 8 passes as STREAM reports), then decode
 * GEMV (n_tok = 1, weights rotated through 512 MiB so they come from
 * DRAM) in GB/s of weights and % of the measured bandwidth,
 * and prefill GEMM (n_tok = 512) in GFLOP/s and % of the measured peak, at
 * the shapes of a 0.27B LLaMA (n_embd 1024, n_ff 2816, vocab 32000). The
 * "model" lines add up the matmuls of one token (decode) / 512 tokens
 * (prefill) of that model: an upper bound on its tok/s from matmul alone.
 * Figures are medians over the repetitions (the bandwidth: the best pass).
 *
 * Products of quantized weights use md_matmul_qgemm (activations
 * quantized to 8 bits, integer dots), as the engine does by default;
 * -exact times md_matmul (weights dequantized to f32) instead. "-only
 * kernels" prints the read bandwidth on 1 and on all threads, then every
 * type's GEMV at 1-4 tokens (ffn gate/up shape, W from DRAM) in GB/s of
 * weights and % of that bandwidth, exact and integer-dot paths side by
 * side. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu-kernels.h"
#include "cpu-qgemm.h"
#include "quant.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BENCH_X86 1
#else
#define BENCH_X86 0
#endif

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Process CPU time (all threads): with -cpu, matmul timings use it instead
 * of wall time, which makes single-thread kernel tuning robust to other
 * processes taking the CPU (not a substitute for wall-clock figures). */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---- machine peak ------------------------------------------------------ */

struct peak_arg { long iters; enum md_cpu_isa isa; float sink[64]; };

#if BENCH_X86
__attribute__((target("avx512f")))
static float fma_loop_512(long n)
{
    const __m512 b = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(1e-3f);
    __m512 a0 = _mm512_set1_ps(0), a1 = _mm512_set1_ps(1), a2 = _mm512_set1_ps(2),
           a3 = _mm512_set1_ps(3), a4 = _mm512_set1_ps(4), a5 = _mm512_set1_ps(5),
           a6 = _mm512_set1_ps(6), a7 = _mm512_set1_ps(7), a8 = _mm512_set1_ps(8),
           a9 = _mm512_set1_ps(9), a10 = _mm512_set1_ps(10), a11 = _mm512_set1_ps(11);
    for (long i = 0; i < n; i++) {
        a0 = _mm512_fmadd_ps(a0, b, c); a1 = _mm512_fmadd_ps(a1, b, c);
        a2 = _mm512_fmadd_ps(a2, b, c); a3 = _mm512_fmadd_ps(a3, b, c);
        a4 = _mm512_fmadd_ps(a4, b, c); a5 = _mm512_fmadd_ps(a5, b, c);
        a6 = _mm512_fmadd_ps(a6, b, c); a7 = _mm512_fmadd_ps(a7, b, c);
        a8 = _mm512_fmadd_ps(a8, b, c); a9 = _mm512_fmadd_ps(a9, b, c);
        a10 = _mm512_fmadd_ps(a10, b, c); a11 = _mm512_fmadd_ps(a11, b, c);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma")))
static float fma_loop_256(long n)
{
    const __m256 b = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(1e-3f);
    __m256 a0 = _mm256_set1_ps(0), a1 = _mm256_set1_ps(1), a2 = _mm256_set1_ps(2),
           a3 = _mm256_set1_ps(3), a4 = _mm256_set1_ps(4), a5 = _mm256_set1_ps(5),
           a6 = _mm256_set1_ps(6), a7 = _mm256_set1_ps(7), a8 = _mm256_set1_ps(8),
           a9 = _mm256_set1_ps(9), a10 = _mm256_set1_ps(10), a11 = _mm256_set1_ps(11);
    for (long i = 0; i < n; i++) {
        a0 = _mm256_fmadd_ps(a0, b, c); a1 = _mm256_fmadd_ps(a1, b, c);
        a2 = _mm256_fmadd_ps(a2, b, c); a3 = _mm256_fmadd_ps(a3, b, c);
        a4 = _mm256_fmadd_ps(a4, b, c); a5 = _mm256_fmadd_ps(a5, b, c);
        a6 = _mm256_fmadd_ps(a6, b, c); a7 = _mm256_fmadd_ps(a7, b, c);
        a8 = _mm256_fmadd_ps(a8, b, c); a9 = _mm256_fmadd_ps(a9, b, c);
        a10 = _mm256_fmadd_ps(a10, b, c); a11 = _mm256_fmadd_ps(a11, b, c);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    float o[8];
    _mm256_storeu_ps(o, s);
    return o[0] + o[7];
}
#endif

static void peak_fn(void *p, int ith, int nth)
{
    struct peak_arg *a = p;
    (void)nth;
#if BENCH_X86
    if (a->isa == MD_ISA_AVX512)
        a->sink[ith % 64] = fma_loop_512(a->iters);
    else
        a->sink[ith % 64] = fma_loop_256(a->iters);
#else
    a->sink[ith % 64] = 0;
#endif
}

/* GFLOP/s of all threads of tp together (12 FMAs of `lanes` per iteration). */
static double measure_peak(struct md_threadpool *tp, enum md_cpu_isa isa, int reps)
{
    if (isa == MD_ISA_SCALAR)
        return 0;
    struct peak_arg a;
    memset(&a, 0, sizeof a);
    a.isa = isa;
    a.iters = 20 * 1000 * 1000;
    const int lanes = isa == MD_ISA_AVX512 ? 16 : 8;
    double v[32];
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        md_threadpool_run(tp, peak_fn, &a);
        double dt = now_s() - t0;
        v[r] = (double)md_threadpool_n_threads(tp) * (double)a.iters * 12 * lanes * 2 / dt * 1e-9;
    }
    return median(v, reps);
}

/* ---- read bandwidth ----------------------------------------------------
 * STREAM-like: every thread of the pool reads its contiguous share of a
 * 1 GiB buffer, and the figure is the best pass (STREAM reports its best
 * rate: passes slowed by other processes on a shared machine say nothing
 * about what the memory can deliver). The AVX-512 reader keeps 8
 * independent sums so that loads never wait for an add. The medians this
 * used to report sat below what llama.cpp's F16 decode reads (122 % of it
 * in docs/benchmarks/cpu/2026-12-07-sbs). */

struct bw_arg { const uint8_t *p; size_t n; double sink[64]; enum md_cpu_isa isa; };

#define BW_MIN_PASSES 8

#if BENCH_X86
__attribute__((target("avx512f")))
static double read_512(const uint8_t *p, size_t n)
{
    __m512 s[8];
    for (int k = 0; k < 8; k++)
        s[k] = _mm512_setzero_ps();
    for (size_t i = 0; i + 512 <= n; i += 512)
        for (int k = 0; k < 8; k++)
            s[k] = _mm512_add_ps(s[k], _mm512_load_ps((const float *)(p + i + 64 * k)));
    for (int k = 1; k < 8; k++)
        s[0] = _mm512_add_ps(s[0], s[k]);
    return _mm512_reduce_add_ps(s[0]);
}
#endif

static double read_scalar(const uint8_t *p, size_t n)
{
    uint64_t s = 0;
    for (size_t i = 0; i + 8 <= n; i += 64) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        s += v;
    }
    return (double)s;
}

static void bw_fn(void *p, int ith, int nth)
{
    struct bw_arg *a = p;
    size_t chunk = a->n / (size_t)nth / 512 * 512;
#if BENCH_X86
    if (a->isa == MD_ISA_AVX512) {
        a->sink[ith % 64] = read_512(a->p + chunk * (size_t)ith, chunk);
        return;
    }
#endif
    a->sink[ith % 64] = read_scalar(a->p + chunk * (size_t)ith, chunk);
}

/* Best pass of max(reps, BW_MIN_PASSES), in GB/s. */
static double measure_bw(struct md_threadpool *tp, enum md_cpu_isa isa, int reps)
{
    const size_t n = (size_t)1 << 30;
    uint8_t *p = aligned_alloc(64, n);
    if (!p) return 0;
    memset(p, 1, n);
    struct bw_arg a;
    memset(&a, 0, sizeof a);
    a.p = p;
    a.n = n;
    a.isa = isa;
    double best = 0;
    for (int r = 0; r < (reps > BW_MIN_PASSES ? reps : BW_MIN_PASSES); r++) {
        double t0 = now_s();
        md_threadpool_run(tp, bw_fn, &a);
        double gbs = (double)n / (now_s() - t0) * 1e-9;
        best = gbs > best ? gbs : best;
    }
    free(p);
    return best;
}

static void empty_fn(void *arg, int ith, int nth)
{
    (void)arg;
    (void)ith;
    (void)nth;
}

static void spin_fn(void *arg, int ith, int nth)
{
    volatile double x = 1.0;
    (void)arg;
    (void)ith;
    (void)nth;
    for (int i = 0; i < 500; i++)
        x = x * 1.0000001 + 1e-9;
}

/* ---- matmul ------------------------------------------------------------ */

static uint8_t *make_w(uint32_t type, int64_t n_in, int64_t n_out, size_t *bytes)
{
    const int64_t rb = md_type_row_bytes(type, n_in);
    *bytes = (size_t)(rb * n_out);
    uint8_t *w = aligned_alloc(64, (*bytes + 63) & ~(size_t)63);
    if (!w) return NULL;
    float *row = malloc(sizeof(float) * (size_t)n_in);
    uint64_t s = 88172645463325252ull;
    for (int64_t o = 0; o < n_out; o++) {
        for (int64_t i = 0; i < n_in; i++) {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            row[i] = (float)((double)(s >> 40) / (double)(1 << 24) - 0.5);
        }
        uint8_t *dst = w + o * rb;
        if (type == MD_TYPE_F32) memcpy(dst, row, (size_t)rb);
        else if (type == MD_TYPE_F16 || type == MD_TYPE_BF16)
            for (int64_t i = 0; i < n_in; i++) {
                uint16_t h = type == MD_TYPE_F16 ? md_fp32_to_fp16(row[i]) : md_fp32_to_bf16(row[i]);
                memcpy(dst + 2 * i, &h, 2);
            }
        else if (type == MD_TYPE_Q8_0) md_quantize_row_q8_0(row, dst, n_in);
        else {
            /* other types: random bytes with small finite fp16 scales */
            for (int64_t i = 0; i < rb; i++) { s ^= s << 13; s ^= s >> 7; s ^= s << 17; dst[i] = (uint8_t)s; }
            const int64_t bb = md_type_block_bytes(type), off = type == MD_TYPE_Q6_K ? 208 : 0;
            for (int64_t b = 0; b < rb / bb; b++) {
                uint16_t h = md_fp32_to_fp16(0.01f);
                memcpy(dst + b * bb + off, &h, 2);
                if (type != MD_TYPE_Q6_K && type != MD_TYPE_Q4_0 && type != MD_TYPE_Q5_0)
                    memcpy(dst + b * bb + 2, &h, 2);
            }
        }
    }
    free(row);
    return w;
}

struct shape { int64_t n_in, n_out; int count; const char *name; };

/* one layer of the 0.27B LLaMA (count = matmuls per layer) and the head */
static const struct shape shapes[] = {
    { 1024, 1024, 4, "attn q/k/v/o 1024x1024" },
    { 1024, 2816, 2, "ffn gate/up 1024->2816" },
    { 2816, 1024, 1, "ffn down 2816->1024" },
    { 1024, 32000, 0, "output 1024->32000" },
};
#define N_LAYERS 16

typedef int (*matmul_fn)(struct md_threadpool *, enum md_cpu_isa, const float *, int64_t, int64_t,
                         const void *, uint32_t, int64_t, float *);
static matmul_fn g_matmul = md_matmul_qgemm;

/* -hot: W is not rotated (it stays in the caches when it fits), to time a
 * kernel's instructions apart from the memory that feeds it. */
static int g_hot;

/* seconds per call, median; W rotated through `copies` distinct buffers */
static double time_matmul(struct md_threadpool *tp, enum md_cpu_isa isa, uint32_t type,
                          const struct shape *sh, int64_t n_tok, int reps, double min_time,
                          int use_cpu_time)
{
    double (*clk)(void) = use_cpu_time ? cpu_s : now_s;
    size_t bytes;
    uint8_t *w0 = make_w(type, sh->n_in, sh->n_out, &bytes);
    if (!w0) return -1;
    /* decode: enough copies to exceed the last-level cache many times */
    int copies = 1;
    if (n_tok <= 64 && !g_hot) {
        copies = (int)((512u << 20) / bytes);
        if (copies < 2) copies = 2;
        if (copies > 256) copies = 256;
    }
    uint8_t **w = malloc(sizeof(*w) * (size_t)copies);
    w[0] = w0;
    for (int c = 1; c < copies; c++) {
        w[c] = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
        memcpy(w[c], w0, bytes);
    }
    float *X = malloc(sizeof(float) * (size_t)(n_tok * sh->n_in));
    float *Y = malloc(sizeof(float) * (size_t)(n_tok * sh->n_out));
    for (int64_t i = 0; i < n_tok * sh->n_in; i++)
        X[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
    g_matmul(tp, isa, X, n_tok, sh->n_in, w[0], type, sh->n_out, Y);   /* warm-up */
    double v[64];
    int c = 0;
    for (int r = 0; r < reps; r++) {
        int calls = 0;
        double t0 = clk(), dt;
        do {
            g_matmul(tp, isa, X, n_tok, sh->n_in, w[c], type, sh->n_out, Y);
            c = (c + 1) % copies;
            calls++;
            dt = clk() - t0;
        } while (dt < min_time);
        v[r] = dt / calls;
    }
    for (int i = 0; i < copies; i++)
        free(w[i]);
    free(w);
    free(X);
    free(Y);
    return median(v, reps);
}

static uint32_t type_from_name(const char *s)
{
    static const uint32_t all[] = { MD_TYPE_F32, MD_TYPE_F16, MD_TYPE_BF16, MD_TYPE_Q8_0,
        MD_TYPE_Q4_0, MD_TYPE_Q4_1, MD_TYPE_Q5_0, MD_TYPE_Q5_1, MD_TYPE_Q4_K, MD_TYPE_Q5_K,
        MD_TYPE_Q6_K };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (!strcmp(s, md_type_name(all[i])))
            return all[i];
    return 0xffffffffu;
}

/* -only kernels: GEMV of every type at 1-4 tokens against the bandwidth */
static void run_kernels(struct md_threadpool *tp, enum md_cpu_isa best, const char *isa_name,
                        const char *types_arg, double bw, int reps, int use_cpu_time)
{
    struct md_threadpool *tp1 = md_threadpool_new(1);
    const double bw1 = measure_bw(tp1, best, reps);
    md_threadpool_free(tp1);
    printf("read bandwidth: %8.2f GB/s (1 GiB streamed, 1 thread)\n", bw1);
    const enum md_cpu_isa isa = isa_name ? (!strcmp(isa_name, "avx2") ? MD_ISA_AVX2 :
                                            !strcmp(isa_name, "scalar") ? MD_ISA_SCALAR : best) : best;
    const struct shape *sh = &shapes[1];
    const double wbytes_row = (double)sh->n_out;
    char tbuf[256];
    snprintf(tbuf, sizeof tbuf, "%s", types_arg);
    for (char *save = NULL, *tn = strtok_r(tbuf, ",", &save); tn; tn = strtok_r(NULL, ",", &save)) {
        const uint32_t type = type_from_name(tn);
        if (!md_type_supported(type)) continue;
        const double wbytes = (double)md_type_row_bytes(type, sh->n_in) * wbytes_row;
        for (int64_t nt = 1; nt <= 4; nt++) {
            g_matmul = md_matmul;
            const double te = time_matmul(tp, isa, type, sh, nt, reps, 0.05, use_cpu_time);
            g_matmul = md_matmul_qgemm;
            const double tq = time_matmul(tp, isa, type, sh, nt, reps, 0.05, use_cpu_time);
            printf("kernel %-6s %-5s %-24s n_tok=%lld  exact %8.1f us %6.2f GB/s %5.1f%%   "
                   "qdot %8.1f us %6.2f GB/s %5.1f%% of bw\n",
                   md_cpu_isa_name(isa), md_type_name(type), sh->name, (long long)nt,
                   te * 1e6, wbytes / te * 1e-9, 100.0 * wbytes / te * 1e-9 / bw,
                   tq * 1e6, wbytes / tq * 1e-9, 100.0 * wbytes / tq * 1e-9 / bw);
        }
    }
}

int main(int argc, char **argv)
{
    int n_threads = 2, reps = 5, use_cpu_time = 0;
    int64_t n_tok_gemm = 512, one_in = 1024, one_out = 2816;
    const char *only = NULL, *isa_name = NULL;
    char types_arg[256] = "F16,Q8_0,BF16,F32";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) n_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-n") && i + 1 < argc) n_tok_gemm = atoll(argv[++i]);
        else if (!strcmp(argv[i], "-only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "-in") && i + 1 < argc) one_in = atoll(argv[++i]);
        else if (!strcmp(argv[i], "-cpu")) use_cpu_time = 1;
        else if (!strcmp(argv[i], "-hot")) g_hot = 1;
        else if (!strcmp(argv[i], "-exact")) g_matmul = md_matmul;
        else if (!strcmp(argv[i], "-out") && i + 1 < argc) one_out = atoll(argv[++i]);
        else if (!strcmp(argv[i], "-isa") && i + 1 < argc) isa_name = argv[++i];
        else if (!strcmp(argv[i], "-type") && i + 1 < argc) snprintf(types_arg, sizeof types_arg, "%s", argv[++i]);
        else {
            fprintf(stderr, "usage: %s [-t threads] [-r reps] [-n n_tok] [-isa scalar|avx2|avx512] "
                    "[-type F16,Q8_0,...] [-only peak|bw|pool|gemv|gemm|model|sweep|one] [-in n_in] [-out n_out] [-cpu] [-exact]\n", argv[0]);
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    if (reps > 31) reps = 31;
    struct md_threadpool *tp = md_threadpool_new(n_threads);
    const enum md_cpu_isa best = md_cpu_isa_detect();
    printf("threads %d, best ISA %s, medians of %d\n", md_threadpool_n_threads(tp),
           md_cpu_isa_name(best), reps);

    double peak[3] = { 0, 0, 0 }, bw = 0;
    for (int isa = MD_ISA_AVX2; isa <= (int)best; isa++) {
        peak[isa] = measure_peak(tp, (enum md_cpu_isa)isa, reps);
        printf("peak %-6s FMA: %8.1f GFLOP/s (%d threads)\n", md_cpu_isa_name((enum md_cpu_isa)isa),
               peak[isa], md_threadpool_n_threads(tp));
    }
    if (!only || !strcmp(only, "bw") || !strcmp(only, "gemv") || !strcmp(only, "model") ||
        !strcmp(only, "kernels")) {
        bw = measure_bw(tp, best, reps);
        printf("read bandwidth: %8.2f GB/s (1 GiB streamed, %d threads)\n", bw,
               md_threadpool_n_threads(tp));
    }
    if (only && (!strcmp(only, "peak") || !strcmp(only, "bw")))
        goto done;
    if (only && !strcmp(only, "kernels")) {
        run_kernels(tp, best, isa_name, types_arg, bw, reps, use_cpu_time);
        goto done;
    }
    if (only && !strcmp(only, "pool")) {
        /* dispatch + join cost of an empty job */
        double v[32];
        for (int r = 0; r < reps; r++) {
            const int n = 100000;
            double t0 = now_s();
            for (int i = 0; i < n; i++)
                md_threadpool_run(tp, empty_fn, NULL);
            v[r] = (now_s() - t0) / n;
        }
        printf("pool: md_threadpool_run of an empty job: %.3f us\n", median(v, reps) * 1e6);
        /* a job of ~2 us per index: parallel if the workers pick up their
         * share at once, about n_threads x longer if the caller runs it */
        for (int r = 0; r < reps; r++) {
            const int n = 20000;
            double t0 = now_s();
            for (int i = 0; i < n; i++)
                md_threadpool_run(tp, spin_fn, NULL);
            v[r] = (now_s() - t0) / n;
        }
        double one = now_s();
        for (int i = 0; i < 20000; i++)
            spin_fn(NULL, 0, 1);
        one = (now_s() - one) / 20000;
        printf("pool: job of %.2f us per index: %.2f us per run\n", one * 1e6, median(v, reps) * 1e6);
        goto done;
    }
    if (only && !strcmp(only, "one")) {
        /* one shape (-in, -out, -n) for every type and the chosen ISA */
        const struct shape sh = { one_in, one_out, 1, "custom" };
        char tbuf[256];
        snprintf(tbuf, sizeof tbuf, "%s", types_arg);
        const enum md_cpu_isa isa = isa_name ? (!strcmp(isa_name, "avx2") ? MD_ISA_AVX2 :
                                                !strcmp(isa_name, "scalar") ? MD_ISA_SCALAR : best) : best;
        for (char *save = NULL, *tn = strtok_r(tbuf, ",", &save); tn; tn = strtok_r(NULL, ",", &save)) {
            const uint32_t type = type_from_name(tn);
            if (!md_type_supported(type)) continue;
            double t = time_matmul(tp, isa, type, &sh, n_tok_gemm, reps, 0.1, use_cpu_time);
            double gf = 2.0 * (double)n_tok_gemm * (double)one_in * (double)one_out / t * 1e-9;
            double gb = (double)md_type_row_bytes(type, one_in) * (double)one_out / t * 1e-9;
            printf("one %-6s %-5s n_in=%lld n_out=%lld n_tok=%lld: %9.1f us %7.1f GFLOP/s %6.2f GB/s of W\n",
                   md_cpu_isa_name(isa), md_type_name(type), (long long)one_in, (long long)one_out,
                   (long long)n_tok_gemm, t * 1e6, gf, gb);
        }
        goto done;
    }
    if (only && !strcmp(only, "sweep")) {
        /* time per call against n_tok at the ffn up shape (W from DRAM up
         * to n_tok = 64): where GEMV hands over to GEMM */
        static const int64_t nts[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 16, 24, 32, 48, 64, 128 };
        char tbuf[256];
        snprintf(tbuf, sizeof tbuf, "%s", types_arg);
        for (char *save = NULL, *tn = strtok_r(tbuf, ",", &save); tn; tn = strtok_r(NULL, ",", &save)) {
            const uint32_t type = type_from_name(tn);
            if (!md_type_supported(type)) continue;
            for (size_t i = 0; i < sizeof nts / sizeof nts[0]; i++) {
                double t = time_matmul(tp, best, type, &shapes[1], nts[i], reps, 0.05, use_cpu_time);
                printf("sweep %-6s %-5s %-24s n_tok=%-4lld %9.1f us %7.1f us/token %7.1f GFLOP/s\n",
                       md_cpu_isa_name(best), md_type_name(type), shapes[1].name, (long long)nts[i],
                       t * 1e6, t * 1e6 / (double)nts[i],
                       2.0 * (double)nts[i] * 1024 * 2816 / t * 1e-9);
            }
        }
        goto done;
    }

    for (int isa = (int)best; isa >= MD_ISA_SCALAR; isa--) {
        if (isa_name && strcmp(isa_name, md_cpu_isa_name((enum md_cpu_isa)isa)))
            continue;
        char tbuf[256];
        snprintf(tbuf, sizeof tbuf, "%s", types_arg);
        for (char *save = NULL, *tn = strtok_r(tbuf, ",", &save); tn; tn = strtok_r(NULL, ",", &save)) {
            const uint32_t type = type_from_name(tn);
            if (!md_type_supported(type)) {
                fprintf(stderr, "unknown type %s\n", tn);
                continue;
            }
            double t_dec = 0, t_pre = 0;
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
                const struct shape *sh = &shapes[s];
                const double wbytes = (double)md_type_row_bytes(type, sh->n_in) * (double)sh->n_out;
                const double mult = sh->count ? (double)(sh->count * N_LAYERS) : 1.0;
                if (!only || !strcmp(only, "gemv") || !strcmp(only, "model")) {
                    double t = time_matmul(tp, (enum md_cpu_isa)isa, type, sh, 1, reps, 0.05, use_cpu_time);
                    t_dec += t * mult;
                    if (!only || !strcmp(only, "gemv"))
                        printf("gemv %-6s %-5s %-24s n_tok=1   %8.1f us %7.2f GB/s %5.1f%% of bw\n",
                               md_cpu_isa_name((enum md_cpu_isa)isa), md_type_name(type), sh->name,
                               t * 1e6, wbytes / t * 1e-9, 100.0 * wbytes / t * 1e-9 / bw);
                }
                if (!only || !strcmp(only, "gemm") || !strcmp(only, "model")) {
                    if (isa == MD_ISA_SCALAR && sh->n_out > 4096)
                        continue;   /* too slow to be worth it */
                    double t = time_matmul(tp, (enum md_cpu_isa)isa, type, sh, n_tok_gemm, reps, 0.1, use_cpu_time);
                    t_pre += t * mult;
                    double gf = 2.0 * (double)n_tok_gemm * (double)sh->n_in * (double)sh->n_out / t * 1e-9;
                    if (!only || !strcmp(only, "gemm"))
                        printf("gemm %-6s %-5s %-24s n_tok=%-3lld %8.2f ms %7.1f GFLOP/s %5.1f%% of peak\n",
                               md_cpu_isa_name((enum md_cpu_isa)isa), md_type_name(type), sh->name,
                               (long long)n_tok_gemm, t * 1e3, gf,
                               peak[best] > 0 ? 100.0 * gf / peak[best] : 0.0);
                }
            }
            if (t_dec > 0)
                printf("model %-6s %-5s decode: matmuls %.2f ms/token -> <= %.1f tok/s\n",
                       md_cpu_isa_name((enum md_cpu_isa)isa), md_type_name(type), t_dec * 1e3, 1.0 / t_dec);
            if (t_pre > 0 && !(isa == MD_ISA_SCALAR))
                printf("model %-6s %-5s prefill %lld: matmuls %.1f ms -> <= %.1f tok/s\n",
                       md_cpu_isa_name((enum md_cpu_isa)isa), md_type_name(type), (long long)n_tok_gemm,
                       t_pre * 1e3, (double)n_tok_gemm / t_pre);
        }
    }
done:
    md_threadpool_free(tp);
    return 0;
}
