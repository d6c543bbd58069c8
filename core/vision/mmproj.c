/* Loading a llama.cpp mmproj GGUF: keys (clip.*, clip.vision.*), tensors
 * (v.*, mm.*, model.image_newline / v.image_newline), with the traps of
 * docs/llama-cpp.md §5 and §6 handled:
 *   - legacy files store the FFN's fc1 as ffn_down: decided by shape;
 *   - block_count already drops the unused last layer (we run them all by
 *     default, see md_vision_params.llamacpp_layers);
 *   - pre-LN / post-LN / class token / patch bias by tensor presence;
 *   - the activation from clip.use_gelu / clip.use_silu / the tower kind.
 * Every shape is validated before a weight is handed to the backend, and
 * hyper-parameters are bounded, so a hostile file gives an error, never an
 * out-of-range access or a huge allocation. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vision-impl.h"

/* Bounds on hyper-parameters: generous for real towers (so400m: 1152
 * hidden, 4304 ff, 27 layers, 384 px), small enough that products fit. */
#define MAX_IMAGE_SIZE 4096
#define MAX_HIDDEN 16384
#define MAX_FF 65536
#define MAX_HEADS 256
#define MAX_EMBD_OUT 65536

static const float CLIP_MEAN[3] = { 0.48145466f, 0.4578275f, 0.40821073f };
static const float CLIP_STD[3] = { 0.26862954f, 0.26130258f, 0.27577711f };

/* ---- errors -------------------------------------------------------------- */

/* "<path>: <cause>..." as md_model_load writes them (no path from memory):
 * the cause comes before the first ": " after the path. */
#if defined(__GNUC__)
__attribute__((format(printf, 5, 6)))
#endif
static int verr(const struct md_gguf *g, char *err, size_t errlen, int rc, const char *fmt, ...)
{
    if (!err || !errlen)
        return rc;
    size_t k = md_gguf_err_path(g->path, err, errlen);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + k, errlen - k, fmt, ap);
    va_end(ap);
    return rc;
}

/* ---- keys ---------------------------------------------------------------- */

/* A required positive integer key within [lo, hi]. */
static int key_int(const struct md_gguf *g, const char *key, int32_t lo, int32_t hi,
                   int32_t *out, char *err, size_t errlen)
{
    int64_t x;
    int rc = md_gguf_get_i64(g, key, &x);
    if (rc == -1)
        return verr(g, err, errlen, MD_ERR_FORMAT, "missing key '%s'", key);
    if (rc || x < lo || x > hi)
        return verr(g, err, errlen, MD_ERR_FORMAT, "key '%s' is not an integer in [%d, %d]", key,
                    lo, hi);
    *out = (int32_t)x;
    return MD_OK;
}

/* An optional bool key; absent gives def, a wrong type is an error. */
static int key_bool(const struct md_gguf *g, const char *key, bool def, bool *out,
                    char *err, size_t errlen)
{
    int rc = md_gguf_get_bool(g, key, out);
    if (rc == -1) {
        *out = def;
        return MD_OK;
    }
    if (rc)
        return verr(g, err, errlen, MD_ERR_FORMAT, "key '%s' is not a bool", key);
    return MD_OK;
}

/* Optional string key compared against a value; absent = false. */
static bool key_str_is(const struct md_gguf *g, const char *key, const char *val)
{
    struct md_str s;
    return md_gguf_get_str(g, key, &s) == 0 && md_str_eq(s, val);
}

/* Optional f32[3] (image_mean / image_std). */
static int key_vec3(const struct md_gguf *g, const char *key, const float def[3], float out[3],
                    char *err, size_t errlen)
{
    const struct md_gguf_kv *kv = md_gguf_find_kv(g, key);
    if (!kv) {
        memcpy(out, def, 3 * sizeof(float));
        return MD_OK;
    }
    if (kv->type != MD_GGUF_ARRAY || kv->n != 3)
        return verr(g, err, errlen, MD_ERR_FORMAT, "key '%s' is not an array of 3 numbers", key);
    for (uint64_t i = 0; i < 3; i++)
        if (md_gguf_arr_f32(kv, i, &out[i]) || !isfinite(out[i]))
            return verr(g, err, errlen, MD_ERR_FORMAT, "key '%s'[%d] is not a finite float", key,
                        (int)i);
    return MD_OK;
}

