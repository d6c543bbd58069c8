/* Backend registry: the CPU backend is built in; the CUDA backend is the
 * module libmustdrop-cuda.so (cuda/), loaded here on demand.
 *
 * The module is opened per use (a backend instance, a check, a query) and
 * closed after it; the loader counts references, so nothing is cached in
 * the library. Without a device the last close unloads the module, so
 * trying CUDA on a machine without a GPU leaves cudart and cuBLAS unmapped.
 * Once a device has been seen the module is pinned (RTLD_NODELETE): the CUDA
 * runtime, once it has talked to a driver, is not made to unload and start
 * again. */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend.h"
#include "md-cuda.h"
#include "md-paths.h"
#include "mustdrop.h"

/* An open module: the loader's handle, the module's table, and its path. */
struct module_ref {
    void *handle;
    const struct md_backend_module *api;
    char path[4096];
};

static void say(char *buf, size_t n, const char *fmt, ...)
{
    if (!buf || n == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, n, fmt, ap);
    va_end(ap);
}

static bool is_regular_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Where the module is looked for. MUSTDROP_BACKEND_DIR, when set, is the
 * only place: it names the module to use (or, pointing at an empty folder,
 * none), and must not fall back to another build's. */
static int module_dirs(const char *dirs[2])
{
    const char *env = getenv("MUSTDROP_BACKEND_DIR");
    if (env && env[0]) {
        dirs[0] = env;
        return 1;
    }
    dirs[0] = MD_BACKEND_INSTALL_DIR;
    dirs[1] = MD_BACKEND_BUILD_DIR;
    return 2;
}

/* The table of the module just opened, or NULL with the reason in why. */
static const struct md_backend_module *module_api(void *handle, const char *path, char *why,
                                                  size_t why_len)
{
    md_backend_module_fn entry;
    /* POSIX's way from a symbol to a function pointer (dlsym(3)). */
    *(void **)&entry = dlsym(handle, MD_BACKEND_MODULE_ENTRY);
    const struct md_backend_module *api = entry ? entry() : NULL;
    if (!api) {
        say(why, why_len, "%s is not a mustdrop backend module (no %s)", path,
            MD_BACKEND_MODULE_ENTRY);
        return NULL;
    }
    if (api->abi != MD_BACKEND_MODULE_ABI || api->ops_size != sizeof(struct md_backend_ops) ||
        api->tensor_size != sizeof(struct md_tensor) || !api->name || strcmp(api->name, "cuda")) {
        say(why, why_len, "%s was built for another version of mustdrop (module ABI %u, "
            "this library %d): rebuild or reinstall it", path, (unsigned)api->abi,
            MD_BACKEND_MODULE_ABI);
        return NULL;
    }
    return api;
}

static int module_load(struct module_ref *m, char *why, size_t why_len)
{
    m->handle = dlopen(m->path, RTLD_NOW | RTLD_LOCAL);
    if (!m->handle) {
        const char *e = dlerror();
        say(why, why_len, "cannot load the CUDA backend module: %s", e ? e : m->path);
        return MD_ERR_UNSUPPORTED;
    }
    m->api = module_api(m->handle, m->path, why, why_len);
    if (!m->api) {
        dlclose(m->handle);
        m->handle = NULL;
        return MD_ERR_UNSUPPORTED;
    }
    return MD_OK;
}

/* Open the CUDA module from the first directory that has it. */
static int module_open(struct module_ref *m, char *why, size_t why_len)
{
    memset(m, 0, sizeof *m);
    if (!MD_HAVE_CUDA_MODULE) {
        say(why, why_len, "this build has no CUDA backend");
        return MD_ERR_UNSUPPORTED;
    }
    const char *dirs[2];
    int n = module_dirs(dirs);
    for (int i = 0; i < n; i++) {
        int w = snprintf(m->path, sizeof m->path, "%s/%s", dirs[i], MD_CUDA_MODULE_FILE);
        if (w > 0 && (size_t)w < sizeof m->path && is_regular_file(m->path))
            return module_load(m, why, why_len);
    }
    if (n == 1)
        say(why, why_len, "the CUDA backend module %s was not found (looked in %s, "
            "from MUSTDROP_BACKEND_DIR)", MD_CUDA_MODULE_FILE, dirs[0]);
    else
        say(why, why_len, "the CUDA backend module %s was not found (looked in %s and %s)",
            MD_CUDA_MODULE_FILE, dirs[0], dirs[1]);
    return MD_ERR_UNSUPPORTED;
}

