/* CPU compute kernels: a thread pool and the matrix multiply every model
 * layer spends its time in. The ISA path (AVX-512, AVX2+FMA+F16C, or
 * portable C) is chosen once at run time from CPUID; results agree across
 * paths within float rounding. */
#ifndef MD_CPU_KERNELS_H
#define MD_CPU_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* A persistent pool of n_threads workers (the caller's thread is worker 0).
 * Idle workers spin ~2 ms on the next dispatch, then sleep. The pool also
 * owns per-thread scratch buffers for md_matmul (grown on demand, kept):
 * steady-state calls allocate nothing. One md_threadpool_run / md_matmul
 * at a time per pool; md_threadpool_new returns NULL on failure. */
struct md_threadpool;
struct md_threadpool *md_threadpool_new(int n_threads);
void md_threadpool_free(struct md_threadpool *tp);
int md_threadpool_n_threads(const struct md_threadpool *tp);
/* The calling thread's buffer of tp, the one md_matmul fills before it
 * dispatches (quantized or packed activations): 64-byte aligned, at least
 * `bytes`, kept and grown on demand (contents not kept when it grows).
 * For the other kernels of the backend that run one product at a time on
 * the pool, so that they allocate nothing in steady state either. NULL when
 * tp is NULL or memory is exhausted. */
void *md_threadpool_caller_scratch(struct md_threadpool *tp, size_t bytes);
/* Run fn(arg, ith, nth) for ith = 0..nth-1 in parallel and wait for all.
 * Each ith runs exactly once, but not necessarily on its own thread: an
 * index no worker has picked up yet (preempted worker) is run by the caller
 * after ith 0, so fn must not wait for another index (no barriers). */
void md_threadpool_run(struct md_threadpool *tp, void (*fn)(void *arg, int ith, int nth), void *arg);

enum md_cpu_isa { MD_ISA_SCALAR = 0, MD_ISA_AVX2 = 1, MD_ISA_AVX512 = 2 };
enum md_cpu_isa md_cpu_isa_detect(void);
const char *md_cpu_isa_name(enum md_cpu_isa isa);

/* Y[t][o] = sum_i X[t][i] * W[o][i]   (X: n_tok x n_in f32, row stride n_in;
 * W: n_out rows of n_in elements of `wtype`, rows contiguous, i.e. a GGUF 2-D
 * weight with ne = {n_in, n_out}; Y: n_tok x n_out f32, row stride n_out).
 * Every type of quant.h is accepted; F32/F16/BF16/Q8_0 (and Q4_0/Q4_K/Q6_K)
 * have fast paths, the rest dequantize blocks on the fly.
 * `isa` forces a path (for tests and benchmarks); pass md_cpu_isa_detect().
 * tp may be NULL (single thread; GEMM-sized calls then allocate scratch
 * for the call). Unsupported wtype or n_in not a multiple of the block
 * size: Y is filled with NaN. MD_OK, or MD_ERR_NOMEM when a scratch buffer
 * could not grow (Y is then incomplete). */
int md_matmul(struct md_threadpool *tp, enum md_cpu_isa isa,
              const float *X, int64_t n_tok, int64_t n_in,
              const void *W, uint32_t wtype, int64_t n_out, float *Y);

/* md_matmul, except that decode-sized products (n_tok <= 8) with quantized
 * weights (Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q4_K/Q5_K/Q6_K) quantize each row of X
 * to 8 bits once (per 32 values, per 256 for the K quants) and use integer
 * dot products (cpu-qdot.h): llama.cpp's approach, faster, and off the
 * exact product by the activation rounding (measured in test_qdot). Other
 * types and shapes: exactly md_matmul. */
int md_matmul_qdot(struct md_threadpool *tp, enum md_cpu_isa isa,
                   const float *X, int64_t n_tok, int64_t n_in,
                   const void *W, uint32_t wtype, int64_t n_out, float *Y);

/* md_matmul on the calling thread with buffers the caller keeps, for the
 * many small products made inside a pool worker (attention per head): no
 * allocation once the buffers have grown. One scratch per thread. */
struct md_matmul_scratch;
struct md_matmul_scratch *md_matmul_scratch_new(void);   /* NULL: out of memory */
void md_matmul_scratch_free(struct md_matmul_scratch *s);
int md_matmul_st(struct md_matmul_scratch *s, enum md_cpu_isa isa,
                 const float *X, int64_t n_tok, int64_t n_in,
                 const void *W, uint32_t wtype, int64_t n_out, float *Y);

/* Dot product of two f32 vectors with 8 partial sums in a fixed order (so
 * the compiler may vectorize it and results do not depend on threading). */
float md_dot_f32(const float *a, const float *b, int64_t n);

/* md_dequantize_row (n a multiple of the block size), vectorized when isa
 * allows it; the results are bit-identical to md_dequantize_row's. */
void md_dequantize_row_isa(enum md_cpu_isa isa, uint32_t type, const void *src,
                           float *dst, int64_t n);

#endif
