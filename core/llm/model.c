/* Loading an LLM from GGUF: hyperparameters from {arch}.* keys, then every
 * tensor checked for presence, type and shape before the backend sees it.
 * Names and shapes follow llama.cpp (docs/llama-cpp.md §3-4). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf.h"
#include "model.h"
#include "tokenizer.h"

/* State of one load: where errors go and what to report progress on. */
struct loader {
    const struct md_gguf *g;
    struct md_model *m;
    const struct md_model_params *p;
    char *err;
    size_t errlen;
    int64_t n_done, n_total;   /* tensors, for progress */
    int type_count[64];        /* tensors per type id (< 64), for the description */
};

/* "<path>: <cause>..." (no path when loading from memory). Every message
 * states its cause before the first ": " after the path, so that callers
 * can use that part as a headline. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int fail(struct loader *ld, int rc, const char *fmt, ...)
{
    if (!ld->err || !ld->errlen)
        return rc;
    size_t k = md_gguf_err_path(ld->g->path, ld->err, ld->errlen);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ld->err + k, ld->errlen - k, fmt, ap);
    va_end(ap);
    return rc;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- hyperparameters ------------------------------------------------- */

/* An integer key {arch}.<suffix> in [lo, hi]; def < 0 means required. */
static int get_int(struct loader *ld, const char *suffix, int64_t def, int64_t lo, int64_t hi,
                   int32_t *out)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", ld->m->arch_name, suffix);
    int64_t v;
    int rc = md_gguf_get_i64(ld->g, key, &v);
    if (rc == -1) {
        if (def < 0)
            return fail(ld, MD_ERR_FORMAT, "missing key '%s'", key);
        v = def;
    } else if (rc) {
        return fail(ld, MD_ERR_FORMAT, "key '%s' is not an integer", key);
    }
    if (v < lo || v > hi)
        return fail(ld, MD_ERR_FORMAT, "key '%s' = %lld is out of range [%lld, %lld]", key,
                    (long long)v, (long long)lo, (long long)hi);
    *out = (int32_t)v;
    return MD_OK;
}

/* A float key; def used when absent (required when !has_def). */
static int get_float(struct loader *ld, const char *suffix, bool has_def, float def, float *out)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", ld->m->arch_name, suffix);
    int rc = md_gguf_get_f32(ld->g, key, out);
    if (rc == -1) {
        if (!has_def)
            return fail(ld, MD_ERR_FORMAT, "missing key '%s'", key);
        *out = def;
        return MD_OK;
    }
    if (rc || !(*out == *out))
        return fail(ld, MD_ERR_FORMAT, "key '%s' is not a number", key);
    return MD_OK;
}

/* Copy a GGUF string into buf (truncating); returns -1 absent, -2 wrong type. */
static int get_str(const struct md_gguf *g, const char *key, char *buf, size_t n)
{
    struct md_str s;
    int rc = md_gguf_get_str(g, key, &s);
    if (rc)
        return rc;
    size_t len = s.len < n - 1 ? (size_t)s.len : n - 1;
    memcpy(buf, s.ptr, len);
    buf[len] = '\0';
    return 0;
}

/* An mmproj given as the model is a common slip: say so, and where it goes.
 * Older converters may leave general.architecture out of an mmproj, but
 * never its clip.* keys. */
static bool is_vision_projector(const struct md_gguf *g, const char *arch)
{
    return !strcmp(arch, "clip") ||
           (!arch[0] && md_gguf_find_kv(g, "clip.has_vision_encoder") != NULL);
}

