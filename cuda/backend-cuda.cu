// The CUDA backend: the md_backend vtable (core/llm/backend.h) on one device.
//
// Design (docs/cuda.md has the long version):
//  * One instance = one device index, one non-blocking stream, one cuBLAS
//    handle, its own scratch. No global mutable state: everything lives in
//    struct cuda_be. The module links cudart only; each instance opens
//    cuBLAS (blas.h), so that asking for a device does not map it.
//  * Tensors are device memory (cudaMalloc). Weights are uploaded once, as
//    they are in the file (F32/F16/BF16 as is, quantized types kept
//    quantized); every kernel that reads weights dequantizes on the fly.
//  * matmul: n_tok <= 4 (decode) -> warp-per-output-row GEMV kernels that
//    dequantize F16/BF16/Q8_0/Q4_K (vectorized) and any other type (generic);
//    n_tok > 4 (prefill) -> cuBLAS GemmEx with F32 accumulation: F16/BF16
//    weights directly (activations converted to F16/BF16 on device),
//    quantized weights dequantized to F16 in scratch first, F32 weights SGEMM.
//    MD_CUDA_PREFILL_F32=1 (read at instance creation) makes every prefill
//    GEMM an F32 SGEMM on dequantized weights: a precision reference, slow.
//  * attention: n_q <= 4 -> split-KV decode kernel + combine kernel;
//    otherwise a tiled flash-attention kernel (online softmax, causal by
//    index or not, GQA, LSE).
//  * Scratch (device) is allocated at first use and grown; growing frees the
//    old buffer (cudaFree synchronizes), so it happens a handful of times
//    per context, never per token once the largest shapes were seen.
//    Host->device uploads of small buffers (token ids, positions, keep_rows
//    index lists) go through a pinned staging arena that is recycled at
//    every synchronization point (tensor_get), so the decode path does no
//    cudaMalloc and no host synchronization besides tensor_get.
//  * Errors: a failing CUDA/cuBLAS call makes the op return MD_ERR_BACKEND;
//    the message (with the CUDA error string) is kept in the instance
//    (md_backend_cuda_last_error) and printed to stderr. Invalid token ids
//    in get_rows cannot be reported synchronously: the kernel writes zeros,
//    raises a device flag, and the next tensor_get returns MD_ERR_INVALID.
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <cublas_v2.h>

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "cuda-backend.h"

// ---- instance -------------------------------------------------------------

#define STAGE_BYTES ((size_t)4 << 20)   // pinned staging arena
#define GEMV_MAX_TOK 4                   // matmul with <= this many rows: GEMV
#define ATTN_DECODE_MAX_Q 4              // attention with <= this many queries: split-KV
#define ATTN_MAX_D 256                   // head_dim supported by the attention kernels
#define FA_BQ 16                         // flash attention: queries per block (4 warps x 4)
#define FA_BK 32                         // flash attention: keys per tile
// split-KV: keys per split (block). Each of a block's 4 warps walks its keys
// one after another, so a block's time is its keys' latency chain, not their
// bytes: 256 keys made decode attention ~80 us per layer from 512 cached
// tokens on (a 7B step: 10.8 ms against 8.2 from an empty cache). Smaller
// splits run in parallel instead. MD_CUDA_DECODE_SPLIT=N overrides it (read
// at instance creation) to measure the choice; docs/cuda.md has the sweep.
#define DEC_CHUNK_DEFAULT 64

struct cuda_be {
    struct md_backend base;
    int device;
    cudaStream_t stream;
    struct blas_api api;    // cuBLAS, opened by this instance (blas.h)
    cublasHandle_t blas;
    void *scratch;          // device work space (conversions, dequantized weights, partials)
    size_t scratch_size;
    int32_t *d_idx;         // device copy of keep_rows index lists
    size_t idx_cap;         // in elements
    int *d_err;             // device-side error flag (bad token id)
    char *stage;            // pinned host staging arena
    size_t stage_used;
    bool prefill_f32;       // MD_CUDA_PREFILL_F32=1: prefill GEMMs in F32 (see cu_matmul)
    int dec_chunk;          // keys per split-KV block (DEC_CHUNK_DEFAULT, MD_CUDA_DECODE_SPLIT)
    bool attn_flash;        // MD_CUDA_ATTN=flash: prefill attention by the flash kernel only
    char last_err[512];
};

static cuda_be *cu(struct md_backend *be) { return (cuda_be *)be; }

static int set_err(cuda_be *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->last_err, sizeof c->last_err, fmt, ap);
    va_end(ap);
    fprintf(stderr, "mustdrop cuda: %s\n", c->last_err);
    return code;
}

static int cuda_fail(cuda_be *c, const char *what, cudaError_t e)
{
    return set_err(c, MD_ERR_BACKEND, "%s: %s (%s)", what, cudaGetErrorString(e),
                   cudaGetErrorName(e));
}

static int blas_fail(cuda_be *c, const char *what, cublasStatus_t s)
{
    return set_err(c, MD_ERR_BACKEND, "%s: %s (%d)", what, c->api.status_string(s), (int)s);
}

#define CU_TRY(c, what, call) do { cudaError_t e_ = (call); \
    if (e_ != cudaSuccess) return cuda_fail((c), (what), e_); } while (0)

// After a kernel launch: a launch error (bad configuration) or a sticky error
// from earlier asynchronous work.
static int launched(cuda_be *c, const char *what)
{
    cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? MD_OK : cuda_fail(c, what, e);
}

static int enter(cuda_be *c)
{
    CU_TRY(c, "cudaSetDevice", cudaSetDevice(c->device));
    return MD_OK;
}
#define ENTER(c) do { int rc_ = enter(c); if (rc_) return rc_; } while (0)

// Grow the device scratch to at least n bytes. cudaFree synchronizes the
// device, so work still queued on the old buffer finishes first.
static int scratch_get(cuda_be *c, size_t n, void **p)
{
    if (n > c->scratch_size) {
        size_t want = n + n / 4;
        want = (want + 0xfffff) & ~(size_t)0xfffff;
        if (c->scratch) {
            cudaError_t e = cudaFree(c->scratch);
            c->scratch = NULL;
            c->scratch_size = 0;
            if (e != cudaSuccess)
                return cuda_fail(c, "cudaFree(scratch)", e);
        }
        CU_TRY(c, "cudaMalloc(scratch)", cudaMalloc(&c->scratch, want));
        c->scratch_size = want;
    }
    *p = c->scratch;
    return MD_OK;
}

static size_t align256(size_t n) { return (n + 255) & ~(size_t)255; }

// Copy n host bytes into device memory at dst, asynchronously on the stream.
// Small copies are staged through the pinned arena (the caller's buffer may
// be reused at once, and no synchronization happens); large ones are copied
// and waited for.
static int upload(cuda_be *c, void *dst, const void *src, size_t n)
{
    if (n == 0)
        return MD_OK;
    if (c->stage && n <= STAGE_BYTES / 4) {
        if (c->stage_used + n > STAGE_BYTES) {
            CU_TRY(c, "cudaStreamSynchronize", cudaStreamSynchronize(c->stream));
            c->stage_used = 0;
        }
        char *s = c->stage + c->stage_used;
        memcpy(s, src, n);
        c->stage_used += align256(n);
        CU_TRY(c, "cudaMemcpyAsync(H2D)",
               cudaMemcpyAsync(dst, s, n, cudaMemcpyHostToDevice, c->stream));
        return MD_OK;
    }
    CU_TRY(c, "cudaMemcpyAsync(H2D)", cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, c->stream));
    CU_TRY(c, "cudaStreamSynchronize", cudaStreamSynchronize(c->stream));
    return MD_OK;
}

// ---- shape helpers (same checks as the CPU backend) -----------------------

static bool is_f32(const struct md_tensor *t) { return t && t->type == MD_TYPE_F32 && t->data; }

static bool same_shape(const struct md_tensor *a, const struct md_tensor *b)
{
    return a->ne[0] == b->ne[0] && md_tensor_nrows(a) == md_tensor_nrows(b);
}

static size_t tensor_bytes(const struct md_tensor *t)
{
    return md_tensor_row_bytes(t) * (size_t)md_tensor_nrows(t);
}

static unsigned blocks_for(int64_t n, int per) { return (unsigned)((n + per - 1) / per); }

// ---- device helpers -------------------------------------------------------

__device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Block-wide sum for blockDim.x a multiple of 32 (<= 1024); every thread gets it.
__device__ float block_sum(float v, float *sh)
{
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0)
        sh[w] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0f;
    return warp_sum(v);
}

__device__ float block_max(float v, float *sh)
{
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0)
        sh[w] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : -INFINITY;
    return warp_max(v);
}

__device__ __forceinline__ float ld_f16(const uint8_t *p)
{
    return __half2float(__ushort_as_half((unsigned short)(p[0] | (p[1] << 8))));
}

__device__ __forceinline__ float bf16_bits(uint32_t u) { return __uint_as_float(u << 16); }

