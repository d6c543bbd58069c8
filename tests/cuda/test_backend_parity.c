/* CUDA backend vs CPU backend, op by op (core/llm/backend.h).
 *
 * Every op of the vtable on random data and shapes, including odd sizes
 * (rows not a multiple of the vector widths, n_tok 1..5 around the GEMV /
 * GEMM switch, n_q around the split-KV / flash switch, head_dim not a power
 * of two, GQA, causal with q_start < -1). Both backends get the same bytes;
 * the metric is max|cuda - cpu| / max(max|cpu|, 1e-30) per output, against
 * these tolerances:
 *   exact (0):   get_rows (any type), set_rows F32 and F16, keep_rows, add
 *   1e-6:        unary/glu (expf/tanhf/erff of two libms may differ in ulps)
 *   1e-5:        rms_norm, layer_norm, softmax, rope (different summation order)
 *   1e-4:        matmul decode (GEMV, F32 accumulation, any weight type),
 *                matmul prefill F32 weights (cuBLAS SGEMM, no TF32),
 *                attention (F32 and F16 caches), lse compared absolutely
 *   4e-3:        matmul prefill F16 weights (activations rounded to F16)
 *   4e-3:        matmul prefill quantized weights (dequantized to F16, and F16
 *                activations)
 *   2.5e-2:      matmul prefill BF16 weights (activations rounded to BF16)
 * Shape errors must be refused by both backends alike (MD_ERR_INVALID), and
 * a bad token id in get_rows must surface as an error at the next
 * tensor_get on CUDA.
 *
 * Without a CUDA device: "SKIP: no CUDA device (...)", exit 77. */
#include "md_test.h"
#include "backend.h"
#include "md-cuda.h"
#include "mustdrop.h"

#include <stdint.h>

static struct md_backend *cpu, *gpu;
static double worst[32];
static const char *worst_name[32];
static int n_worst;

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void)   /* uniform in [-1, 1) */
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}
static uint32_t urand(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng >> 33);
}

static void note(const char *name, double err)
{
    for (int i = 0; i < n_worst; i++)
        if (!strcmp(worst_name[i], name)) {
            if (err > worst[i]) worst[i] = err;
            return;
        }
    if (n_worst < 32) {
        worst_name[n_worst] = name;
        worst[n_worst++] = err;
    }
}

/* A tensor on both backends. */
struct dual {
    struct md_tensor c, g;
};

static void dual_alloc(struct dual *d, uint32_t type, int64_t ne0, int64_t ne1)
{
    CHECK(md_backend_alloc_2d(cpu, &d->c, type, ne0, ne1) == MD_OK);
    CHECK(md_backend_alloc_2d(gpu, &d->g, type, ne0, ne1) == MD_OK);
}

static void dual_set(struct dual *d, const void *src, size_t n)
{
    CHECK(cpu->ops->tensor_set(cpu, &d->c, 0, src, n) == MD_OK);
    CHECK(gpu->ops->tensor_set(gpu, &d->g, 0, src, n) == MD_OK);
}

/* F32 [ne1][ne0] of random values times `scale`. */
static void dual_rand(struct dual *d, int64_t ne0, int64_t ne1, float scale)
{
    dual_alloc(d, MD_TYPE_F32, ne0, ne1);
    size_t n = (size_t)(ne0 * ne1);
    float *h = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        h[i] = frand() * scale;
    dual_set(d, h, sizeof(float) * n);
    free(h);
}

static void dual_free(struct dual *d)
{
    cpu->ops->tensor_free(cpu, &d->c);
    gpu->ops->tensor_free(gpu, &d->g);
}

/* Relative max error of the F32 contents of both copies (first n floats). */
static double dual_err(const struct dual *d, size_t n)
{
    float *a = malloc(sizeof(float) * (n ? n : 1)), *b = malloc(sizeof(float) * (n ? n : 1));
    CHECK(cpu->ops->tensor_get(cpu, &d->c, 0, a, sizeof(float) * n) == MD_OK);
    int rc = gpu->ops->tensor_get(gpu, &d->g, 0, b, sizeof(float) * n);
    CHECKF(rc == MD_OK, "tensor_get: %d %s", rc, md_backend_cuda_last_error(gpu));
    double mx = 0, e = 0;
    for (size_t i = 0; i < n; i++) {
        if (isinf(a[i]) && a[i] == b[i]) continue;
        mx = fmax(mx, fabs(a[i]));
        double di = fabs((double)a[i] - b[i]);
        if (!(di == di)) di = INFINITY;
        e = fmax(e, di);
    }
    free(a);
    free(b);
    return e / fmax(mx, 1e-30);
}

