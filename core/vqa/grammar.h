/* Constrained answers inside md_vqa: a strict JSON reader (json.c), the
 * JSON-schema subset compiled to a byte-level matcher (schema.c), the
 * matcher and the token mask built on it (grammar.c). docs/structured.md
 * describes the subset and the choices made here. */
#ifndef MD_VQA_GRAMMAR_H
#define MD_VQA_GRAMMAR_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include "mustdrop-vqa.h"

/* ---- json.c: a strict JSON reader (RFC 8259), recursive, bounded ---- */

#define MD_JSON_MAX_DEPTH 32
#define MD_JSON_MAX_BYTES (64 * 1024)

enum md_json_type { MD_JSON_NULL, MD_JSON_BOOL, MD_JSON_INT, MD_JSON_NUMBER, MD_JSON_STRING,
                    MD_JSON_ARRAY, MD_JSON_OBJECT };

struct md_json {
    enum md_json_type type;
    bool boolean;
    int64_t integer;            /* MD_JSON_INT: an integer that fits int64 */
    char *string;               /* MD_JSON_STRING: UTF-8, NUL-terminated (no NUL inside) */
    int32_t n;                  /* items of an array or members of an object */
    char **keys;                /* object: member names, in order */
    struct md_json *items;      /* [n] */
};

/* Parse text[0..len): MD_OK and *out (md_json_free), or MD_ERR_INVALID with
 * "at byte N: what" in err. Duplicate member names are an error. */
int md_json_parse(const char *text, size_t len, struct md_json **out, char *err, size_t errlen);
void md_json_free(struct md_json *j);
/* The member named key of an object, NULL if none. */
const struct md_json *md_json_get(const struct md_json *obj, const char *key);

/* ---- schema.c: the subset compiled ---- */

#define MD_SCHEMA_MAX_DEPTH 8         /* nested objects */
#define MD_SCHEMA_MAX_NODES 256
#define MD_SCHEMA_MAX_PROPS 64        /* per object */
#define MD_SCHEMA_MAX_ENUM 64         /* values of one enum (a 64-bit mask) */
#define MD_SCHEMA_MAX_NAME 64         /* bytes of a property name */
#define MD_SCHEMA_MAX_STRING 256      /* the largest maxLength accepted */
#define MD_SCHEMA_DEFAULT_STRING 32   /* maxLength when the schema gives none */
#define MD_SCHEMA_MAX_LEAD_SPACE 4    /* whitespace bytes allowed before the value */

enum md_gnode_kind { MD_G_OBJECT = 1, MD_G_INT, MD_G_ENUM, MD_G_STRING };

struct md_gnode {
    enum md_gnode_kind kind;
    /* object: n properties; frags[0..n] the literal text around them,
     * `{"a":` `,"b":` ... `}` (n = 0: the one fragment `{}`) */
    int32_t n;
    int32_t *child;             /* [n] node index of each property's value */
    char **names;               /* [n] */
    char **frags;               /* [n + 1] */
    /* integer */
    int64_t min, max;
    /* enum (booleans and const too): the values as JSON texts */
    char **alts;                /* [n] */
    /* string: characters (code points) allowed */
    int32_t min_len, max_len;
};

struct md_grammar {
    struct md_gnode *nodes;     /* nodes[0] is the root */
    int32_t n_nodes;
};

/* Compile schema text: MD_OK and *out (md_grammar_free), or MD_ERR_INVALID
 * with "<JSON pointer>: what" in err (MD_ERR_NOMEM). */
int md_grammar_compile(const char *schema, struct md_grammar **out, char *err, size_t errlen);
void md_grammar_free(struct md_grammar *g);

/* ---- grammar.c: the matcher ---- */

/* One open value: a node and how far into it the text is. */
struct md_gframe {
    int32_t node;
    int32_t i;                  /* object: fragment; string: characters so far */
    int32_t pos;                /* object: byte in the fragment; enum: bytes matched;
                                 * string: 0 before the opening quote, 1 inside */
    int32_t need;               /* string: continuation bytes still due; int: digits */
    uint8_t lo, hi;             /* string: range of the next continuation byte */
    bool neg;                   /* int: a '-' was read */
    uint64_t mask;              /* enum: values still matching */
    uint64_t mag;               /* int: magnitude so far */
};

/* The matcher's whole state: small and copied freely (the mask tries every
 * token on copies). depth 0 after the root value closed. */
struct md_gstate {
    int32_t depth;
    int32_t lead;               /* whitespace bytes read before the value */
    bool started;               /* the value's first byte was read */
    struct md_gframe f[MD_SCHEMA_MAX_DEPTH + 1];
};

void md_gstate_init(const struct md_grammar *g, struct md_gstate *st);
/* Take one byte: false (the state is then unspecified) when the grammar
 * cannot. */
bool md_gstate_feed(const struct md_grammar *g, struct md_gstate *st, uint8_t c);
bool md_gstate_feed_bytes(const struct md_grammar *g, struct md_gstate *st, const char *s,
                          size_t n);
/* The text so far is a whole value (the answer may end here). */
bool md_gstate_complete(const struct md_grammar *g, const struct md_gstate *st);
/* Nothing may follow: the value closed (an object's `}`, a finished literal). */
bool md_gstate_finished(const struct md_gstate *st);

/* Tokens as raw bytes, sorted so that tokens sharing a prefix are
 * neighbours (the mask walks them like a trie). */
struct md_pieces {
    int32_t n;
    int32_t *tok;               /* [n] token id, in byte order */
    uint32_t *off, *len;        /* [n] into bytes */
    uint32_t *lcp;              /* [n] common prefix with the previous piece */
    char *bytes;
    uint32_t max_len;
    int32_t n_vocab;            /* the ids run 0..n_vocab */
};

/* A vocabulary's pieces (md_token_to_piece, not special): normal, byte and
 * undefined tokens of 1 to MD_PIECE_MAX bytes (the answer's buffer for one
 * piece); control, user-defined, unknown and unused tokens never enter a
 * constrained answer. */
#define MD_PIECE_MAX 255
int md_pieces_from_vocab(const struct md_vocab *v, struct md_pieces **out);
/* Hand-made pieces: token i is text[i][0..len[i]) (tests). */
int md_pieces_from_list(const char *const *text, const uint32_t *len, int32_t n,
                        struct md_pieces **out);
void md_pieces_free(struct md_pieces *p);

/* allowed[t] for every token t < p->n_vocab: whether the matcher takes
 * all of its bytes from st (the end-of-generation tokens are the caller's:
 * md_gstate_complete). Returns how many are allowed, or MD_ERR_NOMEM. */
int64_t md_grammar_mask(const struct md_grammar *g, const struct md_gstate *st,
                        const struct md_pieces *p, bool *allowed);

/* A JSON text the grammar produced, as an md_value (md_value_free); NULL
 * when it does not parse or out of memory. */
struct md_value *md_value_from_json(const char *text);
struct md_value *md_value_string(const char *s);
void md_value_free(struct md_value *v);

#endif