// 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K super-block.
__device__ __forceinline__ void k_scale_min(const uint8_t *q, int j, int *sc, int *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// Element i of a row of any supported type (block layouts as in quant.c; the
// arithmetic order matches md_dequantize_row so results are bit-identical:
// __fmul_rn/__fadd_rn keep nvcc from contracting a*b+c into an FMA).
__device__ float dq_elem(uint32_t type, const uint8_t *row, int64_t i)
{
    int j = (int)(i & 31);
    switch (type) {
    case MD_TYPE_F32:
        return ((const float *)row)[i];
    case MD_TYPE_F16:
        return __half2float(((const __half *)row)[i]);
    case MD_TYPE_BF16:
        return bf16_bits(((const uint16_t *)row)[i]);
    case MD_TYPE_Q4_0: {
        const uint8_t *b = row + (i >> 5) * 18;
        int q = j < 16 ? (b[2 + j] & 15) : (b[2 + j - 16] >> 4);
        return (float)(q - 8) * ld_f16(b);
    }
    case MD_TYPE_Q4_1: {
        const uint8_t *b = row + (i >> 5) * 20;
        int q = j < 16 ? (b[4 + j] & 15) : (b[4 + j - 16] >> 4);
        return __fadd_rn(__fmul_rn((float)q, ld_f16(b)), ld_f16(b + 2));
    }
    case MD_TYPE_Q5_0: {
        const uint8_t *b = row + (i >> 5) * 22;
        uint32_t qh = b[2] | (b[3] << 8) | (b[4] << 16) | ((uint32_t)b[5] << 24);
        int q = (j < 16 ? (b[6 + j] & 15) : (b[6 + j - 16] >> 4)) | (int)(((qh >> j) & 1u) << 4);
        return (float)(q - 16) * ld_f16(b);
    }
    case MD_TYPE_Q5_1: {
        const uint8_t *b = row + (i >> 5) * 24;
        uint32_t qh = b[4] | (b[5] << 8) | (b[6] << 16) | ((uint32_t)b[7] << 24);
        int q = (j < 16 ? (b[8 + j] & 15) : (b[8 + j - 16] >> 4)) | (int)(((qh >> j) & 1u) << 4);
        return __fadd_rn(__fmul_rn((float)q, ld_f16(b)), ld_f16(b + 2));
    }
    case MD_TYPE_Q8_0: {
        const uint8_t *b = row + (i >> 5) * 34;
        return (float)(int8_t)b[2 + j] * ld_f16(b);
    }
    case MD_TYPE_Q4_K:
    case MD_TYPE_Q5_K: {
        bool k5 = type == MD_TYPE_Q5_K;
        const uint8_t *b = row + (i >> 8) * (k5 ? 176 : 144);
        int r = (int)(i & 255), c = r >> 6, rr = r & 63, sub = 2 * c + (rr >= 32), l = rr & 31;
        int sc, m;
        k_scale_min(b + 4, sub, &sc, &m);
        const uint8_t *qs = b + (k5 ? 48 : 16);
        int q = qs[32 * c + l];
        int v = rr < 32 ? (q & 15) : (q >> 4);
        if (k5)
            v |= ((b[16 + l] >> sub) & 1) << 4;
        float d1 = ld_f16(b) * (float)sc, m1 = ld_f16(b + 2) * (float)m;
        return __fsub_rn(__fmul_rn(d1, (float)v), m1);
    }
    case MD_TYPE_Q6_K: {
        const uint8_t *b = row + (i >> 8) * 210;
        int r = (int)(i & 255), h = r >> 7, rq = r & 127, quarter = rq >> 5, l = rq & 31;
        const uint8_t *l0 = b + 64 * h, *h0 = b + 128 + 32 * h;
        const int8_t *s = (const int8_t *)(b + 192) + 8 * h;
        int lo = l0[l + (quarter & 1) * 32];
        lo = quarter >= 2 ? (lo >> 4) : (lo & 15);
        int q = (lo | (((h0[l] >> (2 * quarter)) & 3) << 4)) - 32;
        float ds = ld_f16(b + 208) * (float)s[(l >> 4) + 2 * quarter];
        return ds * (float)q;
    }
    }
    return 0.0f;
}

static bool type_on_device(uint32_t t)
{
    return t == MD_TYPE_F32 || t == MD_TYPE_F16 || t == MD_TYPE_BF16 || t == MD_TYPE_Q4_0 ||
           t == MD_TYPE_Q4_1 || t == MD_TYPE_Q5_0 || t == MD_TYPE_Q5_1 || t == MD_TYPE_Q8_0 ||
           t == MD_TYPE_Q4_K || t == MD_TYPE_Q5_K || t == MD_TYPE_Q6_K;
}

// ---- memory ops -----------------------------------------------------------

static int cu_tensor_alloc(struct md_backend *be, struct md_tensor *t)
{
    cuda_be *c = cu(be);
    size_t n = tensor_bytes(t);
    if (n == 0 && t->ne[0] * md_tensor_nrows(t) != 0)
        return MD_ERR_INVALID;
    ENTER(c);
    void *p = NULL;
    size_t alloc = align256(n ? n : 1);
    cudaError_t e = cudaMalloc(&p, alloc);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        set_err(c, MD_ERR_NOMEM, "cudaMalloc(%zu): %s", alloc, cudaGetErrorString(e));
        return e == cudaErrorMemoryAllocation ? MD_ERR_NOMEM : MD_ERR_BACKEND;
    }
    e = cudaMemsetAsync(p, 0, alloc, c->stream);
    if (e != cudaSuccess) {
        cudaFree(p);
        return cuda_fail(c, "cudaMemsetAsync", e);
    }
    t->data = p;
    t->nbytes = n;
    t->owned = true;
    return MD_OK;
}

static int cu_tensor_weight(struct md_backend *be, struct md_tensor *t, const void *host)
{
    cuda_be *c = cu(be);
    size_t n = tensor_bytes(t);
    if (!host || (n == 0 && t->ne[0] * md_tensor_nrows(t) != 0) ||
        (t->type != MD_TYPE_I32 && !type_on_device(t->type)))
        return set_err(c, MD_ERR_UNSUPPORTED, "weight of type %u is not supported on CUDA",
                       t->type);
    int rc = cu_tensor_alloc(be, t);
    if (rc)
        return rc;
    cudaError_t e = cudaMemcpyAsync(t->data, host, n, cudaMemcpyHostToDevice, c->stream);
    if (e == cudaSuccess)
        e = cudaStreamSynchronize(c->stream);
    if (e != cudaSuccess) {
        cudaFree(t->data);
        t->data = NULL;
        t->owned = false;
        return cuda_fail(c, "upload weight", e);
    }
    t->owned = true;
    return MD_OK;
}

static void cu_tensor_free(struct md_backend *be, struct md_tensor *t)
{
    cuda_be *c = cu(be);
    if (t->owned && t->data) {
        cudaSetDevice(c->device);
        cudaFree(t->data);   // synchronizes: no queued kernel still reads it
    }
    t->data = NULL;
    t->owned = false;
}

static int cu_tensor_set(struct md_backend *be, struct md_tensor *t, size_t off, const void *src,
                         size_t n)
{
    cuda_be *c = cu(be);
    if (!t->data || off > t->nbytes || n > t->nbytes - off || (n && !src))
        return MD_ERR_INVALID;
    ENTER(c);
    return upload(c, (char *)t->data + off, src, n);
}

static int cu_tensor_get(struct md_backend *be, const struct md_tensor *t, size_t off, void *dst,
                         size_t n)
{
    cuda_be *c = cu(be);
    if (!t->data || off > t->nbytes || n > t->nbytes - off || (n && !dst))
        return MD_ERR_INVALID;
    ENTER(c);
    // The error flag comes back with the data: one extra 4-byte copy.
    int *flag = (int *)(c->stage + STAGE_BYTES);
    CU_TRY(c, "cudaMemcpyAsync(flag)",
           cudaMemcpyAsync(flag, c->d_err, sizeof(int), cudaMemcpyDeviceToHost, c->stream));
    if (n)
        CU_TRY(c, "cudaMemcpyAsync(D2H)",
               cudaMemcpyAsync(dst, (const char *)t->data + off, n, cudaMemcpyDeviceToHost,
                               c->stream));
    CU_TRY(c, "cudaStreamSynchronize", cudaStreamSynchronize(c->stream));
    c->stage_used = 0;
    if (*flag) {
        *flag = 0;
        CU_TRY(c, "cudaMemsetAsync(flag)", cudaMemsetAsync(c->d_err, 0, sizeof(int), c->stream));
        return set_err(c, MD_ERR_INVALID, "get_rows: a row id was out of range (detected on device)");
    }
    return MD_OK;
}

// ---- get_rows -------------------------------------------------------------

__global__ void k_get_rows(const uint8_t *table, size_t rb, int64_t n_rows, uint32_t type,
                           const int32_t *ids, float *out, int64_t n_embd, int *err)
{
    int64_t r = blockIdx.x;
    int32_t id = ids[r];
    float *o = out + r * n_embd;
    bool ok = id >= 0 && id < n_rows;
    if (!ok && threadIdx.x == 0)
        atomicExch(err, 1);
    const uint8_t *row = table + rb * (size_t)(ok ? id : 0);
    for (int64_t e = threadIdx.x; e < n_embd; e += blockDim.x)
        o[e] = ok ? dq_elem(type, row, e) : 0.0f;
}

