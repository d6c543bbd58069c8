/* CUDA backend entry points (C interface; implemented in CUDA C).
 * Built only when nvcc is found. The op vtable itself arrives with the CUDA
 * backend issue; what is here is the device discovery the engine uses to
 * resolve device=auto / cuda:N and to print a clear reason when it can't. */
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

#ifdef __cplusplus
}
#endif
#endif
