/* The backend's attention against naive softmax(QK^T * scale) V in double:
 * causal by cache index with the batch appended at q_start, GQA / MQA,
 * non-causal, F16 caches, log-sum-exp output (and that it recovers the
 * attention probabilities), and shape errors; on every ISA the CPU has
 * (portable, AVX2, AVX-512) and 1 and 3 threads. Decode (1-7 rows,
 * cpu-attn.c) is checked at depths 1..3000 across its chunk (32 keys) and
 * block (256) edges, GQA ratios 1, 2, 4, 7 and MQA, head sizes 8..128. */
#include "md_test.h"
#include "backend.h"
#include "cpu-kernels.h"

static double lcg(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

struct ref_out {
    double *o;     /* [n_q][n_head*hd] */
    double *lse;   /* [n_head][n_q] */
};

static void naive(const struct md_attn_params *p, const float *q, const float *k, const float *v,
                  struct ref_out *r)
{
    int hd = p->head_dim, rq = p->n_head * hd, rkv = p->n_head_kv * hd;
    double *s = malloc(sizeof(double) * (p->n_kv + 1));
    for (int i = 0; i < p->n_q; i++) {
        for (int h = 0; h < p->n_head; h++) {
            int hk = h / (p->n_head / p->n_head_kv);
            int nv = p->causal ? p->q_start + i + 1 : p->n_kv;
            if (nv <= 0) {   /* sees no key: output 0, LSE -inf */
                for (int e = 0; e < hd; e++)
                    r->o[i * rq + h * hd + e] = 0;
                r->lse[h * p->n_q + i] = -INFINITY;
                continue;
            }
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j < nv; j++) {
                double d = 0;
                for (int e = 0; e < hd; e++)
                    d += (double)q[i * rq + h * hd + e] * k[j * rkv + hk * hd + e];
                s[j] = d * p->scale;
                mx = fmax(mx, s[j]);
            }
            for (int j = 0; j < nv; j++)
                sum += exp(s[j] - mx);
            for (int e = 0; e < hd; e++) {
                double a = 0;
                for (int j = 0; j < nv; j++)
                    a += exp(s[j] - mx) / sum * v[j * rkv + hk * hd + e];
                r->o[i * rq + h * hd + e] = a;
            }
            r->lse[h * p->n_q + i] = mx + log(sum);
        }
    }
    free(s);
}

