/* Small GGUF writer; see gguf-writer.h. */
#include "gguf-writer.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WRITER_DEFAULT_ALIGNMENT 32u
#define FILL_CHUNK (1u << 20)

struct wbuf {
    uint8_t *p;
    size_t n, cap;
};

struct wtensor {
    char *name;
    uint32_t type, n_dims;
    int64_t ne[MD_GGUF_MAX_DIMS];
    uint64_t nbytes;
    const void *data;
    md_gguf_fill_fn fill;
    void *user;
};

struct md_gguf_writer {
    uint32_t version;
    uint32_t alignment;
    struct wbuf meta;          /* the encoded kv pairs */
    uint64_t n_kv;
    char **keys;
    struct wtensor *t;
    uint64_t n_t, cap_t;
    int failed;
    char err[256];
};

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int werr(struct md_gguf_writer *w, const char *fmt, ...)
{
    if (!w->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(w->err, sizeof w->err, fmt, ap);
        va_end(ap);
        w->failed = 1;
    }
    return -1;
}

static int put(struct wbuf *b, const void *p, size_t n)
{
    if (n > SIZE_MAX - b->n) return -1;
    if (b->n + n > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n) {
            if (nc > SIZE_MAX / 2) { nc = b->n + n; break; }
            nc *= 2;
        }
        uint8_t *q = realloc(b->p, nc);
        if (!q) return -1;
        b->p = q;
        b->cap = nc;
    }
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
    return 0;
}

static void le(uint8_t *o, uint64_t v, int n)
{
    for (int i = 0; i < n; i++) o[i] = (uint8_t)(v >> (8 * i));
}

static int put_u32(struct wbuf *b, uint32_t v) { uint8_t o[4]; le(o, v, 4); return put(b, o, 4); }
static int put_u64(struct wbuf *b, uint64_t v) { uint8_t o[8]; le(o, v, 8); return put(b, o, 8); }
static int put_str(struct wbuf *b, const void *s, uint64_t len)
{
    if (len > SIZE_MAX) return -1;
    return put_u64(b, len) || put(b, s, (size_t)len);
}

/* Host scalar of type t at p, little-endian into b. */
static int put_scalar(struct wbuf *b, uint32_t t, const void *p)
{
    uint64_t n = md_gguf_vtype_size(t), v = 0;
    switch (n) {
    case 1: { uint8_t x; memcpy(&x, p, 1); v = x; break; }
    case 2: { uint16_t x; memcpy(&x, p, 2); v = x; break; }
    case 4: { uint32_t x; memcpy(&x, p, 4); v = x; break; }
    case 8: { uint64_t x; memcpy(&x, p, 8); v = x; break; }
    default: return -1;
    }
    uint8_t o[8];
    le(o, v, (int)n);
    return put(b, o, (size_t)n);
}

struct md_gguf_writer *md_gguf_writer_new(void)
{
    struct md_gguf_writer *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->version = 3;
    w->alignment = WRITER_DEFAULT_ALIGNMENT;
    return w;
}

void md_gguf_writer_free(struct md_gguf_writer *w)
{
    if (!w) return;
    free(w->meta.p);
    for (uint64_t i = 0; i < w->n_kv; i++) free(w->keys[i]);
    free(w->keys);
    for (uint64_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->t);
    free(w);
}

const char *md_gguf_writer_error(const struct md_gguf_writer *w)
{
    return w ? w->err : "no writer";
}

int md_gguf_writer_set_version(struct md_gguf_writer *w, uint32_t version)
{
    if (!w) return -1;
    if (version != 2 && version != 3) return werr(w, "version %u: only 2 and 3 can be written", version);
    w->version = version;
    return 0;
}

int md_gguf_writer_set_alignment(struct md_gguf_writer *w, uint32_t a)
{
    if (!w) return -1;
    if (a == 0 || (a & (a - 1))) return werr(w, "alignment %u is not a power of 2", a);
    w->alignment = a;
    return 0;
}

