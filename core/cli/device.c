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

static void note_used(struct cli_device *d, const char *backend)
{
    if (!strcmp(backend, "cuda"))
        snprintf(d->used, sizeof d->used, "cuda:%d", (int)d->index);
    else
        snprintf(d->used, sizeof d->used, "%s", backend);
}

/* One loader for both kinds of file: what differs is only the call. */
typedef int (*load_fn)(const char *path, const void *data, size_t size, const char *backend,
                       void *params, void **out, char *err, size_t errlen);

static int load_on(struct cli_device *d, load_fn fn, const char *path, const void *data,
                   size_t size, void *params, void **out, char *err, size_t errlen)
{
    if (d->backend) {
        int rc = fn(path, data, size, d->backend, params, out, err, errlen);
        if (rc == MD_OK)
            note_used(d, d->backend);
        return rc;
    }
    int rc = fn(path, data, size, "cuda", params, out, err, errlen);
    if (rc == MD_OK) {
        note_used(d, "cuda");
        return rc;
    }
    if (rc == MD_ERR_ABORTED)
        return rc;
    /* no GPU or no CUDA build is the normal case of auto, not worth a line */
    if (rc != MD_ERR_UNSUPPORTED)
        fprintf(stderr, "device auto: cuda not usable (%s), using the cpu\n", err);
    rc = fn(path, data, size, "cpu", params, out, err, errlen);
    if (rc == MD_OK)
        note_used(d, "cpu");
    return rc;
}

static int model_fn(const char *path, const void *data, size_t size, const char *backend,
                    void *params, void **out, char *err, size_t errlen)
{
    struct md_model_params *mp = params;
    struct md_model *m = NULL;
    mp->backend = backend;
    int rc = path ? md_model_load(path, mp, &m, err, errlen)
                  : md_model_load_memory(data, size, mp, &m, err, errlen);
    *out = m;
    return rc;
}

static int vision_fn(const char *path, const void *data, size_t size, const char *backend,
                     void *params, void **out, char *err, size_t errlen)
{
    struct md_vision_params *vp = params;
    struct md_vision *v = NULL;
    vp->backend = backend;
    int rc = path ? md_vision_load(path, vp, &v, err, errlen)
                  : md_vision_load_memory(data, size, vp, &v, err, errlen);
    *out = v;
    return rc;
}

int cli_model_load(struct cli_device *d, const char *path, const void *data, size_t size,
                   struct md_model_params *mp, struct md_model **out, char *err, size_t errlen)
{
    void *m = NULL;
    mp->device = d->index;
    int rc = load_on(d, model_fn, path, data, size, mp, &m, err, errlen);
    *out = m;
    return rc;
}

int cli_vision_load(struct cli_device *d, const char *path, const void *data, size_t size,
                    struct md_vision_params *vp, struct md_vision **out, char *err, size_t errlen)
{
    void *v = NULL;
    vp->device = d->index;
    int rc = load_on(d, vision_fn, path, data, size, vp, &v, err, errlen);
    *out = v;
    return rc;
}
