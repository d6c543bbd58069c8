/* Backend registry and tensor helpers shared by all backends. */
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "mustdrop.h"

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

int md_backend_new(const char *name, const struct md_backend_params *p,
                   struct md_backend **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!name || !strcmp(name, "cpu"))
        return md_backend_cpu_new(p, out, err, errlen);
#ifdef MD_HAVE_CUDA
    if (!strcmp(name, "cuda"))
        return md_backend_cuda_new(p, out, err, errlen);
    snprintf(err, errlen, "unknown backend '%s' (available: cpu, cuda)", name);
#else
    snprintf(err, errlen, "backend '%s' is not available in this build (available: cpu)", name);
#endif
    return MD_ERR_UNSUPPORTED;
}

void md_backend_free(struct md_backend *be)
{
    if (be)
        be->ops->destroy(be);
}
