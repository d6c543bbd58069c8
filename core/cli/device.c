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

/* The backends a load tries, in order: the one named, or CUDA then the CPU. */
static int load_order(const struct cli_device *d, const char *order[2])
{
    if (d->backend) {
        order[0] = d->backend;
        return 1;
    }
    order[0] = "cuda";
    order[1] = "cpu";
    return 2;
}

/* After a load on backend returned rc: true when it is final (success, a
 * cancelled load, or the last backend to try). Auto falling back from CUDA
 * says why, unless CUDA is simply not there (no build, no device). */
static bool load_done(struct cli_device *d, const char *backend, int rc, const char *err,
                      bool last)
{
    if (rc == MD_OK) {
        if (!strcmp(backend, "cuda"))
            snprintf(d->used, sizeof d->used, "cuda:%d", (int)d->index);
        else
            snprintf(d->used, sizeof d->used, "%s", backend);
        return true;
    }
    if (last || rc == MD_ERR_ABORTED)
        return true;
    if (rc != MD_ERR_UNSUPPORTED)
        fprintf(stderr, "device auto: %s not usable (%s), using the cpu\n", backend, err);
    return false;
}

int cli_model_load(struct cli_device *d, const char *path, const void *data, size_t size,
                   struct md_model_params *mp, struct md_model **out, char *err, size_t errlen)
{
    const char *order[2];
    int n = load_order(d, order), rc = MD_ERR_INVALID;
    mp->device = d->index;
    for (int i = 0; i < n; i++) {
        mp->backend = order[i];
        rc = path ? md_model_load(path, mp, out, err, errlen)
                  : md_model_load_memory(data, size, mp, out, err, errlen);
        if (load_done(d, order[i], rc, err, i + 1 == n))
            break;
    }
    return rc;
}

int cli_vision_load(struct cli_device *d, const char *path, const void *data, size_t size,
                    struct md_vision_params *vp, struct md_vision **out, char *err, size_t errlen)
{
    const char *order[2];
    int n = load_order(d, order), rc = MD_ERR_INVALID;
    vp->device = d->index;
    for (int i = 0; i < n; i++) {
        vp->backend = order[i];
        rc = path ? md_vision_load(path, vp, out, err, errlen)
                  : md_vision_load_memory(data, size, vp, out, err, errlen);
        if (load_done(d, order[i], rc, err, i + 1 == n))
            break;
    }
    return rc;
}
