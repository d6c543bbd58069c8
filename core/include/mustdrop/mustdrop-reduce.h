/* libmustdrop token reduction: drop or merge the visual tokens that do not
 * matter, at four stages of a VLM prompt (docs/reduction.md):
 *
 *   (a) vision   inside the vision tower (merge after layer k, class attention)
 *   (b) select   between the tower and the LLM, per image / tile / frame
 *   (c) prefill  at chosen LLM layers (hidden rows and KV entries dropped)
 *   (d) decode   KV entries of vision tokens evicted while generating
 *
 * Methods are configured by a short spec string, stages composed with '+':
 *
 *     mustdrop:tokens=128          hired:budget=0.2,alpha=0.5
 *     fastv:k=2,r=0.5              random:keep=0.25,seed=1
 *     uniform:tokens=144           dycoke:k=0.7,window=4
 *     stmerge:thresh=0.8           none
 *     visionzip:keep=0.25          cdpruner:tokens=64
 *     flashvid:keep=0.25           holitom:keep=0.15
 *     dycoke:k=0.7+fastv:k=2,r=0.5 random:keep=0.25,pos=renumber
 *     holitom:keep=0.25+visionzip:keep=0.25   (stage (b): temporal, then per frame)
 *
 * Typical use (whisper.cpp style):
 *
 *     struct md_reduce_config cfg = md_reduce_default_config();
 *     if (md_reduce_parse("mustdrop:tokens=128", &cfg, err, sizeof err)) die(err);
 *     struct md_reduce_session *s;
 *     md_reduce_session_new(ctx, vis, &cfg, &s, err, sizeof err);
 *     md_reduce_add_image(s, rgb, w, h, stride);         // or md_reduce_add_frames, as they arrive
 *     md_reduce_prefill(s, NULL, NULL, "What is shown?");
 *     for (;;) { t = md_sampler_sample(smp, md_reduce_logits(s), n_vocab); ...
 *                md_reduce_decode(s, t); }
 *     md_reduce_stats_json(md_reduce_stats(s), buf, sizeof buf);
 *     md_reduce_session_free(s);
 *
 * A session keeps only the reduced tokens of what it has seen (frames can
 * arrive one by one, e.g. from the GStreamer element), under an optional
 * global cap on visual tokens, and can be asked several questions
 * (md_reduce_reset_prompt clears the KV cache but keeps the tokens).
 * No global state; one session is used by one thread at a time.
 */
#ifndef MUSTDROP_REDUCE_H
#define MUSTDROP_REDUCE_H

#include "mustdrop.h"
#include "mustdrop-vision.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Stages a method acts at (bits). */
enum md_reduce_stage {
    MD_STAGE_VISION  = 1 << 0,
    MD_STAGE_SELECT  = 1 << 1,
    MD_STAGE_PREFILL = 1 << 2,
    MD_STAGE_DECODE  = 1 << 3,
};

/* Methods (bits of md_reduce_config.methods). */
enum md_reduce_method {
    MD_REDUCE_MUSTDROP = 1 << 0,   /* vision + prefill + decode */
    MD_REDUCE_HIRED    = 1 << 1,   /* vision scores -> select */
    MD_REDUCE_FASTV    = 1 << 2,   /* prefill */
    MD_REDUCE_RANDOM   = 1 << 3,   /* select */
    MD_REDUCE_UNIFORM  = 1 << 4,   /* select */
    MD_REDUCE_DYCOKE   = 1 << 5,   /* select (temporal) */
    MD_REDUCE_STMERGE  = 1 << 6,   /* select (spatio-temporal) */
    MD_REDUCE_VISIONZIP = 1 << 7,  /* vision scores -> select (dominant + contextual) */
    MD_REDUCE_CDPRUNER = 1 << 8,   /* select, conditioned on the question (at prefill) */
    MD_REDUCE_FLASHVID = 1 << 9,   /* select: per-frame ADTS + spatio-temporal tree merging */
    MD_REDUCE_HOLITOM  = 1 << 10,  /* select (temporal): holistic segmentation + merging */
};

/* MustDrop's KV policy (stage C, docs/reduction-methods.md §1.4). */
enum md_reduce_kv_mode {
    MD_REDUCE_KV_FAITHFUL = 0,   /* one-shot compaction after prefill; per-layer positions */
    MD_REDUCE_KV_DECODE   = 1,   /* evict vision KV entries every few generated tokens */
    MD_REDUCE_KV_OFF      = 2,   /* layers keep what prefill left; shared positions */
};

