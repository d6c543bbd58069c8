/* Integer-dot GEMM (cpu-qgemm.h): panel packing in portable C and the
 * driver that quantizes the activations once and splits the product into
 * work items of a few panels each, all tokens. The block layouts are those of
 * quant.c (ggml's), read as in cpu-qdot.c's reference. */
#include "cpu-qgemm.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cpu-qdot.h"
#include "mustdrop.h"
#include "quant.h"

static bool is_k_quant(uint32_t wtype)
{
    return wtype == MD_TYPE_Q4_K || wtype == MD_TYPE_Q5_K || wtype == MD_TYPE_Q6_K;
}

size_t md_qgemm_panel_bytes(uint32_t wtype, int64_t n_in)
{
    if (md_xq_row_bytes(wtype, MD_QK_K) == 0)
        return 0;
    if (is_k_quant(wtype))
        return (size_t)(n_in / MD_QK_K) * sizeof(struct md_qgemm_blk256);
    return (size_t)(n_in / MD_QK) * sizeof(struct md_qgemm_blk32);
}

static float rd_f16(const uint8_t *p)
{
    return md_half_to_float((uint16_t)(p[0] | (p[1] << 8)));
}

static uint32_t rd_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* A legacy block's 32 values as unsigned bytes u (value = d (u - offset)
 * + m); returns m (0 for the types with an offset). */