/* Optional int array into out[0..max), bounded values. */
static int key_int_array(const struct md_gguf *g, const char *key, int32_t max, int32_t lo,
                         int32_t hi, int32_t *out, int32_t *n, char *err, size_t errlen)
{
    const struct md_gguf_kv *kv = md_gguf_find_kv(g, key);
    *n = 0;
    if (!kv)
        return MD_OK;
    if (kv->type != MD_GGUF_ARRAY || kv->n > (uint64_t)max)
        return verr(g, err, errlen, MD_ERR_FORMAT, "key '%s' is not an array of at most %d "
                    "integers", key, max);
    for (uint64_t i = 0; i < kv->n; i++) {
        int64_t x;
        if (md_gguf_arr_i64(kv, i, &x) || x < lo || x > hi)
            return verr(g, err, errlen, MD_ERR_FORMAT, "key '%s'[%d] is not an integer in "
                        "[%d, %d]", key, (int)i, lo, hi);
        out[i] = (int32_t)x;
    }
    *n = (int32_t)kv->n;
    return MD_OK;
}

/* A file of another architecture: an LLM given as the mmproj (a common
 * slip, named with where it goes) or something else altogether. */
static int wrong_arch(const struct md_gguf *g, struct md_str arch, char *err, size_t errlen)
{
    char name[65], key[96];
    snprintf(name, sizeof name, "%.*s", (int)(arch.len < 64 ? arch.len : 64), arch.ptr);
    snprintf(key, sizeof key, "%s.block_count", name);
    if (md_gguf_find_kv(g, "tokenizer.ggml.model") || md_gguf_find_kv(g, key))
        return verr(g, err, errlen, MD_ERR_UNSUPPORTED, "a language model (%s), not a vision "
                    "projector; pass it as the model", name);
    return verr(g, err, errlen, MD_ERR_UNSUPPORTED, "not a vision projector "
                "(general.architecture is '%s', expected 'clip')", name);
}

static int check_arch(const struct md_gguf *g, char *err, size_t errlen)
{
    struct md_str arch;
    if (md_gguf_get_str(g, "general.architecture", &arch) == 0 && !md_str_eq(arch, "clip"))
        return wrong_arch(g, arch, err, errlen);
    bool has_vision;
    int rc = key_bool(g, "clip.has_vision_encoder", true, &has_vision, err, errlen);
    if (rc)
        return rc;
    if (!has_vision)
        return verr(g, err, errlen, MD_ERR_UNSUPPORTED, "no vision encoder "
                    "(clip.has_vision_encoder is false, a text-only CLIP file)");
    struct md_str pt;
    const char *pkey = md_gguf_find_kv(g, "clip.projector_type") ? "clip.projector_type"
                                                                 : "clip.vision.projector_type";
    if (md_gguf_get_str(g, pkey, &pt) == 0 && !md_str_eq(pt, "mlp"))
        return verr(g, err, errlen, MD_ERR_UNSUPPORTED, "unsupported projector type '%.*s' "
                    "(only 'mlp' is)", (int)(pt.len < 64 ? pt.len : 64), pt.ptr);
    return MD_OK;
}

