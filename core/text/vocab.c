/* Vocabulary loading from GGUF tokenizer.* keys, special-token handling,
 * the md_tokenize driver and detokenization. See tokenizer.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"
#include "vocab-impl.h"
#include "unicode.h"
#include "gguf.h"

/* ---- small helpers ------------------------------------------------------ */

int md_ids_push(struct md_ids *a, int32_t id)
{
    if (a->n == a->cap) {
        const size_t cap = a->cap ? a->cap * 2 : 256;
        int32_t *p = realloc(a->v, cap * sizeof(*p));
        if (!p)
            return -1;
        a->v = p;
        a->cap = cap;
    }
    a->v[a->n++] = id;
    return 0;
}

/* 4-ary: half the depth of a binary heap, and the four children of a node
 * share a cache line. */
int md_heap_push(struct md_heap *h, uint64_t key)
{
    if (h->n == h->cap) {
        const size_t cap = h->cap ? h->cap * 2 : 256;
        uint64_t *p = realloc(h->v, cap * sizeof(*p));
        if (!p)
            return -1;
        h->v = p;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        const size_t parent = (i - 1) / 4;
        if (h->v[parent] <= key)
            break;
        h->v[i] = h->v[parent];
        i = parent;
    }
    h->v[i] = key;
    return 0;
}

uint64_t md_heap_pop(struct md_heap *h)
{
    uint64_t *v = h->v;
    const uint64_t top = v[0];
    const uint64_t last = v[--h->n];
    const size_t n = h->n;
    size_t i = 0;
    for (;;) {
        const size_t c0 = 4 * i + 1;
        if (c0 >= n)
            break;
        size_t c = c0;
        const size_t end = c0 + 4 < n ? c0 + 4 : n;
        for (size_t k = c0 + 1; k < end; k++)
            if (v[k] < v[c])
                c = k;
        if (last <= v[c])
            break;
        v[i] = v[c];
        i = c;
    }
    if (n > 0)
        v[i] = last;
    return top;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void warn(struct md_vocab *v, const char *fmt, ...)
{
    size_t used = strlen(v->warning);
    if (used + 3 >= sizeof(v->warning))
        return;
    if (used) {
        memcpy(v->warning + used, "; ", 3);
        used += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->warning + used, sizeof(v->warning) - used, fmt, ap);
    va_end(ap);
}

static uint32_t text_hash(const uint8_t *s, size_t n)
{
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t k;
        memcpy(&k, s, 8);
        h = (h ^ k) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    uint64_t k = 0;
    for (size_t i = 0; i < n; i++)
        k |= (uint64_t)s[i] << (8 * i);
    h = (h ^ k) * 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 29;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 32;
    return (uint32_t)h;
}

int32_t md_vocab_lookup(const struct md_vocab *v, const char *s, size_t len)
{
    if (!v || !v->tok_hash || len == 0 || len > UINT32_MAX)
        return -1;
    uint32_t i = text_hash((const uint8_t *)s, len) & v->tok_hash_mask;
    for (;;) {
        const int32_t id = v->tok_hash[i];
        if (id < 0)
            return -1;
        const struct md_tok *t = &v->toks[id];
        if (t->len == len && memcmp(v->text + t->off, s, len) == 0)
            return id;
        i = (i + 1) & v->tok_hash_mask;
    }
}

static uint32_t pow2_at_least(uint64_t n)
{
    uint32_t p = 16;
    while (p < n && p < (1u << 31))
        p <<= 1;
    return p;
}

/* ---- loading ------------------------------------------------------------ */

struct pre_alias { const char *name; enum md_pre_kind kind; bool ignore_merges; bool add_bos; };

static const struct pre_alias pre_aliases[] = {
    { "default",          MD_PRE_GPT2,   false, false },
    { "gpt2",             MD_PRE_GPT2,   false, false },
    { "gpt-2",            MD_PRE_GPT2,   false, false },
    { "phi-2",            MD_PRE_GPT2,   false, false },
    { "mpt",              MD_PRE_GPT2,   false, false },
    { "olmo",             MD_PRE_GPT2,   false, false },
    { "jais",             MD_PRE_GPT2,   false, false },
    { "llama3",           MD_PRE_LLAMA3, true,  true  },
    { "llama-v3",         MD_PRE_LLAMA3, true,  true  },
    { "llama-bpe",        MD_PRE_LLAMA3, true,  true  },
    { "falcon3",          MD_PRE_LLAMA3, true,  true  },
    { "dbrx",             MD_PRE_LLAMA3, false, false },
    { "smaug-bpe",        MD_PRE_LLAMA3, false, false },
    { "qwen2",            MD_PRE_QWEN2,  false, false },
    { "deepseek-r1-qwen", MD_PRE_QWEN2,  false, false },
    { "stablelm2",        MD_PRE_QWEN2,  false, false },
    { "megrez",           MD_PRE_QWEN2,  false, false },
    { "hunyuan",          MD_PRE_QWEN2,  false, false },
};

/* End-of-turn candidates when tokenizer.ggml.eot_token_id is absent, in
 * order of preference. */
static const char *const eot_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
    "<|end_of_text|>", "<EOT>", "_<EOT>", "<\xef\xbd\x9c" "end\xe2\x96\x81" "of\xe2\x96\x81" "sentence\xef\xbd\x9c>",
    "<end_of_utterance>",
};

