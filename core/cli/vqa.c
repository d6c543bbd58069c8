/* Shared by mustdrop and mustdrop-eval: see vqa.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"
#include "unicode.h"
#include "vqa.h"

const char *vqa_load_error(const char *path, const char *err, char *buf, size_t n)
{
    size_t k = strlen(path);
    if (!strncmp(err, path, k) && err[k] == ':' && err[k + 1] == ' ')
        return err;
    /* a device that cannot be used (cli_model_load's check, before the file
     * is read) is not the file's fault */
    if (!strncmp(err, "--device ", 9))
        return err;
    snprintf(buf, n, "%s: %s", path, err);
    return buf;
}

long vqa_utf8_bad_offset(const char *s)
{
    size_t len = strlen(s);
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t k = md_utf8_decode((const uint8_t *)s + i, len - i, &cp);
        if (cp == MD_CP_INVALID)
            return (long)i;
        i += k;
    }
    return -1;
}

int64_t vqa_count_tokens(const struct md_model *model, const char *text)
{
    const struct md_vocab *vocab = md_model_vocab(model);
    return vocab ? md_tokenize(vocab, text, strlen(text), false, false, NULL, 0) : 0;
}

int vqa_check_question(const struct md_model *model, const char *q, int n_ctx, char *err,
                       size_t errlen)
{
    if (!q || !q[strspn(q, " \t\r\n")]) {
        snprintf(err, errlen, "the question is empty");
        return -1;
    }
    long bad = vqa_utf8_bad_offset(q);
    if (bad >= 0) {
        snprintf(err, errlen, "the question is not valid UTF-8 (byte 0x%02x at offset %ld)",
                 (unsigned)(unsigned char)q[bad], bad);
        return -1;
    }
    int64_t n_q = n_ctx > 0 ? vqa_count_tokens(model, q) : 0;
    if (n_ctx > 0 && n_q >= n_ctx) {
        snprintf(err, errlen, "the question is %lld tokens and the context holds %d; ask a "
                 "shorter question or raise -c", (long long)n_q, n_ctx);
        return -1;
    }
    return 0;
}

void vqa_prompt_too_long(const struct md_model *model, const char *q, int64_t n_rows,
                         int64_t n_image, int n_ctx, char *err, size_t errlen)
{
    /* the question counted alone: within a token or two of its share in
     * the prompt, where the template's text meets it */
    int64_t n_q = vqa_count_tokens(model, q);
    int64_t rest = n_rows - n_image - n_q;
    snprintf(err, errlen, "the prompt is %lld rows (the question %lld tokens, %lld image rows, "
             "%lld for the chat template) and the context holds %d; ask a shorter question, "
             "use fewer frames or raise -c", (long long)n_rows, (long long)n_q,
             (long long)n_image, (long long)(rest > 0 ? rest : 0), n_ctx);
}

int vqa_default_model(char *llm, size_t llm_len, char *mmproj, size_t mmproj_len, char *err,
                      size_t errlen)
{
    if (md_default_model_paths(llm, llm_len, mmproj, mmproj_len) == 0)
        return 0;
    const char *env = getenv("MUSTDROP_MODEL_DIR");
    int w = snprintf(err, errlen, "the default model (%s + %s) was not found; searched:",
                     MD_DEFAULT_LLM_FILE, MD_DEFAULT_MMPROJ_FILE);
    char dir[4096];
    for (int i = 0; md_default_model_dir(i, dir, sizeof dir) == 0; i++) {
        if (w < 0 || (size_t)w >= errlen) break;
        bool from_env = i == 0 && env && env[0];
        w += snprintf(err + w, errlen - (size_t)w, "%s %s%s", i ? "," : "",
                      from_env ? "$MUSTDROP_MODEL_DIR=" : "", dir);
    }
    if (w >= 0 && (size_t)w < errlen && !(env && env[0]))
        snprintf(err + w, errlen - (size_t)w, " (set MUSTDROP_MODEL_DIR, or give -m and --mmproj)");
    return -1;
}