static int read_sizes(const struct md_gguf *g, struct md_clip_hparams *hp, char *err, size_t errlen)
{
    int rc;
    if ((rc = key_int(g, "clip.vision.image_size", 1, MAX_IMAGE_SIZE, &hp->image_size, err, errlen)) ||
        (rc = key_int(g, "clip.vision.patch_size", 1, MAX_IMAGE_SIZE, &hp->patch_size, err, errlen)) ||
        (rc = key_int(g, "clip.vision.embedding_length", 1, MAX_HIDDEN, &hp->hidden, err, errlen)) ||
        (rc = key_int(g, "clip.vision.feed_forward_length", 1, MAX_FF, &hp->n_ff, err, errlen)) ||
        (rc = key_int(g, "clip.vision.attention.head_count", 1, MAX_HEADS, &hp->n_head, err, errlen)) ||
        (rc = key_int(g, "clip.vision.block_count", 1, MD_VISION_MAX_LAYERS, &hp->n_layer, err, errlen)))
        return rc;
    if (hp->patch_size > hp->image_size)
        return verr(g, err, errlen, MD_ERR_FORMAT, "patch_size %d exceeds image_size %d",
                    hp->patch_size, hp->image_size);
    if (hp->hidden % hp->n_head)
        return verr(g, err, errlen, MD_ERR_FORMAT, "embedding_length %d is not a multiple of "
                    "head_count %d", hp->hidden, hp->n_head);
    hp->head_dim = hp->hidden / hp->n_head;
    /* A conv with stride = kernel drops a remainder (SigLIP 384/14 -> 27). */
    hp->n_side = hp->image_size / hp->patch_size;
    hp->n_patches = hp->n_side * hp->n_side;
    hp->eps = 1e-5f;
    int r = md_gguf_get_f32(g, "clip.vision.attention.layer_norm_epsilon", &hp->eps);
    if (r == -2 || !(hp->eps >= 0.0f && hp->eps < 1.0f))
        return verr(g, err, errlen, MD_ERR_FORMAT, "bad clip.vision.attention.layer_norm_epsilon");
    return MD_OK;
}

static int read_options(const struct md_gguf *g, struct md_clip_hparams *hp, char *err, size_t errlen)
{
    int rc;
    if ((rc = key_vec3(g, "clip.vision.image_mean", CLIP_MEAN, hp->mean, err, errlen)) ||
        (rc = key_vec3(g, "clip.vision.image_std", CLIP_STD, hp->std, err, errlen)))
        return rc;
    for (int c = 0; c < 3; c++)
        if (!(fabsf(hp->std[c]) > 1e-12f))
            return verr(g, err, errlen, MD_ERR_FORMAT, "clip.vision.image_std[%d] is zero", c);
    int32_t n_pp = 0;
    rc = key_int_array(g, "clip.vision.image_grid_pinpoints", 2 * MD_VISION_MAX_PINPOINTS, 1,
                       MAX_IMAGE_SIZE * 8, hp->pinpoints, &n_pp, err, errlen);
    if (rc)
        return rc;
    if (n_pp % 2)
        return verr(g, err, errlen, MD_ERR_FORMAT, "clip.vision.image_grid_pinpoints has an odd "
                    "count %d", n_pp);
    hp->n_pinpoints = n_pp / 2;
    hp->spatial_unpad = key_str_is(g, "clip.vision.mm_patch_merge_type", "spatial_unpad");
    struct md_str fam;
    if (md_gguf_get_str(g, "clip.vision.llava_family", &fam) == 0) {
        if (!md_str_eq(fam, "onevision"))
            return verr(g, err, errlen, MD_ERR_UNSUPPORTED, "unsupported "
                        "clip.vision.llava_family '%.*s' (only 'onevision' is)",
                        (int)(fam.len < 64 ? fam.len : 64), fam.ptr);
        hp->onevision = true;
        hp->anyres_max = 9;
        hp->video_pool = 2;
        if ((md_gguf_find_kv(g, "clip.vision.anyres_max_patches") &&
             (rc = key_int(g, "clip.vision.anyres_max_patches", 1, 1024, &hp->anyres_max, err, errlen))) ||
            (md_gguf_find_kv(g, "clip.vision.video_pool") &&
             (rc = key_int(g, "clip.vision.video_pool", 1, 64, &hp->video_pool, err, errlen))))
            return rc;
    }
    return key_int_array(g, "clip.vision.feature_layer", MD_VISION_MAX_FEATURE_LAYERS, 0,
                         MD_VISION_MAX_LAYERS, hp->feature_layers, &hp->n_feature_layers,
                         err, errlen);
}

/* ---- tensors --------------------------------------------------------------- */