/* Texts of tokens that end generation (when CONTROL or USER_DEFINED). */
static const char *const eog_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
    "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "<|end_of_text|>",
    "<end_of_utterance>", "<\xef\xbd\x9c" "end\xe2\x96\x81" "of\xe2\x96\x81" "sentence\xef\xbd\x9c>",
};

static const struct md_gguf_kv *find_array(const struct md_gguf *g, const char *key,
                                           int elem_kind, /* 0 str, 1 num, 2 int */
                                           uint64_t min_n, bool required,
                                           int *bad, char *err, size_t errlen)
{
    const struct md_gguf_kv *kv = md_gguf_find_kv(g, key);
    *bad = 0;
    if (!kv) {
        if (required) {
            set_err(err, errlen, "%s: missing", key);
            *bad = 1;
        }
        return NULL;
    }
    bool ok = kv->type == MD_GGUF_ARRAY;
    if (ok) {
        switch (elem_kind) {
        case 0: ok = kv->arr_type == MD_GGUF_STRING; break;
        case 1: ok = kv->arr_type == MD_GGUF_FLOAT32 || kv->arr_type == MD_GGUF_INT32; break;
        default:
            ok = kv->arr_type == MD_GGUF_INT32 || kv->arr_type == MD_GGUF_UINT32 ||
                 kv->arr_type == MD_GGUF_INT8 || kv->arr_type == MD_GGUF_UINT8 ||
                 kv->arr_type == MD_GGUF_INT16 || kv->arr_type == MD_GGUF_UINT16 ||
                 kv->arr_type == MD_GGUF_INT64 || kv->arr_type == MD_GGUF_UINT64;
            break;
        }
    }
    if (!ok) {
        set_err(err, errlen, "%s: wrong type (%s of %s)", key, md_gguf_vtype_name(kv->type),
                kv->type == MD_GGUF_ARRAY ? md_gguf_vtype_name(kv->arr_type) : "-");
        *bad = 1;
        return NULL;
    }
    if (kv->n < min_n) {
        set_err(err, errlen, "%s: %llu entries, need %llu", key,
                (unsigned long long)kv->n, (unsigned long long)min_n);
        *bad = 1;
        return NULL;
    }
    return kv;
}

static void read_flag(const struct md_gguf *g, struct md_vocab *v, const char *key, bool *flag)
{
    bool b;
    const int rc = md_gguf_get_bool(g, key, &b);
    if (rc == 0)
        *flag = b;
    else if (rc == -2)
        warn(v, "%s: not a bool, ignored", key);
}

static void read_special(const struct md_gguf *g, struct md_vocab *v, const char *key, int32_t *id)
{
    int64_t x;
    const int rc = md_gguf_get_i64(g, key, &x);
    if (rc == -1)
        return;
    if (rc != 0) {
        warn(v, "%s: not an integer, ignored", key);
        return;
    }
    if (x < 0)
        *id = -1;
    else if (x >= v->n_tokens)
        warn(v, "%s = %lld is out of range (%d tokens), ignored", key, (long long)x, v->n_tokens);
    else
        *id = (int32_t)x;
}

struct len_id { uint32_t len; int32_t id; };

static int cmp_len_id(const void *a, const void *b)
{
    const struct len_id *x = a, *y = b;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static int build_specials(struct md_vocab *v)
{
    int32_t n = 0;
    for (int32_t i = 0; i < v->n_tokens; i++) {
        const uint8_t t = v->toks[i].type;
        if ((t == MD_TOKEN_CONTROL || t == MD_TOKEN_USER_DEFINED || t == MD_TOKEN_UNKNOWN) &&
            v->toks[i].len > 0)
            n++;
    }
    if (n == 0)
        return 0;
    struct len_id *tmp = malloc((size_t)n * sizeof(*tmp));
    v->special = malloc((size_t)n * sizeof(*v->special));
    if (!tmp || !v->special) {
        free(tmp);
        return -1;
    }
    int32_t k = 0;
    for (int32_t i = 0; i < v->n_tokens; i++) {
        const uint8_t t = v->toks[i].type;
        if ((t == MD_TOKEN_CONTROL || t == MD_TOKEN_USER_DEFINED || t == MD_TOKEN_UNKNOWN) &&
            v->toks[i].len > 0)
            tmp[k++] = (struct len_id){ v->toks[i].len, i };
    }
    qsort(tmp, (size_t)n, sizeof(*tmp), cmp_len_id);
    for (int32_t i = 0; i < n; i++)
        v->special[i] = tmp[i].id;
    v->n_special = n;
    free(tmp);
    return 0;
}

static bool contains_ci(const char *hay, size_t n, const char *needle)
{
    const size_t m = strlen(needle);
    for (size_t i = 0; i + m <= n; i++) {
        size_t j = 0;
        while (j < m) {
            char c = hay[i + j];
            if (c >= 'A' && c <= 'Z')
                c = (char)(c + 32);
            if (c != needle[j])
                break;
            j++;
        }
        if (j == m)
            return true;
    }
    return false;
}

static void init_byte_level(struct md_vocab *v)
{
    /* GPT-2 bytes_to_unicode: printable bytes keep their value, the others
     * take 256, 257, ... in byte order. */
    uint32_t next = 256;
    for (int i = 0; i < 324; i++)
        v->cp_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        const bool keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        v->byte_cp[b] = (uint16_t)(keep ? (uint32_t)b : next++);
        v->cp_byte[v->byte_cp[b]] = (int16_t)b;
    }
}