static int cu_get_rows(struct md_backend *be, const struct md_tensor *table,
                       const struct md_tensor *ids, struct md_tensor *out)
{
    cuda_be *c = cu(be);
    int64_t n = md_tensor_nrows(out), n_embd = table->ne[0], n_rows = md_tensor_nrows(table);
    if (!table->data || !ids->data || ids->type != MD_TYPE_I32 || ids->ne[0] < n || !is_f32(out) ||
        out->ne[0] != n_embd || !type_on_device(table->type) || md_tensor_row_bytes(table) == 0)
        return MD_ERR_INVALID;
    if (n == 0)
        return MD_OK;
    ENTER(c);
    k_get_rows<<<(unsigned)n, 256, 0, c->stream>>>((const uint8_t *)table->data,
        md_tensor_row_bytes(table), n_rows, table->type, (const int32_t *)ids->data,
        (float *)out->data, n_embd, c->d_err);
    return launched(c, "get_rows");
}

// ---- matmul ---------------------------------------------------------------

enum { W_GENERIC = 0, W_F16V, W_BF16V, W_Q8_0, W_Q4_K };

// y[t][o] = sum_i x[t][i] w[o][i] (+ bias[o]) for NT tokens: one warp per
// output row, 4 rows per block. Vector paths need n_in % 8 == 0 (F16/BF16),
// % 32 (Q8_0, 2-byte aligned w), % 256 (Q4_K) and 16-byte aligned x (and w rows
// for F16/BF16/Q4_K).
template <int NT, int WT>
__global__ void __launch_bounds__(128) k_gemv(const uint8_t *__restrict__ w, size_t rb,
    uint32_t type, const float *__restrict__ x, int64_t n_in, int64_t n_out,
    const float *__restrict__ bias, float *__restrict__ y)
{
    int64_t o = (int64_t)blockIdx.x * 4 + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (o >= n_out)
        return;
    const uint8_t *row = w + rb * (size_t)o;
    float acc[NT];
#pragma unroll
    for (int t = 0; t < NT; t++)
        acc[t] = 0.0f;

    if constexpr (WT == W_F16V || WT == W_BF16V) {
        for (int64_t k = (int64_t)lane * 8; k < n_in; k += 256) {
            uint4 raw = *(const uint4 *)(row + k * 2);
            float wv[8];
            const uint32_t u[4] = { raw.x, raw.y, raw.z, raw.w };
#pragma unroll
            for (int q = 0; q < 4; q++) {
                if constexpr (WT == W_F16V) {
                    __half2 h2 = *(const __half2 *)&u[q];
                    float2 f = __half22float2(h2);
                    wv[2 * q] = f.x;
                    wv[2 * q + 1] = f.y;
                } else {
                    wv[2 * q] = bf16_bits(u[q] & 0xffffu);
                    wv[2 * q + 1] = bf16_bits(u[q] >> 16);
                }
            }
#pragma unroll
            for (int t = 0; t < NT; t++) {
                const float4 *xp = (const float4 *)(x + t * n_in + k);
                float4 a = xp[0], b = xp[1];
                acc[t] += wv[0] * a.x + wv[1] * a.y + wv[2] * a.z + wv[3] * a.w +
                          wv[4] * b.x + wv[5] * b.y + wv[6] * b.z + wv[7] * b.w;
            }
        }
    } else if constexpr (WT == W_Q8_0) {
        // 8 blocks per step: lane -> block lane/4, quarter lane%4 (8 values).
        int64_t nb = n_in / 32;
        int part = lane & 3;
        for (int64_t blk = lane >> 2; blk < nb; blk += 8) {
            const uint8_t *b = row + blk * 34;
            float d = ld_f16(b);
            // 8 int8 at an even offset: four 2-byte loads (blocks are 34 bytes).
            const uint16_t *q2 = (const uint16_t *)(b + 2 + part * 8);
            float wv[8];
#pragma unroll
            for (int q = 0; q < 4; q++) {
                uint16_t u = q2[q];
                wv[2 * q] = (float)(int8_t)(u & 0xff) * d;
                wv[2 * q + 1] = (float)(int8_t)(u >> 8) * d;
            }
            int64_t k = blk * 32 + part * 8;
#pragma unroll
            for (int t = 0; t < NT; t++) {
                const float4 *xp = (const float4 *)(x + t * n_in + k);
                float4 a = xp[0], bb = xp[1];
                acc[t] += wv[0] * a.x + wv[1] * a.y + wv[2] * a.z + wv[3] * a.w +
                          wv[4] * bb.x + wv[5] * bb.y + wv[6] * bb.z + wv[7] * bb.w;
            }
        }
    } else if constexpr (WT == W_Q4_K) {
        // Per super-block (256 values): lane -> 64-chunk lane/8, 4 bytes at (lane%8)*4.
        int64_t nsb = n_in / 256;
        int ch = lane >> 3, l0 = (lane & 7) * 4;
        for (int64_t sb = 0; sb < nsb; sb++) {
            const uint8_t *b = row + sb * 144;
            float d = ld_f16(b), dmin = ld_f16(b + 2);
            int sc, m;
            k_scale_min(b + 4, 2 * ch, &sc, &m);
            float d1 = d * (float)sc, m1 = dmin * (float)m;
            k_scale_min(b + 4, 2 * ch + 1, &sc, &m);
            float d2 = d * (float)sc, m2 = dmin * (float)m;
            uint32_t q4 = *(const uint32_t *)(b + 16 + 32 * ch + l0);
            float lo[4], hi[4];
#pragma unroll
            for (int q = 0; q < 4; q++) {
                uint32_t byte = (q4 >> (8 * q)) & 0xffu;
                lo[q] = __fsub_rn(__fmul_rn(d1, (float)(byte & 15)), m1);
                hi[q] = __fsub_rn(__fmul_rn(d2, (float)(byte >> 4)), m2);
            }
            int64_t k = sb * 256 + 64 * ch + l0;
#pragma unroll
            for (int t = 0; t < NT; t++) {
                float4 a = *(const float4 *)(x + t * n_in + k);
                float4 bb = *(const float4 *)(x + t * n_in + k + 32);
                acc[t] += lo[0] * a.x + lo[1] * a.y + lo[2] * a.z + lo[3] * a.w +
                          hi[0] * bb.x + hi[1] * bb.y + hi[2] * bb.z + hi[3] * bb.w;
            }
        }
    } else {
        for (int64_t k = lane; k < n_in; k += 32) {
            float wv = dq_elem(type, row, k);
#pragma unroll
            for (int t = 0; t < NT; t++)
                acc[t] += wv * x[t * n_in + k];
        }
    }
#pragma unroll
    for (int t = 0; t < NT; t++) {
        float s = warp_sum(acc[t]);
        if (lane == 0)
            y[t * n_out + o] = s + (bias ? bias[o] : 0.0f);
    }
}

template <int WT>
static void launch_gemv(int nt, unsigned grid, cudaStream_t s, const uint8_t *w, size_t rb,
                        uint32_t type, const float *x, int64_t n_in, int64_t n_out,
                        const float *bias, float *y)
{
    switch (nt) {
    case 1: k_gemv<1, WT><<<grid, 128, 0, s>>>(w, rb, type, x, n_in, n_out, bias, y); break;
    case 2: k_gemv<2, WT><<<grid, 128, 0, s>>>(w, rb, type, x, n_in, n_out, bias, y); break;
    case 3: k_gemv<3, WT><<<grid, 128, 0, s>>>(w, rb, type, x, n_in, n_out, bias, y); break;
    default: k_gemv<4, WT><<<grid, 128, 0, s>>>(w, rb, type, x, n_in, n_out, bias, y); break;
    }
}

__global__ void k_f32_to_f16(const float *x, __half *y, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        y[i] = __float2half_rn(x[i]);
}

__global__ void k_f32_to_bf16(const float *x, __nv_bfloat16 *y, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        y[i] = __float2bfloat16_rn(x[i]);
}

// Dequantize a whole weight matrix (any type) to F16, row by row.
__global__ void k_dequant_f16(const uint8_t *w, size_t rb, uint32_t type, int64_t n_in,
                              __half *out)
{
    int64_t o = blockIdx.x;
    const uint8_t *row = w + rb * (size_t)o;
    for (int64_t k = threadIdx.x; k < n_in; k += blockDim.x)
        out[o * n_in + k] = __float2half_rn(dq_elem(type, row, k));
}

__global__ void k_dequant_f32(const uint8_t *w, size_t rb, uint32_t type, int64_t n_in,
                              float *out)
{
    int64_t o = blockIdx.x;
    const uint8_t *row = w + rb * (size_t)o;
    for (int64_t k = threadIdx.x; k < n_in; k += blockDim.x)
        out[o * n_in + k] = dq_elem(type, row, k);
}

__global__ void k_add_bias(float *y, const float *b, int64_t n_out, int64_t total)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x)
        y[i] += b[i % n_out];
}

