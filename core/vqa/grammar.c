/* The byte-level matcher of a compiled schema, the token mask built on it,
 * and the parsed value of a finished answer. The grammar is regular (the
 * nesting is bounded), matched with a small stack of open values that is
 * cheap to copy: the mask tries every token's bytes on copies, walking the
 * tokens in byte order so that a shared prefix is fed once and a rejected
 * prefix rejects every token that starts with it. */
#include <stdlib.h>
#include <string.h>

#include "grammar.h"
#include "tokenizer.h"

enum step { REJECT, TAKEN, CLOSED, OPEN_CHILD };

void md_gstate_init(const struct md_grammar *g, struct md_gstate *st)
{
    (void)g;
    memset(st, 0, sizeof *st);
    st->depth = 1;
}

/* ---- integers ---- */

/* Whether a signed magnitude range [lo, hi] (negative when neg) meets
 * [min, max]. */
static bool meets(bool neg, uint64_t lo, uint64_t hi, int64_t min, int64_t max)
{
    uint64_t umax = max >= 0 ? (uint64_t)max : 0, umin = min >= 0 ? (uint64_t)min : 0;
    if (!neg)
        return max >= 0 && lo <= umax && hi >= umin;
    /* the values -hi..-lo */
    uint64_t mag_min = min < 0 ? (uint64_t)(-(min + 1)) + 1 : 0;   /* |min| */
    uint64_t mag_max = max < 0 ? (uint64_t)(-(max + 1)) + 1 : 0;   /* |max| when negative */
    return min < 0 && lo <= mag_min && (max >= 0 || hi >= mag_max);
}

/* Whether the digits so far (magnitude m, nd digits, negative when neg) can
 * still become an integer in range: m itself (*self) or m followed by more
 * digits (*more; none after a leading 0). */
static bool int_viable(const struct md_gnode *nd, bool neg, uint64_t m, int32_t digits,
                       bool *more)
{
    bool self = digits > 0 && !(neg && m == 0) && meets(neg, m, m, nd->min, nd->max);
    *more = false;
    if (digits == 0) {
        *more = meets(neg, neg ? 1 : 0, UINT64_MAX, nd->min, nd->max);
    } else if (m != 0) {
        uint64_t span = 1;
        for (int k = 1; k <= 19 && !*more; k++) {
            if (span > UINT64_MAX / 10 || m > UINT64_MAX / (span * 10))
                break;
            span *= 10;
            uint64_t lo = m * span;
            if (lo > UINT64_MAX - (span - 1))
                break;
            *more = meets(neg, lo, lo + span - 1, nd->min, nd->max);
        }
    }
    return self || *more;
}

static enum step int_feed(const struct md_gnode *nd, struct md_gframe *f, uint8_t c)
{
    bool ext;
    if (c == '-') {
        if (f->need || f->neg || !int_viable(nd, true, 0, 0, &ext))
            return REJECT;
        f->neg = true;
        return TAKEN;
    }
    if (c < '0' || c > '9' || (f->need > 0 && f->mag == 0) || f->mag > (UINT64_MAX - 9) / 10)
        return REJECT;
    uint64_t m = f->mag * 10 + (uint64_t)(c - '0');
    if (f->neg && m == 0)
        return REJECT;   /* no "-0" */
    if (!int_viable(nd, f->neg, m, f->need + 1, &ext))
        return REJECT;
    f->mag = m;
    f->need++;
    return ext ? TAKEN : CLOSED;
}

static bool int_complete(const struct md_gnode *nd, const struct md_gframe *f)
{
    return f->need > 0 && !(f->neg && f->mag == 0) && meets(f->neg, f->mag, f->mag, nd->min,
                                                            nd->max);
}

/* ---- enums, strings, objects ---- */

static enum step enum_feed(const struct md_gnode *nd, struct md_gframe *f, uint8_t c)
{
    uint64_t live = f->pos == 0 && !f->mask ? (nd->n >= 64 ? UINT64_MAX : (1ull << nd->n) - 1)
                                            : f->mask;
    uint64_t keep = 0;
    bool longer = false;
    for (int32_t i = 0; i < nd->n; i++) {
        const char *a = nd->alts[i];
        if (!(live >> i & 1) || a[f->pos] != (char)c || !c)
            continue;
        keep |= 1ull << i;
        longer = longer || a[f->pos + 1] != '\0';
    }
    if (!keep)
        return REJECT;
    f->mask = keep;
    f->pos++;
    return longer ? TAKEN : CLOSED;
}

static bool enum_complete(const struct md_gnode *nd, const struct md_gframe *f)
{
    for (int32_t i = 0; f->pos > 0 && i < nd->n; i++)
        if ((f->mask >> i & 1) && nd->alts[i][f->pos] == '\0')
            return true;
    return false;
}

