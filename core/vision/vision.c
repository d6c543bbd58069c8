/* The public vision API: loading, whole-image encoding (preprocess, tower,
 * projector) and the prompt batch that splices image rows into the text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tokenizer.h"
#include "vision-impl.h"

struct md_vision_params md_vision_default_params(void)
{
    struct md_vision_params p = {
        .n_threads = 0, .backend = NULL, .device = 0, .fit = MD_VISION_FIT_PAD,
        .resample = MD_VISION_BICUBIC, .llamacpp_layers = false,
    };
    return p;
}

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n < 1024 ? (int)n : 1;
}

static int vision_open(struct md_vision *v, const struct md_vision_params *params, char *err,
                       size_t errlen)
{
    v->params = params ? *params : md_vision_default_params();
    v->params.backend = NULL;   /* the caller's string need not outlive the load */
    if (v->params.fit < MD_VISION_FIT_PAD || v->params.fit > MD_VISION_FIT_STRETCH ||
        v->params.resample < MD_VISION_BICUBIC || v->params.resample > MD_VISION_BILINEAR) {
        snprintf(err, errlen, "md_vision: bad fit or resample parameter");
        return MD_ERR_INVALID;
    }
    struct md_backend_params bp = {
        .n_threads = params && params->n_threads > 0 ? params->n_threads : online_cpus(),
        .isa = NULL, .device = params ? params->device : 0,
    };
    int rc = md_backend_new(params ? params->backend : NULL, &bp, &v->be, err, errlen);
    if (rc)
        return rc;
    return md_mmproj_load(v, err, errlen);
}

static int vision_finish(struct md_vision *v, int rc, struct md_vision **out)
{
    if (rc) {
        md_vision_free(v);
        return rc;
    }
    *out = v;
    return MD_OK;
}

int md_vision_load(const char *path, const struct md_vision_params *params,
                   struct md_vision **out, char *err, size_t errlen)
{
    if (!out)
        return MD_ERR_INVALID;
    *out = NULL;
    if (!path) {
        snprintf(err, errlen, "md_vision_load: NULL path");
        return MD_ERR_INVALID;
    }
    struct md_vision *v = calloc(1, sizeof *v);
    if (!v)
        return MD_ERR_NOMEM;
    int rc = md_gguf_open(path, &v->gguf, err, errlen);
    if (rc) {
        free(v);
        return rc;   /* the reader's status: MD_ERR_IO, MD_ERR_FORMAT, ... as md_model_load */
    }
    return vision_finish(v, vision_open(v, params, err, errlen), out);
}

int md_vision_load_memory(const void *data, size_t size, const struct md_vision_params *params,
                          struct md_vision **out, char *err, size_t errlen)
{
    if (!out)
        return MD_ERR_INVALID;
    *out = NULL;
    if (!data) {
        snprintf(err, errlen, "md_vision_load_memory: NULL data");
        return MD_ERR_INVALID;
    }
    struct md_vision *v = calloc(1, sizeof *v);
    if (!v)
        return MD_ERR_NOMEM;
    int rc = md_gguf_open_memory(data, size, &v->gguf, err, errlen);
    if (rc) {
        free(v);
        return rc;
    }
    return vision_finish(v, vision_open(v, params, err, errlen), out);
}

void md_vision_free(struct md_vision *v)
{
    if (!v)
        return;
    md_mmproj_free_tensors(v);
    if (v->be)
        md_backend_free(v->be);
    if (v->gguf)
        md_gguf_close(v->gguf);
    free(v);
}

int32_t md_vision_n_embd(const struct md_vision *v) { return v ? v->hp.n_embd_out : 0; }
int32_t md_vision_image_size(const struct md_vision *v) { return v ? v->hp.image_size : 0; }
int32_t md_vision_patch_size(const struct md_vision *v) { return v ? v->hp.patch_size : 0; }
int32_t md_vision_hidden(const struct md_vision *v) { return v ? v->hp.hidden : 0; }
int32_t md_vision_n_head(const struct md_vision *v) { return v ? v->hp.n_head : 0; }
int32_t md_vision_n_layer(const struct md_vision *v) { return v ? v->hp.n_layer : 0; }
int32_t md_vision_n_layer_run(const struct md_vision *v) { return v ? v->hp.n_layer_run : 0; }
int32_t md_vision_n_pos(const struct md_vision *v) { return v ? v->hp.n_pos : 0; }
bool md_vision_has_class_token(const struct md_vision *v) { return v && v->hp.has_class; }
const char *md_vision_desc(const struct md_vision *v) { return v ? v->desc : ""; }