static unsigned grid_1d(int64_t n)
{
    int64_t b = (n + 255) / 256;
    return (unsigned)(b < 65536 ? (b > 0 ? b : 1) : 65536);
}

static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

static int cu_matmul(struct md_backend *be, const struct md_tensor *x, const struct md_tensor *w,
                     const struct md_tensor *bias, struct md_tensor *y)
{
    cuda_be *c = cu(be);
    int64_t n = md_tensor_nrows(x), n_in = w->ne[0], n_out = w->ne[1];
    if (!is_f32(x) || !is_f32(y) || !w->data || x->ne[0] != n_in || y->ne[0] != n_out ||
        md_tensor_nrows(y) != n || (bias && (!is_f32(bias) || bias->ne[0] != n_out)) ||
        !type_on_device(w->type) || md_tensor_row_bytes(w) == 0)
        return MD_ERR_INVALID;
    if (n == 0 || n_out == 0)
        return MD_OK;
    ENTER(c);
    const uint8_t *wd = (const uint8_t *)w->data;
    size_t rb = md_tensor_row_bytes(w);
    const float *xd = (const float *)x->data, *bd = bias ? (const float *)bias->data : NULL;
    float *yd = (float *)y->data;

    if (n <= GEMV_MAX_TOK && w->type != MD_TYPE_F32) {
        unsigned grid = blocks_for(n_out, 4);
        bool al = aligned16(wd) && aligned16(xd) && rb % 16 == 0;
        int nt = (int)n;
        if ((w->type == MD_TYPE_F16 || w->type == MD_TYPE_BF16) && n_in % 8 == 0 && al) {
            if (w->type == MD_TYPE_F16)
                launch_gemv<W_F16V>(nt, grid, c->stream, wd, rb, w->type, xd, n_in, n_out, bd, yd);
            else
                launch_gemv<W_BF16V>(nt, grid, c->stream, wd, rb, w->type, xd, n_in, n_out, bd, yd);
        } else if (w->type == MD_TYPE_Q8_0 && aligned16(xd) && ((uintptr_t)wd & 1) == 0 &&
                   n_in % 32 == 0) {
            launch_gemv<W_Q8_0>(nt, grid, c->stream, wd, rb, w->type, xd, n_in, n_out, bd, yd);
        } else if (w->type == MD_TYPE_Q4_K && aligned16(xd) && aligned16(wd) && rb % 16 == 0) {
            launch_gemv<W_Q4_K>(nt, grid, c->stream, wd, rb, w->type, xd, n_in, n_out, bd, yd);
        } else {
            launch_gemv<W_GENERIC>(nt, grid, c->stream, wd, rb, w->type, xd, n_in, n_out, bd, yd);
        }
        return launched(c, "matmul (gemv)");
    }

    if (n > INT32_MAX || n_in > INT32_MAX || n_out > INT32_MAX)
        return MD_ERR_INVALID;
    const float one = 1.0f, zero = 0.0f;
    int m_ = (int)n_out, n_ = (int)n, k_ = (int)n_in;
    cublasStatus_t st;
    if (w->type == MD_TYPE_F32 || c->prefill_f32) {
        // F32 weights, or the precision reference mode: any weight dequantized
        // to F32 in scratch, activations untouched, SGEMM (no TF32).
        const float *w32 = (const float *)wd;
        if (w->type != MD_TYPE_F32) {
            void *s;
            int rc = scratch_get(c, (size_t)n_out * (size_t)n_in * sizeof(float), &s);
            if (rc)
                return rc;
            k_dequant_f32<<<(unsigned)n_out, 256, 0, c->stream>>>(wd, rb, w->type, n_in, (float *)s);
            rc = launched(c, "matmul (dequantize f32)");
            if (rc)
                return rc;
            w32 = (const float *)s;
        }
        st = c->api.sgemm(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, m_, n_, k_, &one, w32, k_, xd, k_,
                          &zero, yd, m_);
        if (st != CUBLAS_STATUS_SUCCESS)
            return blas_fail(c, "cublasSgemm", st);
    } else {
        // 16-bit operands: activations converted on device; non-16-bit
        // weights dequantized to F16 first (scratch: X then W).
        bool bf = w->type == MD_TYPE_BF16;
        size_t xbytes = align256((size_t)n * (size_t)n_in * 2);
        size_t wbytes = (w->type == MD_TYPE_F16 || bf) ? 0 : (size_t)n_out * (size_t)n_in * 2;
        void *s;
        int rc = scratch_get(c, xbytes + wbytes, &s);
        if (rc)
            return rc;
        void *x16 = s, *w16 = (void *)wd;
        if (bf)
            k_f32_to_bf16<<<grid_1d(n * n_in), 256, 0, c->stream>>>(xd, (__nv_bfloat16 *)x16, n * n_in);
        else
            k_f32_to_f16<<<grid_1d(n * n_in), 256, 0, c->stream>>>(xd, (__half *)x16, n * n_in);
        if (wbytes) {
            w16 = (char *)s + xbytes;
            k_dequant_f16<<<(unsigned)n_out, 256, 0, c->stream>>>(wd, rb, w->type, n_in,
                                                                  (__half *)w16);
        }
        rc = launched(c, "matmul (convert)");
        if (rc)
            return rc;
        cudaDataType_t dt = bf ? CUDA_R_16BF : CUDA_R_16F;
        st = c->api.gemm_ex(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, m_, n_, k_, &one, w16, dt, k_,
                            x16, dt, k_, &zero, yd, CUDA_R_32F, m_, CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT);
        if (st != CUBLAS_STATUS_SUCCESS)
            return blas_fail(c, "cublasGemmEx", st);
    }
    if (bd) {
        k_add_bias<<<grid_1d(n * n_out), 256, 0, c->stream>>>(yd, bd, n_out, n * n_out);
        return launched(c, "matmul (bias)");
    }
    return MD_OK;
}

// ---- element-wise ---------------------------------------------------------

__global__ void k_add(const float *a, const float *b, float *out, int64_t ne0, int64_t total,
                      bool bcast)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x)
        out[i] = a[i] + b[bcast ? i % ne0 : i];
}

static int cu_add(struct md_backend *be, const struct md_tensor *a, const struct md_tensor *b,
                  struct md_tensor *out)
{
    cuda_be *c = cu(be);
    int64_t n = md_tensor_nrows(a), ne0 = a->ne[0], nb = md_tensor_nrows(b);
    if (!is_f32(a) || !is_f32(b) || !is_f32(out) || b->ne[0] != ne0 || !same_shape(a, out) ||
        (nb != n && nb != 1))
        return MD_ERR_INVALID;
    int64_t total = n * ne0;
    if (total == 0)
        return MD_OK;
    ENTER(c);
    k_add<<<grid_1d(total), 256, 0, c->stream>>>((const float *)a->data, (const float *)b->data,
        (float *)out->data, ne0, total, nb == 1 && n != 1);
    return launched(c, "add");
}

__device__ __forceinline__ float apply_unary(int op, float x)
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

__global__ void k_unary(int op, const float *x, const float *up, float *out, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float v = apply_unary(op, x[i]);
        out[i] = up ? v * up[i] : v;
    }
}

static bool unary_op_ok(enum md_unary_op op)
{
    return op == MD_UNARY_SILU || op == MD_UNARY_GELU_TANH || op == MD_UNARY_GELU_ERF ||
           op == MD_UNARY_QUICK_GELU;
}

static int cu_unary(struct md_backend *be, enum md_unary_op op, const struct md_tensor *x,
                    struct md_tensor *out)
{
    cuda_be *c = cu(be);
    if (!is_f32(x) || !is_f32(out) || !same_shape(x, out) || !unary_op_ok(op))
        return MD_ERR_INVALID;
    int64_t n = x->ne[0] * md_tensor_nrows(x);
    if (n == 0)
        return MD_OK;
    ENTER(c);
    k_unary<<<grid_1d(n), 256, 0, c->stream>>>((int)op, (const float *)x->data, NULL,
                                               (float *)out->data, n);
    return launched(c, "unary");
}

static int cu_glu(struct md_backend *be, enum md_unary_op op, const struct md_tensor *gate,
                  const struct md_tensor *up, struct md_tensor *out)
{
    cuda_be *c = cu(be);
    if (!is_f32(gate) || !is_f32(up) || !is_f32(out) || !same_shape(gate, up) ||
        !same_shape(gate, out) || !unary_op_ok(op))
        return MD_ERR_INVALID;
    int64_t n = gate->ne[0] * md_tensor_nrows(gate);
    if (n == 0)
        return MD_OK;
    ENTER(c);
    k_unary<<<grid_1d(n), 256, 0, c->stream>>>((int)op, (const float *)gate->data,
        (const float *)up->data, (float *)out->data, n);
    return launched(c, "glu");
}

// ---- row-wise: norms, softmax ---------------------------------------------

