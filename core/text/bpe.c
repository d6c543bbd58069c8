/* Byte-level BPE ("gpt2" tokenizer model): regex-equivalent pre-tokenizer
 * splitters written by hand, GPT-2 byte-to-unicode encoding, and rank-ordered
 * merges over a (left id, right id) -> rank hash map.
 *
 * The splitters reproduce the leftmost-first alternation semantics of the
 * HF tokenizers regexes (Oniguruma): at each position the first alternative
 * that matches wins, quantifiers are greedy with backtracking. Every
 * position matches one of the alternatives, so the words tile the text. */
#include <stdlib.h>
#include <string.h>

#include "vocab-impl.h"
#include "unicode.h"

#define CL MD_CP_LETTER
#define CN MD_CP_NUMBER
#define CS MD_CP_SPACE

struct chars {
    uint32_t *cp;
    uint8_t *fl;
    uint32_t *off;     /* byte offset of char i; off[n] = byte length */
    size_t n;
};

static void chars_free(struct chars *c)
{
    free(c->cp);
    free(c->fl);
    free(c->off);
}

static int chars_decode(const uint8_t *s, size_t len, struct chars *c)
{
    memset(c, 0, sizeof(*c));
    const size_t cap = len ? len : 1;
    c->cp = malloc(cap * sizeof(*c->cp));
    c->fl = malloc(cap);
    c->off = malloc((cap + 1) * sizeof(*c->off));
    if (!c->cp || !c->fl || !c->off) {
        chars_free(c);
        return -1;
    }
    size_t i = 0, n = 0;
    while (i < len) {
        uint32_t cp;
        const size_t k = md_utf8_decode(s + i, len - i, &cp);
        c->cp[n] = cp;
        c->fl[n] = (uint8_t)md_cp_flags(cp);
        c->off[n] = (uint32_t)i;
        n++;
        i += k;
    }
    c->off[n] = (uint32_t)len;
    c->n = n;
    return 0;
}

static inline bool is_other(uint8_t f) { return (f & (CL | CN | CS)) == 0; }
static inline bool is_crlf(uint32_t c) { return c == '\r' || c == '\n'; }

static size_t run_of(const uint8_t *fl, size_t n, size_t i, uint8_t cls)
{
    while (i < n && (fl[i] & cls))
        i++;
    return i;
}

static size_t run_of_other(const uint8_t *fl, size_t n, size_t i)
{
    while (i < n && is_other(fl[i]))
        i++;
    return i;
}

/* \s+(?!\S)|\s+ at a whitespace char p whose run ends at e. */
static size_t ws_tail(size_t p, size_t e, size_t n)
{
    if (e == n)
        return n;        /* (?!\S) holds at the end of the text */
    if (e - p >= 2)
        return e - 1;    /* backtrack one so a space is what follows */
    return e;            /* \s+ */
}

