/* The tiny LLaVA fixtures (models/fixtures/vision/) loaded for the
 * reduction tests; skips cleanly when they are absent. */
#ifndef RED_FIXTURE_H
#define RED_FIXTURE_H

#include "md_test.h"
#include "mustdrop-reduce.h"
#include "../vision/vlm_ref.h"

#define RED_DIR "../models/fixtures/vision/"
#define RED_QUESTION "What is in the garden?"

struct red_fix {
    struct md_model *model;
    struct md_vision *vis;
    uint8_t *img;
    int32_t w, h;
};

static inline void red_fix_load(struct red_fix *f, const char *mmproj)
{
    char path[512], err[256] = "";
    memset(f, 0, sizeof *f);
    f->img = vlm_read_ppm(md_test_data(RED_DIR "test-image.ppm", path, sizeof path), &f->w, &f->h);
    if (!f->img)
        SKIP("%s missing (run models/make_test_vlm.py)", path);
    struct md_model_params mp = md_model_default_params();
    if (md_model_load(md_test_data(RED_DIR "tiny-llava-llm-f32.gguf", path, sizeof path), &mp,
                      &f->model, err, sizeof err))
        SKIP("LLM fixture: %s", err);
    struct md_vision_params vp = md_vision_default_params();
    vp.n_threads = 1;
    char name[128];
    snprintf(name, sizeof name, RED_DIR "%s", mmproj);
    if (md_vision_load(md_test_data(name, path, sizeof path), &vp, &f->vis, err, sizeof err))
        SKIP("mmproj fixture: %s", err);
}

static inline void red_fix_free(struct red_fix *f)
{
    md_vision_free(f->vis);
    md_model_free(f->model);
    free(f->img);
}

static inline struct md_context *red_ctx(struct red_fix *f)
{
    struct md_context_params cp = md_context_default_params();
    cp.n_threads = 1;
    cp.n_ctx = 1024;
    struct md_context *ctx = NULL;
    char err[256];
    if (md_context_new(f->model, &cp, &ctx, err, sizeof err))
        fprintf(stderr, "context: %s\n", err);
    return ctx;
}

static inline int32_t red_argmax(const float *l, int32_t n)
{
    int32_t b = 0;
    for (int32_t i = 1; i < n; i++)
        if (l[i] > l[b])
            b = i;
    return b;
}

#endif
