/* Video frames through the vision API (md_vision_encode_frames) and the
 * multi-block prompt (md_vision_prompt_build_multi), on the tiny LLaVA
 * fixtures of models/make_test_vlm.py:
 *   - N frames give exactly N x md_vision_frame_tokens rows, in order, equal
 *     to encoding each frame alone (batches of 8 cross a boundary at N = 10);
 *   - the N-frame prompt has N blocks of that many MD_TOKEN_EMBD rows, and
 *     its ids are HF's LlavaProcessor ids for "USER: <image>\n" x 3 (recorded
 *     once with transformers 5.23 on the fixture's tokenizer, see below),
 *     also with the LMs whose "<image>" is a normal token or absent;
 *   - the prompt prefills the LM; bad arguments are refused.
 *   - LLaVA-NeXT files: frames take the base image only (n_patches rows). */
#include <stdint.h>

#include "md_test.h"
#include "mustdrop-vision.h"

#define DIR "../models/fixtures/vision/"

/* HF LlavaProcessor(do_pad=True) input_ids of
 * VICUNA_SYSTEM + " USER: <image>\n<image>\n<image>\nWhat happens? ASSISTANT:"
 * with three 33x27 images (16 rows each), tokenizer from make_test_vlm.py's
 * make_tokenizer; 3 = <image>. */
static const int32_t hf_ids_3[] = {
    1, 365, 464, 307, 296, 576, 267, 268, 579, 277, 431, 283, 575, 321, 423, 737, 739, 754, 739,
    747, 739, 349, 426, 737, 346, 739, 748, 269, 330, 411, 741, 739, 292, 387, 755, 355, 743,
    733, 411, 741, 739, 292, 387, 599, 741, 472, 754, 746, 740, 759, 289, 733, 737, 735, 491,
    759, 575, 323, 734, 740, 646, 321, 497, 741, 424, 325, 277, 431, 283, 799, 741, 379, 733,
    292, 739, 279, 741, 755, 507, 762, 788, 786, 62, 732,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 14,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 14,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 14,
    766, 743, 307, 345, 334, 269, 741, 761, 365, 762, 762, 789, 762, 765, 767, 790, 765, 62,
};

#define NF 10
#define FW 33
#define FH 27

static void fill(uint8_t *rgb, int i, int w, int h, int stride)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = rgb + (size_t)y * stride + 3 * x;
            p[0] = (uint8_t)(x * 7 + i * 20);
            p[1] = (uint8_t)(y * 9 + i * 3);
            p[2] = (uint8_t)((x ^ y) * 5 + i * 11);
        }
}

static struct md_vision *load_vis(const char *name)
{
    char path[512], err[256] = "";
    md_test_data(name, path, sizeof path);
    struct md_vision_params vp = md_vision_default_params();
    vp.backend = md_test_backend();
    vp.n_threads = 1;
    struct md_vision *vis = NULL;
    int rc = md_vision_load(path, &vp, &vis, err, sizeof err);
    CHECKF(rc == MD_OK, "%s: %s", path, err);
    return vis;
}

