/* Micro-benchmark of the CPU backend's attention op at decode (built, never
 * run as a test).
 *
 *   bench_attn [-t threads] [-r reps] [-isa scalar|avx2|avx512]
 *              [-q n_q] [-heads n_head,n_head_kv] [-hd head_dim]
 *              [-depths 0,512,2048,...] [-types F32,F16] [-cpu]
 *
 * Defaults are the shapes of the 0.27B LLaMA of the side-by-side benchmark
 * (16 heads of 64, no GQA, 16 layers) at 1 query row. Each call reads the
 * cache of one layer, and the 16 layers' caches are called in turn (at depth
 * 2048: 134 MB in F16, 268 MB in F32, more than the last-level cache), so
 * keys and values come from DRAM as they do in a decode step. Prints per call: the median time, the cache
 * bytes read (K and V of every visible entry) in GB/s, and the time of the
 * 16 layers of one token (what attention adds to a decode step at that
 * depth). -cpu times with the process's CPU clock instead of the wall
 * clock: with -t 1 on a shared machine, the time this thread ran (the
 * pool's workers spin between calls, so not with more threads). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "quant.h"

#define N_LAYER 16

static bool use_cpu_clock;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(use_cpu_clock ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

struct cfg {
    int threads, reps, n_q, n_head, n_head_kv, hd;
    const char *isa;
    int depths[16], n_depths;
    uint32_t types[2];
    int n_types;
};

static int parse_list(const char *s, int *out, int max)
{
    int n = 0;
    for (const char *p = s; *p && n < max;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > 1 << 20)
            return -1;
        out[n++] = (int)v;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return -1;
    }
    return n;
}

static int parse_args(int argc, char **argv, struct cfg *c)
{
    *c = (struct cfg){ 2, 15, 1, 16, 16, 64, NULL, { 0, 512, 1024, 2048, 4096 }, 5,
                       { MD_TYPE_F32, MD_TYPE_F16 }, 2 };
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "-cpu")) {
            use_cpu_clock = true;
            continue;
        }
        if (!v)
            return -1;
        i++;
        if (!strcmp(o, "-t")) c->threads = atoi(v);
        else if (!strcmp(o, "-r")) c->reps = atoi(v);
        else if (!strcmp(o, "-isa")) c->isa = v;
        else if (!strcmp(o, "-q")) c->n_q = atoi(v);
        else if (!strcmp(o, "-hd")) c->hd = atoi(v);
        else if (!strcmp(o, "-heads")) {
            if (sscanf(v, "%d,%d", &c->n_head, &c->n_head_kv) != 2) return -1;
        } else if (!strcmp(o, "-depths")) {
            if ((c->n_depths = parse_list(v, c->depths, 16)) < 1) return -1;
        } else if (!strcmp(o, "-types")) {
            c->n_types = 0;
            if (strstr(v, "F32")) c->types[c->n_types++] = MD_TYPE_F32;
            if (strstr(v, "F16")) c->types[c->n_types++] = MD_TYPE_F16;
        } else
            return -1;
    }
    if (c->threads < 1 || c->reps < 1 || c->reps > 1000 || c->n_q < 1 || c->hd < 1 ||
        c->n_head < 1 || c->n_head_kv < 1 || c->n_head % c->n_head_kv || c->n_types < 1)
        return -1;
    return 0;
}

/* Median seconds of one attention call at depth `depth` (n_q queries
 * appended after it), rotating through the layers' caches. */
static double time_depth(struct md_backend *be, const struct cfg *c, struct md_tensor *k,
                         struct md_tensor *v, int depth, struct md_tensor *q,
                         struct md_tensor *o, struct md_tensor *lse)
{
    struct md_attn_params p = { c->n_q, depth + c->n_q, depth, c->n_head, c->n_head_kv, c->hd,
                                0.125f, true };
    double *t = malloc(sizeof(double) * (size_t)c->reps);
    if (!t)
        return -1;
    for (int r = -1; r < c->reps; r++) {   /* r = -1: warm-up, not kept */
        double t0 = now_s();
        for (int l = 0; l < N_LAYER; l++)
            if (be->ops->attention(be, &p, q, &k[l], &v[l], o, lse) != MD_OK) {
                free(t);
                return -1;
            }
        if (r >= 0)
            t[r] = (now_s() - t0) / N_LAYER;
    }
    qsort(t, (size_t)c->reps, sizeof(double), cmp_double);
    double med = t[c->reps / 2];
    free(t);
    return med;
}

