/* Tensor element types: block sizes, fp16/bf16 conversion, dequantization
 * and the reference Q8_0/Q4_0 quantizers.
 *
 * The block layouts are those of ggml (see docs/llama-cpp.md §2);
 * the arithmetic is ordered exactly like ggml's reference dequantizers (and
 * gguf-py's numpy ones), one rounding per operation, so the results are
 * bit-identical to theirs. Products and sums are kept in separate
 * statements so that no compiler contracts them into an FMA.
 */
#include "quant.h"

#include <math.h>
#include <string.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

struct md_type_info {
    uint32_t type;
    const char *name;
    int64_t blck;
    int64_t bytes;
};

static const struct md_type_info md_types[] = {
    { MD_TYPE_F32,  "F32",  1,      4 },
    { MD_TYPE_F16,  "F16",  1,      2 },
    { MD_TYPE_Q4_0, "Q4_0", MD_QK,  2 + MD_QK / 2 },
    { MD_TYPE_Q4_1, "Q4_1", MD_QK,  4 + MD_QK / 2 },
    { MD_TYPE_Q5_0, "Q5_0", MD_QK,  2 + 4 + MD_QK / 2 },
    { MD_TYPE_Q5_1, "Q5_1", MD_QK,  4 + 4 + MD_QK / 2 },
    { MD_TYPE_Q8_0, "Q8_0", MD_QK,  2 + MD_QK },
    { MD_TYPE_Q4_K, "Q4_K", MD_QK_K, 2 + 2 + 12 + MD_QK_K / 2 },
    { MD_TYPE_Q5_K, "Q5_K", MD_QK_K, 2 + 2 + 12 + MD_QK_K / 8 + MD_QK_K / 2 },
    { MD_TYPE_Q6_K, "Q6_K", MD_QK_K, MD_QK_K / 2 + MD_QK_K / 4 + MD_QK_K / 16 + 2 },
    { MD_TYPE_BF16, "BF16", 1,      2 },
};

static const struct md_type_info *type_info(uint32_t type)
{
    for (size_t i = 0; i < sizeof md_types / sizeof md_types[0]; i++)
        if (md_types[i].type == type)
            return &md_types[i];
    return NULL;
}

bool md_type_supported(uint32_t type) { return type_info(type) != NULL; }

const char *md_type_name(uint32_t type)
{
    const struct md_type_info *t = type_info(type);
    return t ? t->name : "?";
}

bool md_type_layout(uint32_t type, int64_t *block_elems, int64_t *block_bytes)
{
    /* (elements, bytes) per block of every ggml type id, from gguf-py's
     * GGML_QUANT_SIZES; 0 marks ids that were removed or never assigned. */
    static const int16_t layout[][2] = {
        { 1, 4 }, { 1, 2 }, { 32, 18 }, { 32, 20 }, { 0, 0 }, { 0, 0 }, { 32, 22 }, { 32, 24 },
        { 32, 34 }, { 32, 36 }, { 256, 84 }, { 256, 110 }, { 256, 144 }, { 256, 176 },
        { 256, 210 }, { 256, 292 }, { 256, 66 }, { 256, 74 }, { 256, 98 }, { 256, 50 },
        { 32, 18 }, { 256, 110 }, { 256, 82 }, { 256, 136 }, { 1, 1 }, { 1, 2 }, { 1, 4 },
        { 1, 8 }, { 1, 8 }, { 256, 56 }, { 1, 2 }, { 0, 0 }, { 0, 0 }, { 0, 0 }, { 256, 54 },
        { 256, 66 }, { 0, 0 }, { 0, 0 }, { 0, 0 }, { 32, 17 },
    };
    if (type >= sizeof layout / sizeof layout[0] || layout[type][0] == 0)
        return false;
    *block_elems = layout[type][0];
    *block_bytes = layout[type][1];
    return true;
}

