/* MustDrop faithful mode on the HF LLaVA-1.5 fixture against a naive
 * reimplementation written here from docs/reduction-methods.md §1.1-1.4:
 * local merge scored with explicit pairwise cosines, the key set by sorting
 * the class attention, the dual filter from a full causal softmax (no LSE),
 * rows dropped through the llm steps. The kept set must be identical, the logits
 * equal, and the compacted KV cache must hold exactly the surviving entries
 * with the reference's per-layer positions (layers before the first pruning
 * layer whole; every other layer the final set, each keeping the position
 * it was rotated with) and the same key rows. */
#include "red_fixture.h"
#include "llm.h"

#define MAXR 512

struct naive {
    int32_t kept[MAXR], n_kept;           /* final prompt rows */
    int32_t inflight[8][MAXR], n_in[8];   /* prompt rows in flight at each layer */
    float *logits;
    struct md_context *ctx;
};

/* ---- stage A, naive ---- */
static int cmp_desc(const void *a, const void *b)
{
    const float *x = a, *y = b;   /* pairs (score, index) */
    return x[0] < y[0] ? 1 : x[0] > y[0] ? -1 : (x[1] > y[1]) - (x[1] < y[1]);
}

static float naive_cos(const float *a, const float *b, int32_t D)
{
    double ab = 0, aa = 0, bb = 0;
    for (int32_t e = 0; e < D; e++)
        ab += a[e] * b[e], aa += a[e] * a[e], bb += b[e] * b[e];
    return (float)(ab / sqrt(aa * bb));
}

/* Encode with A1 (merge of the one 3x3 window of the 4x4 grid) and A2. */
static int32_t naive_vision(struct red_fix *f, float thresh, float *embd, bool *key)
{
    int32_t S = md_vision_image_size(f->vis), D = md_vision_hidden(f->vis), H = md_vision_n_head(f->vis);
    int32_t L = md_vision_n_layer_run(f->vis), np = md_vision_n_pos(f->vis);
    float *pix = malloc(sizeof(float) * 3 * S * S), *h = malloc(sizeof(float) * np * D);
    md_vision_preprocess(f->vis, f->img, f->w, f->h, f->w * 3, pix);
    struct md_vision_run *r;
    md_vision_run_begin(f->vis, pix, 1, &r);
    md_vision_run_layers(r, 0, 1);
    md_vision_run_hidden(r, h);
    int32_t win[9];
    for (int32_t k = 0; k < 9; k++)
        win[k] = 1 + (k / 3) * 4 + k % 3;   /* +1: class token first */
    double s = 0;
    for (int32_t a = 0; a < 9; a++)
        for (int32_t b = 0; b < 9; b++)
            if (a != b)
                s += naive_cos(h + win[a] * D, h + win[b] * D, D);
    s /= 72;
    int32_t n = np;
    if (s >= thresh) {
        float *m = malloc(sizeof(float) * np * D);
        memcpy(m, h, sizeof(float) * D);
        for (int32_t e = 0; e < D; e++) {
            float acc = 0;
            for (int32_t k = 0; k < 9; k++)
                acc += h[win[k] * D + e];
            m[D + e] = acc / 9;
        }
        n = 2;
        for (int32_t j = 1; j < np; j++) {
            bool in = false;
            for (int32_t k = 0; k < 9; k++)
                in |= win[k] == j;
            if (!in)
                memcpy(m + (size_t)(n++) * D, h + (size_t)j * D, sizeof(float) * D);
        }
        md_vision_run_set_hidden(r, m, n);
        free(m);
    }
    printf("naive: window score %.4f -> %d tokens\n", s, n - 1);
    float *p = malloc(sizeof(float) * H * n), *pairs = malloc(sizeof(float) * 2 * n);
    md_vision_run_attention_row(r, L - 1, 0, p);
    for (int32_t j = 1; j < n; j++) {
        float a = 0;
        for (int32_t hh = 0; hh < H; hh++)
            a += p[hh * n + j] / H;
        pairs[2 * (j - 1)] = a;
        pairs[2 * (j - 1) + 1] = (float)(j - 1);
    }
    qsort(pairs, (size_t)(n - 1), 2 * sizeof(float), cmp_desc);
    int32_t nk = (int32_t)ceil(0.08 * (n - 1) - 1e-9);
    memset(key, 0, sizeof(bool) * (size_t)(n - 1));
    for (int32_t i = 0; i < nk; i++)
        key[(int32_t)pairs[2 * i + 1]] = true;
    md_vision_run_layers(r, 1, L);
    int32_t got = 0;
    md_vision_run_project(r, true, embd, np, &got);
    md_vision_run_end(r);
    free(pix); free(h); free(p); free(pairs);
    return got;
}