static int load_arch(struct loader *ld)
{
    char arch[64] = "";
    int rc = get_str(ld->g, "general.architecture", arch, sizeof arch);
    if (is_vision_projector(ld->g, arch))
        return fail(ld, MD_ERR_UNSUPPORTED, "a vision projector (clip), not a language model; "
                    "pass it as the mmproj");
    if (rc == -1)
        return fail(ld, MD_ERR_FORMAT, "missing key 'general.architecture'");
    if (rc)
        return fail(ld, MD_ERR_FORMAT, "key 'general.architecture' is not a string");
    if (!strcmp(arch, "llama"))
        ld->m->arch = MD_ARCH_LLAMA;
    else if (!strcmp(arch, "qwen2"))
        ld->m->arch = MD_ARCH_QWEN2;
    else
        return fail(ld, MD_ERR_UNSUPPORTED,
                    "unsupported architecture '%s' (llama and qwen2 are supported)", arch);
    memcpy(ld->m->arch_name, arch, strlen(arch) + 1);   /* "llama" or "qwen2": fits */
    return MD_OK;
}

/* rope.scaling.*: "none" and "linear" run; others are refused by name. The
 * older rope.scale_linear key is honoured too. */
static int load_rope_scaling(struct loader *ld)
{
    struct md_hparams *hp = &ld->m->hp;
    char key[128], type[32] = "none";
    hp->rope_freq_scale = 1.0f;
    snprintf(key, sizeof key, "%s.rope.scaling.type", ld->m->arch_name);
    int rc = get_str(ld->g, key, type, sizeof type);
    if (rc == -2)
        return fail(ld, MD_ERR_FORMAT, "key '%s' is not a string", key);
    float factor = 1.0f;
    int r;
    if ((r = get_float(ld, "rope.scaling.factor", true, 1.0f, &factor)))
        return r;
    if (!strcmp(type, "none")) {
        float lin;
        if ((r = get_float(ld, "rope.scale_linear", true, 1.0f, &lin)))
            return r;
        factor = lin;
        if (factor == 1.0f)
            return MD_OK;
    } else if (strcmp(type, "linear")) {
        return fail(ld, MD_ERR_UNSUPPORTED,
                    "unsupported rope scaling '%s' (key '%s'; none and linear are supported)",
                    type, key);
    }
    if (!(factor > 0.0f))
        return fail(ld, MD_ERR_FORMAT, "rope scaling factor %g must be > 0", (double)factor);
    hp->rope_freq_scale = 1.0f / factor;
    return MD_OK;
}

static int load_hparams(struct loader *ld)
{
    struct md_hparams *hp = &ld->m->hp;
    const int64_t big = 1 << 20;
    int rc;
    if ((rc = get_int(ld, "context_length", 0, 0, INT32_MAX, &hp->n_ctx_train)) ||
        (rc = get_int(ld, "embedding_length", -1, 1, big, &hp->n_embd)) ||
        (rc = get_int(ld, "block_count", -1, 1, 4096, &hp->n_layer)) ||
        (rc = get_int(ld, "feed_forward_length", -1, 1, 4 * big, &hp->n_ff)) ||
        (rc = get_int(ld, "attention.head_count", -1, 1, 4096, &hp->n_head)) ||
        (rc = get_int(ld, "attention.head_count_kv", hp->n_head, 1, 4096, &hp->n_head_kv)))
        return rc;
    if (hp->n_head % hp->n_head_kv)
        return fail(ld, MD_ERR_FORMAT, "attention.head_count %d is not a multiple of head_count_kv %d",
                    hp->n_head, hp->n_head_kv);
    int32_t def_hd = hp->n_embd % hp->n_head ? -1 : hp->n_embd / hp->n_head;
    char key[128];
    snprintf(key, sizeof key, "%s.attention.key_length", ld->m->arch_name);
    if (def_hd < 0 && !md_gguf_find_kv(ld->g, key))
        return fail(ld, MD_ERR_FORMAT, "embedding_length %d is not a multiple of head_count %d",
                    hp->n_embd, hp->n_head);
    int32_t vlen;
    if ((rc = get_int(ld, "attention.key_length", def_hd, 1, 4096, &hp->head_dim)) ||
        (rc = get_int(ld, "attention.value_length", hp->head_dim, 1, 4096, &vlen)))
        return rc;
    if (vlen != hp->head_dim)
        return fail(ld, MD_ERR_UNSUPPORTED, "attention.value_length %d != key_length %d",
                    vlen, hp->head_dim);
    if ((rc = get_int(ld, "rope.dimension_count", hp->head_dim, 2, hp->head_dim, &hp->n_rot)))
        return rc;
    if (hp->n_rot % 2 || hp->n_rot > 512)
        return fail(ld, MD_ERR_UNSUPPORTED, "rope.dimension_count %d must be even and <= 512",
                    hp->n_rot);
    if ((rc = get_float(ld, "attention.layer_norm_rms_epsilon", false, 0.0f, &hp->rms_eps)) ||
        (rc = get_float(ld, "rope.freq_base", true, 10000.0f, &hp->rope_freq_base)))
        return rc;
    if (!(hp->rms_eps >= 0.0f) || !(hp->rope_freq_base > 0.0f))
        return fail(ld, MD_ERR_FORMAT, "bad rms epsilon %g or rope.freq_base %g",
                    (double)hp->rms_eps, (double)hp->rope_freq_base);
    hp->rope_mode = ld->m->arch == MD_ARCH_QWEN2 ? MD_ROPE_NEOX : MD_ROPE_NORMAL;
    return load_rope_scaling(ld);
}