/* LLaVA-NeXT files carry grid pinpoints: AnyRes tiling. */
static bool uses_anyres(const struct md_vision *v)
{
    return v->hp.n_pinpoints > 0;
}

int32_t md_vision_image_tokens(const struct md_vision *v, int32_t w, int32_t h)
{
    if (!v || w <= 0 || h <= 0)
        return MD_ERR_INVALID;
    if (!uses_anyres(v))
        return v->hp.n_patches;
    struct md_anyres_plan p;
    int rc = md_anyres_plan(&v->hp, md_tensor_present(&v->newline), w, h, &p);
    return rc ? rc : p.n_tokens;
}

int md_vision_preprocess(const struct md_vision *v, const uint8_t *rgb, int32_t w, int32_t h,
                         int32_t stride, float *pixels)
{
    if (!v)
        return MD_ERR_INVALID;
    return md_image_preprocess(rgb, w, h, stride, v->hp.image_size, v->params.fit,
                               v->params.resample, v->hp.mean, v->hp.std, pixels);
}

int md_vision_encode_pixels(struct md_vision *v, const float *pixels, int32_t n_img, float *out,
                            int32_t max_tokens, int32_t *n_tokens)
{
    if (!v || !pixels || !out || !n_tokens || n_img <= 0)
        return MD_ERR_INVALID;
    *n_tokens = 0;
    if ((int64_t)n_img * v->hp.n_patches > max_tokens)
        return MD_ERR_INVALID;
    struct md_vision_run *r;
    int rc = md_vision_run_begin(v, pixels, n_img, &r);
    if (rc)
        return rc;
    rc = md_vision_run_layers(r, 0, v->hp.n_layer_run);
    if (!rc)
        rc = md_vision_run_project(r, true, out, max_tokens, n_tokens);
    md_vision_run_end(r);
    return rc;
}

/* AnyRes: tiles through tower + projector in one batch, then packed. */
static int encode_anyres(struct md_vision *v, const uint8_t *rgb, int32_t w, int32_t h,
                         int32_t stride, float *out, int32_t max_tokens, int32_t *n_tokens)
{
    struct md_anyres_plan p;
    int rc = md_anyres_plan(&v->hp, md_tensor_present(&v->newline), w, h, &p);
    if (rc)
        return rc;
    if (p.n_tokens > max_tokens || !rgb || stride < 3 * w)
        return MD_ERR_INVALID;
    size_t S = (size_t)v->hp.image_size, E = (size_t)v->hp.n_embd_out;
    int32_t n_feat = p.n_tiles * v->hp.n_patches, got = 0;
    float *pixels = malloc(sizeof(float) * 3 * S * S * (size_t)p.n_tiles);
    float *feat = malloc(sizeof(float) * (size_t)n_feat * E), *nl = malloc(sizeof(float) * E);
    rc = pixels && feat && nl ? MD_OK : MD_ERR_NOMEM;
    if (!rc)
        rc = md_anyres_pixels(&v->hp, v->params.resample, &p, rgb, w, h, stride, pixels);
    if (!rc)
        rc = md_vision_encode_pixels(v, pixels, p.n_tiles, feat, n_feat, &got);
    if (!rc && p.newline)
        rc = v->be->ops->tensor_get(v->be, &v->newline, 0, nl, sizeof(float) * E);
    if (!rc)
        rc = md_anyres_pack(&v->hp, &p, feat, nl, out);
    if (!rc)
        *n_tokens = p.n_tokens;
    free(pixels);
    free(feat);
    free(nl);
    return rc;
}