static double dual_err_bytes(const struct dual *d, size_t n)
{
    unsigned char *a = malloc(n ? n : 1), *b = malloc(n ? n : 1);
    CHECK(cpu->ops->tensor_get(cpu, &d->c, 0, a, n) == MD_OK);
    CHECK(gpu->ops->tensor_get(gpu, &d->g, 0, b, n) == MD_OK);
    double e = memcmp(a, b, n) ? 1.0 : 0.0;
    free(a);
    free(b);
    return e;
}

#define EXPECT(name, err, tol) do { double e_ = (err); note(name, e_); \
    CHECKF(e_ <= (tol), "%s: rel err %.3g > %.3g", name, e_, (double)(tol)); } while (0)

/* ---- weights of every type ---------------------------------------------- */

static void put_f16(unsigned char *p, float v)
{
    uint16_t h = md_fp32_to_fp16(v);
    p[0] = (unsigned char)h;
    p[1] = (unsigned char)(h >> 8);
}

/* Host bytes of a random [n_out][n_in] weight of `type` (valid blocks:
 * random bits with sane fp16 scales). Caller frees. */
static void *make_weight(uint32_t type, int64_t n_in, int64_t n_out, size_t *bytes)
{
    int64_t rb = md_type_row_bytes(type, n_in);
    *bytes = (size_t)(rb * n_out);
    unsigned char *w = malloc(*bytes ? *bytes : 1);
    float *row = malloc(sizeof(float) * (size_t)n_in);
    int64_t be = md_type_block_elems(type), bb = md_type_block_bytes(type);
    for (int64_t o = 0; o < n_out; o++) {
        unsigned char *r = w + rb * o;
        for (int64_t i = 0; i < n_in; i++)
            row[i] = frand();
        switch (type) {
        case MD_TYPE_F32:
            memcpy(r, row, sizeof(float) * (size_t)n_in);
            break;
        case MD_TYPE_F16:
            for (int64_t i = 0; i < n_in; i++) put_f16(r + 2 * i, row[i]);
            break;
        case MD_TYPE_BF16:
            for (int64_t i = 0; i < n_in; i++) {
                uint16_t h = md_fp32_to_bf16(row[i]);
                r[2 * i] = (unsigned char)h;
                r[2 * i + 1] = (unsigned char)(h >> 8);
            }
            break;
        case MD_TYPE_Q8_0:
            md_quantize_row_q8_0(row, r, n_in);
            break;
        case MD_TYPE_Q4_0:
            md_quantize_row_q4_0(row, r, n_in);
            break;
        default:   /* random bits, then the scale fields made sane */
            for (int64_t i = 0; i < rb; i++)
                r[i] = (unsigned char)urand();
            for (int64_t b = 0; b < n_in / be; b++) {
                unsigned char *blk = r + b * bb;
                switch (type) {
                case MD_TYPE_Q4_1: case MD_TYPE_Q5_1:
                    put_f16(blk, 0.01f + 0.02f * fabsf(frand()));
                    put_f16(blk + 2, -0.1f * fabsf(frand()));
                    break;
                case MD_TYPE_Q5_0:
                    put_f16(blk, 0.01f + 0.02f * fabsf(frand()));
                    break;
                case MD_TYPE_Q4_K: case MD_TYPE_Q5_K:
                    put_f16(blk, 0.001f + 0.002f * fabsf(frand()));
                    put_f16(blk + 2, 0.001f + 0.002f * fabsf(frand()));
                    break;
                case MD_TYPE_Q6_K:
                    put_f16(blk + 208, 0.0005f + 0.001f * fabsf(frand()));
                    break;
                }
            }
        }
    }
    free(row);
    return w;
}

/* ---- ops ----------------------------------------------------------------- */