/* ---- tensors --------------------------------------------------------- */

enum { T_REQUIRED = 0, T_OPTIONAL = 1 };

static void shape_str(const int64_t *ne, int n, char *buf, size_t len)
{
    int off = snprintf(buf, len, "{");
    for (int i = 0; i < n && off > 0 && (size_t)off < len; i++)
        off += snprintf(buf + off, len - (size_t)off, i ? ", %lld" : "%lld", (long long)ne[i]);
    if (off > 0 && (size_t)off < len)
        snprintf(buf + off, len - (size_t)off, "}");
}

static bool report_progress(struct loader *ld)
{
    ld->n_done++;
    if (!ld->p->progress_callback)
        return true;
    float f = ld->n_total ? (float)ld->n_done / (float)ld->n_total : 1.0f;
    return ld->p->progress_callback(f > 1.0f ? 1.0f : f, ld->p->progress_callback_user);
}

/* 1-D tensors (norms, biases) are kept as F32 whatever the file holds, so
 * the ops need no per-type code for them. */
static int load_vector_f32(struct loader *ld, const struct md_gguf_tensor *gt, struct md_tensor *t)
{
    struct md_backend *be = ld->m->be;
    float *tmp = malloc(sizeof(float) * (size_t)gt->ne[0]);
    if (!tmp)
        return fail(ld, MD_ERR_NOMEM, "out of memory converting '%.*s'", (int)gt->name.len,
                    gt->name.ptr);
    md_dequantize_row(gt->type, gt->data, tmp, gt->ne[0]);
    int rc = md_backend_alloc_2d(be, t, MD_TYPE_F32, gt->ne[0], 1);
    if (!rc)
        rc = be->ops->tensor_set(be, t, 0, tmp, sizeof(float) * (size_t)gt->ne[0]);
    free(tmp);
    if (rc)
        return fail(ld, rc, "backend cannot hold tensor '%.*s'", (int)gt->name.len, gt->name.ptr);
    return MD_OK;
}

/* Find `name`, check its type and shape {ne0[, ne1]} (ne1 = 0: a vector),
 * and hand it to the backend. */
