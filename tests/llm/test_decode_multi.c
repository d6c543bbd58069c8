/* md_decode_multi and md_reduce_decode_multi: one step for several
 * sequences gives each sequence what a one-token md_decode (md_reduce_decode)
 * gives it alone (bit for bit with quantized weights, within 4e-6 of the
 * logits' scale and the same greedy token with float weights, whose GEMV
 * kernel sums in an order set by the rows in the pass), for F32 / F16 /
 * Q8_0 / Q4_K weights, llama and qwen2
 * RoPE, sequences at different depths, with compacted layers and per-layer
 * position policies, more sequences than one weight product takes (8);
 * a full cache in one context, an abort and bad arguments fail without
 * changing any cache. Under MD_TEST_BACKEND=cuda (tests/cuda) the same on
 * the GPU, where the step and the single decode take different kernels:
 * logits within CUDA's tolerance (md_test_tol) and the same greedy token
 * wherever the top two are further apart than that. */
#include "md_test.h"
#include "gguf-writer.h"
#include "mustdrop-reduce.h"
#include "mustdrop.h"
#include "quant.h"

#define N_EMBD 256     /* a Q4_K block is 256 wide: every row length is a multiple */
#define N_HEAD 4
#define N_HEAD_KV 2
#define N_FF 512
#define N_VOCAB 64
#define N_LAYER 2
#define MAX_SEQ 12

/* ---- a small random model of any weight type ---------------------------- */

struct fixture {
    void *bufs[64];
    int n_bufs;
    uint64_t rng;
};

