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

/* ---- DPC-kNN clustering (flashvid.c; FlashVID and HoliTom both use it) ----
 * Density peaks over kNN (docs/reduction-methods.md §10.3): d_ij =
 * |x_i - x_j| / sqrt(D), density rho_i = exp(-mean of the knn smallest
 * d_i.^2, self included), sigma_i = distance to the nearest denser row
 * (the largest distance of all for the densest). The k_c rows with the
 * largest rho * sigma (ties: lower index) are the centres, written
 * ascending into centre[]; assign[i] = the position in centre[] of row i's
 * nearest centre (a centre its own). Returns k_c clamped to [1, n] (0 when
 * n = 0), -1 when out of memory. No random tie-break noise. */
int32_t md_reduce_dpc_knn(const float *x, int32_t n, int32_t D, int32_t k_c, int32_t knn,
                          int32_t *centre, int32_t *assign);

/* ---- FlashVID (flashvid.c, docs/reduction-methods.md §10) ---- */
struct md_flashvid_params {
    float keep;          /* retention r */
    int32_t tokens;      /* > 0: per-frame budget B directly */
    float alpha, seg_thresh, temp_thresh, expansion;
    int32_t min_segs;
    bool adts_v1;
};
/* B, B_adts, B_sttm for frames of n tokens. */
void md_reduce_flashvid_budget(const struct md_flashvid_params *p, int32_t n, int32_t *b,
                               int32_t *b_adts, int32_t *b_sttm);
/* DySeg over frame descriptors g [F][D]: cut after frame f when
 * cos(g_f, g_f+1) < thresh; fewer than min_segs segments: the least similar
 * uncut pairs are cut too. start[0..n] = each segment's first frame, then F.
 * Returns the segment count n (>= 1 for F >= 1). */
int32_t md_reduce_dyseg(const float *g, int32_t F, int32_t D, float thresh, int32_t min_segs,
                        int32_t *start);
/* ADTS on one frame x [n][D]: greedy max-min selection of k rows over the
 * distance 1 - cos(x_i, x_j) with column j weighted by a[j] (NULL: 1) and,
 * when rel is not NULL, rel[j] (v2's event relevance). The first pick is the
 * row farthest from its nearest other row; a row is never picked twice.
 * idx gets k (clamped to [0, n]) indices ascending. Returns k or -1 (OOM). */
int32_t md_reduce_adts(const float *x, const float *a, const float *rel, int32_t n, int32_t D,
                       int32_t k, int32_t *idx);
/* Tree-based merging of one segment x [F][n][D] (in place): skip [F][n]
 * flags rows out of it (ADTS picks), neither children nor parents. A row of
 * frame t > 0 whose best cosine to the non-skipped rows of frame t-1
 * exceeds thresh joins that row's tree; when fewer than `bound` rows
 * (skipped ones included) would stay roots, the threshold rises to keep
 * about bound. Roots' rows become their tree's mean; root[t][j] flags them.
 * Returns the root count (skipped rows not counted). */
int32_t md_reduce_tstm(float *x, const bool *skip, int32_t F, int32_t n, int32_t D, float thresh,
                       int32_t bound, bool *root);
/* A whole clip x [F][n][D], scores a [F][n] (NULL: equal). Writes the kept
 * rows (<= F*n) ordered by (frame, index): out rows, out_frame, out_src
 * (the index in the frame a row stands for: its own or its centre's).
 * Returns the count or -1 when out of memory. */
int32_t md_reduce_flashvid(const float *x, const float *a, int32_t F, int32_t n, int32_t D,
                           const struct md_flashvid_params *p, float *out, int32_t *out_frame,
                           int32_t *out_src);

/* ---- HoliTom, outer-LLM (holitom.c, docs/reduction-methods.md §11) ---- */
struct md_holitom_params {
    float keep;          /* retention r */
    float tau, beta;
    int32_t max_window;
    bool select_dynamic; /* false: dynamic rows stay whole (a per-frame method picks them) */
};
/* sigma [F-1][n]: cosine of each position with itself in the next frame. */
void md_reduce_holitom_sigma(const float *x, int32_t F, int32_t n, int32_t D, float *sigma);
/* Tokens removed by merging window [s, e] (frames): the positions whose
 * sigma exceeds tau on every pair inside times (e - s). */
int64_t md_reduce_holitom_gain(const float *sigma, int32_t n, int32_t s, int32_t e, float tau);
/* The partition of F frames into windows (at most max_window frames)
 * with the largest total gain (ties: the shorter window). start[0..w]
 * as md_reduce_dyseg's; *removed = the gain. Returns w or -1 (OOM). */
int32_t md_reduce_holitom_windows(const float *sigma, int32_t F, int32_t n, float tau,
                                  int32_t max_window, int32_t *start, int64_t *removed);
/* Merge rule: out = beta * x[c] + (1 - beta) * mean of x[m] over members
 * m != c (out = x[c] without members). */
void md_reduce_holitom_merge(const float *x, int32_t D, int32_t c, const int32_t *member,
                             int32_t n_member, float beta, float *out);
/* A whole clip x [F][n][D], a [F][n] (NULL: equal). Per window: static
 * positions -> window mean -> DPC-kNN to round(S * r') rows placed in the
 * window's first frame; dynamic rows per frame: top ceil(S_d * r') by a
 * (or all, select_dynamic false). Output per frame: its static rows first
 * (out_static set), then its dynamic rows ascending; out_frame, out_src as
 * FlashVID's. Returns the count or -1 when out of memory. */
int32_t md_reduce_holitom(const float *x, const float *a, int32_t F, int32_t n, int32_t D,
                          const struct md_holitom_params *p, float *out, int32_t *out_frame,
                          int32_t *out_src, bool *out_static);

#endif