static int load_tensor(struct loader *ld, const char *name, int64_t ne0, int64_t ne1, int flags,
                       struct md_tensor *t)
{
    memset(t, 0, sizeof *t);
    const struct md_gguf_tensor *gt = md_gguf_find_tensor(ld->g, name);
    if (!gt) {
        if (flags == T_OPTIONAL)
            return MD_OK;
        return fail(ld, MD_ERR_FORMAT, "missing tensor '%s'", name);
    }
    if (!md_type_supported(gt->type))
        return fail(ld, MD_ERR_UNSUPPORTED, "unsupported tensor type %s (%u) in tensor '%s' "
                    "(F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K Q5_K Q6_K are supported)",
                    md_ggml_type_name(gt->type), gt->type, name);
    int64_t want[4] = { ne0, ne1 ? ne1 : 1, 1, 1 };
    if (memcmp(gt->ne, want, sizeof want)) {
        char have_s[96], want_s[64];
        shape_str(gt->ne, gt->n_dims ? (int)gt->n_dims : 1, have_s, sizeof have_s);
        shape_str(want, ne1 ? 2 : 1, want_s, sizeof want_s);
        return fail(ld, MD_ERR_FORMAT, "wrong shape of tensor '%s' (shape %s, expected %s)",
                    name, have_s, want_s);
    }
    if (md_type_row_bytes(gt->type, ne0) <= 0 || !gt->data)
        return fail(ld, MD_ERR_FORMAT, "tensor '%s' has rows of %lld, not whole %s blocks", name,
                    (long long)ne0, md_type_name(gt->type));
    ld->m->n_params += (uint64_t)(ne0 * want[1]);
    ld->m->n_bytes += gt->nbytes;
    ld->type_count[gt->type & 63]++;
    int rc;
    if (!ne1 && gt->type != MD_TYPE_F32) {
        rc = load_vector_f32(ld, gt, t);
    } else {
        t->type = gt->type;
        t->ne[0] = ne0;
        t->ne[1] = want[1];
        t->ne[2] = t->ne[3] = 1;
        rc = ld->m->be->ops->tensor_weight(ld->m->be, t, gt->data);
        if (rc)
            rc = fail(ld, rc, "backend cannot hold tensor '%s' (%llu bytes)", name,
                      (unsigned long long)gt->nbytes);
    }
    if (!rc && !report_progress(ld))
        rc = fail(ld, MD_ERR_ABORTED, "load cancelled by the progress callback");
    return rc;
}

static int load_layer(struct loader *ld, int32_t il, struct md_layer *L)
{
    const struct md_hparams *hp = &ld->m->hp;
    int64_t e = hp->n_embd, q = (int64_t)hp->n_head * hp->head_dim;
    int64_t kv = (int64_t)hp->n_head_kv * hp->head_dim, ff = hp->n_ff;
    bool bias_req = ld->m->arch == MD_ARCH_QWEN2;
    struct {
        const char *name;
        int64_t ne0, ne1;
        int flags;
        struct md_tensor *t;
    } spec[] = {
        { "attn_norm.weight", e, 0, T_REQUIRED, &L->attn_norm },
        { "attn_q.weight", e, q, T_REQUIRED, &L->wq },
        { "attn_k.weight", e, kv, T_REQUIRED, &L->wk },
        { "attn_v.weight", e, kv, T_REQUIRED, &L->wv },
        { "attn_q.bias", q, 0, bias_req ? T_REQUIRED : T_OPTIONAL, &L->bq },
        { "attn_k.bias", kv, 0, bias_req ? T_REQUIRED : T_OPTIONAL, &L->bk },
        { "attn_v.bias", kv, 0, bias_req ? T_REQUIRED : T_OPTIONAL, &L->bv },
        { "attn_output.weight", q, e, T_REQUIRED, &L->wo },
        { "attn_output.bias", e, 0, T_OPTIONAL, &L->bo },
        { "ffn_norm.weight", e, 0, T_REQUIRED, &L->ffn_norm },
        { "ffn_gate.weight", e, ff, T_REQUIRED, &L->ffn_gate },
        { "ffn_up.weight", e, ff, T_REQUIRED, &L->ffn_up },
        { "ffn_down.weight", ff, e, T_REQUIRED, &L->ffn_down },
    };
    for (size_t i = 0; i < sizeof spec / sizeof spec[0]; i++) {
        char name[96];
        snprintf(name, sizeof name, "blk.%d.%s", il, spec[i].name);
        int rc = load_tensor(ld, name, spec[i].ne0, spec[i].ne1, spec[i].flags, spec[i].t);
        if (rc)
            return rc;
    }
    return MD_OK;
}

