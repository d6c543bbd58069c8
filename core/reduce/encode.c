/* Stages (a) and (b): the vision tower with MustDrop's local spatial merge
 * and class attention, then per-image / per-frame selection (HiRED,
 * random, uniform), temporal merging of video frames (DyCoke, stmerge) and
 * the global cap. The kept rows of each image become one block. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "session.h"
#include "vision-impl.h"

static void encoded_free(struct md_encoded *e)
{
    free(e->embd);
    free(e->score);
    free(e->score0);
    free(e->src);
    memset(e, 0, sizeof *e);
}

/* ---- the tower (stage a) ------------------------------------------------ */

/* What a session asks of the tower besides the rows: MustDrop's local merge
 * after a middle layer (per image, so such a run holds one image) and the
 * last layer's class attention. Sessions that ask the same share runs. */
struct tower_needs {
    bool merge, score;
};

static struct tower_needs tower_needs(const struct md_reduce_session *s)
{
    int32_t L = s->vis->hp.n_layer_run;
    struct tower_needs t = {
        .merge = has(s, MD_REDUCE_MUSTDROP) && s->cfg.md_merge_thresh <= 1.0f &&
                 s->cfg.md_merge_layer < L - 1,
        .score = has(s, MD_REDUCE_MUSTDROP | MD_REDUCE_HIRED | MD_REDUCE_VISIONZIP |
                        MD_REDUCE_FLASHVID | MD_REDUCE_HOLITOM) ||
                 s->cfg.max_visual_tokens > 0,
    };
    return t;
}

/* Layers [a, b) of the run; *flops gets one image's share. */
static int run_layers_counted(const struct md_vision *v, struct md_vision_run *r, int32_t a,
                              int32_t b, double *flops)
{
    struct md_vit_dims d = md_reduce_vit_dims(&v->hp);
    for (int32_t il = a; il < b; il++)
        *flops += md_reduce_flops_vit_layer(&d, md_vision_run_n_tok(r));
    return a < b ? md_vision_run_layers(r, a, b) : MD_OK;
}

/* Importance of each patch from layer il's attention, as that layer's
 * input: the class token's row, mean over heads. A tower without class
 * token (SigLIP) has no such row; we use the attention the patches receive
 * from up to 8 evenly spaced query rows instead (mean over rows and heads),
 * an estimate of the mean received attention that stays one row per query
 * (docs/reduction.md). out[n_img][n_patches]. */
static int class_attention(struct md_vision_run *r, const struct md_vision *v, int32_t il,
                           float *out)
{
    int32_t n = md_vision_run_n_tok(r), H = v->hp.n_head, cls = v->hp.has_class ? 1 : 0;
    int32_t n_img = md_vision_run_n_img(r), np = n - cls;
    float *p = malloc(sizeof(float) * (size_t)n_img * (size_t)H * (size_t)n);
    if (!p)
        return MD_ERR_NOMEM;
    int32_t rows = cls ? 1 : (n < 8 ? n : 8);
    for (size_t j = 0; j < (size_t)n_img * (size_t)np; j++)
        out[j] = 0.0f;
    int rc = MD_OK;
    for (int32_t q = 0; q < rows && !rc; q++) {
        int32_t row = cls ? 0 : (int32_t)((int64_t)q * n / rows);
        rc = md_vision_run_attention_row(r, il, row, p);
        for (int32_t i = 0; i < n_img && !rc; i++)
            for (int32_t h = 0; h < H; h++) {
                const float *ph = p + ((size_t)i * H + h) * n;
                for (int32_t j = cls; j < n; j++)
                    out[(size_t)i * np + j - cls] += ph[j] / (float)(H * rows);
            }
    }
    free(p);
    return rc;
}

/* MustDrop A1 after layer merge_layer: merge windows of the patch grid
 * (docs/reduction-methods.md §1.1); the class token stays first. src gets
 * the raster index of every patch token after the merge. One image. */
static int local_merge(struct md_reduce_session *s, struct md_vision_run *r, int32_t *src,
                       int32_t *n_patch)
{
    const struct md_clip_hparams *hp = &s->vis->hp;
    int32_t n = md_vision_run_n_tok(r), D = hp->hidden, cls = hp->has_class ? 1 : 0;
    int32_t side = hp->n_side, nw = md_reduce_lsm_n_windows(side, side, 3);
    float *h = malloc(sizeof(float) * (size_t)n * D), *out = malloc(sizeof(float) * (size_t)n * D);
    float *sc = malloc(sizeof(float) * (size_t)(nw > 0 ? nw : 1));
    int rc = h && out && sc ? md_vision_run_hidden(r, h) : MD_ERR_NOMEM;
    if (!rc && nw > 0 && n == hp->n_pos) {
        md_reduce_lsm_scores(h + (size_t)cls * D, side, side, D, 3, sc);
        int32_t m = md_reduce_lsm_count(sc, nw, s->cfg.md_merge_thresh);
        if (cls)
            memcpy(out, h, sizeof(float) * (size_t)D);
        *n_patch = md_reduce_lsm_merge(h + (size_t)cls * D, side, side, D, 3, sc, m,
                                       out + (size_t)cls * D, src);
        if (m > 0)
            rc = md_vision_run_set_hidden(r, out, *n_patch + cls);
    }
    free(h);
    free(out);
    free(sc);
    return rc;
}

static int encoded_alloc(struct md_encoded *e, const struct md_clip_hparams *hp, bool score,
                         bool score0)
{
    int32_t np = hp->n_patches;
    memset(e, 0, sizeof *e);
    e->side = hp->n_side;
    e->n0 = np;
    e->src = malloc(sizeof(int32_t) * (size_t)np);
    e->score = score ? malloc(sizeof(float) * (size_t)np) : NULL;
    e->score0 = score0 ? malloc(sizeof(float) * (size_t)np) : NULL;
    e->embd = malloc(sizeof(float) * (size_t)np * (size_t)hp->n_embd_out);
    if (!e->src || !e->embd || (score && !e->score) || (score0 && !e->score0))
        return MD_ERR_NOMEM;
    for (int32_t j = 0; j < np; j++)
        e->src[j] = j;
    return MD_OK;
}

/* Run the tower once on n_img preprocessed images pixels[n_img][3][S][S]
 * with what the session `like` needs (s only decides the needs and the
 * merge threshold: the rows go to any session that needs the same); e[i]
 * gets image i's rows, *flops one image's share. want_l0 (layer 0's class
 * attention, HiRED's tile budgets) and a local merge take one image. */
