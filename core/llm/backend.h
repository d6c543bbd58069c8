/* Compute backends: one small vtable of tensor operations.
 *
 * The model forward (llm.c) is written once against these operations; the
 * CPU backend (backend-cpu.c) implements them with plain loops and
 * md_matmul, a CUDA backend implements them with cuBLAS and its own kernels.
 *
 * Tensors are plain structs with a type, a shape and storage the backend
 * owns: host memory on the CPU, device memory on a GPU. The caller never
 * dereferences `data`; it moves bytes with tensor_set/tensor_get. Shapes use
 * GGUF order: ne[0] is the contiguous row length, ne[1] the number of rows.
 * Activations are F32 rows. A "view" (md_tensor_rows) is a tensor struct
 * pointing at a slice of another's rows; it owns nothing, which is how one
 * buffer sized for n_batch rows serves a batch of any smaller size.
 *
 * Every operation returns 0 or a negative enum md_status (MD_ERR_BACKEND on
 * a device failure, MD_ERR_INVALID on shapes the caller got wrong: ops check
 * shapes cheaply so a bug is an error, not memory corruption).
 * Operations are asynchronous on devices: results are visible to
 * tensor_get, which synchronizes.
 */
#ifndef MD_BACKEND_H
#define MD_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include "mustdrop.h"   /* enum md_status */
#include "quant.h"

/* Tensor element types beyond quant.h's weight types (ggml's ids). */
#define MD_TYPE_I32 26   /* token ids and positions */

struct md_backend;

struct md_tensor {
    uint32_t type;       /* enum md_type or MD_TYPE_I32 */
    int64_t ne[4];       /* ne[0] innermost (row length), ne[1] rows; unused dims 1 */
    size_t nbytes;       /* bytes of the whole tensor */
    void *data;          /* backend storage (host or device pointer); NULL = absent */
    bool owned;          /* false: a view or an alias of the model file */
};

/* Bytes of one row (ne[0] elements); 0 on an unsupported type. */
size_t md_tensor_row_bytes(const struct md_tensor *t);
int64_t md_tensor_nrows(const struct md_tensor *t);   /* ne[1]*ne[2]*ne[3] */
/* A view of rows [row0, row0+n) of a 2-D tensor. */
struct md_tensor md_tensor_rows(const struct md_tensor *t, int64_t row0, int64_t n);
static inline bool md_tensor_present(const struct md_tensor *t) { return t && t->data; }

enum md_rope_mode {
    MD_ROPE_NORMAL = 0,  /* rotate pairs (2i, 2i+1): arch "llama" (Q/K rows permuted by the converter) */
    MD_ROPE_NEOX   = 2,  /* rotate pairs (i, i + n_rot/2): "qwen2", HF-style */
};

struct md_rope_params {
    int32_t n_head;          /* heads in a row: a row is n_head * head_dim floats */
    int32_t head_dim;
    int32_t n_rot;           /* rotated dims per head (even, <= head_dim); the rest pass through */
    enum md_rope_mode mode;
    float freq_base;         /* theta_i = pos * freq_scale * freq_base^(-2i/n_rot) / freq_factors[i] */
    float freq_scale;        /* 1/factor for linear scaling, else 1 */
    const struct md_tensor *freq_factors;  /* NULL or F32 [n_rot/2] (LLaMA-3.1 rope_freqs) */
};

enum md_unary_op {
    MD_UNARY_SILU = 0,         /* x * sigmoid(x) */
    MD_UNARY_GELU_TANH = 1,    /* ggml's gelu: 0.5x(1+tanh(sqrt(2/pi)(x+0.044715x^3))) */
    MD_UNARY_GELU_ERF = 2,     /* 0.5x(1+erf(x/sqrt 2)), torch nn.GELU() */
    MD_UNARY_QUICK_GELU = 3,   /* x * sigmoid(1.702x), OpenAI CLIP */
};

