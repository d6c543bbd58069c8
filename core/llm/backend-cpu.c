/* The CPU backend: tensors are host memory, weights alias the mmapped file,
 * matrix products go to md_matmul, everything else is plain loops. Row-wise
 * ops and attention are split over the thread pool. */
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cpu-attn.h"
#include "cpu-kernels.h"
#include "cpu-qgemm.h"
#include "mustdrop.h"

struct md_backend_cpu {
    struct md_backend base;
    struct md_threadpool *tp;
    enum md_cpu_isa isa;
    int n_threads;
    bool exact_matmul;       /* md_matmul instead of md_matmul_qgemm */
    float *scratch;          /* attention work space, n_threads slices */
    size_t scratch_per_thread;
    struct md_matmul_scratch **mm;   /* [n_threads]: attention's per-head products */
};

static struct md_backend_cpu *cpu_of(struct md_backend *be)
{
    return (struct md_backend_cpu *)be;
}

/* Run fn over the pool, or inline when there is none. */
static void cpu_run(struct md_backend_cpu *c, void (*fn)(void *, int, int), void *arg)
{
    if (c->tp && c->n_threads > 1)
        md_threadpool_run(c->tp, fn, arg);
    else
        fn(arg, 0, 1);
}

/* Rows [*r0, *r1) of n for worker ith of nth. */
static void split_rows(int64_t n, int ith, int nth, int64_t *r0, int64_t *r1)
{
    int64_t per = (n + nth - 1) / nth;
    *r0 = per * ith < n ? per * ith : n;
    *r1 = *r0 + per < n ? *r0 + per : n;
}

static bool is_f32(const struct md_tensor *t) { return t && t->type == MD_TYPE_F32 && t->data; }

static bool same_shape(const struct md_tensor *a, const struct md_tensor *b)
{
    return a->ne[0] == b->ne[0] && md_tensor_nrows(a) == md_tensor_nrows(b);
}

/* ---- memory ---------------------------------------------------------- */

static size_t tensor_bytes(const struct md_tensor *t)
{
    return md_tensor_row_bytes(t) * (size_t)md_tensor_nrows(t);
}

/* Zeroed, 64-byte aligned storage (the SIMD kernels' alignment) from
 * calloc, whose large blocks are fresh mappings it does not clear: their
 * pages are zeroed when first touched. aligned_alloc + memset touched every
 * page at once, and a context's KV cache (512 MiB for 4096 F32 positions of
 * a 0.27B model) cost a second of page faults before the first token; most
 * of it is never used by a short prompt. The block's start is kept just
 * below the aligned pointer for cpu_free. */
static void *cpu_zalloc(size_t n)
{
    if (n > SIZE_MAX - 64 - sizeof(void *))
        return NULL;
    void *base = calloc(1, n + 64 + sizeof(void *));
    if (!base)
        return NULL;
    uintptr_t p = ((uintptr_t)base + sizeof(void *) + 63) & ~(uintptr_t)63;
    ((void **)p)[-1] = base;
    return (void *)p;
}

static void cpu_free(void *p)
{
    if (p)
        free(((void **)p)[-1]);
}

static int cpu_tensor_alloc(struct md_backend *be, struct md_tensor *t)
{
    size_t n = tensor_bytes(t);
    if (n == 0 && t->ne[0] * md_tensor_nrows(t) != 0)
        return MD_ERR_INVALID;
    t->data = cpu_zalloc(n ? n : 64);
    if (!t->data)
        return MD_ERR_NOMEM;
    t->nbytes = n;
    t->owned = true;
    return MD_OK;
}

static int cpu_tensor_weight(struct md_backend *be, struct md_tensor *t, const void *host)
{
    t->data = (void *)host;   /* read-only alias into the model file */
    t->nbytes = tensor_bytes(t);
    t->owned = false;
    return MD_OK;
}

static void cpu_tensor_free(struct md_backend *be, struct md_tensor *t)
{
    if (t->owned)
        cpu_free(t->data);
    t->data = NULL;
    t->owned = false;
}

static int cpu_tensor_set(struct md_backend *be, struct md_tensor *t, size_t off,
                          const void *src, size_t n)
{
    if (!t->data || off > t->nbytes || n > t->nbytes - off)
        return MD_ERR_INVALID;
    if (n)
        memcpy((char *)t->data + off, src, n);
    return MD_OK;
}

static int cpu_tensor_get(struct md_backend *be, const struct md_tensor *t, size_t off,
                          void *dst, size_t n)
{
    if (!t->data || off > t->nbytes || n > t->nbytes - off)
        return MD_ERR_INVALID;
    if (n)
        memcpy(dst, (const char *)t->data + off, n);
    return MD_OK;
}