static void t_matmul(uint32_t type, int64_t n_in, int64_t n_out, int64_t n_tok, bool bias)
{
    size_t wb;
    void *wh = make_weight(type, n_in, n_out, &wb);
    struct dual w = { 0 }, x, b, y;
    w.c.type = w.g.type = type;
    w.c.ne[0] = w.g.ne[0] = n_in;
    w.c.ne[1] = w.g.ne[1] = n_out;
    w.c.ne[2] = w.g.ne[2] = w.c.ne[3] = w.g.ne[3] = 1;
    CHECK(cpu->ops->tensor_weight(cpu, &w.c, wh) == MD_OK);
    CHECK(gpu->ops->tensor_weight(gpu, &w.g, wh) == MD_OK);
    dual_rand(&x, n_in, n_tok, 1.0f);
    dual_rand(&b, n_out, 1, 1.0f);
    dual_alloc(&y, MD_TYPE_F32, n_out, n_tok);
    CHECK(cpu->ops->matmul(cpu, &x.c, &w.c, bias ? &b.c : NULL, &y.c) == MD_OK);
    int rc = gpu->ops->matmul(gpu, &x.g, &w.g, bias ? &b.g : NULL, &y.g);
    CHECKF(rc == MD_OK, "matmul %s: %d %s", md_type_name(type), rc, md_backend_cuda_last_error(gpu));
    double tol = 1e-4;
    const char *name = "matmul gemv";
    if (n_tok > 4 && type != MD_TYPE_F32) {
        tol = type == MD_TYPE_BF16 ? 2.5e-2 : 4e-3;
        name = type == MD_TYPE_BF16 ? "matmul gemm bf16" : type == MD_TYPE_F16 ? "matmul gemm f16"
                                                                              : "matmul gemm quant";
    } else if (n_tok > 4) {
        name = "matmul gemm f32";
    }
    double e = dual_err(&y, (size_t)(n_out * n_tok));
    EXPECT(name, e, tol);
    if (e > tol)
        fprintf(stderr, "  matmul %s n_in %lld n_out %lld n_tok %lld\n", md_type_name(type),
                (long long)n_in, (long long)n_out, (long long)n_tok);
    /* a view of rows 1.. (unaligned activations) */
    if (n_tok > 1) {
        struct md_tensor xc = md_tensor_rows(&x.c, 1, n_tok - 1), xg = md_tensor_rows(&x.g, 1, n_tok - 1);
        struct md_tensor yc = md_tensor_rows(&y.c, 1, n_tok - 1), yg = md_tensor_rows(&y.g, 1, n_tok - 1);
        CHECK(cpu->ops->matmul(cpu, &xc, &w.c, NULL, &yc) == MD_OK);
        CHECK(gpu->ops->matmul(gpu, &xg, &w.g, NULL, &yg) == MD_OK);
        EXPECT(name, dual_err(&y, (size_t)(n_out * n_tok)), tol);
    }
    dual_free(&w);
    dual_free(&x);
    dual_free(&b);
    dual_free(&y);
    free(wh);
}

static void t_get_rows(uint32_t type, int64_t n_embd, int64_t n_rows, int64_t n)
{
    size_t wb;
    void *wh = make_weight(type, n_embd, n_rows, &wb);
    struct dual t = { 0 }, ids, out;
    t.c.type = t.g.type = type;
    t.c.ne[0] = t.g.ne[0] = n_embd;
    t.c.ne[1] = t.g.ne[1] = n_rows;
    t.c.ne[2] = t.g.ne[2] = t.c.ne[3] = t.g.ne[3] = 1;
    CHECK(cpu->ops->tensor_weight(cpu, &t.c, wh) == MD_OK);
    CHECK(gpu->ops->tensor_weight(gpu, &t.g, wh) == MD_OK);
    int32_t *id = malloc(sizeof(int32_t) * (size_t)n);
    for (int64_t i = 0; i < n; i++)
        id[i] = (int32_t)(urand() % (uint32_t)n_rows);
    dual_alloc(&ids, MD_TYPE_I32, n, 1);
    dual_set(&ids, id, sizeof(int32_t) * (size_t)n);
    dual_alloc(&out, MD_TYPE_F32, n_embd, n);
    CHECK(cpu->ops->get_rows(cpu, &t.c, &ids.c, &out.c) == MD_OK);
    CHECK(gpu->ops->get_rows(gpu, &t.g, &ids.g, &out.g) == MD_OK);
    EXPECT("get_rows", dual_err(&out, (size_t)(n_embd * n)), 0.0);
    /* a bad id: the CPU refuses at once, CUDA at the next tensor_get */
    id[0] = (int32_t)n_rows;
    dual_set(&ids, id, sizeof(int32_t) * (size_t)n);
    CHECK(cpu->ops->get_rows(cpu, &t.c, &ids.c, &out.c) == MD_ERR_INVALID);
    int rc = gpu->ops->get_rows(gpu, &t.g, &ids.g, &out.g);
    float f;
    int rc2 = gpu->ops->tensor_get(gpu, &out.g, 0, &f, sizeof f);
    CHECK(rc != MD_OK || rc2 != MD_OK);
    CHECK(gpu->ops->tensor_get(gpu, &out.g, 0, &f, sizeof f) == MD_OK);   /* flag cleared */
    free(id);
    dual_free(&t);
    dual_free(&ids);
    dual_free(&out);
    free(wh);
}

