/* libmustdrop vision: the image side of a LLaVA-style model.
 *
 * Loads a llama.cpp "mmproj" GGUF (CLIP or SigLIP vision tower + projector),
 * preprocesses RGB frames the way the reference (HF) processors do, runs the
 * vision tower and the projector, and builds a prompt batch that mixes text
 * tokens with the resulting embedding rows. Typical use:
 *
 *     struct md_vision_params vp = md_vision_default_params();
 *     struct md_vision *vis;
 *     if (md_vision_load("mmproj-model-f16.gguf", &vp, &vis, err, sizeof err) != MD_OK)
 *         die(err);
 *     int32_t n = md_vision_image_tokens(vis, w, h);
 *     float *embd = malloc(sizeof(float) * n * md_vision_n_embd(vis));
 *     md_vision_encode_image(vis, rgb, w, h, stride, embd, n, &n);
 *
 *     struct md_vision_prompt pr;
 *     md_vision_prompt_build(model, NULL, NULL, "What is shown?", embd, n,
 *                            md_vision_n_embd(vis), &pr, err, sizeof err);
 *     md_decode_batch(ctx, &pr.batch);       // prefill: text + image rows
 *     md_vision_prompt_free(&pr);
 *
 * Threading: an md_vision holds its weights and a backend instance with
 * work buffers; use one md_vision from one thread at a time.
 * Errors: like mustdrop.h, MD_OK or a negative enum md_status, and a message
 * naming the key, tensor or shape at fault in err.
 * See docs/vision.md for the numerics and the llama.cpp/HF differences.
 */
#ifndef MUSTDROP_VISION_H
#define MUSTDROP_VISION_H

#include "mustdrop.h"

