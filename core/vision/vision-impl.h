/* Internals of the vision side: the loaded mmproj (mmproj.c), the tower
 * forward (clip.c), preprocessing (preprocess.c), projector and prompt
 * (vision.c). */
#ifndef MD_VISION_IMPL_H
#define MD_VISION_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include "backend.h"
#include "gguf.h"
#include "mustdrop-vision.h"

#define MD_VISION_MAX_LAYERS 256
#define MD_VISION_MAX_PINPOINTS 64
#define MD_VISION_MAX_FEATURE_LAYERS 8

enum md_projector_type {
    MD_PROJ_MLP = 0,     /* mm.0 -> GELU -> mm.2 (LLaVA-1.5/1.6, OneVision) */
};

struct md_clip_hparams {
    int32_t image_size;
    int32_t patch_size;
    int32_t n_side;          /* patches per side: image_size / patch_size */
    int32_t n_patches;       /* n_side^2 */
    int32_t n_pos;           /* n_patches + has_class */
    int32_t hidden;
    int32_t n_ff;
    int32_t n_head;
    int32_t head_dim;
    int32_t n_layer;         /* clip.vision.block_count: stored layers */
    int32_t n_layer_run;     /* layers a forward runs */
    float eps;
    float mean[3], std[3];
    enum md_unary_op act;
    bool has_class, has_pre_ln, has_post_ln, has_patch_bias;
    bool ffn_swapped;        /* legacy converter: ffn_down holds fc1 */
    enum md_projector_type proj;
    int32_t n_mm;            /* projector hidden width (rows of mm.0) */
    int32_t n_embd_out;      /* projector output = LLM n_embd */
    bool spatial_unpad;      /* mm_patch_merge_type == "spatial_unpad" */
    int32_t n_pinpoints;     /* pairs (w, h) */
    int32_t pinpoints[2 * MD_VISION_MAX_PINPOINTS];
    int32_t n_feature_layers;
    int32_t feature_layers[MD_VISION_MAX_FEATURE_LAYERS];
    /* LLaVA-OneVision (clip.vision.llava_family = "onevision"): AnyRes with
     * the unpadded grid shrunk (bilinear) to at most anyres_max tiles' worth
     * of tokens, video frames pooled bilinearly by video_pool per side and
     * one image_newline after a video. */
    bool onevision;
    int32_t anyres_max;      /* HF vision_aspect_ratio "anyres_max_N" */
    int32_t video_pool;      /* 2: 27x27 -> 14x14 */
};

struct md_clip_layer {
    struct md_tensor ln1_w, ln1_b, ln2_w, ln2_b;
    struct md_tensor q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b;
    struct md_tensor up_w, up_b, down_w, down_b;   /* up: hidden -> n_ff */
};

struct md_vision {
    struct md_gguf *gguf;
    struct md_backend *be;
    struct md_vision_params params;
    struct md_clip_hparams hp;
    struct md_tensor patch_w;     /* viewed 2-D: {3*P*P, hidden}, rows c, ky, kx */
    struct md_tensor patch_b;     /* F32 [hidden] or absent */
    struct md_tensor class_embd;  /* F32 [1][hidden] or absent */
    struct md_tensor pos_embd;    /* F32 [n_pos][hidden] */
    struct md_tensor pre_ln_w, pre_ln_b, post_ln_w, post_ln_b;
    struct md_clip_layer *layers;
    struct md_tensor mm0_w, mm0_b, mm2_w, mm2_b;
    struct md_tensor newline;     /* F32 [n_embd_out] or absent */
    char desc[192];
};

/* mmproj.c */
int md_mmproj_load(struct md_vision *v, char *err, size_t errlen);
void md_mmproj_free_tensors(struct md_vision *v);

/* clip.c: the step-by-step run (struct md_vision_run is defined there). */

/* preprocess.c */
/* PIL-exact resize of an RGB8 image (ImagingResample, 8-bit fixed point,
 * horizontal pass then vertical). dst is dw*dh*3 bytes, tightly packed. */
int md_image_resize(const uint8_t *src, int32_t sw, int32_t sh, int32_t sstride,
                    uint8_t *dst, int32_t dw, int32_t dh, enum md_vision_resample filter);
/* (u8/255 - mean)/std of the size x size window at (x0, y0) of an RGB8
 * image into planar pixels[3][size][size]. */
void md_image_normalize(const uint8_t *img, int32_t size, int32_t stride, int32_t x0, int32_t y0,
                        const float mean[3], const float std[3], float *pixels);
/* Preprocess into pixels[3][size][size]. */
int md_image_preprocess(const uint8_t *rgb, int32_t w, int32_t h, int32_t stride,
                        int32_t size, enum md_vision_fit fit, enum md_vision_resample filter,
                        const float mean[3], const float std[3], float *pixels);

/* anyres.c: LLaVA-NeXT tiling, HF's way. */
struct md_anyres_plan {
    int32_t bw, bh;          /* best resolution */
    int32_t nx, ny;          /* tiles across, down */
    int32_t rw, rh, px, py;  /* the frame resized inside it, pasted at (px, py) */
    int32_t r0, r1, c0, c1;  /* token grid rows/cols kept by the unpad */
    int32_t oh, ow;          /* grid emitted: the unpadded one, or OneVision's shrunk one */
    bool interp;             /* OneVision: unpadded grid resized bilinearly to oh x ow */
    int32_t n_tiles;         /* 1 (base) + nx * ny */
    int32_t n_tokens;        /* rows the pack gives */
    bool newline;
};
int md_anyres_plan(const struct md_clip_hparams *hp, bool newline, int32_t w, int32_t h,
                   struct md_anyres_plan *p);
int md_anyres_pixels(const struct md_clip_hparams *hp, enum md_vision_resample filter,
                     const struct md_anyres_plan *p, const uint8_t *rgb, int32_t w, int32_t h,
                     int32_t stride, float *pixels);
int md_anyres_pack(const struct md_clip_hparams *hp, const struct md_anyres_plan *p,
                   const float *feat, const float *newline, float *out);
/* torch.nn.functional.interpolate(mode="bilinear", align_corners=False)
 * of a channel-last map src[sh][sw][E] to dst[dh][dw][E]. */
void md_bilinear_resize(const float *src, int32_t sh, int32_t sw, int32_t E, float *dst,
                        int32_t dh, int32_t dw);

#endif