static int load_tokens(const struct md_gguf *g, struct md_vocab *v, char *err, size_t errlen)
{
    int bad;
    const struct md_gguf_kv *tk = find_array(g, "tokenizer.ggml.tokens", 0, 1, true, &bad, err, errlen);
    if (!tk)
        return -1;
    if (tk->n > (uint64_t)INT32_MAX - 1) {
        set_err(err, errlen, "tokenizer.ggml.tokens: too many tokens (%llu)", (unsigned long long)tk->n);
        return -1;
    }
    const int32_t n = (int32_t)tk->n;
    const struct md_gguf_kv *sc = find_array(g, "tokenizer.ggml.scores", 1, (uint64_t)n, false, &bad, err, errlen);
    if (bad)
        return -1;
    const struct md_gguf_kv *ty = find_array(g, "tokenizer.ggml.token_type", 2, (uint64_t)n, false, &bad, err, errlen);
    if (bad)
        return -1;

    uint64_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        struct md_str s;
        if (md_gguf_arr_str(tk, (uint64_t)i, &s)) {
            set_err(err, errlen, "tokenizer.ggml.tokens[%d]: unreadable", i);
            return -1;
        }
        total += s.len + 1;
        if (total > UINT32_MAX) {
            set_err(err, errlen, "tokenizer.ggml.tokens: token texts exceed 4 GiB");
            return -1;
        }
    }
    v->n_tokens = n;
    v->toks = calloc((size_t)n, sizeof(*v->toks));
    v->text = malloc((size_t)total);
    if (!v->toks || !v->text) {
        set_err(err, errlen, "out of memory for %d tokens", n);
        return -1;
    }
    uint32_t off = 0;
    for (int32_t i = 0; i < n; i++) {
        struct md_str s;
        md_gguf_arr_str(tk, (uint64_t)i, &s);
        struct md_tok *t = &v->toks[i];
        if (s.len)
            memcpy(v->text + off, s.ptr, s.len);
        v->text[off + s.len] = '\0';
        t->off = off;
        t->len = (uint32_t)s.len;
        off += (uint32_t)s.len + 1;
        t->type = MD_TOKEN_NORMAL;
        if (sc) {
            float f = 0.0f;
            if (sc->arr_type == MD_GGUF_FLOAT32) {
                md_gguf_arr_f32(sc, (uint64_t)i, &f);
            } else {
                int64_t x = 0;
                md_gguf_arr_i64(sc, (uint64_t)i, &x);
                f = (float)x;
            }
            t->score = f;
        }
        if (ty) {
            int64_t x = 0;
            md_gguf_arr_i64(ty, (uint64_t)i, &x);
            t->type = (x >= MD_TOKEN_NORMAL && x <= MD_TOKEN_BYTE) ? (uint8_t)x : MD_TOKEN_UNDEFINED;
        }
    }

    const uint32_t size = pow2_at_least(2 * (uint64_t)n);
    v->tok_hash = malloc((size_t)size * sizeof(*v->tok_hash));
    if (!v->tok_hash) {
        set_err(err, errlen, "out of memory for the token map");
        return -1;
    }
    memset(v->tok_hash, 0xff, (size_t)size * sizeof(*v->tok_hash));
    v->tok_hash_mask = size - 1;
    int32_t n_dup = 0, n_empty = 0;
    for (int32_t i = 0; i < n; i++) {
        const struct md_tok *t = &v->toks[i];
        if (t->len == 0) {
            n_empty++;
            continue;
        }
        uint32_t h = text_hash((const uint8_t *)v->text + t->off, t->len) & v->tok_hash_mask;
        for (;;) {
            const int32_t id = v->tok_hash[h];
            if (id < 0) {
                v->tok_hash[h] = i;
                break;
            }
            if (v->toks[id].len == t->len && memcmp(v->text + v->toks[id].off, v->text + t->off, t->len) == 0) {
                n_dup++;   /* keep the first id */
                break;
            }
            h = (h + 1) & v->tok_hash_mask;
        }
    }
    if (n_dup)
        warn(v, "tokenizer.ggml.tokens: %d duplicate texts (the first id is used)", n_dup);
    if (n_empty)
        warn(v, "tokenizer.ggml.tokens: %d empty tokens", n_empty);
    return 0;
}

