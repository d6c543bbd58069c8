/* A stand-in for libmustdrop-cuda.so with the same entry and table, so that
 * the module loader (core/llm/backend.c) and the CLI's device choice can be
 * tested without a GPU. The environment sets what it pretends:
 *   FAKE_CUDA_DEVICES  number of devices (default 2; 0: none, with a reason)
 *   FAKE_CUDA_NEW      "nomem", "backend", "unsupported": backend_new fails
 *                      so; otherwise it makes an instance whose memory ops
 *                      fail with MD_ERR_BACKEND (a device failing mid-load).
 * Built with FAKE_MODULE_ABI=0 (stale/) it is a module of another version. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

#ifndef FAKE_MODULE_ABI
#define FAKE_MODULE_ABI MD_BACKEND_MODULE_ABI
#endif

#define FAKE_ERROR "fake device error"

static int fake_count(char *reason, size_t reason_len)
{
    const char *s = getenv("FAKE_CUDA_DEVICES");
    int n = s ? atoi(s) : 2;
    if (n <= 0)
        snprintf(reason, reason_len, "fake: no driver");
    return n > 0 ? n : 0;
}

static int fake_info(int index, struct md_cuda_device_info *info, char *reason,
                     size_t reason_len)
{
    snprintf(reason, reason_len, "fake: no device information");
    return -1;
}

static void fake_destroy(struct md_backend *be) { free(be); }

static int fake_alloc(struct md_backend *be, struct md_tensor *t) { return MD_ERR_BACKEND; }

static int fake_weight(struct md_backend *be, struct md_tensor *t, const void *host)
{
    return MD_ERR_BACKEND;
}

static void fake_free(struct md_backend *be, struct md_tensor *t) { t->data = NULL; }

static int fake_set(struct md_backend *be, struct md_tensor *t, size_t off, const void *src,
                    size_t n)
{
    return MD_ERR_BACKEND;
}

static int fake_get(struct md_backend *be, const struct md_tensor *t, size_t off, void *dst,
                    size_t n)
{
    return MD_ERR_BACKEND;
}

/* Compute ops stay NULL: nothing reaches them, every tensor fails first. */
static const struct md_backend_ops fake_ops = {
    .name = "cuda",
    .destroy = fake_destroy,
    .tensor_alloc = fake_alloc,
    .tensor_weight = fake_weight,
    .tensor_free = fake_free,
    .tensor_set = fake_set,
    .tensor_get = fake_get,
};

static int fake_new(const struct md_backend_params *p, struct md_backend **out, char *err,
                    size_t errlen)
{
    const char *mode = getenv("FAKE_CUDA_NEW");
    int rc = !mode ? MD_OK : !strcmp(mode, "nomem") ? MD_ERR_NOMEM
           : !strcmp(mode, "backend") ? MD_ERR_BACKEND
           : !strcmp(mode, "unsupported") ? MD_ERR_UNSUPPORTED : MD_OK;
    if (rc) {
        snprintf(err, errlen, "fake backend_new: %s", mode);
        return rc;
    }
    *out = calloc(1, sizeof **out);
    if (!*out)
        return MD_ERR_NOMEM;
    (*out)->ops = &fake_ops;
    return MD_OK;
}

static const char *fake_last_error(const struct md_backend *be) { return FAKE_ERROR; }

static const struct md_backend_module fake_module = {
    FAKE_MODULE_ABI, sizeof(struct md_backend_ops), sizeof(struct md_tensor), "cuda",
    fake_new, fake_count, fake_info, fake_last_error,
};

const struct md_backend_module *md_backend_module_v1(void);

const struct md_backend_module *md_backend_module_v1(void)
{
    return &fake_module;
}