static int encode_pixels_n(struct md_reduce_session *like, const float *pixels, int32_t n_img,
                           bool want_l0, struct md_encoded *e, double *flops)
{
    struct md_vision *v = like->vis;
    const struct md_clip_hparams *hp = &v->hp;
    int32_t L = hp->n_layer_run, np = hp->n_patches;
    struct tower_needs need = tower_needs(like);
    if (n_img < 1 || ((want_l0 || need.merge) && n_img != 1)) {
        memset(e, 0, sizeof *e * (size_t)(n_img > 0 ? n_img : 0));
        return MD_ERR_INVALID;
    }
    *flops = 0.0;
    memset(e, 0, sizeof *e * (size_t)n_img);   /* the caller frees every e[i] */
    int rc = MD_OK;
    for (int32_t i = 0; i < n_img; i++)
        rc = rc ? rc : encoded_alloc(&e[i], hp, need.score, want_l0);
    float *buf = NULL;
    if (!rc && n_img > 1 && !(buf = malloc(sizeof(float) * (size_t)n_img * (size_t)np *
                                           (size_t)(need.score ? 1 : 0) +
                                           sizeof(float) * (size_t)n_img * (size_t)np *
                                           (size_t)hp->n_embd_out)))
        rc = MD_ERR_NOMEM;
    float *embd = n_img > 1 ? buf : e[0].embd;
    float *score = n_img > 1 ? buf + (size_t)n_img * np * hp->n_embd_out : e[0].score;
    struct md_vision_run *r = NULL;
    if (!rc)
        rc = md_vision_run_begin(v, pixels, n_img, &r);
    int32_t done = 0, n_patch = np;
    if (!rc && want_l0)
        rc = class_attention(r, v, 0, e[0].score0);
    if (!rc && need.merge) {
        done = like->cfg.md_merge_layer + 1;
        rc = run_layers_counted(v, r, 0, done, flops);
        if (!rc)
            rc = local_merge(like, r, e[0].src, &n_patch);
    }
    if (!rc && need.score) {
        rc = run_layers_counted(v, r, done, L - 1, flops);
        done = L - 1 > done ? L - 1 : done;
        if (!rc)
            rc = class_attention(r, v, L - 1, score);
    }
    if (!rc)
        rc = run_layers_counted(v, r, done, L, flops);
    int32_t got = 0;
    if (!rc)
        rc = md_vision_run_project(r, true, embd, n_img * np, &got);
    md_vision_run_end(r);
    if (!rc && got % n_img)
        rc = MD_ERR_INVALID;
    if (!rc) {
        struct md_vit_dims d = md_reduce_vit_dims(hp);
        int32_t per = got / n_img;
        *flops += md_reduce_flops_projector(&d, per);
        for (int32_t i = 0; i < n_img; i++) {
            e[i].n = per;
            e[i].n_full = n_patch < np ? np : per;   /* after a merge, src indexes the np patches */
            if (n_img == 1)
                continue;
            memcpy(e[i].embd, embd + (size_t)i * per * hp->n_embd_out,
                   sizeof(float) * (size_t)per * hp->n_embd_out);
            if (need.score)
                memcpy(e[i].score, score + (size_t)i * np, sizeof(float) * (size_t)np);
        }
    }
    free(buf);
    return rc;
}

/* Run the tower on one preprocessed image with what the methods need. */
static int encode_pixels(struct md_reduce_session *s, const float *pixels, bool want_l0,
                         struct md_encoded *e)
{
    double flops = 0.0;
    int rc = encode_pixels_n(s, pixels, 1, want_l0, e, &flops);
    s->st.flops_vision += flops;
    return rc;
}

/* ---- blocks (stage b) ---------------------------------------------------- */

static int push_block(struct md_reduce_session *s, struct md_block *b)
{
    if (s->n_blocks == s->cap_blocks) {
        int32_t cap = s->cap_blocks ? 2 * s->cap_blocks : 16;
        struct md_block *nb = realloc(s->blocks, sizeof *nb * (size_t)cap);
        if (!nb)
            return MD_ERR_NOMEM;
        s->blocks = nb;
        s->cap_blocks = cap;
    }
    s->blocks[s->n_blocks++] = *b;
    memset(b, 0, sizeof *b);
    return MD_OK;
}

/* A block of the rows idx[0..k) of an encoded image (k may be all). */
static int block_from(struct md_reduce_session *s, const float *embd, const float *score,
                      const bool *key, const int32_t *src, const int32_t *idx, int32_t k,
                      int32_t gh, int32_t gw, struct md_block *b)
{
    memset(b, 0, sizeof *b);
    size_t E = (size_t)s->E, m = (size_t)(k > 0 ? k : 1);
    b->embd = malloc(sizeof(float) * m * E);
    b->key = calloc(m, sizeof(bool));
    b->src = malloc(sizeof(int32_t) * m);
    b->score = score ? malloc(sizeof(float) * m) : NULL;
    if (!b->embd || !b->key || !b->src || (score && !b->score)) {
        md_reduce_block_free(b);
        return MD_ERR_NOMEM;
    }
    for (int32_t i = 0; i < k; i++) {
        int32_t j = idx ? idx[i] : i;
        memcpy(b->embd + (size_t)i * E, embd + (size_t)j * E, sizeof(float) * E);
        b->key[i] = key && key[j];
        b->src[i] = src ? src[j] : j;
        if (score)
            b->score[i] = score[j];
    }
    b->n = k;
    b->n_orig = 0;
    for (int32_t i = 0; i < k; i++)   /* callers that know more set n_orig after */
        b->n_orig = b->src[i] + 1 > b->n_orig ? b->src[i] + 1 : b->n_orig;
    b->gh = gh;
    b->gw = gw;
    return MD_OK;
}

static bool key_any(const bool *key, int32_t n)
{
    for (int32_t i = 0; key && i < n; i++)
        if (key[i])
            return true;
    return false;
}

/* Evenly spaced k of n (ascending): the fallback when no score exists. */
static void stride_pick(int32_t n, int32_t k, int32_t *idx)
{
    for (int32_t i = 0; i < k; i++)
        idx[i] = (int32_t)((int64_t)i * n / k);
}

/* Union of the picks idx[0..k) (ascending) with the key tokens, which
 * MustDrop never drops whatever else is composed with it: a floor, so the
 * count can exceed k. Returns the new count (idx has room for n). */
static int32_t with_keys(int32_t *idx, int32_t k, const bool *key, int32_t n)
{
    if (!key_any(key, n))
        return k;
    bool *mark = calloc((size_t)n, sizeof(bool));
    if (!mark)
        return k;
    for (int32_t i = 0; i < k; i++)
        mark[idx[i]] = true;
    int32_t m = 0;
    for (int32_t j = 0; j < n; j++)
        if (mark[j] || key[j])
            idx[m++] = j;
    free(mark);
    return m;
}

/* VisionZip on one image's rows: dominant (key tokens first) + contextual
 * merged rows; no raster any more. */
static int visionzip_block(struct md_reduce_session *s, const float *embd, const float *score,
                           const bool *key, const int32_t *src, int32_t n, struct md_block *b)
{
    const struct md_reduce_config *c = &s->cfg;
    int32_t nd, nc;
    md_reduce_visionzip_split(n, c->vz_keep, c->vz_tokens, c->vz_dominant, &nd, &nc);
    float *out = malloc(sizeof(float) * (size_t)n * (size_t)s->E);
    int32_t *osrc = malloc(sizeof(int32_t) * (size_t)n);
    int32_t k = out && osrc ? md_reduce_visionzip(embd, score, key, src, n, s->E, nd, nc,
                                                  c->vz_mean_merge, out, osrc) : 0;
    /* dominant rows keep their scores (a cap trims by them); contextual
     * rows rank with their target */
    float *osc = score && k ? malloc(sizeof(float) * (size_t)k) : NULL;
    bool *okey = key && k ? calloc((size_t)k, sizeof(bool)) : NULL;
    int rc = k > 0 && (!score || osc) && (!key || okey) ? MD_OK : MD_ERR_NOMEM;
    for (int32_t i = 0; !rc && (osc || okey) && i < k; i++) {
        int32_t j = 0;   /* the row osrc[i] stands for */
        while (j < n && (src ? src[j] : j) != osrc[i])
            j++;
        if (osc)
            osc[i] = j < n ? score[j] : 0.0f;
        if (okey)
            okey[i] = j < n && key[j];
    }
    if (!rc)
        rc = block_from(s, out, osc, okey, osrc, NULL, k, 0, 0, b);
    free(out);
    free(osrc);
    free(osc);
    free(okey);
    return rc;
}

/* Per-image selection: HiRED (single partition), random, uniform. Writes
 * the kept rows into a new block. At least one row always survives: an
 * image that vanishes entirely would also drop its prompt marker. */