static int load_merges(const struct md_gguf *g, struct md_vocab *v, char *err, size_t errlen)
{
    int bad;
    const struct md_gguf_kv *mk = find_array(g, "tokenizer.ggml.merges", 0, 0, true, &bad, err, errlen);
    if (!mk)
        return -1;
    if (mk->n > (uint64_t)INT32_MAX - 1) {
        set_err(err, errlen, "tokenizer.ggml.merges: too many merges");
        return -1;
    }
    const uint32_t size = pow2_at_least(2 * mk->n);
    v->merges = malloc((size_t)size * sizeof(*v->merges));
    if (!v->merges) {
        set_err(err, errlen, "out of memory for %llu merges", (unsigned long long)mk->n);
        return -1;
    }
    for (uint32_t i = 0; i < size; i++)
        v->merges[i].rank = -1;
    v->merge_mask = size - 1;

    char *cat = NULL;
    size_t cat_cap = 0;
    int32_t n_unknown = 0;
    for (uint64_t i = 0; i < mk->n; i++) {
        struct md_str s;
        if (md_gguf_arr_str(mk, i, &s)) {
            set_err(err, errlen, "tokenizer.ggml.merges[%llu]: unreadable", (unsigned long long)i);
            free(cat);
            return -1;
        }
        /* "left right": split at the first space after position 0 */
        const char *sp = s.len > 1 ? memchr(s.ptr + 1, ' ', s.len - 1) : NULL;
        if (!sp) {
            n_unknown++;
            continue;
        }
        const size_t ln = (size_t)(sp - s.ptr), rn = s.len - ln - 1;
        const int32_t a = md_vocab_lookup(v, s.ptr, ln);
        const int32_t b = md_vocab_lookup(v, sp + 1, rn);
        if (a < 0 || b < 0) {
            n_unknown++;
            continue;
        }
        if (cat_cap < ln + rn) {
            char *c = realloc(cat, ln + rn);
            if (!c) {
                free(cat);
                set_err(err, errlen, "out of memory");
                return -1;
            }
            cat = c;
            cat_cap = ln + rn;
        }
        memcpy(cat, s.ptr, ln);
        memcpy(cat + ln, sp + 1, rn);
        md_bpe_merge_insert(v, a, b, (int32_t)i, md_vocab_lookup(v, cat, ln + rn));
    }
    free(cat);
    if (n_unknown)
        warn(v, "tokenizer.ggml.merges: %d entries unusable (malformed or not vocab tokens)", n_unknown);
    return 0;
}