int md_vision_encode_image(struct md_vision *v, const uint8_t *rgb, int32_t w, int32_t h,
                           int32_t stride, float *out, int32_t max_tokens, int32_t *n_tokens)
{
    if (!v || !n_tokens || !out)
        return MD_ERR_INVALID;
    *n_tokens = 0;
    if (w <= 0 || h <= 0)
        return MD_ERR_INVALID;
    if (uses_anyres(v))
        return encode_anyres(v, rgb, w, h, stride, out, max_tokens, n_tokens);
    size_t S = (size_t)v->hp.image_size;
    float *pixels = malloc(sizeof(float) * 3 * S * S);
    if (!pixels)
        return MD_ERR_NOMEM;
    int rc = md_vision_preprocess(v, rgb, w, h, stride, pixels);
    if (!rc)
        rc = md_vision_encode_pixels(v, pixels, 1, out, max_tokens, n_tokens);
    free(pixels);
    return rc;
}

/* ---- frames ------------------------------------------------------------------ */

#define MD_FRAME_BATCH 8   /* frames per tower call: bounds the work buffers */

/* OneVision pools each frame's n_side x n_side map to ceil(n_side/pool)^2. */
static int32_t pooled_side(const struct md_vision *v)
{
    return v->hp.onevision && v->hp.video_pool > 1
               ? (v->hp.n_side + v->hp.video_pool - 1) / v->hp.video_pool
               : v->hp.n_side;
}

int32_t md_vision_frame_tokens(const struct md_vision *v)
{
    if (!v)
        return 0;
    int32_t s = pooled_side(v);
    return s * s;
}

bool md_vision_video_is_block(const struct md_vision *v)
{
    return v && v->hp.onevision;
}

int32_t md_vision_video_tokens(const struct md_vision *v, int32_t n_frames)
{
    if (!v || n_frames <= 0 || (int64_t)n_frames * md_vision_frame_tokens(v) > INT32_MAX / 4)
        return MD_ERR_INVALID;
    return n_frames * md_vision_frame_tokens(v) +
           (md_vision_video_is_block(v) && md_tensor_present(&v->newline) ? 1 : 0);
}

int md_vision_encode_frames(struct md_vision *v, const struct md_frame *frames, int32_t n,
                            float *out, int32_t max_tokens, int32_t *n_tokens)
{
    if (!v || !frames || !out || !n_tokens || n <= 0)
        return MD_ERR_INVALID;
    *n_tokens = 0;
    int32_t per = md_vision_frame_tokens(v), np = v->hp.n_patches, side = pooled_side(v);
    bool pool = side != v->hp.n_side;
    if ((int64_t)n * per > max_tokens)
        return MD_ERR_INVALID;
    for (int32_t i = 0; i < n; i++)
        if (!frames[i].rgb || frames[i].width <= 0 || frames[i].height <= 0 ||
            frames[i].stride < 3 * (int64_t)frames[i].width)
            return MD_ERR_INVALID;
    /* LLaVA-1.5: its own fit; AnyRes / OneVision models take the frame
     * stretched to the square (the base image; HF's video processor) */
    enum md_vision_fit fit = uses_anyres(v) || v->hp.onevision ? MD_VISION_FIT_STRETCH
                                                               : v->params.fit;
    size_t S = (size_t)v->hp.image_size, E = (size_t)v->hp.n_embd_out;
    int32_t nb = n < MD_FRAME_BATCH ? n : MD_FRAME_BATCH;
    float *pixels = malloc(sizeof(float) * 3 * S * S * (size_t)nb);
    float *feat = pool ? malloc(sizeof(float) * (size_t)nb * np * E) : NULL;
    int rc = pixels && (feat || !pool) ? MD_OK : MD_ERR_NOMEM;
    for (int32_t i0 = 0; i0 < n && !rc; i0 += nb) {
        int32_t m = n - i0 < nb ? n - i0 : nb, got = 0;
        for (int32_t j = 0; j < m && !rc; j++) {
            const struct md_frame *f = &frames[i0 + j];
            rc = md_image_preprocess(f->rgb, f->width, f->height, f->stride, v->hp.image_size,
                                     fit, v->params.resample, v->hp.mean, v->hp.std,
                                     pixels + 3 * S * S * (size_t)j);
        }
        float *dst = out + (size_t)i0 * per * E;
        if (!rc)
            rc = md_vision_encode_pixels(v, pixels, m, pool ? feat : dst, m * np, &got);
        if (!rc && got != m * np)
            rc = MD_ERR_INVALID;
        for (int32_t j = 0; !rc && pool && j < m; j++)   /* HF apply_pooling */
            md_bilinear_resize(feat + (size_t)j * np * E, v->hp.n_side, v->hp.n_side, (int32_t)E,
                               dst + (size_t)j * per * E, side, side);
    }
    free(pixels);
    free(feat);
    if (!rc)
        *n_tokens = n * per;
    return rc;
}

