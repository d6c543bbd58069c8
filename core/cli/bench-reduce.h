/* mustdrop-bench --reduce (bench-reduce.c). */
#ifndef MD_BENCH_REDUCE_H
#define MD_BENCH_REDUCE_H

/* The whole --reduce mode; returns the process exit status. */
int md_bench_reduce_main(int argc, char **argv);

#endif