// One block per row; two passes (mean, then centred squares) like the CPU.
__global__ void k_norm(const float *x, const float *w, const float *b, float *out, int64_t ne0,
                       float eps, bool rms)
{
    __shared__ float sh[32];
    const float *xr = x + blockIdx.x * ne0;
    float *o = out + blockIdx.x * ne0;
    float mean = 0.0f;
    if (!rms) {
        float s = 0.0f;
        for (int64_t i = threadIdx.x; i < ne0; i += blockDim.x)
            s += xr[i];
        mean = block_sum(s, sh) / (float)ne0;
    }
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < ne0; i += blockDim.x) {
        float d = xr[i] - mean;
        ss += d * d;
    }
    ss = block_sum(ss, sh);
    float inv = rsqrtf(ss / (float)ne0 + eps);
    __syncthreads();   // out may be x: every thread has read its values above
    for (int64_t i = threadIdx.x; i < ne0; i += blockDim.x) {
        float v = (xr[i] - mean) * inv * w[i];
        o[i] = b ? v + b[i] : v;
    }
}

static int run_norm(struct md_backend *be, const struct md_tensor *x, const struct md_tensor *w,
                    const struct md_tensor *b, float eps, struct md_tensor *out, bool rms)
{
    cuda_be *c = cu(be);
    if (!is_f32(x) || !is_f32(out) || !is_f32(w) || w->ne[0] != x->ne[0] ||
        !same_shape(x, out) || (b && (!is_f32(b) || b->ne[0] != x->ne[0])))
        return MD_ERR_INVALID;
    int64_t n = md_tensor_nrows(x);
    if (n == 0 || x->ne[0] == 0)
        return MD_OK;
    if (n > INT32_MAX)
        return MD_ERR_INVALID;
    ENTER(c);
    k_norm<<<(unsigned)n, 256, 0, c->stream>>>((const float *)x->data, (const float *)w->data,
        b ? (const float *)b->data : NULL, (float *)out->data, x->ne[0], eps, rms);
    return launched(c, rms ? "rms_norm" : "layer_norm");
}

static int cu_rms_norm(struct md_backend *be, const struct md_tensor *x, const struct md_tensor *w,
                       float eps, struct md_tensor *out)
{
    return run_norm(be, x, w, NULL, eps, out, true);
}

static int cu_layer_norm(struct md_backend *be, const struct md_tensor *x,
                         const struct md_tensor *w, const struct md_tensor *b, float eps,
                         struct md_tensor *out)
{
    return run_norm(be, x, w, b, eps, out, false);
}

__global__ void k_softmax(const float *x, float *out, int64_t ne0, float scale)
{
    __shared__ float sh[32];
    const float *xr = x + blockIdx.x * ne0;
    float *o = out + blockIdx.x * ne0;
    float m = -INFINITY;
    for (int64_t i = threadIdx.x; i < ne0; i += blockDim.x)
        m = fmaxf(m, scale * xr[i]);
    m = block_max(m, sh);
    float s = 0.0f;
    for (int64_t i = threadIdx.x; i < ne0; i += blockDim.x) {
        float e = expf(scale * xr[i] - m);
        o[i] = e;   // out may be x: element i is read then written by this thread only
        s += e;
    }
    s = block_sum(s, sh);
    float inv = 1.0f / s;
    for (int64_t i = threadIdx.x; i < ne0; i += blockDim.x)
        o[i] *= inv;
}

static int cu_softmax(struct md_backend *be, const struct md_tensor *x, float scale,
                      struct md_tensor *out)
{
    cuda_be *c = cu(be);
    if (!is_f32(x) || !is_f32(out) || !same_shape(x, out))
        return MD_ERR_INVALID;
    int64_t n = md_tensor_nrows(x);
    if (n == 0 || x->ne[0] == 0)
        return MD_OK;
    if (n > INT32_MAX)
        return MD_ERR_INVALID;
    ENTER(c);
    k_softmax<<<(unsigned)n, 256, 0, c->stream>>>((const float *)x->data, (float *)out->data,
                                                  x->ne[0], scale);
    return launched(c, "softmax");
}

// ---- rope -----------------------------------------------------------------

// One thread per (row, rotated pair) and head (blockIdx.y): the angle in
// double, like the CPU. Each head's thread recomputes its row's angle: a
// decode step has one row, and one thread looping over the heads made this
// kernel a serial chain of n_head dependent loads (a 7B decode step: tg128
// 114 -> 122 tok/s with this layout, H100, 2026-11-22, docs/cuda.md).
__global__ void k_rope(float *x, const int32_t *pos, const float *factors, int64_t n_rows,
                       int n_head, int head_dim, int n_rot, bool neox, float freq_base,
                       float freq_scale)
{
    int half = n_rot / 2;
    int64_t id = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    int h = blockIdx.y;   // the grid's y is n_head
    if (id >= n_rows * half)
        return;
    int64_t r = id / half;
    int i = (int)(id % half);
    double p = (double)pos[r] * freq_scale;
    double theta = p * pow((double)freq_base, -2.0 * i / n_rot);
    if (factors)
        theta /= factors[i];
    double cs, sn;
    sincos(theta, &sn, &cs);
    int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
    float *v = x + (r * (int64_t)n_head + h) * head_dim;
    double x0 = v[a], x1 = v[b];
    v[a] = (float)(x0 * cs - x1 * sn);
    v[b] = (float)(x0 * sn + x1 * cs);
}

static int cu_rope(struct md_backend *be, struct md_tensor *x, const struct md_tensor *pos,
                   const struct md_rope_params *p)
{
    cuda_be *c = cu(be);
    int64_t n = md_tensor_nrows(x);
    if (!is_f32(x) || !pos || !pos->data || pos->type != MD_TYPE_I32 || pos->ne[0] < n || !p ||
        p->n_rot <= 0 || p->n_rot % 2 || p->n_rot > p->head_dim || p->n_rot > 512 ||
        p->n_head <= 0 || x->ne[0] != (int64_t)p->n_head * p->head_dim ||
        (p->mode != MD_ROPE_NORMAL && p->mode != MD_ROPE_NEOX) ||
        (p->freq_factors && (!is_f32(p->freq_factors) || p->freq_factors->ne[0] < p->n_rot / 2)))
        return MD_ERR_INVALID;
    int64_t total = n * (p->n_rot / 2);
    if (total == 0)
        return MD_OK;
    if (p->n_head > 65535)   // the grid's y limit; no model comes near it
        return set_err(c, MD_ERR_UNSUPPORTED, "rope: %d heads > 65535", p->n_head);
    ENTER(c);
    dim3 grid(blocks_for(total, 128), (unsigned)p->n_head);
    k_rope<<<grid, 128, 0, c->stream>>>((float *)x->data,
        (const int32_t *)pos->data,
        p->freq_factors ? (const float *)p->freq_factors->data : NULL, n, p->n_head,
        p->head_dim, p->n_rot, p->mode == MD_ROPE_NEOX, p->freq_base, p->freq_scale);
    return launched(c, "rope");
}

// ---- attention ------------------------------------------------------------

__device__ __forceinline__ float ldkv(const float *p) { return *p; }
__device__ __forceinline__ float ldkv(const __half *p) { return __half2float(*p); }

// Keys visible to query i (index-causal), clamped to [0, n_kv].
__host__ __device__ __forceinline__ int visible(int n_kv, int q_start, bool causal, int i)
{
    long long v = causal ? (long long)q_start + i + 1 : n_kv;
    return v > n_kv ? n_kv : v < 0 ? 0 : (int)v;
}

// Split-KV decode: block (split s, head h, query i); 4 warps take keys
// round-robin with an online softmax each, merged in shared memory; the
// partial (max, sum, unnormalized out[D]) goes to part.
template <typename KT>
__global__ void __launch_bounds__(128) k_attn_split(const float *q, const KT *k, const KT *v,
    float *part, int n_q, int n_kv, int q_start, int n_head, int n_head_kv, int D, float scale,
    bool causal, int n_split, int chunk)
{
    __shared__ float sm_m[4], sm_l[4];
    __shared__ float sm_o[4][ATTN_MAX_D];
    int s = blockIdx.x, h = blockIdx.y, i = blockIdx.z;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int hk = h / (n_head / n_head_kv);
    int nv = visible(n_kv, q_start, causal, i);
    int t0 = s * chunk, t1 = min(nv, t0 + chunk);
    const float *qr = q + ((int64_t)i * n_head + h) * D;
    int64_t kv_stride = (int64_t)n_head_kv * D;
    float qv[ATTN_MAX_D / 32], o[ATTN_MAX_D / 32];
#pragma unroll
    for (int e = 0; e < ATTN_MAX_D / 32; e++) {
        int d = lane + 32 * e;
        qv[e] = d < D ? qr[d] : 0.0f;
        o[e] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int t = t0 + warp; t < t1; t += 4) {
        const KT *kr = k + t * kv_stride + (int64_t)hk * D;
        float dot = 0.0f;
#pragma unroll
        for (int e = 0; e < ATTN_MAX_D / 32; e++) {
            int d = lane + 32 * e;
            if (d < D)
                dot += qv[e] * ldkv(kr + d);
        }
        float sc = warp_sum(dot) * scale;
        float m_new = fmaxf(m, sc);
        float alpha = expf(m - m_new), p = expf(sc - m_new);
        l = l * alpha + p;
        const KT *vr = v + t * kv_stride + (int64_t)hk * D;
#pragma unroll
        for (int e = 0; e < ATTN_MAX_D / 32; e++) {
            int d = lane + 32 * e;
            if (d < D)
                o[e] = o[e] * alpha + p * ldkv(vr + d);
        }
        m = m_new;
    }
    if (lane == 0) {
        sm_m[warp] = m;
        sm_l[warp] = l;
    }
#pragma unroll
    for (int e = 0; e < ATTN_MAX_D / 32; e++) {
        int d = lane + 32 * e;
        if (d < D)
            sm_o[warp][d] = o[e];
    }
    __syncthreads();
    float M = fmaxf(fmaxf(sm_m[0], sm_m[1]), fmaxf(sm_m[2], sm_m[3]));
    float f[4];
    for (int w = 0; w < 4; w++)
        f[w] = sm_l[w] > 0.0f ? expf(sm_m[w] - M) : 0.0f;
    float *pp = part + (((int64_t)i * n_head + h) * n_split + s) * (D + 2);
    if (threadIdx.x == 0) {
        pp[0] = M;
        pp[1] = sm_l[0] * f[0] + sm_l[1] * f[1] + sm_l[2] * f[2] + sm_l[3] * f[3];
    }
    for (int d = threadIdx.x; d < D; d += blockDim.x)
        pp[2 + d] = sm_o[0][d] * f[0] + sm_o[1][d] * f[1] + sm_o[2][d] * f[2] + sm_o[3][d] * f[3];
}

