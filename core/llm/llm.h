/* The LLM context and its layer-by-layer forward pass.
 *
 * md_decode_batch (mustdrop.h) is begin → layer 0..n_layer-1 → end. The
 * steps are exposed here so token-reduction code can act between layers
 * during a prefill: read the layer's post-RoPE queries and log-sum-exps to
 * recover attention probabilities (docs/reduction-methods.md §5.1), then
 * drop rows of the hidden state with md_llm_keep_rows so later layers see
 * fewer tokens.
 *
 *     md_llm_begin(ctx, &batch, 0, batch.n);        // n <= n_batch
 *     for (il = 0; il < n_layer; il++) {
 *         md_llm_layer(ctx, il);
 *         if (il == 2) { ...md_llm_q(ctx), md_llm_lse(ctx), layer il's K...
 *                        md_llm_keep_rows(ctx, keep, n_keep); }
 *     }
 *     md_llm_end(ctx, false, logits);
 *
 * md_decode_batch snapshots the cache lengths first and restores them on
 * any error; direct callers of the steps do the same with
 * md_kv_snapshot_take / md_kv_snapshot_restore (kv.h) on ctx->snap.
 */
#ifndef MD_LLM_H
#define MD_LLM_H

#include "backend.h"
#include "kv.h"
#include "model.h"
#include "mustdrop.h"

struct md_context {
    struct md_model *model;
    struct md_context_params params;
    struct md_backend *be;
    struct md_kv_cache *kv;
    struct md_kv_snapshot snap;     /* cache state before the running decode call */

    /* Activations in backend memory, [n_batch] rows each, made once. */
    struct md_tensor x;      /* [n_batch][n_embd] residual stream */
    struct md_tensor xb;     /* [n_batch][n_embd] normed input / sublayer output */
    struct md_tensor q;      /* [n_batch][n_head * head_dim], post-RoPE */
    struct md_tensor k;      /* [n_batch][n_head_kv * head_dim], post-RoPE */
    struct md_tensor v;      /* [n_batch][n_head_kv * head_dim] */
    struct md_tensor att;    /* [n_batch][n_head * head_dim] attention output */
    struct md_tensor lse;    /* [n_head][n_rows] log-sum-exp of the last layer run */
    struct md_tensor hb;     /* [n_batch][n_ff] gate, then silu(gate) * up */
    struct md_tensor hb2;    /* [n_batch][n_ff] up */
    struct md_tensor ids;    /* I32 [n_batch] token ids */
    struct md_tensor pos;    /* I32 [n_batch] RoPE positions for the current layer */
    struct md_tensor out;    /* [out_rows][n_vocab] logits chunk (grown on demand) */
    int32_t out_rows;

    /* The batch in flight. */
    int32_t n_rows;          /* rows of x in use */
    int32_t n_out;           /* the last n_out rows go through the last layer whole */
    bool cut_last;           /* the last layer ran fewer rows than it was given */
    int32_t *row_pos;        /* [n_batch] sequence position of each row */
    int32_t *layer_pos;      /* [n_batch] what `pos` holds now */
    int32_t n_layer_pos;     /* rows of layer_pos valid (0 = must upload) */
    int32_t *ids_host;       /* [n_batch] */
    int32_t next_seq_pos;    /* kv->seq_pos once the batch ends */
    int32_t last_layer;      /* layer whose q/lse are in the buffers, -1 none */
    int32_t mm_rows;         /* rows per matmul call, 0: all at once (decode-multi.c) */

    /* Logits of the last decode call (host). */
    float *logits;           /* [logits_cap][n_vocab] */
    int32_t logits_cap;
    int32_t n_logits;        /* rows held */
    int32_t n_last_rows;     /* rows of the last decode call */

    struct md_timings timings;
    char err[256];
};

/* A view of the first n elements of 1-D tensor t starting at element off. */
static inline struct md_tensor md_llm_vec_view(const struct md_tensor *t, int64_t off, int64_t n)
{
    struct md_tensor v = *t;
    size_t es = t->type == MD_TYPE_I32 || t->type == MD_TYPE_F32 ? 4 : 2;
    v.data = (char *)t->data + es * (size_t)off;
    v.ne[0] = n;
    v.ne[1] = v.ne[2] = v.ne[3] = 1;
    v.nbytes = es * (size_t)n;
    v.owned = false;
    return v;
}