static int load_tensors(struct loader *ld)
{
    struct md_model *m = ld->m;
    struct md_hparams *hp = &m->hp;
    const struct md_gguf_tensor *te = md_gguf_find_tensor(ld->g, "token_embd.weight");
    if (!te)
        return fail(ld, MD_ERR_FORMAT, "missing tensor 'token_embd.weight'");
    if (te->ne[1] < 1 || te->ne[1] > INT32_MAX)
        return fail(ld, MD_ERR_FORMAT, "bad vocabulary size %lld (tensor 'token_embd.weight')",
                    (long long)te->ne[1]);
    hp->n_vocab = (int32_t)te->ne[1];
    ld->n_total = (int64_t)ld->g->n_tensors;

    int rc;
    if ((rc = load_tensor(ld, "token_embd.weight", hp->n_embd, hp->n_vocab, T_REQUIRED, &m->tok_embd)) ||
        (rc = load_tensor(ld, "output_norm.weight", hp->n_embd, 0, T_REQUIRED, &m->output_norm)) ||
        (rc = load_tensor(ld, "output.weight", hp->n_embd, hp->n_vocab, T_OPTIONAL, &m->output)) ||
        (rc = load_tensor(ld, "rope_freqs.weight", hp->n_rot / 2, 0, T_OPTIONAL, &m->rope_freqs)))
        return rc;
    if (!m->output.data) {
        m->output = m->tok_embd;   /* tied embeddings */
        m->output.owned = false;
        m->output_tied = true;
    }
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers)
        return fail(ld, MD_ERR_NOMEM, "out of memory for %d layers", hp->n_layer);
    for (int32_t il = 0; il < hp->n_layer; il++)
        if ((rc = load_layer(ld, il, &m->layers[il])))
            return rc;
    /* The file may hold tensors we do not use: finish the progress at 1. */
    if (ld->p->progress_callback && ld->n_done < ld->n_total &&
        !ld->p->progress_callback(1.0f, ld->p->progress_callback_user))
        return fail(ld, MD_ERR_ABORTED, "load cancelled by the progress callback");
    return MD_OK;
}

/* ---- description, vocab, template ----------------------------------- */

static void build_desc(struct loader *ld)
{
    struct md_model *m = ld->m;
    const struct md_hparams *hp = &m->hp;
    double p = (double)m->n_params;
    char ps[32];
    if (p >= 1e9)
        snprintf(ps, sizeof ps, "%.2fB", p / 1e9);
    else if (p >= 1e6)
        snprintf(ps, sizeof ps, "%.2fM", p / 1e6);
    else
        snprintf(ps, sizeof ps, "%.0f", p);
    int off = snprintf(m->desc, sizeof m->desc,
                       "%s %s params, %d layers, n_embd %d, n_head %d/%d, n_vocab %d, types:",
                       m->arch_name, ps, hp->n_layer, hp->n_embd, hp->n_head, hp->n_head_kv,
                       hp->n_vocab);
    for (int t = 0; t < 64 && off > 0 && (size_t)off < sizeof m->desc; t++)
        if (ld->type_count[t])
            off += snprintf(m->desc + off, sizeof m->desc - (size_t)off, " %s %d",
                            md_type_name((uint32_t)t), ld->type_count[t]);
}

