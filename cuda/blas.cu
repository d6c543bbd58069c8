// Loading cuBLAS (blas.h). The library is opened RTLD_NODELETE: it is only
// opened once a device exists, and cuBLAS, like the CUDA runtime, is not made
// to unload and start again within a process.
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "blas.h"
#include "cuda-backend.h"

#ifndef MD_CUBLAS_SONAME
#error "MD_CUBLAS_SONAME (cuBLAS's file name, e.g. libcublas.so.13) comes from cuda/meson.build"
#endif

// The table's GemmEx type must pick cuBLAS's exported overload.
static_assert(sizeof(static_cast<blas_gemm_ex_fn>(&cublasGemmEx)) > 0, "cublasGemmEx type");

template <typename F>
static bool resolve(void *lib, const char *name, F *fn, const char **missing)
{
    *fn = reinterpret_cast<F>(dlsym(lib, name));
    if (!*fn)
        *missing = name;
    return *fn != nullptr;
}

static bool resolve_all(struct blas_api *b, const char **missing)
{
    void *l = b->lib;
    return resolve(l, "cublasCreate_v2", &b->create, missing) &&
           resolve(l, "cublasDestroy_v2", &b->destroy, missing) &&
           resolve(l, "cublasSetStream_v2", &b->set_stream, missing) &&
           resolve(l, "cublasSetMathMode", &b->set_math_mode, missing) &&
           resolve(l, "cublasGetStatusString", &b->status_string, missing) &&
           resolve(l, "cublasSgemm_v2", &b->sgemm, missing) &&
           resolve(l, "cublasSgemmStridedBatched", &b->sgemm_strided_batched, missing) &&
           resolve(l, "cublasGemmEx", &b->gemm_ex, missing);
}

int blas_open(struct blas_api *b, char *err, size_t errlen)
{
    memset(b, 0, sizeof *b);
    b->lib = dlopen(MD_CUBLAS_SONAME, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!b->lib) {
        const char *e = dlerror();
        if (err && errlen)
            snprintf(err, errlen, "cannot load cuBLAS: %s", e ? e : MD_CUBLAS_SONAME);
        return MD_ERR_BACKEND;
    }
    const char *missing = "";
    if (!resolve_all(b, &missing)) {
        if (err && errlen)
            snprintf(err, errlen, "cuBLAS (%s) has no %s", MD_CUBLAS_SONAME, missing);
        blas_close(b);
        return MD_ERR_BACKEND;
    }
    return MD_OK;
}

void blas_close(struct blas_api *b)
{
    if (b->lib)
        dlclose(b->lib);
    memset(b, 0, sizeof *b);
}
