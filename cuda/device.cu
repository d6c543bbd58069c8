// Device discovery for the CUDA backend. No state is kept here: every call
// asks the runtime, so the library holds no global mutable state.
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "cuda-backend.h"

static void put_reason(char *reason, size_t n, const char *what, cudaError_t e)
{
    if (reason && n)
        snprintf(reason, n, "%s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

// The runtime says "driver version is insufficient" also when there is no
// driver at all, the usual case on a machine without a GPU: say that instead.
static bool driver_installed(void)
{
    void *h = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
    if (h)
        dlclose(h);
    return h != NULL;
}

int cuda_device_count(char *reason, size_t reason_len)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        if (e == cudaErrorInsufficientDriver && !driver_installed())
            put_reason(reason, reason_len, "no NVIDIA driver (libcuda.so.1 not found); "
                       "cudaGetDeviceCount", e);
        else
            put_reason(reason, reason_len, "cudaGetDeviceCount", e);
        (void)cudaGetLastError();  // clear the sticky error for later callers
        return 0;
    }
    if (n == 0 && reason && reason_len)
        snprintf(reason, reason_len, "no CUDA device found");
    return n;
}

int cuda_device_info(int index, struct md_cuda_device_info *info, char *reason,
                     size_t reason_len)
{
    cudaDeviceProp p;
    cudaError_t e = cudaGetDeviceProperties(&p, index);
    if (e != cudaSuccess) {
        put_reason(reason, reason_len, "cudaGetDeviceProperties", e);
        (void)cudaGetLastError();
        return -1;
    }
    memset(info, 0, sizeof(*info));
    info->index = index;
    snprintf(info->name, sizeof(info->name), "%s", p.name);
    info->cc_major = p.major;
    info->cc_minor = p.minor;
    info->total_mem = p.totalGlobalMem;
    info->n_sm = p.multiProcessorCount;
    return 0;
}