static int load_vocab_and_template(struct loader *ld)
{
    struct md_model *m = ld->m;
    if (md_gguf_find_kv(ld->g, "tokenizer.ggml.model")) {
        char verr[200] = "";
        if (md_vocab_load(ld->g, &m->vocab, verr, sizeof verr))
            return fail(ld, MD_ERR_FORMAT, "bad tokenizer: %s", verr);
    }
    struct md_str s;
    int rc = md_gguf_get_str(ld->g, "tokenizer.chat_template", &s);
    if (rc == 0) {
        m->chat_template = malloc((size_t)s.len + 1);
        if (!m->chat_template)
            return fail(ld, MD_ERR_NOMEM, "out of memory for the chat template");
        memcpy(m->chat_template, s.ptr, (size_t)s.len);
        m->chat_template[s.len] = '\0';
    }
    return MD_OK;
}

/* ---- public ---------------------------------------------------------- */

struct md_model_params md_model_default_params(void)
{
    struct md_model_params p = {
        .n_threads = 0,
        .use_mmap = true,
        .vocab_only = false,
        .backend = NULL,
        .device = 0,
        .progress_callback = NULL,
        .progress_callback_user = NULL,
    };
    return p;
}

static int model_from_gguf(struct md_model *m, const struct md_model_params *p, char *err,
                           size_t errlen)
{
    struct loader ld = { .g = m->gguf, .m = m, .p = p, .err = err, .errlen = errlen };
    int rc;
    if ((rc = load_arch(&ld)) || (rc = load_hparams(&ld)))
        return rc;
    struct md_backend_params bp = { .n_threads = 1, .isa = NULL, .device = p->device };
    /* the backend's message, after the path like every other */
    size_t k = md_gguf_err_path(m->gguf->path, err, errlen);
    if ((rc = md_backend_new(p->backend, &bp, &m->be, err ? err + k : NULL, err ? errlen - k : 0)))
        return rc;
    if (err && errlen)
        err[0] = '\0';
    snprintf(m->backend_name, sizeof m->backend_name, "%s", m->be->ops->name);
    m->device = p->device;
    if (!p->vocab_only && (rc = load_tensors(&ld)))
        return rc;
    if ((rc = load_vocab_and_template(&ld)))
        return rc;
    if (p->vocab_only) {
        m->hp.n_vocab = m->vocab ? md_vocab_n_tokens(m->vocab) : 0;
    }
    build_desc(&ld);
    return MD_OK;
}

static int model_load(const char *path, const void *data, size_t size,
                      const struct md_model_params *params, struct md_model **out,
                      char *err, size_t errlen)
{
    double t0 = now_ms();
    if (err && errlen)
        err[0] = '\0';
    if (!out)
        return MD_ERR_INVALID;
    *out = NULL;
    struct md_model_params p = params ? *params : md_model_default_params();
    struct md_model *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return MD_ERR_NOMEM;
    }
    /* The reader's status stands (MD_ERR_IO, MD_ERR_FORMAT, ...), so the
     * same defect gives the same status here and in md_vision_load. */
    int rc;
    if (!path)
        rc = md_gguf_open_memory(data, size, &m->gguf, err, errlen);
    else if (p.use_mmap)
        rc = md_gguf_open(path, &m->gguf, err, errlen);
    else
        rc = md_gguf_read(path, &m->gguf, err, errlen);
    if (!rc)
        rc = model_from_gguf(m, &p, err, errlen);
    if (rc) {
        md_model_free(m);
        return rc;
    }
    m->load_ms = now_ms() - t0;
    *out = m;
    return MD_OK;
}

int md_model_load(const char *path, const struct md_model_params *params, struct md_model **out,
                  char *err, size_t errlen)
{
    if (!path) {
        snprintf(err, errlen, "no model path");
        if (out)
            *out = NULL;
        return MD_ERR_INVALID;
    }
    return model_load(path, NULL, 0, params, out, err, errlen);
}

