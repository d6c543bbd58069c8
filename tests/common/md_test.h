/* Minimal test helpers shared by the C tests.
 * A test is a program: exit 0 = pass, MD_TEST_SKIP (77, meson's skip code) =
 * skipped (after printing "SKIP: reason"), anything else = fail. */
#ifndef MD_TEST_H
#define MD_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

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
