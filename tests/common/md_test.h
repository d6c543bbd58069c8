/* Minimal test helpers shared by the C tests.
 * A test is a program: exit 0 = pass, MD_TEST_SKIP (77, meson's skip code) =
 * skipped (after printing "SKIP: reason"), anything else = fail. */
#ifndef MD_TEST_H
#define MD_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <stdbool.h>

#define MD_TEST_SKIP 77

static int md_test_failures;

#define CHECK(cond) do { if (!(cond)) { \
    fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    md_test_failures++; } } while (0)

#define CHECKF(cond, ...) do { if (!(cond)) { \
    fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); \
    md_test_failures++; } } while (0)

#define SKIP(...) do { printf("SKIP: "); printf(__VA_ARGS__); printf("\n"); \
    fflush(stdout); exit(MD_TEST_SKIP); } while (0)

/* Path of a file under ../shared, or skip the test when shared/ is absent. */
static inline const char *md_test_shared(const char *rel, char *buf, size_t n)
{
    const char *dir = getenv("MD_SHARED_DIR");
    if (!dir) dir = "../shared";
    snprintf(buf, n, "%s/%s", dir, rel);
    FILE *f = fopen(buf, "rb");
    if (!f) SKIP("%s not found (shared/ fixtures absent)", buf);
    fclose(f);
    return buf;
}

/* Path of a file under tests/ in the source tree. */
static inline const char *md_test_data(const char *rel, char *buf, size_t n)
{
    const char *dir = getenv("MD_TESTS_DIR");
    if (!dir) dir = "tests";
    snprintf(buf, n, "%s/%s", dir, rel);
    return buf;
}

/* Whether a file whose name contains `name` is mapped into this process
 * (a library loaded, or not, behind the test's back). */
static inline bool md_test_mapped(const char *name)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return false;
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, name) != NULL;
    fclose(f);
    return found;
}

/* The backend a test runs on: MD_TEST_BACKEND ("cuda" under
 * tests/cuda's cuda_or_skip), NULL (the CPU) when unset or empty. */
static inline const char *md_test_backend(void)
{
    const char *b = getenv("MD_TEST_BACKEND");
    return b && *b ? b : NULL;
}

static inline bool md_test_on_cuda(void)
{
    const char *b = md_test_backend();
    return b && !strcmp(b, "cuda");
}

/* Tolerance of a check on a forward pass: the CPU's, or on CUDA the looser
 * one given. CUDA's prefill GEMMs with F16/BF16 weights (llama.cpp's
 * converter keeps the patch embedding and the projector F16 even in an
 * "f32" mmproj) round the activations to F16, 4.9e-4 relative, which the CPU
 * does not; MD_CUDA_PREFILL_F32=1 turns that off, and then the CPU's
 * tolerance applies on CUDA too (tests/cuda runs both). */
static inline double md_test_tol(double cpu, double cuda_f16)
{
    const char *f32 = getenv("MD_CUDA_PREFILL_F32");
    bool exact = f32 && *f32 && strcmp(f32, "0");
    return md_test_on_cuda() && !exact ? cuda_f16 : cpu;
}

static inline int md_test_finish(const char *name)
{
    if (md_test_failures) {
        printf("FAIL: %s: %d check(s) failed\n", name, md_test_failures);
        return 1;
    }
    printf("PASS: %s\n", name);
    return 0;
}

#endif