/* Scaled dot-product attention of n_q query rows against the first n_kv
 * entries of one layer's cache.
 *   q:   F32 [n_q][n_head * head_dim]
 *   k,v: F32 or F16 [>= n_kv][n_head_kv * head_dim], entries in sequence order
 *   out: F32 [n_q][n_head * head_dim]
 *   lse: NULL or F32 [n_head][n_q]: log(sum_j exp(scale * q.k_j)) over the
 *        visible keys, so that P(h,i,j) = exp(scale * q_hi.k_hj - lse[h][i])
 *        recovers any attention probability later
 *        (docs/reduction-methods.md §5.1).
 * Query head h reads K/V head h / (n_head / n_head_kv) (GQA).
 * Causal masking is by entry INDEX, never by position value: query i sees
 * entries 0..q_start+i, where q_start is the cache index of query 0 (its own
 * key/value, normally n_kv - n_q because the batch was appended first).
 * Non-causal (vision encoders, probes): every query sees all n_kv entries. */
struct md_attn_params {
    int32_t n_q;
    int32_t n_kv;
    int32_t q_start;     /* causal only: cache index of query 0's own entry */
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim;
    float scale;         /* usually 1/sqrt(head_dim) */
    bool causal;
};

/* The attention op's argument contract above, checked the same way by every
 * backend: MD_OK, or MD_ERR_INVALID for bad counts, types or shapes. */
int md_attn_check_args(const struct md_attn_params *p, const struct md_tensor *q,
                       const struct md_tensor *k, const struct md_tensor *v,
                       const struct md_tensor *out, const struct md_tensor *lse);

struct md_backend_ops {
    const char *name;                      /* "cpu", "cuda" */
    void (*destroy)(struct md_backend *be);

    /* ---- memory ---- */
    /* Allocate storage for t (type and ne set by the caller), zeroed. */
    int (*tensor_alloc)(struct md_backend *be, struct md_tensor *t);
    /* Make t hold nbytes of host data for good (weights, once at load). The
     * CPU backend aliases `host` (the mmap, no copy); devices upload. */
    int (*tensor_weight)(struct md_backend *be, struct md_tensor *t, const void *host);
    void (*tensor_free)(struct md_backend *be, struct md_tensor *t);
    int (*tensor_set)(struct md_backend *be, struct md_tensor *t, size_t offset,
                      const void *src, size_t n);
    int (*tensor_get)(struct md_backend *be, const struct md_tensor *t, size_t offset,
                      void *dst, size_t n);   /* waits for pending work first */

    /* ---- compute; all activations F32, rows = md_tensor_nrows ---- */
    /* out[r] = dequantized table row ids[r] (ids I32; table any type). */
    int (*get_rows)(struct md_backend *be, const struct md_tensor *table,
                    const struct md_tensor *ids, struct md_tensor *out);
    /* y[r][o] = sum_i x[r][i] w[o][i] (+ bias[o]); w ne = {n_in, n_out}, any type. */
    int (*matmul)(struct md_backend *be, const struct md_tensor *x, const struct md_tensor *w,
                  const struct md_tensor *bias, struct md_tensor *y);
    /* out = a + b; b has a's rows, or 1 row broadcast over them. out may be a. */
    int (*add)(struct md_backend *be, const struct md_tensor *a, const struct md_tensor *b,
               struct md_tensor *out);
    /* out[r] = x[r] / rms(x[r]) * w (F32 [ne0]); out may be x. */
    int (*rms_norm)(struct md_backend *be, const struct md_tensor *x, const struct md_tensor *w,
                    float eps, struct md_tensor *out);
    /* out[r] = (x[r] - mean) / sd * w + b (w, b F32 [ne0]; b may be NULL). */
    int (*layer_norm)(struct md_backend *be, const struct md_tensor *x, const struct md_tensor *w,
                      const struct md_tensor *b, float eps, struct md_tensor *out);
    /* Rotate x in place; pos: I32 [rows], the position of each row. */
    int (*rope)(struct md_backend *be, struct md_tensor *x, const struct md_tensor *pos,
                const struct md_rope_params *p);
    int (*unary)(struct md_backend *be, enum md_unary_op op, const struct md_tensor *x,
                 struct md_tensor *out);
    /* out = op(gate) * up (SwiGLU with MD_UNARY_SILU). out may be gate or up. */
    int (*glu)(struct md_backend *be, enum md_unary_op op, const struct md_tensor *gate,
               const struct md_tensor *up, struct md_tensor *out);
    /* out[r] = softmax(scale * x[r]). */
    int (*softmax)(struct md_backend *be, const struct md_tensor *x, float scale,
                   struct md_tensor *out);
    int (*attention)(struct md_backend *be, const struct md_attn_params *p,
                     const struct md_tensor *q, const struct md_tensor *k,
                     const struct md_tensor *v, struct md_tensor *out, struct md_tensor *lse);

