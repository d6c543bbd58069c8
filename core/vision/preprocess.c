/* Image preprocessing as the reference (HF, PIL backend) processors do it.
 *
 * Resizing reproduces Pillow's ImagingResample for 8-bit RGB: separable
 * filters whose support widens with the downscale factor, coefficients
 * normalized then turned into 22-bit fixed point, a horizontal pass into an
 * 8-bit intermediate (only the source rows the vertical pass reads), then
 * the vertical pass (or the other way round, see md_image_resize), each
 * output rounded and clamped to 0..255. Doing the
 * same arithmetic (and Pillow 13's choice of pass order) gives the same
 * bytes as PIL, so the normalized pixels
 * equal HF's up to float rounding (see docs/vision.md for the measurement).
 *
 * Fits (md_vision_fit): LLaVA's expand2square with the mean colour, HF's
 * shortest-side resize + centre crop, or a plain stretch. Then
 * (u8/255 - mean)/std per channel into planar [3][S][S]. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vision-impl.h"

#define PRECISION_BITS (32 - 8 - 2)
#define MAX_SIDE 32768

struct resample_filter {
    double support;
    double (*fn)(double x);
};

static double bicubic_fn(double x)
{
    const double a = -0.5;   /* Pillow's (and Keys') a */
    if (x < 0.0)
        x = -x;
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    if (x < 2.0)
        return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
    return 0.0;
}

