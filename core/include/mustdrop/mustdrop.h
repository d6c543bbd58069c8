/* libmustdrop: run LLaVA-style vision-language models from llama.cpp GGUF
 * files, with visual-token reduction (MustDrop, HiRED, ...).
 *
 * This header is the core of the public C API (language model, context,
 * decoding, sampling, chat templates) and brings in the tokenizer
 * (mustdrop-tokenizer.h); mustdrop-vision.h, mustdrop-reduce.h and
 * mustdrop-vqa.h build on it. Installed as <mustdrop/mustdrop.h>; link with
 * `pkg-config --cflags --libs mustdrop` (docs/api.md). Typical use:
 *
 *     struct md_model_params mp = md_model_default_params();
 *     struct md_model *model;
 *     char err[256];
 *     if (md_model_load("vicuna-7b.Q4_K_M.gguf", &mp, &model, err, sizeof err) != MD_OK)
 *         die(err);
 *
 *     struct md_context_params cp = md_context_default_params();
 *     struct md_context *ctx;
 *     if (md_context_new(model, &cp, &ctx, err, sizeof err) != MD_OK) die(err);
 *
 *     char prompt[4096];
 *     md_chat_format(NULL, model, NULL, "Why is the sky blue?", prompt, sizeof prompt);
 *     int32_t toks[1024];
 *     int64_t n = md_tokenize(md_model_vocab(model), prompt, strlen(prompt),
 *                             true, true, toks, 1024);  // mustdrop-tokenizer.h
 *     md_decode(ctx, toks, (int32_t)n, false);                 // prefill
 *
 *     struct md_sampler_params sp = md_sampler_default_params();
 *     struct md_sampler *smp = md_sampler_new(&sp);
 *     for (;;) {
 *         int32_t t = md_sampler_sample(smp, md_get_logits(ctx, -1), md_model_n_vocab(model));
 *         if (md_vocab_is_eog(md_model_vocab(model), t)) break;
 *         ... print md_token_to_piece(...) ...
 *         if (md_decode(ctx, &t, 1, false) != MD_OK) break;
 *     }
 *     md_sampler_free(smp); md_context_free(ctx); md_model_free(model);
 *
 * Threading: a model is read-only after loading and may be shared by many
 * contexts; one context (and one sampler) must be used by one thread at a
 * time. There is no global mutable state.
 *
 * Errors: functions returning int give MD_OK (0) or a negative enum
 * md_status; load/new functions also write a message naming the key, tensor
 * or shape at fault into err. md_context_error() gives the message of the
 * last failed call on a context.
 *
 * Load errors (md_model_load, md_vision_load) read "<path>: <cause>" or
 * "<path>: <cause>: <detail>", the path once, the cause first: the text
 * after the path up to the next ": " outside quotes and parentheses is a
 * headline (md_load_error_cause). The same defect gives the same status
 * and cause from both loaders, and from the *_memory loaders (without the
 * path):
 *   MD_ERR_IO           "no such file", "permission denied", "is a
 *                       directory, not a GGUF file", "not a regular file
 *                       (a FIFO)", "cannot open", "cannot read", "cannot map
 *                       the file": the bytes cannot be had;
 *   MD_ERR_FORMAT       "empty file (0 bytes)", "not a GGUF file" or, when
 *                       its first bytes say, "not a GGUF file (a PNG
 *                       image)", "truncated"
 *                       (then "the file has N bytes, its tensor data needs
 *                       M ..."), "malformed GGUF", "missing key 'k'",
 *                       "missing tensor 't'", "wrong shape of tensor 't'
 *                       (...)": the bytes are there but wrong. A truncated
 *                       file is MD_ERR_FORMAT, not MD_ERR_IO, for both
 *                       loaders: it was read in full, it holds less than
 *                       its own header declares (as a cut buffer given to
 *                       the *_memory loaders does);
 *   MD_ERR_UNSUPPORTED  a valid file this library does not run: "a vision
 *                       projector (clip), not a language model; pass it
 *                       as the mmproj" (md_model_load), "a language model
 *                       (llama), not a vision projector; pass it as the
 *                       model" (md_vision_load), "unsupported
 *                       architecture 'x' (...)", "unsupported GGUF version
 *                       N", "unsupported tensor type ...".
 */