static int select_rows(struct md_reduce_session *s, const float *embd, const float *score,
                       const bool *key, const int32_t *src, int32_t n, int32_t gh, int32_t gw,
                       int32_t budget, struct md_block *b)
{
    const struct md_reduce_config *c = &s->cfg;
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    float *pooled = NULL;
    int32_t *psrc = NULL;
    if (!idx)
        return MD_ERR_NOMEM;
    int32_t k = n;
    const int32_t *use = NULL;
    int rc = MD_OK;
    if (has(s, MD_REDUCE_VISIONZIP)) {
        free(idx);
        return visionzip_block(s, embd, score, key, src, n, b);
    }
    if (budget >= 0) {                                  /* HiRED */
        k = budget < 1 ? 1 : budget > n ? n : budget;
        if (score)
            k = md_reduce_topk_forced(score, key, n, k, idx);
        else
            stride_pick(n, k, idx);
        use = idx;
    } else if (has(s, MD_REDUCE_RANDOM)) {
        k = (int32_t)lround((double)c->random_keep * n);
        k = k < 1 ? 1 : k > n ? n : k;
        md_reduce_random_subset(c->random_seed + (uint64_t)s->st.n_images, n, k, idx);
        k = with_keys(idx, k, key, n);
        use = idx;
    } else if (has(s, MD_REDUCE_UNIFORM) && c->uniform_tokens < n) {
        if (gh * gw == n && !key_any(key, n)) {
            pooled = malloc(sizeof(float) * (size_t)n * (size_t)s->E);
            psrc = malloc(sizeof(int32_t) * (size_t)n);
            if (!pooled || !psrc) {
                rc = MD_ERR_NOMEM;
            } else {
                k = md_reduce_uniform_pool(embd, gh, gw, s->E, c->uniform_tokens, pooled, psrc);
                rc = block_from(s, pooled, NULL, NULL, psrc, NULL, k, 0, 0, b);
            }
            free(pooled);
            free(psrc);
            free(idx);
            return rc;
        }
        k = c->uniform_tokens < 1 ? 1 : c->uniform_tokens;
        stride_pick(n, k, idx);   /* not a raster any more, or keys to keep: evenly spaced */
        k = with_keys(idx, k, key, n);
        use = idx;
    }
    rc = block_from(s, embd, score, key, src, use, k, gh, gw, b);
    free(idx);
    return rc;
}

/* select_rows, for an image the unreduced model gives n_full rows. */
static int select_block(struct md_reduce_session *s, const float *embd, const float *score,
                        const bool *key, const int32_t *src, int32_t n, int32_t n_full,
                        int32_t gh, int32_t gw, int32_t budget, struct md_block *b)
{
    int rc = select_rows(s, embd, score, key, src, n, gh, gw, budget, b);
    if (!rc)
        b->n_orig = n_full > b->n_orig ? n_full : b->n_orig;
    return rc;
}

/* MustDrop A2: the top ceil(rate * n) patches by final-layer class
 * attention are key tokens, never dropped later (docs/reduction-methods.md
 * §1.2). Our tower's last run layer stands for the reference's layer 23:
 * legacy mmproj files do not store that layer (docs/vision.md). */
static bool *key_set(const struct md_reduce_session *s, const float *score, int32_t n)
{
    if (!has(s, MD_REDUCE_MUSTDROP) || !score || n <= 0)
        return NULL;
    bool *key = calloc((size_t)n, sizeof(bool));
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)n);
    int32_t k = (int32_t)ceil((double)s->cfg.md_key_rate * n - 1e-9);
    k = k > n ? n : k;
    if (key && idx && k > 0) {
        md_reduce_topk(score, n, k, idx);
        for (int32_t i = 0; i < k; i++)
            key[idx[i]] = true;
    }
    free(idx);
    return key;
}

static int32_t count_keys(const bool *key, int32_t n)
{
    int32_t c = 0;
    for (int32_t i = 0; key && i < n; i++)
        c += key[i];
    return c;
}

/* Append b's rows to acc (tiles of one image become one block). */
static int concat_block(struct md_reduce_session *s, struct md_block *acc, struct md_block *b)
{
    size_t E = (size_t)s->E, n = (size_t)acc->n + (size_t)b->n;
    float *embd = realloc(acc->embd, sizeof(float) * (n ? n : 1) * E);
    if (embd) acc->embd = embd;
    bool *key = realloc(acc->key, sizeof(bool) * (n ? n : 1));
    if (key) acc->key = key;
    int32_t *src = realloc(acc->src, sizeof(int32_t) * (n ? n : 1));
    if (src) acc->src = src;
    float *score = realloc(acc->score, sizeof(float) * (n ? n : 1));
    if (score) acc->score = score;
    if (!embd || !key || !src || !score)
        return MD_ERR_NOMEM;
    memcpy(acc->embd + (size_t)acc->n * E, b->embd, sizeof(float) * (size_t)b->n * E);
    memcpy(acc->key + acc->n, b->key, sizeof(bool) * (size_t)b->n);
    for (int32_t i = 0; i < b->n; i++) {   /* b's rows come after acc's unreduced span */
        acc->src[acc->n + i] = acc->n_orig + b->src[i];
        acc->score[acc->n + i] = b->score ? b->score[i] : 0.0f;
    }
    acc->n += b->n;
    acc->n_orig += b->n_orig;
    acc->gh = acc->gw = 0;
    return MD_OK;
}

/* One encoded image / tile through key set and selection into a block. */
static int select_encoded(struct md_reduce_session *s, const struct md_encoded *e, int32_t budget,
                          struct md_block *b)
{
    double t0 = md_reduce_now_ms();
    bool *key = key_set(s, e->score, e->n);
    s->st.n_key_tokens += count_keys(key, e->n);
    bool raster = e->n == e->side * e->side;
    int rc = select_block(s, e->embd, e->score, key, e->src, e->n, e->n_full,
                          raster ? e->side : 0, raster ? e->side : 0, budget, b);
    free(key);
    s->st.ms_select += md_reduce_now_ms() - t0;
    return rc;
}

static int hired_single_budget(const struct md_reduce_session *s, int32_t n)
{
    int32_t b = -1;
    if (has(s, MD_REDUCE_HIRED))
        md_reduce_hired_budgets(1, n, s->cfg.hired_budget, s->cfg.hired_alpha, NULL, 0, 0, 0,
                                false, &b);
    return b;
}

/* HiRED's packing of the tiles (docs/reduction-methods.md §2.3): each tile
 * keeps its top-B_i tokens by final-layer attention, then the tiles are
 * laid out as one grid, cropped by the unpad, and read row-major (no
 * newline). Tokens the unpad crops are lost, as in the reference. */
static int hired_pack_tiles(struct md_reduce_session *s, const struct md_encoded *e,
                            const struct md_anyres_plan *p, const int32_t *budget,
                            struct md_block *acc)
{
    const struct md_clip_hparams *hp = &s->vis->hp;
    int32_t ns = hp->n_side, np = hp->n_patches, nt = p->n_tiles;
    bool *kept = calloc((size_t)nt * (size_t)np, sizeof(bool));
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)np);
    size_t E = (size_t)s->E, cap = (size_t)(nt - 1) * (size_t)np;
    float *embd = malloc(sizeof(float) * (cap ? cap : 1) * E), *score = malloc(sizeof(float) * (cap ? cap : 1));
    int32_t *src = malloc(sizeof(int32_t) * (cap ? cap : 1));
    int rc = kept && idx && embd && score && src ? MD_OK : MD_ERR_NOMEM;
    for (int32_t t = 1; !rc && t < nt; t++) {
        int32_t k = budget[t] < 0 ? 0 : budget[t] > np ? np : budget[t];
        md_reduce_topk(e[t].score, np, k, idx);
        for (int32_t j = 0; j < k; j++)
            kept[(size_t)t * np + idx[j]] = true;
    }
    int32_t n = 0;
    for (int32_t gy = p->r0; !rc && gy < p->r1; gy++)
        for (int32_t gx = p->c0; gx < p->c1; gx++) {
            int32_t t = 1 + (gy / ns) * p->nx + gx / ns, tok = (gy % ns) * ns + gx % ns;
            if (!kept[(size_t)t * np + tok])
                continue;
            memcpy(embd + (size_t)n * E, e[t].embd + (size_t)tok * E, sizeof(float) * E);
            score[n] = e[t].score[tok];
            src[n++] = gy * p->nx * ns + gx;
        }
    struct md_block b;
    if (!rc && n > 0 && !(rc = block_from(s, embd, score, NULL, src, NULL, n, 0, 0, &b))) {
        b.n_orig = p->ny * ns * p->nx * ns;
        rc = concat_block(s, acc, &b);
        md_reduce_block_free(&b);
    }
    free(kept);
    free(idx);
    free(embd);
    free(score);
    free(src);
    return rc;
}

