// The ops that go row by row or element by element, each one small kernel
// and its checks: get_rows (embedding lookup, any weight type), add, unary
// and glu, rms_norm and layer_norm, softmax, rope, and the row movement of
// the KV cache (set_rows, keep_rows). Shape checks are the CPU backend's.
#include "cuda-impl.h"

static bool same_shape(const struct md_tensor *a, const struct md_tensor *b)
{
    return a->ne[0] == b->ne[0] && md_tensor_nrows(a) == md_tensor_nrows(b);
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

int cu_get_rows(struct md_backend *be, const struct md_tensor *table,
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

// ---- element-wise ---------------------------------------------------------

__global__ void k_add(const float *a, const float *b, float *out, int64_t ne0, int64_t total,
                      bool bcast)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x)
        out[i] = a[i] + b[bcast ? i % ne0 : i];
}

int cu_add(struct md_backend *be, const struct md_tensor *a, const struct md_tensor *b,
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

int cu_unary(struct md_backend *be, enum md_unary_op op, const struct md_tensor *x,
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

int cu_glu(struct md_backend *be, enum md_unary_op op, const struct md_tensor *gate,
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

int cu_rms_norm(struct md_backend *be, const struct md_tensor *x, const struct md_tensor *w,
                float eps, struct md_tensor *out)
{
    return run_norm(be, x, w, NULL, eps, out, true);
}

int cu_layer_norm(struct md_backend *be, const struct md_tensor *x,
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

int cu_softmax(struct md_backend *be, const struct md_tensor *x, float scale,
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

int cu_rope(struct md_backend *be, struct md_tensor *x, const struct md_tensor *pos,
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

// ---- row movement ---------------------------------------------------------

int cu_set_rows(struct md_backend *be, struct md_tensor *dst, int64_t row0,
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
    launch_f32_to_f16(c->stream, (const float *)src->data, (__half *)dst->data + row0 * ne0,
                      total);
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

int cu_keep_rows(struct md_backend *be, struct md_tensor *t, const int32_t *idx, int64_t n)
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
