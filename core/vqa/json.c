/* A strict JSON reader for the library (schemas, constrained answers):
 * RFC 8259, recursive with a depth limit, the text capped in size. Numbers
 * are kept as int64 when they are integers that fit, else only their type
 * (nothing here needs their value). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar.h"
#include "unicode.h"

struct reader {
    const char *s;
    size_t len, at;
    int depth;
    char *err;
    size_t errlen;
    bool failed;
};

static int fail(struct reader *r, const char *what)
{
    if (!r->failed)
        snprintf(r->err, r->errlen, "at byte %zu: %s", r->at, what);
    r->failed = true;
    return MD_ERR_INVALID;
}

static void skip_space(struct reader *r)
{
    while (r->at < r->len && strchr(" \t\r\n", r->s[r->at]) && r->s[r->at])
        r->at++;
}

static bool take(struct reader *r, char c)
{
    if (r->at < r->len && r->s[r->at] == c) {
        r->at++;
        return true;
    }
    return false;
}

static int hex4(struct reader *r, uint32_t *out)
{
    *out = 0;
    for (int i = 0; i < 4; i++, r->at++) {
        char c = r->at < r->len ? r->s[r->at] : '\0';
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return fail(r, "a \\u escape needs four hex digits");
        *out = *out << 4 | (uint32_t)d;
    }
    return MD_OK;
}

/* The code point of an escape after its backslash (surrogate pairs joined). */
static int escape(struct reader *r, uint32_t *cp)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    char c = r->at < r->len ? r->s[r->at] : '\0';
    const char *k = c ? strchr(from, c) : NULL;
    r->at++;
    if (k) {
        *cp = (uint8_t)to[k - from];
        return MD_OK;
    }
    if (c != 'u')
        return fail(r, "unknown escape in a string");
    if (hex4(r, cp))
        return MD_ERR_INVALID;
    if (*cp >= 0xdc00 && *cp <= 0xdfff)
        return fail(r, "a lone low surrogate in a \\u escape");
    if (*cp < 0xd800 || *cp > 0xdbff)
        return *cp ? MD_OK : fail(r, "\\u0000 is not allowed in a string");
    uint32_t lo;
    if (!take(r, '\\') || !take(r, 'u') || hex4(r, &lo) || lo < 0xdc00 || lo > 0xdfff)
        return fail(r, "a high surrogate without its low surrogate");
    *cp = 0x10000 + ((*cp - 0xd800) << 10) + (lo - 0xdc00);
    return MD_OK;
}

/* A string after its opening quote; *out owned. The decoded text is never
 * longer than the source, so one buffer of that size holds it. */
static int string(struct reader *r, char **out)
{
    size_t start = r->at, end = start;
    while (end < r->len && r->s[end] != '"')
        end += r->s[end] == '\\' ? 2 : 1;
    if (end >= r->len)
        return fail(r, "an unterminated string");
    char *o = malloc(end - start + 1);
    if (!o)
        return MD_ERR_NOMEM;
    size_t n = 0;
    while (r->s[r->at] != '"') {
        uint8_t c = (uint8_t)r->s[r->at];
        uint32_t cp;
        if (c < 0x20) {
            free(o);
            return fail(r, "a control character in a string");
        }
        if (c == '\\') {
            r->at++;
            if (escape(r, &cp)) {
                free(o);
                return MD_ERR_INVALID;
            }
            n += md_utf8_encode(cp, (uint8_t *)o + n);
            continue;
        }
        size_t k = md_utf8_decode((const uint8_t *)r->s + r->at, r->len - r->at, &cp);
        if (!k || cp == MD_CP_INVALID) {
            free(o);
            return fail(r, "invalid UTF-8 in a string");
        }
        memcpy(o + n, r->s + r->at, k);
        n += k;
        r->at += k;
    }
    r->at++;
    o[n] = '\0';
    *out = o;
    return MD_OK;
}

static bool digit(const struct reader *r)
{
    return r->at < r->len && r->s[r->at] >= '0' && r->s[r->at] <= '9';
}

static int number(struct reader *r, struct md_json *j)
{
    bool neg = take(r, '-'), big = false;
    if (!digit(r))
        return fail(r, "a number needs a digit");
    uint64_t mag = 0;
    bool lead_zero = r->s[r->at] == '0';
    size_t first = r->at;
    while (digit(r)) {
        uint64_t d = (uint64_t)(r->s[r->at++] - '0');
        big = big || mag > (UINT64_MAX - d) / 10;
        mag = mag * 10 + d;
    }
    if (lead_zero && r->at - first > 1)
        return fail(r, "a number with a leading zero");
    bool frac = take(r, '.');
    if (frac && !digit(r))
        return fail(r, "a fraction needs a digit");
    while (digit(r))
        r->at++;
    bool expo = r->at < r->len && (r->s[r->at] == 'e' || r->s[r->at] == 'E');
    if (expo) {
        r->at++;
        if (!take(r, '+'))
            take(r, '-');
        if (!digit(r))
            return fail(r, "an exponent needs a digit");
        while (digit(r))
            r->at++;
    }
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    j->type = frac || expo || big || mag > limit ? MD_JSON_NUMBER : MD_JSON_INT;
    if (j->type == MD_JSON_INT)
        j->integer = neg ? (mag == limit ? INT64_MIN : -(int64_t)mag) : (int64_t)mag;
    return MD_OK;
}