/* RoPE positions of the visual rows that survive stage (b) (every method
 * takes the option: "random:keep=0.25,pos=keep"). */
enum md_reduce_pos {
    MD_REDUCE_POS_KEEP     = 0,  /* each kept row keeps the position it had unreduced (a merged
                                    row its representative's); text after an image or video
                                    continues after the unreduced span */
    MD_REDUCE_POS_RENUMBER = 1,  /* rows packed: 0, 1, 2, ... over the shortened prompt */
};

#define MD_REDUCE_MAX_LAYERS 8

struct md_reduce_config {
    uint32_t methods;              /* enum md_reduce_method bits; 0 = none */

    /* mustdrop: tokens= picks the published (tau_g, tau_i) preset */
    int32_t md_tokens;             /* 192, 128, 64 or 0 (use md_tau_g / md_tau_i) */
    float md_tau_g, md_tau_i;      /* dual-attention thresholds (0.0012, 0.001) */
    float md_merge_thresh;         /* local spatial merge: mean pairwise cosine (0.8) */
    int32_t md_merge_layer;        /* merge after this tower layer (0) */
    float md_key_rate;             /* key-token share of the patches (0.08) */
    int32_t md_layers[MD_REDUCE_MAX_LAYERS];   /* LLM pruning layers; n = 0: scaled 2/6/10/14 */
    int32_t md_n_layers;
    enum md_reduce_kv_mode md_kv;  /* faithful */
    float md_evict_thresh;         /* decode mode: mean-head attention below which... (0.001) */
    int32_t md_evict_every;        /* ...an entry is evicted, checked every N tokens (4) */

    /* hired */
    float hired_budget;            /* rho: share of all partitions' tokens (0.2) */
    float hired_alpha;             /* share of the budget for the base image (0.5) */
    bool hired_geometric;          /* false: the reference code's strip mapping */

    /* fastv */
    int32_t fastv_k;               /* prune after layer k-1's attention (2) */
    float fastv_r;                 /* share of vision tokens dropped (0.5) */

    /* random */
    float random_keep;             /* share kept (0.25) */
    uint64_t random_seed;          /* (1) */

    /* uniform spatial pooling */
    int32_t uniform_tokens;        /* tokens per image after pooling (144) */

    /* dycoke (TTM) */
    float dycoke_k;                /* share of a non-anchor frame dropped (0.7) */
    int32_t dycoke_window;         /* frames per window (4) */

    /* stmerge: 3x3xT windows */
    float st_thresh;               /* mean pairwise cosine to merge (0.8) */
    int32_t st_frames;             /* T (2) */

    /* visionzip: per image, budget = vz_tokens if > 0, else round(vz_keep * n) */
    float vz_keep;                 /* (0.11: 64 of 576, the README preset) */
    int32_t vz_tokens;             /* (0) */
    float vz_dominant;             /* dominant share of the budget (54/64) */
    bool vz_mean_merge;            /* false: target + mean(members), the reference's rule */

    /* cdpruner: per image, k = cd_tokens if > 0, else round(cd_keep * n) */
    float cd_keep;                 /* (0.11) */
    int32_t cd_tokens;             /* (0) */

    /* flashvid: per-frame budget B = fv_tokens if > 0, else ceil(fv_keep * expansion * n) */
    float fv_keep;                 /* (0.25, the reference wrapper's) */
    int32_t fv_tokens;             /* (0) */
    float fv_alpha;                /* ADTS share of B (0.7) */
    float fv_seg_thresh;           /* frame-descriptor cosine below which a segment ends (0.9) */
    int32_t fv_min_segs;           /* fewest segments (8) */
    float fv_temp_thresh;          /* tree edge: cosine above this (0.8) */
    float fv_expansion;            /* (1: no inner-LLM prune here; the reference 1.25 with it) */
    bool fv_adts_v1;               /* false: attention x event relevance calibration (v2) */

