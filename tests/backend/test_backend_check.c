/* md_backend_check and the loading of the CUDA module (core/llm/backend.c),
 * on any machine: the reasons it gives (no CUDA build, module not found,
 * unloadable, from another version, no device, no such device), that
 * md_backend_new("cuda") fails with the same reason, that a model on the CPU
 * maps no CUDA library, and that trying CUDA without a device leaves none
 * mapped. A stand-in module (fake-module.c) plays the GPU cases; the real
 * module is used as built, and on a machine with a GPU its device cases run
 * instead of the no-device ones.
 * Environment (tests/backend/meson.build): MD_TEST_CUDA_BUILT (0/1),
 * MD_TEST_CUDA_MODULE_DIR, MD_TEST_FAKE_DIR, MD_TEST_STALE_DIR. */
#include <stdlib.h>
#include <unistd.h>

#include "backend.h"
#include "md-cuda.h"
#include "md_test.h"
#include "mustdrop.h"

static bool any_cuda_mapped(void)
{
    return md_test_mapped("libcudart") || md_test_mapped("libcublas") || md_test_mapped("libmustdrop-cuda");
}

static void use_dir(const char *dir) { setenv("MUSTDROP_BACKEND_DIR", dir, 1); }

/* Check "cuda" device dev: expect rc, a reason containing `want`, and the
 * same reason from md_backend_new. */
static void expect_reason(int32_t dev, int rc, const char *want)
{
    char why[1024], err[1024];
    int got = md_backend_check("cuda", dev, why, sizeof why);
    CHECKF(got == rc, "check(cuda, %d): %d, expected %d (%s)", (int)dev, got, rc, why);
    CHECKF(strstr(why, want) != NULL, "check(cuda, %d): '%s' lacks '%s'", (int)dev, why, want);
    if (rc == MD_OK)
        return;
    struct md_backend_params bp = { .n_threads = 1, .device = dev };
    struct md_backend stale, *be = &stale;   /* must come back NULL */
    got = md_backend_new("cuda", &bp, &be, err, sizeof err);
    CHECKF(got == rc && be == NULL, "backend_new(cuda, %d): %d", (int)dev, got);
    CHECKF(!strcmp(err, why), "backend_new: '%s', check: '%s'", err, why);
}

static void check_cpu_and_unknown(void)
{
    char why[256] = "x";
    CHECK(md_backend_check("cpu", 0, why, sizeof why) == MD_OK && why[0] == '\0');
    CHECK(md_backend_check(NULL, 7, why, sizeof why) == MD_OK);
    CHECK(md_backend_check("cpu", 0, NULL, 0) == MD_OK);
    CHECK(md_backend_check("tpu", 0, why, sizeof why) == MD_ERR_UNSUPPORTED);
    CHECKF(strstr(why, "unknown backend 'tpu'") != NULL, "%s", why);
}

/* A model loaded on the CPU, the way the element and the CLIs do. */
static void check_cpu_model_maps_no_cuda(void)
{
    char path[1024];
    md_test_data("../models/fixtures/tiny-llama-f32.gguf", path, sizeof path);
    struct md_model_params mp = md_model_default_params();
    mp.backend = "cpu";
    struct md_model *model = NULL;
    char err[512];
    CHECKF(md_model_load(path, &mp, &model, err, sizeof err) == MD_OK, "%s", err);
    CHECK(!any_cuda_mapped());
    md_model_free(model);
}

static char *make_dir(void)
{
    char tmpl[] = "/tmp/md-backend-XXXXXX";
    char *d = mkdtemp(tmpl);
    CHECK(d != NULL);
    return d ? strdup(d) : strdup("/nonexistent");
}

static void check_missing_and_broken(void)
{
    char *dir = make_dir();
    use_dir(dir);
    char want[1200];
    snprintf(want, sizeof want, "libmustdrop-cuda.so was not found (looked in %s", dir);
    expect_reason(0, MD_ERR_UNSUPPORTED, want);

    char path[1200];
    snprintf(path, sizeof path, "%s/libmustdrop-cuda.so", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs("not a shared object\n", f);
        fclose(f);
    }
    expect_reason(0, MD_ERR_UNSUPPORTED, "cannot load the CUDA backend module");
    unlink(path);
    rmdir(dir);
    free(dir);

    use_dir(getenv("MD_TEST_STALE_DIR"));
    expect_reason(0, MD_ERR_UNSUPPORTED, "built for another version of mustdrop");
}