/* LLaVA-NeXT with a method that needs the tower's internals: tiles encoded
 * one by one. MustDrop packs them flat (base, then tiles in order; no
 * unpad, no image_newline), as its reference forces
 * (docs/reduction-methods.md §1.5); HiRED splits its budget over the tiles
 * (§2.2 there) and packs them spatially with the unpad (hired_pack_tiles). */
static int add_anyres(struct md_reduce_session *s, const uint8_t *rgb, int32_t w, int32_t h,
                      int32_t stride, struct md_block *acc)
{
    struct md_vision *v = s->vis;
    struct md_anyres_plan p;
    int rc = md_anyres_plan(&v->hp, false, w, h, &p);
    if (rc)
        return md_reduce_fail(s, rc, "AnyRes plan for a %dx%d image failed", w, h);
    size_t S = (size_t)v->hp.image_size;
    float *pix = malloc(sizeof(float) * 3 * S * S * (size_t)p.n_tiles);
    struct md_encoded *e = calloc((size_t)p.n_tiles, sizeof *e);
    int32_t *budget = malloc(sizeof(int32_t) * (size_t)p.n_tiles);
    rc = pix && e && budget ? md_anyres_pixels(&v->hp, v->params.resample, &p, rgb, w, h, stride,
                                               pix) : MD_ERR_NOMEM;
    bool hired = has(s, MD_REDUCE_HIRED);
    for (int32_t t = 0; t < p.n_tiles && !rc; t++) {
        rc = encode_pixels(s, pix + (size_t)t * 3 * S * S, hired && t == 0, &e[t]);
        s->st.n_parts++;
        s->st.vis_in += v->hp.n_patches;
        s->st.vis_after_vision += e[t].n;
    }
    for (int32_t t = 0; t < p.n_tiles; t++)
        budget[t] = -1;
    if (!rc && hired)
        md_reduce_hired_budgets(p.n_tiles, v->hp.n_patches, s->cfg.hired_budget,
                                s->cfg.hired_alpha, e[0].score0, v->hp.n_side, p.ny, p.nx,
                                s->cfg.hired_geometric, budget);
    /* HiRED alone packs the tiles spatially; after a merge (MustDrop) the
     * tiles are no grids any more and everything is packed flat */
    bool spatial = hired && !has(s, MD_REDUCE_MUSTDROP) && !p.interp;
    for (int32_t t = 0; t < (spatial ? 1 : p.n_tiles) && !rc; t++) {
        struct md_block b;
        rc = select_encoded(s, &e[t], hired ? budget[t] : -1, &b);
        if (!rc) {
            rc = concat_block(s, acc, &b);
            md_reduce_block_free(&b);
        }
    }
    if (!rc && spatial)
        rc = hired_pack_tiles(s, e, &p, budget, acc);
    for (int32_t t = 0; e && t < p.n_tiles; t++)
        encoded_free(&e[t]);
    free(e);
    free(pix);
    free(budget);
    return rc;
}

/* The per-frame part of stage (b) on a block a temporal method made: the
 * per-frame method (hired, random, uniform, visionzip; cdpruner waits for
 * the prefill) picks from the rows after the n_fixed leading ones, which
 * pass through first. Nothing to do without a per-frame method. */
static int frame_part(struct md_reduce_session *s, struct md_block *b)
{
    if (!has(s, MD_REDUCE_HIRED | MD_REDUCE_RANDOM | MD_REDUCE_UNIFORM | MD_REDUCE_VISIONZIP))
        return MD_OK;
    int32_t nf = b->n_fixed, n = b->n - nf;
    if (n <= 0)
        return MD_OK;
    size_t E = (size_t)s->E;
    bool raster = nf == 0 && b->gh * b->gw == b->n;
    struct md_block sel, out;
    int rc = select_rows(s, b->embd + (size_t)nf * E, b->score ? b->score + nf : NULL,
                         b->key ? b->key + nf : NULL, b->src + nf, n, raster ? b->gh : 0,
                         raster ? b->gw : 0, hired_single_budget(s, n), &sel);
    if (rc)
        return rc;
    rc = block_from(s, b->embd, b->score, b->key, b->src, NULL, nf, 0, 0, &out);
    if (!rc) {
        out.n_orig = 0;
        rc = concat_block(s, &out, &sel);
    }
    if (!rc) {   /* with out.n_orig 0, concat_block leaves sel's src as they are */
        out.n_orig = b->n_orig;
        out.frame = b->frame;
        out.n_src = b->n_src;
        out.n_fixed = nf;
        if (!b->score) {
            free(out.score);
            out.score = NULL;
        }
        md_reduce_block_free(b);
        *b = out;
    } else {
        md_reduce_block_free(&out);
    }
    md_reduce_block_free(&sel);
    return rc;
}

static int grow_frame_bufs(struct md_reduce_session *s, int32_t n)
{
    if (s->frame_n == n && s->anchor)
        return MD_OK;
    size_t sz = sizeof(float) * (size_t)n * (size_t)s->E;
    free(s->anchor);
    free(s->prev);
    s->anchor = malloc(sz);
    s->prev = malloc(sz);
    s->frame_n = n;
    return s->anchor && s->prev ? MD_OK : MD_ERR_NOMEM;
}

/* DyCoke TTM on one frame (docs/reduction-methods.md §3). Frames whose row
 * count differs from the anchor's (an earlier merge changed it) stay
 * whole. */
static int dycoke_block(struct md_reduce_session *s, const struct md_encoded *e, int32_t f,
                        struct md_block *b)
{
    int32_t pos = f % s->cfg.dycoke_window, ref = md_reduce_dycoke_ref(pos);
    int rc = pos == 0 ? grow_frame_bufs(s, e->n) : MD_OK;
    if (rc)
        return rc;
    size_t sz = sizeof(float) * (size_t)e->n * (size_t)s->E;
    if (pos == 0)
        memcpy(s->anchor, e->embd, sz);
    int32_t *keep = malloc(sizeof(int32_t) * (size_t)(e->n > 0 ? e->n : 1));
    if (!keep)
        return MD_ERR_NOMEM;
    int32_t k = e->n;
    const int32_t *use = NULL;
    if (ref >= 0 && e->n == s->frame_n) {
        const float *rf = ref == 0 ? s->anchor : s->prev;
        k = md_reduce_dycoke_frame(e->embd, rf, e->n, s->E, s->cfg.dycoke_k, keep);
        if (k < 1 && e->n > 0) {   /* K >= 1: a placeholder row keeps the frame's slot */
            keep[0] = 0;
            k = 1;
        }
        use = keep;
    }
    if (e->n == s->frame_n)
        memcpy(s->prev, e->embd, sz);
    bool raster = e->n == e->side * e->side;
    rc = block_from(s, e->embd, e->score, NULL, e->src, use, k, raster ? e->side : 0,
                    raster ? e->side : 0, b);
    if (!rc)
        b->n_orig = e->n_full;
    free(keep);
    return rc;
}