int vqa_generate(struct md_context *ctx, const struct md_model *model, const struct vqa_gen *g,
                 const struct md_batch *batch, char *err, size_t errlen)
{
    const struct md_vocab *vocab = md_model_vocab(model);
    int n_ctx = md_context_n_ctx(ctx);
    if (batch->n >= n_ctx) {
        snprintf(err, errlen, "the prompt is %lld tokens and the context holds %d; shorten it "
                 "or raise -c", (long long)batch->n, n_ctx);
        return -1;
    }
    int rc = md_decode_batch(ctx, batch);
    if (rc != MD_OK) {
        snprintf(err, errlen, "prefill failed: %s: %s", md_status_str(rc), md_context_error(ctx));
        return -1;
    }
    struct md_sampler *smp = md_sampler_new(&g->sampling);
    if (!smp) {
        snprintf(err, errlen, "bad sampling parameters");
        return -1;
    }
    for (int32_t i = 0; batch->tokens && i < batch->n; i++)
        if (batch->tokens[i] != MD_TOKEN_EMBD)
            md_sampler_accept(smp, batch->tokens[i]);

    int status = VQA_GEN_OK;
    int limit = g->n_predict < 0 ? n_ctx : g->n_predict;
    for (int i = 0; i < limit; i++) {
        int32_t t = md_sampler_sample(smp, md_get_logits(ctx, -1), md_model_n_vocab(model));
        if (t < 0 || md_vocab_is_eog(vocab, t)) break;
        if (g->on_token) g->on_token(g->user, vocab, t);
        if (i + 1 == limit) break;
        if (md_context_n_past(ctx) >= n_ctx) {
            snprintf(err, errlen, "context full (%d tokens)", n_ctx);
            status = VQA_GEN_CONTEXT_FULL;
            break;
        }
        rc = md_decode(ctx, &t, 1, false);
        if (rc != MD_OK) {
            snprintf(err, errlen, "decode failed: %s: %s", md_status_str(rc), md_context_error(ctx));
            status = -1;
            break;
        }
    }
    md_sampler_free(smp);
    return status;
}

int vqa_reduce_generate(struct md_reduce_session *s, const struct md_model *model,
                        const struct vqa_gen *g, int n_ctx, char *err, size_t errlen)
{
    const struct md_vocab *vocab = md_model_vocab(model);
    struct md_sampler *smp = md_sampler_new(&g->sampling);
    if (!smp) {
        snprintf(err, errlen, "bad sampling parameters");
        return -1;
    }
    int limit = g->n_predict < 0 ? n_ctx : g->n_predict, status = VQA_GEN_OK;
    for (int i = 0; i < limit; i++) {
        int32_t t = md_sampler_sample(smp, md_reduce_logits(s), md_model_n_vocab(model));
        if (t < 0 || md_vocab_is_eog(vocab, t)) break;
        if (g->on_token) g->on_token(g->user, vocab, t);
        if (i + 1 == limit) break;
        if (md_reduce_decode(s, t) != MD_OK) {
            snprintf(err, errlen, "decode stopped: %s", md_reduce_error(s));
            status = -1;
            break;
        }
    }
    md_sampler_free(smp);
    return status;
}

#ifdef MD_HAVE_FFMPEG
int vqa_load_video(const char *path, int32_t n_frames, float fps, struct media_frames *v,
                   char *err, size_t errlen)
{
    struct media_sampling smp = { .n_frames = fps > 0 ? 0 : n_frames > 0 ? n_frames : VQA_DEFAULT_FRAMES,
                                  .fps = fps, .max_frames = VQA_MAX_FPS_FRAMES };
    return media_load_video(path, &smp, v, err, errlen) ? -1 : 0;
}