// Merge the splits of one (head, query): block (h, i).
__global__ void k_attn_combine(const float *part, float *out, float *lse, int n_q, int n_head,
                               int D, int n_split)
{
    int h = blockIdx.x, i = blockIdx.y;
    const float *pp = part + ((int64_t)i * n_head + h) * n_split * (D + 2);
    float M = -INFINITY;
    for (int s = 0; s < n_split; s++)
        if (pp[s * (D + 2) + 1] > 0.0f)
            M = fmaxf(M, pp[s * (D + 2)]);
    float L = 0.0f;
    for (int s = 0; s < n_split; s++) {
        float ls = pp[s * (D + 2) + 1];
        if (ls > 0.0f)
            L += ls * expf(pp[s * (D + 2)] - M);
    }
    float *o = out + ((int64_t)i * n_head + h) * D;
    float inv = L > 0.0f ? 1.0f / L : 0.0f;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float acc = 0.0f;
        for (int s = 0; s < n_split; s++) {
            float ls = pp[s * (D + 2) + 1];
            if (ls > 0.0f)
                acc += pp[s * (D + 2) + 2 + d] * expf(pp[s * (D + 2)] - M);
        }
        o[d] = acc * inv;
    }
    if (lse && threadIdx.x == 0)
        lse[(int64_t)h * n_q + i] = L > 0.0f ? M + logf(L) : -INFINITY;
}

// Flash-attention prefill: block (query tile of FA_BQ, head). 4 warps, each
// owning 4 query rows; K then V tiles of FA_BK keys staged in shared memory
// (rows padded to D+1 floats: conflict-free column reads); scores by lane =
// key, output by lane = dimension. FP32 CUDA-core arithmetic (a tensor-core
// version is future work, docs/cuda.md).
template <typename KT>
__global__ void __launch_bounds__(128) k_attn_flash(const float *q, const KT *k, const KT *v,
    float *out, float *lse, int n_q, int n_kv, int q_start, int n_head, int n_head_kv, int D,
    float scale, bool causal)
{
    extern __shared__ float smem[];
    const int DP = D + 1;
    float *Qs = smem;                     // [FA_BQ][D]
    float *KVs = Qs + FA_BQ * D;          // [FA_BK][D+1]
    float *Ps = KVs + FA_BK * DP;         // [FA_BQ][FA_BK]
    int h = blockIdx.y, i0 = blockIdx.x * FA_BQ;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int hk = h / (n_head / n_head_kv);
    int64_t row_q = (int64_t)n_head * D, kv_stride = (int64_t)n_head_kv * D;

    for (int idx = threadIdx.x; idx < FA_BQ * D; idx += blockDim.x) {
        int r = idx / D, d = idx % D;
        Qs[idx] = i0 + r < n_q ? q[(int64_t)(i0 + r) * row_q + (int64_t)h * D + d] : 0.0f;
    }
    int last = min(n_q - 1, i0 + FA_BQ - 1);
    int kv_end = visible(n_kv, q_start, causal, last);
    int vis[4];
    float m[4], l[4], o[4][ATTN_MAX_D / 32];
#pragma unroll
    for (int rr = 0; rr < 4; rr++) {
        int i = i0 + warp * 4 + rr;
        vis[rr] = i < n_q ? visible(n_kv, q_start, causal, i) : 0;
        m[rr] = -INFINITY;
        l[rr] = 0.0f;
#pragma unroll
        for (int e = 0; e < ATTN_MAX_D / 32; e++)
            o[rr][e] = 0.0f;
    }
    for (int t0 = 0; t0 < kv_end; t0 += FA_BK) {
        int nt = min(FA_BK, kv_end - t0);
        __syncthreads();
        for (int idx = threadIdx.x; idx < FA_BK * D; idx += blockDim.x) {
            int j = idx / D, d = idx % D;
            KVs[j * DP + d] = j < nt ? ldkv(k + (t0 + j) * kv_stride + (int64_t)hk * D + d) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int rr = 0; rr < 4; rr++) {
            int r = warp * 4 + rr;
            int t = t0 + lane;
            bool valid = lane < nt && t < vis[rr];
            float sc = -INFINITY;
            if (valid) {
                float dot = 0.0f;
                const float *qr = Qs + r * D, *kr = KVs + lane * DP;
                for (int d = 0; d < D; d++)
                    dot += qr[d] * kr[d];
                sc = dot * scale;
            }
            float m_new = fmaxf(m[rr], warp_max(sc));
            float p = 0.0f, alpha = 1.0f;
            if (m_new != -INFINITY) {
                p = valid ? expf(sc - m_new) : 0.0f;
                alpha = expf(m[rr] - m_new);
            }
            l[rr] = l[rr] * alpha + warp_sum(p);
            m[rr] = m_new;
            Ps[r * FA_BK + lane] = p;
#pragma unroll
            for (int e = 0; e < ATTN_MAX_D / 32; e++)
                o[rr][e] *= alpha;
        }
        __syncthreads();
        for (int idx = threadIdx.x; idx < FA_BK * D; idx += blockDim.x) {
            int j = idx / D, d = idx % D;
            KVs[j * DP + d] = j < nt ? ldkv(v + (t0 + j) * kv_stride + (int64_t)hk * D + d) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int rr = 0; rr < 4; rr++) {
            int r = warp * 4 + rr;
            for (int j = 0; j < nt; j++) {
                float pj = Ps[r * FA_BK + j];
#pragma unroll
                for (int e = 0; e < ATTN_MAX_D / 32; e++) {
                    int d = lane + 32 * e;
                    if (d < D)
                        o[rr][e] += pj * KVs[j * DP + d];
                }
            }
        }
    }
#pragma unroll
    for (int rr = 0; rr < 4; rr++) {
        int i = i0 + warp * 4 + rr;
        if (i >= n_q)
            continue;
        float inv = l[rr] > 0.0f ? 1.0f / l[rr] : 0.0f;
        float *orow = out + (int64_t)i * row_q + (int64_t)h * D;
#pragma unroll
        for (int e = 0; e < ATTN_MAX_D / 32; e++) {
            int d = lane + 32 * e;
            if (d < D)
                orow[d] = o[rr][e] * inv;
        }
        if (lse && lane == 0)
            lse[(int64_t)h * n_q + i] = l[rr] > 0.0f ? m[rr] + logf(l[rr]) : -INFINITY;
    }
}

static size_t flash_smem(int D)
{
    return sizeof(float) * ((size_t)FA_BQ * D + (size_t)FA_BK * (D + 1) + FA_BQ * FA_BK);
}

static bool kv_type_ok(const struct md_tensor *t)
{
    return t && t->data && (t->type == MD_TYPE_F32 || t->type == MD_TYPE_F16);
}

// ---- attention through cuBLAS (prefill and vision, F32 cache) -------------
//
// S = scale * Q K^T for a block of query rows and every head (strided-batched
// SGEMM: F32 operands and accumulation, no TF32, so it meets the CPU's
// tolerances), a row softmax applying the causal mask that also writes the
// LSE, then O = P V. S is materialized: n_head x rows x keys floats, the row
// block sized to ATTN_GEMM_BUDGET. The flash kernel above reads K and V once
// per 16 queries on CUDA cores at 3-5 TFLOP/s; cuBLAS's SGEMM runs at ~48
// (docs/cuda.md has the before/after). The flash kernel stays for F16 caches
// and for MD_CUDA_ATTN=flash.
#define ATTN_GEMM_BUDGET ((size_t)256 << 20)