/* ---- element-wise and row-wise ops ---------------------------------- */

static int cpu_get_rows(struct md_backend *be, const struct md_tensor *table,
                        const struct md_tensor *ids, struct md_tensor *out)
{
    int64_t n = md_tensor_nrows(out), n_embd = table->ne[0], n_rows = md_tensor_nrows(table);
    if (ids->type != MD_TYPE_I32 || ids->ne[0] < n || !is_f32(out) || out->ne[0] != n_embd)
        return MD_ERR_INVALID;
    size_t rb = md_tensor_row_bytes(table);
    const int32_t *id = ids->data;
    for (int64_t r = 0; r < n; r++) {
        if (id[r] < 0 || id[r] >= n_rows)
            return MD_ERR_INVALID;
        md_dequantize_row(table->type, (const char *)table->data + rb * (size_t)id[r],
                          (float *)out->data + r * n_embd, n_embd);
    }
    return MD_OK;
}

static int cpu_matmul(struct md_backend *be, const struct md_tensor *x, const struct md_tensor *w,
                      const struct md_tensor *bias, struct md_tensor *y)
{
    struct md_backend_cpu *c = cpu_of(be);
    int64_t n = md_tensor_nrows(x), n_in = w->ne[0], n_out = w->ne[1];
    if (!is_f32(x) || !is_f32(y) || x->ne[0] != n_in || y->ne[0] != n_out ||
        md_tensor_nrows(y) != n || (bias && (!is_f32(bias) || bias->ne[0] != n_out)))
        return MD_ERR_INVALID;
    if (n == 0)
        return MD_OK;
    int rc = (c->exact_matmul ? md_matmul : md_matmul_qgemm)(c->tp, c->isa, x->data, n, n_in,
                                                             w->data, w->type, n_out, y->data);
    if (rc)
        return rc;
    if (bias) {
        const float *b = bias->data;
        float *yd = y->data;
        for (int64_t r = 0; r < n; r++)
            for (int64_t o = 0; o < n_out; o++)
                yd[r * n_out + o] += b[o];
    }
    return MD_OK;
}

static int cpu_add(struct md_backend *be, const struct md_tensor *a, const struct md_tensor *b,
                   struct md_tensor *out)
{
    int64_t n = md_tensor_nrows(a), ne0 = a->ne[0], nb = md_tensor_nrows(b);
    if (!is_f32(a) || !is_f32(b) || !is_f32(out) || b->ne[0] != ne0 || !same_shape(a, out) ||
        (nb != n && nb != 1))
        return MD_ERR_INVALID;
    const float *ad = a->data, *bd = b->data;
    float *od = out->data;
    for (int64_t r = 0; r < n; r++) {
        const float *br = bd + (nb == 1 ? 0 : r * ne0);
        for (int64_t i = 0; i < ne0; i++)
            od[r * ne0 + i] = ad[r * ne0 + i] + br[i];
    }
    return MD_OK;
}

/* Row-parallel norm: one job description shared by RMSNorm and LayerNorm. */
struct norm_job {
    const float *x, *w, *b;
    float *out;
    int64_t n_rows, ne0;
    float eps;
    bool rms;
};

static void norm_worker(void *arg, int ith, int nth)
{
    const struct norm_job *j = arg;
    int64_t r0, r1;
    split_rows(j->n_rows, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        const float *x = j->x + r * j->ne0;
        float *o = j->out + r * j->ne0;
        double mean = 0.0, ss = 0.0;
        if (!j->rms) {
            for (int64_t i = 0; i < j->ne0; i++)
                mean += x[i];
            mean /= (double)j->ne0;
        }
        for (int64_t i = 0; i < j->ne0; i++) {
            double d = x[i] - mean;
            ss += d * d;
        }
        float inv = (float)(1.0 / sqrt(ss / (double)j->ne0 + j->eps));
        for (int64_t i = 0; i < j->ne0; i++) {
            float v = (float)(x[i] - mean) * inv * j->w[i];
            o[i] = j->b ? v + j->b[i] : v;
        }
    }
}

static int run_norm(struct md_backend *be, const struct md_tensor *x, const struct md_tensor *w,
                    const struct md_tensor *b, float eps, struct md_tensor *out, bool rms)
{
    if (!is_f32(x) || !is_f32(out) || !is_f32(w) || w->ne[0] != x->ne[0] ||
        !same_shape(x, out) || (b && (!is_f32(b) || b->ne[0] != x->ne[0])))
        return MD_ERR_INVALID;
    struct norm_job j = { x->data, w->data, b ? b->data : NULL, out->data,
                          md_tensor_nrows(x), x->ne[0], eps, rms };
    cpu_run(cpu_of(be), norm_worker, &j);
    return MD_OK;
}