int md_vision_encode_video(struct md_vision *v, const struct md_frame *frames, int32_t n,
                           float *out, int32_t max_tokens, int32_t *n_tokens)
{
    if (!v || !n_tokens)
        return MD_ERR_INVALID;
    *n_tokens = 0;
    int32_t want = md_vision_video_tokens(v, n);
    if (want < 0 || want > max_tokens || !out)
        return MD_ERR_INVALID;
    int32_t got = 0;
    int rc = md_vision_encode_frames(v, frames, n, out, max_tokens, &got);
    if (!rc && want > got)   /* OneVision: one image_newline after the frames */
        rc = v->be->ops->tensor_get(v->be, &v->newline, 0, out + (size_t)got * v->hp.n_embd_out,
                                    sizeof(float) * (size_t)v->hp.n_embd_out);
    if (!rc)
        *n_tokens = want;
    return rc;
}

/* ---- prompt ------------------------------------------------------------------ */

struct id_buf {
    int32_t *v;
    int64_t n, cap;
};

/* Append the tokens of text (add_special: BOS as the vocab says). */
static int tokenize_append(const struct md_vocab *vocab, const char *text, size_t len,
                           bool add_special, struct id_buf *b)
{
    int64_t need = md_tokenize(vocab, text, len, add_special, true, NULL, 0);
    if (need < 0)
        return MD_ERR_INVALID;
    if (b->n + need > b->cap) {
        int64_t cap = b->n + need + 16;
        int32_t *nv = realloc(b->v, sizeof(int32_t) * (size_t)cap);
        if (!nv)
            return MD_ERR_NOMEM;
        b->v = nv;
        b->cap = cap;
    }
    if (md_tokenize(vocab, text, len, add_special, true, b->v + b->n, need) != need)
        return MD_ERR_INVALID;
    b->n += need;
    return MD_OK;
}

static int push_id(struct id_buf *b, int32_t id)
{
    if (b->n + 1 > b->cap) {
        int32_t *nv = realloc(b->v, sizeof(int32_t) * (size_t)(b->cap + 16));
        if (!nv)
            return MD_ERR_NOMEM;
        b->v = nv;
        b->cap += 16;
    }
    b->v[b->n++] = id;
    return MD_OK;
}

static const char *const MARKERS[2] = { "<image>", "<video>" };

/* The next marker in text (kind in *kind), or NULL. */
static const char *next_marker(const char *text, int *kind)
{
    const char *a = strstr(text, MARKERS[0]), *b = strstr(text, MARKERS[1]);
    if (a && (!b || a < b)) {
        *kind = 0;
        return a;
    }
    *kind = 1;
    return b;
}

/* Token ids of the prompt with one MD_TOKEN_EMBD per marker, which must be
 * the n_blocks markers of kinds[] in order. */