/* 's|'t|'re|'ve|'m|'ll|'d (case_fold: the (?i:...) form). */
static size_t contraction(const uint32_t *cp, size_t n, size_t p, bool case_fold)
{
    if (cp[p] != '\'' || p + 1 >= n)
        return 0;
    uint32_t c1 = cp[p + 1];
    if (case_fold)
        c1 = md_cp_fold_ascii(c1);
    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd')
        return p + 2;
    if (p + 2 >= n)
        return 0;
    uint32_t c2 = cp[p + 2];
    if (case_fold)
        c2 = md_cp_fold_ascii(c2);
    if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))
        return p + 3;
    return 0;
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t next_gpt2(const struct chars *c, size_t p)
{
    const uint32_t *cp = c->cp;
    const uint8_t *fl = c->fl;
    const size_t n = c->n;
    size_t e = contraction(cp, n, p, false);
    if (e)
        return e;
    const size_t q = (cp[p] == ' ' && p + 1 < n) ? p + 1 : p;
    if (fl[q] & CL)
        return run_of(fl, n, q, CL);
    if (fl[q] & CN)
        return run_of(fl, n, q, CN);
    if (is_other(fl[q]))
        return run_of_other(fl, n, q);
    /* p is whitespace (q == p, or q is the whitespace after a space) */
    return ws_tail(p, run_of(fl, n, p, CS), n);
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max_digits}|
 *  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static size_t next_llama3(const struct chars *c, size_t p, size_t max_digits)
{
    const uint32_t *cp = c->cp;
    const uint8_t *fl = c->fl;
    const size_t n = c->n;
    size_t e = contraction(cp, n, p, true);
    if (e)
        return e;
    if (fl[p] & CL)
        return run_of(fl, n, p, CL);
    if (!is_crlf(cp[p]) && !(fl[p] & CN) && p + 1 < n && (fl[p + 1] & CL))
        return run_of(fl, n, p + 1, CL);
    if (fl[p] & CN) {
        e = p;
        while (e < n && e - p < max_digits && (fl[e] & CN))
            e++;
        return e;
    }
    const size_t q = (cp[p] == ' ' && p + 1 < n && is_other(fl[p + 1])) ? p + 1 : p;
    if (is_other(fl[q])) {
        e = run_of_other(fl, n, q);
        while (e < n && is_crlf(cp[e]))
            e++;
        return e;
    }
    /* p is whitespace */
    e = run_of(fl, n, p, CS);
    for (size_t i = e; i > p; i--)     /* \s*[\r\n]+: up to the last CR/LF */
        if (is_crlf(cp[i - 1]))
            return i;
    return ws_tail(p, e, n);
}

int md_bpe_split(enum md_pre_kind pre, const uint8_t *s, size_t len,
                 int (*emit)(void *ctx, size_t off, size_t n), void *ctx)
{
    if (len == 0)
        return 0;
    if (len > MD_TOK_MAX_INPUT)
        return -1;
    struct chars c;
    if (chars_decode(s, len, &c))
        return -1;
    int rc = 0;
    size_t p = 0;
    while (p < c.n) {
        size_t e;
        switch (pre) {
        case MD_PRE_LLAMA3: e = next_llama3(&c, p, 3); break;
        case MD_PRE_QWEN2:  e = next_llama3(&c, p, 1); break;
        case MD_PRE_GPT2:
        default:            e = next_gpt2(&c, p); break;
        }
        if (e <= p)         /* cannot happen; never loop forever */
            e = p + 1;
        rc = emit(ctx, c.off[p], c.off[e] - c.off[p]);
        if (rc)
            break;
        p = e;
    }
    chars_free(&c);
    return rc;
}

/* ---- merges ------------------------------------------------------------ */

struct bsym {
    int32_t id;
    int32_t prev, next;
    uint32_t start, n;   /* bytes of the word */
};

struct bpe_ctx {
    const struct md_vocab *v;
    const uint8_t *text;
    struct md_ids *out;
    struct bsym *sym;
    size_t sym_cap;
    struct md_heap heap;   /* (rank << 32 | left symbol) */
    uint8_t *enc;          /* byte-level encoded word */
    size_t enc_cap;
};

static inline uint32_t merge_hash(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return (uint32_t)k;
}

static const struct md_merge_slot *merge_find(const struct md_vocab *v, int32_t a, int32_t b)
{
    if (!v->merges || a < 0 || b < 0)
        return NULL;
    const uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    uint32_t i = merge_hash(key) & v->merge_mask;
    for (;;) {
        const struct md_merge_slot *s = &v->merges[i];
        if (s->rank < 0)
            return NULL;
        if (s->key == key)
            return s;
        i = (i + 1) & v->merge_mask;
    }
}

int md_bpe_merge_insert(struct md_vocab *v, int32_t a, int32_t b, int32_t rank, int32_t result)
{
    const uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    uint32_t i = merge_hash(key) & v->merge_mask;
    for (;;) {
        struct md_merge_slot *s = &v->merges[i];
        if (s->rank < 0) {
            s->key = key;
            s->rank = rank;
            s->result = result;
            v->n_merges++;
            return 1;
        }
        if (s->key == key)
            return 0;
        i = (i + 1) & v->merge_mask;
    }
}