    /* holitom: retention r = ht_tokens / n if > 0, else ht_keep */
    float ht_keep;                 /* (0.1, the reference's RETAIN_RATIO) */
    int32_t ht_tokens;             /* (0) */
    float ht_tau;                  /* same-position cosine for a static token (0.8) */
    float ht_beta;                 /* merged row = beta * centre + (1-beta) * mean(members) (0.6) */
    int32_t ht_max_window;         /* longest window in frames (1024: unbounded) */

    /* global cap on the visual tokens a session holds; 0 = none */
    int32_t max_visual_tokens;
    /* with the cap (cap:tokens=N,frames=M): most video-frame blocks held;
     * beyond it the two adjacent frame blocks standing for the fewest frames
     * become one (their rows concatenated, then trimmed by the cap), so a
     * stream of any length keeps at most M blocks of at most N rows in all;
     * 0 = no limit (every frame keeps at least one row) */
    int32_t max_visual_frames;

    /* positions of kept visual rows (pos=keep|renumber); the default is
     * docs/reduction.md's measured choice. MustDrop's kv=faithful rotates
     * with per-layer cache lengths instead (its reference's behaviour). */
    enum md_reduce_pos pos;
};

struct md_reduce_config md_reduce_default_config(void);

/* Parse a spec into cfg (starting from defaults). Returns MD_OK or
 * MD_ERR_INVALID with a message naming the bad method, key or value, e.g.
 * "fastv: unknown key 'q' (keys: k, r)". "" and "none" mean no reduction.
 * The global cap is the pseudo-method "cap:tokens=N". */
int md_reduce_parse(const char *spec, struct md_reduce_config *cfg, char *err, size_t errlen);
/* The stages a configuration acts at (enum md_reduce_stage bits). */
uint32_t md_reduce_stages(const struct md_reduce_config *cfg);
/* Canonical spec text of cfg (snprintf-like). */
int md_reduce_format(const struct md_reduce_config *cfg, char *buf, size_t n);

/* -------------------------------------------------------------------------
 * Statistics
 * ------------------------------------------------------------------------- */

#define MD_REDUCE_MAX_LLM_LAYERS 256

struct md_reduce_stats {
    /* visual tokens */
    int32_t n_images;              /* images and frames added */
    int32_t n_parts;               /* tower inputs: images, frames, AnyRes tiles (MustDrop's
                                      "image_num": its token counts are per part) */
    int32_t vis_in;                /* tokens the unreduced model would get */
    int32_t vis_after_vision;      /* after stage (a) (merge) */
    int32_t vis_after_select;      /* entering the LLM */
    int32_t vis_final;             /* after the last prefill pruning layer */
    int32_t vis_kv_after_decode;   /* vision entries in the deepest layer's cache at the end */
    int32_t n_layer;
    int32_t vis_per_layer[MD_REDUCE_MAX_LLM_LAYERS];   /* vision rows after each layer */
    double vis_layer_avg;          /* mean of vis_per_layer (SparseVLM-style "tokens") */
    double vis_layer_avg_per_part; /* vis_layer_avg / n_parts: MustDrop's reported figure */
    int32_t n_key_tokens;          /* MustDrop key set */
    int32_t n_prompt;              /* prompt rows entering the LLM (text + vision) */
    int32_t n_generated;
    /* analytic FLOPs (2 per multiply-add; docs/reduction.md) */
    double flops_vision, flops_prefill, flops_decode;
    /* KV bytes */
    size_t kv_bytes_prefill, kv_bytes_decode;
    /* wall time, ms */
    double ms_vision, ms_select, ms_prefill, ms_decode;
};

int md_reduce_stats_json(const struct md_reduce_stats *st, const char *spec, char *buf, size_t n);

/* -------------------------------------------------------------------------
 * Session: images or frames + a question, with a reduction config
 * ------------------------------------------------------------------------- */

struct md_reduce_session;

/* ctx and vis must outlive the session; the session takes over ctx's KV
 * cache (it clears it at each prefill). vis may be NULL when only
 * md_reduce_add_embd is used. */
int md_reduce_session_new(struct md_context *ctx, struct md_vision *vis,
                          const struct md_reduce_config *cfg, struct md_reduce_session **out,
                          char *err, size_t errlen);
void md_reduce_session_free(struct md_reduce_session *s);

/* One still image: stages (a) and (b); its kept rows become one block. */
int md_reduce_add_image(struct md_reduce_session *s, const uint8_t *rgb, int32_t w, int32_t h,
                        int32_t stride);