static void check_fake_devices(void)
{
    use_dir(getenv("MD_TEST_FAKE_DIR"));
    setenv("FAKE_CUDA_DEVICES", "0", 1);
    expect_reason(0, MD_ERR_UNSUPPORTED, "no CUDA device: fake: no driver");
    setenv("FAKE_CUDA_DEVICES", "2", 1);
    expect_reason(0, MD_OK, "");
    expect_reason(1, MD_OK, "");
    expect_reason(3, MD_ERR_UNSUPPORTED, "CUDA device 3 does not exist (2 found)");
    expect_reason(-1, MD_ERR_UNSUPPORTED, "CUDA device -1 does not exist (2 found)");
    CHECK(md_cuda_device_count(NULL, 0) == 2);

    /* An instance keeps its module, reached again for its last error. */
    struct md_backend_params bp = { .n_threads = 1, .device = 1 };
    struct md_backend *be = NULL;
    char err[256];
    CHECKF(md_backend_new("cuda", &bp, &be, err, sizeof err) == MD_OK, "%s", err);
    CHECK(be && be->module && !strcmp(be->ops->name, "cuda"));
    CHECK(!strcmp(md_backend_cuda_last_error(be), "fake device error"));
    md_backend_free(be);

    setenv("FAKE_CUDA_NEW", "nomem", 1);
    CHECK(md_backend_new("cuda", &bp, &be, err, sizeof err) == MD_ERR_NOMEM && !be);
    CHECKF(!strcmp(err, "fake backend_new: nomem"), "%s", err);
    unsetenv("FAKE_CUDA_NEW");
    unsetenv("FAKE_CUDA_DEVICES");
}

/* The module as built: on this machine either no device or some. */
static void check_real_module(void)
{
    use_dir(getenv("MD_TEST_CUDA_MODULE_DIR"));
    char why[512] = "";
    int n = md_cuda_device_count(why, sizeof why);
    if (n == 0) {
        printf("no CUDA device: %s\n", why);
        CHECKF(strstr(why, "cuda") || strstr(why, "CUDA"), "reason '%s'", why);
        expect_reason(0, MD_ERR_UNSUPPORTED, "no CUDA device: ");
        CHECK(md_backend_check("cuda", 0, NULL, 0) == MD_ERR_UNSUPPORTED);   /* why may be NULL */
        /* Trying without a device leaves nothing loaded. */
        CHECK(!any_cuda_mapped());
        return;
    }
    printf("%d CUDA device(s)\n", n);
    expect_reason(0, MD_OK, "");
    char want[64];
    snprintf(want, sizeof want, "CUDA device %d does not exist (%d found)", n, n);
    expect_reason(n, MD_ERR_UNSUPPORTED, want);
    struct md_backend_params bp = { .n_threads = 1, .device = 0 };
    struct md_backend *be = NULL;
    CHECKF(md_backend_new("cuda", &bp, &be, why, sizeof why) == MD_OK, "%s", why);
    CHECK(be && be->module && !strcmp(md_backend_cuda_last_error(be), ""));
    md_backend_free(be);
}

int main(void)
{
    check_cpu_and_unknown();
    check_cpu_model_maps_no_cuda();
    const char *built = getenv("MD_TEST_CUDA_BUILT");
    if (!built || strcmp(built, "1")) {
        expect_reason(0, MD_ERR_UNSUPPORTED, "this build has no CUDA backend");
        char why[256];
        CHECK(md_cuda_device_count(why, sizeof why) == 0);
        CHECKF(!strcmp(why, "this build has no CUDA backend"), "%s", why);
        return md_test_finish("backend_check");
    }
    check_real_module();   /* first: the no-device case looks at what is mapped */
    check_missing_and_broken();
    check_fake_devices();
    return md_test_finish("backend_check");
}