#ifndef MUSTDROP_H
#define MUSTDROP_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include "mustdrop-tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MD_VERSION_STRING "0.1.0"

/* The library's version, "major.minor.patch". */
const char *md_version(void);

enum md_status {
    MD_OK               =  0,
    MD_ERR_INVALID      = -1,  /* bad argument (NULL, out of range, bad index list) */
    MD_ERR_IO           = -2,  /* file cannot be opened or read: missing, no permission,
                                  a directory or other non-regular file */
    MD_ERR_FORMAT       = -3,  /* malformed file: empty, not GGUF, truncated, missing
                                  key/tensor, wrong type/shape */
    MD_ERR_UNSUPPORTED  = -4,  /* valid but unsupported: architecture (an mmproj given as
                                  the LLM, and the reverse, included), GGUF version,
                                  tensor type, rope scaling, ISA, backend */
    MD_ERR_NOMEM        = -5,  /* allocation failed */
    MD_ERR_CONTEXT_FULL = -6,  /* the KV cache has no room for the batch */
    MD_ERR_ABORTED      = -7,  /* the abort callback asked to stop */
    MD_ERR_BACKEND      = -8,  /* the compute backend failed (e.g. a CUDA error) */
};

/* A short constant description of a status code. */
const char *md_status_str(int status);

/* The cause of a failed md_model_load / md_vision_load (or their _memory
 * forms, with path NULL), short enough for a headline: the message without
 * its "<path>: " up to the next ": " outside quotes and parentheses, e.g.
 * "truncated", "empty file (0 bytes)", "not a GGUF file", "is a directory,
 * not a GGUF file", "no such file". Written NUL-terminated into buf (cut at
 * n - 1 bytes); returns buf. */
const char *md_load_error_cause(const char *err, const char *path, char *buf, size_t n);

/* -------------------------------------------------------------------------
 * Backends
 * ------------------------------------------------------------------------- */

/* Whether models can be loaded on `backend` ("cpu", "cuda"; NULL = "cpu"),
 * device index `device` (GPU backends), before any model is loaded: what
 * device=auto uses to choose, and the clear error for an explicit device.
 * MD_OK when usable (why = ""); else MD_ERR_UNSUPPORTED and a one-line
 * reason in why naming the cause, e.g. "this build has no CUDA backend",
 * "the CUDA backend module libmustdrop-cuda.so was not found (looked in
 * ...)", "no CUDA device: <the CUDA runtime's reason>", "CUDA device 3 does
 * not exist (2 found)". "cpu" is always MD_OK. The CUDA backend is a module
 * loaded at run time: $MUSTDROP_BACKEND_DIR when set (and then only there),
 * else the installed module directory, then the build tree. Without a
 * device the module is unloaded again; it keeps nothing. why may be NULL. */
int md_backend_check(const char *backend, int32_t device, char *why, size_t why_len);

/* -------------------------------------------------------------------------
 * Model
 * ------------------------------------------------------------------------- */

struct md_model;
struct md_vocab;  /* the tokenizer: its functions are in mustdrop-tokenizer.h */

/* Called during loading with progress in [0,1]. Return false to cancel the
 * load (md_model_load then returns MD_ERR_ABORTED). */
typedef bool (*md_progress_callback)(float progress, void *user);

struct md_model_params {
    int32_t n_threads;                 /* threads for load-time work (reserved: the CPU
                                          backend aliases the file and needs none) */
    bool use_mmap;                     /* true (default): map the file, no weight copy on CPU;
                                          false: read the file into memory */
    bool vocab_only;                   /* load hparams and tokenizer only, no tensors */
    const char *backend;               /* NULL or "cpu" (default); "cuda" where built */
    int32_t device;                    /* device index for GPU backends (0) */
    md_progress_callback progress_callback;  /* NULL: none */
    void *progress_callback_user;
};