int md_vocab_load(const struct md_gguf *g, struct md_vocab **out, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!out) {
        set_err(err, errlen, "md_vocab_load: out is NULL");
        return -1;
    }
    *out = NULL;
    if (!g) {
        set_err(err, errlen, "md_vocab_load: no GGUF");
        return -1;
    }
    struct md_str model;
    const int mrc = md_gguf_get_str(g, "tokenizer.ggml.model", &model);
    if (mrc) {
        set_err(err, errlen, "tokenizer.ggml.model: %s", mrc == -1 ? "missing" : "not a string");
        return -1;
    }
    struct md_vocab *v = calloc(1, sizeof(*v));
    if (!v) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    if (md_str_eq(model, "llama")) {
        v->kind = MD_VOCAB_SPM;
    } else if (md_str_eq(model, "gpt2")) {
        v->kind = MD_VOCAB_BPE;
    } else {
        set_err(err, errlen, "tokenizer.ggml.model: unsupported '%.*s' (need \"llama\" or \"gpt2\")",
                (int)(model.len > 64 ? 64 : model.len), model.ptr);
        free(v);
        return -1;
    }
    v->bos = v->eos = v->eot = v->eom = v->unk = v->pad = -1;

    if (load_tokens(g, v, err, errlen))
        goto fail;

    if (v->kind == MD_VOCAB_SPM) {
        v->bos = v->n_tokens > 1 ? 1 : -1;
        v->eos = v->n_tokens > 2 ? 2 : -1;
        v->unk = 0;
        v->add_space_prefix = true;
        v->add_bos = true;
        v->add_eos = false;
        snprintf(v->pre_name, sizeof(v->pre_name), "default");
    } else {
        init_byte_level(v);
        struct md_str pre;
        const int prc = md_gguf_get_str(g, "tokenizer.ggml.pre", &pre);
        v->pre = MD_PRE_GPT2;
        if (prc != 0) {
            warn(v, "tokenizer.ggml.pre %s: using the default (GPT-2) pre-tokenizer; "
                 "tokenization may differ from the original", prc == -1 ? "missing" : "not a string");
            snprintf(v->pre_name, sizeof(v->pre_name), "default");
        } else {
            snprintf(v->pre_name, sizeof(v->pre_name), "%.*s",
                     (int)(pre.len > 63 ? 63 : pre.len), pre.ptr);
            size_t k = 0;
            const size_t na = sizeof(pre_aliases) / sizeof(pre_aliases[0]);
            while (k < na && !md_str_eq(pre, pre_aliases[k].name))
                k++;
            if (k < na) {
                v->pre = pre_aliases[k].kind;
                v->ignore_merges = pre_aliases[k].ignore_merges;
                v->add_bos = pre_aliases[k].add_bos;
            } else {
                warn(v, "unknown tokenizer.ggml.pre '%s': using the default (GPT-2) "
                     "pre-tokenizer; tokenization may differ from the original", v->pre_name);
            }
        }
        if (load_merges(g, v, err, errlen))
            goto fail;
    }

    read_flag(g, v, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix);
    read_flag(g, v, "tokenizer.ggml.remove_extra_whitespaces", &v->remove_extra_whitespaces);
    read_flag(g, v, "tokenizer.ggml.add_bos_token", &v->add_bos);
    read_flag(g, v, "tokenizer.ggml.add_eos_token", &v->add_eos);
    if (v->kind != MD_VOCAB_SPM)
        v->add_space_prefix = false;   /* the byte-level BPE path has no such step */

    read_special(g, v, "tokenizer.ggml.bos_token_id", &v->bos);
    read_special(g, v, "tokenizer.ggml.eos_token_id", &v->eos);
    read_special(g, v, "tokenizer.ggml.eot_token_id", &v->eot);
    read_special(g, v, "tokenizer.ggml.eom_token_id", &v->eom);
    read_special(g, v, "tokenizer.ggml.unknown_token_id", &v->unk);
    read_special(g, v, "tokenizer.ggml.padding_token_id", &v->pad);
    if (v->unk >= v->n_tokens)
        v->unk = -1;

    /* raw byte -> token */
    for (int b = 0; b < 256; b++) {
        int32_t t = -1;
        if (v->kind == MD_VOCAB_SPM) {
            char hex[7];
            snprintf(hex, sizeof(hex), "<0x%02X>", b);
            t = md_vocab_lookup(v, hex, 6);
            if (t < 0) {
                const char c = (char)b;
                t = md_vocab_lookup(v, &c, 1);
            }
        } else {
            uint8_t u[4];
            const size_t k = md_utf8_encode(v->byte_cp[b], u);
            t = md_vocab_lookup(v, (const char *)u, k);
        }
        v->byte_tok[b] = t;
    }

    /* end of turn, when no key names it */
    if (v->eot < 0) {
        const size_t ne = sizeof(eot_texts) / sizeof(eot_texts[0]);
        for (size_t k = 0; k < ne && v->eot < 0; k++) {
            const int32_t id = md_vocab_lookup(v, eot_texts[k], strlen(eot_texts[k]));
            if (id >= 0 && (v->toks[id].type == MD_TOKEN_CONTROL ||
                            v->toks[id].type == MD_TOKEN_USER_DEFINED))
                v->eot = id;
        }
    }
    /* end of generation: eos, eot, eom and the control-looking end tokens */
    {
        const size_t ng = sizeof(eog_texts) / sizeof(eog_texts[0]);
        for (size_t k = 0; k < ng; k++) {
            const int32_t id = md_vocab_lookup(v, eog_texts[k], strlen(eog_texts[k]));
            if (id >= 0 && (v->toks[id].type == MD_TOKEN_CONTROL ||
                            v->toks[id].type == MD_TOKEN_USER_DEFINED)) {
                v->toks[id].attr |= MD_ATTR_EOG;
                v->toks[id].type = MD_TOKEN_CONTROL;   /* as llama.cpp does */
            }
        }
        const int32_t ids[3] = { v->eos, v->eot, v->eom };
        for (int k = 0; k < 3; k++)
            if (ids[k] >= 0)
                v->toks[ids[k]].attr |= MD_ATTR_EOG;
    }

    if (build_specials(v)) {
        set_err(err, errlen, "out of memory");
        goto fail;
    }

    /* llama.cpp's Phi-3 rule: special tokens swallow the whitespace after
     * them, except <unk>, <s> and <|endoftext|>. */
    {
        struct md_str name;
        if (md_gguf_get_str(g, "general.name", &name) == 0 &&
            (contains_ci(name.ptr, name.len, "phi-3") || contains_ci(name.ptr, name.len, "phi3"))) {
            for (int32_t i = 0; i < v->n_special; i++)
                v->toks[v->special[i]].attr |= MD_ATTR_RSTRIP;
            const int32_t s = md_vocab_lookup(v, "</s>", 4);
            if (s >= 0)
                v->toks[s].attr |= MD_ATTR_RSTRIP;
            static const char *const keep[] = { "<unk>", "<s>", "<|endoftext|>" };
            for (int k = 0; k < 3; k++) {
                const int32_t id = md_vocab_lookup(v, keep[k], strlen(keep[k]));
                if (id >= 0)
                    v->toks[id].attr &= (uint8_t)~MD_ATTR_RSTRIP;
            }
        }
    }

    *out = v;
    return 0;
fail:
    md_vocab_free(v);
    return -1;
}

void md_vocab_free(struct md_vocab *v)
{
    if (!v)
        return;
    free(v->toks);
    free(v->text);
    free(v->tok_hash);
    free(v->merges);
    free(v->special);
    free(v);
}