static void check_encode(struct md_vision *vis, uint8_t *bufs[NF], struct md_frame fr[NF],
                         float **embd_out)
{
    int32_t per = md_vision_frame_tokens(vis), E = md_vision_n_embd(vis), n = -1;
    float *embd = malloc(sizeof(float) * (size_t)NF * per * E);
    float *one = malloc(sizeof(float) * (size_t)per * E);
    *embd_out = embd;
    CHECK(md_vision_encode_frames(vis, fr, NF, embd, NF * per, &n) == MD_OK);
    CHECKF(n == NF * per, "%d rows for %d frames of %d", n, NF, per);
    double worst = 0;
    for (int i = 0; i < NF; i++) {
        int32_t got = 0;
        CHECK(md_vision_encode_frames(vis, &fr[i], 1, one, per, &got) == MD_OK && got == per);
        for (size_t k = 0; k < (size_t)per * E; k++) {
            double e = fabs((double)one[k] - embd[(size_t)i * per * E + k]);
            worst = e > worst ? e : worst;
        }
    }
    printf("frames: %d x %d rows; batched vs one at a time: max diff %.3g\n", NF, per, worst);
    /* CUDA: a batch and a single frame go through different cuBLAS kernels
     * on F16-rounded activations; 1.8e-3 measured on an H100 (2026-11-22) */
    CHECK(worst < md_test_tol(1e-4, 1e-2));
    /* refused: too little room, no frames, a bad stride or a NULL image */
    CHECK(md_vision_encode_frames(vis, fr, NF, embd, NF * per - 1, &n) == MD_ERR_INVALID);
    CHECK(md_vision_encode_frames(vis, fr, 0, embd, NF * per, &n) == MD_ERR_INVALID);
    struct md_frame bad = fr[0];
    bad.stride = 3 * bad.width - 1;
    CHECK(md_vision_encode_frames(vis, &bad, 1, embd, per, &n) == MD_ERR_INVALID);
    bad = fr[0];
    bad.rgb = NULL;
    CHECK(md_vision_encode_frames(vis, &bad, 1, embd, per, &n) == MD_ERR_INVALID);
    bad = fr[0];
    bad.height = 0;
    CHECK(md_vision_encode_frames(vis, &bad, 1, embd, per, &n) == MD_ERR_INVALID);
    free(one);
    (void)bufs;
}

/* llm: the tiny LM with "<image>" as a control token, or one of
 * make_marker_vocab.py's (a normal token, none): the same ids either way. */