struct md_model_params md_model_default_params(void);

/* Load an LLM from a GGUF file. Architectures: "llama" (LLaMA-2/3, Vicuna,
 * Mistral) and "qwen2". Every tensor's presence, type and shape is checked;
 * on failure *out is NULL and err says which key or tensor is wrong, e.g.
 * "m.gguf: wrong shape of tensor 'blk.0.attn_k.weight' (shape {64, 32},
 * expected {64, 16})" (see "Load errors" above). */
int md_model_load(const char *path, const struct md_model_params *params,
                  struct md_model **out, char *err, size_t errlen);
/* Same from a caller's buffer holding a whole GGUF file; the buffer must
 * outlive the model (tests, fuzzing, embedded models). */
int md_model_load_memory(const void *data, size_t size, const struct md_model_params *params,
                         struct md_model **out, char *err, size_t errlen);
void md_model_free(struct md_model *model);

/* NULL when the file carries no tokenizer (tokenizer.ggml.model absent). */
const struct md_vocab *md_model_vocab(const struct md_model *model);
/* Rows of the output projection = length of a logits row. May exceed the
 * tokenizer's token count (Qwen2 pads its embedding matrix). */
int32_t md_model_n_vocab(const struct md_model *model);
int32_t md_model_n_embd(const struct md_model *model);
int32_t md_model_n_layer(const struct md_model *model);
int32_t md_model_n_head(const struct md_model *model);
int32_t md_model_n_head_kv(const struct md_model *model);
int32_t md_model_n_ctx_train(const struct md_model *model);
const char *md_model_arch(const struct md_model *model);   /* "llama", "qwen2" */
/* One line, e.g. "llama 6.74B params, 32 layers, n_embd 4096, n_vocab 32000,
 * types: Q4_K 193, Q6_K 33, F32 65". */
const char *md_model_desc(const struct md_model *model);
uint64_t md_model_n_params(const struct md_model *model);
uint64_t md_model_size(const struct md_model *model);       /* bytes of tensor data */
/* Analytic FLOPs (2 per multiply-add) of prefilling n_rows rows from an
 * empty cache with no token reduction, plus the last row's logits: the
 * count md_reduce_stats.flops_prefill uses (docs/reduction.md). */
double md_model_prefill_flops(const struct md_model *model, int64_t n_rows);
/* tokenizer.chat_template (Jinja text) or NULL. */
const char *md_model_chat_template(const struct md_model *model);
/* Milliseconds md_model_load took. */
double md_model_load_ms(const struct md_model *model);

/* -------------------------------------------------------------------------
 * Context: KV cache, activation buffers, thread pool
 * ------------------------------------------------------------------------- */

struct md_context;

/* Return true to abort the running md_decode* (checked between layers). */
typedef bool (*md_abort_callback)(void *user);

enum md_kv_type {
    MD_KV_F32 = 0,   /* default */
    MD_KV_F16 = 1,   /* half the memory; CPU converts rows on the fly (slower) */
};

struct md_context_params {
    int32_t n_ctx;          /* KV capacity per layer; 0 = min(model context_length, 4096) */
    int32_t n_batch;        /* max rows per forward pass (512); longer inputs are split */
    int32_t n_threads;      /* 0 = number of online CPUs */
    const char *isa;        /* CPU kernels: NULL/"auto", "scalar", "avx2", "avx512" */
    enum md_kv_type kv_type;
    md_abort_callback abort_callback;   /* NULL: none */
    void *abort_callback_user;
    /* CPU decode with quantized weights (Q4_0..Q8_0, K quants) quantizes
     * the activations to 8 bits and uses integer dot products, as
     * llama.cpp does (false, the default): faster, off the exact product
     * by the activation rounding (about 2e-3 of sum |w x|, test_qdot).
     * true: always multiply with the dequantized f32 weights (the
     * conformance tests compare against that exact forward). */
    bool exact_matmul;
};

