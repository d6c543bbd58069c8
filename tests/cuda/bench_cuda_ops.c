/* Microbenchmarks of the CUDA backend's ops (not a test; docs/cuda.md).
 *   bench_cuda_ops [device]
 * Prints one line per measurement: the device copy bandwidth first (a
 * device-to-device set_rows of 1 GiB, counted as read + write), then the
 * prefill GEMM TFLOP/s (cuBLAS through the matmul op), the decode GEMV GB/s
 * per weight type, and attention times at LLaVA-shaped sizes. Each number is
 * the median of 7 timed runs after 2 warm-ups; the clock stops after a
 * 4-byte tensor_get (the one synchronization point of the backend). */
#include "backend.h"
#include "md-cuda.h"
#include "mustdrop.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static struct md_backend *be;
static struct md_tensor sync_t;

static void sync_be(void)
{
    float f;
    if (be->ops->tensor_get(be, &sync_t, 0, &f, sizeof f)) {
        fprintf(stderr, "tensor_get failed: %s\n", md_backend_cuda_last_error(be));
        exit(1);
    }
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median seconds of one call of fn (n_inner calls per timed run). */
static double timeit(void (*fn)(void *), void *arg, int n_inner)
{
    double t[7];
    for (int w = 0; w < 2; w++) fn(arg);
    sync_be();
    for (int r = 0; r < 7; r++) {
        double t0 = now();
        for (int i = 0; i < n_inner; i++) fn(arg);
        sync_be();
        t[r] = (now() - t0) / n_inner;
    }
    qsort(t, 7, sizeof t[0], cmp_d);
    return t[3];
}

static void check(int rc, const char *what)
{
    if (rc) {
        fprintf(stderr, "%s: %d %s\n", what, rc, md_backend_cuda_last_error(be));
        exit(1);
    }
}

/* Random-ish weight bytes with sane scales: all-0x11 blocks (fp16 0x1111 is
 * about 6e-4, a fine scale for any type). */
static void *weight_bytes(uint32_t type, int64_t n_in, int64_t n_out, size_t *n)
{
    *n = (size_t)md_type_row_bytes(type, n_in) * (size_t)n_out;
    void *w = malloc(*n);
    memset(w, 0x11, *n);
    return w;
}

struct mm { struct md_tensor x, w, y; };
static void run_mm(void *a)
{
    struct mm *m = a;
    check(be->ops->matmul(be, &m->x, &m->w, NULL, &m->y), "matmul");
}

struct cp { struct md_tensor dst, src; };
static void run_cp(void *a)
{
    struct cp *c = a;
    check(be->ops->set_rows(be, &c->dst, 0, &c->src), "set_rows");
}

struct at { struct md_attn_params p; struct md_tensor q, k, v, o, lse; };
static void run_at(void *a)
{
    struct at *t = a;
    check(be->ops->attention(be, &t->p, &t->q, &t->k, &t->v, &t->o, &t->lse), "attention");
}

static void bench_mm(uint32_t type, int64_t n_in, int64_t n_out, int64_t n_tok)
{
    struct mm m;
    memset(&m, 0, sizeof m);
    size_t wb;
    void *wh = weight_bytes(type, n_in, n_out, &wb);
    m.w.type = type;
    m.w.ne[0] = n_in; m.w.ne[1] = n_out; m.w.ne[2] = m.w.ne[3] = 1;
    check(be->ops->tensor_weight(be, &m.w, wh), "tensor_weight");
    free(wh);
    check(md_backend_alloc_2d(be, &m.x, MD_TYPE_F32, n_in, n_tok), "alloc");
    check(md_backend_alloc_2d(be, &m.y, MD_TYPE_F32, n_out, n_tok), "alloc");
    double t = timeit(run_mm, &m, n_tok <= 4 ? 20 : 5);
    double flop = 2.0 * n_in * n_out * n_tok;
    printf("matmul %-5s %6lld x %6lld  n_tok %5lld  %9.3f ms  %8.2f TFLOP/s  %8.1f GB/s (weights)\n",
           md_type_name(type), (long long)n_in, (long long)n_out, (long long)n_tok, t * 1e3,
           flop / t * 1e-12, wb / t * 1e-9);
    be->ops->tensor_free(be, &m.w);
    be->ops->tensor_free(be, &m.x);
    be->ops->tensor_free(be, &m.y);
}

static void bench_attn(int n_q, int n_kv, int n_head, int n_head_kv, int hd, uint32_t kv_type,
                       bool causal)
{
    struct at a;
    memset(&a, 0, sizeof a);
    struct md_attn_params p = { n_q, n_kv, n_kv - n_q, n_head, n_head_kv, hd,
                                1.0f / sqrtf((float)hd), causal };
    a.p = p;
    check(md_backend_alloc_2d(be, &a.q, MD_TYPE_F32, (int64_t)n_head * hd, n_q), "alloc");
    check(md_backend_alloc_2d(be, &a.o, MD_TYPE_F32, (int64_t)n_head * hd, n_q), "alloc");
    check(md_backend_alloc_2d(be, &a.lse, MD_TYPE_F32, n_q, n_head), "alloc");
    check(md_backend_alloc_2d(be, &a.k, kv_type, (int64_t)n_head_kv * hd, n_kv), "alloc");
    check(md_backend_alloc_2d(be, &a.v, kv_type, (int64_t)n_head_kv * hd, n_kv), "alloc");
    double t = timeit(run_at, &a, n_q <= 4 ? 20 : 3);
    double flop = 4.0 * n_q * (double)n_kv * hd * n_head * (causal && n_q > 1 ? 0.5 : 1.0);
    double kvb = 2.0 * n_kv * n_head_kv * hd * (kv_type == MD_TYPE_F16 ? 2 : 4);
    printf("attention n_q %5d n_kv %5d heads %d/%d hd %d %s %s  %9.3f ms  %7.2f TFLOP/s  %7.1f GB/s (KV)\n",
           n_q, n_kv, n_head, n_head_kv, hd, md_type_name(kv_type), causal ? "causal" : "full",
           t * 1e3, flop / t * 1e-12, kvb / t * 1e-9);
    be->ops->tensor_free(be, &a.q);
    be->ops->tensor_free(be, &a.o);
    be->ops->tensor_free(be, &a.lse);
    be->ops->tensor_free(be, &a.k);
    be->ops->tensor_free(be, &a.v);
}

int main(int argc, char **argv)
{
    char why[512] = "";
    if (md_cuda_device_count(why, sizeof why) <= 0) {
        printf("SKIP: no CUDA device (%s)\n", why);
        return 77;
    }
    struct md_backend_params bp = { 1, NULL, argc > 1 ? atoi(argv[1]) : 0, false };
    char err[512] = "";
    if (md_backend_new("cuda", &bp, &be, err, sizeof err)) {
        fprintf(stderr, "md_backend_new(cuda): %s\n", err);
        return 1;
    }
    struct md_cuda_device_info info;
    if (!md_cuda_device_info(bp.device, &info, why, sizeof why))
        printf("device %d: %s sm_%d%d, %zu MiB, %d SMs\n", info.index, info.name, info.cc_major,
               info.cc_minor, info.total_mem >> 20, info.n_sm);
    check(md_backend_alloc_2d(be, &sync_t, MD_TYPE_F32, 1, 1), "alloc");

    /* copy bandwidth: 1 GiB F32 -> F32, read + write */
    struct cp c;
    memset(&c, 0, sizeof c);
    int64_t ne0 = 4096, rows = ((int64_t)1 << 30) / (4 * ne0) / 2;
    check(md_backend_alloc_2d(be, &c.src, MD_TYPE_F32, ne0, rows), "alloc");
    check(md_backend_alloc_2d(be, &c.dst, MD_TYPE_F32, ne0, rows), "alloc");
    double t = timeit(run_cp, &c, 5);
    printf("copy D2D %lld MiB: %.3f ms, %.1f GB/s (read + write)\n",
           (long long)(rows * ne0 * 4 >> 20), t * 1e3, 2.0 * rows * ne0 * 4 / t * 1e-9);
    be->ops->tensor_free(be, &c.src);
    be->ops->tensor_free(be, &c.dst);

    /* prefill GEMM (cuBLAS) and decode GEMV, LLaMA-7B shapes */
    static const uint32_t types[] = { MD_TYPE_F16, MD_TYPE_BF16, MD_TYPE_Q8_0, MD_TYPE_Q4_K,
                                      MD_TYPE_Q4_0, MD_TYPE_Q6_K, MD_TYPE_F32 };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        bench_mm(types[i], 4096, 4096, 512);
        bench_mm(types[i], 4096, 11008, 1);
        bench_mm(types[i], 11008, 4096, 1);
        bench_mm(types[i], 4096, 4096, 4);
    }
    bench_mm(MD_TYPE_F16, 4096, 4096, 2930);   /* LLaVA-NeXT prompt */
    bench_mm(MD_TYPE_F16, 4096, 32000, 1);     /* output projection */

    /* attention: LLaVA-NeXT prefill, decode at 3k, CLIP-L tower */
    bench_attn(2930, 2930, 32, 32, 128, MD_TYPE_F16, true);
    bench_attn(512, 512, 32, 32, 128, MD_TYPE_F16, true);
    bench_attn(1, 3000, 32, 32, 128, MD_TYPE_F16, true);
    bench_attn(1, 3000, 32, 8, 128, MD_TYPE_F16, true);
    bench_attn(577, 577, 16, 16, 64, MD_TYPE_F32, false);
    be->ops->tensor_free(be, &sync_t);
    md_backend_free(be);
    return 0;
}
