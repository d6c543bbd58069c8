/* Contexts: parameters, buffers made once, KV cache, timings, the last
 * error. llm.c (the forward) calls into this file, never the reverse. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "llm.h"
#include "md-cuda.h"

int md_llm_error(struct md_context *ctx, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err, sizeof ctx->err, fmt, ap);
    va_end(ap);
    /* a device backend keeps its own words (the CUDA error string): they
     * belong in the message, since the library does not print them */
    const char *why = rc == MD_ERR_BACKEND && ctx->be ? md_backend_cuda_last_error(ctx->be) : "";
    size_t n = strlen(ctx->err);
    if (*why && n + 4 < sizeof ctx->err)
        snprintf(ctx->err + n, sizeof ctx->err - n, " (%s)", why);
    return rc;
}

static int32_t online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n < 4096 ? (int32_t)n : 1;
}

struct md_context_params md_context_default_params(void)
{
    struct md_context_params p = {
        .n_ctx = 0,
        .n_batch = 512,
        .n_threads = online_cpus(),
        .isa = NULL,
        .kv_type = MD_KV_F32,
        .abort_callback = NULL,
        .abort_callback_user = NULL,
        .exact_matmul = false,
    };
    return p;
}

/* Activation buffers: every one sized for n_batch rows, allocated here once. */
static int build_buffers(struct md_context *ctx)
{
    struct md_backend *be = ctx->be;
    const struct md_hparams *hp = &ctx->model->hp;
    int64_t nb = ctx->params.n_batch, q = (int64_t)hp->n_head * hp->head_dim;
    int64_t kv = (int64_t)hp->n_head_kv * hp->head_dim;
    struct { struct md_tensor *t; uint32_t type; int64_t ne0, ne1; } bufs[] = {
        { &ctx->x, MD_TYPE_F32, hp->n_embd, nb },
        { &ctx->xb, MD_TYPE_F32, hp->n_embd, nb },
        { &ctx->q, MD_TYPE_F32, q, nb },
        { &ctx->k, MD_TYPE_F32, kv, nb },
        { &ctx->v, MD_TYPE_F32, kv, nb },
        { &ctx->att, MD_TYPE_F32, q, nb },
        { &ctx->lse, MD_TYPE_F32, nb, hp->n_head },
        { &ctx->hb, MD_TYPE_F32, hp->n_ff, nb },
        { &ctx->hb2, MD_TYPE_F32, hp->n_ff, nb },
        { &ctx->ids, MD_TYPE_I32, nb, 1 },
        { &ctx->pos, MD_TYPE_I32, nb, 1 },
    };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        int rc = md_backend_alloc_2d(be, bufs[i].t, bufs[i].type, bufs[i].ne0, bufs[i].ne1);
        if (rc)
            return rc;
    }
    ctx->row_pos = calloc((size_t)nb, sizeof(int32_t));
    ctx->layer_pos = calloc((size_t)nb, sizeof(int32_t));
    ctx->ids_host = calloc((size_t)nb, sizeof(int32_t));
    return ctx->row_pos && ctx->layer_pos && ctx->ids_host ? MD_OK : MD_ERR_NOMEM;
}

/* The n_batch-row buffers (not the logits chunk, sized on its own). */
static void free_buffers(struct md_context *ctx)
{
    struct md_tensor *ts[] = { &ctx->x, &ctx->xb, &ctx->q, &ctx->k, &ctx->v, &ctx->att,
                               &ctx->lse, &ctx->hb, &ctx->hb2, &ctx->ids, &ctx->pos };
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        if (ts[i]->data)
            ctx->be->ops->tensor_free(ctx->be, ts[i]);
    free(ctx->row_pos);
    free(ctx->layer_pos);
    free(ctx->ids_host);
    ctx->row_pos = ctx->layer_pos = ctx->ids_host = NULL;
}

int md_context_reserve_batch(struct md_context *ctx, int32_t n_batch)
{
    if (!ctx || n_batch <= 0)
        return MD_ERR_INVALID;
    if (n_batch > ctx->params.n_ctx)
        n_batch = ctx->params.n_ctx;
    int32_t old = ctx->params.n_batch;
    if (n_batch <= old)
        return MD_OK;
    free_buffers(ctx);
    ctx->params.n_batch = n_batch;
    if (build_buffers(ctx) == MD_OK)
        return MD_OK;
    /* back to the size that worked, so the context stays usable */
    free_buffers(ctx);
    ctx->params.n_batch = old;
    int rc = build_buffers(ctx);
    if (rc)   /* no rows at all: every later pass is refused, none touches a missing buffer */
        ctx->params.n_batch = 0;
    return md_llm_error(ctx, MD_ERR_NOMEM, "out of memory for activation buffers of %d rows%s",
                        n_batch, rc ? " (and for the previous size: the context is unusable)"
                                    : "");
}

