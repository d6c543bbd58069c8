/* libmustdrop's tokenizer: the vocabulary a language model carries
 * (md_model_vocab), SPM ("llama") and byte-level BPE ("gpt2", with the
 * tokenizer.ggml.pre pre-tokenizer), special tokens, byte fallback and
 * detokenization. See docs/llama-cpp.md section 9.
 *
 * A vocabulary comes from a loaded model and lives as long as it; it is
 * read-only, so any number of threads may use it at once:
 *
 *     const struct md_vocab *v = md_model_vocab(model);   // NULL: no tokenizer
 *     int64_t n = md_tokenize(v, text, strlen(text), true, true, toks, n_max);
 *     char piece[64];
 *     int32_t len = md_token_to_piece(v, toks[0], piece, sizeof piece, false);
 */
#ifndef MUSTDROP_TOKENIZER_H
#define MUSTDROP_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

struct md_vocab;

enum md_vocab_kind { MD_VOCAB_SPM = 1, MD_VOCAB_BPE = 2 };

/* Token attributes, from tokenizer.ggml.token_type. */
enum md_token_type {
    MD_TOKEN_UNDEFINED = 0, MD_TOKEN_NORMAL = 1, MD_TOKEN_UNKNOWN = 2,
    MD_TOKEN_CONTROL = 3, MD_TOKEN_USER_DEFINED = 4, MD_TOKEN_UNUSED = 5,
    MD_TOKEN_BYTE = 6,
};

enum md_vocab_kind md_vocab_kind(const struct md_vocab *v);
int32_t md_vocab_n_tokens(const struct md_vocab *v);
int32_t md_vocab_bos(const struct md_vocab *v);   /* -1 if none */
int32_t md_vocab_eos(const struct md_vocab *v);   /* -1 if none */
int32_t md_vocab_eot(const struct md_vocab *v);   /* -1 if none */
bool md_vocab_add_bos(const struct md_vocab *v);
bool md_vocab_add_eos(const struct md_vocab *v);
/* End of generation: eos, eot, or another control token the vocab marks so
 * (e.g. <|im_end|>, <|eot_id|>). */
bool md_vocab_is_eog(const struct md_vocab *v, int32_t tok);
enum md_token_type md_vocab_token_type(const struct md_vocab *v, int32_t tok);
/* The token's text as stored in the vocab (NUL-terminated), NULL if out of range. */
const char *md_vocab_token_text(const struct md_vocab *v, int32_t tok);
/* Id of an exact token text, -1 if none. */
int32_t md_vocab_find(const struct md_vocab *v, const char *text);
int32_t md_vocab_unk(const struct md_vocab *v);   /* -1 if none */
int32_t md_vocab_pad(const struct md_vocab *v);   /* -1 if none */
/* SPM: a space is put before the text (and stripped again by md_detokenize). */
bool md_vocab_add_space_prefix(const struct md_vocab *v);
/* What the load noticed and worked around (unknown or missing
 * tokenizer.ggml.pre, out-of-range special ids, duplicate tokens, ...), as
 * one line; NULL when nothing. The library itself never prints. */
const char *md_vocab_warning(const struct md_vocab *v);
/* The BPE pre-tokenizer in use: "gpt2", "llama3" or "qwen2"; NULL for SPM. */
const char *md_vocab_pretokenizer(const struct md_vocab *v);

/* Tokenize len bytes of UTF-8 text (invalid UTF-8 is tokenized as bytes,
 * never rejected). add_special: add BOS/EOS as the vocab's flags say.
 * parse_special: match CONTROL/USER_DEFINED token texts in the input.
 * (USER_DEFINED ones are matched even without it, as llama.cpp and HF do.)
 * Writes at most n_max ids; returns the number of ids the text needs (which
 * may exceed n_max: call again with a bigger buffer), or -1 on error (bad
 * arguments, out of memory, or len above 512 MiB). Thread-safe: a loaded
 * vocab is read-only. */
int64_t md_tokenize(const struct md_vocab *v, const char *text, size_t len,
                    bool add_special, bool parse_special, int32_t *out, int64_t n_max);

/* md_tokenize, except that the tokens as_text[0..n_as_text) are never
 * matched as special tokens, whatever their type: their text is tokenized
 * like any other text. For text a caller must not let become a token with
 * a meaning of its own, e.g. an "<image>" typed in a question. */
int64_t md_tokenize_except(const struct md_vocab *v, const char *text, size_t len,
                           bool add_special, bool parse_special, const int32_t *as_text,
                           int32_t n_as_text, int32_t *out, int64_t n_max);

/* The bytes one token stands for (SPM "▁" → ' ', byte tokens → that byte,
 * BPE byte-level unicode → bytes). Control tokens give "" unless special.
 * Returns the byte count (may exceed n: nothing partial is written then),
 * or -1 for an invalid id. Not NUL-terminated. */
int32_t md_token_to_piece(const struct md_vocab *v, int32_t tok, char *buf, int32_t n, bool special);

/* Detokenize a sequence; strips the SPM space prefix after BOS/at the start
 * when the vocab adds one. Returns bytes needed (like snprintf: writes at
 * most n-1 and NUL-terminates when n > 0). */
int64_t md_detokenize(const struct md_vocab *v, const int32_t *toks, int64_t n_toks,
                      char *buf, int64_t n, bool special);

#ifdef __cplusplus
}
#endif

#endif