/* ---- accessors ---------------------------------------------------------- */

enum md_vocab_kind md_vocab_kind(const struct md_vocab *v) { return v ? v->kind : (enum md_vocab_kind)0; }
int32_t md_vocab_n_tokens(const struct md_vocab *v) { return v ? v->n_tokens : 0; }
int32_t md_vocab_bos(const struct md_vocab *v) { return v ? v->bos : -1; }
int32_t md_vocab_eos(const struct md_vocab *v) { return v ? v->eos : -1; }
int32_t md_vocab_eot(const struct md_vocab *v) { return v ? v->eot : -1; }
int32_t md_vocab_unk(const struct md_vocab *v) { return v ? v->unk : -1; }
int32_t md_vocab_pad(const struct md_vocab *v) { return v ? v->pad : -1; }
bool md_vocab_add_bos(const struct md_vocab *v) { return v && v->add_bos; }
bool md_vocab_add_eos(const struct md_vocab *v) { return v && v->add_eos; }
bool md_vocab_add_space_prefix(const struct md_vocab *v) { return v && v->add_space_prefix; }

const char *md_vocab_warning(const struct md_vocab *v)
{
    return v && v->warning[0] ? v->warning : NULL;
}

const char *md_vocab_pretokenizer(const struct md_vocab *v)
{
    if (!v || v->kind != MD_VOCAB_BPE)
        return NULL;
    switch (v->pre) {
    case MD_PRE_LLAMA3: return "llama3";
    case MD_PRE_QWEN2:  return "qwen2";
    case MD_PRE_GPT2:
    default:            return "gpt2";
    }
}

bool md_vocab_is_eog(const struct md_vocab *v, int32_t tok)
{
    return v && tok >= 0 && tok < v->n_tokens && (v->toks[tok].attr & MD_ATTR_EOG);
}

enum md_token_type md_vocab_token_type(const struct md_vocab *v, int32_t tok)
{
    if (!v || tok < 0 || tok >= v->n_tokens)
        return MD_TOKEN_UNDEFINED;
    return (enum md_token_type)v->toks[tok].type;
}

const char *md_vocab_token_text(const struct md_vocab *v, int32_t tok)
{
    if (!v || tok < 0 || tok >= v->n_tokens)
        return NULL;
    return v->text + v->toks[tok].off;
}

int32_t md_vocab_find(const struct md_vocab *v, const char *text)
{
    if (!v || !text)
        return -1;
    return md_vocab_lookup(v, text, strlen(text));
}

/* ---- tokenize ----------------------------------------------------------- */

struct frag { uint32_t off, len; int32_t tok; };   /* tok < 0: raw text */
struct frags { struct frag *v; size_t n, cap; };

static int frags_push(struct frags *f, uint32_t off, uint32_t len, int32_t tok)
{
    if (f->n == f->cap) {
        const size_t cap = f->cap ? f->cap * 2 : 16;
        struct frag *p = realloc(f->v, cap * sizeof(*p));
        if (!p)
            return -1;
        f->v = p;
        f->cap = cap;
    }
    f->v[f->n++] = (struct frag){ off, len, tok };
    return 0;
}

/* First occurrence of nd[0..m) in h[0..n) (Horspool), NULL if none. */
static const uint8_t *find_bytes(const uint8_t *h, size_t n, const uint8_t *nd, size_t m)
{
    if (m == 0 || m > n)
        return NULL;
    if (m == 1)
        return memchr(h, nd[0], n);
    size_t shift[256];
    for (int i = 0; i < 256; i++)
        shift[i] = m;
    for (size_t i = 0; i + 1 < m; i++)
        shift[nd[i]] = m - 1 - i;
    const uint8_t last = nd[m - 1];
    size_t i = 0;
    while (i <= n - m) {
        const uint8_t c = h[i + m - 1];
        if (c == last && h[i] == nd[0] && memcmp(h + i, nd, m - 1) == 0)
            return h + i;
        i += shift[c];
    }
    return NULL;
}