static void t_rowwise(int64_t ne0, int64_t n)
{
    struct dual x, b, w, bb, out;
    dual_rand(&x, ne0, n, 3.0f);
    dual_rand(&w, ne0, 1, 1.0f);
    dual_rand(&bb, ne0, 1, 1.0f);
    dual_alloc(&out, MD_TYPE_F32, ne0, n);
    size_t cnt = (size_t)(ne0 * n);

    dual_rand(&b, ne0, n, 1.0f);
    CHECK(cpu->ops->add(cpu, &x.c, &b.c, &out.c) == MD_OK);
    CHECK(gpu->ops->add(gpu, &x.g, &b.g, &out.g) == MD_OK);
    EXPECT("add", dual_err(&out, cnt), 0.0);
    CHECK(cpu->ops->add(cpu, &x.c, &w.c, &out.c) == MD_OK);   /* broadcast */
    CHECK(gpu->ops->add(gpu, &x.g, &w.g, &out.g) == MD_OK);
    EXPECT("add", dual_err(&out, cnt), 0.0);

    CHECK(cpu->ops->rms_norm(cpu, &x.c, &w.c, 1e-5f, &out.c) == MD_OK);
    CHECK(gpu->ops->rms_norm(gpu, &x.g, &w.g, 1e-5f, &out.g) == MD_OK);
    EXPECT("rms_norm", dual_err(&out, cnt), 1e-5);
    CHECK(cpu->ops->layer_norm(cpu, &x.c, &w.c, &bb.c, 1e-6f, &out.c) == MD_OK);
    CHECK(gpu->ops->layer_norm(gpu, &x.g, &w.g, &bb.g, 1e-6f, &out.g) == MD_OK);
    EXPECT("layer_norm", dual_err(&out, cnt), 1e-5);
    CHECK(cpu->ops->layer_norm(cpu, &x.c, &w.c, NULL, 1e-6f, &out.c) == MD_OK);
    CHECK(gpu->ops->layer_norm(gpu, &x.g, &w.g, NULL, 1e-6f, &out.g) == MD_OK);
    EXPECT("layer_norm", dual_err(&out, cnt), 1e-5);
    CHECK(cpu->ops->softmax(cpu, &x.c, 0.7f, &out.c) == MD_OK);
    CHECK(gpu->ops->softmax(gpu, &x.g, 0.7f, &out.g) == MD_OK);
    EXPECT("softmax", dual_err(&out, cnt), 1e-5);

    for (int op = 0; op < 4; op++) {
        CHECK(cpu->ops->unary(cpu, (enum md_unary_op)op, &x.c, &out.c) == MD_OK);
        CHECK(gpu->ops->unary(gpu, (enum md_unary_op)op, &x.g, &out.g) == MD_OK);
        EXPECT("unary", dual_err(&out, cnt), 1e-6);
        CHECK(cpu->ops->glu(cpu, (enum md_unary_op)op, &x.c, &b.c, &out.c) == MD_OK);
        CHECK(gpu->ops->glu(gpu, (enum md_unary_op)op, &x.g, &b.g, &out.g) == MD_OK);
        EXPECT("glu", dual_err(&out, cnt), 1e-6);
    }
    /* in place (out == x) */
    CHECK(cpu->ops->rms_norm(cpu, &x.c, &w.c, 1e-5f, &x.c) == MD_OK);
    CHECK(gpu->ops->rms_norm(gpu, &x.g, &w.g, 1e-5f, &x.g) == MD_OK);
    EXPECT("rms_norm", dual_err(&x, cnt), 1e-5);

    /* shape errors */
    struct dual small;
    dual_rand(&small, ne0 + 1, 1, 1.0f);
    CHECK(cpu->ops->add(cpu, &x.c, &small.c, &out.c) == MD_ERR_INVALID);
    CHECK(gpu->ops->add(gpu, &x.g, &small.g, &out.g) == MD_ERR_INVALID);
    CHECK(gpu->ops->rms_norm(gpu, &x.g, &small.g, 1e-5f, &out.g) == MD_ERR_INVALID);
    CHECK(gpu->ops->matmul(gpu, &x.g, &small.g, NULL, &out.g) == MD_ERR_INVALID);
    dual_free(&small);
    dual_free(&x);
    dual_free(&b);
    dual_free(&w);
    dual_free(&bb);
    dual_free(&out);
}

