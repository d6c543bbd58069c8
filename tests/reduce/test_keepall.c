/* A method configured to keep everything reproduces the unpruned model bit
 * for bit: the prefill logits and 4 greedy decode steps equal those of the
 * plain path (md_vision_encode_image + prompt + md_decode_batch). */
#include "red_fixture.h"

#define STEPS 4

/* Plain path: logits after the prefill and after each greedy step. */
static int plain(struct red_fix *f, float *out, int32_t nv)
{
    struct md_context *ctx = red_ctx(f);
    int32_t n_img = md_vision_image_tokens(f->vis, f->w, f->h), E = md_vision_n_embd(f->vis), n;
    float *embd = malloc(sizeof(float) * (size_t)n_img * E);
    struct md_vision_prompt pr;
    char err[256];
    int rc = md_vision_encode_image(f->vis, f->img, f->w, f->h, f->w * 3, embd, n_img, &n);
    if (!rc)
        rc = md_vision_prompt_build_multi(f->model, NULL, NULL, RED_QUESTION, embd, &n, NULL, 1, E,
                                          &pr, err, sizeof err);
    if (!rc) {
        rc = md_decode_batch(ctx, &pr.batch);
        md_vision_prompt_free(&pr);
    }
    for (int32_t s = 0; !rc && s <= STEPS; s++) {
        memcpy(out + (size_t)s * nv, md_get_logits(ctx, -1), sizeof(float) * nv);
        int32_t t = red_argmax(out + (size_t)s * nv, nv);
        if (s < STEPS)
            rc = md_decode(ctx, &t, 1, false);
    }
    free(embd);
    md_context_free(ctx);
    return rc;
}

static void check_spec(struct red_fix *f, const char *spec, const float *ref, int32_t nv)
{
    struct md_reduce_config cfg;
    char err[256];
    CHECKF(md_reduce_parse(spec, &cfg, err, sizeof err) == MD_OK, "%s: %s", spec, err);
    struct md_context *ctx = red_ctx(f);
    struct md_reduce_session *s = NULL;
    CHECK(md_reduce_session_new(ctx, f->vis, &cfg, &s, err, sizeof err) == MD_OK);
    if (!s)
        return;
    CHECK(md_reduce_add_image(s, f->img, f->w, f->h, f->w * 3) == MD_OK);
    int rc = md_reduce_prefill(s, NULL, NULL, RED_QUESTION);
    CHECKF(rc == MD_OK, "%s: %s", spec, md_reduce_error(s));
    int bad = -1;
    for (int32_t st = 0; !rc && st <= STEPS; st++) {
        const float *l = md_reduce_logits(s);
        if (!l || memcmp(l, ref + (size_t)st * nv, sizeof(float) * nv)) {
            bad = st;
            break;
        }
        int32_t t = red_argmax(l, nv);
        if (st < STEPS && md_reduce_decode(s, t) != MD_OK)
            bad = st;
    }
    const struct md_reduce_stats *stt = md_reduce_stats(s);
    CHECKF(bad < 0, "%s: logits differ from the unpruned model at step %d", spec, bad);
    CHECK(stt->vis_final == stt->vis_in && stt->vis_layer_avg == stt->vis_in);
    printf("%-48s bit-identical over prefill + %d steps (%d visual tokens)\n", spec, STEPS,
           stt->vis_final);
    md_reduce_session_free(s);
    md_context_free(ctx);
}

/* OneVision video: frames through a session that keeps everything give
 * the rows and prompt of md_vision_encode_video's <video> block; the logits
 * agree within float noise (the tower ran one frame at a time here, in
 * batches of 8 there). */