/* n_q queries at cache indices q_start.. (causal) against n_kv entries. */
static void run_case_at(struct md_backend *be, int n_q, int n_kv, int q_start, int n_head,
                        int n_head_kv, int hd, bool causal, uint32_t kv_type)
{
    struct md_attn_params p = { n_q, n_kv, q_start, n_head, n_head_kv, hd,
                                1.0f / sqrtf((float)hd), causal };
    int rq = n_head * hd, rkv = n_head_kv * hd, cap = n_kv + 5;
    uint64_t s = (uint64_t)(n_q * 131 + n_kv * 7 + n_head + hd + causal);
    float *q = malloc(sizeof(float) * n_q * rq), *k = malloc(sizeof(float) * cap * rkv);
    float *v = malloc(sizeof(float) * cap * rkv), *o = malloc(sizeof(float) * n_q * rq);
    float *lse = malloc(sizeof(float) * n_head * n_q);
    for (int i = 0; i < n_q * rq; i++)
        q[i] = (float)(2.0 * lcg(&s));
    for (int i = 0; i < cap * rkv; i++) {
        k[i] = (float)(2.0 * lcg(&s));
        v[i] = (float)lcg(&s);
        if (kv_type == MD_TYPE_F16) {   /* the reference sees what the cache holds */
            k[i] = md_fp16_to_fp32(md_fp32_to_fp16(k[i]));
            v[i] = md_fp16_to_fp32(md_fp32_to_fp16(v[i]));
        }
    }
    struct md_tensor tq, tk, tv, to, tl, src;
    CHECK(md_backend_alloc_2d(be, &tq, MD_TYPE_F32, rq, n_q) == MD_OK);
    CHECK(md_backend_alloc_2d(be, &tk, kv_type, rkv, cap) == MD_OK);
    CHECK(md_backend_alloc_2d(be, &tv, kv_type, rkv, cap) == MD_OK);
    CHECK(md_backend_alloc_2d(be, &to, MD_TYPE_F32, rq, n_q) == MD_OK);
    CHECK(md_backend_alloc_2d(be, &tl, MD_TYPE_F32, n_q, n_head) == MD_OK);
    CHECK(md_backend_alloc_2d(be, &src, MD_TYPE_F32, rkv, cap) == MD_OK);
    be->ops->tensor_set(be, &tq, 0, q, sizeof(float) * n_q * rq);
    /* caches are filled through set_rows, as the KV cache does */
    be->ops->tensor_set(be, &src, 0, k, sizeof(float) * cap * rkv);
    CHECK(be->ops->set_rows(be, &tk, 0, &src) == MD_OK);
    be->ops->tensor_set(be, &src, 0, v, sizeof(float) * cap * rkv);
    CHECK(be->ops->set_rows(be, &tv, 0, &src) == MD_OK);
    CHECK(be->ops->attention(be, &p, &tq, &tk, &tv, &to, &tl) == MD_OK);
    be->ops->tensor_get(be, &to, 0, o, sizeof(float) * n_q * rq);
    be->ops->tensor_get(be, &tl, 0, lse, sizeof(float) * n_head * n_q);

    struct ref_out r = { malloc(sizeof(double) * n_q * rq), malloc(sizeof(double) * n_head * n_q) };
    naive(&p, q, k, v, &r);
    double eo = 0, el = 0;
    for (int i = 0; i < n_q * rq; i++)
        eo = fmax(eo, fabs(o[i] - r.o[i]));
    for (int i = 0; i < n_head * n_q; i++)
        el = isinf(r.lse[i]) ? (lse[i] == r.lse[i] ? el : INFINITY)
                             : fmax(el, fabs(lse[i] - r.lse[i]) / fmax(1.0, fabs(r.lse[i])));
    CHECKF(eo < 2e-5 && el < 2e-6,
           "n_q %d n_kv %d q_start %d heads %d/%d hd %d causal %d %s: out %g lse %g", n_q, n_kv,
           q_start, n_head, n_head_kv, hd, causal, md_type_name(kv_type), eo, el);

    /* probabilities from the LSE sum to one over the visible keys */
    int i = n_q - 1, h = n_head - 1, hk = h / (n_head / n_head_kv);
    int nv = causal ? p.q_start + i + 1 : n_kv;
    double psum = nv > 0 ? 0 : 1;
    for (int j = 0; j < nv; j++) {
        double d = 0;
        for (int e = 0; e < hd; e++)
            d += (double)q[i * rq + h * hd + e] * k[j * rkv + hk * hd + e];
        psum += exp(d * p.scale - lse[h * n_q + i]);
    }
    CHECKF(fabs(psum - 1.0) < 1e-5, "probabilities from LSE sum to %.8f", psum);

    /* without an LSE tensor the output is the same */
    CHECK(be->ops->attention(be, &p, &tq, &tk, &tv, &to, NULL) == MD_OK);
    float *o2 = malloc(sizeof(float) * n_q * rq);
    be->ops->tensor_get(be, &to, 0, o2, sizeof(float) * n_q * rq);
    CHECK(!memcmp(o, o2, sizeof(float) * n_q * rq));
    free(o2);

    /* shape errors are refused */
    struct md_attn_params bad = p;
    bad.n_kv = cap + 1;
    CHECK(be->ops->attention(be, &bad, &tq, &tk, &tv, &to, &tl) == MD_ERR_INVALID);
    bad = p;
    bad.n_head_kv = n_head + 1;   /* not a divisor of n_head */
    CHECK(be->ops->attention(be, &bad, &tq, &tk, &tv, &to, &tl) == MD_ERR_INVALID);

    struct md_tensor *ts[] = { &tq, &tk, &tv, &to, &tl, &src };
    for (size_t t = 0; t < 6; t++)
        be->ops->tensor_free(be, ts[t]);
    free(q); free(k); free(v); free(o); free(lse); free(r.o); free(r.lse);
}

/* The batch appended last: queries at n_kv - n_q ... n_kv - 1. */
static void run_case(struct md_backend *be, int n_q, int n_kv, int n_head, int n_head_kv, int hd,
                     bool causal, uint32_t kv_type)
{
    run_case_at(be, n_q, n_kv, n_kv - n_q, n_head, n_head_kv, hd, causal, kv_type);
}

/* Decode and few-row batches (the md_attn_decode path). */
static void decode_cases(struct md_backend *be)
{
    static const int depths[] = { 1, 2, 31, 32, 33, 255, 256, 257, 1000, 2049, 3000 };
    for (size_t i = 0; i < sizeof depths / sizeof depths[0]; i++) {
        uint32_t t = i % 2 ? MD_TYPE_F16 : MD_TYPE_F32, u = i % 2 ? MD_TYPE_F32 : MD_TYPE_F16;
        run_case(be, 1, depths[i], 16, 16, 64, true, t);    /* the 0.27B LLaMA's heads */
        run_case(be, 1, depths[i], 14, 2, 64, true, u);     /* GQA 7 (Qwen2-0.5B) */
    }
    run_case(be, 1, 1500, 8, 2, 128, true, MD_TYPE_F16);    /* GQA 4, wide heads */
    run_case(be, 1, 777, 4, 1, 40, true, MD_TYPE_F32);      /* MQA, 40 = 2.5 vectors */
    run_case(be, 3, 700, 8, 4, 128, true, MD_TYPE_F16);     /* a few rows appended */
    run_case_at(be, 7, 300, 200, 4, 1, 40, true, MD_TYPE_F32);   /* entries after the batch unseen */
    run_case_at(be, 2, 600, 333, 6, 3, 24, true, MD_TYPE_F16);
    run_case(be, 5, 260, 6, 3, 8, false, MD_TYPE_F16);      /* non-causal: all keys */
    run_case_at(be, 3, 4, -2, 2, 1, 16, true, MD_TYPE_F32); /* rows 0, 1 see no key */
}

