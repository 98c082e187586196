/* hipblas.h for scripts/check-hip only: declarations of the hipBLAS calls the CUDA backend
 * makes, with ROCm 6's V2 signatures (hipDataType, hipblasComputeType_t), for a ROCm
 * without hipBLAS (Debian packages none). The values are placeholders: compile only. */
#pragma once
#include <hip/hip_runtime.h>
#include <hip/library_types.h>
#ifndef HIP_R_16BF
#define HIP_R_16BF ((hipDataType)14)
#endif
typedef void *hipblasHandle_t;
typedef enum { HIPBLAS_STATUS_SUCCESS = 0, HIPBLAS_STATUS_NOT_INITIALIZED = 1 } hipblasStatus_t;
typedef enum { HIPBLAS_OP_N = 111, HIPBLAS_OP_T = 112 } hipblasOperation_t;
typedef enum { HIPBLAS_COMPUTE_32F = 2 } hipblasComputeType_t;
typedef enum { HIPBLAS_GEMM_DEFAULT = 160 } hipblasGemmAlgo_t;
hipblasStatus_t hipblasCreate(hipblasHandle_t *);
hipblasStatus_t hipblasDestroy(hipblasHandle_t);
hipblasStatus_t hipblasSetStream(hipblasHandle_t, hipStream_t);
hipblasStatus_t hipblasSgemm(hipblasHandle_t, hipblasOperation_t, hipblasOperation_t, int, int,
                             int, const float *, const float *, int, const float *, int,
                             const float *, float *, int);
hipblasStatus_t hipblasGemmEx(hipblasHandle_t, hipblasOperation_t, hipblasOperation_t, int, int,
                              int, const void *, const void *, hipDataType, int, const void *,
                              hipDataType, int, const void *, void *, hipDataType, int,
                              hipblasComputeType_t, hipblasGemmAlgo_t);
hipblasStatus_t hipblasGemmStridedBatchedEx(hipblasHandle_t, hipblasOperation_t,
                                            hipblasOperation_t, int, int, int, const void *,
                                            const void *, hipDataType, int, long long,
                                            const void *, hipDataType, int, long long,
                                            const void *, void *, hipDataType, int, long long,
                                            int, hipblasComputeType_t, hipblasGemmAlgo_t);