static float unpack_legacy(uint32_t wtype, const uint8_t *blk, uint8_t u[32], float *d)
{
    *d = rd_f16(blk);
    const uint8_t *qs;
    uint32_t qh = 0;
    float m = 0.0f;
    switch (wtype) {
    case MD_TYPE_Q8_0:
        for (int j = 0; j < 32; j++)
            u[j] = (uint8_t)(blk[2 + j] ^ 0x80);   /* int8 + 128 */
        return 0.0f;
    case MD_TYPE_Q4_0: qs = blk + 2; break;
    case MD_TYPE_Q4_1: qs = blk + 4; m = rd_f16(blk + 2); break;
    case MD_TYPE_Q5_0: qs = blk + 6; qh = rd_u32(blk + 2); break;
    default: /* MD_TYPE_Q5_1 */ qs = blk + 8; qh = rd_u32(blk + 4); m = rd_f16(blk + 2); break;
    }
    for (int j = 0; j < 16; j++) {
        u[j] = (uint8_t)((qs[j] & 0x0f) | (((qh >> j) & 1u) << 4));
        u[j + 16] = (uint8_t)((qs[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4));
    }
    return m;
}


/* One row's super-block into lane r of b: values, scales and mins per
 * 16-value group (a Q4_K/Q5_K 32-value sub-block is two groups with one
 * scale; its mins pair with bsum32, so only mn[0..7] are used). */
static void pack_k(uint32_t wtype, const uint8_t *blk, int r, struct md_qgemm_blk256 *b)
{
    uint8_t u[256];
    int sc[16], mn[16] = { 0 };
    if (wtype == MD_TYPE_Q6_K) {
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = blk + 64 * h, *qh = blk + 128 + 32 * h;
            for (int l = 0; l < 32; l++) {
                u[128 * h + l] = (uint8_t)((ql[l] & 0x0f) | ((qh[l] & 3) << 4));
                u[128 * h + l + 32] = (uint8_t)((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4));
                u[128 * h + l + 64] = (uint8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
                u[128 * h + l + 96] = (uint8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
            }
        }
        for (int g = 0; g < 16; g++) {
            sc[g] = (int8_t)blk[192 + g];
            mn[g] = 32 * sc[g];
        }
        b->d[r] = b->dmin[r] = rd_f16(blk + 208);
    } else {
        const bool five = wtype == MD_TYPE_Q5_K;
        const uint8_t *qh = blk + 16, *qs = blk + (five ? 48 : 16);
        int s8[8], m8[8];
        md_k_scales(blk + 4, s8, m8);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                const int hb = five ? qh[l] >> (2 * c) : 0;
                u[64 * c + l] = (uint8_t)((qs[32 * c + l] & 0x0f) | ((hb & 1) << 4));
                u[64 * c + 32 + l] = (uint8_t)((qs[32 * c + l] >> 4) | (((hb >> 1) & 1) << 4));
            }
        for (int g = 0; g < 16; g++)
            sc[g] = s8[g / 2];
        for (int j = 0; j < 8; j++)
            mn[j] = m8[j];
        b->d[r] = rd_f16(blk);
        b->dmin[r] = rd_f16(blk + 2);
    }
    for (int s = 0; s < 64; s++)
        memcpy(b->u[s][r], u + 4 * s, 4);
    for (int g = 0; g < 16; g++)
        b->sc[g][r] = sc[g];
    for (int p = 0; p < 8; p++)
        b->mn2[p][r] = (int32_t)(((uint32_t)(uint16_t)mn[2 * p + 1] << 16) | (uint16_t)mn[2 * p]);
}

void md_qgemm_pack(uint32_t wtype, const uint8_t *W, size_t row_bytes, int nrows,
                   int64_t n_in, void *panel)
{
    memset(panel, 0, md_qgemm_panel_bytes(wtype, n_in));
    const int64_t bb = md_type_block_bytes(wtype);
    if (is_k_quant(wtype)) {
        struct md_qgemm_blk256 *b = panel;
        for (int64_t k = 0; k < n_in / MD_QK_K; k++, b++)
            for (int r = 0; r < nrows; r++)
                pack_k(wtype, W + (size_t)r * row_bytes + (size_t)(k * bb), r, b);
        return;
    }
    struct md_qgemm_blk32 *b = panel;
    for (int64_t k = 0; k < n_in / MD_QK; k++, b++)
        for (int r = 0; r < nrows; r++) {
            uint8_t u[32];
            b->m[r] = unpack_legacy(wtype, W + (size_t)r * row_bytes + (size_t)(k * bb), u, &b->d[r]);
            for (int s = 0; s < 8; s++)
                memcpy(b->u[s][r], u + 4 * s, 4);
        }
}

/* ---- driver --------------------------------------------------------------- */

#if defined(__x86_64__) || defined(__i386__)

/* Smallest n_tok that takes the GEMM; fewer take the GEMV. */
#ifndef MD_QGEMM_MIN_TOK
#define MD_QGEMM_MIN_TOK 9
#endif
/* Largest n_tok of the GEMV (the md_qdot_fn kernels take up to 8). */
#define MD_GEMV_TOK 8
/* Bytes of quantized activations one work item multiplies with each of
 * its panels (kept in L2 while the panels pass over them). */
#ifndef MD_QGEMM_X_BYTES
#define MD_QGEMM_X_BYTES (256 * 1024)
#endif
/* Panels per work item. */
#define QGEMM_PANELS_PER_ITEM 4

struct qgemm_job {
    uint32_t wtype;
    const float *X;
    int64_t n_tok, n_in, n_out;
    const uint8_t *W;
    size_t row_bytes;
    float *Y;
    char *xq;                 /* n_tok quantized rows */
    size_t xq_row_bytes;
    char *panels;             /* QGEMM_PANELS_PER_ITEM panels per thread */
    size_t panel_bytes;
    int64_t tok_per_chunk, n_items;
    atomic_llong next;
};

static void quantize_task(void *arg, int ith, int nth)
{
    struct qgemm_job *j = arg;
    for (int64_t t = j->n_tok * ith / nth; t < j->n_tok * (ith + 1) / nth; t++)
        md_xq_quantize_row(j->wtype, j->X + t * j->n_in, j->n_in, j->xq + (size_t)t * j->xq_row_bytes);
}

/* Work item `it`: a group of panels, packed once, times every token,
 * chunk by chunk (a chunk of activations stays in L2 while the packed
 * panels pass over it). */
static void gemm_item(struct qgemm_job *j, char *panels, int64_t it)
{
    const int64_t p0 = it * QGEMM_PANELS_PER_ITEM;
    const int64_t n_panels = (j->n_out + MD_QGEMM_NR - 1) / MD_QGEMM_NR;
    const int64_t np = n_panels - p0 < QGEMM_PANELS_PER_ITEM ? n_panels - p0 : QGEMM_PANELS_PER_ITEM;
    for (int64_t p = 0; p < np; p++) {
        const int64_t o0 = (p0 + p) * MD_QGEMM_NR;
        const int nrows = (int)(j->n_out - o0 < MD_QGEMM_NR ? j->n_out - o0 : MD_QGEMM_NR);
        md_qgemm_pack(j->wtype, j->W + (size_t)o0 * j->row_bytes, j->row_bytes, nrows, j->n_in,
                      panels + (size_t)p * j->panel_bytes);
    }
    for (int64_t t0 = 0; t0 < j->n_tok; t0 += j->tok_per_chunk) {
        const int64_t nt = j->n_tok - t0 < j->tok_per_chunk ? j->n_tok - t0 : j->tok_per_chunk;
        for (int64_t p = 0; p < np; p++) {
            const int64_t o0 = (p0 + p) * MD_QGEMM_NR;
            const int nrows = (int)(j->n_out - o0 < MD_QGEMM_NR ? j->n_out - o0 : MD_QGEMM_NR);
            md_qgemm_avx512vnni(j->wtype, panels + (size_t)p * j->panel_bytes, j->n_in,
                                j->xq + (size_t)t0 * j->xq_row_bytes, nt, j->xq_row_bytes,
                                j->Y + t0 * j->n_out + o0, j->n_out, nrows);
        }
    }
}

static void gemm_task(void *arg, int ith, int nth)
{
    struct qgemm_job *j = arg;
    (void)nth;
    char *panels = j->panels + (size_t)ith * QGEMM_PANELS_PER_ITEM * j->panel_bytes;
    for (;;) {
        const int64_t it = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (it >= j->n_items)
            break;
        gemm_item(j, panels, it);
    }
}

/* ---- GEMV (n_tok <= 8) with the AVX-512 VNNI kernels of cpu-qdot.h ------- */

struct qgemv_job {
    uint32_t wtype;
    int n_tok;
    int64_t n_in, n_out, chunk, n_items;
    const uint8_t *W;
    size_t row_bytes;
    float *Y;
    const char *xq;
    size_t xq_row_bytes;
    atomic_llong next;
};

static void gemv_task(void *arg, int ith, int nth)
{
    struct qgemv_job *j = arg;
    (void)ith, (void)nth;
    for (;;) {
        const int64_t it = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (it >= j->n_items)
            break;
        const int64_t r0 = it * j->chunk, r1 = r0 + j->chunk < j->n_out ? r0 + j->chunk : j->n_out;
        md_qdot_avx512vnni(j->wtype, j->xq, j->n_tok, j->xq_row_bytes, j->n_in, j->W + (size_t)r0 * j->row_bytes,
                           j->row_bytes, r1 - r0, j->Y + r0, j->n_out);
    }
}

/* A 64-byte aligned buffer of `bytes`: tp's caller buffer (kept between
 * calls: the decode path allocates nothing), or without a pool one of our
 * own, returned in *own for the caller to free. */
static void *buffer(struct md_threadpool *tp, size_t bytes, void **own)
{
    *own = tp ? NULL : aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    return tp ? md_threadpool_caller_scratch(tp, bytes) : *own;
}

/* Whether md_matmul_qgemm computes this product itself (the GEMM, or the
 * AVX-512 GEMV for the types it has) rather than md_matmul_qdot. */
static bool qgemm_applies(enum md_cpu_isa isa, uint32_t wtype, int64_t n_tok, int64_t n_in, int64_t n_out)
{
    const int64_t be = md_type_block_elems(wtype);
    if (isa != MD_ISA_AVX512 || n_tok <= 0 || n_out <= 0 || n_in <= 0 || be <= 0 || n_in % be != 0 ||
        md_qgemm_panel_bytes(wtype, MD_QK_K) == 0)
        return false;
    if (n_tok < MD_QGEMM_MIN_TOK && (n_tok > MD_GEMV_TOK || !md_qdot_avx512vnni_has(wtype)))
        return false;
    return md_qgemm_avx512vnni_usable();
}

/* GEMV rows per work item: about 8 items per thread, 32..512 rows (as
 * cpu-kernels.c's GEMV: long runs keep the prefetchers streaming). */
static int64_t gemv_chunk(int64_t n_out, int nth)
{
    int64_t c = (n_out / (8 * (int64_t)nth) + 15) / 16 * 16;
    return c < 32 ? 32 : c > 512 ? 512 : c;
}

static int gemv(struct md_threadpool *tp, const float *X, int64_t n_tok, int64_t n_in,
                const uint8_t *W, uint32_t wtype, int64_t n_out, float *Y)
{
    struct qgemv_job j = {
        .wtype = wtype, .n_tok = (int)n_tok, .n_in = n_in, .n_out = n_out, .W = W,
        .row_bytes = (size_t)md_type_row_bytes(wtype, n_in), .Y = Y,
        .xq_row_bytes = md_xq_avx512_row_bytes(wtype, n_in),
        .chunk = gemv_chunk(n_out, md_threadpool_n_threads(tp)),
    };
    j.n_items = (n_out + j.chunk - 1) / j.chunk;
    atomic_init(&j.next, 0);
    const size_t qb = md_xq_row_bytes(wtype, n_in);
    void *own;
    char *xq = buffer(tp, j.xq_row_bytes * (size_t)n_tok + qb, &own);
    if (!xq)
        return MD_ERR_NOMEM;
    char *q = xq + j.xq_row_bytes * (size_t)n_tok;   /* one md_xq row, converted */
    for (int64_t t = 0; t < n_tok; t++) {
        md_xq_quantize_row(wtype, X + t * n_in, n_in, q);
        md_xq_avx512_row(wtype, q, n_in, xq + (size_t)t * j.xq_row_bytes);
    }
    j.xq = xq;
    if (j.n_items == 1)
        gemv_task(&j, 0, 1);
    else
        md_threadpool_run(tp, gemv_task, &j);
    free(own);
    return MD_OK;
}

static int gemm(struct md_threadpool *tp, const float *X, int64_t n_tok, int64_t n_in,
                const uint8_t *W, uint32_t wtype, int64_t n_out, float *Y)
{
    const int nth = md_threadpool_n_threads(tp);
    struct qgemm_job j = {
        .wtype = wtype, .X = X, .n_tok = n_tok, .n_in = n_in, .n_out = n_out, .W = W,
        .row_bytes = (size_t)md_type_row_bytes(wtype, n_in), .Y = Y,
        .xq_row_bytes = md_xq_row_bytes(wtype, n_in),
        .panel_bytes = (md_qgemm_panel_bytes(wtype, n_in) + 63) & ~(size_t)63,
    };
    j.tok_per_chunk = (int64_t)(MD_QGEMM_X_BYTES / j.xq_row_bytes);
    if (j.tok_per_chunk < 8) j.tok_per_chunk = 8;
    const int64_t n_chunks = (n_tok + j.tok_per_chunk - 1) / j.tok_per_chunk;
    j.tok_per_chunk = ((n_tok + n_chunks - 1) / n_chunks + 7) / 8 * 8;   /* even, whole tiles */
    const int64_t n_panels = (n_out + MD_QGEMM_NR - 1) / MD_QGEMM_NR;
    j.n_items = (n_panels + QGEMM_PANELS_PER_ITEM - 1) / QGEMM_PANELS_PER_ITEM;
    atomic_init(&j.next, 0);
    /* the quantized X, then each thread's panels, in one buffer */
    const size_t xq_bytes = (j.xq_row_bytes * (size_t)n_tok + 63) & ~(size_t)63;
    void *own;
    char *buf = buffer(tp, xq_bytes + j.panel_bytes * QGEMM_PANELS_PER_ITEM * (size_t)nth, &own);
    if (!buf)
        return MD_ERR_NOMEM;
    j.xq = buf;
    j.panels = buf + xq_bytes;
    md_threadpool_run(tp, quantize_task, &j);
    md_threadpool_run(tp, gemm_task, &j);
    free(own);
    return MD_OK;
}

#endif

int md_matmul_qgemm(struct md_threadpool *tp, enum md_cpu_isa isa,
                    const float *X, int64_t n_tok, int64_t n_in,
                    const void *W, uint32_t wtype, int64_t n_out, float *Y)
{
#if defined(__x86_64__) || defined(__i386__)
    if (qgemm_applies(isa, wtype, n_tok, n_in, n_out))
        return n_tok < MD_QGEMM_MIN_TOK ? gemv(tp, X, n_tok, n_in, W, wtype, n_out, Y)
                                        : gemm(tp, X, n_tok, n_in, W, wtype, n_out, Y);
#endif
    return md_matmul_qdot(tp, isa, X, n_tok, n_in, W, wtype, n_out, Y);
}