static int prompt_ids(const struct md_vocab *vocab, const char *text,
                      const enum md_vision_block *kinds, int32_t n_blocks, struct id_buf *b,
                      char *err, size_t errlen)
{
    int32_t ids[2] = { md_vocab_find(vocab, MARKERS[0]), md_vocab_find(vocab, MARKERS[1]) };
    int64_t found = 0;
    bool order_ok = true;
    const char *p = text, *mark;
    int kind, rc = MD_OK;
    bool first = true;
    /* text up to each marker that is not a vocab token is tokenized as a
     * piece (BOS on the first); vocab-token markers stay in the text */
    const char *seg = text;
    while (!rc && (mark = next_marker(p, &kind))) {
        order_ok &= found < n_blocks && (int)(kinds ? kinds[found] : 0) == kind;
        found++;
        p = mark + strlen(MARKERS[kind]);
        if (ids[kind] >= 0)
            continue;
        if (!(rc = tokenize_append(vocab, seg, (size_t)(mark - seg), first, b)))
            rc = push_id(b, MD_TOKEN_EMBD);
        first = false;
        seg = p;
    }
    if (!rc)
        rc = tokenize_append(vocab, seg, strlen(seg), first, b);
    for (int64_t i = 0; !rc && i < b->n; i++)
        if (b->v[i] >= 0 && (b->v[i] == ids[0] || b->v[i] == ids[1]))
            b->v[i] = MD_TOKEN_EMBD;
    int64_t n_embd = 0;
    for (int64_t i = 0; !rc && i < b->n; i++)
        n_embd += b->v[i] == MD_TOKEN_EMBD;
    if (!rc && (found != n_blocks || n_embd != n_blocks || !order_ok)) {
        snprintf(err, errlen, "md_vision_prompt_build: %lld <image>/<video> markers in the "
                 "prompt, expected %d in the blocks' order", (long long)found, (int)n_blocks);
        return MD_ERR_INVALID;
    }
    return rc;
}

/* SPM vocabularies put a space before text that follows a special token
 * (llama.cpp, and the original LLaVA's tokenizer_image_token, which gives
 * "<image>" "\u2581" "\n" ...). HF's llava-hf processors (LlamaTokenizer,
 * legacy=False) do not: the text after <image> starts with "\n". Match HF by
 * dropping the lone space piece the prefix produced right after the image. */
static void drop_space_after_image(const struct md_vocab *vocab, struct id_buf *b)
{
    if (md_vocab_kind(vocab) != MD_VOCAB_SPM || !md_vocab_add_space_prefix(vocab))
        return;
    int32_t space = md_vocab_find(vocab, "\xe2\x96\x81");
    for (int64_t i = 0; space >= 0 && i + 1 < b->n; i++) {
        if (b->v[i] == MD_TOKEN_EMBD && b->v[i + 1] == space) {
            memmove(b->v + i + 1, b->v + i + 2, sizeof(int32_t) * (size_t)(b->n - i - 2));
            b->n--;
        }
    }
}

/* Build the token array: block k's n_rows[k] MD_TOKEN_EMBD rows at marker k. */
static int expand_blocks(const struct id_buf *b, const int32_t *n_rows, int32_t n_blocks,
                         int64_t n_total, struct md_vision_prompt *out)
{
    int64_t n = b->n - n_blocks + n_total;
    if (n > INT32_MAX / 2)
        return MD_ERR_INVALID;
    out->tokens = malloc(sizeof(int32_t) * (size_t)n);
    if (!out->tokens)
        return MD_ERR_NOMEM;
    int64_t k = 0;
    int32_t blk = 0;
    for (int64_t i = 0; i < b->n; i++) {
        if (b->v[i] != MD_TOKEN_EMBD) {
            out->tokens[k++] = b->v[i];
            continue;
        }
        if (blk == 0)
            out->image_pos = (int32_t)k;
        for (int32_t j = 0; j < n_rows[blk]; j++)
            out->tokens[k++] = MD_TOKEN_EMBD;
        blk++;
    }
    out->n = (int32_t)n;
    return MD_OK;
}

