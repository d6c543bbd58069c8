/* LLaVA-1.5 conformance against HF transformers on the tiny random model of
 * models/make_test_vlm.py (fixtures in models/fixtures/vision/):
 *   - preprocessing (pad and crop modes) vs the HF PIL processor;
 *   - vision tower hidden states after every layer and the selected one
 *     (hidden_states[-2]) within 1e-4 of max|value|;
 *   - the class-token attention row of each layer (pruning hook);
 *   - projector output within 1e-4; keep-all is the identity;
 *   - the prompt's token ids and count equal HF's, LM logits within 1e-3. */
#include <math.h>

#include "md_test.h"
#include "mustdrop-vision.h"
#include "tokenizer.h"
#include "vlm_ref.h"

#define DIR "../models/fixtures/vision/"

static const float *arr_f32(const struct vlm_ref *r, const char *name, size_t want)
{
    const struct vlm_array *a = vlm_get(r, name);
    CHECKF(a && a->dtype == 0 && (want == 0 || a->count == want), "reference array '%s'", name);
    return a && a->dtype == 0 && (want == 0 || a->count == want) ? a->data : NULL;
}

static void check_preprocess(struct md_vision *vis_pad, struct md_vision *vis_crop,
                             const struct vlm_ref *ref, const uint8_t *img, int32_t w, int32_t h)
{
    int32_t S = md_vision_image_size(vis_pad);
    size_t n = 3 * (size_t)S * S;
    float *pix = malloc(sizeof(float) * n);
    const float *hp = arr_f32(ref, "pix_pad", n), *hc = arr_f32(ref, "pix_crop", n);
    if (hp && !md_vision_preprocess(vis_pad, img, w, h, w * 3, pix)) {
        double e = vlm_max_abs(pix, hp, n);
        printf("preprocess pad:  max |ours - HF| = %.3g\n", e);
        CHECKF(e < 1e-5, "pad mode differs from HF by %g", e);
    } else {
        CHECK(0);
    }
    if (hc && !md_vision_preprocess(vis_crop, img, w, h, w * 3, pix)) {
        double e = vlm_max_abs(pix, hc, n);
        printf("preprocess crop: max |ours - HF| = %.3g\n", e);
        CHECKF(e < 1e-5, "crop mode differs from HF by %g", e);
    } else {
        CHECK(0);
    }
    free(pix);
}

/* Hidden states after each layer and the class-token attention rows. */
static void check_tower(struct md_vision *vis, const struct vlm_ref *ref, const float *pix)
{
    const struct vlm_array *all = vlm_get(ref, "hidden_all"), *att = vlm_get(ref, "attn_cls");
    int32_t n_pos = md_vision_n_pos(vis), D = md_vision_hidden(vis), H = md_vision_n_head(vis);
    int32_t L = md_vision_n_layer(vis);
    CHECK(all && all->ndim == 3 && all->dims[1] == (uint32_t)n_pos && all->dims[2] == (uint32_t)D);
    CHECK(att && att->ndim == 3 && att->dims[1] == (uint32_t)H && att->dims[2] == (uint32_t)n_pos);
    if (!all || !att || all->dims[1] != (uint32_t)n_pos || att->dims[2] != (uint32_t)n_pos)
        return;
    size_t per = (size_t)n_pos * D;
    float *hid = malloc(sizeof(float) * per), *probs = malloc(sizeof(float) * H * n_pos);
    struct md_vision_run *r;
    CHECK(md_vision_run_begin(vis, pix, 1, &r) == MD_OK);
    for (int32_t il = 0; r && il <= L; il++) {
        CHECK(md_vision_run_hidden(r, hid) == MD_OK);
        double e = vlm_rel_err(hid, (const float *)all->data + il * per, per);
        printf("hidden after %d layers: rel err %.3g\n", il, e);
        CHECKF(e < md_test_tol(1e-4, 2e-3), "hidden state %d: %g", il, e);
        if (il == L)
            break;
        CHECK(md_vision_run_attention_row(r, il, 0, probs) == MD_OK);
        double ea = vlm_max_abs(probs, (const float *)att->data + (size_t)il * H * n_pos,
                                (size_t)H * n_pos);
        printf("layer %d class-token attention: max abs err %.3g\n", il, ea);
        CHECKF(ea < md_test_tol(1e-5, 2e-3), "attention row of layer %d: %g", il, ea);
        CHECK(md_vision_run_layers(r, il, il + 1) == MD_OK);
    }
    md_vision_run_end(r);
    free(hid);
    free(probs);
}