/* Characters from U+0020 up, UTF-8 checked byte by byte (no overlongs, no
 * surrogates), except '"' and '\\': the string needs no escapes. */
static enum step string_feed(const struct md_gnode *nd, struct md_gframe *f, uint8_t c)
{
    if (f->pos == 0) {
        f->pos = 1;
        return c == '"' ? TAKEN : REJECT;
    }
    if (f->need) {
        if (c < f->lo || c > f->hi)
            return REJECT;
        f->need--;
        f->lo = 0x80;
        f->hi = 0xbf;
        return TAKEN;
    }
    if (c == '"')
        return f->i >= nd->min_len ? CLOSED : REJECT;
    if (c < 0x20 || c == '\\' || c == 0x7f || f->i >= nd->max_len)
        return REJECT;
    f->lo = 0x80;
    f->hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
        f->need = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
        f->need = 2;
        f->lo = c == 0xe0 ? 0xa0 : 0x80;
        f->hi = c == 0xed ? 0x9f : 0xbf;
    } else if (c >= 0xf0 && c <= 0xf4) {
        f->need = 3;
        f->lo = c == 0xf0 ? 0x90 : 0x80;
        f->hi = c == 0xf4 ? 0x8f : 0xbf;
    } else if (c >= 0x80) {
        return REJECT;
    }
    f->i++;
    return TAKEN;
}

static enum step object_feed(const struct md_gnode *nd, struct md_gframe *f, uint8_t c)
{
    const char *frag = nd->frags[f->i];
    if (frag[f->pos] != (char)c)
        return REJECT;
    if (frag[++f->pos] != '\0')
        return TAKEN;
    return f->i == nd->n ? CLOSED : OPEN_CHILD;
}

static enum step node_feed(const struct md_grammar *g, struct md_gframe *f, uint8_t c)
{
    const struct md_gnode *nd = &g->nodes[f->node];
    switch (nd->kind) {
    case MD_G_OBJECT: return object_feed(nd, f, c);
    case MD_G_INT: return int_feed(nd, f, c);
    case MD_G_ENUM: return enum_feed(nd, f, c);
    case MD_G_STRING: return string_feed(nd, f, c);
    }
    return REJECT;
}

/* Open values that may end where they are (a number that could take more
 * digits, an enum value that is a prefix of another). */
static bool node_complete(const struct md_grammar *g, const struct md_gframe *f)
{
    const struct md_gnode *nd = &g->nodes[f->node];
    return nd->kind == MD_G_INT ? int_complete(nd, f)
           : nd->kind == MD_G_ENUM ? enum_complete(nd, f) : false;
}

/* The top value closed: back in its object, after it. */
static void pop(struct md_gstate *st)
{
    st->depth--;
    if (st->depth > 0) {
        struct md_gframe *p = &st->f[st->depth - 1];
        p->i++;
        p->pos = 0;
    }
}

bool md_gstate_feed(const struct md_grammar *g, struct md_gstate *st, uint8_t c)
{
    if (!st->started) {
        if (c == ' ' || c == '\n' || c == '\t' || c == '\r')
            return st->lead++ < MD_SCHEMA_MAX_LEAD_SPACE;
        st->started = true;
    }
    while (st->depth > 0) {
        struct md_gframe *f = &st->f[st->depth - 1];
        switch (node_feed(g, f, c)) {
        case TAKEN:
            return true;
        case CLOSED:
            pop(st);
            return true;
        case OPEN_CHILD:
            if (st->depth > MD_SCHEMA_MAX_DEPTH)
                return false;   /* the compiler bounds the depth: not reached */
            memset(&st->f[st->depth], 0, sizeof st->f[0]);
            st->f[st->depth++].node = g->nodes[f->node].child[f->i];
            return true;
        case REJECT:
            /* a complete number or enum value ends at the byte after it */
            if (st->depth < 2 || !node_complete(g, f))
                return false;
            pop(st);
            break;
        }
    }
    return false;
}

bool md_gstate_feed_bytes(const struct md_grammar *g, struct md_gstate *st, const char *s,
                          size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!md_gstate_feed(g, st, (uint8_t)s[i]))
            return false;
    return true;
}

bool md_gstate_complete(const struct md_grammar *g, const struct md_gstate *st)
{
    return st->depth == 0 || (st->depth == 1 && st->started && node_complete(g, &st->f[0]));
}

bool md_gstate_finished(const struct md_gstate *st)
{
    return st->depth == 0;
}

/* ---- the pieces of a vocabulary ---- */

void md_pieces_free(struct md_pieces *p)
{
    if (!p)
        return;
    free(p->tok);
    free(p->off);
    free(p->len);
    free(p->lcp);
    free(p->bytes);
    free(p);
}

