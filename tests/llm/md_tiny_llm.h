/* Tiny seeded random LLMs written as GGUF in memory, plus a naive
 * double-precision reference forward pass written from the formulas with
 * straightforward loops (no code shared with the engine), for the in-repo
 * self-checks of tests/llm. */
#ifndef MD_TINY_LLM_H
#define MD_TINY_LLM_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf-writer.h"
#include "mustdrop.h"
#include "quant.h"

#define TINY_MAX_LAYERS 4

struct tiny_cfg {
    const char *arch;        /* "llama" or "qwen2" (or anything, for error tests) */
    int n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx;
    int n_rot;               /* 0: head_dim */
    float rope_base;         /* 0: key omitted (engine default 10000) */
    float rope_linear;       /* > 0: rope.scaling.type linear with this factor */
    const char *rope_type;   /* overrides the scaling type string when set */
    int biases;              /* q/k/v biases */
    int tied;                /* no output.weight */
    uint32_t wtype;          /* type of 2-D weights: F32, F16, Q8_0 */
    const char *retype;      /* store this tensor as retype_type (zero bytes) */
    uint32_t retype_type;
    uint64_t seed;
    const char *omit;        /* tensor name to leave out */
    const char *reshape;     /* tensor name to write with a wrong ne[1] */
    const char *chat_template;
};

static inline struct tiny_cfg tiny_default(const char *arch)
{
    struct tiny_cfg c = { 0 };
    c.arch = arch;
    c.n_vocab = 96;
    c.n_embd = 64;
    c.n_layer = 2;
    c.n_head = 4;
    c.n_head_kv = 2;
    c.n_ff = 96;
    c.n_ctx = 256;
    c.rope_base = 10000.0f;
    c.biases = !strcmp(arch, "qwen2");
    c.wtype = MD_TYPE_F32;
    c.seed = 1234;
    return c;
}

/* Float copies of every tensor exactly as the engine sees it (quantized
 * weights are stored dequantized here). Layouts are [out][in]. */
struct tiny_layer_w {
    float *attn_norm, *wq, *wk, *wv, *bq, *bk, *bv, *wo, *ffn_norm, *gate, *up, *down;
};

struct tiny_model {
    struct tiny_cfg c;
    int head_dim;
    float *tok_embd, *out_norm, *output;   /* output == tok_embd when tied */
    struct tiny_layer_w l[TINY_MAX_LAYERS];
    void *raw[64];                         /* quantized byte buffers the writer borrows */
    int n_raw;
    void *file;                            /* the GGUF bytes */
    size_t size;
};

static inline double tiny_rand(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / 9007199254740992.0 * 2.0 - 1.0;   /* [-1, 1) */
}

static inline float *tiny_fill(uint64_t *s, size_t n, double scale, double offset)
{
    float *p = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++)
        p[i] = (float)(offset + scale * tiny_rand(s));
    return p;
}

/* Add a tensor; 2-D weights take cfg.wtype and are rounded in place to what
 * the engine will dequantize. */
static inline void tiny_add(struct tiny_model *m, struct md_gguf_writer *w, const char *name,
                            float *data, int64_t ne0, int64_t ne1)
{
    if (m->c.omit && !strcmp(m->c.omit, name))
        return;
    int64_t ne[2] = { ne0, ne1 };
    if (m->c.reshape && !strcmp(m->c.reshape, name)) {
        /* a prefix of the data under a smaller shape: valid bytes, wrong shape */
        if (ne1 > 1)
            ne[1] = ne1 / 2;
        else
            ne[0] = ne0 / 2;
    }
    uint32_t type = ne1 > 1 ? m->c.wtype : MD_TYPE_F32;
    if (m->c.retype && !strcmp(m->c.retype, name)) {
        md_gguf_writer_add_tensor(w, name, m->c.retype_type, ne1 > 1 ? 2 : 1, ne, NULL);
        return;
    }
    const void *bytes = data;
    if (type != MD_TYPE_F32) {
        int64_t rb = md_type_row_bytes(type, ne0);
        uint8_t *q = malloc((size_t)(rb * ne1));
        for (int64_t r = 0; r < ne1; r++) {
            float *row = data + r * ne0;
            if (type == MD_TYPE_F16) {
                uint16_t *h = (uint16_t *)(q + r * rb);
                for (int64_t i = 0; i < ne0; i++)
                    h[i] = md_fp32_to_fp16(row[i]);
            } else {
                md_quantize_row_q8_0(row, q + r * rb, ne0);
            }
            md_dequantize_row(type, q + r * rb, row, ne0);
        }
        m->raw[m->n_raw++] = q;
        bytes = q;
    }
    md_gguf_writer_add_tensor(w, name, type, ne1 > 1 ? 2 : 1, ne, bytes);
}

