/* Tensor helpers shared by every backend. Kept apart from the backend
 * registry (backend.c) because the CUDA module (cuda/) links this file into
 * itself: a module loaded RTLD_LOCAL cannot resolve symbols from its host. */
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
