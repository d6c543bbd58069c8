/* Reading the fixtures of models/make_test_vlm.py: the named-array
 * reference file (*.ref.bin, format in that script's docstring) and the
 * binary PPM test image. Test-only helpers. */
#ifndef MD_VLM_REF_H
#define MD_VLM_REF_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct vlm_array {
    char name[64];
    uint32_t dtype;      /* 0 f32, 1 i32, 2 u8 */
    uint32_t ndim;
    uint32_t dims[8];
    size_t count;        /* elements */
    void *data;
};

struct vlm_ref {
    uint32_t n;
    struct vlm_array *a;
};

static inline void *vlm_read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = n > 0 ? malloc((size_t)n) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *size = buf ? (size_t)n : 0;
    return buf;
}

static inline int vlm_ref_load(const char *path, struct vlm_ref *r)
{
    size_t size, off = 12;
    uint8_t *b = vlm_read_file(path, &size);
    memset(r, 0, sizeof *r);
    if (!b || size < 12 || memcmp(b, "MDVLMRF1", 8)) {
        free(b);
        return -1;
    }
    memcpy(&r->n, b + 8, 4);
    r->a = calloc(r->n ? r->n : 1, sizeof *r->a);
    for (uint32_t i = 0; i < r->n; i++) {
        struct vlm_array *a = &r->a[i];
        uint32_t nl;
        if (off + 4 > size) goto bad;
        memcpy(&nl, b + off, 4);
        off += 4;
        if (nl >= sizeof a->name || off + nl + 8 > size) goto bad;
        memcpy(a->name, b + off, nl);
        off += nl;
        memcpy(&a->dtype, b + off, 4);
        memcpy(&a->ndim, b + off + 4, 4);
        off += 8;
        if (a->ndim > 8 || off + 4 * a->ndim > size) goto bad;
        a->count = 1;
        for (uint32_t d = 0; d < a->ndim; d++) {
            memcpy(&a->dims[d], b + off, 4);
            off += 4;
            a->count *= a->dims[d];
        }
        size_t es = a->dtype == 2 ? 1 : 4;
        if (off + a->count * es > size) goto bad;
        a->data = malloc(a->count > 0 ? a->count * es : 1);
        memcpy(a->data, b + off, a->count * es);
        off += a->count * es;
    }
    free(b);
    return 0;
bad:
    free(b);
    return -1;
}

static inline const struct vlm_array *vlm_get(const struct vlm_ref *r, const char *name)
{
    for (uint32_t i = 0; i < r->n; i++)
        if (!strcmp(r->a[i].name, name))
            return &r->a[i];
    return NULL;
}

static inline void vlm_ref_free(struct vlm_ref *r)
{
    for (uint32_t i = 0; r->a && i < r->n; i++)
        free(r->a[i].data);
    free(r->a);
    memset(r, 0, sizeof *r);
}

/* Binary PPM (P6, maxval 255) into a malloc'd RGB8 buffer. */
static inline uint8_t *vlm_read_ppm(const char *path, int32_t *w, int32_t *h)
{
    size_t size;
    char *b = vlm_read_file(path, &size);
    int ww, hh, mx, n = 0;
    if (!b || sscanf(b, "P6 %d %d %d%n", &ww, &hh, &mx, &n) != 3 || mx != 255 || ww <= 0 ||
        hh <= 0 || (size_t)n + 1 + (size_t)ww * hh * 3 > size) {
        free(b);
        return NULL;
    }
    uint8_t *img = malloc((size_t)ww * hh * 3);
    memcpy(img, b + n + 1, (size_t)ww * hh * 3);
    free(b);
    *w = ww;
    *h = hh;
    return img;
}

/* max|a-b| / max|b| */
static inline double vlm_rel_err(const float *a, const float *b, size_t n)
{
    double md = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > md || d != d) md = d;
        if (fabs((double)b[i]) > mb) mb = fabs((double)b[i]);
    }
    return mb > 0 ? md / mb : md;
}

static inline double vlm_max_abs(const float *a, const float *b, size_t n)
{
    double md = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > md || d != d) md = d;
    }
    return md;
}

#endif