static double bilinear_fn(double x)
{
    if (x < 0.0)
        x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* One output position's taps: source start and count, fixed-point weights. */
struct coeffs {
    int32_t ksize;
    int32_t *bounds;   /* [out][2]: xmin, count */
    int32_t *k;        /* [out][ksize] */
};

static void coeffs_free(struct coeffs *c)
{
    free(c->bounds);
    free(c->k);
}

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for in -> out samples. */
static int coeffs_make(int32_t in, int32_t out, const struct resample_filter *f, struct coeffs *c)
{
    double scale = (double)in / out, fscale = scale < 1.0 ? 1.0 : scale;
    double support = f->support * fscale;
    c->ksize = (int32_t)ceil(support) * 2 + 1;
    c->bounds = malloc(sizeof(int32_t) * 2 * (size_t)out);
    c->k = malloc(sizeof(int32_t) * (size_t)c->ksize * (size_t)out);
    double *w = malloc(sizeof(double) * (size_t)c->ksize);
    if (!c->bounds || !c->k || !w) {
        free(w);
        return MD_ERR_NOMEM;
    }
    for (int32_t xx = 0; xx < out; xx++) {
        double center = (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / fscale;
        int32_t xmin = (int32_t)(center - support + 0.5), xmax = (int32_t)(center + support + 0.5);
        if (xmin < 0)
            xmin = 0;
        if (xmax > in)
            xmax = in;
        xmax -= xmin;
        for (int32_t x = 0; x < xmax; x++) {
            w[x] = f->fn((x + xmin - center + 0.5) * ss);
            ww += w[x];
        }
        int32_t *k = c->k + (size_t)xx * c->ksize;
        for (int32_t x = 0; x < c->ksize; x++) {
            double v = x < xmax ? (ww != 0.0 ? w[x] / ww : w[x]) : 0.0;
            k[x] = (int32_t)(v < 0 ? -0.5 + v * (1 << PRECISION_BITS) : 0.5 + v * (1 << PRECISION_BITS));
        }
        c->bounds[2 * xx] = xmin;
        c->bounds[2 * xx + 1] = xmax;
    }
    free(w);
    return MD_OK;
}

static uint8_t clip8(int32_t v)
{
    v >>= PRECISION_BITS;   /* arithmetic shift: floor, like Pillow */
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Horizontal pass over source rows [y0, y0 + rows) into dst[rows][dw][3]. */
static void pass_h(const uint8_t *src, int32_t sstride, int32_t y0, int32_t rows, int32_t dw,
                   const struct coeffs *c, uint8_t *dst)
{
    for (int32_t y = 0; y < rows; y++) {
        const uint8_t *s = src + (size_t)(y0 + y) * sstride;
        uint8_t *d = dst + (size_t)y * dw * 3;
        for (int32_t xx = 0; xx < dw; xx++) {
            int32_t xmin = c->bounds[2 * xx], n = c->bounds[2 * xx + 1];
            const int32_t *k = c->k + (size_t)xx * c->ksize;
            int32_t a0 = 1 << (PRECISION_BITS - 1), a1 = a0, a2 = a0;
            for (int32_t x = 0; x < n; x++) {
                const uint8_t *p = s + (size_t)(xmin + x) * 3;
                a0 += p[0] * k[x];
                a1 += p[1] * k[x];
                a2 += p[2] * k[x];
            }
            d[3 * xx] = clip8(a0);
            d[3 * xx + 1] = clip8(a1);
            d[3 * xx + 2] = clip8(a2);
        }
    }
}

/* Vertical pass: src rows are relative to y0 (the first row it reads). */
static void pass_v(const uint8_t *src, int32_t sstride, int32_t y0, int32_t dw, int32_t dh,
                   const struct coeffs *c, uint8_t *dst)
{
    for (int32_t yy = 0; yy < dh; yy++) {
        int32_t ymin = c->bounds[2 * yy] - y0, n = c->bounds[2 * yy + 1];
        const int32_t *k = c->k + (size_t)yy * c->ksize;
        uint8_t *d = dst + (size_t)yy * dw * 3;
        for (int32_t x = 0; x < dw * 3; x++) {
            int32_t acc = 1 << (PRECISION_BITS - 1);
            for (int32_t y = 0; y < n; y++)
                acc += src[(size_t)(ymin + y) * sstride + x] * k[y];
            d[x] = clip8(acc);
        }
    }
}

static void copy_rows(const uint8_t *src, int32_t sstride, int32_t w, int32_t h, uint8_t *dst)
{
    for (int32_t y = 0; y < h; y++)
        memcpy(dst + (size_t)y * w * 3, src + (size_t)y * sstride, (size_t)w * 3);
}

int md_image_resize(const uint8_t *src, int32_t sw, int32_t sh, int32_t sstride, uint8_t *dst,
                    int32_t dw, int32_t dh, enum md_vision_resample filter)
{
    if (!src || !dst || sw <= 0 || sh <= 0 || dw <= 0 || dh <= 0 || sw > MAX_SIDE ||
        sh > MAX_SIDE || dw > MAX_SIDE || dh > MAX_SIDE || sstride < 3 * sw)
        return MD_ERR_INVALID;
    static const struct resample_filter filters[2] = { { 2.0, bicubic_fn }, { 1.0, bilinear_fn } };
    const struct resample_filter *f = &filters[filter == MD_VISION_BILINEAR ? 1 : 0];
    struct coeffs ch = { 0 }, cv = { 0 };
    int rc = coeffs_make(sw, dw, f, &ch);
    if (!rc)
        rc = coeffs_make(sh, dh, f, &cv);
    bool need_h = dw != sw, need_v = dh != sh;
    /* Pillow 13: when the height shrinks more than twice as much (in
     * pixels) as the width, the vertical pass runs first (older Pillow
     * always ran the horizontal one first; the bytes differ). */
    bool v_first = sh - dh > 0 && sh - dh > 2 * (sw - dw);
    /* rows the vertical pass reads when it runs second */
    int32_t y0 = rc ? 0 : cv.bounds[0];
    int32_t y1 = rc ? 0 : cv.bounds[2 * (dh - 1)] + cv.bounds[2 * (dh - 1) + 1];
    size_t tmp_bytes = v_first ? (size_t)sw * 3 * (size_t)dh
                               : (size_t)dw * 3 * (size_t)(y1 - y0 > 0 ? y1 - y0 : 1);
    uint8_t *tmp = rc ? NULL : malloc(tmp_bytes);
    if (!rc && !tmp)
        rc = MD_ERR_NOMEM;
    if (!rc) {
        /* Pillow skips a pass whose size does not change. */
        if (need_h && need_v && v_first) {
            pass_v(src, sstride, 0, sw, dh, &cv, tmp);
            pass_h(tmp, sw * 3, 0, dh, dw, &ch, dst);
        } else if (need_h && need_v) {
            pass_h(src, sstride, y0, y1 - y0, dw, &ch, tmp);
            pass_v(tmp, dw * 3, y0, dw, dh, &cv, dst);
        } else if (need_h) {
            pass_h(src, sstride, 0, sh, dw, &ch, dst);
        } else if (need_v) {
            pass_v(src, sstride, 0, dw, dh, &cv, dst);
        } else {
            copy_rows(src, sstride, sw, sh, dst);
        }
    }
    free(tmp);
    coeffs_free(&ch);
    coeffs_free(&cv);
    return rc;
}

/* expand2square: the image centred on a square of the background colour
 * (LLaVA: tuple(int(x*255) for x in image_mean)). */
static uint8_t *pad_square(const uint8_t *rgb, int32_t w, int32_t h, int32_t stride,
                           const float mean[3], int32_t *side)
{
    int32_t s = w > h ? w : h;
    uint8_t *out = malloc((size_t)s * s * 3);
    if (!out)
        return NULL;
    uint8_t bg[3];
    for (int c = 0; c < 3; c++) {
        float m = mean[c] * 255.0f;
        bg[c] = (uint8_t)(m < 0 ? 0 : m > 255 ? 255 : (int)m);
    }
    for (size_t i = 0; i < (size_t)s * s; i++)
        memcpy(out + 3 * i, bg, 3);
    int32_t ox = (s - w) / 2, oy = (s - h) / 2;
    for (int32_t y = 0; y < h; y++)
        memcpy(out + ((size_t)(y + oy) * s + ox) * 3, rgb + (size_t)y * stride, (size_t)w * 3);
    *side = s;
    return out;
}

/* HF get_resize_output_image_size(default_to_square=False): the short side
 * becomes `size`, the long one int(size * long / short). */
static void shortest_edge_size(int32_t w, int32_t h, int32_t size, int32_t *ow, int32_t *oh)
{
    if (w <= h) {
        *ow = size;
        *oh = (int32_t)((int64_t)size * h / w);
    } else {
        *oh = size;
        *ow = (int32_t)((int64_t)size * w / h);
    }
}

void md_image_normalize(const uint8_t *img, int32_t S, int32_t stride, int32_t x0, int32_t y0,
                        const float mean[3], const float std[3], float *pixels)
{
    size_t plane = (size_t)S * S;
    for (int c = 0; c < 3; c++) {
        /* HF: rescale by 1/255 then (x - mean) / std in float32 */
        float m = mean[c], sd = std[c];
        for (int32_t y = 0; y < S; y++)
            for (int32_t x = 0; x < S; x++) {
                float u = (float)(img[(size_t)(y + y0) * stride + (size_t)(x + x0) * 3 + c] *
                                  (1.0 / 255.0));
                pixels[c * plane + (size_t)y * S + x] = (u - m) / sd;
            }
    }
}

int md_image_preprocess(const uint8_t *rgb, int32_t w, int32_t h, int32_t stride, int32_t size,
                        enum md_vision_fit fit, enum md_vision_resample filter,
                        const float mean[3], const float std[3], float *pixels)
{
    if (!rgb || !pixels || w <= 0 || h <= 0 || w > MAX_SIDE || h > MAX_SIDE || size <= 0 ||
        size > MAX_SIDE || stride < 3 * w)
        return MD_ERR_INVALID;
    const uint8_t *src = rgb;
    int32_t sw = w, sh = h, sstride = stride;
    uint8_t *padded = NULL;
    if (fit == MD_VISION_FIT_PAD && w != h) {
        padded = pad_square(rgb, w, h, stride, mean, &sw);
        if (!padded)
            return MD_ERR_NOMEM;
        src = padded;
        sh = sw;
        sstride = sw * 3;
    }
    int32_t rw = size, rh = size;
    if (fit == MD_VISION_FIT_CROP)
        shortest_edge_size(sw, sh, size, &rw, &rh);
    uint8_t *resized = malloc((size_t)rw * rh * 3);
    int rc = resized ? md_image_resize(src, sw, sh, sstride, resized, rw, rh, filter) : MD_ERR_NOMEM;
    if (!rc) {
        /* centre crop, HF: top = (h - crop) // 2 */
        int32_t x0 = (rw - size) / 2, y0 = (rh - size) / 2;
        md_image_normalize(resized, size, rw * 3, x0, y0, mean, std, pixels);
    }
    free(resized);
    free(padded);
    return rc;
}
