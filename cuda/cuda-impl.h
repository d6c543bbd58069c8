// What the files of the CUDA backend share: the instance, its error and
// scratch helpers, the device-side helpers, and the functions one file calls
// in another. backend-cuda.cu holds the instance, the memory ops and the
// vtable; matmul.cu, attention.cu, elementwise.cu and dequant.cu the ops.
//
// The module is compiled without relocatable device code (cuda/meson.build):
// a __device__ function can only be called from its own .cu file, so the
// ones several files' kernels call (warp and block reductions, the decoding
// of a weight element) are defined here, static, and each file gets its own
// copy, compiled as it was when everything was one file. Host functions cross
// files normally; their definitions stay in the file that owns them.
#ifndef MD_CUDA_IMPL_H
#define MD_CUDA_IMPL_H

#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <cublas_v2.h>

#include <math.h>
#include <stdint.h>

#include "blas.h"
#include "cuda-backend.h"

// ---- instance (backend-cuda.cu) -------------------------------------------

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

static inline cuda_be *cu(struct md_backend *be) { return (cuda_be *)be; }

// Keep the message in the instance (md_backend_cuda_last_error, which
// md_context_error appends) and return code.
int set_err(cuda_be *c, int code, const char *fmt, ...);
int cuda_fail(cuda_be *c, const char *what, cudaError_t e);
int blas_fail(cuda_be *c, const char *what, cublasStatus_t s);

#define CU_TRY(c, what, call) do { cudaError_t e_ = (call); \
    if (e_ != cudaSuccess) return cuda_fail((c), (what), e_); } while (0)

// After a kernel launch: a launch error (bad configuration) or a sticky error
// from earlier asynchronous work.
int launched(cuda_be *c, const char *what);

static inline int enter(cuda_be *c)
{
    CU_TRY(c, "cudaSetDevice", cudaSetDevice(c->device));
    return MD_OK;
}
#define ENTER(c) do { int rc_ = enter(c); if (rc_) return rc_; } while (0)

// Grow the device scratch to at least n bytes. cudaFree synchronizes the
// device, so work still queued on the old buffer finishes first.
int scratch_get(cuda_be *c, size_t n, void **p);

// Copy n host bytes into device memory at dst, asynchronously on the stream.
// Small copies are staged through the pinned arena (the caller's buffer may
// be reused at once, and no synchronization happens); large ones are copied
// and waited for.
int upload(cuda_be *c, void *dst, const void *src, size_t n);

static inline size_t align256(size_t n) { return (n + 255) & ~(size_t)255; }

// ---- shape and launch helpers ---------------------------------------------

static inline bool is_f32(const struct md_tensor *t)
{
    return t && t->type == MD_TYPE_F32 && t->data;
}

static inline unsigned blocks_for(int64_t n, int per) { return (unsigned)((n + per - 1) / per); }

// Blocks of 256 threads for a grid-stride loop over n elements, at most
// 65536 of them: the loop covers the rest.
static inline unsigned grid_1d(int64_t n)
{
    int64_t b = (n + 255) / 256;
    return (unsigned)(b < 65536 ? (b > 0 ? b : 1) : 65536);
}

// ---- device helpers -------------------------------------------------------

static __device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Block-wide sum for blockDim.x a multiple of 32 (<= 1024); every thread gets it.
static __device__ float block_sum(float v, float *sh)
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

static __device__ float block_max(float v, float *sh)
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

// ---- weight decoding (get_rows, the GEMV kernels, dequant.cu) -------------

static __device__ __forceinline__ float ld_f16(const uint8_t *p)
{
    return __half2float(__ushort_as_half((unsigned short)(p[0] | (p[1] << 8))));
}

static __device__ __forceinline__ float bf16_bits(uint32_t u) { return __uint_as_float(u << 16); }

// 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K super-block.
static __device__ __forceinline__ void k_scale_min(const uint8_t *q, int j, int *sc, int *m)
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
static __device__ float dq_elem(uint32_t type, const uint8_t *row, int64_t i)
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

// The weight types dq_elem decodes.
static inline bool type_on_device(uint32_t t)
{
    return t == MD_TYPE_F32 || t == MD_TYPE_F16 || t == MD_TYPE_BF16 || t == MD_TYPE_Q4_0 ||
           t == MD_TYPE_Q4_1 || t == MD_TYPE_Q5_0 || t == MD_TYPE_Q5_1 || t == MD_TYPE_Q8_0 ||
           t == MD_TYPE_Q4_K || t == MD_TYPE_Q5_K || t == MD_TYPE_Q6_K;
}

// ---- across files ---------------------------------------------------------

// The ops of the vtable (backend-cuda.cu), by the file that implements them.
// matmul.cu
int cu_matmul(struct md_backend *be, const struct md_tensor *x, const struct md_tensor *w,
              const struct md_tensor *bias, struct md_tensor *y);
// attention.cu
int cu_attention(struct md_backend *be, const struct md_attn_params *p,
                 const struct md_tensor *q, const struct md_tensor *k,
                 const struct md_tensor *v, struct md_tensor *out, struct md_tensor *lse);
// elementwise.cu
int cu_get_rows(struct md_backend *be, const struct md_tensor *table,
                const struct md_tensor *ids, struct md_tensor *out);
int cu_add(struct md_backend *be, const struct md_tensor *a, const struct md_tensor *b,
           struct md_tensor *out);
int cu_rms_norm(struct md_backend *be, const struct md_tensor *x, const struct md_tensor *w,
                float eps, struct md_tensor *out);
int cu_layer_norm(struct md_backend *be, const struct md_tensor *x, const struct md_tensor *w,
                  const struct md_tensor *b, float eps, struct md_tensor *out);
int cu_rope(struct md_backend *be, struct md_tensor *x, const struct md_tensor *pos,
            const struct md_rope_params *p);
int cu_unary(struct md_backend *be, enum md_unary_op op, const struct md_tensor *x,
             struct md_tensor *out);
int cu_glu(struct md_backend *be, enum md_unary_op op, const struct md_tensor *gate,
           const struct md_tensor *up, struct md_tensor *out);
int cu_softmax(struct md_backend *be, const struct md_tensor *x, float scale,
               struct md_tensor *out);
int cu_set_rows(struct md_backend *be, struct md_tensor *dst, int64_t row0,
                const struct md_tensor *src);
int cu_keep_rows(struct md_backend *be, struct md_tensor *t, const int32_t *idx, int64_t n);

// dequant.cu: whole-tensor conversions, launched on stream s (the caller
// checks the launch with launched()). Weights of rb bytes per row, any type
// dq_elem decodes, n_rows rows of n_in elements, to F16 or F32; activations
// (n floats) to F16 or BF16.
void launch_dequant_f16(cudaStream_t s, const uint8_t *w, size_t rb, uint32_t type,
                        int64_t n_rows, int64_t n_in, __half *out);
void launch_dequant_f32(cudaStream_t s, const uint8_t *w, size_t rb, uint32_t type,
                        int64_t n_rows, int64_t n_in, float *out);
void launch_f32_to_f16(cudaStream_t s, const float *x, __half *y, int64_t n);
void launch_f32_to_bf16(cudaStream_t s, const float *x, __nv_bfloat16 *y, int64_t n);

#endif