static int piece_cmp(const void *a, const void *b, void *ctx)
{
    const struct md_pieces *p = ctx;
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    uint32_t n = p->len[i] < p->len[j] ? p->len[i] : p->len[j];
    int c = memcmp(p->bytes + p->off[i], p->bytes + p->off[j], n);
    if (c)
        return c;
    return p->len[i] < p->len[j] ? -1 : p->len[i] > p->len[j] ? 1 : (i > j) - (i < j);
}

/* A merge sort of indices (qsort has no context argument in C11). */
static void sort_idx(int32_t *a, int32_t *tmp, int32_t n, const struct md_pieces *p)
{
    if (n < 2)
        return;
    int32_t h = n / 2;
    sort_idx(a, tmp, h, p);
    sort_idx(a + h, tmp, n - h, p);
    int32_t i = 0, j = h, k = 0;
    while (i < h && j < n)
        tmp[k++] = piece_cmp(&a[i], &a[j], (void *)p) <= 0 ? a[i++] : a[j++];
    while (i < h)
        tmp[k++] = a[i++];
    while (j < n)
        tmp[k++] = a[j++];
    memcpy(a, tmp, sizeof *a * (size_t)n);
}

/* Order the pieces by bytes; their common prefixes with the one before. */
static int finish_pieces(struct md_pieces *p)
{
    int32_t *order = malloc(sizeof *order * (size_t)p->n), *tmp = malloc(sizeof *tmp * (size_t)(p->n + 1));
    uint32_t *off = malloc(sizeof *off * (size_t)(p->n + 1)), *len = malloc(sizeof *len * (size_t)(p->n + 1));
    int32_t *tok = malloc(sizeof *tok * (size_t)(p->n + 1));
    p->lcp = calloc((size_t)p->n + 1, sizeof *p->lcp);
    int rc = order && tmp && off && len && tok && p->lcp ? MD_OK : MD_ERR_NOMEM;
    for (int32_t i = 0; !rc && i < p->n; i++)
        order[i] = i;
    if (!rc)
        sort_idx(order, tmp, p->n, p);
    for (int32_t i = 0; !rc && i < p->n; i++) {
        int32_t k = order[i];
        tok[i] = p->tok[k];
        off[i] = p->off[k];
        len[i] = p->len[k];
        if (i == 0)
            continue;
        uint32_t n = len[i] < len[i - 1] ? len[i] : len[i - 1], c = 0;
        while (c < n && p->bytes[off[i] + c] == p->bytes[off[i - 1] + c])
            c++;
        p->lcp[i] = c;
    }
    free(order);
    free(tmp);
    if (rc) {
        free(off);
        free(len);
        free(tok);
        return rc;
    }
    free(p->tok);
    free(p->off);
    free(p->len);
    p->tok = tok;
    p->off = off;
    p->len = len;
    return MD_OK;
}

static struct md_pieces *pieces_alloc(int32_t n, size_t bytes)
{
    struct md_pieces *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->tok = malloc(sizeof *p->tok * (size_t)(n + 1));
    p->off = malloc(sizeof *p->off * (size_t)(n + 1));
    p->len = malloc(sizeof *p->len * (size_t)(n + 1));
    p->bytes = malloc(bytes + 1);
    if (!p->tok || !p->off || !p->len || !p->bytes) {
        md_pieces_free(p);
        return NULL;
    }
    return p;
}

int md_pieces_from_list(const char *const *text, const uint32_t *len, int32_t n,
                        struct md_pieces **out)
{
    size_t total = 0;
    for (int32_t i = 0; i < n; i++)
        total += len[i];
    struct md_pieces *p = pieces_alloc(n, total);
    if (!p)
        return MD_ERR_NOMEM;
    p->n_vocab = n;
    for (int32_t i = 0; i < n; i++) {
        if (!len[i])
            continue;
        p->tok[p->n] = i;
        p->off[p->n] = (uint32_t)(p->n ? p->off[p->n - 1] + p->len[p->n - 1] : 0);
        p->len[p->n] = len[i];
        memcpy(p->bytes + p->off[p->n], text[i], len[i]);
        p->max_len = len[i] > p->max_len ? len[i] : p->max_len;
        p->n++;
    }
    int rc = finish_pieces(p);
    if (rc)
        md_pieces_free(p);
    *out = rc ? NULL : p;
    return rc;
}

static bool piece_type_ok(enum md_token_type t)
{
    return t == MD_TOKEN_NORMAL || t == MD_TOKEN_BYTE || t == MD_TOKEN_UNDEFINED;
}