struct md_context_params md_context_default_params(void);

int md_context_new(struct md_model *model, const struct md_context_params *params,
                   struct md_context **out, char *err, size_t errlen);
void md_context_free(struct md_context *ctx);

const struct md_model *md_context_model(const struct md_context *ctx);
int32_t md_context_n_ctx(const struct md_context *ctx);
int32_t md_context_n_batch(const struct md_context *ctx);
/* Grow the rows one forward pass takes to n_batch (at most n_ctx; never
 * shrinks): for a prompt that must go through in one pass (layer-wise
 * pruning). MD_OK, or MD_ERR_NOMEM with md_context_error, the context
 * keeping its previous size. */
int md_context_reserve_batch(struct md_context *ctx, int32_t n_batch);
int32_t md_context_n_threads(const struct md_context *ctx);
const char *md_context_isa(const struct md_context *ctx);   /* "scalar", "avx2", "avx512" */
/* Message of the last failed call on ctx ("" if none). */
const char *md_context_error(const struct md_context *ctx);

/* -------------------------------------------------------------------------
 * Forward pass
 * ------------------------------------------------------------------------- */

/* In md_batch.tokens: this row takes the next row of md_batch.embd. */
#define MD_TOKEN_EMBD (-1)

/* A batch of input rows: token ids, embedding rows (e.g. projected image
 * features), or both mixed in sequence order. */
struct md_batch {
    int32_t n;              /* rows */
    const int32_t *tokens;  /* [n] ids, or NULL when every row is an embedding row;
                               a row whose id is MD_TOKEN_EMBD takes the next embd row */
    const float *embd;      /* [rows needed][n_embd], in order; NULL if no embd rows */
    const int32_t *pos;     /* [n] RoPE positions, or NULL: n_past, n_past+1, ...
                               (layers with MD_KV_POS_LAYER_LEN use their cache
                               length + row instead); n_past becomes max(pos) + 1 */
    bool all_logits;        /* true: logits of every row; false: of the last row only */
};

/* Run the rows through the model, appending their keys and values to the KV
 * cache (split in chunks of n_batch). Returns MD_OK or a negative status;
 * MD_ERR_CONTEXT_FULL when some layer's cache lacks room for n rows. On any
 * error the cache is left as it was before the call. */
int md_decode_batch(struct md_context *ctx, const struct md_batch *batch);
/* Shorthands: n token ids / n embedding rows [n][n_embd]. */
int md_decode(struct md_context *ctx, const int32_t *tokens, int32_t n, bool all_logits);
int md_decode_embd(struct md_context *ctx, const float *embd, int32_t n, bool all_logits);

/* One decode step for n sequences at once: ctxs[i] (n distinct contexts of
 * one model, each with its own KV cache) takes tokens[i] at its next
 * position, and the n rows go through each weight product together, one
 * pass over the weights for all of them; RoPE positions, the K/V append and
 * attention stay each context's own. ctxs[0] runs the step: its backend,
 * threads and buffers (so n <= its n_batch); the others must use the same
 * kernels (isa, exact_matmul). Each context's logits come from
 * md_get_logits(ctxs[i], -1) as after md_decode of one token. Rows never
 * mix: on the CPU, with quantized weights (integer dots) they are bit for
 * bit what md_decode gives; with F32/F16/BF16 weights or exact_matmul the
 * GEMV kernel's order of summation depends on how many rows share a pass,
 * so they may differ in the last bits (about 1e-6 of their scale). Every
 * context's decode timing counts the whole step.
 * Returns MD_OK or a negative status, and on any error no cache has
 * changed: MD_ERR_INVALID for bad arguments (a NULL or repeated context,
 * another model, a token out of range), MD_ERR_CONTEXT_FULL when one
 * context has no room, MD_ERR_ABORTED when one's abort callback fired. The
 * context at fault has the message (md_context_error); the others say which
 * sequence it was, so a caller can drop that one and step the rest. */
