/* LLaVA-OneVision conformance against HF transformers on the tiny fixture of
 * models/make_test_onevision.py (SigLIP 44 px / patch 14 -> 3x3 patches,
 * Qwen2 LM, pinpoints 44..176 px, anyres_max_9):
 *   - AnyRes pixel values of the 170x150 image (base + 4x4 tiles) vs HF's
 *     PIL processor;
 *   - the tower's output (hidden_states[-1], no post-LN) of all 17 tiles
 *     within 1e-4 of max|value|;
 *   - packed image features (unpad, bilinear shrink to 8x9, newlines: 89
 *     rows) and the 8-frame video block (2x2 bilinear pooling per frame,
 *     one newline: 33 rows) within 1e-4;
 *   - the image and video prompts' ids equal HF's (counts included), the
 *     LM logits at every position within 1e-3. */
#include <math.h>

#include "md_test.h"
#include "mustdrop-vision.h"
#include "vision-impl.h"
#include "vlm_ref.h"

#define DIR "../models/fixtures/vision/"

static const struct vlm_array *arr(const struct vlm_ref *r, const char *name, int dtype, size_t want)
{
    const struct vlm_array *a = vlm_get(r, name);
    bool ok = a && a->dtype == (uint32_t)dtype && (want == 0 || a->count == want);
    CHECKF(ok, "reference array '%s' (count %zu, want %zu)", name, a ? a->count : 0, want);
    return ok ? a : NULL;
}

static double rel(const float *a, const float *b, size_t n)
{
    double e = vlm_rel_err(a, b, n);
    return e;
}

static void check_image(struct md_vision *v, const struct vlm_ref *ref, float **feat_out, int32_t *n_out)
{
    const struct vlm_array *im = arr(ref, "image", 2, 0);
    if (!im || im->ndim != 3)
        return;
    int32_t h = (int32_t)im->dims[0], w = (int32_t)im->dims[1], S = md_vision_image_size(v);
    const uint8_t *img = im->data;
    struct md_anyres_plan p;
    CHECK(md_anyres_plan(&v->hp, true, w, h, &p) == MD_OK);
    printf("anyres: %dx%d -> best %dx%d, %dx%d tiles, grid rows %d..%d cols %d..%d, shrunk to %dx%d%s\n",
           w, h, p.bw, p.bh, p.nx, p.ny, p.r0, p.r1, p.c0, p.c1, p.oh, p.ow,
           p.interp ? " (bilinear)" : "");
    size_t per = 3 * (size_t)S * S;
    const struct vlm_array *hp = arr(ref, "pix_image", 0, (size_t)p.n_tiles * per);
    float *pix = malloc(sizeof(float) * per * (size_t)p.n_tiles);
    if (hp && pix) {
        CHECK(md_anyres_pixels(&v->hp, MD_VISION_BICUBIC, &p, img, w, h, w * 3, pix) == MD_OK);
        double e = vlm_max_abs(pix, hp->data, hp->count);
        printf("pixel values (%d tiles): max |ours - HF| = %.3g\n", p.n_tiles, e);
        CHECKF(e < 1e-5, "pixels differ by %g", e);
    }
    /* the tower on HF's pixels: hidden_states[-1], before the post-LN */
    int32_t np = md_vision_n_pos(v), D = md_vision_hidden(v);
    const struct vlm_array *tw = arr(ref, "tower_image", 0, (size_t)p.n_tiles * np * D);
    struct md_vision_run *r = NULL;
    if (hp && tw && md_vision_run_begin(v, hp->data, p.n_tiles, &r) == MD_OK) {
        float *hid = malloc(sizeof(float) * tw->count);
        CHECK(md_vision_run_layers(r, 0, md_vision_n_layer_run(v)) == MD_OK);
        CHECK(md_vision_run_hidden(r, hid) == MD_OK);
        double e = rel(hid, tw->data, tw->count);
        printf("vision tower output (%d tiles x %d x %d): rel err %.3g\n", p.n_tiles, np, D, e);
        CHECKF(e < 1e-4, "tower output: %g", e);
        free(hid);
        md_vision_run_end(r);
    } else {
        CHECK(0);
    }
    free(pix);
    /* the packed features from the RGB bytes */
    int32_t n = md_vision_image_tokens(v, w, h), E = md_vision_n_embd(v), got = 0;
    const struct vlm_array *hf = arr(ref, "feat_image", 0, 0);
    CHECKF(hf && n == (int32_t)hf->dims[0], "image tokens %d, HF %u", n, hf ? hf->dims[0] : 0);
    float *feat = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1) * E);
    if (hf && n == (int32_t)hf->dims[0] &&
        md_vision_encode_image(v, img, w, h, w * 3, feat, n, &got) == MD_OK && got == n) {
        double e = rel(feat, hf->data, hf->count);
        printf("image features (%d rows): rel err %.3g\n", n, e);
        CHECKF(e < 1e-4, "image features: %g", e);
    } else {
        CHECK(0);
    }
    *feat_out = feat;
    *n_out = n;
}

