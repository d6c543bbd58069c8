/* GGUF v2/v3 reader (see gguf.h and docs/llama-cpp.md §1-2).
 *
 * Every count, length, dimension, offset and size is checked against the
 * bytes actually left in the file, with overflow-safe arithmetic, before it
 * is used, and before anything is allocated from it: each kv needs at least
 * 13 bytes of file and each tensor info 32, so no count can make the parser
 * allocate more than a small multiple of the file size.
 *
 * Key and tensor names must be non-empty, NUL-free, valid UTF-8. String
 * VALUES are taken as raw bytes (they are not checked for UTF-8; use
 * md_utf8_valid() where it matters).
 */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <float.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAGIC "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32u
#define MIN_KV_BYTES 13u      /* key length (8) + type (4) + smallest value (1) */
#define MIN_TENSOR_BYTES 32u  /* name length (8) + n_dims (4) + ne[0] (8) + type (4) + offset (8) */
#define NAME_SHOW_MAX 64      /* bytes of a name quoted in an error message */
#define MAX_PLAUSIBLE_TYPE 1024  /* ggml type ids below this may be real (39 in 2025) */

/* ---- little-endian loads ----------------------------------------------- */

static inline uint16_t ld16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t ld32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t ld64(const uint8_t *p) { return (uint64_t)ld32(p) | ((uint64_t)ld32(p + 4) << 32); }

uint64_t md_gguf_vtype_size(uint32_t t)
{
    switch (t) {
    case MD_GGUF_UINT8: case MD_GGUF_INT8: case MD_GGUF_BOOL: return 1;
    case MD_GGUF_UINT16: case MD_GGUF_INT16: return 2;
    case MD_GGUF_UINT32: case MD_GGUF_INT32: case MD_GGUF_FLOAT32: return 4;
    case MD_GGUF_UINT64: case MD_GGUF_INT64: case MD_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

const char *md_gguf_vtype_name(uint32_t t)
{
    static const char *const names[MD_GGUF_VTYPE_COUNT] = {
        "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
        "bool", "string", "array", "uint64", "int64", "float64",
    };
    return t < MD_GGUF_VTYPE_COUNT ? names[t] : "unknown";
}

bool md_str_eq(struct md_str s, const char *c)
{
    if (!c) return false;
    size_t n = strlen(c);
    return s.len == n && (n == 0 || (s.ptr && memcmp(s.ptr, c, n) == 0));
}

bool md_utf8_valid(const void *data, uint64_t len)
{
    const uint8_t *s = data;
    uint64_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) { i++; continue; }
        uint64_t n;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) { n = 2; cp = c & 0x1fu; min = 0x80; }
        else if ((c & 0xf0) == 0xe0) { n = 3; cp = c & 0x0fu; min = 0x800; }
        else if ((c & 0xf8) == 0xf0) { n = 4; cp = c & 0x07u; min = 0x10000; }
        else return false;
        if (len - i < n) return false;
        for (uint64_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3fu);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;   /* overlong, out of range, or a surrogate */
        i += n;
    }
    return true;
}

/* ---- parser state and errors ------------------------------------------- */

/* Bytes that no metadata item of a real GGUF comes near: the largest ones,
 * tokenizer vocabularies, are a few MB. A name, string, array or header
 * table that declares more than this (and more than the file holds) is a
 * damaged field, not a file cut short, and is reported as malformed. */
#define PLAUSIBLE_META_BYTES (1ull << 32)
#define DETAIL_MAX 480        /* bytes of an error's detail before the prefix */

struct rd {
    const uint8_t *p;
    uint64_t size;
    uint64_t pos;
    char *err;
    size_t errlen;
    int status;         /* enum md_status of the first failure */
    char ctx[320];      /* "kv 3 'general.name'" etc.: where a failure is */
};

/* Every error of the reader starts with its cause, so that a caller can
 * use the text before the first ": " as a headline: "malformed GGUF",
 * "truncated", "not a GGUF file", "empty file (0 bytes)", "unsupported
 * GGUF version N", "out of memory ...". */
static int emit(struct rd *r, int status, const char *head, const char *detail,
                const char *tail)
{
    r->status = status;
    if (r->err && r->errlen)
        snprintf(r->err, r->errlen, "%s%s%s", head, detail, tail);
    return -1;
}

#if defined(__GNUC__)
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define PRINTF_LIKE(f, a)
#endif

/* "<cause>: <where>: <what>", where is the kv or tensor being read. */
static int vfail_at(struct rd *r, int status, const char *cause, const char *fmt, va_list ap)
{
    char what[DETAIL_MAX], head[sizeof r->ctx + 48];
    vsnprintf(what, sizeof what, fmt, ap);
    snprintf(head, sizeof head, "%s: %s%s", cause, r->ctx, r->ctx[0] ? ": " : "");
    return emit(r, status, head, what, "");
}

/* A structural defect: "malformed GGUF: <where>: <what>". */
PRINTF_LIKE(2, 3)
static int fail(struct rd *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail_at(r, MD_ERR_FORMAT, "malformed GGUF", fmt, ap);
    va_end(ap);
    return -1;
}

/* Well-formed content this reader does not take (MD_ERR_UNSUPPORTED). */
PRINTF_LIKE(3, 4)
static int fail_unsupported(struct rd *r, const char *cause, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail_at(r, MD_ERR_UNSUPPORTED, cause, fmt, ap);
    va_end(ap);
    return -1;
}

/* The file ends inside a field: "truncated: the file has N bytes and ends
 * in <where> (<what>)". A truncated file is MD_ERR_FORMAT, not MD_ERR_IO:
 * its bytes were read, they just do not hold what the header declares. */