static void fmt_shape(char *buf, size_t n, const int64_t ne[4], int nd)
{
    int k = snprintf(buf, n, "{");
    for (int i = 0; i < nd && k > 0 && (size_t)k < n; i++)
        k += snprintf(buf + k, n - (size_t)k, i ? ", %lld" : "%lld", (long long)ne[i]);
    if (k > 0 && (size_t)k < n)
        snprintf(buf + k, n - (size_t)k, "}");
}

/* Find a tensor and check its shape against want (dims beyond nd are 1). */
static const struct md_gguf_tensor *find_shaped(const struct md_gguf *g, const char *name,
                                                const int64_t want[4], int nd, bool required,
                                                int *rc, char *err, size_t errlen)
{
    *rc = MD_OK;
    const struct md_gguf_tensor *t = md_gguf_find_tensor(g, name);
    if (!t) {
        if (required)
            *rc = verr(g, err, errlen, MD_ERR_FORMAT, "missing tensor '%s'", name);
        return NULL;
    }
    for (int i = 0; i < 4; i++) {
        if (t->ne[i] != (i < nd ? want[i] : 1)) {
            char a[80], b[80];
            fmt_shape(a, sizeof a, t->ne, (int)(t->n_dims ? t->n_dims : 1));
            fmt_shape(b, sizeof b, want, nd);
            *rc = verr(g, err, errlen, MD_ERR_FORMAT, "wrong shape of tensor '%s' (shape %s, "
                       "expected %s)", name, a, b);
            return NULL;
        }
    }
    if (!md_type_supported(t->type) || md_type_row_bytes(t->type, t->ne[0]) <= 0) {
        *rc = verr(g, err, errlen, MD_ERR_UNSUPPORTED, "unsupported tensor type %s in tensor "
                   "'%s' (rows of %lld)", md_ggml_type_name(t->type), name, (long long)t->ne[0]);
        return NULL;
    }
    return t;
}

/* A weight matrix {n_in, n_out}: the backend keeps it in the file's type. */
static int load_matrix(struct md_vision *v, const char *name, int64_t n_in, int64_t n_out,
                       bool required, struct md_tensor *out, char *err, size_t errlen)
{
    int rc;
    const int64_t want[4] = { n_in, n_out, 1, 1 };
    const struct md_gguf_tensor *t = find_shaped(v->gguf, name, want, 2, required, &rc, err, errlen);
    if (!t)
        return rc;
    memset(out, 0, sizeof *out);
    out->type = t->type;
    out->ne[0] = n_in;
    out->ne[1] = n_out;
    out->ne[2] = out->ne[3] = 1;
    rc = v->be->ops->tensor_weight(v->be, out, t->data);
    if (rc)
        return verr(v->gguf, err, errlen, rc, "backend cannot hold tensor '%s'", name);
    return MD_OK;
}

/* A small F32 table [rows][n] (norms, biases, embeddings): converted from
 * F32/F16/BF16 on the host so that every backend gets F32 (the add, norm
 * and bias operands must be F32). */
static int load_f32(struct md_vision *v, const char *name, const int64_t want[4], int nd,
                    int64_t n, int64_t rows, bool required, struct md_tensor *out,
                    char *err, size_t errlen)
{
    int rc;
    const struct md_gguf_tensor *t = find_shaped(v->gguf, name, want, nd, required, &rc, err, errlen);
    if (!t)
        return rc;
    if (t->type != MD_TYPE_F32 && t->type != MD_TYPE_F16 && t->type != MD_TYPE_BF16)
        return verr(v->gguf, err, errlen, MD_ERR_UNSUPPORTED, "unsupported tensor type %s in "
                    "tensor '%s' (F32, F16 or BF16 is needed)", md_type_name(t->type), name);
    float *host = malloc(sizeof(float) * (size_t)(n * rows));
    if (!host)
        return verr(v->gguf, err, errlen, MD_ERR_NOMEM, "out of memory converting tensor '%s'",
                    name);
    md_dequantize_row(t->type, t->data, host, n * rows);
    rc = md_backend_alloc_2d(v->be, out, MD_TYPE_F32, n, rows);
    if (!rc)
        rc = v->be->ops->tensor_set(v->be, out, 0, host, sizeof(float) * (size_t)(n * rows));
    free(host);
    if (rc)
        return verr(v->gguf, err, errlen, rc, "backend cannot hold tensor '%s'", name);
    return MD_OK;
}