static void flush_stmerge(struct md_reduce_session *s);

static int stmerge_push(struct md_reduce_session *s, const struct md_encoded *e)
{
    int32_t T = s->cfg.st_frames;
    bool raster = e->n == e->side * e->side;
    if (s->n_pending && (e->n != s->frame_n || !raster))
        flush_stmerge(s);
    if (!s->pending || s->frame_n != e->n) {
        free(s->pending);
        free(s->pending_score);
        s->pending = malloc(sizeof(float) * (size_t)T * (size_t)e->n * (size_t)s->E);
        s->pending_score = malloc(sizeof(float) * (size_t)T * (size_t)e->n);
        s->frame_n = e->n;
        if (!s->pending || !s->pending_score)
            return MD_ERR_NOMEM;
    }
    size_t off = (size_t)s->n_pending * (size_t)e->n;
    memcpy(s->pending + off * (size_t)s->E, e->embd, sizeof(float) * (size_t)e->n * (size_t)s->E);
    for (int32_t j = 0; j < e->n; j++)
        s->pending_score[off + (size_t)j] = e->score ? e->score[j] : 0.0f;
    s->pend_gh = s->pend_gw = raster ? e->side : 0;
    s->n_pending++;
    if (s->n_pending == T || !raster)
        flush_stmerge(s);
    return MD_OK;
}

/* flashvid, holitom: a clip longer than this is reduced in parts, so a
 * stream without questions holds bounded memory: at most 128 frames and
 * (from the 9th frame on) 256 MiB of full rows, 27 frames of LLaVA-7B's
 * 576 x 4096; under a cap with frames=M (a growing stream's), M frames, so
 * that what the stream holds stays near its cap. */
#define CLIP_MAX_FRAMES 128
#define CLIP_MAX_BYTES ((size_t)256 << 20)

static int32_t clip_max_frames(const struct md_reduce_session *s, int32_t n)
{
    size_t frame = sizeof(float) * (size_t)(n > 0 ? n : 1) * (size_t)s->E;
    size_t b = CLIP_MAX_BYTES / frame;
    int32_t k = b < 8 ? 8 : b > CLIP_MAX_FRAMES ? CLIP_MAX_FRAMES : (int32_t)b;
    int32_t m = s->cfg.max_visual_tokens > 0 ? s->cfg.max_visual_frames : 0;
    return m > 0 && m < k ? m : k;
}

/* Frame f's rows of a temporal method's output (rows o[0..k) of out),
 * then the per-frame part: one block. A frame left without rows keeps its
 * highest-scoring raw row (its prompt marker needs one). */
static int clip_block(struct md_reduce_session *s, const float *out, const int32_t *src,
                      const bool *fixed, int32_t k, int32_t f, struct md_block *b)
{
    int32_t n = s->clip_n, one = 0;
    const float *sc = s->clip_score + (size_t)f * n;
    float *score = malloc(sizeof(float) * (size_t)(k > 0 ? k : 1));
    if (!score)
        return MD_ERR_NOMEM;
    for (int32_t i = 0; i < k; i++)
        score[i] = sc[src[i]];
    for (int32_t j = 1; k == 0 && j < n; j++)
        one = sc[j] > sc[one] ? j : one;
    int rc = k > 0 ? block_from(s, out, score, NULL, src, NULL, k, 0, 0, b)
                   : block_from(s, s->clip + (size_t)f * n * s->E, sc, NULL, NULL, &one, 1, 0, 0,
                                b);
    free(score);
    if (rc)
        return rc;
    b->frame = true;
    b->n_orig = n;
    for (int32_t i = 0; fixed && i < k && fixed[i]; i++)
        b->n_fixed++;
    rc = frame_part(s, b);
    if (rc)
        md_reduce_block_free(b);
    return rc;
}

/* The clip through FlashVID or HoliTom's temporal part, one block a frame. */
static int clip_reduce(struct md_reduce_session *s)
{
    int32_t F = s->clip_frames, n = s->clip_n, E = s->E;
    const struct md_reduce_config *c = &s->cfg;
    size_t T = (size_t)F * (size_t)n;
    float *out = malloc(sizeof(float) * T * (size_t)E);
    int32_t *fr = malloc(sizeof(int32_t) * T), *src = malloc(sizeof(int32_t) * T);
    bool *fixed = calloc(T, sizeof(bool));
    int32_t m = -1;
    if (out && fr && src && fixed && has(s, MD_REDUCE_FLASHVID)) {
        struct md_flashvid_params p = { c->fv_keep, c->fv_tokens, c->fv_alpha, c->fv_seg_thresh,
                                        c->fv_temp_thresh, c->fv_expansion, c->fv_min_segs,
                                        c->fv_adts_v1 };
        m = md_reduce_flashvid(s->clip, s->clip_score, F, n, E, &p, out, fr, src);
    } else if (out && fr && src && fixed) {
        bool per_frame = has(s, MD_REDUCE_HIRED | MD_REDUCE_RANDOM | MD_REDUCE_UNIFORM |
                                MD_REDUCE_VISIONZIP | MD_REDUCE_CDPRUNER);
        struct md_holitom_params p = { c->ht_tokens > 0 ? (float)c->ht_tokens / (float)n
                                                        : c->ht_keep,
                                       c->ht_tau, c->ht_beta, c->ht_max_window, !per_frame };
        m = md_reduce_holitom(s->clip, s->clip_score, F, n, E, &p, out, fr, src, fixed);
    }
    int rc = m < 0 ? MD_ERR_NOMEM : MD_OK;
    for (int32_t f = 0, o = 0; !rc && f < F; f++) {
        int32_t k = 0;
        while (o + k < m && fr[o + k] == f)
            k++;
        struct md_block b;
        rc = clip_block(s, out + (size_t)o * E, src + o, fixed + o, k, f, &b);
        if (!rc && (rc = push_block(s, &b)))
            md_reduce_block_free(&b);
        o += k;
    }
    free(out), free(fr), free(src), free(fixed);
    return rc;
}

/* Reduce the frames held for FlashVID / HoliTom; they are gone after,
 * reduced or (out of memory) not. */
static int flush_clip(struct md_reduce_session *s)
{
    if (s->clip_frames <= 0)
        return MD_OK;
    double t0 = md_reduce_now_ms();
    int rc = clip_reduce(s);
    s->clip_frames = 0;
    s->st.ms_select += md_reduce_now_ms() - t0;
    return rc;
}

/* Hold a frame for FlashVID / HoliTom, which see the whole clip. A frame
 * of another size starts a new clip. */
static int clip_push(struct md_reduce_session *s, const struct md_encoded *e)
{
    int rc = MD_OK, max = clip_max_frames(s, e->n);
    if (s->clip_frames && (e->n != s->clip_n || s->clip_frames >= max))
        rc = flush_clip(s);
    if (rc)
        return rc;
    if (s->clip_n != e->n || s->clip_frames == s->clip_cap) {
        int32_t cap = s->clip_n != e->n ? 8 : 2 * s->clip_cap;
        cap = cap > max ? max : cap;
        float *x = realloc(s->clip, sizeof(float) * (size_t)cap * (size_t)e->n * (size_t)s->E);
        if (x)
            s->clip = x;
        float *sc = realloc(s->clip_score, sizeof(float) * (size_t)cap * (size_t)e->n);
        if (sc)
            s->clip_score = sc;
        if (!x || !sc)
            return MD_ERR_NOMEM;
        s->clip_cap = cap;
        s->clip_n = e->n;
    }
    size_t o = (size_t)s->clip_frames * (size_t)e->n;
    memcpy(s->clip + o * (size_t)s->E, e->embd, sizeof(float) * (size_t)e->n * (size_t)s->E);
    for (int32_t j = 0; j < e->n; j++)
        s->clip_score[o + (size_t)j] = e->score ? e->score[j] : 0.0f;
    s->clip_frames++;
    return MD_OK;
}