/* Keep the module (and the CUDA runtime it links) loaded for good. */
static void module_pin(const struct module_ref *m)
{
    void *again = dlopen(m->path, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD | RTLD_NODELETE);
    if (again)
        dlclose(again);
}

/* MD_OK when device `device` of the open module can be used. */
static int module_device_ok(const struct module_ref *m, int32_t device, char *why,
                            size_t why_len)
{
    char reason[256] = "";
    int n = m->api->device_count(reason, sizeof reason);
    if (n <= 0) {
        say(why, why_len, "no CUDA device: %s", reason[0] ? reason : "none found");
        return MD_ERR_UNSUPPORTED;
    }
    module_pin(m);
    if (device < 0 || device >= n) {
        say(why, why_len, "CUDA device %d does not exist (%d found)", (int)device, n);
        return MD_ERR_UNSUPPORTED;
    }
    return MD_OK;
}

int md_backend_check(const char *backend, int32_t device, char *why, size_t why_len)
{
    say(why, why_len, "%s", "");
    if (!backend || !strcmp(backend, "cpu"))
        return MD_OK;
    if (strcmp(backend, "cuda")) {
        say(why, why_len, "unknown backend '%s' (available: cpu, cuda)", backend);
        return MD_ERR_UNSUPPORTED;
    }
    struct module_ref m;
    int rc = module_open(&m, why, why_len);
    if (rc)
        return rc;
    rc = module_device_ok(&m, device, why, why_len);
    dlclose(m.handle);
    return rc;
}

/* A CUDA instance holds its own reference to the module, released by
 * md_backend_free after the instance is destroyed. */
static int cuda_new(const struct md_backend_params *p, struct md_backend **out, char *err,
                    size_t errlen)
{
    struct module_ref m;
    int rc = module_open(&m, err, errlen);
    if (rc)
        return rc;
    rc = module_device_ok(&m, p ? p->device : 0, err, errlen);
    if (!rc)
        rc = m.api->backend_new(p, out, err, errlen);
    if (rc) {
        dlclose(m.handle);
        return rc;
    }
    (*out)->module = m.handle;
    return MD_OK;
}

int md_backend_new(const char *name, const struct md_backend_params *p,
                   struct md_backend **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!name || !strcmp(name, "cpu"))
        return md_backend_cpu_new(p, out, err, errlen);
    if (!strcmp(name, "cuda"))
        return cuda_new(p, out, err, errlen);
    say(err, errlen, "unknown backend '%s' (available: cpu, cuda)", name);
    return MD_ERR_UNSUPPORTED;
}

void md_backend_free(struct md_backend *be)
{
    if (!be)
        return;
    void *module = be->module;
    be->ops->destroy(be);
    if (module)
        dlclose(module);
}

/* ---- md-cuda.h: each call opens the module for its own duration ---- */

int md_cuda_device_count(char *reason, size_t reason_len)
{
    struct module_ref m;
    if (module_open(&m, reason, reason_len))
        return 0;
    int n = m.api->device_count(reason, reason_len);
    if (n > 0)
        module_pin(&m);
    dlclose(m.handle);
    return n > 0 ? n : 0;
}

int md_cuda_device_info(int index, struct md_cuda_device_info *info, char *reason,
                        size_t reason_len)
{
    struct module_ref m;
    if (module_open(&m, reason, reason_len))
        return -1;
    int rc = m.api->device_info(index, info, reason, reason_len);
    if (rc == 0)
        module_pin(&m);
    dlclose(m.handle);
    return rc;
}

const char *md_backend_cuda_last_error(const struct md_backend *be)
{
    if (!be || !be->module)
        return "";
    md_backend_module_fn entry;
    *(void **)&entry = dlsym(be->module, MD_BACKEND_MODULE_ENTRY);
    return entry ? entry()->last_error(be) : "";
}