static void t_rope(enum md_rope_mode mode, int n_head, int hd, int n_rot, int64_t n, bool factors,
                   int pos_base)
{
    struct dual x, pos, ff;
    dual_rand(&x, (int64_t)n_head * hd, n, 1.0f);
    int32_t *p = malloc(sizeof(int32_t) * (size_t)n);
    for (int64_t i = 0; i < n; i++)
        p[i] = pos_base + (int32_t)(urand() % 64);
    dual_alloc(&pos, MD_TYPE_I32, n, 1);
    dual_set(&pos, p, sizeof(int32_t) * (size_t)n);
    float *f = malloc(sizeof(float) * (size_t)(n_rot / 2));
    for (int i = 0; i < n_rot / 2; i++)
        f[i] = 1.0f + 3.0f * fabsf(frand());
    dual_alloc(&ff, MD_TYPE_F32, n_rot / 2, 1);
    dual_set(&ff, f, sizeof(float) * (size_t)(n_rot / 2));
    struct md_rope_params rc = { n_head, hd, n_rot, mode, 10000.0f, 0.5f, factors ? &ff.c : NULL };
    struct md_rope_params rg = rc;
    rg.freq_factors = factors ? &ff.g : NULL;
    CHECK(cpu->ops->rope(cpu, &x.c, &pos.c, &rc) == MD_OK);
    CHECK(gpu->ops->rope(gpu, &x.g, &pos.g, &rg) == MD_OK);
    EXPECT("rope", dual_err(&x, (size_t)(n * n_head * hd)), 1e-5);
    rg.n_rot = hd + 2;
    CHECK(gpu->ops->rope(gpu, &x.g, &pos.g, &rg) == MD_ERR_INVALID);
    free(p);
    free(f);
    dual_free(&x);
    dual_free(&pos);
    dual_free(&ff);
}

