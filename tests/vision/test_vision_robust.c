/* Bad input never crashes the vision side:
 *   - hostile mmproj files: truncations, a renamed tensor, a wrong shape,
 *     random byte flips (each load either fails with a message or gives a
 *     model that encodes without faulting);
 *   - images of zero / odd / extreme sizes and strides, NULL pointers;
 *   - md_image_resize gives PIL's exact bytes (fixtures from
 *     models/make_test_vlm.py), bicubic and bilinear, down/up/one axis. */
#include <stdint.h>

#include "md_test.h"
#include "mustdrop-vision.h"
#include "vision-impl.h"
#include "vlm_ref.h"

#define DIR "../models/fixtures/vision/"

/* Load from memory; on success also encode one grey image. */
static int try_load(const uint8_t *buf, size_t n, char *err, size_t errlen)
{
    struct md_vision_params vp = md_vision_default_params();
    vp.n_threads = 1;
    struct md_vision *v = NULL;
    err[0] = 0;
    int rc = md_vision_load_memory(buf, n, &vp, &v, err, errlen);
    if (rc) {
        CHECKF(v == NULL && err[0], "failed load (%d) must leave NULL and a message", rc);
        return rc;
    }
    int32_t nt = md_vision_image_tokens(v, 8, 8), got = 0;
    uint8_t img[8 * 8 * 3];
    memset(img, 128, sizeof img);
    if (nt > 0 && nt < 100000) {
        float *out = malloc(sizeof(float) * (size_t)nt * (size_t)md_vision_n_embd(v));
        if (out)
            md_vision_encode_image(v, img, 8, 8, 24, out, nt, &got);
        free(out);
    }
    md_vision_free(v);
    return rc;
}

/* Replace the first occurrence of `from` (same length) in a copy. */
static uint8_t *patched(const uint8_t *buf, size_t n, const char *from, const char *to)
{
    size_t l = strlen(from);
    uint8_t *c = malloc(n);
    memcpy(c, buf, n);
    for (size_t i = 0; i + l <= n; i++)
        if (!memcmp(c + i, from, l)) {
            memcpy(c + i, to, l);
            return c;
        }
    free(c);
    return NULL;
}

static void check_hostile_files(const uint8_t *buf, size_t n)
{
    char err[256];
    CHECK(try_load(buf, n, err, sizeof err) == MD_OK);
    for (size_t cut = 0; cut < n; cut += cut < 4096 ? 97 : 20011)
        CHECK(try_load(buf, cut, err, sizeof err) != MD_OK);

    uint8_t *c = patched(buf, n, "v.blk.1.attn_q.weight", "v.blk.1.attn_x.weight");
    CHECK(c && try_load(c, n, err, sizeof err) == MD_ERR_FORMAT && strstr(err, "attn_q"));
    printf("renamed tensor: %s\n", err);
    free(c);

    /* position_embd {64, 17} -> {64, 16}: the name is followed by n_dims
     * (u32) and ne[0], ne[1] (u64) */
    c = patched(buf, n, "v.position_embd.weight", "v.position_embd.weight");
    if (c) {
        uint8_t *p = NULL;
        for (size_t i = 0; i + 22 <= n; i++)
            if (!memcmp(c + i, "v.position_embd.weight", 22)) {
                p = c + i + 22 + 4 + 8;
                break;
            }
        CHECK(p && p[0] == 17);
        if (p)
            p[0] = 16;
        CHECK(try_load(c, n, err, sizeof err) == MD_ERR_FORMAT && strstr(err, "expected"));
        printf("wrong shape: %s\n", err);
        free(c);
    }

    c = patched(buf, n, "clip.vision.block_count", "clip.vision.block_cOunt");
    CHECK(c && try_load(c, n, err, sizeof err) == MD_ERR_FORMAT);
    free(c);

    /* random flips in the metadata region (first 8 KiB) */
    uint64_t s = 0x9e3779b97f4a7c15ull;
    c = malloc(n);
    int ok = 0;
    for (int it = 0; it < 300; it++) {
        memcpy(c, buf, n);
        for (int k = 0; k < 4; k++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            c[s % (n < 8192 ? n : 8192)] ^= (uint8_t)(1u << (s >> 60 & 7));
        }
        ok += try_load(c, n, err, sizeof err) == MD_OK;
    }
    printf("byte flips: %d of 300 still loaded\n", ok);
    free(c);
}

