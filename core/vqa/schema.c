/* The JSON-schema subset md_vqa constrains answers to, compiled into the
 * node tree grammar.c matches bytes against. Everything outside the subset
 * is refused with the JSON pointer of where it is (docs/structured.md). */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar.h"

struct compiler {
    struct md_grammar *g;
    int32_t cap;
    char ptr[512];              /* JSON pointer of the schema being compiled */
    char *err;
    size_t errlen;
};

static int bad(struct compiler *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int bad(struct compiler *c, const char *fmt, ...)
{
    int n = snprintf(c->err, c->errlen, "%s: ", c->ptr[0] ? c->ptr : "(root)");
    if (n >= 0 && (size_t)n < c->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return MD_ERR_INVALID;
}

/* Append "/seg" (escaped as RFC 6901 says) to the pointer; returns the old
 * length to restore. */
static size_t ptr_push(struct compiler *c, const char *seg)
{
    size_t old = strlen(c->ptr), n = old;
    if (n + 1 < sizeof c->ptr)
        c->ptr[n++] = '/';
    for (const char *s = seg; *s && n + 3 < sizeof c->ptr; s++) {
        if (*s == '~' || *s == '/') {
            c->ptr[n++] = '~';
            c->ptr[n++] = *s == '~' ? '0' : '1';
        } else {
            c->ptr[n++] = *s;
        }
    }
    c->ptr[n] = '\0';
    return old;
}

static int new_node(struct compiler *c, enum md_gnode_kind kind, int32_t *idx)
{
    struct md_grammar *g = c->g;
    if (g->n_nodes >= MD_SCHEMA_MAX_NODES)
        return bad(c, "the schema has more than %d values", MD_SCHEMA_MAX_NODES);
    if (g->n_nodes == c->cap) {
        int32_t cap = c->cap ? c->cap * 2 : 8;
        struct md_gnode *n = realloc(g->nodes, sizeof *n * (size_t)cap);
        if (!n)
            return MD_ERR_NOMEM;
        g->nodes = n;
        c->cap = cap;
    }
    *idx = g->n_nodes++;
    memset(&g->nodes[*idx], 0, sizeof g->nodes[*idx]);
    g->nodes[*idx].kind = kind;
    return MD_OK;
}

static const char *type_name(enum md_json_type t)
{
    static const char *names[] = { "null", "boolean", "integer", "number", "string", "array",
                                   "object" };
    return names[t];
}

/* ---- values as JSON text (enum alternatives) ---- */

static char *json_text(const struct md_json *v)
{
    if (v->type == MD_JSON_BOOL)
        return strdup(v->boolean ? "true" : "false");
    if (v->type == MD_JSON_INT) {
        char b[32];
        snprintf(b, sizeof b, "%" PRId64, v->integer);
        return strdup(b);
    }
    size_t n = strlen(v->string);
    char *o = malloc(n * 6 + 3), *p = o;
    if (!o)
        return NULL;
    *p++ = '"';
    for (const char *s = v->string; *s; s++) {
        uint8_t ch = (uint8_t)*s;
        if (ch == '"' || ch == '\\')
            p += sprintf(p, "\\%c", ch);
        else if (ch < 0x20)
            p += sprintf(p, "\\u%04x", ch);
        else
            *p++ = (char)ch;
    }
    *p++ = '"';
    *p = '\0';
    return o;
}

/* ---- the keywords ---- */

static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (!n || n > MD_SCHEMA_MAX_NAME || !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-'))
            return false;
    return true;
}

static int check_keywords(struct compiler *c, const struct md_json *s, bool root)
{
    static const char *known[] = { "type", "properties", "required", "enum", "const", "minimum",
                                   "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength",
                                   "maxLength", "additionalProperties", "title", "description",
                                   NULL };
    for (int32_t i = 0; i < s->n; i++) {
        const char *k = s->keys[i];
        bool ok = root && (!strcmp(k, "$schema") || !strcmp(k, "$id"));
        for (int j = 0; known[j] && !ok; j++)
            ok = !strcmp(k, known[j]);
        if (!ok)
            return bad(c, "keyword \"%s\" is not supported", k);
    }
    const struct md_json *ap = md_json_get(s, "additionalProperties");
    if (ap && !(ap->type == MD_JSON_BOOL && !ap->boolean))
        return bad(c, "additionalProperties must be false (answers hold the listed properties "
                      "only)");
    return MD_OK;
}

static int compile(struct compiler *c, const struct md_json *s, int depth, int32_t *idx);

static int compile_enum(struct compiler *c, const struct md_json *s, const char *type,
                        int32_t *idx)
{
    const struct md_json *e = md_json_get(s, "enum"), *k = md_json_get(s, "const");
    if (e && k)
        return bad(c, "enum and const together");
    if (e && e->type != MD_JSON_ARRAY)
        return bad(c, "enum must be an array");
    int32_t n = e ? e->n : 1;
    if (n < 1 || n > MD_SCHEMA_MAX_ENUM)
        return bad(c, "enum needs 1 to %d values, it has %d", MD_SCHEMA_MAX_ENUM, n);
    int rc = new_node(c, MD_G_ENUM, idx);
    if (rc)
        return rc;
    struct md_gnode *nd = &c->g->nodes[*idx];
    if (!(nd->alts = calloc((size_t)n, sizeof *nd->alts)))
        return MD_ERR_NOMEM;
    for (int32_t i = 0; i < n; i++) {
        const struct md_json *v = e ? &e->items[i] : k;
        if (v->type != MD_JSON_STRING && v->type != MD_JSON_INT && v->type != MD_JSON_BOOL)
            return bad(c, "%s value %d is of type %s (strings, integers and booleans are "
                          "supported)",
                       e ? "enum" : "const", i, type_name(v->type));
        if (type && strcmp(type, type_name(v->type)))
            return bad(c, "%s value %d is of type %s, the type is %s", e ? "enum" : "const", i,
                       type_name(v->type), type);
        if (!(nd->alts[i] = json_text(v)))
            return MD_ERR_NOMEM;
        nd->n = i + 1;
        for (int32_t j = 0; j < i; j++)
            if (!strcmp(nd->alts[j], nd->alts[i]))
                return bad(c, "enum value %d repeats value %d", i, j);
    }
    return MD_OK;
}

/* An integer bound of the range: exclusive ones move inward by one. */
static int bound(struct compiler *c, const struct md_json *s, const char *key, bool lower,
                 int64_t step, int64_t *v)
{
    const struct md_json *b = md_json_get(s, key);
    if (!b)
        return MD_OK;
    if (b->type != MD_JSON_INT)
        return bad(c, "%s must be an integer", key);
    if (step && b->integer == (step > 0 ? INT64_MAX : INT64_MIN))
        return bad(c, "%s leaves no integer", key);
    int64_t x = b->integer + step;
    if (lower ? x > *v : x < *v)
        *v = x;
    return MD_OK;
}

static int compile_int(struct compiler *c, const struct md_json *s, int32_t *idx)
{
    int64_t lo = INT64_MIN, hi = INT64_MAX;
    int rc;
    if ((rc = bound(c, s, "minimum", true, 0, &lo)) ||
        (rc = bound(c, s, "exclusiveMinimum", true, 1, &lo)) ||
        (rc = bound(c, s, "maximum", false, 0, &hi)) ||
        (rc = bound(c, s, "exclusiveMaximum", false, -1, &hi)))
        return rc;
    if (lo > hi)
        return bad(c, "no integer lies between the minimum %" PRId64 " and the maximum %" PRId64,
                   lo, hi);
    if ((rc = new_node(c, MD_G_INT, idx)))
        return rc;
    c->g->nodes[*idx].min = lo;
    c->g->nodes[*idx].max = hi;
    return MD_OK;
}

static int length(struct compiler *c, const struct md_json *s, const char *key, int32_t *v)
{
    const struct md_json *b = md_json_get(s, key);
    if (!b)
        return MD_OK;
    if (b->type != MD_JSON_INT || b->integer < 0 || b->integer > MD_SCHEMA_MAX_STRING)
        return bad(c, "%s must be an integer from 0 to %d", key, MD_SCHEMA_MAX_STRING);
    *v = (int32_t)b->integer;
    return MD_OK;
}

static int compile_string(struct compiler *c, const struct md_json *s, int32_t *idx)
{
    int32_t lo = 0, hi = MD_SCHEMA_DEFAULT_STRING;
    int rc;
    if ((rc = length(c, s, "minLength", &lo)) || (rc = length(c, s, "maxLength", &hi)))
        return rc;
    if (lo > hi)
        return bad(c, "minLength %d is above maxLength %d", lo, hi);
    if ((rc = new_node(c, MD_G_STRING, idx)))
        return rc;
    c->g->nodes[*idx].min_len = lo;
    c->g->nodes[*idx].max_len = hi;
    return MD_OK;
}

static int check_required(struct compiler *c, const struct md_json *s, const struct md_json *props)
{
    const struct md_json *r = md_json_get(s, "required");
    if (!r)
        return MD_OK;
    if (r->type != MD_JSON_ARRAY)
        return bad(c, "required must be an array of property names");
    for (int32_t i = 0; i < r->n; i++)
        if (r->items[i].type != MD_JSON_STRING || !md_json_get(props, r->items[i].string))
            return bad(c, "required value %d is not a property of the object", i);
    return MD_OK;
}

/* `{"a":` `,"b":` ... `}`: the text around the values. */
static char *fragment(int32_t i, int32_t n, const char *name)
{
    if (i == n)
        return strdup(n ? "}" : "{}");
    size_t len = strlen(name) + 5;
    char *f = malloc(len + 1);
    if (f)
        snprintf(f, len + 1, "%c\"%s\":", i ? ',' : '{', name);
    return f;
}

static int compile_object(struct compiler *c, const struct md_json *s, int depth, int32_t *idx)
{
    if (depth >= MD_SCHEMA_MAX_DEPTH)
        return bad(c, "objects nested deeper than %d", MD_SCHEMA_MAX_DEPTH);
    const struct md_json *props = md_json_get(s, "properties");
    if (props && props->type != MD_JSON_OBJECT)
        return bad(c, "properties must be an object");
    int32_t n = props ? props->n : 0;
    if (n > MD_SCHEMA_MAX_PROPS)
        return bad(c, "more than %d properties", MD_SCHEMA_MAX_PROPS);
    int rc = check_required(c, s, props);
    if (rc || (rc = new_node(c, MD_G_OBJECT, idx)))
        return rc;
    struct md_gnode *nd = &c->g->nodes[*idx];
    nd->child = calloc((size_t)n + 1, sizeof *nd->child);
    nd->names = calloc((size_t)n + 1, sizeof *nd->names);
    nd->frags = calloc((size_t)n + 1, sizeof *nd->frags);
    if (!nd->child || !nd->names || !nd->frags)
        return MD_ERR_NOMEM;
    int32_t self = *idx;
    for (int32_t i = 0; i < n; i++) {
        size_t old = ptr_push(c, "properties");
        ptr_push(c, props->keys[i]);
        if (!name_ok(props->keys[i]))
            return bad(c, "property names must start with a letter and hold only letters, "
                          "digits, '_' and '-' (at most %d bytes)", MD_SCHEMA_MAX_NAME);
        int32_t child;
        if ((rc = compile(c, &props->items[i], depth + 1, &child)))
            return rc;
        c->ptr[old] = '\0';
        nd = &c->g->nodes[self];   /* compile may have moved the array */
        nd->child[i] = child;
        nd->n = i + 1;
        if (!(nd->names[i] = strdup(props->keys[i])) ||
            !(nd->frags[i] = fragment(i, n, props->keys[i])))
            return MD_ERR_NOMEM;
    }
    nd->n = n;
    return (nd->frags[n] = fragment(n, n, NULL)) ? MD_OK : MD_ERR_NOMEM;
}

static int compile(struct compiler *c, const struct md_json *s, int depth, int32_t *idx)
{
    if (s->type != MD_JSON_OBJECT)
        return bad(c, "a schema must be an object, this is a %s", type_name(s->type));
    int rc = check_keywords(c, s, depth == 0);
    if (rc)
        return rc;
    const struct md_json *t = md_json_get(s, "type");
    if (t && t->type != MD_JSON_STRING)
        return bad(c, "type must be one string (unions are not supported)");
    const char *type = t ? t->string : NULL;
    if (md_json_get(s, "enum") || md_json_get(s, "const"))
        return compile_enum(c, s, type, idx);
    if (!type)
        return bad(c, "a type, an enum or a const is needed");
    if (!strcmp(type, "object"))
        return compile_object(c, s, depth, idx);
    if (!strcmp(type, "integer"))
        return compile_int(c, s, idx);
    if (!strcmp(type, "string"))
        return compile_string(c, s, idx);
    if (!strcmp(type, "boolean")) {
        struct md_json alts[2] = { { .type = MD_JSON_BOOL, .boolean = true },
                                   { .type = MD_JSON_BOOL, .boolean = false } };
        struct md_json e = { .type = MD_JSON_ARRAY, .n = 2, .items = alts };
        char key[] = "enum", *keys[1] = { key };
        struct md_json wrap = { .type = MD_JSON_OBJECT, .n = 1, .keys = keys, .items = &e };
        return compile_enum(c, &wrap, NULL, idx);
    }
    if (!strcmp(type, "number"))
        return bad(c, "type \"number\" is not supported (integer is)");
    return bad(c, "type \"%s\" is not supported (object, boolean, integer, string are)", type);
}

void md_grammar_free(struct md_grammar *g)
{
    if (!g)
        return;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        struct md_gnode *nd = &g->nodes[i];
        for (int32_t k = 0; k <= nd->n; k++) {
            if (nd->names && k < nd->n)
                free(nd->names[k]);
            if (nd->frags)
                free(nd->frags[k]);
            if (nd->alts && k < nd->n)
                free(nd->alts[k]);
        }
        free(nd->child);
        free(nd->names);
        free(nd->frags);
        free(nd->alts);
    }
    free(g->nodes);
    free(g);
}

int md_grammar_compile(const char *schema, struct md_grammar **out, char *err, size_t errlen)
{
    char scratch[8];
    if (!err || !errlen) {
        err = scratch;
        errlen = sizeof scratch;
    }
    *out = NULL;
    if (!schema) {
        snprintf(err, errlen, "no schema");
        return MD_ERR_INVALID;
    }
    struct md_json *j;
    char jerr[256];
    int rc = md_json_parse(schema, strlen(schema), &j, jerr, sizeof jerr);
    if (rc) {
        snprintf(err, errlen, "the schema is not valid JSON: %s", jerr);
        return rc;
    }
    struct compiler c = { .err = err, .errlen = errlen };
    if (!(c.g = calloc(1, sizeof *c.g))) {
        md_json_free(j);
        return MD_ERR_NOMEM;
    }
    int32_t root;
    rc = compile(&c, j, 0, &root);
    md_json_free(j);
    if (rc) {
        if (rc == MD_ERR_NOMEM)
            snprintf(err, errlen, "out of memory");
        md_grammar_free(c.g);
        return rc;
    }
    *out = c.g;
    return MD_OK;
}

int md_vqa_check_schema(const char *schema, char *err, size_t errlen)
{
    struct md_grammar *g;
    int rc = md_grammar_compile(schema, &g, err, errlen);
    md_grammar_free(g);
    return rc;
}