// Block (row r of the block, head h): softmax of S's row over the keys the
// query sees, zeros after them; LSE of the scaled scores, as the flash kernel.
__global__ void k_attn_softmax(float *S, float *lse, int rows, int n_vis, int n_q, int i0,
                               int n_kv, int q_start, bool causal)
{
    __shared__ float sh[32];
    int r = blockIdx.x, h = blockIdx.y, i = i0 + r;
    float *row = S + ((int64_t)h * rows + r) * n_vis;
    int vis = min(visible(n_kv, q_start, causal, i), n_vis);
    float m = -INFINITY;
    for (int t = threadIdx.x; t < vis; t += blockDim.x)
        m = fmaxf(m, row[t]);
    m = block_max(m, sh);
    float sum = 0.0f;
    for (int t = threadIdx.x; t < vis; t += blockDim.x) {
        float e = expf(row[t] - m);
        row[t] = e;   // each element is read then written by the same thread
        sum += e;
    }
    sum = block_sum(sum, sh);
    float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    for (int t = threadIdx.x; t < n_vis; t += blockDim.x)
        row[t] = t < vis ? row[t] * inv : 0.0f;
    if (lse && threadIdx.x == 0)
        lse[(int64_t)h * n_q + i] = sum > 0.0f ? m + logf(sum) : -INFINITY;
}

// cuBLAS is column-major: a row-major n x D matrix with row stride ld is its
// D x n transpose with leading dimension ld, which is how Q, K, V, S and the
// output are passed below. Heads sharing a KV head (GQA, g of them) are g
// batched calls, each over the KV heads.
static int attention_gemm(cuda_be *c, const struct md_attn_params *p, const float *q,
                          const float *k, const float *v, float *out, float *lse)
{
    const int D = p->head_dim, H = p->n_head, HK = p->n_head_kv, g = H / HK;
    const int ld_q = H * D, ld_kv = HK * D;
    const float one = 1.0f, zero = 0.0f;
    int vis_all = visible(p->n_kv, p->q_start, p->causal, p->n_q - 1);
    size_t per_row = sizeof(float) * (size_t)H * (size_t)vis_all;
    int64_t bq = (int64_t)(ATTN_GEMM_BUDGET / per_row);
    if (bq < 1)
        bq = 1;
    if (bq > p->n_q)
        bq = p->n_q;
    void *sp;
    int rc = scratch_get(c, per_row * (size_t)bq, &sp);
    if (rc)
        return rc;
    float *S = (float *)sp;
    for (int i0 = 0; i0 < p->n_q; i0 += (int)bq) {
        int rows = (int)(p->n_q - i0 < bq ? p->n_q - i0 : bq);
        int n_vis = visible(p->n_kv, p->q_start, p->causal, i0 + rows - 1);
        long long s_head = (long long)rows * n_vis;
        for (int j = 0; j < g; j++) {
            cublasStatus_t st = c->api.sgemm_strided_batched(c->blas, CUBLAS_OP_T, CUBLAS_OP_N,
                n_vis, rows, D, &p->scale, k, ld_kv, D,
                q + (int64_t)i0 * ld_q + (int64_t)j * D, ld_q, (long long)g * D,
                &zero, S + j * s_head, n_vis, g * s_head, HK);
            if (st != CUBLAS_STATUS_SUCCESS)
                return blas_fail(c, "attention: cublasSgemmStridedBatched (scores)", st);
        }
        k_attn_softmax<<<dim3((unsigned)rows, (unsigned)H), 256, 0, c->stream>>>(S, lse, rows,
            n_vis, p->n_q, i0, p->n_kv, p->q_start, p->causal);
        if ((rc = launched(c, "attention softmax")))
            return rc;
        for (int j = 0; j < g; j++) {
            cublasStatus_t st = c->api.sgemm_strided_batched(c->blas, CUBLAS_OP_N, CUBLAS_OP_N,
                D, rows, n_vis, &one, v, ld_kv, D, S + j * s_head, n_vis, g * s_head,
                &zero, out + (int64_t)i0 * ld_q + (int64_t)j * D, ld_q, (long long)g * D, HK);
            if (st != CUBLAS_STATUS_SUCCESS)
                return blas_fail(c, "attention: cublasSgemmStridedBatched (output)", st);
        }
    }
    return MD_OK;
}

// The cuBLAS path needs an F32 cache and every query seeing at least one key
// (causal with q_start >= 0, or not causal, and a non-empty cache).
template <typename KT>
static bool use_attention_gemm(const cuda_be *c, const struct md_attn_params *p, const KT *)
{
    return sizeof(KT) == sizeof(float) && !c->attn_flash && p->n_kv > 0 &&
           (!p->causal || p->q_start >= 0);
}

template <typename KT>
static int run_attention(cuda_be *c, const struct md_attn_params *p, const float *q,
                         const KT *k, const KT *v, float *out, float *lse)
{
    if (p->n_q <= ATTN_DECODE_MAX_Q) {
        int n_split = (p->n_kv + c->dec_chunk - 1) / c->dec_chunk;
        if (n_split < 1)
            n_split = 1;
        size_t bytes = sizeof(float) * (size_t)p->n_q * p->n_head * n_split * (p->head_dim + 2);
        void *s;
        int rc = scratch_get(c, bytes, &s);
        if (rc)
            return rc;
        dim3 g1((unsigned)n_split, (unsigned)p->n_head, (unsigned)p->n_q);
        k_attn_split<KT><<<g1, 128, 0, c->stream>>>(q, k, v, (float *)s, p->n_q, p->n_kv,
            p->q_start, p->n_head, p->n_head_kv, p->head_dim, p->scale, p->causal, n_split,
            c->dec_chunk);
        dim3 g2((unsigned)p->n_head, (unsigned)p->n_q);
        k_attn_combine<<<g2, 128, 0, c->stream>>>((const float *)s, out, lse, p->n_q, p->n_head,
                                                  p->head_dim, n_split);
        return launched(c, "attention (split-KV)");
    }
    if (use_attention_gemm(c, p, k))
        return attention_gemm(c, p, q, (const float *)k, (const float *)v, out, lse);
    size_t sm = flash_smem(p->head_dim);
    if (sm > 48 * 1024)
        CU_TRY(c, "cudaFuncSetAttribute", cudaFuncSetAttribute(k_attn_flash<KT>,
               cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sm));
    dim3 g((unsigned)((p->n_q + FA_BQ - 1) / FA_BQ), (unsigned)p->n_head);
    k_attn_flash<KT><<<g, 128, sm, c->stream>>>(q, k, v, out, lse, p->n_q, p->n_kv, p->q_start,
        p->n_head, p->n_head_kv, p->head_dim, p->scale, p->causal);
    return launched(c, "attention (flash)");
}

static int cu_attention(struct md_backend *be, const struct md_attn_params *p,
                        const struct md_tensor *q, const struct md_tensor *k,
                        const struct md_tensor *v, struct md_tensor *out, struct md_tensor *lse)
{
    cuda_be *c = cu(be);
    if (!p || p->n_q < 0 || p->n_kv < 0 || p->n_head <= 0 || p->n_head_kv <= 0 ||
        p->head_dim <= 0 || p->n_head % p->n_head_kv)
        return MD_ERR_INVALID;
    int64_t row_q = (int64_t)p->n_head * p->head_dim, row_kv = (int64_t)p->n_head_kv * p->head_dim;
    if (!is_f32(q) || !is_f32(out) || q->ne[0] != row_q || out->ne[0] != row_q ||
        md_tensor_nrows(q) < p->n_q || md_tensor_nrows(out) < p->n_q ||
        !kv_type_ok(k) || !kv_type_ok(v) || k->type != v->type ||
        k->ne[0] != row_kv || v->ne[0] != row_kv ||
        md_tensor_nrows(k) < p->n_kv || md_tensor_nrows(v) < p->n_kv ||
        (lse && (!is_f32(lse) || lse->ne[0] * md_tensor_nrows(lse) < (int64_t)p->n_head * p->n_q)))
        return MD_ERR_INVALID;
    if (p->head_dim > ATTN_MAX_D)
        return set_err(c, MD_ERR_UNSUPPORTED, "attention: head_dim %d > %d is not supported",
                       p->head_dim, ATTN_MAX_D);
    if (p->n_q == 0)
        return MD_OK;
    if (p->n_q > 65535 * FA_BQ || p->n_head > 65535)
        return MD_ERR_INVALID;
    ENTER(c);
    const float *qd = (const float *)q->data;
    float *od = (float *)out->data, *ld = lse ? (float *)lse->data : NULL;
    if (k->type == MD_TYPE_F16)
        return run_attention<__half>(c, p, qd, (const __half *)k->data, (const __half *)v->data,
                                     od, ld);
    return run_attention<float>(c, p, qd, (const float *)k->data, (const float *)v->data, od, ld);
}

// ---- row movement ---------------------------------------------------------

