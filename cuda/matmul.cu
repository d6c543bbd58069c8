// matmul, y = x W^T (+ bias), for any weight type the device decodes:
//  * n_tok <= 4 (decode) -> warp-per-output-row GEMV kernels that
//    dequantize F16/BF16/Q8_0/Q4_K (vectorized) and any other type (generic);
//  * n_tok > 4 (prefill) -> cuBLAS GemmEx with F32 accumulation: F16/BF16
//    weights directly (activations converted to F16/BF16 on device),
//    quantized weights dequantized to F16 in scratch first, F32 weights SGEMM.
//    MD_CUDA_PREFILL_F32=1 (read at instance creation) makes every prefill
//    GEMM an F32 SGEMM on dequantized weights: a precision reference, slow.
// The GEMV kernels take half of a decode step's GPU time (52 % on an H100,
// docs/benchmarks/gpu/2026-11-22/summary.txt), hence a file of their own;
// the conversions the GEMMs need are in dequant.cu.
#include "cuda-impl.h"

#define GEMV_MAX_TOK 4                   // matmul with <= this many rows: GEMV

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

__global__ void k_add_bias(float *y, const float *b, int64_t n_out, int64_t total)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x)
        y[i] += b[i % n_out];
}

static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

int cu_matmul(struct md_backend *be, const struct md_tensor *x, const struct md_tensor *w,
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
            launch_dequant_f32(c->stream, wd, rb, w->type, n_out, n_in, (float *)s);
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
            launch_f32_to_bf16(c->stream, xd, (__nv_bfloat16 *)x16, n * n_in);
        else
            launch_f32_to_f16(c->stream, xd, (__half *)x16, n * n_in);
        if (wbytes) {
            w16 = (char *)s + xbytes;
            launch_dequant_f16(c->stream, wd, rb, w->type, n_out, n_in, (__half *)w16);
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