static int cpu_rms_norm(struct md_backend *be, const struct md_tensor *x, const struct md_tensor *w,
                        float eps, struct md_tensor *out)
{
    return run_norm(be, x, w, NULL, eps, out, true);
}

static int cpu_layer_norm(struct md_backend *be, const struct md_tensor *x,
                          const struct md_tensor *w, const struct md_tensor *b, float eps,
                          struct md_tensor *out)
{
    return run_norm(be, x, w, b, eps, out, false);
}

struct rope_job {
    float *x;
    const int32_t *pos;
    const float *factors;
    const struct md_rope_params *p;
    int64_t n_rows;
};

/* One row's angles are computed once (in double, so the cache matches a
 * naive reference at large positions) and applied to every head. */
static void rope_worker(void *arg, int ith, int nth)
{
    const struct rope_job *j = arg;
    const struct md_rope_params *p = j->p;
    int32_t half = p->n_rot / 2;
    double cs[512];   /* cos, sin pairs for up to 256 rotated pairs */
    int64_t r0, r1;
    split_rows(j->n_rows, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        double pos = (double)j->pos[r] * p->freq_scale;
        for (int32_t i = 0; i < half; i++) {
            double theta = pos * pow(p->freq_base, -2.0 * i / p->n_rot);
            if (j->factors)
                theta /= j->factors[i];
            cs[2 * i] = cos(theta);
            cs[2 * i + 1] = sin(theta);
        }
        float *row = j->x + r * (int64_t)p->n_head * p->head_dim;
        for (int32_t h = 0; h < p->n_head; h++) {
            float *v = row + (int64_t)h * p->head_dim;
            for (int32_t i = 0; i < half; i++) {
                /* the two elements one angle rotates */
                int32_t a = p->mode == MD_ROPE_NEOX ? i : 2 * i;
                int32_t b = p->mode == MD_ROPE_NEOX ? i + half : 2 * i + 1;
                double x0 = v[a], x1 = v[b];
                v[a] = (float)(x0 * cs[2 * i] - x1 * cs[2 * i + 1]);
                v[b] = (float)(x0 * cs[2 * i + 1] + x1 * cs[2 * i]);
            }
        }
    }
}

static int cpu_rope(struct md_backend *be, struct md_tensor *x, const struct md_tensor *pos,
                    const struct md_rope_params *p)
{
    int64_t n = md_tensor_nrows(x);
    if (!is_f32(x) || !pos || pos->type != MD_TYPE_I32 || pos->ne[0] < n ||
        p->n_rot <= 0 || p->n_rot % 2 || p->n_rot > p->head_dim || p->n_rot > 512 ||
        x->ne[0] != (int64_t)p->n_head * p->head_dim ||
        (p->freq_factors && (!is_f32(p->freq_factors) || p->freq_factors->ne[0] < p->n_rot / 2)))
        return MD_ERR_INVALID;
    struct rope_job j = { x->data, pos->data, p->freq_factors ? p->freq_factors->data : NULL,
                          p, n };
    cpu_run(cpu_of(be), rope_worker, &j);
    return MD_OK;
}

/* exp(x), written so the compiler vectorizes loops over it without
 * -ffast-math: round-to-nearest by the 1.5*2^23 trick, a degree-6 polynomial
 * for 2^f on [-0.5, 0.5] (relative error < 2e-7, below float rounding of the
 * sums it feeds), and the exponent put in by integer arithmetic. x is
 * clamped to [-87, 88] (no denormals, no overflow); written so NaN (a hostile
 * model's activations) lands on -87, as float-to-int conversion of NaN or
 * inf would be undefined. */
static inline __attribute__((always_inline)) float exp_fast(float x)
{
    x = x >= -87.0f ? (x <= 88.0f ? x : 88.0f) : -87.0f;
    float t = x * 1.44269504088896341f;
    float r = (t + 12582912.0f) - 12582912.0f;
    float f = t - r;
    float p = 1.5403530393381606e-4f;
    p = p * f + 1.3333558146428443e-3f;
    p = p * f + 9.6181291076284772e-3f;
    p = p * f + 5.5504108664821580e-2f;
    p = p * f + 2.4022650695910071e-1f;
    p = p * f + 6.9314718055994531e-1f;
    p = p * f + 1.0f;
    union { int32_t i; float f; } sc = { .i = ((int32_t)r + 127) * (1 << 23) };
    return p * sc.f;
}

