// cuBLAS for the CUDA backend, opened at run time by each instance instead of
// linked into the module. The module is also loaded only to ask whether
// there is a device (md_backend_check, device=auto on a machine without a
// GPU), and mapping cuBLAS (libcublasLt) alone raises a process's RSS by about
// 150 MB: linked, every such question would cost that. Each member is
// cuBLAS's own function, typed from its header, so a call through the table
// is checked like a direct call.
#ifndef MD_CUDA_BLAS_H
#define MD_CUDA_BLAS_H

#include <stddef.h>

#include <cublas_v2.h>

// cublasGemmEx has C++ overloads in cublas_api.h: the one taking a
// cublasComputeType_t, named by its type (blas.cu checks it against the header).
typedef cublasStatus_t (*blas_gemm_ex_fn)(cublasHandle_t, cublasOperation_t, cublasOperation_t,
    int, int, int, const void *, const void *, cudaDataType, int, const void *, cudaDataType,
    int, const void *, void *, cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);

struct blas_api {
    void *lib;   // the loader's handle; NULL: not open
    decltype(&cublasCreate_v2) create;
    decltype(&cublasDestroy_v2) destroy;
    decltype(&cublasSetStream_v2) set_stream;
    decltype(&cublasSetMathMode) set_math_mode;
    decltype(&cublasGetStatusString) status_string;
    decltype(&cublasSgemm_v2) sgemm;
    decltype(&cublasSgemmStridedBatched) sgemm_strided_batched;
    blas_gemm_ex_fn gemm_ex;
};

// Open cuBLAS (MD_CUBLAS_SONAME, from the build) and fill b: MD_OK, or
// MD_ERR_BACKEND with the loader's message in err.
int blas_open(struct blas_api *b, char *err, size_t errlen);
void blas_close(struct blas_api *b);

#endif
