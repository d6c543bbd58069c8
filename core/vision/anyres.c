/* LLaVA-NeXT "AnyRes" as HF transformers does it (LlavaNextImageProcessor,
 * LlavaNextModel.pack_image_features), not as llama.cpp does
 * (docs/llama-cpp.md §7: no unpad, no newline there):
 *   1. best resolution from the grid pinpoints (max effective resolution,
 *      then least waste);
 *   2. resize keeping the aspect ratio into it (bicubic), pad centred with
 *      black, cut into S x S tiles, row-major;
 *   3. the base image: the whole frame stretched to S x S, first;
 *   4. after tower + projector: base tokens, then the tiles' tokens laid out
 *      as one (ny*n_side) x (nx*n_side) grid, unpadded back to the frame's
 *      aspect ratio, each row followed by image_newline when the file has it.
 * LLaVA-OneVision (LlavaOnevisionModel.pack_image_features) adds one step:
 * when the unpadded grid holds more than anyres_max tiles' worth of tokens
 * (ratio = sqrt(h*w / (max * n_side^2)) > 1.1) it is resized bilinearly to
 * int(h // ratio) x int(w // ratio) before the newlines go in.
 * Pinpoints are (height, width) pairs: the converter flattens HF's config
 * list as is, and HF reads its entries as (height, width). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vision-impl.h"

/* HF select_best_resolution. */
static void best_resolution(const struct md_clip_hparams *hp, int32_t w, int32_t h, int32_t *bw,
                            int32_t *bh)
{
    int64_t best_eff = -1, best_waste = INT64_MAX;
    for (int32_t i = 0; i < hp->n_pinpoints; i++) {
        int32_t ph = hp->pinpoints[2 * i], pw = hp->pinpoints[2 * i + 1];
        double scale = fmin((double)pw / w, (double)ph / h);
        int64_t dw = (int64_t)(w * scale), dh = (int64_t)(h * scale);
        int64_t eff = dw * dh < (int64_t)w * h ? dw * dh : (int64_t)w * h;
        int64_t waste = (int64_t)pw * ph - eff;
        if (eff > best_eff || (eff == best_eff && waste < best_waste)) {
            best_eff = eff;
            best_waste = waste;
            *bw = pw;
            *bh = ph;
        }
    }
}

/* HF get_patch_output_size: fit inside (tw, th) keeping the aspect ratio. */
static void fit_size(int32_t w, int32_t h, int32_t tw, int32_t th, int32_t *ow, int32_t *oh)
{
    double sw = (double)tw / w, sh = (double)th / h;
    if (sw < sh) {
        double v = ceil(h * sw);
        *ow = tw;
        *oh = v < th ? (int32_t)v : th;
    } else {
        double v = ceil(w * sh);
        *oh = th;
        *ow = v < tw ? (int32_t)v : tw;
    }
    if (*ow < 1)
        *ow = 1;
    if (*oh < 1)
        *oh = 1;
}

/* Python's int(round(x, 7)) for the positive values unpad_image sees. */
static int32_t round7_trunc(double x)
{
    return (int32_t)(nearbyint(x * 1e7) / 1e7);
}

int md_anyres_plan(const struct md_clip_hparams *hp, bool newline, int32_t w, int32_t h,
                   struct md_anyres_plan *p)
{
    if (hp->n_pinpoints <= 0 || w <= 0 || h <= 0)
        return MD_ERR_INVALID;
    int32_t S = hp->image_size, ns = hp->n_side;
    memset(p, 0, sizeof *p);
    best_resolution(hp, w, h, &p->bw, &p->bh);
    if (p->bw < S || p->bh < S || p->bw / S * (p->bh / S) > 64)
        return MD_ERR_UNSUPPORTED;
    p->nx = p->bw / S;
    p->ny = p->bh / S;
    fit_size(w, h, p->bw, p->bh, &p->rw, &p->rh);
    p->px = (p->bw - p->rw) / 2;
    p->py = (p->bh - p->rh) / 2;
    /* HF unpad_image on the (ny*ns) x (nx*ns) token grid */
    int32_t gh = p->ny * ns, gw = p->nx * ns;
    p->r0 = 0, p->r1 = gh, p->c0 = 0, p->c1 = gw;
    if ((double)w / h > (double)gw / gh) {
        int32_t nh = round7_trunc(h * ((double)gw / w)), pad = (gh - nh) / 2;
        p->r0 = pad, p->r1 = gh - pad;
    } else {
        int32_t nw = round7_trunc(w * ((double)gh / h)), pad = (gw - nw) / 2;
        p->c0 = pad, p->c1 = gw - pad;
    }
    /* a very thin frame can unpad to no rows or columns at all (HF slices
     * [k:k]): then only the base tokens (and newlines) remain */
    if (p->r1 < p->r0 || p->c1 < p->c0)
        return MD_ERR_UNSUPPORTED;
    p->n_tiles = 1 + p->nx * p->ny;
    p->newline = newline;
    p->oh = p->r1 - p->r0;
    p->ow = p->c1 - p->c0;
    if (hp->onevision && hp->anyres_max > 0) {
        double ratio = sqrt((double)p->oh * p->ow / ((double)hp->anyres_max * ns * ns));
        if (ratio > 1.1) {
            p->interp = true;
            p->oh = (int32_t)floor(p->oh / ratio);
            p->ow = (int32_t)floor(p->ow / ratio);
            if (p->oh < 1 || p->ow < 1)
                return MD_ERR_UNSUPPORTED;
        }
    }
    p->n_tokens = hp->n_patches + p->oh * (p->ow + (newline ? 1 : 0));
    return MD_OK;
}

