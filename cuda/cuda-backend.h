/* Functions inside libmustdrop-cuda.so, reached from libmustdrop only through
 * the table of module.cu (struct md_backend_module, core/llm/backend.h). They
 * keep md-cuda.h's contracts; the names differ so that a reader never
 * confuses them with the library's functions that load the module. */
#ifndef MD_CUDA_BACKEND_H
#define MD_CUDA_BACKEND_H

#include <stddef.h>

#include "md-cuda.h"

extern "C" {
#include "backend.h"
}

int cuda_device_count(char *reason, size_t reason_len);
int cuda_device_info(int index, struct md_cuda_device_info *info, char *reason,
                     size_t reason_len);
int cuda_backend_new(const struct md_backend_params *p, struct md_backend **out, char *err,
                     size_t errlen);
const char *cuda_backend_last_error(const struct md_backend *be);

#endif