static int load_vec(struct md_vision *v, const char *name, int64_t n, bool required,
                    struct md_tensor *out, char *err, size_t errlen)
{
    const int64_t want[4] = { n, 1, 1, 1 };
    return load_f32(v, name, want, 1, n, 1, required, out, err, errlen);
}

/* ---- tower ------------------------------------------------------------------ */

static int load_embeddings(struct md_vision *v, char *err, size_t errlen)
{
    struct md_clip_hparams *hp = &v->hp;
    int64_t D = hp->hidden, P = hp->patch_size;
    int rc;
    const int64_t pw[4] = { P, P, 3, D };
    const struct md_gguf_tensor *t = find_shaped(v->gguf, "v.patch_embd.weight", pw, 4, true,
                                                 &rc, err, errlen);
    if (!t)
        return rc;
    if (md_type_row_bytes(t->type, 3 * P * P) <= 0)
        return verr(v->gguf, err, errlen, MD_ERR_UNSUPPORTED, "unsupported tensor type %s in "
                    "tensor 'v.patch_embd.weight' (it cannot be read as rows of %lld)",
                    md_type_name(t->type), (long long)(3 * P * P));
    /* The conv kernel {P, P, 3, D} is, row by row, a {3*P*P, D} matrix whose
     * rows run over (channel, ky, kx): patch embedding = im2col + matmul. */
    memset(&v->patch_w, 0, sizeof v->patch_w);
    v->patch_w.type = t->type;
    v->patch_w.ne[0] = 3 * P * P;
    v->patch_w.ne[1] = D;
    v->patch_w.ne[2] = v->patch_w.ne[3] = 1;
    if ((rc = v->be->ops->tensor_weight(v->be, &v->patch_w, t->data)))
        return verr(v->gguf, err, errlen, rc, "backend cannot hold tensor 'v.patch_embd.weight'");
    if ((rc = load_vec(v, "v.patch_embd.bias", D, false, &v->patch_b, err, errlen)))
        return rc;
    hp->has_patch_bias = md_tensor_present(&v->patch_b);
    if ((rc = load_vec(v, "v.class_embd", D, false, &v->class_embd, err, errlen)))
        return rc;
    hp->has_class = md_tensor_present(&v->class_embd);
    hp->n_pos = hp->n_patches + (hp->has_class ? 1 : 0);
    const int64_t pe[4] = { D, hp->n_pos, 1, 1 };
    if ((rc = load_f32(v, "v.position_embd.weight", pe, 2, D, hp->n_pos, true, &v->pos_embd,
                       err, errlen)))
        return rc;
    if ((rc = load_vec(v, "v.pre_ln.weight", D, false, &v->pre_ln_w, err, errlen)) ||
        (rc = load_vec(v, "v.pre_ln.bias", D, false, &v->pre_ln_b, err, errlen)) ||
        (rc = load_vec(v, "v.post_ln.weight", D, false, &v->post_ln_w, err, errlen)) ||
        (rc = load_vec(v, "v.post_ln.bias", D, false, &v->post_ln_b, err, errlen)))
        return rc;
    hp->has_pre_ln = md_tensor_present(&v->pre_ln_w);
    hp->has_post_ln = md_tensor_present(&v->post_ln_w);
    return MD_OK;
}

/* Which of ffn_up / ffn_down maps hidden -> n_ff: by shape, never by name
 * (docs/llama-cpp.md §5). When hidden == n_ff shapes cannot tell; then
 * files from the legacy converter (it writes clip.has_llava_projector) are
 * swapped. */
static int detect_ffn_swap(struct md_vision *v, char *err, size_t errlen)
{
    const struct md_gguf_tensor *up = md_gguf_find_tensor(v->gguf, "v.blk.0.ffn_up.weight");
    const struct md_gguf_tensor *down = md_gguf_find_tensor(v->gguf, "v.blk.0.ffn_down.weight");
    if (!up || !down) {
        return verr(v->gguf, err, errlen, MD_ERR_FORMAT, "missing tensor 'v.blk.0.%s.weight'",
                    up ? "ffn_down" : "ffn_up");
    }
    int64_t D = v->hp.hidden, F = v->hp.n_ff;
    if (D == F)
        v->hp.ffn_swapped = md_gguf_find_kv(v->gguf, "clip.has_llava_projector") != NULL;
    else if (down->ne[0] == D && down->ne[1] == F)
        v->hp.ffn_swapped = true;
    else
        v->hp.ffn_swapped = false;   /* shapes are checked when loading */
    return MD_OK;
}