static void check_bad_images(struct md_vision *v)
{
    int32_t S = md_vision_image_size(v), n = 0, nt = md_vision_image_tokens(v, 5, 5);
    size_t ne = (size_t)nt * (size_t)md_vision_n_embd(v);
    float *pix = malloc(sizeof(float) * 3 * (size_t)S * S), *out = malloc(sizeof(float) * ne);
    uint8_t *img = calloc(1, 3 * 1001 * 3);
    CHECK(md_vision_preprocess(v, img, 0, 5, 15, pix) == MD_ERR_INVALID);
    CHECK(md_vision_preprocess(v, img, 5, 0, 15, pix) == MD_ERR_INVALID);
    CHECK(md_vision_preprocess(v, img, -3, 5, 15, pix) == MD_ERR_INVALID);
    CHECK(md_vision_preprocess(v, img, 5, 5, 14, pix) == MD_ERR_INVALID);    /* stride < 3w */
    CHECK(md_vision_preprocess(v, NULL, 5, 5, 15, pix) == MD_ERR_INVALID);
    CHECK(md_vision_preprocess(v, img, 5, 5, 15, NULL) == MD_ERR_INVALID);
    CHECK(md_vision_preprocess(NULL, img, 5, 5, 15, pix) == MD_ERR_INVALID);
    CHECK(md_vision_preprocess(v, img, 1, 1, 3, pix) == MD_OK);
    CHECK(md_vision_preprocess(v, img, 1000, 1, 3000, pix) == MD_OK);      /* extreme aspect */
    CHECK(md_vision_preprocess(v, img, 1, 1000, 3, pix) == MD_OK);
    CHECK(md_vision_preprocess(v, img, 3, 3, 11, pix) == MD_OK);          /* padded stride */
    CHECK(md_vision_image_tokens(v, 0, 3) < 0);
    CHECK(md_vision_encode_image(v, img, 5, 5, 15, out, nt - 1, &n) == MD_ERR_INVALID);
    CHECK(md_vision_encode_image(v, img, 5, 5, 15, out, nt, &n) == MD_OK && n == nt);
    CHECK(md_vision_encode_image(v, img, 5, 5, 15, NULL, nt, &n) == MD_ERR_INVALID);
    CHECK(md_vision_encode_pixels(v, pix, 0, out, nt, &n) == MD_ERR_INVALID);
    struct md_vision_run *r = NULL;
    CHECK(md_vision_run_begin(v, NULL, 1, &r) == MD_ERR_INVALID && r == NULL);
    CHECK(md_vision_run_begin(v, pix, 1, &r) == MD_OK);
    CHECK(md_vision_run_layers(r, 0, md_vision_n_layer(v) + 1) == MD_ERR_INVALID);
    CHECK(md_vision_run_layers(r, 1, 0) == MD_ERR_INVALID);
    CHECK(md_vision_run_attention_row(r, -1, 0, out) == MD_ERR_INVALID);
    CHECK(md_vision_run_attention_row(r, 0, md_vision_run_n_tok(r), out) == MD_ERR_INVALID);
    int32_t idx[2] = { 5, 99 };
    CHECK(md_vision_run_keep(r, idx, 2) == MD_ERR_INVALID);
    CHECK(md_vision_run_keep(r, idx, 0) == MD_ERR_INVALID);
    md_vision_run_end(r);
    struct md_vision_prompt pr;
    char err[128];
    CHECK(md_vision_prompt_build(NULL, NULL, NULL, "q", out, 1, 64, &pr, err, sizeof err) ==
          MD_ERR_INVALID);
    free(pix);
    free(out);
    free(img);
}

static void check_pil_resize(const struct vlm_ref *ref)
{
    const struct vlm_array *im = vlm_get(ref, "image");
    if (!im || im->ndim != 3) {
        CHECK(0);
        return;
    }
    int32_t h = (int32_t)im->dims[0], w = (int32_t)im->dims[1];
    int n_cases = 0;
    for (uint32_t i = 0; i < ref->n; i++) {
        const struct vlm_array *a = &ref->a[i];
        if (strncmp(a->name, "resize_", 7) || a->ndim != 3)
            continue;
        enum md_vision_resample f = strstr(a->name, "bilinear") ? MD_VISION_BILINEAR
                                                                : MD_VISION_BICUBIC;
        int32_t dh = (int32_t)a->dims[0], dw = (int32_t)a->dims[1];
        uint8_t *out = malloc((size_t)dw * dh * 3);
        CHECK(md_image_resize(im->data, w, h, w * 3, out, dw, dh, f) == MD_OK);
        size_t bad = 0;
        for (size_t k = 0; k < (size_t)dw * dh * 3; k++)
            bad += out[k] != ((const uint8_t *)a->data)[k];
        CHECKF(bad == 0, "%s: %zu bytes differ from PIL", a->name, bad);
        free(out);
        n_cases++;
    }
    printf("PIL resize: %d cases compared byte for byte\n", n_cases);
    CHECK(n_cases >= 10);
}

int main(void)
{
    char path[512], err[256] = "";
    struct md_vision *v = NULL;
    CHECK(md_vision_load("/nonexistent/mmproj.gguf", NULL, &v, err, sizeof err) == MD_ERR_IO);
    CHECK(v == NULL && err[0]);
    size_t n = 0;
    uint8_t *buf = vlm_read_file(md_test_data(DIR "tiny-llava-mmproj-f32.gguf", path, sizeof path), &n);
    if (!buf)
        SKIP("%s missing (run models/make_test_vlm.py)", path);
    check_hostile_files(buf, n);
    struct md_vision_params vp = md_vision_default_params();
    vp.n_threads = 1;
    CHECK(md_vision_load_memory(buf, n, &vp, &v, err, sizeof err) == MD_OK);
    if (v)
        check_bad_images(v);
    md_vision_free(v);
    struct vlm_ref ref;
    if (!vlm_ref_load(md_test_data(DIR "tiny-llava.ref.bin", path, sizeof path), &ref)) {
        check_pil_resize(&ref);
        vlm_ref_free(&ref);
    } else {
        CHECK(0);
    }
    free(buf);
    return md_test_finish("vision_robust");
}
