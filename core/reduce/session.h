/* The session. session.c owns its life cycle; encode.c (stages a, b) and
 * prefill.c (c, d) fill it; run.c drives them all. Calls go one way:
 * run.c -> prefill.c -> encode.c -> session.c. */
#ifndef MD_REDUCE_SESSION_H
#define MD_REDUCE_SESSION_H

#include "flops.h"
#include "kv.h"
#include "reduce-impl.h"

/* One image, tile or frame's kept rows. */
struct md_block {
    float *embd;        /* [n][E] */
    float *score;       /* [n] importance (higher = keep); NULL: none known */
    bool *key;          /* [n] MustDrop key tokens */
    int32_t *src;       /* [n] raster index in the original patch grid, i.e. the row's offset
                           in the block's unreduced rows (a merged row: its representative's) */
    int32_t n;
    int32_t n_orig;     /* rows the unreduced model gives this block (pos=keep spans) */
    int32_t gh, gw;     /* original patch grid (0: not a raster) */
    bool frame;         /* a video frame (OneVision puts frames in one <video> block) */
    int32_t n_src;      /* frames merged into this block (cap frames=); 0 counts as 1 */
    int32_t n_fixed;    /* leading rows a temporal method made (HoliTom's static rows): the
                           per-frame part of stage (b) passes them through */
};

/* A tower run's result for one preprocessed image. */
struct md_encoded {
    float *embd;        /* [n][E] projected */
    float *score;       /* [n] final-layer class attention (NULL if not asked) */
    float *score0;      /* [n0] layer-0 class attention (NULL if not asked) */
    int32_t *src;       /* [n] raster index */
    int32_t n, n0;
    int32_t n_full;     /* rows the unreduced model gets for this image (src indexes them) */
    int32_t side;       /* patch grid side */
};

struct md_reduce_session {
    struct md_context *ctx;
    struct md_vision *vis;
    struct md_reduce_config cfg;
    char spec[512];
    int32_t E;                  /* LLM n_embd */
    int32_t n_layer;
    int32_t md_layers[MD_REDUCE_MAX_LAYERS];   /* MustDrop pruning layers, scaled */
    int32_t md_n_layers;

    struct md_block *blocks;
    int32_t n_blocks, cap_blocks;

    /* video */
    int32_t n_frames;           /* frames seen */
    float *anchor, *prev;       /* full features: window anchor, previous frame */
    int32_t frame_n;            /* rows of a full frame */
    float *pending;             /* stmerge: frames waiting for a full group [T][frame_n][E] */
    float *pending_score;       /* [T][frame_n] */
    int32_t n_pending, pend_gh, pend_gw;
    float *clip;                /* flashvid, holitom: frames waiting for the prefill [F][clip_n][E] */
    float *clip_score;          /* [F][clip_n] */
    int32_t clip_frames, clip_cap, clip_n;

    /* prompt */
    float *logits;
    int32_t n_vocab;
    bool prefilled;
    bool *row_vis, *row_key;    /* [n_ctx] per prompt row */
    int32_t n_rows_prompt;
    int32_t **ent;              /* [n_layer][n_ctx]: prompt row of each cache entry, -1 generated */
    float **att_max;            /* [n_layer][n_ctx]: decode mode, max attention since last check */
    int32_t n_ctx;
    int32_t since_evict;

    /* md_reduce_mark: the state after the prefill to come back to */
    bool marked;
    struct md_kv_snapshot mark_kv;
    float *mark_logits;

    struct md_reduce_stats st;
    char err[256];
};

/* True when any method bit of m is configured; every stage asks this. */
static inline bool has(const struct md_reduce_session *s, uint32_t m)
{
    return (s->cfg.methods & m) != 0;
}

/* ---- session.c ---- */
/* Set s->err and return rc. */
int md_reduce_fail(struct md_reduce_session *s, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
double md_reduce_now_ms(void);
void md_reduce_block_free(struct md_block *b);

/* ---- session.c: trying continuations (md_vqa's choices) ---- */
/* Remember the state after the prefill: every layer's KV length and the
 * logits. While marked, decode-time eviction is suspended (a compaction
 * cannot be undone), so decodes only append and md_reduce_rewind drops
 * them. Stats and timings keep counting the work done. */
int md_reduce_mark(struct md_reduce_session *s);
/* Back to the marked state (the mark stays). */
int md_reduce_rewind(struct md_reduce_session *s);
/* Forget the mark (reset and prefill forget it too). */
void md_reduce_unmark(struct md_reduce_session *s);

/* ---- encode.c: what the prefill needs of stage (b) ---- */
/* Apply the global cap to the blocks held (trimming the lowest scores). */
int md_reduce_apply_cap(struct md_reduce_session *s);
/* Merge the frames waiting for a full spatio-temporal group, reduce the
 * FlashVID / HoliTom clip held. MD_OK or MD_ERR_NOMEM. */
int md_reduce_flush_pending(struct md_reduce_session *s);

#endif
