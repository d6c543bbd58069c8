/* KV cache storage and compaction. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"

int md_kv_cache_new(struct md_backend *be, int32_t n_layer, int32_t capacity, int32_t n_embd_kv,
                    uint32_t type, struct md_kv_cache **out, char *err, size_t errlen)
{
    *out = NULL;
    if (n_layer <= 0 || capacity <= 0 || n_embd_kv <= 0 ||
        (type != MD_TYPE_F32 && type != MD_TYPE_F16)) {
        snprintf(err, errlen, "bad KV cache shape: %d layers x %d entries x %d, type %u",
                 n_layer, capacity, n_embd_kv, type);
        return MD_ERR_INVALID;
    }
    struct md_kv_cache *kv = calloc(1, sizeof *kv);
    if (!kv || !(kv->layers = calloc((size_t)n_layer, sizeof *kv->layers))) {
        free(kv);
        snprintf(err, errlen, "out of memory for the KV cache");
        return MD_ERR_NOMEM;
    }
    kv->be = be;
    kv->n_layer = n_layer;
    kv->capacity = capacity;
    kv->n_embd_kv = n_embd_kv;
    kv->type = type;
    for (int32_t l = 0; l < n_layer; l++) {
        struct md_kv_layer *L = &kv->layers[l];
        int rc = md_backend_alloc_2d(be, &L->k, type, n_embd_kv, capacity);
        if (!rc)
            rc = md_backend_alloc_2d(be, &L->v, type, n_embd_kv, capacity);
        L->pos = calloc((size_t)capacity, sizeof(int32_t));
        if (rc || !L->pos) {
            snprintf(err, errlen, "out of memory for the KV cache (%d layers x %d entries x %d %s)",
                     n_layer, capacity, n_embd_kv, md_type_name(type));
            md_kv_cache_free(kv);
            return MD_ERR_NOMEM;
        }
    }
    *out = kv;
    return MD_OK;
}

void md_kv_cache_free(struct md_kv_cache *kv)
{
    if (!kv)
        return;
    for (int32_t l = 0; l < kv->n_layer; l++) {
        struct md_kv_layer *L = &kv->layers[l];
        if (L->k.data)
            kv->be->ops->tensor_free(kv->be, &L->k);
        if (L->v.data)
            kv->be->ops->tensor_free(kv->be, &L->v);
        free(L->pos);
    }
    free(kv->layers);
    free(kv);
}

void md_kv_cache_clear(struct md_kv_cache *kv)
{
    if (!kv)
        return;
    for (int32_t l = 0; l < kv->n_layer; l++)
        kv->layers[l].n = 0;
    kv->seq_pos = 0;
}

int md_kv_cache_append(struct md_kv_cache *kv, int32_t il, const struct md_tensor *k,
                       const struct md_tensor *v, const int32_t *pos)
{
    struct md_kv_layer *L = &kv->layers[il];
    int64_t n = md_tensor_nrows(k);
    if (n > kv->capacity - L->n)
        return MD_ERR_CONTEXT_FULL;
    int rc = kv->be->ops->set_rows(kv->be, &L->k, L->n, k);
    if (!rc)
        rc = kv->be->ops->set_rows(kv->be, &L->v, L->n, v);
    if (rc)
        return rc;
    memcpy(L->pos + L->n, pos, sizeof(int32_t) * (size_t)n);
    L->n += (int32_t)n;
    return MD_OK;
}

int32_t md_kv_cache_batch_pos(const struct md_kv_cache *kv, int32_t il, int32_t i)
{
    const struct md_kv_layer *L = &kv->layers[il];
    return (L->policy == MD_KV_POS_LAYER_LEN ? L->n : kv->seq_pos) + i;
}

/* ---- public per-layer API (mustdrop.h) ------------------------------- */

static bool layer_ok(const struct md_kv_cache *kv, int32_t il)
{
    return kv && il >= 0 && il < kv->n_layer;
}

int32_t md_kv_cache_n_layer(const struct md_kv_cache *kv) { return kv ? kv->n_layer : 0; }
int32_t md_kv_cache_capacity(const struct md_kv_cache *kv) { return kv ? kv->capacity : 0; }
int32_t md_kv_cache_seq_pos(const struct md_kv_cache *kv) { return kv ? kv->seq_pos : 0; }

int32_t md_kv_cache_len(const struct md_kv_cache *kv, int32_t il)
{
    return layer_ok(kv, il) ? kv->layers[il].n : 0;
}