int md_decode_multi(struct md_context *const *ctxs, const int32_t *tokens, int32_t n);

/* Logits (n_vocab floats) of row i of the last decode call; i = -1 is its
 * last row. NULL if that row has none (all_logits was false) or i is out of
 * range. Valid until the next decode. */
const float *md_get_logits(struct md_context *ctx, int32_t i);
/* Rows with logits from the last decode (1, or n when all_logits). */
int32_t md_n_logits(const struct md_context *ctx);

/* The next sequence position (= tokens decoded since the last clear, unless
 * positions were given explicitly or caches were compacted). */
int32_t md_context_n_past(const struct md_context *ctx);
/* Empty every layer's cache and reset positions to 0. */
void md_kv_clear(struct md_context *ctx);
/* Forget everything from sequence entry n on in every layer and set the
 * next position to n (rewind, for prompt reuse). Only meaningful while no
 * layer has been compacted. */
int md_kv_truncate(struct md_context *ctx, int32_t n);

/* -------------------------------------------------------------------------
 * KV cache: per-layer storage for the token-reduction methods
 *
 * Each layer l holds len(l) entries in sequence order, each with the RoPE
 * position its key was rotated with. Layers may have different lengths
 * (MustDrop keeps layers 0-1 whole and compacts the rest). Attention masks by
 * entry order, never by position value, so compaction keeps causality.
 * ------------------------------------------------------------------------- */

struct md_kv_cache;

/* How a layer picks the RoPE position of newly appended entries. */
enum md_kv_pos_policy {
    MD_KV_POS_SEQUENCE  = 0,  /* default: the shared sequence position (n_past) */
    MD_KV_POS_LAYER_LEN = 1,  /* the layer's own cache length (MustDrop's faithful decode) */
};

struct md_kv_cache *md_context_kv(struct md_context *ctx);
int32_t md_kv_cache_n_layer(const struct md_kv_cache *kv);
int32_t md_kv_cache_capacity(const struct md_kv_cache *kv);
int32_t md_kv_cache_len(const struct md_kv_cache *kv, int32_t il);
/* Positions of layer il's entries ([len]); NULL for a bad layer. */
const int32_t *md_kv_cache_pos(const struct md_kv_cache *kv, int32_t il);
/* Keep entries idx[0..n) of layer il, in that order, dropping the rest.
 * idx must be strictly increasing and < len(il); otherwise MD_ERR_INVALID
 * and nothing changes. */
int md_kv_cache_keep(struct md_kv_cache *kv, int32_t il, const int32_t *idx, int32_t n);
/* Drop entries n.. of layer il (n <= len). */
int md_kv_cache_truncate(struct md_kv_cache *kv, int32_t il, int32_t n);
/* Policy of layer il, or of all layers when il = -1. */
int md_kv_cache_set_pos_policy(struct md_kv_cache *kv, int32_t il, enum md_kv_pos_policy policy);
enum md_kv_pos_policy md_kv_cache_pos_policy(const struct md_kv_cache *kv, int32_t il);
/* Position the next appended entry of layer il gets (with pos == NULL batches). */
int32_t md_kv_cache_next_pos(const struct md_kv_cache *kv, int32_t il);
/* The shared sequence position (n_past) used by MD_KV_POS_SEQUENCE layers. */
int32_t md_kv_cache_seq_pos(const struct md_kv_cache *kv);
int md_kv_cache_set_seq_pos(struct md_kv_cache *kv, int32_t pos);
/* Bytes of K and V held by the entries in use (all layers). */
size_t md_kv_cache_bytes(const struct md_kv_cache *kv);

/* -------------------------------------------------------------------------
 * Timings
 * ------------------------------------------------------------------------- */

struct md_timings {
    double load_ms;      /* model load */
    double prefill_ms;   /* md_decode* calls with more than one row */
    int32_t n_prefill;   /* rows in those calls */
    int32_t n_prefill_calls;
    double decode_ms;    /* md_decode* calls with exactly one row */
    int32_t n_decode;
};

