/* Tensor element types, their block layouts, and (de)quantization.
 * Block layouts follow ggml's (docs/llama-cpp.md §2). All values
 * are little-endian; fp16 is IEEE binary16, bf16 the top half of an f32. */
#ifndef MD_QUANT_H
#define MD_QUANT_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <string.h>

enum md_type {
    MD_TYPE_F32 = 0, MD_TYPE_F16 = 1, MD_TYPE_Q4_0 = 2, MD_TYPE_Q4_1 = 3,
    MD_TYPE_Q5_0 = 6, MD_TYPE_Q5_1 = 7, MD_TYPE_Q8_0 = 8,
    MD_TYPE_Q4_K = 12, MD_TYPE_Q5_K = 13, MD_TYPE_Q6_K = 14,
    MD_TYPE_BF16 = 30,
};

#define MD_QK 32      /* elements per block of Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 */
#define MD_QK_K 256   /* elements per super-block of the K quants */

/* True for the types listed above. */
bool md_type_supported(uint32_t type);
const char *md_type_name(uint32_t type);       /* "F16", "Q4_K", "?" */
int64_t md_type_block_elems(uint32_t type);    /* 1, 32 or 256; 0 if unsupported */
int64_t md_type_block_bytes(uint32_t type);    /* e.g. 34 for Q8_0; 0 if unsupported */

/* Block layout of any ggml type id a GGUF file may carry, computable by us
 * or not (Q2_K, IQ*, ...): the reader validates sizes with it, so a file is
 * only refused where a tensor of an unsupported type is actually needed.
 * Returns false for an unknown id. */
bool md_type_layout(uint32_t type, int64_t *block_elems, int64_t *block_bytes);

/* Bytes of a row of n elements; returns -1 when n is not a multiple of the
 * block size or the type is unsupported. Overflow-safe for n < 2^62. */
int64_t md_type_row_bytes(uint32_t type, int64_t n);

float md_fp16_to_fp32(uint16_t h);
/* The same conversion inline and without branches, so that loops of it
 * vectorize: exponent and mantissa moved into an f32 and scaled by 2^112
 * (exact, a power of two, for normal and subnormal halves alike), then
 * infinities and NaNs (payload kept) rebuilt and the sign put back. Exact
 * for all 65,536 inputs unless denormal inputs are flushed to zero (DAZ,
 * off by default), which would turn subnormal halves into zeros. */
static inline float md_half_to_float(uint16_t h)
{
    uint32_t u = (uint32_t)(h & 0x7fffu) << 13;
    float f;
    memcpy(&f, &u, 4);
    f *= 0x1p112f;
    memcpy(&u, &f, 4);
    /* a mask, not a conditional: GCC leaves `c ? a : b` on type-punned
     * values as a branch, and a loop with a branch does not vectorize */
    const uint32_t inf_nan = 0u - (uint32_t)((h & 0x7c00u) == 0x7c00u);
    u = (u & ~inf_nan) | ((0x7f800000u | (uint32_t)(h & 0x3ffu) << 13) & inf_nan);
    u |= (uint32_t)(h & 0x8000u) << 16;
    memcpy(&f, &u, 4);
    return f;
}
/* fp32 -> fp16: round to nearest even; overflow gives inf; NaN keeps its sign
 * and top 10 payload bits and is made quiet (like x86 F16C). */
uint16_t md_fp32_to_fp16(float f);              /* round to nearest even */
float md_bf16_to_fp32(uint16_t h);
/* md_bf16_to_fp32 inline: the library is position-independent, and GCC does
 * not inline an exported function into its callers (it could be interposed),
 * so loops over the exported one make a call per element. */
static inline float md_bf16_to_float(uint16_t h)
{
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
uint16_t md_fp32_to_bf16(float f);              /* RNE, NaN kept quiet */

/* Dequantize n elements (n a multiple of the block size) of `type`. */
void md_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);

/* Quantize n floats (n % 32 == 0) to Q8_0 the way ggml's reference does:
 * d = max|x| / 127, q = round(x / d). (Precisely: id = d ? 1/d : 0,
 * q = roundf(x * id), d stored as fp16, like quantize_row_q8_0_ref. NaN
 * inputs, which ggml leaves undefined, give q = 0.) */
void md_quantize_row_q8_0(const float *src, void *dst, int64_t n);

/* (Added) Q4_0 the way ggml's reference quantize_row_q4_0_ref does:
 * d = -max/8 (max: the value of largest magnitude), q = min(15, (int)(x/d + 8.5)). */
void md_quantize_row_q4_0(const float *src, void *dst, int64_t n);

/* (Added) Name of any ggml type id ("Q2_K", "IQ4_XS", ...), supported or
 * not, for messages; "?" when unknown. */
const char *md_ggml_type_name(uint32_t type);

#endif
