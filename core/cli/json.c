/* Strict flat-object JSON reader and string writer: see json.h. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

#define JSON_MAX_DEPTH 64

struct parser {
    const char *s;
    size_t n, i;
    char *err;
    size_t errlen;
    bool failed;
};

static int fail(struct parser *p, const char *fmt, ...)
{
    if (!p->failed) {
        int w = snprintf(p->err, p->errlen, "column %zu: ", p->i + 1);
        va_list ap;
        va_start(ap, fmt);
        if (w >= 0 && (size_t)w < p->errlen)
            vsnprintf(p->err + w, p->errlen - (size_t)w, fmt, ap);
        va_end(ap);
        p->failed = true;
    }
    return -1;
}

static void skip_ws(struct parser *p)
{
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' ||
                           p->s[p->i] == '\r'))
        p->i++;
}

static int peek(const struct parser *p)
{
    return p->i < p->n ? (unsigned char)p->s[p->i] : -1;
}

static int hex4(struct parser *p, uint32_t *out)
{
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        int c = peek(p);
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return fail(p, "bad \\u escape: expected 4 hex digits");
        v = v * 16 + (uint32_t)d;
        p->i++;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A string at p->i (the opening quote); *out (malloc'd) when out != NULL. */
static int parse_string(struct parser *p, char **out)
{
    if (peek(p) != '"')
        return fail(p, "expected a string");
    p->i++;
    /* the decoded text is never longer than the source */
    char *buf = out ? malloc(p->n - p->i + 1) : NULL;
    if (out && !buf)
        return fail(p, "out of memory");
    size_t o = 0;
    for (;;) {
        int c = peek(p);
        if (c < 0) { free(buf); return fail(p, "unterminated string"); }
        if (c == '"') { p->i++; break; }
        if (c < 0x20) { free(buf); return fail(p, "control character 0x%02x in a string (escape it)", c); }
        if (c != '\\') {
            if (buf) buf[o++] = (char)c;
            p->i++;
            continue;
        }
        p->i++;
        int e = peek(p);
        const char *simple = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
        const char *hit = e > 0 ? strchr(simple, e) : NULL;
        if (hit) {
            if (buf) buf[o++] = to[hit - simple];
            p->i++;
            continue;
        }
        if (e != 'u') { free(buf); return fail(p, "bad escape '\\%c'", e > 0x20 && e < 0x7f ? e : '?'); }
        p->i++;
        uint32_t cp = 0;
        if (hex4(p, &cp)) { free(buf); return -1; }
        if (cp >= 0xDC00 && cp <= 0xDFFF) { free(buf); return fail(p, "lone low surrogate \\u%04X", cp); }
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            uint32_t lo = 0;
            if (peek(p) != '\\' || p->i + 1 >= p->n || p->s[p->i + 1] != 'u') {
                free(buf);
                return fail(p, "high surrogate \\u%04X without its low half", cp);
            }
            p->i += 2;
            if (hex4(p, &lo)) { free(buf); return -1; }
            if (lo < 0xDC00 || lo > 0xDFFF) { free(buf); return fail(p, "bad low surrogate \\u%04X", lo); }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        if (cp == 0) { free(buf); return fail(p, "\\u0000 in a string is not supported"); }
        /* a 6- or 12-byte escape never decodes to more bytes than it takes */
        if (buf) o += put_utf8(buf + o, cp);
    }
    if (buf) { buf[o] = '\0'; *out = buf; }
    return 0;
}

static int parse_number(struct parser *p, double *out)
{
    size_t start = p->i;
    if (peek(p) == '-') p->i++;
    if (peek(p) == '0') p->i++;
    else if (peek(p) >= '1' && peek(p) <= '9') while (peek(p) >= '0' && peek(p) <= '9') p->i++;
    else return fail(p, "bad number");
    if (peek(p) == '.') {
        p->i++;
        if (!(peek(p) >= '0' && peek(p) <= '9')) return fail(p, "bad number: digits expected after '.'");
        while (peek(p) >= '0' && peek(p) <= '9') p->i++;
    }
    if (peek(p) == 'e' || peek(p) == 'E') {
        p->i++;
        if (peek(p) == '+' || peek(p) == '-') p->i++;
        if (!(peek(p) >= '0' && peek(p) <= '9')) return fail(p, "bad number: digits expected in the exponent");
        while (peek(p) >= '0' && peek(p) <= '9') p->i++;
    }
    char tmp[64];
    size_t len = p->i - start;
    if (len >= sizeof tmp) { *out = 0; return 0; }   /* valid, absurdly long: not needed */
    memcpy(tmp, p->s + start, len);
    tmp[len] = '\0';
    *out = strtod(tmp, NULL);
    return 0;
}

static int parse_literal(struct parser *p, const char *word)
{
    size_t n = strlen(word);
    if (p->n - p->i < n || memcmp(p->s + p->i, word, n))
        return fail(p, "unexpected character '%c'", peek(p) > 0x20 && peek(p) < 0x7f ? peek(p) : '?');
    p->i += n;
    return 0;
}

static int parse_value(struct parser *p, struct json_field *f, int depth);

