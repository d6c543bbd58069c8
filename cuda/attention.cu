// attention(Q, K, V) with causal masking by index (q_start), GQA and the
// LSE, over an F32 or F16 KV cache. Three paths, chosen in run_attention:
//  * n_q <= 4 (decode) -> split-KV kernel + combine kernel;
//  * otherwise, F32 cache -> cuBLAS: S = Q K^T, a masked softmax, P V;
//  * otherwise (F16 cache, MD_CUDA_ATTN=flash, an empty cache or a causal
//    q_start < 0) -> a tiled flash-attention kernel (online softmax).
// tests/cuda/test_backend_parity.c follows run_attention's rule to know
// which path ran.
#include "cuda-impl.h"

#define ATTN_DECODE_MAX_Q 4              // attention with <= this many queries: split-KV
#define ATTN_MAX_D 256                   // head_dim supported by the attention kernels
#define FA_BQ 16                         // flash attention: queries per block (4 warps x 4)
#define FA_BK 32                         // flash attention: keys per tile

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

int cu_attention(struct md_backend *be, const struct md_attn_params *p,
                 const struct md_tensor *q, const struct md_tensor *k,
                 const struct md_tensor *v, struct md_tensor *out, struct md_tensor *lse)
{
    cuda_be *c = cu(be);
    int rc = md_attn_check_args(p, q, k, v, out, lse);
    if (rc)
        return rc;
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
