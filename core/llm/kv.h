/* The KV cache: per-layer keys and values in backend memory plus host-side
 * bookkeeping (lengths, positions, position policy).
 *
 * Layer l holds n entries in sequence order: rows 0..n-1 of k and v. Entry i
 * was rotated with RoPE position pos[i]. Layers are independent: token
 * reduction compacts some layers and not others (docs/reduction-methods.md
 * §1.4, §5.2), so every length and position is per layer. Attention masks
 * by entry order only, which stays causal under compaction. All data
 * movement goes through the backend (set_rows, keep_rows), so compaction
 * happens on the device. */
#ifndef MD_KV_H
#define MD_KV_H

#include "backend.h"
#include "mustdrop.h"

struct md_kv_layer {
    struct md_tensor k;     /* [capacity][n_embd_kv], F32 or F16 */
    struct md_tensor v;     /* [capacity][n_embd_kv] */
    int32_t n;              /* entries in use */
    int32_t *pos;           /* [capacity] RoPE position of each entry (host) */
    enum md_kv_pos_policy policy;
};

struct md_kv_cache {
    struct md_backend *be;
    int32_t n_layer;
    int32_t capacity;       /* entries per layer (n_ctx) */
    int32_t n_embd_kv;      /* n_head_kv * head_dim: one row */
    uint32_t type;          /* MD_TYPE_F32 or MD_TYPE_F16 */
    int32_t seq_pos;        /* next shared sequence position (n_past) */
    struct md_kv_layer *layers;   /* [n_layer] */
};

int md_kv_cache_new(struct md_backend *be, int32_t n_layer, int32_t capacity, int32_t n_embd_kv,
                    uint32_t type, struct md_kv_cache **out, char *err, size_t errlen);
void md_kv_cache_free(struct md_kv_cache *kv);
void md_kv_cache_clear(struct md_kv_cache *kv);

/* Append rows of k and v (F32 [n][n_embd_kv] backend tensors) to layer il
 * with the given positions. The caller has checked there is room. */
int md_kv_cache_append(struct md_kv_cache *kv, int32_t il, const struct md_tensor *k,
                       const struct md_tensor *v, const int32_t *pos);

/* Position of the i-th row of a batch about to be appended to layer il when
 * the batch carries no explicit position (seq_pos + i, or n + i). */
int32_t md_kv_cache_batch_pos(const struct md_kv_cache *kv, int32_t il, int32_t i);

/* Lengths of every layer and the sequence position, to undo a failed batch. */
struct md_kv_snapshot {
    int32_t *n;             /* [n_layer] */
    int32_t seq_pos;
};
int md_kv_snapshot_init(struct md_kv_snapshot *s, int32_t n_layer);
void md_kv_snapshot_free(struct md_kv_snapshot *s);
void md_kv_snapshot_take(const struct md_kv_cache *kv, struct md_kv_snapshot *s);
/* Truncate every layer back to the snapshot (entries appended since are
 * dropped; compactions since cannot be undone and are left as they are). */
void md_kv_snapshot_restore(struct md_kv_cache *kv, const struct md_kv_snapshot *s);

#endif