static void check_prompt(struct md_vision *vis, const float *embd, const char *llm)
{
    char path[512], err[256] = "";
    struct md_model_params mp = md_model_default_params();
    mp.backend = md_test_backend();
    mp.n_threads = 1;
    struct md_model *model = NULL;
    md_test_data(llm, path, sizeof path);
    if (md_model_load(path, &mp, &model, err, sizeof err) != MD_OK) {
        CHECKF(0, "LLM load: %s", err);
        return;
    }
    int32_t per = md_vision_frame_tokens(vis), E = md_vision_n_embd(vis), rows[NF];
    for (int i = 0; i < NF; i++)
        rows[i] = per;
    for (int nf = 1; nf <= NF; nf += 3) {
        struct md_vision_prompt pr;
        int rc = md_vision_prompt_build_multi(model, "vicuna", NULL, "What happens?", embd, rows, NULL,
                                              nf, E, &pr, err, sizeof err);
        CHECKF(rc == MD_OK, "%s: prompt %d frames: %s", llm, nf, err);
        if (rc)
            continue;
        int32_t n_embd_rows = 0, n_blocks = 0;
        for (int32_t i = 0; i < pr.n; i++) {
            n_embd_rows += pr.tokens[i] == MD_TOKEN_EMBD;
            n_blocks += pr.tokens[i] == MD_TOKEN_EMBD && (i == 0 || pr.tokens[i - 1] != MD_TOKEN_EMBD);
        }
        CHECKF(n_embd_rows == nf * per && pr.n_image == nf * per && n_blocks == nf,
               "%d frames: %d embedding rows in %d blocks, want %d x %d", nf, n_embd_rows,
               n_blocks, nf, per);
        CHECK(memcmp(pr.embd, embd, sizeof(float) * (size_t)nf * per * E) == 0);
        if (nf == 4) {   /* prefill runs */
            struct md_context_params cp = md_context_default_params();
            cp.n_threads = 1;
            struct md_context *ctx = NULL;
            if (md_context_new(model, &cp, &ctx, err, sizeof err) == MD_OK) {
                CHECK(md_decode_batch(ctx, &pr.batch) == MD_OK);
                CHECK(md_context_n_past(ctx) == pr.n);
                md_context_free(ctx);
            } else {
                CHECKF(0, "context: %s", err);
            }
        }
        md_vision_prompt_free(&pr);
    }
    /* three frames: HF's ids exactly */
    struct md_vision_prompt pr;
    int rc = md_vision_prompt_build_multi(model, "vicuna", NULL, "What happens?", embd, rows, NULL, 3,
                                          E, &pr, err, sizeof err);
    size_t n_hf = sizeof hf_ids_3 / sizeof hf_ids_3[0];
    CHECKF(rc == MD_OK && (size_t)pr.n == n_hf, "%s: 3-frame prompt: %d ids, HF %zu", llm, pr.n,
           n_hf);
    int bad = 0;
    for (size_t i = 0; !rc && i < n_hf && i < (size_t)pr.n; i++)
        bad += (hf_ids_3[i] == 3 ? MD_TOKEN_EMBD : hf_ids_3[i]) != pr.tokens[i];
    CHECKF(bad == 0, "%s: %d ids differ from HF's", llm, bad);
    if (!rc)
        md_vision_prompt_free(&pr);
    /* one block through both entry points: the same prompt */
    struct md_vision_prompt a, b;
    CHECK(md_vision_prompt_build(model, "vicuna", NULL, "q", embd, per, E, &a, err, sizeof err) == MD_OK);
    CHECK(md_vision_prompt_build_multi(model, "vicuna", NULL, "q", embd, &per, NULL, 1, E, &b, err,
                                       sizeof err) == MD_OK);
    CHECK(a.n == b.n && a.n > 0 && !memcmp(a.tokens, b.tokens, sizeof(int32_t) * (size_t)a.n));
    md_vision_prompt_free(&a);
    md_vision_prompt_free(&b);
    /* refused: no blocks, an empty block */
    int32_t zero[2] = { per, 0 };
    CHECK(md_vision_prompt_build_multi(model, NULL, NULL, "q", embd, rows, NULL, 0, E, &a, err, sizeof err) == MD_ERR_INVALID);
    CHECK(md_vision_prompt_build_multi(model, NULL, NULL, "q", embd, zero, NULL, 2, E, &a, err, sizeof err) == MD_ERR_INVALID);
    CHECK(a.tokens == NULL && a.n == 0);
    /* a marker typed in the question is text: still exactly the blocks given */
    CHECK(md_vision_prompt_build_multi(model, NULL, NULL, "<image> q", embd, rows, NULL, 2, E, &a, err, sizeof err) == MD_OK);
    CHECK(a.n_image == 2 * per);
    md_vision_prompt_free(&a);
    md_model_free(model);
}

int main(void)
{
    uint8_t *bufs[NF];
    struct md_frame fr[NF];
    for (int i = 0; i < NF; i++) {
        int w = FW + (i % 3), h = FH + (i % 2) * 5, stride = 3 * w + (i % 4);
        bufs[i] = malloc((size_t)stride * h);
        fill(bufs[i], i, w, h, stride);
        fr[i] = (struct md_frame){ bufs[i], w, h, stride, (int64_t)i * 40000000 };
    }
    struct md_vision *vis = load_vis(DIR "tiny-llava-mmproj-f32.gguf");
    if (vis) {
        float *embd = NULL;
        CHECK(md_vision_frame_tokens(vis) == 16);
        check_encode(vis, bufs, fr, &embd);
        check_prompt(vis, embd, DIR "tiny-llava-llm-f32.gguf");
        check_prompt(vis, embd, DIR "tiny-llava-llm-normal-image-q8_0.gguf");
        check_prompt(vis, embd, DIR "tiny-llava-llm-no-image-q8_0.gguf");
        free(embd);
        md_vision_free(vis);
    }
    struct md_vision *next = load_vis(DIR "tiny-llava-next-mmproj-f32.gguf");
    if (next) {
        float *embd = NULL;
        CHECK(md_vision_frame_tokens(next) == 16);
        check_encode(next, bufs, fr, &embd);
        free(embd);
        md_vision_free(next);
    }
    for (int i = 0; i < NF; i++)
        free(bufs[i]);
    return md_test_finish("vision_frames");
}