/* The frames waiting for a full 3x3xT group are merged with what there is
 * (a shorter group), one block each; so is a FlashVID / HoliTom clip. */
static void flush_stmerge(struct md_reduce_session *s)
{
    int32_t T = s->n_pending, n = s->frame_n;
    s->n_pending = 0;
    if (T <= 0 || !s->pending)
        return;
    bool *keep = malloc(sizeof(bool) * (size_t)T * (size_t)n);
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    if (!keep || !idx) {
        free(keep);
        free(idx);
        return;
    }
    if (s->pend_gh > 0)
        md_reduce_stmerge(s->pending, T, s->pend_gh, s->pend_gw, s->E, 3, s->cfg.st_thresh, keep);
    else
        for (int32_t i = 0; i < T * n; i++)
            keep[i] = true;
    for (int32_t t = 0; t < T; t++) {
        int32_t k = 0;
        for (int32_t j = 0; j < n; j++)
            if (keep[(size_t)t * n + j])
                idx[k++] = j;
        if (k == 0)
            idx[k++] = n - 1;   /* a frame keeps one row: its prompt marker needs it */
        struct md_block b;
        if (block_from(s, s->pending + (size_t)t * n * (size_t)s->E,
                       s->pending_score + (size_t)t * n, NULL, NULL, idx, k, s->pend_gh,
                       s->pend_gw, &b))
            continue;
        b.frame = true;
        b.n_orig = n;
        if (frame_part(s, &b) || push_block(s, &b))
            md_reduce_block_free(&b);
    }
    free(keep);
    free(idx);
}

int md_reduce_flush_pending(struct md_reduce_session *s)
{
    int rc = flush_clip(s);
    flush_stmerge(s);
    return rc;
}

/* ---- global cap ----------------------------------------------------------- */

static int trim_block(struct md_reduce_session *s, struct md_block *b, int32_t k)
{
    if (k >= b->n)
        return MD_OK;
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)b->n);
    if (!idx)
        return MD_ERR_NOMEM;
    if (b->score)
        md_reduce_topk(b->score, b->n, k, idx);
    else
        stride_pick(b->n, k, idx);
    struct md_block nb;
    int rc = block_from(s, b->embd, b->score, b->key, b->src, idx, k, b->gh, b->gw, &nb);
    for (int32_t i = 0; !rc && i < k && idx[i] < b->n_fixed; i++)   /* idx ascending */
        nb.n_fixed++;
    free(idx);
    if (rc)
        return rc;
    nb.frame = b->frame;
    nb.n_src = b->n_src;
    nb.n_orig = b->n_orig;
    md_reduce_block_free(b);
    *b = nb;
    return MD_OK;
}

static int32_t block_weight(const struct md_block *b)
{
    return b->n_src > 0 ? b->n_src : 1;
}

/* Blocks i and i + 1 become one: rows concatenated (no raster any more). */
static int merge_pair(struct md_reduce_session *s, int32_t i)
{
    struct md_block *a = &s->blocks[i], *b = &s->blocks[i + 1], m;
    memset(&m, 0, sizeof m);
    size_t E = (size_t)s->E, n = (size_t)a->n + (size_t)b->n;
    bool scored = a->score || b->score;
    m.embd = malloc(sizeof(float) * (n ? n : 1) * E);
    m.key = calloc(n ? n : 1, sizeof(bool));
    m.src = malloc(sizeof(int32_t) * (n ? n : 1));
    m.score = scored ? malloc(sizeof(float) * (n ? n : 1)) : NULL;
    if (!m.embd || !m.key || !m.src || (scored && !m.score)) {
        md_reduce_block_free(&m);
        return MD_ERR_NOMEM;
    }
    const struct md_block *part[2] = { a, b };
    size_t o = 0;
    for (int p = 0; p < 2; p++) {
        const struct md_block *q = part[p];
        memcpy(m.embd + o * E, q->embd, sizeof(float) * (size_t)q->n * E);
        for (int32_t j = 0; j < q->n; j++) {
            m.key[o + (size_t)j] = q->key && q->key[j];
            m.src[o + (size_t)j] = (p ? a->n_orig : 0) + (q->src ? q->src[j] : j);
            if (scored)   /* a block without scores ranks below every scored row */
                m.score[o + (size_t)j] = q->score ? q->score[j] : -1e30f;
        }
        o += (size_t)q->n;
    }
    m.n = (int32_t)n;
    m.n_orig = a->n_orig + b->n_orig;
    m.frame = true;
    m.n_src = block_weight(a) + block_weight(b);
    md_reduce_block_free(a);
    md_reduce_block_free(b);
    *a = m;
    memmove(b, b + 1, sizeof *b * (size_t)(s->n_blocks - i - 2));
    s->n_blocks--;
    return MD_OK;
}

/* cap:frames=M: while more than M video-frame blocks are held, the two
 * adjacent ones standing for the fewest frames (the oldest on ties) merge,
 * so the blocks keep covering the whole stream in spans of similar length. */
static int limit_frame_blocks(struct md_reduce_session *s)
{
    int32_t m = s->cfg.max_visual_frames;
    if (m <= 0)
        return MD_OK;
    int32_t nf = 0;
    for (int32_t i = 0; i < s->n_blocks; i++)
        nf += s->blocks[i].frame;
    while (nf > m) {
        int32_t best = -1, best_w = 0;
        for (int32_t i = 0; i + 1 < s->n_blocks; i++) {
            if (!s->blocks[i].frame || !s->blocks[i + 1].frame)
                continue;
            int32_t w = block_weight(&s->blocks[i]) + block_weight(&s->blocks[i + 1]);
            if (best < 0 || w < best_w) {
                best = i;
                best_w = w;
            }
        }
        if (best < 0)
            break;   /* frame blocks separated by images: nothing adjacent */
        int rc = merge_pair(s, best);
        if (rc)
            return rc;
        nf--;
    }
    return MD_OK;
}

/* The cap is shared equally by the blocks, so each new frame lowers the
 * per-frame budget and older frames give up their least important rows
 * (water filling: small blocks keep what they have). Every block keeps at
 * least one row. */
int md_reduce_apply_cap(struct md_reduce_session *s)
{
    int32_t cap = s->cfg.max_visual_tokens;
    int rc0 = limit_frame_blocks(s);
    if (rc0)
        return rc0;
    if (cap <= 0 || md_reduce_n_visual(s) <= cap || s->n_blocks == 0)
        return MD_OK;
    int32_t *n = malloc(sizeof(int32_t) * (size_t)s->n_blocks);
    if (!n)
        return MD_ERR_NOMEM;
    for (int32_t i = 0; i < s->n_blocks; i++)
        n[i] = s->blocks[i].n;
    md_reduce_cap_budgets(n, s->n_blocks, cap > s->n_blocks ? cap : s->n_blocks);
    int rc = MD_OK;
    for (int32_t i = 0; i < s->n_blocks && !rc; i++)
        rc = trim_block(s, &s->blocks[i], n[i] < 1 ? 1 : n[i]);
    free(n);
    return rc;
}

/* ---- public: adding images and frames ------------------------------------ */

/* AnyRes images go tile by tile only for methods that need the tower's
 * internals; a cap alone keeps HF's packing and trims by stride. */
static bool needs_tower_internals(const struct md_reduce_session *s)
{
    return has(s, MD_REDUCE_MUSTDROP | MD_REDUCE_HIRED | MD_REDUCE_VISIONZIP);
}

