/* libmustdrop-cuda.so itself, opened the way core/llm/backend.c opens it,
 * on any machine: it exports its entry, asking for devices does not map
 * cuBLAS, and making an instance opens cuBLAS by the name the build gave it
 * (cuBLAS comes before the device check, so a machine without a GPU checks
 * that too) and then needs a device. MD_TEST_CUDA_MODULE_DIR: the module's
 * directory in the build tree. */
#include <dlfcn.h>

#include "backend.h"
#include "md-cuda.h"
#include "md_test.h"

int main(void)
{
    const char *dir = getenv("MD_TEST_CUDA_MODULE_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/libmustdrop-cuda.so", dir ? dir : "cuda");
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    CHECKF(h != NULL, "%s", dlerror());
    if (!h)
        return md_test_finish("cuda_module");
    md_backend_module_fn entry;
    *(void **)&entry = dlsym(h, MD_BACKEND_MODULE_ENTRY);
    CHECK(entry != NULL);
    CHECK(dlsym(h, "cuda_backend_new") == NULL);   /* nothing else is exported */
    const struct md_backend_module *api = entry ? entry() : NULL;
    CHECK(api && api->abi == MD_BACKEND_MODULE_ABI && !strcmp(api->name, "cuda"));
    if (!api)
        return md_test_finish("cuda_module");
    CHECK(md_test_mapped("libcudart"));

    char why[512] = "";
    int n = api->device_count(why, sizeof why);
    printf("devices: %d %s\n", n, why);
    CHECK(!md_test_mapped("libcublas"));

    struct md_backend_params bp = { 1, NULL, 0, false };
    struct md_backend *be = NULL;
    char err[512] = "";
    int rc = api->backend_new(&bp, &be, err, sizeof err);
    printf("backend_new: %d %s\n", rc, err);
    CHECK(md_test_mapped("libcublasLt"));
    if (n > 0) {
        CHECKF(rc == MD_OK && be, "%d %s", rc, err);
        if (be) {
            CHECK(!strcmp(api->last_error(be), ""));
            be->ops->destroy(be);
        }
    } else {
        CHECKF(rc == MD_ERR_UNSUPPORTED && !be, "%d", rc);
        CHECKF(!strncmp(err, "no CUDA device: ", 16), "%s", err);
    }
    dlclose(h);
    return md_test_finish("cuda_module");
}