static int load_layer(struct md_vision *v, int il, char *err, size_t errlen)
{
    struct md_clip_layer *L = &v->layers[il];
    int64_t D = v->hp.hidden, F = v->hp.n_ff;
    const char *up = v->hp.ffn_swapped ? "ffn_down" : "ffn_up";
    const char *down = v->hp.ffn_swapped ? "ffn_up" : "ffn_down";
    char n[16][64];
    static const char *const part[12] = {
        "ln1.weight", "ln1.bias", "ln2.weight", "ln2.bias", "attn_q.weight", "attn_q.bias",
        "attn_k.weight", "attn_k.bias", "attn_v.weight", "attn_v.bias", "attn_out.weight",
        "attn_out.bias",
    };
    for (int i = 0; i < 12; i++)
        snprintf(n[i], sizeof n[i], "v.blk.%d.%s", il, part[i]);
    snprintf(n[12], sizeof n[12], "v.blk.%d.%s.weight", il, up);
    snprintf(n[13], sizeof n[13], "v.blk.%d.%s.bias", il, up);
    snprintf(n[14], sizeof n[14], "v.blk.%d.%s.weight", il, down);
    snprintf(n[15], sizeof n[15], "v.blk.%d.%s.bias", il, down);
    int rc;
    if ((rc = load_vec(v, n[0], D, true, &L->ln1_w, err, errlen)) ||
        (rc = load_vec(v, n[1], D, true, &L->ln1_b, err, errlen)) ||
        (rc = load_vec(v, n[2], D, true, &L->ln2_w, err, errlen)) ||
        (rc = load_vec(v, n[3], D, true, &L->ln2_b, err, errlen)) ||
        (rc = load_matrix(v, n[4], D, D, true, &L->q_w, err, errlen)) ||
        (rc = load_vec(v, n[5], D, true, &L->q_b, err, errlen)) ||
        (rc = load_matrix(v, n[6], D, D, true, &L->k_w, err, errlen)) ||
        (rc = load_vec(v, n[7], D, true, &L->k_b, err, errlen)) ||
        (rc = load_matrix(v, n[8], D, D, true, &L->v_w, err, errlen)) ||
        (rc = load_vec(v, n[9], D, true, &L->v_b, err, errlen)) ||
        (rc = load_matrix(v, n[10], D, D, true, &L->o_w, err, errlen)) ||
        (rc = load_vec(v, n[11], D, true, &L->o_b, err, errlen)) ||
        (rc = load_matrix(v, n[12], D, F, true, &L->up_w, err, errlen)) ||
        (rc = load_vec(v, n[13], F, true, &L->up_b, err, errlen)) ||
        (rc = load_matrix(v, n[14], F, D, true, &L->down_w, err, errlen)) ||
        (rc = load_vec(v, n[15], D, true, &L->down_b, err, errlen)))
        return rc;
    return MD_OK;
}

/* The activation between ffn up and down. HF CLIP "gelu" is the erf GELU
 * (ggml uses its tanh form: llama.cpp differs here); SigLIP towers (no class
 * token, post-LN) use gelu_pytorch_tanh whatever use_gelu says. Our own
 * converter names HF's hidden_act in clip.vision.hidden_act, which wins. */
