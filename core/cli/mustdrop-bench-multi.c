/* mustdrop-bench --seqs: decode throughput of S sequences stepped together
 * (md_decode_multi: one pass over the weights per step for all of them)
 * against the same S sequences decoded one after another (each its whole
 * run of md_decode steps, then the next). Every sequence has its own
 * context, prefilled with `depth` random tokens (untimed) before each run;
 * the two modes alternate run by run so that a change in the machine's load
 * falls on both, and the speedup is taken within each pair of runs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mustdrop-bench-multi.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* A fixed pseudo-random token stream: the work does not depend on it. */
static int32_t token_at(int seq, int step, int n_vocab)
{
    uint32_t h = (uint32_t)seq * 2654435761u ^ (uint32_t)step * 40503u;
    return 3 + (int32_t)(h % (uint32_t)(n_vocab - 3));
}

static int prefill(struct md_context **ctx, int S, int depth, int n_vocab)
{
    int32_t *t = malloc(sizeof(int32_t) * (size_t)(depth > 0 ? depth : 1));
    int rc = t ? MD_OK : MD_ERR_NOMEM;
    for (int i = 0; !rc && i < S; i++) {
        md_kv_clear(ctx[i]);
        for (int j = 0; j < depth; j++)
            t[j] = token_at(i, -1 - j, n_vocab);
        if (depth > 0)
            rc = md_decode(ctx[i], t, depth, false);
    }
    free(t);
    return rc;
}

/* One timed run of one mode, in ms; -1 on an error. */
static double run(struct md_context **ctx, int S, const struct bench_multi_opts *o, int n_vocab,
                  bool batched)
{
    if (prefill(ctx, S, o->depth, n_vocab)) {
        fprintf(stderr, "mustdrop-bench: prefill failed: %s\n", md_context_error(ctx[0]));
        return -1;
    }
    int32_t tok[256];
    int rc = MD_OK;
    double t0 = now_ms();
    if (batched) {
        for (int s = 0; s < o->n_steps && !rc; s++) {
            for (int i = 0; i < S; i++)
                tok[i] = token_at(i, s, n_vocab);
            rc = md_decode_multi(ctx, tok, S);
        }
    } else {
        for (int i = 0; i < S && !rc; i++)
            for (int s = 0; s < o->n_steps && !rc; s++) {
                int32_t t = token_at(i, s, n_vocab);
                rc = md_decode(ctx[i], &t, 1, false);
            }
    }
    double dt = now_ms() - t0;
    if (rc) {
        fprintf(stderr, "mustdrop-bench: decode failed: %s\n", md_context_error(ctx[0]));
        return -1;
    }
    return dt;
}

static double mean(const double *v, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += v[i];
    return s / n;
}

static double sd(const double *v, int n)
{
    double m = mean(v, n), s = 0;
    for (int i = 0; i < n; i++)
        s += (v[i] - m) * (v[i] - m);
    return n > 1 ? sqrt(s / (n - 1)) : 0;
}

/* S sequences: both modes, o->reps runs each; one table row. */
static int measure(struct md_model *model, int S, const struct bench_multi_opts *o, FILE *out)
{
    int n_vocab = md_model_n_vocab(model);
    struct md_context **ctx = calloc((size_t)S, sizeof *ctx);
    double tb[64], ts[64], ratio[64];
    int reps = o->reps < 64 ? o->reps : 64, status = ctx ? 0 : 1;
    struct md_context_params cp = *o->cp;
    cp.n_ctx = o->depth + o->n_steps + 8;
    cp.n_batch = o->depth > S ? o->depth : S;
    char err[256];
    for (int i = 0; !status && i < S; i++)
        if (md_context_new(model, &cp, &ctx[i], err, sizeof err)) {
            fprintf(stderr, "mustdrop-bench: context %d of %d: %s\n", i, S, err);
            status = 1;
        }
    /* untimed warm-up of both modes */
    if (!status && (run(ctx, S, o, n_vocab, true) < 0 || run(ctx, S, o, n_vocab, false) < 0))
        status = 1;
    for (int r = 0; !status && r < reps; r++) {
        double b = run(ctx, S, o, n_vocab, true), s = run(ctx, S, o, n_vocab, false);
        if (b < 0 || s < 0) {
            status = 1;
            break;
        }
        tb[r] = 1000.0 * S * o->n_steps / b;
        ts[r] = 1000.0 * S * o->n_steps / s;
        ratio[r] = s / b;
    }
    if (!status)
        fprintf(out, "| %d | %.2f ± %.2f | %.2f ± %.2f | %.2f ± %.2f |\n", S, mean(tb, reps),
                sd(tb, reps), mean(ts, reps), sd(ts, reps), mean(ratio, reps), sd(ratio, reps));
    fflush(out);
    for (int i = 0; ctx && i < S; i++)
        md_context_free(ctx[i]);
    free(ctx);
    return status;
}

int md_bench_multi(struct md_model *model, const struct bench_multi_opts *o, FILE *out)
{
    fprintf(out, "%s, %d threads, tg%d per sequence after %d cached tokens, %d runs per mode\n\n",
            md_model_desc(model), o->cp->n_threads, o->n_steps, o->depth, o->reps);
    fprintf(out, "| sequences | batched t/s | one after another t/s | speedup |\n|---:|---:|---:|---:|\n");
    for (int i = 0; i < o->n_seqs; i++)
        if (measure(model, o->seqs[i], o, out))
            return 1;
    return 0;
}