/* KV cache of cap rows, F32 or F16, filled through set_rows from F32. */
static void t_attention(int n_q, int n_kv, int q_start, int n_head, int n_head_kv, int hd,
                        bool causal, uint32_t kv_type)
{
    int cap = n_kv + 3;
    struct dual q, kf, vf, k, v, out, lse;
    dual_rand(&q, (int64_t)n_head * hd, n_q, 1.0f);
    dual_rand(&kf, (int64_t)n_head_kv * hd, cap, 1.0f);
    dual_rand(&vf, (int64_t)n_head_kv * hd, cap, 1.0f);
    dual_alloc(&k, kv_type, (int64_t)n_head_kv * hd, cap);
    dual_alloc(&v, kv_type, (int64_t)n_head_kv * hd, cap);
    CHECK(cpu->ops->set_rows(cpu, &k.c, 0, &kf.c) == MD_OK);
    CHECK(gpu->ops->set_rows(gpu, &k.g, 0, &kf.g) == MD_OK);
    CHECK(cpu->ops->set_rows(cpu, &v.c, 0, &vf.c) == MD_OK);
    CHECK(gpu->ops->set_rows(gpu, &v.g, 0, &vf.g) == MD_OK);
    EXPECT("set_rows", dual_err_bytes(&k, md_tensor_row_bytes(&k.c) * (size_t)cap), 0.0);
    dual_alloc(&out, MD_TYPE_F32, (int64_t)n_head * hd, n_q);
    dual_alloc(&lse, MD_TYPE_F32, n_q, n_head);
    struct md_attn_params p = { n_q, n_kv, q_start, n_head, n_head_kv, hd,
                                1.0f / sqrtf((float)hd), causal };
    CHECK(cpu->ops->attention(cpu, &p, &q.c, &k.c, &v.c, &out.c, &lse.c) == MD_OK);
    int rc = gpu->ops->attention(gpu, &p, &q.g, &k.g, &v.g, &out.g, &lse.g);
    CHECKF(rc == MD_OK, "attention: %d %s", rc, md_backend_cuda_last_error(gpu));
    double e = dual_err(&out, (size_t)(n_q * n_head * hd));
    /* which kernel ran: the backend's own rule (attention.cu run_attention) */
    bool gemm = kv_type == MD_TYPE_F32 && n_kv > 0 && (!causal || q_start >= 0);
    EXPECT(n_q <= 4 ? "attention split-kv" : gemm ? "attention prefill cublas" : "attention flash",
           e, 1e-4);
    if (e > 1e-4)
        fprintf(stderr, "  attention n_q %d n_kv %d q_start %d heads %d/%d hd %d causal %d %s\n",
                n_q, n_kv, q_start, n_head, n_head_kv, hd, causal, md_type_name(kv_type));
    /* lse: absolute (it is a log) */
    size_t nl = (size_t)n_q * n_head;
    float *a = malloc(sizeof(float) * nl), *b = malloc(sizeof(float) * nl);
    CHECK(cpu->ops->tensor_get(cpu, &lse.c, 0, a, sizeof(float) * nl) == MD_OK);
    CHECK(gpu->ops->tensor_get(gpu, &lse.g, 0, b, sizeof(float) * nl) == MD_OK);
    double el = 0;
    for (size_t i = 0; i < nl; i++)
        el = fmax(el, (isinf(a[i]) && a[i] == b[i]) ? 0.0 : fabs((double)a[i] - b[i]));
    EXPECT("attention lse (abs)", el, 1e-4);
    free(a);
    free(b);
    /* shape error: n_head not a multiple of n_head_kv */
    p.n_head_kv = n_head + 1;
    CHECK(gpu->ops->attention(gpu, &p, &q.g, &k.g, &v.g, &out.g, &lse.g) == MD_ERR_INVALID);
    dual_free(&q);
    dual_free(&kf);
    dual_free(&vf);
    dual_free(&k);
    dual_free(&v);
    dual_free(&out);
    dual_free(&lse);
}

static void t_rows(uint32_t type, int64_t ne0, int64_t rows)
{
    struct dual t, src;
    dual_alloc(&t, type, ne0, rows);
    dual_rand(&src, ne0, rows - 2, 1.0f);
    CHECK(cpu->ops->set_rows(cpu, &t.c, 2, &src.c) == MD_OK);
    CHECK(gpu->ops->set_rows(gpu, &t.g, 2, &src.g) == MD_OK);
    size_t nb = md_tensor_row_bytes(&t.c) * (size_t)rows;
    EXPECT("set_rows", dual_err_bytes(&t, nb), 0.0);
    CHECK(gpu->ops->set_rows(gpu, &t.g, 3, &src.g) == MD_ERR_INVALID);
    /* keep every other row from a random start, and a kept prefix */
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)rows);
    int64_t n = 0;
    for (int64_t r = 0; r < rows; r++)
        if (r < 3 || urand() % 3)
            idx[n++] = (int32_t)r;
    CHECK(cpu->ops->keep_rows(cpu, &t.c, idx, n) == MD_OK);
    CHECK(gpu->ops->keep_rows(gpu, &t.g, idx, n) == MD_OK);
    EXPECT("keep_rows", dual_err_bytes(&t, nb), 0.0);
    idx[1] = 0;   /* not increasing */
    CHECK(cpu->ops->keep_rows(cpu, &t.c, idx, n) == MD_ERR_INVALID);
    CHECK(gpu->ops->keep_rows(gpu, &t.g, idx, n) == MD_ERR_INVALID);
    free(idx);
    dual_free(&t);
    dual_free(&src);
}

