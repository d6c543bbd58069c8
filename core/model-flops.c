/* Analytic prefill FLOPs of an unreduced prompt, counted exactly as the
 * reduction stats count them (core/reduce/stats.c, prefill.c): every layer
 * on all n rows, plus the logits of the last row. */
#include "model.h"
#include "reduce-impl.h"

double md_model_prefill_flops(const struct md_model *model, int64_t n_rows)
{
    if (!model || n_rows <= 0)
        return 0.0;
    const struct md_hparams *hp = &model->hp;
    struct md_llm_dims d = { hp->n_embd, hp->n_head, hp->n_head_kv, hp->head_dim, hp->n_ff,
                             hp->n_vocab, hp->n_layer };
    double fl = 2.0 * d.D * d.V;
    for (int64_t l = 0; l < d.L; l++)
        fl += md_reduce_flops_llm_layer(&d, n_rows, 0);
    return fl;
}