PRINTF_LIKE(2, 3)
static int fail_cut(struct rd *r, const char *fmt, ...)
{
    char what[DETAIL_MAX], head[sizeof r->ctx + 80];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(head, sizeof head, "truncated: the file has %llu bytes and ends in %s (",
             (unsigned long long)r->size, r->ctx[0] ? r->ctx : "the header");
    return emit(r, MD_ERR_FORMAT, head, what, ")");
}

/* The file is shorter than a table it declares: "truncated: the file has
 * N bytes, <what>". */
PRINTF_LIKE(2, 3)
static int fail_short(struct rd *r, const char *fmt, ...)
{
    char what[DETAIL_MAX], head[80];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(head, sizeof head, "truncated: the file has %llu bytes, ", (unsigned long long)r->size);
    return emit(r, MD_ERR_FORMAT, head, what, "");
}

/* Any other status, with the message as given. */
PRINTF_LIKE(3, 4)
static int fail_as(struct rd *r, int status, const char *fmt, ...)
{
    char what[DETAIL_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return emit(r, status, "", what, "");
}

static int fail_nomem(struct rd *r)
{
    return fail_as(r, MD_ERR_NOMEM, "out of memory reading the GGUF metadata");
}

/* A name quoted for an error message: printable ASCII as is, the rest as
 * \xNN, cut at NAME_SHOW_MAX bytes. */
static void show_name(char *buf, size_t n, const uint8_t *s, uint64_t len)
{
    size_t o = 0;
    uint64_t shown = len < NAME_SHOW_MAX ? len : NAME_SHOW_MAX;
    for (uint64_t i = 0; i < shown && o + 5 < n; i++) {
        uint8_t c = s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') buf[o++] = (char)c;
        else o += (size_t)snprintf(buf + o, n - o, "\\x%02x", c);
    }
    if (shown < len && o + 4 < n) { memcpy(buf + o, "...", 3); o += 3; }
    buf[o < n ? o : n - 1] = 0;
}

static inline uint64_t left(const struct rd *r) { return r->size - r->pos; }

static int need(struct rd *r, uint64_t n, const char *what)
{
    if (left(r) < n)
        return fail_cut(r, "%s at offset %llu: %llu bytes needed, %llu left",
                        what, (unsigned long long)r->pos, (unsigned long long)n,
                        (unsigned long long)left(r));
    return 0;
}

/* A field at offset `at` declares `n` bytes (n_items of item_size, so the
 * product cannot overflow unseen) and the file has fewer left: cut short,
 * or a damaged field when no GGUF holds that much metadata. */
static int past_end(struct rd *r, uint64_t at, uint64_t n_items, uint64_t item_size,
                    const char *what)
{
    uint64_t n;
    if (__builtin_mul_overflow(n_items, item_size, &n))
        return fail(r, "%s at offset %llu declares over 2^64 bytes, more than the file's %llu",
                    what, (unsigned long long)at, (unsigned long long)r->size);
    if (n > PLAUSIBLE_META_BYTES)
        return fail(r, "%s at offset %llu declares %llu bytes, more than the file's %llu", what,
                    (unsigned long long)at, (unsigned long long)n, (unsigned long long)r->size);
    return fail_cut(r, "%s at offset %llu: %llu bytes needed, %llu left", what,
                    (unsigned long long)at, (unsigned long long)n, (unsigned long long)left(r));
}

static int get_u32(struct rd *r, uint32_t *v, const char *what)
{
    if (need(r, 4, what)) return -1;
    *v = ld32(r->p + r->pos);
    r->pos += 4;
    return 0;
}

static int get_u64(struct rd *r, uint64_t *v, const char *what)
{
    if (need(r, 8, what)) return -1;
    *v = ld64(r->p + r->pos);
    r->pos += 8;
    return 0;
}

/* A length-prefixed string; the bytes stay in the file. */
static int get_str(struct rd *r, struct md_str *s, const char *what)
{
    uint64_t at = r->pos, len;
    if (get_u64(r, &len, what)) return -1;
    if (len > left(r))
        return past_end(r, at, len, 1, what);
    s->ptr = (const char *)(r->p + r->pos);
    s->len = len;
    r->pos += len;
    return 0;
}

/* A key or tensor name: non-empty, no NUL, valid UTF-8. */
static int check_name(struct rd *r, struct md_str s, uint64_t at, const char *what)
{
    if (s.len == 0)
        return fail(r, "%s at offset %llu is empty", what, (unsigned long long)at);
    if (memchr(s.ptr, 0, s.len))
        return fail(r, "%s at offset %llu contains a NUL byte", what, (unsigned long long)at);
    if (!md_utf8_valid(s.ptr, s.len))
        return fail(r, "%s at offset %llu is not valid UTF-8", what, (unsigned long long)at);
    return 0;
}

static void set_ctx(struct rd *r, const char *kind, uint64_t i, struct md_str name)
{
    char shown[NAME_SHOW_MAX * 4 + 8];
    show_name(shown, sizeof shown, (const uint8_t *)name.ptr, name.len);
    snprintf(r->ctx, sizeof r->ctx, "%s %llu '%s'", kind, (unsigned long long)i, shown);
}

/* Grow *arr (of elements of size el) to hold at least n+1 elements. */
static int grow(void **arr, uint64_t *cap, uint64_t n, size_t el, uint64_t limit)
{
    if (n < *cap) return 0;
    uint64_t nc = *cap ? *cap * 2 : 16;
    if (nc > limit) nc = limit;
    if (nc <= n) nc = n + 1;
    if (nc > SIZE_MAX / el) return -1;
    void *p = realloc(*arr, (size_t)(nc * el));
    if (!p) return -1;
    *arr = p;
    *cap = nc;
    return 0;
}

/* ---- key/value pairs ---------------------------------------------------- */

/* An array whose count (at offset `at`) runs past the end of the file. */
static int past_array(struct rd *r, uint64_t at, uint64_t n, uint64_t item_size,
                      const char *type_name)
{
    char what[96];
    snprintf(what, sizeof what, "array of %llu %s", (unsigned long long)n, type_name);
    return past_end(r, at, n, item_size, what);
}

static int parse_value(struct rd *r, struct md_gguf_kv *kv)
{
    uint64_t at = r->pos;
    if (get_u32(r, &kv->type, "value type")) return -1;
    kv->n = 1;
    kv->arr_type = 0;
    if (kv->type >= MD_GGUF_VTYPE_COUNT)
        return fail(r, "unknown value type %u at offset %llu", kv->type, (unsigned long long)at);

    if (kv->type == MD_GGUF_STRING) {
        struct md_str s;
        kv->data = r->p + r->pos;      /* the u64 length prefix */
        return get_str(r, &s, "string value");
    }
    if (kv->type != MD_GGUF_ARRAY) {
        uint64_t sz = md_gguf_vtype_size(kv->type);
        if (need(r, sz, md_gguf_vtype_name(kv->type))) return -1;
        kv->data = r->p + r->pos;
        if (kv->type == MD_GGUF_BOOL && kv->data[0] > 1)
            return fail(r, "bool value %u at offset %llu is not 0 or 1", kv->data[0],
                        (unsigned long long)r->pos);
        r->pos += sz;
        return 0;
    }

    at = r->pos;
    if (get_u32(r, &kv->arr_type, "array element type")) return -1;
    if (kv->arr_type == MD_GGUF_ARRAY)
        return fail_unsupported(r, "unsupported GGUF value", "array of arrays at offset %llu",
                                (unsigned long long)at);
    if (kv->arr_type >= MD_GGUF_VTYPE_COUNT)
        return fail(r, "unknown array element type %u at offset %llu", kv->arr_type,
                    (unsigned long long)at);
    at = r->pos;
    if (get_u64(r, &kv->n, "array count")) return -1;
    kv->data = r->p + r->pos;

    if (kv->arr_type != MD_GGUF_STRING) {
        uint64_t sz = md_gguf_vtype_size(kv->arr_type);
        if (kv->n > left(r) / sz)
            return past_array(r, at, kv->n, sz, md_gguf_vtype_name(kv->arr_type));
        if (kv->arr_type == MD_GGUF_BOOL) {
            for (uint64_t i = 0; i < kv->n; i++)
                if (kv->data[i] > 1)
                    return fail(r, "bool array element %llu at offset %llu is %u, not 0 or 1",
                                (unsigned long long)i, (unsigned long long)(r->pos + i),
                                kv->data[i]);
        }
        r->pos += kv->n * sz;
        return 0;
    }

    /* Strings: each needs >= 8 bytes, so the count is bounded by the file;
     * walk them first, then allocate the offsets table. */
    if (kv->n > left(r) / 8)
        return past_array(r, at, kv->n, 8, "strings");
    uint64_t start = r->pos;
    for (uint64_t i = 0; i < kv->n; i++) {
        uint64_t sat = r->pos, len;
        char what[96];
        snprintf(what, sizeof what, "string %llu of %llu", (unsigned long long)i,
                 (unsigned long long)kv->n);
        if (need(r, 8, what)) return -1;
        len = ld64(r->p + r->pos);
        r->pos += 8;
        if (len > left(r))
            return past_end(r, sat, len, 1, what);
        r->pos += len;
    }
    if (kv->n == 0)
        return 0;
    kv->str_offsets = malloc((size_t)kv->n * sizeof *kv->str_offsets);
    if (!kv->str_offsets)
        return fail_nomem(r);
    uint64_t p = start;
    for (uint64_t i = 0; i < kv->n; i++) {
        kv->str_offsets[i] = p - start;
        p += 8 + ld64(r->p + p);
    }
    return 0;
}

static int cmp_str(struct md_str a, struct md_str b)
{
    if (a.len != b.len) return a.len < b.len ? -1 : 1;
    return a.len ? memcmp(a.ptr, b.ptr, (size_t)a.len) : 0;
}

static int cmp_kv_key(const void *a, const void *b)
{
    const struct md_gguf_kv *x = *(const struct md_gguf_kv *const *)a;
    const struct md_gguf_kv *y = *(const struct md_gguf_kv *const *)b;
    int c = cmp_str(x->key, y->key);
    return c ? c : (x < y ? -1 : x > y);
}

static int cmp_tensor_name(const void *a, const void *b)
{
    const struct md_gguf_tensor *x = *(const struct md_gguf_tensor *const *)a;
    const struct md_gguf_tensor *y = *(const struct md_gguf_tensor *const *)b;
    int c = cmp_str(x->name, y->name);
    return c ? c : (x < y ? -1 : x > y);
}

static int cmp_tensor_offset(const void *a, const void *b)
{
    const struct md_gguf_tensor *x = *(const struct md_gguf_tensor *const *)a;
    const struct md_gguf_tensor *y = *(const struct md_gguf_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x < y ? -1 : x > y;
}

static uint64_t name_offset(const struct md_gguf *g, struct md_str s)
{
    return (uint64_t)((const uint8_t *)s.ptr - g->base) - 8;
}

static int check_dup_keys(struct rd *r, struct md_gguf *g)
{
    if (g->n_kv < 2) return 0;
    const struct md_gguf_kv **v = malloc((size_t)g->n_kv * sizeof *v);
    if (!v) return fail_nomem(r);
    for (uint64_t i = 0; i < g->n_kv; i++) v[i] = &g->kv[i];
    qsort(v, (size_t)g->n_kv, sizeof *v, cmp_kv_key);
    int rc = 0;
    for (uint64_t i = 1; i < g->n_kv && !rc; i++) {
        if (cmp_str(v[i - 1]->key, v[i]->key) == 0) {
            set_ctx(r, "kv", (uint64_t)(v[i] - g->kv), v[i]->key);
            rc = fail(r, "duplicate key at offset %llu (first defined as kv %llu)",
                      (unsigned long long)name_offset(g, v[i]->key),
                      (unsigned long long)(v[i - 1] - g->kv));
        }
    }
    free(v);
    return rc;
}

/* ---- tensors ------------------------------------------------------------ */

static int parse_tensor_info(struct rd *r, struct md_gguf_tensor *t)
{
    uint64_t at = r->pos;
    if (get_u32(r, &t->n_dims, "n_dims")) return -1;
    if (t->n_dims < 1 || t->n_dims > MD_GGUF_MAX_DIMS)
        return fail(r, "n_dims %u at offset %llu is not in 1..%d", t->n_dims,
                    (unsigned long long)at, MD_GGUF_MAX_DIMS);
    for (int j = 0; j < MD_GGUF_MAX_DIMS; j++) t->ne[j] = 1;
    for (uint32_t j = 0; j < t->n_dims; j++) {
        uint64_t v;
        at = r->pos;
        if (get_u64(r, &v, "ne")) return -1;
        if (v > (uint64_t)INT64_MAX)
            return fail(r, "ne[%u] = %lld at offset %llu is negative", j, (long long)(int64_t)v,
                        (unsigned long long)at);
        t->ne[j] = (int64_t)v;
    }
    at = r->pos;
    if (get_u32(r, &t->type, "tensor type")) return -1;
    int64_t blck, bbytes;
    if (!md_type_layout(t->type, &blck, &bbytes)) {
        /* ggml's type ids are small: a small unknown one is a type newer
         * (or older) than this reader, a large one a damaged field */
        if (t->type < MAX_PLAUSIBLE_TYPE)
            return fail_unsupported(r, "unsupported tensor type", "unknown tensor type %u at "
                                    "offset %llu (not one this version reads)", t->type,
                                    (unsigned long long)at);
        return fail(r, "unknown tensor type %u at offset %llu", t->type, (unsigned long long)at);
    }
    if (t->ne[0] % blck)
        return fail(r, "ne[0] = %lld is not a multiple of the %s block size %lld",
                    (long long)t->ne[0], md_ggml_type_name(t->type), (long long)blck);
    /* The product of the dimensions (zeros counted as 1, so that no partial
     * product a caller forms can overflow) must fit in int64. */
    int64_t prod = 1, rows = 1;
    for (int j = 0; j < MD_GGUF_MAX_DIMS; j++) {
        int64_t d = t->ne[j] ? t->ne[j] : 1;
        if (__builtin_mul_overflow(prod, d, &prod))
            return fail(r, "element count %lld x %lld x %lld x %lld overflows",
                        (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                        (long long)t->ne[3]);
        if (j > 0) rows *= t->ne[j];   /* <= prod, cannot overflow */
    }
    int64_t row_bytes, nbytes;
    if (__builtin_mul_overflow(t->ne[0] / blck, bbytes, &row_bytes) ||
        __builtin_mul_overflow(row_bytes, rows, &nbytes))
        return fail(r, "byte size of %lld x %lld x %lld x %lld %s overflows",
                    (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                    (long long)t->ne[3], md_ggml_type_name(t->type));
    t->nbytes = (uint64_t)nbytes;
    if (get_u64(r, &t->offset, "tensor offset")) return -1;
    return 0;
}

/* Point each tensor at its data: aligned, and inside the file. A file cut
 * in its tensor data is reported with the size its tensors need, and the
 * first tensor (in file order of the infos) the cut reaches. */
static int place_tensors(struct rd *r, struct md_gguf *g)
{
    uint64_t need_size = 0, first_cut = UINT64_MAX;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        struct md_gguf_tensor *t = &g->tensors[i];
        uint64_t abs_off, end;
        set_ctx(r, "tensor", i, t->name);
        if (t->offset % g->alignment)
            return fail(r, "offset %llu is not a multiple of the alignment %u",
                        (unsigned long long)t->offset, g->alignment);
        if (__builtin_add_overflow(g->data_offset, t->offset, &abs_off) ||
            __builtin_add_overflow(abs_off, t->nbytes, &end))
            return fail(r, "data at %llu + offset %llu + %llu bytes overflows 64 bits",
                        (unsigned long long)g->data_offset, (unsigned long long)t->offset,
                        (unsigned long long)t->nbytes);
        if (end > need_size) need_size = end;
        if (end <= g->size) t->data = g->base + abs_off;
        else if (first_cut == UINT64_MAX) first_cut = i;
    }
    r->ctx[0] = 0;
    if (first_cut == UINT64_MAX) return 0;
    const struct md_gguf_tensor *t = &g->tensors[first_cut];
    char shown[NAME_SHOW_MAX * 4 + 8];
    show_name(shown, sizeof shown, (const uint8_t *)t->name.ptr, t->name.len);
    return fail_short(r, "its tensor data needs %llu (tensor %llu '%s' at %llu + %llu bytes "
                      "is the first past the end)", (unsigned long long)need_size,
                      (unsigned long long)first_cut, shown,
                      (unsigned long long)(g->data_offset + t->offset),
                      (unsigned long long)t->nbytes);
}

static int check_tensors(struct rd *r, struct md_gguf *g)
{
    if (place_tensors(r, g)) return -1;
    if (g->n_tensors < 2) return 0;

    const struct md_gguf_tensor **v = malloc((size_t)g->n_tensors * sizeof *v);
    if (!v) return fail_nomem(r);
    for (uint64_t i = 0; i < g->n_tensors; i++) v[i] = &g->tensors[i];
    int rc = 0;

    qsort(v, (size_t)g->n_tensors, sizeof *v, cmp_tensor_name);
    for (uint64_t i = 1; i < g->n_tensors && !rc; i++) {
        if (cmp_str(v[i - 1]->name, v[i]->name) == 0) {
            set_ctx(r, "tensor", (uint64_t)(v[i] - g->tensors), v[i]->name);
            rc = fail(r, "duplicate tensor name at offset %llu (first defined as tensor %llu)",
                      (unsigned long long)name_offset(g, v[i]->name),
                      (unsigned long long)(v[i - 1] - g->tensors));
        }
    }

    if (!rc) {
        qsort(v, (size_t)g->n_tensors, sizeof *v, cmp_tensor_offset);
        const struct md_gguf_tensor *prev = NULL;   /* non-empty one ending last */
        for (uint64_t i = 0; i < g->n_tensors && !rc; i++) {
            const struct md_gguf_tensor *t = v[i];
            if (t->nbytes == 0) continue;           /* holds no bytes */
            if (prev && prev->offset + prev->nbytes > t->offset) {
                char shown[NAME_SHOW_MAX * 4 + 8];
                set_ctx(r, "tensor", (uint64_t)(t - g->tensors), t->name);
                show_name(shown, sizeof shown, (const uint8_t *)prev->name.ptr, prev->name.len);
                rc = fail(r, "data [%llu, %llu) overlaps tensor %llu '%s' [%llu, %llu)",
                          (unsigned long long)t->offset,
                          (unsigned long long)(t->offset + t->nbytes),
                          (unsigned long long)(prev - g->tensors), shown,
                          (unsigned long long)prev->offset,
                          (unsigned long long)(prev->offset + prev->nbytes));
            }
            if (!prev || t->offset + t->nbytes > prev->offset + prev->nbytes)
                prev = t;
        }
    }
    free(v);
    return rc;
}

/* ---- open ---------------------------------------------------------------- */

/* What a file that is not a GGUF looks like, by its first bytes: the
 * mistakes people make (an image or a video as the model, a checkpoint not
 * converted yet, a Git LFS pointer or an HTML error page instead of the
 * download). The description goes in the headline, so it holds no ": ". */
static const char *sniff(const uint8_t *p, uint64_t n)
{
    static const struct { const char *magic; size_t off, len; const char *what; } known[] = {
        { "\x89PNG", 0, 4, "a PNG image" },
        { "\xff\xd8\xff", 0, 3, "a JPEG image" },
        { "GIF8", 0, 4, "a GIF image" },
        { "ftyp", 4, 4, "an MP4/QuickTime file" },
        { "\x1a\x45\xdf\xa3", 0, 4, "a Matroska/WebM file" },
        { "PK\x03\x04", 0, 4, "a ZIP archive, e.g. a PyTorch checkpoint not converted to GGUF" },
        { "version https://git-lfs", 0, 23, "a Git LFS pointer, not the file itself" },
        { "<!DOCTYPE", 0, 9, "an HTML page, e.g. a failed download" },
        { "<!doctype", 0, 9, "an HTML page, e.g. a failed download" },
        { "<html", 0, 5, "an HTML page, e.g. a failed download" },
        { "lmgg", 0, 4, "an old GGML model, convert it to GGUF" },
        { "fmgg", 0, 4, "an old GGMF model, convert it to GGUF" },
        { "tjgg", 0, 4, "an old GGJT model, convert it to GGUF" },
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (n >= known[i].off + known[i].len &&
            !memcmp(p + known[i].off, known[i].magic, known[i].len))
            return known[i].what;
    /* safetensors: a u64 header length, then the JSON header */
    if (n >= 9 && p[8] == '{' && ld64(p) <= n - 8)
        return "a safetensors file, convert it to GGUF";
    return NULL;
}

/* The magic and the version; big-endian and other versions are real GGUF
 * files this reader does not take (MD_ERR_UNSUPPORTED). */
static int parse_magic_version(struct rd *r, struct md_gguf *g)
{
    if (r->size == 0)
        return fail_as(r, MD_ERR_FORMAT, "empty file (0 bytes)");
    if (r->size < 4 && !memcmp(r->p, GGUF_MAGIC, (size_t)r->size))
        return need(r, 4, "magic");
    if (r->size < 4 || memcmp(r->p, GGUF_MAGIC, 4) != 0) {
        char shown[32];
        show_name(shown, sizeof shown, r->p, r->size < 4 ? r->size : 4);
        const char *what = sniff(r->p, r->size);
        if (what)
            return fail_as(r, MD_ERR_FORMAT, "not a GGUF file (%s): starts with '%s'", what,
                           shown);
        return fail_as(r, MD_ERR_FORMAT, "not a GGUF file: starts with '%s', not 'GGUF'", shown);
    }
    r->pos = 4;
    if (get_u32(r, &g->version, "version")) return -1;
    if (g->version == 2 || g->version == 3) return 0;
    uint32_t sw = __builtin_bswap32(g->version);
    if (sw >= 1 && sw <= 3)
        return fail_as(r, MD_ERR_UNSUPPORTED, "unsupported GGUF version %u: a big-endian file "
                       "(version %u byte-swapped); only little-endian files are read",
                       g->version, sw);
    return fail_as(r, MD_ERR_UNSUPPORTED, "unsupported GGUF version %u: only v2 and v3 are "
                   "read%s", g->version, g->version == 1 ? "; reconvert the file with a "
                   "current llama.cpp" : "");
}

/* The kv and tensor counts; each kv needs at least MIN_KV_BYTES of file
 * and each tensor info MIN_TENSOR_BYTES, which bounds what parsing them
 * can allocate. */
static int parse_counts(struct rd *r, uint64_t *n_tensors, uint64_t *n_kv)
{
    if (get_u64(r, n_tensors, "tensor count")) return -1;
    if (get_u64(r, n_kv, "kv count")) return -1;
    if (*n_tensors > (uint64_t)INT64_MAX)
        return fail(r, "tensor count %lld at offset 8 is negative", (long long)(int64_t)*n_tensors);
    if (*n_kv > (uint64_t)INT64_MAX)
        return fail(r, "kv count %lld at offset 16 is negative", (long long)(int64_t)*n_kv);
    uint64_t kv_bytes, t_bytes, min_bytes;
    bool wraps = __builtin_mul_overflow(*n_kv, MIN_KV_BYTES, &kv_bytes) ||
                 __builtin_mul_overflow(*n_tensors, MIN_TENSOR_BYTES, &t_bytes) ||
                 __builtin_add_overflow(kv_bytes, t_bytes, &min_bytes);
    if (!wraps && min_bytes <= left(r))
        return 0;
    if (wraps || min_bytes > PLAUSIBLE_META_BYTES)
        return fail(r, "kv count %llu (offset 16) and tensor count %llu (offset 8) are more "
                    "than the file's %llu bytes can hold", (unsigned long long)*n_kv,
                    (unsigned long long)*n_tensors, (unsigned long long)r->size);
    return fail_short(r, "its header (kv count %llu, tensor count %llu) needs at least %llu",
                      (unsigned long long)*n_kv, (unsigned long long)*n_tensors,
                      (unsigned long long)(min_bytes + r->pos));
}

static int parse(struct rd *r, struct md_gguf *g)
{
    uint64_t n_tensors, n_kv;
    if (parse_magic_version(r, g) || parse_counts(r, &n_tensors, &n_kv)) return -1;

    uint64_t cap = 0;
    for (uint64_t i = 0; i < n_kv; i++) {
        void *arr = g->kv;
        if (grow(&arr, &cap, i, sizeof *g->kv, n_kv)) return fail_nomem(r);
        g->kv = arr;
        struct md_gguf_kv *kv = &g->kv[i];
        memset(kv, 0, sizeof *kv);
        g->n_kv = i + 1;          /* so that close() frees kv->str_offsets */
        uint64_t at = r->pos;
        snprintf(r->ctx, sizeof r->ctx, "kv %llu", (unsigned long long)i);
        if (get_str(r, &kv->key, "key")) return -1;
        set_ctx(r, "kv", i, kv->key);
        if (check_name(r, kv->key, at, "key")) return -1;
        if (parse_value(r, kv)) return -1;
    }
    r->ctx[0] = 0;
    if (check_dup_keys(r, g)) return -1;

    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const struct md_gguf_kv *kv = &g->kv[i];
        if (!md_str_eq(kv->key, "general.alignment")) continue;
        set_ctx(r, "kv", i, kv->key);
        if (kv->type != MD_GGUF_UINT32)
            return fail(r, "type %s at offset %llu, must be uint32", md_gguf_vtype_name(kv->type),
                        (unsigned long long)(name_offset(g, kv->key) + 8 + kv->key.len));
        uint32_t a = ld32(kv->data);
        if (a == 0 || (a & (a - 1)))
            return fail(r, "alignment %u at offset %llu is not a power of 2", a,
                        (unsigned long long)(kv->data - g->base));
        g->alignment = a;
    }
    r->ctx[0] = 0;

    cap = 0;
    for (uint64_t i = 0; i < n_tensors; i++) {
        void *arr = g->tensors;
        if (grow(&arr, &cap, i, sizeof *g->tensors, n_tensors)) return fail_nomem(r);
        g->tensors = arr;
        struct md_gguf_tensor *t = &g->tensors[i];
        memset(t, 0, sizeof *t);
        g->n_tensors = i + 1;
        uint64_t at = r->pos;
        snprintf(r->ctx, sizeof r->ctx, "tensor %llu", (unsigned long long)i);
        if (get_str(r, &t->name, "tensor name")) return -1;
        set_ctx(r, "tensor", i, t->name);
        if (check_name(r, t->name, at, "tensor name")) return -1;
        if (parse_tensor_info(r, t)) return -1;
    }
    r->ctx[0] = 0;

    uint64_t pad = r->pos % g->alignment;
    g->data_offset = r->pos;
    if (pad && __builtin_add_overflow(r->pos, g->alignment - pad, &g->data_offset))
        return fail(r, "data section offset overflows");
    return check_tensors(r, g);
}

int md_gguf_open_memory(const void *data, size_t size, struct md_gguf **out,
                        char *err, size_t errlen)
{
    if (err && errlen) err[0] = 0;
    if (!out) return MD_ERR_INVALID;
    *out = NULL;
    struct rd r = { .p = data, .size = size, .err = err, .errlen = errlen, .status = MD_OK };
    if (!data && size) {
        fail_as(&r, MD_ERR_INVALID, "NULL buffer of %zu bytes", size);
        return r.status;
    }
    struct md_gguf *g = calloc(1, sizeof *g);
    if (!g) {
        fail_nomem(&r);
        return r.status;
    }
    g->base = data;
    g->size = size;
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (parse(&r, g)) {
        md_gguf_close(g);
        if (err && errlen && !err[0]) snprintf(err, errlen, "malformed GGUF");
        return r.status ? r.status : MD_ERR_FORMAT;
    }
    *out = g;
    return MD_OK;
}

/* ---- files ---------------------------------------------------------------- */

/* Why open() failed, cause first. */
static void open_error(int e, char *err, size_t errlen)
{
    if (e == ENOENT) snprintf(err, errlen, "no such file");
    else if (e == EACCES || e == EPERM) snprintf(err, errlen, "permission denied");
    else if (e == EISDIR) snprintf(err, errlen, "is a directory, not a GGUF file");
    else snprintf(err, errlen, "cannot open: %s", strerror(e));
}

/* Anything but a regular file, named: a path that cannot be a GGUF file. */
static const char *not_regular(mode_t m)
{
    if (S_ISDIR(m)) return "is a directory, not a GGUF file";
    if (S_ISFIFO(m)) return "not a regular file (a FIFO)";
    if (S_ISSOCK(m)) return "not a regular file (a socket)";
    if (S_ISCHR(m)) return "not a regular file (a character device)";
    if (S_ISBLK(m)) return "not a regular file (a block device)";
    return "not a regular file";
}

/* Open path for reading a regular file. MD_ERR_IO covers every way the
 * bytes cannot be had: missing, no permission, a directory, not a regular
 * file. O_NONBLOCK so that a FIFO is refused instead of waiting for a
 * writer (it does not change reads of a regular file). */
static int open_regular(const char *path, int *fd, uint64_t *size, char *err, size_t errlen)
{
    *fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (*fd < 0) {
        open_error(errno, err, errlen);
        return MD_ERR_IO;
    }
    struct stat st;
    const char *why = NULL;
    if (fstat(*fd, &st) != 0) why = strerror(errno);
    else if (!S_ISREG(st.st_mode)) why = not_regular(st.st_mode);
    else if ((uint64_t)st.st_size > SIZE_MAX) why = "too large to map on this machine";
    if (why) {
        snprintf(err, errlen, "%s", why);
        close(*fd);
        return MD_ERR_IO;
    }
    *size = (uint64_t)st.st_size;
    return MD_OK;
}

/* The whole file in a malloc'ed buffer (use_mmap = false). */
static int read_all(int fd, size_t size, void **buf, char *err, size_t errlen)
{
    uint8_t *p = malloc(size);
    if (!p) {
        snprintf(err, errlen, "out of memory reading %zu bytes", size);
        return MD_ERR_NOMEM;
    }
    size_t got = 0;
    while (got < size) {
        ssize_t k = pread(fd, p + got, size - got, (off_t)got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            if (k < 0) snprintf(err, errlen, "cannot read: %s", strerror(errno));
            else snprintf(err, errlen, "cannot read: the file shrank to %zu bytes while reading", got);
            free(p);
            return MD_ERR_IO;
        }
        got += (size_t)k;
    }
    *buf = p;
    return MD_OK;
}

/* The bytes of path, mapped or read, parsed. Messages are "<path>: <cause>". */
static int open_path(const char *path, bool map, struct md_gguf **out, char *err, size_t errlen)
{
    if (err && errlen) err[0] = 0;
    if (!out) return MD_ERR_INVALID;
    *out = NULL;
    if (!path) {
        if (err && errlen) snprintf(err, errlen, "no path given");
        return MD_ERR_INVALID;
    }
    char scratch[1];
    size_t k = md_gguf_err_path(path, err, errlen);
    char *msg = err && errlen ? err + k : scratch;
    size_t msglen = err && errlen ? errlen - k : sizeof scratch;
    int fd;
    uint64_t size;
    int rc = open_regular(path, &fd, &size, msg, msglen);
    if (rc) return rc;
    void *bytes = NULL;
    if (size == 0) {
        rc = MD_OK;   /* nothing to map: the parser names the empty file */
    } else if (map) {
        bytes = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (bytes == MAP_FAILED) {
            snprintf(msg, msglen, "cannot map the file: %s", strerror(errno));
            bytes = NULL;
            rc = MD_ERR_IO;
        }
    } else {
        rc = read_all(fd, (size_t)size, &bytes, msg, msglen);
    }
    close(fd);
    if (rc) return rc;
    struct md_gguf *g = NULL;
    rc = md_gguf_open_memory(bytes ? bytes : "", (size_t)size, &g, msg, msglen);
    size_t n = strlen(path) + 1;
    if (!rc && (g->path = malloc(n)) == NULL) {
        snprintf(msg, msglen, "out of memory");
        rc = MD_ERR_NOMEM;
    }
    if (g && g->path) memcpy(g->path, path, n);
    if (rc) {
        md_gguf_close(g);
        if (bytes && map) munmap(bytes, (size_t)size);
        else free(bytes);
        return rc;
    }
    g->owns = map ? MD_GGUF_MAPPED : MD_GGUF_READ;
    if (!bytes) g->owns = MD_GGUF_BORROWED;   /* the empty file: "" is static */
    *out = g;
    return MD_OK;
}

int md_gguf_open(const char *path, struct md_gguf **out, char *err, size_t errlen)
{
    return open_path(path, true, out, err, errlen);
}

int md_gguf_read(const char *path, struct md_gguf **out, char *err, size_t errlen)
{
    return open_path(path, false, out, err, errlen);
}

size_t md_gguf_err_path(const char *path, char *err, size_t errlen)
{
    if (!path || !err || errlen == 0) return 0;
    int k = snprintf(err, errlen, "%s: ", path);
    if (k < 0) return 0;
    return (size_t)k < errlen ? (size_t)k : errlen - 1;
}

void md_gguf_close(struct md_gguf *g)
{
    if (!g) return;
    if (g->kv)
        for (uint64_t i = 0; i < g->n_kv; i++)
            free(g->kv[i].str_offsets);
    free(g->kv);
    free(g->tensors);
    free(g->path);
    if (g->owns == MD_GGUF_MAPPED && g->base)
        munmap((void *)g->base, (size_t)g->size);
    else if (g->owns == MD_GGUF_READ)
        free((void *)g->base);
    free(g);
}

/* ---- lookups and getters ------------------------------------------------ */

const struct md_gguf_kv *md_gguf_find_kv(const struct md_gguf *g, const char *key)
{
    if (!g || !key) return NULL;
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (md_str_eq(g->kv[i].key, key))
            return &g->kv[i];
    return NULL;
}

const struct md_gguf_tensor *md_gguf_find_tensor(const struct md_gguf *g, const char *name)
{
    if (!g || !name) return NULL;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (md_str_eq(g->tensors[i].name, name))
            return &g->tensors[i];
    return NULL;
}

/* Integer value of an element of type t at p: signed types in *s (and
 * *is_signed = true), unsigned ones and bool in *u. Return -2 if t is not
 * an integer type. */
static int int_at(uint32_t t, const uint8_t *p, int64_t *s, uint64_t *u, bool *is_signed)
{
    *is_signed = false;
    switch (t) {
    case MD_GGUF_UINT8: case MD_GGUF_BOOL: *u = p[0]; return 0;
    case MD_GGUF_UINT16: *u = ld16(p); return 0;
    case MD_GGUF_UINT32: *u = ld32(p); return 0;
    case MD_GGUF_UINT64: *u = ld64(p); return 0;
    default: break;
    }
    *is_signed = true;
    switch (t) {
    case MD_GGUF_INT8: *s = (int8_t)p[0]; return 0;
    case MD_GGUF_INT16: *s = (int16_t)ld16(p); return 0;
    case MD_GGUF_INT32: *s = (int32_t)ld32(p); return 0;
    case MD_GGUF_INT64: *s = (int64_t)ld64(p); return 0;
    default: return -2;
    }
}

static int to_i64(uint32_t t, const uint8_t *p, int64_t *v)
{
    int64_t s = 0;
    uint64_t u = 0;
    bool sg;
    if (int_at(t, p, &s, &u, &sg)) return -2;
    if (sg) { *v = s; return 0; }
    if (u > (uint64_t)INT64_MAX) return -2;
    *v = (int64_t)u;
    return 0;
}

static int to_f32(uint32_t t, const uint8_t *p, float *v)
{
    if (t == MD_GGUF_FLOAT32) {
        uint32_t b = ld32(p);
        memcpy(v, &b, 4);
        return 0;
    }
    if (t == MD_GGUF_FLOAT64) {
        uint64_t b = ld64(p);
        double d;
        memcpy(&d, &b, 8);
        if (d == d && (d > FLT_MAX || d < -FLT_MAX) && d - d == 0.0) return -2; /* finite, out of range */
        *v = (float)d;
        return 0;
    }
    int64_t s = 0;
    uint64_t u = 0;
    bool sg;
    if (int_at(t, p, &s, &u, &sg)) return -2;
    *v = sg ? (float)s : (float)u;
    return 0;
}

static const struct md_gguf_kv *scalar(const struct md_gguf *g, const char *key, int *rc)
{
    const struct md_gguf_kv *kv = md_gguf_find_kv(g, key);
    *rc = !kv ? -1 : (kv->type == MD_GGUF_ARRAY || kv->type == MD_GGUF_STRING) ? -2 : 0;
    return *rc ? NULL : kv;
}

int md_gguf_get_u32(const struct md_gguf *g, const char *key, uint32_t *v)
{
    int rc;
    const struct md_gguf_kv *kv = scalar(g, key, &rc);
    if (!kv) return rc;
    int64_t s = 0;
    uint64_t u = 0;
    bool sg;
    if (int_at(kv->type, kv->data, &s, &u, &sg)) return -2;
    if (sg) {
        if (s < 0 || s > (int64_t)UINT32_MAX) return -2;
        u = (uint64_t)s;
    }
    if (u > UINT32_MAX) return -2;
    if (v) *v = (uint32_t)u;
    return 0;
}

int md_gguf_get_i64(const struct md_gguf *g, const char *key, int64_t *v)
{
    int rc;
    const struct md_gguf_kv *kv = scalar(g, key, &rc);
    if (!kv) return rc;
    int64_t x;
    if (to_i64(kv->type, kv->data, &x)) return -2;
    if (v) *v = x;
    return 0;
}

int md_gguf_get_f32(const struct md_gguf *g, const char *key, float *v)
{
    int rc;
    const struct md_gguf_kv *kv = scalar(g, key, &rc);
    if (!kv) return rc;
    float x;
    if (kv->type == MD_GGUF_BOOL || to_f32(kv->type, kv->data, &x)) return -2;
    if (v) *v = x;
    return 0;
}

int md_gguf_get_bool(const struct md_gguf *g, const char *key, bool *v)
{
    int rc;
    const struct md_gguf_kv *kv = scalar(g, key, &rc);
    if (!kv) return rc;
    int64_t x;
    if (to_i64(kv->type, kv->data, &x) || x < 0 || x > 1) return -2;
    if (v) *v = x != 0;
    return 0;
}

int md_gguf_get_str(const struct md_gguf *g, const char *key, struct md_str *v)
{
    const struct md_gguf_kv *kv = md_gguf_find_kv(g, key);
    if (!kv) return -1;
    if (kv->type != MD_GGUF_STRING) return -2;
    if (v) {
        v->len = ld64(kv->data);
        v->ptr = (const char *)kv->data + 8;
    }
    return 0;
}

int md_gguf_arr_str(const struct md_gguf_kv *kv, uint64_t i, struct md_str *v)
{
    if (!kv || kv->type != MD_GGUF_ARRAY || kv->arr_type != MD_GGUF_STRING || i >= kv->n ||
        !kv->str_offsets)
        return -2;
    const uint8_t *p = kv->data + kv->str_offsets[i];
    if (v) {
        v->len = ld64(p);
        v->ptr = (const char *)p + 8;
    }
    return 0;
}

int md_gguf_arr_f32(const struct md_gguf_kv *kv, uint64_t i, float *v)
{
    if (!kv || kv->type != MD_GGUF_ARRAY || i >= kv->n ||
        (kv->arr_type != MD_GGUF_FLOAT32 && kv->arr_type != MD_GGUF_FLOAT64))
        return -2;
    float x;
    if (to_f32(kv->arr_type, kv->data + i * md_gguf_vtype_size(kv->arr_type), &x)) return -2;
    if (v) *v = x;
    return 0;
}

int md_gguf_arr_i64(const struct md_gguf_kv *kv, uint64_t i, int64_t *v)
{
    if (!kv || kv->type != MD_GGUF_ARRAY || i >= kv->n)
        return -2;
    uint64_t sz = md_gguf_vtype_size(kv->arr_type);
    int64_t x;
    if (!sz || to_i64(kv->arr_type, kv->data + i * sz, &x)) return -2;
    if (v) *v = x;
    return 0;
}