static inline void tiny_free(struct tiny_model *m)
{
    free(m->tok_embd);
    free(m->out_norm);
    if (m->output != m->tok_embd)
        free(m->output);
    for (int l = 0; l < TINY_MAX_LAYERS; l++) {
        struct tiny_layer_w *L = &m->l[l];
        float *ps[] = { L->attn_norm, L->wq, L->wk, L->wv, L->bq, L->bk, L->bv, L->wo,
                        L->ffn_norm, L->gate, L->up, L->down };
        for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
            free(ps[i]);
    }
    for (int i = 0; i < m->n_raw; i++)
        free(m->raw[i]);
    free(m->file);
    memset(m, 0, sizeof *m);
}

/* Build the weights and the GGUF bytes. Returns 0 or -1. */
static inline int tiny_build(struct tiny_model *m, const struct tiny_cfg *cfg)
{
    memset(m, 0, sizeof *m);
    m->c = *cfg;
    const struct tiny_cfg *c = &m->c;
    if (c->n_layer > TINY_MAX_LAYERS)
        return -1;
    m->head_dim = c->n_embd / c->n_head;
    int hd = m->head_dim, e = c->n_embd, q = c->n_head * hd, kv = c->n_head_kv * hd;
    uint64_t s = c->seed;
    double sw = 1.0 / sqrt((double)e);
    m->tok_embd = tiny_fill(&s, (size_t)c->n_vocab * e, 1.0, 0.0);
    m->out_norm = tiny_fill(&s, (size_t)e, 0.2, 1.0);
    m->output = c->tied ? m->tok_embd : tiny_fill(&s, (size_t)c->n_vocab * e, sw, 0.0);
    for (int l = 0; l < c->n_layer; l++) {
        struct tiny_layer_w *L = &m->l[l];
        L->attn_norm = tiny_fill(&s, (size_t)e, 0.2, 1.0);
        L->wq = tiny_fill(&s, (size_t)q * e, 2 * sw, 0.0);
        L->wk = tiny_fill(&s, (size_t)kv * e, 2 * sw, 0.0);
        L->wv = tiny_fill(&s, (size_t)kv * e, sw, 0.0);
        if (c->biases) {
            L->bq = tiny_fill(&s, (size_t)q, 0.5, 0.0);
            L->bk = tiny_fill(&s, (size_t)kv, 0.5, 0.0);
            L->bv = tiny_fill(&s, (size_t)kv, 0.5, 0.0);
        }
        L->wo = tiny_fill(&s, (size_t)e * q, sw, 0.0);
        L->ffn_norm = tiny_fill(&s, (size_t)e, 0.2, 1.0);
        L->gate = tiny_fill(&s, (size_t)c->n_ff * e, sw, 0.0);
        L->up = tiny_fill(&s, (size_t)c->n_ff * e, sw, 0.0);
        L->down = tiny_fill(&s, (size_t)e * c->n_ff, 1.0 / sqrt((double)c->n_ff), 0.0);
    }

    struct md_gguf_writer *w = md_gguf_writer_new();
    char key[128];
#define KEY(suffix) (snprintf(key, sizeof key, "%s." suffix, c->arch), key)
    md_gguf_writer_add_str(w, "general.architecture", c->arch);
    md_gguf_writer_add_str(w, "general.name", "tiny-random");
    md_gguf_writer_add_u32(w, KEY("context_length"), (uint32_t)c->n_ctx);
    md_gguf_writer_add_u32(w, KEY("embedding_length"), (uint32_t)e);
    md_gguf_writer_add_u32(w, KEY("block_count"), (uint32_t)c->n_layer);
    md_gguf_writer_add_u32(w, KEY("feed_forward_length"), (uint32_t)c->n_ff);
    md_gguf_writer_add_u32(w, KEY("attention.head_count"), (uint32_t)c->n_head);
    md_gguf_writer_add_u32(w, KEY("attention.head_count_kv"), (uint32_t)c->n_head_kv);
    md_gguf_writer_add_f32(w, KEY("attention.layer_norm_rms_epsilon"), 1e-5f);
    if (c->rope_base > 0)
        md_gguf_writer_add_f32(w, KEY("rope.freq_base"), c->rope_base);
    if (c->n_rot)
        md_gguf_writer_add_u32(w, KEY("rope.dimension_count"), (uint32_t)c->n_rot);
    if (c->rope_linear > 0 || c->rope_type) {
        md_gguf_writer_add_str(w, KEY("rope.scaling.type"), c->rope_type ? c->rope_type : "linear");
        md_gguf_writer_add_f32(w, KEY("rope.scaling.factor"), c->rope_linear > 0 ? c->rope_linear : 2.0f);
    }
    if (c->chat_template)
        md_gguf_writer_add_str(w, "tokenizer.chat_template", c->chat_template);
#undef KEY
    tiny_add(m, w, "token_embd.weight", m->tok_embd, e, c->n_vocab);
    tiny_add(m, w, "output_norm.weight", m->out_norm, e, 1);
    if (!c->tied)
        tiny_add(m, w, "output.weight", m->output, e, c->n_vocab);
    for (int l = 0; l < c->n_layer; l++) {
        struct tiny_layer_w *L = &m->l[l];
        char name[64];
#define ADD(suffix, p, ne0, ne1) (snprintf(name, sizeof name, "blk.%d." suffix, l), \
                                  tiny_add(m, w, name, p, ne0, ne1))
        ADD("attn_norm.weight", L->attn_norm, e, 1);
        ADD("attn_q.weight", L->wq, e, q);
        ADD("attn_k.weight", L->wk, e, kv);
        ADD("attn_v.weight", L->wv, e, kv);
        if (c->biases) {
            ADD("attn_q.bias", L->bq, q, 1);
            ADD("attn_k.bias", L->bk, kv, 1);
            ADD("attn_v.bias", L->bv, kv, 1);
        }
        ADD("attn_output.weight", L->wo, q, e);
        ADD("ffn_norm.weight", L->ffn_norm, e, 1);
        ADD("ffn_gate.weight", L->gate, e, c->n_ff);
        ADD("ffn_up.weight", L->up, e, c->n_ff);
        ADD("ffn_down.weight", L->down, c->n_ff, e);
#undef ADD
    }
    char err[256];
    int rc = md_gguf_writer_write_mem(w, &m->file, &m->size, err, sizeof err);
    if (rc)
        fprintf(stderr, "tiny_build: %s\n", err);
    md_gguf_writer_free(w);
    return rc;
}