/* s[t] = exp(s[t] - m) for t < n; returns the sum (16 partial sums so the
 * loop vectorizes and the result does not depend on threading). */
static inline __attribute__((always_inline)) float exp_sum_body(float *s, int32_t n, float m)
{
    float acc[16] = { 0 };
    int32_t t = 0;
    for (; t + 16 <= n; t += 16)
        for (int j = 0; j < 16; j++) {
            s[t + j] = exp_fast(s[t + j] - m);
            acc[j] += s[t + j];
        }
    float sum = 0.0f;
    for (int j = 0; j < 16; j++)
        sum += acc[j];
    for (; t < n; t++) {
        s[t] = exp_fast(s[t] - m);
        sum += s[t];
    }
    return sum;
}

/* out[i] = x[i] * sigmoid(k * x[i]) (* up[i]): SiLU (k = 1), quick-GELU (k = 1.702). */
static inline __attribute__((always_inline)) void sigmoid_gate_body(const float *x, const float *up,
                                                                    float *out, int64_t n, float k)
{
    if (up)
        for (int64_t i = 0; i < n; i++)
            out[i] = x[i] / (1.0f + exp_fast(-k * x[i])) * up[i];
    else
        for (int64_t i = 0; i < n; i++)
            out[i] = x[i] / (1.0f + exp_fast(-k * x[i]));
}

/* The same loops compiled for wider vectors, picked by the backend's ISA:
 * a default build targets baseline x86-64 (SSE2), which would vectorize
 * them only 4 wide. No FMA contraction in ISO C mode, so every ISA gives
 * the same bits. */
static float exp_sum_c(float *s, int32_t n, float m) { return exp_sum_body(s, n, m); }
static void sigmoid_gate_c(const float *x, const float *up, float *out, int64_t n, float k)
{
    sigmoid_gate_body(x, up, out, n, k);
}
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2,fma"))) static float exp_sum_avx2(float *s, int32_t n, float m)
{
    return exp_sum_body(s, n, m);
}
__attribute__((target("avx512f"))) static float exp_sum_avx512(float *s, int32_t n, float m)
{
    return exp_sum_body(s, n, m);
}
__attribute__((target("avx2,fma"))) static void sigmoid_gate_avx2(const float *x, const float *up,
                                                                  float *out, int64_t n, float k)
{
    sigmoid_gate_body(x, up, out, n, k);
}
__attribute__((target("avx512f"))) static void sigmoid_gate_avx512(const float *x, const float *up,
                                                                   float *out, int64_t n, float k)
{
    sigmoid_gate_body(x, up, out, n, k);
}
#endif

static float exp_sum(enum md_cpu_isa isa, float *s, int32_t n, float m)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (isa == MD_ISA_AVX512) return exp_sum_avx512(s, n, m);
    if (isa == MD_ISA_AVX2) return exp_sum_avx2(s, n, m);
#endif
    (void)isa;
    return exp_sum_c(s, n, m);
}

static void sigmoid_gate(enum md_cpu_isa isa, const float *x, const float *up, float *out,
                         int64_t n, float k)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (isa == MD_ISA_AVX512) { sigmoid_gate_avx512(x, up, out, n, k); return; }
    if (isa == MD_ISA_AVX2) { sigmoid_gate_avx2(x, up, out, n, k); return; }
#endif
    (void)isa;
    sigmoid_gate_c(x, up, out, n, k);
}

static float apply_unary(enum md_unary_op op, float x)
{
    switch (op) {
    case MD_UNARY_SILU:
        return x / (1.0f + expf(-x));
    case MD_UNARY_GELU_TANH:
        return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    case MD_UNARY_GELU_ERF:
        return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
    case MD_UNARY_QUICK_GELU:
        return x / (1.0f + expf(-1.702f * x));
    }
    return x;
}

struct unary_job {
    enum md_cpu_isa isa;
    enum md_unary_op op;
    const float *x, *up;   /* up NULL: plain unary */
    float *out;
    int64_t n;             /* elements */
};

static void unary_worker(void *arg, int ith, int nth)
{
    const struct unary_job *j = arg;
    int64_t i0, i1;
    split_rows(j->n, ith, nth, &i0, &i1);
    if (j->op == MD_UNARY_SILU || j->op == MD_UNARY_QUICK_GELU) {
        sigmoid_gate(j->isa, j->x + i0, j->up ? j->up + i0 : NULL, j->out + i0, i1 - i0,
                     j->op == MD_UNARY_SILU ? 1.0f : 1.702f);
        return;
    }
    for (int64_t i = i0; i < i1; i++) {
        float v = apply_unary(j->op, j->x[i]);
        j->out[i] = j->up ? v * j->up[i] : v;
    }
}

