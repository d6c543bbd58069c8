#include "device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_device_parse(const char *s, struct cli_device *d)
{
    struct cli_device r = { NULL, 0, "" };
    if (!s || !strcmp(s, "auto")) {
        *d = r;
        return 0;
    }
    if (!strcmp(s, "cpu")) {
        r.backend = "cpu";
        *d = r;
        return 0;
    }
    if (strncmp(s, "cuda", 4))
        return -1;
    r.backend = "cuda";
    if (s[4] == ':') {
        char *end = NULL;
        if (s[5] < '0' || s[5] > '9')
            return -1;
        unsigned long v = strtoul(s + 5, &end, 10);
        if (*end || v >= 1024)
            return -1;
        r.index = (int32_t)v;
    } else if (s[4]) {
        return -1;
    }
    *d = r;
    return 0;
}

/* Where the first load goes: the backend named, which must be usable (else
 * its md_backend_check reason is the error), or for auto CUDA when usable and
 * the CPU otherwise, quietly: no GPU is the normal case. */
static int first_backend(const struct cli_device *d, const char **backend, char *err,
                         size_t errlen)
{
    char why[512];
    const char *want = d->backend ? d->backend : "cuda";
    int rc = md_backend_check(want, d->index, why, sizeof why);
    if (rc == MD_OK || !d->backend) {
        *backend = rc == MD_OK ? want : "cpu";
        return MD_OK;
    }
    snprintf(err, errlen, "--device %s:%d: %s", want, (int)d->index, why);
    return rc;
}

/* Auto loads on the CPU after a CUDA load failed because of the device (out
 * of memory, a CUDA error, a weight type the GPU does not take), saying so
 * once; a failure because of the file (or a cancel) is the answer. */
static bool falls_back(const struct cli_device *d, const char *backend, int rc, const char *err)
{
    if (d->backend || strcmp(backend, "cuda"))
        return false;
    if (rc != MD_ERR_NOMEM && rc != MD_ERR_BACKEND && rc != MD_ERR_UNSUPPORTED)
        return false;
    fprintf(stderr, "device auto: cannot load on cuda:%d (%s), using the cpu\n", (int)d->index,
            err);
    return true;
}

static void note_used(struct cli_device *d, const char *backend)
{
    if (!strcmp(backend, "cuda"))
        snprintf(d->used, sizeof d->used, "cuda:%d", (int)d->index);
    else
        snprintf(d->used, sizeof d->used, "%s", backend);
}

static int load_model(const char *path, const void *data, size_t size,
                      const struct md_model_params *mp, struct md_model **out, char *err,
                      size_t errlen)
{
    return path ? md_model_load(path, mp, out, err, errlen)
                : md_model_load_memory(data, size, mp, out, err, errlen);
}

static int load_vision(const char *path, const void *data, size_t size,
                       const struct md_vision_params *vp, struct md_vision **out, char *err,
                       size_t errlen)
{
    return path ? md_vision_load(path, vp, out, err, errlen)
                : md_vision_load_memory(data, size, vp, out, err, errlen);
}

int cli_model_load(struct cli_device *d, const char *path, const void *data, size_t size,
                   struct md_model_params *mp, struct md_model **out, char *err, size_t errlen)
{
    const char *backend;
    int rc = first_backend(d, &backend, err, errlen);
    if (rc)
        return rc;
    mp->device = d->index;
    mp->backend = backend;
    rc = load_model(path, data, size, mp, out, err, errlen);
    if (falls_back(d, backend, rc, err)) {
        mp->backend = backend = "cpu";
        rc = load_model(path, data, size, mp, out, err, errlen);
    }
    if (rc == MD_OK)
        note_used(d, backend);
    return rc;
}

int cli_vision_load(struct cli_device *d, const char *path, const void *data, size_t size,
                    struct md_vision_params *vp, struct md_vision **out, char *err, size_t errlen)
{
    const char *backend;
    int rc = first_backend(d, &backend, err, errlen);
    if (rc)
        return rc;
    vp->device = d->index;
    vp->backend = backend;
    rc = load_vision(path, data, size, vp, out, err, errlen);
    if (falls_back(d, backend, rc, err)) {
        vp->backend = backend = "cpu";
        rc = load_vision(path, data, size, vp, out, err, errlen);
    }
    if (rc == MD_OK)
        note_used(d, backend);
    return rc;
}