#ifdef __cplusplus
extern "C" {
#endif

struct md_vision;

/* How a frame of any aspect ratio becomes the square the tower takes. */
enum md_vision_fit {
    /* LLaVA-1.5 as trained (expand2square): pad to a square with the mean
     * colour (int(255*mean) per channel), then resize. Default. */
    MD_VISION_FIT_PAD = 0,
    /* llava-hf's processor default: resize the shortest side to the tower's
     * size, then centre-crop. */
    MD_VISION_FIT_CROP = 1,
    /* Resize to the square, ignoring the aspect ratio. */
    MD_VISION_FIT_STRETCH = 2,
};

enum md_vision_resample {
    MD_VISION_BICUBIC = 0,    /* PIL's BICUBIC (what HF uses); default */
    MD_VISION_BILINEAR = 1,   /* PIL's BILINEAR */
};

struct md_vision_params {
    int32_t n_threads;            /* CPU threads; 0 = online CPUs */
    const char *backend;          /* NULL / "cpu" (default), "cuda" where built */
    int32_t device;               /* GPU index */
    enum md_vision_fit fit;
    enum md_vision_resample resample;
    /* false (default): run all clip.vision.block_count stored layers, which
     * gives HF's hidden_states[vision_feature_layer] for files from the
     * legacy converter (it already dropped the unused last layer).
     * true: run one layer fewer, as llama.cpp does (docs/llama-cpp.md §6). */
    bool llamacpp_layers;
    /* Checked between the tower's layers: an encode returns MD_ERR_ABORTED
     * (a long frame batch stops within one layer). NULL: none. */
    md_abort_callback abort_callback;
    void *abort_callback_user;
};

struct md_vision_params md_vision_default_params(void);

/* Load an mmproj GGUF. Every key and tensor shape is checked; on failure
 * *out is NULL and err names what is wrong, with the statuses and message
 * layout of md_model_load ("Load errors" in mustdrop.h). */
int md_vision_load(const char *path, const struct md_vision_params *params,
                   struct md_vision **out, char *err, size_t errlen);
/* Same from a caller's buffer that must outlive the md_vision. */
int md_vision_load_memory(const void *data, size_t size, const struct md_vision_params *params,
                          struct md_vision **out, char *err, size_t errlen);
void md_vision_free(struct md_vision *v);

/* Width of an output embedding row (= the LLM's n_embd). */
int32_t md_vision_n_embd(const struct md_vision *v);
int32_t md_vision_image_size(const struct md_vision *v);   /* square input side, pixels */
int32_t md_vision_patch_size(const struct md_vision *v);
int32_t md_vision_hidden(const struct md_vision *v);       /* tower width */
int32_t md_vision_n_head(const struct md_vision *v);
/* Layers stored in the file, and how many a forward runs. */
int32_t md_vision_n_layer(const struct md_vision *v);
int32_t md_vision_n_layer_run(const struct md_vision *v);
/* Tokens per tower input: patches (+1 with a class token). */
int32_t md_vision_n_pos(const struct md_vision *v);
bool md_vision_has_class_token(const struct md_vision *v);
/* One line: "clip 3 layers (runs 3), hidden 64, 16 heads, 56px/14, mlp -> 64". */
const char *md_vision_desc(const struct md_vision *v);

/* Embedding rows md_vision_encode_image gives for a w x h frame; < 0 on a
 * bad size. LLaVA-1.5: the patches (576 for CLIP-L/336). LLaVA-NeXT (the
 * file has clip.vision.image_grid_pinpoints): HF's AnyRes count, base
 * patches + unpadded grid rows x (cols + 1 newline). */
int32_t md_vision_image_tokens(const struct md_vision *v, int32_t w, int32_t h);

/* Preprocess one RGB8 frame (rows of `stride` bytes, 3 bytes a pixel) into
 * pixels[3][S][S], S = md_vision_image_size: fit, resample, rescale and
 * normalize with the file's mean/std. */
int md_vision_preprocess(const struct md_vision *v, const uint8_t *rgb, int32_t w, int32_t h,
                         int32_t stride, float *pixels);

/* Encode one RGB8 frame into rows [n_tokens][md_vision_n_embd] of out
 * (room for max_tokens rows). LLaVA-NeXT files: AnyRes as HF does it (best
 * pinpoint, resize + black pad, tiles after the stretched base image, then
 * unpad and image_newline per row); md_vision_params.fit is not used. */
int md_vision_encode_image(struct md_vision *v, const uint8_t *rgb, int32_t w, int32_t h,
                           int32_t stride, float *out, int32_t max_tokens, int32_t *n_tokens);

/* Encode n_img already preprocessed inputs pixels[n_img][3][S][S] in one
 * batch: tower, then projector, class tokens dropped; out gets
 * n_img * (patches) rows. */
int md_vision_encode_pixels(struct md_vision *v, const float *pixels, int32_t n_img,
                            float *out, int32_t max_tokens, int32_t *n_tokens);

/* -------------------------------------------------------------------------
 * Frames: still images and video frames handed over by the caller (the
 * CLI decodes them with FFmpeg, the GStreamer element maps its buffers).
 *
 *     struct md_frame fr[8];                // rgb, size, stride, pts_ns each
 *     int32_t per = md_vision_frame_tokens(vis);
 *     float *embd = malloc(sizeof(float) * 8 * per * md_vision_n_embd(vis));
 *     int32_t n;
 *     md_vision_encode_frames(vis, fr, 8, embd, 8 * per, &n);   // n == 8 * per
 *     int32_t rows[8] = { per, per, ... };  // one prompt block per frame
 *     md_vision_prompt_build_multi(model, NULL, NULL, "What happens?", embd,
 *                                  rows, 8, md_vision_n_embd(vis), &pr, err, sizeof err);
 * ------------------------------------------------------------------------- */

struct md_frame {
    const uint8_t *rgb;     /* RGB8, 3 bytes a pixel */
    int32_t width, height;
    int32_t stride;         /* bytes per row, >= 3 * width */
    int64_t pts_ns;         /* presentation time in ns (-1: unknown / still image) */
};

/* Embedding rows md_vision_encode_frames gives per video frame, whatever
 * its size: LLaVA-1.5 the patches; LLaVA-NeXT files the base image only
 * (the frame stretched to the tower's square, no tiles, no newline);
 * LLaVA-OneVision the patches pooled 2x2 bilinearly as HF does
 * (27x27 -> 14x14 = 196). */
int32_t md_vision_frame_tokens(const struct md_vision *v);

/* Encode n frames (in batches through the tower) into
 * out[n * md_vision_frame_tokens][n_embd], frame after frame. LLaVA-1.5
 * files preprocess each frame with md_vision_params.fit, the others stretch
 * it to the tower's square (HF's video processors). */
int md_vision_encode_frames(struct md_vision *v, const struct md_frame *frames, int32_t n,
                            float *out, int32_t max_tokens, int32_t *n_tokens);

/* How a video goes into a prompt. true (LLaVA-OneVision): one "<video>"
 * block of md_vision_video_tokens rows (the frames' rows, then one
 * image_newline), from md_vision_encode_video. false (LLaVA-1.5/NeXT, which
 * have no video format of their own): one "<image>" block per frame. */
bool md_vision_video_is_block(const struct md_vision *v);
int32_t md_vision_video_tokens(const struct md_vision *v, int32_t n_frames);
/* The whole video block: md_vision_encode_frames, plus the trailing
 * image_newline for OneVision. */
int md_vision_encode_video(struct md_vision *v, const struct md_frame *frames, int32_t n,
                           float *out, int32_t max_tokens, int32_t *n_tokens);

/* -------------------------------------------------------------------------
 * Step-by-step tower run, for token reduction (docs/reduction-methods.md
 * §1.1-1.2, §2): hidden states after any layer, the class token's attention
 * row at any layer, continuing on a shortened token set.
 *
 *     struct md_vision_run *r;
 *     md_vision_run_begin(v, pixels, n_img, &r);   // embeddings, pre-LN
 *     md_vision_run_layers(r, 0, 1);               // layer 0
 *     md_vision_run_hidden(r, buf);                // [n_img][n_tok][hidden]
 *     md_vision_run_keep(r, idx, n_keep);          // shorten every image
 *     md_vision_run_cls_attention(r, 22, probs);   // layer 22's CLS row
 *     md_vision_run_layers(r, 1, md_vision_n_layer_run(v));
 *     md_vision_run_project(r, true, out, max, &n);
 *     md_vision_run_end(r);
 * ------------------------------------------------------------------------- */

struct md_vision_run;

int md_vision_run_begin(struct md_vision *v, const float *pixels, int32_t n_img,
                        struct md_vision_run **out);
void md_vision_run_end(struct md_vision_run *r);
int32_t md_vision_run_n_img(const struct md_vision_run *r);
/* Tokens per image now (patches + class token, fewer after a keep). */
int32_t md_vision_run_n_tok(const struct md_vision_run *r);
/* Run layers [il0, il1) (il1 <= md_vision_n_layer) on the current tokens. */
int md_vision_run_layers(struct md_vision_run *r, int32_t il0, int32_t il1);
/* Copy the hidden states [n_img][n_tok][hidden] to host memory. */
int md_vision_run_hidden(struct md_vision_run *r, float *out);
/* Attention probabilities of query token `row` (0 = class token) in layer
 * il, computed from the current hidden states as that layer's input:
 * out[n_img][n_head][n_tok] = softmax_j(q_row . k_j / sqrt(head_dim)) per
 * head. One query row: nothing n_tok x n_tok is formed. */
int md_vision_run_attention_row(struct md_vision_run *r, int32_t il, int32_t row, float *out);
/* Keep tokens idx[i][0..n_keep) of every image i (idx[n_img][n_keep],
 * strictly increasing per image, indices into the current tokens). */
int md_vision_run_keep(struct md_vision_run *r, const int32_t *idx, int32_t n_keep);
/* Replace the hidden states of every image with in[n_img][n_tok][hidden]
 * (host rows, n_tok <= md_vision_n_pos): how token merging (MustDrop's
 * local spatial merge) hands averaged tokens back to the tower. */
int md_vision_run_set_hidden(struct md_vision_run *r, const float *in, int32_t n_tok);
/* Project the current hidden states (post-LN first where the tower has
 * one and the model uses it) to LLM embedding rows; drop_cls removes
 * token 0 of each image when the tower has a class token. */
int md_vision_run_project(struct md_vision_run *r, bool drop_cls, float *out,
                          int32_t max_tokens, int32_t *n_tokens);

/* -------------------------------------------------------------------------
 * Prompt building
 * ------------------------------------------------------------------------- */

/* A prefill batch: text ids with MD_TOKEN_EMBD where image rows go. */
struct md_vision_prompt {
    int32_t *tokens;        /* [n] */
    float *embd;            /* [n_image][n_embd], a copy */
    int32_t n;
    int32_t n_image;        /* image rows in the batch */
    int32_t image_pos;      /* index of the first image row */
    struct md_batch batch;  /* points at the arrays above */
};

/* Render one user turn "<image>\n{question}" with the model's chat template
 * (tmpl/system as md_chat_format: NULL = detect / default system; LLaVA-1.5
 * gives Vicuna v1: "{system} USER: <image>\n{question} ASSISTANT:"), tokenize
 * it (BOS from the tokenizer) and put the n_image embedding rows where
 * <image> stands. The rendered prompt is cut at the marker and the pieces
 * tokenized apart, whatever type the vocabulary gives an "<image>" token
 * (control, normal or none: docs/vision.md); "<image>" typed in the question
 * or the system text is plain text, never a marker. */
int md_vision_prompt_build(const struct md_model *model, const char *tmpl, const char *system,
                           const char *question, const float *embd, int32_t n_image,
                           int32_t n_embd, struct md_vision_prompt *out, char *err, size_t errlen);
enum md_vision_block {
    MD_VISION_BLOCK_IMAGE = 0,   /* "<image>" */
    MD_VISION_BLOCK_VIDEO = 1,   /* "<video>" (OneVision) */
};

/* Several images / video frames / videos in one user turn, HF's
 * multi-image format: "<image>\n" (or "<video>\n") once per block, in
 * order, then the question (LLaVA-1.5: "USER: <image>\n<image>\n{question}
 * ASSISTANT:"). embd holds the blocks' rows one after another, n_rows[i]
 * rows for block i; kinds[i] its kind (kinds NULL: all images). A marker
 * that is a vocab token is tokenized with the text and replaced; otherwise
 * the text is tokenized piece by piece around it. image_pos in the result
 * is the first block's first row. */
int md_vision_prompt_build_multi(const struct md_model *model, const char *tmpl,
                                 const char *system, const char *question, const float *embd,
                                 const int32_t *n_rows, const enum md_vision_block *kinds,
                                 int32_t n_blocks, int32_t n_embd,
                                 struct md_vision_prompt *out, char *err, size_t errlen);
void md_vision_prompt_free(struct md_vision_prompt *p);

#ifdef __cplusplus
}
#endif

#endif