/* ---- stage B, naive, through the llm steps ---- */
static bool in_list(const int32_t *a, int32_t n, int32_t v)
{
    for (int32_t i = 0; i < n; i++)
        if (a[i] == v)
            return true;
    return false;
}

static void naive_llm(struct red_fix *f, struct naive *nv, float tg, float ti, float thresh,
                      const int32_t *layers, int32_t n_layers)
{
    int32_t E = md_vision_n_embd(f->vis), np = md_vision_n_pos(f->vis);
    float *embd = malloc(sizeof(float) * np * E);
    bool key[64];
    int32_t n_img = naive_vision(f, thresh, embd, key);
    struct md_vision_prompt pr;
    char err[256];
    md_vision_prompt_build_multi(f->model, NULL, NULL, RED_QUESTION, embd, &n_img, NULL, 1, E, &pr,
                                 err, sizeof err);
    struct md_context *ctx = red_ctx(f);
    nv->ctx = ctx;
    md_kv_cache_set_pos_policy(md_context_kv(ctx), -1, MD_KV_POS_LAYER_LEN);
    const struct md_hparams *hp = &f->model->hp;
    int32_t H = hp->n_head, Hkv = hp->n_head_kv, d = hp->head_dim, n = pr.n;
    int32_t orig[MAXR], vis0 = pr.image_pos, vis1 = pr.image_pos + n_img;
    for (int32_t i = 0; i < n; i++)
        orig[i] = i;
    CHECK(md_llm_begin(ctx, &pr.batch, 0, n) == MD_OK);
    for (int32_t il = 0; il < hp->n_layer; il++) {
        memcpy(nv->inflight[il], orig, sizeof(int32_t) * n);
        nv->n_in[il] = n;
        if (il == hp->n_layer - 1 && !in_list(layers, n_layers, il))
            md_llm_want_last(ctx, 1);   /* as the session: only the last row's logits */
        CHECK(md_llm_layer(ctx, il) == MD_OK);
        if (!in_list(layers, n_layers, il))
            continue;
        float *q = malloc(sizeof(float) * n * H * d), *k = malloc(sizeof(float) * n * Hkv * d);
        struct md_tensor qt = md_llm_q(ctx);
        ctx->be->ops->tensor_get(ctx->be, &qt, 0, q, sizeof(float) * n * H * d);
        ctx->be->ops->tensor_get(ctx->be, &ctx->kv->layers[il].k, 0, k, sizeof(float) * n * Hkv * d);
        int32_t v0 = -1, v1 = -1;   /* vision rows in flight: a contiguous run */
        for (int32_t i = 0; i < n; i++)
            if (orig[i] >= vis0 && orig[i] < vis1) {
                v0 = v0 < 0 ? i : v0;
                v1 = i + 1;
            }
        double g[64] = { 0 }, m[64] = { 0 }, G = 0;
        /* mm[i][j]: head-mean probability of text row i on vision row j */
        static double mm[MAXR][64];
        memset(mm, 0, sizeof mm);
        for (int32_t i = v1; i < n; i++)
            for (int32_t hh = 0; hh < H; hh++) {
                double sc[MAXR], mx = -1e300, sum = 0;
                for (int32_t j = 0; j <= i; j++) {
                    double dot = 0;
                    for (int32_t e = 0; e < d; e++)
                        dot += (double)q[(size_t)i * H * d + hh * d + e] *
                               k[(size_t)j * Hkv * d + (hh / (H / Hkv)) * d + e];
                    sc[j] = dot / sqrt((double)d);
                    mx = sc[j] > mx ? sc[j] : mx;
                }
                for (int32_t j = 0; j <= i; j++)
                    sum += exp(sc[j] - mx);
                for (int32_t j = v0; j < v1; j++)
                    mm[i][j - v0] += exp(sc[j] - mx) / sum / H;
            }
        for (int32_t j = 0; j < v1 - v0; j++) {
            for (int32_t i = v1; i < n; i++) {
                g[j] += mm[i][j];                       /* global: sum over text rows */
                m[j] = mm[i][j] > m[j] ? mm[i][j] : m[j];   /* individual: max */
            }
            G += g[j];
        }
        int32_t keep[MAXR], nk = 0;
        for (int32_t i = 0; i < n; i++) {
            bool vis = i >= v0 && i < v1;
            bool drop = vis && g[i - v0] < tg * G && m[i - v0] < ti && !key[orig[i] - vis0];
            if (!drop)
                keep[nk++] = i;
        }
        if (nk < n) {
            CHECK(md_llm_keep_rows(ctx, keep, nk) == MD_OK);
            for (int32_t i = 0; i < nk; i++)
                orig[i] = orig[keep[i]];
            n = nk;
        }
        free(q);
        free(k);
    }
    nv->logits = malloc(sizeof(float) * hp->n_vocab);
    CHECK(md_llm_end(ctx, false, nv->logits) == MD_OK);
    ctx->n_rows = 0;
    memcpy(nv->kept, orig, sizeof(int32_t) * n);
    nv->n_kept = n;
    md_vision_prompt_free(&pr);
    free(embd);
}