int md_model_load_memory(const void *data, size_t size, const struct md_model_params *params,
                         struct md_model **out, char *err, size_t errlen)
{
    if (!data) {
        snprintf(err, errlen, "no model data");
        if (out)
            *out = NULL;
        return MD_ERR_INVALID;
    }
    return model_load(NULL, data, size, params, out, err, errlen);
}

/* Length of the headline at the start of msg: up to the first ": " that is
 * not inside quotes or parentheses (those hold names and details). */
static size_t headline_len(const char *msg)
{
    int depth = 0;
    bool quoted = false;
    size_t i = 0;
    for (; msg[i]; i++) {
        char c = msg[i];
        if (c == '\'')
            quoted = !quoted;
        else if (!quoted && c == '(')
            depth++;
        else if (!quoted && c == ')' && depth > 0)
            depth--;
        else if (!quoted && !depth && c == ':' && msg[i + 1] == ' ')
            break;
    }
    return i;
}

const char *md_load_error_cause(const char *err, const char *path, char *buf, size_t n)
{
    if (!buf || n == 0)
        return buf;
    buf[0] = '\0';
    if (!err)
        return buf;
    size_t k = path ? strlen(path) : 0;
    if (path && !strncmp(err, path, k) && err[k] == ':' && err[k + 1] == ' ')
        err += k + 2;
    size_t len = headline_len(err);
    if (len > n - 1)
        len = n - 1;
    memcpy(buf, err, len);
    buf[len] = '\0';
    return buf;
}

static void free_tensor(struct md_model *m, struct md_tensor *t)
{
    if (t->data)
        m->be->ops->tensor_free(m->be, t);
}

void md_model_free(struct md_model *m)
{
    if (!m)
        return;
    if (m->be) {
        if (m->layers) {
            for (int32_t il = 0; il < m->hp.n_layer; il++) {
                struct md_layer *L = &m->layers[il];
                struct md_tensor *ts[] = { &L->attn_norm, &L->wq, &L->wk, &L->wv, &L->bq, &L->bk,
                                           &L->bv, &L->wo, &L->bo, &L->ffn_norm, &L->ffn_gate,
                                           &L->ffn_up, &L->ffn_down };
                for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
                    free_tensor(m, ts[i]);
            }
        }
        if (!m->output_tied)
            free_tensor(m, &m->output);
        free_tensor(m, &m->tok_embd);
        free_tensor(m, &m->output_norm);
        free_tensor(m, &m->rope_freqs);
        md_backend_free(m->be);
    }
    free(m->layers);
    md_vocab_free(m->vocab);
    free(m->chat_template);
    md_gguf_close(m->gguf);
    free(m);
}

/* ---- accessors ------------------------------------------------------- */

const struct md_vocab *md_model_vocab(const struct md_model *m) { return m ? m->vocab : NULL; }
int32_t md_model_n_vocab(const struct md_model *m) { return m ? m->hp.n_vocab : 0; }
int32_t md_model_n_embd(const struct md_model *m) { return m ? m->hp.n_embd : 0; }
int32_t md_model_n_layer(const struct md_model *m) { return m ? m->hp.n_layer : 0; }
int32_t md_model_n_head(const struct md_model *m) { return m ? m->hp.n_head : 0; }
int32_t md_model_n_head_kv(const struct md_model *m) { return m ? m->hp.n_head_kv : 0; }
int32_t md_model_n_ctx_train(const struct md_model *m) { return m ? m->hp.n_ctx_train : 0; }
const char *md_model_arch(const struct md_model *m) { return m ? m->arch_name : ""; }
const char *md_model_desc(const struct md_model *m) { return m ? m->desc : ""; }
uint64_t md_model_n_params(const struct md_model *m) { return m ? m->n_params : 0; }
uint64_t md_model_size(const struct md_model *m) { return m ? m->n_bytes : 0; }
const char *md_model_chat_template(const struct md_model *m) { return m ? m->chat_template : NULL; }
double md_model_load_ms(const struct md_model *m) { return m ? m->load_ms : 0.0; }
