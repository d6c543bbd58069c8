/* CPU compute kernels: the thread pool, run-time ISA selection and the
 * matmul driver with its portable C path. The AVX2 and AVX-512 kernels live
 * in cpu-matmul-avx2.c / cpu-matmul-avx512.c (function target attributes,
 * so the library builds without -march flags).
 *
 * Thread pool: workers wait for a generation counter to change. They spin
 * on it (with a pause hint) for MD_TP_SPIN_NS after their last job, so the
 * back-to-back dispatches of a decode step cost well under a microsecond,
 * then sleep on a condition variable; md_threadpool_run() only takes the
 * mutex when some worker is asleep. The indices ith = 1..nth-1 are claimed
 * from an atomic counter by whichever thread comes first, the caller
 * included once it has run ith = 0: when a worker has been preempted (the
 * machine is shared), the caller runs its share instead of waiting a whole
 * scheduler time slice for it. So fn must not wait for another ith of the
 * same run (no barriers inside fn).
 *
 * Scratch: every pool slot (one per ith) owns 64-byte aligned buffers that
 * md_matmul grows on demand and keeps for the next call, so steady-state
 * decode and prefill allocate nothing: scratch[0] of slot 0 holds the
 * packed X the caller prepares before dispatch, scratch[1] of slot i the W
 * panel / dequantized row of whoever runs index i. A NULL pool uses
 * buffers allocated and freed inside the call (only when needed: n_tok > 1
 * or a type without a GEMV kernel).
 *
 * Matmul: n_tok <= MD_GEMV_TOK_LIMIT runs GEMV kernels (one pass over W per
 * 8 tokens, X token-interleaved so that the tokens' rows do not alias in
 * L1); larger n_tok runs a packed GEMM: X is packed once in tiles of mr
 * tokens, then for each panel of nr output rows and each block of
 * MD_GEMM_KC inputs the panel is converted to f32 in [k][nr] layout once
 * and multiplied with the item's tokens in tiles of mr x nr. Work items
 * (row chunks for GEMV; panel groups x token ranges for GEMM) are taken from
 * an atomic counter, which keeps both cores busy when one of them is slowed
 * by another process. Types without kernels of their own are dequantized
 * row by row (vectorized, bit-identical to md_dequantize_row). */
#include "cpu-kernels.h"
#include "mustdrop.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu-matmul-impl.h"
#include "cpu-qdot.h"
#include "quant.h"

#if MD_HAVE_X86
#include <cpuid.h>
#include <immintrin.h>
#endif

/* ======================================================================== */
/* Scratch buffers                                                          */
/* ======================================================================== */

struct md_scratch {
    void *buf;
    size_t cap;
};

/* A 64-byte aligned buffer of at least `bytes`; the contents are not kept
 * when it grows. NULL when memory is exhausted (the matmul then reports
 * MD_ERR_NOMEM: the library neither prints nor aborts). */
static void *scratch_get(struct md_scratch *s, size_t bytes)
{
    if (bytes <= s->cap)
        return s->buf;
    size_t cap = (bytes + 63) & ~(size_t)63;
    if (cap < 4096)
        cap = 4096;
    void *p = aligned_alloc(64, cap);
    if (!p)
        return NULL;
    free(s->buf);
    s->buf = p;
    s->cap = cap;
    return p;
}

/* ======================================================================== */
/* Thread pool                                                              */
/* ======================================================================== */

#define MD_TP_SPIN_NS 2000000L   /* idle spin before sleeping: 2 ms */

/* Per-ith state. scratch[0]: buffers the caller of md_matmul fills before
 * dispatching (slot 0 only); scratch[1]: the buffers of whoever runs ith. */
struct md_tp_slot {
    _Alignas(64) struct md_scratch scratch[2];
    struct md_threadpool *tp;
};

struct md_threadpool {
    int n_threads;
    pthread_t *threads;
    struct md_tp_slot *slots;          /* n_threads, one per ith */

    void (*fn)(void *arg, int ith, int nth);
    void *arg;