static int cpu_unary(struct md_backend *be, enum md_unary_op op, const struct md_tensor *x,
                     struct md_tensor *out)
{
    if (!is_f32(x) || !is_f32(out) || !same_shape(x, out))
        return MD_ERR_INVALID;
    struct unary_job j = { cpu_of(be)->isa, op, x->data, NULL, out->data, x->ne[0] * md_tensor_nrows(x) };
    cpu_run(cpu_of(be), unary_worker, &j);
    return MD_OK;
}

static int cpu_glu(struct md_backend *be, enum md_unary_op op, const struct md_tensor *gate,
                   const struct md_tensor *up, struct md_tensor *out)
{
    if (!is_f32(gate) || !is_f32(up) || !is_f32(out) || !same_shape(gate, up) ||
        !same_shape(gate, out))
        return MD_ERR_INVALID;
    struct unary_job j = { cpu_of(be)->isa, op, gate->data, up->data, out->data,
                           gate->ne[0] * md_tensor_nrows(gate) };
    cpu_run(cpu_of(be), unary_worker, &j);
    return MD_OK;
}

static int cpu_softmax(struct md_backend *be, const struct md_tensor *x, float scale,
                       struct md_tensor *out)
{
    if (!is_f32(x) || !is_f32(out) || !same_shape(x, out))
        return MD_ERR_INVALID;
    int64_t n = md_tensor_nrows(x), ne0 = x->ne[0];
    for (int64_t r = 0; r < n; r++) {
        const float *xi = (const float *)x->data + r * ne0;
        float *o = (float *)out->data + r * ne0;
        float m = -INFINITY;
        for (int64_t i = 0; i < ne0; i++)
            m = fmaxf(m, scale * xi[i]);
        double sum = 0.0;
        for (int64_t i = 0; i < ne0; i++) {
            o[i] = expf(scale * xi[i] - m);
            sum += o[i];
        }
        for (int64_t i = 0; i < ne0; i++)
            o[i] = (float)(o[i] / sum);
    }
    return MD_OK;
}

/* ---- attention ------------------------------------------------------- */

/* Decode (fewer than ATTN_MIN_BLOCKED_Q queries) goes to md_attn_decode
 * (cpu-attn.c): blocks of keys across threads, every head of a cache row
 * read in order, online softmax. */

/* ---- prefill attention as two matrix products per (head, query block) --
 * For many queries, dot products key by key (md_attn_decode) leave the FMA
 * units mostly idle. Here blocks of QB queries of one head are multiplied
 * with that head's keys and values through md_matmul (packed GEMM
 * kernels): S = Q K^T, a row-wise
 * stable softmax (masked causally by index, LSE kept), then O = P V.
 * A work item is a run of query blocks of one head: K and V^T are gathered
 * into contiguous f32 panels (converting F16 caches) once per item, for the
 * keys its last query can see (nv_max); V^T has row stride nv_max, so P rows
 * are zero-filled to nv_max and every block's O = P V^T uses all nv_max keys
 * (at most 2x the P·V FLOPs of an exact causal trim, far less than the
 * transposes it saves). Items are whole heads unless there are fewer heads
 * than threads. */
#define ATTN_QB 64
/* Below this many queries (decode, short batches) the direct loops win. */
#define ATTN_MIN_BLOCKED_Q 8

struct attn_blk_job {
    const struct md_attn_params *p;
    enum md_cpu_isa isa;
    const float *q;
    const void *k, *v;
    bool kv_f16;
    int64_t kv_stride;
    float *out, *lse;
    float *scratch;
    size_t scratch_per_thread;
    int32_t n_blocks;             /* query blocks per head */
    int32_t chunks;               /* items per head */
    struct md_matmul_scratch **mm;   /* per thread */
    atomic_int failed;            /* a thread's product could not get memory */
};

/* Keys visible to the last query of block blk (all keys when non-causal). */
static int32_t attn_block_nv(const struct md_attn_params *p, int32_t blk)
{
    int32_t i_end = (blk + 1) * ATTN_QB < p->n_q ? (blk + 1) * ATTN_QB : p->n_q;
    int32_t nv = p->causal ? p->q_start + i_end : p->n_kv;
    return nv > p->n_kv ? p->n_kv : nv < 0 ? 0 : nv;
}

