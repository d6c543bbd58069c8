/* The analytic cost model every FLOP count of the library comes from:
 * md_reduce_stats' vision / prefill / decode counts and
 * md_model_prefill_flops (mustdrop.h), the unreduced reference they are
 * compared with. 2 FLOPs per multiply-add; the formulas are in flops.c
 * and docs/reduction.md ("Accounting"). */
#ifndef MD_REDUCE_FLOPS_H
#define MD_REDUCE_FLOPS_H

#include <stdint.h>

struct md_hparams;
struct md_clip_hparams;

/* LLM: n_embd, heads, KV heads, head dim, FFN width, vocabulary, layers. */
struct md_llm_dims { int64_t D, H, Hkv, d, F, V, L; };
/* Tower: hidden width, FFN width, heads, projector hidden and output width. */
struct md_vit_dims { int64_t D, F, H, M, E; };

struct md_llm_dims md_reduce_llm_dims(const struct md_hparams *hp);
struct md_vit_dims md_reduce_vit_dims(const struct md_clip_hparams *hp);

/* One LLM layer on n new rows after n_past cached entries (causal). */
double md_reduce_flops_llm_layer(const struct md_llm_dims *m, int64_t n, int64_t n_past);
/* One LLM layer's decode step against n_kv entries (incl. itself). */
double md_reduce_flops_llm_decode(const struct md_llm_dims *m, int64_t n_kv);
/* The output head on one row (the only row whose logits a step needs). */
double md_reduce_flops_logits(const struct md_llm_dims *m);
/* One tower layer on n tokens (bidirectional), and the projector. */
double md_reduce_flops_vit_layer(const struct md_vit_dims *v, int64_t n);
double md_reduce_flops_projector(const struct md_vit_dims *v, int64_t n);
/* A whole tower run: n_layers layers on n_tok tokens, then the projector
 * on n_out of them. */
double md_reduce_flops_tower(const struct md_vit_dims *v, int32_t n_layers, int64_t n_tok,
                             int64_t n_out);

#endif