/* Index of row r in list a[0..n), or -1. */
static int32_t find(const int32_t *a, int32_t n, int32_t r)
{
    for (int32_t i = 0; i < n; i++)
        if (a[i] == r)
            return i;
    return -1;
}

/* layers: the pruning layers (NULL: the default 2/6/10/14 scaled to the
 * fixture's 4 layers = 0/1/2). */
static void run_case(struct red_fix *f, float tg, float ti, float thresh, const char *layers_arg)
{
    static const int32_t scaled[3] = { 0, 1, 2 };
    int32_t custom[1] = { layers_arg ? atoi(layers_arg) : 0 };
    const int32_t *layers = layers_arg ? custom : scaled;
    int32_t n_layers = layers_arg ? 1 : 3, first = layers[0];
    struct naive nv;
    memset(&nv, 0, sizeof nv);
    naive_llm(f, &nv, tg, ti, thresh, layers, n_layers);
    char spec[128], err[256];
    snprintf(spec, sizeof spec, "mustdrop:tau_g=%g,tau_i=%g,merge=%g,kv=faithful%s%s", tg, ti, thresh,
             layers_arg ? ",layers=" : "", layers_arg ? layers_arg : "");
    struct md_reduce_config cfg;
    CHECK(md_reduce_parse(spec, &cfg, err, sizeof err) == MD_OK);
    struct md_context *ctx = red_ctx(f);
    struct md_reduce_session *s = NULL;
    CHECK(md_reduce_session_new(ctx, f->vis, &cfg, &s, err, sizeof err) == MD_OK);
    CHECK(md_reduce_add_image(s, f->img, f->w, f->h, f->w * 3) == MD_OK);
    CHECKF(md_reduce_prefill(s, NULL, NULL, RED_QUESTION) == MD_OK, "%s", md_reduce_error(s));
    const struct md_reduce_stats *st = md_reduce_stats(s);
    struct md_kv_cache *kv = md_context_kv(ctx);
    /* the first pruning layer ran on every row: its positions are the prompt rows */
    int32_t n0 = md_kv_cache_len(kv, first);
    const int32_t *p0 = md_kv_cache_pos(kv, first);
    bool same = n0 == nv.n_kept && !memcmp(p0, nv.kept, sizeof(int32_t) * n0);
    CHECKF(same, "%s: kept set differs (%d vs naive %d rows)", spec, n0, nv.n_kept);
    CHECK(!memcmp(md_reduce_logits(s), nv.logits, sizeof(float) * md_model_n_vocab(f->model)));
    printf("%-44s vision %d -> %d (merge) -> per layer %d/%d/%d/%d, avg %.2f, key %d; "
           "kept set = naive\n", spec, st->vis_in, st->vis_after_vision, st->vis_per_layer[0],
           st->vis_per_layer[1], st->vis_per_layer[2], st->vis_per_layer[3], st->vis_layer_avg,
           st->n_key_tokens);
    /* layers before the first pruning layer hold every row; every other
     * layer the final set; positions as rotated at that layer, keys
     * identical to the uncompacted naive cache's rows */
    const struct md_kv_cache *nkv = nv.ctx->kv;
    int32_t E = nkv->n_embd_kv;
    for (int32_t l = 0; l < md_kv_cache_n_layer(kv); l++) {
        const int32_t *want = l < first ? nv.inflight[l] : nv.kept;
        int32_t n_want = l < first ? nv.n_in[l] : nv.n_kept;
        CHECKF(md_kv_cache_len(kv, l) == n_want, "layer %d holds %d, want %d", l,
               md_kv_cache_len(kv, l), n_want);
        const int32_t *pl = md_kv_cache_pos(kv, l);
        float *ks = malloc(sizeof(float) * E), *kn = malloc(sizeof(float) * E);
        for (int32_t i = 0; i < n_want && i < md_kv_cache_len(kv, l); i++) {
            int32_t at = find(nv.inflight[l], nv.n_in[l], want[i]);   /* index at layer l */
            CHECKF(pl[i] == at, "layer %d entry %d: position %d, want %d", l, i, pl[i], at);
            ctx->be->ops->tensor_get(ctx->be, &kv->layers[l].k, sizeof(float) * E * i, ks,
                                     sizeof(float) * E);
            nv.ctx->be->ops->tensor_get(nv.ctx->be, &nkv->layers[l].k, sizeof(float) * E * at, kn,
                                        sizeof(float) * E);
            CHECKF(!memcmp(ks, kn, sizeof(float) * E), "layer %d entry %d: key differs", l, i);
        }
        free(ks);
        free(kn);
    }
    /* faithful decode: each layer's new entry takes that layer's length */
    int32_t t = red_argmax(md_reduce_logits(s), md_model_n_vocab(f->model));
    CHECK(md_reduce_decode(s, t) == MD_OK);
    for (int32_t l = 0; l < md_kv_cache_n_layer(kv); l++)
        CHECKF(md_kv_cache_pos(kv, l)[md_kv_cache_len(kv, l) - 1] ==
               (l < first ? nv.n_in[0] : nv.n_kept), "layer %d: decode position %d", l,
               md_kv_cache_pos(kv, l)[md_kv_cache_len(kv, l) - 1]);
    md_reduce_session_free(s);
    md_context_free(ctx);
    md_context_free(nv.ctx);
    free(nv.logits);
}

int main(void)
{
    struct red_fix f;
    red_fix_load(&f, "tiny-llava-mmproj-f32.gguf");
    run_case(&f, 0.05f, 0.06f, 2.0f, NULL);    /* no merge */
    run_case(&f, 0.08f, 0.1f, -1.0f, NULL);    /* the window always merges */
    run_case(&f, 1.0f, 1.0f, 0.8f, NULL);      /* everything but the key set goes */
    run_case(&f, 0.05f, 0.06f, 2.0f, "2");     /* layers 0-1 stay whole, as 0-1 of 32 */
    red_fix_free(&f);
    return md_test_finish("reduce_mustdrop");
}
