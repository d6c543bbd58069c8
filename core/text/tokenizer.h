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

#endif