static float frand(struct fixture *f)
{
    f->rng = f->rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(f->rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* Bytes of an [ne1][ne0] weight of type t with values about +-scale. */
static void *weight_bytes(struct fixture *f, uint32_t t, int64_t ne0, int64_t ne1, float scale)
{
    int64_t rb = md_type_row_bytes(t, ne0);
    uint8_t *b = malloc((size_t)(rb * ne1));
    float *row = malloc(sizeof(float) * (size_t)ne0);
    for (int64_t r = 0; b && row && r < ne1; r++) {
        uint8_t *dst = b + r * rb;
        for (int64_t i = 0; i < ne0; i++)
            row[i] = scale * frand(f);
        if (t == MD_TYPE_F32) {
            memcpy(dst, row, sizeof(float) * (size_t)ne0);
        } else if (t == MD_TYPE_F16) {
            for (int64_t i = 0; i < ne0; i++)
                ((uint16_t *)dst)[i] = md_fp32_to_fp16(row[i]);
        } else if (t == MD_TYPE_Q8_0) {
            md_quantize_row_q8_0(row, dst, ne0);
        } else {   /* Q4_K: d, dmin (fp16), 12 scale bytes, 128 nibble bytes per 256 */
            for (int64_t blk = 0; blk < ne0 / 256; blk++) {
                uint8_t *q = dst + blk * 144;
                uint16_t d = md_fp32_to_fp16(scale / 256.0f), dmin = md_fp32_to_fp16(scale / 128.0f);
                memcpy(q, &d, 2);
                memcpy(q + 2, &dmin, 2);
                for (int i = 4; i < 144; i++)
                    q[i] = (uint8_t)(frand(f) * 127.0f + 128.0f);
            }
        }
    }
    free(row);
    f->bufs[f->n_bufs++] = b;
    return b;
}

static void add(struct fixture *f, struct md_gguf_writer *w, const char *name, uint32_t t,
                int64_t ne0, int64_t ne1, float scale, float offset)
{
    int64_t ne[2] = { ne0, ne1 };
    if (ne1 > 1) {
        md_gguf_writer_add_tensor(w, name, t, 2, ne, weight_bytes(f, t, ne0, ne1, scale));
        return;
    }
    float *v = malloc(sizeof(float) * (size_t)ne0);
    for (int64_t i = 0; v && i < ne0; i++)
        v[i] = offset + scale * frand(f);
    f->bufs[f->n_bufs++] = v;
    md_gguf_writer_add_tensor(w, name, MD_TYPE_F32, 1, ne, v);
}

static struct md_model *make_model(uint32_t t, const char *arch, uint64_t seed, void **file)
{
    struct fixture f = { .rng = seed };
    struct md_gguf_writer *w = md_gguf_writer_new();
    char key[96], name[64];
    bool qwen = !strcmp(arch, "qwen2");
#define KEY(s) (snprintf(key, sizeof key, "%s." s, arch), key)
    md_gguf_writer_add_str(w, "general.architecture", arch);
    md_gguf_writer_add_u32(w, KEY("context_length"), 256);
    md_gguf_writer_add_u32(w, KEY("embedding_length"), N_EMBD);
    md_gguf_writer_add_u32(w, KEY("block_count"), N_LAYER);
    md_gguf_writer_add_u32(w, KEY("feed_forward_length"), N_FF);
    md_gguf_writer_add_u32(w, KEY("attention.head_count"), N_HEAD);
    md_gguf_writer_add_u32(w, KEY("attention.head_count_kv"), N_HEAD_KV);
    md_gguf_writer_add_f32(w, KEY("attention.layer_norm_rms_epsilon"), 1e-5f);
#undef KEY
    int kv = N_EMBD / N_HEAD * N_HEAD_KV;
    float sw = 2.0f / sqrtf((float)N_EMBD);
    add(&f, w, "token_embd.weight", t, N_EMBD, N_VOCAB, 1.0f, 0);
    add(&f, w, "output_norm.weight", t, N_EMBD, 1, 0.2f, 1.0f);
    add(&f, w, "output.weight", t, N_EMBD, N_VOCAB, sw, 0);
    for (int l = 0; l < N_LAYER; l++) {
#define ADD(s, ne0, ne1, sc, off) (snprintf(name, sizeof name, "blk.%d." s, l), \
                                   add(&f, w, name, t, ne0, ne1, sc, off))
        ADD("attn_norm.weight", N_EMBD, 1, 0.2f, 1.0f);
        ADD("attn_q.weight", N_EMBD, N_EMBD, sw, 0);
        ADD("attn_k.weight", N_EMBD, kv, sw, 0);
        ADD("attn_v.weight", N_EMBD, kv, sw, 0);
        if (qwen) {
            ADD("attn_q.bias", N_EMBD, 1, 0.5f, 0);
            ADD("attn_k.bias", kv, 1, 0.5f, 0);
            ADD("attn_v.bias", kv, 1, 0.5f, 0);
        }
        ADD("attn_output.weight", N_EMBD, N_EMBD, sw, 0);
        ADD("ffn_norm.weight", N_EMBD, 1, 0.2f, 1.0f);
        ADD("ffn_gate.weight", N_EMBD, N_FF, sw, 0);
        ADD("ffn_up.weight", N_EMBD, N_FF, sw, 0);
        ADD("ffn_down.weight", N_FF, N_EMBD, 2.0f / sqrtf((float)N_FF), 0);
#undef ADD
    }
    size_t size = 0;
    char err[256] = "";
    struct md_model *m = NULL;
    int rc = md_gguf_writer_write_mem(w, file, &size, err, sizeof err);
    md_gguf_writer_free(w);
    for (int i = 0; i < f.n_bufs; i++)
        free(f.bufs[i]);
    if (!rc) {
        struct md_model_params mp = md_model_default_params();
        mp.backend = md_test_backend();
        rc = md_model_load_memory(*file, size, &mp, &m, err, sizeof err);
    }
    CHECKF(rc == MD_OK && m, "%s %s: %s", arch, md_type_name(t), err);
    return m;
}

static struct md_context *new_ctx(struct md_model *m, int32_t n_ctx, int32_t n_batch, bool exact)
{
    struct md_context_params p = md_context_default_params();
    p.n_ctx = n_ctx;
    p.n_batch = n_batch;
    p.n_threads = 2;
    p.exact_matmul = exact;
    char err[256];
    struct md_context *c = NULL;
    CHECKF(md_context_new(m, &p, &c, err, sizeof err) == MD_OK, "%s", err);
    return c;
}

/* ---- multi step == single steps ----------------------------------------- */

/* Sequence i's prompt (2 + 3i tokens), the same into a and b; two of three
 * sequences have layer 1 compacted after it (its cache shorter than the
 * sequence), one of which rotates that layer by its cache length. */
static void prefill_twins(struct md_context *a, struct md_context *b, int i)
{
    int32_t toks[64];
    int n = 2 + 3 * i;
    for (int j = 0; j < n; j++)
        toks[j] = (7 * i + 5 * j + 1) % N_VOCAB;
    struct md_context *ab[2] = { a, b };
    for (int k = 0; k < 2; k++) {
        struct md_kv_cache *kv = md_context_kv(ab[k]);
        if (i % 3 == 2)
            CHECK(md_kv_cache_set_pos_policy(kv, 1, MD_KV_POS_LAYER_LEN) == MD_OK);
        CHECK(md_decode(ab[k], toks, n, false) == MD_OK);
        if (i % 3 != 0) {
            int32_t idx[64], m = 0;
            for (int j = 0; j < n; j += 2)
                idx[m++] = j;
            CHECK(md_kv_cache_keep(kv, 1, idx, m) == MD_OK);
        }
    }
}

static int argmax(const float *l)
{
    int b = 0;
    for (int v = 1; v < N_VOCAB; v++)
        if (l[v] > l[b])
            b = v;
    return b;
}

/* The gap between l's two largest logits. */
static double top2_gap(const float *l)
{
    int b = argmax(l);
    double second = -INFINITY;
    for (int v = 0; v < N_VOCAB; v++)
        if (v != b && l[v] > second)
            second = l[v];
    return (double)l[b] - second;
}

static bool same_caches(struct md_context *a, struct md_context *b)
{
    struct md_kv_cache *ka = md_context_kv(a), *kb = md_context_kv(b);
    bool same = md_context_n_past(a) == md_context_n_past(b);
    for (int l = 0; l < N_LAYER; l++) {
        int32_t n = md_kv_cache_len(ka, l);
        same = same && n == md_kv_cache_len(kb, l) &&
               !memcmp(md_kv_cache_pos(ka, l), md_kv_cache_pos(kb, l), sizeof(int32_t) * (size_t)n);
    }
    return same;
}

/* n sequences, steps steps: multi on A, one by one on B. Returns the rows
 * whose logits were bit-identical. */
static int compare_steps(struct md_context **A, struct md_context **B, int n, int steps,
                         const char *what)
{
    int32_t tok[MAX_SEQ];
    int identical = 0;
    double worst = 0, tol = md_test_tol(4e-6, 2e-3);
    for (int i = 0; i < n; i++)
        tok[i] = argmax(md_get_logits(B[i], -1));
    for (int s = 0; s < steps; s++) {
        int rc = md_decode_multi(A, tok, n);
        CHECKF(rc == MD_OK, "%s: %s", what, md_context_error(A[0]));
        if (rc)
            return 0;
        for (int i = 0; i < n; i++) {
            CHECK(md_decode(B[i], &tok[i], 1, false) == MD_OK);
            const float *la = md_get_logits(A[i], -1), *lb = md_get_logits(B[i], -1);
            CHECK(la && lb && md_n_logits(A[i]) == 1);
            if (!la || !lb)
                return 0;
            double scale = 1, d = 0;
            for (int v = 0; v < N_VOCAB; v++) {
                scale = fmax(scale, fabs(lb[v]));
                d = fmax(d, fabs((double)la[v] - lb[v]));
            }
            worst = fmax(worst, d / scale);
            identical += !memcmp(la, lb, sizeof(float) * N_VOCAB);
            CHECKF(argmax(la) == argmax(lb) || top2_gap(lb) <= 2 * tol * scale,
                   "%s: step %d seq %d: greedy %d vs %d", what, s, i, argmax(la), argmax(lb));
            CHECKF(same_caches(A[i], B[i]), "%s: step %d seq %d: caches differ", what, s, i);
            tok[i] = argmax(lb);
        }
    }
    CHECKF(worst <= tol, "%s: logits off by %g of their scale", what, worst);
    printf("%s: %d sequences x %d steps: %d of %d rows bit-identical, max diff %.2g\n", what, n,
           steps, identical, n * steps, worst);
    return identical;
}

static void check_type(uint32_t t, const char *arch, int n, bool exact)
{
    void *file = NULL;
    struct md_model *m = make_model(t, arch, 42 + t, &file);
    struct md_context *A[MAX_SEQ] = { 0 }, *B[MAX_SEQ] = { 0 };
    for (int i = 0; m && i < n; i++) {
        A[i] = new_ctx(m, 64, 16, exact);
        B[i] = new_ctx(m, 64, 16, exact);
        if (A[i] && B[i])
            prefill_twins(A[i], B[i], i);
    }
    char what[96];
    snprintf(what, sizeof what, "%s %s%s", arch, md_type_name(t), exact ? " exact" : "");
    if (m && A[n - 1] && B[n - 1]) {
        int identical = compare_steps(A, B, n, 5, what);
        /* The integer-dot GEMV (quantized weights, exact_matmul off)
         * computes each row alone: the step is bit-for-bit the single
         * decode. The float GEMV sums in an order that depends on the rows
         * sharing the pass (compare_steps bounds that difference). */
        bool integer_dots = !exact && (t == MD_TYPE_Q8_0 || t == MD_TYPE_Q4_K) &&
                            !md_test_on_cuda();
        if (integer_dots)
            CHECKF(identical == n * 5, "%s: %d of %d rows differ in some bit", what,
                   n * 5 - identical, n * 5);
    }
    for (int i = 0; i < n; i++) {
        md_context_free(A[i]);
        md_context_free(B[i]);
    }
    md_model_free(m);
    free(file);
}

/* ---- failures leave every cache as it was --------------------------------- */

struct lens { int32_t n[N_LAYER], past; };

static struct lens lens_of(struct md_context *c)
{
    struct lens l = { .past = md_context_n_past(c) };
    for (int i = 0; i < N_LAYER; i++)
        l.n[i] = md_kv_cache_len(md_context_kv(c), i);
    return l;
}

static bool unchanged(struct md_context **c, const struct lens *before, int n)
{
    bool ok = true;
    for (int i = 0; i < n; i++) {
        struct lens l = lens_of(c[i]);
        ok = ok && !memcmp(&l, &before[i], sizeof l);
    }
    return ok;
}

static bool stop_now(void *user)
{
    return *(const bool *)user;
}

static void check_failures(void)
{
    void *file = NULL, *file2 = NULL;
    struct md_model *m = make_model(MD_TYPE_F32, "llama", 7, &file);
    struct md_model *other = make_model(MD_TYPE_F32, "llama", 8, &file2);
    if (!m || !other)
        return;
    struct md_context *c[4], *exact = new_ctx(m, 16, 4, true), *small = new_ctx(m, 16, 2, false);
    struct md_context *foreign = new_ctx(other, 16, 4, false);
    struct lens before[4];
    int32_t warm[15] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 };
    for (int i = 0; i < 4; i++) {
        c[i] = new_ctx(m, 16, 4, false);
        CHECK(md_decode(c[i], warm, i == 2 ? 15 : 3 + i, false) == MD_OK);
    }
    int32_t tok[4] = { 1, 2, 3, 4 };
    CHECK(md_decode_multi(c, tok, 4) == MD_OK);   /* sequence 2 now holds 16 of 16 */
    for (int i = 0; i < 4; i++)
        before[i] = lens_of(c[i]);

    CHECK(md_decode_multi(c, tok, 4) == MD_ERR_CONTEXT_FULL);
    CHECKF(strstr(md_context_error(c[2]), "context full"), "%s", md_context_error(c[2]));
    CHECKF(strstr(md_context_error(c[0]), "sequence 2") && strstr(md_context_error(c[0]), "context full"),
           "%s", md_context_error(c[0]));
    CHECK(md_get_logits(c[0], -1) == NULL);   /* a failed call leaves no logits */
    CHECK(unchanged(c, before, 4));
    struct md_context *rest[3] = { c[0], c[1], c[3] };
    int32_t rest_tok[3] = { 5, 6, 7 };
    CHECKF(md_decode_multi(rest, rest_tok, 3) == MD_OK, "%s", md_context_error(c[0]));
    for (int i = 0; i < 4; i++)
        before[i] = lens_of(c[i]);

    int32_t bad_tok[4] = { 1, N_VOCAB, 3, 4 };
    CHECK(md_decode_multi(NULL, tok, 2) == MD_ERR_INVALID);
    CHECK(md_decode_multi(c, tok, 0) == MD_ERR_INVALID);
    CHECK(md_decode_multi(c, NULL, 2) == MD_ERR_INVALID);
    CHECKF(strstr(md_context_error(c[0]), "tokens is NULL"), "%s", md_context_error(c[0]));
    CHECK(md_decode_multi(c, bad_tok, 4) == MD_ERR_INVALID);
    CHECKF(strstr(md_context_error(c[1]), "token id 64 out of range"), "%s", md_context_error(c[1]));
    CHECKF(strstr(md_context_error(c[3]), "sequence 1"), "%s", md_context_error(c[3]));
    struct md_context *dup[3] = { c[0], c[1], c[0] };
    CHECK(md_decode_multi(dup, tok, 3) == MD_ERR_INVALID);
    CHECKF(strstr(md_context_error(c[0]), "sequence 0 and 2"), "%s", md_context_error(c[0]));
    struct md_context *with_null[3] = { c[0], NULL, c[1] };
    CHECK(md_decode_multi(with_null, tok, 3) == MD_ERR_INVALID);
    CHECKF(strstr(md_context_error(c[0]), "context 1 of 3 is NULL"), "%s", md_context_error(c[0]));
    struct md_context *mixed[2] = { c[0], foreign };
    CHECK(md_decode_multi(mixed, tok, 2) == MD_ERR_INVALID);
    CHECKF(strstr(md_context_error(foreign), "another model"), "%s", md_context_error(foreign));
    struct md_context *kernels[2] = { c[0], exact };
    CHECK(md_decode_multi(kernels, tok, 2) == MD_ERR_INVALID);
    CHECKF(strstr(md_context_error(exact), "exact_matmul"), "%s", md_context_error(exact));
    struct md_context *wide[3] = { small, c[0], c[1] };
    CHECK(md_decode_multi(wide, tok, 3) == MD_ERR_INVALID);
    CHECKF(strstr(md_context_error(small), "n_batch 2"), "%s", md_context_error(small));
    CHECK(unchanged(c, before, 4));

    bool stop = true;
    struct md_context_params p = md_context_default_params();
    p.n_ctx = 16;
    p.n_threads = 2;
    p.abort_callback = stop_now;
    p.abort_callback_user = &stop;
    struct md_context *aborting = NULL;
    char err[256];
    CHECK(md_context_new(m, &p, &aborting, err, sizeof err) == MD_OK);
    struct md_context *ab[3] = { c[0], c[1], aborting };
    struct lens ab_before[3] = { before[0], before[1], lens_of(aborting) };
    CHECK(md_decode_multi(ab, tok, 3) == MD_ERR_ABORTED);
    CHECKF(strstr(md_context_error(aborting), "aborted"), "%s", md_context_error(aborting));
    CHECK(unchanged(ab, ab_before, 3));

    for (int i = 0; i < 4; i++)
        md_context_free(c[i]);
    md_context_free(aborting);
    md_context_free(exact);
    md_context_free(small);
    md_context_free(foreign);
    md_model_free(m);
    md_model_free(other);
    free(file);
    free(file2);
}