int main(void)
{
    char why[512] = "";
    if (md_cuda_device_count(why, sizeof why) <= 0)
        SKIP("no CUDA device (%s)", why);
    char err[512] = "";
    struct md_backend_params bp = { 1, NULL, 0, false };
    CHECKF(md_backend_new("cpu", &bp, &cpu, err, sizeof err) == MD_OK, "%s", err);
    int rc = md_backend_new("cuda", &bp, &gpu, err, sizeof err);
    CHECKF(rc == MD_OK, "md_backend_new(cuda): %d %s", rc, err);
    if (!cpu || !gpu)
        return md_test_finish("cuda_backend_parity");
    CHECK(!strcmp(gpu->ops->name, "cuda"));

    static const uint32_t types[] = { MD_TYPE_F32, MD_TYPE_F16, MD_TYPE_BF16, MD_TYPE_Q8_0,
        MD_TYPE_Q4_0, MD_TYPE_Q4_1, MD_TYPE_Q5_0, MD_TYPE_Q5_1, MD_TYPE_Q4_K, MD_TYPE_Q5_K,
        MD_TYPE_Q6_K };
    static const int64_t toks[] = { 1, 2, 3, 4, 5, 17, 64 };
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        uint32_t t = types[ti];
        int64_t blk = md_type_block_elems(t);
        int64_t ins[3] = { blk == 256 ? 256 : 96, blk == 256 ? 512 : blk == 32 ? 160 : 100,
                           blk == 256 ? 1024 : blk == 32 ? 1024 : 1000 };
        for (int ii = 0; ii < 3; ii++)
            for (size_t k = 0; k < sizeof toks / sizeof toks[0]; k++)
                t_matmul(t, ins[ii], ii == 1 ? 33 : 130, toks[k], k % 2 == 0);
        t_matmul(t, ins[1] + (blk == 1 ? 3 : 0), 7, 2, true);   /* odd n_in for 16-bit types */
        t_matmul(t, ins[1] + (blk == 1 ? 3 : 0), 7, 9, false);
        t_get_rows(t, ins[1], 50, 13);
    }
    t_matmul(MD_TYPE_F16, 4096, 4096, 1, false);   /* LLaMA-7B shaped */
    t_matmul(MD_TYPE_Q4_K, 4096, 1000, 3, true);
    t_matmul(MD_TYPE_Q8_0, 4096, 1000, 128, false);

    int64_t ne0s[] = { 1, 7, 64, 100, 1000, 4096 };
    for (size_t i = 0; i < sizeof ne0s / sizeof ne0s[0]; i++) {
        t_rowwise(ne0s[i], 1);
        t_rowwise(ne0s[i], 13);
    }

    t_rope(MD_ROPE_NORMAL, 4, 64, 64, 9, false, 0);
    t_rope(MD_ROPE_NEOX, 4, 64, 64, 9, false, 0);
    t_rope(MD_ROPE_NORMAL, 3, 80, 32, 5, true, 4000);   /* partial rotation, factors */
    t_rope(MD_ROPE_NEOX, 2, 128, 128, 17, true, 30000);
    t_rope(MD_ROPE_NEOX, 1, 6, 4, 1, false, 7);

    static const uint32_t kvt[] = { MD_TYPE_F32, MD_TYPE_F16 };
    for (int kt = 0; kt < 2; kt++) {
        uint32_t t = kvt[kt];
        /* decode (split-KV), prefill (flash), GQA, odd head_dim, long caches */
        t_attention(1, 1, 0, 4, 4, 64, true, t);
        t_attention(1, 37, 36, 8, 2, 128, true, t);
        t_attention(3, 600, 597, 8, 8, 64, true, t);
        t_attention(4, 1030, 1026, 4, 1, 80, true, t);
        t_attention(2, 300, 100, 4, 2, 64, false, t);
        t_attention(5, 5, 0, 4, 4, 64, true, t);
        t_attention(37, 50, 13, 8, 2, 128, true, t);
        t_attention(64, 64, 0, 2, 2, 256, true, t);
        t_attention(33, 577, 0, 4, 4, 64, false, t);   /* vision encoder shaped */
        t_attention(17, 20, -5, 2, 1, 48, true, t);    /* first queries see nothing */
        t_attention(130, 700, 570, 4, 4, 96, true, t);
    }
    /* the cuBLAS path in several row blocks (S over its 256 MiB budget) */
    t_attention(5000, 5000, 0, 4, 2, 64, true, MD_TYPE_F32);

    t_rows(MD_TYPE_F32, 100, 40);
    t_rows(MD_TYPE_F16, 100, 40);
    t_rows(MD_TYPE_F16, 7, 300);
    t_rows(MD_TYPE_F32, 4096, 600);

    for (int i = 0; i < n_worst; i++)
        printf("%-22s worst rel err %.3g\n", worst_name[i], worst[i]);
    md_backend_free(gpu);
    md_backend_free(cpu);
    return md_test_finish("cuda_backend_parity");
}