/* An array or object as a value of some key: checked, not kept. */
static int skip_compound(struct parser *p, int depth)
{
    if (depth >= JSON_MAX_DEPTH)
        return fail(p, "nested more than %d levels", JSON_MAX_DEPTH);
    char close = peek(p) == '[' ? ']' : '}';
    p->i++;
    skip_ws(p);
    if (peek(p) == close) { p->i++; return 0; }
    for (;;) {
        skip_ws(p);
        if (close == '}') {
            if (parse_string(p, NULL)) return -1;
            skip_ws(p);
            if (peek(p) != ':') return fail(p, "expected ':' after the key");
            p->i++;
            skip_ws(p);
        }
        struct json_field tmp = { 0 };
        if (parse_value(p, &tmp, depth + 1)) return -1;
        skip_ws(p);
        if (peek(p) == ',') { p->i++; continue; }
        if (peek(p) == close) { p->i++; return 0; }
        return fail(p, "expected ',' or '%c'", close);
    }
}

static int parse_value(struct parser *p, struct json_field *f, int depth)
{
    int c = peek(p);
    if (c == '"') { f->type = JSON_STRING; return parse_string(p, depth ? NULL : &f->str); }
    if (c == '-' || (c >= '0' && c <= '9')) { f->type = JSON_NUMBER; return parse_number(p, &f->num); }
    if (c == 't') { f->type = JSON_TRUE; return parse_literal(p, "true"); }
    if (c == 'f') { f->type = JSON_FALSE; return parse_literal(p, "false"); }
    if (c == 'n') { f->type = JSON_NULL; return parse_literal(p, "null"); }
    if (c == '[' || c == '{') { f->type = JSON_COMPOUND; return skip_compound(p, depth); }
    if (c < 0) return fail(p, "expected a value, found the end of the line");
    return fail(p, "expected a value, found '%c'", c > 0x20 && c < 0x7f ? c : '?');
}

void json_object_free(struct json_object *o)
{
    for (int i = 0; i < o->n; i++) {
        free(o->field[i].key);
        free(o->field[i].str);
    }
    free(o->field);
    o->field = NULL;
    o->n = 0;
}

const struct json_field *json_get(const struct json_object *o, const char *key)
{
    for (int i = 0; i < o->n; i++)
        if (!strcmp(o->field[i].key, key))
            return &o->field[i];
    return NULL;
}

int json_parse_object(const char *text, size_t len, struct json_object *out, char *err,
                      size_t errlen)
{
    struct parser p = { text, len, 0, err, errlen, false };
    out->field = NULL;
    out->n = 0;
    int cap = 0;
    skip_ws(&p);
    if (peek(&p) != '{') {
        fail(&p, peek(&p) < 0 ? "empty line: expected a JSON object" : "expected '{' (one JSON object per line)");
        return -1;
    }
    p.i++;
    skip_ws(&p);
    if (peek(&p) == '}') {
        p.i++;
    } else {
        for (;;) {
            skip_ws(&p);
            char *key = NULL;
            if (peek(&p) != '"') { fail(&p, "expected a key (a string)"); goto bad; }
            if (parse_string(&p, &key)) goto bad;
            bool dup = json_get(out, key) != NULL;
            if (dup) { fail(&p, "duplicate key \"%s\"", key); free(key); goto bad; }
            if (out->n == cap) {
                int nc = cap ? cap * 2 : 8;
                struct json_field *nf = realloc(out->field, sizeof *nf * (size_t)nc);
                if (!nf) { free(key); fail(&p, "out of memory"); goto bad; }
                out->field = nf;
                cap = nc;
            }
            struct json_field *f = &out->field[out->n++];
            memset(f, 0, sizeof *f);
            f->key = key;
            skip_ws(&p);
            if (peek(&p) != ':') { fail(&p, "expected ':' after the key"); goto bad; }
            p.i++;
            skip_ws(&p);
            if (parse_value(&p, f, 0)) goto bad;
            skip_ws(&p);
            if (peek(&p) == ',') { p.i++; continue; }
            if (peek(&p) == '}') { p.i++; break; }
            fail(&p, peek(&p) < 0 ? "unterminated object: expected ',' or '}'" : "expected ',' or '}'");
            goto bad;
        }
    }
    skip_ws(&p);
    if (p.i != p.n) {
        fail(&p, "unexpected text after the object");
        goto bad;
    }
    return 0;
bad:
    json_object_free(out);
    return -1;
}

/* Length of the valid UTF-8 sequence at c (1..4), or 0 when it is not one. */
static int utf8_len(const unsigned char *c)
{
    int n = c[0] < 0x80 ? 1 : c[0] >= 0xC2 && c[0] <= 0xDF ? 2 : c[0] >= 0xE0 && c[0] <= 0xEF ? 3
          : c[0] >= 0xF0 && c[0] <= 0xF4 ? 4 : 0;
    for (int k = 1; k < n; k++)
        if ((c[k] & 0xC0) != 0x80)
            return 0;
    if (n == 3 && ((c[0] == 0xE0 && c[1] < 0xA0) || (c[0] == 0xED && c[1] > 0x9F)))
        return 0;   /* overlong, or a surrogate */
    if (n == 4 && ((c[0] == 0xF0 && c[1] < 0x90) || (c[0] == 0xF4 && c[1] > 0x8F)))
        return 0;   /* overlong, or past U+10FFFF */
    return n;
}

void json_write_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)s; *c;) {
        int n = utf8_len(c);
        if (n == 0) {   /* not UTF-8 (e.g. half a character): U+FFFD */
            fputs("\\ufffd", f);
            c++;
            continue;
        }
        if (n > 1) {
            fwrite(c, 1, (size_t)n, f);
            c += n;
            continue;
        }
        switch (*c) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*c < 0x20 || *c == 0x7f) fprintf(f, "\\u%04x", *c);
            else fputc(*c, f);
        }
        c++;
    }
    fputc('"', f);
}