static void check_video(struct md_vision *v, const struct vlm_ref *ref, float **feat_out, int32_t *n_out)
{
    const struct vlm_array *fv = arr(ref, "video", 2, 0), *hf = arr(ref, "feat_video", 0, 0);
    if (!fv || !hf || fv->ndim != 4)
        return;
    int32_t nf = (int32_t)fv->dims[0], h = (int32_t)fv->dims[1], w = (int32_t)fv->dims[2];
    struct md_frame fr[16];
    CHECK(nf <= 16);
    for (int32_t i = 0; i < nf && i < 16; i++)
        fr[i] = (struct md_frame){ (const uint8_t *)fv->data + (size_t)i * h * w * 3, w, h, w * 3,
                                   (int64_t)i * 500000000 };
    int32_t per = md_vision_frame_tokens(v), n = md_vision_video_tokens(v, nf), got = 0;
    CHECK(md_vision_video_is_block(v));
    CHECKF(per == 4 && n == nf * per + 1 && n == (int32_t)hf->dims[0],
           "video: %d per frame, %d rows, HF %u", per, n, hf->dims[0]);
    float *feat = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1) * md_vision_n_embd(v));
    if (n == (int32_t)hf->dims[0] && md_vision_encode_video(v, fr, nf, feat, n, &got) == MD_OK &&
        got == n) {
        double e = rel(feat, hf->data, hf->count);
        printf("video features (%d frames -> %d rows): rel err %.3g\n", nf, n, e);
        CHECKF(e < 1e-4, "video features: %g", e);
    } else {
        CHECK(0);
    }
    CHECK(md_vision_encode_video(v, fr, nf, feat, n - 1, &got) == MD_ERR_INVALID);
    *feat_out = feat;
    *n_out = n;
}

static void check_prompt(struct md_model *model, const struct vlm_ref *ref, const char *what,
                         const char *question, enum md_vision_block kind, int32_t marker_id,
                         const float *feat, int32_t n_rows)
{
    char name[64], err[256] = "";
    snprintf(name, sizeof name, "ids_%s", what);
    const struct vlm_array *ids = arr(ref, name, 1, 0);
    snprintf(name, sizeof name, "logits_%s", what);
    int32_t nv = md_model_n_vocab(model), E = md_model_n_embd(model);
    const struct vlm_array *lg = ids ? arr(ref, name, 0, ids->count * (size_t)nv) : NULL;
    if (!ids || !lg || !feat)
        return;
    struct md_vision_prompt pr;
    int rc = md_vision_prompt_build_multi(model, "chatml", NULL, question, feat, &n_rows, &kind, 1, E,
                                          &pr, err, sizeof err);
    CHECKF(rc == MD_OK, "%s prompt: %s", what, err);
    if (rc)
        return;
    CHECKF((size_t)pr.n == ids->count, "%s prompt: %d ids, HF %zu", what, pr.n, ids->count);
    const int32_t *hid = ids->data;
    int bad = 0;
    for (int32_t i = 0; i < pr.n && (size_t)i < ids->count; i++)
        bad += (hid[i] == marker_id ? MD_TOKEN_EMBD : hid[i]) != pr.tokens[i];
    CHECKF(bad == 0, "%s prompt: %d ids differ from HF's", what, bad);
    struct md_context_params cp = md_context_default_params();
    cp.n_threads = 1;
    struct md_context *ctx = NULL;
    if ((size_t)pr.n == ids->count && md_context_new(model, &cp, &ctx, err, sizeof err) == MD_OK) {
        pr.batch.all_logits = true;
        CHECK(md_decode_batch(ctx, &pr.batch) == MD_OK);
        double worst = 0;
        for (int32_t i = 0; i < pr.n; i++) {
            const float *l = md_get_logits(ctx, i);
            if (!l) {
                CHECK(0);
                break;
            }
            double e = vlm_rel_err(l, (const float *)lg->data + (size_t)i * nv, (size_t)nv);
            worst = e > worst ? e : worst;
        }
        printf("%s prompt: %d ids as HF's, LM logits rel err %.3g\n", what, pr.n, worst);
        CHECKF(worst < 1e-3, "%s logits: %g", what, worst);
        md_context_free(ctx);
    }
    md_vision_prompt_free(&pr);
}

int main(void)
{
    char path[512], err[256] = "";
    struct vlm_ref ref;
    if (vlm_ref_load(md_test_data(DIR "tiny-onevision.ref.bin", path, sizeof path), &ref)) {
        printf("FAIL: cannot read %s\n", path);
        return 1;
    }
    struct md_vision_params vp = md_vision_default_params();
    vp.backend = md_test_backend();
    vp.n_threads = 1;
    struct md_vision *v = NULL;
    if (md_vision_load(md_test_data(DIR "tiny-onevision-mmproj-f32.gguf", path, sizeof path), &vp, &v,
                       err, sizeof err) != MD_OK) {
        printf("FAIL: %s: %s\n", path, err);
        vlm_ref_free(&ref);
        return 1;
    }
    printf("%s\n", md_vision_desc(v));
    CHECK(!md_vision_has_class_token(v) && md_vision_n_pos(v) == 9);
    float *fi = NULL, *fvid = NULL;
    int32_t ni = 0, nvid = 0;
    check_image(v, &ref, &fi, &ni);
    check_video(v, &ref, &fvid, &nvid);
    struct md_model_params mp = md_model_default_params();
    mp.backend = md_test_backend();
    mp.n_threads = 1;
    struct md_model *model = NULL;
    if (md_model_load(md_test_data(DIR "tiny-onevision-llm-f32.gguf", path, sizeof path), &mp, &model,
                      err, sizeof err) == MD_OK) {
        check_prompt(model, &ref, "image", "What is shown?", MD_VISION_BLOCK_IMAGE, 1026, fi, ni);
        check_prompt(model, &ref, "video", "What happens?", MD_VISION_BLOCK_VIDEO, 1027, fvid, nvid);
        md_model_free(model);
    } else {
        CHECKF(0, "LLM load: %s", err);
    }
    free(fi);
    free(fvid);
    md_vision_free(v);
    vlm_ref_free(&ref);
    return md_test_finish("vision_hf_onevision");
}