/* Causality is by index: a query at cache index c sees 0..c even when
 * positions say otherwise (after compaction). Checked by changing a key
 * beyond the mask: the output must not move. */
static void check_mask_by_index(struct md_backend *be)
{
    struct md_attn_params p = { 2, 6, 3, 2, 1, 8, 0.35f, true };   /* queries at 3, 4; entry 5 unseen */
    struct md_tensor q, k, v, o;
    md_backend_alloc_2d(be, &q, MD_TYPE_F32, 16, 2);
    md_backend_alloc_2d(be, &k, MD_TYPE_F32, 8, 6);
    md_backend_alloc_2d(be, &v, MD_TYPE_F32, 8, 6);
    md_backend_alloc_2d(be, &o, MD_TYPE_F32, 16, 2);
    float buf[48], a[32], b[32];
    uint64_t s = 3;
    for (int i = 0; i < 48; i++)
        buf[i] = (float)lcg(&s);
    be->ops->tensor_set(be, &q, 0, buf, sizeof(float) * 32);
    be->ops->tensor_set(be, &k, 0, buf, sizeof buf);
    be->ops->tensor_set(be, &v, 0, buf, sizeof buf);
    CHECK(be->ops->attention(be, &p, &q, &k, &v, &o, NULL) == MD_OK);
    be->ops->tensor_get(be, &o, 0, a, sizeof a);
    float big[8] = { 9, 9, 9, 9, 9, 9, 9, 9 };
    be->ops->tensor_set(be, &k, 5 * 8 * sizeof(float), big, sizeof big);
    be->ops->tensor_set(be, &v, 5 * 8 * sizeof(float), big, sizeof big);
    CHECK(be->ops->attention(be, &p, &q, &k, &v, &o, NULL) == MD_OK);
    be->ops->tensor_get(be, &o, 0, b, sizeof b);
    CHECK(!memcmp(a, b, sizeof a));
    be->ops->tensor_set(be, &k, 4 * 8 * sizeof(float), big, sizeof big);   /* seen by query 1 only */
    CHECK(be->ops->attention(be, &p, &q, &k, &v, &o, NULL) == MD_OK);
    be->ops->tensor_get(be, &o, 0, b, sizeof b);
    CHECK(!memcmp(a, b, sizeof(float) * 16) && memcmp(a + 16, b + 16, sizeof(float) * 16));
    be->ops->tensor_free(be, &q);
    be->ops->tensor_free(be, &k);
    be->ops->tensor_free(be, &v);
    be->ops->tensor_free(be, &o);
}

int main(void)
{
    static const char *const isas[] = { "scalar", "avx2", "avx512" };
    struct md_backend *be;
    char err[128];
    for (int run = 0; run < 6; run++) {
        int isa = run / 2, threads = run % 2 ? 3 : 1;
        if (isa > (int)md_cpu_isa_detect()) {
            printf("attention: no %s on this CPU, its kernels not run\n", isas[isa]);
            run++;
            continue;
        }
        struct md_backend_params bp = { .n_threads = threads, .isa = isas[isa] };
        CHECKF(md_backend_new("cpu", &bp, &be, err, sizeof err) == MD_OK, "%s", err);
        run_case(be, 5, 5, 4, 4, 16, true, MD_TYPE_F32);      /* prefill from empty */
        run_case(be, 4, 13, 8, 2, 16, true, MD_TYPE_F32);     /* GQA, cache has history */
        run_case(be, 1, 37, 4, 1, 32, true, MD_TYPE_F32);     /* MQA decode */
        run_case(be, 6, 9, 4, 2, 8, false, MD_TYPE_F32);      /* non-causal */
        run_case(be, 3, 20, 6, 3, 64, true, MD_TYPE_F16);     /* F16 cache */
        run_case(be, 64, 64, 2, 2, 128, true, MD_TYPE_F32);   /* longer, wider heads */
        /* >= 8 queries take the blocked GEMM path: several query blocks,
         * history in the cache, GQA, F16 caches, non-causal (vision). */
        run_case(be, 8, 8, 4, 2, 16, true, MD_TYPE_F32);
        run_case(be, 150, 181, 8, 2, 32, true, MD_TYPE_F32);
        run_case(be, 97, 97, 4, 4, 64, true, MD_TYPE_F16);
        run_case(be, 70, 70, 3, 1, 40, false, MD_TYPE_F32);
        run_case(be, 65, 90, 2, 2, 8, false, MD_TYPE_F16);
        run_case(be, 200, 230, 1, 1, 16, true, MD_TYPE_F32);  /* fewer heads than threads: chunks of blocks */
        decode_cases(be);
        check_mask_by_index(be);
        md_backend_free(be);
    }
    return md_test_finish("attention");
}
