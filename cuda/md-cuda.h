/* CUDA queries for tests and benchmarks (C interface).
 *
 * libmustdrop implements these (core/llm/backend.c) by loading the CUDA
 * module, libmustdrop-cuda.so, for the call: programs that include this
 * header do not link CUDA. In a build without the CUDA backend, or when the
 * module is not found, there is no device and the reason says why. The
 * element and the CLIs use md_backend_check (mustdrop.h) instead. */
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

/* Number of usable CUDA devices; 0 when there is no module, no driver or no
 * device, with why (the CUDA runtime's error string) written to reason. */
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