    /* ---- row movement (KV cache, token pruning) ---- */
    /* dst rows [row0, row0 + rows(src)) = src, converting F32 -> dst type. */
    int (*set_rows)(struct md_backend *be, struct md_tensor *dst, int64_t row0,
                    const struct md_tensor *src);
    /* Compact in place: row i = old row idx[i] for i < n. idx (host memory)
     * is strictly increasing, which the caller has checked, so a forward
     * copy never overwrites a row still to be read. */
    int (*keep_rows)(struct md_backend *be, struct md_tensor *t, const int32_t *idx, int64_t n);
};

/* Every backend instance starts with this header; implementations embed it
 * first in their own struct and leave `module` NULL (calloc). */
struct md_backend {
    const struct md_backend_ops *ops;
    void *module;   /* dlopen handle of the module that made it; md_backend_free releases it */
};

struct md_backend_params {
    int32_t n_threads;   /* CPU worker threads (>= 1) */
    const char *isa;     /* CPU: NULL/"auto", "scalar", "avx2", "avx512" */
    int32_t device;      /* GPU index */
    bool exact_matmul;   /* CPU: never quantize activations (md_matmul_qdot) */
};

/* Create an instance of the named backend (NULL = "cpu"). Weight tensors
 * made by one instance may be read by any instance of the same backend and
 * device, so a model's weights serve all its contexts. "cuda" loads the
 * CUDA module (below) for this instance; when it cannot be used, err gives
 * md_backend_check's reason. */
int md_backend_new(const char *name, const struct md_backend_params *p,
                   struct md_backend **out, char *err, size_t errlen);
void md_backend_free(struct md_backend *be);

/* The CPU backend, directly (backend-cpu.c). */
int md_backend_cpu_new(const struct md_backend_params *p, struct md_backend **out,
                       char *err, size_t errlen);

/* ---- backend modules ----
 * The CUDA backend is a shared object, libmustdrop-cuda.so (cuda/), that
 * backend.c dlopens only when CUDA is asked for, so that programs that never
 * use a GPU do not map cudart and cuBLAS. The module exports one symbol,
 * MD_BACKEND_MODULE_ENTRY, returning this table. The module and the library
 * share struct md_backend_ops, md_tensor and the params above: bump
 * MD_BACKEND_MODULE_ABI whenever one of them changes; the sizes catch a
 * forgotten bump. */
#define MD_BACKEND_MODULE_ABI 1
#define MD_BACKEND_MODULE_ENTRY "md_backend_module_v1"

struct md_cuda_device_info;   /* cuda/md-cuda.h */

struct md_backend_module {
    uint32_t abi;            /* MD_BACKEND_MODULE_ABI */
    uint32_t ops_size;       /* sizeof(struct md_backend_ops) */
    uint32_t tensor_size;    /* sizeof(struct md_tensor) */
    const char *name;        /* the backend: "cuda" */
    /* The calls of md-cuda.h, with the same contracts. */
    int (*backend_new)(const struct md_backend_params *p, struct md_backend **out,
                       char *err, size_t errlen);
    int (*device_count)(char *reason, size_t reason_len);
    int (*device_info)(int index, struct md_cuda_device_info *info, char *reason,
                       size_t reason_len);
    const char *(*last_error)(const struct md_backend *be);
};

typedef const struct md_backend_module *(*md_backend_module_fn)(void);
/* Name of the CPU ISA an instance of the CPU backend uses. */
const char *md_backend_cpu_isa(const struct md_backend *be);

/* Small helpers for call sites: allocate a tensor of a type and 2-D shape. */
int md_backend_alloc_2d(struct md_backend *be, struct md_tensor *t, uint32_t type,
                        int64_t ne0, int64_t ne1);

#endif