const char *md_ggml_type_name(uint32_t type)
{
    /* Names of the ggml type ids (gguf-py constants.py GGMLQuantizationType),
     * for error messages only. */
    static const char *const names[] = {
        "F32", "F16", "Q4_0", "Q4_1", NULL, NULL, "Q5_0", "Q5_1", "Q8_0", "Q8_1",
        "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS",
        "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16",
        "I32", "I64", "F64", "IQ1_M", "BF16", NULL, NULL, NULL, "TQ1_0", "TQ2_0",
        NULL, NULL, NULL, "MXFP4",
    };
    if (type < sizeof names / sizeof names[0] && names[type])
        return names[type];
    return "?";
}

int64_t md_type_block_elems(uint32_t type)
{
    const struct md_type_info *t = type_info(type);
    return t ? t->blck : 0;
}

int64_t md_type_block_bytes(uint32_t type)
{
    const struct md_type_info *t = type_info(type);
    return t ? t->bytes : 0;
}

int64_t md_type_row_bytes(uint32_t type, int64_t n)
{
    const struct md_type_info *t = type_info(type);
    if (!t || n < 0 || n % t->blck)
        return -1;
    int64_t r;
    if (__builtin_mul_overflow(n / t->blck, t->bytes, &r))
        return -1;
    return r;
}

/* ---- fp16 / bf16 ------------------------------------------------------- */

static inline uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

float md_fp16_to_fp32(uint16_t h)
{
    return md_half_to_float(h);
}

uint16_t md_fp32_to_fp16(float f)
{
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) {                   /* NaN: keep top payload, quiet */
        return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    }
    if (a >= 0x477ff000u)                    /* >= 65520 rounds to inf */
        return (uint16_t)(sign | 0x7c00u);
    uint32_t exp = a >> 23;
    if (exp >= 113) {                        /* normal half: rebias, round */
        uint32_t r = a - (112u << 23);       /* exponent now biased for half */
        uint32_t lsb = (r >> 13) & 1u;
        r += 0xfffu + lsb;                   /* RNE; may carry into exponent */
        return (uint16_t)(sign | (r >> 13));
    }
    if (exp < 102)                           /* < 2^-25: rounds to zero */
        return sign;
    /* Subnormal half: value = m * 2^(exp-150) with m the 24-bit mantissa;
     * the half ulp is 2^-24, so shift right by (126 - exp) with RNE. */
    uint32_t m = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - exp;             /* 14..24 */
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u)))
        q++;
    return (uint16_t)(sign | q);             /* q may be 0x400: smallest normal */
}

float md_bf16_to_fp32(uint16_t h) { return md_bf16_to_float(h); }

uint16_t md_fp32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)     /* NaN: truncate, force quiet */
        return (uint16_t)((u >> 16) | 64u);
    uint32_t lsb = (u >> 16) & 1u;
    return (uint16_t)(((uint64_t)u + 0x7fffu + lsb) >> 16);
}

/* ---- dequantization ---------------------------------------------------- */

static inline float rd_f16(const uint8_t *p) { return md_half_to_float((uint16_t)(p[0] | (p[1] << 8))); }

static void dq_q4_0(const uint8_t *b, float *y)
{
    float d = rd_f16(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < MD_QK / 2; j++) {
        y[j] = (float)((qs[j] & 0x0f) - 8) * d;
        y[j + MD_QK / 2] = (float)((qs[j] >> 4) - 8) * d;
    }
}

static void dq_q4_1(const uint8_t *b, float *y)
{
    float d = rd_f16(b), m = rd_f16(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < MD_QK / 2; j++) {
        float p0 = (float)(qs[j] & 0x0f) * d;
        float p1 = (float)(qs[j] >> 4) * d;
        y[j] = p0 + m;
        y[j + MD_QK / 2] = p1 + m;
    }
}

static inline uint32_t rd_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void dq_q5_0(const uint8_t *b, float *y)
{
    float d = rd_f16(b);
    uint32_t qh = rd_u32(b + 2);
    const uint8_t *qs = b + 6;
    for (int j = 0; j < MD_QK / 2; j++) {
        int lo = (qs[j] & 0x0f) | (int)(((qh >> j) & 1u) << 4);
        int hi = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
        y[j] = (float)(lo - 16) * d;
        y[j + MD_QK / 2] = (float)(hi - 16) * d;
    }
}