/* Video frames as they arrive (one block each); temporal methods compare
 * them with the frames before, across calls. */
int md_reduce_add_frames(struct md_reduce_session *s, const struct md_frame *frames, int32_t n);
/* Frames of several sessions through the tower together (several streams'
 * windows in one batch): session ss[k] gets frames[k][0..n[k]) exactly as
 * md_reduce_add_frames would add them, while the frames of all sessions
 * that use one vision model and need the same of it (class attention, a
 * local merge) share tower runs. Each session's time and FLOPs count its
 * share. rcs (NULL or [n_sessions]) gets each session's status, its error
 * text in md_reduce_error; returns the first failure, MD_OK when none. A
 * session named twice fails. */
int md_reduce_add_frames_multi(struct md_reduce_session *const *ss,
                               const struct md_frame *const *frames, const int32_t *n,
                               int32_t n_sessions, int *rcs);
/* Already projected rows [n][n_embd] of one image whose patches form a
 * grid_h x grid_w raster (no tower stage; for tests and callers with their
 * own encoder). scores: NULL or [n] importance (higher = keep). */
int md_reduce_add_embd(struct md_reduce_session *s, const float *embd, int32_t n,
                       int32_t grid_h, int32_t grid_w, const float *scores);

/* The whole prompt in one call: a session over n still images (video =
 * false) or video frames (true), prefilled with the question (default chat
 * template and system prompt). On success *out holds the answer-ready
 * session (md_reduce_logits, md_reduce_decode, md_reduce_stats); on
 * failure too when it got that far (free it), with err set. */
int md_reduce_run(struct md_context *ctx, struct md_vision *vis, const struct md_reduce_config *cfg,
                  const struct md_frame *frames, int32_t n, bool video, const char *question,
                  struct md_reduce_session **out, char *err, size_t errlen);

/* Visual tokens held now, and blocks. */
int32_t md_reduce_n_visual(const struct md_reduce_session *s);
int32_t md_reduce_n_blocks(const struct md_reduce_session *s);
/* Host bytes the session holds for what it has seen: the kept rows (with
 * their scores, key flags and source indices), the block table and the
 * temporal methods' reference / pending frames. Not the KV cache, not the
 * prompt being prefilled. */
size_t md_reduce_held_bytes(const struct md_reduce_session *s);

/* Build the prompt over every block seen and run the prefill with stage
 * (c); the logits of the last row are then ready. */
int md_reduce_prefill(struct md_reduce_session *s, const char *tmpl, const char *system,
                      const char *question);
/* Prefill a caller-built batch (tokens required): its MD_TOKEN_EMBD rows
 * are the visual tokens; key: NULL or one flag per visual row (in order)
 * marking tokens never to drop. Text queries are the rows after the last
 * visual row. The blocks added so far are not used. */
int md_reduce_prefill_batch(struct md_reduce_session *s, const struct md_batch *batch,
                            const bool *key);
/* Logits of the last prefill / decode row (n_vocab floats). */
const float *md_reduce_logits(const struct md_reduce_session *s);
/* One generated token through the model, with stage (d). */
int md_reduce_decode(struct md_reduce_session *s, int32_t token);
/* md_reduce_decode for n sessions at once, one token each, in one
 * multi-sequence step (md_decode_multi: the sessions' contexts must qualify
 * for it; sessions[0]'s context runs the step). Each session's stage (d)
 * and stats are its own, as after md_reduce_decode. On an error no
 * session's cache has changed and every session says what failed. */
int md_reduce_decode_multi(struct md_reduce_session *const *sessions, const int32_t *tokens,
                           int32_t n);
/* Forget the blocks (start a new image/video); the cache is cleared. */
void md_reduce_reset(struct md_reduce_session *s);
/* Reduce with cfg from now on: one session (and its context) serves
 * streams that reduce differently, taking turns. Only while the session
 * holds nothing (new, or just reset): MD_ERR_INVALID otherwise. */
int md_reduce_session_configure(struct md_reduce_session *s, const struct md_reduce_config *cfg);

const struct md_reduce_stats *md_reduce_stats(const struct md_reduce_session *s);
const char *md_reduce_error(const struct md_reduce_session *s);

#ifdef __cplusplus
}
#endif

#endif
