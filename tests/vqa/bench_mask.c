/* The cost of one constrained step: md_grammar_mask over a vocabulary's
 * pieces, averaged over the states of a typical answer (docs/structured.md
 * quotes it). A benchmark, not a test:
 *   build/tests/vqa/bench_mask VOCAB.gguf [...]   */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf.h"
#include "grammar.h"
#include "tokenizer.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static const char SCHEMA[] =
    "{\"type\":\"object\",\"properties\":{\"person\":{\"type\":\"boolean\"},"
    "\"count\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":20},"
    "\"where\":{\"enum\":[\"top left\",\"top\",\"center\",\"bottom right\"]},"
    "\"note\":{\"type\":\"string\",\"maxLength\":16}}}";
static const char ANSWER[] = "{\"person\":true,\"count\":12,\"where\":\"top left\",\"note\":\"a red car\"}";

static int bench(const char *path)
{
    char err[512];
    struct md_gguf *gg = NULL;
    struct md_vocab *v = NULL;
    if (md_gguf_open(path, &gg, err, sizeof err) || md_vocab_load(gg, &v, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", path, err);
        md_gguf_close(gg);
        return 1;
    }
    md_gguf_close(gg);
    struct md_grammar *g = NULL;
    struct md_pieces *p = NULL;
    double t0 = now_ms();
    if (md_pieces_from_vocab(v, &p) || md_grammar_compile(SCHEMA, &g, err, sizeof err)) {
        fprintf(stderr, "%s: setup failed: %s\n", path, err);
        return 1;
    }
    double t_pieces = now_ms() - t0;
    bool *allowed = malloc((size_t)md_vocab_n_tokens(v));
    /* every prefix of the answer is one step's state; repeat for a stable figure */
    size_t n_states = strlen(ANSWER);
    int reps = 20;
    int64_t total_allowed = 0;
    t0 = now_ms();
    for (int r = 0; r < reps; r++) {
        struct md_gstate st;
        md_gstate_init(g, &st);
        for (size_t k = 0; k < n_states; k++) {
            total_allowed += md_grammar_mask(g, &st, p, allowed);
            md_gstate_feed(g, &st, (uint8_t)ANSWER[k]);
        }
    }
    double per = (now_ms() - t0) / (reps * (double)n_states);
    printf("%s: %d tokens (%d pieces), pieces built in %.1f ms; mask %.3f ms a step "
           "(mean of %zu states x %d), %.1f tokens allowed on average\n", path,
           md_vocab_n_tokens(v), p->n, t_pieces, per, n_states, reps,
           (double)total_allowed / (reps * (double)n_states));
    free(allowed);
    md_grammar_free(g);
    md_pieces_free(p);
    md_vocab_free(v);
    return 0;
}

int main(int argc, char **argv)
{
    int rc = 0;
    if (argc < 2) {
        fprintf(stderr, "usage: bench_mask VOCAB.gguf [...]\n");
        return 2;
    }
    for (int i = 1; i < argc; i++)
        rc |= bench(argv[i]);
    return rc;
}
