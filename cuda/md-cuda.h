/* CUDA backend entry points (C interface; implemented in CUDA C).
 * Built only when nvcc is found. Device discovery (device.cu), used to
 * resolve device=auto / cuda:N and to print a clear reason when it can't;
 * the op vtable itself is backend-cuda.cu, created through
 * md_backend_cuda_new (declared in core/llm/backend.h) or
 * md_backend_new("cuda", ...). */
#ifndef MD_CUDA_H
#define MD_CUDA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct md_cuda_device_info {
    int index;
    char name[256];
    int cc_major, cc_minor;       /* compute capability */
    size_t total_mem;             /* bytes */
    int n_sm;
};

/* Number of usable CUDA devices; 0 when there is no driver or no device.
 * On 0, why (the CUDA runtime's error string) is written to reason. */
int md_cuda_device_count(char *reason, size_t reason_len);
/* Fill info for device `index`; returns 0 or -1 with reason. */
int md_cuda_device_info(int index, struct md_cuda_device_info *info,
                        char *reason, size_t reason_len);

struct md_backend;
/* Message of the last error a CUDA backend instance reported (with the CUDA
 * or cuBLAS error string), "" when none; "" for a non-CUDA backend. */
const char *md_backend_cuda_last_error(const struct md_backend *be);

#ifdef __cplusplus
}
#endif
#endif
