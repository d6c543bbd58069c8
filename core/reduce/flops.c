/* Analytic FLOPs (2 per multiply-add), all of them in this one file.
 *
 * LLM layer on n new rows after p cached entries (causal, GQA):
 *   projections  2n(D*H*d + 2*D*Hkv*d + H*d*D)
 *   FFN (SwiGLU) 2n(3*D*F)
 *   attention    2*2*H*d * sum_i (p + i + 1) = 4*H*d*(n*p + n(n+1)/2)
 * Decode step against n_kv entries: the same with n = 1, attention
 * 4*H*d*n_kv. Output head 2*D*V per row with logits (one row).
 * Vision layer on n tokens (bidirectional): 2n(4*D^2 + 2*D*F) + 4*n^2*D;
 * projector 2n(D*M + M*E). Norms, RoPE and softmax are left out (O(nD)). */
#include "flops.h"
#include "model.h"
#include "vision-impl.h"

struct md_llm_dims md_reduce_llm_dims(const struct md_hparams *hp)
{
    struct md_llm_dims d = { hp->n_embd, hp->n_head, hp->n_head_kv, hp->head_dim, hp->n_ff,
                             hp->n_vocab, hp->n_layer };
    return d;
}

struct md_vit_dims md_reduce_vit_dims(const struct md_clip_hparams *hp)
{
    struct md_vit_dims d = { hp->hidden, hp->n_ff, hp->n_head, hp->n_mm, hp->n_embd_out };
    return d;
}

double md_reduce_flops_llm_layer(const struct md_llm_dims *m, int64_t n, int64_t n_past)
{
    double lin = 2.0 * n * (m->D * m->H * m->d + 2.0 * m->D * m->Hkv * m->d + m->H * m->d * m->D
                            + 3.0 * m->D * m->F);
    double att = 4.0 * m->H * m->d * ((double)n * n_past + (double)n * (n + 1) / 2.0);
    return lin + att;
}

double md_reduce_flops_llm_decode(const struct md_llm_dims *m, int64_t n_kv)
{
    double lin = 2.0 * (m->D * m->H * m->d + 2.0 * m->D * m->Hkv * m->d + m->H * m->d * m->D
                        + 3.0 * m->D * m->F);
    return lin + 4.0 * m->H * m->d * (double)n_kv;
}

double md_reduce_flops_logits(const struct md_llm_dims *m)
{
    return 2.0 * m->D * m->V;
}

double md_reduce_flops_vit_layer(const struct md_vit_dims *v, int64_t n)
{
    return 2.0 * n * (4.0 * v->D * v->D + 2.0 * v->D * v->F) + 4.0 * (double)n * n * v->D;
}

double md_reduce_flops_projector(const struct md_vit_dims *v, int64_t n)
{
    return 2.0 * n * ((double)v->D * v->M + (double)v->M * v->E);
}

double md_reduce_flops_tower(const struct md_vit_dims *v, int32_t n_layers, int64_t n_tok,
                             int64_t n_out)
{
    return n_layers * md_reduce_flops_vit_layer(v, n_tok) + md_reduce_flops_projector(v, n_out);
}

/* Counted as the reduction stats count a prefill (prefill.c): every layer
 * on all n rows, plus the logits of the last row. */
double md_model_prefill_flops(const struct md_model *model, int64_t n_rows)
{
    if (!model || n_rows <= 0)
        return 0.0;
    struct md_llm_dims d = md_reduce_llm_dims(&model->hp);
    double fl = md_reduce_flops_logits(&d);
    for (int64_t l = 0; l < d.L; l++)
        fl += md_reduce_flops_llm_layer(&d, n_rows, 0);
    return fl;
}
