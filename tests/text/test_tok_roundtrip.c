/* Round trips for one vocab:
 *  - every conformance input: detokenize(tokenize(text)) == text, with and
 *    without BOS (the SPM prefix space is stripped again);
 *  - piece by piece (what a streaming caller does) gives the same bytes;
 *  - every token id: its piece re-tokenizes and detokenizes to itself
 *    (as llama.cpp's test-tokenizer-1), where the piece is valid UTF-8;
 *  - every Unicode scalar value on its own (U+2581 excepted for SPM).
 * Usage: test_tok_roundtrip NAME [GGUF] */
#include "tok_common.h"

static int n_shown;

static void show_mismatch(const char *what, size_t idx, const char *want, size_t wn,
                          const char *got, size_t gn)
{
    if (n_shown++ >= 10)
        return;
    fprintf(stderr, "%s %zu:\n  want ", what, idx);
    tok_print_escaped(stderr, want, wn);
    fprintf(stderr, "\n  got  ");
    tok_print_escaped(stderr, got, gn);
    fprintf(stderr, "\n");
}

static bool same(const char *a, size_t an, const char *b, size_t bn)
{
    return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s NAME [GGUF]\n", argv[0]);
        return 2;
    }
    const char *name = argv[1];
    struct tok_cases tc;
    if (tok_cases_read(name, &tc)) {
        fprintf(stderr, "%s: cannot read the test cases\n", name);
        return 1;
    }
    char path[1024];
    tok_gguf_path(name, argc > 2 ? argv[2] : NULL, path, sizeof(path));
    struct md_vocab *v = tok_load(path, NULL);
    CHECK(v != NULL);
    if (!v) {
        tok_cases_free(&tc);
        return md_test_finish(name);
    }
    const bool spm = md_vocab_kind(v) == MD_VOCAB_SPM;
    const int32_t bos = md_vocab_bos(v);
    const char *bos_text = bos >= 0 ? md_vocab_token_text(v, bos) : "";

    /* 1. the conformance inputs */
    size_t ok_cases = 0;
    for (size_t i = 0; i < tc.n; i++) {
        const struct tok_case *c = &tc.c[i];
        bool ok = true;
        struct tok_ids ids = tok_encode(v, c->text, c->len, false, false);
        size_t n;
        char *s = tok_decode(v, ids.v, ids.n, false, &n);
        if (!s || !same(c->text, c->len, s, n)) {
            show_mismatch("case", i, c->text, c->len, s ? s : "", s ? n : 0);
            ok = false;
        }
        free(s);

        /* streaming: the pieces one by one */
        char *cat = malloc(c->len + 64);
        size_t cn = 0;
        for (int64_t k = 0; k < ids.n; k++) {
            char buf[256];
            const int32_t m = md_token_to_piece(v, ids.v[k], buf, (int32_t)sizeof(buf), false);
            if (m < 0 || m > (int32_t)sizeof(buf) || cn + (size_t)m > c->len + 63) {
                ok = false;
                break;
            }
            memcpy(cat + cn, buf, (size_t)m);
            cn += (size_t)m;
        }
        const size_t skip = (spm && md_vocab_add_space_prefix(v) && c->len > 0) ? 1 : 0;
        if (cn < skip || (skip && cat[0] != ' ') || !same(c->text, c->len, cat + skip, cn - skip)) {
            show_mismatch("pieces of case", i, c->text, c->len, cat, cn);
            ok = false;
        }
        free(cat);
        free(ids.v);

        /* with BOS/EOS as the vocab adds them */
        ids = tok_encode(v, c->text, c->len, true, false);
        if (md_vocab_add_bos(v) && bos >= 0)
            CHECK(ids.n >= 1 && ids.v[0] == bos);
        s = tok_decode(v, ids.v, ids.n, false, &n);
        if (!md_vocab_add_eos(v) && (!s || !same(c->text, c->len, s, n))) {
            show_mismatch("case (with BOS)", i, c->text, c->len, s ? s : "", s ? n : 0);
            ok = false;
        }
        free(s);
        if (md_vocab_add_bos(v) && !md_vocab_add_eos(v) && bos >= 0) {
            s = tok_decode(v, ids.v, ids.n, true, &n);
            const size_t bl = strlen(bos_text);
            if (!s || n != bl + c->len || memcmp(s, bos_text, bl) != 0 ||
                memcmp(s + bl, c->text, c->len) != 0) {
                show_mismatch("case (BOS rendered)", i, c->text, c->len, s ? s : "", s ? n : 0);
                ok = false;
            }
            free(s);
        }
        free(ids.v);
        ok_cases += ok;
    }
    printf("%s: %zu/%zu inputs round-trip\n", name, ok_cases, tc.n);
    CHECK(ok_cases == tc.n);

    /* 2. every token's piece */
    const int32_t nv = md_vocab_n_tokens(v);
    int32_t checked = 0, skipped = 0, bad = 0, exact = 0;
    const double t0 = tok_now();
    for (int32_t id = 0; id < nv; id++) {
        size_t n;
        char *s = tok_decode(v, &id, 1, true, &n);
        if (!s || n == 0 || !md_utf8_valid(s, n)) {
            skipped++;
            free(s);
            continue;
        }
        struct tok_ids ids = tok_encode(v, s, n, false, true);
        size_t n2 = 0;
        char *s2 = tok_decode(v, ids.v, ids.n, true, &n2);
        checked++;
        if (ids.n == 1 && ids.v[0] == id)
            exact++;
        if (!s2 || !same(s, n, s2, n2)) {
            bad++;
            if (n_shown++ < 10) {
                fprintf(stderr, "token %d ", id);
                tok_print_escaped(stderr, s, n);
                fprintf(stderr, " comes back as ");
                tok_print_escaped(stderr, s2 ? s2 : "", s2 ? n2 : 0);
                fprintf(stderr, "\n");
            }
        }
        free(s);
        free(s2);
        free(ids.v);
    }
    printf("%s: %d/%d token pieces round-trip (%d are partial UTF-8 or empty; %d give back "
           "exactly their own id) in %.2f s\n", name, checked - bad, checked, skipped, exact,
           tok_now() - t0);
    CHECK(bad == 0);

    /* 3. every codepoint alone */
    const double t1 = tok_now();
    int32_t cp_bad = 0, cp_n = 0;
    for (uint32_t cp = 0; cp < 0x110000; cp++) {
        if ((cp >= 0xD800 && cp <= 0xDFFF) || (cp >= 0x40000 && cp < 0xE0000))
            continue;
        if (spm && cp == 0x2581)
            continue;   /* SPM reads U+2581 as an escaped space */
        char u[4];
        size_t un;
        if (cp < 0x80) { u[0] = (char)cp; un = 1; }
        else if (cp < 0x800) { u[0] = (char)(0xC0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 0x3F)); un = 2; }
        else if (cp < 0x10000) {
            u[0] = (char)(0xE0 | (cp >> 12)); u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
            u[2] = (char)(0x80 | (cp & 0x3F)); un = 3;
        } else {
            u[0] = (char)(0xF0 | (cp >> 18)); u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
            u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[3] = (char)(0x80 | (cp & 0x3F)); un = 4;
        }
        int32_t ids[16];
        const int64_t k = md_tokenize(v, u, un, false, false, ids, 16);
        char back[64];
        const int64_t m = (k >= 0 && k <= 16) ? md_detokenize(v, ids, k, back, sizeof(back), false) : -1;
        cp_n++;
        if (m < 0 || !same(u, un, back, (size_t)m)) {
            if (cp_bad++ < 5)
                fprintf(stderr, "U+%04X does not round-trip\n", cp);
        }
    }
    printf("%s: %d/%d codepoints round-trip (%.2f s)\n", name, cp_n - cp_bad, cp_n, tok_now() - t1);
    CHECK(cp_bad == 0);

    md_vocab_free(v);
    tok_cases_free(&tc);
    return md_test_finish(name);
}
