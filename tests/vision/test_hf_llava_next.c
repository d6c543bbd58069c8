/* LLaVA-NeXT (AnyRes) conformance against HF transformers on the tiny
 * fixture of models/make_test_vlm.py: the 61x45 test image picks the
 * 56x112 (h x w) pinpoint, i.e. a base image + 1x2 tiles; checked are the
 * tiles' pixel values (LlavaNextImageProcessor, PIL), the packed features
 * (base, then the tile grid unpadded to 4x6 with image_newline after each
 * row: 16 + 4*7 = 44 rows, HF's pack_image_features), the prompt's ids and
 * the LM logits. */
#include <math.h>

#include "md_test.h"
#include "mustdrop-vision.h"
#include "vision-impl.h"
#include "vlm_ref.h"

#define DIR "../models/fixtures/vision/"

static void check_pixels(struct md_vision *v, const struct vlm_ref *ref, const uint8_t *img,
                         int32_t w, int32_t h)
{
    const struct vlm_array *hp = vlm_get(ref, "next_pixels");
    struct md_anyres_plan p;
    CHECK(md_anyres_plan(&v->hp, true, w, h, &p) == MD_OK);
    printf("anyres: best %dx%d, %dx%d tiles, resized %dx%d at (%d,%d), grid rows %d..%d cols %d..%d\n",
           p.bw, p.bh, p.nx, p.ny, p.rw, p.rh, p.px, p.py, p.r0, p.r1, p.c0, p.c1);
    CHECK(hp && hp->count == (size_t)p.n_tiles * 3 * 56 * 56);
    if (!hp || hp->count != (size_t)p.n_tiles * 3 * 56 * 56)
        return;
    float *pix = malloc(sizeof(float) * hp->count);
    CHECK(md_anyres_pixels(&v->hp, MD_VISION_BICUBIC, &p, img, w, h, w * 3, pix) == MD_OK);
    double e = vlm_max_abs(pix, hp->data, hp->count);
    printf("anyres pixels: max |ours - HF| = %.3g\n", e);
    CHECKF(e < 1e-5, "anyres pixels differ by %g", e);
    free(pix);
}

static void check_llm(struct md_vision *v, const struct vlm_ref *ref, const float *embd, int32_t n)
{
    char path[512], err[256] = "";
    struct md_model_params mp = md_model_default_params();
    mp.backend = md_test_backend();
    mp.n_threads = 1;
    struct md_model *model = NULL;
    if (md_model_load(md_test_data(DIR "tiny-llava-llm-f32.gguf", path, sizeof path), &mp, &model,
                      err, sizeof err) != MD_OK) {
        CHECKF(0, "LLM load: %s", err);
        return;
    }
    struct md_vision_prompt pr;
    int rc = md_vision_prompt_build(model, "vicuna", NULL, "What is in the garden?", embd, n,
                                    md_vision_n_embd(v), &pr, err, sizeof err);
    CHECKF(rc == MD_OK, "prompt: %s", err);
    const struct vlm_array *ids = vlm_get(ref, "next_ids"), *lg = vlm_get(ref, "next_logits");
    int32_t nv = md_model_n_vocab(model);
    if (!rc && ids && lg && lg->count == ids->count * (size_t)nv) {
        CHECKF((uint32_t)pr.n == ids->count, "prompt has %d tokens, HF %u", pr.n, (unsigned)ids->count);
        int bad = 0;
        for (int32_t i = 0; i < pr.n && (uint32_t)i < ids->count; i++)
            bad += (((const int32_t *)ids->data)[i] == 3 ? MD_TOKEN_EMBD
                                                         : ((const int32_t *)ids->data)[i]) != pr.tokens[i];
        CHECKF(bad == 0, "%d token ids differ from HF's", bad);
        struct md_context_params cp = md_context_default_params();
        cp.n_threads = 1;
        struct md_context *ctx = NULL;
        if (md_context_new(model, &cp, &ctx, err, sizeof err) == MD_OK) {
            pr.batch.all_logits = true;
            CHECK(md_decode_batch(ctx, &pr.batch) == MD_OK);
            double worst = 0;
            for (int32_t i = 0; i < pr.n && (uint32_t)i < ids->count; i++) {
                const float *l = md_get_logits(ctx, i);
                double e = l ? vlm_rel_err(l, (const float *)lg->data + (size_t)i * nv, (size_t)nv) : 1;
                worst = e > worst ? e : worst;
            }
            printf("LM logits (%d positions): worst rel err %.3g\n", pr.n, worst);
            CHECKF(worst < md_test_tol(1e-3, 1e-2), "logits: %g", worst);
            md_context_free(ctx);
        }
    } else {
        CHECK(rc != MD_OK || 0);
    }
    if (!rc)
        md_vision_prompt_free(&pr);
    md_model_free(model);
}