static int check_params(const struct md_model *m, struct md_context_params *p, char *err,
                        size_t errlen)
{
    if (p->n_ctx == 0)
        p->n_ctx = m->hp.n_ctx_train > 0 && m->hp.n_ctx_train < 4096 ? m->hp.n_ctx_train : 4096;
    if (p->n_threads <= 0)
        p->n_threads = online_cpus();
    if (p->n_batch <= 0)
        p->n_batch = 512;
    if (p->n_ctx < 0 || p->n_ctx > (1 << 24)) {
        snprintf(err, errlen, "n_ctx %d out of range [1, %d]", p->n_ctx, 1 << 24);
        return MD_ERR_INVALID;
    }
    if (p->n_batch > p->n_ctx)
        p->n_batch = p->n_ctx;   /* a batch can never be larger than the cache */
    if (p->kv_type != MD_KV_F32 && p->kv_type != MD_KV_F16) {
        snprintf(err, errlen, "unknown kv_type %d (MD_KV_F32 or MD_KV_F16)", (int)p->kv_type);
        return MD_ERR_INVALID;
    }
    if (p->n_threads > 1024) {
        snprintf(err, errlen, "n_threads %d out of range", p->n_threads);
        return MD_ERR_INVALID;
    }
    return MD_OK;
}

int md_context_new(struct md_model *model, const struct md_context_params *params,
                   struct md_context **out, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!out)
        return MD_ERR_INVALID;
    *out = NULL;
    if (!model || !model->layers) {
        snprintf(err, errlen, model ? "model was loaded vocab_only: no weights to run"
                                    : "no model");
        return MD_ERR_INVALID;
    }
    struct md_context_params p = params ? *params : md_context_default_params();
    int rc = check_params(model, &p, err, errlen);
    if (rc)
        return rc;
    struct md_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        snprintf(err, errlen, "out of memory");
        return MD_ERR_NOMEM;
    }
    ctx->model = model;
    ctx->params = p;
    ctx->timings.load_ms = model->load_ms;
    ctx->last_layer = -1;
    struct md_backend_params bp = { .n_threads = p.n_threads, .isa = p.isa, .device = model->device,
                                    .exact_matmul = p.exact_matmul };
    rc = md_backend_new(model->backend_name, &bp, &ctx->be, err, errlen);
    const struct md_hparams *hp = &model->hp;
    if (!rc)
        rc = md_kv_cache_new(ctx->be, hp->n_layer, p.n_ctx, hp->n_head_kv * hp->head_dim,
                             p.kv_type == MD_KV_F16 ? MD_TYPE_F16 : MD_TYPE_F32, &ctx->kv,
                             err, errlen);
    if (!rc && (rc = md_kv_snapshot_init(&ctx->snap, hp->n_layer)) == MD_OK &&
        (rc = build_buffers(ctx)) != MD_OK)
        snprintf(err, errlen, "out of memory for activation buffers (n_batch %d)", p.n_batch);
    if (rc) {
        if (rc == MD_ERR_NOMEM && err && errlen && !err[0])
            snprintf(err, errlen, "out of memory");
        md_context_free(ctx);
        return rc;
    }
    *out = ctx;
    return MD_OK;
}

void md_context_free(struct md_context *ctx)
{
    if (!ctx)
        return;
    if (ctx->be) {
        free_buffers(ctx);
        if (ctx->out.data)
            ctx->be->ops->tensor_free(ctx->be, &ctx->out);
        md_kv_cache_free(ctx->kv);
        md_backend_free(ctx->be);
    }
    md_kv_snapshot_free(&ctx->snap);
    free(ctx->logits);
    free(ctx);
}

const struct md_model *md_context_model(const struct md_context *ctx) { return ctx ? ctx->model : NULL; }
int32_t md_context_n_ctx(const struct md_context *ctx) { return ctx ? ctx->params.n_ctx : 0; }
int32_t md_context_n_batch(const struct md_context *ctx) { return ctx ? ctx->params.n_batch : 0; }
int32_t md_context_n_threads(const struct md_context *ctx) { return ctx ? ctx->params.n_threads : 0; }
const char *md_context_error(const struct md_context *ctx) { return ctx ? ctx->err : ""; }
struct md_kv_cache *md_context_kv(struct md_context *ctx) { return ctx ? ctx->kv : NULL; }

const char *md_context_isa(const struct md_context *ctx)
{
    return ctx ? md_backend_cpu_isa(ctx->be) : "";
}

int32_t md_context_n_past(const struct md_context *ctx)
{
    return ctx ? ctx->kv->seq_pos : 0;
}

void md_kv_clear(struct md_context *ctx)
{
    if (!ctx)
        return;
    md_kv_cache_clear(ctx->kv);
    ctx->n_logits = 0;
}

int md_kv_truncate(struct md_context *ctx, int32_t n)
{
    if (!ctx || n < 0)
        return MD_ERR_INVALID;
    for (int32_t il = 0; il < ctx->kv->n_layer; il++)
        if (ctx->kv->layers[il].n < n)
            return md_llm_error(ctx, MD_ERR_INVALID, "layer %d holds only %d entries (< %d)", il,
                                ctx->kv->layers[il].n, n);
    for (int32_t il = 0; il < ctx->kv->n_layer; il++)
        ctx->kv->layers[il].n = n;
    ctx->kv->seq_pos = n;
    return MD_OK;
}

struct md_timings md_get_timings(const struct md_context *ctx)
{
    struct md_timings t = { 0 };
    return ctx ? ctx->timings : t;
}

void md_reset_timings(struct md_context *ctx)
{
    if (!ctx)
        return;
    double load = ctx->timings.load_ms;
    memset(&ctx->timings, 0, sizeof ctx->timings);
    ctx->timings.load_ms = load;
}