/* AnyRes image without tower-side methods: HF's packing, then selection. */
static int add_anyres_plain(struct md_reduce_session *s, const uint8_t *rgb, int32_t w, int32_t h,
                            int32_t stride, struct md_block *b)
{
    int32_t n = md_vision_image_tokens(s->vis, w, h);
    if (n <= 0)
        return md_reduce_fail(s, MD_ERR_INVALID, "bad image size %dx%d", w, h);
    float *embd = malloc(sizeof(float) * (size_t)n * (size_t)s->E);
    if (!embd)
        return MD_ERR_NOMEM;
    int32_t got = 0;
    int rc = md_vision_encode_image(s->vis, rgb, w, h, stride, embd, n, &got);
    struct md_anyres_plan p;
    if (!rc && !md_anyres_plan(&s->vis->hp, false, w, h, &p)) {
        /* the whole tower on every tile, then the projector */
        struct md_vit_dims d = md_reduce_vit_dims(&s->vis->hp);
        const struct md_clip_hparams *hp = &s->vis->hp;
        s->st.n_parts += p.n_tiles;
        s->st.flops_vision += p.n_tiles * md_reduce_flops_tower(&d, hp->n_layer_run, hp->n_pos,
                                                                hp->n_patches);
    }
    if (!rc) {
        s->st.vis_in += got;
        s->st.vis_after_vision += got;
        rc = select_block(s, embd, NULL, NULL, NULL, got, got, 0, 0, -1, b);
    }
    free(embd);
    return rc;
}

int md_reduce_add_image(struct md_reduce_session *s, const uint8_t *rgb, int32_t w, int32_t h,
                        int32_t stride)
{
    if (!s)
        return MD_ERR_INVALID;
    if (!s->vis || !rgb || w <= 0 || h <= 0 || stride < 3 * w)
        return md_reduce_fail(s, MD_ERR_INVALID, "add_image: no vision model or bad image "
                              "(%dx%d, stride %d)", w, h, stride);
    double t0 = md_reduce_now_ms(), sel0 = s->st.ms_select;
    struct md_block b;
    memset(&b, 0, sizeof b);
    int rc;
    if (s->vis->hp.n_pinpoints > 0) {
        rc = needs_tower_internals(s) ? add_anyres(s, rgb, w, h, stride, &b)
                                      : add_anyres_plain(s, rgb, w, h, stride, &b);
    } else {
        s->st.n_parts++;
        size_t S = (size_t)s->vis->hp.image_size;
        float *pix = malloc(sizeof(float) * 3 * S * S);
        struct md_encoded e;
        memset(&e, 0, sizeof e);
        rc = pix ? md_vision_preprocess(s->vis, rgb, w, h, stride, pix) : MD_ERR_NOMEM;
        if (!rc)
            rc = encode_pixels(s, pix, false, &e);
        if (!rc) {
            s->st.vis_in += s->vis->hp.n_patches;
            s->st.vis_after_vision += e.n;
            rc = select_encoded(s, &e, hired_single_budget(s, e.n), &b);
        }
        encoded_free(&e);
        free(pix);
    }
    s->st.ms_vision += md_reduce_now_ms() - t0 - (s->st.ms_select - sel0);
    s->st.n_images++;
    if (!rc)
        rc = push_block(s, &b);
    md_reduce_block_free(&b);
    if (!rc)
        rc = md_reduce_apply_cap(s);
    return rc ? md_reduce_fail(s, rc, "add_image failed (%s)", md_status_str(rc)) : MD_OK;
}

/* OneVision pools each frame's patch grid bilinearly (HF apply_pooling,
 * as md_vision_encode_frames); scores are pooled the same way. A grid
 * that a merge already broke is left unpooled. */
static int pool_frame(const struct md_reduce_session *s, struct md_encoded *e)
{
    const struct md_clip_hparams *hp = &s->vis->hp;
    int32_t per = md_vision_frame_tokens(s->vis), side = (int32_t)lround(sqrt((double)per));
    if (per == hp->n_patches || e->n != hp->n_patches || side * side != per)
        return MD_OK;
    float *embd = malloc(sizeof(float) * (size_t)per * (size_t)s->E);
    float *score = e->score ? malloc(sizeof(float) * (size_t)per) : NULL;
    if (!embd || (e->score && !score)) {
        free(embd);
        free(score);
        return MD_ERR_NOMEM;
    }
    md_bilinear_resize(e->embd, hp->n_side, hp->n_side, s->E, embd, side, side);
    if (score)
        md_bilinear_resize(e->score, hp->n_side, hp->n_side, 1, score, side, side);
    free(e->embd);
    free(e->score);
    e->embd = embd;
    e->score = score;
    for (int32_t j = 0; j < per; j++)
        e->src[j] = j;
    e->n = per;
    e->n_full = per;
    e->side = side;
    return MD_OK;
}

/* A frame's tower input. Preprocessing as md_vision_encode_frames:
 * LLaVA-1.5 its fit, AnyRes and OneVision models the frame stretched to the
 * square. */
static int preprocess_frame(const struct md_vision *vis, const struct md_frame *fr, float *pix)
{
    const struct md_clip_hparams *hp = &vis->hp;
    enum md_vision_fit fit = hp->n_pinpoints > 0 || hp->onevision ? MD_VISION_FIT_STRETCH
                                                                  : vis->params.fit;
    return md_image_preprocess(fr->rgb, fr->width, fr->height, fr->stride, hp->image_size, fit,
                               vis->params.resample, hp->mean, hp->std, pix);
}

/* A frame out of the tower (e, or rc when its run failed): the temporal
 * method or the per-image selection, then the cap. e is consumed. */
static int add_encoded_frame(struct md_reduce_session *s, struct md_encoded *e, int rc)
{
    if (!rc)
        rc = pool_frame(s, e);
    if (!rc) {
        s->st.n_parts++;
        s->st.vis_in += s->vis->hp.n_patches;
        s->st.vis_after_vision += e->n;
    }
    struct md_block b;
    memset(&b, 0, sizeof b);
    if (!rc && has(s, MD_REDUCE_FLASHVID | MD_REDUCE_HOLITOM)) {
        rc = clip_push(s, e);
    } else if (!rc && has(s, MD_REDUCE_STMERGE)) {
        rc = stmerge_push(s, e);
    } else if (!rc) {
        rc = has(s, MD_REDUCE_DYCOKE) ? dycoke_block(s, e, s->n_frames, &b)
                                      : select_encoded(s, e, hired_single_budget(s, e->n), &b);
        if (!rc && has(s, MD_REDUCE_DYCOKE))
            rc = frame_part(s, &b);
        b.frame = true;
        if (!rc)
            rc = push_block(s, &b);
        md_reduce_block_free(&b);
    }
    encoded_free(e);
    s->n_frames++;
    s->st.n_images++;
    double c0 = md_reduce_now_ms();
    if (!rc)
        rc = md_reduce_apply_cap(s);
    s->st.ms_select += md_reduce_now_ms() - c0;
    return rc;
}

/* Tower inputs of one run: at most this many patch tokens (8 CLIP-L/336
 * frames) and REDUCE_RUN_FRAMES frames, which bound its work buffers. */
#define REDUCE_RUN_TOKENS 4616
#define REDUCE_RUN_FRAMES 32

/* One frame of the work: session k's frame f. */
struct frame_item {
    int32_t k, f;
};

/* The frames of sessions ss[ks[0..n)] (which need the same of one vision
 * tower), in runs of several images each; every session takes its frames
 * in order as they come out. rcs[k] is session k's first failure. */
