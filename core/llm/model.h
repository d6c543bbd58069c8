/* LLM weights and hyperparameters, loaded from a GGUF file. */
#ifndef MD_MODEL_H
#define MD_MODEL_H

#include "backend.h"
#include "mustdrop.h"

struct md_gguf;

enum md_arch {
    MD_ARCH_LLAMA = 0,   /* LLaMA-2/3, Vicuna, Mistral: RoPE on pairs (2i, 2i+1) */
    MD_ARCH_QWEN2 = 1,   /* Qwen2/2.5: q/k/v biases, NEOX RoPE */
};

struct md_hparams {
    int32_t n_vocab;        /* rows of token_embd (= logits per row) */
    int32_t n_ctx_train;    /* {arch}.context_length */
    int32_t n_embd;
    int32_t n_layer;
    int32_t n_ff;
    int32_t n_head;
    int32_t n_head_kv;      /* GQA: n_head % n_head_kv == 0 */
    int32_t head_dim;       /* n_embd / n_head unless attention.key_length says */
    int32_t n_rot;          /* rope.dimension_count, default head_dim */
    float rms_eps;
    float rope_freq_base;   /* default 10000 */
    float rope_freq_scale;  /* 1 / linear scaling factor */
    enum md_rope_mode rope_mode;
};

/* One transformer block. Matrix shapes in GGUF ne order {in, out}; a
 * missing optional tensor has data == NULL. */
struct md_layer {
    struct md_tensor attn_norm;   /* F32 {n_embd} */
    struct md_tensor wq;          /* {n_embd, n_head * head_dim} */
    struct md_tensor wk;          /* {n_embd, n_head_kv * head_dim} */
    struct md_tensor wv;          /* {n_embd, n_head_kv * head_dim} */
    struct md_tensor bq, bk, bv;  /* optional F32 biases (qwen2 has them) */
    struct md_tensor wo;          /* {n_head * head_dim, n_embd} */
    struct md_tensor bo;          /* optional F32 {n_embd} */
    struct md_tensor ffn_norm;    /* F32 {n_embd} */
    struct md_tensor ffn_gate;    /* {n_embd, n_ff} */
    struct md_tensor ffn_up;      /* {n_embd, n_ff} */
    struct md_tensor ffn_down;    /* {n_ff, n_embd} */
};

struct md_model {
    enum md_arch arch;
    char arch_name[16];
    struct md_hparams hp;

    struct md_tensor tok_embd;     /* {n_embd, n_vocab}, any type */
    struct md_tensor output_norm;  /* F32 {n_embd} */
    struct md_tensor output;       /* {n_embd, n_vocab}; == tok_embd when tied */
    bool output_tied;
    struct md_tensor rope_freqs;   /* optional F32 {n_rot/2} (LLaMA-3.1) */
    struct md_layer *layers;       /* [n_layer] */

    struct md_vocab *vocab;        /* NULL when the file has no tokenizer */
    char *chat_template;           /* NULL when absent */
    char desc[256];
    uint64_t n_params, n_bytes;
    double load_ms;

    struct md_backend *be;         /* owns the weight storage */
    char backend_name[16];
    int32_t device;
    struct md_gguf *gguf;          /* kept open: CPU weights alias its bytes */
};

#endif
