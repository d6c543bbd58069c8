/* Decode attention on the CPU: a few query rows against a deep F32 or F16
 * KV cache, flash-decoding style. The visible keys are cut into blocks;
 * a work item is one block for every head, so each item reads whole cache
 * rows in order (a head-by-head walk reads 128-256 bytes per 4 KiB row and
 * defeats the hardware prefetcher: measured 10x slower, see
 * docs/benchmarks/cpu/2026-12-07-attn/). Within a block, chunks of
 * MD_ATTN_CHUNK keys are scored for every (row, head) pair, folded into a
 * running max and sum (online softmax) and their values accumulated; the
 * query heads that share a KV head read its keys while they are in L1 (GQA).
 * The blocks' partial results are merged at the end, with the log-sum-exp
 * the attention op's contract asks for (backend.h, md_attn_params).
 * Internal to the CPU backend. */
#ifndef MD_CPU_ATTN_H
#define MD_CPU_ATTN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cpu-kernels.h"

struct md_attn_params;

/* Keys scored at a time; the scores of one chunk stay in L1. */
#define MD_ATTN_CHUNK 32

/* One work item: every (row, head) pair against the keys [t0, t1).
 * Pair pp of KV head hk is query row pp / group, head hk * group +
 * pp % group; its state (acc[d], max, sum) is at
 * state + (hk * n_pair + pp) * (d + 2). Row r sees the keys
 * t < vis0 + r * row_step (row_step 1 causal, 0 not). */
struct md_attn_part {
    const float *q;          /* [n_head_kv][n_pair][d]: queries times the scale */
    const void *k, *v;       /* cache row 0, head 0 */
    bool f16;                /* F16 cache, else F32 */
    int64_t stride;          /* elements per cache row */
    int32_t d, n_head_kv, n_pair, group;
    int32_t vis0, row_step;
    int32_t t0, t1;
    float *s;                /* scratch: n_head_kv * n_pair * MD_ATTN_CHUNK */
    float *state;            /* out: n_head_kv * n_pair * (d + 2) */
};

void md_attn_part_c(const struct md_attn_part *a);
#if defined(__x86_64__) || defined(__i386__)
void md_attn_part_avx2(const struct md_attn_part *a);
void md_attn_part_avx512(const struct md_attn_part *a);
#endif

/* Floats of work space md_attn_decode needs for p on n_threads threads. */
size_t md_attn_decode_work(const struct md_attn_params *p, int n_threads);

/* The attention op (backend.h) for the few-row case, p already checked:
 * k, v are the cache bases (kv_f16: F16, else F32; kv_stride elements a
 * row), lse may be NULL, work holds md_attn_decode_work(p, n) floats where
 * n is tp's thread count (1 when tp is NULL). */
void md_attn_decode(struct md_threadpool *tp, enum md_cpu_isa isa, const struct md_attn_params *p,
                    const float *q, const void *k, const void *v, bool kv_f16, int64_t kv_stride,
                    float *out, float *lse, float *work);

#endif