static inline bool ascii_space(uint8_t c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

static bool listed(int32_t id, const int32_t *ids, int32_t n)
{
    for (int32_t i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

/* Does [at, at + n) overlap one of the literal spans? */
static bool in_literal(const struct md_text_span *lit, int32_t n_lit, size_t at, size_t n)
{
    for (int32_t i = 0; i < n_lit; i++)
        if (at < lit[i].off + lit[i].len && lit[i].off < at + n)
            return true;
    return false;
}

/* Split the raw fragments around every occurrence of the special tokens,
 * longest token first (llama.cpp's tokenizer_st_partition), except those
 * listed in as_text, and control tokens whose text overlaps a literal span
 * (they stay text there, as with parse_special false). */
static int partition(const struct md_vocab *v, const uint8_t *s, size_t len,
                     bool parse_special, const int32_t *as_text, int32_t n_as_text,
                     const struct md_text_span *lit, int32_t n_lit, struct frags *cur)
{
    if (len == 0)
        return 0;
    if (frags_push(cur, 0, (uint32_t)len, -1))
        return -1;
    bool present[256] = { false };
    for (size_t i = 0; i < len; i++)
        present[s[i]] = true;

    struct frags nxt = { NULL, 0, 0 };
    int rc = 0;
    for (int32_t k = 0; k < v->n_special && !rc; k++) {
        const int32_t id = v->special[k];
        const struct md_tok *t = &v->toks[id];
        if (!parse_special && (t->type == MD_TOKEN_CONTROL || t->type == MD_TOKEN_UNKNOWN))
            continue;   /* user-defined tokens are matched either way */
        if (listed(id, as_text, n_as_text))
            continue;
        const uint8_t *tx = (const uint8_t *)v->text + t->off;
        if (t->len > len)
            continue;
        bool all_present = true;
        for (uint32_t j = 0; j < t->len && all_present; j++)
            all_present = present[tx[j]];
        if (!all_present)
            continue;
        bool found = false;
        for (size_t i = 0; i < cur->n && !found; i++)
            found = cur->v[i].tok < 0 && cur->v[i].len >= t->len &&
                    find_bytes(s + cur->v[i].off, cur->v[i].len, tx, t->len) != NULL;
        if (!found)
            continue;
        nxt.n = 0;
        for (size_t i = 0; i < cur->n && !rc; i++) {
            const struct frag f = cur->v[i];
            if (f.tok >= 0) {
                rc = frags_push(&nxt, f.off, f.len, f.tok);
                continue;
            }
            const bool control = t->type == MD_TOKEN_CONTROL || t->type == MD_TOKEN_UNKNOWN;
            size_t b = f.off, l = f.len, from = b;   /* search from `from`, cut from b */
            while (from < b + l && !rc) {
                const uint8_t *m = find_bytes(s + from, b + l - from, tx, t->len);
                if (!m)
                    break;
                const size_t mo = (size_t)(m - s);
                if (control && in_literal(lit, n_lit, mo, t->len)) {
                    from = mo + 1;
                    continue;
                }
                size_t ll = mo - b;
                if (t->attr & MD_ATTR_LSTRIP)
                    while (ll > 0 && ascii_space(s[b + ll - 1]))
                        ll--;
                if (ll > 0)
                    rc = frags_push(&nxt, (uint32_t)b, (uint32_t)ll, -1);
                if (!rc)
                    rc = frags_push(&nxt, (uint32_t)mo, t->len, id);
                const size_t end = b + l;
                b = mo + t->len;
                l = end - b;
                if (t->attr & MD_ATTR_RSTRIP)
                    while (l > 0 && ascii_space(s[b])) {
                        b++;
                        l--;
                    }
                from = b;
            }
            if (l > 0 && !rc)
                rc = frags_push(&nxt, (uint32_t)b, (uint32_t)l, -1);
        }
        const struct frags tmp = *cur;
        *cur = nxt;
        nxt = tmp;
    }
    free(nxt.v);
    return rc;
}

int64_t md_tokenize(const struct md_vocab *v, const char *text, size_t len,
                    bool add_special, bool parse_special, int32_t *out, int64_t n_max)
{
    return md_tokenize_except(v, text, len, add_special, parse_special, NULL, 0, out, n_max);
}

int64_t md_tokenize_except(const struct md_vocab *v, const char *text, size_t len,
                           bool add_special, bool parse_special, const int32_t *as_text,
                           int32_t n_as_text, int32_t *out, int64_t n_max)
{
    return md_tokenize_literal(v, text, len, add_special, parse_special, as_text, n_as_text,
                               NULL, 0, out, n_max);
}

int64_t md_tokenize_literal(const struct md_vocab *v, const char *text, size_t len,
                            bool add_special, bool parse_special, const int32_t *as_text,
                            int32_t n_as_text, const struct md_text_span *literal,
                            int32_t n_literal, int32_t *out, int64_t n_max)
{
    if (!v || (!text && len > 0) || n_max < 0 || (!out && n_max > 0) || n_as_text < 0 ||
        (!as_text && n_as_text > 0) || n_literal < 0 || (!literal && n_literal > 0))
        return -1;
    if (len > MD_TOK_MAX_INPUT)
        return -1;
    const uint8_t *s = (const uint8_t *)text;
    struct frags fr = { NULL, 0, 0 };
    struct md_ids ids = { NULL, 0, 0 };
    int rc = partition(v, s, len, parse_special, as_text, n_as_text, literal, n_literal, &fr);

    if (!rc && add_special && v->add_bos && v->bos >= 0)
        rc = md_ids_push(&ids, v->bos);
    bool prev_special = true;   /* SPM: the text start counts as after a special */
    for (size_t i = 0; i < fr.n && !rc; i++) {
        const struct frag *f = &fr.v[i];
        if (f->tok >= 0) {
            rc = md_ids_push(&ids, f->tok);
            prev_special = true;
            continue;
        }
        if (v->kind == MD_VOCAB_SPM)
            rc = md_spm_tokenize(v, s + f->off, f->len, v->add_space_prefix && prev_special, &ids);
        else
            rc = md_bpe_tokenize(v, s + f->off, f->len, &ids);
        prev_special = false;
    }
    if (!rc && add_special && v->add_eos && v->eos >= 0)
        rc = md_ids_push(&ids, v->eos);

    int64_t result = -1;
    if (!rc) {
        result = (int64_t)ids.n;
        const size_t ncopy = (uint64_t)n_max < ids.n ? (size_t)n_max : ids.n;
        if (ncopy)
            memcpy(out, ids.v, ncopy * sizeof(*out));
    }
    free(fr.v);
    free(ids.v);
    return result;
}

/* ---- detokenize --------------------------------------------------------- */

struct sink {
    char *buf;
    size_t cap;      /* bytes that may be written */
    size_t len;      /* bytes produced (written or not) */
    bool skip_space; /* drop one leading ' ' of the next piece */
};

static void sink_put(struct sink *k, const void *p, size_t n)
{
    const char *c = p;
    if (n == 0)
        return;
    if (k->skip_space) {
        k->skip_space = false;
        if (c[0] == ' ') {
            c++;
            n--;
        }
    }
    if (k->len < k->cap) {
        const size_t room = k->cap - k->len;
        memcpy(k->buf + k->len, c, n < room ? n : room);
    }
    k->len += n;
}

static int byte_of_token(const char *t, size_t n)
{
    if (n != 6 || t[0] != '<' || t[1] != '0' || t[2] != 'x' || t[5] != '>')
        return -1;
    int b = 0;
    for (int i = 3; i < 5; i++) {
        const char c = t[i];
        int d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else return -1;
        b = b * 16 + d;
    }
    return b;
}

static void piece(const struct md_vocab *v, int32_t tok, bool special, struct sink *k)
{
    const struct md_tok *t = &v->toks[tok];
    const char *tx = v->text + t->off;
    switch (t->type) {
    case MD_TOKEN_CONTROL:
    case MD_TOKEN_UNKNOWN:
        if (special)
            sink_put(k, tx, t->len);
        return;
    case MD_TOKEN_USER_DEFINED:
        sink_put(k, tx, t->len);
        return;
    case MD_TOKEN_BYTE: {
        const int b = byte_of_token(tx, t->len);
        if (b >= 0) {
            const char c = (char)b;
            sink_put(k, &c, 1);
        }
        return;
    }
    case MD_TOKEN_NORMAL:
        break;
    default:
        return;    /* unused / undefined: nothing, as llama.cpp */
    }
    if (v->kind == MD_VOCAB_SPM) {
        size_t i = 0, run = 0;
        while (i < t->len) {
            if (i + 3 <= t->len && memcmp(tx + i, "\xe2\x96\x81", 3) == 0) {
                sink_put(k, tx + run, i - run);
                sink_put(k, " ", 1);
                i += 3;
                run = i;
            } else {
                i++;
            }
        }
        sink_put(k, tx + run, t->len - run);
        return;
    }
    /* byte-level BPE: every character stands for one byte */
    const uint8_t *u = (const uint8_t *)tx;
    size_t i = 0;
    while (i < t->len) {
        uint32_t cp;
        const size_t n = md_utf8_decode(u + i, t->len - i, &cp);
        if (cp < 324 && v->cp_byte[cp] >= 0) {
            const char c = (char)v->cp_byte[cp];
            sink_put(k, &c, 1);
        } else {
            sink_put(k, u + i, n);   /* not a byte-level character: as is */
        }
        i += n;
    }
}

int32_t md_token_to_piece(const struct md_vocab *v, int32_t tok, char *buf, int32_t n, bool special)
{
    if (!v || tok < 0 || tok >= v->n_tokens)
        return -1;
    struct sink k = { NULL, 0, 0, false };
    piece(v, tok, special, &k);
    if (k.len > INT32_MAX)
        return -1;
    if (!buf || n < 0 || k.len > (size_t)n)
        return (int32_t)k.len;
    k = (struct sink){ buf, (size_t)n, 0, false };
    piece(v, tok, special, &k);
    return (int32_t)k.len;
}

int64_t md_detokenize(const struct md_vocab *v, const int32_t *toks, int64_t n_toks,
                      char *buf, int64_t n, bool special)
{
    if (!v || n_toks < 0 || (!toks && n_toks > 0))
        return -1;
    struct sink k = { buf, (buf && n > 0) ? (size_t)n - 1 : 0, 0, false };
    bool strip = v->add_space_prefix;
    for (int64_t i = 0; i < n_toks; i++) {
        const int32_t t = toks[i];
        if (t < 0 || t >= v->n_tokens)
            continue;
        if (strip && i == 0 && t == v->bos) {
            piece(v, t, special, &k);   /* the prefix space follows BOS */
            continue;
        }
        k.skip_space = strip;
        strip = false;
        piece(v, t, special, &k);
        k.skip_space = false;
    }
    if (buf && n > 0)
        buf[k.len < k.cap ? k.len : k.cap] = '\0';
    return (int64_t)k.len;
}