/* ---- reduction sessions ----------------------------------------------------- */

/* Session i's prompt: 3 text rows, 16 visual rows, 2 + i text rows. */
static int prefill_session(struct md_reduce_session *s, int i)
{
    int32_t tok[32];
    float embd[16 * N_EMBD];
    int n = 0;
    for (int j = 0; j < 3; j++)
        tok[n++] = (3 * i + j + 1) % N_VOCAB;
    for (int j = 0; j < 16; j++)
        tok[n++] = MD_TOKEN_EMBD;
    for (int j = 0; j < 2 + i; j++)
        tok[n++] = (5 * i + 7 * j + 2) % N_VOCAB;
    uint64_t st = 99 + (uint64_t)i;
    for (int j = 0; j < 16 * N_EMBD; j++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        embd[j] = (float)((double)(st >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
    struct md_batch b = { .n = n, .tokens = tok, .embd = embd };
    int rc = md_reduce_prefill_batch(s, &b, NULL);
    CHECKF(rc == MD_OK, "%s", md_reduce_error(s));
    return rc;
}

static void check_sessions(const char *spec)
{
    enum { N = 5, STEPS = 8 };
    void *file = NULL;
    struct md_model *m = make_model(MD_TYPE_Q8_0, "qwen2", 11, &file);
    struct md_reduce_config cfg;
    char err[256];
    CHECKF(md_reduce_parse(spec, &cfg, err, sizeof err) == MD_OK, "%s", err);
    struct md_context *ca[N] = { 0 }, *cb[N] = { 0 };
    struct md_reduce_session *sa[N] = { 0 }, *sb[N] = { 0 };
    bool ok = m != NULL;
    for (int i = 0; ok && i < N; i++) {
        ca[i] = new_ctx(m, 64, 32, false);
        cb[i] = new_ctx(m, 64, 32, false);
        ok = ca[i] && cb[i] && md_reduce_session_new(ca[i], NULL, &cfg, &sa[i], err, sizeof err) == MD_OK &&
             md_reduce_session_new(cb[i], NULL, &cfg, &sb[i], err, sizeof err) == MD_OK &&
             !prefill_session(sa[i], i) && !prefill_session(sb[i], i);
    }
    CHECKF(ok, "%s: %s", spec, err);
    int32_t tok[N];
    int evicted = 0;
    for (int s = 0; ok && s < STEPS; s++) {
        for (int i = 0; i < N; i++)
            tok[i] = argmax(md_reduce_logits(sb[i]));
        int rc = md_reduce_decode_multi(sa, tok, N);
        CHECKF(rc == MD_OK, "%s: %s", spec, md_reduce_error(sa[0]));
        for (int i = 0; i < N && !rc; i++) {
            CHECK(md_reduce_decode(sb[i], tok[i]) == MD_OK);
            const struct md_reduce_stats *x = md_reduce_stats(sa[i]), *y = md_reduce_stats(sb[i]);
            CHECKF(!memcmp(md_reduce_logits(sa[i]), md_reduce_logits(sb[i]), sizeof(float) * N_VOCAB),
                   "%s: step %d session %d: logits differ", spec, s, i);
            CHECK(x->n_generated == y->n_generated && x->flops_decode == y->flops_decode &&
                  x->vis_kv_after_decode == y->vis_kv_after_decode &&
                  x->kv_bytes_decode == y->kv_bytes_decode);
            CHECKF(same_caches(ca[i], cb[i]), "%s: step %d session %d: caches differ", spec, s, i);
            evicted += s == STEPS - 1 && x->vis_kv_after_decode < 16;
        }
    }
    printf("%s: %d sessions x %d steps equal to one at a time; %d sessions evicted vision entries\n",
           spec, N, STEPS, evicted);
    if (strstr(spec, "kv=decode"))
        CHECKF(evicted > 0, "%s: no eviction happened, the tracker went untested", spec);

    struct md_reduce_session *twice[2] = { sa[0], sa[0] };
    CHECK(md_reduce_decode_multi(twice, tok, 2) == MD_ERR_INVALID);
    CHECKF(strstr(md_reduce_error(sa[0]), "same context"), "%s", md_reduce_error(sa[0]));
    md_reduce_reset(sa[1]);
    CHECK(md_reduce_decode_multi(sa, tok, 2) == MD_ERR_INVALID);
    CHECKF(strstr(md_reduce_error(sa[1]), "before a successful prefill"), "%s", md_reduce_error(sa[1]));
    CHECK(md_reduce_decode_multi(NULL, tok, 2) == MD_ERR_INVALID);
    CHECK(md_reduce_decode_multi(sa, NULL, 2) == MD_ERR_INVALID);

    for (int i = 0; i < N; i++) {
        md_reduce_session_free(sa[i]);
        md_reduce_session_free(sb[i]);
        md_context_free(ca[i]);
        md_context_free(cb[i]);
    }
    md_model_free(m);
    free(file);
}

int main(void)
{
    check_type(MD_TYPE_F32, "qwen2", 4, false);
    check_type(MD_TYPE_F16, "llama", 12, false);   /* two weight products per matmul */
    check_type(MD_TYPE_Q8_0, "qwen2", 10, false);
    check_type(MD_TYPE_Q8_0, "llama", 3, true);
    check_type(MD_TYPE_Q4_K, "llama", 9, false);
    check_failures();
    check_sessions("none");
    check_sessions("mustdrop:kv=decode,evict=0.05,every=2");
    return md_test_finish("decode_multi");
}
