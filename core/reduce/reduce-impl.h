/* Internals of core/reduce: the methods' pure algorithms on host arrays
 * (select.c, temporal.c), attention probabilities from LSE (attn.c). The
 * analytic cost model has its own header, flops.h. Exposed to tests/reduce. */
#ifndef MD_REDUCE_IMPL_H
#define MD_REDUCE_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mustdrop-reduce.h"

/* (tau_g, tau_i) of the published operating points 192/128/64. */
int md_reduce_mustdrop_preset(int32_t tokens, float *tau_g, float *tau_i);

/* ---- attention probabilities without an L x L matrix ----
 * (docs/reduction-methods.md §5.1)
 * out[i][j] = mean_h exp(scale * q_hi . k_{g(h) j} - lse[h][i]) for query
 * rows i < n_q and key rows j < n_k, g(h) = h / (H / Hkv) (GQA).
 * q: [n_q][H*d] (row stride q_stride floats), k: [n_k][Hkv*d] (row stride
 * k_stride), lse: element (h, i) at lse[h * lse_stride + i]. */
struct md_attn_block {
    const float *q;  int64_t q_stride;
    const float *k;  int64_t k_stride;
    const float *lse; int64_t lse_stride;
    int32_t n_q, n_k, n_head, n_head_kv, head_dim;
    float scale;
};
void md_reduce_attn_probs(const struct md_attn_block *b, float *out);

/* ---- selection helpers (select.c) ---- */
/* The k highest scores (ties: lower index first), written ascending. */
void md_reduce_topk(const float *score, int32_t n, int32_t k, int32_t *idx);
/* Same, but positions that are flagged in force (may be NULL) are kept
 * first and count towards k. Returns how many were written (min(k, n), or
 * more when the forced ones alone exceed k). */
int32_t md_reduce_topk_forced(const float *score, const bool *force, int32_t n, int32_t k,
                              int32_t *idx);

/* MustDrop dual-attention filter (docs/reduction-methods.md §1.3):
 * M [t][n] text->vision probabilities (mean over heads); drop j iff
 * g_j < tau_g * sum(g) AND m_j < tau_i, where g = column sum, m = column
 * max; key[j] (may be NULL) is never dropped. keep[] gets the kept columns
 * ascending; returns their count. */
int32_t md_reduce_dual_filter(const float *M, int32_t t, int32_t n, float tau_g, float tau_i,
                              const bool *key, int32_t *keep);

/* MustDrop local spatial merge (docs/reduction-methods.md §1.1), one
 * image of patches x[gh*gw][D] in raster order. Windows are win x win,
 * stride win, covering floor(gh/win) x floor(gw/win) windows; leftover rows
 * and columns are never merged. score[w] = mean off-diagonal cosine. */
int32_t md_reduce_lsm_n_windows(int32_t gh, int32_t gw, int32_t win);
void md_reduce_lsm_scores(const float *x, int32_t gh, int32_t gw, int32_t D, int32_t win,
                          float *score);
int32_t md_reduce_lsm_count(const float *score, int32_t n_win, float thresh);
/* Merge the top-r windows (by score, descending) into their mean; output
 * order: merged tokens in that order, then every unmerged patch in raster
 * order. out [n - (win*win-1)*r][D]; src[i] = raster index standing for
 * output token i (the window's bottom-right token for a merged one, as the
 * reference's dst slot k = 8). Returns the output count. */
int32_t md_reduce_lsm_merge(const float *x, int32_t gh, int32_t gw, int32_t D, int32_t win,
                            const float *score, int32_t r, float *out, int32_t *src);

/* HiRED budgets (docs/reduction-methods.md §2.2): P partitions of `per`
 * tokens (partition 0 = base image), rho, alpha. base_l0 [per]: the base
 * image's layer-0 class attention over a side x side grid; the P-1 tiles
 * form an nph x npw grid. geometric=false: the reference code's row-major
 * strips; true: the base-image area above each tile. budget[P] gets each
 * partition's count; returns their sum (<= int(P*per*rho)). */
int32_t md_reduce_hired_budgets(int32_t P, int32_t per, float rho, float alpha,
                                const float *base_l0, int32_t side, int32_t nph, int32_t npw,
                                bool geometric, int32_t *budget);