static int try_bigram(struct bpe_ctx *c, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return 0;
    const struct md_merge_slot *m = merge_find(c->v, c->sym[left].id, c->sym[right].id);
    if (!m)
        return 0;
    return md_heap_push(&c->heap, ((uint64_t)(uint32_t)m->rank << 32) | (uint32_t)left);
}

static int emit_bytes(struct bpe_ctx *c, const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const int32_t t = c->v->byte_tok[s[i]];
        if (t >= 0 && md_ids_push(c->out, t))
            return -1;
    }
    return 0;
}

static int bpe_word(void *ctx, size_t off, size_t n)
{
    struct bpe_ctx *c = ctx;
    const struct md_vocab *v = c->v;
    const uint8_t *w = c->text + off;

    if (n == 1)
        return emit_bytes(c, w, 1);

    if (v->ignore_merges) {
        if (c->enc_cap < 2 * n + 4) {
            uint8_t *e = realloc(c->enc, 2 * n + 4);
            if (!e)
                return -1;
            c->enc = e;
            c->enc_cap = 2 * n + 4;
        }
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            k += md_utf8_encode(v->byte_cp[w[i]], c->enc + k);
        /* only the model's own tokens (HF keeps added tokens out of it) */
        const int32_t t = md_vocab_lookup(v, (const char *)c->enc, k);
        if (t >= 0 && v->toks[t].type != MD_TOKEN_CONTROL &&
            v->toks[t].type != MD_TOKEN_USER_DEFINED && v->toks[t].type != MD_TOKEN_UNKNOWN)
            return md_ids_push(c->out, t);
    }

    if (c->sym_cap < n) {
        struct bsym *s = realloc(c->sym, n * sizeof(*s));
        if (!s)
            return -1;
        c->sym = s;
        c->sym_cap = n;
    }
    struct bsym *sym = c->sym;
    for (size_t i = 0; i < n; i++) {
        sym[i].id = v->byte_tok[w[i]];
        sym[i].prev = (int32_t)i - 1;
        sym[i].next = i + 1 < n ? (int32_t)i + 1 : -1;
        sym[i].start = (uint32_t)i;
        sym[i].n = 1;
    }
    c->heap.n = 0;
    for (size_t i = 1; i < n; i++)
        if (try_bigram(c, (int32_t)i - 1, (int32_t)i))
            return -1;

    while (c->heap.n > 0) {
        const uint64_t key = md_heap_pop(&c->heap);
        const int32_t rank = (int32_t)(key >> 32);
        const int32_t left = (int32_t)(uint32_t)key;
        struct bsym *l = &sym[left];
        if (l->n == 0 || l->next < 0)
            continue;    /* merged into its left neighbour, or now last */
        struct bsym *r = &sym[l->next];
        /* a rank names one pair: if this pair still has it, it is current */
        const struct md_merge_slot *m = merge_find(v, l->id, r->id);
        if (!m || m->rank != rank)
            continue;
        l->n += r->n;
        l->id = m->result;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            sym[r->next].prev = left;
        if (try_bigram(c, l->prev, left) || try_bigram(c, left, l->next))
            return -1;
    }

    for (int32_t i = 0; i >= 0; i = sym[i].next) {
        if (sym[i].n == 0)
            continue;
        if (sym[i].id >= 0) {
            if (md_ids_push(c->out, sym[i].id))
                return -1;
        } else if (emit_bytes(c, w + sym[i].start, sym[i].n)) {
            return -1;
        }
    }
    return 0;
}

int md_bpe_tokenize(const struct md_vocab *v, const uint8_t *s, size_t len, struct md_ids *out)
{
    struct bpe_ctx c;
    memset(&c, 0, sizeof(c));
    c.v = v;
    c.text = s;
    c.out = out;
    const int rc = md_bpe_split(v->pre, s, len, bpe_word, &c);
    free(c.sym);
    free(c.heap.v);
    free(c.enc);
    return rc ? -1 : 0;
}