const int32_t *md_kv_cache_pos(const struct md_kv_cache *kv, int32_t il)
{
    return layer_ok(kv, il) ? kv->layers[il].pos : NULL;
}

int md_kv_cache_keep(struct md_kv_cache *kv, int32_t il, const int32_t *idx, int32_t n)
{
    if (!layer_ok(kv, il) || n < 0 || (n > 0 && !idx))
        return MD_ERR_INVALID;
    struct md_kv_layer *L = &kv->layers[il];
    if (n > L->n)
        return MD_ERR_INVALID;
    /* Validate everything before moving anything, so a bad list changes nothing. */
    for (int32_t i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= L->n || (i > 0 && idx[i] <= idx[i - 1]))
            return MD_ERR_INVALID;
    struct md_tensor k = md_tensor_rows(&L->k, 0, L->n), v = md_tensor_rows(&L->v, 0, L->n);
    int rc = kv->be->ops->keep_rows(kv->be, &k, idx, n);
    if (!rc)
        rc = kv->be->ops->keep_rows(kv->be, &v, idx, n);
    if (rc)
        return rc;
    for (int32_t i = 0; i < n; i++)
        L->pos[i] = L->pos[idx[i]];
    L->n = n;
    return MD_OK;
}

int md_kv_cache_truncate(struct md_kv_cache *kv, int32_t il, int32_t n)
{
    if (!layer_ok(kv, il) || n < 0 || n > kv->layers[il].n)
        return MD_ERR_INVALID;
    kv->layers[il].n = n;
    return MD_OK;
}

int md_kv_cache_set_pos_policy(struct md_kv_cache *kv, int32_t il, enum md_kv_pos_policy policy)
{
    if (!kv || (policy != MD_KV_POS_SEQUENCE && policy != MD_KV_POS_LAYER_LEN))
        return MD_ERR_INVALID;
    if (il == -1) {
        for (int32_t l = 0; l < kv->n_layer; l++)
            kv->layers[l].policy = policy;
        return MD_OK;
    }
    if (!layer_ok(kv, il))
        return MD_ERR_INVALID;
    kv->layers[il].policy = policy;
    return MD_OK;
}

enum md_kv_pos_policy md_kv_cache_pos_policy(const struct md_kv_cache *kv, int32_t il)
{
    return layer_ok(kv, il) ? kv->layers[il].policy : MD_KV_POS_SEQUENCE;
}

int32_t md_kv_cache_next_pos(const struct md_kv_cache *kv, int32_t il)
{
    return layer_ok(kv, il) ? md_kv_cache_batch_pos(kv, il, 0) : 0;
}

int md_kv_cache_set_seq_pos(struct md_kv_cache *kv, int32_t pos)
{
    if (!kv || pos < 0)
        return MD_ERR_INVALID;
    kv->seq_pos = pos;
    return MD_OK;
}

size_t md_kv_cache_bytes(const struct md_kv_cache *kv)
{
    if (!kv)
        return 0;
    size_t row = (size_t)kv->n_embd_kv * (kv->type == MD_TYPE_F16 ? 2 : 4), total = 0;
    for (int32_t l = 0; l < kv->n_layer; l++)
        total += 2 * row * (size_t)kv->layers[l].n;
    return total;
}

/* ---- snapshots ------------------------------------------------------- */

int md_kv_snapshot_init(struct md_kv_snapshot *s, int32_t n_layer)
{
    s->n = calloc((size_t)n_layer, sizeof(int32_t));
    s->seq_pos = 0;
    return s->n ? MD_OK : MD_ERR_NOMEM;
}

void md_kv_snapshot_free(struct md_kv_snapshot *s)
{
    free(s->n);
    s->n = NULL;
}

void md_kv_snapshot_take(const struct md_kv_cache *kv, struct md_kv_snapshot *s)
{
    for (int32_t l = 0; l < kv->n_layer; l++)
        s->n[l] = kv->layers[l].n;
    s->seq_pos = kv->seq_pos;
}

void md_kv_snapshot_restore(struct md_kv_cache *kv, const struct md_kv_snapshot *s)
{
    for (int32_t l = 0; l < kv->n_layer; l++)
        if (kv->layers[l].n > s->n[l])
            kv->layers[l].n = s->n[l];
    kv->seq_pos = s->seq_pos;
}
