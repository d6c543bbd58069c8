// Whole-tensor type conversions on the stream: weights of any type the device
// decodes (dq_elem, cuda-impl.h) to F16 or F32 for the prefill GEMMs
// (matmul.cu), activations to F16/BF16 for the 16-bit GEMMs, and F32 rows
// into an F16 KV cache (set_rows, elementwise.cu). The GEMV kernels and
// get_rows do not come here: they decode each weight as they read it.
#include "cuda-impl.h"

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

void launch_dequant_f16(cudaStream_t s, const uint8_t *w, size_t rb, uint32_t type,
                        int64_t n_rows, int64_t n_in, __half *out)
{
    k_dequant_f16<<<(unsigned)n_rows, 256, 0, s>>>(w, rb, type, n_in, out);
}

void launch_dequant_f32(cudaStream_t s, const uint8_t *w, size_t rb, uint32_t type,
                        int64_t n_rows, int64_t n_in, float *out)
{
    k_dequant_f32<<<(unsigned)n_rows, 256, 0, s>>>(w, rb, type, n_in, out);
}

void launch_f32_to_f16(cudaStream_t s, const float *x, __half *y, int64_t n)
{
    k_f32_to_f16<<<grid_1d(n), 256, 0, s>>>(x, y, n);
}

void launch_f32_to_bf16(cudaStream_t s, const float *x, __nv_bfloat16 *y, int64_t n)
{
    k_f32_to_bf16<<<grid_1d(n), 256, 0, s>>>(x, y, n);
}
