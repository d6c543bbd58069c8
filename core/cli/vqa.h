/* What `mustdrop` and `mustdrop-eval` share, so that both answer a question
 * about a video the same way: the default model, video frame sampling,
 * encoding the frames into prompt blocks, and greedy/sampled generation
 * (plain, or through a reduction session).
 *
 * Nothing here prints: errors come back in err. The video parts need
 * FFmpeg (media.c) and exist only when MD_HAVE_FFMPEG is defined. */
#ifndef MD_CLI_VQA_H
#define MD_CLI_VQA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mustdrop-reduce.h"
#include "mustdrop-vision.h"
#include "mustdrop.h"

#define VQA_DEFAULT_FRAMES 8
#define VQA_MAX_FPS_FRAMES 256

/* The default model pair (md_default_model_paths). On failure -1 and err
 * says which files were looked for and in which directories. */
int vqa_default_model(char *llm, size_t llm_len, char *mmproj, size_t mmproj_len, char *err,
                      size_t errlen);

/* A loader's message as the user sees it: err itself when it starts with
 * "<path>: " (every file defect does) or "--device " (a device that cannot
 * be used), else "<path>: <err>" in buf (a backend that fails while loading
 * does not name the file). */
const char *vqa_load_error(const char *path, const char *err, char *buf, size_t n);

/* Offset of the first byte of s that does not begin a valid UTF-8
 * character, or -1 when all of s is valid. */
long vqa_utf8_bad_offset(const char *s);

/* Tokens of text alone (no BOS, no special tokens); 0 without a tokenizer. */
int64_t vqa_count_tokens(const struct md_model *model, const char *text);

/* A question the model can be asked: not empty or blank, valid UTF-8, and
 * its tokens alone fewer than the n_ctx a context holds (n_ctx <= 0: not
 * checked). Returns 0, or -1 with err naming the cause: "the question is
 * empty", "the question is not valid UTF-8 (byte 0xff at offset 0)", "the
 * question is 20000 tokens and the context holds 2048". */
int vqa_check_question(const struct md_model *model, const char *q, int n_ctx, char *err,
                       size_t errlen);

/* Why a prompt of n_rows rows, n_image of them image rows, built around
 * question q, does not fit n_ctx: what takes the room, in err. */
void vqa_prompt_too_long(const struct md_model *model, const char *q, int64_t n_rows,
                         int64_t n_image, int n_ctx, char *err, size_t errlen);

/* Called with each generated token (its piece: md_token_to_piece). */
typedef void (*vqa_token_fn)(void *user, const struct md_vocab *vocab, int32_t token);

struct vqa_gen {
    struct md_sampler_params sampling;
    int n_predict;              /* -1: until end of text or a full context */
    vqa_token_fn on_token;      /* NULL: none */
    void *user;
};

/* Results of vqa_generate / vqa_reduce_generate. */
enum {
    VQA_GEN_OK = 0,
    VQA_GEN_CONTEXT_FULL = 1,   /* stopped early: the KV cache is full (tokens so far are kept) */
};

/* Prefill batch (text ids and MD_TOKEN_EMBD rows), then sample up to
 * n_predict tokens, stopping at end of generation. Returns VQA_GEN_OK,
 * VQA_GEN_CONTEXT_FULL, or -1 with err set ("prefill failed: ...",
 * "decode failed: ..."). */
int vqa_generate(struct md_context *ctx, const struct md_model *model, const struct vqa_gen *g,
                 const struct md_batch *batch, char *err, size_t errlen);

/* The same after md_reduce_prefill on a session (the session's logits and
 * md_reduce_decode; its KV policy applies). Returns VQA_GEN_OK or -1 with
 * err ("decode stopped: ..."; the tokens so far were handed over). */
int vqa_reduce_generate(struct md_reduce_session *s, const struct md_model *model,
                        const struct vqa_gen *g, int n_ctx, char *err, size_t errlen);

#ifdef MD_HAVE_FFMPEG
#include "media.h"

/* The frames `mustdrop --video FILE --frames N` (or --fps F) uses: n_frames
 * > 0 takes N frames spread uniformly; else fps > 0 one every 1/F s (at most
 * VQA_MAX_FPS_FRAMES); both 0: VQA_DEFAULT_FRAMES frames. */
int vqa_load_video(const char *path, int32_t n_frames, float fps, struct media_frames *v,
                   char *err, size_t errlen);

/* Encoded visual prompt blocks, in order (images, then video frames). */
struct vqa_input {
    float *embd;                   /* [n_total][n_embd] */
    int32_t *rows;                 /* [n_blocks] */
    enum md_vision_block *kinds;   /* [n_blocks] */
    int32_t n_blocks;
    int64_t n_total;
};

void vqa_input_free(struct vqa_input *in);
/* Encode one still image as one <image> block. */
int vqa_encode_image(struct md_vision *vis, const struct media_frame *f, struct vqa_input *in,
                     char *err, size_t errlen);
/* Encode the sampled frames of a video: one <image> block per frame
 * (LLaVA-1.5/NeXT), or one <video> block (OneVision). */
int vqa_encode_video(struct md_vision *vis, const struct media_frames *v, struct vqa_input *in,
                     char *err, size_t errlen);
/* Hand the frames to a reduction session one by one, as a stream would. */
int vqa_reduce_add_video(struct md_reduce_session *s, const struct media_frames *v, char *err,
                         size_t errlen);
#endif

#endif
