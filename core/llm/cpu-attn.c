/* Decode attention (cpu-attn.h): the driver that cuts the keys into blocks,
 * runs the blocks over the thread pool and merges their partial softmaxes,
 * and the portable C kernel. */
#include "cpu-attn.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "backend.h"
#include "quant.h"

/* ---- portable kernel ---------------------------------------------------- */

#define ATTN_TGT
#define ATTN_INL static inline __attribute__((always_inline))

ATTN_INL float attn_load(const void *p, bool f16, int32_t e)
{
    return f16 ? md_half_to_float(((const uint16_t *)p)[e]) : ((const float *)p)[e];
}

ATTN_INL float attn_dot(const float *q, const void *k, bool f16, int32_t d)
{
    float acc = 0.0f;
    for (int32_t e = 0; e < d; e++)
        acc += q[e] * attn_load(k, f16, e);
    return acc;
}

ATTN_INL void attn_axpy(float *acc, float w, const void *v, bool f16, int32_t d)
{
    for (int32_t e = 0; e < d; e++)
        acc[e] += w * attn_load(v, f16, e);
}

ATTN_INL void attn_scale(float *x, float c, int32_t d)
{
    for (int32_t e = 0; e < d; e++)
        x[e] *= c;
}

ATTN_INL float attn_max(const float *s, int32_t n)
{
    float m = s[0];
    for (int32_t t = 1; t < n; t++)
        m = s[t] > m ? s[t] : m;
    return m;
}

ATTN_INL float attn_exp_sum(float *s, int32_t n, float m)
{
    float sum = 0.0f;
    for (int32_t t = 0; t < n; t++) {
        s[t] = expf(s[t] - m);
        sum += s[t];
    }
    return sum;
}

#include "cpu-attn-body.h"

void md_attn_part_c(const struct md_attn_part *a)
{
    ATTN_PART_BODY(a);
}

/* ---- driver ------------------------------------------------------------- */

/* Fewest keys worth a block of their own (below, the merge and the
 * dispatch cost more than a thread saves). */
#define ATTN_MIN_BLOCK 256
/* Blocks per thread: items are taken from a counter, so a thread slowed by
 * another process (the machine is shared) leaves blocks to the others. */
#define ATTN_BLOCKS_PER_THREAD 4

struct decode_job {
    const struct md_attn_params *p;
    struct md_attn_part base;    /* t0, t1, s, state set per item */
    void (*part)(const struct md_attn_part *a);
    int32_t n_blocks, block;     /* blocks, keys a block */
    size_t state_floats;         /* per block */
    float *state, *scratch;      /* [n_blocks][state_floats], [thread][...] */
    size_t scratch_floats;       /* per thread */
    atomic_int next;
};

static size_t pair_count(const struct md_attn_params *p)
{
    return (size_t)p->n_q * (size_t)p->n_head;   /* n_head_kv * n_pair */
}

size_t md_attn_decode_work(const struct md_attn_params *p, int n_threads)
{
    size_t pairs = pair_count(p), d = (size_t)p->head_dim;
    size_t nt = n_threads > 0 ? (size_t)n_threads : 1;
    return pairs * d + nt * ATTN_BLOCKS_PER_THREAD * pairs * (d + 2) + nt * pairs * MD_ATTN_CHUNK;
}

static void decode_worker(void *arg, int ith, int nth)
{
    struct decode_job *j = arg;
    struct md_attn_part a = j->base;
    a.s = j->scratch + j->scratch_floats * (size_t)ith;
    for (int b; (b = atomic_fetch_add(&j->next, 1)) < j->n_blocks;) {
        a.t0 = b * j->block;
        a.t1 = a.t0 + j->block < j->base.t1 ? a.t0 + j->block : j->base.t1;
        a.state = j->state + j->state_floats * (size_t)b;
        j->part(&a);
    }
}

/* Queries times the scale, grouped by KV head: [hk][row][head in group][d]. */
static void gather_queries(const struct md_attn_params *p, const float *q, int32_t group, float *qs)
{
    const int32_t d = p->head_dim;
    for (int32_t hk = 0; hk < p->n_head_kv; hk++)
        for (int32_t r = 0; r < p->n_q; r++)
            for (int32_t g = 0; g < group; g++) {
                const float *src = q + ((size_t)r * p->n_head + (size_t)hk * group + g) * d;
                for (int32_t e = 0; e < d; e++)
                    *qs++ = src[e] * p->scale;
            }
}

