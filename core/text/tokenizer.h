/* The tokenizer inside the library: the public API (mustdrop-tokenizer.h)
 * plus building a vocabulary from a GGUF, which only the model loader does,
 * since md_gguf is not a public type: users get their vocabulary from
 * md_model_vocab and never own one. */
#ifndef MD_TOKENIZER_H
#define MD_TOKENIZER_H

#include "mustdrop-tokenizer.h"

struct md_gguf;

/* Build the vocabulary from a GGUF's tokenizer.* keys. The md_gguf may be
 * closed afterwards (everything needed is copied). Returns 0 or -1 with a
 * message in err naming the key at fault. */
int md_vocab_load(const struct md_gguf *g, struct md_vocab **out, char *err, size_t errlen);
void md_vocab_free(struct md_vocab *v);

/* Bytes [off, off + len) of a text. */
struct md_text_span {
    size_t off, len;
};

/* md_tokenize_except where, in addition, control tokens are not matched
 * where their text overlaps one of the literal spans: the span reads as
 * text, as with parse_special false, while the rest of the text keeps its
 * control tokens. For prompts that embed what a user typed (a question, a
 * system text) in a chat template: a "</s>" typed in a question must not end
 * the sequence. Tokenizing the span apart would cut the text there and
 * could change the ids of an ordinary prompt; this changes nothing for
 * text without control-token text in its spans. */
int64_t md_tokenize_literal(const struct md_vocab *v, const char *text, size_t len,
                            bool add_special, bool parse_special, const int32_t *as_text,
                            int32_t n_as_text, const struct md_text_span *literal,
                            int32_t n_literal, int32_t *out, int64_t n_max);

#endif