static int cu_set_rows(struct md_backend *be, struct md_tensor *dst, int64_t row0,
                       const struct md_tensor *src)
{
    cuda_be *c = cu(be);
    int64_t n = md_tensor_nrows(src), ne0 = src->ne[0];
    if (!is_f32(src) || !dst->data || dst->ne[0] != ne0 || row0 < 0 ||
        row0 + n > md_tensor_nrows(dst) ||
        (dst->type != MD_TYPE_F32 && dst->type != MD_TYPE_F16))
        return MD_ERR_INVALID;
    int64_t total = n * ne0;
    if (total == 0)
        return MD_OK;
    ENTER(c);
    if (dst->type == MD_TYPE_F32) {
        CU_TRY(c, "set_rows", cudaMemcpyAsync((float *)dst->data + row0 * ne0, src->data,
               sizeof(float) * (size_t)total, cudaMemcpyDeviceToDevice, c->stream));
        return MD_OK;
    }
    k_f32_to_f16<<<grid_1d(total), 256, 0, c->stream>>>((const float *)src->data,
        (__half *)dst->data + row0 * ne0, total);
    return launched(c, "set_rows");
}

// dst[i - i0] = src[idx[i]] for i in [i0, n): rows of rb bytes, copied in
// 4-byte words when rb allows (it always does for F32/F16 activations).
__global__ void k_gather_rows(const uint8_t *src, uint8_t *dst, const int32_t *idx, int64_t i0,
                              size_t rb)
{
    int64_t i = i0 + blockIdx.x;
    const uint8_t *s = src + rb * (size_t)idx[i];
    uint8_t *d = dst + rb * (size_t)blockIdx.x;
    if (rb % 4 == 0) {
        for (size_t w = threadIdx.x; w < rb / 4; w += blockDim.x)
            ((uint32_t *)d)[w] = ((const uint32_t *)s)[w];
    } else {
        for (size_t b = threadIdx.x; b < rb; b += blockDim.x)
            d[b] = s[b];
    }
}

static int cu_keep_rows(struct md_backend *be, struct md_tensor *t, const int32_t *idx, int64_t n)
{
    cuda_be *c = cu(be);
    size_t rb = md_tensor_row_bytes(t);
    int64_t rows = md_tensor_nrows(t);
    if (!t->data || rb == 0 || n < 0 || n > rows || (n && !idx))
        return MD_ERR_INVALID;
    int64_t i0 = n;   // first row that moves
    for (int64_t i = 0; i < n; i++) {
        if (idx[i] < i || idx[i] >= rows)
            return MD_ERR_INVALID;
        if (idx[i] != i && i0 == n)
            i0 = i;
    }
    if (i0 == n)
        return MD_OK;
    if (n > INT32_MAX)
        return MD_ERR_INVALID;
    ENTER(c);
    // Rows with idx[i] >= i: a gather into scratch then one copy back equals
    // the CPU's forward copy (a row is never overwritten before it is read).
    if ((size_t)n > c->idx_cap) {
        size_t cap = (size_t)n + (size_t)n / 2 + 1024;
        if (c->d_idx) {
            cudaFree(c->d_idx);
            c->d_idx = NULL;
            c->idx_cap = 0;
        }
        CU_TRY(c, "cudaMalloc(keep_rows idx)", cudaMalloc(&c->d_idx, cap * sizeof(int32_t)));
        c->idx_cap = cap;
    }
    int rc = upload(c, c->d_idx, idx, sizeof(int32_t) * (size_t)n);
    if (rc)
        return rc;
    size_t moved = rb * (size_t)(n - i0);
    void *s;
    rc = scratch_get(c, moved, &s);
    if (rc)
        return rc;
    k_gather_rows<<<(unsigned)(n - i0), 256, 0, c->stream>>>((const uint8_t *)t->data,
        (uint8_t *)s, c->d_idx, i0, rb);
    rc = launched(c, "keep_rows");
    if (rc)
        return rc;
    CU_TRY(c, "keep_rows copy", cudaMemcpyAsync((char *)t->data + rb * (size_t)i0, s, moved,
                                                cudaMemcpyDeviceToDevice, c->stream));
    return MD_OK;
}

// ---- instance -------------------------------------------------------------

// Frees what an instance holds, however far its creation got.
static void cu_destroy(struct md_backend *be)
{
    cuda_be *c = cu(be);
    if (!c)
        return;
    if (c->stream || c->d_err || c->stage) {
        cudaSetDevice(c->device);
        if (c->stream)
            cudaStreamSynchronize(c->stream);
    }
    if (c->blas)
        c->api.destroy(c->blas);
    if (c->scratch)
        cudaFree(c->scratch);
    if (c->d_idx)
        cudaFree(c->d_idx);
    if (c->d_err)
        cudaFree(c->d_err);
    if (c->stage)
        cudaFreeHost(c->stage);
    if (c->stream)
        cudaStreamDestroy(c->stream);
    blas_close(&c->api);
    free(c);
}

static const struct md_backend_ops cuda_ops = {
    "cuda",
    cu_destroy,
    cu_tensor_alloc,
    cu_tensor_weight,
    cu_tensor_free,
    cu_tensor_set,
    cu_tensor_get,
    cu_get_rows,
    cu_matmul,
    cu_add,
    cu_rms_norm,
    cu_layer_norm,
    cu_rope,
    cu_unary,
    cu_glu,
    cu_softmax,
    cu_attention,
    cu_set_rows,
    cu_keep_rows,
};

// Tuning knobs read once per instance (docs/cuda.md).
static void read_env(cuda_be *c)
{
    const char *pf = getenv("MD_CUDA_PREFILL_F32");
    c->prefill_f32 = pf && *pf && strcmp(pf, "0");
    const char *af = getenv("MD_CUDA_ATTN");
    c->attn_flash = af && !strcmp(af, "flash");
    const char *ds = getenv("MD_CUDA_DECODE_SPLIT");
    c->dec_chunk = ds ? atoi(ds) : DEC_CHUNK_DEFAULT;
    if (c->dec_chunk < 4 || c->dec_chunk > 4096)
        c->dec_chunk = DEC_CHUNK_DEFAULT;
}

// libmustdrop checked the device already (md_backend_check); this keeps the
// module's own contract for any other caller.
static int device_exists(int dev, char *err, size_t errlen)
{
    char why[256] = "";
    int n_dev = cuda_device_count(why, sizeof why);
    if (n_dev <= 0) {
        if (err && errlen)
            snprintf(err, errlen, "no CUDA device: %s", why);
        return MD_ERR_UNSUPPORTED;
    }
    if (dev < 0 || dev >= n_dev) {
        if (err && errlen)
            snprintf(err, errlen, "CUDA device %d does not exist (%d found)", dev, n_dev);
        return MD_ERR_UNSUPPORTED;
    }
    return MD_OK;
}

static int init_device(cuda_be *c, char *err, size_t errlen)
{
    const char *what = "cudaSetDevice";
    cudaError_t e = cudaSetDevice(c->device);
    if (e == cudaSuccess) {
        what = "cudaStreamCreate";
        e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
    }
    if (e == cudaSuccess) {
        what = "cudaMalloc(error flag)";
        e = cudaMalloc(&c->d_err, sizeof(int));
    }
    if (e == cudaSuccess) {
        what = "cudaMemset(error flag)";
        e = cudaMemset(c->d_err, 0, sizeof(int));
    }
    if (e == cudaSuccess) {
        what = "cudaMallocHost(staging)";
        e = cudaMallocHost(&c->stage, STAGE_BYTES + 256);   // + room for the flag read-back
    }
    if (e == cudaSuccess)
        return MD_OK;
    if (err && errlen)
        snprintf(err, errlen, "%s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
    (void)cudaGetLastError();
    return MD_ERR_BACKEND;
}

static int init_blas(cuda_be *c, char *err, size_t errlen)
{
    cublasStatus_t st = c->api.create(&c->blas);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = c->api.set_stream(c->blas, c->stream);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = c->api.set_math_mode(c->blas, CUBLAS_DEFAULT_MATH);   // tensor cores for 16-bit, no TF32
    if (st == CUBLAS_STATUS_SUCCESS)
        return MD_OK;
    if (err && errlen)
        snprintf(err, errlen, "cuBLAS init: %s", c->api.status_string(st));
    return MD_ERR_BACKEND;
}

int cuda_backend_new(const struct md_backend_params *p, struct md_backend **out, char *err,
                     size_t errlen)
{
    if (!out)
        return MD_ERR_INVALID;
    *out = NULL;
    cuda_be *c = (cuda_be *)calloc(1, sizeof *c);
    if (!c) {
        if (err && errlen)
            snprintf(err, errlen, "out of memory creating the CUDA backend");
        return MD_ERR_NOMEM;
    }
    c->base.ops = &cuda_ops;
    c->device = p ? p->device : 0;
    read_env(c);
    // cuBLAS before the device: tests/cuda/test_cuda_module checks on a
    // machine without a GPU that the module finds it.
    int rc = blas_open(&c->api, err, errlen);
    if (!rc)
        rc = device_exists(c->device, err, errlen);
    if (!rc)
        rc = init_device(c, err, errlen);
    if (!rc)
        rc = init_blas(c, err, errlen);
    if (rc) {
        cu_destroy(&c->base);
        return rc;
    }
    *out = &c->base;
    return MD_OK;
}

const char *cuda_backend_last_error(const struct md_backend *be)
{
    if (!be || be->ops != &cuda_ops)
        return "";
    return ((const cuda_be *)be)->last_err;
}