static void attn_gather_kv(const struct attn_blk_job *j, int32_t hk, int32_t nv, float *kb, float *vt)
{
    const int32_t d = j->p->head_dim;
    for (int32_t t = 0; t < nv; t++) {
        int64_t off = t * j->kv_stride + (int64_t)hk * d;
        float *krow = kb + (size_t)t * d;
        if (j->kv_f16) {
            const uint16_t *kh = (const uint16_t *)j->k + off, *vh = (const uint16_t *)j->v + off;
            for (int32_t e = 0; e < d; e++) {
                krow[e] = md_half_to_float(kh[e]);
                vt[(size_t)e * nv + t] = md_half_to_float(vh[e]);
            }
        } else {
            const float *vf = (const float *)j->v + off;
            memcpy(krow, (const float *)j->k + off, sizeof(float) * (size_t)d);
            for (int32_t e = 0; e < d; e++)
                vt[(size_t)e * nv + t] = vf[e];
        }
    }
}

/* Softmax of the scaled scores of block row i in place (visible keys only),
 * zeros up to nv_max; returns 1/sum and writes the LSE. */
static float attn_softmax_row(const struct attn_blk_job *j, int32_t h, int32_t qi, float *srow,
                              int32_t nv_max)
{
    const struct md_attn_params *p = j->p;
    int32_t vis = p->causal ? p->q_start + qi + 1 : nv_max;
    vis = vis > nv_max ? nv_max : vis < 0 ? 0 : vis;
    float m = -INFINITY;
    for (int32_t t = 0; t < vis; t++) {
        srow[t] *= p->scale;
        m = srow[t] > m ? srow[t] : m;
    }
    float sum = vis > 0 ? exp_sum(j->isa, srow, vis, m) : 0.0f;
    memset(srow + vis, 0, sizeof(float) * (size_t)(nv_max - vis));
    if (j->lse)
        j->lse[(int64_t)h * p->n_q + qi] = vis > 0 ? m + logf(sum) : -INFINITY;
    return vis > 0 ? 1.0f / sum : 0.0f;
}

static int attn_blocks(const struct attn_blk_job *j, int32_t h, int32_t b0, int32_t b1, float *ws,
                       struct md_matmul_scratch *mm)
{
    const struct md_attn_params *p = j->p;
    const int32_t d = p->head_dim, hk = h / (p->n_head / p->n_head_kv);
    const int32_t nv_max = attn_block_nv(p, b1 - 1);
    const int64_t row_q = (int64_t)p->n_head * d;
    float *qb = ws, *kb = qb + (size_t)ATTN_QB * d, *vt = kb + (size_t)p->n_kv * d;
    float *sb = vt + (size_t)p->n_kv * d, *ob = sb + (size_t)ATTN_QB * p->n_kv;

    attn_gather_kv(j, hk, nv_max, kb, vt);
    for (int32_t blk = b0; blk < b1; blk++) {
        const int32_t i0 = blk * ATTN_QB;
        const int32_t nq = p->n_q - i0 < ATTN_QB ? p->n_q - i0 : ATTN_QB;
        const int32_t nv = attn_block_nv(p, blk);
        float inv_sum[ATTN_QB];
        for (int32_t i = 0; i < nq; i++)
            memcpy(qb + (size_t)i * d, j->q + (i0 + i) * row_q + (int64_t)h * d,
                   sizeof(float) * (size_t)d);
        if (nv > 0 && md_matmul_st(mm, j->isa, qb, nq, d, kb, MD_TYPE_F32, nv, sb))
            return MD_ERR_NOMEM;
        /* rows of S have stride nv; P rows need stride nv_max: fill backwards */
        for (int32_t i = nq - 1; i >= 0; i--) {
            float *src = sb + (size_t)i * nv, *dst = sb + (size_t)i * nv_max;
            memmove(dst, src, sizeof(float) * (size_t)nv);
            inv_sum[i] = attn_softmax_row(j, h, i0 + i, dst, nv_max);
        }
        if (nv_max > 0 && md_matmul_st(mm, j->isa, sb, nq, nv_max, vt, MD_TYPE_F32, d, ob))
            return MD_ERR_NOMEM;
        for (int32_t i = 0; i < nq; i++) {
            float *o = j->out + (i0 + i) * row_q + (int64_t)h * d;
            for (int32_t e = 0; e < d; e++)
                o[e] = nv_max > 0 ? ob[(size_t)i * d + e] * inv_sum[i] : 0.0f;
        }
    }
    return MD_OK;
}

