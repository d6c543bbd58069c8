// The one symbol libmustdrop-cuda.so exports (module.map): libmustdrop
// dlopens the module and reaches the CUDA backend only through this table.
#include "cuda-backend.h"

static const struct md_backend_module cuda_module = {
    MD_BACKEND_MODULE_ABI,
    (uint32_t)sizeof(struct md_backend_ops),
    (uint32_t)sizeof(struct md_tensor),
    "cuda",
    cuda_backend_new,
    cuda_device_count,
    cuda_device_info,
    cuda_backend_last_error,
};

extern "C" __attribute__((visibility("default")))
const struct md_backend_module *md_backend_module_v1(void)
{
    return &cuda_module;
}
