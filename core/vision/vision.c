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

static int reserve(struct id_buf *b, int64_t extra)
{
    if (b->n + extra <= b->cap)
        return MD_OK;
    int64_t cap = b->n + extra + 16;
    int32_t *nv = realloc(b->v, sizeof(int32_t) * (size_t)cap);
    if (!nv)
        return MD_ERR_NOMEM;
    b->v = nv;
    b->cap = cap;
    return MD_OK;
}

static int push_id(struct id_buf *b, int32_t id)
{
    int rc = reserve(b, 1);
    if (!rc)
        b->v[b->n++] = id;
    return rc;
}

/* The block markers, by enum md_vision_block; both are MARKER_LEN bytes. */
static const char *const MARKERS[2] = { "<image>", "<video>" };
#define MARKER_LEN 7

/* The vocabulary's marker tokens, whatever their type. */
struct marker_ids {
    int32_t id[2];
    int32_t n;
};

static struct marker_ids find_marker_ids(const struct md_vocab *vocab)
{
    struct marker_ids m = { { -1, -1 }, 0 };
    for (int k = 0; k < 2; k++) {
        int32_t id = md_vocab_find(vocab, MARKERS[k]);
        if (id >= 0)
            m.id[m.n++] = id;
    }
    return m;
}

/* What the caller typed into the prompt: the question, the system text. */
struct typed {
    struct md_text_span span[2];
    int32_t n;
};

/* Append the tokens of text[seg, seg + len) (no BOS/EOS). Marker text in a
 * piece was typed by the caller (question, system text), so it must not
 * become the marker token: it is tokenized as the plain text it is; other
 * control-token text ("</s>", "<|im_end|>") is text inside the typed spans
 * only, where it would otherwise end or restart the conversation. */
static int tokenize_append(const struct md_vocab *vocab, const char *text, size_t seg, size_t len,
                           const struct marker_ids *m, const struct typed *typed,
                           struct id_buf *b)
{
    struct md_text_span lit[2];
    int32_t n_lit = 0;
    for (int32_t i = 0; i < typed->n; i++) {
        size_t lo = typed->span[i].off, hi = lo + typed->span[i].len;
        lo = lo > seg ? lo : seg;
        hi = hi < seg + len ? hi : seg + len;
        if (lo < hi)
            lit[n_lit++] = (struct md_text_span){ lo - seg, hi - lo };
    }
    const char *p = text + seg;
    int64_t need = md_tokenize_literal(vocab, p, len, false, true, m->id, m->n, lit, n_lit,
                                       NULL, 0);
    if (need < 0)
        return MD_ERR_INVALID;
    int rc = reserve(b, need);
    if (rc)
        return rc;
    if (md_tokenize_literal(vocab, p, len, false, true, m->id, m->n, lit, n_lit, b->v + b->n,
                            need) != need)
        return MD_ERR_INVALID;
    b->n += need;
    return MD_OK;
}

/* The user turn "<marker>\n" per block, then the question, after one '#':
 * turn + 1 is the turn, turn itself the same turn shifted by one byte
 * (see render). */
static char *user_turn(const char *question, const enum md_vision_block *kinds, int32_t n_blocks)
{
    size_t qlen = strlen(question), mlen = MARKER_LEN + 1;
    char *turn = malloc(1 + mlen * (size_t)n_blocks + qlen + 1);
    if (!turn)
        return NULL;
    turn[0] = '#';
    for (int32_t i = 0; i < n_blocks; i++) {
        char *at = turn + 1 + mlen * (size_t)i;
        memcpy(at, MARKERS[kinds ? kinds[i] : MD_VISION_BLOCK_IMAGE], MARKER_LEN);
        at[MARKER_LEN] = '\n';
    }
    memcpy(turn + 1 + mlen * (size_t)n_blocks, question, qlen + 1);
    return turn;
}

static char *format(const char *tmpl, const struct md_model *model, const char *system,
                    const char *user, int *rc)
{
    int need = md_chat_format(tmpl, model, system, user, NULL, 0);
    char *text = need >= 0 ? malloc((size_t)need + 1) : NULL;
    *rc = need < 0 ? need : text ? MD_OK : MD_ERR_NOMEM;
    if (text)
        md_chat_format(tmpl, model, system, user, text, (size_t)need + 1);
    return text;
}

/* Render the prompt and find where the user turn starts in it. The blocks'
 * markers are found by position, not by searching for their text: the
 * system text and the question may hold marker text too. The templates are
 * opaque printf formats, so the turn is rendered a second time shifted by
 * one byte; the first byte where the two renderings differ is the turn's
 * start (the turn starts with '<', the shifted one with '#'). */