void vqa_input_free(struct vqa_input *in)
{
    free(in->embd);
    free(in->rows);
    free(in->kinds);
    memset(in, 0, sizeof *in);
}

/* Room for n_rows more embedding rows and n_blocks more blocks. */
static int grow(struct vqa_input *in, int64_t n_rows, int32_t n_blocks, int32_t n_embd)
{
    float *e = realloc(in->embd, sizeof(float) * (size_t)(in->n_total + n_rows) * (size_t)n_embd);
    if (e) in->embd = e;
    int32_t *rows = realloc(in->rows, sizeof(int32_t) * (size_t)(in->n_blocks + n_blocks));
    if (rows) in->rows = rows;
    enum md_vision_block *kinds = realloc(in->kinds, sizeof *kinds * (size_t)(in->n_blocks + n_blocks));
    if (kinds) in->kinds = kinds;
    return e && rows && kinds ? 0 : -1;
}

int vqa_encode_image(struct md_vision *vis, const struct media_frame *f, struct vqa_input *in,
                     char *err, size_t errlen)
{
    int32_t E = md_vision_n_embd(vis);
    int32_t n = md_vision_image_tokens(vis, f->width, f->height), got = 0;
    int rc = n > 0 && !grow(in, n, 1, E) ? MD_OK : MD_ERR_NOMEM;
    if (!rc)
        rc = md_vision_encode_image(vis, f->rgb, f->width, f->height, f->stride,
                                    in->embd + (size_t)in->n_total * E, n, &got);
    if (rc) {
        snprintf(err, errlen, "%s", md_status_str(rc));
        return -1;
    }
    in->kinds[in->n_blocks] = MD_VISION_BLOCK_IMAGE;
    in->rows[in->n_blocks++] = got;
    in->n_total += got;
    return 0;
}

int vqa_encode_video(struct md_vision *vis, const struct media_frames *v, struct vqa_input *in,
                     char *err, size_t errlen)
{
    /* OneVision: one <video> block; LLaVA-1.5/NeXT: one <image> block per frame */
    bool block = md_vision_video_is_block(vis);
    int32_t per = md_vision_frame_tokens(vis), E = md_vision_n_embd(vis), got = 0;
    int32_t total = md_vision_video_tokens(vis, v->n);
    struct md_frame *fr = calloc((size_t)(v->n > 0 ? v->n : 1), sizeof *fr);
    int rc = total > 0 && fr && !grow(in, total, v->n, E) ? MD_OK : MD_ERR_NOMEM;
    for (int32_t i = 0; !rc && i < v->n; i++)
        fr[i] = (struct md_frame){ v->frame[i].rgb, v->frame[i].width, v->frame[i].height,
                                   v->frame[i].stride, v->frame[i].pts_ns };
    if (!rc)
        rc = md_vision_encode_video(vis, fr, v->n, in->embd + (size_t)in->n_total * E, total, &got);
    free(fr);
    if (rc) {
        snprintf(err, errlen, "%s", md_status_str(rc));
        return -1;
    }
    for (int32_t i = 0; i < (block ? 1 : v->n); i++) {
        in->kinds[in->n_blocks] = block ? MD_VISION_BLOCK_VIDEO : MD_VISION_BLOCK_IMAGE;
        in->rows[in->n_blocks++] = block ? got : per;
    }
    in->n_total += got;
    return 0;
}

int vqa_reduce_add_video(struct md_reduce_session *s, const struct media_frames *v, char *err,
                         size_t errlen)
{
    for (int32_t i = 0; i < v->n; i++) {   /* as a stream would hand them over */
        struct md_frame fr = { v->frame[i].rgb, v->frame[i].width, v->frame[i].height,
                               v->frame[i].stride, v->frame[i].pts_ns };
        if (md_reduce_add_frames(s, &fr, 1) != MD_OK) {
            snprintf(err, errlen, "%s", md_reduce_error(s));
            return -1;
        }
    }
    return 0;
}
#endif
