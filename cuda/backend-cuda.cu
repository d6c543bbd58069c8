// The CUDA backend: the md_backend vtable (core/llm/backend.h) on one device.
// This file holds the instance (creation, tuning knobs, teardown), the error,
// scratch and upload helpers every op uses, the memory ops and the vtable.
// The compute ops are split by concern, sharing cuda-impl.h:
//   matmul.cu       matmul: GEMV kernels (decode), cuBLAS GEMMs (prefill)
//   attention.cu    attention: split-KV decode, cuBLAS and flash prefill
//   elementwise.cu  get_rows, add, unary, glu, norms, softmax, rope,
//                   set_rows, keep_rows
//   dequant.cu      whole-tensor conversions for the GEMMs and the F16 cache
//
// Design (docs/cuda.md has the long version):
//  * One instance = one device index, one non-blocking stream, one cuBLAS
//    handle, its own scratch. No global mutable state: everything lives in
//    struct cuda_be. The module links cudart only; each instance opens
//    cuBLAS (blas.h), so that asking for a device does not map it.
//  * Tensors are device memory (cudaMalloc). Weights are uploaded once, as
//    they are in the file (F32/F16/BF16 as is, quantized types kept
//    quantized); every kernel that reads weights dequantizes on the fly.
//  * matmul and attention pick their kernels by shape: matmul.cu and
//    attention.cu say how.
//  * Scratch (device) is allocated at first use and grown; growing frees the
//    old buffer (cudaFree synchronizes), so it happens a handful of times
//    per context, never per token once the largest shapes were seen.
//    Host->device uploads of small buffers (token ids, positions, keep_rows
//    index lists) go through a pinned staging arena that is recycled at
//    every synchronization point (tensor_get), so the decode path does no
//    cudaMalloc and no host synchronization besides tensor_get.
//  * Errors: a failing CUDA/cuBLAS call makes the op return MD_ERR_BACKEND;
//    the message (with the CUDA error string) is kept in the instance
//    (md_backend_cuda_last_error), which the context's error message
//    appends (the library never prints). Invalid token ids
//    in get_rows cannot be reported synchronously: the kernel writes zeros,
//    raises a device flag, and the next tensor_get returns MD_ERR_INVALID.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda-impl.h"

#define STAGE_BYTES ((size_t)4 << 20)   // pinned staging arena
// split-KV (attention.cu): keys per split (block). Each of a block's 4 warps
// walks its keys one after another, so a block's time is its keys' latency
// chain, not their bytes: 256 keys made decode attention ~80 us per layer
// from 512 cached tokens on (a 7B step: 10.8 ms against 8.2 from an empty
// cache). Smaller splits run in parallel instead. MD_CUDA_DECODE_SPLIT=N
// overrides it (read at instance creation) to measure the choice;
// docs/cuda.md has the sweep.
#define DEC_CHUNK_DEFAULT 64

// ---- helpers every op uses (declared in cuda-impl.h) ----------------------

int set_err(cuda_be *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->last_err, sizeof c->last_err, fmt, ap);
    va_end(ap);
    return code;
}

int cuda_fail(cuda_be *c, const char *what, cudaError_t e)
{
    return set_err(c, MD_ERR_BACKEND, "%s: %s (%s)", what, cudaGetErrorString(e),
                   cudaGetErrorName(e));
}

int blas_fail(cuda_be *c, const char *what, cublasStatus_t s)
{
    return set_err(c, MD_ERR_BACKEND, "%s: %s (%d)", what, c->api.status_string(s), (int)s);
}

int launched(cuda_be *c, const char *what)
{
    cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? MD_OK : cuda_fail(c, what, e);
}

int scratch_get(cuda_be *c, size_t n, void **p)
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

int upload(cuda_be *c, void *dst, const void *src, size_t n)
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

static size_t tensor_bytes(const struct md_tensor *t)
{
    return md_tensor_row_bytes(t) * (size_t)md_tensor_nrows(t);
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
