/* The backend's RoPE against the formula, in both pair layouts:
 *   normal (arch llama): rotate (x[2i], x[2i+1]) by theta_i
 *   neox   (arch qwen2): rotate (x[i], x[i + n_rot/2]) by theta_i
 *   theta_i = pos * freq_scale * base^(-2i/n_rot) / factor_i
 * with partial rotation (dims >= n_rot untouched), several heads per row,
 * and large positions. */
#include "md_test.h"
#include "backend.h"

static double lcg(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static void naive(const float *x, float *o, int n_head, int hd, int n_rot, int neox, double pos,
                  double base, double scale, const float *factors)
{
    for (int h = 0; h < n_head; h++) {
        const float *v = x + h * hd;
        float *w = o + h * hd;
        for (int d = 0; d < hd; d++)
            w[d] = v[d];
        for (int i = 0; i < n_rot / 2; i++) {
            double th = pos * scale * pow(base, -2.0 * i / n_rot) / (factors ? factors[i] : 1.0);
            int a = neox ? i : 2 * i, b = neox ? i + n_rot / 2 : 2 * i + 1;
            w[a] = (float)(v[a] * cos(th) - v[b] * sin(th));
            w[b] = (float)(v[a] * sin(th) + v[b] * cos(th));
        }
    }
}

static void run_case(struct md_backend *be, int n_head, int hd, int n_rot, enum md_rope_mode mode,
                     double base, double scale, bool use_factors)
{
    const int n = 7;
    const int32_t pos[7] = { 0, 1, 2, 17, 511, 4095, 100000 };
    int row = n_head * hd;
    uint64_t s = 99;
    struct md_tensor x, p, f;
    CHECK(md_backend_alloc_2d(be, &x, MD_TYPE_F32, row, n) == MD_OK);
    CHECK(md_backend_alloc_2d(be, &p, MD_TYPE_I32, n, 1) == MD_OK);
    CHECK(md_backend_alloc_2d(be, &f, MD_TYPE_F32, n_rot / 2, 1) == MD_OK);
    float *in = malloc(sizeof(float) * row * n), *out = malloc(sizeof(float) * row * n);
    float *want = malloc(sizeof(float) * row), factors[64];
    for (int i = 0; i < row * n; i++)
        in[i] = (float)lcg(&s);
    for (int i = 0; i < n_rot / 2; i++)
        factors[i] = (float)(1.0 + 3.0 * i / n_rot);
    be->ops->tensor_set(be, &x, 0, in, sizeof(float) * row * n);
    be->ops->tensor_set(be, &p, 0, pos, sizeof pos);
    be->ops->tensor_set(be, &f, 0, factors, sizeof(float) * (n_rot / 2));
    struct md_rope_params rp = { n_head, hd, n_rot, mode, (float)base, (float)scale,
                                 use_factors ? &f : NULL };
    CHECK(be->ops->rope(be, &x, &p, &rp) == MD_OK);
    be->ops->tensor_get(be, &x, 0, out, sizeof(float) * row * n);
    double worst = 0;
    for (int r = 0; r < n; r++) {
        naive(in + r * row, want, n_head, hd, n_rot, mode == MD_ROPE_NEOX, pos[r], (float)base,
              (float)scale, use_factors ? factors : NULL);
        for (int i = 0; i < row; i++)
            worst = fmax(worst, fabs(out[r * row + i] - want[i]));
    }
    CHECKF(worst < 2e-6, "mode %d hd %d n_rot %d: max error %g", mode, hd, n_rot, worst);
    /* the two layouts must really differ (guards against a swapped mode) */
    if (n_rot == hd && !use_factors) {
        naive(in + 3 * row, want, n_head, hd, n_rot, mode != MD_ROPE_NEOX, pos[3], (float)base,
              (float)scale, NULL);
        double d = 0;
        for (int i = 0; i < row; i++)
            d = fmax(d, fabs(out[3 * row + i] - want[i]));
        CHECK(d > 1e-2);
    }
    /* a bad parameter set is an error, not a crash */
    struct md_rope_params bad = rp;
    bad.n_rot = hd + 2;
    CHECK(be->ops->rope(be, &x, &p, &bad) == MD_ERR_INVALID);
    be->ops->tensor_free(be, &x);
    be->ops->tensor_free(be, &p);
    be->ops->tensor_free(be, &f);
    free(in);
    free(out);
    free(want);
}

int main(void)
{
    struct md_backend *be;
    char err[128];
    struct md_backend_params bp = { .n_threads = 2 };
    CHECKF(md_backend_new(NULL, &bp, &be, err, sizeof err) == MD_OK, "%s", err);
    CHECK(md_backend_new("nope", &bp, &(struct md_backend *){ NULL }, err, sizeof err) ==
          MD_ERR_UNSUPPORTED);
    for (int mode = 0; mode <= 2; mode += 2) {
        run_case(be, 4, 16, 16, (enum md_rope_mode)mode, 10000.0, 1.0, false);
        run_case(be, 2, 128, 128, (enum md_rope_mode)mode, 1000000.0, 1.0, false);
        run_case(be, 3, 32, 8, (enum md_rope_mode)mode, 10000.0, 0.25, false);   /* partial, linear */
        run_case(be, 2, 64, 64, (enum md_rope_mode)mode, 500000.0, 1.0, true);   /* rope_freqs */
    }
    md_backend_free(be);
    return md_test_finish("rope");
}