/* ---- the naive reference ---------------------------------------------- */

static inline void ref_rmsnorm(const double *x, const float *w, int n, double *o)
{
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += x[i] * x[i];
    double inv = 1.0 / sqrt(ss / n + 1e-5);
    for (int i = 0; i < n; i++)
        o[i] = x[i] * inv * w[i];
}

/* o[r] = W[r] . x (+ b[r]), W [n_out][n_in] */
static inline void ref_linear(const float *W, const float *b, const double *x, int n_in, int n_out,
                              double *o)
{
    for (int r = 0; r < n_out; r++) {
        double s = b ? b[r] : 0.0;
        for (int i = 0; i < n_in; i++)
            s += (double)W[(size_t)r * n_in + i] * x[i];
        o[r] = s;
    }
}

/* RoPE on one head vector: llama pairs (2i, 2i+1), qwen2 pairs (i, i+n_rot/2). */
static inline void ref_rope(double *v, int n_rot, double pos, double base, int neox)
{
    for (int i = 0; i < n_rot / 2; i++) {
        double th = pos * pow(base, -2.0 * i / n_rot);
        int a = neox ? i : 2 * i, b = neox ? i + n_rot / 2 : 2 * i + 1;
        double x0 = v[a], x1 = v[b];
        v[a] = x0 * cos(th) - x1 * sin(th);
        v[b] = x0 * sin(th) + x1 * cos(th);
    }
}

/* Full forward of n rows from scratch: row i attends to rows 0..i.
 * in_embd[i] (n_embd floats) or tokens[i]; pos[i]; logits [n][n_vocab]. */