int md_pieces_from_vocab(const struct md_vocab *v, struct md_pieces **out)
{
    *out = NULL;
    int32_t n = md_vocab_n_tokens(v);
    size_t total = 0;
    for (int32_t t = 0; t < n; t++) {
        int32_t k = piece_type_ok(md_vocab_token_type(v, t)) ? md_token_to_piece(v, t, NULL, 0,
                                                                                  false) : 0;
        total += k > 0 ? (size_t)k : 0;
    }
    struct md_pieces *p = pieces_alloc(n, total);
    if (!p)
        return MD_ERR_NOMEM;
    p->n_vocab = n;
    size_t at = 0;
    for (int32_t t = 0; t < n; t++) {
        if (!piece_type_ok(md_vocab_token_type(v, t)))
            continue;
        int32_t k = md_token_to_piece(v, t, p->bytes + at, (int32_t)(total - at), false);
        if (k <= 0 || (size_t)k > total - at || k > MD_PIECE_MAX)
            continue;
        p->tok[p->n] = t;
        p->off[p->n] = (uint32_t)at;
        p->len[p->n] = (uint32_t)k;
        p->max_len = (uint32_t)k > p->max_len ? (uint32_t)k : p->max_len;
        at += (size_t)k;
        p->n++;
    }
    int rc = finish_pieces(p);
    if (rc)
        md_pieces_free(p);
    *out = rc ? NULL : p;
    return rc;
}

/* ---- the mask ---- */

int64_t md_grammar_mask(const struct md_grammar *g, const struct md_gstate *st,
                        const struct md_pieces *p, bool *allowed)
{
    memset(allowed, 0, sizeof *allowed * (size_t)p->n_vocab);
    /* path[k]: the state after the first k bytes of the piece before */
    struct md_gstate *path = malloc(sizeof *path * ((size_t)p->max_len + 1));
    if (!path)
        return MD_ERR_NOMEM;
    path[0] = *st;
    uint32_t reached = 0;   /* path[0..reached] hold the previous piece's states */
    int64_t fail_at = -1, n_allowed = 0;   /* the previous piece's first rejected byte */
    for (int32_t i = 0; i < p->n; i++) {
        uint32_t lcp = p->lcp[i];
        if (fail_at >= 0 && lcp > (uint64_t)fail_at)
            continue;   /* it starts with the rejected prefix */
        const uint8_t *b = (const uint8_t *)p->bytes + p->off[i];
        uint32_t k = lcp < reached ? lcp : reached;
        fail_at = -1;
        for (; k < p->len[i]; k++) {
            path[k + 1] = path[k];
            if (!md_gstate_feed(g, &path[k + 1], b[k])) {
                fail_at = k;
                break;
            }
        }
        reached = k;
        if (fail_at < 0) {
            allowed[p->tok[i]] = true;
            n_allowed++;
        }
    }
    free(path);
    return n_allowed;
}

/* ---- the value ---- */

static void value_clear(struct md_value *v)
{
    for (int32_t i = 0; i < v->n_members; i++) {
        free(v->keys[i]);
        value_clear(&v->members[i]);
    }
    free(v->keys);
    free(v->members);
    free(v->string);
}

void md_value_free(struct md_value *v)
{
    if (v)
        value_clear(v);
    free(v);
}

static int value_set(struct md_value *v, const struct md_json *j)
{
    switch (j->type) {
    case MD_JSON_BOOL:
        v->type = MD_VALUE_BOOL;
        v->boolean = j->boolean;
        return MD_OK;
    case MD_JSON_INT:
        v->type = MD_VALUE_INT;
        v->integer = j->integer;
        return MD_OK;
    case MD_JSON_STRING:
        v->type = MD_VALUE_STRING;
        return (v->string = strdup(j->string)) ? MD_OK : MD_ERR_NOMEM;
    case MD_JSON_OBJECT:
        v->type = MD_VALUE_OBJECT;
        v->keys = calloc((size_t)j->n + 1, sizeof *v->keys);
        v->members = calloc((size_t)j->n + 1, sizeof *v->members);
        if (!v->keys || !v->members)
            return MD_ERR_NOMEM;
        for (int32_t i = 0; i < j->n; i++) {
            v->n_members = i + 1;
            if (!(v->keys[i] = strdup(j->keys[i])))
                return MD_ERR_NOMEM;
            int rc = value_set(&v->members[i], &j->items[i]);
            if (rc)
                return rc;
        }
        return MD_OK;
    default:
        return MD_ERR_INVALID;   /* no schema of the subset gives null, numbers, arrays */
    }
}

struct md_value *md_value_from_json(const char *text)
{
    struct md_json *j;
    if (md_json_parse(text, strlen(text), &j, NULL, 0))
        return NULL;
    struct md_value *v = calloc(1, sizeof *v);
    if (v && value_set(v, j)) {
        md_value_free(v);
        v = NULL;
    }
    md_json_free(j);
    return v;
}

struct md_value *md_value_string(const char *s)
{
    struct md_value *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    v->type = MD_VALUE_STRING;
    if (!(v->string = strdup(s))) {
        free(v);
        return NULL;
    }
    return v;
}