int md_vision_prompt_build_multi(const struct md_model *model, const char *tmpl,
                                 const char *system, const char *question, const float *embd,
                                 const int32_t *n_rows, const enum md_vision_block *kinds,
                                 int32_t n_blocks, int32_t n_embd,
                                 struct md_vision_prompt *out, char *err, size_t errlen)
{
    if (!out)
        return MD_ERR_INVALID;
    memset(out, 0, sizeof *out);
    if (err && errlen)
        err[0] = 0;
    const struct md_vocab *vocab = model ? md_model_vocab(model) : NULL;
    int64_t n_total = 0;
    bool rows_ok = n_rows && n_blocks > 0 && n_blocks <= 4096;
    for (int32_t i = 0; rows_ok && i < n_blocks; i++) {
        rows_ok = n_rows[i] > 0 && (!kinds || (unsigned)kinds[i] <= MD_VISION_BLOCK_VIDEO);
        n_total += n_rows[i];
    }
    if (!vocab || !question || !embd || !rows_ok || n_total > INT32_MAX / 4 ||
        n_embd != md_model_n_embd(model)) {
        snprintf(err, errlen, "md_vision_prompt_build: need a model with a tokenizer, a question, "
                 "1..4096 blocks of image rows of the model's n_embd (%d)",
                 model ? md_model_n_embd(model) : 0);
        return MD_ERR_INVALID;
    }
    size_t qlen = strlen(question), mlen = strlen("<image>\n");
    size_t ulen = qlen + mlen * (size_t)n_blocks + 1;
    char *user = malloc(ulen);
    if (!user)
        return MD_ERR_NOMEM;
    for (int32_t i = 0; i < n_blocks; i++)   /* "<image>\n" and "<video>\n" are as long */
        memcpy(user + mlen * (size_t)i, kinds && kinds[i] == MD_VISION_BLOCK_VIDEO
                                            ? "<video>\n" : "<image>\n", mlen);
    memcpy(user + mlen * (size_t)n_blocks, question, qlen + 1);
    int need = md_chat_format(tmpl, model, system, user, NULL, 0);
    char *text = need >= 0 ? malloc((size_t)need + 1) : NULL;
    int rc = need < 0 ? need : text ? MD_OK : MD_ERR_NOMEM;
    if (!rc)
        md_chat_format(tmpl, model, system, user, text, (size_t)need + 1);
    free(user);
    struct id_buf b = { NULL, 0, 0 };
    if (!rc)
        rc = prompt_ids(vocab, text, kinds, n_blocks, &b, err, errlen);
    free(text);
    if (!rc)
        drop_space_after_image(vocab, &b);
    if (!rc)
        rc = expand_blocks(&b, n_rows, n_blocks, n_total, out);
    free(b.v);
    if (!rc) {
        out->embd = malloc(sizeof(float) * (size_t)n_total * (size_t)n_embd);
        rc = out->embd ? MD_OK : MD_ERR_NOMEM;
    }
    if (rc) {
        if (rc == MD_ERR_INVALID && err && errlen && !err[0])
            snprintf(err, errlen, "md_vision_prompt_build: cannot format or tokenize the prompt");
        md_vision_prompt_free(out);
        return rc;
    }
    memcpy(out->embd, embd, sizeof(float) * (size_t)n_total * (size_t)n_embd);
    out->n_image = (int32_t)n_total;
    out->batch = (struct md_batch){ .n = out->n, .tokens = out->tokens, .embd = out->embd,
                                    .pos = NULL, .all_logits = false };
    return MD_OK;
}

int md_vision_prompt_build(const struct md_model *model, const char *tmpl, const char *system,
                           const char *question, const float *embd, int32_t n_image,
                           int32_t n_embd, struct md_vision_prompt *out, char *err, size_t errlen)
{
    if (out && n_image <= 0) {
        memset(out, 0, sizeof *out);
        snprintf(err, errlen, "md_vision_prompt_build: need a model with a tokenizer, a question "
                 "and image rows of the model's n_embd (%d)", model ? md_model_n_embd(model) : 0);
        return MD_ERR_INVALID;
    }
    return md_vision_prompt_build_multi(model, tmpl, system, question, embd, &n_image, NULL, 1,
                                        n_embd, out, err, errlen);
}

void md_vision_prompt_free(struct md_vision_prompt *p)
{
    if (!p)
        return;
    free(p->tokens);
    free(p->embd);
    memset(p, 0, sizeof *p);
}
