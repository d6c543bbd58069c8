/* Activation quantization for the integer-dot GEMV and its portable C
 * reference (exact integer block products; see cpu-qdot.h). The block
 * layouts are those of quant.c (ggml's). */
#include "cpu-qdot.h"

#include <math.h>
#include <string.h>

#include "quant.h"

static bool is_k_quant(uint32_t wtype)
{
    return wtype == MD_TYPE_Q4_K || wtype == MD_TYPE_Q5_K || wtype == MD_TYPE_Q6_K;
}

static bool is_legacy_quant(uint32_t wtype)
{
    return wtype == MD_TYPE_Q4_0 || wtype == MD_TYPE_Q4_1 || wtype == MD_TYPE_Q5_0 ||
           wtype == MD_TYPE_Q5_1 || wtype == MD_TYPE_Q8_0;
}

size_t md_xq_row_bytes(uint32_t wtype, int64_t n_in)
{
    if (is_k_quant(wtype))
        return (size_t)(n_in / MD_QK_K) * sizeof(struct md_xq256);
    if (is_legacy_quant(wtype))
        return (size_t)(n_in / MD_QK) * sizeof(struct md_xq32);
    return 0;
}

/* q[i] = round(x[i] / d) with d = max|x| / 127 (so |q| <= 127: maddubs
 * pairs never saturate). Returns d; NaN when a value is not finite (q is
 * then all zero). */
static float quantize_block(const float *x, int n, int8_t *q)
{
    float amax = 0.0f;
    bool finite = true;
    for (int i = 0; i < n; i++) {
        const float a = fabsf(x[i]);
        finite &= a <= 3.0e38f;    /* false for inf and NaN */
        amax = a > amax ? a : amax;
    }
    if (!finite) {
        memset(q, 0, (size_t)n);
        return NAN;
    }
    const float d = amax / 127.0f;
    const float id = d > 0.0f ? 1.0f / d : 0.0f;
    for (int i = 0; i < n; i++) {
        /* |x * id| <= 127 (+ rounding), so the conversion is defined */
        const float v = x[i] * id;
        int r = (int)(v + (v >= 0.0f ? 0.5f : -0.5f));
        q[i] = (int8_t)(r > 127 ? 127 : r < -127 ? -127 : r);
    }
    return d;
}

void md_xq_quantize_row(uint32_t wtype, const float *x, int64_t n_in, void *dst)
{
    if (is_k_quant(wtype)) {
        struct md_xq256 *b = dst;
        for (int64_t i = 0; i < n_in / MD_QK_K; i++, b++, x += MD_QK_K) {
            b->d = quantize_block(x, MD_QK_K, b->q);
            for (int j = 0; j < 16; j++) {
                int s = 0;
                for (int l = 0; l < 16; l++)
                    s += b->q[16 * j + l];
                b->bsum16[j] = (int16_t)s;
            }
            for (int j = 0; j < 8; j++)
                b->bsum32[j] = (int16_t)(b->bsum16[2 * j] + b->bsum16[2 * j + 1]);
        }
        return;
    }
    struct md_xq32 *b = dst;
    for (int64_t i = 0; i < n_in / MD_QK; i++, b++, x += MD_QK) {
        b->d = quantize_block(x, MD_QK, b->q);
        int s = 0;
        for (int l = 0; l < MD_QK; l++)
            s += b->q[l];
        b->sum = s;
    }
}

/* The 4- and 5-bit legacy types, which the AVX-512 and AVX2 kernels take
 * as md_xq128 rows. */
static bool legacy45(uint32_t wtype)
{
    return wtype == MD_TYPE_Q4_0 || wtype == MD_TYPE_Q4_1 || wtype == MD_TYPE_Q5_0 ||
           wtype == MD_TYPE_Q5_1;
}

size_t md_xq_avx512_row_bytes(uint32_t wtype, int64_t n_in)
{
    if (legacy45(wtype))
        return (size_t)((n_in / MD_QK + 3) / 4) * sizeof(struct md_xq128);
    if (wtype == MD_TYPE_Q8_0)   /* a multiple of 64: every row's values stay aligned */
        return (size_t)((md_xq64_pairs(n_in) * 72 + 63) / 64 * 64);
    return is_k_quant(wtype) ? md_xq_row_bytes(wtype, n_in) : 0;
}