static int run_type(struct md_backend *be, const struct cfg *c, uint32_t type, int max_depth)
{
    int row = c->n_head_kv * c->hd, cap = max_depth + c->n_q;
    struct md_tensor k[N_LAYER], v[N_LAYER], q, o, lse, src;
    int rc = md_backend_alloc_2d(be, &q, MD_TYPE_F32, c->n_head * c->hd, c->n_q);
    rc = rc ? rc : md_backend_alloc_2d(be, &o, MD_TYPE_F32, c->n_head * c->hd, c->n_q);
    rc = rc ? rc : md_backend_alloc_2d(be, &lse, MD_TYPE_F32, c->n_q, c->n_head);
    rc = rc ? rc : md_backend_alloc_2d(be, &src, MD_TYPE_F32, row, cap);
    if (rc)
        return rc;
    float *f = src.data;
    uint64_t s = 42;
    for (int64_t i = 0; i < (int64_t)row * cap; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        f[i] = (float)((double)(s >> 40) / 16777216.0 - 0.5);
    }
    memcpy(q.data, f, sizeof(float) * (size_t)(c->n_head * c->hd * c->n_q < row * cap
                                               ? c->n_head * c->hd * c->n_q : row * cap));
    int n_alloc = 0;
    for (; n_alloc < N_LAYER && !rc; n_alloc++) {
        rc = md_backend_alloc_2d(be, &k[n_alloc], type, row, cap);
        rc = rc ? rc : md_backend_alloc_2d(be, &v[n_alloc], type, row, cap);
        rc = rc ? rc : be->ops->set_rows(be, &k[n_alloc], 0, &src);
        rc = rc ? rc : be->ops->set_rows(be, &v[n_alloc], 0, &src);
    }
    size_t esize = type == MD_TYPE_F16 ? 2 : 4;
    for (int i = 0; i < c->n_depths && !rc; i++) {
        int d = c->depths[i];
        double sec = time_depth(be, c, k, v, d, &q, &o, &lse);
        if (sec < 0) {
            rc = MD_ERR_INVALID;
            break;
        }
        double bytes = 2.0 * (double)(d + c->n_q) * row * (double)esize;
        printf("attn %-3s n_q=%d heads=%d/%d hd=%d depth=%5d: %9.1f us/call %7.2f GB/s  "
               "x%d layers %7.3f ms/token\n", md_type_name(type), c->n_q, c->n_head, c->n_head_kv,
               c->hd, d, sec * 1e6, bytes / sec * 1e-9, N_LAYER, sec * N_LAYER * 1e3);
        fflush(stdout);
    }
    for (int l = 0; l < n_alloc; l++) {
        be->ops->tensor_free(be, &k[l]);
        be->ops->tensor_free(be, &v[l]);
    }
    be->ops->tensor_free(be, &q);
    be->ops->tensor_free(be, &o);
    be->ops->tensor_free(be, &lse);
    be->ops->tensor_free(be, &src);
    return rc;
}

int main(int argc, char **argv)
{
    struct cfg c;
    if (parse_args(argc, argv, &c)) {
        fprintf(stderr, "usage: %s [-t threads] [-r reps] [-isa scalar|avx2|avx512] [-q n_q] "
                        "[-heads n_head,n_head_kv] [-hd head_dim] [-depths 0,512,...] "
                        "[-types F32,F16] [-cpu]\n", argv[0]);
        return 2;
    }
    struct md_backend_params bp = { .n_threads = c.threads, .isa = c.isa };
    struct md_backend *be;
    char err[256];
    if (md_backend_new("cpu", &bp, &be, err, sizeof err) != MD_OK) {
        fprintf(stderr, "bench_attn: %s\n", err);
        return 1;
    }
    int max_depth = 0;
    for (int i = 0; i < c.n_depths; i++)
        max_depth = c.depths[i] > max_depth ? c.depths[i] : max_depth;
    printf("threads %d, isa %s, medians of %d\n", c.threads, c.isa ? c.isa : "auto", c.reps);
    int rc = 0;
    for (int t = 0; t < c.n_types && !rc; t++)
        rc = run_type(be, &c, c.types[t], max_depth);
    if (rc)
        fprintf(stderr, "bench_attn: failed (%d)\n", rc);
    md_backend_free(be);
    return rc ? 1 : 0;
}