/* Projector output, and keep-all (with bad index lists rejected). */
static void check_projector(struct md_vision *vis, const struct vlm_ref *ref, const float *pix)
{
    int32_t n_embd = md_vision_n_embd(vis), n_patch = md_vision_n_pos(vis) - 1;
    const float *hp = arr_f32(ref, "proj", (size_t)n_patch * n_embd);
    float *out = malloc(sizeof(float) * (size_t)n_patch * n_embd);
    float *out2 = malloc(sizeof(float) * (size_t)n_patch * n_embd);
    int32_t n = 0;
    CHECK(md_vision_encode_pixels(vis, pix, 1, out, n_patch, &n) == MD_OK);
    CHECK(n == n_patch);
    if (hp) {
        double e = vlm_rel_err(out, hp, (size_t)n_patch * n_embd);
        printf("projector: rel err %.3g\n", e);
        CHECKF(e < md_test_tol(1e-4, 2e-3), "projector output: %g", e);
    }
    CHECK(md_vision_encode_pixels(vis, pix, 1, out, n_patch - 1, &n) == MD_ERR_INVALID);

    struct md_vision_run *r;
    int32_t n_pos = md_vision_n_pos(vis), idx[64];
    CHECK(md_vision_run_begin(vis, pix, 1, &r) == MD_OK);
    for (int32_t i = 0; i < n_pos && i < 64; i++)
        idx[i] = i;
    idx[3] = 2;   /* not increasing */
    CHECK(md_vision_run_keep(r, idx, n_pos) == MD_ERR_INVALID);
    idx[3] = 3;
    CHECK(md_vision_run_keep(r, idx, n_pos) == MD_OK);
    CHECK(md_vision_run_layers(r, 0, md_vision_n_layer_run(vis)) == MD_OK);
    CHECK(md_vision_run_project(r, true, out2, n_patch, &n) == MD_OK);
    CHECK(n == n_patch && vlm_max_abs(out, out2, (size_t)n_patch * n_embd) == 0);
    md_vision_run_end(r);
    free(out);
    free(out2);
}