static void xq128_block(const struct md_xq32 *src, int k, struct md_xq128 *p)
{
    memcpy(p->lo + 16 * k, src->q, 16);
    memcpy(p->hi + 16 * k, src->q + 16, 16);
    for (int m = 0; m < 4; m++) {
        const int8_t *lo = src->q + 4 * m, *hi = src->q + 16 + 4 * m;
        p->off[4 * k + m] = -8 * (lo[0] + lo[1] + lo[2] + lo[3] + hi[0] + hi[1] + hi[2] + hi[3]);
        p->d[4 * k + m] = src->d;
    }
}

static void xq64_block(const struct md_xq32 *src, int64_t b, int64_t n_in, uint8_t *row)
{
    uint8_t *u = row + 64 * (b / 2) + 32 * (b % 2);
    for (int j = 0; j < 32; j++)
        u[j] = (uint8_t)(src->q[j] + 128);
    ((float *)(row + 64 * md_xq64_pairs(n_in)))[b] = src->d;
}

void md_xq_avx512_row(uint32_t wtype, const void *xq, int64_t n_in, void *dst)
{
    if (is_k_quant(wtype)) {
        memcpy(dst, xq, md_xq_row_bytes(wtype, n_in));
        if (wtype == MD_TYPE_Q4_K || wtype == MD_TYPE_Q5_K)   /* by 32: the kernel's order 0 2 1 3 4 6 5 7 */
            for (struct md_xq256 *x = dst; x < (struct md_xq256 *)dst + n_in / 256; x++) {
                int8_t t[32];
                for (int h = 0; h < 2; h++) {
                    memcpy(t, x->q + 128 * h + 32, 32);
                    memcpy(x->q + 128 * h + 32, x->q + 128 * h + 64, 32);
                    memcpy(x->q + 128 * h + 64, t, 32);
                }
            }
        return;
    }
    const struct md_xq32 *src = xq;
    memset(dst, 0, md_xq_avx512_row_bytes(wtype, n_in));
    for (int64_t b = 0; b < n_in / MD_QK; b++) {
        if (wtype != MD_TYPE_Q8_0)   /* the 4- and 5-bit legacy types */
            xq128_block(src + b, (int)(b % 4), (struct md_xq128 *)dst + b / 4);
        else
            xq64_block(src + b, b, n_in, dst);
    }
}

size_t md_xq_avx2_row_bytes(uint32_t wtype, int64_t n_in)
{
    return legacy45(wtype) ? md_xq_avx512_row_bytes(wtype, n_in) : md_xq_row_bytes(wtype, n_in);
}

void md_xq_avx2_row(uint32_t wtype, const void *xq, int64_t n_in, void *dst)
{
    if (legacy45(wtype))
        md_xq_avx512_row(wtype, xq, n_in, dst);
    else
        memcpy(dst, xq, md_xq_row_bytes(wtype, n_in));
}

/* ---- reference block products ------------------------------------------ */

static inline float rd_f16(const uint8_t *p)
{
    return md_half_to_float((uint16_t)(p[0] | (p[1] << 8)));
}

static inline uint32_t rd_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;   /* little-endian hosts only, like the rest of the engine */
}

/* Integer dot of a legacy block's unsigned 4/5-bit values with q: element
 * j < 16 is the low nibble of qs[j], element j + 16 its high nibble, plus
 * (5-bit types) bit j of qh as bit 4. */
static int32_t dot_nibbles(const uint8_t *qs, uint32_t qh, bool five, const int8_t *q)
{
    int32_t s = 0;
    for (int j = 0; j < 16; j++) {
        int lo = qs[j] & 0x0f, hi = qs[j] >> 4;
        if (five) {
            lo |= (int)((qh >> j) & 1u) << 4;
            hi |= (int)((qh >> (j + 16)) & 1u) << 4;
        }
        s += lo * q[j] + hi * q[j + 16];
    }
    return s;
}

static float row_legacy(uint32_t wtype, const uint8_t *row, const struct md_xq32 *x, int64_t nb)
{
    float acc = 0.0f;
    const int64_t bb = md_type_block_bytes(wtype);
    for (int64_t b = 0; b < nb; b++, row += bb, x++) {
        const float dd = rd_f16(row) * x->d;
        switch (wtype) {
        case MD_TYPE_Q4_0:
            acc += dd * (float)(dot_nibbles(row + 2, 0, false, x->q) - 8 * x->sum);
            break;
        case MD_TYPE_Q4_1:
            acc += dd * (float)dot_nibbles(row + 4, 0, false, x->q) +
                   rd_f16(row + 2) * x->d * (float)x->sum;
            break;
        case MD_TYPE_Q5_0:
            acc += dd * (float)(dot_nibbles(row + 6, rd_u32(row + 2), true, x->q) - 16 * x->sum);
            break;
        case MD_TYPE_Q5_1:
            acc += dd * (float)dot_nibbles(row + 8, rd_u32(row + 4), true, x->q) +
                   rd_f16(row + 2) * x->d * (float)x->sum;
            break;
        default: { /* MD_TYPE_Q8_0 */
            int32_t s = 0;
            for (int j = 0; j < 32; j++)
                s += (int8_t)row[2 + j] * x->q[j];
            acc += dd * (float)s;
            break;
        }
        }
    }
    return acc;
}