/* Uniform spatial pooling of a gh x gw grid x[][D] to at most `tokens`
 * (adaptive average pooling as torch's, to oh x ow with oh*ow <= tokens,
 * aspect kept). Returns the count; writes out and, for each output token,
 * the raster index of its area's first cell. */
int32_t md_reduce_pool_dims(int32_t gh, int32_t gw, int32_t tokens, int32_t *oh, int32_t *ow);
int32_t md_reduce_uniform_pool(const float *x, int32_t gh, int32_t gw, int32_t D, int32_t tokens,
                               float *out, int32_t *src);

/* Seeded random subset: k of n, ascending. */
void md_reduce_random_subset(uint64_t seed, int32_t n, int32_t k, int32_t *idx);

/* Cosine of two rows. */
float md_reduce_cosine(const float *a, const float *b, int32_t D);

/* DyCoke TTM for one frame (docs/reduction-methods.md §3): keep the
 * int((1-K)*N) tokens of cur least similar to the same position of ref
 * (ascending indices). Returns the count. */
int32_t md_reduce_dycoke_frame(const float *cur, const float *ref, int32_t n, int32_t D, float K,
                               int32_t *keep);
/* Index of the frame a frame at position f of its window is compared
 * with (-1: it is the anchor and is kept whole): odd f -> f-1 (pass 1),
 * even f > 0 -> the window's first frame (pass 2). */
int32_t md_reduce_dycoke_ref(int32_t f);

/* Spatio-temporal 3x3xT merge of T frames x[T][gh*gw][D]: a window whose
 * 9T tokens have mean pairwise cosine >= thresh becomes one token (mean)
 * in frame 0; the others keep all their tokens. keep[t][gh*gw] flags the
 * survivors, merged rows are written into x[0] at the window's
 * bottom-right cell. Returns the tokens left over all frames. */
int32_t md_reduce_stmerge(float *x, int32_t T, int32_t gh, int32_t gw, int32_t D, int32_t win,
                          float thresh, bool *keep);

/* Shrink per-block counts to a global cap: blocks share the cap equally,
 * what a small block does not use goes to the others (water filling).
 * n[i] in/out. Returns the new total. */
int32_t md_reduce_cap_budgets(int32_t *n, int32_t n_blocks, int32_t cap);

/* ---- VisionZip (visionzip.c) ----
 * Budget of one image of n tokens: tokens > 0 a count, else round(keep*n);
 * n_dom = int(budget * dominant) (>= 1), n_ctx the rest. */
void md_reduce_visionzip_split(int32_t n, float keep, int32_t tokens, float dominant,
                               int32_t *n_dom, int32_t *n_ctx);
/* x [n][D] one image's rows, score [n] class attention (NULL: dominant
 * evenly spaced), force [n] (may be NULL) rows that must be dominant. Out:
 * the dominant rows ascending, then n_ctx contextual rows: targets at a
 * stride over the remaining rows (in their order), every other remaining
 * row joins its most cosine-similar target; a contextual row = target +
 * mean(members) (mean_merge: mean of target and members). out_src: src (or
 * the row index when src is NULL) of each out row, a contextual row its
 * target's. Returns the out count (0 only when out of memory or n = 0). */
int32_t md_reduce_visionzip(const float *x, const float *score, const bool *force,
                            const int32_t *src, int32_t n, int32_t D, int32_t n_dom, int32_t n_ctx,
                            bool mean_merge, float *out, int32_t *out_src);

/* ---- CDPruner (cdpruner.c) ---- */
/* Greedy MAP of a DPP with kernel L [n][n] (symmetric PSD): k indices,
 * ascending. A step whose best residual is below 1e-10 ends the DPP and
 * the rest of k goes to the largest L_ii left. Returns k (clamped to
 * [0, n]) or -1 when out of memory. */
int32_t md_reduce_dpp_greedy(const float *L, int32_t n, int32_t k, int32_t *idx);
/* L_ij = rel_i * cos(x_i, x_j) * rel_j, S_ii = 1. */
void md_reduce_cdpruner_kernel(const float *x, const float *rel, int32_t n, int32_t D, float *L);
/* rel_i = min-max normalised cos(x_i, q) over the n rows,
 * (rho - min + 1e-6) / (max - min); 1 for all when they are all equal. */
void md_reduce_cdpruner_relevance(const float *x, int32_t n, int32_t D, const float *q, float *rel);

#endif