int main(void)
{
    char path[512], err[256] = "";
    struct vlm_ref ref;
    if (vlm_ref_load(md_test_data(DIR "tiny-llava.ref.bin", path, sizeof path), &ref) ||
        !vlm_get(&ref, "next_packed"))
        SKIP("%s missing or without LLaVA-NeXT arrays (run models/make_test_vlm.py)", path);
    int32_t w = 0, h = 0;
    uint8_t *img = vlm_read_ppm(md_test_data(DIR "test-image.ppm", path, sizeof path), &w, &h);
    struct md_vision_params vp = md_vision_default_params();
    vp.backend = md_test_backend();
    vp.n_threads = 2;
    struct md_vision *v = NULL;
    int rc = md_vision_load(md_test_data(DIR "tiny-llava-next-mmproj-f32.gguf", path, sizeof path),
                            &vp, &v, err, sizeof err);
    CHECKF(rc == MD_OK, "load: %s", err);
    const struct vlm_array *hp = vlm_get(&ref, "next_packed");
    if (v && img && hp) {
        int32_t nt = md_vision_image_tokens(v, w, h), n = 0, E = md_vision_n_embd(v);
        printf("%s\nimage tokens: %d (HF %u)\n", md_vision_desc(v), nt, (unsigned)hp->dims[0]);
        CHECK(nt == (int32_t)hp->dims[0]);
        check_pixels(v, &ref, img, w, h);
        float *out = malloc(sizeof(float) * (size_t)(nt > 0 ? nt : 1) * E);
        CHECK(md_vision_encode_image(v, img, w, h, w * 3, out, nt - 1, &n) == MD_ERR_INVALID);
        CHECK(md_vision_encode_image(v, img, w, h, w * 3, out, nt, &n) == MD_OK && n == nt);
        if (n == nt && hp->count == (size_t)nt * E) {
            double e = vlm_rel_err(out, hp->data, hp->count);
            printf("packed features: rel err %.3g\n", e);
            CHECKF(e < md_test_tol(1e-4, 2e-3), "packed features: %g", e);
            check_llm(v, &ref, out, n);
        }
        /* other frame shapes plan and encode without fault */
        static const int32_t sizes[][2] = { { 1, 1 }, { 200, 7 }, { 7, 200 }, { 112, 112 } };
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            int32_t sw = sizes[i][0], sh = sizes[i][1], k = md_vision_image_tokens(v, sw, sh);
            uint8_t *im = calloc((size_t)sw * sh, 3);
            float *o = malloc(sizeof(float) * (size_t)(k > 0 ? k : 1) * E);
            CHECKF(k > 0 && md_vision_encode_image(v, im, sw, sh, sw * 3, o, k, &n) == MD_OK && n == k,
                   "frame %dx%d", sw, sh);
            free(im);
            free(o);
        }
        free(out);
    }
    md_vision_free(v);
    free(img);
    vlm_ref_free(&ref);
    return md_test_finish("vision_hf_llava_next");
}
