/* Runs a test program on the CUDA backend, or skips without a device:
 *   cuda_or_skip PROGRAM [ARGS...]
 * No CUDA device: prints "SKIP: no CUDA device (...)" and exits 77.
 * Otherwise sets MD_TEST_BACKEND=cuda (unless already set) and execs
 * PROGRAM, whose exit status is the test's. Used by tests/cuda/meson.build
 * for the HF-conformance and LLM tests that read MD_TEST_BACKEND. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "md-cuda.h"

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: cuda_or_skip PROGRAM [ARGS...]\n");
        return 2;
    }
    char why[512] = "";
    if (md_cuda_device_count(why, sizeof why) <= 0) {
        printf("SKIP: no CUDA device (%s)\n", why);
        fflush(stdout);
        return 77;
    }
    setenv("MD_TEST_BACKEND", "cuda", 0);
    execv(argv[1], argv + 1);
    perror(argv[1]);
    return 1;
}