static int check_name(struct md_gguf_writer *w, const char *what, const char *name)
{
    if (!name || !name[0]) return werr(w, "%s: empty name", what);
    if (!md_utf8_valid(name, strlen(name))) return werr(w, "%s '%s': not valid UTF-8", what, name);
    return 0;
}

/* Validate a new key and start its record: key + type. */
static int begin_kv(struct md_gguf_writer *w, const char *key, uint32_t type)
{
    if (!w) return -1;
    if (check_name(w, "key", key)) return -1;
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->keys[i], key) == 0) return werr(w, "duplicate key '%s'", key);
    if (strcmp(key, "general.alignment") == 0)
        return werr(w, "general.alignment must be set with md_gguf_writer_set_alignment "
                       "or add_u32");
    char **k = realloc(w->keys, (size_t)(w->n_kv + 1) * sizeof *k);
    if (!k) return werr(w, "out of memory");
    w->keys = k;
    size_t kl = strlen(key);
    if (!(k[w->n_kv] = malloc(kl + 1))) return werr(w, "out of memory");
    memcpy(k[w->n_kv], key, kl + 1);
    w->n_kv++;
    if (put_str(&w->meta, key, kl) || put_u32(&w->meta, type)) return werr(w, "out of memory");
    return 0;
}

int md_gguf_writer_add_scalar(struct md_gguf_writer *w, const char *key, uint32_t vtype,
                              const void *value)
{
    if (!w) return -1;
    if (!md_gguf_vtype_size(vtype)) return werr(w, "key '%s': %s is not a scalar type", key ? key : "",
                                          md_gguf_vtype_name(vtype));
    if (!value) return werr(w, "key '%s': NULL value", key ? key : "");
    if (vtype == MD_GGUF_BOOL && *(const uint8_t *)value > 1)
        return werr(w, "key '%s': bool value %u", key ? key : "", *(const uint8_t *)value);
    if (key && strcmp(key, "general.alignment") == 0) {
        uint32_t a;
        if (vtype != MD_GGUF_UINT32) return werr(w, "general.alignment must be uint32");
        memcpy(&a, value, 4);
        return md_gguf_writer_set_alignment(w, a);
    }
    if (begin_kv(w, key, vtype)) return -1;
    if (put_scalar(&w->meta, vtype, value)) return werr(w, "out of memory");
    return 0;
}

#define ADDER(fn, ctype, vt) \
    int md_gguf_writer_add_##fn(struct md_gguf_writer *w, const char *key, ctype v) \
    { return md_gguf_writer_add_scalar(w, key, vt, &v); }
ADDER(u8, uint8_t, MD_GGUF_UINT8)
ADDER(i8, int8_t, MD_GGUF_INT8)
ADDER(u16, uint16_t, MD_GGUF_UINT16)
ADDER(i16, int16_t, MD_GGUF_INT16)
ADDER(u32, uint32_t, MD_GGUF_UINT32)
ADDER(i32, int32_t, MD_GGUF_INT32)
ADDER(u64, uint64_t, MD_GGUF_UINT64)
ADDER(i64, int64_t, MD_GGUF_INT64)
ADDER(f32, float, MD_GGUF_FLOAT32)
ADDER(f64, double, MD_GGUF_FLOAT64)
#undef ADDER

int md_gguf_writer_add_bool(struct md_gguf_writer *w, const char *key, bool v)
{
    uint8_t b = v ? 1 : 0;
    return md_gguf_writer_add_scalar(w, key, MD_GGUF_BOOL, &b);
}

int md_gguf_writer_add_str_n(struct md_gguf_writer *w, const char *key, const void *s, uint64_t len)
{
    if (!w) return -1;
    if (!s && len) return werr(w, "key '%s': NULL string", key ? key : "");
    if (begin_kv(w, key, MD_GGUF_STRING)) return -1;
    if (put_str(&w->meta, s ? s : "", len)) return werr(w, "out of memory");
    return 0;
}

int md_gguf_writer_add_str(struct md_gguf_writer *w, const char *key, const char *s)
{
    return md_gguf_writer_add_str_n(w, key, s, s ? strlen(s) : 0);
}