static void add_frames_grouped(struct md_reduce_session *const *ss,
                               const struct md_frame *const *frames, const int32_t *n,
                               const int32_t *ks, int32_t n_ks, int *rcs)
{
    struct md_reduce_session *like = ss[ks[0]];
    const struct md_clip_hparams *hp = &like->vis->hp;
    int32_t per_run = tower_needs(like).merge ? 1
                                              : REDUCE_RUN_TOKENS / (hp->n_pos > 0 ? hp->n_pos : 1);
    per_run = per_run < 1 ? 1 : per_run > REDUCE_RUN_FRAMES ? REDUCE_RUN_FRAMES : per_run;
    int64_t total = 0;
    for (int32_t i = 0; i < n_ks; i++)
        total += n[ks[i]];
    size_t S = (size_t)hp->image_size;
    struct frame_item *items = malloc(sizeof *items * (size_t)(total ? total : 1));
    float *pix = malloc(sizeof(float) * 3 * S * S * (size_t)per_run);
    struct md_encoded *e = malloc(sizeof *e * (size_t)per_run);
    if (!items || !pix || !e) {
        for (int32_t i = 0; i < n_ks; i++)
            rcs[ks[i]] = md_reduce_fail(ss[ks[i]], MD_ERR_NOMEM, "add_frames: out of memory");
        total = 0;
    }
    int64_t t = 0;
    for (int32_t i = 0; i < n_ks && items; i++)
        for (int32_t f = 0; f < n[ks[i]]; f++)
            items[t++] = (struct frame_item){ ks[i], f };
    for (int64_t i0 = 0; i0 < total;) {
        /* the next run: frames of sessions still going */
        struct frame_item run[REDUCE_RUN_FRAMES];
        int32_t m = 0;
        double t0 = md_reduce_now_ms();
        for (; i0 < total && m < per_run; i0++) {
            struct frame_item it = items[i0];
            if (rcs[it.k])
                continue;
            int rc = preprocess_frame(like->vis, &frames[it.k][it.f], pix + 3 * S * S * (size_t)m);
            if (rc)
                rcs[it.k] = md_reduce_fail(ss[it.k], rc, "add_frames: frame %d could not be "
                                           "preprocessed (%s)", it.f, md_status_str(rc));
            else
                run[m++] = it;
        }
        if (!m)
            continue;
        double flops = 0.0;
        int rc = encode_pixels_n(like, pix, m, false, e, &flops);
        /* the run's time and work are shared by its frames */
        double ms = (md_reduce_now_ms() - t0) / m;
        for (int32_t j = 0; j < m; j++) {
            struct md_reduce_session *s = ss[run[j].k];
            double a0 = md_reduce_now_ms(), sel0 = s->st.ms_select;
            s->st.flops_vision += rc ? 0.0 : flops;
            int frc = rcs[run[j].k] ? rcs[run[j].k] : add_encoded_frame(s, &e[j], rc);
            encoded_free(&e[j]);
            s->st.ms_vision += ms + md_reduce_now_ms() - a0 - (s->st.ms_select - sel0);
            if (frc && !rcs[run[j].k])
                rcs[run[j].k] = md_reduce_fail(s, frc, "add_frames failed (%s)",
                                               md_status_str(frc));
        }
    }
    free(items);
    free(pix);
    free(e);
}

static bool same_needs(const struct md_reduce_session *a, const struct md_reduce_session *b)
{
    struct tower_needs x = tower_needs(a), y = tower_needs(b);
    return a->vis == b->vis && x.merge == y.merge && x.score == y.score &&
           (!x.merge || a->cfg.md_merge_thresh == b->cfg.md_merge_thresh);
}

int md_reduce_add_frames_multi(struct md_reduce_session *const *ss,
                               const struct md_frame *const *frames, const int32_t *n,
                               int32_t n_sessions, int *rcs)
{
    if (!ss || !frames || !n || n_sessions < 0)
        return MD_ERR_INVALID;
    int *rc = calloc((size_t)(n_sessions ? n_sessions : 1), sizeof *rc);
    int32_t *ks = malloc(sizeof(int32_t) * (size_t)(n_sessions ? n_sessions : 1));
    bool *done = calloc((size_t)(n_sessions ? n_sessions : 1), sizeof *done);
    if (!rc || !ks || !done) {
        free(rc);
        free(ks);
        free(done);
        return MD_ERR_NOMEM;
    }
    for (int32_t k = 0; k < n_sessions; k++) {
        struct md_reduce_session *s = ss[k];
        const struct md_frame *fr = frames[k];
        if (!s) {
            rc[k] = MD_ERR_INVALID;
            continue;
        }
        for (int32_t j = 0; j < k && !rc[k]; j++)
            if (ss[j] == s)
                rc[k] = md_reduce_fail(s, MD_ERR_INVALID, "add_frames: the session is named "
                                       "twice in one call");
        if (!rc[k] && (!s->vis || !fr || n[k] < 0))
            rc[k] = md_reduce_fail(s, MD_ERR_INVALID, "add_frames: no vision model or no frames");
        for (int32_t i = 0; i < n[k] && !rc[k]; i++)
            if (!fr[i].rgb || fr[i].width <= 0 || fr[i].height <= 0 ||
                fr[i].stride < 3 * (int64_t)fr[i].width)
                rc[k] = md_reduce_fail(s, MD_ERR_INVALID, "add_frames: frame %d is bad (%dx%d, "
                                       "stride %d)", i, fr[i].width, fr[i].height, fr[i].stride);
        done[k] = rc[k] != MD_OK || n[k] == 0;
    }
    /* sessions that need the same of the same tower share its runs */
    for (int32_t k = 0; k < n_sessions; k++) {
        if (done[k])
            continue;
        int32_t n_ks = 0;
        for (int32_t j = k; j < n_sessions; j++)
            if (!done[j] && same_needs(ss[k], ss[j])) {
                ks[n_ks++] = j;
                done[j] = true;
            }
        add_frames_grouped(ss, frames, n, ks, n_ks, rc);
    }
    int first = MD_OK;
    for (int32_t k = 0; k < n_sessions; k++) {
        first = first ? first : rc[k];
        if (rcs)
            rcs[k] = rc[k];
    }
    free(rc);
    free(ks);
    free(done);
    return first;
}

int md_reduce_add_frames(struct md_reduce_session *s, const struct md_frame *frames, int32_t n)
{
    if (!s)
        return MD_ERR_INVALID;
    return md_reduce_add_frames_multi(&s, &frames, &n, 1, NULL);
}

int md_reduce_add_embd(struct md_reduce_session *s, const float *embd, int32_t n, int32_t grid_h,
                       int32_t grid_w, const float *scores)
{
    if (!s)
        return MD_ERR_INVALID;
    if (!embd || n <= 0 || grid_h < 0 || grid_w < 0)
        return md_reduce_fail(s, MD_ERR_INVALID, "add_embd: %d rows, grid %dx%d", n, grid_h,
                              grid_w);
    double t0 = md_reduce_now_ms();
    bool raster = grid_h * grid_w == n;
    bool *key = key_set(s, scores, n);
    s->st.n_key_tokens += count_keys(key, n);
    struct md_block b;
    int rc = select_block(s, embd, scores, key, NULL, n, n, raster ? grid_h : 0,
                          raster ? grid_w : 0, scores ? hired_single_budget(s, n) : -1, &b);
    free(key);
    s->st.vis_in += n;
    s->st.vis_after_vision += n;
    s->st.n_images++;
    s->st.n_parts++;
    if (!rc && (rc = push_block(s, &b)))
        md_reduce_block_free(&b);
    if (!rc)
        rc = md_reduce_apply_cap(s);
    s->st.ms_select += md_reduce_now_ms() - t0;
    return rc ? md_reduce_fail(s, rc, "add_embd failed (%s)", md_status_str(rc)) : MD_OK;
}