static void attn_blk_worker(void *arg, int ith, int nth)
{
    struct attn_blk_job *j = arg;
    int64_t n_items = (int64_t)j->p->n_head * j->chunks, a, b;
    split_rows(n_items, ith, nth, &a, &b);
    float *ws = j->scratch + j->scratch_per_thread * (size_t)ith;
    int32_t per = (j->n_blocks + j->chunks - 1) / j->chunks;
    for (int64_t it = a; it < b; it++) {
        int32_t h = (int32_t)(it / j->chunks), c = (int32_t)(it % j->chunks);
        int32_t b0 = c * per, b1 = b0 + per < j->n_blocks ? b0 + per : j->n_blocks;
        if (b0 < b1 && attn_blocks(j, h, b0, b1, ws, j->mm[ith]))
            atomic_store(&j->failed, 1);
    }
}

/* Grow the per-thread attention work space to `per` floats a thread. */
static int attn_scratch(struct md_backend_cpu *c, size_t per)
{
    if (per <= c->scratch_per_thread)
        return MD_OK;
    float *s = malloc(per * sizeof(float) * (size_t)c->n_threads);
    if (!s)
        return MD_ERR_NOMEM;
    free(c->scratch);
    c->scratch = s;
    c->scratch_per_thread = per;
    return MD_OK;
}

static int cpu_attention(struct md_backend *be, const struct md_attn_params *p,
                         const struct md_tensor *q, const struct md_tensor *k,
                         const struct md_tensor *v, struct md_tensor *out, struct md_tensor *lse)
{
    struct md_backend_cpu *c = cpu_of(be);
    int rc = md_attn_check_args(p, q, k, v, out, lse);
    if (rc)
        return rc;
    if (p->n_q == 0)
        return MD_OK;

    bool f16 = k->type == MD_TYPE_F16;
    int64_t row_kv = (int64_t)p->n_head_kv * p->head_dim;
    if (p->n_q >= ATTN_MIN_BLOCKED_Q) {
        size_t d = (size_t)p->head_dim, nkv = (size_t)p->n_kv;
        size_t per = ATTN_QB * d * 2 + nkv * d * 2 + ATTN_QB * nkv + 16;
        rc = attn_scratch(c, per);
        if (rc)
            return rc;
        int32_t n_blocks = (p->n_q + ATTN_QB - 1) / ATTN_QB;
        int32_t chunks = (c->n_threads + p->n_head - 1) / p->n_head;
        chunks = chunks > n_blocks ? n_blocks : chunks;
        struct attn_blk_job jb = { p, c->isa, q->data, k->data, v->data, f16, row_kv, out->data,
                                   lse ? lse->data : NULL, c->scratch, c->scratch_per_thread,
                                   n_blocks, chunks, c->mm, 0 };
        atomic_init(&jb.failed, 0);
        cpu_run(c, attn_blk_worker, &jb);
        return atomic_load(&jb.failed) ? MD_ERR_NOMEM : MD_OK;
    }
    struct md_threadpool *tp = c->tp && c->n_threads > 1 ? c->tp : NULL;
    size_t work = md_attn_decode_work(p, tp ? c->n_threads : 1);
    rc = attn_scratch(c, (work + (size_t)c->n_threads - 1) / (size_t)c->n_threads);
    if (rc)
        return rc;
    md_attn_decode(tp, c->isa, p, q->data, k->data, v->data, f16, row_kv, out->data,
                   lse ? lse->data : NULL, c->scratch);
    return MD_OK;
}

/* ---- row movement ---------------------------------------------------- */

static int cpu_set_rows(struct md_backend *be, struct md_tensor *dst, int64_t row0,
                        const struct md_tensor *src)
{
    int64_t n = md_tensor_nrows(src), ne0 = src->ne[0];
    if (!is_f32(src) || !dst->data || dst->ne[0] != ne0 || row0 < 0 ||
        row0 + n > md_tensor_nrows(dst))
        return MD_ERR_INVALID;
    const float *s = src->data;
    if (dst->type == MD_TYPE_F32) {
        memcpy((float *)dst->data + row0 * ne0, s, sizeof(float) * (size_t)(n * ne0));
    } else if (dst->type == MD_TYPE_F16) {
        uint16_t *d = (uint16_t *)dst->data + row0 * ne0;
        for (int64_t i = 0; i < n * ne0; i++)
            d[i] = md_fp32_to_fp16(s[i]);
    } else {
        return MD_ERR_INVALID;
    }
    return MD_OK;
}