int md_gguf_writer_add_arr(struct md_gguf_writer *w, const char *key, uint32_t elem_type,
                           const void *elems, uint64_t n)
{
    if (!w) return -1;
    uint64_t sz = md_gguf_vtype_size(elem_type);
    if (!sz) return werr(w, "key '%s': arrays of %s are not written by add_arr", key ? key : "",
                         md_gguf_vtype_name(elem_type));
    if (!elems && n) return werr(w, "key '%s': NULL array", key ? key : "");
    if (elem_type == MD_GGUF_BOOL)
        for (uint64_t i = 0; i < n; i++)
            if (((const uint8_t *)elems)[i] > 1) return werr(w, "key '%s': bool element %llu is %u",
                key ? key : "", (unsigned long long)i, ((const uint8_t *)elems)[i]);
    if (begin_kv(w, key, MD_GGUF_ARRAY)) return -1;
    if (put_u32(&w->meta, elem_type) || put_u64(&w->meta, n)) return werr(w, "out of memory");
    for (uint64_t i = 0; i < n; i++)
        if (put_scalar(&w->meta, elem_type, (const uint8_t *)elems + i * sz))
            return werr(w, "out of memory");
    return 0;
}

int md_gguf_writer_add_arr_f32(struct md_gguf_writer *w, const char *key, const float *v, uint64_t n)
{
    return md_gguf_writer_add_arr(w, key, MD_GGUF_FLOAT32, v, n);
}

int md_gguf_writer_add_arr_i32(struct md_gguf_writer *w, const char *key, const int32_t *v, uint64_t n)
{
    return md_gguf_writer_add_arr(w, key, MD_GGUF_INT32, v, n);
}

int md_gguf_writer_add_arr_str(struct md_gguf_writer *w, const char *key,
                               const char *const *strs, uint64_t n)
{
    if (!w) return -1;
    if (!strs && n) return werr(w, "key '%s': NULL array", key ? key : "");
    for (uint64_t i = 0; i < n; i++)
        if (!strs[i]) return werr(w, "key '%s': string %llu is NULL", key ? key : "",
                                  (unsigned long long)i);
    if (begin_kv(w, key, MD_GGUF_ARRAY)) return -1;
    if (put_u32(&w->meta, MD_GGUF_STRING) || put_u64(&w->meta, n)) return werr(w, "out of memory");
    for (uint64_t i = 0; i < n; i++)
        if (put_str(&w->meta, strs[i], strlen(strs[i]))) return werr(w, "out of memory");
    return 0;
}

static int add_tensor(struct md_gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                      const int64_t *ne, const void *data, md_gguf_fill_fn fill, void *user)
{
    if (!w) return -1;
    if (check_name(w, "tensor", name)) return -1;
    for (uint64_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0) return werr(w, "duplicate tensor '%s'", name);
    int64_t blck, bbytes;
    if (!md_type_layout(type, &blck, &bbytes))
        return werr(w, "tensor '%s': unknown type %u", name, type);
    if (n_dims < 1 || n_dims > MD_GGUF_MAX_DIMS || !ne)
        return werr(w, "tensor '%s': n_dims %u not in 1..%d", name, n_dims, MD_GGUF_MAX_DIMS);
    struct wtensor t = { .type = type, .n_dims = n_dims, .data = data, .fill = fill, .user = user };
    int64_t rows = 1;
    for (int j = 0; j < MD_GGUF_MAX_DIMS; j++) {
        t.ne[j] = (uint32_t)j < n_dims ? ne[j] : 1;
        if (t.ne[j] < 0) return werr(w, "tensor '%s': ne[%d] = %lld", name, j, (long long)t.ne[j]);
        if (j > 0 && __builtin_mul_overflow(rows, t.ne[j], &rows))
            return werr(w, "tensor '%s': size overflows", name);
    }
    int64_t rb, nb;
    if (t.ne[0] % blck) return werr(w, "tensor '%s': ne[0] = %lld is not a multiple of the %s block size",
                                    name, (long long)t.ne[0], md_ggml_type_name(type));
    if (__builtin_mul_overflow(t.ne[0] / blck, bbytes, &rb) ||
        __builtin_mul_overflow(rb, rows, &nb) || (uint64_t)nb > (UINT64_MAX >> 2))
        return werr(w, "tensor '%s': size overflows", name);
    t.nbytes = (uint64_t)nb;
    if (w->n_t == w->cap_t) {
        uint64_t nc = w->cap_t ? 2 * w->cap_t : 16;
        struct wtensor *p = realloc(w->t, (size_t)nc * sizeof *p);
        if (!p) return werr(w, "out of memory");
        w->t = p;
        w->cap_t = nc;
    }
    size_t nl = strlen(name);
    if (!(t.name = malloc(nl + 1))) return werr(w, "out of memory");
    memcpy(t.name, name, nl + 1);
    w->t[w->n_t++] = t;
    return 0;
}

