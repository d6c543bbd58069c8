/* Tensor helpers shared by every backend. Kept apart from the backend
 * registry (backend.c) because the CUDA module (cuda/) links this file into
 * itself: a module loaded RTLD_LOCAL cannot resolve symbols from its host. */
#include <stdbool.h>
#include <string.h>

#include "backend.h"

size_t md_tensor_row_bytes(const struct md_tensor *t)
{
    if (t->type == MD_TYPE_I32)
        return (size_t)t->ne[0] * sizeof(int32_t);
    int64_t rb = md_type_row_bytes(t->type, t->ne[0]);
    return rb < 0 ? 0 : (size_t)rb;
}

int64_t md_tensor_nrows(const struct md_tensor *t)
{
    return t->ne[1] * t->ne[2] * t->ne[3];
}

struct md_tensor md_tensor_rows(const struct md_tensor *t, int64_t row0, int64_t n)
{
    struct md_tensor v = *t;
    size_t rb = md_tensor_row_bytes(t);
    v.ne[1] = n;
    v.ne[2] = v.ne[3] = 1;
    v.nbytes = rb * (size_t)n;
    v.data = t->data ? (char *)t->data + rb * (size_t)row0 : NULL;
    v.owned = false;
    return v;
}

int md_backend_alloc_2d(struct md_backend *be, struct md_tensor *t, uint32_t type,
                        int64_t ne0, int64_t ne1)
{
    memset(t, 0, sizeof *t);
    t->type = type;
    t->ne[0] = ne0;
    t->ne[1] = ne1;
    t->ne[2] = t->ne[3] = 1;
    return be->ops->tensor_alloc(be, t);
}

static bool is_f32(const struct md_tensor *t)
{
    return t && t->type == MD_TYPE_F32 && t->data;
}

static bool kv_type_ok(const struct md_tensor *t)
{
    return t && t->data && (t->type == MD_TYPE_F32 || t->type == MD_TYPE_F16);
}

int md_attn_check_args(const struct md_attn_params *p, const struct md_tensor *q,
                       const struct md_tensor *k, const struct md_tensor *v,
                       const struct md_tensor *out, const struct md_tensor *lse)
{
    if (!p || p->n_q < 0 || p->n_kv < 0 || p->n_head <= 0 || p->n_head_kv <= 0 ||
        p->head_dim <= 0 || p->n_head % p->n_head_kv)
        return MD_ERR_INVALID;
    int64_t row_q = (int64_t)p->n_head * p->head_dim, row_kv = (int64_t)p->n_head_kv * p->head_dim;
    if (!is_f32(q) || !is_f32(out) || q->ne[0] != row_q || out->ne[0] != row_q ||
        md_tensor_nrows(q) < p->n_q || md_tensor_nrows(out) < p->n_q ||
        !kv_type_ok(k) || !kv_type_ok(v) || k->type != v->type ||
        k->ne[0] != row_kv || v->ne[0] != row_kv ||
        md_tensor_nrows(k) < p->n_kv || md_tensor_nrows(v) < p->n_kv ||
        (lse && (!is_f32(lse) || lse->ne[0] * md_tensor_nrows(lse) < (int64_t)p->n_head * p->n_q)))
        return MD_ERR_INVALID;
    return MD_OK;
}