    _Alignas(64) atomic_uint gen;      /* bumped once per run (and at stop) */
    _Alignas(64) atomic_int next_ith;  /* next unclaimed ith of this run */
    _Alignas(64) atomic_int n_done;    /* ith >= 1 finished in this run */
    _Alignas(64) atomic_int n_sleeping;
    atomic_int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static inline void cpu_relax(void)
{
#if MD_HAVE_X86
    _mm_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Waits until tp->gen differs from `seen` (or stop); returns the new gen. */
static unsigned tp_wait(struct md_threadpool *tp, unsigned seen)
{
    unsigned g;
    int64_t t0 = 0;
    for (unsigned spins = 1;; spins++) {
        g = atomic_load_explicit(&tp->gen, memory_order_acquire);
        if (g != seen)
            return g;
        cpu_relax();
        if ((spins & 255) == 0) {
            int64_t t = now_ns();
            if (!t0)
                t0 = t;
            else if (t - t0 > MD_TP_SPIN_NS)
                break;
        }
    }
    pthread_mutex_lock(&tp->mu);
    atomic_fetch_add(&tp->n_sleeping, 1);   /* seq_cst: pairs with run() */
    while ((g = atomic_load(&tp->gen)) == seen)
        pthread_cond_wait(&tp->cv, &tp->mu);
    atomic_fetch_sub(&tp->n_sleeping, 1);
    pthread_mutex_unlock(&tp->mu);
    return g;
}

/* Claims and runs indices of the current run until none is left. */
static void tp_claim_and_run(struct md_threadpool *tp)
{
    const int n = tp->n_threads;
    for (;;) {
        const int i = atomic_fetch_add_explicit(&tp->next_ith, 1, memory_order_acq_rel);
        if (i >= n)
            return;
        tp->fn(tp->arg, i, n);
        atomic_fetch_add_explicit(&tp->n_done, 1, memory_order_release);
    }
}

static void *tp_worker(void *p)
{
    struct md_threadpool *tp = ((struct md_tp_slot *)p)->tp;
    unsigned seen = 0;
    for (;;) {
        seen = tp_wait(tp, seen);
        if (atomic_load_explicit(&tp->stop, memory_order_acquire))
            break;
        tp_claim_and_run(tp);
    }
    return NULL;
}

struct md_threadpool *md_threadpool_new(int n_threads)
{
    if (n_threads < 1)
        n_threads = 1;
    if (n_threads > 1024)
        n_threads = 1024;
    struct md_threadpool *tp = calloc(1, sizeof *tp);
    if (!tp)
        return NULL;
    tp->slots = aligned_alloc(64, sizeof(struct md_tp_slot) * (size_t)n_threads);
    tp->threads = calloc((size_t)n_threads, sizeof(pthread_t));
    if (!tp->slots || !tp->threads) {
        free(tp->slots);
        free(tp->threads);
        free(tp);
        return NULL;
    }
    memset(tp->slots, 0, sizeof(struct md_tp_slot) * (size_t)n_threads);
    atomic_init(&tp->gen, 0);
    atomic_init(&tp->next_ith, n_threads);
    atomic_init(&tp->n_done, 0);
    atomic_init(&tp->n_sleeping, 0);
    atomic_init(&tp->stop, 0);
    pthread_mutex_init(&tp->mu, NULL);
    pthread_cond_init(&tp->cv, NULL);
    for (int i = 0; i < n_threads; i++)
        tp->slots[i].tp = tp;
    /* n_threads is read by the workers: fix it before starting them */
    int started = 1;
    tp->n_threads = n_threads;
    for (int i = 1; i < n_threads; i++) {
        if (pthread_create(&tp->threads[i], NULL, tp_worker, &tp->slots[i]) != 0)
            break;
        started++;
    }
    if (started < n_threads) {
        /* could not start them all: stop those that run, report failure */
        atomic_store(&tp->stop, 1);
        pthread_mutex_lock(&tp->mu);
        atomic_fetch_add(&tp->gen, 1);
        pthread_cond_broadcast(&tp->cv);
        pthread_mutex_unlock(&tp->mu);
        for (int i = 1; i < started; i++)
            pthread_join(tp->threads[i], NULL);
        pthread_cond_destroy(&tp->cv);
        pthread_mutex_destroy(&tp->mu);
        free(tp->threads);
        free(tp->slots);
        free(tp);
        return NULL;
    }
    return tp;
}

void md_threadpool_free(struct md_threadpool *tp)
{
    if (!tp)
        return;
    atomic_store(&tp->stop, 1);
    pthread_mutex_lock(&tp->mu);
    atomic_fetch_add(&tp->gen, 1);
    pthread_cond_broadcast(&tp->cv);
    pthread_mutex_unlock(&tp->mu);
    for (int i = 1; i < tp->n_threads; i++)
        pthread_join(tp->threads[i], NULL);
    for (int i = 0; i < tp->n_threads; i++) {
        free(tp->slots[i].scratch[0].buf);
        free(tp->slots[i].scratch[1].buf);
    }
    pthread_cond_destroy(&tp->cv);
    pthread_mutex_destroy(&tp->mu);
    free(tp->threads);
    free(tp->slots);
    free(tp);
}

int md_threadpool_n_threads(const struct md_threadpool *tp)
{
    return tp ? tp->n_threads : 1;
}

void *md_threadpool_caller_scratch(struct md_threadpool *tp, size_t bytes)
{
    return tp ? scratch_get(&tp->slots[0].scratch[0], bytes) : NULL;
}

void md_threadpool_run(struct md_threadpool *tp, void (*fn)(void *arg, int ith, int nth), void *arg)
{
    if (!tp || tp->n_threads == 1) {
        fn(arg, 0, 1);
        return;
    }
    const int n = tp->n_threads;
    tp->fn = fn;
    tp->arg = arg;
    atomic_store_explicit(&tp->n_done, 0, memory_order_relaxed);
    atomic_store_explicit(&tp->next_ith, 1, memory_order_release);
    atomic_fetch_add(&tp->gen, 1);                 /* seq_cst */
    if (atomic_load(&tp->n_sleeping) > 0) {
        pthread_mutex_lock(&tp->mu);
        pthread_cond_broadcast(&tp->cv);
        pthread_mutex_unlock(&tp->mu);
    }
    fn(arg, 0, n);
    tp_claim_and_run(tp);     /* indices no worker has picked up yet */
    for (unsigned spins = 1; atomic_load_explicit(&tp->n_done, memory_order_acquire) != n - 1; spins++) {
        cpu_relax();
        if ((spins & 1023) == 0)
            sched_yield();    /* the worker running the last index was preempted */
    }
}

/* ======================================================================== */
/* ISA detection                                                            */
/* ======================================================================== */

#if MD_HAVE_X86
/* F16C (CPUID.1:ECX bit 29); clang's __builtin_cpu_supports lacks "f16c". */
static bool cpu_has_f16c(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return false;
    return (c >> 29) & 1u;
}
#endif

/* The best ISA the CPU/OS allow, from libgcc's CPU model alone (filled
 * once at program start; no CPUID instruction, which traps to the
 * hypervisor in a VM: md_matmul calls this on every call to clamp `isa`).
 * __builtin_cpu_supports also checks that the OS saves the AVX / AVX-512
 * register state. */
static enum md_cpu_isa isa_allowed(void)
{
#if MD_HAVE_X86 && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        return MD_ISA_AVX512;
    if (avx2)
        return MD_ISA_AVX2;
#endif
    return MD_ISA_SCALAR;
}

/* Queried on every call (nothing is cached): isa_allowed() plus the F16C
 * check, which needs CPUID (a few microseconds in a VM), so call it once. */
enum md_cpu_isa md_cpu_isa_detect(void)
{
    enum md_cpu_isa isa = isa_allowed();
#if MD_HAVE_X86 && (defined(__GNUC__) || defined(__clang__))
    if (isa != MD_ISA_SCALAR && !cpu_has_f16c())
        isa = MD_ISA_SCALAR;
#endif
    return isa;
}

const char *md_cpu_isa_name(enum md_cpu_isa isa)
{
    switch (isa) {
    case MD_ISA_SCALAR: return "scalar";
    case MD_ISA_AVX2: return "avx2";
    case MD_ISA_AVX512: return "avx512";
    }
    return "?";
}

/* ======================================================================== */
/* Portable C kernels                                                       */
/* ======================================================================== */

#define SC_MR 4
#define SC_NR 8

static void pack_scalar(uint32_t wtype, const uint8_t *W, size_t row_bytes, int nrows,
                        int64_t k0, int64_t klen, float *tmp, float *dst)
{
    const int64_t be = md_type_block_elems(wtype), bb = md_type_block_bytes(wtype);
    for (int r = 0; r < nrows; r++)
        md_dequantize_row(wtype, W + (size_t)r * row_bytes + (size_t)(k0 / be * bb),
                          tmp + (size_t)r * (size_t)klen, klen);
    for (int64_t k = 0; k < klen; k++) {
        float *d = dst + k * SC_NR;
        int r = 0;
        for (; r < nrows; r++)
            d[r] = tmp[(size_t)r * (size_t)klen + (size_t)k];
        for (; r < SC_NR; r++)
            d[r] = 0.0f;
    }
}

static void kernel_scalar(int m, int64_t klen, const float *x, const float *wp,
                          float *y, int64_t ldy, int nvalid, int accum)
{
    float c[SC_MR][SC_NR];
    memset(c, 0, sizeof c);
    for (int64_t k = 0; k < klen; k++) {
        const float *b = wp + k * SC_NR;
        for (int r = 0; r < m; r++) {
            const float a = x[k * SC_MR + r];
            for (int j = 0; j < SC_NR; j++)
                c[r][j] += a * b[j];
        }
    }
    for (int r = 0; r < m; r++)
        for (int j = 0; j < nvalid; j++)
            y[r * ldy + j] = accum ? y[r * ldy + j] + c[r][j] : c[r][j];
}

static const struct md_gemm_isa md_gemm_isa_scalar = {
    .mr = SC_MR, .nr = SC_NR, .pack = pack_scalar, .kernel = kernel_scalar,
};

/* X token-interleaved in chunks of 8 (see md_gemv_fn). */
static void dotrows_scalar(const float *w, const float *X, int n_tok,
                           int64_t n, float *y, int64_t ldy)
{
    for (int t = 0; t < n_tok; t++) {
        float s[8] = { 0 };
        int64_t i = 0;
        for (; i + 8 <= n; i += 8) {
            const float *x = X + i * n_tok + t * 8;
            for (int j = 0; j < 8; j++)
                s[j] += w[i + j] * x[j];
        }
        for (int j = 0; i + j < n; j++)
            s[j] += w[i + j] * X[i * n_tok + t * 8 + j];
        y[t * ldy] = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
    }
}

/* ======================================================================== */
/* Matmul driver                                                            */
/* ======================================================================== */

/* K block of the GEMM (a multiple of 32; at least the type's block). */
#ifndef MD_GEMM_KC
#define MD_GEMM_KC 256
#endif
/* Bytes of X one GEMM work item multiplies per K block (L2 budget). */
#ifndef MD_GEMM_X_BYTES
#define MD_GEMM_X_BYTES (384 * 1024)
#endif
/* Largest n_tok that runs GEMV kernels (in passes of MD_GEMV_MAX_TOK tokens)
 * instead of the packed GEMM, for types with a GEMV kernel. */
#ifndef MD_GEMV_TOK_LIMIT
#define MD_GEMV_TOK_LIMIT 16
#endif
/* GEMV rows per work item: about 8 items per thread, 32..512 rows (long
 * runs keep the prefetchers streaming; 256 rows measured up to 30% faster
 * than 64 on 2 threads, one item per thread loses the dynamic balancing). */
static int64_t gemv_chunk(int64_t n_out, int nth)
{
    int64_t c = (n_out / (8 * (int64_t)nth) + 15) / 16 * 16;
    return c < 32 ? 32 : c > 512 ? 512 : c;
}

struct mm_job {
    enum md_cpu_isa isa;
    const float *X;
    int64_t n_tok, n_in, n_out;
    const uint8_t *W;
    uint32_t wtype;
    size_t row_bytes;
    float *Y;
    struct md_scratch *scratch;   /* scratch[1] of ith 0; ith i at + i * stride */
    size_t scratch_stride;        /* bytes between threads' md_scratch */
    const float *xp;              /* GEMV: token-interleaved X, groups of 8;
                                     GEMM: X packed in tiles of mr tokens */
    md_qdot_fn qdot;              /* GEMV with integer dots: X quantized in xq */
    const void *xq;
    size_t xq_row_bytes;

    int64_t chunk;                /* GEMV: rows per work item */
    int64_t kc;                   /* GEMM: K block (multiple of the block size) */
    /* GEMM */
    const struct md_gemm_isa *g;
    int64_t n_panels, panels_per_item, tok_per_item, n_tchunks;
    /* work items */
    int64_t n_items;
    atomic_llong next;
    atomic_int out_of_memory;     /* a thread's scratch could not grow */
};

static struct md_scratch *job_scratch(struct mm_job *j, int ith)
{
    return (struct md_scratch *)((char *)j->scratch + (size_t)ith * j->scratch_stride);
}

static md_gemv_fn gemv_for(enum md_cpu_isa isa)
{
#if MD_HAVE_X86
    if (isa == MD_ISA_AVX512) return md_gemv_avx512;
    if (isa == MD_ISA_AVX2) return md_gemv_avx2;
#else
    (void)isa;
#endif
    return NULL;
}

static md_dotrows_fn dotrows_for(enum md_cpu_isa isa)
{
#if MD_HAVE_X86
    if (isa == MD_ISA_AVX512) return md_dotrows_avx512;
    if (isa == MD_ISA_AVX2) return md_dotrows_avx2;
#else
    (void)isa;
#endif
    return dotrows_scalar;
}

static const struct md_gemm_isa *gemm_for(enum md_cpu_isa isa)
{
#if MD_HAVE_X86
    if (isa == MD_ISA_AVX512) return &md_gemm_isa_avx512;
    if (isa == MD_ISA_AVX2) return &md_gemm_isa_avx2;
#else
    (void)isa;
#endif
    return &md_gemm_isa_scalar;
}

/* The integer-dot GEMV of this ISA for wtype; NULL when there is none
 * (F32/F16/BF16: nothing to quantize). */
static md_qdot_fn qdot_for(enum md_cpu_isa isa, uint32_t wtype)
{
    if (md_xq_row_bytes(wtype, MD_QK_K) == 0)
        return NULL;
#if MD_HAVE_X86
    if (isa >= MD_ISA_AVX2 && md_qdot_avx2_has(wtype))
        return md_qdot_avx2;
#endif
    (void)isa;
    return md_qdot_portable;
}

/* Whether fn reads activation rows of md_xq_avx2_row's layout rather than
 * md_xq_quantize_row's. */
static bool qdot_avx2_rows(md_qdot_fn fn)
{
#if MD_HAVE_X86
    return fn == md_qdot_avx2;
#else
    (void)fn;
    return false;
#endif
}

static bool gemv_has_kernel(enum md_cpu_isa isa, uint32_t wtype)
{
    if (isa == MD_ISA_SCALAR)
        return false;
    return wtype == MD_TYPE_F32 || wtype == MD_TYPE_F16 || wtype == MD_TYPE_BF16 ||
           wtype == MD_TYPE_Q8_0;
}

void md_dequantize_row_isa(enum md_cpu_isa isa, uint32_t type, const void *src, float *dst, int64_t n)
{
#if MD_HAVE_X86
    if (isa >= MD_ISA_AVX2 && isa_allowed() >= MD_ISA_AVX2 &&
        md_type_row_bytes(type, n) >= 0 && md_dequant_row_avx2(type, src, dst, n))
        return;
#else
    (void)isa;
#endif
    md_dequantize_row(type, src, dst, n);
}

/* md_dequantize_row_isa for an ISA already checked against the CPU. */
static void dequant_row(enum md_cpu_isa isa, uint32_t type, const uint8_t *src, float *dst, int64_t n)
{
#if MD_HAVE_X86
    if (isa >= MD_ISA_AVX2 && md_dequant_row_avx2(type, src, dst, n))
        return;
#else
    (void)isa;
#endif
    md_dequantize_row(type, src, dst, n);
}

/* Vector width of the token-interleaved X of the GEMV kernels. */
static int gemv_vw(enum md_cpu_isa isa)
{
    return isa == MD_ISA_AVX512 ? 16 : 8;
}

/* X (n_tok rows of n_in) in groups of MD_GEMV_MAX_TOK tokens, each group
 * token-interleaved in chunks of V (zero-padded): the layout of md_gemv_fn.
 * Group g starts at xp + g * MD_GEMV_MAX_TOK * round_up(n_in, V). */
static void gemv_pack_x(const float *X, int64_t n_tok, int64_t n_in, int V, float *xp)
{
    const int64_t n_pad = (n_in + V - 1) / V * V;
    for (int64_t t0 = 0; t0 < n_tok; t0 += MD_GEMV_MAX_TOK) {
        const int T = (int)(n_tok - t0 < MD_GEMV_MAX_TOK ? n_tok - t0 : MD_GEMV_MAX_TOK);
        float *g = xp + t0 * n_pad;
        for (int64_t k = 0; k < n_pad; k += V) {
            const int64_t n = n_in - k < V ? n_in - k : V;
            for (int t = 0; t < T; t++) {
                float *d = g + k * T + t * V;
                memcpy(d, X + (t0 + t) * n_in + k, sizeof(float) * (size_t)n);
                for (int64_t i = n; i < V; i++)
                    d[i] = 0.0f;
            }
        }
    }
}

/* GEMV work item: rows [r0, r1), all tokens (groups of MD_GEMV_MAX_TOK). */
static void gemv_rows(struct mm_job *j, int ith, int64_t r0, int64_t r1)
{
    const uint8_t *W = j->W + (size_t)r0 * j->row_bytes;
    if (j->qdot) {
        j->qdot(j->wtype, j->xq, (int)j->n_tok, j->xq_row_bytes, j->n_in, W, j->row_bytes,
                r1 - r0, j->Y + r0, j->n_out);
        return;
    }
    const int64_t n_pad = (j->n_in + gemv_vw(j->isa) - 1) / gemv_vw(j->isa) * gemv_vw(j->isa);
    md_gemv_fn fn = gemv_for(j->isa);
    for (int64_t t = 0; t < j->n_tok; t += MD_GEMV_MAX_TOK) {
        const int nt = (int)(j->n_tok - t < MD_GEMV_MAX_TOK ? j->n_tok - t : MD_GEMV_MAX_TOK);
        const float *xg = j->xp + t * n_pad;
        if (fn && fn(j->wtype, xg, nt, j->n_in, W, j->row_bytes, r1 - r0,
                     j->Y + t * j->n_out + r0, j->n_out))
            continue;
        /* no kernel for this type/ISA: dequantize each row, dot it with
         * the tokens of this group */
        float *row = scratch_get(job_scratch(j, ith), (size_t)j->n_in * sizeof(float));
        if (!row) {
            atomic_store(&j->out_of_memory, 1);
            return;
        }
        md_dotrows_fn dot = dotrows_for(j->isa);
        for (int64_t r = r0; r < r1; r++) {
            dequant_row(j->isa, j->wtype, j->W + (size_t)r * j->row_bytes, row, j->n_in);
            dot(row, xg, nt, j->n_in, j->Y + t * j->n_out + r, j->n_out);
        }
    }
}

static void gemv_task(void *arg, int ith, int nth)
{
    struct mm_job *j = arg;
    (void)nth;
    for (;;) {
        const int64_t it = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (it >= j->n_items)
            break;
        const int64_t r0 = it * j->chunk;
        const int64_t r1 = r0 + j->chunk < j->n_out ? r0 + j->chunk : j->n_out;
        gemv_rows(j, ith, r0, r1);
    }
}

/* GEMM, first pass: X in tiles of mr tokens (layout of md_gemm_isa), the
 * tiles split between threads. */
static void gemm_pack_x_task(void *arg, int ith, int nth)
{
    struct mm_job *j = arg;
    const int64_t mr = j->g->mr, n_in = j->n_in;
    const int64_t n_tiles = (j->n_tok + mr - 1) / mr;
    float *xp = (float *)j->xp;
    for (int64_t i = n_tiles * ith / nth; i < n_tiles * (ith + 1) / nth; i++) {
        float *d = xp + i * n_in * mr;
        for (int64_t r = 0; r < mr; r++) {
            const int64_t t = i * mr + r;
            if (t < j->n_tok) {
                const float *x = j->X + t * n_in;
                for (int64_t k = 0; k < n_in; k++)
                    d[k * mr + r] = x[k];
            } else {
                for (int64_t k = 0; k < n_in; k++)
                    d[k * mr + r] = 0.0f;
            }
        }
    }
}

static void gemm_task(void *arg, int ith, int nth)
{
    struct mm_job *j = arg;
    const struct md_gemm_isa *g = j->g;
    const int64_t nr = g->nr, mr = g->mr;
    const int64_t kc_max = j->kc;
    (void)nth;
    float *wp = NULL, *tmp = NULL;
    for (;;) {
        const int64_t it = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (it >= j->n_items)
            break;
        if (!wp) {
            /* panel (64-byte aligned) then the dequantization rows */
            const size_t pbytes = ((size_t)(kc_max * nr) * sizeof(float) + 63) & ~(size_t)63;
            char *s = scratch_get(job_scratch(j, ith), 2 * pbytes);
            if (!s) {
                atomic_store(&j->out_of_memory, 1);
                return;
            }
            wp = (float *)s;
            tmp = (float *)(s + pbytes);
        }
        const int64_t p0 = (it / j->n_tchunks) * j->panels_per_item;
        const int64_t p1 = p0 + j->panels_per_item < j->n_panels ? p0 + j->panels_per_item : j->n_panels;
        const int64_t t0 = (it % j->n_tchunks) * j->tok_per_item;   /* multiple of mr */
        const int64_t t1 = t0 + j->tok_per_item < j->n_tok ? t0 + j->tok_per_item : j->n_tok;
        for (int64_t p = p0; p < p1; p++) {
            const int64_t o0 = p * nr;
            const int nrows = (int)(j->n_out - o0 < nr ? j->n_out - o0 : nr);
            for (int64_t k0 = 0; k0 < j->n_in; k0 += kc_max) {
                const int64_t klen = j->n_in - k0 < kc_max ? j->n_in - k0 : kc_max;
                g->pack(j->wtype, j->W + (size_t)o0 * j->row_bytes, j->row_bytes, nrows,
                        k0, klen, tmp, wp);
                for (int64_t t = t0; t < t1; t += mr) {
                    const int m = (int)(t1 - t < mr ? t1 - t : mr);
                    g->kernel(m, klen, j->xp + t * j->n_in + k0 * mr, wp,
                              j->Y + t * j->n_out + o0, j->n_out, nrows, k0 > 0);
                }
            }
        }
    }
}

float md_dot_f32(const float *a, const float *b, int64_t n)
{
    float acc[8] = { 0 };
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            acc[j] += a[i + j] * b[i + j];
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

struct md_matmul_scratch {
    struct md_scratch buf[2];   /* [0]: packed X; [1]: the panel of the only thread */
};

struct md_matmul_scratch *md_matmul_scratch_new(void)
{
    return calloc(1, sizeof(struct md_matmul_scratch));
}

void md_matmul_scratch_free(struct md_matmul_scratch *s)
{
    if (!s)
        return;
    free(s->buf[0].buf);
    free(s->buf[1].buf);
    free(s);
}

static int matmul_run(struct md_threadpool *tp, struct md_scratch *local, enum md_cpu_isa isa,
                      bool qdot, const float *X, int64_t n_tok, int64_t n_in,
                      const void *W, uint32_t wtype, int64_t n_out, float *Y);

/* One call with scratch of its own. */
static int matmul_once(struct md_threadpool *tp, enum md_cpu_isa isa, bool qdot,
                       const float *X, int64_t n_tok, int64_t n_in,
                       const void *W, uint32_t wtype, int64_t n_out, float *Y)
{
    struct md_scratch local[2] = { { NULL, 0 }, { NULL, 0 } };
    int rc = matmul_run(tp, local, isa, qdot, X, n_tok, n_in, W, wtype, n_out, Y);
    free(local[0].buf);
    free(local[1].buf);
    return rc;
}

int md_matmul(struct md_threadpool *tp, enum md_cpu_isa isa,
              const float *X, int64_t n_tok, int64_t n_in,
              const void *W, uint32_t wtype, int64_t n_out, float *Y)
{
    return matmul_once(tp, isa, false, X, n_tok, n_in, W, wtype, n_out, Y);
}

int md_matmul_qdot(struct md_threadpool *tp, enum md_cpu_isa isa,
                   const float *X, int64_t n_tok, int64_t n_in,
                   const void *W, uint32_t wtype, int64_t n_out, float *Y)
{
    return matmul_once(tp, isa, true, X, n_tok, n_in, W, wtype, n_out, Y);
}

int md_matmul_st(struct md_matmul_scratch *s, enum md_cpu_isa isa,
                 const float *X, int64_t n_tok, int64_t n_in,
                 const void *W, uint32_t wtype, int64_t n_out, float *Y)
{
    return matmul_run(NULL, s->buf, isa, false, X, n_tok, n_in, W, wtype, n_out, Y);
}

/* local: the two scratch buffers used when tp is NULL. */
static int matmul_run(struct md_threadpool *tp, struct md_scratch *local, enum md_cpu_isa isa,
                      bool qdot, const float *X, int64_t n_tok, int64_t n_in,
                      const void *W, uint32_t wtype, int64_t n_out, float *Y)
{
    if (n_tok <= 0 || n_out <= 0)
        return MD_OK;
    const int64_t row_bytes = md_type_row_bytes(wtype, n_in);
    if (row_bytes < 0 || n_in < 0) {
        /* unsupported type or n_in not a multiple of the block: a caller bug */
        for (int64_t i = 0; i < n_tok * n_out; i++)
            Y[i] = NAN;
        return MD_OK;
    }
    if (n_in == 0) {
        memset(Y, 0, sizeof(float) * (size_t)(n_tok * n_out));
        return MD_OK;
    }
    const enum md_cpu_isa have = isa_allowed();
    if (isa > have || isa < MD_ISA_SCALAR)
        isa = have;

    struct mm_job j;
    memset(&j, 0, sizeof j);
    j.isa = isa;
    j.X = X;
    j.n_tok = n_tok;
    j.n_in = n_in;
    j.n_out = n_out;
    j.W = W;
    j.wtype = wtype;
    j.row_bytes = (size_t)row_bytes;
    j.Y = Y;
    struct md_scratch *shared;
    if (tp) {
        shared = &tp->slots[0].scratch[0];
        j.scratch = &tp->slots[0].scratch[1];
        j.scratch_stride = sizeof(struct md_tp_slot);
    } else {
        shared = &local[0];
        j.scratch = &local[1];
        j.scratch_stride = 0;
    }
    atomic_init(&j.next, 0);
    atomic_init(&j.out_of_memory, 0);
    const int nth = md_threadpool_n_threads(tp);

    if (n_tok <= MD_GEMV_MAX_TOK || (n_tok <= MD_GEMV_TOK_LIMIT && gemv_has_kernel(isa, wtype))) {
        j.chunk = gemv_chunk(n_out, nth);
        j.n_items = (n_out + j.chunk - 1) / j.chunk;
        j.qdot = qdot && n_tok <= MD_GEMV_MAX_TOK ? qdot_for(isa, wtype) : NULL;
        if (j.qdot) {
            /* the AVX2 kernels read rows of their own layout: quantized
             * into the buffer's tail, converted into place */
            const bool conv = qdot_avx2_rows(j.qdot);
            const size_t qb = md_xq_row_bytes(wtype, n_in);
            j.xq_row_bytes = conv ? md_xq_avx2_row_bytes(wtype, n_in) : qb;
            char *xq = scratch_get(shared, j.xq_row_bytes * (size_t)n_tok + (conv ? qb : 0));
            if (!xq)
                return MD_ERR_NOMEM;
            char *q = xq + j.xq_row_bytes * (size_t)n_tok;
            for (int64_t t = 0; t < n_tok; t++) {
                char *row = xq + (size_t)t * j.xq_row_bytes;
                md_xq_quantize_row(wtype, X + t * n_in, n_in, conv ? q : row);
                if (conv)
                    md_xq_avx2_row(wtype, q, n_in, row);
            }
            j.xq = xq;
        } else if (n_tok == 1) {
            j.xp = X;   /* a single token is its own interleaving */
        } else {
            const int V = gemv_vw(isa);
            const int64_t n_pad = (n_in + V - 1) / V * V;
            float *xp = scratch_get(shared, sizeof(float) * (size_t)(n_tok * n_pad));
            if (!xp)
                return MD_ERR_NOMEM;
            gemv_pack_x(X, n_tok, n_in, V, xp);
            j.xp = xp;
        }
        if (nth == 1 || j.n_items == 1)
            gemv_task(&j, 0, 1);
        else
            md_threadpool_run(tp, gemv_task, &j);
    } else {
        const struct md_gemm_isa *g = gemm_for(isa);
        j.g = g;
        j.n_panels = (n_out + g->nr - 1) / g->nr;
        /* About 4 items per thread or more; split tokens when W has fewer
         * panels than that. */
        const int64_t want = 4 * (int64_t)nth;
        j.panels_per_item = j.n_panels / (2 * want);
        if (j.panels_per_item < 1) j.panels_per_item = 1;
        if (j.panels_per_item > 8) j.panels_per_item = 8;
        const int64_t n_pitems = (j.n_panels + j.panels_per_item - 1) / j.panels_per_item;
        j.n_tchunks = 1;
        if (n_pitems < want) {
            j.n_tchunks = (want + n_pitems - 1) / n_pitems;
            const int64_t max_chunks = (n_tok + g->mr - 1) / g->mr;
            if (j.n_tchunks > max_chunks) j.n_tchunks = max_chunks;
        }
        j.tok_per_item = (n_tok + j.n_tchunks - 1) / j.n_tchunks;
        /* at most MD_GEMM_X_BYTES of X per K block in an item, so that the
         * X block stays in L2 while the item's panels stream over it (one
         * 2048-token item measured at 40% of the 512-token speed) */
        int64_t kc = md_type_block_elems(wtype) > MD_GEMM_KC ? md_type_block_elems(wtype) : MD_GEMM_KC;
        if (kc > n_in) kc = n_in;
        j.kc = kc;
        int64_t mc = MD_GEMM_X_BYTES / (kc * (int64_t)sizeof(float)) / g->mr * g->mr;
        if (mc < g->mr) mc = g->mr;
        if (mc > 4096) mc = 4096;
        if (j.tok_per_item > mc) j.tok_per_item = mc;
        j.tok_per_item = (j.tok_per_item + g->mr - 1) / g->mr * g->mr;
        j.n_tchunks = (n_tok + j.tok_per_item - 1) / j.tok_per_item;
        j.n_items = n_pitems * j.n_tchunks;
        const int64_t n_tiles = (n_tok + g->mr - 1) / g->mr;
        j.xp = scratch_get(shared, sizeof(float) * (size_t)(n_tiles * g->mr * n_in));
        if (!j.xp)
            return MD_ERR_NOMEM;
        if (nth == 1 || j.n_items == 1) {
            gemm_pack_x_task(&j, 0, 1);
            gemm_task(&j, 0, 1);
        } else {
            md_threadpool_run(tp, gemm_pack_x_task, &j);
            md_threadpool_run(tp, gemm_task, &j);
        }
    }
    return atomic_load(&j.out_of_memory) ? MD_ERR_NOMEM : MD_OK;
}