int md_gguf_writer_add_tensor(struct md_gguf_writer *w, const char *name, uint32_t type,
                              uint32_t n_dims, const int64_t *ne, const void *data)
{
    return add_tensor(w, name, type, n_dims, ne, data, NULL, NULL);
}

int md_gguf_writer_add_tensor_fill(struct md_gguf_writer *w, const char *name, uint32_t type,
                                   uint32_t n_dims, const int64_t *ne,
                                   md_gguf_fill_fn fill, void *user)
{
    if (w && !fill) return werr(w, "tensor '%s': NULL fill function", name ? name : "");
    return add_tensor(w, name, type, n_dims, ne, NULL, fill, user);
}

static uint64_t pad_to(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/* Encoded header, kv pairs and tensor infos (without the final padding). */
static int encode_head(struct md_gguf_writer *w, struct wbuf *b)
{
    int align_kv = w->alignment != WRITER_DEFAULT_ALIGNMENT;
    int e = 0;
    e |= put(b, "GGUF", 4);
    e |= put_u32(b, w->version);
    e |= put_u64(b, w->n_t);
    e |= put_u64(b, w->n_kv + (uint64_t)align_kv);
    if (align_kv) {
        e |= put_str(b, "general.alignment", 17);
        e |= put_u32(b, MD_GGUF_UINT32);
        e |= put_u32(b, w->alignment);
    }
    e |= put(b, w->meta.p, w->meta.n);
    uint64_t off = 0;
    for (uint64_t i = 0; i < w->n_t; i++) {
        const struct wtensor *t = &w->t[i];
        e |= put_str(b, t->name, strlen(t->name));
        e |= put_u32(b, t->n_dims);
        for (uint32_t j = 0; j < t->n_dims; j++) e |= put_u64(b, (uint64_t)t->ne[j]);
        e |= put_u32(b, t->type);
        e |= put_u64(b, off);
        off += pad_to(t->nbytes, w->alignment);
    }
    return e ? werr(w, "out of memory") : 0;
}

static int total_size(struct md_gguf_writer *w, uint64_t head, uint64_t *total)
{
    uint64_t s = pad_to(head, w->alignment);
    for (uint64_t i = 0; i < w->n_t; i++) {
        uint64_t p = pad_to(w->t[i].nbytes, w->alignment);
        if (__builtin_add_overflow(s, p, &s)) return werr(w, "file size overflows");
    }
    *total = s;
    return 0;
}

uint64_t md_gguf_writer_size(struct md_gguf_writer *w)
{
    if (!w || w->failed) return 0;
    struct wbuf b = { 0 };
    uint64_t total = 0;
    if (encode_head(w, &b) || total_size(w, b.n, &total)) total = 0;
    free(b.p);
    return total;
}

/* Output: either a FILE or a memory buffer of known size. */
struct sink {
    FILE *f;
    uint8_t *mem;
    uint64_t pos;
    int failed;
};

static void emit(struct sink *s, const void *p, uint64_t n)
{
    if (s->failed || !n) return;
    if (s->f) {
        if (fwrite(p, 1, (size_t)n, s->f) != n) s->failed = 1;
    } else {
        memcpy(s->mem + s->pos, p, (size_t)n);
    }
    s->pos += n;
}

static void emit_zeros(struct sink *s, uint64_t n)
{
    static const uint8_t zeros[4096];
    if (!s->f) {
        if (!s->failed && n) memset(s->mem + s->pos, 0, (size_t)n);
        s->pos += n;
        return;
    }
    while (n) {
        uint64_t k = n < sizeof zeros ? n : sizeof zeros;
        emit(s, zeros, k);
        n -= k;
    }
}

static int emit_all(struct md_gguf_writer *w, struct sink *s, const struct wbuf *head)
{
    uint8_t *chunk = NULL;
    emit(s, head->p, head->n);
    emit_zeros(s, pad_to(head->n, w->alignment) - head->n);
    for (uint64_t i = 0; i < w->n_t; i++) {
        const struct wtensor *t = &w->t[i];
        if (t->data) {
            emit(s, t->data, t->nbytes);
        } else if (t->fill && !s->f) {
            for (uint64_t o = 0; o < t->nbytes; o += FILL_CHUNK) {
                uint64_t k = t->nbytes - o < FILL_CHUNK ? t->nbytes - o : FILL_CHUNK;
                t->fill(t->user, s->mem + s->pos, o, k);
                s->pos += k;
            }
        } else if (t->fill) {
            if (!chunk && !(chunk = malloc(FILL_CHUNK))) {
                s->failed = 1;
                break;
            }
            for (uint64_t o = 0; o < t->nbytes && !s->failed; o += FILL_CHUNK) {
                uint64_t k = t->nbytes - o < FILL_CHUNK ? t->nbytes - o : FILL_CHUNK;
                t->fill(t->user, chunk, o, k);
                emit(s, chunk, k);
            }
        } else {
            emit_zeros(s, t->nbytes);
        }
        emit_zeros(s, pad_to(t->nbytes, w->alignment) - t->nbytes);
    }
    free(chunk);
    return s->failed ? -1 : 0;
}

static int report(const struct md_gguf_writer *w, char *err, size_t errlen)
{
    if (err && errlen) snprintf(err, errlen, "%s", w ? w->err : "no writer");
    return -1;
}

int md_gguf_writer_write_mem(struct md_gguf_writer *w, void **buf, size_t *size,
                             char *err, size_t errlen)
{
    if (err && errlen) err[0] = 0;
    if (!w || !buf || !size) return report(w, err, errlen);
    *buf = NULL;
    *size = 0;
    if (w->failed) return report(w, err, errlen);
    struct wbuf head = { 0 };
    uint64_t total = 0;
    if (encode_head(w, &head) || total_size(w, head.n, &total)) {
        free(head.p);
        return report(w, err, errlen);
    }
    if (total > SIZE_MAX) {
        free(head.p);
        werr(w, "file size %llu does not fit in memory", (unsigned long long)total);
        return report(w, err, errlen);
    }
    uint8_t *mem = malloc(total ? (size_t)total : 1);
    if (!mem) {
        free(head.p);
        if (err && errlen) snprintf(err, errlen, "out of memory for %llu bytes",
                                    (unsigned long long)total);
        return -1;
    }
    struct sink s = { .mem = mem };
    emit_all(w, &s, &head);
    free(head.p);
    *buf = mem;
    *size = (size_t)total;
    return 0;
}

int md_gguf_writer_write_file(struct md_gguf_writer *w, const char *path, char *err, size_t errlen)
{
    if (err && errlen) err[0] = 0;
    if (!w || !path) return report(w, err, errlen);
    if (w->failed) return report(w, err, errlen);
    struct wbuf head = { 0 };
    uint64_t total = 0;
    if (encode_head(w, &head) || total_size(w, head.n, &total)) {
        free(head.p);
        return report(w, err, errlen);
    }
    FILE *f = fopen(path, "wb");
    if (!f) {
        if (err && errlen) snprintf(err, errlen, "%s: %s", path, strerror(errno));
        free(head.p);
        return -1;
    }
    struct sink s = { .f = f };
    int rc = emit_all(w, &s, &head);
    free(head.p);
    if (fclose(f) != 0) rc = -1;
    if (rc) {
        if (err && errlen) snprintf(err, errlen, "%s: write failed", path);
        remove(path);
        return -1;
    }
    return 0;
}