static void dq_q5_1(const uint8_t *b, float *y)
{
    float d = rd_f16(b), m = rd_f16(b + 2);
    uint32_t qh = rd_u32(b + 4);
    const uint8_t *qs = b + 8;
    for (int j = 0; j < MD_QK / 2; j++) {
        int lo = (qs[j] & 0x0f) | (int)(((qh >> j) & 1u) << 4);
        int hi = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
        float p0 = (float)lo * d;
        float p1 = (float)hi * d;
        y[j] = p0 + m;
        y[j + MD_QK / 2] = p1 + m;
    }
}

static void dq_q8_0(const uint8_t *b, float *y)
{
    float d = rd_f16(b);
    for (int j = 0; j < MD_QK; j++)
        y[j] = (float)(int8_t)b[2 + j] * d;
}

/* 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block. */
static inline void k_scale_min(const uint8_t *q, int j, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

static void dq_q4_k(const uint8_t *b, float *y)
{
    float d = rd_f16(b), dmin = rd_f16(b + 2);
    const uint8_t *scales = b + 4, *qs = b + 16;
    for (int c = 0; c < MD_QK_K / 64; c++) {        /* 64-element chunks */
        uint8_t sc, m;
        k_scale_min(scales, 2 * c, &sc, &m);
        float d1 = d * (float)sc, m1 = dmin * (float)m;
        k_scale_min(scales, 2 * c + 1, &sc, &m);
        float d2 = d * (float)sc, m2 = dmin * (float)m;
        const uint8_t *q = qs + 32 * c;
        for (int l = 0; l < 32; l++) {
            float p = d1 * (float)(q[l] & 0x0f);
            y[64 * c + l] = p - m1;
        }
        for (int l = 0; l < 32; l++) {
            float p = d2 * (float)(q[l] >> 4);
            y[64 * c + 32 + l] = p - m2;
        }
    }
}

static void dq_q5_k(const uint8_t *b, float *y)
{
    float d = rd_f16(b), dmin = rd_f16(b + 2);
    const uint8_t *scales = b + 4, *qh = b + 16, *qs = b + 48;
    for (int c = 0; c < MD_QK_K / 64; c++) {
        uint8_t sc, m;
        k_scale_min(scales, 2 * c, &sc, &m);
        float d1 = d * (float)sc, m1 = dmin * (float)m;
        k_scale_min(scales, 2 * c + 1, &sc, &m);
        float d2 = d * (float)sc, m2 = dmin * (float)m;
        const uint8_t *q = qs + 32 * c;
        for (int l = 0; l < 32; l++) {
            int v = (q[l] & 0x0f) | (((qh[l] >> (2 * c)) & 1) << 4);
            float p = d1 * (float)v;
            y[64 * c + l] = p - m1;
        }
        for (int l = 0; l < 32; l++) {
            int v = (q[l] >> 4) | (((qh[l] >> (2 * c + 1)) & 1) << 4);
            float p = d2 * (float)v;
            y[64 * c + 32 + l] = p - m2;
        }
    }
}

static void dq_q6_k(const uint8_t *b, float *y)
{
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = rd_f16(b + 208);
    for (int h = 0; h < 2; h++) {                   /* 128-element halves */
        const uint8_t *l0 = ql + 64 * h, *h0 = qh + 32 * h;
        const int8_t *s = sc + 8 * h;
        float *o = y + 128 * h;
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((l0[l] & 0x0f) | (((h0[l] >> 0) & 3) << 4)) - 32;
            int q2 = ((l0[l + 32] & 0x0f) | (((h0[l] >> 2) & 3) << 4)) - 32;
            int q3 = ((l0[l] >> 4) | (((h0[l] >> 4) & 3) << 4)) - 32;
            int q4 = ((l0[l + 32] >> 4) | (((h0[l] >> 6) & 3) << 4)) - 32;
            float ds1 = d * (float)s[is + 0];
            float ds2 = d * (float)s[is + 2];
            float ds3 = d * (float)s[is + 4];
            float ds4 = d * (float)s[is + 6];
            o[l] = ds1 * (float)q1;
            o[l + 32] = ds2 * (float)q2;
            o[l + 64] = ds3 * (float)q3;
            o[l + 96] = ds4 * (float)q4;
        }
    }
}