struct md_timings md_get_timings(const struct md_context *ctx);
void md_reset_timings(struct md_context *ctx);

/* -------------------------------------------------------------------------
 * Sampling
 * ------------------------------------------------------------------------- */

struct md_sampler;

struct md_sampler_params {
    float temp;             /* <= 0: greedy (argmax); default 0.8 */
    int32_t top_k;          /* <= 0: off; default 40 */
    float top_p;            /* >= 1: off; default 0.95 */
    float repeat_penalty;   /* 1.0: off (default); > 1 discourages repeats */
    int32_t repeat_last_n;  /* tokens of history the penalty looks at (64) */
    uint64_t seed;          /* the same seed gives the same tokens (default 0x5eed) */
};

struct md_sampler_params md_sampler_default_params(void);
/* NULL on bad parameters (NaN temp, top_p <= 0) or out of memory. */
struct md_sampler *md_sampler_new(const struct md_sampler_params *params);
void md_sampler_free(struct md_sampler *s);
/* Pick a token from logits[0..n_vocab); records it in the penalty history.
 * Returns the id, or -1 on bad input (NULL, n_vocab <= 0). */
int32_t md_sampler_sample(struct md_sampler *s, const float *logits, int32_t n_vocab);
/* Add a token the sampler did not pick (e.g. the prompt) to the history. */
void md_sampler_accept(struct md_sampler *s, int32_t token);
/* Clear the history and restart the random stream from the seed. */
void md_sampler_reset(struct md_sampler *s);

/* -------------------------------------------------------------------------
 * Chat templates
 * ------------------------------------------------------------------------- */

/* Format one system + user turn, ready for the assistant's answer, into buf
 * (snprintf-like: returns the bytes needed excluding the NUL, writes at most
 * n-1 and NUL-terminates). Tokenize the result with add_special = true (the
 * BOS comes from the tokenizer, not the text) and parse_special = true.
 *
 * tmpl: "vicuna", "mistral", "chatml", "llama3", or NULL / "auto" to detect
 * from the model's tokenizer.chat_template (then its architecture).
 * system: NULL = the template's customary default, "" = no system part.
 * Returns MD_ERR_INVALID for an unknown template name or NULL user. */
int md_chat_format(const char *tmpl, const struct md_model *model,
                   const char *system, const char *user, char *buf, size_t n);
/* The template name NULL/"auto" resolves to for this model (model may be
 * NULL: "vicuna"), or tmpl itself when it names a known template, else NULL. */
const char *md_chat_template_name(const char *tmpl, const struct md_model *model);

/* -------------------------------------------------------------------------
 * The bundled default model
 * ------------------------------------------------------------------------- */

/* File names of the default model (an LLaVA-style pair trained for video QA). */
#define MD_DEFAULT_LLM_FILE    "synthvqa-llm-f16.gguf"
#define MD_DEFAULT_MMPROJ_FILE "synthvqa-mmproj-f16.gguf"

/* Find the default model. Directories searched, in order:
 *   1. $MUSTDROP_MODEL_DIR (when set and not empty),
 *   2. the installed data dir (<prefix>/<datadir>/mustdrop/models),
 *   3. the source tree's models/synthvqa (uninstalled builds).
 * The first directory holding both files (regular files) wins: returns 0
 * with llm and mmproj set to their paths. Otherwise -1, with llm and mmproj
 * set to the source-tree candidates (for messages; "" when they do not fit).
 * Also -1 for NULL or zero-length buffers. The environment is read on each
 * call; no state is kept. */
int md_default_model_paths(char *llm, size_t llm_len, char *mmproj, size_t mmproj_len);
/* The i-th directory (from 0) md_default_model_paths searches, for messages
 * such as "searched: ...". Returns 0 with dir set, -1 past the last one (or
 * when dir is too small). */
int md_default_model_dir(int i, char *dir, size_t dir_len);

#ifdef __cplusplus
}
#endif

#endif
