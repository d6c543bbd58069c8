/* Helpers shared by the tokenizer tests: loading a vocab GGUF, reading the
 * llama.cpp vocab test cases, token-id vectors. */
#ifndef TOK_COMMON_H
#define TOK_COMMON_H

#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "md_test.h"
#include "gguf.h"
#include "tokenizer.h"

#define TOK_CASES_DIR "fixtures/tokenizer/llama.cpp-vocab"

static inline double tok_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline char *tok_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
        const size_t r = fread(buf + n, 1, cap - n, f);
        if (r == 0)
            break;
        n += r;
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

static inline bool tok_file_exists(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f)
        fclose(f);
    return f != NULL;
}

/* GGUF of a vocab: argv path if given (a generated one), else the shared
 * ggml-vocab-<name>.gguf. Skips when absent. */
static inline const char *tok_gguf_path(const char *name, const char *given, char *buf, size_t n)
{
    if (given) {
        if (!tok_file_exists(given))
            SKIP("%s not built (shared/ tokenizer.json absent at configure time?)", given);
        snprintf(buf, n, "%s", given);
        return buf;
    }
    char rel[256];
    snprintf(rel, sizeof(rel), TOK_CASES_DIR "/ggml-vocab-%s.gguf", name);
    return md_test_shared(rel, buf, n);
}

/* Load a vocab; the md_gguf is closed right away (the vocab copies). */
static inline struct md_vocab *tok_load(const char *path, double *seconds)
{
    char err[512];
    struct md_gguf *g = NULL;
    if (md_gguf_open(path, &g, err, sizeof(err))) {
        fprintf(stderr, "md_gguf_open(%s): %s\n", path, err);
        return NULL;
    }
    struct md_vocab *v = NULL;
    const double t0 = tok_now();
    const int rc = md_vocab_load(g, &v, err, sizeof(err));
    if (seconds)
        *seconds = tok_now() - t0;
    md_gguf_close(g);
    if (rc) {
        fprintf(stderr, "md_vocab_load(%s): %s\n", path, err);
        return NULL;
    }
    return v;
}

/* ---- ids ------------------------------------------------------------------ */

struct tok_ids {
    int32_t *v;
    int64_t n;
};

/* Tokenize with the count-then-fill protocol. n = -1 on error. */
static inline struct tok_ids tok_encode(const struct md_vocab *v, const char *s, size_t len,
                                        bool add_special, bool parse_special)
{
    struct tok_ids r = { NULL, -1 };
    int32_t small[8];
    const int64_t n = md_tokenize(v, s, len, add_special, parse_special, small, 8);
    if (n < 0)
        return r;
    r.v = malloc((size_t)(n ? n : 1) * sizeof(int32_t));
    if (n <= 8) {
        memcpy(r.v, small, (size_t)n * sizeof(int32_t));
        r.n = n;
        return r;
    }
    r.n = md_tokenize(v, s, len, add_special, parse_special, r.v, n);
    if (r.n != n)
        r.n = -1;
    return r;
}

/* Detokenize into a malloc'd NUL-terminated string; *len its length. */
static inline char *tok_decode(const struct md_vocab *v, const int32_t *ids, int64_t n,
                               bool special, size_t *len)
{
    const int64_t need = md_detokenize(v, ids, n, NULL, 0, special);
    if (need < 0)
        return NULL;
    char *s = malloc((size_t)need + 1);
    const int64_t got = md_detokenize(v, ids, n, s, need + 1, special);
    if (got != need) {
        free(s);
        return NULL;
    }
    *len = (size_t)need;
    return s;
}

static inline void tok_print_ids(FILE *f, const int32_t *ids, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        fprintf(f, "%s%d", i ? " " : "", ids[i]);
}

static inline void tok_print_escaped(FILE *f, const char *s, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n && i < 200; i++) {
        const unsigned char c = (unsigned char)s[i];
        if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c == '\r') fputs("\\r", f);
        else if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20 || c == 0x7f) fprintf(f, "\\x%02x", c);
        else fputc(c, f);
    }
    if (n > 200) fputs("...", f);
    fputc('"', f);
}

/* ---- llama.cpp vocab test cases ----------------------------------------- */

struct tok_case {
    const char *text;   /* into the .inp buffer, NUL-terminated */
    size_t len;
    int32_t *ids;
    int64_t n_ids;
};

struct tok_cases {
    char *inp, *outp;
    struct tok_case *c;
    size_t n;
};

static inline void tok_cases_free(struct tok_cases *tc)
{
    for (size_t i = 0; i < tc->n; i++)
        free(tc->c[i].ids);
    free(tc->c);
    free(tc->inp);
    free(tc->outp);
}

/* As llama.cpp's tests/test-tokenizer-0.cpp: .inp cases are separated by
 * "\n__ggml_vocab_test__\n" (the file ends with one, which adds no case);
 * .out has one line per case of space-separated ids. Returns 0 or -1. */
static inline int tok_cases_read(const char *name, struct tok_cases *tc)
{
    memset(tc, 0, sizeof(*tc));
    char rel[256], pin[1024], pout[1024];
    snprintf(rel, sizeof(rel), TOK_CASES_DIR "/ggml-vocab-%s.gguf.inp", name);
    md_test_shared(rel, pin, sizeof(pin));
    snprintf(rel, sizeof(rel), TOK_CASES_DIR "/ggml-vocab-%s.gguf.out", name);
    md_test_shared(rel, pout, sizeof(pout));
    size_t ninp, nout;
    tc->inp = tok_read_file(pin, &ninp);
    tc->outp = tok_read_file(pout, &nout);
    if (!tc->inp || !tc->outp)
        return -1;

    static const char sep[] = "\n__ggml_vocab_test__\n";
    const size_t seplen = sizeof(sep) - 1;
    size_t cap = 64;
    tc->c = calloc(cap, sizeof(*tc->c));
    size_t pos = 0;
    while (pos < ninp) {
        if (tc->n == cap) {
            cap *= 2;
            tc->c = realloc(tc->c, cap * sizeof(*tc->c));
        }
        char *next = NULL;
        for (size_t i = pos; i + seplen <= ninp; i++)
            if (memcmp(tc->inp + i, sep, seplen) == 0) {
                next = tc->inp + i;
                break;
            }
        struct tok_case *c = &tc->c[tc->n++];
        memset(c, 0, sizeof(*c));
        c->text = tc->inp + pos;
        if (!next) {
            c->len = ninp - pos;
            break;
        }
        c->len = (size_t)(next - (tc->inp + pos));
        *next = '\0';
        pos = (size_t)(next - tc->inp) + seplen;
    }

    size_t line = 0;
    char *p = tc->outp;
    while (*p && line < tc->n) {
        char *eol = strchr(p, '\n');
        if (eol)
            *eol = '\0';
        struct tok_case *c = &tc->c[line++];
        c->ids = malloc((strlen(p) / 2 + 1) * sizeof(int32_t));
        c->n_ids = 0;
        char *q = p;
        for (;;) {
            while (*q == ' ' || *q == '\r')
                q++;
            if (!*q)
                break;
            char *end;
            const long x = strtol(q, &end, 10);
            if (end == q)
                return -1;
            c->ids[c->n_ids++] = (int32_t)x;
            q = end;
        }
        if (!eol)
            break;
        p = eol + 1;
    }
    if (line != tc->n) {
        fprintf(stderr, "%s: %zu input cases but %zu output lines\n", name, tc->n, line);
        return -1;
    }
    return 0;
}

#endif