static bool word(struct reader *r, const char *w)
{
    size_t n = strlen(w);
    if (r->len - r->at < n || memcmp(r->s + r->at, w, n))
        return false;
    r->at += n;
    return true;
}

static int value(struct reader *r, struct md_json *j);

/* Grow an array or object by one slot. */
static int grow(struct md_json *j, int32_t *cap, bool keys)
{
    if (j->n < *cap)
        return MD_OK;
    int32_t c = *cap ? *cap * 2 : 4;
    struct md_json *it = realloc(j->items, sizeof *it * (size_t)c);
    if (!it)
        return MD_ERR_NOMEM;
    j->items = it;
    if (keys) {
        char **k = realloc(j->keys, sizeof *k * (size_t)c);
        if (!k)
            return MD_ERR_NOMEM;
        j->keys = k;
    }
    *cap = c;
    return MD_OK;
}

static int members(struct reader *r, struct md_json *j, bool object)
{
    char close = object ? '}' : ']';
    int32_t cap = 0;
    skip_space(r);
    if (take(r, close))
        return MD_OK;
    for (;;) {
        int rc = grow(j, &cap, object);
        if (rc)
            return rc;
        char *key = NULL;
        skip_space(r);
        if (object) {
            if (!take(r, '"'))
                return fail(r, "an object member needs a name in quotes");
            if ((rc = string(r, &key)))
                return rc;
            if (md_json_get(j, key)) {
                free(key);
                return fail(r, "a duplicate member name");
            }
            skip_space(r);
            if (!take(r, ':')) {
                free(key);
                return fail(r, "':' expected after a member name");
            }
            j->keys[j->n] = key;
        }
        memset(&j->items[j->n], 0, sizeof j->items[j->n]);
        j->n++;
        if ((rc = value(r, &j->items[j->n - 1])))
            return rc;
        skip_space(r);
        if (take(r, close))
            return MD_OK;
        if (!take(r, ','))
            return fail(r, object ? "',' or '}' expected" : "',' or ']' expected");
    }
}

static int value(struct reader *r, struct md_json *j)
{
    skip_space(r);
    if (r->at >= r->len)
        return fail(r, "a value expected, the text ended");
    char c = r->s[r->at];
    if (c == '{' || c == '[') {
        if (++r->depth > MD_JSON_MAX_DEPTH)
            return fail(r, "nested deeper than 32");
        r->at++;
        j->type = c == '{' ? MD_JSON_OBJECT : MD_JSON_ARRAY;
        int rc = members(r, j, c == '{');
        r->depth--;
        return rc;
    }
    if (c == '"') {
        r->at++;
        j->type = MD_JSON_STRING;
        return string(r, &j->string);
    }
    if (c == '-' || (c >= '0' && c <= '9'))
        return number(r, j);
    if (word(r, "true") || word(r, "false")) {
        j->type = MD_JSON_BOOL;
        j->boolean = c == 't';
        return MD_OK;
    }
    if (word(r, "null")) {
        j->type = MD_JSON_NULL;
        return MD_OK;
    }
    return fail(r, "a value expected");
}

static void clear(struct md_json *j)
{
    for (int32_t i = 0; i < j->n; i++) {
        clear(&j->items[i]);
        if (j->keys)
            free(j->keys[i]);
    }
    free(j->items);
    free(j->keys);
    free(j->string);
}

void md_json_free(struct md_json *j)
{
    if (j)
        clear(j);
    free(j);
}

int md_json_parse(const char *text, size_t len, struct md_json **out, char *err, size_t errlen)
{
    char scratch[8];
    if (!err || !errlen) {
        err = scratch;
        errlen = sizeof scratch;
    }
    *out = NULL;
    if (!text) {
        snprintf(err, errlen, "no text");
        return MD_ERR_INVALID;
    }
    if (len > MD_JSON_MAX_BYTES) {
        snprintf(err, errlen, "the text is %zu bytes, more than %d", len, MD_JSON_MAX_BYTES);
        return MD_ERR_INVALID;
    }
    struct md_json *j = calloc(1, sizeof *j);
    if (!j)
        return MD_ERR_NOMEM;
    struct reader r = { .s = text, .len = len, .err = err, .errlen = errlen };
    int rc = value(&r, j);
    skip_space(&r);
    if (!rc && r.at < r.len)
        rc = fail(&r, "text after the value");
    if (rc) {
        if (rc == MD_ERR_NOMEM)
            snprintf(err, errlen, "out of memory");
        md_json_free(j);
        return rc;
    }
    *out = j;
    return MD_OK;
}

const struct md_json *md_json_get(const struct md_json *obj, const char *key)
{
    for (int32_t i = 0; obj && obj->type == MD_JSON_OBJECT && i < obj->n; i++)
        if (obj->keys[i] && !strcmp(obj->keys[i], key))
            return &obj->items[i];
    return NULL;
}
