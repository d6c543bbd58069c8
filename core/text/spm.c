/* SentencePiece-style BPE ("llama" tokenizer model), as llama.cpp runs it:
 * spaces become U+2581, the text is split into UTF-8 characters, and the
 * adjacent pair whose concatenation is a vocab token with the highest score
 * is merged repeatedly (leftmost on ties). A final symbol that is not a
 * token is resegmented; since a merge only ever forms a vocab token, that
 * leaves single characters outside the vocab, which fall back to <0xXX>
 * byte tokens (or one unknown token when the vocab lacks them).
 *
 * As in sentencepiece (and unlike llama.cpp), control, unknown and byte
 * tokens are never formed from text: they are not pieces of the model. */
#include <stdlib.h>
#include <string.h>

#include "vocab-impl.h"
#include "unicode.h"

struct ssym {
    int32_t prev, next;
    uint32_t start, n;   /* bytes of the escaped text */
    int32_t id;          /* token of this text, -1 if none */
};

struct spm_ctx {
    const struct md_vocab *v;
    const uint8_t *text;
    struct ssym *sym;
    struct md_heap heap;   /* (descending score << 32 | left symbol) */
};

/* 32-bit key that sorts higher scores first. */
static uint32_t score_key(float f)
{
    if (f == 0.0f)
        f = 0.0f;          /* -0 and +0 tie */
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);   /* ascending order */
    return ~u;                                         /* descending */
}

/* Token of s[0..n) that text may turn into, -1 if none. */
static int32_t piece_id(const struct md_vocab *v, const uint8_t *s, size_t n)
{
    const int32_t id = md_vocab_lookup(v, (const char *)s, n);
    if (id < 0)
        return -1;
    const uint8_t t = v->toks[id].type;
    return (t == MD_TOKEN_CONTROL || t == MD_TOKEN_UNKNOWN || t == MD_TOKEN_BYTE) ? -1 : id;
}

static int try_bigram(struct spm_ctx *c, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return 0;
    const struct ssym *l = &c->sym[left], *r = &c->sym[right];
    const int32_t id = piece_id(c->v, c->text + l->start, l->n + r->n);
    if (id < 0)
        return 0;
    return md_heap_push(&c->heap, ((uint64_t)score_key(c->v->toks[id].score) << 32) | (uint32_t)left);
}

/* A character outside the vocab: its bytes as <0xXX> tokens, or, when the
 * vocab lacks one of them, a single unknown token (as sentencepiece does
 * without byte fallback). */
static int byte_fallback(const struct md_vocab *v, const uint8_t *s, size_t n, struct md_ids *out)
{
    bool all = true;
    for (size_t i = 0; i < n; i++)
        all = all && v->byte_tok[s[i]] >= 0;
    if (!all)
        return v->unk >= 0 ? md_ids_push(out, v->unk) : 0;
    for (size_t i = 0; i < n; i++)
        if (md_ids_push(out, v->byte_tok[s[i]]))
            return -1;
    return 0;
}

int md_spm_tokenize(const struct md_vocab *v, const uint8_t *s, size_t len,
                    bool add_prefix, struct md_ids *out)
{
    if (len > MD_TOK_MAX_INPUT)
        return -1;
    /* escape: optional leading space, ' ' -> U+2581 (3 bytes) */
    uint8_t *buf = malloc(3 * (len + 1));
    if (!buf)
        return -1;
    size_t n = 0;
    if (add_prefix) {
        memcpy(buf, "\xe2\x96\x81", 3);
        n = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ') {
            memcpy(buf + n, "\xe2\x96\x81", 3);
            n += 3;
        } else {
            buf[n++] = s[i];
        }
    }
    if (n == 0) {
        free(buf);
        return 0;
    }

    struct spm_ctx c;
    memset(&c, 0, sizeof(c));
    c.v = v;
    c.text = buf;
    c.sym = malloc(n * sizeof(*c.sym));
    if (!c.sym) {
        free(buf);
        return -1;
    }
    int32_t ns = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        const size_t k = md_utf8_decode(buf + i, n - i, &cp);
        struct ssym *y = &c.sym[ns];
        y->prev = ns - 1;
        y->next = i + k < n ? ns + 1 : -1;
        y->start = (uint32_t)i;
        y->n = (uint32_t)k;
        y->id = piece_id(v, buf + i, k);
        ns++;
        i += k;
    }

    int rc = 0;
    for (int32_t i = 1; i < ns && !rc; i++)
        rc = try_bigram(&c, i - 1, i);

    while (!rc && c.heap.n > 0) {
        const uint64_t key = md_heap_pop(&c.heap);
        const int32_t left = (int32_t)(uint32_t)key;
        struct ssym *l = &c.sym[left];
        if (l->n == 0 || l->next < 0)
            continue;    /* merged into its left neighbour, or now last */
        struct ssym *r = &c.sym[l->next];
        /* Still a token of the same score? Then merging now is what this
         * key's entry (or the current pair's own, identical key) asks for. */
        const int32_t id = piece_id(v, buf + l->start, l->n + r->n);
        if (id < 0 || score_key(v->toks[id].score) != (uint32_t)(key >> 32))
            continue;
        l->n += r->n;
        l->id = id;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            c.sym[r->next].prev = left;
        rc = try_bigram(&c, l->prev, left);
        if (!rc)
            rc = try_bigram(&c, left, l->next);
    }

    for (int32_t i = 0; !rc && i >= 0; i = c.sym[i].next) {
        const struct ssym *y = &c.sym[i];
        if (y->n == 0)
            continue;
        if (y->id >= 0)
            rc = md_ids_push(out, y->id);
        else
            rc = byte_fallback(v, buf + y->start, y->n, out);
    }

    free(c.heap.v);
    free(c.sym);
    free(buf);
    return rc ? -1 : 0;
}