/* Q4_K (qh NULL) and Q5_K: 64-value chunk c holds sub-blocks 2c (low
 * nibbles of qs[32c..32c+31]) and 2c+1 (high nibbles), bit 2c / 2c+1 of
 * qh[l] their 5th bit. Value = d * sc * u - dmin * m. */
static float sb_q45_k(const uint8_t *blk, bool five, const struct md_xq256 *x)
{
    int sc[8], m[8];
    md_k_scales(blk + 4, sc, m);
    const uint8_t *qh = blk + 16, *qs = blk + (five ? 48 : 16);
    int32_t isum = 0, msum = 0;
    for (int c = 0; c < 4; c++) {
        int32_t slo = 0, shi = 0;
        for (int l = 0; l < 32; l++) {
            int lo = qs[32 * c + l] & 0x0f, hi = qs[32 * c + l] >> 4;
            if (five) {
                lo |= ((qh[l] >> (2 * c)) & 1) << 4;
                hi |= ((qh[l] >> (2 * c + 1)) & 1) << 4;
            }
            slo += lo * x->q[64 * c + l];
            shi += hi * x->q[64 * c + 32 + l];
        }
        isum += sc[2 * c] * slo + sc[2 * c + 1] * shi;
    }
    for (int j = 0; j < 8; j++)
        msum += m[j] * x->bsum32[j];
    return rd_f16(blk) * x->d * (float)isum - rd_f16(blk + 2) * x->d * (float)msum;
}

/* Q6_K: 128-value half h, l < 32: values l, l+32, l+64, l+96 from the low
 * nibbles of ql[l], ql[l+32], then their high nibbles, with 2-bit pairs 0,
 * 1, 2, 3 of qh[l] on top; minus 32; int8 scale per 16 values. */
static float sb_q6_k(const uint8_t *blk, const struct md_xq256 *x)
{
    const int8_t *sc = (const int8_t *)(blk + 192);
    int32_t isum = 0;
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = blk + 64 * h, *qh = blk + 128 + 32 * h;
        const int8_t *q = x->q + 128 * h;
        int32_t s[8] = { 0 };   /* per 16 values of this half */
        for (int l = 0; l < 32; l++) {
            const int u1 = (ql[l] & 0x0f) | ((qh[l] & 3) << 4);
            const int u2 = (ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4);
            const int u3 = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
            const int u4 = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
            s[l / 16 + 0] += u1 * q[l];
            s[l / 16 + 2] += u2 * q[l + 32];
            s[l / 16 + 4] += u3 * q[l + 64];
            s[l / 16 + 6] += u4 * q[l + 96];
        }
        for (int j = 0; j < 8; j++)
            isum += sc[8 * h + j] * (s[j] - 32 * x->bsum16[8 * h + j]);
    }
    return rd_f16(blk + 208) * x->d * (float)isum;
}

static float row_k(uint32_t wtype, const uint8_t *row, const struct md_xq256 *x, int64_t nb)
{
    float acc = 0.0f;
    const int64_t bb = md_type_block_bytes(wtype);
    for (int64_t b = 0; b < nb; b++, row += bb, x++)
        acc += wtype == MD_TYPE_Q6_K ? sb_q6_k(row, x) : sb_q45_k(row, wtype == MD_TYPE_Q5_K, x);
    return acc;
}

void md_qdot_ref(uint32_t wtype, const void *XQ, int n_tok, size_t xq_row_bytes,
                 int64_t n_in, const uint8_t *W, size_t row_bytes,
                 int64_t n_rows, float *Y, int64_t ldy)
{
    const bool k = is_k_quant(wtype);
    const int64_t nb = n_in / (k ? MD_QK_K : MD_QK);
    for (int64_t r = 0; r < n_rows; r++) {
        const uint8_t *row = W + (size_t)r * row_bytes;
        for (int t = 0; t < n_tok; t++) {
            const void *x = (const char *)XQ + (size_t)t * xq_row_bytes;
            Y[t * ldy + r] = k ? row_k(wtype, row, x, nb) : row_legacy(wtype, row, x, nb);
        }
    }
}