static int pick_activation(struct md_vision *v, char *err, size_t errlen)
{
    bool gelu, silu;
    int rc;
    if ((rc = key_bool(v->gguf, "clip.use_gelu", false, &gelu, err, errlen)) ||
        (rc = key_bool(v->gguf, "clip.use_silu", false, &silu, err, errlen)))
        return rc;
    struct md_str act;
    if (md_gguf_get_str(v->gguf, "clip.vision.hidden_act", &act) == 0) {
        if (md_str_eq(act, "gelu_pytorch_tanh") || md_str_eq(act, "gelu_new"))
            v->hp.act = MD_UNARY_GELU_TANH;
        else if (md_str_eq(act, "gelu"))
            v->hp.act = MD_UNARY_GELU_ERF;
        else if (md_str_eq(act, "quick_gelu"))
            v->hp.act = MD_UNARY_QUICK_GELU;
        else if (md_str_eq(act, "silu"))
            v->hp.act = MD_UNARY_SILU;
        else
            return verr(v->gguf, err, errlen, MD_ERR_UNSUPPORTED, "unsupported "
                        "clip.vision.hidden_act '%.*s'", (int)(act.len < 64 ? act.len : 64),
                        act.ptr);
        return MD_OK;
    }
    if (!v->hp.has_class && v->hp.has_post_ln)
        v->hp.act = MD_UNARY_GELU_TANH;
    else if (gelu)
        v->hp.act = MD_UNARY_GELU_ERF;
    else if (silu)
        v->hp.act = MD_UNARY_SILU;
    else
        v->hp.act = MD_UNARY_QUICK_GELU;
    return MD_OK;
}

/* Layers a forward runs: all stored ones (HF's vision_feature_layer for
 * legacy files), one fewer like llama.cpp, or up to feature_layer. */
static int pick_layers_run(struct md_vision *v, char *err, size_t errlen)
{
    struct md_clip_hparams *hp = &v->hp;
    hp->n_layer_run = hp->n_layer;
    if (hp->n_feature_layers == 1) {
        /* hidden_states[k] is the output of k layers (index 0: embeddings) */
        if (hp->feature_layers[0] < 1 || hp->feature_layers[0] > hp->n_layer)
            return verr(v->gguf, err, errlen, MD_ERR_FORMAT, "clip.vision.feature_layer %d "
                        "outside 1..%d", hp->feature_layers[0], hp->n_layer);
        hp->n_layer_run = hp->feature_layers[0];
    } else if (hp->n_feature_layers > 1) {
        return verr(v->gguf, err, errlen, MD_ERR_UNSUPPORTED, "concatenated feature layers are "
                    "not supported yet (clip.vision.feature_layer has %d)", hp->n_feature_layers);
    }
    if (v->params.llamacpp_layers && hp->n_layer_run > 1)
        hp->n_layer_run--;
    return MD_OK;
}

static int load_tower(struct md_vision *v, char *err, size_t errlen)
{
    int rc;
    if ((rc = load_embeddings(v, err, errlen)) || (rc = pick_activation(v, err, errlen)) ||
        (rc = pick_layers_run(v, err, errlen)) || (rc = detect_ffn_swap(v, err, errlen)))
        return rc;
    v->layers = calloc((size_t)v->hp.n_layer, sizeof *v->layers);
    if (!v->layers)
        return verr(v->gguf, err, errlen, MD_ERR_NOMEM, "out of memory for %d layers",
                    v->hp.n_layer);
    for (int il = 0; il < v->hp.n_layer; il++)
        if ((rc = load_layer(v, il, err, errlen)))
            return rc;
    return MD_OK;
}

/* ---- projector ----------------------------------------------------------- */

