/* llama.cpp's vocab conformance cases (HF AutoTokenizer ground truth):
 * tokenize every .inp case with add_special=false, parse_special=false and
 * require the .out ids exactly.
 * Usage: test_tok_conformance NAME [GGUF]   (GGUF defaults to the shared
 * ggml-vocab-NAME.gguf) */
#include "tok_common.h"

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
    double load_s = 0;
    struct md_vocab *v = tok_load(path, &load_s);
    CHECK(v != NULL);
    if (!v) {
        tok_cases_free(&tc);
        return md_test_finish(name);
    }
    printf("%s: %d tokens, loaded in %.3f s%s%s\n", name, md_vocab_n_tokens(v), load_s,
           md_vocab_warning(v) ? "; warning: " : "",
           md_vocab_warning(v) ? md_vocab_warning(v) : "");
    /* the load time is printed, not checked: timings belong to benchmarks
     * (a loaded machine would fail any bound) */

    size_t pass = 0;
    const double t0 = tok_now();
    for (size_t i = 0; i < tc.n; i++) {
        const struct tok_case *c = &tc.c[i];
        struct tok_ids got = tok_encode(v, c->text, c->len, false, false);
        bool ok = got.n == c->n_ids &&
                  (got.n == 0 || memcmp(got.v, c->ids, (size_t)got.n * sizeof(int32_t)) == 0);
        if (ok) {
            pass++;
        } else {
            fprintf(stderr, "%s case %zu ", name, i);
            tok_print_escaped(stderr, c->text, c->len);
            fprintf(stderr, "\n  expected: ");
            tok_print_ids(stderr, c->ids, c->n_ids);
            fprintf(stderr, "\n  got:      ");
            tok_print_ids(stderr, got.v, got.n);
            fprintf(stderr, "\n");
        }
        free(got.v);
    }
    const double dt = tok_now() - t0;
    printf("%s: %zu/%zu cases match (%.2f ms)\n", name, pass, tc.n, 1e3 * dt);
    CHECKF(pass == tc.n, "%zu of %zu cases differ", tc.n - pass, tc.n);
    CHECK(tc.n == 46);

    md_vocab_free(v);
    tok_cases_free(&tc);
    return md_test_finish(name);
}