/* Set ctx->err and return rc. */
int md_llm_error(struct md_context *ctx, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Embed rows [row0, row0+n) of batch into x (n <= n_batch) and fix their
 * sequence positions. Checks tokens and KV room; changes no cache. */
int md_llm_begin(struct md_context *ctx, const struct md_batch *batch, int32_t row0, int32_t n);
/* Run transformer block il on the rows in flight, appending their K/V to
 * layer il's cache. Layers must run in order. */
int md_llm_layer(struct md_context *ctx, int32_t il);
/* Keep rows idx[0..n) of the hidden state (strictly increasing) and drop
 * the rest; later layers see n rows. */
int md_llm_keep_rows(struct md_context *ctx, const int32_t *idx, int32_t n);
/* Final norm and output projection into logits (host, [rows][n_vocab]):
 * every row in flight when all, else the last one; logits may be NULL.
 * Advances the shared sequence position. */
int md_llm_end(struct md_context *ctx, bool all, float *logits);

/* Only the last n_out (>= 1) rows in flight are wanted after the last
 * layer (the rows whose logits md_llm_end will be asked for): that layer
 * then appends every row's key and value but runs attention, its output
 * projection and the feed-forward for those rows alone, and leaves n_out
 * rows in flight (their q, lse and hidden state). llama.cpp does the same
 * (its "output ids"); for a prompt it skips almost 1/n_layer of the work.
 * md_llm_begin resets it to every row; md_llm_end refuses all = true
 * after the last layer cut rows. */
void md_llm_want_last(struct md_context *ctx, int32_t n_out);

/* Pieces of the forward shared with the multi-sequence step (decode-multi.c). */
/* MD_OK, or MD_ERR_CONTEXT_FULL (with the layer in ctx->err) when some
 * layer lacks room for n more entries. */
int md_llm_check_room(struct md_context *ctx, int32_t n);
/* Make ctx's pos tensor hold pos[0..n) (n <= n_batch), uploading only when
 * it holds something else (usually not, after layer 0). */
int md_llm_set_positions(struct md_context *ctx, const int32_t *pos, int32_t n);
/* y = x w (+ bias) on ctx's backend, in calls of at most ctx->mm_rows rows. */
int md_llm_matmul(struct md_context *ctx, const struct md_tensor *x, const struct md_tensor *w,
                  const struct md_tensor *bias, struct md_tensor *y);
struct md_rope_params md_llm_rope_params(const struct md_context *ctx, int32_t n_head);
/* Block il up to its attention, on the n_rows rows in flight: xb = the
 * attention norm of x, q, k, v their projections, q and k rotated at
 * pos[0..n_rows) (uploaded when the pos tensor holds others). */
int md_llm_qkv(struct md_context *ctx, int32_t il, const int32_t *pos);
/* The feed-forward half of block il on the rows in flight. */
int md_llm_ffn_block(struct md_context *ctx, int32_t il);
int md_llm_ensure_out_rows(struct md_context *ctx, int32_t want);
int md_llm_ensure_logits(struct md_context *ctx, int32_t want);
bool md_llm_aborted(const struct md_context *ctx);
double md_llm_now_ms(void);

/* The multi-sequence decode step (md_decode_multi) in steps, for reduction
 * sessions: ctxs[0] (the lead) computes one token for each of the n
 * contexts on its backend, its buffers holding the n stacked rows (row i is
 * ctxs[i]'s token); each context keeps its own cache. Callers snapshot
 * every context's cache first and restore them all on an error.
 *     md_llm_multi_begin(ctxs, tokens, n);
 *     for (il = 0; il < n_layer; il++) md_llm_multi_layer(ctxs, n, il, want_lse);
 *     md_llm_multi_end(ctxs, n, logits);
 * On an error every context has a message: the one at fault its own, the
 * others one naming it (a failure of the shared pass is the lead's). */
int md_llm_multi_begin(struct md_context *const *ctxs, const int32_t *tokens, int32_t n);
/* Block il for every row; with want_lse each row's attention log-sum-exp is
 * kept for md_llm_multi_lse. */
int md_llm_multi_layer(struct md_context *const *ctxs, int32_t n, int32_t il, bool want_lse);
/* Logits of row i into logits[i] (n_vocab floats; NULL: ctxs[i]'s own
 * logits buffer, which md_get_logits returns). */
int md_llm_multi_end(struct md_context *const *ctxs, int32_t n, float *const *logits);
/* Row i's post-RoPE query [1][n_head*head_dim] and log-sum-exp [n_head][1]
 * after the last md_llm_multi_layer (backend tensors of the lead). */
struct md_tensor md_llm_multi_q(const struct md_context *lead, int32_t i);
struct md_tensor md_llm_multi_lse(const struct md_context *lead, int32_t i);

/* What the last md_llm_layer left for reduction code (backend tensors). */
int32_t md_llm_n_rows(const struct md_context *ctx);
const int32_t *md_llm_row_pos(const struct md_context *ctx);      /* [n_rows] */
struct md_tensor md_llm_q(const struct md_context *ctx);          /* [n_rows][n_head*head_dim] */
struct md_tensor md_llm_lse(const struct md_context *ctx);        /* [n_head][n_rows] */
struct md_tensor md_llm_hidden(const struct md_context *ctx);     /* [n_rows][n_embd] */
struct md_backend *md_llm_backend(struct md_context *ctx);

#endif