static int load_projector(struct md_vision *v, char *err, size_t errlen)
{
    struct md_clip_hparams *hp = &v->hp;
    const struct md_gguf_tensor *m0 = md_gguf_find_tensor(v->gguf, "mm.0.weight");
    const struct md_gguf_tensor *m2 = md_gguf_find_tensor(v->gguf, "mm.2.weight");
    if (!m0 || !m2)
        return verr(v->gguf, err, errlen, MD_ERR_FORMAT, "missing tensor '%s' (projector 'mlp')",
                    m0 ? "mm.2.weight" : "mm.0.weight");
    if (m0->ne[1] < 1 || m0->ne[1] > MAX_FF || m2->ne[1] < 1 || m2->ne[1] > MAX_EMBD_OUT)
        return verr(v->gguf, err, errlen, MD_ERR_FORMAT, "projector sizes out of range "
                    "(mm.0.weight has %lld rows, mm.2.weight %lld)", (long long)m0->ne[1],
                    (long long)m2->ne[1]);
    hp->proj = MD_PROJ_MLP;
    hp->n_mm = (int32_t)m0->ne[1];
    hp->n_embd_out = (int32_t)m2->ne[1];
    int rc;
    if ((rc = load_matrix(v, "mm.0.weight", hp->hidden, hp->n_mm, true, &v->mm0_w, err, errlen)) ||
        (rc = load_vec(v, "mm.0.bias", hp->n_mm, true, &v->mm0_b, err, errlen)) ||
        (rc = load_matrix(v, "mm.2.weight", hp->n_mm, hp->n_embd_out, true, &v->mm2_w, err, errlen)) ||
        (rc = load_vec(v, "mm.2.bias", hp->n_embd_out, true, &v->mm2_b, err, errlen)))
        return rc;
    /* LLaVA-1.6: "model.image_newline" (legacy), "v.image_newline" (newer) */
    const char *nl = md_gguf_find_tensor(v->gguf, "v.image_newline") ? "v.image_newline"
                                                                      : "model.image_newline";
    return load_vec(v, nl, hp->n_embd_out, false, &v->newline, err, errlen);
}

int md_mmproj_load(struct md_vision *v, char *err, size_t errlen)
{
    int rc;
    if ((rc = check_arch(v->gguf, err, errlen)) || (rc = read_sizes(v->gguf, &v->hp, err, errlen)) ||
        (rc = read_options(v->gguf, &v->hp, err, errlen)) || (rc = load_tower(v, err, errlen)) ||
        (rc = load_projector(v, err, errlen)))
        return rc;
    const struct md_clip_hparams *hp = &v->hp;
    snprintf(v->desc, sizeof v->desc,
             "%s %d layers (runs %d), hidden %d, ff %d, %d heads, %dpx/%d, %s, mlp %d -> %d%s",
             hp->has_class ? "clip" : "siglip", hp->n_layer, hp->n_layer_run, hp->hidden, hp->n_ff,
             hp->n_head, hp->image_size, hp->patch_size,
             hp->act == MD_UNARY_QUICK_GELU ? "quick-gelu" : hp->act == MD_UNARY_GELU_ERF
                 ? "gelu" : hp->act == MD_UNARY_GELU_TANH ? "gelu-tanh" : "silu",
             hp->n_mm, hp->n_embd_out, hp->ffn_swapped ? ", legacy ffn names" : "");
    if (hp->onevision) {
        size_t k = strlen(v->desc);
        snprintf(v->desc + k, sizeof v->desc - k, ", onevision (anyres_max_%d, video pool %d)",
                 hp->anyres_max, hp->video_pool);
    }
    return MD_OK;
}

static void free_t(struct md_backend *be, struct md_tensor *t)
{
    if (t->data)
        be->ops->tensor_free(be, t);
}

void md_mmproj_free_tensors(struct md_vision *v)
{
    struct md_backend *be = v->be;
    if (!be)
        return;
    struct md_tensor *top[] = { &v->patch_w, &v->patch_b, &v->class_embd, &v->pos_embd,
                                &v->pre_ln_w, &v->pre_ln_b, &v->post_ln_w, &v->post_ln_b,
                                &v->mm0_w, &v->mm0_b, &v->mm2_w, &v->mm2_b, &v->newline };
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
        free_t(be, top[i]);
    for (int il = 0; v->layers && il < v->hp.n_layer; il++) {
        struct md_clip_layer *L = &v->layers[il];
        struct md_tensor *lt[] = { &L->ln1_w, &L->ln1_b, &L->ln2_w, &L->ln2_b, &L->q_w, &L->q_b,
                                   &L->k_w, &L->k_b, &L->v_w, &L->v_b, &L->o_w, &L->o_b,
                                   &L->up_w, &L->up_b, &L->down_w, &L->down_b };
        for (size_t i = 0; i < sizeof lt / sizeof lt[0]; i++)
            free_t(be, lt[i]);
    }
    free(v->layers);
    v->layers = NULL;
}