static inline void tiny_ref_forward(const struct tiny_model *m, const int32_t *tokens,
                                    const int32_t *pos, int n, double *logits)
{
    const struct tiny_cfg *c = &m->c;
    int e = c->n_embd, hd = m->head_dim, q = c->n_head * hd, kv = c->n_head_kv * hd;
    int n_rot = c->n_rot ? c->n_rot : hd, neox = !strcmp(c->arch, "qwen2");
    double base = c->rope_base > 0 ? c->rope_base : 10000.0;
    double pscale = c->rope_linear > 0 ? 1.0 / c->rope_linear : 1.0;
    double *x = calloc((size_t)n * e, sizeof(double)), *xb = calloc((size_t)e, sizeof(double));
    double *Q = calloc((size_t)n * q, sizeof(double)), *K = calloc((size_t)n * kv, sizeof(double));
    double *V = calloc((size_t)n * kv, sizeof(double)), *att = calloc((size_t)q, sizeof(double));
    double *tmp = calloc((size_t)(e > c->n_ff ? e : c->n_ff), sizeof(double));
    double *g = calloc((size_t)c->n_ff, sizeof(double)), *u = calloc((size_t)c->n_ff, sizeof(double));
    double *sc = calloc((size_t)n, sizeof(double));
    for (int i = 0; i < n; i++)
        for (int j = 0; j < e; j++)
            x[(size_t)i * e + j] = m->tok_embd[(size_t)tokens[i] * e + j];
    for (int l = 0; l < c->n_layer; l++) {
        const struct tiny_layer_w *L = &m->l[l];
        for (int i = 0; i < n; i++) {
            ref_rmsnorm(x + (size_t)i * e, L->attn_norm, e, xb);
            ref_linear(L->wq, L->bq, xb, e, q, Q + (size_t)i * q);
            ref_linear(L->wk, L->bk, xb, e, kv, K + (size_t)i * kv);
            ref_linear(L->wv, L->bv, xb, e, kv, V + (size_t)i * kv);
            for (int h = 0; h < c->n_head; h++)
                ref_rope(Q + (size_t)i * q + h * hd, n_rot, pos[i] * pscale, base, neox);
            for (int h = 0; h < c->n_head_kv; h++)
                ref_rope(K + (size_t)i * kv + h * hd, n_rot, pos[i] * pscale, base, neox);
        }
        for (int i = 0; i < n; i++) {
            for (int h = 0; h < c->n_head; h++) {
                int hk = h / (c->n_head / c->n_head_kv);
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j <= i; j++) {
                    double s = 0;
                    for (int d = 0; d < hd; d++)
                        s += Q[(size_t)i * q + h * hd + d] * K[(size_t)j * kv + hk * hd + d];
                    sc[j] = s / sqrt((double)hd);
                    if (sc[j] > mx)
                        mx = sc[j];
                }
                for (int j = 0; j <= i; j++)
                    sum += (sc[j] = exp(sc[j] - mx));
                for (int d = 0; d < hd; d++) {
                    double a = 0;
                    for (int j = 0; j <= i; j++)
                        a += sc[j] * V[(size_t)j * kv + hk * hd + d];
                    att[h * hd + d] = a / sum;
                }
            }
            ref_linear(L->wo, NULL, att, q, e, tmp);
            for (int j = 0; j < e; j++)
                x[(size_t)i * e + j] += tmp[j];
        }
        for (int i = 0; i < n; i++) {
            ref_rmsnorm(x + (size_t)i * e, L->ffn_norm, e, xb);
            ref_linear(L->gate, NULL, xb, e, c->n_ff, g);
            ref_linear(L->up, NULL, xb, e, c->n_ff, u);
            for (int j = 0; j < c->n_ff; j++)
                g[j] = g[j] / (1.0 + exp(-g[j])) * u[j];
            ref_linear(L->down, NULL, g, c->n_ff, e, tmp);
            for (int j = 0; j < e; j++)
                x[(size_t)i * e + j] += tmp[j];
        }
    }
    for (int i = 0; i < n; i++) {
        ref_rmsnorm(x + (size_t)i * e, m->out_norm, e, xb);
        ref_linear(m->output, NULL, xb, e, c->n_vocab, logits + (size_t)i * c->n_vocab);
    }
    free(x); free(xb); free(Q); free(K); free(V); free(att); free(tmp); free(g); free(u); free(sc);
}

/* Largest |a - b| relative to max(1, max |b|). */
static inline double tiny_max_rel(const float *a, const double *b, int n)
{
    double mb = 1.0, md = 0.0;
    for (int i = 0; i < n; i++) {
        if (fabs(b[i]) > mb)
            mb = fabs(b[i]);
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= md))
            md = d;   /* NaN propagates as a failure */
    }
    return md / mb;
}

static inline int tiny_load(const struct tiny_model *t, struct md_model **out, char *err, size_t n)
{
    struct md_model_params mp = md_model_default_params();
    return md_model_load_memory(t->file, t->size, &mp, out, err, n);
}

#endif