static int cpu_keep_rows(struct md_backend *be, struct md_tensor *t, const int32_t *idx, int64_t n)
{
    size_t rb = md_tensor_row_bytes(t);
    int64_t rows = md_tensor_nrows(t);
    if (!t->data || rb == 0 || n > rows)
        return MD_ERR_INVALID;
    char *d = t->data;
    for (int64_t i = 0; i < n; i++) {
        if (idx[i] < i || idx[i] >= rows)
            return MD_ERR_INVALID;   /* not strictly increasing; caller bug */
        if (idx[i] != i)
            memcpy(d + rb * (size_t)i, d + rb * (size_t)idx[i], rb);
    }
    return MD_OK;
}

/* ---- instance -------------------------------------------------------- */

static void cpu_destroy(struct md_backend *be)
{
    struct md_backend_cpu *c = cpu_of(be);
    md_threadpool_free(c->tp);
    for (int i = 0; c->mm && i < c->n_threads; i++)
        md_matmul_scratch_free(c->mm[i]);
    free(c->mm);
    free(c->scratch);
    free(c);
}

static const struct md_backend_ops cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .tensor_alloc = cpu_tensor_alloc,
    .tensor_weight = cpu_tensor_weight,
    .tensor_free = cpu_tensor_free,
    .tensor_set = cpu_tensor_set,
    .tensor_get = cpu_tensor_get,
    .get_rows = cpu_get_rows,
    .matmul = cpu_matmul,
    .add = cpu_add,
    .rms_norm = cpu_rms_norm,
    .layer_norm = cpu_layer_norm,
    .rope = cpu_rope,
    .unary = cpu_unary,
    .glu = cpu_glu,
    .softmax = cpu_softmax,
    .attention = cpu_attention,
    .set_rows = cpu_set_rows,
    .keep_rows = cpu_keep_rows,
};

/* "auto" -> what the CPU has; a named ISA must be supported by this CPU. */
static int pick_isa(const char *name, enum md_cpu_isa *isa, char *err, size_t errlen)
{
    enum md_cpu_isa have = md_cpu_isa_detect();
    if (!name || !*name || !strcmp(name, "auto")) {
        *isa = have;
        return MD_OK;
    }
    static const struct { const char *name; enum md_cpu_isa isa; } names[] = {
        { "scalar", MD_ISA_SCALAR }, { "avx2", MD_ISA_AVX2 }, { "avx512", MD_ISA_AVX512 },
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(name, names[i].name))
            continue;
        if (names[i].isa > have) {
            snprintf(err, errlen, "ISA '%s' is not supported by this CPU (best: %s)", name,
                     md_cpu_isa_name(have));
            return MD_ERR_UNSUPPORTED;
        }
        *isa = names[i].isa;
        return MD_OK;
    }
    snprintf(err, errlen, "unknown ISA '%s' (expected auto, scalar, avx2 or avx512)", name);
    return MD_ERR_INVALID;
}

int md_backend_cpu_new(const struct md_backend_params *p, struct md_backend **out,
                       char *err, size_t errlen)
{
    *out = NULL;
    enum md_cpu_isa isa;
    int rc = pick_isa(p ? p->isa : NULL, &isa, err, errlen);
    if (rc)
        return rc;
    struct md_backend_cpu *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory creating the CPU backend");
        return MD_ERR_NOMEM;
    }
    c->base.ops = &cpu_ops;
    c->isa = isa;
    c->n_threads = p && p->n_threads > 0 ? p->n_threads : 1;
    c->exact_matmul = p && p->exact_matmul;
    c->mm = calloc((size_t)c->n_threads, sizeof *c->mm);
    for (int i = 0; c->mm && i < c->n_threads; i++)
        if (!(c->mm[i] = md_matmul_scratch_new())) {
            cpu_destroy(&c->base);
            snprintf(err, errlen, "out of memory creating the CPU backend");
            return MD_ERR_NOMEM;
        }
    if (!c->mm) {
        free(c);
        snprintf(err, errlen, "out of memory creating the CPU backend");
        return MD_ERR_NOMEM;
    }
    if (c->n_threads > 1) {
        c->tp = md_threadpool_new(c->n_threads);
        if (!c->tp) {
            free(c);
            snprintf(err, errlen, "cannot start a thread pool of %d threads", p->n_threads);
            return MD_ERR_NOMEM;
        }
    }
    *out = &c->base;
    return MD_OK;
}

const char *md_backend_cpu_isa(const struct md_backend *be)
{
    if (!be || be->ops != &cpu_ops)
        return "";
    return md_cpu_isa_name(((const struct md_backend_cpu *)be)->isa);
}
