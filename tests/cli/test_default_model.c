/* md_default_model_paths / md_default_model_dir: MUSTDROP_MODEL_DIR
 * override with temporary files, incomplete and missing pairs, the
 * source-tree fallback reported for messages, small buffers. */
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "md_test.h"
#include "mustdrop.h"

static void touch(const char *dir, const char *name)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    CHECKF(f != NULL, "cannot create %s", p);
    if (f) { fputs("GGUF", f); fclose(f); }
}

static void rm(const char *dir, const char *name)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    remove(p);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

int main(void)
{
    char tmpl[] = "/tmp/md-default-model-XXXXXX";
    char *dir = mkdtemp(tmpl);
    if (!dir) SKIP("cannot create a temporary directory");
    char llm[PATH_MAX], mm[PATH_MAX], want[PATH_MAX], d[PATH_MAX];

    /* what the search finds without the override (the real default model,
     * when it is installed or in the source tree, else nothing) */
    unsetenv("MUSTDROP_MODEL_DIR");
    char base_llm[PATH_MAX], base_mm[PATH_MAX];
    int base = md_default_model_paths(base_llm, sizeof base_llm, base_mm, sizeof base_mm);
    CHECK(base == 0 || base == -1);
    CHECK(md_default_model_dir(0, d, sizeof d) == 0 && ends_with(d, "/mustdrop/models"));
    CHECK(md_default_model_dir(1, d, sizeof d) == 0 && ends_with(d, "/models/synthvqa"));
    CHECK(md_default_model_dir(2, d, sizeof d) == -1);
    CHECK(md_default_model_dir(-1, d, sizeof d) == -1);
    if (base == -1) {
        /* the source-tree candidates are reported */
        CHECKF(ends_with(base_llm, "/models/synthvqa/synthvqa-llm-f16.gguf"), "%s", base_llm);
        CHECKF(ends_with(base_mm, "/models/synthvqa/synthvqa-mmproj-f16.gguf"), "%s", base_mm);
    } else {
        CHECK(ends_with(base_llm, "/" MD_DEFAULT_LLM_FILE));
        CHECK(ends_with(base_mm, "/" MD_DEFAULT_MMPROJ_FILE));
    }

    /* the override comes first, and an empty value is ignored */
    setenv("MUSTDROP_MODEL_DIR", dir, 1);
    CHECK(md_default_model_dir(0, d, sizeof d) == 0 && !strcmp(d, dir));
    CHECK(md_default_model_dir(1, d, sizeof d) == 0 && ends_with(d, "/mustdrop/models"));
    CHECK(md_default_model_dir(3, d, sizeof d) == -1);
    setenv("MUSTDROP_MODEL_DIR", "", 1);
    CHECK(md_default_model_dir(0, d, sizeof d) == 0 && ends_with(d, "/mustdrop/models"));
    setenv("MUSTDROP_MODEL_DIR", dir, 1);

    /* empty directory: falls through to the same result as without it */
    int rc = md_default_model_paths(llm, sizeof llm, mm, sizeof mm);
    CHECK(rc == base);
    CHECK(!strcmp(llm, base_llm) && !strcmp(mm, base_mm));

    /* only one of the two files: not a pair, falls through */
    touch(dir, MD_DEFAULT_LLM_FILE);
    rc = md_default_model_paths(llm, sizeof llm, mm, sizeof mm);
    CHECK(rc == base && !strcmp(llm, base_llm));

    /* both: found there */
    touch(dir, MD_DEFAULT_MMPROJ_FILE);
    rc = md_default_model_paths(llm, sizeof llm, mm, sizeof mm);
    CHECK(rc == 0);
    snprintf(want, sizeof want, "%s/%s", dir, MD_DEFAULT_LLM_FILE);
    CHECKF(!strcmp(llm, want), "%s vs %s", llm, want);
    snprintf(want, sizeof want, "%s/%s", dir, MD_DEFAULT_MMPROJ_FILE);
    CHECKF(!strcmp(mm, want), "%s vs %s", mm, want);

    /* a trailing slash gives the same paths */
    char slashed[PATH_MAX];
    snprintf(slashed, sizeof slashed, "%s//", dir);
    setenv("MUSTDROP_MODEL_DIR", slashed, 1);
    rc = md_default_model_paths(llm, sizeof llm, mm, sizeof mm);
    CHECKF(rc == 0 && !strcmp(mm, want), "%s", mm);
    setenv("MUSTDROP_MODEL_DIR", dir, 1);

    /* buffers too small for the path, or none */
    char tiny[8];
    CHECK(md_default_model_paths(tiny, sizeof tiny, mm, sizeof mm) == -1);
    CHECK(md_default_model_paths(NULL, 10, mm, sizeof mm) == -1);
    CHECK(md_default_model_paths(llm, sizeof llm, mm, 0) == -1);
    CHECK(md_default_model_dir(0, tiny, sizeof tiny) == -1);

    /* the mmproj name is a directory, not a file: not a pair */
    rm(dir, MD_DEFAULT_MMPROJ_FILE);
    snprintf(want, sizeof want, "%s/%s", dir, MD_DEFAULT_MMPROJ_FILE);
    CHECK(mkdir(want, 0700) == 0);
    rc = md_default_model_paths(llm, sizeof llm, mm, sizeof mm);
    CHECK(rc == base && !strcmp(llm, base_llm) && !strcmp(mm, base_mm));
    rmdir(want);

    /* a directory that does not exist */
    setenv("MUSTDROP_MODEL_DIR", "/nonexistent/md-models", 1);
    rc = md_default_model_paths(llm, sizeof llm, mm, sizeof mm);
    CHECK(rc == base && !strcmp(llm, base_llm));

    rm(dir, MD_DEFAULT_LLM_FILE);
    rmdir(dir);
    unsetenv("MUSTDROP_MODEL_DIR");
    return md_test_finish("default model lookup");
}