void md_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n)
{
    const struct md_type_info *t = type_info(type);
    if (!t || n <= 0 || n % t->blck || !src || !dst)
        return;
    const uint8_t *s = src;
    int64_t nb = n / t->blck;
    switch (type) {
    case MD_TYPE_F32:
        memcpy(dst, s, (size_t)n * 4);
        return;
    case MD_TYPE_F16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = md_half_to_float((uint16_t)(s[2 * i] | (s[2 * i + 1] << 8)));
        return;
    case MD_TYPE_BF16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = md_bf16_to_float((uint16_t)(s[2 * i] | (s[2 * i + 1] << 8)));
        return;
    default:
        break;
    }
    void (*fn)(const uint8_t *, float *) = NULL;
    switch (type) {
    case MD_TYPE_Q4_0: fn = dq_q4_0; break;
    case MD_TYPE_Q4_1: fn = dq_q4_1; break;
    case MD_TYPE_Q5_0: fn = dq_q5_0; break;
    case MD_TYPE_Q5_1: fn = dq_q5_1; break;
    case MD_TYPE_Q8_0: fn = dq_q8_0; break;
    case MD_TYPE_Q4_K: fn = dq_q4_k; break;
    case MD_TYPE_Q5_K: fn = dq_q5_k; break;
    case MD_TYPE_Q6_K: fn = dq_q6_k; break;
    default: return;
    }
    for (int64_t i = 0; i < nb; i++)
        fn(s + i * t->bytes, dst + i * t->blck);
}

/* ---- quantization ------------------------------------------------------ */

/* A float that should be an integer in [lo, hi] to that integer; NaN -> 0. */
static inline int clamp_to_int(float v, int lo, int hi)
{
    if (!(v == v)) return 0;
    if (v < (float)lo) return lo;
    if (v > (float)hi) return hi;
    return (int)v;
}

void md_quantize_row_q8_0(const float *src, void *dst, int64_t n)
{
    if (!src || !dst || n <= 0 || n % MD_QK)
        return;
    uint8_t *out = dst;
    for (int64_t i = 0; i < n / MD_QK; i++) {
        const float *x = src + i * MD_QK;
        uint8_t *b = out + i * (2 + MD_QK);
        float amax = 0.0f;
        for (int j = 0; j < MD_QK; j++) {
            float v = fabsf(x[j]);
            amax = amax > v ? amax : v;   /* like ggml's MAX: NaN is skipped */
        }
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t dh = md_fp32_to_fp16(d);
        b[0] = (uint8_t)(dh & 0xff);
        b[1] = (uint8_t)(dh >> 8);
        for (int j = 0; j < MD_QK; j++) {
            float v = x[j] * id;
            b[2 + j] = (uint8_t)(int8_t)clamp_to_int(roundf(v), -128, 127);
        }
    }
}

void md_quantize_row_q4_0(const float *src, void *dst, int64_t n)
{
    if (!src || !dst || n <= 0 || n % MD_QK)
        return;
    uint8_t *out = dst;
    for (int64_t i = 0; i < n / MD_QK; i++) {
        const float *x = src + i * MD_QK;
        uint8_t *b = out + i * (2 + MD_QK / 2);
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < MD_QK; j++) {    /* signed value of largest |x| */
            float v = fabsf(x[j]);
            if (amax < v) {
                amax = v;
                max = x[j];
            }
        }
        float d = max / -8.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t dh = md_fp32_to_fp16(d);
        b[0] = (uint8_t)(dh & 0xff);
        b[1] = (uint8_t)(dh >> 8);
        for (int j = 0; j < MD_QK / 2; j++) {
            float v0 = x[j] * id, v1 = x[j + MD_QK / 2] * id;
            float s0 = v0 + 8.5f, s1 = v1 + 8.5f;
            int q0 = clamp_to_int(s0, 0, 15);
            int q1 = clamp_to_int(s1, 0, 15);
            b[2 + j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}
