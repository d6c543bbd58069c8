/* GGUF v2/v3 reader (see gguf.h and shared/reference/engine.md §1.1-1.2).
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

struct rd {
    const uint8_t *p;
    uint64_t size;
    uint64_t pos;
    char *err;
    size_t errlen;
    char ctx[320];      /* "kv 3 'general.name'" etc., prefixed to errors */
};

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int fail(struct rd *r, const char *fmt, ...)
{
    if (!r->err || r->errlen == 0)
        return -1;
    size_t off = 0;
    if (r->ctx[0]) {
        int k = snprintf(r->err, r->errlen, "%s: ", r->ctx);
        off = k < 0 ? 0 : (size_t)k;
        if (off >= r->errlen) return -1;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err + off, r->errlen - off, fmt, ap);
    va_end(ap);
    return -1;
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
        return fail(r, "truncated: %s at offset %llu needs %llu bytes, %llu left",
                    what, (unsigned long long)r->pos, (unsigned long long)n,
                    (unsigned long long)left(r));
    return 0;
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
        return fail(r, "%s at offset %llu: length %llu exceeds the %llu bytes left",
                    what, (unsigned long long)at, (unsigned long long)len,
                    (unsigned long long)left(r));
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
        return fail(r, "array of arrays at offset %llu is not supported", (unsigned long long)at);
    if (kv->arr_type >= MD_GGUF_VTYPE_COUNT)
        return fail(r, "unknown array element type %u at offset %llu", kv->arr_type,
                    (unsigned long long)at);
    at = r->pos;
    if (get_u64(r, &kv->n, "array count")) return -1;
    kv->data = r->p + r->pos;

    if (kv->arr_type != MD_GGUF_STRING) {
        uint64_t sz = md_gguf_vtype_size(kv->arr_type);
        if (kv->n > left(r) / sz)
            return fail(r, "array of %llu %s (count at offset %llu) exceeds the %llu bytes left",
                        (unsigned long long)kv->n, md_gguf_vtype_name(kv->arr_type),
                        (unsigned long long)at, (unsigned long long)left(r));
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
        return fail(r, "array of %llu strings (count at offset %llu) exceeds the %llu bytes left",
                    (unsigned long long)kv->n, (unsigned long long)at,
                    (unsigned long long)left(r));
    uint64_t start = r->pos;
    for (uint64_t i = 0; i < kv->n; i++) {
        uint64_t sat = r->pos, len;
        if (left(r) < 8)
            return fail(r, "truncated: string %llu of %llu at offset %llu needs 8 bytes, %llu left",
                        (unsigned long long)i, (unsigned long long)kv->n,
                        (unsigned long long)sat, (unsigned long long)left(r));
        len = ld64(r->p + r->pos);
        r->pos += 8;
        if (len > left(r))
            return fail(r, "string %llu of %llu at offset %llu: length %llu exceeds the %llu bytes left",
                        (unsigned long long)i, (unsigned long long)kv->n,
                        (unsigned long long)sat, (unsigned long long)len,
                        (unsigned long long)left(r));
        r->pos += len;
    }
    if (kv->n == 0)
        return 0;
    kv->str_offsets = malloc((size_t)kv->n * sizeof *kv->str_offsets);
    if (!kv->str_offsets)
        return fail(r, "out of memory for %llu string offsets", (unsigned long long)kv->n);
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
    if (!v) return fail(r, "out of memory");
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
    if (!md_type_layout(t->type, &blck, &bbytes))
        return fail(r, "unknown tensor type %u at offset %llu", t->type, (unsigned long long)at);
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

static int check_tensors(struct rd *r, struct md_gguf *g)
{
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        struct md_gguf_tensor *t = &g->tensors[i];
        uint64_t abs_off, end;
        set_ctx(r, "tensor", i, t->name);
        if (t->offset % g->alignment)
            return fail(r, "offset %llu is not a multiple of the alignment %u",
                        (unsigned long long)t->offset, g->alignment);
        if (__builtin_add_overflow(g->data_offset, t->offset, &abs_off) ||
            __builtin_add_overflow(abs_off, t->nbytes, &end) || end > g->size)
            return fail(r, "data at %llu + offset %llu + %llu bytes exceeds file size %llu",
                        (unsigned long long)g->data_offset, (unsigned long long)t->offset,
                        (unsigned long long)t->nbytes, (unsigned long long)g->size);
        t->data = g->base + abs_off;
    }
    r->ctx[0] = 0;
    if (g->n_tensors < 2) return 0;

    const struct md_gguf_tensor **v = malloc((size_t)g->n_tensors * sizeof *v);
    if (!v) return fail(r, "out of memory");
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

static int parse(struct rd *r, struct md_gguf *g)
{
    if (r->size < 4 || memcmp(r->p, GGUF_MAGIC, 4) != 0) {
        if (r->size < 4 && memcmp(r->p ? (const void *)r->p : "", GGUF_MAGIC, (size_t)r->size) == 0)
            return fail(r, "truncated: magic at offset 0 needs 4 bytes, %llu left",
                        (unsigned long long)r->size);
        char shown[32];
        show_name(shown, sizeof shown, r->p, r->size < 4 ? r->size : 4);
        return fail(r, "bad magic '%s' at offset 0: not a GGUF file", shown);
    }
    r->pos = 4;
    if (get_u32(r, &g->version, "version")) return -1;
    if (g->version == 1)
        return fail(r, "GGUF version 1 (offset 4) is not supported: only v2 and v3 are; "
                       "reconvert the file with a current llama.cpp");
    if (g->version != 2 && g->version != 3) {
        uint32_t sw = __builtin_bswap32(g->version);
        return fail(r, "GGUF version %u at offset 4 is not supported (only v2 and v3)%s",
                    g->version, (sw >= 1 && sw <= 3) ? "; the file looks big-endian" : "");
    }
    uint64_t n_tensors, n_kv;
    if (get_u64(r, &n_tensors, "tensor count")) return -1;
    if (get_u64(r, &n_kv, "kv count")) return -1;
    if (n_tensors > (uint64_t)INT64_MAX)
        return fail(r, "tensor count %lld at offset 8 is negative", (long long)(int64_t)n_tensors);
    if (n_kv > (uint64_t)INT64_MAX)
        return fail(r, "kv count %lld at offset 16 is negative", (long long)(int64_t)n_kv);
    if (n_kv > left(r) / MIN_KV_BYTES)
        return fail(r, "kv count %llu at offset 16 exceeds what the %llu bytes left can hold",
                    (unsigned long long)n_kv, (unsigned long long)left(r));
    if (n_tensors > (left(r) - n_kv * MIN_KV_BYTES) / MIN_TENSOR_BYTES)
        return fail(r, "tensor count %llu at offset 8 exceeds what the %llu bytes left can hold "
                       "(with %llu kv pairs)", (unsigned long long)n_tensors,
                    (unsigned long long)left(r), (unsigned long long)n_kv);

    uint64_t cap = 0;
    for (uint64_t i = 0; i < n_kv; i++) {
        void *arr = g->kv;
        if (grow(&arr, &cap, i, sizeof *g->kv, n_kv)) return fail(r, "out of memory");
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
        if (grow(&arr, &cap, i, sizeof *g->tensors, n_tensors)) return fail(r, "out of memory");
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
    if (!out) return -1;
    *out = NULL;
    struct rd r = { .p = data, .size = size, .err = err, .errlen = errlen };
    if (!data && size) return fail(&r, "NULL buffer of %zu bytes", size);
    struct md_gguf *g = calloc(1, sizeof *g);
    if (!g) return fail(&r, "out of memory");
    g->base = data;
    g->size = size;
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (parse(&r, g)) {
        md_gguf_close(g);
        if (err && errlen && !err[0]) snprintf(err, errlen, "invalid GGUF");
        return -1;
    }
    *out = g;
    return 0;
}

int md_gguf_open(const char *path, struct md_gguf **out, char *err, size_t errlen)
{
    if (err && errlen) err[0] = 0;
    if (!out) return -1;
    *out = NULL;
    if (!path) {
        if (err && errlen) snprintf(err, errlen, "no path given");
        return -1;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (err && errlen) snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    const char *why = NULL;
    if (fstat(fd, &st) != 0) why = strerror(errno);
    else if (!S_ISREG(st.st_mode)) why = "not a regular file";
    else if (st.st_size <= 0) why = "empty file";
    else if ((uint64_t)st.st_size > SIZE_MAX) why = "file too large to map";
    if (why) {
        if (err && errlen) snprintf(err, errlen, "%s: %s", path, why);
        close(fd);
        return -1;
    }
    size_t size = (size_t)st.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) {
        if (err && errlen) snprintf(err, errlen, "%s: mmap: %s", path, strerror(e));
        return -1;
    }
    struct md_gguf *g = NULL;
    if (md_gguf_open_memory(map, size, &g, err, errlen)) {
        munmap(map, size);
        return -1;
    }
    g->owns_map = 1;
    *out = g;
    return 0;
}

void md_gguf_close(struct md_gguf *g)
{
    if (!g) return;
    if (g->kv)
        for (uint64_t i = 0; i < g->n_kv; i++)
            free(g->kv[i].str_offsets);
    free(g->kv);
    free(g->tensors);
    if (g->owns_map && g->base)
        munmap((void *)g->base, (size_t)g->size);
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
