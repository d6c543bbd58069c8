/* mustdrop-bench --seqs (mustdrop-bench-multi.c). */
#ifndef MD_BENCH_MULTI_H
#define MD_BENCH_MULTI_H

#include <stdio.h>

#include "mustdrop.h"

struct bench_multi_opts {
    const int *seqs;          /* sequence counts to measure */
    int n_seqs;
    int n_steps;              /* decode steps per sequence and run */
    int depth;                /* tokens each sequence holds before the steps */
    int reps;                 /* runs of each mode, alternating */
    const struct md_context_params *cp;   /* every context's parameters (threads, isa) */
};

/* Prints one table row per sequence count to out; 0, or 1 on an error. */
int md_bench_multi(struct md_model *model, const struct bench_multi_opts *o, FILE *out);

#endif