/* The whole path from RGB bytes: prompt ids as HF's, logits within 1e-3. */
static void check_llm(struct md_vision *vis, const struct vlm_ref *ref, const uint8_t *img,
                      int32_t w, int32_t h)
{
    char path[512], err[256] = "";
    struct md_model_params mp = md_model_default_params();
    mp.backend = md_test_backend();
    mp.n_threads = 1;
    struct md_model *model = NULL;
    md_test_data(DIR "tiny-llava-llm-f32.gguf", path, sizeof path);
    if (md_model_load(path, &mp, &model, err, sizeof err) != MD_OK) {
        CHECKF(0, "LLM load: %s", err);
        return;
    }
    int32_t n_img = md_vision_image_tokens(vis, w, h), n_embd = md_vision_n_embd(vis);
    float *embd = malloc(sizeof(float) * (size_t)n_img * n_embd);
    int32_t n = 0;
    CHECK(md_vision_encode_image(vis, img, w, h, w * 3, embd, n_img, &n) == MD_OK && n == n_img);
    struct md_vision_prompt pr;
    int rc = md_vision_prompt_build(model, "vicuna", NULL, "What is in the garden?", embd, n,
                                    n_embd, &pr, err, sizeof err);
    CHECKF(rc == MD_OK, "prompt: %s", err);
    const struct vlm_array *ids = vlm_get(ref, "ids");
    const float *logits = NULL;
    if (!rc && ids) {
        CHECKF((uint32_t)pr.n == ids->count, "prompt has %d tokens, HF %u", pr.n,
               (unsigned)ids->count);
        const int32_t *hid = ids->data;
        int bad = 0;
        for (int32_t i = 0; i < pr.n && (uint32_t)i < ids->count; i++)
            bad += (hid[i] == 3 ? MD_TOKEN_EMBD : hid[i]) != pr.tokens[i];
        CHECKF(bad == 0, "%d token ids differ from HF's", bad);
        logits = arr_f32(ref, "logits", ids->count * (size_t)md_model_n_vocab(model));
    }
    struct md_context_params cp = md_context_default_params();
    cp.n_threads = 1;
    struct md_context *ctx = NULL;
    if (!rc && logits && md_context_new(model, &cp, &ctx, err, sizeof err) == MD_OK) {
        pr.batch.all_logits = true;
        CHECK(md_decode_batch(ctx, &pr.batch) == MD_OK);
        int32_t nv = md_model_n_vocab(model);
        double worst = 0;
        for (int32_t i = 0; i < pr.n && (uint32_t)i < ids->count; i++) {
            const float *lg = md_get_logits(ctx, i);
            CHECK(lg != NULL);
            if (!lg)
                break;
            double e = vlm_rel_err(lg, logits + (size_t)i * nv, (size_t)nv);
            worst = e > worst ? e : worst;
        }
        printf("LM logits (%d positions): worst rel err %.3g\n", pr.n, worst);
        CHECKF(worst < md_test_tol(1e-3, 1e-2), "logits: %g", worst);
        md_context_free(ctx);
    }
    if (!rc)
        md_vision_prompt_free(&pr);
    free(embd);
    md_model_free(model);
}

int main(void)
{
    char path[512], err[256] = "";
    struct vlm_ref ref;
    if (vlm_ref_load(md_test_data(DIR "tiny-llava.ref.bin", path, sizeof path), &ref))
        SKIP("%s missing or unreadable (run models/make_test_vlm.py)", path);
    int32_t w = 0, h = 0;
    uint8_t *img = vlm_read_ppm(md_test_data(DIR "test-image.ppm", path, sizeof path), &w, &h);
    CHECK(img != NULL);

    struct md_vision_params vp = md_vision_default_params();
    vp.backend = md_test_backend();
    vp.n_threads = 2;
    struct md_vision *vis = NULL, *vis_crop = NULL;
    md_test_data(DIR "tiny-llava-mmproj-f32.gguf", path, sizeof path);
    int rc = md_vision_load(path, &vp, &vis, err, sizeof err);
    CHECKF(rc == MD_OK, "load: %s", err);
    vp.fit = MD_VISION_FIT_CROP;
    CHECK(md_vision_load(path, &vp, &vis_crop, err, sizeof err) == MD_OK);
    if (vis && vis_crop && img) {
        printf("%s\n", md_vision_desc(vis));
        CHECK(md_vision_n_layer(vis) == 2 && md_vision_n_layer_run(vis) == 2);
        CHECK(md_vision_n_pos(vis) == 17 && md_vision_has_class_token(vis));
        CHECK(md_vision_image_tokens(vis, w, h) == 16);
        check_preprocess(vis, vis_crop, &ref, img, w, h);
        const float *pix = arr_f32(&ref, "pix_pad", 3 * 56 * 56);
        if (pix) {
            check_tower(vis, &ref, pix);
            check_projector(vis, &ref, pix);
        }
        check_llm(vis, &ref, img, w, h);
    }
    md_vision_free(vis);
    md_vision_free(vis_crop);
    free(img);
    vlm_ref_free(&ref);
    return md_test_finish("vision_hf_llava");
}