static int render(const char *tmpl, const struct md_model *model, const char *system,
                  const char *turn, int32_t n_blocks, char **out, size_t *user_at, char *err,
                  size_t errlen)
{
    int rc;
    char *text = format(tmpl, model, system, turn + 1, &rc);
    char *shifted = rc ? NULL : format(tmpl, model, system, turn, &rc);
    if (rc) {
        free(text);
        if (rc == MD_ERR_INVALID)
            snprintf(err, errlen, "md_vision_prompt_build: unknown chat template '%s'",
                     tmpl ? tmpl : "auto");
        return rc;
    }
    size_t at = 0;
    while (text[at] && text[at] == shifted[at])
        at++;
    free(shifted);
    int32_t in_place = 0;
    while (in_place < n_blocks &&
           !strncmp(text + at + (MARKER_LEN + 1) * (size_t)in_place,
                    turn + 1 + (MARKER_LEN + 1) * (size_t)in_place, MARKER_LEN + 1))
        in_place++;
    if (in_place != n_blocks) {   /* a template that rewrites the turn */
        snprintf(err, errlen, "md_vision_prompt_build: chat template '%s' changed the user "
                 "turn: %d of the %d block markers where it starts",
                 md_chat_template_name(tmpl, model), (int)in_place, (int)n_blocks);
        free(text);
        return MD_ERR_INVALID;
    }
    *out = text;
    *user_at = at;
    return MD_OK;
}

/* Token ids of the prompt: BOS, the text before, between and after the
 * blocks' markers (consecutive from user_at) tokenized piece by piece with
 * one MD_TOKEN_EMBD per marker, EOS if the vocab adds one. This is what
 * tokenizing the whole text with the marker as a control token gives (a
 * special token cuts the text into pieces tokenized apart), so a marker the
 * vocabulary stores as an ordinary token, or lacks, works the same; llama.cpp's
 * multimodal library splits its prompts the same way. */
static int prompt_ids(const struct md_vocab *vocab, const char *text, size_t user_at,
                      int32_t n_blocks, const struct typed *typed, struct id_buf *b)
{
    struct marker_ids m = find_marker_ids(vocab);
    int rc = MD_OK;
    if (md_vocab_add_bos(vocab) && md_vocab_bos(vocab) >= 0)
        rc = push_id(b, md_vocab_bos(vocab));
    size_t seg = 0;
    for (int32_t k = 0; !rc && k < n_blocks; k++) {
        size_t at = user_at + (MARKER_LEN + 1) * (size_t)k;
        rc = tokenize_append(vocab, text, seg, at - seg, &m, typed, b);
        if (!rc)
            rc = push_id(b, MD_TOKEN_EMBD);
        seg = at + MARKER_LEN;
    }
    if (!rc)
        rc = tokenize_append(vocab, text, seg, strlen(text + seg), &m, typed, b);
    if (!rc && md_vocab_add_eos(vocab) && md_vocab_eos(vocab) >= 0)
        rc = push_id(b, md_vocab_eos(vocab));
    return rc;
}

/* Where the question and the system text lie in the rendered prompt. The
 * question follows the block markers in the user turn; the system text is
 * found the way render finds the turn: rendered again shifted by one byte.
 * A template that drops or rewrites the system text gives no span for it. */
static int find_typed(const char *tmpl, const struct md_model *model, const char *system,
                      const char *turn, const char *question, const char *text, size_t user_at,
                      int32_t n_blocks, struct typed *typed)
{
    typed->n = 0;
    size_t q_at = user_at + (MARKER_LEN + 1) * (size_t)n_blocks, qlen = strlen(question);
    if (qlen && !strncmp(text + q_at, question, qlen))
        typed->span[typed->n++] = (struct md_text_span){ q_at, qlen };
    size_t slen = system ? strlen(system) : 0;
    if (!slen)
        return MD_OK;
    char *shifted_sys = malloc(slen + 2);
    if (!shifted_sys)
        return MD_ERR_NOMEM;
    shifted_sys[0] = system[0] == '#' ? '$' : '#';
    memcpy(shifted_sys + 1, system, slen + 1);
    int rc;
    char *shifted = format(tmpl, model, shifted_sys, turn + 1, &rc);
    free(shifted_sys);
    if (rc)
        return rc;
    size_t at = 0;
    while (text[at] && text[at] == shifted[at])
        at++;
    free(shifted);
    if (text[at] && !strncmp(text + at, system, slen))
        typed->span[typed->n++] = (struct md_text_span){ at, slen };
    return MD_OK;
}

/* SPM vocabularies put a space before every piece of text they tokenize,
 * the piece after a special token included (llama.cpp, and the original
 * LLaVA's tokenizer_image_token, which gives "<image>" "\u2581" "\n" ...).
 * HF's llava-hf processors (LlamaTokenizer, legacy=False) do not: the text
 * after <image> starts with "\n". Match HF by dropping the lone space piece
 * the prefix produced right after the image. */
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
    char *turn = user_turn(question, kinds, n_blocks), *text = NULL;
    size_t user_at = 0;
    int rc = turn ? render(tmpl, model, system, turn, n_blocks, &text, &user_at, err, errlen)
                  : MD_ERR_NOMEM;
    struct typed typed;
    if (!rc)
        rc = find_typed(tmpl, model, system, turn, question, text, user_at, n_blocks, &typed);
    free(turn);
    struct id_buf b = { NULL, 0, 0 };
    if (!rc)
        rc = prompt_ids(vocab, text, user_at, n_blocks, &typed, &b);
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
            snprintf(err, errlen, "md_vision_prompt_build: cannot tokenize the prompt");
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