/* pixels[n_tiles][3][S][S]: the base image, then the grid tiles. */
int md_anyres_pixels(const struct md_clip_hparams *hp, enum md_vision_resample filter,
                     const struct md_anyres_plan *p, const uint8_t *rgb, int32_t w, int32_t h,
                     int32_t stride, float *pixels)
{
    int32_t S = hp->image_size;
    size_t per = 3 * (size_t)S * S;
    uint8_t *base = malloc((size_t)S * S * 3), *fit = malloc((size_t)p->rw * p->rh * 3);
    uint8_t *canvas = calloc((size_t)p->bw * p->bh, 3);   /* black padding */
    int rc = base && fit && canvas ? MD_OK : MD_ERR_NOMEM;
    if (!rc)
        rc = md_image_resize(rgb, w, h, stride, base, S, S, filter);
    if (!rc)
        rc = md_image_resize(rgb, w, h, stride, fit, p->rw, p->rh, filter);
    if (!rc) {
        md_image_normalize(base, S, S * 3, 0, 0, hp->mean, hp->std, pixels);
        for (int32_t y = 0; y < p->rh; y++)
            memcpy(canvas + ((size_t)(y + p->py) * p->bw + p->px) * 3, fit + (size_t)y * p->rw * 3,
                   (size_t)p->rw * 3);
        for (int32_t ty = 0; ty < p->ny; ty++)
            for (int32_t tx = 0; tx < p->nx; tx++)
                md_image_normalize(canvas, S, p->bw * 3, tx * S, ty * S, hp->mean, hp->std,
                                   pixels + per * (size_t)(1 + ty * p->nx + tx));
    }
    free(base);
    free(fit);
    free(canvas);
    return rc;
}

void md_bilinear_resize(const float *src, int32_t sh, int32_t sw, int32_t E, float *dst,
                        int32_t dh, int32_t dw)
{
    /* torch's area_pixel_compute_source_index in float, clamped at 0 */
    float sy = (float)sh / (float)dh, sx = (float)sw / (float)dw;
    for (int32_t y = 0; y < dh; y++) {
        float fy = sy * ((float)y + 0.5f) - 0.5f;
        if (fy < 0)
            fy = 0;
        int32_t y0 = (int32_t)fy, y1 = y0 + (y0 < sh - 1 ? 1 : 0);
        float ly1 = fy - (float)y0, ly0 = 1.0f - ly1;
        for (int32_t x = 0; x < dw; x++) {
            float fx = sx * ((float)x + 0.5f) - 0.5f;
            if (fx < 0)
                fx = 0;
            int32_t x0 = (int32_t)fx, x1 = x0 + (x0 < sw - 1 ? 1 : 0);
            float lx1 = fx - (float)x0, lx0 = 1.0f - lx1;
            const float *a = src + ((size_t)y0 * sw + x0) * E, *b = src + ((size_t)y0 * sw + x1) * E;
            const float *c = src + ((size_t)y1 * sw + x0) * E, *d = src + ((size_t)y1 * sw + x1) * E;
            float *o = dst + ((size_t)y * dw + x) * E;
            for (int32_t e = 0; e < E; e++)
                o[e] = ly0 * (lx0 * a[e] + lx1 * b[e]) + ly1 * (lx0 * c[e] + lx1 * d[e]);
        }
    }
}

/* feat[n_tiles][n_patches][E] -> out[n_tokens][E]. */
int md_anyres_pack(const struct md_clip_hparams *hp, const struct md_anyres_plan *p,
                   const float *feat, const float *newline, float *out)
{
    int32_t ns = hp->n_side, E = hp->n_embd_out;
    size_t row = sizeof(float) * (size_t)E;
    int32_t uh = p->r1 - p->r0, uw = p->c1 - p->c0;
    float *grid = NULL, *small = NULL;
    if (p->interp) {
        grid = malloc(row * (size_t)uh * (size_t)uw);
        small = malloc(row * (size_t)p->oh * (size_t)p->ow);
        if (!grid || !small) {
            free(grid);
            free(small);
            return MD_ERR_NOMEM;
        }
    }
    memcpy(out, feat, row * (size_t)hp->n_patches);
    float *o = out + (size_t)hp->n_patches * E;
    float *g = grid;
    for (int32_t gy = p->r0; gy < p->r1; gy++) {
        for (int32_t gx = p->c0; gx < p->c1; gx++) {
            int32_t tile = 1 + (gy / ns) * p->nx + gx / ns;
            size_t tok = (size_t)(gy % ns) * ns + (size_t)(gx % ns);
            float *dst = p->interp ? g : o;
            memcpy(dst, feat + ((size_t)tile * hp->n_patches + tok) * E, row);
            if (p->interp)
                g += E;
            else
                o += E;
        }
        if (p->newline && !p->interp) {   /* HF appends it even to a row of no columns */
            memcpy(o, newline, row);
            o += E;
        }
    }
    if (p->interp) {
        md_bilinear_resize(grid, uh, uw, E, small, p->oh, p->ow);
        for (int32_t y = 0; y < p->oh; y++) {
            memcpy(o, small + (size_t)y * p->ow * E, row * (size_t)p->ow);
            o += (size_t)p->ow * E;
            if (p->newline) {
                memcpy(o, newline, row);
                o += E;
            }
        }
    }
    free(grid);
    free(small);
    return MD_OK;
}