static void onevision_video(void)
{
    struct red_fix f;
    red_fix_load(&f, "tiny-onevision-mmproj-f32.gguf");
    char path[512], err[256];
    md_model_free(f.model);
    f.model = NULL;
    struct md_model_params mp = md_model_default_params();
    if (md_model_load(md_test_data(RED_DIR "tiny-onevision-llm-f32.gguf", path, sizeof path), &mp,
                      &f.model, err, sizeof err)) {
        CHECKF(0, "onevision LLM: %s", err);
        red_fix_free(&f);
        return;
    }
    CHECK(md_vision_video_is_block(f.vis));
    enum { NF = 3 };
    struct md_frame fr[NF];
    for (int32_t t = 0; t < NF; t++)
        fr[t] = (struct md_frame){ f.img, f.w - t, f.h, f.w * 3, t };
    int32_t E = md_vision_n_embd(f.vis), nrow = md_vision_video_tokens(f.vis, NF), got = 0;
    float *embd = malloc(sizeof(float) * (size_t)nrow * E);
    CHECK(md_vision_encode_video(f.vis, fr, NF, embd, nrow, &got) == MD_OK && got == nrow);
    enum md_vision_block kind = MD_VISION_BLOCK_VIDEO;
    struct md_vision_prompt pr;
    CHECK(md_vision_prompt_build_multi(f.model, NULL, NULL, "What happens?", embd, &nrow, &kind, 1,
                                       E, &pr, err, sizeof err) == MD_OK);
    struct md_context *ctx = red_ctx(&f);
    CHECK(md_decode_batch(ctx, &pr.batch) == MD_OK);
    int32_t nv = md_model_n_vocab(f.model);
    const float *ref = md_get_logits(ctx, -1);

    struct md_reduce_config cfg = md_reduce_default_config();
    struct md_context *ctx2 = red_ctx(&f);
    struct md_reduce_session *s = NULL;
    CHECK(md_reduce_session_new(ctx2, f.vis, &cfg, &s, err, sizeof err) == MD_OK);
    CHECK(md_reduce_add_frames(s, fr, NF) == MD_OK);
    CHECKF(md_reduce_prefill(s, NULL, NULL, "What happens?") == MD_OK, "%s", md_reduce_error(s));
    const struct md_reduce_stats *st = md_reduce_stats(s);
    CHECKF(st->n_prompt == pr.n && st->vis_after_select == nrow, "prompt %d rows (want %d), "
           "visual %d (want %d)", st->n_prompt, pr.n, st->vis_after_select, nrow);
    const float *l = md_reduce_logits(s);
    double worst = 0, mx = 0;
    for (int32_t i = 0; l && ref && i < nv; i++) {
        worst = fmax(worst, fabs(l[i] - ref[i]));
        mx = fmax(mx, fabs(ref[i]));
    }
    printf("onevision video, %d frames, %d rows: logits rel err %.3g\n", NF, nrow, worst / mx);
    CHECK(l && ref && worst <= 1e-4 * mx);
    md_reduce_session_free(s);
    md_context_free(ctx2);
    md_context_free(ctx);
    md_vision_prompt_free(&pr);
    free(embd);
    red_fix_free(&f);
}

int main(void)
{
    struct red_fix f;
    red_fix_load(&f, "tiny-llava-mmproj-f32.gguf");
    int32_t nv = md_model_n_vocab(f.model);
    float *ref = malloc(sizeof(float) * (size_t)nv * (STEPS + 1));
    CHECK(plain(&f, ref, nv) == MD_OK);
    check_spec(&f, "none", ref, nv);
    check_spec(&f, "mustdrop:tau_g=0,tau_i=0,merge=2,kv=faithful", ref, nv);
    check_spec(&f, "mustdrop:tau_g=0,tau_i=0,merge=2,kv=decode,evict=0", ref, nv);
    check_spec(&f, "hired:budget=1,alpha=0.5", ref, nv);
    check_spec(&f, "fastv:k=2,r=0", ref, nv);
    check_spec(&f, "random:keep=1", ref, nv);
    check_spec(&f, "uniform:tokens=1000+fastv:k=1,r=0", ref, nv);
    check_spec(&f, "cap:tokens=5000", ref, nv);
    free(ref);
    red_fix_free(&f);
    onevision_video();
    return md_test_finish("reduce_keepall");
}
