/* Internal layout of struct md_vocab, shared by vocab.c, spm.c and bpe.c. */
#ifndef MD_VOCAB_IMPL_H
#define MD_VOCAB_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include "tokenizer.h"

/* Inputs longer than this are refused (md_tokenize returns -1): indices
 * inside the tokenizers are 32-bit. */
#define MD_TOK_MAX_INPUT ((size_t)1 << 29)

/* Per-token attribute bits beyond the type. */
#define MD_ATTR_LSTRIP 1u   /* strip ASCII space left of a special match */
#define MD_ATTR_RSTRIP 2u   /* ... right of it */
#define MD_ATTR_EOG    4u   /* ends generation */

enum md_pre_kind {
    MD_PRE_GPT2 = 0,   /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
    MD_PRE_LLAMA3,     /* (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
    MD_PRE_QWEN2,      /* as LLAMA3 with \p{N} instead of \p{N}{1,3} */
};

struct md_tok {
    uint32_t off;      /* into md_vocab.text (NUL-terminated there) */
    uint32_t len;
    float score;
    uint8_t type;      /* enum md_token_type, after load-time fix-ups */
    uint8_t attr;      /* MD_ATTR_* */
};

struct md_merge_slot {
    uint64_t key;      /* (uint64)left_id << 32 | right_id */
    int32_t rank;      /* -1: empty slot */
    int32_t result;    /* id of left+right, -1 if not in the vocab */
};

struct md_vocab {
    enum md_vocab_kind kind;
    enum md_pre_kind pre;
    int32_t n_tokens;
    struct md_tok *toks;
    char *text;                 /* all token texts, each NUL-terminated */

    int32_t *tok_hash;          /* open addressing, -1 = empty */
    uint32_t tok_hash_mask;

    struct md_merge_slot *merges;
    uint32_t merge_mask;
    int32_t n_merges;

    int32_t bos, eos, eot, eom, unk, pad;
    bool add_bos, add_eos;
    bool add_space_prefix;          /* SPM only */
    /* Read for completeness: llama.cpp applies it to UGM vocabs only, so
     * SPM tokenization does not use it either. */
    bool remove_extra_whitespaces;
    bool ignore_merges;             /* BPE: a word that is a token is kept whole */

    int32_t *special;           /* CONTROL/USER_DEFINED/UNKNOWN ids, longest first */
    int32_t n_special;

    int32_t byte_tok[256];      /* token standing for a raw byte, -1 if none */
    uint16_t byte_cp[256];      /* BPE: byte -> bytes_to_unicode codepoint */
    int16_t cp_byte[324];       /* BPE: that codepoint -> byte, -1 if none */

    char pre_name[64];
    char warning[512];          /* "" when the load had nothing to report */
};

/* A growable array of token ids. */
struct md_ids {
    int32_t *v;
    size_t n, cap;
};
int md_ids_push(struct md_ids *a, int32_t id);

/* A min-heap of 64-bit keys (the tokenizers pack priority and position
 * into one key: compact, and ties break by position for free). */
struct md_heap {
    uint64_t *v;
    size_t n, cap;
};
int md_heap_push(struct md_heap *h, uint64_t key);
uint64_t md_heap_pop(struct md_heap *h);   /* h->n > 0 */

/* Id of the token whose text is s[0..len), -1 if none. */
int32_t md_vocab_lookup(const struct md_vocab *v, const char *s, size_t len);

/* Tokenize one raw-text fragment (no special tokens in it). */
int md_spm_tokenize(const struct md_vocab *v, const uint8_t *s, size_t len,
                    bool add_prefix, struct md_ids *out);
int md_bpe_tokenize(const struct md_vocab *v, const uint8_t *s, size_t len,
                    struct md_ids *out);

/* Add a merge to v->merges (sized beforehand); a pair already present keeps
 * its first (lowest) rank. Returns 1 if added, 0 if a duplicate. */
int md_bpe_merge_insert(struct md_vocab *v, int32_t a, int32_t b, int32_t rank, int32_t result);

/* Pre-tokenizer: splits s[0..len) into words; calls emit for each
 * (offset, length) in order, stopping with its value when non-zero.
 * Returns 0, the non-zero value of emit, or -1 when out of memory. */
int md_bpe_split(enum md_pre_kind pre, const uint8_t *s, size_t len,
                 int (*emit)(void *ctx, size_t off, size_t n), void *ctx);

#endif