/* Combine the blocks' (acc, max, sum) of every pair: the max over blocks,
 * each block's sum and accumulator scaled by exp(its max - that max). */
static void merge_blocks(const struct decode_job *j, float *out, float *lse)
{
    const struct md_attn_params *p = j->p;
    const int32_t d = p->head_dim, np = j->base.n_pair, group = j->base.group;
    for (int32_t i = 0; i < p->n_head_kv * np; i++) {
        const int32_t hk = i / np, r = i % np / group, h = hk * group + i % np % group;
        float *o = out + ((size_t)r * p->n_head + (size_t)h) * d;
        float m = -INFINITY, sum = 0.0f;
        for (int32_t b = 0; b < j->n_blocks; b++) {
            const float *st = j->state + j->state_floats * (size_t)b + (size_t)i * (d + 2);
            m = st[d] > m ? st[d] : m;
        }
        memset(o, 0, sizeof(float) * (size_t)d);
        for (int32_t b = 0; m > -INFINITY && b < j->n_blocks; b++) {
            const float *st = j->state + j->state_floats * (size_t)b + (size_t)i * (d + 2);
            if (st[d] == -INFINITY)
                continue;
            float c = expf(st[d] - m);
            sum += st[d + 1] * c;
            for (int32_t e = 0; e < d; e++)
                o[e] += st[e] * c;
        }
        /* a row that sees no key (q_start < -1) gets 0 and an LSE of -inf */
        float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
        for (int32_t e = 0; e < d; e++)
            o[e] *= inv;
        if (lse)
            lse[(size_t)h * p->n_q + r] = sum > 0.0f ? m + logf(sum) : -INFINITY;
    }
}

static void (*part_fn(enum md_cpu_isa isa))(const struct md_attn_part *)
{
#if defined(__x86_64__) || defined(__i386__)
    if (isa == MD_ISA_AVX512)
        return md_attn_part_avx512;
    if (isa == MD_ISA_AVX2)
        return md_attn_part_avx2;
#endif
    return md_attn_part_c;
}

void md_attn_decode(struct md_threadpool *tp, enum md_cpu_isa isa, const struct md_attn_params *p,
                    const float *q, const void *k, const void *v, bool kv_f16, int64_t kv_stride,
                    float *out, float *lse, float *work)
{
    const int nth = tp ? md_threadpool_n_threads(tp) : 1;
    const int32_t group = p->n_head / p->n_head_kv, d = p->head_dim;
    const int32_t vis0 = p->causal ? p->q_start + 1 : p->n_kv, step = p->causal ? 1 : 0;
    /* keys seen by the last row, the most any row sees */
    int32_t n_keys = vis0 + (p->n_q - 1) * step;
    n_keys = n_keys < 0 ? 0 : n_keys > p->n_kv ? p->n_kv : n_keys;
    int32_t n_blocks = (n_keys + ATTN_MIN_BLOCK - 1) / ATTN_MIN_BLOCK;
    n_blocks = n_blocks < nth * ATTN_BLOCKS_PER_THREAD ? n_blocks : nth * ATTN_BLOCKS_PER_THREAD;
    int32_t block = n_blocks ? (n_keys + n_blocks - 1) / n_blocks : 0;
    block = (block + MD_ATTN_CHUNK - 1) / MD_ATTN_CHUNK * MD_ATTN_CHUNK;
    n_blocks = block ? (n_keys + block - 1) / block : 0;

    const size_t pairs = pair_count(p);
    struct decode_job j = {
        .p = p,
        .base = { .q = work, .k = k, .v = v, .f16 = kv_f16, .stride = kv_stride, .d = d,
                  .n_head_kv = p->n_head_kv, .n_pair = p->n_q * group, .group = group,
                  .vis0 = vis0, .row_step = step, .t0 = 0, .t1 = n_keys },
        .part = part_fn(isa),
        .n_blocks = n_blocks,
        .block = block,
        .state_floats = pairs * (size_t)(d + 2),
        .state = work + pairs * (size_t)d,
        .scratch_floats = pairs * MD_ATTN_CHUNK,
    };
    j.scratch = j.state + (size_t)nth * ATTN_BLOCKS_PER_THREAD * j.state_floats;
    atomic_init(&j.next, 0);
    gather_queries(p, q, group, work);
    if (n_blocks > 1 && nth > 1)
        md_threadpool_run(tp, decode_worker, &j);
    else
        decode_worker(&j, 0, 1);
    merge_blocks(&j, out, lse);
}
